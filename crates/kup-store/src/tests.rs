use std::sync::Arc;

use jiff::Timestamp;
use kup_types::{
    EventKind, HostUpgradeRecord, HostUpgradeStatus, KubeUpgradeRecord, KubeUpgradeState,
    KubeVersion, NewEvent, UpgradeWrite, WriteBatch,
};
use tempfile::TempDir;

use crate::{PgStore, Replica, SqliteStore, Store, StoreError};

#[path = "../tests/support/postgres.rs"]
mod postgres_server;

/// A database on one of the back ends, for a test to open as many handles on as it needs.
enum Db {
    Sqlite(TempDir),
    Postgres(postgres_server::PgServer),
}

/// One handle on a [`Db`]: the store, and raw SQL for what the trait does not show.
enum Handle {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Db {
    fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Option<Db> {
        postgres_server::PgServer::start().map(Db::Postgres)
    }

    /// A handle that writes: on PostgreSQL, one that holds the lease (every handle a test
    /// opens is the same replica, so they share its token).
    async fn open(&self) -> Handle {
        match self {
            Db::Sqlite(dir) => {
                Handle::Sqlite(SqliteStore::open(&dir.path().join("kup.db")).await.unwrap())
            }
            Db::Postgres(server) => {
                let store = PgStore::connect(&server.url("postgres")).await.unwrap();
                let me = Replica {
                    id: "test".into(),
                    address: "127.0.0.1:1".into(),
                };
                store
                    .campaign(&me, std::time::Duration::from_secs(300))
                    .await
                    .unwrap();
                Handle::Postgres(store)
            }
        }
    }
}

impl std::ops::Deref for Handle {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            Handle::Sqlite(s) => s,
            Handle::Postgres(s) => s,
        }
    }
}

impl Handle {
    async fn scalar(&self, sql: &'static str) -> i64 {
        match self {
            Handle::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
            Handle::Postgres(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
        }
        .unwrap()
    }

    async fn exec(&self, sql: &'static str) {
        match self {
            Handle::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.map(drop),
            Handle::Postgres(s) => sqlx::query(sql).execute(s.pool()).await.map(drop),
        }
        .unwrap();
    }

    async fn close(&self) {
        match self {
            Handle::Sqlite(s) => s.close().await,
            Handle::Postgres(s) => s.close().await,
        }
    }
}

/// The store's conformance suite: each test once on SQLite, once on a real PostgreSQL server.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Db::sqlite()).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = super::Db::postgres() else { return };
                    super::$name(db).await
                }
            )*
        }
    };
}

on_both!(
    text_with_nul_is_kept_readably,
    snapshot_round_trips_upgrade_and_hosts,
    empty_store_and_empty_batch,
    delete_removes_the_upgrade_and_keeps_hosts,
    host_put_replaces_the_row_by_id,
    failing_batch_writes_nothing_and_leaves_no_seq_gap,
    create_refuses_a_second_upgrade_and_put_needs_the_same_uuid,
    events_are_gapless_across_commits_and_page,
    events_of_one_subject_in_order_after_a_seq,
    committed_data_survives_reopen,
    concurrent_commits_get_seqs_1_to_32,
    strategy_progress_writes_only_changed_stages_and_reads_back_whole,
);

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn v(s: &str) -> KubeVersion {
    KubeVersion::parse(s).unwrap()
}

fn upgrade(id: i64, uuid: &str, state: KubeUpgradeState) -> KubeUpgradeRecord {
    KubeUpgradeRecord {
        id,
        uuid: uuid.to_string(),
        from_version: v("v1.16.2"),
        to_version: v("v1.17.1"),
        state,
        created_at: ts("2020-02-20T16:08:48.854869Z"),
        updated_at: Some(ts("2020-02-20T16:09:01.000001Z")),
    }
}

fn host(id: i64, hostname: &str) -> HostUpgradeRecord {
    HostUpgradeRecord {
        id,
        uuid: format!("host-uuid-{id}"),
        host_id: id,
        hostname: hostname.to_string(),
        target_version: None,
        status: None,
        created_at: ts("2020-02-20T16:08:48.854869Z"),
        updated_at: None,
    }
}

