//! Transfer statistics, as rclone keeps and prints them (`--stats`): bytes
//! moved, transfers done and in progress, errors, deletes and renames, an
//! average speed; and rclone's text block for the log.
//!
//! One [`Stats`] for the process. A transfer is each SFTP file read or
//! write from OPEN to CLOSE, and each write-back upload of the file cache:
//! [`Stats::start`] gives a [`Transfer`] that counts its bytes and ends
//! with [`Transfer::finish`]; one dropped unfinished (superseded, given
//! up) leaves the list without counting as done or failed.
//! [`Stats::tick`], once a second, moves the averages. The numbers are
//! what the remote-control API's `core/stats` will serve
//! ([`Stats::snapshot`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// rclone's averaging: each second's rate weighs 1/16 once warmed up.
const AVERAGE_PERIOD: u32 = 16;

/// An exponentially weighted average of bytes per second, ticked once a
/// second (rclone's: a soft start over the first 16 ticks).
#[derive(Debug, Clone)]
struct Average {
    speed: f64,
    period: u32,
    /// The byte count at the last tick.
    seen: u64,
    since: Instant,
}

impl Average {
    fn new(now: Instant) -> Average {
        Average {
            speed: 0.0,
            period: 0,
            seen: 0,
            since: now,
        }
    }

    /// One second's rate into the average; `total` is the byte count now.
    fn tick(&mut self, total: u64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64();
        let moved = total.saturating_sub(self.seen);
        self.seen = total;
        let rate = if elapsed > 0.0 {
            moved as f64 / elapsed
        } else {
            0.0
        };
        if self.period < AVERAGE_PERIOD {
            self.period += 1;
        }
        let p = self.period as f64;
        self.speed = (rate + self.speed * (p - 1.0)) / p;
        self.since = now;
    }
}

#[derive(Debug)]
struct Live {
    name: String,
    size: Option<u64>,
    bytes: Arc<AtomicU64>,
    started: Instant,
    average: Average,
}

#[derive(Debug)]
struct Inner {
    errors: u64,
    last_error: Option<String>,
    deletes: u64,
    deleted_dirs: u64,
    renames: u64,
    transfers: u64,
    live: BTreeMap<u64, Live>,
    next: u64,
    average: Average,
}

/// The process's transfer statistics. See the module docs.
#[derive(Debug)]
pub struct Stats {
    start: Instant,
    /// Bytes moved: counted without the lock (every READ and WRITE adds).
    bytes: AtomicU64,
    inner: Mutex<Inner>,
}

/// One transfer in progress; see [`Stats::start`]. Counting its bytes
/// takes no lock.
#[derive(Debug)]
pub struct Transfer {
    stats: Arc<Stats>,
    id: u64,
    bytes: Arc<AtomicU64>,
    done: AtomicBool,
}

/// A transfer as [`Snapshot`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transferring {
    /// The path, from the served root.
    pub name: String,
    /// Its size, if known.
    pub size: Option<u64>,
    /// Bytes moved so far.
    pub bytes: u64,
    /// Its average speed, bytes per second.
    pub speed: f64,
    /// Bytes per second since it started.
    pub speed_since_start: f64,
}

/// The numbers at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Bytes moved, transfers in progress included.
    pub bytes: u64,
    /// `bytes` plus what the transfers in progress of known size still
    /// have to move.
    pub total_bytes: u64,
    /// Errors so far.
    pub errors: u64,
    /// The last one.
    pub last_error: Option<String>,
    /// Files deleted.
    pub deletes: u64,
    /// Directories deleted.
    pub deleted_dirs: u64,
    /// Renames.
    pub renames: u64,
    /// Transfers finished.
    pub transfers: u64,
    /// Finished and in progress.
    pub total_transfers: u64,
    /// The average speed, bytes per second.
    pub speed: f64,
    /// Since the server started.
    pub elapsed: Duration,
    /// The transfers in progress, oldest first.
    pub transferring: Vec<Transferring>,
}

