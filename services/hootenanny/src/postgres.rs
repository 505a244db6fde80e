//! The artifact store in PostgreSQL (`--database-url`): the tables are in `migrations/`, run
//! at start (`sqlx::migrate!`, embedded, so no database is needed to compile). Several
//! Hootenanny processes may serve one database: every write is one transaction, ids are
//! unique across processes (a collision is retried with a fresh id), and an unreachable
//! database fails requests at once with UNAVAILABLE rather than holding them.

use std::time::Duration;

use anyhow::Context as _;
use hooteproto::Status;
use hooteproto::v1::{Artifact, ArtifactCreateRequest, Binding, DeviceHints};
use prost::Message as _;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::artifacts::{DEFAULT_PAGE, Filter, MAX_PAGE, new_artifact, new_binding};

/// How long a request waits for a connection before it is UNAVAILABLE.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections one process keeps at most.
const MAX_CONNECTIONS: u32 = 16;

/// A pool of connections to the database.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// A database error as a status: UNAVAILABLE when the database cannot be reached (the
/// request may be retried), INTERNAL otherwise.
fn db_error(error: sqlx::Error) -> Status {
    Status::from_database("the artifact database", error)
}

fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, Status> {
    M::decode(bytes).map_err(|e| Status::internal(format!("artifact database holds a malformed record: {e}")))
}

impl PgStore {
    /// Connects to `url` and brings its tables up to date.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // No ping before each query (a round trip each). A connection that broke while idle
            // (the server restarted) fails one query with UNAVAILABLE and is then dropped: sqlx
            // tests every connection as it comes back to the pool.
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .context("connecting to the artifact database (--database-url)")?;
        // One database may hold both services' tables (holler up --database-url): each
        // service's migrations have their own version range (Hootenanny 1xxx, Luanette
        // 2xxx) and leave the other's alone.
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await.context("migrating the artifact database")?;
        Ok(Self { pool })
    }

    /// Stores a new artifact, its tags and its lineage edges in one transaction.
    pub async fn create(&self, request: ArtifactCreateRequest) -> Result<Artifact, Status> {
        let mut artifact = new_artifact(request)?;
        for _attempt in 0..3 {
            match self.insert(&artifact).await {
                Err(Inserted::IdTaken) => artifact.artifact_id = crate::artifacts::new_id(),
                Err(Inserted::Failed(status)) => return Err(status),
                Ok(()) => return Ok(artifact),
            }
        }
        Err(Status::internal("could not find a free artifact id"))
    }

    async fn insert(&self, artifact: &Artifact) -> Result<(), Inserted> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        if !artifact.parent_ids.is_empty() {
            let existing: Vec<String> = sqlx::query_scalar("SELECT id FROM artifacts WHERE id = ANY($1)")
                .bind(&artifact.parent_ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
            if let Some(missing) = artifact.parent_ids.iter().find(|p| !existing.contains(p)) {
                return Err(Status::not_found(format!("parent artifact {missing:?} does not exist")).into());
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO artifacts (id, cas_hash, creator, record) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&artifact.artifact_id)
        .bind(&artifact.cas_hash)
        .bind(&artifact.creator)
        .bind(artifact.encode_to_vec())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if inserted.rows_affected() == 0 {
            return Err(Inserted::IdTaken);
        }
        sqlx::query("INSERT INTO artifact_tags (tag, id) SELECT unnest($1::text[]), $2")
            .bind(&artifact.tags)
            .bind(&artifact.artifact_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("INSERT INTO lineage (parent, child) SELECT unnest($1::text[]), $2")
            .bind(&artifact.parent_ids)
            .bind(&artifact.artifact_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    /// One artifact, if it exists.
    pub async fn get(&self, id: &str) -> Result<Option<Artifact>, Status> {
        let record: Option<Vec<u8>> = sqlx::query_scalar("SELECT record FROM artifacts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        record.map(|bytes| decode(&bytes)).transpose()
    }

    /// Artifacts newest first, filtered, after `page_token`, and the next token.
    pub async fn list(
        &self,
        filter: &Filter<'_>,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<Artifact>, String), Status> {
        let page_size = if page_size == 0 {
            DEFAULT_PAGE
        } else {
            page_size.min(MAX_PAGE)
        };
        let records: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT a.record FROM artifacts a \
             WHERE ($1 = '' OR a.cas_hash = $1) \
               AND ($2 = '' OR a.creator = $2) \
               AND ($3 = '' OR EXISTS (SELECT 1 FROM artifact_tags t WHERE t.tag = $3 AND t.id = a.id)) \
               AND ($4 = '' OR a.id < $4) \
             ORDER BY a.id DESC LIMIT $5",
        )
        .bind(filter.cas_hash)
        .bind(filter.creator)
        .bind(filter.tag)
        .bind(page_token)
        .bind(page_size as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let page = records
            .iter()
            .map(|bytes| decode::<Artifact>(bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if page.len() == page_size {
            page.last().map(|a| a.artifact_id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((page, next))
    }

    /// Ids of the first `limit` artifacts that name `id` as a parent, by id.
    pub async fn children_of(&self, id: &str, limit: usize) -> Result<Vec<String>, Status> {
        sqlx::query_scalar("SELECT child FROM lineage WHERE parent = $1 ORDER BY child LIMIT $2")
            .bind(id)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)
    }

    /// The first `limit` distinct tags (or creators), in order.
    pub async fn index_values(&self, tags: bool, limit: usize) -> Result<Vec<String>, Status> {
        let query = if tags {
            "SELECT DISTINCT tag FROM artifact_tags ORDER BY tag LIMIT $1"
        } else {
            "SELECT DISTINCT creator FROM artifacts ORDER BY creator LIMIT $1"
        };
        sqlx::query_scalar(query)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)
    }

    /// Binds (or rebinds) an identity to device hints.
    pub async fn bind(&self, identity: &str, hints: DeviceHints) -> Result<Binding, Status> {
        let binding = new_binding(identity, hints)?;
        sqlx::query(
            "INSERT INTO bindings (identity, record) VALUES ($1, $2) \
             ON CONFLICT (identity) DO UPDATE SET record = EXCLUDED.record",
        )
        .bind(&binding.identity)
        .bind(binding.encode_to_vec())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(binding)
    }

    /// One binding, if it exists.
    pub async fn binding(&self, identity: &str) -> Result<Option<Binding>, Status> {
        let record: Option<Vec<u8>> = sqlx::query_scalar("SELECT record FROM bindings WHERE identity = $1")
            .bind(identity)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        record.map(|bytes| decode(&bytes)).transpose()
    }

    /// The first `limit` bindings, by identity.
    pub async fn bindings(&self, limit: usize) -> Result<Vec<Binding>, Status> {
        let records: Vec<Vec<u8>> = sqlx::query_scalar("SELECT record FROM bindings ORDER BY identity LIMIT $1")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        records.iter().map(|bytes| decode(bytes)).collect()
    }
}

/// Why an insert did not happen.
enum Inserted {
    /// Another process took the id first: try again with a fresh one.
    IdTaken,
    Failed(Status),
}

impl From<Status> for Inserted {
    fn from(status: Status) -> Self {
        Self::Failed(status)
    }
}
