//! Sans-I/O codec for SFTP version 3 (draft-ietf-secsh-filexfer-02) and the
//! OpenSSH extensions.
//!
//! This crate turns byte buffers into typed packets and typed packets into
//! byte buffers. It never touches a socket, a clock or a file system, so every
//! part of it can be unit-tested and fuzzed on plain slices.
//!
//! # Reading packets: check before parse
//!
//! Every SFTP packet is a big-endian `u32` length followed by that many bytes
//! (the *payload*, whose first byte is the packet type). Reading is two steps:
//!
//! 1. [`check_frame`] looks only at the length prefix. It says whether a whole
//!    packet is buffered ([`Frame::Complete`]) or more bytes are needed
//!    ([`Frame::Incomplete`]), and rejects a declared length of zero or above
//!    the configured maximum ([`FrameError`]) before anything is allocated.
//! 2. [`Request::decode`] (or [`Response::decode`]) parses the payload. Strings
//!    are returned as [`Bytes`] slices of that payload, without copying. Every
//!    declared length or count is checked against the bytes that remain before
//!    anything is read or allocated, so a hostile peer cannot make the decoder
//!    reserve memory it did not send.
//!
//! A failed decode returns a [`DecodeError`] carrying the request id when it
//! could be read, so the server can still answer that request:
//! [`DecodeError::status_code`] gives `SSH_FX_OP_UNSUPPORTED` for an unknown
//! packet type and `SSH_FX_BAD_MESSAGE` for everything else.
//!
//! # Writing packets
//!
//! `encode` methods append one complete framed packet, length prefix included,
//! to a caller-owned `Vec<u8>`, so one buffer can be reused for many packets.
//! For large reads, [`data_header`] produces the 13 header bytes of an
//! `SSH_FXP_DATA` packet so file data can be read straight in after it.
//!
//! # Leniency
//!
//! The decoder is strict about structure and lenient about extras:
//!
//! - Bytes after the last field of a known request or response are ignored.
//!   OpenSSH never sends any, but some clients written for later protocol
//!   versions append fields (for example a flags word on `RENAME`); ignoring
//!   them answers the request rather than failing it.
//! - Unknown attribute flag bits are ignored (no v3 field is attached to
//!   them, so they cannot shift the layout).
//! - Paths, handles and extension names are bytes and are never decoded as
//!   UTF-8. The one exception is the human-readable message of
//!   `SSH_FXP_STATUS`, decoded with [`String::from_utf8_lossy`] so a client
//!   never fails because a server's error text was not UTF-8.
//! - An `SSH_FXP_EXTENDED` request with a name this crate does not know decodes
//!   to [`ExtendedRequest::Unknown`]; the server decides how to answer it.
//!
//! # Layout
//!
//! One module per message family:
//!
//! - `wire`: big-endian readers and writers shared by every message (private).
//! - `frame`: [`check_frame`], [`Frame`], [`FrameError`].
//! - `error`: [`DecodeError`] and [`DecodeErrorKind`].
//! - `consts`: packet types ([`packet_type`]), open flags ([`pflags`]).
//! - `status`: [`StatusCode`].
//! - `attrs`: [`FileAttributes`], the `ATTR_*` flags and mode bits ([`mode`]).
//! - `request`: [`Request`] and the operation table ([`OpInfo`],
//!   [`OPERATIONS`]).
//! - `extended`: [`ExtendedRequest`] and extension names ([`ext_name`]).
//! - `ext_reply`: extended-reply bodies [`Statvfs`] and [`Limits`].
//! - `response`: [`Response`], [`NameEntry`], [`data_header`].
//! - `longname`: [`format_longname`], the `ls -l` line of `SSH_FXP_NAME`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attrs;
mod consts;
mod error;
mod ext_reply;
mod extended;
mod frame;
mod longname;
mod request;
mod response;
mod status;
mod wire;

#[cfg(test)]
mod tests;

pub use attrs::{
    mode, FileAttributes, ATTR_ACMODTIME, ATTR_EXTENDED, ATTR_PERMISSIONS, ATTR_SIZE, ATTR_UIDGID,
};
pub use bytes::Bytes;
pub use consts::{packet_type, pflags};
pub use error::{DecodeError, DecodeErrorKind};
pub use ext_reply::{Limits, Statvfs, ST_NOSUID, ST_RDONLY};
pub use extended::{ext_name, ExtendedRequest};
pub use frame::{check_frame, Frame, FrameError};
pub use longname::format_longname;
pub use request::{OpInfo, Request, OPERATIONS};
pub use response::{data_header, NameEntry, Response, DATA_HEADER_LEN};
pub use status::StatusCode;

/// The protocol version this crate speaks (draft-ietf-secsh-filexfer-02).
pub const SFTP_VERSION: u32 = 3;

/// Largest packet (length field value) we accept by default: 256 KiB of data
/// plus room for headers.
///
/// OpenSSH's `sftp-server` caps messages at 256 KiB (`SFTP_MAX_MSG_LENGTH`);
/// the extra KiB lets a client send a full 256 KiB `WRITE` with its header.
pub const DEFAULT_MAX_PACKET: u32 = 256 * 1024 + 1024;
