//! One cached file: a sparse data file on disk, the ranges of it that hold
//! real data, and its state (open handles, dirty, uploading).
//!
//! # Locking
//! `st` (a plain mutex) guards the state and is held only for bookkeeping
//! and for the positional writes into the data file (on the blocking
//! pool): a client write and a fetch from the remote both write under it,
//! and a fetch writes only ranges still missing at that moment, so data
//! fetched from the remote can never overwrite what a client wrote.
//! Reads of ranges already present take no lock while they read.
//!
//! `upload` (async) is held for the whole of an upload; rename and remove
//! first bump the generation (which makes a running upload abort at its
//! next chunk) and then take it, so a file never lands under a name it no
//! longer has.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ferry_backend::{FileHandle, Metadata, OpenOptions, RelPath};

use super::meta::{self, Record, Span};
use super::ranges::RangeSet;
use super::FileCache;
use crate::{Result, VfsError};

/// The unit of fetching from the remote.
pub(crate) const CHUNK: u64 = 1 << 20;

/// The mutable state of an item.
pub(crate) struct State {
    pub(crate) path: RelPath,
    /// The open data file (while handles are open or an upload reads it).
    pub(crate) file: Option<Arc<File>>,
    pub(crate) size: u64,
    /// Bytes below `base` not in `ranges` are fetched from the remote.
    pub(crate) base: u64,
    pub(crate) ranges: RangeSet,
    pub(crate) mtime: SystemTime,
    /// Last use (eviction order).
    pub(crate) atime: SystemTime,
    pub(crate) dirty: bool,
    /// Bumped by every change, rename and remove.
    pub(crate) generation: u64,
    pub(crate) opens: usize,
    pub(crate) writers: usize,
    /// The remote file the data came from (size, mtime).
    pub(crate) fingerprint: Option<String>,
    /// The remote has a file at `path`.
    pub(crate) on_remote: bool,
    pub(crate) mode: Option<u32>,
    /// A write-back task is looking after this item.
    pub(crate) waiter: bool,
    /// When the write-back task should upload.
    pub(crate) deadline: Instant,
    /// Failed upload attempts in a row.
    pub(crate) failures: u32,
    /// Dropped from the cache (removed or evicted).
    pub(crate) gone: bool,
    /// A read handle on the remote file, for fetching missing ranges.
    pub(crate) source: Option<Arc<dyn FileHandle>>,
    /// The version of the record last asked for.
    pub(crate) record_seq: u64,
    /// Bumped when the content is thrown away (reset to a changed remote
    /// file, evicted, removed): fetches started before must not write.
    pub(crate) epoch: u64,
}

/// The transitions of an item's state that more than one place makes,
/// each in one method so every place makes it the same way.
impl State {
    /// Dropped from the cache (removed, evicted, or a new file thrown
    /// away): nothing is uploaded, and fetches started before never write.
    pub(crate) fn drop_from_cache(&mut self) {
        self.gone = true;
        self.epoch += 1;
        self.dirty = false;
        self.close_files();
    }

    /// Nobody reads or writes the data file any more: let its descriptor
    /// and the remote read handle go.
    pub(crate) fn close_files(&mut self) {
        self.file = None;
        self.source = None;
    }

    /// A handle closed; returns whether the item is now idle.
    pub(crate) fn released(&mut self, writer: bool) -> bool {
        self.opens = self.opens.saturating_sub(1);
        if writer {
            self.writers = self.writers.saturating_sub(1);
        }
        self.atime = SystemTime::now();
        let idle = self.opens == 0 && !self.waiter;
        if idle {
            self.close_files();
        }
        idle
    }

    /// Uploaded as it stands: clean, on the remote with `fingerprint`,
    /// and every byte present.
    pub(crate) fn committed(&mut self, fingerprint: String) {
        self.dirty = false;
        self.on_remote = true;
        self.fingerprint = Some(fingerprint);
        self.base = self.size;
        self.ranges = RangeSet::full(self.size);
        self.failures = 0;
    }

    /// An upload failed: the next try waits `first`, doubling with each
    /// failure in a row, at most `max`. Returns the wait.
    pub(crate) fn upload_failed(&mut self, first: Duration, max: Duration) -> Duration {
        self.failures += 1;
        let delay = first
            .saturating_mul(1 << (self.failures - 1).min(20))
            .min(max);
        self.deadline = Instant::now() + delay;
        delay
    }
}

