//! Chunked streaming reads (`--vfs-read-chunk-size`, `--buffer-size`,
//! `--no-seek`) for read-only opens on stores that serve byte ranges as
//! streams (object stores).
//!
//! One background task per open file reads the file front to back through
//! ranged requests: the first asks for `--vfs-read-chunk-size` bytes, each
//! next one for twice as much, up to `--vfs-read-chunk-size-limit` (`off`:
//! no limit; a chunk size of 0 asks for the whole rest of the file at
//! once). It stays at most `--buffer-size` ahead of the furthest byte a
//! client asked for, and keeps a little behind it for READs that arrive
//! out of order, so memory per open file is bounded.
//!
//! A client keeps many READs in flight; they all land in the buffer or a
//! little ahead of it and are answered from the one stream: no request
//! per READ. A READ far from the stream (a seek) is answered by one ranged
//! read of exactly what it asks, leaving the stream alone; if the next
//! READ continues from there, the stream restarts at that point (a reader
//! that moved on). With `--no-seek` such READs fail instead.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use ferry_backend::{BackendError, ByteStream, FileHandle};

use crate::budget::{BufferBudgetRef, Lease};
use crate::cache::ranges::RangeSet;
use crate::{Result, VfsError};

/// The reach a client needs: up to 64 READs of 255 KiB in flight (16 MiB),
/// with room to spare.
pub(crate) const REACH: u64 = 32 << 20;

/// Data kept behind the bytes every READ has got, for re-reads.
const MARGIN: u64 = 256 << 10;

/// What a READ does next.
enum Step {
    Restart(u64),
    Jump,
    Wait,
}

/// How the stream is cut into requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkPolicy {
    /// First request size (0: the rest of the file).
    pub(crate) first: u64,
    /// Largest request size (`None`: no limit).
    pub(crate) limit: Option<u64>,
    /// How far ahead of the furthest READ to read.
    pub(crate) ahead: u64,
    /// Refuse READs away from the stream.
    pub(crate) no_seek: bool,
    /// READs this far ahead of the stream (or behind its furthest READ)
    /// are part of it, not jumps: at least what a client keeps in flight.
    pub(crate) reach: u64,
}

impl ChunkPolicy {
    fn next_size(&self, prev: u64) -> u64 {
        if self.first == 0 {
            return u64::MAX;
        }
        let doubled = if prev == 0 {
            self.first
        } else {
            prev.saturating_mul(2)
        };
        match self.limit {
            Some(l) => doubled.min(l.max(self.first)),
            None => doubled,
        }
    }
}

struct Buf {
    /// Offset of the first byte held.
    start: u64,
    /// The data held, each piece counted in the read-ahead budget.
    pieces: VecDeque<(Bytes, Lease)>,
    /// One past the last byte held.
    end: u64,
    /// The furthest byte a READ asked for.
    demand: u64,
    /// Bumped when the stream restarts: an old task's data is dropped.
    epoch: u64,
    /// The stream ended (end of file, or the file was shorter).
    done: bool,
    /// The stream task of this epoch is running (cleared by the task itself
    /// on every way out, with a wake-up, so no READ waits on a dead task).
    alive: bool,
    /// The stream failed; the next READ that needs it restarts it.
    error: Option<Arc<BackendError>>,
    /// Where the last READ away from the stream ended.
    seek_hint: Option<u64>,
    /// Ranged requests made (for tests and logs).
    requests: u64,
    /// What READs have been given since the stream (re)started: data is
    /// dropped once everything before it has been read (a client keeps
    /// up to 64 READs of up to 255 KiB in flight, answered in any order).
    served: RangeSet,
    /// Drop data this far behind the furthest READ even if some READ
    /// before it never came.
    behind: u64,
    /// Offsets of READs waiting for the stream: their data is never
    /// dropped.
    waiting: std::collections::BTreeMap<u64, usize>,
}

