//! The SFTP session: framing, the INIT handshake, concurrent dispatch and
//! the response writer.
//!
//! Three parts run per session:
//! - the **reader** (this module's [`serve`] loop) keeps draining the
//!   transport, so the SSH layer never blocks on us and window adjustments
//!   keep flowing. It frames packets, decodes them, registers each request
//!   in the session's [`sequencer::Sequencer`] in arrival order, and spawns
//!   one task per request;
//! - the **request tasks** run concurrently, at most
//!   [`SftpOptions::max_in_flight`] at once, each one small function in
//!   [`ops`];
//! - the **writer** sends replies as they come, batching small ones into
//!   one channel write; the replies of one handle come in the order its
//!   requests arrived ([`order`]).
//!
//! Memory is bounded: a request holds a share of
//! [`SftpOptions::max_queued_bytes`] from the moment it is read until its
//! reply has been handed to the transport, charged by what it really holds
//! (its packet, its task and ordering state, [`REQUEST_COST`], and the
//! largest reply it can get: a READDIR page); only a client with more than
//! that outstanding is slowed down (the reader waits). File data read for
//! replies is bounded separately by [`SftpOptions::max_read_ahead_bytes`]:
//! a READ waits in its task (never in the reader) until the data of earlier
//! READs has gone to the transport, which takes it only as the client's
//! channel window allows.

pub mod convert;
pub mod handles;
mod ops;
pub mod order;
pub mod sequencer;

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ferry_proto::{check_frame, Frame, Request, Response, StatusCode};
use ferry_vfs::Vfs;
use futures::FutureExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use ferry_vfs::backend::RelPath;
use handles::{HandleEntry, HandleTable};
use order::Turn;
use sequencer::{Access, Op, Sequencer};

/// Limits and settings of SFTP sessions.
#[derive(Debug, Clone)]
pub struct SftpOptions {
    /// Largest packet accepted (the length field).
    pub max_packet: u32,
    /// Largest READ served (longer ones are answered short).
    pub max_read: u32,
    /// Largest WRITE advertised.
    pub max_write: u32,
    /// Open handles per session.
    pub max_handles: usize,
    /// Requests served at once per session.
    pub max_in_flight: usize,
    /// Bytes of requests and replies held per session before the reader
    /// waits.
    pub max_queued_bytes: usize,
    /// Bytes of file data read ahead of the client per session: READs
    /// beyond it wait until earlier replies are handed to the transport.
    /// More than the client's channel window (2 MiB for OpenSSH) only
    /// costs memory.
    pub max_read_ahead_bytes: usize,
    /// Entries per READDIR reply.
    pub readdir_page: usize,
    /// The user name, for logs.
    pub user: String,
    /// The client's address, for logs (none for `--stdio`).
    pub peer: Option<std::net::SocketAddr>,
    /// File bytes moved, for the logout line (shared by the connection's
    /// sessions).
    pub traffic: Arc<crate::access::Traffic>,
    /// The server's transfer statistics (`--stats`), if kept.
    pub stats: Option<Arc<ferry_stats::Stats>>,
    /// Where requests, bytes and open files are counted.
    pub metrics: Option<Arc<ferry_metrics::Metrics>>,
    /// The login's own bandwidth limit (an auth proxy's `_bwlimit`), shared
    /// by the user's connections.
    pub user_bwlimit: Option<Arc<ferry_layers::BwLimiter>>,
    /// Refuse every change in this session (the login's policy; a
    /// read-only VFS refuses them for everyone).
    pub read_only: bool,
    /// The connection's activity, kept up while requests are served (for
    /// the idle timeout).
    pub activity: Option<Arc<crate::activity::Activity>>,
    /// Files open in every session of the server, against the server's
    /// limit (shared: sessions clone these options).
    pub open_files: Arc<handles::OpenFiles>,
}

impl Default for SftpOptions {
    fn default() -> Self {
        SftpOptions {
            max_packet: ferry_proto::DEFAULT_MAX_PACKET,
            max_read: 255 * 1024,
            max_write: 255 * 1024,
            max_handles: 1024,
            max_in_flight: 128,
            max_queued_bytes: 64 << 20,
            max_read_ahead_bytes: 2 << 20,
            readdir_page: 100,
            user: String::new(),
            read_only: false,
            activity: None,
            open_files: handles::OpenFiles::new(usize::MAX),
            peer: None,
            traffic: Arc::default(),
            stats: None,
            metrics: None,
            user_bwlimit: None,
        }
    }
}

