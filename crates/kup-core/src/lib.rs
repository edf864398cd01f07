//! The pure core of kup: the version catalog and live version states, the health checks, the
//! upgrade state machine with every semantic check, and the read models.
//!
//! Nothing here does I/O, reads the clock or draws random numbers: callers pass the store's
//! snapshot, the cluster's observation, the time and any fresh ids. That makes every rule
//! testable as a plain function call, and lets the engine be the only place with effects.

pub mod catalog;
pub mod dashboard;
pub mod health;
pub mod machine;
pub mod patches;
pub mod plan;
pub mod refusal;
pub mod removed_apis;
pub mod rollback;
pub mod safety;
pub mod skew;
pub mod strategy;
pub mod views;

pub use catalog::{Catalog, running_versions};
pub use health::{DEFAULT_ALARM_IGNORE, HealthReport, kube_upgrade_health};
pub use machine::{
    Command, Ctx, Decision, OpSlot, Policy, Recovery, decide, default_deadlines, finish,
    observed_done, recover,
};
pub use refusal::Refusal;
