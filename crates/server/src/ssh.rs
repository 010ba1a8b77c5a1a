//! The SSH server: accept loop, per-connection handler, channels.
//!
//! One task per connection runs russh's session loop; each SFTP subsystem
//! gets its own task ([`crate::sftp::serve`]) fed by a reader that keeps
//! draining the channel (see the `sftp` module docs for why).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, MethodKind, MethodSet, Preferred};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

use crate::activity::Activity;
use crate::algorithms::{Algorithms, List};
use crate::counts::{KeyedCounts, KeyedSlot};
use crate::gate::{Admission, Gate, GateConfig};
use crate::login::{Authenticator, Credential, Login, Refusal};
use crate::penalty::{Cidr, Offence, Penalties};
use crate::proxied::{self, HeaderError};
use crate::sftp::{self, SftpOptions};

/// Everything a server needs, typed.
pub struct ServerConfig {
    /// Who may log in, and what each login gets.
    pub auth: Arc<dyn Authenticator>,
    /// Host keys (at least one).
    pub host_keys: Vec<PrivateKey>,
    /// SFTP session limits.
    pub sftp: SftpOptions,
    /// Which connections are let in: total and unauthenticated limits.
    pub gate: GateConfig,
    /// Time a connection has from accept to a successful login (version
    /// line and key exchange included); zero for no limit.
    pub login_grace: Duration,
    /// Per-source penalties (`None`: off).
    pub penalties: Option<Arc<Penalties>>,
    /// Delay before a failed authentication is answered.
    pub auth_rejection_time: Duration,
    /// Authentication attempts per connection.
    pub max_auth_attempts: usize,
    /// Session channels per connection.
    pub max_channels: usize,
    /// Keepalive after this long without hearing from the client (zero:
    /// never), and how many may go unanswered before it is disconnected.
    pub client_alive: (Duration, usize),
    /// Disconnect a connection after this long without activity on its
    /// channels (keepalives do not count); zero for never.
    pub idle_timeout: Duration,
    /// Connections one user may have logged in at once, unless its login's
    /// policy says otherwise; zero for no limit.
    pub max_connections_per_user: usize,
    /// Load balancers whose connections start with a PROXY protocol header
    /// (version 1 or 2) giving the client's address; empty for none.
    pub proxy_protocol: Vec<Cidr>,
    /// The SSH algorithms offered.
    pub algorithms: Algorithms,
    /// The live sessions and host keys, for the remote-control API.
    pub control: Arc<crate::control::Control>,
    /// Where logins, connections and requests are counted.
    pub metrics: Option<Arc<ferry_metrics::Metrics>>,
}

impl ServerConfig {
    /// Defaults for everything but auth and keys.
    pub fn new(auth: Arc<dyn Authenticator>, host_keys: Vec<PrivateKey>) -> Self {
        ServerConfig {
            auth,
            host_keys,
            sftp: SftpOptions::default(),
            gate: GateConfig::default(),
            penalties: None,
            login_grace: Duration::from_secs(120),
            auth_rejection_time: Duration::from_secs(1),
            // Six tries of real credentials: russh also counts the "none"
            // probe every OpenSSH client sends first.
            max_auth_attempts: 7,
            max_channels: 10,
            client_alive: (Duration::ZERO, 3),
            idle_timeout: Duration::ZERO,
            max_connections_per_user: 0,
            proxy_protocol: Vec::new(),
            algorithms: Algorithms::default(),
            control: Arc::default(),
            metrics: None,
        }
    }
}

struct Shared {
    /// The methods on offer (fixed for the server's life).
    methods: MethodSet,
    control: Arc<crate::control::Control>,
    metrics: Option<Arc<ferry_metrics::Metrics>>,
    auth: Arc<dyn Authenticator>,
    algorithms: Algorithms,
    sftp: Arc<SftpOptions>,
    login_grace: Duration,
    max_channels: usize,
    idle_timeout: Duration,
    max_per_user: usize,
    /// Logged-in connections per user.
    users: Arc<KeyedCounts>,
    /// Each user's own bandwidth limit (`_bwlimit`), shared by its
    /// connections while any is open.
    user_limits: std::sync::Mutex<HashMap<String, std::sync::Weak<ferry_layers::BwLimiter>>>,
    penalties: Option<Arc<Penalties>>,
}

impl Shared {
    /// The limiter of `user` at `rates`: the one its other connections
    /// use (set to the newest answer's rates), or a new one.
    fn user_limiter(&self, user: &str, rates: ferry_layers::Rates) -> Arc<ferry_layers::BwLimiter> {
        let mut map = self.user_limits.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(l) = map.get(user).and_then(|w| w.upgrade()) {
            if l.current() != rates {
                l.set(rates);
            }
            return l;
        }
        let l = ferry_layers::BwLimiter::new(ferry_layers::Timetable::fixed(rates));
        map.insert(user.to_string(), Arc::downgrade(&l));
        l
    }
}

