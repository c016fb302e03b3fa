//! A log-linear latency histogram kept in atomic counters.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::layout::HistogramLayout;
use crate::stripe::{LinePadded, STRIPES};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Copies of the bucket counters: a thread records into copy
/// `stripe % COUNT_STRIPES`, so two busy threads on different stripes never
/// write the same counter line (the reason the histogram stopped scaling
/// with cores: docs/PERFORMANCE.md, "Contention"). Two copies of `u32`
/// counters take the bytes one copy of `u64` took.
#[cfg(not(loom))]
pub const COUNT_STRIPES: usize = 2;
/// One copy under loom: the copies are independent relaxed counters whose
/// sum every reader takes, so one copy exercises the same protocol, and a
/// second one multiplied the models' schedules past the CI's time (the
/// copies' index maths and carries are unit-tested).
#[cfg(loom)]
pub const COUNT_STRIPES: usize = 1;

/// Buckets whose `u32` counter may wrap per histogram (each wrap of a
/// stripe's counter carries 2^32 into the bucket's slot here). One under
/// loom, where no counter can wrap: fewer atomics for the models to explore.
#[cfg(not(loom))]
pub const CARRY_SLOTS: usize = 8;
/// See above.
#[cfg(loom)]
pub const CARRY_SLOTS: usize = 1;

/// Counters per 64-byte line.
const PER_LINE: usize = 16;

/// Sixteen bucket counters on their own cache line.
#[repr(align(64))]
struct CountLine([AtomicU32; PER_LINE]);

/// A carry slot: the bucket's index plus one in the high 24 bits (0 = free),
/// the number of 2^32 carries in the low 40.
const CARRY_SHIFT: u32 = 40;
const CARRY_MASK: u64 = (1 << CARRY_SHIFT) - 1;

/// HdrHistogram's bucket layout in atomic counters, plus an exact sum and max.
///
/// Recording is an index computation, one relaxed increment of the
/// caller's stripe's counter, one relaxed add to the stripe's sum and a
/// relaxed load of the max (a `fetch_max` only when the value is a new
/// maximum). A bucket's count is the sum of its [`COUNT_STRIPES`] `u32`
/// counters plus 2^32 per carry: the increment that wraps a counter (it
/// returned `u32::MAX`, once in four billion records of a bucket and stripe)
/// takes a slot of [`CARRY_SLOTS`] for the bucket and adds one there. Should
/// more buckets than that ever wrap, the extra ones stay at `u32::MAX` per
/// stripe (saturate) instead of wrapping. Values above the layout's highest
/// trackable value saturate into the last bucket; the max still records
/// them exactly. The count is the sum of the buckets, so it always agrees
/// with them.
///
/// # Examples
///
/// ```
/// use starpunk_perf::{HistogramLayout, LatencyHistogram};
///
/// let h = LatencyHistogram::new(HistogramLayout::new(1, 1_000_000, 2).unwrap());
/// h.record(100);
/// h.record(5_000_000); // saturates, never fails
/// assert_eq!(h.count(), 2);
/// assert_eq!(h.max(), 5_000_000);
/// ```
pub struct LatencyHistogram {
    layout: HistogramLayout,
    /// Lines per stripe: `layout.counts_len()` counters rounded up to lines.
    stride: usize,
    /// Stripe `s`'s counter of bucket `i` is counter `i % 16` of line
    /// `s * stride + i / 16`: each stripe's counters start on their own
    /// line. `lines.len() == COUNT_STRIPES * stride`.
    lines: Box<[CountLine]>,
    /// Carries of wrapped counters; see the type's documentation.
    carries: LinePadded<[AtomicU64; CARRY_SLOTS]>,
    /// Sum of recorded values, one per stripe so concurrent writers do not
    /// share its line; wrapping (a u64 of nanoseconds holds 584 years).
    sums: [LinePadded<AtomicU64>; STRIPES],
    /// Largest recorded value, exact (not saturated).
    max: AtomicU64,
}

