//! What kup stores: intent and progress. The store is the source of truth for these, the
//! cluster for everything in `cluster`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{HostUpgradeStatus, KubeUpgradeState, KubeVersion};

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

/// Everything the store holds about the upgrade, read in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub upgrade: Option<KubeUpgradeRecord>,
    /// Sorted by id.
    pub hosts: Vec<HostUpgradeRecord>,
}

impl Snapshot {
    pub fn host(&self, hostname: &str) -> Option<&HostUpgradeRecord> {
        self.hosts.iter().find(|h| h.hostname == hostname)
    }

    /// The snapshot as it is once `batch` is committed.
    pub fn apply(&mut self, batch: &WriteBatch) {
        match &batch.upgrade {
            Some(UpgradeWrite::Create(r) | UpgradeWrite::Put(r)) => self.upgrade = Some(r.clone()),
            Some(UpgradeWrite::Delete) => self.upgrade = None,
            None => {}
        }
        for row in &batch.hosts {
            match self.hosts.iter_mut().find(|h| h.id == row.id) {
                Some(h) => *h = row.clone(),
                None => self.hosts.push(row.clone()),
            }
        }
        self.hosts.sort_by_key(|h| h.id);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpgradeWrite {
    /// A new upgrade; refused by the store if one exists (the last word on a racing start).
    Create(KubeUpgradeRecord),
    /// A change to the existing upgrade with the same uuid; refused if it is gone.
    Put(KubeUpgradeRecord),
    Delete,
}

/// One atomic change: written in a single transaction, with its events, or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    pub upgrade: Option<UpgradeWrite>,
    /// Host rows to insert or replace.
    pub hosts: Vec<HostUpgradeRecord>,
    pub events: Vec<NewEvent>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.upgrade.is_none() && self.hosts.is_empty() && self.events.is_empty()
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
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Command => "command",
            EventKind::State => "state",
            EventKind::Host => "host",
            EventKind::Operation => "operation",
            EventKind::Recovery => "recovery",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Command,
            Self::State,
            Self::Host,
            Self::Operation,
            Self::Recovery,
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
