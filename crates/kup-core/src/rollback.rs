//! The way back: `kube-upgrade-abort` and the steps that take every host that moved back to
//! the from-version, in the reverse order of the way up and with its safety: kubelets first
//! (workers in batches that keep every budget, each host locked and drained; controllers one at
//! a time, the active one after a swact), then the control planes one minor at a time, the
//! highest first and one host at a time (restored from the backup taken before the first
//! moved), networking last. StarlingX offers this only on all-in-one simplex; kup on every
//! system type.
//!
//! Like the strategy, [`next`] reads only the world — the upgrade row, the host rows, the
//! operations in flight, what runs — so a runner resumes the way back wherever a crash left it.

use kup_types::{
    AdminState, EventKind, HostInfo, HostUpgradeStatus, KubeUpgradeRecord, KubeUpgradeState,
    KubeVersion, Observation, Operation, Personality,
};

use crate::machine::{
    Command, Ctx, Writer, control_plane_in_flight, control_plane_peer_down, gate, host,
    locks_in_flight, not_busy, upgrade, upgrade_steps,
};
use crate::refusal::Refusal;
use crate::safety::{Analyzer, BatchEval, Verdict};
use crate::strategy::{Next, StageKey, StepAt};

use HostUpgradeStatus as HS;
use KubeUpgradeState as S;

/// States in which nothing has moved yet: an abort ends at once.
const NOTHING_MOVED: &[S] = &[
    S::UpgradeStarted,
    S::DownloadingImages,
    S::DownloadingImagesFailed,
    S::DownloadedImages,
];

/// How many workers go down at once on the way back (the strategy's default).
pub const MAX_PARALLEL_WORKERS: usize = 10;

/// One step of the way back, as the runner sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackStep {
    /// The kubelet of a host (locked, except on aio-simplex) back to the version the control
    /// planes allow.
    Kubelet { host: String },
    /// A control plane of the highest version one minor down (or to the from-version).
    ControlPlane { host: String },
    /// Networking back to the from-version.
    Networking,
    /// A host cordoned for the upgrade schedulable again.
    Uncordon { host: String },
    /// Everything is back: `upgrade-aborted`.
    Finish,
    /// The way back cannot go on: `upgrade-aborting-failed`, with why.
    Stuck { reason: String },
}

impl RollbackStep {
    pub fn describe(&self) -> String {
        match self {
            RollbackStep::Kubelet { host } => format!("abort: the kubelet on {host} back"),
            RollbackStep::ControlPlane { host } => {
                format!("abort: the control plane on {host} back")
            }
            RollbackStep::Networking => "abort: networking back".into(),
            RollbackStep::Uncordon { host } => format!("abort: {host} uncordoned"),
            RollbackStep::Finish => "abort: finished".into(),
            RollbackStep::Stuck { .. } => "abort: stuck".into(),
        }
    }

    pub fn host(&self) -> Option<&str> {
        match self {
            RollbackStep::Kubelet { host }
            | RollbackStep::ControlPlane { host }
            | RollbackStep::Uncordon { host } => Some(host),
            _ => None,
        }
    }
}

/// `kube-upgrade-abort`: from any state but the end ones (a failed abort is re-done). Before
/// anything moved, the upgrade is aborted at once; otherwise the way back begins, and a
/// download in flight is stopped. Host rows aim at the from-version again.
pub(crate) fn abort(ctx: &Ctx<'_>, w: &mut Writer<'_>) -> Result<(), Refusal> {
    let u = upgrade(ctx)?;
    if matches!(
        u.state,
        S::UpgradeAborting | S::UpgradeAborted | S::UpgradeComplete
    ) {
        return Err(Refusal::CannotAbort(u.state));
    }
    let moved = anything_moved(ctx.obs, u);
    w.set_state(if NOTHING_MOVED.contains(&u.state) && !moved {
        S::UpgradeAborted
    } else {
        S::UpgradeAborting
    });
    for row in &ctx.snap.hosts {
        let busy = matches!(
            row.status,
            Some(HS::UpgradingControlPlane | HS::UpgradingKubelet)
        );
        if !busy && (row.status.is_some() || row.target_version != Some(u.from_version)) {
            w.set_host(&row.hostname, None, Some(Some(u.from_version)));
        }
    }
    // A download changes nothing that needs undoing: stopped. A host step in flight ends on
    // its own; the way back waits for it.
    let cmd = Command::Abort;
    for o in ctx
        .snap
        .operations
        .iter()
        .filter(|o| matches!(o.op, Operation::DownloadImages { .. }))
    {
        w.fail_by_hand(o, &cmd);
    }
    Ok(())
}

