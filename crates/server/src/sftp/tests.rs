//! The SFTP session fed raw bytes in process: framing, the INIT state
//! machine, malformed input, concurrency and ordering.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_backend_local::LocalBackend;
use ferry_proto::{pflags, FileAttributes, Request, Response, StatusCode};
use ferry_vfs::{Vfs, VfsOptions};
use tokio::sync::mpsc;

use super::*;

struct ChanIn(mpsc::Receiver<Bytes>);
impl Input for ChanIn {
    async fn recv(&mut self) -> Option<Bytes> {
        self.0.recv().await
    }
}

/// The session's output; with a gate, each send first takes one of the
/// gate's permits (a closed SSH window when it has none).
struct ChanOut(mpsc::UnboundedSender<Bytes>, Option<Arc<Semaphore>>);
impl Output for ChanOut {
    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        if let Some(gate) = &self.1 {
            // A closed gate is a connection that is gone.
            gate.acquire()
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?
                .forget();
        }
        self.0
            .send(data)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// A client end of an in-process session.
struct Client {
    tx: Option<mpsc::Sender<Bytes>>,
    rx: mpsc::UnboundedReceiver<Bytes>,
    buf: Vec<u8>,
    task: tokio::task::JoinHandle<Result<(), SessionError>>,
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
}

impl Client {
    fn start(opts: VfsOptions) -> Client {
        Client::start_with(opts, SftpOptions::default(), None)
    }

    fn start_with(opts: VfsOptions, sftp: SftpOptions, gate: Option<Arc<Semaphore>>) -> Client {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let vfs = Vfs::new(Arc::new(LocalBackend::open(&root).unwrap()), opts);
        let (tx, in_rx) = mpsc::channel(64);
        let (out_tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(
            vfs,
            Arc::new(sftp),
            ChanIn(in_rx),
            ChanOut(out_tx, gate),
        ));
        Client {
            tx: Some(tx),
            rx,
            buf: Vec::new(),
            task,
            _dir: dir,
            root,
        }
    }

    async fn raw(&self, bytes: &[u8]) {
        self.tx
            .as_ref()
            .unwrap()
            .send(Bytes::copy_from_slice(bytes))
            .await
            .unwrap();
    }

    async fn send(&self, req: Request) {
        let mut out = Vec::new();
        req.encode(&mut out);
        self.raw(&out).await;
    }

