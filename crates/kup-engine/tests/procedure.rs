//! The seed's procedure, steps 5–15, through the engine, checking the cluster state and every
//! host row after each step.

mod common;

use common::*;
use kup_core::{Command, Refusal};
use kup_types::KubeUpgradeState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_procedure_on_the_default_standard_system() {
    let h = Harness::new(seed_cluster()).await;
    assert_eq!(
        h.table().await,
        "1 controller-0 controller None v1.16.1 v1.16.1 None\n\
         2 controller-1 controller None v1.16.1 v1.16.1 None\n\
         3 storage-0 storage None N/A N/A None\n\
         4 storage-1 storage None N/A N/A None\n\
         5 worker-0 worker None N/A v1.16.1 None\n\
         6 worker-1 worker None N/A v1.16.1 None"
    );
    let versions = h.engine.kube_versions().await.unwrap();
    let vs: Vec<String> = versions
        .iter()
        .map(|v| format!("{} {} {}", v.version, v.target, v.state))
        .collect();
    assert_eq!(vs, ["v1.16.1 true active", "v1.16.2 false available"]);

    // 5. Start.
    let out = h.ok(start("v1.16.2")).await;
    let u = out.upgrade.unwrap();
    assert_eq!(
        (
            u.from_version.to_string(),
            u.to_version.to_string(),
            u.state
        ),
        (
            "v1.16.1".into(),
            "v1.16.2".into(),
            KubeUpgradeState::UpgradeStarted
        )
    );
    assert!(u.updated_at.is_none());
    assert_eq!(
        h.table().await,
        "1 controller-0 controller v1.16.1 v1.16.1 v1.16.1 None\n\
         2 controller-1 controller v1.16.1 v1.16.1 v1.16.1 None\n\
         3 storage-0 storage v1.16.1 N/A N/A None\n\
         4 storage-1 storage v1.16.1 N/A N/A None\n\
         5 worker-0 worker v1.16.1 N/A v1.16.1 None\n\
         6 worker-1 worker v1.16.1 N/A v1.16.1 None"
    );
    let vs = h.engine.kube_versions().await.unwrap();
    assert_eq!(
        (vs[0].target, vs[1].target),
        (false, true),
        "the target is the upgrade's"
    );
    assert!(
        h.engine
            .alarms()
            .await
            .unwrap()
            .iter()
            .any(|a| a.alarm_id == "900.007")
    );

    // 6. Download images: the reply shows the step in progress, then it completes.
    let started = h.table().await;
    let out = h.ok(Command::DownloadImages).await;
    assert_eq!(h.table().await, started, "downloading changes no host row");
    assert_eq!(
        out.upgrade.as_ref().unwrap().state,
        KubeUpgradeState::DownloadingImages
    );
    assert_eq!(h.state().await, "downloaded-images");
    let u = h.engine.kube_upgrade().await.unwrap().unwrap();
    assert!(u.updated_at.is_some());

    // 7. Control plane on the first controller (either may go first; the seed picks controller-1).
    let out = h.ok(cp("controller-1")).await;
    let row = out.host_upgrade().unwrap();
    assert_eq!(
        (
            row.id,
            row.control_plane_version.as_str(),
            row.kubelet_version.as_str(),
            row.status.as_deref(),
            row.target_version.as_deref()
        ),
        (
            2,
            "v1.16.1",
            "v1.16.1",
            Some("upgrading-control-plane"),
            Some("v1.16.2")
        )
    );
    assert_eq!(
        out.upgrade.as_ref().unwrap().state,
        KubeUpgradeState::UpgradingFirstMaster
    );
    assert_eq!(h.state().await, "upgraded-first-master");
    assert_eq!(
        h.table().await,
        "1 controller-0 controller v1.16.1 v1.16.1 v1.16.1 None\n\
         2 controller-1 controller v1.16.2 v1.16.2 v1.16.1 None\n\
         3 storage-0 storage v1.16.1 N/A N/A None\n\
         4 storage-1 storage v1.16.1 N/A N/A None\n\
         5 worker-0 worker v1.16.1 N/A v1.16.1 None\n\
         6 worker-1 worker v1.16.1 N/A v1.16.1 None"
    );

    // 8. Networking.
    let first_master = h.table().await;
    let out = h.ok(Command::UpgradeNetworking).await;
    assert_eq!(
        h.table().await,
        first_master,
        "networking changes no host row"
    );
    assert_eq!(
        h.engine
            .observe()
            .await
            .unwrap()
            .networking_version
            .map(|v| v.to_string()),
        Some("v1.16.2".into())
    );
    assert_eq!(
        out.upgrade.as_ref().unwrap().state,
        KubeUpgradeState::UpgradingNetworking
    );
    assert_eq!(h.state().await, "upgraded-networking");

    // 9. Control plane on the second controller.
    let out = h.ok(cp("controller-0")).await;
    assert_eq!(
        out.upgrade.as_ref().unwrap().state,
        KubeUpgradeState::UpgradingSecondMaster
    );
    assert_eq!(
        out.host_upgrade().unwrap().status.as_deref(),
        Some("upgrading-control-plane")
    );
    assert_eq!(h.state().await, "upgraded-second-master");

    // 10. Both control planes run v1.16.2 (the seed's table).
    assert_eq!(
        h.table().await,
        "1 controller-0 controller v1.16.2 v1.16.2 v1.16.1 None\n\
         2 controller-1 controller v1.16.2 v1.16.2 v1.16.1 None\n\
         3 storage-0 storage v1.16.1 N/A N/A None\n\
         4 storage-1 storage v1.16.1 N/A N/A None\n\
         5 worker-0 worker v1.16.1 N/A v1.16.1 None\n\
         6 worker-1 worker v1.16.1 N/A v1.16.1 None"
    );
    let vs = h.engine.kube_versions().await.unwrap();
    assert_eq!(
        (vs[0].state.as_str(), vs[1].state.as_str()),
        ("partial", "partial")
    );

    // 12. Kubelets on the controllers: the standby first, then swact and the other.
    h.ok(lock("controller-1")).await;
    assert_eq!(
        h.table().await,
        first_master.replace(
            "1 controller-0 controller v1.16.1 v1.16.1",
            "1 controller-0 controller v1.16.2 v1.16.2"
        ),
        "locking changes no host row"
    );
    let out = h.ok(kubelet("controller-1")).await;
    assert_eq!(
        out.host_upgrade().unwrap().status.as_deref(),
        Some("upgrading-kubelet")
    );
    assert_eq!(
        out.upgrade.as_ref().unwrap().state,
        KubeUpgradeState::UpgradingKubelets
    );
    h.ok(unlock("controller-1")).await;
    h.ok(swact("controller-0")).await;
    h.ok(lock("controller-0")).await;
    h.ok(kubelet("controller-0")).await;
    h.ok(unlock("controller-0")).await;

    // 13.
    assert_eq!(h.state().await, "upgrading-kubelets");
    assert_eq!(
        h.table().await,
        "1 controller-0 controller v1.16.2 v1.16.2 v1.16.2 upgraded-kubelet\n\
         2 controller-1 controller v1.16.2 v1.16.2 v1.16.2 upgraded-kubelet\n\
         3 storage-0 storage v1.16.1 N/A N/A None\n\
         4 storage-1 storage v1.16.1 N/A N/A None\n\
         5 worker-0 worker v1.16.1 N/A v1.16.1 None\n\
         6 worker-1 worker v1.16.1 N/A v1.16.1 None"
    );

    // 14. Kubelets on the workers.
    for w in ["worker-1", "worker-0"] {
        h.ok(lock(w)).await;
        let out = h.ok(kubelet(w)).await;
        assert_eq!(
            out.host_upgrade().unwrap().status.as_deref(),
            Some("upgrading-kubelet")
        );
        h.ok(unlock(w)).await;
    }
    assert_eq!(
        h.table().await,
        "1 controller-0 controller v1.16.2 v1.16.2 v1.16.2 upgraded-kubelet\n\
         2 controller-1 controller v1.16.2 v1.16.2 v1.16.2 upgraded-kubelet\n\
         3 storage-0 storage v1.16.1 N/A N/A None\n\
         4 storage-1 storage v1.16.1 N/A N/A None\n\
         5 worker-0 worker v1.16.2 N/A v1.16.2 upgraded-kubelet\n\
         6 worker-1 worker v1.16.2 N/A v1.16.2 upgraded-kubelet"
    );

    // 15. Complete: storage hosts do not hold it up; host statuses are cleared.
    let out = h.ok(Command::Complete).await;
    assert_eq!(
        out.upgrade.as_ref().unwrap().state,
        KubeUpgradeState::UpgradeComplete
    );
    assert_eq!(
        h.table().await,
        "1 controller-0 controller v1.16.2 v1.16.2 v1.16.2 None\n\
         2 controller-1 controller v1.16.2 v1.16.2 v1.16.2 None\n\
         3 storage-0 storage v1.16.1 N/A N/A None\n\
         4 storage-1 storage v1.16.1 N/A N/A None\n\
         5 worker-0 worker v1.16.2 N/A v1.16.2 None\n\
         6 worker-1 worker v1.16.2 N/A v1.16.2 None"
    );
    let vs = h.engine.kube_versions().await.unwrap();
    let vs: Vec<String> = vs
        .iter()
        .map(|v| format!("{} {} {}", v.version, v.target, v.state))
        .collect();
    assert_eq!(vs, ["v1.16.1 false unavailable", "v1.16.2 true active"]);

    // Delete: the upgrade and its alarm are gone; every pod is running again.
    h.ok(Command::Delete).await;
    assert_eq!(h.state().await, "none");
    assert!(
        !h.engine
            .alarms()
            .await
            .unwrap()
            .iter()
            .any(|a| a.alarm_id == "900.007")
    );
    let obs = h.engine.observe().await.unwrap();
    let pods = h.engine.workloads().await.unwrap();
    assert!(
        pods.iter().all(|(_, p)| p.node.is_some() && p.ready),
        "{:?}",
        pods.iter().collect::<Vec<_>>()
    );
    assert!(obs.hosts.iter().all(|h| h.is_unlocked_enabled_available()));

    let events = h.events().await;
    assert_gapless(&events);
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == kup_types::EventKind::State)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        states,
        [
            "upgrade v1.16.1 -> v1.16.2: upgrade-started",
            "upgrade-started -> downloading-images",
            "downloading-images -> downloaded-images",
            "downloaded-images -> upgrading-first-master",
            "upgrading-first-master -> upgraded-first-master",
            "upgraded-first-master -> upgrading-networking",
            "upgrading-networking -> upgraded-networking",
            "upgraded-networking -> upgrading-second-master",
            "upgrading-second-master -> upgraded-second-master",
            "upgraded-second-master -> upgrading-kubelets",
            "upgrading-kubelets -> upgrade-complete",
            "upgrade v1.16.1 -> v1.16.2 deleted",
        ]
    );
}

