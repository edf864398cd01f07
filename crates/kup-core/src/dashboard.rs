//! The dashboard's read model: each host as one tile of the grid (the one rule of which
//! state a host is shown in), and the strategy without its host lists.

use rustc_hash::{FxHashMap, FxHashSet};

use kup_types::{
    AdminState, DashboardCluster, HostInfo, HostTile, HostUpgradeStatus, KubeVersion, Observation,
    Personality, Snapshot, StageSummary, StrategyRecord, StrategySummary, StrategyView, TileState,
};

/// How many of a stage's hosts name it on the timeline.
const FIRST_HOSTS: usize = 8;
/// How many hosts of the step in progress the strategy line names.
const ENTITY_NAMES: usize = 20;

/// What a tile's `done` means: at (or past) the upgrade's target; while the upgrade is
/// aborting or aborted, back at its from-version. Without an upgrade row, the target of a
/// strategy that is applying or applied (it outlives the upgrade it completed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Goal {
    pub version: KubeVersion,
    /// The way back of an abort: done is exactly the from-version again.
    pub back: bool,
}

impl Goal {
    fn reached(self, v: KubeVersion) -> bool {
        if self.back {
            v == self.version
        } else {
            v >= self.version
        }
    }
}

pub fn goal(snap: &Snapshot) -> Option<Goal> {
    use kup_types::KubeUpgradeState as U;
    let back = snap.upgrade.as_ref().filter(|u| {
        matches!(
            u.state,
            U::UpgradeAborting | U::UpgradeAbortingFailed | U::UpgradeAborted
        )
    });
    match back {
        Some(u) => Some(Goal {
            version: u.from_version,
            back: true,
        }),
        None => target(snap).map(|version| Goal {
            version,
            back: false,
        }),
    }
}

/// The version the upgrade moves to: the upgrade's target, else that of a strategy that is
/// applying or applied. (While an upgrade is aborting, tiles measure the way back: [`goal`].)
pub fn target(snap: &Snapshot) -> Option<KubeVersion> {
    use kup_types::StrategyState as S;
    match &snap.upgrade {
        Some(u) => Some(u.to_version),
        None => snap
            .strategy
            .as_ref()
            .filter(|s| matches!(s.state, S::Applying | S::Applied))
            .map(|s| s.to_version),
    }
}

/// The worker batch in progress: only while the strategy applies (a failed or aborted one
/// keeps the batch it stopped in, and an abort goes the other way).
fn batch_in_progress(s: &StrategyRecord) -> impl Iterator<Item = &String> {
    s.batch
        .iter()
        .flatten()
        .filter(|_| s.state == kup_types::StrategyState::Applying)
}

/// What the tiles are judged against: built once per answer, so each tile costs a few
/// lookups whatever the size of the cluster.
pub struct Tiles<'a> {
    snap: &'a Snapshot,
    obs: &'a Observation,
    goal: Option<Goal>,
    /// Hosts with a step running, and the step's kind.
    busy: FxHashMap<&'a str, &'static str>,
    batch: FxHashSet<&'a str>,
    skipped: FxHashMap<&'a str, &'a str>,
}

impl<'a> Tiles<'a> {
    pub fn new(snap: &'a Snapshot, obs: &'a Observation) -> Self {
        let busy = snap
            .operations
            .iter()
            .filter_map(|o| Some((o.op.host()?, o.op.kind().as_str())))
            .collect();
        let (batch, skipped) = match &snap.strategy {
            Some(s) => (
                batch_in_progress(s).map(String::as_str).collect(),
                s.skipped
                    .iter()
                    .map(|x| (x.host.as_str(), x.reason.as_str()))
                    .collect(),
            ),
            None => Default::default(),
        };
        Tiles {
            snap,
            obs,
            goal: goal(snap),
            busy,
            batch,
            skipped,
        }
    }

    /// Every host, in the cluster's order (by id).
    pub fn all(&self) -> Vec<HostTile> {
        self.obs.hosts.iter().map(|h| self.tile(h)).collect()
    }

    /// The named hosts the cluster has, in the order asked; unknown names are left out.
    pub fn some(&self, names: &[String]) -> Vec<HostTile> {
        names
            .iter()
            .filter_map(|n| self.obs.host(n))
            .map(|h| self.tile(h))
            .collect()
    }

    pub fn tile(&self, h: &HostInfo) -> HostTile {
        let name = h.hostname.as_str();
        let status = self.snap.host(name).and_then(|r| r.status);
        let cp = (h.personality == Personality::Controller)
            .then(|| self.obs.control_plane_version(name));
        let kubelet = h
            .personality
            .has_kubelet()
            .then(|| self.obs.kubelet_version(name));
        let (state, reason) = self.state(h, status, cp, kubelet);
        let show = |v: Option<Option<KubeVersion>>| match v {
            None => "N/A".to_string(),
            Some(None) => "unknown".to_string(),
            Some(Some(v)) => v.to_string(),
        };
        HostTile {
            hostname: h.hostname.clone(),
            personality: h.personality,
            state,
            reason,
            status,
            administrative: h.administrative,
            availability: h.availability,
            control_plane_version: show(cp),
            kubelet_version: show(kubelet),
        }
    }

