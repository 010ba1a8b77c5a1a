//! `ferry`: serve any storage over SFTP.
//!
//! # Layout
//! - [`args`]: the clap command line.
//! - [`config`]: flags to typed configuration, with one-line errors.
//! - `stdio`: `serve sftp --stdio`, one session on stdin/stdout.
//! - `rc`: `--rc` and `--metrics-addr` over the running server.
//! - `systemd`: readiness notification and socket activation.
//! - this file: logging, signals, and wiring the backend, VFS and server.
//!
//! Backends are named only by the registry (`ferry-registry`).

mod args;
mod config;
mod logging;
mod rc;
mod stdio;
mod systemd;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use ferry_server::login::{Authenticator, Policy, StaticAuthenticator, VfsPool};
use ferry_server::proxy::{ProxyAuthenticator, ProxyCommand};
use ferry_server::ssh::ServerConfig;
use ferry_vfs::Vfs;
use tokio::signal::unix::{signal, SignalKind};

use args::{Cli, Command, ConfigAction, Protocol, SftpArgs};
use config::UsageError;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(
                e.kind(),
                K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: the first line of clap's message.
            // (clap lists missing arguments on the lines after the first.)
            let text = e.render().to_string();
            let said: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            let first = match said.join(" ") {
                s if s.is_empty() => "invalid arguments".to_string(),
                s => s,
            };
            let first = first.strip_prefix("error: ").unwrap_or(&first);
            eprintln!("ferry: {first} (see ferry --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<UsageError>().is_some() {
                eprintln!("ferry: {e}");
                ExitCode::from(2)
            } else {
                eprintln!("ferry: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config_flag = cli.config.as_deref();
    match cli.command {
        Command::Serve {
            protocol: Protocol::Sftp(args),
        } => serve_sftp(args, config_flag),
        Command::Version => {
            println!("ferry v{}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Obscure { password } => {
            let password = if password == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\n', '\r']).to_string()
            } else {
                password
            };
            println!("{}", ferry_config::obscure(&password));
            Ok(())
        }
        Command::Reveal { obscured } => {
            let plain = ferry_config::reveal(&obscured).map_err(|e| UsageError(e.to_string()))?;
            println!("{plain}");
            Ok(())
        }
        Command::Listremotes => {
            let cfg = config::load_config(config_flag)?;
            let mut names: Vec<String> = cfg.remotes().iter().map(|s| s.to_string()).collect();
            for (name, _) in ferry_config::Env::from_os().remotes() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            for name in names {
                println!("{name}:");
            }
            Ok(())
        }
        Command::Config {
            action: ConfigAction::Show { remote },
        } => {
            let cfg = config::load_config(config_flag)?;
            match remote {
                Some(name) => {
                    let name = name.trim_end_matches(':');
                    let section = cfg.remote(name).ok_or_else(|| {
                        UsageError(format!("remote {name:?} is not in the config file"))
                    })?;
                    print!("{}", redacted(section));
                }
                None => {
                    for section in cfg.sections() {
                        println!("{}", redacted(section));
                    }
                }
            }
            Ok(())
        }
    }
}

/// A config section as text, with the secrets of its type (the backend
/// registry's list, and the usual names) hidden.
fn redacted(section: &ferry_config::Section) -> String {
    let mut secrets = ferry_config::DEFAULT_SECRET_KEYS.to_vec();
    if let Some(t) = section.type_().and_then(ferry_registry::find) {
        secrets.extend(t.secrets);
    }
    section.display_redacted_with(&secrets)
}

/// The multi-threaded runtime every mode runs on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// The VFS of `target`: its backend from the registry inside the layer
/// stack, `cfg`'s VFS options, and cache folders of its own. Returns the
/// backend's description for logs too.
pub(crate) async fn open_vfs(
    target: &config::Target,
    cfg: &config::ServeConfig,
) -> anyhow::Result<(Vfs, String)> {
    let opened = ferry_registry::open(target, &cfg.layers)
        .await
        .map_err(|e| UsageError(e.to_string()))?;
    for w in &opened.warnings {
        tracing::warn!("{w}");
    }
    if let Some(d) = cfg.layers.debug_latency.filter(|d| !d.is_zero()) {
        tracing::warn!("every backend request is delayed by {d:?} (--debug-backend-latency)");
    }
    if let Some(f) = cfg.layers.debug_faults.filter(|f| f.per_million > 0) {
        tracing::warn!(
            "{}% of backend requests get an injected fault (--debug-backend-faults)",
            f64::from(f.per_million) / 1e4
        );
    }
    let mut opts = cfg.vfs_options();
    let key = config::cache_key(target);
    opts.cache.data_dir = cfg.cache_dir.join("vfs").join(&key);
    opts.cache.meta_dir = cfg.cache_dir.join("vfsMeta").join(&key);
    let vfs = Vfs::try_new(opened.backend, opts.clone()).map_err(|e| {
        UsageError(format!(
            "cannot set up the file cache in {}: {e}",
            opts.cache.data_dir.display()
        ))
    })?;
    Ok((vfs, opened.describe))
}

/// How long a VFS no login uses is kept (its caches stay warm for the next
/// login of the same remote).
const VFS_LINGER: std::time::Duration = std::time::Duration::from_secs(300);

/// At shutdown, upload what the file cache still holds; a second SIGINT or
/// SIGTERM stops waiting (the files stay in the cache, marked changed, and
/// are uploaded on the next start).
pub(crate) async fn finish_cache_uploads(
    pool: &VfsPool<config::Target>,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) {
    let pending = pool.pending_uploads();
    let give_up = async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    if pending == 0 {
        pool.shutdown(give_up).await;
        return;
    }
    let msg = format!(
        "uploading {pending} changed file(s) from the cache before exiting; \
         interrupt again to exit now (they are kept and uploaded on the next start)"
    );
    tracing::warn!("{msg}");
    eprintln!("ferry: {msg}");
    let left = pool.shutdown(give_up).await;
    if left == 0 {
        tracing::info!("all changed files uploaded");
    } else {
        let msg = format!(
            "{left} changed file(s) not uploaded yet: kept in the cache, uploaded on the next start"
        );
        tracing::warn!("{msg}");
        eprintln!("ferry: {msg}");
    }
}

/// Try listing the root of a network remote once at start, so a wrong
/// bucket, address or credential shows in the log at once rather than at
/// the first client. A failure is a warning: the store may come back.
async fn probe_remote(vfs: &Vfs, describe: &str) {
    let root = ferry_vfs::backend::RelPath::root();
    match tokio::time::timeout(std::time::Duration::from_secs(20), vfs.read_dir(&root)).await {
        Ok(Ok(_)) => tracing::debug!("{describe}: reachable"),
        // A store without listings (plain HTTP) has already been warned about.
        Ok(Err(ferry_vfs::VfsError::Unsupported(_))) => {}
        Ok(Err(e)) => tracing::warn!("{describe}: cannot list the served path yet: {e}"),
        Err(_) => tracing::warn!("{describe}: no answer within 20 s to a first listing"),
    }
    // A check, not a warm-up: clients start from what the store holds then.
    vfs.forget(None);
}

/// The averages tick every second; with `--stats`, the block is logged
/// every interval.
fn start_stats(cfg: &config::StatsConfig, json: bool) -> Vec<tokio::task::JoinHandle<()>> {
    let stats = cfg.stats.clone();
    let mut tasks = vec![tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            stats.tick();
        }
    })];
    if !cfg.interval.is_zero() {
        let cfg = config::StatsConfig {
            stats: cfg.stats.clone(),
            interval: cfg.interval,
            level: cfg.level,
            render: cfg.render.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(cfg.interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                log_stats(&cfg, json);
            }
        }));
    }
    tasks
}

