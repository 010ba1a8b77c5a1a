//! Ferry's backends for object stores and HTTP servers, through Apache
//! OpenDAL: S3 and S3-compatible stores, WebDAV, plain HTTP (read-only),
//! Google Cloud Storage and Azure Blob Storage.
//!
//! One adapter, [`ObjectBackend`], turns an OpenDAL [`Operator`] into a
//! Ferry [`Backend`]; [`config`] maps rclone's option names for each remote
//! type onto OpenDAL's. What the store cannot do is said in the
//! [`Capabilities`] (no random-access writes, directories that are only
//! prefixes, no atomic rename) and the VFS works around it or refuses
//! clearly.
//!
//! # Modification times
//! Object stores keep only the time an object was written. Like rclone,
//! Ferry records a file's modification time in the object's `mtime` user
//! metadata (seconds since the epoch with a fraction), so files written by
//! rclone and by Ferry agree; objects without it show the store's
//! last-modified time. Listings do not carry user metadata, so the first
//! listing of a directory asks for each object's metadata (16 at a time)
//! and remembers it by entity tag: later listings ask only for objects that
//! changed. `use_server_modtime` skips this, as rclone's flag does.
//!
//! # Layout
//! - [`config`]: rclone remote options to an [`ObjectBackend`].
//! - `file`: reads ([`ObjectFile`]) and uploads ([`ObjectUpload`]).
//! - this module: the adapter and the mapping of paths, metadata and
//!   errors.

pub mod config;
mod file;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ferry_backend::{
    Backend, BackendError, Capabilities, DirEntry, ErrorKind, FileHandle, FileType, HashKind,
    Metadata, OpenOptions, Operation, RelPath, Result, SetAttrs, Upload, UploadOptions, Usage,
};
use futures::StreamExt as _;
use opendal::Operator;

pub use file::{ObjectFile, ObjectUpload};

/// The user metadata key rclone keeps modification times under.
pub const MTIME_KEY: &str = "mtime";
/// The user metadata key rclone keeps the MD5 of multipart uploads under
/// (base64).
pub const MD5_KEY: &str = "md5chksum";

/// How many metadata requests a listing sends at once.
const LIST_STAT_CONCURRENCY: usize = 16;
/// How many remembered modification times before the memo starts over.
const MTIME_MEMO_MAX: usize = 200_000;
/// How long an object's HEAD answers an open of it without another: long
/// enough for a client's listing followed by its downloads (`get *` of a
/// few hundred files at 20 ms per request takes 15 s), short next to the
/// directory cache, which answers STATs for minutes. A stale answer costs
/// one refused GET (the reads are pinned to the tag seen) and a HEAD.
const SEEN_FOR: Duration = Duration::from_secs(60);
const SEEN_MAX: usize = 20_000;

/// What kind of store an [`ObjectBackend`] talks to, where OpenDAL's
/// capabilities do not say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A bucket store (S3, GCS, Azure Blob): directories are prefixes.
    Bucket,
    /// A WebDAV server: real collections.
    Webdav,
    /// A plain HTTP server: read-only, no listings.
    Http,
}

/// Tuning and behaviour of an [`ObjectBackend`].
#[derive(Debug, Clone)]
pub struct ObjectOptions {
    /// The kind of store.
    pub kind: StoreKind,
    /// Keep modification times in the `mtime` user metadata.
    pub mtime_metadata: bool,
    /// Use the store's last-modified time, never the metadata (no metadata
    /// requests in listings).
    pub use_server_modtime: bool,
    /// Upload part size (rclone's `chunk_size`).
    pub chunk_size: usize,
    /// Parts uploaded at once (rclone's `upload_concurrency`).
    pub upload_concurrency: usize,
    /// Refuse every change.
    pub read_only: bool,
    /// How the remote is described in logs (`s3:bucket/prefix`).
    pub describe: String,
    /// Where uploads to stores that take a file in one request (WebDAV)
    /// are spooled once they outgrow one part; the system's temporary
    /// directory when unset.
    pub spool_dir: Option<std::path::PathBuf>,
    /// How the requests that commit uploaded data are retried.
    pub upload_retries: UploadRetries,
}

