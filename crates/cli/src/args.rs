//! The command line, as clap parses it. Strings become typed values in
//! [`crate::config`], once.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Serve any storage over SFTP.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// Config file (rclone.conf format) [default: $FERRY_CONFIG, else
    /// ~/.config/ferry/ferry.conf, else ~/.config/rclone/rclone.conf].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Top-level commands.
// Parsed once at start-up: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a remote over a protocol.
    Serve {
        /// The protocol.
        #[command(subcommand)]
        protocol: Protocol,
    },
    /// Show the version (as `rclone version` does, for tools that probe it).
    Version,
    /// Obscure a password for use in the config file or a connection string.
    Obscure {
        /// The password; `-` reads one line from standard input.
        #[arg(allow_hyphen_values = true)]
        password: String,
    },
    /// Reveal an obscured password.
    Reveal {
        /// The obscured value (base64url, so it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        obscured: String,
    },
    /// List the remotes of the config file and the environment.
    Listremotes,
    /// Inspect the configuration.
    Config {
        /// What to show.
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// `ferry config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the configuration (all remotes, or one), secrets redacted.
    Show {
        /// The remote to show.
        remote: Option<String>,
    },
}

/// Protocols `serve` speaks.
#[derive(Debug, Subcommand)]
pub enum Protocol {
    /// Serve a directory over SFTP (an SSH server with only the SFTP
    /// subsystem).
    #[command(after_help = SFTP_AFTER_HELP)]
    Sftp(SftpArgs),
}

const SFTP_AFTER_HELP: &str = "\
Authentication: at least one of --user/--pass, --authorized-keys (a readable
~/.ssh/authorized_keys counts) or --no-auth is required.

Every flag can also be set in the environment as FERRY_<FLAG>, for example
FERRY_PASS=secret instead of --pass secret (which other users can see in ps).

Host keys: without --key, Ed25519, ECDSA and RSA keys are generated once into
<cache-dir>/serve-sftp/ and reused.

Connect with: sftp -P 2022 USER@localhost";

/// `ferry serve sftp` flags; names, defaults and meanings as rclone's.
#[derive(Debug, Args)]
pub struct SftpArgs {
    /// What to serve: a local directory, `REMOTE:PATH` from the config
    /// file, or an on-the-fly `:TYPE,key=value:PATH`.
    /// Not given with `--auth-proxy` (the proxy names each login's remote).
    #[arg(value_name = "REMOTE:PATH", required_unless_present = "auth_proxy")]
    pub path: Option<String>,

    /// IPaddress:Port or :Port to bind the server to.
    #[arg(long, env = "FERRY_ADDR", default_value = "localhost:2022")]
    pub addr: String,

    /// User name for password authentication.
    #[arg(long, env = "FERRY_USER", default_value = "")]
    pub user: String,

    /// Password for password authentication.
    #[arg(long, env = "FERRY_PASS", default_value = "", hide_env_values = true)]
    pub pass: String,

