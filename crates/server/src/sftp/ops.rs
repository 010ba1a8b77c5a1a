//! One small function per SFTP operation.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferry_proto::{
    data_header, ext_name, format_longname, ExtendedRequest, FileAttributes, Limits, NameEntry,
    Request, Response, StatusCode, Statvfs, DATA_HEADER_LEN,
};
use ferry_vfs::backend::RelPath;
use ferry_vfs::{OpenFlags, VfsError};

use super::convert::OpError;

use super::convert::{status_of, to_setattrs, to_wire};
use std::sync::Arc;

use super::handles::{DirCursor, FilesFull, HandleEntry, HandleKind};
use super::{encode, reply_status, Ctx};

type OpResult = Result<Vec<u8>, OpError>;

/// A STATUS reply.
pub(crate) fn status(id: u32, code: StatusCode, message: &str) -> Vec<u8> {
    encode(&Response::Status {
        id,
        code,
        message: message.to_string(),
    })
}

fn ok(id: u32) -> OpResult {
    Ok(status(id, StatusCode::Ok, ""))
}

fn attrs(id: u32, attrs: FileAttributes) -> OpResult {
    Ok(encode(&Response::Attrs { id, attrs }))
}

fn one_name(id: u32, name: Vec<u8>) -> OpResult {
    Ok(encode(&Response::Name {
        id,
        entries: vec![NameEntry {
            filename: Bytes::from(name),
            longname: Bytes::new(),
            attrs: FileAttributes::default(),
        }],
    }))
}

/// The VERSION reply: only extensions that work on this VFS are advertised.
pub(crate) fn version_reply(ctx: &Ctx) -> Vec<u8> {
    let caps = ctx.vfs.capabilities();
    let mut ext: Vec<(&[u8], &[u8])> = vec![
        (ext_name::POSIX_RENAME, b"1"),
        (ext_name::FSYNC, b"1"),
        (ext_name::LSETSTAT, b"1"),
        (ext_name::LIMITS, b"1"),
        (ext_name::EXPAND_PATH, b"1"),
        (ext_name::HOME_DIRECTORY, b"1"),
        (ext_name::COPY_DATA, b"1"),
    ];
    if caps.usage {
        ext.push((ext_name::STATVFS, b"2"));
        ext.push((ext_name::FSTATVFS, b"2"));
    }
    if caps.hard_links {
        ext.push((ext_name::HARDLINK, b"1"));
    }
    encode(&Response::Version {
        version: ferry_proto::SFTP_VERSION,
        extensions: ext
            .into_iter()
            .map(|(n, v)| (Bytes::from_static(n), Bytes::from_static(v)))
            .collect(),
    })
}

/// Log a request and its outcome: every one at DEBUG (`-vv`), changes to
/// the namespace at INFO (the access log, `-v`).
pub(crate) fn log(ctx: &Ctx, req: &Request, reply: &[u8], tickets: &[Arc<HandleEntry>]) {
    if let Some(m) = &ctx.opts.metrics {
        m.sftp_request(metric_name(req), status_label(reply_status(reply)));
    }
    let info = tracing::enabled!(tracing::Level::INFO);
    if !info && (ctx.opts.stats.is_none() || !req.writes()) {
        return;
    }
    let status = match reply_status(reply) {
        Some(StatusCode::Ok) => "ok".to_string(),
        Some(code) => status_message(reply).unwrap_or_else(|| format!("{code:?}")),
        None => "ok".to_string(),
    };
    let change = change_of(req, tickets);
    if let (Some(stats), Some((op, ..)), "ok") = (&ctx.opts.stats, &change, status.as_str()) {
        match *op {
            "remove" => stats.deleted(false),
            "rmdir" => stats.deleted(true),
            "rename" | "posix-rename" => stats.renamed(),
            _ => {}
        }
    }
    if !info {
        return;
    }
    if let Some((op, path, to, change)) = change {
        tracing::info!(
            user = %ctx.opts.user,
            ip = %ip(ctx),
            path = %path,
            to = %to.unwrap_or_default(),
            change = %change.unwrap_or_default(),
            status = %status,
            "{op}"
        );
    }
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let name = match req {
        Request::Extended { request, .. } => {
            String::from_utf8_lossy(request.wire_name()).into_owned()
        }
        _ => req.info().name.to_string(),
    };
    let path = match req {
        Request::Open { path, .. }
        | Request::Lstat { path, .. }
        | Request::Setstat { path, .. }
        | Request::Opendir { path, .. }
        | Request::Remove { path, .. }
        | Request::Mkdir { path, .. }
        | Request::Rmdir { path, .. }
        | Request::Realpath { path, .. }
        | Request::Stat { path, .. }
        | Request::Readlink { path, .. } => crate::access::text(path),
        Request::Rename { old, new, .. } => {
            format!(
                "{} -> {}",
                crate::access::text(old),
                crate::access::text(new)
            )
        }
        Request::Symlink {
            linkpath,
            targetpath,
            ..
        } => format!(
            "{} -> {}",
            crate::access::text(linkpath),
            crate::access::text(targetpath)
        ),
        _ => String::new(),
    };
    tracing::debug!(op = %name, path = %path, status = %status, "sftp");
}

