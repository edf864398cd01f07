//! The upgrade strategy: kup's runner, as pure decisions.
//!
//! A strategy (StarlingX VIM's `kube-upgrade-strategy`, Kismatic's `upgrade online|offline`)
//! is built once ([`build`]: the checks of VIM's build phase, the stages the plan predicts)
//! and then applied by a runner in the engine that asks [`next`] what to do, again and again:
//! a command to run (the same commands a user would send, through the same engine path), a
//! wait, a worker batch to choose, the end. [`next`] reads only the store's snapshot and the
//! cluster's observation — the upgrade row, the host rows, the operations in flight, what
//! runs — so it resumes from wherever anything (a crash, an operator by hand, an earlier
//! strategy) left the upgrade. The strategy record holds only what the world cannot say: the
//! settings, the worker batch in progress, the hosts left out, and the stages as shown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use kup_types::{
    AdminState, AlarmRestrictions, ApplyType, EventKind, HostInfo, HostUpgradeStatus,
    KubeUpgradeState, KubeVersion, Observation, PatchKind, PatchState, Personality, SkippedHost,
    StepKind, StepResult, StrategyCreate, StrategyRecord, StrategyState, StrategyWrite, SystemType,
    UpgradeMode, VersionState,
    strategy::{DEFAULT_MAX_PARALLEL_WORKER_HOSTS, MAX_PARALLEL_WORKER_HOSTS, Phase, Stage, Step},
};

use crate::machine::{Command, Ctx, control_plane_in_flight, kubelet_target};
use crate::plan::{self, PlanInput};
use crate::safety::{Analyzer, BatchEval, Verdict};
use crate::{DEFAULT_ALARM_IGNORE, Refusal};

use HostUpgradeStatus as HS;
use KubeUpgradeState as S;

/// Stage names, as `kube-upgrade-strategy show` lists them.
pub const STAGE_START: &str = "kube-upgrade-start";
pub const STAGE_IMAGES: &str = "kube-upgrade-download-images";
pub const STAGE_FIRST_CP: &str = "kube-upgrade-first-control-plane";
pub const STAGE_NETWORKING: &str = "kube-upgrade-networking";
pub const STAGE_SECOND_CP: &str = "kube-upgrade-second-control-plane";
pub const STAGE_CONTROLLER: &str = "kube-upgrade-kubelets-controller";
pub const STAGE_WORKERS: &str = "kube-upgrade-kubelets-workers";
pub const STAGE_COMPLETE: &str = "kube-upgrade-complete";

/// Step names.
pub const STEP_START: &str = "kube-upgrade-start";
pub const STEP_IMAGES: &str = "kube-upgrade-download-images";
pub const STEP_CP: &str = "kube-host-upgrade-control-plane";
pub const STEP_NETWORKING: &str = "kube-upgrade-networking";
pub const STEP_SWACT: &str = "swact-hosts";
pub const STEP_LOCK: &str = "lock-hosts";
pub const STEP_KUBELET: &str = "kube-host-upgrade-kubelet";
pub const STEP_UNLOCK: &str = "unlock-hosts";
pub const STEP_COMPLETE: &str = "kube-upgrade-complete";

/// The strategy's commands, decided like every other command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrategyCommand {
    /// With the seconds each kind of step takes, for the prediction.
    Create {
        req: StrategyCreate,
        durations: BTreeMap<StepKind, u64>,
    },
    Apply,
    /// With `rollback`, the upgrade is aborted (taken back) once the steps in flight end.
    Abort {
        rollback: bool,
    },
    Delete,
    /// The runner's record of where it is.
    Progress(Progress),
}

/// What the runner records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The strategy is at this step: everything before it is done.
    At(StepAt),
    /// The next worker batch (judged just now), and the hosts left out while choosing it; of
    /// the kubelet round to `version` (when the upgrade crosses several minors).
    Batch {
        hosts: Vec<String>,
        skipped: Vec<SkippedHost>,
        version: Option<KubeVersion>,
    },
    /// A host left out after the engine refused its step (`--partial-ok`).
    Skip(SkippedHost),
    /// Every stage is done.
    Done,
    /// The strategy cannot go on.
    Failed {
        at: Option<StepAt>,
        reason: String,
        timed_out: bool,
    },
    /// An abort has let the steps in flight end.
    Aborted,
}

/// A step of the apply phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepAt {
    pub stage: StageKey,
    pub step: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StageKey {
    Start,
    Images,
    /// Each stage that moves to a version is keyed by it when the upgrade crosses several
    /// minors (`None` otherwise).
    FirstControlPlane(Option<KubeVersion>),
    Networking,
    /// A control plane after the first (`kubeadm upgrade node`), one stage per host.
    SecondControlPlane(String, Option<KubeVersion>),
    /// A controller's kubelet.
    Controller(String, Option<KubeVersion>),
    /// The worker batch in progress.
    Workers(Option<KubeVersion>),
    Complete,
}

impl StepAt {
    fn new(stage: StageKey, step: &'static str) -> Self {
        StepAt { stage, step }
    }
}

/// What the runner does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run this command. `key`: the operation it starts ([`kup_types::Operation::key`]), whose
    /// earlier failures count against the strategy's retries.
    Run {
        cmd: Command,
        at: StepAt,
        key: Option<String>,
    },
    /// Something runs; wait for it to end.
    Wait { at: StepAt, why: String },
    /// Choose this worker batch (record it before its first step).
    Batch {
        hosts: Vec<String>,
        skipped: Vec<SkippedHost>,
        version: Option<KubeVersion>,
    },
    /// Nothing left to do.
    Done,
    /// Stop: the reason says why.
    Fail { at: StepAt, reason: String },
}

/// The alarms a strategy ignores (VIM's list); the request's restrictions widen it.
pub const STRATEGY_ALARM_IGNORE: &[&str] = DEFAULT_ALARM_IGNORE;

/// Checks the settings of a create request: the only refusals of a create, apart from a
/// strategy that exists. Everything about the cluster is the build's to find.
pub fn validate(req: &StrategyCreate) -> Result<KubeVersion, Refusal> {
    let to = KubeVersion::parse(&req.to_version)?;
    if req
        .controller_apply_type
        .is_some_and(|t| t != ApplyType::Serial)
    {
        return Err(Refusal::InvalidStrategy(
            "controller-apply-type must be 'serial' for kube-upgrade".into(),
        ));
    }
    if let Some(a) = req
        .default_instance_action
        .as_deref()
        .filter(|a| !matches!(*a, "stop-start" | "migrate"))
    {
        return Err(Refusal::InvalidStrategy(format!(
            "default-instance-action must be 'stop-start' or 'migrate', got {a:?}"
        )));
    }
    let cap = req
        .max_parallel_worker_hosts
        .unwrap_or(DEFAULT_MAX_PARALLEL_WORKER_HOSTS);
    if !(1..=MAX_PARALLEL_WORKER_HOSTS).contains(&cap) {
        return Err(Refusal::InvalidStrategy(format!(
            "max-parallel-worker-hosts must be from 1 to {MAX_PARALLEL_WORKER_HOSTS}, got {cap}"
        )));
    }
    Ok(to)
}