struct Shared {
    handle: Arc<dyn FileHandle>,
    size: u64,
    policy: ChunkPolicy,
    /// What read-ahead may hold, every open file together: the stream
    /// reads further ahead of its READs only while it has room.
    budget: BufferBudgetRef,
    buf: Mutex<Buf>,
    /// Data arrived (or the stream ended or failed).
    data: tokio::sync::Notify,
    /// A READ wants more.
    want: tokio::sync::Notify,
}

/// Streaming reads over one open handle.
pub(crate) struct StreamReader {
    shared: Arc<Shared>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl StreamReader {
    pub(crate) fn new(
        handle: Arc<dyn FileHandle>,
        size: u64,
        policy: ChunkPolicy,
        budget: BufferBudgetRef,
    ) -> Self {
        StreamReader {
            shared: Arc::new(Shared {
                handle,
                size,
                policy,
                budget,
                buf: Mutex::new(Buf {
                    start: 0,
                    pieces: VecDeque::new(),
                    end: 0,
                    demand: 0,
                    epoch: 0,
                    done: false,
                    alive: false,
                    error: None,
                    seek_hint: None,
                    requests: 0,
                    served: RangeSet::default(),
                    behind: policy.ahead.max(policy.reach),
                    waiting: Default::default(),
                }),
                data: tokio::sync::Notify::new(),
                want: tokio::sync::Notify::new(),
            }),
            task: Mutex::new(None),
        }
    }

    /// Ranged requests made so far.
    #[cfg(test)]
    pub(crate) fn requests(&self) -> u64 {
        self.shared.lock().requests
    }

    /// Read up to `len` bytes at `offset`, appended to `buf`.
    pub(crate) async fn read_at(
        &self,
        offset: u64,
        len: usize,
        mut out: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let sh = &self.shared;
        if len == 0 {
            return Ok(out);
        }
        if offset >= sh.size {
            // Past the size at open: the file may have grown.
            return Ok(sh.handle.read_at(offset, len, out).await?);
        }
        let want_end = (offset + len as u64).min(sh.size);
        let mut wait = Unwait {
            shared: sh,
            offset,
            registered: false,
        };
        loop {
            let notified = sh.data.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let step = {
                let mut b = sh.lock();
                if wait.registered {
                    unwait(&mut b, offset);
                    wait.registered = false;
                }
                let running = b.alive;
                if offset >= b.start && (want_end <= b.end || (b.done && offset <= b.end)) {
                    copy_out(&b, offset, want_end.min(b.end), &mut out);
                    b.demand = b.demand.max(want_end);
                    let got_to = want_end.min(b.end);
                    b.served.insert(offset, got_to);
                    trim(&mut b, sh.margin());
                    sh.want.notify_one();
                    return Ok(out);
                }
                // Within reach of the stream: at most `ahead` past what it
                // holds or what other READs already wait for (a client's
                // READs in flight arrive a little out of order).
                let near = offset >= b.start
                    && offset
                        <= b.end
                            .max(b.demand)
                            .saturating_add(sh.policy.ahead.max(sh.policy.reach))
                    && running
                    && b.error.is_none()
                    && !b.done;
                if near {
                    b.demand = b.demand.max(want_end);
                    *b.waiting.entry(offset).or_insert(0) += 1;
                    wait.registered = true;
                    Step::Wait
                } else {
                    let continues = b.seek_hint == Some(offset);
                    // No stream yet and a READ near the start (the first
                    // READs in flight arrive in any order): stream from 0.
                    let fresh =
                        !running && b.epoch == 0 && offset <= sh.policy.ahead.max(sh.policy.reach);
                    // A straggler just behind the stream: served directly,
                    // and no reason to move the stream.
                    let straggler =
                        running && offset < b.start && offset.saturating_add(b.behind) >= b.start;
                    let failed = b.error.take();
                    if failed.is_some() && offset >= b.start && offset <= b.end {
                        // Pick up where the failed stream got to.
                        tracing::debug!("read stream failed, restarting: {failed:?}");
                        Step::Restart(b.end)
                    } else if fresh {
                        Step::Restart(0)
                    } else if continues && !straggler {
                        Step::Restart(offset)
                    } else if sh.policy.no_seek {
                        return Err(VfsError::Unsupported(
                            "reading out of order (--no-seek is set)",
                        ));
                    } else {
                        if !straggler {
                            b.seek_hint = Some(want_end);
                        }
                        Step::Jump
                    }
                }
            };
            match step {
                Step::Restart(at) => {
                    self.restart(at);
                    continue;
                }
                Step::Jump => {
                    // A jump: one ranged read, the stream left alone.
                    return Ok(sh
                        .handle
                        .read_at(offset, (want_end - offset) as usize, out)
                        .await?);
                }
                Step::Wait => {}
            }
            sh.want.notify_one();
            notified.await;
        }
    }

    /// Start the stream afresh at `at`.
    fn restart(&self, at: u64) {
        // One restart at a time: the task kept is always the newest
        // epoch's (two READs restarting at once must not leave the older
        // task running and the newer one aborted).
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        let epoch = {
            let mut b = self.shared.lock();
            b.epoch += 1;
            b.start = at;
            b.end = at;
            b.pieces.clear();
            b.done = at >= self.shared.size;
            b.alive = true;
            b.error = None;
            b.seek_hint = None;
            b.served = RangeSet::default();
            b.demand = at;
            b.epoch
        };
        // The exit guard lives in the task from the start, so even a task
        // aborted before it first runs marks its epoch dead.
        let exit = Exit {
            sh: self.shared.clone(),
            epoch,
        };
        let sh = self.shared.clone();
        let new = tokio::spawn(async move {
            let _exit = exit;
            fill_stream(sh, epoch, at).await
        });
        if let Some(old) = task.replace(new) {
            old.abort();
        }
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buf> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is kept behind the READs for re-reads: nothing once the budget
    /// is spent (a re-read is then one ranged read).
    fn margin(&self) -> u64 {
        if self.budget.has_room() {
            MARGIN
        } else {
            0
        }
    }
}

/// Copy `[from, to)` out of the buffer.
fn copy_out(b: &Buf, from: u64, to: u64, out: &mut Vec<u8>) {
    if from >= to {
        return;
    }
    out.reserve((to - from) as usize);
    let mut pos = b.start;
    for (p, _) in &b.pieces {
        let p_end = pos + p.len() as u64;
        if p_end > from && pos < to {
            let s = from.max(pos) - pos;
            let e = to.min(p_end) - pos;
            out.extend_from_slice(&p[s as usize..e as usize]);
        }
        if p_end >= to {
            break;
        }
        pos = p_end;
    }
}

fn unwait(b: &mut Buf, offset: u64) {
    if let Some(n) = b.waiting.get_mut(&offset) {
        *n -= 1;
        if *n == 0 {
            b.waiting.remove(&offset);
        }
    }
}

/// A READ's registration as waiting; a READ dropped while waiting (its
/// client went away) unregisters here.
struct Unwait<'a> {
    shared: &'a Shared,
    offset: u64,
    registered: bool,
}

impl Drop for Unwait<'_> {
    fn drop(&mut self) {
        if self.registered {
            unwait(&mut self.shared.lock(), self.offset);
        }
    }
}

