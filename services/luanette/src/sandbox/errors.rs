//! Why a run failed, and how Lua's errors map onto that.

use std::time::Duration;

/// Why a script stopped without a result.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The wall-clock limit passed.
    #[error("the script ran past its time limit of {0:?} and was stopped")]
    TimeLimit(Duration),
    /// It was cancelled.
    #[error("the script was cancelled")]
    Cancelled,
    /// It tried to allocate beyond its memory limit.
    #[error("the script exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// Lua syntax error.
    #[error("syntax error: {message}")]
    Syntax {
        /// Lua's message (includes the line).
        message: String,
        /// The line, if Lua named one.
        line: Option<u32>,
    },
    /// A runtime error raised by the script or a library function.
    #[error("runtime error: {message}")]
    Runtime {
        /// Lua's message (includes the line).
        message: String,
        /// The line, if Lua named one.
        line: Option<u32>,
        /// Lua's stack traceback.
        traceback: String,
    },
    /// The result (or params) cannot be represented as JSON.
    #[error("cannot convert value: {0}")]
    Conversion(String),
    /// The VM could not be set up (a bug).
    #[error("sandbox setup failed: {0}")]
    Setup(String),
}

/// `[string "script"]:12: message` -> 12.
fn line_of(message: &str) -> Option<u32> {
    let rest = message.split("]:").nth(1)?;
    rest.split(':').next()?.trim().parse().ok()
}

pub(super) fn classify(error: mlua::Error, memory: usize) -> EvalError {
    match error {
        mlua::Error::MemoryError(_) => EvalError::MemoryLimit(memory),
        mlua::Error::SyntaxError { message, .. } => EvalError::Syntax {
            line: line_of(&message),
            message,
        },
        mlua::Error::RuntimeError(text) => {
            let (message, traceback) = match text.split_once("\nstack traceback:") {
                Some((message, trace)) => (message.to_string(), format!("stack traceback:{trace}")),
                None => (text, String::new()),
            };
            EvalError::Runtime {
                line: line_of(&message),
                message,
                traceback,
            }
        }
        mlua::Error::CallbackError { traceback, cause } => match classify((*cause).clone(), memory) {
            EvalError::Runtime { message, line, .. } => EvalError::Runtime {
                message,
                line,
                traceback,
            },
            other => other,
        },
        other => EvalError::Runtime {
            message: other.to_string(),
            line: None,
            traceback: String::new(),
        },
    }
}
