//! `kup serve`: the daemon. Glue only: it opens the store, the cluster and the engine, and
//! serves the API until told to stop.

mod datadir;
mod ha;
mod http;
mod tls;
mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kup_api::{Role, Tokens};
use kup_core::Policy;
use kup_engine::{Engine, EngineConfig};
use kup_sim::{Inventory, SimCluster};
use kup_store::SqliteStore;

use http::Limits;

#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Where kup keeps its database, the admin token and the simulated cluster's state.
    /// One daemon at a time: it is locked while the daemon runs.
    #[arg(long, default_value = "./kup-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen address is written to
    /// DIR/listen-address).
    #[arg(long, default_value = "127.0.0.1:6385", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The simulated cluster's description (default: the built-in standard system).
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    pub cluster: Option<PathBuf>,
    #[command(flatten)]
    pub real: crate::real::RealClusterArgs,
    /// The store: `sqlite://PATH` (default: DIR/kup.db), or `postgres://USER@HOST:PORT/DB`
    /// for several daemons sharing one PostgreSQL database in high availability (one leads
    /// and executes; the others forward commands to it and take over when it fails).
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// With PostgreSQL: how long the leader's lease lasts without a renewal (it renews every
    /// third of it); a standby takes over this long after a leader fails.
    #[arg(long, default_value_t = 15, value_name = "SECS", value_parser = clap::value_parser!(u64).range(2..=600))]
    pub lease: u64,
    /// With PostgreSQL: the URL the other daemons forward commands to while this one leads
    /// (default: http(s)://the listening address).
    #[arg(long, value_name = "URL")]
    pub advertise_url: Option<String>,
    /// With PostgreSQL: the simulated cluster's state file, shared by the daemons (default:
    /// DIR/cluster-state.json).
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    pub cluster_state: Option<PathBuf>,
    /// Where uploaded patch bundles are kept (default: DIR/patches); replicas on PostgreSQL
    /// share one (a shared file system), so that a new leader has the bundles the store lists.
    #[arg(long, value_name = "DIR")]
    pub patch_dir: Option<PathBuf>,
    /// Multiplies every simulated duration (1.0 = realistic minutes, 0 = instant, at most
    /// 1000); the simulation's only: a real cluster's steps take the time they take.
    #[arg(long, default_value_t = 1.0, value_name = "X", value_parser = parse_scale, allow_negative_numbers = true, conflicts_with = "kubeconfig")]
    pub time_scale: f64,
    /// Tokens, one per line: `admin TOKEN` or `reader TOKEN`, each at least 16 visible ASCII
    /// characters (default: a random admin token, created on first start in DIR/admin-token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A public key (`kup-public-key HEX`, from `kup sw-patch keygen`) whose patch bundles the
    /// daemon accepts; repeat for several. Without one, uploads are refused.
    #[arg(long = "trusted-key", value_name = "FILE")]
    pub trusted_keys: Vec<PathBuf>,
    /// Start with a new, empty store although DIR was used before (its database is missing
    /// or empty). Never discards a database that exists.
    #[arg(long)]
    pub init: bool,
    /// Seconds a client has to send a request's headers; also the longest a connection may
    /// stay idle between requests.
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout: u64,
    /// How long a kind of step may run before it is marked failed ("timed out"), e.g.
    /// `--step-timeout kubelet=1200`; repeat for several. Defaults: StarlingX's (images 1800 s,
    /// control plane 420, networking 900, kubelet 900; lock and unlock 1800, swact 600), times
    /// the time scale, at least 60 s.
    #[arg(long = "step-timeout", value_name = "KIND=SECS", value_parser = parse_step_timeout)]
    pub step_timeouts: Vec<(kup_types::StepKind, u64)>,
    /// Connections served at once; more wait until one closes.
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_connections: u64,
    /// Serve HTTPS only, with this certificate (PEM: the daemon's own first, then any
    /// intermediates). Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ServeArgs {
    fn limits(&self) -> Limits {
        Limits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            ..Limits::default()
        }
    }
}

