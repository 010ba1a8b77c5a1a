//! Open files, and atomic uploads.
//!
//! A truncating open for writing (what every client sends to upload a file)
//! does not touch the existing file: data goes to a temporary file in the
//! same directory, `.<name>.ferry-<random>.partial`, which replaces the file
//! by an atomic rename on a successful close. A client that disconnects or
//! fails leaves the old file (or no file) intact, and the temporary file is
//! removed. Opens without truncation (resume, in-place edits) write in
//! place. Temporary names are hidden from listings.
//!
//! The session that uploads sees its upload in progress as the file; other
//! sessions see the old file (or none) until the commit.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ferry_backend::{FileHandle, FileType, RelPath, SetAttrs, UploadOptions};
use rand::RngExt as _;

use crate::cache::item::Item;
use crate::cache::FileCache;
use crate::chunked::{ChunkPolicy, StreamReader};
use crate::lookup::{Found, Freshness};
use crate::options::CacheMode;
use crate::readahead::ReadAhead;
use crate::stream::StreamWriter;
use crate::verify::{Verdict, Verifier};
use crate::{Attr, Inner, Result, VfsError};

/// How to open a file (the SFTP `pflags`, typed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// Reads allowed.
    pub read: bool,
    /// Writes allowed.
    pub write: bool,
    /// Every write goes to the end of the file.
    pub append: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Start from an empty file (atomically replaced on close).
    pub truncate: bool,
    /// Fail if the file exists.
    pub exclusive: bool,
}

impl OpenFlags {
    /// Does this open change the store?
    pub fn writes(&self) -> bool {
        self.write || self.append || self.create || self.truncate
    }
}

const TEMP_PREFIX: &[u8] = b".";
const TEMP_MARK: &[u8] = b".ferry-";
const TEMP_SUFFIX: &[u8] = b".partial";
/// Keep temporary names within the usual 255-byte name limit.
const MAX_NAME_IN_TEMP: usize = 200;

/// Is `name` one of Ferry's temporary upload names?
pub fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(TEMP_PREFIX)
        && name.ends_with(TEMP_SUFFIX)
        && name.windows(TEMP_MARK.len()).any(|w| w == TEMP_MARK)
}

/// Temporary names this process is writing now (uploads in progress and
/// write-back uploads), by name: each carries a random tag, so a name is
/// one upload wherever its directory is renamed to. Any other temporary
/// name in a listing is a leftover (an upload interrupted by a crash) and
/// is listed like any file.
static LIVE_TEMPS: std::sync::Mutex<Option<std::collections::HashSet<Vec<u8>>>> =
    std::sync::Mutex::new(None);

fn live_temps() -> std::sync::MutexGuard<'static, Option<std::collections::HashSet<Vec<u8>>>> {
    LIVE_TEMPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A temporary name in use, until dropped.
pub(crate) struct LiveTemp(Vec<u8>);

impl LiveTemp {
    /// A fresh temporary name for `name`, in use from now on.
    pub(crate) fn new(name: &[u8]) -> LiveTemp {
        let t = temp_name(name);
        live_temps().get_or_insert_default().insert(t.clone());
        LiveTemp(t)
    }

