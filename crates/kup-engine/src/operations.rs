//! Operations on the cluster: started once their record is committed, followed to their end,
//! which is recorded only once the cluster shows it.

use std::sync::{Arc, MutexGuard, PoisonError};

use jiff::Timestamp;
use kup_types::{OpStatus, OperationRecord, WriteBatch};
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
    pub(crate) async fn complete(&self, record: &OperationRecord, outcome: OpStatus) {
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

    pub(crate) async fn try_complete(
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
