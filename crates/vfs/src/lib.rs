//! Ferry's VFS: file-system semantics over any [`Backend`].
//!
//! The server speaks SFTP; this crate knows nothing of it. It takes paths
//! that are already resolved beneath the root ([`RelPath`]), applies the
//! serving policy (read-only, permissions, owners, modification times) and
//! gives handles with positional reads and writes.
//!
//! # Layout
//! - [`options`]: [`VfsOptions`] and [`CacheMode`], typed once by the CLI.
//! - [`error`]: [`VfsError`], mapped once from backend errors.
//! - [`attr`]: [`Attr`], what a client sees of a file.
//! - [`file`]: [`VfsFile`], an open file; atomic uploads live there.
//! - this module: [`Vfs`], the operations on paths.
//!
//! The directory cache and the `--vfs-cache-mode` file cache plug in below
//! [`Vfs`] and [`VfsFile`]; their callers do not change.

pub mod attr;
mod cache;
mod chunked;
mod dircache;
pub mod error;
pub mod file;
pub mod hash;
pub mod options;
mod readahead;
mod stream;
mod uploads;
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ferry_backend::{
    Backend, ErrorKind, FileType, Metadata, OpenOptions, RelPath, SetAttrs, Usage,
};

pub use attr::Attr;
pub use error::{Result, VfsError};
pub use ferry_backend as backend;
pub use file::{OpenFlags, VfsFile};
pub use options::{CacheMode, CacheOptions, VfsOptions};

/// The file-system view of one backend. Cheap to clone; clones share state.
///
/// Each client session should work through its own [`Vfs::session`] view,
/// so that it sees its own uploads in progress (see [`file`]).
#[derive(Clone)]
pub struct Vfs {
    inner: Arc<Inner>,
    /// The session this view belongs to (0: none).
    viewer: u64,
}

pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) opts: VfsOptions,
    /// Uploads in progress. Its lock is the only one in the crate.
    pub(crate) uploads: uploads::Uploads,
    /// The last session view handed out.
    pub(crate) sessions: std::sync::atomic::AtomicU64,
    /// Hashes already computed.
    pub(crate) hashes: hash::HashCache,
    /// Directories made by clients on a store without real directories,
    /// with when they were made. Such a directory exists in Ferry's view
    /// until it is removed or a file lands in it (the store then shows it
    /// as the prefix of that file).
    pub(crate) virtual_dirs: Mutex<BTreeMap<RelPath, SystemTime>>,
    /// Listings kept for `--dir-cache-time`.
    pub(crate) dircache: Arc<dircache::DirCache>,
    /// Paths open for writing, and how many times: their size and time
    /// change under the cache, so they are always asked of the backend.
    pub(crate) writers: Mutex<HashMap<RelPath, usize>>,
    /// Bytes waiting in the reorder buffers of all streamed uploads.
    pub(crate) reorder_budget: Arc<std::sync::atomic::AtomicUsize>,
    /// The on-disk file cache, unless `--vfs-cache-mode off`.
    pub(crate) cache: Option<Arc<cache::FileCache>>,
}

impl Vfs {
    /// A VFS over `backend` with `opts`.
    ///
    /// # Panics
    /// If the file cache (any cache mode but off) cannot be set up; use
    /// [`Vfs::try_new`] to handle that.
    pub fn new(backend: Arc<dyn Backend>, opts: VfsOptions) -> Self {
        match Self::try_new(backend, opts) {
            Ok(v) => v,
            Err(e) => panic!("cannot set up the VFS: {e}"),
        }
    }

