//! A log-linear latency histogram kept in atomic counters.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::layout::HistogramLayout;
use crate::stripe::{LinePadded, STRIPES};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// An atomic counter a histogram can keep its buckets in.
pub trait Counter: Send + Sync {
    /// A zeroed counter.
    fn zero() -> Self;
    /// Adds one (relaxed). A `u32` counter wraps past `u32::MAX`.
    fn increment(&self);
    /// Reads the counter (relaxed).
    fn get(&self) -> u64;
    /// Sets it back to zero (relaxed). A `swap`, not a `store`: every
    /// write to a counter is then a read-modify-write, which keeps loom
    /// exact (it can misorder a plain store racing an RMW, tokio-rs/loom
    /// #282 and #389); on a cold path the difference costs nothing.
    fn reset(&self);
}

impl Counter for AtomicU64 {
    #[inline]
    fn zero() -> Self {
        AtomicU64::new(0)
    }
    #[inline]
    fn increment(&self) {
        self.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    fn get(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
    #[inline]
    fn reset(&self) {
        self.swap(0, Ordering::Relaxed);
    }
}

impl Counter for AtomicU32 {
    #[inline]
    fn zero() -> Self {
        AtomicU32::new(0)
    }
    #[inline]
    fn increment(&self) {
        self.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    fn get(&self) -> u64 {
        u64::from(self.load(Ordering::Relaxed))
    }
    #[inline]
    fn reset(&self) {
        self.swap(0, Ordering::Relaxed);
    }
}

/// HdrHistogram's bucket layout in atomic counters, plus an exact sum and max.
///
/// Recording is an index computation, one relaxed increment, one relaxed
/// add to the sum and a relaxed load of the max (a `fetch_max` only when the
/// value is a new maximum). Values above the layout's highest trackable
/// value saturate into the last counter; the max still records them exactly.
/// The count is the sum of the counters, so it always agrees with them.
///
/// # Examples
///
/// ```
/// use starpunk_perf::{HistogramLayout, LatencyHistogram};
///
/// let h: LatencyHistogram = LatencyHistogram::new(HistogramLayout::new(1, 1_000_000, 2).unwrap());
/// h.record(100);
/// h.record(5_000_000); // saturates, never fails
/// assert_eq!(h.count(), 2);
/// assert_eq!(h.max(), 5_000_000);
/// ```
pub struct LatencyHistogram<C: Counter = AtomicU64> {
    layout: HistogramLayout,
    /// `counts.len() == layout.counts_len()`.
    counts: Box<[C]>,
    /// Sum of recorded values, one per stripe so concurrent writers do not
    /// share its line; wrapping (a u64 of nanoseconds holds 584 years).
    sums: [LinePadded<AtomicU64>; STRIPES],
    /// Largest recorded value, exact (not saturated).
    max: AtomicU64,
}

impl<C: Counter> LatencyHistogram<C> {
    /// An empty histogram of `layout`.
    pub fn new(layout: HistogramLayout) -> Self {
        let mut counts = Vec::with_capacity(layout.counts_len());
        counts.resize_with(layout.counts_len(), C::zero);
        Self {
            layout,
            counts: counts.into_boxed_slice(),
            sums: core::array::from_fn(|_| LinePadded(AtomicU64::new(0))),
            max: AtomicU64::new(0),
        }
    }

    /// Its layout.
    pub fn layout(&self) -> &HistogramLayout {
        &self.layout
    }

    /// Records `value`. Never allocates, locks or panics.
    #[inline]
    pub fn record(&self, value: u64) {
        self.record_striped(0, value);
    }

    /// Records `value`, adding it to the sum of `stripe % STRIPES` (see
    /// [`stripe`](crate::stripe)). Never allocates, locks or panics.
    #[inline]
    pub fn record_striped(&self, stripe: usize, value: u64) {
        self.record_bucket(value);
        self.sums[stripe % STRIPES].fetch_add(value, Ordering::Relaxed);
    }

    /// Records `value` in the counters and the max, leaving the sum alone.
    #[inline]
    pub fn record_bucket(&self, value: u64) {
        if let Some(c) = self.counts.get(self.layout.index_for(value)) {
            c.increment();
        }
        if value > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(value, Ordering::Relaxed);
        }
    }

    /// Values recorded: the sum of all counters.
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .map(Counter::get)
            .fold(0, u64::wrapping_add)
    }

    /// Sum of values recorded with [`record`](Self::record) (wrapping).
    pub fn sum(&self) -> u64 {
        self.sums
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Largest value recorded, or 0.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// Non-zero counters as `(lowest value of the bucket, count)`, in value order.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.get()))
            .filter(|&(_, n)| n > 0)
            .map(|(i, n)| (self.layout.value_for(i), n))
    }

    /// Zeroes every counter, the sum and the max. Records that race with a
    /// reset may land on either side of it.
    pub fn reset(&self) {
        for c in self.counts.iter() {
            c.reset();
        }
        for s in self.sums.iter() {
            s.swap(0, Ordering::Relaxed);
        }
        self.max.swap(0, Ordering::Relaxed);
    }

    /// Heap and inline bytes of this histogram.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>() + core::mem::size_of_val(&*self.counts)
    }

