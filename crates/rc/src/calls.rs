//! The calls: rclone's `rc/*`, `core/*`, `vfs/*`, `options/*`, and
//! Ferry's own `ferry/*`, over a [`Context`] the program gives.

use std::sync::Arc;
use std::time::Duration;

use ferry_vfs::backend::RelPath;
use ferry_vfs::Vfs;
use serde_json::{json, Map, Value};

use crate::{Call, CallResult, Calls, Params, RcError};

/// The live VFSes, each with its name (`remote:path`, as `fs=` takes it).
pub type VfsList = Arc<dyn Fn() -> Vec<(String, Vfs)> + Send + Sync>;

/// The option blocks (`options/get`, `options/set`).
pub trait OptionBlocks: Send + Sync {
    /// Every block: name to its options, with Go's field names.
    fn get(&self) -> Map<String, Value>;
    /// Change options: block name to the fields to set.
    fn set(&self, blocks: &Map<String, Value>) -> Result<(), RcError>;
}

/// What the calls work on.
#[derive(Clone)]
pub struct Context {
    /// The transfer statistics.
    pub stats: Arc<ferry_stats::Stats>,
    /// The process's bandwidth limiter.
    pub bwlimit: Arc<ferry_layers::BwLimiter>,
    /// The live VFSes.
    pub vfses: VfsList,
    /// The live sessions and host keys.
    pub control: Arc<ferry_server::control::Control>,
    /// Reads authorized_keys and host keys again; says what it did.
    pub reload: Arc<dyn Fn() -> Result<Map<String, Value>, RcError> + Send + Sync>,
    /// The option blocks.
    pub options: Arc<dyn OptionBlocks>,
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn add<F, Fut>(
    calls: &mut Calls,
    path: &'static str,
    auth: bool,
    title: &'static str,
    help: &'static str,
    f: F,
) where
    F: Fn(Params) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = CallResult> + Send + 'static,
{
    calls.add(Call {
        path,
        title,
        help,
        auth_required: auth,
        handler: Arc::new(move |p| Box::pin(f(p))),
    });
}

/// Every call over `ctx`.
pub fn all(ctx: Context) -> Calls {
    let mut calls = Calls::default();
    core(&mut calls, &ctx);
    vfs(&mut calls, &ctx);
    options(&mut calls, &ctx);
    ferry(&mut calls, &ctx);
    let list: Arc<std::sync::OnceLock<Vec<Value>>> = Arc::default();
    let shared = list.clone();
    add(
        &mut calls,
        "rc/list",
        false,
        "List all the registered remote control commands",
        "Returns commands: a list of every call with its Path, Title, Help and AuthRequired.",
        move |_p| {
            let list = shared.clone();
            async move {
                Ok(obj(
                    json!({ "commands": list.get().cloned().unwrap_or_default() }),
                ))
            }
        },
    );
    add(
        &mut calls,
        "rc/noop",
        false,
        "Echo the input to the output parameters",
        "Returns its parameters, for testing.",
        |p: Params| async move { Ok(p.0) },
    );
    add(
        &mut calls,
        "rc/noopauth",
        true,
        "Echo the input to the output parameters requiring auth",
        "Returns its parameters, for testing auth.",
        |p: Params| async move { Ok(p.0) },
    );
    add(
        &mut calls,
        "rc/error",
        false,
        "This returns an error",
        "Returns an error with the input as part of its error string, for testing.",
        |p: Params| async move {
            Err(RcError::failed(format!(
                "arbitrary error on input {}",
                Value::Object(p.0)
            )))
        },
    );
    let described: Vec<Value> = calls
        .iter()
        .chain(crate_job_calls().iter())
        .map(|c| json!({"Path": c.path, "Title": c.title, "Help": c.help, "AuthRequired": c.auth_required, "NeedsRequest": false, "NeedsResponse": false}))
        .collect();
    let _ = list.set(described);
    calls
}

/// The job calls as `rc/list` shows them (the server adds the real ones).
fn crate_job_calls() -> Vec<Call> {
    let mut c = Calls::default();
    let none = |_p: Params| async move { Ok(Map::new()) };
    add(
        &mut c,
        "job/status",
        false,
        "Reads the status of the job ID",
        "Parameters: jobid.",
        none,
    );
    add(
        &mut c,
        "job/list",
        false,
        "Lists the IDs of the running jobs",
        "",
        none,
    );
    add(
        &mut c,
        "job/stop",
        true,
        "Stop the running job",
        "Parameters: jobid.",
        none,
    );
    c.iter().cloned().collect()
}

fn bwlimit_reply(l: &ferry_layers::BwLimiter) -> Map<String, Value> {
    let r = l.current();
    let n = |v: Option<u64>| v.map_or(-1, |b| b as i64);
    let both = if r.tx == r.rx { n(r.tx) } else { -1 };
    obj(json!({
        "bytesPerSecond": both,
        "bytesPerSecondTx": n(r.tx),
        "bytesPerSecondRx": n(r.rx),
        "rate": r.describe(),
    }))
}

fn core(calls: &mut Calls, ctx: &Context) {
    add(
        calls,
        "core/version",
        false,
        "Shows the current version of rclone and the Go runtime",
        "Returns version, decomposed, isGit, isBeta, os, arch, goVersion, linking, goTags.",
        |_p| async move {
            let v = env!("CARGO_PKG_VERSION");
            let decomposed: Vec<u64> = v.split('.').filter_map(|x| x.parse().ok()).collect();
            Ok(obj(json!({
                "version": format!("v{v}"),
                "decomposed": decomposed,
                "isGit": false,
                "isBeta": v.contains('-'),
                "os": std::env::consts::OS,
                "arch": match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a },
                "goVersion": "none (ferry is written in Rust)",
                "linking": "dynamic",
                "goTags": "none",
            })))
        },
    );
    add(
        calls,
        "core/pid",
        false,
        "Return PID of current process",
        "Returns pid.",
        |_p| async move { Ok(obj(json!({ "pid": std::process::id() }))) },
    );
    add(calls, "core/memstats", false, "Returns the memory statistics", "Returns the process's memory use with the names of Go's runtime.MemStats where they mean the same (Sys, HeapAlloc, ...).", |_p| async move { Ok(memstats()) });
    let stats = ctx.stats.clone();
    add(calls, "core/stats", false, "Returns stats about current transfers", "Returns bytes, checks, deletedDirs, deletes, elapsedTime, errors, eta, fatalError, lastError, renames, retryError, speed, totalBytes, totalChecks, totalTransfers, transferTime, transfers and transferring. The group parameter is accepted; every transfer of the server is in the one group.", move |_p| {
        let stats = stats.clone();
        async move { Ok(core_stats(&stats.snapshot())) }
    });
    let stats = ctx.stats.clone();
    add(
        calls,
        "core/stats-reset",
        false,
        "Reset stats",
        "Zeroes the counters; transfers in progress go on.",
        move |_p| {
            let stats = stats.clone();
            async move {
                stats.reset();
                Ok(Map::new())
            }
        },
    );
    let l = ctx.bwlimit.clone();
    add(calls, "core/bwlimit", true, "Set the bandwidth limit", "Parameters: rate - RATE or TX:RX, as --bwlimit takes (off for none). Without rate, reads the limit. Returns bytesPerSecond, bytesPerSecondTx, bytesPerSecondRx (-1 for no limit) and rate.", move |p: Params| {
        let l = l.clone();
        async move {
            if let Some(rate) = p.string("rate")? {
                let r = ferry_layers::Rates::parse(&rate).map_err(|e| RcError::invalid(format!("bad bwlimit: {e}")))?;
                l.set(r);
                tracing::info!("rc: bandwidth limit set to {}", r.describe());
            }
            Ok(bwlimit_reply(&l))
        }
    });
}

