//! The SQLite implementation of [`Store`].

use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use kup_types::time;
use kup_types::{
    Event, EventKind, HostUpgradeRecord, HostUpgradeStatus, InstallWrite, KubeUpgradeRecord,
    KubeUpgradeState, KubeVersion, NewEvent, OperationRecord, OperationState, PatchInstall,
    PatchWrite, Snapshot, StrategyWrite, UpgradeWrite, WriteBatch,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Decode, Row, Sqlite, Type};

use crate::{Store, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const UPGRADE_COLUMNS: &str =
    "SELECT id, uuid, from_version, to_version, state, created_at, updated_at FROM kube_upgrade";
const HOST_COLUMNS: &str = "SELECT id, uuid, host_id, hostname, target_version, status, \
     created_at, updated_at FROM kube_host_upgrade ORDER BY id";

/// A [`Store`] in one SQLite file (WAL, `synchronous = FULL`): writes through a single
/// connection, reads of the event log through their own read-only connections, so a read
/// never waits behind a write.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it if it is missing, and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_file(path, true).await
    }

    /// Opens the existing database at `path` and migrates it; a missing file is an error, so a
    /// lost database is never silently replaced by an empty one.
    pub async fn open_existing(path: &Path) -> Result<Self, StoreError> {
        Self::open_file(path, false).await
    }

    async fn open_file(path: &Path, create: bool) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal);
        let mut store = Self::connect(options.clone(), path, !create).await?;
        match SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .connect_with(options.read_only(true).create_if_missing(false))
            .await
        {
            Ok(readers) => store.readers = readers,
            Err(source) => {
                store.pool.close().await;
                return Err(at_open(path, source, |source| StoreError::Open {
                    path: path.to_owned(),
                    source,
                }));
            }
        }
        Ok(store)
    }

    /// A private, empty in-memory database, for tests.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let path = Path::new(":memory:");
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(|source| {
            StoreError::Open {
                path: path.to_owned(),
                source,
            }
        })?;
        // An in-memory database lives in its one connection: reads share it.
        Self::connect(options, path, false).await
    }

    /// Waits for every connection to close, the readers' first: SQLite folds the WAL into
    /// the file only when the last connection closes, and a read-only one cannot, so the
    /// writer must be the last.
    pub async fn close(&self) {
        self.readers.close().await;
        self.pool.close().await;
    }

    /// `existing`: the file must already hold a kup store (its schema), so that a database
    /// whose write-ahead log was lost, or another program's, is never taken for an empty one.
    /// A file that exists is checked whole first (see [`check_integrity`]).
    async fn connect(
        options: SqliteConnectOptions,
        path: &Path,
        existing: bool,
    ) -> Result<Self, StoreError> {
        let in_memory = path == Path::new(":memory:");
        if existing || (!in_memory && std::fs::metadata(path).is_ok_and(|m| m.len() > 0)) {
            check_integrity(path).await?;
        }
        let options = options
            // FULL fsyncs the WAL on every commit: acknowledged means durable.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // One connection: writers queue for it instead of racing for SQLite's write lock.
        // It is never recycled, which also keeps an in-memory database alive.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|source| {
                at_open(path, source, |source| StoreError::Open {
                    path: path.to_owned(),
                    source,
                })
            })?;
        match prepare(&pool, path, existing).await {
            Ok(()) => Ok(Self {
                readers: pool.clone(),
                pool,
            }),
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut tx = self.pool.begin().await?;
        let upgrade = sqlx::query(UPGRADE_COLUMNS)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(upgrade_from_row)
            .transpose()?;
        let hosts = sqlx::query(HOST_COLUMNS)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(host_from_row)
            .collect::<Result<_, _>>()?;
        let patches = sqlx::query("SELECT id, record FROM patches ORDER BY id")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let text: String = row.try_get("record")?;
                serde_json::from_str(&text).map_err(|e| {
                    StoreError::Corrupt(format!("patches.record of {id:?} does not parse: {e}"))
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let installs = sqlx::query(
            "SELECT patch_id, hostname FROM patch_installs ORDER BY patch_id, hostname",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| {
            Ok(PatchInstall {
                patch_id: row.try_get("patch_id")?,
                hostname: row.try_get("hostname")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
        let attempts =
            sqlx::query("SELECT key, COUNT(*) AS n FROM operations WHERE key != '' GROUP BY key")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| {
                    let n: i64 = row.try_get("n")?;
                    Ok((row.try_get("key")?, u32::try_from(n).unwrap_or(u32::MAX)))
                })
                .collect::<Result<_, StoreError>>()?;
        let operations = sqlx::query(
            "SELECT id, op, state, attempt, started_at, deadline, ended_at, detail \
             FROM operations WHERE state = 'running' ORDER BY started_at, id",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(operation_from_row)
        .collect::<Result<_, StoreError>>()?;
        let mut strategy: Option<kup_types::StrategyRecord> =
            sqlx::query("SELECT record FROM strategy")
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| {
                    let text: String = row.try_get("record")?;
                    serde_json::from_str(&text).map_err(|e| {
                        StoreError::Corrupt(format!("strategy.record does not parse: {e}"))
                    })
                })
                .transpose()?;
        if let Some(record) = &mut strategy {
            record.apply_phase.stages =
                sqlx::query("SELECT position, stage FROM strategy_stage ORDER BY position")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|row| {
                        let (position, text): (i64, String) =
                            (row.try_get("position")?, row.try_get("stage")?);
                        serde_json::from_str(&text).map_err(|e| {
                            StoreError::Corrupt(format!(
                                "strategy_stage.stage at position {position} does not parse: {e}"
                            ))
                        })
                    })
                    .collect::<Result<_, StoreError>>()?;
        }
        let strategy = strategy.map(std::sync::Arc::new);
        tx.commit().await?;
        let mut snap = Snapshot {
            upgrade,
            hosts,
            patches,
            installs,
            operations,
            attempts,
            strategy,
            index: Default::default(),
        };
        snap.reindex();
        Ok(snap)
    }

    async fn commit(&self, batch: WriteBatch) -> Result<Vec<Event>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await?;
        let result = write(&mut conn, batch).await;
        if result.is_err() {
            settle(conn).await;
        }
        result
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A real, tiny write: a store that can be read but not written is not healthy.
        self.commit_probe().await
    }

    async fn events(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        sqlx::query(
            "SELECT seq, at, kind, subject, message FROM events \
             WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(event_from_row)
        .collect()
    }

    async fn operation_history(&self, key: &str) -> Result<Vec<OperationRecord>, StoreError> {
        sqlx::query(
            "SELECT id, op, state, attempt, started_at, deadline, ended_at, detail \
             FROM operations WHERE key = ? ORDER BY started_at, id",
        )
        .bind(key)
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(operation_from_row)
        .collect()
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
            .fetch_one(&self.readers)
            .await?;
        Ok(seq.unwrap_or(0))
    }
}

impl SqliteStore {
    async fn commit_probe(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let now = time::format(&jiff::Timestamp::now());
        let probe = async {
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ('checked_at', ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = probe {
            settle(conn).await;
            return Err(e.into());
        }
        Ok(())
    }
}

/// After a failed transaction: the rollback its drop queued runs before any next statement;
/// if the connection is still in a transaction then (SQLite rolled back by itself, say after
/// a full disk refused the COMMIT, and the second rollback failed), the connection is closed
/// so that the next write gets a clean one instead of failing for ever.
async fn settle(mut conn: sqlx::pool::PoolConnection<Sqlite>) {
    let settled = sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok();
    if !settled || conn.is_in_transaction() {
        tracing::warn!("closing a database connection left in a failed transaction");
        let _ = conn.close().await;
    }
}

/// One batch in one transaction. IMMEDIATE takes the write lock up front, so the transaction
/// cannot fail halfway on a lock upgrade; any error rolls the whole batch back.
async fn write(conn: &mut SqliteConnection, batch: WriteBatch) -> Result<Vec<Event>, StoreError> {
    {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        match &batch.upgrade {
            Some(UpgradeWrite::Create(record)) => create_upgrade(&mut tx, record).await?,
            Some(UpgradeWrite::Put(record)) => put_upgrade(&mut tx, record).await?,
            Some(UpgradeWrite::Delete) => {
                sqlx::query("DELETE FROM kube_upgrade")
                    .execute(&mut *tx)
                    .await?;
            }
            None => {}
        }
        match &batch.strategy {
            Some(StrategyWrite::Put(record)) => {
                put_strategy(&mut tx, record, 0..record.apply_phase.stages.len()).await?;
            }
            Some(StrategyWrite::Progress { record, changed }) => {
                put_strategy(&mut tx, record, changed.iter().copied()).await?;
            }
            Some(StrategyWrite::Delete) => {
                for sql in ["DELETE FROM strategy", "DELETE FROM strategy_stage"] {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
            }
            None => {}
        }
        for host in &batch.hosts {
            put_host(&mut tx, host).await?;
        }
        for write in &batch.patches {
            match write {
                PatchWrite::Put(p) => {
                    let record = serde_json::to_string(p).map_err(|e| {
                        StoreError::Corrupt(format!("patch {} does not serialize: {e}", p.id))
                    })?;
                    sqlx::query(
                        "INSERT INTO patches (id, state, record) VALUES (?, ?, ?) \
                         ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
                             record = excluded.record",
                    )
                    .bind(&p.id)
                    .bind(p.state.as_str())
                    .bind(record)
                    .execute(&mut *tx)
                    .await?;
                }
                PatchWrite::Delete(id) => {
                    sqlx::query("DELETE FROM patches WHERE id = ?")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        for write in &batch.installs {
            let (sql, i) = match write {
                InstallWrite::Add(i) => (
                    "INSERT INTO patch_installs (patch_id, hostname) VALUES (?, ?) \
                     ON CONFLICT DO NOTHING",
                    i,
                ),
                InstallWrite::Remove(i) => (
                    "DELETE FROM patch_installs WHERE patch_id = ? AND hostname = ?",
                    i,
                ),
            };
            sqlx::query(sql)
                .bind(&i.patch_id)
                .bind(&i.hostname)
                .execute(&mut *tx)
                .await?;
        }
        for o in &batch.operations {
            put_operation(&mut tx, o).await?;
        }
        let mut events = Vec::with_capacity(batch.events.len());
        for event in batch.events {
            events.push(append_event(&mut tx, event).await?);
        }
        tx.commit().await?;
        Ok(events)
    }
}

/// Checks that the file holds a kup store, migrates it, and writes to it once.
async fn prepare(pool: &SqlitePool, path: &Path, existing: bool) -> Result<(), StoreError> {
    if existing {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(pool)
                .await
                .map_err(|e| at_open(path, e, StoreError::Database))?;
        if !tables.iter().any(|t| t == "_sqlx_migrations") {
            return Err(StoreError::NotAStore {
                path: path.to_owned(),
                why: if tables.is_empty() {
                    "it holds no kup store (was its -wal file lost?)"
                } else {
                    "it holds another program's tables"
                },
            });
        }
    }
    MIGRATOR.run(pool).await.map_err(|e| {
        let inner = match &e {
            sqlx::migrate::MigrateError::Execute(inner)
            | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => Some(inner),
            _ => None,
        };
        inner
            .and_then(|inner| refusal(path, inner))
            .unwrap_or(StoreError::Migrate(e))
    })?;
    // A store that cannot be written is refused now, not at the first command: this write
    // fails on a read-only file or directory.
    let now = time::format(&jiff::Timestamp::now());
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| at_open(path, e, StoreError::Database))?;
    for sql in [
        "INSERT INTO meta (key, value) VALUES ('created_at', ?) ON CONFLICT (key) DO NOTHING",
        "INSERT INTO meta (key, value) VALUES ('opened_at', ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ] {
        sqlx::query(sql)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(|e| at_open(path, e, StoreError::Database))?;
    }
    tx.commit()
        .await
        .map_err(|e| at_open(path, e, StoreError::Database))
}

/// How many of SQLite's findings a [`StoreError::Damaged`] names.
const FINDINGS: usize = 3;

/// SQLite's integrity check of the whole file, through a read-only connection opened before
/// anything else (the read-write connection may switch the journal mode, migrations and the
/// open's own write change the file): a damaged store is refused as it is, never written
/// over. `integrity_check` rather than `quick_check`: it also compares every index with its
/// table (a row its index lacks passes `quick_check`), for 0.03 s on a 12 MB store (an
/// upgrade of 5,000 hosts) and 0.4 s on 120 MB (see RELIABILITY.md).
pub(crate) async fn check_integrity(path: &Path) -> Result<(), StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|source| {
            at_open(path, source, |source| StoreError::Open {
                path: path.to_owned(),
                source,
            })
        })?;
    let found: Result<Vec<String>, _> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "PRAGMA integrity_check({})",
        FINDINGS + 1
    )))
    .fetch_all(&mut conn)
    .await;
    let _ = conn.close().await;
    let found = found.map_err(|e| at_open(path, e, StoreError::Database))?;
    if found == ["ok"] {
        return Ok(());
    }
    // Findings come as rows or as lines of one row, after a header ("*** in database main
    // ***").
    let findings: Vec<String> = found
        .iter()
        .flat_map(|f| f.lines())
        .filter(|l| !l.starts_with("***"))
        .map(one_line)
        .filter(|f| !f.is_empty())
        .collect();
    let mut why = findings[..findings.len().min(FINDINGS)].join("; ");
    if findings.len() > FINDINGS {
        why.push_str("; and more");
    }
    if why.is_empty() {
        why = "its integrity check failed".into();
    }
    Err(StoreError::Damaged {
        path: path.to_owned(),
        why,
    })
}

/// An error of the open that an operator acts on differently from any other: a file kup may
/// not write, or one SQLite finds damaged.
fn refusal(path: &Path, e: &sqlx::Error) -> Option<StoreError> {
    if is_read_only(e) {
        return Some(StoreError::ReadOnly(path.to_owned()));
    }
    damage(e).map(|why| StoreError::Damaged {
        path: path.to_owned(),
        why,
    })
}

/// [`refusal`], or else what `other` makes of the error.
fn at_open(
    path: &Path,
    e: sqlx::Error,
    other: impl FnOnce(sqlx::Error) -> StoreError,
) -> StoreError {
    refusal(path, &e).unwrap_or_else(|| other(e))
}

/// SQLITE_CORRUPT and SQLITE_NOTADB (with their extended codes): SQLite's words for it.
fn damage(e: &sqlx::Error) -> Option<String> {
    let db = e.as_database_error()?;
    let code = db.code()?.parse::<i32>().ok()?;
    matches!(code & 0xff, 11 | 26).then(|| one_line(db.message()))
}

/// Text from SQLite for a one-line message: control characters become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// What a client is told about a damaged store.
pub(crate) const DAMAGED: &str = "the store's file is damaged";

/// The kind of a database error that an operator can act on (SQLite's primary result codes),
/// for [`StoreError::summary`].
pub(crate) fn summary(e: &sqlx::Error) -> Option<&'static str> {
    if matches!(e, sqlx::Error::Io(_)) {
        return Some("the store cannot read or write its file");
    }
    let code = e.as_database_error()?.code()?.parse::<i32>().ok()?;
    match code & 0xff {
        13 => Some("the store's disk is full"),
        8 => Some("the store cannot be written"),
        10 => Some("the store cannot read or write its file"),
        5 | 6 => Some("the store is busy"),
        11 | 26 => Some(DAMAGED),
        _ => None,
    }
}

/// SQLITE_READONLY and its extended codes, or SQLite's own wording for them.
fn is_read_only(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    let code = db.code().and_then(|c| c.parse::<i32>().ok());
    code.is_some_and(|c| c & 0xff == 8) || db.message().contains("readonly")
}

/// Inserts the upgrade; the `singleton` column makes a second one a conflict, whoever asks.
async fn create_upgrade(
    conn: &mut SqliteConnection,
    r: &KubeUpgradeRecord,
) -> Result<(), StoreError> {
    let res = sqlx::query(
        "INSERT INTO kube_upgrade \
             (id, singleton, uuid, from_version, to_version, state, created_at, updated_at) \
         VALUES (?, 1, ?, ?, ?, ?, ?, ?)",
    )
    .bind(r.id)
    .bind(&r.uuid)
    .bind(r.from_version.to_string())
    .bind(r.to_version.to_string())
    .bind(r.state.as_str())
    .bind(time::format(&r.created_at))
    .bind(r.updated_at.as_ref().map(time::format))
    .execute(conn)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
            "a kubernetes upgrade already exists".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Updates the stored upgrade with the same uuid; nothing else may be overwritten.
async fn put_upgrade(conn: &mut SqliteConnection, r: &KubeUpgradeRecord) -> Result<(), StoreError> {
    let res = sqlx::query(
        "UPDATE kube_upgrade SET id = ?, from_version = ?, to_version = ?, state = ?, \
             created_at = ?, updated_at = ? \
         WHERE uuid = ?",
    )
    .bind(r.id)
    .bind(r.from_version.to_string())
    .bind(r.to_version.to_string())
    .bind(r.state.as_str())
    .bind(time::format(&r.created_at))
    .bind(r.updated_at.as_ref().map(time::format))
    .bind(&r.uuid)
    .execute(conn)
    .await?;
    if res.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!(
            "kubernetes upgrade {} is not stored",
            r.uuid
        )));
    }
    Ok(())
}

