//! `kube-upgrade-abort`: the way back on every system type, from every point of the way up,
//! through the one command path; a crash during it.

mod common;

use common::*;
use kup_core::Command;
use kup_driver::Driver;
use kup_types::KubeVersion;

/// An example cluster; the standard one with v1.16.2 in its catalog (as the seed's patches
/// would bring it).
fn cluster(file: &str) -> kup_sim::Inventory {
    if file == "standard.yaml" {
        seed_cluster()
    } else {
        example(file)
    }
}

/// Waits until the way back is over (or stuck), and returns the state.
async fn settled_abort(h: &Harness) -> String {
    for _ in 0..2000 {
        let s = h.state().await;
        if s != "upgrade-aborting" {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    h.state().await
}

/// Every host at `from` (control plane and kubelet), networking too, no host locked, no
/// budget broken, no two control planes down, no kubelet outside the skew policy.
async fn assert_all_back(h: &Harness, from: &str, case: &str) {
    let v = KubeVersion::parse(from).unwrap();
    let obs = h.engine.observe().await.unwrap();
    for host in &obs.hosts {
        if let Some(cp) = obs.control_plane_version(&host.hostname) {
            assert_eq!(cp, v, "{case}: control plane on {}", host.hostname);
        }
        if let Some(k) = obs.kubelet_version(&host.hostname) {
            assert_eq!(k, v, "{case}: kubelet on {}", host.hostname);
        }
        assert_eq!(
            host.administrative,
            kup_types::AdminState::Unlocked,
            "{case}: {}",
            host.hostname
        );
    }
    assert!(
        obs.networking_version.is_none_or(|n| n == v),
        "{case}: networking {:?}",
        obs.networking_version
    );
    assert_audit_clean(&h.sim, case);
    for row in h.engine.kube_host_upgrades().await.unwrap() {
        assert_eq!(row.status, None, "{case}: {row:?}");
        assert_eq!(row.target_version.as_deref(), Some(from), "{case}: {row:?}");
    }
}

/// After an abort: deleted, and a fresh upgrade starts.
async fn delete_and_start_again(h: &Harness, to: &str, case: &str) {
    h.ok(Command::Delete).await;
    assert_eq!(h.state().await, "none", "{case}");
    h.ok(start(to)).await;
    assert_eq!(h.state().await, "upgrade-started", "{case}");
}

/// Locks (with --force where a drain would lose a bare pod, as an operator would), upgrades
/// and unlocks a host's kubelet.
async fn kubelet_cycle(h: &Harness, host: &str, simplex: bool) {
    if !simplex && h.run(lock(host)).await.is_err() {
        h.ok(Command::Lock {
            host: host.into(),
            force: true,
        })
        .await;
    }
    h.engine.wait_idle().await;
    h.ok(kubelet(host)).await;
    if !simplex {
        h.ok(unlock(host)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_before_any_control_plane_moved_ends_at_once() {
    for file in [
        "standard.yaml",
        "aio-simplex.yaml",
        "aio-duplex.yaml",
        "kubeadm-3-control-planes.yaml",
    ] {
        let (from, to) = if file.starts_with("kubeadm") {
            ("v1.29.2", "v1.29.10")
        } else {
            ("v1.16.1", "v1.16.2")
        };
        let h = Harness::new(cluster(file)).await;
        h.ok(start(to)).await;
        h.ok(Command::DownloadImages).await;
        h.ok(Command::Abort).await;
        assert_eq!(h.state().await, "upgrade-aborted", "{file}");
        assert_all_back(&h, from, file).await;
        delete_and_start_again(&h, to, file).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_the_first_control_plane_restores_it() {
    for (file, first) in [
        ("standard.yaml", "controller-1"),
        ("aio-simplex.yaml", "controller-0"),
        ("aio-duplex.yaml", "controller-1"),
        ("kubeadm-3-control-planes.yaml", "control-plane-0"),
    ] {
        let to = if file.starts_with("kubeadm") {
            "v1.29.10"
        } else {
            "v1.16.2"
        };
        let from = if file.starts_with("kubeadm") {
            "v1.29.2"
        } else {
            "v1.16.1"
        };
        let h = Harness::new(cluster(file)).await;
        h.ok(start(to)).await;
        h.ok(Command::DownloadImages).await;
        h.ok(cp(first)).await;
        h.ok(Command::Abort).await;
        assert_eq!(settled_abort(&h).await, "upgrade-aborted", "{file}");
        assert_all_back(&h, from, file).await;
        let audit = h.sim.safety_audit().unwrap();
        assert!(!audit.control_plane_backups.is_empty(), "{file}: {audit:?}");
        delete_and_start_again(&h, to, file).await;
    }
}

/// Every control plane up, networking, and some kubelets (controllers and a worker): all of it
/// comes back, the workers and controllers locked and drained as on the way up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_some_kubelets_moved_brings_every_host_back() {
    for file in [
        "standard.yaml",
        "aio-simplex.yaml",
        "aio-duplex.yaml",
        "kubeadm-3-control-planes.yaml",
    ] {
        let kubeadm = file.starts_with("kubeadm");
        let (from, to) = if kubeadm {
            ("v1.29.2", "v1.29.10")
        } else {
            ("v1.16.1", "v1.16.2")
        };
        let h = Harness::new(cluster(file)).await;
        let obs = h.engine.observe().await.unwrap();
        let simplex = obs.system_type == kup_types::SystemType::AioSimplex;
        let mut controllers: Vec<(String, bool)> = obs
            .controllers()
            .map(|c| (c.hostname.clone(), c.active_controller))
            .collect();
        controllers.sort_by_key(|(_, active)| *active);
        h.ok(start(to)).await;
        h.ok(Command::DownloadImages).await;
        h.ok(cp(&controllers[0].0)).await;
        h.ok(Command::UpgradeNetworking).await;
        for (c, _) in &controllers[1..] {
            h.ok(cp(c)).await;
        }
        // The standby controller's kubelet, and a worker's where there are workers.
        kubelet_cycle(&h, &controllers[0].0, simplex).await;
        if let Some(w) = obs
            .hosts
            .iter()
            .find(|x| x.personality == kup_types::Personality::Worker)
        {
            // The other controllers first, as the way up requires.
            for (c, active) in &controllers[1..] {
                if *active {
                    h.ok(swact(c)).await;
                }
                kubelet_cycle(&h, c, simplex).await;
            }
            kubelet_cycle(&h, &w.hostname, simplex).await;
        }
        h.ok(Command::Abort).await;
        assert_eq!(settled_abort(&h).await, "upgrade-aborted", "{file}");
        assert_all_back(&h, from, file).await;
        delete_and_start_again(&h, to, file).await;
    }
}

/// A multi-version upgrade aborted between two minors (v1.31.5 done, kubelets at v1.29.2):
/// the control planes come down one minor at a time, the highest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_between_two_minors_of_a_multi_version_upgrade() {
    let h = Harness::new(example("kubeadm-v1.29-to-v1.33.yaml")).await;
    let cps = ["control-plane-0", "control-plane-1", "control-plane-2"];
    h.ok(start("v1.33.0")).await;
    h.ok(Command::DownloadImages).await;
    for round in 0..2 {
        h.ok(cp(cps[0])).await;
        if round == 0 {
            h.ok(Command::UpgradeNetworking).await;
        }
        for c in &cps[1..] {
            h.ok(cp(c)).await;
        }
    }
    // The next minor's first control plane too: the control planes differ when it aborts.
    h.ok(cp(cps[0])).await;
    h.ok(Command::Abort).await;
    assert_eq!(settled_abort(&h).await, "upgrade-aborted");
    assert_all_back(&h, "v1.29.2", "multi-version").await;
    let events = h.events().await;
    let restores: Vec<&str> = events
        .iter()
        .filter(|e| {
            e.message.starts_with("restore the control plane") && e.message.ends_with("done")
        })
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        restores,
        [
            "restore the control plane on control-plane-0 to v1.31.5: done",
            "restore the control plane on control-plane-2 to v1.30.6: done",
            "restore the control plane on control-plane-1 to v1.30.6: done",
            "restore the control plane on control-plane-0 to v1.30.6: done",
            "restore the control plane on control-plane-2 to v1.29.2: done",
            "restore the control plane on control-plane-1 to v1.29.2: done",
            "restore the control plane on control-plane-0 to v1.29.2: done",
        ]
    );
    delete_and_start_again(&h, "v1.33.0", "multi-version").await;
}

/// The daemon killed during the way back (its simulation too): started again, it goes on and
/// ends aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_an_abort_resumes_it() {
    let inv = example("kubeadm-3-control-planes.yaml");
    let mut h = Harness::persistent(inv.clone()).await;
    h.ok(start("v1.29.10")).await;
    h.ok(Command::DownloadImages).await;
    h.ok(cp("control-plane-0")).await;
    h.ok(Command::UpgradeNetworking).await;
    h.ok(cp("control-plane-1")).await;
    h.ok(cp("control-plane-2")).await;
    // Slowed, so the crash finds a step of the way back in flight.
    h.sim.set_time_scale(1000.0);
    h.ok(Command::Abort).await;
    for _ in 0..200 {
        if h.stored()
            .await
            .operations
            .iter()
            .any(|o| matches!(o.op, kup_types::Operation::RestoreControlPlane { .. }))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    h = h.crash(&inv).await;
    assert_eq!(settled_abort(&h).await, "upgrade-aborted");
    assert_all_back(&h, "v1.29.2", "crash").await;
    assert_gapless(&h.events().await);
}

/// An abort that cannot go on (no backup to restore) ends upgrade-aborting-failed with the
/// reason, and the same command re-does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_that_cannot_finish_fails_with_its_reason_and_is_redone() {
    let h = Harness::new(example("aio-simplex.yaml")).await;
    h.ok(start("v1.16.2")).await;
    h.ok(Command::DownloadImages).await;
    h.sim.inject_fault(kup_sim::Fault::once(
        kup_types::StepKind::ControlPlane,
        Some("controller-0"),
    ));
    h.ok(cp("controller-0")).await;
    assert_eq!(h.state().await, "upgrading-first-master-failed");
    h.ok(cp("controller-0")).await;
    h.sim.inject_fault(kup_sim::Fault::once(
        kup_types::StepKind::ControlPlane,
        Some("controller-0"),
    ));
    h.ok(Command::Abort).await;
    assert_eq!(settled_abort(&h).await, "upgrade-aborting-failed");
    h.ok(Command::Abort).await;
    assert_eq!(settled_abort(&h).await, "upgrade-aborted");
    assert_all_back(&h, "v1.16.1", "re-done").await;
}

/// `kube-upgrade-strategy abort --rollback`: the strategy stops once its step in flight ends,
/// then the way back takes the upgrade to upgrade-aborted. Without --rollback it stays
/// resumable (tested with the strategy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_aborted_with_rollback_takes_the_upgrade_back() {
    use kup_core::strategy::StrategyCommand;
    let h = Harness::with_scale(seed_cluster(), 0.002).await;
    let req = kup_types::StrategyCreate {
        to_version: "v1.16.2".into(),
        ..Default::default()
    };
    h.engine.strategy_create(req).await.unwrap();
    h.engine
        .strategy_action(StrategyCommand::Apply)
        .await
        .unwrap();
    while h.state().await != "upgrading-networking" {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    h.engine
        .strategy_action(StrategyCommand::Abort { rollback: true })
        .await
        .unwrap();
    h.engine.wait_strategy().await;
    h.sim.set_time_scale(0.0);
    let s = h.engine.strategy().unwrap().unwrap();
    assert_eq!(s.strategy.state, kup_types::StrategyState::Aborted);
    assert_eq!(settled_abort(&h).await, "upgrade-aborted");
    assert_all_back(&h, "v1.16.1", "strategy --rollback").await;
}

/// Hosts locked during the upgrade whose kubelets never moved (a worker locked by hand, one
/// whose unlock is still running, a controller with its unlock in flight) are all in service
/// again at the end of the way back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_way_back_unlocks_every_host_the_upgrade_took_down() {
    let h = Harness::new(example("kubeadm-3-control-planes.yaml")).await;
    let cps = ["control-plane-0", "control-plane-1", "control-plane-2"];
    h.ok(start("v1.29.10")).await;
    h.ok(Command::DownloadImages).await;
    h.ok(cp(cps[0])).await;
    h.ok(Command::UpgradeNetworking).await;
    for c in &cps[1..] {
        h.ok(cp(c)).await;
    }
    kubelet_cycle(&h, cps[0], false).await;
    h.ok(lock(cps[1])).await;
    h.ok(kubelet(cps[1])).await;
    h.ok(lock("worker-4")).await;
    // The controller's unlock still running when the abort comes.
    h.sim.set_time_scale(0.002);
    h.run(unlock(cps[1])).await.unwrap();
    h.ok(Command::Abort).await;
    h.sim.set_time_scale(0.0);
    assert_eq!(settled_abort(&h).await, "upgrade-aborted");
    assert_all_back(&h, "v1.29.2", "locked hosts").await;
    delete_and_start_again(&h, "v1.29.10", "locked hosts").await;
}

/// aio-simplex cordoned for the upgrade: the way back uncordons it (its pods run again), and
/// a fresh upgrade starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_way_back_uncordons_a_cordoned_simplex_host() {
    let h = Harness::new(example("aio-simplex.yaml")).await;
    h.ok(start("v1.16.2")).await;
    h.ok(Command::DownloadImages).await;
    h.ok(cp("controller-0")).await;
    h.ok(Command::UpgradeNetworking).await;
    h.ok(Command::Cordon {
        host: "controller-0".into(),
    })
    .await;
    h.ok(Command::Abort).await;
    assert_eq!(settled_abort(&h).await, "upgrade-aborted");
    assert_all_back(&h, "v1.16.1", "cordoned").await;
    let obs = h.engine.observe().await.unwrap();
    assert!(!obs.node("controller-0").unwrap().unschedulable);
    delete_and_start_again(&h, "v1.16.2", "cordoned").await;
}
