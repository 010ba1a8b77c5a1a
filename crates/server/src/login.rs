//! The login seam: who may log in, and what each login gets.
//!
//! An [`Authenticator`] checks credentials and answers with a [`Login`]:
//! the user name, the VFS to serve (a [`VfsLease`]) and the login's
//! [`Policy`]. Everything per login (which store, read-only, and later
//! limits, bandwidth and filters) comes from here and nowhere else; the SSH
//! layer only carries it to the sessions.
//!
//! A [`VfsPool`] keeps the live VFSes by the key of their backend
//! configuration: logins that map to the same configuration share one VFS
//! (one directory cache, one file cache, one upload queue). A VFS lives
//! while a lease on it is held and for a linger time after the last one is
//! dropped; then its pending uploads are flushed (they are on disk and
//! would be uploaded on the next start anyway) and it is dropped.
//! [`VfsPool::shutdown`] flushes every VFS at exit.
//!
//! [`StaticAuthenticator`] is the server of one remote: one user and
//! password, authorized keys, or no authentication, all served one VFS.
//! [`crate::proxy::ProxyAuthenticator`] asks an auth proxy per login.
//!
//! Lock order: the pool's map lock is never held across an await, and no
//! other lock is taken while it is held.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_vfs::Vfs;
use russh::keys::PublicKey;

use crate::auth::AuthConfig;

/// What a login may do, beyond which files it sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Every change is refused (`PERMISSION_DENIED`).
    pub read_only: bool,
    /// Connections this user may have logged in at once, instead of the
    /// server's limit (`Some(0)`: no limit).
    pub max_connections: Option<usize>,
    /// A bandwidth limit for this user's file data, all its connections
    /// together, on top of the server's `--bwlimit` (`_bwlimit`).
    pub bwlimit: Option<ferry_layers::Rates>,
}

/// A successful login.
pub struct Login {
    /// The user name, for logs.
    pub user: String,
    /// The VFS this login is served.
    pub vfs: VfsLease,
    /// What it may do.
    pub policy: Policy,
    /// What it is served, for logs (secrets redacted).
    pub describe: String,
}

/// The credentials of one authentication attempt.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// No credentials (`--no-auth` accepts these).
    None,
    /// A password.
    Password(&'a str),
    /// A public key whose signature russh has verified.
    PublicKey(&'a PublicKey),
}

impl Credential<'_> {
    /// The method's name, for logs.
    pub fn method(&self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::Password(_) => "password",
            Credential::PublicKey(_) => "publickey",
        }
    }
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The credentials are wrong (or not accepted from this address).
    BadCredentials,
    /// The credentials are right but the login cannot be served: its
    /// store could not be opened (logged with the reason).
    Unavailable(String),
}

/// The ways in a server offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Methods {
    /// Anyone, without credentials.
    pub none: bool,
    /// Passwords.
    pub password: bool,
    /// Public keys.
    pub public_key: bool,
}

/// Checks credentials and says what a login gets.
pub trait Authenticator: Send + Sync + 'static {
    /// The methods on offer.
    fn methods(&self) -> Methods;

    /// May `key` be used by `user` from `peer`? Asked before the client
    /// proves it holds the key; [`Authenticator::login`] decides.
    fn key_acceptable<'a>(
        &'a self,
        user: &'a str,
        key: &'a PublicKey,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

    /// Check `credential` and give the login it opens.
    fn login<'a>(
        &'a self,
        user: &'a str,
        credential: Credential<'a>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Login, Refusal>> + Send + 'a>>;

    /// Drop whatever answers about logins are kept (SIGHUP).
    fn forget(&self) {}

    /// Read the credentials' files again (authorized_keys); says what was
    /// read. The default has nothing to read.
    fn reload(&self) -> Result<String, String> {
        Ok("no credentials file to read".into())
    }
}

/// Reads the authorized keys again, for [`Authenticator::reload`].
pub type KeyLoader = Box<dyn Fn() -> Result<Vec<crate::auth::AuthorizedKey>, String> + Send + Sync>;

/// The server of a single remote: `--user`/`--pass`, `--authorized-keys`
/// and `--no-auth`, every login served the same VFS (a forced
/// `internal-sftp -R` on a key makes its logins read-only).
pub struct StaticAuthenticator<K> {
    auth: std::sync::RwLock<AuthConfig>,
    /// Offered public keys at the start (the methods stay as they were).
    public_key: bool,
    loader: Option<KeyLoader>,
    pool: VfsPool<K>,
    key: K,
    policy: Policy,
    describe: String,
}

impl<K: PoolKey> StaticAuthenticator<K> {
    /// Logins checked against `auth`, served the VFS of `key` from `pool`
    /// with `policy`; `describe` names it in logs.
    pub fn new(
        auth: AuthConfig,
        pool: VfsPool<K>,
        key: K,
        policy: Policy,
        describe: String,
    ) -> Self {
        StaticAuthenticator {
            public_key: !auth.keys.is_empty(),
            auth: std::sync::RwLock::new(auth),
            loader: None,
            pool,
            key,
            policy,
            describe,
        }
    }
}

