//! Artifacts and device bindings in sled (the embedded store), and the checks every store
//! makes ([`new_artifact`], [`new_binding`]).
//!
//! Records are stored as their wire messages (`hooteproto.v1.Artifact`, `Binding`), so
//! what is on disk is exactly what the schema describes. Ids are time-ordered
//! (`art-<13 hex ms><8 hex random>`), so listing newest first is a reverse scan. Every
//! write is flushed before it is acknowledged: sled alone flushes only every 500 ms.

use std::time::SystemTime;

use hooteproto::Status;
use hooteproto::v1::{Artifact, ArtifactCreateRequest, Binding, DeviceHints};
use prost::Message as _;
use sled::Transactional as _;

/// Limits on untrusted input.
pub const MAX_TAGS: usize = 64;
/// Longest tag, creator or identity.
pub const MAX_LABEL: usize = 128;
/// Longest artifact name.
pub const MAX_NAME: usize = 512;
/// Most parents of one artifact.
pub const MAX_PARENTS: usize = 64;
/// Largest encoded metadata object.
pub const MAX_METADATA: usize = 64 * 1024;
/// Default and largest page of a listing.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page of a listing.
pub const MAX_PAGE: usize = 500;

/// What a listing keeps (empty: any).
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub tag: &'a str,
    pub creator: &'a str,
    /// 64 hex characters.
    pub cas_hash: &'a str,
}

/// The embedded store: sled trees under the data directory.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    /// One flush at a time for acknowledged writes (sled's `flush_async` can deadlock).
    durable: std::sync::Arc<hooteproto::durable::GroupFlush<sled::Error>>,
    artifacts: sled::Tree,
    by_tag: sled::Tree,
    by_creator: sled::Tree,
    /// `cas_hash\0id`: which artifacts name an object.
    by_hash: sled::Tree,
    children: sled::Tree,
    bindings: sled::Tree,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("artifact store: {e}"))
}

/// `a\0b`: index keys that sort by the first part, then the second.
fn index_key(first: &str, second: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(first.len() + 1 + second.len());
    key.extend_from_slice(first.as_bytes());
    key.push(0);
    key.extend_from_slice(second.as_bytes());
    key
}

fn check_label(what: &str, value: &str) -> Result<(), Status> {
    if value.len() > MAX_LABEL || value.contains('\0') {
        return Err(Status::invalid_argument(format!(
            "{what} must be at most {MAX_LABEL} bytes without NUL"
        )));
    }
    Ok(())
}

/// A new artifact id, greater than every id this process made before, so listing newest first
/// stays in creation order even for artifacts made within one millisecond: the random tail
/// only starts a millisecond; within it the tail counts up.
pub(crate) fn new_id() -> String {
    static LAST: std::sync::Mutex<(u128, u32)> = std::sync::Mutex::new((0, 0));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *last = match last.1.checked_add(1) {
        Some(next) if now <= last.0 => (last.0, next),
        // A new millisecond (or a tail that ran out): start low in the range, so it can count up.
        _ => (now.max(last.0 + 1), rand::random::<u32>() >> 4),
    };
    format!("art-{:013x}{:08x}", last.0, last.1)
}

/// A new artifact from a request, checked against every limit, its parents deduplicated, its
/// tags sorted, with a fresh id and time. Whether its parents exist is the store's to check.
pub fn new_artifact(mut request: ArtifactCreateRequest) -> Result<Artifact, Status> {
    // A parent named twice is one parent (each extra copy would multiply every lineage
    // query through this artifact).
    let mut seen = std::collections::HashSet::new();
    request.parent_ids.retain(|parent| seen.insert(parent.clone()));
    if request.tags.len() > MAX_TAGS || request.parent_ids.len() > MAX_PARENTS {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_TAGS} tags and {MAX_PARENTS} parents per artifact"
        )));
    }
    for tag in &request.tags {
        check_label("a tag", tag)?;
    }
    check_label("creator", &request.creator)?;
    if request.name.len() > MAX_NAME {
        return Err(Status::invalid_argument(format!(
            "name must be at most {MAX_NAME} bytes"
        )));
    }
    if request
        .metadata
        .as_ref()
        .is_some_and(|m| m.as_encoded().len() > MAX_METADATA)
    {
        return Err(Status::invalid_argument(format!(
            "metadata must encode to at most {MAX_METADATA} bytes"
        )));
    }
    if let Some(metadata) = &request.metadata {
        metadata
            .to_prost()
            .map_err(|e| Status::invalid_argument(format!("metadata is malformed: {e}")))?;
    }
    let mut tags = request.tags;
    tags.sort();
    tags.dedup();
    Ok(Artifact {
        artifact_id: new_id(),
        cas_hash: request.cas_hash,
        name: request.name,
        tags,
        creator: request.creator,
        metadata: request.metadata,
        parent_ids: request.parent_ids,
        created_at: Some(SystemTime::now().into()),
    })
}

