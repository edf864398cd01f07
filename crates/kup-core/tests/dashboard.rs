//! The grid's rule: which state each host is shown in, and why.

mod common;

use std::sync::Arc;

use common::{host_mut, snapshot, standard, upgrade_record, v};
use jiff::Timestamp;
use kup_core::dashboard::{self, Tiles};
use kup_types::{
    AdminState, AlarmRestrictions, ApplyType, HostUpgradeStatus, KubeUpgradeState, Observation,
    Operation, OperationRecord, OperationState, SkippedHost, Snapshot, StrategyRecord,
    StrategyState, TileState, UpgradeMode,
};

struct World {
    obs: Observation,
    snap: Snapshot,
}

struct Case {
    name: &'static str,
    /// Everything starts at v1.16.1 with an upgrade to v1.16.2 started.
    setup: fn(&mut World),
    host: &'static str,
    state: TileState,
    reason: Option<&'static str>,
}

fn world() -> World {
    let obs = standard("v1.16.1");
    let mut snap = snapshot(&obs);
    snap.reindex();
    snap.upgrade = Some(upgrade_record(
        "v1.16.1",
        "v1.16.2",
        KubeUpgradeState::UpgradingKubelets,
    ));
    World { obs, snap }
}

fn kubelet_at(w: &mut World, host: &str, version: &str) {
    w.obs
        .nodes
        .iter_mut()
        .filter(|n| n.name == host)
        .for_each(|n| n.kubelet_version = v(version));
}

fn control_plane_at(w: &mut World, host: &str, version: &str) {
    w.obs
        .control_plane_pods
        .iter_mut()
        .filter(|p| p.host == host)
        .for_each(|p| p.version = v(version));
}

fn status(w: &mut World, host: &str, s: HostUpgradeStatus) {
    w.snap
        .hosts
        .iter_mut()
        .filter(|r| r.hostname == host)
        .for_each(|r| r.status = Some(s));
}

fn running(w: &mut World, op: Operation) {
    w.snap.operations.push(OperationRecord {
        id: "op-1".into(),
        op,
        state: OperationState::Running,
        attempt: 1,
        started_at: Timestamp::UNIX_EPOCH,
        deadline: Timestamp::UNIX_EPOCH,
        ended_at: None,
        detail: None,
    });
}

fn strategy(w: &mut World, f: impl FnOnce(&mut StrategyRecord)) {
    let mut s = StrategyRecord {
        uuid: "strategy-0".into(),
        to_version: v("v1.16.2"),
        controller_apply_type: ApplyType::Serial,
        storage_apply_type: ApplyType::Ignore,
        worker_apply_type: ApplyType::Parallel,
        max_parallel_worker_hosts: 2,
        alarm_restrictions: AlarmRestrictions::Strict,
        mode: UpgradeMode::Online,
        partial_ok: true,
        rollback_on_abort: false,
        state: StrategyState::Applying,
        build_phase: kup_types::strategy::Phase::new("build"),
        apply_phase: kup_types::strategy::Phase::new("apply"),
        abort_phase: kup_types::strategy::Phase::new("abort"),
        batch: None,
        skipped: Vec::new(),
        predicted_seconds: 600,
        lower_bound_seconds: 500,
        created_at: Timestamp::UNIX_EPOCH,
        updated_at: None,
    };
    f(&mut s);
    w.snap.strategy = Some(Arc::new(s));
}

fn nothing(_: &mut World) {}