impl Snapshot {
    /// The estimated time to finish what is in progress, if it can be told.
    pub fn eta(&self) -> Option<Duration> {
        eta(self.bytes, self.total_bytes, self.speed)
    }
}

impl Stats {
    /// Statistics from now.
    pub fn new() -> Arc<Stats> {
        let now = Instant::now();
        Arc::new(Stats {
            start: now,
            bytes: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                errors: 0,
                last_error: None,
                deletes: 0,
                deleted_dirs: 0,
                renames: 0,
                transfers: 0,
                live: BTreeMap::new(),
                next: 0,
                average: Average::new(now),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Zero the counters (`core/stats-reset`): bytes, errors, deletes,
    /// renames and finished transfers; transfers in progress go on.
    pub fn reset(&self) {
        let mut s = self.lock();
        self.bytes.store(0, Ordering::Relaxed);
        s.errors = 0;
        s.last_error = None;
        s.deletes = 0;
        s.deleted_dirs = 0;
        s.renames = 0;
        s.transfers = 0;
        s.average = Average::new(Instant::now());
    }

    /// A transfer of `name` (of `size`, if known) starts.
    pub fn start(self: &Arc<Self>, name: &str, size: Option<u64>) -> Transfer {
        let now = Instant::now();
        let bytes = Arc::new(AtomicU64::new(0));
        let mut s = self.lock();
        let id = s.next;
        s.next += 1;
        s.live.insert(
            id,
            Live {
                name: name.to_string(),
                size,
                bytes: bytes.clone(),
                started: now,
                average: Average::new(now),
            },
        );
        Transfer {
            stats: self.clone(),
            id,
            bytes,
            done: AtomicBool::new(false),
        }
    }

    /// Move the averages on: called once a second.
    pub fn tick(&self) {
        let now = Instant::now();
        let total = self.bytes.load(Ordering::Relaxed);
        let mut s = self.lock();
        s.average.tick(total, now);
        for l in s.live.values_mut() {
            l.average.tick(l.bytes.load(Ordering::Relaxed), now);
        }
    }

    /// An error outside any transfer.
    pub fn error(&self, message: &str) {
        let mut s = self.lock();
        s.errors += 1;
        s.last_error = Some(message.to_string());
    }

    /// A file (or with `dir` a directory) was deleted.
    pub fn deleted(&self, dir: bool) {
        let mut s = self.lock();
        if dir {
            s.deleted_dirs += 1;
        } else {
            s.deletes += 1;
        }
    }

    /// Something was renamed.
    pub fn renamed(&self) {
        self.lock().renames += 1;
    }

    /// The numbers now.
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let s = self.lock();
        let bytes = self.bytes.load(Ordering::Relaxed);
        let remaining: u64 = s
            .live
            .values()
            .filter_map(|l| {
                l.size
                    .map(|size| size.saturating_sub(l.bytes.load(Ordering::Relaxed)))
            })
            .sum();
        let mut transferring: Vec<(&Live, Transferring)> = s
            .live
            .values()
            .map(|l| {
                let secs = now.saturating_duration_since(l.started).as_secs_f64();
                let done = l.bytes.load(Ordering::Relaxed);
                (
                    l,
                    Transferring {
                        name: l.name.clone(),
                        size: l.size,
                        bytes: done,
                        speed: l.average.speed,
                        speed_since_start: if secs > 0.0 { done as f64 / secs } else { 0.0 },
                    },
                )
            })
            .collect();
        transferring
            .sort_by(|(a, ta), (b, tb)| a.started.cmp(&b.started).then(ta.name.cmp(&tb.name)));
        Snapshot {
            bytes,
            total_bytes: bytes + remaining,
            errors: s.errors,
            last_error: s.last_error.clone(),
            deletes: s.deletes,
            deleted_dirs: s.deleted_dirs,
            renames: s.renames,
            transfers: s.transfers,
            total_transfers: s.transfers + s.live.len() as u64,
            speed: s.average.speed,
            elapsed: now.saturating_duration_since(self.start),
            transferring: transferring.into_iter().map(|(_, t)| t).collect(),
        }
    }
}

impl Transfer {
    /// `n` more bytes moved.
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.stats.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Its size became known.
    pub fn set_size(&self, size: u64) {
        if let Some(l) = self.stats.lock().live.get_mut(&self.id) {
            l.size = Some(size);
        }
    }

    /// It ended: done, or failed with this error (only the first call
    /// counts).
    pub fn finish(&self, result: Result<(), String>) {
        self.end(Some(result));
    }

    fn end(&self, result: Option<Result<(), String>>) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut s = self.stats.lock();
        s.live.remove(&self.id);
        match result {
            Some(Ok(())) => s.transfers += 1,
            Some(Err(e)) => {
                s.errors += 1;
                s.last_error = Some(e);
            }
            None => {}
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.end(None);
    }
}

/// How the block is printed (`--stats-one-line`, `--stats-unit`, ...).
#[derive(Debug, Clone)]
pub struct Render {
    /// One line only.
    pub one_line: bool,
    /// Before the one line: the time in this `strftime` format.
    pub date_format: Option<String>,
    /// Rates in bits per second.
    pub bits: bool,
    /// Names in the transferring list shortened to this many characters
    /// (0: not shortened).
    pub name_len: usize,
}

impl Default for Render {
    fn default() -> Self {
        Render {
            one_line: false,
            date_format: None,
            bits: false,
            name_len: 45,
        }
    }
}

impl Render {
    /// rclone's stats block for `s`, line by line.
    pub fn lines(&self, s: &Snapshot, now_text: impl FnOnce(&str) -> String) -> Vec<String> {
        let speed = if self.bits {
            bit_rate_unit((s.speed * 8.0) as u64)
        } else {
            byte_rate_unit(s.speed as u64)
        };
        let main = format!(
            "{:>13} / {}, {}, {}, ETA {}",
            byte_unit(s.bytes),
            byte_unit(s.total_bytes),
            percent(s.bytes, s.total_bytes),
            speed,
            s.eta().map_or("-".to_string(), readable)
        );
        if self.one_line {
            let date = self
                .date_format
                .as_deref()
                .map(now_text)
                .unwrap_or_default();
            return vec![format!("{date}{main}")];
        }
        let mut out = vec![format!("Transferred:   \t{main}")];
        if s.errors != 0 {
            out.push(format!(
                "Errors:        {:>10} (retrying may help)",
                s.errors
            ));
        }
        if s.deletes != 0 || s.deleted_dirs != 0 {
            out.push(format!(
                "Deleted:       {:>10} (files), {} (dirs)",
                s.deletes, s.deleted_dirs
            ));
        }
        if s.renames != 0 {
            out.push(format!("Renamed:       {:>10}", s.renames));
        }
        if s.transfers != 0 || s.total_transfers != 0 {
            out.push(format!(
                "Transferred:   {:>10} / {}, {}",
                s.transfers,
                s.total_transfers,
                percent(s.transfers, s.total_transfers)
            ));
        }
        out.push(format!("Elapsed time:  {:>10}s", elapsed(s.elapsed)));
        if !s.transferring.is_empty() {
            out.push("Transferring:".to_string());
            for t in &s.transferring {
                let pct = match t.size {
                    Some(size) if size > 0 => (t.bytes.saturating_mul(100) / size) as u32,
                    _ => 0,
                };
                let speed = if self.bits { t.speed * 8.0 } else { t.speed };
                let eta = t
                    .size
                    .and_then(|size| eta(t.bytes, size, t.speed))
                    .map_or("-".to_string(), go_duration);
                let name = shorten(&t.name, self.name_len);
                out.push(format!(
                    " * {name:>width$}:{pct:>3}% /{}, {}/s, {eta}",
                    t.size.map_or("off".to_string(), compact),
                    compact(speed as u64),
                    width = self.name_len
                ));
            }
        }
        out
    }
}

fn eta(done: u64, total: u64, rate: f64) -> Option<Duration> {
    if total == 0 || rate <= 0.0 || total < done {
        return None;
    }
    Some(Duration::from_secs(((total - done) as f64 / rate) as u64))
}

/// rclone's `percent`: rounded, `-` without a total.
pub fn percent(a: u64, b: u64) -> String {
    if b == 0 {
        return "-".to_string();
    }
    format!("{}%", (a as f64 * 100.0 / b as f64 + 0.5) as u64)
}

const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// A number with rclone's binary suffix: `(value, suffix)`, three decimals
/// unless whole.
fn scaled(x: u64) -> (String, &'static str) {
    if x < 1024 {
        return (x.to_string(), "");
    }
    let mut v = x as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < SUFFIXES.len() {
        v /= 1024.0;
        i += 1;
    }
    let text = if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    };
    (text, SUFFIXES[i])
}

/// `1.500 KiB`, `0 B`.
pub fn byte_unit(x: u64) -> String {
    let (v, s) = scaled(x);
    format!("{v} {s}B")
}

/// `10 MiB/s`.
pub fn byte_rate_unit(x: u64) -> String {
    let (v, s) = scaled(x);
    format!("{v} {s}B/s")
}

/// `12 Kibit/s`.
pub fn bit_rate_unit(x: u64) -> String {
    let (v, s) = scaled(x);
    format!("{v} {s}bit/s")
}

/// `10Mi`, `512`.
pub fn compact(x: u64) -> String {
    let (v, s) = scaled(x);
    format!("{v}{s}")
}

/// rclone's readable durations: `1d2h23m20s`, `400ms`, `0s`.
pub fn readable(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("y", 365 * 86_400_000u64),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= len {
            let _ = write!(out, "{}{unit}", ms / len);
            ms %= len;
        }
    }
    out
}