/// Whether any control plane, kubelet or the networking left the from-version.
fn anything_moved(obs: &Observation, u: &KubeUpgradeRecord) -> bool {
    let from = Some(u.from_version);
    obs.controllers()
        .any(|c| obs.control_plane_version(&c.hostname) > from)
        || obs
            .hosts
            .iter()
            .any(|h| obs.kubelet_version(&h.hostname) > from)
        || obs.networking_version > from
}

/// An unlocked host whose node is unschedulable: cordoned (`kube-host-cordon`).
fn cordoned(obs: &Observation) -> Option<&str> {
    obs.hosts
        .iter()
        .filter(|h| h.administrative == AdminState::Unlocked)
        .find(|h| obs.node(&h.hostname).is_some_and(|n| n.unschedulable))
        .map(|h| h.hostname.as_str())
}

/// The versions of the way, the from-version first.
fn ladder(ctx: &Ctx<'_>, u: &KubeUpgradeRecord) -> Vec<KubeVersion> {
    let mut l = vec![u.from_version];
    l.extend(upgrade_steps(ctx, u));
    l
}

/// The highest control-plane version now.
fn cp_top(obs: &Observation) -> Option<KubeVersion> {
    obs.controllers()
        .filter_map(|c| obs.control_plane_version(&c.hostname))
        .max()
}

/// Where kubelets go back to now: the from-version if the skew policy lets it run under the
/// highest API server, else the lowest version of the way that it does (the kubelets go the
/// rest of the way once the control planes have come down).
pub(crate) fn kubelet_back_to(ctx: &Ctx<'_>, u: &KubeUpgradeRecord) -> KubeVersion {
    let Some(top) = cp_top(ctx.obs) else {
        return u.from_version;
    };
    ladder(ctx, u)
        .into_iter()
        .find(|v| v.kubelet_runs_under(top))
        .unwrap_or(u.from_version)
}

/// A step of the way back, checked like every command.
pub(crate) fn decide(
    ctx: &Ctx<'_>,
    w: &mut Writer<'_>,
    step: &RollbackStep,
) -> Result<(), Refusal> {
    let u = upgrade(ctx)?;
    gate(u, &[S::UpgradeAborting], "go back")?;
    match step {
        RollbackStep::Kubelet { host: name } => {
            let h = host(ctx, name)?;
            not_busy(ctx, h)?;
            let to = kubelet_back_to(ctx, u);
            let current = ctx.obs.kubelet_version(name);
            if current.is_none_or(|k| k <= to) {
                return Err(Refusal::NothingToRollBack(name.clone()));
            }
            if !crate::machine::kubelet_in_place(ctx.obs, h)
                && h.administrative != AdminState::Locked
            {
                return Err(Refusal::KubeletHostState {
                    host: name.clone(),
                    need: "locked and online",
                    state: crate::machine::host_state(h),
                });
            }
            w.set_host(name, Some(HS::UpgradingKubelet), Some(Some(to)));
            w.op(crate::machine::kubelet_op(ctx, name, to));
        }
        RollbackStep::ControlPlane { host: name } => {
            let h = host(ctx, name)?;
            not_busy(ctx, h)?;
            if let Some(other) = control_plane_in_flight(ctx) {
                return Err(Refusal::ControlPlaneInFlight {
                    host: name.clone(),
                    other: other.into(),
                });
            }
            let top = cp_top(ctx.obs);
            let cp = ctx.obs.control_plane_version(name);
            if cp.is_none_or(|v| v <= u.from_version) || cp != top {
                return Err(Refusal::NothingToRollBack(name.clone()));
            }
            let cp = cp.expect("checked above");
            let to = ladder(ctx, u)
                .into_iter()
                .rev()
                .find(|v| *v < cp)
                .unwrap_or(u.from_version);
            // A kubelet is never newer than an API server.
            let ahead: Vec<String> = ctx
                .obs
                .nodes
                .iter()
                .filter(|n| n.kubelet_version > to)
                .map(|n| n.name.clone())
                .collect();
            if !ahead.is_empty() {
                return Err(Refusal::KubeletsAhead { to, hosts: ahead });
            }
            if let Some((peer, why)) = control_plane_peer_down(ctx, name) {
                return Err(Refusal::PeerControlPlaneDown {
                    host: name.clone(),
                    peer,
                    why,
                });
            }
            w.set_host(name, Some(HS::UpgradingControlPlane), Some(Some(to)));
            w.op(Operation::RestoreControlPlane {
                host: name.clone(),
                version: to,
            });
        }
        RollbackStep::Networking => {
            if control_plane_in_flight(ctx).is_some() || cp_top(ctx.obs) > Some(u.from_version) {
                return Err(Refusal::NothingToRollBack("networking".into()));
            }
            w.op(crate::machine::networking_op(ctx, u.from_version));
        }
        RollbackStep::Uncordon { host: name } => {
            host(ctx, name)?;
            if cordoned(ctx.obs) != Some(name.as_str()) {
                return Err(Refusal::NothingToRollBack(name.clone()));
            }
            w.op(Operation::Uncordon { host: name.clone() });
        }
        RollbackStep::Finish => {
            if !ctx.snap.operations.is_empty()
                || anything_moved(ctx.obs, u)
                || cordoned(ctx.obs).is_some()
            {
                return Err(Refusal::NotBackYet);
            }
            w.set_state(S::UpgradeAborted);
            for row in &ctx.snap.hosts {
                if row.status.is_some() || row.target_version != Some(u.from_version) {
                    w.set_host(&row.hostname, None, Some(Some(u.from_version)));
                }
            }
        }
        RollbackStep::Stuck { reason } => {
            w.event(EventKind::State, "kube_upgrade", format!("abort: {reason}"));
            w.set_state(S::UpgradeAbortingFailed);
        }
    }
    Ok(())
}

