//! [`Cas`]: the store, its staging area, and the atomic, durable commit of an object.

use std::fs::{self, File, OpenOptions};
use std::io::Read as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::error::IoContext as _;
use crate::remote::{BlobConfig, DEFAULT_CACHE_MAX, Remote};
use crate::{CasError, Hash};

/// MIME type recorded when the caller gives none.
pub const DEFAULT_MIME: &str = "application/octet-stream";
/// Staging files untouched for this long belong to a writer that died; they are removed.
const STALE_STAGING: Duration = Duration::from_secs(3600);
/// Largest metadata sidecar read: a bigger one is treated like a lost one (rebuilt).
const MAX_META_BYTES: u64 = 4096;

/// What the store knows about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its name.
    pub hash: Hash,
    /// Its size in bytes.
    pub size: u64,
    /// The MIME type given when it was first stored.
    pub mime_type: String,
    /// When it was first stored.
    pub created_at: SystemTime,
}

/// The result of a store or import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The object.
    pub info: ObjectInfo,
    /// True when the content was already in the store (nothing was written).
    pub already_existed: bool,
}

/// The sidecar file's content.
#[derive(Serialize, Deserialize)]
struct Meta {
    size: u64,
    mime_type: String,
    created_at_unix_ms: u64,
}

/// A content-addressed store rooted at a directory, or (cluster mode) a bucket fronted by a
/// bounded cache in that directory. Cheap to clone; share it freely.
#[derive(Debug, Clone)]
pub struct Cas {
    root: PathBuf,
    pub(crate) backing: Option<Arc<Backing>>,
}

/// Object storage behind the directory, which is then only its cache.
#[derive(Debug)]
pub(crate) struct Backing {
    pub(crate) remote: Remote,
    pub(crate) cache: Cache,
    /// What it was opened with, for [`Cas::blob_config`].
    config: BlobConfig,
}

/// A staging file that is removed unless it was committed.
pub(crate) struct Staged {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    committed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Makes a rename or a new entry in `dir` durable.
fn sync_directory(dir: &Path) -> Result<(), CasError> {
    File::open(dir).and_then(|d| d.sync_all()).at("syncing directory", dir)
}

impl Cas {
    /// Opens (creating if needed) a store at `root`, and removes staging files left by
    /// writers that died more than an hour ago.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CasError> {
        let cas = Self {
            root: root.into(),
            backing: None,
        };
        cas.prepare()?;
        Ok(cas)
    }

    /// Opens the store a [`BlobConfig`] names: the local directory `cas_root` (no URL), the
    /// directory of a `file://` URL, or an `s3://` bucket read through a cache in
    /// `config.cache_dir` (which the caller must set, and which is refused if it already holds
    /// objects without being a cache).
    pub fn open_with(cas_root: &Path, config: &BlobConfig) -> Result<Self, CasError> {
        match config.url.as_deref() {
            None | Some("") => Self::open(cas_root),
            Some(url) if url.starts_with("file://") => {
                let path = url.trim_start_matches("file://");
                if !path.starts_with('/') {
                    return Err(CasError::Config(format!(
                        "blob URL {url:?}: a file URL needs an absolute path, e.g. file:///var/lib/hoot/cas"
                    )));
                }
                Self::open(path)
            }
            Some(_) => {
                let remote = Remote::open(config)?;
                let root = config
                    .cache_dir
                    .clone()
                    .ok_or_else(|| CasError::Config("object storage needs a cache directory (--cache-dir)".into()))?;
                let max = if config.cache_max == 0 {
                    DEFAULT_CACHE_MAX
                } else {
                    config.cache_max
                };
                let cache = Cache::open(&root, max)?;
                let cas = Self {
                    root,
                    backing: Some(Arc::new(Backing {
                        remote,
                        cache,
                        config: config.clone(),
                    })),
                };
                cas.prepare()?;
                Ok(cas)
            }
        }
    }

    fn prepare(&self) -> Result<(), CasError> {
        for dir in [self.objects_dir(), self.staging_dir()] {
            fs::create_dir_all(&dir).at("creating", &dir)?;
        }
        self.remove_stale_staging();
        Ok(())
    }

    /// What opens this same store in another process (with [`Cas::open_with`] and this
    /// store's root): the object-storage configuration, or none for a local directory.
    pub fn blob_config(&self) -> BlobConfig {
        self.backing
            .as_ref()
            .map(|backing| backing.config.clone())
            .unwrap_or_default()
    }

