//! A twin of a cluster: what a driver reads of it, written out as a cluster file for the
//! simulator, so an upgrade can be rehearsed on it before the real one is touched
//! (`kup rehearse`, `kup export-cluster`).
//!
//! The twin keeps what kup's decisions read: the hosts with their versions, states,
//! capacity, labels and taints; each pod where it runs (a workload's `placement`), with its
//! owner, labels, requests, volumes, node selector and tolerations; the budgets with their
//! selectors; alarms, applications, the APIs in use, the catalog and the step durations. It
//! leaves out what they do not read (pod names, images, container specs). Pods of one owner
//! keep the labels they all share: a budget that selects by a label only some of them carry
//! selects differently in the twin (rare: budgets select workloads, not single pods).

use std::collections::BTreeMap;

use serde::Serialize;

use kup_types::{
    AdminState, ApiUsage, Availability, Capacity, KubeVersion, Observation, OperState, Personality,
    Severity, StepKind, SystemType, Taint, VersionMeta, VolumeKind, Workloads,
};

/// What a twin is made of besides the driver's two views.
pub struct TwinSource<'a> {
    pub obs: &'a Observation,
    pub workloads: &'a Workloads,
    pub versions: &'a [VersionMeta],
    pub durations: &'a BTreeMap<StepKind, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    #[error("the cluster runs no version kup knows (no control plane or kubelet is seen)")]
    NoVersion,
    #[error("cannot write the twin: {0}")]
    Write(String),
}

#[derive(Serialize)]
struct File<'a> {
    system_type: SystemType,
    kubernetes_version: KubeVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    networking_version: Option<KubeVersion>,
    versions: &'a [VersionMeta],
    hosts: Vec<Host<'a>>,
    workloads: Vec<Workload<'a>>,
    pdbs: Vec<Pdb<'a>>,
    alarms: Vec<Alarm<'a>>,
    applications: Vec<App<'a>>,
    api_usage: &'a [ApiUsage],
    durations: BTreeMap<StepKind, f64>,
}

#[derive(Serialize)]
struct Host<'a> {
    name: &'a str,
    personality: Personality,
    active: bool,
    roles: &'a [String],
    capacity: Capacity,
    disk_free_gib: u32,
    administrative: AdminState,
    operational: OperState,
    availability: Availability,
    #[serde(skip_serializing_if = "Option::is_none")]
    control_plane_version: Option<KubeVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kubelet_version: Option<KubeVersion>,
    labels: BTreeMap<&'a str, &'a str>,
    taints: &'a [Taint],
}

#[derive(Serialize)]
struct Workload<'a> {
    name: String,
    namespace: &'a str,
    kind: &'static str,
    replicas: u32,
    requests: Capacity,
    volumes: &'a [VolumeKind],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<&'a str>,
    labels: BTreeMap<&'a str, &'a str>,
    node_selector: &'a BTreeMap<String, String>,
    tolerations: &'a [String],
    placement: Vec<Placement<'a>>,
}

#[derive(Serialize)]
struct Placement<'a> {
    node: &'a str,
    pods: u32,
}

#[derive(Serialize)]
struct Pdb<'a> {
    name: &'a str,
    namespace: &'a str,
    selector: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_available: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_unavailable: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unhealthy_pod_eviction_policy: Option<&'a str>,
}

#[derive(Serialize)]
struct Alarm<'a> {
    id: &'a str,
    entity: &'a str,
    reason: &'a str,
    severity: Severity,
    management_affecting: bool,
}

#[derive(Serialize)]
struct App<'a> {
    name: &'a str,
    version: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    k8s_min: Option<KubeVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    k8s_max: Option<KubeVersion>,
}

/// The simulator's kind for a pod's owner: a controller kup does not know (an operator's
/// custom one) manages its pods like a ReplicaSet.
fn kind(owner_kind: &str) -> &'static str {
    match owner_kind {
        "Deployment" => "Deployment",
        "StatefulSet" => "StatefulSet",
        "DaemonSet" => "DaemonSet",
        "Job" => "Job",
        "Pod" | "" => "Pod",
        _ => "ReplicaSet",
    }
}

