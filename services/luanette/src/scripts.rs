//! Stored scripts: the source in the shared CAS (named by its BLAKE3 hash), and an index
//! entry in sled (`hooteproto.v1.ScriptInfo`: tags, creator, created time and what the
//! script's `describe()` returned), and the names that refer to them ([`crate::names`]).
//! Every write is flushed before it is acknowledged.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hooteproto::Status;
use hooteproto::v1::{ScriptDescription, ScriptInfo, ScriptSearchRequest, ScriptStoreReply, ScriptStoreRequest};
use prost::Message as _;
use prost_types::value::Kind;

use tokio_util::sync::CancellationToken;

use crate::names::{Named, Names, Reference};
use crate::runner::Task;
use crate::sandbox::{EvalError, Limits};
use crate::shared_scripts::{Change, SharedScripts};

/// Largest script source accepted.
pub const MAX_SOURCE: usize = 1 << 20;
/// Most tags, and longest tag or creator.
const MAX_TAGS: usize = 64;
const MAX_LABEL: usize = 128;
/// Default and largest number of search results.
const DEFAULT_RESULTS: usize = 50;
const MAX_RESULTS: usize = 500;
/// Limits of running a script's top level and `describe()` when it is stored.
const DESCRIBE_LIMITS: Limits = Limits {
    wall: Duration::from_secs(2),
    memory: 64 << 20,
};

/// The index and the CAS it points into.
#[derive(Clone)]
pub struct Scripts {
    cas: cas::Cas,
    db: sled::Db,
    /// One flush at a time for acknowledged writes (sled's `flush_async` can deadlock).
    durable: std::sync::Arc<hooteproto::durable::GroupFlush<sled::Error>>,
    index: sled::Tree,
    names: Names,
    /// Cluster mode: the index in PostgreSQL that this one replicates.
    shared: Option<Shared>,
}

/// A replica's link to the shared index.
#[derive(Clone)]
struct Shared {
    tables: SharedScripts,
    /// The last change applied here (in `index`'s database, key [`APPLIED`]).
    meta: sled::Tree,
    /// One applier at a time (the follower, and stores catching up to their own change).
    applying: Arc<std::sync::Mutex<()>>,
    stop: CancellationToken,
    /// Keeps the process's listener alive while this index follows it.
    _notifications: crate::cluster::Notifications,
}

/// Where a replica keeps the last shared change it applied.
const APPLIED: &[u8] = b"applied";

/// What a store changed.
#[derive(Debug, Default)]
pub struct Stored {
    /// The index entry is new or its tags changed.
    pub entry_changed: bool,
    /// The name it was stored under, and whether that made a new version.
    pub named: Option<Named>,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("script index: {e}"))
}

fn field<'a>(object: &'a prost_types::Struct, key: &str) -> Option<&'a Kind> {
    object.fields.get(key).and_then(|v| v.kind.as_ref())
}

/// `describe()`'s result as a ScriptDescription.
fn description_of(value: prost_types::Value) -> Result<ScriptDescription, Status> {
    let shape = "describe() must return a table {name = \"...\", description = \"...\", params = {JSON Schema}}";
    let Some(Kind::StructValue(object)) = value.kind else {
        return Err(Status::invalid_argument(shape));
    };
    let text = |key| match field(&object, key) {
        Some(Kind::StringValue(s)) => Ok(s.clone()),
        None => Ok(String::new()),
        Some(_) => Err(Status::invalid_argument(format!("{shape}: `{key}` must be a string"))),
    };
    let params_schema = match field(&object, "params") {
        Some(Kind::StructValue(schema)) => {
            let schema = hooteproto::wkt::Struct::from(schema.clone());
            params_validator(&schema)?;
            Some(schema)
        }
        None => None,
        Some(_) => return Err(Status::invalid_argument(format!("{shape}: `params` must be a table"))),
    };
    Ok(ScriptDescription {
        name: text("name")?,
        description: text("description")?,
        params_schema,
    })
}