    /// A VFS over `backend` with `opts`. With a cache mode other than off,
    /// the file cache directories are made and what an earlier run left in
    /// them is taken up (changed files are uploaded). Must run inside a
    /// Tokio runtime for the cache's background work.
    pub fn try_new(backend: Arc<dyn Backend>, mut opts: VfsOptions) -> std::io::Result<Self> {
        let caps = backend.capabilities();
        // A store that takes no changes is served read-only.
        opts.read_only |= caps.read_only;
        let cache = if opts.cache_mode == CacheMode::Off {
            None
        } else {
            Some(cache::FileCache::open(
                backend.clone(),
                opts.cache_mode,
                opts.cache.clone(),
                opts.buffer_size,
            )?)
        };
        let dircache = Arc::new(dircache::DirCache::new(opts.dir_cache_time));
        if caps.change_watch && dircache.enabled() && !opts.poll_interval.is_zero() {
            let dc = dircache.clone();
            let notify: ferry_backend::ChangeNotify =
                Arc::new(move |p: Option<&RelPath>| match p {
                    Some(p) => dc.forget_tree(p),
                    None => dc.clear(),
                });
            match backend.watch_changes(notify) {
                Ok(()) => tracing::debug!("{}: watching for changes", backend.describe()),
                Err(e) => tracing::warn!(
                    "{}: changes made outside Ferry will show only after --dir-cache-time: {e}",
                    backend.describe()
                ),
            }
        }
        let inner = Arc::new(Inner {
            backend,
            opts,
            uploads: uploads::Uploads::default(),
            sessions: std::sync::atomic::AtomicU64::new(0),
            hashes: hash::HashCache::new(100_000),
            virtual_dirs: Mutex::new(BTreeMap::new()),
            dircache,
            writers: Mutex::new(HashMap::new()),
            reorder_budget: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            cache,
        });
        if let Some(c) = &inner.cache {
            c.attach(Arc::downgrade(&inner));
        }
        Ok(Vfs { inner, viewer: 0 })
    }

