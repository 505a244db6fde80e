//! Reading what a command is given: files or `-` for stdin, and script parameters from
//! `--params`, `--param key=value|key=@FILE` and `--params-file`.

use std::io::Read as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};

use super::args::ParamArgs;
use super::{Failure, parse_json, usage};

/// Whether stdin was read already (it can be read once).
static STDIN_READ: AtomicBool = AtomicBool::new(false);

/// A file's bytes; `-` is stdin.
pub fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    if path == Path::new("-") {
        if STDIN_READ.swap(true, Ordering::SeqCst) {
            return Err(usage("stdin (-) can be read only once per command"));
        }
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| usage(format!("cannot read stdin: {e}")))?;
        return Ok(data);
    }
    std::fs::read(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))
}

/// A file's text; `-` is stdin.
pub fn read_text(path: &Path) -> Result<String, Failure> {
    let what = if path == Path::new("-") {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    String::from_utf8(read(path)?).map_err(|_| usage(format!("{what} is not UTF-8 text")))
}

fn object(what: &str, value: Value) -> Result<Map<String, Value>, Failure> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(usage(format!("{what} must be a JSON object, not {other}"))),
    }
}

/// The parameters, merged: `--params-file`, then `--params`, then each `--param`.
/// None when none was given.
pub fn collect(args: ParamArgs) -> Result<Option<Map<String, Value>>, Failure> {
    if args.params.is_none() && args.param.is_empty() && args.params_file.is_none() {
        return Ok(None);
    }
    let mut params = Map::new();
    if let Some(file) = &args.params_file {
        let text = read_text(file)?;
        params.extend(object("--params-file", parse_json("--params-file", &text)?)?);
    }
    if let Some(text) = &args.params {
        params.extend(object("--params", parse_json("--params", text)?)?);
    }
    for param in &args.param {
        let (key, value) = param
            .split_once('=')
            .ok_or_else(|| usage(format!("--param {param:?}: expected key=value or key=@FILE")))?;
        if key.is_empty() {
            return Err(usage(format!("--param {param:?}: the key is empty")));
        }
        let value = match value.strip_prefix('@') {
            Some(file) => Value::String(read_text(Path::new(file))?),
            None => serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string())),
        };
        params.insert(key.to_string(), value);
    }
    Ok(Some(params))
}
