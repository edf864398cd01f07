//! The upgrade state machine: for each command, the checks that may refuse it and the writes
//! and operations it leads to; for each finished operation, the state it ends in; after a
//! restart, what becomes of a step that was in flight. Pure: the caller supplies the store's
//! snapshot, the cluster's observation and the time.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use kup_types::{
    AdminState, Availability, EventKind, HostInfo, HostUpgradeStatus, KubeUpgradeRecord,
    KubeUpgradeState, KubeVersion, NewEvent, Observation, OpStatus, OperState, Operation,
    OperationRecord, OperationState, Personality, Snapshot, StepKind, SystemType, UpgradeWrite,
    VersionState, Workloads, WriteBatch,
};

use crate::catalog::{Catalog, running_versions};
use crate::health::{DEFAULT_ALARM_IGNORE, kube_upgrade_health};
use crate::refusal::Refusal;

use HostUpgradeStatus as HS;
use KubeUpgradeState as S;

/// Server-side settings that shape the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Alarm ids that never block a start; the request's own list is added to these.
    pub alarm_ignore: Vec<String>,
    /// How long each kind of step may run before it counts as hung and is marked failed.
    pub deadlines: BTreeMap<StepKind, SignedDuration>,
    /// How many times a strategy tries a failed step again before it stops.
    pub retries: u32,
    /// The wait before the first re-try of a failed step; it doubles for each further one.
    pub retry_backoff: SignedDuration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            alarm_ignore: DEFAULT_ALARM_IGNORE.iter().map(|s| s.to_string()).collect(),
            deadlines: default_deadlines(),
            retries: 2,
            retry_backoff: SignedDuration::from_secs(10),
        }
    }
}

/// StarlingX's for the upgrade steps (its stuck-state audit); for host actions, what a drain
/// of a busy host, a reboot and a hand-over take with room to spare.
pub fn default_deadlines() -> BTreeMap<StepKind, SignedDuration> {
    [
        (StepKind::DownloadImages, 1800),
        (StepKind::ControlPlane, 420),
        (StepKind::Networking, 900),
        (StepKind::Kubelet, 900),
        (StepKind::Lock, 1800),
        (StepKind::Unlock, 1800),
        (StepKind::Swact, 600),
        // VIM's cordon stage timeout.
        (StepKind::Cordon, 600),
        (StepKind::Uncordon, 600),
    ]
    .into_iter()
    .map(|(k, s)| (k, SignedDuration::from_secs(s)))
    .collect()
}

impl Policy {
    pub fn deadline(&self, kind: StepKind) -> SignedDuration {
        self.deadlines
            .get(&kind)
            .copied()
            .unwrap_or(SignedDuration::from_secs(1800))
    }
}

/// Everything a decision depends on.
pub struct Ctx<'a> {
    pub catalog: &'a Catalog,
    pub policy: &'a Policy,
    pub snap: &'a Snapshot,
    pub obs: &'a Observation,
    /// The pods, their owners and budgets: given for the commands that read them
    /// ([`Command::reads_pods`]: a lock's safety, the start's health), shared, never copied.
    pub workloads: Option<&'a Workloads>,
    pub now: Timestamp,
    /// A fresh uuid, used if the command creates an upgrade or starts an operation.
    pub fresh_uuid: &'a str,
}

/// The one list of host commands: the host each names, by reference or mutably.
macro_rules! host_commands {
    ($cmd:expr) => {
        match $cmd {
            Command::ControlPlane { host, .. }
            | Command::Kubelet { host, .. }
            | Command::Lock { host, .. }
            | Command::Unlock { host, .. }
            | Command::Swact { host, .. }
            | Command::PatchHostInstall { host }
            | Command::FailHostStep { host }
            | Command::Cordon { host }
            | Command::Uncordon { host } => Some(host),
            _ => None,
        }
    };
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Start {
        to_version: String,
        force: bool,
        alarm_ignore: Vec<String>,
    },
    DownloadImages,
    UpgradeNetworking,
    Complete,
    /// `kube-upgrade-failed`: mark the in-flight step as failed.
    MarkFailed(KubeUpgradeState),
    Delete,
    ControlPlane {
        host: String,
        force: bool,
    },
    Kubelet {
        host: String,
        force: bool,
    },
    Lock {
        host: String,
        force: bool,
    },
    Unlock {
        host: String,
        force: bool,
    },
    Swact {
        host: String,
        /// `force-swact`: the standby may be degraded (never locked or disabled).
        force: bool,
    },
    /// A verified bundle's patch, to be added to the repository.
    PatchUpload(Box<kup_types::PatchRecord>),
    PatchApply {
        id: String,
    },
    PatchRemove {
        id: String,
    },
    PatchDelete {
        id: String,
    },
    PatchHostInstall {
        host: String,
    },
    /// `kube-host-upgrade-failed`: mark the step or action running on a host as failed (a
    /// hung step, by hand).
    FailHostStep {
        host: String,
    },
    /// `kube-host-cordon` (aio-simplex): evict the host's pods before its upgrade.
    Cordon {
        host: String,
    },
    /// `kube-host-uncordon` (aio-simplex): let pods back once its kubelet is done.
    Uncordon {
        host: String,
    },
    /// `kube-upgrade-abort` (`PATCH /v1/kube_upgrade` to `upgrade-aborting`): every host that
    /// moved goes back to the from-version.
    Abort,
    /// The way back, one step at a time (the runner's): a kubelet back, a control plane
    /// restored, networking back, the end; or why it cannot go on.
    Rollback(crate::rollback::RollbackStep),
    /// `kube-upgrade-strategy create|apply|abort|delete`, and the runner's progress.
    Strategy(crate::strategy::StrategyCommand),
}

impl Command {
    /// Whether deciding the command reads the cluster's pods: the callers read them (the
    /// largest part of a cluster) only then.
    pub fn reads_pods(&self) -> bool {
        matches!(
            self,
            Command::Start { .. }
                | Command::Lock { force: false, .. }
                | Command::Strategy(crate::strategy::StrategyCommand::Create { .. })
        )
    }

    /// The `PATCH /v1/kube_upgrade` dispatcher: a requested `/state` value to a command.
    pub fn from_patch_state(value: &str) -> Result<Command, Refusal> {
        Self::from_patch(value, None)
    }

    /// The same, with the `/hostname` that `kube-host-cordon|uncordon` send along.
    pub fn from_patch(value: &str, hostname: Option<&str>) -> Result<Command, Refusal> {
        let host = || {
            hostname
                .map(str::to_string)
                .ok_or_else(|| Refusal::HostnameRequired(value.to_string()))
        };
        match value.parse::<S>() {
            Ok(S::CordonStarted) => Ok(Command::Cordon { host: host()? }),
            Ok(S::UpgradeAborting) => Ok(Command::Abort),
            Ok(S::UncordonStarted) => Ok(Command::Uncordon { host: host()? }),
            Ok(S::DownloadingImages) => Ok(Command::DownloadImages),
            Ok(S::UpgradingNetworking) => Ok(Command::UpgradeNetworking),
            Ok(S::UpgradeComplete) => Ok(Command::Complete),
            Ok(s) if s.is_failed() => Ok(Command::MarkFailed(s)),
            _ => Err(Refusal::InvalidState(value.to_string())),
        }
    }

