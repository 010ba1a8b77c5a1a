//! The log: rclone's levels (`--log-level DEBUG|INFO|NOTICE|ERROR`, `-v`,
//! `-vv`), one line per event in text or JSON (`--use-json-log`), and no
//! way for what a client sends to forge a line.
//!
//! Text: `TIME LEVEL message key=value ...`, TIME in UTC with
//! microseconds. JSON: one object per line, `time`, `level`, `msg`, then
//! the event's fields under their own names (docs/logging.md lists them);
//! a field with an empty value is left out.
//! Levels print as rclone's: tracing's WARN is rclone's NOTICE, the level
//! shown by default.
//!
//! Every control character (and U+2028/U+2029) in a message or a value is
//! written escaped, in both forms: a user name or path holding a newline
//! cannot start a line of its own.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The level names rclone uses.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "NOTICE",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// `--log-level`'s value as a tracing level.
pub fn parse_level(v: &str) -> Option<Level> {
    match v.to_ascii_uppercase().as_str() {
        "DEBUG" => Some(Level::DEBUG),
        "INFO" => Some(Level::INFO),
        "NOTICE" => Some(Level::WARN),
        "ERROR" => Some(Level::ERROR),
        _ => None,
    }
}

/// A value of an event.
enum Value {
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

/// An event's message and fields, in the order given.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else if !value.is_empty() {
            self.fields
                .push((field.name(), Value::Str(value.to_string())));
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name(), Value::U64(value)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name(), Value::I64(value)));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // Durations: to the millisecond.
        self.fields
            .push((field.name(), Value::F64((value * 1000.0).round() / 1000.0)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name(), Value::Bool(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            // Empty values (a rename's target on a mkdir) are left out.
            let v = format!("{value:?}");
            if !v.is_empty() {
                self.fields.push((field.name(), Value::Str(v)));
            }
        }
    }
}

/// `s` with every control character but tab escaped (`\n`, `\u{1b}`): a
/// tab cannot start a line (rclone's stats block has one).
fn escape_controls(s: &str, out: &mut String) {
    for c in s.chars() {
        if (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}' {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// A value in text form: bare when it is one plain word, else quoted with
/// `"` and `\` escaped as well.
fn text_value(s: &str, out: &mut String) {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '"' | '\\' | '='));
    if plain {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "{}", c.escape_default());
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The time now in UTC, `2026-12-04T21:59:24.296630Z`.
fn now() -> String {
    let dt = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1000
    )
}

/// Ferry's event format, text or JSON.
pub struct Format {
    /// One JSON object per line.
    pub json: bool,
}

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut f = Fields::default();
        event.record(&mut f);
        let level = event.metadata().level();
        let mut line = String::with_capacity(128 + f.message.len());
        if self.json {
            line.push_str("{\"time\":");
            line.push_str(&json_str(&now()));
            line.push_str(",\"level\":");
            line.push_str(&json_str(&level_name(level).to_ascii_lowercase()));
            line.push_str(",\"msg\":");
            line.push_str(&json_str(&f.message));
            for (k, v) in &f.fields {
                line.push(',');
                line.push_str(&json_str(k));
                line.push(':');
                match v {
                    Value::Str(s) => line.push_str(&json_str(s)),
                    Value::U64(n) => {
                        let _ = write!(line, "{n}");
                    }
                    Value::I64(n) => {
                        let _ = write!(line, "{n}");
                    }
                    Value::F64(n) if n.is_finite() => {
                        let _ = write!(line, "{n}");
                    }
                    Value::F64(_) => line.push_str("null"),
                    Value::Bool(b) => {
                        let _ = write!(line, "{b}");
                    }
                }
            }
            line.push('}');
        } else {
            line.push_str(&now());
            let _ = write!(line, " {:<6} ", level_name(level));
            escape_controls(&f.message, &mut line);
            for (k, v) in &f.fields {
                line.push(' ');
                line.push_str(k);
                line.push('=');
                match v {
                    Value::Str(s) => text_value(s, &mut line),
                    Value::U64(n) => {
                        let _ = write!(line, "{n}");
                    }
                    Value::I64(n) => {
                        let _ = write!(line, "{n}");
                    }
                    Value::F64(n) => {
                        let _ = write!(line, "{n}");
                    }
                    Value::Bool(b) => {
                        let _ = write!(line, "{b}");
                    }
                }
            }
        }
        line.push('\n');
        writer.write_str(&line)
    }
}

/// A JSON string; serde_json escapes every control character.
fn json_str(s: &str) -> String {
    let mut out = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
    // Valid JSON, but some log readers split lines on these.
    if out.contains(['\u{2028}', '\u{2029}']) {
        out = out
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_and_escaped() {
        let mut s = String::new();
        text_value("plain", &mut s);
        s.push(' ');
        text_value("two words", &mut s);
        s.push(' ');
        text_value("a\"b\\c\nd\u{1b}", &mut s);
        s.push(' ');
        text_value("", &mut s);
        s.push(' ');
        text_value("k=v", &mut s);
        assert_eq!(s, r#"plain "two words" "a\"b\\c\nd\u{1b}" "" "k=v""#);
        let mut m = String::new();
        escape_controls("x\r\ny\u{2028}\t", &mut m);
        assert_eq!(m, "x\\r\\ny\\u{2028}\t");
        assert_eq!(json_str("a\nb\u{2028}"), r#""a\nb\u2028""#);
    }

    #[test]
    fn levels_are_rclones() {
        assert_eq!(parse_level("notice"), Some(Level::WARN));
        assert_eq!(parse_level("DEBUG"), Some(Level::DEBUG));
        assert_eq!(parse_level("warn"), None);
        assert_eq!(level_name(&Level::WARN), "NOTICE");
    }
}