/// Retries of the requests an upload is made of (a single PUT, the parts
/// of a multipart upload, its completion): each is tried again after a
/// temporary failure (an HTTP 5xx, a throttling answer, a dropped
/// connection) with the same bytes, so a store's momentary refusal does
/// not fail the client's whole upload. Ferry's own retry layer cannot do
/// this: it sees an upload as a stream it cannot replay. Conditional
/// writes (create-if-absent, replace-if-unchanged) are tried once, as a
/// retry after an answer lost on the way could report a false conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadRetries {
    /// Tries in all, the first included (`--low-level-retries`); 0 or 1
    /// means no retry.
    pub attempts: u32,
    /// Delay before the first retry (doubling, with jitter).
    pub min_delay: Duration,
    /// The longest delay between two tries.
    pub max_delay: Duration,
}

impl Default for UploadRetries {
    fn default() -> Self {
        UploadRetries {
            attempts: 10,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl Default for ObjectOptions {
    fn default() -> Self {
        ObjectOptions {
            kind: StoreKind::Bucket,
            mtime_metadata: true,
            use_server_modtime: false,
            chunk_size: 5 << 20,
            upload_concurrency: 4,
            read_only: false,
            describe: "object store".into(),
            spool_dir: None,
            upload_retries: UploadRetries::default(),
        }
    }
}

/// `op` with OpenDAL's retry layer for uploads: it retries at the level
/// of one request, under the writer's buffering, so the same bytes are
/// sent again (the part of a multipart upload, then its completion).
fn upload_operator(op: &Operator, r: UploadRetries) -> Operator {
    if r.attempts <= 1 {
        return op.clone();
    }
    let layer = opendal::layers::RetryLayer::new()
        .with_max_times(r.attempts as usize - 1)
        .with_min_delay(r.min_delay)
        .with_max_delay(r.max_delay.max(r.min_delay))
        .with_jitter()
        .with_notify(|e: opendal::layers::RetryEvent<'_>| {
            tracing::debug!(
                "upload request {:?} failed for now (retry {} in {:?}): {}",
                e.op,
                e.attempt,
                e.retry_after,
                e.err
            );
        });
    op.clone().layer(layer)
}

/// A Ferry [`Backend`] over an OpenDAL [`Operator`].
#[derive(Clone)]
pub struct ObjectBackend {
    pub(crate) op: Operator,
    /// `op` with upload retries (see [`UploadRetries`]), for writes that
    /// are not conditional.
    pub(crate) write_op: Operator,
    pub(crate) opts: Arc<ObjectOptions>,
    caps: Capabilities,
    /// Modification times read from metadata, by path, with the entity tag
    /// they belong to.
    mtimes: Arc<Mutex<HashMap<String, (String, SystemTime)>>>,
    /// Objects stat'ed lately (a HEAD: a stat, or a listing asking for an
    /// entry's time), by key, with when: an open soon after reads without
    /// asking again, pinned to the entity tag seen (see `recently_seen`).
    seen: Arc<Mutex<HashMap<String, (opendal::Metadata, Instant)>>>,
}

impl ObjectBackend {
    /// An adapter over `op`.
    pub fn new(op: Operator, mut opts: ObjectOptions) -> Self {
        let full = op.info().capability();
        opts.mtime_metadata &= full.write_with_user_metadata;
        let writable = !opts.read_only && full.write;
        let caps = Capabilities {
            read_only: !writable,
            listings: full.list,
            random_access_write: false,
            real_directories: opts.kind == StoreKind::Webdav,
            atomic_rename: writable && full.rename,
            rename_noreplace: false,
            server_side_copy: writable && full.copy,
            symlinks: false,
            hard_links: false,
            set_mtime: writable
                && opts.mtime_metadata
                && full.write_with_user_metadata
                && full.write_can_copy_from,
            permissions: false,
            ownership: false,
            usage: false,
            streaming_upload: writable,
            low_latency: false,
            read_streams: true,
            change_watch: false,
            native_hashes: match opts.kind {
                StoreKind::Bucket => &[HashKind::Md5],
                _ => &[],
            },
        };
        let write_op = upload_operator(&op, opts.upload_retries);
        ObjectBackend {
            op,
            write_op,
            opts: Arc::new(opts),
            caps,
            mtimes: Arc::new(Mutex::new(HashMap::new())),
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The operator for a write: with upload retries unless the write is
    /// conditional.
    pub(crate) fn writer_op(&self, conditional: bool) -> &Operator {
        if conditional {
            &self.op
        } else {
            &self.write_op
        }
    }

    /// The same adapter over `f(operator)`: a layer wrapped around the
    /// operator (tests inject store failures this way).
    pub fn map_operator(self, f: impl FnOnce(Operator) -> Operator) -> Self {
        let opts = Arc::try_unwrap(self.opts).unwrap_or_else(|shared| (*shared).clone());
        ObjectBackend::new(f(self.op), opts)
    }

    /// The operator this adapter drives.
    pub fn operator(&self) -> &Operator {
        &self.op
    }

    fn check_writable(&self, op: Operation, path: &RelPath) -> Result<()> {
        if self.caps.streaming_upload {
            Ok(())
        } else {
            Err(BackendError::new(ErrorKind::ReadOnly, op).with_path(path))
        }
    }

    /// The metadata of a file from OpenDAL's, with the modification time
    /// from user metadata when it is there.
    pub(crate) fn file_meta(&self, m: &opendal::Metadata) -> Metadata {
        let mut mtime = m.last_modified().map(SystemTime::from);
        if self.opts.mtime_metadata && !self.opts.use_server_modtime {
            if let Some(t) = m
                .user_metadata()
                .and_then(|u| u.get(MTIME_KEY))
                .and_then(parse_mtime)
            {
                mtime = Some(t);
            }
        }
        Metadata {
            file_type: FileType::File,
            size: m.content_length(),
            mtime,
            atime: None,
            permissions: None,
            owner: None,
            change: m.etag().map(change_marker),
        }
    }

    /// Metadata of the object at `key` (a file), or `None`.
    async fn stat_object(
        &self,
        key: &str,
        op: Operation,
        path: &RelPath,
    ) -> Result<Option<Metadata>> {
        match self.op.stat(key).await {
            Ok(m) if m.is_dir() => Ok(Some(dir_meta(m.last_modified().map(SystemTime::from)))),
            Ok(m) => {
                let meta = self.file_meta(&m);
                if let (Some(tag), Some(t)) = (m.etag(), meta.mtime) {
                    self.remember_mtime(key, tag, t);
                }
                self.remember_seen(key, m);
                Ok(Some(meta))
            }
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_err(e, op, path)),
        }
    }

    /// Is there anything below directory key `dir` (ending in `/`)?
    async fn dir_exists(&self, dir: &str, op: Operation, path: &RelPath) -> Result<bool> {
        if self.opts.kind == StoreKind::Http {
            return Ok(false);
        }
        // One request whatever the directory holds: the first entry of a
        // one-key page. (`list_with(..).limit(n)` sets the page size but
        // still reads every page: a request per n entries.)
        let first = match self.op.lister_with(dir).limit(1).await {
            Ok(mut lister) => lister.next().await,
            Err(e) => Some(Err(e)),
        };
        match first {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) if e.kind() == opendal::ErrorKind::NotFound => Ok(false),
            Some(Err(e)) => Err(map_err(e, op, path)),
        }
    }

    fn remember_mtime(&self, key: &str, etag: &str, t: SystemTime) {
        let mut memo = self.mtimes.lock().unwrap_or_else(|e| e.into_inner());
        if memo.len() >= MTIME_MEMO_MAX {
            memo.clear();
        }
        memo.insert(key.to_string(), (etag.to_string(), t));
    }

    fn remembered_mtime(&self, key: &str, etag: &str) -> Option<SystemTime> {
        let memo = self.mtimes.lock().unwrap_or_else(|e| e.into_inner());
        match memo.get(key) {
            Some((tag, t)) if tag == etag => Some(*t),
            _ => None,
        }
    }

    /// Forget what was seen of `key` (it is being changed).
    pub(crate) fn forget_key(&self, key: &str) {
        self.mtimes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn remember_seen(&self, key: &str, m: opendal::Metadata) {
        if m.etag().is_none() || !self.op.info().capability().read_with_if_match {
            return;
        }
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= SEEN_MAX {
            seen.retain(|_, (_, at)| now.duration_since(*at) < SEEN_FOR);
            if seen.len() >= SEEN_MAX {
                seen.clear();
            }
        }
        seen.insert(key.to_string(), (m, now));
    }

    /// What a HEAD of `key` answered less than [`SEEN_FOR`] ago. Only kept
    /// where reads can be pinned to an entity tag: a GET of an object
    /// replaced since then is refused by the store, and the open asks again
    /// (`ObjectFile::open`), so versions never mix.
    pub(crate) fn recently_seen(&self, key: &str) -> Option<opendal::Metadata> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(key) {
            Some((m, at)) if at.elapsed() < SEEN_FOR => Some(m.clone()),
            _ => None,
        }
    }

    /// Copy object `a` to `b` through Ferry, for stores that cannot copy
    /// inside themselves (streamed in parts, never held whole).
    async fn copy_through(&self, a: &str, b: &str, src: &Metadata, path: &RelPath) -> Result<()> {
        let err = |e| map_err(e, Operation::Copy, path);
        let reader = self.op.reader(a).await.map_err(err)?;
        let mut w = self.write_op.writer_with(b).chunk(self.opts.chunk_size);
        if self.opts.mtime_metadata {
            if let Some(t) = src.mtime {
                w = w.user_metadata(mtime_metadata(t));
            }
        }
        let mut w = w.await.map_err(err)?;
        let step = self.opts.chunk_size as u64;
        let mut at = 0;
        while at < src.size {
            let end = (at + step).min(src.size);
            let part = match reader.read(at..end).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(err(e));
                }
            };
            if part.is_empty() {
                let _ = w.abort().await;
                return Err(BackendError::new(ErrorKind::Other, Operation::Copy)
                    .with_path(path)
                    .with_source("the object became shorter while it was copied"));
            }
            at += part.len() as u64;
            if let Err(e) = w.write(part).await {
                let _ = w.abort().await;
                return Err(err(e));
            }
        }
        w.close().await.map_err(err)?;
        Ok(())
    }

