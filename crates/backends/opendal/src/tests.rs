//! The adapter over OpenDAL's in-memory service (an object store without
//! real directories). The real stores are exercised end to end by
//! tests/e2e/test_backends.py against Garage and a WebDAV server.

use super::*;
use bytes::Bytes;

fn backend() -> ObjectBackend {
    let op = Operator::new(opendal::services::Memory::default()).unwrap();
    ObjectBackend::new(op, ObjectOptions::default())
}

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

async fn put(b: &ObjectBackend, path: &str, data: &[u8], mtime: Option<SystemTime>) {
    let mut up = b
        .create_upload(&p(path), UploadOptions::default())
        .await
        .unwrap();
    for chunk in data.chunks(1000) {
        up.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    up.finish(mtime).await.unwrap();
}

async fn get(b: &ObjectBackend, path: &str) -> Vec<u8> {
    let f = b
        .open_file(
            &p(path),
            OpenOptions {
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let size = f.stat().await.unwrap().size;
    let mut out = Vec::new();
    let mut off = 0u64;
    while off < size {
        let got = f.read_at(off, 7000, Vec::new()).await.unwrap();
        assert!(!got.is_empty());
        off += got.len() as u64;
        out.extend_from_slice(&got);
    }
    assert!(f.read_at(size, 10, Vec::new()).await.unwrap().is_empty());
    out
}

#[test]
fn mtime_values_round_trip_as_rclone_writes_them() {
    let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    assert_eq!(format_mtime(t), "1700000000.123456789");
    assert_eq!(parse_mtime("1700000000.123456789"), Some(t));
    assert_eq!(
        parse_mtime("1700000000.5"),
        Some(UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000))
    );
    assert_eq!(
        parse_mtime("1700000000"),
        Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    );
    assert_eq!(
        parse_mtime("-1.5"),
        UNIX_EPOCH.checked_sub(Duration::new(1, 500_000_000))
    );
    assert_eq!(parse_mtime("soon"), None);
    assert_eq!(parse_mtime("1.2.3"), None);
    assert_eq!(parse_mtime(""), None);
}

#[tokio::test]
async fn files_directories_and_listings() {
    let b = backend();
    let caps = b.capabilities();
    assert!(caps.streaming_upload && !caps.random_access_write && !caps.real_directories);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let t = UNIX_EPOCH + Duration::new(1_600_000_000, 250_000_000);
    put(&b, "d/sub/f.bin", &data, Some(t)).await;
    put(&b, "d/g.txt", b"hello", None).await;
    assert_eq!(get(&b, "d/sub/f.bin").await, data);
    let m = b.stat(&p("d/sub/f.bin")).await.unwrap();
    assert_eq!(m.size, data.len() as u64);
    // OpenDAL's memory service keeps no user metadata: times are checked
    // against a real S3 server end to end.
    let metadata = b.opts.mtime_metadata;
    assert!(!metadata || m.mtime == Some(t));
    assert!(b.stat(&p("d")).await.unwrap().is_dir());
    assert!(b.stat(&p("d/sub")).await.unwrap().is_dir());
    assert_eq!(
        b.stat(&p("nope")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let mut names: Vec<(String, bool)> = b
        .list(&p("d"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (String::from_utf8(e.name).unwrap(), e.meta.is_dir()))
        .collect();
    names.sort();
    assert_eq!(names, vec![("g.txt".into(), false), ("sub".into(), true)]);
    let listed = b.list(&p("d/sub")).await.unwrap();
    assert!(
        !metadata || listed[0].meta.mtime == Some(t),
        "listing reads the mtime metadata"
    );
    assert_eq!(
        b.list(&p("d/g.txt")).await.unwrap_err().kind(),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        b.list(&p("zz")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        b.remove_dir(&p("d")).await.unwrap_err().kind(),
        ErrorKind::DirectoryNotEmpty
    );
    assert_eq!(
        b.remove_file(&p("d")).await.unwrap_err().kind(),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        b.remove_file(&p("d/none")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Rename by copy and delete keeps content and time.
    b.rename(&p("d/sub/f.bin"), &p("d/h.bin"), false)
        .await
        .unwrap();
    assert_eq!(get(&b, "d/h.bin").await, data);
    assert!(!metadata || b.stat(&p("d/h.bin")).await.unwrap().mtime == Some(t));
    assert_eq!(
        b.stat(&p("d/sub")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        b.rename(&p("d/h.bin"), &p("d/g.txt"), false)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    b.rename(&p("d/h.bin"), &p("d/g.txt"), true).await.unwrap();
    assert_eq!(get(&b, "d/g.txt").await, data);
    b.remove_file(&p("d/g.txt")).await.unwrap();
    assert_eq!(b.list(&p("")).await.unwrap(), vec![]);
}

#[tokio::test]
async fn writes_are_refused_on_read_handles_and_uploads_abort_cleanly() {
    let b = backend();
    let e = b
        .open_file(
            &p("x"),
            OpenOptions {
                write: true,
                create: true,
                ..Default::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    let mut up = b
        .create_upload(&p("x"), UploadOptions::default())
        .await
        .unwrap();
    up.write(Bytes::from_static(b"partial")).await.unwrap();
    up.abort().await.unwrap();
    assert_eq!(
        b.stat(&p("x")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // A large upload (several parts) aborted leaves nothing either.
    let mut up = b
        .create_upload(&p("y"), UploadOptions::default())
        .await
        .unwrap();
    for _ in 0..12 {
        up.write(Bytes::from(vec![1u8; 1 << 20])).await.unwrap();
    }
    up.abort().await.unwrap();
    assert_eq!(
        b.stat(&p("y")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn large_uploads_and_reads() {
    let b = backend();
    let data: Vec<u8> = (0..(13u32 << 20)).map(|i| (i % 253) as u8).collect();
    let mut up = b
        .create_upload(&p("big"), UploadOptions::default())
        .await
        .unwrap();
    for chunk in data.chunks(255 * 1024) {
        up.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    let t = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    up.finish(Some(t)).await.unwrap();
    let f = b
        .open_file(
            &p("big"),
            OpenOptions {
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Reads out of order and across fetched ranges.
    for &(off, len) in &[
        (5u64 << 20, 100_000usize),
        (0, 32768),
        (13 << 20, 10),
        ((13 << 20) - 5, 100),
        (1 << 20, 3 << 20),
    ] {
        let got = f.read_at(off, len, b"hdr".to_vec()).await.unwrap();
        let end = (off as usize + len).min(data.len());
        let want = if off as usize >= data.len() {
            &[][..]
        } else {
            &data[off as usize..end]
        };
        assert_eq!(&got[..3], b"hdr");
        assert_eq!(&got[3..], want, "read at {off}");
    }
    assert!(!b.opts.mtime_metadata || b.stat(&p("big")).await.unwrap().mtime == Some(t));
}

#[tokio::test]
async fn set_times_and_truncate() {
    let b = backend();
    put(&b, "f", b"0123456789", None).await;
    let t = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    b.set_attrs(
        &p("f"),
        &SetAttrs {
            times: Some((t, t)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let m = b.stat(&p("f")).await.unwrap();
    assert_eq!(m.size, 10);
    assert!(!b.opts.mtime_metadata || m.mtime == Some(t));
    assert_eq!(get(&b, "f").await, b"0123456789");
    let e = b
        .set_attrs(
            &p("f"),
            &SetAttrs {
                size: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    b.set_attrs(
        &p("f"),
        &SetAttrs {
            size: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(b.stat(&p("f")).await.unwrap().size, 0);
}
