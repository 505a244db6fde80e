//! Script names: a name is an ordered list of versions, each a script hash; the name alone
//! refers to the newest, `name@<hash prefix>` to one of them. Hot reload is this
//! indirection: whoever holds the name (a marker's metadata, an agent) runs the newest
//! version at the next use.
//!
//! Three keys per name in one sled tree, written in one transaction so two stores under one
//! name cannot both take the same version number:
//! - `name` → the newest version number (u32, big-endian);
//! - `name\0<version>` → the script hash of that version;
//! - and in a second tree, `hash` → `name\0<version>`, the newest naming of that source
//!   (so a lookup by hash can say which name and version it is).

use hooteproto::Status;
use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// Longest script name.
pub const MAX_NAME: usize = 64;
/// Most versions listed by one search.
const MAX_LISTED: usize = 500;

/// Whether `name` may name scripts: 1-64 of `[A-Za-z0-9._-]`, starting with a letter, and not
/// made of hex digits alone (which would read as a hash prefix).
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The error for a name that is not [`valid_name`].
pub fn name_error(name: &str) -> Status {
    Status::invalid_argument(format!(
        "`{name}` is not a script name: use 1-{MAX_NAME} of A-Z a-z 0-9 . _ -, starting with a letter and not made \
         of hex digits alone (those read as a hash prefix)"
    ))
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("script names: {e}"))
}

fn version_key(name: &str, version: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 5);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn parse_version_key(key: &[u8]) -> Option<(String, u32)> {
    let split = key.iter().position(|b| *b == 0)?;
    let version: [u8; 4] = key.get(split + 1..)?.try_into().ok()?;
    Some((
        String::from_utf8_lossy(&key[..split]).into_owned(),
        u32::from_be_bytes(version),
    ))
}

/// One version of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub name: String,
    pub version: u32,
    pub hash: String,
}

/// What storing a source under a name changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The version the name now refers to.
    pub current: Version,
    /// The hash the name referred to before (None for a new name, or when unchanged).
    pub previous: Option<String>,
    /// Whether a new version was recorded (false: the source already was the newest).
    pub changed: bool,
}

/// A script reference as a caller gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference<'a> {
    /// A full hash or a prefix.
    Hash(&'a str),
    /// The newest version of a name.
    Name(&'a str),
    /// The version of `name` whose hash starts with `prefix`.
    Pinned { name: &'a str, prefix: &'a str },
}

impl<'a> Reference<'a> {
    /// Whether it refers by name.
    pub fn is_named(&self) -> bool {
        !matches!(self, Self::Hash(_))
    }

    /// Reads `name`, `name@<hex prefix>` or a hash (prefix).
    pub fn parse(text: &'a str) -> Result<Self, Status> {
        if let Some((name, prefix)) = text.split_once('@') {
            if !valid_name(name) {
                return Err(name_error(name));
            }
            if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Status::invalid_argument(format!(
                    "`{text}`: after `@` comes a hash prefix (hex digits), e.g. {name}@1a2b3c4d"
                )));
            }
            return Ok(Self::Pinned { name, prefix });
        }
        if valid_name(text) {
            Ok(Self::Name(text))
        } else {
            Ok(Self::Hash(text))
        }
    }
}

/// The name index.
#[derive(Clone)]
pub struct Names {
    names: sled::Tree,
    by_hash: sled::Tree,
}

