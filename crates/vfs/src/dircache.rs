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
//! A listing that was being fetched while something changed is not stored
//! (a generation counter), so a slow listing cannot bring back what a
//! change just forgot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_backend::{DirEntry, Metadata, RelPath};

/// Directories kept at most; beyond, the oldest half is dropped.
const MAX_DIRS: usize = 50_000;
/// Entries kept at most, over all directories (about 150 bytes each).
const MAX_ENTRIES: usize = 1_000_000;

pub(crate) struct DirCache {
    ttl: Duration,
    dirs: Mutex<Dirs>,
    /// Bumped by every forget.
    generation: AtomicU64,
}

/// The cached listings, with how many entries they hold in all.
#[derive(Default)]
struct Dirs {
    map: BTreeMap<RelPath, Cached>,
    entries: usize,
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

    fn clear(&mut self) {
        self.map.clear();
        self.entries = 0;
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
    pub(crate) fn new(ttl: Duration) -> Self {
        DirCache {
            ttl,
            dirs: Mutex::new(Dirs::default()),
            generation: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Dirs> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
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
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let full = |d: &Dirs| d.map.len() >= MAX_DIRS || d.entries + entries.len() > MAX_ENTRIES;
        if full(&dirs) {
            let ttl = self.ttl;
            dirs.retain(|_, c| c.at.elapsed() < ttl / 2);
            if full(&dirs) {
                dirs.clear();
            }
        }
        dirs.insert(
            dir.clone(),
            Cached {
                at: Instant::now(),
                entries,
            },
        );
    }

    /// What the parent's listing says of `path`.
    pub(crate) fn lookup(&self, path: &RelPath) -> Lookup {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Lookup::Unknown;
        };
        let Some(entries) = self.get(&parent) else {
            return Lookup::Unknown;
        };
        match entries.iter().find(|e| e.name == name) {
            Some(e) => Lookup::Found(e.meta.clone()),
            None => Lookup::Missing,
        }
    }

    /// `path` changed: forget its listing (if a directory) and its parent's.
    pub(crate) fn forget(&self, path: &RelPath) {
        let mut dirs = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        if dirs.map.is_empty() {
            return;
        }
        dirs.remove(path);
        if let Some(parent) = path.parent() {
            dirs.remove(&parent);
        }
    }

    /// `path` and everything below it changed (a directory renamed or
    /// removed).
    pub(crate) fn forget_tree(&self, path: &RelPath) {
        let mut dirs = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        if path.is_root() {
            dirs.clear();
            return;
        }
        // Keys sharing `path`'s bytes as a prefix sort together; of those,
        // the ones below it as a path go.
        let below: Vec<RelPath> = dirs
            .map
            .range(path.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.as_bytes().starts_with(path.as_bytes()))
            .filter(|k| k.starts_with(path))
            .cloned()
            .collect();
        for k in below {
            dirs.remove(&k);
        }
        if let Some(parent) = path.parent() {
            dirs.remove(&parent);
        }
    }

    /// Forget everything (SIGHUP, `vfs/forget` without arguments).
    pub(crate) fn clear(&self) {
        let mut dirs = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        dirs.clear();
    }

    /// How many directories are cached (for tests and stats).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// How many entries the cached listings hold.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.lock().entries
    }
}