    /// Files changed through the cache and not yet uploaded.
    pub fn pending_uploads(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, |c| c.pending())
    }

    /// Start uploading every changed file now (at shutdown) and wait until
    /// none is pending or `give_up` resolves. Returns how many are still
    /// pending (they stay in the cache and are uploaded on the next start).
    pub async fn flush_uploads(&self, give_up: impl std::future::Future<Output = ()>) -> usize {
        match &self.inner.cache {
            Some(c) => c.flush(give_up).await,
            None => 0,
        }
    }

    /// Run the cache cleaner now (tests; it runs every
    /// `--vfs-cache-poll-interval` by itself); returns how many files it
    /// dropped.
    #[cfg(test)]
    pub(crate) fn clean_cache(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, |c| c.clean())
    }

    /// A view for one client session: it shares everything with `self`
    /// but sees only its own uploads in progress.
    pub fn session(&self) -> Vfs {
        let id = self
            .inner
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        Vfs {
            inner: self.inner.clone(),
            viewer: id,
        }
    }

    /// The options this VFS was made with.
    pub fn options(&self) -> &VfsOptions {
        &self.inner.opts
    }

    /// The backend's capabilities.
    pub fn capabilities(&self) -> ferry_backend::Capabilities {
        self.inner.backend.capabilities()
    }

    /// Is every change refused?
    pub fn is_read_only(&self) -> bool {
        self.inner.opts.read_only
    }

    fn check_writable(&self) -> Result<()> {
        if self.inner.opts.read_only {
            Err(VfsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The temporary file an upload to `path` is being written to, if any.
    fn pending_for(&self, path: &RelPath) -> Option<RelPath> {
        self.inner.uploads.temp_for(self.viewer, path)
    }

    /// Attributes of `path`, following symbolic links. A file that is being
    /// uploaded shows its upload in progress.
    pub async fn stat(&self, path: &RelPath) -> Result<Attr> {
        let meta = self.inner.meta(self.viewer, path, true).await?;
        Ok(self.inner.attr(&meta))
    }

    /// Attributes of `path` itself.
    pub async fn lstat(&self, path: &RelPath) -> Result<Attr> {
        let meta = self.inner.meta(self.viewer, path, false).await?;
        Ok(self.inner.attr(&meta))
    }

    /// The entries of directory `path`, sorted by name. Ferry's temporary
    /// upload files are hidden; a file being uploaded is listed under its
    /// own name with the upload's attributes, as [`Vfs::stat`] shows it.
    pub async fn read_dir(&self, path: &RelPath) -> Result<Vec<(Vec<u8>, Attr)>> {
        let mut entries: Vec<ferry_backend::DirEntry> = match self.inner.list(path).await {
            Err(e) if e.kind() == ErrorKind::NotFound && self.inner.virtual_dir(path).is_some() => {
                Vec::new()
            }
            r => (*r?).clone(),
        };
        // Directories made here that the store does not show (yet).
        for (name, meta) in self.inner.virtual_children(path) {
            if !entries.iter().any(|e| e.name == name) {
                entries.push(ferry_backend::DirEntry { name, meta });
            }
        }
        // Uploads in progress in this directory: temporary name -> final name.
        let uploads: HashMap<Vec<u8>, Vec<u8>> = self.inner.uploads.in_dir(self.viewer, path);
        let mut by_name: std::collections::BTreeMap<Vec<u8>, Attr> = Default::default();
        let mut in_progress = Vec::new();
        for e in entries {
            if !file::is_temp_name(&e.name) {
                by_name
                    .entry(e.name)
                    .or_insert_with(|| self.inner.attr(&e.meta));
            } else if let Some(fin) = uploads.get(&e.name) {
                in_progress.push((fin.clone(), self.inner.attr(&e.meta)));
            }
        }
        for (name, attr) in in_progress {
            by_name.insert(name, attr);
        }
        for (name, w) in self.inner.uploads.streams_in_dir(self.viewer, path) {
            by_name.insert(name, self.inner.attr(&w.metadata()));
        }
        // Files changed in the cache and not uploaded yet.
        if let Some(c) = &self.inner.cache {
            for (name, meta) in c.visible_in(path) {
                by_name.insert(name, self.inner.attr(&meta));
            }
        }
        Ok(by_name.into_iter().collect())
    }

    /// Open a file. See [`OpenFlags`] for the semantics; a truncating open
    /// writes to a temporary file that replaces `path` on a successful
    /// [`VfsFile::close`].
    pub async fn open(
        &self,
        path: &RelPath,
        flags: OpenFlags,
        mode: Option<u32>,
    ) -> Result<VfsFile> {
        if flags.writes() {
            self.check_writable()?;
        }
        if path.is_root() {
            return Err(VfsError::IsADirectory);
        }
        VfsFile::open(self.inner.clone(), self.viewer, path, flags, mode).await
    }

    /// Create directory `path`; fails when anything exists there.
    pub async fn mkdir(&self, path: &RelPath, mode: Option<u32>) -> Result<()> {
        self.check_writable()?;
        if path.is_root() {
            return Err(VfsError::AlreadyExists);
        }
        let mode = mode.unwrap_or(self.inner.opts.dir_perms) & !self.inner.opts.umask & 0o7777;
        let _forget = self.inner.forget_around(path, false);
        if self.capabilities().real_directories {
            return Ok(self.inner.backend.create_dir(path, Some(mode)).await?);
        }
        // The store has only prefixes of objects: the directory lives in
        // Ferry's view until a file lands in it.
        if self.inner.stat_entry(path).await?.is_some() {
            return Err(VfsError::AlreadyExists);
        }
        self.inner.check_parent_dir(path).await?;
        self.inner
            .lock_vdirs()
            .insert(path.clone(), SystemTime::now());
        Ok(())
    }

    /// Remove the empty directory `path`; a file is refused.
    pub async fn rmdir(&self, path: &RelPath) -> Result<()> {
        self.check_writable()?;
        if path.is_root() {
            return Err(VfsError::PermissionDenied);
        }
        let _forget = self.inner.forget_around(path, true);
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
        if listed || !self.inner.virtual_children(path).is_empty() {
            return Err(VfsError::NotEmpty);
        }
        let was_virtual = self.inner.lock_vdirs().remove(path).is_some();
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
                        self.inner.emptied(path);
                        Ok(())
                    }
                };
            }
        }
        match self.inner.backend.remove_file(path).await {
            Err(e) if had_upload && e.kind() == ErrorKind::NotFound => Ok(()),
            r => {
                r?;
                self.inner.emptied(path);
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
                self.inner.emptied(from);
                return Ok(());
            }
        }
        if replace {
            // Replacing a directory (even an empty one) is not what a client
            // asking for posix-rename of a file means.
            if let Ok(m) = self.inner.backend.lstat(to).await {
                let src_is_dir = match self.inner.backend.lstat(from).await {
                    Ok(src) => src.is_dir(),
                    // Only an upload in progress: a file.
                    Err(e)
                        if e.kind() == ErrorKind::NotFound && self.pending_for(from).is_some() =>
                    {
                        false
                    }
                    Err(e) => return Err(e.into()),
                };
                if m.is_dir() != src_is_dir {
                    return Err(if m.is_dir() {
                        VfsError::IsADirectory
                    } else {
                        VfsError::NotADirectory
                    });
                }
            }
        }
        if !self.capabilities().real_directories && self.inner.virtual_dir(from).is_some() {
            // A directory only Ferry knows of, unless files landed in it.
            let on_store = match self.inner.backend.list(from).await {
                Ok(entries) => !entries.is_empty(),
                Err(e) if e.kind() == ErrorKind::NotFound => false,
                Err(e) => return Err(e.into()),
            };
            if !on_store {
                if self.inner.stat_entry(to).await?.is_some() {
                    return Err(VfsError::AlreadyExists);
                }
                self.inner.check_parent_dir(to).await?;
                {
                    let mut vdirs = self.inner.lock_vdirs();
                    let moved: Vec<RelPath> = vdirs
                        .keys()
                        .filter(|p| p.starts_with(from))
                        .cloned()
                        .collect();
                    for p in moved {
                        if let Some(t) = vdirs.remove(&p) {
                            if let Some(dest) = p.rebase(from, to) {
                                vdirs.insert(dest, t);
                            }
                        }
                    }
                }
                if let Some(c) = &self.inner.cache {
                    c.rename(from, to, None).await?;
                }
                return Ok(());
            }
        }
        let upload_moved = self.inner.uploads.rename(self.viewer, from, to);
        match self.inner.backend.rename(from, to, replace).await {
            // The file existed only as an upload in progress: moving the
            // upload was the whole rename.
            Err(e) if upload_moved && e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => {
                // Undo, so uploads commit where the store still has them.
                self.inner.uploads.rename(self.viewer, to, from);
                Err(e.into())
            }
            Ok(()) => {
                self.inner.emptied(from);
                self.inner.landed(to);
                if let Some(c) = &self.inner.cache {
                    c.rename(from, to, Some(true)).await?;
                }
                Ok(())
            }
        }
    }

    /// Create a symbolic link at `link` to `target` (a client path).
    ///
    /// The target is resolved beneath the root and stored relative to the
    /// link's directory, so the link means the same to Ferry's clients and
    /// to anything else using the directory, and never points outside.
    pub async fn symlink(&self, target: &[u8], link: &RelPath) -> Result<()> {
        self.check_writable()?;
        if !self.capabilities().symlinks {
            return Err(VfsError::Unsupported("symbolic links"));
        }
        let parent = link.parent().ok_or(VfsError::AlreadyExists)?;
        let resolved = RelPath::resolve(&parent, target).map_err(|_| VfsError::InvalidName)?;
        let stored = relative_target(&parent, &resolved);
        let _forget = self.inner.forget_around(link, false);
        Ok(self.inner.backend.symlink(&stored, link).await?)
    }

    /// The target of symbolic link `path`, as stored.
    pub async fn readlink(&self, path: &RelPath) -> Result<Vec<u8>> {
        if !self.capabilities().symlinks {
            return Err(VfsError::Unsupported("symbolic links"));
        }
        Ok(self.inner.backend.read_link(path).await?)
    }

    /// Create hard link `link` to `existing`.
    pub async fn hardlink(&self, existing: &RelPath, link: &RelPath) -> Result<()> {
        self.check_writable()?;
        if !self.capabilities().hard_links {
            return Err(VfsError::Unsupported("hard links"));
        }
        let _forget_link = self.inner.forget_around(link, false);
        let _forget_existing = self.inner.forget_around(existing, false);
        Ok(self.inner.backend.hard_link(existing, link).await?)
    }

    /// Change attributes of `path`; `follow` follows a final symbolic link.
    /// An upload in progress to `path` gets the change.
    pub async fn setstat(&self, path: &RelPath, attrs: &SetAttrs, follow: bool) -> Result<()> {
        self.check_writable()?;
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

    /// Forget cached listings: of everything (`None`, as SIGHUP does), or
    /// of `path` and what is below it. The next request asks the backend.
    pub fn forget(&self, path: Option<&RelPath>) {
        match path {
            None => self.inner.dircache.clear(),
            Some(p) => self.inner.dircache.forget_tree(p),
        }
    }

    /// Read directory `dir` afresh into the cache, and with `recursive`
    /// every directory below it. Returns how many directories were read.
    /// (For the remote-control API's `vfs/refresh`.)
    pub async fn refresh(&self, dir: &RelPath, recursive: bool) -> Result<usize> {
        let mut todo = vec![dir.clone()];
        let mut done = 0;
        while let Some(d) = todo.pop() {
            self.inner.dircache.forget(&d);
            let entries = self.inner.list(&d).await?;
            done += 1;
            if recursive {
                for e in entries.iter().filter(|e| e.meta.is_dir()) {
                    if let Ok(child) = d.join(&e.name) {
                        todo.push(child);
                    }
                }
            }
        }
        Ok(done)
    }

    /// Remove the temporary files of every upload still in progress (at
    /// shutdown): the files they would have replaced stay as they were.
    pub async fn discard_pending_uploads(&self) {
        for t in self.inner.uploads.drain().into_iter().map(|u| u.temp) {
            if let Err(e) = self.inner.backend.remove_file(&t).await {
                tracing::warn!("could not remove unfinished upload {t}: {e}");
            }
        }
    }

    /// The `kind` hash of file `path` as lower-case hex: the backend's
    /// stored hash when it keeps one, else computed by streaming the file
    /// (never holding it whole) and cached while the file's size,
    /// modification time and change marker stay the same. This session's upload in progress
    /// is hashed as it stands.
    pub async fn hash(&self, path: &RelPath, kind: ferry_backend::HashKind) -> Result<String> {
        if self.inner.opts.no_checksum {
            return Err(VfsError::Unsupported("hashes (--no-checksum)"));
        }
        if let Some(c) = &self.inner.cache {
            if let Some(item) = c.get(path).filter(|i| i.is_visible()) {
                return c.hash_item(&item, kind).await;
            }
        }
        let target = self.pending_for(path).unwrap_or_else(|| path.clone());
        let backend = &self.inner.backend;
        let meta = backend.stat(&target).await?;
        if meta.is_dir() {
            return Err(VfsError::IsADirectory);
        }
        if backend.capabilities().native_hashes.contains(&kind) {
            if let Some(h) = backend.stored_hash(&target, kind).await? {
                return Ok(h.to_ascii_lowercase());
            }
        }
        let fp = hash::Fingerprint {
            size: meta.size,
            mtime: meta.mtime,
            change: meta.change,
        };
        if let Some(h) = self.inner.hashes.get(&target, kind, &fp) {
            return Ok(h);
        }
        const CHUNK: usize = 1 << 20;
        // Chunks this small (a small file, or a file's tail) are hashed on
        // the calling thread.
        const SMALL: usize = 64 << 10;
        let file = backend
            .open_file(
                &target,
                OpenOptions {
                    read: true,
                    ..Default::default()
                },
            )
            .await?;
        let hasher = hash::Hasher::new(kind).ok_or(VfsError::Unsupported("this hash type"))?;
        // Two buffers: the next chunk is read while the last one is hashed
        // on the blocking pool (hashing is CPU work; keep it off the async
        // workers), so the time is that of the slower of the two.
        let mut hasher = Some(hasher);
        let mut hashing: Option<tokio::task::JoinHandle<(hash::Hasher, Vec<u8>)>> = None;
        let mut free = Vec::with_capacity(CHUNK);
        let mut offset = 0u64;
        loop {
            free.clear();
            let buf = file.read_at(offset, CHUNK, free).await?;
            free = match hashing.take() {
                Some(task) => {
                    let (h, b) = task
                        .await
                        .map_err(|e| VfsError::Internal(format!("hashing failed: {e}")))?;
                    hasher = Some(h);
                    b
                }
                // (`read_at` sizes it when it is first used.)
                None => Vec::new(),
            };
            if buf.is_empty() {
                break;
            }
            offset += buf.len() as u64;
            let mut h = hasher.take().expect("the hasher is back");
            if buf.len() <= SMALL {
                // Microseconds of work: cheaper here than a hand-off.
                h.update(&buf);
                hasher = Some(h);
                free = buf;
                continue;
            }
            hashing = Some(tokio::task::spawn_blocking(move || {
                h.update(&buf);
                (h, buf)
            }));
        }
        let hex = hasher.take().expect("the hasher is back").finish_hex();
        // Cache only if the file did not change while it was read.
        if let Ok(after) = backend.stat(&target).await {
            let unchanged = hash::Fingerprint {
                size: after.size,
                mtime: after.mtime,
                change: after.change,
            } == fp;
            if unchanged && offset == fp.size {
                self.inner.hashes.put(&target, kind, fp, hex.clone());
            }
        }
        Ok(hex)
    }

    /// Space on the backend.
    pub async fn statfs(&self) -> Result<Usage> {
        if !self.capabilities().usage {
            return Err(VfsError::Unsupported("usage"));
        }
        Ok(self.inner.backend.usage().await?)
    }
}