/// The build phase: the strategy's stages, predicted by the plan, and every reason it cannot
/// be applied (the strategy is then `build-failed`, with those reasons).
pub fn build(
    ctx: &Ctx<'_>,
    req: &StrategyCreate,
    durations: &BTreeMap<StepKind, u64>,
    uuid: &str,
) -> Result<StrategyRecord, Refusal> {
    let to = validate(req)?;
    let worker_apply_type = req.worker_apply_type.unwrap_or(ApplyType::Parallel);
    let cap = match worker_apply_type {
        ApplyType::Serial => 1,
        _ => req
            .max_parallel_worker_hosts
            .unwrap_or(DEFAULT_MAX_PARALLEL_WORKER_HOSTS),
    };
    let mode = req.mode.unwrap_or(UpgradeMode::Online);
    let mut record = StrategyRecord {
        uuid: uuid.to_string(),
        to_version: to,
        controller_apply_type: ApplyType::Serial,
        storage_apply_type: ApplyType::Ignore,
        worker_apply_type,
        max_parallel_worker_hosts: cap,
        alarm_restrictions: req.alarm_restrictions.unwrap_or(AlarmRestrictions::Strict),
        mode,
        partial_ok: req.partial_ok,
        rollback_on_abort: false,
        state: StrategyState::Building,
        build_phase: Phase::new("build"),
        apply_phase: Phase::new("apply"),
        abort_phase: Phase::new("abort"),
        batch: None,
        skipped: Vec::new(),
        predicted_seconds: 0,
        lower_bound_seconds: 0,
        created_at: ctx.now,
        updated_at: None,
    };
    let mut failures = build_checks(ctx, &record);
    let workloads = ctx.workloads.ok_or(Refusal::Internal(
        "a strategy is built from the pods, which were not read",
    ))?;
    let plan = plan::plan(&PlanInput {
        obs: ctx.obs,
        workloads,
        snap: ctx.snap,
        catalog: ctx.catalog,
        to,
        max_parallel_worker_hosts: cap,
        durations,
        min_free_disk_gib: crate::safety::DEFAULT_MIN_FREE_DISK_GIB,
    });
    let already = ctx
        .snap
        .upgrade
        .as_ref()
        .is_some_and(|u| u.to_version == to);
    if failures.is_empty() && !already {
        failures.extend(plan.blocked.iter().cloned());
    }
    // The start's own health checks, as the start will run them: a host out of service now
    // cannot be left out (the start needs every host in service).
    if failures.is_empty()
        && ctx.snap.upgrade.is_none()
        && let Command::Start {
            force,
            alarm_ignore,
            ..
        } = start_command(ctx, &record)
    {
        failures.extend(
            crate::machine::start_health(ctx, workloads, force, &alarm_ignore, to)
                .failures()
                .into_iter()
                .map(|f| format!("the start's health check: {f}")),
        );
    }
    if failures.is_empty() {
        failures.extend(host_checks(ctx, &record, &plan));
    }
    record.predicted_seconds = plan.total_seconds;
    record.lower_bound_seconds = plan.lower_bound_seconds;
    record.apply_phase.stages = stages(ctx, &record, &plan)
        .into_iter()
        .map(Arc::new)
        .collect();
    let mut build = Stage::new(
        "kube-upgrade-query".into(),
        Vec::new(),
        [
            "query-alarms",
            "query-kube-versions",
            "query-kube-upgrade",
            "query-kube-host-upgrade",
        ]
        .into_iter()
        .map(|s| Step::new(s, Vec::new(), 60))
        .collect(),
    );
    let result = if failures.is_empty() {
        StepResult::Success
    } else {
        StepResult::Failed
    };
    for s in &mut build.steps {
        end(&mut s.result, &mut s.start, &mut s.end, result, ctx.now);
    }
    end(
        &mut build.result,
        &mut build.start,
        &mut build.end,
        result,
        ctx.now,
    );
    // One reason a line: a host's findings are themselves joined with "; ".
    build.reason = failures.join("\n");
    record.build_phase.stages = vec![Arc::new(build)];
    record.build_phase.reason = failures.join("\n");
    let phase = &mut record.build_phase;
    end(
        &mut phase.result,
        &mut phase.start,
        &mut phase.end,
        result,
        ctx.now,
    );
    record.state = if failures.is_empty() {
        StrategyState::ReadyToApply
    } else {
        StrategyState::BuildFailed
    };
    Ok(record)
}