/// Log rclone's stats block at its level: each line an event of its own
/// (names in it are escaped as every value is), or in JSON one event with
/// the numbers.
fn log_stats(cfg: &config::StatsConfig, json: bool) {
    use tracing::Level;
    macro_rules! at {
        ($($t:tt)*) => {
            match cfg.level {
                Level::ERROR => tracing::error!($($t)*),
                Level::WARN => tracing::warn!($($t)*),
                Level::INFO => tracing::info!($($t)*),
                _ => tracing::debug!($($t)*),
            }
        };
    }
    let s = cfg.stats.snapshot();
    if json {
        at!(
            bytes = s.bytes,
            total_bytes = s.total_bytes,
            speed = s.speed,
            eta = s.eta().map_or(-1.0, |d| d.as_secs_f64()),
            errors = s.errors,
            last_error = %s.last_error.clone().unwrap_or_default(),
            transfers = s.transfers,
            total_transfers = s.total_transfers,
            transferring = s.transferring.len() as u64,
            deletes = s.deletes,
            deleted_dirs = s.deleted_dirs,
            renames = s.renames,
            elapsed_time = s.elapsed.as_secs_f64(),
            "stats"
        );
        return;
    }
    for line in cfg.render.lines(&s, go_time_layout) {
        at!("{line}");
    }
}

