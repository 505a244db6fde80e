//! What Luanette and a sandbox process say to each other over the child's stdin and stdout:
//! length-prefixed protobuf messages (a little-endian u32 length, then the message).
//!
//! This is a private pipe between two copies of the same binary, not part of HOOT/1, so
//! its messages are declared here rather than in `schema/`; they reuse the schema's
//! `LogEntry` and the well-known `Value`/`Struct`.

use std::io::{self, Read};
use std::time::Duration;

use hooteproto::v1::LogEntry;

use crate::sandbox::{EvalError, Limits};
use crate::stdlib::{Backend, Models, Peers};

/// First message to a new sandbox process: what its stdlib reaches and how much it may use.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hello {
    /// The shared CAS root ("" for none).
    #[prost(string, tag = "1")]
    pub cas_root: String,
    #[prost(message, optional, tag = "2")]
    pub orpheus: Option<BackendConfig>,
    #[prost(message, optional, tag = "3")]
    pub musicgen: Option<BackendConfig>,
    #[prost(message, optional, tag = "4")]
    pub deepseek: Option<BackendConfig>,
    /// Sent here, never on the command line, where other users could read it.
    #[prost(string, tag = "5")]
    pub deepseek_key: String,
    #[prost(uint64, tag = "6")]
    pub max_model_response: u64,
    /// RLIMIT_AS for the process, in bytes (0: none).
    #[prost(uint64, tag = "7")]
    pub address_space: u64,
    /// Chaosgarden's endpoint for `garden.*` ("" for none).
    #[prost(string, tag = "8")]
    pub chaosgarden: String,
    /// Hootenanny's endpoint for `hoot.*` ("" for none).
    #[prost(string, tag = "9")]
    pub hootenanny: String,
    /// The HMAC key those services expect (empty for none); sent here, never on the
    /// command line or in the environment.
    #[prost(bytes = "vec", tag = "10")]
    pub key: Vec<u8>,
    /// Whether `garden.play/stop/seek` may move the transport.
    #[prost(bool, tag = "11")]
    pub allow_transport: bool,
    /// Object storage behind the CAS, as JSON (`cas::BlobConfig`, with the `AWS_*`
    /// credentials; "" for a local CAS): sent here for the same reason as the key.
    #[prost(string, tag = "12")]
    pub blobs: String,
}

/// One model backend as configured by the operator.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BackendConfig {
    #[prost(string, tag = "1")]
    pub url: String,
    #[prost(uint64, tag = "2")]
    pub timeout_ms: u64,
    #[prost(uint32, tag = "3")]
    pub retries: u32,
}

/// What kind of run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum RunKind {
    Unspecified = 0,
    /// `lua_eval`: the chunk's first value, on the process's reused VM.
    Eval = 1,
    /// A job: top level then `main(params)`, on a fresh VM.
    Main = 2,
    /// `script_store`: top level then `describe()`, on a fresh VM.
    Describe = 3,
}

/// One run, parent to child.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Run {
    #[prost(enumeration = "RunKind", tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub code: String,
    #[prost(message, optional, tag = "3")]
    pub params: Option<prost_types::Struct>,
    #[prost(uint64, tag = "4")]
    pub wall_us: u64,
    #[prost(uint64, tag = "5")]
    pub memory: u64,
    #[prost(string, tag = "6")]
    pub traceparent: String,
    /// Whether `job.progress` should be reported back.
    #[prost(bool, tag = "7")]
    pub progress: bool,
    /// The job this run is ("" for an evaluation).
    #[prost(string, tag = "8")]
    pub job_id: String,
    /// The script it runs.
    #[prost(string, tag = "9")]
    pub script_hash: String,
    /// The name the script was started by.
    #[prost(string, tag = "10")]
    pub script_name: String,
    /// Whether output lines should be sent back as they come (besides all of them at the end).
    #[prost(bool, tag = "11")]
    pub logs: bool,
}

/// Child to parent: something that happened during a run, or its end.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(oneof = "event::Kind", tags = "1, 2, 3, 4")]
    pub kind: Option<event::Kind>,
}

