//! `--rc` and `--metrics-addr`: the rc crate's servers over the running
//! server (its VFS pool, sessions, statistics and limiter), and the option
//! blocks `options/get` and `options/set` show and change.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_rc::calls::{Context, OptionBlocks};
use ferry_rc::RcError;
use ferry_server::login::VfsPool;
use serde_json::{json, Map, Value};

use crate::args::FilterArgs;
use crate::config::{self, HttpServer, ServeConfig, Target};

/// The name `fs=` picks a VFS by, as rclone names a remote: `name:path`
/// for a configured remote, the directory for a local path, `:type:path`
/// for an on-the-fly remote.
pub fn fs_name(t: &Target) -> String {
    if t.type_ == "local" && (t.name.is_empty() || t.name.starts_with(':')) {
        return std::path::absolute(&t.path)
            .map_or_else(|_| t.path.clone(), |p| p.to_string_lossy().into_owned());
    }
    let name = if t.name.is_empty() || t.name.starts_with(':') {
        format!(":{}", t.type_)
    } else {
        t.name.clone()
    };
    format!("{name}:{}", t.path)
}

/// The option blocks: `vfs` and `filter` (the flags, or what
/// `options/set` made of them, for the VFSes opened afterwards) and
/// `main` (the bandwidth limits, `BwLimit` applying at once).
pub struct Blocks {
    pub cfg: Arc<ServeConfig>,
    /// The filter flags, as last set.
    pub filter: Mutex<FilterArgs>,
    /// `--bwlimit-file`, for showing.
    pub bwlimit_file: String,
    pub bwlimit: Arc<ferry_layers::BwLimiter>,
}

impl OptionBlocks for Blocks {
    fn get(&self) -> Map<String, Value> {
        let f = self.filter.lock().unwrap_or_else(|p| p.into_inner());
        let mut m = Map::new();
        m.insert(
            "vfs".into(),
            ferry_rc::calls::vfs_opt(&self.cfg.vfs_options()),
        );
        m.insert(
            "filter".into(),
            json!({
                "DeleteExcluded": false,
                "FilterRule": f.filter,
                "FilterFrom": f.filter_from,
                "ExcludeRule": f.exclude,
                "ExcludeFrom": f.exclude_from,
                "ExcludeFile": f.exclude_if_present,
                "IncludeRule": f.include,
                "IncludeFrom": f.include_from,
                "FilesFrom": f.files_from,
                "FilesFromRaw": f.files_from_raw,
                "MinAge": f.min_age,
                "MaxAge": f.max_age,
                "MinSize": f.min_size,
                "MaxSize": f.max_size,
                "IgnoreCase": f.ignore_case,
            }),
        );
        m.insert(
            "main".into(),
            json!({
                "BwLimit": self.bwlimit.current().describe(),
                "BwLimitFile": self.bwlimit_file,
            }),
        );
        m
    }

    fn set(&self, blocks: &Map<String, Value>) -> Result<(), RcError> {
        // Check everything first: nothing is half set.
        let mut vfs = None;
        let mut filter = None;
        let mut rates = None;
        for (name, fields) in blocks {
            let Value::Object(fields) = fields else {
                return Err(RcError::invalid(format!(
                    "options block {name:?}: want an object of options"
                )));
            };
            match name.as_str() {
                "vfs" => {
                    let mut o = vfs.take().unwrap_or_else(|| self.cfg.vfs_options());
                    for (k, v) in fields {
                        set_vfs(&mut o, k, v)?;
                    }
                    vfs = Some(o);
                }
                "filter" => {
                    let mut a = filter.take().map(|(a, _)| a).unwrap_or_else(|| {
                        self.filter
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .clone()
                    });
                    for (k, v) in fields {
                        set_filter(&mut a, k, v)?;
                    }
                    let built = config::filters(&a)
                        .map_err(|e| RcError::invalid(format!("filter: {e}")))?;
                    filter = Some((a, built));
                }
                "main" => {
                    for (k, v) in fields {
                        match k.as_str() {
                            "BwLimit" => {
                                let text = string(k, v)?;
                                let t = ferry_layers::Timetable::parse(&text).map_err(|e| {
                                    RcError::invalid(format!("main.BwLimit {text:?}: {e}"))
                                })?;
                                if !t.is_fixed() {
                                    return Err(RcError::invalid(
                                        "main.BwLimit: a timetable cannot be set on a running server; give one rate (RATE or TX:RX)",
                                    ));
                                }
                                rates = Some(t.now());
                            }
                            _ => {
                                return Err(RcError::invalid(format!(
                                "main.{k}: not an option that can be set here (main has BwLimit)"
                            )))
                            }
                        }
                    }
                }
                _ => {
                    return Err(RcError::invalid(format!(
                        "no options block {name:?} (blocks: vfs, filter, main)"
                    )))
                }
            }
        }
        if let Some((args, built)) = filter {
            let o = vfs.get_or_insert_with(|| self.cfg.vfs_options());
            o.filter = ferry_vfs::FilterRef::new(built);
            *self.filter.lock().unwrap_or_else(|p| p.into_inner()) = args;
        }
        if let Some(o) = vfs {
            *self.cfg.vfs_set.write().unwrap_or_else(|p| p.into_inner()) = Some(o);
            tracing::info!("rc: VFS options set, for the VFSes opened from now on");
        }
        if let Some(r) = rates {
            self.bwlimit.set(r);
            tracing::info!("rc: bandwidth limit set to {}", r.describe());
        }
        Ok(())
    }
}

