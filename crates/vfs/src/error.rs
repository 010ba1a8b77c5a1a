//! VFS errors, mapped once from backend errors.

use ferry_backend::{BackendError, ErrorKind};

/// Shorthand for VFS results.
pub type Result<T, E = VfsError> = std::result::Result<T, E>;

/// Why a VFS operation failed. The server maps each variant to one SFTP
/// status in one function.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    /// No such file or directory.
    #[error("no such file or directory")]
    NotFound,
    /// Access refused by the store.
    #[error("permission denied")]
    PermissionDenied,
    /// The server is read-only.
    #[error("read-only file system")]
    ReadOnly,
    /// Something already exists there.
    #[error("file already exists")]
    AlreadyExists,
    /// A directory was expected.
    #[error("not a directory")]
    NotADirectory,
    /// A file was expected.
    #[error("is a directory")]
    IsADirectory,
    /// The directory is not empty.
    #[error("directory not empty")]
    NotEmpty,
    /// No space left.
    #[error("no space left on device")]
    NoSpace,
    /// The backend or this server cannot do it.
    #[error("operation not supported: {0}")]
    Unsupported(&'static str),
    /// This remote cannot do what was asked, with the details.
    #[error("operation not supported: {0}")]
    UnsupportedHere(String),
    /// The name is not allowed.
    #[error("invalid file name")]
    InvalidName,
    /// The path leads outside the served root.
    #[error("path leads outside the served directory")]
    OutsideRoot,
    /// Too many levels of symbolic links.
    #[error("too many levels of symbolic links")]
    Loop,
    /// The handle was not opened for this.
    #[error("handle not open for {0}")]
    BadHandleMode(&'static str),
    /// A bad argument (an offset past the largest, a directory moved into
    /// itself).
    #[error("{0}")]
    InvalidArgument(String),
    /// The file was closed (or its upload finished) already.
    #[error("file is closed")]
    Closed,
    /// A streamed upload cannot be committed (a gap, an earlier failure);
    /// nothing of it is stored.
    #[error("{0}")]
    UploadFailed(String),
    /// Ferry itself failed (a task that died); the message says where.
    #[error("internal error: {0}")]
    Internal(String),
    /// What was read does not match the hash the store keeps.
    #[error("corrupted on transfer: {0}")]
    Corrupted(String),
    /// The on-disk file cache failed (the message says how).
    #[error("{0}")]
    Cache(String),
    /// Any other backend failure.
    #[error("{0}")]
    Backend(BackendError),
}

impl From<BackendError> for VfsError {
    fn from(e: BackendError) -> Self {
        match e.kind() {
            ErrorKind::NotFound => VfsError::NotFound,
            ErrorKind::PermissionDenied => VfsError::PermissionDenied,
            ErrorKind::AlreadyExists => VfsError::AlreadyExists,
            ErrorKind::NotADirectory => VfsError::NotADirectory,
            ErrorKind::IsADirectory => VfsError::IsADirectory,
            ErrorKind::DirectoryNotEmpty => VfsError::NotEmpty,
            ErrorKind::NoSpace => VfsError::NoSpace,
            ErrorKind::ReadOnly => VfsError::ReadOnly,
            ErrorKind::Unsupported => VfsError::Unsupported("by this remote"),
            ErrorKind::InvalidName => VfsError::InvalidName,
            ErrorKind::OutsideRoot => VfsError::OutsideRoot,
            ErrorKind::TooManyLinks => VfsError::Loop,
            ErrorKind::RateLimited | ErrorKind::Temporary | ErrorKind::Other => {
                VfsError::Backend(e)
            }
        }
    }
}
