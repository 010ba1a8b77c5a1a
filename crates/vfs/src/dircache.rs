//! The directory cache (`--dir-cache-time`).
//!
//! Listings are kept for `ttl`; a STAT or LSTAT is answered from the
//! listing of its parent while that is fresh, so a client that lists a
//! directory and then stats each entry (sshfs, WinSCP, rclone) costs one
//! backend listing, not one request per file. Every change made through
//! Ferry forgets what it touched before it returns, so clients see their
//! own changes at once; changes made behind Ferry's back show after `ttl`,
//! or at once where the backend reports them (the local backend does).
//!
//! On stores where every request is a round trip (object stores, remote
//! servers), the answers to single lookups are kept too, for the same
//! time: a path found, or found missing. A client that STATs a name and
//! then creates it (OpenSSH's `put`, rclone, WinSCP) then costs one
//! lookup, not one for its STAT and another for the OPEN's checks, and a
//! directory that was looked up once need not be again for every file put
//! into it. A change forgets the path, and the paths above it that were
//! found missing (a file created below a prefix makes it exist).
//!
//! A listing or a lookup that was being fetched while something related
//! changed (the same path, or one above or below it) is not stored: a
//! generation counter and a short log of the latest changes tell, so a
//! slow answer cannot bring back what a change just forgot, while changes
//! elsewhere (uploads landing in other files) do not waste it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_backend::{DirEntry, Metadata, RelPath};

/// Directories kept at most; beyond, the oldest half is dropped.
const MAX_DIRS: usize = 50_000;
/// Entries kept at most, over all directories (about 150 bytes each).
const MAX_ENTRIES: usize = 1_000_000;
/// Single lookups kept at most; beyond, all are dropped.
const MAX_PATHS: usize = 200_000;
/// Changes remembered for telling whether an answer fetched meanwhile is
/// still good; an answer older than these is dropped.
const RECENT_CHANGES: usize = 128;

pub(crate) struct DirCache {
    ttl: Duration,
    /// Keep single lookups too (see the module docs).
    remember_paths: bool,
    dirs: Mutex<Dirs>,
    /// Bumped by every forget.
    generation: AtomicU64,
}

/// The cached listings, with how many entries they hold in all.
#[derive(Default)]
struct Dirs {
    map: BTreeMap<RelPath, Cached>,
    entries: usize,
    /// Single lookups: [without following a final link, following it].
    paths: BTreeMap<RelPath, [Option<Known>; 2]>,
    /// The latest changes: the generation each made, its path, and
    /// whether what is below that path is untouched by it.
    recent: std::collections::VecDeque<Change>,
}

struct Change {
    generation: u64,
    path: RelPath,
    /// Only the path itself changed (a prefix became a directory on the
    /// store): what was fetched below it still holds.
    below_untouched: bool,
}

/// What one lookup found, and when.
struct Known {
    at: Instant,
    meta: Option<Metadata>,
}

impl Dirs {
    fn insert(&mut self, dir: RelPath, c: Cached) {
        self.entries += c.entries.len();
        if let Some(old) = self.map.insert(dir, c) {
            self.entries -= old.entries.len();
        }
    }

    fn remove(&mut self, dir: &RelPath) {
        if let Some(old) = self.map.remove(dir) {
            self.entries -= old.entries.len();
        }
    }

    /// A change to `path` made generation `generation`.
    fn changed(&mut self, generation: u64, path: RelPath) {
        self.log(Change {
            generation,
            path,
            below_untouched: false,
        });
    }

    fn log(&mut self, change: Change) {
        if self.recent.len() >= RECENT_CHANGES {
            self.recent.pop_front();
        }
        self.recent.push_back(change);
    }

    /// Nothing related to `path` changed after generation `since` (now
    /// `now`): the same path, or one above it, or one below it unless
    /// `below_ok` (a directory found to exist still does when something
    /// changes inside it).
    fn unchanged(&self, path: &RelPath, since: u64, now: u64, below_ok: bool) -> bool {
        if since == now {
            return true;
        }
        if since > now {
            return false;
        }
        match self.recent.front() {
            Some(first) if first.generation <= since + 1 => {}
            _ => return false,
        }
        self.recent
            .iter()
            .filter(|c| c.generation > since)
            .all(|c| {
                let p = &c.path;
                let same = path == p;
                let above = path.starts_with(p) && !same;
                let below = p.starts_with(path) && !same;
                !(same || (above && !c.below_untouched) || (below && !below_ok))
            })
    }

    fn clear(&mut self) {
        self.map.clear();
        self.entries = 0;
        self.paths.clear();
    }