    /// Record `mtime` on the object at `key` by rewriting it with new
    /// metadata: small objects are read and written again in one request
    /// (so their entity tag stays their MD5), larger ones are copied onto
    /// themselves inside the store.
    pub(crate) async fn rewrite_mtime(
        &self,
        key: &str,
        mtime: SystemTime,
        path: &RelPath,
    ) -> Result<()> {
        let err = |e| map_err(e, Operation::SetAttrs, path);
        let meta = self.op.stat(key).await.map_err(err)?;
        if meta.is_dir() {
            // Directories have no metadata of their own here.
            return Ok(());
        }
        let size = meta.content_length();
        let user = mtime_metadata(mtime);
        let cap = self.op.info().capability();
        // Pinned to the version just seen, where the store can check it, so
        // an upload by someone else in between is never overwritten with
        // the older data or mixed with it.
        let tag = meta.etag().map(str::to_string);
        if size <= self.opts.chunk_size as u64 {
            let mut r = self.op.read_with(key);
            if let Some(t) = tag.as_deref().filter(|_| cap.read_with_if_match) {
                r = r.if_match(t);
            }
            let data = r.await.map_err(err)?;
            if data.len() as u64 != size {
                return Err(BackendError::new(ErrorKind::Temporary, Operation::SetAttrs)
                    .with_path(path)
                    .with_source("the object changed while its time was set"));
            }
            let tag = tag.as_deref().filter(|_| cap.write_with_if_match);
            let mut w = self
                .writer_op(tag.is_some())
                .write_with(key, data)
                .user_metadata(user);
            if let Some(t) = tag {
                w = w.if_match(t);
            }
            w.await.map_err(err)?;
        } else {
            let mut w = self
                .write_op
                .writer_with(key)
                .user_metadata(user)
                .chunk(self.opts.chunk_size)
                .await
                .map_err(err)?;
            const MAX_COPY: u64 = 5 << 30;
            let mut at = 0;
            while at < size {
                let end = (at + MAX_COPY).min(size);
                let read = opendal::options::ReadOptions {
                    range: (at..end).into(),
                    if_match: tag.clone().filter(|_| cap.read_with_if_match),
                    ..Default::default()
                };
                if let Err(e) = w.copy_from_options(key, read).await {
                    let _ = w.abort().await;
                    return Err(err(e));
                }
                at = end;
            }
            w.close().await.map_err(err)?;
        }
        self.forget_key(key);
        Ok(())
    }
}

