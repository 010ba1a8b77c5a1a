//! The filters (`--include`, `--exclude`, ...) applied at the one lookup:
//! a path they exclude is not there for a session in any way. It is not
//! listed, and STAT, OPEN, RENAME, REMOVE, SETSTAT, READLINK, links and the
//! exec hashes find nothing at it; creating it (a file, a directory, a
//! link, a rename onto it) is refused with permission denied, so nothing a
//! client uploads vanishes afterwards.
//!
//! A path is served when every directory above it is (by the directory
//! rules, and holding no `--exclude-if-present` file) and it is itself: a
//! directory by the directory rules and markers, anything else by the file
//! rules, and a stored file by its size and age too. Directory rules prune
//! without asking the store: a lookup below an excluded directory, or a
//! listing of one, is answered from the rules alone.
//!
//! Sizes and ages select which stored files are served; they do not stop
//! an upload (a new file starts empty and young). A name that exists on
//! the store but is hidden by them cannot be created over.

use std::sync::Arc;
use std::time::SystemTime;

use ferry_backend::{FileType, Metadata, RelPath};
use ferry_filter::Filter;

use crate::lookup::{Found, Freshness};
use crate::{Attr, Inner, Result, VfsError};

/// The filters of a VFS; compared by identity (one set is built per
/// process).
#[derive(Debug, Clone, Default)]
pub struct FilterRef(Option<Arc<Filter>>);

impl FilterRef {
    /// The filter, or none if it filters nothing.
    pub fn new(filter: Filter) -> FilterRef {
        FilterRef(filter.is_active().then(|| Arc::new(filter)))
    }

    /// The filter, if it filters anything.
    pub fn get(&self) -> Option<&Filter> {
        self.0.as_deref()
    }
}

impl PartialEq for FilterRef {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for FilterRef {}

/// A path as the rules see it: relative, lossy where it is not UTF-8 (as
/// Go's strings are).
fn text(path: &RelPath) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(path.as_bytes())
}

impl Inner {
    pub(crate) fn filter(&self) -> Option<&Filter> {
        self.opts.filter.get()
    }