    /// Where the objects are, for logs: the directory, or the bucket's URL and its cache.
    pub fn describe(&self) -> String {
        match &self.backing {
            None => self.root.display().to_string(),
            Some(backing) => format!("{} (cache {})", backing.remote.url(), self.root.display()),
        }
    }

    /// The root directory (in cluster mode, the cache's).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    pub(crate) fn staging_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where an object's content lives (it may not exist).
    pub fn object_path(&self, hash: &Hash) -> PathBuf {
        let (dir, file) = hash.split();
        self.objects_dir().join(dir).join(file)
    }

    fn meta_path(&self, hash: &Hash) -> PathBuf {
        self.object_path(hash).with_extension("meta")
    }

    pub(crate) fn fanout_dir(&self, two_hex: &str) -> PathBuf {
        self.objects_dir().join(two_hex)
    }

    /// Whether what this directory holds must survive a power loss: a local CAS must; a cache
    /// of object storage is emptied after a reboot instead (see `cache`), so its writes need
    /// not wait for the disk.
    fn durable(&self) -> bool {
        self.backing.is_none()
    }

    /// Makes a rename or a new entry in `dir` durable, where this store is.
    fn sync_dir(&self, dir: &Path) -> Result<(), CasError> {
        if self.durable() { sync_directory(dir) } else { Ok(()) }
    }

    /// Whether this host has the object (in cluster mode: in its cache). See [`Cas::exists`].
    pub fn contains(&self, hash: &Hash) -> bool {
        self.object_path(hash).is_file()
    }

    /// Whether the store has an object (in cluster mode, asking the bucket unless it is
    /// cached here).
    pub fn exists(&self, hash: &Hash) -> Result<bool, CasError> {
        if self.contains(hash) {
            return Ok(true);
        }
        match &self.backing {
            None => Ok(false),
            Some(backing) => Ok(backing.remote.head(hash)?.is_some()),
        }
    }

    /// A fresh name in the staging area, unique across processes and threads.
    pub(crate) fn staging_name(&self) -> PathBuf {
        let random: u64 = rand::random();
        self.staging_dir()
            .join(format!("{}-{random:016x}.part", std::process::id()))
    }

    /// A new, empty staging file.
    pub(crate) fn stage(&self) -> Result<Staged, CasError> {
        let path = self.staging_name();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .at("creating", &path)?;
        Ok(Staged {
            path,
            file,
            committed: false,
        })
    }