pub mod event {
    /// The event's kind.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        Progress(super::Progress),
        #[prost(message, tag = "2")]
        Otel(super::OtelEvent),
        #[prost(message, tag = "3")]
        Done(super::Done),
        /// An output line as it comes, cut to `sandbox::LOG_LINE_PREVIEW` bytes
        /// (`Done.output` has it whole). A run keeps at most 10,001 lines, so these stay
        /// well inside the parent's event limit.
        #[prost(message, tag = "4")]
        Line(super::LogEntry),
    }
}

/// `job.progress(fraction, message)`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Progress {
    #[prost(double, tag = "1")]
    pub fraction: f64,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `otel.event(name, attributes)`: the parent records it in the run's trace.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OtelEvent {
    #[prost(string, tag = "1")]
    pub name: String,
    /// JSON, at most 4 KiB.
    #[prost(string, tag = "2")]
    pub attributes: String,
}

/// The end of a run.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Done {
    /// The value (for `Describe`: absent when the script has no `describe`).
    #[prost(message, optional, tag = "1")]
    pub value: Option<prost_types::Value>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<RunError>,
    #[prost(message, repeated, tag = "3")]
    pub output: Vec<LogEntry>,
    /// The process is as clean as when it started and may take another run.
    #[prost(bool, tag = "4")]
    pub reusable: bool,
}

/// An [`EvalError`] on the pipe.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunError {
    #[prost(enumeration = "ErrorKind", tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(uint32, optional, tag = "3")]
    pub line: Option<u32>,
    #[prost(string, tag = "4")]
    pub traceback: String,
    /// The limit that tripped: microseconds for time, bytes for memory.
    #[prost(uint64, tag = "5")]
    pub limit: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ErrorKind {
    Unspecified = 0,
    TimeLimit = 1,
    Cancelled = 2,
    MemoryLimit = 3,
    Syntax = 4,
    Runtime = 5,
    Conversion = 6,
    Setup = 7,
}

impl From<&EvalError> for RunError {
    fn from(error: &EvalError) -> Self {
        let plain = |kind: ErrorKind, message: &str| RunError {
            kind: kind as i32,
            message: message.to_string(),
            line: None,
            traceback: String::new(),
            limit: 0,
        };
        match error {
            EvalError::TimeLimit(wall) => RunError {
                limit: u64::try_from(wall.as_micros()).unwrap_or(u64::MAX),
                ..plain(ErrorKind::TimeLimit, "")
            },
            EvalError::Cancelled => plain(ErrorKind::Cancelled, ""),
            EvalError::MemoryLimit(bytes) => RunError {
                limit: *bytes as u64,
                ..plain(ErrorKind::MemoryLimit, "")
            },
            EvalError::Syntax { message, line } => RunError {
                line: *line,
                ..plain(ErrorKind::Syntax, message)
            },
            EvalError::Runtime {
                message,
                line,
                traceback,
            } => RunError {
                line: *line,
                traceback: traceback.clone(),
                ..plain(ErrorKind::Runtime, message)
            },
            EvalError::Conversion(message) => plain(ErrorKind::Conversion, message),
            EvalError::Setup(message) => plain(ErrorKind::Setup, message),
        }
    }
}

impl From<RunError> for EvalError {
    fn from(error: RunError) -> Self {
        match ErrorKind::try_from(error.kind).unwrap_or(ErrorKind::Unspecified) {
            ErrorKind::TimeLimit => EvalError::TimeLimit(Duration::from_micros(error.limit)),
            ErrorKind::Cancelled => EvalError::Cancelled,
            ErrorKind::MemoryLimit => EvalError::MemoryLimit(usize::try_from(error.limit).unwrap_or(usize::MAX)),
            ErrorKind::Syntax => EvalError::Syntax {
                message: error.message,
                line: error.line,
            },
            ErrorKind::Runtime => EvalError::Runtime {
                message: error.message,
                line: error.line,
                traceback: error.traceback,
            },
            ErrorKind::Conversion => EvalError::Conversion(error.message),
            ErrorKind::Setup | ErrorKind::Unspecified => EvalError::Setup(error.message),
        }
    }
}

