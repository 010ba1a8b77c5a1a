//! The access log (`-v`, INFO): one line per login and logout, per file
//! transfer at CLOSE and per change to the namespace, the events OpenSSH's
//! sftp-server logs at `-l INFO`; failed logins at NOTICE (shown by
//! default, for fail2ban). Every line has its facts as fields (`user`,
//! `ip`, `port`, `path`, ...; docs/logging.md), which the log's formatter
//! writes escaped: nothing a client sends can start a line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// File bytes a connection's sessions moved.
#[derive(Debug, Default)]
pub struct Traffic {
    read: AtomicU64,
    written: AtomicU64,
    /// Handles open now.
    open: AtomicU64,
}

impl Traffic {
    /// Bytes read by the client.
    pub fn add_read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes written by the client.
    pub fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }

    /// A handle was opened.
    pub fn handle_opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A handle was closed.
    pub fn handle_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Files and directories open now.
    pub fn open_handles(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// (read, written) so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.read.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
        )
    }
}

/// One open file, from OPEN to CLOSE: what the transfer line says, and
/// its place in the server's transfer statistics.
#[derive(Debug)]
pub struct Transfer {
    /// The SFTP open flags.
    pub pflags: u32,
    /// When it was opened.
    pub opened: Instant,
    read: AtomicU64,
    written: AtomicU64,
    stats: Option<ferry_stats::Transfer>,
}

impl Transfer {
    /// A transfer opened now with `pflags`, counted in `stats`.
    pub fn new(pflags: u32, stats: Option<ferry_stats::Transfer>) -> Self {
        Transfer {
            pflags,
            opened: Instant::now(),
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            stats,
        }
    }

    /// `n` bytes read through it.
    pub fn add_read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
        if let Some(t) = &self.stats {
            t.add(n);
        }
    }

    /// `n` bytes written through it.
    pub fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
        if let Some(t) = &self.stats {
            t.add(n);
        }
    }

    /// It ended (at CLOSE, or with its session): `Err` counts an error.
    pub fn finish(&self, result: Result<(), String>) {
        if let Some(t) = &self.stats {
            t.finish(result);
        }
    }

    /// (read, written).
    pub fn totals(&self) -> (u64, u64) {
        (
            self.read.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
        )
    }
}

/// The open flags as OpenSSH's sftp-server logs them (`READ,WRITE,CREATE`).
pub fn flags_text(pflags: u32) -> String {
    use ferry_proto::pflags as P;
    let names = [
        (P::READ, "READ"),
        (P::WRITE, "WRITE"),
        (P::APPEND, "APPEND"),
        (P::CREAT, "CREATE"),
        (P::TRUNC, "TRUNCATE"),
        (P::EXCL, "EXCL"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| pflags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "READ".to_string()
    } else {
        v.join(",")
    }
}

/// A path or name as text: UTF-8 as it is, other bytes as `\xNN` (the
/// log's formatter escapes control characters).
pub fn text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Who a session serves, for its lines.
#[derive(Debug, Clone, Default)]
pub struct Who {
    /// The user name.
    pub user: String,
    /// The client's address (none for `--stdio`).
    pub peer: Option<SocketAddr>,
}

impl Who {
    /// The client's IP address, or "-".
    pub fn ip(&self) -> String {
        self.peer
            .map(|p| p.ip().to_string())
            .unwrap_or_else(|| "-".into())
    }
}
