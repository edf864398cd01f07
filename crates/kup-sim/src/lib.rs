//! The simulated cluster: kup's embedded default and the cluster every test runs against.
//!
//! Operations take realistic time (scaled by a time-scale factor; 0 = instant) on tokio's
//! clock, so tests can run them on paused virtual time, or on a simulated clock of their own
//! for measuring schedules (`clock.rs`). All randomness comes from the seed: fault
//! probabilities from one generator drawn when an operation starts, in command order; each
//! step's duration jitter from the step itself. A run is repeatable for a given file and seed.

mod clock;
pub mod generate;
pub mod inventory;
pub mod model;
mod state_file;
pub mod twin;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kup_driver::{Driver, DriverError};
use kup_types::{Observation, OpStatus, Operation, StepKind, VersionMeta, Workloads};
use tokio::sync::watch;

pub use clock::OpSpan;
pub use inventory::{FaultMode, Inventory, InventoryError};
pub use model::SimModel;
pub use state_file::StateError;

/// A fault to inject: `step` on `host` (or anywhere) fails once, always, the first `times`
/// runs, with a probability, or hangs.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub step: StepKind,
    pub host: Option<String>,
    pub mode: FaultMode,
    pub probability: f64,
    pub times: u32,
    fired: u32,
}

/// What a fault does to a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    None,
    Fail,
    Hang,
}

impl Fault {
    pub fn new(step: StepKind, host: Option<&str>, mode: FaultMode, probability: f64) -> Self {
        Self {
            step,
            host: host.map(str::to_string),
            mode,
            probability,
            times: 1,
            fired: 0,
        }
    }
    pub fn once(step: StepKind, host: Option<&str>) -> Self {
        Self::new(step, host, FaultMode::Once, 1.0)
    }
    pub fn always(step: StepKind, host: Option<&str>) -> Self {
        Self::new(step, host, FaultMode::Always, 1.0)
    }
    /// The first `n` runs fail.
    pub fn times(step: StepKind, host: Option<&str>, n: u32) -> Self {
        Self {
            times: n,
            ..Self::new(step, host, FaultMode::Times, 1.0)
        }
    }
    pub fn hang(step: StepKind, host: Option<&str>) -> Self {
        Self::new(step, host, FaultMode::Hang, 1.0)
    }

    fn matches(&self, op: &Operation) -> bool {
        self.step == op.kind() && self.host.as_deref().is_none_or(|h| op.host() == Some(h))
    }
}

/// SplitMix64: tiny, fast and good enough for simulation choices.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct State {
    model: SimModel,
    /// The status of each run, the run each operation id belongs to, and the run of each
    /// operation in progress (a second id for it attaches to the same run).
    runs: Vec<OpStatus>,
    run_of_id: HashMap<String, usize>,
    running: HashMap<Operation, usize>,
    faults: Vec<Fault>,
    rng: Rng,
    seed: u64,
    durations: BTreeMap<StepKind, f64>,
    time_scale: f64,
    state_file: Option<state_file::StateFile>,
    /// Set when the simulation process is considered dead: nothing changes any more.
    halted: bool,
    /// Jobs and bare pods that end by themselves: when, and which (namespace, name).
    completions: Vec<(tokio::time::Instant, String, String)>,
    /// Set when operations run on simulated time ([`SimCluster::with_virtual_clock`]).
    clock: Option<clock::VirtualClock>,
}

impl State {
    /// Whether the simulation runs and can keep its state.
    fn check(&mut self) -> Result<(), DriverError> {
        if self.halted {
            return Err(DriverError::Unreachable(
                "the simulation has stopped".into(),
            ));
        }
        if let Some(f) = &mut self.state_file {
            f.check(&mut self.model).map_err(DriverError::Unreachable)?;
        }
        Ok(())
    }

