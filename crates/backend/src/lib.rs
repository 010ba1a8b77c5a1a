//! The storage backend interface of Ferry.
//!
//! A [`Backend`] is a store of files addressed by [`RelPath`]s below its
//! root: a local directory, an object store bucket, a remote SFTP server.
//! The VFS layer sits on top and turns this into file-system semantics; a
//! backend only does what its store can do and says so in its
//! [`Capabilities`], which the VFS and the tests branch on.
//!
//! # Layout
//! - [`path`]: [`RelPath`], a normalised relative path of bytes.
//! - [`error`]: [`BackendError`] and its [`ErrorKind`].
//! - [`meta`]: [`Metadata`], [`DirEntry`], [`Usage`], [`HashKind`].
//! - [`layer`]: [`Layer`], [`FileLayer`] and [`UploadLayer`], what a
//!   wrapper around a backend implements: only the methods it changes.
//! - this module: the [`Backend`] trait and the handle traits it returns.
//!
//! Cross-cutting concerns (retries, timeouts, metrics) are layers that wrap a
//! `Backend`, never code inside each backend.

pub mod error;
pub mod layer;
pub mod meta;
pub mod path;

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

pub use error::{BackendError, ErrorKind, Operation, Result};
pub use layer::{FileLayer, Layer, Layered, LayeredFile, LayeredUpload, UploadLayer};
pub use meta::{DirEntry, FileType, HashKind, Metadata, Usage};
pub use path::{PathError, RelPath};

/// What a backend can do: everything the VFS and the tests branch on, in
/// one value. Each backend writes it as a struct literal (there is no
/// default), so a new capability cannot be left out silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The store takes no changes at all (a plain HTTP server).
    pub read_only: bool,
    /// Directories can be listed ([`Backend::list`]); a plain HTTP server
    /// serves only files it is asked for by name.
    pub listings: bool,
    /// Files can be opened for random-access reads and writes
    /// ([`Backend::open_file`]).
    pub random_access_write: bool,
    /// Directories exist as real objects (not just prefixes).
    pub real_directories: bool,
    /// [`Backend::rename`] is atomic and can replace an existing file.
    pub atomic_rename: bool,
    /// [`Backend::rename`] with `overwrite == false` is atomic (no
    /// check-then-act race).
    pub rename_noreplace: bool,
    /// [`Backend::copy`] is a server-side copy.
    pub server_side_copy: bool,
    /// Symbolic links can be created and read.
    pub symlinks: bool,
    /// Hard links can be created.
    pub hard_links: bool,
    /// Modification times can be set.
    pub set_mtime: bool,
    /// Unix permission bits are stored.
    pub permissions: bool,
    /// Unix owner and group are reported.
    pub ownership: bool,
    /// [`Backend::usage`] reports real numbers.
    pub usage: bool,
    /// New files can be written front to back with
    /// [`Backend::create_upload`] (object stores, where nothing appears
    /// until the upload completes).
    pub streaming_upload: bool,
    /// Requests are cheap and fast (a local disk, memory): no read-ahead
    /// is needed. Network stores leave this false.
    pub low_latency: bool,
    /// Open files give ranged streams ([`FileHandle::read_stream`]), one
    /// request for many bytes (object stores).
    pub read_streams: bool,
    /// Changes made by others are reported ([`Backend::watch_changes`]).
    pub change_watch: bool,
    /// Hashes the store keeps, answered by [`Backend::stored_hash`]
    /// without reading the file (an S3 ETag's MD5, a remote `md5sum`).
    pub native_hashes: &'static [HashKind],
}

/// How to open a file for random access with [`Backend::open_file`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Allow reads.
    pub read: bool,
    /// Allow writes.
    pub write: bool,
    /// Create the file when it does not exist.
    pub create: bool,
    /// Fail with [`ErrorKind::AlreadyExists`] when the file exists
    /// (implies `create`).
    pub create_new: bool,
    /// Truncate an existing file to zero length.
    pub truncate: bool,
    /// Every write goes to the end of the file, whatever its offset.
    pub append: bool,
    /// Unix permission bits for a newly created file (before umask).
    pub mode: Option<u32>,
}

