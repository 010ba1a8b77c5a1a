//! Directories only Ferry knows of, on stores without real directories.
//!
//! An object store has no directories, only prefixes of object names: a
//! directory a client makes is empty and would not exist there. Ferry keeps
//! it in its own view until it is removed or a file lands in it (the store
//! then shows it as the prefix of that file); a directory a client empties
//! is kept the same way, since the client still expects it.
//!
//! On a store with real directories all of this is off.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use ferry_backend::{FileType, Metadata, RelPath};

use crate::dircache::DirCache;

/// The directories only Ferry knows of, with when they were made.
pub(crate) struct VirtualDirs {
    /// Off on a store with real directories.
    enabled: bool,
    dirs: Mutex<BTreeMap<RelPath, Made>>,
    /// Listings to forget when a directory stops being only Ferry's.
    dircache: Arc<DirCache>,
}

/// One directory only Ferry knows of.
#[derive(Clone, Copy)]
struct Made {
    at: SystemTime,
    /// Made by a client where the store had nothing (not left behind by
    /// files moving out): the store had nothing below it either.
    empty: bool,
}

impl VirtualDirs {
    pub(crate) fn new(real_directories: bool, dircache: Arc<DirCache>) -> Self {
        VirtualDirs {
            enabled: !real_directories,
            dirs: Mutex::new(BTreeMap::new()),
            dircache,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<RelPath, Made>> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The metadata of `path`, if it is a directory only Ferry knows of.
    pub(crate) fn get(&self, path: &RelPath) -> Option<Metadata> {
        if !self.enabled {
            return None;
        }
        self.lock().get(path).map(|m| dir_meta(m.at))
    }

    /// Is `dir` a directory a client made less than `within` ago, with
    /// nothing landed in it since? The store then has nothing below it
    /// (unless written behind Ferry's back: a directory listed that long
    /// ago would not show that either).
    pub(crate) fn known_empty(&self, dir: &RelPath, within: std::time::Duration) -> bool {
        if !self.enabled {
            return false;
        }
        self.lock()
            .get(dir)
            .is_some_and(|m| m.empty && m.at.elapsed().is_ok_and(|age| age < within))
    }

    /// Those directly inside `dir`.
    pub(crate) fn children(&self, dir: &RelPath) -> Vec<(Vec<u8>, Metadata)> {
        if !self.enabled {
            return Vec::new();
        }
        self.lock()
            .iter()
            .filter(|(p, _)| p.parent().as_ref() == Some(dir))
            .filter_map(|(p, m)| Some((p.file_name()?.to_vec(), dir_meta(m.at))))
            .collect()
    }

    /// Are there none?
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// A client made `path`.
    pub(crate) fn insert(&self, path: &RelPath) {
        if self.enabled {
            let made = Made {
                at: SystemTime::now(),
                empty: true,
            };
            self.lock().insert(path.clone(), made);
        }
    }

    /// A client removed `path`; true if it was one of them.
    pub(crate) fn remove(&self, path: &RelPath) -> bool {
        self.enabled && self.lock().remove(path).is_some()
    }

    /// `from` and those below it moved to `to`.
    pub(crate) fn move_tree(&self, from: &RelPath, to: &RelPath) {
        if !self.enabled {
            return;
        }
        let mut dirs = self.lock();
        let moved: Vec<RelPath> = dirs
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for p in moved {
            if let Some(t) = dirs.remove(&p) {
                if let Some(dest) = p.rebase(from, to) {
                    dirs.insert(dest, t);
                }
            }
        }
    }

    /// A file was committed at `path` (and the store has `committed`
    /// there, when known): the directories above it now exist on the
    /// store, so Ferry stops keeping them; the directory cache learns the
    /// file (see [`DirCache::committed`]). Done under this lock, so two
    /// files landing at once in a new directory both end up in its listing.
    pub(crate) fn landed(&self, path: &RelPath, committed: Option<&Metadata>) {
        let learn = |dc: &DirCache| match committed {
            Some(m) => dc.committed(path, m),
            None => dc.forget(path),
        };
        if !self.enabled {
            learn(&self.dircache);
            return;
        }
        let mut dirs = self.lock();
        let mut p = path.parent();
        while let Some(dir) = p.filter(|d| !d.is_root() && !dirs.is_empty()) {
            if let Some(made) = dirs.remove(&dir) {
                // Its parent's listing was read while it was only ours; it
                // is the directory clients saw.
                self.dircache.became_directory(&dir, dir_meta(made.at));
                if made.empty && committed.is_some() && Some(&dir) == path.parent().as_ref() {
                    // What is below it is what Ferry put there: the file
                    // landing now. (A directory further up holds more than
                    // that file: the directories between, not listed.)
                    if let Ok(age) = made.at.elapsed() {
                        self.dircache.made_empty(&dir, age);
                    }
                }
            }
            p = dir.parent();
        }
        // Still under the lock (see above).
        learn(&self.dircache);
    }

    /// `path` left its directory: the directories above it may have had
    /// nothing else, and would vanish from the store with it.
    pub(crate) fn emptied(&self, path: &RelPath) {
        if !self.enabled {
            return;
        }
        let now = SystemTime::now();
        let mut dirs = self.lock();
        let mut p = path.parent();
        while let Some(dir) = p.filter(|d| !d.is_root()) {
            p = dir.parent();
            dirs.entry(dir).or_insert(Made {
                at: now,
                empty: false,
            });
        }
    }
}

/// The metadata of a directory made at `mtime`.
pub(crate) fn dir_meta(mtime: SystemTime) -> Metadata {
    Metadata {
        file_type: FileType::Dir,
        size: 0,
        mtime: Some(mtime),
        atime: None,
        permissions: None,
        owner: None,
        change: None,
    }
}