    /// The next reply, or `None` when the session closed its output.
    async fn recv(&mut self) -> Option<Response> {
        loop {
            if let Ok(ferry_proto::Frame::Complete(n)) =
                ferry_proto::check_frame(&self.buf, u32::MAX)
            {
                let pkt: Vec<u8> = self.buf.drain(..n).collect();
                return Some(Response::decode(Bytes::from(pkt).slice(4..)).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
                .await
                .expect("reply within 10 s")?;
            self.buf.extend_from_slice(&chunk);
        }
    }

    async fn init(&mut self) {
        self.send(Request::Init {
            version: 3,
            extensions: vec![],
        })
        .await;
        match self.recv().await {
            Some(Response::Version { version: 3, .. }) => {}
            other => panic!("no VERSION: {other:?}"),
        }
    }

    async fn status(&mut self) -> (u32, StatusCode) {
        match self.recv().await {
            Some(Response::Status { id, code, .. }) => (id, code),
            other => panic!("want STATUS, got {other:?}"),
        }
    }

    async fn open(&mut self, id: u32, path: &str, flags: u32) -> Bytes {
        self.send(Request::Open {
            id,
            path: Bytes::copy_from_slice(path.as_bytes()),
            pflags: flags,
            attrs: FileAttributes::default(),
        })
        .await;
        match self.recv().await {
            Some(Response::Handle { id: got, handle }) => {
                assert_eq!(got, id);
                handle
            }
            other => panic!("want HANDLE, got {other:?}"),
        }
    }

    /// Send `count` READs of `len` bytes covering the file from its start,
    /// with ids from 10, without waiting for replies.
    async fn read_in_a_row(&self, handle: &Bytes, count: u32, len: u32) {
        for i in 0..count {
            self.send(Request::Read {
                id: 10 + i,
                handle: handle.clone(),
                offset: i as u64 * len as u64,
                len,
            })
            .await;
        }
    }

    /// Close the input and wait for the session to end.
    async fn finish(mut self) -> Result<(), SessionError> {
        self.tx = None;
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("session ends")
            .unwrap()
    }
}

#[tokio::test]
async fn request_before_init_ends_the_session() {
    let mut c = Client::start(VfsOptions::default());
    c.send(Request::Stat {
        id: 1,
        path: Bytes::from_static(b"/"),
    })
    .await;
    assert!(c.recv().await.is_none());
    assert!(matches!(c.finish().await, Err(SessionError::Protocol(_))));
}

#[tokio::test]
async fn oversized_length_ends_the_session() {
    let mut c = Client::start(VfsOptions::default());
    c.init().await;
    c.raw(&[0xff, 0xff, 0xff, 0xff, 17]).await;
    assert!(c.recv().await.is_none());
    assert!(matches!(c.finish().await, Err(SessionError::Framing(_))));
}

#[tokio::test]
async fn unknown_type_and_bad_body_get_statuses() {
    let mut c = Client::start(VfsOptions::default());
    c.init().await;
    // Type 77 with id 5.
    c.raw(&[0, 0, 0, 5, 77, 0, 0, 0, 5]).await;
    assert_eq!(c.status().await, (5, StatusCode::OpUnsupported));
    // STAT with id 6 whose path length runs past the packet.
    c.raw(&[0, 0, 0, 9, 17, 0, 0, 0, 6, 0, 0, 0, 99]).await;
    assert_eq!(c.status().await, (6, StatusCode::BadMessage));
    // A bad handle.
    c.send(Request::Read {
        id: 7,
        handle: Bytes::from_static(b"nope"),
        offset: 0,
        len: 10,
    })
    .await;
    assert_eq!(c.status().await, (7, StatusCode::Failure));
    // The session still works.
    c.send(Request::Stat {
        id: 8,
        path: Bytes::from_static(b"/"),
    })
    .await;
    assert!(matches!(
        c.recv().await,
        Some(Response::Attrs { id: 8, .. })
    ));
    assert!(c.finish().await.is_ok());
}

#[tokio::test]
async fn packets_split_and_joined_arbitrarily() {
    let mut c = Client::start(VfsOptions::default());
    let mut all = Vec::new();
    Request::Init {
        version: 3,
        extensions: vec![],
    }
    .encode(&mut all);
    for id in 1..=20 {
        Request::Realpath {
            id,
            path: Bytes::from_static(b"/a/../b/."),
        }
        .encode(&mut all);
    }
    // Three bytes at a time.
    for chunk in all.chunks(3) {
        c.raw(chunk).await;
    }
    assert!(matches!(c.recv().await, Some(Response::Version { .. })));
    let mut ids = Vec::new();
    for _ in 0..20 {
        match c.recv().await {
            Some(Response::Name { id, entries }) => {
                assert_eq!(&entries[0].filename[..], b"/b");
                ids.push(id);
            }
            other => panic!("{other:?}"),
        }
    }
    ids.sort();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn pipelined_writes_then_close_are_ordered() {
    let mut c = Client::start(VfsOptions::default());
    c.init().await;
    let h = c
        .open(1, "/f", pflags::WRITE | pflags::CREAT | pflags::TRUNC)
        .await;
    // 64 out-of-order writes, then CLOSE, all without waiting.
    let chunk = 4096usize;
    let mut expected = vec![0u8; 64 * chunk];
    let mut order: Vec<usize> = (0..64).collect();
    order.reverse();
    order.swap(3, 40);
    for (n, i) in order.iter().enumerate() {
        let data: Vec<u8> = (0..chunk).map(|k| (i * 7 + k) as u8).collect();
        expected[i * chunk..(i + 1) * chunk].copy_from_slice(&data);
        c.send(Request::Write {
            id: 100 + n as u32,
            handle: h.clone(),
            offset: (i * chunk) as u64,
            data: Bytes::from(data),
        })
        .await;
    }
    c.send(Request::Close {
        id: 999,
        handle: h.clone(),
    })
    .await;
    let mut close_seen = false;
    for _ in 0..65 {
        let (id, code) = c.status().await;
        assert_eq!(code, StatusCode::Ok, "id {id}");
        if id == 999 {
            close_seen = true;
        } else {
            assert!(!close_seen, "a write was answered after CLOSE");
        }
    }
    assert_eq!(std::fs::read(c.root.join("f")).unwrap(), expected);
    // The handle is gone.
    c.send(Request::Close {
        id: 1000,
        handle: h,
    })
    .await;
    assert_eq!(c.status().await, (1000, StatusCode::Failure));
}

#[tokio::test]
async fn read_write_handle_reads_and_eof() {
    let mut c = Client::start(VfsOptions::default());
    c.init().await;
    std::fs::write(c.root.join("f"), b"0123456789").unwrap();
    let h = c.open(1, "/f", pflags::READ | pflags::WRITE).await;
    c.send(Request::Write {
        id: 2,
        handle: h.clone(),
        offset: 3,
        data: Bytes::from_static(b"abc"),
    })
    .await;
    c.send(Request::Read {
        id: 3,
        handle: h.clone(),
        offset: 0,
        len: 100,
    })
    .await;
    assert_eq!(c.status().await, (2, StatusCode::Ok));
    match c.recv().await {
        Some(Response::Data { id: 3, data }) => assert_eq!(&data[..], b"012abc6789"),
        other => panic!("{other:?}"),
    }
    c.send(Request::Read {
        id: 4,
        handle: h,
        offset: 10,
        len: 100,
    })
    .await;
    assert_eq!(c.status().await, (4, StatusCode::Eof));
}

/// While the transport takes nothing (a client that stopped opening its
/// window), a session reads at most `max_read_ahead_bytes` of file data
/// ahead; the other READs run once replies move again, and all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_ahead_of_a_stalled_client_are_bounded() {
    const LEN: u32 = 255 * 1024;
    const READS: u32 = 24;
    let sftp = SftpOptions {
        max_read_ahead_bytes: 1 << 20, // four READs of 255 KiB
        ..SftpOptions::default()
    };
    let gate = Arc::new(Semaphore::new(2)); // VERSION and HANDLE pass
    let mut c = Client::start_with(VfsOptions::default(), sftp, Some(gate.clone()));
    let size = (LEN * READS) as usize;
    std::fs::write(c.root.join("f"), vec![b'a'; size]).unwrap();
    c.init().await;
    let h = c.open(1, "/f", pflags::READ).await;
    c.read_in_a_row(&h, READS, LEN).await;
    // Let every READ that may run, run; then change the file in place:
    // READs served from now on see the new bytes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        use std::os::unix::fs::FileExt as _;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(c.root.join("f"))
            .unwrap();
        f.write_all_at(&vec![b'b'; size], 0).unwrap();
    }
    gate.add_permits(READS as usize);
    let mut early = 0;
    for _ in 0..READS {
        match c.recv().await {
            Some(Response::Data { data, .. }) => {
                assert_eq!(data.len(), LEN as usize);
                assert!(data.iter().all(|&b| b == data[0]), "one READ saw both");
                if data[0] == b'a' {
                    early += 1;
                }
            }
            other => panic!("want DATA, got {other:?}"),
        }
    }
    // One reply stuck in the transport plus what the budget allows.
    assert!(
        (1..=4).contains(&early),
        "{early} READs ran ahead of the client"
    );
    drop(h);
    c.finish().await.unwrap();
}

/// A client that half-closes while READs wait for read-ahead budget (its
/// window still shut) gets every reply once its window opens, and the
/// session then ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ends_after_reads_waiting_for_budget() {
    let sftp = SftpOptions {
        max_read_ahead_bytes: 64 << 10, // two READs of 32 KiB
        ..SftpOptions::default()
    };
    let gate = Arc::new(Semaphore::new(2)); // VERSION and HANDLE pass
    let mut c = Client::start_with(VfsOptions::default(), sftp, Some(gate.clone()));
    std::fs::write(c.root.join("f"), vec![b'a'; 1 << 20]).unwrap();
    c.init().await;
    let h = c.open(1, "/f", pflags::READ).await;
    c.read_in_a_row(&h, 8, 32768).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.tx = None;
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.add_permits(100);
    let mut ids = Vec::new();
    for _ in 0..8 {
        match c.recv().await {
            Some(Response::Data { id, data }) => {
                assert_eq!(data.len(), 32768);
                ids.push(id);
            }
            other => panic!("want DATA, got {other:?}"),
        }
    }
    ids.sort();
    assert_eq!(ids, (10..18).collect::<Vec<_>>());
    let end = tokio::time::timeout(Duration::from_secs(5), &mut c.task).await;
    assert!(end.is_ok(), "the session did not end");
}

/// Overlapping WRITEs queued behind each other on one handle when the input
/// ends: all run, and the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ends_after_writes_waiting_for_their_turn() {
    let mut c = Client::start(VfsOptions::default());
    c.init().await;
    let h = c.open(1, "/f", pflags::WRITE | pflags::CREAT).await;
    for i in 0..32u32 {
        c.send(Request::Write {
            id: 10 + i,
            handle: h.clone(),
            offset: 0,
            data: Bytes::from(vec![b'x'; 200 << 10]),
        })
        .await;
    }
    c.tx = None;
    for _ in 0..32 {
        assert_eq!(c.status().await.1, StatusCode::Ok);
    }
    let end = tokio::time::timeout(Duration::from_secs(5), &mut c.task).await;
    assert!(end.is_ok(), "the session did not end");
}

