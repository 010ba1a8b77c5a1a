//! Reading objects ([`ObjectFile`]) and writing new ones
//! ([`ObjectUpload`]).

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_backend::{
    BackendError, ErrorKind, FileHandle, Metadata, Operation, RelPath, Result, SetAttrs, Upload,
    UploadOptions,
};
use opendal::{Buffer, Reader, Writer};

use crate::{map_err, mtime_metadata, ObjectBackend};

/// An object open for reading: each read is one ranged request (the VFS
/// reads ahead in parallel chunks above this). The object is pinned to the
/// entity tag it had at open where the store can check it, so a file
/// replaced while it is read fails the read instead of mixing two versions.
/// A small object stat'ed just before (the client's STAT, or the listing it
/// read before its downloads) is read whole at open instead, pinned to the
/// tag that HEAD saw: one GET, no second HEAD.
pub struct ObjectFile {
    reader: Reader,
    meta: Metadata,
    path: RelPath,
    /// The object's MD5 (bucket stores), for verifying whole-file reads.
    md5: Option<String>,
    /// The whole object, when it was read at open.
    whole: Option<Bytes>,
}

/// Objects up to this size are read whole at open when they were stat'ed
/// just before (at most this much held per open file).
const READ_WHOLE_MAX: u64 = 256 * 1024;

impl ObjectFile {
    pub(crate) async fn open(backend: &ObjectBackend, key: String, path: &RelPath) -> Result<Self> {
        if let Some(m) = backend
            .recently_seen(&key)
            .filter(|m| !m.is_dir() && m.content_length() <= READ_WHOLE_MAX)
        {
            let mut file = ObjectFile::pinned(backend, &key, path, &m).await?;
            match file.reader.read(0..m.content_length()).await {
                Ok(data) if data.len() as u64 == m.content_length() => {
                    file.whole = Some(data.to_bytes());
                    return Ok(file);
                }
                // Replaced since that HEAD (a 412, or another length where
                // the store ignores the condition): as it is now.
                Ok(_) => {}
                Err(e) if e.kind() == opendal::ErrorKind::ConditionNotMatch => {}
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => {}
                Err(e) => return Err(map_err(e, Operation::Open, path)),
            }
            backend.forget_key(&key);
        }
        let m = match backend.op.stat(&key).await {
            Ok(m) => m,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                // A directory (a prefix) or nothing.
                let meta = ferry_backend::Backend::stat(backend, path).await?;
                let kind = if meta.is_dir() {
                    ErrorKind::IsADirectory
                } else {
                    ErrorKind::NotFound
                };
                return Err(BackendError::new(kind, Operation::Open).with_path(path));
            }
            Err(e) => return Err(map_err(e, Operation::Open, path)),
        };
        ObjectFile::pinned(backend, &key, path, &m).await
    }

    /// The object as `m` describes it, its reads pinned to `m`'s tag.
    async fn pinned(
        backend: &ObjectBackend,
        key: &str,
        path: &RelPath,
        m: &opendal::Metadata,
    ) -> Result<Self> {
        if m.is_dir() {
            return Err(BackendError::new(ErrorKind::IsADirectory, Operation::Open).with_path(path));
        }
        let full = backend.op.info().capability();
        let mut r = backend
            .op
            .reader_with(key)
            .content_length_hint(m.content_length());
        if let Some(tag) = m.etag().filter(|_| full.read_with_if_match) {
            r = r.if_match(tag);
        }
        let reader = r.await.map_err(|e| map_err(e, Operation::Open, path))?;
        let md5 = match backend.opts.kind {
            crate::StoreKind::Bucket => crate::stored_md5(m),
            _ => None,
        };
        Ok(ObjectFile {
            reader,
            meta: backend.file_meta(m),
            path: path.clone(),
            md5,
            whole: None,
        })
    }
}

