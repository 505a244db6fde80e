//! Where artifacts, lineage and bindings live: sled under the data directory (the embedded
//! default) or PostgreSQL (`--database-url`, cluster mode, several Hootenanny processes on
//! one database). Both keep each record as its wire message and answer the same questions
//! with the same ordering; the tests run against both.

use hooteproto::Status;
use hooteproto::v1::{Artifact, ArtifactCreateRequest, Binding, DeviceHints};

pub use crate::artifacts::Filter;
use crate::artifacts::SledStore;
use crate::postgres::PgStore;

/// One of the two stores.
#[derive(Clone)]
pub enum Store {
    Sled(SledStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the store `database_url` names (a `postgres://` URL), else sled under `db_dir`.
    pub async fn open(database_url: Option<&str>, db_dir: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        match database_url {
            Some(url) => Ok(Self::Postgres(PgStore::connect(url).await?)),
            None => Ok(Self::Sled(
                SledStore::open(db_dir).with_context(|| format!("opening sled at {}", db_dir.display()))?,
            )),
        }
    }

    /// Which store, for logs.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Sled(_) => "sled",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Makes every acknowledged write durable (PostgreSQL commits are already).
    pub async fn flush(&self) -> Result<(), Status> {
        match self {
            Self::Sled(store) => store.flush().await,
            Self::Postgres(_) => Ok(()),
        }
    }

    /// Stores a new artifact; its parents must exist. The CAS object must exist (checked by
    /// the caller).
    pub async fn create(&self, request: ArtifactCreateRequest) -> Result<Artifact, Status> {
        match self {
            Self::Sled(store) => store.create(request).await,
            Self::Postgres(store) => store.create(request).await,
        }
    }

    /// One artifact, if it exists.
    pub async fn get(&self, id: &str) -> Result<Option<Artifact>, Status> {
        match self {
            Self::Sled(store) => store.get(id),
            Self::Postgres(store) => store.get(id).await,
        }
    }

    /// Artifacts newest first, filtered, after `page_token` (an id), and the next token.
    pub async fn list(
        &self,
        filter: &Filter<'_>,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<Artifact>, String), Status> {
        match self {
            Self::Sled(store) => store.list(filter, page_size, page_token),
            Self::Postgres(store) => store.list(filter, page_size, page_token).await,
        }
    }

    /// Ids of the first `limit` artifacts that name `id` as a parent, by id.
    pub async fn children_of(&self, id: &str, limit: usize) -> Result<Vec<String>, Status> {
        match self {
            Self::Sled(store) => store.children_of(id, limit),
            Self::Postgres(store) => store.children_of(id, limit).await,
        }
    }

    /// The first `limit` distinct tags (or creators), in order.
    pub async fn index_values(&self, tags: bool, limit: usize) -> Result<Vec<String>, Status> {
        match self {
            Self::Sled(store) => store.index_values(tags, limit),
            Self::Postgres(store) => store.index_values(tags, limit).await,
        }
    }

    /// Binds (or rebinds) an identity to device hints.
    pub async fn bind(&self, identity: &str, hints: DeviceHints) -> Result<Binding, Status> {
        match self {
            Self::Sled(store) => store.bind(identity, hints).await,
            Self::Postgres(store) => store.bind(identity, hints).await,
        }
    }

    /// One binding, if it exists.
    pub async fn binding(&self, identity: &str) -> Result<Option<Binding>, Status> {
        match self {
            Self::Sled(store) => store.binding(identity),
            Self::Postgres(store) => store.binding(identity).await,
        }
    }

    /// The first `limit` bindings, by identity.
    pub async fn bindings(&self, limit: usize) -> Result<Vec<Binding>, Status> {
        match self {
            Self::Sled(store) => store.bindings(limit),
            Self::Postgres(store) => store.bindings(limit).await,
        }
    }
}
