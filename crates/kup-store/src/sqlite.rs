//! The SQLite implementation of [`Store`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use kup_types::time;
use kup_types::{Event, OperationRecord, Snapshot, WriteBatch};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Sqlite};

use crate::{Store, StoreError};

mod q {
    crate::sql::queries!(
        sqlx::Sqlite,
        sqlx::SqliteConnection,
        sqlx::sqlite::SqliteRow
    );
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

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
        let snap = q::read_snapshot(&mut tx).await?;
        tx.commit().await?;
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
        q::events(&mut *self.readers.acquire().await?, after_seq, limit).await
    }

    async fn events_of(
        &self,
        subject: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        q::events_of(
            &mut *self.readers.acquire().await?,
            subject,
            after_seq,
            limit,
        )
        .await
    }

    async fn operation_history(&self, key: &str) -> Result<Vec<OperationRecord>, StoreError> {
        q::operation_history(&mut *self.readers.acquire().await?, key).await
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        q::last_event_seq(&mut *self.readers.acquire().await?).await
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
        let events = q::write_batch(&mut tx, batch).await?;
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
    let db = e.as_database_error()?;
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    let code = db.code()?.parse::<i32>().ok()?;
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
