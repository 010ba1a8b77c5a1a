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
//!
//! # Layout
//! - this module: [`FileCache`], opening items, what sessions see of them.
//! - `item`: one cached file and its state; `ranges`: which bytes it holds;
//!   `meta`: its record on disk.
//! - `writeback`: scheduling and running uploads.
//! - `names`: renames and removes, holding uploads off the names changed.
//! - `eviction`: the cleaner.
//! - `recovery`: what an earlier run left.

mod eviction;
pub(crate) mod item;
pub(crate) mod meta;
mod names;
pub(crate) mod ranges;
mod recovery;
mod writeback;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferry_backend::{Backend, Metadata, RelPath, SetAttrs};

use crate::options::{CacheMode, CacheOptions};
use crate::{Result, VfsError};
use item::{Item, State};

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
pub(crate) enum UploadStage<'a> {
    /// Committed on the store, which has this there now, and about to
    /// stop showing from the cache: the listings learn it first, so no
    /// lookup finds the file in neither.
    Committing(&'a Metadata),
}

/// The VFS's part in an upload's landing (forget listings, stop keeping a
/// virtual directory), given to the cache when it is opened.
pub(crate) type OnUpload = Arc<dyn Fn(&RelPath, UploadStage<'_>) + Send + Sync>;

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
            st.drop_from_cache();
        }
        self.delete_files(path);
        true
    }

    /// A handle on `item` closed.
    pub(crate) fn release(self: &FileCache, item: &Arc<Item>, writer: bool) -> bool {
        let mut st = item.lock();
        st.released(writer);
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
            let slot = crate::hashing::hashing_slots()
                .acquire_owned()
                .await
                .map_err(|_| VfsError::Cache("hashing slots closed".into()))?;
            hasher = tokio::task::spawn_blocking(move || {
                hasher.update(&data);
                drop(slot);
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
