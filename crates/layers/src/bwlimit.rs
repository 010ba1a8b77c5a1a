//! Bandwidth limits (`--bwlimit`, `--bwlimit-file`): file data to and from
//! the store passes through token buckets, as rclone's does.
//!
//! - Directions: TX is data written to the store (a client's upload), RX
//!   data read from it (a client's download). `RATE` limits each to RATE
//!   and both together to RATE (rclone's shared accounting bucket);
//!   `TX:RX` limits each to its own and both together to the larger.
//!   (rclone applies `TX:RX` only on its HTTP transport, so on a local
//!   remote it limits nothing; here it limits every remote.)
//! - One set of buckets for the whole process: every session, every
//!   remote. `--bwlimit-file` gives each open file buckets of its own on
//!   top.
//! - Each bucket holds at most max(4 MiB, rate/64) (rclone's burst) and
//!   starts empty; bytes that find it short wait for it to refill, in the
//!   order they asked (a reservation, so many transfers share the rate
//!   fairly and none is starved).
//! - A timetable (`08:00,512k 12:00,10M Mon-23:00,off`) changes the rates
//!   at the starts of its slots, in local time; SIGUSR2 toggles the limits
//!   off and on ([`BwLimiter::toggle`]); [`BwLimiter::set`] replaces them
//!   (for the remote-control API's `core/bwlimit`).
//!
//! Metadata requests pass unlimited; a store-side copy moves no data
//! through Ferry and is not counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_backend::{
    Backend, ByteStream, FileHandle, FileLayer, Layer, Layered, LayeredFile, LayeredUpload,
    Metadata, Result, Upload, UploadLayer,
};

/// Bytes per second each way; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// To the store (uploads).
    pub tx: Option<u64>,
    /// From the store (downloads).
    pub rx: Option<u64>,
}

impl Rates {
    /// No limit either way.
    pub const OFF: Rates = Rates { tx: None, rx: None };

    /// Whether anything is limited.
    pub fn is_set(&self) -> bool {
        self.tx.is_some() || self.rx.is_some()
    }

    /// `RATE`, `TX:RX` or `off`, rclone's syntax (a bare number is KiB/s;
    /// suffixes B, K, M, G, T, P, binary).
    pub fn parse(v: &str) -> std::result::Result<Rates, String> {
        let one = |s: &str| -> std::result::Result<Option<u64>, String> {
            let s = s.trim();
            if s.eq_ignore_ascii_case("off") || s.is_empty() {
                return Ok(None);
            }
            match ferry_size(s) {
                Some(0) => Ok(None),
                Some(n) => Ok(Some(n)),
                None => Err(format!(
                    "bad rate {s:?}: want a size such as 512k, 10M or off"
                )),
            }
        };
        match v.split_once(':') {
            Some((tx, rx)) => Ok(Rates {
                tx: one(tx)?,
                rx: one(rx)?,
            }),
            None => {
                let r = one(v)?;
                Ok(Rates { tx: r, rx: r })
            }
        }
    }

    /// As rclone prints it (`1Mi:off`, `off`).
    pub fn describe(&self) -> String {
        let one = |r: Option<u64>| match r {
            None => "off".to_string(),
            Some(n) => human(n),
        };
        if self.tx == self.rx {
            one(self.tx)
        } else {
            format!("{}:{}", one(self.tx), one(self.rx))
        }
    }
}

fn human(n: u64) -> String {
    for (shift, suffix) in [(50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", n >> shift);
        }
    }
    format!("{n}B")
}

/// rclone's sizes: a bare number is KiB; b, k, M, G, T, P (binary), with
/// an optional `i` and `B`.
fn ferry_size(v: &str) -> Option<u64> {
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let suffix = suffix.trim_end_matches("/s");
    let mult: f64 = match suffix
        .trim_end_matches(['i', 'B'])
        .to_ascii_lowercase()
        .as_str()
    {
        "" if suffix.eq_ignore_ascii_case("b") => 1.0,
        "" => 1024.0,
        "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0f64.powi(3),
        "t" => 1024.0f64.powi(4),
        "p" => 1024.0f64.powi(5),
        _ => return None,
    };
    let bytes = n * mult;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// When a slot starts: every day, or on one day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Start {
    /// 0 = Sunday .. 6 = Saturday; `None`: daily.
    day: Option<u8>,
    /// Minutes after midnight.
    minute: u16,
}

