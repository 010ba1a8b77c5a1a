//! [`ConfigError`], the one error type of this crate, and the reasons it
//! carries.
//!
//! Every message names what the user has to look at: the file and line, the
//! remote, the key, the environment variable.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::obscure::RevealError;
use crate::resolve::OptionSource;

/// An error reading the config, parsing a remote or resolving its options.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Io {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// The config file is not UTF-8.
    #[error("{}:{line}: config file is not valid UTF-8", .path.display())]
    NotUtf8 {
        /// The config file.
        path: PathBuf,
        /// The line (1-based) holding the first invalid byte.
        line: usize,
    },

    /// The config file was encrypted by `rclone config encryption`.
    #[error(
        "{}: encrypted rclone config files are not supported yet; decrypt it with \
         `rclone config encryption remove` or point --config at a plain copy",
        .path.display()
    )]
    Encrypted {
        /// The config file.
        path: PathBuf,
    },

    /// A line of the config file could not be parsed.
    #[error("{}:{line}: {reason}: {text}", .path.display())]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// The line's text, trimmed.
        text: String,
        /// What is wrong with it.
        reason: SyntaxReason,
    },

    /// A `remote:path` argument is malformed.
    #[error("invalid remote {input:?}: {reason}")]
    RemoteSyntax {
        /// The argument as given.
        input: String,
        /// What is wrong with it.
        reason: RemoteSyntaxError,
    },

    /// A named remote is neither in the config file nor in the environment.
    #[error("{}", unknown_remote_message(name, path.as_ref(), available))]
    UnknownRemote {
        /// The remote name.
        name: String,
        /// The config file in use, if any.
        path: Option<PathBuf>,
        /// The remotes that are defined (file sections, then remotes defined
        /// by environment variables), to help with typos.
        available: Vec<String>,
    },

    /// A remote's section has no `type` (and none comes from the
    /// environment or a connection string).
    #[error(
        "{}:{line}: remote {name:?} has no `type` option (set `type = ...` in its \
         section, FERRY_CONFIG_<REMOTE>_TYPE, or `{name},type=...:`)",
        .path.display()
    )]
    MissingType {
        /// The remote name.
        name: String,
        /// The config file.
        path: PathBuf,
        /// The line of the section header `[name]`.
        line: usize,
    },

    /// An option's value is not an obscured value (see [`mod@crate::obscure`]).
    #[error("remote {remote:?}: option `{key}` (from {from}) cannot be revealed: {reason}")]
    Reveal {
        /// The remote name.
        remote: String,
        /// The option name.
        key: String,
        /// Where the value came from.
        from: OptionSource,
        /// Why it cannot be revealed.
        #[source]
        reason: RevealError,
    },
}

fn unknown_remote_message(name: &str, path: Option<&PathBuf>, available: &[String]) -> String {
    let mut msg = match path {
        Some(path) => format!(
            "remote {name:?} not found in config file {}",
            path.display()
        ),
        None => format!("remote {name:?} not found: no config file is in use"),
    };
    if available.is_empty() {
        msg.push_str(" (no remotes are defined)");
    } else {
        msg.push_str(" (defined remotes: ");
        msg.push_str(&available.join(", "));
        msg.push(')');
    }
    msg
}

/// Why a config file line could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntaxReason {
    /// Neither a `[section]`, a `key = value` (or `key: value`), a comment
    /// nor a blank line.
    NotKeyValue,
    /// A `key = value` line before the first `[section]`.
    KeyOutsideSection,
    /// A `[]` section header.
    EmptySectionName,
    /// A quoted key that is empty (`"" = value`).
    EmptyKey,
    /// A key or value opened with `` ` ``, `"` or `"""` but not closed on
    /// the same line.
    UnterminatedQuote,
}

impl fmt::Display for SyntaxReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyntaxReason::NotKeyValue => "expected `[remote]`, `key = value` or a `#`/`;` comment",
            SyntaxReason::KeyOutsideSection => "option outside any `[remote]` section",
            SyntaxReason::EmptySectionName => "empty section name",
            SyntaxReason::EmptyKey => "empty option name",
            SyntaxReason::UnterminatedQuote => "unterminated quote",
        })
    }
}