/// What the way back does next. Reads only the snapshot and the observation (and the pods,
/// to judge which workers may go down together).
pub fn next(ctx: &Ctx<'_>) -> Next {
    let at = StepAt {
        stage: StageKey::Complete,
        step: "kube-upgrade-abort",
    };
    let Some(u) = ctx
        .snap
        .upgrade
        .as_ref()
        .filter(|u| u.state == S::UpgradeAborting)
    else {
        return Next::Done;
    };
    let wait = |why: String| Next::Wait {
        at: at.clone(),
        why,
    };
    let run = |step: RollbackStep| Next::Run {
        key: None,
        cmd: Command::Rollback(step),
        at: at.clone(),
    };
    let action = |cmd: Command| Next::Run {
        key: None,
        cmd,
        at: at.clone(),
    };
    // A cluster-wide step in flight (a control plane going up or down): wait for it.
    if let Some(o) =
        ctx.snap.operations.iter().find(|o| {
            o.op.host().is_none() || matches!(o.op, Operation::UpgradeControlPlane { .. })
        })
    {
        return wait(format!("{} runs", o.op));
    }
    let to = kubelet_back_to(ctx, u);
    // Kubelets first: the workers (several at once), then the controllers one at a time.
    let mut workers: Vec<&HostInfo> = ctx
        .obs
        .hosts
        .iter()
        .filter(|h| h.personality == Personality::Worker)
        .collect();
    workers.sort_by_key(|h| h.id);
    let mut controllers: Vec<&HostInfo> = ctx.obs.controllers().collect();
    controllers.sort_by_key(|h| (h.active_controller, h.id));
    // Every host taken down (by kup, a strategy or by hand: at the start every host was in
    // service) is finished first — its kubelet back, then into service again — before any
    // other goes down: they hold the pods' room and the controllers' quorum.
    let mut waiting = None;
    let mut in_cycle = 0;
    for h in ctx.obs.hosts.iter() {
        match host_back(ctx, h, to) {
            HostBack::Done | HostBack::Candidate => {}
            HostBack::Busy(why) => {
                in_cycle += usize::from(h.personality == Personality::Worker);
                waiting.get_or_insert(why);
            }
            HostBack::Do(cmd) => return action(cmd),
        }
    }
    // New workers go down while the number in their cycle is below the cap and the batch
    // (with those still going down) stays safe.
    let candidates: Vec<&HostInfo> = workers
        .iter()
        .copied()
        .filter(|h| matches!(host_back(ctx, h, to), HostBack::Candidate))
        .collect();
    if in_cycle < MAX_PARALLEL_WORKERS && !candidates.is_empty() {
        match next_worker_to_lock(ctx, &candidates) {
            Ok(Some(name)) => {
                return action(Command::Lock {
                    host: name,
                    force: false,
                });
            }
            Ok(None) => {}
            Err(reason) if waiting.is_none() => return run(RollbackStep::Stuck { reason }),
            Err(_) => {}
        }
    }
    if let Some(why) = waiting {
        return wait(why);
    }
    if !candidates.is_empty() {
        return wait("workers wait for the ones going down".into());
    }
    for h in &controllers {
        match host_back(ctx, h, to) {
            HostBack::Done => continue,
            HostBack::Busy(why) => return wait(why),
            HostBack::Do(cmd) => return action(cmd),
            // One controller at a time, each once every other one serves again.
            HostBack::Candidate
                if !crate::machine::kubelet_in_place(ctx.obs, h)
                    && ctx
                        .obs
                        .controllers()
                        .any(|c| c.hostname != h.hostname && !c.in_service()) =>
            {
                return wait("a controller is not in service yet".into());
            }
            HostBack::Candidate if crate::machine::kubelet_in_place(ctx.obs, h) => {
                return run(RollbackStep::Kubelet {
                    host: h.hostname.clone(),
                });
            }
            HostBack::Candidate if h.active_controller => {
                return action(Command::Swact {
                    host: h.hostname.clone(),
                    force: false,
                });
            }
            HostBack::Candidate => {
                return action(Command::Lock {
                    host: h.hostname.clone(),
                    force: false,
                });
            }
        }
    }
    // Then the control planes: the highest version first, one host at a time, the last ones
    // up first.
    if let Some(top) = cp_top(ctx.obs).filter(|t| *t > u.from_version) {
        // The reverse of the way up: the one that went up first comes down last.
        let first = crate::plan::first_control_plane(ctx.obs, top).map(|h| h.hostname.clone());
        let host = controllers
            .iter()
            .filter(|c| ctx.obs.control_plane_version(&c.hostname) == Some(top))
            .max_by_key(|c| (Some(&c.hostname) != first.as_ref(), c.id));
        if let Some(h) = host {
            return run(RollbackStep::ControlPlane {
                host: h.hostname.clone(),
            });
        }
    }
    if ctx.obs.networking_version > Some(u.from_version) {
        return run(RollbackStep::Networking);
    }
    // A host cordoned for the upgrade (aio-simplex) takes its pods back.
    if let Some(h) = cordoned(ctx.obs) {
        return run(RollbackStep::Uncordon {
            host: h.to_string(),
        });
    }
    if !ctx.snap.operations.is_empty() {
        return wait("the last steps end".into());
    }
    run(RollbackStep::Finish)
}