/// Where a session's bytes come from.
pub trait Input: Send {
    /// The next chunk; `None` at end of input.
    fn recv(&mut self) -> impl Future<Output = Option<Bytes>> + Send;

    /// After the end of input: resolves once the client can no longer
    /// receive replies either (it closed the channel or its connection,
    /// not only its sending side). Requests still running for it stop.
    fn hung_up(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// Where a session's replies go.
pub trait Output: Send + 'static {
    /// Send one chunk (one or more whole packets).
    fn send(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;
}

/// Why a session ended other than by the client closing it.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The framing was broken: nothing after it can be trusted.
    #[error("bad packet framing: {0}")]
    Framing(#[from] ferry_proto::FrameError),
    /// A request that cannot be answered arrived (before INIT, a second
    /// INIT, or undecodable without an id).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The client's replies can no longer be sent (it went away); not
    /// returned by [`serve`], which ends such a session as a closed one.
    #[error("the client is gone")]
    Gone,
}

/// Units of [`SftpOptions::max_read_ahead_bytes`] (KiB, so a semaphore
/// count stays small).
const QUEUE_UNIT: usize = 1024;

/// What a request holds besides its packet while it is queued, waiting or
/// running: its task (the largest request future, measured by the test
/// `request_cost_covers_the_task`), its sequencer entries and waits, its
/// reply turn and its log fields. Charged to the queue budget with the
/// packet, so a flood of tiny requests is bounded by what it costs.
pub const REQUEST_COST: usize = 4096;

/// One reply on its way to the writer, with the budgets it holds.
struct Outgoing {
    data: Vec<u8>,
    _queued: OwnedSemaphorePermit,
    _read_ahead: Option<OwnedSemaphorePermit>,
}

/// The shared state of one session.
pub(crate) struct Ctx {
    pub(crate) vfs: Vfs,
    pub(crate) handles: HandleTable,
    pub(crate) opts: Arc<SftpOptions>,
    pub(crate) seq: Arc<Sequencer>,
    /// Set once replies can no longer be sent: work in progress for the
    /// client (a long copy-data) stops, nothing new is started.
    pub(crate) gone: Arc<Gone>,
}

/// A flag raised once, with a way to wait for it.
#[derive(Default)]
pub(crate) struct Gone {
    flag: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Gone {
    pub(crate) fn set(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves once the flag is raised.
    pub(crate) async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the check: a `set` in between still wakes it.
        notified.as_mut().enable();
        if !self.is_set() {
            notified.await;
        }
    }
}

impl Ctx {
    /// Are changes refused in this session?
    pub(crate) fn read_only(&self) -> bool {
        self.opts.read_only || self.vfs.is_read_only()
    }
}

enum State {
    AwaitInit,
    Ready,
}

/// Serve one SFTP session over `input`/`output` until the client is done.
/// Open files are closed (uploads in progress discarded) at the end.
pub async fn serve<I: Input, O: Output>(
    vfs: Vfs,
    opts: Arc<SftpOptions>,
    mut input: I,
    output: O,
) -> Result<(), SessionError> {
    let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
    let gone = Arc::new(Gone::default());
    let writer = tokio::spawn(write_loop(output, rx, gone.clone()));
    let ctx = Arc::new(Ctx {
        handles: HandleTable::new(opts.max_handles)
            .counted(opts.traffic.clone(), opts.metrics.clone()),
        vfs: vfs.session(),
        opts: opts.clone(),
        seq: Arc::new(Sequencer::default()),
        gone,
    });
    let in_flight = Arc::new(Semaphore::new(opts.max_in_flight));
    // The queue budget counts bytes.
    let queue_units = opts.max_queued_bytes.clamp(REQUEST_COST, u32::MAX as usize);
    let queue = Arc::new(Semaphore::new(queue_units));
    let read_ahead_units = (opts.max_read_ahead_bytes / QUEUE_UNIT).max(1);
    let requests = Arc::new(Semaphore::new(ALL_REQUESTS as usize));
    let mut reader = Reader {
        requests: requests.clone(),
        ctx: ctx.clone(),
        tx,
        in_flight: in_flight.clone(),
        queue: queue.clone(),
        queue_units,
        read_ahead: Arc::new(Semaphore::new(read_ahead_units)),
        read_ahead_units,
        state: State::AwaitInit,
    };

    let mut buf = BytesMut::new();
    let result = 'outer: loop {
        let chunk = tokio::select! {
            biased;
            c = input.recv() => c,
            _ = ctx.gone.wait() => break Err(SessionError::Gone),
        };
        let Some(chunk) = chunk else {
            break Ok(());
        };
        // Whole packets in a fresh chunk are sliced out without a copy.
        let mut chunk = chunk;
        if buf.is_empty() {
            loop {
                match check_frame(&chunk, opts.max_packet) {
                    Ok(Frame::Complete(n)) => {
                        let packet = chunk.split_to(n);
                        if let Err(e) = reader.packet(packet.slice(4..)).await {
                            break 'outer Err(e);
                        }
                    }
                    Ok(Frame::Incomplete) => break,
                    Err(e) => break 'outer Err(e.into()),
                }
            }
        }
        buf.extend_from_slice(&chunk);
        loop {
            match check_frame(&buf, opts.max_packet) {
                Ok(Frame::Complete(n)) => {
                    let packet = buf.split_to(n).freeze();
                    if let Err(e) = reader.packet(packet.slice(4..)).await {
                        break 'outer Err(e);
                    }
                }
                Ok(Frame::Incomplete) => break,
                Err(e) => break 'outer Err(e.into()),
            }
        }
    };

    // Past a client's end of input, its replies are still sent (it may
    // only have half-closed) until it hangs up. Otherwise nothing more is
    // read: the transport is not kept waiting on a session that takes no
    // more input.
    let mut input = matches!(result, Ok(())).then_some(input);
    // A client that went away ended its session as closing it would.
    let result = match result {
        Err(SessionError::Gone) => Ok(()),
        r => r,
    };
    // Let every request finish, including those still waiting for a
    // ticket, a slot or read-ahead budget (the writer keeps releasing
    // budget, and drains once the client is gone), then drop what is left
    // open.
    let all = requests.acquire_many(ALL_REQUESTS);
    tokio::pin!(all);
    let _all = match input.as_mut() {
        Some(input) => tokio::select! {
            a = &mut all => a.ok(),
            _ = input.hung_up() => {
                ctx.gone.set();
                all.await.ok()
            }
        },
        None => all.await.ok(),
    };
    for entry in ctx.handles.drain() {
        if let Some(file) = entry.file() {
            file.abort().await;
            let why = "aborted: the session ended before CLOSE";
            ops::log_transfer(&ctx, &entry, why);
            if let Some(t) = &entry.transfer {
                t.finish(Err(why.to_string()));
            }
        }
    }
    drop(reader);
    let _ = writer.await;
    result
}

struct Reader {
    ctx: Arc<Ctx>,
    tx: mpsc::UnboundedSender<Outgoing>,
    in_flight: Arc<Semaphore>,
    queue: Arc<Semaphore>,
    queue_units: usize,
    read_ahead: Arc<Semaphore>,
    read_ahead_units: usize,
    /// One permit per request not yet finished, whatever it waits for.
    requests: Arc<Semaphore>,
    state: State,
}

impl Reader {
    async fn packet(&mut self, payload: Bytes) -> Result<(), SessionError> {
        // A client that is gone (its replies cannot be sent) is not served
        // what it sent before it went.
        if self.ctx.gone.is_set() {
            return Err(SessionError::Gone);
        }
        // Give the other tasks of this worker their turn now and then: a
        // client's backlog of tiny requests must not starve everyone else.
        tokio::task::consume_budget().await;
        let len = payload.len();
        let decoded = Request::decode(payload);
        let reply = match &decoded {
            Ok(Request::Readdir { .. }) => ops::READDIR_BYTES,
            _ => 0,
        };
        let cost = (len + REQUEST_COST + reply).min(self.queue_units) as u32;
        // (The writer releases budget until the session ends, also once
        // the client is gone.)
        let Ok(queued) = self.queue.clone().acquire_many_owned(cost).await else {
            return Ok(());
        };
        if self.ctx.gone.is_set() {
            return Err(SessionError::Gone);
        }
        match self.state {
            State::AwaitInit => match decoded {
                Ok(Request::Init { version, .. }) => {
                    tracing::debug!(client_version = version, "sftp: INIT");
                    self.state = State::Ready;
                    let reply = ops::version_reply(&self.ctx);
                    self.send(reply, queued);
                    Ok(())
                }
                Ok(other) => Err(SessionError::Protocol(format!(
                    "{} before INIT",
                    other.info().name
                ))),
                Err(e) => Err(SessionError::Protocol(format!("before INIT: {e}"))),
            },
            State::Ready => match decoded {
                Ok(Request::Init { .. }) => Err(SessionError::Protocol("second INIT".into())),
                Ok(req) => {
                    self.dispatch(req, queued);
                    Ok(())
                }
                Err(e) => match e.id {
                    Some(id) => {
                        tracing::debug!("sftp: {e}");
                        let code = e.status_code();
                        let msg = if code == StatusCode::OpUnsupported {
                            "Operation unsupported".to_string()
                        } else {
                            format!("Bad message: {}", e.kind)
                        };
                        self.send(ops::status(id, code, &msg), queued);
                        Ok(())
                    }
                    None => Err(SessionError::Protocol(e.to_string())),
                },
            },
        }
    }

    fn send(&self, data: Vec<u8>, queued: OwnedSemaphorePermit) {
        let _ = self.tx.send(Outgoing {
            data,
            _queued: queued,
            _read_ahead: None,
        });
    }

    /// Register the request in arrival order (its sequencer ticket, its
    /// reply turn, its read-ahead claim), then run it: first right here,
    /// then, if it has to wait, in a task of its own.
    fn dispatch(&mut self, req: Request, queued: OwnedSemaphorePermit) {
        let id = req.id().unwrap_or(0);
        let Ok((op, entries)) = self.op(&req) else {
            let reply = ops::status(id, StatusCode::Failure, "Invalid handle");
            ops::log(&self.ctx, &req, &reply, &[]);
            self.send(reply, queued);
            return;
        };
        // Replies on a handle leave in the order its requests arrived.
        let mut turn = Turn::new(entries.iter().map(|e| &e.replies));
        let refusal = (self.ctx.read_only() && req.writes())
            .then(|| ops::status(id, StatusCode::PermissionDenied, "Read-only server"));
        let mut ticket = match &refusal {
            None => op.map(|op| self.ctx.seq.register(op)),
            Some(_) => None,
        };
        // File data a READ will hold until its reply reaches the transport,
        // claimed now so that claims are granted in arrival order: a later
        // READ must never hold budget that an earlier one waits for while
        // its own reply waits for the earlier one's turn.
        let read_ahead = match (&req, &refusal) {
            (Request::Read { len, .. }, None) => {
                let bytes = (*len).min(self.ctx.opts.max_read) as usize;
                let units = (bytes / QUEUE_UNIT + 1).min(self.read_ahead_units) as u32;
                Some(Claim::queue(self.read_ahead.clone(), units))
            }
            _ => None,
        };
        let ctx = self.ctx.clone();
        let tx = self.tx.clone();
        let in_flight = self.in_flight.clone();
        // Requests that move little data are first tried right here: most
        // finish without waiting (metadata from the cache or a local disk),
        // and a task of their own would cost more than they do. One that
        // has to wait goes on in its own task (its first poll registered a
        // no-op waker; the task's first poll registers the real one).
        let try_here = match &req {
            Request::Read { len, .. } => *len as usize <= INLINE_DATA,
            Request::Write { data, .. } => data.len() <= INLINE_DATA,
            _ => true,
        };
        let alive = self.requests.clone().try_acquire_owned().ok();
        let mut task = Box::pin(async move {
            let _alive = alive;
            let mut read_ahead_permit = None;
            let reply = match refusal {
                Some(reply) => reply,
                None => {
                    // Wait for earlier conflicting requests before taking a
                    // slot, so slots are only held by requests that can run.
                    if let Some(t) = ticket.as_mut() {
                        t.wait().await;
                    }
                    if let Some(claim) = read_ahead {
                        match claim.granted().await {
                            Some(p) => read_ahead_permit = Some(p),
                            None => return,
                        }
                    }
                    let Ok(slot) = in_flight.acquire_owned().await else {
                        return;
                    };
                    // The server's own work keeps the connection active;
                    // waiting for the client to read its replies does not.
                    let busy = ctx.opts.activity.as_ref().map(|a| a.busy());
                    // A panic fails this request only, and it still gets a
                    // reply (its client may be waiting for exactly that one).
                    let run = AssertUnwindSafe(ops::run(&ctx, &req, &entries));
                    let reply = run.catch_unwind().await.unwrap_or_else(|_| {
                        tracing::error!("sftp: request {id} panicked");
                        ops::status(id, StatusCode::Failure, "Internal server error")
                    });
                    drop(busy);
                    drop(slot);
                    drop(ticket);
                    reply
                }
            };
            ops::log(&ctx, &req, &reply, &entries);
            turn.wait().await;
            let _ = tx.send(Outgoing {
                data: reply,
                _queued: queued,
                _read_ahead: read_ahead_permit,
            });
            // The turn ends here, after the reply is queued for the writer.
        });
        #[cfg(test)]
        LARGEST_TASK.fetch_max(
            std::mem::size_of_val(&*task),
            std::sync::atomic::Ordering::Relaxed,
        );
        if try_here {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            // A panic ends this request only, as it would in its own task.
            let polled = std::panic::catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(&mut cx)));
            match polled {
                Ok(std::task::Poll::Ready(())) => return,
                Ok(std::task::Poll::Pending) => {}
                Err(_) => {
                    tracing::error!("sftp: request {id} panicked");
                    return;
                }
            }
        }
        tokio::spawn(task);
    }