#[tokio::test]
async fn session_end_discards_unfinished_upload() {
    let mut c = Client::start(VfsOptions::default());
    c.init().await;
    std::fs::write(c.root.join("f"), b"old").unwrap();
    let h = c
        .open(1, "/f", pflags::WRITE | pflags::CREAT | pflags::TRUNC)
        .await;
    c.send(Request::Write {
        id: 2,
        handle: h,
        offset: 0,
        data: Bytes::from_static(b"new data"),
    })
    .await;
    assert_eq!(c.status().await, (2, StatusCode::Ok));
    let root = c.root.clone();
    let dir = std::mem::replace(&mut c._dir, tempfile::tempdir().unwrap());
    assert!(c.finish().await.is_ok());
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"old");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
    drop(dir);
}

#[tokio::test]
async fn read_only_refuses_writes_before_dispatch() {
    let mut c = Client::start(VfsOptions {
        read_only: true,
        ..Default::default()
    });
    c.init().await;
    c.send(Request::Mkdir {
        id: 1,
        path: Bytes::from_static(b"/d"),
        attrs: FileAttributes::default(),
    })
    .await;
    assert_eq!(c.status().await, (1, StatusCode::PermissionDenied));
    c.send(Request::Open {
        id: 2,
        path: Bytes::from_static(b"/f"),
        pflags: pflags::WRITE | pflags::CREAT,
        attrs: FileAttributes::default(),
    })
    .await;
    assert_eq!(c.status().await, (2, StatusCode::PermissionDenied));
}

