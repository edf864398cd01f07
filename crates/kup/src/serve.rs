//! `kup serve`: the daemon. Glue only: it opens the store, the cluster and the engine, and
//! serves the API until told to stop.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kup_api::{Role, Tokens};
use kup_core::Policy;
use kup_engine::{Engine, EngineConfig};
use kup_sim::{Inventory, SimCluster};
use kup_store::SqliteStore;

#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Where kup keeps its database, the admin token and the simulated cluster's state.
    #[arg(long, default_value = "./kup-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen address is written to
    /// DIR/listen-address).
    #[arg(long, default_value = "127.0.0.1:6385", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The simulated cluster's description (default: the built-in standard system).
    #[arg(long, value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// The store: `sqlite://PATH` (default: DIR/kup.db).
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Multiplies every simulated duration (1.0 = realistic minutes, 0 = instant).
    #[arg(long, default_value_t = 1.0, value_name = "X", value_parser = parse_scale, allow_negative_numbers = true)]
    pub time_scale: f64,
    /// Tokens, one per line: `admin TOKEN` or `reader TOKEN` (default: a random admin token,
    /// created on first start in DIR/admin-token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// A public key (`kup-public-key HEX`, from `kup sw-patch keygen`) whose patch bundles the
    /// daemon accepts; repeat for several. Without one, uploads are refused.
    #[arg(long = "trusted-key", value_name = "FILE")]
    pub trusted_keys: Vec<PathBuf>,
}

pub(crate) fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a non-negative number")),
    }
}

/// A running daemon: its address and the engine, for in-process use (`kup demo`, tests).
pub struct Daemon {
    pub addr: SocketAddr,
    pub admin_token: Option<String>,
    pub engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    tokens: Tokens,
}

fn sqlite_path(args: &ServeArgs) -> Result<PathBuf, String> {
    match &args.db {
        None => Ok(args.data_dir.join("kup.db")),
        Some(url) => {
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
            {
                if path.is_empty() {
                    return Err(format!("--db {url}: the SQLite URL names no file"));
                }
                Ok(PathBuf::from(path))
            } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Err("--db: PostgreSQL is not supported yet; use sqlite://PATH".into())
            } else {
                Err(format!("--db {url}: expected sqlite://PATH"))
            }
        }
    }
}

fn load_tokens(args: &ServeArgs) -> Result<(Tokens, Option<String>), String> {
    if let Some(file) = &args.token_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read token file {}: {e}", file.display()))?;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (role, token) = match line.split_once(char::is_whitespace) {
                Some(("admin", t)) => (Role::Admin, t.trim()),
                Some(("reader", t)) => (Role::Reader, t.trim()),
                _ => {
                    return Err(format!(
                        "token file {}, line {}: expected `admin TOKEN` or `reader TOKEN`",
                        file.display(),
                        i + 1
                    ));
                }
            };
            if token.len() < 16 {
                return Err(format!(
                    "token file {}, line {}: a token needs at least 16 characters",
                    file.display(),
                    i + 1
                ));
            }
            entries.push((role, token.to_string()));
        }
        if entries.is_empty() {
            return Err(format!("token file {} holds no token", file.display()));
        }
        return Ok((Tokens::new(entries), None));
    }
    let path = args.data_dir.join("admin-token");
    let token = match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => write_new_token(&path)?,
    };
    Ok((Tokens::new([(Role::Admin, token.clone())]), Some(token)))
}

fn write_new_token(path: &Path) -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    writeln!(f, "{token}")
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(token)
}

impl Daemon {
    /// Opens everything and binds the listener; nothing is served until `run`.
    pub async fn open(args: &ServeArgs) -> Result<Daemon, String> {
        // Bad input is refused before anything is written.
        let inv = match &args.cluster {
            None => Inventory::default_cluster(),
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read cluster file {}: {e}", file.display()))?;
                Inventory::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?
            }
        };
        let db = sqlite_path(args)?;
        let mut trusted = Vec::new();
        for file in &args.trusted_keys {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read trusted key {}: {e}", file.display()))?;
            trusted.push(
                kup_patch::parse_public_key(&text)
                    .map_err(|e| format!("trusted key {}: {e}", file.display()))?,
            );
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.data_dir)
            .map_err(|e| {
                format!(
                    "cannot create data directory {}: {e}",
                    args.data_dir.display()
                )
            })?;
        let sim = SimCluster::with_state_file(
            &inv,
            args.time_scale,
            args.data_dir.join("cluster-state.json"),
        )
        .map_err(|e| e.to_string())?;
        let store = SqliteStore::open(&db).await.map_err(|e| e.to_string())?;
        let (tokens, admin_token) = load_tokens(args)?;
        let patch_repo = (!trusted.is_empty()).then(|| kup_engine::PatchRepo {
            dir: args.data_dir.join("patches"),
            trusted,
            limits: kup_patch::Limits::default(),
        });
        let config = EngineConfig {
            catalog: sim.catalog(),
            policy: Policy::default(),
            patch_repo,
        };
        let engine = Engine::open(Arc::new(store), Arc::new(sim), config)
            .await
            .map_err(|e| format!("cannot open the engine: {e}"))?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let addr_file = args.data_dir.join("listen-address");
        std::fs::write(&addr_file, format!("{addr}\n"))
            .map_err(|e| format!("cannot write {}: {e}", addr_file.display()))?;
        tracing::info!(%addr, db = %db.display(), "kup is listening");
        Ok(Daemon {
            addr,
            admin_token,
            engine: Arc::new(engine),
            listener,
            tokens,
        })
    }

    /// Serves until `shutdown` resolves, then finishes the requests in progress.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let app = kup_api::router(self.engine, self.tokens)
            .layer(tower_http::trace::TraceLayer::new_for_http());
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| format!("server error: {e}"))
    }
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
