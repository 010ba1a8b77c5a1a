//! `SSH_FXP_EXTENDED` requests: a name string, then a body whose layout the
//! name decides. Covers the OpenSSH extensions (`PROTOCOL` in OpenSSH's
//! source) and the two from draft-ietf-secsh-filexfer-extensions
//! (`home-directory`, `copy-data`).

use bytes::Bytes;

use crate::attrs::FileAttributes;
use crate::error::DecodeErrorKind;
use crate::wire::{len_u32, put_string, put_u32, put_u64, Reader};

/// Wire names of the extended requests this crate decodes. A server lists the
/// ones it implements in `SSH_FXP_VERSION` (for example
/// `(Bytes::from_static(ext_name::POSIX_RENAME), Bytes::from_static(b"1"))`).
pub mod ext_name {
    /// [`ExtendedRequest::PosixRename`](crate::ExtendedRequest::PosixRename).
    pub const POSIX_RENAME: &[u8] = b"posix-rename@openssh.com";
    /// [`ExtendedRequest::Statvfs`](crate::ExtendedRequest::Statvfs).
    pub const STATVFS: &[u8] = b"statvfs@openssh.com";
    /// [`ExtendedRequest::Fstatvfs`](crate::ExtendedRequest::Fstatvfs).
    pub const FSTATVFS: &[u8] = b"fstatvfs@openssh.com";
    /// [`ExtendedRequest::Hardlink`](crate::ExtendedRequest::Hardlink).
    pub const HARDLINK: &[u8] = b"hardlink@openssh.com";
    /// [`ExtendedRequest::Fsync`](crate::ExtendedRequest::Fsync).
    pub const FSYNC: &[u8] = b"fsync@openssh.com";
    /// [`ExtendedRequest::Lsetstat`](crate::ExtendedRequest::Lsetstat).
    pub const LSETSTAT: &[u8] = b"lsetstat@openssh.com";
    /// [`ExtendedRequest::Limits`](crate::ExtendedRequest::Limits).
    pub const LIMITS: &[u8] = b"limits@openssh.com";
    /// [`ExtendedRequest::ExpandPath`](crate::ExtendedRequest::ExpandPath).
    pub const EXPAND_PATH: &[u8] = b"expand-path@openssh.com";
    /// [`ExtendedRequest::HomeDirectory`](crate::ExtendedRequest::HomeDirectory).
    pub const HOME_DIRECTORY: &[u8] = b"home-directory";
    /// [`ExtendedRequest::CopyData`](crate::ExtendedRequest::CopyData).
    pub const COPY_DATA: &[u8] = b"copy-data";
    /// [`ExtendedRequest::UsersGroupsById`](crate::ExtendedRequest::UsersGroupsById).
    pub const USERS_GROUPS_BY_ID: &[u8] = b"users-groups-by-id@openssh.com";
}

/// The body of an `SSH_FXP_EXTENDED` request, by extension name.
///
/// Successful replies are `SSH_FXP_STATUS` (rename, hardlink, fsync,
/// lsetstat, copy-data), `SSH_FXP_NAME` (expand-path, home-directory) or
/// `SSH_FXP_EXTENDED_REPLY` (statvfs, fstatvfs: [`Statvfs`](crate::Statvfs);
/// limits: [`Limits`](crate::Limits); users-groups-by-id: two strings of
/// packed name strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtendedRequest {
    /// `posix-rename@openssh.com`: rename that replaces an existing target
    /// (POSIX `rename(2)` semantics).
    PosixRename {
        /// Existing path.
        old: Bytes,
        /// New path.
        new: Bytes,
    },
    /// `statvfs@openssh.com`: file system statistics for a path.
    Statvfs {
        /// Any path on the file system.
        path: Bytes,
    },
    /// `fstatvfs@openssh.com`: file system statistics for an open handle.
    Fstatvfs {
        /// An open handle.
        handle: Bytes,
    },
    /// `hardlink@openssh.com`: create a hard link `new` to `old`.
    Hardlink {
        /// Existing path.
        old: Bytes,
        /// Path of the new link.
        new: Bytes,
    },
    /// `fsync@openssh.com`: flush an open file to stable storage.
    Fsync {
        /// An open file handle.
        handle: Bytes,
    },
    /// `lsetstat@openssh.com`: like `SETSTAT` but does not follow a final
    /// symlink.
    Lsetstat {
        /// Path to change.
        path: Bytes,
        /// Attributes to set.
        attrs: FileAttributes,
    },
    /// `limits@openssh.com`: ask for the server's packet and handle limits. No
    /// body.
    Limits,
    /// `expand-path@openssh.com`: like `REALPATH`, but also expands a leading
    /// `~` or `~user`.
    ExpandPath {
        /// Path to expand.
        path: Bytes,
    },
    /// `home-directory`: the home directory of a user.
    HomeDirectory {
        /// User name; empty means the session's own user.
        username: Bytes,
    },
    /// `copy-data`: server-side copy between two open handles.
    CopyData {
        /// Handle opened for reading.
        read_handle: Bytes,
        /// Offset to read from.
        read_offset: u64,
        /// Bytes to copy; 0 means until end of file.
        read_len: u64,
        /// Handle opened for writing (may equal `read_handle`).
        write_handle: Bytes,
        /// Offset to write at.
        write_offset: u64,
    },
    /// `users-groups-by-id@openssh.com`: names for numeric ids. On the wire
    /// each list is one `string` holding packed big-endian `u32`s.
    UsersGroupsById {
        /// User ids to look up.
        uids: Vec<u32>,
        /// Group ids to look up.
        gids: Vec<u32>,
    },
    /// Any other extension. `data` is everything after the name, unparsed.
    ///
    /// Encoding an `Unknown` whose name is one of [`ext_name`] produces a
    /// packet that decodes as the named variant (if `data` fits its layout).
    Unknown {
        /// Extension name as sent.
        name: Bytes,
        /// The raw body.
        data: Bytes,
    },
}