fn bad(key: &str, v: &Value, want: &str) -> RcError {
    RcError::invalid(format!("option {key}: {v} is not {want}"))
}

fn boolean(key: &str, v: &Value) -> Result<bool, RcError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(bad(key, v, "a boolean")),
    }
}

fn string(key: &str, v: &Value) -> Result<String, RcError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(bad(key, v, "a string")),
    }
}

fn strings(key: &str, v: &Value) -> Result<Vec<String>, RcError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a.iter().map(|x| string(key, x)).collect(),
        Value::String(s) => Ok(vec![s.clone()]),
        _ => Err(bad(key, v, "a list of strings")),
    }
}

/// A duration: a number of nanoseconds (as options/get shows it) or
/// rclone's text (`5m`, `1h30m`).
fn duration(key: &str, v: &Value) -> Result<Duration, RcError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_nanos)
            .ok_or_else(|| bad(key, v, "a duration")),
        Value::String(s) => {
            config::parse_duration(key, s).map_err(|e| RcError::invalid(e.to_string()))
        }
        _ => Err(bad(key, v, "a duration")),
    }
}

/// A size: a number of bytes (negative: off) or rclone's text (`10M`).
fn size(key: &str, v: &Value) -> Result<Option<u64>, RcError> {
    match v {
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => Ok(None),
        Value::Number(n) => n.as_u64().map(Some).ok_or_else(|| bad(key, v, "a size")),
        Value::String(s) => {
            config::parse_limit(key, s).map_err(|e| RcError::invalid(e.to_string()))
        }
        _ => Err(bad(key, v, "a size")),
    }
}

fn number(key: &str, v: &Value) -> Result<u64, RcError> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| bad(key, v, "a whole number")),
        Value::String(s) => s.parse().map_err(|_| bad(key, v, "a whole number")),
        _ => Err(bad(key, v, "a whole number")),
    }
}

/// Permission bits: a number, or octal text (`0755`).
fn perms(key: &str, v: &Value) -> Result<u32, RcError> {
    let n = match v {
        Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
            .map_err(|_| bad(key, v, "octal permissions"))?,
        _ => u32::try_from(number(key, v)?).map_err(|_| bad(key, v, "permissions"))?,
    };
    if n > 0o7777 {
        return Err(bad(key, v, "permissions"));
    }
    Ok(n)
}