/// VIM's build checks: the version, the upgrade in progress, the alarms.
fn build_checks(ctx: &Ctx<'_>, s: &StrategyRecord) -> Vec<String> {
    let to = s.to_version;
    let mut failures = Vec::new();
    if ctx.catalog.get(to).is_none() {
        failures.push(format!("Invalid to_version value: '{to}'"));
        return failures;
    }
    match &ctx.snap.upgrade {
        Some(u)
            if matches!(
                u.state,
                S::UpgradeAborting | S::UpgradeAbortingFailed | S::UpgradeAborted
            ) =>
        {
            failures.push(format!(
                "the upgrade from {} to {} is aborted ({}): once aborted delete it \
                 (kube-upgrade-delete) before a new strategy",
                u.from_version, u.to_version, u.state
            ))
        }
        Some(u) if u.to_version != to => failures.push(format!(
            "an upgrade from {} to {} is in progress ({}): finish it, or once complete delete \
             it (kube-upgrade-delete), before a strategy to {to}",
            u.from_version, u.to_version, u.state
        )),
        Some(_) => {}
        None => {
            let states = ctx.catalog.states(ctx.obs);
            if states.get(&to) == Some(&VersionState::Active) {
                failures.push(format!("Kubernetes is already upgraded to: {to}"));
            }
        }
    }
    let blocking: Vec<&str> = ctx
        .obs
        .alarms
        .iter()
        .filter(|a| !STRATEGY_ALARM_IGNORE.contains(&a.alarm_id.as_str()))
        .filter(|a| match s.alarm_restrictions {
            AlarmRestrictions::Strict => true,
            AlarmRestrictions::Relaxed => a.management_affecting,
            AlarmRestrictions::Permissive => false,
        })
        .map(|a| a.alarm_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !blocking.is_empty() {
        failures.push(format!("active alarms present [ {} ]", blocking.join(", ")));
    }
    failures
}

/// Kismatic's gate: online, every host still to upgrade must be safe to take down alone and
/// ready; with `--partial-ok` those that are not are left out, but never a controller (the
/// upgrade cannot complete without it). Offline skips the workload analysis, not readiness.
fn host_checks(ctx: &Ctx<'_>, s: &StrategyRecord, plan: &plan::Plan) -> Vec<String> {
    let mut failures = Vec::new();
    // Hosts the upgrade already took down (by hand, or a strategy before this one) come back
    // first; judged alone now, the others would look unsafe for their absence. The runner
    // judges every batch, and the engine every lock, on the cluster as it is then.
    // The kubelet round under way: at the control planes' version (a minor on the way, in an
    // upgrade across several).
    let round = kubelet_target(ctx.obs)
        .filter(|_| {
            ctx.snap
                .upgrade
                .as_ref()
                .is_some_and(|u| crate::machine::kubelets_open(ctx.obs, u))
        })
        .unwrap_or(s.to_version);
    let resuming = ctx.obs.hosts.iter().any(|h| taken_down(ctx, h, round));
    for h in pending_hosts(ctx.obs, s.to_version) {
        if s.worker_apply_type == ApplyType::Ignore && h.personality == Personality::Worker {
            continue;
        }
        // Locked for its kubelet already: the runner finishes it first, as it stands.
        if taken_down(ctx, h, round) {
            continue;
        }
        let mut problems = ready_problems(ctx, h, s.to_version);
        // A kubelet upgraded in place (aio-simplex, a sole controller): nothing is drained.
        if s.mode == UpgradeMode::Online
            && !crate::machine::kubelet_in_place(ctx.obs, h)
            && !resuming
        {
            let unsafe_ = plan
                .hosts
                .iter()
                .find(|x| x.host == h.hostname)
                .filter(|x| x.verdict == Verdict::Unsafe);
            if let Some(x) = unsafe_ {
                problems.extend(
                    x.findings
                        .iter()
                        .filter(|f| f.verdict == Verdict::Unsafe)
                        .map(|f| format!("unsafe: {f}")),
                );
            }
        }
        if problems.is_empty() || (s.partial_ok && skippable(ctx.obs, h)) {
            continue;
        }
        let why = problems.join("; ");
        failures.push(format!("{}: {why}", h.hostname));
    }
    failures
}

/// Only workers can be left out: the kubelet of every controller must reach the target.
fn skippable(obs: &Observation, h: &HostInfo) -> bool {
    h.personality == Personality::Worker && obs.system_type != SystemType::AioSimplex
}

/// Why a host cannot take its upgrade now (readiness): not in service, too little disk, a
/// patch its version needs not uploaded. The binaries kup can install itself do not count.
fn ready_problems(ctx: &Ctx<'_>, h: &HostInfo, to: KubeVersion) -> Vec<String> {
    let missing = crate::patches::not_uploaded_for(ctx.snap, h, ctx.catalog.get(to));
    crate::safety::readiness(
        ctx.obs,
        &h.hostname,
        crate::safety::DEFAULT_MIN_FREE_DISK_GIB,
        &missing,
    )
    .problems
}

/// Hosts whose kubelet is not at the target, in id order.
fn pending_hosts(obs: &Observation, to: KubeVersion) -> Vec<&HostInfo> {
    let mut hosts: Vec<&HostInfo> = obs
        .hosts
        .iter()
        .filter(|h| h.personality.has_kubelet() && obs.kubelet_version(&h.hostname) != Some(to))
        .collect();
    hosts.sort_by_key(|h| (h.id, &h.hostname));
    hosts
}

/// The apply phase's stages as the plan predicts them, one for each of the plan's stages (one
/// per host or batch where the plan has several); those already done are marked so.
fn stages(ctx: &Ctx<'_>, s: &StrategyRecord, plan: &plan::Plan) -> Vec<Stage> {
    let secs = |k: StepKind| ctx.policy.deadline(k).as_secs().max(0) as u64;
    let one = |stage: &str, step: &str, hosts: Vec<String>, kind: StepKind| {
        Stage::new(
            stage.into(),
            hosts.clone(),
            vec![Step::new(step, hosts, secs(kind))],
        )
    };
    let mut out = vec![Stage::new(
        STAGE_START.into(),
        Vec::new(),
        vec![Step::new(STEP_START, Vec::new(), 60)],
    )];
    if ctx.snap.upgrade.is_some() {
        mark_all(&mut out[0], StepResult::Success, ctx.now);
    }
    for p in &plan.stages {
        let mut made: Vec<Stage> = match p.name.as_str() {
            plan::DOWNLOAD_IMAGES => vec![one(
                STAGE_IMAGES,
                STEP_IMAGES,
                Vec::new(),
                StepKind::DownloadImages,
            )],
            plan::NETWORKING => vec![one(
                STAGE_NETWORKING,
                STEP_NETWORKING,
                Vec::new(),
                StepKind::Networking,
            )],
            plan::FIRST_CONTROL_PLANE => vec![one(
                STAGE_FIRST_CP,
                STEP_CP,
                p.batches.iter().flat_map(|b| b.hosts.clone()).collect(),
                StepKind::ControlPlane,
            )],
            plan::SECOND_CONTROL_PLANE => p
                .batches
                .iter()
                .map(|b| {
                    let mut st = one(
                        STAGE_SECOND_CP,
                        STEP_CP,
                        b.hosts.clone(),
                        StepKind::ControlPlane,
                    );
                    st.predicted_seconds = b.seconds;
                    st
                })
                .collect(),
            plan::CONTROLLER_KUBELETS => p
                .batches
                .iter()
                .map(|b| {
                    let in_place = b
                        .hosts
                        .first()
                        .and_then(|h| ctx.obs.host(h))
                        .is_some_and(|h| crate::machine::kubelet_in_place(ctx.obs, h));
                    let mut st = controller_stage(ctx, b.hosts.clone(), in_place);
                    st.predicted_seconds = b.seconds;
                    st
                })
                .collect(),
            plan::WORKER_KUBELETS if s.worker_apply_type != ApplyType::Ignore => p
                .batches
                .iter()
                .map(|b| {
                    let mut st = worker_stage(ctx, b.hosts.clone());
                    st.predicted_seconds = b.seconds;
                    st
                })
                .collect(),
            plan::COMPLETE if s.worker_apply_type != ApplyType::Ignore => {
                let mut st = one(
                    STAGE_COMPLETE,
                    STEP_COMPLETE,
                    Vec::new(),
                    StepKind::Networking,
                );
                st.timeout = 60;
                st.steps[0].timeout = 60;
                vec![st]
            }
            _ => Vec::new(),
        };
        if let [st] = made.as_mut_slice()
            && st.predicted_seconds == 0
        {
            st.predicted_seconds = p.seconds;
        }
        for mut st in made {
            st.version = p.version;
            if p.done {
                mark_all(&mut st, StepResult::Success, ctx.now);
            }
            out.push(st);
        }
    }
    out
}

/// A controller's kubelet stage: (swact,) lock, kubelet, unlock; on aio-simplex the kubelet
/// alone, in place.
fn controller_stage(ctx: &Ctx<'_>, hosts: Vec<String>, in_place: bool) -> Stage {
    let secs = |k: StepKind| ctx.policy.deadline(k).as_secs().max(0) as u64;
    let active = hosts
        .first()
        .and_then(|h| ctx.obs.host(h))
        .is_some_and(|h| h.active_controller);
    let mut steps = Vec::new();
    if in_place {
        steps.push(Step::new(
            STEP_KUBELET,
            hosts.clone(),
            secs(StepKind::Kubelet),
        ));
    } else {
        if active {
            steps.push(Step::new(STEP_SWACT, hosts.clone(), secs(StepKind::Swact)));
        }
        steps.push(Step::new(STEP_LOCK, hosts.clone(), secs(StepKind::Lock)));
        steps.push(Step::new(
            STEP_KUBELET,
            hosts.clone(),
            secs(StepKind::Kubelet),
        ));
        steps.push(Step::new(
            STEP_UNLOCK,
            hosts.clone(),
            secs(StepKind::Unlock),
        ));
    }
    Stage::new(STAGE_CONTROLLER.into(), hosts, steps)
}

fn worker_stage(ctx: &Ctx<'_>, hosts: Vec<String>) -> Stage {
    let secs = |k: StepKind| ctx.policy.deadline(k).as_secs().max(0) as u64;
    Stage::new(
        STAGE_WORKERS.into(),
        hosts.clone(),
        vec![
            Step::new(STEP_LOCK, hosts.clone(), secs(StepKind::Lock)),
            Step::new(STEP_KUBELET, hosts.clone(), secs(StepKind::Kubelet)),
            Step::new(STEP_UNLOCK, hosts, secs(StepKind::Unlock)),
        ],
    )
}

fn mark_all(stage: &mut Stage, result: StepResult, now: Timestamp) {
    for s in &mut stage.steps {
        end(&mut s.result, &mut s.start, &mut s.end, result, now);
    }
    end(
        &mut stage.result,
        &mut stage.start,
        &mut stage.end,
        result,
        now,
    );
}

/// Ends a phase, stage or step with `result` (starting it too if it never started).
fn end(
    r: &mut StepResult,
    start: &mut Option<Timestamp>,
    stop: &mut Option<Timestamp>,
    result: StepResult,
    now: Timestamp,
) {
    *r = result;
    start.get_or_insert(now);
    *stop = Some(now);
}

fn begin(r: &mut StepResult, start: &mut Option<Timestamp>, now: Timestamp) -> bool {
    if *r == StepResult::Wait {
        return false;
    }
    *r = StepResult::Wait;
    start.get_or_insert(now);
    true
}

/// The next thing the runner does. Reads only the snapshot and the observation (and the pods,
/// when a worker batch is to be chosen online).
pub fn next(ctx: &Ctx<'_>, s: &StrategyRecord) -> Next {
    let to = s.to_version;
    let Some(u) = &ctx.snap.upgrade else {
        if ctx.catalog.states(ctx.obs).get(&to) == Some(&VersionState::Active) {
            return Next::Done; // Completed (and deleted) meanwhile.
        }
        return start_step(ctx, s);
    };
    if u.to_version != to {
        return Next::Fail {
            at: StepAt::new(StageKey::Start, STEP_START),
            reason: format!(
                "an upgrade from {} to {} is in progress: this strategy is for {to}",
                u.from_version, u.to_version
            ),
        };
    }
    let wait = |stage: StageKey, step: &'static str, why: &str| Next::Wait {
        at: StepAt::new(stage, step),
        why: why.to_string(),
    };
    let networking_done = ctx.obs.networking_version == Some(to);
    match u.state {
        S::UpgradeStarted | S::DownloadingImagesFailed => run(
            Command::DownloadImages,
            StepAt::new(StageKey::Images, STEP_IMAGES),
            Some(format!("{}/{to}", StepKind::DownloadImages)),
        ),
        S::DownloadingImages => wait(StageKey::Images, STEP_IMAGES, "images are downloading"),
        S::DownloadedImages | S::UpgradingFirstMasterFailed => first_control_plane_step(ctx, u),
        S::UpgradingFirstMaster => wait(
            StageKey::FirstControlPlane(round_key(ctx, u, in_flight_step(ctx))),
            STEP_CP,
            "the first control plane is upgrading",
        ),
        S::UpgradedFirstMaster | S::UpgradingNetworkingFailed if !networking_done => run(
            Command::UpgradeNetworking,
            StepAt::new(StageKey::Networking, STEP_NETWORKING),
            Some(format!("{}/{to}", StepKind::Networking)),
        ),
        S::UpgradingNetworking => wait(
            StageKey::Networking,
            STEP_NETWORKING,
            "networking is upgrading",
        ),
        // Every control plane has finished this minor: kubelets, or the next minor.
        S::UpgradedFirstMaster
        | S::UpgradingNetworkingFailed
        | S::UpgradedNetworking
        | S::UpgradedSecondMaster
        | S::UpgradingKubelets
            if kubelet_target(ctx.obs).is_some() =>
        {
            round_done(ctx, s, u)
        }
        S::UpgradedFirstMaster
        | S::UpgradingNetworkingFailed
        | S::UpgradedNetworking
        | S::UpgradedSecondMaster
        | S::UpgradingKubelets
        | S::UpgradingSecondMaster
        | S::UpgradingSecondMasterFailed => match control_plane_in_flight(ctx) {
            Some(host) => wait(
                StageKey::SecondControlPlane(
                    host.to_string(),
                    round_key(ctx, u, in_flight_step(ctx)),
                ),
                STEP_CP,
                &format!("the control plane on {host} is upgrading"),
            ),
            None => other_control_plane_step(ctx, u),
        },
        // A cordon by hand (aio-simplex): waited for, re-done if it failed, then the control
        // plane or the kubelet it came before; the uncordon likewise before complete.
        S::CordonStarted | S::UncordonStarted => wait(
            StageKey::Complete,
            STEP_COMPLETE,
            "a cordon or uncordon runs",
        ),
        S::CordonFailed => match ctx.obs.controllers().next() {
            Some(c) => run(
                Command::Cordon {
                    host: c.hostname.clone(),
                },
                StepAt::new(StageKey::FirstControlPlane(None), STEP_CP),
                Some(format!("{}/{}", StepKind::Cordon, c.hostname)),
            ),
            None => Next::Fail {
                at: StepAt::new(StageKey::FirstControlPlane(None), STEP_CP),
                reason: "no controller to cordon".into(),
            },
        },
        // Cordoned after a minor's control planes: that minor's kubelets or the next minor.
        S::CordonComplete if kubelet_target(ctx.obs).is_some_and(|t| t > u.from_version) => {
            round_done(ctx, s, u)
        }
        S::CordonComplete => first_control_plane_step(ctx, u),
        S::UncordonFailed => uncordon_step(ctx),
        S::UncordonComplete => kubelet_phase(ctx, s, to),
        S::UpgradeComplete => Next::Done,
        S::UpgradeAborting | S::UpgradeAbortingFailed | S::UpgradeAborted => Next::Fail {
            at: StepAt::new(StageKey::Start, STEP_START),
            reason: format!(
                "the upgrade is aborted ({}): no step forward starts",
                u.state
            ),
        },
    }
}

