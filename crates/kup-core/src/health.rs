//! The health checks run before an upgrade starts (`health-query-kube-upgrade`).

use std::collections::BTreeSet;

use kup_types::{Alarm, Observation, PodInfo, PodPhase, Workloads};

/// Alarms that never block an upgrade unless the request says otherwise: StarlingX's
/// server-side default list (reference §1.3). 900.007 is kup's own "upgrade in progress".
pub const DEFAULT_ALARM_IGNORE: &[&str] = &[
    "100.103", "100.119", "200.001", "280.001", "280.002", "700.004", "750.006", "900.007",
    "900.022", "900.023", "900.024", "900.401", "900.402", "900.701",
];

/// Application statuses in which an upgrade may start.
const VALID_APP_STATUSES: &[&str] = &["uploaded", "applied", "inactive"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub name: &'static str,
    /// `None` when the check passed; otherwise why it failed.
    pub failure: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReport {
    pub checks: Vec<HealthCheck>,
}

impl HealthReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.failure.is_none())
    }

    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter_map(|c| c.failure.clone())
            .collect()
    }

    /// The text StarlingX's `system health-query-kube-upgrade` prints.
    pub fn render(&self) -> String {
        let mut out = String::from("System Health:\n");
        for c in &self.checks {
            match &c.failure {
                None => out.push_str(&format!("{}: [OK]\n", c.name)),
                Some(why) => out.push_str(&format!("{}: [Fail]\n{}\n", c.name, why)),
            }
        }
        out
    }
}

/// `force` lets alarms that are not management-affecting pass; `ignore` lists alarm ids that
/// never count.
pub fn kube_upgrade_health(
    obs: &Observation,
    wl: &Workloads,
    force: bool,
    ignore: &[String],
) -> HealthReport {
    let ignore: BTreeSet<&str> = ignore.iter().map(String::as_str).collect();

    let bad_hosts = obs
        .hosts
        .iter()
        // A host with an action in progress is about to change state: not settled either.
        .filter(|h| !h.in_service())
        .map(|h| match &h.task {
            Some(task) => format!("{} ({task})", h.hostname),
            None => format!(
                "{} ({}/{}/{})",
                h.hostname, h.administrative, h.operational, h.availability
            ),
        })
        .collect();

    let counted: Vec<&Alarm> = obs
        .alarms
        .iter()
        .filter(|a| !ignore.contains(a.alarm_id.as_str()))
        .collect();
    let blocking: Vec<String> = counted
        .iter()
        .filter(|a| a.management_affecting || !force)
        .map(|a| format!("{} ({})", a.alarm_id, a.entity_instance_id))
        .collect();
    let mgmt = counted.iter().filter(|a| a.management_affecting).count();
    let alarms = HealthCheck {
        name: "No alarms",
        failure: (!blocking.is_empty()).then(|| {
            format!(
                "[{}] alarms found, [{}] of which are management affecting: {}",
                counted.len(),
                mgmt,
                blocking.join(", ")
            )
        }),
    };

    let not_ready = obs
        .nodes
        .iter()
        .filter(|n| !n.ready)
        .map(|n| n.name.clone())
        .collect();

    let mut cp_not_ready: Vec<String> = obs
        .control_plane_pods
        .iter()
        .filter(|p| !p.ready)
        .map(|p| format!("{}-{}", p.component, p.host))
        .collect();
    // A controller with no control-plane pod at all is as unready as one with a failing pod.
    for c in obs.controllers() {
        if obs.control_plane_version(&c.hostname).is_none() {
            cp_not_ready.push(format!("control plane of {}", c.hostname));
        }
    }

    let pods_not_ready = not_ready_pods(wl);

    let bad_apps = obs
        .applications
        .iter()
        .filter(|a| !VALID_APP_STATUSES.contains(&a.status.as_str()))
        .map(|a| format!("{} ({})", a.name, a.status))
        .collect();

    HealthReport {
        checks: vec![
            item(
                "All hosts are unlocked/enabled/available",
                bad_hosts,
                "Hosts not unlocked/enabled/available: ",
            ),
            alarms,
            item(
                "All kubernetes nodes are ready",
                not_ready,
                "Kubernetes nodes not ready: ",
            ),
            item(
                "All kubernetes control plane pods are ready",
                cp_not_ready,
                "Kubernetes control plane pods not ready: ",
            ),
            pods_not_ready,
            item(
                "All kubernetes applications are in a valid state",
                bad_apps,
                "Kubernetes applications not in a valid state: ",
            ),
        ],
    }
}

/// Pods that must be ready and are not, as the seed's prerequisite "Kubernetes pods must be
/// all ready" asks. A finished pod is not expected to be ready: one that succeeded, and one
/// that failed under a Job (the Job retries or gives up; its pod stays for its logs).
pub fn pod_must_be_ready(p: &PodInfo) -> bool {
    match p.phase {
        PodPhase::Succeeded => false,
        PodPhase::Failed => p.owner_kind != "Job",
        PodPhase::Pending | PodPhase::Running | PodPhase::Unknown => true,
    }
}

/// At most this many pods are named; the count says how many more.
const PODS_NAMED: usize = 10;

fn not_ready_pods(wl: &Workloads) -> HealthCheck {
    let mut bad = wl
        .iter()
        .map(|(_, p)| p)
        .filter(|p| pod_must_be_ready(p) && !p.ready);
    let named: Vec<String> = bad
        .by_ref()
        .take(PODS_NAMED)
        .map(|p| match p.phase {
            PodPhase::Running => format!("{}/{}", p.namespace, p.name),
            phase => format!("{}/{} ({phase:?})", p.namespace, p.name),
        })
        .collect();
    let more = bad.count();
    let mut failure = named.join(", ");
    if more > 0 {
        failure.push_str(&format!(" and {more} more"));
    }
    HealthCheck {
        name: "All kubernetes pods are ready",
        failure: (!named.is_empty()).then(|| format!("Kubernetes pods not ready: {failure}")),
    }
}

fn item(name: &'static str, failures: Vec<String>, prefix: &str) -> HealthCheck {
    let failure = (!failures.is_empty()).then(|| format!("{prefix}{}", failures.join(", ")));
    HealthCheck { name, failure }
}
