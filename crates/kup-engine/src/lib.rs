//! The engine: the one path every command takes, whoever sends it (CLI, API, strategy).
//!
//! A command is serialised behind one lock, then: read the store's snapshot, observe the
//! cluster, let the core decide, commit the decision (state and events in one transaction),
//! and only then start the operations it calls for. Each operation gets a task that waits for
//! the driver and feeds the outcome back through the core, under the same lock. Nothing is
//! acknowledged before it is durable, and no two commands can both pass a check.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use kup_core::{Catalog, Command, Policy, Refusal};
use kup_driver::{Driver, DriverError};
use kup_store::{Store, StoreError};
use kup_types::{
    HostInfo, HostsToken, KubeHostUpgradeView, KubeUpgradeView, Snapshot, VersionMeta,
};
use tokio::sync::watch;
use tokio::task::AbortHandle;

mod commands;
mod operations;
mod patch_repo;
mod queries;
mod runner;

use patch_repo::clean_repository;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("{0}")]
    Driver(#[from] DriverError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the engine is stopping: {0}")]
    Stopped(String),
    /// A patch bundle that was refused before anything was written.
    #[error("{0}")]
    Bundle(String),
    #[error("the patch repository failed: {0}")]
    Repository(String),
}

impl EngineError {
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            EngineError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

pub struct EngineConfig {
    pub catalog: Vec<VersionMeta>,
    pub policy: Policy,
    /// Where verified patch bundles are kept, and whom to trust; `None`: uploads are refused.
    pub patch_repo: Option<PatchRepo>,
}

/// The patch repository: a directory of verified bundles, and the keys trusted to sign them.
pub struct PatchRepo {
    pub dir: std::path::PathBuf,
    pub trusted: Vec<ed25519_dalek::VerifyingKey>,
    pub limits: kup_patch::Limits,
}

/// What an accepted command left behind: the upgrade and, for a host command, the host and
/// its upgrade row as committed (its live versions as the cluster showed them when the
/// command was checked).
#[derive(Clone, Debug)]
pub struct Outcome {
    pub upgrade: Option<KubeUpgradeView>,
    /// The host the command was about, for host commands.
    pub host: Option<HostInfo>,
    host_upgrade: Option<KubeHostUpgradeView>,
}

impl Outcome {
    pub fn host_upgrade(&self) -> Option<&KubeHostUpgradeView> {
        self.host_upgrade.as_ref()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    driver: Arc<dyn Driver>,
    catalog: Catalog,
    policy: Policy,
    patch_repo: Option<PatchRepo>,
    commands: tokio::sync::Mutex<()>,
    /// The store's contents as last committed. The engine is the store's only writer (one
    /// daemon per database), so every commit is applied here too, and reads never wait for
    /// the database.
    snap: Mutex<Arc<Snapshot>>,
    /// The driver's host list as last checked for hosts without an upgrade row.
    checked_hosts: Mutex<HostsToken>,
    /// Number of operation tasks still running.
    running: watch::Sender<usize>,
    /// The sequence number of the newest committed event: followers of the log wait on it and
    /// read what they missed from the store.
    last_event: watch::Sender<i64>,
    /// Whether the strategy runner's task is alive (it stops when the strategy no longer
    /// applies; the store says whether it should run).
    runner_active: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
    /// The encoded bodies of the host lists, while what they were made from is current.
    encoded: queries::EncodedReads,
    /// Commands and steps since this engine opened, for `/metrics`.
    stats: std::sync::Mutex<Stats>,
}

/// What `/metrics` counts since the engine opened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Commands decided: accepted (committed) and refused (a check said no).
    pub commands_accepted: u64,
    pub commands_refused: u64,
    /// Steps that ended, by kind of step.
    pub steps: std::collections::BTreeMap<String, StepStats>,
}

/// The steps of one kind that ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepStats {
    pub succeeded: u64,
    pub failed: u64,
    /// From each step's start to its recorded end.
    pub seconds: f64,
}