/// The version of the control-plane operation in flight, if any.
fn in_flight_step(ctx: &Ctx<'_>) -> Option<KubeVersion> {
    ctx.snap.operations.iter().find_map(|o| match &o.op {
        kup_types::Operation::UpgradeControlPlane { version, .. } => Some(*version),
        _ => None,
    })
}

/// How a stage of version `v` is keyed: by its version when the upgrade crosses several
/// minors (the stages of each carry it), by nothing otherwise.
fn round_key(
    ctx: &Ctx<'_>,
    u: &kup_types::KubeUpgradeRecord,
    v: Option<KubeVersion>,
) -> Option<KubeVersion> {
    (crate::machine::upgrade_steps(ctx, u).len() > 1)
        .then_some(v)
        .flatten()
}

/// Every control plane runs the same minor of the way: the kubelets follow where the next
/// minor would leave one beyond the skew policy (and at the end); otherwise the next minor's
/// first control plane.
fn round_done(ctx: &Ctx<'_>, s: &StrategyRecord, u: &kup_types::KubeUpgradeRecord) -> Next {
    let Some(r) = kubelet_target(ctx.obs) else {
        return other_control_plane_step(ctx, u);
    };
    if r >= s.to_version {
        return kubelet_phase(ctx, s, s.to_version);
    }
    let steps = crate::machine::upgrade_steps(ctx, u);
    let Some(next) = crate::machine::next_step(&steps, r) else {
        return kubelet_phase(ctx, s, s.to_version);
    };
    let kubelets_allow = ctx
        .obs
        .nodes
        .iter()
        .all(|n| n.kubelet_version.kubelet_runs_under(next));
    // A kubelet round begun (a host taken down for it) is finished first.
    let begun = ctx.obs.hosts.iter().any(|h| taken_down(ctx, h, r));
    if kubelets_allow && !begun && s.batch.is_none() {
        first_control_plane_step(ctx, u)
    } else {
        kubelet_phase(ctx, s, r)
    }
}

fn run(cmd: Command, at: StepAt, key: Option<String>) -> Next {
    Next::Run { cmd, at, key }
}

/// Before the start: the patches the version needs applied (applied and installed where
/// needed), then the start itself.
fn start_step(ctx: &Ctx<'_>, s: &StrategyRecord) -> Next {
    let to = s.to_version;
    let at = StepAt::new(StageKey::Start, STEP_START);
    if let Some(meta) = ctx.catalog.get(to) {
        for id in &meta.applied_patches {
            let Some(p) = ctx.snap.patch(id) else {
                continue; // The start refuses with the reason.
            };
            match p.state {
                PatchState::Available => {
                    return run(Command::PatchApply { id: id.clone() }, at, None);
                }
                PatchState::PartialApply => {
                    let host = ctx.obs.hosts.iter().find(|h| {
                        crate::patches::needed_on(p, h) && !ctx.snap.installed(id, &h.hostname)
                    });
                    if let Some(h) = host {
                        return run(
                            Command::PatchHostInstall {
                                host: h.hostname.clone(),
                            },
                            at,
                            None,
                        );
                    }
                }
                _ => {}
            }
        }
    }
    run(start_command(ctx, s), at, None)
}

/// The start as the strategy sends it: VIM's alarm list, widened by the restrictions.
fn start_command(ctx: &Ctx<'_>, s: &StrategyRecord) -> Command {
    let mut alarm_ignore: Vec<String> = STRATEGY_ALARM_IGNORE
        .iter()
        .map(|a| a.to_string())
        .collect();
    if s.alarm_restrictions == AlarmRestrictions::Permissive {
        alarm_ignore.extend(ctx.obs.alarms.iter().map(|a| a.alarm_id.clone()));
    }
    Command::Start {
        to_version: s.to_version.to_string(),
        force: s.alarm_restrictions != AlarmRestrictions::Strict,
        alarm_ignore,
    }
}

/// The binaries of `kind` a host step needs: an applied patch installed on the host first (or
/// applied, if only uploaded). `None` when nothing is missing.
fn binaries_first(ctx: &Ctx<'_>, kind: PatchKind, to: KubeVersion, host: &str) -> Option<Command> {
    match crate::patches::binaries_missing(ctx.snap, kind, to, host)? {
        Refusal::BinariesNotInstalled {
            applied: true,
            host,
            ..
        } => Some(Command::PatchHostInstall { host }),
        Refusal::BinariesNotInstalled { patch, .. } => Some(Command::PatchApply { id: patch }),
        _ => None,
    }
}

/// The next minor's first control plane (or the one whose attempt failed): the standby, or
/// one already there.
fn first_control_plane_step(ctx: &Ctx<'_>, u: &kup_types::KubeUpgradeRecord) -> Next {
    let failed = ctx.obs.controllers().find(|c| {
        ctx.snap.host(&c.hostname).and_then(|r| r.status) == Some(HS::UpgradingControlPlaneFailed)
    });
    let steps = crate::machine::upgrade_steps(ctx, u);
    let round = crate::machine::control_plane_floor(ctx.obs)
        .and_then(|f| crate::machine::next_step(&steps, f))
        .unwrap_or(u.to_version);
    let host = failed.or_else(|| plan::first_control_plane(ctx.obs, round));
    control_plane_on(ctx, u, host, StageKey::FirstControlPlane)
}

