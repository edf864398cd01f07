//! The command path: one command at a time, decided on the driver's views in place,
//! committed (and applied to the cached snapshot) before its operations start.

use std::sync::{Arc, PoisonError};

use jiff::Timestamp;
use kup_core::{Catalog, Command, Ctx, Refusal};
use kup_store::StoreError;
use kup_types::{
    HostInfo, HostUpgradeRecord, KubeUpgradeView, Observation, Snapshot, Workloads, WriteBatch,
};

use crate::{EngineError, Inner, Outcome};

impl Inner {
    pub(crate) async fn execute(self: &Arc<Self>, cmd: Command) -> Result<Outcome, EngineError> {
        self.execute_for(cmd, None).await
    }

    /// [`Inner::execute`]; with `strategy`, only while that strategy still applies (the
    /// runner's commands: an abort committed after it decided stops them). Counted for
    /// `/metrics`.
    pub(crate) async fn execute_for(
        self: &Arc<Self>,
        cmd: Command,
        strategy: Option<&str>,
    ) -> Result<Outcome, EngineError> {
        let result = self.execute_locked(cmd, strategy).await;
        self.stats().command(&result);
        result
    }

    async fn execute_locked(
        self: &Arc<Self>,
        cmd: Command,
        strategy: Option<&str>,
    ) -> Result<Outcome, EngineError> {
        let _guard = self.commands.lock().await;
        let now = Timestamp::now();
        let uuid = uuid::Uuid::new_v4().to_string();
        if let Some(s) = strategy {
            kup_core::strategy::runner_may_act(&self.snapshot(), s)?;
        }
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
        if let Some(name) = cmd.host() {
            self.driver.with_views(&mut |obs, _| {
                outcome.host = obs.host(name).cloned();
                outcome.host_upgrade = snap
                    .host(name)
                    .and_then(|row| kup_core::views::host_upgrade(row, obs));
            })?;
        }
        drop(snap);
        for id in &decision.cancel {
            // Marked failed by hand: whatever it still does changes nothing, so stop it.
            if let Err(e) = self.driver.cancel(id).await {
                tracing::warn!(error = %e, id, "cannot cancel an operation marked failed");
            }
        }
        for op in decision.ops {
            self.launch(op).await;
        }
        if crate::runner::needs_runner(&self.snapshot()) {
            self.ensure_runner();
        }
        Ok(outcome)
    }

    /// The store as last committed.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snap.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Commits a batch and, once it is durable, applies it to the cached snapshot (in place,
    /// unless a reader still holds the previous one).
    pub(crate) async fn commit(&self, mut batch: WriteBatch) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        // The strategy's record grows with its batches: the store writes only what changed
        // since the record it holds (the cached snapshot is what was committed).
        if let Some(w) = batch.strategy.take() {
            batch.strategy = Some(w.against(self.snapshot().strategy.as_deref()));
        }
        let events = self.store.commit(batch.clone()).await?;
        {
            let mut snap = self.snap.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::make_mut(&mut snap).apply(&batch);
        }
        if let Some(last) = events.last() {
            self.last_event.send_replace(last.seq);
        }
        Ok(())
    }

    /// Upgrade rows for hosts kup sees for the first time; skipped while the driver's host
    /// list is the one last checked.
    pub(crate) async fn add_missing_rows(&self, now: Timestamp) -> Result<(), EngineError> {
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

    /// The catalog as the store makes it now: the base plus applied platform patches.
    pub(crate) fn catalog_for(&self, snap: &Snapshot) -> Catalog {
        self.catalog
            .with(kup_core::patches::catalog_additions(snap))
    }

    pub(crate) fn ctx<'a>(
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
}

/// Upgrade rows for hosts kup sees for the first time.
pub(crate) fn missing_rows(
    snap: &Snapshot,
    obs: &Observation,
    now: Timestamp,
) -> Vec<HostUpgradeRecord> {
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
pub(crate) fn find_host<'a>(obs: &'a Observation, key: &str) -> Result<&'a HostInfo, Refusal> {
    let id = (!key.is_empty()
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0')))
    .then(|| key.parse::<u32>().ok())
    .flatten();
    obs.host(key)
        .or_else(|| obs.hosts.iter().find(|h| h.uuid == key || Some(h.id) == id))
        .ok_or_else(|| Refusal::UnknownHost(key.to_string()))
}

/// Host commands may name a host by id or uuid; the core works with hostnames.
pub(crate) fn resolve_host(obs: &Observation, mut cmd: Command) -> Result<Command, Refusal> {
    if let Some(host) = cmd.host_mut() {
        *host = find_host(obs, host)?.hostname.clone();
    }
    Ok(cmd)
}
