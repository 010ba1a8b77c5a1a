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
//! - this module: [`Vfs`] and its shared state, construction, sessions,
//!   and the small path operations (links, usage).
//! - `lookup`: the one lookup of a path and of a listing as a session
//!   sees it, with its single order of precedence.
//! - `changes`: mkdir, rmdir, remove, rename, setstat.
//! - `virtual_dirs`: directories only Ferry knows of on object stores.
//! - `hashing`: the exec hashes of a path.
//! - [`file`]: [`VfsFile`], an open file; atomic uploads live there, with
//!   `uploads` (the registry of uploads in progress) and `stream` (uploads
//!   to object stores, front to back).
//! - `dircache`: listings kept for `--dir-cache-time`.
//! - `cache`: the `--vfs-cache-mode` file cache on disk.
//! - `chunked`, `readahead`: streamed and chunked reads on network stores,
//!   within the server's [`budget`] for read-ahead;
//!   `verify`: whole-file reads checked against the store's hash.
//! - [`hash`]: hashers and the hash cache.
//!
//! The directory cache and the `--vfs-cache-mode` file cache plug in below
//! [`Vfs`] and [`VfsFile`]; their callers do not change.

pub mod attr;
pub mod budget;
mod cache;
mod changes;
mod chunked;
mod dircache;
pub mod error;
pub mod file;
mod filtering;
pub mod hash;
mod hashing;
pub mod leftovers;
mod lookup;
pub mod options;
mod readahead;
mod stream;
mod uploads;
mod verify;
mod virtual_dirs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_backend::{Backend, OpenOptions, RelPath, SetAttrs, Usage};

pub use attr::Attr;
pub use error::{Result, VfsError};
pub use ferry_backend as backend;
pub use file::{OpenFlags, VfsFile};
pub use filtering::FilterRef;
pub use lookup::Listing;
pub use options::{CacheMode, CacheOptions, StatsRef, VfsOptions};

/// What a VFS's caches hold ([`Vfs::cache_stats`]).
#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    /// Directories whose listings are cached.
    pub dirs: usize,
    /// Entries in those listings.
    pub entries: usize,
    /// Files in the file cache.
    pub cached_files: usize,
    /// Bytes of file data the file cache holds on disk.
    pub cached_bytes: u64,
    /// Files with changes not yet uploaded.
    pub dirty_files: usize,
    /// Of those, being uploaded now.
    pub uploading: usize,
    /// Of those, waiting for their upload.
    pub uploads_queued: usize,
    /// The file cache's data and metadata folders (none in mode off).
    pub data_dir: Option<std::path::PathBuf>,
    /// See `data_dir`.
    pub meta_dir: Option<std::path::PathBuf>,
}