fn set_vfs(o: &mut ferry_vfs::VfsOptions, key: &str, v: &Value) -> Result<(), RcError> {
    let small = |n: u64| u32::try_from(n).map_err(|_| bad(key, v, "a 32-bit number"));
    match key {
        "NoSeek" => o.no_seek = boolean(key, v)?,
        "NoChecksum" => o.no_checksum = boolean(key, v)?,
        "ReadOnly" => o.read_only = boolean(key, v)?,
        "NoModTime" => o.no_modtime = boolean(key, v)?,
        "DirCacheTime" => o.dir_cache_time = duration(key, v)?,
        "PollInterval" => o.poll_interval = duration(key, v)?,
        "Umask" => o.umask = perms(key, v)?,
        "UID" => o.uid = Some(small(number(key, v)?)?),
        "GID" => o.gid = Some(small(number(key, v)?)?),
        "DirPerms" => o.dir_perms = perms(key, v)?,
        "FilePerms" => o.file_perms = perms(key, v)?,
        "ChunkSize" => o.read_chunk_size = size(key, v)?.unwrap_or(0),
        "ChunkSizeLimit" => o.read_chunk_size_limit = size(key, v)?,
        "ChunkStreams" => {
            o.read_chunk_streams =
                usize::try_from(number(key, v)?).map_err(|_| bad(key, v, "a number of streams"))?
        }
        "CacheMode" => {
            o.cache_mode = match v {
                Value::Number(_) => match number(key, v)? {
                    0 => ferry_vfs::CacheMode::Off,
                    1 => ferry_vfs::CacheMode::Minimal,
                    2 => ferry_vfs::CacheMode::Writes,
                    3 => ferry_vfs::CacheMode::Full,
                    _ => return Err(bad(key, v, "a cache mode (0-3)")),
                },
                Value::String(s) => s.parse().map_err(|e: String| RcError::invalid(e))?,
                _ => return Err(bad(key, v, "a cache mode")),
            }
        }
        "CacheMaxAge" => o.cache.max_age = duration(key, v)?,
        "CacheMaxSize" => o.cache.max_size = size(key, v)?,
        "CacheMinFreeSpace" => o.cache.min_free_space = size(key, v)?,
        "CachePollInterval" => o.cache.poll_interval = duration(key, v)?,
        "WriteBack" => o.cache.write_back = duration(key, v)?,
        "ReadAhead" => o.cache.read_ahead = size(key, v)?.unwrap_or(0),
        "FastFingerprint" => o.cache.fast_fingerprint = boolean(key, v)?,
        _ => {
            return Err(RcError::invalid(format!(
                "vfs.{key}: not an option that can be set (options/get lists them; \
                 CaseInsensitive, WriteWait, ReadWait, UsedIsSize and DiskSpaceTotalSize are fixed)"
            )))
        }
    }
    Ok(())
}

fn set_filter(a: &mut FilterArgs, key: &str, v: &Value) -> Result<(), RcError> {
    match key {
        "FilterRule" => a.filter = strings(key, v)?,
        "FilterFrom" => a.filter_from = strings(key, v)?,
        "ExcludeRule" => a.exclude = strings(key, v)?,
        "ExcludeFrom" => a.exclude_from = strings(key, v)?,
        "ExcludeFile" => a.exclude_if_present = strings(key, v)?,
        "IncludeRule" => a.include = strings(key, v)?,
        "IncludeFrom" => a.include_from = strings(key, v)?,
        "FilesFrom" => a.files_from = strings(key, v)?,
        "FilesFromRaw" => a.files_from_raw = strings(key, v)?,
        "MinAge" => a.min_age = string(key, v)?,
        "MaxAge" => a.max_age = string(key, v)?,
        "MinSize" => a.min_size = string(key, v)?,
        "MaxSize" => a.max_size = string(key, v)?,
        "IgnoreCase" => a.ignore_case = boolean(key, v)?,
        "DeleteExcluded" if !boolean(key, v)? => {}
        _ => {
            return Err(RcError::invalid(format!(
                "filter.{key}: not an option that can be set (options/get lists them)"
            )))
        }
    }
    // A size of -1 (how Go shows off) means off here too.
    for s in [&mut a.min_size, &mut a.max_size] {
        if s == "-1" {
            *s = "off".into();
        }
    }
    Ok(())
}

/// What the servers serve.
pub struct Parts {
    pub cfg: Arc<ServeConfig>,
    pub pool: VfsPool<Target>,
    pub control: Arc<ferry_server::control::Control>,
    pub bwlimit: Option<Arc<ferry_layers::BwLimiter>>,
    pub filter: FilterArgs,
    pub bwlimit_file: String,
    pub reload: Arc<dyn Fn() -> Result<Map<String, Value>, RcError> + Send + Sync>,
}

