//! `kup serve --db postgres://...`: one replica of several daemons sharing one PostgreSQL
//! database. Every replica serves the API; one leads: it holds the lease (renewed every third
//! of `--lease`), opens the cluster and the engine, and executes. The others stand by and
//! forward every request to the leader (so clients need not know who leads); when the leader's
//! lease expires, one of them takes it over (the fencing token grows), opens the engine (which
//! re-attaches to the operations in flight and confirms them in the cluster, as after a
//! restart) and the runner goes on from the store.
//!
//! A leader that loses the lease, or cannot renew it before it would expire, stops the process
//! (exit status 3) rather than go on acting on the cluster beside a new leader, as
//! Kubernetes' own controllers do; its supervisor starts it again as a standby. Whatever it
//! still tries to write meanwhile is refused by the store (the fencing token).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kup_api::{ApiError, Tokens};
use kup_store::{Lease, PgStore, Replica, Store};
use tower::ServiceExt;

use super::{DbTarget, Inputs, ServeArgs, http};

/// Marks a request a standby forwarded, so that it is never forwarded again.
const FORWARDED: HeaderName = HeaderName::from_static("x-kup-forwarded-by");

/// The exit status of a leader that stopped because it no longer holds the lease.
const LOST_LEASE: i32 = 3;

/// Bodies a standby forwards are read whole first (a patch bundle at most).
const MAX_FORWARDED_BODY: usize = 300 * 1024 * 1024;

/// What the replica's request handlers share with its election loop.
struct Replicated {
    store: PgStore,
    me: Replica,
    tokens: Tokens,
    /// The engine and the full API, once this replica leads and its engine is open.
    leading: RwLock<Option<(Router, Arc<kup_engine::Engine>)>>,
    /// The lease as this replica last saw it.
    seen: RwLock<Option<Lease>>,
    http: reqwest::Client,
    forwarded: AtomicU64,
    took_over: AtomicU64,
}