fn event(message: &str) -> NewEvent {
    NewEvent {
        at: ts("2020-02-20T16:10:00.5Z"),
        kind: EventKind::Command,
        subject: "kube_upgrade".to_string(),
        message: message.to_string(),
    }
}

fn events_batch(messages: &[&str]) -> WriteBatch {
    WriteBatch {
        events: messages.iter().map(|m| event(m)).collect(),
        ..Default::default()
    }
}

async fn file_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("kup.db")).await.unwrap();
    (dir, store)
}

async fn seqs(store: &dyn Store, after: i64, limit: u32) -> Vec<i64> {
    store
        .events(after, limit)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

async fn snapshot_round_trips_upgrade_and_hosts(db: Db) {
    let store = db.open().await;
    let up = upgrade(1, "u-1", KubeUpgradeState::UpgradingFirstMaster);
    let mut c0 = host(3, "controller-0");
    c0.target_version = Some(v("v1.17.1"));
    c0.status = Some(HostUpgradeStatus::UpgradingControlPlane);
    c0.updated_at = Some(ts("2020-02-20T16:11:00Z"));
    let batch = WriteBatch {
        upgrade: Some(UpgradeWrite::Create(up.clone())),
        hosts: vec![c0.clone(), host(1, "controller-1"), host(2, "worker-0")],
        events: vec![],
        ..Default::default()
    };
    assert!(store.commit(batch).await.unwrap().is_empty());

    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.upgrade, Some(up));
    assert_eq!(
        snap.hosts.iter().map(|h| h.id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(snap.host("controller-0"), Some(&c0));
    assert_eq!(snap.host("worker-0"), Some(&host(2, "worker-0")));
}

/// A host command's output may hold a NUL, which PostgreSQL's text refuses: both back ends
/// keep it as U+FFFD, and the batch goes through.
async fn text_with_nul_is_kept_readably(db: Db) {
    let store = db.open().await;
    let written = store
        .commit(events_batch(&["kubeadm said \0 here"]))
        .await
        .unwrap();
    assert_eq!(written[0].message, "kubeadm said \u{fffd} here");
    assert_eq!(store.events(0, 10).await.unwrap(), written);
}

async fn empty_store_and_empty_batch(db: Db) {
    let store = db.open().await;
    assert_eq!(store.snapshot().await.unwrap(), Default::default());
    assert!(
        store
            .commit(WriteBatch::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.events(0, 10).await.unwrap().is_empty());
}

/// A host's events (the dashboard's host panel): only its own, ascending, after `after`, at
/// most `limit`; a subject is matched exactly, not as a prefix.
async fn events_of_one_subject_in_order_after_a_seq(db: Db) {
    let store = db.open().await;
    let on = |subject: &str, message: &str| NewEvent {
        subject: subject.to_string(),
        ..event(message)
    };
    let batch = WriteBatch {
        events: vec![
            on("worker-1", "a"),
            on("worker-10", "b"),
            on("kube_upgrade", "c"),
            on("worker-1", "d"),
            on("worker-1", "e"),
        ],
        ..Default::default()
    };
    store.commit(batch).await.unwrap();
    let of = |after, limit| {
        let store = &store;
        async move {
            store
                .events_of("worker-1", after, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.seq, e.message))
                .collect::<Vec<_>>()
        }
    };
    let all = |pairs: &[(i64, &str)]| {
        pairs
            .iter()
            .map(|(s, m)| (*s, m.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(of(0, 100).await, all(&[(1, "a"), (4, "d"), (5, "e")]));
    assert_eq!(of(1, 100).await, all(&[(4, "d"), (5, "e")]));
    assert_eq!(of(0, 2).await, all(&[(1, "a"), (4, "d")]));
    assert!(of(5, 100).await.is_empty());
    assert!(store.events_of("nobody", 0, 10).await.unwrap().is_empty());
}

async fn delete_removes_the_upgrade_and_keeps_hosts(db: Db) {
    let store = db.open().await;
    let batch = WriteBatch {
        upgrade: Some(UpgradeWrite::Create(upgrade(
            1,
            "u-1",
            KubeUpgradeState::UpgradeStarted,
        ))),
        hosts: vec![host(1, "controller-0")],
        events: vec![],
        ..Default::default()
    };
    store.commit(batch).await.unwrap();
    let delete = WriteBatch {
        upgrade: Some(UpgradeWrite::Delete),
        ..Default::default()
    };
    store.commit(delete.clone()).await.unwrap();
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.upgrade, None);
    assert_eq!(snap.hosts, [host(1, "controller-0")]);
    // Deleting what is not there is fine.
    store.commit(delete).await.unwrap();
}

async fn host_put_replaces_the_row_by_id(db: Db) {
    let store = db.open().await;
    let put = |h: HostUpgradeRecord| WriteBatch {
        hosts: vec![h],
        ..Default::default()
    };
    store.commit(put(host(1, "controller-0"))).await.unwrap();
    let mut changed = host(1, "controller-0");
    changed.target_version = Some(v("v1.17.1"));
    changed.status = Some(HostUpgradeStatus::UpgradedKubelet);
    changed.updated_at = Some(ts("2020-02-21T00:00:00Z"));
    store.commit(put(changed.clone())).await.unwrap();
    assert_eq!(store.snapshot().await.unwrap().hosts, [changed]);
}

async fn failing_batch_writes_nothing_and_leaves_no_seq_gap(db: Db) {
    let store = db.open().await;
    let first = WriteBatch {
        hosts: vec![host(1, "controller-0")],
        ..events_batch(&["one"])
    };
    store.commit(first).await.unwrap();
    let before = store.snapshot().await.unwrap();

    // Host 2 claims controller-0's hostname: the whole batch must roll back.
    let bad = WriteBatch {
        upgrade: Some(UpgradeWrite::Create(upgrade(
            1,
            "u-1",
            KubeUpgradeState::UpgradeStarted,
        ))),
        hosts: vec![host(2, "controller-0")],
        events: vec![event("lost")],
        ..Default::default()
    };
    let err = store.commit(bad).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Database(_) | StoreError::Postgres(_)),
        "{err}"
    );
    assert!(err.to_string().starts_with("database error: "), "{err}");
    assert_eq!(store.snapshot().await.unwrap(), before);
    assert_eq!(seqs(&*store, 0, 10).await, [1]);

    let next = store.commit(events_batch(&["two"])).await.unwrap();
    assert_eq!(next[0].seq, 2);
}

async fn create_refuses_a_second_upgrade_and_put_needs_the_same_uuid(db: Db) {
    let store = db.open().await;
    let write = |w| WriteBatch {
        upgrade: Some(w),
        ..Default::default()
    };
    let first = upgrade(1, "u-1", KubeUpgradeState::UpgradeStarted);
    store
        .commit(write(UpgradeWrite::Create(first.clone())))
        .await
        .unwrap();
    store
        .exec("UPDATE kube_upgrade SET recovery_attempts = 3")
        .await;
    // Same upgrade, new state: recovery bookkeeping survives.
    let moved = upgrade(1, "u-1", KubeUpgradeState::DownloadingImages);
    store
        .commit(write(UpgradeWrite::Put(moved.clone())))
        .await
        .unwrap();
    assert_eq!(
        store
            .scalar("SELECT recovery_attempts FROM kube_upgrade")
            .await,
        3
    );

    // A second upgrade is a conflict, as is a change to one that is not stored.
    let second = upgrade(2, "u-2", KubeUpgradeState::UpgradeStarted);
    let err = store
        .commit(write(UpgradeWrite::Create(second.clone())))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = store
        .commit(write(UpgradeWrite::Put(second)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("u-2")),
        "{err}"
    );
    assert_eq!(store.snapshot().await.unwrap().upgrade, Some(moved));
    assert_eq!(store.scalar("SELECT COUNT(*) FROM kube_upgrade").await, 1);
}

async fn events_are_gapless_across_commits_and_page(db: Db) {
    let store = db.open().await;
    let a = store.commit(events_batch(&["a1", "a2"])).await.unwrap();
    let b = store.commit(events_batch(&["b1"])).await.unwrap();
    let c = store
        .commit(events_batch(&["c1", "c2", "c3"]))
        .await
        .unwrap();
    let returned: Vec<_> = [a, b, c].concat();
    assert_eq!(
        returned.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );

    let all = store.events(0, 100).await.unwrap();
    assert_eq!(all, returned);
    assert_eq!(all[3].message, "c1");
    assert_eq!(all[3].at, ts("2020-02-20T16:10:00.5Z"));
    assert_eq!(seqs(&*store, 2, 3).await, [3, 4, 5]);
    assert_eq!(seqs(&*store, 5, 3).await, [6]);
    assert!(seqs(&*store, 6, 3).await.is_empty());
    assert!(seqs(&*store, 0, 0).await.is_empty());
    assert_eq!(seqs(&*store, -5, 2).await, [1, 2]);
}

async fn committed_data_survives_reopen(db: Db) {
    let store = db.open().await;
    let batch = WriteBatch {
        upgrade: Some(UpgradeWrite::Create(upgrade(
            1,
            "u-1",
            KubeUpgradeState::UpgradingKubelets,
        ))),
        hosts: vec![host(1, "controller-0"), host(2, "controller-1")],
        events: vec![event("one"), event("two")],
        ..Default::default()
    };
    store.commit(batch).await.unwrap();
    let snap = store.snapshot().await.unwrap();
    let events = store.events(0, 10).await.unwrap();
    store.close().await;
    drop(store);

    // Reopening runs the migrations again: they must be a no-op on a migrated database.
    let store = db.open().await;
    assert_eq!(store.snapshot().await.unwrap(), snap);
    assert_eq!(store.events(0, 10).await.unwrap(), events);
    let next = store.commit(events_batch(&["three"])).await.unwrap();
    assert_eq!(next[0].seq, 3);
}

#[tokio::test]
async fn file_database_uses_wal_full_sync_and_foreign_keys() {
    let (_dir, store) = file_store().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    for (pragma, want) in [
        ("synchronous", 2),
        ("foreign_keys", 1),
        ("busy_timeout", 5000),
    ] {
        let got: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(got, want, "{pragma}"); // synchronous 2 = FULL
    }
}

fn corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Corrupt(msg)) => msg,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupt_values_are_errors_not_panics() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let batch = WriteBatch {
        upgrade: Some(UpgradeWrite::Create(upgrade(
            1,
            "u-1",
            KubeUpgradeState::UpgradeStarted,
        ))),
        hosts: vec![host(1, "controller-0")],
        events: vec![event("one")],
        ..Default::default()
    };
    store.commit(batch).await.unwrap();
    let raw = async |sql: &'static str| {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    };

    raw("UPDATE kube_upgrade SET state = 'upgrading'").await;
    let msg = corrupt(store.snapshot().await);
    assert!(
        msg.contains("kube_upgrade.state") && msg.contains("\"upgrading\""),
        "{msg}"
    );

    raw("UPDATE kube_upgrade SET state = 'upgrade-started'").await;
    raw("UPDATE kube_host_upgrade SET target_version = 'v1.16'").await;
    let msg = corrupt(store.snapshot().await);
    assert!(
        msg.contains("kube_host_upgrade.target_version") && msg.contains("v1.16"),
        "{msg}"
    );

    raw("UPDATE kube_host_upgrade SET target_version = NULL, created_at = 'yesterday'").await;
    let msg = corrupt(store.snapshot().await);
    assert!(msg.contains("kube_host_upgrade.created_at"), "{msg}");

    raw("UPDATE events SET kind = 'bogus'").await;
    let msg = corrupt(store.events(0, 10).await);
    assert!(
        msg.contains("events.kind") && msg.contains("bogus"),
        "{msg}"
    );
}