    /// How the command reads in the event log.
    pub fn describe(&self) -> String {
        match self {
            Command::Start {
                to_version, force, ..
            } => {
                format!(
                    "kube-upgrade-start {to_version}{}",
                    if *force { " --force" } else { "" }
                )
            }
            Command::DownloadImages => "kube-upgrade-download-images".into(),
            Command::UpgradeNetworking => "kube-upgrade-networking".into(),
            Command::Complete => "kube-upgrade-complete".into(),
            Command::MarkFailed(s) => format!("kube-upgrade-failed ({s})"),
            Command::Delete => "kube-upgrade-delete".into(),
            Command::ControlPlane { host, .. } => format!("kube-host-upgrade {host} control-plane"),
            Command::Kubelet { host, force } => format!(
                "kube-host-upgrade {host} kubelet{}",
                if *force { " --force" } else { "" }
            ),
            Command::Lock { host, force } => {
                format!("host-lock {host}{}", if *force { " --force" } else { "" })
            }
            Command::Unlock { host, force } => {
                format!("host-{}unlock {host}", if *force { "force-" } else { "" })
            }
            Command::Swact { host, force } => {
                format!("host-swact {host}{}", if *force { " --force" } else { "" })
            }
            Command::PatchUpload(p) => format!("sw-patch upload {}", p.id),
            Command::PatchApply { id } => format!("sw-patch apply {id}"),
            Command::PatchRemove { id } => format!("sw-patch remove {id}"),
            Command::PatchDelete { id } => format!("sw-patch delete {id}"),
            Command::PatchHostInstall { host } => format!("sw-patch host-install {host}"),
            Command::FailHostStep { host } => format!("kube-host-upgrade-failed {host}"),
            Command::Cordon { host } => format!("kube-host-cordon {host}"),
            Command::Abort => "kube-upgrade-abort".into(),
            Command::Rollback(step) => step.describe(),
            Command::Uncordon { host } => format!("kube-host-uncordon {host}"),
            Command::Strategy(sc) => {
                use crate::strategy::StrategyCommand as C;
                match sc {
                    C::Create { req, .. } => format!(
                        "kube-upgrade-strategy create --to-version {}",
                        req.to_version
                    ),
                    C::Apply => "kube-upgrade-strategy apply".into(),
                    C::Abort { rollback } => format!(
                        "kube-upgrade-strategy abort{}",
                        if *rollback { " --rollback" } else { "" }
                    ),
                    C::Delete => "kube-upgrade-strategy delete".into(),
                    C::Progress(_) => "kube-upgrade-strategy progress".into(),
                }
            }
        }
    }

    /// The host a host command names (by name, id or uuid until resolved).
    pub fn host(&self) -> Option<&str> {
        host_commands!(self).map(String::as_str)
    }

    /// The named host, to be replaced by its hostname once resolved.
    pub fn host_mut(&mut self) -> Option<&mut String> {
        host_commands!(self)
    }

    fn subject(&self) -> String {
        if let Some(host) = self.host() {
            return host.to_string();
        }
        match self {
            Command::Rollback(step) if step.host().is_some() => {
                step.host().unwrap_or_default().to_string()
            }
            Command::PatchUpload(p) => format!("patch {}", p.id),
            Command::Strategy(_) => "strategy".into(),
            Command::PatchApply { id }
            | Command::PatchRemove { id }
            | Command::PatchDelete { id } => {
                format!("patch {id}")
            }
            _ => "kube_upgrade".into(),
        }
    }
}

/// What an accepted command does: one atomic write, then the operations to start. Each
/// operation's record is part of the batch, so it is durable before it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub batch: WriteBatch,
    pub ops: Vec<OperationRecord>,
    /// Operations the command marked failed: the driver stops them.
    pub cancel: Vec<String>,
}

/// What an operation occupies: at most one operation runs per slot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpSlot {
    /// Download, control plane, networking: the steps that move the cluster-level state.
    Cluster,
    Kubelet(String),
    HostAction(String),
}

impl OpSlot {
    pub fn of(op: &Operation) -> OpSlot {
        match op {
            Operation::DownloadImages { .. }
            | Operation::UpgradeControlPlane { .. }
            | Operation::UpgradeNetworking { .. }
            | Operation::Cordon { .. }
            | Operation::Uncordon { .. }
            | Operation::RestoreControlPlane { .. } => OpSlot::Cluster,
            Operation::UpgradeKubelet { host, .. } => OpSlot::Kubelet(host.clone()),
            Operation::Lock { host, .. }
            | Operation::Unlock { host }
            | Operation::Swact { host } => OpSlot::HostAction(host.clone()),
        }
    }
}

/// Accumulates the writes of one decision, with an event for every change.
pub(crate) struct Writer<'a> {
    ctx: &'a Ctx<'a>,
    d: Decision,
    upgrade: Option<KubeUpgradeRecord>,
    /// Settling what a restart found in flight.
    recovering: bool,
}

impl<'a> Writer<'a> {
    fn new(ctx: &'a Ctx<'a>) -> Self {
        Self {
            ctx,
            d: Decision::default(),
            upgrade: ctx.snap.upgrade.clone(),
            recovering: false,
        }
    }

    pub(crate) fn event(
        &mut self,
        kind: EventKind,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.d.batch.events.push(NewEvent {
            at: self.ctx.now,
            kind,
            subject: subject.into(),
            message: message.into(),
        });
    }

    pub(crate) fn set_state(&mut self, to: S) {
        let now = self.ctx.now;
        let u = self.upgrade.as_mut().expect("set_state needs an upgrade");
        let from = u.state;
        u.state = to;
        u.updated_at = Some(now);
        let rec = u.clone();
        // A state change to an upgrade created by this same decision is still its creation.
        self.d.batch.upgrade = Some(match self.d.batch.upgrade {
            Some(UpgradeWrite::Create(_)) => UpgradeWrite::Create(rec),
            _ => UpgradeWrite::Put(rec),
        });
        self.event(EventKind::State, "kube_upgrade", format!("{from} -> {to}"));
    }

    pub(crate) fn set_host(
        &mut self,
        hostname: &str,
        status: Option<HS>,
        target: Option<Option<KubeVersion>>,
    ) {
        let now = self.ctx.now;
        let current = self
            .d
            .batch
            .hosts
            .iter()
            .find(|h| h.hostname == hostname)
            .or_else(|| self.ctx.snap.host(hostname))
            .cloned();
        let Some(mut row) = current else { return };
        let old_status = row.status;
        row.status = status;
        if let Some(t) = target {
            row.target_version = t;
        }
        row.updated_at = Some(now);
        self.d.batch.hosts.retain(|h| h.hostname != hostname);
        self.d.batch.hosts.push(row);
        if old_status != status {
            let show = |s: Option<HS>| s.map_or("None".to_string(), |s| s.to_string());
            self.event(
                EventKind::Host,
                hostname,
                format!("{} -> {}", show(old_status), show(status)),
            );
        }
    }

    /// Records patch writes, with an event for each state a patch enters.
    fn patches(&mut self, writes: Vec<kup_types::PatchWrite>) {
        for wr in &writes {
            match wr {
                kup_types::PatchWrite::Put(p) => {
                    let msg = match self.ctx.snap.patch(&p.id).map(|q| q.state) {
                        Some(from) if from == p.state => continue,
                        Some(from) => format!("{from} -> {}", p.state),
                        None => format!("uploaded: {}", p.state),
                    };
                    self.event(EventKind::State, format!("patch {}", p.id), msg);
                }
                kup_types::PatchWrite::Delete(id) => {
                    self.event(EventKind::State, format!("patch {id}"), "deleted")
                }
            }
        }
        self.d.batch.patches.extend(writes);
    }

    /// Ends a running operation as failed by the operator's command; the driver is told to
    /// stop it.
    pub(crate) fn fail_by_hand(&mut self, o: &OperationRecord, cmd: &Command) {
        let why = format!("marked failed by {}", cmd.describe());
        self.event(
            EventKind::Operation,
            o.op.host().unwrap_or("kube_upgrade"),
            format!("{}: {why}", o.op),
        );
        self.end_op(o, false, Some(why));
        self.d.cancel.push(o.id.clone());
    }

