//! A typed client for kup's sysinv-compatible REST API (`/v1`), used by the `kup` CLI.
//!
//! Every method is one HTTP request; errors carry the server's refusal reason as is, so the
//! CLI can print it on one `Error: ` line.

mod tls;

use std::time::Duration;

use kup_types::{
    AlarmList, AlarmView, ErrorBody, EventList, EventView, HostPatchList, HostPatchView,
    HostUpgradeRequest, IHost, IHostList, KubeHostUpgradeList, KubeHostUpgradeView,
    KubeUpgradeCreate, KubeUpgradeList, KubeUpgradeView, KubeVersionDetail, KubeVersionList,
    KubeVersionSummary, PatchList, PatchOp, PatchView,
};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use tls::{TrustedCas, certificate_problem, pem_problem, read_pem_certificates};

/// The header sysinv clients authenticate with.
const TOKEN_HEADER: &str = "x-auth-token";

/// Why a request did not produce the object asked for.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-2xx status; `reason` is its refusal reason.
    #[error("{reason}")]
    Api { status: u16, reason: String },
    /// 401: no token, or not one the daemon knows.
    #[error(
        "authentication failed: the daemon did not accept the token (pass a valid one with --token or KUP_TOKEN)"
    )]
    Unauthorized,
    /// Nothing answered at the address (refused, unresolvable, timed out while connecting).
    #[error("cannot reach kup at {url}: {}", root_cause(source))]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The daemon's TLS certificate was refused: signed by a CA not trusted, for another name,
    /// expired.
    #[error(
        "cannot reach kup at {url}: its TLS certificate is not trusted: {reason} (to trust the CA that signed it, pass --ca-file FILE or set KUP_CA_FILE)"
    )]
    Certificate { url: String, reason: String },
    /// The TLS handshake failed for another reason (`hint` is empty or says what may be
    /// wrong).
    #[error("cannot reach kup at {url}: the TLS handshake failed: {reason}{hint}")]
    Tls {
        url: String,
        reason: String,
        hint: &'static str,
    },
    /// The connection was made but the exchange failed (timeout, reset, truncated body).
    #[error("request to {url} failed: {}", root_cause(source))]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx reply whose body is not what this endpoint returns.
    #[error("unexpected reply from {url}: {message}")]
    Decode { url: String, message: String },
    /// The base URL or token cannot be used to build requests.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The HTTP status of a refusal, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Unauthorized => Some(401),
            _ => None,
        }
    }
}

/// The innermost error of a chain: reqwest's own message only says "error sending request",
/// the useful part ("Connection refused") is at the bottom.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The most of an error reply's body that is read: kup's error bodies are a few hundred
/// bytes, and what is not one of them is only quoted in part.
pub const MAX_ERROR_BODY: usize = 1024 * 1024;

/// The most of a reply that is not kup's (an HTML error page, a proxy's text) a message
/// quotes, in characters.
pub const QUOTED_CHARS: usize = 200;

/// The most of a refusal reason that is kept, in characters: kup's own are one short line.
pub const MAX_REASON_CHARS: usize = 2000;

/// What a non-2xx reply says, as it came: its status, content type and (the start of) its body.
#[derive(Clone, Copy, Debug)]
pub struct ErrorReply<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    /// The body, or its first [`MAX_ERROR_BODY`] bytes.
    pub body: &'a [u8],
    /// The body's whole length, when known (it may be longer than `body`).
    pub length: Option<u64>,
}

