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
//!   `read_at`, `write_at`, `stat`, `set_attrs`, `sync` and `read_stream`
//!   (one request: the bytes of the stream then flow without further
//!   delay, as a response body does);
//! - every [`Upload`] method of an upload created through this layer:
//!   `write`, `finish`, `abort`.
//!
//! Failed calls are delayed too: a store answers "not found" no faster than
//! it answers anything else.
//!
//! `describe`, `watch_changes` and an open file's `stored_hash` ask nothing
//! of the store and pass through unchanged. [`Capabilities::low_latency`]
//! turns false for a delay above zero: a store this slow is read ahead as
//! a network store would be.
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
use ferry_backend::layer::Request;
use ferry_backend::{
    Backend, Capabilities, FileHandle, FileLayer, Layer, Layered, LayeredFile, LayeredUpload,
    Metadata, Operation, Result, Upload, UploadLayer,
};

/// A backend whose every request waits a fixed delay first. See the module
/// docs.
pub struct Latency {
    inner: Arc<dyn Backend>,
    delay: Duration,
}

impl Latency {
    /// `inner` with `delay` added before each of its requests.
    pub fn wrap(inner: Arc<dyn Backend>, delay: Duration) -> Layered<Latency> {
        Layered(Latency { inner, delay })
    }
}

/// `req`, `delay` later (at once for zero, so a zero delay is free).
fn delayed<'a, T: Send + 'a>(delay: Duration, req: Request<'a, T>) -> Request<'a, T> {
    if delay.is_zero() {
        return req;
    }
    Box::pin(async move {
        tokio::time::sleep(delay).await;
        req.await
    })
}

impl Layer for Latency {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    fn request<'a, T: Send + 'a>(&'a self, _op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        delayed(self.delay, req)
    }

    fn wrap_file(&self, inner: Box<dyn FileHandle>) -> Box<dyn FileHandle> {
        Box::new(LayeredFile(LatencyFile {
            inner,
            delay: self.delay,
        }))
    }

    fn wrap_upload(&self, inner: Box<dyn Upload>) -> Box<dyn Upload> {
        Box::new(LayeredUpload(LatencyUpload {
            inner,
            delay: self.delay,
        }))
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = self.inner.capabilities();
        c.low_latency &= self.delay.is_zero();
        c
    }
}

/// A file opened through [`Latency`]: each request waits the delay first.
struct LatencyFile {
    inner: Box<dyn FileHandle>,
    delay: Duration,
}

impl FileLayer for LatencyFile {
    fn inner(&self) -> &dyn FileHandle {
        &*self.inner
    }

    fn request<'a, T: Send + 'a>(&'a self, _op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        delayed(self.delay, req)
    }
}

/// An upload created through [`Latency`]: each call waits the delay first.
struct LatencyUpload {
    inner: Box<dyn Upload>,
    delay: Duration,
}

#[async_trait]
impl UploadLayer for LatencyUpload {
    fn inner(&mut self) -> &mut dyn Upload {
        &mut *self.inner
    }

    async fn write(&mut self, data: Bytes) -> Result<()> {
        delayed(self.delay, self.inner.write(data)).await
    }

    async fn finish(&mut self, mtime: Option<SystemTime>) -> Result<Metadata> {
        delayed(self.delay, self.inner.finish(mtime)).await
    }

    async fn abort(&mut self) -> Result<()> {
        delayed(self.delay, self.inner.abort()).await
    }
}

#[cfg(test)]
mod tests;