    /// Starts an operation: its record (running, with its attempt and deadline) is written
    /// with the decision.
    pub(crate) fn op(&mut self, op: Operation) {
        let n = self.d.ops.len();
        let id = match n {
            0 => self.ctx.fresh_uuid.to_string(),
            n => format!("{}-{n}", self.ctx.fresh_uuid),
        };
        let attempt = self.ctx.snap.attempts.get(&op.key()).copied().unwrap_or(0) + 1;
        let deadline = self
            .ctx
            .now
            .saturating_add(self.ctx.policy.deadline(op.kind()))
            .unwrap_or(Timestamp::MAX);
        let record = OperationRecord {
            id,
            op,
            state: OperationState::Running,
            attempt,
            started_at: self.ctx.now,
            deadline,
            ended_at: None,
            detail: None,
        };
        self.d.batch.operations.push(record.clone());
        self.d.ops.push(record);
    }

    /// Records how a running operation ended; a completion that arrives later is stale.
    pub(crate) fn end_op(&mut self, record: &OperationRecord, ok: bool, detail: Option<String>) {
        let mut r = record.clone();
        r.state = if ok {
            OperationState::Succeeded
        } else {
            OperationState::Failed
        };
        r.ended_at = Some(self.ctx.now);
        r.detail = detail;
        self.d.batch.operations.retain(|o| o.id != r.id);
        self.d.batch.operations.push(r);
    }

    fn finish(mut self) -> Decision {
        self.d.batch.hosts.sort_by_key(|h| h.id);
        self.d
    }
}

/// The pods, for a command that [`Command::reads_pods`].
fn pods<'a>(ctx: &Ctx<'a>) -> &'a Workloads {
    ctx.workloads
        .expect("the caller reads the pods for every command that reads_pods()")
}

pub(crate) fn upgrade<'a>(ctx: &'a Ctx<'_>) -> Result<&'a KubeUpgradeRecord, Refusal> {
    ctx.snap.upgrade.as_ref().ok_or(Refusal::NotInProgress)
}

pub(crate) fn gate(
    u: &KubeUpgradeRecord,
    allowed: &[S],
    action: &'static str,
) -> Result<(), Refusal> {
    if allowed.contains(&u.state) {
        Ok(())
    } else {
        Err(Refusal::WrongState {
            state: u.state,
            allowed: allowed.to_vec(),
            action,
        })
    }
}

pub(crate) fn host<'a>(ctx: &'a Ctx<'_>, name: &str) -> Result<&'a HostInfo, Refusal> {
    ctx.obs
        .host(name)
        .ok_or_else(|| Refusal::UnknownHost(name.to_string()))
}

pub(crate) fn host_state(h: &HostInfo) -> String {
    format!("{}/{}/{}", h.administrative, h.operational, h.availability)
}

pub(crate) fn status_of(ctx: &Ctx<'_>, host: &str) -> Option<HS> {
    ctx.snap.host(host).and_then(|r| r.status)
}

/// The states in which kubelets may be upgraded: every control plane is done (after the
/// others, or after networking where the first is the only one: aio-simplex, a single
/// control-plane node), or the kubelet phase has begun.
pub(crate) fn kubelet_phase(obs: &Observation, to: KubeVersion) -> Vec<S> {
    if obs.controllers().nth(1).is_none() {
        let mut states = vec![S::UpgradedNetworking, S::UpgradingKubelets];
        // A later minor of a multi-version upgrade: networking was done in the first.
        if obs.networking_version == Some(to) {
            states.insert(0, S::UpgradedFirstMaster);
        }
        return states;
    }
    let mut states = vec![S::UpgradedSecondMaster, S::UpgradingKubelets];
    if all_control_planes_at(obs, to) {
        states.insert(0, S::UpgradedNetworking);
    }
    states
}

/// Whether kubelets may be upgraded now: [`kubelet_phase`], or an aio-simplex host cordoned
/// after networking (its kubelet follows; the state list StarlingX prints leaves it out).
pub(crate) fn kubelets_open(obs: &Observation, u: &KubeUpgradeRecord) -> bool {
    kubelet_phase(obs, u.to_version).contains(&u.state)
        || (u.state == S::CordonComplete && kubelet_target(obs).is_some_and(|t| t > u.from_version))
}

/// The versions the upgrade steps through, its target last (one, unless it crosses several
/// minors).
pub(crate) fn upgrade_steps(ctx: &Ctx<'_>, u: &KubeUpgradeRecord) -> Vec<KubeVersion> {
    ctx.catalog
        .steps(u.from_version, u.to_version)
        .unwrap_or_else(|_| vec![u.to_version])
}

/// Networking to `version`, with the manifests its platform patch ships (none when no
/// applied patch brings it).
pub(crate) fn networking_op(ctx: &Ctx<'_>, version: KubeVersion) -> Operation {
    Operation::UpgradeNetworking {
        version,
        manifests: crate::patches::networking_manifests(ctx.snap, version),
    }
}

/// Downloading the images of every version the upgrade steps through, with the kubeadm
/// binaries that patches deliver for them.
fn download_op(ctx: &Ctx<'_>, u: &KubeUpgradeRecord) -> Operation {
    Operation::DownloadImages {
        version: u.to_version,
        images: upgrade_images(ctx, u),
        payloads: crate::patches::payloads(
            ctx.snap,
            &[kup_types::PatchKind::Kubeadm],
            &upgrade_steps(ctx, u),
        ),
    }
}

/// A control plane to `version`, with the kubeadm a patch delivers for it.
pub(crate) fn control_plane_op(
    ctx: &Ctx<'_>,
    host: &str,
    version: KubeVersion,
    first: bool,
) -> Operation {
    Operation::UpgradeControlPlane {
        host: host.into(),
        version,
        first,
        payloads: crate::patches::payloads(ctx.snap, &[kup_types::PatchKind::Kubeadm], &[version]),
    }
}

/// A kubelet to `version`, with the kubelet (and, for the node configuration a kubeadm
/// cluster's worker updates first, the kubeadm) that patches deliver for it.
pub(crate) fn kubelet_op(ctx: &Ctx<'_>, host: &str, version: KubeVersion) -> Operation {
    Operation::UpgradeKubelet {
        host: host.into(),
        version,
        payloads: crate::patches::payloads(
            ctx.snap,
            &[kup_types::PatchKind::Kubeadm, kup_types::PatchKind::Kubelet],
            &[version],
        ),
    }
}

/// The images of every version the upgrade steps through.
fn upgrade_images(ctx: &Ctx<'_>, u: &KubeUpgradeRecord) -> Vec<String> {
    let mut images: Vec<String> = upgrade_steps(ctx, u)
        .into_iter()
        .filter_map(|v| ctx.catalog.get(v))
        .flat_map(|m| m.images.iter().cloned())
        .collect();
    images.dedup();
    images
}

/// The version a host's control plane moves to next: where its failed attempt aimed, else
/// the next step of the upgrade above what it runs (`cp`).
pub(crate) fn control_plane_target(
    ctx: &Ctx<'_>,
    u: &KubeUpgradeRecord,
    host: &str,
    cp: KubeVersion,
) -> Option<KubeVersion> {
    let steps = upgrade_steps(ctx, u);
    let row = ctx.snap.host(host);
    let failed_target = row
        .filter(|r| r.status == Some(HS::UpgradingControlPlaneFailed))
        .and_then(|r| r.target_version)
        .filter(|t| steps.contains(t));
    failed_target.or_else(|| next_step(&steps, cp))
}

/// The first step above `current`.
pub(crate) fn next_step(steps: &[KubeVersion], current: KubeVersion) -> Option<KubeVersion> {
    steps.iter().copied().find(|s| *s > current)
}

/// The version every control plane has reached: the lowest of them.
pub(crate) fn control_plane_floor(obs: &Observation) -> Option<KubeVersion> {
    obs.controllers()
        .filter_map(|c| obs.control_plane_version(&c.hostname))
        .min()
}

/// The version kubelets are upgraded to now: the one every control plane runs (a kubelet is
/// never newer than an API server); `None` while the control planes differ.
pub(crate) fn kubelet_target(obs: &Observation) -> Option<KubeVersion> {
    let floor = control_plane_floor(obs)?;
    obs.controllers()
        .all(|c| obs.control_plane_version(&c.hostname) == Some(floor))
        .then_some(floor)
}