enum HostBack {
    /// At the version it goes back to, unlocked, nothing running.
    Done,
    /// Something of kup's runs on it.
    Busy(String),
    /// The next command of its cycle.
    Do(Command),
    /// Still to go down (lock, or on aio-simplex the kubelet in place).
    Candidate,
}

/// Where a host stands on its way back.
fn host_back(ctx: &Ctx<'_>, h: &HostInfo, to: KubeVersion) -> HostBack {
    let name = &h.hostname;
    if let Some(o) = ctx
        .snap
        .operations
        .iter()
        .find(|o| o.op.host() == Some(name))
    {
        return HostBack::Busy(format!("{} runs", o.op));
    }
    if h.task.is_some() {
        return HostBack::Busy(format!("{name} is busy"));
    }
    let above = ctx.obs.kubelet_version(name).is_some_and(|k| k > to);
    let locked = h.administrative == AdminState::Locked;
    match (above, locked) {
        (true, true) => HostBack::Do(Command::Rollback(RollbackStep::Kubelet {
            host: name.clone(),
        })),
        (true, false) => HostBack::Candidate,
        // Locked during the upgrade (every host was in service at its start): back into
        // service.
        (false, true) => HostBack::Do(Command::Unlock {
            host: name.clone(),
            force: false,
        }),
        (false, false) => HostBack::Done,
    }
}

/// The first candidate worker that can go down with the ones going down now; `Err` when the
/// first one cannot go down even alone (the way back cannot go on safely).
fn next_worker_to_lock(ctx: &Ctx<'_>, candidates: &[&HostInfo]) -> Result<Option<String>, String> {
    let Some(workloads) = ctx.workloads else {
        return Ok(candidates.first().map(|h| h.hostname.clone()));
    };
    let mut an = Analyzer::new(ctx.obs, workloads);
    let mut eval = BatchEval::new();
    let going = locks_in_flight(ctx);
    for h in &going {
        eval.add(&an, h);
    }
    let mut first_unsafe = None;
    for h in candidates {
        eval.add(&an, &h.hostname);
        let verdict = eval.evaluate(&mut an);
        if verdict.verdict != Verdict::Unsafe {
            return Ok(Some(h.hostname.clone()));
        }
        eval.pop();
        first_unsafe.get_or_insert_with(|| {
            let worst = verdict.unsafe_reasons();
            format!(
                "{} cannot go down safely to have its kubelet back: {}",
                h.hostname,
                worst.join("; ")
            )
        });
    }
    // Nothing going down and no candidate safe even alone: the way back is stuck.
    match first_unsafe {
        Some(why) if going.is_empty() => Err(why),
        _ => Ok(None),
    }
}
