//! The state machine's start command and the PATCH `/state` dispatcher.

mod common;

use common::{
    alarm, app, catalog, host_mut, node_mut, obs, reference_catalog, snapshot, standard,
    upgrade_record, v,
};
use jiff::Timestamp;
use kup_core::{Catalog, Command, Ctx, Decision, Policy, Refusal, decide};
use kup_types::{
    AdminState, EventKind, HostUpgradeStatus, KubeUpgradeRecord, KubeUpgradeState, NewEvent,
    Observation, Snapshot, UpgradeWrite, Workloads, WriteBatch,
};

const FRESH_UUID: &str = "u-1";

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).expect("valid timestamp")
}

/// Everything a start decision reads, built healthy: a standard system at `v1.42.1` with the
/// reference catalog and one idle host row per host.
struct World {
    catalog: Catalog,
    policy: Policy,
    snap: Snapshot,
    obs: Observation,
}

impl World {
    fn at(version: &str) -> Self {
        let obs = standard(version);
        Self {
            catalog: reference_catalog(),
            policy: Policy::default(),
            snap: snapshot(&obs),
            obs,
        }
    }

    fn decide(&self, cmd: &Command) -> Result<Decision, Refusal> {
        let ctx = Ctx {
            catalog: &self.catalog,
            policy: &self.policy,
            snap: &self.snap,
            obs: &self.obs,
            workloads: Some(&Workloads::default()),
            now: now(),
            fresh_uuid: FRESH_UUID,
        };
        decide(&ctx, cmd)
    }
}

fn start(to: &str, force: bool, ignore: &[&str]) -> Command {
    Command::Start {
        to_version: to.to_string(),
        force,
        alarm_ignore: ignore.iter().map(|s| s.to_string()).collect(),
    }
}

// --- accepted starts ---

struct Accepted {
    name: &'static str,
    setup: fn(&mut World),
    to: &'static str,
    force: bool,
    ignore: &'static [&'static str],
    from: &'static str,
}

/// An accepted start writes exactly the new upgrade record and every host row with
/// `target_version = from`, records the command then the state change, and starts nothing.
fn check_accepted(case: &Accepted) {
    let mut world = World::at(case.from);
    (case.setup)(&mut world);
    let cmd = start(case.to, case.force, case.ignore);
    let decision = world
        .decide(&cmd)
        .unwrap_or_else(|r| panic!("{}: refused: {r}", case.name));

    let (from, to) = (v(case.from), v(case.to));
    let record = KubeUpgradeRecord {
        id: 1,
        uuid: FRESH_UUID.to_string(),
        from_version: from,
        to_version: to,
        state: KubeUpgradeState::UpgradeStarted,
        created_at: now(),
        updated_at: None,
    };
    let hosts = world
        .snap
        .hosts
        .iter()
        .map(|row| {
            let mut row = row.clone();
            row.target_version = Some(from);
            row.updated_at = Some(now());
            row
        })
        .collect();
    let event = |kind, message: String| NewEvent {
        at: now(),
        kind,
        subject: "kube_upgrade".into(),
        message,
    };
    let flag = if case.force { " --force" } else { "" };
    let expected = Decision {
        batch: WriteBatch {
            upgrade: Some(UpgradeWrite::Create(record)),
            hosts,
            events: vec![
                event(
                    EventKind::Command,
                    format!("kube-upgrade-start {}{flag} accepted", case.to),
                ),
                event(
                    EventKind::State,
                    format!("upgrade {from} -> {to}: upgrade-started"),
                ),
            ],
            ..Default::default()
        },
        ops: Vec::new(),
        cancel: Vec::new(),
    };
    assert_eq!(decision, expected, "{}", case.name);
}

fn no_setup(_: &mut World) {}