    /// Ends the Jobs and bare pods whose time has come. Looked at whenever the cluster is
    /// read, so an ended Job is never seen running.
    fn complete_due(&mut self) -> bool {
        if self.halted || self.completions.is_empty() {
            return false;
        }
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.completions)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.completions = later;
        for (_, ns, name) in &due {
            self.model.complete_workload(ns, name);
        }
        if !due.is_empty() {
            self.persist();
        }
        !due.is_empty()
    }

    /// A number in [0, 1) of the seed and the step alone.
    fn jitter(&self, op: &Operation) -> f64 {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        self.seed.hash(&mut h);
        op.to_string().hash(&mut h);
        Rng(h.finish()).next_f64()
    }

    /// Ends run `run` of `op`: failed if a fault said so or the host is no longer in a state
    /// where it could succeed. False when it no longer runs (cancelled, or the process died).
    fn finish(&mut self, run: usize, op: &Operation, effect: Effect) -> bool {
        if self.halted || self.runs[run] != OpStatus::Running {
            return false;
        }
        let status = if effect == Effect::Fail {
            OpStatus::Failed(format!("simulated fault injected into {}", op.kind()))
        } else if let Err(reason) = precondition(&self.model, op, false) {
            OpStatus::Failed(format!("interrupted: {reason}"))
        } else {
            OpStatus::Succeeded
        };
        self.model
            .end(op, status == OpStatus::Succeeded, Timestamp::now());
        self.runs[run] = status;
        self.running.remove(op);
        self.persist();
        true
    }

    /// Moves the simulated clock to what is due next, if the driver has settled, and makes it
    /// happen. False when nothing happened.
    fn advance_clock(&mut self) -> bool {
        if self.halted {
            return false;
        }
        let Some(due) = self.clock.as_mut().and_then(clock::VirtualClock::advance) else {
            return false;
        };
        match due {
            clock::Due::Run {
                run,
                op,
                effect,
                start,
            } => {
                if self.finish(run, &op, effect) {
                    let ok = self.runs[run] == OpStatus::Succeeded;
                    if let Some(c) = &mut self.clock {
                        c.record(op, start, ok);
                    }
                }
            }
            clock::Due::Workload { namespace, name } => {
                self.model.complete_workload(&namespace, &name);
                self.persist();
            }
        }
        true
    }

    /// A change from outside: a simulated clock waits for the driver to settle again.
    fn touch(&mut self) {
        if let Some(c) = &mut self.clock {
            c.touch();
        }
    }

    /// Records what changed (the journal of the state file, if there is one).
    fn persist(&mut self) {
        if self.halted {
            return;
        }
        match &mut self.state_file {
            Some(f) => f.record(&mut self.model),
            None => self.model.forget_changes(),
        }
    }
}

/// A simulated cluster, shared by clones.
#[derive(Clone)]
pub struct SimCluster {
    state: Arc<Mutex<State>>,
    changed: Arc<watch::Sender<u64>>,
    catalog: Vec<VersionMeta>,
}

impl SimCluster {
    /// A cluster as the inventory describes it. `time_scale` multiplies every duration.
    pub fn new(inv: &Inventory, time_scale: f64) -> SimCluster {
        Self::build(
            inv,
            time_scale,
            SimModel::from_inventory(inv, Timestamp::now()),
            None,
        )
    }

