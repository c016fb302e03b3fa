//! "The last 15 minutes" in bounded memory, at no cost to the writers.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::latency_histogram::LatencyHistogram;
use crate::layout::HistogramLayout;
use crate::seq_lock::SeqLock;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// One checkpoint: the since-start histogram as it stood at the start of an
/// interval, folded into the window's coarser layout. Every field is
/// written only by [`RecentWindow::rotate`] or [`RecentWindow::reset`]
/// inside the window's [`SeqLock`], and read only inside its read side.
struct Checkpoint {
    /// `epoch + 1` of the interval this checkpoint opens; 0 = never taken
    /// (or forgotten by a reset).
    tag: AtomicU64,
    /// Clock reading when it was taken; 0 for the empty state (the first
    /// checkpoint after creation or a reset, which stands for "since then").
    taken_ns: AtomicU64,
    /// The since-start sum at the checkpoint.
    sum: AtomicU64,
    /// The histogram it was taken of ([`LatencyHistogram`]'s id) and that
    /// histogram's resets then: a read or rotation against another
    /// histogram, or after a reset made behind the window's back, ignores
    /// it (so such a read is the histogram's whole count, never a
    /// difference of unrelated counts).
    source: AtomicU64,
    resets: AtomicU64,
    /// Cumulative counts per coarse bucket, wrapping `u32`: the window is a
    /// difference of two checkpoints' counts, which is exact modulo 2^32, so
    /// it stays right as long as one window holds fewer than 2^32 records
    /// in one bucket.
    counts: Box<[AtomicU32]>,
}

/// A sliding window over a [`LatencyHistogram`], made of checkpoints.
///
/// A window answers for the histogram it is rotated with: each checkpoint
/// remembers its source and the source's [`resets`](LatencyHistogram::resets),
/// and a read or rotation against another histogram, or after that one was
/// reset directly (not through [`reset`](Self::reset)), ignores the
/// checkpoints it does not match, so it returns the given histogram's
/// whole count since its creation or last reset: never a difference of
/// unrelated counts.
///
/// Writers never touch it: they record only into the since-start histogram.
/// [`rotate`](Self::rotate), called from a cold path (the shell's one-second
/// ticker), copies the since-start histogram into the checkpoint of the
/// current interval the first time it runs in that interval. The window at
/// `now` is the since-start histogram minus the oldest checkpoint of the
/// last `slots` intervals: with the defaults (4 intervals of 5 minutes) the
/// last 15 minutes plus the elapsed part of the current 5. Checkpoints are
/// kept in a coarser layout (1 significant figure) so four of them cost
/// less than one since-start histogram.
///
/// # Protocol
///
/// Rotation and [`reset`](Self::reset) write inside a sequence lock;
/// readers ([`counts`](Self::counts) and everything built on it) load the
/// checkpoint *before* the since-start histogram and retry when a writer
/// went through meanwhile. Between resets the since-start counters only
/// grow, and a checkpoint holds values the reader's later loads of the same
/// counters can only equal or exceed (read-read coherence through the
/// lock's release and acquire), so every per-bucket difference is a real,
/// non-negative count. A reset zeroes the source inside the same lock, so
/// no reader pairs a pre-reset checkpoint with a post-reset source.
///
/// # Examples
///
/// ```
/// use starpunk_perf::{HistogramLayout, LatencyHistogram, RecentWindow};
///
/// let fine = HistogramLayout::new(1, 1_000_000, 2).unwrap();
/// let coarse = HistogramLayout::new(1, 1_000_000, 1).unwrap();
/// let h: LatencyHistogram = LatencyHistogram::new(fine);
/// // 4 intervals of 60 ns: the window at time t starts at epoch t/60 - 3.
/// let w = RecentWindow::new(coarse, 60, 4);
/// w.rotate(0, &h);
/// h.record(5);
/// w.rotate(250, &h); // epoch 4: the checkpoint of epoch 1 onwards matter
/// h.record(7);
/// assert_eq!(w.snapshot(250, &h).len(), 1);
/// ```
pub struct RecentWindow {
    layout: HistogramLayout,
    interval_ns: u64,
    /// `ceil(2^64 / interval_ns)`: the epoch is a multiply-high, not a division.
    reciprocal: u64,
    /// `checkpoints.len() - 1`; the length is a power of two.
    mask: u64,
    /// Serialises rotation and reset; readers validate against it.
    lock: SeqLock,
    checkpoints: Box<[Checkpoint]>,
}

/// The window's figures, from [`RecentWindow::totals`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WindowTotals {
    /// Records in the window.
    pub count: u64,
    /// Their exact sum.
    pub sum: u64,
    /// Clock reading at which the window starts, or `None` when it reaches
    /// back to the source's creation or last reset.
    pub since_ns: Option<u64>,
}

