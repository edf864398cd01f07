//! The schema of `GET /v1/upgrade/plan`'s reply, for the OpenAPI document only. The plan's
//! types live in kup-core, which knows nothing of HTTP or its documentation, so they are
//! described here; the conformance test (`tests/http.rs`) checks every plan served against
//! this description, and refuses a field it does not declare.
#![allow(dead_code)]

use kup_types::KubeVersion;
use utoipa::ToSchema;

/// What a whole Kubernetes upgrade will do, in which order, in which batches and for how
/// long: a forecast, every step of which is checked again when it runs.
#[derive(ToSchema)]
pub struct Plan {
    /// The version the upgrade starts from: the upgrade in progress's, or the one version the
    /// cluster runs; null when that is not a single version.
    from: Option<KubeVersion>,
    to: KubeVersion,
    /// The stages in order; empty when the plan is blocked.
    stages: Vec<Stage>,
    /// Every host taken down on its own, sorted by host id.
    hosts: Vec<HostSafety>,
    /// The predicted duration of the stages not done yet.
    total_seconds: u64,
    /// The duration no schedule that respects the stage order and the worker cap can beat;
    /// `total_seconds - lower_bound_seconds` is what safety costs.
    lower_bound_seconds: u64,
    /// Why the upgrade cannot proceed at all; empty when it can.
    blocked: Vec<String>,
    /// Each host's readiness: free disk, availability, the target's binaries it still needs.
    readiness: Vec<Readiness>,
}

#[derive(ToSchema)]
pub struct Stage {
    /// `download-images`, `first-control-plane`, `networking`, `second-control-plane`,
    /// `controller-kubelets`, `worker-kubelets` or `complete`.
    name: String,
    /// Run one after the other; the hosts of a batch in parallel. Cluster-wide stages have
    /// none.
    batches: Vec<Batch>,
    /// Predicted duration.
    seconds: u64,
    /// Already done.
    done: bool,
}

#[derive(ToSchema)]
pub struct Batch {
    /// In host-id order.
    hosts: Vec<String>,
    /// Why the batch has this size (and, when it is unsafe, its worst finding).
    reason: String,
    verdict: Verdict,
    seconds: u64,
}

/// Taking one host down (drain and lock).
#[derive(ToSchema)]
pub struct HostSafety {
    host: String,
    /// Personality first, then worker subfunction and extra roles (`etcd`, `ingress`, ...).
    roles: Vec<String>,
    /// The worst finding's verdict; `OK` when there is none.
    verdict: Verdict,
    findings: Vec<Finding>,
}

#[derive(ToSchema)]
pub struct Finding {
    /// `WARNING` or `UNSAFE`.
    verdict: Verdict,
    /// What the finding is about: `pod ns/name`, `deployment ns/name`, `pdb ns/name`,
    /// `host name`.
    subject: String,
    /// One line, for a human.
    reason: String,
}

#[derive(ToSchema)]
pub struct Readiness {
    host: String,
    ready: bool,
    problems: Vec<String>,
}

/// `UNSAFE` when data or a service is lost or the drain would block; `WARNING` when
/// availability is only reduced.
#[derive(ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum Verdict {
    Ok,
    Warning,
    Unsafe,
}
