//! The handle table and per-handle request ordering.
//!
//! Requests run concurrently, but requests on one handle keep the order the
//! protocol needs. The session's reader registers every handle request here
//! in arrival order ([`Sequencer::register`]); the request then waits only
//! for earlier requests it conflicts with:
//! - a READ waits for earlier overlapping WRITEs;
//! - a WRITE waits for earlier overlapping READs and WRITEs;
//! - a barrier (CLOSE, FSTAT, FSETSTAT, FSYNC, READDIR, copy-data) waits for
//!   everything before it, and everything after it waits for it.
//!
//! So reads of one file run in parallel, writes to distinct ranges run in
//! parallel, and a CLOSE never overtakes the writes before it.
//!
//! Lock order: the table's map lock and a sequencer's lock are never held
//! together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use ferry_vfs::backend::RelPath;
use ferry_vfs::{Attr, VfsFile};
use tokio::sync::Semaphore;

/// What a request does to a handle, for ordering.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Reads `len` bytes at an offset.
    Read(u64, u64),
    /// Writes `len` bytes at an offset.
    Write(u64, u64),
    /// Orders against everything.
    Barrier,
}

impl Access {
    fn conflicts(self, earlier: Access) -> bool {
        use Access::*;
        match (self, earlier) {
            (Barrier, _) | (_, Barrier) => true,
            (Read(..), Read(..)) => false,
            (Read(a, al), Write(b, bl))
            | (Write(a, al), Read(b, bl))
            | (Write(a, al), Write(b, bl)) => overlaps(a, al, b, bl),
        }
    }
}

fn overlaps(a: u64, al: u64, b: u64, bl: u64) -> bool {
    let a_end = a.saturating_add(al.max(1));
    let b_end = b.saturating_add(bl.max(1));
    a < b_end && b < a_end
}

struct InFlight {
    seq: u64,
    access: Access,
    /// Closed when the request is done; waiters acquire it to wait.
    done: Arc<Semaphore>,
}

/// Per-handle ordering of requests. See the module docs.
#[derive(Default)]
pub struct Sequencer {
    state: Mutex<SeqState>,
}

#[derive(Default)]
struct SeqState {
    next: u64,
    in_flight: Vec<InFlight>,
}

/// A registered request: wait for it, then hold it while running.
pub struct Ticket {
    seq: u64,
    waits: Vec<Arc<Semaphore>>,
    done: Arc<Semaphore>,
    owner: Arc<HandleEntry>,
}

impl Sequencer {
    /// Register a request in arrival order.
    pub fn register(entry: &Arc<HandleEntry>, access: Access) -> Ticket {
        let mut st = entry.seq.state.lock().unwrap_or_else(|p| p.into_inner());
        let seq = st.next;
        st.next += 1;
        let waits = st
            .in_flight
            .iter()
            .filter(|f| access.conflicts(f.access))
            .map(|f| f.done.clone())
            .collect();
        let done = Arc::new(Semaphore::new(0));
        st.in_flight.push(InFlight {
            seq,
            access,
            done: done.clone(),
        });
        Ticket {
            seq,
            waits,
            done,
            owner: entry.clone(),
        }
    }
}

impl Ticket {
    /// Wait until every earlier conflicting request is done.
    pub async fn wait(&mut self) {
        // Cancel-safe: a wait is dropped only once it has finished.
        while let Some(w) = self.waits.last().cloned() {
            // Closed means done; no permit is ever added.
            let _ = w.acquire().await;
            self.waits.pop();
        }
    }

    /// The handle this ticket is for.
    pub fn entry(&self) -> &Arc<HandleEntry> {
        &self.owner
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut st = self
            .owner
            .seq
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.in_flight.retain(|f| f.seq != self.seq);
        drop(st);
        self.done.close();
    }
}

/// An open directory being listed.
pub struct DirCursor {
    /// The directory.
    pub path: RelPath,
    /// Its entries, read at OPENDIR.
    pub entries: Vec<(Vec<u8>, Attr)>,
    /// How many were sent.
    pub pos: usize,
}

/// What a handle refers to.
pub enum HandleKind {
    /// An open file.
    File(VfsFile),
    /// An open directory.
    Dir(Mutex<DirCursor>),
}

/// One open handle.
pub struct HandleEntry {
    /// The file or directory.
    pub kind: HandleKind,
    seq: Sequencer,
}

impl HandleEntry {
    /// The open file, if this is one.
    pub fn file(&self) -> Option<&VfsFile> {
        match &self.kind {
            HandleKind::File(f) => Some(f),
            HandleKind::Dir(_) => None,
        }
    }
}