/// core/stats in rclone's shape.
pub fn core_stats(s: &ferry_stats::Snapshot) -> Map<String, Value> {
    let transferring: Vec<Value> = s
        .transferring
        .iter()
        .map(|t| {
            let pct = match t.size {
                Some(size) if size > 0 => (t.bytes.saturating_mul(100) / size) as i64,
                _ => 0,
            };
            let eta = match t.size {
                Some(size) if t.speed > 0.0 => {
                    Value::from(((size.saturating_sub(t.bytes)) as f64 / t.speed).round() as i64)
                }
                _ => Value::Null,
            };
            json!({
                "bytes": t.bytes,
                "eta": eta,
                "group": "global_stats",
                "name": t.name,
                "percentage": pct,
                "size": t.size.map_or(-1, |n| n as i64),
                "speed": t.speed,
                "speedAvg": t.speed_since_start,
            })
        })
        .collect();
    let mut m = obj(json!({
        "bytes": s.bytes,
        "checks": 0,
        "deletedDirs": s.deleted_dirs,
        "deletes": s.deletes,
        "elapsedTime": s.elapsed.as_secs_f64(),
        "errors": s.errors,
        "eta": s.eta().map(|d| d.as_secs()),
        "fatalError": false,
        "renames": s.renames,
        "retryError": s.errors > 0,
        "speed": s.speed,
        "totalBytes": s.total_bytes,
        "totalChecks": 0,
        "totalTransfers": s.total_transfers,
        "transferTime": s.elapsed.as_secs_f64(),
        "transfers": s.transfers,
    }));
    if let Some(e) = &s.last_error {
        m.insert("lastError".into(), Value::from(e.clone()));
    }
    if !transferring.is_empty() {
        m.insert("transferring".into(), Value::Array(transferring));
    }
    m
}

