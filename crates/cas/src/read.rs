//! Reading objects: streaming (optionally verifying) readers, bounded reads, and resolving
//! the short prefixes people type.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write as _};

use crate::error::IoContext as _;
use crate::hash::{HEX_LEN, check_prefix};
use crate::store::Backing;
use crate::{Cas, CasError, Hash};

/// In cluster mode, ranges of objects up to this fraction of the cache's bound are read by
/// caching the whole object; larger objects are read from the bucket range by range.
const CACHE_WHOLE_FRACTION: u64 = 4;

/// Streams an object's content. With verification, reaching the end checks that the
/// content still hashes to the object's name and fails with `InvalidData` (wrapping
/// [`CasError::Corrupt`]) if not.
pub struct ObjectReader {
    source: Source,
    size: u64,
    verify: Option<Verifier>,
}

/// Where a reader's bytes come from.
enum Source {
    /// This host's copy (the store, or the cache).
    File(File),
    /// The bucket, for an object larger than the whole cache: read as it arrives, never
    /// stored here (and always verified).
    Bucket {
        download: crate::remote::Download,
        chunk: bytes::Bytes,
        received: u64,
    },
}

impl ObjectReader {
    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.source {
            Source::File(file) => file.read(buf)?,
            Source::Bucket {
                download,
                chunk,
                received,
            } => {
                // An empty chunk is not the end: only the stream's end is.
                while chunk.is_empty() && !buf.is_empty() {
                    match download.next_chunk().map_err(io::Error::other)? {
                        Some(next) => {
                            *received += next.len() as u64;
                            *chunk = next;
                        }
                        None if *received != self.size => {
                            let short = CasError::Corrupt {
                                hash: download.info.hash.to_string(),
                                actual: format!("{received} bytes where the bucket announced {}", self.size),
                            };
                            return Err(io::Error::new(io::ErrorKind::InvalidData, short));
                        }
                        None => break,
                    }
                }
                let n = buf.len().min(chunk.len());
                buf[..n].copy_from_slice(&chunk.split_to(n));
                n
            }
        };
        if let Some(verifier) = &mut self.verify {
            verifier.update(&buf[..n]);
            // End of file (an empty `buf` also reads 0 bytes, but says nothing about the end).
            if n == 0 && !buf.is_empty() {
                verifier.finish()?;
            }
        }
        Ok(n)
    }
}

/// Checks an object's bytes, read front to back from anywhere, against its name: feed it
/// every byte in order, then [`Verifier::finish`] at the end.
pub struct Verifier {
    hasher: blake3::Hasher,
    expected: Hash,
}

impl Verifier {
    /// A check that the bytes fed hash to `expected`.
    pub fn new(expected: Hash) -> Self {
        Self {
            hasher: blake3::Hasher::new(),
            expected,
        }
    }

    /// The next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// At the end: an `InvalidData` error carrying [`CasError::Corrupt`] if the bytes fed
    /// do not hash to the object's name (what a verifying [`ObjectReader`] fails with).
    pub fn finish(&self) -> io::Result<()> {
        let actual = Hash::from(self.hasher.finalize());
        if actual == self.expected {
            return Ok(());
        }
        let corrupt = CasError::Corrupt {
            hash: self.expected.to_string(),
            actual: actual.to_string(),
        };
        Err(io::Error::new(io::ErrorKind::InvalidData, corrupt))
    }
}

impl Cas {
    /// Opens an object for streaming. In cluster mode an object not cached here is downloaded
    /// into the cache first, verified against its name as it arrives.
    pub fn open_reader(&self, hash: &Hash, verify: bool) -> Result<ObjectReader, CasError> {
        let path = self.object_path(hash);
        let file = match File::open(&path) {
            Ok(file) => {
                if self.backing.is_some() {
                    crate::cache::touch(&file);
                }
                file
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(backing) = &self.backing else {
                    return Err(CasError::NotFound(hash.to_string()));
                };
                let download = backing.remote.download(hash, None)?;
                if download.info.size > backing.cache.max {
                    // Caching it would only evict everything else, and then itself.
                    return Ok(ObjectReader {
                        size: download.info.size,
                        source: Source::Bucket {
                            download,
                            chunk: bytes::Bytes::new(),
                            received: 0,
                        },
                        verify: Some(Verifier::new(*hash)),
                    });
                }
                let (file, size) = self.fetch(download, hash)?;
                // Verified on arrival; a reader asking for verification still gets it.
                let verify = verify.then(|| Verifier::new(*hash));
                return Ok(ObjectReader {
                    source: Source::File(file),
                    size,
                    verify,
                });
            }
            Err(e) => {
                return Err(CasError::Io {
                    context: "opening",
                    path,
                    source: e,
                });
            }
        };
        let size = file.metadata().at("inspecting", &path)?.len();
        let verify = verify.then(|| Verifier::new(*hash));
        Ok(ObjectReader {
            source: Source::File(file),
            size,
            verify,
        })
    }

