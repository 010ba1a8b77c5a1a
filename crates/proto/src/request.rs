//! Client-to-server packets ([`Request`]) and the table of operation facts
//! ([`OpInfo`], [`OPERATIONS`]).

use bytes::Bytes;

use crate::attrs::FileAttributes;
use crate::consts::{packet_type as ty, pflags};
use crate::error::{DecodeError, DecodeErrorKind};
use crate::extended::ExtendedRequest;
use crate::wire::{framed, put_pairs, put_string, put_u32, put_u64, put_u8, read_pairs, Reader};

/// A request from an SFTP client.
///
/// Paths, handles and data are raw bytes sliced from the decoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `SSH_FXP_INIT`: the client's hello. The only request without an id.
    Init {
        /// Highest version the client speaks.
        version: u32,
        /// Extension pairs (rarely sent by clients).
        extensions: Vec<(Bytes, Bytes)>,
    },
    /// `SSH_FXP_OPEN`: open or create a file.
    Open {
        /// Request id.
        id: u32,
        /// File path.
        path: Bytes,
        /// [`pflags`] bits.
        pflags: u32,
        /// Attributes for a newly created file.
        attrs: FileAttributes,
    },
    /// `SSH_FXP_CLOSE`: close a file or directory handle.
    Close {
        /// Request id.
        id: u32,
        /// The handle.
        handle: Bytes,
    },
    /// `SSH_FXP_READ`: read up to `len` bytes at `offset`.
    Read {
        /// Request id.
        id: u32,
        /// File handle.
        handle: Bytes,
        /// Byte offset.
        offset: u64,
        /// Maximum bytes to return.
        len: u32,
    },
    /// `SSH_FXP_WRITE`: write `data` at `offset`.
    Write {
        /// Request id.
        id: u32,
        /// File handle.
        handle: Bytes,
        /// Byte offset.
        offset: u64,
        /// The bytes to write.
        data: Bytes,
    },
    /// `SSH_FXP_LSTAT`: attributes of a path, not following a final symlink.
    Lstat {
        /// Request id.
        id: u32,
        /// The path.
        path: Bytes,
    },
    /// `SSH_FXP_FSTAT`: attributes of an open handle.
    Fstat {
        /// Request id.
        id: u32,
        /// The handle.
        handle: Bytes,
    },
    /// `SSH_FXP_SETSTAT`: change attributes of a path.
    Setstat {
        /// Request id.
        id: u32,
        /// The path.
        path: Bytes,
        /// Attributes to set; absent fields are left alone.
        attrs: FileAttributes,
    },
    /// `SSH_FXP_FSETSTAT`: change attributes of an open handle.
    Fsetstat {
        /// Request id.
        id: u32,
        /// The handle.
        handle: Bytes,
        /// Attributes to set; absent fields are left alone.
        attrs: FileAttributes,
    },
    /// `SSH_FXP_OPENDIR`: open a directory for listing.
    Opendir {
        /// Request id.
        id: u32,
        /// Directory path.
        path: Bytes,
    },
    /// `SSH_FXP_READDIR`: next batch of entries of a directory handle.
    Readdir {
        /// Request id.
        id: u32,
        /// Directory handle.
        handle: Bytes,
    },
    /// `SSH_FXP_REMOVE`: delete a file.
    Remove {
        /// Request id.
        id: u32,
        /// File path.
        path: Bytes,
    },
    /// `SSH_FXP_MKDIR`: create a directory.
    Mkdir {
        /// Request id.
        id: u32,
        /// Directory path.
        path: Bytes,
        /// Attributes for the new directory.
        attrs: FileAttributes,
    },
    /// `SSH_FXP_RMDIR`: delete an empty directory.
    Rmdir {
        /// Request id.
        id: u32,
        /// Directory path.
        path: Bytes,
    },
    /// `SSH_FXP_REALPATH`: canonicalise a path.
    Realpath {
        /// Request id.
        id: u32,
        /// Path to canonicalise.
        path: Bytes,
    },
    /// `SSH_FXP_STAT`: attributes of a path, following symlinks.
    Stat {
        /// Request id.
        id: u32,
        /// The path.
        path: Bytes,
    },
    /// `SSH_FXP_RENAME`: rename; v3 semantics fail if `new` exists (see
    /// [`ExtendedRequest::PosixRename`] for the overwriting form).
    Rename {
        /// Request id.
        id: u32,
        /// Existing path.
        old: Bytes,
        /// New path.
        new: Bytes,
    },
    /// `SSH_FXP_READLINK`: target of a symbolic link.
    Readlink {
        /// Request id.
        id: u32,
        /// Link path.
        path: Bytes,
    },
    /// `SSH_FXP_SYMLINK`: create a symbolic link at `linkpath` pointing to
    /// `targetpath`.
    ///
    /// **Wire order.** Draft-02 puts `linkpath` first, but OpenSSH's client
    /// and server have always sent and read `targetpath` first, and every
    /// widely used client follows OpenSSH. This crate uses OpenSSH's order in
    /// both directions: the first string is the target, the second the link.
    Symlink {
        /// Request id.
        id: u32,
        /// Path of the link to create (second string on the wire).
        linkpath: Bytes,
        /// What the link points to (first string on the wire).
        targetpath: Bytes,
    },
    /// `SSH_FXP_EXTENDED`: a named extension.
    Extended {
        /// Request id.
        id: u32,
        /// The decoded extension.
        request: ExtendedRequest,
    },
}

