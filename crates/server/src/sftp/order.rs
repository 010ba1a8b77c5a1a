//! Reply order: the replies to the requests of one handle leave in the
//! order the requests arrived.
//!
//! Requests run concurrently and may finish in any order, which the
//! protocol allows, but the clients people use do not all cope with it:
//! paramiko's pipelined writer waits for each WRITE in turn and drops any
//! other reply it reads meanwhile, and PuTTY's pscp takes a short READ that
//! overtakes its predecessors for the end of the file. So each handle is a
//! [`Lane`]: at arrival (in the reader) a request takes a [`Turn`] in the
//! lane of every handle it names, and its reply goes to the writer only
//! once the replies of the lane's earlier requests have. Requests without a
//! handle (STAT, OPEN, RENAME, ...) are not ordered against anything; why
//! not all replies are ordered is in `docs/design/concurrency.md`.
//!
//! A turn waits only for requests that arrived before it, so waiting for
//! turns cannot deadlock as long as nothing else an earlier request needs
//! is held by a later one: the session's read-ahead budget is therefore
//! claimed in arrival order too (see `Reader::dispatch`).

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// The reply order of one handle.
#[derive(Default)]
pub struct Lane {
    /// Closed once the latest request's reply has gone to the writer.
    last: Mutex<Option<Arc<Semaphore>>>,
}

/// One request's place in the lanes of its handles. Dropping it lets the
/// next request of each lane go once the earlier ones have gone too (a
/// request that ends without a reply must not hold up the others, nor let
/// them overtake the replies before it).
pub struct Turn {
    /// The "sent" marks of the requests just before this one.
    after: Vec<Arc<Semaphore>>,
    /// This request's mark: closed when the turn is dropped.
    sent: Option<Arc<Semaphore>>,
}

impl Turn {
    /// A turn behind the requests already in `lanes` (in arrival order:
    /// call this from the reader).
    pub fn new<'a>(lanes: impl IntoIterator<Item = &'a Lane>) -> Turn {
        let mut turn = Turn {
            after: Vec::new(),
            sent: None,
        };
        for lane in lanes {
            let sent = turn
                .sent
                .get_or_insert_with(|| Arc::new(Semaphore::new(0)))
                .clone();
            let before = lane
                .last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replace(sent);
            if let Some(b) = before.filter(|b| !b.is_closed()) {
                turn.after.push(b);
            }
        }
        turn
    }

    /// Wait until the replies of the lanes' earlier requests are sent.
    /// Cancel-safe.
    pub async fn wait(&mut self) {
        while let Some(b) = self.after.last() {
            // Closed means sent; no permit is ever added.
            let _ = b.acquire().await;
            self.after.pop();
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(sent) = self.sent.take() else {
            return;
        };
        self.after.retain(|b| !b.is_closed());
        if self.after.is_empty() {
            sent.close();
            return;
        }
        // Dropped before its turn (a request that ended early): its mark
        // closes only after the replies before it.
        let mut rest = Turn {
            after: std::mem::take(&mut self.after),
            sent: None,
        };
        tokio::spawn(async move {
            rest.wait().await;
            sent.close();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn waits(t: &mut Turn) -> bool {
        tokio::time::timeout(Duration::from_millis(30), t.wait())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_turn_waits_for_every_earlier_one_of_its_lanes() {
        let (a, b) = (Lane::default(), Lane::default());
        let first = Turn::new([&a]);
        let second = Turn::new([&a]);
        let mut third = Turn::new([&a]);
        let mut other = Turn::new([&b]);
        assert!(!waits(&mut other).await, "another lane is not held up");
        // The third waits for the second, which waits for the first, even
        // when the second ends before its turn.
        drop(second);
        assert!(waits(&mut third).await);
        drop(first);
        assert!(!waits(&mut third).await);
    }

    #[tokio::test]
    async fn a_turn_in_two_lanes_waits_for_both_and_holds_both() {
        let (a, b) = (Lane::default(), Lane::default());
        let on_a = Turn::new([&a]);
        let on_b = Turn::new([&b]);
        let mut both = Turn::new([&a, &b]);
        let mut later_b = Turn::new([&b]);
        drop(on_a);
        assert!(waits(&mut both).await, "still behind the request on b");
        drop(on_b);
        assert!(!waits(&mut both).await);
        assert!(waits(&mut later_b).await, "behind the two-lane request");
        drop(both);
        assert!(!waits(&mut later_b).await);
    }

    #[tokio::test]
    async fn no_lane_no_wait_and_finished_turns_are_not_kept() {
        let mut free = Turn::new(std::iter::empty());
        assert!(!waits(&mut free).await);
        let a = Lane::default();
        drop(Turn::new([&a]));
        let t = Turn::new([&a]);
        assert!(t.after.is_empty(), "a sent predecessor is not waited for");
    }
}