/// The message of a STATUS reply.
fn status_message(reply: &[u8]) -> Option<String> {
    match Response::decode(Bytes::copy_from_slice(reply.get(4..)?)) {
        Ok(Response::Status { message, .. }) if !message.is_empty() => Some(message),
        _ => None,
    }
}

/// A client path as the log shows it: resolved beneath the root.
fn shown(raw: &[u8]) -> String {
    match path(raw) {
        Ok(p) => crate::access::text(&p.to_absolute()),
        Err(_) => crate::access::text(raw),
    }
}

/// What a change request changes, for the access log: the operation, the
/// path, a second path (rename, link) and what a SETSTAT sets.
fn change_of(
    req: &Request,
    tickets: &[Arc<HandleEntry>],
) -> Option<(&'static str, String, Option<String>, Option<String>)> {
    let handle_path = || {
        tickets
            .first()
            .map(|t| crate::access::text(&t.path.to_absolute()))
            .unwrap_or_default()
    };
    Some(match req {
        Request::Mkdir { path, .. } => ("mkdir", shown(path), None, None),
        Request::Rmdir { path, .. } => ("rmdir", shown(path), None, None),
        Request::Remove { path, .. } => ("remove", shown(path), None, None),
        Request::Rename { old, new, .. } => ("rename", shown(old), Some(shown(new)), None),
        Request::Symlink {
            linkpath,
            targetpath,
            ..
        } => (
            "symlink",
            shown(linkpath),
            Some(crate::access::text(targetpath)),
            None,
        ),
        Request::Setstat { path, attrs, .. } => {
            ("setstat", shown(path), None, Some(attrs_text(attrs)))
        }
        Request::Fsetstat { attrs, .. } => {
            ("setstat", handle_path(), None, Some(attrs_text(attrs)))
        }
        Request::Extended { request, .. } => match request {
            ExtendedRequest::PosixRename { old, new } => {
                ("posix-rename", shown(old), Some(shown(new)), None)
            }
            ExtendedRequest::Hardlink { old, new } => {
                ("hardlink", shown(new), Some(shown(old)), None)
            }
            ExtendedRequest::Lsetstat { path, attrs } => {
                ("lsetstat", shown(path), None, Some(attrs_text(attrs)))
            }
            _ => return None,
        },
        _ => return None,
    })
}

/// What a SETSTAT sets: `size=0 mode=0644 uid=1 gid=2 mtime=...`.
fn attrs_text(a: &FileAttributes) -> String {
    let mut v = Vec::new();
    if let Some(s) = a.size {
        v.push(format!("size={s}"));
    }
    if let Some(m) = a.permissions {
        v.push(format!("mode={:04o}", m & 0o7777));
    }
    if let Some((u, g)) = a.uid_gid {
        v.push(format!("uid={u} gid={g}"));
    }
    if let Some((at, mt)) = a.atime_mtime {
        v.push(format!("atime={at} mtime={mt}"));
    }
    v.join(" ")
}

/// Run one request (its tickets already waited for) and encode the reply.
pub(crate) async fn run(ctx: &Ctx, req: &Request, tickets: &[Arc<HandleEntry>]) -> Vec<u8> {
    let id = req.id().unwrap_or(0);
    match run_inner(ctx, req, tickets).await {
        Ok(reply) => reply,
        Err(e) => {
            let (code, msg) = status_of(&e);
            status(id, code, &msg)
        }
    }
}

fn path(raw: &[u8]) -> Result<RelPath, VfsError> {
    RelPath::resolve(&RelPath::root(), raw).map_err(|_| VfsError::InvalidName)
}

