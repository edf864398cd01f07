//! Faults, systematically: every kind of step (`StepKind`) failing once, always, with a
//! probability, and hanging, in a manual run (the seed's commands one by one, as the CLI sends
//! them) and in an automated one (a strategy built and applied), each to the end.
//!
//! A manual run must show each failure where the step's kind shows it (the upgrade's or the
//! host's `-failed` state, a host action undone, "timed out" at the deadline), and the same
//! command must re-do the step: at once after a `once` fault, until it passes for a
//! probability, once the cause is gone for `always` (which fails the re-do too) and a hang.
//! An automated run retries a failed step: it completes after a `once` fault, stops
//! `apply-failed` naming the step after an `always` fault (`apply-timeout` after a hang), and,
//! re-applied once the cause is gone, completes. Every run ends with the upgrade complete, a
//! gapless log and the simulation's audit at zero.
//!
//! The probability cases (p = 0.5 for every run of the kind) run with `KUP_FAULT_SEEDS` seeds
//! (default 3; the reliability script runs more). The automated cordon has no case: a strategy never cordons by itself.

mod common;

use common::*;
use kup_core::strategy::StrategyCommand;
use kup_core::{Command, Policy};
use kup_sim::{Fault, FaultMode, Inventory};
use kup_types::{EventKind, StepKind, StrategyCreate, StrategyState, StrategyView};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Once,
    Always,
    Probability,
    Hang,
}

const MODES: [Mode; 4] = [Mode::Once, Mode::Always, Mode::Probability, Mode::Hang];

/// A hung step is marked failed after this long.
const DEADLINE_MS: i64 = 150;

