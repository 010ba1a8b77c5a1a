//! Content hashes: computed by streaming a file, or taken from the backend
//! when it stores them, and cached per file fingerprint.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use ferry_backend::{HashKind, RelPath};
use md5::Digest as _;

/// An incremental hasher for one [`HashKind`].
pub enum Hasher {
    /// MD5.
    Md5(md5::Md5),
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-512.
    Sha512(sha2::Sha512),
    /// CRC-32 (IEEE).
    Crc32(crc32fast::Hasher),
    /// BLAKE3-256.
    Blake3(Box<blake3::Hasher>),
    /// XXH3 64-bit.
    Xxh3(Box<xxhash_rust::xxh3::Xxh3>),
    /// XXH3 128-bit.
    Xxh128(Box<xxhash_rust::xxh3::Xxh3>),
    /// Whirlpool.
    Whirlpool(Box<whirlpool::Whirlpool>),
}

impl Hasher {
    /// A fresh hasher, `None` for a kind this build cannot compute.
    pub fn new(kind: HashKind) -> Option<Hasher> {
        Some(match kind {
            HashKind::Md5 => Hasher::Md5(md5::Md5::new()),
            HashKind::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashKind::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashKind::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            HashKind::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
            HashKind::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            HashKind::Xxh3 => Hasher::Xxh3(Box::new(xxhash_rust::xxh3::Xxh3::new())),
            HashKind::Xxh128 => Hasher::Xxh128(Box::new(xxhash_rust::xxh3::Xxh3::new())),
            HashKind::Whirlpool => Hasher::Whirlpool(Box::new(whirlpool::Whirlpool::new())),
        })
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Crc32(h) => h.update(data),
            Hasher::Blake3(h) => {
                h.update(data);
            }
            Hasher::Xxh3(h) | Hasher::Xxh128(h) => h.update(data),
            Hasher::Whirlpool(h) => h.update(data),
        }
    }

    /// The digest as lower-case hex, in the form the usual command-line
    /// tools print (`md5sum`, `b3sum`, `xxhsum -H2`, ...).
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Md5(h) => hex(&h.finalize()),
            Hasher::Sha1(h) => hex(&h.finalize()),
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
            Hasher::Crc32(h) => format!("{:08x}", h.finalize()),
            Hasher::Blake3(h) => h.finalize().to_hex().to_string(),
            Hasher::Xxh3(h) => format!("{:016x}", h.digest()),
            Hasher::Xxh128(h) => format!("{:032x}", h.digest128()),
            Hasher::Whirlpool(h) => hex(&h.finalize()),
        }
    }
}

/// The hash of `data` in one go, `None` for a kind this build cannot
/// compute.
pub fn hash_bytes(kind: HashKind, data: &[u8]) -> Option<String> {
    let mut h = Hasher::new(kind)?;
    h.update(data);
    Some(h.finish_hex())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// What a cached hash was computed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub(crate) size: u64,
    pub(crate) mtime: Option<SystemTime>,
    pub(crate) change: Option<u64>,
}

/// Hashes already computed, by path and kind, valid while the file's
/// fingerprint (size and modification time) is unchanged.
pub(crate) struct HashCache {
    map: Mutex<HashMap<(RelPath, HashKind), (Fingerprint, String)>>,
    max: usize,
}

impl HashCache {
    pub(crate) fn new(max: usize) -> Self {
        HashCache {
            map: Mutex::new(HashMap::new()),
            max,
        }
    }

    pub(crate) fn get(&self, path: &RelPath, kind: HashKind, fp: &Fingerprint) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&(path.clone(), kind)) {
            Some((f, h)) if f == fp => Some(h.clone()),
            _ => None,
        }
    }

    pub(crate) fn put(&self, path: &RelPath, kind: HashKind, fp: Fingerprint, hash: String) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            // A simple bound: start over rather than track recency.
            map.clear();
        }
        map.insert((path.clone(), kind), (fp, hash));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            hash_bytes(HashKind::Md5, b"").unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            hash_bytes(HashKind::Md5, b"abc\n").unwrap(),
            "0bee89b07a248e27c83fc3d5951213c1"
        );
        assert_eq!(
            hash_bytes(HashKind::Sha1, b"abc\n").unwrap(),
            "03cfd743661f07975fa2f1220c5194cbaff48451"
        );
        assert_eq!(
            hash_bytes(HashKind::Sha256, b"").unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hash_bytes(HashKind::Crc32, b"123456789").unwrap(),
            "cbf43926"
        );
        assert_eq!(
            hash_bytes(HashKind::Blake3, b"").unwrap(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(hash_bytes(HashKind::Xxh3, b"").unwrap(), "2d06800538d394c2");
        assert_eq!(
            hash_bytes(HashKind::Xxh128, b"").unwrap(),
            "99aa06d3014798d86001c324468d497f"
        );
        assert_eq!(hash_bytes(HashKind::Sha512, b"").unwrap().len(), 128);
        assert_eq!(hash_bytes(HashKind::Whirlpool, b"").unwrap().len(), 128);
    }

    #[test]
    fn cache_checks_fingerprint() {
        let c = HashCache::new(2);
        let p = RelPath::new(b"f".to_vec()).unwrap();
        let fp = Fingerprint {
            size: 1,
            mtime: Some(SystemTime::UNIX_EPOCH),
            change: Some(7),
        };
        c.put(&p, HashKind::Md5, fp.clone(), "h".into());
        assert_eq!(c.get(&p, HashKind::Md5, &fp), Some("h".into()));
        assert_eq!(c.get(&p, HashKind::Sha1, &fp), None);
        let changed = Fingerprint {
            size: 2,
            ..fp.clone()
        };
        assert_eq!(c.get(&p, HashKind::Md5, &changed), None);
        let touched = Fingerprint {
            change: Some(8),
            ..fp
        };
        assert_eq!(c.get(&p, HashKind::Md5, &touched), None);
    }
}