/// What the russh configuration is made of, kept to make it again with
/// other host keys.
#[derive(Clone)]
struct RusshParams {
    offered: crate::login::Methods,
    auth_rejection_time: Duration,
    algorithms: Algorithms,
    max_auth_attempts: usize,
    client_alive: (Duration, usize),
}

fn russh_config(cfg: &RusshParams, keys: Vec<PrivateKey>) -> russh::server::Config {
    let offered = cfg.offered;
    let mut methods = MethodSet::empty();
    if offered.none {
        methods.push(MethodKind::None);
    }
    if offered.public_key {
        methods.push(MethodKind::PublicKey);
    }
    if offered.password {
        methods.push(MethodKind::Password);
        // One password prompt: for clients set up for keyboard-interactive
        // only (common with WinSCP and FileZilla).
        methods.push(MethodKind::KeyboardInteractive);
    }
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Owned(format!(
            "SSH-2.0-ferry_{}",
            env!("CARGO_PKG_VERSION")
        ))),
        methods,
        auth_rejection_time: cfg.auth_rejection_time,
        // OpenSSH clients probe with "none" first; that is no failure.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys,
        window_size: 16 << 20,
        maximum_packet_size: 64 * 1024,
        channel_buffer_size: 256,
        preferred: Preferred {
            kex: Cow::Owned(cfg.algorithms.russh_kex()),
            key: Cow::Owned(cfg.algorithms.russh_host_keys()),
            cipher: Cow::Owned(cfg.algorithms.russh_ciphers()),
            mac: Cow::Owned(cfg.algorithms.russh_macs()),
            compression: Cow::Borrowed(&[russh::compression::NONE]),
            ..Preferred::DEFAULT
        },
        max_auth_attempts: cfg.max_auth_attempts,
        inactivity_timeout: None,
        // Any packet from the client counts as an answer (OpenSSH answers
        // keepalive@openssh.com with a failure); past the count unanswered,
        // the connection is closed.
        keepalive_interval: (!cfg.client_alive.0.is_zero()).then_some(cfg.client_alive.0),
        keepalive_max: cfg.client_alive.1,
        nodelay: true,
        ..Default::default()
    }
}

/// Serve SSH on `listener` until `shutdown` turns true. Connections already
/// open keep running until their clients leave.
pub async fn serve(
    listener: TcpListener,
    cfg: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let params = RusshParams {
        offered: cfg.auth.methods(),
        auth_rejection_time: cfg.auth_rejection_time,
        algorithms: cfg.algorithms.clone(),
        max_auth_attempts: cfg.max_auth_attempts,
        client_alive: cfg.client_alive,
    };
    let methods = russh_config(&params, Vec::new()).methods;
    cfg.control.set_russh(
        Box::new(move |keys| russh_config(&params, keys)),
        cfg.host_keys,
    );
    let shared = Arc::new(Shared {
        methods,
        control: cfg.control,
        metrics: cfg.metrics,
        sftp: Arc::new(cfg.sftp),
        login_grace: cfg.login_grace,
        max_channels: cfg.max_channels,
        idle_timeout: cfg.idle_timeout,
        max_per_user: cfg.max_connections_per_user,
        users: Arc::default(),
        user_limits: Default::default(),
        penalties: cfg.penalties,
        auth: cfg.auth,
        algorithms: cfg.algorithms,
    });
    let gate = Gate::new(cfg.gate);
    let balancers = cfg.proxy_protocol;
    let refusals = Arc::new(Mutex::new(RefusalLog::default()));
    let lingering = Arc::new(Semaphore::new(LINGERING_REFUSALS));
    let headers = Arc::new(Semaphore::new(PENDING_HEADERS));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let accepted = Instant::now();
        let door = Door {
            shared: &shared,
            gate: &gate,
            refusals: &refusals,
            lingering: &lingering,
        };
        if !balancers.iter().any(|b| b.contains(peer.ip())) {
            door.admit(stream, peer, None, accepted);
            continue;
        }
        // From a balancer: its header first, in a task of its own (the
        // accept loop never waits for a client), a bounded number at once.
        let Ok(permit) = headers.clone().try_acquire_owned() else {
            note(
                &refusals,
                peer,
                "too many connections waiting for their PROXY header",
                &gate,
            );
            continue;
        };
        let (shared, gate) = (shared.clone(), gate.clone());
        let (refusals, lingering) = (refusals.clone(), lingering.clone());
        tokio::spawn(async move {
            let mut stream = stream;
            let read = tokio::time::timeout(HEADER_TIME, proxied::read_header(&mut stream)).await;
            drop(permit);
            let client = match read {
                Ok(Ok(Some(client))) => {
                    SocketAddr::new(crate::gate::canonical(client.ip()), client.port())
                }
                // The balancer's own connection (a health check).
                Ok(Ok(None)) => peer,
                Ok(Err(HeaderError::Closed)) => {
                    tracing::debug!(%peer, "closed before sending a PROXY header");
                    return;
                }
                Ok(Err(e)) => return note(&refusals, peer, e, &gate),
                Err(_) => {
                    return note(
                        &refusals,
                        peer,
                        format_args!("no PROXY header within {HEADER_TIME:?}"),
                        &gate,
                    )
                }
            };
            let door = Door {
                shared: &shared,
                gate: &gate,
                refusals: &refusals,
                lingering: &lingering,
            };
            door.admit(
                stream,
                client,
                Some(peer).filter(|&p| p != client),
                accepted,
            );
        });
    }
}

