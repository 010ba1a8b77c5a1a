//! An open remote file: positional reads and writes split into pieces the
//! server accepts and sent all at once (pipelined), not one at a time.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_backend::SetAttrs;
use ferry_backend::{BackendError, ErrorKind, FileHandle, Metadata, Operation, RelPath, Result};
use ferry_proto::{ExtendedRequest, Request};
use futures::future::{join_all, try_join_all};

use crate::conn::Conn;
use crate::session::{self, SftpErr};
use crate::{sftp_error, to_attrs, to_meta};

/// Read pieces sent together before looking for the end of the file.
const READ_BATCH: usize = 64;

/// Most memory reserved up front for one read.
const READ_RESERVE: usize = 16 << 20;

/// An open file on the server. Dropping it closes the remote handle in the
/// background.
pub(crate) struct SftpFile {
    pub(crate) conn: Arc<Conn>,
    pub(crate) handle: Bytes,
    pub(crate) path: RelPath,
    pub(crate) append: bool,
    pub(crate) set_modtime: bool,
}

impl SftpFile {
    fn err(&self, op: Operation, e: SftpErr) -> BackendError {
        sftp_error(op, &self.path, e)
    }

    /// Read `len` bytes at `offset`, asking again after a short answer, so
    /// fewer bytes come back only at end of file.
    async fn read_piece(&self, offset: u64, len: u32) -> Result<Vec<Bytes>, SftpErr> {
        let mut chunks = Vec::new();
        let mut got: u32 = 0;
        while got < len {
            let want = len - got;
            let reply = self
                .conn
                .sftp
                .call(|id| Request::Read {
                    id,
                    handle: self.handle.clone(),
                    offset: offset + u64::from(got),
                    len: want,
                })
                .await?;
            match session::data(reply)? {
                None => break,
                Some(d) if d.is_empty() => break,
                Some(mut d) => {
                    d.truncate(want as usize);
                    got += d.len() as u32;
                    chunks.push(d);
                }
            }
        }
        Ok(chunks)
    }

    async fn write_piece(&self, offset: u64, data: Bytes) -> Result<(), SftpErr> {
        let reply = self
            .conn
            .sftp
            .call(|id| Request::Write {
                id,
                handle: self.handle.clone(),
                offset,
                data,
            })
            .await?;
        session::status(reply)
    }
}

#[async_trait]
impl FileHandle for SftpFile {
    async fn read_at(&self, offset: u64, len: usize, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(buf);
        }
        let end = offset.checked_add(len as u64).ok_or_else(|| {
            BackendError::new(ErrorKind::Other, Operation::Read)
                .with_path(&self.path)
                .with_source("offset + length overflows")
        })?;
        let piece = u64::from(self.conn.sftp.max_read.max(1));
        buf.reserve(len.min(READ_RESERVE));
        let mut at = offset;
        // Pieces go out in batches, so a read far past the end of the file
        // asks for little more than the file has.
        while at < end {
            let mut pieces = Vec::with_capacity(READ_BATCH);
            while at < end && pieces.len() < READ_BATCH {
                let n = (end - at).min(piece);
                pieces.push((at, n as u32));
                at += n;
            }
            let results = join_all(pieces.iter().map(|&(o, n)| self.read_piece(o, n))).await;
            for ((_, want), r) in pieces.iter().zip(results) {
                let chunks = r.map_err(|e| self.err(Operation::Read, e))?;
                let mut got = 0usize;
                for c in chunks {
                    got += c.len();
                    buf.extend_from_slice(&c);
                }
                if got < *want as usize {
                    // End of file: later pieces are past it.
                    return Ok(buf);
                }
            }
        }
        Ok(buf)
    }

    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        if offset.checked_add(data.len() as u64).is_none() {
            return Err(BackendError::new(ErrorKind::Other, Operation::Write)
                .with_path(&self.path)
                .with_source("offset + length overflows"));
        }
        let piece = self.conn.sftp.max_write.max(1) as usize;
        if data.len() <= piece {
            return self
                .write_piece(offset, data)
                .await
                .map_err(|e| self.err(Operation::Write, e));
        }
        let pieces = (0..data.len())
            .step_by(piece)
            .map(|start| {
                let end = (start + piece).min(data.len());
                (offset + start as u64, data.slice(start..end))
            })
            .collect::<Vec<_>>();
        if self.append {
            // Appends land in the order they arrive: one at a time.
            for (o, d) in pieces {
                self.write_piece(o, d)
                    .await
                    .map_err(|e| self.err(Operation::Write, e))?;
            }
            return Ok(());
        }
        try_join_all(pieces.into_iter().map(|(o, d)| self.write_piece(o, d)))
            .await
            .map_err(|e| self.err(Operation::Write, e))?;
        Ok(())
    }

    async fn stat(&self) -> Result<Metadata> {
        let r = self
            .conn
            .sftp
            .call(|id| Request::Fstat {
                id,
                handle: self.handle.clone(),
            })
            .await
            .and_then(session::attrs)
            .map_err(|e| self.err(Operation::Stat, e))?;
        Ok(to_meta(&r))
    }

    async fn set_attrs(&self, attrs: &SetAttrs) -> Result<()> {
        let attrs = to_attrs(attrs, self.set_modtime);
        self.conn
            .sftp
            .call(|id| Request::Fsetstat {
                id,
                handle: self.handle.clone(),
                attrs,
            })
            .await
            .and_then(session::status)
            .map_err(|e| self.err(Operation::SetAttrs, e))
    }

    async fn sync(&self) -> Result<()> {
        if !self.conn.sftp.ext.fsync {
            return Ok(());
        }
        self.conn
            .sftp
            .call(|id| Request::Extended {
                id,
                request: ExtendedRequest::Fsync {
                    handle: self.handle.clone(),
                },
            })
            .await
            .and_then(session::status)
            .map_err(|e| self.err(Operation::Sync, e))
    }
}

impl Drop for SftpFile {
    fn drop(&mut self) {
        if !self.conn.is_alive() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let conn = self.conn.clone();
        let handle = self.handle.clone();
        let path = self.path.clone();
        rt.spawn(async move {
            let r = conn
                .sftp
                .call(|id| Request::Close { id, handle })
                .await
                .and_then(session::status);
            if let Err(e) = r {
                tracing::warn!("closing {path} on the SFTP server failed: {e}");
            }
        });
    }
}
