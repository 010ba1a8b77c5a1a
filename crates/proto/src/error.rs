//! Decoding errors.

use std::fmt;

use crate::status::StatusCode;

/// Why a packet payload could not be decoded, and which request it was.
///
/// `id` is the request id when the decoder got far enough to read it (every
/// packet except `SSH_FXP_INIT`/`SSH_FXP_VERSION` carries one right after the
/// type byte), so a server can answer that request with a status instead of
/// dropping the session. Use [`DecodeError::status_code`] to pick the code.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The request id, if the packet was long enough to contain it.
    pub id: Option<u32>,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    pub(crate) fn new(id: Option<u32>, kind: DecodeErrorKind) -> Self {
        DecodeError { id, kind }
    }

    /// The status a server should answer with: `OpUnsupported` for an unknown
    /// packet type, `BadMessage` for a malformed packet.
    pub fn status_code(&self) -> StatusCode {
        match self.kind {
            DecodeErrorKind::UnknownType(_) => StatusCode::OpUnsupported,
            DecodeErrorKind::Truncated | DecodeErrorKind::BadValue(_) => StatusCode::BadMessage,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "malformed SFTP packet (request id {id}): {}", self.kind),
            None => write!(f, "malformed SFTP packet: {}", self.kind),
        }
    }
}

/// The specific decoding failure.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The payload ended before a field, or a declared string length or item
    /// count is larger than the bytes left in the payload.
    #[error("packet ends before a field, or declares a length or count larger than the packet")]
    Truncated,
    /// The packet type byte is not one this side of the protocol accepts
    /// (for example a response type sent as a request). Servers answer
    /// `SSH_FX_OP_UNSUPPORTED`.
    #[error("unknown or unexpected packet type {0}")]
    UnknownType(u8),
    /// A field is well-formed but its value is not allowed; the text names the
    /// field and the rule.
    #[error("bad value: {0}")]
    BadValue(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_mentions_id_and_kind() {
        let e = DecodeError::new(Some(42), DecodeErrorKind::UnknownType(99));
        assert_eq!(
            e.to_string(),
            "malformed SFTP packet (request id 42): unknown or unexpected packet type 99"
        );
        assert_eq!(e.status_code(), StatusCode::OpUnsupported);
        let e = DecodeError::new(None, DecodeErrorKind::Truncated);
        assert!(e
            .to_string()
            .starts_with("malformed SFTP packet: packet ends"));
        assert_eq!(e.status_code(), StatusCode::BadMessage);
    }
}
