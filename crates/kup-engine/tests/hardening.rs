//! The engine's share of the hardening: host actions settled after a crash, what is in flight
//! read from the store, the seed's "pods must be all ready", and the skew policy mid-upgrade.

mod common;

use common::*;
use kup_core::{Command, Refusal};
use kup_types::{EventKind, KubeVersion};

fn recovery_messages(events: &[kup_types::Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Recovery)
        .map(|e| format!("{}: {}", e.subject, e.message))
        .collect()
}

/// A lock, unlock or swact killed mid-way is settled at restart like an upgrade step: the log
/// says what became of it, the store holds nothing in flight, and the action can be re-done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_host_actions_are_settled_at_restart() {
    let inv = seed_cluster();
    let mut h = Harness::persistent(inv.clone()).await;
    let actions = [
        (lock("worker-0"), "lock worker-0"),
        (unlock("worker-0"), "unlock worker-0"),
        (swact("controller-0"), "swact from controller-0"),
    ];
    for (cmd, op) in actions {
        h.sim.set_time_scale(1000.0);
        h.run(cmd.clone()).await.unwrap();
        assert_eq!(h.stored().await.operations.len(), 1, "{op} is recorded");
        h = h.crash(&inv).await;
        let recovered = recovery_messages(&h.events().await);
        let last = recovered.last().unwrap();
        assert!(
            last.contains(&format!("{op} was in flight at restart and did not finish"))
                && last.ends_with("marked failed"),
            "{recovered:?}"
        );
        assert!(h.stored().await.operations.is_empty(), "{op} is settled");
        h.ok(cmd).await;
        assert!(h.stored().await.operations.is_empty());
    }
    let obs = h.engine.observe().await.unwrap();
    assert!(obs.host("controller-1").unwrap().active_controller);
    assert_gapless(&h.events().await);
}

/// A host action recorded as running makes the host busy even when the cluster's view does
/// not show it yet, and a lock judged for safety counts the hosts still locking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_in_flight_is_read_from_the_store() {
    let h = Harness::new(seed_cluster()).await;
    h.sim.set_time_scale(1000.0);
    h.run(lock("worker-0")).await.unwrap();
    // The cluster forgets the task (a real cluster's cache may lag behind the command).
    h.sim.mutate(|m| {
        for host in &mut m.hosts {
            host.task = None;
        }
    });
    let r = h.run(unlock("worker-0")).await.unwrap_err();
    assert!(
        matches!(r.refusal(), Some(Refusal::HostBusy { task, .. }) if task == "lock worker-0"),
        "{r}"
    );
    // worker-1 holds the last replica of the ingress once worker-0 is gone.
    let r = h.run(lock("worker-1")).await.unwrap_err();
    assert!(
        matches!(r.refusal(), Some(Refusal::LockUnsafe { with, .. }) if with == &["worker-0"]),
        "{r}"
    );
}

/// The seed's prerequisite "Kubernetes pods must be all ready": a pod that is not ready blocks
/// the start and is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_waits_for_every_pod_to_be_ready() {
    let h = Harness::new(seed_cluster()).await;
    h.sim.mutate(|m| {
        let (_, first) = m.pods().iter().next().unwrap();
        let mut pod = first.clone();
        pod.name = "web-stuck".into();
        pod.node = None; // Pending: nowhere to run.
        pod.ready = false;
        pod.phase = kup_types::PodPhase::Pending;
        m.add_pod(pod);
    });
    let r = h.run(start("v1.16.2")).await.unwrap_err();
    assert_eq!(
        r.to_string(),
        "System is not in a valid state for kubernetes upgrade: Kubernetes pods not ready: default/web-stuck (Pending). Run health-query-kube-upgrade for details"
    );
    let report = h.engine.health(false).await.unwrap().render();
    assert!(
        report.contains("All kubernetes pods are ready: [Fail]\nKubernetes pods not ready: default/web-stuck (Pending)\n"),
        "{report}"
    );
    h.sim.mutate(|m| m.remove_pods(|p| p.name == "web-stuck"));
    h.ok(start("v1.16.2")).await;
}

/// The skew policy is checked before every control-plane step, not only at the start: a
/// kubelet that fell behind meanwhile stops the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skew_policy_is_checked_before_each_control_plane_step() {
    let mut inv = seed_cluster();
    inv.versions.push(kup_types::VersionMeta {
        version: KubeVersion::new(1, 17, 0),
        upgrade_from: vec![KubeVersion::new(1, 16, 1)],
        downgrade_to: vec![],
        applied_patches: vec![],
        available_patches: vec![],
        images: vec![],
    });
    let h = Harness::new(inv).await;
    h.ok(start("v1.17.0")).await;
    h.ok(Command::DownloadImages).await;
    h.sim.mutate(|m| {
        m.host_mut("worker-1").unwrap().kubelet_version = Some(KubeVersion::new(1, 14, 3));
    });
    let r = h.run(cp("controller-1")).await.unwrap_err();
    assert_eq!(
        r.to_string(),
        "Can not upgrade the control plane on controller-1 to v1.17.0: the kubelets on worker-1 (v1.14.3) would be more than 2 minor versions behind v1.17.0; upgrade them first"
    );
    h.sim.mutate(|m| {
        m.host_mut("worker-1").unwrap().kubelet_version = Some(KubeVersion::new(1, 16, 1));
    });
    h.ok(cp("controller-1")).await;
    assert_eq!(h.state().await, "upgraded-first-master");
}