/// The handles of one session.
pub struct HandleTable {
    map: Mutex<HashMap<u32, Arc<HandleEntry>>>,
    next: AtomicU32,
    max: usize,
}

/// Why a handle could not be added.
#[derive(Debug)]
pub struct TooManyHandles;

impl HandleTable {
    /// An empty table allowing `max` open handles.
    pub fn new(max: usize) -> Self {
        HandleTable {
            map: Mutex::new(HashMap::new()),
            next: AtomicU32::new(1),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<HandleEntry>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a handle; returns its wire form.
    pub fn insert(&self, kind: HandleKind) -> Result<Vec<u8>, (TooManyHandles, HandleKind)> {
        let mut map = self.lock();
        if map.len() >= self.max {
            return Err((TooManyHandles, kind));
        }
        let id = loop {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            if id != 0 && !map.contains_key(&id) {
                break id;
            }
        };
        map.insert(
            id,
            Arc::new(HandleEntry {
                kind,
                seq: Sequencer::default(),
            }),
        );
        Ok(id.to_be_bytes().to_vec())
    }

    fn parse(handle: &[u8]) -> Option<u32> {
        Some(u32::from_be_bytes(handle.try_into().ok()?))
    }

    /// Look a handle up.
    pub fn get(&self, handle: &[u8]) -> Option<Arc<HandleEntry>> {
        self.lock().get(&Self::parse(handle)?).cloned()
    }

    /// Remove a handle (at CLOSE); later requests naming it fail.
    pub fn remove(&self, handle: &[u8]) -> Option<Arc<HandleEntry>> {
        self.lock().remove(&Self::parse(handle)?)
    }

    /// Remove every handle (at the end of a session).
    pub fn drain(&self) -> Vec<Arc<HandleEntry>> {
        self.lock().drain().map(|(_, v)| v).collect()
    }

    /// How many handles are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Is the table empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_entry() -> HandleKind {
        HandleKind::Dir(Mutex::new(DirCursor {
            path: RelPath::root(),
            entries: Vec::new(),
            pos: 0,
        }))
    }

    #[test]
    fn conflicts() {
        use Access::*;
        assert!(!Read(0, 10).conflicts(Read(0, 10)));
        assert!(Read(0, 10).conflicts(Write(5, 10)));
        assert!(!Read(0, 10).conflicts(Write(10, 10)));
        assert!(Write(0, 10).conflicts(Write(9, 1)));
        assert!(!Write(0, 10).conflicts(Write(10, 1)));
        assert!(Barrier.conflicts(Read(0, 1)));
        assert!(Read(0, 1).conflicts(Barrier));
        assert!(Write(u64::MAX - 1, 10).conflicts(Write(u64::MAX - 1, 1)));
    }

    #[test]
    fn table_limits_and_lookup() {
        let t = HandleTable::new(2);
        let a = t.insert(dir_entry()).ok().unwrap();
        let b = t.insert(dir_entry()).ok().unwrap();
        assert_ne!(a, b);
        assert!(t.insert(dir_entry()).is_err());
        assert!(t.get(&a).is_some());
        assert!(t.get(b"bogus-handle").is_none());
        assert!(t.get(&[0, 0, 0, 0]).is_none());
        assert!(t.remove(&a).is_some());
        assert!(t.get(&a).is_none());
        assert_eq!(t.len(), 1);
        assert_eq!(t.drain().len(), 1);
        assert!(t.is_empty());
    }

    #[tokio::test]
    async fn barrier_waits_for_earlier_and_blocks_later() {
        let t = HandleTable::new(4);
        let h = t.insert(dir_entry()).ok().unwrap();
        let e = t.get(&h).unwrap();
        let w1 = Sequencer::register(&e, Access::Write(0, 10));
        let mut r_other = Sequencer::register(&e, Access::Read(100, 10));
        let mut close = Sequencer::register(&e, Access::Barrier);
        let mut late = Sequencer::register(&e, Access::Read(100, 10));
        // A read of another range does not wait for the write.
        tokio::time::timeout(std::time::Duration::from_secs(1), r_other.wait())
            .await
            .unwrap();
        drop(r_other);
        // The barrier waits for the write.
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), close.wait()).await;
        assert!(pending.is_err());
        drop(w1);
        close.wait().await;
        // The later read waits for the barrier.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), late.wait())
                .await
                .is_err()
        );
        drop(close);
        late.wait().await;
    }
}