fn parse_step_timeout(s: &str) -> Result<(kup_types::StepKind, u64), String> {
    let kinds = || {
        kup_types::StepKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (kind, secs) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KIND=SECS"))?;
    let kind = kup_types::StepKind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind)
        .ok_or_else(|| format!("{kind:?} is not a kind of step ({})", kinds()))?;
    match secs.parse::<u64>() {
        Ok(n) if (1..=7 * 24 * 3600).contains(&n) => Ok((kind, n)),
        _ => Err(format!(
            "{secs:?} is not a number of seconds from 1 to 604800"
        )),
    }
}

/// The step deadlines: the defaults scaled like the simulated steps (never below a minute),
/// then what the command line sets.
fn step_deadlines(
    args: &ServeArgs,
) -> std::collections::BTreeMap<kup_types::StepKind, jiff::SignedDuration> {
    let mut deadlines = kup_core::default_deadlines();
    for d in deadlines.values_mut() {
        let scaled = d.as_secs_f64() * args.time_scale;
        *d = jiff::SignedDuration::from_secs_f64(scaled.max(60.0));
    }
    if args.real.kubeconfig.is_some() {
        // A kubeadm control plane's step is the package, the backups and `kubeadm upgrade`,
        // whose own wait for each static pod is five minutes.
        deadlines.insert(
            kup_types::StepKind::ControlPlane,
            jiff::SignedDuration::from_secs(REAL_CONTROL_PLANE_DEADLINE),
        );
    }
    for (kind, secs) in &args.step_timeouts {
        deadlines.insert(*kind, jiff::SignedDuration::from_secs(*secs as i64));
    }
    deadlines
}

/// A real cluster's control-plane step deadline, in seconds.
const REAL_CONTROL_PLANE_DEADLINE: i64 = 1800;

/// How long a real cluster's drain may try: nine tenths of the lock's deadline, so that a
/// drain a budget blocks fails by itself, naming the pod and the budget, before the engine
/// gives the lock up.
fn drain_timeout(args: &ServeArgs) -> std::time::Duration {
    let lock = step_deadlines(args)
        .get(&kup_types::StepKind::Lock)
        .map_or(1800.0, |d| d.as_secs_f64());
    std::time::Duration::from_secs_f64((lock * 0.9).max(1.0))
}

/// Beyond this a simulated step would outlast anyone watching it.
const MAX_TIME_SCALE: f64 = 1000.0;

pub(crate) fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=MAX_TIME_SCALE).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number from 0 to {MAX_TIME_SCALE}")),
    }
}

/// A running daemon: its address and the engine, for in-process use (`kup demo`, tests).
pub struct Daemon {
    pub addr: SocketAddr,
    pub admin_token: Option<String>,
    pub engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    tokens: Tokens,
    limits: Limits,
    store: SqliteStore,
    /// Held until the daemon is dropped: no second daemon on the same directory or database.
    _locks: datadir::Locks,
}

fn db_target(args: &ServeArgs) -> Result<DbTarget, String> {
    let path = match &args.db {
        None => return Ok(DbTarget::Sqlite(args.data_dir.join("kup.db"))),
        Some(url) => {
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
            {
                if path.is_empty() {
                    return Err(format!("--db {url}: the SQLite URL names no file"));
                }
                // kup's state must outlive the process, in the file named.
                if path == ":memory:" || path.contains('?') || path.starts_with("file:") {
                    return Err(format!(
                        "--db {url}: name a database file (no in-memory database, no options)"
                    ));
                }
                if Path::new(path).is_dir() {
                    return Err(format!("--db {url}: {path} is a directory"));
                }
                PathBuf::from(path)
            } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                return Ok(DbTarget::Postgres(url.clone()));
            } else {
                return Err(format!(
                    "--db {url}: expected sqlite://PATH or postgres://USER@HOST:PORT/DB"
                ));
            }
        }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "--db {}: directory {} does not exist",
            path.display(),
            parent.display()
        ));
    }
    Ok(DbTarget::Sqlite(path))
}

