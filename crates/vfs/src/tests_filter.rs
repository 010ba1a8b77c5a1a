//! The filters at the VFS's one lookup: excluded paths are not there in
//! any way, and cannot be made.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::test_util::{p, READ, UPLOAD};
use bytes::Bytes;
use ferry_backend::layer::{Layer, Layered, Request};
use ferry_backend::{HashKind, Operation, SetAttrs};
use ferry_backend_local::LocalBackend;
use ferry_filter::FilterOptions;

/// Counts the requests that reach the store.
struct Counting {
    inner: Arc<dyn Backend>,
    requests: Arc<AtomicUsize>,
}

impl Layer for Counting {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    fn request<'a, T: Send + 'a>(&'a self, _op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        req
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    vfs: Vfs,
    requests: Arc<AtomicUsize>,
}

fn setup(opts: FilterOptions, mode: CacheMode) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    for d in ["pub", "pub/deep", "secret", "logs", "marked"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    for (f, body) in [
        ("a.txt", "a"),
        ("b.bak", "bb"),
        ("pub/c.txt", "ccc"),
        ("pub/deep/d.bak", "dddd"),
        ("secret/s.txt", "s"),
        ("logs/big.log", "0123456789"),
        ("marked/.ignore", ""),
        ("marked/m.txt", "m"),
    ] {
        std::fs::write(root.join(f), body).unwrap();
    }
    let requests = Arc::new(AtomicUsize::new(0));
    let be = Layered(Counting {
        inner: Arc::new(LocalBackend::open(&root).unwrap()),
        requests: requests.clone(),
    });
    let filter = opts
        .build_with(&mut |_, _| unreachable!("no rule files here"))
        .unwrap();
    let mut vopts = VfsOptions {
        filter: FilterRef::new(filter),
        cache_mode: mode,
        ..VfsOptions::default()
    };
    vopts.cache.data_dir = tmp.path().join("cache/data");
    vopts.cache.meta_dir = tmp.path().join("cache/meta");
    let vfs = Vfs::try_new(Arc::new(be), vopts).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        vfs,
        requests,
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn standard() -> FilterOptions {
    FilterOptions {
        filter: strs(&["- *.bak", "- /secret/", "+ **"]),
        max_size: Some(9),
        exclude_if_present: strs(&[".ignore"]),
        ..Default::default()
    }
}

async fn names(vfs: &Vfs, dir: &str) -> Vec<String> {
    let d = if dir.is_empty() {
        RelPath::root()
    } else {
        p(dir)
    };
    vfs.read_dir(&d)
        .await
        .unwrap()
        .iter()
        .map(|(n, _)| String::from_utf8(n.clone()).unwrap())
        .collect()
}

fn write_flags() -> OpenFlags {
    OpenFlags {
        write: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn excluded_paths_are_not_listed_nor_found() {
    let f = setup(standard(), CacheMode::Off);
    let v = f.vfs.session();
    assert_eq!(
        names(&v, "").await,
        ["a.txt", "logs", "pub"],
        "bak, secret/, marked: hidden"
    );
    assert_eq!(names(&v, "pub").await, ["c.txt", "deep"]);
    assert_eq!(names(&v, "pub/deep").await, Vec::<String>::new());
    for hidden in [
        "b.bak",
        "pub/deep/d.bak",
        "secret",
        "secret/s.txt",
        "logs/big.log",
        "marked",
        "marked/m.txt",
        "marked/.ignore",
    ] {
        let path = p(hidden);
        assert!(
            matches!(v.stat(&path).await, Err(VfsError::NotFound)),
            "{hidden}"
        );
        assert!(
            matches!(v.lstat(&path).await, Err(VfsError::NotFound)),
            "{hidden}"
        );
        assert!(
            matches!(v.open(&path, READ, None).await, Err(VfsError::NotFound)),
            "{hidden}"
        );
        assert!(
            matches!(v.hash(&path, HashKind::Md5).await, Err(VfsError::NotFound)),
            "{hidden}"
        );
        assert!(
            matches!(
                v.setstat(&path, &SetAttrs::default(), true).await,
                Err(VfsError::NotFound)
            ),
            "{hidden}"
        );
        assert!(
            matches!(v.remove(&path).await, Err(VfsError::NotFound)),
            "{hidden}"
        );
        assert!(
            matches!(
                v.rename(&path, &p("moved"), false).await,
                Err(VfsError::NotFound)
            ),
            "{hidden}"
        );
    }
    for dir in ["secret", "marked", "logs/none"] {
        assert!(v.read_dir(&p(dir)).await.is_err(), "{dir}");
    }
    assert!(matches!(
        v.rmdir(&p("secret")).await,
        Err(VfsError::NotFound)
    ));
    // Nothing was changed on the store.
    let root = f.root;
    assert!(root.join("b.bak").exists() && root.join("secret/s.txt").exists());
    assert!(!root.join("moved").exists());
    // What is served still works.
    let h = v.open(&p("pub/c.txt"), READ, None).await.unwrap();
    assert_eq!(h.read_at(0, 10, Vec::new()).await.unwrap(), b"ccc");
    h.close().await.unwrap();
    assert_eq!(
        names(&v, "logs").await,
        Vec::<String>::new(),
        "logs/ is served, empty"
    );
}

#[tokio::test]
async fn excluded_names_cannot_be_made() {
    for mode in [CacheMode::Off, CacheMode::Writes] {
        let f = setup(standard(), mode);
        let v = f.vfs.session();
        for name in ["new.bak", "pub/new.bak", "b.bak"] {
            assert!(
                matches!(
                    v.open(&p(name), UPLOAD, None).await,
                    Err(VfsError::PermissionDenied)
                ),
                "{name} ({mode})"
            );
        }
        // A served name, hidden on the store by its size: not replaced
        // unseen.
        assert!(matches!(
            v.open(&p("logs/big.log"), UPLOAD, None).await,
            Err(VfsError::PermissionDenied)
        ));
        assert!(matches!(
            v.mkdir(&p("secret"), None).await,
            Err(VfsError::PermissionDenied)
        ));
        // Below a hidden directory: there is no such directory.
        assert!(matches!(
            v.open(&p("secret/x.txt"), UPLOAD, None).await,
            Err(VfsError::NotFound)
        ));
        assert!(matches!(
            v.mkdir(&p("marked/sub"), None).await,
            Err(VfsError::NotFound)
        ));
        assert!(matches!(
            v.rename(&p("a.txt"), &p("a.bak"), false).await,
            Err(VfsError::PermissionDenied)
        ));
        assert!(matches!(
            v.rename(&p("pub"), &p("secret"), false).await,
            Err(VfsError::PermissionDenied)
        ));
        assert!(matches!(
            v.symlink(b"a.txt", &p("l.bak")).await,
            Err(VfsError::PermissionDenied)
        ));
        assert!(
            matches!(
                v.symlink(b"b.bak", &p("l")).await,
                Err(VfsError::PermissionDenied)
            ),
            "a link to a hidden file"
        );
        assert!(matches!(
            v.symlink(b"secret/s.txt", &p("l")).await,
            Err(VfsError::PermissionDenied)
        ));
        assert!(matches!(
            v.hardlink(&p("a.txt"), &p("h.bak")).await,
            Err(VfsError::PermissionDenied)
        ));
        assert!(matches!(
            v.hardlink(&p("b.bak"), &p("h")).await,
            Err(VfsError::NotFound)
        ));
        // Served names work as ever.
        let h = v.open(&p("pub/new.txt"), UPLOAD, None).await.unwrap();
        h.write_at(0, Bytes::from_static(b"new")).await.unwrap();
        h.close().await.unwrap();
        assert!(
            names(&v, "pub").await.contains(&"new.txt".to_string()),
            "{mode}"
        );
        v.rename(&p("pub/new.txt"), &p("pub/renamed.txt"), false)
            .await
            .unwrap();
        v.mkdir(&p("newdir"), None).await.unwrap();
        f.vfs.flush_uploads(std::future::pending()).await;
        assert_eq!(
            std::fs::read(f.root.join("pub/renamed.txt")).unwrap(),
            b"new",
            "{mode}"
        );
        for gone in [
            "new.bak",
            "pub/new.bak",
            "a.bak",
            "l.bak",
            "l",
            "h.bak",
            "h",
        ] {
            assert!(!f.root.join(gone).exists(), "{gone} ({mode})");
        }
        assert_eq!(std::fs::read(f.root.join("b.bak")).unwrap(), b"bb");
    }
}

#[tokio::test]
async fn links_cannot_show_hidden_files_under_other_names() {
    let f = setup(standard(), CacheMode::Off);
    let root = f.root;
    // Links made on the host, not by a client.
    std::os::unix::fs::symlink("b.bak", root.join("to-bak")).unwrap();
    std::os::unix::fs::symlink("secret", root.join("to-secret")).unwrap();
    std::os::unix::fs::symlink("to-bak", root.join("to-to-bak")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("to-a")).unwrap();
    let v = f.vfs.session();
    for l in ["to-bak", "to-secret", "to-to-bak"] {
        assert!(
            matches!(v.stat(&p(l)).await, Err(VfsError::NotFound)),
            "{l}"
        );
        assert!(
            matches!(v.open(&p(l), READ, None).await, Err(VfsError::NotFound)),
            "{l}"
        );
        assert!(
            matches!(
                v.open(&p(l), write_flags(), None).await,
                Err(VfsError::NotFound)
            ),
            "{l}"
        );
        // The link itself is there (it is not excluded by name).
        assert!(v.lstat(&p(l)).await.is_ok(), "{l}");
    }
    assert_eq!(v.stat(&p("to-a")).await.unwrap().size, 1);
}

#[tokio::test]
async fn excluded_directories_are_pruned_without_asking_the_store() {
    let f = setup(
        FilterOptions {
            filter: strs(&["- /secret/"]),
            ..Default::default()
        },
        CacheMode::Off,
    );
    let v = f.vfs.session();
    let before = f.requests.load(Ordering::SeqCst);
    assert!(matches!(
        v.stat(&p("secret/s.txt")).await,
        Err(VfsError::NotFound)
    ));
    assert!(matches!(
        v.stat(&p("secret/a/b/c")).await,
        Err(VfsError::NotFound)
    ));
    assert!(v.read_dir(&p("secret")).await.is_err());
    assert!(matches!(
        v.open(&p("secret/s.txt"), READ, None).await,
        Err(VfsError::NotFound)
    ));
    assert_eq!(
        f.requests.load(Ordering::SeqCst),
        before,
        "no request for what the rules alone hide"
    );
}

#[tokio::test]
async fn includes_serve_only_what_they_name() {
    let f = setup(
        FilterOptions {
            include: strs(&["/pub/**"]),
            ..Default::default()
        },
        CacheMode::Off,
    );
    let v = f.vfs.session();
    assert_eq!(names(&v, "").await, ["pub"]);
    assert_eq!(names(&v, "pub").await, ["c.txt", "deep"]);
    assert_eq!(names(&v, "pub/deep").await, ["d.bak"]);
    assert!(matches!(v.stat(&p("a.txt")).await, Err(VfsError::NotFound)));
    assert!(matches!(
        v.open(&p("top.txt"), UPLOAD, None).await,
        Err(VfsError::PermissionDenied)
    ));
    assert!(v.open(&p("pub/x"), UPLOAD, None).await.is_ok());
}

#[tokio::test]
async fn a_marker_at_the_root_hides_everything_but_the_root() {
    let f = setup(standard(), CacheMode::Off);
    std::fs::write(f.root.join(".ignore"), b"").unwrap();
    let v = f.vfs.session();
    assert!(v.stat(&RelPath::root()).await.is_ok());
    assert_eq!(names(&v, "").await, Vec::<String>::new());
    assert!(matches!(v.stat(&p("a.txt")).await, Err(VfsError::NotFound)));
    assert!(matches!(
        v.open(&p("new.txt"), UPLOAD, None).await,
        Err(VfsError::NotFound)
    ));
}