    /// Reads a whole object into memory, refusing objects larger than `limit` bytes.
    pub fn read(&self, hash: &Hash, limit: u64, verify: bool) -> Result<Vec<u8>, CasError> {
        // In cluster mode, refuse by the bucket's size before downloading anything.
        if self.backing.is_some() && !self.contains(hash) {
            let size = self.inspect(hash)?.size;
            if size > limit {
                return Err(CasError::TooLarge {
                    hash: hash.to_string(),
                    size,
                    limit,
                });
            }
        }
        let mut reader = self.open_reader(hash, verify)?;
        if reader.size() > limit {
            return Err(CasError::TooLarge {
                hash: hash.to_string(),
                size: reader.size(),
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(reader.size() as usize);
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| unwrap_corrupt(e, hash, self))?;
        Ok(bytes)
    }

    /// Reads `length` bytes from `offset` (clamped to the object's end), refusing more than
    /// `limit`. `length == 0` means to the end.
    pub fn read_range(&self, hash: &Hash, offset: u64, length: u64, limit: u64) -> Result<Vec<u8>, CasError> {
        let path = self.object_path(hash);
        let wanted = |size: u64| -> Result<u64, CasError> {
            let available = size.saturating_sub(offset);
            let wanted = if length == 0 { available } else { length.min(available) };
            if wanted > limit {
                return Err(CasError::TooLarge {
                    hash: hash.to_string(),
                    size: wanted,
                    limit,
                });
            }
            Ok(wanted)
        };
        if let Some(backing) = self.backing.as_ref().filter(|_| !self.contains(hash)) {
            let size = self.inspect(hash)?.size;
            if size > backing.cache.max / CACHE_WHOLE_FRACTION {
                let wanted = wanted(size)?;
                return read_remote_range(backing, hash, offset, wanted);
            }
        }
        let reader = self.open_reader(hash, false)?;
        let wanted = wanted(reader.size())?;
        let Source::File(mut file) = reader.source else {
            // Not cached after all (it was larger than the whole cache): ask for the range.
            let backing = self
                .backing
                .as_ref()
                .ok_or_else(|| CasError::NotFound(hash.to_string()))?;
            return read_remote_range(backing, hash, offset, wanted);
        };
        file.seek(SeekFrom::Start(offset)).at("seeking", &path)?;
        let mut bytes = vec![0u8; wanted as usize];
        file.read_exact(&mut bytes).at("reading", &path)?;
        Ok(bytes)
    }

    /// Re-hashes an object and fails with [`CasError::Corrupt`] if it no longer matches.
    pub fn verify(&self, hash: &Hash) -> Result<(), CasError> {
        let mut reader = self.open_reader(hash, true)?;
        io::copy(&mut reader, &mut io::sink())
            .map(|_| ())
            .map_err(|e| unwrap_corrupt(e, hash, self))
    }

    /// Resolves a full hash or a unique prefix of at least 8 characters (for people; writes
    /// always use full hashes).
    ///
    /// In cluster mode the bucket answers; should it be unreachable, a prefix that names
    /// exactly one object cached here resolves to it.
    pub fn resolve(&self, hash_or_prefix: &str) -> Result<Hash, CasError> {
        if hash_or_prefix.len() == HEX_LEN {
            let hash = Hash::parse(hash_or_prefix)?;
            return if self.exists(&hash)? {
                Ok(hash)
            } else {
                Err(CasError::NotFound(hash.to_string()))
            };
        }
        check_prefix(hash_or_prefix)?;
        let Some(backing) = &self.backing else {
            return self.resolve_local(hash_or_prefix);
        };
        match backing.remote.find_prefix(hash_or_prefix) {
            Ok(found) => match found.as_slice() {
                [only] => Ok(*only),
                [] => Err(CasError::NotFound(hash_or_prefix.to_string())),
                _ => Err(CasError::Ambiguous {
                    prefix: hash_or_prefix.to_string(),
                    count: found.len(),
                }),
            },
            Err(unreachable) => self.resolve_local(hash_or_prefix).map_err(|_| unreachable),
        }
    }

    /// Resolves a prefix among the objects in this directory.
    fn resolve_local(&self, hash_or_prefix: &str) -> Result<Hash, CasError> {
        let (dir, rest) = hash_or_prefix.split_at(2);
        let dir_path = self.fanout_dir(dir);
        let entries = match fs::read_dir(&dir_path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CasError::NotFound(hash_or_prefix.to_string()));
            }
            Err(e) => {
                return Err(CasError::Io {
                    context: "listing",
                    path: dir_path,
                    source: e,
                });
            }
        };
        let mut matches = entries
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| !name.contains('.') && name.starts_with(rest));
        match (matches.next(), matches.next()) {
            (Some(only), None) => Hash::parse(&format!("{dir}{only}")),
            (None, _) => Err(CasError::NotFound(hash_or_prefix.to_string())),
            (Some(_), Some(_)) => Err(CasError::Ambiguous {
                prefix: hash_or_prefix.to_string(),
                count: 2 + matches.count(),
            }),
        }
    }
}

