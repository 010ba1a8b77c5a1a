//! The on-disk file cache (`--vfs-cache-mode minimal|writes|full`), over an
//! object store (OpenDAL's memory service: whole-file uploads, no real
//! directories) and over the local backend (temporary file + rename).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::test_util::{p, READ, UPLOAD};
use async_trait::async_trait;
use bytes::Bytes;
use ferry_backend::{
    BackendError, ErrorKind, FileHandle, FileLayer, HashKind, Layer, Layered, LayeredFile, Upload,
    UploadOptions,
};
use ferry_backend_opendal::{ObjectBackend, ObjectOptions};

/// Counts what reaches the store, and fails uploads on demand.
struct Probe {
    inner: Arc<dyn Backend>,
    read_opens: AtomicUsize,
    uploads: AtomicUsize,
    fail_uploads: AtomicBool,
    /// The MD5 read handles claim the store keeps.
    claim_md5: std::sync::Mutex<Option<String>>,
    /// Uploads starting now, and the most at once (each start is slowed).
    starting: AtomicUsize,
    peak_starting: AtomicUsize,
    slow_uploads: AtomicBool,
}

/// A handle claiming a stored hash.
struct Claiming(Box<dyn FileHandle>, String);

impl FileLayer for Claiming {
    fn inner(&self) -> &dyn FileHandle {
        &*self.0
    }
    fn stored_hash(&self) -> Option<(HashKind, String)> {
        Some((HashKind::Md5, self.1.clone()))
    }
}

impl Probe {
    fn new(inner: Arc<dyn Backend>) -> Arc<Probe> {
        Arc::new(Probe {
            inner,
            read_opens: AtomicUsize::new(0),
            uploads: AtomicUsize::new(0),
            fail_uploads: AtomicBool::new(false),
            claim_md5: std::sync::Mutex::new(None),
            starting: AtomicUsize::new(0),
            peak_starting: AtomicUsize::new(0),
            slow_uploads: AtomicBool::new(false),
        })
    }
    fn failing(&self) -> ferry_backend::Result<()> {
        if self.fail_uploads.load(Ordering::SeqCst) {
            Err(BackendError::new(
                ErrorKind::Temporary,
                ferry_backend::Operation::Write,
            ))
        } else {
            Ok(())
        }
    }
}

/// The probe is a layer: it counts opens and uploads, and fails or slows
/// uploads on demand; everything else passes through.
/// [`Probe`] as a layer (a local type, for the orphan rule).
struct ProbeLayer(Arc<Probe>);

#[async_trait]
impl Layer for ProbeLayer {
    fn inner(&self) -> &dyn Backend {
        &*self.0.inner
    }
    async fn open_file(
        &self,
        path: &RelPath,
        opts: OpenOptions,
    ) -> ferry_backend::Result<Box<dyn FileHandle>> {
        if opts.write {
            self.0.failing()?;
            self.0.uploads.fetch_add(1, Ordering::SeqCst);
        } else {
            self.0.read_opens.fetch_add(1, Ordering::SeqCst);
            let claim = self.0.claim_md5.lock().unwrap().clone();
            if let Some(md5) = claim {
                let h = self.0.inner.open_file(path, opts).await?;
                return Ok(Box::new(LayeredFile(Claiming(h, md5))));
            }
        }
        self.0.inner.open_file(path, opts).await
    }
    async fn create_upload(
        &self,
        path: &RelPath,
        opts: UploadOptions,
    ) -> ferry_backend::Result<Box<dyn Upload>> {
        self.0.failing()?;
        self.0.uploads.fetch_add(1, Ordering::SeqCst);
        if self.0.slow_uploads.load(Ordering::SeqCst) {
            let now = self.0.starting.fetch_add(1, Ordering::SeqCst) + 1;
            self.0.peak_starting.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            self.0.starting.fetch_sub(1, Ordering::SeqCst);
        }
        self.0.inner.create_upload(path, opts).await
    }
}