fn file(tickets: &[Arc<HandleEntry>]) -> Result<&ferry_vfs::VfsFile, OpError> {
    tickets
        .first()
        .and_then(|t| t.file())
        .ok_or(OpError::NotAFileHandle)
}

async fn run_inner(ctx: &Ctx, req: &Request, tickets: &[Arc<HandleEntry>]) -> OpResult {
    match req {
        // The reader answers INIT itself, and never dispatches one.
        Request::Init { .. } => Err(OpError::Unexpected("INIT")),
        Request::Open {
            id,
            path: p,
            pflags,
            attrs,
        } => open(ctx, *id, p, *pflags, attrs).await,
        Request::Close { id, .. } => close(ctx, *id, tickets).await,
        Request::Read {
            id, offset, len, ..
        } => read(ctx, *id, tickets, *offset, *len).await,
        Request::Write {
            id, offset, data, ..
        } => {
            let f = file(tickets)?;
            if let Some(l) = &ctx.opts.user_bwlimit {
                l.take(ferry_layers::bwlimit::Direction::Tx, data.len())
                    .await;
            }
            f.write_at(*offset, data.clone()).await?;
            if let Some(t) = tickets.first().and_then(|t| t.transfer.as_ref()) {
                t.add_written(data.len() as u64);
            }
            ctx.opts.traffic.add_written(data.len() as u64);
            if let Some(m) = &ctx.opts.metrics {
                m.sftp_written(data.len() as u64);
            }
            ok(*id)
        }
        Request::Lstat { id, path: p } => attrs(*id, to_wire(&ctx.vfs.lstat(&path(p)?).await?)),
        Request::Stat { id, path: p } => attrs(*id, to_wire(&ctx.vfs.stat(&path(p)?).await?)),
        Request::Fstat { id, .. } => attrs(*id, to_wire(&file(tickets)?.stat().await?)),
        Request::Setstat {
            id,
            path: p,
            attrs: a,
        } => {
            ctx.vfs.setstat(&path(p)?, &to_setattrs(a), true).await?;
            ok(*id)
        }
        Request::Fsetstat { id, attrs: a, .. } => {
            file(tickets)?.set_attrs(&to_setattrs(a)).await?;
            ok(*id)
        }
        Request::Opendir { id, path: p } => opendir(ctx, *id, p).await,
        Request::Readdir { id, .. } => readdir(ctx, *id, tickets),
        Request::Remove { id, path: p } => {
            ctx.vfs.remove(&path(p)?).await?;
            ok(*id)
        }
        Request::Mkdir {
            id,
            path: p,
            attrs: a,
        } => {
            ctx.vfs
                .mkdir(&path(p)?, a.permissions.map(|m| m & 0o7777))
                .await?;
            ok(*id)
        }
        Request::Rmdir { id, path: p } => {
            ctx.vfs.rmdir(&path(p)?).await?;
            ok(*id)
        }
        Request::Realpath { id, path: p } => one_name(*id, path(p)?.to_absolute()),
        Request::Rename { id, old, new } => {
            // Replaces an existing file atomically, as rclone's users rely on
            // (see docs/design/rename.md).
            ctx.vfs.rename(&path(old)?, &path(new)?, true).await?;
            ok(*id)
        }
        Request::Readlink { id, path: p } => one_name(*id, ctx.vfs.readlink(&path(p)?).await?),
        Request::Symlink {
            id,
            linkpath,
            targetpath,
        } => {
            ctx.vfs.symlink(targetpath, &path(linkpath)?).await?;
            ok(*id)
        }
        Request::Extended { id, request } => extended(ctx, *id, request, tickets).await,
    }
}

fn open_flags(pflags: u32) -> OpenFlags {
    use ferry_proto::pflags as P;
    let mut f = OpenFlags {
        read: pflags & P::READ != 0,
        write: pflags & P::WRITE != 0,
        append: pflags & P::APPEND != 0,
        create: pflags & P::CREAT != 0,
        truncate: pflags & P::TRUNC != 0,
        exclusive: pflags & P::EXCL != 0,
    };
    if !f.read && !f.write && !f.append {
        f.read = true;
    }
    f
}