/// A binding of `identity` to `hints`, checked against the limits, stamped now.
pub fn new_binding(identity: &str, hints: DeviceHints) -> Result<Binding, Status> {
    let valid = !identity.is_empty()
        && identity.len() <= MAX_LABEL
        && identity
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return Err(Status::invalid_argument(format!(
            "identity must be 1 to {MAX_LABEL} characters of [A-Za-z0-9._-], e.g. \"bass-synth\""
        )));
    }
    let count = hints.midi_port_patterns.len() + hints.usb_ids.len() + hints.audio_device_names.len();
    if count > MAX_TAGS
        || hints
            .extra
            .as_ref()
            .is_some_and(|e| e.as_encoded().len() > MAX_METADATA)
    {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_TAGS} hints and {MAX_METADATA} bytes of extra"
        )));
    }
    Ok(Binding {
        identity: identity.to_string(),
        hints: Some(hints),
        updated_at: Some(SystemTime::now().into()),
    })
}

impl SledStore {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, sled::Error> {
        let db = sled::open(dir)?;
        let store = Self {
            artifacts: db.open_tree("artifacts")?,
            by_tag: db.open_tree("by_tag")?,
            by_creator: db.open_tree("by_creator")?,
            by_hash: db.open_tree("by_hash")?,
            children: db.open_tree("children")?,
            bindings: db.open_tree("bindings")?,
            durable: std::sync::Arc::new(hooteproto::durable::GroupFlush::new({
                let db = db.clone();
                move || db.flush().map(drop)
            })),
            db,
        };
        store.index_hashes_of_older_artifacts()?;
        Ok(store)
    }

    /// Databases from before the by-hash index have artifacts without index entries, and an
    /// indexing cut short (a crash; an older binary adding artifacts since) leaves some
    /// without; every artifact has exactly one, so fewer entries than artifacts means index
    /// them all again (inserting an entry that exists changes nothing).
    fn index_hashes_of_older_artifacts(&self) -> Result<(), sled::Error> {
        if self.by_hash.len() >= self.artifacts.len() {
            return Ok(());
        }
        let mut indexed = 0usize;
        for item in self.artifacts.iter() {
            let (id, bytes) = item?;
            if let Ok(artifact) = Artifact::decode(bytes.as_ref()) {
                self.by_hash
                    .insert(index_key(&artifact.cas_hash, &String::from_utf8_lossy(&id)), &[])?;
                indexed += 1;
            }
        }
        self.db.flush()?;
        tracing::info!(artifacts = indexed, "indexed existing artifacts by CAS hash");
        Ok(())
    }

    /// Makes every acknowledged write durable.
    pub async fn flush(&self) -> Result<(), Status> {
        self.durable.flush().await.map(|_| ()).map_err(internal)
    }

