//! Bodies of `SSH_FXP_EXTENDED_REPLY` for the OpenSSH extensions that return
//! fixed records: `statvfs@openssh.com`/`fstatvfs@openssh.com` and
//! `limits@openssh.com`. They go in [`Response::ExtendedReply`]'s `data`.
//!
//! [`Response::ExtendedReply`]: crate::Response::ExtendedReply

use bytes::Bytes;

use crate::error::{DecodeError, DecodeErrorKind};
use crate::wire::put_u64;

/// [`Statvfs::flag`] bit: the file system is read-only.
pub const ST_RDONLY: u64 = 0x1;
/// [`Statvfs::flag`] bit: set-uid bits are ignored.
pub const ST_NOSUID: u64 = 0x2;

/// Reads `N` big-endian `u64`s from the front of `data`; bytes after them are
/// ignored (lenient, as for packets).
fn read_u64s<const N: usize>(data: &[u8]) -> Result<[u64; N], DecodeError> {
    let body = data
        .get(..N * 8)
        .ok_or(DecodeError::new(None, DecodeErrorKind::Truncated))?;
    let mut out = [0u64; N];
    for (v, chunk) in out.iter_mut().zip(body.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *v = u64::from_be_bytes(b);
    }
    Ok(out)
}

/// Reply to `statvfs@openssh.com` and `fstatvfs@openssh.com`: the fields of
/// POSIX `struct statvfs`, each a `uint64`, in this order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statvfs {
    /// File system block size.
    pub bsize: u64,
    /// Fundamental block size (the unit of `blocks`, `bfree`, `bavail`).
    pub frsize: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Free inodes available to unprivileged users.
    pub favail: u64,
    /// File system id.
    pub fsid: u64,
    /// Mount flags: [`ST_RDONLY`], [`ST_NOSUID`].
    pub flag: u64,
    /// Longest file name.
    pub namemax: u64,
}

impl Statvfs {
    /// Size of the encoded body: eleven `uint64`s.
    pub const ENCODED_LEN: usize = 11 * 8;

    /// Appends the reply body (not a framed packet) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.bsize,
            self.frsize,
            self.blocks,
            self.bfree,
            self.bavail,
            self.files,
            self.ffree,
            self.favail,
            self.fsid,
            self.flag,
            self.namemax,
        ] {
            put_u64(out, v);
        }
    }

    /// The reply body as `Bytes`, ready for [`Response::ExtendedReply`].
    ///
    /// [`Response::ExtendedReply`]: crate::Response::ExtendedReply
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(Self::ENCODED_LEN);
        self.encode(&mut out);
        Bytes::from(out)
    }

    /// Parses a reply body. Fails with `Truncated` if shorter than
    /// [`Statvfs::ENCODED_LEN`]; extra bytes are ignored.
    pub fn decode(data: &[u8]) -> Result<Statvfs, DecodeError> {
        let [bsize, frsize, blocks, bfree, bavail, files, ffree, favail, fsid, flag, namemax] =
            read_u64s::<11>(data)?;
        Ok(Statvfs {
            bsize,
            frsize,
            blocks,
            bfree,
            bavail,
            files,
            ffree,
            favail,
            fsid,
            flag,
            namemax,
        })
    }
}

/// Reply to `limits@openssh.com`: four `uint64`s. Zero means "no limit" for
/// `max_open_handles`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet (length field value) the server accepts.
    pub max_packet_len: u64,
    /// Largest `len` of a `READ` the server answers in full.
    pub max_read_len: u64,
    /// Largest `data` of a `WRITE` the server accepts.
    pub max_write_len: u64,
    /// Most handles open at once (0: no limit).
    pub max_open_handles: u64,
}

impl Limits {
    /// Size of the encoded body: four `uint64`s.
    pub const ENCODED_LEN: usize = 4 * 8;

    /// Appends the reply body (not a framed packet) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.max_packet_len,
            self.max_read_len,
            self.max_write_len,
            self.max_open_handles,
        ] {
            put_u64(out, v);
        }
    }

    /// The reply body as `Bytes`, ready for [`Response::ExtendedReply`].
    ///
    /// [`Response::ExtendedReply`]: crate::Response::ExtendedReply
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(Self::ENCODED_LEN);
        self.encode(&mut out);
        Bytes::from(out)
    }

    /// Parses a reply body. Fails with `Truncated` if shorter than
    /// [`Limits::ENCODED_LEN`]; extra bytes are ignored.
    pub fn decode(data: &[u8]) -> Result<Limits, DecodeError> {
        let [max_packet_len, max_read_len, max_write_len, max_open_handles] = read_u64s::<4>(data)?;
        Ok(Limits {
            max_packet_len,
            max_read_len,
            max_write_len,
            max_open_handles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_round_trip_and_layout() {
        let s = Statvfs {
            bsize: 4096,
            frsize: 4096,
            blocks: 1 << 40,
            bfree: 12,
            bavail: 11,
            files: 1_000_000_000,
            ffree: 999,
            favail: 998,
            fsid: u64::MAX,
            flag: ST_RDONLY | ST_NOSUID,
            namemax: 255,
        };
        let b = s.to_bytes();
        assert_eq!(b.len(), Statvfs::ENCODED_LEN);
        assert_eq!(&b[..8], &4096u64.to_be_bytes());
        assert_eq!(&b[80..], &255u64.to_be_bytes());
        assert_eq!(Statvfs::decode(&b), Ok(s));
        for n in 0..b.len() {
            assert_eq!(
                Statvfs::decode(&b[..n]).unwrap_err().kind,
                DecodeErrorKind::Truncated
            );
        }
    }

    #[test]
    fn limits_round_trip_and_layout() {
        let l = Limits {
            max_packet_len: 263_168,
            max_read_len: 32_768,
            max_write_len: 262_144,
            max_open_handles: 0,
        };
        let b = l.to_bytes();
        let mut expected = Vec::new();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 4, 4, 0]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x80, 0]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 4, 0, 0]);
        expected.extend_from_slice(&[0; 8]);
        assert_eq!(&b[..], &expected[..]);
        assert_eq!(Limits::decode(&b), Ok(l));
        assert!(Limits::decode(&b[..31]).is_err());
    }
}
