//! The SFTP client protocol over one SSH channel: many requests in flight,
//! each answered through its own oneshot.
//!
//! A writer task owns the channel's write half and sends framed packets in
//! the order callers queued them (coalescing small ones). A reader task owns
//! the read half, reassembles packets with [`check_frame`] and completes
//! the waiter registered under each response's request id. When either
//! task ends, the session is closed: every waiter, present and future,
//! gets [`SftpErr::Lost`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use ferry_proto::{
    check_frame, ext_name, ExtendedRequest, FileAttributes, Frame, Limits, NameEntry, Request,
    Response, StatusCode, SFTP_VERSION,
};
use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Largest packet accepted from the server. Replies are bounded by what we
/// ask for (reads of at most [`MAX_IO_LEN`]); directory listings of odd
/// servers get generous room.
const MAX_INCOMING: u32 = 4 << 20;

/// Read and write length when the server announces no limits (what
/// OpenSSH's client and rclone use).
const DEFAULT_IO_LEN: u32 = 32 * 1024;

/// Upper bound on the read and write length, whatever the server says.
const MAX_IO_LEN: u32 = 1 << 20;

/// Small packets queued together are sent in one channel write up to this
/// size.
const COALESCE: usize = 64 * 1024;

/// Why a request failed, below the backend's error mapping.
#[derive(Debug, Clone)]
pub(crate) enum SftpErr {
    /// The server answered with a status other than OK.
    Status(StatusCode, String),
    /// The connection or channel is gone (or was never there).
    Lost(String),
    /// The server sent something we cannot use.
    Protocol(String),
}

impl SftpErr {
    /// The status code, if the server answered with one.
    pub(crate) fn code(&self) -> Option<StatusCode> {
        match self {
            SftpErr::Status(c, _) => Some(*c),
            _ => None,
        }
    }
}

impl std::fmt::Display for SftpErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SftpErr::Status(code, msg) if msg.is_empty() => {
                write!(f, "SFTP server: {code} (code {})", code.as_u32())
            }
            SftpErr::Status(code, msg) => {
                write!(f, "SFTP server: {msg} ({code}, code {})", code.as_u32())
            }
            SftpErr::Lost(why) => write!(f, "SFTP connection lost: {why}"),
            SftpErr::Protocol(why) => write!(f, "SFTP protocol error: {why}"),
        }
    }
}

impl std::error::Error for SftpErr {}

type Reply = Result<Response, SftpErr>;

/// The server's optional features, from `SSH_FXP_VERSION`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Extensions {
    pub posix_rename: bool,
    pub statvfs: bool,
    pub fsync: bool,
    pub hardlink: bool,
    pub lsetstat: bool,
    pub limits: bool,
    pub copy_data: bool,
}

impl Extensions {
    fn from_pairs(pairs: &[(Bytes, Bytes)]) -> Self {
        let mut e = Extensions::default();
        for (name, version) in pairs {
            let v = &version[..];
            match &name[..] {
                ext_name::POSIX_RENAME => e.posix_rename = v == b"1",
                ext_name::STATVFS => e.statvfs = v == b"2",
                ext_name::FSYNC => e.fsync = v == b"1",
                ext_name::HARDLINK => e.hardlink = v == b"1",
                ext_name::LSETSTAT => e.lsetstat = v == b"1",
                ext_name::LIMITS => e.limits = v == b"1",
                ext_name::COPY_DATA => e.copy_data = v == b"1",
                _ => {}
            }
        }
        e
    }
}

/// Waiters by request id, and whether the session is over.
#[derive(Default)]
struct Pending {
    closed: Option<String>,
    waiters: HashMap<u32, oneshot::Sender<Reply>>,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// End the session: fail every waiter and refuse new ones.
    fn close(&self, why: String) {
        let waiters = {
            let mut p = self.lock();
            if p.closed.is_none() {
                tracing::debug!("SFTP session closed: {why}");
                p.closed = Some(why.clone());
            }
            std::mem::take(&mut p.waiters)
        };
        for (_, w) in waiters {
            let _ = w.send(Err(SftpErr::Lost(why.clone())));
        }
    }

