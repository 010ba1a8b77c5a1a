//! Uploads to stores that can only take a file front to back (object
//! stores), for handles opened without a file cache.
//!
//! Clients keep many WRITEs in flight (rclone 64, OpenSSH 64) and Ferry
//! serves them concurrently, so they reach the upload out of order. Writes
//! ahead of the upload's position wait in a reorder buffer (the client's
//! own `Bytes`, no copy) until the gap before them is filled; the buffer is
//! bounded by [`REORDER_WINDOW`]. A write behind the position (a real seek
//! back, or overlapping data) cannot be honoured by the store: it poisons
//! the upload, so CLOSE fails and nothing is committed, rather than
//! storing a file that differs from what the client wrote.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use ferry_backend::{Metadata, Upload};

use crate::{Result, VfsError};

/// How many bytes may wait ahead of one upload's position.
pub(crate) const REORDER_WINDOW: usize = 64 << 20;
/// How many bytes may wait in all the uploads of one server together, so
/// many handles cannot each pin a full window.
pub(crate) const REORDER_TOTAL: usize = 256 << 20;

/// An upload fed by positional writes.
pub(crate) struct StreamWriter {
    state: tokio::sync::Mutex<State>,
    /// The end of the furthest write accepted (what FSTAT reports).
    size: AtomicU64,
    /// A modification time the client set before CLOSE.
    mtime: std::sync::Mutex<Option<SystemTime>>,
}

struct State {
    upload: Option<Box<dyn Upload>>,
    /// Bytes handed to the upload so far.
    next: u64,
    /// Writes waiting for the gap before them to fill, by offset.
    pending: BTreeMap<u64, Bytes>,
    pending_bytes: usize,
    /// Bytes waiting in every upload of this server (shared).
    budget: Arc<AtomicUsize>,
    /// Why the upload can no longer be committed.
    failed: Option<String>,
}

impl StreamWriter {
    pub(crate) fn new(upload: Box<dyn Upload>, budget: Arc<AtomicUsize>) -> Self {
        StreamWriter {
            state: tokio::sync::Mutex::new(State {
                upload: Some(upload),
                next: 0,
                pending: BTreeMap::new(),
                pending_bytes: 0,
                budget,
                failed: None,
            }),
            size: AtomicU64::new(0),
            mtime: std::sync::Mutex::new(None),
        }
    }

    /// The size written so far, as far as the client can tell.
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// The modification time to commit with.
    pub(crate) fn set_mtime(&self, t: SystemTime) {
        *self.mtime.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    pub(crate) fn mtime(&self) -> Option<SystemTime> {
        *self.mtime.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the file looks like so far (to the session writing it).
    pub(crate) fn metadata(&self) -> Metadata {
        Metadata {
            file_type: ferry_backend::FileType::File,
            size: self.size(),
            mtime: Some(self.mtime().unwrap_or_else(SystemTime::now)),
            atime: None,
            permissions: None,
            owner: None,
            change: None,
        }
    }

    /// Accept `data` at `offset`.
    pub(crate) async fn write(&self, offset: u64, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| VfsError::InvalidArgument("write beyond the largest offset".into()))?;
        let mut st = self.state.lock().await;
        if let Some(why) = &st.failed {
            return Err(VfsError::UploadFailed(why.clone()));
        }
        let next = st.next;
        if offset < next {
            return Err(st.poison_unsupported(format!(
                "this remote takes files front to back: a write at offset {offset} comes after \
                 {next} bytes were sent (use --vfs-cache-mode writes for random writes)"
            )));
        }
        if offset > next {
            if st.pending_bytes + data.len() > REORDER_WINDOW {
                return Err(st.poison(format!(
                    "writes arrive too far out of order (a gap at offset {next} with more than \
                     {} MiB waiting behind it)",
                    REORDER_WINDOW >> 20
                )));
            }
            if !st.reserve(data.len()) {
                return Err(st.poison(format!(
                    "too many out-of-order writes are waiting in this server's uploads \
                     (more than {} MiB in all)",
                    REORDER_TOTAL >> 20
                )));
            }
            if let Some(old) = st.pending.insert(offset, data) {
                st.release(old.len());
            }
            self.size.fetch_max(end, Ordering::AcqRel);
            return Ok(());
        }
        st.send(data).await?;
        // Whatever was waiting for this gap goes next.
        loop {
            let next = st.next;
            let Some(entry) = st.pending.first_entry() else {
                break;
            };
            let at = *entry.key();
            if at > next {
                break;
            }
            let chunk = entry.remove();
            st.release(chunk.len());
            if at < st.next {
                return Err(st.poison(format!(
                    "overlapping writes at offset {at} on a file this remote takes front to back"
                )));
            }
            st.send(chunk).await?;
        }
        self.size.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Only a truncation to the current size (a no-op) can be honoured.
    pub(crate) async fn truncate(&self, size: u64) -> Result<()> {
        let st = self.state.lock().await;
        if st.pending.is_empty() && st.next == size {
            Ok(())
        } else {
            Err(VfsError::Unsupported(
                "changing the size of a file being uploaded to this remote",
            ))
        }
    }

    /// Commit the upload. Any error here means nothing was committed.
    pub(crate) async fn finish(&self) -> Result<Metadata> {
        let mtime = self.mtime();
        let mut st = self.state.lock().await;
        let Some(mut upload) = st.upload.take() else {
            return Err(VfsError::Closed);
        };
        let problem = st.failed.clone().or_else(|| {
            st.pending.keys().next().map(|at| {
                format!(
                    "the upload has a gap: nothing was written between offset {} and {at}",
                    st.next
                )
            })
        });
        if let Some(why) = problem {
            let _ = upload.abort().await;
            return Err(VfsError::UploadFailed(why));
        }
        match upload.finish(mtime).await {
            Ok(m) => Ok(m),
            Err(e) => {
                let _ = upload.abort().await;
                Err(e.into())
            }
        }
    }

    /// Abandon the upload.
    pub(crate) async fn abort(&self) {
        let mut st = self.state.lock().await;
        if let Some(mut upload) = st.upload.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!("could not abort an upload: {e}");
            }
        }
    }
}

impl State {
    async fn send(&mut self, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        let Some(upload) = self.upload.as_mut() else {
            return Err(VfsError::Closed);
        };
        if let Err(e) = upload.write(data).await {
            self.failed = Some(format!("the upload failed: {e}"));
            return Err(e.into());
        }
        self.next += len;
        Ok(())
    }

    fn poison_unsupported(&mut self, why: String) -> VfsError {
        self.poison(why.clone());
        VfsError::UnsupportedHere(why)
    }

    /// Count `n` more waiting bytes, if the server-wide budget allows.
    fn reserve(&mut self, n: usize) -> bool {
        let before = self.budget.fetch_add(n, Ordering::AcqRel);
        if before + n > REORDER_TOTAL {
            self.budget.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        self.pending_bytes += n;
        true
    }

    fn release(&mut self, n: usize) {
        self.pending_bytes -= n;
        self.budget.fetch_sub(n, Ordering::AcqRel);
    }

    fn poison(&mut self, why: String) -> VfsError {
        self.pending.clear();
        let held = self.pending_bytes;
        self.release(held);
        self.failed = Some(why.clone());
        VfsError::UploadFailed(why)
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // Whatever still waits leaves the shared budget with the upload.
        self.budget.fetch_sub(self.pending_bytes, Ordering::AcqRel);
    }
}
