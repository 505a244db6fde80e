//! Blobs on S3-compatible object storage (cluster mode), through `object_store`.
//!
//! Objects are named `<prefix>objects/<64 hex>` in the bucket, with their MIME type as the
//! object's Content-Type and their creation time as user metadata, so any S3 tool shows what
//! they are. Uploads go through `object_store`'s buffered writer: one PUT for small objects,
//! a multipart upload in [`PART_SIZE`] parts for large ones.
//!
//! The store is synchronous (services call it from blocking threads and Lua), `object_store`
//! is async: [`Remote`] owns a small runtime of its own and each call waits on its answer with
//! a plain blocking wait, which works from any thread, including a runtime's.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, GetOptions, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::hash::HEX_LEN;
use crate::store::DEFAULT_MIME;
use crate::{CasError, Hash, ObjectInfo};

/// Size of one part of a multipart upload (and the largest object sent in a single PUT).
pub const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once: an upload holds at most this many parts in memory.
const UPLOAD_CONCURRENCY: usize = 4;
/// Bytes read from a staged file per step of an upload.
const READ_CHUNK: usize = 1 << 20;
/// Chunks of a download buffered between the network and the disk.
const DOWNLOAD_BUFFER: usize = 4;
/// User metadata key for the creation time.
const CREATED_AT: &str = "created-at-unix-ms";

/// Where blobs live, as every service and tool is configured (`--blob-url`, `--cache-dir`,
/// `--cache-max`, and the standard `AWS_*` variables). Serializable, so a process that starts
/// sandboxes with a cleared environment can hand it to them whole.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct BlobConfig {
    /// `file:///path` (a local CAS at that path), `s3://bucket[/prefix]`, or None for the
    /// local CAS at the service's CAS root.
    pub url: Option<String>,
    /// The local read-through cache for object storage (None: the caller's default).
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the cache keeps (0: the default, [`DEFAULT_CACHE_MAX`]).
    pub cache_max: u64,
    /// The `AWS_*` variables where this configuration was made: endpoint, credentials, region,
    /// `AWS_ALLOW_HTTP`.
    pub aws_env: Vec<(String, String)>,
}

/// Default bound of a host's blob cache: 10 GiB.
pub const DEFAULT_CACHE_MAX: u64 = 10 << 30;

impl BlobConfig {
    /// A configuration with the `AWS_*` variables of this process.
    pub fn from_env(url: Option<String>, cache_dir: Option<PathBuf>, cache_max: u64) -> Self {
        let aws_env = std::env::vars().filter(|(key, _)| key.starts_with("AWS_")).collect();
        Self {
            url,
            cache_dir,
            cache_max,
            aws_env,
        }
    }

    /// Whether blobs are on object storage (else in a local directory).
    pub fn is_remote(&self) -> bool {
        self.url.as_deref().is_some_and(|url| !url.starts_with("file://"))
    }
}

impl fmt::Debug for BlobConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The variables carry the secret key: name them, never print their values.
        let names: Vec<&str> = self.aws_env.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("BlobConfig")
            .field("url", &self.url)
            .field("cache_dir", &self.cache_dir)
            .field("cache_max", &self.cache_max)
            .field("aws_env", &names)
            .finish()
    }
}

/// A bucket (and prefix) that holds the objects.
pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    /// `objects/` under the URL's prefix.
    prefix: String,
    /// The URL, for messages (it carries no secret).
    url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which a runtime's own thread may not do;
        // this store may be dropped anywhere.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The bucket and the key prefix of an `s3://bucket[/prefix]` URL.