#[async_trait]
impl FileHandle for ObjectFile {
    async fn read_at(&self, offset: u64, len: usize, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        let size = self.meta.size;
        if offset >= size || len == 0 {
            return Ok(buf);
        }
        let want = (len as u64).min(size - offset);
        if let Some(whole) = &self.whole {
            buf.extend_from_slice(&whole[offset as usize..(offset + want) as usize]);
            return Ok(buf);
        }
        let data = self
            .reader
            .read(offset..offset + want)
            .await
            .map_err(|e| map_err(e, Operation::Read, &self.path))?;
        if data.is_empty() {
            // The object is shorter than it was: it changed.
            return Err(BackendError::new(ErrorKind::Other, Operation::Read)
                .with_path(&self.path)
                .with_source("the object became shorter while it was read"));
        }
        buf.reserve(data.len());
        for part in data {
            buf.extend_from_slice(&part);
        }
        Ok(buf)
    }

    async fn write_at(&self, _offset: u64, _data: Bytes) -> Result<()> {
        Err(BackendError::new(ErrorKind::Unsupported, Operation::Write).with_path(&self.path))
    }

    async fn stat(&self) -> Result<Metadata> {
        Ok(self.meta.clone())
    }

    async fn set_attrs(&self, _attrs: &SetAttrs) -> Result<()> {
        Err(BackendError::new(ErrorKind::Unsupported, Operation::SetAttrs).with_path(&self.path))
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    async fn read_stream(
        &self,
        offset: u64,
        len: u64,
    ) -> Result<Option<Box<dyn ferry_backend::ByteStream>>> {
        let end = offset.saturating_add(len).min(self.meta.size);
        if offset >= end {
            return Ok(Some(Box::new(ObjectStream {
                inner: None,
                first: None,
                path: self.path.clone(),
            })));
        }
        if let Some(whole) = &self.whole {
            return Ok(Some(Box::new(ObjectStream {
                inner: None,
                first: Some(whole.slice(offset as usize..end as usize)),
                path: self.path.clone(),
            })));
        }
        let inner = self
            .reader
            .clone()
            .into_bytes_stream(offset..end)
            .await
            .map_err(|e| map_err(e, Operation::Read, &self.path))?;
        Ok(Some(Box::new(ObjectStream {
            inner: Some(inner),
            first: None,
            path: self.path.clone(),
        })))
    }

    fn stored_hash(&self) -> Option<(ferry_backend::HashKind, String)> {
        Some((ferry_backend::HashKind::Md5, self.md5.clone()?))
    }
}

/// One ranged GET, streamed.
struct ObjectStream {
    inner: Option<opendal::FuturesBytesStream>,
    /// Bytes to give before `inner`'s (an object read whole at open).
    first: Option<Bytes>,
    path: RelPath,
}

#[async_trait]
impl ferry_backend::ByteStream for ObjectStream {
    async fn next(&mut self) -> Result<Option<Bytes>> {
        use futures::StreamExt as _;
        if let Some(b) = self.first.take() {
            return Ok(Some(b));
        }
        let Some(s) = self.inner.as_mut() else {
            return Ok(None);
        };
        match s.next().await {
            None => Ok(None),
            Some(Ok(b)) => Ok(Some(b)),
            Some(Err(e)) => Err(BackendError::new(ErrorKind::Temporary, Operation::Read)
                .with_path(&self.path)
                .with_source(e.to_string())),
        }
    }
}

/// A new object written front to back. The first part is held until it
/// is full (or the upload finishes): a small file then goes in one request,
/// with its modification time in its metadata, and its entity tag stays
/// its MD5. A larger one becomes a multipart upload of `chunk_size` parts,
/// `upload_concurrency` at a time; nothing is visible until it completes.
pub struct ObjectUpload {
    backend: ObjectBackend,
    key: String,
    path: RelPath,
    opts: UploadOptions,
    /// Data held before the multipart upload starts.
    held: Vec<Bytes>,
    held_len: usize,
    writer: Option<Writer>,
    /// The time recorded when the multipart upload started.
    started_with: Option<SystemTime>,
    /// For stores that take a file in one request: the file the upload is
    /// spooled to once it outgrows one part, and its length.
    spool: Option<(std::fs::File, u64)>,
    /// Bytes accepted so far.
    written: u64,
    done: bool,
}

impl ObjectUpload {
    pub(crate) fn new(
        backend: ObjectBackend,
        key: String,
        path: RelPath,
        opts: UploadOptions,
    ) -> Self {
        ObjectUpload {
            backend,
            key,
            path,
            opts,
            held: Vec::new(),
            held_len: 0,
            writer: None,
            started_with: None,
            spool: None,
            written: 0,
            done: false,
        }
    }

