//! Low-level retries: an operation that fails with a temporary error
//! ([`ErrorKind::Temporary`] or [`ErrorKind::RateLimited`]) is tried again
//! after a delay that doubles from [`RetryOptions::min_delay`] up to
//! [`RetryOptions::max_delay`], at most [`RetryOptions::attempts`] times in
//! all. Every other error is returned at once.
//!
//! Only idempotent operations are retried: reads, stats, listings,
//! positional writes (the same bytes at the same offset), attribute
//! changes, copies and usage. Operations whose retry could report a false
//! failure or do something twice after an ambiguous error (creating or
//! removing a directory, removing a file, rename, links, an exclusive
//! create) are tried once, and the caller sees the temporary error.
//!
//! Only this layer reads "temporary"; backends just classify their errors.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_backend::{
    Backend, ByteStream, DirEntry, FileHandle, FileLayer, HashKind, Layer, Layered, LayeredFile,
    Metadata, OpenOptions, RelPath, Result, SetAttrs, Usage,
};
use std::sync::Arc;

/// How hard to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOptions {
    /// Tries in all, the first included (`--low-level-retries`, default 10;
    /// 0 or 1 means no retry).
    pub attempts: u32,
    /// Delay before the first retry.
    pub min_delay: Duration,
    /// The longest delay between two tries.
    pub max_delay: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            attempts: 10,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryOptions {
    /// Run `op` until it succeeds, fails permanently, or the tries run out.
    pub async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_noting(what, || {}, op).await
    }

    /// [`RetryOptions::run`], calling `on_retry` before each retry.
    pub async fn run_noting<T, F, Fut>(
        &self,
        what: &str,
        on_retry: impl Fn(),
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut delay = self.min_delay;
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_temporary() && attempt < self.attempts => {
                    tracing::debug!(
                        "{what}: temporary failure (try {attempt}/{}), retrying in {delay:?}: {e}",
                        self.attempts
                    );
                    on_retry();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max_delay);
                    attempt += 1;
                }
                r => return r,
            }
        }
    }
}

/// A backend whose idempotent operations are retried. See the module docs.
/// Operations not written here (the ones that are not idempotent, and
/// uploads, whose data cannot be replayed: stores retry their own parts)
/// are tried once.
pub struct Retry {
    inner: Arc<dyn Backend>,
    opts: Tries,
}

impl Retry {
    /// `inner` with its idempotent operations retried.
    pub fn wrap(inner: Arc<dyn Backend>, opts: RetryOptions) -> Layered<Retry> {
        Self::wrap_counted(inner, opts, None)
    }

    /// [`Retry::wrap`], counting each retry in `metrics`
    /// (`ferry_backend_retries_total`).
    pub fn wrap_counted(
        inner: Arc<dyn Backend>,
        opts: RetryOptions,
        metrics: Option<Arc<ferry_metrics::Metrics>>,
    ) -> Layered<Retry> {
        Layered(Retry {
            inner,
            opts: Tries { opts, metrics },
        })
    }
}

/// The options and where retries are counted.
#[derive(Clone)]
struct Tries {
    opts: RetryOptions,
    metrics: Option<Arc<ferry_metrics::Metrics>>,
}

impl Tries {
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let note = || {
            if let Some(m) = &self.metrics {
                m.backend_retry();
            }
        };
        self.opts.run_noting(what, note, op).await
    }
}

#[async_trait]
impl Layer for Retry {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    fn wrap_file(&self, inner: Box<dyn FileHandle>) -> Box<dyn FileHandle> {
        Box::new(LayeredFile(RetryFile {
            inner,
            opts: self.opts.clone(),
        }))
    }

    async fn stat(&self, path: &RelPath) -> Result<Metadata> {
        self.opts.run("stat", || self.inner.stat(path)).await
    }

    async fn lstat(&self, path: &RelPath) -> Result<Metadata> {
        self.opts.run("lstat", || self.inner.lstat(path)).await
    }

    async fn list(&self, path: &RelPath) -> Result<Vec<DirEntry>> {
        self.opts.run("list", || self.inner.list(path)).await
    }

    /// An exclusive create is tried once: after an ambiguous failure a
    /// retry could fail on the file the first try made.
    async fn open_file(&self, path: &RelPath, opts: OpenOptions) -> Result<Box<dyn FileHandle>> {
        if opts.create_new {
            return self.inner.open_file(path, opts).await;
        }
        self.opts
            .run("open", || self.inner.open_file(path, opts))
            .await
    }

    async fn copy(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        self.opts.run("copy", || self.inner.copy(from, to)).await
    }

    async fn set_attrs(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        self.opts
            .run("set_attrs", || self.inner.set_attrs(path, attrs))
            .await
    }

    async fn set_attrs_nofollow(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        self.opts
            .run("set_attrs", || self.inner.set_attrs_nofollow(path, attrs))
            .await
    }

    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>> {
        self.opts
            .run("read_link", || self.inner.read_link(path))
            .await
    }

    async fn usage(&self) -> Result<Usage> {
        self.opts.run("usage", || self.inner.usage()).await
    }

    async fn stored_hash(&self, path: &RelPath, kind: HashKind) -> Result<Option<String>> {
        self.opts
            .run("stored_hash", || self.inner.stored_hash(path, kind))
            .await
    }
}

/// An open file whose operations are retried (all of them are idempotent).
struct RetryFile {
    inner: Box<dyn FileHandle>,
    opts: Tries,
}

#[async_trait]
impl FileLayer for RetryFile {
    fn inner(&self) -> &dyn FileHandle {
        &*self.inner
    }

    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        // The buffer moves into each try and a failed try hands nothing
        // back, so keep the caller's prefix (a reply header, a few bytes) to
        // start again from.
        let head = buf.clone();
        let mut spare = Some(buf);
        self.opts
            .run("read", || {
                let b = spare.take().unwrap_or_else(|| head.clone());
                self.inner.read_at(offset, len, b)
            })
            .await
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        self.opts
            .run("write", || self.inner.write_at(offset, data.clone()))
            .await
    }

    async fn stat(&self) -> Result<Metadata> {
        self.opts.run("fstat", || self.inner.stat()).await
    }

    async fn set_attrs(&self, attrs: &SetAttrs) -> Result<()> {
        self.opts
            .run("fsetstat", || self.inner.set_attrs(attrs))
            .await
    }

    async fn sync(&self) -> Result<()> {
        self.opts.run("fsync", || self.inner.sync()).await
    }

    async fn read_stream(&self, offset: u64, len: u64) -> Result<Option<Box<dyn ByteStream>>> {
        // Opening the stream is retried; a stream that breaks midway is the
        // reader's to restart from where it got to.
        self.opts
            .run("read stream", || self.inner.read_stream(offset, len))
            .await
    }
}

#[cfg(test)]
mod tests;
