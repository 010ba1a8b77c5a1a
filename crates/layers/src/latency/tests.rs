//! The latency layer over the memory backend. Most tests run on tokio's
//! paused clock, where a sleep ends exactly at its deadline, so each test can
//! count delays exactly: one delay per request, and one delay for requests
//! that wait side by side. One test uses the real clock with loose bounds.

use std::future::Future;
use std::sync::Mutex;

use ferry_backend::BackendError;
use ferry_backend::{
    ByteStream, DirEntry, ErrorKind, FileType, HashKind, OpenOptions, RelPath, SetAttrs,
    UploadOptions, Usage,
};
use ferry_backend_memory::MemoryBackend;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::*;

const D: Duration = Duration::from_millis(50);

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

fn layer(delay: Duration) -> Layered<Latency> {
    Latency::wrap(Arc::new(MemoryBackend::new()), delay)
}

/// Run `f` and say how long it took on the (paused or real) tokio clock.
async fn timed<F: Future>(f: F) -> (F::Output, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

fn rw_create() -> OpenOptions {
    OpenOptions {
        read: true,
        write: true,
        create: true,
        ..OpenOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn each_backend_request_waits_one_delay() {
    let be = layer(D);
    let (r, t) = timed(be.create_dir(&p("d"), None)).await;
    r.unwrap();
    assert_eq!(t, D, "create_dir");
    let (r, t) = timed(be.open_file(&p("d/f"), rw_create())).await;
    drop(r.unwrap());
    assert_eq!(t, D, "open_file");
    let (r, t) = timed(be.stat(&p("d/f"))).await;
    assert_eq!(r.unwrap().file_type, FileType::File);
    assert_eq!(t, D, "stat");
    let (r, t) = timed(be.lstat(&p("d/f"))).await;
    r.unwrap();
    assert_eq!(t, D, "lstat");
    let (r, t) = timed(be.list(&p("d"))).await;
    assert_eq!(r.unwrap().len(), 1);
    assert_eq!(t, D, "list");
    let (r, t) = timed(be.copy(&p("d/f"), &p("d/g"))).await;
    r.unwrap();
    assert_eq!(t, D, "copy");
    let (r, t) = timed(be.rename(&p("d/g"), &p("d/h"), true)).await;
    r.unwrap();
    assert_eq!(t, D, "rename");
    let attrs = SetAttrs {
        permissions: Some(0o600),
        ..SetAttrs::default()
    };
    let (r, t) = timed(be.set_attrs(&p("d/h"), &attrs)).await;
    r.unwrap();
    assert_eq!(t, D, "set_attrs");
    let (r, t) = timed(be.set_attrs_nofollow(&p("d/h"), &attrs)).await;
    r.unwrap();
    assert_eq!(t, D, "set_attrs_nofollow");
    let (r, t) = timed(be.usage()).await;
    r.unwrap();
    assert_eq!(t, D, "usage");
    let (r, t) = timed(be.stored_hash(&p("d/h"), HashKind::Md5)).await;
    assert_eq!(r.unwrap(), None);
    assert_eq!(t, D, "stored_hash");
    let (r, t) = timed(be.remove_file(&p("d/h"))).await;
    r.unwrap();
    assert_eq!(t, D, "remove_file");
    let (r, t) = timed(be.remove_file(&p("d/f"))).await;
    r.unwrap();
    assert_eq!(t, D, "remove_file");
    let (r, t) = timed(be.remove_dir(&p("d"))).await;
    r.unwrap();
    assert_eq!(t, D, "remove_dir");
}

#[tokio::test(start_paused = true)]
async fn failed_and_unsupported_requests_wait_too() {
    let be = layer(D);
    let (r, t) = timed(be.stat(&p("missing"))).await;
    assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(t, D);
    // The memory backend has no links; the request still costs a delay.
    let (r, t) = timed(be.symlink(b"target", &p("link"))).await;
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Unsupported);
    assert_eq!(t, D, "symlink");
    let (r, t) = timed(be.read_link(&p("link"))).await;
    r.unwrap_err();
    assert_eq!(t, D, "read_link");
    let (r, t) = timed(be.hard_link(&p("a"), &p("b"))).await;
    r.unwrap_err();
    assert_eq!(t, D, "hard_link");
}

#[tokio::test(start_paused = true)]
async fn each_file_request_waits_one_delay() {
    let be = layer(D);
    let f = be.open_file(&p("f"), rw_create()).await.unwrap();
    let (r, t) = timed(f.write_at(0, Bytes::from_static(b"hello"))).await;
    r.unwrap();
    assert_eq!(t, D, "write_at");
    let (r, t) = timed(f.read_at(0, 10, b"HDR".to_vec())).await;
    assert_eq!(r.unwrap(), b"HDRhello");
    assert_eq!(t, D, "read_at");
    let (r, t) = timed(f.stat()).await;
    assert_eq!(r.unwrap().size, 5);
    assert_eq!(t, D, "fstat");
    let size = SetAttrs {
        size: Some(2),
        ..SetAttrs::default()
    };
    let (r, t) = timed(f.set_attrs(&size)).await;
    r.unwrap();
    assert_eq!(t, D, "fsetstat");
    let (r, t) = timed(f.sync()).await;
    r.unwrap();
    assert_eq!(t, D, "fsync");
    assert_eq!(be.stat(&p("f")).await.unwrap().size, 2);
}

#[tokio::test(start_paused = true)]
async fn a_stream_waits_one_delay_and_then_flows() {
    let be = Latency::wrap(Arc::new(Stub::default()), D);
    let f = be.open_file(&p("f"), OpenOptions::default()).await.unwrap();
    let (r, t) = timed(f.read_stream(3, 5)).await;
    let mut stream = r.unwrap().expect("the stub gives streams");
    assert_eq!(t, D, "read_stream");
    let (r, t) = timed(async {
        let mut got = Vec::new();
        while let Some(piece) = stream.next().await.unwrap() {
            got.extend_from_slice(&piece);
        }
        got
    })
    .await;
    assert_eq!(r, b"34567");
    assert_eq!(t, Duration::ZERO, "the body is not delayed");
    // A stream that could not be opened took a request all the same.
    let (r, t) = timed(f.read_stream(100, 5)).await;
    assert!(r.is_err());
    assert_eq!(t, D, "failed read_stream");
    // A hash known at open asks nothing of the store.
    let start = Instant::now();
    assert_eq!(f.stored_hash(), Some((HashKind::Md5, "feed".to_string())));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn each_upload_request_waits_one_delay() {
    let inner = Arc::new(Stub::default());
    let be = Latency::wrap(inner.clone(), D);

    let (r, t) = timed(be.create_upload(&p("up"), UploadOptions::default())).await;
    let mut up = r.unwrap();
    assert_eq!(t, D, "create_upload");
    for part in [&b"front "[..], b"to ", b"back"] {
        let (r, t) = timed(up.write(Bytes::copy_from_slice(part))).await;
        r.unwrap();
        assert_eq!(t, D, "write");
    }
    let (r, t) = timed(up.finish(None)).await;
    assert_eq!(r.unwrap().size, 13);
    assert_eq!(t, D, "finish");
    assert_eq!(inner.committed(), vec![b"front to back".to_vec()]);

    let mut up = be
        .create_upload(&p("gone"), UploadOptions::default())
        .await
        .unwrap();
    up.write(Bytes::from_static(b"never")).await.unwrap();
    let (r, t) = timed(up.abort()).await;
    r.unwrap();
    assert_eq!(t, D, "abort");
    assert_eq!(inner.committed().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn facts_about_the_backend_pass_through_without_delay() {
    let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let be = Latency::wrap(inner.clone(), D);
    let start = Instant::now();
    // The same, except that a delayed store is never low-latency.
    let mut want = inner.capabilities();
    assert!(want.low_latency);
    want.low_latency = false;
    assert_eq!(be.capabilities(), want);
    assert!(
        Latency::wrap(inner.clone(), Duration::ZERO)
            .capabilities()
            .low_latency
    );
    assert_eq!(be.describe(), inner.describe());
    assert!(
        be.watch_changes(Arc::new(|_| {})).is_err(),
        "memory watches nothing"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn zero_delay_adds_nothing() {
    let be = layer(Duration::ZERO);
    let (r, t) = timed(be.stat(&RelPath::root())).await;
    r.unwrap();
    assert_eq!(t, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn sequential_requests_add_up() {
    let be = layer(D);
    let (_, t) = timed(async {
        for _ in 0..10 {
            be.stat(&RelPath::root()).await.unwrap();
        }
    })
    .await;
    assert_eq!(t, 10 * D);
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_wait_side_by_side() {
    let be = Arc::new(layer(D));
    let (_, t) = timed(stats_at_once(&be, 10)).await;
    // Serialised they would take 10 delays; side by side, exactly one.
    assert_eq!(t, D);

    // The same for positional reads on one open file.
    let f: Arc<dyn FileHandle> = be.open_file(&p("f"), rw_create()).await.unwrap().into();
    f.write_at(0, Bytes::from(vec![7u8; 1000])).await.unwrap();
    let (_, t) = timed(async {
        let mut reads = JoinSet::new();
        for i in 0..10u64 {
            let f = f.clone();
            reads.spawn(async move { f.read_at(i * 100, 100, Vec::new()).await });
        }
        while let Some(r) = reads.join_next().await {
            assert_eq!(r.unwrap().unwrap(), vec![7u8; 100]);
        }
    })
    .await;
    assert_eq!(t, D);
}

/// The same on the real clock, with bounds loose enough for a busy machine:
/// at least one delay, and far below the ten a serialising layer would take.
#[tokio::test]
async fn concurrent_requests_overlap_on_the_real_clock() {
    let be = Arc::new(layer(D));
    let (_, t) = timed(stats_at_once(&be, 10)).await;
    assert!(t >= D, "{t:?}: shorter than the delay");
    assert!(t < 6 * D, "{t:?}: 10 concurrent requests did not overlap");
}

/// Issue `n` stats of the root at once and wait for all of them.
async fn stats_at_once(be: &Arc<Layered<Latency>>, n: usize) {
    let mut stats = JoinSet::new();
    for _ in 0..n {
        let be = be.clone();
        stats.spawn(async move { be.stat(&RelPath::root()).await });
    }
    let mut done = 0;
    while let Some(r) = stats.join_next().await {
        assert!(r.unwrap().unwrap().is_dir());
        done += 1;
    }
    assert_eq!(done, n);
}

/// A backend that takes uploads (keeping what each committed upload wrote)
/// and opens files that give streams of the bytes `0123456789` and an MD5
/// known at open; everything else is unsupported.
#[derive(Default)]
struct Stub {
    committed: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Stub {
    fn committed(&self) -> Vec<Vec<u8>> {
        self.committed.lock().unwrap().clone()
    }
}

fn unsupported<T>(op: Operation) -> Result<T> {
    Err(BackendError::new(ErrorKind::Unsupported, op))
}

#[async_trait]
impl Backend for Stub {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read_only: false,
            listings: false,
            random_access_write: false,
            real_directories: false,
            atomic_rename: false,
            rename_noreplace: false,
            server_side_copy: false,
            symlinks: false,
            hard_links: false,
            set_mtime: false,
            permissions: false,
            ownership: false,
            usage: false,
            streaming_upload: true,
            low_latency: true,
            read_streams: true,
            change_watch: false,
            native_hashes: &[],
        }
    }
    fn describe(&self) -> String {
        "stub".into()
    }
    async fn stat(&self, _: &RelPath) -> Result<Metadata> {
        unsupported(Operation::Stat)
    }
    async fn lstat(&self, _: &RelPath) -> Result<Metadata> {
        unsupported(Operation::Stat)
    }
    async fn list(&self, _: &RelPath) -> Result<Vec<DirEntry>> {
        unsupported(Operation::List)
    }
    async fn open_file(&self, _: &RelPath, _: OpenOptions) -> Result<Box<dyn FileHandle>> {
        Ok(Box::new(StreamFile))
    }
    async fn remove_file(&self, _: &RelPath) -> Result<()> {
        unsupported(Operation::Remove)
    }
    async fn create_dir(&self, _: &RelPath, _: Option<u32>) -> Result<()> {
        unsupported(Operation::CreateDir)
    }
    async fn remove_dir(&self, _: &RelPath) -> Result<()> {
        unsupported(Operation::RemoveDir)
    }
    async fn rename(&self, _: &RelPath, _: &RelPath, _: bool) -> Result<()> {
        unsupported(Operation::Rename)
    }
    async fn copy(&self, _: &RelPath, _: &RelPath) -> Result<()> {
        unsupported(Operation::Copy)
    }
    async fn set_attrs(&self, _: &RelPath, _: &SetAttrs) -> Result<()> {
        unsupported(Operation::SetAttrs)
    }
    async fn set_attrs_nofollow(&self, _: &RelPath, _: &SetAttrs) -> Result<()> {
        unsupported(Operation::SetAttrs)
    }
    async fn symlink(&self, _: &[u8], _: &RelPath) -> Result<()> {
        unsupported(Operation::Symlink)
    }
    async fn read_link(&self, _: &RelPath) -> Result<Vec<u8>> {
        unsupported(Operation::ReadLink)
    }
    async fn hard_link(&self, _: &RelPath, _: &RelPath) -> Result<()> {
        unsupported(Operation::HardLink)
    }
    async fn usage(&self) -> Result<Usage> {
        unsupported(Operation::Usage)
    }
    async fn create_upload(&self, _: &RelPath, _: UploadOptions) -> Result<Box<dyn Upload>> {
        Ok(Box::new(VecUpload {
            data: Vec::new(),
            committed: self.committed.clone(),
        }))
    }
}

/// Collects the data in memory; `finish` hands it to the backend.
struct VecUpload {
    data: Vec<u8>,
    committed: Arc<Mutex<Vec<Vec<u8>>>>,
}

#[async_trait]
impl Upload for VecUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.data.extend_from_slice(&data);
        Ok(())
    }
    async fn finish(&mut self, mtime: Option<SystemTime>) -> Result<Metadata> {
        let data = std::mem::take(&mut self.data);
        let size = data.len() as u64;
        self.committed.lock().unwrap().push(data);
        Ok(Metadata {
            file_type: FileType::File,
            size,
            mtime,
            atime: None,
            permissions: None,
            owner: None,
            change: None,
        })
    }
    async fn abort(&mut self) -> Result<()> {
        self.data.clear();
        Ok(())
    }
}

const DIGITS: &[u8] = b"0123456789";

/// A read-only file of [`DIGITS`] that gives streams.
struct StreamFile;

#[async_trait]
impl FileHandle for StreamFile {
    async fn read_at(&self, offset: u64, len: usize, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        let start = (offset as usize).min(DIGITS.len());
        let end = start.saturating_add(len).min(DIGITS.len());
        buf.extend_from_slice(&DIGITS[start..end]);
        Ok(buf)
    }
    async fn write_at(&self, _: u64, _: Bytes) -> Result<()> {
        unsupported(Operation::Write)
    }
    async fn stat(&self) -> Result<Metadata> {
        unsupported(Operation::Stat)
    }
    async fn set_attrs(&self, _: &SetAttrs) -> Result<()> {
        unsupported(Operation::SetAttrs)
    }
    async fn sync(&self) -> Result<()> {
        Ok(())
    }
    async fn read_stream(&self, offset: u64, len: u64) -> Result<Option<Box<dyn ByteStream>>> {
        if offset > DIGITS.len() as u64 {
            return Err(BackendError::new(ErrorKind::Other, Operation::Read));
        }
        let data = self.read_at(offset, len as usize, Vec::new()).await?;
        // One byte per piece, to see that no piece waits.
        let pieces = data.into_iter().map(|b| Bytes::from(vec![b])).collect();
        Ok(Some(Box::new(Pieces(pieces))))
    }
    fn stored_hash(&self) -> Option<(HashKind, String)> {
        Some((HashKind::Md5, "feed".to_string()))
    }
}

/// A stream handing out its pieces in order.
struct Pieces(std::collections::VecDeque<Bytes>);

#[async_trait]
impl ByteStream for Pieces {
    async fn next(&mut self) -> Result<Option<Bytes>> {
        Ok(self.0.pop_front())
    }
}
