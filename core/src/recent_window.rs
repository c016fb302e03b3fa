//! "The last 15 minutes" in bounded memory: rotating interval histograms.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::latency_histogram::LatencyHistogram;
use crate::layout::HistogramLayout;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// One interval: the epoch it holds and its histogram.
struct Interval {
    /// `epoch + 1` of the interval the counters belong to; 0 = never used.
    tag: AtomicU64,
    /// `u32` counters: one interval would need 2^32 records in a single
    /// bucket to wrap, far beyond what one process serves in minutes.
    histogram: LatencyHistogram<AtomicU32>,
}

/// A sliding window made of `slots` intervals of `interval_ns` each.
///
/// As HdrHistogram's interval recorders do, writers record into the interval
/// of the current epoch (`now / interval_ns`). The first writer of a new
/// epoch claims the slot with a compare-exchange on its tag and zeroes it;
/// records that race with that zeroing may be lost, which a trend view can
/// bear. A reader sums the intervals whose epochs lie in the window, so the
/// window covers the last `(slots - 1) * interval_ns` plus the part of the
/// current interval that has elapsed. At the defaults (4 slots of 5 minutes)
/// that is the last 15 minutes plus the elapsed part of the current 5.
///
/// # Examples
///
/// ```
/// use starpunk_perf::{HistogramLayout, RecentWindow};
///
/// // 4 intervals of 60 ns: the window at time t holds epochs t/60 - 3 ..= t/60.
/// let w = RecentWindow::new(HistogramLayout::new(1, 1000, 1).unwrap(), 60, 4);
/// w.record(0, 5);
/// w.record(200, 7);
/// assert_eq!(w.count(200), 2);
/// assert_eq!(w.count(250), 1); // epoch 4: the record at time 0 has left
///
/// ```
pub struct RecentWindow {
    interval_ns: u64,
    /// `ceil(2^64 / interval_ns)`: the epoch is a multiply-high, not a
    /// division (a 64-bit `div` costs more than the rest of a record).
    reciprocal: u64,
    /// `intervals.len() - 1`; the length is a power of two.
    mask: u64,
    intervals: Box<[Interval]>,
}

impl RecentWindow {
    /// A window of `slots` intervals of `interval_ns` each. `slots` is
    /// rounded up to a power of two (at least 2), `interval_ns` raised to at
    /// least 2.
    pub fn new(layout: HistogramLayout, interval_ns: u64, slots: usize) -> Self {
        let slots = slots.clamp(2, 1 << 16).next_power_of_two();
        let interval_ns = interval_ns.max(2);
        let mut intervals = Vec::with_capacity(slots);
        intervals.resize_with(slots, || Interval {
            tag: AtomicU64::new(0),
            histogram: LatencyHistogram::new(layout),
        });
        Self {
            interval_ns,
            reciprocal: u64::MAX / interval_ns + 1,
            mask: slots as u64 - 1,
            intervals: intervals.into_boxed_slice(),
        }
    }

    /// `now_ns / interval_ns`, give or take one right at a boundary: the
    /// multiply-high over-estimates the quotient by less than
    /// `now_ns / 2^64 < 1`.
    #[inline]
    fn epoch(&self, now_ns: u64) -> u64 {
        ((u128::from(now_ns) * u128::from(self.reciprocal)) >> 64) as u64
    }

    /// Length of one interval.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// The span the window covers, not counting the current interval.
    pub fn span_ns(&self) -> u64 {
        self.interval_ns
            .saturating_mul(self.intervals.len() as u64 - 1)
    }

    /// Records `value` at time `now_ns`. Never allocates, locks or panics.
    #[inline]
    pub fn record(&self, now_ns: u64, value: u64) {
        let epoch = self.epoch(now_ns);
        let want = epoch.saturating_add(1);
        let slot = (epoch & self.mask) as usize;
        let Some(interval) = self.intervals.get(slot) else {
            return;
        };
        let tag = interval.tag.load(Ordering::Acquire);
        if tag != want {
            if tag > want {
                // A writer stalled past its interval's end: too old to count.
                return;
            }
            if interval
                .tag
                .compare_exchange(tag, want, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                interval.histogram.reset();
            }
        }
        interval.histogram.record_bucket(value);
    }

    fn live(&self, now_ns: u64) -> impl Iterator<Item = &LatencyHistogram<AtomicU32>> {
        let now_tag = self.epoch(now_ns).saturating_add(1);
        let oldest_tag = now_tag.saturating_sub(self.intervals.len() as u64 - 1);
        self.intervals.iter().filter_map(move |i| {
            let tag = i.tag.load(Ordering::Acquire);
            (tag >= oldest_tag && tag <= now_tag && tag != 0).then_some(&i.histogram)
        })
    }

    /// Values recorded in the window that ends at `now_ns`.
    pub fn count(&self, now_ns: u64) -> u64 {
        self.live(now_ns).map(|h| h.count()).sum()
    }

    /// The largest value recorded in the window's intervals.
    pub fn max(&self, now_ns: u64) -> u64 {
        self.live(now_ns).map(|h| h.max()).max().unwrap_or(0)
    }

    /// Heap and inline bytes.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self
                .intervals
                .iter()
                .map(|i| i.histogram.memory_bytes() + core::mem::size_of::<AtomicU64>())
                .sum::<usize>()
    }

    /// The window ending at `now_ns` as one `hdrhistogram::Histogram`.
    #[cfg(feature = "std")]
    pub fn snapshot(&self, now_ns: u64) -> hdrhistogram::Histogram<u64> {
        let layout = *self.intervals[0].histogram.layout();
        let mut h = crate::latency_histogram::new_hdr(&layout);
        for interval in self.live(now_ns) {
            for (value, n) in interval.buckets() {
                h.saturating_record_n(value, n);
            }
        }
        h
    }
}

impl core::fmt::Debug for RecentWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecentWindow")
            .field("interval_ns", &self.interval_ns)
            .field("slots", &self.intervals.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn window() -> RecentWindow {
        RecentWindow::new(HistogramLayout::new(1, 1_000_000, 1).unwrap(), 10, 3)
    }

    #[test]
    fn old_intervals_leave_the_window() {
        let w = window();
        w.record(0, 100); // epoch 0
        w.record(15, 200); // epoch 1
        w.record(35, 300); // epoch 3
        assert_eq!(w.count(35), 3);
        assert_eq!(w.max(35), 300);
        // At t = 45 (epoch 4) the window holds epochs 1..=4.
        assert_eq!(w.count(45), 2);
        // Epoch 4 reuses slot 0 and clears the epoch 0 record.
        w.record(41, 50);
        assert_eq!(w.count(45), 3);
        assert_eq!(w.max(45), 300);
        // Far in the future nothing is left.
        assert_eq!(w.count(10_000), 0);
        assert_eq!(w.max(10_000), 0);
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
    fn stalled_writer_is_ignored() {
        let w = window();
        w.record(41, 1); // epoch 4 in slot 0
        w.record(1, 2); // epoch 0 also maps to slot 0: too old
        assert_eq!(w.count(41), 1);
    }

    #[test]
    fn extremes_do_not_panic() {
        let w = RecentWindow::new(HistogramLayout::new(1, 2, 0).unwrap(), 0, 0);
        assert_eq!(w.interval_ns(), 2);
        w.record(u64::MAX, u64::MAX);
        w.record(0, 0);
        assert_eq!(w.count(u64::MAX), 1);
        assert_eq!(w.snapshot(u64::MAX).len(), 1);
    }
}
