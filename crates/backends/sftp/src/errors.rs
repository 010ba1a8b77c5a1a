//! SFTP statuses and connection failures as backend errors.

use ferry_backend::{BackendError, ErrorKind, Operation, RelPath};
use ferry_proto::StatusCode;

use crate::conn::ConnectError;
use crate::session::SftpErr;

/// The [`ErrorKind`] of a failed request, before any refinement.
pub(crate) fn sftp_kind(e: &SftpErr) -> ErrorKind {
    match e {
        SftpErr::Status(code, _) => match code {
            StatusCode::NoSuchFile => ErrorKind::NotFound,
            StatusCode::PermissionDenied => ErrorKind::PermissionDenied,
            StatusCode::OpUnsupported => ErrorKind::Unsupported,
            StatusCode::NoConnection | StatusCode::ConnectionLost => ErrorKind::Temporary,
            _ => ErrorKind::Other,
        },
        SftpErr::Lost(_) => ErrorKind::Temporary,
        SftpErr::Protocol(_) => ErrorKind::Other,
    }
}

pub(crate) fn sftp_error(op: Operation, path: &RelPath, e: SftpErr) -> BackendError {
    BackendError::new(sftp_kind(&e), op)
        .with_path(path)
        .with_source(e)
}

pub(crate) fn refined(kind: ErrorKind, op: Operation, path: &RelPath, e: SftpErr) -> BackendError {
    BackendError::new(kind, op).with_path(path).with_source(e)
}

pub(crate) fn connect_error(op: Operation, e: ConnectError) -> BackendError {
    let kind = match e {
        ConnectError::Temporary(_) => ErrorKind::Temporary,
        ConnectError::Auth(_) => ErrorKind::PermissionDenied,
        ConnectError::HostKey(_) | ConnectError::Config(_) | ConnectError::Other(_) => {
            ErrorKind::Other
        }
    };
    BackendError::new(kind, op).with_source(e)
}
