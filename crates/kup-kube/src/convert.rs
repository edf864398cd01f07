//! Kubernetes objects as kup sees them: nodes, pods, control-plane pods, budgets and
//! controllers turned into `kup_types` values. Pure functions, tested on objects built in
//! memory; the watchers (`cache.rs`) call them on every change.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kup_types::{
    ApiUsage, Capacity, ControlPlanePod, KubeVersion, NodeInfo, PdbInfo, PodInfo, PodPhase, Taint,
    VolumeKind, WorkloadInfo,
};
use serde::Deserialize;

use crate::drain::MIRROR_ANNOTATION;

/// Set on a Node when kup made it unschedulable, so kup makes schedulable again only what it
/// cordoned, never a cordon of a person's.
pub const CORDONED_BY_KUP: &str = "kup.io/cordoned-by-kup";
/// Set on a Node once kup's lock drained it: the host is locked (administratively down)
/// until kup's unlock.
pub const LOCKED_BY_KUP: &str = "kup.io/locked";

/// What kup reads of a Node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub info: NodeInfo,
    pub uid: String,
    /// Allocatable (capacity when the node reports none): what the scheduler places against.
    pub capacity: Capacity,
    pub disk_free_gib: u32,
    pub cordoned_by_kup: bool,
    pub locked_by_kup: bool,
    /// The control plane's images the node holds (sorted).
    pub images: Vec<String>,
}

/// A version as Kubernetes reports it (`v1.20.2`, `v1.20.2-dirty`, `v1.28.3+k3s1`): the
/// release, whatever build suffix follows.
pub fn lenient_version(s: &str) -> Option<KubeVersion> {
    let end = s.find(['-', '+']).unwrap_or(s.len());
    KubeVersion::parse(&s[..end]).ok()
}

/// The version in a control-plane image's tag (`registry.k8s.io/kube-apiserver:v1.20.2`,
/// a registry with a port, a digest after the tag).
pub fn image_version(image: &str) -> Option<KubeVersion> {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    let (_, tag) = last.split_once(':')?;
    lenient_version(tag)
}

/// A quantity (`500m`, `2`, `8Gi`, `1e3`, `129Mi`) as a number of base units.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some(n * factor)
}

fn saturate(x: f64) -> u32 {
    if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x.max(0.0) as u32
    }
}

/// Millicores, rounded up as Kubernetes does (`0.1m` is `1m`), but not pushed up by a
/// floating-point residue (`3800m` is 3800).
fn cpu_millis(q: &str) -> u32 {
    quantity(q).map_or(0, |v| {
        let m = v * 1000.0;
        let r = m.round();
        saturate(if (m - r).abs() < 1e-6 { r } else { m.ceil() })
    })
}

fn mebibytes(q: &str) -> u32 {
    quantity(q).map_or(0, |v| saturate(v / (1024.0 * 1024.0)))
}

type Quantities = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;

fn capacity_of(list: Option<&Quantities>) -> Capacity {
    let get = |k: &str| list.and_then(|l| l.get(k)).map(|q| q.0.as_str());
    Capacity {
        cpu_millis: get("cpu").map_or(0, cpu_millis),
        memory_mib: get("memory").map_or(0, mebibytes),
    }
}

fn condition_true<'a>(mut conds: impl Iterator<Item = (&'a str, &'a str)>, kind: &str) -> bool {
    conds.any(|(t, s)| t == kind && s == "True")
}

/// A Node as kup reads it; `None` when it reports no kubelet version kup can read (it
/// cannot be placed in an upgrade).
pub fn node_facts(node: &Node) -> Option<NodeFacts> {
    let name = node.metadata.name.clone()?;
    let status = node.status.as_ref();
    let kubelet = status
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.as_str())?;
    let kubelet_version = lenient_version(kubelet)?;
    let ready = condition_true(
        status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str())),
        "Ready",
    );
    let spec = node.spec.as_ref();
    let taints = spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| Taint {
            key: t.key.clone(),
            effect: t.effect.clone(),
        })
        .collect();
    let alloc = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
    let annotations = node.metadata.annotations.as_ref();
    let flag = |k: &str| annotations.is_some_and(|a| a.get(k).is_some_and(|v| v == "true"));
    Some(NodeFacts {
        info: NodeInfo {
            name,
            ready,
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            kubelet_version,
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints,
        },
        uid: node.metadata.uid.clone().unwrap_or_default(),
        capacity: capacity_of(alloc),
        disk_free_gib: alloc
            .and_then(|a| a.get("ephemeral-storage"))
            .and_then(|q| quantity(&q.0))
            .map_or(0, |b| saturate(b / 1024f64.powi(3))),
        cordoned_by_kup: flag(CORDONED_BY_KUP),
        locked_by_kup: flag(LOCKED_BY_KUP),
        images: control_plane_images(node),
    })
}

