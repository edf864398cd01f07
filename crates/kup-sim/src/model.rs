//! The simulated cluster's state and what happens to it: scheduling, drain, lock, unlock.
//!
//! Every change costs what it touches, so a cluster of thousands of hosts and a hundred
//! thousand pods starts in seconds and runs a whole upgrade at the speed of kup's store:
//! - the pods live in the same index kup reads ([`Workloads`]: pods and requested capacity by
//!   host), shared with readers and changed in place;
//! - schedulable hosts are kept ordered by free CPU, so placing a pod takes the first host
//!   that fits, not a pass over every host and pod;
//! - the hosts' view ([`Observation`]) is kept too, one host refreshed at a time;
//! - a drain remembers which workloads it moved, and the unlock spreads only those back.
//!
//! Fields that describe the cluster are public so tests can set any precondition they need
//! through [`crate::SimCluster::mutate`], after which everything derived is rebuilt.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use kup_types::{
    AdminState, Alarm, Application, Availability, Capacity, ControlPlanePod, HostInfo, KubeVersion,
    NodeInfo, Observation, OperState, Operation, PdbInfo, Personality, PodId, PodInfo, PodPhase,
    Severity, SystemType, Taint, VolumeKind, WorkloadInfo, Workloads,
};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::inventory::{Inventory, WorkloadKind};

const CP_COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
/// The alarm StarlingX raises while a host is administratively locked.
pub const HOST_LOCKED_ALARM: &str = "200.001";

/// Above this many allowed hosts, a workload's pods are placed by scanning hosts by free CPU
/// rather than its list.
const DIRECT_CANDIDATES: usize = 64;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimModel {
    pub system_type: SystemType,
    pub hosts: Vec<SimHost>,
    pub workloads: Vec<SimWorkload>,
    pub alarms: Vec<Alarm>,
    pub applications: Vec<Application>,
    pub images: BTreeSet<String>,
    pub networking_version: Option<KubeVersion>,
    #[serde(default)]
    pub api_usage: Vec<kup_types::ApiUsage>,
    /// The pods, their owners and budgets, indexed; shared with readers.
    pods: Arc<Workloads>,
    /// Workloads whose pods each host's last drain moved away, spread back at its unlock.
    #[serde(default)]
    evicted: BTreeMap<String, BTreeSet<usize>>,
    /// What the simulation saw of the upgrade's safety, since the cluster began.
    #[serde(default)]
    pub audit: kup_types::SafetyAudit,
    /// The version each control plane, kubelet and the networking last reached by a step, to
    /// see a step run again to the version it already reached.
    #[serde(default)]
    completed: BTreeMap<String, KubeVersion>,
    /// The pods of each host being locked: disrupted until the lock ends, when the drain
    /// has placed them elsewhere, or until the descheduler moves them (only those still on
    /// the host count).
    #[serde(skip)]
    disrupting: BTreeMap<String, Vec<PodId>>,
    #[serde(skip)]
    d: Derived,
}

/// The audit keeps this many examples.
const AUDIT_EXAMPLES: usize = 10;

/// What is computed from the model and kept current with it.
#[derive(Clone, Debug, Default)]
struct Derived {
    host_ix: FxHashMap<String, usize>,
    workload_ix: FxHashMap<(String, String), usize>,
    /// Hosts a workload with no `nodes` of its own may use.
    default_node: Vec<bool>,
    /// Per workload: the hosts it may use, when it names them.
    allowed: Vec<Option<FxHashSet<usize>>>,
    by_workload: Vec<Vec<PodId>>,
    daemon_sets: Vec<usize>,
    pending: BTreeSet<PodId>,
    /// Schedulable hosts by free CPU (most first), then id.
    order: BTreeSet<(Reverse<u64>, u32, usize)>,
    /// The key each host has in `order`, if it is there.
    in_order: Vec<Option<u64>>,
    obs: Arc<Observation>,
    node_pos: Vec<Option<usize>>,
    cp_pos: Vec<Option<usize>>,
    dirty: Dirty,
}

/// What changed since the last [`SimModel::take_changes`].
#[derive(Clone, Debug, Default)]
struct Dirty {
    hosts: BTreeSet<usize>,
    pods: BTreeSet<PodId>,
    alarms: bool,
    images: bool,
    networking: bool,
    evicted: BTreeSet<String>,
    audit: bool,
    completed: Vec<(String, KubeVersion)>,
}

