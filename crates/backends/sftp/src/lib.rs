//! Ferry's SFTP backend: a directory on a remote SFTP server as the store
//! (rclone's `sftp` remote), spoken over russh's SSH client and Ferry's own
//! SFTP v3 codec (`ferry-proto`).
//!
//! # Behaviour
//! - **Options** follow rclone's sftp backend: `host`, `port`, `user`,
//!   `pass`, `key_file`, `key_file_pass`, `key_pem`, `known_hosts_file`,
//!   `disable_hashcheck`, `md5sum_command`, `sha1sum_command`,
//!   `set_modtime` (see [`SftpConfig`]). Without `known_hosts_file` any
//!   host key is accepted (logged at debug level), as rclone does; with
//!   it, the key must be recorded there (hashed entries included) and a
//!   mismatch is refused with a clear error.
//! - **Authentication**: the key (`key_pem` over `key_file`, OpenSSH or
//!   PEM format, optionally encrypted) first, then the password (also
//!   through keyboard-interactive when the server asks that way).
//! - **Pipelining**: one SSH connection per slot (`connections`, one by
//!   default) with one `sftp` subsystem channel; a reader task completes each
//!   request by id, so up to `concurrency` requests are in flight. Reads
//!   and writes are split to the server's `limits@openssh.com` lengths
//!   (32 KiB without it) and the pieces sent together.
//! - **Reconnects**: a dropped connection fails its requests with
//!   [`ErrorKind::Temporary`] (so the retry layer retries idempotent
//!   operations) and the next operation connects again. Files opened on the
//!   old connection keep failing with `Temporary`.
//! - **Extensions** used when the server has them: `posix-rename` (atomic
//!   replacing rename), `statvfs` (usage), `fsync`, `hardlink`,
//!   `lsetstat`, `limits`, `copy-data` (server-side copy).
//! - **Errors**: SFTP v3 has few status codes, and OpenSSH reports most
//!   failures as `SSH_FX_FAILURE` (and `ENOTDIR` as "no such file"); where
//!   the trait promises a precise kind (AlreadyExists, IsADirectory,
//!   NotADirectory, DirectoryNotEmpty) the backend looks at the paths after
//!   the failure to tell which.
//! - **Hashes**: MD5 and SHA-1 by running `md5sum`/`sha1sum` on the server
//!   over an exec channel, as rclone does; when that fails the hash is
//!   `None` and the caller reads the file.
//! - **Paths** are bytes below `root` (absolute, or relative to the login
//!   directory, which is resolved once at connect time).
//!
//! # Layout
//! - [`SftpConfig`], [`SftpBackend`]: options and the [`Backend`].
//! - `conn`: one SSH connection (host key check, login, exec channels).
//! - `session`: the SFTP request/reply multiplexer on one channel.
//! - `file`: the [`FileHandle`] of an open remote file.
//! - `known_hosts`: OpenSSH known_hosts parsing and matching.

#![forbid(unsafe_code)]

mod conn;
mod file;
mod known_hosts;
pub mod rclone;
mod session;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_backend::{
    Backend, BackendError, Capabilities, DirEntry, ErrorKind, FileHandle, FileType, HashKind,
    Metadata, OpenOptions, Operation, RelPath, Result, SetAttrs, Usage,
};
use ferry_proto::{mode, pflags, ExtendedRequest, FileAttributes, Request, StatusCode, Statvfs};
use futures::future::join_all;
use russh::keys::PrivateKey;

use conn::{expand_home, load_key, Conn, ConnectError};
use file::SftpFile;
use known_hosts::KnownHosts;
use session::{Extensions, SftpErr};

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

/// A directory on a remote SFTP server, served as a backend. See the crate
/// docs.
pub struct SftpBackend {
    cfg: SftpConfig,
    key: Option<Arc<PrivateKey>>,
    known: Option<(Arc<KnownHosts>, String)>,
    slots: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    next_slot: AtomicUsize,
    /// The absolute remote path of the root, without a trailing `/`
    /// (except for `/` itself).
    root: Vec<u8>,
    /// The first connection's extensions, for [`Backend::capabilities`].
    ext: Extensions,
    /// A hash command turned out not to run on this server.
    md5_broken: AtomicBool,
    sha1_broken: AtomicBool,
    describe: String,
}

impl fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpBackend")
            .field("describe", &self.describe)
            .field("ext", &self.ext)
            .finish_non_exhaustive()
    }
}