struct Setup {
    probe: Arc<Probe>,
    opts: VfsOptions,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn object(mode: CacheMode) -> Setup {
        let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
        let backend = Arc::new(ObjectBackend::new(op, ObjectOptions::default()));
        Self::with(backend, mode, None)
    }

    fn local(mode: CacheMode) -> (Setup, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        let backend = Arc::new(ferry_backend_local::LocalBackend::open(root.path()).unwrap());
        (Self::with(backend, mode, None), root)
    }

    /// A new start on the same cache after a crash, uploading at once
    /// what it finds changed.
    fn restart(&self) -> Vfs {
        let mut opts = self.opts.clone();
        opts.cache.write_back = Duration::ZERO;
        Vfs::try_new(Arc::new(Layered(ProbeLayer(self.probe.clone()))), opts).unwrap()
    }

    fn with(backend: Arc<dyn Backend>, mode: CacheMode, dir: Option<tempfile::TempDir>) -> Setup {
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let mut opts = VfsOptions {
            cache_mode: mode,
            ..VfsOptions::default()
        };
        opts.cache.data_dir = dir.path().join("vfs");
        opts.cache.meta_dir = dir.path().join("vfsMeta");
        opts.cache.write_back = Duration::from_secs(3600);
        opts.cache.max_retry_delay = Duration::from_millis(200);
        Setup {
            probe: Probe::new(backend),
            opts,
            _dir: dir,
        }
    }

    fn vfs(&self) -> Vfs {
        Vfs::try_new(
            Arc::new(Layered(ProbeLayer(self.probe.clone()))),
            self.opts.clone(),
        )
        .unwrap()
    }

    /// Put `data` at `path` on the store directly.
    async fn put(&self, path: &str, data: &[u8]) {
        let b = &self.probe.inner;
        if b.capabilities().streaming_upload {
            let mut up = b
                .create_upload(&p(path), UploadOptions::default())
                .await
                .unwrap();
            up.write(Bytes::copy_from_slice(data)).await.unwrap();
            up.finish(None).await.unwrap();
        } else {
            let opts = OpenOptions {
                write: true,
                create: true,
                truncate: true,
                ..Default::default()
            };
            let f = b.open_file(&p(path), opts).await.unwrap();
            f.write_at(0, Bytes::copy_from_slice(data)).await.unwrap();
        }
    }

    /// The store's copy of `path`, if any.
    async fn stored(&self, path: &str) -> Option<Vec<u8>> {
        let b = &self.probe.inner;
        let f = match b
            .open_file(
                &p(path),
                OpenOptions {
                    read: true,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return None,
            Err(e) => panic!("{e}"),
        };
        Some(f.read_at(0, 1 << 26, Vec::new()).await.unwrap())
    }
}

const RW: OpenFlags = OpenFlags {
    read: true,
    write: true,
    append: false,
    create: false,
    truncate: false,
    exclusive: false,
};

async fn read_all(vfs: &Vfs, path: &str) -> Vec<u8> {
    let f = vfs.open(&p(path), READ, None).await.unwrap();
    let got = f.read_at(0, 1 << 26, Vec::new()).await.unwrap();
    f.close().await.unwrap();
    got
}

async fn write_file(vfs: &Vfs, path: &str, data: &[u8]) {
    let f = vfs.open(&p(path), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::copy_from_slice(data)).await.unwrap();
    f.close().await.unwrap();
}

async fn flush(vfs: &Vfs) {
    let left = vfs
        .flush_uploads(tokio::time::sleep(Duration::from_secs(20)))
        .await;
    assert_eq!(left, 0, "uploads still pending");
}

/// A big file whose every byte says where it is.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn partial_rewrite_of_an_object_works_and_uploads_the_whole_file() {
    let s = Setup::object(CacheMode::Writes);
    let vfs = s.vfs();
    let orig = pattern(3 << 20);
    s.put("big", &orig).await;
    let f = vfs.open(&p("big"), RW, None).await.unwrap();
    f.write_at(1_500_000, Bytes::from_static(b"HELLO"))
        .await
        .unwrap();
    // Read back through the same handle: the new bytes, and the old ones
    // around them fetched from the store.
    let got = f.read_at(1_499_998, 9, Vec::new()).await.unwrap();
    assert_eq!(
        &got,
        &[
            orig[1_499_998],
            orig[1_499_999],
            b'H',
            b'E',
            b'L',
            b'L',
            b'O',
            orig[1_500_005],
            orig[1_500_006]
        ]
    );
    f.close().await.unwrap();
    let mut want = orig.clone();
    want[1_500_000..1_500_005].copy_from_slice(b"HELLO");
    // Not uploaded yet (write-back is an hour), but every session sees it.
    assert_eq!(s.stored("big").await.unwrap(), orig);
    assert_eq!(
        vfs.session().stat(&p("big")).await.unwrap().size,
        want.len() as u64
    );
    assert_eq!(read_all(&vfs.session(), "big").await, want);
    assert_eq!(vfs.pending_uploads(), 1);
    flush(&vfs).await;
    assert_eq!(s.stored("big").await.unwrap(), want);
    assert_eq!(vfs.pending_uploads(), 0);
}