/// The local time now in a Go layout (`2006/01/02 15:04:05 - `): the
/// reference date's fields are replaced, the rest kept.
fn go_time_layout(layout: &str) -> String {
    let z = jiff::Zoned::now();
    let tokens = [
        ("2006", format!("{:04}", z.year())),
        ("01", format!("{:02}", z.month())),
        ("02", format!("{:02}", z.day())),
        ("15", format!("{:02}", z.hour())),
        ("04", format!("{:02}", z.minute())),
        ("05", format!("{:02}", z.second())),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'scan: while !rest.is_empty() {
        for (token, value) in &tokens {
            if let Some(r) = rest.strip_prefix(token) {
                out.push_str(value);
                rest = r;
                continue 'scan;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Keep glibc's allocator to one arena per core (at least two). By default
/// it makes up to eight per core, one for each thread that finds the others
/// busy, and the blocking threads that do local file I/O come and go in the
/// hundreds. Must run before any other thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = cores.clamp(2, 64) as libc::c_int;
        // SAFETY: mallopt only sets a tuning parameter of the C allocator;
        // it is called here before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Give the allocator's free memory back to the system when the server is
/// quiet. glibc returns memory only from the top of each arena by itself:
/// after a flood of requests (a client that pipelines thousands and stops
/// reading) the freed memory stayed resident, scattered between live
/// blocks, long after the client left (tests/e2e/test_budgets.py measures
/// it). `malloc_trim` releases the free pages anywhere in every arena, but
/// holds the arena locks while it does (tens of milliseconds after big
/// transfers): it runs only when no file has moved a byte for five seconds,
/// never under load.
fn start_trimming(stats: Arc<ferry_stats::Stats>) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async move {
        let mut last = u64::MAX;
        let mut trimmed_at = u64::MAX;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            let s = stats.snapshot();
            let quiet = s.transferring.is_empty() && s.bytes == last;
            last = s.bytes;
            // Once per quiet spell: nothing new to give back after that.
            if !quiet || trimmed_at == s.bytes {
                continue;
            }
            trimmed_at = s.bytes;
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: malloc_trim takes the allocator's own locks and
                // only returns free pages; it is safe to call at any time.
                #[allow(unsafe_code)]
                unsafe {
                    libc::malloc_trim(0);
                }
            })
            .await;
        }
    });
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = stats;
}

