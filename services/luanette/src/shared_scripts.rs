//! The script index shared by every front Luanette on one database (cluster mode).
//!
//! PostgreSQL is the truth: `shared_scripts` (each source's entry, tags merged across stores),
//! `script_versions` (each name's versions) and `script_changes` (every store that changed
//! something, in commit order). Each front keeps its sled index as a replica and answers reads
//! from it: a store is written to PostgreSQL and then applied locally, and a follower task
//! applies other fronts' changes as `NOTIFY hoot_script_changed` announces them (and all it
//! missed when it starts or reconnects). So a name stored on one front resolves on another a
//! notification later.
//!
//! Writers take one transaction-scoped advisory lock, so changes commit in the order of their
//! sequence numbers and a follower that has applied up to N never misses a smaller one.

use hooteproto::Status;
use hooteproto::v1::ScriptInfo;
use prost::Message as _;
use sqlx::postgres::PgPool;
use tokio_util::sync::CancellationToken;

use crate::cluster::db_error;
use crate::names::{Named, Version};

/// The channel fronts hear of new changes on.
const CHANGED: &str = "hoot_script_changed";
/// What a front listens to for its script index.
pub const CHANNELS: [&str; 1] = [CHANGED];
/// The advisory lock that orders writers (an arbitrary constant of this service).
const WRITE_LOCK: i64 = 0x4c75_616e_6574; // "Luanet"
/// Changes applied per query while catching up.
const BATCH: i64 = 500;

/// One store as every replica applies it.
#[derive(Debug, Clone)]
pub struct Change {
    /// Its place in the order of changes.
    pub seq: i64,
    /// The source's entry after the store.
    pub record: ScriptInfo,
    /// The name and version it was stored under, if it made or confirmed one.
    pub naming: Option<(String, u32)>,
}

/// A `script_changes` row: seq, record, name, version.
type ChangeRow = (i64, Vec<u8>, Option<String>, Option<i32>);

/// What a store did to the shared index.
pub struct Recorded {
    /// The entry as it is now.
    pub record: ScriptInfo,
    /// Whether the source was already indexed.
    pub already_existed: bool,
    /// Whether its entry is new or its tags changed.
    pub entry_changed: bool,
    /// The naming, when the store gave a name.
    pub named: Option<Named>,
}

/// The shared tables.
#[derive(Clone)]
pub struct SharedScripts {
    pool: PgPool,
}

fn decode(bytes: &[u8]) -> Result<ScriptInfo, Status> {
    ScriptInfo::decode(bytes)
        .map_err(|e| Status::internal(format!("the script database holds a malformed record: {e}")))
}

impl SharedScripts {
    /// The index in `pool`'s database (migrated by [`crate::cluster::connect`]).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Records a store: `fresh` is the entry to create if the source is new, `tags` are merged
    /// into an existing one, and `name` (if not empty) gets `fresh`'s source as its newest
    /// version unless it already is.
    pub async fn record(&self, fresh: ScriptInfo, tags: &[String], name: &str) -> Result<Recorded, Status> {
        let hash = fresh.script_hash.clone();
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let existing: Option<Vec<u8>> = sqlx::query_scalar("SELECT record FROM shared_scripts WHERE hash = $1")
            .bind(&hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let already_existed = existing.is_some();
        let before = existing.as_deref().map(decode).transpose()?;
        let record = match before.clone() {
            Some(mut record) => {
                record.tags.extend(tags.iter().cloned());
                record.tags.sort();
                record.tags.dedup();
                record
            }
            None => fresh,
        };
        let entry_changed = before.as_ref() != Some(&record);
        if entry_changed {
            sqlx::query(
                "INSERT INTO shared_scripts (hash, record) VALUES ($1, $2) \
                 ON CONFLICT (hash) DO UPDATE SET record = EXCLUDED.record",
            )
            .bind(&hash)
            .bind(record.encode_to_vec())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        let named = if name.is_empty() {
            None
        } else {
            let newest: Option<(i32, String)> = sqlx::query_as(
                "SELECT version, hash FROM script_versions WHERE name = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            let current = |version: i32| Version {
                name: name.to_string(),
                version: version.max(0) as u32,
                hash: hash.clone(),
            };
            Some(match newest {
                Some((version, newest_hash)) if newest_hash == hash => Named {
                    current: current(version),
                    previous: None,
                    changed: false,
                },
                newest => {
                    let version = newest.as_ref().map_or(0, |(v, _)| *v).saturating_add(1);
                    sqlx::query("INSERT INTO script_versions (name, version, hash) VALUES ($1, $2, $3)")
                        .bind(name)
                        .bind(version)
                        .bind(&hash)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    Named {
                        current: current(version),
                        previous: newest.map(|(_, previous)| previous),
                        changed: true,
                    }
                }
            })
        };
        // Logged only if something changed (the same source stored again changes nothing);
        // replicas, this front's included, apply it from the log.
        if entry_changed || named.as_ref().is_some_and(|n| n.changed) {
            let naming = named.as_ref().filter(|n| n.changed).map(|n| &n.current);
            sqlx::query(
                "WITH logged AS (INSERT INTO script_changes (hash, record, name, version) \
                   VALUES ($1, $2, $3, $4) RETURNING seq) \
                 SELECT pg_notify($5, logged.seq::text) FROM logged",
            )
            .bind(&hash)
            .bind(record.encode_to_vec())
            .bind(naming.map(|n| n.name.clone()))
            .bind(naming.map(|n| n.version as i32))
            .bind(CHANGED)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(Recorded {
            record,
            already_existed,
            entry_changed,
            named,
        })
    }

    /// Changes after `seq`, oldest first, at most [`BATCH`].
    pub async fn changes_after(&self, seq: i64) -> Result<Vec<Change>, Status> {
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT seq, record, name, version FROM script_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(seq, record, name, version)| {
                Ok(Change {
                    seq,
                    record: decode(&record)?,
                    naming: name.zip(version).map(|(n, v)| (n, v.max(0) as u32)),
                })
            })
            .collect()
    }

    /// Applies every change after `applied` through `apply` (which records how far it got),
    /// until there are none; returns the last applied.
    pub async fn catch_up(
        &self,
        mut applied: i64,
        apply: &(dyn Fn(&Change) -> Result<(), Status> + Sync),
    ) -> Result<i64, Status> {
        loop {
            let changes = self.changes_after(applied).await?;
            if changes.is_empty() {
                return Ok(applied);
            }
            for change in &changes {
                apply(change)?;
                applied = change.seq;
            }
        }
    }

    /// Follows other fronts' changes until `stop`: catches up, then catches up again at
    /// each change notification (and after any may have been missed). `notifications` must
    /// have been taken before the last catch-up began, so no change falls between.
    pub async fn follow(
        self,
        mut notifications: crate::cluster::listen::Subscription,
        mut applied: i64,
        apply: impl Fn(&Change) -> Result<(), Status> + Send + Sync + 'static,
        stop: CancellationToken,
    ) {
        loop {
            match self.catch_up(applied, &apply).await {
                Ok(last) => applied = last,
                Err(status) => tracing::warn!(%status, "applying shared script changes failed"),
            }
            loop {
                let heard = tokio::select! {
                    () = stop.cancelled() => return,
                    heard = notifications.recv() => heard,
                };
                match heard {
                    crate::cluster::Heard::Notification { channel, .. } if *channel != *CHANGED => {}
                    _ => break,
                }
            }
        }
    }
}