fn pod_ready(pod: &Pod) -> bool {
    condition_true(
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str())),
        "Ready",
    )
}

/// The kubeadm control-plane components kup follows.
pub const CONTROL_PLANE_COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// A control-plane static pod (kube-system, `tier=control-plane`, `component=...`), with the
/// version of its image's tag.
pub fn control_plane_pod(pod: &Pod) -> Option<ControlPlanePod> {
    if pod.metadata.namespace.as_deref() != Some("kube-system") {
        return None;
    }
    let labels = pod.metadata.labels.as_ref()?;
    if labels.get("tier").map(String::as_str) != Some("control-plane") {
        return None;
    }
    let component = labels.get("component")?;
    if !CONTROL_PLANE_COMPONENTS.contains(&component.as_str()) {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let image = spec
        .containers
        .iter()
        .find(|c| c.name == *component)
        .or(spec.containers.first())?
        .image
        .as_deref()?;
    Some(ControlPlanePod {
        host: spec.node_name.clone()?,
        component: component.clone(),
        version: image_version(image)?,
        ready: pod_ready(pod),
    })
}

/// A pod's controller as written (kind, name), if it has one.
pub fn controller_ref(pod: &Pod) -> Option<(String, String)> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone()))
}

/// A pod as the safety analysis reads it. `owner` is its owner as kup counts it (kind,
/// name): a ReplicaSet resolved to its Deployment by the caller, which knows the ReplicaSets;
/// `Node` for a mirror pod, `Pod` (its own name) for an unmanaged one.
pub fn pod_info(pod: &Pod, owner: (String, String)) -> PodInfo {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") => PodPhase::Pending,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        Some("Unknown") => PodPhase::Unknown,
        _ => PodPhase::Running,
    };
    let volumes = spec
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if v.empty_dir.is_some() {
                Some(VolumeKind::EmptyDir)
            } else if v.host_path.is_some() {
                Some(VolumeKind::HostPath)
            } else if v.persistent_volume_claim.is_some() {
                // Network storage until the cache finds the claim bound to a volume that
                // stays on one host (`pod_claims`, the PersistentVolumes).
                Some(VolumeKind::Pvc)
            } else {
                None
            }
        })
        .collect();
    // As the scheduler counts a pod: its containers together, or its largest init
    // container if that asks for more.
    let mut requests = Capacity::default();
    if let Some(s) = spec {
        for c in &s.containers {
            let r = capacity_of(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
            requests.cpu_millis = requests.cpu_millis.saturating_add(r.cpu_millis);
            requests.memory_mib = requests.memory_mib.saturating_add(r.memory_mib);
        }
        for c in s.init_containers.iter().flatten() {
            let r = capacity_of(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
            requests.cpu_millis = requests.cpu_millis.max(r.cpu_millis);
            requests.memory_mib = requests.memory_mib.max(r.memory_mib);
        }
    }
    let tolerations = spec
        .and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .map(|t| match t.key.as_deref() {
            // An empty key with `Exists` tolerates every taint.
            None | Some("") => "*".to_string(),
            Some(k) => k.to_string(),
        })
        .collect();
    PodInfo {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        ready: pod_ready(pod),
        phase,
        owner_kind: owner.0,
        owner: owner.1,
        labels: Arc::new(pod.metadata.labels.clone().unwrap_or_default()),
        volumes,
        requests,
        node_selector: spec
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default(),
        tolerations,
    }
}

/// The owner a pod counts under, given its controller as written and, for a ReplicaSet,
/// the Deployment that owns it (if known).
pub fn owner_of(
    pod: &Pod,
    controller: Option<&(String, String)>,
    deployment: Option<&str>,
) -> (String, String) {
    let mirrored = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    match controller {
        _ if mirrored => (
            "Node".into(),
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
        ),
        Some((kind, name)) if kind == "ReplicaSet" => match deployment {
            Some(d) => ("Deployment".into(), d.to_string()),
            None => (kind.clone(), name.clone()),
        },
        Some((kind, name)) => (kind.clone(), name.clone()),
        None => ("Pod".into(), pod.metadata.name.clone().unwrap_or_default()),
    }
}

/// The Deployment owning a ReplicaSet, if any.
pub fn replica_set_owner(rs: &ReplicaSet) -> Option<String> {
    rs.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Deployment")
        .map(|o| o.name.clone())
}

fn clamp(n: Option<i32>) -> u32 {
    n.map_or(0, |n| u32::try_from(n).unwrap_or(0))
}

fn workload(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: &str,
    replicas: u32,
    ready: u32,
) -> WorkloadInfo {
    WorkloadInfo {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        kind: kind.into(),
        replicas,
        ready_replicas: ready,
    }
}

pub fn deployment_info(d: &Deployment) -> WorkloadInfo {
    let replicas = d
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .map_or(1, |r| clamp(Some(r)));
    let ready = clamp(d.status.as_ref().and_then(|s| s.ready_replicas));
    workload(&d.metadata, "Deployment", replicas, ready)
}

pub fn stateful_set_info(s: &StatefulSet) -> WorkloadInfo {
    let replicas = s
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .map_or(1, |r| clamp(Some(r)));
    let ready = clamp(s.status.as_ref().and_then(|s| s.ready_replicas));
    workload(&s.metadata, "StatefulSet", replicas, ready)
}

/// A ReplicaSet of its own; one a Deployment owns is counted under the Deployment.
pub fn replica_set_info(rs: &ReplicaSet) -> Option<WorkloadInfo> {
    if replica_set_owner(rs).is_some() {
        return None;
    }
    let replicas = rs
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .map_or(1, |r| clamp(Some(r)));
    let ready = clamp(rs.status.as_ref().and_then(|s| s.ready_replicas));
    Some(workload(&rs.metadata, "ReplicaSet", replicas, ready))
}

pub fn daemon_set_info(ds: &DaemonSet) -> WorkloadInfo {
    let s = ds.status.as_ref();
    let replicas = s.map_or(0, |s| clamp(Some(s.desired_number_scheduled)));
    let ready = s.map_or(0, |s| clamp(Some(s.number_ready)));
    workload(&ds.metadata, "DaemonSet", replicas, ready)
}

pub fn job_info(j: &Job) -> WorkloadInfo {
    let replicas = j
        .spec
        .as_ref()
        .and_then(|s| s.parallelism)
        .map_or(1, |r| clamp(Some(r)));
    let ready = clamp(j.status.as_ref().and_then(|s| s.active));
    workload(&j.metadata, "Job", replicas, ready)
}

/// A PodDisruptionBudget as JSON (`policy/v1` or `policy/v1beta1`; k8s-openapi 0.29 has no
/// type for the second, and both have this shape).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PdbJson {
    #[serde(default)]
    spec: PdbSpecJson,
    #[serde(default)]
    status: PdbStatusJson,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PdbSpecJson {
    selector: Option<SelectorJson>,
    min_available: Option<serde_json::Value>,
    max_unavailable: Option<serde_json::Value>,
    unhealthy_pod_eviction_policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelectorJson {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PdbStatusJson {
    #[serde(default)]
    desired_healthy: i32,
}

/// A PodDisruptionBudget's spec from its JSON (`namespace`, `name` from its metadata, `body`
/// the whole object). `None` when it selects no pod: in `policy/v1beta1` an empty or absent
/// selector selects nothing (in `policy/v1`, every pod of the namespace).
pub fn pdb_info(
    namespace: &str,
    name: &str,
    body: &serde_json::Value,
    v1beta1: bool,
) -> Option<PdbInfo> {
    let pdb: PdbJson = serde_json::from_value(body.clone()).ok()?;
    let sel = pdb.spec.selector.unwrap_or_default();
    if v1beta1 && sel.match_labels.is_empty() && sel.match_expressions.is_empty() {
        return None;
    }
    // kup's budgets select by labels only; a matchExpressions term is left out, so the
    // budget is taken to select more pods than it does (the cautious side).
    let int = |v: &Option<serde_json::Value>| -> Result<Option<u32>, ()> {
        match v {
            None => Ok(None),
            Some(serde_json::Value::Number(n)) => {
                Ok(n.as_u64().map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
            }
            Some(serde_json::Value::String(s)) => s.parse::<u32>().map(Some).map_err(|_| ()),
            Some(_) => Err(()),
        }
    };
    let (min_available, max_unavailable) =
        match (int(&pdb.spec.min_available), int(&pdb.spec.max_unavailable)) {
            (Ok(min), Ok(max)) => (min, max),
            // A percentage: the disruption controller has resolved it against the pods it
            // expects; its `desiredHealthy` is the number to keep.
            _ => (Some(clamp(Some(pdb.status.desired_healthy))), None),
        };
    Some(PdbInfo {
        namespace: namespace.into(),
        name: name.into(),
        selector: sel.match_labels,
        min_available,
        max_unavailable,
        unhealthy_pod_eviction_policy: pdb.spec.unhealthy_pod_eviction_policy,
    })
}

/// The claims of a pod's PersistentVolumeClaim volumes, in the order of its volumes.
pub fn pod_claims(p: &Pod) -> Vec<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter(|v| v.empty_dir.is_none() && v.host_path.is_none())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

/// A claim's key and the PersistentVolume it is bound to.
pub fn claim_binding(c: &PersistentVolumeClaim) -> ((String, String), Option<String>) {
    (
        (
            c.metadata.namespace.clone().unwrap_or_default(),
            c.metadata.name.clone().unwrap_or_default(),
        ),
        c.spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty()),
    )
}

/// Whether a PersistentVolume keeps its data on one host: a local or hostPath volume, or
/// one that node affinity ties to nodes (how local provisioners mark theirs).
pub fn volume_locality(v: &PersistentVolume) -> (String, bool) {
    let spec = v.spec.as_ref();
    let local = spec
        .is_some_and(|s| s.local.is_some() || s.host_path.is_some() || s.node_affinity.is_some());
    (v.metadata.name.clone().unwrap_or_default(), local)
}

/// The annotation `kubectl apply` leaves with the manifest it applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The API version an object was last applied with, when it is a pre-release one (alpha or
/// beta: the only ones Kubernetes removes): a client that still applies that manifest breaks
/// once a release removes the version, though the object itself is stored and served in the
/// version in use.
pub fn applied_api(meta: &ObjectMeta) -> Option<ApiUsage> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        api_version: String,
        kind: String,
    }
    let text = meta.annotations.as_ref()?.get(LAST_APPLIED)?;
    let head: Head = serde_json::from_str(text).ok()?;
    let (group, version) = head
        .api_version
        .split_once('/')
        .unwrap_or(("", head.api_version.as_str()));
    if !(version.contains("alpha") || version.contains("beta")) {
        return None;
    }
    Some(ApiUsage {
        group: group.to_string(),
        version: version.to_string(),
        resource: plural(&head.kind),
        removed_release: None,
        seen_in: format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        ),
    })
}