    /// Adopts an existing file in the staging area (after a move import).
    pub(crate) fn adopt(&self, path: PathBuf) -> Result<Staged, CasError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .at("opening", &path)?;
        Ok(Staged {
            path,
            file,
            committed: false,
        })
    }

    /// Stores bytes held in memory.
    pub fn store(&self, bytes: &[u8], mime_type: &str) -> Result<Stored, CasError> {
        let hash = Hash::of(bytes);
        if let Some(existing) = self.existing(&hash)? {
            return Ok(existing);
        }
        let mut staged = self.stage()?;
        staged.file.write_all(bytes).at("writing", &staged.path)?;
        self.commit_absent(staged, hash, bytes.len() as u64, mime_type)
    }

    pub(crate) fn existing(&self, hash: &Hash) -> Result<Option<Stored>, CasError> {
        let info = if self.contains(hash) {
            self.inspect(hash)?
        } else if let Some(backing) = &self.backing {
            match backing.remote.head(hash)? {
                Some(info) => info,
                None => return Ok(None),
            }
        } else {
            return Ok(None);
        };
        Ok(Some(Stored {
            info,
            already_existed: true,
        }))
    }

    /// Makes a fully written, hashed staging file the object `hash`: fsync it, rename it
    /// into place, fsync the directory, then write the metadata the same way. In cluster mode
    /// the bucket gets it first, so the cache only ever holds objects the bucket has.
    pub(crate) fn commit(&self, staged: Staged, hash: Hash, size: u64, mime_type: &str) -> Result<Stored, CasError> {
        if let Some(existing) = self.existing(&hash)? {
            return Ok(existing); // dropping `staged` removes it
        }
        self.commit_absent(staged, hash, size, mime_type)
    }

    /// [`Cas::commit`] for an object the caller just found absent: only this directory is
    /// looked at again (a stat), not the bucket (a round trip); a store of the same content
    /// racing this one uploads the same bytes.
    fn commit_absent(&self, staged: Staged, hash: Hash, size: u64, mime_type: &str) -> Result<Stored, CasError> {
        if self.contains(&hash) {
            return Ok(Stored {
                info: self.inspect(&hash)?,
                already_existed: true,
            });
        }
        let mime_type = if mime_type.is_empty() { DEFAULT_MIME } else { mime_type };
        let now = SystemTime::now();
        match &self.backing {
            // The bucket is where it is durable; the cache copy need not be (see `cache`).
            Some(backing) => backing.remote.upload(&hash, &staged.path, mime_type, now, None)?,
            None => staged.file.sync_all().at("syncing", &staged.path)?,
        }
        let info = ObjectInfo {
            hash,
            size,
            mime_type: mime_type.to_string(),
            created_at: now,
        };
        self.commit_local(staged, &info)?;
        Ok(Stored {
            info,
            already_existed: false,
        })
    }

    /// Puts a staged object, already synced to disk if this store is durable, into this
    /// directory (in cluster mode, the cache) under its name.
    pub(crate) fn commit_local(&self, mut staged: Staged, info: &ObjectInfo) -> Result<(), CasError> {
        let hash = info.hash;
        let target = self.object_path(&hash);
        let dir = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.objects_dir());
        if !dir.is_dir() {
            fs::create_dir_all(&dir).at("creating", &dir)?;
            self.sync_dir(&self.objects_dir())?;
        }
        fs::rename(&staged.path, &target).at("renaming into the store", &target)?;
        staged.committed = true;
        self.sync_dir(&dir)?;
        self.write_meta(
            &hash,
            &Meta {
                size: info.size,
                mime_type: info.mime_type.clone(),
                created_at_unix_ms: unix_ms(info.created_at),
            },
        )?;
        if let Some(backing) = &self.backing {
            backing.cache.added(&self.root, info.size)?;
        }
        Ok(())
    }

    fn write_meta(&self, hash: &Hash, meta: &Meta) -> Result<(), CasError> {
        let target = self.meta_path(hash);
        let mut staged = self.stage()?;
        let json = serde_json::to_vec(meta).map_err(|e| CasError::Io {
            context: "encoding metadata for",
            path: target.clone(),
            source: e.into(),
        })?;
        staged.file.write_all(&json).at("writing", &staged.path)?;
        if self.durable() {
            staged.file.sync_all().at("syncing", &staged.path)?;
        }
        fs::rename(&staged.path, &target).at("renaming into the store", &target)?;
        staged.committed = true;
        if let Some(dir) = target.parent() {
            self.sync_dir(dir)?;
        }
        Ok(())
    }

    /// An object's metadata. An object whose metadata was lost in a crash (content is
    /// committed first), or whose sidecar is oversized, gets it rebuilt from the file. In
    /// cluster mode an object not cached here is asked of the bucket (and not downloaded).
    pub fn inspect(&self, hash: &Hash) -> Result<ObjectInfo, CasError> {
        let object = self.object_path(hash);
        let stat = match fs::metadata(&object) {
            Ok(stat) => stat,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match &self.backing {
                    Some(backing) => backing
                        .remote
                        .head(hash)?
                        .ok_or_else(|| CasError::NotFound(hash.to_string())),
                    None => Err(CasError::NotFound(hash.to_string())),
                };
            }
            Err(e) => {
                return Err(CasError::Io {
                    context: "inspecting",
                    path: object,
                    source: e,
                });
            }
        };
        let meta_path = self.meta_path(hash);
        let meta = read_bounded(&meta_path).and_then(|bytes| serde_json::from_slice::<Meta>(&bytes).ok());
        let meta = match meta {
            Some(meta) => meta,
            None => {
                let rebuilt = Meta {
                    size: stat.len(),
                    mime_type: DEFAULT_MIME.to_string(),
                    created_at_unix_ms: stat.modified().map(unix_ms).unwrap_or(0),
                };
                self.write_meta(hash, &rebuilt)?;
                rebuilt
            }
        };
        Ok(ObjectInfo {
            hash: *hash,
            size: stat.len(),
            mime_type: meta.mime_type,
            created_at: UNIX_EPOCH + Duration::from_millis(meta.created_at_unix_ms),
        })
    }

    fn remove_stale_staging(&self) {
        let Ok(entries) = fs::read_dir(self.staging_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_STAGING);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// A sidecar's bytes, if it exists and is no larger than [`MAX_META_BYTES`] (another process
/// may have left anything there; never read more than a sidecar can need).
fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let file = File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_META_BYTES + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= MAX_META_BYTES).then_some(bytes)
}
