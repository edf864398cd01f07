//! The closed sets of strings the API speaks: upgrade states, host statuses, host states.
//! Each is an enum with its exact wire spelling, so a typo is a compile error, not a bug.

/// Declares an enum whose variants map one-to-one to wire strings.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vm])* $var),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $name {
            type Err = crate::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$var),)+
                    _ => Err(crate::UnknownValue {
                        what: stringify!($name),
                        value: s.to_string(),
                        expected: vec![$($s),+],
                    }),
                }
            }
        }
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($s),+]))
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A string that is not one of an enum's wire values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {})", expected.join(", "))]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: Vec<&'static str>,
}

string_enum!(
    /// Cluster-level state of a Kubernetes upgrade, in the seed's order.
    KubeUpgradeState {
        UpgradeStarted = "upgrade-started",
        DownloadingImages = "downloading-images",
        DownloadedImages = "downloaded-images",
        DownloadingImagesFailed = "downloading-images-failed",
        UpgradingFirstMaster = "upgrading-first-master",
        UpgradedFirstMaster = "upgraded-first-master",
        UpgradingFirstMasterFailed = "upgrading-first-master-failed",
        UpgradingNetworking = "upgrading-networking",
        UpgradedNetworking = "upgraded-networking",
        UpgradingNetworkingFailed = "upgrading-networking-failed",
        UpgradingSecondMaster = "upgrading-second-master",
        UpgradedSecondMaster = "upgraded-second-master",
        UpgradingSecondMasterFailed = "upgrading-second-master-failed",
        UpgradingKubelets = "upgrading-kubelets",
        /// aio-simplex: the host's pods evicted before its upgrade (`kube-host-cordon`).
        CordonStarted = "cordon-started",
        CordonComplete = "cordon-complete",
        CordonFailed = "cordon-failed",
        /// aio-simplex: the host schedulable again once its kubelet is done.
        UncordonStarted = "uncordon-started",
        UncordonComplete = "uncordon-complete",
        UncordonFailed = "uncordon-failed",
        UpgradeComplete = "upgrade-complete",
        /// `kube-upgrade-abort`: every host that moved goes back to the from-version.
        UpgradeAborting = "upgrade-aborting",
        UpgradeAbortingFailed = "upgrade-aborting-failed",
        UpgradeAborted = "upgrade-aborted",
    }
);

impl KubeUpgradeState {
    /// The `-failed` state of an in-flight (asynchronous) state; `None` for every other state.
    pub fn failed(self) -> Option<Self> {
        use KubeUpgradeState::*;
        match self {
            DownloadingImages => Some(DownloadingImagesFailed),
            UpgradingFirstMaster => Some(UpgradingFirstMasterFailed),
            UpgradingNetworking => Some(UpgradingNetworkingFailed),
            UpgradingSecondMaster => Some(UpgradingSecondMasterFailed),
            _ => None,
        }
    }

    /// Whether an asynchronous step is running in this state.
    pub fn in_flight(self) -> bool {
        self.failed().is_some()
            || matches!(
                self,
                KubeUpgradeState::CordonStarted
                    | KubeUpgradeState::UncordonStarted
                    | KubeUpgradeState::UpgradeAborting
            )
    }

    pub fn is_failed(self) -> bool {
        self.as_str().ends_with("-failed")
    }
}

string_enum!(
    /// Per-host Kubernetes upgrade status (`null` on the wire when idle).
    HostUpgradeStatus {
        UpgradingControlPlane = "upgrading-control-plane",
        UpgradingControlPlaneFailed = "upgrading-control-plane-failed",
        UpgradingKubelet = "upgrading-kubelet",
        UpgradingKubeletFailed = "upgrading-kubelet-failed",
        UpgradedKubelet = "upgraded-kubelet",
    }
);

string_enum!(
    /// Where a host is in the upgrade, as one word a person reads at a glance.
    TileState {
        /// Not yet upgraded to the target.
        Waiting = "waiting",
        /// A step (lock, control plane, kubelet, unlock, ...) runs on it now, or it belongs to
        /// the worker batch in progress.
        InFlight = "in-flight",
        /// Runs the target version everywhere it runs Kubernetes.
        Done = "done",
        /// Its last step failed.
        Failed = "failed",
        /// Left out by the strategy (`--partial-ok`).
        Skipped = "skipped",
        /// Locked by an operator, outside any step.
        Locked = "locked",
        /// No upgrade concerns it: none is in progress, or it runs no Kubernetes (storage).
        Idle = "idle",
    }
);

string_enum!(
    /// Live state of a known Kubernetes version, computed from what runs.
    VersionState {
        Active = "active",
        Partial = "partial",
        Available = "available",
        Unavailable = "unavailable",
    }
);