impl Replicated {
    fn leading(&self) -> Option<(Router, Arc<kup_engine::Engine>)> {
        self.leading
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn seen(&self) -> Option<Lease> {
        self.seen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Serves as one replica until `shutdown` resolves (then, if it leads, it resigns the lease so
/// that another takes over at once).
pub(super) async fn run(
    args: &ServeArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let inputs = Inputs::read(args)?;
    let DbTarget::Postgres(url) = &inputs.db else {
        return Err("high availability needs --db postgres://...".into());
    };
    let (Some(_), Some((tokens, _))) = (&args.token_file, inputs.tokens.clone()) else {
        return Err(
            "--db postgres://: every replica must accept the same tokens (a standby forwards the client's token to the leader); give each the same --token-file".into(),
        );
    };
    if args.listen.ip().is_unspecified() && args.advertise_url.is_none() {
        return Err(format!(
            "--listen {}: the other replicas cannot reach this one at an unspecified address; give --advertise-url http(s)://NAME:PORT",
            args.listen
        ));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let store = PgStore::connect_bounded(url, Duration::from_secs(args.lease))
        .await
        .map_err(|e| format!("--db: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = super::scheme(inputs.tls.is_some());
    let me = Replica {
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        address: args
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}")),
    };
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let shared = Arc::new(Replicated {
        store: store.clone(),
        me: me.clone(),
        tokens: tokens.clone(),
        leading: RwLock::new(None),
        seen: RwLock::new(None),
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(args.lease))
            // Above the longest long poll of the event log (300 s).
            .timeout(Duration::from_secs(330))
            .build()
            .map_err(|e| format!("cannot make the forwarding client: {e}"))?,
        forwarded: AtomicU64::new(0),
        took_over: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let app = router(Arc::clone(&shared)).layer(tower_http::trace::TraceLayer::new_for_http());
        let tls = inputs.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let limits = args.limits();
        let mut stop = stop_rx.clone();
        tokio::spawn(http::serve(listener, app, tls, limits, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    let addr_file = args.data_dir.join("listen-address");
    std::fs::write(&addr_file, format!("{addr}\n"))
        .map_err(|e| format!("cannot write {}: {e}", addr_file.display()))?;
    let dashboard = format!("{scheme}://{addr}/");
    tracing::info!(%addr, scheme, replica = %me.id, %dashboard, "kup is listening, standing by for the lease");

    let led = elect(args, inputs, &shared, shutdown).await;
    // The engine is gone; requests in progress finish (or are cut at the grace period)
    // before the lease is given up, so that the next leader never overlaps this one.
    let _ = stop_tx.send(true);
    let _ = server.await;
    if led {
        let _ = store.resign(&me).await;
        tracing::info!(replica = %me.id, "resigned the lease");
    }
    store.close().await;
    Ok(())
}

/// The election loop: campaigns every third of the lease; opens the engine when this replica
/// wins; stops the process when it loses, or when it cannot renew in time (a watchdog beside
/// the loop, so that a campaign stuck on the network cannot keep a deposed leader running).
/// Returns whether it led, once `shutdown` resolves, having let go of the engine.
async fn elect(
    args: &ServeArgs,
    inputs: Inputs,
    shared: &Arc<Replicated>,
    shutdown: impl std::future::Future<Output = ()>,
) -> bool {
    let lease = Duration::from_secs(args.lease);
    let mut inputs = Some(inputs);
    // The token the engine was opened under: any other means what it knows may be stale.
    let mut engine_token: Option<i64> = None;
    let renewed: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let watchdog = tokio::spawn({
        let renewed = Arc::clone(&renewed);
        let me = shared.me.id.clone();
        async move {
            loop {
                tokio::time::sleep(lease / 10).await;
                let last = *renewed.lock().unwrap_or_else(PoisonError::into_inner);
                if last.is_some_and(|r| r.elapsed() > lease * 2 / 3) {
                    tracing::error!(replica = %me, "this replica could not renew its lease in time: stopping so that another can lead");
                    std::process::exit(LOST_LEASE);
                }
            }
        }
    });
    tokio::pin!(shutdown);
    loop {
        let asked = Instant::now();
        let round = tokio::time::timeout(lease / 3, shared.store.campaign(&shared.me, lease)).await;
        match round {
            Ok(Ok(l)) => {
                let mine = l.holder.id == shared.me.id && shared.store.leads();
                *shared.seen.write().unwrap_or_else(PoisonError::into_inner) = Some(l.clone());
                let led = engine_token.is_some();
                if mine && engine_token.is_none_or(|t| t == l.token) {
                    *renewed.lock().unwrap_or_else(PoisonError::into_inner) = Some(asked);
                    if let Some(inputs) = inputs.take() {
                        tracing::info!(replica = %shared.me.id, token = l.token, "this replica leads now: opening the cluster and the engine");
                        shared.took_over.fetch_add(1, Ordering::Relaxed);
                        engine_token = Some(l.token);
                        lead(args.clone(), inputs, Arc::clone(shared));
                    }
                } else if led {
                    tracing::error!(replica = %shared.me.id, leader = %l.holder.id, token = l.token, "this replica lost the lease: stopping so that the new leader alone executes");
                    std::process::exit(LOST_LEASE);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot take part in the election"),
            Err(_) => tracing::warn!("the election's round did not finish in time"),
        }
        // A leader renews every third of the lease; a standby looks again then, or just
        // after the lease it saw expires, whichever comes first: a takeover waits for the
        // lease, not for the next round.
        let next = match (engine_token, shared.seen()) {
            (None, Some(l)) if l.holder.id != shared.me.id => {
                (l.left + Duration::from_millis(20)).clamp(Duration::from_millis(20), lease / 3)
            }
            _ => lease / 3,
        };
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(next) => {}
        }
    }
    watchdog.abort();
    // No more execution here: the engine's tasks stop with it.
    *shared
        .leading
        .write()
        .unwrap_or_else(PoisonError::into_inner) = None;
    engine_token.is_some()
}

/// Opens the cluster and the engine (in a task of its own, so the lease is renewed
/// meanwhile), then serves the full API from this replica.
fn lead(args: ServeArgs, inputs: Inputs, shared: Arc<Replicated>) {
    tokio::spawn(async move {
        let opened = open(&args, inputs, &shared).await;
        match opened {
            Ok(router) => {
                *shared
                    .leading
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(router);
                tracing::info!(replica = %shared.me.id, "the engine is open: this replica executes");
            }
            Err(e) => {
                tracing::error!(error = %e, "the leader cannot open the engine: giving the lease up");
                let _ = shared.store.resign(&shared.me).await;
                std::process::exit(1);
            }
        }
    });
}

async fn open(
    args: &ServeArgs,
    inputs: Inputs,
    shared: &Replicated,
) -> Result<(Router, Arc<kup_engine::Engine>), String> {
    let kube = super::connect_cluster(args, &inputs).await?;
    let engine = super::open_engine(
        args,
        inputs.cluster,
        kube,
        Arc::new(shared.store.clone()),
        &super::cluster_state(args),
        &inputs.trusted,
    )
    .await?;
    let engine = Arc::new(engine);
    let router = kup_api::router_with(
        Arc::clone(&engine),
        shared.tokens.clone(),
        kup_api::Limits::default(),
    );
    Ok((router, engine))
}

/// What every replica answers itself: health, readiness, metrics and the dashboard's page
/// without a token, the
/// cluster's status with one; the rest (with a token: a standby reads nothing of a request
/// without one, and the leader checks it again) goes to the full API while it leads, else to
/// the leader.
fn router(shared: Arc<Replicated>) -> Router {
    let with_token = Router::new()
        .route("/v1/cluster_status", get(cluster_status))
        .fallback(dispatch)
        .layer(axum::middleware::from_fn_with_state(
            shared.tokens.clone(),
            kup_api::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // Every replica serves the page itself: it holds no data.
        .merge(kup_api::dashboard_page())
        .merge(with_token)
        .with_state(shared)
}

async fn dispatch(State(shared): State<Arc<Replicated>>, req: Request) -> Response {
    match shared.leading() {
        Some((api, _)) => api.oneshot(req).await.into_response(),
        None => forward(&shared, req).await,
    }
}

fn unavailable(reason: String) -> Response {
    ApiError::unavailable(reason).into_response()
}

/// Sends the request to the leader and its answer back.
async fn forward(shared: &Replicated, req: Request) -> Response {
    if req.headers().contains_key(&FORWARDED) {
        return unavailable("this replica does not lead either (the lease just changed hands); try again in a few seconds".into());
    }
    let leader = shared
        .seen()
        .filter(|l| !l.left.is_zero() && l.holder.id != shared.me.id);
    let Some(leader) = leader else {
        return unavailable(
            "no replica leads just now (an election is under way); try again in a few seconds"
                .into(),
        );
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_FORWARDED_BODY) {
        return ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: format!("A request body may hold at most {MAX_FORWARDED_BODY} bytes"),
        }
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", leader.holder.address.trim_end_matches('/'));
    let body = match axum::body::to_bytes(body, MAX_FORWARDED_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("cannot read the request: {e}")).into_response();
        }
    };
    let mut out = shared.http.request(parts.method, &url).body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    let me = HeaderValue::from_str(&shared.me.id).unwrap_or(HeaderValue::from_static("replica"));
    shared.forwarded.fetch_add(1, Ordering::Relaxed);
    let answer = match out.header(FORWARDED, me).send().await {
        Ok(a) => a,
        Err(e) => {
            return unavailable(format!(
                "the leader {} at {} cannot be reached: {e}",
                leader.holder.id, leader.holder.address
            ));
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => return unavailable(format!("the leader's answer was cut off: {e}")),
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            resp.headers_mut().append(name, value.clone());
        }
    }
    resp
}

/// Headers of one connection, not of the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "content-length"
    )
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

async fn cluster_status(
    State(shared): State<Arc<Replicated>>,
) -> Result<Json<kup_types::ClusterStatus>, Response> {
    let lease = shared.store.lease().await.map_err(store_error)?;
    let replicas = shared.store.replicas().await.map_err(store_error)?;
    let leader = lease.as_ref().filter(|l| !l.left.is_zero());
    Ok(Json(kup_types::ClusterStatus {
        store: "postgresql".into(),
        replica: shared.me.id.clone(),
        leader: leader.map(|l| l.holder.id.clone()),
        leader_address: leader.map(|l| l.holder.address.clone()),
        token: lease.as_ref().map_or(0, |l| l.token),
        lease_age_seconds: lease.as_ref().map_or(0.0, |l| secs(l.age)),
        lease_left_seconds: lease.as_ref().map_or(0.0, |l| secs(l.left)),
        leader_for_seconds: leader.map_or(0.0, |l| secs(l.held_for)),
        replicas: replicas
            .into_iter()
            .map(|r| kup_types::ReplicaStatus {
                leader: leader.is_some_and(|l| l.holder.id == r.replica.id),
                id: r.replica.id,
                address: r.replica.address,
                seen_seconds_ago: secs(r.seen_ago),
                started_seconds_ago: secs(r.started_ago),
            })
            .collect(),
    }))
}

fn store_error(e: kup_store::StoreError) -> Response {
    tracing::error!(error = %e, "the store failed");
    unavailable(e.summary().to_string())
}

#[derive(serde::Serialize)]
struct Readiness {
    status: &'static str,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Alive: the database answers.
async fn healthz(State(shared): State<Arc<Replicated>>) -> Response {
    match shared.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Readiness {
                status: "ok",
                role: role(&shared),
                reason: None,
            }),
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

fn role(shared: &Replicated) -> &'static str {
    if shared.store.leads() {
        "leader"
    } else {
        "standby"
    }
}

/// Ready: the leader holds the lease and its engine is open; a standby is connected and knows
/// a leader to forward to.
async fn readyz(State(shared): State<Arc<Replicated>>) -> Response {
    let reason = if shared.store.ping().await.is_err() {
        Some("the store's database cannot be reached".to_string())
    } else if shared.store.leads() {
        shared
            .leading()
            .is_none()
            .then(|| "the leader is opening the cluster and the engine".to_string())
    } else {
        shared
            .seen()
            .filter(|l| !l.left.is_zero())
            .is_none()
            .then(|| "no replica leads just now".to_string())
    };
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if reason.is_none() {
            "ready"
        } else {
            "unavailable"
        },
        role: role(&shared),
        reason,
    };
    (status, Json(body)).into_response()
}

/// Prometheus text: leadership and the lease as this replica sees them, what it forwarded,
/// and, while it leads, the engine's metrics (as a single daemon's `/metrics`).
async fn metrics(State(shared): State<Arc<Replicated>>) -> Response {
    let lease = shared.seen();
    let mut text = kup_api::metrics::Text::default();
    text.one(
        "kup_leader",
        "Whether this replica leads (1) or stands by (0).",
        "gauge",
        u8::from(shared.store.leads()),
    );
    text.one(
        "kup_lease_token",
        "The lease's fencing token as this replica last saw it.",
        "gauge",
        lease.as_ref().map_or(0, |l| l.token),
    );
    text.one(
        "kup_lease_age_seconds",
        "Seconds since the leader last renewed the lease, as last seen.",
        "gauge",
        lease.as_ref().map_or(0.0, |l| secs(l.age)),
    );
    text.one(
        "kup_leadership_takeovers_total",
        "Times this replica became the leader.",
        "counter",
        shared.took_over.load(Ordering::Relaxed),
    );
    text.one(
        "kup_forwarded_requests_total",
        "Requests this replica forwarded to the leader.",
        "counter",
        shared.forwarded.load(Ordering::Relaxed),
    );
    if let Some((_, engine)) = shared.leading() {
        kup_api::metrics::engine(&mut text, &engine.metrics());
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text.into_string(),
    )
        .into_response()
}
