//! Leftovers of uploads interrupted by a crash (`kill -9`, a power cut):
//! temporary files no process is writing any more.
//!
//! They are listed like any file (only the temporary names this process
//! is writing are hidden, see [`crate::file::LiveTemp`]), so a client can
//! see and remove them, and once per remote and process, at start, a
//! background walk removes those older than [`LEFTOVER_AGE`]. Such names
//! are made by Ferry (this one, or one whose SFTP remote this server is:
//! its uploads in progress are files here, kept touched while they run).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use ferry_backend::RelPath;

use crate::file::{is_live_temp, is_temp_name};
use crate::Inner;

/// Leftovers untouched for this long are removed at start (an upload that
/// another process on the same directory still writes touches its file).
pub const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// Directories the walk at start visits at most (it stops, and says so).
const MAX_DIRS: usize = 10_000;

/// Start the walk for this VFS's remote, unless one ran in this process.
pub(crate) fn start(inner: &Arc<Inner>) {
    let caps = inner.backend.capabilities();
    if inner.opts.read_only || !caps.random_access_write {
        return;
    }
    static SWEPT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let first = SWEPT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_default()
        .insert(inner.backend.describe());
    if !first {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(sweep(Arc::downgrade(inner), LEFTOVER_AGE));
}

/// Remove the leftovers below the root older than `age`; returns how many.
pub(crate) async fn sweep(inner: Weak<Inner>, age: Duration) -> usize {
    let mut todo = vec![RelPath::root()];
    let (mut dirs, mut removed) = (0usize, 0usize);
    let before = SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    while let Some(dir) = todo.pop() {
        // Not kept going for a VFS nobody serves any more.
        let Some(inner) = inner.upgrade() else {
            return removed;
        };
        dirs += 1;
        if dirs > MAX_DIRS {
            tracing::info!(
                "{}: looked for leftovers of interrupted uploads in {MAX_DIRS} directories; \
                 stopped there (the rest are listed and can be removed by clients)",
                inner.backend.describe()
            );
            break;
        }
        let Ok(entries) = inner.backend.list(&dir).await else {
            continue;
        };
        let mut here = 0;
        for e in entries {
            let Ok(path) = dir.join(&e.name) else {
                continue;
            };
            if e.meta.is_dir() {
                todo.push(path);
                continue;
            }
            let old = e.meta.mtime.is_some_and(|m| m < before);
            if is_temp_name(&e.name) && !is_live_temp(&e.name) && old {
                match inner.backend.remove_file(&path).await {
                    Ok(()) => here += 1,
                    Err(err) => tracing::debug!("{path}: leftover not removed: {err}"),
                }
            }
        }
        if here > 0 {
            inner.dircache.forget(&dir);
            removed += here;
        }
        tokio::task::yield_now().await;
    }
    if removed > 0 {
        if let Some(inner) = inner.upgrade() {
            tracing::info!(
                "{}: removed {removed} leftover(s) of uploads interrupted more than {}s ago",
                inner.backend.describe(),
                age.as_secs()
            );
        }
    }
    removed
}