/// Connections waiting for their PROXY header at once, at most; more are
/// closed at accept.
const PENDING_HEADERS: usize = 256;

/// Time a balancer has to send its PROXY header (it sends it at once).
const HEADER_TIME: Duration = Duration::from_secs(10);

fn note(refusals: &Mutex<RefusalLog>, peer: SocketAddr, why: impl std::fmt::Display, gate: &Gate) {
    refusals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .note(peer, why, gate);
}

/// What lets a connection in, once its client's address is known.
struct Door<'a> {
    shared: &'a Arc<Shared>,
    gate: &'a Arc<Gate>,
    refusals: &'a Mutex<RefusalLog>,
    lingering: &'a Arc<Semaphore>,
}

impl Door<'_> {
    fn refused(&self, kind: &'static str) {
        if let Some(m) = &self.shared.metrics {
            m.refused(kind);
        }
    }

    /// Turn away a penalised source or one over a limit; serve the others.
    /// `via` is the balancer a proxied connection came through.
    fn admit(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        via: Option<SocketAddr>,
        accepted: Instant,
    ) {
        if let Some(left) = self
            .shared
            .penalties
            .as_ref()
            .and_then(|p| p.refused_for(peer.ip(), accepted.into_std()))
        {
            turn_away(stream, b"Not allowed at this time\r\n", self.lingering);
            self.refused("penalty");
            note(
                self.refusals,
                peer,
                format_args!("source penalised for {}s more", left.as_secs() + 1),
                self.gate,
            );
            return;
        }
        let admission = match self.gate.admit(peer.ip(), rand::random_range(0..100)) {
            Ok(a) => a,
            Err(why) => {
                turn_away(stream, why.banner(), self.lingering);
                self.refused(match why {
                    crate::gate::Refused::Full => "max_connections",
                    crate::gate::Refused::Startups => "max_startups",
                    crate::gate::Refused::PerSource => "per_source_max_startups",
                });
                note(self.refusals, peer, why.reason(), self.gate);
                return;
            }
        };
        let shared = self.shared.clone();
        tokio::spawn(connection(shared, stream, peer, via, admission, accepted));
    }
}

/// Refused connections whose line is being delivered at once, at most.
const LINGERING_REFUSALS: usize = 64;

/// Send a refused connection its one line and close it. The line is
/// written without waiting; then, so that it reaches the client (closing a
/// socket with the client's version line unread sends a reset, and the
/// client's kernel throws the line away), the socket is shut down for
/// writing and what the client sends is read and dropped until it closes,
/// for at most two seconds. At most `LINGERING_REFUSALS` linger at once;
/// past that (a flood) a refusal is closed at once.
fn turn_away(stream: tokio::net::TcpStream, line: &'static [u8], lingering: &Arc<Semaphore>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.try_write(line);
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut buf = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        drop(permit);
    });
}

/// Logs refused connections, at most one line a second (a flood must not
/// fill the disk); the next line says how many went unlogged.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn note(&mut self, peer: SocketAddr, why: impl std::fmt::Display, gate: &Gate) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.unlogged += 1;
            return;
        }
        let (open, startups) = gate.counts();
        let more = match std::mem::take(&mut self.unlogged) {
            0 => String::new(),
            n => format!(" ({n} more refused since the last line)"),
        };
        tracing::warn!(
            %peer,
            "connection refused: {why} ({open} open, {startups} not logged in){more}"
        );
        self.last = Some(now);
    }
}

/// Text from a client (a user name, a version line) as it goes into the
/// log: control characters and line separators escaped (`\n`,
/// `\u{1b}`), so no name can start a forged log line or drive a terminal.
struct Printable<'a>(&'a str);

