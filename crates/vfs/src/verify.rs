//! Verifying whole-file reads against the hash the store keeps.
//!
//! When a read-only handle's backend knows the file's hash at open (an S3
//! object's MD5) and the client reads the whole file, the bytes it was sent
//! are hashed as they go and compared at CLOSE: a mismatch fails the CLOSE
//! ("corrupted on transfer"), as rclone does. Reads arrive out of order
//! (clients keep many in flight), so pieces ahead of the hashed prefix wait
//! in a small reorder buffer; a client that skips around, re-reads or
//! stops early simply gets no verdict. `--no-checksum` turns this off.

use std::collections::BTreeMap;

use bytes::Bytes;
use ferry_backend::HashKind;

use crate::hash::Hasher;

/// Out-of-order bytes kept waiting for the bytes before them; beyond this
/// the read is not verified.
const MAX_PENDING: usize = 16 << 20;

pub(crate) struct Verifier {
    kind: HashKind,
    want: String,
    size: u64,
    hasher: Option<Hasher>,
    /// Bytes hashed so far: `[0, next)`.
    next: u64,
    pending: BTreeMap<u64, Bytes>,
    pending_bytes: usize,
}

/// What a finished read says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The whole file was read and matched.
    Match,
    /// The whole file was read and did not match: (expected, got).
    Mismatch(String, String),
    /// Not read whole (or in an order too scattered to follow).
    Unknown,
}

impl Verifier {
    pub(crate) fn new(kind: HashKind, want: String, size: u64) -> Option<Verifier> {
        Some(Verifier {
            hasher: Some(Hasher::new(kind)?),
            kind,
            want: want.to_ascii_lowercase(),
            size,
            next: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
        })
    }

    /// The client was sent `data` from `offset`.
    pub(crate) fn feed(&mut self, offset: u64, data: &[u8]) {
        let Some(h) = self.hasher.as_mut() else {
            return;
        };
        let end = offset + data.len() as u64;
        if end <= self.next || data.is_empty() {
            return;
        }
        if offset <= self.next {
            h.update(&data[(self.next - offset) as usize..]);
            self.next = end;
            self.drain();
            return;
        }
        if self.pending_bytes + data.len() > MAX_PENDING {
            self.hasher = None;
            self.pending.clear();
            return;
        }
        self.pending_bytes += data.len();
        if let Some(old) = self.pending.insert(offset, Bytes::copy_from_slice(data)) {
            self.pending_bytes -= old.len();
        }
    }

    fn drain(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let (off, data) = entry.remove_entry();
            self.pending_bytes -= data.len();
            let end = off + data.len() as u64;
            if end > self.next {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&data[(self.next - off) as usize..]);
                }
                self.next = end;
            }
        }
    }

    /// The verdict, at close.
    pub(crate) fn finish(self) -> Verdict {
        match self.hasher {
            Some(h) if self.next == self.size => {
                let got = h.finish_hex();
                if got == self.want {
                    Verdict::Match
                } else {
                    Verdict::Mismatch(self.want, got)
                }
            }
            _ => Verdict::Unknown,
        }
    }

    pub(crate) fn kind(&self) -> HashKind {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_MD5: &str = "900150983cd24fb0d6963f7d28e17f72";

    #[test]
    fn in_order_and_out_of_order_reads_verify() {
        let mut v = Verifier::new(HashKind::Md5, ABC_MD5.into(), 3).unwrap();
        v.feed(0, b"abc");
        assert_eq!(v.finish(), Verdict::Match);
        let mut v = Verifier::new(HashKind::Md5, ABC_MD5.to_uppercase(), 3).unwrap();
        v.feed(2, b"c");
        v.feed(1, b"b");
        v.feed(1, b"bc"); // a re-read
        v.feed(0, b"a");
        assert_eq!(v.finish(), Verdict::Match);
    }

    #[test]
    fn a_mismatch_is_reported_and_partial_reads_are_not_judged() {
        let mut v = Verifier::new(HashKind::Md5, ABC_MD5.into(), 3).unwrap();
        v.feed(0, b"abd");
        assert!(matches!(v.finish(), Verdict::Mismatch(_, _)));
        let mut v = Verifier::new(HashKind::Md5, ABC_MD5.into(), 3).unwrap();
        v.feed(0, b"ab");
        assert_eq!(v.finish(), Verdict::Unknown);
        let mut v = Verifier::new(HashKind::Md5, ABC_MD5.into(), 3).unwrap();
        v.feed(1, b"bc");
        assert_eq!(v.finish(), Verdict::Unknown);
    }

    #[test]
    fn too_much_out_of_order_data_gives_up() {
        let size = (MAX_PENDING as u64) * 2;
        let mut v = Verifier::new(HashKind::Md5, ABC_MD5.into(), size).unwrap();
        let piece = vec![0u8; 1 << 20];
        for i in 1..=(MAX_PENDING >> 20) as u64 + 1 {
            v.feed(i << 20, &piece);
        }
        v.feed(0, &piece);
        assert_eq!(v.finish(), Verdict::Unknown);
    }
}
