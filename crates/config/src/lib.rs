//! rclone-compatible configuration for Ferry.
//!
//! An rclone user already has an `rclone.conf` and a habit of writing
//! `remote:path`. This crate reads both the way rclone does, so an existing
//! config works unchanged:
//!
//! 1. [`default_path`] picks the config file (`--config`, `$FERRY_CONFIG`,
//!    `ferry.conf`, then `rclone.conf`).
//! 2. [`Config::load`] parses it into [`Section`]s, remembering the file and
//!    line of every key so that errors can point at them.
//! 3. [`parse_remote`] splits a command-line argument into a [`RemoteSpec`]:
//!    a local path, `name:path`, `:type:path` or either with
//!    `,key=value` overrides (rclone's connection strings).
//! 4. [`resolve`](fn@resolve) merges the config file, `FERRY_CONFIG_<REMOTE>_<KEY>`
//!    environment variables ([`Env`]) and the connection string into a
//!    [`ResolvedRemote`], recording where each option came from.
//! 5. [`ResolvedRemote::reveal_option`] reveals an obscured secret
//!    ([`obscure`](mod@obscure)), and [`ResolvedRemote::redacted`] hides secrets for
//!    display.
//!
//! This crate knows nothing about backends: it does not know which options a
//! type has, which are required, or how to parse their values. The backend
//! registry in the CLI does, and uses the recorded [`OptionSource`]s to
//! name the file, line or variable in its own errors.
//!
//! # Layout
//! - [`obscure`](mod@obscure): rclone's obscure/reveal (AES-256-CTR, fixed key) and
//!   [`RevealError`].
//! - [`file`]: the INI reader for `rclone.conf`: [`Config`], [`Section`],
//!   [`Entry`].
//! - [`location`]: [`default_path`], where the config file is looked for.
//! - [`remote`]: [`parse_remote`], rclone's `remote,key=value:path` syntax.
//! - [`env`]: [`Env`], a snapshot of the `FERRY_CONFIG*` environment.
//! - [`resolve`](mod@resolve): [`resolve`](fn@resolve), [`ResolvedRemote`],
//!   [`OptionSource`], and redaction of secrets.
//! - [`error`]: [`ConfigError`] and the reasons it carries.
//! - [`size`](mod@size): [`parse_size`], rclone's sizes (`16Mi`).
//!
//! Every error names the file (and line) where known, the remote and the
//! key where relevant.
//!
//! # Example
//! ```
//! use std::path::Path;
//! use ferry_config::{parse_remote, resolve, Config, Env};
//!
//! let cfg = Config::parse("[nas]\ntype = sftp\nhost = nas.lan\n", Path::new("rclone.conf"))?;
//! let env = Env::from_pairs([("FERRY_CONFIG_NAS_USER", "alice")]);
//! let remote = resolve(&parse_remote("nas,port=2222:backups")?, &cfg, &env)?;
//! assert_eq!(remote.type_, "sftp");
//! assert_eq!(remote.get("host"), Some("nas.lan"));
//! assert_eq!(remote.get("user"), Some("alice"));
//! assert_eq!(remote.get("port"), Some("2222"));
//! assert_eq!(remote.path, "backups");
//! # Ok::<(), ferry_config::ConfigError>(())
//! ```

#![forbid(unsafe_code)]

pub mod env;
pub mod error;
pub mod file;
pub mod location;
pub mod obscure;
pub mod remote;
pub mod resolve;
pub mod size;

pub use env::Env;
pub use error::{ConfigError, RemoteSyntaxError, SyntaxReason};
pub use file::{Config, Entry, Section};
pub use location::default_path;
pub use obscure::{obscure, obscure_with_iv, reveal, RevealError};
pub use remote::{parse_remote, RemoteKind, RemoteSpec};
pub use resolve::{resolve, OptionSource, ResolvedRemote, DEFAULT_SECRET_KEYS, REDACTED};
pub use size::parse_size;