/// The [`ErrorKind`] of a failed request, before any refinement.
fn sftp_kind(e: &SftpErr) -> ErrorKind {
    match e {
        SftpErr::Status(code, _) => match code {
            StatusCode::NoSuchFile => ErrorKind::NotFound,
            StatusCode::PermissionDenied => ErrorKind::PermissionDenied,
            StatusCode::OpUnsupported => ErrorKind::Unsupported,
            StatusCode::NoConnection | StatusCode::ConnectionLost => ErrorKind::Temporary,
            _ => ErrorKind::Other,
        },
        SftpErr::Lost(_) => ErrorKind::Temporary,
        SftpErr::Protocol(_) => ErrorKind::Other,
    }
}

pub(crate) fn sftp_error(op: Operation, path: &RelPath, e: SftpErr) -> BackendError {
    BackendError::new(sftp_kind(&e), op)
        .with_path(path)
        .with_source(e)
}

fn refined(kind: ErrorKind, op: Operation, path: &RelPath, e: SftpErr) -> BackendError {
    BackendError::new(kind, op).with_path(path).with_source(e)
}

fn connect_error(op: Operation, e: ConnectError) -> BackendError {
    let kind = match e {
        ConnectError::Temporary(_) => ErrorKind::Temporary,
        ConnectError::Auth(_) => ErrorKind::PermissionDenied,
        ConnectError::HostKey(_) | ConnectError::Config(_) | ConnectError::Other(_) => {
            ErrorKind::Other
        }
    };
    BackendError::new(kind, op).with_source(e)
}

fn time(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(secs))
}

fn secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// Metadata from SFTP attributes. Without permissions the type is unknown
/// and taken to be a file.
pub(crate) fn to_meta(a: &FileAttributes) -> Metadata {
    let file_type = match a.file_type() {
        None | Some(mode::S_IFREG) => FileType::File,
        Some(mode::S_IFDIR) => FileType::Dir,
        Some(mode::S_IFLNK) => FileType::Symlink,
        Some(_) => FileType::Other,
    };
    Metadata {
        file_type,
        size: a.size.unwrap_or(0),
        mtime: a.atime_mtime.map(|(_, m)| time(m)),
        atime: a.atime_mtime.map(|(a, _)| time(a)),
        permissions: a.permissions.map(|p| p & 0o7777),
        owner: a.uid_gid,
        change: None,
    }
}

/// SFTP attributes to set; times are left out unless `set_modtime`.
pub(crate) fn to_attrs(s: &SetAttrs, set_modtime: bool) -> FileAttributes {
    FileAttributes {
        size: s.size,
        uid_gid: s.owner,
        permissions: s.permissions.map(|p| p & 0o7777),
        atime_mtime: s
            .times
            .filter(|_| set_modtime)
            .map(|(a, m)| (secs(a), secs(m))),
        extended: Vec::new(),
    }
}

