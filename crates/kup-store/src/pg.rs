//! The PostgreSQL implementation of [`Store`], for several daemons sharing one database: one
//! of them leads (the [`lease`](PgStore::campaign) row), and only the leader writes. Every
//! write transaction first locks the lease row and checks that it still holds this daemon's
//! fencing token, so writes are serialised (event sequence numbers stay gapless) and a
//! deposed leader's late writes are refused whole.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kup_types::{Event, OperationRecord, Snapshot, WriteBatch};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::{Store, StoreError};

mod q {
    crate::sql::queries!(sqlx::Postgres, sqlx::PgConnection, sqlx::postgres::PgRow);
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database's clock, in milliseconds since the epoch.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A daemon sharing the database: its id (unique among the replicas) and the address its
/// API is served at, for the others to forward commands to when it leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    pub id: String,
    pub address: String,
}

/// The lease as it stands after a [`PgStore::campaign`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The replica that holds it, and where it serves.
    pub holder: Replica,
    pub token: i64,
    /// Since the holder last renewed it.
    pub age: Duration,
    /// Until it expires (zero once expired).
    pub left: Duration,
    /// How long the holder has held it.
    pub held_for: Duration,
}

/// A replica as it last said it was alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSeen {
    pub replica: Replica,
    pub started_ago: Duration,
    pub seen_ago: Duration,
}