/// The cluster kup drives: the simulation (its cluster file) or a real one.
enum ClusterInput {
    Sim(Inventory),
    Kube(crate::real::RealCluster),
}

/// Where the store is.
enum DbTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Everything the command line names, read and checked before anything is created.
struct Inputs {
    cluster: ClusterInput,
    db: DbTarget,
    trusted: Vec<kup_patch::VerifyingKey>,
    /// `None`: the generated admin token, to be created.
    tokens: Option<(Tokens, Option<String>)>,
    /// `None`: plain HTTP.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// A cluster file, read and checked; the error names the file.
pub fn read_cluster_file(file: &Path) -> Result<Inventory, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read cluster file {}: {e}", file.display()))?;
    Inventory::parse(&text).map_err(|e| format!("{}: {e}", file.display()))
}

impl Inputs {
    fn read(args: &ServeArgs) -> Result<Inputs, String> {
        if args.data_dir.exists() && !args.data_dir.is_dir() {
            return Err(format!(
                "data directory {} is not a directory",
                args.data_dir.display()
            ));
        }
        let cluster = match (args.real.read()?, &args.cluster) {
            (Some(real), _) => ClusterInput::Kube(real),
            (None, None) => ClusterInput::Sim(Inventory::default_cluster()),
            (None, Some(file)) => ClusterInput::Sim(read_cluster_file(file)?),
        };
        let db = db_target(args)?;
        let mut trusted = Vec::new();
        for file in &args.trusted_keys {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read trusted key {}: {e}", file.display()))?;
            trusted.push(
                kup_patch::parse_public_key(&text)
                    .map_err(|e| format!("trusted key {}: {e}", file.display()))?,
            );
        }
        let tokens = match &args.token_file {
            Some(file) => Some((tokens::read_token_file(file)?, None)),
            None => tokens::read_admin_token(&args.data_dir.join("admin-token"))?
                .map(|t| (Tokens::new([(Role::Admin, t.clone())]), Some(t))),
        };
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            (None, None) => None,
            // clap requires both; said again for callers that build the arguments themselves.
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        Ok(Inputs {
            cluster,
            db,
            trusted,
            tokens,
            tls,
        })
    }
}

/// The lock files: the data directory's, and the database's beside it (another data
/// directory may name the same database with `--db`), by its real path (a symbolic link to
/// it takes the same lock).
fn lock_targets(dir: &Path, db: &Path) -> Vec<(PathBuf, String)> {
    let mut db_lock = datadir::real_path(db).into_os_string();
    db_lock.push(".lock");
    vec![
        (
            dir.join("kup.lock"),
            format!("data directory {}", dir.display()),
        ),
        (PathBuf::from(db_lock), format!("database {}", db.display())),
    ]
}

impl Daemon {
    /// Opens everything and binds the listener; nothing is served until `run`. Every input,
    /// the port included, is checked before anything is created, recovered or written; a start
    /// refused after that leaves nothing it created behind.
    pub async fn open(args: &ServeArgs) -> Result<Daemon, String> {
        let inputs = Inputs::read(args)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        // A real cluster is reached (and its first lists read) before anything is created.
        let kube = connect_cluster(args, &inputs).await?;
        let mut created = datadir::Created::default();
        let opened = Self::open_in(args, inputs, kube, listener, &mut created).await;
        if opened.is_err() {
            created.remove();
        }
        opened
    }