    /// Authorized keys file (a missing default file is skipped).
    #[arg(
        long,
        env = "FERRY_AUTHORIZED_KEYS",
        default_value = "~/.ssh/authorized_keys"
    )]
    pub authorized_keys: String,

    /// Allow connections with no authentication.
    #[arg(long, env = "FERRY_NO_AUTH")]
    pub no_auth: bool,

    /// A program ("PROG ARGS", run without a shell) or an http(s):// URL
    /// that checks each login and names the remote it is served; no
    /// REMOTE:PATH with it (docs/auth-proxy.md).
    #[arg(long, env = "FERRY_AUTH_PROXY", value_name = "PROG")]
    pub auth_proxy: Option<String>,

    /// A call of the auth proxy that takes longer is killed and its login
    /// refused.
    #[arg(
        long,
        env = "FERRY_AUTH_PROXY_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub auth_proxy_timeout: String,

    /// Calls of the auth proxy run at once (more logins wait for a turn).
    #[arg(
        long,
        env = "FERRY_AUTH_PROXY_CONCURRENCY",
        value_name = "N",
        default_value_t = 8
    )]
    pub auth_proxy_concurrency: usize,

    /// Testing only: how long an auth proxy answer is kept after its last
    /// use (5m).
    #[arg(
        long,
        env = "FERRY_DEBUG_AUTH_PROXY_CACHE_TIME",
        value_name = "DURATION",
        hide = true
    )]
    pub debug_auth_proxy_cache_time: Option<String>,

    /// SSH private host key file (can be repeated; generated if not given).
    #[arg(long, env = "FERRY_KEY")]
    pub key: Vec<PathBuf>,

    /// Directory for host keys and caches [default: $XDG_CACHE_HOME/ferry
    /// or ~/.cache/ferry].
    #[arg(long, env = "FERRY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Speak SFTP on standard input and output (no SSH, no auth), for an
    /// OpenSSH `Subsystem sftp` line, a `command=` in authorized_keys, or
    /// `sftp -D`.
    #[arg(long, env = "FERRY_STDIO")]
    pub stdio: bool,

    /// Don't compute or offer checksums (the md5sum/sha1sum exec commands
    /// answer "not supported").
    #[arg(long, env = "FERRY_NO_CHECKSUM")]
    pub no_checksum: bool,

    /// Bandwidth limit in KiB/s, or use suffix B|K|M|G|T|P, `TX:RX` (TX:
    /// uploads to the remote, RX: downloads), or a timetable
    /// ("08:00,512k 12:00,10M Mon-23:00,off"); off: none. SIGUSR2 toggles
    /// it.
    #[arg(
        long,
        env = "FERRY_BWLIMIT",
        value_name = "RATE",
        default_value = "off"
    )]
    pub bwlimit: String,

    /// Bandwidth limit per file, in --bwlimit's syntax.
    #[arg(
        long,
        env = "FERRY_BWLIMIT_FILE",
        value_name = "RATE",
        default_value = "off"
    )]
    pub bwlimit_file: String,

    /// Number of low level retries of temporary backend failures.
    #[arg(long, env = "FERRY_LOW_LEVEL_RETRIES", default_value_t = 10)]
    pub low_level_retries: u32,

    /// Only allow read-only access.
    #[arg(long, env = "FERRY_READ_ONLY")]
    pub read_only: bool,

    /// Don't read/write the modification time (can speed things up).
    #[arg(long, env = "FERRY_NO_MODTIME")]
    pub no_modtime: bool,

    /// Directory permissions, octal (shown when the storage keeps none,
    /// or always when given) [default: 0777].
    #[arg(long, env = "FERRY_DIR_PERMS", value_name = "PERMS")]
    pub dir_perms: Option<String>,

    /// File permissions, octal (shown when the storage keeps none, or
    /// always when given) [default: 0666].
    #[arg(long, env = "FERRY_FILE_PERMS", value_name = "PERMS")]
    pub file_perms: Option<String>,

    /// Override the permission bits set by the filesystem, octal
    /// [default: the process umask].
    #[arg(long, env = "FERRY_UMASK")]
    pub umask: Option<String>,

    /// Keep the setuid, setgid and sticky bits clients set (chmod, or the
    /// mode of a new file or directory); without it they are cleared.
    #[arg(long, env = "FERRY_ALLOW_SPECIAL_BITS")]
    pub allow_special_bits: bool,

    /// Override the uid field set by the filesystem.
    #[arg(long, env = "FERRY_UID")]
    pub uid: Option<u32>,

    /// Override the gid field set by the filesystem.
    #[arg(long, env = "FERRY_GID")]
    pub gid: Option<u32>,

    /// Time to cache directory entries for.
    #[arg(
        long,
        env = "FERRY_DIR_CACHE_TIME",
        default_value = "5m",
        value_name = "DURATION"
    )]
    pub dir_cache_time: String,

    /// Time to wait between polling for changes; 0 turns it off. The local
    /// backend reports changes at once (inotify) while this is not 0.
    #[arg(
        long,
        env = "FERRY_POLL_INTERVAL",
        default_value = "1m",
        value_name = "DURATION"
    )]
    pub poll_interval: String,

    /// In-memory read-ahead per open file on network remotes (0 turns it
    /// off); a bare number is KiB, as in rclone.
    #[arg(
        long,
        env = "FERRY_BUFFER_SIZE",
        default_value = "16Mi",
        value_name = "SIZE"
    )]
    pub buffer_size: String,

    /// The most memory read-ahead buffers (--buffer-size) may hold, all
    /// open files together. `off` (rclone's default): a quarter of the
    /// machine's memory, at most 4Gi. Past it, files read no further ahead
    /// than their clients ask; no read fails or waits for it.
    #[arg(
        long,
        env = "FERRY_MAX_BUFFER_MEMORY",
        default_value = "off",
        value_name = "SIZE"
    )]
    pub max_buffer_memory: String,

    /// File caching: off (stream reads and writes), minimal (read+write
    /// opens through the disk cache), writes (every writing open through
    /// the cache, uploaded after --vfs-write-back) or full (reads too).
    #[arg(
        long,
        env = "FERRY_VFS_CACHE_MODE",
        default_value = "off",
        value_name = "MODE"
    )]
    pub vfs_cache_mode: String,

    /// Time after the last close of a changed file before it is uploaded.
    #[arg(
        long,
        env = "FERRY_VFS_WRITE_BACK",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub vfs_write_back: String,

    /// Uploads from the file cache running at once.
    #[arg(long, env = "FERRY_TRANSFERS", default_value_t = 4, value_name = "N")]
    pub transfers: usize,

    /// Unused files are dropped from the cache after this long.
    #[arg(
        long,
        env = "FERRY_VFS_CACHE_MAX_AGE",
        default_value = "1h",
        value_name = "DURATION"
    )]
    pub vfs_cache_max_age: String,

    /// The most the file cache may hold (unused files beyond it are
    /// dropped, least recently used first; open and changed files are
    /// kept). `off` for no limit.
    #[arg(
        long,
        env = "FERRY_VFS_CACHE_MAX_SIZE",
        default_value = "off",
        value_name = "SIZE"
    )]
    pub vfs_cache_max_size: String,

    /// Drop unused cached files while the cache's disk has less free than
    /// this. `off` for no limit.
    #[arg(
        long,
        env = "FERRY_VFS_CACHE_MIN_FREE_SPACE",
        default_value = "off",
        value_name = "SIZE"
    )]
    pub vfs_cache_min_free_space: String,

    /// How often the file cache is cleaned.
    #[arg(
        long,
        env = "FERRY_VFS_CACHE_POLL_INTERVAL",
        default_value = "1m",
        value_name = "DURATION"
    )]
    pub vfs_cache_poll_interval: String,

    /// Extra read-ahead onto disk in full cache mode (on top of
    /// --buffer-size).
    #[arg(
        long,
        env = "FERRY_VFS_READ_AHEAD",
        default_value = "0",
        value_name = "SIZE"
    )]
    pub vfs_read_ahead: String,

    /// Fingerprint cached files by size and modification time only (Ferry
    /// never hashes for fingerprints, so this is always the case).
    #[arg(long, env = "FERRY_VFS_FAST_FINGERPRINT")]
    pub vfs_fast_fingerprint: bool,

    /// Size of the first ranged read request of a streamed file.
    #[arg(
        long,
        env = "FERRY_VFS_READ_CHUNK_SIZE",
        default_value = "128Mi",
        value_name = "SIZE"
    )]
    pub vfs_read_chunk_size: String,

    /// Read requests double in size up to this (`off`: no limit).
    #[arg(
        long,
        env = "FERRY_VFS_READ_CHUNK_SIZE_LIMIT",
        default_value = "off",
        value_name = "SIZE"
    )]
    pub vfs_read_chunk_size_limit: String,

    /// Read chunks from this many streams in parallel (0: one sequential
    /// stream with doubling chunks).
    #[arg(
        long,
        env = "FERRY_VFS_READ_CHUNK_STREAMS",
        default_value_t = 0,
        value_name = "N"
    )]
    pub vfs_read_chunk_streams: usize,

    /// Refuse reads that jump backwards or far ahead in a streamed file,
    /// instead of starting a new ranged read.
    #[arg(long, env = "FERRY_NO_SEEK")]
    pub no_seek: bool,

    /// Accepted for rclone compatibility: out-of-order reads wait in
    /// Ferry's read-ahead instead.
    #[arg(
        long,
        env = "FERRY_VFS_READ_WAIT",
        default_value = "20ms",
        value_name = "DURATION",
        hide = true
    )]
    pub vfs_read_wait: String,

    /// Accepted for rclone compatibility: out-of-order writes are reordered
    /// in a 64 MiB window instead.
    #[arg(
        long,
        env = "FERRY_VFS_WRITE_WAIT",
        default_value = "1s",
        value_name = "DURATION",
        hide = true
    )]
    pub vfs_write_wait: String,

    /// Testing only: add this delay to every request to the backend, to
    /// see how Ferry behaves on a slow store.
    #[arg(
        long,
        env = "FERRY_DEBUG_BACKEND_LATENCY",
        value_name = "DURATION",
        hide = true
    )]
    pub debug_backend_latency: Option<String>,

    /// Testing only: make this share of backend requests fail, lose their
    /// answer, be slow or break mid-stream (`5%`, `0.05`, `5%,seed=7`).
    #[arg(
        long,
        env = "FERRY_DEBUG_BACKEND_FAULTS",
        value_name = "RATE",
        hide = true
    )]
    pub debug_backend_faults: Option<String>,

    /// SSH key exchange algorithms, in OpenSSH's syntax: `+a,b` adds to the
    /// defaults (e.g. the legacy SHA-1 `diffie-hellman-group14-sha1`), `-a`
    /// removes, `^a` puts first, a plain list replaces. Repeatable.
    #[arg(
        long,
        env = "FERRY_SSH_KEX",
        value_name = "LIST",
        allow_hyphen_values = true
    )]
    pub ssh_kex: Vec<String>,

    /// SSH ciphers, in OpenSSH's syntax (see --ssh-kex); `+aes128-cbc` and
    /// friends add the legacy CBC ciphers.
    #[arg(
        long,
        env = "FERRY_SSH_CIPHERS",
        value_name = "LIST",
        allow_hyphen_values = true
    )]
    pub ssh_ciphers: Vec<String>,

    /// SSH MACs, in OpenSSH's syntax (see --ssh-kex); `+hmac-sha1` adds the
    /// legacy SHA-1 MAC.
    #[arg(
        long,
        env = "FERRY_SSH_MACS",
        value_name = "LIST",
        allow_hyphen_values = true
    )]
    pub ssh_macs: Vec<String>,

    /// Host key signature algorithms, in OpenSSH's syntax (see --ssh-kex);
    /// `+ssh-rsa` lets clients that know only SHA-1 RSA signatures check an
    /// RSA host key.
    #[arg(
        long,
        env = "FERRY_SSH_HOST_KEY_ALGORITHMS",
        value_name = "LIST",
        allow_hyphen_values = true
    )]
    pub ssh_host_key_algorithms: Vec<String>,

    /// Signature algorithms accepted for public-key logins, in OpenSSH's
    /// syntax (see --ssh-kex); `+ssh-rsa` accepts SHA-1 RSA signatures from
    /// old clients.
    #[arg(
        long,
        env = "FERRY_SSH_PUBKEY_ALGORITHMS",
        value_name = "LIST",
        allow_hyphen_values = true
    )]
    pub ssh_pubkey_algorithms: Vec<String>,

    /// Time a connection has from accept to a successful login, version
    /// line and key exchange included (sshd's LoginGraceTime); 0 for no
    /// limit.
    #[arg(
        long,
        env = "FERRY_LOGIN_GRACE_TIME",
        value_name = "DURATION",
        default_value = "2m"
    )]
    pub login_grace_time: String,

    /// Sessions (SFTP or exec channels) open at once on one connection, as
    /// sshd's MaxSessions; more are refused.
    #[arg(
        long,
        env = "FERRY_MAX_SESSIONS",
        value_name = "N",
        default_value_t = 10
    )]
    pub max_sessions: usize,

    /// Send a keepalive after this long without hearing from the client
    /// (sshd's ClientAliveInterval); 0 for never.
    #[arg(
        long,
        env = "FERRY_CLIENT_ALIVE_INTERVAL",
        value_name = "DURATION",
        default_value = "0"
    )]
    pub client_alive_interval: String,

    /// Keepalives left unanswered before the connection is closed (sshd's
    /// ClientAliveCountMax); only with --client-alive-interval.
    #[arg(
        long,
        env = "FERRY_CLIENT_ALIVE_COUNT_MAX",
        value_name = "N",
        default_value_t = 3
    )]
    pub client_alive_count_max: usize,

    /// Disconnect a connection after this long without activity (SFTP
    /// requests or data, exec commands, channels opened); SSH keepalives
    /// do not count. As SFTPGo's idle_timeout; 0 for never.
    #[arg(
        long,
        env = "FERRY_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "0"
    )]
    pub idle_timeout: String,

    /// Connections open at once, logged in or not; more are refused at
    /// accept with a one-line message.
    #[arg(
        long,
        env = "FERRY_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 1024
    )]
    pub max_connections: usize,

    /// Connections one user may have logged in at once; one more is
    /// disconnected after its login with "too many connections for this
    /// user". As SFTPGo's max_sessions; 0 for no limit (an auth proxy's
    /// `_max_connections` sets it per login).
    #[arg(
        long,
        env = "FERRY_MAX_CONNECTIONS_PER_USER",
        value_name = "N",
        default_value_t = 0
    )]
    pub max_connections_per_user: usize,

    /// Connections not yet logged in, all sources together, as sshd's
    /// MaxStartups: `start:rate:full` refuses rate% of new ones from start
    /// on, rising to all at full; `N` refuses all beyond N.
    #[arg(
        long,
        env = "FERRY_MAX_STARTUPS",
        value_name = "START:RATE:FULL",
        default_value = "64:30:256"
    )]
    pub max_startups: String,

    /// Connections not yet logged in from one source address block (see
    /// --per-source-netblock-size); 0 for no cap.
    #[arg(
        long,
        env = "FERRY_PER_SOURCE_MAX_STARTUPS",
        value_name = "N",
        default_value_t = 32
    )]
    pub per_source_max_startups: usize,

    /// Prefix lengths grouping source addresses for the per-source limits,
    /// IPv4:IPv6 (sshd's PerSourceNetBlockSize).
    #[arg(
        long,
        env = "FERRY_PER_SOURCE_NETBLOCK_SIZE",
        value_name = "V4:V6",
        default_value = "32:128"
    )]
    pub per_source_netblock_size: String,

    /// Penalties per source address block, as sshd's PerSourcePenalties:
    /// `yes` (authfail:5s noauth:1s grace-exceeded:10s min:15s max:10m
    /// max-sources:65536), `no`, or `name:value` pairs changing those. A
    /// block whose penalty reaches min is refused until it runs out.
    #[arg(
        long,
        env = "FERRY_PER_SOURCE_PENALTIES",
        value_name = "SPEC",
        default_value = "yes"
    )]
    pub per_source_penalties: String,

    /// Addresses never penalised, comma-separated `ADDR[/PREFIX]` (your
    /// monitoring, a trusted office).
    #[arg(
        long,
        env = "FERRY_PER_SOURCE_PENALTY_EXEMPT_LIST",
        value_name = "LIST",
        default_value = ""
    )]
    pub per_source_penalty_exempt_list: String,

    /// Load balancers (HAProxy, AWS NLB, ...) that send the PROXY protocol
    /// header, comma-separated `ADDR[/PREFIX]`: connections from them must
    /// start with one (version 1 or 2), and the client address it gives is
    /// used for limits, penalties, logs and the auth proxy. Connections
    /// from other addresses are served as they are. Empty: off.
    #[arg(
        long,
        env = "FERRY_PROXY_PROTOCOL",
        value_name = "LIST",
        default_value = ""
    )]
    pub proxy_protocol: String,

    /// Print more: -v the access log (logins, transfers, changes), -vv
    /// every SFTP operation.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Log level: DEBUG, INFO, NOTICE or ERROR [default: NOTICE; -v is
    /// INFO, -vv DEBUG].
    #[arg(long, env = "FERRY_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log one JSON object per line (fields in docs/logging.md).
    #[arg(long, env = "FERRY_USE_JSON_LOG")]
    pub use_json_log: bool,

    /// Interval between printing stats, e.g. 500ms, 60s, 5m (0 to disable).
    #[arg(
        long,
        env = "FERRY_STATS",
        value_name = "DURATION",
        default_value = "1m"
    )]
    pub stats: String,

    /// Make the stats fit on one line.
    #[arg(long, env = "FERRY_STATS_ONE_LINE")]
    pub stats_one_line: bool,

    /// Enable --stats-one-line and add the current date/time.
    #[arg(long, env = "FERRY_STATS_ONE_LINE_DATE")]
    pub stats_one_line_date: bool,

    /// Enable --stats-one-line-date and use this Go layout for the date
    /// (default "2006/01/02 15:04:05 - ").
    #[arg(long, env = "FERRY_STATS_ONE_LINE_DATE_FORMAT", value_name = "LAYOUT")]
    pub stats_one_line_date_format: Option<String>,

    /// Log level to show --stats output: DEBUG, INFO, NOTICE or ERROR.
    #[arg(
        long,
        env = "FERRY_STATS_LOG_LEVEL",
        value_name = "LEVEL",
        default_value = "INFO"
    )]
    pub stats_log_level: String,

    /// Show data rate in stats as either 'bits' or 'bytes' per second.
    #[arg(
        long,
        env = "FERRY_STATS_UNIT",
        value_name = "UNIT",
        default_value = "bytes"
    )]
    pub stats_unit: String,

    /// Max file name length in stats (0 for no limit).
    #[arg(long, env = "FERRY_STATS_FILE_NAME_LENGTH", default_value_t = 45)]
    pub stats_file_name_length: usize,

    /// Log everything to this file instead of standard error.
    #[arg(long, env = "FERRY_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Which paths are served (rclone's filter flags).
    #[command(flatten, next_help_heading = "Filters (docs/filters.md)")]
    pub filter: FilterArgs,

    /// The remote-control API and the metrics page.
    #[command(flatten, next_help_heading = "Remote control and metrics (docs/rc.md)")]
    pub rc: RcArgs,
}

