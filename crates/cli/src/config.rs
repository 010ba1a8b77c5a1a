//! Typed configuration: every flag string becomes a value here, once, with
//! a clear error naming the flag.

use std::path::{Path, PathBuf};

use ferry_server::algorithms::{Algorithms, List};
use ferry_server::auth::{parse_authorized_keys, AuthConfig};
use ferry_server::gate::GateConfig;
use ferry_server::penalty::{Cidr, PenaltyConfig};
use ferry_server::proxy::{ProxyAnswer, ProxyCommand, ProxyOptions};
use ferry_vfs::VfsOptions;

use crate::args::{FilterArgs, RcArgs, SftpArgs};

/// A configuration problem: printed as one line, exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// The storage to serve: a remote as the backend registry opens it.
pub use ferry_registry::Spec as Target;

/// The typed `serve sftp` configuration.
pub struct ServeConfig {
    /// What is served; `None` with `--auth-proxy`, where each login's
    /// answer names its remote.
    pub target: Option<Target>,
    /// The auth proxy (`--auth-proxy`).
    pub proxy: Option<ProxyOptions>,
    /// Where to listen.
    pub addr: String,
    /// Who may log in.
    pub auth: AuthConfig,
    /// Host key files, or none to use the cache.
    pub key_files: Vec<PathBuf>,
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// VFS policy.
    pub vfs: VfsOptions,
    /// The layers around the backend.
    pub layers: ferry_registry::LayerOptions,
    /// The SSH algorithms offered.
    pub algorithms: Algorithms,
    /// Connection limits at accept.
    pub gate: GateConfig,
    /// Time from accept to login (zero: no limit).
    pub login_grace: std::time::Duration,
    /// Session channels per connection.
    pub max_sessions: usize,
    /// Keepalive interval (zero: none) and unanswered keepalives allowed.
    pub client_alive: (std::time::Duration, usize),
    /// Idle time before a connection is closed (zero: never).
    pub idle_timeout: std::time::Duration,
    /// Logged-in connections per user (zero: no limit).
    pub max_connections_per_user: usize,
    /// Load balancers whose connections start with a PROXY header.
    pub proxy_protocol: Vec<Cidr>,
    /// Per-source penalties: what earns them, and who is exempt (`None`:
    /// off).
    pub penalties: Option<(PenaltyConfig, Vec<Cidr>)>,
    /// Warnings to log once logging is up.
    pub warnings: Vec<String>,
    /// The transfer statistics, and how often and how they are logged.
    pub stats: StatsConfig,
    /// The remote-control API (`--rc`), if on.
    pub rc: Option<HttpServer>,
    /// The metrics server of its own (`--metrics-addr`), if on.
    pub metrics_server: Option<HttpServer>,
    /// The metrics, when something serves them.
    pub metrics: Option<std::sync::Arc<ferry_metrics::Metrics>>,
    /// `authorized_keys` as `ferry/reload` and SIGHUP read it again
    /// (`None`: no key file in use).
    pub keys_file: Option<PathBuf>,
    /// VFS options `options/set` changed, for the VFSes opened afterwards
    /// (`None`: the flags' [`ServeConfig::vfs`]).
    pub vfs_set: std::sync::RwLock<Option<VfsOptions>>,
}

impl ServeConfig {
    /// The VFS options a VFS opened now gets.
    pub fn vfs_options(&self) -> VfsOptions {
        self.vfs_set
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| self.vfs.clone())
    }
}

/// An HTTP server of the rc crate: where it listens and how it runs.
pub struct HttpServer {
    /// Addresses to bind.
    pub addrs: Vec<String>,
    /// Auth, TLS and what it serves.
    pub opts: ferry_rc::Options,
}

