//! [`Hash`]: a BLAKE3-256 digest, written as 64 lowercase hex characters.

use std::fmt;
use std::str::FromStr;

use crate::CasError;

/// Length of a hash in hex.
pub const HEX_LEN: usize = 64;
/// Shortest prefix accepted where a person types a hash.
pub const MIN_PREFIX_LEN: usize = 8;

/// A content hash. Its text form is the only way a hash reaches a path, and parsing it
/// accepts exactly 64 lowercase hex characters, so no name can escape the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash([u8; 32]);

impl Hash {
    /// The hash of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses exactly 64 lowercase hex characters.
    pub fn parse(text: &str) -> Result<Self, CasError> {
        if !is_lower_hex(text) || text.len() != HEX_LEN {
            return Err(CasError::InvalidHash(shorten(text)));
        }
        blake3::Hash::from_hex(text)
            .map(Self::from)
            .map_err(|_| CasError::InvalidHash(shorten(text)))
    }

    /// The fan-out directory name (first 2 hex characters) and the file name (the other 62).
    pub(crate) fn split(&self) -> (String, String) {
        let hex = self.to_string();
        let (dir, file) = hex.split_at(2);
        (dir.to_string(), file.to_string())
    }
}

impl From<blake3::Hash> for Hash {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl FromStr for Hash {
    type Err = CasError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Checks a typed prefix: 8 to 64 lowercase hex characters.
pub fn check_prefix(prefix: &str) -> Result<(), CasError> {
    if is_lower_hex(prefix) && (MIN_PREFIX_LEN..=HEX_LEN).contains(&prefix.len()) {
        Ok(())
    } else {
        Err(CasError::InvalidPrefix(shorten(prefix)))
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Error messages echo at most 80 characters of untrusted input.
fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}