/// The carries of one read: `(bucket index, carries)` of the used slots.
struct Carries {
    slots: [(usize, u64); CARRY_SLOTS],
    used: usize,
}

impl Carries {
    /// Records carried into bucket `index`.
    #[inline]
    fn of(&self, index: usize) -> u64 {
        Self::sum(self.slots[..self.used].iter().filter(|&&(i, _)| i == index))
    }

    /// Records carried into every bucket.
    fn total(&self) -> u64 {
        Self::sum(self.slots[..self.used].iter())
    }

    fn sum<'a>(slots: impl Iterator<Item = &'a (usize, u64)>) -> u64 {
        slots.fold(0, |n, &(_, c)| n.wrapping_add(c << 32))
    }
}

impl LatencyHistogram {
    /// An empty histogram of `layout`.
    pub fn new(layout: HistogramLayout) -> Self {
        let stride = layout.counts_len().div_ceil(PER_LINE);
        let mut lines = Vec::with_capacity(COUNT_STRIPES * stride);
        lines.resize_with(COUNT_STRIPES * stride, || {
            CountLine(core::array::from_fn(|_| AtomicU32::new(0)))
        });
        Self {
            layout,
            stride,
            lines: lines.into_boxed_slice(),
            carries: LinePadded(core::array::from_fn(|_| AtomicU64::new(0))),
            sums: core::array::from_fn(|_| LinePadded(AtomicU64::new(0))),
            max: AtomicU64::new(0),
        }
    }

    /// Its layout.
    pub fn layout(&self) -> &HistogramLayout {
        &self.layout
    }

    /// Stripe `stripe`'s counter of bucket `index` (`index < counts_len`).
    #[inline]
    fn counter(&self, stripe: usize, index: usize) -> Option<&AtomicU32> {
        let line = self.lines.get(stripe * self.stride + index / PER_LINE)?;
        Some(&line.0[index % PER_LINE])
    }

    /// Records `value` in the calling thread's [`stripe`](crate::stripe()).
    /// Never allocates, locks or panics.
    #[inline]
    pub fn record(&self, value: u64) {
        self.record_striped(crate::stripe::stripe(), value);
    }