/// The auth and TLS flags of an rc-style server (`--rc-*` or
/// `--metrics-*`, `prefix` says which).
fn http_server(
    prefix: &str,
    addrs: &[String],
    (user, pass): (&str, &str),
    htpasswd: Option<&Path>,
    (cert, key): (Option<&Path>, Option<&Path>),
    warnings: &mut Vec<String>,
) -> anyhow::Result<HttpServer> {
    let addrs = addrs
        .iter()
        .map(|a| listen_addr(&format!("{prefix}addr"), a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if user.is_empty() != pass.is_empty() {
        return Err(usage(format!(
            "--{prefix}user and --{prefix}pass must be given together"
        )));
    }
    let auth = match htpasswd {
        Some(path) => {
            if !user.is_empty() {
                warnings.push(format!(
                    "--{prefix}htpasswd is used; --{prefix}user and --{prefix}pass are ignored"
                ));
            }
            let text = std::fs::read_to_string(path).map_err(|e| {
                usage(format!(
                    "cannot read --{prefix}htpasswd {}: {e}",
                    path.display()
                ))
            })?;
            let h = ferry_rc::htpasswd::Htpasswd::parse(&text)
                .map_err(|e| usage(format!("--{prefix}htpasswd {}: {e}", path.display())))?;
            ferry_rc::Auth::Htpasswd(h)
        }
        None if !user.is_empty() => ferry_rc::Auth::User {
            user: user.to_string(),
            pass: pass.to_string(),
        },
        None => ferry_rc::Auth::None,
    };
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some(
            ferry_rc::tls_config(c, k)
                .map_err(|e| usage(e.replace("--rc-", &format!("--{prefix}"))))?,
        ),
        (None, None) => None,
        _ => {
            return Err(usage(format!(
                "--{prefix}cert and --{prefix}key must be given together"
            )))
        }
    };
    Ok(HttpServer {
        addrs,
        opts: ferry_rc::Options {
            auth,
            tls,
            ..Default::default()
        },
    })
}

/// `--rc*` and `--metrics-*`: the servers.
fn rc_servers(
    args: &RcArgs,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(Option<HttpServer>, Option<HttpServer>)> {
    let rc = if args.rc {
        let mut s = http_server(
            "rc-",
            &args.rc_addr,
            (&args.rc_user, &args.rc_pass),
            args.rc_htpasswd.as_deref(),
            (args.rc_cert.as_deref(), args.rc_key.as_deref()),
            warnings,
        )?;
        s.opts.no_auth = args.rc_no_auth;
        s.opts.metrics = args.rc_enable_metrics;
        Some(s)
    } else {
        let set: Vec<&str> = [
            ("--rc-user", !args.rc_user.is_empty()),
            ("--rc-htpasswd", args.rc_htpasswd.is_some()),
            ("--rc-no-auth", args.rc_no_auth),
            ("--rc-cert", args.rc_cert.is_some()),
            ("--rc-enable-metrics", args.rc_enable_metrics),
        ]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect();
        if !set.is_empty() {
            warnings.push(format!("{} do nothing without --rc", set.join(", ")));
        }
        None
    };
    let metrics = if args.metrics_addr.is_empty() {
        None
    } else {
        let mut s = http_server(
            "metrics-",
            &args.metrics_addr,
            (&args.metrics_user, &args.metrics_pass),
            args.metrics_htpasswd.as_deref(),
            (args.metrics_cert.as_deref(), args.metrics_key.as_deref()),
            warnings,
        )?;
        s.opts.metrics = true;
        s.opts.metrics_only = true;
        Some(s)
    };
    Ok((rc, metrics))
}

/// `--stats` and its companions.
pub struct StatsConfig {
    /// The counters (shared with the sessions and the file cache).
    pub stats: std::sync::Arc<ferry_stats::Stats>,
    /// How often the block is logged (zero: never, nor at the end).
    pub interval: std::time::Duration,
    /// At which level.
    pub level: tracing::Level,
    /// How it looks.
    pub render: ferry_stats::Render,
}

/// The stats flags.
fn stats_config(args: &SftpArgs) -> anyhow::Result<StatsConfig> {
    let level = crate::logging::parse_level(&args.stats_log_level).ok_or_else(|| {
        usage(format!(
            "invalid value {:?} for --stats-log-level: want DEBUG, INFO, NOTICE or ERROR",
            args.stats_log_level
        ))
    })?;
    let bits = match args.stats_unit.to_ascii_lowercase().as_str() {
        "bits" => true,
        "bytes" => false,
        _ => {
            return Err(usage(format!(
                "invalid value {:?} for --stats-unit: want bits or bytes",
                args.stats_unit
            )))
        }
    };
    let date_format = match &args.stats_one_line_date_format {
        Some(f) if !f.is_empty() => Some(f.clone()),
        _ if args.stats_one_line_date => Some("2006/01/02 15:04:05 - ".to_string()),
        _ => None,
    };
    Ok(StatsConfig {
        stats: ferry_stats::Stats::new(),
        interval: parse_duration("stats", &args.stats)?,
        level,
        render: ferry_stats::Render {
            one_line: args.stats_one_line || date_format.is_some(),
            date_format,
            bits,
            name_len: args.stats_file_name_length,
        },
    })
}

/// The SSH algorithms: the defaults changed by the `--ssh-*` flags, in
/// the order given.
fn algorithms(args: &SftpArgs) -> anyhow::Result<Algorithms> {
    let mut algorithms = Algorithms::default();
    let flags = [
        (List::Kex, &args.ssh_kex),
        (List::Ciphers, &args.ssh_ciphers),
        (List::Macs, &args.ssh_macs),
        (List::HostKeys, &args.ssh_host_key_algorithms),
        (List::Pubkeys, &args.ssh_pubkey_algorithms),
    ];
    for (list, specs) in flags {
        for spec in specs {
            algorithms.change(list, spec).map_err(usage)?;
        }
    }
    Ok(algorithms)
}

/// The connection limits from their flags.
fn gate(args: &SftpArgs) -> anyhow::Result<GateConfig> {
    if args.max_connections == 0 {
        return Err(usage(
            "invalid value 0 for --max-connections: want at least 1",
        ));
    }
    Ok(GateConfig {
        max_connections: args.max_connections,
        max_startups: args.max_startups.parse().map_err(usage)?,
        per_source_max_startups: args.per_source_max_startups,
        netblock: args.per_source_netblock_size.parse().map_err(usage)?,
    })
}

/// `--per-source-penalties` and its exempt list.
fn penalties(args: &SftpArgs) -> anyhow::Result<Option<(PenaltyConfig, Vec<Cidr>)>> {
    let cfg = PenaltyConfig::parse(&args.per_source_penalties, |v| {
        parse_duration("per-source-penalties", v).map_err(|e| e.to_string())
    })
    .map_err(usage)?;
    let exempt = cidr_list(
        "per-source-penalty-exempt-list",
        &args.per_source_penalty_exempt_list,
    )?;
    Ok(cfg.map(|c| (c, exempt)))
}

/// A comma-separated list of `ADDR[/PREFIX]`.
fn cidr_list(flag: &str, v: &str) -> anyhow::Result<Vec<Cidr>> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Cidr>()
                .map_err(|e| usage(format!("--{flag}: {e}")))
        })
        .collect()
}