/// Drop what every READ has had (but `margin` for re-reads), and anything
/// far behind the furthest, but never what a waiting READ needs.
fn trim(b: &mut Buf, margin: u64) {
    let read_through = match b.served.spans().first() {
        Some(&(s, e)) if s <= b.start => e,
        _ => b.start,
    };
    let mut keep_from = read_through
        .saturating_sub(margin)
        .max(b.demand.saturating_sub(b.behind));
    if let Some((&w, _)) = b.waiting.first_key_value() {
        keep_from = keep_from.min(w);
    }
    while let Some((p, _)) = b.pieces.front() {
        let p_end = b.start + p.len() as u64;
        if p_end > keep_from {
            break;
        }
        b.start = p_end;
        b.pieces.pop_front();
    }
}

/// The stream task: reads chunk after chunk from `at`, staying within
/// `ahead` of the demand.
/// Marks the stream task of an epoch gone, however it ends (return, abort
/// or panic), and wakes every waiting READ to look again.
struct Exit {
    sh: Arc<Shared>,
    epoch: u64,
}

impl Drop for Exit {
    fn drop(&mut self) {
        {
            let mut b = self.sh.lock();
            if b.epoch == self.epoch {
                b.alive = false;
            }
        }
        self.sh.data.notify_waiters();
    }
}

