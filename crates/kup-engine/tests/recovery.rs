//! Failures and re-dos, crashes and restarts, racing commands.

mod common;

use std::sync::Arc;

use common::*;
use kup_core::{Command, Refusal};
use kup_sim::Fault;
use kup_types::{EventKind, KubeUpgradeState, StepKind};

/// Each asynchronous step fails once: it ends `-failed`, and the same command re-does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_step_is_redone_by_the_same_command() {
    let h = Harness::new(seed_cluster()).await;
    for (step, host) in [
        (StepKind::DownloadImages, None),
        (StepKind::ControlPlane, Some("controller-1")),
        (StepKind::Networking, None),
        (StepKind::ControlPlane, Some("controller-0")),
        (StepKind::Kubelet, Some("controller-1")),
        (StepKind::Kubelet, Some("worker-0")),
        (StepKind::Lock, Some("worker-1")),
        (StepKind::Unlock, Some("worker-1")),
        (StepKind::Swact, Some("controller-0")),
    ] {
        h.sim.inject_fault(Fault::once(step, host));
    }
    h.ok(start("v1.16.2")).await;

    h.ok(Command::DownloadImages).await;
    assert_eq!(h.state().await, "downloading-images-failed");
    h.ok(Command::DownloadImages).await;
    assert_eq!(h.state().await, "downloaded-images");

    h.ok(cp("controller-1")).await;
    assert_eq!(h.state().await, "upgrading-first-master-failed");
    let row = |t: String, host: &str| t.lines().find(|l| l.contains(host)).unwrap().to_string();
    assert_eq!(
        row(h.table().await, "controller-1"),
        "2 controller-1 controller v1.16.2 v1.16.1 v1.16.1 upgrading-control-plane-failed"
    );
    h.ok(cp("controller-1")).await;
    assert_eq!(h.state().await, "upgraded-first-master");
    assert_eq!(
        row(h.table().await, "controller-1"),
        "2 controller-1 controller v1.16.2 v1.16.2 v1.16.1 None"
    );

    h.ok(Command::UpgradeNetworking).await;
    assert_eq!(h.state().await, "upgrading-networking-failed");
    h.ok(Command::UpgradeNetworking).await;
    assert_eq!(h.state().await, "upgraded-networking");

    h.ok(cp("controller-0")).await;
    assert_eq!(h.state().await, "upgrading-second-master-failed");
    h.ok(cp("controller-0")).await;
    assert_eq!(h.state().await, "upgraded-second-master");

    h.ok(lock("controller-1")).await;
    h.ok(kubelet("controller-1")).await;
    assert!(row(h.table().await, "controller-1").ends_with("v1.16.1 upgrading-kubelet-failed"));
    // A failed kubelet step is not in progress: unlock is allowed, and so is the re-do.
    h.ok(kubelet("controller-1")).await;
    assert!(row(h.table().await, "controller-1").ends_with("v1.16.2 upgraded-kubelet"));
    h.ok(unlock("controller-1")).await;
    h.ok(swact("controller-0")).await;
    assert!(
        h.engine
            .host("controller-0")
            .await
            .unwrap()
            .active_controller,
        "the swact failed"
    );
    assert!(
        h.events()
            .await
            .iter()
            .any(|e| e.message.starts_with("swact from controller-0: failed"))
    );
    h.ok(swact("controller-0")).await;
    assert!(
        !h.engine
            .host("controller-0")
            .await
            .unwrap()
            .active_controller
    );
    h.ok(lock("controller-0")).await;
    h.ok(kubelet("controller-0")).await;
    h.ok(unlock("controller-0")).await;

    // A host action that fails leaves the host as it was and can be re-issued.
    h.ok(lock("worker-1")).await;
    let w1 = h.engine.host("worker-1").await.unwrap();
    assert_eq!(w1.administrative.as_str(), "unlocked");
    assert!(
        h.events()
            .await
            .iter()
            .any(|e| e.message.starts_with("lock worker-1: failed"))
    );
    h.ok(lock("worker-1")).await;
    h.ok(kubelet("worker-1")).await;
    h.ok(unlock("worker-1")).await;
    assert_eq!(
        h.engine
            .host("worker-1")
            .await
            .unwrap()
            .administrative
            .as_str(),
        "locked"
    );
    h.ok(unlock("worker-1")).await;

    h.ok(lock("worker-0")).await;
    h.ok(kubelet("worker-0")).await;
    assert!(row(h.table().await, "worker-0").ends_with("upgrading-kubelet-failed"));
    let err = h.run(Command::Complete).await.unwrap_err();
    assert!(err.to_string().contains("worker-0"), "{err}");
    h.ok(kubelet("worker-0")).await;
    h.ok(unlock("worker-0")).await;
    h.ok(Command::Complete).await;
    assert_eq!(h.state().await, "upgrade-complete");
    assert_gapless(&h.events().await);
}