/// Parse an octal permission value such as `0755` or `755`.
pub fn parse_octal(flag: &str, v: &str) -> anyhow::Result<u32> {
    let digits = v.strip_prefix("0o").unwrap_or(v);
    match u32::from_str_radix(digits, 8) {
        Ok(n) if n <= 0o7777 => Ok(n),
        _ => Err(usage(format!(
            "invalid value {v:?} for --{flag}: want octal permissions such as 0755"
        ))),
    }
}

/// Parse a duration as rclone writes them: `0`, `300ms`, `10s`, `5m`,
/// `1h30m`, `2d`, `1.5h` (a bare number is seconds).
pub fn parse_duration(flag: &str, v: &str) -> anyhow::Result<std::time::Duration> {
    let bad = || {
        usage(format!(
            "invalid value {v:?} for --{flag}: want a duration such as 10s, 5m, 1h30m or 0"
        ))
    };
    let s = v.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 7.0 * 86400.0,
            "M" => 30.0 * 86400.0,
            "y" => 365.0 * 86400.0,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Expand a leading `~` and `$VAR`/`${VAR}` as rclone does for paths.
pub fn expand_path(p: &str) -> PathBuf {
    let mut s = String::new();
    let home = std::env::var("HOME").unwrap_or_default();
    let rest = if p == "~" {
        s.push_str(&home);
        ""
    } else if let Some(r) = p.strip_prefix("~/") {
        s.push_str(&home);
        s.push('/');
        r
    } else {
        p
    };
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            s.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        if name.is_empty() {
            s.push('$');
        } else {
            s.push_str(&std::env::var(&name).unwrap_or_default());
        }
    }
    PathBuf::from(s)
}

/// A size flag that may be `off` (no limit): rclone's size syntax, a bare
/// number being KiB.
pub(crate) fn parse_limit(flag: &str, v: &str) -> anyhow::Result<Option<u64>> {
    if v.eq_ignore_ascii_case("off") || v == "-1" {
        return Ok(None);
    }
    ferry_config::parse_size(v)
        .map(|n| Some(n as u64))
        .ok_or_else(|| {
            usage(format!(
                "invalid value {v:?} for --{flag}: want a size such as 10Gi, 512M or off"
            ))
        })
}

/// A `--bwlimit`-style value; `None` when it limits nothing ever.
fn timetable(flag: &str, v: &str) -> anyhow::Result<Option<ferry_layers::Timetable>> {
    let t = ferry_layers::Timetable::parse(v)
        .map_err(|e| usage(format!("invalid value {v:?} for --{flag}: {e}")))?;
    Ok(t.limits_anything().then_some(t))
}

/// The filters from their flags; a bad rule, a missing rule file or a
/// bad size or age is a usage error naming it.
pub(crate) fn filters(args: &FilterArgs) -> anyhow::Result<ferry_filter::Filter> {
    let opts = ferry_filter::FilterOptions {
        include: args.include.clone(),
        include_from: args.include_from.clone(),
        exclude: args.exclude.clone(),
        exclude_from: args.exclude_from.clone(),
        filter: args.filter.clone(),
        filter_from: args.filter_from.clone(),
        files_from: args.files_from.clone(),
        files_from_raw: args.files_from_raw.clone(),
        min_size: parse_limit("min-size", &args.min_size)?,
        max_size: parse_limit("max-size", &args.max_size)?,
        min_age: parse_age("min-age", &args.min_age)?,
        max_age: parse_age("max-age", &args.max_age)?,
        ignore_case: args.ignore_case,
        exclude_if_present: args.exclude_if_present.clone(),
    };
    opts.build()
        .map_err(|e| usage(format!("failed to load filters: {e}")))
}

/// An age as rclone's `--min-age`/`--max-age` take it: `off`, a duration
/// (a bare number is seconds), or a date in local time
/// (`2006-01-02`, `2006-01-02 15:04:05`, `2006-01-02T15:04:05`, or RFC 3339
/// with its own offset).
fn parse_age(flag: &str, v: &str) -> anyhow::Result<Option<ferry_filter::Age>> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    if let Ok(d) = parse_duration(flag, v) {
        return Ok(Some(ferry_filter::Age::Ago(d)));
    }
    let bad = || {
        usage(format!(
            "invalid value {v:?} for --{flag}: want an age such as 90s, 1d, 2w or off, \
             or a date such as 2006-01-02 or 2006-01-02T15:04:05"
        ))
    };
    let ts = if let Ok(ts) = v.parse::<jiff::Timestamp>() {
        ts
    } else {
        let civil = match v.parse::<jiff::civil::DateTime>() {
            Ok(dt) => dt,
            Err(_) => v
                .parse::<jiff::civil::Date>()
                .map_err(|_| bad())?
                .to_datetime(jiff::civil::Time::midnight()),
        };
        civil
            .to_zoned(jiff::tz::TimeZone::system())
            .map_err(|_| bad())?
            .timestamp()
    };
    Ok(Some(ferry_filter::Age::At(std::time::SystemTime::from(ts))))
}

