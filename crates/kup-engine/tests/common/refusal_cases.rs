//! The refusal table shared by the engine's tests and the HTTP API's tests: a precondition,
//! the command, and the refusal it must meet.
#![allow(dead_code)]

use super::*;
use kup_core::{Command, Refusal};
use kup_sim::{Inventory, SimModel};
use kup_types::{AdminState, Alarm, KubeUpgradeState, KubeVersion, Severity, VersionMeta};

#[derive(Clone)]
pub enum Step {
    /// A command that must be accepted; waits for what it starts.
    Ok(Command),
    /// A command that must be accepted, leaving its step in flight (the simulation slowed).
    InFlight(Command),
    Mutate(fn(&mut SimModel)),
}

fn upto_first_master() -> Vec<Step> {
    vec![
        Step::Ok(start("v1.16.2")),
        Step::Ok(Command::DownloadImages),
        Step::Ok(cp("controller-1")),
    ]
}

fn upto_second_master() -> Vec<Step> {
    let mut s = upto_first_master();
    s.extend([
        Step::Ok(Command::UpgradeNetworking),
        Step::Ok(cp("controller-0")),
    ]);
    s
}

fn controllers_done() -> Vec<Step> {
    let mut s = upto_second_master();
    s.extend(
        [
            lock("controller-1"),
            kubelet("controller-1"),
            unlock("controller-1"),
            swact("controller-0"),
            lock("controller-0"),
            kubelet("controller-0"),
            unlock("controller-0"),
        ]
        .map(Step::Ok),
    );
    s
}

fn with(mut steps: Vec<Step>, more: impl IntoIterator<Item = Step>) -> Vec<Step> {
    steps.extend(more);
    steps
}

fn alarm(id: &str, mgmt: bool) -> Alarm {
    Alarm {
        uuid: format!("uuid-{id}"),
        alarm_id: id.into(),
        entity_instance_id: "host=worker-0".into(),
        reason_text: "test alarm".into(),
        severity: Severity::Major,
        management_affecting: mgmt,
        timestamp: jiff::Timestamp::UNIX_EPOCH,
    }
}

pub struct Case {
    pub name: &'static str,
    pub cluster: fn() -> Inventory,
    pub setup: Vec<Step>,
    pub command: Command,
    pub expect: fn(&Refusal) -> bool,
    /// Words the one-line message must contain.
    pub says: &'static str,
}

fn standard() -> Inventory {
    seed_cluster()
}
fn duplex() -> Inventory {
    example("aio-duplex.yaml")
}
fn simplex() -> Inventory {
    example("aio-simplex.yaml")
}
fn with_unreachable_version() -> Inventory {
    let mut inv = seed_cluster();
    inv.versions.push(VersionMeta {
        version: KubeVersion::new(1, 18, 0),
        upgrade_from: vec![KubeVersion::new(1, 17, 0)],
        downgrade_to: vec![],
        applied_patches: vec![],
        available_patches: vec![],
        images: vec![],
    });
    inv
}

