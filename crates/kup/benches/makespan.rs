//! The makespan of an upgrade, side by side: kup's automated upgrade (`upgrade online`: a
//! strategy with worker batches of up to 10, each chosen and judged on the live cluster, its
//! drains in waves the budgets allow) next to the plan's lower bound of any safe schedule and
//! to the schedules other tools follow, on
//! generated clusters of 6, 52 and 502 hosts (standard) and of 1,003 hosts (kubeadm, three
//! control planes), with the PodDisruptionBudget violations and unplaced pods of each.
//!
//! Every operation takes its realistic duration (the cluster file's, ±10% seeded jitter) on the
//! simulation's own clock, which moves once the orchestrator has been quiet for `--settle-ms`
//! of wall time (`kup_sim::SimCluster::with_virtual_clock`): the makespans are simulated time,
//! the same on every run of a seed, whatever the machine's load.
//!
//! kup runs in-process with the durable SQLite store. The other schedules differ from kup's
//! only in the workers: they run on a copy of the cluster whose control planes, networking
//! and controller and storage kubelets are already at the target, and their makespan is that
//! worker part plus the time kup's run took outside its workers (the same steps, in the same
//! order, in any tool).
//!
//! `cargo bench -p kup --bench makespan [-- --settle-ms 20 --only 52]`; without `--bench` (as
//! `cargo test --benches` runs it) a smoke run on the 6-host cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kup_core::plan::human;
use kup_core::strategy::StrategyCommand;
use kup_driver::Driver;
use kup_engine::{Engine, EngineConfig};
use kup_sim::generate::{GenSpec, generate};
use kup_sim::{Inventory, SimCluster};
use kup_store::SqliteStore;
use kup_types::{
    ApplyType, KubeVersion, OpStatus, Operation, Personality, SafetyAudit, StepKind,
    StrategyCreate, StrategyState,
};
use tokio::task::JoinSet;

/// The worker batch cap of every batched schedule (kup's `--max-parallel-worker-hosts`,
/// StarlingX VIM's default maximum of parallel worker hosts).
const CAP: usize = 10;

struct Case {
    name: &'static str,
    workers: u32,
    control_planes: Option<u32>,
}

const CASES: [Case; 4] = [
    Case {
        name: "standard, 6 hosts",
        workers: 2,
        control_planes: None,
    },
    Case {
        name: "standard, 52 hosts",
        workers: 48,
        control_planes: None,
    },
    Case {
        name: "standard, 502 hosts",
        workers: 498,
        control_planes: None,
    },
    Case {
        name: "kubeadm, 3 control planes, 1,003 hosts",
        workers: 1000,
        control_planes: Some(3),
    },
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let settle = Duration::from_millis(
        value("--settle-ms")
            .and_then(|s| s.parse().ok())
            .unwrap_or(if full { 20 } else { 5 }),
    );
    let only: Option<u32> = value("--only").and_then(|s| s.parse().ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "machine: {} cores; settle {} ms; worker batches of up to {CAP}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        settle.as_millis()
    );
    for case in &CASES {
        let hosts = case.workers + case.control_planes.unwrap_or(4);
        if only.is_some_and(|n| n != hosts) || (!full && only.is_none() && hosts > 6) {
            continue;
        }
        rt.block_on(compare(case, settle));
    }
}

fn inventory(case: &Case) -> Inventory {
    let yaml = generate(&GenSpec {
        workers: case.workers,
        control_planes: case.control_planes,
        ..GenSpec::default()
    })
    .expect("a generated cluster");
    Inventory::parse(&yaml).expect("the generated cluster parses")
}

/// What a schedule did.
struct Outcome {
    makespan: Duration,
    batches: usize,
    widest: usize,
    audit: SafetyAudit,
    /// Drains that could not start for their budgets even with nothing else draining.
    stuck: usize,
}