const ACCEPTED: &[Accepted] = &[
    Accepted {
        name: "healthy standard system, next minor",
        setup: no_setup,
        to: "v1.43.1",
        force: false,
        ignore: &[],
        from: "v1.42.1",
    },
    Accepted {
        name: "two minors up, through the highest patch of the one between",
        setup: no_setup,
        to: "v1.44.0",
        force: false,
        ignore: &[],
        from: "v1.42.1",
    },
    Accepted {
        name: "next patch of the same minor",
        setup: no_setup,
        to: "v1.42.1",
        force: false,
        ignore: &[],
        from: "v1.42.0",
    },
    Accepted {
        name: "the version may be given without its v",
        setup: no_setup,
        to: "1.43.1",
        force: false,
        ignore: &[],
        from: "v1.42.1",
    },
    Accepted {
        name: "all-in-one simplex",
        setup: |w| {
            w.obs = obs(&[(
                "controller-0",
                "controller",
                Some("v1.42.1"),
                Some("v1.42.1"),
            )]);
            w.snap = snapshot(&w.obs);
        },
        to: "v1.43.1",
        force: false,
        ignore: &[],
        from: "v1.42.1",
    },
    Accepted {
        name: "host rows already targeting an older version are re-targeted",
        setup: |w| {
            for row in &mut w.snap.hosts {
                row.target_version = Some(v("v1.41.3"));
            }
        },
        to: "v1.43.1",
        force: false,
        ignore: &[],
        from: "v1.42.1",
    },
    Accepted {
        name: "force excuses an alarm that is not management-affecting",
        setup: |w| w.obs.alarms = vec![alarm("100.101", "host=controller-0", false)],
        to: "v1.43.1",
        force: true,
        ignore: &[],
        from: "v1.42.1",
    },
    Accepted {
        name: "the request's ignore list excuses a management-affecting alarm",
        setup: |w| w.obs.alarms = vec![alarm("400.001", "service_domain=controller", true)],
        to: "v1.43.1",
        force: false,
        ignore: &["400.001"],
        from: "v1.42.1",
    },
    Accepted {
        name: "the policy's ignore list applies without the request naming it",
        setup: |w| w.obs.alarms = vec![alarm("900.007", "host=controller", false)],
        to: "v1.43.1",
        force: false,
        ignore: &["100.101"],
        from: "v1.42.1",
    },
    Accepted {
        name: "an incompatible application that is only uploaded does not block",
        setup: |w| {
            w.obs
                .applications
                .push(app("vault", "uploaded", None, Some("v1.42.1")));
        },
        to: "v1.43.1",
        force: false,
        ignore: &[],
        from: "v1.42.1",
    },
    Accepted {
        name: "an applied application whose range covers the target does not block",
        setup: |w| {
            w.obs
                .applications
                .push(app("vault", "applied", Some("v1.42.0"), Some("v1.43.1")));
        },
        to: "v1.43.1",
        force: false,
        ignore: &[],
        from: "v1.42.1",
    },
];

#[test]
fn start_accepted() {
    for case in ACCEPTED {
        check_accepted(case);
    }
}

// --- refused starts ---

struct Refused {
    name: &'static str,
    setup: fn(&mut World),
    to: &'static str,
    force: bool,
    expect: Refusal,
}

fn check_refused(case: &Refused) {
    let mut world = World::at("v1.42.1");
    (case.setup)(&mut world);
    let got = world.decide(&start(case.to, case.force, &[]));
    assert_eq!(got, Err(case.expect.clone()), "{}", case.name);
}

fn in_progress(w: &mut World) {
    w.snap.upgrade = Some(upgrade_record(
        "v1.41.3",
        "v1.42.1",
        KubeUpgradeState::UpgradeComplete,
    ));
}

fn mixed_running(w: &mut World) {
    node_mut(&mut w.obs, "worker-1").kubelet_version = v("v1.43.1");
}

fn node_not_ready(w: &mut World) {
    node_mut(&mut w.obs, "worker-0").ready = false;
}

fn incompatible_app(w: &mut World) {
    w.obs
        .applications
        .push(app("vault", "applied", None, Some("v1.42.1")));
}

