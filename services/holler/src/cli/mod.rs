//! The `holler` commands. Every backend command builds its `pb::*` request and reads the typed
//! reply (`Context::send`; the tool catalog routes it), straight to the backend over ZMQ;
//! only `holler call` and `holler send` take JSON. `--json` prints the reply's proto3 JSON,
//! otherwise it is shown for a person (`output`: aligned tables, integers as integers,
//! enums by short name). stdout carries the result only: what a script prints, logs and
//! progress go to stderr, and a closed stdout (`| head`) ends the program quietly. Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure |
//! | 2 | bad command line (from clap) |
//! | 3 | the request was refused as invalid (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE) |
//! | 4 | NOT_FOUND |
//! | 5 | a backend is unavailable or did not answer in time |
//! | 6 | a job waited for ended failed or cancelled |
//! | 7 | UNAUTHENTICATED or PERMISSION_DENIED (check the key) |
//! | 130 | Ctrl-C while waiting for a job (the job keeps running) |

/// Writes a line to stdout; a closed pipe (`holler … | head`) ends the program quietly.
macro_rules! outln {
    () => {
        $crate::cli::output::write_out("\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod args;
mod artifacts;
mod calls;
mod cas;
mod jobs;
mod output;
mod params;
mod stack;
mod timeline;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory;
use holler::backends::{Backend, Backends, CallError, Endpoints};
use hooteproto::v1::ErrorCode;
use serde_json::Value;

pub use args::Args;
use args::Command;

/// A command's failure, with the exit code it maps to.
pub struct Failure {
    code: u8,
    message: String,
    /// Lua's traceback, when the failure is a script's (shown with `-v`).
    traceback: Option<String>,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            traceback: None,
        }
    }
}

/// The traceback in a status's details (Luanette's runtime errors carry one).
fn traceback(details: Option<&hooteproto::wkt::Struct>) -> Option<String> {
    let details = details?.to_json().ok()?;
    let traceback = details.get("traceback")?.as_str()?.trim();
    (!traceback.is_empty()).then(|| traceback.to_string())
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Self {
        let code = match error.code() {
            ErrorCode::InvalidArgument | ErrorCode::FailedPrecondition | ErrorCode::OutOfRange => 3,
            ErrorCode::NotFound => 4,
            ErrorCode::Unavailable | ErrorCode::DeadlineExceeded => 5,
            ErrorCode::Unauthenticated | ErrorCode::PermissionDenied => 7,
            _ => 1,
        };
        let traceback = match &error {
            CallError::Remote(status) => traceback(status.details.as_ref()),
            _ => None,
        };
        let message = match &error {
            // A backend's own error already names its code.
            CallError::Remote(_) => error.to_string(),
            _ => format!("{}: {error}", hooteproto::error::code_name(error.code())),
        };
        Failure {
            code,
            message,
            traceback,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::new(1, format!("{error:#}"))
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::new(2, message)
}

fn parse_json(what: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| usage(format!("{what} is not JSON: {e}")))
}

fn backend(name: &str) -> Result<Backend, Failure> {
    Backend::parse(name).ok_or_else(|| usage(format!("no backend {name:?}: luanette, hootenanny or chaosgarden")))
}

/// Runs the command; the exit code follows the table above.
pub async fn main(args: Args) -> ExitCode {
    let verbose = args.verbose;
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("holler: {}", failure.message);
            match &failure.traceback {
                Some(traceback) if verbose => eprintln!("{traceback}"),
                Some(_) => eprintln!("holler: (-v shows the traceback)"),
                None => {}
            }
            ExitCode::from(failure.code)
        }
    }
}

pub struct Context {
    backends: Arc<Backends>,
    json: bool,
    timeout: Duration,
    /// The data directory (`--data-dir`, `HOOT_DATA_DIR` or the default).
    data_dir: std::path::PathBuf,
    /// Where the key this CLI signs with came from (None: no key).
    key_source: Option<String>,
}

