//! Shared-key message signing (HOOT/1 frame 2): HMAC-SHA256 over the envelope bytes.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Error;

/// Env var naming a file that holds the key (the project convention).
pub const KEY_FILE_ENV: &str = "HOOT_KEY_FILE";
/// Env var holding the key itself, for environments where a file is awkward.
pub const KEY_ENV: &str = "HOOT_KEY";
/// Keys shorter than this are refused: they would be guessable.
pub const MIN_KEY_LEN: usize = 16;
/// Length of a signature frame.
pub const SIGNATURE_LEN: usize = 32;

/// A shared secret used to sign and verify envelopes.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// A key from raw bytes (at least [`MIN_KEY_LEN`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_LEN {
            return Err(Error::Config(format!(
                "HMAC key is {} bytes; at least {MIN_KEY_LEN} are required",
                bytes.len()
            )));
        }
        Ok(Self(bytes))
    }

    /// Reads a key file. Trailing whitespace (a final newline) is not part of the key.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let mut bytes =
            std::fs::read(path).map_err(|e| Error::Config(format!("cannot read key file {}: {e}", path.display())))?;
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        Self::new(bytes).map_err(|e| Error::Config(format!("key file {}: {e}", path.display())))
    }

    /// The key named by a `--key-file` flag, else by `HOOT_KEY_FILE`, else `HOOT_KEY`; `None` if unset.
    pub fn from_flag_or_env(flag: Option<&Path>) -> Result<Option<Self>, Error> {
        if let Some(path) = flag {
            return Self::from_file(path).map(Some);
        }
        if let Some(path) = std::env::var_os(KEY_FILE_ENV).filter(|p| !p.is_empty()) {
            return Self::from_file(Path::new(&path)).map(Some);
        }
        match std::env::var(KEY_ENV) {
            Ok(value) if !value.is_empty() => Self::new(value.into_bytes()).map(Some),
            _ => Ok(None),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// The signature frame for these envelope bytes.
    pub fn sign(&self, envelope: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut mac = self.mac();
        mac.update(envelope);
        mac.finalize().into_bytes().into()
    }

    /// Whether `signature` is this key's signature of `envelope` (constant-time compare).
    pub fn verify(&self, envelope: &[u8], signature: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(envelope);
        mac.verify_slice(signature).is_ok()
    }
}
