//! Which stripe a thread writes to, so threads do not share hot counters.

/// Stripes per striped structure (ring shards, histogram sums): enough to
/// keep a small server's busy threads apart, few enough to stay small.
pub const STRIPES: usize = 4;

/// The calling thread's stripe, in `0..STRIPES`.
///
/// With `std`, threads get stripes round-robin in the order they first
/// record (a thread-local read). Without `std` there is no thread identity
/// to read, and anything derived from the caller (a stack address) changes
/// with call depth, which would scatter one thread's records over stripes
/// and lose their program order: every caller uses stripe 0 (no_std
/// targets are mostly single-core, where stripes buy nothing).
#[inline]
pub fn stripe() -> usize {
    #[cfg(all(feature = "std", not(loom)))]
    {
        use crate::sync::{AtomicUsize, Ordering};
        use std::cell::Cell;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        std::thread_local! {
            static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        STRIPE.with(|s| {
            let mut v = s.get();
            if v == usize::MAX {
                v = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
                s.set(v);
            }
            v
        })
    }
    // loom replays each schedule and needs the same atomics touched every
    // time: an address-derived stripe would differ between replays.
    #[cfg(loom)]
    {
        0
    }
    #[cfg(all(not(feature = "std"), not(loom)))]
    {
        0
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn stable_per_thread_and_spread_across_threads() {
        let mine = stripe();
        assert_eq!(stripe(), mine);
        let mut all: std::vec::Vec<usize> = (0..2 * STRIPES)
            .map(|_| std::thread::spawn(stripe).join().unwrap())
            .collect();
        all.push(mine);
        assert!(all.iter().all(|&s| s < STRIPES));
        all.sort_unstable();
        all.dedup();
        // Round-robin: threads started one after another do not all share one.
        assert!(all.len() >= 2, "{all:?}");
    }
}

/// One value on its own 64-byte cache line (crossbeam's `CachePadded` uses
/// 128 bytes on x86-64 to defeat the adjacent-line prefetcher; per-series
/// stripes use 64 to keep a series small, see docs/ARCHITECTURE.md).
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct LinePadded<T>(pub T);

impl<T> core::ops::Deref for LinePadded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