    fn complete(&self, id: u32, reply: Reply) {
        let w = self.lock().waiters.remove(&id);
        match w {
            Some(w) => {
                let _ = w.send(reply);
            }
            None => tracing::debug!("SFTP reply to unknown request id {id} ignored"),
        }
    }
}

/// Removes a waiter whose caller went away before the reply came.
struct WaiterGuard<'a> {
    shared: &'a Shared,
    id: u32,
    armed: bool,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.lock().waiters.remove(&self.id);
        }
    }
}

/// One SFTP session (version 3) on one SSH channel.
pub(crate) struct Session {
    tx: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
    next_id: AtomicU32,
    permits: Semaphore,
    /// The server's extensions.
    pub ext: Extensions,
    /// Largest `len` of one READ.
    pub max_read: u32,
    /// Largest data of one WRITE.
    pub max_write: u32,
}

impl Session {
    /// Start the `sftp` subsystem on `channel`, exchange INIT/VERSION and
    /// ask for the server's limits. At most `concurrency` requests are in
    /// flight at once.
    pub(crate) async fn start(
        mut channel: Channel<Msg>,
        concurrency: usize,
    ) -> Result<Session, SftpErr> {
        let lost = |e: russh::Error| SftpErr::Lost(e.to_string());
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(lost)?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) => {
                    return Err(SftpErr::Protocol(
                        "the server refused the sftp subsystem".into(),
                    ))
                }
                Some(ChannelMsg::Close) | Some(ChannelMsg::Eof) | None => {
                    return Err(SftpErr::Lost(
                        "channel closed before the sftp subsystem started".into(),
                    ))
                }
                Some(_) => {}
            }
        }
        let (rd, wr) = channel.split();
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(256);
        let (version_tx, version_rx) = oneshot::channel();
        tokio::spawn(reader(rd, shared.clone(), version_tx));
        tokio::spawn(writer(wr, rx, shared.clone()));

        let mut init = Vec::new();
        Request::Init {
            version: SFTP_VERSION,
            extensions: Vec::new(),
        }
        .encode(&mut init);
        tx.send(init)
            .await
            .map_err(|_| SftpErr::Lost("channel closed".into()))?;
        let (version, extensions) = match version_rx.await {
            Ok(Response::Version {
                version,
                extensions,
            }) => (version, extensions),
            Ok(_) => return Err(SftpErr::Protocol("no SSH_FXP_VERSION".into())),
            Err(_) => {
                let why = shared.lock().closed.clone().unwrap_or_default();
                return Err(SftpErr::Lost(format!(
                    "the server closed the sftp subsystem before SSH_FXP_VERSION: {why}"
                )));
            }
        };
        if version < SFTP_VERSION {
            return Err(SftpErr::Protocol(format!(
                "the server speaks SFTP version {version}, we need {SFTP_VERSION}"
            )));
        }
        let ext = Extensions::from_pairs(&extensions);
        tracing::debug!(
            "SFTP version {version}, extensions: {:?}",
            extensions
                .iter()
                .map(|(n, v)| format!("{}={}", n.escape_ascii(), v.escape_ascii()))
                .collect::<Vec<_>>()
        );
        let mut session = Session {
            tx,
            shared,
            next_id: AtomicU32::new(1),
            permits: Semaphore::new(concurrency.max(1)),
            ext,
            max_read: DEFAULT_IO_LEN,
            max_write: DEFAULT_IO_LEN,
        };
        if ext.limits {
            let reply = session
                .call(|id| Request::Extended {
                    id,
                    request: ExtendedRequest::Limits,
                })
                .await;
            match reply.and_then(ext_reply) {
                Ok(data) => match Limits::decode(&data) {
                    Ok(l) => {
                        let clamp = |v: u64| {
                            if v == 0 {
                                DEFAULT_IO_LEN
                            } else {
                                u32::try_from(v).unwrap_or(u32::MAX).min(MAX_IO_LEN)
                            }
                        };
                        session.max_read = clamp(l.max_read_len);
                        session.max_write = clamp(l.max_write_len);
                        // A WRITE packet is 4+1+4+(4+handle)+8+(4+data):
                        // leave room for a 256-byte handle.
                        if l.max_packet_len > 0 {
                            let room = l.max_packet_len.saturating_sub(512);
                            session.max_write = session
                                .max_write
                                .min(u32::try_from(room).unwrap_or(u32::MAX))
                                .max(1024);
                        }
                        tracing::debug!(
                            "SFTP limits: read {} write {}",
                            session.max_read,
                            session.max_write
                        );
                    }
                    Err(e) => tracing::debug!("bad limits@openssh.com reply: {e}"),
                },
                Err(e) => tracing::debug!("limits@openssh.com failed: {e}"),
            }
        }
        Ok(session)
    }

    /// Is the session over?
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Close the session (the channel closes when the writer task sees the
    /// queue end).
    pub(crate) fn close(&self, why: &str) {
        self.shared.close(why.to_string());
    }

    /// Send the request `build(id)` and wait for its reply.
    pub(crate) async fn call(&self, build: impl FnOnce(u32) -> Request) -> Reply {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SftpErr::Lost("session closed".into()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.shared.lock();
            if let Some(why) = &p.closed {
                return Err(SftpErr::Lost(why.clone()));
            }
            p.waiters.insert(id, tx);
        }
        let mut guard = WaiterGuard {
            shared: &self.shared,
            id,
            armed: true,
        };
        let mut out = Vec::new();
        build(id).encode(&mut out);
        if self.tx.send(out).await.is_err() {
            return Err(SftpErr::Lost("the SFTP writer has stopped".into()));
        }
        let reply = rx
            .await
            .unwrap_or_else(|_| Err(SftpErr::Lost("session closed".into())));
        guard.armed = false;
        reply
    }
}

