//! Objects as the sysinv-compatible API shows them (field names are the contract).

use serde::{Deserialize, Serialize};

use crate::{KubeVersion, VersionState};

/// An entry of `GET /v1/kube_versions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeVersionSummary {
    pub version: KubeVersion,
    pub target: bool,
    pub state: VersionState,
}

/// `GET /v1/kube_versions/{version}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeVersionDetail {
    pub version: KubeVersion,
    pub upgrade_from: Vec<KubeVersion>,
    pub downgrade_to: Vec<KubeVersion>,
    pub applied_patches: Vec<String>,
    pub available_patches: Vec<String>,
    pub target: bool,
    pub state: VersionState,
}

/// A row of `GET /v1/kube_host_upgrades`, with the live versions read from the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeHostUpgradeView {
    pub id: i64,
    pub uuid: String,
    pub host_id: i64,
    pub hostname: String,
    pub personality: crate::Personality,
    pub target_version: Option<String>,
    pub status: Option<String>,
    /// A version, `N/A` (no control plane on this host) or `unknown` (not observed).
    pub control_plane_version: String,
    /// A version, `N/A` (no kubelet on this host) or `unknown` (node not observed).
    pub kubelet_version: String,
    #[serde(with = "crate::time::serde_ts")]
    pub created_at: jiff::Timestamp,
    #[serde(with = "crate::time::serde_opt_ts")]
    pub updated_at: Option<jiff::Timestamp>,
}

/// `GET /v1/kube_upgrade` entries and the reply of every upgrade command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeUpgradeView {
    pub id: i64,
    pub uuid: String,
    pub from_version: KubeVersion,
    pub to_version: KubeVersion,
    pub state: crate::KubeUpgradeState,
    #[serde(with = "crate::time::serde_ts")]
    pub created_at: jiff::Timestamp,
    #[serde(with = "crate::time::serde_opt_ts")]
    pub updated_at: Option<jiff::Timestamp>,
}

impl From<&crate::KubeUpgradeRecord> for KubeUpgradeView {
    fn from(r: &crate::KubeUpgradeRecord) -> Self {
        Self {
            id: r.id,
            uuid: r.uuid.clone(),
            from_version: r.from_version,
            to_version: r.to_version,
            state: r.state,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}