string_enum!(
    SystemType {
        Standard = "standard",
        AioSimplex = "aio-simplex",
        AioDuplex = "aio-duplex",
        /// A kubeadm-built cluster: one or more control-plane nodes (three or five for high
        /// availability), no storage hosts, and no active controller to hand over.
        Kubeadm = "kubeadm",
    }
);

impl SystemType {
    /// Whether one controller is active and the others stand by (StarlingX's systems): the
    /// active one hands its role over (swact) before it goes down.
    pub fn has_active_controller(self) -> bool {
        self != SystemType::Kubeadm
    }
}

string_enum!(
    Personality {
        Controller = "controller",
        Worker = "worker",
        Storage = "storage",
    }
);

impl Personality {
    /// Storage hosts are not Kubernetes nodes: no kubelet, no pods.
    pub fn has_kubelet(self) -> bool {
        !matches!(self, Personality::Storage)
    }
}

string_enum!(
    AdminState {
        Locked = "locked",
        Unlocked = "unlocked",
    }
);

string_enum!(
    OperState {
        Enabled = "enabled",
        Disabled = "disabled",
    }
);

string_enum!(
    Availability {
        Available = "available",
        Online = "online",
        Offline = "offline",
        Degraded = "degraded",
    }
);

string_enum!(
    Severity {
        Critical = "critical",
        Major = "major",
        Minor = "minor",
        Warning = "warning",
    }
);

string_enum!(
    /// What a software patch carries.
    PatchKind {
        /// Version metadata and networking manifests for a Kubernetes version.
        Platform = "platform",
        /// The kubeadm binary of a Kubernetes version.
        Kubeadm = "kubeadm",
        /// The kubelet and kubectl binaries of a Kubernetes version.
        Kubelet = "kubelet",
        Other = "other",
    }
);

string_enum!(
    /// Where a patch is in the repository.
    PatchState {
        Available = "available",
        PartialApply = "partial-apply",
        Applied = "applied",
        PartialRemove = "partial-remove",
    }
);

string_enum!(
    /// Where an upgrade strategy stands (StarlingX VIM's strategy states).
    StrategyState {
        Initial = "initial",
        Building = "building",
        BuildFailed = "build-failed",
        BuildTimeout = "build-timeout",
        ReadyToApply = "ready-to-apply",
        Applying = "applying",
        ApplyFailed = "apply-failed",
        ApplyTimeout = "apply-timeout",
        Applied = "applied",
        Aborting = "aborting",
        AbortFailed = "abort-failed",
        AbortTimeout = "abort-timeout",
        Aborted = "aborted",
    }
);

impl StrategyState {
    /// Whether the runner is (or must be) at work in this state.
    pub fn running(self) -> bool {
        matches!(self, StrategyState::Applying | StrategyState::Aborting)
    }
}

string_enum!(
    /// How a strategy takes the hosts of a kind: one at a time, in batches, or not at all.
    ApplyType {
        Serial = "serial",
        Parallel = "parallel",
        Ignore = "ignore",
    }
);

string_enum!(
    /// Which alarms stop a strategy: every alarm not ignored, only management-affecting ones,
    /// or none.
    AlarmRestrictions {
        Strict = "strict",
        Relaxed = "relaxed",
        Permissive = "permissive",
    }
);

string_enum!(
    /// Kismatic's modalities: online judges the workloads before a host goes down; offline
    /// does not (hosts are locked with force), but keeps every ordering and availability rule.
    UpgradeMode {
        Online = "online",
        Offline = "offline",
    }
);

string_enum!(
    /// The result of a strategy phase, stage or step (VIM's words; `wait` is in progress).
    StepResult {
        Initial = "initial",
        Wait = "wait",
        Success = "success",
        Degraded = "degraded",
        Failed = "failed",
        TimedOut = "timed-out",
        Aborted = "aborted",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_state() {
        for s in KubeUpgradeState::ALL {
            assert_eq!(s.as_str().parse::<KubeUpgradeState>().unwrap(), *s);
        }
        let e = "upgrading".parse::<KubeUpgradeState>().unwrap_err();
        assert!(e.to_string().contains("upgrade-started"), "{e}");
    }

    #[test]
    fn failed_states_pair_with_in_flight_states() {
        for s in KubeUpgradeState::ALL {
            if let Some(f) = s.failed() {
                assert_eq!(f.as_str(), format!("{}-failed", s.as_str()));
                assert!(f.is_failed());
            }
        }
        assert_eq!(KubeUpgradeState::UpgradingKubelets.failed(), None);
    }
}