impl Run {
    /// Which job and script the run is.
    pub fn identity(&self) -> crate::sandbox::ScriptIdentity {
        crate::sandbox::ScriptIdentity {
            job_id: self.job_id.clone(),
            script_hash: self.script_hash.clone(),
            script_name: self.script_name.clone(),
        }
    }

    /// The limits this run asks for.
    pub fn limits(&self) -> Limits {
        Limits {
            wall: Duration::from_micros(self.wall_us),
            memory: usize::try_from(self.memory).unwrap_or(usize::MAX),
        }
    }
}

fn backend_config(backend: &Backend) -> BackendConfig {
    BackendConfig {
        url: backend.url.clone().unwrap_or_default(),
        timeout_ms: u64::try_from(backend.timeout.as_millis()).unwrap_or(u64::MAX),
        retries: backend.retries,
    }
}

fn backend_of(config: Option<BackendConfig>) -> Backend {
    match config {
        Some(config) => Backend {
            url: Some(config.url).filter(|u| !u.is_empty()),
            timeout: Duration::from_millis(config.timeout_ms),
            retries: config.retries,
        },
        None => Backend::default(),
    }
}

impl Hello {
    /// What a sandbox process needs to know about the operator's configuration.
    pub fn new(cas: Option<&::cas::Cas>, models: &Models, peers: &Peers, address_space: u64) -> Self {
        Self {
            chaosgarden: peers.chaosgarden.clone().unwrap_or_default(),
            hootenanny: peers.hootenanny.clone().unwrap_or_default(),
            key: peers.key.as_ref().map(|k| k.secret().to_vec()).unwrap_or_default(),
            allow_transport: peers.allow_transport,
            cas_root: cas
                .map(|cas| cas.root().to_string_lossy().into_owned())
                .unwrap_or_default(),
            blobs: cas
                .map(|cas| cas.blob_config())
                .filter(|config| config.is_remote())
                .and_then(|config| serde_json::to_string(&config).ok())
                .unwrap_or_default(),
            orpheus: Some(backend_config(&models.orpheus)),
            musicgen: Some(backend_config(&models.musicgen)),
            deepseek: Some(backend_config(&models.deepseek)),
            deepseek_key: models.deepseek_key.clone().unwrap_or_default(),
            max_model_response: models.max_response as u64,
            address_space,
        }
    }

    /// The services `garden.*` and `hoot.*` reach.
    pub fn peers(&self) -> Peers {
        Peers {
            chaosgarden: Some(self.chaosgarden.clone()).filter(|e| !e.is_empty()),
            hootenanny: Some(self.hootenanny.clone()).filter(|e| !e.is_empty()),
            key: Some(self.key.clone())
                .filter(|k| !k.is_empty())
                .and_then(|k| hooteproto::Key::new(k).ok()),
            allow_transport: self.allow_transport,
        }
    }

    /// The model configuration it carries.
    pub fn models(&self) -> Models {
        Models {
            orpheus: backend_of(self.orpheus.clone()),
            musicgen: backend_of(self.musicgen.clone()),
            deepseek: backend_of(self.deepseek.clone()),
            deepseek_key: Some(self.deepseek_key.clone()).filter(|k| !k.is_empty()),
            max_response: usize::try_from(self.max_model_response).unwrap_or(usize::MAX),
        }
    }
}

/// Reads one framed message of at most `max` bytes; `Ok(None)` at a clean end of input.
pub fn read_frame<M: prost::Message + Default>(input: &mut impl Read, max: usize) -> io::Result<Option<M>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_le_bytes(length) as usize;
    if length > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message of {length} bytes (at most {max})"),
        ));
    }
    let mut body = vec![0u8; length];
    input.read_exact(&mut body)?;
    M::decode(body.as_slice())
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One framed message, ready for a single write.
pub fn frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut framed = Vec::with_capacity(body.len() + 4);
    framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
    framed.extend_from_slice(&body);
    framed
}
