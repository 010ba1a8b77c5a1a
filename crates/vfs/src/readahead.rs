//! Read-ahead for files on high-latency stores (`--buffer-size`).
//!
//! A client reads 32-256 KiB at a time; against an object store or a
//! remote SFTP server each backend request costs a round trip. A handle
//! opened for reading on such a store reads the file in fixed chunks and,
//! while the client reads sequentially, keeps up to `buffer_size` of chunks
//! ahead of it in flight at once, so transfer speed is bounded by
//! bandwidth, not latency. Random access (a jump away from where the
//! client was reading) fetches only what is asked and starts over.
//!
//! Memory is bounded per handle: at most `window` chunks ahead plus half as
//! many behind (for READs that arrive out of order). Each chunk is fetched
//! once; a jump is read directly without disturbing the read-ahead, which
//! moves only if reading carries on from there.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferry_backend::{BackendError, FileHandle};
use futures::future::{BoxFuture, FutureExt as _, Shared};

use crate::budget::{BufferBudgetRef, Lease};
use crate::Result;

type Chunk = Shared<BoxFuture<'static, std::result::Result<Bytes, Arc<BackendError>>>>;

/// Read-ahead over one open handle.
pub(crate) struct ReadAhead {
    handle: Arc<dyn FileHandle>,
    /// The file's size when it was opened; reads at or past it go straight
    /// to the handle (the file may have grown).
    size: u64,
    chunk: u64,
    /// Chunks kept in flight ahead of a sequential reader.
    window: u64,
    /// What read-ahead may hold, every open file together: chunks ahead
    /// of the READs are fetched only while it has room.
    budget: BufferBudgetRef,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Chunks fetched or being fetched, each counted in the budget.
    chunks: BTreeMap<u64, (Chunk, Lease)>,
    /// Where reading has got to (the furthest end of a sequential read).
    last_end: u64,
    /// Where the last jump ended: a read from there moves the read-ahead.
    hint: Option<u64>,
    /// Bytes of each chunk handed out: a chunk read to the end is dropped.
    served: std::collections::HashMap<u64, u64>,
    /// Chunks read through: not fetched again for read-ahead.
    consumed: std::collections::BTreeSet<u64>,
}

impl ReadAhead {
    pub(crate) fn new(
        handle: Arc<dyn FileHandle>,
        size: u64,
        chunk: usize,
        buffer: usize,
        budget: BufferBudgetRef,
    ) -> Self {
        let chunk = chunk.max(64 << 10) as u64;
        ReadAhead {
            handle,
            size,
            chunk,
            window: (buffer as u64 / chunk).max(1),
            budget,
            state: Mutex::new(State::default()),
        }
    }

    fn fetch(&self, index: u64) -> Chunk {
        let handle = self.handle.clone();
        let at = index * self.chunk;
        let len = self.chunk.min(self.size - at) as usize;
        let task = tokio::spawn(async move {
            handle
                .read_at(at, len, Vec::with_capacity(len))
                .await
                .map(Bytes::from)
                .map_err(Arc::new)
        });
        async move {
            match task.await {
                Ok(r) => r,
                Err(e) => Err(Arc::new(
                    BackendError::new(
                        ferry_backend::ErrorKind::Other,
                        ferry_backend::Operation::Read,
                    )
                    .with_source(format!("read-ahead task failed: {e}")),
                )),
            }
        }
        .boxed()
        .shared()
    }