impl<K> StaticAuthenticator<K> {
    /// Read the authorized keys again with `loader` at each reload.
    pub fn with_reload(mut self, loader: KeyLoader) -> Self {
        self.loader = Some(loader);
        self
    }

    fn auth(&self) -> std::sync::RwLockReadGuard<'_, AuthConfig> {
        self.auth.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: PoolKey> Authenticator for StaticAuthenticator<K> {
    fn methods(&self) -> Methods {
        let auth = self.auth();
        Methods {
            none: auth.no_auth,
            password: auth.password_enabled(),
            public_key: self.public_key,
        }
    }

    fn reload(&self) -> Result<String, String> {
        let Some(load) = &self.loader else {
            return Ok("no authorized_keys file to read".into());
        };
        let keys = load()?;
        let n = keys.len();
        if n > 0 && !self.public_key {
            return Err(format!(
                "{n} authorized key(s) read, but the server started without any: \
                 restart it to offer public-key logins"
            ));
        }
        self.auth.write().unwrap_or_else(|p| p.into_inner()).keys = keys;
        Ok(format!("{n} authorized key(s) read"))
    }

    fn key_acceptable<'a>(
        &'a self,
        _user: &'a str,
        key: &'a PublicKey,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        let ok = self.auth().find_key(key, Some(peer.ip())).is_some();
        Box::pin(std::future::ready(ok))
    }

    fn login<'a>(
        &'a self,
        user: &'a str,
        credential: Credential<'a>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Login, Refusal>> + Send + 'a>> {
        Box::pin(async move {
            let mut policy = self.policy.clone();
            let ok = {
                let auth = self.auth();
                match credential {
                    Credential::None => auth.no_auth,
                    Credential::Password(p) => auth.check_password(user, p),
                    Credential::PublicKey(k) => match auth.find_key(k, Some(peer.ip())) {
                        Some(found) => {
                            policy.read_only |= found.read_only;
                            true
                        }
                        None => false,
                    },
                }
            };
            if !ok {
                return Err(Refusal::BadCredentials);
            }
            let vfs = self
                .pool
                .get(self.key.clone())
                .await
                .map_err(Refusal::Unavailable)?;
            Ok(Login {
                user: user.to_string(),
                vfs,
                policy,
                describe: self.describe.clone(),
            })
        })
    }
}

/// What a [`VfsPool`] is keyed by: a fingerprint of a backend
/// configuration (the registry's remote spec, for the CLI).
pub trait PoolKey: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static {}
impl<T: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static> PoolKey for T {}

type Opener<K> =
    dyn Fn(K) -> Pin<Box<dyn Future<Output = Result<Vfs, String>> + Send>> + Send + Sync;

/// The live VFSes, one per backend configuration. See the module docs.
pub struct VfsPool<K> {
    inner: Arc<PoolInner<K>>,
}

impl<K> Clone for VfsPool<K> {
    fn clone(&self) -> Self {
        VfsPool {
            inner: self.inner.clone(),
        }
    }
}

struct PoolInner<K> {
    open: Box<Opener<K>>,
    linger: Duration,
    slots: Mutex<HashMap<K, Arc<Slot>>>,
}

/// One configuration's VFS: opened once, however many logins ask at once.
struct Slot {
    vfs: tokio::sync::OnceCell<Vfs>,
    /// Leases held, and a generation that changes with each new lease (a
    /// linger timer acts only if nothing happened since it started).
    state: Mutex<(usize, u64)>,
}

/// A hold on a VFS of the pool: the VFS lives at least as long.
pub struct VfsLease {
    vfs: Vfs,
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl VfsLease {
    /// The VFS.
    pub fn vfs(&self) -> &Vfs {
        &self.vfs
    }
}

impl std::fmt::Debug for VfsLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfsLease").finish_non_exhaustive()
    }
}

impl Drop for VfsLease {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl<K: PoolKey> VfsPool<K> {
    /// A pool that opens VFSes with `open` and keeps an unused one for
    /// `linger`.
    pub fn new<F, Fut>(linger: Duration, open: F) -> Self
    where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vfs, String>> + Send + 'static,
    {
        VfsPool {
            inner: Arc::new(PoolInner {
                open: Box::new(move |k| Box::pin(open(k))),
                linger,
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<Slot>>> {
        self.inner.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A lease on the VFS of `key`, opening it if it is not live. Logins
    /// asking for one key at once share one opening.
    pub async fn get(&self, key: K) -> Result<VfsLease, String> {
        let slot = {
            let mut slots = self.slots();
            let slot = slots
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Slot {
                        vfs: tokio::sync::OnceCell::new(),
                        state: Mutex::new((0, 0)),
                    })
                })
                .clone();
            let mut st = slot.state.lock().unwrap_or_else(|e| e.into_inner());
            st.0 += 1;
            st.1 += 1;
            drop(st);
            slot
        };
        let release = self.releaser(key.clone(), slot.clone());
        let opened = slot
            .vfs
            .get_or_try_init(|| (self.inner.open)(key.clone()))
            .await
            .cloned();
        match opened {
            Ok(vfs) => Ok(VfsLease {
                vfs,
                release: Some(release),
            }),
            Err(e) => {
                release();
                Err(e)
            }
        }
    }

    /// What dropping a lease on `slot` does: the last one starts the
    /// linger timer.
    fn releaser(&self, key: K, slot: Arc<Slot>) -> Box<dyn FnOnce() + Send + Sync> {
        let pool = self.clone();
        Box::new(move || {
            let generation = {
                let mut st = slot.state.lock().unwrap_or_else(|e| e.into_inner());
                st.0 -= 1;
                if st.0 > 0 {
                    return;
                }
                st.1
            };
            let linger = pool.inner.linger;
            let expire = move || pool.expire(&key, &slot, generation);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) if !linger.is_zero() => {
                    rt.spawn(async move {
                        tokio::time::sleep(linger).await;
                        expire();
                    });
                }
                _ => expire(),
            }
        })
    }