/// Attributes to change with [`Backend::set_attrs`]. `None` leaves a field
/// as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttrs {
    /// Truncate or extend to this size.
    pub size: Option<u64>,
    /// Unix permission bits (the low 12 bits are used).
    pub permissions: Option<u32>,
    /// Access and modification times.
    pub times: Option<(SystemTime, SystemTime)>,
    /// Owner and group.
    pub owner: Option<(u32, u32)>,
}

/// An open file with positional reads and writes.
///
/// Positional operations take `&self`, so any number of them can run at
/// once on one handle (as `pread`/`pwrite` can); ordering between
/// overlapping requests is the caller's business.
#[async_trait]
pub trait FileHandle: Send + Sync {
    /// Read up to `len` bytes at `offset`, appending them to `buf` (which may
    /// already hold a header). Returns the buffer; fewer bytes than `len`
    /// are appended only at end of file, none at or after it.
    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>>;
    /// Write all of `data` at `offset`.
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()>;
    /// The file's current metadata.
    async fn stat(&self) -> Result<Metadata>;
    /// Change attributes of the open file.
    async fn set_attrs(&self, attrs: &SetAttrs) -> Result<()>;
    /// Flush written data to stable storage.
    async fn sync(&self) -> Result<()>;
    /// The bytes of `[offset, offset + len)` from one request, as they
    /// arrive (a ranged GET on an object store), for readers that go
    /// through a file front to back.
    ///
    /// Requires [`Capabilities::read_streams`]; without it `Ok(None)` (the
    /// default): read with [`FileHandle::read_at`] then.
    async fn read_stream(&self, offset: u64, len: u64) -> Result<Option<Box<dyn ByteStream>>> {
        let _ = (offset, len);
        Ok(None)
    }
    /// A hash the store keeps of exactly the content this handle reads
    /// (known when it was opened, at no extra cost), to verify a whole-file
    /// read against. `None` when there is none.
    fn stored_hash(&self) -> Option<(HashKind, String)> {
        None
    }
}

/// The bytes of one ranged read, in order, as they arrive. See
/// [`FileHandle::read_stream`].
#[async_trait]
pub trait ByteStream: Send {
    /// The next piece; `None` at the end of the range (which may come early
    /// if the file is shorter than asked).
    async fn next(&mut self) -> Result<Option<Bytes>>;
}

/// Options for [`Backend::create_upload`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// The modification time to record, when the caller knows it already.
    pub mtime: Option<SystemTime>,
    /// Fail with [`ErrorKind::AlreadyExists`] when the object exists at
    /// commit (where the store can check that atomically; otherwise the
    /// caller checks first).
    pub if_not_exists: bool,
}

/// A new file being written front to back, invisible until
/// [`Upload::finish`] commits it. Dropping an unfinished upload abandons it
/// (call [`Upload::abort`] to clean up what the store keeps meanwhile, such
/// as multipart parts).
#[async_trait]
pub trait Upload: Send + Sync {
    /// Append `data`.
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// Commit the file, recording `mtime` as its modification time when
    /// given (the store's own time otherwise). Nothing is visible before.
    async fn finish(&mut self, mtime: Option<SystemTime>) -> Result<Metadata>;
    /// Abandon the upload and release what the store holds for it.
    async fn abort(&mut self) -> Result<()>;
}

/// Called with each path changed outside Ferry (`None`: anything may have
/// changed, for example after the notification queue overflowed).
pub type ChangeNotify = std::sync::Arc<dyn Fn(Option<&RelPath>) + Send + Sync>;