/// The OpenDAL key of a file path (no leading slash).
pub(crate) fn file_key(path: &RelPath, op: Operation) -> Result<String> {
    match std::str::from_utf8(path.as_bytes()) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Err(BackendError::new(ErrorKind::InvalidName, op)
            .with_path(path)
            .with_source("object stores take only UTF-8 names")),
    }
}

/// The OpenDAL key of a directory path (ending in `/`, empty for the root).
pub(crate) fn dir_key(path: &RelPath, op: Operation) -> Result<String> {
    let mut k = file_key(path, op)?;
    if !k.is_empty() {
        k.push('/');
    }
    Ok(k)
}

fn dir_meta(mtime: Option<SystemTime>) -> Metadata {
    Metadata {
        file_type: FileType::Dir,
        size: 0,
        mtime,
        atime: None,
        permissions: None,
        owner: None,
        change: None,
    }
}

/// A change marker from an entity tag.
pub(crate) fn change_marker(etag: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    etag.hash(&mut h);
    h.finish()
}

/// rclone's `mtime` metadata value: seconds since the epoch with a
/// fraction of up to nine digits (`1700000000.123456789`).
pub fn format_mtime(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        Err(e) => {
            // Before the epoch: a negative number of seconds.
            let d = e.duration();
            if d.subsec_nanos() == 0 {
                format!("-{}", d.as_secs())
            } else {
                format!("-{}.{:09}", d.as_secs(), d.subsec_nanos())
            }
        }
    }
}