async fn open(ctx: &Ctx, id: u32, p: &[u8], pflags: u32, a: &FileAttributes) -> OpResult {
    let rel = path(p)?;
    let mode = a.permissions.map(|m| m & 0o7777);
    // Taken before the open, which is what takes a descriptor.
    let slot = match ctx.opts.open_files.try_take(&ctx.opts.user) {
        Ok(slot) => slot,
        Err(FilesFull::Server) => {
            return Ok(status(
                id,
                StatusCode::Failure,
                "Too many open files on this server; try again later",
            ))
        }
        Err(FilesFull::User) => {
            return Ok(status(
                id,
                StatusCode::Failure,
                "Too many open files for this user; close some first",
            ))
        }
    };
    let file = ctx.vfs.open(&rel, open_flags(pflags), mode).await?;
    let at = file.path().clone();
    let counted = match &ctx.opts.stats {
        Some(stats) => {
            let flags = open_flags(pflags);
            // A read knows its size (the open just looked the file up, so
            // the answer is cached); a write's grows.
            let size = if flags.writes() {
                None
            } else {
                ctx.vfs.stat(&rel).await.ok().map(|a| a.size)
            };
            Some(stats.start(&crate::access::text(&at.to_absolute()), size))
        }
        None => None,
    };
    let transfer = crate::access::Transfer::new(pflags, counted);
    match ctx
        .handles
        .insert(HandleKind::File(file), at, Some(slot), Some(transfer))
    {
        Ok(h) => Ok(encode(&Response::Handle {
            id,
            handle: Bytes::from(h),
        })),
        Err((_, HandleKind::File(f))) => {
            f.abort().await;
            Ok(status(id, StatusCode::Failure, "Too many open handles"))
        }
        Err(_) => Ok(status(id, StatusCode::Failure, "Too many open handles")),
    }
}

async fn close(ctx: &Ctx, id: u32, tickets: &[Arc<HandleEntry>]) -> OpResult {
    let entry = tickets.first().ok_or(OpError::InvalidHandle)?;
    if let Some(f) = entry.file() {
        if let Err(e) = f.close().await {
            let e = OpError::from(e);
            let msg = status_of(&e).1;
            log_transfer(ctx, entry, &msg);
            if let Some(t) = &entry.transfer {
                t.finish(Err(msg));
            }
            return Err(e);
        }
        log_transfer(ctx, entry, "ok");
        if let Some(t) = &entry.transfer {
            t.finish(Ok(()));
        }
    }
    ok(id)
}

/// The access log's line for a file's transfer, at its CLOSE (or at the
/// end of its session): path, open flags, bytes each way, time, status.
pub(crate) fn log_transfer(ctx: &Ctx, entry: &HandleEntry, status: &str) {
    let Some(t) = &entry.transfer else {
        return;
    };
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let (read, written) = t.totals();
    tracing::info!(
        user = %ctx.opts.user,
        ip = %ip(ctx),
        path = %crate::access::text(&entry.path.to_absolute()),
        flags = %crate::access::flags_text(t.pflags),
        bytes_read = read,
        bytes_written = written,
        seconds = t.opened.elapsed().as_secs_f64(),
        status,
        "transfer"
    );
}

fn ip(ctx: &Ctx) -> String {
    ctx.opts
        .peer
        .map(|p| p.ip().to_string())
        .unwrap_or_else(|| "-".into())
}

async fn read(ctx: &Ctx, id: u32, tickets: &[Arc<HandleEntry>], offset: u64, len: u32) -> OpResult {
    let f = file(tickets)?;
    let len = len.min(ctx.opts.max_read) as usize;
    let mut buf = Vec::with_capacity(DATA_HEADER_LEN + len);
    buf.extend_from_slice(&[0u8; DATA_HEADER_LEN]);
    let mut buf = f.read_at(offset, len, buf).await?;
    let n = buf.len() - DATA_HEADER_LEN;
    if n == 0 && len > 0 {
        return Ok(status(id, StatusCode::Eof, "End of file"));
    }
    buf[..DATA_HEADER_LEN].copy_from_slice(&data_header(id, n as u32));
    if let Some(l) = &ctx.opts.user_bwlimit {
        l.take(ferry_layers::bwlimit::Direction::Rx, n).await;
    }
    if let Some(t) = tickets.first().and_then(|t| t.transfer.as_ref()) {
        t.add_read(n as u64);
    }
    ctx.opts.traffic.add_read(n as u64);
    if let Some(m) = &ctx.opts.metrics {
        m.sftp_read(n as u64);
    }
    Ok(buf)
}