    /// Can the store take this upload in parts?
    fn multipart(&self) -> bool {
        self.backend.op.info().capability().write_can_multi
    }

    /// Append what is held in memory to the spool file (creating it).
    async fn spill(&mut self) -> Result<()> {
        let held = std::mem::take(&mut self.held);
        self.held_len = 0;
        let spool = self.spool.take();
        let dir = self
            .backend
            .opts
            .spool_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let path = self.path.clone();
        let r = tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, u64)> {
            use std::io::Write as _;
            let (mut f, mut len) = match spool {
                Some(s) => s,
                None => {
                    std::fs::create_dir_all(&dir)?;
                    // Unlinked at once: nothing is left behind, whatever
                    // happens to the process.
                    (tempfile::tempfile_in(&dir)?, 0)
                }
            };
            for b in held {
                f.write_all(&b)?;
                len += b.len() as u64;
            }
            Ok((f, len))
        })
        .await
        .map_err(|e| {
            BackendError::new(ErrorKind::Other, Operation::Write)
                .with_path(&path)
                .with_source(e.to_string())
        })?;
        match r {
            Ok(s) => {
                self.spool = Some(s);
                Ok(())
            }
            Err(e) => Err(BackendError::from_io(Operation::Write, e).with_path(&self.path)),
        }
    }

    /// The spooled upload as one buffer, mapped from its file rather than
    /// read into memory.
    async fn spooled(&mut self) -> Result<Buffer> {
        self.spill().await?;
        let (file, len) = self.spool.take().expect("spill leaves a spool");
        if len == 0 {
            return Ok(Buffer::new());
        }
        let map = map_file(&file)
            .map_err(|e| BackendError::from_io(Operation::Write, e).with_path(&self.path))?;
        Ok(Buffer::from(Bytes::from_owner(map)))
    }

    fn err(&self, e: opendal::Error) -> BackendError {
        map_err(e, Operation::Write, &self.path)
    }

    /// An exclusive create: checked again just before the commit. The
    /// check at open has a long window; this one is as short as it gets,
    /// and it holds on stores that take the conditional write's header
    /// without honouring it (Garage).
    async fn check_still_absent(&self) -> Result<()> {
        let b = &self.backend;
        if !self.opts.if_not_exists {
            return Ok(());
        }
        match b.op.stat(&self.key).await {
            Ok(_) => Err(
                BackendError::new(ErrorKind::AlreadyExists, Operation::Write).with_path(&self.path),
            ),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn start_multipart(&mut self) -> Result<()> {
        let mtime = self.opts.mtime.unwrap_or_else(SystemTime::now);
        let o = &self.backend.opts;
        let exclusive =
            self.opts.if_not_exists && self.backend.op.info().capability().write_with_if_not_exists;
        let mut w = self
            .backend
            .writer_op(exclusive)
            .writer_with(&self.key)
            .chunk(o.chunk_size)
            .concurrent(o.upload_concurrency.max(1));
        if o.mtime_metadata {
            w = w.user_metadata(mtime_metadata(mtime));
        }
        if exclusive {
            w = w.if_not_exists(true);
        }
        let mut writer = w.await.map_err(|e| self.err(e))?;
        let held = Buffer::from(std::mem::take(&mut self.held));
        self.held_len = 0;
        if let Err(e) = writer.write(held).await {
            let _ = writer.abort().await;
            return Err(self.err(e));
        }
        self.writer = Some(writer);
        self.started_with = Some(mtime);
        Ok(())
    }
}

#[async_trait]
impl Upload for ObjectUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.done {
            return Err(BackendError::new(ErrorKind::Other, Operation::Write)
                .with_path(&self.path)
                .with_source("the upload is finished"));
        }
        self.written += data.len() as u64;
        if let Some(w) = self.writer.as_mut() {
            return w
                .write(data)
                .await
                .map_err(|e| map_err(e, Operation::Write, &self.path));
        }
        self.held_len += data.len();
        self.held.push(data);
        if self.held_len >= self.backend.opts.chunk_size {
            if self.multipart() {
                self.start_multipart().await?;
            } else {
                // One request at the end: keep memory bounded meanwhile.
                self.spill().await?;
            }
        }
        Ok(())
    }

    async fn finish(&mut self, mtime: Option<SystemTime>) -> Result<Metadata> {
        if self.done {
            return Err(BackendError::new(ErrorKind::Other, Operation::Write)
                .with_path(&self.path)
                .with_source("the upload is finished"));
        }
        self.done = true;
        let mtime = mtime.or(self.opts.mtime);
        let b = self.backend.clone();
        b.forget_key(&self.key);
        // Whether the store's view of the new object is known without
        // asking: its time is the one stored in its metadata, and its
        // entity tag came back with the commit.
        let own_time = b.opts.mtime_metadata && !b.opts.use_server_modtime;
        let (mtime, etag) = match self.writer.take() {
            None => {
                let t = mtime.unwrap_or_else(SystemTime::now);
                let data = if self.spool.is_some() {
                    self.spooled().await?
                } else {
                    Buffer::from(std::mem::take(&mut self.held))
                };
                self.check_still_absent().await?;
                let exclusive =
                    self.opts.if_not_exists && b.op.info().capability().write_with_if_not_exists;
                let mut w = b.writer_op(exclusive).write_with(&self.key, data);
                if b.opts.mtime_metadata {
                    w = w.user_metadata(mtime_metadata(t));
                }
                if exclusive {
                    w = w.if_not_exists(true);
                }
                let put = w.await.map_err(|e| self.err(e))?;
                (Some(t), put.etag().map(str::to_string))
            }
            Some(mut w) => {
                if let Err(e) = self.check_still_absent().await {
                    let _ = w.abort().await;
                    return Err(e);
                }
                let done = match w.close().await {
                    Ok(m) => m,
                    Err(e) => {
                        // Release the parts the store keeps for the upload.
                        let _ = w.abort().await;
                        return Err(self.err(e));
                    }
                };
                let mut etag = done.etag().map(str::to_string);
                // Committed: what follows cannot undo that, so its failures
                // are logged rather than reported as a failed upload.
                if let Some(t) = mtime {
                    if Some(t) != self.started_with && b.capabilities_set_mtime() {
                        // Rewritten: a new entity tag.
                        etag = None;
                        if let Err(e) = b.rewrite_mtime(&self.key, t, &self.path).await {
                            tracing::warn!(
                                "{}: uploaded, but its time was not set: {e}",
                                self.path
                            );
                        }
                    }
                }
                (mtime.or(self.started_with), etag)
            }
        };
        let size = self.written;
        // An open that raced the commit may have seen the old object.
        b.forget_key(&self.key);
        Ok(Metadata {
            file_type: ferry_backend::FileType::File,
            size,
            mtime,
            atime: None,
            permissions: None,
            owner: None,
            change: etag
                .filter(|_| own_time && mtime.is_some())
                .map(|e| crate::change_marker(&e)),
        })
    }

    async fn abort(&mut self) -> Result<()> {
        self.done = true;
        self.held.clear();
        self.spool = None;
        if let Some(mut w) = self.writer.take() {
            w.abort().await.map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}

impl ObjectBackend {
    fn capabilities_set_mtime(&self) -> bool {
        ferry_backend::Backend::capabilities(self).set_mtime
    }
}

/// Map a spool file into memory.
#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the file is an unlinked temporary file this upload created
    // and alone holds; nothing writes to or truncates it once it is
    // mapped, so the mapping cannot change under the reader.
    unsafe { memmap2::Mmap::map(file) }
}
