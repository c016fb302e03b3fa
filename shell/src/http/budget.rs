//! The server-wide budget of rendered responses waiting to be written.
//!
//! A response is counted from the moment its handler returns until hyper
//! has handed its last byte to the kernel (the bytes' owner carries the
//! count: when hyper drops them, it goes back). A handler starts only when
//! the budget has room, so what is over it is at most what the handlers
//! running at that moment render. hyper itself takes a connection's next
//! pipelined request only once the previous response is written, so a
//! client that does not read holds one response at most, per connection;
//! its client (see `clients`) holds at most an eighth of the budget, and a
//! client that holds nothing of it has an eighth more to start with.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::clients::ResponseShare;

/// KiB of rendered responses waiting to be written.
pub(super) struct Budget {
    limit_kib: usize,
    used_kib: AtomicUsize,
    freed: Notify,
}

/// What a client holding nothing of the budget may start a handler with
/// past it (an eighth more): a full budget, filled by clients that do not
/// read, still serves the others' pages.
pub(super) fn headroom_kib(limit_kib: usize) -> usize {
    limit_kib / 8
}

/// A response's place in the budget; given back when dropped.
pub(super) struct Hold {
    budget: Arc<Budget>,
    kib: usize,
}

impl Budget {
    pub(super) fn new(limit_kib: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit_kib: limit_kib.max(1),
            used_kib: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// KiB in use now.
    pub(super) fn used_kib(&self) -> usize {
        self.used_kib.load(Ordering::Acquire)
    }

    /// Waits up to `wait` for the budget to have room, for a client that
    /// holds nothing of it (`fresh`: the budget and its headroom) or some;
    /// whether it has.
    pub(super) async fn room(&self, fresh: bool, wait: Duration) -> bool {
        let limit = if fresh {
            self.limit_kib + headroom_kib(self.limit_kib)
        } else {
            self.limit_kib
        };
        let until = Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            if self.used_kib() < limit {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, freed).await.is_err() {
                return self.used_kib() < limit;
            }
        }
    }

    /// Counts `bytes` against the budget (whatever is in use: a rendered
    /// response is never thrown away) until the returned hold is dropped.
    pub(super) fn hold(self: &Arc<Self>, bytes: usize) -> Hold {
        let kib = bytes.div_ceil(1024);
        self.used_kib.fetch_add(kib, Ordering::AcqRel);
        Hold {
            budget: self.clone(),
            kib,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.budget.used_kib.fetch_sub(self.kib, Ordering::AcqRel);
        self.budget.freed.notify_waiters();
    }
}

/// A response body that gives its budget back when hyper drops it.
struct Held {
    body: Vec<u8>,
    _hold: Hold,
    _share: Option<ResponseShare>,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

/// `body` as bytes that hold `hold` and `share` until they are dropped.
pub(super) fn held_bytes(body: Vec<u8>, hold: Hold, share: Option<ResponseShare>) -> Bytes {
    Bytes::from_owner(Held {
        body,
        _hold: hold,
        _share: share,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_budget_makes_the_next_handler_wait_until_a_response_is_written() {
        let budget = Budget::new(64);
        let first = budget.hold(40 * 1024);
        assert!(budget.room(false, Duration::ZERO).await);
        // A fresh client has an eighth more.
        let _third = budget.hold(25 * 1024);
        assert!(!budget.room(false, Duration::ZERO).await);
        assert!(budget.room(true, Duration::ZERO).await);
        drop(_third);
        // Past the budget: a rendered response still counts in full.
        let second = budget.hold(100 * 1024 + 1);
        assert_eq!(budget.used_kib(), 141);
        assert!(!budget.room(true, Duration::from_millis(100)).await);
        let bytes = held_bytes(vec![7; 3000], budget.hold(3000), None);
        assert_eq!(budget.used_kib(), 144);
        assert_eq!(&bytes[..2], &[7, 7]);
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.room(false, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        drop(second);
        assert!(waiter.await.unwrap());
        drop(bytes.slice(0..10));
        drop(bytes);
        drop(first);
        assert_eq!(budget.used_kib(), 0);
    }
}
