//! Conversions between the VFS and the wire: attributes and statuses.
//!
//! Every [`VfsError`] maps to exactly one SFTP status here, in one
//! exhaustive function.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_proto::{FileAttributes, StatusCode};
use ferry_vfs::backend::SetAttrs;
use ferry_vfs::{Attr, VfsError};

/// Seconds since the epoch as SFTP v3 carries them (u32, clamped).
fn secs(t: SystemTime) -> u32 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs().min(u32::MAX as u64) as u32,
        Err(_) => 0,
    }
}

/// Wire attributes of a VFS attribute set.
pub fn to_wire(a: &Attr) -> FileAttributes {
    FileAttributes {
        size: Some(a.size),
        uid_gid: Some((a.uid, a.gid)),
        permissions: Some(a.mode),
        atime_mtime: Some((secs(a.atime), secs(a.mtime))),
        extended: Vec::new(),
    }
}

/// The changes a SETSTAT-like request asks for.
pub fn to_setattrs(a: &FileAttributes) -> SetAttrs {
    SetAttrs {
        size: a.size,
        permissions: a.permissions.map(|p| p & 0o7777),
        times: a.atime_mtime.map(|(at, mt)| {
            (
                UNIX_EPOCH + Duration::from_secs(at as u64),
                UNIX_EPOCH + Duration::from_secs(mt as u64),
            )
        }),
        owner: a.uid_gid,
    }
}

/// Why a request failed: the VFS's reasons, and the server's own.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The file system said no.
    #[error(transparent)]
    Vfs(#[from] VfsError),
    /// The handle is not (or no longer) open.
    #[error("invalid handle")]
    InvalidHandle,
    /// A file request on a directory handle.
    #[error("not a file handle")]
    NotAFileHandle,
    /// READDIR on a file handle.
    #[error("not a directory handle")]
    NotADirectoryHandle,
    /// copy-data within one handle between ranges that overlap.
    #[error("copy-data source and destination overlap")]
    CopyOverlap,
    /// A request that never reaches an operation (INIT is the reader's).
    #[error("unexpected {0}")]
    Unexpected(&'static str),
    /// Work stopped because the client's replies can no longer be sent.
    #[error("the client is gone")]
    ClientGone,
}

/// The status and message for a failed request.
pub fn status_of(e: &OpError) -> (StatusCode, String) {
    use StatusCode as S;
    let code = match e {
        OpError::Vfs(v) => vfs_status(v),
        OpError::InvalidHandle
        | OpError::NotAFileHandle
        | OpError::NotADirectoryHandle
        | OpError::CopyOverlap
        | OpError::Unexpected(_) => S::Failure,
        OpError::ClientGone => S::ConnectionLost,
    };
    let mut msg = e.to_string();
    if let Some(first) = msg.get(..1) {
        let upper = first.to_ascii_uppercase();
        msg.replace_range(..1, &upper);
    }
    (code, msg)
}

/// The status of a VFS error: one arm per variant, no wildcard, so a new
/// variant must be placed here.
fn vfs_status(e: &VfsError) -> StatusCode {
    use StatusCode as S;
    match e {
        VfsError::NotFound => S::NoSuchFile,
        VfsError::PermissionDenied
        | VfsError::ReadOnly
        | VfsError::OutsideRoot
        | VfsError::BadHandleMode(_) => S::PermissionDenied,
        VfsError::Unsupported(_) | VfsError::UnsupportedHere(_) => S::OpUnsupported,
        VfsError::AlreadyExists
        | VfsError::NotADirectory
        | VfsError::IsADirectory
        | VfsError::NotEmpty
        | VfsError::NoSpace
        | VfsError::InvalidName
        | VfsError::Loop
        | VfsError::InvalidArgument(_)
        | VfsError::Closed
        | VfsError::UploadFailed(_)
        | VfsError::Internal(_)
        | VfsError::Corrupted(_)
        | VfsError::Cache(_)
        | VfsError::Backend(_) => S::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            status_of(&OpError::Vfs(VfsError::NotFound)).0,
            StatusCode::NoSuchFile
        );
        assert_eq!(
            status_of(&OpError::Vfs(VfsError::ReadOnly)).0,
            StatusCode::PermissionDenied
        );
        assert_eq!(
            status_of(&OpError::Vfs(VfsError::OutsideRoot)).0,
            StatusCode::PermissionDenied
        );
        assert_eq!(
            status_of(&OpError::Vfs(VfsError::Unsupported("x"))).0,
            StatusCode::OpUnsupported
        );
        let (c, m) = status_of(&OpError::Vfs(VfsError::AlreadyExists));
        assert_eq!(c, StatusCode::Failure);
        assert_eq!(m, "File already exists");
        assert_eq!(
            status_of(&OpError::Vfs(VfsError::NoSpace)).1,
            "No space left on device"
        );
        let (c, m) = status_of(&OpError::InvalidHandle);
        assert_eq!((c, m.as_str()), (StatusCode::Failure, "Invalid handle"));
    }

    #[test]
    fn times_clamp() {
        assert_eq!(secs(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(secs(UNIX_EPOCH + Duration::from_secs(1 << 40)), u32::MAX);
        let a = to_setattrs(&FileAttributes {
            permissions: Some(0o100644),
            atime_mtime: Some((1, 2)),
            ..Default::default()
        });
        assert_eq!(a.permissions, Some(0o644));
        assert_eq!(a.times.unwrap().1, UNIX_EPOCH + Duration::from_secs(2));
    }
}