pub fn cases() -> Vec<Case> {
    use Refusal as R;
    let c = |name, setup, command, expect, says| Case {
        name,
        cluster: standard,
        setup,
        command,
        expect,
        says,
    };
    vec![
        // -- start --
        c(
            "start twice",
            vec![Step::Ok(start("v1.16.2"))],
            start("v1.16.2"),
            |r| matches!(r, R::AlreadyInProgress),
            "already in progress",
        ),
        c(
            "start with a malformed version",
            vec![],
            start("1.16"),
            |r| matches!(r, R::InvalidVersion(_)),
            "invalid Kubernetes version \"1.16\"",
        ),
        c(
            "start to an unknown version",
            vec![],
            start("v1.99.0"),
            |r| matches!(r, R::UnknownVersion(_)),
            "v1.99.0 is not available",
        ),
        c(
            "start to the running version",
            vec![],
            start("v1.16.1"),
            |r| matches!(r, R::TargetNotAvailable { .. }),
            "not in available state (it is active)",
        ),
        Case {
            cluster: with_unreachable_version,
            ..c(
                "start to an unreachable version",
                vec![],
                start("v1.18.0"),
                |r| matches!(r, R::NoUpgradePath { .. }),
                "v1.16.1 cannot upgrade to version v1.18.0",
            )
        },
        c(
            "start while versions are mixed",
            vec![Step::Mutate(|m| {
                m.host_mut("worker-0").unwrap().kubelet_version = Some(KubeVersion::new(1, 16, 2))
            })],
            start("v1.16.2"),
            |r| matches!(r, R::RunningVersionNotActive { .. }),
            "running: v1.16.1, v1.16.2",
        ),
        c(
            "start with a management-affecting alarm, even forced",
            vec![Step::Mutate(|m| m.alarms.push(alarm("400.001", true)))],
            Command::Start {
                to_version: "v1.16.2".into(),
                force: true,
                alarm_ignore: vec![],
            },
            |r| matches!(r, R::Unhealthy(_)),
            "[1] of which are management affecting: 400.001 (host=worker-0)",
        ),
        c(
            "start with a minor alarm, not forced",
            vec![Step::Mutate(|m| m.alarms.push(alarm("100.101", false)))],
            start("v1.16.2"),
            |r| matches!(r, R::Unhealthy(_)),
            "100.101",
        ),
        c(
            "start with a locked host",
            vec![Step::Ok(lock("worker-1"))],
            start("v1.16.2"),
            |r| matches!(r, R::Unhealthy(_)),
            "Hosts not unlocked/enabled/available: worker-1 (locked/disabled/online)",
        ),
        c(
            "start with a degraded host",
            vec![Step::Mutate(|m| {
                m.host_mut("storage-1").unwrap().availability = kup_types::Availability::Degraded
            })],
            start("v1.16.2"),
            |r| matches!(r, R::Unhealthy(_)),
            "storage-1 (unlocked/enabled/degraded)",
        ),
        c(
            "start with a node not ready",
            vec![Step::Mutate(|m| {
                m.host_mut("worker-0").unwrap().node_ready = false
            })],
            start("v1.16.2"),
            |r| matches!(r, R::Unhealthy(_)),
            "Kubernetes nodes not ready: worker-0",
        ),
        c(
            "start with a control-plane pod not ready",
            vec![Step::Mutate(|m| {
                m.host_mut("controller-1").unwrap().control_plane_ready = false
            })],
            start("v1.16.2"),
            |r| matches!(r, R::Unhealthy(_)),
            "kube-apiserver-controller-1",
        ),
        c(
            "start with an application in a bad state",
            vec![Step::Mutate(|m| {
                m.applications[1].status = "apply-failed".into()
            })],
            start("v1.16.2"),
            |r| matches!(r, R::Unhealthy(_)),
            "cert-manager (apply-failed)",
        ),
        c(
            "start with an application that does not support the target",
            vec![Step::Mutate(|m| {
                m.applications[0].k8s_max = Some(KubeVersion::new(1, 16, 1))
            })],
            start("v1.16.2"),
            |r| matches!(r, R::IncompatibleApps { .. }),
            "platform-integ-apps (supports v1.16.0 to v1.16.1)",
        ),
        // -- state gates --
        c(
            "download without an upgrade",
            vec![],
            Command::DownloadImages,
            |r| matches!(r, R::NotInProgress),
            "not in progress",
        ),
        c(
            "download twice",
            vec![
                Step::Ok(start("v1.16.2")),
                Step::Ok(Command::DownloadImages),
            ],
            Command::DownloadImages,
            |r| {
                matches!(
                    r,
                    R::WrongState {
                        state: KubeUpgradeState::DownloadedImages,
                        ..
                    }
                )
            },
            "must be in upgrade-started or downloading-images-failed state to download images",
        ),
        c(
            "networking before the first control plane",
            vec![
                Step::Ok(start("v1.16.2")),
                Step::Ok(Command::DownloadImages),
            ],
            Command::UpgradeNetworking,
            |r| matches!(r, R::WrongState { .. }),
            "must be in upgraded-first-master or upgrading-networking-failed state to upgrade networking",
        ),
        c(
            "networking twice",
            with(upto_first_master(), [Step::Ok(Command::UpgradeNetworking)]),
            Command::UpgradeNetworking,
            |r| {
                matches!(
                    r,
                    R::WrongState {
                        state: KubeUpgradeState::UpgradedNetworking,
                        ..
                    }
                )
            },
            "upgrade networking",
        ),
        // -- control plane --
        c(
            "control plane before the images",
            vec![Step::Ok(start("v1.16.2"))],
            cp("controller-1"),
            |r| matches!(r, R::WrongState { .. }),
            "to upgrade the first control plane (it is in upgrade-started state)",
        ),
        c(
            "control plane without an upgrade",
            vec![],
            cp("controller-1"),
            |r| matches!(r, R::NotInProgress),
            "not in progress",
        ),
        c(
            "control plane on a worker",
            vec![Step::Ok(start("v1.16.2"))],
            cp("worker-0"),
            |r| matches!(r, R::NoControlPlane { .. }),
            "worker-0 does not have a kubernetes control plane",
        ),
        c(
            "control plane on a storage host",
            vec![Step::Ok(start("v1.16.2"))],
            cp("storage-0"),
            |r| matches!(r, R::NoControlPlane { .. }),
            "it is a storage host",
        ),
        c(
            "second control plane before networking",
            upto_first_master(),
            cp("controller-0"),
            |r| matches!(r, R::WrongState { .. }),
            "upgraded-networking or upgrading-second-master-failed state to upgrade the second control plane",
        ),
        c(
            "first control plane again",
            upto_first_master(),
            cp("controller-1"),
            |r| matches!(r, R::ControlPlaneAlreadyUpgraded { .. }),
            "already upgraded to v1.16.2",
        ),
        c(
            "control plane on a locked controller",
            vec![
                Step::Ok(start("v1.16.2")),
                Step::Ok(Command::DownloadImages),
                Step::Ok(lock("controller-1")),
            ],
            cp("controller-1"),
            |r| matches!(r, R::ControlPlaneHostState { .. }),
            "unlocked and enabled",
        ),
        c(
            "control plane while it is being upgraded",
            vec![
                Step::Ok(start("v1.16.2")),
                Step::Ok(Command::DownloadImages),
                Step::InFlight(cp("controller-1")),
            ],
            cp("controller-1"),
            |r| matches!(r, R::ControlPlaneBusy(_)),
            "already being upgraded",
        ),
        c(
            "the other control plane while the first is upgrading",
            vec![
                Step::Ok(start("v1.16.2")),
                Step::Ok(Command::DownloadImages),
                Step::InFlight(cp("controller-1")),
            ],
            cp("controller-0"),
            |r| {
                matches!(
                    r,
                    R::WrongState {
                        state: KubeUpgradeState::UpgradingFirstMaster,
                        ..
                    }
                )
            },
            "first control plane",
        ),
        // -- kubelet --
        c(
            "kubelet on a storage host",
            upto_second_master(),
            kubelet("storage-0"),
            |r| matches!(r, R::NoKubelet { .. }),
            "storage-0 does not have a kubelet",
        ),
        c(
            "kubelet before the second control plane",
            with(
                upto_first_master(),
                [
                    Step::Ok(Command::UpgradeNetworking),
                    Step::Ok(lock("controller-1")),
                ],
            ),
            kubelet("controller-1"),
            |r| matches!(r, R::WrongState { .. }),
            "upgraded-second-master or upgrading-kubelets state to upgrade kubelets",
        ),
        c(
            "worker kubelet before the controllers",
            with(upto_second_master(), [Step::Ok(lock("worker-0"))]),
            kubelet("worker-0"),
            |r| matches!(r, R::ControllersFirst(_)),
            "not yet upgraded: controller-0, controller-1",
        ),
        c(
            "kubelet on an unlocked host",
            upto_second_master(),
            kubelet("controller-1"),
            |r| matches!(r, R::KubeletHostState { .. }),
            "must be locked and online to upgrade the kubelet (controller-1 is unlocked/enabled/available)",
        ),
        c(
            "kubelet while it is being upgraded",
            with(
                upto_second_master(),
                [
                    Step::Ok(lock("controller-1")),
                    Step::InFlight(kubelet("controller-1")),
                ],
            ),
            kubelet("controller-1"),
            |r| matches!(r, R::KubeletBusy(_)),
            "already being upgraded",
        ),
        Case {
            cluster: simplex,
            ..c(
                "simplex kubelet on a locked host",
                vec![
                    Step::Ok(start("v1.16.2")),
                    Step::Ok(Command::DownloadImages),
                    Step::Ok(cp("controller-0")),
                    Step::Ok(Command::UpgradeNetworking),
                    Step::Mutate(|m| {
                        m.host_mut("controller-0").unwrap().administrative = AdminState::Locked
                    }),
                ],
                kubelet("controller-0"),
                |r| matches!(r, R::KubeletHostState { .. }),
                "must be unlocked and available",
            )
        },
        Case {
            cluster: simplex,
            ..c(
                "simplex kubelet before networking",
                vec![
                    Step::Ok(start("v1.16.2")),
                    Step::Ok(Command::DownloadImages),
                    Step::Ok(cp("controller-0")),
                ],
                kubelet("controller-0"),
                |r| matches!(r, R::WrongState { .. }),
                "upgraded-networking or upgrading-kubelets",
            )
        },
        // -- complete, delete, failed --
        c(
            "complete before the kubelets",
            upto_second_master(),
            Command::Complete,
            |r| matches!(r, R::WrongState { .. }),
            "must be in upgrading-kubelets state to complete",
        ),
        c(
            "complete with workers left",
            controllers_done(),
            Command::Complete,
            |r| matches!(r, R::HostsNotDone(_)),
            "has not completed the kubernetes upgrade: worker-0, worker-1",
        ),
        c(
            "complete while a control plane runs the old version",
            with(
                controllers_done(),
                [
                    lock("worker-0"),
                    kubelet("worker-0"),
                    unlock("worker-0"),
                    lock("worker-1"),
                    kubelet("worker-1"),
                    unlock("worker-1"),
                ]
                .map(Step::Ok)
                .into_iter()
                .chain([Step::Mutate(|m| {
                    m.host_mut("controller-0").unwrap().control_plane_version =
                        Some(KubeVersion::new(1, 16, 1))
                })]),
            ),
            Command::Complete,
            |r| matches!(r, R::TargetNotActive { .. }),
            "must be active on all hosts to complete (it is partial)",
        ),
        c(
            "delete before complete",
            vec![Step::Ok(start("v1.16.2"))],
            Command::Delete,
            |r| matches!(r, R::WrongState { .. }),
            "must be in upgrade-complete or upgrade-aborted state to delete",
        ),
        c(
            "delete without an upgrade",
            vec![],
            Command::Delete,
            |r| matches!(r, R::NotInProgress),
            "not in progress",
        ),
        c(
            "set failed when nothing is in flight",
            vec![Step::Ok(start("v1.16.2"))],
            Command::MarkFailed(KubeUpgradeState::DownloadingImagesFailed),
            |r| matches!(r, R::CannotSetFailed(_)),
            "upgrade-started state cannot be set to failed",
        ),
        c(
            "set the wrong step failed",
            vec![
                Step::Ok(start("v1.16.2")),
                Step::InFlight(Command::DownloadImages),
            ],
            Command::MarkFailed(KubeUpgradeState::UpgradingNetworkingFailed),
            |r| matches!(r, R::CannotSetFailed(_)),
            "downloading-images state cannot be set to failed",
        ),
        c(
            "set a host's step failed when none is in flight",
            vec![Step::Ok(start("v1.16.2"))],
            Command::FailHostStep {
                host: "worker-0".into(),
            },
            |r| matches!(r, R::NoStepInFlight(_)),
            "Host worker-0 has no upgrade step or action in progress to mark failed",
        ),
        // -- host actions --
        c(
            "lock the active controller",
            vec![],
            lock("controller-0"),
            |r| matches!(r, R::LockActiveController { .. }),
            "active controller; swact to controller-1 first",
        ),
        c(
            "lock the last available controller",
            vec![Step::Ok(lock("controller-1"))],
            lock("controller-0"),
            |r| matches!(r, R::LockLastController(_)),
            "only available controller",
        ),
        Case {
            cluster: simplex,
            ..c(
                "lock the simplex controller",
                vec![],
                lock("controller-0"),
                |r| matches!(r, R::LockLastController(_)),
                "only available controller",
            )
        },
        c(
            "lock a locked host",
            vec![Step::Ok(lock("worker-0"))],
            lock("worker-0"),
            |r| matches!(r, R::AlreadyLocked(_)),
            "already locked",
        ),
        c(
            "lock a controller whose control plane is upgrading",
            vec![
                Step::Ok(start("v1.16.2")),
                Step::Ok(Command::DownloadImages),
                Step::InFlight(cp("controller-1")),
            ],
            lock("controller-1"),
            |r| matches!(r, R::LockDuringControlPlane { .. }),
            "while the control plane on controller-1 is being upgraded",
        ),
        c(
            "unlock a host that is still locking",
            vec![Step::InFlight(lock("worker-0"))],
            unlock("worker-0"),
            |r| matches!(r, R::HostBusy { .. }),
            "action in progress (Locking)",
        ),
        c(
            "unlock an unlocked host",
            vec![],
            unlock("worker-0"),
            |r| matches!(r, R::AlreadyUnlocked(_)),
            "already unlocked",
        ),
        c(
            "unlock while the kubelet upgrades",
            with(
                upto_second_master(),
                [
                    Step::Ok(lock("controller-1")),
                    Step::InFlight(kubelet("controller-1")),
                ],
            ),
            unlock("controller-1"),
            |r| matches!(r, R::UnlockDuringKubelet(_)),
            "Can not unlock controller-1 while upgrading kubelet",
        ),
        c(
            "swact a worker",
            vec![],
            swact("worker-0"),
            |r| matches!(r, R::SwactNotController(_)),
            "not a controller",
        ),
        c(
            "swact the standby",
            vec![],
            swact("controller-1"),
            |r| matches!(r, R::SwactNotActive(_)),
            "not the active controller",
        ),
        c(
            "swact with the standby locked",
            vec![Step::Ok(lock("controller-1"))],
            swact("controller-0"),
            |r| matches!(r, R::SwactNoStandby(_)),
            "no other controller is unlocked, enabled and available",
        ),
        c(
            "swact to a degraded standby without --force",
            vec![Step::Mutate(|m| {
                m.host_mut("controller-1").unwrap().availability = kup_types::Availability::Degraded
            })],
            swact("controller-0"),
            |r| matches!(r, R::SwactNoStandby(_)),
            "no other controller is unlocked, enabled and available",
        ),
        c(
            "force-swact to an offline standby",
            vec![Step::Mutate(|m| {
                m.host_mut("controller-1").unwrap().availability = kup_types::Availability::Offline
            })],
            Command::Swact {
                host: "controller-0".into(),
                force: true,
            },
            |r| matches!(r, R::SwactNoStandby(_)),
            "no other controller is unlocked, enabled and available",
        ),
        c(
            "force-swact with the standby locked",
            vec![Step::Ok(lock("controller-1"))],
            Command::Swact {
                host: "controller-0".into(),
                force: true,
            },
            |r| matches!(r, R::SwactNoStandby(_)),
            "no other controller is unlocked, enabled and available",
        ),
        c(
            "swact during a control-plane upgrade",
            vec![
                Step::Ok(start("v1.16.2")),
                Step::Ok(Command::DownloadImages),
                Step::InFlight(cp("controller-1")),
            ],
            swact("controller-0"),
            |r| matches!(r, R::SwactDuringControlPlane(_)),
            "while a control plane upgrade is in progress",
        ),
        // -- the safety analysis before a lock --
        Case {
            cluster: duplex,
            ..c(
                "lock a host whose drain loses a bare pod",
                vec![],
                lock("controller-1"),
                |r| matches!(r, R::LockUnsafe { .. }),
                "pod default/debug-shell",
            )
        },
        c(
            "lock a host whose drain breaks a budget",
            vec![Step::Mutate(|m| {
                m.move_pods(|p| p.owner == "web", "worker-0")
            })],
            lock("worker-0"),
            |r| matches!(r, R::LockUnsafe { .. }),
            "pdb default/web-pdb: evicting 4 pods exceeds the 2 allowed disruptions",
        ),
        c(
            "lock a worker while the other worker is locking",
            vec![Step::InFlight(lock("worker-0"))],
            lock("worker-1"),
            |r| matches!(r, R::LockUnsafe { with, .. } if with == &["worker-0".to_string()]),
            "Can not lock worker-1 while worker-0 is locking: draining it is unsafe",
        ),
        c(
            "an unknown host",
            vec![Step::Ok(start("v1.16.2"))],
            cp("controller-9"),
            |r| matches!(r, R::UnknownHost(_)) && r.is_not_found(),
            "Host controller-9 not found",
        ),
        // -- abort --
        c(
            "abort without an upgrade",
            vec![],
            Command::Abort,
            |r| matches!(r, R::NotInProgress),
            "not in progress",
        ),
        c(
            "abort twice",
            vec![Step::Ok(start("v1.16.2")), Step::Ok(Command::Abort)],
            Command::Abort,
            |r| matches!(r, R::CannotAbort(_)),
            "The kubernetes upgrade can not be aborted in upgrade-aborted state",
        ),
        c(
            "start again before the aborted upgrade is deleted",
            vec![Step::Ok(start("v1.16.2")), Step::Ok(Command::Abort)],
            start("v1.16.2"),
            |r| matches!(r, R::AlreadyInProgress),
            "",
        ),
        // -- cordon (aio-simplex only) --
        c(
            "cordon on a standard system",
            vec![
                Step::Ok(start("v1.16.2")),
                Step::Ok(Command::DownloadImages),
            ],
            Command::Cordon {
                host: "controller-1".into(),
            },
            |r| matches!(r, R::CordonNotSimplex(_)),
            "The 'system kube-host-cordon' is not supported in standard",
        ),
        Case {
            cluster: simplex,
            ..c(
                "uncordon before the kubelet",
                vec![
                    Step::Ok(start("v1.16.2")),
                    Step::Ok(Command::DownloadImages),
                    Step::Ok(Command::Cordon {
                        host: "controller-0".into(),
                    }),
                    Step::Ok(cp("controller-0")),
                    Step::Ok(Command::UpgradeNetworking),
                ],
                Command::Uncordon {
                    host: "controller-0".into(),
                },
                |r| matches!(r, R::WrongState { .. }),
                "must be in upgrading-kubelets or uncordon-failed state to uncordon",
            )
        },
        // -- three control planes: never two down at once --
        Case {
            cluster: three_control_planes,
            ..c(
                "a third control plane while the second upgrades",
                with(
                    kubeadm_upto_networking(),
                    [Step::InFlight(cp("control-plane-1"))],
                ),
                cp("control-plane-2"),
                |r| matches!(r, R::ControlPlaneInFlight { .. }),
                "the control plane on control-plane-1 is being upgraded; control planes are upgraded one at a time",
            )
        },
        Case {
            cluster: three_control_planes,
            ..c(
                "a control plane while another control-plane host is locked",
                with(
                    kubeadm_upto_networking(),
                    [Step::Ok(lock("control-plane-2"))],
                ),
                cp("control-plane-1"),
                |r| matches!(r, R::PeerControlPlaneDown { .. }),
                "control-plane host control-plane-2 is not in service (locked/disabled/online); two control-plane hosts must never be down at once",
            )
        },
        Case {
            cluster: three_control_planes,
            ..c(
                "the first control plane while another control-plane host is locked",
                vec![
                    Step::Ok(start("v1.29.10")),
                    Step::Ok(Command::DownloadImages),
                    Step::Ok(lock("control-plane-2")),
                ],
                cp("control-plane-0"),
                |r| {
                    matches!(
                        r,
                        R::PeerControlPlaneUnsettled { .. } | R::PeerControlPlaneDown { .. }
                    )
                },
                "control-plane-2",
            )
        },
        Case {
            cluster: three_control_planes,
            ..c(
                "lock a control-plane host while another is locked",
                vec![Step::Ok(lock("control-plane-2"))],
                lock("control-plane-1"),
                |r| matches!(r, R::LockControlPlanePeerDown { .. }),
                "Can not lock control-plane-1: control-plane host control-plane-2 is not in service",
            )
        },
        Case {
            cluster: three_control_planes,
            ..c(
                "lock a control-plane host while another's control plane upgrades",
                with(
                    kubeadm_upto_networking(),
                    [Step::InFlight(cp("control-plane-1"))],
                ),
                lock("control-plane-2"),
                |r| matches!(r, R::LockDuringControlPlane { .. }),
                "Can not lock control-plane-2 while the control plane on control-plane-1 is being upgraded",
            )
        },
        Case {
            cluster: three_control_planes,
            ..c(
                "swact on a kubeadm cluster",
                vec![],
                swact("control-plane-0"),
                |r| matches!(r, R::SwactNoActiveRole(_)),
                "a kubeadm cluster has no active controller to hand over",
            )
        },
        Case {
            cluster: three_control_planes,
            ..c(
                "kubelets before the last control plane",
                with(kubeadm_upto_networking(), [Step::Ok(cp("control-plane-1"))]),
                kubelet("control-plane-0"),
                |r| matches!(r, R::WrongState { .. }),
                "(it is in upgrading-second-master state)",
            )
        },
    ]
}

fn three_control_planes() -> Inventory {
    example("kubeadm-3-control-planes.yaml")
}

/// A kubeadm cluster's upgrade to v1.29.10 up to its networking.
fn kubeadm_upto_networking() -> Vec<Step> {
    vec![
        Step::Ok(start("v1.29.10")),
        Step::Ok(Command::DownloadImages),
        Step::Ok(cp("control-plane-0")),
        Step::Ok(Command::UpgradeNetworking),
    ]
}

impl Harness {
    /// Brings the harness to a case's precondition.
    pub async fn prepare(&self, case: &Case) {
        for step in case.setup.clone() {
            match step {
                Step::Ok(cmd) => {
                    self.ok(cmd).await;
                }
                Step::InFlight(cmd) => {
                    self.sim.set_time_scale(1000.0);
                    self.run(cmd)
                        .await
                        .unwrap_or_else(|e| panic!("{}: setup refused: {e}", case.name));
                }
                Step::Mutate(f) => self.sim.mutate(f),
            }
        }
    }
}