impl std::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// How far a connection got, shared by its handler and its task: the
/// login (signalled), and what the penalties need at its end.
#[derive(Default)]
struct LoggedIn {
    flag: AtomicBool,
    notify: Notify,
    /// Some credential was tried (not only the `none` probe).
    tried: AtomicBool,
    /// A failed password was already charged as it happened.
    charged: AtomicBool,
    /// Closed at the grace time.
    grace_out: AtomicBool,
    /// Who logged in, how and when, for the logout line.
    who: std::sync::Mutex<Option<(String, &'static str, Instant)>>,
    /// File bytes the connection's sessions moved.
    traffic: Arc<crate::access::Traffic>,
    /// Told to disconnect it (`ferry/disconnect`).
    kill: Arc<Notify>,
    /// Its place in the server's sessions and the metrics while logged in.
    registered:
        std::sync::Mutex<Option<(crate::control::Registered, Option<ferry_metrics::Active>)>>,
}

impl LoggedIn {
    /// What the connection earned, ending without a login.
    fn offence(&self) -> Option<Offence> {
        if self.flag.load(Ordering::Acquire) || self.charged.load(Ordering::Acquire) {
            None
        } else if self.grace_out.load(Ordering::Acquire) {
            Some(Offence::GraceExceeded)
        } else if self.tried.load(Ordering::Acquire) {
            Some(Offence::AuthFail)
        } else {
            Some(Offence::NoAuth)
        }
    }
}

/// Add a penalty to `peer`'s source and log when that makes it refused.
fn penalise(shared: &Shared, peer: SocketAddr, what: Offence) {
    if let Some(p) = &shared.penalties {
        if let Some(left) = p.penalise(peer.ip(), what, std::time::Instant::now()) {
            let why = match what {
                Offence::AuthFail => "failed logins",
                Offence::NoAuth => "connections without a login attempt",
                Offence::GraceExceeded => "connections past the login grace time",
            };
            tracing::warn!(
                %peer,
                "source penalised for {why}: its connections are refused for {}s",
                left.as_secs()
            );
        }
    }
}

async fn connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    via: Option<SocketAddr>,
    admission: Admission,
    accepted: Instant,
) {
    let _ = stream.set_nodelay(true);
    let grace = shared.login_grace;
    let deadline = (!grace.is_zero()).then(|| accepted + grace);
    // A second descriptor of the socket, to shut it down when the grace
    // time runs out whatever russh's session loop is waiting for (a client
    // that stalls mid-handshake or stops reading). Dropped at login.
    let killer = match deadline {
        Some(_) => rustix::io::dup(&stream).ok(),
        None => None,
    };
    let _counted = shared.metrics.as_ref().map(|m| m.connection());
    let logged_in = Arc::new(LoggedIn::default());
    let _logout = LogoutLine {
        logged_in: logged_in.clone(),
        peer,
    };
    let socket = rustix::io::dup(&stream)
        .ok()
        .map(|fd| Arc::new(PeerSocket(fd)));
    let activity = Activity::new();
    let handler = Conn {
        shared: shared.clone(),
        activity: activity.clone(),
        socket: socket.clone(),
        peer,
        via,
        attempt: None,
        user: String::new(),
        login: None,
        user_slot: None,
        over_limit: None,
        channels: HashMap::new(),
        open_channels: Arc::new(AtomicUsize::new(0)),
        logged_in: logged_in.clone(),
        admission,
    };
    let Some(russh_cfg) = shared.control.russh() else {
        return;
    };
    let start = russh::server::run_stream(russh_cfg, stream, handler);
    let started = match deadline {
        Some(d) => match tokio::time::timeout_at(d, start).await {
            Ok(r) => r,
            Err(_) => {
                // No version line in time: dropping the future closes it.
                tracing::info!(%peer, "no SSH version line within {grace:?}; disconnecting");
                penalise(&shared, peer, Offence::GraceExceeded);
                return;
            }
        },
        None => start.await,
    };
    let session = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, "SSH handshake failed: {e}");
            penalise(&shared, peer, Offence::NoAuth);
            return;
        }
    };
    let kill_socket = socket.clone();
    let idle_watch = (!shared.idle_timeout.is_zero()).then(|| {
        let handle = session.handle();
        let limit = shared.idle_timeout;
        tokio::spawn(async move {
            activity.idle(limit).await;
            tracing::info!(%peer, "idle for {limit:?}; disconnecting");
            hang_up(
                &handle,
                "idle timeout exceeded",
                socket.as_ref().map(|s| &s.0),
            )
            .await;
        })
    });
    let killer_task = {
        let handle = session.handle();
        let kill = logged_in.kill.clone();
        let socket = kill_socket;
        tokio::spawn(async move {
            kill.notified().await;
            tracing::info!(%peer, "disconnected by the administrator");
            hang_up(
                &handle,
                "disconnected by the administrator",
                socket.as_ref().map(|s| &s.0),
            )
            .await;
        })
    };
    let handle = session.handle();
    let watchdog = deadline.map(|d| {
        let logged_in = logged_in.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(d) => {}
                _ = logged_in.notify.notified() => {}
            }
            if logged_in.flag.load(Ordering::Acquire) {
                return;
            }
            tracing::info!(%peer, "no login within {grace:?}; disconnecting");
            logged_in.grace_out.store(true, Ordering::Release);
            hang_up(&handle, "login grace time exceeded", killer.as_ref()).await;
        })
    });
    match session.await {
        Err(russh::Error::NoCommonAlgo { kind, theirs, .. }) => {
            log_no_common_algorithm(&shared.algorithms, peer, kind, &theirs)
        }
        Err(russh::Error::KeepaliveTimeout) => {
            tracing::info!(%peer, "client not answering keepalives; disconnected")
        }
        Err(e) => tracing::debug!(%peer, "connection ended: {e}"),
        Ok(()) => {}
    }
    killer_task.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(w) = idle_watch {
        w.abort();
    }
    if let Some(what) = logged_in.offence() {
        penalise(&shared, peer, what);
    }
}