    /// The rule, first match wins: a failed step; a step running (or the host in the batch in
    /// progress, not yet done); left out by the strategy (and not done); no Kubernetes on it;
    /// locked by hand; no upgrade; at the goal everywhere ([`goal`]); else waiting. `cp` and `kubelet` are `None` where the host
    /// has none, `Some(None)` where it was not observed.
    fn state(
        &self,
        h: &HostInfo,
        status: Option<HostUpgradeStatus>,
        cp: Option<Option<KubeVersion>>,
        kubelet: Option<Option<KubeVersion>>,
    ) -> (TileState, Option<String>) {
        use HostUpgradeStatus as S;
        let name = h.hostname.as_str();
        if let Some(s) = status.filter(|s| s.as_str().ends_with("-failed")) {
            return (TileState::Failed, Some(s.to_string()));
        }
        if let Some(kind) = self.busy.get(name) {
            return (TileState::InFlight, Some((*kind).to_string()));
        }
        if let Some(task) = &h.task {
            return (TileState::InFlight, Some(task.clone()));
        }
        if let Some(s) =
            status.filter(|s| matches!(s, S::UpgradingControlPlane | S::UpgradingKubelet))
        {
            return (TileState::InFlight, Some(s.to_string()));
        }
        let at_goal = |v: Option<Option<KubeVersion>>| match (v, self.goal) {
            (None, _) => true,
            (Some(Some(v)), Some(g)) => g.reached(v),
            (Some(None), _) | (_, None) => false,
        };
        let done = self.goal.is_some() && at_goal(cp) && at_goal(kubelet);
        if self.batch.contains(name) && !done {
            return (
                TileState::InFlight,
                Some("in the worker batch being upgraded".into()),
            );
        }
        if let Some(reason) = self.skipped.get(name).filter(|_| !done) {
            return (TileState::Skipped, Some((*reason).to_string()));
        }
        if cp.is_none() && kubelet.is_none() {
            return (TileState::Idle, Some("runs no Kubernetes".into()));
        }
        if h.administrative == AdminState::Locked {
            return (TileState::Locked, None);
        }
        match (self.goal, done) {
            (None, _) => (TileState::Idle, None),
            (Some(_), true) => (TileState::Done, None),
            (Some(_), false) => (TileState::Waiting, None),
        }
    }
}

/// The line at the top: the running version or the transition, the upgrade's state.
pub fn cluster(snap: &Snapshot, obs: &Observation) -> DashboardCluster {
    let info = crate::views::info_versions(snap, obs);
    DashboardCluster {
        version: info.0,
        from_version: info.1,
        to_version: info.2,
        upgrade_state: snap.upgrade.as_ref().map(|u| u.state),
        target: target(snap),
        host_count: u32::try_from(obs.hosts.len()).unwrap_or(u32::MAX),
    }
}

/// The strategy, its progress and the stages of the phase the timeline shows.
pub fn strategy(s: &std::sync::Arc<StrategyRecord>) -> StrategySummary {
    let view = StrategyView::from(s.clone());
    let phase = s.current_phase();
    // The timeline is the apply phase's until an abort has stages of its own.
    let shown = if phase.name == s.abort_phase.name && !s.abort_phase.stages.is_empty() {
        &s.abort_phase
    } else {
        &s.apply_phase
    };
    StrategySummary {
        uuid: s.uuid.clone(),
        to_version: s.to_version,
        state: s.state,
        mode: s.mode,
        partial_ok: s.partial_ok,
        max_parallel_worker_hosts: s.max_parallel_worker_hosts,
        phase: view.current.phase,
        completion_percentage: view.current.phase_completion_percentage,
        stage_name: view.current.stage_name,
        step_name: view.current.step_name,
        batch: batch_in_progress(s).cloned().collect(),
        entity_names: view
            .current
            .entity_names
            .into_iter()
            .take(ENTITY_NAMES)
            .collect(),
        result: phase.result,
        reason: phase.reason.clone(),
        skipped: u32::try_from(s.skipped.len()).unwrap_or(u32::MAX),
        predicted_seconds: s.predicted_seconds,
        lower_bound_seconds: s.lower_bound_seconds,
        start: s.apply_phase.start,
        end: phase.end.or(s.apply_phase.end),
        timeline_phase: shown.name.clone(),
        stages: shown
            .stages
            .iter()
            .map(|st| StageSummary {
                name: st.name.clone(),
                version: st.version,
                host_count: u32::try_from(st.hosts.len()).unwrap_or(u32::MAX),
                first_hosts: st.hosts.iter().take(FIRST_HOSTS).cloned().collect(),
                result: st.result,
                reason: st.reason.clone(),
                predicted_seconds: st.predicted_seconds,
                start: st.start,
                end: st.end,
            })
            .collect(),
    }
}

/// What locking `host` alone would do to the workloads, and its readiness for `to`: what the
/// dashboard shows before it offers to lock a host, the same analysis the lock itself runs.
pub fn host_findings(
    obs: &Observation,
    workloads: &kup_types::Workloads,
    snap: &Snapshot,
    catalog: &crate::Catalog,
    host: &HostInfo,
    to: Option<KubeVersion>,
) -> kup_types::HostFindings {
    let safety = crate::safety::analyze_host(obs, workloads, &host.hostname);
    let readiness = to.map(|to| {
        let missing = crate::patches::missing_on_host(snap, host, to, catalog.get(to));
        crate::safety::readiness(
            obs,
            &host.hostname,
            crate::safety::DEFAULT_MIN_FREE_DISK_GIB,
            &missing,
        )
    });
    kup_types::HostFindings {
        hostname: host.hostname.clone(),
        roles: safety.roles,
        verdict: safety.verdict.as_str().to_string(),
        findings: safety
            .findings
            .into_iter()
            .map(|f| kup_types::FindingView {
                verdict: f.verdict.as_str().to_string(),
                subject: f.subject,
                reason: f.reason,
            })
            .collect(),
        target: to,
        ready: readiness.as_ref().is_none_or(|r| r.ready),
        problems: readiness.map(|r| r.problems).unwrap_or_default(),
    }
}