/// `kube-upgrade-failed` marks a step that hangs as failed; its late end changes nothing, and
/// the step can be re-done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_step_is_marked_failed_by_hand_and_redone() {
    let h = Harness::new(seed_cluster()).await;
    h.ok(start("v1.16.2")).await;
    h.ok(Command::DownloadImages).await;
    h.sim.set_time_scale(0.01); // a few seconds per step: ample time to mark it failed first
    h.run(cp("controller-1")).await.unwrap();
    let out = h
        .run(Command::MarkFailed(
            KubeUpgradeState::UpgradingFirstMasterFailed,
        ))
        .await
        .unwrap();
    assert_eq!(
        out.upgrade.unwrap().state,
        KubeUpgradeState::UpgradingFirstMasterFailed
    );
    h.engine.wait_idle().await;
    // The operation did finish in the cluster, but its end no longer moves the state.
    assert_eq!(h.state().await, "upgrading-first-master-failed");
    h.sim.set_time_scale(0.0);
    h.ok(cp("controller-1")).await; // a re-do although the control plane reached the target
    assert_eq!(h.state().await, "upgraded-first-master");
}

/// Each in-flight step, killed together with the simulation: on restart it is marked failed,
/// and re-doing it continues the upgrade to the end, with a gapless event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_any_step_is_recovered() {
    let inv = seed_cluster();
    let mut h = Harness::persistent(inv.clone()).await;
    h.ok(start("v1.16.2")).await;

    type Check = (&'static str, &'static str);
    let steps: Vec<(Command, Check)> = vec![
        (
            Command::DownloadImages,
            ("state", "downloading-images-failed"),
        ),
        (
            cp("controller-1"),
            ("state", "upgrading-first-master-failed"),
        ),
        (
            Command::UpgradeNetworking,
            ("state", "upgrading-networking-failed"),
        ),
        (
            cp("controller-0"),
            ("state", "upgrading-second-master-failed"),
        ),
    ];
    for (cmd, (_, failed)) in steps {
        h.sim.set_time_scale(1000.0);
        h.run(cmd.clone()).await.unwrap();
        h = h.crash(&inv).await;
        assert_eq!(h.state().await, failed);
        let recovery: Vec<String> = h
            .events()
            .await
            .into_iter()
            .filter(|e| e.kind == EventKind::Recovery)
            .map(|e| e.message)
            .collect();
        assert!(
            recovery.last().unwrap().contains("did not finish"),
            "{recovery:?}"
        );
        h.ok(cmd).await;
        assert!(!h.state().await.ends_with("-failed"));
    }
    assert_eq!(h.state().await, "upgraded-second-master");

    h.ok(lock("controller-1")).await;
    h.sim.set_time_scale(1000.0);
    h.run(kubelet("controller-1")).await.unwrap();
    h = h.crash(&inv).await;
    assert!(
        h.table()
            .await
            .contains("controller-1 controller v1.16.2 v1.16.2 v1.16.1 upgrading-kubelet-failed")
    );
    h.ok(kubelet("controller-1")).await;
    h.ok(unlock("controller-1")).await;
    h.ok(swact("controller-0")).await;
    for host in ["controller-0", "worker-0", "worker-1"] {
        h.ok(lock(host)).await;
        h.ok(kubelet(host)).await;
        h.ok(unlock(host)).await;
    }
    h.ok(Command::Complete).await;
    h.ok(Command::Delete).await;
    let events = h.events().await;
    assert_gapless(&events);
    // Every step's start and end is recorded exactly once per attempt: 5 crashed attempts,
    // each re-done once.
    let failed_marks = events
        .iter()
        .filter(|e| e.message.ends_with("marked failed"))
        .count();
    assert_eq!(failed_marks, 5);
}

