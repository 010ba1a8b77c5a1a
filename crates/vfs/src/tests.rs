//! VFS tests over the real local backend.

use super::*;
use crate::test_util::{p, UPLOAD};
use bytes::Bytes;
use ferry_backend_local::LocalBackend;

fn setup(opts: VfsOptions) -> (tempfile::TempDir, Vfs) {
    let tmp = tempfile::tempdir().unwrap();
    let be = LocalBackend::open(tmp.path()).unwrap();
    (tmp, Vfs::new(Arc::new(be), opts))
}

#[tokio::test]
async fn upload_is_atomic_and_hidden_until_close() {
    let (tmp, vfs) = setup(VfsOptions::default());
    std::fs::write(tmp.path().join("f"), b"old contents").unwrap();
    let f = vfs.open(&p("f"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"new")).await.unwrap();
    // The old file is untouched, the temporary file is not listed, and a
    // stat by path shows the upload in progress.
    assert_eq!(
        std::fs::read(tmp.path().join("f")).unwrap(),
        b"old contents"
    );
    let names: Vec<_> = vfs.read_dir(&RelPath::root()).await.unwrap().to_vec();
    assert_eq!(names.len(), 1);
    assert_eq!(names[0].0, b"f");
    assert_eq!(names[0].1.size, 3);
    assert_eq!(vfs.stat(&p("f")).await.unwrap().size, 3);
    // A new file being uploaded is listed under its own name.
    let g = vfs.open(&p("g"), UPLOAD, None).await.unwrap();
    let names: Vec<_> = vfs.read_dir(&RelPath::root()).await.unwrap().to_vec();
    assert_eq!(
        names.iter().map(|n| n.0.clone()).collect::<Vec<_>>(),
        vec![b"f".to_vec(), b"g".to_vec()]
    );
    g.abort().await;
    // Another session sees the old file until the commit.
    let other = vfs.session();
    assert_eq!(other.stat(&p("f")).await.unwrap().size, 12);
    let ro = OpenFlags {
        read: true,
        ..Default::default()
    };
    let o = other.open(&p("f"), ro, None).await.unwrap();
    assert_eq!(
        o.read_at(0, 100, Vec::new()).await.unwrap(),
        b"old contents"
    );
    assert_eq!(
        other.read_dir(&RelPath::root()).await.unwrap().to_vec()[0]
            .1
            .size,
        12
    );
    // Another open by the uploading session sees the upload in progress.
    let r = vfs.open(&p("f"), ro, None).await.unwrap();
    assert_eq!(r.read_at(0, 100, Vec::new()).await.unwrap(), b"new");
    f.close().await.unwrap();
    assert_eq!(r.read_at(0, 100, Vec::new()).await.unwrap(), b"new");
    assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"new");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn aborted_upload_leaves_old_file_and_no_temp() {
    let (tmp, vfs) = setup(VfsOptions::default());
    std::fs::write(tmp.path().join("f"), b"old").unwrap();
    let f = vfs.open(&p("f"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"partial")).await.unwrap();
    f.abort().await;
    assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"old");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    // Dropped without close (a vanished client): cleaned up in the background.
    let f = vfs.open(&p("g"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"partial")).await.unwrap();
    drop(f);
    for _ in 0..100 {
        if std::fs::read_dir(tmp.path()).unwrap().count() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    assert!(matches!(vfs.stat(&p("g")).await, Err(VfsError::NotFound)));
}

#[tokio::test]
async fn exclusive_create_of_new_file() {
    let (tmp, vfs) = setup(VfsOptions::default());
    let excl = OpenFlags {
        write: true,
        create: true,
        exclusive: true,
        ..Default::default()
    };
    let f = vfs.open(&p("n"), excl, Some(0o600)).await.unwrap();
    f.write_at(0, Bytes::from_static(b"x")).await.unwrap();
    f.close().await.unwrap();
    assert!(matches!(
        vfs.open(&p("n"), excl, None).await,
        Err(VfsError::AlreadyExists)
    ));
    let a = vfs.stat(&p("n")).await.unwrap();
    assert_eq!(a.mode & 0o777, 0o600);
    assert_eq!(std::fs::read(tmp.path().join("n")).unwrap(), b"x");
}

