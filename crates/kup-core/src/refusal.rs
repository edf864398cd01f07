//! Every reason kup refuses a command. Messages follow StarlingX's wording where it has one,
//! and always say what was refused and why, in one line.

use kup_types::{
    KubeUpgradeState, KubeVersion, PatchKind, PatchState, SystemType, VersionError, VersionState,
};

/// At most three reasons in a one-line message; the plan shows them all.
fn summarize(reasons: &[String]) -> String {
    match reasons.len() {
        0..=3 => reasons.join("; "),
        n => format!(
            "{}; and {} more (see kup upgrade plan)",
            reasons[..3].join("; "),
            n - 3
        ),
    }
}

fn join_states(states: &[KubeUpgradeState]) -> String {
    states
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    // -- lookups (the API answers these with 404) --
    #[error("Host {0} not found")]
    UnknownHost(String),
    #[error("Kubernetes version {0} not found")]
    UnknownVersionLookup(KubeVersion),
    #[error("Patch {0} not found")]
    UnknownPatch(String),
    #[error("No Kubernetes version is available to upgrade to; name one with --to")]
    NothingToPlan,

    // -- patches --
    #[error("Patch {0} is already uploaded; delete it first to upload it again")]
    PatchExists(String),
    #[error("Patch {id} can not be applied: it is {state}, not available")]
    PatchNotAvailable { id: String, state: PatchState },
    #[error("Patch {id} requires {required}, which is not applied")]
    PatchRequires { id: String, required: String },
    #[error(
        "Patch {id} delivers the kubelet of {version}; it can not be applied before the kubelet phase of an upgrade to {version} may begin"
    )]
    KubeletPatchTooEarly { id: String, version: KubeVersion },
    #[error(
        "Patch {id} can not be applied: {version} is already delivered by patch {by}; a version comes from one platform patch (remove {by} first)"
    )]
    VersionDeliveredByPatch {
        id: String,
        version: KubeVersion,
        by: String,
    },
    #[error(
        "Patch {id} can not be applied: the {kind} of {version} is already delivered by patch {by} (remove {by} first)"
    )]
    BinariesDeliveredByPatch {
        id: String,
        kind: PatchKind,
        version: KubeVersion,
        by: String,
    },
    #[error(
        "Patch {id} can not be applied: {version} is already in the platform's version catalog, and a platform patch may not change a known version's metadata"
    )]
    VersionAlreadyKnown { id: String, version: KubeVersion },
    #[error("Patch {id} can not be removed: it is {state}, not applied")]
    PatchNotApplied { id: String, state: PatchState },
    #[error("Patch {id} is required by {dependent}; remove {dependent} first")]
    PatchRequiredBy { id: String, dependent: String },
    #[error(
        "Patch {id} can not be removed or deleted while an upgrade to {version} is in progress"
    )]
    PatchInUse { id: String, version: KubeVersion },
    #[error("Patch {id} can not be removed: the cluster runs {version}, which it delivers")]
    PatchRunning { id: String, version: KubeVersion },
    #[error("Patch {id} must be removed before it is deleted (it is {state})")]
    PatchNotRemoved { id: String, state: PatchState },
    #[error("The following patches must be applied before doing the kubernetes upgrade: {}", .0.join(", "))]
    PatchesNotApplied(Vec<String>),
    #[error("The following patches must be available before doing the kubernetes upgrade: {}", .0.join(", "))]
    PatchesNotAvailable(Vec<String>),
    #[error(
        "The {kind} of {version} (patch {patch}) is not installed on {host}; {}",
        if *.applied {
            format!("run sw-patch host-install {host} first")
        } else {
            format!("apply patch {patch}, then run sw-patch host-install {host}")
        }
    )]
    BinariesNotInstalled {
        host: String,
        kind: PatchKind,
        patch: String,
        version: KubeVersion,
        applied: bool,
    },

    // -- start --
    #[error("A kubernetes upgrade is already in progress")]
    AlreadyInProgress,
    #[error("{0}")]
    InvalidVersion(#[from] VersionError),
    #[error("Kubernetes version {0} is not available")]
    UnknownVersion(KubeVersion),
    #[error(
        "The installed Kubernetes version is not active on all hosts (running: {}); the cluster must run one version to start an upgrade",
        .running.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
    )]
    RunningVersionNotActive { running: Vec<KubeVersion> },
    #[error("The installed Kubernetes version {0} is not known to the version catalog")]
    RunningVersionUnknown(KubeVersion),
    #[error("The target Kubernetes version {to} is not in available state (it is {state})")]
    TargetNotAvailable {
        to: KubeVersion,
        state: VersionState,
    },
    #[error("The installed Kubernetes version {from} cannot upgrade to version {to}")]
    NoUpgradePath { from: KubeVersion, to: KubeVersion },
    #[error(
        "Kubernetes {from} can not be upgraded to {to} in one step: the control plane moves one minor version at a time (upgrade to a v{}.{} release first)",
        .from.major, .from.minor + 1
    )]
    SkipsMinor { from: KubeVersion, to: KubeVersion },
    #[error("Can not upgrade the control plane on {host} to {to}: {detail}")]
    SkewPolicy {
        host: String,
        to: KubeVersion,
        detail: String,
    },
    #[error(
        "System is not in a valid state for kubernetes upgrade: {}. Run health-query-kube-upgrade for details",
        .0.join("; ")
    )]
    Unhealthy(Vec<String>),
    #[error(
        "The following apps are incompatible with the target Kubernetes version {to}: {}",
        .apps.join(", ")
    )]
    IncompatibleApps { to: KubeVersion, apps: Vec<String> },

    // -- the upgrade's state machine --
    #[error("A kubernetes upgrade is not in progress")]
    NotInProgress,
    #[error("Kubernetes upgrade must be in {} state to {action} (it is in {state} state)", join_states(.allowed))]
    WrongState {
        state: KubeUpgradeState,
        allowed: Vec<KubeUpgradeState>,
        action: &'static str,
    },
    #[error("A kubernetes upgrade is in {0} state cannot be set to failed")]
    CannotSetFailed(KubeUpgradeState),
    #[error("Host {0} has no upgrade step or action in progress to mark failed")]
    NoStepInFlight(String),
    #[error("Invalid state {0} supplied")]
    InvalidState(String),

    // -- control plane --
    #[error("Host {host} does not have a kubernetes control plane (it is a {personality} host)")]
    NoControlPlane { host: String, personality: String },
    #[error("Unable to determine the version of the control plane on {0}")]
    ControlPlaneUnknown(String),
    #[error("The control plane on {host} was already upgraded to {version}")]
    ControlPlaneAlreadyUpgraded { host: String, version: KubeVersion },
    #[error("The control plane on {0} is already being upgraded")]
    ControlPlaneBusy(String),
    #[error(
        "Can not upgrade the first control plane on {host}: the control plane on {peer} is not settled at the old version and ready (an upgrade may still be running there); wait, or re-do it on {peer}"
    )]
    PeerControlPlaneUnsettled { host: String, peer: String },
    #[error(
        "The host must be unlocked and enabled to upgrade the control plane ({host} is {state})"
    )]
    ControlPlaneHostState { host: String, state: String },
    #[error(
        "Update second control-plane before updating first control plane again ({peer} has not caught up with {host})"
    )]
    SecondControlPlanesFirst { host: String, peer: String },
    #[error(
        "Can not upgrade the kubelet on {host} while the control planes run different versions: finish the control planes first"
    )]
    ControlPlanesDiffer { host: String },
    #[error("Kubernetes networking is already upgraded")]
    NetworkingAlreadyUpgraded,
    #[error(
        "Can not upgrade the control plane on {host}: the control plane on {other} is being upgraded; control planes are upgraded one at a time"
    )]
    ControlPlaneInFlight { host: String, other: String },
    #[error(
        "Can not upgrade the control plane on {host}: control-plane host {peer} is {why}; two control-plane hosts must never be down at once"
    )]
    PeerControlPlaneDown {
        host: String,
        peer: String,
        why: String,
    },

    // -- kubelet --
    #[error("Host {host} does not have a kubelet (it is a {personality} host)")]
    NoKubelet { host: String, personality: String },
    #[error(
        "The kubelets on all controller hosts must be upgraded before upgrading kubelets on worker hosts (not yet upgraded: {})",
        .0.join(", ")
    )]
    ControllersFirst(Vec<String>),
    #[error("Unable to determine the version of the kubelet on {0}")]
    KubeletUnknown(String),
    #[error("The host must be {need} to upgrade the kubelet ({host} is {state})")]
    KubeletHostState {
        host: String,
        need: &'static str,
        state: String,
    },
    #[error("The kubelet on {0} is already being upgraded")]
    KubeletBusy(String),

    // -- complete --
    #[error("At least one host has not completed the kubernetes upgrade: {}", .0.join(", "))]
    HostsNotDone(Vec<String>),
    #[error("Kubernetes {to} must be active on all hosts to complete (it is {state})")]
    TargetNotActive {
        to: KubeVersion,
        state: VersionState,
    },

    // -- host actions --
    #[error(
        "Can not lock {host}{}: draining it is unsafe ({}); use --force to lock it anyway",
        if .with.is_empty() { String::new() } else { format!(" while {} is locking", .with.join(", ")) },
        summarize(.reasons)
    )]
    LockUnsafe {
        host: String,
        with: Vec<String>,
        reasons: Vec<String>,
    },
    #[error("Host {0} is already locked")]
    AlreadyLocked(String),
    #[error("Host {0} is already unlocked")]
    AlreadyUnlocked(String),
    #[error("Can not lock {host}: it is the active controller; swact to {other} first")]
    LockActiveController { host: String, other: String },
    #[error(
        "Can not lock {0}: it is the only available controller (no other is unlocked, enabled, available and idle)"
    )]
    LockLastController(String),
    #[error("Can not lock {host} while the control plane on {upgrading} is being upgraded")]
    LockDuringControlPlane { host: String, upgrading: String },
    #[error(
        "Can not lock {host}: control-plane host {peer} is {why}; two control-plane hosts must never be down at once"
    )]
    LockControlPlanePeerDown {
        host: String,
        peer: String,
        why: String,
    },
    #[error("Host {host} has an action in progress ({task}); wait for it to finish")]
    HostBusy { host: String, task: String },
    #[error(
        "Can not unlock {0} while upgrading kubelet. Wait for kubelet upgrade to complete, or use force-unlock"
    )]
    UnlockDuringKubelet(String),
    #[error("Setting the state to {0} needs the host too (the hostname field)")]
    HostnameRequired(String),
    #[error("The 'system kube-host-cordon' is not supported in {0} (only on aio-simplex)")]
    CordonNotSimplex(SystemType),
    #[error("The system kube-host-uncordon is not supported in {0} (only on aio-simplex)")]
    UncordonNotSimplex(SystemType),
    #[error("Can not cordon {host}: it must be unlocked (it is {state})")]
    CordonHostState { host: String, state: String },
    #[error(
        "At least one host has not completed the kubelet upgrade: {}",
        .0.join(", ")
    )]
    UncordonBeforeKubelets(Vec<String>),
    #[error(
        "Can not swact {0}: a kubeadm cluster has no active controller to hand over (every control-plane node serves)"
    )]
    SwactNoActiveRole(String),
    #[error("Can not swact {0}: it is not a controller")]
    SwactNotController(String),
    #[error("Can not swact {0}: it is not the active controller")]
    SwactNotActive(String),
    #[error("Can not swact {0}: no other controller is unlocked, enabled and available")]
    SwactNoStandby(String),
    #[error("Can not swact {0} while a control plane upgrade is in progress")]
    SwactDuringControlPlane(String),

    // -- the upgrade strategy --
    #[error("Invalid strategy: {0}")]
    InvalidStrategy(String),
    #[error("A kube-upgrade strategy already exists; delete it first")]
    StrategyExists,
    #[error("No kube-upgrade strategy exists")]
    NoStrategy,
    #[error("The strategy is {0}: wait for it to finish or abort it first")]
    StrategyBusy(kup_types::StrategyState),
    #[error("The strategy is {0}, not ready to apply")]
    StrategyNotReady(kup_types::StrategyState),
    #[error("Abort rejected: abort can only be executed when the strategy is applying (it is {0})")]
    StrategyAbortNotApplying(kup_types::StrategyState),
    #[error("The strategy is no longer applying (it is {0}): its runner starts nothing more")]
    StrategyStopped(String),
    // -- abort --
    #[error("The kubernetes upgrade can not be aborted in {0} state")]
    CannotAbort(KubeUpgradeState),
    #[error("Nothing to take back on {0}")]
    NothingToRollBack(String),
    #[error(
        "Can not take the control planes back to {to} while kubelets run newer versions: {}",
        .hosts.join(", ")
    )]
    KubeletsAhead { to: KubeVersion, hosts: Vec<String> },
    #[error("Not every host is back at the from-version yet")]
    NotBackYet,
    #[error("Internal error: {0}")]
    Internal(&'static str),
}

impl Refusal {
    /// Lookups of things that do not exist (HTTP 404) rather than refusals (HTTP 400).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Refusal::UnknownHost(_)
                | Refusal::UnknownVersionLookup(_)
                | Refusal::UnknownPatch(_)
                | Refusal::NoStrategy
        )
    }
}