fn not_active(running: &[&str]) -> Refusal {
    Refusal::RunningVersionNotActive {
        running: running.iter().copied().map(v).collect(),
    }
}

fn not_available(to: &str, state: &str) -> Refusal {
    Refusal::TargetNotAvailable {
        to: v(to),
        state: state.parse().expect("a version state"),
    }
}

fn unhealthy(failures: &[&str]) -> Refusal {
    Refusal::Unhealthy(failures.iter().map(|s| s.to_string()).collect())
}

fn invalid_version(input: &str) -> Refusal {
    Refusal::InvalidVersion(kup_types::KubeVersion::parse(input).expect_err("invalid"))
}

const NODE_NOT_READY: &str = "Kubernetes nodes not ready: worker-0";

/// Refusals in the order `start` checks them; where a case sets up two conditions, the
/// earlier one must be the one reported.
fn refused_cases() -> Vec<Refused> {
    vec![
        // 1. an upgrade row exists, whatever its state
        Refused {
            name: "in progress",
            setup: in_progress,
            to: "v1.43.1",
            force: false,
            expect: Refusal::AlreadyInProgress,
        },
        Refused {
            name: "in progress before an invalid version",
            setup: in_progress,
            to: "v1.43",
            force: false,
            expect: Refusal::AlreadyInProgress,
        },
        // 2. the requested version does not parse
        Refused {
            name: "invalid version",
            setup: no_setup,
            to: "v1.43",
            force: false,
            expect: invalid_version("v1.43"),
        },
        Refused {
            name: "invalid version before mixed running versions",
            setup: mixed_running,
            to: "1.43.x",
            force: false,
            expect: invalid_version("1.43.x"),
        },
        // 3. the requested version is not in the catalog
        Refused {
            name: "unknown version",
            setup: no_setup,
            to: "v1.45.45",
            force: false,
            expect: Refusal::UnknownVersion(v("v1.45.45")),
        },
        Refused {
            name: "unknown version before mixed running versions",
            setup: mixed_running,
            to: "v1.45.45",
            force: false,
            expect: Refusal::UnknownVersion(v("v1.45.45")),
        },
        // 4. the cluster does not run exactly one known version
        Refused {
            name: "mixed running versions",
            setup: mixed_running,
            to: "v1.44.0",
            force: false,
            expect: not_active(&["v1.42.1", "v1.43.1"]),
        },
        Refused {
            name: "mixed running versions before the target not being available",
            // v1.43.1 runs on one node, so it is partial rather than available.
            setup: mixed_running,
            to: "v1.43.1",
            force: false,
            expect: not_active(&["v1.42.1", "v1.43.1"]),
        },
        Refused {
            name: "mixed running versions before unhealthy",
            setup: |w| {
                mixed_running(w);
                node_not_ready(w);
            },
            to: "v1.44.0",
            force: false,
            expect: not_active(&["v1.42.1", "v1.43.1"]),
        },
        Refused {
            name: "a control plane mid-upgrade counts as mixed",
            setup: |w| {
                for pod in &mut w.obs.control_plane_pods {
                    if pod.host == "controller-0" {
                        pod.version = v("v1.43.1");
                    }
                }
            },
            to: "v1.43.1",
            force: false,
            expect: not_active(&["v1.42.1", "v1.43.1"]),
        },
        Refused {
            name: "the one running version is unknown to the catalog",
            setup: |w| {
                w.obs = standard("v1.40.0");
                w.snap = snapshot(&w.obs);
            },
            to: "v1.41.3",
            force: false,
            expect: Refusal::RunningVersionUnknown(v("v1.40.0")),
        },
        // 5. the target is not available
        Refused {
            name: "target is the active version",
            setup: no_setup,
            to: "v1.42.1",
            force: false,
            expect: not_available("v1.42.1", "active"),
        },
        Refused {
            name: "target is lower than the active version",
            setup: no_setup,
            to: "v1.41.3",
            force: false,
            expect: not_available("v1.41.3", "unavailable"),
        },
        Refused {
            name: "target not available before unhealthy",
            setup: node_not_ready,
            to: "v1.42.0",
            force: false,
            expect: not_available("v1.42.0", "unavailable"),
        },
        // 6. the target is available but not reachable: no release of the minor between
        Refused {
            name: "no upgrade path two minors up",
            setup: |w| {
                w.catalog = catalog(&[
                    ("v1.42.1", &[]),
                    ("v1.43.1", &["v1.42.0"]),
                    ("v1.44.0", &["v1.43.1"]),
                ])
            },
            to: "v1.44.0",
            force: false,
            expect: Refusal::NoUpgradePath {
                from: v("v1.42.1"),
                to: v("v1.44.0"),
            },
        },
        Refused {
            name: "no upgrade path before unhealthy",
            setup: |w| {
                w.catalog = catalog(&[
                    ("v1.41.3", &[]),
                    ("v1.42.1", &["v1.41.3"]),
                    ("v1.43.1", &["v1.42.0"]),
                ]);
                w.obs = standard("v1.41.3");
                w.snap = snapshot(&w.obs);
                node_not_ready(w);
            },
            to: "v1.43.1",
            force: false,
            expect: Refusal::NoUpgradePath {
                from: v("v1.41.3"),
                to: v("v1.43.1"),
            },
        },
        // 7. health
        Refused {
            name: "unhealthy: node not ready",
            setup: node_not_ready,
            to: "v1.43.1",
            force: false,
            expect: unhealthy(&[NODE_NOT_READY]),
        },
        Refused {
            name: "unhealthy: every failing check is reported",
            setup: |w| {
                host_mut(&mut w.obs, "worker-1").administrative = AdminState::Locked;
                node_not_ready(w);
            },
            to: "v1.43.1",
            force: true,
            expect: unhealthy(&[
                "Hosts not unlocked/enabled/available: worker-1 (locked/enabled/available)",
                NODE_NOT_READY,
            ]),
        },
        Refused {
            name: "unhealthy: alarm not management-affecting, without force",
            setup: |w| w.obs.alarms = vec![alarm("100.101", "host=controller-0", false)],
            to: "v1.43.1",
            force: false,
            expect: unhealthy(&[
                "[1] alarms found, [0] of which are management affecting: 100.101 (host=controller-0)",
            ]),
        },
        Refused {
            name: "unhealthy: management-affecting alarm, even with force",
            setup: |w| w.obs.alarms = vec![alarm("400.001", "service_domain=controller", true)],
            to: "v1.43.1",
            force: true,
            expect: unhealthy(&[
                "[1] alarms found, [1] of which are management affecting: 400.001 (service_domain=controller)",
            ]),
        },
        Refused {
            name: "unhealthy before incompatible applications",
            setup: |w| {
                node_not_ready(w);
                incompatible_app(w);
            },
            to: "v1.43.1",
            force: false,
            expect: unhealthy(&[NODE_NOT_READY]),
        },
        // 8. applications
        Refused {
            name: "applied application capped below the target",
            setup: incompatible_app,
            to: "v1.43.1",
            force: false,
            expect: Refusal::IncompatibleApps {
                to: v("v1.43.1"),
                apps: vec!["vault (supports any to v1.42.1)".into()],
            },
        },
        Refused {
            name: "every incompatible applied application is listed",
            setup: |w| {
                incompatible_app(w);
                w.obs
                    .applications
                    .push(app("metrics", "applied", Some("v1.44.0"), None));
            },
            to: "v1.43.1",
            force: true,
            expect: Refusal::IncompatibleApps {
                to: v("v1.43.1"),
                apps: vec![
                    "vault (supports any to v1.42.1)".into(),
                    "metrics (supports v1.44.0 to any)".into(),
                ],
            },
        },
    ]
}