/// Static facts about one operation, for logging and for permission checks
/// made once before dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpInfo {
    /// Short name, as OpenSSH's `sftp-server -P/-p` lists use it ("open",
    /// "posix-rename", ...). Unknown extensions are "extended".
    pub name: &'static str,
    /// The packet type byte (200 for every extension).
    pub opcode: u8,
    /// Whether the operation modifies the store. For `open` this is `false`:
    /// whether an open writes depends on its flags, so use
    /// [`Request::writes`] for the decision.
    pub writes: bool,
}

/// The operation table; `OPERATIONS` lists every entry.
mod op {
    use super::{ty, OpInfo};

    const fn info(name: &'static str, opcode: u8, writes: bool) -> OpInfo {
        OpInfo {
            name,
            opcode,
            writes,
        }
    }

    pub const INIT: OpInfo = info("init", ty::INIT, false);
    pub const OPEN: OpInfo = info("open", ty::OPEN, false);
    pub const CLOSE: OpInfo = info("close", ty::CLOSE, false);
    pub const READ: OpInfo = info("read", ty::READ, false);
    pub const WRITE: OpInfo = info("write", ty::WRITE, true);
    pub const LSTAT: OpInfo = info("lstat", ty::LSTAT, false);
    pub const FSTAT: OpInfo = info("fstat", ty::FSTAT, false);
    pub const SETSTAT: OpInfo = info("setstat", ty::SETSTAT, true);
    pub const FSETSTAT: OpInfo = info("fsetstat", ty::FSETSTAT, true);
    pub const OPENDIR: OpInfo = info("opendir", ty::OPENDIR, false);
    pub const READDIR: OpInfo = info("readdir", ty::READDIR, false);
    pub const REMOVE: OpInfo = info("remove", ty::REMOVE, true);
    pub const MKDIR: OpInfo = info("mkdir", ty::MKDIR, true);
    pub const RMDIR: OpInfo = info("rmdir", ty::RMDIR, true);
    pub const REALPATH: OpInfo = info("realpath", ty::REALPATH, false);
    pub const STAT: OpInfo = info("stat", ty::STAT, false);
    pub const RENAME: OpInfo = info("rename", ty::RENAME, true);
    pub const READLINK: OpInfo = info("readlink", ty::READLINK, false);
    pub const SYMLINK: OpInfo = info("symlink", ty::SYMLINK, true);
    pub const POSIX_RENAME: OpInfo = info("posix-rename", ty::EXTENDED, true);
    pub const STATVFS: OpInfo = info("statvfs", ty::EXTENDED, false);
    pub const FSTATVFS: OpInfo = info("fstatvfs", ty::EXTENDED, false);
    pub const HARDLINK: OpInfo = info("hardlink", ty::EXTENDED, true);
    pub const FSYNC: OpInfo = info("fsync", ty::EXTENDED, false);
    pub const LSETSTAT: OpInfo = info("lsetstat", ty::EXTENDED, true);
    pub const LIMITS: OpInfo = info("limits", ty::EXTENDED, false);
    pub const EXPAND_PATH: OpInfo = info("expand-path", ty::EXTENDED, false);
    pub const HOME_DIRECTORY: OpInfo = info("home-directory", ty::EXTENDED, false);
    pub const COPY_DATA: OpInfo = info("copy-data", ty::EXTENDED, true);
    pub const USERS_GROUPS_BY_ID: OpInfo = info("users-groups-by-id", ty::EXTENDED, false);
    pub const UNKNOWN_EXTENDED: OpInfo = info("extended", ty::EXTENDED, false);
}

