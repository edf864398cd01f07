//! What a driver observes in a cluster. The cluster is the source of truth for what runs:
//! these values are read back from it, never remembered by kup.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::index::NameIndex;
use crate::{AdminState, Availability, KubeVersion, OperState, Personality, Severity, SystemType};

/// What the engine reads of a cluster for every command and query: hosts, nodes, control-plane
/// pods, alarms, applications, images and networking; everything whose size is the number of
/// hosts. The pods, their owners and their budgets are the driver's other, larger view
/// ([`crate::workloads::Workloads`]), read only by what needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub system_type: SystemType,
    pub hosts: Vec<HostInfo>,
    pub nodes: Vec<NodeInfo>,
    pub control_plane_pods: Vec<ControlPlanePod>,
    pub alarms: Vec<Alarm>,
    pub applications: Vec<Application>,
    /// Container images present in the cluster's local registry.
    pub images: Vec<String>,
    /// Version of the networking manifests (CNI, CoreDNS) the cluster runs.
    pub networking_version: Option<KubeVersion>,
    /// API versions clients of the cluster still use, that some Kubernetes release removes.
    #[serde(default)]
    pub api_usage: Vec<ApiUsage>,
    /// Positions of hosts and nodes by name (see [`Observation::reindex`]).
    #[serde(skip)]
    pub index: ObservationIndex,
}

/// Where each host and node is in an [`Observation`], by name. Shared between copies of an
/// observation (a copy costs no rehashing), and replaced, never changed, by `reindex`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservationIndex {
    hosts: std::sync::Arc<NameIndex>,
    nodes: std::sync::Arc<NameIndex>,
}

/// See [`Observation::hosts_token`]. Holding one keeps the index alive, so a new index can
/// never be taken for it.
#[derive(Clone, Debug, Default)]
pub struct HostsToken(Option<std::sync::Arc<NameIndex>>);

impl PartialEq for HostsToken {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Default for Observation {
    /// An empty cluster.
    fn default() -> Self {
        Observation {
            system_type: SystemType::Standard,
            hosts: Vec::new(),
            nodes: Vec::new(),
            control_plane_pods: Vec::new(),
            alarms: Vec::new(),
            applications: Vec::new(),
            images: Vec::new(),
            networking_version: None,
            api_usage: Vec::new(),
            index: ObservationIndex::default(),
        }
    }
}

impl Observation {
    /// Builds the name index; drivers call it once the hosts and nodes are listed.
    pub fn reindex(&mut self) {
        self.index.hosts = std::sync::Arc::new(NameIndex::build(
            self.hosts.iter().map(|h| h.hostname.as_str()),
        ));
        self.index.nodes =
            std::sync::Arc::new(NameIndex::build(self.nodes.iter().map(|n| n.name.as_str())));
    }

    /// The host list as last indexed: equal tokens mean the same hosts in the same places (a
    /// driver reindexes when hosts come or go), so a caller can skip re-checking them. A list
    /// that was not indexed equals nothing.
    pub fn hosts_token(&self) -> HostsToken {
        HostsToken(
            (self.index.hosts.len() == self.hosts.len() && !self.hosts.is_empty())
                .then(|| std::sync::Arc::clone(&self.index.hosts)),
        )
    }

    /// The position of a host in `hosts`.
    pub fn host_position(&self, name: &str) -> Option<usize> {
        self.index
            .hosts
            .find(&self.hosts, name, |h| h.hostname.as_str())
    }

    pub fn host(&self, name: &str) -> Option<&HostInfo> {
        self.host_position(name).map(|i| &self.hosts[i])
    }
    pub fn host_mut(&mut self, name: &str) -> Option<&mut HostInfo> {
        self.host_position(name).map(|i| &mut self.hosts[i])
    }
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        let i = self
            .index
            .nodes
            .find(&self.nodes, name, |n| n.name.as_str())?;
        Some(&self.nodes[i])
    }
    /// The control-plane version of a controller: the lowest of its component versions, as
    /// sysinv computes it; `None` when none of its control-plane pods is seen.
    pub fn control_plane_version(&self, host: &str) -> Option<KubeVersion> {
        self.control_plane_pods
            .iter()
            .filter(|p| p.host == host)
            .map(|p| p.version)
            .min()
    }
    pub fn kubelet_version(&self, host: &str) -> Option<KubeVersion> {
        self.node(host).map(|n| n.kubelet_version)
    }
    pub fn controllers(&self) -> impl Iterator<Item = &HostInfo> {
        self.hosts
            .iter()
            .filter(|h| h.personality == Personality::Controller)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub id: u32,
    pub uuid: String,
    pub hostname: String,
    pub personality: Personality,
    pub subfunctions: Vec<String>,
    /// Extra roles such as `ingress`, `etcd`, `storage`.
    pub roles: Vec<String>,
    pub administrative: AdminState,
    pub operational: OperState,
    pub availability: Availability,
    /// An action in progress on the host (`Locking`, `Unlocking`, `Swacting`), if any.
    pub task: Option<String>,
    /// For controllers: whether this one is the active controller.
    pub active_controller: bool,
    pub capacity: Capacity,
    pub disk_free_gib: u32,
}

impl HostInfo {
    pub fn is_unlocked_enabled_available(&self) -> bool {
        self.administrative == AdminState::Unlocked
            && self.operational == OperState::Enabled
            && self.availability == Availability::Available
    }

