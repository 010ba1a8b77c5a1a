//! The `rclone.conf` reader: [`Config`], [`Section`], [`Entry`].
//!
//! # Format
//! rclone reads its config with the `goconfig` INI library. Ferry reads the
//! same files the same way:
//!
//! - A UTF-8 byte-order mark at the start is skipped. Lines end with `\n`;
//!   every line is trimmed of surrounding whitespace (so `\r\n` works).
//! - Blank lines and lines starting with `#` or `;` are ignored. There are
//!   no inline comments: in `key = a # b` the value is `a # b`.
//! - `[name]` starts a section (one remote); the name is trimmed.
//! - `key = value` or `key: value`: the key ends at the first `=` or `:`,
//!   and both sides are trimmed. `url = http://h:8080/` has the value
//!   `http://h:8080/`.
//! - Quoting, as goconfig writes it for values holding backquotes or
//!   quotes: a value that starts with `` ` `` runs to the last `` ` `` of the
//!   line, one that starts with `"""` to the last `"""`; the text inside is
//!   kept as is. A value in plain `"..."` keeps its quotes (as in rclone). A
//!   key may be quoted with `` ` ``, `"` or `"""` (then it may hold `=` or
//!   `:`).
//! - A key repeated in a section overrides the earlier value, keeping the
//!   key's first position. A section repeated later in the file is merged
//!   into the first one, later keys overriding.
//!
//! Where Ferry is stricter than rclone (a config error is better found
//! early): a key before the first section is an error (goconfig files it in
//! a hidden `DEFAULT` section); `[]` is an error; invalid UTF-8 is an error.
//! goconfig's auto-numbered `-` keys are not special here: rclone never
//! writes them.
//!
//! An encrypted rclone config (first meaningful line `RCLONE_ENCRYPT_V0:`,
//! usually after `# Encrypted rclone configuration File`) is recognised and
//! refused with [`ConfigError::Encrypted`].

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, SyntaxReason};
use crate::resolve::{is_secret, DEFAULT_SECRET_KEYS, REDACTED};

/// The header line rclone writes at the top of an encrypted config.
const ENCRYPTED_HEADER: &str = "# Encrypted rclone configuration File";
/// The prefix of the line that starts the encrypted payload.
const ENCRYPTED_MARKER: &str = "RCLONE_ENCRYPT_V";

/// A parsed config file: its remotes, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    path: Option<PathBuf>,
    sections: Vec<Section>,
}

/// One `[name]` section of the config file: the definition of a remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    name: String,
    line: usize,
    entries: Vec<Entry>,
}

/// One `key = value` line of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, as written (rclone's option names are lower case).
    pub key: String,
    /// The value, unquoted. May be empty; an empty value counts as unset
    /// when options are resolved, as in rclone.
    pub value: String,
    /// The line (1-based) the value comes from.
    pub line: usize,
}

impl Config {
    /// A config with no file and no remotes: only local paths, on-the-fly
    /// remotes and remotes defined in the environment work.
    pub fn empty() -> Config {
        Config::default()
    }

