//! `health-query-kube-upgrade`: each check, its detail text, and the alarm rules.

mod common;

use common::{alarm, app, host_mut, node_mut, obs, pod_mut, standard};
use kup_core::{DEFAULT_ALARM_IGNORE, kube_upgrade_health};
use kup_types::{AdminState, Availability, Listing, OperState, PodInfo, PodPhase};

/// The checks in the order they are reported.
const CHECKS: [&str; 6] = [
    "All hosts are unlocked/enabled/available",
    "No alarms",
    "All kubernetes nodes are ready",
    "All kubernetes control plane pods are ready",
    "All kubernetes pods are ready",
    "All kubernetes applications are in a valid state",
];

struct Case {
    name: &'static str,
    /// Adjusts a healthy standard system.
    tweak: fn(&mut Listing),
    force: bool,
    ignore: &'static [&'static str],
    /// `(check, detail)` of every failing check; all others must be `[OK]`.
    fails: &'static [(&'static str, &'static str)],
}

/// A healthy standard system at v1.42.1 with one application in each valid status.
fn healthy() -> Listing {
    let mut o = Listing {
        obs: standard("v1.42.1"),
        pods: Vec::new(),
        workloads: Vec::new(),
        pdbs: Vec::new(),
    };
    o.applications = vec![
        app("platform-integ-apps", "applied", None, None),
        app("cert-manager", "uploaded", None, None),
        app("oidc-auth-apps", "inactive", None, None),
    ];
    o
}

fn check(case: &Case) {
    let name = case.name;
    for (check, _) in case.fails {
        assert!(CHECKS.contains(check), "{name}: no check {check:?}");
    }
    let mut o = healthy();
    (case.tweak)(&mut o);
    let ignore: Vec<String> = case.ignore.iter().map(|s| s.to_string()).collect();
    let report = kube_upgrade_health(&o, &o.index(), case.force, &ignore);

    let mut expected = String::from("System Health:\n");
    for check in CHECKS {
        match case.fails.iter().find(|(c, _)| *c == check) {
            None => expected.push_str(&format!("{check}: [OK]\n")),
            Some((_, detail)) => expected.push_str(&format!("{check}: [Fail]\n{detail}\n")),
        }
    }
    assert_eq!(report.render(), expected, "{name}: render");

    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, CHECKS, "{name}: checks");
    assert_eq!(report.ok(), case.fails.is_empty(), "{name}: ok()");
    let failures: Vec<String> = case.fails.iter().map(|(_, d)| d.to_string()).collect();
    assert_eq!(report.failures(), failures, "{name}: failures()");
}

const HOSTS: &str = CHECKS[0];
const ALARMS: &str = CHECKS[1];
const NODES: &str = CHECKS[2];
const CONTROL_PLANE: &str = CHECKS[3];
const PODS: &str = CHECKS[4];
const APPS: &str = CHECKS[5];

/// A workload pod on worker-0.
fn add_pod(o: &mut Listing, name: &str, owner_kind: &str, phase: PodPhase, ready: bool) {
    o.pods.push(PodInfo {
        namespace: "default".into(),
        name: name.into(),
        node: (phase != PodPhase::Pending).then(|| "worker-0".into()),
        ready,
        phase,
        owner_kind: owner_kind.into(),
        owner: format!("{name}-owner"),
        labels: Default::default(),
        volumes: Vec::new(),
        requests: Default::default(),
        node_selector: Default::default(),
        tolerations: Vec::new(),
    });
}

fn no_tweak(_: &mut Listing) {}

fn one_minor_alarm(o: &mut Listing) {
    o.alarms = vec![alarm("100.101", "host=controller-0", false)];
}

fn one_major_alarm(o: &mut Listing) {
    o.alarms = vec![alarm("400.001", "service_domain=controller", true)];
}

fn three_alarms(o: &mut Listing) {
    o.alarms = vec![
        alarm("100.101", "host=controller-0", false),
        alarm("400.001", "service_domain=controller", true),
        alarm("200.006", "host=worker-0", false),
    ];
}