async fn opendir(ctx: &Ctx, id: u32, p: &[u8]) -> OpResult {
    let rel = path(p)?;
    let entries = ctx.vfs.read_dir(&rel).await?;
    let cursor = DirCursor::new(rel.clone(), entries);
    match ctx.handles.insert(
        HandleKind::Dir(std::sync::Mutex::new(cursor)),
        rel,
        None,
        None,
    ) {
        Ok(h) => Ok(encode(&Response::Handle {
            id,
            handle: Bytes::from(h),
        })),
        Err(_) => Ok(status(id, StatusCode::Failure, "Too many open handles")),
    }
}

/// Bytes of READDIR reply a page stays within (one entry may be longer).
pub(crate) const READDIR_BYTES: usize = 64 * 1024;

/// An entry's encoding beyond its name and long name: two lengths and the
/// attributes with extended pairs at most a few.
const NAME_ENTRY_OVERHEAD: usize = 8 + 64;

fn readdir(ctx: &Ctx, id: u32, tickets: &[Arc<HandleEntry>]) -> OpResult {
    let entry = tickets.first().ok_or(OpError::InvalidHandle)?;
    let HandleKind::Dir(cursor) = &entry.kind else {
        return Err(OpError::NotADirectoryHandle);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs().min(u32::MAX as u64) as u32)
        .unwrap_or(0);
    let mut c = cursor.lock().unwrap_or_else(|p| p.into_inner());
    if c.pos >= c.entries.len() {
        return Ok(status(id, StatusCode::Eof, "End of directory"));
    }
    // A page is at most `readdir_page` entries and about READDIR_BYTES of
    // reply (what the reader charged the request for), at least one entry.
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut end = c.pos;
    for (name, a) in c.entries[c.pos..].iter().take(ctx.opts.readdir_page) {
        let wire = to_wire(a);
        let longname = format_longname(name, &wire, &a.uid.to_string(), &a.gid.to_string(), now);
        let size = name.len() + longname.len() + NAME_ENTRY_OVERHEAD;
        if !entries.is_empty() && bytes + size > READDIR_BYTES {
            break;
        }
        bytes += size;
        end += 1;
        entries.push(NameEntry {
            filename: Bytes::copy_from_slice(name),
            longname,
            attrs: wire,
        });
    }
    c.pos = end;
    Ok(encode(&Response::Name { id, entries }))
}

async fn extended(
    ctx: &Ctx,
    id: u32,
    x: &ExtendedRequest,
    tickets: &[Arc<HandleEntry>],
) -> OpResult {
    match x {
        ExtendedRequest::PosixRename { old, new } => {
            ctx.vfs.rename(&path(old)?, &path(new)?, true).await?;
            ok(id)
        }
        ExtendedRequest::Statvfs { path: p } => {
            ctx.vfs.stat(&path(p)?).await?;
            statvfs(ctx, id).await
        }
        ExtendedRequest::Fstatvfs { .. } => statvfs(ctx, id).await,
        ExtendedRequest::Hardlink { old, new } => {
            ctx.vfs.hardlink(&path(old)?, &path(new)?).await?;
            ok(id)
        }
        ExtendedRequest::Fsync { .. } => {
            file(tickets)?.sync().await?;
            ok(id)
        }
        ExtendedRequest::Lsetstat { path: p, attrs: a } => {
            ctx.vfs.setstat(&path(p)?, &to_setattrs(a), false).await?;
            ok(id)
        }
        ExtendedRequest::Limits => {
            let limits = Limits {
                max_packet_len: 256 * 1024,
                max_read_len: ctx.opts.max_read as u64,
                max_write_len: ctx.opts.max_write as u64,
                max_open_handles: ctx.opts.max_handles as u64,
            };
            Ok(encode(&Response::ExtendedReply {
                id,
                data: limits.to_bytes(),
            }))
        }
        ExtendedRequest::ExpandPath { path: p } => {
            // The home directory is the root: `~` and `~user` expand to it.
            let rest: &[u8] = if p.first() == Some(&b'~') {
                match p.iter().position(|&b| b == b'/') {
                    Some(i) => &p[i..],
                    None => b"/",
                }
            } else {
                p
            };
            one_name(id, path(rest)?.to_absolute())
        }
        ExtendedRequest::HomeDirectory { .. } => one_name(id, b"/".to_vec()),
        ExtendedRequest::CopyData {
            read_offset,
            read_len,
            write_offset,
            ..
        } => copy_data(ctx, id, tickets, *read_offset, *read_len, *write_offset).await,
        _ => Ok(status(
            id,
            StatusCode::OpUnsupported,
            "Unsupported extension",
        )),
    }
}