    /// `path` changed: its own lookups go, and the lookups above it that
    /// found nothing.
    fn forget_path(&mut self, path: &RelPath) {
        if self.paths.is_empty() {
            return;
        }
        self.paths.remove(path);
        let mut up = path.parent();
        while let Some(dir) = up {
            if let Some(known) = self.paths.get_mut(&dir) {
                for k in known.iter_mut() {
                    if k.as_ref().is_some_and(|k| k.meta.is_none()) {
                        *k = None;
                    }
                }
            }
            up = dir.parent();
        }
    }

    fn retain(&mut self, keep: impl FnMut(&RelPath, &mut Cached) -> bool) {
        self.map.retain(keep);
        self.entries = self.map.values().map(|c| c.entries.len()).sum();
    }
}

struct Cached {
    at: Instant,
    entries: Arc<Vec<DirEntry>>,
}

/// What the cache knows of one path.
pub(crate) enum Lookup {
    /// Not known: ask the backend.
    Unknown,
    /// The parent's fresh listing has no such name.
    Missing,
    /// The parent's fresh listing has it.
    Found(Metadata),
}

impl DirCache {
    /// Listings (and with `remember_paths`, single lookups) kept for `ttl`.
    pub(crate) fn new(ttl: Duration, remember_paths: bool) -> Self {
        DirCache {
            ttl,
            remember_paths,
            dirs: Mutex::new(Dirs::default()),
            generation: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Dirs> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long listings are kept.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The generation to pass to [`DirCache::put`] for a listing about to
    /// be fetched.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A fresh listing of `dir`.
    pub(crate) fn get(&self, dir: &RelPath) -> Option<Arc<Vec<DirEntry>>> {
        if !self.enabled() {
            return None;
        }
        let dirs = self.lock();
        let c = dirs.map.get(dir)?;
        (c.at.elapsed() < self.ttl).then(|| c.entries.clone())
    }

    /// Keep a listing fetched when the generation was `generation`.
    pub(crate) fn put(&self, dir: &RelPath, entries: Arc<Vec<DirEntry>>, generation: u64) {
        if !self.enabled() {
            return;
        }
        let mut dirs = self.lock();
        // Checked under the lock: forgets also take it.
        if !dirs.unchanged(
            dir,
            generation,
            self.generation.load(Ordering::Acquire),
            false,
        ) {
            return;
        }
        self.keep(
            &mut dirs,
            dir,
            Cached {
                at: Instant::now(),
                entries,
            },
        );
    }

    /// Store a listing, making room within the limits first.
    fn keep(&self, dirs: &mut Dirs, dir: &RelPath, c: Cached) {
        let full = |d: &Dirs| d.map.len() >= MAX_DIRS || d.entries + c.entries.len() > MAX_ENTRIES;
        if full(dirs) {
            let ttl = self.ttl;
            dirs.retain(|_, c| c.at.elapsed() < ttl / 2);
            if full(dirs) {
                dirs.clear();
            }
        }
        dirs.insert(dir.clone(), c);
    }

    /// Keep what a lookup of `path` found (`follow`: following a final
    /// link), begun when the generation was `generation`.
    pub(crate) fn remember(
        &self,
        path: &RelPath,
        follow: bool,
        meta: Option<Metadata>,
        generation: u64,
    ) {
        if !self.remember_paths || !self.enabled() || path.is_root() {
            return;
        }
        let mut dirs = self.lock();
        let now = self.generation.load(Ordering::Acquire);
        let exists = meta.is_some();
        if !dirs.unchanged(path, generation, now, exists) {
            return;
        }
        if dirs.paths.len() >= MAX_PATHS {
            dirs.paths.clear();
        }
        dirs.paths.entry(path.clone()).or_default()[follow as usize] = Some(Known {
            at: Instant::now(),
            meta,
        });
    }

    /// What the cache knows of `path`: its parent's fresh listing, else a
    /// fresh lookup of it (`follow`: following a final link).
    pub(crate) fn lookup(&self, path: &RelPath, follow: bool) -> Lookup {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Lookup::Unknown;
        };
        if let Some(entries) = self.get(&parent) {
            return match entries.iter().find(|e| e.name == name) {
                Some(e) => Lookup::Found(e.meta.clone()),
                None => Lookup::Missing,
            };
        }
        if !self.remember_paths || !self.enabled() {
            return Lookup::Unknown;
        }
        let dirs = self.lock();
        match dirs
            .paths
            .get(path)
            .and_then(|k| k[follow as usize].as_ref())
        {
            Some(k) if k.at.elapsed() < self.ttl => match &k.meta {
                Some(m) => Lookup::Found(m.clone()),
                None => Lookup::Missing,
            },
            _ => Lookup::Unknown,
        }
    }

    /// `path` changed: forget its listing (if a directory) and its parent's.
    pub(crate) fn forget(&self, path: &RelPath) {
        let mut dirs = self.lock();
        let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        dirs.changed(g, path.clone());
        dirs.forget_path(path);
        if dirs.map.is_empty() {
            return;
        }
        dirs.remove(path);
        if let Some(parent) = path.parent() {
            dirs.remove(&parent);
        }
    }

    /// What is known of `path` itself goes (an upload is about to commit
    /// there); the listing it is in stays, as the file shows from the
    /// cache until then.
    pub(crate) fn forget_lookups(&self, path: &RelPath) {
        let mut dirs = self.lock();
        let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        dirs.changed(g, path.clone());
        dirs.forget_path(path);
    }

    /// A file was committed at `path` through Ferry, and the store now
    /// has `meta` there: the listing it is in, if kept, gets the entry
    /// (a directory the client fills keeps answering lookups of new names
    /// without a request); what was known of `path` goes.
    pub(crate) fn committed(&self, path: &RelPath, meta: &Metadata) {
        if meta.mtime.is_none() {
            // Not all a stat would say.
            return self.forget(path);
        }
        let mut dirs = self.lock();
        let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        dirs.changed(g, path.clone());
        dirs.forget_path(path);
        dirs.remove(path);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        let Some(c) = dirs.map.get_mut(&parent) else {
            return;
        };
        let entries = Arc::make_mut(&mut c.entries);
        let added = match entries.iter_mut().find(|e| e.name == name) {
            Some(e) => {
                e.meta = meta.clone();
                false
            }
            None => {
                entries.push(DirEntry {
                    name: name.to_vec(),
                    meta: meta.clone(),
                });
                true
            }
        };
        if added {
            dirs.entries += 1;
        }
    }

    /// `dir` was made by a client `age` ago where the store had nothing:
    /// its listing is known (empty) until it would have expired.
    pub(crate) fn made_empty(&self, dir: &RelPath, age: Duration) {
        if !self.enabled() || age >= self.ttl {
            return;
        }
        let Some(at) = Instant::now().checked_sub(age) else {
            return;
        };
        let mut dirs = self.lock();
        self.keep(
            &mut dirs,
            dir,
            Cached {
                at,
                entries: Arc::new(Vec::new()),
            },
        );
    }

    /// `dir` exists on the store now (a file was committed below it, where
    /// it was a directory only Ferry knew of): the listing it is in goes,
    /// and a lookup of it finds `meta`; what is known below it stays.
    pub(crate) fn became_directory(&self, dir: &RelPath, meta: Metadata) {
        let mut dirs = self.lock();
        let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        dirs.log(Change {
            generation: g,
            path: dir.clone(),
            below_untouched: true,
        });
        dirs.forget_path(dir);
        if let Some(parent) = dir.parent() {
            dirs.remove(&parent);
        }
        if self.remember_paths && self.enabled() && !dir.is_root() {
            if dirs.paths.len() >= MAX_PATHS {
                dirs.paths.clear();
            }
            let known = || {
                Some(Known {
                    at: Instant::now(),
                    meta: Some(meta.clone()),
                })
            };
            dirs.paths.insert(dir.clone(), [known(), known()]);
        }
    }

    /// The listings `path` is in (and its own, if a directory) changed;
    /// what single lookups found of `path` still holds.
    pub(crate) fn forget_listings(&self, path: &RelPath) {
        let mut dirs = self.lock();
        let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        dirs.changed(g, path.clone());
        dirs.remove(path);
        if let Some(parent) = path.parent() {
            dirs.remove(&parent);
        }
    }

    /// `path` and everything below it changed (a directory renamed or
    /// removed).
    pub(crate) fn forget_tree(&self, path: &RelPath) {
        let mut dirs = self.lock();
        let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        dirs.changed(g, path.clone());
        if path.is_root() {
            dirs.clear();
            return;
        }
        for k in below(&dirs.map, path) {
            dirs.remove(&k);
        }
        if let Some(parent) = path.parent() {
            dirs.remove(&parent);
        }
        for k in below(&dirs.paths, path) {
            dirs.paths.remove(&k);
        }
        dirs.forget_path(path);
    }

    /// Forget everything (SIGHUP, `vfs/forget` without arguments).
    pub(crate) fn clear(&self) {
        let mut dirs = self.lock();
        let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        dirs.changed(g, RelPath::root());
        dirs.clear();
    }

    /// How many directories are cached (for tests and stats).
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// How many entries the cached listings hold.
    pub(crate) fn entries(&self) -> usize {
        self.lock().entries
    }
}

/// The keys of `map` at or below `path`. Keys sharing `path`'s bytes as a
/// prefix sort together; of those, the ones below it as a path count.
fn below<V>(map: &BTreeMap<RelPath, V>, path: &RelPath) -> Vec<RelPath> {
    map.range(path.clone()..)
        .map(|(k, _)| k)
        .take_while(|k| k.as_bytes().starts_with(path.as_bytes()))
        .filter(|k| k.starts_with(path))
        .cloned()
        .collect()
}