/// Locks a host; if the safety analysis refuses, records why and locks with --force, as an
/// operator who accepts the loss would.
async fn lock_or_force(h: &Harness, host: &str) -> Option<(String, String)> {
    match h.run(lock(host)).await {
        Ok(_) => {
            h.engine.wait_idle().await;
            None
        }
        Err(e) => {
            assert!(
                matches!(e.refusal(), Some(Refusal::LockUnsafe { .. })),
                "{host}: {e}"
            );
            h.ok(Command::Lock {
                host: host.into(),
                force: true,
            })
            .await;
            Some((host.to_string(), e.to_string()))
        }
    }
}

/// The procedure any system type follows; returns the hosts that could only be locked with
/// --force, and why.
pub async fn run_procedure(h: &Harness) -> Vec<(String, String)> {
    let mut forced = Vec::new();
    let obs = h.engine.observe().await.unwrap();
    let simplex = obs.system_type == kup_types::SystemType::AioSimplex;
    let mut controllers: Vec<(String, bool)> = obs
        .controllers()
        .map(|c| (c.hostname.clone(), c.active_controller))
        .collect();
    controllers.sort_by_key(|(_, active)| *active); // the standby first
    let workers: Vec<String> = obs
        .hosts
        .iter()
        .filter(|h| h.personality == kup_types::Personality::Worker)
        .map(|h| h.hostname.clone())
        .collect();

    h.ok(start("1.16.2")).await;
    h.ok(Command::DownloadImages).await;
    assert_eq!(h.state().await, "downloaded-images");
    h.ok(cp(&controllers[0].0)).await;
    assert_eq!(h.state().await, "upgraded-first-master");
    h.ok(Command::UpgradeNetworking).await;
    assert_eq!(h.state().await, "upgraded-networking");
    if let Some((second, _)) = controllers.get(1) {
        h.ok(cp(second)).await;
        assert_eq!(h.state().await, "upgraded-second-master");
    }
    for (i, (c, _)) in controllers.iter().enumerate() {
        if simplex {
            h.ok(kubelet(c)).await;
        } else {
            if i == 1 {
                // The other controller is active now: hand the role back first.
                h.ok(swact(c)).await;
            }
            forced.extend(lock_or_force(h, c).await);
            h.ok(kubelet(c)).await;
            h.ok(unlock(c)).await;
        }
        assert_eq!(h.state().await, "upgrading-kubelets");
    }
    for w in &workers {
        forced.extend(lock_or_force(h, w).await);
        h.ok(kubelet(w)).await;
        h.ok(unlock(w)).await;
    }
    h.ok(Command::Complete).await;
    assert_eq!(h.state().await, "upgrade-complete");
    for row in h.engine.kube_host_upgrades().await.unwrap() {
        assert_eq!(row.status, None, "{row:?}");
        if row.personality != kup_types::Personality::Storage {
            assert_eq!(row.kubelet_version, "v1.16.2", "{row:?}");
        }
    }
    h.ok(Command::Delete).await;
    assert_eq!(h.state().await, "none");
    let vs = h.engine.kube_versions().await.unwrap();
    assert!(
        vs.iter()
            .any(|v| v.version.to_string() == "v1.16.2" && v.state.as_str() == "active")
    );
    assert_gapless(&h.events().await);
    forced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_procedure_on_aio_simplex() {
    let h = Harness::new(example("aio-simplex.yaml")).await;
    // On simplex the kubelet follows networking directly, without a lock.
    run_procedure(&h).await;
    let events = h.events().await;
    assert!(
        !events.iter().any(|e| e.message.contains("lock")),
        "the simplex controller is never locked: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_procedure_on_aio_duplex() {
    let h = Harness::new(example("aio-duplex.yaml")).await;
    let forced = run_procedure(&h).await;
    // controller-1 runs a bare pod that a drain would lose: only --force locks it.
    assert_eq!(forced.len(), 1, "{forced:?}");
    assert_eq!(forced[0].0, "controller-1");
    assert!(
        forced[0].1.contains("pod default/debug-shell"),
        "{}",
        forced[0].1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_procedure_on_fifty_workers() {
    let h = Harness::new(example("standard-50-workers.yaml")).await;
    let forced = run_procedure(&h).await;
    // Only the workers running the batch-report Job's pods are unsafe to drain.
    assert!(!forced.is_empty() && forced.len() <= 5, "{forced:?}");
    for (host, why) in &forced {
        assert!(
            host.starts_with("worker-") && why.contains("job default/batch-report"),
            "{host}: {why}"
        );
    }
}

/// `host-swact --force` hands the active role over to a degraded standby, which a plain swact
/// refuses (the refusal table has that, and that force never picks a locked standby).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_swact_accepts_a_degraded_standby() {
    let h = Harness::new(seed_cluster()).await;
    h.sim.mutate(|m| {
        m.host_mut("controller-1").unwrap().availability = kup_types::Availability::Degraded
    });
    assert!(h.run(swact("controller-0")).await.is_err());
    h.ok(Command::Swact {
        host: "controller-0".into(),
        force: true,
    })
    .await;
    let obs = h.engine.observe().await.unwrap();
    assert!(obs.host("controller-1").unwrap().active_controller);
    assert!(!obs.host("controller-0").unwrap().active_controller);
}

/// The multi-version example: its catalog steps v1.29.2 -> v1.33.0 through the highest patch
/// of each minor; every minor has patch releases.
#[test]
fn the_multi_version_example_steps_through_each_minor() {
    let inv = example("kubeadm-v1.29-to-v1.33.yaml");
    let cat = kup_core::Catalog::new(inv.versions.clone());
    let v = |s: &str| kup_types::KubeVersion::parse(s).unwrap();
    let steps: Vec<String> = cat
        .steps(v("v1.29.2"), v("v1.33.0"))
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect();
    assert_eq!(steps, ["v1.30.6", "v1.31.5", "v1.32.2", "v1.33.0"]);
    for minor in 29..=32 {
        let patches = inv
            .versions
            .iter()
            .filter(|m| m.version.minor == minor)
            .count();
        assert!(patches >= 2, "v1.{minor}: {patches}");
    }
}

/// After every step: no kubelet newer than any API server or more minors behind than it
/// supports, and the API servers within one minor of each other.
async fn assert_within_skew(h: &Harness, after: &str) {
    let obs = h.engine.observe().await.unwrap();
    let cps: Vec<kup_types::KubeVersion> = obs
        .controllers()
        .filter_map(|c| obs.control_plane_version(&c.hostname))
        .collect();
    let (lo, hi) = (*cps.iter().min().unwrap(), *cps.iter().max().unwrap());
    assert!(hi.minor_skew(&lo) <= 1, "{after}: control planes {cps:?}");
    for n in &obs.nodes {
        let k = n.kubelet_version;
        assert!(
            lo.minor_skew(&k) >= 0,
            "{after}: {} runs {k}, newer than {lo}",
            n.name
        );
        assert!(
            hi.minor_skew(&k) <= kup_core::skew::kubelet_max_skew(k),
            "{after}: {} runs {k}, too far behind {hi}",
            n.name
        );
    }
}

/// Every host's kubelet, one at a time (lock, kubelet, unlock), to what the control planes run.
async fn kubelet_round(h: &Harness, hosts: &[String], version: &str) {
    for host in hosts {
        h.ok(lock(host)).await;
        h.ok(kubelet(host)).await;
        h.ok(unlock(host)).await;
        assert_within_skew(h, &format!("kubelet {host} to {version}")).await;
    }
    let t = h.table().await;
    for host in hosts {
        let line = t
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(host.as_str()))
            .unwrap();
        assert!(line.contains(&format!("{version} upgraded-kubelet")), "{t}");
    }
}

/// v1.29.2 -> v1.33.0 by hand on three control planes: each control-plane command advances one
/// minor (the highest patch of it); networking once; the step that would leave the kubelets
/// four minors behind is refused naming every host, so they move at v1.32.2; then the last
/// minor, the kubelets again, complete. The skew policy holds after every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_version_upgrade_by_hand() {
    let h = Harness::new(example("kubeadm-v1.29-to-v1.33.yaml")).await;
    let cps = ["control-plane-0", "control-plane-1", "control-plane-2"];
    let workers: Vec<String> = (0..6).map(|i| format!("worker-{i}")).collect();
    h.ok(start("v1.33.0")).await;
    h.ok(Command::DownloadImages).await;
    assert_eq!(h.state().await, "downloaded-images");
    let row = |t: &str, host: &str| {
        t.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(host))
            .unwrap()
            .to_string()
    };
    let hosts: Vec<String> = cps
        .iter()
        .map(|c| c.to_string())
        .chain(workers.iter().cloned())
        .collect();
    for (round, version) in ["v1.30.6", "v1.31.5", "v1.32.2"].iter().enumerate() {
        h.ok(cp(cps[0])).await;
        assert_eq!(h.state().await, "upgraded-first-master", "{version}");
        // The host row shows the step's target, not the final one.
        assert!(row(&h.table().await, cps[0]).contains(&format!("{version} {version}")));
        if round == 0 {
            h.ok(Command::UpgradeNetworking).await;
        } else {
            let r = h.run(Command::UpgradeNetworking).await.unwrap_err();
            assert!(
                matches!(r.refusal(), Some(Refusal::NetworkingAlreadyUpgraded)),
                "{r}"
            );
        }
        // The first may not move again before the others caught up.
        if round == 1 {
            let r = h.run(cp(cps[0])).await.unwrap_err();
            assert_eq!(
                r.to_string(),
                "Update second control-plane before updating first control plane again \
                 (control-plane-1 has not caught up with control-plane-0)"
            );
        }
        for c in &cps[1..] {
            h.ok(cp(c)).await;
            assert_within_skew(&h, &format!("{c} to {version}")).await;
        }
        assert_eq!(h.state().await, "upgraded-second-master", "{version}");
    }
    // v1.33.0 would leave every kubelet (v1.29.2) four minors behind.
    let r = h.run(cp(cps[0])).await.unwrap_err();
    let why = r.to_string();
    assert!(
        why.contains("to v1.33.0: the kubelets on control-plane-0 (v1.29.2), control-plane-1 (v1.29.2)")
            && why.contains("worker-5 (v1.29.2) would be more than 3 minor versions behind v1.33.0; upgrade them first"),
        "{why}"
    );
    kubelet_round(&h, &hosts, "v1.32.2").await;
    assert_eq!(h.state().await, "upgrading-kubelets");
    // Complete waits for the last minor.
    assert!(h.run(Command::Complete).await.is_err());
    for c in cps {
        h.ok(cp(c)).await;
        assert_within_skew(&h, &format!("{c} to v1.33.0")).await;
    }
    assert_eq!(h.state().await, "upgraded-second-master");
    kubelet_round(&h, &hosts, "v1.33.0").await;
    h.ok(Command::Complete).await;
    assert_eq!(h.state().await, "upgrade-complete");
    let audit = kup_driver::Driver::safety_audit(&h.sim).unwrap();
    assert_eq!(audit.control_plane_violations, 0, "{audit:?}");
    assert_eq!(audit.skew_violations, 0, "{audit:?}");
    assert_gapless(&h.events().await);
}