/// Read-ahead's budget when `--max-buffer-memory` is off: a quarter of the
/// machine's memory, at most 4 GiB (1 GiB if it cannot be read).
fn default_buffer_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    match total {
        Some(t) => (t / 4).clamp(64 << 20, 4 << 30),
        None => 1 << 30,
    }
}

/// Where the file cache of `target` lives below `vfs/` and `vfsMeta/`: the
/// remote's name (with a digest of its options for on-the-fly remotes, so
/// two different stores never share a cache) and the served path.
pub fn cache_key(target: &Target) -> PathBuf {
    let named = !target.name.is_empty() && !target.name.starts_with(':');
    let (name, path): (String, PathBuf) = match target.type_.as_str() {
        "local" => {
            // The absolute path as bytes: two roots that differ only in
            // bytes that are not UTF-8 get two caches.
            let root = PathBuf::from(if target.path.is_empty() {
                "."
            } else {
                &target.path
            });
            ("local".into(), std::path::absolute(&root).unwrap_or(root))
        }
        "memory" => ("memory".into(), PathBuf::new()),
        _ if named => (target.name.clone(), PathBuf::from(&target.path)),
        t => {
            // FNV-1a over the type and options: stable across runs.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            let mut feed = |b: &[u8]| {
                for &x in b.iter().chain([0u8].iter()) {
                    h ^= u64::from(x);
                    h = h.wrapping_mul(0x100_0000_01b3);
                }
            };
            feed(t.as_bytes());
            for (k, v) in &target.options {
                feed(k.as_bytes());
                feed(v.as_bytes());
            }
            (
                format!("{t}{{{:08x}}}", h as u32),
                PathBuf::from(&target.path),
            )
        }
    };
    let mut key = PathBuf::from(name.replace('/', "_"));
    for part in path.components() {
        use std::path::Component as C;
        match part {
            C::Normal(p) => key.push(p),
            C::ParentDir => key.push("_"),
            C::RootDir | C::CurDir | C::Prefix(_) => {}
        }
    }
    key
}

fn default_cache_dir() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("ferry"),
        _ => expand_path("~/.cache").join("ferry"),
    }
}

/// The process umask (read by setting and restoring it, before any thread
/// could create files).
fn process_umask() -> u32 {
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.as_raw_mode()
}

/// Read `authorized_keys` again for a reload: a missing file is an error
/// (the keys in use stay), an empty one revokes every key.
pub fn reload_keys(path: &Path) -> Result<Vec<ferry_server::auth::AuthorizedKey>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let parsed = parse_authorized_keys(&text, &path.display().to_string());
    for w in parsed.warnings {
        tracing::warn!("{w}");
    }
    if parsed.keys.is_empty() {
        tracing::warn!("{} has no usable keys: no key logs in now", path.display());
    }
    Ok(parsed.keys)
}

fn load_keys(
    args: &SftpArgs,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<ferry_server::auth::AuthorizedKey>> {
    const DEFAULT: &str = "~/.ssh/authorized_keys";
    let explicit = args.authorized_keys != DEFAULT;
    if args.authorized_keys.is_empty() {
        return Ok(Vec::new());
    }
    let path = expand_path(&args.authorized_keys);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(usage(format!(
                "cannot read --authorized-keys {}: {e}",
                path.display()
            )))
        }
    };
    let parsed = parse_authorized_keys(&text, &path.display().to_string());
    warnings.extend(parsed.warnings);
    if explicit && parsed.keys.is_empty() {
        return Err(usage(format!(
            "--authorized-keys {} has no usable keys",
            path.display()
        )));
    }
    Ok(parsed.keys)
}

/// The auth proxy's options, and the flags it cannot be given with.
fn proxy_options(args: &SftpArgs, value: &str) -> anyhow::Result<ProxyOptions> {
    const DEFAULT_KEYS: &str = "~/.ssh/authorized_keys";
    let clash = if let Some(path) = &args.path {
        Some(format!(
            "REMOTE:PATH ({path}): the proxy names each login's remote"
        ))
    } else if !args.user.is_empty() {
        Some("--user: the proxy checks every login".into())
    } else if !args.pass.is_empty() {
        Some("--pass: the proxy checks every login".into())
    } else if args.no_auth {
        Some("--no-auth: the proxy checks every login".into())
    } else if args.authorized_keys != DEFAULT_KEYS {
        Some("--authorized-keys: the proxy checks every key".into())
    } else if args.stdio {
        Some("--stdio: there is no login to check".into())
    } else {
        None
    };
    if let Some(clash) = clash {
        return Err(usage(format!("--auth-proxy cannot be used with {clash}")));
    }
    let mut opts = ProxyOptions::new(ProxyCommand::parse(value).map_err(usage)?);
    opts.timeout = parse_duration("auth-proxy-timeout", &args.auth_proxy_timeout)?;
    if opts.timeout.is_zero() {
        return Err(usage("--auth-proxy-timeout must be more than 0"));
    }
    opts.max_calls = match args.auth_proxy_concurrency {
        0 => return Err(usage("--auth-proxy-concurrency must be at least 1")),
        n => n,
    };
    if let Some(t) = &args.debug_auth_proxy_cache_time {
        opts.cache_time = parse_duration("debug-auth-proxy-cache-time", t)?;
    }
    Ok(opts)
}