/// The next of the other control planes of this minor (the lowest id not there yet, or one
/// whose attempt failed).
fn other_control_plane_step(ctx: &Ctx<'_>, u: &kup_types::KubeUpgradeRecord) -> Next {
    let round = ctx
        .obs
        .controllers()
        .filter_map(|c| ctx.obs.control_plane_version(&c.hostname))
        .max()
        .unwrap_or(u.to_version);
    let host = ctx
        .obs
        .controllers()
        .filter(|c| {
            ctx.obs.control_plane_version(&c.hostname) < Some(round)
                || ctx.snap.host(&c.hostname).and_then(|r| r.status)
                    == Some(HS::UpgradingControlPlaneFailed)
        })
        .min_by_key(|c| c.id);
    let name = host.map(|h| h.hostname.clone()).unwrap_or_default();
    control_plane_on(ctx, u, host, |v| StageKey::SecondControlPlane(name, v))
}

/// The control-plane command for `host` (its kubeadm binaries installed first), at the stage
/// `stage` makes of its step's version.
fn control_plane_on(
    ctx: &Ctx<'_>,
    u: &kup_types::KubeUpgradeRecord,
    host: Option<&HostInfo>,
    stage: impl FnOnce(Option<KubeVersion>) -> StageKey,
) -> Next {
    let target = host.and_then(|h| {
        let cp = ctx.obs.control_plane_version(&h.hostname)?;
        crate::machine::control_plane_target(ctx, u, &h.hostname, cp)
    });
    let at = StepAt::new(stage(round_key(ctx, u, target)), STEP_CP);
    let (Some(h), Some(to)) = (host, target) else {
        return Next::Fail {
            at,
            reason: "no controller is left to upgrade the control plane of".into(),
        };
    };
    if let Some(cmd) = binaries_first(ctx, PatchKind::Kubeadm, to, &h.hostname) {
        return run(cmd, at, None);
    }
    run(
        Command::ControlPlane {
            host: h.hostname.clone(),
            force: false,
        },
        at,
        Some(format!("{}/{}/{to}", StepKind::ControlPlane, h.hostname)),
    )
}

/// The operation kup runs on a host, if any.
fn in_flight<'a>(ctx: &'a Ctx<'_>, host: &str) -> Option<&'a kup_types::OperationRecord> {
    ctx.snap
        .operations
        .iter()
        .find(|o| o.op.host() == Some(host))
}

/// Whether a host's kubelet cycle is over: at the target, its row says so, back in service,
/// and nothing of kup's still runs on it (the cluster may show an unlock before kup has
/// recorded its end).
fn kubelet_done(ctx: &Ctx<'_>, h: &HostInfo, to: KubeVersion) -> bool {
    in_flight(ctx, &h.hostname).is_none()
        && ctx.obs.kubelet_version(&h.hostname) == Some(to)
        && ctx.snap.host(&h.hostname).and_then(|r| r.status) == Some(HS::UpgradedKubelet)
        && (crate::machine::kubelet_in_place(ctx.obs, h)
            || h.administrative == AdminState::Unlocked)
}

/// A kubelet round to `to` (the target, or a minor on the way): the controllers (the standby
/// ones first, the active one last after a swact), then the workers in batches; then complete,
/// or the next minor's control planes.
fn kubelet_phase(ctx: &Ctx<'_>, s: &StrategyRecord, to: KubeVersion) -> Next {
    let key = stage_version(ctx, s, to);
    let mut controllers: Vec<&HostInfo> = ctx.obs.controllers().collect();
    controllers.sort_by_key(|h| (h.active_controller, h.id));
    for c in controllers {
        if kubelet_done(ctx, c, to) {
            continue;
        }
        let stage = StageKey::Controller(c.hostname.clone(), key);
        return host_cycle(ctx, s, c, stage, true, to);
    }
    if s.worker_apply_type == ApplyType::Ignore {
        return Next::Done;
    }
    if let Some(batch) = &s.batch {
        let hosts: Vec<&HostInfo> = batch.iter().filter_map(|h| ctx.obs.host(h)).collect();
        let mut waiting = None;
        for h in &hosts {
            if kubelet_done(ctx, h, to) {
                continue;
            }
            match host_cycle(ctx, s, h, StageKey::Workers(key), false, to) {
                Next::Wait { at, why } => {
                    waiting.get_or_insert(Next::Wait { at, why });
                }
                other => return other,
            }
        }
        if let Some(w) = waiting {
            return w;
        }
    }
    choose_batch(ctx, s, to)
}

/// The version a stage of `v` is keyed by: `v` when the upgrade crosses several minors.
fn stage_version(ctx: &Ctx<'_>, s: &StrategyRecord, v: KubeVersion) -> Option<KubeVersion> {
    ctx.snap.upgrade.as_ref().and_then(|u| {
        (u.to_version == s.to_version)
            .then(|| round_key(ctx, u, Some(v)))
            .flatten()
    })
}

/// One host's kubelet cycle: (swact,) lock, binaries, kubelet, unlock; on aio-simplex the
/// kubelet alone, in place. Waits while anything runs on the host.
fn host_cycle(
    ctx: &Ctx<'_>,
    s: &StrategyRecord,
    h: &HostInfo,
    stage: StageKey,
    controller: bool,
    to: KubeVersion,
) -> Next {
    let name = h.hostname.clone();
    let at = |step: &'static str| StepAt::new(stage.clone(), step);
    let busy = in_flight(ctx, &name);
    let status = ctx.snap.host(&name).and_then(|r| r.status);
    let kubelet_key = Some(format!("{}/{name}/{to}", StepKind::Kubelet));
    let at_target = ctx.obs.kubelet_version(&name) == Some(to);
    let in_place = crate::machine::kubelet_in_place(ctx.obs, h);
    if let Some(o) = busy {
        let step = match o.op.kind() {
            StepKind::Swact => STEP_SWACT,
            StepKind::Lock => STEP_LOCK,
            StepKind::Unlock => STEP_UNLOCK,
            _ => STEP_KUBELET,
        };
        return Next::Wait {
            at: at(step),
            why: format!("{} runs", o.op),
        };
    }
    if h.task.is_some() {
        return Next::Wait {
            at: at(STEP_LOCK),
            why: format!("{name} is busy"),
        };
    }
    // The kubelet step itself: its binaries installed first.
    let kubelet_step = |name: String| match binaries_first(ctx, PatchKind::Kubelet, to, &name) {
        Some(cmd) => run(cmd, at(STEP_KUBELET), None),
        None => run(
            Command::Kubelet {
                host: name,
                force: false,
            },
            at(STEP_KUBELET),
            kubelet_key,
        ),
    };
    if in_place {
        if at_target && status == Some(HS::UpgradedKubelet) {
            return Next::Done;
        }
        return kubelet_step(name);
    }
    let locked = h.administrative == AdminState::Locked;
    let kubelet_finished = at_target && status == Some(HS::UpgradedKubelet);
    if !locked && !kubelet_finished {
        if controller && h.active_controller {
            return run(
                Command::Swact {
                    host: name.clone(),
                    force: false,
                },
                at(STEP_SWACT),
                Some(format!("{}/{name}", StepKind::Swact)),
            );
        }
        // A worker of an online batch is drained in its wave: when its drain, beside the
        // drains still running, keeps every budget (the lock's own check, which would refuse
        // it now). Unsafe alone, it waits for the batch's other hosts to come back (their
        // drains may have moved pods onto it, which can go back to them); then the lock
        // decides.
        if !controller
            && s.mode == UpgradeMode::Online
            && let Err(Refusal::LockUnsafe { with, reasons, .. }) =
                crate::machine::lock_safety(ctx, &name)
        {
            let why = reasons.first().map_or("unsafe", String::as_str);
            let out = batch_peers_out(ctx, s, &name);
            if !with.is_empty() {
                return Next::Wait {
                    at: at(STEP_LOCK),
                    why: format!(
                        "the drain of {name} waits for that of {}: {why}",
                        with.join(", ")
                    ),
                };
            }
            if !out.is_empty() {
                return Next::Wait {
                    at: at(STEP_LOCK),
                    why: format!(
                        "the drain of {name} waits for {} to return to service: {why}",
                        out.join(", ")
                    ),
                };
            }
        }
        return run(
            Command::Lock {
                host: name.clone(),
                force: s.mode == UpgradeMode::Offline,
            },
            at(STEP_LOCK),
            Some(format!("{}/{name}", StepKind::Lock)),
        );
    }
    if locked && !kubelet_finished {
        return kubelet_step(name);
    }
    // At the target and recorded so: back into service.
    run(
        Command::Unlock {
            host: name.clone(),
            force: false,
        },
        at(STEP_UNLOCK),
        Some(format!("{}/{name}", StepKind::Unlock)),
    )
}