    /// Adds this histogram's counts into `target`, an `hdrhistogram`
    /// histogram built with the same layout; values saturate there too.
    #[cfg(feature = "std")]
    pub fn add_to(&self, target: &mut hdrhistogram::Histogram<u64>) {
        for (value, n) in self.buckets() {
            target.saturating_record_n(value, n);
        }
    }

    /// A snapshot as an `hdrhistogram::Histogram` of the same layout, so
    /// percentiles come from hdrhistogram itself.
    #[cfg(feature = "std")]
    pub fn snapshot(&self) -> hdrhistogram::Histogram<u64> {
        let mut h = new_hdr(&self.layout);
        self.add_to(&mut h);
        h
    }
}

/// An empty `hdrhistogram::Histogram` with `layout`'s bounds.
#[cfg(feature = "std")]
pub fn new_hdr(layout: &HistogramLayout) -> hdrhistogram::Histogram<u64> {
    let mut h = hdrhistogram::Histogram::new_with_bounds(
        layout.lowest_discernible(),
        layout.highest_trackable(),
        layout.significant_figures(),
    )
    // The layout's constructor checks exactly what hdrhistogram checks.
    .expect("HistogramLayout parameters are valid for hdrhistogram");
    h.auto(false);
    h
}

impl<C: Counter> core::fmt::Debug for LatencyHistogram<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .field("max", &self.max())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout() -> HistogramLayout {
        HistogramLayout::new(1000, 16_777_216_000, 2).unwrap()
    }

    #[test]
    fn sum_max_count_and_saturation() {
        let h: LatencyHistogram = LatencyHistogram::new(layout());
        for v in [0, 1, 1500, u64::MAX] {
            h.record(v);
        }
        assert_eq!(h.count(), 4);
        assert_eq!(h.max(), u64::MAX);
        assert_eq!(h.sum(), 1501u64.wrapping_add(u64::MAX));
        let top = h.buckets().last().unwrap().0;
        assert_eq!(top, layout().value_for(layout().index_for(u64::MAX)));
        h.reset();
        assert_eq!((h.count(), h.max(), h.sum()), (0, 0, 0));
    }

    #[test]
    fn u32_counters_work_the_same() {
        let h: LatencyHistogram<AtomicU32> = LatencyHistogram::new(layout());
        h.record_bucket(10_000);
        h.record_bucket(10_000);
        assert_eq!(
            h.buckets().collect::<Vec<_>>(),
            [(layout().value_for(layout().index_for(10_000)), 2)]
        );
        assert_eq!(h.sum(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn snapshot_quantiles_equal_hdrhistograms(
            values in proptest::collection::vec((0u32..40, any::<u64>()), 1..2000),
            sig in 1u8..=3,
        ) {
            let layout = HistogramLayout::new(1000, 16_777_216_000, sig).unwrap();
            let ours: LatencyHistogram = LatencyHistogram::new(layout);
            let mut theirs = new_hdr(&layout);
            for &(exp, r) in &values {
                // Roughly log-uniform values, some past the highest trackable.
                let v = r >> (64 - exp.min(63) - 1);
                ours.record(v);
                theirs.saturating_record(v);
            }
            let snap = ours.snapshot();
            prop_assert_eq!(snap.len(), theirs.len());
            for q in [0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
                prop_assert_eq!(snap.value_at_quantile(q), theirs.value_at_quantile(q));
            }
            prop_assert_eq!(snap.max(), theirs.max());
        }
    }
}
