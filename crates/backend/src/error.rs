//! Backend errors: a kind, the operation, the path and the source.

use std::fmt;

use crate::RelPath;

/// Shorthand for results of backend calls.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// What went wrong, as far as the layers above need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The path does not exist.
    NotFound,
    /// The store refused access.
    PermissionDenied,
    /// Something already exists at the path.
    AlreadyExists,
    /// A directory was expected.
    NotADirectory,
    /// A non-directory was expected.
    IsADirectory,
    /// The directory is not empty.
    DirectoryNotEmpty,
    /// No space left (or quota exceeded).
    NoSpace,
    /// The store is read-only.
    ReadOnly,
    /// The backend cannot do this.
    Unsupported,
    /// The name cannot be stored (not UTF-8, too long, reserved).
    InvalidName,
    /// A path would leave the root (for example through a symbolic link).
    OutsideRoot,
    /// A symbolic link loop, or too many levels.
    TooManyLinks,
    /// Rate limited by the store; try again later.
    RateLimited,
    /// A temporary failure (network, timeout); try again.
    Temporary,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Is a retry likely to succeed?
    pub fn is_temporary(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Temporary)
    }
}

/// The backend operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Operation {
    Stat,
    List,
    Open,
    Read,
    Write,
    Remove,
    CreateDir,
    RemoveDir,
    Rename,
    Copy,
    SetAttrs,
    Symlink,
    ReadLink,
    HardLink,
    Usage,
    Sync,
    Hash,
}

/// An error from a backend, with its context.
#[derive(Debug)]
pub struct BackendError {
    kind: ErrorKind,
    op: Operation,
    path: Option<RelPath>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    /// A new error of `kind` during `op`.
    pub fn new(kind: ErrorKind, op: Operation) -> Self {
        BackendError {
            kind,
            op,
            path: None,
            source: None,
        }
    }

    /// Attach the path the operation was on.
    pub fn with_path(mut self, path: &RelPath) -> Self {
        self.path = Some(path.clone());
        self
    }

    /// Attach the underlying cause.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Classify an I/O error.
    pub fn from_io(op: Operation, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied => ErrorKind::PermissionDenied,
            K::AlreadyExists => ErrorKind::AlreadyExists,
            K::NotADirectory => ErrorKind::NotADirectory,
            K::IsADirectory => ErrorKind::IsADirectory,
            K::DirectoryNotEmpty => ErrorKind::DirectoryNotEmpty,
            K::StorageFull | K::QuotaExceeded => ErrorKind::NoSpace,
            K::ReadOnlyFilesystem => ErrorKind::ReadOnly,
            K::Unsupported => ErrorKind::Unsupported,
            K::InvalidFilename => ErrorKind::InvalidName,
            K::TimedOut | K::Interrupted | K::WouldBlock => ErrorKind::Temporary,
            _ => match err.raw_os_error() {
                Some(libc::ELOOP) => ErrorKind::TooManyLinks,
                Some(libc::ENAMETOOLONG) => ErrorKind::InvalidName,
                Some(libc::EXDEV) => ErrorKind::Unsupported,
                _ => ErrorKind::Other,
            },
        };
        BackendError::new(kind, op).with_source(err)
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operation.
    pub fn operation(&self) -> Operation {
        self.op
    }

    /// The path, when known.
    pub fn path(&self) -> Option<&RelPath> {
        self.path.as_ref()
    }

    /// Is a retry likely to succeed?
    pub fn is_temporary(&self) -> bool {
        self.kind.is_temporary()
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} failed", self.op)?;
        if let Some(p) = &self.path {
            write!(f, " on {p}")?;
        }
        write!(f, ": {:?}", self.kind)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified() {
        let e = BackendError::from_io(
            Operation::Stat,
            std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = BackendError::from_io(
            Operation::Stat,
            std::io::Error::from_raw_os_error(libc::ELOOP),
        );
        assert_eq!(e.kind(), ErrorKind::TooManyLinks);
        let e = BackendError::from_io(
            Operation::Write,
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        assert!(!e.is_temporary());
        let e = e.with_path(&RelPath::new(b"a/b".to_vec()).unwrap());
        assert!(
            e.to_string().starts_with("Write failed on /a/b: NoSpace"),
            "{e}"
        );
    }
}