/// Whether every controller's control plane runs `to`.
pub(crate) fn all_control_planes_at(obs: &Observation, to: KubeVersion) -> bool {
    obs.controllers()
        .all(|c| obs.control_plane_version(&c.hostname) == Some(to))
}

/// Whether a host's kubelet is upgraded in place, unlocked and undrained: on aio-simplex, and
/// the only controller of any system (no peer could take its role while it is locked; its
/// control plane keeps serving while the kubelet restarts).
pub fn kubelet_in_place(obs: &Observation, h: &HostInfo) -> bool {
    obs.system_type == SystemType::AioSimplex
        || (h.personality == Personality::Controller && obs.controllers().nth(1).is_none())
}

pub(crate) fn simplex(ctx: &Ctx<'_>) -> bool {
    ctx.obs.system_type == SystemType::AioSimplex
}

/// Checks a command and, if it is allowed, says what it changes.
pub fn decide(ctx: &Ctx<'_>, cmd: &Command) -> Result<Decision, Refusal> {
    let mut w = Writer::new(ctx);
    match cmd {
        Command::Start {
            to_version,
            force,
            alarm_ignore,
        } => start(ctx, &mut w, to_version, *force, alarm_ignore)?,
        Command::DownloadImages => {
            let u = upgrade(ctx)?;
            gate(
                u,
                &[S::UpgradeStarted, S::DownloadingImagesFailed],
                "download images",
            )?;
            w.set_state(S::DownloadingImages);
            w.op(download_op(ctx, u));
        }
        Command::UpgradeNetworking => {
            let u = upgrade(ctx)?;
            gate(
                u,
                &[S::UpgradedFirstMaster, S::UpgradingNetworkingFailed],
                "upgrade networking",
            )?;
            // Done once, in the first minor of a multi-version upgrade.
            if u.state == S::UpgradedFirstMaster && ctx.obs.networking_version == Some(u.to_version)
            {
                return Err(Refusal::NetworkingAlreadyUpgraded);
            }
            w.set_state(S::UpgradingNetworking);
            w.op(networking_op(ctx, u.to_version));
        }
        Command::ControlPlane { host: name, .. } => control_plane(ctx, &mut w, name)?,
        Command::Abort => crate::rollback::abort(ctx, &mut w)?,
        Command::Rollback(step) => crate::rollback::decide(ctx, &mut w, step)?,
        Command::Cordon { host: name } => {
            let u = upgrade(ctx)?;
            let h = host(ctx, name)?;
            if !simplex(ctx) {
                return Err(Refusal::CordonNotSimplex(ctx.obs.system_type));
            }
            // Before the control plane moves (StarlingX: after storage), or after networking
            // before the kubelet; a failed cordon is re-done.
            gate(
                u,
                &[S::DownloadedImages, S::UpgradedNetworking, S::CordonFailed],
                "cordon",
            )?;
            if h.administrative != AdminState::Unlocked {
                return Err(Refusal::CordonHostState {
                    host: name.clone(),
                    state: host_state(h),
                });
            }
            w.set_state(S::CordonStarted);
            w.op(Operation::Cordon { host: name.clone() });
        }
        Command::Uncordon { host: name } => {
            let u = upgrade(ctx)?;
            host(ctx, name)?;
            if !simplex(ctx) {
                return Err(Refusal::UncordonNotSimplex(ctx.obs.system_type));
            }
            gate(u, &[S::UpgradingKubelets, S::UncordonFailed], "uncordon")?;
            let not_done = kubelet_hosts_not_done(ctx, u.to_version);
            if !not_done.is_empty() {
                return Err(Refusal::UncordonBeforeKubelets(not_done));
            }
            w.set_state(S::UncordonStarted);
            w.op(Operation::Uncordon { host: name.clone() });
        }
        Command::Kubelet { host: name, force } => kubelet(ctx, &mut w, name, *force)?,
        Command::Complete => {
            let u = upgrade(ctx)?;
            if !simplex(ctx) {
                gate(u, &[S::UpgradingKubelets], "complete")?;
            } else if ctx.obs.nodes.iter().any(|n| n.unschedulable) {
                // Cordoned: the pods it evicted wait for the uncordon.
                gate(u, &[S::UncordonComplete], "complete")?;
            } else {
                gate(u, &[S::UpgradingKubelets, S::UncordonComplete], "complete")?;
            }
            let not_done = kubelet_hosts_not_done(ctx, u.to_version);
            if !not_done.is_empty() {
                return Err(Refusal::HostsNotDone(not_done));
            }
            let state = ctx.catalog.states(ctx.obs).get(&u.to_version).copied();
            if state != Some(VersionState::Active) {
                return Err(Refusal::TargetNotActive {
                    to: u.to_version,
                    state: state.unwrap_or(VersionState::Unavailable),
                });
            }
            w.set_state(S::UpgradeComplete);
            for row in &ctx.snap.hosts {
                if row.status.is_some() {
                    w.set_host(&row.hostname, None, None);
                }
            }
        }
        Command::MarkFailed(requested) => {
            let u = upgrade(ctx)?;
            if u.state.failed() != Some(*requested) {
                return Err(Refusal::CannotSetFailed(u.state));
            }
            w.set_state(*requested);
            for row in &ctx.snap.hosts {
                if row.status == Some(HS::UpgradingControlPlane) {
                    w.set_host(&row.hostname, Some(HS::UpgradingControlPlaneFailed), None);
                }
            }
            // Whatever the step's operation does from now on changes nothing.
            for o in ctx
                .snap
                .operations
                .iter()
                .filter(|o| OpSlot::of(&o.op) == OpSlot::Cluster)
            {
                w.fail_by_hand(o, cmd);
            }
        }
        Command::Strategy(sc) => {
            let mut events = Vec::new();
            let write = crate::strategy::decide(ctx, sc, &mut events)?;
            w.d.batch.strategy = Some(write);
            for (kind, message) in events {
                w.event(kind, "strategy", message);
            }
            // Aborted with --rollback: the way back begins in the same commit.
            let rollback = ctx
                .snap
                .strategy
                .as_ref()
                .is_some_and(|s| s.rollback_on_abort);
            if matches!(
                sc,
                crate::strategy::StrategyCommand::Progress(crate::strategy::Progress::Aborted)
            ) && rollback
                && ctx.snap.upgrade.as_ref().is_some_and(|u| {
                    !matches!(
                        u.state,
                        S::UpgradeAborting | S::UpgradeAborted | S::UpgradeComplete
                    )
                })
            {
                crate::rollback::abort(ctx, &mut w)?;
            }
            if matches!(sc, crate::strategy::StrategyCommand::Progress(_)) {
                // The runner's bookkeeping is not an operator's command.
                return Ok(w.finish());
            }
        }
        Command::FailHostStep { host: name } => {
            host(ctx, name)?;
            let running: Vec<&OperationRecord> = ctx
                .snap
                .operations
                .iter()
                .filter(|o| o.op.host() == Some(name.as_str()))
                .collect();
            if running.is_empty() {
                return Err(Refusal::NoStepInFlight(name.clone()));
            }
            for o in running {
                settle(&mut w, &o.op, false);
                w.fail_by_hand(o, cmd);
            }
        }
        Command::Delete => {
            let u = upgrade(ctx)?;
            gate(u, &[S::UpgradeComplete, S::UpgradeAborted], "delete")?;
            w.d.batch.upgrade = Some(UpgradeWrite::Delete);
            w.event(
                EventKind::State,
                "kube_upgrade",
                format!("upgrade {} -> {} deleted", u.from_version, u.to_version),
            );
        }
        Command::Lock { host: name, force } => {
            let h = host(ctx, name)?;
            not_busy(ctx, h)?;
            if h.administrative == AdminState::Locked {
                return Err(Refusal::AlreadyLocked(name.clone()));
            }
            if h.personality == Personality::Controller {
                let other = ctx
                    .obs
                    .controllers()
                    .find(|c| c.hostname != h.hostname && in_service(ctx, c));
                match other {
                    None => return Err(Refusal::LockLastController(name.clone())),
                    Some(o) if h.active_controller => {
                        return Err(Refusal::LockActiveController {
                            host: name.clone(),
                            other: o.hostname.clone(),
                        });
                    }
                    Some(_) => {}
                }
                // While a control plane is being upgraded, every other one stays in service.
                if let Some(upgrading) = control_plane_in_flight(ctx) {
                    return Err(Refusal::LockDuringControlPlane {
                        host: name.clone(),
                        upgrading: upgrading.to_string(),
                    });
                }
                if let Some((peer, why)) = control_plane_peer_down(ctx, name) {
                    return Err(Refusal::LockControlPlanePeerDown {
                        host: name.clone(),
                        peer,
                        why,
                    });
                }
            }
            // Look before draining: a lock that would lose data or break a budget is refused
            // unless the operator says it knows (--force).
            if !force {
                lock_safety(ctx, name)?;
            }
            w.op(Operation::Lock {
                host: name.clone(),
                force: *force,
            });
        }
        Command::Unlock { host: name, force } => {
            let h = host(ctx, name)?;
            not_busy(ctx, h)?;
            if h.administrative == AdminState::Unlocked {
                return Err(Refusal::AlreadyUnlocked(name.clone()));
            }
            if status_of(ctx, name) == Some(HS::UpgradingKubelet) && !force {
                return Err(Refusal::UnlockDuringKubelet(name.clone()));
            }
            w.op(Operation::Unlock { host: name.clone() });
        }
        Command::Swact { host: name, force } => {
            let h = host(ctx, name)?;
            not_busy(ctx, h)?;
            if h.personality != Personality::Controller {
                return Err(Refusal::SwactNotController(name.clone()));
            }
            if !ctx.obs.system_type.has_active_controller() {
                return Err(Refusal::SwactNoActiveRole(name.clone()));
            }
            if !h.active_controller {
                return Err(Refusal::SwactNotActive(name.clone()));
            }
            // Forced, a degraded standby will do; never one that is locked or disabled.
            let standby = |c: &HostInfo| {
                in_service(ctx, c)
                    || (*force
                        && c.administrative == AdminState::Unlocked
                        && c.operational == OperState::Enabled
                        && matches!(
                            c.availability,
                            Availability::Available | Availability::Degraded
                        )
                        && c.task.is_none()
                        && recorded_action(ctx, c).is_none())
            };
            if !ctx
                .obs
                .controllers()
                .any(|c| c.hostname != h.hostname && standby(c))
            {
                return Err(Refusal::SwactNoStandby(name.clone()));
            }
            if control_plane_in_flight(ctx).is_some() {
                return Err(Refusal::SwactDuringControlPlane(name.clone()));
            }
            w.op(Operation::Swact { host: name.clone() });
        }
        Command::PatchUpload(record) => {
            let writes = crate::patches::upload(ctx.snap, record)?;
            w.patches(writes);
        }
        Command::PatchApply { id } => {
            let writes = crate::patches::apply(ctx.snap, ctx.obs, ctx.catalog, id, ctx.now)?;
            w.patches(writes);
        }
        Command::PatchRemove { id } => {
            let writes = crate::patches::remove(ctx.snap, ctx.obs, id, ctx.now)?;
            w.patches(writes);
        }
        Command::PatchDelete { id } => {
            let writes = crate::patches::delete(ctx.snap, id)?;
            w.patches(writes);
        }
        Command::PatchHostInstall { host: name } => {
            let h = host(ctx, name)?;
            let (installs, writes) = crate::patches::host_install(ctx.snap, ctx.obs, h, ctx.now);
            for i in &installs {
                let (verb, inst) = match i {
                    kup_types::InstallWrite::Add(x) => ("installed", x),
                    kup_types::InstallWrite::Remove(x) => ("uninstalled", x),
                };
                w.event(
                    EventKind::Host,
                    name,
                    format!("patch {} {verb}", inst.patch_id),
                );
            }
            w.d.batch.installs = installs;
            w.patches(writes);
        }
    }
    // The command itself is recorded first, before the changes it caused.
    w.d.batch.events.insert(
        0,
        NewEvent {
            at: ctx.now,
            kind: EventKind::Command,
            subject: cmd.subject(),
            message: format!("{} accepted", cmd.describe()),
        },
    );
    Ok(w.finish())
}

