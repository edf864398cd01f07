//! The upgrade strategy: what kup's runner was asked to do (StarlingX VIM's
//! `kube-upgrade-strategy`, and Kismatic's `upgrade online|offline`), its phases, stages and
//! steps as shown to the operator, and where it stands. Stored as one record; the cluster and
//! the upgrade row say what is actually done, so the record never has to be trusted for that.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AlarmRestrictions, ApplyType, KubeVersion, StepResult, StrategyState, UpgradeMode};

/// The largest worker batch a strategy accepts (StarlingX's VIM stops at 10).
pub const MAX_PARALLEL_WORKER_HOSTS: u32 = 1000;
/// The worker batch cap when none is given.
pub const DEFAULT_MAX_PARALLEL_WORKER_HOSTS: u32 = 10;

/// What `kube-upgrade-strategy create` (and `upgrade online|offline`) ask for. VIM's
/// dash-style keys are accepted too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategyCreate {
    /// The target version (`v1.16.2`, `1.16.2` or `V1.16.2`).
    #[serde(alias = "to-version")]
    pub to_version: String,
    /// `serial` (one worker at a time), `parallel` (batches) or `ignore` (stop before the
    /// workers). Default `parallel`.
    #[serde(default, alias = "worker-apply-type")]
    pub worker_apply_type: Option<ApplyType>,
    /// The largest worker batch, 1 to 1000. Default 10.
    #[serde(default, alias = "max-parallel-worker-hosts")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_parallel_worker_hosts: Option<u32>,
    /// `strict` (default), `relaxed` or `permissive`.
    #[serde(default, alias = "alarm-restrictions")]
    pub alarm_restrictions: Option<AlarmRestrictions>,
    /// `online` (default: workloads judged before each batch) or `offline`.
    #[serde(default)]
    pub mode: Option<UpgradeMode>,
    /// Skip the hosts that are unsafe or unready instead of stopping, and report them.
    #[serde(default, alias = "partial-ok")]
    pub partial_ok: bool,
    /// VIM's: only `serial` (controllers are always taken one at a time).
    #[serde(
        default,
        alias = "controller-apply-type",
        skip_serializing_if = "Option::is_none"
    )]
    pub controller_apply_type: Option<ApplyType>,
    /// VIM's: accepted and without effect (storage hosts run no Kubernetes).
    #[serde(
        default,
        alias = "storage-apply-type",
        skip_serializing_if = "Option::is_none"
    )]
    pub storage_apply_type: Option<ApplyType>,
    /// VIM's: `stop-start` or `migrate`; accepted and without effect (kup drains pods, it has
    /// no instances to move).
    #[serde(
        default,
        alias = "default-instance-action",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_instance_action: Option<String>,
}

/// `POST /v1/kube_upgrade_strategy/actions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategyActionRequest {
    /// `apply-all` or `abort`.
    pub action: String,
    /// With `abort`: once the steps in flight have ended, take the upgrade back to its
    /// from-version (`kube-upgrade-abort`).
    #[serde(default)]
    pub rollback: bool,
}

/// An upgrade strategy, as stored and as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StrategyRecord {
    pub uuid: String,
    pub to_version: KubeVersion,
    /// Always `serial`: one controller at a time.
    pub controller_apply_type: ApplyType,
    /// Always `ignore`: storage hosts run no Kubernetes.
    pub storage_apply_type: ApplyType,
    pub worker_apply_type: ApplyType,
    pub max_parallel_worker_hosts: u32,
    pub alarm_restrictions: AlarmRestrictions,
    pub mode: UpgradeMode,
    pub partial_ok: bool,
    /// Aborted with `--rollback`: the way back begins once the steps in flight have ended.
    #[serde(default)]
    pub rollback_on_abort: bool,
    pub state: StrategyState,
    pub build_phase: Phase,
    pub apply_phase: Phase,
    pub abort_phase: Phase,
    /// The worker batch being upgraded: chosen, and judged on the live cluster, just before it
    /// starts; kept until every host of it is done.
    pub batch: Option<Vec<String>>,
    /// Hosts left out (`--partial-ok`), with why.
    pub skipped: Vec<SkippedHost>,
    /// The plan's prediction of the apply phase, in seconds (at the time scale of the cluster).
    pub predicted_seconds: u64,
    /// The plan's lower bound of any safe schedule, in seconds.
    pub lower_bound_seconds: u64,
    #[serde(with = "crate::time::serde_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<Timestamp>,
}

/// A host a strategy left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SkippedHost {
    pub host: String,
    pub reason: String,
}

/// A phase (`build`, `apply`, `abort`): stages run one after the other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = StrategyPhase)]
pub struct Phase {
    pub name: String,
    // Shared between the records a step leaves behind: recording a step copies the stage it
    // changes, not the hundreds of others (at 5,000 workers a copy of every stage per step
    // was most of the engine's work).
    #[schema(value_type = Vec<Stage>)]
    pub stages: Vec<std::sync::Arc<Stage>>,
    pub result: StepResult,
    pub reason: String,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<Timestamp>,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<Timestamp>,
}