    /// Like `new`, but every operation takes its realistic duration (jitter included) on a
    /// simulated clock that moves to the next operation's end once nothing has been started,
    /// cancelled or changed for `settle` of wall time (see `clock.rs`). For measuring a
    /// schedule's makespan: [`SimCluster::elapsed`] and [`SimCluster::spans`] read it.
    /// Needs a tokio runtime (the clock is a task of its own, ending with the cluster).
    pub fn with_virtual_clock(inv: &Inventory, settle: Duration) -> SimCluster {
        let sim = Self::new(inv, 1.0);
        {
            let mut st = sim.lock();
            let mut clock = clock::VirtualClock::new(settle);
            st.completions.clear();
            for w in &inv.workloads {
                if let Some(secs) = &w.completes_after {
                    clock.schedule(
                        Duration::try_from_secs_f64(secs.value.max(0.0)).unwrap_or(Duration::MAX),
                        clock::Due::Workload {
                            namespace: w.namespace.clone(),
                            name: w.name.value.clone(),
                        },
                    );
                }
            }
            st.clock = Some(clock);
        }
        let state = Arc::downgrade(&sim.state);
        let changed = Arc::clone(&sim.changed);
        let tick = (settle / 4).max(Duration::from_micros(200));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(state) = state.upgrade() else {
                    return; // The cluster is gone.
                };
                let moved = state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .advance_clock();
                if moved {
                    changed.send_modify(|n| *n += 1);
                }
            }
        });
        sim
    }

    /// The simulated time since the start, on a cluster with a simulated clock.
    pub fn elapsed(&self) -> Option<Duration> {
        self.lock().clock.as_ref().map(clock::VirtualClock::now)
    }

    /// The operations that ended so far on the simulated clock, in the order they ended.
    pub fn spans(&self) -> Vec<OpSpan> {
        self.lock()
            .clock
            .as_ref()
            .map(|c| c.spans().to_vec())
            .unwrap_or_default()
    }

    /// Like `new`, but the cluster's state lives in `path` (and its journal beside it): loaded
    /// from it when it exists, and every change recorded, so the cluster outlives the process
    /// that simulates it. Operations that were running when the previous process died did not
    /// finish.
    pub fn with_state_file(
        inv: &Inventory,
        time_scale: f64,
        path: PathBuf,
    ) -> Result<SimCluster, StateError> {
        let (model, file) =
            state_file::StateFile::open(path, || SimModel::from_inventory(inv, Timestamp::now()))?;
        Ok(Self::build(inv, time_scale, model, Some(file)))
    }

    fn build(
        inv: &Inventory,
        time_scale: f64,
        model: SimModel,
        state_file: Option<state_file::StateFile>,
    ) -> Self {
        let faults = inv
            .faults
            .iter()
            .map(|f| Fault {
                times: f.times.as_ref().map_or(1, |t| t.value),
                ..Fault::new(
                    f.step,
                    f.host.as_ref().map(|h| h.value.as_str()),
                    f.mode.value,
                    f.probability.as_ref().map_or(1.0, |p| p.value),
                )
            })
            .collect();
        let durations = StepKind::ALL
            .iter()
            .map(|k| {
                (
                    *k,
                    inv.durations
                        .get(k)
                        .copied()
                        .unwrap_or_else(|| inventory::default_duration(*k)),
                )
            })
            .collect();
        SimCluster {
            state: Arc::new(Mutex::new(State {
                model,
                runs: Vec::new(),
                run_of_id: HashMap::new(),
                running: HashMap::new(),
                faults,
                rng: Rng(inv.seed ^ 0x6b75_7000),
                seed: inv.seed,
                durations,
                time_scale: time_scale.max(0.0),
                state_file,
                halted: false,
                clock: None,
                completions: inv
                    .workloads
                    .iter()
                    .filter_map(|w| {
                        let secs = w.completes_after.as_ref()?.value;
                        Some((
                            deadline_after(secs * time_scale.max(0.0)),
                            w.namespace.clone(),
                            w.name.value.clone(),
                        ))
                    })
                    .collect(),
            })),
            changed: Arc::new(watch::channel(0).0),
            catalog: inv.catalog(),
        }
    }

    /// The simulation's state. Nothing panics while holding it, and a panic elsewhere does not
    /// make it unusable (no poisoning): every change leaves the model whole.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, with the Jobs and pods that have ended by now gone.
    fn current(&self) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        if st.complete_due() {
            self.changed.send_modify(|n| *n += 1);
        }
        st
    }

    /// The version catalog the cluster file declares.
    pub fn catalog(&self) -> Vec<VersionMeta> {
        self.catalog.clone()
    }

    /// Stops the simulation as if its process died: running operations never finish and the
    /// state file is no longer written.
    pub fn halt(&self) {
        self.lock().halted = true;
    }

    /// Changes the time scale for operations started from now on.
    pub fn set_time_scale(&self, time_scale: f64) {
        self.lock().time_scale = time_scale.max(0.0);
    }

    pub fn inject_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Changes the cluster directly, as something outside kup would (tests use this to set
    /// up preconditions: a locked host, an alarm, a failing pod).
    pub fn mutate<R>(&self, f: impl FnOnce(&mut SimModel) -> R) -> R {
        let mut guard = self.lock();
        guard.touch();
        let r = f(&mut guard.model);
        // Anything may have changed: derive everything again and save it whole.
        guard.model.rebuild();
        let st = &mut *guard;
        if let (Some(file), false) = (&mut st.state_file, st.halted) {
            file.snapshot(&mut st.model);
        }
        drop(guard);
        self.changed.send_modify(|n| *n += 1);
        r
    }

    /// Reads the cluster without changing it (nothing copied, unlike [`SimCluster::model`]).
    pub fn inspect<R>(&self, f: impl FnOnce(&SimModel) -> R) -> R {
        f(&self.current().model)
    }

    pub fn model(&self) -> SimModel {
        self.lock().model.clone()
    }

    fn fault_fires(st: &mut State, op: &Operation) -> Effect {
        let mut effect = Effect::None;
        for i in 0..st.faults.len() {
            if !st.faults[i].matches(op) {
                continue;
            }
            let f = &mut st.faults[i];
            let hit = match f.mode {
                FaultMode::Once => f.fired < 1,
                FaultMode::Times => f.fired < f.times,
                FaultMode::Always | FaultMode::Hang => true,
                FaultMode::Probability => {
                    let p = f.probability;
                    st.rng.next_f64() < p
                }
            };
            let f = &mut st.faults[i];
            if hit {
                f.fired += 1;
                effect = match (effect, f.mode) {
                    (Effect::Hang, _) | (_, FaultMode::Hang) => Effect::Hang,
                    _ => Effect::Fail,
                };
            }
        }
        effect
    }
}

