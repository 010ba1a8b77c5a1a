//! The backend conformance suite: what every [`Backend`] must do, checked
//! the same way on each, gated by what its [`Capabilities`] say it can do.
//!
//! [`run`] takes a backend whose root is empty and runs every check in
//! turn; a failure names the backend and the check. A capability a backend
//! claims is checked to work; one it does not claim is checked to be
//! refused with [`ErrorKind::Unsupported`] where the trait says so.

use std::sync::Arc;

use bytes::Bytes;
use ferry_backend::{
    Backend, Capabilities, ErrorKind, FileType, HashKind, OpenOptions, RelPath, SetAttrs,
    UploadOptions,
};
use futures::stream::{self, StreamExt as _};
use md5::{Digest as _, Md5};
use sha1::Sha1;

/// A path from a string.
pub fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).expect("a valid path")
}

/// A path from bytes.
pub fn pb(s: &[u8]) -> RelPath {
    RelPath::new(s.to_vec()).expect("a valid path")
}

/// `n` bytes that differ with `seed` (incompressible enough, and
/// reproducible).
pub fn data(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Write `bytes` to `path` the way the store takes files: positional
/// writes where it has them, else an upload front to back. A whole upload
/// that fails for a temporary reason (a busy test server) is tried again,
/// as a client would; any other failure panics.
pub async fn put(be: &dyn Backend, path: &RelPath, bytes: &[u8]) {
    let mut tries = 0;
    loop {
        match try_put(be, path, bytes).await {
            Ok(()) => return,
            Err(e) if e.is_temporary() && tries < 5 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 << tries)).await;
            }
            Err(e) => panic!("writing {path}: {e:?}"),
        }
    }
}

/// One try of [`put`].
pub async fn try_put(be: &dyn Backend, path: &RelPath, bytes: &[u8]) -> ferry_backend::Result<()> {
    const PIECE: usize = 1 << 20;
    if be.capabilities().random_access_write {
        let opts = OpenOptions {
            write: true,
            create: true,
            truncate: true,
            ..Default::default()
        };
        let f = be.open_file(path, opts).await?;
        for (i, piece) in bytes.chunks(PIECE).enumerate() {
            f.write_at((i * PIECE) as u64, Bytes::copy_from_slice(piece))
                .await?;
        }
        f.sync().await
    } else {
        let mut up = be.create_upload(path, UploadOptions::default()).await?;
        for piece in bytes.chunks(PIECE) {
            if let Err(e) = up.write(Bytes::copy_from_slice(piece)).await {
                let _ = up.abort().await;
                return Err(e);
            }
        }
        if let Err(e) = up.finish(None).await {
            let _ = up.abort().await;
            return Err(e);
        }
        Ok(())
    }
}