#[tokio::test]
async fn symlink_targets_are_kept_inside() {
    let (tmp, vfs) = setup(VfsOptions::default());
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    vfs.symlink(b"/f", &p("d/abs")).await.unwrap();
    assert_eq!(vfs.readlink(&p("d/abs")).await.unwrap(), b"../f");
    assert_eq!(vfs.stat(&p("d/abs")).await.unwrap().size, 1);
    vfs.symlink(b"../../../../etc/passwd", &p("d/esc"))
        .await
        .unwrap();
    assert_eq!(vfs.readlink(&p("d/esc")).await.unwrap(), b"../etc/passwd");
    assert_eq!(relative_target(&p("a/b"), &p("a/b/c")), b"c");
    assert_eq!(relative_target(&p("a/b"), &RelPath::root()), b"../..");
    assert_eq!(relative_target(&RelPath::root(), &RelPath::root()), b".");
}

#[tokio::test]
async fn permissions_policy() {
    let (tmp, vfs) = setup(VfsOptions {
        override_perms: true,
        file_perms: 0o640,
        umask: 0o002,
        ..Default::default()
    });
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    assert_eq!(vfs.stat(&p("f")).await.unwrap().mode, 0o100640);
    assert_eq!(vfs.stat(&p("d")).await.unwrap().mode, 0o040775);
    let (tmp, vfs) = setup(VfsOptions {
        uid: Some(4242),
        ..Default::default()
    });
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path().join("f"), std::fs::Permissions::from_mode(0o604)).unwrap();
    let a = vfs.stat(&p("f")).await.unwrap();
    assert_eq!(a.mode, 0o100604);
    assert_eq!(a.uid, 4242);
}

#[tokio::test]
async fn no_modtime_ignores_time_changes() {
    let (tmp, vfs) = setup(VfsOptions {
        no_modtime: true,
        ..Default::default()
    });
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    let before = vfs.stat(&p("f")).await.unwrap().mtime;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000);
    vfs.setstat(
        &p("f"),
        &SetAttrs {
            times: Some((t, t)),
            ..Default::default()
        },
        true,
    )
    .await
    .unwrap();
    assert_eq!(vfs.stat(&p("f")).await.unwrap().mtime, before);
}