/// rclone's rc flags: the remote-control API (`rclone rc`) and `/metrics`.
#[derive(Debug, Args, Default, Clone)]
pub struct RcArgs {
    /// Enable the remote control server.
    #[arg(long, env = "FERRY_RC")]
    pub rc: bool,

    /// IP address:port or :port to bind the remote control server to
    /// (repeatable).
    #[arg(
        long,
        env = "FERRY_RC_ADDR",
        value_name = "ADDR",
        default_value = "localhost:5572"
    )]
    pub rc_addr: Vec<String>,

    /// User name for the remote control API's Basic auth.
    #[arg(long, env = "FERRY_RC_USER", value_name = "USER", default_value = "")]
    pub rc_user: String,

    /// Password for the remote control API's Basic auth.
    #[arg(long, env = "FERRY_RC_PASS", value_name = "PASS", default_value = "")]
    pub rc_pass: String,

    /// An htpasswd file of the remote control API's users (bcrypt, MD5
    /// or SHA1 entries).
    #[arg(long, env = "FERRY_RC_HTPASSWD", value_name = "FILE")]
    pub rc_htpasswd: Option<PathBuf>,

    /// Don't require auth for the calls that change things.
    #[arg(long, env = "FERRY_RC_NO_AUTH")]
    pub rc_no_auth: bool,

    /// TLS PEM certificate (chain) of the remote control server.
    #[arg(long, env = "FERRY_RC_CERT", value_name = "FILE")]
    pub rc_cert: Option<PathBuf>,

    /// TLS PEM private key of the remote control server.
    #[arg(long, env = "FERRY_RC_KEY", value_name = "FILE")]
    pub rc_key: Option<PathBuf>,

    /// Serve /metrics (Prometheus) on the remote control address too.
    #[arg(long, env = "FERRY_RC_ENABLE_METRICS")]
    pub rc_enable_metrics: bool,

    /// IP address:port or :port to serve /metrics (Prometheus) on, a
    /// server of its own (repeatable).
    #[arg(long, env = "FERRY_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Vec<String>,

    /// User name for the metrics server's Basic auth.
    #[arg(
        long,
        env = "FERRY_METRICS_USER",
        value_name = "USER",
        default_value = ""
    )]
    pub metrics_user: String,

    /// Password for the metrics server's Basic auth.
    #[arg(
        long,
        env = "FERRY_METRICS_PASS",
        value_name = "PASS",
        default_value = ""
    )]
    pub metrics_pass: String,

    /// An htpasswd file of the metrics server's users.
    #[arg(long, env = "FERRY_METRICS_HTPASSWD", value_name = "FILE")]
    pub metrics_htpasswd: Option<PathBuf>,

    /// TLS PEM certificate (chain) of the metrics server.
    #[arg(long, env = "FERRY_METRICS_CERT", value_name = "FILE")]
    pub metrics_cert: Option<PathBuf>,

    /// TLS PEM private key of the metrics server.
    #[arg(long, env = "FERRY_METRICS_KEY", value_name = "FILE")]
    pub metrics_key: Option<PathBuf>,
}

