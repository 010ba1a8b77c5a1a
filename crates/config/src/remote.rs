//! rclone's remote syntax: [`parse_remote`] and [`RemoteSpec`].
//!
//! # Forms
//! - `PATH`: a local path. An argument is local when it has no `:`, or when
//!   a `/` (or `\`) comes before the first `:` or `,`: `/a:b`, `./x:y`,
//!   `dir/f:1` and `C` are local.
//! - `NAME:PATH`: the remote `NAME` from the config file or environment.
//! - `:TYPE:PATH`: an on-the-fly remote of backend type `TYPE`, configured
//!   only by its connection string.
//! - `NAME,k=v,k2=v2:PATH` and `:TYPE,k=v:PATH`: options that override the
//!   remote's configuration (rclone's connection strings).
//!
//! Unix rules apply: `C:\x` is the remote `C` with path `\x` (rclone treats
//! single-letter drives specially on Windows only).
//!
//! # Names
//! A remote or type name may hold Unicode letters and digits, `_`, `.`,
//! `+`, `@`, `-` and space, but may not start with `-` or space nor end with
//! space (rclone's rule). rclone's current pattern also happens to refuse a
//! name like `a-` (one trailing `-` after the first word) while rclone 1.60
//! accepts it; Ferry accepts it, so no existing remote name is locked out.
//!
//! # Connection strings
//! Keys are made of `0-9A-Za-z_.`. A key without `=value` means `true`. A
//! value runs to the next `,` or `:`; to hold those, quote the whole value
//! with `'` or `"`, doubling the quote character to include it:
//! `remote,user='it''s',pass="a:b":path`. A quote inside an unquoted value
//! (not at its start) is an ordinary character.

use std::fmt;

use crate::error::{ConfigError, RemoteSyntaxError};

/// A parsed `remote:path` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// Local path, named remote or on-the-fly backend.
    pub kind: RemoteKind,
    /// Connection-string options, in order (a later key overrides an
    /// earlier one when resolved). Empty for local paths.
    pub overrides: Vec<(String, String)>,
    /// The path within the remote (for local, the whole argument). May be
    /// empty (`remote:`).
    pub path: String,
}

/// What a [`RemoteSpec`] refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteKind {
    /// A path on the local file system.
    Local,
    /// A remote defined in the config file or environment, by name.
    Named(String),
    /// An on-the-fly remote (`:TYPE:`), by backend type.
    OnTheFly(String),
}

impl fmt::Display for RemoteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteKind::Local => f.write_str("local"),
            RemoteKind::Named(name) => f.write_str(name),
            RemoteKind::OnTheFly(type_) => write!(f, ":{type_}"),
        }
    }
}

/// Parses a command-line `remote:path` argument, as rclone's `fspath`
/// does (see the module docs).
pub fn parse_remote(input: &str) -> Result<RemoteSpec, ConfigError> {
    parse(input).map_err(|reason| ConfigError::RemoteSyntax {
        input: input.to_string(),
        reason,
    })
}

fn parse(input: &str) -> Result<RemoteSpec, RemoteSyntaxError> {
    let local = || RemoteSpec {
        kind: RemoteKind::Local,
        overrides: Vec::new(),
        path: input.to_string(),
    };
    if input.is_empty() {
        return Err(RemoteSyntaxError::Empty);
    }
    if !input.contains(':') {
        return Ok(local());
    }
    let on_the_fly = input.starts_with(':');
    let body = if on_the_fly { &input[1..] } else { input };
    let end = body
        .find([':', ',', '/', '\\'])
        .ok_or(RemoteSyntaxError::MissingColon)?;
    let name = &body[..end];
    let full_name = || {
        if on_the_fly {
            format!(":{name}")
        } else {
            name.to_string()
        }
    };
    let rest = &body[end + 1..];
    let path = match body.as_bytes()[end] {
        // A separator before any `:` or `,`: a local path that happens to
        // contain a colon, unless it was meant to be on-the-fly.
        b'/' | b'\\' if on_the_fly => {
            return Err(RemoteSyntaxError::InvalidName { name: full_name() })
        }
        b'/' | b'\\' => return Ok(local()),
        _ if name.is_empty() => return Err(RemoteSyntaxError::EmptyName),
        _ if !valid_name(name) => return Err(RemoteSyntaxError::InvalidName { name: full_name() }),
        b',' => None,
        _ => Some(rest),
    };
    let mut overrides = Vec::new();
    let path = match path {
        Some(path) => path,
        None => parse_params(rest, &mut overrides)?,
    };
    let kind = if on_the_fly {
        RemoteKind::OnTheFly(name.to_string())
    } else {
        RemoteKind::Named(name.to_string())
    };
    Ok(RemoteSpec {
        kind,
        overrides,
        path: path.to_string(),
    })
}

/// Whether `name` is a valid remote or type name (see the module docs).
fn valid_name(name: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || matches!(c, '_' | '.' | '+' | '@');
    let Some(first) = name.chars().next() else {
        return false;
    };
    if !word(first) || name.ends_with(' ') {
        return false;
    }
    name.chars().all(|c| word(c) || c == '-' || c == ' ')
}

