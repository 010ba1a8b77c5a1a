//! VFS tests over a store without random-access writes or real
//! directories (OpenDAL's in-memory service behind the object-store
//! adapter): streamed uploads, the reorder window, and directories that
//! live only in Ferry's view.

use super::*;
use crate::test_util::{p, READ, UPLOAD};
use bytes::Bytes;
use ferry_backend_opendal::{ObjectBackend, ObjectOptions};

fn setup() -> Vfs {
    let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
    Vfs::new(
        Arc::new(ObjectBackend::new(op, ObjectOptions::default())),
        VfsOptions::default(),
    )
}

async fn read_all(vfs: &Vfs, path: &str) -> Vec<u8> {
    let f = vfs.open(&p(path), READ, None).await.unwrap();
    let got = f.read_at(0, 1 << 26, Vec::new()).await.unwrap();
    f.close().await.unwrap();
    got
}

#[tokio::test]
async fn out_of_order_writes_are_reordered_and_nothing_shows_to_others_before_close() {
    let vfs = setup().session();
    let other = vfs.session();
    let data: Vec<u8> = (0..640_000u32).map(|i| (i % 241) as u8).collect();
    let f = vfs.open(&p("f"), UPLOAD, None).await.unwrap();
    // The writing session sees its new file at once (sshfs stats a file it
    // has just created), empty so far; other sessions see nothing.
    assert_eq!(vfs.stat(&p("f")).await.unwrap().size, 0);
    let names: Vec<_> = vfs.read_dir(&RelPath::root()).await.unwrap().to_vec();
    assert_eq!(
        names.iter().map(|(n, _)| n.as_slice()).collect::<Vec<_>>(),
        [b"f"]
    );
    assert!(matches!(other.stat(&p("f")).await, Err(VfsError::NotFound)));
    assert!(other
        .read_dir(&RelPath::root())
        .await
        .unwrap()
        .to_vec()
        .is_empty());
    // 64 KiB pieces, written in a shuffled order (as concurrent WRITEs
    // arrive).
    let mut pieces: Vec<(u64, Bytes)> = data
        .chunks(65536)
        .enumerate()
        .map(|(i, c)| ((i * 65536) as u64, Bytes::copy_from_slice(c)))
        .collect();
    pieces.swap(0, 3);
    pieces.swap(5, 9);
    pieces.reverse();
    for (off, b) in pieces {
        f.write_at(off, b).await.unwrap();
    }
    assert_eq!(f.stat().await.unwrap().size, data.len() as u64);
    assert_eq!(vfs.stat(&p("f")).await.unwrap().size, data.len() as u64);
    assert!(matches!(other.stat(&p("f")).await, Err(VfsError::NotFound)));
    f.close().await.unwrap();
    assert_eq!(read_all(&other, "f").await, data);
    assert_eq!(other.stat(&p("f")).await.unwrap().size, data.len() as u64);
}

#[tokio::test]
async fn an_abandoned_stream_stops_showing() {
    let vfs = setup().session();
    let f = vfs.open(&p("gone"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"abc")).await.unwrap();
    assert_eq!(vfs.stat(&p("gone")).await.unwrap().size, 3);
    f.abort().await;
    assert!(matches!(
        vfs.stat(&p("gone")).await,
        Err(VfsError::NotFound)
    ));
    let f = vfs.open(&p("dropped"), UPLOAD, None).await.unwrap();
    drop(f);
    assert!(matches!(
        vfs.stat(&p("dropped")).await,
        Err(VfsError::NotFound)
    ));
}

#[tokio::test]
async fn a_seek_back_or_a_gap_fails_and_commits_nothing() {
    let vfs = setup();
    let f = vfs.open(&p("f"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"abcdef")).await.unwrap();
    let e = f.write_at(2, Bytes::from_static(b"XY")).await.unwrap_err();
    assert!(matches!(e, VfsError::UnsupportedHere(_)), "{e:?}");
    // Poisoned: later writes and the close fail too, nothing is stored.
    assert!(f.write_at(6, Bytes::from_static(b"g")).await.is_err());
    assert!(f.close().await.is_err());
    assert!(matches!(vfs.stat(&p("f")).await, Err(VfsError::NotFound)));

    let f = vfs.open(&p("g"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"abc")).await.unwrap();
    f.write_at(10, Bytes::from_static(b"xyz")).await.unwrap();
    let e = f.close().await.unwrap_err();
    assert!(e.to_string().contains("gap"), "{e}");
    assert!(matches!(vfs.stat(&p("g")).await, Err(VfsError::NotFound)));
}

#[tokio::test]
async fn replacing_keeps_the_old_file_until_close_and_partial_changes_are_refused() {
    let vfs = setup();
    let f = vfs.open(&p("f"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"old")).await.unwrap();
    f.close().await.unwrap();

    let f = vfs.open(&p("f"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"brand new"))
        .await
        .unwrap();
    assert_eq!(read_all(&vfs, "f").await, b"old");
    // A vanished client: the upload is abandoned.
    f.abort().await;
    assert_eq!(read_all(&vfs, "f").await, b"old");

    let in_place = OpenFlags {
        truncate: false,
        ..UPLOAD
    };
    assert!(matches!(
        vfs.open(&p("f"), in_place, None).await,
        Err(VfsError::Unsupported(_))
    ));
    let append = OpenFlags {
        append: true,
        ..in_place
    };
    assert!(matches!(
        vfs.open(&p("f"), append, None).await,
        Err(VfsError::Unsupported(_))
    ));
    let excl = OpenFlags {
        exclusive: true,
        ..UPLOAD
    };
    assert!(matches!(
        vfs.open(&p("f"), excl, None).await,
        Err(VfsError::AlreadyExists)
    ));
    // Reading a handle that streams an upload is refused, clearly.
    let rw = OpenFlags {
        read: true,
        ..UPLOAD
    };
    let f = vfs.open(&p("h"), rw, None).await.unwrap();
    assert!(matches!(
        f.read_at(0, 10, Vec::new()).await,
        Err(VfsError::Unsupported(_))
    ));
    f.close().await.unwrap();
    assert_eq!(vfs.stat(&p("h")).await.unwrap().size, 0);
}

