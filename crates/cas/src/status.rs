//! A [`CasError`] as a canonical HOOT/1 [`Status`] (feature `status`): the one mapping every
//! service answers CAS failures with. Filesystem errors are logged in full and answered
//! without the path (which says where the store lives on this host); messages that quote
//! the caller are cut to [`MAX_MESSAGE`] bytes.

use hooteproto::Status;
use hooteproto::v1::ErrorCode;

use crate::{CasError, ErrorKind};

/// Longest error message sent back: messages may quote what the caller sent.
pub const MAX_MESSAGE: usize = 1024;

/// The canonical code of an error kind.
pub fn code(kind: ErrorKind) -> ErrorCode {
    match kind {
        ErrorKind::InvalidArgument => ErrorCode::InvalidArgument,
        ErrorKind::NotFound => ErrorCode::NotFound,
        ErrorKind::DataLoss => ErrorCode::DataLoss,
        ErrorKind::ResourceExhausted => ErrorCode::ResourceExhausted,
        ErrorKind::Io => ErrorCode::Internal,
        ErrorKind::Unavailable => ErrorCode::Unavailable,
    }
}

/// Whether an `io::Error` from reading an object is the store's failure rather than the
/// reader's caller's: it carries a [`CasError`] (an [`crate::ObjectReader`]'s verification,
/// the bucket failing mid-stream) or a service's [`Status`] (bytes fetched from one). A
/// decoder's other errors, a short file included, are the file's.
pub fn is_store_failure(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<CasError>() || inner.is::<Status>())
}

/// The status a store failure (see [`is_store_failure`]) carries, or the error back.
pub fn of_store_failure(error: std::io::Error) -> Result<Status, std::io::Error> {
    let error = match CasError::from_reader_error(error) {
        Ok(store) => return Ok(status(store)),
        Err(error) => error,
    };
    match error.get_ref().and_then(|inner| inner.downcast_ref::<Status>()) {
        Some(status) => Ok(status.clone()),
        None => Err(error),
    }
}

/// A CAS error as the status a caller gets.
pub fn status(error: CasError) -> Status {
    let code = code(error.kind());
    match &error {
        CasError::Io { context, source, .. } => {
            tracing::error!(%error, "CAS I/O failed");
            Status::new(
                code,
                format!(
                    "the CAS failed {context} an object ({}); details are in the service's log",
                    source.kind()
                ),
            )
        }
        CasError::Remote { context, object, .. } => {
            tracing::error!(%error, "object storage failed");
            Status::new(
                code,
                bounded(format!(
                    "object storage failed {context} {object}; objects already cached on this host can still be \
                     read, and details are in the service's log"
                )),
            )
        }
        CasError::Config(_) => {
            tracing::error!(%error, "CAS configuration");
            Status::new(code, "the CAS is misconfigured; details are in the service's log")
        }
        CasError::CrossDevice(_) => {
            tracing::error!(%error, "CAS import failed");
            Status::new(code, "the file is on another filesystem than the CAS; copy it instead")
        }
        _ => Status::new(code, bounded(error.to_string())),
    }
}

impl From<CasError> for Status {
    fn from(error: CasError) -> Self {
        status(error)
    }
}

/// Cuts a message that quotes the caller down to [`MAX_MESSAGE`] bytes, on a char boundary.
pub fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_do_not_name_paths() {
        let error = CasError::Io {
            context: "seeking",
            path: "/very/secret/place/objects/ab/cd".into(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        };
        let status = status(error);
        assert_eq!(status.code, ErrorCode::Internal);
        assert!(!status.message.contains("/very"), "{}", status.message);
        assert!(status.message.contains("seeking"), "{}", status.message);
    }

    #[test]
    fn kinds_map_to_their_codes() {
        assert_eq!(status(CasError::NotFound("ab".into())).code, ErrorCode::NotFound);
        assert_eq!(
            status(CasError::InvalidHash("x".into())).code,
            ErrorCode::InvalidArgument
        );
        let corrupt = CasError::Corrupt {
            hash: "a".into(),
            actual: "b".into(),
        };
        assert_eq!(Status::from(corrupt).code, ErrorCode::DataLoss);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let cut = bounded("\u{1F3B5}".repeat(1000));
        assert!(cut.len() <= MAX_MESSAGE + '…'.len_utf8(), "{}", cut.len());
        let hash = "x".repeat(5000);
        assert!(status(CasError::InvalidHash(hash)).message.len() <= MAX_MESSAGE + 3);
    }
}