const CASES: &[Case] = &[
    Case {
        name: "a worker still at the old version waits",
        setup: nothing,
        host: "worker-0",
        state: TileState::Waiting,
        reason: None,
    },
    Case {
        name: "a worker at the target is done",
        setup: |w| kubelet_at(w, "worker-0", "v1.16.2"),
        host: "worker-0",
        state: TileState::Done,
        reason: None,
    },
    Case {
        name: "a controller whose kubelet moved but not its control plane waits",
        setup: |w| kubelet_at(w, "controller-0", "v1.16.2"),
        host: "controller-0",
        state: TileState::Waiting,
        reason: None,
    },
    Case {
        name: "a controller with both at the target is done",
        setup: |w| {
            kubelet_at(w, "controller-0", "v1.16.2");
            control_plane_at(w, "controller-0", "v1.16.2");
        },
        host: "controller-0",
        state: TileState::Done,
        reason: None,
    },
    Case {
        name: "a failed status is failed, even with a step running again",
        setup: |w| {
            status(w, "worker-1", HostUpgradeStatus::UpgradingKubeletFailed);
            running(
                w,
                Operation::Unlock {
                    host: "worker-1".into(),
                },
            );
        },
        host: "worker-1",
        state: TileState::Failed,
        reason: Some("upgrading-kubelet-failed"),
    },
    Case {
        name: "a running lock is in flight, named by its kind",
        setup: |w| {
            running(
                w,
                Operation::Lock {
                    host: "worker-0".into(),
                    force: false,
                },
            )
        },
        host: "worker-0",
        state: TileState::InFlight,
        reason: Some("lock"),
    },
    Case {
        name: "the cluster's own task is in flight",
        setup: |w| host_mut(&mut w.obs, "worker-0").task = Some("Unlocking".into()),
        host: "worker-0",
        state: TileState::InFlight,
        reason: Some("Unlocking"),
    },
    Case {
        name: "an upgrading status is in flight",
        setup: |w| status(w, "controller-1", HostUpgradeStatus::UpgradingControlPlane),
        host: "controller-1",
        state: TileState::InFlight,
        reason: Some("upgrading-control-plane"),
    },
    Case {
        name: "a host of the batch in progress is in flight before its first step",
        setup: |w| strategy(w, |s| s.batch = Some(vec!["worker-0".into()])),
        host: "worker-0",
        state: TileState::InFlight,
        reason: Some("in the worker batch being upgraded"),
    },
    Case {
        name: "a host of the batch already at the target is done",
        setup: |w| {
            kubelet_at(w, "worker-0", "v1.16.2");
            strategy(w, |s| s.batch = Some(vec!["worker-0".into()]));
        },
        host: "worker-0",
        state: TileState::Done,
        reason: None,
    },
    Case {
        name: "a host the strategy left out is skipped, with why",
        setup: |w| {
            strategy(w, |s| {
                s.skipped = vec![SkippedHost {
                    host: "worker-1".into(),
                    reason: "emptyDir volume of pod db-0".into(),
                }]
            })
        },
        host: "worker-1",
        state: TileState::Skipped,
        reason: Some("emptyDir volume of pod db-0"),
    },
    Case {
        name: "a locked host outside any step is locked",
        setup: |w| host_mut(&mut w.obs, "worker-1").administrative = AdminState::Locked,
        host: "worker-1",
        state: TileState::Locked,
        reason: None,
    },
    Case {
        name: "a storage host runs no Kubernetes",
        setup: nothing,
        host: "storage-0",
        state: TileState::Idle,
        reason: Some("runs no Kubernetes"),
    },
    Case {
        name: "without an upgrade or a strategy every host is idle",
        setup: |w| w.snap.upgrade = None,
        host: "worker-0",
        state: TileState::Idle,
        reason: None,
    },
    Case {
        name: "after the upgrade row is deleted the strategy's target still counts",
        setup: |w| {
            w.snap.upgrade = None;
            kubelet_at(w, "worker-0", "v1.16.2");
            strategy(w, |s| s.state = StrategyState::Applied);
        },
        host: "worker-0",
        state: TileState::Done,
        reason: None,
    },
    Case {
        name: "the batch a failed strategy stopped in is not in flight",
        setup: |w| {
            strategy(w, |s| {
                s.batch = Some(vec!["worker-0".into()]);
                s.state = StrategyState::ApplyFailed;
            })
        },
        host: "worker-0",
        state: TileState::Waiting,
        reason: None,
    },
    Case {
        name: "the batch of an aborting strategy is not in flight: the abort goes the other way",
        setup: |w| {
            strategy(w, |s| {
                s.batch = Some(vec!["worker-0".into()]);
                s.state = StrategyState::Aborting;
            })
        },
        host: "worker-0",
        state: TileState::Waiting,
        reason: None,
    },
    Case {
        name: "a host left out and upgraded later is done",
        setup: |w| {
            kubelet_at(w, "worker-1", "v1.16.2");
            strategy(w, |s| {
                s.skipped = vec![SkippedHost {
                    host: "worker-1".into(),
                    reason: "unsafe".into(),
                }]
            });
        },
        host: "worker-1",
        state: TileState::Done,
        reason: None,
    },
    Case {
        name: "while aborting, a host still at the target waits for the way back",
        setup: |w| {
            kubelet_at(w, "worker-0", "v1.16.2");
            w.snap.upgrade = Some(upgrade_record(
                "v1.16.1",
                "v1.16.2",
                KubeUpgradeState::UpgradeAborting,
            ));
        },
        host: "worker-0",
        state: TileState::Waiting,
        reason: None,
    },
    Case {
        name: "while aborting, a host back at the from-version is done",
        setup: |w| {
            w.snap.upgrade = Some(upgrade_record(
                "v1.16.1",
                "v1.16.2",
                KubeUpgradeState::UpgradeAborted,
            ))
        },
        host: "worker-1",
        state: TileState::Done,
        reason: None,
    },
    Case {
        name: "a strategy that failed to build sets no target",
        setup: |w| {
            w.snap.upgrade = None;
            strategy(w, |s| s.state = StrategyState::BuildFailed);
        },
        host: "worker-0",
        state: TileState::Idle,
        reason: None,
    },
    Case {
        name: "a host past an applied strategy's target is done",
        setup: |w| {
            w.snap.upgrade = None;
            kubelet_at(w, "worker-0", "v1.17.0");
            strategy(w, |s| s.state = StrategyState::Applied);
        },
        host: "worker-0",
        state: TileState::Done,
        reason: None,
    },
    Case {
        name: "a worker whose node is not observed is not done",
        setup: |w| w.obs.nodes.retain(|n| n.name != "worker-0"),
        host: "worker-0",
        state: TileState::Waiting,
        reason: None,
    },
];

