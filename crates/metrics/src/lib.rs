//! Ferry's metrics in the Prometheus exposition format.
//!
//! One [`Metrics`] per process holds every family; the parts that count
//! take it as an `Arc` (the SFTP dispatch point, the SSH login, the auth
//! proxy, the backend layer). Values that are state rather than events
//! (rclone's transfer totals, cache sizes, sessions) are set just before
//! each scrape by the hook given to [`Metrics::encode`].
//!
//! Names: rclone's where they mean the same (`rclone_bytes_transferred_total`
//! and the rest of its accounting), `ferry_*` for the rest. docs/rc.md
//! lists them all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels: one operation and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpResult {
    /// The operation.
    pub op: &'static str,
    /// `ok` or the kind of failure.
    pub result: &'static str,
}

/// Labels: an SFTP request and the status it was answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpStatus {
    /// The request (`open`, `read`, `posix-rename@openssh.com`, ...).
    pub op: &'static str,
    /// The status (`ok`, `eof`, `no_such_file`, ...).
    pub status: &'static str,
}

/// Labels: a login method and its result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodResult {
    /// `password`, `publickey`, `keyboard-interactive`, `none`.
    pub method: &'static str,
    /// `ok`, `failed`, `unavailable`.
    pub result: &'static str,
}

/// Labels: one operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Op {
    /// The operation.
    pub op: &'static str,
}

/// Labels: a direction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    /// `read` (to the client) or `write` (from the client).
    pub direction: &'static str,
}

/// Labels: a kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// What kind.
    pub kind: &'static str,
}

/// Labels: an auth-proxy answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `ok`, `denied`, `error`, `cached`.
    pub result: &'static str,
}

fn latency_buckets() -> Histogram {
    // 0.5 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// rclone's accounting, set at each scrape from the transfer statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Accounting {
    /// Bytes transferred.
    pub bytes: u64,
    /// Files transferred.
    pub transfers: u64,
    /// Errors.
    pub errors: u64,
    /// Files deleted.
    pub deletes: u64,
    /// Directories deleted.
    pub deleted_dirs: u64,
    /// Files renamed.
    pub renames: u64,
    /// Checks (always zero in a server).
    pub checks: u64,
    /// Transfers running.
    pub transferring: u64,
    /// Average speed, bytes per second.
    pub speed: f64,
    /// Fatal error seen (never, in a server).
    pub fatal: bool,
    /// Retryable error seen.
    pub retry_error: bool,
}

/// What the caches hold, all VFSes together, set at each scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Caches {
    /// VFSes live.
    pub vfses: u64,
    /// Directories whose listings are cached.
    pub dirs: u64,
    /// Entries in the cached listings.
    pub entries: u64,
    /// Files in the file caches.
    pub cached_files: u64,
    /// Bytes of file data on the cache disk.
    pub cached_bytes: u64,
    /// Files with changes not yet uploaded.
    pub dirty_files: u64,
    /// Uploads running.
    pub uploading: u64,
    /// Uploads waiting.
    pub uploads_queued: u64,
}