/// rclone's filter flags: what is served. A path they exclude is not there
/// for clients in any way; creating one is refused.
#[derive(Debug, Args, Default, Clone)]
pub struct FilterArgs {
    /// Include files matching pattern (repeatable; implies excluding the
    /// rest).
    #[arg(long, value_name = "GLOB", allow_hyphen_values = true)]
    pub include: Vec<String>,

    /// Read file include patterns from file (use - to read from stdin).
    #[arg(long, value_name = "FILE")]
    pub include_from: Vec<String>,

    /// Exclude files matching pattern (repeatable).
    #[arg(long, value_name = "GLOB", allow_hyphen_values = true)]
    pub exclude: Vec<String>,

    /// Read file exclude patterns from file (use - to read from stdin).
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Vec<String>,

    /// Add a file filtering rule: `+ GLOB`, `- GLOB` or `!` (repeatable).
    #[arg(short = 'f', long, value_name = "RULE", allow_hyphen_values = true)]
    pub filter: Vec<String>,

    /// Read file filtering rules from a file (use - to read from stdin).
    #[arg(long, value_name = "FILE")]
    pub filter_from: Vec<String>,

    /// Serve only the files listed in this file (use - to read from
    /// stdin); no other filter flag with it.
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<String>,

    /// As --files-from, each line taken as it is (no trimming, no
    /// comments).
    #[arg(long, value_name = "FILE")]
    pub files_from_raw: Vec<String>,