#[tokio::test]
async fn directories_live_in_the_view_until_a_file_lands() {
    let vfs = setup();
    assert!(matches!(
        vfs.open(&p("nodir/f"), UPLOAD, None).await,
        Err(VfsError::NotFound)
    ));
    vfs.mkdir(&p("a"), None).await.unwrap();
    vfs.mkdir(&p("a/b"), None).await.unwrap();
    assert!(matches!(
        vfs.mkdir(&p("a"), None).await,
        Err(VfsError::AlreadyExists)
    ));
    assert!(matches!(
        vfs.mkdir(&p("x/y"), None).await,
        Err(VfsError::NotFound)
    ));
    assert!(vfs.stat(&p("a/b")).await.unwrap().is_dir());
    let names: Vec<Vec<u8>> = vfs
        .read_dir(&p("a"))
        .await
        .unwrap()
        .to_vec()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec![b"b".to_vec()]);
    assert!(matches!(vfs.rmdir(&p("a")).await, Err(VfsError::NotEmpty)));
    // Renaming an empty directory moves it, with what is inside.
    vfs.rename(&p("a"), &p("c"), false).await.unwrap();
    assert!(vfs.stat(&p("c/b")).await.unwrap().is_dir());
    assert!(matches!(vfs.stat(&p("a")).await, Err(VfsError::NotFound)));
    // A file lands: the store now shows the directories.
    let f = vfs.open(&p("c/b/f"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"x")).await.unwrap();
    f.close().await.unwrap();
    assert!(vfs.inner.vdirs.is_empty());
    assert!(vfs.stat(&p("c/b")).await.unwrap().is_dir());
    assert!(matches!(
        vfs.rmdir(&p("c/b")).await,
        Err(VfsError::NotEmpty)
    ));
    vfs.remove(&p("c/b/f")).await.unwrap();
    // With its last file gone the prefix is gone from the store, but the
    // client that emptied the directory still sees it, and can remove it.
    assert!(vfs.stat(&p("c/b")).await.unwrap().is_dir());
    assert!(vfs.read_dir(&p("c/b")).await.unwrap().to_vec().is_empty());
    assert!(vfs.stat(&p("c")).await.unwrap().is_dir());
    vfs.rmdir(&p("c/b")).await.unwrap();
    vfs.rmdir(&p("c")).await.unwrap();
    assert!(matches!(vfs.stat(&p("c")).await, Err(VfsError::NotFound)));
    vfs.mkdir(&p("e"), None).await.unwrap();
    vfs.rmdir(&p("e")).await.unwrap();
    assert!(matches!(vfs.stat(&p("e")).await, Err(VfsError::NotFound)));
    assert!(matches!(vfs.rmdir(&p("e")).await, Err(VfsError::NotFound)));
}

#[tokio::test]
async fn a_directory_stays_listed_when_its_first_file_lands_under_a_cached_listing() {
    let vfs = setup();
    vfs.mkdir(&p("a"), None).await.unwrap();
    // The root's listing is cached while `a` exists only in Ferry's view.
    let names = |v: Vec<(Vec<u8>, Attr)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(
        names(vfs.read_dir(&RelPath::root()).await.unwrap().to_vec()),
        vec![b"a".to_vec()]
    );
    let f = vfs.open(&p("a/f"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"x")).await.unwrap();
    f.close().await.unwrap();
    assert_eq!(
        names(vfs.read_dir(&RelPath::root()).await.unwrap().to_vec()),
        vec![b"a".to_vec()]
    );
    assert!(vfs.stat(&p("a")).await.unwrap().is_dir());
    assert_eq!(vfs.stat(&p("a/f")).await.unwrap().size, 1);
}

#[tokio::test]
async fn out_of_order_data_is_bounded_across_all_uploads() {
    let vfs = setup();
    // One 15 MiB buffer, shared: the accounting counts each write.
    let piece = Bytes::from(vec![7u8; 15 << 20]);
    let mut files = Vec::new();
    let mut refused = None;
    'outer: for i in 0..6 {
        let f = vfs.open(&p(&format!("f{i}")), UPLOAD, None).await.unwrap();
        // Everything lands after a gap at offset 0: it all waits.
        for k in 1..=4u64 {
            if let Err(e) = f.write_at(k * (15 << 20), piece.clone()).await {
                refused = Some((i, e));
                files.push(f);
                break 'outer;
            }
        }
        files.push(f);
    }
    let (i, e) = refused.expect("more than 256 MiB waited");
    assert!(i >= 4, "refused too early, at upload {i}");
    assert!(e.to_string().contains("in all"), "{e}");
    for f in &files {
        f.abort().await;
    }
    drop(files);
    assert_eq!(
        vfs.inner
            .reorder_budget
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // A normal upload afterwards is not affected.
    let f = vfs.open(&p("ok"), UPLOAD, None).await.unwrap();
    f.write_at(3, Bytes::from_static(b"def")).await.unwrap();
    f.write_at(0, Bytes::from_static(b"abc")).await.unwrap();
    f.close().await.unwrap();
    assert_eq!(vfs.stat(&p("ok")).await.unwrap().size, 6);
}