fn parse_s3_url(url: &str) -> Result<(String, String), CasError> {
    let invalid = |why: &str| {
        CasError::Config(format!(
            "blob URL {url:?}: {why}; expected s3://bucket[/prefix] or file:///path"
        ))
    };
    let rest = url.strip_prefix("s3://").ok_or_else(|| invalid("unknown scheme"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(invalid("no bucket"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(invalid("the prefix may not contain . or .. segments"));
    }
    let prefix = if prefix.is_empty() {
        "objects/".to_string()
    } else {
        format!("{prefix}/objects/")
    };
    Ok((bucket.to_string(), prefix))
}

impl Remote {
    /// Connects (lazily: nothing is sent until the first request) to `config.url`.
    pub(crate) fn open(config: &BlobConfig) -> Result<Self, CasError> {
        let url = config.url.clone().unwrap_or_default();
        let (bucket, prefix) = parse_s3_url(&url)?;
        // An unreachable server should fail a request within seconds, not after the minutes of
        // retries meant for a cloud's transient errors: callers get UNAVAILABLE and the cache
        // keeps serving what it has.
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(5),
            ..RetryConfig::default()
        };
        let client = object_store::ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(300));
        // Client options first: setting them replaces any the variables set (AWS_ALLOW_HTTP).
        let mut builder = AmazonS3Builder::new().with_client_options(client).with_retry(retry);
        for (key, value) in &config.aws_env {
            if let Ok(config_key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(config_key, value);
            }
        }
        let store = builder
            .with_bucket_name(&bucket)
            .build()
            .map_err(|e| CasError::Config(format!("blob URL {url}: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cas-remote")
            .enable_all()
            .build()
            .map_err(|e| CasError::Config(format!("starting the object-storage client: {e}")))?;
        Ok(Self {
            store: Arc::new(store),
            prefix,
            url,
            runtime: Some(runtime),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, hash: &Hash) -> ObjectPath {
        ObjectPath::from(format!("{}{hash}", self.prefix))
    }

    /// Runs `future` on this store's runtime and waits for it on the calling thread.
    fn block<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> Result<T, CasError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| CasError::Config("the object-storage client has shut down".into()))?;
        let task = runtime.spawn(future);
        wait(task).map_err(|e| CasError::Config(format!("an object-storage request was lost: {e}")))
    }

    fn failed(&self, context: &'static str, hash: &str, source: object_store::Error) -> CasError {
        CasError::Remote {
            context,
            object: hash.to_string(),
            url: self.url.clone(),
            source: Box::new(source),
        }
    }

    /// What the bucket knows about an object, or None if it has no such object.
    pub(crate) fn head(&self, hash: &Hash) -> Result<Option<ObjectInfo>, CasError> {
        let store = self.store.clone();
        let key = self.key(hash);
        let answer = self.block(async move { store.get_opts(&key, GetOptions::new().with_head(true)).await })?;
        match answer {
            Ok(result) => Ok(Some(info_of(
                *hash,
                result.meta.size,
                &result.attributes,
                result.meta.last_modified,
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("inspecting", &hash.to_string(), e)),
        }
    }

    /// Uploads a file as the object `hash` (one PUT, or multipart when large). With `unchanged`
    /// (the stamp of a file others could still write, taken before it was hashed), the upload
    /// is abandoned before it completes if the file's stamp is no longer that.
    pub(crate) fn upload(
        &self,
        hash: &Hash,
        file: &Path,
        mime_type: &str,
        created_at: SystemTime,
        unchanged: Option<FileStamp>,
    ) -> Result<(), CasError> {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, mime_type.to_string().into());
        attributes.insert(
            Attribute::Metadata(CREATED_AT.into()),
            unix_ms(created_at).to_string().into(),
        );
        let writer = BufWriter::with_capacity(self.store.clone(), self.key(hash), PART_SIZE)
            .with_max_concurrency(UPLOAD_CONCURRENCY)
            .with_attributes(attributes);
        let path = file.to_path_buf();
        let sent = self.block(async move {
            let mut writer = writer;
            let copied = async {
                // Large reads, handed over without copying: small ones would each be a trip to
                // tokio's blocking pool.
                let mut source = tokio::fs::File::open(&path).await.map_err(store_error)?;
                loop {
                    let mut chunk = bytes::BytesMut::zeroed(READ_CHUNK);
                    let n = source.read(&mut chunk).await.map_err(store_error)?;
                    if n == 0 {
                        break;
                    }
                    chunk.truncate(n);
                    writer.put(chunk.freeze()).await?;
                }
                let changed = unchanged.is_some_and(|stamp| FileStamp::of(&path).ok() != Some(stamp));
                if changed {
                    return Ok(false);
                }
                writer.shutdown().await.map_err(store_error).map(|()| true)
            }
            .await;
            if !matches!(copied, Ok(true)) {
                let _ = writer.abort().await;
            }
            copied
        })?;
        match sent {
            Ok(true) => Ok(()),
            Ok(false) => Err(CasError::Io {
                context: "importing (it changed while it was read)",
                path: file.to_path_buf(),
                source: std::io::Error::other("the file's content changed during the import"),
            }),
            Err(e) => Err(self.failed("uploading", &hash.to_string(), e)),
        }
    }

    /// Starts a download of `hash` (a byte range of it, if given): its metadata now, its
    /// content as chunks through a small bounded channel, so memory stays bounded.
    pub(crate) fn download(&self, hash: &Hash, range: Option<std::ops::Range<u64>>) -> Result<Download, CasError> {
        let store = self.store.clone();
        let key = self.key(hash);
        let (chunks, receiver) = tokio::sync::mpsc::channel::<object_store::Result<Bytes>>(DOWNLOAD_BUFFER);
        let (started, start) = tokio::sync::oneshot::channel();
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| CasError::Config("the object-storage client has shut down".into()))?;
        runtime.spawn(async move {
            let options = GetOptions::new().with_range(range);
            let result = match store.get_opts(&key, options).await {
                Ok(result) => result,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            let meta = (result.meta.size, result.attributes.clone(), result.meta.last_modified);
            if started.send(Ok(meta)).is_err() {
                return;
            }
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                if chunks.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        let (size, attributes, modified) = wait(start)
            .map_err(|_| CasError::Config("an object-storage request was lost".into()))?
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => CasError::NotFound(hash.to_string()),
                e => self.failed("downloading", &hash.to_string(), e),
            })?;
        Ok(Download {
            info: info_of(*hash, size, &attributes, modified),
            receiver,
            url: self.url.clone(),
        })
    }

    /// Up to two objects whose names start with `prefix` (enough to say "unique" or "ambiguous").
    pub(crate) fn find_prefix(&self, prefix: &str) -> Result<Vec<Hash>, CasError> {
        let store = self.store.clone();
        let list_prefix = ObjectPath::from(self.prefix.trim_end_matches('/'));
        let wanted = format!("{}{prefix}", self.prefix);
        // S3 lists in key order from the offset (ListObjectsV2 start-after), so the matches
        // are the first keys after it: stop at the first key that no longer matches.
        let offset = ObjectPath::from(wanted.clone());
        let found = self.block(async move {
            let mut listing = store.list_with_offset(Some(&list_prefix), &offset);
            let mut found = Vec::new();
            while let Some(entry) = listing.next().await {
                let entry = entry?;
                let key = entry.location.as_ref();
                if !key.starts_with(&wanted) {
                    break;
                }
                found.push(key.to_string());
                if found.len() == 2 {
                    break;
                }
            }
            Ok::<_, object_store::Error>(found)
        })?;
        let keys = found.map_err(|e| self.failed("listing", prefix, e))?;
        Ok(keys
            .iter()
            .filter_map(|key| key.get(key.len().saturating_sub(HEX_LEN)..))
            .filter_map(|hex| Hash::parse(hex).ok())
            .collect())
    }
}

/// Waits on the calling thread for `future`, which the store's runtime completes.
///
/// The wait is exempt from tokio's cooperative budget. A caller inside a tokio task (a Lua
/// script's `cas.*` calls run inside its run's `block_on`) spends that task's budget on every
/// join handle and channel it waits on here; once it is spent, tokio defers the wake-up until
/// the task yields, which a thread blocked here never does. Without this the 129th request or
/// chunk of one run waited forever.
fn wait<F: Future>(future: F) -> F::Output {
    futures::executor::block_on(tokio::task::coop::unconstrained(future))
}

/// An object arriving from the bucket.
pub(crate) struct Download {
    /// Its metadata.
    pub(crate) info: ObjectInfo,
    receiver: tokio::sync::mpsc::Receiver<object_store::Result<Bytes>>,
    url: String,
}

impl Download {
    /// The next chunk, or None at the end.
    pub(crate) fn next_chunk(&mut self) -> Result<Option<Bytes>, CasError> {
        match wait(self.receiver.recv()) {
            None => Ok(None),
            Some(Ok(chunk)) => Ok(Some(chunk)),
            Some(Err(e)) => Err(CasError::Remote {
                context: "downloading",
                object: self.info.hash.to_string(),
                url: self.url.clone(),
                source: Box::new(e),
            }),
        }
    }
}

/// What changes when a file is written: its size, modification and change times, and inode.
/// (A write changes the change time, in nanoseconds, even if it restores the content.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    inode: u64,
}

impl FileStamp {
    pub(crate) fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
        })
    }
}

