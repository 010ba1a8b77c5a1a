//! What keeps a connection from being idle: data moving on one of its
//! channels, a request or command being served, a login attempt or a
//! channel opened. SSH keepalives and their answers do not count, so a
//! client that only keeps its connection alive is still idle.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// One connection's activity.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last activity.
    last: AtomicU64,
    /// Requests and commands being served now.
    busy: AtomicUsize,
}

impl Activity {
    /// A connection active now.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        })
    }

    /// Something happened now.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.fetch_max(ms, Ordering::AcqRel);
    }

    /// Work that keeps the connection active until the guard is dropped
    /// (which counts as activity too).
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self.clone())
    }

    /// How long the connection has been idle; zero while work is served.
    pub fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Acquire));
        self.start.elapsed().saturating_sub(last)
    }

    /// Wait until the connection has been idle for `limit`.
    pub async fn idle(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            // Busy work may last long: look again after a full period
            // then, else when the limit would be reached.
            tokio::time::sleep(limit - idle).await;
        }
    }
}

/// See [`Activity::busy`].
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_after_the_limit_without_activity() {
        let a = Activity::new();
        let limit = Duration::from_secs(10);
        tokio::time::advance(Duration::from_secs(6)).await;
        a.touch();
        let waited = Instant::now();
        a.idle(limit).await;
        assert_eq!(waited.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn busy_work_is_not_idle_and_counts_from_its_end() {
        let a = Activity::new();
        let limit = Duration::from_secs(10);
        let guard = a.busy();
        tokio::time::advance(Duration::from_secs(25)).await;
        assert_eq!(a.idle_for(), Duration::ZERO);
        let t0 = Instant::now();
        let done = {
            let a = a.clone();
            tokio::spawn(async move {
                a.idle(limit).await;
                Instant::now()
            })
        };
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(guard);
        let at = done.await.unwrap();
        // Idle from the end of the work (t0 + 3 s), for the full limit.
        assert!(at >= t0 + Duration::from_secs(13), "{:?}", at - t0);
        assert!(at <= t0 + Duration::from_secs(23), "{:?}", at - t0);
    }
}