    /// The linger time of `slot` is over: drop it if nobody took a lease
    /// since, after flushing what its file cache holds.
    fn expire(&self, key: &K, slot: &Arc<Slot>, generation: u64) {
        {
            let mut slots = self.slots();
            let st = slot.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.0 > 0 || st.1 != generation {
                return;
            }
            drop(st);
            match slots.get(key) {
                Some(s) if Arc::ptr_eq(s, slot) => {
                    slots.remove(key);
                }
                _ => return,
            }
        }
        let Some(vfs) = slot.vfs.get().cloned() else {
            return;
        };
        tracing::debug!("{key:?}: no login uses it any more; closing its VFS");
        if vfs.pending_uploads() == 0 {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                vfs.flush_uploads(std::future::pending()).await;
            });
        }
    }

    /// How many VFSes are live (in use or lingering).
    pub fn live(&self) -> usize {
        self.slots()
            .values()
            .filter(|s| s.vfs.get().is_some())
            .count()
    }

    /// Every live VFS, with its key.
    pub fn entries(&self) -> Vec<(K, Vfs)> {
        self.slots()
            .iter()
            .filter_map(|(k, s)| s.vfs.get().map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Every live VFS.
    pub fn each(&self) -> Vec<Vfs> {
        self.slots()
            .values()
            .filter_map(|s| s.vfs.get().cloned())
            .collect()
    }

    /// At exit: every live VFS discards its unfinished uploads (the files
    /// they replace stay intact) and uploads what its file cache holds,
    /// until done or `give_up` resolves. Returns the changed files still
    /// not uploaded (kept in the cache for the next start).
    pub async fn shutdown(&self, give_up: impl Future<Output = ()>) -> usize {
        let all = self.each();
        for vfs in &all {
            vfs.discard_pending_uploads().await;
        }
        let flush = async {
            let mut left = 0;
            for vfs in &all {
                left += vfs.flush_uploads(std::future::pending()).await;
            }
            left
        };
        tokio::select! {
            left = flush => left,
            _ = give_up => all.iter().map(|v| v.pending_uploads()).sum(),
        }
    }

    /// Changed files waiting for upload, in every live VFS.
    pub fn pending_uploads(&self) -> usize {
        self.each().iter().map(|v| v.pending_uploads()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn pool(linger: Duration, opened: Arc<AtomicUsize>) -> VfsPool<String> {
        VfsPool::new(linger, move |key: String| {
            let opened = opened.clone();
            async move {
                if key == "bad" {
                    return Err("cannot open bad".to_string());
                }
                opened.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let backend = ferry_backend_local::LocalBackend::open(&std::env::temp_dir())
                    .map_err(|e| e.to_string())?;
                Ok(Vfs::new(Arc::new(backend), Default::default()))
            }
        })
    }

    #[tokio::test]
    async fn logins_with_one_key_share_one_vfs_opened_once() {
        let opened = Arc::new(AtomicUsize::new(0));
        let p = pool(Duration::from_secs(60), opened.clone());
        let (a, b) = tokio::join!(p.get("x".into()), p.get("x".into()));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(opened.load(Ordering::SeqCst), 1, "opened once");
        let other = p.get("y".into()).await.unwrap();
        assert_eq!(opened.load(Ordering::SeqCst), 2);
        assert_eq!(p.live(), 2);
        drop((a, b, other));
        assert_eq!(p.live(), 2, "lingering");
        assert_eq!(p.get("bad".into()).await.unwrap_err(), "cannot open bad");
        assert_eq!(p.live(), 2, "a failed open leaves nothing live");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unused_vfs_goes_after_the_linger_time_unless_taken_again() {
        let opened = Arc::new(AtomicUsize::new(0));
        let p = pool(Duration::from_secs(10), opened.clone());
        let a = p.get("x".into()).await.unwrap();
        drop(a);
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Taken again inside the linger time: the same VFS, and the old
        // timer does nothing.
        let b = p.get("x".into()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(p.live(), 1);
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        drop(b);
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(p.live(), 0, "gone after the linger time");
        let _c = p.get("x".into()).await.unwrap();
        assert_eq!(opened.load(Ordering::SeqCst), 2, "opened anew");
    }
}