/// `'...'` quoting for a POSIX shell: a `'` becomes `'\''`.
fn shell_quote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'\'');
    for &b in s {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// The hash from `md5sum`-style output: the first field, lower case, of
/// the expected length.
fn parse_hash(out: &[u8], kind: HashKind) -> Option<String> {
    let len = match kind {
        HashKind::Md5 => 32,
        HashKind::Sha1 => 40,
        _ => return None,
    };
    let first = out
        .split(|b| b.is_ascii_whitespace())
        .find(|f| !f.is_empty())?;
    // GNU coreutils marks escaped file names with a leading backslash.
    let first = first.strip_prefix(b"\\").unwrap_or(first);
    if first.len() != len || !first.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(String::from_utf8_lossy(first).to_ascii_lowercase())
}

impl SftpBackend {
    /// The hashes the remote's `md5sum`/`sha1sum` give.
    fn native_hashes(&self) -> &'static [HashKind] {
        match (
            self.hash_command(HashKind::Md5).is_some(),
            self.hash_command(HashKind::Sha1).is_some(),
        ) {
            (true, true) => &[HashKind::Md5, HashKind::Sha1],
            (true, false) => &[HashKind::Md5],
            (false, true) => &[HashKind::Sha1],
            (false, false) => &[],
        }
    }

    /// Connect to the server (the first connection is made now, so bad
    /// credentials or host keys show at once) and resolve the root.
    pub async fn connect(mut cfg: SftpConfig) -> Result<SftpBackend> {
        let op = Operation::Stat;
        if cfg.user.is_empty() {
            // rclone's default: the current user.
            cfg.user = std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_default();
        }
        let config_err = |why: String| {
            BackendError::new(ErrorKind::Other, op).with_source(ConnectError::Config(why))
        };
        if cfg.host.is_empty() {
            return Err(config_err("sftp: host is not set".into()));
        }
        let key = load_key(&cfg)
            .map_err(|e| connect_error(op, e))?
            .map(Arc::new);
        let known = match &cfg.known_hosts_file {
            None => None,
            Some(path) => {
                let path = expand_home(path);
                let kh = KnownHosts::load(&path).map_err(|e| {
                    config_err(format!(
                        "cannot read known_hosts_file {}: {e}",
                        path.display()
                    ))
                })?;
                Some((Arc::new(kh), path.display().to_string()))
            }
        };
        let first = Conn::open(&cfg, key.as_ref(), known.as_ref())
            .await
            .map_err(|e| connect_error(op, e))?;
        let ext = first.sftp.ext;
        let root = resolve_root(&first, &cfg.root)
            .await
            .map_err(|e| sftp_error(op, &RelPath::root(), e))?;
        let describe = format!(
            "sftp:{}@{}{}{}",
            cfg.user,
            known_hosts::host_port(&cfg.host, cfg.port),
            if root.first() == Some(&b'/') { "" } else { "/" },
            root.escape_ascii()
        );
        let slots = (0..cfg.connections.max(1))
            .map(|_| tokio::sync::Mutex::new(None))
            .collect::<Vec<_>>();
        *slots[0].lock().await = Some(Arc::new(first));
        Ok(SftpBackend {
            cfg,
            key,
            known,
            slots,
            next_slot: AtomicUsize::new(0),
            root,
            ext,
            md5_broken: AtomicBool::new(false),
            sha1_broken: AtomicBool::new(false),
            describe,
        })
    }

    /// A live connection, connecting again when the last one dropped.
    async fn conn(&self, op: Operation) -> Result<Arc<Conn>> {
        let n = self.slots.len();
        let i = if n == 1 {
            0
        } else {
            self.next_slot.fetch_add(1, Ordering::Relaxed) % n
        };
        let mut slot = self.slots[i].lock().await;
        if let Some(c) = slot.as_ref() {
            if c.is_alive() {
                return Ok(c.clone());
            }
            tracing::info!("SFTP connection to {} lost; reconnecting", self.describe);
        }
        *slot = None;
        let c = Conn::open(&self.cfg, self.key.as_ref(), self.known.as_ref())
            .await
            .map_err(|e| connect_error(op, e))?;
        let c = Arc::new(c);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// The remote path of `p`.
    fn abs(&self, p: &RelPath) -> Bytes {
        if p.is_root() {
            return Bytes::copy_from_slice(&self.root);
        }
        let mut v = Vec::with_capacity(self.root.len() + 1 + p.as_bytes().len());
        v.extend_from_slice(&self.root);
        if v.last() != Some(&b'/') {
            v.push(b'/');
        }
        v.extend_from_slice(p.as_bytes());
        Bytes::from(v)
    }

    async fn lstat_raw(&self, c: &Conn, p: &RelPath) -> Result<FileAttributes, SftpErr> {
        let path = self.abs(p);
        c.sftp
            .call(|id| Request::Lstat { id, path })
            .await
            .and_then(session::attrs)
    }

    async fn stat_raw(&self, c: &Conn, p: &RelPath) -> Result<FileAttributes, SftpErr> {
        let path = self.abs(p);
        c.sftp
            .call(|id| Request::Stat { id, path })
            .await
            .and_then(session::attrs)
    }

    /// Send a request answered by a plain status.
    async fn simple(&self, c: &Conn, build: impl FnOnce(u32) -> Request) -> Result<(), SftpErr> {
        c.sftp.call(build).await.and_then(session::status)
    }

    async fn close_handle(c: &Conn, handle: Bytes) -> Result<(), SftpErr> {
        c.sftp
            .call(|id| Request::Close { id, handle })
            .await
            .and_then(session::status)
    }

    async fn open_raw(
        &self,
        c: &Conn,
        p: &RelPath,
        pflags: u32,
        attrs: FileAttributes,
    ) -> Result<Bytes, SftpErr> {
        let path = self.abs(p);
        c.sftp
            .call(|id| Request::Open {
                id,
                path,
                pflags,
                attrs,
            })
            .await
            .and_then(session::handle)
    }

    /// Tell apart what OpenSSH reports as a bare failure when opening.
    async fn refine_open(
        &self,
        c: &Conn,
        p: &RelPath,
        opts: &OpenOptions,
        e: SftpErr,
    ) -> BackendError {
        let op = Operation::Open;
        if e.code() == Some(StatusCode::Failure) {
            if opts.create_new && self.lstat_raw(c, p).await.is_ok() {
                return refined(ErrorKind::AlreadyExists, op, p, e);
            }
            if self.stat_raw(c, p).await.is_ok_and(|a| a.is_dir()) {
                return refined(ErrorKind::IsADirectory, op, p, e);
            }
        }
        sftp_error(op, p, e)
    }

    fn hash_command(&self, kind: HashKind) -> Option<&str> {
        if self.cfg.disable_hashcheck {
            return None;
        }
        let cmd = match kind {
            HashKind::Md5 => self.cfg.md5sum_command.as_deref().unwrap_or("md5sum"),
            HashKind::Sha1 => self.cfg.sha1sum_command.as_deref().unwrap_or("sha1sum"),
            _ => return None,
        };
        let cmd = cmd.trim();
        (!cmd.is_empty() && cmd != "none").then_some(cmd)
    }

    fn hash_broken(&self, kind: HashKind) -> Option<&AtomicBool> {
        match kind {
            HashKind::Md5 => Some(&self.md5_broken),
            HashKind::Sha1 => Some(&self.sha1_broken),
            _ => None,
        }
    }

    /// Rename without posix-rename but replacing `to`: clear the way, then
    /// a plain rename (not atomic).
    async fn rename_replacing(&self, c: &Conn, from: &RelPath, to: &RelPath) -> Result<()> {
        let op = Operation::Rename;
        let (old, new) = (self.abs(from), self.abs(to));
        let first = self
            .simple(c, |id| Request::Rename {
                id,
                old: old.clone(),
                new: new.clone(),
            })
            .await;
        let Err(e) = first else { return Ok(()) };
        let from_attrs = match self.lstat_raw(c, from).await {
            Ok(a) => a,
            Err(_) => return Err(sftp_error(op, from, e)),
        };
        let Ok(to_attrs) = self.lstat_raw(c, to).await else {
            return Err(sftp_error(op, from, e));
        };
        let cleared = match (from_attrs.is_dir(), to_attrs.is_dir()) {
            (false, true) => return Err(refined(ErrorKind::IsADirectory, op, from, e)),
            (true, false) => return Err(refined(ErrorKind::NotADirectory, op, from, e)),
            (true, true) => {
                let path = self.abs(to);
                self.simple(c, |id| Request::Rmdir { id, path }).await
            }
            (false, false) => {
                let path = self.abs(to);
                self.simple(c, |id| Request::Remove { id, path }).await
            }
        };
        if let Err(e2) = cleared {
            let kind = if from_attrs.is_dir() && e2.code() == Some(StatusCode::Failure) {
                ErrorKind::DirectoryNotEmpty
            } else {
                sftp_kind(&e2)
            };
            return Err(refined(kind, op, from, e2));
        }
        self.simple(c, |id| Request::Rename { id, old, new })
            .await
            .map_err(|e| sftp_error(op, from, e))
    }

    /// Classify a failed replacing rename.
    async fn refine_rename(
        &self,
        c: &Conn,
        from: &RelPath,
        to: &RelPath,
        e: SftpErr,
    ) -> BackendError {
        let op = Operation::Rename;
        let f = self.lstat_raw(c, from).await;
        let Ok(f) = f else {
            return refined(ErrorKind::NotFound, op, from, e);
        };
        if let Ok(t) = self.lstat_raw(c, to).await {
            match (f.is_dir(), t.is_dir()) {
                (false, true) => return refined(ErrorKind::IsADirectory, op, from, e),
                (true, false) => return refined(ErrorKind::NotADirectory, op, from, e),
                (true, true) if e.code() == Some(StatusCode::Failure) => {
                    return refined(ErrorKind::DirectoryNotEmpty, op, from, e)
                }
                _ => {}
            }
        }
        sftp_error(op, from, e)
    }
}

/// The absolute remote path of the configured root.
async fn resolve_root(c: &Conn, root: &[u8]) -> Result<Vec<u8>, SftpErr> {
    let trimmed = {
        let mut r = root;
        while r.len() > 1 && r.ends_with(b"/") {
            r = &r[..r.len() - 1];
        }
        r
    };
    if trimmed.first() == Some(&b'/') {
        return Ok(trimmed.to_vec());
    }
    let reply = c
        .sftp
        .call(|id| Request::Realpath {
            id,
            path: Bytes::from_static(b"."),
        })
        .await?;
    let home = match session::names(reply)? {
        Some(mut e) if !e.is_empty() => e.swap_remove(0).filename.to_vec(),
        _ => return Err(SftpErr::Protocol("REALPATH of . gave no name".into())),
    };
    let mut abs = home;
    let rel = trimmed.strip_prefix(b"./").unwrap_or(trimmed);
    if !rel.is_empty() && rel != b"." {
        if abs.last() != Some(&b'/') {
            abs.push(b'/');
        }
        abs.extend_from_slice(rel);
    }
    Ok(abs)
}

#[async_trait]
impl Backend for SftpBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read_only: false,
            listings: true,
            random_access_write: true,
            real_directories: true,
            atomic_rename: self.ext.posix_rename,
            rename_noreplace: true,
            server_side_copy: self.ext.copy_data,
            // Links made by clients could point outside the served
            // directory, and the remote server follows them: not offered
            // (links already on the server are the operator's, and are
            // followed as rclone does).
            symlinks: false,
            hard_links: self.ext.hardlink,
            set_mtime: self.cfg.set_modtime,
            permissions: true,
            ownership: true,
            usage: self.ext.statvfs,
            streaming_upload: false,
            low_latency: false,
            read_streams: false,
            change_watch: false,
            native_hashes: self.native_hashes(),
        }
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn stat(&self, path: &RelPath) -> Result<Metadata> {
        let c = self.conn(Operation::Stat).await?;
        self.stat_raw(&c, path)
            .await
            .map(|a| to_meta(&a))
            .map_err(|e| sftp_error(Operation::Stat, path, e))
    }

    async fn lstat(&self, path: &RelPath) -> Result<Metadata> {
        let c = self.conn(Operation::Stat).await?;
        self.lstat_raw(&c, path)
            .await
            .map(|a| to_meta(&a))
            .map_err(|e| sftp_error(Operation::Stat, path, e))
    }

    async fn list(&self, path: &RelPath) -> Result<Vec<DirEntry>> {
        let op = Operation::List;
        let c = self.conn(op).await?;
        let dir = self.abs(path);
        let opened = c
            .sftp
            .call(|id| Request::Opendir { id, path: dir })
            .await
            .and_then(session::handle);
        let h = match opened {
            Ok(h) => h,
            Err(e) => {
                // OpenSSH: ENOTDIR is "no such file"; some servers say failure.
                if matches!(e.code(), Some(StatusCode::NoSuchFile | StatusCode::Failure))
                    && self.stat_raw(&c, path).await.is_ok_and(|a| !a.is_dir())
                {
                    return Err(refined(ErrorKind::NotADirectory, op, path, e));
                }
                return Err(sftp_error(op, path, e));
            }
        };
        let mut out = Vec::new();
        let read = async {
            loop {
                let reply = c
                    .sftp
                    .call(|id| Request::Readdir {
                        id,
                        handle: h.clone(),
                    })
                    .await?;
                let Some(entries) = session::names(reply)? else {
                    return Ok::<_, SftpErr>(());
                };
                for e in entries {
                    let name = &e.filename[..];
                    if name.is_empty()
                        || name == b"."
                        || name == b".."
                        || name.contains(&b'/')
                        || name.contains(&0)
                    {
                        continue;
                    }
                    out.push((e.filename.to_vec(), e.attrs));
                }
            }
        }
        .await;
        if let Err(e) = Self::close_handle(&c, h).await {
            tracing::debug!("closing the directory handle of {path} failed: {e}");
        }
        read.map_err(|e| sftp_error(op, path, e))?;
        // Entries without a type (servers that send no attributes in
        // READDIR) get an LSTAT each, all in flight together.
        let lookups = out.iter().map(|(name, attrs)| {
            let c = &c;
            async move {
                if attrs.permissions.is_some() {
                    return None;
                }
                let p = path.join(name).ok()?;
                Some(self.lstat_raw(c, &p).await)
            }
        });
        let found = join_all(lookups).await;
        let mut entries = Vec::with_capacity(out.len());
        for ((name, attrs), looked) in out.into_iter().zip(found) {
            let meta = match looked {
                None => to_meta(&attrs),
                Some(Ok(a)) => to_meta(&a),
                // Gone since the listing.
                Some(Err(e)) if e.code() == Some(StatusCode::NoSuchFile) => continue,
                Some(Err(_)) => to_meta(&attrs),
            };
            entries.push(DirEntry { name, meta });
        }
        Ok(entries)
    }

    async fn open_file(&self, path: &RelPath, opts: OpenOptions) -> Result<Box<dyn FileHandle>> {
        let op = Operation::Open;
        let c = self.conn(op).await?;
        let mut flags = 0;
        if opts.read || !(opts.write || opts.append) {
            flags |= pflags::READ;
        }
        if opts.write || opts.append {
            flags |= pflags::WRITE;
        }
        if opts.append {
            flags |= pflags::APPEND;
        }
        if opts.create || opts.create_new {
            flags |= pflags::CREAT;
        }
        if opts.create_new {
            flags |= pflags::EXCL;
        }
        if opts.truncate {
            flags |= pflags::TRUNC;
        }
        let attrs = FileAttributes {
            permissions: opts
                .mode
                .filter(|_| flags & pflags::CREAT != 0)
                .map(|m| m & 0o7777),
            ..Default::default()
        };
        let read_only = flags & pflags::WRITE == 0;
        // A directory opens fine read-only on OpenSSH (only reads fail):
        // look at the type in the same round trip.
        let (opened, kind) = if read_only {
            let (o, s) = tokio::join!(
                self.open_raw(&c, path, flags, attrs),
                self.stat_raw(&c, path)
            );
            (o, s.ok())
        } else {
            (self.open_raw(&c, path, flags, attrs).await, None)
        };
        let handle = match opened {
            Ok(h) => h,
            Err(e) => return Err(self.refine_open(&c, path, &opts, e).await),
        };
        if kind.is_some_and(|a| a.is_dir()) {
            let _ = Self::close_handle(&c, handle).await;
            return Err(BackendError::new(ErrorKind::IsADirectory, op).with_path(path));
        }
        Ok(Box::new(SftpFile {
            conn: c,
            handle,
            path: path.clone(),
            append: opts.append,
            set_modtime: self.cfg.set_modtime,
        }))
    }

    async fn remove_file(&self, path: &RelPath) -> Result<()> {
        let op = Operation::Remove;
        let c = self.conn(op).await?;
        let p = self.abs(path);
        match self.simple(&c, |id| Request::Remove { id, path: p }).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if e.code() == Some(StatusCode::Failure)
                    && self.lstat_raw(&c, path).await.is_ok_and(|a| a.is_dir())
                {
                    return Err(refined(ErrorKind::IsADirectory, op, path, e));
                }
                Err(sftp_error(op, path, e))
            }
        }
    }

    async fn create_dir(&self, path: &RelPath, mode: Option<u32>) -> Result<()> {
        let op = Operation::CreateDir;
        let c = self.conn(op).await?;
        let p = self.abs(path);
        let attrs = FileAttributes {
            permissions: mode.map(|m| m & 0o7777),
            ..Default::default()
        };
        match self
            .simple(&c, |id| Request::Mkdir { id, path: p, attrs })
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                if e.code() == Some(StatusCode::Failure) && self.lstat_raw(&c, path).await.is_ok() {
                    return Err(refined(ErrorKind::AlreadyExists, op, path, e));
                }
                Err(sftp_error(op, path, e))
            }
        }
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<()> {
        let op = Operation::RemoveDir;
        if path.is_root() {
            return Err(BackendError::new(ErrorKind::Other, op)
                .with_path(path)
                .with_source("the root cannot be removed"));
        }
        let c = self.conn(op).await?;
        let p = self.abs(path);
        let Err(e) = self.simple(&c, |id| Request::Rmdir { id, path: p }).await else {
            return Ok(());
        };
        if !matches!(e.code(), Some(StatusCode::Failure | StatusCode::NoSuchFile)) {
            return Err(sftp_error(op, path, e));
        }
        match self.lstat_raw(&c, path).await {
            Ok(a) if !a.is_dir() => Err(refined(ErrorKind::NotADirectory, op, path, e)),
            Ok(_) if e.code() == Some(StatusCode::Failure) => {
                // ENOTEMPTY, most likely: look.
                match self.list(path).await {
                    Ok(entries) if !entries.is_empty() => {
                        Err(refined(ErrorKind::DirectoryNotEmpty, op, path, e))
                    }
                    _ => Err(sftp_error(op, path, e)),
                }
            }
            _ => Err(sftp_error(op, path, e)),
        }
    }

    async fn rename(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<()> {
        let op = Operation::Rename;
        let c = self.conn(op).await?;
        if from == to {
            self.lstat_raw(&c, from)
                .await
                .map_err(|e| sftp_error(op, from, e))?;
            return if overwrite {
                Ok(())
            } else {
                Err(BackendError::new(ErrorKind::AlreadyExists, op).with_path(to))
            };
        }
        let (old, new) = (self.abs(from), self.abs(to));
        if overwrite {
            if !c.sftp.ext.posix_rename {
                return self.rename_replacing(&c, from, to).await;
            }
            let r = self
                .simple(&c, |id| Request::Extended {
                    id,
                    request: ExtendedRequest::PosixRename { old, new },
                })
                .await;
            return match r {
                Ok(()) => Ok(()),
                Err(e) => Err(self.refine_rename(&c, from, to, e).await),
            };
        }
        // Plain SSH_FXP_RENAME never replaces (OpenSSH links then unlinks
        // for files, so it is atomic there).
        match self.simple(&c, |id| Request::Rename { id, old, new }).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if e.code() == Some(StatusCode::Failure) && self.lstat_raw(&c, to).await.is_ok() {
                    return Err(refined(ErrorKind::AlreadyExists, op, to, e));
                }
                if e.code() == Some(StatusCode::NoSuchFile) {
                    return Err(self.refine_rename(&c, from, to, e).await);
                }
                Err(sftp_error(op, from, e))
            }
        }
    }

    async fn copy(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        let op = Operation::Copy;
        let c = self.conn(op).await?;
        if !c.sftp.ext.copy_data {
            return Err(BackendError::new(ErrorKind::Unsupported, op).with_path(from));
        }
        let src = self
            .stat_raw(&c, from)
            .await
            .map_err(|e| sftp_error(op, from, e))?;
        if src.is_dir() {
            return Err(BackendError::new(ErrorKind::IsADirectory, op).with_path(from));
        }
        if from == to {
            return Ok(());
        }
        let rh = self
            .open_raw(&c, from, pflags::READ, FileAttributes::default())
            .await
            .map_err(|e| sftp_error(op, from, e))?;
        let attrs = FileAttributes {
            permissions: src.permissions.map(|p| p & 0o7777),
            ..Default::default()
        };
        let wh = match self
            .open_raw(&c, to, pflags::WRITE | pflags::CREAT | pflags::TRUNC, attrs)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                let _ = Self::close_handle(&c, rh).await;
                let kind = if e.code() == Some(StatusCode::Failure)
                    && self.stat_raw(&c, to).await.is_ok_and(|a| a.is_dir())
                {
                    ErrorKind::IsADirectory
                } else {
                    sftp_kind(&e)
                };
                return Err(refined(kind, op, to, e));
            }
        };
        let copied = self
            .simple(&c, |id| Request::Extended {
                id,
                request: ExtendedRequest::CopyData {
                    read_handle: rh.clone(),
                    read_offset: 0,
                    read_len: 0,
                    write_handle: wh.clone(),
                    write_offset: 0,
                },
            })
            .await;
        let (r1, r2) = tokio::join!(Self::close_handle(&c, rh), Self::close_handle(&c, wh));
        copied.map_err(|e| sftp_error(op, from, e))?;
        let _ = r1;
        r2.map_err(|e| sftp_error(op, to, e))
    }

    async fn set_attrs(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        let op = Operation::SetAttrs;
        let c = self.conn(op).await?;
        let p = self.abs(path);
        let attrs = to_attrs(attrs, self.cfg.set_modtime);
        self.simple(&c, |id| Request::Setstat { id, path: p, attrs })
            .await
            .map_err(|e| sftp_error(op, path, e))
    }

    async fn set_attrs_nofollow(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        let op = Operation::SetAttrs;
        let c = self.conn(op).await?;
        let p = self.abs(path);
        let wire = to_attrs(attrs, self.cfg.set_modtime);
        if c.sftp.ext.lsetstat && attrs.size.is_none() {
            return self
                .simple(&c, |id| Request::Extended {
                    id,
                    request: ExtendedRequest::Lsetstat {
                        path: p,
                        attrs: wire,
                    },
                })
                .await
                .map_err(|e| sftp_error(op, path, e));
        }
        let a = self
            .lstat_raw(&c, path)
            .await
            .map_err(|e| sftp_error(op, path, e))?;
        if a.is_symlink() {
            return Err(BackendError::new(ErrorKind::Unsupported, op)
                .with_path(path)
                .with_source("the server cannot change a symbolic link itself (no lsetstat)"));
        }
        self.simple(&c, |id| Request::Setstat {
            id,
            path: p,
            attrs: wire,
        })
        .await
        .map_err(|e| sftp_error(op, path, e))
    }

    async fn symlink(&self, target: &[u8], link: &RelPath) -> Result<()> {
        let op = Operation::Symlink;
        let c = self.conn(op).await?;
        let linkpath = self.abs(link);
        let targetpath = Bytes::copy_from_slice(target);
        match self
            .simple(&c, |id| Request::Symlink {
                id,
                linkpath,
                targetpath,
            })
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                if e.code() == Some(StatusCode::Failure) && self.lstat_raw(&c, link).await.is_ok() {
                    return Err(refined(ErrorKind::AlreadyExists, op, link, e));
                }
                Err(sftp_error(op, link, e))
            }
        }
    }

    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>> {
        let op = Operation::ReadLink;
        let c = self.conn(op).await?;
        let p = self.abs(path);
        let names = c
            .sftp
            .call(|id| Request::Readlink { id, path: p })
            .await
            .and_then(session::names)
            .map_err(|e| sftp_error(op, path, e))?;
        match names {
            Some(mut n) if !n.is_empty() => Ok(n.swap_remove(0).filename.to_vec()),
            _ => Err(BackendError::new(ErrorKind::Other, op)
                .with_path(path)
                .with_source("READLINK gave no name")),
        }
    }

    async fn hard_link(&self, existing: &RelPath, link: &RelPath) -> Result<()> {
        let op = Operation::HardLink;
        let c = self.conn(op).await?;
        if !c.sftp.ext.hardlink {
            return Err(BackendError::new(ErrorKind::Unsupported, op).with_path(existing));
        }
        let (old, new) = (self.abs(existing), self.abs(link));
        match self
            .simple(&c, |id| Request::Extended {
                id,
                request: ExtendedRequest::Hardlink { old, new },
            })
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                if e.code() == Some(StatusCode::Failure) && self.lstat_raw(&c, link).await.is_ok() {
                    return Err(refined(ErrorKind::AlreadyExists, op, link, e));
                }
                Err(sftp_error(op, existing, e))
            }
        }
    }

    async fn usage(&self) -> Result<Usage> {
        let op = Operation::Usage;
        let c = self.conn(op).await?;
        let root = RelPath::root();
        if !c.sftp.ext.statvfs {
            return Err(BackendError::new(ErrorKind::Unsupported, op));
        }
        let path = self.abs(&root);
        let data = c
            .sftp
            .call(|id| Request::Extended {
                id,
                request: ExtendedRequest::Statvfs { path },
            })
            .await
            .and_then(session::ext_reply)
            .map_err(|e| sftp_error(op, &root, e))?;
        let s = Statvfs::decode(&data).map_err(|e| {
            BackendError::new(ErrorKind::Other, op).with_source(SftpErr::Protocol(e.to_string()))
        })?;
        let frsize = if s.frsize > 0 { s.frsize } else { s.bsize };
        Ok(Usage {
            total: Some(s.blocks.saturating_mul(frsize)),
            used: Some(s.blocks.saturating_sub(s.bfree).saturating_mul(frsize)),
            free: Some(s.bavail.saturating_mul(frsize)),
            block_size: Some(frsize),
            files: Some(s.files),
            files_free: Some(s.favail),
            name_max: Some(s.namemax),
        })
    }

    async fn stored_hash(&self, path: &RelPath, kind: HashKind) -> Result<Option<String>> {
        let (Some(cmd), Some(broken)) = (self.hash_command(kind), self.hash_broken(kind)) else {
            return Ok(None);
        };
        if broken.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let c = self.conn(Operation::Hash).await?;
        let mut command = cmd.as_bytes().to_vec();
        command.push(b' ');
        command.extend_from_slice(&shell_quote(&self.abs(path)));
        match c.exec(command).await {
            Ok(out) if out.status == Some(0) => {
                let h = parse_hash(&out.stdout, kind);
                if h.is_none() {
                    tracing::debug!(
                        "{cmd} on {path}: unexpected output {:?}",
                        out.stdout.escape_ascii().to_string()
                    );
                }
                Ok(h)
            }
            Ok(out) => {
                if matches!(out.status, Some(126 | 127)) {
                    tracing::debug!("{cmd} cannot run on the server; hashes are read instead");
                    broken.store(true, Ordering::Relaxed);
                }
                Ok(None)
            }
            Err(why) => {
                tracing::debug!("{cmd} on {path} failed: {why}");
                Ok(None)
            }
        }
    }
}