/// Every operation this crate decodes, in opcode order then extensions, with
/// the catch-all "extended" last. Useful to validate allow/deny lists by name.
pub const OPERATIONS: &[OpInfo] = &[
    op::INIT,
    op::OPEN,
    op::CLOSE,
    op::READ,
    op::WRITE,
    op::LSTAT,
    op::FSTAT,
    op::SETSTAT,
    op::FSETSTAT,
    op::OPENDIR,
    op::READDIR,
    op::REMOVE,
    op::MKDIR,
    op::RMDIR,
    op::REALPATH,
    op::STAT,
    op::RENAME,
    op::READLINK,
    op::SYMLINK,
    op::POSIX_RENAME,
    op::STATVFS,
    op::FSTATVFS,
    op::HARDLINK,
    op::FSYNC,
    op::LSETSTAT,
    op::LIMITS,
    op::EXPAND_PATH,
    op::HOME_DIRECTORY,
    op::COPY_DATA,
    op::USERS_GROUPS_BY_ID,
    op::UNKNOWN_EXTENDED,
];

impl ExtendedRequest {
    /// The operation facts for this extension.
    pub fn info(&self) -> OpInfo {
        match self {
            ExtendedRequest::PosixRename { .. } => op::POSIX_RENAME,
            ExtendedRequest::Statvfs { .. } => op::STATVFS,
            ExtendedRequest::Fstatvfs { .. } => op::FSTATVFS,
            ExtendedRequest::Hardlink { .. } => op::HARDLINK,
            ExtendedRequest::Fsync { .. } => op::FSYNC,
            ExtendedRequest::Lsetstat { .. } => op::LSETSTAT,
            ExtendedRequest::Limits => op::LIMITS,
            ExtendedRequest::ExpandPath { .. } => op::EXPAND_PATH,
            ExtendedRequest::HomeDirectory { .. } => op::HOME_DIRECTORY,
            ExtendedRequest::CopyData { .. } => op::COPY_DATA,
            ExtendedRequest::UsersGroupsById { .. } => op::USERS_GROUPS_BY_ID,
            ExtendedRequest::Unknown { .. } => op::UNKNOWN_EXTENDED,
        }
    }
}

/// True for the packet types [`Request::decode`] accepts after `INIT`.
fn is_request_type(t: u8) -> bool {
    (ty::OPEN..=ty::SYMLINK).contains(&t) || t == ty::EXTENDED
}

impl Request {
    /// The request id; `None` for `Init`, which has none.
    pub fn id(&self) -> Option<u32> {
        match self {
            Request::Init { .. } => None,
            Request::Open { id, .. }
            | Request::Close { id, .. }
            | Request::Read { id, .. }
            | Request::Write { id, .. }
            | Request::Lstat { id, .. }
            | Request::Fstat { id, .. }
            | Request::Setstat { id, .. }
            | Request::Fsetstat { id, .. }
            | Request::Opendir { id, .. }
            | Request::Readdir { id, .. }
            | Request::Remove { id, .. }
            | Request::Mkdir { id, .. }
            | Request::Rmdir { id, .. }
            | Request::Realpath { id, .. }
            | Request::Stat { id, .. }
            | Request::Rename { id, .. }
            | Request::Readlink { id, .. }
            | Request::Symlink { id, .. }
            | Request::Extended { id, .. } => Some(*id),
        }
    }

