//! The handle table and request ordering.
//!
//! Requests run concurrently, but keep the order the protocol and real
//! clients need (sshfs sends OPEN and LSTAT of a new file together; OpenSSH
//! sends a file's WRITEs, its CLOSE and a STAT without waiting). The
//! session's reader registers every request in the session's [`Sequencer`]
//! in arrival order; the request then waits only for the earlier requests it
//! conflicts with:
//! - on the same handle: a READ waits for earlier overlapping WRITEs; a
//!   WRITE for earlier overlapping READs and WRITEs; a barrier (CLOSE,
//!   FSTAT, FSETSTAT, FSYNC, READDIR, copy-data, and every WRITE of an
//!   APPEND handle) waits for everything before it, and everything after it
//!   waits for it;
//! - otherwise, when the two touch the same path or one's path is inside the
//!   other's (a handle touches the path it was opened at), and at least one
//!   of them changes something.
//!
//! So reads of one file run in parallel, writes to distinct ranges run in
//! parallel, requests on unrelated paths never wait for each other, and
//! nothing overtakes an earlier change to the same file.
//!
//! Lock order: the table's map lock and the sequencer's lock are never held
//! together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use ferry_vfs::backend::RelPath;
use ferry_vfs::{Attr, VfsFile};
use tokio::sync::Semaphore;

use super::order::Lane;

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

fn related(a: &RelPath, b: &RelPath) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// A request, as the sequencer sees it.
pub struct Op {
    /// The handle it works on, if any.
    pub handle: Option<Arc<HandleEntry>>,
    /// A second handle (copy-data's destination).
    pub other_handle: Option<Arc<HandleEntry>>,
    /// The paths it names.
    pub paths: Vec<RelPath>,
    /// What it does to its handle.
    pub access: Access,
    /// Does it change anything?
    pub mutates: bool,
}

impl Op {
    fn all_paths(&self) -> impl Iterator<Item = &RelPath> {
        self.paths.iter().chain(self.handles().map(|h| &h.path))
    }

    fn handles(&self) -> impl Iterator<Item = &Arc<HandleEntry>> {
        self.handle.iter().chain(self.other_handle.iter())
    }

    fn same_handle(&self, earlier: &Op) -> bool {
        self.handles()
            .any(|h| earlier.handles().any(|t| Arc::ptr_eq(h, t)))
    }

    fn conflicts(&self, earlier: &Op) -> bool {
        if self.same_handle(earlier) {
            return self.access.conflicts(earlier.access);
        }
        if !self.mutates && !earlier.mutates {
            return false;
        }
        self.all_paths()
            .any(|p| earlier.all_paths().any(|q| related(p, q)))
    }
}

struct InFlight {
    seq: u64,
    op: Op,
    /// Closed when the request is done; waiters acquire it to wait.
    done: Arc<Semaphore>,
}

/// The request ordering of one session. See the module docs.
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
    owner: Arc<Sequencer>,
}

impl Sequencer {
    /// Register a request in arrival order.
    pub fn register(self: &Arc<Self>, op: Op) -> Ticket {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let seq = st.next;
        st.next += 1;
        let waits = st
            .in_flight
            .iter()
            .filter(|f| op.conflicts(&f.op))
            .map(|f| f.done.clone())
            .collect();
        let done = Arc::new(Semaphore::new(0));
        st.in_flight.push(InFlight {
            seq,
            op,
            done: done.clone(),
        });
        Ticket {
            seq,
            waits,
            done,
            owner: self.clone(),
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
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut st = self.owner.state.lock().unwrap_or_else(|p| p.into_inner());
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
    /// The path it was opened at.
    pub path: RelPath,
    /// The order its requests' replies leave in.
    pub replies: Lane,
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
    pub fn insert(
        &self,
        kind: HandleKind,
        path: RelPath,
    ) -> Result<Vec<u8>, (TooManyHandles, HandleKind)> {
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
                path,
                replies: Lane::default(),
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
    use std::time::Duration;

    fn dir_entry() -> HandleKind {
        HandleKind::Dir(Mutex::new(DirCursor {
            path: RelPath::root(),
            entries: Vec::new(),
            pos: 0,
        }))
    }

    fn p(s: &str) -> RelPath {
        RelPath::new(s.as_bytes().to_vec()).unwrap()
    }

    fn on_handle(h: &Arc<HandleEntry>, access: Access, mutates: bool) -> Op {
        Op {
            handle: Some(h.clone()),
            other_handle: None,
            paths: Vec::new(),
            access,
            mutates,
        }
    }

    fn on_path(path: &str, mutates: bool) -> Op {
        Op {
            handle: None,
            other_handle: None,
            paths: vec![p(path)],
            access: Access::Barrier,
            mutates,
        }
    }

    async fn blocked(t: &mut Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(50), t.wait())
            .await
            .is_err()
    }

    #[test]
    fn access_conflicts() {
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
        let a = t.insert(dir_entry(), RelPath::root()).ok().unwrap();
        let b = t.insert(dir_entry(), RelPath::root()).ok().unwrap();
        assert_ne!(a, b);
        assert!(t.insert(dir_entry(), RelPath::root()).is_err());
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
        let h = t.insert(dir_entry(), p("f")).ok().unwrap();
        let e = t.get(&h).unwrap();
        let seq = Arc::new(Sequencer::default());
        let w1 = seq.register(on_handle(&e, Access::Write(0, 10), true));
        let mut r_other = seq.register(on_handle(&e, Access::Read(100, 10), false));
        let mut close = seq.register(on_handle(&e, Access::Barrier, true));
        let mut late = seq.register(on_handle(&e, Access::Read(100, 10), false));
        // A read of another range does not wait for the write.
        assert!(!blocked(&mut r_other).await);
        drop(r_other);
        // The barrier waits for the write; the later read for the barrier.
        assert!(blocked(&mut close).await);
        drop(w1);
        close.wait().await;
        assert!(blocked(&mut late).await);
        drop(close);
        late.wait().await;
    }

    #[tokio::test]
    async fn path_requests_are_ordered_with_related_changes() {
        let t = HandleTable::new(4);
        let h = t.insert(dir_entry(), p("d/f")).ok().unwrap();
        let e = t.get(&h).unwrap();
        let seq = Arc::new(Sequencer::default());
        // OPEN d/f (creates) then LSTAT d/f: the stat waits.
        let open = seq.register(on_path("d/f", true));
        let mut stat = seq.register(on_path("d/f", false));
        let mut unrelated = seq.register(on_path("e", false));
        let mut other_change = seq.register(on_path("e/x", true));
        assert!(blocked(&mut stat).await);
        assert!(!blocked(&mut unrelated).await);
        // A change inside e waits for the earlier read of e, not for d/f.
        assert!(blocked(&mut other_change).await);
        drop(unrelated);
        assert!(!blocked(&mut other_change).await);
        drop(open);
        stat.wait().await;
        // A WRITE on a handle of d/f, then a STAT of d (its parent): ordered.
        let write = seq.register(on_handle(&e, Access::Write(0, 1), true));
        let mut stat_dir = seq.register(on_path("d", false));
        let mut read_other = seq.register(on_path("d/g", false));
        assert!(blocked(&mut stat_dir).await);
        assert!(!blocked(&mut read_other).await);
        drop(write);
        stat_dir.wait().await;
        // Two reads of one path never wait.
        let _a = seq.register(on_path("x", false));
        let mut b = seq.register(on_path("x", false));
        assert!(!blocked(&mut b).await);
    }
}