/// The remote an auth proxy's answer names: its type from the registry,
/// its options with the obscured ones revealed (those listed in
/// `_obscure` come in plain), and nothing from the environment or the
/// command line's backend flags. Also its description for logs, secrets
/// redacted.
pub fn proxy_target(
    answer: &ProxyAnswer,
    read_only: bool,
    spool_dir: &Path,
) -> Result<(Target, String), String> {
    let Some(ty) = ferry_registry::find(&answer.type_) else {
        return Err(format!(
            "backend type {:?} is not supported (Ferry serves {} remotes)",
            answer.type_,
            ferry_registry::names().join(", ")
        ));
    };
    let mut options = answer.options.clone();
    for key in ty.obscured {
        if answer.plain.iter().any(|p| p == key) {
            continue;
        }
        let Some(value) = options.get(*key).filter(|v| !v.is_empty()) else {
            continue;
        };
        let plain = ferry_config::reveal(value).map_err(|e| {
            format!("option {key:?}: {e} (or list it in _obscure to give it in plain)")
        })?;
        options.insert(key.to_string(), plain);
    }
    let mut shown = format!(":{}", ty.name);
    for (k, v) in &options {
        let secret = ty
            .secrets
            .iter()
            .chain(ferry_config::DEFAULT_SECRET_KEYS)
            .any(|s| s.eq_ignore_ascii_case(k));
        let v = if secret && !v.is_empty() {
            "***"
        } else {
            v.as_str()
        };
        shown.push_str(&format!(",{k}={v}"));
    }
    shown.push(':');
    shown.push_str(&answer.root);
    let path = if ty.name == "local" && answer.root.is_empty() {
        ".".to_string()
    } else {
        answer.root.clone()
    };
    if ty.name == "local" {
        if let Some(cache) = spool_dir.parent() {
            if within(cache, Path::new(&path)) {
                return Err(format!(
                    "its local root {path:?} contains Ferry's cache directory (host keys, cached files)"
                ));
            }
        }
    }
    Ok((
        Target {
            name: format!(":{}", ty.name),
            type_: ty.name.to_string(),
            options,
            path,
            read_only,
            spool_dir: Some(spool_dir.to_path_buf()),
        },
        shown,
    ))
}

/// The directory a `local` target serves.
fn served_dir(target: &Target) -> Option<PathBuf> {
    (target.type_ == "local").then(|| PathBuf::from(&target.path))
}

/// Whether `inner` is `outer` or below it, as the kernel resolves them
/// (symbolic links followed; a path that does not exist yet is resolved
/// through its nearest existing ancestor).
fn within(inner: &Path, outer: &Path) -> bool {
    match (resolve(inner), resolve(outer)) {
        (Some(i), Some(o)) => i.starts_with(o),
        _ => false,
    }
}

fn resolve(p: &Path) -> Option<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(mut real) = existing.canonicalize() {
            real.extend(rest.iter().rev());
            return Some(real);
        }
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
    }
}

