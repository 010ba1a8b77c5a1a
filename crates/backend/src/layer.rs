//! Layers: wrappers around a backend that are a backend themselves, and
//! write only what they change.
//!
//! A layer implements [`Layer`]: the backend it wraps ([`Layer::inner`]),
//! and of the backend's methods only those it changes; every other one
//! passes the call on unchanged. [`Layered`] makes it a [`Backend`]. Two
//! hooks keep common layers short:
//!
//! - [`Layer::request`] sees every call that reaches the store (every
//!   method but `capabilities`, `describe` and `watch_changes`), as a
//!   future it may delay, time, count or cut short. A layer that treats all
//!   requests alike (latency, timeouts, metrics) writes only this.
//! - [`Layer::wrap_file`] and [`Layer::wrap_upload`] wrap what `open_file`
//!   and `create_upload` return; [`FileLayer`] and [`UploadLayer`] are the
//!   same pattern for an open file and an upload, with [`LayeredFile`] and
//!   [`LayeredUpload`]. A layer that changes reads and writes (a bandwidth
//!   limit) writes those.
//!
//! `request` wraps the layer's own method: the default forward, or the
//! layer's override (a retry loop, say).

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Backend, ByteStream, Capabilities, ChangeNotify, DirEntry, FileHandle, HashKind, Metadata,
    OpenOptions, Operation, RelPath, Result, SetAttrs, Upload, UploadOptions, Usage,
};

/// A boxed future, as the layer hooks take and give them.
pub type Request<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A wrapper around a backend. See the module docs.
#[async_trait]
#[allow(missing_docs)] // the methods are the Backend's, documented there
pub trait Layer: Send + Sync + 'static {
    /// The backend this layer wraps.
    fn inner(&self) -> &dyn Backend;

    /// Every call that reaches the store, on its way (default: unchanged).
    fn request<'a, T: Send + 'a>(&'a self, op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        let _ = op;
        req
    }

    /// A file opened through this layer (default: unchanged).
    fn wrap_file(&self, file: Box<dyn FileHandle>) -> Box<dyn FileHandle> {
        file
    }

    /// An upload created through this layer (default: unchanged).
    fn wrap_upload(&self, upload: Box<dyn Upload>) -> Box<dyn Upload> {
        upload
    }

    fn capabilities(&self) -> Capabilities {
        self.inner().capabilities()
    }
    fn describe(&self) -> String {
        self.inner().describe()
    }
    async fn stat(&self, path: &RelPath) -> Result<Metadata> {
        self.inner().stat(path).await
    }
    async fn lstat(&self, path: &RelPath) -> Result<Metadata> {
        self.inner().lstat(path).await
    }
    async fn list(&self, path: &RelPath) -> Result<Vec<DirEntry>> {
        self.inner().list(path).await
    }
    async fn open_file(&self, path: &RelPath, opts: OpenOptions) -> Result<Box<dyn FileHandle>> {
        self.inner().open_file(path, opts).await
    }
    async fn remove_file(&self, path: &RelPath) -> Result<()> {
        self.inner().remove_file(path).await
    }
    async fn create_dir(&self, path: &RelPath, mode: Option<u32>) -> Result<()> {
        self.inner().create_dir(path, mode).await
    }
    async fn remove_dir(&self, path: &RelPath) -> Result<()> {
        self.inner().remove_dir(path).await
    }
    async fn rename(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<()> {
        self.inner().rename(from, to, overwrite).await
    }
    async fn copy(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        self.inner().copy(from, to).await
    }
    async fn set_attrs(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        self.inner().set_attrs(path, attrs).await
    }
    async fn set_attrs_nofollow(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        self.inner().set_attrs_nofollow(path, attrs).await
    }
    async fn symlink(&self, target: &[u8], link: &RelPath) -> Result<()> {
        self.inner().symlink(target, link).await
    }
    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>> {
        self.inner().read_link(path).await
    }
    async fn hard_link(&self, existing: &RelPath, link: &RelPath) -> Result<()> {
        self.inner().hard_link(existing, link).await
    }
    async fn usage(&self) -> Result<Usage> {
        self.inner().usage().await
    }
    fn watch_changes(&self, on_change: ChangeNotify) -> Result<()> {
        self.inner().watch_changes(on_change)
    }
    async fn create_upload(&self, path: &RelPath, opts: UploadOptions) -> Result<Box<dyn Upload>> {
        self.inner().create_upload(path, opts).await
    }
    async fn stored_hash(&self, path: &RelPath, kind: HashKind) -> Result<Option<String>> {
        self.inner().stored_hash(path, kind).await
    }
}