impl Inner {
    /// The listing of `dir`, from the cache while it is fresh.
    pub(crate) async fn list(
        &self,
        dir: &RelPath,
    ) -> std::result::Result<Arc<Vec<ferry_backend::DirEntry>>, ferry_backend::BackendError> {
        if let Some(entries) = self.dircache.get(dir) {
            return Ok(entries);
        }
        let generation = self.dircache.generation();
        let entries = Arc::new(self.backend.list(dir).await?);
        self.dircache.put(dir, entries.clone(), generation);
        Ok(entries)
    }

    /// The metadata of `path` as `viewer` sees it: its own upload in
    /// progress, else the parent's cached listing, else the backend;
    /// `follow` follows a final symbolic link.
    pub(crate) async fn meta(&self, viewer: u64, path: &RelPath, follow: bool) -> Result<Metadata> {
        if let Some(m) = self.cache.as_ref().and_then(|c| c.visible(path)) {
            return Ok(m);
        }
        if let Some(temp) = self.uploads.temp_for(viewer, path) {
            let m = if follow {
                self.backend.stat(&temp).await?
            } else {
                self.backend.lstat(&temp).await?
            };
            return Ok(m);
        }
        if let Some(w) = self.uploads.stream_for(viewer, path) {
            return Ok(w.metadata());
        }
        let open_for_writing = self.lock_writers().contains_key(path);
        if !open_for_writing {
            match self.dircache.lookup(path) {
                dircache::Lookup::Found(m) if !(follow && m.file_type == FileType::Symlink) => {
                    return Ok(m)
                }
                dircache::Lookup::Missing => {
                    return self.virtual_dir(path).ok_or(VfsError::NotFound);
                }
                _ => {}
            }
        }
        let r = if follow {
            self.backend.stat(path).await
        } else {
            self.backend.lstat(path).await
        };
        match r {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(self.virtual_dir(path).ok_or(e)?),
            r => Ok(r?),
        }
    }

