//! The asynchronous operations the engine asks a driver to perform on a cluster.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::KubeVersion;

/// A file of a patch kept in the repository (`path` as the patch's manifest names it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PatchFile {
    pub patch: String,
    pub path: String,
}

/// The binaries of one Kubernetes version that a kubeadm or kubelet patch delivers: a step
/// puts them on its host in place of the distribution's packages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Payload {
    pub kind: crate::PatchKind,
    pub version: KubeVersion,
    pub files: Vec<PatchFile>,
}

/// The payload of `kind` for `version` among `payloads`, if a patch delivers it.
pub fn payload_of(
    payloads: &[Payload],
    kind: crate::PatchKind,
    version: KubeVersion,
) -> Option<&Payload> {
    payloads
        .iter()
        .find(|p| p.kind == kind && p.version == version)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Operation {
    /// Pull the images of `version` into the cluster's registry (on a kubeadm cluster, with
    /// the kubeadm of each version the upgrade steps through: `payloads` for those a patch
    /// delivers).
    DownloadImages {
        version: KubeVersion,
        images: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        payloads: Vec<Payload>,
    },
    /// `kubeadm upgrade apply` (first) or `kubeadm upgrade node` (second) on a controller,
    /// with the kubeadm of `version` (`payloads`, when a patch delivers it).
    UpgradeControlPlane {
        host: String,
        version: KubeVersion,
        first: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        payloads: Vec<Payload>,
    },
    /// Apply the networking manifests (CNI, CoreDNS) of `version`: those its platform patch
    /// ships, when one does.
    UpgradeNetworking {
        version: KubeVersion,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        manifests: Vec<PatchFile>,
    },
    /// Switch the host's kubelet to `version` and restart it (with the kubelet, and a
    /// kubeadm cluster's worker the kubeadm, of `version`: `payloads`, when patches deliver
    /// them).
    UpgradeKubelet {
        host: String,
        version: KubeVersion,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        payloads: Vec<Payload>,
    },
    /// Drain the host's pods and lock it.
    Lock {
        host: String,
        force: bool,
    },
    Unlock {
        host: String,
    },
    /// Hand the active-controller role from `host` to the other controller.
    Swact {
        host: String,
    },
    /// aio-simplex: mark the node unschedulable and evict its pods (`kubectl drain --force
    /// --ignore-daemonsets`); the host stays unlocked.
    Cordon {
        host: String,
    },
    /// Make the node schedulable again.
    Uncordon {
        host: String,
    },
    /// The way back of an abort: the control plane on `host` restored to `version` from the
    /// backup taken before the first control plane moved (etcd snapshot, static pod
    /// manifests).
    RestoreControlPlane {
        host: String,
        version: KubeVersion,
    },
}

/// The kinds of step, as named in fault and duration settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    DownloadImages,
    ControlPlane,
    Networking,
    Kubelet,
    Lock,
    Unlock,
    Swact,
    Cordon,
    Uncordon,
}

impl StepKind {
    pub const ALL: [StepKind; 9] = [
        StepKind::DownloadImages,
        StepKind::ControlPlane,
        StepKind::Networking,
        StepKind::Kubelet,
        StepKind::Lock,
        StepKind::Unlock,
        StepKind::Swact,
        StepKind::Cordon,
        StepKind::Uncordon,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::DownloadImages => "download-images",
            StepKind::ControlPlane => "control-plane",
            StepKind::Networking => "networking",
            StepKind::Kubelet => "kubelet",
            StepKind::Lock => "lock",
            StepKind::Unlock => "unlock",
            StepKind::Swact => "swact",
            StepKind::Cordon => "cordon",
            StepKind::Uncordon => "uncordon",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Operation {
    pub fn kind(&self) -> StepKind {
        match self {
            Operation::DownloadImages { .. } => StepKind::DownloadImages,
            Operation::UpgradeControlPlane { .. } | Operation::RestoreControlPlane { .. } => {
                StepKind::ControlPlane
            }
            Operation::UpgradeNetworking { .. } => StepKind::Networking,
            Operation::UpgradeKubelet { .. } => StepKind::Kubelet,
            Operation::Lock { .. } => StepKind::Lock,
            Operation::Unlock { .. } => StepKind::Unlock,
            Operation::Swact { .. } => StepKind::Swact,
            Operation::Cordon { .. } => StepKind::Cordon,
            Operation::Uncordon { .. } => StepKind::Uncordon,
        }
    }

    /// The step as a whole, whatever run of it: kind, host and version.
    pub fn key(&self) -> String {
        let version = match self {
            Operation::DownloadImages { version, .. }
            | Operation::UpgradeControlPlane { version, .. }
            | Operation::RestoreControlPlane { version, .. }
            | Operation::UpgradeNetworking { version, .. }
            | Operation::UpgradeKubelet { version, .. } => Some(*version),
            Operation::Lock { .. }
            | Operation::Unlock { .. }
            | Operation::Swact { .. }
            | Operation::Cordon { .. }
            | Operation::Uncordon { .. } => None,
        };
        let mut key = self.kind().to_string();
        for part in [
            self.host().map(str::to_string),
            version.map(|v| v.to_string()),
        ]
        .into_iter()
        .flatten()
        {
            key.push('/');
            key.push_str(&part);
        }
        key
    }

    pub fn host(&self) -> Option<&str> {
        match self {
            Operation::UpgradeControlPlane { host, .. }
            | Operation::RestoreControlPlane { host, .. }
            | Operation::UpgradeKubelet { host, .. }
            | Operation::Lock { host, .. }
            | Operation::Unlock { host }
            | Operation::Swact { host }
            | Operation::Cordon { host }
            | Operation::Uncordon { host } => Some(host),
            Operation::DownloadImages { .. } | Operation::UpgradeNetworking { .. } => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::DownloadImages { version, .. } => write!(f, "download images of {version}"),
            Operation::UpgradeControlPlane {
                host,
                version,
                first,
                ..
            } => write!(
                f,
                "upgrade the {} control plane on {host} to {version}",
                if *first { "first" } else { "second" }
            ),
            Operation::UpgradeNetworking { version, .. } => {
                write!(f, "upgrade networking to {version}")
            }
            Operation::UpgradeKubelet { host, version, .. } => {
                write!(f, "upgrade the kubelet on {host} to {version}")
            }
            Operation::Lock { host, .. } => write!(f, "lock {host}"),
            Operation::Unlock { host } => write!(f, "unlock {host}"),
            Operation::Swact { host } => write!(f, "swact from {host}"),
            Operation::Cordon { host } => write!(f, "cordon {host}"),
            Operation::RestoreControlPlane { host, version } => {
                write!(f, "restore the control plane on {host} to {version}")
            }
            Operation::Uncordon { host } => write!(f, "uncordon {host}"),
        }
    }
}

/// What a driver reports about an operation it was asked to perform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpStatus {
    NotStarted,
    Running,
    Succeeded,
    Failed(String),
}

impl OpStatus {
    pub fn is_terminal(&self) -> bool {
        matches!(self, OpStatus::Succeeded | OpStatus::Failed(_))
    }
}
