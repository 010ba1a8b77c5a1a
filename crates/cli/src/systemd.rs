//! systemd integration: readiness notification (`sd_notify`) and socket
//! activation (`LISTEN_FDS`), both by their documented protocols and
//! inert when systemd did not ask for them.
//!
//! - `NOTIFY_SOCKET` names a Unix datagram socket (a leading `@` is the
//!   abstract namespace); `READY=1` is sent once the server listens,
//!   `STOPPING=1` when it starts shutting down.
//! - `LISTEN_PID` (our pid) and `LISTEN_FDS` (a count) pass listening
//!   sockets from descriptor 3 on; `LISTEN_FDNAMES` names them.

use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};

/// Tell the service manager `state` (`READY=1`, `STOPPING=1`, ...), if it
/// asked to be told. Failures are logged at debug level: the service runs
/// on either way.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::debug!("sd_notify {state:?} to {path:?}: {e}");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// The first descriptor systemd passes.
const FIRST_FD: RawFd = 3;

/// The listening sockets systemd passed to this process, with their
/// names (`LISTEN_FDNAMES`, or `unknown`), taken once: the variables are
/// removed so children do not take them too.
pub fn listen_fds() -> Vec<(std::net::TcpListener, String)> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // Called before the runtime starts: no other thread reads the
        // environment.
        std::env::remove_var(v);
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Vec::new();
    };
    if pid.parse::<u32>().ok() != Some(std::process::id()) {
        return Vec::new();
    }
    let Ok(count) = count.parse::<RawFd>() else {
        tracing::warn!("LISTEN_FDS={count:?} is not a number: ignored");
        return Vec::new();
    };
    let names: Vec<String> = names
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, fd) in (FIRST_FD..FIRST_FD.saturating_add(count)).enumerate() {
        let name = names.get(i).cloned().unwrap_or_else(|| "unknown".into());
        let _ = rustix::io::fcntl_setfd(borrowed(fd), rustix::io::FdFlags::CLOEXEC);
        match listener(fd) {
            Ok(l) => out.push((l, name)),
            Err(e) => tracing::warn!("socket-activation descriptor {fd} ({name}): {e}; ignored"),
        }
    }
    out
}

#[allow(unsafe_code)]
fn borrowed(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the descriptors from LISTEN_FDS stay open for the life of
    // the process (they are taken into listeners or kept); the borrow is
    // used only for fcntl and getsockopt calls.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Descriptor `fd` as a TCP listener, if it is a listening stream socket.
fn listener(fd: RawFd) -> Result<std::net::TcpListener, String> {
    use rustix::net::sockopt;
    let b = borrowed(fd);
    let ty = sockopt::socket_type(b).map_err(|e| format!("not a socket ({e})"))?;
    if ty != rustix::net::SocketType::STREAM {
        return Err("not a stream socket (ListenStream= is needed)".into());
    }
    if !sockopt::socket_acceptconn(b).unwrap_or(false) {
        return Err("not a listening socket (Accept=no is needed)".into());
    }
    let family = rustix::net::getsockname(b)
        .map_err(|e| format!("getsockname: {e}"))?
        .address_family();
    if family != rustix::net::AddressFamily::INET && family != rustix::net::AddressFamily::INET6 {
        return Err("not a TCP socket".into());
    }
    #[allow(unsafe_code)]
    // SAFETY: systemd passed this descriptor to us to own; nothing else
    // in the process uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let l = std::net::TcpListener::from(owned);
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
}
