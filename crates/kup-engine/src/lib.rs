//! The engine: the one path every command takes, whoever sends it (CLI, API, strategy).
//!
//! A command is serialised behind one lock, then: read the store's snapshot, observe the
//! cluster, let the core decide, commit the decision (state and events in one transaction),
//! and only then start the operations it calls for. Each operation gets a task that waits for
//! the driver and feeds the outcome back through the core, under the same lock. Nothing is
//! acknowledged before it is durable, and no two commands can both pass a check.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use kup_core::{Catalog, Command, Ctx, HealthReport, Policy, Refusal};
use kup_driver::{Driver, DriverError};
use kup_store::{Store, StoreError};
use kup_types::{
    Alarm, Event, HostInfo, HostPatchView, HostUpgradeRecord, HostsToken, IHost,
    KubeHostUpgradeView, KubeUpgradeView, KubeVersion, KubeVersionDetail, KubeVersionSummary,
    Observation, OpStatus, OperationRecord, PatchKind, PatchRecord, PatchState, PatchView,
    Snapshot, VersionMeta, Workloads, WriteBatch,
};
use tokio::sync::watch;
use tokio::task::AbortHandle;

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

impl PatchRepo {
    fn bundle_path(&self, id: &str) -> std::path::PathBuf {
        self.dir.join(format!("{id}.patch"))
    }
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
    tasks: Mutex<Vec<AbortHandle>>,
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
            tasks: Mutex::new(Vec::new()),
        });
        {
            let _guard = inner.commands.lock().await;
            let now = Timestamp::now();
            inner.add_missing_rows(now).await?;
            let snap = inner.snapshot();
            let catalog = inner.catalog_for(&snap);
            let mut batch = WriteBatch::default();
            inner.driver.with_views(&mut |obs, _| {
                batch = kup_core::recover(&inner.ctx(&catalog, &snap, obs, None, now, ""));
            })?;
            drop(snap);
            inner.commit(batch).await?;
        }
        if let Some(repo) = &inner.patch_repo {
            clean_repository(repo, &inner.snapshot());
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

    /// Resolves once no operation is running.
    pub async fn wait_idle(&self) {
        let mut rx = self.inner.running.subscribe();
        // The sender lives in `inner`, which outlives this borrow.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Whether the daemon can do its work: the store answers and the cluster is reachable.
    pub async fn check(&self) -> Result<(), EngineError> {
        self.inner.store.ping().await?;
        self.inner.driver.check().await?;
        Ok(())
    }

    /// The cluster's hosts' view, as the driver shares it.
    pub async fn observe(&self) -> Result<Arc<Observation>, EngineError> {
        Ok(self.inner.driver.observe().await?)
    }

    /// The cluster's pods, owners and budgets, as the driver shares them.
    pub async fn workloads(&self) -> Result<Arc<Workloads>, EngineError> {
        Ok(self.inner.driver.workloads().await?)
    }

    /// The store as last committed, and the hosts' view: what reads are built from. Neither
    /// copies anything.
    async fn read(&self) -> Result<(Arc<Snapshot>, Arc<Observation>), EngineError> {
        Ok((self.inner.snapshot(), self.inner.driver.observe().await?))
    }

    pub async fn kube_versions(&self) -> Result<Vec<KubeVersionSummary>, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(self
            .inner
            .catalog_for(&snap)
            .summaries(&obs, snap.upgrade.as_ref()))
    }

    pub async fn kube_version(&self, version: &str) -> Result<KubeVersionDetail, EngineError> {
        let v = KubeVersion::parse(version).map_err(Refusal::from)?;
        let (snap, obs) = self.read().await?;
        Ok(self
            .inner
            .catalog_for(&snap)
            .detail(v, &obs, snap.upgrade.as_ref())
            .ok_or(Refusal::UnknownVersionLookup(v))?)
    }

    pub async fn kube_upgrade(&self) -> Result<Option<KubeUpgradeView>, EngineError> {
        Ok(self
            .inner
            .snapshot()
            .upgrade
            .as_ref()
            .map(KubeUpgradeView::from))
    }

    pub async fn kube_host_upgrades(&self) -> Result<Vec<KubeHostUpgradeView>, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(kup_core::views::host_upgrades(&snap, &obs))
    }

    /// A host by name, numeric id or uuid.
    pub async fn host(&self, key: &str) -> Result<HostInfo, EngineError> {
        let obs = self.observe().await?;
        Ok(find_host(&obs, key)?.clone())
    }

    /// Hosts as the sysinv API shows them.
    pub async fn ihosts(&self) -> Result<Vec<IHost>, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(obs
            .hosts
            .iter()
            .map(|h| kup_core::views::ihost(h, snap.host(&h.hostname)))
            .collect())
    }

    /// One host by name, numeric id or uuid, as the sysinv API shows it.
    pub async fn ihost(&self, key: &str) -> Result<IHost, EngineError> {
        let (snap, obs) = self.read().await?;
        let h = find_host(&obs, key)?;
        Ok(kup_core::views::ihost(h, snap.host(&h.hostname)))
    }

    /// `kup upgrade plan`: what the whole upgrade to `to` would do, stage by stage, with the
    /// safety findings per host. `to` defaults to the upgrade in progress, else the highest
    /// available version.
    pub async fn plan(
        &self,
        to: Option<&str>,
        max_parallel_worker_hosts: u32,
        min_free_disk_gib: u32,
    ) -> Result<kup_core::plan::Plan, EngineError> {
        let (snap, obs) = self.read().await?;
        let workloads = self.workloads().await?;
        let catalog = self.inner.catalog_for(&snap);
        let to = match to {
            Some(v) => KubeVersion::parse(v).map_err(Refusal::from)?,
            None => match &snap.upgrade {
                Some(u) => u.to_version,
                None => catalog
                    .states(&obs)
                    .into_iter()
                    .filter(|(_, s)| *s == kup_types::VersionState::Available)
                    .map(|(v, _)| v)
                    .next_back()
                    .ok_or(Refusal::NothingToPlan)?,
            },
        };
        let durations = self.inner.driver.step_durations();
        // Seconds of work at the largest sizes: off the async threads, so the daemon keeps
        // answering meanwhile.
        let plan = tokio::task::spawn_blocking(move || {
            kup_core::plan::plan(&kup_core::plan::PlanInput {
                obs: &obs,
                workloads: &workloads,
                snap: &snap,
                catalog: &catalog,
                to,
                max_parallel_worker_hosts: max_parallel_worker_hosts.max(1),
                durations: &durations,
                min_free_disk_gib,
            })
        })
        .await
        .map_err(|e| EngineError::Stopped(e.to_string()))?;
        Ok(plan)
    }

    /// `kup info`.
    pub async fn info(&self) -> Result<kup_types::ClusterInfo, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(kup_core::views::info(&snap, &obs))
    }

    pub async fn alarms(&self) -> Result<Vec<Alarm>, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(kup_core::views::alarms(&snap, &obs))
    }

    /// `health-query-kube-upgrade`; `relaxed` lets alarms that are not management-affecting pass.
    pub async fn health(&self, relaxed: bool) -> Result<HealthReport, EngineError> {
        let (snap, obs) = self.read().await?;
        let workloads = self.workloads().await?;
        let mut obs = Observation::clone(&obs);
        obs.alarms = kup_core::views::alarms(&snap, &obs);
        Ok(kup_core::kube_upgrade_health(
            &obs,
            &workloads,
            relaxed,
            &self.inner.policy.alarm_ignore,
        ))
    }

    /// `sw-patch upload`: verifies the bundle (signature, every file, every path) before
    /// anything is written; the bundle is then kept in the repository and the patch recorded
    /// as `available`. A refused bundle leaves the repository and the store as they were.
    pub async fn patch_upload(&self, bytes: Vec<u8>) -> Result<PatchView, EngineError> {
        let inner = Arc::clone(&self.inner);
        // In a task of its own, like every command, so a caller that goes away cannot leave a
        // recorded patch without its bundle; verification and file I/O off the async threads.
        let id = match tokio::spawn(async move { Inner::patch_upload(&inner, bytes).await }).await {
            Ok(result) => result?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(EngineError::Stopped(e.to_string())),
        };
        self.patch(&id).await
    }

    /// `sw-patch delete`: the record and the kept bundle.
    pub async fn patch_delete(&self, id: &str) -> Result<(), EngineError> {
        self.execute(Command::PatchDelete { id: id.to_string() })
            .await?;
        if let Some(repo) = &self.inner.patch_repo {
            let _ = std::fs::remove_file(repo.bundle_path(id));
        }
        Ok(())
    }

    pub async fn patches(&self) -> Result<Vec<PatchView>, EngineError> {
        let snap = self.inner.snapshot();
        Ok(snap
            .patches
            .iter()
            .map(|p| kup_core::patches::view(&snap, p))
            .collect())
    }

    pub async fn patch(&self, id: &str) -> Result<PatchView, EngineError> {
        let snap = self.inner.snapshot();
        let p = snap
            .patch(id)
            .ok_or_else(|| Refusal::UnknownPatch(id.to_string()))?;
        Ok(kup_core::patches::view(&snap, p))
    }

    /// `sw-patch query-hosts`.
    pub async fn patch_hosts(&self) -> Result<Vec<HostPatchView>, EngineError> {
        let (snap, obs) = self.read().await?;
        Ok(obs
            .hosts
            .iter()
            .map(|h| kup_core::patches::host_view(&snap, h))
            .collect())
    }

    pub async fn events(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, EngineError> {
        Ok(self.inner.store.events(after_seq, limit).await?)
    }
}

