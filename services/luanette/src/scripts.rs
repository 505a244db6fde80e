//! Stored scripts: the source in the shared CAS (named by its BLAKE3 hash), and an index
//! entry in sled (`hooteproto.v1.ScriptInfo`: tags, creator, created time and what the
//! script's `describe()` returned). Every write is flushed before it is acknowledged.

use std::time::{Duration, SystemTime};

use hooteproto::Status;
use hooteproto::v1::{ScriptDescription, ScriptInfo, ScriptStoreReply, ScriptStoreRequest};
use prost::Message as _;
use prost_types::value::Kind;

use crate::sandbox::{self, EvalError, Limits};

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
    index: sled::Tree,
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
        Some(Kind::StructValue(schema)) => Some(hooteproto::wkt::Struct::from(schema.clone())),
        None => None,
        Some(_) => return Err(Status::invalid_argument(format!("{shape}: `params` must be a table"))),
    };
    Ok(ScriptDescription {
        name: text("name")?,
        description: text("description")?,
        params_schema,
    })
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
            db,
        })
    }

    /// Checks, describes, stores and indexes a script. Storing the same source again merges
    /// its tags into the existing entry.
    pub async fn store(&self, request: ScriptStoreRequest) -> Result<ScriptStoreReply, Status> {
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
        let (described, stored) = {
            let cas = self.cas.clone();
            tokio::task::spawn_blocking(move || {
                let described = sandbox::describe(&content, DESCRIBE_LIMITS);
                let stored = described
                    .as_ref()
                    .ok()
                    .map(|_| cas.store(content.as_bytes(), "text/x-lua"));
                (described, stored)
            })
            .await
            .map_err(internal)?
        };
        let description = match described {
            Ok(Some(value)) => Some(description_of(value)?),
            Ok(None) => None,
            Err(error @ (EvalError::Syntax { .. } | EvalError::Runtime { .. } | EvalError::Conversion(_))) => {
                return Err(Status::invalid_argument(format!(
                    "the script cannot be stored: {error}"
                )));
            }
            Err(error) => return Err(Status::invalid_argument(format!("describe() failed: {error}"))),
        };
        let stored = match stored {
            Some(Ok(stored)) => stored,
            Some(Err(e)) => return Err(Status::internal(format!("storing the script in the CAS: {e}"))),
            None => return Err(Status::internal("the script was described but not stored")),
        };
        let hash = stored.info.hash.to_string();
        let existing = self.get(&hash)?;
        let already_existed = existing.is_some();
        let script = match existing {
            Some(mut script) => {
                script.tags.extend(request.tags);
                script.tags.sort();
                script.tags.dedup();
                script
            }
            None => {
                let mut tags = request.tags;
                tags.sort();
                tags.dedup();
                ScriptInfo {
                    script_hash: hash.clone(),
                    tags,
                    creator: request.creator,
                    created_at: Some(SystemTime::now().into()),
                    description,
                }
            }
        };
        self.index
            .insert(hash.as_bytes(), script.encode_to_vec())
            .map_err(internal)?;
        self.db.flush_async().await.map_err(internal)?;
        Ok(ScriptStoreReply {
            script: Some(Box::new(script)),
            already_existed,
        })
    }

    fn get(&self, hash: &str) -> Result<Option<ScriptInfo>, Status> {
        match self.index.get(hash.as_bytes()).map_err(internal)? {
            Some(bytes) => ScriptInfo::decode(bytes.as_ref()).map(Some).map_err(internal),
            None => Ok(None),
        }
    }

    /// A stored script's entry, by full hash or unique prefix.
    pub fn describe(&self, hash_or_prefix: &str) -> Result<ScriptInfo, Status> {
        let hash = self.cas.resolve(hash_or_prefix).map_err(|e| match e.kind() {
            cas::ErrorKind::NotFound => Status::not_found(format!("no stored script {hash_or_prefix}")),
            _ => Status::invalid_argument(e.to_string()),
        })?;
        self.get(&hash.to_string())?
            .ok_or_else(|| Status::not_found(format!("{hash} is in the CAS but is not a stored script")))
    }

    /// Scripts matching every given filter, newest first. `vibe` matches (case-insensitively)
    /// any word of name, description or tags.
    pub fn search(&self, tag: &str, creator: &str, vibe: &str, limit: usize) -> Result<Vec<ScriptInfo>, Status> {
        let limit = if limit == 0 {
            DEFAULT_RESULTS
        } else {
            limit.min(MAX_RESULTS)
        };
        let vibe = vibe.to_lowercase();
        let mut found = Vec::new();
        for item in self.index.iter() {
            let (_, bytes) = item.map_err(internal)?;
            let script = ScriptInfo::decode(bytes.as_ref()).map_err(internal)?;
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
        found.sort_by(|a, b| {
            let time = |s: &ScriptInfo| s.created_at.as_ref().map(|t| (t.seconds, t.nanos)).unwrap_or_default();
            time(b).cmp(&time(a))
        });
        found.truncate(limit);
        Ok(found)
    }
}