/// A typed reply, and with `--json` its proto3 JSON.
pub struct Answer<T> {
    reply: T,
    json: Option<Value>,
}

impl Context {
    /// A typed request to the service the catalog routes it to.
    async fn send<R: hooteproto::Request>(&self, request: R) -> Result<Answer<R::Reply>, Failure> {
        self.send_within(request, self.timeout).await
    }

    async fn send_within<R: hooteproto::Request>(
        &self,
        request: R,
        timeout: Duration,
    ) -> Result<Answer<R::Reply>, Failure> {
        let payload = request.into_payload();
        let backend = holler::backends::route(&payload)
            .ok_or_else(|| Failure::new(1, format!("{} is not a tool", payload.name())))?;
        self.send_to::<R>(backend, payload, timeout).await
    }

    /// A request that is not a tool (resources, prompts) to a given backend.
    async fn send_to<R: hooteproto::Request>(
        &self,
        backend: Backend,
        payload: hooteproto::v1::envelope::Payload,
        timeout: Duration,
    ) -> Result<Answer<R::Reply>, Failure> {
        let options = hooteproto::RequestOptions {
            timeout: Some(timeout),
            attempt_timeout: Some(timeout),
            ..Default::default()
        };
        let reply = self.backends.request(backend, payload, options).await?;
        let json = self.json.then(|| holler::backends::payload_to_json(reply.clone()));
        Ok(Answer {
            reply: holler::backends::typed::<R>(reply)?,
            json,
        })
    }

    /// Prints an answer: its proto3 JSON with `--json`, else what `human` prints.
    fn show<T>(&self, answer: &Answer<T>, human: impl FnOnce(&T)) {
        match &answer.json {
            Some(json) => outln!("{json}"),
            None => human(&answer.reply),
        }
    }
}

fn init_telemetry(otlp: Option<&str>, json: bool) -> Result<hooteproto::telemetry::TelemetryGuard, Failure> {
    hooteproto::telemetry::init("holler", otlp, json).map_err(|e| Failure::from(anyhow::anyhow!("telemetry: {e}")))
}

async fn run(args: Args) -> Result<(), Failure> {
    let endpoints = Endpoints {
        luanette: args.luanette.clone(),
        hootenanny: args.hootenanny.clone(),
        chaosgarden: args.chaosgarden.clone(),
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(usage("--timeout must be a positive number of seconds"));
    }
    let data_dir = hooteproto::dirs::data_dir(args.data_dir.clone());
    // `up` uses (or creates) the stack's key; every other command finds it as any client does.
    let key = match &args.command {
        Command::Up { stack, .. } | Command::Mcp { up: true, stack } => {
            stack::up_key(args.key_file.as_deref(), &data_dir, stack.insecure)?
        }
        _ => hooteproto::Key::locate(args.key_file.as_deref(), &data_dir).map_err(|e| usage(e.to_string()))?,
    };
    let context = Context {
        backends: Arc::new(Backends::connect(
            endpoints,
            key.as_ref().map(|(key, _)| key.clone()),
            "holler",
        )?),
        json: args.json,
        timeout: Duration::from_secs_f64(args.timeout),
        data_dir,
        key_source: key.as_ref().map(|(_, source)| source.to_string()),
    };
    let telemetry = stack::Telemetry {
        otlp_endpoint: args.otlp_endpoint,
        log_json: args.log_json,
    };
    match args.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Args::command(), "holler", &mut script);
            output::write_bytes(&script);
            Ok(())
        }
        command @ (Command::Up { .. } | Command::Serve { .. } | Command::Mcp { .. } | Command::Open { .. }) => {
            stack::run(command, telemetry, &context, key).await
        }
        command => calls::run(command, &context).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        // Catches clashes such as a subcommand argument shadowing a global flag.
        super::Args::command().debug_assert();
    }
}