/// A storage backend. See the crate docs.
///
/// Methods that need a capability say so under "Requires"; without it they
/// return [`ErrorKind::Unsupported`].
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// A short human-readable name such as `local:/srv/data`.
    fn describe(&self) -> String;

    /// Metadata of `path`, following symbolic links (inside the root only).
    async fn stat(&self, path: &RelPath) -> Result<Metadata>;

    /// Metadata of `path` itself, not following a final symbolic link.
    async fn lstat(&self, path: &RelPath) -> Result<Metadata>;

    /// The entries of directory `path` (without `.` and `..`), with their
    /// metadata as [`Backend::lstat`] would give it.
    async fn list(&self, path: &RelPath) -> Result<Vec<DirEntry>>;

    /// Open a file for positional reads and writes.
    ///
    /// Requires [`Capabilities::random_access_write`] for write access; read
    /// access is always available.
    async fn open_file(&self, path: &RelPath, opts: OpenOptions) -> Result<Box<dyn FileHandle>>;

    /// Remove a file or symbolic link (never a directory).
    async fn remove_file(&self, path: &RelPath) -> Result<()>;

    /// Create a directory; fails with [`ErrorKind::AlreadyExists`] when
    /// anything exists at `path`.
    async fn create_dir(&self, path: &RelPath, mode: Option<u32>) -> Result<()>;

    /// Remove an empty directory.
    async fn remove_dir(&self, path: &RelPath) -> Result<()>;

    /// Rename `from` to `to`. With `overwrite`, an existing file at `to` is
    /// replaced (atomically where [`Capabilities::atomic_rename`]); without
    /// it, an existing `to` fails with [`ErrorKind::AlreadyExists`].
    async fn rename(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<()>;

    /// Copy file `from` to `to` inside the store.
    ///
    /// Requires [`Capabilities::server_side_copy`].
    async fn copy(&self, from: &RelPath, to: &RelPath) -> Result<()>;

    /// Change attributes of `path` (following symbolic links).
    async fn set_attrs(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()>;

    /// Change attributes of `path` itself (not following a final symbolic
    /// link).
    async fn set_attrs_nofollow(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()>;

    /// Create a symbolic link at `link` pointing to `target` (stored as
    /// given).
    ///
    /// Requires [`Capabilities::symlinks`].
    async fn symlink(&self, target: &[u8], link: &RelPath) -> Result<()>;

    /// The target of symbolic link `path`, as stored.
    ///
    /// Requires [`Capabilities::symlinks`].
    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>>;

    /// Create a hard link `link` to file `existing`.
    ///
    /// Requires [`Capabilities::hard_links`].
    async fn hard_link(&self, existing: &RelPath, link: &RelPath) -> Result<()>;

    /// Space used and available.
    ///
    /// Requires [`Capabilities::usage`].
    async fn usage(&self) -> Result<Usage>;

    /// Start reporting changes made to the store by others to `on_change`,
    /// for as long as the backend lives.
    ///
    /// Requires [`Capabilities::change_watch`].
    fn watch_changes(&self, on_change: ChangeNotify) -> Result<()> {
        let _ = on_change;
        Err(BackendError::new(ErrorKind::Unsupported, Operation::List))
    }

    /// Start writing a new file at `path`, front to back; it replaces any
    /// file there when [`Upload::finish`] commits it.
    ///
    /// Requires [`Capabilities::streaming_upload`].
    async fn create_upload(&self, path: &RelPath, opts: UploadOptions) -> Result<Box<dyn Upload>> {
        let _ = opts;
        Err(BackendError::new(ErrorKind::Unsupported, Operation::Write).with_path(path))
    }

    /// A hash the store keeps for `path`, or `None` when it has none (then
    /// the caller computes it by reading). Asked only for the kinds in
    /// [`Capabilities::native_hashes`].
    async fn stored_hash(&self, path: &RelPath, kind: HashKind) -> Result<Option<String>> {
        let _ = (path, kind);
        Ok(None)
    }
}
