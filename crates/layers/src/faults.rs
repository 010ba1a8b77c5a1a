//! Injected faults, for tests only (`--debug-backend-faults`): a chosen
//! share of the requests to the wrapped backend fail, as a flaky network
//! and store make them fail. It answers "does every transfer still either
//! succeed byte-exact or fail cleanly, with nothing half-committed?".
//!
//! # What is injected
//! Each request (every [`Backend`] call that reaches the store, each call
//! of a file opened or an upload created through this layer) draws a
//! number; at the given rate it gets one of, in equal shares:
//!
//! - **refused**: it fails at once with a temporary error and never
//!   reaches the store (a connection refused or reset before sending);
//! - **lost answer**: it is made, and then fails with a temporary error
//!   all the same (the reply lost on the way back: a rename done, an
//!   upload committed, and the caller told it failed);
//! - **slow**: it waits 200 ms first, then is made;
//! - **reset mid-stream**: a ranged stream opened (`read_stream`) breaks
//!   with a temporary error before one of its pieces (drawn per piece).
//!
//! The draws come from a small generator seeded by the flag, so a run can
//! be repeated. The layer goes next to the store, under the retries, as a
//! real fault would: what the retries cannot hide reaches the VFS and the
//! client.
//!
//! Not for production use; the CLI offers it only behind a hidden flag.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_backend::layer::Request;
use ferry_backend::{
    Backend, BackendError, ByteStream, ErrorKind, FileHandle, FileLayer, Layer, Layered,
    LayeredFile, LayeredUpload, Metadata, Operation, Result, Upload, UploadLayer,
};

/// How often faults happen, and the seed of the draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultOptions {
    /// The share of requests that get a fault, in millionths.
    pub per_million: u32,
    /// The generator's seed.
    pub seed: u64,
}

