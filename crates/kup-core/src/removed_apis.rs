//! API versions that a Kubernetes release removes, and the clients of this cluster that still
//! use them: an upgrade across that release would break those clients (a Deployment applied as
//! `extensions/v1beta1` fails to apply at all), so the start refuses it unless forced.
//!
//! What counts is what clients request, not how objects are stored: the API server converts
//! stored objects to whatever version is asked for, so only its own record of requests (the
//! `apiserver_requested_deprecated_apis` metric) and the versions objects were applied with
//! (their last-applied configuration) show real use. The driver gathers both into
//! [`Observation::api_usage`]; this module decides.

use kup_types::{ApiUsage, KubeVersion, Observation};

use crate::health::HealthCheck;

/// `(group, version, resource, the minor release that removes it)`: the removals of the
/// Kubernetes deprecation guide (kubernetes.io/docs/reference/using-api/deprecation-guide),
/// for sources that do not say the release themselves (a last-applied configuration).
const REMOVALS: &[(&str, &str, &str, u32)] = &[
    ("extensions", "v1beta1", "deployments", 16),
    ("extensions", "v1beta1", "daemonsets", 16),
    ("extensions", "v1beta1", "replicasets", 16),
    ("extensions", "v1beta1", "networkpolicies", 16),
    ("extensions", "v1beta1", "podsecuritypolicies", 16),
    ("apps", "v1beta1", "deployments", 16),
    ("apps", "v1beta1", "statefulsets", 16),
    ("apps", "v1beta2", "deployments", 16),
    ("apps", "v1beta2", "statefulsets", 16),
    ("apps", "v1beta2", "daemonsets", 16),
    ("apps", "v1beta2", "replicasets", 16),
    (
        "admissionregistration.k8s.io",
        "v1beta1",
        "mutatingwebhookconfigurations",
        22,
    ),
    (
        "admissionregistration.k8s.io",
        "v1beta1",
        "validatingwebhookconfigurations",
        22,
    ),
    (
        "apiextensions.k8s.io",
        "v1beta1",
        "customresourcedefinitions",
        22,
    ),
    ("apiregistration.k8s.io", "v1beta1", "apiservices", 22),
    ("authentication.k8s.io", "v1beta1", "tokenreviews", 22),
    (
        "authorization.k8s.io",
        "v1beta1",
        "subjectaccessreviews",
        22,
    ),
    (
        "authorization.k8s.io",
        "v1beta1",
        "localsubjectaccessreviews",
        22,
    ),
    (
        "authorization.k8s.io",
        "v1beta1",
        "selfsubjectaccessreviews",
        22,
    ),
    (
        "certificates.k8s.io",
        "v1beta1",
        "certificatesigningrequests",
        22,
    ),
    ("coordination.k8s.io", "v1beta1", "leases", 22),
    ("extensions", "v1beta1", "ingresses", 22),
    ("networking.k8s.io", "v1beta1", "ingresses", 22),
    ("networking.k8s.io", "v1beta1", "ingressclasses", 22),
    ("rbac.authorization.k8s.io", "v1beta1", "clusterroles", 22),
    (
        "rbac.authorization.k8s.io",
        "v1beta1",
        "clusterrolebindings",
        22,
    ),
    ("rbac.authorization.k8s.io", "v1beta1", "roles", 22),
    ("rbac.authorization.k8s.io", "v1beta1", "rolebindings", 22),
    ("scheduling.k8s.io", "v1beta1", "priorityclasses", 22),
    ("storage.k8s.io", "v1beta1", "csidrivers", 22),
    ("storage.k8s.io", "v1beta1", "csinodes", 22),
    ("storage.k8s.io", "v1beta1", "storageclasses", 22),
    ("storage.k8s.io", "v1beta1", "volumeattachments", 22),
    ("batch", "v1beta1", "cronjobs", 25),
    ("discovery.k8s.io", "v1beta1", "endpointslices", 25),
    ("events.k8s.io", "v1beta1", "events", 25),
    ("autoscaling", "v2beta1", "horizontalpodautoscalers", 25),
    ("policy", "v1beta1", "poddisruptionbudgets", 25),
    ("policy", "v1beta1", "podsecuritypolicies", 25),
    ("node.k8s.io", "v1beta1", "runtimeclasses", 25),
    ("flowcontrol.apiserver.k8s.io", "v1beta1", "flowschemas", 26),
    (
        "flowcontrol.apiserver.k8s.io",
        "v1beta1",
        "prioritylevelconfigurations",
        26,
    ),
    ("autoscaling", "v2beta2", "horizontalpodautoscalers", 26),
    ("storage.k8s.io", "v1beta1", "csistoragecapacities", 27),
    ("flowcontrol.apiserver.k8s.io", "v1beta2", "flowschemas", 29),
    (
        "flowcontrol.apiserver.k8s.io",
        "v1beta2",
        "prioritylevelconfigurations",
        29,
    ),
    ("flowcontrol.apiserver.k8s.io", "v1beta3", "flowschemas", 32),
    (
        "flowcontrol.apiserver.k8s.io",
        "v1beta3",
        "prioritylevelconfigurations",
        32,
    ),
];

/// A use of an API that an upgrade removes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemovedApi {
    /// The minor release (1.x) that removes it.
    pub removed_in: u32,
    pub usage: ApiUsage,
}

impl std::fmt::Display for RemovedApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (removed in v1.{}; used by {})",
            self.usage.group_version(),
            self.usage.resource,
            self.removed_in,
            self.usage.seen_in
        )
    }
}

/// The minor release that removes `u`: the source's own word, else kup's table; `None` for an
/// API no release removes (as far as kup knows).
pub fn removal_minor(u: &ApiUsage) -> Option<u32> {
    if let Some(r) = &u.removed_release {
        // The metric's label is "1.22"; a "v" is tolerated.
        let r = r.trim().trim_start_matches('v');
        if let Some(minor) = r.strip_prefix("1.").and_then(|m| m.parse().ok()) {
            return Some(minor);
        }
    }
    REMOVALS
        .iter()
        .find(|(g, v, r, _)| *g == u.group && *v == u.version && *r == u.resource)
        .map(|&(.., minor)| minor)
}

/// The uses that an upgrade from `from` to `to` removes: those whose removal release lies in
/// `(from, to]`. One removed before `from` is the cluster's present, not the upgrade's doing.
pub fn removed_by(obs: &Observation, from: KubeVersion, to: KubeVersion) -> Vec<RemovedApi> {
    if from.major != 1 || to.major != 1 {
        return Vec::new();
    }
    let mut found: Vec<RemovedApi> = obs
        .api_usage
        .iter()
        .filter_map(|u| {
            let removed_in = removal_minor(u)?;
            (from.minor < removed_in && removed_in <= to.minor).then(|| RemovedApi {
                removed_in,
                usage: u.clone(),
            })
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The health check's line: failed when an upgrade from `from` to `to` removes APIs in use,
/// unless `force` (the operator knows, and takes the upgrade anyway).
pub fn removed_api_check(
    obs: &Observation,
    from: KubeVersion,
    to: KubeVersion,
    force: bool,
) -> HealthCheck {
    let found = removed_by(obs, from, to);
    HealthCheck {
        name: "No APIs in use that the target version removes",
        failure: (!found.is_empty() && !force).then(|| {
            format!(
                "APIs in use that {to} removes: {}",
                found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
    }
}