/// Parse an `mtime` metadata value as rclone writes it (a decimal number of
/// seconds, possibly with a fraction, possibly negative).
pub fn parse_mtime(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    let d = Duration::new(secs, nanos);
    if neg {
        UNIX_EPOCH.checked_sub(d)
    } else {
        UNIX_EPOCH.checked_add(d)
    }
}

pub(crate) fn mtime_metadata(t: SystemTime) -> HashMap<String, String> {
    HashMap::from([(MTIME_KEY.to_string(), format_mtime(t))])
}

/// Why a rename of a file or directory (`src_is_dir`) onto what is at the
/// destination (`dest`: a directory or not, if anything) is refused.
fn type_clash(src_is_dir: Option<bool>, dest: Option<bool>) -> Option<ErrorKind> {
    match (src_is_dir?, dest?) {
        (false, true) => Some(ErrorKind::IsADirectory),
        (true, false) => Some(ErrorKind::NotADirectory),
        // Directories on object stores are prefixes: one onto another
        // would merge them.
        (true, true) => Some(ErrorKind::AlreadyExists),
        (false, false) => None,
    }
}

/// Map an OpenDAL error once to a backend error.
pub(crate) fn map_err(e: opendal::Error, op: Operation, path: &RelPath) -> BackendError {
    use opendal::ErrorKind as K;
    if e.kind() == K::ConditionNotMatch && op == Operation::Read {
        // Reads are pinned to the entity tag seen at open.
        return BackendError::new(ErrorKind::Other, op)
            .with_path(path)
            .with_source(format!("the object changed since it was opened ({e})"));
    }
    let kind = match e.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::PermissionDenied => ErrorKind::PermissionDenied,
        K::AlreadyExists => ErrorKind::AlreadyExists,
        K::IsADirectory => ErrorKind::IsADirectory,
        K::NotADirectory => ErrorKind::NotADirectory,
        K::RateLimited => ErrorKind::RateLimited,
        K::Unsupported => ErrorKind::Unsupported,
        // `if_not_exists` lost the race.
        K::ConditionNotMatch if op == Operation::Write => ErrorKind::AlreadyExists,
        _ if e.is_temporary() => ErrorKind::Temporary,
        _ => ErrorKind::Other,
    };
    BackendError::new(kind, op).with_path(path).with_source(e)
}

#[async_trait]
impl Backend for ObjectBackend {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn describe(&self) -> String {
        self.opts.describe.clone()
    }

    async fn stat(&self, path: &RelPath) -> Result<Metadata> {
        if path.is_root() {
            return Ok(dir_meta(None));
        }
        let key = file_key(path, Operation::Stat)?;
        if let Some(m) = self.stat_object(&key, Operation::Stat, path).await? {
            return Ok(m);
        }
        let dir = dir_key(path, Operation::Stat)?;
        if self.dir_exists(&dir, Operation::Stat, path).await? {
            return Ok(dir_meta(None));
        }
        Err(BackendError::new(ErrorKind::NotFound, Operation::Stat).with_path(path))
    }

    async fn lstat(&self, path: &RelPath) -> Result<Metadata> {
        self.stat(path).await
    }