async fn concurrent_commits_get_seqs_1_to_32(db: Db) {
    // Two handles on one database: besides the queue on each pool, the MAX(seq)+1 allocation
    // must also hold up against a writer on another connection (SQLite's BEGIN IMMEDIATE and
    // busy wait; PostgreSQL's lock on the lease row).
    let stores = [Arc::new(db.open().await), Arc::new(db.open().await)];
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            tokio::spawn(async move {
                let events = store
                    .commit(events_batch(&[&format!("task {i}")]))
                    .await
                    .unwrap();
                assert_eq!(events.len(), 1);
                events[0].seq
            })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (1..=32).collect::<Vec<i64>>());
    assert_eq!(seqs(&**stores[0], 0, 100).await, got);
}

/// A full database refuses a batch; once there is room again, the next write succeeds (a
/// failed transaction never leaves the connection stuck), and the health probe says so.
#[tokio::test]
async fn writes_work_again_after_the_database_was_full() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(&dir.path().join("kup.db")).await.unwrap();
    store.commit(events_batch(&["before"])).await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(store.pool())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA max_page_count = {pages}"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    let big = "x".repeat(64 * 1024);
    let err = store.commit(events_batch(&[&big])).await.unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    // What a client is told: the kind, without SQLite's words.
    assert_eq!(err.summary(), "the store's disk is full");
    sqlx::query("PRAGMA max_page_count = 1073741823")
        .execute(store.pool())
        .await
        .unwrap();
    store.ping().await.unwrap();
    store.commit(events_batch(&["after"])).await.unwrap();
    let messages: Vec<String> = store
        .events(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(
        messages,
        ["before", "after"],
        "nothing of the refused batch"
    );
}

