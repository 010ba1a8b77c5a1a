//! An open file of the memory backend.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_backend::{
    BackendError, ErrorKind, FileHandle, Metadata, OpenOptions, Operation, RelPath, Result,
    SetAttrs,
};

use crate::{read, too_large, write, SharedFile};

/// An open file: it holds the file's data itself, so it keeps working after
/// the name is renamed, replaced or removed.
pub(crate) struct MemoryFile {
    file: SharedFile,
    /// The path it was opened at, for errors.
    path: RelPath,
    readable: bool,
    writable: bool,
    append: bool,
}

impl MemoryFile {
    /// A handle on `file` with the access `opts` ask for. As with the local
    /// backend, a handle opened with neither `read` nor `write` reads, and
    /// `append` implies write access.
    pub(crate) fn new(file: SharedFile, path: RelPath, opts: &OpenOptions) -> Self {
        let writable = opts.write || opts.append;
        MemoryFile {
            file,
            path,
            readable: opts.read || !writable,
            writable,
            append: opts.append,
        }
    }

    fn denied(&self, op: Operation) -> BackendError {
        BackendError::new(ErrorKind::PermissionDenied, op)
            .with_path(&self.path)
            .with_source(match op {
                Operation::Read => "the handle was not opened for reading",
                _ => "the handle was not opened for writing",
            })
    }
}

#[async_trait]
impl FileHandle for MemoryFile {
    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        if !self.readable {
            return Err(self.denied(Operation::Read));
        }
        let mut buf = buf;
        read(&self.file).content.read_into(offset, len, &mut buf);
        Ok(buf)
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        if !self.writable {
            return Err(self.denied(Operation::Write));
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut state = write(&self.file);
        let offset = if self.append {
            state.content.len()
        } else {
            offset
        };
        state
            .content
            .write(offset, &data)
            .map_err(|e| too_large(Operation::Write, &self.path, e))?;
        state.attrs.mtime = SystemTime::now();
        Ok(())
    }

    async fn stat(&self) -> Result<Metadata> {
        Ok(read(&self.file).meta())
    }

    async fn set_attrs(&self, attrs: &SetAttrs) -> Result<()> {
        let op = Operation::SetAttrs;
        if attrs.owner.is_some() {
            return Err(BackendError::new(ErrorKind::Unsupported, op).with_path(&self.path));
        }
        // Like `ftruncate`, changing the size needs write access.
        if attrs.size.is_some() && !self.writable {
            return Err(self.denied(op));
        }
        write(&self.file)
            .apply(attrs, SystemTime::now())
            .map_err(|e| too_large(op, &self.path, e))
    }

    async fn sync(&self) -> Result<()> {
        // Nothing is more stable than memory gets.
        Ok(())
    }
}