    async fn list(&self, path: &RelPath) -> Result<Vec<DirEntry>> {
        let prefix = dir_key(path, Operation::List)?;
        let err = |e| map_err(e, Operation::List, path);
        let listed = match self.op.list(&prefix).await {
            Ok(v) => v,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound && path.is_root() => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        let anything = !listed.is_empty();
        let mut out = Vec::with_capacity(listed.len());
        let mut need_stat = Vec::new();
        for entry in listed {
            let full = entry.path();
            if full == prefix || full.len() <= prefix.len() {
                continue; // the directory itself (a marker object)
            }
            let rest = &full[prefix.len()..];
            let name = rest.trim_end_matches('/');
            if name.is_empty() || name.contains('/') {
                continue;
            }
            let m = entry.metadata();
            if m.is_dir() || rest.ends_with('/') {
                out.push(DirEntry {
                    name: name.as_bytes().to_vec(),
                    meta: dir_meta(m.last_modified().map(SystemTime::from)),
                });
                continue;
            }
            let mut meta = self.file_meta(m);
            let wants_metadata = self.opts.mtime_metadata && !self.opts.use_server_modtime;
            if wants_metadata {
                match m.etag().and_then(|tag| self.remembered_mtime(full, tag)) {
                    Some(t) => meta.mtime = Some(t),
                    None => need_stat.push(out.len()),
                }
            }
            out.push(DirEntry {
                name: name.as_bytes().to_vec(),
                meta,
            });
        }
        if !need_stat.is_empty() {
            // Listings carry no user metadata: ask for it, a few at a time.
            let keys: Vec<(usize, String)> = need_stat
                .into_iter()
                .map(|i| {
                    (
                        i,
                        format!("{prefix}{}", String::from_utf8_lossy(&out[i].name)),
                    )
                })
                .collect();
            let results: Vec<(usize, Option<Metadata>)> = futures::stream::iter(keys)
                .map(|(i, key)| async move {
                    // A file removed since the listing keeps what the
                    // listing said.
                    let m = self
                        .stat_object(&key, Operation::List, path)
                        .await
                        .ok()
                        .flatten();
                    (i, m)
                })
                .buffer_unordered(LIST_STAT_CONCURRENCY)
                .collect()
                .await;
            for (i, m) in results {
                if let Some(m) = m.filter(|m| !m.is_dir()) {
                    out[i].meta = m;
                }
            }
        }
        if out.is_empty() && !path.is_root() {
            // Nothing below: a file is not a directory (some servers list a
            // file as itself), and a prefix with nothing at all does not
            // exist.
            let key = file_key(path, Operation::List)?;
            return match self.stat_object(&key, Operation::List, path).await? {
                Some(m) if !m.is_dir() => {
                    Err(BackendError::new(ErrorKind::NotADirectory, Operation::List)
                        .with_path(path))
                }
                _ if anything => Ok(out),
                Some(_) => Ok(out),
                None => {
                    Err(BackendError::new(ErrorKind::NotFound, Operation::List).with_path(path))
                }
            };
        }
        Ok(out)
    }

    async fn open_file(&self, path: &RelPath, opts: OpenOptions) -> Result<Box<dyn FileHandle>> {
        if opts.write || opts.append || opts.truncate || opts.create || opts.create_new {
            return Err(BackendError::new(ErrorKind::Unsupported, Operation::Open)
                .with_path(path)
                .with_source("object stores take whole files only"));
        }
        let key = file_key(path, Operation::Open)?;
        let file = ObjectFile::open(self, key, path).await?;
        Ok(Box::new(file))
    }

    async fn remove_file(&self, path: &RelPath) -> Result<()> {
        self.check_writable(Operation::Remove, path)?;
        let key = file_key(path, Operation::Remove)?;
        match self.stat_object(&key, Operation::Remove, path).await? {
            Some(m) if m.is_dir() => {
                return Err(
                    BackendError::new(ErrorKind::IsADirectory, Operation::Remove).with_path(path),
                )
            }
            Some(_) => {}
            None => {
                let dir = dir_key(path, Operation::Remove)?;
                let kind = if self.dir_exists(&dir, Operation::Remove, path).await? {
                    ErrorKind::IsADirectory
                } else {
                    ErrorKind::NotFound
                };
                return Err(BackendError::new(kind, Operation::Remove).with_path(path));
            }
        }
        self.forget_key(&key);
        self.op
            .delete(&key)
            .await
            .map_err(|e| map_err(e, Operation::Remove, path))
    }

    async fn create_dir(&self, path: &RelPath, _mode: Option<u32>) -> Result<()> {
        self.check_writable(Operation::CreateDir, path)?;
        if path.is_root() || self.stat(path).await.is_ok() {
            return Err(
                BackendError::new(ErrorKind::AlreadyExists, Operation::CreateDir).with_path(path),
            );
        }
        if let Some(parent) = path.parent() {
            match self.stat(&parent).await {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(
                        BackendError::new(ErrorKind::NotADirectory, Operation::CreateDir)
                            .with_path(path),
                    )
                }
                Err(e) => return Err(e),
            }
        }
        let dir = dir_key(path, Operation::CreateDir)?;
        self.op
            .create_dir(&dir)
            .await
            .map_err(|e| map_err(e, Operation::CreateDir, path))
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<()> {
        self.check_writable(Operation::RemoveDir, path)?;
        if path.is_root() {
            return Err(
                BackendError::new(ErrorKind::PermissionDenied, Operation::RemoveDir)
                    .with_path(path),
            );
        }
        let meta = self.stat(path).await?;
        if !meta.is_dir() {
            return Err(
                BackendError::new(ErrorKind::NotADirectory, Operation::RemoveDir).with_path(path),
            );
        }
        if !self.list(path).await?.is_empty() {
            return Err(
                BackendError::new(ErrorKind::DirectoryNotEmpty, Operation::RemoveDir)
                    .with_path(path),
            );
        }
        let dir = dir_key(path, Operation::RemoveDir)?;
        match self.op.delete(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err(e, Operation::RemoveDir, path)),
        }
    }