async fn compare(case: &Case, settle: Duration) {
    let inv = inventory(case);
    let to = inv
        .catalog()
        .iter()
        .map(|m| m.version)
        .max()
        .expect("a catalog");
    let wall = Instant::now();
    let (kup, plan) = kup_run(&inv, to, settle).await;
    let kup_wall = wall.elapsed();
    let outside_workers = kup.makespan - worker_span(&kup.spans, &plan.workers);
    let lower = Duration::from_secs(plan.lower_bound);
    let mut rows: Vec<(String, Outcome)> = vec![(
        format!("kup upgrade online (safe batches of up to {CAP})"),
        kup.outcome,
    )];
    for (name, cap, respect) in [
        ("one worker at a time (Kismatic)", 1, Respect::Budgets),
        (
            "fixed batches of 10, drained at once (StarlingX VIM)",
            CAP,
            Respect::Nothing,
        ),
        (
            "batches of 10, kubectl drain: evictions wait on budgets",
            CAP,
            Respect::Budgets,
        ),
    ] {
        let mut o = baseline(&inv, to, &plan.workers, cap, respect, settle).await;
        o.makespan += outside_workers;
        rows.push((name.to_string(), o));
    }

    println!(
        "### {} ({} workers, {} pods, {} PDBs; {} -> {to})\n",
        case.name,
        plan.workers.len(),
        plan.pods,
        plan.budgets,
        plan.from,
    );
    println!(
        "| schedule | worker batches (widest) | makespan | vs lower bound | PDB violations | unplaced pods |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, o) in &rows {
        let stuck = if o.stuck > 0 {
            format!(" ({} drains blocked even alone, forced)", o.stuck)
        } else {
            String::new()
        };
        println!(
            "| {name} | {} ({}) | {} | {:.2}× | {}{stuck} | {} |",
            o.batches,
            o.widest,
            human(o.makespan.as_secs()),
            o.makespan.as_secs_f64() / lower.as_secs_f64().max(1.0),
            o.audit.pdb_violations,
            o.audit.unplaced_pods,
        );
    }
    println!(
        "| lower bound of any safe schedule (the plan's: batches of up to {CAP} that leave an ingress host up, the drain waves the budgets need) | | {} | 1.00× | | |",
        human(plan.lower_bound),
    );
    println!(
        "\nThe plan predicted {} for kup. Outside the workers (images, control planes, \
         networking, controller kubelets) every schedule takes kup's {}. kup's run: {} of \
         wall time; its audit: {} control-plane, {} skew violations, {} steps run twice.\n",
        human(plan.predicted),
        human(outside_workers.as_secs()),
        format_wall(kup_wall),
        rows[0].1.audit.control_plane_violations,
        rows[0].1.audit.skew_violations,
        rows[0].1.audit.repeated_steps,
    );
}

fn format_wall(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

struct KupRun {
    makespan: Duration,
    spans: Vec<kup_sim::OpSpan>,
    outcome: Outcome,
}

struct PlanFacts {
    from: KubeVersion,
    pods: usize,
    budgets: usize,
    workers: Vec<String>,
    predicted: u64,
    lower_bound: u64,
}

async fn kup_run(inv: &Inventory, to: KubeVersion, settle: Duration) -> (KupRun, PlanFacts) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sim = SimCluster::with_virtual_clock(inv, settle);
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
        to_version: to.to_string(),
        worker_apply_type: Some(ApplyType::Parallel),
        max_parallel_worker_hosts: Some(CAP as u32),
        ..Default::default()
    };
    let built = engine.strategy_create(req).await.expect("a strategy");
    assert_eq!(
        built.strategy.state,
        StrategyState::ReadyToApply,
        "{}",
        built.strategy.build_phase.reason
    );
    engine
        .strategy_action(StrategyCommand::Apply)
        .await
        .expect("applied");
    engine.wait_strategy().await;
    let s = engine
        .strategy()
        .expect("read")
        .expect("a strategy")
        .strategy;
    assert_eq!(s.state, StrategyState::Applied, "{}", s.apply_phase.reason);
    let batches: Vec<usize> = s
        .apply_phase
        .stages
        .iter()
        .filter(|st| st.name == kup_core::strategy::STAGE_WORKERS)
        .map(|st| st.hosts.len())
        .collect();
    let workers = sim.inspect(|m| {
        m.hosts
            .iter()
            .filter(|h| h.personality == Personality::Worker)
            .map(|h| h.name.clone())
            .collect()
    });
    let from = inv.kubernetes_version;
    let run = KupRun {
        makespan: sim.elapsed().expect("a simulated clock"),
        spans: sim.spans(),
        outcome: Outcome {
            makespan: sim.elapsed().expect("a simulated clock"),
            batches: batches.len(),
            widest: batches.iter().copied().max().unwrap_or(0),
            audit: sim.safety_audit().unwrap_or_default(),
            stuck: 0,
        },
    };
    let (pods, budgets) = sim.inspect(|m| (m.pods().len(), m.pods().budgets().len()));
    let facts = PlanFacts {
        from,
        pods,
        budgets,
        workers,
        predicted: built.strategy.predicted_seconds,
        lower_bound: built.strategy.lower_bound_seconds,
    };
    (run, facts)
}