#[tokio::test]
async fn readdir_pages_through_large_directories() {
    let mut c = Client::start(VfsOptions::default());
    c.init().await;
    for i in 0..1234 {
        std::fs::write(c.root.join(format!("f{i:05}")), b"").unwrap();
    }
    c.send(Request::Opendir {
        id: 1,
        path: Bytes::from_static(b"/"),
    })
    .await;
    let Some(Response::Handle { handle, .. }) = c.recv().await else {
        panic!("no handle")
    };
    let mut names = Vec::new();
    let mut id = 2;
    loop {
        c.send(Request::Readdir {
            id,
            handle: handle.clone(),
        })
        .await;
        match c.recv().await {
            Some(Response::Name { entries, .. }) => {
                assert!(entries.len() <= 100);
                names.extend(entries.into_iter().map(|e| e.filename));
            }
            Some(Response::Status {
                code: StatusCode::Eof,
                ..
            }) => break,
            other => panic!("{other:?}"),
        }
        id += 1;
    }
    assert_eq!(names.len(), 1234);
}

/// The ids of the next `n` replies, in the order they came.
async fn reply_ids(c: &mut Client, n: usize) -> Vec<u32> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let id = match c.recv().await.expect("a reply") {
            Response::Status { id, .. }
            | Response::Data { id, .. }
            | Response::Handle { id, .. }
            | Response::Attrs { id, .. } => id,
            other => panic!("unexpected reply {other:?}"),
        };
        ids.push(id);
    }
    ids
}

