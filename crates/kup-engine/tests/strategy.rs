//! The upgrade strategy: built, applied by the runner through the same commands a user sends,
//! resumed after a crash or from a half-done manual upgrade, retried, failed, aborted.

mod common;

use common::*;
use kup_core::strategy::StrategyCommand;
use kup_core::{Command, Policy};
use kup_driver::Driver;
use kup_sim::Fault;
use kup_types::{StepKind, StepResult, StrategyCreate, StrategyState, StrategyView, UpgradeMode};

fn create(to: &str) -> StrategyCreate {
    StrategyCreate {
        to_version: to.into(),
        worker_apply_type: None,
        max_parallel_worker_hosts: None,
        alarm_restrictions: None,
        mode: None,
        partial_ok: false,
        ..Default::default()
    }
}

/// Retries at once: the tests are about what is retried, not how long it waits.
fn eager() -> Policy {
    Policy {
        retry_backoff: jiff::SignedDuration::ZERO,
        ..Policy::default()
    }
}

async fn build(h: &Harness, req: StrategyCreate) -> StrategyView {
    h.engine.strategy_create(req).await.unwrap()
}

async fn apply(h: &Harness) -> StrategyView {
    h.engine
        .strategy_action(StrategyCommand::Apply)
        .await
        .unwrap();
    h.engine.wait_strategy().await;
    h.engine.strategy().unwrap().unwrap()
}

async fn build_and_apply(h: &Harness, req: StrategyCreate) -> StrategyView {
    let s = build(h, req).await;
    assert_eq!(
        s.strategy.state,
        StrategyState::ReadyToApply,
        "{}",
        s.strategy.build_phase.reason
    );
    apply(h).await
}

fn assert_applied(s: &StrategyView) {
    assert_eq!(
        s.strategy.state,
        StrategyState::Applied,
        "{}",
        s.strategy.apply_phase.reason
    );
}

fn assert_no_violation(h: &Harness) {
    assert_audit_clean(&h.sim, "strategy");
}

