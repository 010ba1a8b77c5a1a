//! Option resolution: [`resolve`] turns a [`RemoteSpec`] into a
//! [`ResolvedRemote`], and redaction hides its secrets for display.
//!
//! # Precedence
//! From lowest to highest, a later source overriding an earlier one:
//!
//! 1. the remote's section of the config file (an empty value there counts
//!    as unset, as in rclone);
//! 2. `FERRY_CONFIG_<REMOTE>_<KEY>` environment variables (see
//!    [`crate::env`]; an empty value there does set the option to empty,
//!    as in rclone);
//! 3. the connection string (`remote,key=value:`).
//!
//! The `type` comes from the same sources, so a remote may live in the
//! environment alone (`FERRY_CONFIG_MYS3_TYPE=s3`) or even in a connection
//! string (`mys3,type=s3:`), as rclone allows. On-the-fly remotes
//! (`:type,key=value:`) take their type from the name and their options
//! from the connection string only (a `type` key there is ignored);
//! rclone's backend-wide `RCLONE_<TYPE>_<KEY>` variables are not read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::error::ConfigError;
use crate::file::Config;
use crate::obscure::reveal;
use crate::remote::{RemoteKind, RemoteSpec};

/// What a secret is replaced with for display (what rclone shows for
/// obscured values).
pub const REDACTED: &str = "*** ENCRYPTED ***";

/// The option names treated as secret when no list is given: rclone's
/// obscured and sensitive options across the supported backends.
pub const DEFAULT_SECRET_KEYS: &[&str] = &[
    "pass",
    "password",
    "secret_access_key",
    "session_token",
    "key_file_pass",
    "client_secret",
    "token",
    "sas_url",
    "account_key",
    "bearer_token",
    "key_pem",
];

/// Where an option's value came from; shown in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionSource {
    /// A line of the config file.
    File {
        /// The config file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
    },
    /// An environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// The connection string of the `remote,key=value:path` argument.
    ConnectionString,
    /// Not recorded (a [`ResolvedRemote`] built by hand).
    Unknown,
}

impl fmt::Display for OptionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionSource::File { path, line } => write!(f, "{}:{line}", path.display()),
            OptionSource::Env { var } => write!(f, "environment variable {var}"),
            OptionSource::ConnectionString => f.write_str("the connection string"),
            OptionSource::Unknown => f.write_str("an unknown source"),
        }
    }
}

/// A remote with its options merged from all sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRemote {
    /// The remote name; `:type` for an on-the-fly remote, `local` for a
    /// local path.
    pub name: String,
    /// The backend type (`s3`, `sftp`, `local`, ...), as written.
    pub type_: String,
    /// The options, without `type`. Values are as written: obscured
    /// secrets are still obscured (see [`ResolvedRemote::reveal_option`]).
    pub options: BTreeMap<String, String>,
    /// The path within the remote.
    pub path: String,
    /// Where each option (and `type`, for a named remote) came from.
    pub source: BTreeMap<String, OptionSource>,
}

/// Resolves `spec` against the config file and the environment (see the
/// module docs for the precedence).
///
/// Errors: [`ConfigError::UnknownRemote`] when a named remote has no
/// section, no `FERRY_CONFIG_<NAME>_TYPE` and no `type` in its connection
/// string; [`ConfigError::MissingType`] when it has a section but no type
/// from any source.
pub fn resolve(spec: &RemoteSpec, cfg: &Config, env: &Env) -> Result<ResolvedRemote, ConfigError> {
    let mut remote = ResolvedRemote {
        name: spec.kind.to_string(),
        type_: String::new(),
        options: BTreeMap::new(),
        path: spec.path.clone(),
        source: BTreeMap::new(),
    };
    match &spec.kind {
        RemoteKind::Local => remote.type_ = "local".to_string(),
        RemoteKind::OnTheFly(type_) => remote.type_ = type_.clone(),
        RemoteKind::Named(name) => {
            let section = cfg.remote(name);
            if let Some(section) = section {
                let path = cfg.path().map(Path::to_path_buf).unwrap_or_default();
                for entry in section.options().iter().filter(|e| !e.value.is_empty()) {
                    let from = OptionSource::File {
                        path: path.clone(),
                        line: entry.line,
                    };
                    remote.set(&entry.key, &entry.value, from);
                }
            }
            let known = known_remotes(cfg, env);
            let others: Vec<&str> = known.iter().map(String::as_str).collect();
            for (key, var, value) in env.options_for(name, &others) {
                remote.set(&key, &value, OptionSource::Env { var });
            }
            for (key, value) in &spec.overrides {
                remote.set(key, value, OptionSource::ConnectionString);
            }
            match remote.options.remove("type").filter(|t| !t.is_empty()) {
                Some(type_) => remote.type_ = type_,
                None => {
                    return Err(match section {
                        Some(section) => ConfigError::MissingType {
                            name: name.clone(),
                            path: cfg.path().map(Path::to_path_buf).unwrap_or_default(),
                            line: section.line(),
                        },
                        None => ConfigError::UnknownRemote {
                            name: name.clone(),
                            path: cfg.path().map(Path::to_path_buf),
                            available: known,
                        },
                    })
                }
            }
            return Ok(remote);
        }
    }
    for (key, value) in spec.overrides.iter().filter(|(k, _)| k != "type") {
        remote.set(key, value, OptionSource::ConnectionString);
    }
    Ok(remote)
}