#[test]
fn start_refused() {
    for case in &refused_cases() {
        check_refused(case);
    }
}

#[test]
fn start_refusal_messages() {
    let cases = [
        (
            Refusal::AlreadyInProgress,
            "A kubernetes upgrade is already in progress",
        ),
        (
            Refusal::UnknownVersion(v("v1.45.45")),
            "Kubernetes version v1.45.45 is not available",
        ),
        (
            not_available("v1.41.3", "unavailable"),
            "The target Kubernetes version v1.41.3 is not in available state (it is unavailable)",
        ),
        (
            Refusal::NoUpgradePath {
                from: v("v1.43.1"),
                to: v("v1.42.1"),
            },
            "The installed Kubernetes version v1.43.1 cannot upgrade to version v1.42.1",
        ),
        (
            invalid_version("v1.43"),
            "invalid Kubernetes version \"v1.43\": it needs exactly three components \
             (expected vMAJOR.MINOR.PATCH, e.g. v1.16.2)",
        ),
        (
            unhealthy(&["a", "b"]),
            "System is not in a valid state for kubernetes upgrade: a; b. \
             Run health-query-kube-upgrade for details",
        ),
    ];
    for (refusal, message) in cases {
        assert_eq!(refusal.to_string(), message);
    }
}

#[test]
fn start_refuses_a_target_below_the_running_version() {
    let mut world = World::at("v1.42.1");
    world.catalog = catalog(&[("v1.41.3", &["v1.42.1"]), ("v1.42.1", &[])]);
    assert_eq!(
        world.decide(&start("v1.41.3", false, &[])),
        Err(Refusal::NoUpgradePath {
            from: v("v1.42.1"),
            to: v("v1.41.3"),
        })
    );
}