/// The whole of `path`, read in pieces.
pub async fn get(be: &dyn Backend, path: &RelPath) -> Vec<u8> {
    let f = be
        .open_file(
            path,
            OpenOptions {
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut out = Vec::new();
    loop {
        let before = out.len();
        out = f
            .read_at(out.len() as u64, 1 << 20, out)
            .await
            .expect("read");
        if out.len() == before {
            return out;
        }
    }
}

fn kind<T: std::fmt::Debug>(r: ferry_backend::Result<T>) -> ErrorKind {
    match r {
        Err(e) => e.kind(),
        Ok(v) => panic!("succeeded where it must fail: {v:?}"),
    }
}

/// Run every check on `be` (named `name` in failures), whose root is
/// empty.
pub async fn run(name: &str, be: Arc<dyn Backend>) {
    let caps = be.capabilities();
    macro_rules! check {
        ($f:ident) => {{
            let started = std::time::Instant::now();
            $f(&*be, &caps).await;
            eprintln!("{name}: {} ok ({:?})", stringify!($f), started.elapsed());
        }};
    }
    check!(empty_root_and_missing_paths);
    check!(empty_and_large_files);
    check!(directories);
    check!(renames);
    check!(names_are_bytes);
    check!(concurrent_writers);
    check!(listing_of_5000_entries);
    check!(attributes);
    check!(committed_uploads_report_what_a_stat_sees);
    check!(copies_links_and_usage);
    check!(hashes_and_streams);
    check!(random_access);
}

async fn empty_root_and_missing_paths(be: &dyn Backend, caps: &Capabilities) {
    assert!(
        be.list(&RelPath::root()).await.unwrap().is_empty(),
        "root not empty"
    );
    assert!(be.stat(&RelPath::root()).await.unwrap().is_dir());
    assert_eq!(kind(be.stat(&p("nope")).await), ErrorKind::NotFound);
    assert_eq!(kind(be.lstat(&p("nope/deeper")).await), ErrorKind::NotFound);
    let ro = OpenOptions {
        read: true,
        ..Default::default()
    };
    assert_eq!(
        kind(be.open_file(&p("nope"), ro).await.map(|_| ())),
        ErrorKind::NotFound
    );
    if !caps.read_only {
        assert_eq!(kind(be.remove_file(&p("nope")).await), ErrorKind::NotFound);
    }
    if caps.real_directories {
        assert_eq!(kind(be.list(&p("nope")).await), ErrorKind::NotFound);
    }
}

async fn empty_and_large_files(be: &dyn Backend, _caps: &Capabilities) {
    put(be, &p("empty"), b"").await;
    let m = be.stat(&p("empty")).await.unwrap();
    assert_eq!((m.file_type, m.size), (FileType::File, 0));
    assert!(get(be, &p("empty")).await.is_empty());
    // Past one upload part (5 MiB) on object stores.
    let big = data(20 << 20, 1);
    put(be, &p("big.bin"), &big).await;
    assert_eq!(be.stat(&p("big.bin")).await.unwrap().size, big.len() as u64);
    assert!(
        get(be, &p("big.bin")).await == big,
        "20 MiB read back differs"
    );
    // Replacing a file replaces all of it.
    put(be, &p("big.bin"), b"short").await;
    assert_eq!(get(be, &p("big.bin")).await, b"short");
    let names: Vec<Vec<u8>> = be
        .list(&RelPath::root())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&b"empty".to_vec()) && names.contains(&b"big.bin".to_vec()));
    be.remove_file(&p("empty")).await.unwrap();
    be.remove_file(&p("big.bin")).await.unwrap();
    assert_eq!(kind(be.stat(&p("big.bin")).await), ErrorKind::NotFound);
}

async fn directories(be: &dyn Backend, caps: &Capabilities) {
    if caps.real_directories {
        be.create_dir(&p("d"), Some(0o755)).await.unwrap();
        assert_eq!(
            kind(be.create_dir(&p("d"), None).await),
            ErrorKind::AlreadyExists
        );
        assert!(be.stat(&p("d")).await.unwrap().is_dir());
        put(be, &p("d/f"), b"x").await;
        assert_eq!(
            kind(be.remove_dir(&p("d")).await),
            ErrorKind::DirectoryNotEmpty
        );
        assert_eq!(
            kind(be.remove_dir(&p("d/f")).await),
            ErrorKind::NotADirectory
        );
        assert_eq!(kind(be.remove_file(&p("d")).await), ErrorKind::IsADirectory);
        assert_eq!(kind(be.list(&p("d/f")).await), ErrorKind::NotADirectory);
        be.remove_file(&p("d/f")).await.unwrap();
        be.remove_dir(&p("d")).await.unwrap();
        assert_eq!(kind(be.stat(&p("d")).await), ErrorKind::NotFound);
    } else {
        // Directories are the prefixes of files.
        put(be, &p("d/e/f"), b"x").await;
        assert!(be.stat(&p("d")).await.unwrap().is_dir());
        let root = be.list(&RelPath::root()).await.unwrap();
        assert!(
            root.iter().any(|e| e.name == b"d" && e.meta.is_dir()),
            "{root:?}"
        );
        let d = be.list(&p("d")).await.unwrap();
        assert!(d.iter().any(|e| e.name == b"e" && e.meta.is_dir()), "{d:?}");
        be.remove_file(&p("d/e/f")).await.unwrap();
        assert_eq!(kind(be.stat(&p("d/e/f")).await), ErrorKind::NotFound);
    }
    assert!(be.list(&RelPath::root()).await.unwrap().is_empty());
}