    /// Stores a new artifact (see [`new_artifact`]). The CAS object must exist (checked by the caller).
    pub async fn create(&self, request: ArtifactCreateRequest) -> Result<Artifact, Status> {
        let artifact = new_artifact(request)?;
        for parent in &artifact.parent_ids {
            if !self.artifacts.contains_key(parent.as_bytes()).map_err(internal)? {
                return Err(Status::not_found(format!("parent artifact {parent:?} does not exist")));
            }
        }
        let id = artifact.artifact_id.as_str();
        let encoded = artifact.encode_to_vec();
        (
            &self.artifacts,
            &self.by_tag,
            &self.by_creator,
            &self.by_hash,
            &self.children,
        )
            .transaction(|(artifacts, by_tag, by_creator, by_hash, children)| {
                artifacts.insert(id.as_bytes(), encoded.as_slice())?;
                for tag in &artifact.tags {
                    by_tag.insert(index_key(tag, id), &[])?;
                }
                by_creator.insert(index_key(&artifact.creator, id), &[])?;
                by_hash.insert(index_key(&artifact.cas_hash, id), &[])?;
                for parent in &artifact.parent_ids {
                    children.insert(index_key(parent, id), &[])?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| internal(format!("{e:?}")))?;
        self.flush().await?;
        Ok(artifact)
    }

    /// One artifact, if it exists.
    pub fn get(&self, id: &str) -> Result<Option<Artifact>, Status> {
        match self.artifacts.get(id.as_bytes()).map_err(internal)? {
            Some(bytes) => Artifact::decode(bytes.as_ref()).map(Some).map_err(internal),
            None => Ok(None),
        }
    }

    /// Artifacts newest first, filtered by tag, creator and CAS object, after `page_token`
    /// (an id). The most selective index given is scanned; the other filters are checked on
    /// each artifact.
    pub fn list(
        &self,
        filter: &Filter<'_>,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<Artifact>, String), Status> {
        let Filter { tag, creator, cas_hash } = *filter;
        let page_size = if page_size == 0 {
            DEFAULT_PAGE
        } else {
            page_size.min(MAX_PAGE)
        };
        let ids: Box<dyn Iterator<Item = sled::Result<Vec<u8>>>> = if !cas_hash.is_empty() {
            Box::new(self.index_ids(&self.by_hash, cas_hash, page_token))
        } else if !tag.is_empty() {
            Box::new(self.index_ids(&self.by_tag, tag, page_token))
        } else if !creator.is_empty() {
            Box::new(self.index_ids(&self.by_creator, creator, page_token))
        } else {
            let range = if page_token.is_empty() {
                self.artifacts.iter()
            } else {
                self.artifacts.range(..page_token.as_bytes())
            };
            Box::new(range.rev().map(|item| item.map(|(k, _)| k.to_vec())))
        };
        let mut page = Vec::new();
        for id in ids {
            let id = String::from_utf8_lossy(&id.map_err(internal)?).into_owned();
            let Some(artifact) = self.get(&id)? else { continue };
            if (!creator.is_empty() && artifact.creator != creator)
                || (!tag.is_empty() && !artifact.tags.iter().any(|t| t == tag))
            {
                continue;
            }
            page.push(artifact);
            if page.len() == page_size {
                break;
            }
        }
        let next = if page.len() == page_size {
            page.last().map(|a| a.artifact_id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((page, next))
    }

    /// Ids under `value` in an index, newest first, before `before` if given.
    fn index_ids(&self, index: &sled::Tree, value: &str, before: &str) -> impl Iterator<Item = sled::Result<Vec<u8>>> {
        let start = index_key(value, "");
        let end = if before.is_empty() {
            index_key(value, "\u{10FFFF}")
        } else {
            index_key(value, before)
        };
        let skip = start.len();
        index
            .range(start..end)
            .rev()
            .map(move |item| item.map(|(k, _)| k[skip..].to_vec()))
    }

    /// Ids of the first `limit` artifacts that name `id` as a parent.
    pub fn children_of(&self, id: &str, limit: usize) -> Result<Vec<String>, Status> {
        let prefix = index_key(id, "");
        self.children
            .scan_prefix(&prefix)
            .take(limit)
            .map(|item| {
                item.map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
                    .map_err(internal)
            })
            .collect()
    }

    /// The first `limit` distinct values of an index (tags or creators), in order. Each step
    /// seeks past every entry of the value it found, so this reads `limit` entries, not the
    /// whole index.
    pub fn index_values(&self, tags: bool, limit: usize) -> Result<Vec<String>, Status> {
        let index = if tags { &self.by_tag } else { &self.by_creator };
        let mut values: Vec<String> = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        while values.len() < limit {
            let Some(item) = index.range(from.as_slice()..).next() else {
                break;
            };
            let (key, _) = item.map_err(internal)?;
            let value = key.split(|b| *b == 0).next().unwrap_or_default();
            // Keys are `value\0id` (values hold no NUL): all of this value's sort below `value\x01`.
            from = value.to_vec();
            from.push(1);
            values.push(String::from_utf8_lossy(value).into_owned());
        }
        Ok(values)
    }

    /// Binds (or rebinds) an identity to device hints.
    pub async fn bind(&self, identity: &str, hints: DeviceHints) -> Result<Binding, Status> {
        let binding = new_binding(identity, hints)?;
        self.bindings
            .insert(identity.as_bytes(), binding.encode_to_vec())
            .map_err(internal)?;
        self.flush().await?;
        Ok(binding)
    }

    /// One binding, if it exists.
    pub fn binding(&self, identity: &str) -> Result<Option<Binding>, Status> {
        match self.bindings.get(identity.as_bytes()).map_err(internal)? {
            Some(bytes) => Binding::decode(bytes.as_ref()).map(Some).map_err(internal),
            None => Ok(None),
        }
    }

    /// The first `limit` bindings, by identity.
    pub fn bindings(&self, limit: usize) -> Result<Vec<Binding>, Status> {
        self.bindings
            .iter()
            .take(limit)
            .map(|item| {
                let (_, bytes) = item.map_err(internal)?;
                Binding::decode(bytes.as_ref()).map_err(internal)
            })
            .collect()
    }
}
