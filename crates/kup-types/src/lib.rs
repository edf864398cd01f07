//! Wire and data types shared by every kup crate: versions, states, what a driver observes,
//! the operations it performs, and what the store records. No I/O, no logic beyond parsing.

pub mod api;
pub mod catalog;
pub mod cluster;
mod enums;
pub mod index;
pub mod names;
pub mod operation;
pub mod records;
pub mod time;
mod version;
pub mod workloads;

pub use api::{
    AlarmList, AlarmView, ClusterInfo, ErrorBody, EventList, EventView, HostPatchList,
    HostPatchView, HostUpgradeRequest, HostVersions, IHost, IHostList, KubeHostUpgradeList,
    KubeHostUpgradeView, KubeUpgradeCreate, KubeUpgradeList, KubeUpgradeView, KubeVersionDetail,
    KubeVersionList, KubeVersionSummary, PatchList, PatchOp, PatchView,
};
pub use catalog::VersionMeta;
pub use cluster::{
    Alarm, Application, Capacity, ControlPlanePod, HostInfo, HostsToken, NodeInfo, Observation,
    ObservationIndex, PdbInfo, PodInfo, PodPhase, Taint, VolumeKind, WorkloadInfo,
};
pub use enums::{
    AdminState, Availability, HostUpgradeStatus, KubeUpgradeState, OperState, PatchKind,
    PatchState, Personality, Severity, SystemType, UnknownValue, VersionState,
};
pub use operation::{OpStatus, Operation, StepKind};
pub use records::{
    Event, EventKind, HostUpgradeRecord, InstallWrite, KubeUpgradeRecord, NewEvent,
    OperationRecord, OperationState, PatchInstall, PatchRecord, PatchWrite, Snapshot, UpgradeWrite,
    WriteBatch,
};
pub use version::{KubeVersion, VersionError};
pub use workloads::{Listing, PdbId, PodId, Workloads};
