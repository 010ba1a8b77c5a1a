//! Write-back: the upload of a changed file after `--vfs-write-back`, at
//! most `--transfers` at once, retried until it lands (see the module docs
//! of [`super`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ferry_backend::{Metadata, OpenOptions, RelPath, SetAttrs, UploadOptions};

use super::item::Item;
use super::*;
use crate::{Result, VfsError};

impl FileCache {
    /// Upload `item` after `delay` (or sooner, at shutdown).
    pub(crate) fn schedule(self: &Arc<Self>, item: &Arc<Item>, delay: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut st = item.lock();
            st.deadline = Instant::now() + delay;
            if st.waiter {
                return;
            }
            st.waiter = true;
        }
        let cache = self.clone();
        let item = item.clone();
        rt.spawn(async move { cache.write_back(item).await });
    }

    /// The write-back task of one item: waits for its deadline, uploads,
    /// retries failures; ends when the item is clean, gone, or open for
    /// writing again (its close schedules it anew).
    pub(super) async fn write_back(self: Arc<Self>, item: Arc<Item>) {
        let mut flush = self.flush.subscribe();
        loop {
            let wait = {
                let mut st = item.lock();
                if !st.dirty || st.gone || st.writers > 0 {
                    st.waiter = false;
                    if st.opens == 0 {
                        st.close_files();
                    }
                    return;
                }
                st.deadline.saturating_duration_since(Instant::now())
            };
            // At shutdown uploads start at once, but a failing one still
            // waits its retry delay.
            let failing = item.lock().failures > 0;
            if !wait.is_zero() && (!*flush.borrow() || failing) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = flush.changed() => {}
                    _ = item.nudge.notified() => {}
                }
                continue;
            }
            let permit = self.transfers.clone().acquire_owned().await;
            let r = self.upload(&item).await;
            drop(permit);
            match r {
                Ok(Some((path, _))) => tracing::info!("vfs cache: uploaded {path}"),
                // Changed, renamed or removed meanwhile: look again.
                Ok(None) => {}
                Err(e) => {
                    if let Some(s) = &self.opts.stats.0 {
                        s.error(&format!("upload failed: {e}"));
                    }
                    let mut st = item.lock();
                    let delay = st.upload_failed(FIRST_RETRY, self.opts.max_retry_delay);
                    tracing::warn!(
                        "vfs cache: upload of {} failed (attempt {}), retrying in {:?}: {e}",
                        st.path,
                        st.failures,
                        delay
                    );
                }
            }
        }
    }

    /// Upload `item` as it is now. `Ok(None)` when it changed meanwhile
    /// (nothing was committed).
    pub(super) async fn upload(
        self: &Arc<Self>,
        item: &Arc<Item>,
    ) -> Result<Option<(RelPath, Metadata)>> {
        let _guard = item.upload.lock().await;
        let (gen, path, size, mtime, mode) = {
            let st = item.lock();
            if !st.dirty || st.gone || st.writers > 0 {
                return Ok(None);
            }
            (st.generation, st.path.clone(), st.size, st.mtime, st.mode)
        };
        item.ensure(self, 0, size).await?;
        let file = item.file(self)?;
        let current = || item.lock().generation == gen;
        // One transfer in the statistics (a failed attempt is counted as an
        // error by `write_back`; one overtaken by a newer version is not
        // counted).
        let counted = self
            .opts
            .stats
            .0
            .as_ref()
            .map(|s| s.start(&String::from_utf8_lossy(&path.to_absolute()), Some(size)));
        let count = |n: usize| {
            if let Some(t) = &counted {
                t.add(n as u64);
            }
        };
        let caps = self.backend.capabilities();
        let meta = if caps.streaming_upload {
            let mut up = self
                .backend
                .create_upload(
                    &path,
                    UploadOptions {
                        mtime: Some(mtime),
                        if_not_exists: false,
                    },
                )
                .await?;
            let mut off = 0u64;
            while off < size {
                if !current() {
                    let _ = up.abort().await;
                    return Ok(None);
                }
                let n = ((size - off) as usize).min(UPLOAD_PIECE);
                let data = match read_piece(&file, off, n).await {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = up.abort().await;
                        return Err(self.io_error("reading the cached copy of", &path, e));
                    }
                };
                if let Err(e) = up.write(data).await {
                    let _ = up.abort().await;
                    return Err(e.into());
                }
                count(n);
                off += n as u64;
            }
            if !current() {
                let _ = up.abort().await;
                return Ok(None);
            }
            let done = up.finish(Some(mtime)).await?;
            // The store's own view (with its change marker) is what later
            // opens compare against: asked for when the commit did not
            // bring it.
            if done.change.is_some() {
                done
            } else {
                self.backend.stat(&path).await.unwrap_or(done)
            }
        } else if caps.random_access_write {
            let parent = path.parent().unwrap_or_default();
            // In use (hidden from listings) until this upload is done.
            let _live = crate::file::LiveTemp::new(path.file_name().unwrap_or_default());
            let temp = parent
                .join(_live.name())
                .map_err(|_| VfsError::InvalidName)?;
            let r = self
                .upload_via_temp(&file, &path, &temp, size, mtime, mode, &current, &count)
                .await;
            match r {
                Ok(Some(m)) => m,
                other => {
                    if let Err(e) = self.backend.remove_file(&temp).await {
                        if e.kind() != ferry_backend::ErrorKind::NotFound {
                            tracing::warn!("vfs cache: could not remove {temp}: {e}");
                        }
                    }
                    return other.map(|_| None);
                }
            }
        } else {
            return Err(VfsError::Unsupported("writing to this remote"));
        };
        // The listings learn the file first, so no session sees it vanish
        // between "no longer in the cache" and "listed by the remote".
        if let Some(t) = counted {
            t.finish(Ok(()));
        }
        (self.on_upload)(&path, UploadStage::Committing(&meta));
        {
            let mut st = item.lock();
            // Committed at `path` whatever happened meanwhile: a rename or
            // remove waiting for this upload moves or removes it there.
            st.on_remote = true;
            if st.generation != gen || st.gone {
                return Ok(None);
            }
            st.committed(meta::fingerprint(&meta));
        }
        // The upload is done; a record that cannot be written (a full disk)
        // only means the next start uploads it again.
        if let Err(e) = item.save(self) {
            tracing::warn!("vfs cache: {path} uploaded, but its record was not updated: {e}");
        }
        Ok(Some((path, meta)))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upload_via_temp(
        &self,
        file: &Arc<std::fs::File>,
        path: &RelPath,
        temp: &RelPath,
        size: u64,
        mtime: SystemTime,
        mode: Option<u32>,
        current: &(dyn Fn() -> bool + Sync),
        count: &(dyn Fn(usize) + Sync),
    ) -> Result<Option<Metadata>> {
        let h = self
            .backend
            .open_file(
                temp,
                OpenOptions {
                    write: true,
                    create: true,
                    create_new: true,
                    mode: Some(mode.unwrap_or(0o666) & 0o7777),
                    ..Default::default()
                },
            )
            .await?;
        let mut off = 0u64;
        while off < size {
            if !current() {
                return Ok(None);
            }
            let n = ((size - off) as usize).min(UPLOAD_PIECE);
            let data = read_piece(file, off, n)
                .await
                .map_err(|e| self.io_error("reading the cached copy of", path, e))?;
            h.write_at(off, data).await?;
            count(n);
            off += n as u64;
        }
        if self.backend.capabilities().set_mtime {
            h.set_attrs(&SetAttrs {
                times: Some((mtime, mtime)),
                ..Default::default()
            })
            .await?;
        }
        h.sync().await?;
        drop(h);
        if !current() {
            return Ok(None);
        }
        self.backend.rename(temp, path, true).await?;
        Ok(Some(self.backend.stat(path).await?))
    }

    /// The upload queue: every file with changes not yet uploaded.
    pub(crate) fn queue(&self) -> Vec<crate::QueuedUpload> {
        let now = Instant::now();
        self.lock_items()
            .values()
            .filter_map(|i| {
                let st = i.lock();
                st.dirty.then(|| crate::QueuedUpload {
                    id: i.id,
                    name: st.path.clone(),
                    size: st.size,
                    expiry: st.deadline.saturating_duration_since(now),
                    overdue: now.saturating_duration_since(st.deadline),
                    tries: st.failures,
                    uploading: i.upload.try_lock().is_err(),
                })
            })
            .collect()
    }

    /// Move the upload of queued item `id` to `at` from now; false if no
    /// such item is queued.
    pub(crate) fn set_expiry(&self, id: u64, at: Duration) -> bool {
        let item = self.lock_items().values().find(|i| i.id == id).cloned();
        let Some(item) = item else { return false };
        {
            let mut st = item.lock();
            if !st.dirty {
                return false;
            }
            st.deadline = Instant::now() + at;
        }
        item.nudge.notify_one();
        true
    }

    /// What the cache holds: (files, bytes stored on disk, files with
    /// changes, uploads running).
    pub(crate) fn usage(&self) -> (usize, u64, usize, usize) {
        let items = self.lock_items();
        let (mut bytes, mut dirty, mut running) = (0, 0, 0);
        for i in items.values() {
            let st = i.lock();
            bytes += st.ranges.total();
            if st.dirty {
                dirty += 1;
                if i.upload.try_lock().is_err() {
                    running += 1;
                }
            }
        }
        (items.len(), bytes, dirty, running)
    }

    /// Files with changes not yet uploaded.
    pub(crate) fn pending(&self) -> usize {
        self.lock_items()
            .values()
            .filter(|i| i.lock().dirty)
            .count()
    }

    /// Upload everything dirty now, and wait until nothing is pending or
    /// `give_up` resolves. Returns how many files are still pending.
    pub(crate) async fn flush(&self, give_up: impl std::future::Future<Output = ()>) -> usize {
        self.flush.send_replace(true);
        let wait = async {
            loop {
                if self.pending() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = wait => {}
            _ = give_up => {}
        }
        self.pending()
    }
}
