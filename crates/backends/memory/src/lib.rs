//! Ferry's native memory backend: a volatile tree of files and directories
//! that lives as long as the process (rclone's `memory` remote). Handy for
//! tests and scratch space.
//!
//! Unlike rclone's `memory` remote, which is an object store, this one has
//! real directories, random-access writes and atomic renames, so it behaves
//! like the local backend on a POSIX file system:
//!
//! - An open handle refers to the file's data, not its name: it keeps
//!   working after the file is renamed, replaced or removed.
//! - Names are bytes; any name a [`RelPath`] allows is stored as is.
//! - Modes are stored as given (there is no process umask here). Without a
//!   mode, files get `0o644` and directories `0o755`. Modes are not
//!   enforced: every caller may do everything, like root.
//! - There are no symbolic links, hard links or owners: those methods fail
//!   with [`ErrorKind::Unsupported`] and [`Metadata::owner`] is `None`.
//! - Writes and size changes set the modification time; reads do not touch
//!   the access time (`noatime`). Directory times change when entries are
//!   added or removed.
//! - [`Backend::usage`] reports `used` (the sum of the sizes of all files,
//!   including removed files that are still open); `total` and `free` are
//!   unknown (`None`), since memory has no fixed size.
//! - Files are sparse: a gap (from a write past the end or a size
//!   extension) costs no memory and reads as zeros. Sizes past `i64::MAX` fail with
//!   [`ErrorKind::Other`] (`EFBIG`).
//!
//! # Layout
//! - [`MemoryBackend`]: the [`Backend`] implementation over a tree of
//!   nodes, each directory a map from name (bytes) to node.
//! - `content`: a file's bytes, in sparse chunks, counted in the store's
//!   usage.
//! - `handle`: `MemoryFile`, the [`FileHandle`] of an open file.
//!
//! # Locks
//! The tree is behind one `RwLock`; each file's data and attributes are
//! behind their own `RwLock`, shared (`Arc`) by the tree and by open
//! handles. Order: the tree lock, then at most one file lock; a file lock is
//! never held while taking another lock. No lock is held across an
//! `.await` (nothing here awaits: the work is done synchronously inside the
//! async methods, since there is no I/O).

#![forbid(unsafe_code)]

mod content;
mod handle;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use ferry_backend::{
    Backend, BackendError, Capabilities, DirEntry, ErrorKind, FileHandle, FileType, Metadata,
    OpenOptions, Operation, RelPath, Result, SetAttrs, Usage,
};

use content::{Content, TooLarge};
use handle::MemoryFile;

/// Mode of a file created without one (`0o666` less a usual umask).
const DEFAULT_FILE_MODE: u32 = 0o644;
/// Mode of a directory created without one (`0o777` less a usual umask).
const DEFAULT_DIR_MODE: u32 = 0o755;

/// A volatile in-memory store served as a backend. See the crate docs.
pub struct MemoryBackend {
    /// The root, always a [`Node::Dir`].
    tree: RwLock<Node>,
    /// Sum of the sizes of all live file contents.
    used: Arc<AtomicU64>,
}