    /// In service: unlocked, enabled and available with no action in progress. The one test of
    /// whether a host counts as up (the last controller, the roles left, health).
    pub fn in_service(&self) -> bool {
        self.is_unlocked_enabled_available() && self.task.is_none()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capacity {
    pub cpu_millis: u32,
    pub memory_mib: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub ready: bool,
    pub unschedulable: bool,
    pub kubelet_version: KubeVersion,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Taint>,
}

/// A node taint; pods without a matching toleration are not scheduled there.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A volume a pod mounts, as far as draining it matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VolumeKind {
    /// Scratch space that is lost with the pod.
    EmptyDir,
    /// A directory of the host itself.
    HostPath,
    /// A PersistentVolume backed by a host path: the data stays on that host.
    HostPathPv,
    /// A claim on network storage, which follows the pod.
    Pvc,
}

/// A controller of pods (Deployment, StatefulSet, ReplicaSet, DaemonSet, Job).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    pub namespace: String,
    pub name: String,
    pub kind: String,
    /// Desired replicas (for a DaemonSet: the nodes it should run on).
    pub replicas: u32,
    /// Replicas that are ready now.
    pub ready_replicas: u32,
}

/// A PodDisruptionBudget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdbInfo {
    pub namespace: String,
    pub name: String,
    /// `matchLabels`: the pods of the namespace carrying all of these labels.
    pub selector: BTreeMap<String, String>,
    pub min_available: Option<u32>,
    pub max_unavailable: Option<u32>,
    /// `IfHealthyBudget` (the default) or `AlwaysAllow`.
    pub unhealthy_pod_eviction_policy: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlanePod {
    pub host: String,
    /// `kube-apiserver`, `kube-controller-manager` or `kube-scheduler`.
    pub component: String,
    pub version: KubeVersion,
    pub ready: bool,
}

/// A pod's lifecycle phase, as Kubernetes reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    Pending,
    #[default]
    Running,
    /// Every container exited successfully (a finished Job's pod).
    Succeeded,
    Failed,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    /// `None` while the pod is pending (not scheduled).
    pub node: Option<String>,
    pub ready: bool,
    #[serde(default)]
    pub phase: PodPhase,
    /// The kind of the owning workload (`Deployment`, `DaemonSet`, ...; `Pod` when unmanaged,
    /// `Node` for a mirror pod).
    pub owner_kind: String,
    pub owner: String,
    /// Shared: the pods of a workload carry one copy of their labels (150,000 pods at 5,000
    /// nodes; a map of its own each cost about 500 bytes per pod).
    #[serde(default)]
    pub labels: Arc<BTreeMap<String, String>>,
    #[serde(default)]
    pub volumes: Vec<VolumeKind>,
    #[serde(default)]
    pub requests: Capacity,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Taint keys the pod tolerates (`*`: every taint).
    #[serde(default)]
    pub tolerations: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    pub uuid: String,
    pub alarm_id: String,
    pub entity_instance_id: String,
    pub reason_text: String,
    pub severity: Severity,
    pub management_affecting: bool,
    #[serde(with = "crate::time::serde_ts")]
    pub timestamp: jiff::Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub name: String,
    pub version: String,
    /// `uploaded`, `applied`, `inactive`, `apply-failed`, ...
    pub status: String,
    /// Lowest and highest Kubernetes version the application supports (inclusive).
    pub k8s_min: Option<KubeVersion>,
    pub k8s_max: Option<KubeVersion>,
}

impl Application {
    pub fn supports(&self, v: KubeVersion) -> bool {
        self.k8s_min.is_none_or(|m| v >= m) && self.k8s_max.is_none_or(|m| v <= m)
    }
}

/// A client's use of a deprecated API version: seen by the API server (its
/// `apiserver_requested_deprecated_apis` metric) or in an object's
/// `kubectl.kubernetes.io/last-applied-configuration` annotation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiUsage {
    /// The API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    pub version: String,
    /// The resource, plural and lower case (`ingresses`).
    pub resource: String,
    /// The release that removes it (`"1.22"`), when the source says so (the metric's
    /// `removed_release` label); otherwise kup's own table of removals decides.
    #[serde(default)]
    pub removed_release: Option<String>,
    /// Where it was seen: `API server` or the object (`namespace/name`).
    #[serde(default = "api_server")]
    pub seen_in: String,
}

fn api_server() -> String {
    "API server".into()
}

impl ApiUsage {
    /// `group/version resource`, as `kubectl api-resources` writes a group version.
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}