impl Names {
    /// Opens the trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            names: db.open_tree("script_names")?,
            by_hash: db.open_tree("script_names_by_hash")?,
        })
    }

    /// Makes `hash` the newest version of `name`, unless it already is. The caller flushes.
    pub fn record(&self, name: &str, hash: &str) -> Result<Named, Status> {
        if !valid_name(name) {
            return Err(name_error(name));
        }
        let outcome = (&self.names, &self.by_hash).transaction(|(names, by_hash)| {
            let newest = match names.get(name.as_bytes())? {
                Some(bytes) => {
                    Some(u32::from_be_bytes(bytes.as_ref().try_into().map_err(|_| {
                        ConflictableTransactionError::Abort("a malformed version counter")
                    })?))
                }
                None => None,
            };
            let previous = match newest {
                Some(version) => names
                    .get(version_key(name, version))?
                    .map(|h| String::from_utf8_lossy(&h).into_owned()),
                None => None,
            };
            if let (Some(version), Some(previous)) = (newest, &previous)
                && previous == hash
            {
                return Ok(Named {
                    current: Version {
                        name: name.to_string(),
                        version,
                        hash: hash.to_string(),
                    },
                    previous: None,
                    changed: false,
                });
            }
            let version = newest.unwrap_or(0).saturating_add(1);
            names.insert(name.as_bytes(), &version.to_be_bytes())?;
            names.insert(version_key(name, version), hash.as_bytes())?;
            by_hash.insert(hash.as_bytes(), version_key(name, version))?;
            Ok(Named {
                current: Version {
                    name: name.to_string(),
                    version,
                    hash: hash.to_string(),
                },
                previous,
                changed: true,
            })
        });
        outcome.map_err(|e| match e {
            TransactionError::Abort(why) => internal(why),
            TransactionError::Storage(e) => internal(e),
        })
    }

    /// Records `hash` as version `version` of `name`, as another front assigned it (a replica
    /// applying the shared index's changes, in order). The caller flushes.
    pub fn put_version(&self, name: &str, version: u32, hash: &str) -> Result<(), Status> {
        let outcome = (&self.names, &self.by_hash).transaction(|(names, by_hash)| {
            let newest = names
                .get(name.as_bytes())?
                .and_then(|bytes| bytes.as_ref().try_into().ok().map(u32::from_be_bytes));
            if newest.is_none_or(|newest| version > newest) {
                names.insert(name.as_bytes(), &version.to_be_bytes())?;
            }
            names.insert(version_key(name, version), hash.as_bytes())?;
            by_hash.insert(hash.as_bytes(), version_key(name, version))?;
            Ok::<_, ConflictableTransactionError<&str>>(())
        });
        outcome.map_err(|e| match e {
            TransactionError::Abort(why) => internal(why),
            TransactionError::Storage(e) => internal(e),
        })
    }

    /// The newest version of `name`.
    pub fn newest(&self, name: &str) -> Result<Option<Version>, Status> {
        let Some(bytes) = self.names.get(name.as_bytes()).map_err(internal)? else {
            return Ok(None);
        };
        let version = u32::from_be_bytes(bytes.as_ref().try_into().map_err(internal)?);
        Ok(self
            .names
            .get(version_key(name, version))
            .map_err(internal)?
            .map(|hash| Version {
                name: name.to_string(),
                version,
                hash: String::from_utf8_lossy(&hash).into_owned(),
            }))
    }

    /// Every version of `name`, newest first (at most `limit`).
    pub fn versions(&self, name: &str, limit: usize) -> Result<Vec<Version>, Status> {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        let mut versions = Vec::new();
        for item in self.names.scan_prefix(&prefix).rev() {
            let (key, hash) = item.map_err(internal)?;
            if let Some((name, version)) = parse_version_key(&key) {
                versions.push(Version {
                    name,
                    version,
                    hash: String::from_utf8_lossy(&hash).into_owned(),
                });
            }
            if versions.len() >= limit.min(MAX_LISTED) {
                break;
            }
        }
        Ok(versions)
    }

    /// The newest version of `name` whose hash starts with `prefix`; an error when the prefix
    /// matches different sources among its versions.
    pub fn pinned(&self, name: &str, prefix: &str) -> Result<Version, Status> {
        let prefix = prefix.to_ascii_lowercase();
        let mut found: Option<Version> = None;
        for version in self.versions(name, usize::MAX)? {
            if !version.hash.starts_with(&prefix) {
                continue;
            }
            match &found {
                None => found = Some(version),
                Some(first) if first.hash == version.hash => {}
                Some(first) => {
                    return Err(Status::invalid_argument(format!(
                        "{name}@{prefix} matches more than one version ({} and {}); give more of the hash",
                        first.hash, version.hash
                    )));
                }
            }
        }
        found.ok_or_else(|| {
            if self.names.contains_key(name.as_bytes()).unwrap_or(false) {
                Status::not_found(format!(
                    "no version of script `{name}` has a hash starting with {prefix}"
                ))
            } else {
                Status::not_found(format!("no script is named `{name}`"))
            }
        })
    }

    /// The newest naming of the source `hash`, if it was ever stored under a name.
    pub fn naming_of(&self, hash: &str) -> Result<Option<(String, u32)>, Status> {
        Ok(self
            .by_hash
            .get(hash.as_bytes())
            .map_err(internal)?
            .and_then(|key| parse_version_key(&key)))
    }

    /// Names starting with `prefix` (for completion), and how many there are.
    pub fn with_prefix(&self, prefix: &str, limit: usize) -> Result<(Vec<String>, usize), Status> {
        let mut found = Vec::new();
        let mut total = 0;
        for key in self.names.scan_prefix(prefix.as_bytes()).keys() {
            let key = key.map_err(internal)?;
            if key.contains(&0) {
                continue;
            }
            total += 1;
            if found.len() < limit {
                found.push(String::from_utf8_lossy(&key).into_owned());
            }
        }
        Ok((found, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_read_as_hashes_are_refused() {
        assert!(valid_name("bridge-into-chorus"));
        assert!(valid_name("v2.transition_a"));
        assert!(!valid_name("cafe"), "all hex: would read as a hash prefix");
        assert!(!valid_name("1bridge"));
        assert!(!valid_name("bridge chorus"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(65)));
    }

    #[test]
    fn references_parse_by_shape() {
        assert_eq!(Reference::parse("bridge").ok(), Some(Reference::Name("bridge")));
        assert_eq!(
            Reference::parse("bridge@1a2b").ok(),
            Some(Reference::Pinned {
                name: "bridge",
                prefix: "1a2b"
            })
        );
        assert_eq!(Reference::parse("1a2b3c4d").ok(), Some(Reference::Hash("1a2b3c4d")));
        assert!(Reference::parse("bridge@zz").is_err());
        assert!(Reference::parse("bad name@1a").is_err());
    }

    #[test]
    fn versions_count_up_and_a_restored_source_becomes_newest() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = sled::open(dir.path())?;
        let names = Names::open(&db)?;
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let first = names.record("bridge", &a)?;
        assert_eq!((first.current.version, first.previous, first.changed), (1, None, true));
        assert!(
            !names.record("bridge", &a)?.changed,
            "the newest again is no new version"
        );
        let second = names.record("bridge", &b)?;
        assert_eq!(
            (second.current.version, second.previous.as_deref()),
            (2, Some(a.as_str()))
        );
        let third = names.record("bridge", &a)?;
        assert_eq!(third.current.version, 3);
        assert_eq!(names.newest("bridge")?.map(|v| v.hash), Some(a.clone()));
        assert_eq!(names.pinned("bridge", "bbbb")?.version, 2);
        assert_eq!(
            names
                .versions("bridge", 10)?
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>(),
            [3, 2, 1]
        );
        assert_eq!(names.naming_of(&a)?, Some(("bridge".into(), 3)));
        assert_eq!(names.with_prefix("br", 10)?, (vec!["bridge".to_string()], 1));
        Ok(())
    }
}