/// One file in the upload queue ([`Vfs::upload_queue`]).
#[derive(Debug, Clone)]
pub struct QueuedUpload {
    /// Its number, for [`Vfs::set_upload_expiry`].
    pub id: u64,
    /// Its path.
    pub name: RelPath,
    /// Its size now.
    pub size: u64,
    /// Time until its upload starts (zero once due).
    pub expiry: std::time::Duration,
    /// Time since it was due (zero before).
    pub overdue: std::time::Duration,
    /// Failed attempts so far.
    pub tries: u32,
    /// Being uploaded now.
    pub uploading: bool,
}

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
    /// Directories only Ferry knows of (stores without real directories).
    pub(crate) vdirs: Arc<virtual_dirs::VirtualDirs>,
    /// Listings kept for `--dir-cache-time`.
    pub(crate) dircache: Arc<dircache::DirCache>,
    /// Listings handed out and still read by some handle.
    pub(crate) views: lookup::Views,
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
        // Single lookups are worth keeping where each is a round trip.
        let dircache = Arc::new(dircache::DirCache::new(
            opts.dir_cache_time,
            !caps.low_latency,
        ));
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
        let vdirs = Arc::new(virtual_dirs::VirtualDirs::new(
            caps.real_directories,
            dircache.clone(),
        ));
        let cache = if opts.cache_mode == CacheMode::Off {
            None
        } else {
            // An upload from the cache lands: listings of its name are
            // forgotten first, and its directories stop being only Ferry's.
            let (dc, vd) = (dircache.clone(), vdirs.clone());
            let on_upload: cache::OnUpload = Arc::new(move |path, stage| match stage {
                // The file shows from the cache until it is committed; the
                // listing has it before the cache lets it go.
                cache::UploadStage::Committing(meta) => {
                    dc.forget_lookups(path);
                    vd.landed(path, Some(meta));
                }
            });
            Some(cache::FileCache::open(
                backend.clone(),
                opts.cache_mode,
                opts.cache.clone(),
                opts.buffer_size,
                on_upload,
            )?)
        };
        let inner = Arc::new(Inner {
            backend,
            opts,
            uploads: uploads::Uploads::default(),
            sessions: std::sync::atomic::AtomicU64::new(0),
            hashes: hash::HashCache::new(100_000),
            vdirs,
            dircache,
            views: lookup::Views::default(),
            writers: Mutex::new(HashMap::new()),
            reorder_budget: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            cache,
        });
        if let Some(c) = &inner.cache {
            c.start();
        }
        leftovers::start(&inner);
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
    pub(crate) fn pending_for(&self, path: &RelPath) -> Option<RelPath> {
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

    /// The entries of directory `path`, sorted by name, as this session
    /// sees them (see [`lookup`]). Ferry's temporary upload files are
    /// hidden; a file being uploaded is listed under its own name with the
    /// upload's attributes, as [`Vfs::stat`] shows it.
    ///
    /// The listing is shared: sessions opening a directory whose listing
    /// has not changed meanwhile get the same one.
    pub async fn read_dir(&self, path: &RelPath) -> Result<Listing> {
        self.inner.listing(self.viewer, path).await
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
        if flags.create {
            self.inner.check_new_name(self.viewer, path, false).await?;
        } else {
            self.inner.check_served(self.viewer, path, true).await?;
        }
        VfsFile::open(self.inner.clone(), self.viewer, path, flags, mode).await
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
        self.inner.check_new_name(self.viewer, link, false).await?;
        self.inner.check_link_target(self.viewer, &resolved).await?;
        let stored = relative_target(&parent, &resolved);
        let _forget = self.inner.forget_around(link, false);
        Ok(self.inner.backend.symlink(&stored, link).await?)
    }

    /// The target of symbolic link `path`, as stored.
    pub async fn readlink(&self, path: &RelPath) -> Result<Vec<u8>> {
        if !self.capabilities().symlinks {
            return Err(VfsError::Unsupported("symbolic links"));
        }
        self.inner.check_served(self.viewer, path, false).await?;
        Ok(self.inner.backend.read_link(path).await?)
    }

    /// Create hard link `link` to `existing`.
    pub async fn hardlink(&self, existing: &RelPath, link: &RelPath) -> Result<()> {
        self.check_writable()?;
        if !self.capabilities().hard_links {
            return Err(VfsError::Unsupported("hard links"));
        }
        self.inner
            .check_served(self.viewer, existing, false)
            .await?;
        self.inner.check_new_name(self.viewer, link, false).await?;
        let _forget_link = self.inner.forget_around(link, false);
        let _forget_existing = self.inner.forget_around(existing, false);
        Ok(self.inner.backend.hard_link(existing, link).await?)
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

    /// What the caches hold now, for `vfs/stats` and the metrics.
    pub fn cache_stats(&self) -> CacheStats {
        let (files, bytes, dirty, uploading) = self
            .inner
            .cache
            .as_ref()
            .map_or((0, 0, 0, 0), |c| c.usage());
        CacheStats {
            dirs: self.inner.dircache.len(),
            entries: self.inner.dircache.entries(),
            cached_files: files,
            cached_bytes: bytes,
            dirty_files: dirty,
            uploading,
            uploads_queued: dirty - uploading,
            data_dir: self.inner.cache.as_ref().map(|c| c.opts.data_dir.clone()),
            meta_dir: self.inner.cache.as_ref().map(|c| c.opts.meta_dir.clone()),
        }
    }

    /// The files waiting to be uploaded from the file cache (empty in
    /// cache mode off).
    pub fn upload_queue(&self) -> Vec<QueuedUpload> {
        self.inner
            .cache
            .as_ref()
            .map_or_else(Vec::new, |c| c.queue())
    }

    /// Start the upload of queued file `id` after `at` from now (zero:
    /// at once). False if no file with that id is queued.
    pub fn set_upload_expiry(&self, id: u64, at: std::time::Duration) -> bool {
        self.inner
            .cache
            .as_ref()
            .is_some_and(|c| c.set_expiry(id, at))
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

    /// Space on the backend.
    pub async fn statfs(&self) -> Result<Usage> {
        if !self.capabilities().usage {
            return Err(VfsError::Unsupported("usage"));
        }
        Ok(self.inner.backend.usage().await?)
    }
}

impl Inner {
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
        a.permissions = a.permissions.map(|p| p & self.opts.mode_bits());
        if !caps.ownership || self.opts.uid.is_some() || self.opts.gid.is_some() {
            a.owner = None;
        }
        a
    }

    pub(crate) fn open_options(&self, flags: &OpenFlags, mode: Option<u32>) -> OpenOptions {
        let mode = mode.unwrap_or(self.opts.file_perms) & !self.opts.umask & self.opts.mode_bits();
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
mod tests_filter;
#[cfg(test)]
mod tests_modes;
#[cfg(test)]
mod tests_object;