impl Checkpoint {
    /// Taken of `source` after its `resets`-th reset.
    fn of(&self, source: &LatencyHistogram, resets: u64) -> bool {
        self.source.load(Ordering::Relaxed) == source.id()
            && self.resets.load(Ordering::Relaxed) == resets
    }
}

impl RecentWindow {
    /// A window of `slots` intervals of `interval_ns` each, its checkpoints
    /// kept in `layout`. `slots` is rounded up to a power of two (at least
    /// 2), `interval_ns` raised to at least 2.
    pub fn new(layout: HistogramLayout, interval_ns: u64, slots: usize) -> Self {
        let slots = slots.clamp(2, 1 << 16).next_power_of_two();
        let interval_ns = interval_ns.max(2);
        let mut checkpoints = Vec::with_capacity(slots);
        checkpoints.resize_with(slots, || Checkpoint {
            tag: AtomicU64::new(0),
            taken_ns: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            source: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            counts: (0..layout.counts_len())
                .map(|_| AtomicU32::new(0))
                .collect(),
        });
        Self {
            layout,
            interval_ns,
            reciprocal: u64::MAX / interval_ns + 1,
            mask: slots as u64 - 1,
            lock: SeqLock::new(),
            checkpoints: checkpoints.into_boxed_slice(),
        }
    }

    /// Length of one interval.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// The checkpoints' layout (the window's precision).
    pub fn layout(&self) -> &HistogramLayout {
        &self.layout
    }

    /// `now_ns / interval_ns`, give or take one right at a boundary: the
    /// multiply-high over-estimates the quotient by less than `now_ns / 2^64`.
    #[inline]
    fn epoch(&self, now_ns: u64) -> u64 {
        ((u128::from(now_ns) * u128::from(self.reciprocal)) >> 64) as u64
    }

    /// Takes the checkpoint of the interval containing `now_ns`, if not yet
    /// taken. Cold path: call it at least once per interval (the shell calls
    /// it every second). Concurrent calls are safe: while one rotation or a
    /// reset is inside, the others return at once (the next tick retries).
    pub fn rotate(&self, now_ns: u64, source: &LatencyHistogram) {
        let epoch = self.epoch(now_ns);
        let want = epoch.saturating_add(1);
        let cp = &self.checkpoints[(epoch & self.mask) as usize];
        // Unlocked peek: a stale tag only means taking the lock to re-check.
        if cp.tag.load(Ordering::Relaxed) >= want {
            return;
        }
        self.lock.try_write(|| {
            if cp.tag.load(Ordering::Relaxed) >= want {
                return;
            }
            // The very first checkpoint (after creation or a reset, of
            // this source) stands for the empty state: everything recorded
            // so far happened inside this interval, so it belongs in the
            // window.
            let (resets, buckets) = source.buckets_and_resets();
            let first = !self
                .checkpoints
                .iter()
                .any(|c| c.tag.load(Ordering::Relaxed) != 0 && c.of(source, resets));
            // Folded into plain memory first, then stored: each counter
            // of the checkpoint gets one store inside the lock.
            let mut folded = alloc::vec![0u32; cp.counts.len()];
            if !first {
                for (value, n) in buckets {
                    let i = self.layout.index_for(value);
                    folded[i] = folded[i].wrapping_add(n as u32);
                }
            }
            for (c, n) in cp.counts.iter().zip(folded) {
                c.store(n, Ordering::Relaxed);
            }
            if first {
                cp.sum.store(0, Ordering::Relaxed);
                cp.taken_ns.store(0, Ordering::Relaxed);
            } else {
                cp.sum.store(source.sum(), Ordering::Relaxed);
                cp.taken_ns.store(now_ns.max(1), Ordering::Relaxed);
            }
            cp.source.store(source.id(), Ordering::Relaxed);
            cp.resets.store(resets, Ordering::Relaxed);
            cp.tag.store(want, Ordering::Relaxed);
        });
    }

    /// Zeroes `source` and forgets every checkpoint, as one step for
    /// readers: none sees a checkpoint of before the reset with the source
    /// of after it. Waits for a rotation in progress. Writers never wait: a
    /// record racing the reset lands on either side of it, or (its bucket
    /// and its sum being two counters) half on each, an error of one
    /// record at the moment of the reset.
    pub fn reset(&self, source: &LatencyHistogram) {
        self.lock.write(|| {
            for cp in self.checkpoints.iter() {
                cp.tag.store(0, Ordering::Relaxed);
            }
            source.reset();
        });
    }