impl Inner {
    async fn execute(self: &Arc<Self>, cmd: Command) -> Result<Outcome, EngineError> {
        let _guard = self.commands.lock().await;
        let now = Timestamp::now();
        let uuid = uuid::Uuid::new_v4().to_string();
        self.add_missing_rows(now).await?;
        // Decided on the driver's views in place: nothing of the cluster is copied or held.
        let snap = self.snapshot();
        let catalog = self.catalog_for(&snap);
        let mut decided = None;
        self.driver.with_views(&mut |obs, workloads| {
            decided = Some(resolve_host(obs, cmd.clone()).and_then(|cmd| {
                let ctx = self.ctx(
                    &catalog,
                    &snap,
                    obs,
                    cmd.reads_pods().then_some(workloads),
                    now,
                    &uuid,
                );
                kup_core::decide(&ctx, &cmd).map(|d| (cmd, d))
            }));
        })?;
        drop(snap);
        let (cmd, decision) = decided.expect("the driver calls back")?;
        match self.commit(decision.batch).await {
            Ok(()) => {}
            // Only a start creates; the store has the last word on a racing one.
            Err(EngineError::Store(StoreError::Conflict(_)))
                if matches!(cmd, Command::Start { .. }) =>
            {
                return Err(Refusal::AlreadyInProgress.into());
            }
            Err(e) => return Err(e),
        }
        let snap = self.snapshot();
        let mut outcome = Outcome {
            upgrade: snap.upgrade.as_ref().map(KubeUpgradeView::from),
            host: None,
            host_upgrade: None,
        };
        if let Some(name) = command_host(&cmd) {
            self.driver.with_views(&mut |obs, _| {
                outcome.host = obs.host(name).cloned();
                outcome.host_upgrade = snap
                    .host(name)
                    .and_then(|row| kup_core::views::host_upgrade(row, obs));
            })?;
        }
        drop(snap);
        for op in decision.ops {
            self.launch(op).await;
        }
        Ok(outcome)
    }