impl FaultOptions {
    /// Parse `5%`, `0.05` or `5%,seed=7`.
    pub fn parse(v: &str) -> std::result::Result<Self, String> {
        let mut parts = v.split(',').map(str::trim);
        let rate = parts.next().unwrap_or("");
        let rate = match rate.strip_suffix('%') {
            Some(p) => p.parse::<f64>().map(|p| p / 100.0),
            None => rate.parse::<f64>(),
        }
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .map(|r| (r * 1e6).round() as u32)
        .ok_or_else(|| format!("{v:?}: want a rate such as 5% or 0.05, then ,seed=N"))?;
        let mut seed = 1;
        for p in parts {
            seed = p
                .strip_prefix("seed=")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("{v:?}: unknown part {p:?} (want seed=N)"))?;
        }
        Ok(FaultOptions {
            per_million: rate,
            seed,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Refused,
    Lost,
    Slow,
}

/// The draws, shared by a backend and everything opened through it.
#[derive(Debug)]
struct Dice {
    rate: f64,
    state: AtomicU64,
}

impl Dice {
    /// The next number in [0, 1) (splitmix64).
    fn roll(&self) -> f64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn hit(&self) -> bool {
        self.rate > 0.0 && self.roll() < self.rate
    }

    fn fault(&self) -> Option<Fault> {
        if !self.hit() {
            return None;
        }
        Some(match (self.roll() * 3.0) as u32 {
            0 => Fault::Refused,
            1 => Fault::Lost,
            _ => Fault::Slow,
        })
    }
}

fn injected(op: Operation, what: &str) -> BackendError {
    tracing::debug!("injected fault: {what} ({op:?})");
    BackendError::new(ErrorKind::Temporary, op).with_source(format!("injected fault: {what}"))
}

/// `req` with the fault drawn for it.
fn faulty<'a, T: Send + 'a>(dice: &Dice, op: Operation, req: Request<'a, T>) -> Request<'a, T> {
    match dice.fault() {
        None => req,
        Some(Fault::Refused) => {
            drop(req);
            Box::pin(async move { Err(injected(op, "refused")) })
        }
        Some(Fault::Lost) => Box::pin(async move {
            let _ = req.await;
            Err(injected(op, "answer lost"))
        }),
        Some(Fault::Slow) => Box::pin(async move {
            tracing::debug!("injected fault: slow ({op:?})");
            tokio::time::sleep(SLOW).await;
            req.await
        }),
    }
}

/// The delay of a slow request.
const SLOW: Duration = Duration::from_millis(200);

/// A backend whose requests fail now and then. See the module docs.
pub struct Faults {
    inner: Arc<dyn Backend>,
    dice: Arc<Dice>,
}

impl Faults {
    /// `inner` with faults at `opts.rate`.
    pub fn wrap(inner: Arc<dyn Backend>, opts: FaultOptions) -> Layered<Faults> {
        Layered(Faults {
            inner,
            dice: Arc::new(Dice {
                rate: f64::from(opts.per_million) / 1e6,
                state: AtomicU64::new(opts.seed),
            }),
        })
    }
}

impl Layer for Faults {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    fn request<'a, T: Send + 'a>(&'a self, op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        faulty(&self.dice, op, req)
    }

    fn wrap_file(&self, inner: Box<dyn FileHandle>) -> Box<dyn FileHandle> {
        Box::new(LayeredFile(FaultFile {
            inner,
            dice: self.dice.clone(),
        }))
    }

    fn wrap_upload(&self, inner: Box<dyn Upload>) -> Box<dyn Upload> {
        Box::new(LayeredUpload(FaultUpload {
            inner,
            dice: self.dice.clone(),
        }))
    }
}

struct FaultFile {
    inner: Box<dyn FileHandle>,
    dice: Arc<Dice>,
}

#[async_trait]
impl FileLayer for FaultFile {
    fn inner(&self) -> &dyn FileHandle {
        &*self.inner
    }

    fn request<'a, T: Send + 'a>(&'a self, op: Operation, req: Request<'a, T>) -> Request<'a, T> {
        faulty(&self.dice, op, req)
    }

    async fn read_stream(&self, offset: u64, len: u64) -> Result<Option<Box<dyn ByteStream>>> {
        let dice = self.dice.clone();
        ferry_backend::layer::wrap_stream(&*self.inner, offset, len, |inner| {
            Box::new(FaultStream { inner, dice })
        })
        .await
    }
}

/// A stream that breaks now and then before a piece.
struct FaultStream {
    inner: Box<dyn ByteStream>,
    dice: Arc<Dice>,
}

#[async_trait]
impl ByteStream for FaultStream {
    async fn next(&mut self) -> Result<Option<Bytes>> {
        if self.dice.hit() {
            return Err(injected(Operation::Read, "stream reset"));
        }
        self.inner.next().await
    }
}

struct FaultUpload {
    inner: Box<dyn Upload>,
    dice: Arc<Dice>,
}

#[async_trait]
impl UploadLayer for FaultUpload {
    fn inner(&mut self) -> &mut dyn Upload {
        &mut *self.inner
    }

    async fn write(&mut self, data: Bytes) -> Result<()> {
        let dice = self.dice.clone();
        faulty(&dice, Operation::Write, self.inner.write(data)).await
    }

    async fn finish(&mut self, mtime: Option<SystemTime>) -> Result<Metadata> {
        let dice = self.dice.clone();
        faulty(&dice, Operation::Write, self.inner.finish(mtime)).await
    }

    async fn abort(&mut self) -> Result<()> {
        // Cleaning up is not made to fail: that is a leftover, not a fault
        // a client sees.
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!(
            FaultOptions::parse("5%").unwrap(),
            FaultOptions {
                per_million: 50_000,
                seed: 1
            }
        );
        assert_eq!(FaultOptions::parse("0.2,seed=9").unwrap().seed, 9);
        for bad in ["", "120%", "-1", "5%,seed=x", "5%,x=1", "lots"] {
            assert!(FaultOptions::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rate_is_kept_and_the_draws_repeat() {
        let dice = |seed| Dice {
            rate: 0.05,
            state: AtomicU64::new(seed),
        };
        let (a, b) = (dice(3), dice(3));
        let draws: Vec<_> = (0..20_000).map(|_| a.fault()).collect();
        assert_eq!(draws, (0..20_000).map(|_| b.fault()).collect::<Vec<_>>());
        let hits = draws.iter().filter(|f| f.is_some()).count();
        assert!((800..1200).contains(&hits), "{hits} faults in 20,000");
        for kind in [Fault::Refused, Fault::Lost, Fault::Slow] {
            let n = draws.iter().filter(|f| **f == Some(kind)).count();
            assert!(n > 200, "{kind:?}: {n}");
        }
    }

    #[tokio::test]
    async fn faults_reach_callers_as_temporary_errors() {
        use ferry_backend::RelPath;
        let mem: Arc<dyn Backend> = Arc::new(ferry_backend_memory::MemoryBackend::new());
        let b = Faults::wrap(
            mem,
            FaultOptions {
                per_million: 1_000_000,
                seed: 5,
            },
        );
        let mut temporary = 0;
        for _ in 0..30 {
            match b.create_dir(&RelPath::new("d").unwrap(), None).await {
                Err(e) if e.kind() == ErrorKind::Temporary => temporary += 1,
                Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
                Ok(()) => {}
            }
        }
        // Slow ones succeed (or find the directory made); the others fail.
        assert!(temporary >= 10, "{temporary}");
    }
}