/// An I/O error of an upload as the object-store error it wraps (the buffered writer reports
/// those as I/O errors), or as a generic one.
fn store_error(error: std::io::Error) -> object_store::Error {
    if error.get_ref().is_some_and(|inner| inner.is::<object_store::Error>()) {
        if let Some(Ok(inner)) = error.into_inner().map(|inner| inner.downcast::<object_store::Error>()) {
            return *inner;
        }
        return object_store::Error::Generic {
            store: "S3",
            source: "the upload failed".into(),
        };
    }
    object_store::Error::Generic {
        store: "S3",
        source: Box::new(error),
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn info_of(hash: Hash, size: u64, attributes: &Attributes, modified: chrono::DateTime<chrono::Utc>) -> ObjectInfo {
    let mime_type = attributes
        .get(&Attribute::ContentType)
        .map(|value| value.as_ref().to_string())
        .filter(|mime| !mime.is_empty())
        .unwrap_or_else(|| DEFAULT_MIME.to_string());
    let created_ms = attributes
        .get(&Attribute::Metadata(CREATED_AT.into()))
        .and_then(|value| value.as_ref().parse::<u64>().ok())
        .unwrap_or_else(|| modified.timestamp_millis().max(0) as u64);
    ObjectInfo {
        hash,
        size,
        mime_type,
        created_at: UNIX_EPOCH + Duration::from_millis(created_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(
            parse_s3_url("s3://blobs").ok(),
            Some(("blobs".into(), "objects/".into()))
        );
        assert_eq!(
            parse_s3_url("s3://blobs/team/a/").ok(),
            Some(("blobs".into(), "team/a/objects/".into()))
        );
        for bad in ["s3://", "http://x/y", "s3://b/../x", "blobs"] {
            assert!(matches!(parse_s3_url(bad), Err(CasError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let config = BlobConfig {
            url: Some("s3://b".into()),
            aws_env: vec![("AWS_SECRET_ACCESS_KEY".into(), "hunter2".into())],
            ..BlobConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            shown.contains("AWS_SECRET_ACCESS_KEY") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