    /// The store as last committed.
    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snap.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Commits a batch and, once it is durable, applies it to the cached snapshot (in place,
    /// unless a reader still holds the previous one).
    async fn commit(&self, batch: WriteBatch) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.store.commit(batch.clone()).await?;
        let mut snap = self.snap.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::make_mut(&mut snap).apply(&batch);
        Ok(())
    }

    /// Upgrade rows for hosts kup sees for the first time; skipped while the driver's host
    /// list is the one last checked.
    async fn add_missing_rows(&self, now: Timestamp) -> Result<(), EngineError> {
        let snap = self.snapshot();
        let mut found = None;
        self.driver.with_views(&mut |obs, _| {
            let token = obs.hosts_token();
            let checked = self
                .checked_hosts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *checked != token {
                found = Some((missing_rows(&snap, obs, now), token));
            }
        })?;
        drop(snap);
        let Some((new_rows, token)) = found else {
            return Ok(());
        };
        if !new_rows.is_empty() {
            self.commit(WriteBatch {
                hosts: new_rows,
                ..Default::default()
            })
            .await?;
        }
        *self
            .checked_hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = token;
        Ok(())
    }

    async fn patch_upload(self: &Arc<Self>, bytes: Vec<u8>) -> Result<String, EngineError> {
        let repo = self.patch_repo.as_ref().ok_or_else(|| {
            EngineError::Bundle("patch uploads are disabled: the daemon trusts no key".into())
        })?;
        let (trusted, limits, dir) = (repo.trusted.clone(), repo.limits, repo.dir.clone());
        let (record, tmp) = tokio::task::spawn_blocking(move || {
            let bundle = kup_patch::read(&bytes, &trusted, &limits)
                .map_err(|e| EngineError::Bundle(e.to_string()))?;
            let record = patch_record(&bundle.manifest, &bundle.key_id, Timestamp::now());
            // Written and synced under a unique name first: a refused upload (a duplicate id)
            // leaves nothing behind, and an accepted one replaces nothing until committed.
            let tmp = dir.join(format!(".{}.{}.tmp", record.id, uuid::Uuid::new_v4()));
            write_synced(&dir, &tmp, &bytes).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                EngineError::Repository(format!("{}: {e}", tmp.display()))
            })?;
            Ok::<_, EngineError>((record, tmp))
        })
        .await
        .map_err(|e| EngineError::Stopped(e.to_string()))??;
        let id = record.id.clone();
        let final_path = repo.bundle_path(&id);
        match self.execute(Command::PatchUpload(Box::new(record))).await {
            Ok(_) => std::fs::rename(&tmp, &final_path)
                .and_then(|()| sync_dir(&repo.dir))
                .map_err(|e| EngineError::Repository(format!("{}: {e}", final_path.display())))?,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        Ok(id)
    }

    /// The catalog as the store makes it now: the base plus applied platform patches.
    fn catalog_for(&self, snap: &Snapshot) -> Catalog {
        self.catalog
            .with(kup_core::patches::catalog_additions(snap))
    }

    fn ctx<'a>(
        &'a self,
        catalog: &'a Catalog,
        snap: &'a Snapshot,
        obs: &'a Observation,
        workloads: Option<&'a Workloads>,
        now: Timestamp,
        fresh_uuid: &'a str,
    ) -> Ctx<'a> {
        Ctx {
            catalog,
            policy: &self.policy,
            snap,
            obs,
            workloads,
            now,
            fresh_uuid,
        }
    }

    fn tasks(&self) -> MutexGuard<'_, Vec<AbortHandle>> {
        // The list stays valid whatever panicked while holding it.
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts an operation (its record is already committed) and a task that records its end.
    /// Called with the command lock held.
    async fn launch(self: &Arc<Self>, record: OperationRecord) {
        self.running.send_modify(|n| *n += 1);
        let started = self.driver.start(&record.op).await;
        let this = Arc::clone(self);
        let waiter = tokio::spawn({
            let driver = Arc::clone(&self.driver);
            let op = record.op.clone();
            async move {
                match started {
                    Err(e) => OpStatus::Failed(e.to_string()),
                    Ok(()) => driver
                        .wait(&op)
                        .await
                        .unwrap_or_else(|e| OpStatus::Failed(e.to_string())),
                }
            }
        });
        let waiter_abort = waiter.abort_handle();
        let task = tokio::spawn(async move {
            // A driver that panics fails its operation; it does not strand the step.
            let outcome = match waiter.await {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => {
                    tracing::error!(op = %record.op, "the driver panicked while running the operation");
                    OpStatus::Failed("the driver failed unexpectedly (internal error)".into())
                }
                Err(_) => return, // Aborted: the engine is going away, as in a crash.
            };
            this.complete(&record, outcome).await;
            this.running.send_modify(|n| *n -= 1);
        });
        let mut tasks = self.tasks();
        tasks.retain(|t| !t.is_finished());
        tasks.push(waiter_abort);
        tasks.push(task.abort_handle());
    }

    /// Records how an operation ended. If the cluster or the store cannot be read or written
    /// just now, it tries again (backing off up to 30 s) rather than leave the step in flight
    /// with nothing left to settle it.
    async fn complete(&self, record: &OperationRecord, outcome: OpStatus) {
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match self.try_complete(record, &outcome).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, op = %record.op, "cannot record the end of an operation yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
    }

    async fn try_complete(
        &self,
        record: &OperationRecord,
        outcome: &OpStatus,
    ) -> Result<(), EngineError> {
        let _guard = self.commands.lock().await;
        let snap = self.snapshot();
        if snap.operation(&record.id).is_none() {
            return Ok(()); // Marked failed (and perhaps re-done) meanwhile: nothing to record.
        }
        let catalog = self.catalog_for(&snap);
        let mut batch = WriteBatch::default();
        self.driver.with_views(&mut |obs, _| {
            batch = kup_core::finish(
                &self.ctx(&catalog, &snap, obs, None, Timestamp::now(), ""),
                record,
                outcome,
            );
        })?;
        drop(snap);
        self.commit(batch).await
    }
}