/// A step whose operation finished while the engine was down is observed finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_finished_while_down_is_observed_finished() {
    use kup_driver::Driver;
    let h = Harness::new(seed_cluster()).await;
    h.ok(start("v1.16.2")).await;
    h.ok(Command::DownloadImages).await;
    h.sim.set_time_scale(0.002);
    h.run(cp("controller-1")).await.unwrap();
    let id = h.stored().await.operations[0].id.clone();
    let Harness {
        engine,
        sim,
        db,
        dir,
    } = h;
    drop(engine); // the engine stops before the step ends; the cluster carries on
    let done = sim.wait(&id, std::time::Duration::from_secs(30)).await;
    assert_eq!(done.unwrap(), kup_types::OpStatus::Succeeded);
    let h = Harness {
        engine: open(&sim, &db).await,
        sim,
        db,
        dir,
    };
    assert_eq!(h.state().await, "upgraded-first-master");
    let events = h.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::Recovery && e.message.ends_with("observed finished"))
    );
    assert_gapless(&events);
}

/// A step still running on the cluster when the engine restarts is followed again by its id,
/// not failed: it ends once, recorded by the new engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_still_running_at_restart_is_followed_again() {
    let h = Harness::new(seed_cluster()).await;
    h.ok(start("v1.16.2")).await;
    h.ok(Command::DownloadImages).await;
    h.sim.set_time_scale(0.005); // about two seconds
    h.run(cp("controller-1")).await.unwrap();
    let h = h.restart().await;
    assert_eq!(h.state().await, "upgrading-first-master", "not failed");
    h.engine.wait_idle().await;
    assert_eq!(h.state().await, "upgraded-first-master");
    let events = h.events().await;
    let followed: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::Recovery)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        followed,
        [
            "upgrade the first control plane on controller-1 to v1.16.2 was in flight at restart and still runs: followed again"
        ]
    );
    let ends = events
        .iter()
        .filter(|e| {
            e.message.starts_with("upgrade the first control plane")
                && e.message.ends_with(": done")
        })
        .count();
    assert_eq!(ends, 1);
    assert_gapless(&events);
}

/// A step that hangs is marked failed at its deadline ("timed out"), and can be re-done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_step_times_out_at_its_deadline() {
    let inv = seed_cluster();
    let sim = kup_sim::SimCluster::new(&inv, 0.0);
    let dir = tempfile::tempdir().unwrap();
    let mut policy = kup_core::Policy::default();
    policy.deadlines.insert(
        kup_types::StepKind::ControlPlane,
        jiff::SignedDuration::from_millis(300),
    );
    let engine = open_with(&sim, &dir.path().join("kup.db"), policy).await;
    for c in [start("v1.16.2"), Command::DownloadImages] {
        engine.execute(c).await.unwrap();
        engine.wait_idle().await;
    }
    sim.inject_fault(kup_sim::Fault::hang(
        kup_types::StepKind::ControlPlane,
        None,
    ));
    engine.execute(cp("controller-1")).await.unwrap();
    engine.wait_idle().await;
    let u = engine.kube_upgrade().await.unwrap().unwrap();
    assert_eq!(u.state.to_string(), "upgrading-first-master-failed");
    let events = engine.events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.message.ends_with("failed: timed out after 0 s")),
        "{events:?}"
    );
    sim.clear_faults();
    engine.execute(cp("controller-1")).await.unwrap();
    engine.wait_idle().await;
    let u = engine.kube_upgrade().await.unwrap().unwrap();
    assert_eq!(u.state.to_string(), "upgraded-first-master");
}

