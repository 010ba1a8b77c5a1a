//! Ferry's native local backend: a directory on this machine.
//!
//! Every operation is confined to the root directory with [`cap_std`]: paths
//! are resolved component by component beneath the root's file descriptor
//! (with `openat2(RESOLVE_BENEATH)` where the kernel has it), so neither
//! `..`, absolute paths nor symbolic links, whoever created them, can reach
//! outside. String checks are never the only guard.
//!
//! # Layout
//! - [`LocalBackend`]: the [`Backend`] implementation.
//! - [`LocalFile`]: an open file, read and written with `pread`/`pwrite` so
//!   any number of requests run on one handle at once.
//! - `watch`: change notifications (inotify) for the directory cache.
//!
//! # Where system calls run
//! Handing a call to tokio's blocking pool costs two thread switches, more
//! than a `stat` or an `open` on a local disk takes. So the backend looks at
//! the root's file system once ([`IoMode`]): on memory and local-disk file
//! systems short calls run on the calling thread, as OpenSSH's sftp-server
//! runs everything; calls that can take long (listing, copying, syncing,
//! truncating, deleting) and anything on network or FUSE file systems go to
//! the pool. `docs/design/local-io.md` has the reasoning and numbers.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use cap_fs_ext::{DirExt, SystemTimeSpec};
use cap_std::fs::Dir;
use ferry_backend::{
    Backend, BackendError, Capabilities, DirEntry, ErrorKind, FileHandle, FileType, Metadata,
    OpenOptions, Operation, RelPath, Result, SetAttrs, Usage,
};

/// A local directory served as a backend.
pub struct LocalBackend {
    root: Arc<Dir>,
    describe: String,
    /// The root's path, to turn change notifications into paths.
    root_path: std::path::PathBuf,
    /// The change watcher, once started.
    watcher: std::sync::Mutex<Option<watch::Watcher>>,
    /// Where system calls run.
    io: Io,
}

/// Where a local backend runs its system calls, chosen from the root's file
/// system type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// A memory file system (tmpfs, ramfs): no call waits for a device, so
    /// every call but listing, copying and syncing runs on the calling
    /// thread.
    Memory,
    /// A local disk file system (ext4, XFS, Btrfs, ...): metadata calls and
    /// reads of cached data (`RWF_NOWAIT`) run on the calling thread;
    /// writes, uncached reads and long calls on the blocking pool.
    Disk,
    /// Anything else (NFS, SMB, FUSE, unknown): every call on the blocking
    /// pool, since any call may wait for a network.
    Pool,
}

impl IoMode {
    /// The mode for the file system holding `fd`.
    fn detect(fd: impl std::os::fd::AsFd) -> IoMode {
        let Ok(st) = rustix::fs::fstatfs(fd) else {
            return IoMode::Pool;
        };
        // Magic numbers from linux/magic.h.
        match st.f_type as u64 {
            0x0102_1994 | 0x8584_58f6 => IoMode::Memory, // tmpfs, ramfs
            0xEF53            // ext2/3/4
            | 0x5846_5342     // XFS
            | 0x9123_683E     // Btrfs
            | 0xF2F5_2010     // F2FS
            | 0x2FC1_2FC1     // ZFS
            | 0xCA45_1A4E     // bcachefs
            | 0x794C_7630 => IoMode::Disk, // overlayfs (container roots)
            _ => IoMode::Pool,
        }
    }
}

/// The backend's dispatch state, shared with its open files.
#[derive(Debug, Clone)]
struct Io {
    mode: IoMode,
    /// Cleared when the kernel refuses `RWF_NOWAIT` reads (then cached
    /// reads on a disk file system go to the pool too).
    nowait: Arc<std::sync::atomic::AtomicBool>,
}