fn write_synced(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Settles the bundles a crash left as temporary files (`.ID.UUID.tmp`, written and synced
/// before the upload was committed): one whose patch the store recorded is moved into place
/// (the crash fell between the commit and the rename); any other was never accepted and goes.
fn clean_repository(repo: &PatchRepo, snap: &Snapshot) {
    let Ok(entries) = std::fs::read_dir(&repo.dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        let id = stem.rsplit_once('.').map(|(id, _uuid)| id);
        match id {
            Some(id) if snap.patch(id).is_some() && !repo.bundle_path(id).exists() => {
                if let Err(err) = std::fs::rename(e.path(), repo.bundle_path(id))
                    .and_then(|()| sync_dir(&repo.dir))
                {
                    tracing::warn!(error = %err, patch = id, "cannot put a recorded bundle in place");
                }
            }
            _ => {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// What the store keeps of a verified bundle's manifest.
fn patch_record(m: &kup_patch::Manifest, key_id: &str, now: Timestamp) -> PatchRecord {
    let kind = match m.kind {
        kup_patch::PatchKind::Platform => PatchKind::Platform,
        kup_patch::PatchKind::Kubeadm => PatchKind::Kubeadm,
        kup_patch::PatchKind::Kubelet => PatchKind::Kubelet,
        kup_patch::PatchKind::Other => PatchKind::Other,
    };
    PatchRecord {
        id: m.id.clone(),
        kind,
        summary: m.summary.clone(),
        requires: m.requires.clone(),
        delivers: m.delivers,
        version_meta: m.kubernetes.as_ref().map(|k| k.version_meta()),
        state: PatchState::Available,
        key_id: key_id.to_string(),
        files: m.files.iter().map(|f| f.path.clone()).collect(),
        uploaded_at: now,
        updated_at: None,
    }
}

/// Upgrade rows for hosts kup sees for the first time.
fn missing_rows(snap: &Snapshot, obs: &Observation, now: Timestamp) -> Vec<HostUpgradeRecord> {
    obs.hosts
        .iter()
        .filter(|h| snap.host(&h.hostname).is_none())
        .map(|h| HostUpgradeRecord {
            id: i64::from(h.id),
            uuid: uuid::Uuid::new_v4().to_string(),
            host_id: i64::from(h.id),
            hostname: h.hostname.clone(),
            target_version: None,
            status: None,
            created_at: now,
            updated_at: None,
        })
        .collect()
}

/// By name (the usual case, through the index), else by numeric id (written plainly: `5`,
/// not `05` or `+5`) or uuid.
fn find_host<'a>(obs: &'a Observation, key: &str) -> Result<&'a HostInfo, Refusal> {
    let id = (!key.is_empty()
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0')))
    .then(|| key.parse::<u32>().ok())
    .flatten();
    obs.host(key)
        .or_else(|| obs.hosts.iter().find(|h| h.uuid == key || Some(h.id) == id))
        .ok_or_else(|| Refusal::UnknownHost(key.to_string()))
}

fn command_host(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::ControlPlane { host, .. }
        | Command::Kubelet { host, .. }
        | Command::Lock { host, .. }
        | Command::Unlock { host, .. }
        | Command::Swact { host }
        | Command::PatchHostInstall { host } => Some(host),
        _ => None,
    }
}

/// Host commands may name a host by id or uuid; the core works with hostnames.
fn resolve_host(obs: &Observation, mut cmd: Command) -> Result<Command, Refusal> {
    match &mut cmd {
        Command::ControlPlane { host, .. }
        | Command::Kubelet { host, .. }
        | Command::Lock { host, .. }
        | Command::Unlock { host, .. }
        | Command::Swact { host }
        | Command::PatchHostInstall { host } => *host = find_host(obs, host)?.hostname.clone(),
        _ => {}
    }
    Ok(cmd)
}
