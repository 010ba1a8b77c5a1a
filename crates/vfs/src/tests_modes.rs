//! What holds in every `--vfs-cache-mode`: each test here runs once per
//! mode (off, minimal, writes, full) over the local backend, where every
//! open mode works in every cache mode. What the store holds is checked
//! after the cache's uploads are flushed.

use super::*;
use crate::test_util::{p, READ, UPLOAD};
use bytes::Bytes;
use ferry_backend::HashKind;
use ferry_backend_local::LocalBackend;

struct Setup {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    vfs: Vfs,
}

fn setup(mode: CacheMode, read_only: bool) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut opts = VfsOptions {
        cache_mode: mode,
        read_only,
        ..VfsOptions::default()
    };
    opts.cache.data_dir = tmp.path().join("cache/vfs");
    opts.cache.meta_dir = tmp.path().join("cache/vfsMeta");
    opts.cache.write_back = std::time::Duration::ZERO;
    let be = LocalBackend::open(&root).unwrap();
    let vfs = Vfs::new(Arc::new(be), opts).session();
    Setup {
        _tmp: tmp,
        root,
        vfs,
    }
}

impl Setup {
    /// What the store holds at `rel`, once every upload is done.
    async fn stored(&self, rel: &str) -> Option<Vec<u8>> {
        self.vfs.flush_uploads(std::future::pending()).await;
        std::fs::read(self.root.join(rel)).ok()
    }
}

async fn write(vfs: &Vfs, rel: &str, flags: OpenFlags, at: u64, data: &'static [u8]) {
    let f = vfs.open(&p(rel), flags, None).await.unwrap();
    f.write_at(at, Bytes::from_static(data)).await.unwrap();
    f.close().await.unwrap();
}

async fn read(vfs: &Vfs, rel: &str) -> Vec<u8> {
    let f = vfs.open(&p(rel), READ, None).await.unwrap();
    let out = f.read_at(0, 1 << 20, Vec::new()).await.unwrap();
    f.close().await.unwrap();
    out
}

macro_rules! per_mode {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn off() {
                $body(CacheMode::Off).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn minimal() {
                $body(CacheMode::Minimal).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn writes() {
                $body(CacheMode::Writes).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn full() {
                $body(CacheMode::Full).await
            }
        }
    };
}

per_mode!(open_flags_are_honoured, open_flags);
async fn open_flags(mode: CacheMode) {
    let s = setup(mode, false);
    let vfs = &s.vfs;
    write(vfs, "f", UPLOAD, 0, b"0123456789").await;
    let excl = OpenFlags {
        exclusive: true,
        ..UPLOAD
    };
    assert!(matches!(
        vfs.open(&p("f"), excl, None).await,
        Err(VfsError::AlreadyExists)
    ));
    let no_creat = OpenFlags {
        create: false,
        ..UPLOAD
    };
    assert!(matches!(
        vfs.open(&p("missing"), no_creat, None).await,
        Err(VfsError::NotFound)
    ));
    // Read+write without TRUNC edits in place and really reads.
    let rw = OpenFlags {
        read: true,
        write: true,
        ..Default::default()
    };
    let f = vfs.open(&p("f"), rw, None).await.unwrap();
    f.write_at(2, Bytes::from_static(b"ab")).await.unwrap();
    assert_eq!(f.read_at(0, 100, Vec::new()).await.unwrap(), b"01ab456789");
    f.close().await.unwrap();
    let ap = OpenFlags {
        append: true,
        write: true,
        ..Default::default()
    };
    write(vfs, "f", ap, 0, b"END").await;
    assert_eq!(read(vfs, "f").await, b"01ab456789END");
    assert_eq!(s.stored("f").await.unwrap(), b"01ab456789END");
    // CREAT|EXCL with neither WRITE nor TRUNC creates the file.
    let bare = OpenFlags {
        read: true,
        create: true,
        exclusive: true,
        ..Default::default()
    };
    vfs.open(&p("bare"), bare, None)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    assert_eq!(vfs.stat(&p("bare")).await.unwrap().size, 0);
    assert_eq!(s.stored("bare").await.unwrap(), b"");
    // Handles refuse what they were not opened for.
    let f = vfs.open(&p("f"), READ, None).await.unwrap();
    assert!(matches!(
        f.write_at(0, Bytes::from_static(b"x")).await,
        Err(VfsError::BadHandleMode(_))
    ));
    f.close().await.unwrap();
    let wo = OpenFlags {
        write: true,
        ..Default::default()
    };
    let f = vfs.open(&p("f"), wo, None).await.unwrap();
    assert!(matches!(
        f.read_at(0, 1, Vec::new()).await,
        Err(VfsError::BadHandleMode(_))
    ));
    f.close().await.unwrap();
    vfs.mkdir(&p("d"), None).await.unwrap();
    assert!(matches!(
        vfs.open(&p("d"), READ, None).await,
        Err(VfsError::IsADirectory)
    ));
    assert!(matches!(
        vfs.open(&p("d"), UPLOAD, None).await,
        Err(VfsError::IsADirectory)
    ));
}

per_mode!(replacing_a_file_is_atomic, replacing);
async fn replacing(mode: CacheMode) {
    let s = setup(mode, false);
    write(&s.vfs, "f", UPLOAD, 0, b"old contents").await;
    assert_eq!(s.stored("f").await.unwrap(), b"old contents");
    let other = s.vfs.session();
    let f = s.vfs.open(&p("f"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"new")).await.unwrap();
    // Until the close the store keeps the old file. Other sessions see it
    // too when writes go straight to the store; through the cache, they
    // see the file as it is being written (as rclone's VFS shows it).
    let seen = if mode >= CacheMode::Writes {
        &b"new"[..]
    } else {
        b"old contents"
    };
    assert_eq!(read(&other, "f").await, seen);
    assert_eq!(std::fs::read(s.root.join("f")).unwrap(), b"old contents");
    f.close().await.unwrap();
    assert_eq!(read(&other, "f").await, b"new");
    assert_eq!(s.stored("f").await.unwrap(), b"new");
    // An abandoned replacement (a client gone without CLOSE) leaves the
    // old file where writes go straight to the store; the cache keeps what
    // was written (and uploads it), as rclone's does.
    let f = s.vfs.open(&p("f"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"partial")).await.unwrap();
    f.abort().await;
    let kept = if mode >= CacheMode::Writes {
        &b"partial"[..]
    } else {
        b"new"
    };
    assert_eq!(read(&other, "f").await, kept);
    assert_eq!(s.stored("f").await.unwrap(), kept);
}

per_mode!(namespace_changes, namespace);
async fn namespace(mode: CacheMode) {
    let s = setup(mode, false);
    let vfs = &s.vfs;
    vfs.mkdir(&p("d"), None).await.unwrap();
    assert!(matches!(
        vfs.mkdir(&p("d"), None).await,
        Err(VfsError::AlreadyExists)
    ));
    write(vfs, "d/a", UPLOAD, 0, b"A").await;
    write(vfs, "d/b", UPLOAD, 0, b"B").await;
    assert!(matches!(vfs.rmdir(&p("d")).await, Err(VfsError::NotEmpty)));
    assert!(matches!(
        vfs.remove(&p("d")).await,
        Err(VfsError::IsADirectory)
    ));
    assert!(matches!(
        vfs.rmdir(&p("d/a")).await,
        Err(VfsError::NotADirectory)
    ));
    // A plain rename never replaces, whether the store or only the cache
    // has the file there yet.
    assert!(matches!(
        vfs.rename(&p("d/a"), &p("d/b"), false).await,
        Err(VfsError::AlreadyExists)
    ));
    vfs.rename(&p("d/a"), &p("d/b"), true).await.unwrap();
    assert_eq!(read(vfs, "d/b").await, b"A", "rename replaces");
    vfs.mkdir(&p("d/sub"), None).await.unwrap();
    assert!(matches!(
        vfs.rename(&p("d/b"), &p("d/sub"), true).await,
        Err(VfsError::IsADirectory)
    ));
    assert!(vfs.rename(&p("d"), &p("d/sub/in"), false).await.is_err());
    vfs.rmdir(&p("d/sub")).await.unwrap();
    assert!(matches!(
        vfs.rmdir(&RelPath::root()).await,
        Err(VfsError::PermissionDenied)
    ));
    assert!(matches!(vfs.stat(&p("d/a")).await, Err(VfsError::NotFound)));
    let names: Vec<Vec<u8>> = vfs
        .read_dir(&p("d"))
        .await
        .unwrap()
        .to_vec()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, [b"b".to_vec()]);
    assert_eq!(s.stored("d/b").await.unwrap(), b"A");
    assert!(!s.root.join("d/a").exists());
    vfs.remove(&p("d/b")).await.unwrap();
    assert!(matches!(
        vfs.remove(&p("d/b")).await,
        Err(VfsError::NotFound)
    ));
    vfs.rmdir(&p("d")).await.unwrap();
    s.stored("d").await;
    assert!(!s.root.join("d").exists());
}

