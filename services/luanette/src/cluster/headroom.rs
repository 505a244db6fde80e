//! The front's estimate of how far the queue is from its limits, so that most inserts need
//! not count in PostgreSQL. Counting unfinished jobs (up to a limit) costs the database more
//! than the insert itself once thousands wait: it was a fifth of the database's work per job.
//!
//! After an exact count for a client, the front adds what it queued itself since. It counts
//! again when that estimate reaches half a limit or the count is a second old. What other
//! fronts queued meanwhile is unseen for at most that second, which the half left over covers
//! unless they queue half the limit within it; a client talks to one front, so its own count
//! misses nothing (finished jobs only make the estimate high, never low).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an exact count is trusted.
const TRUSTED_FOR: Duration = Duration::from_secs(1);
/// Clients remembered at most (the oldest counts are dropped past it).
const MAX_CLIENTS: usize = 4096;

#[derive(Default)]
pub(super) struct Headroom {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Jobs this front has queued since it started.
    queued_here: u64,
    /// Per client (routing id): the last exact count.
    counted: HashMap<Vec<u8>, Count>,
}

struct Count {
    at: Instant,
    /// `queued_here` when counted.
    queued_here: u64,
    total: u64,
    own: u64,
}

impl Headroom {
    /// Whether `owner` may queue a job without an exact count: both estimates are under half
    /// their limits, from a count less than a second old.
    pub(super) fn clearly_room(&self, owner: &[u8], max_total: usize, max_own: usize) -> bool {
        let Ok(inner) = self.inner.lock() else { return false };
        let Some(count) = inner.counted.get(owner) else {
            return false;
        };
        let since = inner.queued_here - count.queued_here;
        count.at.elapsed() < TRUSTED_FOR
            && (count.total + since) * 2 < max_total as u64
            && (count.own + since) * 2 < max_own as u64
    }

    /// Remembers an exact count for `owner`.
    pub(super) fn counted(&self, owner: &[u8], total: u64, own: u64) {
        let Ok(mut inner) = self.inner.lock() else { return };
        if inner.counted.len() >= MAX_CLIENTS {
            inner.counted.retain(|_, count| count.at.elapsed() < TRUSTED_FOR);
            if inner.counted.len() >= MAX_CLIENTS {
                inner.counted.clear();
            }
        }
        let queued_here = inner.queued_here;
        inner.counted.insert(
            owner.to_vec(),
            Count {
                at: Instant::now(),
                queued_here,
                total,
                own,
            },
        );
    }

    /// Notes a job this front queued (for any client).
    pub(super) fn queued(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.queued_here += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_again_near_half_a_limit_or_for_a_new_client() {
        let headroom = Headroom::default();
        assert!(!headroom.clearly_room(b"a", 100, 10), "never counted");
        headroom.counted(b"a", 40, 3);
        assert!(headroom.clearly_room(b"a", 100, 10));
        assert!(
            !headroom.clearly_room(b"b", 100, 10),
            "another client is counted on its own"
        );
        headroom.queued();
        assert!(headroom.clearly_room(b"a", 100, 10), "4 of 10 own");
        headroom.queued();
        assert!(!headroom.clearly_room(b"a", 100, 10), "5 of 10 own: half the limit");
        headroom.counted(b"a", 49, 0);
        assert!(headroom.clearly_room(b"a", 100, 10));
        headroom.queued();
        assert!(!headroom.clearly_room(b"a", 100, 10), "50 of 100 in all");
    }
}