/// The other hosts of the strategy's batch that are out of service or busy.
fn batch_peers_out<'a>(ctx: &Ctx<'_>, s: &'a StrategyRecord, name: &str) -> Vec<&'a str> {
    s.batch
        .iter()
        .flatten()
        .map(String::as_str)
        .filter(|&p| p != name)
        .filter(|&p| {
            in_flight(ctx, p).is_some()
                || ctx
                    .obs
                    .host(p)
                    .is_some_and(|h| h.administrative == AdminState::Locked)
        })
        .collect()
}

/// aio-simplex: the host cordoned by hand is uncordoned before complete.
fn uncordon_step(ctx: &Ctx<'_>) -> Next {
    let at = StepAt::new(StageKey::Complete, STEP_COMPLETE);
    match ctx.obs.controllers().next() {
        Some(c) => run(
            Command::Uncordon {
                host: c.hostname.clone(),
            },
            at,
            Some(format!("{}/{}", StepKind::Uncordon, c.hostname)),
        ),
        None => Next::Fail {
            at,
            reason: "no controller to uncordon".into(),
        },
    }
}

/// The next worker batch, judged on the live cluster: workers not at the target and not left
/// out, in id order; the first one that is ready (and, online, safe alone) starts it, and every
/// further one joins while the grown batch stays safe, up to the cap. Hosts that are not
/// ready or not safe even alone are left out with `--partial-ok`, and stop the strategy
/// otherwise. No worker left: complete (unless some were left out: the upgrade stays open).
fn choose_batch(ctx: &Ctx<'_>, s: &StrategyRecord, to: KubeVersion) -> Next {
    let version = stage_version(ctx, s, to);
    let at = StepAt::new(StageKey::Workers(version), STEP_LOCK);
    let skipped: BTreeSet<&str> = s.skipped.iter().map(|x| x.host.as_str()).collect();
    let candidates: Vec<&HostInfo> = pending_workers(ctx, to)
        .into_iter()
        .filter(|h| !skipped.contains(h.hostname.as_str()))
        .collect();
    if candidates.is_empty() && to < s.to_version {
        // A kubelet round on the way is over: its last batch let go of, then the next minor.
        if s.batch.is_some() {
            return Next::Batch {
                hosts: Vec::new(),
                skipped: Vec::new(),
                version,
            };
        }
        // Hosts left out (--partial-ok) that the next minor would leave beyond the skew
        // policy: the strategy ends here, the upgrade open, and reports them.
        let next_minor =
            ctx.snap.upgrade.as_ref().and_then(|u| {
                crate::machine::next_step(&crate::machine::upgrade_steps(ctx, u), to)
            });
        let blocked = next_minor.is_some_and(|n| {
            ctx.obs
                .nodes
                .iter()
                .any(|node| !node.kubelet_version.kubelet_runs_under(n))
        });
        if blocked && !s.skipped.is_empty() {
            return Next::Done;
        }
        return match &ctx.snap.upgrade {
            Some(u) => first_control_plane_step(ctx, u),
            None => Next::Done,
        };
    }
    if candidates.is_empty() {
        if !s.skipped.is_empty() {
            return Next::Done;
        }
        let cordoned = ctx.obs.nodes.iter().any(|n| n.unschedulable);
        if ctx.obs.system_type == SystemType::AioSimplex
            && cordoned
            && ctx.snap.upgrade.as_ref().map(|u| u.state) != Some(S::UncordonComplete)
        {
            return uncordon_step(ctx);
        }
        return run(
            Command::Complete,
            StepAt::new(StageKey::Complete, STEP_COMPLETE),
            None,
        );
    }
    // Workers the upgrade already took down (a re-created strategy, a half-done manual
    // upgrade): already out of service, so they are finished first, without judging them.
    let resumed: Vec<String> = candidates
        .iter()
        .filter(|h| taken_down(ctx, h, to))
        .take(s.max_parallel_worker_hosts.max(1) as usize)
        .map(|h| h.hostname.clone())
        .collect();
    if !resumed.is_empty() {
        return Next::Batch {
            hosts: resumed,
            skipped: Vec::new(),
            version,
        };
    }
    // A host step of kup's runs on a candidate (an operator's, say): wait for it to end.
    if let Some(o) = candidates.iter().find_map(|h| in_flight(ctx, &h.hostname)) {
        return Next::Wait {
            at,
            why: format!("{} runs", o.op),
        };
    }
    let mut left_out = Vec::new();
    let mut leave = |h: &HostInfo, reason: String| -> Option<Next> {
        if s.partial_ok {
            left_out.push(SkippedHost {
                host: h.hostname.clone(),
                reason,
            });
            None
        } else {
            Some(Next::Fail {
                at: at.clone(),
                reason: format!("{}: {reason}", h.hostname),
            })
        }
    };
    let online = s.mode == UpgradeMode::Online;
    let cap = s.max_parallel_worker_hosts.max(1) as usize;
    let workloads = ctx.workloads.filter(|_| online);
    let mut analyzer = workloads.map(|wl| Analyzer::new(ctx.obs, wl));
    // The batch's first host: the first ready worker that is safe alone (offline: ready). The
    // ones before it are left out (or stop the strategy).
    let mut ready = candidates.into_iter().map(|h| {
        let problems = ready_problems(ctx, h, to);
        if problems.is_empty() {
            Ok(h)
        } else {
            // Readiness never changes by waiting for the batch: judged for each host.
            Err((h, format!("not ready: {}", problems.join("; "))))
        }
    });
    let mut seed = None;
    for r in ready.by_ref() {
        let h = match r {
            Ok(h) => h,
            Err((h, why)) => {
                if let Some(fail) = leave(h, why) {
                    return fail;
                }
                continue;
            }
        };
        let Some(an) = analyzer.as_mut() else {
            seed = Some((h, Verdict::Ok));
            break;
        };
        let mut alone = BatchEval::drained_in_waves();
        alone.add(an, &h.hostname);
        let verdict = alone.evaluate(an);
        if verdict.verdict != Verdict::Unsafe {
            seed = Some((h, verdict.verdict));
            break;
        }
        // Unsafe even alone: it can only be left out (or stop the strategy).
        let worst = verdict.unsafe_reasons();
        if let Some(fail) = leave(h, format!("unsafe: {}", worst.join("; "))) {
            return fail;
        }
    }
    let mut batch: Vec<String> = Vec::new();
    if let Some((first, verdict)) = seed {
        // The ready workers that follow, as far as the window goes, may join; those not ready
        // are judged when their turn comes.
        let mut names: Vec<&str> = vec![first.hostname.as_str()];
        names.extend(
            ready
                .filter_map(Result::ok)
                .take(plan::WINDOW_PER_HOST * cap)
                .map(|h| h.hostname.as_str()),
        );
        match analyzer.as_mut() {
            Some(an) => {
                let grown =
                    crate::safety::grow_batch(an, &names, verdict, cap, plan::MAX_UNSAFE_PROBES);
                batch = grown.taken.iter().map(|&k| names[k].to_string()).collect();
            }
            None => batch = names.iter().take(cap).map(|h| h.to_string()).collect(),
        }
    }
    if batch.is_empty() {
        // Every candidate was left out.
        return Next::Batch {
            hosts: Vec::new(),
            skipped: left_out,
            version,
        };
    }
    Next::Batch {
        hosts: batch,
        skipped: left_out,
        version,
    }
}

/// A host the upgrade took down for its kubelet (a strategy before, or an operator by hand):
/// locked while its kubelet step has begun, or while the kubelet phase is open.
fn taken_down(ctx: &Ctx<'_>, h: &HostInfo, to: KubeVersion) -> bool {
    h.administrative == AdminState::Locked
        && (in_kubelet_cycle(ctx, h, to)
            || ctx.snap.upgrade.as_ref().is_some_and(|u| {
                crate::machine::kubelets_open(ctx.obs, u) && kubelet_target(ctx.obs) == Some(to)
            }))
}

