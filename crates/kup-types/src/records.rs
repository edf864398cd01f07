//! What kup stores: intent and progress. The store is the source of truth for these, the
//! cluster for everything in `cluster`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::index::NameIndex;
use crate::{
    HostUpgradeStatus, KubeUpgradeState, KubeVersion, Operation, PatchKind, PatchState, VersionMeta,
};

/// The (single) Kubernetes upgrade in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeUpgradeRecord {
    pub id: i64,
    pub uuid: String,
    pub from_version: KubeVersion,
    pub to_version: KubeVersion,
    pub state: KubeUpgradeState,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// Per-host upgrade progress; one row per host, created when kup first sees the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostUpgradeRecord {
    /// Equal to the host's id, so the row and the host join trivially.
    pub id: i64,
    pub uuid: String,
    pub host_id: i64,
    pub hostname: String,
    pub target_version: Option<KubeVersion>,
    pub status: Option<HostUpgradeStatus>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// A software patch in the repository (its verified bundle is kept beside the store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRecord {
    pub id: String,
    pub kind: PatchKind,
    pub summary: String,
    /// Patches that must be applied before this one (and stay applied while it is).
    pub requires: Vec<String>,
    /// The Kubernetes version whose binaries a kubeadm or kubelet patch delivers.
    pub delivers: Option<KubeVersion>,
    /// The version metadata a platform patch adds to the catalog once applied.
    pub version_meta: Option<VersionMeta>,
    /// The networking manifests (payload paths) a platform patch applies during the upgrade.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networking_manifests: Vec<String>,
    pub state: PatchState,
    /// Which trusted key signed it.
    pub key_id: String,
    /// The payload files, by path.
    pub files: Vec<String>,
    pub uploaded_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// A patch installed on a host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PatchInstall {
    pub patch_id: String,
    pub hostname: String,
}

/// Where an operation the engine started stands, as the store records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationState {
    Running,
    Succeeded,
    Failed,
}

impl OperationState {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Running => "running",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// An operation on the cluster, recorded in the same transaction as the decision that
/// started it, so that a restart knows exactly what was in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub id: String,
    pub op: Operation,
    pub state: OperationState,
    /// 1 for the first run of this step (same kind, host and version), 2 for its re-do, ...
    pub attempt: u32,
    pub started_at: Timestamp,
    /// When it counts as hung: it is then marked failed, "timed out".
    pub deadline: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// Why it failed, or how it was settled.
    pub detail: Option<String>,
}

impl OperationRecord {
    pub fn running(&self) -> bool {
        self.state == OperationState::Running
    }
}

/// Everything the store holds, read in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub upgrade: Option<KubeUpgradeRecord>,
    /// Sorted by id.
    pub hosts: Vec<HostUpgradeRecord>,
    /// Sorted by id.
    pub patches: Vec<PatchRecord>,
    /// Sorted.
    pub installs: Vec<PatchInstall>,
    /// The operations still running, sorted by start time (finished ones stay in the store
    /// as history but are not part of the snapshot).
    #[serde(default)]
    pub operations: Vec<OperationRecord>,
    /// How many runs each step has had ([`Operation::key`] → count), for the next attempt.
    #[serde(default)]
    pub attempts: BTreeMap<String, u32>,
    /// The upgrade strategy, if one was created. Shared: it grows with the cluster, and its
    /// readers (the runner, the API) must not copy it.
    #[serde(default)]
    pub strategy: Option<std::sync::Arc<crate::StrategyRecord>>,
    /// Host rows by hostname (see [`Snapshot::reindex`]).
    #[serde(skip)]
    pub index: NameIndex,
}

impl Snapshot {
    /// Builds the hostname index; the store calls it once the rows are read.
    pub fn reindex(&mut self) {
        self.index = NameIndex::build(self.hosts.iter().map(|h| h.hostname.as_str()));
    }

    pub fn host(&self, hostname: &str) -> Option<&HostUpgradeRecord> {
        let i = self
            .index
            .find(&self.hosts, hostname, |h| h.hostname.as_str())?;
        Some(&self.hosts[i])
    }

    pub fn patch(&self, id: &str) -> Option<&PatchRecord> {
        self.patches.iter().find(|p| p.id == id)
    }

    /// The running operation with this id.
    pub fn operation(&self, id: &str) -> Option<&OperationRecord> {
        self.operations.iter().find(|o| o.id == id)
    }

    pub fn installed(&self, patch_id: &str, hostname: &str) -> bool {
        self.installs
            .iter()
            .any(|i| i.patch_id == patch_id && i.hostname == hostname)
    }

