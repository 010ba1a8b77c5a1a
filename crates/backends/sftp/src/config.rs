//! [`SftpConfig`]: how to reach the server, with rclone's option names.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach the server, with rclone's sftp option names and meaning.
/// Secrets are plain text here (already revealed from rclone's obscured
/// form).
#[derive(Clone)]
pub struct SftpConfig {
    /// `host`: the server's name or address.
    pub host: String,
    /// `port` (22).
    pub port: u16,
    /// `user`: the login name; empty means the current user (`$USER`), as
    /// in rclone.
    pub user: String,
    /// `pass`: the password, revealed.
    pub password: Option<String>,
    /// `key_file`: a private key file (OpenSSH or PEM); `~/` is expanded.
    pub key_file: Option<PathBuf>,
    /// `key_file_pass`: the passphrase of an encrypted key, revealed.
    pub key_file_pass: Option<String>,
    /// `key_pem`: the private key itself, on one line with `\n` for line
    /// ends as rclone keeps it (real newlines work too); wins over
    /// `key_file`.
    pub key_pem: Option<String>,
    /// `known_hosts_file`: verify the host key against this file; without
    /// it any host key is accepted.
    pub known_hosts_file: Option<PathBuf>,
    /// The remote directory served: absolute, or relative to the login
    /// directory (empty: the login directory itself).
    pub root: Vec<u8>,
    /// `connections`: SSH connections to use, opened as needed (at least
    /// one).
    pub connections: usize,
    /// SFTP requests in flight per connection.
    pub concurrency: usize,
    /// `disable_hashcheck`: never run hash commands on the server.
    pub disable_hashcheck: bool,
    /// `md5sum_command`: the command for MD5 hashes (`md5sum`; `none`
    /// disables).
    pub md5sum_command: Option<String>,
    /// `sha1sum_command`: the command for SHA-1 hashes (`sha1sum`; `none`
    /// disables).
    pub sha1sum_command: Option<String>,
    /// `set_modtime`: set modification times on the server (true).
    pub set_modtime: bool,
    /// Time allowed to connect, log in and start SFTP.
    pub connect_timeout: Duration,
}

impl SftpConfig {
    /// Defaults for `user@host`: port 22, no credentials yet, the login
    /// directory as root, one connection, 64 requests in flight.
    pub fn new(host: impl Into<String>, user: impl Into<String>) -> Self {
        SftpConfig {
            host: host.into(),
            port: 22,
            user: user.into(),
            password: None,
            key_file: None,
            key_file_pass: None,
            key_pem: None,
            known_hosts_file: None,
            root: Vec::new(),
            connections: 1,
            concurrency: 64,
            disable_hashcheck: false,
            md5sum_command: None,
            sha1sum_command: None,
            set_modtime: true,
            connect_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for SftpConfig {
    fn default() -> Self {
        SftpConfig::new("", "")
    }
}

impl fmt::Debug for SftpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<hidden>");
        f.debug_struct("SftpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &secret(&self.password))
            .field("key_file", &self.key_file)
            .field("key_file_pass", &secret(&self.key_file_pass))
            .field("key_pem", &secret(&self.key_pem))
            .field("known_hosts_file", &self.known_hosts_file)
            .field("root", &self.root.escape_ascii().to_string())
            .field("connections", &self.connections)
            .field("concurrency", &self.concurrency)
            .field("disable_hashcheck", &self.disable_hashcheck)
            .field("md5sum_command", &self.md5sum_command)
            .field("sha1sum_command", &self.sha1sum_command)
            .field("set_modtime", &self.set_modtime)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}