/// Why a `remote:path` argument is malformed. The messages follow rclone's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteSyntaxError {
    /// The argument is empty.
    Empty,
    /// The remote (or on-the-fly type) name has characters rclone does not
    /// allow.
    InvalidName {
        /// The offending name (for `:type`, including the colon).
        name: String,
    },
    /// `:` or `::` with no name.
    EmptyName,
    /// A lone `:` (nothing follows the on-the-fly marker).
    MissingColon,
    /// A connection-string key with characters other than `0-9A-Za-z_.`.
    BadKey,
    /// An empty connection-string key (`remote,,x=1:` or `remote,=1:`).
    EmptyKey,
    /// The argument ends inside a key.
    KeyEnd,
    /// The argument ends inside an unquoted value.
    ValueEnd,
    /// A quoted value is not closed.
    UnterminatedQuote,
    /// Something other than `,`, `:` or a doubled quote follows a closing
    /// quote.
    AfterQuote,
}

impl fmt::Display for RemoteSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteSyntaxError::Empty => f.write_str("can't use empty string as a path"),
            RemoteSyntaxError::InvalidName { name } => write!(
                f,
                "config name {name:?} contains invalid characters - may only contain \
                 numbers, letters, `_`, `-`, `.`, `+`, `@` and space, while not start \
                 with `-` or space, and not end with space"
            ),
            RemoteSyntaxError::EmptyName => f.write_str("config name can't be empty"),
            RemoteSyntaxError::MissingColon => f.write_str("config name needs a trailing `:`"),
            RemoteSyntaxError::BadKey => {
                f.write_str("config parameters may only contain `0-9`, `A-Z`, `a-z`, `_` and `.`")
            }
            RemoteSyntaxError::EmptyKey => f.write_str("config parameters can't be empty"),
            RemoteSyntaxError::KeyEnd => f.write_str("config parameter must end with `,` or `:`"),
            RemoteSyntaxError::ValueEnd => {
                f.write_str("unquoted config value must end with `,` or `:`")
            }
            RemoteSyntaxError::UnterminatedQuote => f.write_str("unterminated quoted config value"),
            RemoteSyntaxError::AfterQuote => {
                f.write_str("expecting `:` or `,` or another quote after a quote")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("/home/u/.config/rclone/rclone.conf")
    }

    #[test]
    fn io_message() {
        let e = ConfigError::Io {
            path: p(),
            source: io::Error::new(io::ErrorKind::NotFound, "No such file or directory"),
        };
        assert_eq!(
            e.to_string(),
            "cannot read config file /home/u/.config/rclone/rclone.conf: No such file or directory"
        );
    }

    #[test]
    fn not_utf8_message() {
        let e = ConfigError::NotUtf8 { path: p(), line: 7 };
        assert_eq!(
            e.to_string(),
            "/home/u/.config/rclone/rclone.conf:7: config file is not valid UTF-8"
        );
    }

    #[test]
    fn encrypted_message() {
        let e = ConfigError::Encrypted { path: p() };
        assert_eq!(
            e.to_string(),
            "/home/u/.config/rclone/rclone.conf: encrypted rclone config files are not \
             supported yet; decrypt it with `rclone config encryption remove` or point \
             --config at a plain copy"
        );
    }

    #[test]
    fn syntax_messages() {
        let cases = [
            (
                SyntaxReason::NotKeyValue,
                "expected `[remote]`, `key = value` or a `#`/`;` comment",
            ),
            (
                SyntaxReason::KeyOutsideSection,
                "option outside any `[remote]` section",
            ),
            (SyntaxReason::EmptySectionName, "empty section name"),
            (SyntaxReason::EmptyKey, "empty option name"),
            (SyntaxReason::UnterminatedQuote, "unterminated quote"),
        ];
        for (reason, text) in cases {
            let e = ConfigError::Syntax {
                path: p(),
                line: 3,
                text: "garbage".into(),
                reason,
            };
            assert_eq!(
                e.to_string(),
                format!("/home/u/.config/rclone/rclone.conf:3: {text}: garbage")
            );
        }
    }

    #[test]
    fn remote_syntax_messages() {
        let cases = [
            (RemoteSyntaxError::Empty, "can't use empty string as a path"),
            (
                RemoteSyntaxError::InvalidName { name: "a!b".into() },
                "config name \"a!b\" contains invalid characters - may only contain \
                 numbers, letters, `_`, `-`, `.`, `+`, `@` and space, while not start \
                 with `-` or space, and not end with space",
            ),
            (RemoteSyntaxError::EmptyName, "config name can't be empty"),
            (
                RemoteSyntaxError::MissingColon,
                "config name needs a trailing `:`",
            ),
            (
                RemoteSyntaxError::BadKey,
                "config parameters may only contain `0-9`, `A-Z`, `a-z`, `_` and `.`",
            ),
            (
                RemoteSyntaxError::EmptyKey,
                "config parameters can't be empty",
            ),
            (
                RemoteSyntaxError::KeyEnd,
                "config parameter must end with `,` or `:`",
            ),
            (
                RemoteSyntaxError::ValueEnd,
                "unquoted config value must end with `,` or `:`",
            ),
            (
                RemoteSyntaxError::UnterminatedQuote,
                "unterminated quoted config value",
            ),
            (
                RemoteSyntaxError::AfterQuote,
                "expecting `:` or `,` or another quote after a quote",
            ),
        ];
        for (reason, text) in cases {
            let e = ConfigError::RemoteSyntax {
                input: "x,y:z".into(),
                reason,
            };
            assert_eq!(e.to_string(), format!("invalid remote \"x,y:z\": {text}"));
        }
    }

    #[test]
    fn unknown_remote_messages() {
        let e = ConfigError::UnknownRemote {
            name: "s4".into(),
            path: Some(p()),
            available: vec!["s3".into(), "box".into()],
        };
        assert_eq!(
            e.to_string(),
            "remote \"s4\" not found in config file /home/u/.config/rclone/rclone.conf \
             (defined remotes: s3, box)"
        );
        let e = ConfigError::UnknownRemote {
            name: "s4".into(),
            path: None,
            available: vec![],
        };
        assert_eq!(
            e.to_string(),
            "remote \"s4\" not found: no config file is in use (no remotes are defined)"
        );
    }

    #[test]
    fn missing_type_message() {
        let e = ConfigError::MissingType {
            name: "s3".into(),
            path: p(),
            line: 12,
        };
        assert_eq!(
            e.to_string(),
            "/home/u/.config/rclone/rclone.conf:12: remote \"s3\" has no `type` option \
             (set `type = ...` in its section, FERRY_CONFIG_<REMOTE>_TYPE, or `s3,type=...:`)"
        );
    }

    #[test]
    fn reveal_messages() {
        let e = ConfigError::Reveal {
            remote: "sftp1".into(),
            key: "pass".into(),
            from: OptionSource::File { path: p(), line: 5 },
            reason: RevealError::TooShort,
        };
        assert_eq!(
            e.to_string(),
            "remote \"sftp1\": option `pass` (from /home/u/.config/rclone/rclone.conf:5) \
             cannot be revealed: input too short when revealing password - is it obscured?"
        );
        let e = ConfigError::Reveal {
            remote: "sftp1".into(),
            key: "pass".into(),
            from: OptionSource::Env {
                var: "FERRY_CONFIG_SFTP1_PASS".into(),
            },
            reason: RevealError::TooShort,
        };
        assert_eq!(
            e.to_string(),
            "remote \"sftp1\": option `pass` (from environment variable \
             FERRY_CONFIG_SFTP1_PASS) cannot be revealed: input too short when revealing \
             password - is it obscured?"
        );
        let e = ConfigError::Reveal {
            remote: ":sftp".into(),
            key: "pass".into(),
            from: OptionSource::ConnectionString,
            reason: RevealError::NotUtf8,
        };
        assert_eq!(
            e.to_string(),
            "remote \":sftp\": option `pass` (from the connection string) cannot be \
             revealed: revealed password is not valid UTF-8 - is it obscured?"
        );
    }
}
