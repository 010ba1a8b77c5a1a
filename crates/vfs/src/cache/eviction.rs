//! Eviction: the cleaner that drops unused clean files by age, size and
//! free space (see the module docs of [`super`]).

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use ferry_backend::RelPath;

use super::item::Item;
use super::*;

impl FileCache {
    /// The cleaner task: runs every poll interval, or when kicked.
    pub(super) async fn cleaner(cache: Weak<FileCache>) {
        loop {
            let interval = match cache.upgrade() {
                Some(c) => c.opts.poll_interval,
                None => return,
            };
            {
                let Some(c) = cache.upgrade() else { return };
                let kick = c.kick.clone();
                drop(c);
                let kicked = kick.notified();
                tokio::pin!(kicked);
                if interval.is_zero() {
                    kicked.await;
                } else {
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = &mut kicked => {}
                    }
                }
            }
            let Some(c) = cache.upgrade() else { return };
            let c2 = c.clone();
            let _ = tokio::task::spawn_blocking(move || c2.clean()).await;
        }
    }

    /// Drop what the limits say should go. Returns how many items went.
    pub(crate) fn clean(&self) -> usize {
        let now = SystemTime::now();
        let mut candidates: Vec<(SystemTime, u64, RelPath, Arc<Item>)> = Vec::new();
        let mut total = 0u64;
        for (p, item) in self.lock_items().iter() {
            let st = item.lock();
            let stored = st.ranges.total();
            total += stored;
            if st.opens == 0 && !st.dirty && !st.waiter {
                candidates.push((st.atime, stored, p.clone(), item.clone()));
            }
        }
        candidates.sort_by_key(|c| c.0);
        // After a full disk, free what can be freed until there is room
        // again (at least the free-space limit, and a few MiB).
        let full = self
            .disk_full
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        let want_free = if full {
            Some(self.opts.min_free_space.unwrap_or(0).max(EMERGENCY_FREE))
        } else {
            self.opts.min_free_space
        };
        let mut evicted = 0;
        for (atime, stored, path, item) in candidates {
            let old = now.duration_since(atime).unwrap_or_default() > self.opts.max_age;
            let over = self.opts.max_size.is_some_and(|m| total > m)
                || want_free
                    .is_some_and(|m| free_space(&self.opts.data_dir).is_some_and(|f| f < m));
            if !(old || over) {
                // Sorted oldest first: nothing after this is older.
                if self.opts.max_size.is_none() && want_free.is_none() {
                    break;
                }
                continue;
            }
            if self.evict(&path, &item) {
                total = total.saturating_sub(stored);
                evicted += 1;
            }
        }
        if evicted > 0 {
            tracing::debug!("vfs cache: evicted {evicted} file(s), {total} bytes kept");
        }
        evicted
    }

    /// Drop a clean, unused item.
    pub(super) fn evict(&self, path: &RelPath, item: &Arc<Item>) -> bool {
        {
            let mut items = self.lock_items();
            let mut st = item.lock();
            if st.opens > 0 || st.dirty || st.waiter || st.gone {
                return false;
            }
            if !items.get(path).is_some_and(|i| Arc::ptr_eq(i, item)) {
                return false;
            }
            items.remove(path);
            st.drop_from_cache();
        }
        self.delete_files(path);
        true
    }
}
