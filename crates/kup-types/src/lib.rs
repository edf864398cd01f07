//! Wire and data types shared by every kup crate: versions, states, what a driver observes,
//! the operations it performs, and what the store records. No I/O, no logic beyond parsing.

pub mod api;
pub mod catalog;
pub mod cluster;
pub mod dashboard;
mod enums;
/// The bodies of the fuzz targets, for `fuzz/` and the tests that replay its corpus.
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod names;
pub mod operation;
pub mod records;
pub mod strategy;
pub mod time;
mod version;
pub mod workloads;

pub use api::{
    AlarmList, AlarmView, ClusterInfo, ClusterStatus, ControlPlaneBackup, ErrorBody, EventList,
    EventView, HostPatchList, HostPatchView, HostUpgradeRequest, HostVersions, IHost, IHostList,
    KubeHostUpgradeList, KubeHostUpgradeView, KubeUpgradeCreate, KubeUpgradeList, KubeUpgradeView,
    KubeVersionDetail, KubeVersionList, KubeVersionSummary, PatchList, PatchOp, PatchView,
    ReplicaStatus, SafetyAudit,
};
pub use catalog::VersionMeta;
pub use cluster::{
    Alarm, ApiUsage, Application, Capacity, ControlPlanePod, HostInfo, HostsToken, NodeInfo,
    Observation, ObservationIndex, PdbInfo, PodInfo, PodPhase, Taint, VolumeKind, WorkloadInfo,
};
pub use dashboard::{
    DashboardCluster, DashboardView, FindingView, HostFindings, HostTile, StageSummary,
    StrategySummary,
};
pub use enums::{
    AdminState, AlarmRestrictions, ApplyType, Availability, HostUpgradeStatus, KubeUpgradeState,
    OperState, PatchKind, PatchState, Personality, Severity, StepResult, StrategyState, SystemType,
    TileState, UnknownValue, UpgradeMode, VersionState,
};
pub use operation::{OpStatus, Operation, PatchFile, Payload, StepKind, payload_of};
pub use records::{
    Event, EventKind, HostUpgradeRecord, InstallWrite, KubeUpgradeRecord, NewEvent,
    OperationRecord, OperationState, PatchInstall, PatchRecord, PatchWrite, Snapshot,
    StrategyWrite, UpgradeWrite, WriteBatch,
};
pub use strategy::{
    SkippedHost, StrategyActionRequest, StrategyCreate, StrategyProgress, StrategyRecord,
    StrategyView,
};
pub use version::{KubeVersion, VersionError};
pub use workloads::{Listing, PdbId, PodId, Workloads};