/// The lock, unlock or swact of a host that kup's record says runs (a real cluster's view may
/// not show it yet).
fn recorded_action<'a>(ctx: &'a Ctx<'_>, h: &HostInfo) -> Option<&'a OperationRecord> {
    ctx.snap
        .operations
        .iter()
        .find(|o| OpSlot::of(&o.op) == OpSlot::HostAction(h.hostname.clone()))
}

/// In service by the cluster's view and by kup's own record of what runs.
pub(crate) fn in_service(ctx: &Ctx<'_>, h: &HostInfo) -> bool {
    h.in_service() && recorded_action(ctx, h).is_none()
}

/// A host is busy while the cluster shows an action on it, or while kup's own record says a
/// lock, unlock or swact of it runs.
pub(crate) fn not_busy(ctx: &Ctx<'_>, h: &HostInfo) -> Result<(), Refusal> {
    let recorded = || recorded_action(ctx, h).map(|o| o.op.to_string());
    match h.task.clone().or_else(recorded) {
        Some(task) => Err(Refusal::HostBusy {
            host: h.hostname.clone(),
            task,
        }),
        None => Ok(()),
    }
}

/// The host whose control plane kup's records say is being upgraded.
pub(crate) fn control_plane_in_flight<'a>(ctx: &'a Ctx<'_>) -> Option<&'a str> {
    ctx.snap.operations.iter().find_map(|o| match &o.op {
        Operation::UpgradeControlPlane { host, .. }
        | Operation::RestoreControlPlane { host, .. } => Some(host.as_str()),
        _ => None,
    })
}

/// Another control-plane host that is down or unavailable (out of service, its control-plane
/// pods not ready), with why: taking `name` down too would leave two out at once.
pub(crate) fn control_plane_peer_down(ctx: &Ctx<'_>, name: &str) -> Option<(String, String)> {
    ctx.obs
        .controllers()
        .filter(|c| c.hostname != name)
        .find_map(|c| {
            let why = if !in_service(ctx, c) {
                format!("not in service ({})", host_state(c))
            } else {
                let unready: Vec<&str> = ctx
                    .obs
                    .control_plane_pods
                    .iter()
                    .filter(|p| p.host == c.hostname && !p.ready)
                    .map(|p| p.component.as_str())
                    .collect();
                if unready.is_empty() {
                    return None;
                }
                format!("not ready ({})", unready.join(", "))
            };
            Some((c.hostname.clone(), why))
        })
}

/// Whether `name` can be drained now: judged together with the hosts whose lock is still
/// running (they are going down too), as the Eviction API would count their pods.
pub(crate) fn lock_safety(ctx: &Ctx<'_>, name: &str) -> Result<(), Refusal> {
    let mut batch = locks_in_flight(ctx);
    batch.retain(|h| *h != name);
    batch.push(name);
    let safety = crate::safety::analyze_batch(ctx.obs, pods(ctx), &batch);
    if safety.verdict != crate::safety::Verdict::Unsafe {
        return Ok(());
    }
    let reasons = safety.unsafe_reasons();
    let with = batch[..batch.len() - 1]
        .iter()
        .map(|h| h.to_string())
        .collect();
    Err(Refusal::LockUnsafe {
        host: name.to_string(),
        with,
        reasons,
    })
}

