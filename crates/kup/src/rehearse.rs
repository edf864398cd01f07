//! `kup rehearse`: the whole automated upgrade run on a cluster's twin, in this process, on
//! the simulation's own clock, before anything real is touched: how long it takes, in which
//! batches, which hosts hold it back and why, and whether any budget or control plane was put
//! at risk. The same engine, strategy and checks as `upgrade online`; only the driver is the
//! simulator.

use std::sync::Arc;
use std::time::Duration;

use kup_core::plan::human;
use kup_core::safety::Verdict;
use kup_core::strategy::StrategyCommand;
use kup_driver::Driver;
use kup_engine::{Engine, EngineConfig};
use kup_sim::{Inventory, SimCluster};
use kup_store::SqliteStore;
use kup_types::{KubeVersion, StrategyCreate, StrategyState};

/// What to rehearse.
pub struct Rehearsal {
    pub to: Option<String>,
    pub max_parallel_worker_hosts: u32,
    /// How long kup must be quiet before the simulated clock moves (see
    /// `SimCluster::with_virtual_clock`): enough for its reaction to count as instant.
    pub settle: Duration,
}

/// What the rehearsal found: the report, and whether the upgrade went through safely.
pub struct Outcome {
    pub report: String,
    pub ok: bool,
}

pub async fn run(inv: &Inventory, r: &Rehearsal) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let sim = SimCluster::with_virtual_clock(inv, r.settle);
    let store = SqliteStore::open(&dir.path().join("kup.db"))
        .await
        .map_err(|e| e.to_string())?;
    let config = EngineConfig {
        catalog: sim.catalog(),
        policy: kup_core::Policy::default(),
        patch_repo: None,
    };
    let engine = Engine::open(Arc::new(store), Arc::new(sim.clone()), config)
        .await
        .map_err(|e| e.to_string())?;
    let plan = engine
        .plan(r.to.as_deref(), r.max_parallel_worker_hosts, 0)
        .await
        .map_err(|e| e.to_string())?;
    let (pods, budgets) = sim.inspect(|m| (m.pods().len(), m.pods().budgets().len()));
    let mut out = format!(
        "Rehearsal on a twin of {} hosts ({pods} pods, {budgets} PodDisruptionBudgets): {} -> {}\n",
        inv.hosts.len(),
        plan.from.map_or("?".into(), |v: KubeVersion| v.to_string()),
        plan.to
    );
    let holding: Vec<String> = plan
        .hosts
        .iter()
        .filter(|h| h.verdict == Verdict::Unsafe)
        .map(|h| {
            let why: Vec<&str> = h
                .findings
                .iter()
                .filter(|f| f.verdict == Verdict::Unsafe)
                .map(|f| f.reason.as_str())
                .collect();
            format!("  {}: {}\n", h.host, why.join("; "))
        })
        .collect();
    let req = StrategyCreate {
        to_version: plan.to.to_string(),
        max_parallel_worker_hosts: Some(r.max_parallel_worker_hosts),
        ..Default::default()
    };
    let built = engine
        .strategy_create(req)
        .await
        .map_err(|e| e.to_string())?;
    if built.strategy.state != StrategyState::ReadyToApply {
        out.push_str(&format!(
            "Result: refused before it began: {}\n",
            built.strategy.build_phase.reason
        ));
        push_holding(&mut out, &holding);
        return Ok(Outcome {
            report: out,
            ok: false,
        });
    }
    engine
        .strategy_action(StrategyCommand::Apply)
        .await
        .map_err(|e| e.to_string())?;
    engine.wait_strategy().await;
    let s = engine
        .strategy()
        .map_err(|e| e.to_string())?
        .ok_or("the strategy is gone")?
        .strategy;
    let took = sim.elapsed().unwrap_or_default().as_secs();
    let applied = s.state == StrategyState::Applied;
    out.push_str(&if applied {
        "Result: applied\n".to_string()
    } else {
        format!("Result: {}: {}\n", s.state, s.apply_phase.reason)
    });
    out.push_str(&format!(
        "Duration: {} rehearsed; {} predicted by the plan; no safe schedule is shorter than {}\n",
        human(took),
        human(s.predicted_seconds),
        human(s.lower_bound_seconds)
    ));
    out.push_str("Stages (at: when each began, on the rehearsal's clock; took: how long):\n");
    let timing = stage_times(&s.apply_phase.stages, sim.spans());
    let mut batch = 0;
    let batches = s
        .apply_phase
        .stages
        .iter()
        .filter(|st| st.name == kup_core::strategy::STAGE_WORKERS)
        .count();
    for (st, time) in s.apply_phase.stages.iter().zip(&timing) {
        let version = st.version.map(|v| format!(" {v}")).unwrap_or_default();
        let time = match time {
            Some((start, end)) => format!(
                " (at {}, took {})",
                human(start.as_secs()),
                human(end.saturating_sub(*start).as_secs())
            ),
            None => String::new(),
        };
        if st.name == kup_core::strategy::STAGE_WORKERS {
            batch += 1;
            out.push_str(&format!(
                "  {}{version} batch {batch} of {batches} ({} hosts){time}: {}: {}\n",
                st.name,
                st.hosts.len(),
                st.result,
                st.hosts.join(", ")
            ));
        } else if st.hosts.is_empty() {
            out.push_str(&format!("  {}{version}{time}: {}\n", st.name, st.result));
        } else {
            out.push_str(&format!(
                "  {}{version}{time}: {}: {}\n",
                st.name,
                st.result,
                st.hosts.join(", ")
            ));
        }
    }
    push_holding(&mut out, &holding);
    let audit = sim.safety_audit().unwrap_or_default();
    out.push_str(&format!(
        "Safety: {} PodDisruptionBudget violations, {} unplaced pods, {} control-plane violations, {} version skew violations, {} steps run twice\n",
        audit.pdb_violations,
        audit.unplaced_pods,
        audit.control_plane_violations,
        audit.skew_violations,
        audit.repeated_steps
    ));
    for e in &audit.examples {
        out.push_str(&format!("  {e}\n"));
    }
    let safe = audit.pdb_violations == 0
        && audit.unplaced_pods == 0
        && audit.control_plane_violations == 0
        && audit.skew_violations == 0
        && audit.repeated_steps == 0;
    Ok(Outcome {
        report: out,
        ok: applied && safe,
    })
}

