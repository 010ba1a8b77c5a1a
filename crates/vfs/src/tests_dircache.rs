//! The directory cache: changes through Ferry show at once, changes behind
//! its back after `--dir-cache-time` or, on a local disk, as soon as
//! inotify reports them; SIGHUP's `forget(None)` flushes everything.

use std::time::Duration;

use super::*;
use crate::test_util::{p, UPLOAD};
use bytes::Bytes;
use ferry_backend_local::LocalBackend;

fn opts(ttl: Duration, poll: Duration) -> VfsOptions {
    VfsOptions {
        dir_cache_time: ttl,
        poll_interval: poll,
        ..VfsOptions::default()
    }
}

async fn names(vfs: &Vfs, dir: &str) -> Vec<String> {
    vfs.read_dir(&p(dir))
        .await
        .unwrap()
        .to_vec()
        .into_iter()
        .map(|(n, _)| String::from_utf8(n).unwrap())
        .collect()
}

#[tokio::test]
async fn changes_through_ferry_show_at_once_and_outside_ones_after_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a"), b"1").unwrap();
    // No change notification: only expiry and Ferry's own changes count.
    let vfs = Vfs::new(
        Arc::new(LocalBackend::open(tmp.path()).unwrap()),
        opts(Duration::from_millis(400), Duration::ZERO),
    );
    assert_eq!(names(&vfs, "").await, ["a"]);
    assert_eq!(vfs.inner.dircache.len(), 1);
    // Behind Ferry's back: not seen while the listing is fresh, and a stat
    // is answered from the listing.
    std::fs::write(tmp.path().join("b"), b"22").unwrap();
    std::fs::write(tmp.path().join("a"), b"333").unwrap();
    assert_eq!(names(&vfs, "").await, ["a"]);
    assert!(matches!(vfs.stat(&p("b")).await, Err(VfsError::NotFound)));
    assert_eq!(vfs.stat(&p("a")).await.unwrap().size, 1);
    // Through Ferry: at once.
    let f = vfs.open(&p("c"), UPLOAD, None).await.unwrap();
    f.write_at(0, Bytes::from_static(b"cc")).await.unwrap();
    // While a handle writes it, a stat asks the store.
    assert_eq!(vfs.stat(&p("c")).await.unwrap().size, 2);
    f.close().await.unwrap();
    assert_eq!(names(&vfs, "").await, ["a", "b", "c"]);
    vfs.mkdir(&p("d"), None).await.unwrap();
    assert!(vfs.stat(&p("d")).await.unwrap().is_dir());
    vfs.rename(&p("c"), &p("d/c"), false).await.unwrap();
    assert_eq!(names(&vfs, "d").await, ["c"]);
    assert!(matches!(vfs.stat(&p("c")).await, Err(VfsError::NotFound)));
    vfs.remove(&p("d/c")).await.unwrap();
    assert!(names(&vfs, "d").await.is_empty());
    // Outside again, then expiry.
    std::fs::write(tmp.path().join("d/e"), b"e").unwrap();
    assert!(names(&vfs, "d").await.is_empty());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(names(&vfs, "d").await, ["e"]);
    // SIGHUP: everything forgotten.
    std::fs::write(tmp.path().join("d/f"), b"f").unwrap();
    vfs.forget(None);
    assert_eq!(vfs.inner.dircache.len(), 0);
    assert_eq!(names(&vfs, "d").await, ["e", "f"]);
    // refresh reads a tree afresh.
    assert_eq!(vfs.refresh(&RelPath::root(), true).await.unwrap(), 2);
}

#[tokio::test]
async fn local_changes_are_reported_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    let vfs = Vfs::new(
        Arc::new(LocalBackend::open(tmp.path()).unwrap()),
        opts(Duration::from_secs(300), Duration::from_secs(60)),
    );
    assert!(names(&vfs, "sub").await.is_empty());
    assert_eq!(names(&vfs, "").await, ["sub"]);
    std::fs::write(tmp.path().join("sub/new"), b"x").unwrap();
    let mut seen = false;
    for _ in 0..40 {
        if names(&vfs, "sub").await == ["new"] {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "a file made outside Ferry did not show within 2 s");
    // A directory renamed outside: nothing under its old name stays.
    std::fs::rename(tmp.path().join("sub"), tmp.path().join("moved")).unwrap();
    let mut gone = false;
    for _ in 0..40 {
        if matches!(vfs.stat(&p("sub/new")).await, Err(VfsError::NotFound)) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "a directory moved outside Ferry still showed after 2 s"
    );
    assert_eq!(names(&vfs, "moved").await, ["new"]);
}