/// Parses `k=v,k2,k3='q':` up to and including the `:`, returning the
/// rest (the path).
fn parse_params<'a>(
    s: &'a str,
    out: &mut Vec<(String, String)>,
) -> Result<&'a str, RemoteSyntaxError> {
    enum State {
        Key,
        Value,
        Quoted(char),
        AfterQuote(char),
    }
    let mut state = State::Key;
    let mut start = 0; // start of the current key or value
    let mut key = "";
    for (i, c) in s.char_indices() {
        match state {
            State::Key => {
                if matches!(c, ':' | ',' | '=') {
                    key = &s[start..i];
                    if key.is_empty() {
                        return Err(RemoteSyntaxError::EmptyKey);
                    }
                    start = i + 1;
                    if c == '=' {
                        state = State::Value;
                        continue;
                    }
                    out.push((key.to_string(), "true".to_string()));
                    if c == ':' {
                        return Ok(&s[i + 1..]);
                    }
                } else if !(c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                    return Err(RemoteSyntaxError::BadKey);
                }
            }
            State::Value => {
                if matches!(c, '\'' | '"') && i == start {
                    state = State::Quoted(c);
                    start = i + 1;
                } else if matches!(c, ':' | ',') {
                    out.push((key.to_string(), s[start..i].to_string()));
                    start = i + 1;
                    if c == ':' {
                        return Ok(&s[i + 1..]);
                    }
                    state = State::Key;
                }
            }
            State::Quoted(q) => {
                if c == q {
                    state = State::AfterQuote(q);
                }
            }
            State::AfterQuote(q) => {
                if matches!(c, ':' | ',') {
                    // `i - 1` is the closing quote (one byte).
                    let doubled: String = [q, q].iter().collect();
                    let value = s[start..i - 1].replace(&doubled, &q.to_string());
                    out.push((key.to_string(), value));
                    start = i + 1;
                    if c == ':' {
                        return Ok(&s[i + 1..]);
                    }
                    state = State::Key;
                } else if c == q {
                    // A doubled quote: a literal quote, still inside.
                    state = State::Quoted(q);
                } else {
                    return Err(RemoteSyntaxError::AfterQuote);
                }
            }
        }
    }
    Err(match state {
        State::Key => RemoteSyntaxError::KeyEnd,
        State::Value => RemoteSyntaxError::ValueEnd,
        State::Quoted(_) => RemoteSyntaxError::UnterminatedQuote,
        State::AfterQuote(_) => RemoteSyntaxError::AfterQuote,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> RemoteSpec {
        parse_remote(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> RemoteSyntaxError {
        match parse_remote(s) {
            Err(ConfigError::RemoteSyntax { input, reason }) => {
                assert_eq!(input, s);
                reason
            }
            other => panic!("{s:?}: expected a syntax error, got {other:?}"),
        }
    }

    fn named(name: &str, overrides: &[(&str, &str)], path: &str) -> RemoteSpec {
        RemoteSpec {
            kind: RemoteKind::Named(name.into()),
            overrides: pairs(overrides),
            path: path.into(),
        }
    }

    fn fly(type_: &str, overrides: &[(&str, &str)], path: &str) -> RemoteSpec {
        RemoteSpec {
            kind: RemoteKind::OnTheFly(type_.into()),
            overrides: pairs(overrides),
            path: path.into(),
        }
    }

    fn local(path: &str) -> RemoteSpec {
        RemoteSpec {
            kind: RemoteKind::Local,
            overrides: vec![],
            path: path.into(),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn local_paths() {
        for s in [
            "C",
            "/abs/path",
            "rel/path",
            ".",
            "/a:b",
            "./x:y",
            "dir/f:1",
            "a\\b:c",
            "/srv/x,y:z",
            "file with spaces",
        ] {
            assert_eq!(ok(s), local(s), "{s:?}");
        }
    }

    #[test]
    fn named_remotes() {
        assert_eq!(ok("s3:bucket/dir"), named("s3", &[], "bucket/dir"));
        assert_eq!(ok("s3:"), named("s3", &[], ""));
        assert_eq!(ok("s3:/abs"), named("s3", &[], "/abs"));
        assert_eq!(ok("s3:a:b"), named("s3", &[], "a:b"));
        assert_eq!(ok("my remote:x"), named("my remote", &[], "x"));
        assert_eq!(ok("a-b.c+d@e_f:x"), named("a-b.c+d@e_f", &[], "x"));
        assert_eq!(ok("ünï:x"), named("ünï", &[], "x"));
        assert_eq!(ok(".hidden:x"), named(".hidden", &[], "x"));
        assert_eq!(ok("a--:x"), named("a--", &[], "x"));
        assert_eq!(ok("a-b-:x"), named("a-b-", &[], "x"));
        assert_eq!(ok("a-:x"), named("a-", &[], "x"));
        // Unix rules: a drive letter is just a one-letter remote.
        assert_eq!(ok("C:\\x"), named("C", &[], "\\x"));
        assert_eq!(ok("C:"), named("C", &[], ""));
    }

    #[test]
    fn on_the_fly_remotes() {
        assert_eq!(ok(":s3:bucket"), fly("s3", &[], "bucket"));
        assert_eq!(ok(":local:/tmp"), fly("local", &[], "/tmp"));
        assert_eq!(
            ok(":sftp,host=example.com,user=me:dir/f"),
            fly("sftp", &[("host", "example.com"), ("user", "me")], "dir/f")
        );
        assert_eq!(ok(":memory:"), fly("memory", &[], ""));
        assert_eq!(ok(":s3,flag:"), fly("s3", &[("flag", "true")], ""));
    }

    #[test]
    fn overrides_on_named_remotes() {
        assert_eq!(
            ok("s3,region=eu-west-1,acl=private:bucket"),
            named(
                "s3",
                &[("region", "eu-west-1"), ("acl", "private")],
                "bucket"
            )
        );
        // A key without a value means true; values may be empty or hold `=`.
        assert_eq!(
            ok("r,flag,v=,e=a=b:p"),
            named("r", &[("flag", "true"), ("v", ""), ("e", "a=b")], "p")
        );
        assert_eq!(ok("r,last:"), named("r", &[("last", "true")], ""));
        // Repeated keys are kept in order.
        assert_eq!(ok("r,a=1,a=2:"), named("r", &[("a", "1"), ("a", "2")], ""));
        // Keys may hold dots and underscores.
        assert_eq!(
            ok("r,global.x_y=1:"),
            named("r", &[("global.x_y", "1")], "")
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(
            ok("r,a='x,y:z',b=\"p:q\":path"),
            named("r", &[("a", "x,y:z"), ("b", "p:q")], "path")
        );
        assert_eq!(
            ok("r,a='it''s',b=\"say \"\"hi\"\"\":p"),
            named("r", &[("a", "it's"), ("b", "say \"hi\"")], "p")
        );
        assert_eq!(ok("r,a='':p"), named("r", &[("a", "")], "p"));
        assert_eq!(ok("r,a='''':p"), named("r", &[("a", "'")], "p"));
        // The other quote character is ordinary inside quotes.
        assert_eq!(ok("r,a='\"':p"), named("r", &[("a", "\"")], "p"));
        // A quote not at the start of a value is an ordinary character.
        assert_eq!(ok("r,a=it's:p"), named("r", &[("a", "it's")], "p"));
        assert_eq!(
            ok(":sftp,pass='a,b':/"),
            fly("sftp", &[("pass", "a,b")], "/")
        );
    }

    #[test]
    fn errors() {
        use RemoteSyntaxError::*;
        assert_eq!(err(""), Empty);
        assert_eq!(err(":"), MissingColon);
        assert_eq!(err(":s3"), MissingColon);
        assert_eq!(err("::x"), EmptyName);
        assert_eq!(err(",a=1:x"), EmptyName);
        assert_eq!(err(":,a=1:x"), EmptyName);
        assert_eq!(err(":s3/x:y"), InvalidName { name: ":s3".into() });
        assert_eq!(err("a!b:x"), InvalidName { name: "a!b".into() });
        assert_eq!(err("-a:x"), InvalidName { name: "-a".into() });
        assert_eq!(err(" a:x"), InvalidName { name: " a".into() });
        assert_eq!(err("a :x"), InvalidName { name: "a ".into() });
        assert_eq!(
            err(":s 3!:x"),
            InvalidName {
                name: ":s 3!".into()
            }
        );
        assert_eq!(err("r,:x"), EmptyKey);
        assert_eq!(err("r,,a:x"), EmptyKey);
        assert_eq!(err("r,=1:x"), EmptyKey);
        assert_eq!(err(":memory,:"), EmptyKey);
        assert_eq!(err("r,a-b=1:x"), BadKey);
        assert_eq!(err("r,a/b:x"), BadKey);
        // Without a `:` the argument is a local path, so these need a
        // quoted colon to get that far.
        assert_eq!(ok("r,abc"), local("r,abc"));
        assert_eq!(err("r,a=':',bc"), KeyEnd);
        assert_eq!(err("r,a=':',b=1"), ValueEnd);
        assert_eq!(err("r,a='open:x"), UnterminatedQuote);
        assert_eq!(err("r,a='it''s:x"), UnterminatedQuote);
        assert_eq!(err("r,a='x'y:z"), AfterQuote);
        assert_eq!(err("r,a=':'"), AfterQuote);
        let e = parse_remote("r,a='open:x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid remote \"r,a='open:x\": unterminated quoted config value"
        );
    }

    #[test]
    fn kind_display() {
        assert_eq!(RemoteKind::Local.to_string(), "local");
        assert_eq!(RemoteKind::Named("s3".into()).to_string(), "s3");
        assert_eq!(RemoteKind::OnTheFly("s3".into()).to_string(), ":s3");
    }
}
