//! Which pods a drain evicts, skips or refuses: `kubectl drain`'s filters
//! (`k8s.io/kubectl/pkg/drain/filters.go`), in its order, as a pure function. No I/O: what
//! kubectl asks the API server while filtering (does a pod's DaemonSet still exist?) is an
//! input.
//!
//! It reads Kubernetes `Pod` objects rather than kup's `PodInfo`: the filters need what
//! `PodInfo` leaves out (the controller reference as written — a ReplicaSet, not its
//! Deployment —, the deletion timestamp, the uid the wait for deletion compares), and the
//! drain classifies the pods it has just listed from the server, as kubectl does, not the
//! cache the safety analysis read.

use k8s_openapi::api::core::v1::Pod;

/// The annotation of a static pod's mirror on the API server.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The drain's options. `--ignore-daemonsets` is always on: kup never evicts a DaemonSet's
/// pod, and a DaemonSet is not a reason to refuse a host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainOptions {
    /// `--force`: evict pods no controller recreates (and orphaned DaemonSet pods).
    pub force: bool,
    /// `--delete-emptydir-data`: evict pods with emptyDir volumes, whose data is lost.
    pub delete_emptydir_data: bool,
    /// `--skip-wait-for-delete-timeout`: a pod deleted longer ago than this many seconds is
    /// ignored; 0 (kubectl's default) ignores none.
    pub skip_wait_for_delete_timeout_secs: u64,
}

/// What kubectl learns by asking for a DaemonSet-owned pod's DaemonSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonSetLookup {
    Exists,
    NotFound,
    /// The lookup failed otherwise (the error's text).
    Failed(String),
}

/// A pod by namespace and name, with the uid the wait for its deletion compares.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a pod is evicted (kubectl prints a warning for all but `Managed` and `Finished`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictReason {
    /// Owned by a controller that recreates it.
    Managed,
    /// Succeeded or failed: always deletable.
    Finished,
    /// No controller: gone for good (`--force`).
    Unmanaged,
    /// Its DaemonSet no longer exists (`--force`).
    OrphanedDaemonSet,
    /// Has emptyDir data that is lost (`--delete-emptydir-data`).
    EmptyDir,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Deleted longer ago than `--skip-wait-for-delete-timeout`.
    Deleted,
    DaemonSet,
    /// A static pod's mirror: the kubelet runs it whatever the API says.
    Mirror,
}

/// What a drain would do on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainPlan {
    pub evict: Vec<(PodRef, EvictReason)>,
    pub skip: Vec<(PodRef, SkipReason)>,
    /// Pods that stop the whole drain before anything is evicted, with kubectl's reason.
    pub refuse: Vec<(PodRef, String)>,
}

