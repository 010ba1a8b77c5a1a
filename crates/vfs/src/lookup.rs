//! The namespace as a session sees it: one lookup, with one order of
//! precedence, used by stat, lstat, read_dir, open, the existence checks of
//! changes, and the exec hashes.
//!
//! For a path, in this order:
//! 1. a file changed in the on-disk cache and not uploaded yet;
//! 2. this session's own upload in progress (a temporary file, or a
//!    streamed upload to an object store);
//! 3. the store: the parent's cached listing while it is fresh (unless the
//!    path is open for writing, when its size and time change under the
//!    listing), else a request;
//! 4. a directory only Ferry knows of (see [`crate::virtual_dirs`]).
//!
//! A directory listing applies the same order to each of its entries.
//! The filters (which names are served) are applied on top, in
//! [`crate::filtering`]: every lookup and listing goes through them.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_backend::{BackendError, DirEntry, ErrorKind, FileType, Metadata, RelPath};

use crate::{dircache, file, Attr, Inner, Result, VfsError};

/// A directory's entries as a session sees them, sorted by name. Shared:
/// every OPENDIR of a directory whose listing has not changed gets the same
/// one.
pub type Listing = Arc<Vec<(Vec<u8>, Attr)>>;

/// Listings handed out, by directory, with the store's listing each was
/// made from. Held weakly: a view lives as long as some handle reads it.
#[derive(Default)]
pub(crate) struct Views {
    map: std::sync::Mutex<HashMap<RelPath, View>>,
}

struct View {
    from: std::sync::Weak<Vec<DirEntry>>,
    view: std::sync::Weak<Vec<(Vec<u8>, Attr)>>,
}

/// Directories remembered before the dead ones are swept out.
const VIEWS_SWEEP: usize = 1024;

impl Views {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RelPath, View>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The view of `dir` made from `from`, if one is still held.
    fn get(&self, dir: &RelPath, from: &Arc<Vec<DirEntry>>) -> Option<Listing> {
        let map = self.lock();
        let v = map.get(dir)?;
        // The weak reference keeps the allocation, so the address cannot
        // have been reused by another listing.
        if !std::ptr::eq(v.from.as_ptr(), Arc::as_ptr(from)) {
            return None;
        }
        v.view.upgrade()
    }