/// Check and type the `serve sftp` flags.
pub fn serve_config(args: &SftpArgs, config_flag: Option<&Path>) -> anyhow::Result<ServeConfig> {
    let proxy = match &args.auth_proxy {
        Some(value) => Some(proxy_options(args, value)?),
        None => None,
    };
    let mut warnings = Vec::new();
    let mut target = match &args.path {
        Some(path) => Some(serve_target(path, config_flag, &mut warnings)?),
        None => None,
    };
    if let Some(target) = target.as_ref().filter(|t| t.type_ == "local") {
        let root = Path::new(&target.path);
        match std::fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(usage(format!("{} is not a directory", root.display()))),
            Err(e) => return Err(usage(format!("cannot serve {}: {e}", root.display()))),
        }
    }

    // --stdio has no SSH layer: the caller (sshd) authenticates; the
    // proxy checks keys itself.
    let keys = if args.stdio || proxy.is_some() {
        Vec::new()
    } else {
        load_keys(args, &mut warnings)?
    };
    let (rc, metrics_server) = if args.stdio {
        (None, None)
    } else {
        rc_servers(&args.rc, &mut warnings)?
    };
    let metrics = (metrics_server.is_some() || rc.as_ref().is_some_and(|r| r.opts.metrics))
        .then(|| std::sync::Arc::new(ferry_metrics::Metrics::new()));
    // A server started with keys reads them again on a reload.
    let keys_file = (!keys.is_empty()).then(|| expand_path(&args.authorized_keys));
    let auth = AuthConfig {
        user: Some(args.user.clone()).filter(|s| !s.is_empty()),
        pass: Some(args.pass.clone()).filter(|s| !s.is_empty()),
        keys,
        no_auth: args.no_auth,
    };
    if (auth.user.is_some() != auth.pass.is_some()) && !auth.any_method() {
        return Err(usage("--user and --pass must be given together"));
    }
    if !auth.any_method() && !args.stdio && proxy.is_none() {
        return Err(usage(
            "no authorization found, use --user/--pass or --authorized-keys or --no-auth or --auth-proxy",
        ));
    }

    let dir_perms = parse_octal("dir-perms", args.dir_perms.as_deref().unwrap_or("0777"))?;
    let file_perms = parse_octal("file-perms", args.file_perms.as_deref().unwrap_or("0666"))?;
    let umask = match &args.umask {
        Some(u) => parse_octal("umask", u)?,
        None => process_umask(),
    };
    // Given at all (even as the default values), they are shown for every
    // file.
    let override_perms = args.dir_perms.is_some() || args.file_perms.is_some();
    let filter = filters(&args.filter)?;
    warnings.extend(filter.warnings().iter().cloned());
    let vfs = VfsOptions {
        read_only: args.read_only,
        no_modtime: args.no_modtime,
        dir_perms,
        file_perms,
        umask,
        override_perms,
        special_bits: args.allow_special_bits,
        uid: args.uid,
        gid: args.gid,
        default_uid: rustix::process::getuid().as_raw(),
        default_gid: rustix::process::getgid().as_raw(),
        no_checksum: args.no_checksum,
        dir_cache_time: parse_duration("dir-cache-time", &args.dir_cache_time)?,
        poll_interval: parse_duration("poll-interval", &args.poll_interval)?,
        buffer_size: ferry_config::parse_size(&args.buffer_size).ok_or_else(|| {
            usage(format!(
                "invalid value {:?} for --buffer-size: want a size such as 16Mi, 512k or 0",
                args.buffer_size
            ))
        })?,
        buffer_budget: ferry_vfs::budget::BufferBudget::shared(
            match parse_limit("max-buffer-memory", &args.max_buffer_memory)? {
                Some(n) => n,
                None => default_buffer_memory(),
            },
        ),
        filter: ferry_vfs::FilterRef::new(filter),
        cache_mode: args
            .vfs_cache_mode
            .parse()
            .map_err(|e: String| usage(format!("invalid value for --vfs-cache-mode: {e}")))?,
        ..VfsOptions::default()
    };
    let cache_dir = args
        .cache_dir
        .as_deref()
        .map(|p| expand_path(&p.to_string_lossy()))
        .unwrap_or_else(default_cache_dir);
    let key_files: Vec<PathBuf> = args
        .key
        .iter()
        .map(|k| expand_path(&k.to_string_lossy()))
        .collect();
    let mut vfs = vfs;
    let stats = stats_config(args)?;
    // Each remote's own folders (open_vfs sets them per remote).
    let key = target.as_ref().map(cache_key).unwrap_or_default();
    vfs.cache = ferry_vfs::CacheOptions {
        data_dir: cache_dir.join("vfs").join(&key),
        meta_dir: cache_dir.join("vfsMeta").join(&key),
        write_back: parse_duration("vfs-write-back", &args.vfs_write_back)?,
        transfers: match args.transfers {
            0 => return Err(usage("--transfers must be at least 1")),
            n => n,
        },
        max_age: parse_duration("vfs-cache-max-age", &args.vfs_cache_max_age)?,
        max_size: parse_limit("vfs-cache-max-size", &args.vfs_cache_max_size)?,
        min_free_space: parse_limit("vfs-cache-min-free-space", &args.vfs_cache_min_free_space)?,
        poll_interval: parse_duration("vfs-cache-poll-interval", &args.vfs_cache_poll_interval)?,
        read_ahead: parse_limit("vfs-read-ahead", &args.vfs_read_ahead)?.unwrap_or(0),
        fast_fingerprint: args.vfs_fast_fingerprint,
        stats: ferry_vfs::StatsRef(Some(stats.stats.clone())),
        ..ferry_vfs::CacheOptions::default()
    };
    vfs.read_chunk_size =
        parse_limit("vfs-read-chunk-size", &args.vfs_read_chunk_size)?.unwrap_or(0);
    vfs.read_chunk_size_limit =
        parse_limit("vfs-read-chunk-size-limit", &args.vfs_read_chunk_size_limit)?;
    vfs.read_chunk_streams = args.vfs_read_chunk_streams;
    vfs.no_seek = args.no_seek;
    parse_duration("vfs-read-wait", &args.vfs_read_wait)?;
    parse_duration("vfs-write-wait", &args.vfs_write_wait)?;
    if let Some(target) = target.as_mut() {
        target.read_only = args.read_only;
        target.spool_dir = Some(cache_dir.join("spool"));
    }
    // Last, so that a bad flag value is what a typo gets told.
    let algorithms = algorithms(args)?;
    let gate = gate(args)?;
    let login_grace = parse_duration("login-grace-time", &args.login_grace_time)?;
    if args.max_sessions == 0 {
        return Err(usage(
            "--max-sessions 0 would refuse every session: give 1 or more",
        ));
    }
    let client_alive = (
        parse_duration("client-alive-interval", &args.client_alive_interval)?,
        args.client_alive_count_max,
    );
    let idle_timeout = parse_duration("idle-timeout", &args.idle_timeout)?;
    let penalties = penalties(args)?;
    let debug_latency = args
        .debug_backend_latency
        .as_deref()
        .map(|v| parse_duration("debug-backend-latency", v))
        .transpose()?;
    let debug_faults = args
        .debug_backend_faults
        .as_deref()
        .map(|v| {
            ferry_layers::FaultOptions::parse(v)
                .map_err(|e| usage(format!("--debug-backend-faults: {e}")))
        })
        .transpose()?;
    if let Some(root) = target.as_ref().and_then(served_dir) {
        if within(&cache_dir, &root) {
            return Err(usage(format!(
                "--cache-dir {} is inside the served directory {}: clients could read the host keys and cached files; choose a cache directory outside it",
                cache_dir.display(),
                root.display()
            )));
        }
        if let Some(k) = key_files.iter().find(|k| within(k, &root)) {
            return Err(usage(format!(
                "host key {} is inside the served directory {}: clients could download it; keep host keys outside it",
                k.display(),
                root.display()
            )));
        }
    }
    Ok(ServeConfig {
        proxy,
        algorithms,
        gate,
        login_grace,
        max_sessions: args.max_sessions,
        client_alive,
        idle_timeout,
        max_connections_per_user: args.max_connections_per_user,
        proxy_protocol: cidr_list("proxy-protocol", &args.proxy_protocol)?,
        penalties,
        layers: ferry_registry::LayerOptions {
            bwlimit: timetable("bwlimit", &args.bwlimit)?
                .or_else(|| {
                    // core/bwlimit can set a limit later.
                    rc.is_some()
                        .then(|| ferry_layers::Timetable::fixed(ferry_layers::Rates::OFF))
                })
                .map(ferry_layers::BwLimiter::new),
            metrics: metrics.clone(),
            bwlimit_file: timetable("bwlimit-file", &args.bwlimit_file)?,
            retry: ferry_layers::RetryOptions {
                attempts: args.low_level_retries,
                ..Default::default()
            },
            debug_latency,
            debug_faults,
        },
        target,
        addr: args.addr.clone(),
        auth,
        key_files,
        cache_dir,
        vfs,
        warnings,
        stats,
        rc,
        metrics_server,
        metrics,
        keys_file,
        vfs_set: Default::default(),
    })
}