    async fn rename(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<()> {
        self.check_writable(Operation::Rename, from)?;
        if from == to {
            self.stat(from).await?;
            return if overwrite {
                Ok(())
            } else {
                Err(BackendError::new(ErrorKind::AlreadyExists, Operation::Rename).with_path(to))
            };
        }
        // What is at the destination: its object and its prefix asked at
        // once (a new name needs both answers).
        let to_key = file_key(to, Operation::Rename)?;
        let to_dir = dir_key(to, Operation::Rename)?;
        let (dest_file, dest_dir) = futures::join!(
            self.stat_object(&to_key, Operation::Rename, to),
            self.dir_exists(&to_dir, Operation::Rename, to)
        );
        let dest = match (dest_file?, dest_dir?) {
            (Some(m), _) => Some(m.is_dir()),
            (None, true) => Some(true),
            (None, false) => None,
        };
        if dest.is_some() && !overwrite {
            return Err(
                BackendError::new(ErrorKind::AlreadyExists, Operation::Rename).with_path(to),
            );
        }
        let err = |e| map_err(e, Operation::Rename, from);
        let (a, b) = (
            file_key(from, Operation::Rename)?,
            file_key(to, Operation::Rename)?,
        );
        // The source is asked about only where the store cannot be told to
        // copy it or a directory is in the way (a failed copy says when it
        // is no file).
        let src = if self.caps.server_side_copy && !self.caps.atomic_rename && dest != Some(true) {
            None
        } else {
            Some(self.stat(from).await?)
        };
        let src_is_dir = src.as_ref().map(Metadata::is_dir);
        if let Some(kind) = type_clash(src_is_dir, dest) {
            return Err(BackendError::new(kind, Operation::Rename).with_path(to));
        }
        if src_is_dir == Some(true) {
            if !self.caps.atomic_rename {
                return Err(BackendError::new(ErrorKind::Unsupported, Operation::Rename)
                    .with_path(from)
                    .with_source("this store cannot rename directories"));
            }
            let (a, b) = (
                dir_key(from, Operation::Rename)?,
                dir_key(to, Operation::Rename)?,
            );
            return self.op.rename(&a, &b).await.map_err(err);
        }
        self.forget_key(&a);
        self.forget_key(&b);
        if self.caps.atomic_rename {
            return self.op.rename(&a, &b).await.map_err(err);
        }
        match &src {
            Some(src) => self.copy_through(&a, &b, src, from).await?,
            None => match self.op.copy(&a, &b).await {
                // Copied inside the store (metadata, and so the
                // modification time, comes along).
                Ok(_) => {}
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                    // No such object: a directory (which this store cannot
                    // rename) or nothing.
                    let dir = dir_key(from, Operation::Rename)?;
                    if !self.dir_exists(&dir, Operation::Rename, from).await? {
                        return Err(err(e));
                    }
                    if let Some(kind) = type_clash(Some(true), dest) {
                        return Err(BackendError::new(kind, Operation::Rename).with_path(to));
                    }
                    return Err(BackendError::new(ErrorKind::Unsupported, Operation::Rename)
                        .with_path(from)
                        .with_source("this store cannot rename directories"));
                }
                Err(e) => return Err(err(e)),
            },
        }
        self.forget_key(&b);
        self.op.delete(&a).await.map_err(err)
    }