/// Hosts going down: those kup's operation records say it is locking (the record is written
/// before the lock starts, so it is never missed as a cluster's cached view can be).
pub(crate) fn locks_in_flight<'a>(ctx: &'a Ctx<'_>) -> Vec<&'a str> {
    let mut hosts: Vec<&str> = ctx
        .snap
        .operations
        .iter()
        .filter_map(|o| match &o.op {
            Operation::Lock { host, .. } => Some(host.as_str()),
            _ => None,
        })
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

fn start(
    ctx: &Ctx<'_>,
    w: &mut Writer<'_>,
    to_version: &str,
    force: bool,
    alarm_ignore: &[String],
) -> Result<(), Refusal> {
    if ctx.snap.upgrade.is_some() {
        return Err(Refusal::AlreadyInProgress);
    }
    let to = KubeVersion::parse(to_version)?;
    ctx.catalog.get(to).ok_or(Refusal::UnknownVersion(to))?;
    let running = running_versions(ctx.obs);
    if running.len() != 1 {
        return Err(Refusal::RunningVersionNotActive {
            running: running.into_iter().collect(),
        });
    }
    let from = *running.first().expect("one running version");
    let states = ctx.catalog.states(ctx.obs);
    if !states.contains_key(&from) {
        return Err(Refusal::RunningVersionUnknown(from));
    }
    let to_state = states[&to];
    if to_state != VersionState::Available {
        return Err(Refusal::TargetNotAvailable {
            to,
            state: to_state,
        });
    }
    // `available` is StarlingX's "reachable from here"; a start needs a path of catalog edges,
    // one minor each (never a downgrade, nor a skipped minor, whatever the metadata says),
    // shared with the plan. Every version on the way must have its patches.
    for step in ctx.catalog.steps(from, to)? {
        let meta = ctx.catalog.get(step).ok_or(Refusal::UnknownVersion(step))?;
        if let Some(missing) = crate::patches::missing_for_start(ctx.snap, meta) {
            return Err(missing);
        }
    }
    let health = start_health(ctx, pods(ctx), force, alarm_ignore, to);
    if !health.ok() {
        return Err(Refusal::Unhealthy(health.failures()));
    }
    let incompatible: Vec<String> = ctx
        .obs
        .applications
        .iter()
        .filter(|a| a.status == "applied" && !a.supports(to))
        .map(|a| {
            let bound = |b: Option<KubeVersion>| b.map_or("any".to_string(), |v| v.to_string());
            format!(
                "{} (supports {} to {})",
                a.name,
                bound(a.k8s_min),
                bound(a.k8s_max)
            )
        })
        .collect();
    if !incompatible.is_empty() {
        return Err(Refusal::IncompatibleApps {
            to,
            apps: incompatible,
        });
    }

    let record = KubeUpgradeRecord {
        id: 1,
        uuid: ctx.fresh_uuid.to_string(),
        from_version: from,
        to_version: to,
        state: S::UpgradeStarted,
        created_at: ctx.now,
        updated_at: None,
    };
    w.upgrade = Some(record.clone());
    w.d.batch.upgrade = Some(UpgradeWrite::Create(record));
    w.event(
        EventKind::State,
        "kube_upgrade",
        format!("upgrade {from} -> {to}: upgrade-started"),
    );
    for row in &ctx.snap.hosts {
        w.set_host(&row.hostname, None, Some(Some(from)));
    }
    Ok(())
}

/// The start's health checks: the server's alarm list and the request's own, and the APIs in
/// use that the versions up to `to` remove (both let pass by `force`).
pub(crate) fn start_health(
    ctx: &Ctx<'_>,
    workloads: &Workloads,
    force: bool,
    alarm_ignore: &[String],
    to: KubeVersion,
) -> crate::health::HealthReport {
    let ignore: Vec<String> = ctx
        .policy
        .alarm_ignore
        .iter()
        .chain(alarm_ignore)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut report = kube_upgrade_health(ctx.obs, workloads, force, &ignore);
    if let Some(&from) = running_versions(ctx.obs).first() {
        report.checks.push(crate::removed_apis::removed_api_check(
            ctx.obs, from, to, force,
        ));
    }
    report
}

fn control_plane(ctx: &Ctx<'_>, w: &mut Writer<'_>, name: &str) -> Result<(), Refusal> {
    let u = upgrade(ctx)?;
    let h = host(ctx, name)?;
    not_busy(ctx, h)?;
    if h.personality != Personality::Controller {
        return Err(Refusal::NoControlPlane {
            host: name.into(),
            personality: h.personality.to_string(),
        });
    }
    let cp = ctx
        .obs
        .control_plane_version(name)
        .ok_or_else(|| Refusal::ControlPlaneUnknown(name.into()))?;
    let status = status_of(ctx, name);
    if status == Some(HS::UpgradingControlPlane) {
        return Err(Refusal::ControlPlaneBusy(name.into()));
    }
    // The step this host takes: the next version of the upgrade's path above what it runs (one
    // minor at most); a re-do after a failure aims where the failed attempt aimed.
    let steps = upgrade_steps(ctx, u);
    let Some(next) = control_plane_target(ctx, u, name, cp) else {
        return Err(Refusal::ControlPlaneAlreadyUpgraded {
            host: name.into(),
            version: u.to_version,
        });
    };
    let first_round = Some(&next) == steps.first();
    let networking_done = ctx.obs.networking_version == Some(u.to_version);
    // First or second is read from the cluster: the second master is one whose peer already
    // runs this step's version.
    let first = !ctx
        .obs
        .controllers()
        .filter(|c| c.hostname != name)
        .any(|c| ctx.obs.control_plane_version(&c.hostname) >= Some(next));
    if first {
        if first_round {
            gate(
                u,
                &[
                    S::DownloadedImages,
                    S::UpgradingFirstMasterFailed,
                    S::CordonComplete,
                ],
                "upgrade the first control plane",
            )?;
        } else {
            // A later minor: once every control plane finished the one before (networking is
            // done once, in the first).
            gate(
                u,
                &[
                    S::UpgradedFirstMaster,
                    S::UpgradedNetworking,
                    S::UpgradedSecondMaster,
                    S::UpgradingKubelets,
                    S::UpgradingFirstMasterFailed,
                    S::CordonComplete,
                ],
                "upgrade the first control plane",
            )?;
        }
        // Every other control plane must have finished this one's current version, settled
        // and ready: two first masters must never run at once, and StarlingX's rule that the
        // others catch up before the first moves again.
        for peer in ctx.obs.controllers().filter(|c| c.hostname != name) {
            let peer_cp = ctx.obs.control_plane_version(&peer.hostname);
            if peer_cp.is_some_and(|p| p < cp) {
                return Err(Refusal::SecondControlPlanesFirst {
                    host: name.into(),
                    peer: peer.hostname.clone(),
                });
            }
            let settled = peer_cp == Some(cp)
                && ctx
                    .obs
                    .control_plane_pods
                    .iter()
                    .filter(|p| p.host == peer.hostname)
                    .all(|p| p.ready);
            if !settled {
                return Err(Refusal::PeerControlPlaneUnsettled {
                    host: name.into(),
                    peer: peer.hostname.clone(),
                });
            }
        }
    } else {
        // `upgrading-second-master` spans every control plane after the first: on a cluster
        // with three or more, the next one starts once the one before has ended (StarlingX's
        // message names the states it knows, with two controllers). In a later minor,
        // networking is done already: the others follow the first directly.
        if u.state != S::UpgradingSecondMaster {
            let mut allowed = vec![S::UpgradedNetworking, S::UpgradingSecondMasterFailed];
            if !first_round && networking_done {
                allowed.insert(0, S::UpgradedFirstMaster);
            }
            gate(u, &allowed, "upgrade the second control plane")?;
        }
        if let Some(other) = control_plane_in_flight(ctx) {
            return Err(Refusal::ControlPlaneInFlight {
                host: name.into(),
                other: other.into(),
            });
        }
    }
    if h.administrative != AdminState::Unlocked || h.operational != OperState::Enabled {
        return Err(Refusal::ControlPlaneHostState {
            host: name.into(),
            state: host_state(h),
        });
    }
    if let Some((peer, why)) = control_plane_peer_down(ctx, name) {
        return Err(Refusal::PeerControlPlaneDown {
            host: name.into(),
            peer,
            why,
        });
    }
    crate::skew::control_plane_step(ctx.obs, name, next)?;
    if let Some(missing) =
        crate::patches::binaries_missing(ctx.snap, kup_types::PatchKind::Kubeadm, next, name)
    {
        return Err(missing);
    }
    let state = if first {
        S::UpgradingFirstMaster
    } else {
        S::UpgradingSecondMaster
    };
    if u.state != state {
        w.set_state(state);
    }
    w.set_host(name, Some(HS::UpgradingControlPlane), Some(Some(next)));
    w.op(control_plane_op(ctx, name, next, first));
    Ok(())
}

fn kubelet(ctx: &Ctx<'_>, w: &mut Writer<'_>, name: &str, force: bool) -> Result<(), Refusal> {
    let u = upgrade(ctx)?;
    let h = host(ctx, name)?;
    if !h.personality.has_kubelet() {
        return Err(Refusal::NoKubelet {
            host: name.into(),
            personality: h.personality.to_string(),
        });
    }
    not_busy(ctx, h)?;
    if !kubelets_open(ctx.obs, u) {
        gate(u, &kubelet_phase(ctx.obs, u.to_version), "upgrade kubelets")?;
    }
    // The version of this kubelet round: what every control plane runs (the target, or a
    // minor on the way when the skew policy wants the kubelets to follow first).
    let target = kubelet_target(ctx.obs)
        .ok_or_else(|| Refusal::ControlPlanesDiffer { host: name.into() })?;
    if h.personality == Personality::Worker {
        let pending: Vec<String> = ctx
            .obs
            .controllers()
            .filter(|c| ctx.obs.kubelet_version(&c.hostname) != Some(target))
            .map(|c| c.hostname.clone())
            .collect();
        if !pending.is_empty() {
            return Err(Refusal::ControllersFirst(pending));
        }
    }
    let status = status_of(ctx, name);
    if status == Some(HS::UpgradingKubelet) {
        return Err(Refusal::KubeletBusy(name.into()));
    }
    let current = ctx
        .obs
        .kubelet_version(name)
        .ok_or_else(|| Refusal::KubeletUnknown(name.into()))?;
    if current == target && !force {
        // Nothing to run: record that this host is done.
        if ctx
            .snap
            .upgrade
            .as_ref()
            .is_some_and(|u| u.state != S::UpgradingKubelets)
        {
            w.set_state(S::UpgradingKubelets);
        }
        w.set_host(name, Some(HS::UpgradedKubelet), Some(Some(target)));
        return Ok(());
    }
    if kubelet_in_place(ctx.obs, h) {
        if !force
            && (h.administrative != AdminState::Unlocked
                || h.availability != Availability::Available)
        {
            return Err(Refusal::KubeletHostState {
                host: name.into(),
                need: "unlocked and available",
                state: host_state(h),
            });
        }
    } else if h.administrative != AdminState::Locked || h.availability != Availability::Online {
        return Err(Refusal::KubeletHostState {
            host: name.into(),
            need: "locked and online",
            state: host_state(h),
        });
    }
    if let Some(missing) =
        crate::patches::binaries_missing(ctx.snap, kup_types::PatchKind::Kubelet, target, name)
    {
        return Err(missing);
    }
    if u.state != S::UpgradingKubelets {
        w.set_state(S::UpgradingKubelets);
    }
    w.set_host(name, Some(HS::UpgradingKubelet), Some(Some(target)));
    w.op(kubelet_op(ctx, name, target));
    Ok(())
}

/// Hosts that run a kubelet and are not yet done. Storage hosts have no kubelet and so never
/// hold up completion (unlike StarlingX, reference §9.1).
fn kubelet_hosts_not_done(ctx: &Ctx<'_>, to: KubeVersion) -> Vec<String> {
    ctx.obs
        .hosts
        .iter()
        .filter(|h| h.personality.has_kubelet())
        .filter(|h| {
            status_of(ctx, &h.hostname) != Some(HS::UpgradedKubelet)
                || ctx.obs.kubelet_version(&h.hostname) != Some(to)
        })
        .map(|h| h.hostname.clone())
        .collect()
}

/// Whether the cluster shows the effect of `op`; `Err` says what is missing.
pub fn observed_done(obs: &Observation, op: &Operation) -> Result<(), String> {
    match op {
        Operation::DownloadImages {
            version, images, ..
        } => {
            let have: BTreeSet<&str> = obs.images.iter().map(String::as_str).collect();
            let missing: Vec<&str> = images
                .iter()
                .map(String::as_str)
                .filter(|i| !have.contains(i))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "images of {version} missing: {}",
                    missing.join(", ")
                ))
            }
        }
        Operation::UpgradeControlPlane { host, version, .. }
        | Operation::RestoreControlPlane { host, version } => {
            let cp = obs.control_plane_version(host);
            let unready: Vec<&str> = obs
                .control_plane_pods
                .iter()
                .filter(|p| &p.host == host && !p.ready)
                .map(|p| p.component.as_str())
                .collect();
            if cp != Some(*version) {
                Err(format!(
                    "the control plane on {host} runs {}",
                    cp.map_or("nothing".into(), |v| v.to_string())
                ))
            } else if !unready.is_empty() {
                Err(format!("on {host} not ready: {}", unready.join(", ")))
            } else {
                Ok(())
            }
        }
        Operation::UpgradeNetworking { version, .. } => match obs.networking_version {
            Some(v) if v == *version => Ok(()),
            other => Err(format!(
                "networking runs {}",
                other.map_or("an unknown version".into(), |v| v.to_string())
            )),
        },
        Operation::UpgradeKubelet { host, version, .. } => match obs.kubelet_version(host) {
            Some(v) if v == *version => Ok(()),
            other => Err(format!(
                "the kubelet on {host} runs {}",
                other.map_or("nothing".into(), |v| v.to_string())
            )),
        },
        Operation::Lock { host, .. } => match obs.host(host) {
            Some(h) if h.administrative == AdminState::Locked => Ok(()),
            _ => Err(format!("{host} is not locked")),
        },
        Operation::Unlock { host } => match obs.host(host) {
            Some(h) if h.administrative == AdminState::Unlocked => Ok(()),
            _ => Err(format!("{host} is not unlocked")),
        },
        Operation::Swact { host } => match obs.host(host) {
            Some(h) if !h.active_controller => Ok(()),
            _ => Err(format!("{host} is still the active controller")),
        },
        Operation::Cordon { host } => match obs.node(host) {
            Some(n) if n.unschedulable => Ok(()),
            _ => Err(format!("{host} is schedulable")),
        },
        Operation::Uncordon { host } => match obs.node(host) {
            Some(n) if !n.unschedulable => Ok(()),
            _ => Err(format!("{host} is still cordoned")),
        },
    }
}