    pub(crate) fn name(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for LiveTemp {
    fn drop(&mut self) {
        if let Some(set) = live_temps().as_mut() {
            set.remove(&self.0);
        }
    }
}

/// Is `name` a temporary name this process is writing now?
pub(crate) fn is_live_temp(name: &[u8]) -> bool {
    live_temps().as_ref().is_some_and(|s| s.contains(name))
}

pub(crate) fn temp_name(name: &[u8]) -> Vec<u8> {
    let mut cut = name.len().min(MAX_NAME_IN_TEMP);
    // Never cut inside a UTF-8 sequence, so the name stays readable.
    while cut < name.len() && cut > 0 && (name[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    let tag: u64 = rand::rng().random();
    let mut v = Vec::with_capacity(cut + 40);
    v.extend_from_slice(TEMP_PREFIX);
    v.extend_from_slice(&name[..cut]);
    v.extend_from_slice(TEMP_MARK);
    v.extend_from_slice(format!("{tag:016x}").as_bytes());
    v.extend_from_slice(TEMP_SUFFIX);
    v
}

/// The size of each read-ahead request on high-latency stores that do not
/// stream ranges.
const READ_CHUNK: usize = 1 << 20;

/// How a read-only handle on a high-latency store reads ahead.
enum Reader {
    /// One stream of doubling ranged requests (`--vfs-read-chunk-size`).
    Stream(StreamReader),
    /// Fixed chunks, several in flight (`--vfs-read-chunk-streams`, or a
    /// store without ranged streams).
    Chunks(ReadAhead),
}

impl Reader {
    async fn new(
        opts: &crate::VfsOptions,
        caps: &ferry_backend::Capabilities,
        handle: Arc<dyn FileHandle>,
        size: u64,
    ) -> Result<Reader> {
        let streams = opts.read_chunk_streams;
        if streams == 0 && caps.read_streams {
            let policy = ChunkPolicy {
                first: opts.read_chunk_size,
                limit: opts.read_chunk_size_limit,
                ahead: opts.buffer_size as u64,
                no_seek: opts.no_seek,
                reach: crate::chunked::REACH,
            };
            return Ok(Reader::Stream(StreamReader::new(
                handle,
                size,
                policy,
                opts.buffer_budget.clone(),
            )));
        }
        let (chunk, window) = match opts.buffer_size.checked_div(streams) {
            None => (READ_CHUNK, opts.buffer_size),
            Some(share) => {
                // Whole chunks are held in memory: keep them within the buffer.
                let cap = share.max(READ_CHUNK);
                let want = match opts.read_chunk_size {
                    0 => cap,
                    n => usize::try_from(n).unwrap_or(usize::MAX).min(cap),
                };
                (want, want.saturating_mul(streams))
            }
        };
        Ok(Reader::Chunks(ReadAhead::new(
            handle,
            size,
            chunk,
            window,
            opts.buffer_budget.clone(),
        )))
    }

    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        match self {
            Reader::Stream(s) => s.read_at(offset, len, buf).await,
            Reader::Chunks(c) => c.read_at(offset, len, buf).await,
        }
    }
}

const OPEN: u8 = 0;
const CLOSED: u8 = 1;

/// What an open file reads and writes through.
enum Body {
    /// A positional handle on the backend.
    Handle(Arc<dyn FileHandle>),
    /// A front-to-back upload (stores without random-access writes).
    Stream(Arc<StreamWriter>),
    /// The on-disk file cache (`--vfs-cache-mode`).
    Cached {
        cache: Arc<FileCache>,
        item: Arc<Item>,
        /// The handle may change the file.
        writer: bool,
    },
}

/// What a CLOSE's commit left for the directory cache.
enum Committed {
    /// The store changed: the path is forgotten.
    Done,
    /// The cache is up to date: a streamed upload told it what was
    /// committed (the listing it is in got the entry), or the file went to
    /// the file cache and the store has not changed yet.
    Kept,
}

/// An open file.
pub struct VfsFile {
    inner: Arc<Inner>,
    path: RelPath,
    flags: OpenFlags,
    body: Body,
    /// Read-ahead, for read-only opens on high-latency stores.
    readahead: Option<Box<Reader>>,
    /// The id of an atomic or streamed upload in [`crate::uploads::Uploads`].
    upload: Option<u64>,
    state: AtomicU8,
    /// Checks a whole-file read against the store's hash.
    verify: Option<Box<std::sync::Mutex<Option<Verifier>>>>,
}

impl VfsFile {
    pub(crate) async fn open(
        inner: Arc<Inner>,
        viewer: u64,
        path: &RelPath,
        flags: OpenFlags,
        mode: Option<u32>,
    ) -> Result<VfsFile> {
        if !flags.writes() {
            return Self::open_inner(inner, viewer, path, flags, mode).await;
        }
        // While a handle writes the file, its size and time change under
        // the directory cache: stats go to the store until it closes.
        // A file that appears only when it is committed (a truncating
        // upload to a temporary file, a streamed one) keeps what lookups
        // found of it, for the open's own checks; one changed in place
        // does not.
        let in_place = !flags.truncate && inner.backend.capabilities().random_access_write;
        inner.writer_opened(path, in_place);
        let r = Self::open_inner(inner.clone(), viewer, path, flags, mode).await;
        if r.is_err() {
            inner.writer_closed(path, false);
        }
        r
    }

    async fn open_inner(
        inner: Arc<Inner>,
        viewer: u64,
        path: &RelPath,
        flags: OpenFlags,
        mode: Option<u32>,
    ) -> Result<VfsFile> {
        if let Some(cache) = inner.cache.clone() {
            let through_cache = match cache.mode {
                CacheMode::Full => true,
                CacheMode::Writes => flags.writes(),
                CacheMode::Minimal => flags.read && (flags.write || flags.append),
                CacheMode::Off => false,
            };
            // A symbolic link: its target is what is cached (an upload to
            // the link's path would replace the link with a file).
            let target = if through_cache && inner.backend.capabilities().symlinks {
                Self::resolve_links(&inner, path).await
            } else {
                Some(path.clone())
            };
            match target {
                Some(t) if through_cache || cache.get(&t).is_some() => {
                    let mut f = Self::open_cached(inner, cache, viewer, &t, flags, mode).await?;
                    // Closing it ends the writer registration of `path`.
                    f.path = path.clone();
                    return Ok(f);
                }
                _ => {}
            }
        }
        let caps = inner.backend.capabilities();
        if flags.writes() && !caps.random_access_write {
            return Self::open_stream(inner, viewer, path, flags).await;
        }
        let atomic = flags.truncate && (flags.write || flags.append);
        if !atomic {
            // A file this session is uploading is the upload in progress
            // (as STAT and READDIR show it, in `lookup`'s order: the cache
            // was asked above): reads and in-place writes go to the
            // upload's temporary file until it commits.
            let target = inner
                .uploads
                .temp_for(viewer, path)
                .unwrap_or_else(|| path.clone());
            let opts = inner.open_options(&flags, mode);
            let handle: Arc<dyn FileHandle> = inner.backend.open_file(&target, opts).await?.into();
            let read_only = flags.read && !flags.writes();
            let wants_readahead = read_only && !caps.low_latency && inner.opts.buffer_size > 0;
            let stored = handle
                .stored_hash()
                .filter(|_| read_only && !inner.opts.no_checksum);
            // One FSTAT for both, and none when neither needs the size.
            let size = if wants_readahead || stored.is_some() {
                handle.stat().await?.size
            } else {
                0
            };
            let readahead = if wants_readahead {
                Some(Box::new(
                    Reader::new(&inner.opts, &caps, handle.clone(), size).await?,
                ))
            } else {
                None
            };
            let verify = stored.and_then(|(kind, want)| {
                Verifier::new(kind, want, size).map(|v| Box::new(std::sync::Mutex::new(Some(v))))
            });
            return Ok(VfsFile {
                inner,
                path: path.clone(),
                flags,
                body: Body::Handle(handle),
                readahead,
                upload: None,
                state: AtomicU8::new(OPEN),
                verify,
            });
        }

        // Atomic upload: check what the open would have found, as the
        // session sees the path (see `lookup`).
        let existing = inner.stat_entry(viewer, path).await?;
        match &existing {
            Some(m) if m.is_dir() => return Err(VfsError::IsADirectory),
            Some(_) if flags.exclusive => return Err(VfsError::AlreadyExists),
            None if !flags.create => return Err(VfsError::NotFound),
            _ => {}
        }
        // A replaced file keeps its permissions unless the client sent some.
        let mode = mode.or_else(|| {
            existing
                .as_ref()
                .and_then(|m| m.permissions)
                .map(|p| p | inner.opts.umask)
        });
        let parent = path.parent().unwrap_or_default();
        let name = path.file_name().unwrap_or_default();
        // In use (so hidden from listings) before it exists.
        let live = LiveTemp::new(name);
        let temp = parent
            .join(live.name())
            .map_err(|_| VfsError::InvalidName)?;
        let mut opts = inner.open_options(&flags, mode);
        opts.create = true;
        opts.create_new = true;
        opts.truncate = false;
        let handle = inner.backend.open_file(&temp, opts).await?;
        let upload = inner.uploads.register(viewer, path.clone(), temp, live);
        Ok(VfsFile {
            inner,
            path: path.clone(),
            flags,
            body: Body::Handle(handle.into()),
            readahead: None,
            upload: Some(upload),
            state: AtomicU8::new(OPEN),
            verify: None,
        })
    }

    /// An open through the on-disk cache: every open mode works on every
    /// remote; changes are uploaded after the last close (write-back).
    async fn open_cached(
        inner: Arc<Inner>,
        cache: Arc<FileCache>,
        viewer: u64,
        path: &RelPath,
        flags: OpenFlags,
        mode: Option<u32>,
    ) -> Result<VfsFile> {
        let existing = match inner.meta(viewer, path, true).await {
            Ok(m) => Some(m),
            Err(VfsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        match &existing {
            Some(m) if m.is_dir() => return Err(VfsError::IsADirectory),
            Some(m) if m.file_type != FileType::File => {
                return Err(VfsError::Unsupported("caching anything but regular files"))
            }
            Some(_) if flags.exclusive && flags.create => return Err(VfsError::AlreadyExists),
            None if !flags.create => return Err(VfsError::NotFound),
            None => {
                if let Some(parent) = path.parent() {
                    match inner.meta(viewer, &parent, true).await {
                        Ok(m) if m.is_dir() => {}
                        Ok(_) => return Err(VfsError::NotADirectory),
                        Err(e) => return Err(e),
                    }
                }
            }
            _ => {}
        }
        let writer = flags.writes();
        let mode =
            mode.unwrap_or(inner.opts.file_perms) & !inner.opts.umask & inner.opts.mode_bits();
        let mode = Some(mode);
        let item = cache.open_item(path, existing.as_ref(), writer, mode)?;
        if flags.truncate && (flags.write || flags.append) {
            if let Err(e) = item.truncate(&cache, 0) {
                let _ = cache.close(&item, writer);
                return Err(e);
            }
        }
        Ok(VfsFile {
            inner,
            path: path.clone(),
            flags,
            body: Body::Cached {
                cache,
                item,
                writer,
            },
            readahead: None,
            upload: None,
            state: AtomicU8::new(OPEN),
            verify: None,
        })
    }

    /// Follow relative symbolic links from `path` to the file they lead to.
    /// `None` when that is not a plain path beneath the root (an absolute
    /// target, a loop): the open then goes to the backend as it is.
    async fn resolve_links(inner: &Arc<Inner>, path: &RelPath) -> Option<RelPath> {
        let mut p = path.clone();
        for _ in 0..40 {
            match inner.backend.lstat(&p).await {
                Ok(m) if m.file_type == FileType::Symlink => {
                    let target = inner.backend.read_link(&p).await.ok()?;
                    if target.starts_with(b"/") {
                        return None;
                    }
                    p = RelPath::resolve(&p.parent()?, &target).ok()?;
                }
                _ => return Some(p),
            }
        }
        None
    }

    /// A writing open on a store that takes files only whole, front to
    /// back: the new content streams into an upload that replaces the file
    /// on CLOSE. Only what such a store can honour is accepted: creating or
    /// replacing a whole file. Changing part of an existing file, appending
    /// and seeking back need the file cache (`--vfs-cache-mode writes`).
    async fn open_stream(
        inner: Arc<Inner>,
        viewer: u64,
        path: &RelPath,
        flags: OpenFlags,
    ) -> Result<VfsFile> {
        if !inner.backend.capabilities().streaming_upload {
            return Err(VfsError::Unsupported(
                "writing to this remote without --vfs-cache-mode writes",
            ));
        }
        if flags.append {
            return Err(VfsError::Unsupported(
                "appending to a file on this remote (it stores whole files; use --vfs-cache-mode writes)",
            ));
        }
        // What the session was just told (a STAT before the OPEN, as most
        // clients send) answers, unless the open is exclusive: the store
        // is asked then, and asked again before the commit.
        let fresh = if flags.exclusive {
            Freshness::Store
        } else {
            Freshness::Listing
        };
        let existing = inner
            .lookup(viewer, path, true, fresh)
            .await?
            .map(Found::into_meta);
        match &existing {
            Some(m) if m.is_dir() => return Err(VfsError::IsADirectory),
            Some(_) if flags.exclusive => return Err(VfsError::AlreadyExists),
            Some(m) if !flags.truncate && m.size > 0 => {
                return Err(VfsError::Unsupported(
                    "changing part of an existing file on this remote (it stores whole files: \
                     replace it, or use --vfs-cache-mode writes)",
                ))
            }
            None if !flags.create => return Err(VfsError::NotFound),
            None => inner.check_parent_dir(viewer, path).await?,
            _ => {}
        }
        let upload = inner
            .backend
            .create_upload(
                path,
                UploadOptions {
                    mtime: None,
                    if_not_exists: flags.exclusive,
                },
            )
            .await?;
        let budget = inner.reorder_budget.clone();
        let writer = Arc::new(StreamWriter::new(upload, budget));
        // Its session sees the new file at once (sshfs stats what it has
        // just created); the others when it lands.
        let id = inner
            .uploads
            .register_stream(viewer, path.clone(), writer.clone());
        Ok(VfsFile {
            inner,
            path: path.clone(),
            flags,
            body: Body::Stream(writer),
            readahead: None,
            upload: Some(id),
            state: AtomicU8::new(OPEN),
            verify: None,
        })
    }

    /// The path this file was opened at.
    pub fn path(&self) -> &RelPath {
        &self.path
    }

    /// The flags it was opened with.
    pub fn flags(&self) -> OpenFlags {
        self.flags
    }

    fn check_open(&self) -> Result<()> {
        if self.state.load(Ordering::Acquire) == OPEN {
            Ok(())
        } else {
            Err(VfsError::Closed)
        }
    }

    /// Read up to `len` bytes at `offset`, appended to `buf`. Fewer bytes
    /// only at end of file.
    pub async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        self.check_open()?;
        if !self.flags.read {
            return Err(VfsError::BadHandleMode("reading"));
        }
        if let Some(v) = &self.verify {
            let start = buf.len();
            let buf = match &self.readahead {
                Some(ra) => ra.read_at(offset, len, buf).await?,
                None => match &self.body {
                    Body::Handle(h) => h.read_at(offset, len, buf).await?,
                    _ => return Err(VfsError::BadHandleMode("reading")),
                },
            };
            if let Some(v) = v.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                v.feed(offset, &buf[start..]);
            }
            return Ok(buf);
        }
        if let Some(ra) = &self.readahead {
            return ra.read_at(offset, len, buf).await;
        }
        match &self.body {
            Body::Handle(h) => Ok(h.read_at(offset, len, buf).await?),
            Body::Stream(_) => Err(VfsError::Unsupported(
                "reading a file while it is being uploaded to this remote",
            )),
            Body::Cached { cache, item, .. } => item.read_at(cache, offset, len, buf).await,
        }
    }

    /// Write `data` at `offset` (at the end, for an append open).
    pub async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        self.check_open()?;
        if !(self.flags.write || self.flags.append) {
            return Err(VfsError::BadHandleMode("writing"));
        }
        match &self.body {
            Body::Handle(h) => Ok(h.write_at(offset, data).await?),
            Body::Stream(s) => s.write(offset, data).await,
            Body::Cached { cache, item, .. } => {
                item.write_at(cache, offset, data, self.flags.append).await
            }
        }
    }

    /// Copy the whole of `src` into this file inside the store (no data
    /// through Ferry), when the store copies server-side and this file is a
    /// new upload with nothing written yet. `Ok(false)` when that does not
    /// apply: copy the bytes instead.
    pub async fn copy_whole_in_store(&self, src: &VfsFile) -> Result<bool> {
        self.check_open()?;
        src.check_open()?;
        if !self.inner.backend.capabilities().server_side_copy {
            return Ok(false);
        }
        // This file an upload to a temporary file; the source read from
        // the store as it is (not from the cache, nor an upload itself).
        let (Body::Handle(dst), Some(id), Body::Handle(_), None) =
            (&self.body, self.upload, &src.body, src.upload)
        else {
            return Ok(false);
        };
        let Some(temp) = self.inner.uploads.temp_of(id) else {
            return Ok(false);
        };
        if dst.stat().await?.size != 0 {
            return Ok(false);
        }
        self.inner.backend.copy(&src.path, &temp).await?;
        Ok(true)
    }

    /// Attributes of the open file.
    pub async fn stat(&self) -> Result<Attr> {
        self.check_open()?;
        let meta = match &self.body {
            Body::Handle(h) => h.stat().await?,
            Body::Stream(s) => s.metadata(),
            Body::Cached { item, .. } => item.metadata(),
        };
        Ok(self.inner.attr(&meta))
    }

    /// Change attributes of the open file.
    pub async fn set_attrs(&self, attrs: &SetAttrs) -> Result<()> {
        self.check_open()?;
        if self.inner.opts.read_only {
            return Err(VfsError::ReadOnly);
        }
        let attrs = self.inner.filter_setattrs(attrs);
        if attrs == SetAttrs::default() {
            return Ok(());
        }
        if attrs.size.is_some() && !(self.flags.write || self.flags.append) {
            return Err(VfsError::BadHandleMode("writing"));
        }
        match &self.body {
            Body::Handle(h) => Ok(h.set_attrs(&attrs).await?),
            Body::Stream(s) => {
                if let Some(size) = attrs.size {
                    s.truncate(size).await?;
                }
                if let Some((_, mtime)) = attrs.times {
                    s.set_mtime(mtime);
                }
                // Permissions and owners: the store keeps none (the
                // filter above already dropped them).
                Ok(())
            }
            Body::Cached { cache, item, .. } => {
                if let Some(size) = attrs.size {
                    item.truncate(cache, size)?;
                }
                if let Some((_, mtime)) = attrs.times {
                    item.set_mtime(cache, mtime)?;
                }
                if let Some(p) = attrs.permissions {
                    cache.chmod(item, p).await?;
                }
                Ok(())
            }
        }
    }

    /// Flush to stable storage. An upload to a store that takes whole files
    /// is durable only when CLOSE commits it; until then there is nothing to
    /// flush.
    pub async fn sync(&self) -> Result<()> {
        self.check_open()?;
        match &self.body {
            Body::Handle(h) => Ok(h.sync().await?),
            Body::Stream(_) => Ok(()),
            Body::Cached { cache, item, .. } => {
                // Durable in the cache: the upload follows after close.
                let file = item.file(cache)?;
                let path = self.path.clone();
                tokio::task::spawn_blocking(move || file.sync_data())
                    .await
                    .map_err(|e| VfsError::Cache(format!("sync failed: {e}")))?
                    .map_err(|e| cache.io_error("syncing the cached copy of", &path, e))?;
                item.save(cache)
            }
        }
    }

    /// Close the file. An atomic upload is committed here: its errors are
    /// reported here, and on error the old file is left as it was. An upload
    /// whose file was removed meanwhile is discarded.
    pub async fn close(&self) -> Result<()> {
        if self.state.swap(CLOSED, Ordering::AcqRel) != OPEN {
            return Ok(());
        }
        let r = self.commit().await;
        if self.flags.writes() {
            self.inner
                .writer_closed(&self.path, matches!(r, Ok(Committed::Kept)));
        }
        r.map(|_| ())
    }

    async fn commit(&self) -> Result<Committed> {
        if let Some(v) = &self.verify {
            let v = v.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(v) = v {
                let kind = v.kind();
                match v.finish() {
                    Verdict::Mismatch(want, got) => {
                        let msg = format!(
                            "{}: {kind:?} of the data read is {got}, the remote says {want}",
                            self.path
                        );
                        tracing::error!("corrupted on transfer: {msg}");
                        return Err(VfsError::Corrupted(msg));
                    }
                    Verdict::Match => tracing::debug!("{}: {kind:?} verified", self.path),
                    Verdict::Unknown => {}
                }
            }
        }
        if let Body::Cached {
            cache,
            item,
            writer,
        } = &self.body
        {
            return cache.close(item, *writer).map(|_| Committed::Kept);
        }
        if let Body::Stream(s) = &self.body {
            let r = s.finish().await;
            self.forget_stream();
            let meta = r?;
            self.inner.vdirs.landed(&self.path, Some(&meta));
            return Ok(Committed::Kept);
        }
        let Some((up, _claim)) = self.upload.and_then(|id| self.inner.uploads.take(id)) else {
            return Ok(Committed::Done);
        };
        let Some(target) = up.target else {
            let _ = self.inner.backend.remove_file(&up.temp).await;
            return Ok(Committed::Done);
        };
        let replace = !self.flags.exclusive;
        let _forget = self.inner.forget_around(&target, false);
        match self.inner.backend.rename(&up.temp, &target, replace).await {
            Ok(()) => Ok(Committed::Done),
            Err(e) => {
                // Keep the new content if the old file is gone too (a store
                // that replaces by remove-then-rename failed half-way):
                // better a hidden temporary file than neither version.
                let target_gone = matches!(
                    self.inner.backend.lstat(&target).await,
                    Err(ref m) if m.kind() == ferry_backend::ErrorKind::NotFound
                );
                if target_gone {
                    tracing::warn!(
                        "upload to {target} could not be committed ({e}); its data is kept in {}",
                        up.temp
                    );
                } else {
                    let _ = self.inner.backend.remove_file(&up.temp).await;
                }
                Err(e.into())
            }
        }
    }

    /// Abandon the file: an atomic upload is discarded, the old file kept.
    pub async fn abort(&self) {
        if self.state.swap(CLOSED, Ordering::AcqRel) != OPEN {
            return;
        }
        self.discard().await;
        if self.flags.writes() {
            self.inner.writer_closed(&self.path, false);
        }
    }

    /// A cached file closed without a CLOSE (abandoned or dropped): what
    /// the client wrote is safe in the cache and is kept. True if cached.
    fn keep_cached(&self) -> bool {
        let Body::Cached {
            cache,
            item,
            writer,
        } = &self.body
        else {
            return false;
        };
        if let Err(e) = cache.close(item, *writer) {
            tracing::warn!("{}: {e}", self.path);
        }
        true
    }

    /// A streamed upload ends: its session stops seeing it as the file.
    fn forget_stream(&self) {
        if let (Body::Stream(_), Some(id)) = (&self.body, self.upload) {
            self.inner.uploads.take_stream(id);
        }
    }

    async fn discard(&self) {
        if self.keep_cached() {
            return;
        }
        if let Body::Stream(s) = &self.body {
            self.forget_stream();
            s.abort().await;
            return;
        }
        if let Some((up, _claim)) = self.upload.and_then(|id| self.inner.uploads.take(id)) {
            if let Err(e) = self.inner.backend.remove_file(&up.temp).await {
                tracing::warn!("could not remove abandoned upload {}: {e}", up.temp);
            }
        }
    }
}

impl Drop for VfsFile {
    fn drop(&mut self) {
        // A handle dropped without close or abort (a vanished client): the
        // upload is discarded in the background.
        if self.state.load(Ordering::Acquire) != OPEN {
            return;
        }
        if self.flags.writes() {
            self.inner.writer_closed(&self.path, false);
        }
        if self.keep_cached() {
            return;
        }
        if let Body::Stream(s) = &self.body {
            self.forget_stream();
            let s = s.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { s.abort().await });
            }
            return;
        }
        let Some((up, claim)) = self.upload.and_then(|id| self.inner.uploads.take(id)) else {
            return;
        };
        let backend = self.inner.backend.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = backend.remove_file(&up.temp).await;
                drop(claim);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_bounded() {
        let t = temp_name(b"report.pdf");
        assert!(is_temp_name(&t), "{}", t.escape_ascii());
        assert!(!is_temp_name(b"report.pdf"));
        assert!(!is_temp_name(b".hidden.partial"));
        let long = vec![b'x'; 255];
        assert!(temp_name(&long).len() <= 255);
        let utf = "\u{e9}".repeat(120);
        let t = temp_name(utf.as_bytes());
        assert!(t.len() <= 255);
        assert!(std::str::from_utf8(&t).is_ok());
    }
}