/// A kind's resource name, as the API names it (`Ingress` → `ingresses`,
/// `NetworkPolicy` → `networkpolicies`).
fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

/// The ConfigMap (in kube-system) where kup records the version it last brought the
/// cluster's networking to: kubeadm moves its add-ons with each `upgrade apply`, so only kup
/// knows that a multi-minor upgrade's networking step (a patch's CNI manifests) is done.
pub const KUP_NETWORKING: &str = "kup-networking";

pub fn kup_networking(cm: &ConfigMap) -> Option<KubeVersion> {
    lenient_version(cm.data.as_ref()?.get("version")?)
}

/// What kup reads of the `kubeadm-config` ConfigMap's `ClusterConfiguration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeadmConfig {
    pub version: KubeVersion,
    /// Where kubeadm takes the control plane's images from, when it is set.
    pub image_repository: Option<String>,
}

pub fn kubeadm_config(cm: &ConfigMap) -> Option<KubeadmConfig> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ClusterConfiguration {
        kubernetes_version: String,
        #[serde(default)]
        image_repository: Option<String>,
    }
    let text = cm.data.as_ref()?.get("ClusterConfiguration")?;
    let cc: ClusterConfiguration = serde_saphyr::from_str(text).ok()?;
    Some(KubeadmConfig {
        version: lenient_version(&cc.kubernetes_version)?,
        image_repository: cc
            .image_repository
            .map(|r| r.trim_end_matches('/').to_string())
            .filter(|r| !r.is_empty()),
    })
}

