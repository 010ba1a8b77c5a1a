//! Changes to the namespace: making and removing directories, removing
//! and renaming files, changing attributes. Existence checks go through
//! the one lookup ([`crate::lookup`]).

use ferry_backend::{ErrorKind, RelPath, SetAttrs};

use crate::{CacheMode, OpenFlags, Result, Vfs, VfsError};

impl Vfs {
    /// Create directory `path`; fails when anything exists there.
    pub async fn mkdir(&self, path: &RelPath, mode: Option<u32>) -> Result<()> {
        self.check_writable()?;
        if path.is_root() {
            return Err(VfsError::AlreadyExists);
        }
        self.inner.check_new_name(self.viewer, path, true).await?;
        let mode = mode.unwrap_or(self.inner.opts.dir_perms)
            & !self.inner.opts.umask
            & self.inner.opts.mode_bits();
        let _forget = self.inner.forget_around(path, false);
        if self.capabilities().real_directories {
            return Ok(self.inner.backend.create_dir(path, Some(mode)).await?);
        }
        // The store has only prefixes of objects: the directory lives in
        // Ferry's view until a file lands in it.
        if self.inner.stat_entry(self.viewer, path).await?.is_some() {
            return Err(VfsError::AlreadyExists);
        }
        self.inner.check_parent_dir(self.viewer, path).await?;
        self.inner.vdirs.insert(path);
        Ok(())
    }

