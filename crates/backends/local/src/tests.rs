//! Tests of the local backend on a real temporary directory, including
//! escape attempts through symbolic links made behind Ferry's back.

use super::*;

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    outside: std::path::PathBuf,
    root: std::path::PathBuf,
    be: LocalBackend,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    let be = LocalBackend::open(&root).unwrap();
    Fixture {
        _tmp: tmp,
        outside,
        root,
        be,
    }
}

fn rw() -> OpenOptions {
    OpenOptions {
        read: true,
        write: true,
        create: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn symlink_escapes_are_refused() {
    let f = fixture();
    // Links made by someone else on the backing directory.
    std::os::unix::fs::symlink(&f.outside, f.root.join("dirlink")).unwrap();
    std::os::unix::fs::symlink(f.outside.join("secret"), f.root.join("filelink")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", f.root.join("rellink")).unwrap();

    for path in ["dirlink/secret", "filelink", "rellink"] {
        let e =
            f.be.open_file(
                &p(path),
                OpenOptions {
                    read: true,
                    ..Default::default()
                },
            )
            .await;
        assert!(e.is_err(), "{path} opened");
        assert!(f.be.stat(&p(path)).await.is_err(), "{path} stat");
    }
    assert!(f.be.list(&p("dirlink")).await.is_err());
    // Writing through a link must not create anything outside.
    assert!(f.be.open_file(&p("dirlink/new"), rw()).await.is_err());
    assert!(!f.outside.join("new").exists());
    assert!(f.be.create_dir(&p("dirlink/newdir"), None).await.is_err());
    assert!(!f.outside.join("newdir").exists());
    assert!(f
        .be
        .rename(&p("dirlink/secret"), &p("stolen"), true)
        .await
        .is_err());
    assert!(f.outside.join("secret").exists());
    assert!(f.be.remove_file(&p("dirlink/secret")).await.is_err());
    assert!(f.outside.join("secret").exists());
    // lstat of the link itself is fine, and removing the link removes only it.
    let m = f.be.lstat(&p("filelink")).await.unwrap();
    assert_eq!(m.file_type, FileType::Symlink);
    f.be.remove_file(&p("filelink")).await.unwrap();
    assert!(f.outside.join("secret").exists());
}

#[tokio::test]
async fn symlinks_inside_the_root_work() {
    let f = fixture();
    std::fs::create_dir(f.root.join("d")).unwrap();
    std::fs::write(f.root.join("d/file"), b"x").unwrap();
    f.be.symlink(b"d/file", &p("link")).await.unwrap();
    assert_eq!(f.be.read_link(&p("link")).await.unwrap(), b"d/file");
    assert_eq!(f.be.stat(&p("link")).await.unwrap().size, 1);
    f.be.symlink(b"../d", &p("d/up")).await.unwrap();
    assert_eq!(f.be.list(&p("d/up")).await.unwrap().len(), 2);
}

/// The same reads and writes give the same bytes wherever the system calls
/// run: on the calling thread, on the pool, or split between them when only
/// part of a file is in the page cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_io_mode_reads_and_writes_the_same_bytes() {
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    for mode in [IoMode::Memory, IoMode::Disk, IoMode::Pool] {
        let f = fixture();
        let be = LocalBackend::open(&f.root).unwrap().with_io_mode(mode);
        assert_eq!(be.io_mode(), mode);
        let h = be.open_file(&p("f"), rw()).await.unwrap();
        for (i, chunk) in data.chunks(255 * 1024).enumerate() {
            h.write_at((i * 255 * 1024) as u64, Bytes::copy_from_slice(chunk))
                .await
                .unwrap();
        }
        h.sync().await.unwrap();
        // Drop the second half from the page cache (clean pages go): a
        // read across the middle finds the first part cached, the rest not.
        let std_file = std::fs::File::open(f.root.join("f")).unwrap();
        let half = data.len() as u64 / 2;
        rustix::fs::fadvise(&std_file, half, None, rustix::fs::Advice::DontNeed).unwrap();
        let got = h
            .read_at(half - 4096, 64 * 1024, b"H".to_vec())
            .await
            .unwrap();
        assert_eq!(&got[..1], b"H", "{mode:?}");
        assert_eq!(
            &got[1..],
            &data[half as usize - 4096..][..64 * 1024],
            "{mode:?}"
        );
        // Nothing cached at all.
        rustix::fs::fadvise(&std_file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let got = h.read_at(0, data.len(), Vec::new()).await.unwrap();
        assert!(got == data, "{mode:?}: whole file differs");
        // Short at the end, empty past it.
        let got = h
            .read_at(data.len() as u64 - 10, 100, Vec::new())
            .await
            .unwrap();
        assert_eq!(got, &data[data.len() - 10..], "{mode:?}");
        assert!(h
            .read_at(data.len() as u64 + 5, 10, Vec::new())
            .await
            .unwrap()
            .is_empty());
        // Metadata calls, quick and slow, on the handle and by path.
        assert_eq!(h.stat().await.unwrap().size, data.len() as u64);
        h.set_attrs(&SetAttrs {
            size: Some(10),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(be.stat(&p("f")).await.unwrap().size, 10);
        be.rename(&p("f"), &p("g"), false).await.unwrap();
        assert_eq!(be.list(&p("")).await.unwrap().len(), 1);
        be.remove_file(&p("g")).await.unwrap();
        let e = be.stat(&p("g")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{mode:?}");
    }
}

#[test]
fn io_mode_follows_the_file_system() {
    // procfs is neither memory nor a local disk: everything on the pool.
    let proc_fs = std::fs::File::open("/proc").unwrap();
    assert_eq!(IoMode::detect(&proc_fs), IoMode::Pool);
    if let Ok(shm) = std::fs::File::open("/dev/shm") {
        let st = rustix::fs::fstatfs(&shm).unwrap();
        if st.f_type as u64 == 0x0102_1994 {
            assert_eq!(IoMode::detect(&shm), IoMode::Memory);
        }
    }
}

/// A FIFO in the served tree is refused at once in every mode: opening it
/// must not wait for a writer (on the calling thread, that would stall
/// every session on it).
#[tokio::test]
async fn fifos_are_refused_without_waiting() {
    for mode in [IoMode::Memory, IoMode::Disk, IoMode::Pool] {
        let f = fixture();
        let be = LocalBackend::open(&f.root).unwrap().with_io_mode(mode);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            f.root.join("fifo"),
            rustix::fs::Mode::from(0o600),
        )
        .unwrap();
        let read = OpenOptions {
            read: true,
            ..Default::default()
        };
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            be.open_file(&p("fifo"), read),
        )
        .await
        .expect("open of a FIFO returned at once");
        let e = r.err().expect("a FIFO is not opened");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{mode:?}: {e}");
        // Nor is it opened to set its size (SETSTAT and LSETSTAT with a
        // size once held a blocking thread each until a reader came).
        let size = ferry_backend::SetAttrs {
            size: Some(0),
            ..Default::default()
        };
        for nofollow in [false, true] {
            let r = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                if nofollow {
                    be.set_attrs_nofollow(&p("fifo"), &size).await
                } else {
                    be.set_attrs(&p("fifo"), &size).await
                }
            })
            .await
            .expect("a size set on a FIFO returned at once");
            let e = r.expect_err("a FIFO has no size to set");
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{mode:?}: {e}");
        }
        // Regular files still open for blocking reads and writes.
        let h = be.open_file(&p("file"), rw()).await.unwrap();
        h.write_at(0, Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(h.read_at(0, 10, Vec::new()).await.unwrap(), b"x");
    }
}

/// The watcher follows directories made and moved after it started, names
/// changed paths relative to the root, and reports each once per batch.
#[test]
fn watcher_follows_new_and_moved_directories() {
    use std::sync::Mutex;
    let f = fixture();
    std::fs::create_dir(f.root.join("old")).unwrap();
    let seen: Arc<Mutex<Vec<Option<Vec<u8>>>>> = Arc::default();
    let s2 = seen.clone();
    let notify: ferry_backend::ChangeNotify = Arc::new(move |p: Option<&RelPath>| {
        s2.lock().unwrap().push(p.map(|p| p.as_bytes().to_vec()));
    });
    let _w = watch::start(f.root.clone(), notify).unwrap();
    let wait_for = |path: &str| {
        for _ in 0..100 {
            if seen
                .lock()
                .unwrap()
                .iter()
                .any(|p| p.as_deref() == Some(path.as_bytes()))
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("{path} not reported; saw {:?}", seen.lock().unwrap());
    };
    std::fs::write(f.root.join("old/a"), b"1").unwrap();
    wait_for("old/a");
    // A tree made now is watched as soon as its top is reported.
    std::fs::create_dir_all(f.root.join("new/x/y")).unwrap();
    wait_for("new");
    std::thread::sleep(watch::BATCH * 3);
    std::fs::write(f.root.join("new/x/y/b"), b"2").unwrap();
    wait_for("new/x/y/b");
    // A moved directory is watched under its new name only.
    std::fs::rename(f.root.join("new"), f.root.join("moved")).unwrap();
    wait_for("moved");
    std::thread::sleep(watch::BATCH * 3);
    seen.lock().unwrap().clear();
    std::fs::write(f.root.join("moved/x/y/c"), b"3").unwrap();
    wait_for("moved/x/y/c");
    let seen = seen.lock().unwrap();
    assert!(
        !seen.iter().flatten().any(|p| p.starts_with(b"new")),
        "old name reported: {seen:?}"
    );
    drop(seen);
}

/// Events are read in batches: a hundred quick rewrites of one file (some
/// 400 inotify events) are a handful of reports, not hundreds.
#[test]
fn watcher_reports_in_batches() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let f = fixture();
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    let notify: ferry_backend::ChangeNotify = Arc::new(move |p: Option<&RelPath>| {
        if p.map(|p| p.as_bytes()) == Some(b"f") {
            c2.fetch_add(1, Ordering::Relaxed);
        }
    });
    let _w = watch::start(f.root.clone(), notify).unwrap();
    for i in 0..100u32 {
        std::fs::write(f.root.join("f"), i.to_le_bytes()).unwrap();
    }
    std::thread::sleep(watch::BATCH * 10);
    let n = count.load(Ordering::Relaxed);
    assert!((1..=20).contains(&n), "{n} reports for 100 rewrites");
}

/// Where the kernel takes a link, for any program on the host.
fn lands(f: &Fixture, link: &str) -> std::path::PathBuf {
    std::fs::canonicalize(f.root.join(link)).unwrap()
}

fn inside(f: &Fixture, link: &str) -> bool {
    lands(f, link).starts_with(std::fs::canonicalize(&f.root).unwrap())
}

/// Finding 6: links are written for where they physically are, and a
/// rename never carries a link's `..` above the root.
#[tokio::test]
async fn links_stay_inside_the_root_as_the_kernel_resolves_them() {
    let f = fixture();
    let be = &f.be;
    std::fs::create_dir_all(f.root.join("d1/d2/d3")).unwrap();
    std::fs::create_dir_all(f.root.join("outside")).unwrap();
    std::fs::write(f.root.join("outside/secret"), b"mine").unwrap();
    std::fs::write(f.root.join("x"), b"x").unwrap();

    // A link moved up: "../../outside/secret" from d1/d2 is the root's own
    // outside/secret; from the top the same text is the host's secret.
    be.symlink(b"../../outside/secret", &p("d1/d2/abs"))
        .await
        .unwrap();
    be.rename(&p("d1/d2/abs"), &p("abs"), true).await.unwrap();
    assert_eq!(be.read_link(&p("abs")).await.unwrap(), b"outside/secret");
    assert!(inside(&f, "abs"));
    assert_eq!(std::fs::read(f.root.join("abs")).unwrap(), b"mine");
    // The same without overwrite, one level down.
    be.symlink(b"../../x", &p("d1/d2/up")).await.unwrap();
    be.rename(&p("d1/d2/up"), &p("d1/up"), false).await.unwrap();
    assert_eq!(be.read_link(&p("d1/up")).await.unwrap(), b"../x");
    // A move that keeps it inside is a plain move (POSIX: the text stays).
    be.symlink(b"../y", &p("d1/d2/rel")).await.unwrap();
    be.rename(&p("d1/d2/rel"), &p("d1/rel"), true)
        .await
        .unwrap();
    assert_eq!(be.read_link(&p("d1/rel")).await.unwrap(), b"../y");

    // A directory moved up: the links below it that would leave the root
    // name the same files from their new place; the others are untouched.
    be.symlink(b"../../../x", &p("d1/d2/d3/deep"))
        .await
        .unwrap();
    be.symlink(b"../z", &p("d1/d2/d3/near")).await.unwrap();
    std::fs::create_dir(f.root.join("d1/d2/d3/sub")).unwrap();
    be.symlink(b"../../../../x", &p("d1/d2/d3/sub/deeper"))
        .await
        .unwrap();
    // Refused (the name is taken): everything as it was.
    std::fs::create_dir(f.root.join("d3")).unwrap();
    std::fs::write(f.root.join("d3/taken"), b"t").unwrap();
    let e = be
        .rename(&p("d1/d2/d3"), &p("d3"), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(
        be.read_link(&p("d1/d2/d3/deep")).await.unwrap(),
        b"../../../x"
    );
    assert_eq!(
        be.read_link(&p("d1/d2/d3/sub/deeper")).await.unwrap(),
        b"../../../../x"
    );
    be.rename(&p("d1/d2/d3"), &p("top"), false).await.unwrap();
    assert_eq!(be.read_link(&p("top/deep")).await.unwrap(), b"../x");
    assert_eq!(
        be.read_link(&p("top/sub/deeper")).await.unwrap(),
        b"../../x"
    );
    assert_eq!(be.read_link(&p("top/near")).await.unwrap(), b"../z");
    assert!(inside(&f, "top/deep") && inside(&f, "top/sub/deeper"));
    // No helper link is left behind.
    let names: Vec<_> = std::fs::read_dir(f.root.join("top"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains("ferry-link")), "{names:?}");

    // A link made in a directory reached through an in-root link: its
    // text counts from where the directory really is. "dd" is the root
    // itself, so "dd/dd/dd/l" is at the top; "../../../x" from there
    // would be two levels above the root.
    std::os::unix::fs::symlink(".", f.root.join("dd")).unwrap();
    be.symlink(b"../../../x", &p("dd/dd/dd/l")).await.unwrap();
    assert_eq!(
        std::fs::read_link(f.root.join("l")).unwrap().as_os_str(),
        "x"
    );
    assert!(inside(&f, "l"));
    // And one that is deeper than its path says.
    std::os::unix::fs::symlink("d1/d2", f.root.join("short")).unwrap();
    be.symlink(b"../x", &p("short/m")).await.unwrap();
    assert_eq!(
        std::fs::read_link(f.root.join("d1/d2/m"))
            .unwrap()
            .as_os_str(),
        "../../x"
    );
    assert_eq!(std::fs::read(f.root.join("d1/d2/m")).unwrap(), b"x");
    // A target that climbs above the root is refused (the VFS never
    // sends one).
    let e = be.symlink(b"../../x", &p("d1/bad")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutsideRoot, "{e}");
    assert!(!f.outside.join("x").exists());
}

/// chown by path goes through a descriptor resolved beneath the root: a
/// link's target inside is changed (not the link), a link out of the root
/// is refused, and a FIFO is not opened for reading (nothing waits).
#[tokio::test]
async fn chown_resolves_beneath_the_root_through_a_descriptor() {
    use std::os::unix::fs::MetadataExt as _;
    let f = fixture();
    let be = &f.be;
    let me = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    // As root, a real change can be seen; otherwise to oneself.
    let to = if me.0 == 0 { (4321, 4321) } else { me };
    let owner = ferry_backend::SetAttrs {
        owner: Some(to),
        ..Default::default()
    };
    std::fs::write(f.root.join("file"), b"x").unwrap();
    std::fs::create_dir(f.root.join("dir")).unwrap();
    std::os::unix::fs::symlink("file", f.root.join("link")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", f.root.join("out")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        f.root.join("fifo"),
        rustix::fs::Mode::from(0o600),
    )
    .unwrap();
    for name in ["file", "dir", "link", "fifo"] {
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            be.set_attrs(&p(name), &owner),
        )
        .await
        .expect("no wait")
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let uid = |n: &str| std::fs::symlink_metadata(f.root.join(n)).unwrap().uid();
    assert_eq!(uid("file"), to.0);
    assert_eq!(uid("dir"), to.0);
    assert_eq!(uid("fifo"), to.0);
    assert_eq!(uid("link"), me.0, "the link itself is not changed");
    let before = std::fs::metadata(f.outside.join("secret")).unwrap().uid();
    assert!(be.set_attrs(&p("out"), &owner).await.is_err());
    assert_eq!(
        std::fs::metadata(f.outside.join("secret")).unwrap().uid(),
        before
    );
    // Without following: the link itself.
    be.set_attrs_nofollow(&p("out"), &owner).await.unwrap();
    assert_eq!(uid("out"), to.0);
    assert_eq!(
        std::fs::metadata(f.outside.join("secret")).unwrap().uid(),
        before
    );
}