impl Io {
    fn new(mode: IoMode) -> Io {
        Io {
            mode,
            nowait: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Whether a short call runs on the calling thread.
    fn quick_inline(&self) -> bool {
        self.mode != IoMode::Pool
    }

    /// Run `f` where a call of this cost belongs.
    async fn run<T, F>(&self, cost: Cost, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        if cost == Cost::Quick && self.quick_inline() {
            f()
        } else {
            blocking(f).await
        }
    }
}

/// How long a call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cost {
    /// A metadata call on one path or handle: microseconds on a local file
    /// system.
    Quick,
    /// Unbounded work (a directory scan, a copy, a sync, freeing a file's
    /// blocks) or I/O that may wait for a device.
    Slow,
}

impl LocalBackend {
    /// Open the directory at `path` as the root.
    pub fn open(path: &Path) -> io::Result<Self> {
        let root = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        let root_path = std::fs::canonicalize(path)?;
        let mode = IoMode::detect(&root);
        Ok(LocalBackend {
            root: Arc::new(root),
            describe: format!("local:{}", path.display()),
            root_path,
            watcher: std::sync::Mutex::new(None),
            io: Io::new(mode),
        })
    }

    /// Where this backend runs its system calls.
    pub fn io_mode(&self) -> IoMode {
        self.io.mode
    }

    /// Run system calls as for `mode` whatever the file system is (tests).
    #[doc(hidden)]
    pub fn with_io_mode(mut self, mode: IoMode) -> Self {
        self.io = Io::new(mode);
        self
    }

    async fn run<T, F>(&self, op: Operation, path: &RelPath, cost: Cost, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Dir) -> io::Result<T> + Send + 'static,
    {
        let root = self.root.clone();
        self.io
            .run(cost, move || f(&root))
            .await
            .map_err(|e| map_io(op, e).with_path(path))
    }
}

async fn blocking<T, F>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(e)),
    }
}

/// Classify an I/O error. cap-std reports an escape attempt (a path or a
/// link leading out of the root) as `PermissionDenied` made by itself, with
/// no OS error number, where the kernel's own refusals always carry one.
fn map_io(op: Operation, e: io::Error) -> BackendError {
    let escaped = e.kind() == io::ErrorKind::PermissionDenied && e.raw_os_error().is_none();
    if escaped {
        return BackendError::new(ErrorKind::OutsideRoot, op).with_source(e);
    }
    BackendError::from_io(op, e)
}

/// The OS path for a relative path; the root is `.`.
fn os(path: &RelPath) -> &Path {
    if path.is_root() {
        Path::new(".")
    } else {
        Path::new(OsStr::from_bytes(path.as_bytes()))
    }
}

fn file_type(ft: cap_std::fs::FileType) -> FileType {
    if ft.is_dir() {
        FileType::Dir
    } else if ft.is_file() {
        FileType::File
    } else if ft.is_symlink() {
        FileType::Symlink
    } else {
        FileType::Other
    }
}

fn to_meta(m: &cap_std::fs::Metadata) -> Metadata {
    use cap_std::fs::MetadataExt as _;
    Metadata {
        file_type: file_type(m.file_type()),
        size: m.len(),
        mtime: m.modified().ok().map(|t| t.into_std()),
        atime: m.accessed().ok().map(|t| t.into_std()),
        permissions: Some(m.mode() & 0o7777),
        owner: Some((m.uid(), m.gid())),
        change: Some(change_id(m.ino(), m.ctime(), m.ctime_nsec())),
    }
}

/// Inode and change time folded into one value: a replaced file (new
/// inode) or a changed one (new ctime, which no client can set) differs.
fn change_id(ino: u64, ctime: i64, ctime_nsec: i64) -> u64 {
    let t = (ctime as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ctime_nsec as u64);
    ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t
}

fn std_meta(m: &std::fs::Metadata) -> Metadata {
    let ft = m.file_type();
    Metadata {
        file_type: if ft.is_dir() {
            FileType::Dir
        } else if ft.is_file() {
            FileType::File
        } else if ft.is_symlink() {
            FileType::Symlink
        } else {
            FileType::Other
        },
        size: m.len(),
        mtime: m.modified().ok(),
        atime: m.accessed().ok(),
        permissions: Some(m.mode() & 0o7777),
        owner: Some((m.uid(), m.gid())),
        change: Some(change_id(m.ino(), m.ctime(), m.ctime_nsec())),
    }
}

