//! Races where they are decided: 16 tasks send conflicting commands through
//! `Engine::execute` at the same moment (a barrier releases them), each race repeated
//! `KUP_RACE_ROUNDS` times (default 10; the reliability script runs more), on a fresh engine
//! and cluster each round. Odd rounds make the raced step take 0.1 s, so the losers meet the
//! winner's step in flight; even rounds make it instant. (`crates/kup/tests/races.rs`
//! runs the same races through the daemon's HTTP API.)
//!
//! Every round must admit exactly one command, refuse every other with one of the reasons the
//! race allows, and end consistent: what the store holds (read through a second connection)
//! agrees with what the cluster shows, nothing is left running, the log is gapless and the
//! simulation's audit is at zero.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use kup_core::strategy::StrategyCommand;
use kup_core::{Command, Refusal};
use kup_engine::{EngineError, Outcome};
use kup_types::{StepKind, StrategyCreate, StrategyState};

const CLIENTS: usize = 16;

fn rounds() -> usize {
    std::env::var("KUP_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// Sends every command at the same moment; the results in the same order.
async fn race(h: &Arc<Harness>, cmds: Vec<Command>) -> Vec<Result<Outcome, EngineError>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(cmds.len()));
    let tasks: Vec<_> = cmds
        .into_iter()
        .map(|c| {
            let (h, barrier) = (Arc::clone(h), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                h.run(c).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A fresh engine on the seed's cluster, every step instant but, on odd rounds, `slow`
/// (0.1 s).
async fn harness(round: usize, slow: StepKind) -> Arc<Harness> {
    let mut inv = seed_cluster();
    for kind in StepKind::ALL {
        let secs = if round % 2 == 1 && kind == slow {
            0.1
        } else {
            0.0
        };
        inv.durations.insert(kind, secs);
    }
    Arc::new(Harness::with_scale(inv, 1.0).await)
}

#[derive(Default)]
struct Tally {
    accepted: usize,
    refused: BTreeMap<&'static str, usize>,
}

impl Tally {
    /// Exactly one accepted; every refusal one that `allowed` names.
    fn round(
        &mut self,
        results: &[Result<Outcome, EngineError>],
        allowed: impl Fn(usize, &Refusal) -> Option<&'static str>,
    ) -> usize {
        let winners: Vec<usize> = (0..results.len()).filter(|i| results[*i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        self.accepted += 1;
        for (i, r) in results.iter().enumerate() {
            if let Err(e) = r {
                let kind = e
                    .refusal()
                    .and_then(|r| allowed(i, r))
                    .unwrap_or_else(|| panic!("unexpected: {e}"));
                *self.refused.entry(kind).or_default() += 1;
            }
        }
        winners[0]
    }

    fn report(&self, name: &str, started: std::time::Instant) {
        println!(
            "engine race {name}: {} rounds of {CLIENTS}, {} accepted, refused: {:?} ({:.1} s)",
            self.accepted,
            self.accepted,
            self.refused,
            started.elapsed().as_secs_f64()
        );
    }
}

/// What every round ends with, once nothing runs.
async fn assert_consistent(h: &Harness) {
    h.engine.wait_idle().await;
    h.engine.wait_strategy().await;
    let stored = h.stored().await;
    assert!(stored.operations.is_empty(), "left running: {stored:?}");
    assert_eq!(
        stored
            .upgrade
            .as_ref()
            .map_or("none".into(), |u| u.state.to_string()),
        h.state().await,
        "the store and the engine"
    );
    // Each row's status agrees with the versions the cluster shows.
    for row in h.engine.kube_host_upgrades().await.unwrap() {
        if row.status.as_deref() == Some("upgraded-kubelet") {
            assert_eq!(row.target_version.as_deref(), Some(&*row.kubelet_version));
        }
        let stored_row = stored.hosts.iter().find(|r| r.hostname == row.hostname);
        assert_eq!(
            stored_row.and_then(|r| r.status.map(|s| s.to_string())),
            row.status,
            "{}",
            row.hostname
        );
    }
    assert_gapless(&h.events().await);
    assert_audit_clean(&h.sim, "race");
}

fn count(events: &[kup_types::Event], message: &str) -> usize {
    events.iter().filter(|e| e.message == message).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_of_one_host() {
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    for round in 0..rounds() {
        let h = harness(round, StepKind::Lock).await;
        let results = race(&h, vec![lock("worker-0"); CLIENTS]).await;
        tally.round(&results, |_, r| match r {
            Refusal::HostBusy { .. } => Some("busy"),
            Refusal::AlreadyLocked(_) => Some("already locked"),
            _ => None,
        });
        assert_consistent(&h).await;
        let host = h.engine.host("worker-0").await.unwrap();
        assert_eq!(host.administrative.as_str(), "locked");
        assert_eq!(count(&h.events().await, "lock worker-0: done"), 1);
    }
    tally.report("host-lock, one host", started);
}

/// worker-0 and worker-1 hold the only replicas of ingress-nginx and postgres: one lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_of_two_workers_unsafe_together() {
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let host = |i: usize| format!("worker-{}", i % 2);
    for round in 0..rounds() {
        let h = harness(round, StepKind::Lock).await;
        let results = race(&h, (0..CLIENTS).map(|i| lock(&host(i))).collect()).await;
        let winner = host(results.iter().position(Result::is_ok).unwrap_or(0));
        tally.round(&results, |i, r| match r {
            Refusal::LockUnsafe { host: h, .. } if *h == host(i) && *h != winner => Some("unsafe"),
            Refusal::HostBusy { host: h, .. } if *h == host(i) && *h == winner => Some("busy"),
            Refusal::AlreadyLocked(h) if *h == host(i) && *h == winner => Some("already locked"),
            _ => None,
        });
        assert_consistent(&h).await;
        let log = h.events().await;
        assert_eq!(count(&log, &format!("lock {winner}: done")), 1);
        let loser = if winner == "worker-0" {
            "worker-1"
        } else {
            "worker-0"
        };
        let l = h.engine.host(loser).await.unwrap();
        assert_eq!(l.administrative.as_str(), "unlocked");
    }
    tally.report("host-lock, two workers unsafe together", started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelets_of_one_host() {
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    for round in 0..rounds() {
        let h = harness(round, StepKind::Kubelet).await;
        for c in [
            start("v1.16.2"),
            Command::DownloadImages,
            cp("controller-1"),
            Command::UpgradeNetworking,
            cp("controller-0"),
            lock("controller-1"),
        ] {
            h.ok(c).await;
        }
        let results = race(&h, vec![kubelet("controller-1"); CLIENTS]).await;
        tally.round(&results, |_, r| match r {
            Refusal::KubeletBusy(_) => Some("busy"),
            _ => None,
        });
        assert_consistent(&h).await;
        let log = h.events().await;
        assert_eq!(
            count(&log, "upgrade the kubelet on controller-1 to v1.16.2: done"),
            1
        );
    }
    tally.report("kube-host-upgrade kubelet, one host", started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategy_applies() {
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    for round in 0..rounds() {
        let h = harness(round, StepKind::DownloadImages).await;
        h.engine
            .strategy_create(StrategyCreate {
                to_version: "v1.16.2".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let apply = Command::Strategy(StrategyCommand::Apply);
        let results = race(&h, vec![apply; CLIENTS]).await;
        tally.round(&results, |_, r| match r {
            Refusal::StrategyBusy(StrategyState::Applying) => Some("applying"),
            Refusal::StrategyNotReady(StrategyState::Applied) => Some("applied"),
            _ => None,
        });
        assert_consistent(&h).await;
        assert_eq!(h.state().await, "upgrade-complete");
        let log = h.events().await;
        assert_eq!(count(&log, "kube-upgrade-strategy apply accepted"), 1);
    }
    tally.report("kube-upgrade-strategy apply", started);
}
