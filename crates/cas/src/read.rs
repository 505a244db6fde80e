//! Reading objects: streaming (optionally verifying) readers, bounded reads, and resolving
//! the short prefixes people type.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};

use crate::error::IoContext as _;
use crate::hash::{HEX_LEN, check_prefix};
use crate::{Cas, CasError, Hash};

/// Streams an object's content. With verification, reaching the end checks that the
/// content still hashes to the object's name and fails with `InvalidData` (wrapping
/// [`CasError::Corrupt`]) if not.
pub struct ObjectReader {
    file: File,
    size: u64,
    verify: Option<(blake3::Hasher, Hash)>,
}

impl ObjectReader {
    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Some((hasher, expected)) = &mut self.verify {
            hasher.update(&buf[..n]);
            // End of file (an empty `buf` also reads 0 bytes, but says nothing about the end).
            if n == 0 && !buf.is_empty() {
                let actual = Hash::from(hasher.finalize());
                if actual != *expected {
                    let corrupt = CasError::Corrupt {
                        hash: expected.to_string(),
                        actual: actual.to_string(),
                    };
                    return Err(io::Error::new(io::ErrorKind::InvalidData, corrupt));
                }
            }
        }
        Ok(n)
    }
}

impl Cas {
    /// Opens an object for streaming.
    pub fn open_reader(&self, hash: &Hash, verify: bool) -> Result<ObjectReader, CasError> {
        let path = self.object_path(hash);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CasError::NotFound(hash.to_string())),
            Err(e) => {
                return Err(CasError::Io {
                    context: "opening",
                    path,
                    source: e,
                });
            }
        };
        let size = file.metadata().at("inspecting", &path)?.len();
        let verify = verify.then(|| (blake3::Hasher::new(), *hash));
        Ok(ObjectReader { file, size, verify })
    }

    /// Reads a whole object into memory, refusing objects larger than `limit` bytes.
    pub fn read(&self, hash: &Hash, limit: u64, verify: bool) -> Result<Vec<u8>, CasError> {
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
        let mut reader = self.open_reader(hash, false)?;
        let available = reader.size().saturating_sub(offset);
        let wanted = if length == 0 { available } else { length.min(available) };
        if wanted > limit {
            return Err(CasError::TooLarge {
                hash: hash.to_string(),
                size: wanted,
                limit,
            });
        }
        reader.file.seek(SeekFrom::Start(offset)).at("seeking", &path)?;
        let mut bytes = vec![0u8; wanted as usize];
        reader.file.read_exact(&mut bytes).at("reading", &path)?;
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
    pub fn resolve(&self, hash_or_prefix: &str) -> Result<Hash, CasError> {
        if hash_or_prefix.len() == HEX_LEN {
            let hash = Hash::parse(hash_or_prefix)?;
            return if self.contains(&hash) {
                Ok(hash)
            } else {
                Err(CasError::NotFound(hash.to_string()))
            };
        }
        check_prefix(hash_or_prefix)?;
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