/// The twin of the cluster the two views show, as a cluster file (YAML).
pub fn twin_yaml(src: &TwinSource<'_>) -> Result<String, TwinError> {
    let obs = src.obs;
    let kubernetes_version = running_floor(obs).ok_or(TwinError::NoVersion)?;
    let hosts = obs
        .hosts
        .iter()
        .map(|h| {
            let node = obs.node(&h.hostname);
            Host {
                name: &h.hostname,
                personality: h.personality,
                active: h.active_controller,
                roles: &h.roles,
                capacity: h.capacity,
                disk_free_gib: h.disk_free_gib,
                administrative: h.administrative,
                operational: h.operational,
                availability: h.availability,
                control_plane_version: obs.control_plane_version(&h.hostname),
                kubelet_version: node.map(|n| n.kubelet_version),
                labels: node
                    .into_iter()
                    .flat_map(|n| &n.labels)
                    .filter(|(k, _)| k.as_str() != "kubernetes.io/hostname")
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                taints: node.map_or(&[][..], |n| &n.taints[..]),
            }
        })
        .collect();
    let pdbs = src
        .workloads
        .budgets()
        .iter()
        .map(|b| Pdb {
            name: &b.pdb.name,
            namespace: &b.pdb.namespace,
            selector: &b.pdb.selector,
            min_available: b.pdb.min_available,
            max_unavailable: b.pdb.max_unavailable,
            unhealthy_pod_eviction_policy: b.pdb.unhealthy_pod_eviction_policy.as_deref(),
        })
        .collect();
    let file = File {
        system_type: obs.system_type,
        kubernetes_version,
        networking_version: obs.networking_version,
        versions: src.versions,
        hosts,
        workloads: workloads(src.workloads),
        pdbs,
        alarms: obs
            .alarms
            .iter()
            // kup's own alarms (900.xxx) come back from its store, not from the cluster.
            .filter(|a| !a.alarm_id.starts_with("900."))
            .map(|a| Alarm {
                id: &a.alarm_id,
                entity: &a.entity_instance_id,
                reason: &a.reason_text,
                severity: a.severity,
                management_affecting: a.management_affecting,
            })
            .collect(),
        applications: obs
            .applications
            .iter()
            .map(|a| App {
                name: &a.name,
                version: &a.version,
                status: &a.status,
                k8s_min: a.k8s_min,
                k8s_max: a.k8s_max,
            })
            .collect(),
        api_usage: &obs.api_usage,
        durations: src.durations.iter().map(|(k, v)| (*k, *v as f64)).collect(),
    };
    let body = serde_saphyr::to_string(&file).map_err(|e| TwinError::Write(e.to_string()))?;
    Ok(format!(
        "# A twin of a cluster, written by kup for a rehearsal on the simulator.\n{body}"
    ))
}

/// The lowest version a control plane or kubelet runs: the hosts say their own; this is the
/// file's default.
fn running_floor(obs: &Observation) -> Option<KubeVersion> {
    let cps = obs.control_plane_pods.iter().map(|p| p.version);
    let kubelets = obs.nodes.iter().map(|n| n.kubelet_version);
    cps.chain(kubelets).min()
}

/// The pods grouped by owner, each group a workload placed where its pods run.
fn workloads(wl: &Workloads) -> Vec<Workload<'_>> {
    // (namespace, owner kind, owner) -> pods, in a stable order.
    let mut groups: BTreeMap<(&str, &str, &str), Vec<&kup_types::PodInfo>> = BTreeMap::new();
    for (_, p) in wl.iter() {
        // Mirror pods of static pods (the control plane) are the kubelet's, never drained.
        if p.owner_kind == "Node" {
            continue;
        }
        let owner = if p.owner.is_empty() {
            &p.name
        } else {
            &p.owner
        };
        groups
            .entry((&p.namespace, &p.owner_kind, owner))
            .or_default()
            .push(p);
    }
    let mut names: BTreeMap<(&str, String), u32> = BTreeMap::new();
    let mut out = Vec::with_capacity(groups.len());
    for ((namespace, owner_kind, owner), pods) in groups {
        let first = pods[0];
        let kind = kind(owner_kind);
        // Two owners of one name (a Deployment and a StatefulSet `web`) stay two workloads.
        let seen = names.entry((namespace, owner.to_string())).or_insert(0);
        *seen += 1;
        let name = if *seen == 1 {
            owner.to_string()
        } else {
            format!("{owner}-{}", kind.to_ascii_lowercase())
        };
        let mut labels: BTreeMap<&str, &str> = first
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for p in &pods[1..] {
            labels.retain(|k, v| p.labels.get(*k).map(String::as_str) == Some(*v));
        }
        let mut placement: BTreeMap<&str, u32> = BTreeMap::new();
        for p in &pods {
            if let Some(n) = p.node.as_deref() {
                *placement.entry(n).or_default() += 1;
            }
        }
        let daemon = kind == "DaemonSet";
        out.push(Workload {
            name,
            namespace,
            kind,
            replicas: u32::try_from(pods.len()).unwrap_or(u32::MAX),
            requests: first.requests,
            volumes: &first.volumes,
            // A DaemonSet runs where it runs now; other pods go where the scheduler puts
            // them once drained.
            nodes: if daemon {
                placement.keys().copied().collect()
            } else {
                Vec::new()
            },
            labels,
            node_selector: &first.node_selector,
            tolerations: &first.tolerations,
            placement: if daemon {
                Vec::new()
            } else {
                placement
                    .into_iter()
                    .map(|(node, pods)| Placement { node, pods })
                    .collect()
            },
        });
    }
    out
}