/// Writes a connection's logout line when it ends, however it ends (the
/// client leaving, a timeout, the server shutting down).
struct LogoutLine {
    logged_in: Arc<LoggedIn>,
    peer: SocketAddr,
}

impl Drop for LogoutLine {
    fn drop(&mut self) {
        let who = self
            .logged_in
            .who
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.logged_in
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((user, method, at)) = who {
            let (read, written) = self.logged_in.traffic.totals();
            tracing::info!(
                user = %user,
                ip = %self.peer.ip(),
                port = self.peer.port(),
                method,
                seconds = at.elapsed().as_secs_f64(),
                bytes_read = read,
                bytes_written = written,
                "SSH logout"
            );
        }
    }
}

/// Disconnect saying `why`, politely first (given a second: a client that
/// does not read never takes the message), then shut the socket down
/// under the session, which may be unable to send.
async fn hang_up(handle: &russh::server::Handle, why: &str, socket: Option<impl rustix::fd::AsFd>) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        handle.disconnect(russh::Disconnect::ByApplication, why.into(), String::new()),
    )
    .await;
    if let Some(fd) = socket {
        let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
    }
}

/// A client that shares no algorithm with us: say which, and what the
/// operator could turn on for it.
fn log_no_common_algorithm(
    algorithms: &Algorithms,
    peer: SocketAddr,
    kind: russh::AlgorithmKind,
    theirs: &[String],
) {
    let list = match kind {
        russh::AlgorithmKind::Kex => List::Kex,
        russh::AlgorithmKind::Key => List::HostKeys,
        russh::AlgorithmKind::Cipher => List::Ciphers,
        russh::AlgorithmKind::Mac => List::Macs,
        russh::AlgorithmKind::Compression => {
            tracing::info!(%peer, "SSH negotiation failed: no common compression; client offers {}", theirs.join(","));
            return;
        }
    };
    // The ext-info and strict-kex markers are no algorithms.
    let theirs: Vec<String> = theirs
        .iter()
        .filter(|t| !t.starts_with("ext-info-") && !t.starts_with("kex-strict-"))
        .cloned()
        .collect();
    let hint = match algorithms.could_enable(list, &theirs).as_slice() {
        [] => String::new(),
        can => format!(
            "; {} +{} would allow it (legacy, off by default)",
            list.flag(),
            can.join(",")
        ),
    };
    tracing::info!(
        %peer,
        "SSH negotiation failed: no common {} algorithm; client offers {}{hint}",
        list.what(),
        theirs.join(","),
    );
}

/// One connection's state.
struct Conn {
    shared: Arc<Shared>,
    /// What keeps this connection from being idle.
    activity: Arc<Activity>,
    /// The connection's socket, to see when the client has closed it.
    socket: Option<Arc<PeerSocket>>,
    peer: SocketAddr,
    /// The load balancer the connection came through (its PROXY header
    /// gave `peer`).
    via: Option<SocketAddr>,
    /// The method of the authentication attempt in progress, for the log.
    attempt: Option<&'static str>,
    user: String,
    /// What the login gets, once logged in (its sessions hold it too).
    login: Option<Arc<Login>>,
    /// This connection's place in its user's count, once logged in.
    user_slot: Option<KeyedSlot>,
    /// The credentials were right but the user had this many connections
    /// already: disconnected once the client is told it is logged in.
    over_limit: Option<usize>,
    /// Session channels opened but not yet given a subsystem or command.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Session channels open now: counted at open, released when an
    /// unused channel closes or when its subsystem or command ends.
    open_channels: Arc<AtomicUsize>,
    logged_in: Arc<LoggedIn>,
    /// This connection's place at the gate (a startup until login).
    admission: Admission,
}

