//! Symbolic links that stay inside the root as the kernel resolves them.
//!
//! Ferry itself resolves every path beneath the root, but other programs
//! on the host follow the links Ferry makes as the kernel does: from the
//! link's *physical* directory, `..` by `..`. So a link's stored target is
//! written relative to where the link physically is (a directory reached
//! through an in-root symbolic link is somewhere else than its path says),
//! and a rename that would carry a link's `..` above the root rewrites the
//! link to name the same file from its new place. A directory moved up
//! has the links below it checked the same way, before the move.
//!
//! A target is handled only in the form Ferry writes: some `..` first,
//! then names. Links made on the host in other forms (absolute, or `..`
//! after a name) are left as they are.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use cap_fs_ext::DirExt;
use cap_std::fs::Dir;
use ferry_backend::RelPath;

type Comps = Vec<Vec<u8>>;

/// The path of an open directory, as the kernel names it.
fn fd_path(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    let p = p.into_os_string().into_vec();
    if p.ends_with(b" (deleted)") || !p.starts_with(b"/") {
        return Err(io::Error::other("cannot tell where a directory is"));
    }
    Ok(p)
}

/// Where directory `dir` (relative to the root) physically is, relative to
/// the root: its path with every in-root symbolic link on the way resolved.
pub(crate) fn physical(root: &Dir, dir: &RelPath) -> io::Result<Comps> {
    let root_path = fd_path(root.as_fd())?;
    let d;
    let fd = if dir.is_root() {
        root.as_fd()
    } else {
        d = root.open_dir(super::os(dir))?;
        d.as_fd()
    };
    let path = fd_path(fd)?;
    let rest = if root_path == b"/" {
        &path[..]
    } else {
        match path.strip_prefix(&root_path[..]) {
            Some(r) if r.is_empty() || r.starts_with(b"/") => r,
            _ => return Err(io::Error::other("a directory is outside the root")),
        }
    };
    Ok(rest
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// How many levels a target in Ferry's form climbs (`..` first, then
/// names); `None` for any other form.
pub(crate) fn climb(text: &[u8]) -> Option<usize> {
    if text.starts_with(b"/") {
        return None;
    }
    let mut ups = 0;
    let mut named = false;
    for c in text.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." if named => return None,
            b".." => ups += 1,
            _ => named = true,
        }
    }
    Some(ups)
}

/// The root-relative path that `text`, in Ferry's form, names from `dir`;
/// `None` if it climbs above the root or is in another form.
pub(crate) fn resolve(dir: &[Vec<u8>], text: &[u8]) -> Option<Comps> {
    let ups = climb(text)?;
    if ups > dir.len() {
        return None;
    }
    let mut out: Comps = dir[..dir.len() - ups].to_vec();
    out.extend(
        text.split(|&b| b == b'/')
            .filter(|c| !matches!(*c, b"" | b"." | b".."))
            .map(<[u8]>::to_vec),
    );
    Some(out)
}

/// The shortest target naming root-relative `target` from `dir`.
pub(crate) fn relative(dir: &[Vec<u8>], target: &[Vec<u8>]) -> Vec<u8> {
    let common = dir.iter().zip(target).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&[u8]> = vec![b".."; dir.len() - common];
    parts.extend(target[common..].iter().map(Vec::as_slice));
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b'/')
}

fn comps(p: &RelPath) -> Comps {
    p.components().map(<[u8]>::to_vec).collect()
}

/// Make link `link` with `text` (relative to the link's directory as its
/// path names it, in Ferry's form), stored relative to where the
/// directory physically is.
pub(crate) fn make(root: &Dir, text: &[u8], link: &RelPath) -> io::Result<()> {
    let parent = link.parent().unwrap_or_default();
    let target = resolve(&comps(&parent), text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a link target must stay inside the served directory",
        )
    })?;
    let stored = relative(&physical(root, &parent)?, &target);
    root.symlink_contents(OsStr::from_bytes(&stored), super::os(link))
}

/// Replace the target of the link `name` in `dir` by `text`, atomically.
fn retarget(dir: &Dir, name: &OsStr, text: &[u8]) -> io::Result<()> {
    let temp = temp_name(name);
    dir.symlink_contents(OsStr::from_bytes(text), &temp)?;
    dir.rename(&temp, dir, name).inspect_err(|_| {
        let _ = dir.remove_file(&temp);
    })
}