async fn statvfs(ctx: &Ctx, id: u32) -> OpResult {
    let u = ctx.vfs.statfs().await?;
    let frsize = u.block_size.filter(|&b| b > 0).unwrap_or(4096);
    let total = u.total.unwrap_or(0);
    let free = u.free.unwrap_or(0);
    let used = u.used.unwrap_or(total.saturating_sub(free));
    let mut flag = ferry_proto::ST_NOSUID;
    if ctx.read_only() {
        flag |= ferry_proto::ST_RDONLY;
    }
    let s = Statvfs {
        bsize: frsize,
        frsize,
        blocks: total / frsize,
        bfree: total.saturating_sub(used) / frsize,
        bavail: free / frsize,
        files: u.files.unwrap_or(0),
        ffree: u.files_free.unwrap_or(0),
        favail: u.files_free.unwrap_or(0),
        fsid: 0,
        flag,
        namemax: u.name_max.unwrap_or(255),
    };
    Ok(encode(&Response::ExtendedReply {
        id,
        data: s.to_bytes(),
    }))
}

/// `copy-data`: copy a byte range between two open handles inside the
/// server; no data crosses the network.
async fn copy_data(
    ctx: &Ctx,
    id: u32,
    tickets: &[Arc<HandleEntry>],
    read_offset: u64,
    read_len: u64,
    write_offset: u64,
) -> OpResult {
    let src = tickets
        .first()
        .and_then(|t| t.file())
        .ok_or(OpError::NotAFileHandle)?;
    let dst = match tickets.get(1) {
        Some(t) => t.file().ok_or(OpError::NotAFileHandle)?,
        None => {
            // The same handle: overlapping ranges would read what was just
            // written.
            let end = read_offset.saturating_add(if read_len == 0 { u64::MAX } else { read_len });
            if write_offset < end && read_offset < write_offset.saturating_add(end - read_offset) {
                return Err(OpError::CopyOverlap);
            }
            src
        }
    };
    // The whole file into a new one: inside the store, where it can.
    let whole = read_offset == 0 && write_offset == 0 && !std::ptr::eq(src, dst);
    if whole
        && (read_len == 0 || read_len >= src.stat().await?.size)
        && dst.copy_whole_in_store(src).await?
    {
        return ok(id);
    }
    const CHUNK: u64 = 256 * 1024;
    let mut done = 0u64;
    loop {
        let want = if read_len == 0 {
            CHUNK
        } else {
            (read_len - done).min(CHUNK)
        };
        if want == 0 {
            break;
        }
        // A copy of a large range is not finished for a client that left.
        if ctx.gone.is_set() {
            return Err(OpError::ClientGone);
        }
        let buf = src
            .read_at(
                read_offset + done,
                want as usize,
                Vec::with_capacity(want as usize),
            )
            .await?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len() as u64;
        dst.write_at(write_offset + done, Bytes::from(buf)).await?;
        done += n;
    }
    ok(id)
}

/// A request's name in the metrics: its SFTP name, or the extension's
/// (unknown extensions together, so a client cannot make new series).
fn metric_name(req: &Request) -> &'static str {
    match req {
        Request::Extended { request, .. } => {
            const KNOWN: &[&str] = &[
                "posix-rename@openssh.com",
                "statvfs@openssh.com",
                "fstatvfs@openssh.com",
                "hardlink@openssh.com",
                "fsync@openssh.com",
                "lsetstat@openssh.com",
                "limits@openssh.com",
                "expand-path@openssh.com",
                "home-directory",
                "copy-data",
                "check-file-name",
                "check-file-handle",
                "users-groups-by-id@openssh.com",
            ];
            let name = request.wire_name();
            KNOWN
                .iter()
                .find(|k| k.as_bytes() == name)
                .copied()
                .unwrap_or("extended")
        }
        _ => req.info().name,
    }
}

/// A reply's status in the metrics (data replies are `ok`).
fn status_label(code: Option<StatusCode>) -> &'static str {
    match code {
        None | Some(StatusCode::Ok) => "ok",
        Some(StatusCode::Eof) => "eof",
        Some(StatusCode::NoSuchFile) => "no_such_file",
        Some(StatusCode::PermissionDenied) => "permission_denied",
        Some(StatusCode::Failure) => "failure",
        Some(StatusCode::BadMessage) => "bad_message",
        Some(StatusCode::OpUnsupported) => "op_unsupported",
        Some(_) => "other",
    }
}