/// The refusal reason of a non-2xx reply: sysinv's `error_message` (its faultstring when it
/// has the nested form) when the body is that JSON object; otherwise what the server answered:
/// its status, its content type and at most [`QUOTED_CHARS`] characters of its body (an HTML
/// error page of a proxy is not worth more).
pub fn error_reason(reply: &ErrorReply<'_>) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(reply.body) {
        let reason = parsed.reason();
        if !reason.trim().is_empty() {
            return shorten(reason.trim(), MAX_REASON_CHARS);
        }
    }
    let status = match StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(name) => format!("HTTP {} {name}", reply.status),
        None => format!("HTTP {}", reply.status),
    };
    let text = String::from_utf8_lossy(reply.body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return format!("the server answered {status} with an empty body");
    }
    let content_type = reply
        .content_type
        .map(|t| shorten(t.trim(), 100))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "no content type".into());
    let length = reply
        .length
        .unwrap_or(reply.body.len() as u64)
        .max(reply.body.len() as u64);
    format!(
        "the server answered {status} ({content_type}, {length} bytes), not kup's error body: {}",
        shorten(&text, QUOTED_CHARS)
    )
}

/// `text` cut to at most `max` characters, with `…` where it was cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// `url` with its userinfo (`user:password@`) replaced by `***@`, for messages: a URL is
/// printed, its credentials never. Works on text that does not parse as a URL too.
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    // Up to the last `@` anywhere: a password with a `/`, `?` or `#` in it (not a valid URL,
    // but typed) is hidden too. No path or query kup builds has an `@` in it (both escape it).
    match rest.rfind('@') {
        Some(at) => format!("{}***@{}", &url[..start], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `base` with `segments` appended to its path, each percent-encoded whole: every byte but
/// the unreserved characters (`A-Z a-z 0-9 - . _ ~`) is escaped, so the server receives each
/// segment exactly as given. (`Url::path_segments_mut` would not do: the URL parser drops
/// tab, CR and LF from what it pushes, and skips `.` and `..`.) A segment that no URL path can
/// carry as itself (empty, `.`, `..`) is refused.
pub fn api_url(base: &Url, segments: &[&str]) -> Result<Url, ClientError> {
    if base.cannot_be_a_base() {
        return Err(ClientError::Config(format!(
            "{} cannot be a base URL",
            redact_url(base.as_str())
        )));
    }
    let mut path = base.path().trim_end_matches('/').to_string();
    for segment in segments {
        if segment.is_empty() || *segment == "." || *segment == ".." {
            return Err(ClientError::Config(format!(
                "{segment:?} is not a name that can be looked up"
            )));
        }
        path.push('/');
        for b in segment.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                path.push(char::from(b));
            } else {
                path.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut url = base.clone();
    url.set_path(&path);
    Ok(url)
}

/// Parses and normalises the base URL: http(s) only, no query, always ending in `/v1`.
pub fn parse_base_url(base_url: &str) -> Result<Url, ClientError> {
    let shown = redact_url(base_url);
    let bad = |why: &str| ClientError::Config(format!("invalid --url {shown:?}: {why}"));
    if !base_url.contains("://") {
        return Err(bad(&format!(
            "it needs a scheme, e.g. http://{}",
            redact_url(base_url.trim())
        )));
    }
    let mut url = Url::parse(base_url.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none() {
        return Err(bad("it has no host"));
    }
    url.set_query(None);
    url.set_fragment(None);
    let ends_in_v1 = url
        .path_segments()
        .and_then(|mut s| s.rfind(|seg| !seg.is_empty()))
        == Some("v1");
    if !ends_in_v1 {
        url = api_url(&url, &["v1"])?;
    }
    {
        // Keep no trailing slash, so joining never yields `//`.
        let mut path = url
            .path_segments_mut()
            .map_err(|()| bad("it cannot be a base URL"))?;
        path.pop_if_empty();
    }
    Ok(url)
}

/// A connection to one kup daemon.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// Always ends in `/v1`, without a trailing slash.
    base: Url,
    /// What the user typed, for messages, without its credentials.
    display_url: String,
}

impl Client {
    /// A client for the daemon at `base_url` (e.g. `http://127.0.0.1:6385`), authenticating
    /// every request with `token`. Makes no request.
    pub fn new(base_url: &str, token: &str) -> Result<Client, ClientError> {
        Self::with_trusted_cas(base_url, token, &TrustedCas::default())
    }

    /// `new`, trusting the certificates of `cas` besides the system's for an `https://` URL.
    pub fn with_trusted_cas(
        base_url: &str,
        token: &str,
        cas: &TrustedCas,
    ) -> Result<Client, ClientError> {
        let base = parse_base_url(base_url)?;
        let mut token_value = HeaderValue::from_str(token.trim()).map_err(|_| {
            ClientError::Config("the token contains characters not allowed in a header".into())
        })?;
        token_value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(TOKEN_HEADER, token_value);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let mut http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120));
        http = if base.scheme() == "https" {
            // The token never leaves over plain http, not even through a redirect.
            http.https_only(true)
                .tls_certs_merge(cas.reqwest_certificates()?)
        } else {
            // Plain http needs no trust store: none is loaded (a host without one still
            // works).
            http.tls_certs_only([])
        };
        let http = http.build().map_err(|e| {
            ClientError::Config(format!("cannot set up the HTTP client: {}", root_cause(&e)))
        })?;
        Ok(Client {
            http,
            base,
            display_url: redact_url(base_url.trim().trim_end_matches('/')),
        })
    }

    /// The `/v1` URL requests are made under.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET /v1/kube_versions`, in the server's order.
    pub async fn kube_versions(&self) -> Result<Vec<KubeVersionSummary>, ClientError> {
        let list: KubeVersionList = self.get(&["kube_versions"]).await?;
        Ok(list.kube_versions)
    }

    /// `GET /v1/kube_versions/{version}`.
    pub async fn kube_version(&self, version: &str) -> Result<KubeVersionDetail, ClientError> {
        self.get(&["kube_versions", version]).await
    }

    /// `GET /v1/kube_upgrade`: the upgrade in progress, if any.
    pub async fn kube_upgrade(&self) -> Result<Option<KubeUpgradeView>, ClientError> {
        let list: KubeUpgradeList = self.get(&["kube_upgrade"]).await?;
        Ok(list.kube_upgrades.into_iter().next())
    }

    /// `POST /v1/kube_upgrade`: starts an upgrade.
    pub async fn kube_upgrade_start(
        &self,
        req: &KubeUpgradeCreate,
    ) -> Result<KubeUpgradeView, ClientError> {
        self.send(Method::POST, &["kube_upgrade"], Some(req)).await
    }

    /// `PATCH /v1/kube_upgrade` with `/state`: the cluster-step dispatcher.
    pub async fn kube_upgrade_set_state(
        &self,
        state: &str,
    ) -> Result<KubeUpgradeView, ClientError> {
        self.kube_upgrade_set_state_on(state, None).await
    }

    /// The same with the host it acts on (`kube-host-cordon|uncordon`), sent as StarlingX's
    /// client does: `/hostname` first, then `/state`.
    pub async fn kube_upgrade_set_state_on(
        &self,
        state: &str,
        hostname: Option<&str>,
    ) -> Result<KubeUpgradeView, ClientError> {
        let mut body = Vec::new();
        if let Some(h) = hostname {
            body.push(replace("/hostname", h));
        }
        body.push(replace("/state", state));
        self.send(Method::PATCH, &["kube_upgrade"], Some(&body))
            .await
    }

    /// `DELETE /v1/kube_upgrade`.
    pub async fn kube_upgrade_delete(&self) -> Result<(), ClientError> {
        self.request(Method::DELETE, &["kube_upgrade"], None::<&()>, &[])
            .await
            .map(|_| ())
    }

    /// `GET /v1/kube_host_upgrades`.
    pub async fn kube_host_upgrades(&self) -> Result<Vec<KubeHostUpgradeView>, ClientError> {
        let list: KubeHostUpgradeList = self.get(&["kube_host_upgrades"]).await?;
        Ok(list.kube_host_upgrades)
    }

    /// `PATCH /v1/kube_host_upgrades/{key}` with `/status`: marks the step or action running
    /// on the host as failed; `key` is a hostname, row id or uuid.
    pub async fn kube_host_upgrade_failed(
        &self,
        key: &str,
        status: &str,
    ) -> Result<KubeHostUpgradeView, ClientError> {
        let body = [replace("/status", status)];
        self.send(Method::PATCH, &["kube_host_upgrades", key], Some(&body))
            .await
    }

    /// `GET /v1/kube_upgrade_strategy`; `None` when there is none.
    pub async fn strategy(&self) -> Result<Option<kup_types::StrategyView>, ClientError> {
        match self.get(&["kube_upgrade_strategy"]).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/kube_upgrade_strategy`: builds a strategy.
    pub async fn strategy_create(
        &self,
        req: &kup_types::StrategyCreate,
    ) -> Result<kup_types::StrategyView, ClientError> {
        self.send(Method::POST, &["kube_upgrade_strategy"], Some(req))
            .await
    }

    /// `POST /v1/kube_upgrade_strategy/actions`: `apply-all` or `abort`.
    pub async fn strategy_action(
        &self,
        action: &str,
    ) -> Result<kup_types::StrategyView, ClientError> {
        self.strategy_post(kup_types::StrategyActionRequest {
            action: action.into(),
            rollback: false,
        })
        .await
    }

    /// Aborts the strategy; with `rollback`, the upgrade is taken back once it has stopped.
    pub async fn strategy_abort(
        &self,
        rollback: bool,
    ) -> Result<kup_types::StrategyView, ClientError> {
        self.strategy_post(kup_types::StrategyActionRequest {
            action: "abort".into(),
            rollback,
        })
        .await
    }

    async fn strategy_post(
        &self,
        body: kup_types::StrategyActionRequest,
    ) -> Result<kup_types::StrategyView, ClientError> {
        self.send(
            Method::POST,
            &["kube_upgrade_strategy", "actions"],
            Some(&body),
        )
        .await
    }

    /// `DELETE /v1/kube_upgrade_strategy`.
    pub async fn strategy_delete(&self) -> Result<(), ClientError> {
        self.request(Method::DELETE, &["kube_upgrade_strategy"], None::<&()>, &[])
            .await
            .map(|_| ())
    }

    /// `GET /v1/ihosts`.
    pub async fn hosts(&self) -> Result<Vec<IHost>, ClientError> {
        let list: IHostList = self.get(&["ihosts"]).await?;
        Ok(list.ihosts)
    }

    /// `GET /v1/ihosts/{key}`; `key` is a hostname, numeric id or uuid.
    pub async fn host(&self, key: &str) -> Result<IHost, ClientError> {
        self.get(&["ihosts", key]).await
    }

    /// `PATCH /v1/ihosts/{key}` with `/action`: `lock`, `force-lock`, `unlock`,
    /// `force-unlock` or `swact`.
    pub async fn host_action(&self, key: &str, action: &str) -> Result<IHost, ClientError> {
        let body = [replace("/action", action)];
        self.send(Method::PATCH, &["ihosts", key], Some(&body))
            .await
    }

    /// `POST /v1/ihosts/{key}/kube_upgrade_control_plane`.
    pub async fn kube_upgrade_control_plane(
        &self,
        key: &str,
        force: bool,
    ) -> Result<IHost, ClientError> {
        let body = HostUpgradeRequest { force };
        self.send(
            Method::POST,
            &["ihosts", key, "kube_upgrade_control_plane"],
            Some(&body),
        )
        .await
    }

    /// `POST /v1/ihosts/{key}/kube_upgrade_kubelet`.
    pub async fn kube_upgrade_kubelet(&self, key: &str, force: bool) -> Result<IHost, ClientError> {
        let body = HostUpgradeRequest { force };
        self.send(
            Method::POST,
            &["ihosts", key, "kube_upgrade_kubelet"],
            Some(&body),
        )
        .await
    }

    /// `GET /v1/health/kube-upgrade[/relaxed]`: the `[OK]`/`[Fail]` report text.
    pub async fn health_kube_upgrade(&self, relaxed: bool) -> Result<String, ClientError> {
        if relaxed {
            self.get(&["health", "kube-upgrade", "relaxed"]).await
        } else {
            self.get(&["health", "kube-upgrade"]).await
        }
    }

    /// `GET /v1/alarms`.
    pub async fn alarms(&self) -> Result<Vec<AlarmView>, ClientError> {
        let list: AlarmList = self.get(&["alarms"]).await?;
        Ok(list.alarms)
    }

    /// `GET /v1/events?after=&limit=`: events with `seq > after`, oldest first.
    pub async fn events(&self, after: i64, limit: u32) -> Result<Vec<EventView>, ClientError> {
        Ok(self.events_wait(after, limit, 0).await?.events)
    }

    /// `GET /v1/events?after=&limit=&wait=`: the long poll. Answers as soon as an event
    /// follows `after`, or after `wait` seconds with none; `last_seq` says where the log ends.
    pub async fn events_wait(
        &self,
        after: i64,
        limit: u32,
        wait: u32,
    ) -> Result<EventList, ClientError> {
        let mut query = vec![("after", after.to_string()), ("limit", limit.to_string())];
        if wait > 0 {
            query.push(("wait", wait.to_string()));
        }
        let bytes = self
            .request(Method::GET, &["events"], None::<&()>, &query)
            .await?;
        self.decode(&["events"], &bytes)
    }

    /// `GET /v1/upgrade/plan` (`kup upgrade plan`); the plan as JSON.
    pub async fn upgrade_plan(
        &self,
        to: Option<&str>,
        max_parallel_worker_hosts: u32,
        min_free_disk_gib: u32,
    ) -> Result<serde_json::Value, ClientError> {
        let mut query = vec![
            (
                "max_parallel_worker_hosts",
                max_parallel_worker_hosts.to_string(),
            ),
            ("min_free_disk_gib", min_free_disk_gib.to_string()),
        ];
        if let Some(to) = to {
            query.push(("to", to.to_string()));
        }
        let segments = ["upgrade", "plan"];
        let bytes = self
            .request(Method::GET, &segments, None::<&()>, &query)
            .await?;
        self.decode(&segments, &bytes)
    }

    /// `GET /v1/info` (`kup info`).
    pub async fn info(&self) -> Result<kup_types::ClusterInfo, ClientError> {
        self.get(&["info"]).await
    }

    /// `GET /v1/cluster_status` (`ha-status`).
    pub async fn cluster_status(&self) -> Result<kup_types::ClusterStatus, ClientError> {
        self.get(&["cluster_status"]).await
    }

    /// `GET /v1/patches` (`sw-patch query`).
    pub async fn patches(&self) -> Result<Vec<PatchView>, ClientError> {
        let list: PatchList = self.get(&["patches"]).await?;
        Ok(list.patches)
    }

    /// `GET /v1/patches/{id}`.
    pub async fn patch(&self, id: &str) -> Result<PatchView, ClientError> {
        self.get(&["patches", id]).await
    }

    /// `POST /v1/patches` with the bundle file as the body (`sw-patch upload`).
    pub async fn patch_upload(&self, bundle: Vec<u8>) -> Result<PatchView, ClientError> {
        let segments = ["patches"];
        let req = self
            .http
            .post(api_url(&self.base, &segments)?)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bundle);
        let bytes = self.exchange(req, &segments).await?;
        self.decode(&segments, &bytes)
    }

    /// `POST /v1/patches/{id}/apply`.
    pub async fn patch_apply(&self, id: &str) -> Result<PatchView, ClientError> {
        self.send(Method::POST, &["patches", id, "apply"], None::<&()>)
            .await
    }

    /// `POST /v1/patches/{id}/remove`.
    pub async fn patch_remove(&self, id: &str) -> Result<PatchView, ClientError> {
        self.send(Method::POST, &["patches", id, "remove"], None::<&()>)
            .await
    }

    /// `DELETE /v1/patches/{id}`.
    pub async fn patch_delete(&self, id: &str) -> Result<(), ClientError> {
        self.request(Method::DELETE, &["patches", id], None::<&()>, &[])
            .await
            .map(|_| ())
    }

    /// `POST /v1/ihosts/{key}/patch_install` (`sw-patch host-install`).
    pub async fn patch_host_install(&self, key: &str) -> Result<HostPatchView, ClientError> {
        self.send(Method::POST, &["ihosts", key, "patch_install"], None::<&()>)
            .await
    }

    /// `GET /v1/patch_hosts` (`sw-patch query-hosts`).
    pub async fn patch_hosts(&self) -> Result<Vec<HostPatchView>, ClientError> {
        let list: HostPatchList = self.get(&["patch_hosts"]).await?;
        Ok(list.patch_hosts)
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, ClientError> {
        self.send(Method::GET, segments, None::<&()>).await
    }

    async fn send<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = self.request(method, segments, body, &[]).await?;
        self.decode(segments, &bytes)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        bytes: &[u8],
    ) -> Result<T, ClientError> {
        // serde quotes what it did not expect, which may be a whole (large) string.
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode {
            url: self.url_for_message(segments),
            message: shorten(&e.to_string(), QUOTED_CHARS),
        })
    }

    /// One request; the body of a 2xx reply, or the error it stands for.
    async fn request<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
        query: &[(&str, String)],
    ) -> Result<Vec<u8>, ClientError> {
        let url = api_url(&self.base, segments)?;
        let mut req = self.http.request(method, url);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        self.exchange(req, segments).await
    }

    /// Sends a prepared request; the body of a 2xx reply, or the error it stands for.
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        segments: &[&str],
    ) -> Result<Vec<u8>, ClientError> {
        let mut resp = req.send().await.map_err(|e| self.transport(segments, e))?;
        let status = resp.status();
        if status.is_success() {
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| self.transport(segments, e))?;
            return Ok(bytes.to_vec());
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let length = resp.content_length();
        // An error body is read only up to a limit: a proxy's error page can be megabytes.
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BODY {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                // What came is what there is to show.
                Ok(None) | Err(_) => break,
            }
        }
        body.truncate(MAX_ERROR_BODY);
        Err(ClientError::Api {
            status: status.as_u16(),
            reason: error_reason(&ErrorReply {
                status: status.as_u16(),
                content_type: content_type.as_deref(),
                body: &body,
                length,
            }),
        })
    }

    fn transport(&self, segments: &[&str], source: reqwest::Error) -> ClientError {
        if let Some(e) = tls::tls_error(&source) {
            let url = self.display_url.clone();
            let reason = e.to_string();
            if tls::is_certificate_error(e) {
                return ClientError::Certificate { url, reason };
            }
            // What a plain HTTP server answers to a TLS handshake does not parse as TLS.
            let hint = if matches!(e, rustls::Error::InvalidMessage(_)) {
                " (is the daemon serving plain http? then use an http:// URL)"
            } else {
                ""
            };
            return ClientError::Tls { url, reason, hint };
        }
        if source.is_connect() {
            ClientError::Connect {
                url: self.display_url.clone(),
                source,
            }
        } else {
            ClientError::Request {
                url: self.url_for_message(segments),
                source,
            }
        }
    }

    fn url_for_message(&self, segments: &[&str]) -> String {
        api_url(&self.base, segments)
            .map_or_else(|_| self.display_url.clone(), |u| redact_url(u.as_str()))
    }
}

fn replace(path: &str, value: &str) -> PatchOp {
    PatchOp {
        op: "replace".into(),
        path: path.into(),
        value: Some(serde_json::Value::String(value.into())),
    }
}

#[cfg(test)]
mod tests;