/// Every metric of the process. See the module docs.
pub struct Metrics {
    registry: Registry,
    rclone_bytes: Counter,
    rclone_transfers: Counter,
    rclone_errors: Counter,
    rclone_deletes: Counter,
    rclone_deleted_dirs: Counter,
    rclone_renames: Counter,
    rclone_checks: Counter,
    rclone_transferring: Gauge,
    rclone_speed: FloatGauge,
    rclone_fatal: Gauge,
    rclone_retry_error: Gauge,
    connections: Gauge,
    sessions: Gauge,
    logins: Family<MethodResult, Counter>,
    refused: Family<Kind, Counter>,
    sftp_requests: Family<OpStatus, Counter>,
    sftp_bytes: Family<Direction, Counter>,
    open_files: Gauge,
    backend_requests: Family<OpResult, Counter>,
    backend_latency: Family<Op, Histogram, fn() -> Histogram>,
    backend_retries: Counter,
    errors: Family<Kind, Counter>,
    proxy_calls: Family<Outcome, Counter>,
    proxy_latency: Histogram,
    vfses: Gauge,
    dir_cache_dirs: Gauge,
    dir_cache_entries: Gauge,
    file_cache_files: Gauge,
    file_cache_bytes: Gauge,
    dirty_files: Gauge,
    uploads_running: Gauge,
    uploads_queued: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn set(c: &Counter, v: u64) {
    c.inner().store(v, Ordering::Relaxed);
}

fn set_gauge(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

impl Metrics {
    /// Every family registered, all at zero.
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        macro_rules! reg {
            ($name:expr, $help:expr, $m:expr) => {{
                let m = $m;
                r.register($name, $help, m.clone());
                m
            }};
        }
        let backend_latency: Family<Op, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_buckets);
        Metrics {
            rclone_bytes: reg!(
                "rclone_bytes_transferred",
                "Total transferred bytes since the start of the process",
                Counter::default()
            ),
            rclone_transfers: reg!(
                "rclone_files_transferred",
                "Total transferred files since the start of the process",
                Counter::default()
            ),
            rclone_errors: reg!(
                "rclone_errors",
                "Number of errors thrown",
                Counter::default()
            ),
            rclone_deletes: reg!(
                "rclone_files_deleted",
                "Total number of files deleted",
                Counter::default()
            ),
            rclone_deleted_dirs: reg!(
                "rclone_dirs_deleted",
                "Total number of directories deleted",
                Counter::default()
            ),
            rclone_renames: reg!(
                "rclone_files_renamed",
                "Total number of files renamed",
                Counter::default()
            ),
            rclone_checks: reg!(
                "rclone_checked_files",
                "Number of checked files",
                Counter::default()
            ),
            rclone_transferring: reg!(
                "rclone_transfers_in_progress",
                "Number of transfers in progress",
                Gauge::default()
            ),
            rclone_speed: reg!(
                "rclone_speed",
                "Average speed in bytes per second since the start of the process",
                FloatGauge::default()
            ),
            rclone_fatal: reg!(
                "rclone_fatal_error",
                "Whether a fatal error has occurred",
                Gauge::default()
            ),
            rclone_retry_error: reg!(
                "rclone_retry_error",
                "Whether there has been an error that will be retried",
                Gauge::default()
            ),
            connections: reg!(
                "ferry_connections_active",
                "SSH connections open now, logged in or not",
                Gauge::default()
            ),
            sessions: reg!(
                "ferry_sessions_active",
                "Logged-in SSH connections now",
                Gauge::default()
            ),
            logins: reg!(
                "ferry_logins",
                "SSH authentication attempts by method and result",
                Family::default()
            ),
            refused: reg!(
                "ferry_connections_refused",
                "Connections turned away, by reason: penalty, max_connections, max_startups, per_source_max_startups, max_connections_per_user",
                Family::default()
            ),
            sftp_requests: reg!(
                "ferry_sftp_requests",
                "SFTP requests answered, by request and status",
                Family::default()
            ),
            sftp_bytes: reg!(
                "ferry_sftp_bytes",
                "File bytes moved over SFTP, by direction (read: to clients)",
                Family::default()
            ),
            open_files: reg!(
                "ferry_open_files",
                "Files and directories open by SFTP clients now",
                Gauge::default()
            ),
            backend_requests: reg!(
                "ferry_backend_requests",
                "Requests to the storage backends, by operation and result",
                Family::default()
            ),
            backend_latency: reg!(
                "ferry_backend_request_duration_seconds",
                "Time the storage backends took to answer, by operation",
                backend_latency
            ),
            backend_retries: reg!(
                "ferry_backend_retries",
                "Backend requests retried after a temporary failure",
                Counter::default()
            ),
            errors: reg!(
                "ferry_errors",
                "Failed backend requests, by kind of error",
                Family::default()
            ),
            proxy_calls: reg!(
                "ferry_auth_proxy_calls",
                "Auth-proxy lookups by result: ok, refused, failed, timeout, bad_answer, or kept (answered from a kept answer, no call)",
                Family::default()
            ),
            proxy_latency: reg!(
                "ferry_auth_proxy_duration_seconds",
                "Time the auth proxy took to answer",
                latency_buckets()
            ),
            vfses: reg!("ferry_vfs_active", "VFSes live now", Gauge::default()),
            dir_cache_dirs: reg!(
                "ferry_dir_cache_dirs",
                "Directories whose listings are cached",
                Gauge::default()
            ),
            dir_cache_entries: reg!(
                "ferry_dir_cache_entries",
                "Entries in the cached directory listings",
                Gauge::default()
            ),
            file_cache_files: reg!(
                "ferry_file_cache_files",
                "Files in the VFS file caches",
                Gauge::default()
            ),
            file_cache_bytes: reg!(
                "ferry_file_cache_bytes",
                "Bytes of file data in the VFS file caches on disk",
                Gauge::default()
            ),
            dirty_files: reg!(
                "ferry_file_cache_dirty_files",
                "Files in the file caches with changes not yet uploaded",
                Gauge::default()
            ),
            uploads_running: reg!(
                "ferry_upload_queue_uploading",
                "Uploads from the file caches running now",
                Gauge::default()
            ),
            uploads_queued: reg!(
                "ferry_upload_queue_waiting",
                "Files in the file caches waiting for their upload",
                Gauge::default()
            ),
            registry: r,
        }
    }

