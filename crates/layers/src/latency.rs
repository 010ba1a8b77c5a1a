//! Added latency, for tests and benchmarks only: every request to the
//! wrapped backend waits a fixed [`Duration`] before it is sent, as if the
//! store were far away. It answers "does Ferry stay fast when each request
//! costs a round trip?" with a local disk or the memory backend underneath.
//!
//! # What is delayed
//! Each call that would be a request to a remote store sleeps
//! ([`tokio::time::sleep`]) for the delay, then runs the wrapped call:
//!
//! - every [`Backend`] method that reaches the store: `stat`, `lstat`,
//!   `list`, `open_file`, `remove_file`, `create_dir`, `remove_dir`,
//!   `rename`, `copy`, `set_attrs`, `set_attrs_nofollow`, `symlink`,
//!   `read_link`, `hard_link`, `usage`, `stored_hash` and `create_upload`;
//! - every [`FileHandle`] method of a file opened through this layer:
//!   `read_at`, `write_at`, `stat`, `set_attrs`, `sync`, and `read_stream`
//!   when the file gives a stream (one request: the stream, or the failure
//!   to open one, is handed over a delay after the wrapped file answered;
//!   the bytes then flow without further delay, as a response body does; a
//!   file without streams answers `None` at once, since no request was
//!   made);
//! - every [`Upload`] method of an upload created through this layer:
//!   `write`, `finish`, `abort`.
//!
//! Failed calls are delayed too: a store answers "not found" no faster than
//! it answers anything else.
//!
//! `capabilities`, `describe`, `native_hashes`, `watch_changes` and an open
//! file's `stored_hash` ask nothing of the store and pass through
//! unchanged, so the layer does not change what the VFS decides to do:
//! read-ahead, for instance, still follows [`Capabilities::low_latency`] of
//! the wrapped backend (a local disk or memory says true, and gets none).
//!
//! # Behavior
//! The delay is per request, not per layer: concurrent requests wait side by
//! side, so ten requests issued at once take about one delay, not ten. That
//! is what a remote store does, and what a server that pipelines requests
//! can exploit. Requests the caller issues one after another (an
//! [`Upload`], whose methods take `&mut self`, is always written this way)
//! pay one delay each; stores that buffer upload data and send it in large
//! parts pay far fewer round trips than this layer charges, so upload
//! figures measured through it are a pessimistic bound.
//!
//! Not for production use; the CLI offers it only behind a hidden flag.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_backend::{
    Backend, ByteStream, Capabilities, ChangeNotify, DirEntry, FileHandle, HashKind, Metadata,
    OpenOptions, RelPath, Result, SetAttrs, Upload, UploadOptions, Usage,
};

/// A backend whose every request waits a fixed delay first. See the module
/// docs.
pub struct Latency {
    inner: Arc<dyn Backend>,
    delay: Duration,
}

impl Latency {
    /// Wrap `inner`, adding `delay` before each of its requests.
    pub fn new(inner: Arc<dyn Backend>, delay: Duration) -> Self {
        Latency { inner, delay }
    }

