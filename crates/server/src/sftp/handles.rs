//! The handle table: what each handle refers to, and the order of its
//! replies. How requests are ordered is in [`super::sequencer`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ferry_vfs::backend::RelPath;
use ferry_vfs::{Listing, VfsFile};

use super::order::Lane;
use crate::counts::{KeyedCounts, KeyedSlot};

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

/// Open files, every session of the server together, against a limit
/// below the process's open-file limit: descriptors stay in reserve for
/// new connections, the file cache and the stores, however many files
/// clients open. One user may hold at most half of them, so one user
/// cannot take them all.
#[derive(Debug)]
pub struct OpenFiles {
    limit: usize,
    open: AtomicUsize,
    users: Arc<KeyedCounts>,
    /// When a refusal was last logged (seconds since `start`, plus one).
    logged: AtomicU64,
    start: std::time::Instant,
}

/// Why a file could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilesFull {
    /// The server's limit.
    Server,
    /// The user's share.
    User,
}

impl OpenFiles {
    /// A budget of `limit` open files.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(OpenFiles {
            limit,
            open: AtomicUsize::new(0),
            users: Arc::default(),
            logged: AtomicU64::new(0),
            start: std::time::Instant::now(),
        })
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Files open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A place for one more open file of `user`, unless the server's
    /// limit or the user's share is reached (logged at most once a
    /// minute).
    pub fn try_take(self: &Arc<Self>, user: &str) -> Result<FileSlot, FilesFull> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        if taken.is_err() {
            self.log_refusal(|| {
                tracing::warn!(
                    "{} files open, the server's limit (the open-file limit less a reserve for --max-connections): OPENs are refused until some close",
                    self.limit
                )
            });
            return Err(FilesFull::Server);
        }
        match self.users.take(user, (self.limit / 2).max(1)) {
            Ok(user) => Ok(FileSlot {
                files: self.clone(),
                _user: user,
            }),
            Err(mine) => {
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.log_refusal(|| {
                    tracing::warn!(
                        "user {user:?} has {mine} files open, half the server's limit of {}: its OPENs are refused until some close",
                        self.limit
                    )
                });
                Err(FilesFull::User)
            }
        }
    }

    /// Log a refusal, unless one was logged less than a minute ago.
    fn log_refusal(&self, log: impl FnOnce()) {
        let now = self.start.elapsed().as_secs() + 1;
        let last = self.logged.load(Ordering::Acquire);
        if (last == 0 || now >= last + 60)
            && self
                .logged
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            log();
        }
    }
}

/// One open file's place in [`OpenFiles`], given back when its handle
/// goes.
#[derive(Debug)]
pub struct FileSlot {
    files: Arc<OpenFiles>,
    _user: KeyedSlot,
}

impl Drop for FileSlot {
    fn drop(&mut self) {
        self.files.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open handle.
pub struct HandleEntry {
    /// The file or directory.
    pub kind: HandleKind,
    /// The path it was opened at.
    pub path: RelPath,
    /// The order its requests' replies leave in.
    pub replies: Lane,
    /// An open file's transfer, for the access log.
    pub transfer: Option<crate::access::Transfer>,
    /// An open file's place in the server's open files.
    _slot: Option<FileSlot>,
    /// Its count in the connection's open handles and the metrics.
    _counted: Counted,
}

/// One open handle counted in its connection's [`crate::access::Traffic`]
/// and the metrics, while it lives.
struct Counted {
    traffic: Option<Arc<crate::access::Traffic>>,
    _metric: Option<ferry_metrics::Active>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(t) = &self.traffic {
            t.handle_closed();
        }
    }
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
    traffic: Option<Arc<crate::access::Traffic>>,
    metrics: Option<Arc<ferry_metrics::Metrics>>,
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
            traffic: None,
            metrics: None,
        }
    }

    /// Count open handles in `traffic` (the connection's) and `metrics`.
    pub fn counted(
        mut self,
        traffic: Arc<crate::access::Traffic>,
        metrics: Option<Arc<ferry_metrics::Metrics>>,
    ) -> Self {
        self.traffic = Some(traffic);
        self.metrics = metrics;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<HandleEntry>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a handle; returns its wire form.
    pub fn insert(
        &self,
        kind: HandleKind,
        path: RelPath,
        slot: Option<FileSlot>,
        transfer: Option<crate::access::Transfer>,
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
                transfer,
                _slot: slot,
                _counted: {
                    if let Some(t) = &self.traffic {
                        t.handle_opened();
                    }
                    Counted {
                        traffic: self.traffic.clone(),
                        _metric: self.metrics.as_ref().map(|m| m.open_file()),
                    }
                },
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
    fn open_files_are_counted_server_wide_per_user_and_given_back() {
        let files = OpenFiles::new(4);
        let (a, b) = (HandleTable::new(10), HandleTable::new(10));
        let take = |t: &HandleTable, user| {
            t.insert(
                dir_entry(),
                RelPath::root(),
                files.try_take(user).ok(),
                None,
            )
            .ok()
            .unwrap()
        };
        let a1 = take(&a, "alice");
        take(&a, "alice");
        // Half the server's files for one user, whatever its sessions.
        assert_eq!(files.try_take("alice").unwrap_err(), FilesFull::User);
        take(&b, "bob");
        take(&b, "bob");
        assert_eq!(files.open(), 4);
        assert_eq!(files.try_take("carol").unwrap_err(), FilesFull::Server);
        drop(a.remove(&a1));
        assert!(files.try_take("alice").is_ok());
        drop((a.drain(), b.drain()));
        assert_eq!(files.open(), 0);
        assert!(files.users.is_empty());
    }

    #[test]
    fn table_limits_and_lookup() {
        let t = HandleTable::new(2);
        let a = t
            .insert(dir_entry(), RelPath::root(), None, None)
            .ok()
            .unwrap();
        let b = t
            .insert(dir_entry(), RelPath::root(), None, None)
            .ok()
            .unwrap();
        assert_ne!(a, b);
        assert!(t.insert(dir_entry(), RelPath::root(), None, None).is_err());
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
