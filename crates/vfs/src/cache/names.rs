//! Renames and removes of cached files, and holding uploads off the names
//! they change.

use std::path::Path;
use std::sync::Arc;

use ferry_backend::RelPath;

use super::item::Item;
use super::*;
use crate::Result;

impl FileCache {
    /// The items at and below each of `roots`, with their uploads cancelled
    /// and held off: hold this across a change to the remote at those
    /// paths, so that no upload commits under a name that is changing (an
    /// upload already committing finishes first, and says so in
    /// `on_remote`).
    pub(crate) async fn hold(&self, roots: &[&RelPath]) -> Held {
        let mut list: Vec<Arc<Item>> = Vec::new();
        {
            let items = self.lock_items();
            for root in roots {
                for (p, i) in items
                    .range((*root).clone()..)
                    .take_while(|(p, _)| p.as_bytes().starts_with(root.as_bytes()))
                {
                    if p.starts_with(root) && !list.iter().any(|x| Arc::ptr_eq(x, i)) {
                        list.push(i.clone());
                    }
                }
            }
        }
        // One order for everyone: no two holders wait on each other.
        list.sort_by_key(|i| Arc::as_ptr(i) as usize);
        let mut guards = Vec::with_capacity(list.len());
        for item in list {
            item.lock().generation += 1;
            let g = item.upload.clone().lock_owned().await;
            guards.push(g);
        }
        Held { _guards: guards }
    }

    /// Move the cached items at and below `from` to `to`, cancelling their
    /// uploads (they are rescheduled under the new name). An item already
    /// at `to` is dropped. Call after the remote was renamed, holding
    /// [`FileCache::hold`] of both. `dest_on_remote`: whether the remote
    /// now has a file at `to` (for an item that moves there).
    pub(crate) async fn rename(
        self: &Arc<Self>,
        from: &RelPath,
        to: &RelPath,
        dest_on_remote: Option<bool>,
    ) -> Result<()> {
        let moved: Vec<(RelPath, Arc<Item>)> = {
            let items = self.lock_items();
            items
                .range(from.clone()..)
                .take_while(|(p, _)| p.as_bytes().starts_with(from.as_bytes()))
                .filter(|(p, _)| p.starts_with(from))
                .map(|(p, i)| (p.clone(), i.clone()))
                .collect()
        };
        if let Some(old) = self.get(to) {
            if !moved.iter().any(|(_, i)| Arc::ptr_eq(i, &old)) {
                self.drop_item(to, &old).await;
            }
        }
        for (p, item) in moved {
            let Some(dest) = p.rebase(from, to) else {
                continue;
            };
            {
                let mut items = self.lock_items();
                if items.get(&p).is_some_and(|i| Arc::ptr_eq(i, &item)) {
                    items.remove(&p);
                }
                items.insert(dest.clone(), item.clone());
            }
            let (src_data, dst_data) = (self.data_path(&p), self.data_path(&dest));
            let (src_meta, dst_meta) = (self.meta_path(&p), self.meta_path(&dest));
            for (a, b) in [(&src_data, &dst_data), (&src_meta, &dst_meta)] {
                if let Some(d) = b.parent() {
                    let _ = std::fs::create_dir_all(d);
                }
                if let Err(e) = std::fs::rename(a, b) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!("vfs cache: moving {} to {}: {e}", a.display(), b.display());
                    }
                }
            }
            let dirty = {
                let mut st = item.lock();
                st.path = dest.clone();
                st.source = None;
                if let (true, Some(r)) = (&p == from, dest_on_remote) {
                    st.on_remote = r;
                }
                st.dirty
            };
            item.save(self)?;
            if dirty && item.lock().writers == 0 {
                self.schedule(&item, self.opts.write_back);
            }
        }
        Ok(())
    }

    /// Drop the item at `path` (the file was removed): its upload is
    /// cancelled and its data deleted. Returns whether the remote has a
    /// file there (an older version, if the item was dirty). The caller
    /// holds [`FileCache::hold`] of `path`.
    pub(crate) async fn remove(&self, path: &RelPath) -> Option<bool> {
        let item = self.get(path)?;
        let on_remote = item.lock().on_remote;
        self.drop_item(path, &item).await;
        Some(on_remote)
    }

    /// Drop `item` (at `path`); the caller holds it ([`FileCache::hold`]).
    pub(super) async fn drop_item(&self, path: &RelPath, item: &Arc<Item>) {
        {
            let mut items = self.lock_items();
            if items.get(path).is_some_and(|i| Arc::ptr_eq(i, item)) {
                items.remove(path);
            }
        }
        item.lock().drop_from_cache();
        self.delete_files(path);
    }

    pub(super) fn delete_files(&self, path: &RelPath) {
        for p in [self.data_path(path), self.meta_path(path)] {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("vfs cache: removing {}: {e}", p.display());
                }
            }
            // Empty directories above it go too.
            let (mut dir, root) = match p.starts_with(&self.opts.data_dir) {
                true => (p.parent().map(Path::to_path_buf), &self.opts.data_dir),
                false => (p.parent().map(Path::to_path_buf), &self.opts.meta_dir),
            };
            while let Some(d) = dir {
                if &d == root || !d.starts_with(root) || std::fs::remove_dir(&d).is_err() {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
        }
    }
}
