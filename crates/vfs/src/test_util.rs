//! Helpers shared by the VFS tests.

use crate::{OpenFlags, RelPath};

/// A path from a string.
pub(crate) fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

/// What a client sends to upload a file.
pub(crate) const UPLOAD: OpenFlags = OpenFlags {
    read: false,
    write: true,
    append: false,
    create: true,
    truncate: true,
    exclusive: false,
};

/// A plain read-only open.
pub(crate) const READ: OpenFlags = OpenFlags {
    read: true,
    write: false,
    append: false,
    create: false,
    truncate: false,
    exclusive: false,
};
