//! Tests of the memory backend, mirroring the local backend's, plus what
//! only a store of its own can promise (handles outliving names, sparse
//! files, exact usage).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

fn rw() -> OpenOptions {
    OpenOptions {
        read: true,
        write: true,
        create: true,
        ..Default::default()
    }
}

fn ro() -> OpenOptions {
    OpenOptions {
        read: true,
        ..Default::default()
    }
}

async fn put(be: &MemoryBackend, path: &str, data: &[u8]) {
    let h = be
        .open_file(
            &p(path),
            OpenOptions {
                write: true,
                create: true,
                truncate: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    h.write_at(0, Bytes::copy_from_slice(data)).await.unwrap();
}

async fn get(be: &MemoryBackend, path: &str) -> Vec<u8> {
    let h = be.open_file(&p(path), ro()).await.unwrap();
    h.read_at(0, usize::MAX >> 1, Vec::new()).await.unwrap()
}

/// The kind of the error `r` must be.
fn kind<T>(r: Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("succeeded, but an error was expected"),
        Err(e) => e.kind(),
    }
}

#[tokio::test]
async fn open_flags() {
    let be = MemoryBackend::new();
    put(&be, "f", b"0123456789").await;
    be.create_dir(&p("d"), None).await.unwrap();

    let e = be.open_file(&p("missing"), ro()).await;
    assert_eq!(kind(e), ErrorKind::NotFound);
    let e = be.open_file(&p("nodir/x"), rw()).await;
    assert_eq!(kind(e), ErrorKind::NotFound);
    let e = be.open_file(&p("f/x"), rw()).await;
    assert_eq!(kind(e), ErrorKind::NotADirectory);
    let e = be.open_file(&p("d"), ro()).await;
    assert_eq!(kind(e), ErrorKind::IsADirectory);
    let e = be.open_file(&p("d"), rw()).await;
    assert_eq!(kind(e), ErrorKind::IsADirectory);
    let e = be.open_file(&RelPath::root(), ro()).await;
    assert_eq!(kind(e), ErrorKind::IsADirectory);

    let excl = OpenOptions {
        write: true,
        create_new: true,
        mode: Some(0o600),
        ..Default::default()
    };
    for existing in ["f", "d"] {
        let e = be.open_file(&p(existing), excl).await;
        assert_eq!(kind(e), ErrorKind::AlreadyExists, "{existing}");
    }
    be.open_file(&p("new"), excl).await.unwrap();
    assert_eq!(
        be.stat(&p("new")).await.unwrap().permissions,
        Some(0o600),
        "the mode is stored as given"
    );

    // Access is what the handle was opened with.
    let r = be.open_file(&p("f"), ro()).await.unwrap();
    let e = r.write_at(0, Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(e.operation(), Operation::Write);
    let e = r
        .set_attrs(&SetAttrs {
            size: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let w = be
        .open_file(
            &p("f"),
            OpenOptions {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e = w.read_at(0, 1, Vec::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    // Neither read nor write: a read-only handle.
    let none = be.open_file(&p("f"), OpenOptions::default()).await.unwrap();
    assert_eq!(none.read_at(0, 3, Vec::new()).await.unwrap(), b"012");

    // Truncate empties an existing file, and open handles see it.
    be.open_file(
        &p("f"),
        OpenOptions {
            write: true,
            truncate: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(r.stat().await.unwrap().size, 0);
}

#[tokio::test]
async fn append_writes_go_to_the_end() {
    let be = MemoryBackend::new();
    put(&be, "log", b"one").await;
    let h = be
        .open_file(
            &p("log"),
            OpenOptions {
                read: true,
                append: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    h.write_at(0, Bytes::from_static(b"-two")).await.unwrap();
    h.write_at(1, Bytes::from_static(b"-three")).await.unwrap();
    assert_eq!(get(&be, "log").await, b"one-two-three");
    assert_eq!(h.read_at(0, 3, Vec::new()).await.unwrap(), b"one");
}

#[tokio::test]
async fn open_handles_survive_rename_replace_and_remove() {
    let be = MemoryBackend::new();
    put(&be, "a", b"first").await;
    let h = be.open_file(&p("a"), rw()).await.unwrap();

    be.rename(&p("a"), &p("b"), false).await.unwrap();
    h.write_at(5, Bytes::from_static(b"+more")).await.unwrap();
    assert_eq!(get(&be, "b").await, b"first+more");

    // Replaced by another file: the handle keeps the old data.
    put(&be, "c", b"other").await;
    be.rename(&p("c"), &p("b"), true).await.unwrap();
    assert_eq!(get(&be, "b").await, b"other");
    assert_eq!(h.read_at(0, 100, Vec::new()).await.unwrap(), b"first+more");

    // Removed: still readable, writable and statable; gone from the tree.
    let h2 = be.open_file(&p("b"), rw()).await.unwrap();
    be.remove_file(&p("b")).await.unwrap();
    h2.write_at(0, Bytes::from_static(b"O")).await.unwrap();
    assert_eq!(h2.read_at(0, 100, Vec::new()).await.unwrap(), b"Other");
    assert_eq!(h2.stat().await.unwrap().size, 5);
    h2.set_attrs(&SetAttrs {
        size: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(h2.read_at(0, 100, Vec::new()).await.unwrap(), b"Ot");
    assert_eq!(kind(be.stat(&p("b")).await), ErrorKind::NotFound);
    assert!(be.list(&RelPath::root()).await.unwrap().is_empty());
}

#[tokio::test]
async fn directory_times_follow_their_entries() {
    let be = MemoryBackend::new();
    be.create_dir(&p("d"), None).await.unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let at_old = SetAttrs {
        times: Some((old, old)),
        ..Default::default()
    };
    be.set_attrs(&p("d"), &at_old).await.unwrap();
    assert_eq!(be.stat(&p("d")).await.unwrap().mtime, Some(old));
    put(&be, "d/x", b"").await;
    assert!(be.stat(&p("d")).await.unwrap().mtime > Some(old));
}

#[tokio::test]
async fn set_attrs_truncate_extend_perms_times() {
    let be = MemoryBackend::new();
    put(&be, "a", b"0123456789").await;
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let t2 = t + Duration::from_secs(5);
    be.set_attrs(
        &p("a"),
        &SetAttrs {
            size: Some(4),
            permissions: Some(0o100640),
            times: Some((t2, t)),
            owner: None,
        },
    )
    .await
    .unwrap();
    let m = be.stat(&p("a")).await.unwrap();
    assert_eq!(m.size, 4);
    assert_eq!(m.permissions, Some(0o640), "type bits are dropped");
    assert_eq!(m.mtime, Some(t));
    assert_eq!(m.atime, Some(t2));
    assert_eq!(get(&be, "a").await, b"0123");

    // Extending fills with zeros, never the old bytes.
    be.set_attrs_nofollow(
        &p("a"),
        &SetAttrs {
            size: Some(8),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(get(&be, "a").await, b"0123\0\0\0\0");
    assert!(be.stat(&p("a")).await.unwrap().mtime > Some(t));

    // Through a handle too.
    let h = be.open_file(&p("a"), rw()).await.unwrap();
    h.set_attrs(&SetAttrs {
        size: Some(2),
        permissions: Some(0o600),
        times: Some((t, t)),
        owner: None,
    })
    .await
    .unwrap();
    let m = h.stat().await.unwrap();
    assert_eq!((m.size, m.permissions, m.mtime), (2, Some(0o600), Some(t)));

    // Directories: no size; owners: nowhere. A refused change changes
    // nothing.
    be.create_dir(&p("d"), None).await.unwrap();
    let e = be
        .set_attrs(
            &p("d"),
            &SetAttrs {
                size: Some(0),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(kind(e), ErrorKind::IsADirectory);
    be.set_attrs(
        &p("d"),
        &SetAttrs {
            permissions: Some(0o700),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(be.stat(&p("d")).await.unwrap().permissions, Some(0o700));
    let own = SetAttrs {
        permissions: Some(0o777),
        owner: Some((1, 1)),
        ..Default::default()
    };
    assert_eq!(
        kind(be.set_attrs(&p("a"), &own).await),
        ErrorKind::Unsupported
    );
    assert_eq!(kind(h.set_attrs(&own).await), ErrorKind::Unsupported);
    assert_eq!(be.stat(&p("a")).await.unwrap().permissions, Some(0o600));
    let huge = SetAttrs {
        size: Some(u64::MAX),
        permissions: Some(0o777),
        ..Default::default()
    };
    assert_eq!(kind(be.set_attrs(&p("a"), &huge).await), ErrorKind::Other);
    assert_eq!(be.stat(&p("a")).await.unwrap().permissions, Some(0o600));
    let e = be.set_attrs(&p("nope"), &SetAttrs::default()).await;
    assert_eq!(kind(e), ErrorKind::NotFound);
    be.set_attrs(&RelPath::root(), &SetAttrs::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn copy_files_only() {
    let be = MemoryBackend::new();
    put(&be, "a", b"content").await;
    be.set_attrs(
        &p("a"),
        &SetAttrs {
            permissions: Some(0o604),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    be.copy(&p("a"), &p("b")).await.unwrap();
    assert_eq!(get(&be, "b").await, b"content");
    assert_eq!(be.stat(&p("b")).await.unwrap().permissions, Some(0o604));

    // The copy is independent.
    put(&be, "a", b"changed").await;
    assert_eq!(get(&be, "b").await, b"content");

    // Onto an existing file: replaced in place, so its handles see it.
    let h = be.open_file(&p("b"), ro()).await.unwrap();
    be.copy(&p("a"), &p("b")).await.unwrap();
    assert_eq!(h.read_at(0, 100, Vec::new()).await.unwrap(), b"changed");
    be.copy(&p("a"), &p("a")).await.unwrap();
    assert_eq!(get(&be, "a").await, b"changed");

    be.create_dir(&p("d"), None).await.unwrap();
    let e = be.copy(&p("d"), &p("e")).await;
    assert_eq!(kind(e), ErrorKind::IsADirectory);
    let e = be.copy(&p("a"), &p("d")).await;
    assert_eq!(kind(e), ErrorKind::IsADirectory);
    let e = be.copy(&p("nope"), &p("e")).await;
    assert_eq!(kind(e), ErrorKind::NotFound);
    let e = be.copy(&p("a"), &p("nodir/e")).await;
    assert_eq!(kind(e), ErrorKind::NotFound);
    be.copy(&p("a"), &p("d/a")).await.unwrap();
    assert_eq!(get(&be, "d/a").await, b"changed");
}

#[tokio::test]
async fn usage_counts_file_bytes() {
    let be = MemoryBackend::new();
    let u = be.usage().await.unwrap();
    assert_eq!(u.used, Some(0));
    assert_eq!((u.total, u.free), (None, None));
    put(&be, "a", &[1; 1000]).await;
    be.copy(&p("a"), &p("b")).await.unwrap();
    assert_eq!(be.usage().await.unwrap().used, Some(2000));
    // A removed file still open still takes its memory, as in `df`.
    let h = be.open_file(&p("a"), ro()).await.unwrap();
    be.remove_file(&p("a")).await.unwrap();
    assert_eq!(be.usage().await.unwrap().used, Some(2000));
    drop(h);
    assert_eq!(be.usage().await.unwrap().used, Some(1000));
    be.rename(&p("b"), &p("c"), true).await.unwrap();
    put(&be, "c", b"xy").await;
    assert_eq!(be.usage().await.unwrap().used, Some(2));
}

#[tokio::test]
async fn capabilities_and_unsupported_operations() {
    let be = MemoryBackend::new();
    let c = be.capabilities();
    assert!(c.random_access_write && c.real_directories && c.atomic_rename);
    assert!(c.rename_noreplace && c.server_side_copy && c.set_mtime);
    assert!(c.permissions && c.usage);
    assert!(!c.symlinks && !c.hard_links && !c.ownership);
    put(&be, "a", b"").await;
    let e = be.symlink(b"a", &p("l")).await;
    assert_eq!(kind(e), ErrorKind::Unsupported);
    let e = be.read_link(&p("a")).await;
    assert_eq!(kind(e), ErrorKind::Unsupported);
    let e = be.hard_link(&p("a"), &p("h")).await;
    assert_eq!(kind(e), ErrorKind::Unsupported);
    assert_eq!(be.list(&RelPath::root()).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_to_distinct_ranges() {
    const TASKS: usize = 8;
    const PIECES: usize = 64;
    const PIECE: usize = 1000;
    let be = Arc::new(MemoryBackend::new());
    // Half the tasks share one handle, the others open their own.
    let shared: Arc<dyn FileHandle> = Arc::from(be.open_file(&p("f"), rw()).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (be, shared) = (be.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let own: Arc<dyn FileHandle> = if t % 2 == 0 {
                shared
            } else {
                Arc::from(be.open_file(&p("f"), rw()).await.unwrap())
            };
            // Interleaved: piece i of task t is block i * TASKS + t.
            for i in 0..PIECES {
                let block = i * TASKS + t;
                let data = Bytes::from(vec![t as u8 + 1; PIECE]);
                own.write_at((block * PIECE) as u64, data).await.unwrap();
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = get(&be, "f").await;
    assert_eq!(all.len(), TASKS * PIECES * PIECE);
    for (block, chunk) in all.chunks(PIECE).enumerate() {
        let want = (block % TASKS) as u8 + 1;
        assert!(chunk.iter().all(|&b| b == want), "block {block}");
    }
    assert_eq!(
        be.usage().await.unwrap().used,
        Some((TASKS * PIECES * PIECE) as u64)
    );
}

#[tokio::test]
async fn listing_is_sorted_and_complete() {
    let be = MemoryBackend::new();
    be.create_dir(&p("d"), None).await.unwrap();
    for i in (0..1000).rev() {
        let name = format!("d/f{i:04}");
        if i % 10 == 0 {
            be.create_dir(&p(&name), None).await.unwrap();
        } else {
            put(&be, &name, &vec![0; i % 7]).await;
        }
    }
    let list = be.list(&p("d")).await.unwrap();
    assert_eq!(list.len(), 1000);
    for (i, e) in list.iter().enumerate() {
        assert_eq!(e.name, format!("f{i:04}").into_bytes());
        if i % 10 == 0 {
            assert!(e.meta.is_dir());
        } else {
            assert_eq!(e.meta.file_type, FileType::File);
            assert_eq!(e.meta.size, (i % 7) as u64);
        }
    }
}
