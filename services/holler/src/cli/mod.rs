//! The `holler` commands. Every backend command becomes a tool call (the tool's name is
//! the request's oneof case, its arguments the request's proto3 JSON), sent straight to
//! the backend over ZMQ; `--json` prints the reply as JSON, otherwise it is shown for a
//! person. Exit codes:
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

mod args;
mod calls;
mod cas;
mod jobs;
mod stack;

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
        let message = match &error {
            // A backend's own error already names its code.
            CallError::Remote(_) => error.to_string(),
            _ => format!("{}: {error}", hooteproto::error::code_name(error.code())),
        };
        Failure { code, message }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{error:#}"),
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

fn parse_json(what: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| usage(format!("{what} is not JSON: {e}")))
}

fn backend(name: &str) -> Result<Backend, Failure> {
    Backend::parse(name).ok_or_else(|| usage(format!("no backend {name:?}: luanette, hootenanny or chaosgarden")))
}

/// Runs the command; the exit code follows the table above.
pub async fn main(args: Args) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("holler: {}", failure.message);
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
}

impl Context {
    async fn call(&self, tool: &str, arguments: Value) -> Result<Value, Failure> {
        Ok(self.backends.call_tool(tool, &arguments, self.timeout).await?)
    }

    fn print(&self, value: &Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
        }
    }

    /// Prints a reply: as JSON with --json, else `human` (or pretty JSON).
    fn show(&self, value: &Value, human: impl FnOnce(&Value) -> Option<String>) {
        if self.json {
            println!("{value}");
        } else if let Some(text) = human(value) {
            println!("{text}");
        } else {
            self.print(value);
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
    };
    let telemetry = stack::Telemetry {
        otlp_endpoint: args.otlp_endpoint,
        log_json: args.log_json,
    };
    match args.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Args::command(), "holler", &mut std::io::stdout());
            Ok(())
        }
        command @ (Command::Up { .. } | Command::Serve { .. } | Command::Mcp { .. }) => {
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
