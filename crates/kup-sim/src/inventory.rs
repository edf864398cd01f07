//! The cluster file (SPEC §2.5): a YAML description of a simulated cluster, parsed with
//! line-numbered errors for anything wrong in it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kup_types::{
    AdminState, Availability, Capacity, KubeVersion, OperState, Personality, Severity, StepKind,
    SystemType, Taint, VersionMeta, VolumeKind, names,
};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// The body of the fuzz target over this file, for `fuzz/` and the test that replays its corpus.
#[doc(hidden)]
pub mod fuzzing;

/// The built-in default: the seed's standard system at v1.16.1.
pub const DEFAULT_CLUSTER: &str = include_str!("../../../examples/standard.yaml");

/// A problem in a cluster file, with the line it is on when known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InventoryError {
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "cluster file, line {l}: {}", self.message),
            None => write!(f, "cluster file: {}", self.message),
        }
    }
}

fn at<T>(s: &Spanned<T>, message: impl Into<String>) -> InventoryError {
    InventoryError {
        line: Some(s.referenced.line()),
        message: message.into(),
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub system_type: SystemType,
    /// Seed of the simulation's random choices (fault probabilities, duration jitter).
    #[serde(default)]
    pub seed: u64,
    /// The version hosts run unless they say otherwise.
    pub kubernetes_version: KubeVersion,
    /// Version of the networking manifests; defaults to `kubernetes_version`.
    #[serde(default)]
    pub networking_version: Option<KubeVersion>,
    /// The versions the platform knows (the version catalog).
    pub versions: Vec<VersionMeta>,
    pub hosts: Vec<HostSpec>,
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    #[serde(default)]
    pub pdbs: Vec<PdbObjectSpec>,
    #[serde(default)]
    pub alarms: Vec<AlarmSpec>,
    #[serde(default)]
    pub applications: Vec<ApplicationSpec>,
    /// Deprecated API versions the cluster's clients still use (what the API server's
    /// `apiserver_requested_deprecated_apis` metric would show).
    #[serde(default)]
    pub api_usage: Vec<kup_types::ApiUsage>,
    /// Seconds each kind of step takes at time scale 1.
    #[serde(default)]
    pub durations: BTreeMap<StepKind, f64>,
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: Spanned<String>,
    pub personality: Personality,
    /// Controllers: the active one (default: the first controller).
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub capacity: Option<Capacity>,
    #[serde(default = "default_disk")]
    pub disk_free_gib: u32,
    #[serde(default = "unlocked")]
    pub administrative: AdminState,
    #[serde(default = "enabled")]
    pub operational: OperState,
    #[serde(default = "available")]
    pub availability: Availability,
    #[serde(default)]
    pub control_plane_version: Option<KubeVersion>,
    #[serde(default)]
    pub kubelet_version: Option<KubeVersion>,
    /// Node labels (`kubernetes.io/hostname` is added).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Taint>,
}

fn default_disk() -> u32 {
    100
}
fn unlocked() -> AdminState {
    AdminState::Unlocked
}
fn enabled() -> OperState {
    OperState::Enabled
}
fn available() -> Availability {
    Availability::Available
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    ReplicaSet,
    DaemonSet,
    Job,
    /// A bare pod with no controller: lost when its host is drained.
    Pod,
}

impl WorkloadKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::Pod => "Pod",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdbSpec {
    #[serde(default)]
    pub min_available: Option<u32>,
    #[serde(default)]
    pub max_unavailable: Option<u32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub name: Spanned<String>,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub kind: WorkloadKind,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default)]
    pub requests: Capacity,
    #[serde(default)]
    pub volumes: Vec<VolumeKind>,
    /// Hosts the pods may run on; default: the workers (the controllers on all-in-one systems).
    #[serde(default)]
    pub nodes: Vec<Spanned<String>>,
    #[serde(default)]
    pub pdb: Option<PdbSpec>,
    /// Pod labels (`app: NAME` is added).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Taint keys the pods tolerate (`*`: all).
    #[serde(default)]
    pub tolerations: Vec<String>,
    /// A Job or a bare Pod that ends this many seconds (at time scale 1) after the cluster
    /// starts: its pods are then gone. Without it, it runs for ever.
    #[serde(default)]
    pub completes_after: Option<Spanned<f64>>,
    /// Where pods run when the cluster starts (a twin of a real cluster says where its pods
    /// are); the other replicas are scheduled as usual.
    #[serde(default)]
    pub placement: Vec<PlacementSpec>,
}