/// A [`Store`] in a PostgreSQL database shared by several daemons.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The election's own connection: a burst of commits or probes never delays a renewal.
    election: PgPool,
    /// The fencing token this daemon writes under, while it leads.
    fence: Arc<Mutex<Option<i64>>>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`) and
    /// migrates it. The store writes only once [`campaign`](Self::campaign) has made this
    /// daemon the leader. No statement, lock wait or idle transaction lasts longer than 15 s.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_bounded(url, Duration::from_secs(15)).await
    }

    /// [`connect`](Self::connect) with every statement, lock wait and transaction left idle
    /// bounded by `bound` (the lease: a daemon paused inside a transaction, or a statement
    /// stuck on a lock, can never hold the others up for longer), and dead connections found
    /// by TCP keep-alives.
    pub async fn connect_bounded(url: &str, bound: Duration) -> Result<Self, StoreError> {
        let ms = bound.as_millis().max(1).to_string();
        let lock_ms = (bound.as_millis() / 3).max(1).to_string();
        let options: PgConnectOptions = url.parse().map_err(StoreError::Url)?;
        let options = options.options([
            ("statement_timeout", ms.as_str()),
            ("lock_timeout", lock_ms.as_str()),
            ("idle_in_transaction_session_timeout", ms.as_str()),
            ("tcp_keepalives_idle", "5"),
            ("tcp_keepalives_interval", "2"),
            ("tcp_keepalives_count", "3"),
        ]);
        // One connection first: a pool that cannot connect says only that it timed out, this
        // says why (refused, unknown host, wrong password) and at once.
        PgConnection::connect_with(&options)
            .await
            .map_err(StoreError::Connect)?
            .close()
            .await
            .map_err(StoreError::Connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(bound)
            .connect_with(options.clone())
            .await
            .map_err(StoreError::Connect)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        let election = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(bound)
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        Ok(PgStore {
            pool,
            election,
            fence: Arc::default(),
        })
    }

    pub async fn close(&self) {
        self.election.close().await;
        self.pool.close().await;
    }

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn fence(&self) -> Option<i64> {
        *self.fence.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_fence(&self, token: Option<i64>) {
        *self.fence.lock().unwrap_or_else(PoisonError::into_inner) = token;
    }

    /// One round of the election, in one transaction: `me` renews the lease it holds, takes
    /// it when nobody holds it or it has expired (the token grows by one), and otherwise
    /// stands by, locking nothing. The lease lasts `duration` from the moment of the renewal
    /// by the database's clock. Returns the lease as it stands.
    ///
    /// This store writes under the token of the lease it first won, and only that one: a
    /// daemon that lost the lease and won it back later (another leader came and went
    /// meanwhile) holds a new token, and its store stays fenced, since what it knew of the
    /// store may be stale. Replica ids are unique per process, so a holder renewing its own
    /// lease, even expired, keeps its token: nobody else wrote meanwhile.
    pub async fn campaign(&self, me: &Replica, duration: Duration) -> Result<Lease, StoreError> {
        let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.election.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO replicas (id, address, started_ms, seen_ms) VALUES ($1, $2, {NOW_MS}, {NOW_MS}) \
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, seen_ms = excluded.seen_ms"
        )))
        .bind(&me.id)
        .bind(&me.address)
        .execute(&mut *tx)
        .await?;
        // Replicas not seen for a hundred leases are gone (each process has an id of its own).
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM replicas WHERE seen_ms < {NOW_MS} - 100 * $1"
        )))
        .bind(ms)
        .execute(&mut *tx)
        .await?;
        // The first replica ever creates the row; DO NOTHING takes no lock on one that exists.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO lease (singleton, holder, address, token, acquired_ms, renewed_ms, expires_ms) \
             VALUES (1, $1, $2, 1, {NOW_MS}, {NOW_MS}, {NOW_MS} + $3) ON CONFLICT DO NOTHING"
        )))
        .bind(&me.id)
        .bind(&me.address)
        .bind(ms)
        .execute(&mut *tx)
        .await?;
        // A plain UPDATE locks only a row it changes: a standby's round holds nothing up.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE lease SET \
                 token = CASE WHEN holder = $1 THEN token ELSE token + 1 END, \
                 acquired_ms = CASE WHEN holder = $1 THEN acquired_ms ELSE {NOW_MS} END, \
                 holder = $1, address = $2, renewed_ms = {NOW_MS}, expires_ms = {NOW_MS} + $3 \
             WHERE singleton = 1 AND (holder = $1 OR expires_ms <= {NOW_MS})"
        )))
        .bind(&me.id)
        .bind(&me.address)
        .bind(ms)
        .execute(&mut *tx)
        .await?;
        let lease = read_lease(&mut tx).await?.ok_or_else(|| {
            StoreError::Conflict("the lease row vanished during the election".into())
        })?;
        tx.commit().await?;
        let held = lease.holder.id == me.id && !lease.left.is_zero();
        let fence = match (held, self.fence()) {
            (true, None) => Some(lease.token),
            (true, Some(t)) if t == lease.token => Some(t),
            _ => None,
        };
        self.set_fence(fence);
        Ok(lease)
    }

    /// Gives the lease up (a daemon that stops): another replica takes over at once rather
    /// than after the lease expires.
    pub async fn resign(&self, me: &Replica) -> Result<(), StoreError> {
        self.set_fence(None);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE lease SET expires_ms = {NOW_MS} WHERE holder = $1"
        )))
        .bind(&me.id)
        .execute(&self.election)
        .await?;
        Ok(())
    }

    /// The lease as it stands, without campaigning.
    pub async fn lease(&self) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_lease(&mut conn).await
    }

    /// The replicas, most recently seen first.
    pub async fn replicas(&self) -> Result<Vec<ReplicaSeen>, StoreError> {
        use sqlx::Row;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, address, {NOW_MS} - started_ms AS started_ago, {NOW_MS} - seen_ms AS seen_ago \
             FROM replicas ORDER BY seen_ms DESC, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReplicaSeen {
                    replica: Replica {
                        id: r.try_get("id")?,
                        address: r.try_get("address")?,
                    },
                    started_ago: millis(r.try_get("started_ago")?),
                    seen_ago: millis(r.try_get("seen_ago")?),
                })
            })
            .collect()
    }

    /// Whether this store writes now (its daemon holds the lease, as last seen).
    pub fn leads(&self) -> bool {
        self.fence().is_some()
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

async fn read_lease(conn: &mut PgConnection) -> Result<Option<Lease>, StoreError> {
    use sqlx::Row;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT holder, address, token, {NOW_MS} - renewed_ms AS age, \
             expires_ms - {NOW_MS} AS left_ms, {NOW_MS} - acquired_ms AS held \
         FROM lease WHERE singleton = 1"
    )))
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(Lease {
            holder: Replica {
                id: r.try_get("holder")?,
                address: r.try_get("address")?,
            },
            token: r.try_get("token")?,
            age: millis(r.try_get("age")?),
            left: millis(r.try_get("left_ms")?),
            held_for: millis(r.try_get("held")?),
        })
    })
    .transpose()
}

/// Locks the lease row for the rest of the transaction and checks that it still holds
/// `token`.
async fn fenced(conn: &mut PgConnection, token: Option<i64>) -> Result<(), StoreError> {
    let Some(token) = token else {
        return Err(StoreError::NotLeader);
    };
    let now: Option<i64> =
        sqlx::query_scalar("SELECT token FROM lease WHERE singleton = 1 FOR UPDATE")
            .fetch_optional(&mut *conn)
            .await?;
    if now == Some(token) {
        Ok(())
    } else {
        Err(StoreError::Fenced {
            token,
            now: now.unwrap_or(0),
        })
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        async {
            let mut conn = self.pool.acquire().await?;
            // One consistent view of every table, whatever commits meanwhile.
            let mut tx = conn
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
            let snap = q::read_snapshot(&mut tx).await?;
            tx.commit().await?;
            Ok(snap)
        }
        .await
        .map_err(postgres)
    }

    async fn commit(&self, batch: WriteBatch) -> Result<Vec<Event>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        async {
            let mut tx = self.pool.begin().await?;
            fenced(&mut tx, self.fence()).await?;
            let events = q::write_batch(&mut tx, batch).await?;
            tx.commit().await?;
            Ok(events)
        }
        .await
        .map_err(postgres)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(StoreError::Postgres)
    }

    async fn events(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        async { q::events(&mut *self.pool.acquire().await?, after_seq, limit).await }
            .await
            .map_err(postgres)
    }

    async fn events_of(
        &self,
        subject: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        async { q::events_of(&mut *self.pool.acquire().await?, subject, after_seq, limit).await }
            .await
            .map_err(postgres)
    }

    async fn operation_history(&self, key: &str) -> Result<Vec<OperationRecord>, StoreError> {
        async { q::operation_history(&mut *self.pool.acquire().await?, key).await }
            .await
            .map_err(postgres)
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        async { q::last_event_seq(&mut *self.pool.acquire().await?).await }
            .await
            .map_err(postgres)
    }
}

/// The shared SQL's errors as this back end's: a server's and a network's words.
fn postgres(e: StoreError) -> StoreError {
    match e {
        StoreError::Database(e) => StoreError::Postgres(e),
        e => e,
    }
}

/// The kind of a PostgreSQL error an operator can act on (its SQLSTATE class), for
/// [`StoreError::summary`].
pub(crate) fn summary(e: &sqlx::Error) -> Option<&'static str> {
    if matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) {
        return Some("the store's database cannot be reached");
    }
    let code = e
        .as_database_error()?
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?
        .code();
    match &code[..2] {
        "53" => Some("the store's database is out of resources (disk, memory or connections)"),
        "08" | "57" => Some("the store's database cannot be reached"),
        "28" | "42" if code == "42501" || code.starts_with("28") => {
            Some("the store's database refused kup's login or rights")
        }
        _ => None,
    }
}