    /// The snapshot as it is once `batch` is committed.
    pub fn apply(&mut self, batch: &WriteBatch) {
        match &batch.upgrade {
            Some(UpgradeWrite::Create(r) | UpgradeWrite::Put(r)) => self.upgrade = Some(r.clone()),
            Some(UpgradeWrite::Delete) => self.upgrade = None,
            None => {}
        }
        let mut added = false;
        for row in &batch.hosts {
            match self.hosts.binary_search_by_key(&row.id, |h| h.id) {
                Ok(i) => self.hosts[i] = row.clone(),
                Err(i) => {
                    self.hosts.insert(i, row.clone());
                    added = true;
                }
            }
        }
        if added {
            self.reindex();
        }
        for w in &batch.patches {
            match w {
                PatchWrite::Put(p) => match self.patches.iter_mut().find(|q| q.id == p.id) {
                    Some(q) => *q = p.clone(),
                    None => self.patches.push(p.clone()),
                },
                PatchWrite::Delete(id) => self.patches.retain(|q| &q.id != id),
            }
        }
        self.patches.sort_by(|a, b| a.id.cmp(&b.id));
        for w in &batch.installs {
            match w {
                InstallWrite::Add(i) => {
                    if !self.installs.contains(i) {
                        self.installs.push(i.clone());
                    }
                }
                InstallWrite::Remove(i) => self.installs.retain(|j| j != i),
            }
        }
        self.installs.sort();
        match &batch.strategy {
            Some(StrategyWrite::Put(r) | StrategyWrite::Progress { record: r, .. }) => {
                self.strategy = Some(std::sync::Arc::clone(r))
            }
            Some(StrategyWrite::Delete) => self.strategy = None,
            None => {}
        }
        for o in &batch.operations {
            let new = o.running() && self.operation(&o.id).is_none();
            if new {
                *self.attempts.entry(o.op.key()).or_default() += 1;
            }
            self.operations.retain(|p| p.id != o.id);
            if o.running() {
                self.operations.push(o.clone());
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// A handful per batch: boxing the record would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum PatchWrite {
    /// Insert or replace the patch with this id.
    Put(PatchRecord),
    Delete(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstallWrite {
    Add(PatchInstall),
    Remove(PatchInstall),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpgradeWrite {
    /// A new upgrade; refused by the store if one exists (the last word on a racing start).
    Create(KubeUpgradeRecord),
    /// A change to the existing upgrade with the same uuid; refused if it is gone.
    Put(KubeUpgradeRecord),
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StrategyWrite {
    /// Create or replace the strategy (there is at most one).
    Put(std::sync::Arc<crate::StrategyRecord>),
    /// The stored strategy moved on: only its settings and state, its number of apply stages
    /// and the apply stages at `changed` differ from it. A store may write just those (the
    /// record grows with the batches; a step changes one stage).
    Progress {
        record: std::sync::Arc<crate::StrategyRecord>,
        changed: Vec<usize>,
    },
    Delete,
}

impl StrategyWrite {
    /// A `Put` of the strategy `stored` already holds (same uuid) as the `Progress` it is.
    pub fn against(self, stored: Option<&crate::StrategyRecord>) -> StrategyWrite {
        match (self, stored) {
            (StrategyWrite::Put(record), Some(old)) if old.uuid == record.uuid => {
                let (new, old) = (&record.apply_phase.stages, &old.apply_phase.stages);
                let changed = (0..new.len())
                    .filter(|&i| old.get(i) != Some(&new[i]))
                    .collect();
                StrategyWrite::Progress { record, changed }
            }
            (w, _) => w,
        }
    }
}

/// One atomic change: written in a single transaction, with its events, or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    pub upgrade: Option<UpgradeWrite>,
    pub strategy: Option<StrategyWrite>,
    /// Host rows to insert or replace.
    pub hosts: Vec<HostUpgradeRecord>,
    pub patches: Vec<PatchWrite>,
    pub installs: Vec<InstallWrite>,
    /// Operation records to insert or replace (by id).
    pub operations: Vec<OperationRecord>,
    pub events: Vec<NewEvent>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.upgrade.is_none()
            && self.strategy.is_none()
            && self.hosts.is_empty()
            && self.patches.is_empty()
            && self.installs.is_empty()
            && self.operations.is_empty()
            && self.events.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A command was accepted.
    Command,
    /// The cluster-level upgrade state changed.
    State,
    /// A host's upgrade status changed.
    Host,
    /// An operation on the cluster finished (or failed).
    Operation,
    /// Something kup did on its own, e.g. recovery after a restart.
    Recovery,
    /// The upgrade strategy was created, changed state or moved on.
    Strategy,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Command => "command",
            EventKind::State => "state",
            EventKind::Host => "host",
            EventKind::Operation => "operation",
            EventKind::Recovery => "recovery",
            EventKind::Strategy => "strategy",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Command,
            Self::State,
            Self::Host,
            Self::Operation,
            Self::Recovery,
            Self::Strategy,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub at: Timestamp,
    pub kind: EventKind,
    /// `kube_upgrade` or a hostname.
    pub subject: String,
    pub message: String,
}

/// An entry of the append-only event log. `seq` starts at 1 and has no gaps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    #[serde(with = "crate::time::serde_ts")]
    pub at: Timestamp,
    pub kind: EventKind,
    pub subject: String,
    pub message: String,
}
