//! Importing files: a streaming copy that hashes what it stored, and a move for files that
//! are already on the store's filesystem.

use std::fs::File;
use std::io::{Read, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::mpsc;
use std::time::SystemTime;

use crate::error::IoContext as _;
use crate::remote::FileStamp;
use crate::store::{Backing, DEFAULT_MIME, Staged};
use crate::{Cas, CasError, Hash, ObjectInfo, Stored};

/// Bytes copied per step; also how far hashing may trail the copy.
const CHUNK: usize = 8 << 20;
/// The hashing thread's buffer: the only user-space memory an import holds.
const HASH_BUFFER: usize = 1 << 20;

impl Cas {
    /// Copies a file into the store in bounded memory. The kernel copies (`copy_file_range`,
    /// as `cp` does) while a second thread hashes the *staged copy* as it grows, so hashing
    /// hides under the write and the name always matches the stored bytes.
    ///
    /// With object storage the file goes to the bucket directly (not through the cache): it is
    /// hashed where it is, then uploaded, and the upload is abandoned before it completes if
    /// the file was written to meanwhile (its size, times or inode changed).
    pub fn import_file(&self, source: &Path, mime_type: &str) -> Result<Stored, CasError> {
        if let Some(backing) = &self.backing {
            return self.import_to_bucket(backing, source, mime_type);
        }
        let mut input = File::open(source).at("opening", source)?;
        let mut staged = self.stage()?;
        let tail = File::open(&staged.path).at("opening", &staged.path)?;
        let (progress, copied_up_to) = mpsc::channel::<u64>();
        let staged_path = staged.path.clone();
        let hasher = std::thread::spawn(move || hash_growing_file(&tail, &copied_up_to));
        let copied = copy_into(&mut input, &mut staged, &progress, source);
        drop(progress);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("hashing thread panicked")));
        let size = copied?;
        let (hash, hashed_len) = hashed.at("hashing", &staged_path)?;
        if hashed_len != size {
            return Err(CasError::Io {
                context: "hashing",
                path: staged_path,
                source: std::io::Error::other(format!("hashed {hashed_len} of {size} bytes")),
            });
        }
        self.commit(staged, hash, size, mime_type)
    }

    /// Moves a file into the store (it must be on the same filesystem; the path is gone
    /// afterwards). The file is renamed into staging first, so nobody else can change it
    /// through that path, then hashed with every core, synced and committed.
    pub fn import_move(&self, source: &Path, mime_type: &str) -> Result<Stored, CasError> {
        let path = self.staging_name();
        match std::fs::rename(source, &path) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                return Err(CasError::CrossDevice(source.to_path_buf()));
            }
            Err(e) => {
                return Err(CasError::Io {
                    context: "moving",
                    path: source.to_path_buf(),
                    source: e,
                });
            }
        }
        let staged = self.adopt(path)?;
        let mut hasher = blake3::Hasher::new();
        hasher.update_mmap_rayon(&staged.path).at("hashing", &staged.path)?;
        let size = staged.file.metadata().at("inspecting", &staged.path)?.len();
        self.commit(staged, Hash::from(hasher.finalize()), size, mime_type)
    }
}

impl Cas {
    fn import_to_bucket(&self, backing: &Backing, source: &Path, mime_type: &str) -> Result<Stored, CasError> {
        let stamp = FileStamp::of(source).at("inspecting", source)?;
        let mut hasher = blake3::Hasher::new();
        hasher.update_mmap_rayon(source).at("hashing", source)?;
        let hash = Hash::from(hasher.finalize());
        if let Some(existing) = self.existing(&hash)? {
            return Ok(existing);
        }
        let mime_type = if mime_type.is_empty() { DEFAULT_MIME } else { mime_type };
        let now = SystemTime::now();
        backing.remote.upload(&hash, source, mime_type, now, Some(stamp))?;
        Ok(Stored {
            info: ObjectInfo {
                hash,
                size: hasher.count(),
                mime_type: mime_type.to_string(),
                created_at: now,
            },
            already_existed: false,
        })
    }
}

/// Copies `input` to the staged file, reporting how far the copy has got.
fn copy_into(
    input: &mut File,
    staged: &mut Staged,
    progress: &mpsc::Sender<u64>,
    source: &Path,
) -> Result<u64, CasError> {
    let mut copied = 0u64;
    loop {
        match rustix::fs::copy_file_range(&*input, None, &staged.file, None, CHUNK) {
            Ok(0) => return Ok(copied),
            Ok(n) => {
                copied += n as u64;
                let _ = progress.send(copied);
            }
            // Filesystems (or kernels) without it, before anything was copied: plain copy.
            Err(e)
                if copied == 0
                    && [
                        rustix::io::Errno::XDEV,
                        rustix::io::Errno::NOSYS,
                        rustix::io::Errno::INVAL,
                        rustix::io::Errno::OPNOTSUPP,
                    ]
                    .contains(&e) =>
            {
                return read_write_copy(input, staged, progress, source);
            }
            Err(e) => {
                return Err(CasError::Io {
                    context: "copying",
                    path: source.to_path_buf(),
                    source: e.into(),
                });
            }
        }
    }
}

fn read_write_copy(
    input: &mut File,
    staged: &mut Staged,
    progress: &mpsc::Sender<u64>,
    source: &Path,
) -> Result<u64, CasError> {
    let mut buffer = vec![0u8; HASH_BUFFER];
    let mut copied = 0u64;
    loop {
        let n = input.read(&mut buffer).at("reading", source)?;
        if n == 0 {
            return Ok(copied);
        }
        staged.file.write_all(&buffer[..n]).at("writing", &staged.path)?;
        copied += n as u64;
        let _ = progress.send(copied);
    }
}

/// Hashes a file that another thread is writing, up to each offset it reports.
fn hash_growing_file(file: &File, copied_up_to: &mpsc::Receiver<u64>) -> std::io::Result<(Hash, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; HASH_BUFFER];
    let mut done = 0u64;
    while let Ok(up_to) = copied_up_to.recv() {
        while done < up_to {
            let n = (up_to - done).min(buffer.len() as u64) as usize;
            file.read_exact_at(&mut buffer[..n], done)?;
            hasher.update(&buffer[..n]);
            done += n as u64;
        }
    }
    Ok((Hash::from(hasher.finalize()), done))
}