/// From the first worker step's start to the last one's end.
fn worker_span(spans: &[kup_sim::OpSpan], workers: &[String]) -> Duration {
    let of_worker =
        |s: &&kup_sim::OpSpan| s.op.host().is_some_and(|h| workers.iter().any(|w| w == h));
    let start = spans.iter().filter(of_worker).map(|s| s.start).min();
    let end = spans.iter().filter(of_worker).map(|s| s.end).max();
    match (start, end) {
        (Some(a), Some(b)) => b - a,
        _ => Duration::ZERO,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Respect {
    /// Every host of a batch drained at once (violations counted by the simulation).
    Nothing,
    /// A drain whose evictions a budget refuses waits until a drain in progress ends
    /// (`kubectl drain` retrying 429s); a drain refused even alone is forced and counted.
    Budgets,
}

/// Another tool's worker schedule: the workers in name order, in batches of `cap`; each batch
/// locked (drained), its kubelets upgraded, then unlocked, all hosts of a batch in parallel.
async fn baseline(
    inv: &Inventory,
    to: KubeVersion,
    workers: &[String],
    cap: usize,
    respect: Respect,
    settle: Duration,
) -> Outcome {
    let sim = SimCluster::with_virtual_clock(inv, settle);
    // As after the steps every schedule shares: control planes, networking and the other
    // kubelets at the target.
    sim.mutate(|m| {
        m.networking_version = Some(to);
        for h in &mut m.hosts {
            if h.control_plane_version.is_some() {
                h.control_plane_version = Some(to);
            }
            if h.personality != Personality::Worker && h.kubelet_version.is_some() {
                h.kubelet_version = Some(to);
            }
        }
    });
    let start = sim.elapsed().expect("a simulated clock");
    let mut ids = 0u64;
    let mut next_id = || {
        ids += 1;
        format!("op-{ids}")
    };
    let mut stuck = 0;
    let mut batches = 0;
    for batch in workers.chunks(cap) {
        batches += 1;
        let mut pending: Vec<&String> = batch.iter().collect();
        let mut draining: JoinSet<OpStatus> = JoinSet::new();
        while !pending.is_empty() || !draining.is_empty() {
            let mut i = 0;
            while i < pending.len() {
                let host = pending[i];
                let refused = respect == Respect::Budgets && sim.inspect(|m| m.drain_blocked(host));
                let alone = draining.is_empty();
                if refused && !alone {
                    i += 1;
                    continue;
                }
                if refused {
                    stuck += 1;
                }
                let op = Operation::Lock {
                    host: host.clone(),
                    force: refused,
                };
                // Started here, so the next host's check sees this drain under way.
                draining.spawn(wait_op(sim.clone(), start_op(&sim, next_id(), op).await));
                pending.remove(i);
                if respect == Respect::Budgets && refused {
                    break; // Forced alone: nothing else drains with it.
                }
            }
            if let Some(done) = draining.join_next().await {
                assert_eq!(done.expect("a lock"), OpStatus::Succeeded);
            }
        }
        for step in [StepKind::Kubelet, StepKind::Unlock] {
            let mut set = JoinSet::new();
            for host in batch {
                let op = match step {
                    StepKind::Kubelet => Operation::UpgradeKubelet {
                        host: host.clone(),
                        version: to,
                        payloads: vec![],
                    },
                    _ => Operation::Unlock { host: host.clone() },
                };
                set.spawn(wait_op(sim.clone(), start_op(&sim, next_id(), op).await));
            }
            for status in set.join_all().await {
                assert_eq!(status, OpStatus::Succeeded);
            }
        }
    }
    Outcome {
        makespan: sim.elapsed().expect("a simulated clock") - start,
        batches,
        widest: workers.len().min(cap),
        audit: sim.safety_audit().unwrap_or_default(),
        stuck,
    }
}

async fn start_op(sim: &SimCluster, id: String, op: Operation) -> String {
    sim.start(&id, &op).await.expect("the step starts");
    id
}

async fn wait_op(sim: SimCluster, id: String) -> OpStatus {
    sim.wait(&id, Duration::from_secs(24 * 3600))
        .await
        .expect("the step ends")
}