/// The state an operation's outcome leads to. A success counts only if the cluster shows it.
/// An operation that is no longer running in the store (marked failed meanwhile) changes
/// nothing.
pub fn finish(ctx: &Ctx<'_>, record: &OperationRecord, outcome: &OpStatus) -> WriteBatch {
    let Some(record) = ctx.snap.operation(&record.id) else {
        return WriteBatch::default();
    };
    let op = &record.op;
    let result = match outcome {
        OpStatus::Succeeded => {
            observed_done(ctx.obs, op).map_err(|why| format!("reported done, but {why}"))
        }
        OpStatus::Failed(why) => Err(why.clone()),
        OpStatus::NotStarted | OpStatus::Running => return WriteBatch::default(),
    };
    let mut w = Writer::new(ctx);
    let subject = op.host().unwrap_or("kube_upgrade").to_string();
    match &result {
        Ok(()) => w.event(EventKind::Operation, &subject, format!("{op}: done")),
        Err(why) => w.event(
            EventKind::Operation,
            &subject,
            format!("{op}: failed: {why}"),
        ),
    }
    settle(&mut w, op, result.is_ok());
    w.end_op(record, result.is_ok(), result.err());
    w.finish().batch
}

/// Moves the stored state on from an operation's end, if it still waits for that operation.
fn settle(w: &mut Writer<'_>, op: &Operation, ok: bool) {
    let state = w.upgrade.as_ref().map(|u| u.state);
    fn pick<T>(ok: bool, done: T, failed: T) -> T {
        if ok { done } else { failed }
    }
    // On the way back, a step that fails stops it (re-done by another abort); one cut short
    // by a restart of kup is simply done again.
    if state == Some(S::UpgradeAborting) && !ok && !w.recovering {
        w.set_state(S::UpgradeAbortingFailed);
    }
    match op {
        Operation::RestoreControlPlane { host, .. } => {
            w.set_host(
                host,
                pick(ok, None, Some(HS::UpgradingControlPlaneFailed)),
                None,
            );
        }
        Operation::DownloadImages { .. } if state == Some(S::DownloadingImages) => {
            w.set_state(pick(ok, S::DownloadedImages, S::DownloadingImagesFailed));
        }
        Operation::Cordon { .. } if state == Some(S::CordonStarted) => {
            w.set_state(pick(ok, S::CordonComplete, S::CordonFailed));
        }
        Operation::Uncordon { .. } if state == Some(S::UncordonStarted) => {
            w.set_state(pick(ok, S::UncordonComplete, S::UncordonFailed));
        }
        Operation::UpgradeNetworking { .. } if state == Some(S::UpgradingNetworking) => {
            w.set_state(pick(
                ok,
                S::UpgradedNetworking,
                S::UpgradingNetworkingFailed,
            ));
        }
        Operation::UpgradeControlPlane {
            host,
            first,
            version,
            ..
        } if state
            == Some(if *first {
                S::UpgradingFirstMaster
            } else {
                S::UpgradingSecondMaster
            }) =>
        {
            let next = match (first, ok) {
                (true, true) => Some(S::UpgradedFirstMaster),
                (true, false) => Some(S::UpgradingFirstMasterFailed),
                // Upgraded only when the last of the others is: until then the phase goes on.
                (false, true) if all_control_planes_at(w.ctx.obs, *version) => {
                    Some(S::UpgradedSecondMaster)
                }
                (false, true) => None,
                (false, false) => Some(S::UpgradingSecondMasterFailed),
            };
            if let Some(next) = next {
                w.set_state(next);
            }
            w.set_host(
                host,
                pick(ok, None, Some(HS::UpgradingControlPlaneFailed)),
                None,
            );
        }
        Operation::UpgradeKubelet { host, .. }
            if w.ctx.snap.host(host).and_then(|r| r.status) == Some(HS::UpgradingKubelet) =>
        {
            w.set_host(
                host,
                Some(pick(ok, HS::UpgradedKubelet, HS::UpgradingKubeletFailed)),
                None,
            );
        }
        _ => {}
    }
}

