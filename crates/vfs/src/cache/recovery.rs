//! Recovery: taking up, at start, what an earlier run left in the cache
//! (changed files are uploaded; unreadable records keep their data).

use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

use ferry_backend::RelPath;

use super::item::Item;
use super::ranges::RangeSet;
use super::*;

impl FileCache {
    /// Take up the records an earlier run left.
    pub(super) fn load(&self) {
        let mut loaded = 0usize;
        let mut unreadable: Vec<PathBuf> = Vec::new();
        let mut items = self.lock_items();
        for (file, rel) in meta::walk(&self.opts.meta_dir) {
            let bytes = rel.as_os_str().as_bytes().to_vec();
            let path = match RelPath::new(bytes) {
                Ok(p) if !p.is_root() => p,
                _ => {
                    let _ = std::fs::remove_file(&file);
                    continue;
                }
            };
            let rec = match meta::read(&file) {
                Ok(r) => r,
                Err(e) => {
                    // Its data is kept (it may be a change not uploaded) for
                    // someone to look at; the file is not served from it.
                    tracing::error!(
                        "vfs cache: unreadable record {} ({e}); its data stays in {}",
                        file.display(),
                        self.data_path(&path).display()
                    );
                    unreadable.push(self.data_path(&path));
                    continue;
                }
            };
            let data = self.data_path(&path);
            let data_len = std::fs::metadata(&data).ok().map(|m| m.len());
            if data_len.is_none() {
                if rec.dirty && rec.ranges.iter().any(|s| s.size > 0) {
                    tracing::error!(
                        "vfs cache: the cached data of {path} is missing; its changes are lost"
                    );
                }
                let _ = std::fs::remove_file(&file);
                continue;
            }
            let mut st = Item::fresh_state(path.clone(), None);
            st.size = rec.size;
            let data_len = data_len.unwrap_or(0);
            if rec.dirty && data_len > rec.size {
                // Written after the record (the server stopped before the
                // file was closed): everything past the recorded size is
                // the client's data, or zeros.
                st.size = data_len;
            }
            st.base = rec.base.min(rec.size);
            st.ranges = RangeSet::from_spans(rec.ranges.iter().map(|s| (s.pos, s.pos + s.size)));
            st.ranges.truncate(rec.size);
            if st.size > rec.size {
                st.ranges.insert(rec.size, st.size);
            }
            st.mtime = meta::from_nanos(rec.mtime);
            st.atime = meta::from_nanos(rec.atime);
            st.dirty = rec.dirty;
            st.fingerprint = rec.fingerprint;
            st.on_remote = rec.on_remote;
            st.mode = rec.mode;
            items.insert(path, Item::new(st));
            loaded += 1;
        }
        drop(items);
        // Data files without a record are leftovers.
        let mut known: std::collections::HashSet<PathBuf> = self
            .lock_items()
            .keys()
            .map(|p| self.data_path(p))
            .collect();
        known.extend(unreadable);
        for (file, _) in meta::walk(&self.opts.data_dir) {
            if !known.contains(&file) {
                let _ = std::fs::remove_file(&file);
            }
        }
        if loaded > 0 {
            tracing::debug!(
                "vfs cache: {loaded} file(s) found in {}",
                self.opts.data_dir.display()
            );
        }
    }
}