    /// Remove the empty directory `path`; a file is refused.
    pub async fn rmdir(&self, path: &RelPath) -> Result<()> {
        self.check_writable()?;
        if path.is_root() {
            return Err(VfsError::PermissionDenied);
        }
        self.inner.check_served(self.viewer, path, false).await?;
        let _forget = self.inner.forget_around(path, true);
        // A file (perhaps only in the cache so far) is no directory.
        if let Some(m) = self.inner.stat_entry(self.viewer, path).await? {
            if !m.is_dir() {
                return Err(VfsError::NotADirectory);
            }
        }
        if self
            .inner
            .cache
            .as_ref()
            .is_some_and(|c| c.any_visible_below(path))
        {
            return Err(VfsError::NotEmpty);
        }
        if self.capabilities().real_directories {
            return Ok(self.inner.backend.remove_dir(path).await?);
        }
        let listed = match self.inner.backend.list(path).await {
            Ok(entries) => !entries.is_empty(),
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        if listed || !self.inner.vdirs.children(path).is_empty() {
            return Err(VfsError::NotEmpty);
        }
        let was_virtual = self.inner.vdirs.remove(path);
        match self.inner.backend.remove_dir(path).await {
            // A directory only Ferry knew of.
            Err(e) if was_virtual && e.kind() == ErrorKind::NotFound => Ok(()),
            r => Ok(r?),
        }
    }

    /// Remove file or symbolic link `path`; a directory is refused. An
    /// upload in progress to `path` is discarded when it is closed.
    pub async fn remove(&self, path: &RelPath) -> Result<()> {
        self.check_writable()?;
        if path.is_root() {
            return Err(VfsError::IsADirectory);
        }
        self.inner.check_served(self.viewer, path, false).await?;
        let had_upload = self.inner.uploads.unlink(self.viewer, path);
        let _forget = self.inner.forget_around(path, false);
        let _held = match &self.inner.cache {
            Some(c) => Some(c.hold(&[path]).await),
            None => None,
        };
        if let Some(c) = &self.inner.cache {
            if let Some(on_remote) = c.remove(path).await {
                return match self.inner.backend.remove_file(path).await {
                    Err(e) if !on_remote && e.kind() == ErrorKind::NotFound => Ok(()),
                    r => {
                        r?;
                        self.inner.vdirs.emptied(path);
                        Ok(())
                    }
                };
            }
        }
        match self.inner.backend.remove_file(path).await {
            Err(e) if had_upload && e.kind() == ErrorKind::NotFound => Ok(()),
            r => {
                r?;
                self.inner.vdirs.emptied(path);
                Ok(())
            }
        }
    }

    /// Rename `from` to `to`. With `replace`, an existing file at `to` is
    /// replaced atomically; without, an existing `to` is an error.
    pub async fn rename(&self, from: &RelPath, to: &RelPath, replace: bool) -> Result<()> {
        self.check_writable()?;
        if from.is_root() || to.is_root() {
            return Err(VfsError::PermissionDenied);
        }
        if to.starts_with(from) && to != from {
            return Err(VfsError::InvalidArgument(
                "cannot move a directory into itself".into(),
            ));
        }
        if let Some(m) = self.inner.check_served(self.viewer, from, false).await? {
            self.inner
                .check_new_name(self.viewer, to, m.is_dir())
                .await?;
        }
        let _forget_from = self.inner.forget_around(from, true);
        let _forget_to = self.inner.forget_around(to, true);
        // No upload may commit under either name while they change.
        let _held = match &self.inner.cache {
            Some(c) => Some(c.hold(&[from, to]).await),
            None => None,
        };
        if let Some(c) = &self.inner.cache {
            let only_cached = c
                .get(from)
                .is_some_and(|i| i.is_visible() && !i.lock().on_remote);
            if only_cached {
                // A new file not uploaded yet: the rename is the cache's.
                let dest_on_remote = match self.inner.meta(self.viewer, to, false).await {
                    Ok(m) if m.is_dir() => return Err(VfsError::IsADirectory),
                    Ok(_) if !replace => return Err(VfsError::AlreadyExists),
                    // Replacing a file: is it (an older version) on the remote?
                    Ok(_) => match c.get(to).filter(|i| i.is_visible()) {
                        Some(i) => i.lock().on_remote,
                        None => true,
                    },
                    Err(VfsError::NotFound) => false,
                    Err(e) => return Err(e),
                };
                if let Some(parent) = to.parent() {
                    match self.inner.meta(self.viewer, &parent, true).await {
                        Ok(m) if m.is_dir() => {}
                        Ok(_) => return Err(VfsError::NotADirectory),
                        Err(e) => return Err(e),
                    }
                }
                c.rename(from, to, Some(dest_on_remote)).await?;
                self.inner.vdirs.emptied(from);
                return Ok(());
            }
        }
        if !replace && self.inner.stat_entry(self.viewer, to).await?.is_some() {
            // The store refuses to replace what it has (atomically, where it
            // can); this also covers what only the session sees at `to`: a
            // file in the cache not uploaded yet, its own upload.
            return Err(VfsError::AlreadyExists);
        }
        if !self.capabilities().real_directories && self.inner.vdirs.get(from).is_some() {
            // A directory only Ferry knows of, unless files landed in it.
            let on_store = match self.inner.backend.list(from).await {
                Ok(entries) => !entries.is_empty(),
                Err(e) if e.kind() == ErrorKind::NotFound => false,
                Err(e) => return Err(e.into()),
            };
            if !on_store {
                if self.inner.stat_entry(self.viewer, to).await?.is_some() {
                    return Err(VfsError::AlreadyExists);
                }
                self.inner.check_parent_dir(self.viewer, to).await?;
                self.inner.vdirs.move_tree(from, to);
                if let Some(c) = &self.inner.cache {
                    c.rename(from, to, None).await?;
                }
                return Ok(());
            }
        }
        let upload_moved = self.inner.uploads.rename(self.viewer, from, to);
        // Each backend refuses a file onto a directory (IsADirectory) and a
        // directory onto a file (NotADirectory) itself: no lookup here.
        match self.inner.backend.rename(from, to, replace).await {
            // The file existed only as an upload in progress: moving the
            // upload was the whole rename, unless a directory is in the way.
            Err(e) if upload_moved && e.kind() == ErrorKind::NotFound => {
                match self.inner.backend.lstat(to).await {
                    Ok(m) if m.is_dir() => {
                        self.inner.uploads.rename(self.viewer, to, from);
                        Err(VfsError::IsADirectory)
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => {
                // Undo, so uploads commit where the store still has them.
                self.inner.uploads.rename(self.viewer, to, from);
                Err(e.into())
            }
            Ok(()) => {
                self.inner.vdirs.emptied(from);
                self.inner.vdirs.landed(to, None);
                if let Some(c) = &self.inner.cache {
                    c.rename(from, to, Some(true)).await?;
                }
                Ok(())
            }
        }
    }

    /// Change attributes of `path`; `follow` follows a final symbolic link.
    /// An upload in progress to `path` gets the change.
    pub async fn setstat(&self, path: &RelPath, attrs: &SetAttrs, follow: bool) -> Result<()> {
        self.check_writable()?;
        self.inner.check_served(self.viewer, path, follow).await?;
        let attrs = self.inner.filter_setattrs(attrs);
        if let Some(c) = &self.inner.cache {
            let mut item = c.get(path).filter(|i| i.is_visible());
            if item.is_none() && attrs.size.is_some() && c.mode >= CacheMode::Writes {
                // Truncating a file in place: through the cache, as an
                // open for writing would.
                let f = self
                    .open(
                        path,
                        OpenFlags {
                            write: true,
                            ..Default::default()
                        },
                        None,
                    )
                    .await?;
                let r = f.set_attrs(&attrs).await;
                let closed = f.close().await;
                r?;
                closed?;
                item = c.get(path);
            }
            if let Some(item) = item {
                if let Some(size) = attrs.size {
                    item.truncate(c, size)?;
                }
                if let Some((_, mtime)) = attrs.times {
                    item.set_mtime(c, mtime)?;
                }
                c.changed(&item)?;
                if let Some(p) = attrs.permissions {
                    c.chmod(&item, p).await?;
                }
                self.inner.dircache.forget(path);
                return Ok(());
            }
        }
        if attrs == SetAttrs::default() {
            // Still report a missing file.
            self.inner.backend.lstat(path).await?;
            return Ok(());
        }
        let target = self.pending_for(path).unwrap_or_else(|| path.clone());
        let _forget = self.inner.forget_around(path, false);
        if follow {
            Ok(self.inner.backend.set_attrs(&target, &attrs).await?)
        } else {
            Ok(self
                .inner
                .backend
                .set_attrs_nofollow(&target, &attrs)
                .await?)
        }
    }
}