/// The config file's sections, then the remotes defined only in the
/// environment.
fn known_remotes(cfg: &Config, env: &Env) -> Vec<String> {
    let mut names: Vec<String> = cfg.remotes().into_iter().map(str::to_string).collect();
    for (name, _) in env.remotes() {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            names.push(name);
        }
    }
    names
}

impl ResolvedRemote {
    /// The value of option `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// Reveals option `key`, which holds an obscured secret (such as an
    /// sftp `pass`). `Ok(None)` when the option is unset or empty (rclone
    /// treats an empty obscured option as unset). The error names the
    /// remote, the key and where the value came from.
    pub fn reveal_option(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(value) = self.options.get(key).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        reveal(value)
            .map(Some)
            .map_err(|reason| ConfigError::Reveal {
                remote: self.name.clone(),
                key: key.to_string(),
                from: self
                    .source
                    .get(key)
                    .cloned()
                    .unwrap_or(OptionSource::Unknown),
                reason,
            })
    }

    /// A copy with the (non-empty) values of [`DEFAULT_SECRET_KEYS`]
    /// replaced by [`REDACTED`], for `ferry config show`.
    pub fn redacted(&self) -> ResolvedRemote {
        self.redacted_with(DEFAULT_SECRET_KEYS)
    }

    /// A copy with the (non-empty) values of `secret_keys` (compared
    /// ignoring ASCII case) replaced by [`REDACTED`].
    pub fn redacted_with(&self, secret_keys: &[&str]) -> ResolvedRemote {
        let mut copy = self.clone();
        for (key, value) in copy.options.iter_mut() {
            if !value.is_empty() && is_secret(key, secret_keys) {
                *value = REDACTED.to_string();
            }
        }
        copy
    }

    fn set(&mut self, key: &str, value: &str, from: OptionSource) {
        self.options.insert(key.to_string(), value.to_string());
        self.source.insert(key.to_string(), from);
    }
}