    /// The oldest checkpoint inside the window ending at `now_ns` taken of
    /// `source` after its `resets`-th reset. Call inside the lock's read
    /// side.
    fn base(&self, now_ns: u64, source: &LatencyHistogram, resets: u64) -> Option<&Checkpoint> {
        let now_tag = self.epoch(now_ns).saturating_add(1);
        let oldest_tag = now_tag.saturating_sub(self.mask);
        self.checkpoints
            .iter()
            .filter_map(|cp| {
                let tag = cp.tag.load(Ordering::Relaxed);
                (tag != 0 && tag >= oldest_tag && tag <= now_tag && cp.of(source, resets))
                    .then_some((tag, cp))
            })
            .min_by_key(|&(tag, _)| tag)
            .map(|(_, cp)| cp)
    }

    /// Per coarse bucket, the records of the window ending at `now_ns`:
    /// `source` now minus the oldest checkpoint in the window (or all of
    /// `source` when no checkpoint lies in the window yet).
    pub fn counts(&self, now_ns: u64, source: &LatencyHistogram) -> (Vec<u64>, WindowTotals) {
        let len = self.layout.counts_len();
        let mut base = alloc::vec![0u32; len];
        let mut counts = alloc::vec![0u32; len];
        let (sum, since_ns) = self.lock.read(|| {
            // The checkpoint first, then the source: see "Protocol". Only
            // a checkpoint of this source since its last reset counts.
            let resets = source.resets();
            let (mut base_sum, mut since) = match self.base(now_ns, source, resets) {
                Some(cp) => {
                    for (b, c) in base.iter_mut().zip(cp.counts.iter()) {
                        *b = c.load(Ordering::Relaxed);
                    }
                    let taken = cp.taken_ns.load(Ordering::Relaxed);
                    (
                        cp.sum.load(Ordering::Relaxed),
                        (taken != 0).then_some(taken),
                    )
                }
                None => {
                    base.fill(0);
                    (0, None)
                }
            };
            counts.fill(0);
            let (now_resets, buckets) = source.buckets_and_resets();
            if now_resets != resets {
                // Reset behind the window's back since the checkpoint was
                // chosen: everything the source holds is newer.
                base.fill(0);
                (base_sum, since) = (0, None);
            }
            for (value, n) in buckets {
                let i = self.layout.index_for(value);
                counts[i] = counts[i].wrapping_add(n as u32);
            }
            (source.sum().wrapping_sub(base_sum), since)
        });
        let counts: Vec<u64> = counts
            .iter()
            .zip(&base)
            .map(|(c, b)| u64::from(c.wrapping_sub(*b)))
            .collect();
        let count = counts.iter().sum();
        (
            counts,
            WindowTotals {
                count,
                sum,
                since_ns,
            },
        )
    }

    /// Count and exact sum of the window ending at `now_ns`.
    pub fn totals(&self, now_ns: u64, source: &LatencyHistogram) -> WindowTotals {
        self.counts(now_ns, source).1
    }

    /// Bytes the checkpoints occupy.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.checkpoints.len()
                * (core::mem::size_of::<Checkpoint>()
                    + self.layout.counts_len() * core::mem::size_of::<AtomicU32>())
    }

    /// The window ending at `now_ns` as an `hdrhistogram::Histogram` of the
    /// window's layout.
    #[cfg(feature = "std")]
    pub fn snapshot(&self, now_ns: u64, source: &LatencyHistogram) -> hdrhistogram::Histogram<u64> {
        self.snapshot_with_totals(now_ns, source).0
    }

    /// [`snapshot`](Self::snapshot) and [`totals`](Self::totals) in one pass.
    #[cfg(feature = "std")]
    pub fn snapshot_with_totals(
        &self,
        now_ns: u64,
        source: &LatencyHistogram,
    ) -> (hdrhistogram::Histogram<u64>, WindowTotals) {
        let mut h = crate::latency_histogram::new_hdr(&self.layout);
        let (counts, totals) = self.counts(now_ns, source);
        for (i, n) in counts.into_iter().enumerate().filter(|&(_, n)| n > 0) {
            h.saturating_record_n(self.layout.value_for(i), n);
        }
        (h, totals)
    }
}