impl MemoryBackend {
    /// An empty store: just the root directory.
    pub fn new() -> Self {
        MemoryBackend {
            tree: RwLock::new(Node::Dir(DirNode::new(DEFAULT_DIR_MODE, SystemTime::now()))),
            used: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new()
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// One entry of the tree.
enum Node {
    Dir(DirNode),
    File(SharedFile),
}

/// A directory: its entries by name, and its own attributes.
struct DirNode {
    entries: BTreeMap<Vec<u8>, Node>,
    attrs: Attrs,
}

/// A file's data and attributes, shared by the tree and open handles.
type SharedFile = Arc<RwLock<FileState>>;

/// What a file is, apart from its name.
struct FileState {
    content: Content,
    attrs: Attrs,
}

/// Attributes every node has.
#[derive(Debug, Clone, Copy)]
struct Attrs {
    mode: u32,
    mtime: SystemTime,
    atime: SystemTime,
}

impl Attrs {
    fn new(mode: u32, now: SystemTime) -> Self {
        Attrs {
            mode: mode & 0o7777,
            mtime: now,
            atime: now,
        }
    }
}

impl DirNode {
    fn new(mode: u32, now: SystemTime) -> Self {
        DirNode {
            entries: BTreeMap::new(),
            attrs: Attrs::new(mode, now),
        }
    }

    /// Record that an entry was added or removed.
    fn touch(&mut self, now: SystemTime) {
        self.attrs.mtime = now;
    }

    fn meta(&self) -> Metadata {
        meta(FileType::Dir, 0, &self.attrs)
    }

    /// Apply `attrs` (without owner) to this directory.
    fn apply(&mut self, attrs: &SetAttrs) -> std::result::Result<(), ErrorKind> {
        if attrs.size.is_some() {
            return Err(ErrorKind::IsADirectory);
        }
        self.attrs.apply(attrs);
        Ok(())
    }
}

impl Attrs {
    /// Apply the permissions and times of `attrs`.
    fn apply(&mut self, attrs: &SetAttrs) {
        if let Some(mode) = attrs.permissions {
            self.mode = mode & 0o7777;
        }
        if let Some((atime, mtime)) = attrs.times {
            self.atime = atime;
            self.mtime = mtime;
        }
    }
}

impl FileState {
    fn new(used: &Arc<AtomicU64>, mode: u32, now: SystemTime) -> Self {
        FileState {
            content: Content::new(used.clone()),
            attrs: Attrs::new(mode, now),
        }
    }

    fn meta(&self) -> Metadata {
        meta(FileType::File, self.content.len(), &self.attrs)
    }

    /// Apply `attrs` (without owner): size first, so that nothing changes
    /// when it is refused; then permissions and times, so explicit times win
    /// over the truncation's.
    fn apply(&mut self, attrs: &SetAttrs, now: SystemTime) -> std::result::Result<(), TooLarge> {
        if let Some(size) = attrs.size {
            if size != self.content.len() {
                self.content.set_len(size)?;
                self.attrs.mtime = now;
            }
        }
        self.attrs.apply(attrs);
        Ok(())
    }
}

fn meta(file_type: FileType, size: u64, attrs: &Attrs) -> Metadata {
    Metadata {
        file_type,
        size,
        mtime: Some(attrs.mtime),
        atime: Some(attrs.atime),
        permissions: Some(attrs.mode),
        owner: None,
        change: None,
    }
}

impl Node {
    fn meta(&self) -> Metadata {
        match self {
            Node::Dir(d) => d.meta(),
            Node::File(f) => read(f).meta(),
        }
    }

    /// The node at `path` below this one.
    fn lookup(&self, path: &RelPath) -> std::result::Result<&Node, ErrorKind> {
        let mut node = self;
        for name in path.components() {
            node = match node {
                Node::Dir(d) => d.entries.get(name).ok_or(ErrorKind::NotFound)?,
                Node::File(_) => return Err(ErrorKind::NotADirectory),
            };
        }
        Ok(node)
    }

    /// The directory at `path` below this one.
    fn dir_mut(&mut self, path: &RelPath) -> std::result::Result<&mut DirNode, ErrorKind> {
        let mut node = self;
        for name in path.components() {
            node = match node {
                Node::Dir(d) => d.entries.get_mut(name).ok_or(ErrorKind::NotFound)?,
                Node::File(_) => return Err(ErrorKind::NotADirectory),
            };
        }
        match node {
            Node::Dir(d) => Ok(d),
            Node::File(_) => Err(ErrorKind::NotADirectory),
        }
    }
}

/// A path's parent and final name; `None` for the root.
fn split(path: &RelPath) -> Option<(RelPath, &[u8])> {
    Some((path.parent()?, path.file_name()?))
}

/// Turns an [`ErrorKind`] into an error of `op` on `path`.
fn at(op: Operation, path: &RelPath) -> impl Fn(ErrorKind) -> BackendError + '_ {
    move |kind| BackendError::new(kind, op).with_path(path)
}

/// An [`ErrorKind::Other`] error of `op` on `path`, with a reason.
fn other(op: Operation, path: &RelPath, why: &'static str) -> BackendError {
    BackendError::new(ErrorKind::Other, op)
        .with_path(path)
        .with_source(why)
}

fn too_large(op: Operation, path: &RelPath, e: TooLarge) -> BackendError {
    BackendError::new(ErrorKind::Other, op)
        .with_path(path)
        .with_source(e)
}

/// Lock for reading. A panic while a lock was held cannot leave the tree
/// unsound (every change is a single map or field update), so poisoning is
/// ignored rather than spreading the panic to every session.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Lock for writing; see [`read`].
fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryBackend {
    fn open_sync(&self, path: &RelPath, opts: &OpenOptions) -> Result<SharedFile> {
        let err = at(Operation::Open, path);
        let now = SystemTime::now();
        let create = opts.create || opts.create_new;
        let mut tree = write(&self.tree);
        let Some((parent, name)) = split(path) else {
            return Err(err(if opts.create_new {
                ErrorKind::AlreadyExists
            } else {
                ErrorKind::IsADirectory
            }));
        };
        let dir = tree.dir_mut(&parent).map_err(&err)?;
        match dir.entries.get(name) {
            Some(_) if opts.create_new => Err(err(ErrorKind::AlreadyExists)),
            Some(Node::Dir(_)) => Err(err(ErrorKind::IsADirectory)),
            Some(Node::File(file)) => {
                if opts.truncate {
                    let mut state = write(file);
                    let _ = state.content.set_len(0);
                    state.attrs.mtime = now;
                }
                Ok(file.clone())
            }
            None if create => {
                let mode = opts.mode.unwrap_or(DEFAULT_FILE_MODE);
                let file = Arc::new(RwLock::new(FileState::new(&self.used, mode, now)));
                dir.entries.insert(name.to_vec(), Node::File(file.clone()));
                dir.touch(now);
                Ok(file)
            }
            None => Err(err(ErrorKind::NotFound)),
        }
    }

    fn rename_sync(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<()> {
        let op = Operation::Rename;
        let err = at(op, from);
        let mut tree = write(&self.tree);
        let from_is_dir = matches!(tree.lookup(from).map_err(&err)?, Node::Dir(_));
        let Some((from_parent, from_name)) = split(from) else {
            return Err(other(op, from, "the root cannot be renamed"));
        };
        if from == to {
            return if overwrite {
                Ok(())
            } else {
                Err(err(ErrorKind::AlreadyExists))
            };
        }
        if from_is_dir && to.starts_with(from) {
            return Err(other(op, from, "cannot move a directory into itself"));
        }
        // What is at `to` now (the root, when `to` is the root).
        let target = match split(to) {
            None => Some(&*tree),
            Some((to_parent, to_name)) => match tree.lookup(&to_parent).map_err(&err)? {
                Node::Dir(d) => d.entries.get(to_name),
                Node::File(_) => return Err(err(ErrorKind::NotADirectory)),
            },
        };
        if let Some(target) = target {
            if !overwrite {
                return Err(err(ErrorKind::AlreadyExists));
            }
            match (from_is_dir, target) {
                (false, Node::Dir(_)) => return Err(err(ErrorKind::IsADirectory)),
                (true, Node::File(_)) => return Err(err(ErrorKind::NotADirectory)),
                (true, Node::Dir(d)) if !d.entries.is_empty() => {
                    return Err(err(ErrorKind::DirectoryNotEmpty))
                }
                _ => {}
            }
        }
        // Checked: `to` is not the root (the root is never an empty
        // directory while `from` exists) and is not below `from`, so its
        // parent survives taking `from` out.
        let Some((to_parent, to_name)) = split(to) else {
            return Err(err(ErrorKind::DirectoryNotEmpty));
        };
        let now = SystemTime::now();
        let dir = tree.dir_mut(&from_parent).map_err(&err)?;
        let node = dir
            .entries
            .remove(from_name)
            .ok_or_else(|| err(ErrorKind::NotFound))?;
        dir.touch(now);
        let dir = tree.dir_mut(&to_parent).map_err(&err)?;
        // A replaced file lives on in its open handles.
        dir.entries.insert(to_name.to_vec(), node);
        dir.touch(now);
        Ok(())
    }

    fn copy_sync(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        let err = at(Operation::Copy, from);
        let mut tree = write(&self.tree);
        let source = match tree.lookup(from).map_err(&err)? {
            Node::File(f) => f.clone(),
            Node::Dir(_) => return Err(err(ErrorKind::IsADirectory)),
        };
        if from == to {
            return Ok(());
        }
        let Some((to_parent, to_name)) = split(to) else {
            return Err(err(ErrorKind::IsADirectory));
        };
        // Snapshot the source before touching the target: one file lock at
        // a time.
        let (content, mode) = {
            let s = read(&source);
            (s.content.clone(), s.attrs.mode)
        };
        let now = SystemTime::now();
        let dir = tree.dir_mut(&to_parent).map_err(&err)?;
        match dir.entries.get(to_name) {
            Some(Node::Dir(_)) => Err(err(ErrorKind::IsADirectory)),
            // Like `cp`: the existing target file takes the new content, so
            // its open handles see it.
            Some(Node::File(target)) => {
                let mut t = write(target);
                t.content = content;
                t.attrs.mode = mode;
                t.attrs.mtime = now;
                Ok(())
            }
            None => {
                let state = FileState {
                    content,
                    attrs: Attrs::new(mode, now),
                };
                let node = Node::File(Arc::new(RwLock::new(state)));
                dir.entries.insert(to_name.to_vec(), node);
                dir.touch(now);
                Ok(())
            }
        }
    }

    fn set_attrs_sync(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        let op = Operation::SetAttrs;
        let err = at(op, path);
        if attrs.owner.is_some() {
            return Err(err(ErrorKind::Unsupported));
        }
        let mut tree = write(&self.tree);
        let node = match split(path) {
            None => &mut *tree,
            Some((parent, name)) => tree
                .dir_mut(&parent)
                .map_err(&err)?
                .entries
                .get_mut(name)
                .ok_or_else(|| err(ErrorKind::NotFound))?,
        };
        match node {
            Node::Dir(d) => d.apply(attrs).map_err(&err),
            Node::File(f) => write(f)
                .apply(attrs, SystemTime::now())
                .map_err(|e| too_large(op, path, e)),
        }
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read_only: false,
            listings: true,
            random_access_write: true,
            real_directories: true,
            atomic_rename: true,
            rename_noreplace: true,
            server_side_copy: true,
            symlinks: false,
            hard_links: false,
            set_mtime: true,
            permissions: true,
            ownership: false,
            usage: true,
            streaming_upload: false,
            low_latency: true,
            read_streams: false,
            change_watch: false,
            native_hashes: &[],
        }
    }

    fn describe(&self) -> String {
        "memory:".to_string()
    }

    async fn stat(&self, path: &RelPath) -> Result<Metadata> {
        let tree = read(&self.tree);
        let node = tree.lookup(path).map_err(at(Operation::Stat, path))?;
        Ok(node.meta())
    }

    async fn lstat(&self, path: &RelPath) -> Result<Metadata> {
        // No symbolic links: the same as `stat`.
        self.stat(path).await
    }

    async fn list(&self, path: &RelPath) -> Result<Vec<DirEntry>> {
        let err = at(Operation::List, path);
        let tree = read(&self.tree);
        match tree.lookup(path).map_err(&err)? {
            Node::Dir(d) => Ok(d
                .entries
                .iter()
                .map(|(name, node)| DirEntry {
                    name: name.clone(),
                    meta: node.meta(),
                })
                .collect()),
            Node::File(_) => Err(err(ErrorKind::NotADirectory)),
        }
    }

    async fn open_file(&self, path: &RelPath, opts: OpenOptions) -> Result<Box<dyn FileHandle>> {
        let file = self.open_sync(path, &opts)?;
        Ok(Box::new(MemoryFile::new(file, path.clone(), &opts)))
    }

    async fn remove_file(&self, path: &RelPath) -> Result<()> {
        let err = at(Operation::Remove, path);
        let mut tree = write(&self.tree);
        let (parent, name) = split(path).ok_or_else(|| err(ErrorKind::IsADirectory))?;
        let dir = tree.dir_mut(&parent).map_err(&err)?;
        match dir.entries.get(name) {
            None => Err(err(ErrorKind::NotFound)),
            Some(Node::Dir(_)) => Err(err(ErrorKind::IsADirectory)),
            Some(Node::File(_)) => {
                // Open handles keep the data until they are dropped.
                dir.entries.remove(name);
                dir.touch(SystemTime::now());
                Ok(())
            }
        }
    }

    async fn create_dir(&self, path: &RelPath, mode: Option<u32>) -> Result<()> {
        let err = at(Operation::CreateDir, path);
        let mut tree = write(&self.tree);
        let (parent, name) = split(path).ok_or_else(|| err(ErrorKind::AlreadyExists))?;
        let dir = tree.dir_mut(&parent).map_err(&err)?;
        if dir.entries.contains_key(name) {
            return Err(err(ErrorKind::AlreadyExists));
        }
        let now = SystemTime::now();
        let node = Node::Dir(DirNode::new(mode.unwrap_or(DEFAULT_DIR_MODE), now));
        dir.entries.insert(name.to_vec(), node);
        dir.touch(now);
        Ok(())
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<()> {
        let op = Operation::RemoveDir;
        let err = at(op, path);
        let mut tree = write(&self.tree);
        let (parent, name) =
            split(path).ok_or_else(|| other(op, path, "the root cannot be removed"))?;
        let dir = tree.dir_mut(&parent).map_err(&err)?;
        match dir.entries.get(name) {
            None => Err(err(ErrorKind::NotFound)),
            Some(Node::File(_)) => Err(err(ErrorKind::NotADirectory)),
            Some(Node::Dir(d)) if !d.entries.is_empty() => Err(err(ErrorKind::DirectoryNotEmpty)),
            Some(Node::Dir(_)) => {
                dir.entries.remove(name);
                dir.touch(SystemTime::now());
                Ok(())
            }
        }
    }

    async fn rename(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<()> {
        self.rename_sync(from, to, overwrite)
    }

    async fn copy(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        self.copy_sync(from, to)
    }

    async fn set_attrs(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        self.set_attrs_sync(path, attrs)
    }

    async fn set_attrs_nofollow(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        // No symbolic links: the same as `set_attrs`.
        self.set_attrs_sync(path, attrs)
    }

    async fn symlink(&self, _target: &[u8], link: &RelPath) -> Result<()> {
        Err(BackendError::new(ErrorKind::Unsupported, Operation::Symlink).with_path(link))
    }

    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>> {
        Err(BackendError::new(ErrorKind::Unsupported, Operation::ReadLink).with_path(path))
    }

    async fn hard_link(&self, existing: &RelPath, _link: &RelPath) -> Result<()> {
        Err(BackendError::new(ErrorKind::Unsupported, Operation::HardLink).with_path(existing))
    }

    async fn usage(&self) -> Result<Usage> {
        Ok(Usage {
            used: Some(self.used.load(Ordering::Relaxed)),
            ..Usage::default()
        })
    }
}

#[cfg(test)]
mod tests;
