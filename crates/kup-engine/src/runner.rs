//! The runner: applies the upgrade strategy. It asks the core what to do next
//! ([`kup_core::strategy::next`]) on the store's snapshot and the cluster's views, and does
//! it through the one command path (`Inner::execute`), exactly as a user's command would go.
//! It keeps nothing of its own: the strategy record, the upgrade and host rows, the operation
//! records and the cluster say where it is, so a restart resumes it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use kup_core::rollback::RollbackStep;
use kup_core::strategy::{self, Next, Progress, Retry, StepAt, StrategyCommand};
use kup_core::{Command, Refusal};
use kup_types::{KubeUpgradeState, OperationState, Snapshot, StrategyRecord, StrategyState};

use crate::{EngineError, Inner};

/// The longest the runner sleeps without looking again when nothing tells it of a change.
const IDLE: Duration = Duration::from_secs(1);
/// After an error of the store or the cluster, before trying again.
const TROUBLE: Duration = Duration::from_secs(1);

impl Inner {
    /// Starts the runner unless one runs; it stops by itself when the strategy no longer
    /// applies or aborts.
    pub(crate) fn ensure_runner(self: &Arc<Self>) {
        if self.runner_active.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            loop {
                this.run_strategy().await;
                this.runner_active.store(false, Ordering::SeqCst);
                // A strategy applied (or an abort begun) just as this one stopped: run it too.
                let again = needs_runner(&this.snapshot());
                if !again || this.runner_active.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
        });
        let mut tasks = self.tasks();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
    }

    async fn run_strategy(self: &Arc<Self>) {
        loop {
            // Subscribed before looking, so a commit in between still wakes the wait.
            let mut changed = self.last_event.subscribe();
            // Shared, not copied (the record grows with the cluster); and the snapshot let go
            // of before any commit, which would otherwise have to copy it.
            let snap = self.snapshot();
            let strategy = snap.strategy.clone();
            let idle = snap.operations.is_empty();
            let aborting = snap
                .upgrade
                .as_ref()
                .is_some_and(|u| u.state == KubeUpgradeState::UpgradeAborting);
            drop(snap);
            let step = match strategy.as_ref().map(|s| s.state) {
                Some(StrategyState::Applying) => {
                    self.step(strategy.as_ref().expect("matched")).await
                }
                Some(StrategyState::Aborting) if idle => self.record(Progress::Aborted).await,
                Some(StrategyState::Aborting) => Ok(Step::Wait(IDLE)),
                _ if aborting => self.rollback_step().await,
                _ => return,
            };
            match step {
                Ok(Step::Again) => {}
                Ok(Step::Wait(d)) => {
                    let _ = tokio::time::timeout(d, changed.changed()).await;
                }
                // The strategy is over; an abort may still have its way back to go.
                Ok(Step::Stop) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the strategy runner cannot go on just now");
                    tokio::time::sleep(TROUBLE).await;
                }
            }
        }
    }

    /// One decision of the applying strategy, and what it leads to.
    async fn step(self: &Arc<Self>, s: &StrategyRecord) -> Result<Step, EngineError> {
        let next = self.next(s)?;
        match next {
            Next::Run { cmd, at, key } => {
                self.record_at(s, &at).await?;
                if let Some(key) = key {
                    match self.retry(s, &key).await? {
                        Retry::Now => {}
                        Retry::At(t) => {
                            let left = t.duration_since(Timestamp::now());
                            let left = Duration::try_from(left).unwrap_or_default();
                            return Ok(Step::Wait(left.min(IDLE)));
                        }
                        Retry::GiveUp(why) => {
                            let timed_out = why.contains("timed out");
                            self.record(Progress::Failed {
                                reason: format!("{}: {why}", describe_step(&cmd)),
                                at: Some(at),
                                timed_out,
                            })
                            .await?;
                            return Ok(Step::Stop);
                        }
                    }
                }
                match self.execute_for(cmd.clone(), Some(&s.uuid)).await {
                    Ok(_) => Ok(Step::Again),
                    // Aborted (or gone) since it decided: look again.
                    Err(EngineError::Refused(Refusal::StrategyStopped(_))) => Ok(Step::Again),
                    Err(EngineError::Refused(r)) => {
                        let mut progress = None;
                        self.driver.with_views(&mut |obs, _| {
                            progress = strategy::refused(s, obs, &at, &cmd, &r);
                        })?;
                        match progress {
                            None => Ok(Step::Wait(IDLE)),
                            Some(p) => {
                                let stop = matches!(p, Progress::Failed { .. });
                                self.record(p).await?;
                                Ok(if stop { Step::Stop } else { Step::Again })
                            }
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Next::Wait { at, .. } => {
                self.record_at(s, &at).await?;
                Ok(Step::Wait(IDLE))
            }
            Next::Batch {
                hosts,
                skipped,
                version,
            } => {
                self.record(Progress::Batch {
                    hosts,
                    skipped,
                    version,
                })
                .await
            }
            Next::Done => {
                self.record(Progress::Done).await?;
                Ok(Step::Stop)
            }
            Next::Fail { at, reason } => {
                self.record(Progress::Failed {
                    at: Some(at),
                    reason,
                    timed_out: false,
                })
                .await?;
                Ok(Step::Stop)
            }
        }
    }

    /// One decision of the way back of an abort, and what it leads to.
    async fn rollback_step(self: &Arc<Self>) -> Result<Step, EngineError> {
        let snap = self.snapshot();
        let catalog = self.catalog_for(&snap);
        let mut next = None;
        self.driver.with_views(&mut |obs, workloads| {
            let ctx = self.ctx(&catalog, &snap, obs, Some(workloads), Timestamp::now(), "");
            next = Some(kup_core::rollback::next(&ctx));
        })?;
        drop(snap);
        let stuck = |reason: String| Command::Rollback(RollbackStep::Stuck { reason });
        match next.expect("the driver calls back") {
            Next::Run { cmd, .. } => match self.execute(cmd.clone()).await {
                Ok(_) => Ok(Step::Again),
                // Something runs that the decision did not see yet: look again soon.
                Err(EngineError::Refused(
                    Refusal::HostBusy { .. }
                    | Refusal::KubeletBusy(_)
                    | Refusal::ControlPlaneBusy(_)
                    | Refusal::ControlPlaneInFlight { .. }
                    | Refusal::LockDuringControlPlane { .. }
                    | Refusal::LockControlPlanePeerDown { .. },
                )) => Ok(Step::Wait(IDLE)),
                Err(EngineError::Refused(r)) => {
                    self.execute(stuck(format!("{}: {r}", cmd.describe())))
                        .await?;
                    Ok(Step::Again)
                }
                Err(e) => Err(e),
            },
            Next::Wait { .. } => Ok(Step::Wait(IDLE)),
            Next::Fail { reason, .. } => {
                self.execute(stuck(reason)).await?;
                Ok(Step::Again)
            }
            Next::Batch { .. } | Next::Done => Ok(Step::Again),
        }
    }

    /// What the core says to do next, on the store as committed and the cluster now.
    fn next(&self, s: &StrategyRecord) -> Result<Next, EngineError> {
        let snap = self.snapshot();
        let catalog = self.catalog_for(&snap);
        let mut next = None;
        self.driver.with_views(&mut |obs, workloads| {
            let ctx = self.ctx(&catalog, &snap, obs, Some(workloads), Timestamp::now(), "");
            next = Some(strategy::next(&ctx, s));
        })?;
        Ok(next.expect("the driver calls back"))
    }

    /// Whether a step that failed before may run again: its failures since this apply began.
    async fn retry(&self, s: &StrategyRecord, key: &str) -> Result<Retry, EngineError> {
        let since = s.apply_phase.start.unwrap_or(s.created_at);
        let failures: Vec<(Timestamp, String)> = self
            .store
            .operation_history(key)
            .await?
            .into_iter()
            .filter(|o| o.state == OperationState::Failed && o.started_at >= since)
            // Cut short by a restart of kup, not failed by the cluster.
            .filter(|o| {
                !o.detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with(kup_core::machine::IN_FLIGHT_AT_RESTART))
            })
            .map(|o| {
                (
                    o.ended_at.unwrap_or(o.started_at),
                    o.detail.unwrap_or_else(|| "failed".into()),
                )
            })
            .collect();
        Ok(strategy::retry(
            &failures,
            self.policy.retries,
            self.policy.retry_backoff,
            Timestamp::now(),
        ))
    }

    /// Records that the strategy is at `at`, unless its record says so already.
    async fn record_at(
        self: &Arc<Self>,
        s: &StrategyRecord,
        at: &StepAt,
    ) -> Result<(), EngineError> {
        if strategy::already_at(s, at) {
            return Ok(());
        }
        self.record(Progress::At(at.clone())).await.map(|_| ())
    }

    async fn record(self: &Arc<Self>, p: Progress) -> Result<Step, EngineError> {
        match self
            .execute(Command::Strategy(StrategyCommand::Progress(p)))
            .await
        {
            // Aborted meanwhile: the loop sees it.
            Ok(_) | Err(EngineError::Refused(Refusal::StrategyStopped(_))) => Ok(Step::Again),
            Err(e) => Err(e),
        }
    }
}

/// Whether a runner has work: a strategy applying or aborting, or the way back of an abort.
pub(crate) fn needs_runner(snap: &Snapshot) -> bool {
    snap.strategy.as_ref().is_some_and(|s| s.state.running())
        || snap
            .upgrade
            .as_ref()
            .is_some_and(|u| u.state == KubeUpgradeState::UpgradeAborting)
}

/// How a step is named in a failure: the command a user would have typed.
fn describe_step(cmd: &Command) -> String {
    cmd.describe()
}

enum Step {
    /// Decide again at once.
    Again,
    /// Wait for a change (an event), at most this long.
    Wait(Duration),
    /// The strategy no longer needs the runner.
    Stop,
}
