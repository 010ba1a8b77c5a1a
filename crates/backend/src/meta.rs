//! Metadata types shared by every backend.

use std::time::SystemTime;

/// The type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only from `lstat`-like calls).
    Symlink,
    /// Anything else (device, FIFO, socket).
    Other,
}

/// What a backend knows about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The type.
    pub file_type: FileType,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, when known.
    pub mtime: Option<SystemTime>,
    /// Last access time, when known.
    pub atime: Option<SystemTime>,
    /// Unix permission bits (without the type bits), when the store keeps
    /// them.
    pub permissions: Option<u32>,
    /// Owner and group ids, when the store keeps them.
    pub owner: Option<(u32, u32)>,
    /// An opaque value that changes whenever the content may have changed
    /// and that clients cannot set (inode and change time on a local disk),
    /// when the store has one. Caches keyed on size and modification time
    /// also check it, since a client can set a modification time back.
    pub change: Option<u64>,
}

impl Metadata {
    /// Is this a directory?
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Dir
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (one component, bytes).
    pub name: Vec<u8>,
    /// Its metadata, not following a symbolic link.
    pub meta: Metadata,
}

/// Space on the store, in bytes. `None` means unknown: never a made-up
/// number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Total size.
    pub total: Option<u64>,
    /// Used.
    pub used: Option<u64>,
    /// Available to this user.
    pub free: Option<u64>,
    /// Block size the numbers were counted in, when the store has one.
    pub block_size: Option<u64>,
    /// Total file slots (inodes), when known.
    pub files: Option<u64>,
    /// Free file slots, when known.
    pub files_free: Option<u64>,
    /// Longest name allowed, when known.
    pub name_max: Option<u64>,
}

/// A content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashKind {
    /// MD5.
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
    /// CRC-32 (IEEE).
    Crc32,
    /// BLAKE3 (256 bits).
    Blake3,
    /// XXH3 (64 bits).
    Xxh3,
    /// XXH3 (128 bits).
    Xxh128,
    /// Whirlpool.
    Whirlpool,
}

impl HashKind {
    /// Every kind.
    pub const ALL: &'static [HashKind] = &[
        HashKind::Md5,
        HashKind::Sha1,
        HashKind::Sha256,
        HashKind::Sha512,
        HashKind::Crc32,
        HashKind::Blake3,
        HashKind::Xxh3,
        HashKind::Xxh128,
        HashKind::Whirlpool,
    ];

    /// rclone's name for the hash (`md5`, `sha1`, `xxh128`, ...).
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Md5 => "md5",
            HashKind::Sha1 => "sha1",
            HashKind::Sha256 => "sha256",
            HashKind::Sha512 => "sha512",
            HashKind::Crc32 => "crc32",
            HashKind::Blake3 => "blake3",
            HashKind::Xxh3 => "xxh3",
            HashKind::Xxh128 => "xxh128",
            HashKind::Whirlpool => "whirlpool",
        }
    }

    /// The kind rclone calls `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<HashKind> {
        HashKind::ALL
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }
}