const CASES: &[Case] = &[
    Case {
        name: "healthy",
        tweak: no_tweak,
        force: false,
        ignore: &[],
        fails: &[],
    },
    Case {
        name: "ready pods, finished pods and a failed Job pod pass",
        tweak: |o| {
            add_pod(o, "web-0", "Deployment", PodPhase::Running, true);
            add_pod(o, "backup-1", "Job", PodPhase::Succeeded, false);
            add_pod(o, "backup-0", "Job", PodPhase::Failed, false);
            add_pod(o, "once", "Pod", PodPhase::Succeeded, false);
        },
        force: false,
        ignore: &[],
        fails: &[],
    },
    Case {
        name: "unready, pending and failed pods are named with their phase",
        tweak: |o| {
            add_pod(o, "web-0", "Deployment", PodPhase::Running, false);
            add_pod(o, "web-1", "Deployment", PodPhase::Pending, false);
            add_pod(o, "bare", "Pod", PodPhase::Failed, false);
            add_pod(o, "db-0", "StatefulSet", PodPhase::Unknown, false);
        },
        force: true,
        ignore: &[],
        fails: &[(
            PODS,
            "Kubernetes pods not ready: default/web-0, default/web-1 (Pending), \
             default/bare (Failed), default/db-0 (Unknown)",
        )],
    },
    Case {
        name: "ten pods are named, the rest counted",
        tweak: |o| {
            for i in 0..13 {
                add_pod(
                    o,
                    &format!("p{i:02}"),
                    "ReplicaSet",
                    PodPhase::Running,
                    false,
                );
            }
        },
        force: false,
        ignore: &[],
        fails: &[(
            PODS,
            "Kubernetes pods not ready: default/p00, default/p01, default/p02, default/p03, \
             default/p04, default/p05, default/p06, default/p07, default/p08, default/p09 \
             and 3 more",
        )],
    },
    Case {
        name: "locked worker",
        tweak: |o| host_mut(o, "worker-0").administrative = AdminState::Locked,
        force: false,
        ignore: &[],
        fails: &[(
            HOSTS,
            "Hosts not unlocked/enabled/available: worker-0 (locked/enabled/available)",
        )],
    },
    Case {
        name: "disabled controller",
        tweak: |o| host_mut(o, "controller-1").operational = OperState::Disabled,
        force: false,
        ignore: &[],
        fails: &[(
            HOSTS,
            "Hosts not unlocked/enabled/available: controller-1 (unlocked/disabled/available)",
        )],
    },
    Case {
        name: "degraded storage host and offline worker, in host order",
        tweak: |o| {
            host_mut(o, "storage-0").availability = Availability::Degraded;
            host_mut(o, "worker-1").availability = Availability::Offline;
        },
        force: true,
        ignore: &[],
        fails: &[(
            HOSTS,
            "Hosts not unlocked/enabled/available: worker-1 (unlocked/enabled/offline), \
             storage-0 (unlocked/enabled/degraded)",
        )],
    },
    Case {
        name: "node not ready",
        tweak: |o| node_mut(o, "worker-1").ready = false,
        force: false,
        ignore: &[],
        fails: &[(NODES, "Kubernetes nodes not ready: worker-1")],
    },
    Case {
        name: "two nodes not ready",
        tweak: |o| {
            node_mut(o, "controller-0").ready = false;
            node_mut(o, "worker-0").ready = false;
        },
        force: false,
        ignore: &[],
        fails: &[(NODES, "Kubernetes nodes not ready: controller-0, worker-0")],
    },
    Case {
        name: "control-plane pod not ready",
        tweak: |o| pod_mut(o, "controller-1", "kube-scheduler").ready = false,
        force: false,
        ignore: &[],
        fails: &[(
            CONTROL_PLANE,
            "Kubernetes control plane pods not ready: kube-scheduler-controller-1",
        )],
    },
    Case {
        name: "controller without any control-plane pod",
        tweak: |o| o.control_plane_pods.retain(|p| p.host != "controller-1"),
        force: false,
        ignore: &[],
        fails: &[(
            CONTROL_PLANE,
            "Kubernetes control plane pods not ready: control plane of controller-1",
        )],
    },
    Case {
        name: "application in an invalid state",
        tweak: |o| {
            o.applications
                .push(app("vault", "apply-failed", None, None))
        },
        force: false,
        ignore: &[],
        fails: &[(
            APPS,
            "Kubernetes applications not in a valid state: vault (apply-failed)",
        )],
    },
    Case {
        name: "force does not excuse an application in an invalid state",
        tweak: |o| o.applications[0].status = "applying".into(),
        force: true,
        ignore: &[],
        fails: &[(
            APPS,
            "Kubernetes applications not in a valid state: platform-integ-apps (applying)",
        )],
    },
    Case {
        name: "non-management-affecting alarm fails without force",
        tweak: one_minor_alarm,
        force: false,
        ignore: &[],
        fails: &[(
            ALARMS,
            "[1] alarms found, [0] of which are management affecting: 100.101 (host=controller-0)",
        )],
    },
    Case {
        name: "non-management-affecting alarm passes with force",
        tweak: one_minor_alarm,
        force: true,
        ignore: &[],
        fails: &[],
    },
    Case {
        name: "management-affecting alarm fails without force",
        tweak: one_major_alarm,
        force: false,
        ignore: &[],
        fails: &[(
            ALARMS,
            "[1] alarms found, [1] of which are management affecting: \
             400.001 (service_domain=controller)",
        )],
    },
    Case {
        name: "management-affecting alarm fails even with force",
        tweak: one_major_alarm,
        force: true,
        ignore: &[],
        fails: &[(
            ALARMS,
            "[1] alarms found, [1] of which are management affecting: \
             400.001 (service_domain=controller)",
        )],
    },
    Case {
        name: "ignored management-affecting alarm never counts",
        tweak: one_major_alarm,
        force: false,
        ignore: &["400.001"],
        fails: &[],
    },
    Case {
        name: "an ignore list naming other alarms changes nothing",
        tweak: one_major_alarm,
        force: true,
        ignore: &["100.101", "400.00"],
        fails: &[(
            ALARMS,
            "[1] alarms found, [1] of which are management affecting: \
             400.001 (service_domain=controller)",
        )],
    },
    Case {
        name: "mixed alarms without force: all listed, counts of both",
        tweak: three_alarms,
        force: false,
        ignore: &[],
        fails: &[(
            ALARMS,
            "[3] alarms found, [1] of which are management affecting: \
             100.101 (host=controller-0), 400.001 (service_domain=controller), \
             200.006 (host=worker-0)",
        )],
    },
    Case {
        name: "mixed alarms with force: only the management-affecting one blocks",
        tweak: three_alarms,
        force: true,
        ignore: &[],
        fails: &[(
            ALARMS,
            "[3] alarms found, [1] of which are management affecting: \
             400.001 (service_domain=controller)",
        )],
    },
    Case {
        name: "ignored alarms are left out of the counts",
        tweak: three_alarms,
        force: false,
        ignore: &["100.101", "400.001"],
        fails: &[(
            ALARMS,
            "[1] alarms found, [0] of which are management affecting: 200.006 (host=worker-0)",
        )],
    },
    Case {
        name: "ignoring the management-affecting alarm lets force pass the rest",
        tweak: three_alarms,
        force: true,
        ignore: &["400.001"],
        fails: &[],
    },
    Case {
        name: "every check failing at once",
        tweak: |o| {
            host_mut(o, "worker-1").administrative = AdminState::Locked;
            o.alarms = vec![alarm("400.001", "service_domain=controller", true)];
            node_mut(o, "worker-1").ready = false;
            pod_mut(o, "controller-0", "kube-apiserver").ready = false;
            o.applications[1].status = "upload-failed".into();
        },
        force: true,
        ignore: &[],
        fails: &[
            (
                HOSTS,
                "Hosts not unlocked/enabled/available: worker-1 (locked/enabled/available)",
            ),
            (
                ALARMS,
                "[1] alarms found, [1] of which are management affecting: \
                 400.001 (service_domain=controller)",
            ),
            (NODES, "Kubernetes nodes not ready: worker-1"),
            (
                CONTROL_PLANE,
                "Kubernetes control plane pods not ready: kube-apiserver-controller-0",
            ),
            (
                APPS,
                "Kubernetes applications not in a valid state: cert-manager (upload-failed)",
            ),
        ],
    },
];

