//! Big-endian primitives of the SFTP wire format (draft-ietf-secsh-filexfer-02
//! §3): `byte`, `uint32`, `uint64` and `string` (a `uint32` length followed by
//! that many bytes).
//!
//! [`Reader`] checks every length against the bytes that remain before it
//! reads, and hands out strings as zero-copy [`Bytes`] slices. The `put_*`
//! functions append to a `Vec<u8>`; [`framed`] wraps a packet body in its
//! length prefix.

use bytes::{Buf, Bytes};

use crate::error::DecodeErrorKind;

/// A cursor over a packet payload. Every read is bounds-checked and fails with
/// [`DecodeErrorKind::Truncated`] instead of panicking.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeErrorKind> {
        let head = self.buf.get(..N).ok_or(DecodeErrorKind::Truncated)?;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        self.buf.advance(N);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeErrorKind> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeErrorKind> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeErrorKind> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A `string`: the declared length is checked against what remains, then
    /// the bytes are sliced out of the payload without copying.
    pub(crate) fn string(&mut self) -> Result<Bytes, DecodeErrorKind> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| DecodeErrorKind::Truncated)?;
        if len > self.buf.len() {
            return Err(DecodeErrorKind::Truncated);
        }
        Ok(self.buf.split_to(len))
    }

    /// Everything not yet read (used for bodies that run to the end of the
    /// packet, such as an unknown extension's data).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails with `Truncated` unless at least `count` items of at least
    /// `min_item_len` bytes each could still follow. Call before reserving
    /// room for a peer-declared count.
    pub(crate) fn check_count(
        &self,
        count: u32,
        min_item_len: usize,
    ) -> Result<usize, DecodeErrorKind> {
        let count = usize::try_from(count).map_err(|_| DecodeErrorKind::Truncated)?;
        if count > self.buf.len() / min_item_len {
            return Err(DecodeErrorKind::Truncated);
        }
        Ok(count)
    }
}

/// Converts a length to the wire's `uint32`.
///
/// # Panics
///
/// If `n` exceeds `u32::MAX`: such a field cannot be represented in SFTP, and
/// building one is a bug in the caller (real packets are bounded by the
/// negotiated maximum, far below 4 GiB).
pub(crate) fn len_u32(n: usize) -> u32 {
    u32::try_from(n).expect("SFTP field or packet longer than u32::MAX bytes")
}

pub(crate) fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, len_u32(s.len()));
    out.extend_from_slice(s);
}

/// Encoded size of a `string` holding `n` bytes.
pub(crate) const fn string_len(n: usize) -> usize {
    4 + n
}

/// Appends a length prefix, then the body written by `body`, then patches the
/// prefix with the body's length.
pub(crate) fn framed(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = len_u32(out.len() - start - 4);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Reads `(name, value)` string pairs until the payload ends, as in
/// `SSH_FXP_INIT` and `SSH_FXP_VERSION`. A partial pair is `Truncated`.
pub(crate) fn read_pairs(r: &mut Reader) -> Result<Vec<(Bytes, Bytes)>, DecodeErrorKind> {
    let mut pairs = Vec::new();
    while r.remaining() > 0 {
        let name = r.string()?;
        let value = r.string()?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

pub(crate) fn put_pairs(out: &mut Vec<u8>, pairs: &[(Bytes, Bytes)]) {
    for (name, value) in pairs {
        put_string(out, name);
        put_string(out, value);
    }
}

pub(crate) fn pairs_len(pairs: &[(Bytes, Bytes)]) -> usize {
    pairs
        .iter()
        .map(|(n, v)| string_len(n.len()) + string_len(v.len()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_big_endian_and_slices_strings() {
        let mut r = Reader::new(Bytes::from_static(
            b"\x07\x00\x00\x01\x02\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x02hiX",
        ));
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u32(), Ok(0x102));
        assert_eq!(r.u64(), Ok(9));
        assert_eq!(r.string().unwrap(), Bytes::from_static(b"hi"));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.u32(), Err(DecodeErrorKind::Truncated));
        // A failed read consumes nothing.
        assert_eq!(r.rest(), Bytes::from_static(b"X"));
        assert_eq!(r.u8(), Err(DecodeErrorKind::Truncated));
    }

    #[test]
    fn huge_string_length_is_truncated_not_allocated() {
        let mut r = Reader::new(Bytes::from_static(b"\xff\xff\xff\xffabc"));
        assert_eq!(r.string(), Err(DecodeErrorKind::Truncated));
    }

    #[test]
    fn check_count_bounds_by_remaining_bytes() {
        let r = Reader::new(Bytes::from_static(&[0; 16]));
        assert_eq!(r.check_count(2, 8), Ok(2));
        assert_eq!(r.check_count(3, 8), Err(DecodeErrorKind::Truncated));
        assert_eq!(r.check_count(u32::MAX, 8), Err(DecodeErrorKind::Truncated));
        assert_eq!(r.check_count(0, 8), Ok(0));
    }

    #[test]
    fn framed_patches_length() {
        let mut out = vec![0xaa];
        framed(&mut out, |o| put_string(o, b"xyz"));
        assert_eq!(out, b"\xaa\x00\x00\x00\x07\x00\x00\x00\x03xyz");
    }
}