async fn renames(be: &dyn Backend, caps: &Capabilities) {
    put(be, &p("a"), b"A").await;
    put(be, &p("b"), b"B").await;
    be.rename(&p("a"), &p("b"), true).await.unwrap();
    assert_eq!(
        get(be, &p("b")).await,
        b"A",
        "rename over an existing file replaces it"
    );
    assert_eq!(kind(be.stat(&p("a")).await), ErrorKind::NotFound);
    put(be, &p("c"), b"C").await;
    assert_eq!(
        kind(be.rename(&p("c"), &p("b"), false).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        get(be, &p("b")).await,
        b"A",
        "a refused rename changes nothing"
    );
    be.rename(&p("c"), &p("new"), false).await.unwrap();
    assert_eq!(get(be, &p("new")).await, b"C");
    assert_eq!(
        kind(be.rename(&p("gone"), &p("x"), true).await),
        ErrorKind::NotFound
    );
    be.rename(&p("new"), &p("new"), true).await.unwrap();
    assert_eq!(
        get(be, &p("new")).await,
        b"C",
        "a file renamed onto itself stays"
    );
    // A directory in the way, or a file where a directory goes: refused
    // with the kind the client is told, whatever replacing allows.
    if caps.real_directories {
        be.create_dir(&p("d"), None).await.unwrap();
    }
    put(be, &p("d/inside"), b"I").await;
    assert_eq!(
        kind(be.rename(&p("new"), &p("d"), true).await),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        kind(be.rename(&p("d"), &p("new"), true).await),
        ErrorKind::NotADirectory
    );
    assert_eq!(get(be, &p("new")).await, b"C");
    assert_eq!(get(be, &p("d/inside")).await, b"I");
    for f in ["b", "new", "d/inside"] {
        be.remove_file(&p(f)).await.unwrap();
    }
    if caps.real_directories {
        be.remove_dir(&p("d")).await.unwrap();
    }
}

async fn names_are_bytes(be: &dyn Backend, _caps: &Capabilities) {
    for name in [&b"caf\xc3\xa9 \xe2\x98\x83 space.txt"[..], b"odd\xff\xfe"] {
        let path = pb(name);
        // A store that cannot keep a name says so; one that can keeps it
        // byte for byte.
        let stored = if be.capabilities().random_access_write {
            let opts = OpenOptions {
                write: true,
                create: true,
                ..Default::default()
            };
            be.open_file(&path, opts).await.map(|_| ())
        } else {
            match be.create_upload(&path, UploadOptions::default()).await {
                Ok(mut up) => up.finish(None).await.map(|_| ()),
                Err(e) => Err(e),
            }
        };
        match stored {
            Ok(()) => {
                let listed = be.list(&RelPath::root()).await.unwrap();
                assert!(
                    listed.iter().any(|e| e.name == name),
                    "{} not listed as written: {listed:?}",
                    name.escape_ascii()
                );
                be.remove_file(&path).await.unwrap();
            }
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::InvalidName,
                "{}: {e}",
                name.escape_ascii()
            ),
        }
    }
}

async fn concurrent_writers(be: &dyn Backend, _caps: &Capabilities) {
    let (x, y) = (data(1 << 20, 2), data(1 << 20, 3));
    let race = p("race");
    // A store may refuse one of two writers of one file (WebDAV locks it);
    // what it keeps is one of them whole, never a mix.
    let (rx, ry) = tokio::join!(try_put(be, &race, &x), try_put(be, &race, &y));
    assert!(
        rx.is_ok() || ry.is_ok(),
        "both writers failed: {rx:?} {ry:?}"
    );
    let got = get(be, &p("race")).await;
    let whole_x = rx.is_ok() && got == x;
    let whole_y = ry.is_ok() && got == y;
    assert!(
        whole_x || whole_y,
        "two writers of one file left a mix of both"
    );
    be.remove_file(&p("race")).await.unwrap();
}