/// How many times each event message appears that ends with `suffix`.
fn count(events: &[kup_types::Event], what: &str) -> usize {
    events.iter().filter(|e| e.message == what).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_is_upgraded_online_without_a_violation() {
    for (name, inv) in [
        ("standard", seed_cluster()),
        ("aio-simplex", example_as_written("aio-simplex.yaml")),
        ("aio-duplex", example_as_written("aio-duplex.yaml")),
        ("50 workers", example_as_written("standard-50-workers.yaml")),
    ] {
        let h = Harness::new(inv).await;
        let s = build_and_apply(&h, create("v1.16.2")).await;
        assert_applied(&s);
        assert_eq!(h.state().await, "upgrade-complete", "{name}");
        assert_eq!(s.current.phase_completion_percentage, 100, "{name}");
        assert_no_violation(&h);
        assert_gapless(&h.events().await);
        let widest = s
            .strategy
            .apply_phase
            .stages
            .iter()
            .filter(|st| st.name == kup_core::strategy::STAGE_WORKERS)
            .map(|st| st.hosts.len())
            .max()
            .unwrap_or(0);
        if name == "50 workers" {
            assert!(widest > 1, "{name}: batches of one only");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_fails_twice_is_retried_to_success() {
    let h = Harness::with_policy(seed_cluster(), 0.0, eager()).await;
    h.sim
        .inject_fault(Fault::times(StepKind::Kubelet, Some("worker-0"), 2));
    h.sim
        .inject_fault(Fault::times(StepKind::DownloadImages, None, 2));
    let s = build_and_apply(&h, create("v1.16.2")).await;
    assert_applied(&s);
    let events = h.events().await;
    let failed = |op: &str| {
        events
            .iter()
            .filter(|e| e.message.starts_with(&format!("{op}: failed")))
            .count()
    };
    assert_eq!(failed("upgrade the kubelet on worker-0 to v1.16.2"), 2);
    assert_eq!(failed("download images of v1.16.2"), 2);
    assert_eq!(
        count(&events, "upgrade the kubelet on worker-0 to v1.16.2: done"),
        1
    );
    assert_eq!(h.state().await, "upgrade-complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_always_fails_ends_the_strategy_naming_it() {
    let h = Harness::with_policy(seed_cluster(), 0.0, eager()).await;
    h.sim
        .inject_fault(Fault::always(StepKind::Lock, Some("worker-1")));
    let s = build_and_apply(&h, create("v1.16.2")).await;
    assert_eq!(s.strategy.state, StrategyState::ApplyFailed);
    let reason = &s.strategy.apply_phase.reason;
    assert!(
        reason.starts_with("host-lock worker-1: failed 3 times, the last: "),
        "{reason}"
    );
    let failed_stage = s
        .strategy
        .apply_phase
        .stages
        .iter()
        .find(|st| st.result == StepResult::Failed)
        .unwrap();
    assert_eq!(failed_stage.hosts, ["worker-1"]);
    // Its alarm is raised, the others are not.
    let alarms = h.engine.alarms().await.unwrap();
    assert!(alarms.iter().any(|a| a.alarm_id == "900.403"));
    assert!(!alarms.iter().any(|a| a.alarm_id == "900.401"));

    // Re-applied once the cause is gone: it resumes and completes.
    h.sim.clear_faults();
    let s = apply(&h).await;
    assert_applied(&s);
    assert_eq!(h.state().await, "upgrade-complete");
    assert_gapless(&h.events().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_hangs_times_out_and_stops_the_strategy() {
    let mut policy = eager();
    policy
        .deadlines
        .insert(StepKind::Kubelet, jiff::SignedDuration::from_millis(200));
    policy.retries = 1;
    let h = Harness::with_policy(seed_cluster(), 0.0, policy).await;
    h.sim
        .inject_fault(Fault::hang(StepKind::Kubelet, Some("controller-1")));
    let s = build_and_apply(&h, create("v1.16.2")).await;
    assert_eq!(s.strategy.state, StrategyState::ApplyTimeout);
    assert!(
        s.strategy.apply_phase.reason.contains("timed out after"),
        "{}",
        s.strategy.apply_phase.reason
    );
    assert!(
        s.strategy
            .apply_phase
            .stages
            .iter()
            .any(|st| st.result == StepResult::TimedOut && st.hosts == ["controller-1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_created_mid_way_through_a_manual_upgrade_resumes_from_its_state() {
    let h = Harness::new(seed_cluster()).await;
    for c in [
        start("v1.16.2"),
        Command::DownloadImages,
        cp("controller-1"),
        Command::UpgradeNetworking,
        cp("controller-0"),
        lock("controller-1"),
        kubelet("controller-1"),
    ] {
        h.ok(c).await;
    }
    let s = build_and_apply(&h, create("v1.16.2")).await;
    assert_applied(&s);
    assert_eq!(h.state().await, "upgrade-complete");
    let events = h.events().await;
    // What was done by hand is not done again.
    assert_eq!(count(&events, "kube-upgrade-start v1.16.2 accepted"), 1);
    assert_eq!(
        count(&events, "kube-host-upgrade controller-1 kubelet accepted"),
        1
    );
    assert_eq!(count(&events, "host-unlock controller-1 accepted"), 1);
    // The stages done before it began show so.
    let stages = &s.strategy.apply_phase.stages;
    assert!(stages.iter().all(|st| st.result == StepResult::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_refuses_an_unsafe_worker_unless_partial_ok_leaves_it_out() {
    let inv = seed_with_workloads("  - name: debug\n    kind: Pod\n    nodes: [worker-1]\n");
    let h = Harness::new(inv.clone()).await;
    let s = build(&h, create("v1.16.2")).await;
    assert_eq!(s.strategy.state, StrategyState::BuildFailed);
    assert!(
        s.strategy
            .build_phase
            .reason
            .starts_with("worker-1: unsafe: pod default/debug-0: unmanaged pod"),
        "{}",
        s.strategy.build_phase.reason
    );
    // Nothing changed.
    assert_eq!(h.state().await, "none");
    assert!(
        h.engine
            .strategy_action(StrategyCommand::Apply)
            .await
            .is_err()
    );
    h.engine
        .strategy_action(StrategyCommand::Delete)
        .await
        .unwrap();

    let s = build_and_apply(
        &h,
        StrategyCreate {
            partial_ok: true,
            ..create("v1.16.2")
        },
    )
    .await;
    assert_applied(&s);
    assert_eq!(s.strategy.apply_phase.result, StepResult::Degraded);
    assert_eq!(s.strategy.skipped.len(), 1);
    assert_eq!(s.strategy.skipped[0].host, "worker-1");
    assert!(s.strategy.skipped[0].reason.contains("unmanaged pod"));
    // The upgrade stays open for the host left out.
    assert_eq!(h.state().await, "upgrading-kubelets");
    let obs = h.sim.observe().await.unwrap();
    assert_eq!(
        obs.kubelet_version("worker-0").map(|v| v.to_string()),
        Some("v1.16.2".into())
    );
    assert_eq!(
        obs.kubelet_version("worker-1").map(|v| v.to_string()),
        Some("v1.16.1".into())
    );
    assert_no_violation(&h);

    // Offline finishes it: the drain deletes the bare pod, as the operator chose.
    h.engine
        .strategy_action(StrategyCommand::Delete)
        .await
        .unwrap();
    let s = build_and_apply(
        &h,
        StrategyCreate {
            mode: Some(UpgradeMode::Offline),
            ..create("v1.16.2")
        },
    )
    .await;
    assert_applied(&s);
    assert_eq!(h.state().await, "upgrade-complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_lets_the_step_in_flight_end_and_starts_no_new_one() {
    let h = Harness::with_scale(seed_cluster(), 0.002).await;
    build(&h, create("v1.16.2")).await;
    h.engine
        .strategy_action(StrategyCommand::Apply)
        .await
        .unwrap();
    // Wait until the first control plane is on its way, then abort.
    while h.state().await != "upgrading-first-master" {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let s = h
        .engine
        .strategy_action(StrategyCommand::Abort { rollback: false })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.strategy.state, StrategyState::Aborting);
    h.engine.wait_strategy().await;
    let s = h.engine.strategy().unwrap().unwrap();
    assert_eq!(s.strategy.state, StrategyState::Aborted);
    // The step in flight finished; nothing after it started.
    assert_eq!(h.state().await, "upgraded-first-master");
    let events = h.events().await;
    assert_eq!(count(&events, "kube-upgrade-networking accepted"), 0);
    // Applied again, it resumes.
    h.sim.set_time_scale(0.0);
    let s = apply(&h).await;
    assert_applied(&s);
    assert_eq!(h.state().await, "upgrade-complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_apply_resumes_and_each_step_ends_once() {
    let inv = seed_cluster();
    let h = Harness::persistent(inv.clone()).await;
    h.sim.set_time_scale(0.002);
    build(&h, create("v1.16.2")).await;
    h.engine
        .strategy_action(StrategyCommand::Apply)
        .await
        .unwrap();
    while h.state().await != "upgrading-networking" {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let h = h.crash(&inv).await;
    h.engine.wait_strategy().await;
    let s = h.engine.strategy().unwrap().unwrap();
    assert_applied(&s);
    assert_eq!(h.state().await, "upgrade-complete");
    let events = h.events().await;
    assert_gapless(&events);
    // Every operation that ended well did so exactly once.
    let mut done: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in events.iter().filter(|e| e.message.ends_with(": done")) {
        *done.entry(e.message.as_str()).or_default() += 1;
    }
    assert!(done.values().all(|&n| n == 1), "{done:?}");
    assert!(done.len() >= 15, "{done:?}");
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("was in flight at restart"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_refuses_what_cannot_be_applied() {
    let h = Harness::new(seed_cluster()).await;
    let failed = |s: StrategyView| {
        assert_eq!(s.strategy.state, StrategyState::BuildFailed);
        s.strategy.build_phase.reason.clone()
    };
    let s = build(&h, create("v1.99.0")).await;
    assert_eq!(failed(s), "Invalid to_version value: 'v1.99.0'");
    // One strategy at a time.
    let e = h
        .engine
        .strategy_create(create("v1.16.2"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "A kube-upgrade strategy already exists; delete it first"
    );
    h.engine
        .strategy_action(StrategyCommand::Delete)
        .await
        .unwrap();
    let s = build(&h, create("v1.16.1")).await;
    assert_eq!(failed(s), "Kubernetes is already upgraded to: v1.16.1");
    h.engine
        .strategy_action(StrategyCommand::Delete)
        .await
        .unwrap();
    // A management-affecting alarm stops a strict strategy, not a permissive one.
    h.sim.mutate(|m| {
        m.alarms.push(kup_types::Alarm {
            uuid: "a".into(),
            alarm_id: "100.101".into(),
            entity_instance_id: "host=worker-0".into(),
            reason_text: "Platform CPU threshold exceeded".into(),
            severity: kup_types::Severity::Major,
            management_affecting: true,
            timestamp: jiff::Timestamp::UNIX_EPOCH,
        })
    });
    let s = build(&h, create("v1.16.2")).await;
    assert_eq!(failed(s), "active alarms present [ 100.101 ]");
    h.engine
        .strategy_action(StrategyCommand::Delete)
        .await
        .unwrap();
    let s = build(
        &h,
        StrategyCreate {
            alarm_restrictions: Some(kup_types::AlarmRestrictions::Permissive),
            ..create("v1.16.2")
        },
    )
    .await;
    assert_eq!(s.strategy.state, StrategyState::ReadyToApply);
    // Not deleted while it applies.
    h.sim.set_time_scale(0.01);
    h.engine
        .strategy_action(StrategyCommand::Apply)
        .await
        .unwrap();
    let e = h
        .engine
        .strategy_action(StrategyCommand::Delete)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "The strategy is applying: wait for it to finish or abort it first"
    );
    h.engine
        .strategy_action(StrategyCommand::Abort { rollback: false })
        .await
        .unwrap();
    h.engine.wait_strategy().await;
}

/// Abort raced against a runner that never waits (time scale 0): whenever the abort lands,
/// no command of the runner is accepted after it, and the strategy ends aborted, not failed or
/// applied. Applied again each time, it resumes; in the end the upgrade completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_starts_after_an_abort_whenever_it_lands() {
    let h = Harness::new(example("standard-50-workers.yaml")).await;
    let mut req = create("v1.16.2");
    req.mode = Some(UpgradeMode::Offline);
    build(&h, req).await;
    let mut aborts = 0;
    for round in 0..40u64 {
        h.engine
            .strategy_action(StrategyCommand::Apply)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_micros(300 * (round % 7))).await;
        let Ok(_) = h
            .engine
            .strategy_action(StrategyCommand::Abort { rollback: false })
            .await
        else {
            break; // Applied already.
        };
        aborts += 1;
        h.engine.wait_strategy().await;
        let s = h.engine.strategy().unwrap().unwrap();
        assert_eq!(s.strategy.state, StrategyState::Aborted, "round {round}");
        let events = h.events().await;
        let at = events
            .iter()
            .rposition(|e| e.message == "kube-upgrade-strategy abort accepted")
            .unwrap();
        let late: Vec<&str> = events[at..]
            .iter()
            .filter(|e| e.kind == kup_types::EventKind::Command && e.subject != "strategy")
            .map(|e| e.message.as_str())
            .collect();
        assert!(late.is_empty(), "round {round}: {late:?}");
    }
    assert!(aborts > 5, "{aborts} aborts");
    if h.engine.strategy().unwrap().unwrap().strategy.state != StrategyState::Applied {
        assert_applied(&apply(&h).await);
    }
    assert_eq!(h.state().await, "upgrade-complete");
}

/// A manual upgrade left with hosts locked before their kubelet step (a controller and a
/// worker): the strategy takes them as they stand, finishes them first, and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_finishes_hosts_locked_by_hand_before_their_kubelet() {
    let h = Harness::new(seed_cluster()).await;
    h.ok(start("v1.16.2")).await;
    h.ok(Command::DownloadImages).await;
    h.ok(cp("controller-1")).await;
    h.ok(Command::UpgradeNetworking).await;
    h.ok(cp("controller-0")).await;
    h.ok(lock("controller-1")).await;
    let s = build_and_apply(&h, create("v1.16.2")).await;
    assert_applied(&s);
    assert_eq!(h.state().await, "upgrade-complete");
    assert_no_violation(&h);
}

/// With a worker locked before any upgrade, the start's health check would refuse: the build
/// says so, even with --partial-ok (a host out of service cannot be left out of a start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_runs_the_starts_health_check() {
    let h = Harness::new(seed_cluster()).await;
    h.ok(lock("worker-1")).await;
    let mut req = create("v1.16.2");
    req.partial_ok = true;
    let s = build(&h, req).await;
    assert_eq!(s.strategy.state, StrategyState::BuildFailed);
    assert!(
        s.strategy
            .build_phase
            .reason
            .contains("the start's health check: ")
            && s.strategy.build_phase.reason.contains("worker-1"),
        "{}",
        s.strategy.build_phase.reason
    );
    assert_eq!(h.state().await, "none");
}

/// An example file with some text replaced (a variant of an example for one test).
fn example_with(name: &str, edits: &[(&str, &str)]) -> kup_sim::Inventory {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in {name}");
        text = text.replacen(from, to, 1);
    }
    kup_sim::Inventory::parse(&text).unwrap()
}

const CP_1_AND_2: &str = "  - name: control-plane-1\n    personality: controller\n    capacity: { cpu_millis: 8000, memory_mib: 32768 }\n  - name: control-plane-2\n    personality: controller\n    capacity: { cpu_millis: 8000, memory_mib: 32768 }\n";

/// A kubeadm cluster with one control plane: its kubelet is upgraded in place (no other could
/// serve while it is locked), online and offline, across several minors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_control_plane_kubeadm_cluster_upgrades_across_minors() {
    for mode in [UpgradeMode::Online, UpgradeMode::Offline] {
        let h = Harness::new(example_with(
            "kubeadm-v1.29-to-v1.33.yaml",
            &[(CP_1_AND_2, "")],
        ))
        .await;
        let mut req = create("v1.33.0");
        req.mode = Some(mode);
        let s = build_and_apply(&h, req).await;
        assert_applied(&s);
        assert_eq!(h.state().await, "upgrade-complete", "{mode}");
        let audit = h.sim.safety_audit().unwrap();
        assert_eq!(
            (
                audit.pdb_violations,
                audit.unplaced_pods,
                audit.skew_violations
            ),
            (0, 0, 0),
            "{mode}: {audit:?}"
        );
    }
}

/// With --partial-ok, a worker left out of a kubelet round on the way that the next minor
/// would leave beyond the skew policy: the strategy ends there (the upgrade open) and names
/// it, rather than sending a control-plane step bound to be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_ok_stops_where_a_left_out_host_blocks_the_next_minor() {
    let h = Harness::new(example_with(
        "kubeadm-v1.29-to-v1.33.yaml",
        &[(
            "workloads:\n",
            "workloads:\n  - name: debug\n    kind: Pod\n    nodes: [worker-3]\n",
        )],
    ))
    .await;
    let mut req = create("v1.33.0");
    req.partial_ok = true;
    let s = build_and_apply(&h, req).await;
    assert_eq!(
        s.strategy.state,
        StrategyState::Applied,
        "{:?}",
        s.strategy.apply_phase
    );
    assert_eq!(s.strategy.apply_phase.result, StepResult::Degraded);
    assert!(
        s.strategy.apply_phase.reason.contains("worker-3"),
        "{}",
        s.strategy.apply_phase.reason
    );
    let obs = h.engine.observe().await.unwrap();
    assert_eq!(
        obs.control_plane_version("control-plane-0")
            .unwrap()
            .to_string(),
        "v1.32.2"
    );
}

/// aio-simplex across several minors, cordoned by hand after networking (StarlingX allows it
/// before a control plane or after networking): the next minors and kubelet rounds go on from
/// cordon-complete, by hand and by a strategy, which uncordons before complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordon_after_networking_in_a_multi_version_simplex_upgrade() {
    let catalog = "versions:\n  - version: v1.29.2\n  - version: v1.30.6\n    upgrade_from: [v1.29.2]\n  - version: v1.31.5\n    upgrade_from: [v1.30.6]\n  - version: v1.32.2\n    upgrade_from: [v1.31.5]\n  - version: v1.33.0\n    upgrade_from: [v1.32.2]\nhosts:";
    let h = Harness::new(example_with(
        "aio-simplex.yaml",
        &[
            ("kubernetes_version: v1.16.1", "kubernetes_version: v1.29.2"),
            (
                "versions:\n  - version: v1.16.1\n  - version: v1.16.2\n    upgrade_from: [v1.16.1]\nhosts:",
                catalog,
            ),
            ("    k8s_max: v1.18.99\n", ""),
        ],
    ))
    .await;
    h.ok(start("v1.33.0")).await;
    h.ok(Command::DownloadImages).await;
    h.ok(cp("controller-0")).await;
    h.ok(Command::UpgradeNetworking).await;
    h.ok(Command::Cordon {
        host: "controller-0".into(),
    })
    .await;
    assert_eq!(h.state().await, "cordon-complete");
    // By hand: the next minor's control plane goes on from cordon-complete.
    h.ok(cp("controller-0")).await;
    assert_eq!(h.state().await, "upgraded-first-master");
    // A strategy takes it from here to the end, uncordoning before complete.
    let s = build_and_apply(&h, create("v1.33.0")).await;
    assert_applied(&s);
    assert_eq!(h.state().await, "upgrade-complete");
    let obs = h.engine.observe().await.unwrap();
    assert!(!obs.node("controller-0").unwrap().unschedulable);
    assert_eq!(
        obs.kubelet_version("controller-0").unwrap().to_string(),
        "v1.33.0"
    );
}