/// The images `kubeadm config images pull` brings for `version`, from `repository` (kubeadm's
/// default, registry.k8s.io, when kubeadm-config sets none; see [`same_image`]).
pub fn kubeadm_images(version: KubeVersion, repository: Option<&str>) -> Vec<String> {
    let repo = repository.unwrap_or(DEFAULT_REPOSITORY);
    [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ]
    .iter()
    .map(|c| format!("{repo}/{c}:{version}"))
    .collect()
}

/// kubeadm's default image repository (since 1.25; it serves the older releases too).
pub const DEFAULT_REPOSITORY: &str = "registry.k8s.io";

/// An image name as kup compares it: k8s.gcr.io, kubeadm's default before 1.25, serves the
/// same images as registry.k8s.io, its successor, and is named as that.
pub fn same_image(name: &str) -> String {
    match name.strip_prefix("k8s.gcr.io/") {
        Some(rest) => format!("{DEFAULT_REPOSITORY}/{rest}"),
        None => name.to_string(),
    }
}

/// The control plane's images (kubeadm's: the components, etcd, CoreDNS, pause) among the
/// images a node reports, by tag (digests are left out): the others are not kup's concern.
fn control_plane_images(node: &Node) -> Vec<String> {
    const KUBEADMS: &[&str] = &[
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "etcd",
        "coredns",
        "pause",
    ];
    let mut out: Vec<String> = node
        .status
        .as_ref()
        .and_then(|s| s.images.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|i| i.names.iter().flatten())
        .filter(|n| !n.contains('@'))
        .filter(|n| {
            let base = n.rsplit('/').next().unwrap_or(n);
            KUBEADMS.contains(&base.split(':').next().unwrap_or(base))
        })
        .map(|n| same_image(n))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_control_plane_images_are_its_kubeadm_tags_under_one_registry_name() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cp-0"},
            "status": {"images": [
                {"names": ["k8s.gcr.io/kube-apiserver@sha256:00", "k8s.gcr.io/kube-apiserver:v1.21.0"]},
                {"names": ["registry.local:5000/k8s/etcd:3.4.13-0"]},
                {"names": ["docker.io/library/nginx:1.25"]},
                {"names": ["registry.k8s.io/kube-apiserver:v1.21.0"]},
            ]},
        }))
        .unwrap();
        assert_eq!(
            control_plane_images(&node),
            [
                "registry.k8s.io/kube-apiserver:v1.21.0",
                "registry.local:5000/k8s/etcd:3.4.13-0"
            ]
        );
        assert_eq!(
            kubeadm_images(KubeVersion::new(1, 21, 0), Some("registry.local:5000/k8s"))[0],
            "registry.local:5000/k8s/kube-apiserver:v1.21.0"
        );
    }

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        let cases = [
            ("3800m", Some(3800), Some(0)),
            ("4", Some(4000), Some(0)),
            ("0.5", Some(500), Some(0)),
            ("1.5m", Some(2), Some(0)),
            ("1e3", Some(1_000_000), Some(0)),
            ("8Gi", None, Some(8192)),
            ("129Mi", None, Some(129)),
            ("8388608Ki", None, Some(8192)),
            ("1G", None, Some(953)),
            ("bogus", Some(0), Some(0)),
            ("-1", Some(0), Some(0)),
        ];
        for (q, cpu, mem) in cases {
            if let Some(c) = cpu {
                assert_eq!(cpu_millis(q), c, "cpu {q}");
            }
            if let Some(m) = mem.filter(|_| cpu.is_none()) {
                assert_eq!(mebibytes(q), m, "memory {q}");
            }
        }
    }

    #[test]
    fn versions_are_read_from_tags_and_builds() {
        let v = |s: &str| Some(KubeVersion::parse(s).unwrap());
        assert_eq!(lenient_version("v1.20.2"), v("v1.20.2"));
        assert_eq!(lenient_version("v1.28.3+k3s1"), v("v1.28.3"));
        assert_eq!(lenient_version("v1.20.2-dirty"), v("v1.20.2"));
        assert_eq!(lenient_version("latest"), None);
        assert_eq!(
            image_version("k8s.gcr.io/kube-apiserver:v1.20.2"),
            v("v1.20.2")
        );
        assert_eq!(
            image_version("reg:5000/kube-scheduler:v1.21.0@sha256:ab"),
            v("v1.21.0")
        );
        assert_eq!(image_version("reg:5000/kube-scheduler"), None);
        assert_eq!(image_version("kube-scheduler@sha256:ab"), None);
    }

    #[test]
    fn budgets_read_both_policy_versions() {
        let body = |spec: serde_json::Value| serde_json::json!({"spec": spec, "status": {"desiredHealthy": 3}});
        let sel = serde_json::json!({"matchLabels": {"app": "a"}});
        let p = pdb_info(
            "ns",
            "p",
            &body(serde_json::json!({"selector": sel, "minAvailable": 2})),
            true,
        )
        .unwrap();
        assert_eq!((p.min_available, p.max_unavailable), (Some(2), None));
        let p = pdb_info(
            "ns",
            "p",
            &body(serde_json::json!({"selector": sel, "maxUnavailable": "50%"})),
            false,
        )
        .unwrap();
        assert_eq!(
            (p.min_available, p.max_unavailable),
            (Some(3), None),
            "a percentage as resolved"
        );
        assert!(
            pdb_info(
                "ns",
                "p",
                &body(serde_json::json!({"minAvailable": 1})),
                true
            )
            .is_none(),
            "v1beta1: no selector, no pods"
        );
        let all = pdb_info(
            "ns",
            "p",
            &body(serde_json::json!({"minAvailable": 1})),
            false,
        )
        .unwrap();
        assert!(all.selector.is_empty(), "v1: every pod of the namespace");
    }
}

