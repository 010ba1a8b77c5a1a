//! Server-to-client packets ([`Response`]) and the zero-copy `DATA` header.

use bytes::Bytes;

use crate::attrs::FileAttributes;
use crate::consts::packet_type as ty;
use crate::error::{DecodeError, DecodeErrorKind};
use crate::status::StatusCode;
use crate::wire::{
    framed, len_u32, pairs_len, put_pairs, put_string, put_u32, put_u8, read_pairs, string_len,
    Reader,
};

/// One entry of an `SSH_FXP_NAME` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameEntry {
    /// The bare file name (READDIR) or full path (REALPATH, READLINK).
    pub filename: Bytes,
    /// An `ls -l` style line for display (see
    /// [`format_longname`](crate::format_longname)); clients must not parse
    /// it. Empty for REALPATH and READLINK replies.
    pub longname: Bytes,
    /// The entry's attributes (may be empty).
    pub attrs: FileAttributes,
}

impl NameEntry {
    fn encoded_len(&self) -> usize {
        string_len(self.filename.len()) + string_len(self.longname.len()) + self.attrs.encoded_len()
    }
}

/// A reply from an SFTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `SSH_FXP_VERSION`: the server's hello, answering `INIT`.
    Version {
        /// The version the server will speak.
        version: u32,
        /// Supported extensions as `(name, version)` pairs.
        extensions: Vec<(Bytes, Bytes)>,
    },
    /// `SSH_FXP_STATUS`: the result of a request.
    ///
    /// The language tag is encoded as the empty string and ignored when
    /// decoding. The message is decoded with [`String::from_utf8_lossy`]:
    /// it is only for humans, and a client should not fail because a server
    /// sent non-UTF-8 text.
    Status {
        /// Request id.
        id: u32,
        /// Result code.
        code: StatusCode,
        /// Human-readable message (empty is fine for `Ok`).
        message: String,
    },
    /// `SSH_FXP_HANDLE`: a newly opened handle.
    Handle {
        /// Request id.
        id: u32,
        /// Opaque handle, at most 256 bytes by the draft.
        handle: Bytes,
    },
    /// `SSH_FXP_DATA`: bytes read. For large reads see [`data_header`].
    Data {
        /// Request id.
        id: u32,
        /// The bytes; may be shorter than requested.
        data: Bytes,
    },
    /// `SSH_FXP_NAME`: directory entries or a resolved path.
    Name {
        /// Request id.
        id: u32,
        /// The entries.
        entries: Vec<NameEntry>,
    },
    /// `SSH_FXP_ATTRS`: attributes from STAT, LSTAT or FSTAT.
    Attrs {
        /// Request id.
        id: u32,
        /// The attributes.
        attrs: FileAttributes,
    },
    /// `SSH_FXP_EXTENDED_REPLY`: a successful extension reply; `data` runs to
    /// the end of the packet (see [`Statvfs`](crate::Statvfs),
    /// [`Limits`](crate::Limits)).
    ExtendedReply {
        /// Request id.
        id: u32,
        /// The extension-specific body.
        data: Bytes,
    },
}

/// Size of the header [`data_header`] returns.
pub const DATA_HEADER_LEN: usize = 13;

/// The first 13 bytes of an `SSH_FXP_DATA` packet carrying `data_len` bytes:
/// length prefix, type 103, request id, data length. Write these, then exactly
/// `data_len` bytes of file data, and the result equals the encoding of
/// [`Response::Data`], without copying the data through a `Response`.
///
/// # Panics
///
/// If `data_len > u32::MAX - 9` (the packet length would overflow).
pub fn data_header(id: u32, data_len: u32) -> [u8; DATA_HEADER_LEN] {
    let packet_len = data_len
        .checked_add(1 + 4 + 4)
        .expect("SFTP DATA packet longer than u32::MAX");
    let mut h = [0u8; DATA_HEADER_LEN];
    h[..4].copy_from_slice(&packet_len.to_be_bytes());
    h[4] = ty::DATA;
    h[5..9].copy_from_slice(&id.to_be_bytes());
    h[9..].copy_from_slice(&data_len.to_be_bytes());
    h
}

impl Response {
    /// The request id this answers; `None` for `Version`.
    pub fn id(&self) -> Option<u32> {
        match self {
            Response::Version { .. } => None,
            Response::Status { id, .. }
            | Response::Handle { id, .. }
            | Response::Data { id, .. }
            | Response::Name { id, .. }
            | Response::Attrs { id, .. }
            | Response::ExtendedReply { id, .. } => Some(*id),
        }
    }

    fn packet_type(&self) -> u8 {
        match self {
            Response::Version { .. } => ty::VERSION,
            Response::Status { .. } => ty::STATUS,
            Response::Handle { .. } => ty::HANDLE,
            Response::Data { .. } => ty::DATA,
            Response::Name { .. } => ty::NAME,
            Response::Attrs { .. } => ty::ATTRS,
            Response::ExtendedReply { .. } => ty::EXTENDED_REPLY,
        }
    }