#[test]
fn a_stale_host_status_is_cleared_by_start() {
    let mut world = World::at("v1.42.1");
    world.snap.hosts[2].status = Some(HostUpgradeStatus::UpgradedKubelet);
    let d = world
        .decide(&start("v1.43.1", false, &[]))
        .expect("accepted");
    let row = d
        .batch
        .hosts
        .iter()
        .find(|r| r.hostname == "worker-0")
        .expect("worker-0 row");
    assert_eq!(row.status, None);
    assert_eq!(row.target_version, Some(v("v1.42.1")));
    assert!(
        d.batch
            .events
            .iter()
            .any(|e| e.kind == EventKind::Host && e.subject == "worker-0"),
        "the status change is recorded: {:?}",
        d.batch.events
    );
}

// --- PATCH /state ---

#[test]
fn from_patch_state_for_every_state() {
    use KubeUpgradeState as S;
    let invalid = |s: &str| Err(Refusal::InvalidState(s.to_string()));
    let table: &[(S, Result<Command, Refusal>)] = &[
        (S::UpgradeStarted, invalid("upgrade-started")),
        (S::DownloadingImages, Ok(Command::DownloadImages)),
        (S::DownloadedImages, invalid("downloaded-images")),
        (
            S::DownloadingImagesFailed,
            Ok(Command::MarkFailed(S::DownloadingImagesFailed)),
        ),
        (S::UpgradingFirstMaster, invalid("upgrading-first-master")),
        (S::UpgradedFirstMaster, invalid("upgraded-first-master")),
        (
            S::UpgradingFirstMasterFailed,
            Ok(Command::MarkFailed(S::UpgradingFirstMasterFailed)),
        ),
        (S::UpgradingNetworking, Ok(Command::UpgradeNetworking)),
        (S::UpgradedNetworking, invalid("upgraded-networking")),
        (
            S::UpgradingNetworkingFailed,
            Ok(Command::MarkFailed(S::UpgradingNetworkingFailed)),
        ),
        (S::UpgradingSecondMaster, invalid("upgrading-second-master")),
        (S::UpgradedSecondMaster, invalid("upgraded-second-master")),
        (
            S::UpgradingSecondMasterFailed,
            Ok(Command::MarkFailed(S::UpgradingSecondMasterFailed)),
        ),
        (S::UpgradingKubelets, invalid("upgrading-kubelets")),
        // Without the hostname StarlingX's client sends along.
        (
            S::CordonStarted,
            Err(Refusal::HostnameRequired("cordon-started".into())),
        ),
        (S::CordonComplete, invalid("cordon-complete")),
        (S::CordonFailed, Ok(Command::MarkFailed(S::CordonFailed))),
        (
            S::UncordonStarted,
            Err(Refusal::HostnameRequired("uncordon-started".into())),
        ),
        (S::UncordonComplete, invalid("uncordon-complete")),
        (
            S::UncordonFailed,
            Ok(Command::MarkFailed(S::UncordonFailed)),
        ),
        (S::UpgradeComplete, Ok(Command::Complete)),
        // Exactly what StarlingX's client sends for kube-upgrade-abort.
        (S::UpgradeAborting, Ok(Command::Abort)),
        (
            S::UpgradeAbortingFailed,
            Ok(Command::MarkFailed(S::UpgradeAbortingFailed)),
        ),
        (S::UpgradeAborted, invalid("upgrade-aborted")),
    ];
    let covered: Vec<S> = table.iter().map(|(s, _)| *s).collect();
    assert_eq!(covered, S::ALL, "the table lists every state, in order");
    for (state, expected) in table {
        assert_eq!(
            &Command::from_patch_state(state.as_str()),
            expected,
            "{state}"
        );
    }
}

