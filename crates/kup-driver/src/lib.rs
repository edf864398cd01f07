//! The driver trait: everything the engine does to, or reads from, a cluster goes through it.
//!
//! The contract, shaped for a real cluster (Kubernetes API + SSH to kubeadm hosts) as much as
//! for the simulation:
//! - `observe` reads what runs now; the engine never trusts its own memory of the cluster.
//! - `start` begins an operation and returns at once. Starting an operation that is already
//!   running attaches to it; starting one that already succeeded is a no-op. Both make a
//!   retried command safe.
//! - `status`/`wait` report how an operation went; the engine then confirms the effect with
//!   `observe` before it records success.

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

    /// Begins `op` (idempotent, see the crate docs).
    async fn start(&self, op: &Operation) -> Result<(), DriverError>;

    /// The latest known outcome of `op`.
    async fn status(&self, op: &Operation) -> Result<OpStatus, DriverError>;

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

    /// How often `wait` polls `status`.
    fn poll_interval(&self) -> Duration {
        Duration::from_secs(2)
    }

    /// Resolves when `op` has succeeded or failed. Drivers that can be notified override it.
    async fn wait(&self, op: &Operation) -> Result<OpStatus, DriverError> {
        loop {
            let s = self.status(op).await?;
            if s.is_terminal() {
                return Ok(s);
            }
            tokio::time::sleep(self.poll_interval()).await;
        }
    }
}