/// Whether the upgrade's kubelet step reached this host: at the target, or its row shows the
/// step (running, failed or done) for the target.
fn in_kubelet_cycle(ctx: &Ctx<'_>, h: &HostInfo, to: KubeVersion) -> bool {
    let row = ctx.snap.host(&h.hostname);
    ctx.obs.kubelet_version(&h.hostname) == Some(to)
        || row.is_some_and(|r| {
            r.target_version == Some(to)
                && matches!(
                    r.status,
                    Some(HS::UpgradingKubelet | HS::UpgradingKubeletFailed | HS::UpgradedKubelet)
                )
        })
}

/// Workers not done, in id order.
fn pending_workers<'a>(ctx: &'a Ctx<'_>, to: KubeVersion) -> Vec<&'a HostInfo> {
    let mut hosts: Vec<&HostInfo> = ctx
        .obs
        .hosts
        .iter()
        .filter(|h| h.personality == Personality::Worker && !kubelet_done(ctx, h, to))
        .collect();
    hosts.sort_by_key(|h| (h.id, &h.hostname));
    hosts
}

/// The strategy's commands: what each writes, or why it is refused.
pub(crate) fn decide(
    ctx: &Ctx<'_>,
    cmd: &StrategyCommand,
    events: &mut Vec<(EventKind, String)>,
) -> Result<StrategyWrite, Refusal> {
    use StrategyState as T;
    let now = ctx.now;
    let current = ctx.snap.strategy.as_ref();
    let existing = || current.map(|r| (**r).clone()).ok_or(Refusal::NoStrategy);
    let mut say = |m: String| events.push((EventKind::Strategy, m));
    let put = |mut r: StrategyRecord| {
        r.updated_at = Some(now);
        StrategyWrite::Put(std::sync::Arc::new(r))
    };
    match cmd {
        StrategyCommand::Create { req, durations } => {
            if current.is_some() {
                return Err(Refusal::StrategyExists);
            }
            let r = build(ctx, req, durations, ctx.fresh_uuid)?;
            let mut m = format!(
                "strategy to {} ({} {}, workers {} by up to {}) built: {}",
                r.to_version,
                r.mode,
                if r.partial_ok {
                    "partial-ok"
                } else {
                    "all hosts"
                },
                r.worker_apply_type,
                r.max_parallel_worker_hosts,
                r.state
            );
            if !r.build_phase.reason.is_empty() {
                m.push_str(&format!(" ({})", r.build_phase.reason.replace('\n', "; ")));
            }
            say(m);
            Ok(StrategyWrite::Put(std::sync::Arc::new(r)))
        }
        StrategyCommand::Apply => {
            let mut r = existing()?;
            match r.state {
                T::ReadyToApply | T::ApplyFailed | T::ApplyTimeout | T::Aborted => {}
                T::Applying | T::Aborting => return Err(Refusal::StrategyBusy(r.state)),
                other => return Err(Refusal::StrategyNotReady(other)),
            }
            let again = r.state != T::ReadyToApply;
            // A re-apply resumes: what failed or was aborted is tried afresh, retries reset.
            for st in &mut r.apply_phase.stages {
                let st = Arc::make_mut(st);
                if matches!(
                    st.result,
                    StepResult::Failed | StepResult::TimedOut | StepResult::Aborted
                ) {
                    st.result = StepResult::Wait;
                    st.reason.clear();
                    st.end = None;
                }
                for step in &mut st.steps {
                    if matches!(
                        step.result,
                        StepResult::Failed | StepResult::TimedOut | StepResult::Aborted
                    ) {
                        step.result = StepResult::Initial;
                        step.reason.clear();
                        step.end = None;
                    }
                }
            }
            r.state = T::Applying;
            r.apply_phase.result = StepResult::Wait;
            r.apply_phase.reason.clear();
            r.apply_phase.start = Some(now);
            r.apply_phase.end = None;
            r.abort_phase = Phase::new("abort");
            say(format!(
                "strategy to {} {}",
                r.to_version,
                if again { "applied again" } else { "applying" }
            ));
            Ok(put(r))
        }
        StrategyCommand::Abort { rollback } => {
            let mut r = existing()?;
            if r.state != T::Applying {
                return Err(Refusal::StrategyAbortNotApplying(r.state));
            }
            r.state = T::Aborting;
            r.rollback_on_abort = *rollback;
            r.abort_phase.result = StepResult::Wait;
            r.abort_phase.start = Some(now);
            say(format!(
                "strategy to {} aborting: the steps in flight finish, no new one starts",
                r.to_version
            ));
            Ok(put(r))
        }
        StrategyCommand::Delete => {
            let r = existing()?;
            if r.state.running() {
                return Err(Refusal::StrategyBusy(r.state));
            }
            say(format!("strategy to {} deleted", r.to_version));
            Ok(StrategyWrite::Delete)
        }
        StrategyCommand::Progress(p) => {
            let mut r = existing()?;
            // An abort committed meanwhile wins over what the runner decided before it.
            let expected = match p {
                Progress::Aborted => T::Aborting,
                _ => T::Applying,
            };
            if r.state != expected {
                return Err(Refusal::StrategyStopped(r.state.to_string()));
            }
            progress(ctx, &mut r, p, &mut say);
            Ok(put(r))
        }
    }
}

/// Whether the runner of strategy `uuid` may still start a command: the strategy is the same
/// one and still applying. Checked under the command lock, so an abort (or a delete and a new
/// strategy) committed after the runner decided stops the command it was about to run.
pub fn runner_may_act(snap: &kup_types::Snapshot, uuid: &str) -> Result<(), Refusal> {
    match snap.strategy.as_deref() {
        Some(s) if s.uuid == uuid && s.state == StrategyState::Applying => Ok(()),
        Some(s) if s.uuid == uuid => Err(Refusal::StrategyStopped(s.state.to_string())),
        _ => Err(Refusal::StrategyStopped("deleted".into())),
    }
}