impl Cas {
    /// Downloads an object into the cache, hashing it as it arrives, and commits it only if
    /// it matches its name. Returns it open (so eviction cannot take it from under the caller).
    fn fetch(&self, mut download: crate::remote::Download, hash: &Hash) -> Result<(File, u64), CasError> {
        let mut staged = self.stage()?;
        let mut hasher = blake3::Hasher::new();
        let mut received = 0u64;
        while let Some(chunk) = download.next_chunk()? {
            received += chunk.len() as u64;
            if received > download.info.size {
                break;
            }
            hasher.update(&chunk);
            staged.file.write_all(&chunk).at("writing", &staged.path)?;
        }
        let actual = Hash::from(hasher.finalize());
        if received != download.info.size || actual != *hash {
            return Err(CasError::Corrupt {
                hash: hash.to_string(),
                actual: if received == download.info.size {
                    actual.to_string()
                } else {
                    format!("{received} bytes where the bucket announced {}", download.info.size)
                },
            });
        }
        let file = File::open(&staged.path).at("opening", &staged.path)?;
        self.commit_local(staged, &download.info)?;
        Ok((file, received))
    }
}

/// Reads `wanted` bytes from `offset` straight from the bucket (objects too large to cache
/// whole for a range).
fn read_remote_range(backing: &Backing, hash: &Hash, offset: u64, wanted: u64) -> Result<Vec<u8>, CasError> {
    if wanted == 0 {
        return Ok(Vec::new());
    }
    let mut download = backing.remote.download(hash, Some(offset..offset + wanted))?;
    let mut bytes = Vec::with_capacity(wanted as usize);
    while let Some(chunk) = download.next_chunk()? {
        if bytes.len() as u64 + chunk.len() as u64 > wanted {
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != wanted {
        return Err(CasError::Corrupt {
            hash: hash.to_string(),
            actual: format!("a range of {} bytes where {wanted} were asked for", bytes.len()),
        });
    }
    Ok(bytes)
}

/// A verifying read's `InvalidData` carries the `Corrupt` error; give it back as such.
fn unwrap_corrupt(error: io::Error, hash: &Hash, cas: &Cas) -> CasError {
    if let Some(CasError::Corrupt { hash, actual }) = error.get_ref().and_then(|e| e.downcast_ref::<CasError>()) {
        return CasError::Corrupt {
            hash: hash.clone(),
            actual: actual.clone(),
        };
    }
    CasError::Io {
        context: "reading",
        path: cas.object_path(hash),
        source: error,
    }
}
