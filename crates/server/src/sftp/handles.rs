//! The handle table: what each handle refers to, and the order of its
//! replies. How requests are ordered is in [`super::sequencer`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use ferry_vfs::backend::RelPath;
use ferry_vfs::{Listing, VfsFile};

use super::order::Lane;

/// An open directory being listed.
pub struct DirCursor {
    /// The directory.
    pub path: RelPath,
    /// Its entries, read at OPENDIR (shared with every other handle of
    /// the directory opened while the listing was the same).
    pub entries: Listing,
    /// How many were sent.
    pub pos: usize,
}

impl DirCursor {
    /// A cursor at the start of `entries`.
    pub fn new(path: RelPath, entries: Listing) -> Self {
        DirCursor {
            path,
            entries,
            pos: 0,
        }
    }

    /// A cursor over nothing.
    #[cfg(test)]
    pub fn empty(path: RelPath) -> Self {
        Self::new(path, Listing::default())
    }
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

    fn dir_entry() -> HandleKind {
        HandleKind::Dir(Mutex::new(DirCursor::empty(RelPath::root())))
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
}
