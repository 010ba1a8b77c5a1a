//! `SSH_FX_*` status codes carried by `SSH_FXP_STATUS`.

use std::fmt;

/// The result code of an `SSH_FXP_STATUS` reply (draft-02 §7). Version 3
/// defines codes 0 to 8; later drafts add more, which this enum may grow to
/// cover.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// `SSH_FX_OK`: success.
    Ok = 0,
    /// `SSH_FX_EOF`: read past the end of a file, or no more directory entries.
    Eof = 1,
    /// `SSH_FX_NO_SUCH_FILE`: the path does not exist.
    NoSuchFile = 2,
    /// `SSH_FX_PERMISSION_DENIED`.
    PermissionDenied = 3,
    /// `SSH_FX_FAILURE`: any other error.
    Failure = 4,
    /// `SSH_FX_BAD_MESSAGE`: a malformed packet.
    BadMessage = 5,
    /// `SSH_FX_NO_CONNECTION`: a pseudo-error for clients, never sent by a server.
    NoConnection = 6,
    /// `SSH_FX_CONNECTION_LOST`: a pseudo-error for clients, never sent by a server.
    ConnectionLost = 7,
    /// `SSH_FX_OP_UNSUPPORTED`: the server does not implement the operation.
    OpUnsupported = 8,
}

impl StatusCode {
    /// The code for a wire value, or `None` for a value version 3 does not
    /// define.
    pub fn from_u32(code: u32) -> Option<StatusCode> {
        Some(match code {
            0 => StatusCode::Ok,
            1 => StatusCode::Eof,
            2 => StatusCode::NoSuchFile,
            3 => StatusCode::PermissionDenied,
            4 => StatusCode::Failure,
            5 => StatusCode::BadMessage,
            6 => StatusCode::NoConnection,
            7 => StatusCode::ConnectionLost,
            8 => StatusCode::OpUnsupported,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The message OpenSSH's `sftp-server` sends with this code when there is
    /// nothing more specific to say (e.g. "No such file").
    pub fn default_message(self) -> &'static str {
        match self {
            StatusCode::Ok => "Success",
            StatusCode::Eof => "End of file",
            StatusCode::NoSuchFile => "No such file",
            StatusCode::PermissionDenied => "Permission denied",
            StatusCode::Failure => "Failure",
            StatusCode::BadMessage => "Bad message",
            StatusCode::NoConnection => "No connection",
            StatusCode::ConnectionLost => "Connection lost",
            StatusCode::OpUnsupported => "Operation unsupported",
        }
    }
}

impl From<StatusCode> for u32 {
    fn from(code: StatusCode) -> u32 {
        code.as_u32()
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.default_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_u32_round_trips_every_code() {
        for n in 0..=8 {
            let code = StatusCode::from_u32(n).unwrap();
            assert_eq!(code.as_u32(), n);
            assert_eq!(u32::from(code), n);
        }
        assert_eq!(StatusCode::from_u32(9), None);
        assert_eq!(StatusCode::from_u32(u32::MAX), None);
    }

    #[test]
    fn default_messages() {
        assert_eq!(StatusCode::NoSuchFile.default_message(), "No such file");
        assert_eq!(
            StatusCode::PermissionDenied.to_string(),
            "Permission denied"
        );
        assert_eq!(StatusCode::Eof.default_message(), "End of file");
        assert_eq!(
            StatusCode::OpUnsupported.default_message(),
            "Operation unsupported"
        );
    }
}