#[test]
fn cordon_and_uncordon_take_the_hostname() {
    assert_eq!(
        Command::from_patch("cordon-started", Some("controller-0")),
        Ok(Command::Cordon {
            host: "controller-0".into()
        })
    );
    assert_eq!(
        Command::from_patch("uncordon-started", Some("controller-0")),
        Ok(Command::Uncordon {
            host: "controller-0".into()
        })
    );
}

#[test]
fn from_patch_state_rejects_other_strings() {
    for value in [
        "",
        "bogus",
        "Upgrade-Complete",
        " upgrade-complete",
        "upgrade-complete ",
        "upgrading-kubelets-failed",
        "upgrade-aborted",
        "downloading_images",
    ] {
        let err = Command::from_patch_state(value).expect_err(value);
        assert_eq!(err, Refusal::InvalidState(value.to_string()));
        assert_eq!(err.to_string(), format!("Invalid state {value} supplied"));
    }
}

#[test]
fn invalid_state_message_names_the_value() {
    let err = Command::from_patch_state("upgraded-networking").expect_err("not a command");
    assert_eq!(
        err.to_string(),
        "Invalid state upgraded-networking supplied"
    );
}

/// A host step needs the target's binaries on that host: kubeadm for the control plane,
/// kubelet for the kubelet, when a patch delivers them.
#[test]
fn host_steps_need_their_binaries_installed() {
    use kup_types::{PatchInstall, PatchKind, PatchRecord, PatchState};
    let o = standard("v1.16.1");
    let mut snap = snapshot(&o);
    snap.upgrade = Some(upgrade_record(
        "v1.16.1",
        "v1.16.2",
        KubeUpgradeState::DownloadedImages,
    ));
    let patch = |id: &str, kind| PatchRecord {
        id: id.into(),
        kind,
        summary: String::new(),
        requires: vec![],
        delivers: Some(v("v1.16.2")),
        version_meta: None,
        networking_manifests: vec![],
        state: PatchState::Applied,
        key_id: "k".into(),
        files: match kind {
            PatchKind::Kubeadm => vec!["usr/bin/kubeadm".into()],
            _ => vec!["usr/bin/kubelet".into(), "usr/bin/kubectl".into()],
        },
        uploaded_at: jiff::Timestamp::UNIX_EPOCH,
        updated_at: None,
    };
    snap.patches = vec![
        patch("KUBEADM.1", PatchKind::Kubeadm),
        patch("KUBELET.1", PatchKind::Kubelet),
    ];
    snap.installs = vec![PatchInstall {
        patch_id: "KUBEADM.1".into(),
        hostname: "controller-0".into(),
    }];
    let catalog = catalog(&[("v1.16.1", &[]), ("v1.16.2", &["v1.16.1"])]);
    let policy = kup_core::Policy::default();
    let no_pods = kup_types::Workloads::default();
    let ctx = |snap| kup_core::Ctx {
        catalog: &catalog,
        policy: &policy,
        snap,
        obs: &o,
        workloads: Some(&no_pods),
        now: jiff::Timestamp::UNIX_EPOCH,
        fresh_uuid: "u",
    };
    let cp = |h: &str| kup_core::Command::ControlPlane {
        host: h.into(),
        force: false,
    };
    let err = kup_core::decide(&ctx(&snap), &cp("controller-1")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "The kubeadm of v1.16.2 (patch KUBEADM.1) is not installed on controller-1; run sw-patch host-install controller-1 first"
    );
    // The step carries the patch's binaries, for a real cluster's hosts to install.
    let batch = kup_core::decide(&ctx(&snap), &cp("controller-0")).unwrap();
    let file = |patch: &str, path: &str| kup_types::PatchFile {
        patch: patch.into(),
        path: path.into(),
    };
    assert_eq!(
        batch.batch.operations[0].op,
        kup_types::Operation::UpgradeControlPlane {
            host: "controller-0".into(),
            version: v("v1.16.2"),
            first: true,
            payloads: vec![kup_types::Payload {
                kind: PatchKind::Kubeadm,
                version: v("v1.16.2"),
                files: vec![file("KUBEADM.1", "usr/bin/kubeadm")],
            }],
        }
    );
    // A kubelet patch only uploaded delivers nothing yet (the hosts' packages would be used).
    snap.patches[1].state = PatchState::Available;
    assert_eq!(
        kup_core::patches::payloads(&snap, &[PatchKind::Kubelet], &[v("v1.16.2")]),
        vec![]
    );
    snap.patches[1].state = PatchState::Applied;
    assert_eq!(
        kup_core::patches::payloads(
            &snap,
            &[PatchKind::Kubeadm, PatchKind::Kubelet],
            &[v("v1.16.1"), v("v1.16.2")]
        )
        .iter()
        .map(|p| (p.kind, p.files.len()))
        .collect::<Vec<_>>(),
        [(PatchKind::Kubeadm, 1), (PatchKind::Kubelet, 2)]
    );
}

