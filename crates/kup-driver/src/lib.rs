//! The driver trait: everything the engine does to, or reads from, a cluster goes through it.
//!
//! The contract, shaped for a real cluster (Kubernetes API + SSH to kubeadm hosts) as much as
//! for the simulation:
//! - `observe` reads what runs now; the engine never trusts its own memory of the cluster.
//! - `start` begins an operation under the id the engine recorded for it, and returns at once.
//!   Starting an operation that is already running (under any id) attaches to it; starting one
//!   that already succeeded is a no-op. Both make a retried command safe.
//! - `status`/`wait` report how an operation went, by its id, so that an engine that restarted
//!   can ask about what it had started; the engine then confirms the effect with `observe`
//!   before it records success, and gives up at the operation's deadline (`wait` returns
//!   `Running` when its time is up: no wait is unbounded).

use std::time::Duration;

use async_trait::async_trait;
use std::sync::Arc;

use kup_types::{Observation, OpStatus, Operation, Workloads};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("the cluster cannot be reached: {0}")]
    Unreachable(String),
    #[error("the cluster refused {op}: {reason}")]
    Rejected { op: String, reason: String },
}

/// What a command that a driver ran for an operation said, on which host: kept in the event
/// log beside the operation's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostOutput {
    pub host: String,
    pub message: String,
}

#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// A consistent view of hosts, nodes, control-plane pods, alarms, applications, images and
    /// networking: everything whose size is the number of hosts. Shared, not copied: a driver
    /// keeps it current and hands out the same snapshot until the cluster changes.
    async fn observe(&self) -> Result<Arc<Observation>, DriverError>;

    /// The pods, their owners and their PodDisruptionBudgets, indexed ([`Workloads`]); shared
    /// like `observe`, and read only by what needs pods.
    async fn workloads(&self) -> Result<Arc<Workloads>, DriverError>;

    /// Calls `f` with the hosts' view and the pods as they are now, while the driver holds
    /// them still: how the engine reads them to decide, in place. Holding a shared snapshot
    /// instead would make the driver copy it to change it meanwhile, and the pods of a large
    /// cluster are a hundred megabytes. `f` must be quick and must not block.
    fn with_views(&self, f: &mut dyn FnMut(&Observation, &Workloads)) -> Result<(), DriverError>;

    /// Whether the cluster can be reached and the driver works, cheaply (for `/healthz`;
    /// reads nothing that grows with the cluster).
    async fn check(&self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Begins `op` as operation `id` (idempotent, see the crate docs).
    async fn start(&self, id: &str, op: &Operation) -> Result<(), DriverError>;

    /// Gives up operation `id` (it passed its deadline): the driver stops it if it can, and
    /// forgets it, so that a re-do starts afresh rather than attaching to what hung.
    async fn cancel(&self, id: &str) -> Result<(), DriverError> {
        let _ = id;
        Ok(())
    }

    /// The latest known outcome of operation `id`; `NotStarted` for an id the driver does
    /// not know (a process that ran it is gone).
    async fn status(&self, id: &str) -> Result<OpStatus, DriverError>;

    /// Takes what the commands of operation `id` said on its hosts so far (each is given
    /// once). A driver that runs no commands says nothing.
    fn transcript(&self, id: &str) -> Vec<HostOutput> {
        let _ = id;
        Vec::new()
    }

    /// What a simulated cluster saw of the upgrade's safety; a real one says nothing.
    fn safety_audit(&self) -> Option<kup_types::SafetyAudit> {
        None
    }

    /// How long each kind of step takes on this cluster, in seconds, for planning. The
    /// default is a typical kubeadm cluster's.
    fn step_durations(&self) -> std::collections::BTreeMap<kup_types::StepKind, u64> {
        use kup_types::StepKind::*;
        [
            (DownloadImages, 240),
            (ControlPlane, 360),
            (Networking, 180),
            (Kubelet, 240),
            (Lock, 45),
            (Unlock, 420),
            (Swact, 60),
        ]
        .into_iter()
        .collect()
    }

    /// Wall seconds per second of [`Driver::step_durations`]: a simulation's time scale; 1 on
    /// a real cluster. What turns a predicted duration into a time on the clock.
    fn time_scale(&self) -> f64 {
        1.0
    }

    /// How often `wait` polls `status`.
    fn poll_interval(&self) -> Duration {
        Duration::from_secs(2)
    }

    /// Resolves when operation `id` has succeeded or failed, or with its last status once
    /// `timeout` has passed. Drivers that can be notified override it.
    async fn wait(&self, id: &str, timeout: Duration) -> Result<OpStatus, DriverError> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.status(id).await?;
            if s.is_terminal() || tokio::time::Instant::now() >= until {
                return Ok(s);
            }
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + self.poll_interval()))
                .await;
        }
    }
}