fn push_holding(out: &mut String, holding: &[String]) {
    if holding.is_empty() {
        out.push_str("Hosts that hold the upgrade back: none\n");
    } else {
        out.push_str("Hosts that hold the upgrade back (each alone unsafe to take down):\n");
        for h in holding {
            out.push_str(h);
        }
    }
}

/// Whether an operation is one of `stage`'s steps.
fn belongs(stage: &kup_types::strategy::Stage, op: &kup_types::Operation) -> bool {
    use kup_core::strategy as st;
    use kup_types::StepKind as K;
    let on_host = || {
        op.host()
            .is_some_and(|h| stage.hosts.iter().any(|s| s == h))
    };
    match (stage.name.as_str(), op.kind()) {
        (st::STAGE_IMAGES, K::DownloadImages) | (st::STAGE_NETWORKING, K::Networking) => true,
        (st::STAGE_FIRST_CP | st::STAGE_SECOND_CP, K::ControlPlane) => on_host(),
        // The active controller hands over to the other before it is locked.
        (st::STAGE_CONTROLLER, K::Swact) => true,
        (st::STAGE_CONTROLLER | st::STAGE_WORKERS, K::Lock | K::Kubelet | K::Unlock) => on_host(),
        (st::STAGE_WORKERS, K::Cordon | K::Uncordon) => on_host(),
        _ => false,
    }
}

/// When each stage began and ended on the simulation's clock: the stages run one after the
/// other, so each operation, in the order they began, belongs to the first stage from the
/// current one on that has it as a step.
fn stage_times(
    stages: &[std::sync::Arc<kup_types::strategy::Stage>],
    mut spans: Vec<kup_sim::OpSpan>,
) -> Vec<Option<(Duration, Duration)>> {
    spans.sort_by_key(|s| s.start);
    let mut times = vec![None; stages.len()];
    let mut current = 0;
    for span in spans {
        let Some(k) = (current..stages.len()).find(|&k| belongs(&stages[k], &span.op)) else {
            continue;
        };
        current = k;
        let t: &mut Option<(Duration, Duration)> = &mut times[k];
        *t = Some(match *t {
            None => (span.start, span.end),
            Some((a, b)) => (a.min(span.start), b.max(span.end)),
        });
    }
    // A stage with no step of its own (the start, waiting until the cluster is healthy; the
    // end) lasts from the one before it to the one after it.
    for k in 0..times.len() {
        if times[k].is_none() {
            let from = times[..k].iter().rev().flatten().map(|t| t.1).next();
            let to = times[k + 1..].iter().flatten().map(|t| t.0).next();
            times[k] = match (from, to) {
                (None, Some(to)) => Some((Duration::ZERO, to)),
                (Some(from), Some(to)) => Some((from, to.max(from))),
                (Some(from), None) => Some((from, from)),
                (None, None) => None,
            };
        }
    }
    times
}
