//! The registry of atomic uploads in progress.
//!
//! An upload is known by an id; its target path can change while it runs
//! (the client renames the file, or a directory above it, before closing
//! it) and it can be unlinked (then it is discarded at close), as an open
//! file can on a POSIX file system.
//!
//! Each upload belongs to the session (the *viewer*) that opened it. That
//! session sees the upload in progress as the file (STAT, READDIR, OPEN,
//! RENAME and REMOVE follow it, as sshfs expects of a file it has just
//! created); every other session sees the old file until the commit.
//!
//! Streamed uploads (object stores, `--vfs-cache-mode off`) have no
//! temporary file: they are kept here with their writer, so that their
//! session sees them too, at the size written so far.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_backend::RelPath;

use crate::stream::StreamWriter;

/// One upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upload {
    /// The session that opened it.
    pub(crate) owner: u64,
    /// Where it will be committed; `None` once unlinked.
    pub(crate) target: Option<RelPath>,
    /// Its temporary file.
    pub(crate) temp: RelPath,
}

/// An upload with the claim on its temporary name.
struct Entry {
    upload: Upload,
    live: Option<crate::file::LiveTemp>,
}

/// Uploads in progress. One lock, held only for map operations.
#[derive(Default)]
pub(crate) struct Uploads {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    map: HashMap<u64, Entry>,
    /// Streamed uploads: id -> (owner, target, writer).
    streams: HashMap<u64, (u64, RelPath, Arc<StreamWriter>)>,
}

impl Uploads {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add an upload; returns its id.
    pub(crate) fn register(
        &self,
        owner: u64,
        target: RelPath,
        temp: RelPath,
        live: impl Into<Option<crate::file::LiveTemp>>,
    ) -> u64 {
        let mut st = self.lock();
        st.next += 1;
        let id = st.next;
        st.map.insert(
            id,
            Entry {
                upload: Upload {
                    owner,
                    target: Some(target),
                    temp,
                },
                live: live.into(),
            },
        );
        id
    }

    /// Remove an upload (at commit or abort), with the claim on its
    /// temporary name: held until the file is renamed or removed, so no
    /// listing meanwhile takes it for a leftover.
    pub(crate) fn take(&self, id: u64) -> Option<(Upload, Option<crate::file::LiveTemp>)> {
        self.lock().map.remove(&id).map(|e| (e.upload, e.live))
    }

    /// The temporary file of upload `id`.
    pub(crate) fn temp_of(&self, id: u64) -> Option<RelPath> {
        self.lock().map.get(&id).map(|e| e.upload.temp.clone())
    }

    /// The temporary file of `owner`'s newest upload to `path`.
    pub(crate) fn temp_for(&self, owner: u64, path: &RelPath) -> Option<RelPath> {
        let st = self.lock();
        st.map
            .iter()
            .map(|(id, e)| (id, &e.upload))
            .filter(|(_, u)| u.owner == owner && u.target.as_ref() == Some(path))
            .max_by_key(|(id, _)| **id)
            .map(|(_, u)| u.temp.clone())
    }

    /// Follow a rename of `from` to `to`: uploads to `from` or below it now
    /// go to the new place, and temporary files inside a renamed directory
    /// moved with it. Returns whether any upload targeted `from` itself.
    pub(crate) fn rename(&self, owner: u64, from: &RelPath, to: &RelPath) -> bool {
        let mut st = self.lock();
        let mut hit = false;
        for u in st.map.values_mut().map(|e| &mut e.upload) {
            // Temporary files move with a renamed directory, whoever owns
            // them; targets follow only the renaming session's view.
            if u.temp != *from {
                if let Some(n) = u.temp.rebase(from, to) {
                    u.temp = n;
                }
            }
            if u.owner != owner {
                continue;
            }
            if let Some(t) = &u.target {
                if t == from {
                    hit = true;
                }
                if let Some(n) = t.rebase(from, to) {
                    u.target = Some(n);
                }
            }
        }
        hit
    }

    /// Follow an unlink of `path`: uploads to it will be discarded.
    /// Returns whether there were any.
    pub(crate) fn unlink(&self, owner: u64, path: &RelPath) -> bool {
        let mut st = self.lock();
        let mut hit = false;
        for u in st.map.values_mut().map(|e| &mut e.upload) {
            if u.owner == owner && u.target.as_ref() == Some(path) {
                u.target = None;
                hit = true;
            }
        }
        hit
    }

