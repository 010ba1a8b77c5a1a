//! The retry layer over the memory backend, with failures injected by a
//! wrapper that fails the first calls of chosen operations.

use std::sync::atomic::{AtomicU32, Ordering};

use ferry_backend::{ErrorKind, Operation};
use ferry_backend_memory::MemoryBackend;

use super::*;

/// Fails the first `fail` calls of stat, create_dir and file reads/writes
/// with `kind`, then passes through.
struct Flaky {
    inner: MemoryBackend,
    kind: ErrorKind,
    fail: u32,
    calls: Arc<AtomicU32>,
}

impl Flaky {
    fn check(&self, op: Operation) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.fail {
            Err(BackendErrorExt::new(self.kind, op))
        } else {
            Ok(())
        }
    }
}

use ferry_backend::BackendError as BackendErrorExt;

struct FlakyFile {
    inner: Box<dyn FileHandle>,
    kind: ErrorKind,
    fail: u32,
    calls: Arc<AtomicU32>,
}

#[async_trait]
impl FileHandle for FlakyFile {
    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Err(BackendErrorExt::new(self.kind, Operation::Read));
        }
        self.inner.read_at(offset, len, buf).await
    }
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Err(BackendErrorExt::new(self.kind, Operation::Write));
        }
        self.inner.write_at(offset, data).await
    }
    async fn stat(&self) -> Result<Metadata> {
        self.inner.stat().await
    }
    async fn set_attrs(&self, attrs: &SetAttrs) -> Result<()> {
        self.inner.set_attrs(attrs).await
    }
    async fn sync(&self) -> Result<()> {
        self.inner.sync().await
    }
}

#[async_trait]
impl Backend for Flaky {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn describe(&self) -> String {
        "flaky".into()
    }
    async fn stat(&self, path: &RelPath) -> Result<Metadata> {
        self.check(Operation::Stat)?;
        self.inner.stat(path).await
    }
    async fn lstat(&self, path: &RelPath) -> Result<Metadata> {
        self.inner.lstat(path).await
    }
    async fn list(&self, path: &RelPath) -> Result<Vec<DirEntry>> {
        self.inner.list(path).await
    }
    async fn open_file(&self, path: &RelPath, opts: OpenOptions) -> Result<Box<dyn FileHandle>> {
        let inner = self.inner.open_file(path, opts).await?;
        Ok(Box::new(FlakyFile {
            inner,
            kind: self.kind,
            fail: self.fail,
            calls: Arc::new(AtomicU32::new(0)),
        }))
    }
    async fn remove_file(&self, path: &RelPath) -> Result<()> {
        self.inner.remove_file(path).await
    }
    async fn create_dir(&self, path: &RelPath, mode: Option<u32>) -> Result<()> {
        self.check(Operation::CreateDir)?;
        self.inner.create_dir(path, mode).await
    }
    async fn remove_dir(&self, path: &RelPath) -> Result<()> {
        self.inner.remove_dir(path).await
    }
    async fn rename(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<()> {
        self.inner.rename(from, to, overwrite).await
    }
    async fn copy(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        self.inner.copy(from, to).await
    }
    async fn set_attrs(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        self.inner.set_attrs(path, attrs).await
    }
    async fn set_attrs_nofollow(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        self.inner.set_attrs_nofollow(path, attrs).await
    }
    async fn symlink(&self, target: &[u8], link: &RelPath) -> Result<()> {
        self.inner.symlink(target, link).await
    }
    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>> {
        self.inner.read_link(path).await
    }
    async fn hard_link(&self, existing: &RelPath, link: &RelPath) -> Result<()> {
        self.inner.hard_link(existing, link).await
    }
    async fn usage(&self) -> Result<Usage> {
        self.inner.usage().await
    }
}

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

fn layer(kind: ErrorKind, fail: u32, attempts: u32) -> (Retry<Flaky>, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let flaky = Flaky {
        inner: MemoryBackend::new(),
        kind,
        fail,
        calls: calls.clone(),
    };
    let opts = RetryOptions {
        attempts,
        ..RetryOptions::default()
    };
    (Retry::new(flaky, opts), calls)
}

#[tokio::test(start_paused = true)]
async fn temporary_failures_are_retried_until_success() {
    let (be, calls) = layer(ErrorKind::Temporary, 3, 10);
    // The root exists; the first three stats fail temporarily.
    be.stat(&RelPath::root()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn tries_are_capped_and_the_last_error_returned() {
    let (be, calls) = layer(ErrorKind::RateLimited, 100, 4);
    let e = be.stat(&RelPath::root()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let (be, calls) = layer(ErrorKind::PermissionDenied, 5, 10);
    let e = be.stat(&RelPath::root()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_operations_are_tried_once() {
    let (be, calls) = layer(ErrorKind::Temporary, 1, 10);
    let e = be.create_dir(&p("d"), None).await.unwrap_err();
    assert!(e.is_temporary());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    be.create_dir(&p("d"), None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn file_reads_and_writes_are_retried_and_keep_the_prefix() {
    let (be, _) = layer(ErrorKind::Temporary, 2, 10);
    let opts = OpenOptions {
        read: true,
        write: true,
        create: true,
        ..Default::default()
    };
    let f = be.open_file(&p("f"), opts).await.unwrap();
    f.write_at(0, Bytes::from_static(b"hello")).await.unwrap();
    let buf = f.read_at(0, 10, b"HDR".to_vec()).await.unwrap();
    assert_eq!(buf, b"HDRhello");
}

#[tokio::test(start_paused = true)]
async fn delays_double_up_to_the_cap() {
    let (be, _) = layer(ErrorKind::Temporary, 6, 10);
    let start = tokio::time::Instant::now();
    be.stat(&RelPath::root()).await.unwrap();
    // 10 + 20 + 40 + 80 + 160 + 320 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(630));
}