impl core::fmt::Debug for RecentWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecentWindow")
            .field("interval_ns", &self.interval_ns)
            .field("slots", &self.checkpoints.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn fine() -> LatencyHistogram {
        LatencyHistogram::new(HistogramLayout::new(1, 1_000_000, 2).unwrap())
    }

    fn cs(t: WindowTotals) -> (u64, u64) {
        (t.count, t.sum)
    }

    fn window(slots: usize) -> RecentWindow {
        RecentWindow::new(HistogramLayout::new(1, 1_000_000, 1).unwrap(), 10, slots)
    }

    #[test]
    fn old_intervals_leave_the_window() {
        let h = fine();
        let w = window(4);
        w.rotate(0, &h); // checkpoint of epoch 0: empty
        h.record(100);
        w.rotate(15, &h); // epoch 1
        h.record(200);
        w.rotate(35, &h); // epoch 3
        h.record(300);
        assert_eq!(cs(w.totals(35, &h)), (3, 600));
        // Epoch 4: the window starts at epoch 1's checkpoint (after 100).
        assert_eq!(cs(w.totals(45, &h)), (2, 500));
        w.rotate(45, &h); // overwrites epoch 0's slot
        h.record(50);
        assert_eq!(cs(w.totals(45, &h)), (3, 550));
        // Epoch 6: the oldest checkpoint in the window is epoch 3's.
        assert_eq!(cs(w.totals(60, &h)), (2, 350));
        // It starts where epoch 3's checkpoint was taken.
        assert_eq!(w.totals(60, &h).since_ns, Some(35));
        let snap = w.snapshot(60, &h);
        assert_eq!(snap.len(), 2);
        assert!(snap.max() >= 300);
    }

    #[test]
    fn another_histogram_or_a_reset_behind_its_back_never_gives_garbage() {
        let (h, other) = (fine(), fine());
        let w = window(4);
        w.rotate(0, &h);
        h.record(100);
        w.rotate(15, &h);
        h.record(200);
        other.record(7);
        // Against a histogram it never took a checkpoint of: that one's
        // own count, not a difference (was 4,294,967,295).
        assert_eq!(cs(w.totals(15, &other)), (1, 7));
        // The source reset directly, not through the window: everything
        // since the reset (was 4,294,967,294).
        h.reset();
        h.record(50);
        assert_eq!(cs(w.totals(15, &h)), (1, 50));
        // The next rotation starts again from the empty state.
        w.rotate(25, &h);
        h.record(60);
        assert_eq!(cs(w.totals(25, &h)), (2, 110));
    }

    #[test]
    fn without_checkpoints_the_window_is_everything() {
        let h = fine();
        let w = window(2);
        h.record(9);
        assert_eq!(w.totals(1_000, &h).count, 1);
    }

    #[test]
    fn the_first_checkpoint_is_the_empty_state() {
        let h = fine();
        let w = window(4);
        h.record(1);
        w.rotate(5, &h); // first ever: records before it stay in the window
        h.record(2);
        assert_eq!(cs(w.totals(5, &h)), (2, 3));
        w.reset(&h);
        assert_eq!(h.count(), 0);
        h.record(4);
        w.rotate(15, &h);
        assert_eq!(cs(w.totals(15, &h)), (1, 4));
    }

    #[test]
    fn rotation_is_once_per_interval() {
        let h = fine();
        let w = window(4);
        w.rotate(0, &h);
        h.record(1);
        w.rotate(5, &h); // same epoch: the checkpoint keeps the empty state
        assert_eq!(w.totals(5, &h).count, 1);
    }

    #[test]
    fn epoch_matches_division_within_one_near_boundaries() {
        const I: u64 = 300_000_000_000;
        let w = RecentWindow::new(HistogramLayout::new(1, 1_000_000, 1).unwrap(), I, 4);
        let check = |now: u64| {
            let exact = now / I;
            let e = w.epoch(now);
            // Over by one only within `now * I / 2^64` ns of the next boundary.
            let slack = (now as f64 / 18_446_744_073_709_551_616.0) * I as f64 + 1.0;
            let to_boundary = ((exact as u128 + 1) * I as u128 - now as u128) as f64;
            assert!(
                e == exact || (e == exact + 1 && to_boundary <= slack),
                "{now}: {e} vs {exact}"
            );
        };
        for now in [
            0u64,
            1,
            I - 1,
            I,
            I + 1,
            1 << 40,
            1 << 62,
            u64::MAX - 1,
            u64::MAX,
        ] {
            check(now);
        }
        for now in (0..100_000_000_000_000u64).step_by(7_777_777_777) {
            check(now);
        }
    }

    #[test]
    fn extremes_do_not_panic() {
        let h = fine();
        let w = RecentWindow::new(HistogramLayout::new(1, 2, 0).unwrap(), 0, 0);
        assert_eq!(w.interval_ns(), 2);
        h.record(u64::MAX);
        w.rotate(u64::MAX, &h);
        w.rotate(0, &h);
        h.record(0);
        // The first checkpoint (at u64::MAX) is the empty state.
        assert_eq!(w.totals(u64::MAX, &h).count, 2);
        assert_eq!(w.snapshot(u64::MAX, &h).len(), 2);
    }
}