/// A lock, unlock or swact that kup records as running is the host's task in its view even
/// when the cluster shows no task (the action ended there, its end not yet recorded): `--wait`
/// waits for the task to clear, so the command after it never finds the host busy.
#[test]
fn a_recorded_host_action_is_the_hosts_task_until_its_end_is_recorded() {
    use kup_types::{Operation, OperationRecord, OperationState};
    let o = standard("v1.16.1");
    let mut snap = snapshot(&o);
    snap.reindex();
    let task =
        |snap: &Snapshot, host: &str| kup_core::views::ihost(o.host(host).unwrap(), snap).task;
    assert_eq!(task(&snap, "worker-0"), None);
    let record = |op| OperationRecord {
        id: "op-1".into(),
        op,
        state: OperationState::Running,
        attempt: 1,
        started_at: now(),
        deadline: now(),
        ended_at: None,
        detail: None,
    };
    let host = || "worker-0".to_string();
    for (op, word) in [
        (
            Operation::Lock {
                host: host(),
                force: false,
            },
            "Locking",
        ),
        (Operation::Unlock { host: host() }, "Unlocking"),
        (Operation::Swact { host: host() }, "Swacting"),
    ] {
        snap.operations = vec![record(op)];
        assert_eq!(task(&snap, "worker-0").as_deref(), Some(word));
        assert_eq!(task(&snap, "worker-1"), None, "another host");
    }
    // A kubelet step is not a host action; the cluster's own word comes first.
    snap.operations = vec![record(Operation::UpgradeKubelet {
        host: host(),
        version: v("v1.16.2"),
        payloads: vec![],
    })];
    assert_eq!(task(&snap, "worker-0"), None);
    let mut o2 = o.clone();
    host_mut(&mut o2, "worker-0").task = Some("Locking".into());
    snap.operations = vec![record(Operation::Unlock { host: host() })];
    assert_eq!(
        kup_core::views::ihost(o2.host("worker-0").unwrap(), &snap)
            .task
            .as_deref(),
        Some("Locking")
    );
}

