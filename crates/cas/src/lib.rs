//! # cas — Hootenanny's content-addressed store
//!
//! Every MIDI file, WAV, script and generated result lives here, named by the BLAKE3-256
//! hash of its content (64 lowercase hex characters). Services on one host share a root
//! directory and use this crate directly: bulk data never crosses ZMQ.
//!
//! ## Layout on disk
//! ```text
//! <root>/objects/ab/cdef…(62 hex)        the content, read-only once written
//! <root>/objects/ab/cdef….meta           {"size", "mime_type", "created_at_unix_ms"} (JSON)
//! <root>/tmp/<pid>-<random>.part         staging; same filesystem, so rename is atomic
//! ```
//!
//! ## Guarantees
//! - **Atomic and durable**: content is written to `tmp/`, fsynced, renamed into place and
//!   its directory fsynced before a store returns. A crash leaves either no object or a whole,
//!   correct one (plus, at worst, a stale `.part` file that is cleaned up later).
//! - **What is stored is what is named**: imports hash the bytes as written to the store, not
//!   as read from the source, so a source changing mid-import cannot produce a misnamed object.
//! - **Idempotent**: storing content that exists is a no-op that reports `already_existed`.
//! - **Multi-process safe**: writers never share temp files, and renames of identical content
//!   are interchangeable, so several processes may write one root at once.
//! - **Bounded memory**: imports and reads stream (1 GiB files are never held in memory).
//! - **Safe names**: a hash is parsed (exactly 64 lowercase hex) before it touches a path.
//!
//! ## Map
//! - [`hash`]: [`Hash`] and prefix rules. - [`store`]: [`Cas`], staging and commit.
//! - [`import`]: streaming and move imports. - [`read`]: readers, verification, prefixes.
//! - [`error`]: [`CasError`] with a [`ErrorKind`] for canonical error codes.
//! - `status` (feature `status`): a [`CasError`] as the HOOT/1 status every service answers with.

mod cache;
pub mod error;
pub mod hash;
pub mod import;
pub mod read;
pub mod remote;
#[cfg(feature = "status")]
pub mod status;
pub mod store;

pub use error::{CasError, ErrorKind};
pub use hash::Hash;
pub use read::{ObjectReader, Verifier};
pub use remote::BlobConfig;
pub use store::{Cas, ObjectInfo, Stored};