    /// Records `value` in the counters of `stripe % COUNT_STRIPES` and the
    /// sum of `stripe % STRIPES` (see [`stripe`](crate::stripe())). Never
    /// allocates, locks or panics.
    #[inline]
    pub fn record_striped(&self, stripe: usize, value: u64) {
        let index = self.layout.index_for(value);
        if index < self.layout.counts_len() {
            if let Some(c) = self.counter(stripe % COUNT_STRIPES, index) {
                if c.fetch_add(1, Ordering::Relaxed) == u32::MAX {
                    self.carry(c, index);
                }
            }
        }
        self.sums[stripe % STRIPES].fetch_add(value, Ordering::Relaxed);
        if value > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(value, Ordering::Relaxed);
        }
    }

    /// `counter` (of bucket `index`) just wrapped: carry 2^32 into the
    /// bucket's slot, or, with every slot taken by other buckets, put the
    /// counter back at `u32::MAX` (saturate).
    #[cold]
    #[inline(never)]
    fn carry(&self, counter: &AtomicU32, index: usize) {
        let key = (index as u64 + 1) << CARRY_SHIFT;
        for slot in self.carries.iter() {
            let mut current = slot.load(Ordering::Relaxed);
            loop {
                // Free: claim it. The bucket's own: add one, but only while
                // it still is (a `reset` may zero the slot meanwhile; a
                // plain add would then leave a carry with no bucket).
                let next = if current == 0 {
                    key | 1
                } else if current & !CARRY_MASK == key {
                    current + 1
                } else {
                    break;
                };
                match slot.compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return,
                    Err(actual) => current = actual,
                }
            }
        }
        counter.swap(u32::MAX, Ordering::Relaxed);
    }

    /// Every bucket counter of every stripe, without the lines' padding.
    fn counters(&self) -> impl Iterator<Item = &AtomicU32> + '_ {
        (0..COUNT_STRIPES).flat_map(move |s| {
            (0..self.layout.counts_len()).filter_map(move |i| self.counter(s, i))
        })
    }

    /// The used carry slots, loaded once for a read.
    fn load_carries(&self) -> Carries {
        let mut carries = Carries {
            slots: [(0, 0); CARRY_SLOTS],
            used: 0,
        };
        for slot in self.carries.iter() {
            let v = slot.load(Ordering::Relaxed);
            // Index bits 0: a free slot (never a carry: see `carry`).
            if let Some(index) = (v >> CARRY_SHIFT).checked_sub(1) {
                carries.slots[carries.used] = (index as usize, v & CARRY_MASK);
                carries.used += 1;
            }
        }
        carries
    }

    /// The count of bucket `index`: its stripes' counters plus its carries.
    #[inline]
    fn bucket_count(&self, index: usize, carries: &Carries) -> u64 {
        (0..COUNT_STRIPES)
            .filter_map(|s| self.counter(s, index))
            .map(|c| u64::from(c.load(Ordering::Relaxed)))
            .fold(carries.of(index), u64::wrapping_add)
    }

    /// Values recorded: the sum of all buckets.
    pub fn count(&self) -> u64 {
        let carried = self.load_carries().total();
        self.counters()
            .map(|c| u64::from(c.load(Ordering::Relaxed)))
            .fold(carried, u64::wrapping_add)
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

    /// Non-zero buckets as `(lowest value of the bucket, count)`, in value order.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let carries = self.load_carries();
        (0..self.layout.counts_len())
            .map(move |i| (i, self.bucket_count(i, &carries)))
            .filter(|&(_, n)| n > 0)
            .map(|(i, n)| (self.layout.value_for(i), n))
    }

    /// Zeroes every counter, carry, the sum and the max. Records that race
    /// with a reset may land on either side of it. Swaps, not stores: every
    /// write to a counter is then a read-modify-write, which keeps loom
    /// exact (it can misorder a plain store racing an RMW, tokio-rs/loom
    /// #282 and #389); on a cold path the difference costs nothing.
    pub fn reset(&self) {
        for c in self.counters() {
            c.swap(0, Ordering::Relaxed);
        }
        for c in self.carries.iter() {
            c.swap(0, Ordering::Relaxed);
        }
        for s in self.sums.iter() {
            s.swap(0, Ordering::Relaxed);
        }
        self.max.swap(0, Ordering::Relaxed);
    }

    /// Heap and inline bytes of this histogram.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>() + core::mem::size_of_val(&*self.lines)
    }

    /// Adds this histogram's counts into `target`, an `hdrhistogram`
    /// histogram built with the same layout; values saturate there too.
    ///
    /// A bucket stands for its lowest value, except the first: its lowest
    /// value is 0, and hdrhistogram reports a max of 0 (not the bucket's
    /// highest equivalent) when nothing above 0 was recorded. The first
    /// bucket is therefore recorded as the exact max while the max lies in
    /// it, so a histogram of small values (say 1 to 511 ns with a unit of
    /// 512 ns) keeps the max hdrhistogram itself would report.
    #[cfg(feature = "std")]
    pub fn add_to(&self, target: &mut hdrhistogram::Histogram<u64>) {
        let first = self.layout.highest_value_for(0).min(self.max());
        for (value, n) in self.buckets() {
            let value = if value == 0 { first } else { value };
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

impl core::fmt::Debug for LatencyHistogram {
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
        let h = LatencyHistogram::new(layout());
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
    fn stripes_add_up_per_bucket() {
        let h = LatencyHistogram::new(layout());
        h.record_striped(0, 10_000);
        h.record_striped(1, 10_000);
        h.record_striped(2, 10_000); // stripe 2 counts in copy 0
        h.record_striped(3, 20_000);
        let at = |v| layout().value_for(layout().index_for(v));
        assert_eq!(
            h.buckets().collect::<Vec<_>>(),
            [(at(10_000), 3), (at(20_000), 1)]
        );
        assert_eq!((h.count(), h.sum()), (4, 50_000));
        let i = layout().index_for(10_000);
        let per_stripe: Vec<u64> = (0..COUNT_STRIPES)
            .map(|s| u64::from(h.counter(s, i).unwrap().load(Ordering::Relaxed)))
            .collect();
        assert_eq!(per_stripe, [2, 1]);
        // Each stripe's counters start on a line of their own.
        let line = |s: usize| h.counter(s, 0).unwrap() as *const AtomicU32 as usize;
        assert_eq!(line(0) % 64, 0);
        assert_eq!(line(1) % 64, 0);
        assert!(line(1) - line(0) >= layout().counts_len() * 4);
    }

    #[test]
    fn a_wrapping_counter_carries_and_counts_stay_exact() {
        let h = LatencyHistogram::new(layout());
        let i = layout().index_for(10_000);
        h.counter(1, i)
            .unwrap()
            .store(u32::MAX - 1, Ordering::Relaxed);
        h.record_striped(0, 10_000);
        h.record_striped(1, 10_000); // reaches u32::MAX
        h.record_striped(1, 10_000); // wraps: carries 2^32
        h.record_striped(1, 10_000);
        let expected = u64::from(u32::MAX) - 1 + 4;
        assert_eq!(h.count(), expected);
        assert_eq!(h.buckets().map(|(_, n)| n).collect::<Vec<_>>(), [expected]);
        assert_eq!(h.snapshot().len(), expected);
        h.reset();
        assert_eq!(h.count(), 0);
        assert_eq!(h.buckets().count(), 0);
    }

    #[test]
    fn past_the_carry_slots_a_counter_saturates_instead_of_wrapping() {
        let h = LatencyHistogram::new(layout());
        // CARRY_SLOTS + 1 buckets wrap, one after another.
        let values: Vec<u64> = (0..=CARRY_SLOTS as u64).map(|k| 10_000 << k).collect();
        for &v in &values {
            let i = layout().index_for(v);
            h.counter(0, i).unwrap().store(u32::MAX, Ordering::Relaxed);
            h.record_striped(0, v);
            h.record_striped(0, v);
        }
        let counts: Vec<u64> = h.buckets().map(|(_, n)| n).collect();
        let carried = u64::from(u32::MAX) + 2;
        let mut expected = alloc::vec![carried; CARRY_SLOTS];
        expected.push(u64::from(u32::MAX));
        assert_eq!(counts, expected);
        assert_eq!(h.count(), expected.iter().sum::<u64>());
    }

    #[test]
    fn values_below_the_unit_keep_hdrhistograms_max() {
        // With a 512 ns unit, 0 and 1..=511 share the first bucket;
        // hdrhistogram's max is 0 after only zeros and 511 after a 1.
        let layout = HistogramLayout::new(1000, 16_777_216_000, 1).unwrap();
        for values in [&[0u64][..], &[1], &[0, 1], &[300, 0], &[0, 5_000]] {
            let ours = LatencyHistogram::new(layout);
            let mut theirs = new_hdr(&layout);
            for &v in values {
                ours.record(v);
                theirs.record(v).unwrap();
            }
            let snap = ours.snapshot();
            assert_eq!(snap.max(), theirs.max(), "values {values:?}");
            assert_eq!(snap.min(), theirs.min(), "values {values:?}");
            assert_eq!(snap.len(), theirs.len(), "values {values:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn snapshot_quantiles_equal_hdrhistograms(
            values in proptest::collection::vec((0u32..40, any::<u64>()), 1..2000),
            sig in 1u8..=3,
        ) {
            let layout = HistogramLayout::new(1000, 16_777_216_000, sig).unwrap();
            let ours = LatencyHistogram::new(layout);
            let mut theirs = new_hdr(&layout);
            for &(exp, r) in &values {
                // Roughly log-uniform values, some past the highest trackable.
                let v = r >> (64 - exp.min(63) - 1);
                ours.record_striped(exp as usize, v);
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
