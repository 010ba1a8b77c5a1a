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
//! - this module: [`SftpBackend`], the [`Backend`].
//! - `config`: [`SftpConfig`], the options; `rclone`: rclone's `sftp`
//!   remote options to it.
//! - `errors`: statuses and connection failures as backend errors.
//! - `attrs`: SFTP attributes and metadata, both ways.
//! - `hashes`: `md5sum`/`sha1sum` over exec and their output.
//! - `pool`: connecting, the connection pool, the raw requests.
//! - `conn`: one SSH connection (host key check, login, exec channels).
//! - `session`: the SFTP request/reply multiplexer on one channel.
//! - `file`: the [`FileHandle`] of an open remote file.
//! - `known_hosts`: OpenSSH known_hosts parsing and matching.

#![forbid(unsafe_code)]

mod attrs;
mod config;
mod conn;
mod errors;
mod file;
mod hashes;
mod known_hosts;
mod pool;
pub mod rclone;
mod session;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_backend::{
    Backend, BackendError, Capabilities, DirEntry, ErrorKind, FileHandle, HashKind, Metadata,
    OpenOptions, Operation, RelPath, Result, SetAttrs, Usage,
};
use ferry_proto::{pflags, ExtendedRequest, FileAttributes, Request, StatusCode, Statvfs};
use futures::future::join_all;
use russh::keys::PrivateKey;

pub(crate) use attrs::{to_attrs, to_meta};
pub use config::SftpConfig;
use conn::{expand_home, load_key, Conn, ConnectError};
pub(crate) use errors::sftp_error;
use errors::{connect_error, refined, sftp_kind};
use file::SftpFile;
use hashes::{parse_hash, shell_quote};
use known_hosts::KnownHosts;
use session::{Extensions, SftpErr};

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

    /// Refused: see [`Capabilities::symlinks`] in `capabilities` (the
    /// remote server would follow a link made to point outside the root).
    async fn symlink(&self, target: &[u8], link: &RelPath) -> Result<()> {
        let op = Operation::Symlink;
        if !self.capabilities().symlinks {
            return Err(BackendError::new(ErrorKind::Unsupported, op).with_path(link));
        }
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
