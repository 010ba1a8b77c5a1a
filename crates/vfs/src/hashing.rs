//! The exec hashes (`md5sum` and friends) of a path as a session sees it.

use ferry_backend::{OpenOptions, RelPath};

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use crate::hash;
use crate::lookup::{Found, Freshness};
use crate::{Result, Vfs, VfsError};

/// Chunks being hashed at once, by every session of the process: one per
/// core. Hashing is pure CPU; many clients asking for the hashes of large
/// files share the cores in turn (the permit is taken per chunk, so a long
/// file does not keep others waiting for its whole length) instead of
/// filling the blocking pool.
pub(crate) fn hashing_slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            Arc::new(Semaphore::new(cores))
        })
        .clone()
}

impl Vfs {
    /// The `kind` hash of file `path` as lower-case hex: the backend's
    /// stored hash when it keeps one, else computed by streaming the file
    /// (never holding it whole) and cached while the file's size,
    /// modification time and change marker stay the same. This session's upload in progress
    /// is hashed as it stands.
    pub async fn hash(&self, path: &RelPath, kind: ferry_backend::HashKind) -> Result<String> {
        if self.inner.opts.no_checksum {
            return Err(VfsError::Unsupported("hashes (--no-checksum)"));
        }
        let backend = &self.inner.backend;
        let found = self
            .inner
            .lookup(self.viewer, path, true, Freshness::Store)
            .await?
            .ok_or(VfsError::NotFound)?;
        let (target, meta) = match found {
            Found::Cached(_) => {
                if let Some(c) = &self.inner.cache {
                    if let Some(item) = c.get(path).filter(|i| i.is_visible()) {
                        return c.hash_item(&item, kind).await;
                    }
                }
                // Uploaded meanwhile: the store has it now.
                (path.clone(), backend.stat(path).await?)
            }
            Found::Upload { temp, meta } => (temp, meta),
            // Nothing of a streamed upload is stored yet: the file as the
            // store has it.
            Found::Stream(_) => (path.clone(), backend.stat(path).await?),
            Found::Store(meta) => (path.clone(), meta),
            Found::Virtual(_) => return Err(VfsError::IsADirectory),
        };
        if meta.is_dir() {
            return Err(VfsError::IsADirectory);
        }
        if backend.capabilities().native_hashes.contains(&kind) {
            if let Some(h) = backend.stored_hash(&target, kind).await? {
                return Ok(h.to_ascii_lowercase());
            }
        }
        let fp = hash::Fingerprint {
            size: meta.size,
            mtime: meta.mtime,
            change: meta.change,
        };
        if let Some(h) = self.inner.hashes.get(&target, kind, &fp) {
            tracing::debug!("{path}: {} hash from the hash cache", kind.name());
            return Ok(h);
        }
        tracing::debug!("{path}: computing the {} hash by reading", kind.name());
        const CHUNK: usize = 1 << 20;
        // Chunks this small (a small file, or a file's tail) are hashed on
        // the calling thread.
        const SMALL: usize = 64 << 10;
        let file = backend
            .open_file(
                &target,
                OpenOptions {
                    read: true,
                    ..Default::default()
                },
            )
            .await?;
        let hasher = hash::Hasher::new(kind).ok_or(VfsError::Unsupported("this hash type"))?;
        // Two buffers: the next chunk is read while the last one is hashed
        // on the blocking pool (hashing is CPU work; keep it off the async
        // workers), so the time is that of the slower of the two.
        let mut hasher = Some(hasher);
        let mut hashing: Option<tokio::task::JoinHandle<(hash::Hasher, Vec<u8>)>> = None;
        let mut free = Vec::with_capacity(CHUNK);
        let mut offset = 0u64;
        loop {
            free.clear();
            let buf = file.read_at(offset, CHUNK, free).await?;
            free = match hashing.take() {
                Some(task) => {
                    let (h, b) = task
                        .await
                        .map_err(|e| VfsError::Internal(format!("hashing failed: {e}")))?;
                    hasher = Some(h);
                    b
                }
                // (`read_at` sizes it when it is first used.)
                None => Vec::new(),
            };
            if buf.is_empty() {
                break;
            }
            offset += buf.len() as u64;
            let mut h = hasher.take().expect("the hasher is back");
            if buf.len() <= SMALL {
                // Microseconds of work: cheaper here than a hand-off.
                h.update(&buf);
                hasher = Some(h);
                free = buf;
                continue;
            }
            let slot = hashing_slots()
                .acquire_owned()
                .await
                .map_err(|_| VfsError::Internal("hashing slots closed".into()))?;
            hashing = Some(tokio::task::spawn_blocking(move || {
                h.update(&buf);
                drop(slot);
                (h, buf)
            }));
        }
        let hex = hasher.take().expect("the hasher is back").finish_hex();
        // Cache only if the file did not change while it was read.
        if let Ok(after) = backend.stat(&target).await {
            let unchanged = hash::Fingerprint {
                size: after.size,
                mtime: after.mtime,
                change: after.change,
            } == fp;
            if unchanged && offset == fp.size {
                self.inner.hashes.put(&target, kind, fp, hex.clone());
            }
        }
        Ok(hex)
    }
}
