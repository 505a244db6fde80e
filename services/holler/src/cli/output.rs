//! Output for a person: stdout that ends quietly when closed, aligned tables, numbers as a
//! person writes them (`5`, not `5.0`), enums by their short names, durations.

use std::io::Write as _;
use std::time::Duration;

use serde_json::Value;

/// Writes to stdout. A closed pipe (`holler … | head`) is the reader having read enough:
/// the program ends at once and quietly (exit 0); other write errors end it with exit 1.
pub fn write_bytes(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_all(bytes).and_then(|()| out.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("holler: writing to stdout: {error}");
        std::process::exit(1);
    }
}

/// [`write_bytes`] for text (what `outln!` calls).
pub fn write_out(text: &str) {
    write_bytes(text.as_bytes());
}

/// Rows under a header, each column as wide as its widest cell (the last one is not padded).
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints the table; with no rows, prints `empty` on stderr instead.
    pub fn print(&self, empty: &str) {
        if self.rows.is_empty() {
            eprintln!("{empty}");
            return;
        }
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            text.trim_end().to_string()
        };
        let mut text = line(self.headers.clone());
        text.push('\n');
        for row in &self.rows {
            text.push_str(&line(row.iter().map(String::as_str).collect()));
            text.push('\n');
        }
        write_out(&text);
    }
}

/// Key/value lines, keys aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for (key, value) in pairs {
        text.push_str(format!("{key:<width$}  {value}").trim_end());
        text.push('\n');
    }
    write_out(&text);
}

/// A number as a person writes it: `5`, `0`, `0.25`, `120.5`.
pub fn number(n: f64) -> String {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// JSON whose whole floats are integers (a Lua or protobuf number is a double: `5.0` → `5`).
pub fn integral(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        Value::Object(fields) => Value::Object(fields.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}

/// A value for a person: a string as itself, anything else as pretty JSON with integers.
pub fn value(value: Value) -> String {
    match integral(value) {
        Value::String(text) => text,
        other => serde_json::to_string_pretty(&other).unwrap_or_default(),
    }
}

/// A `google.protobuf.Value` for a person.
pub fn proto_value(v: Option<prost_types::Value>) -> String {
    value(v.map(hooteproto::wkt::value_to_json).unwrap_or(Value::Null))
}

/// An enum value by its short name (`JOB_STATE_SUCCEEDED` → `succeeded`); `-` when unset.
pub fn enum_name(full_name: &str, number: i32) -> String {
    hooteproto::json::descriptor_pool()
        .get_enum_by_name(full_name)
        .and_then(|e| e.get_value(number))
        .filter(|v| v.number() != 0)
        .map(|v| hooteproto::json::enum_short_name(&v))
        .unwrap_or_else(|| if number == 0 { "-".into() } else { number.to_string() })
}

/// The number of a short (or full) enum value name.
pub fn enum_number(full_name: &str, name: &str) -> Option<i32> {
    hooteproto::json::descriptor_pool()
        .get_enum_by_name(full_name)?
        .values()
        .find(|v| v.name().eq_ignore_ascii_case(name) || hooteproto::json::enum_short_name(v) == name)
        .map(|v| v.number())
}

/// A timestamp as RFC 3339, or `-`.
pub fn time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref().map_or_else(|| "-".into(), ToString::to_string)
}

/// The time between two timestamps.
pub fn between(from: &Option<prost_types::Timestamp>, to: &Option<prost_types::Timestamp>) -> Option<Duration> {
    let (from, to) = (from.as_ref()?, to.as_ref()?);
    let nanos = (to.seconds - from.seconds) as i128 * 1_000_000_000 + (to.nanos - from.nanos) as i128;
    u64::try_from(nanos).ok().map(Duration::from_nanos)
}

/// A duration as a person reads it: `850 ms`, `2.41 s`, `3m 12s`, `2h 5m`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if secs < 60 {
        format!("{:.2} s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else if secs < 86_400 {
        format!("{}h {}m", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600)
    }
}

/// The first `n` characters of a hash (prefixes are accepted wherever a hash is).
pub fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// A script's or job's log lines on stderr: `print` as is, other levels tagged.
pub fn logs(entries: &[hooteproto::v1::LogEntry]) {
    for entry in entries {
        match hooteproto::v1::LogLevel::try_from(entry.level) {
            Ok(hooteproto::v1::LogLevel::Info | hooteproto::v1::LogLevel::Unspecified) | Err(_) => {
                eprintln!("{}", entry.message)
            }
            Ok(_) => eprintln!(
                "[{}] {}",
                enum_name("hooteproto.v1.LogLevel", entry.level),
                entry.message
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_a_person_writes_them() {
        assert_eq!(number(5.0), "5");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(
            value(serde_json::json!({"a": 5.0, "b": [1.5, 2.0]})),
            "{\n  \"a\": 5,\n  \"b\": [\n    1.5,\n    2\n  ]\n}"
        );
    }

    #[test]
    fn enums_by_short_name() {
        assert_eq!(enum_name("hooteproto.v1.JobState", 3), "succeeded");
        assert_eq!(
            enum_number("hooteproto.v1.TimelineEventType", "cue_point").map(|n| n != 0),
            Some(true)
        );
    }
}
