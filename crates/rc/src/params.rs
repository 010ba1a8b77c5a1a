//! A call's parameters: rclone's `rc.Params`, a JSON object, read with
//! the types rclone's `Get*` helpers accept (a string `"true"` is a
//! bool, a string `"10s"` a duration, ...).

use std::time::Duration;

use serde_json::{Map, Value};

use crate::RcError;

/// The parameters of one call.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Map<String, Value>);

impl Params {
    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Remove and return `key`.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key)
    }

    /// `key` as a string (numbers and bools are written out).
    pub fn string(&self, key: &str) -> Result<Option<String>, RcError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(RcError::invalid(format!("{key} must be a string"))),
        }
    }

    /// `key` as a bool: JSON true/false or Go's strconv.ParseBool words.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, RcError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => parse_bool(s)
                .map(Some)
                .ok_or_else(|| RcError::invalid(format!("couldn't parse {key}={s:?} as bool"))),
            Some(Value::Number(n)) => Ok(Some(n.as_f64() != Some(0.0))),
            Some(v) => Err(RcError::invalid(format!(
                "couldn't parse {key}={v} as bool"
            ))),
        }
    }

    /// `key` as a whole number (JSON number or its text).
    pub fn int(&self, key: &str) -> Result<Option<i64>, RcError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| RcError::invalid(format!("couldn't parse {key}={n} as int"))),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| RcError::invalid(format!("couldn't parse {key}={s:?} as int"))),
            Some(v) => Err(RcError::invalid(format!("couldn't parse {key}={v} as int"))),
        }
    }

    /// `key` as a number.
    pub fn float(&self, key: &str) -> Result<Option<f64>, RcError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| RcError::invalid(format!("couldn't parse {key}={s:?} as float"))),
            Some(v) => Err(RcError::invalid(format!(
                "couldn't parse {key}={v} as float"
            ))),
        }
    }

    /// `key` as a duration: a Go duration string (`1m30s`, plain seconds
    /// also taken, as rclone's fs.Duration does) or a number of
    /// nanoseconds.
    pub fn duration(&self, key: &str) -> Result<Option<Duration>, RcError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| *f >= 0.0)
                .map(|ns| Some(Duration::from_nanos(ns as u64)))
                .ok_or_else(|| RcError::invalid(format!("couldn't parse {key}={n} as duration"))),
            Some(Value::String(s)) => parse_duration(s)
                .map(Some)
                .ok_or_else(|| RcError::invalid(format!("couldn't parse {key}={s:?} as duration"))),
            Some(v) => Err(RcError::invalid(format!(
                "couldn't parse {key}={v} as duration"
            ))),
        }
    }

    /// Error for the first key not in `known` (rclone refuses unknown
    /// parameters of the vfs calls).
    pub fn only(&self, known: &[&str]) -> Result<(), RcError> {
        match self
            .0
            .keys()
            .find(|k| !known.contains(&k.as_str()) && !k.starts_with('_'))
        {
            Some(k) => Err(RcError::invalid(format!("unknown key {k:?}"))),
            None => Ok(()),
        }
    }
}

/// Go's strconv.ParseBool.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A Go duration (`300ms`, `1h2m3.5s`), rclone's extra suffixes (`d`,
/// `w`, `M`, `y`), `off`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "off" {
        return Some(Duration::from_secs(100 * 365 * 86400));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 7.0 * 86400.0,
            "M" => 30.0 * 86400.0,
            "y" => 365.0 * 86400.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

/// A duration as Go prints it (`1m30s`, `500ms`, `0s`).
pub fn go_duration(d: Duration) -> String {
    ferry_stats::go_duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_rclone_reads_them() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172800)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("-5s"), None);
    }

    #[test]
    fn values_are_read_in_the_types_rclone_accepts() {
        let p = Params(
            serde_json::json!({"a": "true", "b": false, "n": "12", "m": 3, "d": 1_000_000_000u64})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(p.bool("a").unwrap(), Some(true));
        assert_eq!(p.bool("b").unwrap(), Some(false));
        assert_eq!(p.int("n").unwrap(), Some(12));
        assert_eq!(p.int("m").unwrap(), Some(3));
        assert_eq!(p.duration("d").unwrap(), Some(Duration::from_secs(1)));
        assert!(p.bool("n").is_err());
        assert!(p.only(&["a", "b", "n", "m"]).is_err());
        assert!(p.only(&["a", "b", "n", "m", "d"]).is_ok());
    }
}
