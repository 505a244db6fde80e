//! Job slots handed out by priority: when every slot is taken, the next free one goes to
//! the highest-priority waiter, the oldest first within a priority (a tokio `Semaphore` is
//! strictly first come, first served). A running job keeps its slot until it ends.
//!
//! Waiting is cancel-safe: a waiter dropped before its turn leaves the queue, and one
//! dropped just after being granted a slot hands it on.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use hooteproto::v1::JobPriority;
use tokio::sync::oneshot;

/// Queue position: higher priority first, then arrival order.
type Key = (Reverse<i32>, u64);

struct State {
    free: usize,
    closed: bool,
    next: u64,
    waiting: BTreeMap<Key, oneshot::Sender<()>>,
}

/// A fixed number of slots.
pub struct Slots {
    state: Mutex<State>,
}

/// One slot, given back when dropped.
pub struct Permit {
    slots: Arc<Slots>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

/// A place in the queue; leaves it (or hands on a slot granted too late) when dropped.
struct Waiter {
    slots: Arc<Slots>,
    key: Key,
    receiver: oneshot::Receiver<()>,
    granted: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        // The receiver is still alive here, so a grant sent before this lock was delivered:
        // absent from the queue means granted, and the slot must go to someone else.
        let removed = self.slots.lock().waiting.remove(&self.key).is_some();
        if !removed {
            self.slots.release();
        }
    }
}

/// Where an unspecified priority queues.
pub fn effective(priority: JobPriority) -> JobPriority {
    match priority {
        JobPriority::Unspecified => JobPriority::Normal,
        other => other,
    }
}

impl Slots {
    /// `count` slots (at least one).
    pub fn new(count: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: count.max(1),
                closed: false,
                next: 0,
                waiting: BTreeMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every unlock, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a slot; None once [`Slots::close`] was called.
    pub async fn acquire(self: &Arc<Self>, priority: JobPriority) -> Option<Permit> {
        let mut waiter = {
            let mut state = self.lock();
            if state.closed {
                return None;
            }
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return Some(Permit { slots: self.clone() });
            }
            let key = (Reverse(effective(priority) as i32), state.next);
            state.next += 1;
            let (sender, receiver) = oneshot::channel();
            state.waiting.insert(key, sender);
            Waiter {
                slots: self.clone(),
                key,
                receiver,
                granted: false,
            }
        };
        match (&mut waiter.receiver).await {
            Ok(()) => {
                waiter.granted = true;
                Some(Permit { slots: self.clone() })
            }
            // Closed: the sender was dropped without a grant.
            Err(_) => {
                waiter.granted = true;
                None
            }
        }
    }

    /// Gives a slot to the first waiter, or back to the pool.
    fn release(&self) {
        let mut state = self.lock();
        if !state.closed
            && let Some((_, sender)) = state.waiting.pop_first()
        {
            // Every queued receiver outlives its entry (see `Waiter::drop`), so this is delivered.
            let _ = sender.send(());
            return;
        }
        state.free += 1;
    }

    /// Refuses new waiters and wakes every current one with None.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.waiting.clear();
    }

    /// Jobs waiting for a slot.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_highest_priority_then_the_oldest() {
        let slots = Slots::new(1);
        let running = slots.acquire(JobPriority::Low).await;
        assert!(running.is_some());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for (name, priority) in [
            ("low", JobPriority::Low),
            ("normal-1", JobPriority::Normal),
            ("high", JobPriority::High),
            ("normal-2", JobPriority::Unspecified),
        ] {
            let (shared, order) = (slots.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let permit = shared.acquire(priority).await;
                order.lock().map(|mut o| o.push(name)).ok();
                drop(permit);
            }));
            // Each queues before the next is spawned, so arrival order is the listed order.
            while slots.queued() < waiting.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(running);
        for task in waiting {
            task.await.ok();
        }
        let order = order.lock().map(|o| o.clone()).unwrap_or_default();
        assert_eq!(order, ["high", "normal-1", "normal-2", "low"]);
    }

    #[tokio::test]
    async fn a_waiter_dropped_just_after_its_grant_hands_the_slot_on() {
        let slots = Slots::new(1);
        let first = slots.acquire(JobPriority::Normal).await;
        let mut late = Box::pin(slots.acquire(JobPriority::High));
        // Poll it once, so it queues, then leave it.
        tokio::select! {
            biased;
            _ = &mut late => panic!("the only slot is taken"),
            _ = async {} => {}
        }
        assert_eq!(slots.queued(), 1);
        drop(first); // granted to `late`, which never looks
        drop(late);
        assert!(
            slots.acquire(JobPriority::Low).await.is_some(),
            "the slot was handed back"
        );
    }

    #[tokio::test]
    async fn a_waiter_dropped_in_the_queue_loses_no_slot() {
        let slots = Slots::new(1);
        let first = slots.acquire(JobPriority::Normal).await;
        let abandoned = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(JobPriority::High).await.is_some() })
        };
        while slots.queued() < 1 {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        assert_eq!(slots.queued(), 0, "an abandoned waiter leaves the queue");
        drop(first);
        // The slot came back to the pool, so it can be taken at once, and again after release.
        let again = slots.acquire(JobPriority::Low).await;
        assert!(again.is_some());
        drop(again);
        assert!(slots.acquire(JobPriority::Low).await.is_some());
    }

    #[tokio::test]
    async fn closing_wakes_waiters_with_none() {
        let slots = Slots::new(1);
        let _held = slots.acquire(JobPriority::Normal).await;
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(JobPriority::High).await.is_none() })
        };
        while slots.queued() < 1 {
            tokio::task::yield_now().await;
        }
        slots.close();
        assert!(matches!(waiter.await, Ok(true)));
        assert!(slots.acquire(JobPriority::High).await.is_none());
    }
}