#[test]
fn a_listing_fetched_across_a_change_is_not_kept() {
    let dc = dircache::DirCache::new(Duration::from_secs(60), false);
    let g = dc.generation();
    dc.forget(&p("x"));
    dc.put(&p(""), Arc::new(Vec::new()), g);
    assert_eq!(dc.len(), 0);
    let g = dc.generation();
    dc.put(&p(""), Arc::new(Vec::new()), g);
    dc.put(&p("a/b"), Arc::new(Vec::new()), g + 1);
    assert_eq!(dc.len(), 1);
    // forget_tree takes the subtree, not names that only share bytes.
    let g = dc.generation();
    for d in ["a", "a/b", "a/b/c", "a-b", "ab"] {
        dc.put(&p(d), Arc::new(Vec::new()), g);
    }
    dc.forget_tree(&p("a"));
    assert!(dc.get(&p("a-b")).is_some() && dc.get(&p("ab")).is_some());
    assert!(dc.get(&p("a")).is_none() && dc.get(&p("a/b/c")).is_none());
    assert!(dc.get(&p("")).is_none(), "the parent's listing goes too");
}

#[test]
fn entries_are_counted_as_listings_come_and_go() {
    use ferry_backend::{DirEntry, FileType, Metadata};
    let entry = |n: &str| DirEntry {
        name: n.as_bytes().to_vec(),
        meta: Metadata {
            file_type: FileType::File,
            size: 1,
            mtime: None,
            atime: None,
            permissions: None,
            owner: None,
            change: None,
        },
    };
    let dc = dircache::DirCache::new(Duration::from_secs(60), false);
    let g = dc.generation();
    dc.put(&p("a"), Arc::new(vec![entry("x"), entry("y")]), g);
    dc.put(&p("a/b"), Arc::new(vec![entry("z")]), g);
    assert_eq!(dc.entries(), 3);
    // Replacing a listing counts the new one only.
    let g = dc.generation();
    dc.put(&p("a/b"), Arc::new(vec![entry("z"), entry("w")]), g);
    assert_eq!(dc.entries(), 4);
    dc.forget_tree(&p("a/b"));
    assert_eq!(dc.entries(), 0, "a/b and its parent a are both forgotten");
    let g = dc.generation();
    dc.put(&p("c"), Arc::new(vec![entry("x")]), g);
    dc.clear();
    assert_eq!((dc.len(), dc.entries()), (0, 0));
}