/// The process's memory, from the kernel and the allocator.
fn memstats() -> Map<String, Value> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    let rss = kb("VmRSS:");
    let (heap_alloc, heap_sys, heap_idle, heap_released) = heap();
    obj(json!({
        "Sys": kb("VmSize:"),
        "Alloc": heap_alloc,
        "TotalAlloc": heap_alloc,
        "HeapAlloc": heap_alloc,
        "HeapSys": heap_sys,
        "HeapIdle": heap_idle,
        "HeapInuse": heap_alloc,
        "HeapReleased": heap_released,
        "HeapObjects": 0,
        "Mallocs": 0,
        "Frees": 0,
        "StackInuse": kb("VmStk:"),
        "StackSys": kb("VmStk:"),
        "MSpanInuse": 0, "MSpanSys": 0, "MCacheInuse": 0, "MCacheSys": 0,
        "BuckHashSys": 0, "GCSys": 0, "OtherSys": 0,
        "RSS": rss,
        "Threads": status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0),
    }))
}

/// (in use, obtained from the system, free in the heap, free given back)
/// bytes, from glibc's mallinfo2.
fn heap() -> (u64, u64, u64, u64) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters.
        #[allow(unsafe_code)]
        let m = unsafe { libc::mallinfo2() };
        let sys = (m.arena + m.hblkhd) as u64;
        (
            (m.uordblks + m.hblkhd) as u64,
            sys,
            m.fordblks as u64,
            m.keepcost as u64,
        )
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        (0, 0, 0, 0)
    }
}

/// The VFS `fs=` names, or the only one; rclone's messages.
fn pick(list: &VfsList, p: &mut Params) -> Result<(String, Vfs), RcError> {
    let all = list();
    let want = p.string("fs")?;
    p.take("fs");
    match want {
        Some(name) => all
            .into_iter()
            .find(|(n, _)| *n == name || n.trim_end_matches('/') == name.trim_end_matches('/'))
            .ok_or_else(|| RcError::not_found(format!("no VFS found with name {name:?}"))),
        None => match all.len() {
            0 => Err(RcError::not_found("no VFS active")),
            1 => Ok(all.into_iter().next().expect("one")),
            _ => Err(RcError::invalid(
                "more than one VFS active - need \"fs\" parameter",
            )),
        },
    }
}

/// The values of `key`, `key2`, `key3`, ... (rclone's numbered keys).
fn numbered(p: &Params, key: &str) -> Result<Vec<(String, String)>, RcError> {
    let mut out = Vec::new();
    for (k, _) in p.0.iter() {
        let Some(rest) = k.strip_prefix(key) else {
            continue;
        };
        if rest.is_empty() || rest.chars().all(|c| c.is_ascii_digit()) {
            if let Some(v) = p.string(k)? {
                out.push((k.clone(), v));
            }
        }
    }
    Ok(out)
}

fn rel(path: &str) -> Result<RelPath, RcError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(RelPath::root());
    }
    RelPath::new(trimmed.as_bytes().to_vec())
        .map_err(|e| RcError::invalid(format!("bad path {path:?}: {e}")))
}