/// `kube-host-upgrade-failed` ends a host's hung action or step by hand: the driver is told to
/// stop it, the step's row shows `-failed`, and the same command re-does it. With nothing in
/// flight on the host it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_host_step_is_failed_by_hand_and_redone() {
    let h = Harness::new(seed_cluster()).await;
    let fail = |host: &str| Command::FailHostStep { host: host.into() };
    assert_eq!(
        h.run(fail("worker-0")).await.unwrap_err().to_string(),
        "Host worker-0 has no upgrade step or action in progress to mark failed"
    );

    // A lock that hangs.
    h.sim
        .inject_fault(Fault::hang(StepKind::Lock, Some("worker-0")));
    h.run(lock("worker-0")).await.unwrap();
    assert!(matches!(
        h.run(unlock("worker-0")).await,
        Err(e) if e.to_string().contains("has an action in progress")
    ));
    h.ok(fail("worker-0")).await;
    h.sim.clear_faults();
    h.ok(lock("worker-0")).await;
    let host = h.engine.ihost("worker-0").await.unwrap();
    assert_eq!(host.administrative.to_string(), "locked");
    h.ok(unlock("worker-0")).await;

    // A kubelet step that hangs, reached through the whole procedure.
    h.ok(start("v1.16.2")).await;
    for c in [
        Command::DownloadImages,
        cp("controller-1"),
        Command::UpgradeNetworking,
        cp("controller-0"),
        lock("controller-1"),
    ] {
        h.ok(c).await;
    }
    h.sim
        .inject_fault(Fault::hang(StepKind::Kubelet, Some("controller-1")));
    h.run(kubelet("controller-1")).await.unwrap();
    let row = |t: String| {
        t.lines()
            .find(|l| l.contains("controller-1"))
            .unwrap()
            .to_string()
    };
    assert!(row(h.table().await).ends_with("upgrading-kubelet"));
    h.ok(fail("controller-1")).await;
    assert!(row(h.table().await).ends_with("upgrading-kubelet-failed"));
    let events = h.events().await;
    assert!(
        events.iter().any(|e| e.message
            == "upgrade the kubelet on controller-1 to v1.16.2: marked failed by kube-host-upgrade-failed controller-1"),
        "{events:?}"
    );
    h.sim.clear_faults();
    h.ok(kubelet("controller-1")).await;
    assert!(row(h.table().await).ends_with("upgraded-kubelet"));
    assert_gapless(&h.events().await);
}