#[test]
fn single_lookups_are_kept_where_asked_and_forgotten_with_their_changes() {
    use ferry_backend::{FileType, Metadata};
    let file = Metadata {
        file_type: FileType::File,
        size: 1,
        mtime: None,
        atime: None,
        permissions: None,
        owner: None,
        change: None,
    };
    let found =
        |dc: &dircache::DirCache, path: &str, follow: bool| match dc.lookup(&p(path), follow) {
            dircache::Lookup::Found(_) => "found",
            dircache::Lookup::Missing => "missing",
            dircache::Lookup::Unknown => "unknown",
        };
    // Not kept unless the cache was made to keep them.
    let off = dircache::DirCache::new(Duration::from_secs(60), false);
    off.remember(&p("d/f"), true, None, off.generation());
    assert_eq!(found(&off, "d/f", true), "unknown");

    let dc = dircache::DirCache::new(Duration::from_secs(60), true);
    let g = dc.generation();
    dc.remember(&p("d"), true, Some(dir_meta()), g);
    dc.remember(&p("d/f"), true, None, g);
    dc.remember(&p("d/g"), false, Some(file.clone()), g);
    assert_eq!(found(&dc, "d/f", true), "missing");
    assert_eq!(found(&dc, "d/g", false), "found");
    assert_eq!(
        found(&dc, "d/g", true),
        "unknown",
        "stat and lstat are kept apart"
    );
    // Creating d/f/x: d/f is no longer missing; d stays known.
    dc.forget(&p("d/f/x"));
    assert_eq!(found(&dc, "d/f", true), "unknown");
    assert_eq!(found(&dc, "d", true), "found");
    // A lookup begun before a change elsewhere is kept; one begun before a
    // change of the same path, or above or below it, is not.
    let g = dc.generation();
    dc.forget(&p("e/other"));
    dc.remember(&p("d/h"), true, None, g);
    assert_eq!(found(&dc, "d/h", true), "missing");
    let g = dc.generation();
    dc.forget(&p("d/f2"));
    dc.remember(&p("d"), true, Some(dir_meta()), g);
    assert_eq!(
        found(&dc, "d", true),
        "found",
        "a change inside d does not unmake d"
    );
    for changed in ["d/i", "d/i/below", "d"] {
        let g = dc.generation();
        dc.forget(&p(changed));
        dc.remember(&p("d/i"), true, None, g);
        assert_eq!(
            found(&dc, "d/i", true),
            "unknown",
            "after a change of {changed}"
        );
    }
    // Listings follow the same rule: a change in a sibling directory does
    // not waste a listing fetched meanwhile.
    let g = dc.generation();
    dc.forget(&p("e/x"));
    dc.put(&p("d"), Arc::new(Vec::new()), g);
    assert!(dc.get(&p("d")).is_some());
    // A lookup older than the log of changes is not kept.
    dc.forget_tree(&p("d"));
    let g = dc.generation();
    for i in 0..200 {
        dc.forget(&p(&format!("e/{i}")));
    }
    dc.remember(&p("d/j"), true, None, g);
    assert_eq!(found(&dc, "d/j", true), "unknown");
    // A directory renamed or removed takes the lookups below it.
    let g = dc.generation();
    dc.remember(&p("t/a/b"), true, Some(file.clone()), g);
    dc.remember(&p("t-x"), true, Some(file), g);
    dc.forget_tree(&p("t"));
    assert_eq!(found(&dc, "t/a/b", true), "unknown");
    assert_eq!(found(&dc, "t-x", true), "found");
    // A directory only Ferry knew of lands on the store: found from then
    // on, its parent's listing goes, and a lookup below it that was being
    // fetched meanwhile is still good (writes mode: an upload commits
    // while the client stats its next new name).
    dc.put(&RelPath::root(), Arc::new(Vec::new()), dc.generation());
    dc.remember(&p("v"), true, None, dc.generation());
    let g = dc.generation();
    dc.became_directory(&p("v"), dir_meta());
    dc.remember(&p("v/next"), true, None, g);
    dc.remember(&p("v"), true, None, g);
    assert_eq!(found(&dc, "v", true), "found", "a stale answer is not kept");
    assert_eq!(found(&dc, "v", false), "found");
    assert_eq!(found(&dc, "v/next", true), "missing");
    assert!(dc.get(&RelPath::root()).is_none());
    // A file committed through Ferry joins the listing it is in, so new
    // names there stay answered; one made by a client a moment ago has an
    // empty listing until it would have expired.
    dc.made_empty(&p("w"), Duration::from_secs(1));
    assert_eq!(found(&dc, "w/a", true), "missing");
    let mut a = dir_meta();
    a.file_type = ferry_backend::FileType::File;
    a.mtime = Some(std::time::SystemTime::now());
    let g = dc.generation();
    dc.committed(&p("w/a"), &a);
    dc.put(&p("w"), Arc::new(Vec::new()), g);
    assert_eq!(
        found(&dc, "w/a", true),
        "found",
        "a listing from before is not kept"
    );
    assert_eq!(found(&dc, "w/b", true), "missing");
    dc.made_empty(&p("old"), Duration::from_secs(61));
    assert_eq!(found(&dc, "old/a", true), "unknown");
    // Without the time a stat would give, the listing is forgotten.
    a.mtime = None;
    dc.committed(&p("w/b"), &a);
    assert_eq!(found(&dc, "w/a", true), "unknown");
}

fn dir_meta() -> ferry_backend::Metadata {
    ferry_backend::Metadata {
        file_type: ferry_backend::FileType::Dir,
        size: 0,
        mtime: None,
        atime: None,
        permissions: None,
        owner: None,
        change: None,
    }
}