fn seeds() -> u64 {
    std::env::var("KUP_FAULT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Every run of `kind`, on any host, is hit.
fn fault(kind: StepKind, mode: Mode) -> Fault {
    match mode {
        Mode::Once => Fault::once(kind, None),
        Mode::Always => Fault::always(kind, None),
        Mode::Probability => Fault::new(kind, None, FaultMode::Probability, 0.5),
        Mode::Hang => Fault::hang(kind, None),
    }
}

/// Retries at once, and a short deadline for the kind under test.
fn policy(kind: StepKind) -> Policy {
    let mut p = Policy {
        retry_backoff: jiff::SignedDuration::ZERO,
        ..Policy::default()
    };
    p.deadlines
        .insert(kind, jiff::SignedDuration::from_millis(DEADLINE_MS));
    p
}

/// Cordons exist on aio-simplex only; every other kind runs on the seed's standard system.
fn simplex(kind: StepKind) -> bool {
    matches!(kind, StepKind::Cordon | StepKind::Uncordon)
}

/// The cluster for `kind`; its seed also depends on the kind, so that kinds run as often
/// as each other do not meet the same draws.
fn cluster(kind: StepKind, seed: u64) -> Inventory {
    let mut inv = if simplex(kind) {
        example("aio-simplex.yaml")
    } else {
        seed_cluster()
    };
    let k = StepKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u64;
    inv.seed = seed * 1000 + k;
    inv
}

fn cordon(h: &str) -> Command {
    Command::Cordon { host: h.into() }
}

fn uncordon(h: &str) -> Command {
    Command::Uncordon { host: h.into() }
}

/// The seed's procedure by hand, every command in order.
fn procedure(kind: StepKind) -> Vec<Command> {
    if simplex(kind) {
        return vec![
            start("v1.16.2"),
            Command::DownloadImages,
            cordon("controller-0"),
            cp("controller-0"),
            Command::UpgradeNetworking,
            kubelet("controller-0"),
            uncordon("controller-0"),
            Command::Complete,
        ];
    }
    let mut cmds = vec![
        start("v1.16.2"),
        Command::DownloadImages,
        cp("controller-1"),
        Command::UpgradeNetworking,
        cp("controller-0"),
        lock("controller-1"),
        kubelet("controller-1"),
        unlock("controller-1"),
        swact("controller-0"),
    ];
    for host in ["controller-0", "worker-0", "worker-1"] {
        cmds.extend([lock(host), kubelet(host), unlock(host)]);
    }
    cmds.push(Command::Complete);
    cmds
}

fn host_of(cmd: &Command) -> &str {
    match cmd {
        Command::ControlPlane { host, .. }
        | Command::Kubelet { host, .. }
        | Command::Lock { host, .. }
        | Command::Unlock { host, .. }
        | Command::Swact { host, .. }
        | Command::Cordon { host }
        | Command::Uncordon { host } => host,
        _ => "",
    }
}

fn kind_of(cmd: &Command) -> Option<StepKind> {
    Some(match cmd {
        Command::DownloadImages => StepKind::DownloadImages,
        Command::ControlPlane { .. } => StepKind::ControlPlane,
        Command::UpgradeNetworking => StepKind::Networking,
        Command::Kubelet { .. } => StepKind::Kubelet,
        Command::Lock { .. } => StepKind::Lock,
        Command::Unlock { .. } => StepKind::Unlock,
        Command::Swact { .. } => StepKind::Swact,
        Command::Cordon { .. } => StepKind::Cordon,
        Command::Uncordon { .. } => StepKind::Uncordon,
        _ => return None,
    })
}

async fn host_status(h: &Harness, host: &str) -> String {
    h.engine
        .kube_host_upgrades()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.hostname == host)
        .and_then(|r| r.status)
        .unwrap_or_else(|| "None".into())
}

/// Where a failed step of `cmd` shows, as the CLI would read it.
async fn assert_shows_failed(h: &Harness, cmd: &Command, case: &str) {
    let host = host_of(cmd);
    let state = h.state().await;
    match kind_of(cmd).unwrap() {
        StepKind::DownloadImages => assert_eq!(state, "downloading-images-failed", "{case}"),
        StepKind::ControlPlane => {
            assert!(state.ends_with("-master-failed"), "{case}: {state}");
            assert_eq!(
                host_status(h, host).await,
                "upgrading-control-plane-failed",
                "{case}"
            );
        }
        StepKind::Networking => assert_eq!(state, "upgrading-networking-failed", "{case}"),
        StepKind::Kubelet => assert_eq!(
            host_status(h, host).await,
            "upgrading-kubelet-failed",
            "{case}"
        ),
        // A host action that fails leaves the host as it was.
        StepKind::Lock => {
            let ihost = h.engine.host(host).await.unwrap();
            assert_eq!(ihost.administrative.as_str(), "unlocked", "{case}");
        }
        StepKind::Unlock => {
            let ihost = h.engine.host(host).await.unwrap();
            assert_eq!(ihost.administrative.as_str(), "locked", "{case}");
        }
        StepKind::Swact => {
            assert!(
                h.engine.host(host).await.unwrap().active_controller,
                "{case}: the swact went through"
            );
        }
        StepKind::Cordon => assert_eq!(state, "cordon-failed", "{case}"),
        StepKind::Uncordon => assert_eq!(state, "uncordon-failed", "{case}"),
    }
}

/// The operation ends logged since `from`, as (message, failed).
async fn ends_since(h: &Harness, from: usize) -> Vec<(String, bool)> {
    h.events().await[from..]
        .iter()
        .filter(|e| e.kind == EventKind::Operation)
        .map(|e| (e.message.clone(), e.message.contains(": failed")))
        .collect()
}

/// The end every run must reach.
async fn assert_complete(h: &Harness, case: &str) {
    assert_eq!(h.state().await, "upgrade-complete", "{case}");
    assert_gapless(&h.events().await);
    assert_audit_clean(&h.sim, case);
}

/// One manual run; returns how many runs of the step failed.
async fn manual(kind: StepKind, mode: Mode, seed: u64) -> usize {
    let case = format!("manual {kind} {mode:?} seed {seed}");
    let h = Harness::with_policy(cluster(kind, seed), 0.0, policy(kind)).await;
    h.sim.inject_fault(fault(kind, mode));
    let mut failures = 0;
    let mut hit = false;
    for cmd in procedure(kind) {
        let mut tries = 0;
        loop {
            let from = h.events().await.len();
            h.ok(cmd.clone()).await;
            let ends = ends_since(&h, from).await;
            let failed: Vec<&String> = ends.iter().filter(|e| e.1).map(|e| &e.0).collect();
            if failed.is_empty() {
                break;
            }
            assert_eq!(
                kind_of(&cmd),
                Some(kind),
                "{case}: {cmd:?} failed: {failed:?}"
            );
            hit = true;
            tries += 1;
            failures += 1;
            let why = if mode == Mode::Hang {
                "timed out after 0 s".to_string()
            } else {
                format!("simulated fault injected into {kind}")
            };
            assert!(
                failed.iter().all(|m| m.ends_with(&why)),
                "{case}: {failed:?}"
            );
            assert_shows_failed(&h, &cmd, &case).await;
            match mode {
                Mode::Once => assert_eq!(tries, 1, "{case}: failed again"),
                // The re-do fails too; then the cause is removed and the re-do goes through.
                Mode::Always if tries == 2 => h.sim.clear_faults(),
                Mode::Always => {}
                Mode::Hang => {
                    assert_eq!(tries, 1, "{case}");
                    h.sim.clear_faults();
                }
                Mode::Probability => assert!(tries < 40, "{case}: never passed"),
            }
        }
    }
    assert!(
        hit || mode == Mode::Probability,
        "{case}: the fault never fired"
    );
    match mode {
        Mode::Once | Mode::Hang => assert_eq!(failures, 1, "{case}"),
        Mode::Always => assert_eq!(failures, 2, "{case}"),
        Mode::Probability => {}
    }
    assert_complete(&h, &case).await;
    failures
}

fn create() -> StrategyCreate {
    StrategyCreate {
        to_version: "v1.16.2".into(),
        ..Default::default()
    }
}

async fn apply(h: &Harness) -> StrategyView {
    h.engine
        .strategy_action(StrategyCommand::Apply)
        .await
        .unwrap();
    h.engine.wait_strategy().await;
    h.engine.strategy().unwrap().unwrap()
}

/// How an automated run ended before the cause was removed.
#[derive(Debug, PartialEq, Eq)]
enum Automated {
    Applied,
    Stopped,
}

/// One automated run (cordoned by hand first on simplex for the uncordon, as the strategy
/// never cordons by itself).
async fn automated(kind: StepKind, mode: Mode, seed: u64) -> Automated {
    let case = format!("automated {kind} {mode:?} seed {seed}");
    let h = Harness::with_policy(cluster(kind, seed), 0.0, policy(kind)).await;
    if kind == StepKind::Uncordon {
        for c in [
            start("v1.16.2"),
            Command::DownloadImages,
            cordon("controller-0"),
        ] {
            h.ok(c).await;
        }
    }
    h.sim.inject_fault(fault(kind, mode));
    let built = h.engine.strategy_create(create()).await.unwrap();
    assert_eq!(
        built.strategy.state,
        StrategyState::ReadyToApply,
        "{case}: {}",
        built.strategy.build_phase.reason
    );
    let s = apply(&h).await;
    let reason = s.strategy.apply_phase.reason.clone();
    let failed = |h: &Harness| {
        let h = h.engine.clone();
        async move {
            h.events(0, 100_000)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.kind == EventKind::Operation && e.message.contains(": failed"))
                .count()
        }
    };
    let retries = Policy::default().retries as usize;
    let outcome = match (mode, s.strategy.state) {
        (Mode::Once, StrategyState::Applied) => {
            assert_eq!(failed(&h).await, 1, "{case}: retried once");
            Automated::Applied
        }
        (Mode::Probability, StrategyState::Applied) => Automated::Applied,
        (Mode::Always | Mode::Probability, StrategyState::ApplyFailed) => {
            assert!(
                reason.contains(&format!(
                    ": failed {} times, the last: simulated fault injected into {kind}",
                    retries + 1
                )),
                "{case}: {reason}"
            );
            Automated::Stopped
        }
        (Mode::Hang, StrategyState::ApplyTimeout) => {
            assert!(reason.contains("timed out after"), "{case}: {reason}");
            assert_eq!(failed(&h).await, retries + 1, "{case}: each try timed out");
            Automated::Stopped
        }
        (_, state) => panic!("{case}: ended {state:?}: {reason}"),
    };
    if outcome == Automated::Stopped {
        // The step is named: its stage failed or timed out, and the command is in the reason.
        let stage = s
            .strategy
            .apply_phase
            .stages
            .iter()
            .find(|st| {
                matches!(
                    st.result,
                    kup_types::StepResult::Failed | kup_types::StepResult::TimedOut
                )
            })
            .unwrap_or_else(|| panic!("{case}: no stage failed"));
        assert!(!stage.name.is_empty(), "{case}");
        h.sim.clear_faults();
        let s = apply(&h).await;
        assert_eq!(
            s.strategy.state,
            StrategyState::Applied,
            "{case}, re-applied: {}",
            s.strategy.apply_phase.reason
        );
    }
    assert_complete(&h, &case).await;
    outcome
}