impl DrainPlan {
    /// The drain's refusal as one line, as kubectl groups it: each reason with its pods.
    pub fn refusal(&self) -> Option<String> {
        if self.refuse.is_empty() {
            return None;
        }
        let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
        for (pod, why) in &self.refuse {
            match groups.iter_mut().find(|(w, _)| *w == why.as_str()) {
                Some((_, pods)) => pods.push(pod.to_string()),
                None => groups.push((why, vec![pod.to_string()])),
            }
        }
        Some(
            groups
                .iter()
                .map(|(why, pods)| format!("{why}: {}", pods.join(", ")))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

/// kubectl's words for its refusals.
pub const UNMANAGED_FATAL: &str = "cannot delete Pods not managed by ReplicationController, ReplicaSet, Job, DaemonSet or StatefulSet (use --force to override)";
pub const EMPTYDIR_FATAL: &str =
    "cannot delete Pods with local storage (use --delete-emptydir-data to override)";

/// One filter's verdict (kubectl's `PodDeleteStatus`).
enum Verdict {
    Okay,
    Evict(EvictReason),
    Skip(SkipReason),
    Refuse(String),
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The owner reference with `controller: true`, as `metav1.GetControllerOf`.
fn controller_of(
    pod: &Pod,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

fn skip_deleted(pod: &Pod, o: &DrainOptions, now_secs: i64) -> Verdict {
    let Some(ts) = pod.metadata.deletion_timestamp.as_ref() else {
        return Verdict::Okay;
    };
    let since = now_secs.saturating_sub(ts.0.as_second());
    if o.skip_wait_for_delete_timeout_secs > 0
        && since > i64::try_from(o.skip_wait_for_delete_timeout_secs).unwrap_or(i64::MAX)
    {
        Verdict::Skip(SkipReason::Deleted)
    } else {
        Verdict::Okay
    }
}

fn daemon_set(
    pod: &Pod,
    o: &DrainOptions,
    lookup: &dyn Fn(&str, &str) -> DaemonSetLookup,
) -> Verdict {
    let Some(c) = controller_of(pod).filter(|c| c.kind == "DaemonSet") else {
        return Verdict::Okay;
    };
    if finished(pod) {
        return Verdict::Okay;
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    match lookup(ns, &c.name) {
        // --ignore-daemonsets: left where it is.
        DaemonSetLookup::Exists => Verdict::Skip(SkipReason::DaemonSet),
        DaemonSetLookup::NotFound if o.force => Verdict::Evict(EvictReason::OrphanedDaemonSet),
        DaemonSetLookup::NotFound => Verdict::Refuse(format!(
            "daemonsets.apps \"{}\" not found (use --force to delete its orphaned pod)",
            c.name
        )),
        DaemonSetLookup::Failed(e) => Verdict::Refuse(e),
    }
}

fn mirror(pod: &Pod) -> Verdict {
    let mirrored = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    if mirrored {
        Verdict::Skip(SkipReason::Mirror)
    } else {
        Verdict::Okay
    }
}

fn local_storage(pod: &Pod, o: &DrainOptions) -> Verdict {
    // Only emptyDir counts: kubectl ignores hostPath.
    let empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some()));
    if !empty_dir || finished(pod) {
        Verdict::Okay
    } else if o.delete_emptydir_data {
        Verdict::Evict(EvictReason::EmptyDir)
    } else {
        Verdict::Refuse(EMPTYDIR_FATAL.into())
    }
}

fn unreplicated(pod: &Pod, o: &DrainOptions) -> Verdict {
    if finished(pod) || controller_of(pod).is_some() {
        Verdict::Okay
    } else if o.force {
        Verdict::Evict(EvictReason::Unmanaged)
    } else {
        Verdict::Refuse(UNMANAGED_FATAL.into())
    }
}

/// kubectl drain's classification of the pods listed on a node. `now_secs` is the current
/// Unix time; `daemon_sets` answers for a namespace and DaemonSet name.
pub fn classify(
    pods: &[Pod],
    options: &DrainOptions,
    now_secs: i64,
    daemon_sets: &dyn Fn(&str, &str) -> DaemonSetLookup,
) -> DrainPlan {
    let mut plan = DrainPlan::default();
    for pod in pods {
        let r = PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        };
        // The filters in kubectl's order; the first that does not say "delete" decides. A
        // filter that allows with a warning lets the later ones look too (a later warning
        // replaces an earlier one, as in kubectl).
        let filters: [&dyn Fn() -> Verdict; 5] = [
            &|| skip_deleted(pod, options, now_secs),
            &|| daemon_set(pod, options, daemon_sets),
            &|| mirror(pod),
            &|| local_storage(pod, options),
            &|| unreplicated(pod, options),
        ];
        let mut reason = if finished(pod) {
            EvictReason::Finished
        } else {
            EvictReason::Managed
        };
        let mut stopped = None;
        for f in filters {
            match f() {
                Verdict::Okay => {}
                Verdict::Evict(why) => reason = why,
                stop => {
                    stopped = Some(stop);
                    break;
                }
            }
        }
        match stopped {
            Some(Verdict::Skip(why)) => plan.skip.push((r, why)),
            Some(Verdict::Refuse(why)) => plan.refuse.push((r, why)),
            _ => plan.evict.push((r, reason)),
        }
    }
    plan
}
