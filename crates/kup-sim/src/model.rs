//! The simulated cluster's state and what happens to it: scheduling, drain, lock, unlock.
//! All fields are public so tests can set any precondition they need.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use kup_types::{
    AdminState, Alarm, Application, Availability, Capacity, ControlPlanePod, HostInfo, KubeVersion,
    NodeInfo, Observation, OperState, PdbInfo, Personality, PodInfo, PodPhase, Severity,
    SystemType, Taint, VolumeKind, WorkloadInfo,
};
use serde::{Deserialize, Serialize};

use crate::inventory::{Inventory, WorkloadKind};

const CP_COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
/// The alarm StarlingX raises while a host is administratively locked.
pub const HOST_LOCKED_ALARM: &str = "200.001";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimModel {
    pub system_type: SystemType,
    pub hosts: Vec<SimHost>,
    pub workloads: Vec<SimWorkload>,
    #[serde(default)]
    pub pdbs: Vec<PdbInfo>,
    pub pods: Vec<SimPod>,
    pub alarms: Vec<Alarm>,
    pub applications: Vec<Application>,
    pub images: BTreeSet<String>,
    pub networking_version: Option<KubeVersion>,
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
    /// Hosts the pods may run on.
    pub nodes: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimPod {
    pub namespace: String,
    pub name: String,
    pub workload: String,
    pub kind: WorkloadKind,
    pub node: Option<String>,
    pub requests: Capacity,
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
                    active: h.active || (!any_active && Some(i) == first_controller),
                    task: None,
                    control_plane_version: controller
                        .then(|| h.control_plane_version.unwrap_or(inv.kubernetes_version)),
                    kubelet_version: h
                        .personality
                        .has_kubelet()
                        .then(|| h.kubelet_version.unwrap_or(inv.kubernetes_version)),
                    control_plane_upgrading: false,
                    kubelet_restarting: false,
                    node_ready: true,
                    control_plane_ready: true,
                    labels: {
                        let mut l = h.labels.clone();
                        l.insert("kubernetes.io/hostname".into(), h.name.value.clone());
                        l
                    },
                    // Standard controllers run only platform pods, as StarlingX taints them.
                    taints: if controller
                        && inv.system_type == SystemType::Standard
                        && h.taints.is_empty()
                    {
                        vec![Taint {
                            key: "node-role.kubernetes.io/master".into(),
                            effect: "NoSchedule".into(),
                        }]
                    } else {
                        h.taints.clone()
                    },
                }
            })
            .collect();
        let default_nodes: Vec<String> = {
            let workers: Vec<String> = hosts
                .iter()
                .filter(|h| h.personality == Personality::Worker)
                .map(|h| h.name.clone())
                .collect();
            if workers.is_empty() {
                hosts
                    .iter()
                    .filter(|h| h.personality.has_kubelet())
                    .map(|h| h.name.clone())
                    .collect()
            } else {
                workers
            }
        };
        let workloads = inv
            .workloads
            .iter()
            .map(|w| SimWorkload {
                namespace: w.namespace.clone(),
                name: w.name.value.clone(),
                kind: w.kind.clone(),
                replicas: w.replicas,
                requests: w.requests,
                volumes: w.volumes.clone(),
                nodes: if w.nodes.is_empty() {
                    default_nodes.clone()
                } else {
                    w.nodes.iter().map(|n| n.value.clone()).collect()
                },
                labels: {
                    let mut l = w.labels.clone();
                    l.insert("app".into(), w.name.value.clone());
                    l
                },
                node_selector: w.node_selector.clone(),
                tolerations: w.tolerations.clone(),
            })
            .collect();
        let pdbs = inv
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
            pdbs,
            pods: Vec::new(),
            alarms,
            applications,
            images,
            networking_version: Some(inv.networking_version.unwrap_or(inv.kubernetes_version)),
        };
        model.create_pods();
        model
    }

    pub fn host(&self, name: &str) -> Option<&SimHost> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn host_mut(&mut self, name: &str) -> Option<&mut SimHost> {
        self.hosts.iter_mut().find(|h| h.name == name)
    }

    fn create_pods(&mut self) {
        for wi in 0..self.workloads.len() {
            let w = self.workloads[wi].clone();
            if w.kind == WorkloadKind::DaemonSet {
                for node in w.nodes.clone() {
                    self.add_daemon_pod(&w, &node);
                }
            } else {
                for i in 0..w.replicas {
                    self.pods.push(SimPod {
                        namespace: w.namespace.clone(),
                        name: format!("{}-{i}", w.name),
                        workload: w.name.clone(),
                        kind: w.kind.clone(),
                        node: None,
                        requests: w.requests,
                    });
                    let idx = self.pods.len() - 1;
                    self.place(idx);
                }
            }
        }
    }

    fn add_daemon_pod(&mut self, w: &SimWorkload, node: &str) {
        let schedulable = self.host(node).is_some_and(SimHost::schedulable);
        let exists = self
            .pods
            .iter()
            .any(|p| p.workload == w.name && p.node.as_deref() == Some(node));
        if schedulable && !exists {
            self.pods.push(SimPod {
                namespace: w.namespace.clone(),
                name: format!("{}-{node}", w.name),
                workload: w.name.clone(),
                kind: WorkloadKind::DaemonSet,
                node: Some(node.to_string()),
                requests: w.requests,
            });
        }
    }

    fn used(&self, node: &str) -> Capacity {
        self.pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(node))
            .fold(Capacity::default(), |acc, p| Capacity {
                cpu_millis: acc.cpu_millis + p.requests.cpu_millis,
                memory_mib: acc.memory_mib + p.requests.memory_mib,
            })
    }

    /// Schedules a pending pod on the allowed, schedulable host with the most free CPU (ties:
    /// the lowest id). Leaves it pending when nothing fits.
    fn place(&mut self, idx: usize) {
        let pod = &self.pods[idx];
        let allowed = self
            .workloads
            .iter()
            .find(|w| w.name == pod.workload && w.namespace == pod.namespace)
            .map(|w| w.nodes.clone())
            .unwrap_or_default();
        let req = pod.requests;
        let workload = self.workload_of(pod).cloned();
        let best = self
            .hosts
            .iter()
            .filter(|h| h.schedulable() && allowed.contains(&h.name))
            .filter(|h| workload.as_ref().is_none_or(|w| fits_node(w, h)))
            .filter_map(|h| {
                let used = self.used(&h.name);
                let free_cpu = h
                    .capacity
                    .cpu_millis
                    .checked_sub(used.cpu_millis + req.cpu_millis)?;
                h.capacity
                    .memory_mib
                    .checked_sub(used.memory_mib + req.memory_mib)?;
                Some((free_cpu, std::cmp::Reverse(h.id), h.name.clone()))
            })
            .max();
        self.pods[idx].node = best.map(|(_, _, name)| name);
    }

    fn workload_of(&self, pod: &SimPod) -> Option<&SimWorkload> {
        self.workloads
            .iter()
            .find(|w| w.name == pod.workload && w.namespace == pod.namespace)
    }

    fn schedule_pending(&mut self) {
        for idx in 0..self.pods.len() {
            if self.pods[idx].node.is_none() {
                self.place(idx);
            }
        }
    }

    /// Evicts the host's pods as a drain does: controller-managed pods are rescheduled
    /// elsewhere (or stay pending), DaemonSet pods stop, bare pods are deleted.
    pub fn drain(&mut self, host: &str) {
        self.pods.retain(|p| {
            p.node.as_deref() != Some(host)
                || !matches!(p.kind, WorkloadKind::DaemonSet | WorkloadKind::Pod)
        });
        for idx in 0..self.pods.len() {
            if self.pods[idx].node.as_deref() == Some(host) {
                self.pods[idx].node = None;
                self.place(idx);
            }
        }
    }

    pub fn lock(&mut self, host: &str, now: Timestamp) {
        if let Some(h) = self.host_mut(host) {
            h.administrative = AdminState::Locked;
            h.operational = OperState::Disabled;
            h.availability = Availability::Online;
        }
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
        }
    }

    pub fn unlock(&mut self, host: &str) {
        if let Some(h) = self.host_mut(host) {
            h.administrative = AdminState::Unlocked;
            h.operational = OperState::Enabled;
            h.availability = Availability::Available;
        }
        let entity = format!("host={host}");
        self.alarms
            .retain(|a| !(a.alarm_id == HOST_LOCKED_ALARM && a.entity_instance_id == entity));
        for w in self.workloads.clone() {
            if w.kind == WorkloadKind::DaemonSet && w.nodes.iter().any(|n| n == host) {
                self.add_daemon_pod(&w, host);
            }
        }
        self.schedule_pending();
        self.rebalance();
    }

    /// The simulated cluster runs a descheduler: after an unlock, each workload's replicas are
    /// spread back evenly over the hosts they may use (one pod moved at a time, where it fits),
    /// as `RemoveDuplicates`/topology spreading would. Without it every drain piles replicas
    /// onto the remaining hosts, and the next host can no longer be drained safely.
    fn rebalance(&mut self) {
        for wi in 0..self.workloads.len() {
            let w = self.workloads[wi].clone();
            if matches!(w.kind, WorkloadKind::DaemonSet | WorkloadKind::Pod) {
                continue;
            }
            loop {
                let hosts: Vec<String> = self
                    .hosts
                    .iter()
                    .filter(|h| h.schedulable() && w.nodes.contains(&h.name) && fits_node(&w, h))
                    .map(|h| h.name.clone())
                    .collect();
                let count = |n: &str| {
                    self.pods
                        .iter()
                        .filter(|p| p.workload == w.name && p.namespace == w.namespace)
                        .filter(|p| p.node.as_deref() == Some(n))
                        .count()
                };
                let (Some(most), Some(least)) = (
                    hosts
                        .iter()
                        .max_by_key(|h| (count(h), std::cmp::Reverse((*h).clone()))),
                    hosts.iter().min_by_key(|h| (count(h), (*h).clone())),
                ) else {
                    break;
                };
                if count(most) <= count(least) + 1 {
                    break;
                }
                let target = self.host(least).expect("a listed host").clone();
                let used = self.used(least);
                let idx = self
                    .pods
                    .iter()
                    .position(|p| {
                        p.workload == w.name
                            && p.namespace == w.namespace
                            && p.node.as_deref() == Some(most.as_str())
                    })
                    .expect("the busiest host has a pod");
                let req = self.pods[idx].requests;
                let fits = used.cpu_millis + req.cpu_millis <= target.capacity.cpu_millis
                    && used.memory_mib + req.memory_mib <= target.capacity.memory_mib;
                if !fits {
                    break;
                }
                self.pods[idx].node = Some(least.clone());
            }
        }
    }

    pub fn swact(&mut self, from: &str) {
        let to = self
            .hosts
            .iter()
            .find(|h| h.personality == Personality::Controller && h.name != from)
            .map(|h| h.name.clone());
        if let Some(to) = to {
            for h in &mut self.hosts {
                h.active = h.name == to;
            }
        }
    }

    /// What a driver would read from this cluster.
    pub fn observe(&self) -> Observation {
        let hosts = self
            .hosts
            .iter()
            .map(|h| HostInfo {
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
            })
            .collect();
        let up = |h: &SimHost| h.availability != Availability::Offline;
        let nodes = self
            .hosts
            .iter()
            .filter_map(|h| {
                Some(NodeInfo {
                    name: h.name.clone(),
                    ready: h.node_up(),
                    unschedulable: h.administrative == AdminState::Locked,
                    kubelet_version: h.kubelet_version?,
                    labels: h.labels.clone(),
                    taints: h.taints.clone(),
                })
            })
            .collect();
        let control_plane_pods = self
            .hosts
            .iter()
            .filter_map(|h| Some((h, h.control_plane_version?)))
            .flat_map(|(h, v)| {
                CP_COMPONENTS.iter().map(move |c| ControlPlanePod {
                    host: h.name.clone(),
                    component: c.to_string(),
                    version: v,
                    ready: up(h) && h.control_plane_ready && !h.control_plane_upgrading,
                })
            })
            .collect();
        let pods = self
            .pods
            .iter()
            .map(|p| {
                let w = self.workload_of(p);
                PodInfo {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    node: p.node.clone(),
                    ready: p
                        .node
                        .as_deref()
                        .and_then(|n| self.host(n))
                        .is_some_and(SimHost::node_up),
                    phase: if p.node.is_some() {
                        PodPhase::Running
                    } else {
                        PodPhase::Pending
                    },
                    owner_kind: p.kind.as_str().to_string(),
                    owner: p.workload.clone(),
                    labels: w.map(|w| w.labels.clone()).unwrap_or_default(),
                    volumes: w.map(|w| w.volumes.clone()).unwrap_or_default(),
                    requests: p.requests,
                    node_selector: w.map(|w| w.node_selector.clone()).unwrap_or_default(),
                    tolerations: w.map(|w| w.tolerations.clone()).unwrap_or_default(),
                }
            })
            .collect::<Vec<PodInfo>>();
        let workloads = self
            .workloads
            .iter()
            .filter(|w| w.kind != WorkloadKind::Pod)
            .map(|w| {
                let replicas = if w.kind == WorkloadKind::DaemonSet {
                    let eligible = self
                        .hosts
                        .iter()
                        .filter(|h| w.nodes.contains(&h.name) && fits_node(w, h));
                    eligible.count() as u32
                } else {
                    w.replicas
                };
                let ready = pods
                    .iter()
                    .filter(|p| p.owner == w.name && p.namespace == w.namespace && p.ready)
                    .count() as u32;
                WorkloadInfo {
                    namespace: w.namespace.clone(),
                    name: w.name.clone(),
                    kind: w.kind.as_str().to_string(),
                    replicas,
                    ready_replicas: ready,
                }
            })
            .collect();
        Observation {
            system_type: self.system_type,
            hosts,
            nodes,
            control_plane_pods,
            pods,
            alarms: self.alarms.clone(),
            applications: self.applications.clone(),
            images: self.images.iter().cloned().collect(),
            networking_version: self.networking_version,
            workloads,
            pdbs: self.pdbs.clone(),
        }
    }
}
