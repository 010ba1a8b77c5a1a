//! The adapter over OpenDAL's in-memory service (an object store without
//! real directories and without user metadata, so no modification times):
//! what the conformance suite does not reach. The suite itself
//! (crates/testkit) runs the adapter on Garage (S3, with rclone's `mtime`
//! metadata) and on a WebDAV server; tests/e2e/test_backends.py end to end.

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
    // The memory service keeps no metadata: the time given is not stored.
    assert!(!b.capabilities().set_mtime);
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
    // Accepted and not stored: the memory service keeps no metadata (the
    // suite checks times on Garage).
    assert!(!b.capabilities().set_mtime);
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