/// The config file: `--config`, else `$FERRY_CONFIG`, else
/// `~/.config/ferry/ferry.conf`, else `~/.config/rclone/rclone.conf`; an
/// empty configuration when there is none.
pub fn load_config(explicit: Option<&Path>) -> anyhow::Result<ferry_config::Config> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = ferry_config::default_path(
        explicit,
        &|k| std::env::var(k).ok(),
        home.as_deref(),
        &|p| p.is_file(),
    );
    match path {
        Some(p) => ferry_config::Config::load(&p).map_err(|e| usage(e.to_string())),
        None => Ok(ferry_config::Config::empty()),
    }
}

/// Resolve `REMOTE:PATH` (or a plain local path) to what is served.
pub fn serve_target(
    spec: &str,
    config_flag: Option<&Path>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Target> {
    use ferry_config::RemoteKind;
    let _ = warnings;
    let spec = ferry_config::parse_remote(spec).map_err(|e| usage(e.to_string()))?;
    let local = |name: String, path: &str, options| Target {
        name,
        type_: "local".into(),
        options,
        path: local_root(path).to_string_lossy().into_owned(),
        read_only: false,
        spool_dir: None,
    };
    if matches!(spec.kind, RemoteKind::Local) {
        return Ok(local(String::new(), &spec.path, Default::default()));
    }
    let cfg = load_config(config_flag)?;
    let remote = ferry_config::resolve(&spec, &cfg, &ferry_config::Env::from_os())
        .map_err(|e| usage(e.to_string()))?;
    let Some(ty) = ferry_registry::find(&remote.type_) else {
        return Err(usage(format!(
            "remote {}: backend type {:?} is not supported yet (Ferry serves {} remotes)",
            remote.name,
            remote.type_,
            ferry_registry::names().join(", ")
        )));
    };
    let mut options = remote.options.clone();
    for key in ty.obscured {
        if let Some(v) = remote
            .reveal_option(key)
            .map_err(|e| usage(e.to_string()))?
        {
            options.insert(key.to_string(), v);
        }
    }
    if ty.name == "local" {
        return Ok(local(remote.name.clone(), &remote.path, options));
    }
    Ok(Target {
        name: remote.name.clone(),
        type_: ty.name.to_string(),
        options,
        path: remote.path.clone(),
        read_only: false,
        spool_dir: None,
    })
}

fn local_root(path: &str) -> PathBuf {
    if path.is_empty() {
        PathBuf::from(".")
    } else {
        expand_path(path)
    }
}

/// Turn `--addr` into something to bind: `:PORT` means every interface.
pub fn bind_addr(addr: &str) -> anyhow::Result<String> {
    listen_addr("addr", addr)
}

/// `HOST:PORT` or `:PORT` (every address) of flag `--FLAG`, as a socket
/// address to bind.
pub fn listen_addr(flag: &str, addr: &str) -> anyhow::Result<String> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
        usage(format!(
            "invalid --{flag} {addr:?}: want HOST:PORT or :PORT"
        ))
    })?;
    if port.parse::<u16>().is_err() {
        return Err(usage(format!("invalid port in --{flag} {addr:?}")));
    }
    Ok(if host.is_empty() {
        format!("[::]:{port}")
    } else {
        addr.to_string()
    })
}