/// Split a non-root path into its parent directory (opened beneath the root,
/// following symbolic links only inside it) and its final name.
fn open_parent<'a>(root: &Dir, path: &'a RelPath) -> io::Result<(Dir, &'a OsStr)> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the root has no parent"))?;
    let name = path.file_name().unwrap_or_default();
    Ok((root.open_dir(os(&parent))?, OsStr::from_bytes(name)))
}

fn apply_attrs_to_file(file: &File, attrs: &SetAttrs) -> io::Result<()> {
    if let Some((uid, gid)) = attrs.owner {
        rustix::fs::fchown(
            file,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )?;
    }
    if let Some(mode) = attrs.permissions {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    if let Some(size) = attrs.size {
        file.set_len(size)?;
    }
    if let Some((atime, mtime)) = attrs.times {
        file.set_times(
            std::fs::FileTimes::new()
                .set_accessed(atime)
                .set_modified(mtime),
        )?;
    }
    Ok(())
}

/// Setting a size truncates (freeing blocks) or extends a file: slow.
fn cost_of(attrs: &SetAttrs) -> Cost {
    if attrs.size.is_some() {
        Cost::Slow
    } else {
        Cost::Quick
    }
}

fn spec(t: SystemTime) -> SystemTimeSpec {
    SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(t))
}

fn not_resizable() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "only a regular file has a size to set (not a FIFO, socket, device or link)",
    )
}