    /// Appends the framed packet (length prefix included) to `out`.
    ///
    /// # Panics
    ///
    /// If a string or the whole packet is longer than `u32::MAX` bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        framed(out, |out| {
            put_u8(out, self.packet_type());
            match self {
                Response::Version {
                    version,
                    extensions,
                } => {
                    put_u32(out, *version);
                    put_pairs(out, extensions);
                }
                Response::Status { id, code, message } => {
                    put_u32(out, *id);
                    put_u32(out, code.as_u32());
                    put_string(out, message.as_bytes());
                    put_string(out, b"");
                }
                Response::Handle { id, handle } => {
                    put_u32(out, *id);
                    put_string(out, handle);
                }
                Response::Data { id, data } => {
                    put_u32(out, *id);
                    put_string(out, data);
                }
                Response::Name { id, entries } => {
                    put_u32(out, *id);
                    put_u32(out, len_u32(entries.len()));
                    for e in entries {
                        put_string(out, &e.filename);
                        put_string(out, &e.longname);
                        e.attrs.encode(out);
                    }
                }
                Response::Attrs { id, attrs } => {
                    put_u32(out, *id);
                    attrs.encode(out);
                }
                Response::ExtendedReply { id, data } => {
                    put_u32(out, *id);
                    out.extend_from_slice(data);
                }
            }
        });
    }

    /// The number of bytes [`Response::encode`] appends, length prefix
    /// included. Lets a server check a reply against the client's limits
    /// before building it.
    pub fn encoded_len(&self) -> usize {
        // Length prefix and type byte.
        let head = 4 + 1;
        head + match self {
            Response::Version { extensions, .. } => 4 + pairs_len(extensions),
            Response::Status { message, .. } => 4 + 4 + string_len(message.len()) + string_len(0),
            Response::Handle { handle: b, .. } | Response::Data { data: b, .. } => {
                4 + string_len(b.len())
            }
            Response::Name { entries, .. } => {
                4 + 4 + entries.iter().map(NameEntry::encoded_len).sum::<usize>()
            }
            Response::Attrs { attrs, .. } => 4 + attrs.encoded_len(),
            Response::ExtendedReply { data, .. } => 4 + data.len(),
        }
    }

    /// Decodes a payload (the bytes after the 4-byte length prefix, type byte
    /// first). Strings are zero-copy slices of `payload`; bytes after the
    /// last field are ignored. A status code above 8 is
    /// [`DecodeErrorKind::BadValue`]; a request type byte is
    /// [`DecodeErrorKind::UnknownType`].
    pub fn decode(payload: Bytes) -> Result<Response, DecodeError> {
        let mut r = Reader::new(payload);
        let t = r.u8().map_err(|k| DecodeError::new(None, k))?;
        if t == ty::VERSION {
            let version = r.u32().map_err(|k| DecodeError::new(None, k))?;
            let extensions = read_pairs(&mut r).map_err(|k| DecodeError::new(None, k))?;
            return Ok(Response::Version {
                version,
                extensions,
            });
        }
        if !matches!(t, ty::STATUS..=ty::ATTRS | ty::EXTENDED_REPLY) {
            return Err(DecodeError::new(
                r.u32().ok(),
                DecodeErrorKind::UnknownType(t),
            ));
        }
        let id = r.u32().map_err(|k| DecodeError::new(None, k))?;
        decode_body(t, id, &mut r).map_err(|k| DecodeError::new(Some(id), k))
    }
}

fn decode_body(t: u8, id: u32, r: &mut Reader) -> Result<Response, DecodeErrorKind> {
    Ok(match t {
        ty::STATUS => {
            let code = StatusCode::from_u32(r.u32()?).ok_or(DecodeErrorKind::BadValue(
                "status code is not defined in SFTP v3",
            ))?;
            let message = String::from_utf8_lossy(&r.string()?).into_owned();
            let _language = r.string()?;
            Response::Status { id, code, message }
        }
        ty::HANDLE => Response::Handle {
            id,
            handle: r.string()?,
        },
        ty::DATA => Response::Data {
            id,
            data: r.string()?,
        },
        ty::NAME => {
            let declared = r.u32()?;
            // Each entry is two strings and a flag word: at least 12 bytes.
            let count = r.check_count(declared, 2 * string_len(0) + 4)?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                entries.push(NameEntry {
                    filename: r.string()?,
                    longname: r.string()?,
                    attrs: FileAttributes::decode(r)?,
                });
            }
            Response::Name { id, entries }
        }
        ty::ATTRS => Response::Attrs {
            id,
            attrs: FileAttributes::decode(r)?,
        },
        ty::EXTENDED_REPLY => Response::ExtendedReply { id, data: r.rest() },
        other => return Err(DecodeErrorKind::UnknownType(other)),
    })
}