/// `file`'s read stream of `len` bytes from `offset`, wrapped by `wrap`:
/// for a file layer that sees the bytes as they arrive (a limit, faults).
pub async fn wrap_stream(
    file: &dyn FileHandle,
    offset: u64,
    len: u64,
    wrap: impl FnOnce(Box<dyn ByteStream>) -> Box<dyn ByteStream> + Send,
) -> Result<Option<Box<dyn ByteStream>>> {
    Ok(file.read_stream(offset, len).await?.map(wrap))
}

/// A [`Layer`] as a [`Backend`].
pub struct Layered<L>(pub L);

#[async_trait]
impl<L: Layer> Backend for Layered<L> {
    fn capabilities(&self) -> Capabilities {
        Layer::capabilities(&self.0)
    }
    fn describe(&self) -> String {
        Layer::describe(&self.0)
    }
    async fn stat(&self, path: &RelPath) -> Result<Metadata> {
        let l = &self.0;
        l.request(Operation::Stat, Layer::stat(l, path)).await
    }
    async fn lstat(&self, path: &RelPath) -> Result<Metadata> {
        let l = &self.0;
        l.request(Operation::Stat, Layer::lstat(l, path)).await
    }
    async fn list(&self, path: &RelPath) -> Result<Vec<DirEntry>> {
        let l = &self.0;
        l.request(Operation::List, Layer::list(l, path)).await
    }
    async fn open_file(&self, path: &RelPath, opts: OpenOptions) -> Result<Box<dyn FileHandle>> {
        let l = &self.0;
        let file = l
            .request(Operation::Open, Layer::open_file(l, path, opts))
            .await?;
        Ok(l.wrap_file(file))
    }
    async fn remove_file(&self, path: &RelPath) -> Result<()> {
        let l = &self.0;
        l.request(Operation::Remove, Layer::remove_file(l, path))
            .await
    }
    async fn create_dir(&self, path: &RelPath, mode: Option<u32>) -> Result<()> {
        let l = &self.0;
        l.request(Operation::CreateDir, Layer::create_dir(l, path, mode))
            .await
    }
    async fn remove_dir(&self, path: &RelPath) -> Result<()> {
        let l = &self.0;
        l.request(Operation::RemoveDir, Layer::remove_dir(l, path))
            .await
    }
    async fn rename(&self, from: &RelPath, to: &RelPath, overwrite: bool) -> Result<()> {
        let l = &self.0;
        l.request(Operation::Rename, Layer::rename(l, from, to, overwrite))
            .await
    }
    async fn copy(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        let l = &self.0;
        l.request(Operation::Copy, Layer::copy(l, from, to)).await
    }
    async fn set_attrs(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        let l = &self.0;
        l.request(Operation::SetAttrs, Layer::set_attrs(l, path, attrs))
            .await
    }
    async fn set_attrs_nofollow(&self, path: &RelPath, attrs: &SetAttrs) -> Result<()> {
        let l = &self.0;
        l.request(
            Operation::SetAttrs,
            Layer::set_attrs_nofollow(l, path, attrs),
        )
        .await
    }
    async fn symlink(&self, target: &[u8], link: &RelPath) -> Result<()> {
        let l = &self.0;
        l.request(Operation::Symlink, Layer::symlink(l, target, link))
            .await
    }
    async fn read_link(&self, path: &RelPath) -> Result<Vec<u8>> {
        let l = &self.0;
        l.request(Operation::ReadLink, Layer::read_link(l, path))
            .await
    }
    async fn hard_link(&self, existing: &RelPath, link: &RelPath) -> Result<()> {
        let l = &self.0;
        l.request(Operation::HardLink, Layer::hard_link(l, existing, link))
            .await
    }
    async fn usage(&self) -> Result<Usage> {
        let l = &self.0;
        l.request(Operation::Usage, Layer::usage(l)).await
    }
    fn watch_changes(&self, on_change: ChangeNotify) -> Result<()> {
        Layer::watch_changes(&self.0, on_change)
    }
    async fn create_upload(&self, path: &RelPath, opts: UploadOptions) -> Result<Box<dyn Upload>> {
        let l = &self.0;
        let upload = l
            .request(Operation::Write, Layer::create_upload(l, path, opts))
            .await?;
        Ok(l.wrap_upload(upload))
    }
    async fn stored_hash(&self, path: &RelPath, kind: HashKind) -> Result<Option<String>> {
        let l = &self.0;
        l.request(Operation::Hash, Layer::stored_hash(l, path, kind))
            .await
    }
}

