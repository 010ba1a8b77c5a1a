//! Counts per key against a limit, each place given back when its slot is
//! dropped: connections per user, open files per user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many places each key holds; keys holding none have no entry, so
/// there are never more entries than places held.
#[derive(Debug, Default)]
pub struct KeyedCounts(Mutex<HashMap<String, usize>>);

impl KeyedCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more place for `key`, unless it holds `limit` already (zero:
    /// no limit); the refusal says how many it holds.
    pub fn take(self: &Arc<Self>, key: &str, limit: usize) -> Result<KeyedSlot, usize> {
        let mut map = self.lock();
        let held = map.get(key).copied().unwrap_or(0);
        if limit != 0 && held >= limit {
            return Err(held);
        }
        map.insert(key.to_string(), held + 1);
        Ok(KeyedSlot {
            counts: self.clone(),
            key: key.to_string(),
        })
    }

    /// Whether no key holds anything.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// One place of a key, held until dropped.
#[derive(Debug)]
pub struct KeyedSlot {
    counts: Arc<KeyedCounts>,
    key: String,
}

impl Drop for KeyedSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock();
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_limit_and_a_dropped_slot_frees_its_place() {
        let counts = Arc::new(KeyedCounts::default());
        let a1 = counts.take("alice", 2).unwrap();
        let a2 = counts.take("alice", 2).unwrap();
        assert_eq!(counts.take("alice", 2).unwrap_err(), 2);
        // Another key, and a taker that sets no limit.
        let b = counts.take("bob", 2).unwrap();
        let a3 = counts.take("alice", 0).unwrap();
        assert_eq!(counts.take("alice", 3).unwrap_err(), 3);
        drop(a1);
        let a4 = counts.take("alice", 3).unwrap();
        drop((a2, a3, a4, b));
        // Nothing kept for keys that hold nothing.
        drop(counts.take("carol", 1).unwrap());
        assert!(counts.is_empty());
    }
}
