//! What a client sees of a file.

use std::time::SystemTime;

use ferry_backend::{Capabilities, FileType, Metadata};

use crate::VfsOptions;

/// Unix file type bits.
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;

/// When this process started serving (the first time it was asked).
fn started() -> SystemTime {
    static START: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
    *START.get_or_init(SystemTime::now)
}

/// Attributes after the serving policy is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// The type.
    pub file_type: FileType,
    /// Size in bytes.
    pub size: u64,
    /// Mode: type bits and permission bits.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Last access.
    pub atime: SystemTime,
    /// Last modification.
    pub mtime: SystemTime,
}

impl Attr {
    /// Apply `opts` to what the backend reported.
    pub fn from_meta(meta: &Metadata, opts: &VfsOptions, caps: Capabilities) -> Attr {
        let type_bits = match meta.file_type {
            FileType::Dir => S_IFDIR,
            FileType::Symlink => S_IFLNK,
            _ => S_IFREG,
        };
        let synthetic = match meta.file_type {
            FileType::Dir => opts.dir_perms,
            FileType::Symlink => 0o777,
            _ => opts.file_perms,
        } & !opts.umask;
        let perms = match meta.permissions {
            Some(p) if caps.permissions && !opts.override_perms => p,
            _ => synthetic,
        } & 0o7777;
        let (uid, gid) = meta.owner.unwrap_or((opts.default_uid, opts.default_gid));
        // A store that keeps no time for an entry (a directory on an object
        // store): the time this server started, steady across requests,
        // rather than 1970.
        let mtime = meta.mtime.unwrap_or_else(started);
        Attr {
            file_type: meta.file_type,
            size: meta.size,
            mode: type_bits | perms,
            uid: opts.uid.unwrap_or(uid),
            gid: opts.gid.unwrap_or(gid),
            atime: meta.atime.unwrap_or(mtime),
            mtime,
        }
    }

    /// Is this a directory?
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Dir
    }
}
