//! A sequence lock for cold-path writers (window rotation, reset) and
//! readers (the dashboard) that must never see a half-done rewrite.

use crate::sync::{fence, spin_loop, AtomicU64, Ordering};

/// A sequence word: even while no writer is inside, odd while one is.
///
/// The data it guards are atomics accessed with `Relaxed` (no data race
/// whatever the interleaving; Boehm, MSPC 2012, and docs/ARCHITECTURE.md);
/// the lock only tells a reader whether what it loaded may mix a writer's
/// old and new values. Writers exclude each other; readers never block a
/// writer and retry when one went through. The recording path never
/// touches it: records land in monotonic counters that need no lock.
pub(crate) struct SeqLock {
    /// `2 * (writes completed)`, plus one while a writer is inside.
    seq: AtomicU64,
}

impl SeqLock {
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
        }
    }

    /// Enters as the writer when none is inside; returns the even value it
    /// found.
    #[inline]
    fn enter(&self) -> Option<u64> {
        let s = self.seq.load(Ordering::Relaxed);
        if s & 1 == 1
            || self
                .seq
                .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        // Orders the odd `seq` before the writer's stores: a reader that
        // loads any of them then sees `seq != s1` on its second load
        // (crossbeam-utils' `SeqLock::write` does the same).
        fence(Ordering::Release);
        Some(s)
    }

    /// Leaves: `seq` becomes even again. An increment rather than a store,
    /// so every write of `seq` is a read-modify-write (see the histogram's
    /// `LatencyHistogram::reset` on loom and plain stores racing RMWs).
    #[inline]
    fn leave(&self) {
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// Runs `f` as the only writer, or returns `None` at once when another
    /// writer is inside.
    pub(crate) fn try_write<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        self.enter()?;
        let r = f();
        self.leave();
        Some(r)
    }

    /// Runs `f` as the only writer, waiting for another writer to leave.
    pub(crate) fn write<R>(&self, f: impl FnOnce() -> R) -> R {
        loop {
            if self.enter().is_some() {
                let r = f();
                self.leave();
                return r;
            }
            spin_loop();
        }
    }

    /// Runs `f` until it ran with no writer inside from start to end, and
    /// returns that run's result. `f` must only load (it may run again).
    pub(crate) fn read<R>(&self, mut f: impl FnMut() -> R) -> R {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let r = f();
                // Orders `f`'s loads before the second `seq` load; pairs
                // with the writer's release fence.
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == s1 {
                    return r;
                }
            }
            spin_loop();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn writers_exclude_each_other_and_readers_see_whole_writes() {
        let lock = SeqLock::new();
        let (a, b) = (AtomicU64::new(0), AtomicU64::new(0));
        assert_eq!(lock.try_write(|| 1), Some(1));
        // A writer inside: another is refused.
        lock.write(|| {
            a.store(1, Ordering::Relaxed);
            assert!(lock.try_write(|| ()).is_none());
            b.store(1, Ordering::Relaxed);
        });
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 2..20_000 {
                    lock.write(|| {
                        a.store(i, Ordering::Relaxed);
                        b.store(i, Ordering::Relaxed);
                    });
                }
            });
            s.spawn(|| {
                for _ in 0..20_000 {
                    let (x, y) =
                        lock.read(|| (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)));
                    assert_eq!(x, y, "a read mixed two writes");
                }
            });
        });
    }
}