    fn lock_writers(&self) -> std::sync::MutexGuard<'_, HashMap<RelPath, usize>> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle that writes `path` was opened.
    pub(crate) fn writer_opened(&self, path: &RelPath) {
        *self.lock_writers().entry(path.clone()).or_insert(0) += 1;
        self.dircache.forget(path);
    }

    /// A handle that writes `path` was closed: what it wrote is on the
    /// store (or was discarded); the cache forgets what it knew.
    pub(crate) fn writer_closed(&self, path: &RelPath) {
        {
            let mut w = self.lock_writers();
            if let Some(n) = w.get_mut(path) {
                *n -= 1;
                if *n == 0 {
                    w.remove(path);
                }
            }
        }
        self.dircache.forget(path);
    }

    /// Forget what the cache knows of `path` (and below it, with `tree`)
    /// now, and again when the returned guard drops, after the change went
    /// to the store: a listing read by another session in between cannot
    /// outlive the change.
    pub(crate) fn forget_around(&self, path: &RelPath, tree: bool) -> Forget<'_> {
        let f = Forget {
            cache: &self.dircache,
            path: path.clone(),
            tree,
        };
        f.run();
        f
    }

    fn lock_vdirs(&self) -> std::sync::MutexGuard<'_, BTreeMap<RelPath, SystemTime>> {
        self.virtual_dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The metadata of a directory only Ferry knows of.
    pub(crate) fn virtual_dir(&self, path: &RelPath) -> Option<Metadata> {
        if self.backend.capabilities().real_directories {
            return None;
        }
        let t = *self.lock_vdirs().get(path)?;
        Some(dir_meta(t))
    }

    /// Directories only Ferry knows of directly inside `dir`.
    pub(crate) fn virtual_children(&self, dir: &RelPath) -> Vec<(Vec<u8>, Metadata)> {
        if self.backend.capabilities().real_directories {
            return Vec::new();
        }
        self.lock_vdirs()
            .iter()
            .filter(|(p, _)| p.parent().as_ref() == Some(dir))
            .filter_map(|(p, t)| Some((p.file_name()?.to_vec(), dir_meta(*t))))
            .collect()
    }

    /// What is at `path`, if anything (directories only Ferry knows of
    /// included).
    pub(crate) async fn stat_entry(&self, path: &RelPath) -> Result<Option<Metadata>> {
        if let Some(m) = self.cache.as_ref().and_then(|c| c.visible(path)) {
            return Ok(Some(m));
        }
        match self.backend.stat(path).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(self.virtual_dir(path)),
            Err(e) => Err(e.into()),
        }
    }

    /// On a store without real directories, check that the directory a new
    /// entry goes into exists (the store itself would accept any prefix).
    pub(crate) async fn check_parent_dir(&self, path: &RelPath) -> Result<()> {
        if self.backend.capabilities().real_directories {
            return Ok(());
        }
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if parent.is_root() {
            return Ok(());
        }
        match self.stat_entry(&parent).await? {
            Some(m) if m.is_dir() => Ok(()),
            Some(_) => Err(VfsError::NotADirectory),
            None => Err(VfsError::NotFound),
        }
    }

    /// A file was committed at `path`: the directories above it now exist
    /// on the store, so Ferry stops keeping them.
    pub(crate) fn landed(&self, path: &RelPath) {
        if self.backend.capabilities().real_directories {
            return;
        }
        let mut vdirs = self.lock_vdirs();
        if vdirs.is_empty() {
            return;
        }
        let mut p = path.parent();
        while let Some(dir) = p {
            if dir.is_root() {
                break;
            }
            if vdirs.remove(&dir).is_some() {
                // Its parent's listing was read while it was only ours.
                self.dircache.forget(&dir);
            }
            p = dir.parent();
        }
    }

    /// `path` left its directory. On a store without real directories the
    /// directory would vanish with its last file; a client that emptied it
    /// still expects it (to remove it, or to put more in it), so Ferry keeps
    /// it in its view until it is removed.
    pub(crate) fn emptied(&self, path: &RelPath) {
        if self.backend.capabilities().real_directories {
            return;
        }
        // The directories above it may have had nothing else either.
        let now = SystemTime::now();
        let mut vdirs = self.lock_vdirs();
        let mut p = path.parent();
        while let Some(dir) = p.filter(|d| !d.is_root()) {
            p = dir.parent();
            vdirs.entry(dir).or_insert(now);
        }
    }

    pub(crate) fn attr(&self, meta: &ferry_backend::Metadata) -> Attr {
        Attr::from_meta(meta, &self.opts, self.backend.capabilities())
    }

    /// Drop the parts of a change that the serving policy ignores.
    pub(crate) fn filter_setattrs(&self, attrs: &SetAttrs) -> SetAttrs {
        let caps = self.backend.capabilities();
        let mut a = attrs.clone();
        if self.opts.no_modtime || !caps.set_mtime {
            a.times = None;
        }
        if !caps.permissions || self.opts.override_perms {
            a.permissions = None;
        }
        if !caps.ownership || self.opts.uid.is_some() || self.opts.gid.is_some() {
            a.owner = None;
        }
        a
    }

    pub(crate) fn open_options(&self, flags: &OpenFlags, mode: Option<u32>) -> OpenOptions {
        let mode = mode.unwrap_or(self.opts.file_perms) & !self.opts.umask & 0o7777;
        OpenOptions {
            read: flags.read,
            // Creating or truncating needs write access to the file even
            // when the handle itself is read-only.
            write: flags.write || flags.append || flags.create || flags.truncate,
            create: flags.create,
            create_new: flags.exclusive,
            truncate: flags.truncate,
            append: flags.append,
            mode: Some(mode),
        }
    }
}

/// See [`Inner::forget_around`].
pub(crate) struct Forget<'a> {
    cache: &'a dircache::DirCache,
    path: RelPath,
    tree: bool,
}

impl Forget<'_> {
    fn run(&self) {
        if self.tree {
            self.cache.forget_tree(&self.path);
        } else {
            self.cache.forget(&self.path);
        }
    }
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.run();
    }
}

fn dir_meta(mtime: SystemTime) -> Metadata {
    Metadata {
        file_type: FileType::Dir,
        size: 0,
        mtime: Some(mtime),
        atime: None,
        permissions: None,
        owner: None,
        change: None,
    }
}

/// `target` (resolved beneath the root) as a path relative to `dir`.
fn relative_target(dir: &RelPath, target: &RelPath) -> Vec<u8> {
    let d: Vec<&[u8]> = dir.components().collect();
    let t: Vec<&[u8]> = target.components().collect();
    let common = d.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&[u8]> = Vec::new();
    parts.extend(std::iter::repeat_n(&b".."[..], d.len() - common));
    parts.extend(&t[common..]);
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b'/')
}

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cache;
#[cfg(test)]
mod tests_dircache;
#[cfg(test)]
mod tests_object;