pub(crate) fn init_logging(args: &SftpArgs) -> anyhow::Result<()> {
    let chosen = match &args.log_level {
        Some(_) if args.verbose > 0 => {
            return Err(UsageError("can't set -v and --log-level".into()).into())
        }
        Some(v) => logging::parse_level(v).ok_or_else(|| {
            UsageError(format!(
                "invalid value {v:?} for --log-level: want DEBUG, INFO, NOTICE or ERROR"
            ))
        })?,
        None => match args.verbose {
            0 => tracing::Level::WARN,
            1 => tracing::Level::INFO,
            _ => tracing::Level::DEBUG,
        },
    };
    let level = chosen.as_str().to_ascii_lowercase();
    // Our crates at the chosen level; russh's internals only at -vvv.
    let filter = if args.verbose >= 3 {
        "debug".to_string()
    } else {
        format!(
            "warn,ferry={level},ferry_server={level},ferry_vfs={level},ferry_backend_local={level},\
             ferry_backend_opendal={level},ferry_backend_sftp={level},ferry_layers={level}"
        )
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .event_format(logging::Format {
            json: args.use_json_log,
        });
    match &args.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    UsageError(format!("cannot open --log-file {}: {e}", path.display()))
                })?;
            builder.with_writer(Arc::new(file)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// Raise the soft limit on open files to the hard one: every connection,
/// open handle, cached file and store connection takes a descriptor, and
/// the usual soft limit of 1,024 is reached by a few busy users (then
/// accept fails for everyone). Warn if the limit stays below what
/// `--max-connections` needs to be reached at all. Returns the limit.
fn raise_file_limit(max_connections: usize) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    // Linux refuses more than fs.nr_open (1,048,576 by default) even when
    // the hard limit says "unlimited".
    let want = lim.maximum.unwrap_or(1 << 20);
    let mut now = lim.current.unwrap_or(u64::MAX);
    if now < want {
        let raised = Rlimit {
            current: Some(want),
            maximum: lim.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => now = want,
            Err(e) => tracing::debug!("cannot raise the open-file limit to {want}: {e}"),
        }
    }
    let need = (max_connections as u64).saturating_mul(4);
    if now < need {
        tracing::warn!(
            "the open-file limit is {now}: fewer than --max-connections {max_connections} \
             connections may be served (raise `ulimit -n` to at least {need})"
        );
    }
    now
}

/// How many files clients may have open, all sessions together: the
/// open-file limit less a reserve of four descriptors per allowed
/// connection (its socket and its own) and 256 for the file cache, the
/// stores' connections and the log. Never fewer than a quarter of the
/// limit, so a small limit still serves files.
fn open_file_budget(limit: u64, max_connections: usize) -> usize {
    let reserve = (max_connections as u64)
        .saturating_mul(4)
        .saturating_add(256);
    let budget = limit.saturating_sub(reserve).max(limit / 4).max(1);
    usize::try_from(budget).unwrap_or(usize::MAX)
}

/// The host keys: `--key` files, else the ones generated once in the
/// cache directory.
fn host_keys(cfg: &config::ServeConfig) -> anyhow::Result<Vec<ferry_server::hostkeys::PrivateKey>> {
    Ok(if cfg.key_files.is_empty() {
        ferry_server::hostkeys::load_or_generate(&config::host_key_dir(&cfg.cache_dir))?
    } else {
        cfg.key_files
            .iter()
            .map(|p| ferry_server::hostkeys::load_key_file(p))
            .collect::<Result<Vec<_>, _>>()?
    })
}

/// Read authorized_keys and the host keys again (`ferry/reload`,
/// SIGHUP): new connections use them, open ones keep what they have. A
/// file that cannot be read leaves what is in use as it is.
fn reload(
    cfg: &config::ServeConfig,
    auth: &dyn Authenticator,
    control: &ferry_server::control::Control,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let keys = auth.reload()?;
    let host = host_keys(cfg).map_err(|e| format!("host keys: {e:#}"))?;
    let n = host.len();
    control.set_host_keys(host);
    let mut m = serde_json::Map::new();
    m.insert("authorizedKeys".into(), keys.into());
    m.insert("hostKeys".into(), n.into());
    Ok(m)
}