/// `pods` of a workload's replicas start on `node`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementSpec {
    pub node: Spanned<String>,
    pub pods: u32,
}

/// A PodDisruptionBudget of its own, selecting pods by label (a workload's `pdb` selects its
/// own pods).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdbObjectSpec {
    pub name: Spanned<String>,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub min_available: Option<u32>,
    #[serde(default)]
    pub max_unavailable: Option<u32>,
    #[serde(default)]
    pub unhealthy_pod_eviction_policy: Option<String>,
}

fn default_namespace() -> String {
    "default".into()
}
fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmSpec {
    pub id: String,
    pub entity: String,
    pub reason: String,
    pub severity: Severity,
    #[serde(default)]
    pub management_affecting: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSpec {
    pub name: String,
    pub version: String,
    #[serde(default = "applied")]
    pub status: String,
    #[serde(default)]
    pub k8s_min: Option<KubeVersion>,
    #[serde(default)]
    pub k8s_max: Option<KubeVersion>,
}

fn applied() -> String {
    "applied".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultMode {
    /// The first run fails.
    Once,
    /// Every run fails.
    Always,
    /// Each run fails with `probability`.
    Probability,
    /// The first `times` runs fail.
    Times,
    /// Every run hangs: it never ends (until the simulation restarts).
    Hang,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub step: StepKind,
    /// The host the fault applies to; none = every host (or the cluster-wide steps).
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    pub mode: Spanned<FaultMode>,
    #[serde(default)]
    pub probability: Option<Spanned<f64>>,
    /// For mode `times`: how many runs fail.
    #[serde(default)]
    pub times: Option<Spanned<u32>>,
}

/// At most this many pods (Kubernetes supports 150,000): a typo of a replica count must not
/// make the simulator place billions.
pub const MAX_PODS: u64 = 1_000_000;

/// etcd clusters beyond seven members are slower, not safer; nine leaves room for the odd one.
pub const MAX_KUBEADM_CONTROL_PLANES: usize = 9;

impl Inventory {
    /// Free text that reaches terminals and reports (roles, labels, taints, alarms,
    /// applications) holds no control or invisible formatting character: none could forge
    /// a line of a report.
    fn validate_text(&self) -> Result<(), InventoryError> {
        let check = |line: Option<u64>, what: &str, text: &str| match names::text_problem(text) {
            None => Ok(()),
            Some(why) => Err(InventoryError {
                line,
                message: format!("{what} {text:?} is not valid: {why}"),
            }),
        };
        let map = |line, what: &str, m: &BTreeMap<String, String>| {
            m.iter().try_for_each(|(k, v)| {
                check(line, &format!("{what} key"), k)?;
                check(line, &format!("{what} value"), v)
            })
        };
        for h in &self.hosts {
            let line = Some(h.name.referenced.line());
            h.roles.iter().try_for_each(|r| check(line, "role", r))?;
            map(line, "label", &h.labels)?;
            for t in &h.taints {
                check(line, "taint key", &t.key)?;
                check(line, "taint effect", &t.effect)?;
            }
        }
        for w in &self.workloads {
            let line = Some(w.name.referenced.line());
            map(line, "label", &w.labels)?;
            map(line, "node selector", &w.node_selector)?;
            w.tolerations
                .iter()
                .try_for_each(|t| check(line, "toleration", t))?;
        }
        for p in &self.pdbs {
            map(Some(p.name.referenced.line()), "selector", &p.selector)?;
        }
        for a in &self.alarms {
            check(None, "alarm id", &a.id)?;
            check(None, "alarm entity", &a.entity)?;
            check(None, "alarm reason", &a.reason)?;
        }
        for a in &self.applications {
            check(None, "application name", &a.name)?;
            check(None, "application version", &a.version)?;
            check(None, "application status", &a.status)?;
        }
        Ok(())
    }

    /// The pods the file asks for, at most [`MAX_PODS`].
    fn validate_sizes(&self) -> Result<(), InventoryError> {
        let hosts = self.hosts.len() as u64;
        let mut pods: u64 = 0;
        for w in &self.workloads {
            pods += if w.kind == WorkloadKind::DaemonSet {
                hosts
            } else {
                u64::from(w.replicas)
            };
            if pods > MAX_PODS {
                return Err(at(
                    &w.name,
                    format!(
                        "the workloads ask for more than {MAX_PODS} pods (workload {} has {} replicas)",
                        w.name.value, w.replicas
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A workload's or PDB's name (a DNS-1123 subdomain) and namespace (a DNS-1123 label).
fn object_names(name: &Spanned<String>, what: &str, namespace: &str) -> Result<(), InventoryError> {
    if let Some(why) = names::subdomain_problem(&name.value) {
        return Err(at(
            name,
            format!("{what} name {:?} is not valid: {why}", name.value),
        ));
    }
    if let Some(why) = names::label_problem(namespace) {
        return Err(at(
            name,
            format!(
                "namespace {namespace:?} of {what} {} is not valid: {why}",
                name.value
            ),
        ));
    }
    Ok(())
}

/// The parser's limits for a file of `bytes` bytes: every YAML node takes at least two bytes
/// of text, so a file that expands beyond these (aliases replayed over and over: an "alias
/// bomb") is refused, while a genuine file of any size fits.
fn parse_budget(bytes: usize) -> serde_saphyr::Budget {
    let mut b = serde_saphyr::Budget::default();
    b.max_nodes = b.max_nodes.max(bytes / 2);
    b.max_events = b.max_events.max(bytes);
    b.max_aliases = 1_000;
    b.max_total_scalar_bytes = b.max_total_scalar_bytes.max(2 * bytes);
    b
}

/// The error under the snippet and alias wrappers.
fn innermost(e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    match e {
        serde_saphyr::Error::WithSnippet { error, .. }
        | serde_saphyr::Error::AliasError { error, .. } => innermost(error),
        other => other,
    }
}

fn budget_message(
    breach: &serde_saphyr::budget::BudgetBreach,
    b: &serde_saphyr::Budget,
    bytes: usize,
) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let limit = match breach {
        B::Nodes { .. } => format!("{} YAML nodes", b.max_nodes),
        B::Events { .. } => format!("{} YAML events", b.max_events),
        B::Aliases { .. } => format!("{} aliases", b.max_aliases),
        B::ScalarBytes { .. } => format!("{} bytes of values", b.max_total_scalar_bytes),
        B::Depth { .. } => format!("a nesting depth of {}", b.max_depth),
        other => format!("the parser's limits ({other:?})"),
    };
    format!(
        "the file expands beyond {limit}, the limit for a file of {bytes} bytes (an alias counts each time it is used)"
    )
}

/// The longest a step may be said to take (a year): longer is a mistake in the file.
pub const MAX_STEP_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// Realistic step durations, in seconds at time scale 1.
pub fn default_duration(kind: StepKind) -> f64 {
    match kind {
        StepKind::DownloadImages => 240.0,
        StepKind::ControlPlane => 360.0,
        StepKind::Networking => 180.0,
        StepKind::Kubelet => 240.0,
        StepKind::Lock => 45.0,
        StepKind::Unlock => 420.0,
        StepKind::Swact => 60.0,
        // kubectl drain with --timeout=150s, and an uncordon's API call.
        StepKind::Cordon => 90.0,
        StepKind::Uncordon => 5.0,
    }
}

impl Inventory {
    pub fn parse(source: &str) -> Result<Inventory, InventoryError> {
        let budget = parse_budget(source.len());
        let mut options = serde_saphyr::Options::default();
        options.budget = Some(budget.clone());
        let inv: Inventory = serde_saphyr::from_str_with_options(source, options).map_err(|e| {
            if let serde_saphyr::Error::Budget { breach, location } = innermost(&e) {
                return InventoryError {
                    line: Some(location.line()).filter(|l| *l > 0),
                    message: budget_message(breach, &budget, source.len()),
                };
            }
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            let message = first.strip_prefix("error: ").unwrap_or(&first).to_string();
            // The message already names the line; keep it once.
            match e.location() {
                Some(l) => InventoryError {
                    line: Some(l.line()),
                    message: message
                        .strip_prefix(&format!("line {} column {}: ", l.line(), l.column()))
                        .unwrap_or(&message)
                        .to_string(),
                },
                None => InventoryError {
                    line: None,
                    message,
                },
            }
        })?;
        inv.validate()?;
        Ok(inv)
    }

    pub fn default_cluster() -> Inventory {
        Self::parse(DEFAULT_CLUSTER).expect("the built-in cluster file is valid")
    }

    /// The version catalog, with the standard image set for versions that list none.
    pub fn catalog(&self) -> Vec<VersionMeta> {
        self.versions
            .iter()
            .cloned()
            .map(|mut m| {
                if m.images.is_empty() {
                    m.images = VersionMeta::default_images(m.version);
                }
                m
            })
            .collect()
    }

    fn validate(&self) -> Result<(), InventoryError> {
        let whole = |message: String| InventoryError {
            line: None,
            message,
        };
        let mut names = BTreeSet::new();
        for h in &self.hosts {
            if let Some(why) = names::host_name_problem(&h.name.value) {
                return Err(at(
                    &h.name,
                    format!("host name {:?} is not valid: {why}", h.name.value),
                ));
            }
            if !names.insert(h.name.value.as_str()) {
                return Err(at(
                    &h.name,
                    format!("host {} is listed twice", h.name.value),
                ));
            }
            if h.personality == Personality::Storage
                && (h.control_plane_version.is_some() || h.kubelet_version.is_some())
            {
                return Err(at(
                    &h.name,
                    format!(
                        "storage host {} runs no Kubernetes: it takes no control_plane_version or kubelet_version",
                        h.name.value
                    ),
                ));
            }
            if h.personality != Personality::Controller
                && (h.control_plane_version.is_some() || h.active)
            {
                return Err(at(
                    &h.name,
                    format!(
                        "only controllers have a control plane and an active role; {} is a {}",
                        h.name.value, h.personality
                    ),
                ));
            }
        }
        let count = |p| self.hosts.iter().filter(|h| h.personality == p).count();
        let (controllers, workers, storage) = (
            count(Personality::Controller),
            count(Personality::Worker),
            count(Personality::Storage),
        );
        match self.system_type {
            SystemType::AioSimplex if controllers != 1 || workers + storage > 0 => {
                return Err(whole(format!(
                    "an aio-simplex system has exactly one controller and no other hosts (found {controllers} controllers, {workers} workers, {storage} storage hosts)"
                )));
            }
            SystemType::AioDuplex if controllers != 2 || storage > 0 => {
                return Err(whole(format!(
                    "an aio-duplex system has exactly two controllers and no storage hosts (found {controllers} controllers, {storage} storage hosts)"
                )));
            }
            SystemType::Standard if !(1..=2).contains(&controllers) => {
                return Err(whole(format!(
                    "a standard system has one or two controllers (found {controllers}); a \
                     cluster with more control-plane nodes is system_type: kubeadm"
                )));
            }
            SystemType::Kubeadm if !(1..=MAX_KUBEADM_CONTROL_PLANES).contains(&controllers) => {
                return Err(whole(format!(
                    "a kubeadm cluster has 1 to {MAX_KUBEADM_CONTROL_PLANES} control-plane \
                     nodes (found {controllers})"
                )));
            }
            SystemType::Kubeadm if storage > 0 => {
                return Err(whole(format!(
                    "a kubeadm cluster has no storage hosts (found {storage})"
                )));
            }
            _ => {}
        }
        let actives: Vec<&HostSpec> = self.hosts.iter().filter(|h| h.active).collect();
        if let Some(a) = actives.first()
            && !self.system_type.has_active_controller()
        {
            return Err(at(
                &a.name,
                "a kubeadm cluster has no active controller: every control-plane node serves",
            ));
        }
        if actives.len() > 1 {
            return Err(at(
                &actives[1].name,
                "more than one controller is marked active",
            ));
        }
        let mut versions = BTreeSet::new();
        for v in &self.versions {
            if !versions.insert(v.version) {
                return Err(whole(format!("version {} is listed twice", v.version)));
            }
        }
        if !versions.contains(&self.kubernetes_version) {
            return Err(whole(format!(
                "kubernetes_version {} is not in the versions list",
                self.kubernetes_version
            )));
        }
        let kubelet_hosts: BTreeSet<&str> = self
            .hosts
            .iter()
            .filter(|h| h.personality.has_kubelet())
            .map(|h| h.name.value.as_str())
            .collect();
        let mut workload_names = BTreeSet::new();
        for w in &self.workloads {
            object_names(&w.name, "workload", &w.namespace)?;
            if !workload_names.insert((w.namespace.as_str(), w.name.value.as_str())) {
                return Err(at(
                    &w.name,
                    format!("workload {}/{} is listed twice", w.namespace, w.name.value),
                ));
            }
            for n in &w.nodes {
                if !kubelet_hosts.contains(n.value.as_str()) {
                    return Err(at(
                        n,
                        format!(
                            "workload {} names {}, which is not a host with a kubelet",
                            w.name.value, n.value
                        ),
                    ));
                }
            }
            let mut placed: u64 = 0;
            for p in &w.placement {
                if w.kind == WorkloadKind::DaemonSet {
                    return Err(at(
                        &p.node,
                        "a DaemonSet's pods run on every host it fits: it takes no placement",
                    ));
                }
                if !kubelet_hosts.contains(p.node.value.as_str()) {
                    return Err(at(
                        &p.node,
                        format!(
                            "workload {} places pods on {}, which is not a host with a kubelet",
                            w.name.value, p.node.value
                        ),
                    ));
                }
                placed += u64::from(p.pods);
            }
            if placed > u64::from(w.replicas) {
                return Err(at(
                    &w.name,
                    format!(
                        "workload {} places {placed} pods but has {} replicas",
                        w.name.value, w.replicas
                    ),
                ));
            }
            if let Some(c) = &w.completes_after {
                if !matches!(w.kind, WorkloadKind::Job | WorkloadKind::Pod) {
                    return Err(at(c, "completes_after is only for a Job or a Pod"));
                }
                if !c.value.is_finite() || !(0.0..=MAX_STEP_SECONDS).contains(&c.value) {
                    return Err(at(
                        c,
                        format!(
                            "completes_after must be from 0 to {MAX_STEP_SECONDS} seconds (a year), not {:?}",
                            c.value
                        ),
                    ));
                }
            }
            if let Some(p) = &w.pdb
                && p.min_available.is_some() == p.max_unavailable.is_some()
            {
                return Err(at(
                    &w.name,
                    format!(
                        "the pdb of workload {} needs exactly one of min_available and max_unavailable",
                        w.name.value
                    ),
                ));
            }
        }
        for p in &self.pdbs {
            object_names(&p.name, "pdb", &p.namespace)?;
            if p.min_available.is_some() == p.max_unavailable.is_some() {
                return Err(at(
                    &p.name,
                    format!(
                        "pdb {} needs exactly one of min_available and max_unavailable",
                        p.name.value
                    ),
                ));
            }
            if p.selector.is_empty() {
                return Err(at(
                    &p.name,
                    format!("pdb {} needs a selector", p.name.value),
                ));
            }
        }
        self.validate_text()?;
        self.validate_sizes()?;
        for (kind, secs) in &self.durations {
            if !secs.is_finite() || !(0.0..=MAX_STEP_SECONDS).contains(secs) {
                return Err(whole(format!(
                    "duration of {kind} must be from 0 to {MAX_STEP_SECONDS} seconds (a year), not {secs:?}"
                )));
            }
        }
        for f in &self.faults {
            if let Some(h) = &f.host
                && !names.contains(h.value.as_str())
            {
                return Err(at(h, format!("fault names unknown host {}", h.value)));
            }
            match (f.mode.value, &f.probability) {
                (FaultMode::Probability, None) => {
                    return Err(at(
                        &f.mode,
                        "a fault with mode probability needs a probability",
                    ));
                }
                (FaultMode::Probability, Some(p)) if !(0.0..=1.0).contains(&p.value) => {
                    return Err(at(p, "probability must be between 0 and 1"));
                }
                (_, Some(p)) if f.mode.value != FaultMode::Probability => {
                    return Err(at(p, "probability is only for mode probability"));
                }
                _ => {}
            }
            match (f.mode.value, &f.times) {
                (FaultMode::Times, None) => {
                    return Err(at(&f.mode, "a fault with mode times needs times"));
                }
                (FaultMode::Times, Some(_)) => {}
                (_, Some(t)) => return Err(at(t, "times is only for mode times")),
                (_, None) => {}
            }
        }
        Ok(())
    }
}