/// The end of a step that takes `secs`. Inputs are bounded where they are read (the cluster
/// file, `--time-scale`); this saturates anything else rather than panic.
fn deadline_after(secs: f64) -> tokio::time::Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let d = Duration::try_from_secs_f64(secs.max(0.0))
        .unwrap_or(FAR)
        .min(FAR);
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(3600)))
        .unwrap_or(now)
}

/// What the real cluster would not let happen: an operation on a host in the wrong state
/// fails, whatever kup believes (so a bug in kup's checks shows up as a failed step).
fn precondition(model: &SimModel, op: &Operation, starting: bool) -> Result<(), String> {
    use kup_types::{AdminState, Personality, SystemType};
    let host = |name: &str| model.host(name).ok_or_else(|| format!("no host {name}"));
    match op {
        Operation::UpgradeControlPlane { host: name, .. } => {
            let h = host(name)?;
            if h.administrative != AdminState::Unlocked || (starting && h.task.is_some()) {
                return Err(format!("{name} is not an unlocked, idle controller"));
            }
        }
        Operation::RestoreControlPlane {
            host: name,
            version,
        } => {
            let h = host(name)?;
            if h.administrative != AdminState::Unlocked || (starting && h.task.is_some()) {
                return Err(format!("{name} is not an unlocked, idle controller"));
            }
            if !model.has_backup(*version) {
                return Err(format!(
                    "no backup of the control plane at {version} to restore"
                ));
            }
        }
        Operation::UpgradeKubelet { host: name, .. } => {
            let h = host(name)?;
            // In place on aio-simplex, and on a sole controller (as kup upgrades it).
            let sole_controller = h.personality == Personality::Controller
                && model
                    .hosts
                    .iter()
                    .filter(|x| x.personality == Personality::Controller)
                    .count()
                    == 1;
            let simplex = model.system_type == SystemType::AioSimplex || sole_controller;
            if !simplex && h.administrative != AdminState::Locked {
                return Err(format!("{name} is not locked"));
            }
            if starting && h.task.is_some() {
                return Err(format!("{name} is busy"));
            }
        }
        Operation::Lock { host: name, .. } if starting && host(name)?.active => {
            return Err(format!("{name} is the active controller"));
        }
        Operation::Swact { host: name } if starting => {
            let standby_ready = model.hosts.iter().any(|h| {
                h.personality == Personality::Controller
                    && h.name != *name
                    && h.administrative == AdminState::Unlocked
                    && h.task.is_none()
            });
            if !standby_ready {
                return Err("no unlocked, idle standby controller".into());
            }
        }
        _ => {}
    }
    Ok(())
}

#[async_trait]
impl Driver for SimCluster {
    async fn observe(&self) -> Result<Arc<Observation>, DriverError> {
        Ok(self.current().model.observation())
    }

    async fn workloads(&self) -> Result<Arc<Workloads>, DriverError> {
        Ok(self.current().model.workload_view())
    }

    fn with_views(&self, f: &mut dyn FnMut(&Observation, &Workloads)) -> Result<(), DriverError> {
        let st = self.current();
        f(st.model.observation_ref(), st.model.pods());
        Ok(())
    }

    async fn check(&self) -> Result<(), DriverError> {
        self.lock().check()
    }