/// A cached file.
pub(crate) struct Item {
    /// A number of its own, for the remote-control API's upload queue.
    pub(crate) id: u64,
    pub(crate) st: Mutex<State>,
    /// Wakes its write-back task early (its deadline moved).
    pub(crate) nudge: tokio::sync::Notify,
    /// One lock per chunk being fetched, so concurrent readers of the same
    /// chunk fetch it once.
    chunk_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    /// Held for a whole upload.
    pub(crate) upload: Arc<tokio::sync::Mutex<()>>,
    /// Serialises record writes; holds the sequence number last written.
    record_lock: Mutex<u64>,
}

impl Item {
    pub(crate) fn new(state: State) -> Arc<Item> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Arc::new(Item {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            st: Mutex::new(state),
            nudge: tokio::sync::Notify::new(),
            chunk_locks: Mutex::new(HashMap::new()),
            upload: Arc::new(tokio::sync::Mutex::new(())),
            record_lock: Mutex::new(0),
        })
    }

    /// A fresh state for `path`: `remote` is the remote file's metadata, if
    /// it has one.
    pub(crate) fn fresh_state(path: RelPath, remote: Option<&Metadata>) -> State {
        let now = SystemTime::now();
        let size = remote.map_or(0, |m| m.size);
        State {
            path,
            file: None,
            size,
            base: size,
            ranges: RangeSet::default(),
            mtime: remote.and_then(|m| m.mtime).unwrap_or(now),
            atime: now,
            dirty: false,
            generation: 0,
            opens: 0,
            writers: 0,
            fingerprint: remote.map(meta::fingerprint),
            on_remote: remote.is_some(),
            // An existing file keeps its permissions when it is replaced.
            mode: remote.and_then(|m| m.permissions),
            waiter: false,
            deadline: Instant::now(),
            failures: 0,
            gone: false,
            source: None,
            record_seq: 0,
            epoch: 0,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state as a record, and its sequence number.
    pub(crate) fn snapshot(st: &mut State) -> (u64, Record) {
        st.record_seq += 1;
        let rec = Record {
            mtime: meta::to_nanos(st.mtime),
            atime: meta::to_nanos(st.atime),
            size: st.size,
            base: st.base,
            ranges: st
                .ranges
                .spans()
                .iter()
                .map(|&(s, e)| Span {
                    pos: s,
                    size: e - s,
                })
                .collect(),
            fingerprint: st.fingerprint.clone(),
            dirty: st.dirty,
            on_remote: st.on_remote,
            mode: st.mode,
        };
        (st.record_seq, rec)
    }

    /// Write the record of the current state (a newer one wins over an
    /// older one written concurrently).
    pub(crate) fn save(&self, cache: &FileCache) -> Result<()> {
        let (seq, rec, path) = {
            let mut st = self.lock();
            if st.gone {
                return Ok(());
            }
            let (seq, rec) = Self::snapshot(&mut st);
            (seq, rec, st.path.clone())
        };
        let mut last = self.record_lock.lock().unwrap_or_else(|e| e.into_inner());
        if *last > seq {
            return Ok(());
        }
        *last = seq;
        if self.lock().gone {
            return Ok(());
        }
        meta::write(&cache.meta_path(&path), &rec)
            .map_err(|e| cache.io_error("recording", &path, e))
    }

    /// The open data file, opening (and creating) it if needed.
    pub(crate) fn file(&self, cache: &FileCache) -> Result<Arc<File>> {
        let mut st = self.lock();
        if let Some(f) = &st.file {
            return Ok(f.clone());
        }
        if st.gone {
            return Err(VfsError::Cache(format!(
                "{} was dropped from the cache meanwhile",
                st.path
            )));
        }
        let path = cache.data_path(&st.path);
        let f = cache
            .open_data(&path, st.size)
            .map_err(|e| cache.io_error("opening the cached copy of", &st.path, e))?;
        let f = Arc::new(f);
        st.file = Some(f.clone());
        Ok(f)
    }

    /// Make sure `[start, end)` holds real data, fetching what is missing
    /// from the remote.
    pub(crate) async fn ensure(
        self: &Arc<Self>,
        cache: &Arc<FileCache>,
        start: u64,
        end: u64,
    ) -> Result<()> {
        let chunks: Vec<u64> = {
            let st = self.lock();
            let lim = end.min(st.base);
            let missing = st.ranges.missing(start, lim);
            let mut ks: Vec<u64> = Vec::new();
            for (s, e) in missing {
                for k in s / CHUNK..e.div_ceil(CHUNK) {
                    if ks.last() != Some(&k) {
                        ks.push(k);
                    }
                }
            }
            ks
        };
        if chunks.is_empty() {
            return Ok(());
        }
        let futs = chunks.into_iter().map(|k| self.fetch_chunk(cache, k));
        for r in futures::future::join_all(futs).await {
            r?;
        }
        Ok(())
    }

    /// Start fetching the chunks after `end` (up to `ahead` bytes) in the
    /// background.
    pub(crate) fn read_ahead(self: &Arc<Self>, cache: &Arc<FileCache>, end: u64, ahead: u64) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let first = end.div_ceil(CHUNK);
        let last = {
            let st = self.lock();
            let lim = st.base.min(end.saturating_add(ahead));
            if lim <= end || st.ranges.contains(end, lim) {
                return;
            }
            lim.div_ceil(CHUNK)
        };
        for k in first..last {
            let busy = self
                .chunk_locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&k);
            let present = {
                let st = self.lock();
                st.ranges
                    .contains(k * CHUNK, ((k + 1) * CHUNK).min(st.base))
            };
            if busy || present {
                continue;
            }
            let item = self.clone();
            let cache = cache.clone();
            rt.spawn(async move {
                if let Err(e) = item.fetch_chunk(&cache, k).await {
                    tracing::debug!("read-ahead failed: {e}");
                }
            });
        }
    }

    async fn fetch_chunk(self: &Arc<Self>, cache: &FileCache, k: u64) -> Result<()> {
        let lock = {
            let mut m = self.chunk_locks.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(k).or_default().clone()
        };
        let r = {
            let _g = lock.lock().await;
            self.fetch_chunk_locked(cache, k).await
        };
        let mut m = self.chunk_locks.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&k).is_some_and(|l| Arc::ptr_eq(l, &lock)) && Arc::strong_count(&lock) == 2 {
            m.remove(&k);
        }
        r
    }

    async fn fetch_chunk_locked(self: &Arc<Self>, cache: &FileCache, k: u64) -> Result<()> {
        let (missing, path, epoch) = {
            let st = self.lock();
            let start = k * CHUNK;
            let end = ((k + 1) * CHUNK).min(st.base);
            (st.ranges.missing(start, end), st.path.clone(), st.epoch)
        };
        if missing.is_empty() {
            return Ok(());
        }
        let src = self.source(cache, &path).await?;
        let file = self.file(cache)?;
        for (s, e) in missing {
            let want = (e - s) as usize;
            let mut buf = Vec::with_capacity(want);
            while buf.len() < want {
                let before = buf.len();
                buf = src.read_at(s + before as u64, want - before, buf).await?;
                if buf.len() == before {
                    return Err(VfsError::Cache(format!(
                        "{path} changed on the remote while it was being cached"
                    )));
                }
            }
            let item = self.clone();
            let file = file.clone();
            let r = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut st = item.lock();
                if st.epoch != epoch || st.gone {
                    // The content was thrown away meanwhile: this data
                    // belongs to nothing now.
                    return Ok(());
                }
                let lim = e.min(st.base);
                for (ms, me) in st.ranges.missing(s, lim) {
                    file.write_all_at(&buf[(ms - s) as usize..(me - s) as usize], ms)?;
                    st.ranges.insert(ms, me);
                }
                Ok(())
            })
            .await
            .map_err(|e| VfsError::Cache(format!("cache write failed: {e}")))?;
            r.map_err(|e| cache.io_error("caching", &path, e))?;
        }
        Ok(())
    }

    /// The read handle on the remote file.
    async fn source(&self, cache: &FileCache, path: &RelPath) -> Result<Arc<dyn FileHandle>> {
        if let Some(s) = self.lock().source.clone() {
            return Ok(s);
        }
        let h: Arc<dyn FileHandle> = cache
            .backend
            .open_file(
                path,
                OpenOptions {
                    read: true,
                    ..Default::default()
                },
            )
            .await?
            .into();
        let mut st = self.lock();
        Ok(st.source.get_or_insert(h).clone())
    }

    /// Read `len` bytes at `offset` (fewer at end of file) into `buf`.
    pub(crate) async fn read_at(
        self: &Arc<Self>,
        cache: &Arc<FileCache>,
        offset: u64,
        len: usize,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let end = {
            let mut st = self.lock();
            st.atime = SystemTime::now();
            offset.saturating_add(len as u64).min(st.size)
        };
        if offset >= end {
            return Ok(buf);
        }
        match self.ensure(cache, offset, end).await {
            Ok(()) => {}
            Err(VfsError::NoSpace) if !self.lock().dirty => {
                // No room to cache it: a clean file reads from the remote
                // as it would without the cache.
                let path = self.lock().path.clone();
                let src = self.source(cache, &path).await?;
                return Ok(src.read_at(offset, (end - offset) as usize, buf).await?);
            }
            Err(e) => return Err(e),
        }
        let ahead = cache.read_ahead_bytes();
        if ahead > 0 {
            self.read_ahead(cache, end, ahead);
        }
        let file = self.file(cache)?;
        let n = (end - offset) as usize;
        let r = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let at = buf.len();
            buf.resize(at + n, 0);
            file.read_exact_at(&mut buf[at..], offset)?;
            Ok(buf)
        })
        .await
        .map_err(|e| VfsError::Cache(format!("cache read failed: {e}")))?;
        r.map_err(|e| {
            let path = self.lock().path.clone();
            cache.io_error("reading the cached copy of", &path, e)
        })
    }

    /// Write `data` at `offset` (at the end with `append`).
    pub(crate) async fn write_at(
        self: &Arc<Self>,
        cache: &Arc<FileCache>,
        offset: u64,
        data: Bytes,
        append: bool,
    ) -> Result<()> {
        let file = self.file(cache)?;
        let item = self.clone();
        let r = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            let mut st = item.lock();
            let at = if append { st.size } else { offset };
            let end = at
                .checked_add(data.len() as u64)
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            file.write_all_at(&data, at)?;
            st.ranges.insert(at, end);
            st.size = st.size.max(end);
            // A write over bytes still on the remote changes what a restart
            // would fetch: recorded before it is acknowledged. (Writes past
            // the remote's bytes are recovered from the data file's length.)
            let in_place = at < st.base;
            Ok(Self::changed(&mut st) || in_place)
        })
        .await
        .map_err(|e| VfsError::Cache(format!("cache write failed: {e}")))?;
        let first_change = r.map_err(|e| {
            let path = self.lock().path.clone();
            cache.io_error("writing the cached copy of", &path, e)
        })?;
        if first_change {
            self.save(cache)?;
        }
        Ok(())
    }

    /// Record a change to the content; true if the item was clean.
    fn changed(st: &mut State) -> bool {
        st.mtime = SystemTime::now();
        st.atime = st.mtime;
        st.generation += 1;
        let was_clean = !st.dirty;
        st.dirty = true;
        was_clean
    }

    /// Set the size to `len`.
    pub(crate) fn truncate(self: &Arc<Self>, cache: &FileCache, len: u64) -> Result<()> {
        let file = self.file(cache)?;
        {
            let mut st = self.lock();
            file.set_len(len)
                .map_err(|e| cache.io_error("truncating the cached copy of", &st.path, e))?;
            if len < st.size {
                st.ranges.truncate(len);
                st.base = st.base.min(len);
            } else {
                let old = st.size;
                st.ranges.insert(old, len);
            }
            st.size = len;
            Self::changed(&mut st);
        }
        // Always recorded: a restart must not fetch the cut-off bytes back.
        self.save(cache)?;
        Ok(())
    }

    /// Set the modification time (carried by the upload).
    pub(crate) fn set_mtime(&self, cache: &FileCache, mtime: SystemTime) -> Result<()> {
        {
            let mut st = self.lock();
            st.mtime = mtime;
            st.generation += 1;
            st.dirty = true;
        }
        self.save(cache)
    }

    /// The file as a client sees it.
    pub(crate) fn metadata(&self) -> Metadata {
        let st = self.lock();
        Metadata {
            file_type: ferry_backend::FileType::File,
            size: st.size,
            mtime: Some(st.mtime),
            atime: None,
            permissions: st.mode,
            owner: None,
            change: None,
        }
    }

    /// Is this item what clients should see, rather than the remote? True
    /// while it has changes not yet uploaded, or is open for writing.
    pub(crate) fn is_visible(&self) -> bool {
        let st = self.lock();
        st.dirty || st.writers > 0
    }
}
