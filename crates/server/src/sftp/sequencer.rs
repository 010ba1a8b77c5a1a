//! Request ordering.
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
//! # Cost
//!
//! A client decides how many requests are in flight and how they relate,
//! so registering one must cost neither a scan of everything in flight nor
//! a reference to every earlier request it conflicts with (20,000 FSTATs
//! behind stalled READs once meant 200 million references). So:
//! - requests in flight are indexed: per handle (the latest barrier, then
//!   the READs and WRITEs since it by offset) and per path (a map ordered
//!   by path, so a path's ancestors are a few lookups and its descendants
//!   one range);
//! - a request that orders everything after it in some place stands for
//!   everything it waited for there: a handle's barrier replaces the
//!   handle's earlier requests, and a change made by path (or a changing
//!   barrier) replaces every earlier request at and below its paths. Every
//!   later request that would conflict with one of those conflicts with
//!   it, so waiting for it alone is the same order;
//! - a request that would still look at more than [`MAX_SCAN`] entries, or
//!   wait for more than [`MAX_WAITS`], waits instead for every earlier
//!   request of the session (a fence: a stricter order, never a wrong one,
//!   and one reference).
//!
//! Lock order: the handle table's lock and the sequencer's lock are never
//! held together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use ferry_vfs::backend::RelPath;
use tokio::sync::Semaphore;

use super::handles::HandleEntry;

/// Most earlier requests one request waits for before it takes a fence.
pub const MAX_WAITS: usize = 32;
/// Most index entries one registration looks at before it takes a fence.
pub const MAX_SCAN: usize = 256;

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
    #[cfg(test)]
    fn conflicts(self, earlier: Access) -> bool {
        use Access::*;
        match (self, earlier) {
            (Barrier, _) | (_, Barrier) => true,
            (Read(..), Read(..)) => false,
            (Read(a, al), Write(b, bl))
            | (Write(a, al), Read(b, bl))
            | (Write(a, al), Write(b, bl)) => span(a, al).overlaps(span(b, bl)),
        }
    }
}

/// A byte range `[start, end)`; an empty request counts as one byte.
#[derive(Clone, Copy)]
struct Span {
    start: u64,
    end: u64,
}

fn span(offset: u64, len: u64) -> Span {
    Span {
        start: offset,
        end: offset.saturating_add(len.max(1)),
    }
}

impl Span {
    fn overlaps(self, other: Span) -> bool {
        self.start < other.end && other.start < self.end
    }
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

/// A handle's identity while requests on it are in flight (they hold the
/// entry, so the address is not reused meanwhile).
type HKey = usize;

fn key_of(h: &Arc<HandleEntry>) -> HKey {
    Arc::as_ptr(h) as usize
}

/// Closed when its request is done; waiters acquire it to wait.
type Done = Arc<Semaphore>;

/// The ordering of one session. See the module docs.
#[derive(Default)]
pub struct Sequencer {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Every registered request not yet done.
    live: BTreeSet<u64>,
    /// Fences by the request that waits behind them: closed once no earlier
    /// request is live.
    fences: BTreeMap<u64, Done>,
    chains: HashMap<HKey, Chain>,
    /// Path entries of requests that change something, by path.
    changing: BTreeMap<Vec<u8>, Node>,
    /// Path entries of the others.
    reading: BTreeMap<Vec<u8>, Node>,
}

/// The requests in flight on one handle.
#[derive(Default)]
struct Chain {
    barrier: Option<(u64, Done)>,
    /// READs and WRITEs since the barrier, by (start, seq), with their end.
    reads: BTreeMap<(u64, u64), (u64, Done)>,
    writes: BTreeMap<(u64, u64), (u64, Done)>,
    /// The longest range in `reads` and `writes`, to find overlaps.
    longest: u64,
}

impl Chain {
    fn is_empty(&self) -> bool {
        self.barrier.is_none() && self.reads.is_empty() && self.writes.is_empty()
    }
}

/// The requests in flight at one path, grouped by the handle they work on
/// (a request is never ordered by path against its own handle's).
#[derive(Default)]
struct Node {
    groups: HashMap<Option<HKey>, BTreeMap<u64, PathEntry>>,
}

struct PathEntry {
    /// The request's second handle (copy-data).
    also: Option<HKey>,
    done: Done,
}

/// Where a ticket is entered, to take it out again.
enum Place {
    /// In a handle's chain.
    Chain(HKey, Slot),
    /// At a path.
    Path {
        changing: bool,
        key: Vec<u8>,
        group: Option<HKey>,
    },
}

/// Where in a handle's chain.
enum Slot {
    Barrier,
    Read(u64),
    Write(u64),
}

/// A registered request: wait for it, then hold it while running.
pub struct Ticket {
    seq: u64,
    waits: Vec<Done>,
    done: Done,
    places: Vec<Place>,
    owner: Arc<Sequencer>,
}

/// What one registration has found to wait for.
struct Found {
    waits: Vec<(u64, Done)>,
    scanned: usize,
    fence: bool,
}

impl Found {
    fn add(&mut self, seq: u64, done: &Done) {
        if self.fence {
            return;
        }
        self.scanned += 1;
        if self.waits.iter().any(|(s, _)| *s == seq) {
            return;
        }
        self.waits.push((seq, done.clone()));
        if self.waits.len() > MAX_WAITS {
            self.fence = true;
        }
    }