fn vfs(calls: &mut Calls, ctx: &Context) {
    let list = ctx.vfses.clone();
    add(
        calls,
        "vfs/list",
        false,
        "List active VFSes",
        "Returns vfses: the names of the live VFSes, as fs= takes them.",
        move |_p| {
            let list = list.clone();
            async move {
                let names: Vec<String> = list().into_iter().map(|(n, _)| n).collect();
                Ok(obj(json!({ "vfses": names })))
            }
        },
    );
    let list = ctx.vfses.clone();
    add(calls, "vfs/forget", true, "Forget files or directories in the directory cache", "Parameters: file, file2, ... and dir, dir2, ...: paths to forget. With none, the whole cache is forgotten. Returns forgotten: the paths.", move |mut p: Params| {
        let list = list.clone();
        async move {
            let (_, vfs) = pick(&list, &mut p)?;
            let files = numbered(&p, "file")?;
            let dirs = numbered(&p, "dir")?;
            if p.0.keys().any(|k| !k.starts_with("file") && !k.starts_with("dir")) {
                let k = p.0.keys().find(|k| !k.starts_with("file") && !k.starts_with("dir")).cloned().unwrap_or_default();
                return Err(RcError::invalid(format!("invalid key {k:?}")));
            }
            if files.is_empty() && dirs.is_empty() {
                vfs.forget(None);
                return Ok(obj(json!({ "forgotten": [] })));
            }
            let mut forgotten = Vec::new();
            for (_, path) in files.iter().chain(dirs.iter()) {
                vfs.forget(Some(&rel(path)?));
                forgotten.push(Value::from(path.clone()));
            }
            Ok(obj(json!({ "forgotten": forgotten })))
        }
    });
    let list = ctx.vfses.clone();
    add(calls, "vfs/refresh", true, "Refresh the directory cache", "Parameters: dir, dir2, ...: directories to read afresh (none: the root); recursive=true to read everything below too. Returns result: each directory and OK or its error.", move |mut p: Params| {
        let list = list.clone();
        async move {
            let (_, vfs) = pick(&list, &mut p)?;
            let recursive = p.bool("recursive")?.unwrap_or(false);
            p.take("recursive");
            let mut dirs = numbered(&p, "dir")?;
            if let Some(k) = p.0.keys().find(|k| !k.starts_with("dir")) {
                return Err(RcError::invalid(format!("invalid key {k:?}")));
            }
            if dirs.is_empty() {
                dirs.push(("dir".into(), String::new()));
            }
            let mut result = Map::new();
            for (_, d) in dirs {
                let r = match rel(&d) {
                    Ok(path) => match vfs.refresh(&path, recursive).await {
                        Ok(_) => Value::from("OK"),
                        Err(e) => Value::from(e.to_string()),
                    },
                    Err(e) => Value::from(e.message),
                };
                result.insert(d, r);
            }
            Ok(obj(json!({ "result": result })))
        }
    });
    let list = ctx.vfses.clone();
    add(
        calls,
        "vfs/stats",
        false,
        "Stats for a VFS",
        "Returns fs, inUse, metadataCache {dirs, files}, diskCache (cache modes but off) and opt.",
        move |mut p: Params| {
            let list = list.clone();
            async move {
                let (name, vfs) = pick(&list, &mut p)?;
                p.only(&[])?;
                let s = vfs.cache_stats();
                let mut m = obj(json!({
                    "fs": name,
                    "inUse": 1,
                    "metadataCache": { "dirs": s.dirs, "files": s.entries },
                    "opt": vfs_opt(vfs.options()),
                }));
                if vfs.options().cache_mode != ferry_vfs::CacheMode::Off {
                    m.insert("diskCache".into(), json!({
                    "bytesUsed": s.cached_bytes,
                    "erroredFiles": 0,
                    "files": s.cached_files,
                    "hashType": 0,
                    "outOfSpace": false,
                    "path": s.data_dir.map(|p| p.display().to_string()).unwrap_or_default(),
                    "pathMeta": s.meta_dir.map(|p| p.display().to_string()).unwrap_or_default(),
                    "uploadsInProgress": s.uploading,
                    "uploadsQueued": s.uploads_queued,
                }));
                }
                Ok(m)
            }
        },
    );
    let list = ctx.vfses.clone();
    add(calls, "vfs/poll-interval", true, "Get the status or update the value of the poll-interval option", "Parameters: interval - a duration to set (0 turns polling off); timeout - how long to wait for the change (default 10s). Ferry watches changes (inotify for local disks) rather than polling: the interval cannot be changed while serving.", move |mut p: Params| {
        let list = list.clone();
        async move {
            let (_, vfs) = pick(&list, &mut p)?;
            p.only(&["interval", "timeout"])?;
            let supported = vfs.capabilities().change_watch;
            let interval = vfs.options().poll_interval;
            if p.get("interval").is_some() {
                p.duration("interval")?;
                return Err(RcError::invalid("the poll interval cannot be changed while serving: set --poll-interval at start"));
            }
            Ok(obj(json!({
                "enabled": supported && !interval.is_zero(),
                "supported": supported,
                "interval": {
                    "raw": interval.as_nanos() as u64,
                    "seconds": interval.as_secs(),
                    "string": crate::params::go_duration(interval),
                },
            })))
        }
    });
    let list = ctx.vfses.clone();
    add(calls, "vfs/queue", false, "Queue info for a VFS", "Returns queue: the files waiting for their upload from the file cache, each with name, id, size, expiry (seconds until its upload; negative when overdue), tries, delay and uploading.", move |mut p: Params| {
        let list = list.clone();
        async move {
            let (_, vfs) = pick(&list, &mut p)?;
            p.only(&[])?;
            let q: Vec<Value> = vfs
                .upload_queue()
                .into_iter()
                .map(|u| {
                    let expiry = u.expiry.as_secs_f64() - u.overdue.as_secs_f64();
                    json!({
                        "name": String::from_utf8_lossy(u.name.as_bytes()),
                        "id": u.id,
                        "size": u.size,
                        "expiry": expiry,
                        "tries": u.tries,
                        "delay": expiry.max(0.0),
                        "uploading": u.uploading,
                    })
                })
                .collect();
            Ok(obj(json!({ "queue": q })))
        }
    });
    let list = ctx.vfses.clone();
    add(calls, "vfs/queue-set-expiry", true, "Set the expiry time for an item queued for upload", "Parameters: id - the item's id from vfs/queue; expiry - seconds from now until its upload starts (0: now); relative - add expiry to the item's present expiry instead.", move |mut p: Params| {
        let list = list.clone();
        async move {
            let (_, vfs) = pick(&list, &mut p)?;
            p.only(&["id", "expiry", "relative"])?;
            let id = p.int("id")?.ok_or_else(|| RcError::missing("id"))?;
            let expiry = p.float("expiry")?.ok_or_else(|| RcError::missing("expiry"))?;
            let relative = p.bool("relative")?.unwrap_or(false);
            let item = vfs
                .upload_queue()
                .into_iter()
                .find(|u| u.id as i64 == id)
                .ok_or_else(|| RcError::not_found(format!("item with id {id} not found in the upload queue")))?;
            let mut at = expiry;
            if relative {
                at += item.expiry.as_secs_f64() - item.overdue.as_secs_f64();
            }
            let at = Duration::from_secs_f64(at.max(0.0));
            if !vfs.set_upload_expiry(item.id, at) {
                return Err(RcError::not_found(format!("item with id {id} not found in the upload queue")));
            }
            Ok(Map::new())
        }
    });
}