/// Writes of mixed sizes on one handle (the small ones finish in the
/// reader, the large ones in tasks, so they would overtake each other):
/// the replies come in request order, as paramiko's pipelined writer needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_on_one_handle_come_in_request_order() {
    let mut c = Client::start(VfsOptions::default());
    c.init().await;
    let h = c
        .open(1, "/f", pflags::WRITE | pflags::CREAT | pflags::TRUNC)
        .await;
    let mut offset = 0u64;
    let mut expected = Vec::new();
    for i in 0..200u32 {
        let len = if i % 3 == 0 { 200 << 10 } else { 4 << 10 };
        let data: Vec<u8> = (0..len).map(|k| (k as u32 ^ i) as u8).collect();
        expected.extend_from_slice(&data);
        c.send(Request::Write {
            id: 100 + i,
            handle: h.clone(),
            offset,
            data: Bytes::from(data),
        })
        .await;
        offset += len as u64;
    }
    c.send(Request::Close {
        id: 300,
        handle: h.clone(),
    })
    .await;
    let ids = reply_ids(&mut c, 201).await;
    assert_eq!(ids, (100..=300).collect::<Vec<_>>());
    assert_eq!(std::fs::read(c.root.join("f")).unwrap(), expected);

    // READs, large and small, the last ones past the end of the file: the
    // short and EOF replies never overtake the data before them (PuTTY
    // takes an early short READ for the end of the file).
    let h = c.open(2, "/f", pflags::READ).await;
    let size = expected.len() as u64;
    let mut sent = Vec::new();
    let mut at = 0u64;
    for i in 0..120u32 {
        let len: u32 = if i % 2 == 0 { 255 << 10 } else { 16 << 10 };
        c.send(Request::Read {
            id: 1000 + i,
            handle: h.clone(),
            offset: at,
            len,
        })
        .await;
        sent.push(1000 + i);
        at += len as u64;
    }
    assert!(at > size + (256 << 10), "some READs are past the end");
    let ids = reply_ids(&mut c, sent.len()).await;
    assert_eq!(ids, sent);
    c.finish().await.unwrap();
}

/// Requests on different handles and without one are not held up by a
/// handle's order: only each handle's own replies are ordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_handle_keeps_its_own_order() {
    let mut c = Client::start(VfsOptions::default());
    std::fs::write(c.root.join("a"), vec![1u8; 4 << 20]).unwrap();
    std::fs::write(c.root.join("b"), vec![2u8; 4 << 20]).unwrap();
    c.init().await;
    let a = c.open(1, "/a", pflags::READ).await;
    let b = c.open(2, "/b", pflags::READ).await;
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for i in 0..32u32 {
        let (h, ids, len) = if i % 2 == 0 {
            (&a, &mut on_a, 255 << 10)
        } else {
            (&b, &mut on_b, 8 << 10)
        };
        c.send(Request::Read {
            id: 100 + i,
            handle: h.clone(),
            offset: (i as u64 / 2) * (255 << 10),
            len,
        })
        .await;
        ids.push(100 + i);
        c.send(Request::Stat {
            id: 500 + i,
            path: Bytes::from_static(b"/a"),
        })
        .await;
    }
    let ids = reply_ids(&mut c, 64).await;
    let only = |want: &[u32]| {
        ids.iter()
            .copied()
            .filter(|i| want.contains(i))
            .collect::<Vec<_>>()
    };
    assert_eq!(only(&on_a), on_a);
    assert_eq!(only(&on_b), on_b);
    c.finish().await.unwrap();
}

/// With a read-ahead budget of two READs and 64 READs in flight on one
/// handle, budget goes to READs in arrival order: a later READ never holds
/// budget an earlier one waits for while its reply waits for the earlier
/// one's (which would hang the session). The client's window is shut
/// until every READ is queued, so tasks race for the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_budget_goes_in_arrival_order() {
    const LEN: u32 = 255 * 1024;
    for round in 0..10 {
        let sftp = SftpOptions {
            max_read_ahead_bytes: 2 * LEN as usize + 1024,
            ..SftpOptions::default()
        };
        let gate = Arc::new(Semaphore::new(2)); // VERSION and HANDLE pass
        let mut c = Client::start_with(VfsOptions::default(), sftp, Some(gate.clone()));
        std::fs::write(c.root.join("f"), vec![7u8; 64 * LEN as usize]).unwrap();
        c.init().await;
        let h = c.open(1, "/f", pflags::READ).await;
        c.read_in_a_row(&h, 64, LEN).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.add_permits(1000);
        let ids = reply_ids(&mut c, 64).await;
        assert_eq!(ids, (10..74).collect::<Vec<_>>(), "round {round}");
        c.finish().await.unwrap();
    }
}