/// Whether `key` is one of `secret_keys`, ignoring ASCII case.
pub(crate) fn is_secret(key: &str, secret_keys: &[&str]) -> bool {
    secret_keys.iter().any(|s| s.eq_ignore_ascii_case(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obscure::obscure;
    use crate::remote::parse_remote;
    use crate::RevealError;

    const PATH: &str = "/home/u/.config/rclone/rclone.conf";

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new(PATH)).unwrap()
    }

    fn file(line: usize) -> OptionSource {
        OptionSource::File {
            path: PathBuf::from(PATH),
            line,
        }
    }

    fn env_src(var: &str) -> OptionSource {
        OptionSource::Env { var: var.into() }
    }

    fn run(arg: &str, cfg: &Config, env: &Env) -> Result<ResolvedRemote, ConfigError> {
        resolve(&parse_remote(arg).unwrap(), cfg, env)
    }

    const CONF: &str = "\
[s3]
type = s3
region = us-east-1
endpoint =
acl = private

[nas]
type = sftp
host = nas.lan
pass = YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ
key_file_pass = plain text!

[typeless]
host = x
";

    #[test]
    fn file_only() {
        let r = run("s3:bucket/dir", &config(CONF), &Env::default()).unwrap();
        assert_eq!(r.name, "s3");
        assert_eq!(r.type_, "s3");
        assert_eq!(r.path, "bucket/dir");
        assert_eq!(
            r.options,
            BTreeMap::from([
                ("acl".to_string(), "private".to_string()),
                ("region".to_string(), "us-east-1".to_string()),
            ]),
            "type is not an option; the empty endpoint is unset"
        );
        assert_eq!(r.source["region"], file(3));
        assert_eq!(r.source["type"], file(2));
        assert_eq!(r.get("acl"), Some("private"));
        assert_eq!(r.get("endpoint"), None);
    }

    #[test]
    fn env_overrides_file_and_connection_string_overrides_env() {
        let env = Env::from_pairs([
            ("FERRY_CONFIG_S3_REGION", "eu-west-1"),
            ("FERRY_CONFIG_S3_ACL", "public-read"),
            ("FERRY_CONFIG_S3_ENDPOINT", "http://127.0.0.1:3900"),
            ("FERRY_CONFIG_NAS_HOST", "not for s3"),
        ]);
        let r = run("s3,acl=bucket-owner-full-control:b", &config(CONF), &env).unwrap();
        assert_eq!(r.get("region"), Some("eu-west-1"));
        assert_eq!(r.source["region"], env_src("FERRY_CONFIG_S3_REGION"));
        assert_eq!(r.get("endpoint"), Some("http://127.0.0.1:3900"));
        assert_eq!(r.get("acl"), Some("bucket-owner-full-control"));
        assert_eq!(r.source["acl"], OptionSource::ConnectionString);
        assert_eq!(r.get("host"), None);
        assert_eq!(r.source["type"], file(2));
    }

    #[test]
    fn env_empty_value_sets_empty() {
        let env = Env::from_pairs([("FERRY_CONFIG_S3_REGION", "")]);
        let r = run("s3:", &config(CONF), &env).unwrap();
        assert_eq!(r.get("region"), Some(""));
    }

    #[test]
    fn env_name_is_upper_cased() {
        let cfg = config("[My-S3]\ntype = s3\n");
        let env = Env::from_pairs([("FERRY_CONFIG_MY-S3_ACCESS_KEY_ID", "AKIA")]);
        let r = run("My-S3:", &cfg, &env).unwrap();
        assert_eq!(r.get("access_key_id"), Some("AKIA"));
    }

    #[test]
    fn remote_defined_by_env_only() {
        let env = Env::from_pairs([
            ("FERRY_CONFIG_MYS3_TYPE", "s3"),
            ("FERRY_CONFIG_MYS3_PROVIDER", "Minio"),
        ]);
        for cfg in [Config::empty(), config(CONF)] {
            let r = run("mys3:bucket", &cfg, &env).unwrap();
            assert_eq!(r.name, "mys3");
            assert_eq!(r.type_, "s3");
            assert_eq!(r.get("provider"), Some("Minio"));
            assert_eq!(r.source["type"], env_src("FERRY_CONFIG_MYS3_TYPE"));
        }
    }

    #[test]
    fn env_type_overrides_file_type() {
        let env = Env::from_pairs([("FERRY_CONFIG_NAS_TYPE", "webdav")]);
        let r = run("nas:", &config(CONF), &env).unwrap();
        assert_eq!(r.type_, "webdav");
    }

    #[test]
    fn remote_defined_by_connection_string_type() {
        let r = run("adhoc,type=memory:x", &Config::empty(), &Env::default()).unwrap();
        assert_eq!(r.type_, "memory");
        assert_eq!(r.source["type"], OptionSource::ConnectionString);
        assert!(r.options.is_empty());
    }

    #[test]
    fn variables_of_a_longer_remote_name_are_not_taken() {
        let cfg = config("[a]\ntype = local\n[a_b]\ntype = s3\n");
        let env = Env::from_pairs([("FERRY_CONFIG_A_B_REGION", "eu")]);
        let a = run("a:", &cfg, &env).unwrap();
        assert!(a.options.is_empty(), "{:?}", a.options);
        let ab = run("a_b:", &cfg, &env).unwrap();
        assert_eq!(ab.get("region"), Some("eu"));
    }

    #[test]
    fn on_the_fly_and_local() {
        let env = Env::from_pairs([("FERRY_CONFIG_:SFTP_HOST", "ignored")]);
        let r = run(":sftp,host=h,user=u,type=s3:dir", &config(CONF), &env).unwrap();
        assert_eq!(r.name, ":sftp");
        assert_eq!(r.type_, "sftp");
        assert_eq!(r.path, "dir");
        assert_eq!(
            r.options,
            BTreeMap::from([
                ("host".to_string(), "h".to_string()),
                ("user".to_string(), "u".to_string()),
            ])
        );
        assert_eq!(r.source["host"], OptionSource::ConnectionString);

        let r = run("/srv/data", &config(CONF), &env).unwrap();
        assert_eq!(r.name, "local");
        assert_eq!(r.type_, "local");
        assert_eq!(r.path, "/srv/data");
        assert!(r.options.is_empty());
    }

    #[test]
    fn unknown_remote() {
        let env = Env::from_pairs([("FERRY_CONFIG_ENVONE_TYPE", "s3")]);
        let e = run("s4:x", &config(CONF), &env).unwrap_err();
        match &e {
            ConfigError::UnknownRemote {
                name,
                path,
                available,
            } => {
                assert_eq!(name, "s4");
                assert_eq!(path.as_deref(), Some(Path::new(PATH)));
                assert_eq!(available, &["s3", "nas", "typeless", "envone"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            format!(
                "remote \"s4\" not found in config file {PATH} \
                 (defined remotes: s3, nas, typeless, envone)"
            )
        );
        // Options in the environment without a type do not define a remote.
        let env = Env::from_pairs([("FERRY_CONFIG_S4_REGION", "eu")]);
        let e = run("s4:x", &Config::empty(), &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "remote \"s4\" not found: no config file is in use (no remotes are defined)"
        );
        // Names are case-sensitive in the file.
        assert!(matches!(
            run("S3:", &config(CONF), &Env::default()),
            Err(ConfigError::UnknownRemote { .. })
        ));
    }

    #[test]
    fn missing_type() {
        let e = run("typeless:", &config(CONF), &Env::default()).unwrap_err();
        assert!(matches!(
            &e,
            ConfigError::MissingType { name, line: 13, .. } if name == "typeless"
        ));
        assert_eq!(
            e.to_string(),
            format!(
                "{PATH}:13: remote \"typeless\" has no `type` option (set `type = ...` in \
                 its section, FERRY_CONFIG_<REMOTE>_TYPE, or `typeless,type=...:`)"
            )
        );
        // An empty type from the environment is no type.
        let env = Env::from_pairs([("FERRY_CONFIG_S3_TYPE", "")]);
        assert!(matches!(
            run("s3:", &config(CONF), &env),
            Err(ConfigError::MissingType { line: 1, .. })
        ));
        // A type from anywhere fixes it.
        let env = Env::from_pairs([("FERRY_CONFIG_TYPELESS_TYPE", "sftp")]);
        assert_eq!(run("typeless:", &config(CONF), &env).unwrap().type_, "sftp");
    }

    #[test]
    fn reveal_option_values_and_errors() {
        let cfg = config(CONF);
        let r = run("nas:", &cfg, &Env::default()).unwrap();
        assert_eq!(r.reveal_option("pass").unwrap().as_deref(), Some("potato"));
        assert_eq!(r.reveal_option("nothing").unwrap(), None);

        let e = r.reveal_option("key_file_pass").unwrap_err();
        match &e {
            ConfigError::Reveal {
                remote,
                key,
                from,
                reason,
            } => {
                assert_eq!(remote, "nas");
                assert_eq!(key, "key_file_pass");
                assert_eq!(from, &file(11));
                assert!(matches!(reason, RevealError::Base64(_)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            format!(
                "remote \"nas\": option `key_file_pass` (from {PATH}:11) cannot be \
                 revealed: base64 decode failed when revealing password - is it obscured?"
            )
        );

        let env = Env::from_pairs([("FERRY_CONFIG_NAS_PASS", "abcd")]);
        let r = run("nas:", &cfg, &env).unwrap();
        assert_eq!(
            r.reveal_option("pass").unwrap_err().to_string(),
            "remote \"nas\": option `pass` (from environment variable FERRY_CONFIG_NAS_PASS) \
             cannot be revealed: input too short when revealing password - is it obscured?"
        );

        let arg = format!(":sftp,pass='{}':", obscure("s3cr,et"));
        let r = run(&arg, &cfg, &Env::default()).unwrap();
        assert_eq!(r.reveal_option("pass").unwrap().as_deref(), Some("s3cr,et"));
        let r = run(":sftp,pass=plain:", &cfg, &Env::default()).unwrap();
        assert_eq!(
            r.reveal_option("pass").unwrap_err().to_string(),
            "remote \":sftp\": option `pass` (from the connection string) cannot be \
             revealed: base64 decode failed when revealing password - is it obscured?"
        );
        // Empty means unset.
        let r = run(":sftp,pass=:", &cfg, &Env::default()).unwrap();
        assert_eq!(r.reveal_option("pass").unwrap(), None);
    }

    #[test]
    fn redaction() {
        let cfg = config(CONF);
        let env = Env::from_pairs([("FERRY_CONFIG_NAS_TOKEN", "")]);
        let r = run("nas:", &cfg, &env).unwrap();
        let red = r.redacted();
        assert_eq!(red.get("pass"), Some(REDACTED));
        assert_eq!(red.get("key_file_pass"), Some(REDACTED));
        assert_eq!(red.get("token"), Some(""), "empty stays empty");
        assert_eq!(red.get("host"), Some("nas.lan"));
        assert_eq!(red.source, r.source);
        assert_eq!(r.get("key_file_pass"), Some("plain text!"), "original kept");

        let red = r.redacted_with(&["HOST"]);
        assert_eq!(red.get("host"), Some(REDACTED));
        assert_eq!(red.get("pass"), Some("YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ"));
    }

    #[test]
    fn source_display() {
        assert_eq!(file(4).to_string(), format!("{PATH}:4"));
        assert_eq!(
            env_src("FERRY_CONFIG_X_Y").to_string(),
            "environment variable FERRY_CONFIG_X_Y"
        );
        assert_eq!(
            OptionSource::ConnectionString.to_string(),
            "the connection string"
        );
        assert_eq!(OptionSource::Unknown.to_string(), "an unknown source");
    }
}