    /// Reads and parses the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            ConfigError::NotUtf8 {
                path: path.to_path_buf(),
                line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
            }
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` is where it came from, for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if is_encrypted(text) {
            return Err(ConfigError::Encrypted {
                path: path.to_path_buf(),
            });
        }
        let mut config = Config {
            path: Some(path.to_path_buf()),
            sections: Vec::new(),
        };
        // Index into `config.sections` of the section being filled.
        let mut current: Option<usize> = None;
        for (index, raw) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            let syntax = |reason| ConfigError::Syntax {
                path: path.to_path_buf(),
                line: line_no,
                text: line.to_string(),
                reason,
            };
            match parse_line(line).map_err(syntax)? {
                Line::Blank => {}
                Line::Section(name) => {
                    current = Some(config.section_index(name, line_no));
                }
                Line::Entry { key, value } => {
                    let index = current.ok_or_else(|| syntax(SyntaxReason::KeyOutsideSection))?;
                    config.sections[index].set(key, value, line_no);
                }
            }
        }
        Ok(config)
    }

    /// The file this config was read from; `None` for [`Config::empty`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The names of all sections, in file order (a repeated section counts
    /// once, at its first place). Sections without a `type` are included.
    pub fn remotes(&self) -> Vec<&str> {
        self.sections.iter().map(|s| s.name.as_str()).collect()
    }

    /// The section named exactly `name` (names are case-sensitive).
    pub fn remote(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// All sections, in file order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The index of section `name`, created (starting at `line`) if new.
    fn section_index(&mut self, name: &str, line: usize) -> usize {
        if let Some(i) = self.sections.iter().position(|s| s.name == name) {
            return i;
        }
        self.sections.push(Section {
            name: name.to_string(),
            line,
            entries: Vec::new(),
        });
        self.sections.len() - 1
    }
}

impl Section {
    /// The remote name, as written between the brackets (trimmed).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The line (1-based) of the section's first `[name]` header.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The value of the `type` key, unless missing or empty.
    pub fn type_(&self) -> Option<&str> {
        self.get("type")
            .map(|e| e.value.as_str())
            .filter(|v| !v.is_empty())
    }

    /// All `key = value` entries (including `type`), in file order.
    pub fn options(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry for `key`, if present (even with an empty value).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// The section as config text, with the values of
    /// [`DEFAULT_SECRET_KEYS`] replaced by [`REDACTED`].
    pub fn display_redacted(&self) -> String {
        self.display_redacted_with(DEFAULT_SECRET_KEYS)
    }

    /// The section as config text, with the values of `secret_keys`
    /// (compared ignoring ASCII case) replaced by [`REDACTED`]. Empty values
    /// are shown as empty.
    pub fn display_redacted_with(&self, secret_keys: &[&str]) -> String {
        let mut out = format!("[{}]\n", self.name);
        for entry in &self.entries {
            let value = if !entry.value.is_empty() && is_secret(&entry.key, secret_keys) {
                REDACTED
            } else {
                entry.value.as_str()
            };
            let _ = writeln!(out, "{} = {}", entry.key, value);
        }
        out
    }

    /// Sets `key`, overriding an earlier value in place.
    fn set(&mut self, key: &str, value: &str, line: usize) {
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(entry) => {
                entry.value = value.to_string();
                entry.line = line;
            }
            None => self.entries.push(Entry {
                key: key.to_string(),
                value: value.to_string(),
                line,
            }),
        }
    }
}

/// Whether the text is an rclone-encrypted config: it starts with rclone's
/// header, or its first line that is not blank or a comment starts with
/// `RCLONE_ENCRYPT_V` (rclone's own test).
fn is_encrypted(text: &str) -> bool {
    let mut lines = text.split('\n').map(str::trim);
    if lines.clone().next() == Some(ENCRYPTED_HEADER) {
        return true;
    }
    lines
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .is_some_and(|l| l.starts_with(ENCRYPTED_MARKER))
}

/// One classified, trimmed line.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    Blank,
    Section(&'a str),
    Entry { key: &'a str, value: &'a str },
}

fn parse_line(line: &str) -> Result<Line<'_>, SyntaxReason> {
    if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
        return Ok(Line::Blank);
    }
    if line.len() >= 2 && line.starts_with('[') && line.ends_with(']') {
        let name = line[1..line.len() - 1].trim();
        if name.is_empty() {
            return Err(SyntaxReason::EmptySectionName);
        }
        return Ok(Line::Section(name));
    }
    let (key, rest) = split_key(line)?;
    Ok(Line::Entry {
        key,
        value: parse_value(rest.trim())?,
    })
}

/// Splits `key = rest` (or `key: rest`), handling a quoted key.
fn split_key(line: &str) -> Result<(&str, &str), SyntaxReason> {
    let quote = if line.len() >= 6 && line.starts_with("\"\"\"") {
        Some("\"\"\"")
    } else if line.starts_with('"') {
        Some("\"")
    } else if line.starts_with('`') {
        Some("`")
    } else {
        None
    };
    match quote {
        Some(q) => {
            let inner = &line[q.len()..];
            let close = inner.find(q).ok_or(SyntaxReason::UnterminatedQuote)?;
            let key = &inner[..close];
            let after = &inner[close + q.len()..];
            let sep = after.find(['=', ':']).ok_or(SyntaxReason::NotKeyValue)?;
            if key.is_empty() {
                return Err(SyntaxReason::EmptyKey);
            }
            Ok((key, &after[sep + 1..]))
        }
        None => match line.find(['=', ':']) {
            // The line is trimmed and non-empty, so a separator at 0 means
            // an empty key.
            Some(0) | None => Err(SyntaxReason::NotKeyValue),
            Some(sep) => Ok((line[..sep].trim(), &line[sep + 1..])),
        },
    }
}