    async fn open_in(
        args: &ServeArgs,
        inputs: Inputs,
        kube: Option<kup_kube::KubeDriver>,
        listener: tokio::net::TcpListener,
        created: &mut datadir::Created,
    ) -> Result<Daemon, String> {
        let DbTarget::Sqlite(db) = &inputs.db else {
            return Err(
                "a PostgreSQL store is served by `kup serve` with high availability".into(),
            );
        };
        let db = db.clone();
        let dir = &args.data_dir;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
            created.dir = Some(dir.clone());
        }
        let targets = lock_targets(dir, &db);
        created.files.extend(
            targets
                .iter()
                .map(|(p, _)| p.clone())
                .filter(|p| !p.exists()),
        );
        let mut locks = datadir::lock(&targets)?;
        let open = datadir::store_open(dir, &db, args.init)?;
        datadir::check_layout(dir)?;
        // A hard link to a database in use has a lock file of its own: the database file
        // itself is locked too, before anything reads it.
        if open == datadir::StoreOpen::Existing {
            locks.hold_file(&db, &format!("database {}", db.display()))?;
        } else {
            created.files.push(db.clone());
        }
        let store = match open {
            datadir::StoreOpen::Existing => SqliteStore::open_existing(&db).await,
            datadir::StoreOpen::Create => SqliteStore::open(&db).await,
        }
        .map_err(|e| e.to_string())?;
        if open == datadir::StoreOpen::Create {
            locks.hold_file(&db, &format!("database {}", db.display()))?;
        }
        let (tokens, admin_token) = match inputs.tokens {
            Some(t) => t,
            None => {
                let t = tokens::write_admin_token(&dir.join("admin-token"))?;
                (Tokens::new([(Role::Admin, t.clone())]), Some(t))
            }
        };
        let engine = open_engine(
            args,
            inputs.cluster,
            kube,
            Arc::new(store.clone()),
            &cluster_state(args),
            &inputs.trusted,
        )
        .await?;
        // Nothing can fail after the recovery the engine just ran: the address is known, and
        // check_layout made sure its file can be written.
        created.forget();
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let addr_file = dir.join("listen-address");
        std::fs::write(&addr_file, format!("{addr}\n"))
            .map_err(|e| format!("cannot write {}: {e}", addr_file.display()))?;
        let scheme = scheme(inputs.tls.is_some());
        let dashboard = format!("{scheme}://{addr}/");
        tracing::info!(%addr, scheme, db = %db.display(), %dashboard, "kup is listening");
        Ok(Daemon {
            addr,
            admin_token,
            engine: Arc::new(engine),
            listener,
            tls: inputs.tls,
            tokens,
            limits: args.limits(),
            store,
            _locks: locks,
        })
    }

    /// Serves until `shutdown` resolves, then finishes the requests in progress and closes
    /// the database (which folds its write-ahead log into it).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let app = kup_api::router(self.engine, self.tokens)
            .layer(tower_http::trace::TraceLayer::new_for_http());
        let tls = self.tls.map(tokio_rustls::TlsAcceptor::from);
        http::serve(self.listener, app, tls, self.limits, shutdown).await;
        self.store.close().await;
        drop(self._locks);
        Ok(())
    }
}

/// A real cluster's driver, reached and its first lists read; `None` for the simulation.
async fn connect_cluster(
    args: &ServeArgs,
    inputs: &Inputs,
) -> Result<Option<kup_kube::KubeDriver>, String> {
    let ClusterInput::Kube(real) = &inputs.cluster else {
        return Ok(None);
    };
    let settings = kup_kube::Settings {
        drain_timeout: drain_timeout(args),
        patch_files: patch_files(&patch_dir(args), &inputs.trusted),
        ..kup_kube::Settings::default()
    };
    real.connect(settings).await.map(Some)
}

/// The URL scheme of a daemon that serves TLS or not.
fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// Where the patch bundles are kept.
fn patch_dir(args: &ServeArgs) -> PathBuf {
    args.patch_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("patches"))
}

/// Where the simulation keeps its state.
fn cluster_state(args: &ServeArgs) -> PathBuf {
    args.cluster_state
        .clone()
        .unwrap_or_else(|| args.data_dir.join("cluster-state.json"))
}