/// `--bwlimit`'s value: one set of rates, or a timetable of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timetable {
    slots: Vec<(Start, Rates)>,
}

const DAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

impl Timetable {
    /// Always these rates.
    pub fn fixed(rates: Rates) -> Timetable {
        Timetable {
            slots: vec![(
                Start {
                    day: None,
                    minute: 0,
                },
                rates,
            )],
        }
    }

    /// rclone's syntax: `RATE`, `TX:RX`, `off`, or entries separated by
    /// spaces or `;`, each `HH:MM,RATE` (daily) or `DAY-HH:MM,RATE` (`Mon`
    /// or `Monday`, any case).
    pub fn parse(v: &str) -> std::result::Result<Timetable, String> {
        let v = v.trim();
        if !v.contains(',') {
            return Ok(Timetable::fixed(Rates::parse(v)?));
        }
        let mut slots = Vec::new();
        for entry in v.split([' ', ';']).filter(|e| !e.is_empty()) {
            let (when, rate) = entry
                .split_once(',')
                .ok_or_else(|| format!("bad timetable entry {entry:?}: want HH:MM,RATE"))?;
            let (day, time) = match when.split_once('-') {
                Some((d, t)) => {
                    let d = d.to_ascii_lowercase();
                    let i = DAYS
                        .iter()
                        .position(|full| *full == d || (d.len() == 3 && full.starts_with(&d)))
                        .ok_or_else(|| {
                            format!("bad day {d:?} in timetable entry {entry:?}: want Mon..Sun")
                        })?;
                    (Some(i as u8), t)
                }
                None => (None, when),
            };
            let bad_time = || format!("bad time in timetable entry {entry:?}: want HH:MM");
            let (h, m) = time.split_once(':').ok_or_else(bad_time)?;
            let (h, m): (u16, u16) = (
                h.parse().map_err(|_| bad_time())?,
                m.parse().map_err(|_| bad_time())?,
            );
            if h > 23 || m > 59 || time.len() != 5 {
                return Err(bad_time());
            }
            let rates =
                Rates::parse(rate).map_err(|e| format!("timetable entry {entry:?}: {e}"))?;
            slots.push((
                Start {
                    day,
                    minute: h * 60 + m,
                },
                rates,
            ));
        }
        if slots.is_empty() {
            return Err("empty timetable".into());
        }
        if slots.iter().any(|(s, _)| s.day.is_some()) && slots.iter().any(|(s, _)| s.day.is_none())
        {
            return Err(
                "a timetable has either daily entries or entries with days, not both".into(),
            );
        }
        Ok(Timetable { slots })
    }

    /// Whether the rates ever change.
    pub fn is_fixed(&self) -> bool {
        self.slots.len() == 1
    }

    /// Whether any slot limits anything.
    pub fn limits_anything(&self) -> bool {
        self.slots.iter().any(|(_, r)| r.is_set())
    }

    /// The rates at `weekday` (0 = Sunday) `minute` after midnight: those
    /// of the most recent start, wrapping round to the last of the week (or
    /// day).
    pub fn at(&self, weekday: u8, minute: u16) -> Rates {
        let week = |s: &Start| s.day.map(|d| d as u32 * 1440).unwrap_or(0) + s.minute as u32;
        let now = if self.slots[0].0.day.is_some() {
            weekday as u32 * 1440 + minute as u32
        } else {
            minute as u32
        };
        self.slots
            .iter()
            .filter(|(s, _)| week(s) <= now)
            .max_by_key(|(s, _)| week(s))
            .or_else(|| self.slots.iter().max_by_key(|(s, _)| week(s)))
            .map(|(_, r)| *r)
            .unwrap_or(Rates::OFF)
    }