impl Stats {
    fn command(&mut self, result: &Result<Outcome, EngineError>) {
        match result {
            Ok(_) => self.commands_accepted += 1,
            Err(EngineError::Refused(_)) => self.commands_refused += 1,
            Err(_) => {}
        }
    }

    fn step(&mut self, kind: &str, ok: bool, seconds: f64) {
        let s = self.steps.entry(kind.to_string()).or_default();
        if ok {
            s.succeeded += 1;
        } else {
            s.failed += 1;
        }
        s.seconds += seconds;
    }
}

impl Inner {
    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The engine's state as `/metrics` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineMetrics {
    pub upgrade_state: Option<String>,
    pub strategy_state: Option<String>,
    /// Operations in flight, by kind of step.
    pub operations_running: std::collections::BTreeMap<String, usize>,
    /// Host rows by upgrade status (`none` before a host's first step).
    pub hosts_by_status: std::collections::BTreeMap<String, usize>,
    /// Events in the log.
    pub events: i64,
    pub stats: Stats,
}

/// Dropping the engine stops its tasks, as a crash would; the store and cluster stay.
pub struct Engine {
    inner: Arc<Inner>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        for t in self.inner.tasks().drain(..) {
            t.abort();
        }
    }
}

impl Engine {
    /// Opens the engine on a store and a cluster: creates host rows for hosts seen for the
    /// first time, and settles any step that was in flight when the last engine stopped.
    pub async fn open(
        store: Arc<dyn Store>,
        driver: Arc<dyn Driver>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let inner = Arc::new(Inner {
            store: Arc::clone(&store),
            driver,
            catalog: Catalog::new(config.catalog),
            policy: config.policy,
            patch_repo: config.patch_repo,
            commands: tokio::sync::Mutex::new(()),
            snap: Mutex::new(Arc::new(store.snapshot().await?)),
            checked_hosts: Mutex::new(HostsToken::default()),
            running: watch::channel(0).0,
            last_event: watch::channel(store.last_event_seq().await?).0,
            runner_active: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            encoded: queries::EncodedReads::default(),
            stats: std::sync::Mutex::default(),
        });
        {
            let _guard = inner.commands.lock().await;
            let now = Timestamp::now();
            inner.add_missing_rows(now).await?;
            let snap = inner.snapshot();
            let catalog = inner.catalog_for(&snap);
            // What the driver knows of each operation in flight, by its id.
            let mut reported = std::collections::BTreeMap::new();
            for o in &snap.operations {
                reported.insert(o.id.clone(), inner.driver.status(&o.id).await?);
            }
            let mut recovery = kup_core::Recovery::default();
            inner.driver.with_views(&mut |obs, _| {
                recovery =
                    kup_core::recover(&inner.ctx(&catalog, &snap, obs, None, now, ""), &reported);
            })?;
            drop(snap);
            inner.commit(recovery.batch).await?;
            for record in recovery.reattach {
                inner.reattach(record);
            }
        }
        if let Some(repo) = &inner.patch_repo {
            clean_repository(repo, &inner.snapshot());
        }
        // A strategy that was applying (or aborting), or the way back of an abort, goes on.
        if runner::needs_runner(&inner.snapshot()) {
            inner.ensure_runner();
        }
        Ok(Engine { inner })
    }