/// A stage: its steps run one after the other (the hosts of a step together).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = StrategyStage)]
pub struct Stage {
    pub name: String,
    /// The version a control-plane or kubelet stage moves to, when the upgrade crosses
    /// several minors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub version: Option<crate::KubeVersion>,
    pub hosts: Vec<String>,
    pub steps: Vec<Step>,
    pub result: StepResult,
    pub reason: String,
    /// How long the stage may take (the sum of its steps' deadlines), in seconds.
    pub timeout: u64,
    /// How long the plan predicts it takes, in seconds of the cluster's realistic durations.
    #[serde(default)]
    pub predicted_seconds: u64,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<Timestamp>,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = StrategyStep)]
pub struct Step {
    pub name: String,
    pub hosts: Vec<String>,
    pub result: StepResult,
    pub reason: String,
    /// The step's deadline, in seconds.
    pub timeout: u64,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<Timestamp>,
    #[serde(with = "crate::time::serde_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<Timestamp>,
}

impl Phase {
    pub fn new(name: &str) -> Self {
        Phase {
            name: name.into(),
            stages: Vec::new(),
            result: StepResult::Initial,
            reason: String::new(),
            start: None,
            end: None,
        }
    }

    /// Steps done, of all steps, in percent (100 for a phase without steps once it ended).
    pub fn completion(&self) -> u32 {
        let total: usize = self.stages.iter().map(|s| s.steps.len()).sum();
        if total == 0 {
            return if self.end.is_some() { 100 } else { 0 };
        }
        let done = self
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .filter(|s| s.result == StepResult::Success)
            .count();
        (done * 100 / total) as u32
    }

    /// The stage in progress, or the first one not done.
    pub fn current_stage(&self) -> Option<usize> {
        self.stages
            .iter()
            .position(|s| s.result == StepResult::Wait)
            .or_else(|| {
                self.stages
                    .iter()
                    .position(|s| s.result != StepResult::Success)
            })
    }
}

impl Stage {
    pub fn new(name: String, hosts: Vec<String>, steps: Vec<Step>) -> Self {
        Stage {
            name,
            version: None,
            hosts,
            timeout: steps.iter().map(|s| s.timeout).sum(),
            predicted_seconds: 0,
            steps,
            result: StepResult::Initial,
            reason: String::new(),
            start: None,
            end: None,
        }
    }

    /// The step in progress, or the first one not done.
    pub fn current_step(&self) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| s.result == StepResult::Wait)
            .or_else(|| {
                self.steps
                    .iter()
                    .position(|s| s.result != StepResult::Success)
            })
    }
}

impl Step {
    pub fn new(name: &str, hosts: Vec<String>, timeout: u64) -> Self {
        Step {
            name: name.into(),
            hosts,
            result: StepResult::Initial,
            reason: String::new(),
            timeout,
            start: None,
            end: None,
        }
    }
}

impl StrategyRecord {
    /// The phase the strategy is in: build until it is applied, then apply, then abort.
    pub fn current_phase(&self) -> &Phase {
        use StrategyState as S;
        match self.state {
            S::Initial | S::Building | S::BuildFailed | S::BuildTimeout | S::ReadyToApply => {
                &self.build_phase
            }
            S::Applying | S::ApplyFailed | S::ApplyTimeout | S::Applied => &self.apply_phase,
            S::Aborting | S::AbortFailed | S::AbortTimeout | S::Aborted => &self.abort_phase,
        }
    }
}

/// `GET /v1/kube_upgrade_strategy`: the strategy, and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StrategyView {
    /// Shared with the store's snapshot: a view is not a copy of a record that grows with the
    /// cluster.
    #[schema(value_type = StrategyRecord)]
    pub strategy: std::sync::Arc<StrategyRecord>,
    pub current: StrategyProgress,
}

/// Where a strategy is: the figures a person reads first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StrategyProgress {
    /// `build`, `apply` or `abort`.
    pub phase: String,
    pub phase_completion_percentage: u32,
    /// The stage in progress (or the first not done): its index in the phase, and its name.
    pub stage: Option<u32>,
    pub stage_name: Option<String>,
    /// The step in progress within that stage, and its hosts.
    pub step: Option<u32>,
    pub step_name: Option<String>,
    pub entity_names: Vec<String>,
}

impl From<StrategyRecord> for StrategyView {
    fn from(s: StrategyRecord) -> Self {
        Self::from(std::sync::Arc::new(s))
    }
}

impl From<std::sync::Arc<StrategyRecord>> for StrategyView {
    fn from(s: std::sync::Arc<StrategyRecord>) -> Self {
        let phase = s.current_phase();
        let stage_ix = phase.current_stage();
        let stage = stage_ix.map(|i| &*phase.stages[i]);
        let step_ix = stage.and_then(Stage::current_step);
        let step = stage.zip(step_ix).map(|(st, i)| &st.steps[i]);
        let current = StrategyProgress {
            phase: phase.name.clone(),
            phase_completion_percentage: phase.completion(),
            stage: stage_ix.map(|i| i as u32),
            stage_name: stage.map(|s| s.name.clone()),
            step: step_ix.map(|i| i as u32),
            step_name: step.map(|s| s.name.clone()),
            entity_names: step.map(|s| s.hosts.clone()).unwrap_or_default(),
        };
        StrategyView {
            strategy: s,
            current,
        }
    }
}