    /// How a request is ordered, and the handles it works on. `Err` for a
    /// handle that is not open.
    #[allow(clippy::type_complexity)]
    fn op(&self, req: &Request) -> Result<(Option<Op>, Vec<Arc<HandleEntry>>), ()> {
        use ferry_proto::ExtendedRequest as X;
        let handles = &self.ctx.handles;
        let on_handle = |h: &Bytes, access: Access, mutates: bool, remove: bool| {
            let entry = if remove {
                handles.remove(h)
            } else {
                handles.get(h)
            }
            .ok_or(())?;
            let access = match (access, entry.file()) {
                // Appends land at the end in the order they were sent.
                (Access::Write(..), Some(f)) if f.flags().append => Access::Barrier,
                _ => access,
            };
            let op = Op {
                handle: Some(entry.clone()),
                other_handle: None,
                paths: Vec::new(),
                access,
                mutates,
            };
            Ok((Some(op), vec![entry]))
        };
        let on_paths = |raw: &[&Bytes], mutates: bool| {
            let paths = raw
                .iter()
                .filter_map(|p| RelPath::resolve(&RelPath::root(), p).ok())
                .collect();
            let op = Op {
                handle: None,
                other_handle: None,
                paths,
                access: Access::Barrier,
                mutates,
            };
            Ok((Some(op), Vec::new()))
        };
        let writes = req.writes();
        match req {
            Request::Close { handle, .. } => on_handle(handle, Access::Barrier, true, true),
            Request::Read {
                handle,
                offset,
                len,
                ..
            } => {
                // What is read is at most max_read, however much is asked.
                let len = (*len).min(self.ctx.opts.max_read) as u64;
                on_handle(handle, Access::Read(*offset, len), false, false)
            }
            Request::Write {
                handle,
                offset,
                data,
                ..
            } => on_handle(
                handle,
                Access::Write(*offset, data.len() as u64),
                true,
                false,
            ),
            Request::Fstat { handle, .. } | Request::Readdir { handle, .. } => {
                on_handle(handle, Access::Barrier, false, false)
            }
            Request::Fsetstat { handle, .. } => on_handle(handle, Access::Barrier, true, false),
            Request::Open { path, .. }
            | Request::Lstat { path, .. }
            | Request::Stat { path, .. }
            | Request::Setstat { path, .. }
            | Request::Opendir { path, .. }
            | Request::Remove { path, .. }
            | Request::Mkdir { path, .. }
            | Request::Rmdir { path, .. }
            | Request::Readlink { path, .. } => on_paths(&[path], writes),
            Request::Rename { old, new, .. } => on_paths(&[old, new], true),
            Request::Symlink { linkpath, .. } => on_paths(&[linkpath], true),
            Request::Extended { request, .. } => match request {
                X::Fsync { handle } => on_handle(handle, Access::Barrier, true, false),
                X::Fstatvfs { handle } => on_handle(handle, Access::Barrier, false, false),
                X::PosixRename { old, new } | X::Hardlink { old, new } => {
                    on_paths(&[old, new], true)
                }
                X::Lsetstat { path, .. } => on_paths(&[path], true),
                X::Statvfs { path } => on_paths(&[path], false),
                X::CopyData {
                    read_handle,
                    write_handle,
                    ..
                } => {
                    let r = handles.get(read_handle).ok_or(())?;
                    let w = handles.get(write_handle).ok_or(())?;
                    let same = Arc::ptr_eq(&r, &w);
                    let op = Op {
                        handle: Some(r.clone()),
                        other_handle: (!same).then(|| w.clone()),
                        paths: Vec::new(),
                        access: Access::Barrier,
                        mutates: true,
                    };
                    let entries = if same { vec![r] } else { vec![r, w] };
                    Ok((Some(op), entries))
                }
                _ => Ok((None, Vec::new())),
            },
            _ => Ok((None, Vec::new())),
        }
    }
}

