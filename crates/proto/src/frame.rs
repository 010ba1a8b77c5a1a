//! Packet framing: decide from the length prefix alone whether a whole packet
//! is buffered, before parsing anything.

/// The outcome of [`check_frame`] on a buffer that is not malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Fewer bytes are buffered than the packet needs; read more and check
    /// again.
    Incomplete,
    /// A whole packet is buffered. The value is its total size including the
    /// 4-byte length prefix, so `buf[4..n]` is the payload to decode and
    /// `buf[n..]` the start of the next packet.
    Complete(usize),
}

/// A length prefix that can never become a valid packet. The connection
/// cannot be resynchronised after this; the session should be closed.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The declared length exceeds the maximum this side accepts.
    #[error("SFTP packet length {len} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The declared length (excluding the 4-byte prefix).
        len: u32,
        /// The maximum in force.
        max: u32,
    },
    /// The declared length is zero, so there is not even a type byte.
    #[error("SFTP packet with length 0 (no type byte)")]
    Empty,
}

/// Checks whether `buf` starts with a whole packet whose length field is at
/// most `max_packet`.
///
/// Only the 4-byte length prefix is read, and the limit is enforced as soon as
/// the prefix is available, so a peer cannot make the caller buffer more than
/// `max_packet + 4` bytes for one packet.
///
/// ```
/// use ferry_proto::{check_frame, Frame, FrameError};
/// assert_eq!(check_frame(b"\x00\x00", 100), Ok(Frame::Incomplete));
/// assert_eq!(check_frame(b"\x00\x00\x00\x01\x01", 100), Ok(Frame::Complete(5)));
/// assert_eq!(check_frame(b"\x00\x00\x00\x00", 100), Err(FrameError::Empty));
/// ```
pub fn check_frame(buf: &[u8], max_packet: u32) -> Result<Frame, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(Frame::Incomplete);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_packet {
        return Err(FrameError::TooLarge {
            len,
            max: max_packet,
        });
    }
    // Saturating: on a 32-bit target a length near u32::MAX simply stays
    // incomplete instead of wrapping.
    let total = usize::try_from(len).unwrap_or(usize::MAX).saturating_add(4);
    if buf.len() < total {
        Ok(Frame::Incomplete)
    } else {
        Ok(Frame::Complete(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_than_four_bytes_is_incomplete() {
        for n in 0..4 {
            assert_eq!(check_frame(&[0xff; 3][..n], 10), Ok(Frame::Incomplete));
        }
    }

    #[test]
    fn zero_length_is_empty() {
        assert_eq!(check_frame(&[0, 0, 0, 0], 10), Err(FrameError::Empty));
        assert_eq!(check_frame(&[0, 0, 0, 0, 1, 2], 10), Err(FrameError::Empty));
    }

    #[test]
    fn exactly_max_is_accepted_and_max_plus_one_rejected() {
        let max = 8u32;
        let mut buf = max.to_be_bytes().to_vec();
        buf.extend_from_slice(&[7; 8]);
        assert_eq!(check_frame(&buf[..11], max), Ok(Frame::Incomplete));
        assert_eq!(check_frame(&buf, max), Ok(Frame::Complete(12)));
        buf.push(9); // Bytes of the next packet do not matter.
        assert_eq!(check_frame(&buf, max), Ok(Frame::Complete(12)));

        let mut over = (max + 1).to_be_bytes().to_vec();
        // Rejected from the prefix alone, before the body arrives.
        assert_eq!(
            check_frame(&over, max),
            Err(FrameError::TooLarge { len: 9, max: 8 })
        );
        over.extend_from_slice(&[0; 9]);
        assert_eq!(
            check_frame(&over, max),
            Err(FrameError::TooLarge { len: 9, max: 8 })
        );
    }

    #[test]
    fn huge_length_is_rejected() {
        assert_eq!(
            check_frame(&[0xff; 4], crate::DEFAULT_MAX_PACKET),
            Err(FrameError::TooLarge {
                len: u32::MAX,
                max: crate::DEFAULT_MAX_PACKET
            })
        );
        assert_eq!(
            check_frame(&[0xff; 4], u32::MAX),
            Ok(Frame::Incomplete),
            "u32::MAX as the limit is allowed and must not overflow"
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            FrameError::TooLarge { len: 9, max: 8 }.to_string(),
            "SFTP packet length 9 exceeds the maximum of 8 bytes"
        );
    }
}
