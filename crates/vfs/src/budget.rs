//! The memory that read-ahead may hold, all open files together
//! (`--max-buffer-memory`).
//!
//! Each read handle on a high-latency store reads up to `--buffer-size`
//! ahead of its client; a thousand handles with one small READ each would
//! otherwise hold a thousand buffers. Read-ahead only speeds reading up,
//! so when the budget is spent a handle reads no further ahead than its
//! READs ask, and no READ ever fails or waits for the budget: bytes a READ
//! is waiting for are always fetched (and counted), so the budget can be
//! overdrawn by what clients have asked for, which the session budgets
//! bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes of read-ahead held, against a limit; shared by every VFS of a
/// server.
#[derive(Debug)]
pub struct BufferBudget {
    limit: u64,
    used: AtomicU64,
}

impl BufferBudget {
    /// A budget of `limit` bytes.
    pub fn shared(limit: u64) -> BufferBudgetRef {
        BufferBudgetRef(Arc::new(BufferBudget {
            limit,
            used: AtomicU64::new(0),
        }))
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether read-ahead may take more now.
    pub(crate) fn has_room(&self) -> bool {
        self.used() < self.limit
    }
}

/// A handle on a shared [`BufferBudget`]. Options that hold the same one
/// compare equal.
#[derive(Debug, Clone)]
pub struct BufferBudgetRef(Arc<BufferBudget>);

impl Default for BufferBudgetRef {
    /// No limit (tests and embedders that set none).
    fn default() -> Self {
        BufferBudget::shared(u64::MAX)
    }
}

impl PartialEq for BufferBudgetRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for BufferBudgetRef {}

impl std::ops::Deref for BufferBudgetRef {
    type Target = BufferBudget;
    fn deref(&self) -> &BufferBudget {
        &self.0
    }
}

impl BufferBudgetRef {
    /// `n` bytes for read-ahead, if the budget has them.
    pub(crate) fn try_take(&self, n: u64) -> Option<Lease> {
        let mut now = self.0.used.load(Ordering::Acquire);
        loop {
            let next = now.checked_add(n).filter(|&v| v <= self.0.limit)?;
            match self
                .0
                .used
                .compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Some(Lease {
                        budget: self.0.clone(),
                        n,
                    })
                }
                Err(v) => now = v,
            }
        }
    }

    /// `n` bytes a READ waits for: counted whatever the limit.
    pub(crate) fn take(&self, n: u64) -> Lease {
        self.0.used.fetch_add(n, Ordering::AcqRel);
        Lease {
            budget: self.0.clone(),
            n,
        }
    }
}

/// Bytes held against the budget until dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    budget: Arc<BufferBudget>,
    n: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_take_and_give_back() {
        let b = BufferBudget::shared(100);
        let a = b.try_take(60).unwrap();
        assert!(b.try_take(50).is_none());
        let c = b.try_take(40).unwrap();
        assert!(!b.has_room());
        // What a READ waits for is counted past the limit.
        let d = b.take(30);
        assert_eq!(b.used(), 130);
        drop((a, c, d));
        assert_eq!(b.used(), 0);
        assert!(b.has_room());
        assert_eq!(b.clone(), b);
        assert_ne!(BufferBudget::shared(100), b);
    }
}