/// Two racing commands cannot both pass a check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_starts_admit_exactly_one() {
    let h = Arc::new(Harness::new(seed_cluster()).await);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.run(start("v1.16.2")).await })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(e) => assert!(
                matches!(e.refusal(), Some(Refusal::AlreadyInProgress)),
                "{e}"
            ),
        }
    }
    assert_eq!(accepted, 1);
    let events = h.events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::Command)
            .count(),
        1
    );
    assert_gapless(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_let_a_start_or_an_unlock_through() {
    let h = Harness::new(seed_cluster()).await;
    h.sim.mutate(|m| {
        m.alarms.push(kup_types::Alarm {
            uuid: "a".into(),
            alarm_id: "100.101".into(),
            entity_instance_id: "host=worker-0".into(),
            reason_text: "Platform CPU threshold exceeded".into(),
            severity: kup_types::Severity::Major,
            management_affecting: false,
            timestamp: jiff::Timestamp::UNIX_EPOCH,
        })
    });
    let report = h.engine.health(false).await.unwrap();
    assert!(
        report
            .render()
            .contains("No alarms: [Fail]\n[1] alarms found"),
        "{}",
        report.render()
    );
    assert!(
        h.engine.health(true).await.unwrap().ok(),
        "relaxed ignores minor alarms"
    );
    // The request's ignore list, or --force, lets a non-management-affecting alarm pass.
    let ignore = Command::Start {
        to_version: "v1.16.2".into(),
        force: false,
        alarm_ignore: vec!["100.101".into()],
    };
    h.ok(ignore).await;
    h.ok(Command::DownloadImages).await;
    for c in [
        cp("controller-1"),
        Command::UpgradeNetworking,
        cp("controller-0"),
    ] {
        h.ok(c).await;
    }
    // force-unlock during a kubelet upgrade: the host comes back unlocked, the cluster will not
    // finish a kubelet upgrade on an unlocked host, so the step ends failed; locking again and
    // re-doing it completes.
    h.ok(lock("controller-1")).await;
    h.sim.set_time_scale(0.005);
    h.run(kubelet("controller-1")).await.unwrap();
    h.sim.set_time_scale(0.0);
    h.run(Command::Unlock {
        host: "controller-1".into(),
        force: true,
    })
    .await
    .unwrap();
    h.engine.wait_idle().await;
    assert_eq!(
        h.engine
            .host("controller-1")
            .await
            .unwrap()
            .administrative
            .as_str(),
        "unlocked"
    );
    assert!(
        h.table()
            .await
            .contains("2 controller-1 controller v1.16.2 v1.16.2 v1.16.1 upgrading-kubelet-failed")
    );
    h.ok(lock("controller-1")).await;
    h.ok(kubelet("controller-1")).await;
    assert!(
        h.table()
            .await
            .contains("2 controller-1 controller v1.16.2 v1.16.2 v1.16.2 upgraded-kubelet")
    );

    // A kubelet already at the target is recorded as upgraded without running anything, unless
    // forced.
    let h = Harness::new(seed_cluster()).await;
    for c in [
        start("v1.16.2"),
        Command::DownloadImages,
        cp("controller-1"),
        Command::UpgradeNetworking,
        cp("controller-0"),
    ] {
        h.ok(c).await;
    }
    h.sim.mutate(|m| {
        m.host_mut("controller-1").unwrap().kubelet_version =
            Some(kup_types::KubeVersion::new(1, 16, 2))
    });
    let before = h.events().await.len();
    let out = h.ok(kubelet("controller-1")).await;
    assert_eq!(
        out.host_upgrade().unwrap().status.as_deref(),
        Some("upgraded-kubelet")
    );
    let new: Vec<_> = h.events().await.into_iter().skip(before).collect();
    assert!(
        !new.iter().any(|e| e.kind == EventKind::Operation),
        "nothing ran: {new:?}"
    );
    h.ok(lock("controller-1")).await;
    let out = h
        .ok(Command::Kubelet {
            host: "controller-1".into(),
            force: true,
        })
        .await;
    assert_eq!(
        out.host_upgrade().unwrap().status.as_deref(),
        Some("upgrading-kubelet")
    );
    assert!(h.events().await.iter().any(|e| {
        e.message
            .starts_with("upgrade the kubelet on controller-1 to v1.16.2: done")
    }));
}

/// Three control planes: a crash between the second and the third leaves the upgrade in
/// `upgrading-second-master` with nothing running, which recovery keeps as it is (nothing was
/// in flight); a crash while the third upgrades marks it failed; either way the same command
/// finishes the phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_and_during_the_other_control_planes() {
    let inv = example("kubeadm-3-control-planes.yaml");
    let mut h = Harness::persistent(inv.clone()).await;
    h.ok(start("v1.29.10")).await;
    h.ok(Command::DownloadImages).await;
    h.ok(cp("control-plane-0")).await;
    h.ok(Command::UpgradeNetworking).await;
    h.ok(cp("control-plane-1")).await;
    assert_eq!(h.state().await, "upgrading-second-master");
    h = h.crash(&inv).await;
    assert_eq!(h.state().await, "upgrading-second-master");
    assert!(
        !h.events()
            .await
            .iter()
            .any(|e| e.kind == EventKind::Recovery),
        "nothing was in flight"
    );
    h.sim.set_time_scale(1000.0);
    h.run(cp("control-plane-2")).await.unwrap();
    h = h.crash(&inv).await;
    assert_eq!(h.state().await, "upgrading-second-master-failed");
    h.ok(cp("control-plane-2")).await;
    assert_eq!(h.state().await, "upgraded-second-master");
    assert_gapless(&h.events().await);
}