    /// The rates now, in local time.
    pub fn now(&self) -> Rates {
        if self.is_fixed() {
            return self.slots[0].1;
        }
        let z = jiff::Zoned::now();
        let weekday = z.weekday().to_sunday_zero_offset() as u8;
        self.at(weekday, z.hour() as u16 * 60 + z.minute() as u16)
    }
}

/// One token bucket: bytes per second, a burst, and what it holds (below
/// zero: owed by reservations made).
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

/// rclone's burst: 4 MiB, or 1/64 of a second's rate above 256 MiB/s.
const MIN_BURST: f64 = 4.0 * 1024.0 * 1024.0;

impl Bucket {
    /// An empty bucket (as rclone's: the first bytes wait).
    fn new(rate: u64, now: Instant) -> Bucket {
        let rate = rate.max(1) as f64;
        Bucket {
            rate,
            burst: (rate / 64.0).max(MIN_BURST),
            tokens: 0.0,
            last: now,
        }
    }

    /// Take `n` bytes' worth; how long to wait before they may go.
    fn reserve(&mut self, n: usize, now: Instant) -> Duration {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Which way data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To the store.
    Tx,
    /// From the store.
    Rx,
}

/// Buckets for a set of rates: each direction's, and both together's.
#[derive(Debug, Default)]
struct Buckets {
    tx: Option<Bucket>,
    rx: Option<Bucket>,
    both: Option<Bucket>,
}

impl Buckets {
    fn new(r: Rates, now: Instant) -> Buckets {
        let both = match (r.tx, r.rx) {
            (Some(t), Some(x)) => Some(Bucket::new(t.max(x), now)),
            _ => None,
        };
        Buckets {
            tx: r.tx.map(|n| Bucket::new(n, now)),
            rx: r.rx.map(|n| Bucket::new(n, now)),
            both,
        }
    }