async fn listing_of_5000_entries(be: &dyn Backend, caps: &Capabilities) {
    if caps.real_directories {
        be.create_dir(&p("many"), None).await.unwrap();
    }
    let names: Vec<String> = (0..5000).map(|i| format!("f{i:05}")).collect();
    stream::iter(names.iter())
        .for_each_concurrent(8, |n| async move {
            put(be, &p(&format!("many/{n}")), n.as_bytes()).await;
        })
        .await;
    let mut listed = be.list(&p("many")).await.unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(listed.len(), 5000, "listing of 5,000 entries");
    for (e, n) in listed.iter().zip(&names) {
        assert_eq!((e.name.as_slice(), e.meta.size), (n.as_bytes(), 6));
    }
    stream::iter(names.iter())
        .for_each_concurrent(32, |n| async move {
            be.remove_file(&p(&format!("many/{n}"))).await.unwrap();
        })
        .await;
    if caps.real_directories {
        be.remove_dir(&p("many")).await.unwrap();
    }
}

async fn attributes(be: &dyn Backend, caps: &Capabilities) {
    put(be, &p("attrs"), b"0123456789").await;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    let times = SetAttrs {
        times: Some((t, t)),
        ..Default::default()
    };
    let r = be.set_attrs(&p("attrs"), &times).await;
    if caps.set_mtime {
        r.unwrap();
        assert_eq!(be.stat(&p("attrs")).await.unwrap().mtime, Some(t));
    }
    if caps.permissions {
        let perms = SetAttrs {
            permissions: Some(0o640),
            ..Default::default()
        };
        be.set_attrs(&p("attrs"), &perms).await.unwrap();
        assert_eq!(be.stat(&p("attrs")).await.unwrap().permissions, Some(0o640));
    }
    if caps.random_access_write {
        let cut = SetAttrs {
            size: Some(4),
            ..Default::default()
        };
        be.set_attrs(&p("attrs"), &cut).await.unwrap();
        assert_eq!(get(be, &p("attrs")).await, b"0123");
    }
    be.remove_file(&p("attrs")).await.unwrap();
}