    /// The static facts of this operation (name, opcode, table `writes`).
    pub fn info(&self) -> OpInfo {
        match self {
            Request::Init { .. } => op::INIT,
            Request::Open { .. } => op::OPEN,
            Request::Close { .. } => op::CLOSE,
            Request::Read { .. } => op::READ,
            Request::Write { .. } => op::WRITE,
            Request::Lstat { .. } => op::LSTAT,
            Request::Fstat { .. } => op::FSTAT,
            Request::Setstat { .. } => op::SETSTAT,
            Request::Fsetstat { .. } => op::FSETSTAT,
            Request::Opendir { .. } => op::OPENDIR,
            Request::Readdir { .. } => op::READDIR,
            Request::Remove { .. } => op::REMOVE,
            Request::Mkdir { .. } => op::MKDIR,
            Request::Rmdir { .. } => op::RMDIR,
            Request::Realpath { .. } => op::REALPATH,
            Request::Stat { .. } => op::STAT,
            Request::Rename { .. } => op::RENAME,
            Request::Readlink { .. } => op::READLINK,
            Request::Symlink { .. } => op::SYMLINK,
            Request::Extended { request, .. } => request.info(),
        }
    }

    /// Whether this request modifies the store: the table's `writes`, except
    /// that `Open` writes when its flags include WRITE, APPEND, CREAT or
    /// TRUNC. A read-only server refuses requests for which this is true.
    pub fn writes(&self) -> bool {
        match self {
            Request::Open { pflags: f, .. } => {
                f & (pflags::WRITE | pflags::APPEND | pflags::CREAT | pflags::TRUNC) != 0
            }
            other => other.info().writes,
        }
    }

    /// Decodes a payload: the bytes after the 4-byte length prefix, type byte
    /// first (see [`check_frame`](crate::check_frame)).
    ///
    /// Strings are zero-copy slices of `payload`. Bytes after the last field
    /// are ignored. An unknown type byte gives
    /// [`DecodeErrorKind::UnknownType`] with the id read from the next four
    /// bytes when present.
    pub fn decode(payload: Bytes) -> Result<Request, DecodeError> {
        let mut r = Reader::new(payload);
        let t = r.u8().map_err(|k| DecodeError::new(None, k))?;
        if t == ty::INIT {
            return decode_init(&mut r).map_err(|k| DecodeError::new(None, k));
        }
        if !is_request_type(t) {
            return Err(DecodeError::new(
                r.u32().ok(),
                DecodeErrorKind::UnknownType(t),
            ));
        }
        let id = r.u32().map_err(|k| DecodeError::new(None, k))?;
        decode_body(t, id, &mut r).map_err(|k| DecodeError::new(Some(id), k))
    }