    fn reserve(&mut self, dir: Direction, n: usize, now: Instant) -> Duration {
        let own = match dir {
            Direction::Tx => self.tx.as_mut(),
            Direction::Rx => self.rx.as_mut(),
        };
        let a = own.map(|b| b.reserve(n, now)).unwrap_or_default();
        let b = self
            .both
            .as_mut()
            .map(|b| b.reserve(n, now))
            .unwrap_or_default();
        a.max(b)
    }
}

#[derive(Debug)]
struct State {
    table: Timetable,
    /// The rates in force (before any toggle).
    rates: Rates,
    /// Limits toggled off (SIGUSR2).
    toggled_off: bool,
    buckets: Buckets,
    /// When to look at the timetable again.
    recheck: Instant,
}

/// The process's bandwidth limit. See the module docs.
#[derive(Debug)]
pub struct BwLimiter {
    state: Mutex<State>,
    /// Wakes the transfers waiting when the limits change: a toggle off
    /// lets them go at once, new rates give them new waits.
    changed: tokio::sync::Notify,
}

impl BwLimiter {
    /// A limiter following `table`.
    pub fn new(table: Timetable) -> Arc<BwLimiter> {
        let now = Instant::now();
        let rates = table.now();
        Arc::new(BwLimiter {
            state: Mutex::new(State {
                buckets: Buckets::new(rates, now),
                rates,
                table,
                toggled_off: false,
                recheck: now + Duration::from_secs(1),
            }),
            changed: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rates in force now (`OFF` while toggled off).
    pub fn current(&self) -> Rates {
        let s = self.lock();
        if s.toggled_off {
            Rates::OFF
        } else {
            s.rates
        }
    }

    /// Replace the limits with these rates, from now on (a timetable is
    /// dropped). Limits toggled off are toggled on again.
    pub fn set(&self, rates: Rates) {
        let mut s = self.lock();
        s.table = Timetable::fixed(rates);
        s.rates = rates;
        s.toggled_off = false;
        s.buckets = Buckets::new(rates, Instant::now());
        drop(s);
        self.changed.notify_waiters();
    }

    /// Toggle the limits off, or on again; returns whether they are on.
    pub fn toggle(&self) -> bool {
        let mut s = self.lock();
        s.toggled_off = !s.toggled_off;
        if !s.toggled_off {
            s.buckets = Buckets::new(s.rates, Instant::now());
        }
        let on = !s.toggled_off;
        drop(s);
        self.changed.notify_waiters();
        on
    }

    /// How long `n` bytes going `dir` must wait now.
    fn reserve(&self, dir: Direction, n: usize) -> Duration {
        let now = Instant::now();
        let mut s = self.lock();
        if now >= s.recheck {
            // Slots start on the minute: a look every few seconds is on
            // time, and costs nothing for a fixed limit.
            s.recheck = now + Duration::from_secs(5);
            if !s.table.is_fixed() {
                let r = s.table.now();
                if r != s.rates {
                    tracing::info!("bandwidth limit now {} (timetable)", r.describe());
                    s.rates = r;
                    s.buckets = Buckets::new(r, now);
                    // Those waiting by the old rates wait by the new ones.
                    self.changed.notify_waiters();
                }
            }
        }
        if s.toggled_off {
            return Duration::ZERO;
        }
        s.buckets.reserve(dir, n, now)
    }

    /// Wait until `n` bytes may go `dir`.
    pub async fn take(&self, dir: Direction, n: usize) {
        self.take_until(dir, n, None).await
    }

    /// Wait until `n` bytes may go `dir`, and at least until `floor`. A
    /// change of the limits meanwhile (a toggle, new rates) ends the wait
    /// and the bytes are reserved again under the new limits.
    async fn take_until(&self, dir: Direction, n: usize, floor: Option<Instant>) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the reservation: a change right after it
            // still wakes this wait.
            changed.as_mut().enable();
            let wait = self.reserve(dir, n);
            let until = Instant::now() + wait;
            let until = floor.map_or(until, |f| f.max(until));
            if until <= Instant::now() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => return,
                _ = &mut changed => {}
            }
        }
    }
}

/// Limits for one open file (`--bwlimit-file`).
#[derive(Debug)]
struct FileLimit(Mutex<Buckets>);

impl FileLimit {
    fn new(rates: Rates) -> Option<Arc<FileLimit>> {
        rates.is_set().then(|| {
            Arc::new(FileLimit(Mutex::new(Buckets {
                both: None,
                ..Buckets::new(rates, Instant::now())
            })))
        })
    }

    fn reserve(&self, dir: Direction, n: usize) -> Duration {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reserve(dir, n, Instant::now())
    }
}

/// The limits a transfer waits for: the process's and its file's.
#[derive(Debug, Clone)]
struct Limits {
    all: Option<Arc<BwLimiter>>,
    file: Option<Arc<FileLimit>>,
}

impl Limits {
    async fn take(&self, dir: Direction, n: usize) {
        if n == 0 {
            return;
        }
        let file = self
            .file
            .as_ref()
            .map(|f| Instant::now() + f.reserve(dir, n));
        match &self.all {
            Some(all) => all.take_until(dir, n, file).await,
            None => {
                if let Some(until) = file {
                    tokio::time::sleep_until(until.into()).await;
                }
            }
        }
    }
}

/// A backend whose file data passes through the bandwidth limits. See the
/// module docs.
pub struct BwLimit {
    inner: Arc<dyn Backend>,
    all: Option<Arc<BwLimiter>>,
    per_file: Option<Timetable>,
}

impl BwLimit {
    /// `inner` limited by `all` (the process's limiter) and, per open
    /// file, by `per_file`.
    pub fn wrap(
        inner: Arc<dyn Backend>,
        all: Option<Arc<BwLimiter>>,
        per_file: Option<Timetable>,
    ) -> Layered<BwLimit> {
        Layered(BwLimit {
            inner,
            all,
            per_file,
        })
    }

    fn limits(&self) -> Limits {
        Limits {
            all: self.all.clone(),
            file: self.per_file.as_ref().and_then(|t| FileLimit::new(t.now())),
        }
    }
}

impl Layer for BwLimit {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    fn wrap_file(&self, inner: Box<dyn FileHandle>) -> Box<dyn FileHandle> {
        Box::new(LayeredFile(LimitedFile {
            inner,
            limits: self.limits(),
        }))
    }

