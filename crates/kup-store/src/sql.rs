//! The SQL both back ends run, written once: every query in portable SQL with `$N`
//! parameters (which SQLite and PostgreSQL both take), expanded for each back end's
//! connection and row types by [`queries!`]. Each function runs inside the transaction its
//! caller opened: how a transaction begins (SQLite's write lock, PostgreSQL's lease row) is
//! the back end's own.

macro_rules! queries {
    ($db:ty, $conn:ty, $row:ty) => {
        use std::fmt::Display;
        use std::str::FromStr;

        use kup_types::time;
        use kup_types::{
            Event, EventKind, HostUpgradeRecord, HostUpgradeStatus, InstallWrite,
            KubeUpgradeRecord, KubeUpgradeState, KubeVersion, NewEvent, OperationRecord,
            OperationState, PatchInstall, PatchWrite, Snapshot, StrategyWrite, UpgradeWrite,
            WriteBatch,
        };
        use sqlx::{Decode, Row, Type};

        use crate::StoreError;

        const UPGRADE_COLUMNS: &str = "SELECT id, uuid, from_version, to_version, state, \
             created_at, updated_at FROM kube_upgrade";
        const HOST_COLUMNS: &str = "SELECT id, uuid, host_id, hostname, target_version, status, \
             created_at, updated_at FROM kube_host_upgrade ORDER BY id";

        /// The upgrade row, all host rows sorted by id, the patches, the running operations
        /// and the strategy.
        pub(crate) async fn read_snapshot(conn: &mut $conn) -> Result<Snapshot, StoreError> {
            let upgrade = sqlx::query(UPGRADE_COLUMNS)
                .fetch_optional(&mut *conn)
                .await?
                .as_ref()
                .map(upgrade_from_row)
                .transpose()?;
            let hosts = sqlx::query(HOST_COLUMNS)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(host_from_row)
                .collect::<Result<_, _>>()?;
            let patches = sqlx::query("SELECT id, record FROM patches ORDER BY id")
                .fetch_all(&mut *conn)
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
            .fetch_all(&mut *conn)
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
                    .fetch_all(&mut *conn)
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
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(operation_from_row)
            .collect::<Result<_, StoreError>>()?;
            let mut strategy: Option<kup_types::StrategyRecord> =
                sqlx::query("SELECT record FROM strategy")
                    .fetch_optional(&mut *conn)
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
                        .fetch_all(&mut *conn)
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

        /// Every write of `batch`, in the caller's transaction.
        pub(crate) async fn write_batch(
            conn: &mut $conn,
            batch: WriteBatch,
        ) -> Result<Vec<Event>, StoreError> {
            match &batch.upgrade {
                Some(UpgradeWrite::Create(record)) => create_upgrade(&mut *conn, record).await?,
                Some(UpgradeWrite::Put(record)) => put_upgrade(&mut *conn, record).await?,
                Some(UpgradeWrite::Delete) => {
                    sqlx::query("DELETE FROM kube_upgrade")
                        .execute(&mut *conn)
                        .await?;
                }
                None => {}
            }
            match &batch.strategy {
                Some(StrategyWrite::Put(record)) => {
                    put_strategy(&mut *conn, record, 0..record.apply_phase.stages.len()).await?;
                }
                Some(StrategyWrite::Progress { record, changed }) => {
                    put_strategy(&mut *conn, record, changed.iter().copied()).await?;
                }
                Some(StrategyWrite::Delete) => {
                    for sql in ["DELETE FROM strategy", "DELETE FROM strategy_stage"] {
                        sqlx::query(sql).execute(&mut *conn).await?;
                    }
                }
                None => {}
            }
            for host in &batch.hosts {
                put_host(&mut *conn, host).await?;
            }
            for write in &batch.patches {
                match write {
                    PatchWrite::Put(p) => {
                        let record = serde_json::to_string(p).map_err(|e| {
                            StoreError::Corrupt(format!("patch {} does not serialize: {e}", p.id))
                        })?;
                        sqlx::query(
                            "INSERT INTO patches (id, state, record) VALUES ($1, $2, $3) \
                             ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
                                 record = excluded.record",
                        )
                        .bind(&p.id)
                        .bind(p.state.as_str())
                        .bind(record)
                        .execute(&mut *conn)
                        .await?;
                    }
                    PatchWrite::Delete(id) => {
                        sqlx::query("DELETE FROM patches WHERE id = $1")
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
            }
            for write in &batch.installs {
                let (sql, i) = match write {
                    InstallWrite::Add(i) => (
                        "INSERT INTO patch_installs (patch_id, hostname) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                        i,
                    ),
                    InstallWrite::Remove(i) => (
                        "DELETE FROM patch_installs WHERE patch_id = $1 AND hostname = $2",
                        i,
                    ),
                };
                sqlx::query(sql)
                    .bind(&i.patch_id)
                    .bind(&i.hostname)
                    .execute(&mut *conn)
                    .await?;
            }
            for o in &batch.operations {
                put_operation(&mut *conn, o).await?;
            }
            let mut events = Vec::with_capacity(batch.events.len());
            for event in batch.events {
                events.push(append_event(&mut *conn, event).await?);
            }
            Ok(events)
        }

        /// Text as both back ends keep it: PostgreSQL refuses NUL in text (a host command's
        /// output may hold one), so it becomes U+FFFD on either.
        fn text(s: &str) -> std::borrow::Cow<'_, str> {
            if s.contains('\0') {
                std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
            } else {
                std::borrow::Cow::Borrowed(s)
            }
        }

        /// Events with `seq > after_seq`, ascending, at most `limit` of them.
        pub(crate) async fn events(
            conn: &mut $conn,
            after_seq: i64,
            limit: u32,
        ) -> Result<Vec<Event>, StoreError> {
            sqlx::query(
                "SELECT seq, at, kind, subject, message FROM events \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
        }

        /// The events of one subject with `seq > after_seq`, ascending, at most `limit`.
        pub(crate) async fn events_of(
            conn: &mut $conn,
            subject: &str,
            after_seq: i64,
            limit: u32,
        ) -> Result<Vec<Event>, StoreError> {
            sqlx::query(
                "SELECT seq, at, kind, subject, message FROM events \
                 WHERE subject = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(subject)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
        }

        /// Every run of one step, oldest first.
        pub(crate) async fn operation_history(
            conn: &mut $conn,
            key: &str,
        ) -> Result<Vec<OperationRecord>, StoreError> {
            sqlx::query(
                "SELECT id, op, state, attempt, started_at, deadline, ended_at, detail \
                 FROM operations WHERE key = $1 ORDER BY started_at, id",
            )
            .bind(key)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(operation_from_row)
            .collect()
        }

        /// The newest event's seq (0 for an empty log).
        pub(crate) async fn last_event_seq(conn: &mut $conn) -> Result<i64, StoreError> {
            let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
                .fetch_one(&mut *conn)
                .await?;
            Ok(seq.unwrap_or(0))
        }

        /// Inserts the upgrade; the `singleton` column makes a second one a conflict, whoever asks.
        async fn create_upgrade(
            conn: &mut $conn,
            r: &KubeUpgradeRecord,
        ) -> Result<(), StoreError> {
            let res = sqlx::query(
                "INSERT INTO kube_upgrade \
                     (id, singleton, uuid, from_version, to_version, state, created_at, updated_at) \
                 VALUES ($1, 1, $2, $3, $4, $5, $6, $7)",
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
        async fn put_upgrade(conn: &mut $conn, r: &KubeUpgradeRecord) -> Result<(), StoreError> {
            let res = sqlx::query(
                "UPDATE kube_upgrade SET id = $1, from_version = $2, to_version = $3, state = $4, \
                     created_at = $5, updated_at = $6 \
                 WHERE uuid = $7",
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
            conn: &mut $conn,
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
                "INSERT INTO strategy (singleton, uuid, state, record) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (singleton) DO UPDATE SET uuid = excluded.uuid, \
                     state = excluded.state, record = excluded.record",
            )
            .bind(&record.uuid)
            .bind(record.state.as_str())
            .bind(header)
            .execute(&mut *conn)
            .await?;
            let all = &record.apply_phase.stages;
            for i in stages.filter(|&i| i < all.len()) {
                let text = serde_json::to_string(&all[i]).map_err(corrupt)?;
                sqlx::query(
                    "INSERT INTO strategy_stage (position, stage) VALUES ($1, $2) \
                     ON CONFLICT (position) DO UPDATE SET stage = excluded.stage",
                )
                .bind(i as i64)
                .bind(text)
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query("DELETE FROM strategy_stage WHERE position >= $1")
                .bind(all.len() as i64)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        /// Inserts or replaces a host row by id. A hostname, uuid or host_id already used by another
        /// row is a constraint error (the batch fails) rather than a silent delete of that row.
        async fn put_host(conn: &mut $conn, h: &HostUpgradeRecord) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO kube_host_upgrade \
                     (id, uuid, host_id, hostname, target_version, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
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
        async fn put_operation(conn: &mut $conn, o: &OperationRecord) -> Result<(), StoreError> {
            let op = serde_json::to_string(&o.op)
                .map_err(|e| StoreError::Corrupt(format!("operation {} does not serialize: {e}", o.id)))?;
            sqlx::query(
                "INSERT INTO operations \
                     (id, kind, host, op, key, state, attempt, started_at, deadline, ended_at, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
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
            .bind(o.detail.as_deref().map(text))
            .execute(conn)
            .await?;
            Ok(())
        }

        /// Appends one event. The seq is allocated inside the write transaction, so it is gapless
        /// (a rolled-back batch allocates nothing), unlike AUTOINCREMENT.
        async fn append_event(conn: &mut $conn, e: NewEvent) -> Result<Event, StoreError> {
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO events (seq, at, kind, subject, message) \
                 SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4 FROM events \
                 RETURNING seq",
            )
            .bind(time::format(&e.at))
            .bind(e.kind.as_str())
            .bind(text(&e.subject))
            .bind(text(&e.message))
            .fetch_one(conn)
            .await?;
            Ok(Event {
                seq,
                at: e.at,
                kind: e.kind,
                subject: text(&e.subject).into_owned(),
                message: text(&e.message).into_owned(),
            })
        }

        fn upgrade_from_row(row: &$row) -> Result<KubeUpgradeRecord, StoreError> {
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

        fn host_from_row(row: &$row) -> Result<HostUpgradeRecord, StoreError> {
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

        fn operation_from_row(row: &$row) -> Result<OperationRecord, StoreError> {
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

        fn event_from_row(row: &$row) -> Result<Event, StoreError> {
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
            row: &'r $row,
            table: &'static str,
        }

        impl<'r> Columns<'r> {
            fn get<T: Decode<'r, $db> + Type<$db>>(&self, column: &str) -> Result<T, StoreError> {
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

    };
}

pub(crate) use queries;
