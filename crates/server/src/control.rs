//! What an administrator can see and change while the server runs (the
//! remote-control API's `ferry/sessions`, `ferry/disconnect` and
//! `ferry/reload`): the logged-in connections, and the host keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use russh::keys::PrivateKey;
use tokio::sync::Notify;

use crate::access::Traffic;

/// One logged-in connection, as `ferry/sessions` lists it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Its number, for [`Control::disconnect`].
    pub id: u64,
    /// Who logged in.
    pub user: String,
    /// The client's address.
    pub addr: SocketAddr,
    /// The load balancer it came through, if any.
    pub via: Option<SocketAddr>,
    /// How it logged in (`password`, `publickey`, ...).
    pub method: &'static str,
    /// The client's version line.
    pub client: String,
    /// When it logged in.
    pub started: SystemTime,
    /// File bytes sent to the client.
    pub bytes_read: u64,
    /// File bytes received from the client.
    pub bytes_written: u64,
    /// Files and directories it has open.
    pub open_files: u64,
}

struct Entry {
    info: SessionInfo,
    traffic: Arc<Traffic>,
    kill: Arc<Notify>,
}

/// The server's live sessions and its host keys. Shared by the server and
/// whoever controls it (cheap to clone through an `Arc`).
#[derive(Default)]
pub struct Control {
    next: AtomicU64,
    sessions: Mutex<BTreeMap<u64, Entry>>,
    /// The SSH configuration new connections get (its host keys change at
    /// a reload), and how to make it with other keys; set by the server
    /// when it starts.
    russh: Mutex<Option<(Arc<russh::server::Config>, MakeConfig)>>,
}

pub(crate) type MakeConfig = Box<dyn Fn(Vec<PrivateKey>) -> russh::server::Config + Send>;

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

/// A session's place in [`Control`], removed when dropped.
pub(crate) struct Registered {
    control: Arc<Control>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.control.lock().remove(&self.id);
    }
}

impl Control {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a logged-in connection; `kill` is told to disconnect it.
    pub(crate) fn register(
        self: &Arc<Self>,
        mut info: SessionInfo,
        traffic: Arc<Traffic>,
        kill: Arc<Notify>,
    ) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        info.id = id;
        self.lock().insert(
            id,
            Entry {
                info,
                traffic,
                kill,
            },
        );
        Registered {
            control: self.clone(),
            id,
        }
    }

    /// The logged-in connections now, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.lock()
            .values()
            .map(|e| {
                let (read, written) = e.traffic.totals();
                SessionInfo {
                    bytes_read: read,
                    bytes_written: written,
                    open_files: e.traffic.open_handles(),
                    ..e.info.clone()
                }
            })
            .collect()
    }

    /// Disconnect session `id`; false if there is none.
    pub fn disconnect(&self, id: u64) -> bool {
        match self.lock().get(&id) {
            Some(e) => {
                e.kill.notify_one();
                true
            }
            None => false,
        }
    }

    /// Serve new connections with `keys` (connections already open keep
    /// theirs). False before the server has started.
    pub fn set_host_keys(&self, keys: Vec<PrivateKey>) -> bool {
        let mut cfg = self.russh.lock().unwrap_or_else(|p| p.into_inner());
        match cfg.as_mut() {
            Some((c, make)) => {
                *c = Arc::new(make(keys));
                true
            }
            None => false,
        }
    }

    pub(crate) fn set_russh(&self, make: MakeConfig, keys: Vec<PrivateKey>) {
        let cfg = Arc::new(make(keys));
        *self.russh.lock().unwrap_or_else(|p| p.into_inner()) = Some((cfg, make));
    }

    pub(crate) fn russh(&self) -> Option<Arc<russh::server::Config>> {
        self.russh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(c, _)| c.clone())
    }
}