    fn wrap_upload(&self, inner: Box<dyn Upload>) -> Box<dyn Upload> {
        Box::new(LayeredUpload(LimitedUpload {
            inner,
            limits: self.limits(),
        }))
    }
}

struct LimitedFile {
    inner: Box<dyn FileHandle>,
    limits: Limits,
}

#[async_trait]
impl FileLayer for LimitedFile {
    fn inner(&self) -> &dyn FileHandle {
        &*self.inner
    }

    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        let before = buf.len();
        let out = self.inner.read_at(offset, len, buf).await?;
        // What came, before it goes on: the next read waits for the rate.
        self.limits
            .take(Direction::Rx, out.len().saturating_sub(before))
            .await;
        Ok(out)
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        self.limits.take(Direction::Tx, data.len()).await;
        self.inner.write_at(offset, data).await
    }

    async fn read_stream(&self, offset: u64, len: u64) -> Result<Option<Box<dyn ByteStream>>> {
        let limits = self.limits.clone();
        ferry_backend::layer::wrap_stream(&*self.inner, offset, len, |inner| {
            Box::new(LimitedStream { inner, limits })
        })
        .await
    }
}

struct LimitedStream {
    inner: Box<dyn ByteStream>,
    limits: Limits,
}

#[async_trait]
impl ByteStream for LimitedStream {
    async fn next(&mut self) -> Result<Option<Bytes>> {
        let chunk = self.inner.next().await?;
        if let Some(c) = &chunk {
            self.limits.take(Direction::Rx, c.len()).await;
        }
        Ok(chunk)
    }
}

struct LimitedUpload {
    inner: Box<dyn Upload>,
    limits: Limits,
}