    async fn copy(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        self.check_writable(Operation::Copy, to)?;
        if !self.caps.server_side_copy {
            return Err(BackendError::new(ErrorKind::Unsupported, Operation::Copy).with_path(from));
        }
        let src = self.stat(from).await?;
        if src.is_dir() {
            return Err(BackendError::new(ErrorKind::IsADirectory, Operation::Copy).with_path(from));
        }
        let (a, b) = (
            file_key(from, Operation::Copy)?,
            file_key(to, Operation::Copy)?,
        );
        self.forget_key(&b);
        self.op
            .copy(&a, &b)
            .await
            .map(|_| ())
            .map_err(|e| map_err(e, Operation::Copy, from))
    }

    async fn set_attrs(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        let meta = self.stat(path).await?;
        if attrs.size.is_some() || attrs.times.is_some() {
            self.check_writable(Operation::SetAttrs, path)?;
        }
        let key = file_key(path, Operation::SetAttrs)?;
        if let Some(size) = attrs.size {
            if meta.is_dir() {
                return Err(
                    BackendError::new(ErrorKind::IsADirectory, Operation::SetAttrs).with_path(path),
                );
            }
            if size != meta.size {
                if size != 0 {
                    return Err(
                        BackendError::new(ErrorKind::Unsupported, Operation::SetAttrs)
                            .with_path(path)
                            .with_source("object stores can only truncate a file to zero"),
                    );
                }
                let mtime = attrs.times.map(|(_, m)| m).unwrap_or_else(SystemTime::now);
                let mut w = self.write_op.write_with(&key, Vec::<u8>::new());
                if self.opts.mtime_metadata {
                    w = w.user_metadata(mtime_metadata(mtime));
                }
                w.await.map_err(|e| map_err(e, Operation::SetAttrs, path))?;
                self.forget_key(&key);
                return Ok(());
            }
        }
        if let Some((_, mtime)) = attrs.times {
            if self.caps.set_mtime && !meta.is_dir() && meta.mtime != Some(mtime) {
                self.rewrite_mtime(&key, mtime, path).await?;
            }
        }
        // Permissions and owners: object stores keep none.
        Ok(())
    }

    async fn set_attrs_nofollow(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        self.set_attrs(path, attrs).await
    }

    async fn symlink(&self, _target: &[u8], link: &RelPath) -> Result<()> {
        Err(BackendError::new(ErrorKind::Unsupported, Operation::Symlink).with_path(link))
    }

    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>> {
        Err(BackendError::new(ErrorKind::Unsupported, Operation::ReadLink).with_path(path))
    }

    async fn hard_link(&self, _existing: &RelPath, link: &RelPath) -> Result<()> {
        Err(BackendError::new(ErrorKind::Unsupported, Operation::HardLink).with_path(link))
    }

    async fn usage(&self) -> Result<Usage> {
        Err(BackendError::new(ErrorKind::Unsupported, Operation::Usage))
    }

    async fn stored_hash(&self, path: &RelPath, kind: HashKind) -> Result<Option<String>> {
        if kind != HashKind::Md5 || self.opts.kind != StoreKind::Bucket {
            return Ok(None);
        }
        let key = file_key(path, Operation::Hash)?;
        let m = self
            .op
            .stat(&key)
            .await
            .map_err(|e| map_err(e, Operation::Hash, path))?;
        Ok(stored_md5(&m))
    }

    async fn create_upload(&self, path: &RelPath, opts: UploadOptions) -> Result<Box<dyn Upload>> {
        self.check_writable(Operation::Write, path)?;
        let key = file_key(path, Operation::Write)?;
        Ok(Box::new(ObjectUpload::new(
            self.clone(),
            key,
            path.clone(),
            opts,
        )))
    }
}

/// The MD5 an object's metadata gives: the entity tag of a single-part
/// upload, or rclone's `md5chksum` metadata of a multipart one.
pub fn stored_md5(m: &opendal::Metadata) -> Option<String> {
    if let Some(tag) = m.etag() {
        let tag = tag.trim_matches('"');
        if tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(tag.to_ascii_lowercase());
        }
    }
    let b64 = m.user_metadata()?.get(MD5_KEY)?;
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    if raw.len() != 16 {
        return None;
    }
    Some(raw.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests;