async fn fill_stream(sh: Arc<Shared>, epoch: u64, mut at: u64) {
    let mut chunk = 0u64;
    let mut stream: Option<Box<dyn ByteStream>> = None;
    let mut chunk_end = at;
    loop {
        // Wait while far enough ahead.
        loop {
            let wanted = sh.want.notified();
            tokio::pin!(wanted);
            wanted.as_mut().enable();
            {
                let b = sh.lock();
                if b.epoch != epoch {
                    return;
                }
                // READs waiting for data always get it; reading further
                // ahead of them only while the budget has room.
                if b.end < b.demand
                    || (b.end < b.demand.saturating_add(sh.policy.ahead) && sh.budget.has_room())
                {
                    break;
                }
            }
            wanted.await;
        }
        if at >= sh.size {
            let mut b = sh.lock();
            if b.epoch == epoch {
                b.done = true;
            }
            drop(b);
            sh.data.notify_waiters();
            return;
        }
        if stream.is_none() || at >= chunk_end {
            chunk = sh.policy.next_size(chunk);
            let len = chunk.min(sh.size - at);
            sh.lock().requests += 1;
            match sh.handle.read_stream(at, len).await {
                Ok(Some(s)) => {
                    stream = Some(s);
                    chunk_end = at + len;
                }
                Ok(None) => {
                    fail(
                        &sh,
                        epoch,
                        BackendError::new(
                            ferry_backend::ErrorKind::Unsupported,
                            ferry_backend::Operation::Read,
                        ),
                    );
                    return;
                }
                Err(e) => {
                    fail(&sh, epoch, e);
                    return;
                }
            }
        }
        let Some(s) = stream.as_mut() else { return };
        match s.next().await {
            Ok(Some(data)) if !data.is_empty() => {
                let n = data.len() as u64;
                {
                    let mut b = sh.lock();
                    if b.epoch != epoch {
                        return;
                    }
                    b.pieces.push_back((data, sh.budget.take(n)));
                    b.end += n;
                    trim(&mut b, sh.margin());
                }
                at += n;
                sh.data.notify_waiters();
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                if at < chunk_end {
                    // The file is shorter than it was at open.
                    let mut b = sh.lock();
                    if b.epoch == epoch {
                        b.done = true;
                    }
                    drop(b);
                    sh.data.notify_waiters();
                    return;
                }
                stream = None;
            }
            Err(e) => {
                fail(&sh, epoch, e);
                return;
            }
        }
    }
}

