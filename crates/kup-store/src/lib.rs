//! kup's durable store: the upgrade record, per-host records and the event log.
//!
//! The store is the source of truth for intent and progress; every change is one atomic
//! [`WriteBatch`], durable before [`Store::commit`] returns.

use std::path::PathBuf;

use kup_types::{Event, Snapshot, WriteBatch};

#[macro_use]
mod sql;
mod pg;
mod sqlite;

pub use pg::{Lease, PgStore, Replica, ReplicaSeen};
pub use sqlite::SqliteStore;

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The upgrade row (if any) and all host rows sorted by id, read in one transaction.
    async fn snapshot(&self) -> Result<Snapshot, StoreError>;

    /// Applies `batch` atomically and returns the appended events with their `seq`.
    /// An empty batch is a no-op.
    async fn commit(&self, batch: WriteBatch) -> Result<Vec<Event>, StoreError>;

    /// Whether the database answers (for `/healthz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Events with `seq > after_seq`, ascending, at most `limit` of them.
    async fn events(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, StoreError>;

    /// The events about one subject (a hostname, `kube_upgrade`, ...) with `seq > after_seq`,
    /// ascending, at most `limit` of them.
    async fn events_of(
        &self,
        subject: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// Every run of one step ([`kup_types::Operation::key`]), oldest first.
    async fn operation_history(
        &self,
        key: &str,
    ) -> Result<Vec<kup_types::OperationRecord>, StoreError>;

    /// The sequence number of the newest event (0 for an empty log).
    async fn last_event_seq(&self) -> Result<i64, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "database {} is read-only: kup must be able to write it and its directory (check their owner and permissions)",
        .0.display()
    )]
    ReadOnly(PathBuf),
    #[error(
        "database {} is not kup's: {why}; restore kup's database from a backup, or move this file away and start with --init",
        path.display()
    )]
    NotAStore { path: PathBuf, why: &'static str },
    /// SQLite finds the file damaged (not a database, pages that do not add up), at open or
    /// by its integrity check; `why` is what SQLite says, on one line.
    #[error(
        "database {} is damaged ({why}): restore it from a backup; kup does not start on a damaged store",
        path.display()
    )]
    Damaged { path: PathBuf, why: String },
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A PostgreSQL store's database error (its words are a server's and a network's, not a
    /// file's).
    #[error("database error: {0}")]
    Postgres(#[source] sqlx::Error),
    /// A write that contradicts what is stored (a second upgrade, a vanished one).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored value that does not parse; names the table, column and value.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("the database URL does not parse: {0}")]
    Url(#[source] sqlx::Error),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A write on a shared database by a daemon that does not lead.
    #[error("this daemon does not lead: only the leader writes to the shared store")]
    NotLeader,
    /// A write under a fencing token that another daemon's takeover has replaced.
    #[error(
        "this daemon no longer leads: it wrote under fencing token {token}, and the lease now has {now}"
    )]
    Fenced { token: i64, now: i64 },
}

impl StoreError {
    /// A write refused because this daemon does not lead (a shared store's standby, or a
    /// deposed leader): another replica takes it.
    pub fn is_not_leader(&self) -> bool {
        matches!(self, StoreError::NotLeader | StoreError::Fenced { .. })
    }

    /// What went wrong, in words a client may be shown: what an operator can act on, never
    /// the database's own text (SQL, table names, paths), which `Display` carries for the log.
    pub fn summary(&self) -> &'static str {
        match self {
            StoreError::ReadOnly(_) => "the store cannot be written",
            StoreError::Damaged { .. } => sqlite::DAMAGED,
            StoreError::NotAStore { .. } | StoreError::Corrupt(_) => {
                "the store holds data kup cannot read"
            }
            StoreError::Conflict(_) => "the store refused a conflicting write",
            StoreError::Database(e) | StoreError::Open { source: e, .. } => {
                sqlite::summary(e).unwrap_or("the store failed")
            }
            StoreError::Postgres(e) => pg::summary(e).unwrap_or("the store failed"),
            StoreError::Url(_) | StoreError::Connect(_) => "the store's database cannot be reached",
            StoreError::NotLeader | StoreError::Fenced { .. } => "this daemon no longer leads",
            StoreError::Migrate(_) => "the store failed",
        }
    }
}

#[cfg(test)]
mod tests;
