//! Change notification for a local tree: inotify on every directory, read
//! in batches.
//!
//! One thread per watched tree waits for inotify events, reads all that are
//! queued, reports each changed path once, then sleeps [`BATCH`] so that
//! the events of the next few milliseconds are read together. Without the
//! pause the thread woke for almost every event: an upload of one small
//! file makes five or six (create, modify, close, two for the rename), and
//! a large one an IN_MODIFY per write, each wake-up costing two context
//! switches. Changes made outside Ferry show up at most [`BATCH`] later.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_backend::{ChangeNotify, RelPath};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// Pause after each batch of events.
pub(crate) const BATCH: Duration = Duration::from_millis(20);

/// How often a waiting thread checks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(500);

/// What a directory watch reports. Changes to a file's content, metadata or
/// name, and to the directory itself.
fn mask() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
        | WatchFlags::DONT_FOLLOW
}

/// A running watcher; dropping it stops its thread (within half a second).
pub(crate) struct Watcher {
    stop: Arc<AtomicBool>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Watch every directory under `root` (not following symbolic links) and
/// call `on_change` with each changed path, relative to `root`, or `None`
/// when events were lost.
pub(crate) fn start(root: PathBuf, on_change: ChangeNotify) -> io::Result<Watcher> {
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    let mut tree = Tree {
        fd,
        root,
        dirs: HashMap::new(),
    };
    tree.add(&[]).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            io::Error::other(format!(
                "{e}: too many directories to watch (on Linux, raise fs.inotify.max_user_watches)"
            ))
        } else {
            e
        }
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    std::thread::Builder::new()
        .name("ferry-inotify".into())
        .spawn(move || tree.run(&on_change, &stopping))?;
    Ok(Watcher { stop })
}

/// The watched directories.
struct Tree {
    fd: OwnedFd,
    root: PathBuf,
    /// Watch descriptor -> the directory's path below the root.
    dirs: HashMap<i32, Vec<u8>>,
}

/// One event, copied out of the read buffer.
struct Event {
    wd: i32,
    flags: ReadFlags,
    name: Option<Vec<u8>>,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
        p.extend_from_slice(dir);
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

impl Tree {
    /// Watch `rel` and every directory below it. Directories that vanish
    /// or cannot be read meanwhile are skipped; running out of watches is
    /// an error.
    fn add(&mut self, rel: &[u8]) -> io::Result<()> {
        let abs = self.root.join(OsStr::from_bytes(rel));
        let wd = match inotify::add_watch(&self.fd, &abs, mask()) {
            Ok(wd) => wd,
            Err(e) if e == rustix::io::Errno::NOSPC => return Err(e.into()),
            Err(e) if rel.is_empty() => return Err(e.into()),
            Err(_) => return Ok(()),
        };
        self.dirs.insert(wd, rel.to_vec());
        let Ok(entries) = std::fs::read_dir(&abs) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.add(&join(rel, entry.file_name().as_bytes()))?;
            }
        }
        Ok(())
    }

    /// Stop watching `rel` and everything below it (it moved away; its
    /// new place is added afresh if it is inside the tree).
    fn remove(&mut self, rel: &[u8]) {
        let gone: Vec<i32> = self
            .dirs
            .iter()
            .filter(|(_, p)| {
                p.starts_with(rel) && (p.len() == rel.len() || p.get(rel.len()) == Some(&b'/'))
            })
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            self.dirs.remove(&wd);
            let _ = inotify::remove_watch(&self.fd, wd);
        }
    }

    fn run(mut self, on_change: &ChangeNotify, stop: &AtomicBool) {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            let timeout = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: STOP_CHECK.as_nanos() as _,
            };
            let mut fds = [rustix::event::PollFd::new(
                &self.fd,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(_) => {
                    // The watch is broken: say everything may have changed,
                    // and stop (the directory cache falls back to expiry).
                    on_change(None);
                    return;
                }
            }
            let (events, lost) = self.read(&mut buf);
            self.report(events, lost, on_change);
            std::thread::sleep(BATCH);
        }
    }

    /// Every event queued now; `true` if some were lost.
    fn read(&self, buf: &mut [MaybeUninit<u8>]) -> (Vec<Event>, bool) {
        let mut events = Vec::new();
        let mut reader = inotify::Reader::new(&self.fd, buf);
        loop {
            match reader.next() {
                Ok(ev) => events.push(Event {
                    wd: ev.wd(),
                    flags: ev.events(),
                    name: ev.file_name().map(|n| n.to_bytes().to_vec()),
                }),
                Err(rustix::io::Errno::WOULDBLOCK) => return (events, false),
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return (events, true),
            }
        }
    }

    fn report(&mut self, events: Vec<Event>, mut lost: bool, on_change: &ChangeNotify) {
        let mut changed = BTreeSet::new();
        for ev in events {
            if ev.flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                lost = true;
                continue;
            }
            let Some(dir) = self.dirs.get(&ev.wd).cloned() else {
                continue;
            };
            if ev.flags.contains(ReadFlags::IGNORED) {
                self.dirs.remove(&ev.wd);
                continue;
            }
            let path = match &ev.name {
                Some(name) => join(&dir, name),
                None => dir,
            };
            if ev.flags.contains(ReadFlags::ISDIR) {
                if ev.flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                    if self.add(&path).is_err() {
                        lost = true; // out of watches: expiry must do
                    }
                } else if ev.flags.contains(ReadFlags::MOVED_FROM) {
                    self.remove(&path);
                }
            }
            if path.is_empty()
                && ev
                    .flags
                    .intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF)
            {
                lost = true; // the root itself went
            }
            changed.insert(path);
        }
        if lost {
            on_change(None);
            return;
        }
        for path in changed {
            match RelPath::new(path) {
                Ok(p) => on_change(Some(&p)),
                Err(_) => on_change(None),
            }
        }
    }
}
