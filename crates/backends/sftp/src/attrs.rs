//! SFTP attributes and Ferry's metadata, both ways.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_backend::{FileType, Metadata, SetAttrs};
use ferry_proto::{mode, FileAttributes};

pub(crate) fn time(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(secs))
}

pub(crate) fn secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// Metadata from SFTP attributes. Without permissions the type is unknown
/// and taken to be a file.
pub(crate) fn to_meta(a: &FileAttributes) -> Metadata {
    let file_type = match a.file_type() {
        None | Some(mode::S_IFREG) => FileType::File,
        Some(mode::S_IFDIR) => FileType::Dir,
        Some(mode::S_IFLNK) => FileType::Symlink,
        Some(_) => FileType::Other,
    };
    Metadata {
        file_type,
        size: a.size.unwrap_or(0),
        mtime: a.atime_mtime.map(|(_, m)| time(m)),
        atime: a.atime_mtime.map(|(a, _)| time(a)),
        permissions: a.permissions.map(|p| p & 0o7777),
        owner: a.uid_gid,
        change: None,
    }
}

/// SFTP attributes to set; times are left out unless `set_modtime`.
pub(crate) fn to_attrs(s: &SetAttrs, set_modtime: bool) -> FileAttributes {
    FileAttributes {
        size: s.size,
        uid_gid: s.owner,
        permissions: s.permissions.map(|p| p & 0o7777),
        atime_mtime: s
            .times
            .filter(|_| set_modtime)
            .map(|(a, m)| (secs(a), secs(m))),
        extended: Vec::new(),
    }
}