/// How an operation that a restart found unfinished is recorded failed: the process that ran
/// it is gone, not the step (a strategy's retries do not count it).
pub const IN_FLIGHT_AT_RESTART: &str = "in flight at restart and did not finish";

/// What a restart does with the operations that were in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub batch: WriteBatch,
    /// Still running on the cluster: followed again, not failed.
    pub reattach: Vec<OperationRecord>,
}

/// After a restart: every operation recorded as running is settled by what the driver says of
/// it (by its id) and what the cluster shows. Still running: followed again. Reported done and
/// observed: done. Anything else — failed, unknown to the driver (the process that ran it is
/// gone) and not observed — is marked failed (its step `-failed`, so the same command can re-do
/// it). An event says which, either way. For a store written before kup recorded operations,
/// the upgrade's state and host rows stand in for the records.
pub fn recover(ctx: &Ctx<'_>, driver: &BTreeMap<String, OpStatus>) -> Recovery {
    let mut w = Writer::new(ctx);
    w.recovering = true;
    let mut reattach = Vec::new();
    let mut in_flight: Vec<(Option<&OperationRecord>, Operation)> = Vec::new();
    for o in &ctx.snap.operations {
        if driver.get(&o.id) == Some(&OpStatus::Running) {
            w.event(
                EventKind::Recovery,
                o.op.host().unwrap_or("kube_upgrade"),
                format!(
                    "{} was in flight at restart and still runs: followed again",
                    o.op
                ),
            );
            reattach.push(o.clone());
        } else {
            in_flight.push((Some(o), o.op.clone()));
        }
    }
    for op in inferred_in_flight(ctx, &mut w) {
        let known = ctx
            .snap
            .operations
            .iter()
            .any(|o| OpSlot::of(&o.op) == OpSlot::of(&op));
        if !known {
            in_flight.push((None, op));
        }
    }
    for (record, op) in in_flight {
        let subject = op.host().unwrap_or("kube_upgrade").to_string();
        let reported = record.and_then(|r| driver.get(&r.id));
        let result = match reported {
            Some(OpStatus::Failed(why)) => Err(why.clone()),
            _ => observed_done(ctx.obs, &op),
        };
        match (&result, reported) {
            (Ok(()), _) => w.event(
                EventKind::Recovery,
                &subject,
                format!("{op} was in flight at restart and is observed finished"),
            ),
            (Err(why), Some(OpStatus::Failed(_))) => w.event(
                EventKind::Recovery,
                &subject,
                format!("{op} was in flight at restart and failed ({why}); marked failed"),
            ),
            (Err(why), _) => w.event(
                EventKind::Recovery,
                &subject,
                format!("{op} was in flight at restart and did not finish ({why}); marked failed"),
            ),
        }
        settle(&mut w, &op, result.is_ok());
        if let Some(r) = record {
            let detail = result
                .err()
                .map(|why| format!("{IN_FLIGHT_AT_RESTART}: {why}"));
            w.end_op(r, detail.is_none(), detail);
        }
    }
    Recovery {
        batch: w.finish().batch,
        reattach,
    }
}

/// The operations the upgrade's state and host rows say were running.
fn inferred_in_flight(ctx: &Ctx<'_>, w: &mut Writer<'_>) -> Vec<Operation> {
    let Some(u) = ctx.snap.upgrade.clone() else {
        return Vec::new();
    };
    let mut in_flight = Vec::new();
    match u.state {
        S::DownloadingImages => in_flight.push(download_op(ctx, &u)),
        S::UpgradingNetworking => in_flight.push(networking_op(ctx, u.to_version)),
        S::UpgradingFirstMaster | S::UpgradingSecondMaster => {
            let first = u.state == S::UpgradingFirstMaster;
            match ctx
                .snap
                .hosts
                .iter()
                .find(|r| r.status == Some(HS::UpgradingControlPlane))
            {
                Some(r) => in_flight.push(control_plane_op(
                    ctx,
                    &r.hostname,
                    r.target_version.unwrap_or(u.to_version),
                    first,
                )),
                // Between two of the control planes after the first: nothing was running.
                None if !first => {}
                None => {
                    w.event(
                        EventKind::Recovery,
                        "kube_upgrade",
                        "no host was upgrading its control plane",
                    );
                    w.set_state(u.state.failed().expect("in-flight state"));
                }
            }
        }
        _ => {}
    }
    for r in &ctx.snap.hosts {
        if r.status == Some(HS::UpgradingKubelet) {
            in_flight.push(kubelet_op(
                ctx,
                &r.hostname,
                r.target_version.unwrap_or(u.to_version),
            ));
        }
    }
    in_flight
}