/// Every mode of one kind, manual and automated.
async fn every_mode(kind: StepKind) {
    let started = std::time::Instant::now();
    let mut report = Vec::new();
    let mut cases = 0;
    for mode in MODES {
        let seeds = if mode == Mode::Probability {
            seeds()
        } else {
            1
        };
        let mut failures = 0;
        let (mut applied, mut stopped) = (0, 0);
        for seed in 1..=seeds {
            failures += manual(kind, mode, seed).await;
            cases += 1;
            if kind == StepKind::Cordon {
                continue;
            }
            match automated(kind, mode, seed).await {
                Automated::Applied => applied += 1,
                Automated::Stopped => stopped += 1,
            }
            cases += 1;
        }
        report.push(format!(
            "{mode:?} x{seeds}: {failures} failed runs by hand; automated {applied} applied, \
             {stopped} stopped then re-applied"
        ));
    }
    println!(
        "faults {kind}: {cases} runs: {} ({:.1} s)",
        report.join("; "),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_images_faults() {
    every_mode(StepKind::DownloadImages).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_faults() {
    every_mode(StepKind::ControlPlane).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networking_faults() {
    every_mode(StepKind::Networking).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_faults() {
    every_mode(StepKind::Kubelet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_faults() {
    every_mode(StepKind::Lock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_faults() {
    every_mode(StepKind::Unlock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swact_faults() {
    every_mode(StepKind::Swact).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_faults() {
    every_mode(StepKind::Cordon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncordon_faults() {
    every_mode(StepKind::Uncordon).await;
}

/// Every kind of step has its test above: a kind added to `StepKind` does not compile here
/// until it is given one.
#[test]
fn every_step_kind_has_a_test() {
    let test = |kind: StepKind| match kind {
        StepKind::DownloadImages => "download_images_faults",
        StepKind::ControlPlane => "control_plane_faults",
        StepKind::Networking => "networking_faults",
        StepKind::Kubelet => "kubelet_faults",
        StepKind::Lock => "lock_faults",
        StepKind::Unlock => "unlock_faults",
        StepKind::Swact => "swact_faults",
        StepKind::Cordon => "cordon_faults",
        StepKind::Uncordon => "uncordon_faults",
    };
    let names: std::collections::BTreeSet<_> = StepKind::ALL.into_iter().map(test).collect();
    assert_eq!(names.len(), StepKind::ALL.len());
}