/// Compiles a script's params JSON Schema. Remote `$ref`s are not fetched.
pub fn params_validator(schema: &hooteproto::wkt::Struct) -> Result<jsonschema::Validator, Status> {
    let json = schema
        .to_json()
        .map_err(|e| Status::invalid_argument(format!("params schema is malformed: {e}")))?;
    jsonschema::validator_for(&serde_json::Value::Object(json))
        .map_err(|e| Status::invalid_argument(format!("describe().params is not a valid JSON Schema: {e}")))
}

/// Checks `params` against a script's declared schema; the error names every failing field.
pub fn validate_params(script: &ScriptInfo, params: Option<&hooteproto::wkt::Struct>) -> Result<(), Status> {
    let Some(schema) = script.description.as_ref().and_then(|d| d.params_schema.as_ref()) else {
        return Ok(());
    };
    let validator = params_validator(schema).map_err(|e| Status::failed_precondition(e.message))?;
    let instance = match params {
        Some(params) => params
            .to_json()
            .map_err(|e| Status::invalid_argument(format!("params are malformed: {e}")))?,
        None => serde_json::Map::new(),
    };
    let instance = serde_json::Value::Object(instance);
    let errors: Vec<(String, String)> = validator
        .iter_errors(&instance)
        .take(20)
        .map(|error| {
            let path = error.instance_path().to_string();
            let field = if path.is_empty() {
                "params".to_string()
            } else {
                format!("params{}", path.replace('/', "."))
            };
            (field, error.to_string())
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    let message = errors
        .iter()
        .map(|(field, why)| format!("{field}: {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    let list: Vec<_> = errors
        .iter()
        .map(|(field, why)| serde_json::json!({"field": field, "message": why}))
        .collect();
    Err(
        Status::invalid_argument(format!("params do not match the script's schema: {message}")).with_details(
            hooteproto::wkt::Struct::from_json(
                serde_json::json!({"kind": "params", "errors": list})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        ),
    )
}

fn check_label(what: &str, value: &str) -> Result<(), Status> {
    if value.len() > MAX_LABEL {
        return Err(Status::invalid_argument(format!(
            "{what} must be at most {MAX_LABEL} bytes"
        )));
    }
    Ok(())
}

impl Scripts {
    /// Opens the index under `dir`, pointing into `cas`.
    pub fn open(cas: cas::Cas, dir: &std::path::Path) -> Result<Self, sled::Error> {
        let db = sled::open(dir)?;
        Ok(Self {
            cas,
            index: db.open_tree("scripts")?,
            names: Names::open(&db)?,
            durable: std::sync::Arc::new(hooteproto::durable::GroupFlush::new({
                let db = db.clone();
                move || db.flush().map(drop)
            })),
            db,
            shared: None,
        })
    }

    /// Cluster mode: makes this index a replica of the shared one in `pool`'s database
    /// (which `notifications` listens to): applies what it missed, then follows changes
    /// until [`Scripts::stop_following`].
    pub async fn share(
        &mut self,
        pool: sqlx::PgPool,
        notifications: &crate::cluster::Notifications,
    ) -> Result<(), Status> {
        let shared = Shared {
            tables: SharedScripts::new(pool),
            meta: self.db.open_tree("shared_index").map_err(internal)?,
            applying: Arc::new(std::sync::Mutex::new(())),
            stop: CancellationToken::new(),
            _notifications: notifications.clone(),
        };
        self.shared = Some(shared.clone());
        // Subscribed before catching up, so no change falls between the two.
        let heard = notifications.subscribe();
        let applied = self.catch_up().await?;
        let replica = self.clone();
        let follow =
            shared
                .tables
                .clone()
                .follow(heard, applied, move |change| replica.apply(change), shared.stop.clone());
        tokio::spawn(follow);
        Ok(())
    }

    /// Stops following the shared index (at shutdown).
    pub fn stop_following(&self) {
        if let Some(shared) = &self.shared {
            shared.stop.cancel();
        }
    }

    fn applied(shared: &Shared) -> Result<i64, Status> {
        Ok(shared
            .meta
            .get(APPLIED)
            .map_err(internal)?
            .and_then(|bytes| bytes.as_ref().try_into().ok().map(i64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Applies one shared change here, unless it already was.
    fn apply(&self, change: &Change) -> Result<(), Status> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let _one_at_a_time = shared.applying.lock().unwrap_or_else(|e| e.into_inner());
        if change.seq <= Self::applied(shared)? {
            return Ok(());
        }
        let hash = &change.record.script_hash;
        self.index
            .insert(hash.as_bytes(), change.record.encode_to_vec())
            .map_err(internal)?;
        if let Some((name, version)) = &change.naming {
            self.names.put_version(name, *version, hash)?;
        }
        shared
            .meta
            .insert(APPLIED, &change.seq.to_be_bytes())
            .map_err(internal)?;
        Ok(())
    }

    /// Applies every shared change not applied here yet; returns the last one.
    async fn catch_up(&self) -> Result<i64, Status> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        let applied = Self::applied(shared)?;
        let last = shared.tables.catch_up(applied, &|change| self.apply(change)).await?;
        self.durable.flush().await.map_err(internal)?;
        Ok(last)
    }

    /// Checks, describes, stores and indexes a script. Storing the same source again merges
    /// its tags into the existing entry.
    ///
    /// With a name, the source becomes that name's newest version (unless it already is).
    pub async fn store(
        &self,
        request: ScriptStoreRequest,
        runner: &crate::runner::Runner,
    ) -> Result<(ScriptStoreReply, Stored), Status> {
        if !request.name.is_empty() && !crate::names::valid_name(&request.name) {
            return Err(crate::names::name_error(&request.name));
        }
        if request.content.len() > MAX_SOURCE {
            return Err(Status::invalid_argument(format!(
                "scripts are at most {MAX_SOURCE} bytes"
            )));
        }
        if request.tags.len() > MAX_TAGS {
            return Err(Status::invalid_argument(format!("at most {MAX_TAGS} tags")));
        }
        for tag in &request.tags {
            check_label("a tag", tag)?;
        }
        check_label("creator", &request.creator)?;
        let content = request.content;
        let described = runner
            .run(
                Task::Describe { code: content.clone() },
                DESCRIBE_LIMITS,
                tokio_util::sync::CancellationToken::new(),
            )
            .await?
            .result;
        let description = match described {
            Ok(prost_types::Value { kind: None }) => None,
            Ok(value) => Some(description_of(value)?),
            Err(error @ (EvalError::Syntax { .. } | EvalError::Runtime { .. } | EvalError::Conversion(_))) => {
                return Err(Status::invalid_argument(format!(
                    "the script cannot be stored: {error}"
                )));
            }
            Err(error) => return Err(Status::invalid_argument(format!("describe() failed: {error}"))),
        };
        let cas = self.cas.clone();
        let stored = tokio::task::spawn_blocking(move || cas.store(content.as_bytes(), "text/x-lua"))
            .await
            .map_err(|_| Status::internal("storing the script in the CAS was interrupted"))?
            .map_err(|e| Status::internal(format!("storing the script in the CAS: {e}")))?;
        let hash = stored.info.hash.to_string();
        // The entry a source gets when it is stored for the first time.
        let fresh = {
            let mut tags = request.tags.clone();
            tags.sort();
            tags.dedup();
            ScriptInfo {
                script_hash: hash.clone(),
                tags,
                creator: request.creator,
                created_at: Some(SystemTime::now().into()),
                description,
                ..Default::default()
            }
        };
        if let Some(shared) = &self.shared {
            let recorded = shared.tables.record(fresh, &request.tags, &request.name).await?;
            self.catch_up().await?;
            let script = match &recorded.named {
                Some(named) => ScriptInfo {
                    name: named.current.name.clone(),
                    version: named.current.version,
                    ..recorded.record
                },
                None => self.with_naming(recorded.record)?,
            };
            return Ok((
                ScriptStoreReply {
                    script: Some(Box::new(script)),
                    already_existed: recorded.already_existed,
                },
                Stored {
                    entry_changed: recorded.entry_changed,
                    named: recorded.named,
                },
            ));
        }
        let existing = self.get(&hash)?;
        let already_existed = existing.is_some();
        let before = existing.clone();
        let script = match existing {
            Some(mut script) => {
                script.tags.extend(request.tags);
                script.tags.sort();
                script.tags.dedup();
                script
            }
            None => fresh,
        };
        let entry_changed = before.as_ref() != Some(&script);
        if entry_changed {
            self.index
                .insert(hash.as_bytes(), script.encode_to_vec())
                .map_err(internal)?;
        }
        let named = match request.name.as_str() {
            "" => None,
            name => Some(self.names.record(name, &hash)?),
        };
        if entry_changed || named.as_ref().is_some_and(|n| n.changed) {
            self.durable.flush().await.map_err(internal)?;
        }
        let script = match &named {
            Some(named) => ScriptInfo {
                name: named.current.name.clone(),
                version: named.current.version,
                ..script
            },
            None => self.with_naming(script)?,
        };
        Ok((
            ScriptStoreReply {
                script: Some(Box::new(script)),
                already_existed,
            },
            Stored { entry_changed, named },
        ))
    }

    /// `script` with the name and version it was last stored under, if any.
    fn with_naming(&self, script: ScriptInfo) -> Result<ScriptInfo, Status> {
        Ok(match self.names.naming_of(&script.script_hash)? {
            Some((name, version)) => ScriptInfo {
                name,
                version,
                ..script
            },
            None => script,
        })
    }

    /// A stored script's entry and source, by any [`Reference`].
    pub fn source(&self, reference: &str) -> Result<(ScriptInfo, String), Status> {
        let info = self.describe(reference)?;
        let hash = cas::Hash::parse(&info.script_hash).map_err(internal)?;
        let bytes = self
            .cas
            .read(&hash, MAX_SOURCE as u64, true)
            .map_err(|e| match e.kind() {
                cas::ErrorKind::NotFound => Status::failed_precondition(format!(
                    "script {} is indexed but its source is missing from the CAS",
                    info.script_hash
                )),
                _ => Status::internal(format!("reading script {}: {e}", info.script_hash)),
            })?;
        let source = String::from_utf8(bytes).map_err(|_| internal("a stored script is not UTF-8"))?;
        Ok((info, source))
    }

    /// The scripts' database (jobs share it).
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    /// Up to `limit` scripts after `cursor` (a hash) in hash order, and the next cursor.
    pub fn page(&self, cursor: &str, limit: usize) -> Result<(Vec<ScriptInfo>, String), Status> {
        let mut scripts = Vec::new();
        let mut range = self
            .index
            .range::<&[u8], _>((std::ops::Bound::Excluded(cursor.as_bytes()), std::ops::Bound::Unbounded));
        for item in range.by_ref() {
            let (_, bytes) = item.map_err(internal)?;
            scripts.push(ScriptInfo::decode(bytes.as_ref()).map_err(internal)?);
            if scripts.len() == limit {
                break;
            }
        }
        let next = match (scripts.len() == limit, range.next()) {
            (true, Some(_)) => scripts.last().map(|s| s.script_hash.clone()).unwrap_or_default(),
            _ => String::new(),
        };
        Ok((scripts, next))
    }

    /// Hashes starting with `prefix` (for completion), and how many there are.
    pub fn hashes_with_prefix(&self, prefix: &str, limit: usize) -> Result<(Vec<String>, usize), Status> {
        let mut hashes = Vec::new();
        let mut total = 0;
        for key in self.index.scan_prefix(prefix.as_bytes()).keys() {
            let key = key.map_err(internal)?;
            total += 1;
            if hashes.len() < limit {
                hashes.push(String::from_utf8_lossy(&key).into_owned());
            }
        }
        Ok((hashes, total))
    }

    /// Every tag in use (for completion).
    pub fn tags(&self) -> Result<Vec<String>, Status> {
        let mut tags = std::collections::BTreeSet::new();
        for item in self.index.iter().values() {
            let script = ScriptInfo::decode(item.map_err(internal)?.as_ref()).map_err(internal)?;
            tags.extend(script.tags);
        }
        Ok(tags.into_iter().collect())
    }

    fn get(&self, hash: &str) -> Result<Option<ScriptInfo>, Status> {
        match self.index.get(hash.as_bytes()).map_err(internal)? {
            Some(bytes) => ScriptInfo::decode(bytes.as_ref()).map(Some).map_err(internal),
            None => Ok(None),
        }
    }

    /// A stored script's entry by any [`Reference`]: a hash or unique prefix, a name (its
    /// newest version) or `name@<hash prefix>`. The entry carries the name and version it
    /// was found under.
    pub fn describe(&self, reference: &str) -> Result<ScriptInfo, Status> {
        let version = match Reference::parse(reference)? {
            Reference::Hash(hash_or_prefix) => {
                let hash = self.cas.resolve(hash_or_prefix).map_err(|e| match e.kind() {
                    cas::ErrorKind::NotFound => Status::not_found(format!("no stored script {hash_or_prefix}")),
                    _ => Status::invalid_argument(e.to_string()),
                })?;
                let script = self
                    .get(&hash.to_string())?
                    .ok_or_else(|| Status::not_found(format!("{hash} is in the CAS but is not a stored script")))?;
                return self.with_naming(script);
            }
            Reference::Name(name) => self
                .names
                .newest(name)?
                .ok_or_else(|| Status::not_found(format!("no script is named `{name}`")))?,
            Reference::Pinned { name, prefix } => self.names.pinned(name, prefix)?,
        };
        let script = self.get(&version.hash)?.ok_or_else(|| {
            Status::failed_precondition(format!(
                "script `{}` version {} names {}, which is not in the index",
                version.name, version.version, version.hash
            ))
        })?;
        Ok(ScriptInfo {
            name: version.name,
            version: version.version,
            ..script
        })
    }

    /// Script names starting with `prefix` (for completion), and how many there are.
    pub fn names_with_prefix(&self, prefix: &str, limit: usize) -> Result<(Vec<String>, usize), Status> {
        self.names.with_prefix(prefix, limit)
    }

    /// Scripts matching every given filter, newest first. `vibe` matches (case-insensitively)
    /// any word of name, description or tags. With `name`, the versions of that name, newest
    /// first.
    pub fn search(&self, request: &ScriptSearchRequest) -> Result<Vec<ScriptInfo>, Status> {
        let limit = match request.limit as usize {
            0 => DEFAULT_RESULTS,
            limit => limit.min(MAX_RESULTS),
        };
        let (tag, creator) = (request.tag.as_str(), request.creator.as_str());
        let vibe = request.vibe.to_lowercase();
        let candidates: Vec<ScriptInfo> = if request.name.is_empty() {
            let mut all = Vec::new();
            for item in self.index.iter() {
                let (_, bytes) = item.map_err(internal)?;
                all.push(self.with_naming(ScriptInfo::decode(bytes.as_ref()).map_err(internal)?)?);
            }
            all
        } else {
            let mut versions = Vec::new();
            for version in self.names.versions(&request.name, MAX_RESULTS)? {
                if let Some(script) = self.get(&version.hash)? {
                    versions.push(ScriptInfo {
                        name: version.name,
                        version: version.version,
                        ..script
                    });
                }
            }
            versions
        };
        let mut found = Vec::new();
        for script in candidates {
            if !tag.is_empty() && !script.tags.iter().any(|t| t == tag) {
                continue;
            }
            if !creator.is_empty() && script.creator != creator {
                continue;
            }
            if !vibe.is_empty() {
                let description = script.description.as_ref();
                let haystack = format!(
                    "{} {} {}",
                    description.map(|d| d.name.as_str()).unwrap_or_default(),
                    description.map(|d| d.description.as_str()).unwrap_or_default(),
                    script.tags.join(" ")
                )
                .to_lowercase();
                if !vibe.split_whitespace().any(|word| haystack.contains(word)) {
                    continue;
                }
            }
            found.push(script);
        }
        if request.name.is_empty() {
            found.sort_by(|a, b| {
                let time = |s: &ScriptInfo| s.created_at.as_ref().map(|t| (t.seconds, t.nanos)).unwrap_or_default();
                time(b).cmp(&time(a))
            });
        }
        found.truncate(limit);
        Ok(found)
    }
}
