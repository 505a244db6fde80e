//! The bounded read-through cache that fronts object storage on each host.
//!
//! It is an ordinary store directory (same layout, same atomic commits) that only ever holds
//! objects the bucket already has: downloads, and uploads once the bucket has confirmed them.
//! So any object in it may be evicted. Reads mark an object as recently used by setting its
//! modification time; when the cache grows past its bound the oldest-used objects go until it
//! is at [`LOW_WATER`] of the bound. Several processes may share one cache directory: each
//! counts what it added and rescans the directory (the truth) before evicting; a process
//! first scans when it first adds, so one that only reads never walks the directory.
//!
//! Writes to the cache do not wait for the disk (the bucket is where objects are durable; the
//! upload is what a store waits for). A power loss could leave a torn file under a good name,
//! so the cache trusts only what was written since the machine booted: the marker records the
//! boot, and a cache opened after a reboot is emptied first.

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::CasError;
use crate::error::IoContext as _;

/// Eviction stops once the cache is at this fraction of its bound (in percent).
const LOW_WATER: u64 = 90;
/// The marker that says a directory is a cache (so eviction may delete from it).
pub(crate) const MARKER: &str = "BLOB-CACHE";

/// Bookkeeping of one process's view of a cache directory.
#[derive(Debug)]
pub(crate) struct Cache {
    /// Most bytes it keeps.
    pub(crate) max: u64,
    /// Bytes in it at the last scan, plus what this process added since.
    estimate: Mutex<u64>,
}

impl Cache {
    /// Claims `root` as a cache (refusing a directory that holds objects but is not one: they
    /// may exist nowhere else). It is not scanned here: many processes open a cache (every
    /// Lua sandbox does) and most only read it, so the first object this process adds scans
    /// it and trims it to `max` (until then this process assumes it full).
    pub(crate) fn open(root: &Path, max: u64) -> Result<Self, CasError> {
        let marker = root.join(MARKER);
        let boot = boot_id();
        if marker.exists() {
            let recorded = fs::read_to_string(&marker).unwrap_or_default();
            if !recorded.lines().any(|line| line == format!("boot {boot}")) {
                // Written before a reboot: possibly torn. Empty it (everything is in the bucket).
                let objects = root.join("objects");
                match fs::remove_dir_all(&objects) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).at("emptying", &objects),
                }
                tracing::info!(cache = %root.display(), "blob cache emptied: written before the last boot");
                write_marker(&marker, &boot)?;
            }
        } else {
            let objects = root.join("objects");
            let has_objects = fs::read_dir(&objects).is_ok_and(|mut entries| entries.next().is_some());
            if has_objects {
                return Err(CasError::Config(format!(
                    "{} holds CAS objects but is not a blob cache; eviction could delete objects that exist only \
                     there. Give the cache its own directory (--cache-dir)",
                    root.display()
                )));
            }
            fs::create_dir_all(root).at("creating", root)?;
            write_marker(&marker, &boot)?;
        }
        Ok(Self {
            max,
            estimate: Mutex::new(max),
        })
    }

    /// Records `bytes` added to the cache, trimming it if that takes it past its bound.
    pub(crate) fn added(&self, root: &Path, bytes: u64) -> Result<(), CasError> {
        let over = {
            let mut estimate = self.estimate.lock().unwrap_or_else(|e| e.into_inner());
            *estimate = estimate.saturating_add(bytes);
            *estimate > self.max
        };
        if over { self.trim(root) } else { Ok(()) }
    }

    /// Scans the cache and evicts the least recently used objects while it is over its bound.
    fn trim(&self, root: &Path) -> Result<(), CasError> {
        let mut estimate = self.estimate.lock().unwrap_or_else(|e| e.into_inner());
        let mut objects = scan(&root.join("objects"))?;
        let mut total: u64 = objects.iter().map(|o| o.size).sum();
        if total > self.max {
            let target = self.max / 100 * LOW_WATER;
            objects.sort_by_key(|o| o.used);
            for object in objects {
                if total <= target {
                    break;
                }
                // Someone reading it keeps its open file; the next reader downloads it again.
                if fs::remove_file(&object.path).is_ok() {
                    let _ = fs::remove_file(object.path.with_extension("meta"));
                    total = total.saturating_sub(object.size);
                }
            }
            tracing::debug!(cache = %root.display(), bytes = total, "blob cache trimmed");
        }
        *estimate = total;
        Ok(())
    }
}

/// This boot of the machine (Linux's random boot id; a constant elsewhere, where the cache is
/// then trusted across reboots).
fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Writes the marker for this boot (atomically: another process may be reading it).
fn write_marker(marker: &Path, boot: &str) -> Result<(), CasError> {
    let staged = marker.with_extension(format!("{}.part", std::process::id()));
    let text = format!("a read-through cache of object storage; anything here may be deleted\nboot {boot}\n");
    fs::write(&staged, text).at("creating", &staged)?;
    fs::rename(&staged, marker).at("creating", marker)
}

/// Marks an object as just used (its modification time), for eviction order.
pub(crate) fn touch(file: &fs::File) {
    let _ = file.set_modified(SystemTime::now());
}

struct Cached {
    path: std::path::PathBuf,
    size: u64,
    used: SystemTime,
}

fn scan(objects: &Path) -> Result<Vec<Cached>, CasError> {
    let mut found = Vec::new();
    let fanouts = match fs::read_dir(objects) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e).at("listing", objects),
    };
    for fanout in fanouts.flatten() {
        let Ok(entries) = fs::read_dir(fanout.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some() {
                continue; // a `.meta` sidecar goes with its object
            }
            if let Ok(meta) = entry.metadata() {
                found.push(Cached {
                    path,
                    size: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
    }
    Ok(found)
}
