//! File attributes (`ATTRS`, draft-02 §5).
//!
//! On the wire: a `uint32` flag word, then each present field in a fixed order
//! (size, uid/gid, permissions, atime/mtime, extended pairs).

use bytes::Bytes;

use crate::error::DecodeErrorKind;
use crate::wire::{len_u32, pairs_len, put_pairs, put_u32, put_u64, string_len, Reader};

/// Flag: `size` is present (`SSH_FILEXFER_ATTR_SIZE`).
pub const ATTR_SIZE: u32 = 0x1;
/// Flag: `uid` and `gid` are present (`SSH_FILEXFER_ATTR_UIDGID`).
pub const ATTR_UIDGID: u32 = 0x2;
/// Flag: `permissions` is present (`SSH_FILEXFER_ATTR_PERMISSIONS`).
pub const ATTR_PERMISSIONS: u32 = 0x4;
/// Flag: `atime` and `mtime` are present (`SSH_FILEXFER_ATTR_ACMODTIME`).
pub const ATTR_ACMODTIME: u32 = 0x8;
/// Flag: extended `(type, data)` pairs follow (`SSH_FILEXFER_ATTR_EXTENDED`).
pub const ATTR_EXTENDED: u32 = 0x8000_0000;

/// POSIX mode bits as carried in [`FileAttributes::permissions`]. SFTP v3
/// sends the full `st_mode`, file type included.
pub mod mode {
    /// Mask of the file type bits.
    pub const S_IFMT: u32 = 0o170_000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140_000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120_000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100_000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060_000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040_000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020_000;
    /// FIFO.
    pub const S_IFIFO: u32 = 0o010_000;
    /// Set-user-id on execution.
    pub const S_ISUID: u32 = 0o4000;
    /// Set-group-id on execution.
    pub const S_ISGID: u32 = 0o2000;
    /// Sticky bit.
    pub const S_ISVTX: u32 = 0o1000;
}

/// The attributes of a file, each optional as in the protocol. The flag word
/// is derived from which fields are `Some` (and whether `extended` is empty),
/// so it can never disagree with the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileAttributes {
    /// File size in bytes.
    pub size: Option<u64>,
    /// Numeric owner and group ids.
    pub uid_gid: Option<(u32, u32)>,
    /// `st_mode`: type and permission bits (see [`mode`]).
    pub permissions: Option<u32>,
    /// Access and modification times, seconds since the Unix epoch (v3 has
    /// only 32 bits; they wrap in 2106).
    pub atime_mtime: Option<(u32, u32)>,
    /// Extended `(type, data)` attribute pairs. Empty means the
    /// `ATTR_EXTENDED` flag is not sent.
    pub extended: Vec<(Bytes, Bytes)>,
}