/// An upload whose commit reports the store's change marker (so callers
/// skip a stat) reports exactly what a stat then sees: size, time and
/// marker. Small (one request) and multipart sizes, with and without a
/// time.
async fn committed_uploads_report_what_a_stat_sees(be: &dyn Backend, caps: &Capabilities) {
    if !caps.streaming_upload {
        return;
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_600_000_000_123_456_789);
    for (i, size) in [0usize, 1000, 12 << 20].into_iter().enumerate() {
        for mtime in [None, Some(t)] {
            let path = p(&format!("committed-{i}-{}", mtime.is_some()));
            let data = vec![b'c'; size];
            let mut up = be
                .create_upload(&path, UploadOptions::default())
                .await
                .unwrap();
            for piece in data.chunks(1 << 20) {
                up.write(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            let done = up.finish(mtime).await.unwrap();
            assert_eq!(done.size, size as u64, "{path}");
            if done.change.is_some() {
                let seen = be.stat(&path).await.unwrap();
                assert_eq!(
                    (done.size, done.mtime, done.change),
                    (seen.size, seen.mtime, seen.change),
                    "{path}: the commit's report differs from the store's"
                );
            }
            be.remove_file(&path).await.unwrap();
        }
    }
}

async fn copies_links_and_usage(be: &dyn Backend, caps: &Capabilities) {
    put(be, &p("orig"), b"original").await;
    let r = be.copy(&p("orig"), &p("copy")).await;
    if caps.server_side_copy {
        r.unwrap();
        assert_eq!(get(be, &p("copy")).await, b"original");
        be.remove_file(&p("copy")).await.unwrap();
    } else {
        assert_eq!(kind(r), ErrorKind::Unsupported);
    }
    let r = be.symlink(b"orig", &p("link")).await;
    if caps.symlinks {
        r.unwrap();
        assert_eq!(be.read_link(&p("link")).await.unwrap(), b"orig");
        assert_eq!(
            be.lstat(&p("link")).await.unwrap().file_type,
            FileType::Symlink
        );
        assert_eq!(be.stat(&p("link")).await.unwrap().file_type, FileType::File);
        be.remove_file(&p("link")).await.unwrap();
    } else {
        assert_eq!(kind(r), ErrorKind::Unsupported);
    }
    let r = be.hard_link(&p("orig"), &p("hard")).await;
    if caps.hard_links {
        r.unwrap();
        assert_eq!(get(be, &p("hard")).await, b"original");
        be.remove_file(&p("hard")).await.unwrap();
    } else {
        assert_eq!(kind(r), ErrorKind::Unsupported);
    }
    let r = be.usage().await;
    if caps.usage {
        let u = r.unwrap();
        if let (Some(total), Some(free)) = (u.total, u.free) {
            assert!(free <= total, "{u:?}");
        }
    } else {
        assert_eq!(kind(r), ErrorKind::Unsupported);
    }
    be.remove_file(&p("orig")).await.unwrap();
}

async fn hashes_and_streams(be: &dyn Backend, caps: &Capabilities) {
    let bytes = data(300_000, 4);
    put(be, &p("h"), &bytes).await;
    for k in caps.native_hashes {
        let got = be.stored_hash(&p("h"), *k).await.unwrap();
        let want = match k {
            HashKind::Md5 => format!("{:x}", Md5::digest(&bytes)),
            HashKind::Sha1 => format!("{:x}", Sha1::digest(&bytes)),
            other => panic!("no reference for {other:?}"),
        };
        assert_eq!(got.map(|h| h.to_ascii_lowercase()), Some(want), "{k:?}");
    }
    let f = be
        .open_file(
            &p("h"),
            OpenOptions {
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let stream = f.read_stream(1000, 50_000).await.unwrap();
    match (caps.read_streams, stream) {
        (true, Some(mut s)) => {
            let mut got = Vec::new();
            while let Some(piece) = s.next().await.unwrap() {
                got.extend_from_slice(&piece);
            }
            assert!(got == bytes[1000..51_000], "the stream's bytes differ");
        }
        (false, None) => {}
        (claimed, got) => panic!(
            "read_streams is {claimed} but a stream was {:?}",
            got.is_some()
        ),
    }
    be.remove_file(&p("h")).await.unwrap();
}

async fn random_access(be: &dyn Backend, caps: &Capabilities) {
    if !caps.random_access_write {
        // Writing a file in place is the upload's job there.
        let rw = OpenOptions {
            read: true,
            write: true,
            create: true,
            ..Default::default()
        };
        let r = be.open_file(&p("ra"), rw).await;
        assert!(
            r.is_err(),
            "a writing open on a store without random-access writes"
        );
        return;
    }
    put(be, &p("ra"), b"0123456789").await;
    let rw = OpenOptions {
        read: true,
        write: true,
        ..Default::default()
    };
    let f = be.open_file(&p("ra"), rw).await.unwrap();
    f.write_at(4, Bytes::from_static(b"xy")).await.unwrap();
    // Past the end: the gap reads as zeros.
    f.write_at(12, Bytes::from_static(b"!")).await.unwrap();
    assert_eq!(
        f.read_at(0, 100, Vec::new()).await.unwrap(),
        b"0123xy6789\0\0!"
    );
    assert_eq!(f.stat().await.unwrap().size, 13);
    drop(f);
    let excl = OpenOptions {
        write: true,
        create_new: true,
        ..Default::default()
    };
    assert_eq!(
        kind(be.open_file(&p("ra"), excl).await.map(|_| ())),
        ErrorKind::AlreadyExists
    );
    let append = OpenOptions {
        write: true,
        append: true,
        ..Default::default()
    };
    let f = be.open_file(&p("ra"), append).await.unwrap();
    f.write_at(0, Bytes::from_static(b"END")).await.unwrap();
    drop(f);
    assert_eq!(get(be, &p("ra")).await, b"0123xy6789\0\0!END");
    be.remove_file(&p("ra")).await.unwrap();
}
