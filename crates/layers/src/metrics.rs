//! Backend metrics: every request that reaches the store counted by
//! operation and result, and timed (`ferry_backend_requests_total`,
//! `ferry_backend_request_duration_seconds`, `ferry_errors_total`).
//!
//! The layer sits next to the store, under the retries: each try is a
//! request the store answered, and a retried failure shows as what it was.
//! Reads and writes of an open file are counted by the file's own calls
//! (`read`, `write`); the bytes of a stream are not requests.

use std::sync::Arc;
use std::time::Instant;

use ferry_backend::layer::Request;
use ferry_backend::{Backend, ErrorKind, Layer, Layered, Operation};
use ferry_metrics::Metrics;

/// A backend whose requests are counted and timed. See the module docs.
pub struct Measured {
    inner: Arc<dyn Backend>,
    metrics: Arc<Metrics>,
}

impl Measured {
    /// `inner` with its requests counted in `metrics`.
    pub fn wrap(inner: Arc<dyn Backend>, metrics: Arc<Metrics>) -> Layered<Measured> {
        Layered(Measured { inner, metrics })
    }
}

/// The metric label of an operation.
pub fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Stat => "stat",
        Operation::List => "list",
        Operation::Open => "open",
        Operation::Read => "read",
        Operation::Write => "write",
        Operation::Remove => "remove",
        Operation::CreateDir => "mkdir",
        Operation::RemoveDir => "rmdir",
        Operation::Rename => "rename",
        Operation::Copy => "copy",
        Operation::SetAttrs => "setattrs",
        Operation::Symlink => "symlink",
        Operation::ReadLink => "readlink",
        Operation::HardLink => "hardlink",
        Operation::Usage => "usage",
        Operation::Sync => "sync",
        Operation::Hash => "hash",
    }
}

/// The metric label of a kind of error.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not_found",
        ErrorKind::PermissionDenied => "permission_denied",
        ErrorKind::AlreadyExists => "already_exists",
        ErrorKind::NotADirectory => "not_a_directory",
        ErrorKind::IsADirectory => "is_a_directory",
        ErrorKind::DirectoryNotEmpty => "directory_not_empty",
        ErrorKind::NoSpace => "no_space",
        ErrorKind::ReadOnly => "read_only",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::InvalidName => "invalid_name",
        ErrorKind::OutsideRoot => "outside_root",
        ErrorKind::TooManyLinks => "too_many_links",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::Temporary => "temporary",
        ErrorKind::Other => "other",
    }
}

impl Layer for Measured {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    fn request<'a, T: Send + 'a>(&'a self, op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        Box::pin(async move {
            let start = Instant::now();
            let r = req.await;
            let error = r.as_ref().err().map(|e| kind_name(e.kind()));
            self.metrics
                .backend_request(op_name(op), error, start.elapsed());
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_backend::RelPath;

    #[tokio::test]
    async fn requests_are_counted_by_operation_and_result() {
        let metrics = Arc::new(Metrics::new());
        let mem: Arc<dyn Backend> = Arc::new(ferry_backend_memory::MemoryBackend::new());
        let b = Measured::wrap(mem, metrics.clone());
        let p = RelPath::new("nope").unwrap();
        assert!(b.stat(&p).await.is_err());
        b.list(&RelPath::root()).await.unwrap();
        let text = metrics.encode(|_| {});
        assert!(
            text.contains(r#"ferry_backend_requests_total{op="stat",result="not_found"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ferry_backend_requests_total{op="list",result="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ferry_errors_total{kind="not_found"} 1"#),
            "{text}"
        );
    }
}