/// The metrics page: the counters, with the state values set from the
/// statistics and the caches at each scrape.
fn render(
    metrics: Arc<ferry_metrics::Metrics>,
    stats: Arc<ferry_stats::Stats>,
    pool: VfsPool<Target>,
) -> Arc<dyn Fn() -> String + Send + Sync> {
    Arc::new(move || {
        metrics.encode(|m| {
            let s = stats.snapshot();
            m.set_accounting(&ferry_metrics::Accounting {
                bytes: s.bytes,
                transfers: s.transfers,
                errors: s.errors,
                deletes: s.deletes,
                deleted_dirs: s.deleted_dirs,
                renames: s.renames,
                checks: 0,
                transferring: s.transferring.len() as u64,
                speed: s.speed,
                fatal: false,
                retry_error: s.errors > 0,
            });
            let mut c = ferry_metrics::Caches::default();
            for (_, vfs) in pool.entries() {
                let v = vfs.cache_stats();
                c.vfses += 1;
                c.dirs += v.dirs as u64;
                c.entries += v.entries as u64;
                c.cached_files += v.cached_files as u64;
                c.cached_bytes += v.cached_bytes;
                c.dirty_files += v.dirty_files as u64;
                c.uploading += v.uploading as u64;
                c.uploads_queued += v.uploads_queued as u64;
            }
            m.set_caches(&c);
        })
    })
}

/// Bind every address of `server` (one line in the log each), or fail
/// the start.
async fn bind(flag: &str, server: &HttpServer) -> anyhow::Result<Vec<tokio::net::TcpListener>> {
    let mut out = Vec::new();
    for addr in &server.addrs {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| config::UsageError(format!("cannot listen on --{flag} {addr}: {e}")))?;
        out.push(l);
    }
    Ok(out)
}

/// Start `--rc` and `--metrics-addr` if set: bound before this returns
/// (a taken port stops the start), served until `stop` turns true.
pub async fn start(
    parts: Parts,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let cfg = parts.cfg.clone();
    let page = cfg
        .metrics
        .clone()
        .map(|m| render(m, cfg.stats.stats.clone(), parts.pool.clone()));
    let mut tasks = Vec::new();
    if let Some(server) = &cfg.metrics_server {
        let rc = ferry_rc::Rc::new(Default::default(), server.opts.clone(), page.clone());
        let scheme = if server.opts.tls.is_some() {
            "https"
        } else {
            "http"
        };
        for l in bind("metrics-addr", server).await? {
            tracing::info!("serving metrics on {scheme}://{}/metrics", l.local_addr()?);
            tasks.push(tokio::spawn(ferry_rc::serve(rc.clone(), l, stop.clone())));
        }
    }
    let Some(server) = &cfg.rc else {
        return Ok(tasks);
    };
    let bwlimit = parts
        .bwlimit
        .clone()
        .expect("the config makes a limiter when --rc is on");
    let pool = parts.pool.clone();
    let ctx = Context {
        stats: cfg.stats.stats.clone(),
        bwlimit: bwlimit.clone(),
        vfses: Arc::new(move || {
            pool.entries()
                .into_iter()
                .map(|(t, v)| (fs_name(&t), v))
                .collect()
        }),
        control: parts.control.clone(),
        reload: parts.reload.clone(),
        options: Arc::new(Blocks {
            cfg: cfg.clone(),
            filter: Mutex::new(parts.filter),
            bwlimit_file: parts.bwlimit_file,
            bwlimit,
        }),
    };
    let mut opts = server.opts.clone();
    if matches!(opts.auth, ferry_rc::Auth::None) && !opts.no_auth {
        tracing::info!(
            "rc: no --rc-user/--rc-htpasswd: calls that change things are refused (--rc-no-auth allows them)"
        );
    }
    opts.metrics = opts.metrics && page.is_some();
    let rc = ferry_rc::Rc::new(ferry_rc::calls::all(ctx), opts, page);
    let scheme = if server.opts.tls.is_some() {
        "https"
    } else {
        "http"
    };
    for l in bind("rc-addr", server).await? {
        tracing::info!(
            "serving the remote control API on {scheme}://{}/",
            l.local_addr()?
        );
        tasks.push(tokio::spawn(ferry_rc::serve(rc.clone(), l, stop.clone())));
    }
    Ok(tasks)
}