/// Unquotes a trimmed value written as `` `v` `` or `"""v"""`.
fn parse_value(rest: &str) -> Result<&str, SyntaxReason> {
    let quote = if rest.len() >= 2 && rest.starts_with('`') {
        "`"
    } else if rest.len() >= 6 && rest.starts_with("\"\"\"") {
        "\"\"\""
    } else {
        return Ok(rest);
    };
    let inner = &rest[quote.len()..];
    let close = inner.rfind(quote).ok_or(SyntaxReason::UnterminatedQuote)?;
    Ok(&inner[..close])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/rclone.conf"))
    }

    fn values(section: &Section) -> Vec<(&str, &str, usize)> {
        section
            .options()
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect()
    }

    fn syntax_error(text: &str) -> (usize, String, SyntaxReason) {
        match parse(text).unwrap_err() {
            ConfigError::Syntax {
                path,
                line,
                text,
                reason,
            } => {
                assert_eq!(path, Path::new("/etc/rclone.conf"));
                (line, text, reason)
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn typical_rclone_conf() {
        let cfg = parse(
            "[s3]\n\
             type = s3\n\
             provider = AWS\n\
             access_key_id = AKIA\n\
             secret_access_key = abc/def+ghi=\n\
             \n\
             [nas]\n\
             type = sftp\n\
             host = 10.0.0.2\n\
             pass = YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ\n",
        )
        .unwrap();
        assert_eq!(cfg.remotes(), ["s3", "nas"]);
        assert_eq!(cfg.path(), Some(Path::new("/etc/rclone.conf")));
        let s3 = cfg.remote("s3").unwrap();
        assert_eq!(s3.name(), "s3");
        assert_eq!(s3.line(), 1);
        assert_eq!(s3.type_(), Some("s3"));
        assert_eq!(
            values(s3),
            [
                ("type", "s3", 2),
                ("provider", "AWS", 3),
                ("access_key_id", "AKIA", 4),
                ("secret_access_key", "abc/def+ghi=", 5),
            ]
        );
        let nas = cfg.remote("nas").unwrap();
        assert_eq!(nas.line(), 7);
        assert_eq!(nas.get("host").unwrap().value, "10.0.0.2");
        assert!(cfg.remote("NAS").is_none(), "names are case-sensitive");
    }

    #[test]
    fn comments_blank_lines_and_spacing() {
        let cfg = parse(
            "# leading comment\n\
             ; another\n\
             \n   \t\n\
             [ r ]\n\
             \t# indented comment\n\
             a=1\n\
             b   =   two words  \n\
             c =\n\
             d = x # not a comment\n\
             e = ; not a comment either\n",
        )
        .unwrap();
        let r = cfg.remote("r").unwrap();
        assert_eq!(r.line(), 5);
        assert_eq!(
            values(r),
            [
                ("a", "1", 7),
                ("b", "two words", 8),
                ("c", "", 9),
                ("d", "x # not a comment", 10),
                ("e", "; not a comment either", 11),
            ]
        );
        assert_eq!(r.type_(), None);
    }

    #[test]
    fn separators_equals_and_colon() {
        let cfg = parse(
            "[w]\n\
             url = https://dav.example.com:8443/a?x=1\n\
             token = {\"access_token\":\"x=y\"}\n\
             user: alice\n\
             eq==\n",
        )
        .unwrap();
        let w = cfg.remote("w").unwrap();
        assert_eq!(
            values(w),
            [
                ("url", "https://dav.example.com:8443/a?x=1", 2),
                ("token", "{\"access_token\":\"x=y\"}", 3),
                ("user", "alice", 4),
                ("eq", "=", 5),
            ]
        );
    }

    #[test]
    fn quoted_values_and_keys() {
        let cfg = parse(
            "[q]\n\
             a = `has \"quotes\" and `backticks``\n\
             b = \"\"\"mixed ` and \"\"\"\n\
             c = \"kept\"\n\
             `k=1` = v\n\
             \"k:2\" = w\n\
             d = `\n",
        )
        .unwrap();
        let q = cfg.remote("q").unwrap();
        assert_eq!(
            values(q),
            [
                ("a", "has \"quotes\" and `backticks`", 2),
                ("b", "mixed ` and ", 3),
                ("c", "\"kept\"", 4),
                ("k=1", "v", 5),
                ("k:2", "w", 6),
                ("d", "`", 7),
            ]
        );
        assert_eq!(
            syntax_error("[q]\na = `open\n"),
            (2, "a = `open".into(), SyntaxReason::UnterminatedQuote)
        );
        assert_eq!(
            syntax_error("[q]\n`open = x\n"),
            (2, "`open = x".into(), SyntaxReason::UnterminatedQuote)
        );
        assert_eq!(
            syntax_error("[q]\n\"\" = x\n"),
            (2, "\"\" = x".into(), SyntaxReason::EmptyKey)
        );
    }

    #[test]
    fn duplicates_override_and_merge() {
        let cfg = parse(
            "[a]\n\
             type = s3\n\
             region = one\n\
             [b]\n\
             type = local\n\
             [a]\n\
             region = two\n\
             extra = yes\n\
             type = s3\n",
        )
        .unwrap();
        assert_eq!(cfg.remotes(), ["a", "b"]);
        let a = cfg.remote("a").unwrap();
        assert_eq!(a.line(), 1);
        assert_eq!(
            values(a),
            [("type", "s3", 9), ("region", "two", 7), ("extra", "yes", 8)]
        );
    }

    #[test]
    fn crlf_and_bom() {
        let cfg = parse("\u{feff}[r]\r\ntype = local\r\n\r\nx = 1\r\n").unwrap();
        let r = cfg.remote("r").unwrap();
        assert_eq!(values(r), [("type", "local", 2), ("x", "1", 4)]);
        // A BOM anywhere else is not special.
        assert_eq!(
            syntax_error("[r]\n\u{feff}x\n").2,
            SyntaxReason::NotKeyValue
        );
    }

    #[test]
    fn no_trailing_newline_and_empty_file() {
        let cfg = parse("[r]\ntype = local").unwrap();
        assert_eq!(cfg.remote("r").unwrap().type_(), Some("local"));
        assert!(parse("").unwrap().remotes().is_empty());
        assert!(parse("\n# only comments\n").unwrap().remotes().is_empty());
        let cfg = parse("[empty]\n").unwrap();
        assert_eq!(cfg.remotes(), ["empty"]);
        assert!(cfg.remote("empty").unwrap().options().is_empty());
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            syntax_error("type = s3\n[r]\n"),
            (1, "type = s3".into(), SyntaxReason::KeyOutsideSection)
        );
        assert_eq!(
            syntax_error("[r]\ntype = s3\njust some words\n"),
            (3, "just some words".into(), SyntaxReason::NotKeyValue)
        );
        assert_eq!(
            syntax_error("[r]\n= value\n"),
            (2, "= value".into(), SyntaxReason::NotKeyValue)
        );
        assert_eq!(
            syntax_error("\n\n[]\n"),
            (3, "[]".into(), SyntaxReason::EmptySectionName)
        );
        assert_eq!(syntax_error("[  ]\n").2, SyntaxReason::EmptySectionName);
        // An unclosed bracket is not a section header.
        assert_eq!(syntax_error("[r\n").2, SyntaxReason::NotKeyValue);
        let e = parse("[r]\r\n  junk line  \r\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/rclone.conf:2: expected `[remote]`, `key = value` or a `#`/`;` comment: junk line"
        );
    }

    #[test]
    fn encrypted_files_are_refused() {
        let encrypted = "# Encrypted rclone configuration File\n\n\
                         RCLONE_ENCRYPT_V0:\n\
                         c2VjcmV0Ym94IGRhdGEgZ29lcyBoZXJl\n";
        for text in [
            encrypted,
            "RCLONE_ENCRYPT_V0:\nabc\n",
            "\u{feff}RCLONE_ENCRYPT_V0:\nabc\n",
            "; comment\n\n  RCLONE_ENCRYPT_V1:\n",
            "# Encrypted rclone configuration File\r\n",
        ] {
            match parse(text) {
                Err(ConfigError::Encrypted { path }) => {
                    assert_eq!(path, Path::new("/etc/rclone.conf"))
                }
                other => panic!("{text:?}: expected Encrypted, got {other:?}"),
            }
        }
        // A marker after real content is just a (bad) line.
        let cfg = parse("[r]\nRCLONE_ENCRYPT_V0:\n").unwrap();
        assert_eq!(
            cfg.remote("r")
                .unwrap()
                .get("RCLONE_ENCRYPT_V0")
                .unwrap()
                .value,
            ""
        );
    }

    #[test]
    fn load_reads_files_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rclone.conf");
        fs::write(&path, "[r]\ntype = local\n").unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.path(), Some(path.as_path()));
        assert_eq!(cfg.remote("r").unwrap().type_(), Some("local"));

        let missing = dir.path().join("nope.conf");
        let e = Config::load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }));
        assert!(e
            .to_string()
            .starts_with(&format!("cannot read config file {}: ", missing.display())));

        fs::write(&path, b"[r]\ntype = local\nx = \xff\n").unwrap();
        let e = Config::load(&path).unwrap_err();
        assert!(matches!(e, ConfigError::NotUtf8 { line: 3, .. }), "{e:?}");
    }

    #[test]
    fn empty_config() {
        let cfg = Config::empty();
        assert!(cfg.remotes().is_empty());
        assert!(cfg.path().is_none());
        assert!(cfg.remote("x").is_none());
    }

    #[test]
    fn display_redacted() {
        let cfg = parse(
            "[s3]\ntype = s3\naccess_key_id = AKIA\nsecret_access_key = hunter2\n\
             session_token =\nPASS = x\n",
        )
        .unwrap();
        let s3 = cfg.remote("s3").unwrap();
        assert_eq!(
            s3.display_redacted(),
            "[s3]\ntype = s3\naccess_key_id = AKIA\nsecret_access_key = *** ENCRYPTED ***\n\
             session_token = \nPASS = *** ENCRYPTED ***\n"
        );
        assert_eq!(
            s3.display_redacted_with(&["access_key_id"]),
            "[s3]\ntype = s3\naccess_key_id = *** ENCRYPTED ***\nsecret_access_key = hunter2\n\
             session_token = \nPASS = x\n"
        );
    }
}