fn serve_sftp(args: SftpArgs, config_flag: Option<&std::path::Path>) -> anyhow::Result<()> {
    let cfg = config::serve_config(&args, config_flag)?;
    if args.stdio {
        return stdio::serve(&args, cfg);
    }
    let bind = config::bind_addr(&cfg.addr)?;
    init_logging(&args)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if let Some(f) = cfg.vfs.filter.get() {
        for rule in f.describe() {
            tracing::debug!("filter: {rule}");
        }
    }
    let file_limit = raise_file_limit(cfg.gate.max_connections);
    let open_files = open_file_budget(file_limit, cfg.gate.max_connections);

    let host_keys = host_keys(&cfg)?;
    // Before the runtime's threads start: it edits the environment.
    let mut activated = systemd::listen_fds();

    runtime()?.block_on(async move {
        let cfg = Arc::new(cfg);
        // The served remote is opened at start, so a wrong configuration
        // stops the start, and stays open for as long as the server runs.
        // With an auth proxy, each login's remote is opened at its login.
        let first = match &cfg.target {
            Some(target) => {
                let (vfs, describe) = open_vfs(target, &cfg).await?;
                if !vfs.capabilities().low_latency {
                    probe_remote(&vfs, &describe).await;
                }
                Some((target.clone(), vfs, describe))
            }
            None => None,
        };
        // A VFS no login uses lingers for the proxy's cache time, so a
        // kept answer finds its VFS warm.
        let linger = cfg.proxy.as_ref().map_or(VFS_LINGER, |p| p.cache_time);
        let (first_target, first_vfs, describe) = match first {
            Some((t, v, d)) => (Some(t), Some(v), d),
            None => (None, None, String::new()),
        };
        let pool = {
            let cfg = cfg.clone();
            let first = std::sync::Mutex::new(first_vfs);
            VfsPool::new(linger, move |target: config::Target| {
                let cfg = cfg.clone();
                let ready = (Some(&target) == cfg.target.as_ref())
                    .then(|| first.lock().unwrap_or_else(|e| e.into_inner()).take())
                    .flatten();
                async move {
                    match ready {
                        Some(vfs) => Ok(vfs),
                        None => match open_vfs(&target, &cfg).await {
                            Ok((vfs, describe)) => {
                                tracing::info!("auth proxy: opened {describe} for its logins");
                                Ok(vfs)
                            }
                            Err(e) => Err(e.to_string()),
                        },
                    }
                }
            })
        };
        let (auth, served, describe): (Arc<dyn Authenticator>, _, String) =
            match (first_target, &cfg.proxy) {
                (Some(target), _) => {
                    let served = pool.get(target.clone()).await.map_err(UsageError)?;
                    let mut auth = StaticAuthenticator::new(
                        cfg.auth.clone(),
                        pool.clone(),
                        target,
                        Policy::default(),
                        describe.clone(),
                    );
                    if let Some(path) = cfg.keys_file.clone() {
                        auth = auth.with_reload(Box::new(move || config::reload_keys(&path)));
                    }
                    (Arc::new(auth), Some(served), describe)
                }
                (None, Some(proxy)) => {
                    let read_only = cfg.vfs.read_only;
                    let spool = cfg.cache_dir.join("spool");
                    let auth = ProxyAuthenticator::new(proxy.clone(), pool.clone(), move |a| {
                        config::proxy_target(a, read_only, &spool)
                    })
                    .map_err(UsageError)?
                    .with_metrics(cfg.metrics.clone());
                    let what = match &proxy.command {
                        ProxyCommand::Program(argv) => argv[0].clone(),
                        ProxyCommand::Http(url) => url.clone(),
                    };
                    (
                        Arc::new(auth),
                        None,
                        format!("the remotes the auth proxy ({what}) names"),
                    )
                }
                (None, None) => unreachable!("serve_config gives a remote or a proxy"),
            };
        let listener = if activated.is_empty() {
            tokio::net::TcpListener::bind(&bind)
                .await
                .map_err(|e| UsageError(format!("cannot listen on {}: {e}", cfg.addr)))?
        } else {
            let (first, name) = activated.remove(0);
            for (extra, n) in &activated {
                tracing::warn!(
                    "socket activation: only the first socket is served; {n} ({:?}) is not",
                    extra.local_addr().ok()
                );
            }
            tracing::info!("socket activation: serving the socket systemd passed ({name}); --addr is not used");
            tokio::net::TcpListener::from_std(first)?
        };
        let local = listener.local_addr()?;
        tracing::info!("serving {describe} over SFTP on {local}");
        if !tracing::enabled!(tracing::Level::INFO) {
            eprintln!("ferry: serving {describe} over SFTP on {local}");
        }

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut server_cfg = ServerConfig::new(auth.clone(), host_keys);
        server_cfg.sftp.open_files = ferry_server::sftp::handles::OpenFiles::new(open_files);
        server_cfg.sftp.stats = Some(cfg.stats.stats.clone());
        let stats_tasks = start_stats(&cfg.stats, args.use_json_log);
        start_trimming(cfg.stats.stats.clone());
        server_cfg.algorithms = cfg.algorithms.clone();
        server_cfg.gate = cfg.gate.clone();
        server_cfg.login_grace = cfg.login_grace;
        server_cfg.max_channels = cfg.max_sessions;
        server_cfg.client_alive = cfg.client_alive;
        server_cfg.idle_timeout = cfg.idle_timeout;
        server_cfg.max_connections_per_user = cfg.max_connections_per_user;
        server_cfg.proxy_protocol = cfg.proxy_protocol.clone();
        server_cfg.penalties = cfg.penalties.clone().map(|(p, mut exempt)| {
            // A balancer's own connections (health checks) are never
            // penalised; the clients behind it are, by their addresses.
            exempt.extend(cfg.proxy_protocol.iter().copied());
            Arc::new(ferry_server::penalty::Penalties::new(
                p,
                cfg.gate.netblock,
                exempt,
            ))
        });
        server_cfg.metrics = cfg.metrics.clone();
        let control = server_cfg.control.clone();
        let reloader = {
            let (cfg, auth, control) = (cfg.clone(), auth.clone(), control.clone());
            Arc::new(move || reload(&cfg, auth.as_ref(), &control))
        };
        let http_tasks = rc::start(
            rc::Parts {
                cfg: cfg.clone(),
                pool: pool.clone(),
                control: control.clone(),
                bwlimit: cfg.layers.bwlimit.clone(),
                filter: args.filter.clone(),
                bwlimit_file: args.bwlimit_file.clone(),
                reload: {
                    let r = reloader.clone();
                    Arc::new(move || r().map_err(ferry_rc::RcError::failed))
                },
            },
            stop_rx.clone(),
        )
        .await?;
        let server = tokio::spawn(ferry_server::ssh::serve(listener, server_cfg, stop_rx));
        systemd::notify(&format!("READY=1\nSTATUS=serving {describe} on {local}"));

        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let bwlimit = cfg.layers.bwlimit.clone();
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    for vfs in pool.each() {
                        vfs.forget(None);
                    }
                    auth.forget();
                    tracing::info!("SIGHUP: directory caches and kept auth proxy answers flushed");
                    match reloader() {
                        Ok(m) => tracing::info!(
                            "SIGHUP: host keys read again ({}); authorized keys: {}",
                            m["hostKeys"],
                            m["authorizedKeys"].as_str().unwrap_or_default()
                        ),
                        Err(e) => tracing::error!("SIGHUP: reload failed, keeping the keys in use: {e}"),
                    }
                }
                _ = usr2.recv() => match &bwlimit {
                    Some(l) => {
                        let on = l.toggle();
                        tracing::warn!(
                            "SIGUSR2: bandwidth limit {}",
                            if on { format!("on again ({})", l.current().describe()) } else { "toggled off".into() }
                        );
                    }
                    None => tracing::warn!("SIGUSR2: no --bwlimit to toggle"),
                },
            }
        }
        tracing::info!("shutting down");
        systemd::notify("STOPPING=1");
        let _ = stop_tx.send(true);
        let _ = server.await;
        for t in http_tasks {
            let _ = t.await;
        }
        // Uploads still open are discarded (the files they replace stay
        // intact); every VFS uploads what its file cache holds.
        finish_cache_uploads(&pool, &mut term, &mut int).await;
        for t in stats_tasks {
            t.abort();
        }
        if !cfg.stats.interval.is_zero() {
            // The final block, as rclone prints at exit.
            log_stats(&cfg.stats, args.use_json_log);
        }
        drop(served);
        Ok(())
    })
}