async fn reader(
    mut rd: russh::ChannelReadHalf,
    shared: Arc<Shared>,
    version_tx: oneshot::Sender<Response>,
) {
    let mut version_tx = Some(version_tx);
    let mut buf = BytesMut::new();
    let why = 'outer: loop {
        match rd.wait().await {
            Some(ChannelMsg::Data { data }) => {
                buf.extend_from_slice(&data);
                loop {
                    match check_frame(&buf, MAX_INCOMING) {
                        Ok(Frame::Incomplete) => break,
                        Ok(Frame::Complete(n)) => {
                            let packet = buf.split_to(n).freeze();
                            if let Err(why) = dispatch(&shared, packet.slice(4..), &mut version_tx)
                            {
                                break 'outer why;
                            }
                        }
                        Err(e) => break 'outer format!("bad packet from the server: {e}"),
                    }
                }
            }
            Some(ChannelMsg::ExtendedData { data, .. }) => {
                tracing::debug!("sftp subsystem stderr: {}", data.escape_ascii());
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                tracing::debug!("sftp subsystem exited with status {exit_status}");
            }
            Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                break "the server closed the channel".to_string();
            }
            Some(_) => {}
        }
    };
    shared.close(why);
}

/// Hand one decoded packet to its waiter. An error ends the session.
fn dispatch(
    shared: &Shared,
    payload: Bytes,
    version_tx: &mut Option<oneshot::Sender<Response>>,
) -> Result<(), String> {
    match Response::decode(payload) {
        Ok(r @ Response::Version { .. }) => match version_tx.take() {
            Some(tx) => {
                let _ = tx.send(r);
                Ok(())
            }
            None => Err("a second SSH_FXP_VERSION".into()),
        },
        Ok(r) => {
            if let Some(id) = r.id() {
                shared.complete(id, Ok(r));
            }
            Ok(())
        }
        Err(e) => match e.id {
            Some(id) => {
                shared.complete(id, Err(SftpErr::Protocol(e.to_string())));
                Ok(())
            }
            None => Err(e.to_string()),
        },
    }
}