    /// Count an entry looked at without waiting for it.
    fn skip(&mut self) {
        self.scanned += 1;
    }

    fn full(&mut self) -> bool {
        if self.scanned > MAX_SCAN {
            self.fence = true;
        }
        self.fence
    }
}

/// The keys of `path`'s ancestors, root first, and `path` itself.
fn ancestors_and_self(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let cuts = path
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(|(i, _)| i);
    std::iter::once(0)
        .filter(move |_| !path.is_empty())
        .chain(cuts)
        .chain(std::iter::once(path.len()))
        .map(move |i| &path[..i])
}

/// The range of keys strictly below `path`.
fn below(path: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    if path.is_empty() {
        return (Bound::Excluded(Vec::new()), Bound::Unbounded);
    }
    let mut lo = path.to_vec();
    lo.push(b'/');
    let mut hi = path.to_vec();
    hi.push(b'/' + 1);
    (Bound::Included(lo), Bound::Excluded(hi))
}

impl Node {
    /// Add the entries of other handles' requests to `found`.
    fn scan(&self, own: &[HKey], found: &mut Found) {
        for (group, entries) in &self.groups {
            if group.is_some_and(|g| own.contains(&g)) {
                found.skip();
                continue;
            }
            for (seq, e) in entries {
                if found.full() {
                    return;
                }
                if e.also.is_some_and(|g| own.contains(&g)) {
                    found.skip();
                } else {
                    found.add(*seq, &e.done);
                }
            }
        }
    }
}

fn scan_path(map: &BTreeMap<Vec<u8>, Node>, path: &[u8], own: &[HKey], found: &mut Found) {
    for k in ancestors_and_self(path) {
        if found.full() {
            return;
        }
        if let Some(node) = map.get(k) {
            node.scan(own, found);
        }
    }
    for (_, node) in map.range(below(path)) {
        if found.full() {
            return;
        }
        node.scan(own, found);
    }
}

fn remove_subtree(map: &mut BTreeMap<Vec<u8>, Node>, path: &[u8]) {
    map.remove(path);
    let keys: Vec<Vec<u8>> = map.range(below(path)).map(|(k, _)| k.clone()).collect();
    for k in keys {
        map.remove(&k);
    }
}

fn scan_range(
    map: &BTreeMap<(u64, u64), (u64, Done)>,
    longest: u64,
    want: Span,
    found: &mut Found,
) {
    let from = want.start.saturating_sub(longest);
    for (&(start, seq), (end, done)) in map.range((from, 0)..(want.end, 0)) {
        if found.full() {
            return;
        }
        if (Span { start, end: *end }).overlaps(want) {
            found.add(seq, done);
        } else {
            found.skip();
        }
    }
}

impl Sequencer {
    /// Register a request in arrival order.
    pub fn register(self: &Arc<Self>, op: Op) -> Ticket {
        let own: Vec<HKey> = op
            .handle
            .iter()
            .chain(op.other_handle.iter())
            .map(key_of)
            .collect();
        let paths: Vec<Vec<u8>> = op
            .paths
            .iter()
            .chain(op.handle.iter().map(|h| &h.path))
            .chain(op.other_handle.iter().map(|h| &h.path))
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let done = Arc::new(Semaphore::new(0));
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *st;
        let seq = st.next;
        st.next += 1;
        let mut found = Found {
            waits: Vec::new(),
            scanned: 0,
            fence: false,
        };

        // Same handle: by access.
        for h in &own {
            let Some(chain) = st.chains.get(h) else {
                continue;
            };
            if let Some((s, d)) = &chain.barrier {
                found.add(*s, d);
            }
            match op.access {
                Access::Barrier => {
                    for (&(_, s), (_, d)) in chain.reads.iter().chain(chain.writes.iter()) {
                        if found.full() {
                            break;
                        }
                        found.add(s, d);
                    }
                }
                Access::Read(o, l) => {
                    scan_range(&chain.writes, chain.longest, span(o, l), &mut found)
                }
                Access::Write(o, l) => {
                    let want = span(o, l);
                    scan_range(&chain.reads, chain.longest, want, &mut found);
                    scan_range(&chain.writes, chain.longest, want, &mut found);
                }
            }
        }
        // Other requests: by path, when one of the two changes something.
        for p in &paths {
            scan_path(&st.changing, p, &own, &mut found);
            if op.mutates {
                scan_path(&st.reading, p, &own, &mut found);
            }
        }

        let waits = if found.fence {
            match st.live.first() {
                Some(_) => {
                    let fence = Arc::new(Semaphore::new(0));
                    st.fences.insert(seq, fence.clone());
                    vec![fence]
                }
                None => Vec::new(),
            }
        } else {
            found.waits.into_iter().map(|(_, d)| d).collect()
        };
        st.live.insert(seq);

        let mut places = Vec::new();
        for h in &own {
            let chain = st.chains.entry(*h).or_default();
            match op.access {
                Access::Barrier => {
                    chain.reads.clear();
                    chain.writes.clear();
                    chain.longest = 0;
                    chain.barrier = Some((seq, done.clone()));
                    places.push(Place::Chain(*h, Slot::Barrier));
                }
                Access::Read(o, l) | Access::Write(o, l) => {
                    let s = span(o, l);
                    chain.longest = chain.longest.max(s.end - s.start);
                    if matches!(op.access, Access::Read(..)) {
                        chain.reads.insert((o, seq), (s.end, done.clone()));
                        places.push(Place::Chain(*h, Slot::Read(o)));
                    } else {
                        chain.writes.insert((o, seq), (s.end, done.clone()));
                        places.push(Place::Chain(*h, Slot::Write(o)));
                    }
                }
            }
        }
        let covers = op.mutates && (own.is_empty() || matches!(op.access, Access::Barrier));
        let group = own.first().copied();
        let also = own.get(1).copied();
        for p in paths {
            if covers {
                remove_subtree(&mut st.changing, &p);
                remove_subtree(&mut st.reading, &p);
            }
            let map = if op.mutates {
                &mut st.changing
            } else {
                &mut st.reading
            };
            map.entry(p.clone())
                .or_default()
                .groups
                .entry(group)
                .or_default()
                .insert(
                    seq,
                    PathEntry {
                        also,
                        done: done.clone(),
                    },
                );
            places.push(Place::Path {
                changing: op.mutates,
                key: p,
                group,
            });
        }
        Ticket {
            seq,
            waits,
            done,
            places,
            owner: self.clone(),
        }
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        let st = self.state.lock().unwrap();
        let chains: usize = st
            .chains
            .values()
            .map(|c| c.barrier.iter().count() + c.reads.len() + c.writes.len())
            .sum();
        let paths: usize = st
            .changing
            .values()
            .chain(st.reading.values())
            .flat_map(|n| n.groups.values())
            .map(|g| g.len())
            .sum();
        chains + paths + st.live.len() + st.fences.len()
    }
}

impl State {
    fn forget(&mut self, seq: u64, places: &[Place]) {
        self.live.remove(&seq);
        self.fences.remove(&seq);
        for place in places {
            match place {
                Place::Chain(h, slot) => {
                    let Some(chain) = self.chains.get_mut(h) else {
                        continue;
                    };
                    match slot {
                        Slot::Barrier => {
                            if chain.barrier.as_ref().is_some_and(|(s, _)| *s == seq) {
                                chain.barrier = None;
                            }
                        }
                        Slot::Read(o) => {
                            chain.reads.remove(&(*o, seq));
                        }
                        Slot::Write(o) => {
                            chain.writes.remove(&(*o, seq));
                        }
                    }
                    if chain.is_empty() {
                        self.chains.remove(h);
                    }
                }
                Place::Path {
                    changing,
                    key,
                    group,
                } => {
                    let map = if *changing {
                        &mut self.changing
                    } else {
                        &mut self.reading
                    };
                    let Some(node) = map.get_mut(key) else {
                        continue;
                    };
                    if let Some(entries) = node.groups.get_mut(group) {
                        entries.remove(&seq);
                        if entries.is_empty() {
                            node.groups.remove(group);
                        }
                    }
                    if node.groups.is_empty() {
                        map.remove(key);
                    }
                }
            }
        }
        // Fences behind which no earlier request is left.
        let first = self.live.first().copied().unwrap_or(u64::MAX);
        while let Some(entry) = self.fences.first_entry() {
            if *entry.key() > first {
                break;
            }
            entry.remove().close();
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
        st.forget(self.seq, &self.places);
        drop(st);
        self.done.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sftp::handles::{DirCursor, HandleKind, HandleTable};
    use std::time::Duration;

    fn dir_entry() -> HandleKind {
        HandleKind::Dir(Mutex::new(DirCursor::empty(RelPath::root())))
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

    fn handle(t: &HandleTable, path: &str) -> Arc<HandleEntry> {
        let h = t.insert(dir_entry(), p(path), None, None).ok().unwrap();
        t.get(&h).unwrap()
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
    fn ancestors_and_descendant_ranges() {
        let a: Vec<&[u8]> = ancestors_and_self(b"a/b/c").collect();
        assert_eq!(a, vec![&b""[..], b"a", b"a/b", b"a/b/c"]);
        let r: Vec<&[u8]> = ancestors_and_self(b"").collect();
        assert_eq!(r, vec![&b""[..]]);
        let mut m: BTreeMap<Vec<u8>, ()> = BTreeMap::new();
        for k in ["", "a", "a-b", "a/b", "a/b/c", "a0", "ab", "b"] {
            m.insert(k.as_bytes().to_vec(), ());
        }
        let under_a: Vec<&[u8]> = m.range(below(b"a")).map(|(k, _)| k.as_slice()).collect();
        assert_eq!(under_a, vec![&b"a/b"[..], b"a/b/c"]);
        assert_eq!(m.range(below(b"")).count(), 7);
    }

    #[tokio::test]
    async fn barrier_waits_for_earlier_and_blocks_later() {
        let t = HandleTable::new(4);
        let e = handle(&t, "f");
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
        drop(late);
        assert_eq!(seq.entries(), 0, "nothing kept once all are done");
    }

    #[tokio::test]
    async fn overlaps_are_found_whatever_the_lengths() {
        let t = HandleTable::new(4);
        let e = handle(&t, "f");
        let seq = Arc::new(Sequencer::default());
        // A long write, then short ones after it.
        let long = seq.register(on_handle(&e, Access::Write(0, 1 << 20), true));
        let short = seq.register(on_handle(&e, Access::Write((2 << 20) + 5, 1), true));
        let mut r_mid = seq.register(on_handle(&e, Access::Read(700_000, 10), false));
        let mut r_short = seq.register(on_handle(&e, Access::Read(2 << 20, 10), false));
        let mut r_none = seq.register(on_handle(&e, Access::Read(1 << 20, 100), false));
        let mut w_over_read = seq.register(on_handle(&e, Access::Write(1 << 20, 1), true));
        assert!(blocked(&mut r_mid).await, "inside the long write");
        assert!(blocked(&mut r_short).await, "overlaps the short write");
        assert!(!blocked(&mut r_none).await, "between the two");
        assert!(
            blocked(&mut w_over_read).await,
            "a write over an earlier read"
        );
        drop(r_none);
        assert!(!blocked(&mut w_over_read).await);
        drop(long);
        assert!(!blocked(&mut r_mid).await);
        assert!(blocked(&mut r_short).await);
        drop(short);
        assert!(!blocked(&mut r_short).await);
    }

    #[tokio::test]
    async fn path_requests_are_ordered_with_related_changes() {
        let t = HandleTable::new(4);
        let e = handle(&t, "d/f");
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

    #[tokio::test]
    async fn other_handles_of_a_path_are_ordered_by_path_own_by_access() {
        let t = HandleTable::new(4);
        let (a, b) = (handle(&t, "f"), handle(&t, "f"));
        let seq = Arc::new(Sequencer::default());
        let w = seq.register(on_handle(&a, Access::Write(0, 10), true));
        // The same handle reading elsewhere: free; another handle: ordered.
        let mut own = seq.register(on_handle(&a, Access::Read(50, 10), false));
        let mut other = seq.register(on_handle(&b, Access::Read(50, 10), false));
        assert!(!blocked(&mut own).await);
        assert!(blocked(&mut other).await);
        drop(w);
        assert!(!blocked(&mut other).await);
    }

    #[tokio::test]
    async fn a_change_stands_for_what_it_waited_for() {
        let t = HandleTable::new(4);
        let e = handle(&t, "d/f");
        let seq = Arc::new(Sequencer::default());
        let write = seq.register(on_handle(&e, Access::Write(0, 1), true));
        let reads: Vec<Ticket> = (0..10)
            .map(|i| seq.register(on_path(&format!("d/g{i}"), false)))
            .collect();
        // A rename of d waits for all of them, then stands for them.
        let mut rename = seq.register(on_path("d", true));
        assert_eq!(rename.waits.len(), 11);
        let mut stat = seq.register(on_path("d/g3", false));
        assert_eq!(stat.waits.len(), 1, "only the rename");
        let mut later_change = seq.register(on_path("d/x", true));
        assert_eq!(later_change.waits.len(), 1);
        assert!(blocked(&mut rename).await);
        drop(reads);
        drop(write);
        rename.wait().await;
        assert!(blocked(&mut stat).await);
        drop(rename);
        stat.wait().await;
        later_change.wait().await;
    }

    #[tokio::test]
    async fn barriers_chain_and_floods_cost_no_more_than_their_count() {
        let t = HandleTable::new(4);
        let e = handle(&t, "f");
        let seq = Arc::new(Sequencer::default());
        // READs that never finish, then 20,000 FSTATs behind them.
        let reads: Vec<Ticket> = (0..64)
            .map(|i| seq.register(on_handle(&e, Access::Read(i << 18, 1 << 18), false)))
            .collect();
        let stats: Vec<Ticket> = (0..20_000)
            .map(|_| seq.register(on_handle(&e, Access::Barrier, false)))
            .collect();
        // The first waits behind a fence (more than MAX_WAITS reads), each
        // later one behind its predecessor only.
        assert!(stats.iter().all(|s| s.waits.len() == 1));
        // A STAT of the path (the FSTATs change nothing) is not held up.
        let mut stat = seq.register(on_path("f", false));
        assert!(!blocked(&mut stat).await);
        drop(stat);
        // Each one's wait ends once the ones before it are done.
        let mut stats = stats;
        let mut last = stats.pop().unwrap();
        assert!(blocked(&mut last).await);
        drop(reads);
        assert!(blocked(&mut last).await);
        drop(stats);
        last.wait().await;
        drop(last);
        assert_eq!(seq.entries(), 0);
    }

    #[tokio::test]
    async fn a_fence_waits_for_everything_earlier_and_nothing_later() {
        let seq = Arc::new(Sequencer::default());
        let t = HandleTable::new(4);
        let e = handle(&t, "f");
        let unrelated = seq.register(on_path("elsewhere", false));
        // More than MAX_WAITS earlier reads of distinct files below d.
        let reads: Vec<Ticket> = (0..MAX_WAITS + 1)
            .map(|i| seq.register(on_path(&format!("d/f{i}"), false)))
            .collect();
        let mut change = seq.register(on_path("d", true));
        assert_eq!(change.waits.len(), 1, "a fence");
        let mut after = seq.register(on_handle(&e, Access::Read(0, 1), false));
        drop(reads);
        assert!(
            blocked(&mut change).await,
            "still behind the unrelated read"
        );
        assert!(!blocked(&mut after).await, "a later request is not fenced");
        drop(unrelated);
        change.wait().await;
    }
}