fn temp_name(name: &OsStr) -> std::ffi::OsString {
    let mut t = std::ffi::OsString::from(".");
    t.push(name);
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    t.push(format!(".ferry-link-{}-{n}", std::process::id()));
    t
}

/// Rename `from` to `to` so that no link moved with it points above the
/// root: `rename` does the move itself.
pub(crate) fn rename(
    root: &Dir,
    from: &RelPath,
    to: &RelPath,
    rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let meta = root.symlink_metadata(super::os(from))?;
    if meta.file_type().is_symlink() {
        return rename_link(root, from, to, rename);
    }
    if !meta.is_dir() || from == to {
        return rename();
    }
    // A directory moved up: the links below it that would climb above the
    // root get their new targets first (those are safe where they are:
    // they climb less), and their old ones back if the move fails.
    let old = physical(root, from)?;
    let mut new = physical(root, &to.parent().unwrap_or_default())?;
    new.push(to.file_name().unwrap_or_default().to_vec());
    if new.len() >= old.len() {
        return rename();
    }
    let mut changed: Vec<(RelPath, Vec<u8>)> = Vec::new();
    let fixed = fix_below(root, from, &old, &new, &mut changed);
    let result = fixed.and_then(|()| rename());
    if result.is_err() {
        for (link, text) in changed.iter().rev() {
            if let Ok((dir, name)) = super::open_parent(root, link) {
                let _ = retarget(&dir, name, text);
            }
        }
    }
    result
}

/// Rename a link, rewriting its target if it would climb above the root
/// from its new place.
fn rename_link(
    root: &Dir,
    from: &RelPath,
    to: &RelPath,
    rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let text = root
        .read_link_contents(super::os(from))?
        .into_os_string()
        .into_vec();
    let Some(ups) = climb(&text) else {
        return rename();
    };
    let new_dir = physical(root, &to.parent().unwrap_or_default())?;
    if ups <= new_dir.len() || from == to {
        return rename();
    }
    let old_dir = physical(root, &from.parent().unwrap_or_default())?;
    let Some(target) = resolve(&old_dir, &text) else {
        return rename();
    };
    // Rewritten at its old place first (it climbs less, so it stays
    // inside there too), then moved: never a moment outside.
    let (dir, name) = super::open_parent(root, from)?;
    retarget(&dir, name, &relative(&new_dir, &target))?;
    rename().inspect_err(|_| {
        let _ = retarget(&dir, name, &text);
    })
}

/// Give every link below directory `top` (physically at `old`, moving to
/// `new`) that would climb above the root from there the target naming
/// the same path from its new place; record each old target.
fn fix_below(
    root: &Dir,
    top: &RelPath,
    old: &[Vec<u8>],
    new: &[Vec<u8>],
    changed: &mut Vec<(RelPath, Vec<u8>)>,
) -> io::Result<()> {
    let mut todo: Vec<Comps> = vec![Vec::new()];
    while let Some(rel) = todo.pop() {
        let path = join(top, &rel);
        let dir = if path.is_root() {
            root.try_clone()?
        } else {
            root.open_dir_nofollow(super::os(&path))?
        };
        for entry in dir.entries()? {
            let entry = entry?;
            let ty = entry.file_type()?;
            let name = entry.file_name();
            if ty.is_dir() {
                let mut r = rel.clone();
                r.push(name.as_bytes().to_vec());
                todo.push(r);
                continue;
            }
            if !ty.is_symlink() {
                continue;
            }
            let text = dir.read_link_contents(&name)?.into_os_string().into_vec();
            let Some(ups) = climb(&text) else { continue };
            let new_dir: Comps = new.iter().chain(&rel).cloned().collect();
            if ups <= new_dir.len() {
                continue;
            }
            let old_dir: Comps = old.iter().chain(&rel).cloned().collect();
            let Some(target) = resolve(&old_dir, &text) else {
                continue;
            };
            retarget(&dir, &name, &relative(&new_dir, &target))?;
            let mut r = rel.clone();
            r.push(name.as_bytes().to_vec());
            changed.push((join(top, &r), text));
        }
    }
    Ok(())
}

fn join(top: &RelPath, rel: &[Vec<u8>]) -> RelPath {
    let mut p = top.clone();
    for c in rel {
        p = p.join(c).unwrap_or_else(|_| p.clone());
    }
    p
}