    /// Whether directory `dir` holds a marker file: it is not served then.
    async fn has_marker(&self, viewer: u64, filter: &Filter, dir: &RelPath) -> Result<bool> {
        for m in filter.markers() {
            let Ok(p) = dir.join(m.as_bytes()) else {
                continue;
            };
            let found = self.find(viewer, &p, false, Freshness::Listing).await;
            match found.map(|f| f.map(Found::into_meta)) {
                Ok(Some(meta)) if meta.file_type != FileType::Dir => return Ok(true),
                // `dir` is no directory: it holds nothing.
                Ok(_) | Err(VfsError::NotADirectory) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Whether directory `dir` is served: it, and every directory above
    /// it (the root by its markers only).
    async fn dir_served(&self, viewer: u64, filter: &Filter, dir: &RelPath) -> Result<bool> {
        // By name first, for the whole chain: no request for a path the
        // rules already hide.
        let mut chain = vec![RelPath::root()];
        let mut p = RelPath::root();
        for c in dir.components() {
            p = p.join(c).map_err(|_| VfsError::InvalidName)?;
            if !filter.include_dir(&text(&p)) {
                return Ok(false);
            }
            chain.push(p.clone());
        }
        if !filter.markers().is_empty() {
            for d in &chain {
                if self.has_marker(viewer, filter, d).await? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Whether `path`, found with `meta`, is served. The root always is
    /// (with a marker in it, its listing is empty).
    pub(crate) async fn served(
        &self,
        viewer: u64,
        path: &RelPath,
        meta: &Metadata,
    ) -> Result<bool> {
        let Some(filter) = self.filter() else {
            return Ok(true);
        };
        if path.is_root() {
            return Ok(true);
        }
        if meta.is_dir() {
            return self.dir_served(viewer, filter, path).await;
        }
        let attr = self.attr(meta);
        if !filter.include_file(&text(path), attr.size, Some(attr.mtime), SystemTime::now()) {
            return Ok(false);
        }
        match path.parent() {
            Some(parent) => self.dir_served(viewer, filter, &parent).await,
            None => Ok(true),
        }
    }

    /// Whether the rules alone hide `path` (no request): a directory above
    /// it is excluded, or its name is excluded both as a file and as a
    /// directory.
    pub(crate) fn excluded_by_name(&self, path: &RelPath) -> bool {
        let Some(filter) = self.filter() else {
            return false;
        };
        if path.is_root() {
            return false;
        }
        let mut p = RelPath::root();
        let mut comps = path.components().peekable();
        while let Some(c) = comps.next() {
            let Ok(j) = p.join(c) else {
                return true;
            };
            p = j;
            let name = text(&p);
            if comps.peek().is_none() {
                return !filter.include_dir(&name) && !filter.include_file_name(&name);
            }
            if !filter.include_dir(&name) {
                return true;
            }
        }
        false
    }

    /// What `path` is as `viewer` sees it, with the filters applied: see
    /// [`Inner::find`] for the rest. Following a final symbolic link, each
    /// link on the way must be served, and so must what it leads to (a
    /// link cannot show an excluded file under another name).
    pub(crate) async fn lookup(
        &self,
        viewer: u64,
        path: &RelPath,
        follow: bool,
        fresh: Freshness,
    ) -> Result<Option<Found>> {
        if self.filter().is_none() {
            return self.find(viewer, path, follow, fresh).await;
        }
        if self.excluded_by_name(path) {
            return Ok(None);
        }
        if follow && self.backend.capabilities().symlinks {
            let mut p = path.clone();
            for _ in 0..40 {
                let Some(found) = self.find(viewer, &p, false, fresh).await? else {
                    return Ok(None);
                };
                let meta = found.into_meta();
                if !self.served(viewer, &p, &meta).await? {
                    return Ok(None);
                }
                if meta.file_type != FileType::Symlink {
                    break;
                }
                let target = self.backend.read_link(&p).await?;
                if target.starts_with(b"/") {
                    // The backend's own confinement decides.
                    break;
                }
                let parent = p.parent().unwrap_or_default();
                p = RelPath::resolve(&parent, &target).map_err(|_| VfsError::InvalidName)?;
                if self.excluded_by_name(&p) {
                    return Ok(None);
                }
            }
        }
        let found = self.find(viewer, path, follow, fresh).await?;
        let Some(found) = found else {
            return Ok(None);
        };
        let meta = found.meta();
        if self.served(viewer, path, meta).await? {
            Ok(Some(found))
        } else {
            Ok(None)
        }
    }

    /// Check that `path` may be made anew (a file, or with `dir` a
    /// directory): the directories above it are served (else it is
    /// missing), its name is (else permission denied), and nothing hidden
    /// is there already (permission denied: it would be replaced unseen).
    pub(crate) async fn check_new_name(
        &self,
        viewer: u64,
        path: &RelPath,
        dir: bool,
    ) -> Result<()> {
        let Some(filter) = self.filter() else {
            return Ok(());
        };
        if let Some(parent) = path.parent() {
            if !self.dir_served(viewer, filter, &parent).await? {
                return Err(VfsError::NotFound);
            }
        }
        let name = text(path);
        let by_name = if dir {
            filter.include_dir(&name)
        } else {
            filter.include_file_name(&name)
        };
        if !by_name {
            return Err(VfsError::PermissionDenied);
        }
        if self
            .find(viewer, path, false, Freshness::Listing)
            .await?
            .is_some()
            && self
                .lookup(viewer, path, true, Freshness::Listing)
                .await?
                .is_none()
        {
            return Err(VfsError::PermissionDenied);
        }
        Ok(())
    }

    /// What is at `path` for this session, before a change that goes to
    /// the store by name: missing if the filters hide it. `None` when no
    /// filter is set (nothing was looked up).
    pub(crate) async fn check_served(
        &self,
        viewer: u64,
        path: &RelPath,
        follow: bool,
    ) -> Result<Option<Metadata>> {
        if self.filter().is_none() {
            return Ok(None);
        }
        match self
            .lookup(viewer, path, follow, Freshness::Listing)
            .await?
        {
            Some(found) => Ok(Some(found.into_meta())),
            None => Err(VfsError::NotFound),
        }
    }

    /// Whether a listing of `dir` may be made: `Ok(false)` for the root
    /// when a marker hides everything in it; missing for a directory the
    /// filters hide, asked of no store.
    pub(crate) async fn listing_allowed(&self, viewer: u64, dir: &RelPath) -> Result<bool> {
        let Some(filter) = self.filter() else {
            return Ok(true);
        };
        if dir.is_root() {
            return self.dir_served(viewer, filter, dir).await;
        }
        // A hidden file is not there to be listed either (a listing would
        // say it is no directory).
        if self.excluded_by_name(dir)
            || !self.dir_served(viewer, filter, dir).await?
            || self
                .lookup(viewer, dir, true, Freshness::Listing)
                .await?
                .is_none()
        {
            return Err(VfsError::NotFound);
        }
        Ok(true)
    }

    /// The entries of a listing of `dir` that are served.
    pub(crate) async fn filter_listing(
        &self,
        viewer: u64,
        dir: &RelPath,
        entries: Vec<(Vec<u8>, Attr)>,
    ) -> Result<Vec<(Vec<u8>, Attr)>> {
        let Some(filter) = self.filter() else {
            return Ok(entries);
        };
        let now = SystemTime::now();
        let mut out = Vec::with_capacity(entries.len());
        let mut dirs = Vec::new();
        for (name, attr) in entries {
            let Ok(path) = dir.join(&name) else {
                continue;
            };
            if attr.file_type == FileType::Dir {
                if filter.include_dir(&text(&path)) {
                    dirs.push((out.len(), path));
                    out.push(Some((name, attr)));
                }
            } else if filter.include_file(&text(&path), attr.size, Some(attr.mtime), now) {
                out.push(Some((name, attr)));
            }
        }
        if !filter.markers().is_empty() {
            // One lookup per marker in each directory listed, a few at a
            // time.
            let mut marked = Vec::with_capacity(dirs.len());
            for chunk in dirs.chunks(16) {
                let mut checks = Vec::with_capacity(chunk.len());
                for (_, p) in chunk {
                    checks.push(self.has_marker(viewer, filter, p));
                }
                marked.extend(futures::future::try_join_all(checks).await?);
            }
            for ((i, _), m) in dirs.iter().zip(marked) {
                if m {
                    out[*i] = None;
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Check that a new symbolic link may lead to `target` (resolved
    /// beneath the root): not to anything the filters hide.
    pub(crate) async fn check_link_target(&self, viewer: u64, target: &RelPath) -> Result<()> {
        if self.filter().is_none() {
            return Ok(());
        }
        if self.excluded_by_name(target) {
            return Err(VfsError::PermissionDenied);
        }
        let exists = self
            .find(viewer, target, false, Freshness::Listing)
            .await?
            .is_some();
        if exists
            && self
                .lookup(viewer, target, true, Freshness::Listing)
                .await?
                .is_none()
        {
            return Err(VfsError::PermissionDenied);
        }
        Ok(())
    }
}
