//! The simulated makespan of kup's automated upgrade (`upgrade online`: a strategy with worker
//! batches of up to 10) on the 50-worker example, next to the plan's lower bound of any safe
//! schedule and next to one worker at a time (Kismatic's order), with the PDB violations and
//! unplaced pods the simulation saw.
//!
//! The cluster runs at a small time scale; the simulated makespan is the wall time of the run
//! less that of the same run at time scale 0 (kup's own work), divided by the scale.
//!
//! `cargo bench -p kup --bench makespan [-- --scale 0.002]`; without `--bench` (as `cargo
//! test` runs it) a smoke run at a tiny scale.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kup_core::strategy::StrategyCommand;
use kup_engine::{Engine, EngineConfig};
use kup_sim::{Inventory, SimCluster};
use kup_store::SqliteStore;
use kup_types::{ApplyType, StrategyCreate, StrategyState};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let scale: f64 = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 0.002 } else { 0.0002 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run(scale));
}

struct Run {
    wall: Duration,
    violations: u64,
    unplaced: u64,
    batches: usize,
    widest: usize,
    predicted: u64,
    lower_bound: u64,
}

async fn upgrade(inv: &Inventory, scale: f64, serial: bool) -> Run {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sim = SimCluster::new(inv, scale);
    let store = SqliteStore::open(&dir.path().join("kup.db"))
        .await
        .expect("a store");
    let config = EngineConfig {
        catalog: sim.catalog(),
        policy: kup_core::Policy::default(),
        patch_repo: None,
    };
    let engine = Engine::open(Arc::new(store), Arc::new(sim.clone()), config)
        .await
        .expect("the engine opens");
    let req = StrategyCreate {
        to_version: "v1.16.2".into(),
        worker_apply_type: Some(if serial {
            ApplyType::Serial
        } else {
            ApplyType::Parallel
        }),
        max_parallel_worker_hosts: Some(10),
        alarm_restrictions: None,
        mode: None,
        partial_ok: false,
        ..Default::default()
    };
    let built = engine.strategy_create(req).await.expect("a strategy");
    assert_eq!(
        built.strategy.state,
        StrategyState::ReadyToApply,
        "{}",
        built.strategy.build_phase.reason
    );
    let start = Instant::now();
    engine
        .strategy_action(StrategyCommand::Apply)
        .await
        .expect("applied");
    engine.wait_strategy().await;
    let wall = start.elapsed();
    let s = engine
        .strategy()
        .expect("read")
        .expect("a strategy")
        .strategy;
    assert_eq!(s.state, StrategyState::Applied, "{}", s.apply_phase.reason);
    let workers: Vec<usize> = s
        .apply_phase
        .stages
        .iter()
        .filter(|st| st.name == kup_core::strategy::STAGE_WORKERS)
        .map(|st| st.hosts.len())
        .collect();
    let audit = kup_driver::Driver::safety_audit(&sim).unwrap_or_default();
    Run {
        wall,
        violations: audit.pdb_violations,
        unplaced: audit.unplaced_pods,
        batches: workers.len(),
        widest: workers.iter().copied().max().unwrap_or(0),
        predicted: built.strategy.predicted_seconds,
        lower_bound: built.strategy.lower_bound_seconds,
    }
}

async fn run(scale: f64) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/standard-50-workers.yaml"
    );
    let mut inv =
        Inventory::parse(&std::fs::read_to_string(path).expect("the example")).expect("parses");
    // The nightly Job has ended: the run is about the upgrade, not about waiting for it.
    for w in &mut inv.workloads {
        if w.completes_after.is_some() {
            w.replicas = 0;
        }
    }
    println!(
        "machine: {} cores; examples/standard-50-workers.yaml (50 workers, 2 controllers, 2 storage), time scale {scale}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| schedule | worker batches (widest) | simulated makespan | plan's prediction | PDB violations | unplaced pods |"
    );
    println!("|---|---|---|---|---|---|");
    let mut lower = 0;
    let mut kup_makespan = 0.0;
    for (name, serial) in [
        ("kup upgrade online (batches of up to 10)", false),
        ("one worker at a time", true),
    ] {
        let overhead = upgrade(&inv, 0.0, serial).await.wall;
        let r = upgrade(&inv, scale, serial).await;
        let simulated = (r.wall.saturating_sub(overhead)).as_secs_f64() / scale;
        if !serial {
            lower = r.lower_bound;
            kup_makespan = simulated;
        }
        println!(
            "| {name} | {} ({}) | {} | {} | {} | {} |",
            r.batches,
            r.widest,
            kup_core::plan::human(simulated.round() as u64),
            kup_core::plan::human(r.predicted),
            r.violations,
            r.unplaced
        );
    }
    println!(
        "| lower bound of any safe schedule (plan) | ⌈50/10⌉ | {} | | | |",
        kup_core::plan::human(lower)
    );
    println!(
        "\nkup's makespan is {:.2}× the lower bound.",
        kup_makespan / lower.max(1) as f64
    );
}