fn set_attrs_path(root: &Dir, path: &RelPath, attrs: &SetAttrs, follow: bool) -> io::Result<()> {
    let p = os(path);
    let meta = if follow {
        root.metadata(p)?
    } else {
        root.symlink_metadata(p)?
    };
    let is_link = meta.file_type().is_symlink();
    if let Some(size) = attrs.size {
        if meta.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        if !meta.is_file() {
            return Err(not_resizable());
        }
        use cap_std::fs::OpenOptionsExt as _;
        let mut o = cap_std::fs::OpenOptions::new();
        o.write(true);
        // Never wait for a FIFO's reader (one swapped in since the check
        // would hold a blocking thread for as long as nobody reads it).
        o.custom_flags(libc::O_NONBLOCK | if follow { 0 } else { libc::O_NOFOLLOW });
        let f = root.open_with(p, &o)?.into_std();
        if !f.metadata()?.is_file() {
            return Err(not_resizable());
        }
        f.set_len(size)?;
    }
    if let Some((uid, gid)) = attrs.owner {
        if follow {
            // Resolved beneath the root, links and all, into a descriptor
            // (O_PATH: nothing is opened for reading, a FIFO or device
            // included), and the owner changed through it: no second
            // lookup by name that a swapped-in link could lead outside.
            use cap_std::fs::OpenOptionsExt as _;
            let mut o = cap_std::fs::OpenOptions::new();
            o.read(true).custom_flags(libc::O_PATH);
            let target = root.open_with(p, &o)?.into_std();
            rustix::fs::chownat(
                &target,
                "",
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                rustix::fs::AtFlags::EMPTY_PATH,
            )?;
        } else {
            // The last component itself, in its parent opened beneath the
            // root.
            let (parent, name) = open_parent(root, path)
                .or_else(|_| Ok::<_, io::Error>((root.try_clone()?, OsStr::new("."))))?;
            rustix::fs::chownat(
                &parent,
                name,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
    }
    if let Some(mode) = attrs.permissions {
        let perm =
            cap_std::fs::Permissions::from_std(std::fs::Permissions::from_mode(mode & 0o7777));
        if follow || !is_link {
            root.set_permissions(p, perm)?;
        } else {
            root.set_symlink_permissions(p, perm)?;
        }
    }
    if let Some((atime, mtime)) = attrs.times {
        if follow || !is_link {
            root.set_times(p, Some(spec(atime)), Some(spec(mtime)))?;
        } else {
            root.set_symlink_times(p, Some(spec(atime)), Some(spec(mtime)))?;
        }
    }
    Ok(())
}

fn rename_noreplace(root: &Dir, from: &RelPath, to: &RelPath) -> io::Result<()> {
    let (pf, nf) = open_parent(root, from)?;
    let (pt, nt) = open_parent(root, to)?;
    match rustix::fs::renameat_with(&pf, nf, &pt, nt, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            // File systems without RENAME_NOREPLACE: check, then rename. The
            // window between the two is the best such a file system allows.
            if pt.symlink_metadata(nt).is_ok() {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            root.rename(os(from), root, os(to))
        }
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read_only: false,
            listings: true,
            random_access_write: true,
            real_directories: true,
            atomic_rename: true,
            rename_noreplace: true,
            server_side_copy: true,
            symlinks: true,
            hard_links: true,
            set_mtime: true,
            permissions: true,
            ownership: true,
            usage: true,
            streaming_upload: false,
            low_latency: true,
            read_streams: false,
            change_watch: true,
            native_hashes: &[],
        }
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn stat(&self, path: &RelPath) -> Result<Metadata> {
        let p = path.clone();
        self.run(Operation::Stat, path, Cost::Quick, move |root| {
            root.metadata(os(&p)).map(|m| to_meta(&m))
        })
        .await
    }

    async fn lstat(&self, path: &RelPath) -> Result<Metadata> {
        let p = path.clone();
        self.run(Operation::Stat, path, Cost::Quick, move |root| {
            root.symlink_metadata(os(&p)).map(|m| to_meta(&m))
        })
        .await
    }

    async fn list(&self, path: &RelPath) -> Result<Vec<DirEntry>> {
        let p = path.clone();
        self.run(Operation::List, path, Cost::Slow, move |root| {
            let dir = root.open_dir(os(&p))?;
            let mut out = Vec::new();
            for entry in dir.entries()? {
                let entry = entry?;
                let name = entry.file_name();
                // An entry removed between readdir and lstat is skipped.
                match dir.symlink_metadata(&name) {
                    Ok(m) => out.push(DirEntry {
                        name: name.as_bytes().to_vec(),
                        meta: to_meta(&m),
                    }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn open_file(&self, path: &RelPath, opts: OpenOptions) -> Result<Box<dyn FileHandle>> {
        let p = path.clone();
        // Truncating frees the old data's blocks, which can take long.
        let cost = if opts.truncate {
            Cost::Slow
        } else {
            Cost::Quick
        };
        let file = self
            .run(Operation::Open, path, cost, move |root| {
                use cap_std::fs::OpenOptionsExt as _;
                let mut o = cap_std::fs::OpenOptions::new();
                o.read(opts.read || !opts.write)
                    .write(opts.write)
                    .append(opts.append)
                    .create(opts.create)
                    .create_new(opts.create_new)
                    .truncate(opts.truncate);
                o.mode(opts.mode.unwrap_or(0o666) & 0o7777);
                // Opening a FIFO waits for its other end: never here.
                o.custom_flags(libc::O_NONBLOCK);
                let f = root.open_with(os(&p), &o)?.into_std();
                let m = f.metadata()?;
                if m.is_dir() {
                    return Err(io::Error::from_raw_os_error(libc::EISDIR));
                }
                if !m.is_file() {
                    // FIFOs, sockets and devices are not served as files.
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "not a regular file (a FIFO, socket or device)",
                    ));
                }
                // O_NONBLOCK stays: it has no effect on regular files.
                Ok(f)
            })
            .await?;
        Ok(Box::new(LocalFile {
            file: Arc::new(file),
            path: path.clone(),
            io: self.io.clone(),
        }))
    }

    async fn remove_file(&self, path: &RelPath) -> Result<()> {
        let p = path.clone();
        self.run(Operation::Remove, path, Cost::Slow, move |root| {
            let (parent, name) = open_parent(root, &p)?;
            let m = parent.symlink_metadata(name)?;
            if m.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::EISDIR));
            }
            parent.remove_file_or_symlink(name)
        })
        .await
    }

    async fn create_dir(&self, path: &RelPath, mode: Option<u32>) -> Result<()> {
        let p = path.clone();
        self.run(Operation::CreateDir, path, Cost::Quick, move |root| {
            use cap_std::fs::DirBuilderExt as _;
            let mut b = cap_std::fs::DirBuilder::new();
            b.mode(mode.unwrap_or(0o777) & 0o7777);
            root.create_dir_with(os(&p), &b)
        })
        .await
    }

    async fn remove_dir(&self, path: &RelPath) -> Result<()> {
        let p = path.clone();
        self.run(Operation::RemoveDir, path, Cost::Quick, move |root| {
            let (parent, name) = open_parent(root, &p)?;
            let m = parent.symlink_metadata(name)?;
            if !m.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            parent.remove_dir(name)
        })
        .await
    }

    async fn rename(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<()> {
        let (f, t) = (from.clone(), to.clone());
        self.run(Operation::Rename, from, Cost::Quick, move |root| {
            links::rename(root, &f, &t, || {
                if overwrite {
                    root.rename(os(&f), root, os(&t))
                } else {
                    rename_noreplace(root, &f, &t)
                }
            })
        })
        .await
    }

    async fn copy(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        let (f, t) = (from.clone(), to.clone());
        self.run(Operation::Copy, from, Cost::Slow, move |root| {
            root.copy(os(&f), root, os(&t)).map(|_| ())
        })
        .await
    }

    async fn set_attrs(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        let (p, a) = (path.clone(), attrs.clone());
        self.run(Operation::SetAttrs, path, cost_of(attrs), move |root| {
            set_attrs_path(root, &p, &a, true)
        })
        .await
    }

    async fn set_attrs_nofollow(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        let (p, a) = (path.clone(), attrs.clone());
        self.run(Operation::SetAttrs, path, cost_of(attrs), move |root| {
            set_attrs_path(root, &p, &a, false)
        })
        .await
    }

    async fn symlink(&self, target: &[u8], link: &RelPath) -> Result<()> {
        let (t, l) = (target.to_vec(), link.clone());
        self.run(Operation::Symlink, link, Cost::Quick, move |root| {
            links::make(root, &t, &l)
        })
        .await
    }

    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>> {
        let p = path.clone();
        self.run(Operation::ReadLink, path, Cost::Quick, move |root| {
            root.read_link_contents(os(&p))
                .map(|t| t.into_os_string().into_vec())
        })
        .await
    }

    async fn hard_link(&self, existing: &RelPath, link: &RelPath) -> Result<()> {
        let (e, l) = (existing.clone(), link.clone());
        self.run(Operation::HardLink, existing, Cost::Quick, move |root| {
            root.hard_link(os(&e), root, os(&l))
        })
        .await
    }

    async fn usage(&self) -> Result<Usage> {
        let root = self.root.clone();
        let s = self
            .io
            .run(Cost::Quick, move || {
                rustix::fs::fstatvfs(&*root).map_err(io::Error::from)
            })
            .await
            .map_err(|e| map_io(Operation::Usage, e))?;
        let frsize = if s.f_frsize > 0 {
            s.f_frsize
        } else {
            s.f_bsize
        };
        Ok(Usage {
            total: Some(s.f_blocks.saturating_mul(frsize)),
            used: Some(s.f_blocks.saturating_sub(s.f_bfree).saturating_mul(frsize)),
            free: Some(s.f_bavail.saturating_mul(frsize)),
            block_size: Some(frsize),
            files: Some(s.f_files),
            files_free: Some(s.f_favail),
            name_max: Some(s.f_namemax),
        })
    }

    /// Changes are reported by inotify, on every directory below the root,
    /// in batches (see the `watch` module).
    fn watch_changes(&self, on_change: ferry_backend::ChangeNotify) -> Result<()> {
        let watcher = watch::start(self.root_path.clone(), on_change).map_err(|e| {
            BackendError::new(ErrorKind::Other, Operation::List).with_source(format!(
                "cannot watch {} for changes: {e}",
                self.root_path.display()
            ))
        })?;
        *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
        Ok(())
    }
}

use std::os::unix::ffi::OsStringExt as _;

/// An open local file.
pub struct LocalFile {
    file: Arc<File>,
    path: RelPath,
    io: Io,
}

impl LocalFile {
    async fn run<T, F>(&self, op: Operation, cost: Cost, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&File) -> io::Result<T> + Send + 'static,
    {
        let file = self.file.clone();
        self.io
            .run(cost, move || f(&file))
            .await
            .map_err(|e| self.error(op, e))
    }

    fn error(&self, op: Operation, e: io::Error) -> BackendError {
        map_io(op, e).with_path(&self.path)
    }

    /// Read what the page cache holds of `[offset, offset + len)` without
    /// waiting for the disk (`RWF_NOWAIT`), appending to `buf`; stops at
    /// the first byte that would need the disk, or at the end of the file.
    /// Returns whether the end of the file was reached.
    fn read_cached(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> io::Result<bool> {
        let start = buf.len();
        buf.reserve(len);
        while buf.len() - start < len {
            let done = buf.len() - start;
            match pread_nowait(&self.file, buf, len - done, offset + done as u64) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                // Not on this file system, or a kernel without preadv2.
                Err(e)
                    if e.raw_os_error() == Some(libc::EOPNOTSUPP)
                        || e.raw_os_error() == Some(libc::ENOSYS) =>
                {
                    self.io
                        .nowait
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

/// `pread` of up to `len` bytes at `at` into `buf`'s spare capacity with
/// `RWF_NOWAIT`: only data already in the page cache is read.
#[allow(unsafe_code)]
fn pread_nowait(file: &File, buf: &mut Vec<u8>, len: usize, at: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd as _;
    let spare = buf.spare_capacity_mut();
    let n = len.min(spare.len());
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: n,
    };
    let at = i64::try_from(at).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `iov` describes `n` bytes of `buf`'s allocation past its
    // length, which stays alive and unaliased for the call; the kernel
    // writes at most `n` bytes there.
    let r = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let r = r as usize;
    // SAFETY: the kernel initialised the first `r <= n` spare bytes.
    unsafe { buf.set_len(buf.len() + r) };
    Ok(r)
}

/// Read `[offset, offset + len)` into `buf`'s spare capacity (no zeroing of
/// up to 255 KiB per READ first), stopping early only at the end of the
/// file.
fn read_into(file: &File, offset: u64, len: usize, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    let start = buf.len();
    let want = start + len;
    buf.reserve(len);
    while buf.len() < want {
        let at = offset + (buf.len() - start) as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A buffer with more spare room than asked may have read a little more.
    buf.truncate(want);
    Ok(buf)
}

#[async_trait]
impl FileHandle for LocalFile {
    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        let mut buf = buf;
        let start = buf.len();
        match self.io.mode {
            // Memory is never waited for: read here.
            IoMode::Memory => {
                return read_into(&self.file, offset, len, buf)
                    .map_err(|e| self.error(Operation::Read, e));
            }
            // What the page cache holds is read here, the rest on the pool.
            IoMode::Disk if self.io.nowait.load(std::sync::atomic::Ordering::Relaxed) => {
                let eof = self
                    .read_cached(offset, len, &mut buf)
                    .map_err(|e| self.error(Operation::Read, e))?;
                if eof || buf.len() - start == len {
                    return Ok(buf);
                }
            }
            IoMode::Disk | IoMode::Pool => {}
        }
        let done = buf.len() - start;
        self.run(Operation::Read, Cost::Slow, move |file| {
            read_into(file, offset + done as u64, len - done, buf)
        })
        .await
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        // Buffered writes to a disk may wait for write-back to catch up, and
        // `RWF_NOWAIT` writes are not supported there: only memory file
        // systems write here.
        if self.io.mode == IoMode::Memory {
            return self
                .file
                .write_all_at(&data, offset)
                .map_err(|e| self.error(Operation::Write, e));
        }
        self.run(Operation::Write, Cost::Slow, move |file| {
            file.write_all_at(&data, offset)
        })
        .await
    }

    async fn stat(&self) -> Result<Metadata> {
        self.run(Operation::Stat, Cost::Quick, |file| {
            file.metadata().map(|m| std_meta(&m))
        })
        .await
    }

    async fn set_attrs(&self, attrs: &SetAttrs) -> Result<()> {
        let a = attrs.clone();
        self.run(Operation::SetAttrs, cost_of(attrs), move |file| {
            apply_attrs_to_file(file, &a)
        })
        .await
    }

    async fn sync(&self) -> Result<()> {
        self.run(Operation::Sync, Cost::Slow, |file| file.sync_all())
            .await
    }
}

mod links;
mod watch;

#[cfg(test)]
mod tests;