    async fn start(&self, id: &str, op: &Operation) -> Result<(), DriverError> {
        let (deadline, effect, run) = {
            let mut st = self.lock();
            st.touch();
            if let Some(host) = op.host()
                && st.model.host(host).is_none()
            {
                return Err(DriverError::Rejected {
                    op: op.to_string(),
                    reason: format!("no host {host} in the cluster"),
                });
            }
            if st.run_of_id.contains_key(id) {
                return Ok(()); // Started already under this id.
            }
            if let Some(&run) = st.running.get(op) {
                st.run_of_id.insert(id.to_string(), run);
                return Ok(()); // Attach to the run in progress.
            }
            // A step whose effect could not be kept is not started: like a cluster that
            // cannot be reached.
            st.check()?;
            if let Err(reason) = precondition(&st.model, op, true) {
                return Err(DriverError::Rejected {
                    op: op.to_string(),
                    reason,
                });
            }
            let effect = Self::fault_fires(&mut st, op);
            // +/-10% jitter, the same for the same step in any run of the seed (whatever
            // else ran before it), so schedules compared on one cluster meet the same steps.
            let jitter = 0.9 + 0.2 * st.jitter(op);
            let secs = st.durations[&op.kind()] * st.time_scale * jitter;
            let run = st.runs.len();
            st.runs.push(OpStatus::Running);
            st.run_of_id.insert(id.to_string(), run);
            st.running.insert(op.clone(), run);
            st.model.begin(op);
            st.persist();
            if let Some(clock) = &mut st.clock {
                if effect != Effect::Hang {
                    let start = clock.now();
                    let after = Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX);
                    let (op, effect) = (op.clone(), effect);
                    clock.schedule(
                        after,
                        clock::Due::Run {
                            run,
                            op,
                            effect,
                            start,
                        },
                    );
                }
                return Ok(()); // It ends when the simulated clock reaches its end.
            }
            (deadline_after(secs), effect, run)
        };
        if effect == Effect::Hang {
            return Ok(()); // It never ends.
        }
        let this = self.clone();
        let op = op.clone();
        tokio::spawn(async move {
            // An instant step (time scale 0) need not wait for the timer's next tick.
            if deadline > tokio::time::Instant::now() {
                tokio::time::sleep_until(deadline).await;
            } else {
                tokio::task::yield_now().await;
            }
            if this.lock().finish(run, &op, effect) {
                this.changed.send_modify(|n| *n += 1);
            }
        });
        Ok(())
    }

    /// The cluster file's durations (realistic seconds, before the time scale).
    fn safety_audit(&self) -> Option<kup_types::SafetyAudit> {
        Some(self.lock().model.safety_audit())
    }

    fn time_scale(&self) -> f64 {
        self.lock().time_scale
    }

    fn step_durations(&self) -> std::collections::BTreeMap<StepKind, u64> {
        let st = self.lock();
        st.durations
            .iter()
            .map(|(k, v)| (*k, v.round() as u64))
            .collect()
    }

    async fn cancel(&self, id: &str) -> Result<(), DriverError> {
        let mut st = self.lock();
        let Some(&run) = st.run_of_id.get(id) else {
            return Ok(());
        };
        if st.runs[run] != OpStatus::Running {
            return Ok(());
        }
        st.runs[run] = OpStatus::Failed("cancelled".into());
        if let Some(clock) = &mut st.clock {
            clock.unschedule(run);
        }
        let op = st
            .running
            .iter()
            .find(|(_, r)| **r == run)
            .map(|(op, _)| op.clone());
        if let Some(op) = op {
            st.running.remove(&op);
            st.model.end(&op, false, Timestamp::now());
            st.persist();
        }
        drop(st);
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn status(&self, id: &str) -> Result<OpStatus, DriverError> {
        let st = self.lock();
        Ok(st
            .run_of_id
            .get(id)
            .map_or(OpStatus::NotStarted, |&r| st.runs[r].clone()))
    }

    async fn wait(&self, id: &str, timeout: Duration) -> Result<OpStatus, DriverError> {
        let until = tokio::time::Instant::now() + timeout;
        let mut rx = self.changed.subscribe();
        loop {
            let s = self.status(id).await?;
            if s.is_terminal() || s == OpStatus::NotStarted {
                return Ok(s);
            }
            match tokio::time::timeout_at(until, rx.changed()).await {
                Err(_) => return Ok(s), // Its time is up; the caller decides.
                Ok(Err(_)) => {
                    return Err(DriverError::Unreachable("the simulation stopped".into()));
                }
                Ok(Ok(())) => {}
            }
        }
    }
}