/// The VFS options in rclone's `opt` shape (Go names, nanoseconds,
/// modes as numbers).
pub fn vfs_opt(o: &ferry_vfs::VfsOptions) -> Value {
    let ns = |d: Duration| d.as_nanos() as u64;
    let mode = match o.cache_mode {
        ferry_vfs::CacheMode::Off => 0,
        ferry_vfs::CacheMode::Minimal => 1,
        ferry_vfs::CacheMode::Writes => 2,
        ferry_vfs::CacheMode::Full => 3,
    };
    json!({
        "NoSeek": o.no_seek,
        "NoChecksum": o.no_checksum,
        "ReadOnly": o.read_only,
        "NoModTime": o.no_modtime,
        "DirCacheTime": ns(o.dir_cache_time),
        "PollInterval": ns(o.poll_interval),
        "Umask": o.umask,
        "UID": o.uid.unwrap_or(o.default_uid),
        "GID": o.gid.unwrap_or(o.default_gid),
        "DirPerms": o.dir_perms,
        "FilePerms": o.file_perms,
        "ChunkSize": o.read_chunk_size,
        "ChunkSizeLimit": o.read_chunk_size_limit.map_or(-1, |n| n as i64),
        "ChunkStreams": o.read_chunk_streams,
        "CacheMode": mode,
        "CacheMaxAge": ns(o.cache.max_age),
        "CacheMaxSize": o.cache.max_size.map_or(-1, |n| n as i64),
        "CacheMinFreeSpace": o.cache.min_free_space.map_or(-1, |n| n as i64),
        "CachePollInterval": ns(o.cache.poll_interval),
        "CaseInsensitive": false,
        "WriteWait": 1_000_000_000u64,
        "ReadWait": 20_000_000u64,
        "WriteBack": ns(o.cache.write_back),
        "ReadAhead": o.cache.read_ahead,
        "UsedIsSize": false,
        "FastFingerprint": o.cache.fast_fingerprint,
        "DiskSpaceTotalSize": -1,
    })
}

