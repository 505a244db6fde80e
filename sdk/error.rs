//! Errors: [`Status`] is a canonical error as it travels on the wire (`hooteproto.v1.Error`);
//! [`Error`] is everything an SDK call can fail with, each mapped to a canonical code.

use std::time::Duration;

use crate::v1;
use crate::v1::ErrorCode;

/// A canonical error: what a handler returns and what a client receives in an `Error` reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code_name(*code))]
pub struct Status {
    /// The canonical code.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
    /// Optional structured detail.
    pub details: Option<crate::wkt::Struct>,
}

#[cfg(feature = "postgres")]
impl Status {
    /// A PostgreSQL failure as a canonical status. UNAVAILABLE while the server is away, so
    /// callers retry: the pool timed out or closed, the connection broke, or SQLSTATE class 08
    /// (connection exceptions) or 57 (operator intervention, e.g. 57P01 "terminating
    /// connection due to administrator command" at a restart). INVALID_ARGUMENT for class 22,
    /// data the server refuses (e.g. 22021, a NUL in text): the request's own bytes. INTERNAL
    /// otherwise. `database` names it in the message ("the job database").
    pub fn from_database(database: &str, error: sqlx::Error) -> Self {
        let sqlstate = match &error {
            sqlx::Error::Database(e) => e.code().map(|code| code.into_owned()),
            _ => None,
        };
        let class = sqlstate.as_deref().map(|code| code.get(..2).unwrap_or(code));
        let away = matches!(
            error,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
        ) || matches!(class, Some("08" | "57"));
        if away {
            Self::unavailable(format!("{database} is unreachable: {error}"))
        } else if class == Some("22") {
            Self::invalid_argument(format!("{database} refused the data: {error}"))
        } else {
            Self::internal(format!("{database}: {error}"))
        }
    }
}

macro_rules! constructors {
    ($($fn_name:ident => $code:ident),* $(,)?) => {
        $(
            #[doc = concat!("A `Status` with code `", stringify!($code), "`.")]
            pub fn $fn_name(message: impl Into<String>) -> Self {
                Self::new(ErrorCode::$code, message)
            }
        )*
    };
}

impl Status {
    /// A status with a code and message and no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Attach structured details.
    pub fn with_details(mut self, details: impl Into<crate::wkt::Struct>) -> Self {
        self.details = Some(details.into());
        self
    }

    constructors! {
        cancelled => Cancelled,
        invalid_argument => InvalidArgument,
        deadline_exceeded => DeadlineExceeded,
        not_found => NotFound,
        already_exists => AlreadyExists,
        resource_exhausted => ResourceExhausted,
        failed_precondition => FailedPrecondition,
        unimplemented => Unimplemented,
        internal => Internal,
        unavailable => Unavailable,
        unauthenticated => Unauthenticated,
    }

    /// The wire form.
    pub fn to_proto(&self) -> v1::Error {
        v1::Error {
            code: self.code as i32,
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }

    /// From the wire form. Codes this SDK does not know become `ERROR_CODE_UNKNOWN`.
    pub fn from_proto(error: v1::Error) -> Self {
        let code = match ErrorCode::try_from(error.code) {
            Ok(ErrorCode::Unspecified) | Err(_) => ErrorCode::Unknown,
            Ok(code) => code,
        };
        Self {
            code,
            message: error.message,
            details: error.details,
        }
    }

    /// The status as an `Error` reply payload.
    pub fn into_payload(self) -> v1::envelope::Payload {
        v1::envelope::Payload::Error(self.to_proto())
    }
}

/// `ERROR_CODE_NOT_FOUND` -> `NOT_FOUND`.
pub fn code_name(code: ErrorCode) -> &'static str {
    code.as_str_name().trim_start_matches("ERROR_CODE_")
}

/// Everything an SDK call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer answered with an `Error` reply.
    #[error("{0}")]
    Remote(Status),
    /// No reply arrived before the request's deadline (after any retries).
    #[error(
        "no reply from {endpoint} within {elapsed:?} ({attempts} attempt(s)); is the service running, and \
         does this client have its key? (a service with a key drops unsigned or wrongly signed requests unanswered)"
    )]
    DeadlineExceeded {
        /// Where the request was sent.
        endpoint: String,
        /// How long the caller waited in all.
        elapsed: Duration,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// The encoded message is larger than the configured maximum; it was not sent.
    #[error(
        "message of {size} bytes exceeds the maximum message size of {max} bytes; bulk data belongs in the \
         CAS: import the file on the service's host (e.g. `holler cas put FILE`) and send its hash"
    )]
    MessageTooLarge {
        /// The encoded envelope's size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The reply was a payload the request does not expect.
    #[error("unexpected reply payload `{0}`")]
    UnexpectedReply(&'static str),
    /// The reply carried no payload this SDK knows (the peer speaks a newer schema).
    #[error("reply carried no payload this SDK knows")]
    EmptyReply,
    /// The connection dropped (the server died or stopped answering heartbeats) while the
    /// request was in flight, and it is not one the schema allows to send again.
    #[error("the connection to {endpoint} was lost with the request in flight; it may or may not have been done")]
    ConnectionLost {
        /// Where the request was sent.
        endpoint: String,
    },
    /// The client or server was shut down.
    #[error("the connection was closed")]
    Closed,
    /// The transport failed (socket creation, bind, connect).
    #[error("transport error: {0}")]
    Transport(String),
    /// The configuration is invalid (bad endpoint, insecure bind, bad key).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// The canonical code that best describes this error (the CLI maps it to an exit code).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Remote(status) => status.code,
            Error::DeadlineExceeded { .. } => ErrorCode::DeadlineExceeded,
            Error::MessageTooLarge { .. } => ErrorCode::ResourceExhausted,
            Error::UnexpectedReply(_) | Error::EmptyReply => ErrorCode::Internal,
            Error::ConnectionLost { .. } | Error::Closed | Error::Transport(_) => ErrorCode::Unavailable,
            Error::Config(_) => ErrorCode::InvalidArgument,
        }
    }
}

impl From<zmq::Error> for Error {
    fn from(error: zmq::Error) -> Self {
        Error::Transport(error.to_string())
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Error::Remote(status)
    }
}

#[cfg(all(test, feature = "postgres"))]
mod database_tests {
    use super::*;

    #[test]
    fn a_database_that_is_away_is_unavailable_and_anything_else_internal() {
        let away = Status::from_database("the job database", sqlx::Error::PoolTimedOut);
        assert_eq!(away.code, ErrorCode::Unavailable);
        assert!(away.message.starts_with("the job database is unreachable"), "{away}");
        let broken = Status::from_database(
            "the job database",
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        );
        assert_eq!(broken.code, ErrorCode::Unavailable);
        let wrong = Status::from_database("the job database", sqlx::Error::RowNotFound);
        assert_eq!(wrong.code, ErrorCode::Internal);
    }
}