    /// The text exposition, after `refresh` has set the state values.
    pub fn encode(&self, refresh: impl FnOnce(&Metrics)) -> String {
        refresh(self);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The content type of [`Metrics::encode`]'s text.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// Set rclone's accounting.
    pub fn set_accounting(&self, a: &Accounting) {
        set(&self.rclone_bytes, a.bytes);
        set(&self.rclone_transfers, a.transfers);
        set(&self.rclone_errors, a.errors);
        set(&self.rclone_deletes, a.deletes);
        set(&self.rclone_deleted_dirs, a.deleted_dirs);
        set(&self.rclone_renames, a.renames);
        set(&self.rclone_checks, a.checks);
        set_gauge(&self.rclone_transferring, a.transferring);
        self.rclone_speed.set(a.speed);
        self.rclone_fatal.set(i64::from(a.fatal));
        self.rclone_retry_error.set(i64::from(a.retry_error));
    }

    /// Set what the caches hold.
    pub fn set_caches(&self, c: &Caches) {
        set_gauge(&self.vfses, c.vfses);
        set_gauge(&self.dir_cache_dirs, c.dirs);
        set_gauge(&self.dir_cache_entries, c.entries);
        set_gauge(&self.file_cache_files, c.cached_files);
        set_gauge(&self.file_cache_bytes, c.cached_bytes);
        set_gauge(&self.dirty_files, c.dirty_files);
        set_gauge(&self.uploads_running, c.uploading);
        set_gauge(&self.uploads_queued, c.uploads_queued);
    }

    /// A connection opened; closed when the guard drops.
    pub fn connection(self: &std::sync::Arc<Self>) -> Active {
        Active::new(self.clone(), |m| &m.connections)
    }

    /// A login succeeded and stays until the guard drops.
    pub fn session(self: &std::sync::Arc<Self>) -> Active {
        Active::new(self.clone(), |m| &m.sessions)
    }

    /// A file or directory opened by a client; closed when the guard drops.
    pub fn open_file(self: &std::sync::Arc<Self>) -> Active {
        Active::new(self.clone(), |m| &m.open_files)
    }

    /// An authentication attempt.
    pub fn login(&self, method: &'static str, result: &'static str) {
        self.logins
            .get_or_create(&MethodResult { method, result })
            .inc();
    }

    /// A connection turned away before login.
    pub fn refused(&self, kind: &'static str) {
        self.refused.get_or_create(&Kind { kind }).inc();
    }

    /// An SFTP request answered.
    pub fn sftp_request(&self, op: &'static str, status: &'static str) {
        self.sftp_requests
            .get_or_create(&OpStatus { op, status })
            .inc();
    }

    /// File bytes sent to a client.
    pub fn sftp_read(&self, n: u64) {
        self.sftp_bytes
            .get_or_create(&Direction { direction: "read" })
            .inc_by(n);
    }

    /// File bytes received from a client.
    pub fn sftp_written(&self, n: u64) {
        self.sftp_bytes
            .get_or_create(&Direction { direction: "write" })
            .inc_by(n);
    }

    /// A backend request answered after `took`; `error` names the kind
    /// of failure.
    pub fn backend_request(&self, op: &'static str, error: Option<&'static str>, took: Duration) {
        self.backend_requests
            .get_or_create(&OpResult {
                op,
                result: error.unwrap_or("ok"),
            })
            .inc();
        self.backend_latency
            .get_or_create(&Op { op })
            .observe(took.as_secs_f64());
        if let Some(kind) = error {
            self.errors.get_or_create(&Kind { kind }).inc();
        }
    }

    /// A backend request about to be retried.
    pub fn backend_retry(&self) {
        self.backend_retries.inc();
    }

    /// An auth-proxy answer after `took` (none for a kept answer).
    pub fn proxy_call(&self, result: &'static str, took: Option<Duration>) {
        self.proxy_calls.get_or_create(&Outcome { result }).inc();
        if let Some(t) = took {
            self.proxy_latency.observe(t.as_secs_f64());
        }
    }
}

/// One of something active (a connection, a session, an open file),
/// counted while it lives.
pub struct Active {
    metrics: std::sync::Arc<Metrics>,
    gauge: fn(&Metrics) -> &Gauge,
}

impl Active {
    fn new(metrics: std::sync::Arc<Metrics>, gauge: fn(&Metrics) -> &Gauge) -> Active {
        gauge(&metrics).inc();
        Active { metrics, gauge }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).dec();
    }
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Active")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn sample<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .map(|l| l[name.len() + 1..].trim())
    }

    #[test]
    fn counters_and_state_are_encoded_with_their_names() {
        let m = Arc::new(Metrics::new());
        m.sftp_request("open", "ok");
        m.sftp_request("open", "ok");
        m.sftp_request("read", "eof");
        m.login("password", "failed");
        m.backend_request("stat", Some("not_found"), Duration::from_millis(3));
        let conn = m.connection();
        let text = m.encode(|m| {
            m.set_accounting(&Accounting {
                bytes: 1234,
                transfers: 2,
                ..Accounting::default()
            })
        });
        assert_eq!(
            sample(&text, "rclone_bytes_transferred_total"),
            Some("1234")
        );
        assert_eq!(sample(&text, "rclone_files_transferred_total"), Some("2"));
        assert_eq!(
            sample(&text, r#"ferry_sftp_requests_total{op="open",status="ok"}"#),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                r#"ferry_logins_total{method="password",result="failed"}"#
            ),
            Some("1")
        );
        assert_eq!(
            sample(&text, r#"ferry_errors_total{kind="not_found"}"#),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                r#"ferry_backend_request_duration_seconds_count{op="stat"}"#
            ),
            Some("1")
        );
        assert_eq!(sample(&text, "ferry_connections_active"), Some("1"));
        drop(conn);
        let text = m.encode(|_| {});
        assert_eq!(sample(&text, "ferry_connections_active"), Some("0"));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
