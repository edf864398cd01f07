//! What the dashboard reads (`GET /v1/dashboard`): the cluster in one small answer, each host
//! as one tile of the grid, the strategy's stages without their host lists.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    AdminState, AlarmView, Availability, HostUpgradeStatus, KubeUpgradeState, KubeVersion,
    Personality, StepResult, StrategyState, TileState, UpgradeMode,
};

/// One host of the grid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostTile {
    pub hostname: String,
    pub personality: Personality,
    pub state: TileState,
    /// Why it is failed, skipped or in flight (the step or the strategy's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The host's upgrade status (`null` when idle).
    pub status: Option<HostUpgradeStatus>,
    pub administrative: AdminState,
    pub availability: Availability,
    /// A version, `N/A` (none on this host) or `unknown` (not observed).
    pub control_plane_version: String,
    /// A version, `N/A` (none on this host) or `unknown` (not observed).
    pub kubelet_version: String,
}

/// The cluster's line at the top of the page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DashboardCluster {
    /// The one version everything runs, when it is one.
    #[schema(value_type = Option<String>)]
    pub version: Option<KubeVersion>,
    /// While versions are mixed or an upgrade is in progress.
    #[schema(value_type = Option<String>)]
    pub from_version: Option<KubeVersion>,
    #[schema(value_type = Option<String>)]
    pub to_version: Option<KubeVersion>,
    /// The upgrade's state, while one exists.
    pub upgrade_state: Option<KubeUpgradeState>,
    /// The version the upgrade moves to: the upgrade's target, else that of a strategy that
    /// is applying or applied. A tile is `done` at (or past) it; while the upgrade is
    /// aborting or aborted, back at the upgrade's from-version instead.
    #[schema(value_type = Option<String>)]
    pub target: Option<KubeVersion>,
    pub host_count: u32,
}

/// A stage of the strategy's apply phase (or abort phase, while it aborts), without its host
/// list: what the timeline draws.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageSummary {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub version: Option<KubeVersion>,
    pub host_count: u32,
    /// The first few of its hosts (all of them up to 8), to name the batch.
    pub first_hosts: Vec<String>,
    pub result: StepResult,
    pub reason: String,
    /// The plan's prediction, in seconds of the cluster's step durations.
    pub predicted_seconds: u64,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<jiff::Timestamp>,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<jiff::Timestamp>,
}

/// The strategy, as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StrategySummary {
    pub uuid: String,
    #[schema(value_type = String)]
    pub to_version: KubeVersion,
    pub state: StrategyState,
    pub mode: UpgradeMode,
    pub partial_ok: bool,
    pub max_parallel_worker_hosts: u32,
    /// `build`, `apply` or `abort`.
    pub phase: String,
    pub completion_percentage: u32,
    pub stage_name: Option<String>,
    pub step_name: Option<String>,
    /// The hosts of the step in progress (the first 20).
    pub entity_names: Vec<String>,
    /// The worker batch in progress while the strategy applies (at most its
    /// `max_parallel_worker_hosts`), else empty.
    pub batch: Vec<String>,
    pub result: StepResult,
    pub reason: String,
    pub skipped: u32,
    /// Seconds of the cluster's step durations.
    pub predicted_seconds: u64,
    pub lower_bound_seconds: u64,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<jiff::Timestamp>,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<jiff::Timestamp>,
    /// The stages of the phase the timeline shows: `apply`, or `abort` once it aborts.
    pub timeline_phase: String,
    pub stages: Vec<StageSummary>,
}

/// `GET /v1/dashboard`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DashboardView {
    /// The newest event when this was read: follow `/v1/events?after=` from it and miss none.
    pub last_seq: i64,
    /// The daemon's clock when this was read: what the timeline measures the stages' times
    /// against (not the browser's clock, which may differ).
    #[serde(with = "crate::time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub now: jiff::Timestamp,
    /// Wall seconds per second of the cluster's step durations (a simulation's
    /// `--time-scale`; 1 on a real cluster): what turns a prediction into a time on the clock.
    pub time_scale: f64,
    pub cluster: DashboardCluster,
    pub strategy: Option<StrategySummary>,
    pub alarms: Vec<AlarmView>,
    /// Every host sorted by id, or those asked for (`?hosts=`).
    pub hosts: Vec<HostTile>,
}

/// One finding of the safety analysis of taking a host down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FindingView {
    /// `WARNING` or `UNSAFE`.
    pub verdict: String,
    /// What it is about: `pod ns/name`, `pdb ns/name`, `host name`, ...
    pub subject: String,
    pub reason: String,
}

/// `GET /v1/ihosts/{host}/findings`: what locking (draining) the host alone would do to the
/// workloads, and whether it is ready for the upgrade's target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostFindings {
    pub hostname: String,
    pub roles: Vec<String>,
    /// `OK`, `WARNING` or `UNSAFE`: the worst finding's.
    pub verdict: String,
    pub findings: Vec<FindingView>,
    /// The version readiness is judged for (the upgrade's or strategy's target, else the
    /// newest available one); `null` when there is none.
    #[schema(value_type = Option<String>)]
    pub target: Option<KubeVersion>,
    pub ready: bool,
    pub problems: Vec<String>,
}
