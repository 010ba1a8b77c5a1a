//! The on-disk file cache behind `--vfs-cache-mode minimal|writes|full`.
//!
//! A cached file is a sparse data file under `<cache-dir>/vfs/<remote>/
//! <root>/<path>` plus a record under `vfsMeta/` at the same relative path
//! ([`meta`]). The data file has the file's size; [`ranges`] tracks which
//! bytes are real (written by a client, or fetched from the remote). Bytes
//! not yet present are fetched in 1 MiB chunks when read, and all of them
//! before an upload, so a partial rewrite of a large remote file fetches
//! only what it must until it is uploaded.
//!
//! # Write-back
//! A file a client changed is *dirty*. Its record says so before the first
//! change is acknowledged and again at close, so a crash (even `kill -9`)
//! loses nothing: the next start finds the dirty records and uploads them.
//! The upload starts `--vfs-write-back` after the last writer closed it,
//! with at most `--transfers` uploads at once, each streaming the data file
//! into an atomic upload (a temporary file renamed into place on stores with
//! random-access writes; a single or multipart PUT on object stores). A
//! change, rename or remove during an upload cancels it before it commits.
//! A failed upload stays dirty and is retried, waiting 1 s, then twice as
//! long each time up to five minutes, with a warning each time; it is never
//! dropped.
//!
//! # Eviction
//! Every `--vfs-cache-poll-interval`, and at once when the cache disk is
//! full, clean items nobody has open are dropped: those unused for longer
//! than `--vfs-cache-max-age`, then the least recently used while the cache
//! holds more than `--vfs-cache-max-size` or the disk has less free than
//! `--vfs-cache-min-free-space`. Open and dirty items are never dropped, so
//! the limits can be overshot while they are in use.

pub(crate) mod item;
pub(crate) mod meta;
pub(crate) mod ranges;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ferry_backend::{Backend, Metadata, OpenOptions, RelPath, SetAttrs, UploadOptions};

use crate::options::{CacheMode, CacheOptions};
use crate::{Result, VfsError};
use item::{Item, State};
use ranges::RangeSet;

/// Size of the pieces an upload streams the data file in.
const UPLOAD_PIECE: usize = 4 << 20;
/// Free space the cleaner makes after the cache disk filled up.
const EMERGENCY_FREE: u64 = 8 << 20;
/// The first wait after a failed upload.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Uploads held off by [`FileCache::hold`] until dropped.
pub(crate) struct Held {
    _guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

/// The file cache of one VFS.
pub(crate) struct FileCache {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) opts: CacheOptions,
    pub(crate) mode: CacheMode,
    /// Disk read-ahead per sequential reader (full mode).
    read_ahead: u64,
    items: Mutex<BTreeMap<RelPath, Arc<Item>>>,
    transfers: Arc<tokio::sync::Semaphore>,
    /// Wakes the cleaner early (the cache disk filled up).
    kick: Arc<tokio::sync::Notify>,
    /// The cache disk filled up: the next cleaning frees what it can.
    disk_full: std::sync::atomic::AtomicBool,
    /// Set at shutdown: upload everything dirty now.
    flush: tokio::sync::watch::Sender<bool>,
    /// Told when an upload is about to land and when it has.
    on_upload: OnUpload,
}

/// Where an upload from the cache is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadStage {
    /// About to be committed on the store.
    Committing,
    /// Committed on the store.
    Committed,
}

/// The VFS's part in an upload's landing (forget listings, stop keeping a
/// virtual directory), given to the cache when it is opened.
pub(crate) type OnUpload = Arc<dyn Fn(&RelPath, UploadStage) + Send + Sync>;