    /// Appends the framed packet (length prefix included) to `out`.
    ///
    /// # Panics
    ///
    /// If a string or the whole packet is longer than `u32::MAX` bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        framed(out, |out| {
            put_u8(out, self.info().opcode);
            match self {
                Request::Init {
                    version,
                    extensions,
                } => {
                    put_u32(out, *version);
                    put_pairs(out, extensions);
                }
                other => {
                    // Every other variant has an id.
                    put_u32(out, other.id().unwrap_or_default());
                    other.encode_body(out);
                }
            }
        });
    }

    /// Appends the fields after the id.
    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Request::Init { .. } => {}
            Request::Open {
                path,
                pflags,
                attrs,
                ..
            } => {
                put_string(out, path);
                put_u32(out, *pflags);
                attrs.encode(out);
            }
            Request::Close { handle, .. }
            | Request::Fstat { handle, .. }
            | Request::Readdir { handle, .. } => put_string(out, handle),
            Request::Read {
                handle,
                offset,
                len,
                ..
            } => {
                put_string(out, handle);
                put_u64(out, *offset);
                put_u32(out, *len);
            }
            Request::Write {
                handle,
                offset,
                data,
                ..
            } => {
                put_string(out, handle);
                put_u64(out, *offset);
                put_string(out, data);
            }
            Request::Lstat { path, .. }
            | Request::Opendir { path, .. }
            | Request::Remove { path, .. }
            | Request::Rmdir { path, .. }
            | Request::Realpath { path, .. }
            | Request::Stat { path, .. }
            | Request::Readlink { path, .. } => put_string(out, path),
            Request::Setstat { path, attrs, .. } | Request::Mkdir { path, attrs, .. } => {
                put_string(out, path);
                attrs.encode(out);
            }
            Request::Fsetstat { handle, attrs, .. } => {
                put_string(out, handle);
                attrs.encode(out);
            }
            Request::Rename { old, new, .. } => {
                put_string(out, old);
                put_string(out, new);
            }
            Request::Symlink {
                linkpath,
                targetpath,
                ..
            } => {
                // OpenSSH order: target first.
                put_string(out, targetpath);
                put_string(out, linkpath);
            }
            Request::Extended { request, .. } => request.encode(out),
        }
    }
}

fn decode_init(r: &mut Reader) -> Result<Request, DecodeErrorKind> {
    let version = r.u32()?;
    let extensions = read_pairs(r)?;
    Ok(Request::Init {
        version,
        extensions,
    })
}

/// Decodes the fields after the id of a known request type. Struct fields
/// are evaluated in the order written, which is the wire order.
fn decode_body(t: u8, id: u32, r: &mut Reader) -> Result<Request, DecodeErrorKind> {
    Ok(match t {
        ty::OPEN => Request::Open {
            id,
            path: r.string()?,
            pflags: r.u32()?,
            attrs: FileAttributes::decode(r)?,
        },
        ty::CLOSE => Request::Close {
            id,
            handle: r.string()?,
        },
        ty::READ => Request::Read {
            id,
            handle: r.string()?,
            offset: r.u64()?,
            len: r.u32()?,
        },
        ty::WRITE => Request::Write {
            id,
            handle: r.string()?,
            offset: r.u64()?,
            data: r.string()?,
        },
        ty::LSTAT => Request::Lstat {
            id,
            path: r.string()?,
        },
        ty::FSTAT => Request::Fstat {
            id,
            handle: r.string()?,
        },
        ty::SETSTAT => Request::Setstat {
            id,
            path: r.string()?,
            attrs: FileAttributes::decode(r)?,
        },
        ty::FSETSTAT => Request::Fsetstat {
            id,
            handle: r.string()?,
            attrs: FileAttributes::decode(r)?,
        },
        ty::OPENDIR => Request::Opendir {
            id,
            path: r.string()?,
        },
        ty::READDIR => Request::Readdir {
            id,
            handle: r.string()?,
        },
        ty::REMOVE => Request::Remove {
            id,
            path: r.string()?,
        },
        ty::MKDIR => Request::Mkdir {
            id,
            path: r.string()?,
            attrs: FileAttributes::decode(r)?,
        },
        ty::RMDIR => Request::Rmdir {
            id,
            path: r.string()?,
        },
        ty::REALPATH => Request::Realpath {
            id,
            path: r.string()?,
        },
        ty::STAT => Request::Stat {
            id,
            path: r.string()?,
        },
        ty::RENAME => Request::Rename {
            id,
            old: r.string()?,
            new: r.string()?,
        },
        ty::READLINK => Request::Readlink {
            id,
            path: r.string()?,
        },
        ty::SYMLINK => {
            // OpenSSH order: target first, then the link path.
            let targetpath = r.string()?;
            let linkpath = r.string()?;
            Request::Symlink {
                id,
                linkpath,
                targetpath,
            }
        }
        ty::EXTENDED => {
            let name = r.string()?;
            Request::Extended {
                id,
                request: ExtendedRequest::decode(name, r)?,
            }
        }
        other => return Err(DecodeErrorKind::UnknownType(other)),
    })
}