/// Records the runner's progress in the strategy's stages and state.
fn progress(ctx: &Ctx<'_>, r: &mut StrategyRecord, p: &Progress, say: &mut impl FnMut(String)) {
    let now = ctx.now;
    match p {
        Progress::At(at) => {
            if let Some(i) = stage_index(r, &at.stage) {
                let stages = &mut r.apply_phase.stages;
                for st in &mut stages[..i] {
                    if st.result != StepResult::Success {
                        mark_all(Arc::make_mut(st), StepResult::Success, now);
                    }
                }
                let st = Arc::make_mut(&mut stages[i]);
                let name = match st.version {
                    Some(v) => format!("{} {v}", st.name),
                    None => st.name.clone(),
                };
                if begin(&mut st.result, &mut st.start, now) {
                    let on = if st.hosts.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", st.hosts.join(", "))
                    };
                    say(format!("stage {name}{on} started"));
                }
                if let Some(k) = st.steps.iter().position(|x| x.name == at.step) {
                    for step in &mut st.steps[..k] {
                        if step.result != StepResult::Success {
                            end(
                                &mut step.result,
                                &mut step.start,
                                &mut step.end,
                                StepResult::Success,
                                now,
                            );
                        }
                    }
                    let step = &mut st.steps[k];
                    begin(&mut step.result, &mut step.start, now);
                }
            }
        }
        Progress::Batch {
            hosts,
            skipped,
            version,
        } => {
            // The batch before it is done.
            let stages = &mut r.apply_phase.stages;
            for st in stages
                .iter_mut()
                .filter(|st| st.name == STAGE_WORKERS && st.result == StepResult::Wait)
            {
                mark_all(Arc::make_mut(st), StepResult::Success, now);
            }
            let this_round = |st: &Stage| st.name == STAGE_WORKERS && st.version == *version;
            for x in skipped {
                say(format!("{} left out: {}", x.host, x.reason));
            }
            r.skipped.extend(skipped.iter().cloned());
            let taken: BTreeSet<&str> = hosts
                .iter()
                .map(String::as_str)
                .chain(r.skipped.iter().map(|x| x.host.as_str()))
                .collect();
            let first_open = stages
                .iter()
                .position(|st| this_round(st) && st.result == StepResult::Initial);
            // Later predicted batches of this round lose the hosts taken now (or left out).
            for st in stages.iter_mut().filter(|st| {
                this_round(st)
                    && st.result == StepResult::Initial
                    && st.hosts.iter().any(|h| taken.contains(h.as_str()))
            }) {
                let st = Arc::make_mut(st);
                st.hosts.retain(|h| !taken.contains(h.as_str()));
                for step in &mut st.steps {
                    step.hosts.retain(|h| !taken.contains(h.as_str()));
                }
            }
            if !hosts.is_empty() {
                let mut fresh = worker_stage(ctx, hosts.clone());
                // As long as the batch the plan predicted in its place.
                fresh.version = *version;
                fresh.predicted_seconds = first_open
                    .map(|i| stages[i].predicted_seconds)
                    .or_else(|| {
                        stages
                            .iter()
                            .rev()
                            .find(|st| this_round(st))
                            .map(|st| st.predicted_seconds)
                    })
                    .unwrap_or(0);
                let fresh = Arc::new(fresh);
                match first_open {
                    Some(i) => stages[i] = fresh,
                    None => {
                        // After this round's last stage (or before complete).
                        let at = stages
                            .iter()
                            .rposition(|st| this_round(st))
                            .map(|i| i + 1)
                            .or_else(|| stages.iter().position(|st| st.name == STAGE_COMPLETE))
                            .unwrap_or(stages.len());
                        stages.insert(at, fresh);
                    }
                }
                say(format!(
                    "worker batch of {}: {}",
                    hosts.len(),
                    hosts.join(",")
                ));
            }
            stages.retain(|st| !this_round(st) || !st.hosts.is_empty());
            r.batch = (!hosts.is_empty()).then(|| hosts.clone());
        }
        Progress::Skip(x) => {
            say(format!("{} left out: {}", x.host, x.reason));
            r.skipped.push(x.clone());
            if let Some(b) = &mut r.batch {
                b.retain(|h| *h != x.host);
            }
        }
        Progress::Done => {
            let partial = !r.skipped.is_empty();
            for st in &mut r.apply_phase.stages {
                if st.result == StepResult::Success {
                    continue;
                }
                let st = Arc::make_mut(st);
                if partial && st.name == STAGE_COMPLETE {
                    st.reason = "not run: some hosts were left out".into();
                    continue;
                }
                mark_all(st, StepResult::Success, now);
            }
            r.batch = None;
            let result = if partial {
                StepResult::Degraded
            } else {
                StepResult::Success
            };
            let phase = &mut r.apply_phase;
            end(
                &mut phase.result,
                &mut phase.start,
                &mut phase.end,
                result,
                now,
            );
            if partial {
                let hosts: Vec<&str> = r.skipped.iter().map(|x| x.host.as_str()).collect();
                r.apply_phase.reason = format!(
                    "{} host{} left out ({}): the upgrade stays open until they are upgraded",
                    hosts.len(),
                    if hosts.len() == 1 { "" } else { "s" },
                    hosts.join(", ")
                );
            }
            r.state = StrategyState::Applied;
            say(format!(
                "strategy to {} applied{}",
                r.to_version,
                if partial { " (partially)" } else { "" }
            ));
        }
        Progress::Failed {
            at,
            reason,
            timed_out,
        } => {
            let result = if *timed_out {
                StepResult::TimedOut
            } else {
                StepResult::Failed
            };
            if let Some(i) = at.as_ref().and_then(|a| stage_index(r, &a.stage)) {
                let st = Arc::make_mut(&mut r.apply_phase.stages[i]);
                st.result = result;
                st.reason = reason.clone();
                st.start.get_or_insert(now);
                st.end = Some(now);
                if let Some(step) = at
                    .as_ref()
                    .and_then(|a| st.steps.iter_mut().find(|x| x.name == a.step))
                {
                    end(
                        &mut step.result,
                        &mut step.start,
                        &mut step.end,
                        result,
                        now,
                    );
                    step.reason = reason.clone();
                }
            }
            let phase = &mut r.apply_phase;
            end(
                &mut phase.result,
                &mut phase.start,
                &mut phase.end,
                result,
                now,
            );
            phase.reason = reason.clone();
            r.state = if *timed_out {
                StrategyState::ApplyTimeout
            } else {
                StrategyState::ApplyFailed
            };
            say(format!("strategy to {} failed: {reason}", r.to_version));
        }
        Progress::Aborted => {
            for st in &mut r.apply_phase.stages {
                if st.result == StepResult::Wait {
                    let st = Arc::make_mut(st);
                    st.result = StepResult::Aborted;
                    st.end = Some(now);
                    for step in &mut st.steps {
                        if step.result == StepResult::Wait {
                            step.result = StepResult::Aborted;
                            step.end = Some(now);
                        }
                    }
                }
            }
            let phase = &mut r.apply_phase;
            end(
                &mut phase.result,
                &mut phase.start,
                &mut phase.end,
                StepResult::Aborted,
                now,
            );
            let abort = &mut r.abort_phase;
            end(
                &mut abort.result,
                &mut abort.start,
                &mut abort.end,
                StepResult::Success,
                now,
            );
            r.state = StrategyState::Aborted;
            say(format!("strategy to {} aborted", r.to_version));
        }
    }
}

/// The stage a step belongs to in the apply phase.
fn stage_index(r: &StrategyRecord, key: &StageKey) -> Option<usize> {
    let stages = &r.apply_phase.stages;
    let named = |n: &str| stages.iter().position(|s| s.name == n);
    match key {
        StageKey::Start => named(STAGE_START),
        StageKey::Images => named(STAGE_IMAGES),
        StageKey::FirstControlPlane(v) => stages
            .iter()
            .position(|s| s.name == STAGE_FIRST_CP && s.version == *v),
        StageKey::Networking => named(STAGE_NETWORKING),
        StageKey::SecondControlPlane(h, v) => stages.iter().position(|s| {
            s.name == STAGE_SECOND_CP && s.hosts.first() == Some(h) && s.version == *v
        }),
        StageKey::Controller(h, v) => stages.iter().position(|s| {
            s.name == STAGE_CONTROLLER && s.hosts.first() == Some(h) && s.version == *v
        }),
        StageKey::Workers(v) => stages.iter().position(|s| {
            s.name == STAGE_WORKERS && s.version == *v && s.result != StepResult::Success
        }),
        StageKey::Complete => named(STAGE_COMPLETE),
    }
}

/// What the runner records when the engine refuses its command: a worker that cannot be taken
/// down safely now is left out with `--partial-ok`; a step that is busy passes by waiting
/// (`None`); anything else stops the strategy with the refusal's reason.
pub fn refused(
    s: &StrategyRecord,
    obs: &Observation,
    at: &StepAt,
    cmd: &Command,
    r: &Refusal,
) -> Option<Progress> {
    match r {
        Refusal::HostBusy { .. } | Refusal::KubeletBusy(_) | Refusal::ControlPlaneBusy(_) => None,
        Refusal::LockUnsafe { host, reasons, .. }
            if s.partial_ok && obs.host(host).is_some_and(|h| skippable(obs, h)) =>
        {
            Some(Progress::Skip(SkippedHost {
                host: host.clone(),
                reason: format!("unsafe: {}", reasons.join("; ")),
            }))
        }
        _ => Some(Progress::Failed {
            at: Some(at.clone()),
            reason: format!("{}: {r}", cmd.describe()),
            timed_out: false,
        }),
    }
}

/// Whether the strategy's record already shows the step in progress (nothing to record).
pub fn already_at(s: &StrategyRecord, at: &StepAt) -> bool {
    stage_index(s, &at.stage).is_some_and(|i| {
        let st = &s.apply_phase.stages[i];
        st.result == StepResult::Wait
            && st.current_step().map(|k| st.steps[k].name.as_str()) == Some(at.step)
            && s.apply_phase.stages[..i]
                .iter()
                .all(|x| x.result == StepResult::Success)
    })
}

/// Whether a failed step is tried again now, later, or not at all: each step may fail
/// `retries` times since the apply began, each re-try after a backoff that doubles.
pub fn retry(
    failures: &[(Timestamp, String)],
    retries: u32,
    backoff: jiff::SignedDuration,
    now: Timestamp,
) -> Retry {
    let n = failures.len() as u32;
    let Some((last, why)) = failures.last() else {
        return Retry::Now;
    };
    if n > retries {
        return Retry::GiveUp(format!(
            "failed {n} time{}, the last: {why}",
            if n == 1 { "" } else { "s" }
        ));
    }
    let wait = backoff * 2_i32.saturating_pow(n.saturating_sub(1).min(16));
    match last.checked_add(wait) {
        Ok(t) if t > now => Retry::At(t),
        _ => Retry::Now,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retry {
    Now,
    At(Timestamp),
    GiveUp(String),
}