    /// Only serve files bigger than this in KiB or suffix B|K|M|G|T|P.
    #[arg(
        long,
        env = "FERRY_MIN_SIZE",
        value_name = "SIZE",
        default_value = "off"
    )]
    pub min_size: String,

    /// Only serve files smaller than this in KiB or suffix B|K|M|G|T|P.
    #[arg(
        long,
        env = "FERRY_MAX_SIZE",
        value_name = "SIZE",
        default_value = "off"
    )]
    pub max_size: String,

    /// Only serve files older than this in s or suffix ms|s|m|h|d|w|M|y,
    /// or a date (2006-01-02, 2006-01-02T15:04:05).
    #[arg(long, env = "FERRY_MIN_AGE", value_name = "AGE", default_value = "off")]
    pub min_age: String,

    /// Only serve files younger than this in s or suffix ms|s|m|h|d|w|M|y,
    /// or a date.
    #[arg(long, env = "FERRY_MAX_AGE", value_name = "AGE", default_value = "off")]
    pub max_age: String,

    /// Ignore case in filters (case insensitive).
    #[arg(long, env = "FERRY_IGNORE_CASE")]
    pub ignore_case: bool,

    /// Exclude directories if a file of this name is present in them
    /// (repeatable).
    #[arg(long, value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
}