impl FileCache {
    /// Open the cache: make its directories and take up what an earlier
    /// run left (dirty files are scheduled for upload).
    pub(crate) fn open(
        backend: Arc<dyn Backend>,
        mode: CacheMode,
        opts: CacheOptions,
        buffer_size: usize,
        on_upload: OnUpload,
    ) -> std::io::Result<Arc<FileCache>> {
        std::fs::create_dir_all(&opts.data_dir)?;
        std::fs::create_dir_all(&opts.meta_dir)?;
        let read_ahead = if mode == CacheMode::Full && !backend.capabilities().low_latency {
            buffer_size as u64 + opts.read_ahead
        } else {
            opts.read_ahead
        };
        let cache = Arc::new(FileCache {
            backend,
            transfers: Arc::new(tokio::sync::Semaphore::new(opts.transfers.max(1))),
            read_ahead,
            opts,
            mode,
            items: Mutex::new(BTreeMap::new()),
            kick: Arc::new(tokio::sync::Notify::new()),
            disk_full: std::sync::atomic::AtomicBool::new(false),
            flush: tokio::sync::watch::channel(false).0,
            on_upload,
        });
        cache.load();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&cache);
            rt.spawn(Self::cleaner(weak));
        }
        Ok(cache)
    }

    /// Start uploading what an earlier run left changed, after the
    /// write-back delay (once the VFS around the cache is ready).
    pub(crate) fn start(self: &Arc<Self>) {
        let dirty: Vec<Arc<Item>> = self
            .lock_items()
            .values()
            .filter(|i| i.lock().dirty)
            .cloned()
            .collect();
        if !dirty.is_empty() {
            tracing::info!(
                "vfs cache: {} file(s) changed before the last stop will be uploaded",
                dirty.len()
            );
        }
        for item in dirty {
            self.schedule(&item, self.opts.write_back);
        }
    }

    fn lock_items(&self) -> MutexGuard<'_, BTreeMap<RelPath, Arc<Item>>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn read_ahead_bytes(&self) -> u64 {
        self.read_ahead
    }

    pub(crate) fn data_path(&self, path: &RelPath) -> PathBuf {
        self.opts.data_dir.join(OsStr::from_bytes(path.as_bytes()))
    }

    pub(crate) fn meta_path(&self, path: &RelPath) -> PathBuf {
        self.opts.meta_dir.join(OsStr::from_bytes(path.as_bytes()))
    }

    /// A cache I/O error as the client sees it. A full disk wakes the
    /// cleaner.
    pub(crate) fn io_error(&self, what: &str, path: &RelPath, e: std::io::Error) -> VfsError {
        if e.raw_os_error() == Some(libc_enospc()) || e.kind() == std::io::ErrorKind::StorageFull {
            tracing::warn!("vfs cache: disk full while {what} {path}; cleaning the cache");
            self.disk_full
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.kick.notify_one();
            return VfsError::NoSpace;
        }
        tracing::warn!("vfs cache: {what} {path}: {e}");
        VfsError::Cache(format!("file cache: {what} {path}: {e}"))
    }

    /// Open (creating) a data file of at least `size` bytes. A stale cached
    /// file where a directory of the path now is, is cleared away.
    pub(crate) fn open_data(&self, path: &Path, size: u64) -> std::io::Result<std::fs::File> {
        let open = || -> std::io::Result<std::fs::File> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            if f.metadata()?.len() < size {
                f.set_len(size)?;
            }
            Ok(f)
        };
        match open() {
            Ok(f) => Ok(f),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotADirectory
                    || e.kind() == std::io::ErrorKind::AlreadyExists
                    || e.kind() == std::io::ErrorKind::IsADirectory =>
            {
                // A file of the cache sits where a directory is needed (the
                // remote changed a file into a directory), or the reverse.
                let mut p = path.to_path_buf();
                loop {
                    if p == self.opts.data_dir {
                        break;
                    }
                    if let Ok(m) = std::fs::symlink_metadata(&p) {
                        if m.is_file() && p != path {
                            std::fs::remove_file(&p)?;
                            break;
                        }
                        if m.is_dir() && p == path {
                            std::fs::remove_dir_all(&p)?;
                            break;
                        }
                    }
                    if !p.pop() {
                        break;
                    }
                }
                open()
            }
            Err(e) => Err(e),
        }
    }

    /// The cached item at `path`, if any.
    pub(crate) fn get(&self, path: &RelPath) -> Option<Arc<Item>> {
        self.lock_items().get(path).cloned()
    }

    /// What clients should see at `path` instead of the remote: a file
    /// with changes not uploaded yet, or open for writing.
    pub(crate) fn visible(&self, path: &RelPath) -> Option<Metadata> {
        let item = self.get(path)?;
        item.is_visible().then(|| item.metadata())
    }

    /// Visible items directly inside `dir`.
    pub(crate) fn visible_in(&self, dir: &RelPath) -> Vec<(Vec<u8>, Metadata)> {
        let items: Vec<(RelPath, Arc<Item>)> = self
            .lock_items()
            .range(dir.clone()..)
            // Keys with `dir` as a byte prefix are contiguous; among them
            // are siblings such as `dir.txt` and `dir 2/x`.
            .take_while(|(p, _)| p.as_bytes().starts_with(dir.as_bytes()))
            .filter(|(p, _)| p.parent().as_ref() == Some(dir))
            .map(|(p, i)| (p.clone(), i.clone()))
            .collect();
        items
            .into_iter()
            .filter(|(_, i)| i.is_visible())
            .filter_map(|(p, i)| Some((p.file_name()?.to_vec(), i.metadata())))
            .collect()
    }

    /// Is any visible item at or below `dir`?
    pub(crate) fn any_visible_below(&self, dir: &RelPath) -> bool {
        self.lock_items()
            .range(dir.clone()..)
            .take_while(|(p, _)| p.as_bytes().starts_with(dir.as_bytes()))
            .any(|(p, i)| p != dir && p.starts_with(dir) && i.is_visible())
    }

    /// Open `path` through the cache. `remote` is the remote file's
    /// metadata (`None`: it has none and the open creates it).
    pub(crate) fn open_item(
        &self,
        path: &RelPath,
        remote: Option<&Metadata>,
        writer: bool,
        mode: Option<u32>,
    ) -> Result<Arc<Item>> {
        let mut items = self.lock_items();
        let mut created = false;
        let item = match items.get(path) {
            Some(item) => {
                let mut st = item.lock();
                let busy = st.dirty || st.opens > 0 || st.waiter;
                if !busy {
                    // A clean copy: still the remote's file?
                    let fp = remote.map(meta::fingerprint);
                    if fp != st.fingerprint {
                        tracing::debug!("vfs cache: {path} changed on the remote; refetching");
                        let fresh = Item::fresh_state(path.clone(), remote);
                        if let Some(f) = &st.file {
                            f.set_len(0)
                                .and_then(|_| f.set_len(fresh.size))
                                .map_err(|e| self.io_error("resetting", path, e))?;
                        } else {
                            let dp = self.data_path(path);
                            let _ = std::fs::remove_file(&dp);
                        }
                        let file = st.file.take();
                        let seq = st.record_seq;
                        let epoch = st.epoch + 1;
                        *st = fresh;
                        st.file = file;
                        st.record_seq = seq;
                        st.epoch = epoch;
                        if remote.is_none() {
                            Self::init_new(&mut st, mode);
                            created = true;
                        }
                    }
                }
                drop(st);
                item.clone()
            }
            None => {
                let item = Item::new(Item::fresh_state(path.clone(), remote));
                if remote.is_none() {
                    Self::init_new(&mut item.lock(), mode);
                    created = true;
                }
                // A leftover data file from an earlier item is stale.
                let _ = std::fs::remove_file(self.data_path(path));
                items.insert(path.clone(), item.clone());
                item
            }
        };
        drop(items);
        {
            let mut st = item.lock();
            st.opens += 1;
            st.atime = SystemTime::now();
            if writer {
                st.writers += 1;
                // Cancel a running upload: a newer version is coming.
                st.generation += 1;
            }
        }
        if let Err(e) = item.file(self) {
            self.release(&item, writer);
            return Err(e);
        }
        // A new file is recorded before the client hears of it. (Nothing
        // else needs recording here: a full disk must not stop reads.)
        if created {
            if let Err(e) = item.save(self) {
                self.release(&item, writer);
                let _ = self.remove_new(path, &item);
                return Err(e);
            }
        }
        Ok(item)
    }

    /// A new file: it must reach the remote even if nothing is ever
    /// written to it.
    fn init_new(st: &mut State, mode: Option<u32>) {
        st.dirty = true;
        st.mode = mode;
        st.generation += 1;
        st.mtime = SystemTime::now();
    }

    /// Undo the creation of a new item that could not be recorded.
    fn remove_new(&self, path: &RelPath, item: &Arc<Item>) -> bool {
        {
            let mut items = self.lock_items();
            let mut st = item.lock();
            if st.opens > 0
                || st.on_remote
                || !items.get(path).is_some_and(|i| Arc::ptr_eq(i, item))
            {
                return false;
            }
            items.remove(path);
            st.gone = true;
            st.dirty = false;
            st.file = None;
        }
        self.delete_files(path);
        true
    }

    /// A handle on `item` closed.
    pub(crate) fn release(self: &FileCache, item: &Arc<Item>, writer: bool) -> bool {
        let mut st = item.lock();
        st.opens = st.opens.saturating_sub(1);
        if writer {
            st.writers = st.writers.saturating_sub(1);
        }
        st.atime = SystemTime::now();
        if st.opens == 0 && !st.waiter {
            st.file = None;
            st.source = None;
        }
        // Only a writer's close (re)starts the write-back delay: readers
        // polling a changed file must not keep pushing its upload back.
        writer && st.dirty && st.writers == 0
    }

    /// Close a handle: a dirty file is recorded and its upload scheduled.
    pub(crate) fn close(self: &Arc<Self>, item: &Arc<Item>, writer: bool) -> Result<()> {
        if self.release(item, writer) {
            // Scheduled even if the record cannot be written (a full disk):
            // the data is in the cache and the upload needs no record.
            self.schedule(item, self.opts.write_back);
            item.save(self)?;
        } else if item.lock().opens == 0 {
            // What was fetched survives a restart too.
            if let Err(e) = item.save(self) {
                tracing::debug!("vfs cache: {e}");
            }
        }
        Ok(())
    }

    /// `item` was changed without a handle (SETSTAT): record it and, if
    /// nobody has it open for writing, schedule its upload.
    pub(crate) fn changed(self: &Arc<Self>, item: &Arc<Item>) -> Result<()> {
        item.save(self)?;
        let schedule = {
            let mut st = item.lock();
            if st.opens == 0 && !st.waiter {
                st.file = None;
            }
            st.dirty && st.writers == 0
        };
        if schedule {
            self.schedule(item, self.opts.write_back);
        }
        Ok(())
    }

    /// chmod of a cached file: a changed file carries the mode into its
    /// upload (a running upload starts again with it); a clean one is
    /// changed on the remote at once.
    pub(crate) async fn chmod(self: &Arc<Self>, item: &Arc<Item>, perms: u32) -> Result<()> {
        let perms = perms & 0o7777;
        let (dirty, path) = {
            let mut st = item.lock();
            if st.dirty {
                st.mode = Some(perms);
                st.generation += 1;
            }
            (st.dirty, st.path.clone())
        };
        if dirty {
            return self.changed(item);
        }
        self.backend
            .set_attrs(
                &path,
                &SetAttrs {
                    permissions: Some(perms),
                    ..Default::default()
                },
            )
            .await?;
        item.lock().mode = Some(perms);
        item.save(self)
    }

    /// The `kind` hash of a cached file as it stands.
    pub(crate) async fn hash_item(
        self: &Arc<Self>,
        item: &Arc<Item>,
        kind: ferry_backend::HashKind,
    ) -> Result<String> {
        let (size, path) = {
            let st = item.lock();
            (st.size, st.path.clone())
        };
        item.ensure(self, 0, size).await?;
        let file = item.file(self)?;
        let mut hasher =
            crate::hash::Hasher::new(kind).ok_or(VfsError::Unsupported("this hash type"))?;
        let mut off = 0;
        while off < size {
            let n = ((size - off) as usize).min(UPLOAD_PIECE);
            let data = read_piece(&file, off, n)
                .await
                .map_err(|e| self.io_error("hashing", &path, e))?;
            hasher = tokio::task::spawn_blocking(move || {
                hasher.update(&data);
                hasher
            })
            .await
            .map_err(|e| VfsError::Cache(format!("hashing failed: {e}")))?;
            off += n as u64;
        }
        {
            let mut st = item.lock();
            if st.opens == 0 && !st.waiter {
                st.file = None;
            }
        }
        Ok(hasher.finish_hex())
    }

    /// Upload `item` after `delay` (or sooner, at shutdown).
    pub(crate) fn schedule(self: &Arc<Self>, item: &Arc<Item>, delay: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut st = item.lock();
            st.deadline = Instant::now() + delay;
            if st.waiter {
                return;
            }
            st.waiter = true;
        }
        let cache = self.clone();
        let item = item.clone();
        rt.spawn(async move { cache.write_back(item).await });
    }

    /// The write-back task of one item: waits for its deadline, uploads,
    /// retries failures; ends when the item is clean, gone, or open for
    /// writing again (its close schedules it anew).
    async fn write_back(self: Arc<Self>, item: Arc<Item>) {
        let mut flush = self.flush.subscribe();
        loop {
            let wait = {
                let mut st = item.lock();
                if !st.dirty || st.gone || st.writers > 0 {
                    st.waiter = false;
                    if st.opens == 0 {
                        st.file = None;
                        st.source = None;
                    }
                    return;
                }
                st.deadline.saturating_duration_since(Instant::now())
            };
            // At shutdown uploads start at once, but a failing one still
            // waits its retry delay.
            let failing = item.lock().failures > 0;
            if !wait.is_zero() && (!*flush.borrow() || failing) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = flush.changed() => {}
                }
                continue;
            }
            let permit = self.transfers.clone().acquire_owned().await;
            let r = self.upload(&item).await;
            drop(permit);
            match r {
                Ok(Some(path)) => {
                    item.lock().failures = 0;
                    tracing::info!("vfs cache: uploaded {path}");
                    (self.on_upload)(&path, UploadStage::Committed);
                }
                // Changed, renamed or removed meanwhile: look again.
                Ok(None) => {}
                Err(e) => {
                    let mut st = item.lock();
                    st.failures += 1;
                    let delay = FIRST_RETRY
                        .saturating_mul(1 << (st.failures - 1).min(20))
                        .min(self.opts.max_retry_delay);
                    st.deadline = Instant::now() + delay;
                    tracing::warn!(
                        "vfs cache: upload of {} failed (attempt {}), retrying in {:?}: {e}",
                        st.path,
                        st.failures,
                        delay
                    );
                }
            }
        }
    }

    /// Upload `item` as it is now. `Ok(None)` when it changed meanwhile
    /// (nothing was committed).
    async fn upload(self: &Arc<Self>, item: &Arc<Item>) -> Result<Option<RelPath>> {
        let _guard = item.upload.lock().await;
        let (gen, path, size, mtime, mode) = {
            let st = item.lock();
            if !st.dirty || st.gone || st.writers > 0 {
                return Ok(None);
            }
            (st.generation, st.path.clone(), st.size, st.mtime, st.mode)
        };
        item.ensure(self, 0, size).await?;
        let file = item.file(self)?;
        let current = || item.lock().generation == gen;
        let caps = self.backend.capabilities();
        let meta = if caps.streaming_upload {
            let mut up = self
                .backend
                .create_upload(
                    &path,
                    UploadOptions {
                        mtime: Some(mtime),
                        if_not_exists: false,
                    },
                )
                .await?;
            let mut off = 0u64;
            while off < size {
                if !current() {
                    let _ = up.abort().await;
                    return Ok(None);
                }
                let n = ((size - off) as usize).min(UPLOAD_PIECE);
                let data = match read_piece(&file, off, n).await {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = up.abort().await;
                        return Err(self.io_error("reading the cached copy of", &path, e));
                    }
                };
                if let Err(e) = up.write(data).await {
                    let _ = up.abort().await;
                    return Err(e.into());
                }
                off += n as u64;
            }
            if !current() {
                let _ = up.abort().await;
                return Ok(None);
            }
            let done = up.finish(Some(mtime)).await?;
            // The store's own view (with its change marker) is what later
            // opens compare against.
            self.backend.stat(&path).await.unwrap_or(done)
        } else if caps.random_access_write {
            let parent = path.parent().unwrap_or_default();
            let temp = parent
                .join(&crate::file::temp_name(
                    path.file_name().unwrap_or_default(),
                ))
                .map_err(|_| VfsError::InvalidName)?;
            let r = self
                .upload_via_temp(&file, &path, &temp, size, mtime, mode, &current)
                .await;
            match r {
                Ok(Some(m)) => m,
                other => {
                    if let Err(e) = self.backend.remove_file(&temp).await {
                        if e.kind() != ferry_backend::ErrorKind::NotFound {
                            tracing::warn!("vfs cache: could not remove {temp}: {e}");
                        }
                    }
                    return other.map(|_| None);
                }
            }
        } else {
            return Err(VfsError::Unsupported("writing to this remote"));
        };
        // Forget listings first, so no session sees the file vanish
        // between "no longer in the cache" and "listed by the remote".
        (self.on_upload)(&path, UploadStage::Committing);
        {
            let mut st = item.lock();
            // Committed at `path` whatever happened meanwhile: a rename or
            // remove waiting for this upload moves or removes it there.
            st.on_remote = true;
            if st.generation != gen || st.gone {
                return Ok(None);
            }
            st.dirty = false;
            st.on_remote = true;
            st.fingerprint = Some(meta::fingerprint(&meta));
            st.base = st.size;
            st.ranges = RangeSet::full(st.size);
        }
        // The upload is done; a record that cannot be written (a full disk)
        // only means the next start uploads it again.
        if let Err(e) = item.save(self) {
            tracing::warn!("vfs cache: {path} uploaded, but its record was not updated: {e}");
        }
        Ok(Some(path))
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_via_temp(
        &self,
        file: &Arc<std::fs::File>,
        path: &RelPath,
        temp: &RelPath,
        size: u64,
        mtime: SystemTime,
        mode: Option<u32>,
        current: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<Metadata>> {
        let h = self
            .backend
            .open_file(
                temp,
                OpenOptions {
                    write: true,
                    create: true,
                    create_new: true,
                    mode: Some(mode.unwrap_or(0o666) & 0o7777),
                    ..Default::default()
                },
            )
            .await?;
        let mut off = 0u64;
        while off < size {
            if !current() {
                return Ok(None);
            }
            let n = ((size - off) as usize).min(UPLOAD_PIECE);
            let data = read_piece(file, off, n)
                .await
                .map_err(|e| self.io_error("reading the cached copy of", path, e))?;
            h.write_at(off, data).await?;
            off += n as u64;
        }
        if self.backend.capabilities().set_mtime {
            h.set_attrs(&SetAttrs {
                times: Some((mtime, mtime)),
                ..Default::default()
            })
            .await?;
        }
        h.sync().await?;
        drop(h);
        if !current() {
            return Ok(None);
        }
        self.backend.rename(temp, path, true).await?;
        Ok(Some(self.backend.stat(path).await?))
    }

    /// The items at and below each of `roots`, with their uploads cancelled
    /// and held off: hold this across a change to the remote at those
    /// paths, so that no upload commits under a name that is changing (an
    /// upload already committing finishes first, and says so in
    /// `on_remote`).
    pub(crate) async fn hold(&self, roots: &[&RelPath]) -> Held {
        let mut list: Vec<Arc<Item>> = Vec::new();
        {
            let items = self.lock_items();
            for root in roots {
                for (p, i) in items
                    .range((*root).clone()..)
                    .take_while(|(p, _)| p.as_bytes().starts_with(root.as_bytes()))
                {
                    if p.starts_with(root) && !list.iter().any(|x| Arc::ptr_eq(x, i)) {
                        list.push(i.clone());
                    }
                }
            }
        }
        // One order for everyone: no two holders wait on each other.
        list.sort_by_key(|i| Arc::as_ptr(i) as usize);
        let mut guards = Vec::with_capacity(list.len());
        for item in list {
            item.lock().generation += 1;
            let g = item.upload.clone().lock_owned().await;
            guards.push(g);
        }
        Held { _guards: guards }
    }

    /// Move the cached items at and below `from` to `to`, cancelling their
    /// uploads (they are rescheduled under the new name). An item already
    /// at `to` is dropped. Call after the remote was renamed, holding
    /// [`FileCache::hold`] of both. `dest_on_remote`: whether the remote
    /// now has a file at `to` (for an item that moves there).
    pub(crate) async fn rename(
        self: &Arc<Self>,
        from: &RelPath,
        to: &RelPath,
        dest_on_remote: Option<bool>,
    ) -> Result<()> {
        let moved: Vec<(RelPath, Arc<Item>)> = {
            let items = self.lock_items();
            items
                .range(from.clone()..)
                .take_while(|(p, _)| p.as_bytes().starts_with(from.as_bytes()))
                .filter(|(p, _)| p.starts_with(from))
                .map(|(p, i)| (p.clone(), i.clone()))
                .collect()
        };
        if let Some(old) = self.get(to) {
            if !moved.iter().any(|(_, i)| Arc::ptr_eq(i, &old)) {
                self.drop_item(to, &old).await;
            }
        }
        for (p, item) in moved {
            let Some(dest) = p.rebase(from, to) else {
                continue;
            };
            {
                let mut items = self.lock_items();
                if items.get(&p).is_some_and(|i| Arc::ptr_eq(i, &item)) {
                    items.remove(&p);
                }
                items.insert(dest.clone(), item.clone());
            }
            let (src_data, dst_data) = (self.data_path(&p), self.data_path(&dest));
            let (src_meta, dst_meta) = (self.meta_path(&p), self.meta_path(&dest));
            for (a, b) in [(&src_data, &dst_data), (&src_meta, &dst_meta)] {
                if let Some(d) = b.parent() {
                    let _ = std::fs::create_dir_all(d);
                }
                if let Err(e) = std::fs::rename(a, b) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!("vfs cache: moving {} to {}: {e}", a.display(), b.display());
                    }
                }
            }
            let dirty = {
                let mut st = item.lock();
                st.path = dest.clone();
                st.source = None;
                if let (true, Some(r)) = (&p == from, dest_on_remote) {
                    st.on_remote = r;
                }
                st.dirty
            };
            item.save(self)?;
            if dirty && item.lock().writers == 0 {
                self.schedule(&item, self.opts.write_back);
            }
        }
        Ok(())
    }

    /// Drop the item at `path` (the file was removed): its upload is
    /// cancelled and its data deleted. Returns whether the remote has a
    /// file there (an older version, if the item was dirty). The caller
    /// holds [`FileCache::hold`] of `path`.
    pub(crate) async fn remove(&self, path: &RelPath) -> Option<bool> {
        let item = self.get(path)?;
        let on_remote = item.lock().on_remote;
        self.drop_item(path, &item).await;
        Some(on_remote)
    }

    /// Drop `item` (at `path`); the caller holds it ([`FileCache::hold`]).
    async fn drop_item(&self, path: &RelPath, item: &Arc<Item>) {
        {
            let mut items = self.lock_items();
            if items.get(path).is_some_and(|i| Arc::ptr_eq(i, item)) {
                items.remove(path);
            }
        }
        {
            let mut st = item.lock();
            st.gone = true;
            st.epoch += 1;
            st.dirty = false;
            st.file = None;
            st.source = None;
        }
        self.delete_files(path);
    }

    fn delete_files(&self, path: &RelPath) {
        for p in [self.data_path(path), self.meta_path(path)] {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("vfs cache: removing {}: {e}", p.display());
                }
            }
            // Empty directories above it go too.
            let (mut dir, root) = match p.starts_with(&self.opts.data_dir) {
                true => (p.parent().map(Path::to_path_buf), &self.opts.data_dir),
                false => (p.parent().map(Path::to_path_buf), &self.opts.meta_dir),
            };
            while let Some(d) = dir {
                if &d == root || !d.starts_with(root) || std::fs::remove_dir(&d).is_err() {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
        }
    }

    /// Files with changes not yet uploaded.
    pub(crate) fn pending(&self) -> usize {
        self.lock_items()
            .values()
            .filter(|i| i.lock().dirty)
            .count()
    }

    /// Upload everything dirty now, and wait until nothing is pending or
    /// `give_up` resolves. Returns how many files are still pending.
    pub(crate) async fn flush(&self, give_up: impl std::future::Future<Output = ()>) -> usize {
        self.flush.send_replace(true);
        let wait = async {
            loop {
                if self.pending() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = wait => {}
            _ = give_up => {}
        }
        self.pending()
    }

    /// The cleaner task: runs every poll interval, or when kicked.
    async fn cleaner(cache: Weak<FileCache>) {
        loop {
            let interval = match cache.upgrade() {
                Some(c) => c.opts.poll_interval,
                None => return,
            };
            {
                let Some(c) = cache.upgrade() else { return };
                let kick = c.kick.clone();
                drop(c);
                let kicked = kick.notified();
                tokio::pin!(kicked);
                if interval.is_zero() {
                    kicked.await;
                } else {
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = &mut kicked => {}
                    }
                }
            }
            let Some(c) = cache.upgrade() else { return };
            let c2 = c.clone();
            let _ = tokio::task::spawn_blocking(move || c2.clean()).await;
        }
    }

    /// Drop what the limits say should go. Returns how many items went.
    pub(crate) fn clean(&self) -> usize {
        let now = SystemTime::now();
        let mut candidates: Vec<(SystemTime, u64, RelPath, Arc<Item>)> = Vec::new();
        let mut total = 0u64;
        for (p, item) in self.lock_items().iter() {
            let st = item.lock();
            let stored = st.ranges.total();
            total += stored;
            if st.opens == 0 && !st.dirty && !st.waiter {
                candidates.push((st.atime, stored, p.clone(), item.clone()));
            }
        }
        candidates.sort_by_key(|c| c.0);
        // After a full disk, free what can be freed until there is room
        // again (at least the free-space limit, and a few MiB).
        let full = self
            .disk_full
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        let want_free = if full {
            Some(self.opts.min_free_space.unwrap_or(0).max(EMERGENCY_FREE))
        } else {
            self.opts.min_free_space
        };
        let mut evicted = 0;
        for (atime, stored, path, item) in candidates {
            let old = now.duration_since(atime).unwrap_or_default() > self.opts.max_age;
            let over = self.opts.max_size.is_some_and(|m| total > m)
                || want_free
                    .is_some_and(|m| free_space(&self.opts.data_dir).is_some_and(|f| f < m));
            if !(old || over) {
                // Sorted oldest first: nothing after this is older.
                if self.opts.max_size.is_none() && want_free.is_none() {
                    break;
                }
                continue;
            }
            if self.evict(&path, &item) {
                total = total.saturating_sub(stored);
                evicted += 1;
            }
        }
        if evicted > 0 {
            tracing::debug!("vfs cache: evicted {evicted} file(s), {total} bytes kept");
        }
        evicted
    }

    /// Drop a clean, unused item.
    fn evict(&self, path: &RelPath, item: &Arc<Item>) -> bool {
        {
            let mut items = self.lock_items();
            let mut st = item.lock();
            if st.opens > 0 || st.dirty || st.waiter || st.gone {
                return false;
            }
            if !items.get(path).is_some_and(|i| Arc::ptr_eq(i, item)) {
                return false;
            }
            items.remove(path);
            st.gone = true;
            st.epoch += 1;
            st.file = None;
            st.source = None;
        }
        self.delete_files(path);
        true
    }

    /// Take up the records an earlier run left.
    fn load(&self) {
        let mut loaded = 0usize;
        let mut unreadable: Vec<PathBuf> = Vec::new();
        let mut items = self.lock_items();
        for (file, rel) in meta::walk(&self.opts.meta_dir) {
            let bytes = rel.as_os_str().as_bytes().to_vec();
            let path = match RelPath::new(bytes) {
                Ok(p) if !p.is_root() => p,
                _ => {
                    let _ = std::fs::remove_file(&file);
                    continue;
                }
            };
            let rec = match meta::read(&file) {
                Ok(r) => r,
                Err(e) => {
                    // Its data is kept (it may be a change not uploaded) for
                    // someone to look at; the file is not served from it.
                    tracing::error!(
                        "vfs cache: unreadable record {} ({e}); its data stays in {}",
                        file.display(),
                        self.data_path(&path).display()
                    );
                    unreadable.push(self.data_path(&path));
                    continue;
                }
            };
            let data = self.data_path(&path);
            let data_len = std::fs::metadata(&data).ok().map(|m| m.len());
            if data_len.is_none() {
                if rec.dirty && rec.ranges.iter().any(|s| s.size > 0) {
                    tracing::error!(
                        "vfs cache: the cached data of {path} is missing; its changes are lost"
                    );
                }
                let _ = std::fs::remove_file(&file);
                continue;
            }
            let mut st = Item::fresh_state(path.clone(), None);
            st.size = rec.size;
            let data_len = data_len.unwrap_or(0);
            if rec.dirty && data_len > rec.size {
                // Written after the record (the server stopped before the
                // file was closed): everything past the recorded size is
                // the client's data, or zeros.
                st.size = data_len;
            }
            st.base = rec.base.min(rec.size);
            st.ranges = RangeSet::from_spans(rec.ranges.iter().map(|s| (s.pos, s.pos + s.size)));
            st.ranges.truncate(rec.size);
            if st.size > rec.size {
                st.ranges.insert(rec.size, st.size);
            }
            st.mtime = meta::from_nanos(rec.mtime);
            st.atime = meta::from_nanos(rec.atime);
            st.dirty = rec.dirty;
            st.fingerprint = rec.fingerprint;
            st.on_remote = rec.on_remote;
            st.mode = rec.mode;
            items.insert(path, Item::new(st));
            loaded += 1;
        }
        drop(items);
        // Data files without a record are leftovers.
        let mut known: std::collections::HashSet<PathBuf> = self
            .lock_items()
            .keys()
            .map(|p| self.data_path(p))
            .collect();
        known.extend(unreadable);
        for (file, _) in meta::walk(&self.opts.data_dir) {
            if !known.contains(&file) {
                let _ = std::fs::remove_file(&file);
            }
        }
        if loaded > 0 {
            tracing::debug!(
                "vfs cache: {loaded} file(s) found in {}",
                self.opts.data_dir.display()
            );
        }
    }
}

/// Read `n` bytes at `off` of `file` on the blocking pool.
async fn read_piece(file: &Arc<std::fs::File>, off: u64, n: usize) -> std::io::Result<Bytes> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt as _;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, off)?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Free bytes on the file system holding `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}