/// The cluster's driver and the engine on `store`: what a daemon that executes opens (the only
/// one on SQLite; the leader on PostgreSQL). The simulation keeps its state in `state`.
async fn open_engine(
    args: &ServeArgs,
    cluster: ClusterInput,
    kube: Option<kup_kube::KubeDriver>,
    store: Arc<dyn kup_store::Store>,
    state: &Path,
    trusted: &[kup_patch::VerifyingKey],
) -> Result<Engine, String> {
    let (driver, catalog): (Arc<dyn kup_driver::Driver>, _) = match (cluster, kube) {
        (ClusterInput::Sim(inv), _) => {
            check_cluster_state(state, &*store, args.init).await?;
            let sim = SimCluster::with_state_file(&inv, args.time_scale, state.to_path_buf())
                .map_err(|e| e.to_string())?;
            let catalog = sim.catalog();
            (Arc::new(sim), catalog)
        }
        (ClusterInput::Kube(real), Some(kube)) => {
            let catalog = crate::real::catalog(&kube, &real.catalog).await;
            (Arc::new(kube), catalog)
        }
        (ClusterInput::Kube(_), None) => {
            return Err("the real cluster was not reached".into());
        }
    };
    let config = EngineConfig {
        catalog,
        policy: Policy {
            deadlines: step_deadlines(args),
            // Scaled like the simulated steps it waits between.
            retry_backoff: jiff::SignedDuration::from_secs_f64(
                Policy::default().retry_backoff.as_secs_f64() * args.time_scale,
            ),
            ..Policy::default()
        },
        patch_repo: patch_repo(&patch_dir(args), trusted),
    };
    Engine::open(store, driver, config)
        .await
        .map_err(|e| format!("cannot open the engine: {e}"))
}

/// The patch repository, when trusted keys allow patches at all.
fn patch_repo(dir: &Path, trusted: &[kup_patch::VerifyingKey]) -> Option<kup_engine::PatchRepo> {
    (!trusted.is_empty()).then(|| kup_engine::PatchRepo {
        dir: dir.to_path_buf(),
        trusted: trusted.to_vec(),
        limits: kup_patch::Limits::default(),
    })
}

/// How a real cluster's driver reads a patch's files (its networking manifests, its binaries).
fn patch_files(dir: &Path, trusted: &[kup_patch::VerifyingKey]) -> Option<kup_kube::PatchFiles> {
    let repo = patch_repo(dir, trusted)?;
    Some(kup_kube::PatchFiles::new(
        move |f: &kup_types::PatchFile| repo.read_file(&f.patch, &f.path),
    ))
}

/// The simulated cluster's state goes with the store: without it the simulation would start
/// a fresh cluster that never took the steps the store records as done. So a missing state
/// file is refused when its journal is left (the state was there) or the store has a history,
/// as a lost database is, unless `--init` starts everything afresh.
async fn check_cluster_state(
    path: &Path,
    store: &dyn kup_store::Store,
    init: bool,
) -> Result<(), String> {
    if init || path.exists() {
        return Ok(());
    }
    let mut journal = path.as_os_str().to_owned();
    journal.push(".journal");
    let journal = PathBuf::from(journal);
    let why = if journal.exists() {
        format!("its journal {} is left", journal.display())
    } else {
        match store.last_event_seq().await.map_err(|e| e.to_string())? {
            0 => return Ok(()),
            n => format!("the store records {n} events on it"),
        }
    };
    Err(format!(
        "the simulated cluster's state {} is missing, but {why}: a fresh cluster would not have the steps kup recorded; restore the state from a backup, or move the database away too and start with --init to begin again",
        path.display()
    ))
}

/// `kup serve`: one daemon on SQLite, or a replica of several on PostgreSQL.
pub async fn serve(args: &ServeArgs) -> Result<(), String> {
    if matches!(db_target(args)?, DbTarget::Postgres(_)) {
        return ha::run(args, shutdown_signal()).await;
    }
    let daemon = Daemon::open(args).await?;
    daemon.run(shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