#[test]
fn health_checks() {
    for case in CASES {
        check(case);
    }
}

#[test]
fn render_matches_the_starlingx_layout() {
    let mut o = healthy();
    node_mut(&mut o, "worker-0").ready = false;
    let report = kube_upgrade_health(&o, &o.index(), false, &[]);
    assert_eq!(
        report.render(),
        "System Health:\n\
         All hosts are unlocked/enabled/available: [OK]\n\
         No alarms: [OK]\n\
         All kubernetes nodes are ready: [Fail]\n\
         Kubernetes nodes not ready: worker-0\n\
         All kubernetes control plane pods are ready: [OK]\n\
         All kubernetes pods are ready: [OK]\n\
         All kubernetes applications are in a valid state: [OK]\n"
    );
}

#[test]
fn a_simplex_controller_without_control_plane_pods_fails() {
    let o = obs(&[("controller-0", "controller", None, Some("v1.42.1"))]);
    let report = kube_upgrade_health(&o, &Default::default(), true, &[]);
    assert!(!report.ok());
    assert_eq!(
        report.failures(),
        ["Kubernetes control plane pods not ready: control plane of controller-0"]
    );
}

#[test]
fn default_ignore_list_is_not_applied_implicitly() {
    // kup's own "upgrade in progress" alarm is only excused when the caller passes the list.
    let mut o = healthy();
    o.alarms = vec![alarm("900.007", "host=controller", false)];
    assert!(!kube_upgrade_health(&o, &o.index(), false, &[]).ok());
    let defaults: Vec<String> = DEFAULT_ALARM_IGNORE.iter().map(|s| s.to_string()).collect();
    assert!(kube_upgrade_health(&o, &o.index(), false, &defaults).ok());
}
