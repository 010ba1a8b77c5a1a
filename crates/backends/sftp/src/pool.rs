//! Connecting, the connection pool, and the raw requests the backend's
//! operations are made of.

use super::*;

impl SftpBackend {
    /// The hashes the remote's `md5sum`/`sha1sum` give.
    pub(crate) fn native_hashes(&self) -> &'static [HashKind] {
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
    pub(crate) async fn conn(&self, op: Operation) -> Result<Arc<Conn>> {
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
    pub(crate) fn abs(&self, p: &RelPath) -> Bytes {
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

    pub(crate) async fn lstat_raw(&self, c: &Conn, p: &RelPath) -> Result<FileAttributes, SftpErr> {
        let path = self.abs(p);
        c.sftp
            .call(|id| Request::Lstat { id, path })
            .await
            .and_then(session::attrs)
    }

    pub(crate) async fn stat_raw(&self, c: &Conn, p: &RelPath) -> Result<FileAttributes, SftpErr> {
        let path = self.abs(p);
        c.sftp
            .call(|id| Request::Stat { id, path })
            .await
            .and_then(session::attrs)
    }

    /// Send a request answered by a plain status.
    pub(crate) async fn simple(
        &self,
        c: &Conn,
        build: impl FnOnce(u32) -> Request,
    ) -> Result<(), SftpErr> {
        c.sftp.call(build).await.and_then(session::status)
    }

    pub(crate) async fn close_handle(c: &Conn, handle: Bytes) -> Result<(), SftpErr> {
        c.sftp
            .call(|id| Request::Close { id, handle })
            .await
            .and_then(session::status)
    }

    pub(crate) async fn open_raw(
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
    pub(crate) async fn refine_open(
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

    pub(crate) fn hash_command(&self, kind: HashKind) -> Option<&str> {
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

    pub(crate) fn hash_broken(&self, kind: HashKind) -> Option<&AtomicBool> {
        match kind {
            HashKind::Md5 => Some(&self.md5_broken),
            HashKind::Sha1 => Some(&self.sha1_broken),
            _ => None,
        }
    }

    /// Rename without posix-rename but replacing `to`: clear the way, then
    /// a plain rename (not atomic).
    pub(crate) async fn rename_replacing(
        &self,
        c: &Conn,
        from: &RelPath,
        to: &RelPath,
    ) -> Result<()> {
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
    pub(crate) async fn refine_rename(
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
pub(crate) async fn resolve_root(c: &Conn, root: &[u8]) -> Result<Vec<u8>, SftpErr> {
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