async fn writer(
    wr: russh::ChannelWriteHalf<Msg>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    while let Some(mut packet) = rx.recv().await {
        while packet.len() < COALESCE {
            match rx.try_recv() {
                Ok(more) => packet.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = wr.data_bytes(Bytes::from(packet)).await {
            shared.close(format!("write to the channel failed: {e}"));
            return;
        }
    }
    // Every sender is gone: the session was dropped.
    shared.close("session dropped".into());
    let _ = wr.eof().await;
    let _ = wr.close().await;
}

/// Expect `SSH_FX_OK`.
pub(crate) fn status(r: Response) -> Result<(), SftpErr> {
    match r {
        Response::Status {
            code: StatusCode::Ok,
            ..
        } => Ok(()),
        other => Err(unexpected(other, "STATUS")),
    }
}

/// Expect `SSH_FXP_ATTRS`.
pub(crate) fn attrs(r: Response) -> Result<FileAttributes, SftpErr> {
    match r {
        Response::Attrs { attrs, .. } => Ok(attrs),
        other => Err(unexpected(other, "ATTRS")),
    }
}

/// Expect `SSH_FXP_HANDLE`.
pub(crate) fn handle(r: Response) -> Result<Bytes, SftpErr> {
    match r {
        Response::Handle { handle, .. } => Ok(handle),
        other => Err(unexpected(other, "HANDLE")),
    }
}

/// Expect `SSH_FXP_NAME`; `SSH_FX_EOF` gives `None`.
pub(crate) fn names(r: Response) -> Result<Option<Vec<NameEntry>>, SftpErr> {
    match r {
        Response::Name { entries, .. } => Ok(Some(entries)),
        Response::Status {
            code: StatusCode::Eof,
            ..
        } => Ok(None),
        other => Err(unexpected(other, "NAME")),
    }
}

/// Expect `SSH_FXP_DATA`; `SSH_FX_EOF` gives `None`.
pub(crate) fn data(r: Response) -> Result<Option<Bytes>, SftpErr> {
    match r {
        Response::Data { data, .. } => Ok(Some(data)),
        Response::Status {
            code: StatusCode::Eof,
            ..
        } => Ok(None),
        other => Err(unexpected(other, "DATA")),
    }
}

/// Expect `SSH_FXP_EXTENDED_REPLY`.
pub(crate) fn ext_reply(r: Response) -> Result<Bytes, SftpErr> {
    match r {
        Response::ExtendedReply { data, .. } => Ok(data),
        other => Err(unexpected(other, "EXTENDED_REPLY")),
    }
}

/// A status where something else was expected becomes its error; any other
/// packet is a protocol error.
fn unexpected(r: Response, wanted: &str) -> SftpErr {
    match r {
        Response::Status { code, message, .. } => SftpErr::Status(code, message),
        other => SftpErr::Protocol(format!("expected {wanted}, got {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_need_the_right_version() {
        let p = |n: &'static [u8], v: &'static [u8]| (Bytes::from_static(n), Bytes::from_static(v));
        let e = Extensions::from_pairs(&[
            p(b"posix-rename@openssh.com", b"1"),
            p(b"statvfs@openssh.com", b"2"),
            p(b"hardlink@openssh.com", b"2"),
            p(b"copy-data", b"1"),
            p(b"x@y", b"1"),
        ]);
        assert!(e.posix_rename && e.statvfs && e.copy_data);
        assert!(!e.hardlink && !e.fsync && !e.limits);
    }

    #[test]
    fn unexpected_status_is_its_error() {
        let r = Response::Status {
            id: 1,
            code: StatusCode::NoSuchFile,
            message: "No such file".into(),
        };
        let e = attrs(r).unwrap_err();
        assert_eq!(e.code(), Some(StatusCode::NoSuchFile));
        assert!(e.to_string().contains("No such file"), "{e}");
        let r = Response::Status {
            id: 1,
            code: StatusCode::Eof,
            message: String::new(),
        };
        assert_eq!(data(r).unwrap(), None);
    }
}