    /// Read up to `len` bytes at `offset`, appended to `buf`.
    pub(crate) async fn read_at(
        &self,
        offset: u64,
        len: usize,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(buf);
        }
        if offset >= self.size {
            return Ok(self.handle.read_at(offset, len, buf).await?);
        }
        let end = (offset + len as u64).min(self.size);
        let first = offset / self.chunk;
        let last = (end - 1) / self.chunk;
        let last_index = (self.size - 1) / self.chunk;
        let needed: Option<Vec<(u64, Chunk)>> = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let reach = self.window * self.chunk;
            // Sequential: within the window of where reading has got to,
            // either way (a client's READs in flight arrive a little out of
            // order).
            let near = offset + reach >= st.last_end && offset <= st.last_end + reach;
            if !near && st.hint != Some(offset) {
                // A jump: read exactly that, leave the read-ahead alone.
                st.hint = Some(end);
                None
            } else {
                if !near {
                    // The reader carried on from its jump: read ahead from
                    // here.
                    st.chunks.clear();
                    st.served.clear();
                    st.consumed.clear();
                    st.last_end = offset;
                    st.hint = None;
                }
                let ahead_to = (last + self.window).min(last_index);
                st.last_end = st.last_end.max(end);
                // Chunks are dropped once read through; this bounds what
                // READs that never come (a client that skipped a piece)
                // leave behind.
                let behind = self.window.max(2);
                let keep_from = (st.last_end / self.chunk).saturating_sub(behind).min(first);
                st.chunks.retain(|i, _| *i >= keep_from);
                st.served.retain(|i, _| *i >= keep_from);
                st.consumed.retain(|i| *i >= keep_from);
                for i in first..=ahead_to {
                    if st.chunks.contains_key(&i) || (i > last && st.consumed.contains(&i)) {
                        continue;
                    }
                    let len = self.chunk.min(self.size - i * self.chunk);
                    // What the READ needs is fetched whatever the budget;
                    // chunks ahead of it only while the budget has room.
                    let lease = if i <= last {
                        self.budget.take(len)
                    } else {
                        match self.budget.try_take(len) {
                            Some(l) => l,
                            None => break,
                        }
                    };
                    st.chunks.insert(i, (self.fetch(i), lease));
                }
                Some(
                    (first..=last)
                        .map(|i| (i, st.chunks[&i].0.clone()))
                        .collect(),
                )
            }
        };
        let Some(needed) = needed else {
            return Ok(self
                .handle
                .read_at(offset, (end - offset) as usize, buf)
                .await?);
        };
        buf.reserve((end - offset) as usize);
        for (i, chunk) in needed {
            let data = match chunk.await {
                Ok(d) => d,
                Err(e) => {
                    // Forget the failed chunk so a retry fetches it again.
                    self.state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .chunks
                        .remove(&i);
                    return Err(BackendError::new(e.kind(), e.operation())
                        .with_source(e.to_string())
                        .into());
                }
            };
            let chunk_start = i * self.chunk;
            let from = offset.max(chunk_start) - chunk_start;
            let to = (end.min(chunk_start + data.len() as u64)) - chunk_start;
            if from >= to {
                break; // the file was shorter than at open
            }
            buf.extend_from_slice(&data[from as usize..to as usize]);
            {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let n = st.served.entry(i).or_insert(0);
                *n += to - from;
                if *n >= data.len() as u64 {
                    st.served.remove(&i);
                    st.chunks.remove(&i);
                    st.consumed.insert(i);
                }
            }
            if (data.len() as u64) < self.chunk && chunk_start + (data.len() as u64) < end {
                break; // short chunk: end of file
            }
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use ferry_backend::{Metadata, SetAttrs};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A file on a slow store: every read takes a while; counts reads and
    /// the most at once.
    struct Slow {
        data: Vec<u8>,
        reads: AtomicUsize,
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    #[async_trait]
    impl FileHandle for Slow {
        async fn read_at(
            &self,
            offset: u64,
            len: usize,
            mut buf: Vec<u8>,
        ) -> ferry_backend::Result<Vec<u8>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            let start = (offset as usize).min(self.data.len());
            let end = (start + len).min(self.data.len());
            buf.extend_from_slice(&self.data[start..end]);
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
    }

    fn slow(size: usize) -> Arc<Slow> {
        Arc::new(Slow {
            data: (0..size).map(|i| (i % 251) as u8).collect(),
            reads: AtomicUsize::new(0),
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn read_ahead_stays_within_the_shared_budget_and_reads_stay_whole() {
        // Two files reading side by side, a budget of two 256 KiB chunks
        // for both: each reads correctly, what is held ahead never passes
        // the budget plus the chunks the READs themselves need, and all of
        // it is given back.
        let size = (3 << 20) + 777;
        let budget = crate::budget::BufferBudget::shared(512 << 10);
        let files = [slow(size), slow(size)];
        let readers: Vec<_> = files
            .iter()
            .map(|f| ReadAhead::new(f.clone(), size as u64, 256 << 10, 2 << 20, budget.clone()))
            .collect();
        let mut got = [Vec::new(), Vec::new()];
        let mut off = [0u64, 0u64];
        let mut most = 0;
        while off.iter().any(|&o| o < size as u64) {
            for k in 0..2 {
                if off[k] < size as u64 {
                    let b = readers[k]
                        .read_at(off[k], 32 << 10, Vec::new())
                        .await
                        .unwrap();
                    off[k] += b.len() as u64;
                    got[k].extend_from_slice(&b);
                }
                most = most.max(budget.used());
            }
        }
        assert_eq!(got[0], files[0].data);
        assert_eq!(got[1], files[1].data);
        assert!(most <= (512 << 10) + 2 * (256 << 10), "{most} bytes held");
        drop(readers);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn with_no_budget_left_only_what_is_read_is_fetched() {
        let size = 2 << 20;
        let file = slow(size);
        let ra = ReadAhead::new(
            file.clone(),
            size as u64,
            256 << 10,
            2 << 20,
            crate::budget::BufferBudget::shared(0),
        );
        let mut got = Vec::new();
        let mut off = 0u64;
        while off < size as u64 {
            let b = ra.read_at(off, 64 << 10, Vec::new()).await.unwrap();
            off += b.len() as u64;
            got.extend_from_slice(&b);
        }
        assert_eq!(got, file.data);
        // One read per chunk, none ahead or twice.
        assert_eq!(file.reads.load(Ordering::SeqCst), 8);
    }

    #[tokio::test]
    async fn sequential_reads_are_fetched_ahead_in_parallel_chunks() {
        let size = (8 << 20) + 12345;
        let file = slow(size);
        let ra = ReadAhead::new(
            file.clone(),
            size as u64,
            256 << 10,
            2 << 20,
            Default::default(),
        );
        let mut got = Vec::new();
        let mut off = 0u64;
        let mut most_held = 0;
        while off < size as u64 {
            let b = ra.read_at(off, 32 << 10, Vec::new()).await.unwrap();
            assert!(!b.is_empty());
            off += b.len() as u64;
            got.extend_from_slice(&b);
            most_held = most_held.max(ra.state.lock().unwrap().chunks.len());
        }
        assert_eq!(got, file.data);
        // Memory stays bounded: the window of 8 chunks (2 MiB of 256 KiB)
        // ahead, plus half as many behind.
        assert!(most_held <= 12, "{most_held} chunks held at once");
        assert!(most_held >= 4, "{most_held} chunks held: no read-ahead");
        assert!(ra
            .read_at(size as u64, 10, Vec::new())
            .await
            .unwrap()
            .is_empty());
        // 33 chunks of 256 KiB (plus the read at the end of the file), not
        // one request per 32 KiB read, several in flight at once.
        let reads = file.reads.load(Ordering::SeqCst);
        assert!(reads <= 35, "{reads} backend reads");
        let peak = file.peak.load(Ordering::SeqCst);
        assert!(peak >= 4, "no parallel read-ahead");
        assert!(peak <= 9, "{peak} reads in flight for a window of 8");
    }

    #[tokio::test]
    async fn random_reads_fetch_only_what_is_asked_and_get_the_right_bytes() {
        let size = 4 << 20;
        let file = slow(size);
        let ra = ReadAhead::new(
            file.clone(),
            size as u64,
            256 << 10,
            2 << 20,
            Default::default(),
        );
        for &(off, len) in &[
            (3_000_000u64, 1000usize),
            (2_200_000, 20),
            (2_500_000, 600_000),
            (4_194_000, 1000),
        ] {
            let b = ra.read_at(off, len, b"h".to_vec()).await.unwrap();
            let end = (off as usize + len).min(size);
            assert_eq!(&b[1..], &file.data[off as usize..end], "at {off}");
        }
        // Each jump beyond the read-ahead window fetched only the chunks it
        // needed (a small forward jump counts as sequential reading).
        let reads = file.reads.load(Ordering::SeqCst);
        assert_eq!(reads, 4, "{reads} backend reads for four random reads");
        // Reading on from where the last jump ended moves the read-ahead
        // there.
        let b = ra.read_at(3_100_000, 1000, Vec::new()).await.unwrap();
        assert_eq!(&b[..], &file.data[3_100_000..3_101_000]);
        let b = ra.read_at(3_101_000, 1000, Vec::new()).await.unwrap();
        assert_eq!(&b[..], &file.data[3_101_000..3_102_000]);
        assert!(
            file.reads.load(Ordering::SeqCst) > 6,
            "no read-ahead after the reader moved"
        );
    }

    #[tokio::test]
    async fn out_of_order_sequential_reads_fetch_each_chunk_once() {
        let size = 8 << 20;
        let file = slow(size);
        let ra = Arc::new(ReadAhead::new(
            file.clone(),
            size as u64,
            256 << 10,
            2 << 20,
            Default::default(),
        ));
        // 64 READs of 32 KiB in flight, started in a shuffled order.
        let mut offsets: Vec<u64> = (0..(size as u64 / 32768)).map(|i| i * 32768).collect();
        for w in offsets.chunks_mut(64) {
            w.reverse();
        }
        let mut got = vec![0u8; size];
        for w in offsets.chunks(64) {
            let reads = w.iter().map(|&off| {
                let ra = ra.clone();
                async move { (off, ra.read_at(off, 32768, Vec::new()).await.unwrap()) }
            });
            for (off, data) in futures::future::join_all(reads).await {
                got[off as usize..off as usize + data.len()].copy_from_slice(&data);
            }
        }
        assert_eq!(got, file.data);
        assert_eq!(
            file.reads.load(Ordering::SeqCst),
            32,
            "a chunk was fetched twice"
        );
    }
}