fn options(calls: &mut Calls, ctx: &Context) {
    let o = ctx.options.clone();
    add(
        calls,
        "options/blocks",
        false,
        "List all the option blocks",
        "Returns options: the names of the blocks options/get shows.",
        move |_p| {
            let o = o.clone();
            async move {
                let names: Vec<String> = o.get().keys().cloned().collect();
                Ok(obj(json!({ "options": names })))
            }
        },
    );
    let o = ctx.options.clone();
    add(calls, "options/get", true, "Get all the global options", "Returns the blocks vfs, filter and main (the bandwidth limits), with Go's field names. blocks=a,b picks some.", move |p: Params| {
        let o = o.clone();
        async move {
            let mut all = o.get();
            if let Some(want) = p.string("blocks")? {
                let want: Vec<&str> = want.split(',').map(str::trim).collect();
                all.retain(|k, _| want.contains(&k.as_str()));
            }
            Ok(all)
        }
    });
    let o = ctx.options.clone();
    add(calls, "options/set", true, "Set an option", "Parameters: blocks of options as options/get shows them, e.g. {\"main\": {\"BwLimit\": \"1M\"}}. main.BwLimit applies at once; vfs and filter options apply to the VFSes opened afterwards (an auth proxy's new logins).", move |p: Params| {
        let o = o.clone();
        async move {
            o.set(&p.0)?;
            Ok(Map::new())
        }
    });
}

fn ferry(calls: &mut Calls, ctx: &Context) {
    let c = ctx.control.clone();
    add(calls, "ferry/sessions", true, "List the logged-in SSH sessions", "Returns sessions: each with id, user, remoteAddr, via, method, client, startTime, bytesRead, bytesWritten and openFiles.", move |_p| {
        let c = c.clone();
        async move {
            let list: Vec<Value> = c
                .sessions()
                .into_iter()
                .map(|s| {
                    let started = jiff::Timestamp::try_from(s.started).map(|t| t.to_string()).unwrap_or_default();
                    json!({
                        "id": s.id,
                        "user": s.user,
                        "remoteAddr": s.addr.to_string(),
                        "via": s.via.map(|v| v.to_string()),
                        "method": s.method,
                        "client": s.client,
                        "startTime": started,
                        "bytesRead": s.bytes_read,
                        "bytesWritten": s.bytes_written,
                        "openFiles": s.open_files,
                    })
                })
                .collect();
            Ok(obj(json!({ "sessions": list })))
        }
    });
    let c = ctx.control.clone();
    add(calls, "ferry/disconnect", true, "End an SSH session", "Parameters: id - the session's id from ferry/sessions. Its uploads in progress are discarded, as when the client vanishes.", move |p: Params| {
        let c = c.clone();
        async move {
            let id = p.int("id")?.ok_or_else(|| RcError::missing("id"))?;
            if !u64::try_from(id).is_ok_and(|id| c.disconnect(id)) {
                return Err(RcError::not_found(format!("no session with id {id}")));
            }
            Ok(obj(json!({ "disconnected": id })))
        }
    });
    let r = ctx.reload.clone();
    add(calls, "ferry/reload", true, "Read authorized_keys and the host keys again", "New connections use what was read; connections already open keep theirs. SIGHUP does the same after flushing the directory caches.", move |_p| {
        let r = r.clone();
        async move { r() }
    });
}