/// A READ's claim on the session's read-ahead budget, queued when it is
/// made: tokio's semaphore is fair, so claims are granted in the order
/// they were queued, whatever order their tasks run in.
enum Claim {
    Granted(OwnedSemaphorePermit),
    Queued(Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>),
    Closed,
}

impl Claim {
    fn queue(budget: Arc<Semaphore>, units: u32) -> Claim {
        // Free budget is taken at once (the semaphore holds free permits
        // only while nobody waits, so this never jumps the queue).
        if let Ok(p) = budget.clone().try_acquire_many_owned(units) {
            return Claim::Granted(p);
        }
        let mut wait = Box::pin(async move { budget.acquire_many_owned(units).await.ok() });
        // One poll puts the claim in the semaphore's queue now; the task
        // polls it again later with its own waker.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match wait.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Some(p)) => Claim::Granted(p),
            std::task::Poll::Ready(None) => Claim::Closed,
            std::task::Poll::Pending => Claim::Queued(wait),
        }
    }

    /// The budget, once granted (`None` if the budget was closed).
    async fn granted(self) -> Option<OwnedSemaphorePermit> {
        match self {
            Claim::Granted(p) => Some(p),
            Claim::Queued(wait) => wait.await,
            Claim::Closed => None,
        }
    }
}