impl FileAttributes {
    /// The `ATTR_*` flag word these attributes encode with.
    pub fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if self.uid_gid.is_some() {
            flags |= ATTR_UIDGID;
        }
        if self.permissions.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if self.atime_mtime.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        if !self.extended.is_empty() {
            flags |= ATTR_EXTENDED;
        }
        flags
    }

    /// The `S_IFMT` bits of `permissions`, if permissions are present.
    pub fn file_type(&self) -> Option<u32> {
        self.permissions.map(|p| p & mode::S_IFMT)
    }

    /// True if `permissions` is present and says directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == Some(mode::S_IFDIR)
    }

    /// True if `permissions` is present and says regular file.
    pub fn is_regular(&self) -> bool {
        self.file_type() == Some(mode::S_IFREG)
    }

    /// True if `permissions` is present and says symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type() == Some(mode::S_IFLNK)
    }

    /// Appends the wire form (flag word and present fields) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.flags());
        if let Some(size) = self.size {
            put_u64(out, size);
        }
        if let Some((uid, gid)) = self.uid_gid {
            put_u32(out, uid);
            put_u32(out, gid);
        }
        if let Some(perm) = self.permissions {
            put_u32(out, perm);
        }
        if let Some((atime, mtime)) = self.atime_mtime {
            put_u32(out, atime);
            put_u32(out, mtime);
        }
        if !self.extended.is_empty() {
            put_u32(out, len_u32(self.extended.len()));
            put_pairs(out, &self.extended);
        }
    }

    /// The number of bytes [`FileAttributes::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        let mut len = 4;
        len += self.size.map_or(0, |_| 8);
        len += self.uid_gid.map_or(0, |_| 8);
        len += self.permissions.map_or(0, |_| 4);
        len += self.atime_mtime.map_or(0, |_| 8);
        if !self.extended.is_empty() {
            len += 4 + pairs_len(&self.extended);
        }
        len
    }

    /// Reads attributes. Unknown flag bits are ignored: no v3 field belongs
    /// to them, so they cannot change the layout. The extended pair count is
    /// checked against the remaining bytes (each pair takes at least 8) before
    /// anything is reserved.
    pub(crate) fn decode(r: &mut Reader) -> Result<FileAttributes, DecodeErrorKind> {
        let flags = r.u32()?;
        let mut attrs = FileAttributes::default();
        if flags & ATTR_SIZE != 0 {
            attrs.size = Some(r.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            attrs.uid_gid = Some((r.u32()?, r.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            attrs.permissions = Some(r.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            attrs.atime_mtime = Some((r.u32()?, r.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            let declared = r.u32()?;
            // Each pair is two strings of at least 4 bytes each.
            let count = r.check_count(declared, 2 * string_len(0))?;
            let mut extended = Vec::with_capacity(count);
            for _ in 0..count {
                extended.push((r.string()?, r.string()?));
            }
            attrs.extended = extended;
        }
        Ok(attrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_predicates_follow_ifmt() {
        let dir = FileAttributes {
            permissions: Some(mode::S_IFDIR | 0o755),
            ..Default::default()
        };
        assert!(dir.is_dir() && !dir.is_regular() && !dir.is_symlink());
        let file = FileAttributes {
            permissions: Some(mode::S_IFREG | 0o644),
            ..Default::default()
        };
        assert!(file.is_regular() && !file.is_dir());
        let link = FileAttributes {
            permissions: Some(mode::S_IFLNK | 0o777),
            ..Default::default()
        };
        assert!(link.is_symlink() && !link.is_regular());
        let none = FileAttributes::default();
        assert!(!none.is_dir() && !none.is_regular() && !none.is_symlink());
        assert_eq!(none.file_type(), None);
    }

    #[test]
    fn flags_follow_fields() {
        assert_eq!(FileAttributes::default().flags(), 0);
        let all = FileAttributes {
            size: Some(1),
            uid_gid: Some((2, 3)),
            permissions: Some(4),
            atime_mtime: Some((5, 6)),
            extended: vec![(Bytes::from_static(b"a"), Bytes::new())],
        };
        assert_eq!(
            all.flags(),
            ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED
        );
    }

    fn round_trip(attrs: &FileAttributes) {
        let mut out = Vec::new();
        attrs.encode(&mut out);
        assert_eq!(out.len(), attrs.encoded_len());
        let mut r = Reader::new(Bytes::from(out));
        assert_eq!(&FileAttributes::decode(&mut r).unwrap(), attrs);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn round_trips() {
        round_trip(&FileAttributes::default());
        round_trip(&FileAttributes {
            size: Some(u64::MAX),
            uid_gid: Some((0, u32::MAX)),
            permissions: Some(mode::S_IFREG | mode::S_ISUID | 0o4755),
            atime_mtime: Some((0, u32::MAX)),
            extended: vec![
                (
                    Bytes::from_static(b"foo@example.com"),
                    Bytes::from_static(b"\xff\x00"),
                ),
                (Bytes::new(), Bytes::new()),
            ],
        });
        round_trip(&FileAttributes {
            atime_mtime: Some((1_700_000_000, 1_700_000_001)),
            ..Default::default()
        });
    }

    #[test]
    fn known_bytes() {
        // flags = SIZE|PERMISSIONS|ACMODTIME, size 0x100, mode 0o100644, times 1 and 2
        let wire: &[u8] = b"\x00\x00\x00\x0d\
            \x00\x00\x00\x00\x00\x00\x01\x00\
            \x00\x00\x81\xa4\
            \x00\x00\x00\x01\x00\x00\x00\x02";
        let mut r = Reader::new(Bytes::from_static(wire));
        let attrs = FileAttributes::decode(&mut r).unwrap();
        assert_eq!(
            attrs,
            FileAttributes {
                size: Some(0x100),
                permissions: Some(0o100_644),
                atime_mtime: Some((1, 2)),
                ..Default::default()
            }
        );
        let mut out = Vec::new();
        attrs.encode(&mut out);
        assert_eq!(out, wire);
    }

    #[test]
    fn unknown_flag_bits_are_ignored() {
        let wire: &[u8] = b"\x00\x00\x01\x04\x00\x00\x01\xed";
        let mut r = Reader::new(Bytes::from_static(wire));
        let attrs = FileAttributes::decode(&mut r).unwrap();
        assert_eq!(attrs.permissions, Some(0o755));
        assert_eq!(attrs.flags(), ATTR_PERMISSIONS);
    }

    #[test]
    fn huge_extended_count_fails_before_allocating() {
        let wire: &[u8] = b"\x80\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00";
        let mut r = Reader::new(Bytes::from_static(wire));
        assert_eq!(
            FileAttributes::decode(&mut r),
            Err(DecodeErrorKind::Truncated)
        );
        // Two pairs declared, room for one.
        let wire: &[u8] = b"\x80\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00";
        let mut r = Reader::new(Bytes::from_static(wire));
        assert_eq!(
            FileAttributes::decode(&mut r),
            Err(DecodeErrorKind::Truncated)
        );
    }

    #[test]
    fn extended_flag_with_zero_pairs_decodes_to_empty() {
        let wire: &[u8] = b"\x80\x00\x00\x00\x00\x00\x00\x00";
        let mut r = Reader::new(Bytes::from_static(wire));
        assert_eq!(
            FileAttributes::decode(&mut r),
            Ok(FileAttributes::default())
        );
    }
}