#[test]
fn each_host_is_shown_in_one_state() {
    for case in CASES {
        let mut w = world();
        (case.setup)(&mut w);
        let tiles = Tiles::new(&w.snap, &w.obs);
        let tile = tiles
            .some(&[case.host.to_string()])
            .pop()
            .unwrap_or_else(|| panic!("{}: no tile", case.name));
        assert_eq!(tile.state, case.state, "{}", case.name);
        assert_eq!(tile.reason.as_deref(), case.reason, "{}", case.name);
    }
}

#[test]
fn tiles_follow_the_clusters_order_and_skip_unknown_names() {
    let w = world();
    let tiles = Tiles::new(&w.snap, &w.obs);
    let names: Vec<String> = tiles.all().into_iter().map(|t| t.hostname).collect();
    assert_eq!(
        names,
        [
            "controller-0",
            "controller-1",
            "worker-0",
            "worker-1",
            "storage-0"
        ]
    );
    let some = tiles.some(&["worker-1".into(), "nobody".into(), "controller-0".into()]);
    let names: Vec<&str> = some.iter().map(|t| t.hostname.as_str()).collect();
    assert_eq!(names, ["worker-1", "controller-0"]);
    assert_eq!(some[0].kubelet_version, "v1.16.1");
    assert_eq!(some[0].control_plane_version, "N/A");
}

#[test]
fn the_strategy_summary_names_its_stages_without_their_host_lists() {
    let mut w = world();
    strategy(&mut w, |s| {
        let hosts: Vec<String> = (0..12).map(|i| format!("worker-{i}")).collect();
        let mut stage = kup_types::strategy::Stage::new(
            kup_core::strategy::STAGE_WORKERS.into(),
            hosts.clone(),
            vec![kup_types::strategy::Step::new("lock-hosts", hosts, 60)],
        );
        stage.predicted_seconds = 300;
        s.apply_phase.stages = vec![Arc::new(stage)];
    });
    let summary = dashboard::strategy(w.snap.strategy.as_ref().expect("a strategy"));
    assert_eq!(summary.timeline_phase, "apply");
    assert_eq!(summary.stages.len(), 1);
    assert_eq!(summary.stages[0].host_count, 12);
    assert_eq!(summary.stages[0].first_hosts.len(), 8);
    assert_eq!(summary.stages[0].predicted_seconds, 300);
    assert_eq!(summary.predicted_seconds, 600);
    assert_eq!(summary.lower_bound_seconds, 500);
    assert_eq!(summary.entity_names.len(), 12);
    assert!(summary.batch.is_empty(), "no batch chosen");
    assert_eq!(
        summary.stage_name.as_deref(),
        Some("kube-upgrade-kubelets-workers")
    );
}