    /// The delay added to each request.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

/// Wait `delay` (nothing at all for zero, so a zero delay is free).
async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

#[async_trait]
impl Backend for Latency {
    fn capabilities(&self) -> Capabilities {
        // A store this slow is not low-latency, whatever is below: the VFS
        // then reads ahead as it would on a network store.
        let mut c = self.inner.capabilities();
        if !self.delay.is_zero() {
            c.low_latency = false;
        }
        c
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn stat(&self, path: &RelPath) -> Result<Metadata> {
        pause(self.delay).await;
        self.inner.stat(path).await
    }

    async fn lstat(&self, path: &RelPath) -> Result<Metadata> {
        pause(self.delay).await;
        self.inner.lstat(path).await
    }

    async fn list(&self, path: &RelPath) -> Result<Vec<DirEntry>> {
        pause(self.delay).await;
        self.inner.list(path).await
    }

    async fn open_file(&self, path: &RelPath, opts: OpenOptions) -> Result<Box<dyn FileHandle>> {
        pause(self.delay).await;
        let inner = self.inner.open_file(path, opts).await?;
        Ok(Box::new(LatencyFile {
            inner,
            delay: self.delay,
        }))
    }

    async fn remove_file(&self, path: &RelPath) -> Result<()> {
        pause(self.delay).await;
        self.inner.remove_file(path).await
    }

    async fn create_dir(&self, path: &RelPath, mode: Option<u32>) -> Result<()> {
        pause(self.delay).await;
        self.inner.create_dir(path, mode).await
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<()> {
        pause(self.delay).await;
        self.inner.remove_dir(path).await
    }

    async fn rename(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<()> {
        pause(self.delay).await;
        self.inner.rename(from, to, overwrite).await
    }

    async fn copy(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        pause(self.delay).await;
        self.inner.copy(from, to).await
    }

    async fn set_attrs(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        pause(self.delay).await;
        self.inner.set_attrs(path, attrs).await
    }

    async fn set_attrs_nofollow(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        pause(self.delay).await;
        self.inner.set_attrs_nofollow(path, attrs).await
    }

    async fn symlink(&self, target: &[u8], link: &RelPath) -> Result<()> {
        pause(self.delay).await;
        self.inner.symlink(target, link).await
    }

    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>> {
        pause(self.delay).await;
        self.inner.read_link(path).await
    }

    async fn hard_link(&self, existing: &RelPath, link: &RelPath) -> Result<()> {
        pause(self.delay).await;
        self.inner.hard_link(existing, link).await
    }

    async fn usage(&self) -> Result<Usage> {
        pause(self.delay).await;
        self.inner.usage().await
    }

    fn watch_changes(&self, on_change: ChangeNotify) -> Result<bool> {
        self.inner.watch_changes(on_change)
    }

    async fn create_upload(&self, path: &RelPath, opts: UploadOptions) -> Result<Box<dyn Upload>> {
        pause(self.delay).await;
        let inner = self.inner.create_upload(path, opts).await?;
        Ok(Box::new(LatencyUpload {
            inner,
            delay: self.delay,
        }))
    }

    fn native_hashes(&self) -> &'static [HashKind] {
        self.inner.native_hashes()
    }

    async fn stored_hash(&self, path: &RelPath, kind: HashKind) -> Result<Option<String>> {
        pause(self.delay).await;
        self.inner.stored_hash(path, kind).await
    }
}

/// A file opened through [`Latency`]: each operation waits the delay first.
struct LatencyFile {
    inner: Box<dyn FileHandle>,
    delay: Duration,
}

#[async_trait]
impl FileHandle for LatencyFile {
    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        pause(self.delay).await;
        self.inner.read_at(offset, len, buf).await
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        pause(self.delay).await;
        self.inner.write_at(offset, data).await
    }

    async fn stat(&self) -> Result<Metadata> {
        pause(self.delay).await;
        self.inner.stat().await
    }

    async fn set_attrs(&self, attrs: &SetAttrs) -> Result<()> {
        pause(self.delay).await;
        self.inner.set_attrs(attrs).await
    }

    async fn sync(&self) -> Result<()> {
        pause(self.delay).await;
        self.inner.sync().await
    }

    async fn read_stream(&self, offset: u64, len: u64) -> Result<Option<Box<dyn ByteStream>>> {
        // Ask first: a file that has no streams makes no request, and its
        // reader falls back to `read_at`, which pays its own delay. A
        // stream, or a failure to open one, took a request.
        let stream = self.inner.read_stream(offset, len).await;
        if !matches!(stream, Ok(None)) {
            pause(self.delay).await;
        }
        stream
    }

    fn stored_hash(&self) -> Option<(HashKind, String)> {
        self.inner.stored_hash()
    }
}

/// An upload created through [`Latency`]: each operation waits the delay
/// first.
struct LatencyUpload {
    inner: Box<dyn Upload>,
    delay: Duration,
}

#[async_trait]
impl Upload for LatencyUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        pause(self.delay).await;
        self.inner.write(data).await
    }

    async fn finish(&mut self, mtime: Option<SystemTime>) -> Result<Metadata> {
        pause(self.delay).await;
        self.inner.finish(mtime).await
    }

    async fn abort(&mut self) -> Result<()> {
        pause(self.delay).await;
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests;