/// Releases one channel slot when dropped (at the end of the channel's
/// task, however it ends).
struct ChannelSlot(Arc<AtomicUsize>);

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Conn {
    /// The client's address for the log, with the balancer it came
    /// through.
    fn source(&self) -> String {
        match self.via {
            Some(via) => format!("{} via {via}", self.peer),
            None => self.peer.to_string(),
        }
    }

    fn reject(&self, user: &str, method: &str) -> Auth {
        // NOTICE (shown by default): what fail2ban reads. The address
        // comes first, before anything the client chose.
        tracing::warn!(
            ip = %self.peer.ip(),
            port = self.peer.port(),
            user = %user,
            method = %method,
            via = %self.via.map(|v| v.to_string()).unwrap_or_default(),
            "SSH login failed"
        );
        self.retry()
    }

    fn refuse_algorithm(&self, user: &str, alg: &russh::keys::Algorithm) -> Auth {
        let name = alg.as_str();
        let legacy = List::Pubkeys.supported().any(|n| n == name);
        let hint = if legacy {
            format!(
                " (off by default; {} +{name} allows it)",
                List::Pubkeys.flag()
            )
        } else {
            String::new()
        };
        self.reject(
            user,
            &format!("publickey: signature algorithm {name} not accepted{hint}"),
        )
    }

    /// A rejection that keeps every configured method on offer, so a
    /// mistyped password can be tried again (up to the attempt limit).
    fn retry(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(self.shared.methods.clone()),
            partial_success: false,
        }
    }

    /// Whether this connection's source is refused by the penalties now.
    fn penalised(&self) -> bool {
        self.shared.penalties.as_ref().is_some_and(|p| {
            p.refused_for(self.peer.ip(), std::time::Instant::now())
                .is_some()
        })
    }

    /// Ask the authenticator; a login it gives is kept for the channels.
    /// `method` names the SSH method for logs.
    async fn try_login(
        &mut self,
        user: &str,
        credential: Credential<'_>,
        method: &'static str,
    ) -> Auth {
        self.activity.touch();
        self.logged_in.tried.store(true, Ordering::Release);
        if self.penalised() {
            // Not checked at all: a guesser on connections opened before
            // the penalty learns nothing more, and the proxy is not asked.
            tracing::info!(
                peer = %self.peer,
                "SSH login of {user:?} ({method}) refused unchecked: the source is penalised"
            );
            return self.retry();
        }
        let secret = matches!(credential, Credential::Password(_));
        let result = self.shared.auth.login(user, credential, self.peer).await;
        if let Some(m) = &self.shared.metrics {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(Refusal::BadCredentials) => "failed",
                Err(Refusal::Unavailable(_)) => "unavailable",
            };
            m.login(method_label(method), outcome);
        }
        match result {
            Ok(login) => {
                self.user = user.to_string();
                self.attempt = Some(method);
                let limit = login
                    .policy
                    .max_connections
                    .unwrap_or(self.shared.max_per_user);
                match self.shared.users.take(user, limit) {
                    Ok(slot) => {
                        self.user_slot = Some(slot);
                        self.login = Some(Arc::new(login));
                    }
                    // Accepted, to be told why it is disconnected (a
                    // rejection would read as a wrong password); with no
                    // login kept, no channel is served meanwhile.
                    Err(n) => self.over_limit = Some(n),
                }
                Auth::Accept
            }
            Err(Refusal::BadCredentials) => {
                if secret {
                    // Each wrong password counts at once, so guesses spread
                    // over many parallel connections add up.
                    self.logged_in.charged.store(true, Ordering::Release);
                    penalise(&self.shared, self.peer, Offence::AuthFail);
                }
                self.reject(user, method)
            }
            Err(Refusal::Unavailable(why)) => {
                tracing::warn!(
                    peer = %self.peer,
                    "SSH login of {user:?} ({method}) refused: its remote cannot be served: {why}"
                );
                self.retry()
            }
        }
    }

    /// The slot of a channel taken out of `channels` to be used.
    fn slot(&self) -> ChannelSlot {
        ChannelSlot(self.open_channels.clone())
    }

    fn refuse_channel_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
        what: &str,
    ) -> Result<(), russh::Error> {
        tracing::debug!(peer = %self.peer, "refused {what} request");
        if self.channels.remove(&channel).is_some() {
            drop(self.slot());
        }
        session.channel_success(channel)?;
        let msg = format!("ferry: {what} is not available on this server (SFTP only)\n");
        session.extended_data(channel, 1, Bytes::from(msg))?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn lookup_dh_gex_group(
        &mut self,
        gex: &russh::client::GexParams,
    ) -> Result<Option<russh::kex::dh::groups::DhGroup>, Self::Error> {
        Ok(crate::algorithms::gex_group(
            gex.min_group_size(),
            gex.preferred_group_size(),
            gex.max_group_size(),
        ))
    }

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        if self.shared.auth.methods().none {
            return Ok(self.try_login(user, Credential::None, "none").await);
        }
        // The usual first probe: not logged as a failure.
        Ok(self.retry())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self
            .try_login(user, Credential::Password(password), "password")
            .await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if !self.shared.auth.methods().password {
            return Ok(Auth::reject());
        }
        let Some(mut response) = response else {
            // One prompt, not echoed: the password.
            return Ok(Auth::Partial {
                name: Cow::Borrowed(""),
                instructions: Cow::Borrowed(""),
                prompts: Cow::Owned(vec![(Cow::Borrowed("Password: "), false)]),
            });
        };
        let Some(answer) = response.next() else {
            return Ok(self.reject(user, "keyboard-interactive"));
        };
        let Ok(password) = std::str::from_utf8(&answer) else {
            return Ok(self.reject(user, "keyboard-interactive"));
        };
        let password = password.to_string();
        Ok(self
            .try_login(
                user,
                Credential::Password(&password),
                "keyboard-interactive",
            )
            .await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.logged_in.tried.store(true, Ordering::Release);
        if !self.shared.algorithms.accepts_pubkey(offer.algorithm) {
            return Ok(self.refuse_algorithm(user, offer.algorithm));
        }
        if self.penalised() {
            // Not even the auth proxy is asked for a penalised source.
            return Ok(Auth::reject());
        }
        if self
            .shared
            .auth
            .key_acceptable(user, offer.public_key, self.peer)
            .await
        {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.shared.algorithms.accepts_pubkey(key.algorithm) {
            return Ok(self.refuse_algorithm(user, key.algorithm));
        }
        Ok(self
            .try_login(user, Credential::PublicKey(key.public_key), "publickey")
            .await)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.logged_in.flag.store(true, Ordering::Release);
        self.logged_in.notify.notify_one();
        self.admission.logged_in();
        let client = String::from_utf8_lossy(session.remote_sshid()).into_owned();
        if let Some(n) = self.over_limit {
            if let Some(m) = &self.shared.metrics {
                m.refused("max_connections_per_user");
            }
            let conns = if n == 1 { "connection" } else { "connections" };
            tracing::info!(
                "SSH login from {} using {} ({}, {}) refused: {n} {conns} of this user open already; disconnecting",
                Printable(&self.user),
                Printable(&client),
                self.source(),
                self.attempt.unwrap_or("?")
            );
            session.disconnect(
                russh::Disconnect::TooManyConnections,
                &format!("too many connections for this user ({n} open already)"),
                "",
            )?;
            return Ok(());
        }
        let served = self
            .login
            .as_ref()
            .map(|l| l.describe.as_str())
            .unwrap_or("?");
        let method = self.attempt.unwrap_or("?");
        tracing::info!(
            user = %self.user,
            ip = %self.peer.ip(),
            port = self.peer.port(),
            method,
            client = %client,
            via = %self.via.map(|v| v.to_string()).unwrap_or_default(),
            remote = %served,
            "SSH login"
        );
        *self.logged_in.who.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((self.user.clone(), method, Instant::now()));
        let info = crate::control::SessionInfo {
            id: 0,
            user: self.user.clone(),
            addr: self.peer,
            via: self.via,
            method,
            client: client.to_string(),
            started: std::time::SystemTime::now(),
            bytes_read: 0,
            bytes_written: 0,
            open_files: 0,
        };
        let registered = self.shared.control.register(
            info,
            self.logged_in.traffic.clone(),
            self.logged_in.kill.clone(),
        );
        *self
            .logged_in
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((
            registered,
            self.shared.metrics.as_ref().map(|m| m.session()),
        ));
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.open_channels.load(Ordering::Acquire) >= self.shared.max_channels {
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        }
        self.activity.touch();
        self.open_channels.fetch_add(1, Ordering::AcqRel);
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A channel closed before it was used; used ones release their slot
        // when their task ends.
        if self.channels.remove(&channel).is_some() {
            drop(self.slot());
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            tracing::debug!(peer = %self.peer, "unknown subsystem {name:?}");
            return session.channel_failure(channel);
        }
        let Some(ch) = self.channels.remove(&channel) else {
            return session.channel_failure(channel);
        };
        let Some(login) = self.login.clone() else {
            drop(self.slot());
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        self.activity.touch();
        let mut opts = (*self.shared.sftp).clone();
        opts.activity = Some(self.activity.clone());
        opts.user = login.user.clone();
        opts.read_only = login.policy.read_only;
        opts.peer = Some(self.peer);
        opts.traffic = self.logged_in.traffic.clone();
        opts.metrics = self.shared.metrics.clone();
        opts.user_bwlimit = login
            .policy
            .bwlimit
            .map(|r| self.shared.user_limiter(&login.user, r));
        let peer = self.peer;
        let slot = self.slot();
        let socket = self.socket.clone();
        let activity = self.activity.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let vfs = login.vfs.vfs().clone();
            let (read, write) = ch.split();
            let input = ChannelInput {
                read,
                closed: false,
                activity: activity.clone(),
            };
            let output = ChannelOutput {
                write: Arc::new(write),
                socket,
                activity,
            };
            let closer = output.write.clone();
            match sftp::serve(vfs, Arc::new(opts), input, output).await {
                Ok(()) => tracing::debug!(%peer, "SFTP session ended"),
                Err(e) => tracing::info!(%peer, "SFTP session ended: {e}"),
            }
            let _ = closer.exit_status(0).await;
            let _ = closer.eof().await;
            let _ = closer.close().await;
        });
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(ch) = self.channels.remove(&channel) else {
            return session.channel_failure(channel);
        };
        let Some(login) = self.login.clone() else {
            drop(self.slot());
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        let line = data.to_vec();
        tracing::debug!(peer = %self.peer, "exec {:?}", line.escape_ascii().to_string());
        let slot = self.slot();
        // A command keeps the connection active until its output is sent.
        let busy = self.activity.busy();
        tokio::spawn(async move {
            let _slot = slot;
            let _busy = busy;
            let cmd = crate::exec::parse(&line);
            let (mut read, write) = ch.split();
            // A hash of a large file is not computed on for a client that
            // closed the channel or its connection meanwhile.
            let closed = async {
                loop {
                    match read.wait().await {
                        None | Some(ChannelMsg::Close) => return,
                        Some(_) => continue,
                    }
                }
            };
            let out = tokio::select! {
                out = crate::exec::run(login.vfs.vfs(), &cmd) => out,
                _ = closed => {
                    tracing::debug!("exec: the client left before the command finished");
                    return;
                }
            };
            if !out.stdout.is_empty() {
                let _ = write.data_bytes(out.stdout).await;
            }
            if !out.stderr.is_empty() {
                let _ = write.extended_data_bytes(1, out.stderr).await;
            }
            let _ = write.exit_status(out.status).await;
            let _ = write.eof().await;
            let _ = write.close().await;
        });
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel_request(channel, session, "shell")
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

struct ChannelInput {
    read: russh::ChannelReadHalf,
    /// The channel was closed, or the connection is gone.
    closed: bool,
    activity: Arc<Activity>,
}

impl sftp::Input for ChannelInput {
    async fn recv(&mut self) -> Option<Bytes> {
        loop {
            match self.read.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    self.activity.touch();
                    return Some(data);
                }
                Some(ChannelMsg::Eof) => return None,
                Some(ChannelMsg::Close) | None => {
                    self.closed = true;
                    return None;
                }
                Some(_) => continue,
            }
        }
    }

    async fn hung_up(&mut self) {
        while !self.closed {
            if let Some(ChannelMsg::Close) | None = self.read.wait().await {
                self.closed = true;
            }
        }
    }
}

struct ChannelOutput {
    write: Arc<russh::ChannelWriteHalf<Msg>>,
    socket: Option<Arc<PeerSocket>>,
    activity: Arc<Activity>,
}

/// How often a reply that waits for the client's window checks whether
/// the client has closed its connection.
const PEER_CHECK: Duration = Duration::from_secs(1);

impl sftp::Output for ChannelOutput {
    async fn send(&mut self, data: Bytes) -> std::io::Result<()> {
        let send = self.write.data_bytes(data);
        tokio::pin!(send);
        loop {
            tokio::select! {
                biased;
                r = &mut send => {
                    // Handed to the transport: the client made room for it.
                    self.activity.touch();
                    return r.map_err(std::io::Error::other);
                }
                // russh waits for window forever, also once the connection
                // is gone (nothing wakes it); and while a session takes no
                // more input, russh does not read the socket to see it go.
                _ = tokio::time::sleep(PEER_CHECK) => {
                    if self.socket.as_ref().is_some_and(|s| s.closed()) {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "the client closed its connection",
                        ));
                    }
                }
            }
        }
    }
}