/// The deprecated APIs clients requested since the API server started, from its Prometheus
/// text (`apiserver_requested_deprecated_apis{group=..,version=..,resource=..,
/// removed_release=..} 1`). Only the server sees what clients request: a stored object is
/// converted to whatever version is asked for, so listing objects cannot tell.
pub fn deprecated_api_usage(metrics: &str) -> Vec<kup_types::ApiUsage> {
    let mut out: Vec<kup_types::ApiUsage> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("apiserver_requested_deprecated_apis{"))
        .filter_map(|l| {
            let (labels, value) = l.split_once('}')?;
            // A series at 0 is a request the server no longer counts.
            if value.trim().parse::<f64>().ok()? <= 0.0 {
                return None;
            }
            let label = |name: &str| {
                labels.split(',').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
                })
            };
            Some(kup_types::ApiUsage {
                group: label("group").unwrap_or_default(),
                version: label("version")?,
                resource: label("resource")?,
                removed_release: label("removed_release").filter(|r| !r.is_empty()),
                seen_in: "API server".into(),
            })
        })
        .collect();
    // One per API: the same resource's subresources are one use.
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod metric_tests {
    use super::*;

    #[test]
    fn the_deprecated_api_metric_is_read() {
        let text = "# HELP apiserver_requested_deprecated_apis [ALPHA] Gauge of deprecated APIs that have been requested, broken out by API group, version, resource, subresource, and removed_release.\n\
# TYPE apiserver_requested_deprecated_apis gauge\n\
apiserver_requested_deprecated_apis{group=\"extensions\",removed_release=\"1.22\",resource=\"ingresses\",subresource=\"\",version=\"v1beta1\"} 1\n\
apiserver_requested_deprecated_apis{group=\"extensions\",removed_release=\"1.22\",resource=\"ingresses\",subresource=\"status\",version=\"v1beta1\"} 1\n\
apiserver_requested_deprecated_apis{group=\"batch\",removed_release=\"\",resource=\"cronjobs\",subresource=\"\",version=\"v1beta1\"} 1\n\
apiserver_requested_deprecated_apis{group=\"policy\",removed_release=\"1.25\",resource=\"poddisruptionbudgets\",subresource=\"\",version=\"v1beta1\"} 0\n\
apiserver_request_total{code=\"200\"} 7\n";
        let got = deprecated_api_usage(text);
        let said: Vec<String> = got
            .iter()
            .map(|u| {
                format!(
                    "{} {} {:?}",
                    u.group_version(),
                    u.resource,
                    u.removed_release
                )
            })
            .collect();
        assert_eq!(
            said,
            [
                "batch/v1beta1 cronjobs None",
                "extensions/v1beta1 ingresses Some(\"1.22\")"
            ]
        );
    }
}