/// The host key directory inside the cache.
pub fn host_key_dir(cache: &Path) -> PathBuf {
    cache.join("serve-sftp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal() {
        assert_eq!(parse_octal("x", "0755").unwrap(), 0o755);
        assert_eq!(parse_octal("x", "644").unwrap(), 0o644);
        assert!(parse_octal("x", "999").is_err());
        assert!(parse_octal("x", "77777").is_err());
        let e = parse_octal("dir-perms", "rwx").unwrap_err().to_string();
        assert!(e.contains("--dir-perms"), "{e}");
    }

    #[test]
    fn within_resolves_links_and_paths_not_made_yet() {
        let base = std::env::temp_dir().join(format!("ferry-within-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), base.join("link")).unwrap();
        assert!(within(&root.join("sub/cache/not/yet"), &root));
        assert!(within(&root, &root));
        assert!(
            within(&base.join("link/cache"), &root),
            "a link into the root"
        );
        assert!(
            !within(&base.join("root2"), &root),
            "a sibling sharing a prefix"
        );
        assert!(!within(&base, &root));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_proxy_answer_serving_the_cache_directory_is_refused() {
        let base = std::env::temp_dir().join(format!("ferry-proxycache-{}", std::process::id()));
        let spool = base.join("cache").join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let answer = |root: &Path| ProxyAnswer {
            type_: "local".into(),
            root: root.to_string_lossy().into_owned(),
            options: Default::default(),
            plain: vec![],
            policy: Default::default(),
        };
        let e = proxy_target(&answer(&base), false, &spool).unwrap_err();
        assert!(e.contains("cache directory"), "{e}");
        std::fs::create_dir_all(base.join("home")).unwrap();
        assert!(proxy_target(&answer(&base.join("home")), false, &spool).is_ok());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn targets() {
        let mut w = Vec::new();
        let t = serve_target("/srv/x:y", None, &mut w).unwrap();
        assert_eq!((t.type_.as_str(), t.path.as_str()), ("local", "/srv/x:y"));
        let dir = std::env::temp_dir().join(format!("ferry-cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("ferry.conf");
        std::fs::write(
            &conf,
            "[disk]\ntype = local\ncopy_links = true\n\n[mem]\ntype = memory\n\n[bucket]\ntype = s3\n\n[box]\ntype = dropbox\n\n[dav]\ntype = webdav\nurl = http://h/\npass = bm90IG9ic2N1cmVk\n",
        )
        .unwrap();
        let t = serve_target("disk:/data", Some(&conf), &mut w).unwrap();
        assert_eq!((t.type_.as_str(), t.path.as_str()), ("local", "/data"));
        assert_eq!(t.options.keys().collect::<Vec<_>>(), ["copy_links"]);
        assert_eq!(
            serve_target("mem:", Some(&conf), &mut w).unwrap().type_,
            "memory"
        );
        assert_eq!(
            serve_target(":memory:", Some(&conf), &mut w).unwrap().type_,
            "memory"
        );
        let t = serve_target("bucket:b/p", Some(&conf), &mut w).unwrap();
        assert_eq!((t.type_.as_str(), t.path.as_str()), ("s3", "b/p"));
        let e = serve_target("box:x", Some(&conf), &mut w)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not supported yet"), "{e}");
        // A webdav password that is not obscured is refused, naming the key.
        let e = serve_target("dav:", Some(&conf), &mut w)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pass"), "{e}");
        let e = serve_target("nope:x", Some(&conf), &mut w)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations() {
        use std::time::Duration as D;
        let d = |v: &str| parse_duration("x", v).unwrap();
        assert_eq!(d("0"), D::ZERO);
        assert_eq!(d("5m"), D::from_secs(300));
        assert_eq!(d("1h30m"), D::from_secs(5400));
        assert_eq!(d("300ms"), D::from_millis(300));
        assert_eq!(d("1.5h"), D::from_secs(5400));
        assert_eq!(d("2d"), D::from_secs(172800));
        assert_eq!(d("10"), D::from_secs(10));
        for bad in ["", "m", "5x", "-1s", "1h-"] {
            let e = parse_duration("dir-cache-time", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--dir-cache-time"), "{bad}: {e}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(bind_addr(":2022").unwrap(), "[::]:2022");
        assert_eq!(bind_addr("127.0.0.1:22").unwrap(), "127.0.0.1:22");
        assert!(bind_addr("localhost").is_err());
        assert!(bind_addr("x:99999").is_err());
    }

    #[test]
    fn expansion() {
        std::env::set_var("FERRY_TEST_X", "abc");
        assert_eq!(expand_path("/a/$FERRY_TEST_X/b"), PathBuf::from("/a/abc/b"));
        assert_eq!(expand_path("/a/${FERRY_TEST_X}b"), PathBuf::from("/a/abcb"));
        assert_eq!(expand_path("/a$"), PathBuf::from("/a$"));
        let home = std::env::var("HOME").unwrap();
        assert_eq!(expand_path("~/x"), PathBuf::from(format!("{home}/x")));
    }
}
