//! Operations on the cluster: started once their record is committed, followed to their end,
//! which is recorded only once the cluster shows it.

use std::sync::{Arc, MutexGuard, PoisonError};

use jiff::Timestamp;
use kup_types::{EventKind, NewEvent, OpStatus, OperationRecord, WriteBatch};
use tokio::task::AbortHandle;

use crate::{EngineError, Inner};

impl Inner {
    pub(crate) fn tasks(&self) -> MutexGuard<'_, Vec<AbortHandle>> {
        // The list stays valid whatever panicked while holding it.
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts an operation (its record is already committed) and a task that records its end.
    /// Called with the command lock held.
    pub(crate) async fn launch(self: &Arc<Self>, record: OperationRecord) {
        let started = self.driver.start(&record.id, &record.op).await;
        self.follow(record, started.err().map(|e| e.to_string()));
    }

    /// Follows an operation the driver still runs after a restart, as if just started.
    pub(crate) fn reattach(self: &Arc<Self>, record: OperationRecord) {
        self.follow(record, None);
    }

    /// A task that waits for the operation until its deadline, confirms its effect in the
    /// cluster, and records its end. `refused`: the driver would not start it.
    fn follow(self: &Arc<Self>, record: OperationRecord, refused: Option<String>) {
        self.running.send_modify(|n| *n += 1);
        let this = Arc::clone(self);
        let waiter = tokio::spawn({
            let this = Arc::clone(self);
            let record = record.clone();
            async move {
                match refused {
                    Some(why) => OpStatus::Failed(why),
                    None => this.outcome(&record).await,
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

    /// How the operation ends: what the driver reports by its deadline, a success only once
    /// the cluster shows it (a real cluster's kubelet version and static pods lag behind the
    /// command), and a failure "timed out" when the deadline passes first.
    async fn outcome(&self, record: &OperationRecord) -> OpStatus {
        let left = |now: Timestamp| {
            std::time::Duration::try_from(record.deadline.duration_since(now)).unwrap_or_default()
        };
        let status = match self.driver.wait(&record.id, left(Timestamp::now())).await {
            Ok(OpStatus::Succeeded) => OpStatus::Succeeded,
            Ok(OpStatus::Failed(why)) => return OpStatus::Failed(why),
            Ok(OpStatus::Running | OpStatus::NotStarted) => {
                // Hung: given up, so that a re-do starts afresh.
                if let Err(e) = self.driver.cancel(&record.id).await {
                    tracing::warn!(error = %e, op = %record.op, "cannot cancel a hung operation");
                }
                let secs = record.deadline.duration_since(record.started_at).as_secs();
                return OpStatus::Failed(format!("timed out after {secs} s"));
            }
            Err(e) => return OpStatus::Failed(e.to_string()),
        };
        loop {
            let mut seen = false;
            let _ = self.driver.with_views(&mut |obs, _| {
                seen = kup_core::observed_done(obs, &record.op).is_ok();
            });
            if seen || left(Timestamp::now()).is_zero() {
                // Recorded by `finish`, which checks once more and says what is missing.
                return status;
            }
            tokio::time::sleep(self.driver.poll_interval().min(left(Timestamp::now()))).await;
        }
    }

    /// Records how an operation ended. If the cluster or the store cannot be read or written
    /// just now, it tries again (backing off up to 30 s) rather than leave the step in flight
    /// with nothing left to settle it.
    pub(crate) async fn complete(&self, record: &OperationRecord, outcome: OpStatus) {
        let mut delay = std::time::Duration::from_millis(100);
        let said = self.driver.transcript(&record.id);
        loop {
            match self.try_complete(record, &outcome, &said).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, op = %record.op, "cannot record the end of an operation yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
    }

    /// `said`: what the operation's commands said on its hosts, recorded before its end.
    pub(crate) async fn try_complete(
        &self,
        record: &OperationRecord,
        outcome: &OpStatus,
        said: &[kup_driver::HostOutput],
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
        let now = Timestamp::now();
        let told = said.iter().map(|o| NewEvent {
            at: now,
            kind: EventKind::Operation,
            subject: o.host.clone(),
            message: format!("{}: {}", record.op, o.message),
        });
        batch.events.splice(0..0, told);
        self.commit(batch).await?;
        let seconds = now.duration_since(record.started_at).as_secs_f64().max(0.0);
        self.stats().step(
            record.op.kind().as_str(),
            *outcome == OpStatus::Succeeded,
            seconds,
        );
        Ok(())
    }
}