impl ExtendedRequest {
    /// The extension name sent on the wire.
    pub fn wire_name(&self) -> &[u8] {
        match self {
            ExtendedRequest::PosixRename { .. } => ext_name::POSIX_RENAME,
            ExtendedRequest::Statvfs { .. } => ext_name::STATVFS,
            ExtendedRequest::Fstatvfs { .. } => ext_name::FSTATVFS,
            ExtendedRequest::Hardlink { .. } => ext_name::HARDLINK,
            ExtendedRequest::Fsync { .. } => ext_name::FSYNC,
            ExtendedRequest::Lsetstat { .. } => ext_name::LSETSTAT,
            ExtendedRequest::Limits => ext_name::LIMITS,
            ExtendedRequest::ExpandPath { .. } => ext_name::EXPAND_PATH,
            ExtendedRequest::HomeDirectory { .. } => ext_name::HOME_DIRECTORY,
            ExtendedRequest::CopyData { .. } => ext_name::COPY_DATA,
            ExtendedRequest::UsersGroupsById { .. } => ext_name::USERS_GROUPS_BY_ID,
            ExtendedRequest::Unknown { name, .. } => name,
        }
    }

    /// Decodes the body that follows the name. Bytes after the last field are
    /// ignored, as for every known request.
    pub(crate) fn decode(name: Bytes, r: &mut Reader) -> Result<Self, DecodeErrorKind> {
        Ok(match &name[..] {
            ext_name::POSIX_RENAME => ExtendedRequest::PosixRename {
                old: r.string()?,
                new: r.string()?,
            },
            ext_name::STATVFS => ExtendedRequest::Statvfs { path: r.string()? },
            ext_name::FSTATVFS => ExtendedRequest::Fstatvfs {
                handle: r.string()?,
            },
            ext_name::HARDLINK => ExtendedRequest::Hardlink {
                old: r.string()?,
                new: r.string()?,
            },
            ext_name::FSYNC => ExtendedRequest::Fsync {
                handle: r.string()?,
            },
            ext_name::LSETSTAT => ExtendedRequest::Lsetstat {
                path: r.string()?,
                attrs: FileAttributes::decode(r)?,
            },
            ext_name::LIMITS => ExtendedRequest::Limits,
            ext_name::EXPAND_PATH => ExtendedRequest::ExpandPath { path: r.string()? },
            ext_name::HOME_DIRECTORY => ExtendedRequest::HomeDirectory {
                username: r.string()?,
            },
            ext_name::COPY_DATA => ExtendedRequest::CopyData {
                read_handle: r.string()?,
                read_offset: r.u64()?,
                read_len: r.u64()?,
                write_handle: r.string()?,
                write_offset: r.u64()?,
            },
            ext_name::USERS_GROUPS_BY_ID => ExtendedRequest::UsersGroupsById {
                uids: id_list(
                    r.string()?,
                    "users-groups-by-id uid list length is not a multiple of 4",
                )?,
                gids: id_list(
                    r.string()?,
                    "users-groups-by-id gid list length is not a multiple of 4",
                )?,
            },
            _ => ExtendedRequest::Unknown {
                name,
                data: r.rest(),
            },
        })
    }

    /// Appends the name and body (not the packet header).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_string(out, self.wire_name());
        match self {
            ExtendedRequest::PosixRename { old, new } | ExtendedRequest::Hardlink { old, new } => {
                put_string(out, old);
                put_string(out, new);
            }
            ExtendedRequest::Statvfs { path } | ExtendedRequest::ExpandPath { path } => {
                put_string(out, path)
            }
            ExtendedRequest::Fstatvfs { handle } | ExtendedRequest::Fsync { handle } => {
                put_string(out, handle)
            }
            ExtendedRequest::Lsetstat { path, attrs } => {
                put_string(out, path);
                attrs.encode(out);
            }
            ExtendedRequest::Limits => {}
            ExtendedRequest::HomeDirectory { username } => put_string(out, username),
            ExtendedRequest::CopyData {
                read_handle,
                read_offset,
                read_len,
                write_handle,
                write_offset,
            } => {
                put_string(out, read_handle);
                put_u64(out, *read_offset);
                put_u64(out, *read_len);
                put_string(out, write_handle);
                put_u64(out, *write_offset);
            }
            ExtendedRequest::UsersGroupsById { uids, gids } => {
                put_id_list(out, uids);
                put_id_list(out, gids);
            }
            ExtendedRequest::Unknown { data, .. } => out.extend_from_slice(data),
        }
    }
}

/// Unpacks a string of big-endian `u32`s; `err` is returned unless its length
/// is a multiple of 4.
/// The allocation is bounded by the string's actual (already received) size.
fn id_list(packed: Bytes, err: &'static str) -> Result<Vec<u32>, DecodeErrorKind> {
    if !packed.len().is_multiple_of(4) {
        return Err(DecodeErrorKind::BadValue(err));
    }
    Ok(packed
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn put_id_list(out: &mut Vec<u8>, ids: &[u32]) {
    let byte_len = ids
        .len()
        .checked_mul(4)
        .expect("users-groups-by-id list too long");
    put_u32(out, len_u32(byte_len));
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
}
