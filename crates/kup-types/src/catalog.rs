//! Version metadata: what the platform knows about each Kubernetes version.

use serde::{Deserialize, Serialize};

use crate::KubeVersion;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub version: KubeVersion,
    /// Versions that may upgrade directly to this one.
    #[serde(default)]
    pub upgrade_from: Vec<KubeVersion>,
    #[serde(default)]
    pub downgrade_to: Vec<KubeVersion>,
    /// Patches that must be applied before upgrading to this version.
    #[serde(default)]
    pub applied_patches: Vec<String>,
    /// Patches that must be uploaded (available) before upgrading to this version.
    #[serde(default)]
    pub available_patches: Vec<String>,
    /// Container images this version needs.
    #[serde(default)]
    pub images: Vec<String>,
}

impl VersionMeta {
    /// The standard control-plane image set of a version, used when a catalog entry names none.
    pub fn default_images(v: KubeVersion) -> Vec<String> {
        [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
        ]
        .iter()
        .map(|c| format!("registry.k8s.io/{c}:{v}"))
        .collect()
    }
}