// --- the strategy's record ---

/// Recording a step writes a record that shares every stage it did not change with the one
/// before: at 5,000 workers (500 stages) a copy of every stage per step was most of the
/// engine's work.
#[test]
fn a_recorded_step_copies_only_the_stages_it_changes() {
    use kup_core::strategy::{
        Progress, STAGE_COMPLETE, STAGE_IMAGES, STAGE_START, STAGE_WORKERS, StageKey, StepAt,
        StrategyCommand,
    };
    use kup_types::strategy::{Phase, Stage, Step};
    use kup_types::{
        AlarmRestrictions, ApplyType, StepResult, StrategyRecord, StrategyState, StrategyWrite,
        UpgradeMode,
    };
    use std::sync::Arc;

    let stage = |name: &str, step: &str| {
        Arc::new(Stage::new(
            name.into(),
            Vec::new(),
            vec![Step::new(step, Vec::new(), 60)],
        ))
    };
    let mut apply_phase = Phase::new("apply");
    apply_phase.stages = vec![
        stage(STAGE_START, "kube-upgrade-start"),
        stage(STAGE_IMAGES, "kube-upgrade-download-images"),
    ];
    apply_phase
        .stages
        .extend((0..50).map(|_| stage(STAGE_WORKERS, "kube-host-upgrade-kubelet")));
    apply_phase
        .stages
        .push(stage(STAGE_COMPLETE, "kube-upgrade-complete"));
    let record = StrategyRecord {
        uuid: "s-1".into(),
        to_version: v("v1.43.1"),
        controller_apply_type: ApplyType::Serial,
        storage_apply_type: ApplyType::Ignore,
        worker_apply_type: ApplyType::Parallel,
        max_parallel_worker_hosts: 10,
        alarm_restrictions: AlarmRestrictions::Strict,
        mode: UpgradeMode::Online,
        partial_ok: false,
        rollback_on_abort: false,
        state: StrategyState::Applying,
        build_phase: Phase::new("build"),
        apply_phase,
        abort_phase: Phase::new("abort"),
        batch: None,
        skipped: Vec::new(),
        predicted_seconds: 0,
        lower_bound_seconds: 0,
        created_at: now(),
        updated_at: None,
    };
    let mut world = World::at("v1.42.1");
    world.snap.strategy = Some(Arc::new(record));
    let at = StepAt {
        stage: StageKey::Images,
        step: "kube-upgrade-download-images",
    };
    let d = world
        .decide(&Command::Strategy(StrategyCommand::Progress(Progress::At(
            at,
        ))))
        .expect("recorded");
    let Some(StrategyWrite::Put(new)) = d.batch.strategy else {
        panic!("a strategy write: {:?}", d.batch.strategy);
    };
    let old = world.snap.strategy.as_ref().expect("set");
    let (old, new) = (&old.apply_phase.stages, &new.apply_phase.stages);
    assert_eq!(old.len(), new.len());
    // The start stage ends and the images stage begins: copied and changed.
    assert_eq!(new[0].result, StepResult::Success);
    assert_eq!(new[1].result, StepResult::Wait);
    for i in 0..2 {
        assert!(!Arc::ptr_eq(&old[i], &new[i]), "stage {i} changed in place");
    }
    for i in 2..old.len() {
        assert!(Arc::ptr_eq(&old[i], &new[i]), "stage {i} copied");
    }
}
