//! Errors, each with a [`ErrorKind`] that services map to canonical error codes.

use std::path::PathBuf;

/// What a caller can do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request named something malformed (a bad hash, an ambiguous prefix).
    InvalidArgument,
    /// No such object.
    NotFound,
    /// An object's content no longer matches its name.
    DataLoss,
    /// A size limit was hit.
    ResourceExhausted,
    /// The filesystem failed.
    Io,
    /// Object storage could not be reached or refused the request; retrying may succeed.
    Unavailable,
}

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    /// Not exactly 64 lowercase hex characters.
    #[error("invalid hash {0:?}: expected 64 lowercase hex characters (BLAKE3-256)")]
    InvalidHash(String),
    /// Not 8 to 64 lowercase hex characters.
    #[error("invalid hash prefix {0:?}: expected 8 to 64 lowercase hex characters")]
    InvalidPrefix(String),
    /// No object has this hash (or prefix).
    #[error("no object {0} in the store")]
    NotFound(String),
    /// A prefix names several objects.
    #[error("prefix {prefix} matches {count} objects; give more characters")]
    Ambiguous {
        /// The prefix.
        prefix: String,
        /// How many objects it matches.
        count: usize,
    },
    /// Verification found content that does not hash to the object's name.
    #[error("object {hash} is corrupt: its content hashes to {actual}")]
    Corrupt {
        /// The object's name.
        hash: String,
        /// What its content hashes to now.
        actual: String,
    },
    /// A read would return more than the caller allowed.
    #[error("object {hash} is {size} bytes, over this read's limit of {limit} bytes; stream it or read a range")]
    TooLarge {
        /// The object.
        hash: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A move import was asked across filesystems.
    #[error("cannot move {0} into the store: it is on another filesystem (copy it with import_file instead)")]
    CrossDevice(PathBuf),
    /// The store's configuration is unusable (a bad blob URL, a cache directory that is not one).
    #[error("{0}")]
    Config(String),
    /// Object storage failed a request.
    #[error("object storage {url} failed {context} {object}: {source}")]
    Remote {
        /// What was being done.
        context: &'static str,
        /// The object (a hash or a prefix).
        object: String,
        /// The bucket's URL.
        url: String,
        /// Why it failed.
        source: Box<object_store::Error>,
    },
    /// The filesystem failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl CasError {
    /// The store's own error inside an `io::Error` from an [`crate::ObjectReader`] (its
    /// verification at the end, or the bucket failing mid-stream), or the `io::Error` back if
    /// it carries none. Readers of a decoder's input use it to tell the store's failure from
    /// the file's.
    pub fn from_reader_error(error: std::io::Error) -> Result<Self, std::io::Error> {
        if !error.get_ref().is_some_and(|inner| inner.is::<CasError>()) {
            return Err(error);
        }
        let kind = error.kind();
        match error.into_inner().map(|inner| inner.downcast::<CasError>()) {
            Some(Ok(cas)) => Ok(*cas),
            Some(Err(inner)) => Err(std::io::Error::new(kind, inner)),
            None => Err(std::io::Error::from(kind)),
        }
    }

    /// The kind, for mapping to a canonical error code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CasError::InvalidHash(_) | CasError::InvalidPrefix(_) | CasError::Ambiguous { .. } => {
                ErrorKind::InvalidArgument
            }
            CasError::CrossDevice(_) => ErrorKind::InvalidArgument,
            CasError::NotFound(_) => ErrorKind::NotFound,
            CasError::Corrupt { .. } => ErrorKind::DataLoss,
            CasError::TooLarge { .. } => ErrorKind::ResourceExhausted,
            CasError::Io { .. } => ErrorKind::Io,
            CasError::Config(_) => ErrorKind::Io,
            CasError::Remote { .. } => ErrorKind::Unavailable,
        }
    }
}

/// Attaches what was being done, and where, to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, context: &'static str, path: &std::path::Path) -> Result<T, CasError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, context: &'static str, path: &std::path::Path) -> Result<T, CasError> {
        self.map_err(|source| CasError::Io {
            context,
            path: path.to_path_buf(),
            source,
        })
    }
}