/// A database file without kup's schema (its write-ahead log lost, or another program's) is
/// not taken for an empty store.
#[tokio::test]
async fn a_file_without_kups_schema_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("other.db");
    {
        let other = SqliteStore::open(&dir.path().join("scratch.db"))
            .await
            .unwrap();
        drop(other);
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::query("CREATE TABLE someone_elses (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let err = SqliteStore::open_existing(&path).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("it holds another program's tables"),
        "{err}"
    );
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let err = SqliteStore::open_existing(&empty).await.unwrap_err();
    assert!(err.to_string().contains("it holds no kup store"), "{err}");
}

fn strategy_stage(i: usize, result: kup_types::StepResult) -> kup_types::strategy::Stage {
    kup_types::strategy::Stage {
        name: format!("stage-{i}"),
        version: None,
        hosts: vec![format!("worker-{i}")],
        steps: Vec::new(),
        result,
        reason: String::new(),
        timeout: 60,
        predicted_seconds: 30,
        start: None,
        end: None,
    }
}

fn strategy_write(record: &kup_types::StrategyRecord) -> WriteBatch {
    WriteBatch {
        strategy: Some(kup_types::StrategyWrite::Put(Arc::new(record.clone()))),
        ..Default::default()
    }
}

/// The strategy's apply stages live in rows of their own: a progress write rewrites the stages
/// that changed and drops those past the end, and a reopened store reads the whole record back.
async fn strategy_progress_writes_only_changed_stages_and_reads_back_whole(db: Db) {
    use kup_types::{StepResult, StrategyRecord, StrategyWrite};
    let store = db.open().await;
    use kup_types::{AlarmRestrictions, ApplyType, StrategyState, UpgradeMode};
    let mut record = StrategyRecord {
        uuid: "s-1".into(),
        to_version: v("v1.17.1"),
        controller_apply_type: ApplyType::Serial,
        storage_apply_type: ApplyType::Ignore,
        worker_apply_type: ApplyType::Parallel,
        max_parallel_worker_hosts: 10,
        alarm_restrictions: AlarmRestrictions::Strict,
        mode: UpgradeMode::Online,
        partial_ok: false,
        rollback_on_abort: false,
        state: StrategyState::Applying,
        build_phase: kup_types::strategy::Phase::new("build"),
        apply_phase: kup_types::strategy::Phase::new("apply"),
        abort_phase: kup_types::strategy::Phase::new("abort"),
        batch: Some(vec!["worker-1".into()]),
        skipped: Vec::new(),
        predicted_seconds: 100,
        lower_bound_seconds: 90,
        created_at: ts("2020-02-20T16:08:48Z"),
        updated_at: None,
    };
    record.apply_phase.stages = (0..5)
        .map(|i| Arc::new(strategy_stage(i, StepResult::Initial)))
        .collect();
    store.commit(strategy_write(&record)).await.unwrap();
    let stored = store.snapshot().await.unwrap().strategy.unwrap();
    assert_eq!(*stored, record);

    // Stage 1 done, stage 5 added: a progress write of those two.
    let mut next = record.clone();
    Arc::make_mut(&mut next.apply_phase.stages[1]).result = StepResult::Success;
    next.apply_phase
        .stages
        .push(Arc::new(strategy_stage(5, StepResult::Wait)));
    let w = StrategyWrite::Put(Arc::new(next.clone())).against(Some(&record));
    assert!(
        matches!(&w, StrategyWrite::Progress { changed, .. } if changed == &[1, 5]),
        "{w:?}"
    );
    store
        .commit(WriteBatch {
            strategy: Some(w),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(*store.snapshot().await.unwrap().strategy.unwrap(), next);

    // Fewer stages: the rows past the end go.
    let mut shorter = next.clone();
    shorter.apply_phase.stages.truncate(2);
    let w = StrategyWrite::Put(Arc::new(shorter.clone())).against(Some(&next));
    store
        .commit(WriteBatch {
            strategy: Some(w),
            ..Default::default()
        })
        .await
        .unwrap();
    store.close().await;
    let reopened = db.open().await;
    assert_eq!(
        *reopened.snapshot().await.unwrap().strategy.unwrap(),
        shorter
    );

    // Deleted: the record and its stages.
    reopened
        .commit(WriteBatch {
            strategy: Some(StrategyWrite::Delete),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(reopened.snapshot().await.unwrap().strategy.is_none());
    assert_eq!(
        reopened.scalar("SELECT COUNT(*) FROM strategy_stage").await,
        0
    );
}

/// A store with an upgrade, hosts and 2,000 events (about 100 pages), closed cleanly so that
/// its write-ahead log is folded into the file: what a daemon stopped by SIGTERM leaves.
async fn closed_store_with_data(path: &std::path::Path) {
    let store = SqliteStore::open(path).await.unwrap();
    store
        .commit(WriteBatch {
            upgrade: Some(UpgradeWrite::Create(upgrade(
                1,
                "u-1",
                KubeUpgradeState::UpgradingKubelets,
            ))),
            hosts: (1..=20).map(|i| host(i, &format!("node-{i:02}"))).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    for chunk in 0..20 {
        let messages: Vec<String> = (0..100)
            .map(|i| format!("upgrade the kubelet on worker-{chunk}-{i} to v1.17.1: done"))
            .collect();
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        store.commit(events_batch(&refs)).await.unwrap();
    }
    store.close().await;
    drop(store);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "the log was checkpointed"
    );
}

/// Overwrites `count` pages of 4 KiB from page `first` (1-based) with `byte`.
fn overwrite_pages(bytes: &mut [u8], first: usize, count: usize, byte: u8) {
    let start = (first - 1) * 4096;
    bytes[start..start + count * 4096].fill(byte);
}

/// A damaged file (pages overwritten or zeroed in the middle, cut in half, a garbage header)
/// is refused at open with SQLite's own finding on one line, and left exactly as it was:
/// never re-initialised, migrated or written over.
#[tokio::test]
async fn a_damaged_file_is_refused_at_open_and_left_untouched() {
    let dir = TempDir::new().unwrap();
    let clean = dir.path().join("clean.db");
    closed_store_with_data(&clean).await;
    let good = std::fs::read(&clean).unwrap();
    let pages = good.len() / 4096;
    assert!(
        pages > 40,
        "{pages} pages: too small to damage in the middle"
    );
    type Damage = fn(&mut Vec<u8>, usize);
    let cases: [(&str, Damage); 6] = [
        // Both copies of a host name, the row's and its unique index's, are on pages that
        // look sound: only a check of every index against its table finds it.
        ("a row that its index does not hold", |b, _| {
            let at = b.windows(7).position(|w| w == b"node-07").unwrap();
            b[at + 5..at + 7].copy_from_slice(b"70");
        }),
        ("pages overwritten in the middle", |b, n| {
            overwrite_pages(b, n / 2, 3, 0xa5)
        }),
        ("a page zeroed in the middle", |b, n| {
            overwrite_pages(b, n / 2, 1, 0)
        }),
        ("the last pages cut off", |b, _| {
            b.truncate(b.len() - 3 * 4096)
        }),
        ("cut in half", |b, _| b.truncate(b.len() / 2)),
        ("a garbage header", |b, _| b[..100].fill(0x5a)),
    ];
    for (i, (case, damage)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("damaged-{i}.db"));
        let mut bytes = good.clone();
        damage(&mut bytes, pages);
        std::fs::write(&path, &bytes).unwrap();
        for existing in [true, false] {
            let opened = if existing {
                SqliteStore::open_existing(&path).await
            } else {
                SqliteStore::open(&path).await
            };
            let err = match opened {
                Err(e @ StoreError::Damaged { .. }) => e,
                other => panic!("{case}: expected Damaged, got {other:?}"),
            };
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("database {} is damaged (", path.display()))
                    && msg.ends_with(
                        "): restore it from a backup; kup does not start on a damaged store"
                    )
                    && !msg.contains('\n'),
                "{case}: {msg}"
            );
            assert_eq!(err.summary(), "the store's file is damaged", "{case}");
            assert!(
                std::fs::read(&path).unwrap() == bytes,
                "{case}: the file was changed"
            );
        }
    }
    // The undamaged file opens, with everything in it.
    let store = SqliteStore::open_existing(&clean).await.unwrap();
    assert_eq!(store.last_event_seq().await.unwrap(), 2000);
}

/// What the integrity check at open costs on a large store: `cargo test --release -p
/// kup-store -- --ignored --nocapture integrity_check_cost` (KUP_STORE_COPIES: how many
/// copies of a 52-host upgrade's 534 events and 161 operations; 1,000 make about 110 MB).
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn integrity_check_cost() {
    let copies: i64 = std::env::var("KUP_STORE_COPIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("kup.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    for i in 0..copies * 534 {
        sqlx::query(
            "INSERT INTO events (seq, at, kind, subject, message) VALUES (?, ?, 'operation', ?, ?)",
        )
        .bind(i + 1)
        .bind("2026-12-01T22:35:21.421088Z")
        .bind(format!("worker-{}", i % 5000))
        .bind(format!(
            "upgrade the kubelet on worker-{} to v1.16.2: done",
            i % 5000
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    for i in 0..copies * 161 {
        let host = format!("worker-{}", i % 5000);
        sqlx::query(
            "INSERT INTO operations (id, kind, host, op, key, state, attempt, started_at, \
             deadline, ended_at, detail) VALUES (?, 'kubelet', ?, ?, ?, 'succeeded', 1, ?, ?, ?, NULL)",
        )
        .bind(format!("4f7c0d9e-1b2a-4c3d-8e9f-{i:012}"))
        .bind(&host)
        .bind(format!(r#"{{"Kubelet":{{"host":"{host}","version":"v1.16.2"}}}}"#))
        .bind(format!("kubelet/{host}/v1.16.2/{i}"))
        .bind("2026-12-01T22:35:21.421088Z")
        .bind("2026-12-01T22:50:21.421088Z")
        .bind("2026-12-01T22:36:21.421088Z")
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    store.close().await;
    drop(store);
    let size = std::fs::metadata(&path).unwrap().len();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        check_integrity_of(&path).await;
        println!(
            "integrity check of a {:.0} MB store: {:.3} s",
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    let started = std::time::Instant::now();
    let store = SqliteStore::open_existing(&path).await.unwrap();
    println!(
        "open_existing of the same store: {:.3} s",
        started.elapsed().as_secs_f64()
    );
    store.close().await;
}

async fn check_integrity_of(path: &std::path::Path) {
    crate::sqlite::check_integrity(path).await.unwrap();
}

/// The lease on a shared PostgreSQL database: one holder at a time, renewals keep its token,
/// a takeover after expiry raises it, and a deposed leader's write is refused whole (the
/// fencing token is checked under the lease row's lock in the write's own transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_one_replica_leads_and_a_deposed_one_writes_nothing() {
    use std::time::Duration;
    let Some(server) = postgres_server::PgServer::start() else {
        return;
    };
    let url = server.url("postgres");
    let replica = |id: &str| Replica {
        id: id.into(),
        address: format!("{id}.example:8080"),
    };
    let (a, b) = (replica("a"), replica("b"));
    let store_a = PgStore::connect(&url).await.unwrap();
    let store_b = PgStore::connect(&url).await.unwrap();
    let short = Duration::from_millis(800);

    // Nobody writes before an election.
    let err = store_a.commit(events_batch(&["early"])).await.unwrap_err();
    assert!(matches!(err, StoreError::NotLeader), "{err}");

    let lease = store_a.campaign(&a, short).await.unwrap();
    assert_eq!((lease.holder.clone(), lease.token), (a.clone(), 1));
    assert!(store_a.leads());
    let lease = store_b.campaign(&b, short).await.unwrap();
    assert_eq!((lease.holder, lease.token), (a.clone(), 1), "b stands by");
    assert!(!store_b.leads());
    let err = store_b.commit(events_batch(&["b"])).await.unwrap_err();
    assert!(matches!(err, StoreError::NotLeader), "{err}");
    assert_eq!(
        store_a.commit(events_batch(&["a1"])).await.unwrap()[0].seq,
        1
    );
    // A renewal keeps the token.
    assert_eq!(store_a.campaign(&a, short).await.unwrap().token, 1);

    // a stops renewing (paused, say); once its lease expires b takes over.
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let lease = store_b.campaign(&b, short * 10).await.unwrap();
    assert_eq!((lease.holder, lease.token), (b.clone(), 2));
    assert!(store_b.leads());
    // a wakes up still believing it leads: its write is refused, and nothing of it is kept.
    assert!(store_a.leads());
    let err = store_a.commit(events_batch(&["late"])).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { token: 1, now: 2 }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "this daemon no longer leads: it wrote under fencing token 1, and the lease now has 2"
    );
    assert_eq!(seqs(&store_b, 0, 10).await, [1]);
    assert_eq!(
        store_b.commit(events_batch(&["b1"])).await.unwrap()[0].seq,
        2
    );
    // Its next round shows it the new leader and stops its writes.
    let lease = store_a.campaign(&a, short).await.unwrap();
    assert_eq!(lease.holder, b);
    assert!(!store_a.leads());

    // A leader that resigns hands over at once.
    store_b.resign(&b).await.unwrap();
    let lease = store_a.campaign(&a, short).await.unwrap();
    assert_eq!((lease.holder, lease.token), (a.clone(), 3));
    // A renewal of its own lease, even once expired, keeps its token.
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    assert_eq!(store_a.campaign(&a, short).await.unwrap().token, 3);
    assert!(store_a.leads());

    // a is paused again; b leads (token 4) and resigns; a wakes and wins the lease back
    // (token 5) without having seen b's turn: what it knows may be stale, so its store stays
    // fenced rather than write under the new token.
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    assert_eq!(store_b.campaign(&b, short).await.unwrap().token, 4);
    store_b.commit(events_batch(&["b2"])).await.unwrap();
    store_b.resign(&b).await.unwrap();
    let lease = store_a.campaign(&a, short).await.unwrap();
    assert_eq!((lease.holder, lease.token), (a.clone(), 5));
    assert!(!store_a.leads());
    let err = store_a.commit(events_batch(&["stale"])).await.unwrap_err();
    assert!(matches!(err, StoreError::NotLeader), "{err}");
    assert_eq!(seqs(&store_b, 0, 10).await, [1, 2, 3]);
    let seen: Vec<String> = store_a
        .replicas()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.replica.id)
        .collect();
    assert_eq!(seen, ["a", "b"]);

    // The database gone: what a client is told names the database, not a file.
    drop(server);
    let err = store_a.snapshot().await.unwrap_err();
    assert_eq!(
        err.summary(),
        "the store's database cannot be reached",
        "{err}"
    );
}
