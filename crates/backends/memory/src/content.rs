//! The bytes of one file: sparse fixed-size chunks, with the store's byte
//! count kept in step.
//!
//! A file is a map from chunk index to the chunk's bytes. A chunk holds only
//! what was written into it (it may be shorter than [`CHUNK`]); every byte
//! below the file's size that no chunk covers reads as zero. So extending a
//! file, or writing far past its end, costs no memory for the gap: one
//! `SETSTAT size=1T` from a client cannot exhaust the server's memory.
//!
//! Invariant: no chunk holds bytes at or past the file's size (shrinking
//! drops them), so a later extension reads zeros, never stale data.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes per chunk.
const CHUNK: u64 = 64 * 1024;

/// The largest file size (as `off_t` allows); larger is [`TooLarge`].
pub(crate) const MAX_SIZE: u64 = i64::MAX as u64;

/// A size or offset past [`MAX_SIZE`] (`EFBIG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file too large (the limit is {MAX_SIZE} bytes)")
    }
}

impl std::error::Error for TooLarge {}

/// The bytes of one file.
pub(crate) struct Content {
    chunks: BTreeMap<u64, Vec<u8>>,
    size: u64,
    /// The store's total of file sizes: every change of `size` is added
    /// here, and a dropped `Content` takes its size back out.
    used: Arc<AtomicU64>,
}

impl Content {
    /// An empty file counted in `used`.
    pub(crate) fn new(used: Arc<AtomicU64>) -> Self {
        Content {
            chunks: BTreeMap::new(),
            size: 0,
            used,
        }
    }

    /// The size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.size
    }

    /// Append up to `len` bytes at `offset` to `buf`: fewer only at the end
    /// of the file, none at or past it.
    pub(crate) fn read_into(&self, offset: u64, len: usize, buf: &mut Vec<u8>) {
        if offset >= self.size {
            return;
        }
        let end = self.size.min(offset.saturating_add(len as u64));
        buf.reserve((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let within = (pos % CHUNK) as usize;
            let n = (CHUNK - within as u64).min(end - pos) as usize;
            let have = match self.chunks.get(&(pos / CHUNK)) {
                Some(c) if c.len() > within => {
                    let have = (c.len() - within).min(n);
                    buf.extend_from_slice(&c[within..within + have]);
                    have
                }
                _ => 0,
            };
            buf.resize(buf.len() + (n - have), 0);
            pos += n as u64;
        }
    }

    /// Write all of `data` at `offset`, extending the file if needed.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), TooLarge> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_SIZE)
            .ok_or(TooLarge)?;
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let within = (pos % CHUNK) as usize;
            let n = (CHUNK as usize - within).min(rest.len());
            let chunk = self.chunks.entry(pos / CHUNK).or_default();
            let need = within + n;
            if chunk.len() < need {
                // Grow by doubling, but never past one chunk: a chunk's
                // spare capacity is wasted memory.
                let want = need.max(chunk.capacity() * 2).min(CHUNK as usize);
                chunk.reserve_exact(want - chunk.len());
                chunk.resize(need, 0);
            }
            chunk[within..need].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            pos += n as u64;
        }
        if end > self.size {
            self.set_size(end);
        }
        Ok(())
    }

    /// Truncate to `new` bytes, or extend with zeros.
    pub(crate) fn set_len(&mut self, new: u64) -> Result<(), TooLarge> {
        if new > MAX_SIZE {
            return Err(TooLarge);
        }
        if new < self.size {
            drop(self.chunks.split_off(&new.div_ceil(CHUNK)));
            if let Some(mut last) = self.chunks.last_entry() {
                let limit = new - *last.key() * CHUNK;
                if last.get().len() as u64 > limit {
                    let chunk = last.get_mut();
                    chunk.truncate(limit as usize);
                    chunk.shrink_to_fit();
                }
            }
        }
        self.set_size(new);
        Ok(())
    }

    fn set_size(&mut self, new: u64) {
        if new > self.size {
            self.used.fetch_add(new - self.size, Ordering::Relaxed);
        } else {
            self.used.fetch_sub(self.size - new, Ordering::Relaxed);
        }
        self.size = new;
    }
}

impl Clone for Content {
    /// An independent copy, counted in the same store.
    fn clone(&self) -> Self {
        self.used.fetch_add(self.size, Ordering::Relaxed);
        Content {
            chunks: self.chunks.clone(),
            size: self.size,
            used: self.used.clone(),
        }
    }
}

impl Drop for Content {
    fn drop(&mut self) {
        self.used.fetch_sub(self.size, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(c: &Content) -> Vec<u8> {
        let mut buf = Vec::new();
        c.read_into(0, usize::MAX, &mut buf);
        buf
    }

    #[test]
    fn writes_across_chunk_boundaries_read_back() {
        let used = Arc::new(AtomicU64::new(0));
        let mut c = Content::new(used.clone());
        let data: Vec<u8> = (0..3 * CHUNK as usize + 17).map(|i| i as u8).collect();
        // Two overlapping writes that straddle boundaries.
        c.write(5, &data[5..]).unwrap();
        c.write(0, &data[..CHUNK as usize + 3]).unwrap();
        assert_eq!(read_all(&c), data);
        assert_eq!(used.load(Ordering::Relaxed), data.len() as u64);
        let mut buf = b"H".to_vec();
        c.read_into(CHUNK - 2, 4, &mut buf);
        assert_eq!(&buf[1..], &data[CHUNK as usize - 2..CHUNK as usize + 2]);
    }

    #[test]
    fn shrinking_then_growing_reads_zeros_not_stale_bytes() {
        let used = Arc::new(AtomicU64::new(0));
        let mut c = Content::new(used.clone());
        let n = 2 * CHUNK as usize + 100;
        c.write(0, &vec![0xAA; n]).unwrap();
        for cut in [CHUNK + 10, CHUNK, 10, 0] {
            c.set_len(cut).unwrap();
            c.set_len(n as u64).unwrap();
            let all = read_all(&c);
            assert_eq!(all.len(), n);
            assert!(all[..cut as usize].iter().all(|&b| b == 0xAA), "{cut}");
            assert!(all[cut as usize..].iter().all(|&b| b == 0), "{cut}");
        }
        assert_eq!(used.load(Ordering::Relaxed), n as u64);
    }

    #[test]
    fn holes_cost_nothing_and_read_as_zeros() {
        let used = Arc::new(AtomicU64::new(0));
        let mut c = Content::new(used.clone());
        c.set_len(1 << 40).unwrap();
        c.write((1 << 40) - 3, b"end").unwrap();
        assert_eq!(c.chunks.len(), 1);
        let mut buf = Vec::new();
        c.read_into((1 << 40) - 6, 100, &mut buf);
        assert_eq!(buf, b"\0\0\0end");
        assert_eq!(c.write(MAX_SIZE, b"x"), Err(TooLarge));
        assert_eq!(c.write(u64::MAX, b"x"), Err(TooLarge));
        assert_eq!(c.set_len(MAX_SIZE + 1), Err(TooLarge));
        assert_eq!(used.load(Ordering::Relaxed), 1 << 40);
        let copy = c.clone();
        assert_eq!(used.load(Ordering::Relaxed), 2 << 40);
        drop(c);
        drop(copy);
        assert_eq!(used.load(Ordering::Relaxed), 0);
    }
}