/// The largest request task seen (for the test of [`REQUEST_COST`]).
#[cfg(test)]
static LARGEST_TASK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Permits of the semaphore counting unfinished requests: more than can
/// ever be outstanding (each holds queue budget too).
const ALL_REQUESTS: u32 = 1 << 30;

/// READs and WRITEs of at most this many bytes are first tried in the
/// reader (see [`Reader::dispatch`]).
const INLINE_DATA: usize = 64 * 1024;

/// Replies smaller than this are gathered into one transport write.
const SMALL_REPLY: usize = 16 * 1024;
const BATCH_LIMIT: usize = 64 * 1024;

async fn write_loop<O: Output>(
    mut out: O,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    gone: Arc<Gone>,
) {
    let mut failed = false;
    while let Some(first) = rx.recv().await {
        if failed {
            continue; // drain, releasing budgets, until the session ends
        }
        let mut big = None;
        // Budgets are released once their replies are handed over.
        let mut held = vec![(first._queued, first._read_ahead)];
        let data = if first.data.len() >= SMALL_REPLY {
            first.data
        } else {
            let mut batch = first.data;
            while batch.len() < BATCH_LIMIT {
                match rx.try_recv() {
                    Ok(m) if m.data.len() < SMALL_REPLY => {
                        batch.extend_from_slice(&m.data);
                        held.push((m._queued, m._read_ahead));
                    }
                    Ok(m) => {
                        big = Some(m);
                        break;
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        if out.send(Bytes::from(data)).await.is_err() {
            failed = true;
            gone.set();
            // Nothing more is accepted; what is queued is drained.
            rx.close();
            continue;
        }
        drop(held);
        if let Some(m) = big {
            if out.send(Bytes::from(m.data)).await.is_err() {
                failed = true;
                gone.set();
                rx.close();
            }
        }
    }
}

/// What a reply says, for logs: its status code, if it is a STATUS.
pub(crate) fn reply_status(reply: &[u8]) -> Option<StatusCode> {
    if reply.len() >= 13 && reply[4] == ferry_proto::packet_type::STATUS {
        let code = u32::from_be_bytes([reply[9], reply[10], reply[11], reply[12]]);
        StatusCode::from_u32(code)
    } else {
        None
    }
}

/// Encode a reply.
pub(crate) fn encode(resp: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(resp.encoded_len());
    resp.encode(&mut out);
    out
}

#[cfg(test)]
mod tests;