/// A login that may not write (a key forced to `internal-sftp -R`): its
/// changes are refused before dispatch, and a refusal on a handle still
/// comes after the replies of the handle's earlier requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_login_refusals_keep_the_handles_order() {
    let sftp = SftpOptions {
        read_only: true,
        ..SftpOptions::default()
    };
    let mut c = Client::start_with(VfsOptions::default(), sftp, None);
    std::fs::write(c.root.join("f"), vec![3u8; 4 << 20]).unwrap();
    c.init().await;
    c.send(Request::Open {
        id: 1,
        path: Bytes::from_static(b"/new"),
        pflags: pflags::WRITE | pflags::CREAT,
        attrs: FileAttributes::default(),
    })
    .await;
    assert_eq!(c.status().await, (1, StatusCode::PermissionDenied));
    let h = c.open(2, "/f", pflags::READ).await;
    c.read_in_a_row(&h, 8, 255 << 10).await;
    c.send(Request::Write {
        id: 50,
        handle: h.clone(),
        offset: 0,
        data: Bytes::from_static(b"x"),
    })
    .await;
    let ids = reply_ids(&mut c, 9).await;
    assert_eq!(ids, [10, 11, 12, 13, 14, 15, 16, 17, 50]);
    assert!(!c.root.join("new").exists());
    assert_eq!(std::fs::read(c.root.join("f")).unwrap()[0], 3);
    c.finish().await.unwrap();
}

#[tokio::test]
async fn request_cost_covers_the_task() {
    let mut c = Client::start(VfsOptions::default());
    c.init().await;
    c.send(Request::Stat {
        id: 1,
        path: Bytes::from_static(b"missing"),
    })
    .await;
    assert_eq!(c.status().await.1, StatusCode::NoSuchFile);
    let task = LARGEST_TASK.load(std::sync::atomic::Ordering::Relaxed);
    // Besides its task, a request holds its sequencer entries (a few
    // map nodes) and up to MAX_WAITS + 1 references to wait on.
    let ordering = 512 + (sequencer::MAX_WAITS + 1) * std::mem::size_of::<usize>();
    assert!(task > 0);
    assert!(
        task + ordering <= REQUEST_COST,
        "a request task is {task} bytes; REQUEST_COST is {REQUEST_COST}"
    );
    c.finish().await.unwrap();
}

/// A client that stops reading and sends 20,000 FSTATs behind stalled
/// READs: the session's memory stays within its queue budget (it once
/// charged 1 KiB per request and cloned a reference per earlier request),
/// and when the input ends everything is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tiny_requests_is_bounded_by_the_queue_budget() {
    let gate = Arc::new(Semaphore::new(1)); // the window: one reply, then shut
    let sftp = SftpOptions {
        max_queued_bytes: 8 << 20,
        ..SftpOptions::default()
    };
    let mut c = Client::start_with(VfsOptions::default(), sftp, Some(gate.clone()));
    std::fs::write(c.root.join("f"), vec![7u8; 4 << 20]).unwrap();
    c.init().await;
    gate.add_permits(1);
    let h = c.open(1, "f", pflags::READ).await;
    c.read_in_a_row(&h, 64, 64 * 1024).await;
    // The reader takes requests until the budget is spent, then waits:
    // sends stop being taken at about budget / REQUEST_COST requests.
    let mut sent = 0u32;
    for i in 0..20_000u32 {
        let req = Request::Fstat {
            id: 100_000 + i,
            handle: h.clone(),
        };
        let mut out = Vec::new();
        req.encode(&mut out);
        let send = c.tx.as_ref().unwrap().send(Bytes::from(out));
        match tokio::time::timeout(Duration::from_millis(500), send).await {
            Ok(r) => r.unwrap(),
            Err(_) => break,
        }
        sent += 1;
    }
    let most = (8 << 20) / REQUEST_COST as u32 + 64 + 64; // + the channel's 64
    assert!(sent <= most, "{sent} requests taken with an 8 MiB budget");
    assert!(sent >= most / 2, "only {sent} requests taken");
    // The client goes (its connection with it): the session ends, whatever
    // it still holds.
    drop(c.rx);
    gate.close();
    c.tx = None;
    tokio::time::timeout(Duration::from_secs(10), c.task)
        .await
        .expect("session ends")
        .unwrap()
        .unwrap();
}