/// A wrapper around an open file, as [`Layer`] is around a backend.
#[async_trait]
#[allow(missing_docs)] // the methods are the FileHandle's
pub trait FileLayer: Send + Sync + 'static {
    /// The file this wraps.
    fn inner(&self) -> &dyn FileHandle;

    /// Every call that reaches the store, on its way (default: unchanged).
    /// `stored_hash` asks nothing and does not pass here.
    fn request<'a, T: Send + 'a>(&'a self, op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        let _ = op;
        req
    }

    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        self.inner().read_at(offset, len, buf).await
    }
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        self.inner().write_at(offset, data).await
    }
    async fn stat(&self) -> Result<Metadata> {
        self.inner().stat().await
    }
    async fn set_attrs(&self, attrs: &SetAttrs) -> Result<()> {
        self.inner().set_attrs(attrs).await
    }
    async fn sync(&self) -> Result<()> {
        self.inner().sync().await
    }
    async fn read_stream(&self, offset: u64, len: u64) -> Result<Option<Box<dyn ByteStream>>> {
        self.inner().read_stream(offset, len).await
    }
    fn stored_hash(&self) -> Option<(HashKind, String)> {
        self.inner().stored_hash()
    }
}

/// A [`FileLayer`] as a [`FileHandle`].
pub struct LayeredFile<F>(pub F);

#[async_trait]
impl<F: FileLayer> FileHandle for LayeredFile<F> {
    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> Result<Vec<u8>> {
        let f = &self.0;
        f.request(Operation::Read, FileLayer::read_at(f, offset, len, buf))
            .await
    }
    async fn write_at(&self, offset: u64, data: Bytes) -> Result<()> {
        let f = &self.0;
        f.request(Operation::Write, FileLayer::write_at(f, offset, data))
            .await
    }
    async fn stat(&self) -> Result<Metadata> {
        let f = &self.0;
        f.request(Operation::Stat, FileLayer::stat(f)).await
    }
    async fn set_attrs(&self, attrs: &SetAttrs) -> Result<()> {
        let f = &self.0;
        f.request(Operation::SetAttrs, FileLayer::set_attrs(f, attrs))
            .await
    }
    async fn sync(&self) -> Result<()> {
        let f = &self.0;
        f.request(Operation::Sync, FileLayer::sync(f)).await
    }
    async fn read_stream(&self, offset: u64, len: u64) -> Result<Option<Box<dyn ByteStream>>> {
        let f = &self.0;
        f.request(Operation::Read, FileLayer::read_stream(f, offset, len))
            .await
    }
    fn stored_hash(&self) -> Option<(HashKind, String)> {
        FileLayer::stored_hash(&self.0)
    }
}

/// A wrapper around an upload, as [`Layer`] is around a backend. (No
/// `request` hook: an upload's methods take `&mut self`, so a layer that
/// changes them writes them.)
#[async_trait]
#[allow(missing_docs)] // the methods are the Upload's
pub trait UploadLayer: Send + Sync + 'static {
    /// The upload this wraps.
    fn inner(&mut self) -> &mut dyn Upload;

    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.inner().write(data).await
    }
    async fn finish(&mut self, mtime: Option<std::time::SystemTime>) -> Result<Metadata> {
        self.inner().finish(mtime).await
    }
    async fn abort(&mut self) -> Result<()> {
        self.inner().abort().await
    }
}

/// An [`UploadLayer`] as an [`Upload`].
pub struct LayeredUpload<U>(pub U);

#[async_trait]
impl<U: UploadLayer> Upload for LayeredUpload<U> {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        UploadLayer::write(&mut self.0, data).await
    }
    async fn finish(&mut self, mtime: Option<std::time::SystemTime>) -> Result<Metadata> {
        UploadLayer::finish(&mut self.0, mtime).await
    }
    async fn abort(&mut self) -> Result<()> {
        UploadLayer::abort(&mut self.0).await
    }
}