    /// Runs one command through the checks; on success it is committed before this returns.
    /// The work runs in a task of its own, so a caller that goes away (a dropped HTTP request)
    /// cannot leave a committed step without its operation.
    pub async fn execute(&self, cmd: Command) -> Result<Outcome, EngineError> {
        let inner = Arc::clone(&self.inner);
        match tokio::spawn(async move { inner.execute(cmd).await }).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(EngineError::Stopped(e.to_string())),
        }
    }

    /// `kube-upgrade-strategy create`: builds the strategy (with the cluster's step durations
    /// for its prediction) and stores it, `ready-to-apply` or `build-failed`.
    pub async fn strategy_create(
        &self,
        req: kup_types::StrategyCreate,
    ) -> Result<kup_types::StrategyView, EngineError> {
        let durations = self.inner.driver.step_durations();
        let cmd = kup_core::strategy::StrategyCommand::Create { req, durations };
        self.execute(Command::Strategy(cmd)).await?;
        self.strategy()?.ok_or(Refusal::NoStrategy.into())
    }

    /// `kube-upgrade-strategy apply|abort|delete`.
    pub async fn strategy_action(
        &self,
        cmd: kup_core::strategy::StrategyCommand,
    ) -> Result<Option<kup_types::StrategyView>, EngineError> {
        self.execute(Command::Strategy(cmd)).await?;
        self.strategy()
    }

    /// The strategy, if there is one.
    pub fn strategy(&self) -> Result<Option<kup_types::StrategyView>, EngineError> {
        Ok(self
            .inner
            .snapshot()
            .strategy
            .clone()
            .map(kup_types::StrategyView::from))
    }

    /// Resolves once no strategy is applying or aborting and no operation is running.
    pub async fn wait_strategy(&self) {
        let mut rx = self.inner.last_event.subscribe();
        loop {
            let running = self
                .inner
                .snapshot()
                .strategy
                .as_ref()
                .is_some_and(|s| s.state.running());
            if !running {
                break;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed()).await;
        }
        self.wait_idle().await;
    }

    /// Resolves once no operation is running.
    pub async fn wait_idle(&self) {
        let mut rx = self.inner.running.subscribe();
        // The sender lives in `inner`, which outlives this borrow.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// The sequence number of the newest event (0 for an empty log).
    pub fn last_event_seq(&self) -> i64 {
        *self.inner.last_event.borrow()
    }

    /// Events after `after_seq` (at most `limit`), waiting up to `wait` for the first one to be
    /// committed if there is none yet: the long poll of the event stream. Whatever a follower
    /// missed is read from the store, so none falls behind for good.
    pub async fn wait_events(
        &self,
        after_seq: i64,
        limit: u32,
        wait: std::time::Duration,
    ) -> Result<Vec<kup_types::Event>, EngineError> {
        self.wait_for_event(after_seq, wait).await;
        self.events(after_seq, limit).await
    }

    /// Returns once an event follows `after_seq`, or after `wait`.
    pub async fn wait_for_event(&self, after_seq: i64, wait: std::time::Duration) {
        let mut rx = self.inner.last_event.subscribe();
        // Subscribed before looking, so a commit in between still wakes us.
        let _ = tokio::time::timeout(wait, rx.wait_for(|&last| last > after_seq)).await;
    }

    /// What `/metrics` shows of the engine, from what it holds in memory (no I/O).
    pub fn metrics(&self) -> EngineMetrics {
        let snap = self.inner.snapshot();
        let mut m = EngineMetrics {
            upgrade_state: snap.upgrade.as_ref().map(|u| u.state.as_str().to_string()),
            strategy_state: snap.strategy.as_ref().map(|s| s.state.as_str().to_string()),
            events: self.last_event_seq(),
            stats: self.inner.stats().clone(),
            ..EngineMetrics::default()
        };
        for o in &snap.operations {
            *m.operations_running
                .entry(o.op.kind().as_str().to_string())
                .or_default() += 1;
        }
        for h in &snap.hosts {
            let status = h.status.map_or("none", |s| s.as_str());
            *m.hosts_by_status.entry(status.to_string()).or_default() += 1;
        }
        m
    }

    /// Whether the daemon can do its work: the store answers and the cluster is reachable.
    pub async fn check(&self) -> Result<(), EngineError> {
        self.inner.store.ping().await?;
        self.inner.driver.check().await?;
        Ok(())
    }
}
