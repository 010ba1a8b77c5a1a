//! The retry layer over the memory backend, with failures injected by a
//! layer below it that fails the first calls of each operation.

use std::collections::HashMap;
use std::sync::Mutex;

use ferry_backend::{BackendError, ErrorKind, Layer, LayeredFile, OpenOptions, Operation, RelPath};
use ferry_backend_memory::MemoryBackend;

use super::*;
use ferry_backend::layer::Request;

/// What the flaky layer has done: calls per operation, shared by the
/// backend and every file it opened.
#[derive(Default)]
struct Counts(Mutex<HashMap<Operation, u32>>);

impl Counts {
    /// Count a call of `op`; true if it is one of the first `fail`.
    fn fails(&self, op: Operation, fail: u32) -> bool {
        let mut m = self.0.lock().unwrap();
        let n = m.entry(op).or_insert(0);
        *n += 1;
        *n <= fail
    }

    fn of(&self, op: Operation) -> u32 {
        self.0.lock().unwrap().get(&op).copied().unwrap_or(0)
    }
}

/// Fails the first `fail` calls of every operation, each counted apart,
/// with `kind`; then passes them through.
struct Flaky {
    inner: Arc<dyn Backend>,
    kind: ErrorKind,
    fail: u32,
    counts: Arc<Counts>,
}

fn injected<'a, T: Send + 'a>(
    counts: &Counts,
    kind: ErrorKind,
    fail: u32,
    op: Operation,
    req: Request<'a, T>,
) -> Request<'a, T> {
    if counts.fails(op, fail) {
        Box::pin(async move { Err(BackendError::new(kind, op)) })
    } else {
        req
    }
}

impl Layer for Flaky {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    fn request<'a, T: Send + 'a>(&'a self, op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        injected(&self.counts, self.kind, self.fail, op, req)
    }
    fn wrap_file(&self, inner: Box<dyn FileHandle>) -> Box<dyn FileHandle> {
        Box::new(LayeredFile(FlakyFile {
            inner,
            kind: self.kind,
            fail: self.fail,
            counts: self.counts.clone(),
        }))
    }
}

struct FlakyFile {
    inner: Box<dyn FileHandle>,
    kind: ErrorKind,
    fail: u32,
    counts: Arc<Counts>,
}

impl FileLayer for FlakyFile {
    fn inner(&self) -> &dyn FileHandle {
        &*self.inner
    }
    fn request<'a, T: Send + 'a>(&'a self, op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        injected(&self.counts, self.kind, self.fail, op, req)
    }
}

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

/// The retry layer over a store that fails the first `fail` calls of each
/// operation with `kind`.
fn layer(kind: ErrorKind, fail: u32, attempts: u32) -> (Layered<Retry>, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let flaky = Flaky {
        inner: Arc::new(MemoryBackend::new()),
        kind,
        fail,
        counts: counts.clone(),
    };
    let opts = RetryOptions {
        attempts,
        ..RetryOptions::default()
    };
    (Retry::wrap(Arc::new(Layered(flaky)), opts), counts)
}

#[tokio::test(start_paused = true)]
async fn temporary_failures_are_retried_until_success() {
    let (be, counts) = layer(ErrorKind::Temporary, 3, 10);
    // The root exists; the first three stats fail temporarily.
    be.stat(&RelPath::root()).await.unwrap();
    assert_eq!(counts.of(Operation::Stat), 4);
}

#[tokio::test(start_paused = true)]
async fn tries_are_capped_and_the_last_error_returned() {
    let (be, counts) = layer(ErrorKind::RateLimited, 100, 4);
    let e = be.stat(&RelPath::root()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(counts.of(Operation::Stat), 4);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let (be, counts) = layer(ErrorKind::PermissionDenied, 5, 10);
    let e = be.stat(&RelPath::root()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(counts.of(Operation::Stat), 1);
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_operations_are_tried_once() {
    let (be, counts) = layer(ErrorKind::Temporary, 1, 10);
    let e = be.create_dir(&p("d"), None).await.unwrap_err();
    assert!(e.is_temporary());
    assert_eq!(counts.of(Operation::CreateDir), 1);
    be.create_dir(&p("d"), None).await.unwrap();
    assert_eq!(counts.of(Operation::CreateDir), 2);
}

#[tokio::test(start_paused = true)]
async fn file_reads_and_writes_are_retried_and_reads_keep_the_prefix() {
    let (be, counts) = layer(ErrorKind::Temporary, 2, 10);
    let opts = OpenOptions {
        read: true,
        write: true,
        create: true,
        ..Default::default()
    };
    let f = be.open_file(&p("f"), opts).await.unwrap();
    assert_eq!(counts.of(Operation::Open), 3, "the open was retried too");
    f.write_at(0, Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(counts.of(Operation::Write), 3);
    // Two failed reads, each of which took the buffer with it: the third
    // starts again from the caller's prefix, which is kept exactly once.
    let buf = f.read_at(0, 10, b"HDR".to_vec()).await.unwrap();
    assert_eq!(counts.of(Operation::Read), 3);
    assert_eq!(buf, b"HDRhello");
}

#[tokio::test(start_paused = true)]
async fn delays_double_up_to_the_cap() {
    let (be, counts) = layer(ErrorKind::Temporary, 10, 12);
    let start = tokio::time::Instant::now();
    be.stat(&RelPath::root()).await.unwrap();
    assert_eq!(counts.of(Operation::Stat), 11);
    // 10, 20, 40, ... 1280 ms, then the 2 s cap twice.
    let doubling: u64 = (0..8).map(|i| 10u64 << i).sum();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(doubling + 2 * 2000),
        "the delay stops doubling at max_delay"
    );
}