#[tokio::test]
async fn rename_and_remove_follow_uploads_in_progress() {
    let (tmp, vfs) = setup(VfsOptions::default());
    // A new file renamed before its upload is closed (sshfs closes late).
    let f = vfs.open(&p("a"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"A")).await.unwrap();
    vfs.rename(&p("a"), &p("b"), true).await.unwrap();
    assert_eq!(vfs.stat(&p("b")).await.unwrap().size, 1);
    assert!(matches!(vfs.stat(&p("a")).await, Err(VfsError::NotFound)));
    f.close().await.unwrap();
    assert_eq!(std::fs::read(tmp.path().join("b")).unwrap(), b"A");
    assert!(!tmp.path().join("a").exists());

    // An existing file being replaced, renamed into a directory, which is
    // then renamed itself.
    vfs.mkdir(&p("d"), None).await.unwrap();
    let f = vfs.open(&p("b"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"B2")).await.unwrap();
    vfs.rename(&p("b"), &p("d/b"), true).await.unwrap();
    vfs.rename(&p("d"), &p("e"), false).await.unwrap();
    f.close().await.unwrap();
    assert_eq!(std::fs::read(tmp.path().join("e/b")).unwrap(), b"B2");
    assert_eq!(std::fs::read_dir(tmp.path().join("e")).unwrap().count(), 1);

    // Removed before close: nothing appears.
    let f = vfs.open(&p("gone"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"x")).await.unwrap();
    vfs.remove(&p("gone")).await.unwrap();
    f.close().await.unwrap();
    assert!(!tmp.path().join("gone").exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn hash_cache_sees_content_changes_behind_a_restored_mtime() {
    use ferry_backend::HashKind;
    let (tmp, vfs) = setup(VfsOptions::default());
    let f = tmp.path().join("f");
    std::fs::write(&f, b"aaaa").unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let set = |path: &std::path::Path| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    set(&f);
    let first = vfs.hash(&p("f"), HashKind::Md5).await.unwrap();
    // Same size, same modification time, other content: a file replaced
    // by one whose mtime was set to the old one (as rclone does after an
    // upload). The new inode tells them apart.
    let g = tmp.path().join("g");
    std::fs::write(&g, b"bbbb").unwrap();
    set(&g);
    std::fs::rename(&g, &f).unwrap();
    let second = vfs.hash(&p("f"), HashKind::Md5).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(
        second,
        crate::hash::hash_bytes(HashKind::Md5, b"bbbb").unwrap()
    );
}

/// Files of several 1 MiB chunks (read and hashed in a pipeline) and of
/// none hash as in one go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_of_multi_chunk_and_empty_files() {
    use ferry_backend::HashKind;
    let (tmp, vfs) = setup(VfsOptions::default());
    let data: Vec<u8> = (0..(3 << 20) + 5u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(tmp.path().join("big"), &data).unwrap();
    std::fs::write(tmp.path().join("empty"), b"").unwrap();
    for kind in [HashKind::Md5, HashKind::Sha1] {
        assert_eq!(
            vfs.hash(&p("big"), kind).await.unwrap(),
            crate::hash::hash_bytes(kind, &data).unwrap()
        );
        assert_eq!(
            vfs.hash(&p("empty"), kind).await.unwrap(),
            crate::hash::hash_bytes(kind, b"").unwrap()
        );
    }
}

/// Counts the copies and reads that reach the store.
struct CountCopies {
    inner: Arc<dyn Backend>,
    copies: Arc<std::sync::atomic::AtomicUsize>,
}

impl ferry_backend::Layer for CountCopies {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    fn request<'a, T: Send + 'a>(
        &'a self,
        op: ferry_backend::Operation,
        req: ferry_backend::layer::Request<'a, T>,
    ) -> ferry_backend::layer::Request<'a, T> {
        if op == ferry_backend::Operation::Copy {
            self.copies
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        req
    }
}

#[tokio::test]
async fn a_whole_file_copy_into_a_new_upload_happens_in_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let copies = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let be = CountCopies {
        inner: Arc::new(LocalBackend::open(tmp.path()).unwrap()),
        copies: copies.clone(),
    };
    let vfs = Vfs::new(Arc::new(ferry_backend::Layered(be)), VfsOptions::default());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(tmp.path().join("src"), &data).unwrap();
    std::fs::write(tmp.path().join("dst"), b"old").unwrap();
    let src = vfs
        .open(&p("src"), crate::test_util::READ, None)
        .await
        .unwrap();
    let dst = vfs.open(&p("dst"), UPLOAD, None).await.unwrap();
    assert!(dst.copy_whole_in_store(&src).await.unwrap());
    assert_eq!(copies.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Atomic as any upload: the old file until the close, then the copy.
    assert_eq!(std::fs::read(tmp.path().join("dst")).unwrap(), b"old");
    dst.write_at(data.len() as u64, Bytes::from_static(b"+tail"))
        .await
        .unwrap();
    dst.close().await.unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("dst")).unwrap(),
        [&data[..], b"+tail"].concat()
    );
    // Not for a file with data in it already, nor into a file edited in
    // place: the bytes are copied by the caller then.
    let dst = vfs.open(&p("dst2"), UPLOAD, None).await.unwrap();
    dst.write_at(0, Bytes::from_static(b"x")).await.unwrap();
    assert!(!dst.copy_whole_in_store(&src).await.unwrap());
    dst.abort().await;
    let rw = OpenFlags {
        read: true,
        write: true,
        ..crate::test_util::READ
    };
    let in_place = vfs.open(&p("dst"), rw, None).await.unwrap();
    assert!(!in_place.copy_whole_in_store(&src).await.unwrap());
    assert_eq!(copies.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Every OPENDIR of an unchanged directory gets one shared listing (a
/// thousand handles of a 5,000-entry directory once held a thousand
/// sorted copies); a change or a session's own upload gets a new one.
#[tokio::test]
async fn listings_are_shared_until_the_directory_changes() {
    // Not watched: an inotify event for the files written here could
    // arrive between two OPENDIRs and rightly make the second one fresh.
    let (tmp, vfs) = setup(VfsOptions {
        dir_cache_time: std::time::Duration::from_secs(300),
        poll_interval: std::time::Duration::ZERO,
        ..VfsOptions::default()
    });
    for i in 0..50 {
        std::fs::write(tmp.path().join(format!("f{i:02}")), b"x").unwrap();
    }
    let a = vfs.read_dir(&RelPath::root()).await.unwrap();
    let b = vfs.session().read_dir(&RelPath::root()).await.unwrap();
    assert!(Arc::ptr_eq(&a, &b), "one listing for both");
    assert_eq!(a.len(), 50);
    // This session's upload in progress: its own view.
    let f = vfs.open(&p("new"), UPLOAD, None).await.unwrap();
    let c = vfs.read_dir(&RelPath::root()).await.unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(c.len(), 51);
    f.abort().await;
    // A change made through the VFS: a new listing, shared again.
    vfs.remove(&p("f00")).await.unwrap();
    let d = vfs.read_dir(&RelPath::root()).await.unwrap();
    let e = vfs.read_dir(&RelPath::root()).await.unwrap();
    assert_eq!(d.len(), 49);
    assert!(Arc::ptr_eq(&d, &e));
    // Views nobody holds are not kept.
    drop((a, b, c, d, e));
    assert!(vfs.read_dir(&RelPath::root()).await.unwrap().len() == 49);
    assert_eq!(vfs.inner.views.len(), 1);
}

/// Finding 12: a temporary upload file nobody writes any more (its upload
/// was interrupted by a crash) is listed like any file, not hidden
/// forever; those older than an hour go at start.
#[tokio::test]
async fn leftovers_of_interrupted_uploads_are_listed_and_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let old = String::from_utf8(crate::file::temp_name(b"old.bin")).unwrap();
    let young = String::from_utf8(crate::file::temp_name(b"young.bin")).unwrap();
    std::fs::write(tmp.path().join(&old), b"half").unwrap();
    std::fs::write(tmp.path().join(&young), b"half").unwrap();
    std::fs::write(tmp.path().join("kept.txt"), b"k").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(tmp.path().join(&old))
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    // Started over them: the walk at start removes the old one.
    let vfs = Vfs::new(
        Arc::new(LocalBackend::open(tmp.path()).unwrap()),
        VfsOptions {
            poll_interval: std::time::Duration::ZERO,
            ..VfsOptions::default()
        },
    );
    for _ in 0..500 {
        if !tmp.path().join(&old).exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!tmp.path().join(&old).exists(), "swept at start");
    assert!(tmp.path().join(&young).exists(), "too young to go");
    // An upload in progress: its temporary file is hidden, the leftover not.
    let up = vfs.open(&p("new.bin"), UPLOAD, None).await.unwrap();
    let names = |l: &Listing| -> Vec<String> {
        l.iter()
            .map(|(n, _)| String::from_utf8(n.clone()).unwrap())
            .collect()
    };
    let other = vfs.session();
    let listed = names(&other.read_dir(&RelPath::root()).await.unwrap());
    let mut want = vec![young.clone(), "kept.txt".to_string()];
    want.sort();
    assert_eq!(listed, want);
    // A leftover is a file like any other to clients.
    assert_eq!(vfs.stat(&p(&young)).await.unwrap().size, 4);
    // A walk that takes everything old takes the leftover, never a live
    // upload's file.
    let removed =
        crate::leftovers::sweep(Arc::downgrade(&vfs.inner), std::time::Duration::ZERO).await;
    assert_eq!(removed, 1);
    assert!(!tmp.path().join(&young).exists());
    up.write_at(0, Bytes::from_static(b"data")).await.unwrap();
    up.close().await.unwrap();
    assert_eq!(std::fs::read(tmp.path().join("new.bin")).unwrap(), b"data");
}