per_mode!(attributes_and_hashes, attributes);
async fn attributes(mode: CacheMode) {
    let s = setup(mode, false);
    let vfs = &s.vfs;
    write(vfs, "f", UPLOAD, 0, b"abcdefgh").await;
    // Before the cache has uploaded it, the hash is of what was written.
    assert_eq!(
        vfs.hash(&p("f"), HashKind::Md5).await.unwrap(),
        "e8dc4081b13434b45189a720b77b6818"
    );
    let cut = SetAttrs {
        size: Some(3),
        ..Default::default()
    };
    vfs.setstat(&p("f"), &cut, true).await.unwrap();
    assert_eq!(vfs.stat(&p("f")).await.unwrap().size, 3);
    assert_eq!(read(vfs, "f").await, b"abc");
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_234_567_890);
    let times = SetAttrs {
        times: Some((t, t)),
        ..Default::default()
    };
    vfs.setstat(&p("f"), &times, true).await.unwrap();
    assert_eq!(vfs.stat(&p("f")).await.unwrap().mtime, t);
    assert_eq!(s.stored("f").await.unwrap(), b"abc");
    assert_eq!(
        vfs.hash(&p("f"), HashKind::Md5).await.unwrap(),
        "900150983cd24fb0d6963f7d28e17f72"
    );
    let m = std::fs::metadata(s.root.join("f")).unwrap();
    assert_eq!(m.modified().unwrap(), t);
}

per_mode!(read_only_refuses_every_change, read_only);
async fn read_only(mode: CacheMode) {
    let s = setup(mode, true);
    std::fs::write(s.root.join("f"), b"data").unwrap();
    let vfs = &s.vfs;
    assert!(matches!(
        vfs.open(&p("f"), UPLOAD, None).await,
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        vfs.mkdir(&p("d"), None).await,
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(vfs.remove(&p("f")).await, Err(VfsError::ReadOnly)));
    assert!(matches!(
        vfs.rename(&p("f"), &p("g"), true).await,
        Err(VfsError::ReadOnly)
    ));
    assert!(matches!(
        vfs.setstat(&p("f"), &SetAttrs::default(), true).await,
        Err(VfsError::ReadOnly)
    ));
    assert_eq!(read(vfs, "f").await, b"data");
    assert_eq!(s.stored("f").await.unwrap(), b"data");
}
