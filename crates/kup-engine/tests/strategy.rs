//! The upgrade strategy: built, applied by the runner through the same commands a user sends,
//! resumed after a crash, retried, failed, aborted.

mod common;

use common::*;
use kup_core::strategy::StrategyCommand;
use kup_types::{StrategyCreate, StrategyState, StrategyView};

fn create(to: &str) -> StrategyCreate {
    StrategyCreate {
        to_version: to.into(),
        worker_apply_type: None,
        max_parallel_worker_hosts: None,
        alarm_restrictions: None,
        mode: None,
        partial_ok: false,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_cluster_is_upgraded_by_the_strategy() {
    let h = Harness::new(seed_cluster()).await;
    let s = h.engine.strategy_create(create("v1.16.2")).await.unwrap();
    assert_eq!(
        s.strategy.state,
        StrategyState::ReadyToApply,
        "{}",
        s.strategy.build_phase.reason
    );
    let s = apply(&h).await;
    assert_eq!(
        s.strategy.state,
        StrategyState::Applied,
        "{}",
        s.strategy.apply_phase.reason
    );
    assert_eq!(h.state().await, "upgrade-complete");
    assert_eq!(s.current.phase_completion_percentage, 100);
    assert_gapless(&h.events().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_print_events() {
    let h = Harness::new(seed_cluster()).await;
    h.engine.strategy_create(create("v1.16.2")).await.unwrap();
    apply(&h).await;
    for e in h.events().await {
        println!("{} {} {} {}", e.seq, e.kind.as_str(), e.subject, e.message);
    }
    let s = h.engine.strategy().unwrap().unwrap();
    println!("{}", serde_json::to_string_pretty(&s).unwrap());
}