    fn put(&self, dir: &RelPath, from: &Arc<Vec<DirEntry>>, view: &Listing) {
        let mut map = self.lock();
        if map.len() >= VIEWS_SWEEP {
            map.retain(|_, v| v.view.strong_count() > 0);
        }
        map.insert(
            dir.clone(),
            View {
                from: Arc::downgrade(from),
                view: Arc::downgrade(view),
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// What a path is, and where that was found.
pub(crate) enum Found {
    /// A file changed in the on-disk cache, not uploaded yet.
    Cached(Metadata),
    /// This session's upload in progress, to a temporary file.
    Upload {
        /// The temporary file holding it.
        temp: RelPath,
        /// Its metadata.
        meta: Metadata,
    },
    /// This session's streamed upload in progress (nothing stored yet).
    Stream(Metadata),
    /// The store's.
    Store(Metadata),
    /// A directory only Ferry knows of.
    Virtual(Metadata),
}

impl Found {
    /// The metadata, wherever it came from.
    pub(crate) fn meta(&self) -> &Metadata {
        match self {
            Found::Cached(m)
            | Found::Upload { meta: m, .. }
            | Found::Stream(m)
            | Found::Store(m)
            | Found::Virtual(m) => m,
        }
    }

    /// The metadata, wherever it came from.
    pub(crate) fn into_meta(self) -> Metadata {
        match self {
            Found::Cached(m)
            | Found::Upload { meta: m, .. }
            | Found::Stream(m)
            | Found::Store(m)
            | Found::Virtual(m) => m,
        }
    }
}

/// May a lookup answer from the cached listing of the parent?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Yes, while it is fresh (stat, lstat).
    Listing,
    /// No: ask the store (checks before a change; hashing, whose cache is
    /// keyed by what the store says now).
    Store,
}

impl Inner {
    /// What `path` is as `viewer` sees it, or `None`; `follow` follows a
    /// final symbolic link. See the module docs for the order. The filters
    /// are not applied: [`Inner::lookup`] is this with them.
    pub(crate) async fn find(
        &self,
        viewer: u64,
        path: &RelPath,
        follow: bool,
        fresh: Freshness,
    ) -> Result<Option<Found>> {
        if let Some(m) = self.cache.as_ref().and_then(|c| c.visible(path)) {
            return Ok(Some(Found::Cached(m)));
        }
        if let Some(temp) = self.uploads.temp_for(viewer, path) {
            let meta = if follow {
                self.backend.stat(&temp).await?
            } else {
                self.backend.lstat(&temp).await?
            };
            return Ok(Some(Found::Upload { temp, meta }));
        }
        if let Some(w) = self.uploads.stream_for(viewer, path) {
            return Ok(Some(Found::Stream(w.metadata())));
        }
        let open_for_writing = self.lock_writers().contains_key(path);
        if fresh == Freshness::Listing {
            match self.dircache.lookup(path, follow) {
                dircache::Lookup::Found(m)
                    if !(open_for_writing || (follow && m.file_type == FileType::Symlink)) =>
                {
                    return Ok(Some(Found::Store(m)));
                }
                dircache::Lookup::Missing => return Ok(self.vdirs.get(path).map(Found::Virtual)),
                _ => {}
            }
            // A directory only Ferry knows of answers for itself, and one a
            // client made lately has nothing on the store below it: no
            // request for the check of every file put into it, nor for the
            // STAT of each new name.
            if let Some(m) = self.vdirs.get(path) {
                return Ok(Some(Found::Virtual(m)));
            }
            if path
                .parent()
                .is_some_and(|dir| self.vdirs.known_empty(&dir, self.dircache.ttl()))
            {
                return Ok(None);
            }
        }
        let generation = self.dircache.generation();
        let r = if follow {
            self.backend.stat(path).await
        } else {
            self.backend.lstat(path).await
        };
        // Not while the path is open for writing: its size and time change.
        let keep = !open_for_writing;
        match r {
            Ok(m) => {
                if keep {
                    self.dircache
                        .remember(path, follow, Some(m.clone()), generation);
                }
                Ok(Some(Found::Store(m)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if keep {
                    self.dircache.remember(path, follow, None, generation);
                }
                Ok(self.vdirs.get(path).map(Found::Virtual))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The metadata of `path` as `viewer` sees it (the listing may answer).
    pub(crate) async fn meta(&self, viewer: u64, path: &RelPath, follow: bool) -> Result<Metadata> {
        self.lookup(viewer, path, follow, Freshness::Listing)
            .await?
            .map(Found::into_meta)
            .ok_or(VfsError::NotFound)
    }

    /// What is at `path` for `viewer`, asked of the store (before a
    /// change), or `None`.
    pub(crate) async fn stat_entry(&self, viewer: u64, path: &RelPath) -> Result<Option<Metadata>> {
        Ok(self
            .lookup(viewer, path, true, Freshness::Store)
            .await?
            .map(Found::into_meta))
    }

    /// The entries of directory `dir` as `viewer` sees them, sorted by
    /// name: the store's listing with the same precedence applied to each
    /// name. Ferry's temporary upload files are hidden; a file being
    /// uploaded is listed under its own name with the upload's attributes.
    pub(crate) async fn listing(&self, viewer: u64, dir: &RelPath) -> Result<Listing> {
        if !self.listing_allowed(viewer, dir).await? {
            return Ok(Arc::new(Vec::new()));
        }
        // What only Ferry has (1, 2) is read before the store's listing (3):
        // a file leaves the cache or an upload only once the store has it,
        // so one that lands meanwhile is in one of the two, never neither.
        let cached: Vec<(Vec<u8>, Metadata)> = match &self.cache {
            Some(c) => c.visible_in(dir),
            None => Vec::new(),
        };
        let uploads: HashMap<Vec<u8>, Vec<u8>> = self.uploads.in_dir(viewer, dir);
        let streams: Vec<(Vec<u8>, Metadata)> = self
            .uploads
            .streams_in_dir(viewer, dir)
            .into_iter()
            .map(|(name, w)| (name, w.metadata()))
            .collect();
        let store = match self.list(dir).await {
            Err(e) if e.kind() == ErrorKind::NotFound && self.vdirs.get(dir).is_some() => None,
            r => Some(r?),
        };
        let only_ferrys = self.vdirs.children(dir);
        // A listing that is the store's alone is the same for everyone as
        // long as the store's is: shared, not built again per OPENDIR.
        let no_overlay = cached.is_empty()
            && uploads.is_empty()
            && streams.is_empty()
            && only_ferrys.is_empty()
            && !store.as_ref().is_some_and(|s| {
                s.iter()
                    .any(|e| file::is_temp_name(&e.name) && file::is_live_temp(&e.name))
            });
        let shared = store.as_ref().filter(|_| no_overlay).cloned();
        if let Some(view) = shared.as_ref().and_then(|s| self.views.get(dir, s)) {
            return Ok(view);
        }
        let mut entries: Vec<DirEntry> = store.map(|s| (*s).clone()).unwrap_or_default();
        // Directories only Ferry knows of (4).
        for (name, meta) in only_ferrys {
            if !entries.iter().any(|e| e.name == name) {
                entries.push(DirEntry { name, meta });
            }
        }
        // The store (3), temporary files hidden, and this session's uploads
        // in progress over it (2): temporary name -> final name.
        let mut by_name: std::collections::BTreeMap<Vec<u8>, Attr> = Default::default();
        let mut in_progress = Vec::new();
        for e in entries {
            if !file::is_temp_name(&e.name) {
                by_name.entry(e.name).or_insert_with(|| self.attr(&e.meta));
            } else if !file::is_live_temp(&e.name) {
                // A temporary name nobody here writes is a leftover of an
                // interrupted upload: listed, so that it can be removed;
                // unless the listing is older than the end of an upload
                // that used it (asked of the store: leftovers are rare).
                let Ok(path) = dir.join(&e.name) else {
                    continue;
                };
                if self.backend.stat(&path).await.is_ok() {
                    by_name.entry(e.name).or_insert_with(|| self.attr(&e.meta));
                } else {
                    self.dircache.forget(dir);
                }
            } else if let Some(fin) = uploads.get(&e.name) {
                in_progress.push((fin.clone(), self.attr(&e.meta)));
            }
        }
        for (name, attr) in in_progress {
            by_name.insert(name, attr);
        }
        for (name, meta) in streams {
            by_name.insert(name, self.attr(&meta));
        }
        // Files changed in the cache and not uploaded yet (1).
        for (name, meta) in cached {
            by_name.insert(name, self.attr(&meta));
        }
        let view: Listing = Arc::new(
            self.filter_listing(viewer, dir, by_name.into_iter().collect())
                .await?,
        );
        if let Some(s) = shared {
            self.views.put(dir, &s, &view);
        }
        Ok(view)
    }

    /// The store's listing of `dir`, from the cache while it is fresh.
    pub(crate) async fn list(
        &self,
        dir: &RelPath,
    ) -> std::result::Result<Arc<Vec<DirEntry>>, BackendError> {
        if let Some(entries) = self.dircache.get(dir) {
            return Ok(entries);
        }
        let generation = self.dircache.generation();
        let entries = Arc::new(self.backend.list(dir).await?);
        self.dircache.put(dir, entries.clone(), generation);
        Ok(entries)
    }

    fn lock_writers(&self) -> std::sync::MutexGuard<'_, HashMap<RelPath, usize>> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle that writes `path` was opened; `in_place`: it changes the
    /// stored file as it writes. Else a store with positional writes gets
    /// a temporary file beside it (the listings around it change), and one
    /// without is unchanged until the commit, which tells the cache then.
    pub(crate) fn writer_opened(&self, path: &RelPath, in_place: bool) {
        *self.lock_writers().entry(path.clone()).or_insert(0) += 1;
        if in_place {
            self.dircache.forget(path);
        } else if self.backend.capabilities().random_access_write {
            self.dircache.forget_listings(path);
        }
    }

    /// A handle that writes `path` was closed: what it wrote is on the
    /// store (or was discarded); the cache forgets what it knew.
    /// `learned`: the directory cache is up to date (told what was
    /// committed, or nothing changed on the store).
    pub(crate) fn writer_closed(&self, path: &RelPath, learned: bool) {
        {
            let mut w = self.lock_writers();
            if let Some(n) = w.get_mut(path) {
                *n -= 1;
                if *n == 0 {
                    w.remove(path);
                }
            }
        }
        if !learned {
            self.dircache.forget(path);
        }
    }

    /// Forget what the cache knows of `path` (and below it, with `tree`)
    /// now, and again when the returned guard drops, after the change went
    /// to the store: a listing read by another session in between cannot
    /// outlive the change.
    pub(crate) fn forget_around(&self, path: &RelPath, tree: bool) -> Forget<'_> {
        let f = Forget {
            cache: &self.dircache,
            path: path.clone(),
            tree,
        };
        f.run();
        f
    }

    /// On a store without real directories, check that the directory a new
    /// entry goes into exists (the store itself would accept any prefix).
    pub(crate) async fn check_parent_dir(&self, viewer: u64, path: &RelPath) -> Result<()> {
        if self.backend.capabilities().real_directories {
            return Ok(());
        }
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if parent.is_root() {
            return Ok(());
        }
        // A courtesy on a store that takes any prefix: a recent answer
        // will do.
        match self
            .meta(viewer, &parent, true)
            .await
            .map(Some)
            .or_else(|e| match e {
                VfsError::NotFound => Ok(None),
                e => Err(e),
            })? {
            Some(m) if m.is_dir() => Ok(()),
            Some(_) => Err(VfsError::NotADirectory),
            None => Err(VfsError::NotFound),
        }
    }
}

/// See [`Inner::forget_around`].
pub(crate) struct Forget<'a> {
    cache: &'a dircache::DirCache,
    path: RelPath,
    tree: bool,
}

impl Forget<'_> {
    fn run(&self) {
        if self.tree {
            self.cache.forget_tree(&self.path);
        } else {
            self.cache.forget(&self.path);
        }
    }
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.run();
    }
}