/// Writes the strategy's record (its apply stages apart), the apply stages at `stages`, and
/// drops the stage rows past its last one.
async fn put_strategy(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    record: &kup_types::StrategyRecord,
    stages: impl Iterator<Item = usize>,
) -> Result<(), StoreError> {
    let corrupt = |e: serde_json::Error| {
        StoreError::Corrupt(format!("strategy {} does not serialize: {e}", record.uuid))
    };
    // The record without its apply stages, which have rows of their own (a copy of the record
    // shares its stages, so this costs the header, not the stages).
    let mut header = record.clone();
    header.apply_phase.stages.clear();
    let header = serde_json::to_string(&header).map_err(corrupt)?;
    sqlx::query(
        "INSERT INTO strategy (singleton, uuid, state, record) VALUES (1, ?, ?, ?) \
         ON CONFLICT (singleton) DO UPDATE SET uuid = excluded.uuid, \
             state = excluded.state, record = excluded.record",
    )
    .bind(&record.uuid)
    .bind(record.state.as_str())
    .bind(header)
    .execute(&mut **tx)
    .await?;
    let all = &record.apply_phase.stages;
    for i in stages.filter(|&i| i < all.len()) {
        let text = serde_json::to_string(&all[i]).map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO strategy_stage (position, stage) VALUES (?, ?) \
             ON CONFLICT (position) DO UPDATE SET stage = excluded.stage",
        )
        .bind(i as i64)
        .bind(text)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("DELETE FROM strategy_stage WHERE position >= ?")
        .bind(all.len() as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Inserts or replaces a host row by id. A hostname, uuid or host_id already used by another
/// row is a constraint error (the batch fails) rather than a silent delete of that row.
async fn put_host(conn: &mut SqliteConnection, h: &HostUpgradeRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO kube_host_upgrade \
             (id, uuid, host_id, hostname, target_version, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET \
             uuid = excluded.uuid, host_id = excluded.host_id, hostname = excluded.hostname, \
             target_version = excluded.target_version, status = excluded.status, \
             created_at = excluded.created_at, updated_at = excluded.updated_at",
    )
    .bind(h.id)
    .bind(&h.uuid)
    .bind(h.host_id)
    .bind(&h.hostname)
    .bind(h.target_version.map(|v| v.to_string()))
    .bind(h.status.map(|s| s.as_str()))
    .bind(time::format(&h.created_at))
    .bind(h.updated_at.as_ref().map(time::format))
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts or replaces an operation record by id.
async fn put_operation(conn: &mut SqliteConnection, o: &OperationRecord) -> Result<(), StoreError> {
    let op = serde_json::to_string(&o.op)
        .map_err(|e| StoreError::Corrupt(format!("operation {} does not serialize: {e}", o.id)))?;
    sqlx::query(
        "INSERT INTO operations \
             (id, kind, host, op, key, state, attempt, started_at, deadline, ended_at, detail) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, ended_at = excluded.ended_at, \
             detail = excluded.detail",
    )
    .bind(&o.id)
    .bind(o.op.kind().as_str())
    .bind(o.op.host())
    .bind(op)
    .bind(o.op.key())
    .bind(o.state.as_str())
    .bind(i64::from(o.attempt))
    .bind(time::format(&o.started_at))
    .bind(time::format(&o.deadline))
    .bind(o.ended_at.as_ref().map(time::format))
    .bind(&o.detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends one event. The seq is allocated inside the write transaction, so it is gapless
/// (a rolled-back batch allocates nothing), unlike AUTOINCREMENT.
async fn append_event(conn: &mut SqliteConnection, e: NewEvent) -> Result<Event, StoreError> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (seq, at, kind, subject, message) \
         SELECT COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM events \
         RETURNING seq",
    )
    .bind(time::format(&e.at))
    .bind(e.kind.as_str())
    .bind(&e.subject)
    .bind(&e.message)
    .fetch_one(conn)
    .await?;
    Ok(Event {
        seq,
        at: e.at,
        kind: e.kind,
        subject: e.subject,
        message: e.message,
    })
}

fn upgrade_from_row(row: &SqliteRow) -> Result<KubeUpgradeRecord, StoreError> {
    let r = Columns {
        row,
        table: "kube_upgrade",
    };
    Ok(KubeUpgradeRecord {
        id: r.get("id")?,
        uuid: r.get("uuid")?,
        from_version: r.parse("from_version", KubeVersion::parse)?,
        to_version: r.parse("to_version", KubeVersion::parse)?,
        state: r.parse("state", KubeUpgradeState::from_str)?,
        created_at: r.parse("created_at", time::parse)?,
        updated_at: r.parse_opt("updated_at", time::parse)?,
    })
}

fn host_from_row(row: &SqliteRow) -> Result<HostUpgradeRecord, StoreError> {
    let r = Columns {
        row,
        table: "kube_host_upgrade",
    };
    Ok(HostUpgradeRecord {
        id: r.get("id")?,
        uuid: r.get("uuid")?,
        host_id: r.get("host_id")?,
        hostname: r.get("hostname")?,
        target_version: r.parse_opt("target_version", KubeVersion::parse)?,
        status: r.parse_opt("status", HostUpgradeStatus::from_str)?,
        created_at: r.parse("created_at", time::parse)?,
        updated_at: r.parse_opt("updated_at", time::parse)?,
    })
}

fn operation_from_row(row: &SqliteRow) -> Result<OperationRecord, StoreError> {
    let r = Columns {
        row,
        table: "operations",
    };
    Ok(OperationRecord {
        id: r.get("id")?,
        op: r.parse("op", |s| serde_json::from_str(s))?,
        state: r.parse("state", |s| {
            OperationState::parse(s).ok_or("unknown operation state")
        })?,
        attempt: u32::try_from(r.get::<i64>("attempt")?).unwrap_or(1),
        started_at: r.parse("started_at", time::parse)?,
        // Records written before deadlines existed: hung from the start.
        deadline: r
            .parse_opt("deadline", time::parse)?
            .unwrap_or(r.parse("started_at", time::parse)?),
        ended_at: r.parse_opt("ended_at", time::parse)?,
        detail: r.get("detail")?,
    })
}

fn event_from_row(row: &SqliteRow) -> Result<Event, StoreError> {
    let r = Columns {
        row,
        table: "events",
    };
    Ok(Event {
        seq: r.get("seq")?,
        at: r.parse("at", time::parse)?,
        kind: r.parse("kind", |s| EventKind::parse(s).ok_or("unknown event kind"))?,
        subject: r.get("subject")?,
        message: r.get("message")?,
    })
}

/// Reads a row's columns, turning undecodable or unparsable values into
/// [`StoreError::Corrupt`] naming the table, column and value.
struct Columns<'r> {
    row: &'r SqliteRow,
    table: &'static str,
}

impl<'r> Columns<'r> {
    fn get<T: Decode<'r, Sqlite> + Type<Sqlite>>(&self, column: &str) -> Result<T, StoreError> {
        self.row.try_get(column).map_err(|e| match e {
            sqlx::Error::ColumnDecode { source, .. } => {
                StoreError::Corrupt(format!("{}.{column}: {source}", self.table))
            }
            e => StoreError::Database(e),
        })
    }

    fn parse<T, E: Display>(
        &self,
        column: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, StoreError> {
        let value: String = self.get(column)?;
        parse(&value).map_err(|e| self.corrupt(column, &value, e))
    }

    fn parse_opt<T, E: Display>(
        &self,
        column: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, StoreError> {
        let value: Option<String> = self.get(column)?;
        value
            .map(|v| parse(&v).map_err(|e| self.corrupt(column, &v, e)))
            .transpose()
    }

    fn corrupt(&self, column: &str, value: &str, e: impl Display) -> StoreError {
        StoreError::Corrupt(format!("{}.{column} = {value:?}: {e}", self.table))
    }
}
