//! The shared CAS as Hootenanny reads it for agents: MIME types checked where they are
//! recorded and reported, and errors that never carry a path on this host.

use cas::{Cas, CasError, Hash, ObjectInfo};
use hooteproto::Status;

/// Longest MIME type accepted (RFC 6838 allows 127 + 1 + 127 characters).
pub const MAX_MIME: usize = 255;

/// Whether `mime_type` is at most 255 bytes of printable ASCII.
pub fn valid_mime(mime_type: &str) -> bool {
    mime_type.len() <= MAX_MIME && mime_type.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Refuses a MIME type that is not [`valid_mime`] (empty is fine: it means the default).
pub fn check_mime(mime_type: &str) -> Result<(), Status> {
    if valid_mime(mime_type) {
        return Ok(());
    }
    let what = if mime_type.len() > MAX_MIME {
        format!("{} bytes long", mime_type.len())
    } else {
        "not printable ASCII".to_string()
    };
    Err(Status::invalid_argument(format!(
        "mime_type is {what}; it must be at most {MAX_MIME} bytes of printable ASCII, e.g. \"audio/midi\""
    )))
}

/// An object's metadata. The store reads a sidecar only if it is small (another process on
/// the host may have written anything there); one that records a MIME type [`valid_mime`]
/// refuses is reported as `application/octet-stream` (only the label is affected).
pub fn inspect(cas: &Cas, hash: &Hash) -> Result<ObjectInfo, CasError> {
    let mut info = cas.inspect(hash)?;
    if !valid_mime(&info.mime_type) {
        tracing::warn!(%hash, bytes = info.mime_type.len(), "CAS object records an invalid MIME type; reporting the default");
        info.mime_type = cas::store::DEFAULT_MIME.to_string();
    }
    Ok(info)
}

/// A CAS error as a canonical status (the mapping every service shares).
pub use cas::status::status;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_types_are_short_printable_ascii() {
        assert!(valid_mime("audio/midi"));
        assert!(valid_mime(""));
        assert!(valid_mime(&"a".repeat(MAX_MIME)));
        assert!(!valid_mime(&"a".repeat(MAX_MIME + 1)));
        assert!(!valid_mime("audio/midi\n"));
        assert!(!valid_mime("audio/m\u{ef}di"));
        assert!(!valid_mime("audio/\u{7f}"));
    }
}