#[tokio::test]
async fn append_truncate_and_exclusive_work_on_an_object_store() {
    let s = Setup::object(CacheMode::Writes);
    let vfs = s.vfs();
    s.put("log", b"one\n").await;
    let append = OpenFlags {
        write: true,
        append: true,
        ..Default::default()
    };
    let f = vfs.open(&p("log"), append, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"two\n")).await.unwrap();
    f.close().await.unwrap();
    assert_eq!(read_all(&vfs, "log").await, b"one\ntwo\n");
    let excl = OpenFlags {
        write: true,
        create: true,
        exclusive: true,
        ..Default::default()
    };
    assert!(matches!(
        vfs.open(&p("log"), excl, None).await,
        Err(VfsError::AlreadyExists)
    ));
    let f = vfs.open(&p("new"), excl, None).await.unwrap();
    f.close().await.unwrap();
    // Truncate by path and by handle.
    vfs.setstat(
        &p("log"),
        &SetAttrs {
            size: Some(3),
            ..Default::default()
        },
        true,
    )
    .await
    .unwrap();
    assert_eq!(read_all(&vfs, "log").await, b"one");
    let f = vfs.open(&p("log"), RW, None).await.unwrap();
    f.set_attrs(&SetAttrs {
        size: Some(6),
        ..Default::default()
    })
    .await
    .unwrap();
    f.close().await.unwrap();
    assert_eq!(read_all(&vfs, "log").await, b"one\0\0\0");
    flush(&vfs).await;
    assert_eq!(s.stored("log").await.unwrap(), b"one\0\0\0");
    assert_eq!(s.stored("new").await.unwrap(), b"");
}