    /// Uploads into directory `dir`: temporary name -> target name.
    pub(crate) fn in_dir(&self, owner: u64, dir: &RelPath) -> HashMap<Vec<u8>, Vec<u8>> {
        self.lock()
            .map
            .values()
            .map(|e| &e.upload)
            .filter(|u| u.owner == owner)
            .filter_map(|u| {
                let t = u.target.as_ref()?;
                if t.parent().as_ref() != Some(dir) || u.temp.parent().as_ref() != Some(dir) {
                    return None;
                }
                Some((u.temp.file_name()?.to_vec(), t.file_name()?.to_vec()))
            })
            .collect()
    }

    /// Add a streamed upload; returns its id.
    pub(crate) fn register_stream(
        &self,
        owner: u64,
        target: RelPath,
        writer: Arc<StreamWriter>,
    ) -> u64 {
        let mut st = self.lock();
        st.next += 1;
        let id = st.next;
        st.streams.insert(id, (owner, target, writer));
        id
    }

    /// Remove a streamed upload (at commit or abort).
    pub(crate) fn take_stream(&self, id: u64) {
        self.lock().streams.remove(&id);
    }

    /// `owner`'s newest streamed upload to `path`.
    pub(crate) fn stream_for(&self, owner: u64, path: &RelPath) -> Option<Arc<StreamWriter>> {
        let st = self.lock();
        st.streams
            .iter()
            .filter(|(_, (o, t, _))| *o == owner && t == path)
            .max_by_key(|(id, _)| **id)
            .map(|(_, (_, _, w))| w.clone())
    }

    /// `owner`'s streamed uploads into directory `dir`: name -> writer.
    pub(crate) fn streams_in_dir(
        &self,
        owner: u64,
        dir: &RelPath,
    ) -> Vec<(Vec<u8>, Arc<StreamWriter>)> {
        let st = self.lock();
        let mut out: Vec<(u64, Vec<u8>, Arc<StreamWriter>)> = st
            .streams
            .iter()
            .filter(|(_, (o, t, _))| *o == owner && t.parent().as_ref() == Some(dir))
            .filter_map(|(id, (_, t, w))| Some((*id, t.file_name()?.to_vec(), w.clone())))
            .collect();
        // The newest upload of a name last, so it wins.
        out.sort_by_key(|(id, _, _)| *id);
        out.into_iter().map(|(_, n, w)| (n, w)).collect()
    }

    /// Remove every upload.
    pub(crate) fn drain(&self) -> Vec<Upload> {
        self.lock().map.drain().map(|(_, e)| e.upload).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn rename_and_unlink_follow_the_upload() {
        let u = Uploads::default();
        let a = u.register(1, p("d/a"), p("d/.a.tmp"), None);
        let b = u.register(1, p("d/a"), p("d/.a.tmp2"), None);
        let other = u.register(2, p("d/a"), p("d/.a.tmp3"), None);
        assert_eq!(u.temp_for(1, &p("d/a")), Some(p("d/.a.tmp2")));
        assert_eq!(u.temp_for(2, &p("d/a")), Some(p("d/.a.tmp3")));
        assert_eq!(u.temp_for(3, &p("d/a")), None);
        assert!(u.rename(1, &p("d/a"), &p("d/b")));
        assert_eq!(u.temp_for(1, &p("d/a")), None);
        assert_eq!(u.temp_for(2, &p("d/a")), Some(p("d/.a.tmp3")));
        assert_eq!(u.temp_for(1, &p("d/b")), Some(p("d/.a.tmp2")));
        assert!(!u.rename(1, &p("d"), &p("e")));
        assert_eq!(u.temp_for(1, &p("e/b")), Some(p("e/.a.tmp2")));
        // Session 2's temp moved with the directory; its target did not.
        assert_eq!(u.temp_for(2, &p("d/a")), Some(p("e/.a.tmp3")));
        assert_eq!(
            u.in_dir(1, &p("e")).get(&b".a.tmp"[..]),
            Some(&b"b".to_vec())
        );
        assert!(u.unlink(1, &p("e/b")));
        assert_eq!(u.take(other).unwrap().0.owner, 2);
        assert_eq!(u.take(a).unwrap().0.target, None);
        assert_eq!(u.take(b).unwrap().0.temp, p("e/.a.tmp2"));
        assert!(u.drain().is_empty());
    }
}