fn fail(sh: &Shared, epoch: u64, e: BackendError) {
    let mut b = sh.lock();
    if b.epoch == epoch {
        b.error = Some(Arc::new(e));
    }
    drop(b);
    sh.data.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use ferry_backend::{Metadata, SetAttrs};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A file whose ranged streams come in 10 KiB pieces; counts streams.
    struct Ranged {
        data: Bytes,
        streams: AtomicU64,
        direct: AtomicU64,
        fail_after: Option<u64>,
    }

    struct Pieces {
        data: Bytes,
        at: u64,
        end: u64,
        fail_at: Option<u64>,
    }

    #[async_trait]
    impl ByteStream for Pieces {
        async fn next(&mut self) -> ferry_backend::Result<Option<Bytes>> {
            if self.fail_at.is_some_and(|f| self.at >= f) {
                self.fail_at = None;
                return Err(BackendError::new(
                    ferry_backend::ErrorKind::Temporary,
                    ferry_backend::Operation::Read,
                ));
            }
            if self.at >= self.end {
                return Ok(None);
            }
            tokio::task::yield_now().await;
            let e = (self.at + 10_000).min(self.end);
            let b = self.data.slice(self.at as usize..e as usize);
            self.at = e;
            Ok(Some(b))
        }
    }

    #[async_trait]
    impl FileHandle for Ranged {
        async fn read_at(
            &self,
            offset: u64,
            len: usize,
            mut buf: Vec<u8>,
        ) -> ferry_backend::Result<Vec<u8>> {
            self.direct.fetch_add(1, Ordering::SeqCst);
            let s = (offset as usize).min(self.data.len());
            let e = (s + len).min(self.data.len());
            buf.extend_from_slice(&self.data[s..e]);
            Ok(buf)
        }
        async fn write_at(&self, _: u64, _: Bytes) -> ferry_backend::Result<()> {
            unreachable!()
        }
        async fn stat(&self) -> ferry_backend::Result<Metadata> {
            unreachable!()
        }
        async fn set_attrs(&self, _: &SetAttrs) -> ferry_backend::Result<()> {
            unreachable!()
        }
        async fn sync(&self) -> ferry_backend::Result<()> {
            Ok(())
        }
        async fn read_stream(
            &self,
            offset: u64,
            len: u64,
        ) -> ferry_backend::Result<Option<Box<dyn ByteStream>>> {
            self.streams.fetch_add(1, Ordering::SeqCst);
            let end = offset.saturating_add(len).min(self.data.len() as u64);
            Ok(Some(Box::new(Pieces {
                data: self.data.clone(),
                at: offset,
                end,
                fail_at: self.fail_after.filter(|f| *f > offset && *f < end),
            })))
        }
    }

    fn file(len: usize, fail_after: Option<u64>) -> Arc<Ranged> {
        Arc::new(Ranged {
            data: (0..len).map(|i| (i % 253) as u8).collect::<Vec<_>>().into(),
            streams: AtomicU64::new(0),
            direct: AtomicU64::new(0),
            fail_after,
        })
    }

    fn policy(first: u64, limit: Option<u64>) -> ChunkPolicy {
        ChunkPolicy {
            first,
            limit,
            ahead: 256 << 10,
            no_seek: false,
            reach: 256 << 10,
        }
    }

    #[tokio::test]
    async fn the_stream_reads_ahead_only_within_the_budget() {
        // A budget already spent by others: the stream still serves every
        // READ, byte-exact, but holds no more than they ask for.
        let f = file(2_000_000, None);
        let budget = crate::budget::BufferBudget::shared(1 << 20);
        let other = budget.try_take(1 << 20).unwrap();
        let r = StreamReader::new(f.clone(), 2_000_000, policy(0, None), budget.clone());
        let mut got = Vec::new();
        let mut off = 0u64;
        let mut most = 0;
        while off < 2_000_000 {
            let b = r.read_at(off, 32768, Vec::new()).await.unwrap();
            off += b.len() as u64;
            got.extend_from_slice(&b);
            tokio::task::yield_now().await;
            most = most.max(budget.used() - (1 << 20));
        }
        assert_eq!(&got[..], &f.data[..]);
        // One READ's worth and the stream's last piece, never the 256 KiB
        // ahead the policy would read with room.
        assert!(most < 100_000, "{most} bytes held ahead");
        drop(other);
        // With room, it reads ahead again.
        let r2 = StreamReader::new(f.clone(), 2_000_000, policy(0, None), budget.clone());
        r2.read_at(0, 1000, Vec::new()).await.unwrap();
        assert!(
            wait_for(|| budget.used() >= 200_000).await,
            "no read-ahead with room: {}",
            budget.used()
        );
        drop((r, r2));
        assert!(
            wait_for(|| budget.used() == 0).await,
            "{} left",
            budget.used()
        );
    }

    async fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if f() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        false
    }

    #[tokio::test]
    async fn concurrent_sequential_reads_share_one_doubling_stream() {
        let f = file(3_000_000, None);
        let r = Arc::new(StreamReader::new(
            f.clone(),
            3_000_000,
            policy(100_000, None),
            Default::default(),
        ));
        // 64 READs of 32 KiB in flight at a time, as OpenSSH sends them.
        let mut got = Vec::new();
        for batch in 0..(3_000_000u64 / (64 * 32768) + 1) {
            let reads = (0..64u64).map(|i| {
                let r = r.clone();
                async move {
                    r.read_at((batch * 64 + i) * 32768, 32768, Vec::new())
                        .await
                        .unwrap()
                }
            });
            for part in futures::future::join_all(reads).await {
                got.extend_from_slice(&part);
            }
        }
        assert_eq!(&got[..], &f.data[..]);
        // 100k, 200k, 400k, 800k, 1.6M: five requests cover 3 MB.
        assert_eq!(r.requests(), 5);
        assert_eq!(f.streams.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn reads_in_any_order_at_the_start_do_not_restart_the_stream() {
        let f = file(3_000_000, None);
        let r = Arc::new(StreamReader::new(
            f.clone(),
            3_000_000,
            policy(0, None),
            Default::default(),
        ));
        // The first READs in flight, the first of them processed last, then
        // the rest in batches with a few reversed.
        let mut offsets: Vec<u64> = (0..(3_000_000u64 / 32768 + 1)).map(|i| i * 32768).collect();
        offsets[..8].reverse();
        for w in offsets.chunks_mut(16).skip(1) {
            w.swap(0, 5);
        }
        let mut got = vec![0u8; 3_000_000];
        for w in offsets.chunks(16) {
            let reads = w.iter().map(|&off| {
                let r = r.clone();
                async move { (off, r.read_at(off, 32768, Vec::new()).await.unwrap()) }
            });
            for (off, data) in futures::future::join_all(reads).await {
                got[off as usize..off as usize + data.len()].copy_from_slice(&data);
            }
        }
        assert_eq!(&got[..], &f.data[..]);
        assert_eq!(r.requests(), 1, "the stream restarted");
        assert_eq!(
            f.direct.load(Ordering::SeqCst),
            0,
            "READs were served one by one"
        );
    }

    #[tokio::test]
    async fn reads_in_flight_further_apart_than_the_read_ahead_are_all_streamed() {
        // 64 READs of 255 KiB in flight (OpenSSH with a server advertising
        // 255 KiB reads) span 16 MiB, more than the read-ahead here.
        let len = 40 << 20;
        let f = file(len, None);
        let mut p = policy(0, None);
        p.ahead = 4 << 20;
        p.reach = REACH;
        let r = Arc::new(StreamReader::new(
            f.clone(),
            len as u64,
            p,
            Default::default(),
        ));
        let piece = 255 * 1024u64;
        let offsets: Vec<u64> = (0..(len as u64).div_ceil(piece))
            .map(|i| i * piece)
            .collect();
        let mut got = vec![0u8; len];
        for w in offsets.chunks(64) {
            let mut w = w.to_vec();
            w.reverse();
            let reads = w.iter().map(|&off| {
                let r = r.clone();
                async move {
                    (
                        off,
                        r.read_at(off, piece as usize, Vec::new()).await.unwrap(),
                    )
                }
            });
            for (off, data) in futures::future::join_all(reads).await {
                got[off as usize..off as usize + data.len()].copy_from_slice(&data);
            }
        }
        assert!(got == f.data[..], "wrong data");
        assert_eq!(
            f.direct.load(Ordering::SeqCst),
            0,
            "READs were served one by one"
        );
        assert_eq!(r.requests(), 1);
    }

    #[tokio::test]
    async fn a_jump_is_one_ranged_read_and_a_reader_that_moves_on_restarts() {
        let f = file(2_000_000, None);
        let r = StreamReader::new(f.clone(), 2_000_000, policy(0, None), Default::default());
        let a = r.read_at(0, 1000, Vec::new()).await.unwrap();
        assert_eq!(&a[..], &f.data[..1000]);
        // Far away: answered directly.
        let b = r.read_at(1_500_000, 1000, Vec::new()).await.unwrap();
        assert_eq!(&b[..], &f.data[1_500_000..1_501_000]);
        assert_eq!(r.requests(), 1);
        // And continuing from there: the stream moves.
        let c = r.read_at(1_501_000, 5000, Vec::new()).await.unwrap();
        assert_eq!(&c[..], &f.data[1_501_000..1_506_000]);
        assert_eq!(r.requests(), 2);
        // Reading back to the start is another jump.
        let d = r.read_at(10, 10, Vec::new()).await.unwrap();
        assert_eq!(&d[..], &f.data[10..20]);
        // The end of the file reads short.
        let e = r.read_at(1_999_990, 100, Vec::new()).await.unwrap();
        assert_eq!(&e[..], &f.data[1_999_990..]);
    }

    #[tokio::test]
    async fn no_seek_refuses_jumps() {
        let f = file(2_000_000, None);
        let mut p = policy(0, None);
        p.no_seek = true;
        let r = StreamReader::new(f.clone(), 2_000_000, p, Default::default());
        r.read_at(0, 1000, Vec::new()).await.unwrap();
        assert!(r.read_at(1_500_000, 1000, Vec::new()).await.is_err());
        // Small steps ahead are fine.
        let x = r.read_at(100_000, 1000, Vec::new()).await.unwrap();
        assert_eq!(&x[..], &f.data[100_000..101_000]);
    }

    #[tokio::test]
    async fn a_broken_stream_is_resumed_where_it_stopped() {
        let f = file(500_000, Some(300_000));
        let r = StreamReader::new(f.clone(), 500_000, policy(0, None), Default::default());
        let mut got = Vec::new();
        let mut off = 0;
        while off < 500_000 {
            match r.read_at(off, 32768, Vec::new()).await {
                Ok(part) => {
                    off += part.len() as u64;
                    got.extend_from_slice(&part);
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&got[..], &f.data[..]);
        assert_eq!(r.requests(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiting_read_finishes_when_the_stream_breaks() {
        for _ in 0..20 {
            let f = file(1_000_000, Some(300_000));
            let r = Arc::new(StreamReader::new(
                f.clone(),
                1_000_000,
                policy(0, None),
                Default::default(),
            ));
            r.read_at(0, 1000, Vec::new()).await.unwrap();
            let reads = (0..24u64).map(|i| {
                let r = r.clone();
                let off = 250_000 + i * 30_000;
                tokio::spawn(async move { (off, r.read_at(off, 30_000, Vec::new()).await) })
            });
            let all = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                futures::future::join_all(reads),
            )
            .await
            .expect("a READ waited forever after the stream broke");
            for j in all {
                let (off, got) = j.unwrap();
                let got = got.unwrap();
                let end = (off as usize + 30_000).min(f.data.len());
                assert_eq!(&got[..], &f.data[off as usize..end]);
            }
        }
    }

    #[test]
    fn chunks_double_up_to_the_limit() {
        let p = policy(10, Some(35));
        let mut c = 0;
        let sizes: Vec<u64> = (0..5)
            .map(|_| {
                c = p.next_size(c);
                c
            })
            .collect();
        assert_eq!(sizes, [10, 20, 35, 35, 35]);
        assert_eq!(policy(0, None).next_size(0), u64::MAX);
    }
}