#[tokio::test]
async fn new_files_show_in_listings_and_renames_and_removes_stay_in_the_cache() {
    let s = Setup::object(CacheMode::Writes);
    let vfs = s.vfs();
    vfs.mkdir(&p("d"), None).await.unwrap();
    write_file(&vfs, "d/a", b"alpha").await;
    write_file(&vfs, "d/b", b"beta").await;
    let names: Vec<Vec<u8>> = vfs
        .read_dir(&p("d"))
        .await
        .unwrap()
        .to_vec()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec![b"a".to_vec(), b"b".to_vec()]);
    assert!(matches!(vfs.rmdir(&p("d")).await, Err(VfsError::NotEmpty)));
    vfs.rename(&p("d/a"), &p("d/c"), false).await.unwrap();
    assert!(matches!(
        vfs.rename(&p("d/c"), &p("d/b"), false).await,
        Err(VfsError::AlreadyExists)
    ));
    vfs.remove(&p("d/b")).await.unwrap();
    assert!(matches!(vfs.stat(&p("d/a")).await, Err(VfsError::NotFound)));
    assert_eq!(read_all(&vfs, "d/c").await, b"alpha");
    flush(&vfs).await;
    assert_eq!(s.stored("d/c").await.unwrap(), b"alpha");
    assert_eq!(s.stored("d/a").await, None);
    assert_eq!(s.stored("d/b").await, None);
    // Only the one file was ever uploaded.
    assert_eq!(s.probe.uploads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_file_renamed_while_open_lands_under_its_new_name() {
    let s = Setup::object(CacheMode::Writes);
    let vfs = s.vfs();
    let f = vfs.open(&p("tmp"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"data")).await.unwrap();
    vfs.rename(&p("tmp"), &p("final"), false).await.unwrap();
    f.write_at(4, Bytes::from_static(b"+more")).await.unwrap();
    f.close().await.unwrap();
    flush(&vfs).await;
    assert_eq!(s.stored("final").await.unwrap(), b"data+more");
    assert_eq!(s.stored("tmp").await, None);
}

#[tokio::test]
async fn dirty_files_survive_a_crash_and_upload_on_the_next_start() {
    let s = Setup::object(CacheMode::Writes);
    let vfs = s.vfs();
    s.put("old", b"version 1").await;
    write_file(&vfs, "new", b"created").await;
    let f = vfs.open(&p("old"), RW, None).await.unwrap();
    f.write_at(8, Bytes::from_static(b"2")).await.unwrap();
    f.close().await.unwrap();
    // "Crash": the VFS goes away without flushing.
    drop(vfs);
    assert_eq!(s.stored("new").await, None);
    let vfs = s.restart();
    assert_eq!(vfs.pending_uploads(), 2);
    // Visible before they land, too.
    assert_eq!(read_all(&vfs, "new").await, b"created");
    flush(&vfs).await;
    assert_eq!(s.stored("new").await.unwrap(), b"created");
    assert_eq!(s.stored("old").await.unwrap(), b"version 2");
}

#[tokio::test]
async fn failed_uploads_are_retried_until_they_succeed() {
    let mut s = Setup::object(CacheMode::Writes);
    s.opts.cache.write_back = Duration::ZERO;
    let vfs = s.vfs();
    s.probe.fail_uploads.store(true, Ordering::SeqCst);
    write_file(&vfs, "f", b"keep me").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(s.stored("f").await, None);
    assert_eq!(vfs.pending_uploads(), 1);
    s.probe.fail_uploads.store(false, Ordering::SeqCst);
    flush(&vfs).await;
    assert_eq!(s.stored("f").await.unwrap(), b"keep me");
}

#[tokio::test]
async fn full_mode_reads_the_store_once_and_notices_changes() {
    let mut s = Setup::object(CacheMode::Full);
    s.opts.dir_cache_time = Duration::ZERO;
    let vfs = s.vfs();
    let data = pattern(2_500_000);
    s.put("f", &data).await;
    assert_eq!(read_all(&vfs, "f").await, data);
    let opens = s.probe.read_opens.load(Ordering::SeqCst);
    assert_eq!(read_all(&vfs, "f").await, data);
    assert_eq!(
        s.probe.read_opens.load(Ordering::SeqCst),
        opens,
        "read again from the store"
    );
    // Changed behind Ferry's back.
    s.put("f", b"short").await;
    assert_eq!(read_all(&vfs, "f").await, b"short");
}

#[tokio::test]
async fn full_mode_notices_a_same_size_change_with_the_old_mtime() {
    let (mut s, root) = Setup::local(CacheMode::Full);
    s.opts.dir_cache_time = Duration::ZERO;
    let vfs = s.vfs();
    let path = root.path().join("f");
    std::fs::write(&path, b"short").unwrap();
    let t = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!(read_all(&vfs, "f").await, b"short");
    std::fs::write(&path, b"SHORT").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(t)
        .unwrap();
    assert_eq!(read_all(&vfs, "f").await, b"SHORT");
}

#[tokio::test]
async fn concurrent_readers_of_one_chunk_fetch_it_once() {
    let s = Setup::object(CacheMode::Full);
    let vfs = s.vfs();
    let data = pattern(1 << 20);
    s.put("f", &data).await;
    let f = Arc::new(vfs.open(&p("f"), READ, None).await.unwrap());
    let reads = (0..16u64).map(|i| {
        let f = f.clone();
        async move { f.read_at(i * 65536, 65536, Vec::new()).await.unwrap() }
    });
    let got = futures::future::join_all(reads).await.concat();
    assert_eq!(got, data);
    assert_eq!(s.probe.read_opens.load(Ordering::SeqCst), 1);
    f.close().await.unwrap();
}

#[tokio::test]
async fn eviction_drops_clean_unused_files_least_recently_used_first() {
    let mut s = Setup::object(CacheMode::Full);
    s.opts.cache.max_size = Some(1 << 20);
    let vfs = s.vfs();
    for name in ["a", "b", "c"] {
        s.put(name, &pattern(600_000)).await;
    }
    let cache_files = |s: &Setup| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&s.opts.cache.data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    read_all(&vfs, "a").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let held = vfs.open(&p("b"), READ, None).await.unwrap();
    held.read_at(0, 600_000, Vec::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A dirty file is never evicted either.
    write_file(&vfs, "d", &pattern(600_000)).await;
    read_all(&vfs, "c").await;
    assert_eq!(cache_files(&s), ["a", "b", "c", "d"]);
    vfs.clean_cache();
    // a (oldest) and c go; b is open, d is dirty.
    assert_eq!(cache_files(&s), ["b", "d"]);
    held.close().await.unwrap();
    vfs.clean_cache();
    assert_eq!(cache_files(&s), ["d"]);
    // Evicted files still read fine, from the store.
    assert_eq!(read_all(&vfs, "a").await, pattern(600_000));
}

#[tokio::test]
async fn old_clean_files_expire() {
    let mut s = Setup::object(CacheMode::Full);
    s.opts.cache.max_age = Duration::from_millis(50);
    let vfs = s.vfs();
    s.put("f", b"x").await;
    read_all(&vfs, "f").await;
    assert_eq!(vfs.clean_cache(), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(vfs.clean_cache(), 1);
}

#[tokio::test]
async fn minimal_mode_caches_only_read_write_opens() {
    let s = Setup::object(CacheMode::Minimal);
    let vfs = s.vfs();
    s.put("f", b"0123456789").await;
    // Read+write works in place.
    let f = vfs.open(&p("f"), RW, None).await.unwrap();
    f.write_at(2, Bytes::from_static(b"ab")).await.unwrap();
    assert_eq!(f.read_at(0, 10, Vec::new()).await.unwrap(), b"01ab456789");
    f.close().await.unwrap();
    flush(&vfs).await;
    assert_eq!(s.stored("f").await.unwrap(), b"01ab456789");
    // A write-only partial rewrite still needs the writes mode.
    let wo = OpenFlags {
        write: true,
        ..Default::default()
    };
    assert!(vfs.open(&p("g"), wo, None).await.is_err());
}

#[tokio::test]
async fn local_backend_uploads_atomically_with_the_mtime() {
    let (mut s, root) = Setup::local(CacheMode::Writes);
    s.opts.cache.write_back = Duration::ZERO;
    let vfs = s.vfs();
    std::fs::write(root.path().join("f"), b"old content").unwrap();
    let f = vfs.open(&p("f"), RW, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"NEW")).await.unwrap();
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    f.set_attrs(&SetAttrs {
        times: Some((t, t)),
        ..Default::default()
    })
    .await
    .unwrap();
    f.close().await.unwrap();
    flush(&vfs).await;
    assert_eq!(
        std::fs::read(root.path().join("f")).unwrap(),
        b"NEW content"
    );
    let m = std::fs::metadata(root.path().join("f")).unwrap();
    assert_eq!(m.modified().unwrap(), t);
    // No temporary file left behind.
    let names: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
    // The cache's record says clean.
    let rec = cache::meta::read(&s.opts.cache.meta_dir.join("f")).unwrap();
    assert!(!rec.dirty);
}

#[tokio::test]
async fn a_write_during_an_upload_is_uploaded_too() {
    let (mut s, root) = Setup::local(CacheMode::Writes);
    s.opts.cache.write_back = Duration::ZERO;
    let vfs = s.vfs();
    for round in 0..20u8 {
        let f = vfs
            .open(
                &p("f"),
                OpenFlags {
                    write: true,
                    create: true,
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        f.write_at(0, Bytes::from(vec![round; 300_000]))
            .await
            .unwrap();
        f.close().await.unwrap();
    }
    flush(&vfs).await;
    assert_eq!(
        std::fs::read(root.path().join("f")).unwrap(),
        vec![19u8; 300_000]
    );
}

#[tokio::test]
async fn hashes_of_files_not_uploaded_yet_come_from_the_cache() {
    let s = Setup::object(CacheMode::Writes);
    let vfs = s.vfs();
    write_file(&vfs, "f", b"abc").await;
    assert_eq!(
        vfs.hash(&p("f"), HashKind::Md5).await.unwrap(),
        "900150983cd24fb0d6963f7d28e17f72"
    );
}

#[tokio::test]
async fn whole_file_reads_are_checked_against_the_stored_hash() {
    let mut s = Setup::object(CacheMode::Off);
    let vfs = s.vfs();
    s.put("f", b"abc").await;
    *s.probe.claim_md5.lock().unwrap() = Some("900150983cd24fb0d6963f7d28e17f72".into());
    assert_eq!(read_all(&vfs, "f").await, b"abc");
    *s.probe.claim_md5.lock().unwrap() = Some("00000000000000000000000000000000".into());
    let f = vfs.open(&p("f"), READ, None).await.unwrap();
    assert_eq!(f.read_at(0, 10, Vec::new()).await.unwrap(), b"abc");
    let e = f.close().await.unwrap_err();
    assert!(matches!(e, VfsError::Corrupted(_)), "{e:?}");
    // A partial read is not judged.
    let f = vfs.open(&p("f"), READ, None).await.unwrap();
    f.read_at(0, 2, Vec::new()).await.unwrap();
    f.close().await.unwrap();
    // --no-checksum skips the check.
    s.opts.no_checksum = true;
    let vfs = s.vfs();
    let f = vfs.open(&p("f"), READ, None).await.unwrap();
    f.read_at(0, 10, Vec::new()).await.unwrap();
    f.close().await.unwrap();
}

#[tokio::test]
async fn uploads_keep_permissions_and_links_are_written_through() {
    use std::os::unix::fs::PermissionsExt as _;
    let (mut s, root) = Setup::local(CacheMode::Writes);
    s.opts.cache.write_back = Duration::ZERO;
    let vfs = s.vfs();
    let f = root.path().join("f");
    std::fs::write(&f, b"secret").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let h = vfs.open(&p("f"), RW, None).await.unwrap();
    h.write_at(0, Bytes::from_static(b"S")).await.unwrap();
    h.close().await.unwrap();
    // A new file gets the umask applied.
    write_file(&vfs, "new", b"x").await;
    std::os::unix::fs::symlink("f", root.path().join("link")).unwrap();
    let h = vfs.open(&p("link"), RW, None).await.unwrap();
    h.write_at(1, Bytes::from_static(b"E")).await.unwrap();
    h.close().await.unwrap();
    flush(&vfs).await;
    assert_eq!(std::fs::read(&f).unwrap(), b"SEcret");
    let mode = |n: &str| {
        std::fs::metadata(root.path().join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("f"), 0o600);
    assert_eq!(mode("new"), 0o644);
    assert!(std::fs::symlink_metadata(root.path().join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[tokio::test]
async fn data_written_after_the_last_record_survives_a_crash() {
    let s = Setup::object(CacheMode::Writes);
    let vfs = s.vfs();
    let f = vfs.open(&p("f"), UPLOAD, None).await.unwrap();
    // The record is written at the first change (size 5 then)...
    f.write_at(0, Bytes::from_static(b"first")).await.unwrap();
    // ...and not for every write after it.
    f.write_at(5, Bytes::from_static(b" second")).await.unwrap();
    // The server dies with the file open.
    std::mem::forget(f);
    drop(vfs);
    let vfs = s.restart();
    flush(&vfs).await;
    assert_eq!(s.stored("f").await.unwrap(), b"first second");
}

#[tokio::test]
async fn fetched_data_is_kept_across_restarts_in_full_mode() {
    let s = Setup::object(CacheMode::Full);
    let vfs = s.vfs();
    s.put("f", &pattern(100_000)).await;
    read_all(&vfs, "f").await;
    drop(vfs);
    let vfs = s.vfs();
    let opens = s.probe.read_opens.load(Ordering::SeqCst);
    assert_eq!(read_all(&vfs, "f").await, pattern(100_000));
    assert_eq!(
        s.probe.read_opens.load(Ordering::SeqCst),
        opens,
        "fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_transfers_uploads_run_at_once() {
    let mut s = Setup::object(CacheMode::Writes);
    s.opts.cache.write_back = Duration::ZERO;
    s.opts.cache.transfers = 2;
    let vfs = s.vfs();
    s.probe.slow_uploads.store(true, Ordering::SeqCst);
    for i in 0..6 {
        write_file(&vfs, &format!("f{i}"), b"data").await;
    }
    flush(&vfs).await;
    assert_eq!(s.probe.uploads.load(Ordering::SeqCst), 6);
    assert_eq!(s.probe.peak_starting.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn files_in_a_directory_are_found_past_siblings_that_sort_between() {
    let (s, root) = Setup::local(CacheMode::Writes);
    let vfs = s.vfs();
    std::fs::create_dir(root.path().join("d")).unwrap();
    std::fs::create_dir(root.path().join("d 2")).unwrap();
    // `d 2/x`, `d-old` and `d.txt` all sort between `d` and `d/x`.
    write_file(&vfs, "d 2/x", b"1").await;
    write_file(&vfs, "d-old", b"2").await;
    write_file(&vfs, "d.txt", b"3").await;
    write_file(&vfs, "d/x", b"4").await;
    let names: Vec<Vec<u8>> = vfs
        .read_dir(&p("d"))
        .await
        .unwrap()
        .to_vec()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec![b"x".to_vec()]);
    assert!(matches!(vfs.rmdir(&p("d")).await, Err(VfsError::NotEmpty)));
    vfs.rename(&p("d"), &p("e"), false).await.unwrap();
    assert_eq!(read_all(&vfs, "e/x").await, b"4");
    assert!(matches!(vfs.stat(&p("d/x")).await, Err(VfsError::NotFound)));
}

#[tokio::test]
async fn in_place_writes_after_the_first_survive_a_crash() {
    let s = Setup::object(CacheMode::Writes);
    let vfs = s.vfs();
    s.put("f", b"0123456789").await;
    let f = vfs.open(&p("f"), RW, None).await.unwrap();
    f.write_at(1, Bytes::from_static(b"A")).await.unwrap();
    f.write_at(7, Bytes::from_static(b"B")).await.unwrap();
    f.set_attrs(&SetAttrs {
        size: Some(9),
        ..Default::default()
    })
    .await
    .unwrap();
    std::mem::forget(f);
    drop(vfs);
    let vfs = s.restart();
    flush(&vfs).await;
    assert_eq!(s.stored("f").await.unwrap(), b"0A23456B8");
}

#[tokio::test]
async fn chmod_of_a_file_not_uploaded_yet_reaches_the_remote() {
    use std::os::unix::fs::PermissionsExt as _;
    let (s, root) = Setup::local(CacheMode::Writes);
    let vfs = s.vfs();
    write_file(&vfs, "f", b"x").await;
    vfs.setstat(
        &p("f"),
        &SetAttrs {
            permissions: Some(0o600),
            ..Default::default()
        },
        true,
    )
    .await
    .unwrap();
    flush(&vfs).await;
    let mode = std::fs::metadata(root.path().join("f"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