/// One change to the model, as the state file's journal records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    Host {
        host: Box<SimHost>,
    },
    Pod {
        id: PodId,
        pod: Option<Box<PodInfo>>,
    },
    Alarms {
        alarms: Vec<Alarm>,
    },
    Images {
        images: BTreeSet<String>,
    },
    Networking {
        version: Option<KubeVersion>,
    },
    Evicted {
        host: String,
        workloads: BTreeSet<usize>,
    },
    Audit {
        audit: kup_types::SafetyAudit,
    },
    /// A step ran to success: what it moved, to which version.
    Completed {
        step: String,
        version: KubeVersion,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimHost {
    pub id: u32,
    pub uuid: String,
    pub name: String,
    pub personality: Personality,
    pub roles: Vec<String>,
    pub capacity: Capacity,
    pub disk_free_gib: u32,
    pub administrative: AdminState,
    pub operational: OperState,
    pub availability: Availability,
    pub active: bool,
    pub task: Option<String>,
    pub control_plane_version: Option<KubeVersion>,
    pub kubelet_version: Option<KubeVersion>,
    /// While `kubeadm upgrade` runs, the control-plane pods restart and are not ready.
    pub control_plane_upgrading: bool,
    /// While the kubelet restarts, the node is not ready.
    pub kubelet_restarting: bool,
    /// `kube-host-cordon`: unschedulable while unlocked.
    #[serde(default)]
    pub cordoned: bool,
    /// Individual readiness overrides, for tests of unhealthy clusters.
    pub node_ready: bool,
    pub control_plane_ready: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Taint>,
}

impl SimHost {
    fn schedulable(&self) -> bool {
        self.personality.has_kubelet()
            && self.administrative == AdminState::Unlocked
            && self.operational == OperState::Enabled
            && !self.cordoned
            && self.node_up()
    }

    /// Whether the node is up and Ready (what a pod's readiness and scheduling depend on).
    fn node_up(&self) -> bool {
        self.availability != Availability::Offline && self.node_ready && !self.kubelet_restarting
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimWorkload {
    pub namespace: String,
    pub name: String,
    pub kind: WorkloadKind,
    pub replicas: u32,
    pub requests: Capacity,
    pub volumes: Vec<VolumeKind>,
    /// Hosts the pods may run on; empty: the workers (every host with a kubelet when there
    /// is no worker).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Shared with its pods.
    #[serde(default)]
    pub labels: Arc<BTreeMap<String, String>>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<String>,
}

/// Whether a workload's pods may run on a host: node selector and taints (capacity aside).
fn fits_node(w: &SimWorkload, h: &SimHost) -> bool {
    w.node_selector
        .iter()
        .all(|(k, v)| h.labels.get(k) == Some(v))
        && h.taints.iter().all(|t| {
            t.effect == "PreferNoSchedule"
                || w.tolerations.iter().any(|tol| tol == "*" || *tol == t.key)
        })
}

/// A stable uuid-shaped id derived from a name and the seed (FNV-1a), so runs are repeatable.
pub fn stable_uuid(seed: u64, name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    let mut next = || {
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h = h.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h
    };
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

impl SimModel {
    pub fn from_inventory(inv: &Inventory, now: Timestamp) -> SimModel {
        let default_cap = Capacity {
            cpu_millis: 8000,
            memory_mib: 16384,
        };
        let first_controller = inv
            .hosts
            .iter()
            .position(|h| h.personality == Personality::Controller);
        let any_active = inv.hosts.iter().any(|h| h.active);
        let hosts: Vec<SimHost> = inv
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let controller = h.personality == Personality::Controller;
                SimHost {
                    id: i as u32 + 1,
                    uuid: stable_uuid(inv.seed, &h.name.value),
                    name: h.name.value.clone(),
                    personality: h.personality,
                    roles: h.roles.clone(),
                    capacity: h.capacity.unwrap_or(default_cap),
                    disk_free_gib: h.disk_free_gib,
                    administrative: h.administrative,
                    operational: h.operational,
                    availability: h.availability,
                    active: h.active
                        || (!any_active
                            && Some(i) == first_controller
                            && inv.system_type.has_active_controller()),
                    task: None,
                    control_plane_version: controller
                        .then(|| h.control_plane_version.unwrap_or(inv.kubernetes_version)),
                    kubelet_version: h
                        .personality
                        .has_kubelet()
                        .then(|| h.kubelet_version.unwrap_or(inv.kubernetes_version)),
                    control_plane_upgrading: false,
                    kubelet_restarting: false,
                    cordoned: false,
                    node_ready: true,
                    control_plane_ready: true,
                    labels: {
                        let mut l = h.labels.clone();
                        l.insert("kubernetes.io/hostname".into(), h.name.value.clone());
                        l
                    },
                    // Standard controllers run only platform pods, as StarlingX taints them;
                    // kubeadm taints its control-plane nodes the same way.
                    taints: if controller
                        && h.taints.is_empty()
                        && inv.system_type != SystemType::AioSimplex
                        && inv.system_type != SystemType::AioDuplex
                    {
                        vec![Taint {
                            key: if inv.system_type == SystemType::Kubeadm {
                                "node-role.kubernetes.io/control-plane"
                            } else {
                                "node-role.kubernetes.io/master"
                            }
                            .into(),
                            effect: "NoSchedule".into(),
                        }]
                    } else {
                        h.taints.clone()
                    },
                }
            })
            .collect();
        let workloads: Vec<SimWorkload> = inv
            .workloads
            .iter()
            .map(|w| SimWorkload {
                namespace: w.namespace.clone(),
                name: w.name.value.clone(),
                kind: w.kind.clone(),
                replicas: w.replicas,
                requests: w.requests,
                volumes: w.volumes.clone(),
                nodes: w.nodes.iter().map(|n| n.value.clone()).collect(),
                labels: {
                    let mut l = w.labels.clone();
                    l.insert("app".into(), w.name.value.clone());
                    Arc::new(l)
                },
                node_selector: w.node_selector.clone(),
                tolerations: w.tolerations.clone(),
            })
            .collect();
        let pdbs: Vec<PdbInfo> = inv
            .workloads
            .iter()
            .filter_map(|w| {
                let p = w.pdb.as_ref()?;
                Some(PdbInfo {
                    namespace: w.namespace.clone(),
                    name: format!("{}-pdb", w.name.value),
                    selector: BTreeMap::from([("app".to_string(), w.name.value.clone())]),
                    min_available: p.min_available,
                    max_unavailable: p.max_unavailable,
                    unhealthy_pod_eviction_policy: None,
                })
            })
            .chain(inv.pdbs.iter().map(|p| PdbInfo {
                namespace: p.namespace.clone(),
                name: p.name.value.clone(),
                selector: p.selector.clone(),
                min_available: p.min_available,
                max_unavailable: p.max_unavailable,
                unhealthy_pod_eviction_policy: p.unhealthy_pod_eviction_policy.clone(),
            }))
            .collect();
        let alarms = inv
            .alarms
            .iter()
            .map(|a| Alarm {
                uuid: stable_uuid(inv.seed, &format!("alarm/{}/{}", a.id, a.entity)),
                alarm_id: a.id.clone(),
                entity_instance_id: a.entity.clone(),
                reason_text: a.reason.clone(),
                severity: a.severity,
                management_affecting: a.management_affecting,
                timestamp: now,
            })
            .collect();
        let applications = inv
            .applications
            .iter()
            .map(|a| Application {
                name: a.name.clone(),
                version: a.version.clone(),
                status: a.status.clone(),
                k8s_min: a.k8s_min,
                k8s_max: a.k8s_max,
            })
            .collect();
        let mut images = BTreeSet::new();
        if let Some(meta) = inv
            .catalog()
            .into_iter()
            .find(|m| m.version == inv.kubernetes_version)
        {
            images.extend(meta.images);
        }
        let mut model = SimModel {
            system_type: inv.system_type,
            hosts,
            workloads,
            alarms,
            applications,
            images,
            networking_version: Some(inv.networking_version.unwrap_or(inv.kubernetes_version)),
            api_usage: inv.api_usage.clone(),
            pods: Arc::new(Workloads::new(Vec::new(), Vec::new(), pdbs)),
            evicted: BTreeMap::new(),
            audit: kup_types::SafetyAudit::default(),
            completed: BTreeMap::new(),
            disrupting: BTreeMap::new(),
            d: Derived::default(),
        };
        model.rebuild();
        let placement: Vec<Vec<(usize, u32)>> = inv
            .workloads
            .iter()
            .map(|w| {
                w.placement
                    .iter()
                    .filter_map(|p| Some((*model.d.host_ix.get(&p.node.value)?, p.pods)))
                    .collect()
            })
            .collect();
        model.create_pods(&placement);
        Arc::make_mut(&mut model.pods).shrink_to_fit();
        model
    }

    /// Computes everything derived from scratch: after loading, and after a test changed
    /// fields directly.
    pub fn rebuild(&mut self) {
        let mut d = Derived {
            host_ix: self
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.name.clone(), i))
                .collect(),
            workload_ix: self
                .workloads
                .iter()
                .enumerate()
                .map(|(i, w)| ((w.namespace.clone(), w.name.clone()), i))
                .collect(),
            ..Derived::default()
        };
        let workers = self
            .hosts
            .iter()
            .any(|h| h.personality == Personality::Worker);
        d.default_node = self
            .hosts
            .iter()
            .map(|h| {
                if workers {
                    h.personality == Personality::Worker
                } else {
                    h.personality.has_kubelet()
                }
            })
            .collect();
        d.allowed = self
            .workloads
            .iter()
            .map(|w| {
                (!w.nodes.is_empty()).then(|| {
                    w.nodes
                        .iter()
                        .filter_map(|n| d.host_ix.get(n).copied())
                        .collect()
                })
            })
            .collect();
        d.by_workload = vec![Vec::new(); self.workloads.len()];
        d.daemon_sets = (0..self.workloads.len())
            .filter(|&w| self.workloads[w].kind == WorkloadKind::DaemonSet)
            .collect();
        d.in_order = vec![None; self.hosts.len()];
        self.d = d;
        // Every pod's owner, readiness and pending state, from what the hosts are now.
        let ids: Vec<PodId> = self.pods.iter().map(|(id, _)| id).collect();
        for id in ids {
            let p = self.pods.pod(id).expect("listed");
            if let Some(&w) = self
                .d
                .workload_ix
                .get(&(p.namespace.clone(), p.owner.clone()))
            {
                self.d.by_workload[w].push(id);
            }
            let up = p
                .node
                .as_deref()
                .and_then(|n| self.host(n))
                .map(SimHost::node_up);
            match up {
                None => {
                    self.d.pending.insert(id);
                }
                Some(up) => {
                    if self.pods.pod(id).is_some_and(|p| p.ready != up) {
                        Arc::make_mut(&mut self.pods).set_ready(id, up);
                    }
                }
            }
        }
        for i in 0..self.hosts.len() {
            self.order_insert(i);
        }
        let infos = self.workload_infos();
        Arc::make_mut(&mut self.pods).set_workloads(infos);
        self.rebuild_observation();
    }

    fn rebuild_observation(&mut self) {
        let mut obs = Observation {
            system_type: self.system_type,
            hosts: (0..self.hosts.len()).map(|i| self.host_info(i)).collect(),
            nodes: Vec::new(),
            control_plane_pods: Vec::new(),
            alarms: self.alarms.clone(),
            applications: self.applications.clone(),
            images: self.images.iter().cloned().collect(),
            networking_version: self.networking_version,
            api_usage: self.api_usage.clone(),
            index: Default::default(),
        };
        self.d.node_pos = vec![None; self.hosts.len()];
        self.d.cp_pos = vec![None; self.hosts.len()];
        for i in 0..self.hosts.len() {
            if let Some(n) = self.node_info(i) {
                self.d.node_pos[i] = Some(obs.nodes.len());
                obs.nodes.push(n);
            }
            if self.hosts[i].control_plane_version.is_some() {
                self.d.cp_pos[i] = Some(obs.control_plane_pods.len());
                obs.control_plane_pods.extend(self.cp_pods(i));
            }
        }
        obs.reindex();
        self.d.obs = Arc::new(obs);
    }

    fn host_info(&self, i: usize) -> HostInfo {
        let h = &self.hosts[i];
        HostInfo {
            id: h.id,
            uuid: h.uuid.clone(),
            hostname: h.name.clone(),
            personality: h.personality,
            subfunctions: match (h.personality, self.system_type) {
                (Personality::Controller, SystemType::AioSimplex | SystemType::AioDuplex) => {
                    vec!["controller".into(), "worker".into()]
                }
                (p, _) => vec![p.to_string()],
            },
            roles: h.roles.clone(),
            administrative: h.administrative,
            operational: h.operational,
            availability: h.availability,
            task: h.task.clone(),
            active_controller: h.active,
            capacity: h.capacity,
            disk_free_gib: h.disk_free_gib,
        }
    }

    fn node_info(&self, i: usize) -> Option<NodeInfo> {
        let h = &self.hosts[i];
        Some(NodeInfo {
            name: h.name.clone(),
            ready: h.node_up(),
            unschedulable: h.administrative == AdminState::Locked || h.cordoned,
            kubelet_version: h.kubelet_version?,
            labels: h.labels.clone(),
            taints: h.taints.clone(),
        })
    }

    fn cp_pods(&self, i: usize) -> Vec<ControlPlanePod> {
        let h = &self.hosts[i];
        let Some(v) = h.control_plane_version else {
            return Vec::new();
        };
        let ready = h.availability != Availability::Offline
            && h.control_plane_ready
            && !h.control_plane_upgrading;
        CP_COMPONENTS
            .iter()
            .map(|c| ControlPlanePod {
                host: h.name.clone(),
                component: c.to_string(),
                version: v,
                ready,
            })
            .collect()
    }

    pub fn host(&self, name: &str) -> Option<&SimHost> {
        self.host_index(name).map(|i| &self.hosts[i])
    }

    /// For tests, through [`crate::SimCluster::mutate`] (which rebuilds what is derived).
    pub fn host_mut(&mut self, name: &str) -> Option<&mut SimHost> {
        self.host_index(name).map(|i| &mut self.hosts[i])
    }

    fn host_index(&self, name: &str) -> Option<usize> {
        match self.d.host_ix.get(name) {
            Some(&i) if self.hosts.get(i).is_some_and(|h| h.name == name) => Some(i),
            _ => self.hosts.iter().position(|h| h.name == name),
        }
    }

    /// The pods, their owners and budgets.
    pub fn pods(&self) -> &Workloads {
        &self.pods
    }

    /// Adds a pod as given (tests: a pod stuck pending, say).
    pub fn add_pod(&mut self, pod: PodInfo) -> PodId {
        let id = Arc::make_mut(&mut self.pods).insert(pod);
        self.d.dirty.pods.insert(id);
        id
    }

    /// Moves the pods `f` picks onto `host`, capacity aside (tests).
    pub fn move_pods(&mut self, f: impl Fn(&PodInfo) -> bool, host: &str) {
        let Some(h) = self.host_index(host) else {
            return;
        };
        let picked: Vec<PodId> = self
            .pods
            .iter()
            .filter(|(_, p)| f(p))
            .map(|(id, _)| id)
            .collect();
        for id in picked {
            self.put(id, Some(h));
        }
    }

    /// A Job or bare Pod ran to its end: its pods are gone, and none comes back.
    pub fn complete_workload(&mut self, namespace: &str, name: &str) {
        let Some(&w) = self
            .d
            .workload_ix
            .get(&(namespace.to_string(), name.to_string()))
        else {
            return;
        };
        self.workloads[w].replicas = 0;
        for id in self.d.by_workload[w].clone() {
            self.delete_pod(id);
        }
    }

    /// Deletes the pods `f` picks (tests).
    pub fn remove_pods(&mut self, f: impl Fn(&PodInfo) -> bool) {
        let gone: Vec<PodId> = self
            .pods
            .iter()
            .filter(|(_, p)| f(p))
            .map(|(id, _)| id)
            .collect();
        for id in gone {
            self.delete_pod(id);
        }
    }

    /// What a driver would read from this cluster: the hosts' view, shared.
    pub fn observation(&self) -> Arc<Observation> {
        Arc::clone(&self.d.obs)
    }

    /// The hosts' view, borrowed.
    pub fn observation_ref(&self) -> &Observation {
        &self.d.obs
    }

    /// The pods, owners and budgets, shared.
    pub fn workload_view(&self) -> Arc<Workloads> {
        Arc::clone(&self.pods)
    }

    /// The hosts' view, as a value.
    pub fn observe(&self) -> Observation {
        Observation::clone(&self.d.obs)
    }

    /// What a driver would read of the workloads, as a value.
    pub fn workloads(&self) -> Workloads {
        Workloads::clone(&self.pods)
    }

    fn workload_infos(&self) -> Vec<WorkloadInfo> {
        self.workloads
            .iter()
            .enumerate()
            .filter(|(_, w)| w.kind != WorkloadKind::Pod)
            .map(|(wi, w)| {
                let replicas = if w.kind == WorkloadKind::DaemonSet {
                    (0..self.hosts.len())
                        .filter(|&i| self.allowed(wi, i) && fits_node(w, &self.hosts[i]))
                        .count() as u32
                } else {
                    w.replicas
                };
                WorkloadInfo {
                    namespace: w.namespace.clone(),
                    name: w.name.clone(),
                    kind: w.kind.as_str().to_string(),
                    replicas,
                    ready_replicas: 0,
                }
            })
            .collect()
    }

    fn allowed(&self, w: usize, h: usize) -> bool {
        match &self.d.allowed[w] {
            Some(set) => set.contains(&h),
            None => self.d.default_node[h],
        }
    }

    fn free(&self, h: usize) -> (u64, u64) {
        let (cpu, mem) = self.pods.used(&self.hosts[h].name);
        let cap = self.hosts[h].capacity;
        (
            u64::from(cap.cpu_millis).saturating_sub(cpu),
            u64::from(cap.memory_mib).saturating_sub(mem),
        )
    }

    fn order_remove(&mut self, h: usize) {
        if let Some(k) = self.d.in_order[h].take() {
            self.d.order.remove(&(Reverse(k), self.hosts[h].id, h));
        }
    }

    fn order_insert(&mut self, h: usize) {
        if self.hosts[h].schedulable() {
            let k = self.free(h).0;
            self.d.order.insert((Reverse(k), self.hosts[h].id, h));
            self.d.in_order[h] = Some(k);
        }
    }

    /// After a host changed: its entries in the hosts' view, its place among the schedulable
    /// hosts, its pods' readiness.
    fn touch_host(&mut self, h: usize) {
        let info = self.host_info(h);
        let node = self.node_info(h);
        let cp = self.cp_pods(h);
        // The same entries as before (a node gained or lost only through `mutate`): update them
        // in place; otherwise the view is rebuilt.
        let same_shape = self.d.node_pos[h].is_some() == node.is_some()
            && match self.d.cp_pos[h] {
                Some(_) => cp.len() == CP_COMPONENTS.len(),
                None => cp.is_empty(),
            };
        if same_shape {
            let (node_pos, cp_pos) = (self.d.node_pos[h], self.d.cp_pos[h]);
            let obs = Arc::make_mut(&mut self.d.obs);
            obs.hosts[h] = info;
            if let (Some(p), Some(n)) = (node_pos, node) {
                obs.nodes[p] = n;
            }
            if let Some(p) = cp_pos {
                obs.control_plane_pods[p..p + cp.len()].clone_from_slice(&cp);
            }
        } else {
            self.rebuild_observation();
        }
        self.order_remove(h);
        self.order_insert(h);
        let up = self.hosts[h].node_up();
        let ids: Vec<PodId> = self.pods.on_host(&self.hosts[h].name).to_vec();
        for id in ids {
            if self.pods.pod(id).is_some_and(|p| p.ready != up) {
                Arc::make_mut(&mut self.pods).set_ready(id, up);
                self.d.dirty.pods.insert(id);
            }
        }
        self.d.dirty.hosts.insert(h);
    }

    /// Moves a pod to a host, or leaves it pending; its readiness follows the host.
    fn put(&mut self, id: PodId, to: Option<usize>) {
        let from = self
            .pods
            .pod(id)
            .and_then(|p| p.node.as_deref())
            .and_then(|n| self.host_index(n));
        for h in from.into_iter().chain(to) {
            self.order_remove(h);
        }
        let pods = Arc::make_mut(&mut self.pods);
        pods.set_node(id, to.map(|h| self.hosts[h].name.clone()));
        if let Some(h) = to {
            pods.set_ready(id, self.hosts[h].node_up());
            self.d.pending.remove(&id);
        } else {
            self.d.pending.insert(id);
        }
        for h in from.into_iter().chain(to) {
            self.order_insert(h);
        }
        self.d.dirty.pods.insert(id);
    }

    fn new_pod(&mut self, w: usize, name: String, node: Option<usize>) -> PodId {
        let wl = &self.workloads[w];
        let pod = PodInfo {
            namespace: wl.namespace.clone(),
            name,
            node: None,
            ready: false,
            phase: PodPhase::Pending,
            owner_kind: wl.kind.as_str().to_string(),
            owner: wl.name.clone(),
            labels: wl.labels.clone(),
            volumes: wl.volumes.clone(),
            requests: wl.requests,
            node_selector: wl.node_selector.clone(),
            tolerations: wl.tolerations.clone(),
        };
        let id = Arc::make_mut(&mut self.pods).insert(pod);
        self.d.by_workload[w].push(id);
        self.d.pending.insert(id);
        self.d.dirty.pods.insert(id);
        if node.is_some() {
            self.put(id, node);
        }
        id
    }

    fn delete_pod(&mut self, id: PodId) {
        let node = self
            .pods
            .pod(id)
            .and_then(|p| p.node.as_deref())
            .and_then(|n| self.host_index(n));
        if let Some(h) = node {
            self.order_remove(h);
        }
        if let Some(p) = Arc::make_mut(&mut self.pods).remove(id)
            && let Some(&w) = self.d.workload_ix.get(&(p.namespace, p.owner))
        {
            self.d.by_workload[w].retain(|&q| q != id);
        }
        if let Some(h) = node {
            self.order_insert(h);
        }
        self.d.pending.remove(&id);
        self.d.dirty.pods.insert(id);
    }

    fn workload_of(&self, id: PodId) -> Option<usize> {
        let p = self.pods.pod(id)?;
        self.d
            .workload_ix
            .get(&(p.namespace.clone(), p.owner.clone()))
            .copied()
    }

    /// Creates every workload's pods: first those `placement` puts on a host (by workload,
    /// `(host, pods)`), then the rest where the scheduler would.
    fn create_pods(&mut self, placement: &[Vec<(usize, u32)>]) {
        let most: usize = self
            .workloads
            .iter()
            .map(|w| match w.kind {
                WorkloadKind::DaemonSet => self.hosts.len(),
                _ => w.replicas as usize,
            })
            .sum();
        Arc::make_mut(&mut self.pods).reserve(most);
        for w in 0..self.workloads.len() {
            if self.workloads[w].kind == WorkloadKind::DaemonSet {
                for h in 0..self.hosts.len() {
                    if self.allowed(w, h) {
                        self.add_daemon_pod(w, h);
                    }
                }
            } else {
                let mut pinned = placement
                    .get(w)
                    .into_iter()
                    .flatten()
                    .flat_map(|&(h, n)| std::iter::repeat_n(h, n as usize));
                for i in 0..self.workloads[w].replicas {
                    let name = format!("{}-{i}", self.workloads[w].name);
                    match pinned.next() {
                        Some(h) => {
                            self.new_pod(w, name, Some(h));
                        }
                        None => {
                            let id = self.new_pod(w, name, None);
                            self.place(id);
                        }
                    }
                }
            }
        }
    }

    fn add_daemon_pod(&mut self, w: usize, h: usize) {
        let name = self.hosts[h].name.clone();
        let wl = &self.workloads[w];
        let exists = self.pods.on_host(&name).iter().any(|&id| {
            self.pods
                .pod(id)
                .is_some_and(|p| p.owner == wl.name && p.namespace == wl.namespace)
        });
        if self.hosts[h].schedulable() && !exists {
            let pod = format!("{}-{name}", self.workloads[w].name);
            self.new_pod(w, pod, Some(h));
        }
    }

    /// Where a workload's pod needing `need` goes: of the allowed, schedulable hosts with room,
    /// one with the fewest of the workload's pods (the scheduler's default topology spread
    /// over hosts), then the most free CPU, then the lowest id. On a large cluster the hosts
    /// are tried by free CPU and the first without one of its pods wins, or the least loaded
    /// of the first few.
    fn best_host(&self, w: usize, need: (u64, u64)) -> Option<usize> {
        let wl = &self.workloads[w];
        let ok = |h: usize| {
            let (cpu, mem) = self.free(h);
            self.hosts[h].schedulable()
                && cpu >= need.0
                && mem >= need.1
                && fits_node(wl, &self.hosts[h])
        };
        let mut replicas: FxHashMap<usize, u32> = FxHashMap::default();
        for &id in &self.d.by_workload[w] {
            if let Some(h) = self
                .pods
                .pod(id)
                .and_then(|p| p.node.as_deref())
                .and_then(|n| self.host_index(n))
            {
                *replicas.entry(h).or_default() += 1;
            }
        }
        let on = |h: usize| replicas.get(&h).copied().unwrap_or(0);
        if let Some(set) = &self.d.allowed[w]
            && set.len() <= DIRECT_CANDIDATES
        {
            return set
                .iter()
                .copied()
                .filter(|&h| ok(h))
                .max_by_key(|&h| (Reverse(on(h)), self.free(h).0, Reverse(self.hosts[h].id)));
        }
        let mut best: Option<(u32, usize)> = None;
        for h in self
            .d
            .order
            .iter()
            .take_while(|(Reverse(cpu), _, _)| *cpu >= need.0)
            .map(|&(_, _, h)| h)
            .filter(|&h| self.allowed(w, h) && ok(h))
            .take(DIRECT_CANDIDATES)
        {
            let n = on(h);
            if n == 0 {
                return Some(h);
            }
            if best.is_none_or(|(m, _)| n < m) {
                best = Some((n, h));
            }
        }
        best.map(|(_, h)| h)
    }

    /// Schedules a pending pod, or leaves it pending when nothing fits.
    fn place(&mut self, id: PodId) {
        let Some(w) = self.workload_of(id) else {
            return;
        };
        let Some(p) = self.pods.pod(id) else { return };
        let need = (
            u64::from(p.requests.cpu_millis),
            u64::from(p.requests.memory_mib),
        );
        if let Some(h) = self.best_host(w, need) {
            self.put(id, Some(h));
        }
    }

    fn schedule_pending(&mut self) {
        let pending: Vec<PodId> = self.d.pending.iter().copied().collect();
        for id in pending {
            self.place(id);
        }
    }

    /// Evicts the host's pods as a drain does: controller-managed pods are rescheduled
    /// elsewhere (or stay pending), DaemonSet pods stop, bare pods are deleted.
    pub fn drain(&mut self, host: &str) {
        self.drain_audited(host, true);
    }

    fn drain_unaudited(&mut self, host: &str) {
        self.drain_audited(host, false);
    }

    fn drain_audited(&mut self, host: &str, audited: bool) {
        let Some(h) = self.host_index(host) else {
            return;
        };
        let mut ids: Vec<PodId> = self.pods.on_host(host).to_vec();
        ids.sort_unstable();
        let mut moved = BTreeSet::new();
        for id in ids {
            let kind = self.workload_of(id).map(|w| self.workloads[w].kind.clone());
            match kind {
                Some(WorkloadKind::DaemonSet | WorkloadKind::Pod) | None => self.delete_pod(id),
                Some(_) => {
                    if let Some(w) = self.workload_of(id) {
                        moved.insert(w);
                    }
                    self.put(id, None);
                    self.place(id);
                    if audited && self.d.pending.contains(&id) {
                        let name = self
                            .pods
                            .pod(id)
                            .map(|p| format!("{}/{}", p.namespace, p.name))
                            .unwrap_or_default();
                        self.violation(
                            || format!("pod {name} evicted from {host}: no host has room for it"),
                            true,
                        );
                    }
                }
            }
        }
        if !moved.is_empty() {
            self.evicted
                .entry(self.hosts[h].name.clone())
                .or_default()
                .extend(moved);
            self.d.dirty.evicted.insert(self.hosts[h].name.clone());
        }
    }

    /// `kubectl drain --force --ignore-daemonsets` of an aio-simplex host (the operator's
    /// choice to stop its workloads for the upgrade: the evicted pods wait, pending, for the
    /// uncordon, and the audit does not count them), or the uncordon that lets them back.
    pub fn cordon(&mut self, host: &str, on: bool) {
        let Some(h) = self.host_index(host) else {
            return;
        };
        self.hosts[h].cordoned = on;
        self.touch_host(h);
        if on {
            self.drain_unaudited(host);
        } else {
            self.schedule_pending();
            self.rebalance(h);
        }
    }

    pub fn lock(&mut self, host: &str, now: Timestamp) {
        let Some(h) = self.host_index(host) else {
            return;
        };
        {
            let x = &mut self.hosts[h];
            x.administrative = AdminState::Locked;
            x.operational = OperState::Disabled;
            x.availability = Availability::Online;
        }
        self.touch_host(h);
        // Drained once unschedulable, so nothing is placed back on it.
        self.drain(host);
        let entity = format!("host={host}");
        if !self
            .alarms
            .iter()
            .any(|a| a.alarm_id == HOST_LOCKED_ALARM && a.entity_instance_id == entity)
        {
            self.alarms.push(Alarm {
                uuid: stable_uuid(0, &format!("alarm/{HOST_LOCKED_ALARM}/{entity}")),
                alarm_id: HOST_LOCKED_ALARM.into(),
                entity_instance_id: entity,
                reason_text: format!(
                    "{host} was administratively locked to take it out-of-service."
                ),
                severity: Severity::Warning,
                management_affecting: false,
                timestamp: now,
            });
            self.alarms_changed();
        }
    }

    pub fn unlock(&mut self, host: &str) {
        let Some(h) = self.host_index(host) else {
            return;
        };
        {
            let x = &mut self.hosts[h];
            x.administrative = AdminState::Unlocked;
            x.operational = OperState::Enabled;
            x.availability = Availability::Available;
        }
        self.touch_host(h);
        let entity = format!("host={host}");
        let before = self.alarms.len();
        self.alarms
            .retain(|a| !(a.alarm_id == HOST_LOCKED_ALARM && a.entity_instance_id == entity));
        if self.alarms.len() != before {
            self.alarms_changed();
        }
        for w in self.d.daemon_sets.clone() {
            if self.allowed(w, h) {
                self.add_daemon_pod(w, h);
            }
        }
        self.schedule_pending();
        self.rebalance(h);
    }

    /// The simulated cluster runs a descheduler: after an unlock, the workloads the host's
    /// drain moved away are spread back onto it (one pod moved at a time, while the busiest
    /// host has two pods more than it and the pod fits), as `RemoveDuplicates`/topology
    /// spreading would. Without it every drain piles replicas onto the remaining hosts, and
    /// the next host can no longer be drained safely.
    fn rebalance(&mut self, h: usize) {
        let name = self.hosts[h].name.clone();
        let Some(moved) = self.evicted.remove(&name) else {
            return;
        };
        self.d.dirty.evicted.insert(name);
        for w in moved {
            self.spread_onto(w, h);
        }
    }

    fn spread_onto(&mut self, w: usize, h: usize) {
        if w >= self.workloads.len()
            || !self.hosts[h].schedulable()
            || !self.allowed(w, h)
            || !fits_node(&self.workloads[w], &self.hosts[h])
        {
            return;
        }
        loop {
            let mut count: BTreeMap<&str, (usize, PodId)> = BTreeMap::new();
            for &id in &self.d.by_workload[w] {
                if let Some(n) = self.pods.pod(id).and_then(|p| p.node.as_deref()) {
                    let e = count.entry(n).or_insert((0, id));
                    e.0 += 1;
                    e.1 = e.1.min(id);
                }
            }
            let here = count.get(self.hosts[h].name.as_str()).map_or(0, |c| c.0);
            // The busiest host: most pods, then the first by name.
            let Some((_, &(most, pod))) = count
                .iter()
                .filter(|(n, _)| **n != self.hosts[h].name)
                .max_by_key(|(n, c)| (c.0, Reverse(**n)))
            else {
                return;
            };
            if most <= here + 1 {
                return;
            }
            let need = self.pods.pod(pod).map_or((0, 0), |p| {
                (
                    u64::from(p.requests.cpu_millis),
                    u64::from(p.requests.memory_mib),
                )
            });
            let free = self.free(h);
            if free.0 < need.0 || free.1 < need.1 {
                return;
            }
            self.put(pod, Some(h));
        }
    }

    pub fn swact(&mut self, from: &str) {
        let to = self
            .hosts
            .iter()
            .position(|h| h.personality == Personality::Controller && h.name != from);
        if let Some(to) = to {
            for i in 0..self.hosts.len() {
                let active = i == to;
                if self.hosts[i].active != active {
                    self.hosts[i].active = active;
                    self.touch_host(i);
                }
            }
        }
    }

    fn alarms_changed(&mut self) {
        Arc::make_mut(&mut self.d.obs).alarms = self.alarms.clone();
        self.d.dirty.alarms = true;
    }

    /// Visible effects while an operation runs.
    pub fn begin(&mut self, op: &Operation) {
        if let Operation::UpgradeControlPlane { host, .. }
        | Operation::RestoreControlPlane { host, .. }
        | Operation::Lock { host, .. } = op
        {
            self.audit_control_plane(host);
        }
        if let Operation::UpgradeControlPlane {
            host, first: true, ..
        } = op
        {
            self.back_up_control_plane(host);
        }
        let (host, f): (&str, fn(&mut SimHost)) = match op {
            Operation::UpgradeControlPlane { host, .. }
            | Operation::RestoreControlPlane { host, .. } => {
                (host, |h| h.control_plane_upgrading = true)
            }
            Operation::UpgradeKubelet { host, .. } => (host, |h| h.kubelet_restarting = true),
            Operation::Lock { host, .. } => {
                self.begin_disruption(host);
                (host, |h| h.task = Some("Locking".into()))
            }
            Operation::Unlock { host } => (host, |h| h.task = Some("Unlocking".into())),
            Operation::Swact { host } => (host, |h| h.task = Some("Swacting".into())),
            Operation::DownloadImages { .. }
            | Operation::UpgradeNetworking { .. }
            | Operation::Cordon { .. }
            | Operation::Uncordon { .. } => return,
        };
        if let Some(h) = self.host_index(host) {
            f(&mut self.hosts[h]);
            self.touch_host(h);
        }
    }

    /// The end of an operation: its effect on success, a clean roll-back on failure.
    pub fn end(&mut self, op: &Operation, ok: bool, now: Timestamp) {
        if ok {
            self.note_completed(op);
        }
        match op {
            Operation::DownloadImages { images, .. } => {
                if ok {
                    self.images.extend(images.iter().cloned());
                    Arc::make_mut(&mut self.d.obs).images = self.images.iter().cloned().collect();
                    self.d.dirty.images = true;
                }
            }
            Operation::UpgradeControlPlane { host, version, .. }
            | Operation::RestoreControlPlane { host, version } => {
                if let Some(h) = self.host_index(host) {
                    let x = &mut self.hosts[h];
                    x.control_plane_upgrading = false;
                    if ok {
                        x.control_plane_version = Some(*version);
                    }
                    self.touch_host(h);
                }
                self.audit_skew();
            }
            Operation::UpgradeNetworking { version, .. } => {
                if ok {
                    self.networking_version = Some(*version);
                    Arc::make_mut(&mut self.d.obs).networking_version = Some(*version);
                    self.d.dirty.networking = true;
                }
            }
            Operation::UpgradeKubelet { host, version, .. } => {
                if let Some(h) = self.host_index(host) {
                    let x = &mut self.hosts[h];
                    x.kubelet_restarting = false;
                    if ok {
                        x.kubelet_version = Some(*version);
                    }
                    self.touch_host(h);
                }
                self.audit_skew();
            }
            Operation::Cordon { host } if ok => self.cordon(host, true),
            Operation::Uncordon { host } if ok => self.cordon(host, false),
            Operation::Cordon { .. } | Operation::Uncordon { .. } => {}
            Operation::Lock { host, .. }
            | Operation::Unlock { host }
            | Operation::Swact { host } => {
                if matches!(op, Operation::Lock { .. }) {
                    self.end_disruption(host);
                }
                if let Some(h) = self.host_index(host) {
                    self.hosts[h].task = None;
                    self.touch_host(h);
                }
                if ok {
                    match op {
                        Operation::Lock { .. } => self.lock(host, now),
                        Operation::Unlock { .. } => self.unlock(host),
                        _ => self.swact(host),
                    }
                }
            }
        }
    }

    /// Forgets what changed (nothing records it).
    pub fn forget_changes(&mut self) {
        self.d.dirty = Dirty::default();
    }

    /// What changed since the last call, for the state file's journal.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let dirty = std::mem::take(&mut self.d.dirty);
        let mut out = Vec::new();
        for h in dirty.hosts {
            if let Some(host) = self.hosts.get(h) {
                out.push(Change::Host {
                    host: Box::new(host.clone()),
                });
            }
        }
        for id in dirty.pods {
            out.push(Change::Pod {
                id,
                pod: self.pods.pod(id).cloned().map(Box::new),
            });
        }
        if dirty.alarms {
            out.push(Change::Alarms {
                alarms: self.alarms.clone(),
            });
        }
        if dirty.images {
            out.push(Change::Images {
                images: self.images.clone(),
            });
        }
        if dirty.networking {
            out.push(Change::Networking {
                version: self.networking_version,
            });
        }
        for host in dirty.evicted {
            out.push(Change::Evicted {
                workloads: self.evicted.get(&host).cloned().unwrap_or_default(),
                host,
            });
        }
        if dirty.audit {
            out.push(Change::Audit {
                audit: self.audit.clone(),
            });
        }
        for (step, version) in dirty.completed {
            out.push(Change::Completed { step, version });
        }
        out
    }

    /// Replays a journal entry on a model just loaded (call [`SimModel::rebuild`] after the
    /// last one).
    pub fn apply_change(&mut self, c: Change) {
        match c {
            Change::Host { host } => {
                if let Some(h) = self.hosts.iter_mut().find(|h| h.name == host.name) {
                    *h = *host;
                }
            }
            Change::Pod { id, pod } => {
                let pods = Arc::make_mut(&mut self.pods);
                match pod {
                    Some(p) => pods.insert_at(id, *p),
                    None => {
                        pods.remove(id);
                    }
                }
            }
            Change::Alarms { alarms } => self.alarms = alarms,
            Change::Images { images } => self.images = images,
            Change::Networking { version } => self.networking_version = version,
            Change::Evicted { host, workloads } => {
                if workloads.is_empty() {
                    self.evicted.remove(&host);
                } else {
                    self.evicted.insert(host, workloads);
                }
            }
            Change::Audit { audit } => self.audit = audit,
            Change::Completed { step, version } => {
                self.completed.insert(step, version);
            }
        }
    }

    /// Notes a safety violation: counted always, described for the first few.
    fn violation(&mut self, example: impl FnOnce() -> String, unplaced: bool) {
        if unplaced {
            self.audit.unplaced_pods += 1;
        } else {
            self.audit.pdb_violations += 1;
        }
        if self.audit.examples.len() < AUDIT_EXAMPLES {
            self.audit.examples.push(example());
        }
        self.d.dirty.audit = true;
    }

    /// The host's ready pods: what its drain disrupts.
    fn ready_pods_on(&self, host: &str) -> Vec<PodId> {
        self.pods
            .on_host(host)
            .iter()
            .copied()
            .filter(|&id| self.pods.pod(id).is_some_and(|p| p.ready))
            .collect()
    }

    /// The budgets that `ids` (the ready pods of a host going down), with the pods of the
    /// hosts already going down, would break: each with the pods of it disrupted at once and
    /// the number it allows. What the Eviction API refuses.
    fn budgets_broken(&self, host: &str, ids: &[PodId]) -> Vec<(kup_types::PdbId, u32, u32)> {
        let mut touched: BTreeSet<kup_types::PdbId> = BTreeSet::new();
        for &id in ids {
            touched.extend(self.pods.pdbs_of(id).iter().copied());
        }
        // A pod the descheduler moved off a host being locked (at another host's unlock)
        // runs, ready, elsewhere: that lock no longer disrupts it. Counting it still would
        // find a broken budget where the Eviction API, and kup's lock check, see none.
        let others = self
            .disrupting
            .iter()
            .filter(|(h, _)| h.as_str() != host)
            .flat_map(|(h, ids)| {
                ids.iter().filter(move |&&id| {
                    self.pods.pod(id).and_then(|p| p.node.as_deref()) == Some(h.as_str())
                })
            });
        let mut broken = Vec::new();
        for b in touched {
            let disrupted = others
                .clone()
                .chain(ids)
                .filter(|&&id| self.pods.pdbs_of(id).contains(&b))
                .count() as u32;
            let allowed = self.pods.budget(b).allowed_disruptions();
            if disrupted > allowed {
                broken.push((b, disrupted, allowed));
            }
        }
        broken
    }

    /// Whether draining `host` now, while the hosts being locked drain too, would take more
    /// pods of some PodDisruptionBudget than it allows: a drain through the Eviction API would
    /// be refused (and retry) rather than go on.
    pub fn drain_blocked(&self, host: &str) -> bool {
        !self
            .budgets_broken(host, &self.ready_pods_on(host))
            .is_empty()
    }

    /// A lock begins: the host's ready pods are disrupted (evicted, or down with it) until it
    /// ends. Any budget with more of its pods disrupted at once, over all the hosts being
    /// locked, than it allows is a violation: what the Eviction API would refuse.
    fn begin_disruption(&mut self, host: &str) {
        let ids = self.ready_pods_on(host);
        let broken = self.budgets_broken(host, &ids);
        self.disrupting.insert(host.to_string(), ids);
        for (b, disrupted, allowed) in broken {
            let hosts: Vec<String> = self.disrupting.keys().cloned().collect();
            let budget = self.pods.budget(b);
            let name = format!("{}/{}", budget.pdb.namespace, budget.pdb.name);
            self.violation(
                || {
                    format!(
                        "pdb {name}: {disrupted} pods disrupted at once, {allowed} allowed \
                         (hosts going down: {})",
                        hosts.join(", ")
                    )
                },
                false,
            );
        }
    }

    /// A control-plane host goes down (its lock, or its control plane's upgrade): any other
    /// control-plane host already down or unavailable is a violation — two members of etcd
    /// and of the API servers out at once.
    fn audit_control_plane(&mut self, host: &str) {
        let Some(h) = self.host_index(host) else {
            return;
        };
        if self.hosts[h].personality != Personality::Controller {
            return;
        }
        let down: Vec<String> = self
            .hosts
            .iter()
            .filter(|x| x.personality == Personality::Controller && x.name != host)
            .filter(|x| {
                x.administrative == AdminState::Locked
                    || x.operational != OperState::Enabled
                    || x.availability != Availability::Available
                    || x.task.is_some()
                    || x.control_plane_upgrading
            })
            .map(|x| x.name.clone())
            .collect();
        if !down.is_empty() {
            self.audit.control_plane_violations += 1;
            if self.audit.examples.len() < AUDIT_EXAMPLES {
                self.audit.examples.push(format!(
                    "control plane: {host} went down while {} {} down",
                    down.join(", "),
                    if down.len() == 1 { "was" } else { "were" }
                ));
            }
            self.d.dirty.audit = true;
        }
    }

    /// A step that moves a control plane, a kubelet or the networking runs to success once per
    /// version it moves to: a second success to the version already reached is a step executed
    /// twice, which kup must never do (host actions repeat legitimately, round after round).
    fn note_completed(&mut self, op: &Operation) {
        let (what, version) = match op {
            Operation::UpgradeControlPlane { host, version, .. }
            | Operation::RestoreControlPlane { host, version } => {
                (format!("control-plane/{host}"), *version)
            }
            Operation::UpgradeKubelet { host, version, .. } => {
                (format!("kubelet/{host}"), *version)
            }
            Operation::UpgradeNetworking { version, .. } => ("networking".to_string(), *version),
            _ => return,
        };
        if self.completed.get(&what) != Some(&version) {
            self.completed.insert(what.clone(), version);
            self.d.dirty.completed.push((what, version));
            return;
        }
        self.audit.repeated_steps += 1;
        if self.audit.examples.len() < AUDIT_EXAMPLES {
            self.audit
                .examples
                .push(format!("{op} ran again after it had succeeded"));
        }
        self.d.dirty.audit = true;
    }

    /// Before a first control plane moves, the driver takes a backup of the control plane
    /// (etcd snapshot and static pod manifests) at the version it runs; kept once per version.
    fn back_up_control_plane(&mut self, host: &str) {
        let Some(version) = self
            .host_index(host)
            .and_then(|h| self.hosts[h].control_plane_version)
        else {
            return;
        };
        if self
            .audit
            .control_plane_backups
            .iter()
            .any(|b| b.version == version)
        {
            return;
        }
        self.audit
            .control_plane_backups
            .push(kup_types::ControlPlaneBackup {
                host: host.to_string(),
                version,
            });
        self.d.dirty.audit = true;
    }

    /// Whether a backup of the control plane at `version` exists (an abort restores it).
    pub fn has_backup(&self, version: KubeVersion) -> bool {
        self.audit
            .control_plane_backups
            .iter()
            .any(|b| b.version == version)
    }

    /// After every version change: each kubelet within the skew policy of every API server,
    /// and the API servers within a minor of each other.
    fn audit_skew(&mut self) {
        let cps: Vec<KubeVersion> = self
            .hosts
            .iter()
            .filter_map(|h| h.control_plane_version)
            .collect();
        let (Some(&lo), Some(&hi)) = (cps.iter().min(), cps.iter().max()) else {
            return;
        };
        let mut found: Vec<String> = Vec::new();
        if hi.minor_skew(&lo) > 1 {
            found.push(format!("API servers at {lo} and {hi}"));
        }
        for h in &self.hosts {
            if let Some(k) = h.kubelet_version
                && !(k.kubelet_runs_under(lo) && k.kubelet_runs_under(hi))
            {
                found.push(format!(
                    "kubelet {k} on {} under API servers {lo}..{hi}",
                    h.name
                ));
            }
        }
        if found.is_empty() {
            return;
        }
        self.audit.skew_violations += 1;
        if self.audit.examples.len() < AUDIT_EXAMPLES {
            self.audit
                .examples
                .push(format!("version skew: {}", found.join("; ")));
        }
        self.d.dirty.audit = true;
    }

    fn end_disruption(&mut self, host: &str) {
        self.disrupting.remove(host);
    }
}

impl SimModel {
    /// The audit of the simulation: PDB violations and unplaced pods, with examples.
    pub fn safety_audit(&self) -> kup_types::SafetyAudit {
        self.audit.clone()
    }

    /// Forgets what was in progress: the process that ran it is gone.
    pub fn settle_after_restart(&mut self) {
        self.disrupting.clear();
        for h in &mut self.hosts {
            h.task = None;
            h.control_plane_upgrading = false;
            h.kubelet_restarting = false;
        }
    }
}