/// A second descriptor of a connection's socket.
struct PeerSocket(std::os::fd::OwnedFd);

impl PeerSocket {
    /// Has the client shut its side (a FIN or a reset), whatever is still
    /// unread before it? Such a client can never open its window again.
    fn closed(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.0, PollFlags::RDHUP)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
            && fds[0]
                .revents()
                .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
    }
}

/// A login method's label in the metrics.
fn method_label(method: &str) -> &'static str {
    match method {
        "password" => "password",
        "keyboard-interactive" => "keyboard-interactive",
        "none" => "none",
        m if m.starts_with("publickey") => "publickey",
        _ => "other",
    }
}

#[cfg(test)]
mod printable_tests {
    use super::Printable;

    #[test]
    fn control_characters_are_escaped() {
        let forged = "bob\n2026-01-01T00:00:00Z  INFO SSH login from root\r\u{1b}[2J\u{2028}\\";
        let shown = Printable(forged).to_string();
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{2028}'),
            "{shown}"
        );
        assert_eq!(
            shown,
            "bob\\n2026-01-01T00:00:00Z  INFO SSH login from root\\r\\u{1b}[2J\\u{2028}\\\\"
        );
        assert_eq!(Printable("ünïcödé user").to_string(), "ünïcödé user");
    }
}