#[async_trait]
impl UploadLayer for LimitedUpload {
    fn inner(&mut self) -> &mut dyn Upload {
        &mut *self.inner
    }

    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.limits.take(Direction::Tx, data.len()).await;
        self.inner.write(data).await
    }

    async fn finish(&mut self, mtime: Option<std::time::SystemTime>) -> Result<Metadata> {
        self.inner.finish(mtime).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_as_rclone_writes_them() {
        let r = |tx, rx| Rates { tx, rx };
        assert_eq!(Rates::parse("1M").unwrap(), r(Some(1 << 20), Some(1 << 20)));
        assert_eq!(
            Rates::parse("512").unwrap(),
            r(Some(512 << 10), Some(512 << 10)),
            "KiB"
        );
        assert_eq!(
            Rates::parse("10M:100k").unwrap(),
            r(Some(10 << 20), Some(100 << 10))
        );
        assert_eq!(Rates::parse("1M:off").unwrap(), r(Some(1 << 20), None));
        assert_eq!(Rates::parse("off:2Mi").unwrap(), r(None, Some(2 << 20)));
        assert_eq!(Rates::parse("off").unwrap(), Rates::OFF);
        assert_eq!(Rates::parse("0").unwrap(), Rates::OFF);
        assert_eq!(Rates::parse("100B").unwrap(), r(Some(100), Some(100)));
        for bad in ["fast", "1Q", "-1M", "1M:x"] {
            assert!(Rates::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Rates::parse("1M:off").unwrap().describe(), "1Mi:off");
        assert_eq!(Rates::parse("512k").unwrap().describe(), "512Ki");
    }

    #[test]
    fn timetables_as_rclone_writes_them() {
        let t = Timetable::parse("08:00,512k 12:00,10M;23:00,off").unwrap();
        let kib = |n: u64| Some(n << 10);
        assert_eq!(t.at(1, 8 * 60).tx, kib(512));
        assert_eq!(t.at(1, 11 * 60 + 59).tx, kib(512));
        assert_eq!(t.at(1, 12 * 60).tx, Some(10 << 20));
        assert_eq!(t.at(1, 23 * 60 + 30), Rates::OFF);
        // Before the first start: the last slot, from the day before.
        assert_eq!(t.at(1, 7 * 60), Rates::OFF);
        let w = Timetable::parse("Mon-00:00,512 Fri-23:59,10M Sat-10:00,off").unwrap();
        assert_eq!(w.at(1, 0).tx, kib(512), "Monday");
        assert_eq!(w.at(3, 12 * 60).tx, kib(512), "Wednesday: since Monday");
        assert_eq!(w.at(5, 23 * 60 + 59).tx, Some(10 << 20));
        assert_eq!(w.at(6, 11 * 60), Rates::OFF);
        assert_eq!(w.at(0, 12 * 60), Rates::OFF, "Sunday: since Saturday");
        let full = Timetable::parse("monday-08:00,1M sunday-20:00,off").unwrap();
        assert_eq!(full.at(0, 21 * 60), Rates::OFF);
        assert_eq!(full.at(1, 9 * 60).tx, Some(1 << 20));
        for bad in [
            "8:00,1M",
            "25:00,1M",
            "08:00,fast",
            "Funday-08:00,1M",
            "Mon-08:00,1M 09:00,2M",
        ] {
            assert!(Timetable::parse(bad).is_err(), "{bad}");
        }
        assert!(Timetable::parse("1M").unwrap().is_fixed());
    }

    #[test]
    fn buckets_start_empty_and_hold_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1 << 20, t0);
        // Empty: the first MiB waits a second.
        let w = b.reserve(1 << 20, t0);
        assert!((w.as_secs_f64() - 1.0).abs() < 0.01, "{w:?}");
        // A second MiB asked at once waits for the first, then itself.
        let w = b.reserve(1 << 20, t0);
        assert!((w.as_secs_f64() - 2.0).abs() < 0.01, "{w:?}");
        // Idle for a minute: at most the burst (4 MiB) is saved up.
        let later = t0 + Duration::from_secs(62);
        assert_eq!(b.reserve(4 << 20, later), Duration::ZERO);
        let w = b.reserve(1 << 20, later);
        assert!((w.as_secs_f64() - 1.0).abs() < 0.01, "{w:?}");
        let fast = Bucket::new(1 << 30, t0);
        assert_eq!(
            fast.burst,
            (1u64 << 30) as f64 / 64.0,
            "bw/64 above 256 MiB/s"
        );
    }

    #[test]
    fn both_directions_share_the_larger_rate() {
        let t0 = Instant::now();
        let mut b = Buckets::new(Rates::parse("1M:2M").unwrap(), t0);
        // 2 MiB down alone: the RX bucket (2 MiB/s) says 1 s.
        let w = b.reserve(Direction::Rx, 2 << 20, t0);
        assert!((w.as_secs_f64() - 1.0).abs() < 0.01, "{w:?}");
        // Then 1 MiB up: its own bucket says 1 s, the shared one (2 MiB/s,
        // already owed 1 s) says 1.5 s.
        let w = b.reserve(Direction::Tx, 1 << 20, t0);
        assert!((w.as_secs_f64() - 1.5).abs() < 0.01, "{w:?}");
    }

    #[test]
    fn toggle_and_set() {
        let l = BwLimiter::new(Timetable::fixed(Rates::parse("1M").unwrap()));
        assert_eq!(l.current().tx, Some(1 << 20));
        assert!(!l.toggle());
        assert_eq!(l.current(), Rates::OFF);
        assert_eq!(l.reserve(Direction::Tx, 10 << 20), Duration::ZERO);
        assert!(l.toggle());
        assert!(l.reserve(Direction::Tx, 1 << 20) > Duration::from_millis(900));
        l.set(Rates::OFF);
        assert_eq!(l.reserve(Direction::Rx, 100 << 20), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_end_when_the_limit_is_toggled_off() {
        let l = BwLimiter::new(Timetable::fixed(Rates::parse("1M").unwrap()));
        // 100 MiB asked at 1 MiB/s: 100 s, unless the limit goes.
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.take(Direction::Rx, 100 << 20).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        l.toggle();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released at once")
            .unwrap();
    }
}