/// Go's `Duration.String` for whole seconds: `17s`, `1m40s`, `1h0m0s`.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// The elapsed time as rclone's block shows it: `0.5`, `1m2.3`, `1h0m0.0`
/// (before the final `s`).
fn elapsed(d: Duration) -> String {
    let mins = d.as_secs() / 60;
    let whole = if mins == 0 {
        String::new()
    } else if mins < 60 {
        format!("{mins}m")
    } else {
        format!("{}h{}m", mins / 60, mins % 60)
    };
    let tenths = (d.as_millis() % 60_000) / 100;
    format!("{whole}{}.{}", tenths / 10, tenths % 10)
}

/// `name` shortened in the middle to `max` characters with `…`.
pub fn shorten(name: &str, max: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if max == 0 || chars.len() <= max {
        return name.to_string();
    }
    let keep = max - 1;
    let suffix = keep / 2;
    let prefix = keep - suffix;
    let mut out: String = chars[..prefix].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - suffix..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_as_rclone_prints_them() {
        assert_eq!(byte_unit(0), "0 B");
        assert_eq!(byte_unit(512), "512 B");
        assert_eq!(byte_unit(1024), "1 KiB");
        assert_eq!(byte_unit(1536), "1.500 KiB");
        assert_eq!(byte_unit(1025), "1.001 KiB");
        assert_eq!(byte_unit(10 << 20), "10 MiB");
        assert_eq!(byte_unit(3 << 29), "1.500 GiB");
        assert_eq!(byte_rate_unit(10 << 20), "10 MiB/s");
        assert_eq!(bit_rate_unit(1536 * 8), "12 Kibit/s");
        assert_eq!(compact(10 << 20), "10Mi");
        assert_eq!(compact(512), "512");
        assert_eq!(percent(1, 1000), "0%");
        assert_eq!(percent(9, 1000), "1%");
        assert_eq!(percent(1000, 1000), "100%");
        assert_eq!(percent(0, 0), "-");
    }

    #[test]
    fn durations_as_rclone_prints_them() {
        assert_eq!(readable(Duration::ZERO), "0s");
        assert_eq!(readable(Duration::from_millis(400)), "400ms");
        assert_eq!(readable(Duration::from_secs(65)), "1m5s");
        assert_eq!(readable(Duration::from_secs(3600)), "1h");
        assert_eq!(readable(Duration::from_secs(95000)), "1d2h23m20s");
        assert_eq!(go_duration(Duration::from_secs(17)), "17s");
        assert_eq!(go_duration(Duration::from_secs(100)), "1m40s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(elapsed(Duration::from_millis(500)), "0.5");
        assert_eq!(elapsed(Duration::from_millis(62_340)), "1m2.3");
        assert_eq!(elapsed(Duration::from_secs(3600)), "1h0m0.0");
        assert_eq!(elapsed(Duration::from_millis(59_960)), "59.9", "truncated");
        assert_eq!(shorten("abcde", 4), "ab…e");
        assert_eq!(shorten("abcdef", 5), "ab…ef");
        assert_eq!(shorten("abcde", 1), "…");
        assert_eq!(shorten("short", 45), "short");
    }

    #[test]
    fn transfers_bytes_and_the_block() {
        let stats = Stats::new();
        let a = stats.start("dir/file.bin", Some(10 << 20));
        a.add(3 << 19);
        let b = stats.start("dir/other.bin", None);
        b.add(1000);
        let s = stats.snapshot();
        assert_eq!(s.bytes, (3 << 19) + 1000);
        assert_eq!(s.total_bytes, (10 << 20) + 1000, "the rest of a known size");
        assert_eq!((s.transfers, s.total_transfers), (0, 2));
        let lines = Render::default().lines(&s, |_| String::new());
        assert!(lines[0].starts_with("Transferred:   \t"), "{lines:?}");
        assert!(
            lines[0].contains(" / 10.001 MiB, 15%, 0 B/s, ETA -"),
            "{lines:?}"
        );
        assert_eq!(lines[1], "Transferred:            0 / 2, 0%");
        assert!(lines[2].starts_with("Elapsed time:  "), "{lines:?}");
        assert_eq!(lines[3], "Transferring:");
        assert_eq!(
            lines[4],
            format!(" * {:>45}: 15% /10Mi, 0/s, -", "dir/file.bin")
        );
        assert_eq!(
            lines[5],
            format!(" * {:>45}:  0% /off, 0/s, -", "dir/other.bin")
        );
        a.finish(Ok(()));
        b.finish(Err("gone".into()));
        let c = stats.start("superseded", None);
        drop(c); // neither done nor failed
        stats.deleted(false);
        stats.renamed();
        let s = stats.snapshot();
        assert_eq!((s.transfers, s.total_transfers, s.errors), (1, 1, 1));
        assert_eq!(s.last_error.as_deref(), Some("gone"));
        let lines = Render::default().lines(&s, |_| String::new());
        assert_eq!(lines[1], "Errors:                 1 (retrying may help)");
        assert_eq!(lines[2], "Deleted:                1 (files), 0 (dirs)");
        assert_eq!(lines[3], "Renamed:                1");
        assert_eq!(lines[4], "Transferred:            1 / 1, 100%");
        let one = Render {
            one_line: true,
            date_format: Some("x".into()),
            ..Default::default()
        }
        .lines(&s, |f| format!("[{f}] "));
        assert_eq!(one.len(), 1);
        assert!(one[0].starts_with("[x]  "), "{one:?}");
    }

    #[test]
    fn the_average_warms_up_and_decays() {
        let t0 = Instant::now();
        let mut a = Average::new(t0);
        a.tick(1000, t0 + Duration::from_secs(1));
        assert!(
            (a.speed - 1000.0).abs() < 1.0,
            "first tick: the rate itself"
        );
        a.tick(1000, t0 + Duration::from_secs(2));
        assert!((a.speed - 500.0).abs() < 1.0, "second: averaged over two");
        for i in 3..40 {
            a.tick(1000, t0 + Duration::from_secs(i));
        }
        assert!(a.speed < 100.0, "idle: it decays");
    }
}
