//! A log-linear latency histogram kept in atomic counters.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::layout::HistogramLayout;
use crate::stripe::{LinePadded, STRIPES};
use crate::sync::{fence, spin_loop, AtomicU32, AtomicU64, Ordering};

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

/// Buckets whose counters may be carried per histogram (see the type's
/// documentation). Seven, so the slots and the adjustment word share one
/// 64-byte line. One under loom: fewer atomics for the models to explore,
/// and a second bucket that needs a slot then finds none (saturation).
#[cfg(not(loom))]
pub const CARRY_SLOTS: usize = 7;
/// See above.
#[cfg(loom)]
pub const CARRY_SLOTS: usize = 1;

/// The value at which a stripe's counter is carried: the record whose
/// increment takes it there moves `CARRY_AT` records into the bucket's
/// carry slot. Half the `u32` range, so a counter waiting for its carry
/// still has `2^31` increments of room before it could wrap. 2 under loom,
/// so the models' few records reach it.
#[cfg(not(loom))]
const CARRY_AT: u32 = 1 << 31;
#[cfg(loom)]
const CARRY_AT: u32 = 2;
/// A saturated counter (its bucket found no carry slot) is pulled back by
/// this much when an increment takes it to `CARRY_AT + PULL_BACK`, so it
/// stays within `CARRY_AT..CARRY_AT + PULL_BACK` and never wraps; readers
/// count it as `CARRY_AT` throughout.
const PULL_BACK: u32 = CARRY_AT / 2;

/// Counters per 64-byte line.
const PER_LINE: usize = 16;

/// Sixteen bucket counters on their own cache line.
#[repr(align(64))]
struct CountLine([AtomicU32; PER_LINE]);

/// A carry slot: the bucket's index plus one in the high 24 bits (0 = free),
/// the number of carries (of `CARRY_AT` records each) in the low 40.
const CARRY_SHIFT: u32 = 40;
const CARRY_MASK: u64 = (1 << CARRY_SHIFT) - 1;

/// [`Adjustments::state`]: adjusters (carries, pull-backs) in progress.
const ADJUSTING: u64 = 1;
/// Resets in progress.
const RESETTING: u64 = 1 << 16;
/// Adjustments and resets started (wrapping).
const STARTED: u64 = 1 << 32;
const ADJUSTING_MASK: u64 = RESETTING - 1;
/// In progress: adjusters or resets.
const BUSY_MASK: u64 = STARTED - 1;
const RESETTING_MASK: u64 = BUSY_MASK & !ADJUSTING_MASK;

/// The carry slots and the word that makes every change to them (with the
/// counter it carries from) one step for readers. On one line: only the
/// cold paths write it.
struct Adjustments {
    /// Bits 0..16: adjusters in progress; bits 16..32: resets in progress;
    /// bits 32..64: adjustments and resets started, wrapping.
    ///
    /// Invariants: a counter is only ever lowered (carried, pulled back or
    /// zeroed) while this word counts its adjuster or reset in progress,
    /// and a carry slot only changes then; an adjuster that finds a reset
    /// in progress writes nothing; a reset zeroes nothing while an
    /// adjuster is in progress. So a reader that finds nothing in progress
    /// and the same word before and after its loads saw every adjustment
    /// whole or not at all (a sequence lock with a count of writers, as
    /// the ring's `stats` uses; the writers never wait).
    state: AtomicU64,
    /// See `CARRY_SHIFT`. A used slot keeps its bucket until a reset.
    slots: [AtomicU64; CARRY_SLOTS],
}

/// HdrHistogram's bucket layout in atomic counters, plus an exact sum and max.
///
/// Recording is an index computation, one relaxed increment of the
/// caller's stripe's counter, one relaxed add to the stripe's sum and a
/// relaxed load of the max (a `fetch_max` only when the value is a new
/// maximum). A bucket's count is the sum of its [`COUNT_STRIPES`] `u32`
/// counters plus `2^31` per carry.
///
/// # Carries and saturation
///
/// The increment that takes a counter to `2^31` (once in two billion
/// records of a bucket and stripe) carries: it takes `2^31` off the counter
/// and adds one to the bucket's slot of [`CARRY_SLOTS`] (claiming a free
/// one by compare-exchange), both inside the adjustment word, so a read
/// sees the carry whole or not at all. A counter waiting for its carry has
/// `2^31` increments of room: it never wraps unless its carrier is stopped
/// for two billion records of its bucket and stripe. Should more buckets
/// than there are slots need one, the others saturate: their counters stay
/// at `2^31` or above (pulled back by `2^30` when they reach `3 * 2^30`)
/// and read as `2^31` per stripe. Every read clamps a counter at `2^31`,
/// so a counter past it (a carry pending, or saturated) never counts more
/// than it will after its carry.
///
/// What a read ([`count`](Self::count), [`buckets`](Self::buckets),
/// [`snapshot`](Self::snapshot)) promises, with no reset between: a
/// bucket's count never falls below an earlier read's, never exceeds the
/// records started, and is exact once the writers stop. A read never mixes
/// both sides of a [`reset`](Self::reset) either. Values above the layout's
/// highest trackable value saturate into the last bucket; the max still
/// records them exactly. The count is the sum of the buckets, so it always
/// agrees with them.
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
    /// line. `lines.len() == COUNT_STRIPES * stride`. A counter counts
    /// records since its last carry; below `CARRY_AT + PULL_BACK` (plus the
    /// records that race one adjustment), so it never wraps.
    lines: Box<[CountLine]>,
    /// Carries of counters and the word that orders them against readers
    /// and resets; see the type's documentation.
    adjustments: LinePadded<Adjustments>,
    /// Sum of recorded values, one per stripe so concurrent writers do not
    /// share its line; wrapping (a u64 of nanoseconds holds 584 years).
    sums: [LinePadded<AtomicU64>; STRIPES],
    /// Largest recorded value, exact (not saturated).
    max: AtomicU64,
    /// Resets so far: incremented inside each reset, so a read that loads
    /// it with the counters (see `read`) knows which side of every reset
    /// its counts are from. A [`RecentWindow`](crate::RecentWindow) keeps
    /// it with each checkpoint and ignores checkpoints of an earlier one.
    resets: AtomicU64,
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
        slots.fold(0, |n, &(_, c)| {
            n.wrapping_add(c.wrapping_mul(u64::from(CARRY_AT)))
        })
    }
}

/// What a read counts of a counter holding `v`: at most `CARRY_AT` (see
/// the type's documentation).
#[inline]
fn counted(v: u32) -> u64 {
    u64::from(v.min(CARRY_AT))
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
            adjustments: LinePadded(Adjustments {
                state: AtomicU64::new(0),
                slots: core::array::from_fn(|_| AtomicU64::new(0)),
            }),
            sums: core::array::from_fn(|_| LinePadded(AtomicU64::new(0))),
            max: AtomicU64::new(0),
            resets: AtomicU64::new(0),
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
                // One compare, as before carries were exact: only at
                // `CARRY_AT` and above (a carry due, or saturated).
                let before = c.fetch_add(1, Ordering::Relaxed);
                if before >= CARRY_AT - 1 {
                    self.adjust(c, index, before.wrapping_add(1));
                }
            }
        }
        self.sums[stripe % STRIPES].fetch_add(value, Ordering::Relaxed);
        if value > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(value, Ordering::Relaxed);
        }
    }

    /// An increment took `counter` (of bucket `index`) to `reached`, at
    /// least `CARRY_AT`: at exactly `CARRY_AT` carry, at `CARRY_AT +
    /// PULL_BACK` pull a saturated counter back; otherwise nothing (a carry
    /// is pending, or the counter is saturated). The adjustment runs
    /// inside the adjustment word (see [`Adjustments::state`]), or not at
    /// all when a reset is in progress (the reset zeroes the counter). The
    /// adjuster never waits.
    #[cold]
    #[inline(never)]
    fn adjust(&self, counter: &AtomicU32, index: usize, reached: u32) {
        let carry = reached == CARRY_AT;
        if !carry && reached != CARRY_AT + PULL_BACK {
            return;
        }
        let state = &self.adjustments.state;
        let before = state.fetch_add(ADJUSTING | STARTED, Ordering::Acquire);
        if before & RESETTING_MASK == 0 {
            // Orders the announcement before the adjustment's writes: a
            // reader that loads any of them then finds the word changed
            // (the fence pairs with the reader's acquire fence).
            fence(Ordering::Release);
            if carry {
                self.carry(counter, index);
            } else {
                // Saturated: keep it within `CARRY_AT..CARRY_AT +
                // PULL_BACK`, where it reads as `CARRY_AT`.
                let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    (v >= CARRY_AT + PULL_BACK).then(|| v - PULL_BACK)
                });
            }
        }
        state.fetch_sub(ADJUSTING, Ordering::Release);
    }

    /// Moves `CARRY_AT` records from `counter` into bucket `index`'s carry
    /// slot, or, with every slot taken by other buckets, leaves them
    /// (saturate). Inside the adjustment word.
    fn carry(&self, counter: &AtomicU32, index: usize) {
        // Only while the counter holds them: a reset between the increment
        // and the announcement zeroed it (and an adjuster racing a reset
        // never gets here).
        if counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                v.checked_sub(CARRY_AT)
            })
            .is_err()
        {
            return;
        }
        let key = (index as u64 + 1) << CARRY_SHIFT;
        for slot in self.adjustments.slots.iter() {
            let mut current = slot.load(Ordering::Relaxed);
            loop {
                // Free: claim it. The bucket's own: add one. A compare-
                // exchange, not a store: another bucket's carrier may claim
                // the same free slot, or a carrier of this bucket's other
                // stripe add to it, at the same time.
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
        // No slot: give the records back (saturated).
        counter.fetch_add(CARRY_AT, Ordering::Relaxed);
    }

    /// Runs `f` with the carries until no adjustment or reset went through
    /// meanwhile (see [`Adjustments::state`]), so every counter `f` loads
    /// agrees with the carries. `f` must only load; it may run again.
    fn read<R>(&self, mut f: impl FnMut(&Carries) -> R) -> R {
        let state = &self.adjustments.state;
        loop {
            let before = state.load(Ordering::Acquire);
            if before & BUSY_MASK == 0 {
                let r = f(&self.load_carries());
                // Orders the loads above before the second load of the
                // word; pairs with the adjuster's release fence.
                fence(Ordering::Acquire);
                if state.load(Ordering::Relaxed) == before {
                    return r;
                }
            }
            spin_loop();
        }
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
        for slot in self.adjustments.slots.iter() {
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
            .map(|c| counted(c.load(Ordering::Relaxed)))
            .fold(carries.of(index), u64::wrapping_add)
    }

    /// Values recorded: the sum of all buckets.
    pub fn count(&self) -> u64 {
        self.read(|carries| {
            self.counters()
                .map(|c| counted(c.load(Ordering::Relaxed)))
                .fold(carries.total(), u64::wrapping_add)
        })
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

    /// Non-zero buckets as `(lowest value of the bucket, count)`, in value
    /// order. One read (see the type's documentation): collected, then
    /// handed out.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets_and_resets().1.into_iter()
    }

    /// [`buckets`](Self::buckets) and the resets so far, from one read.
    pub(crate) fn buckets_and_resets(&self) -> (u64, Vec<(u64, u64)>) {
        let mut out = Vec::new();
        let resets = self.read(|carries| {
            out.clear();
            out.extend(
                (0..self.layout.counts_len())
                    .map(|i| (i, self.bucket_count(i, carries)))
                    .filter(|&(_, n)| n > 0)
                    .map(|(i, n)| (self.layout.value_for(i), n)),
            );
            self.resets.load(Ordering::Relaxed)
        });
        (resets, out)
    }

    /// Resets so far (see [`reset`](Self::reset)).
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Acquire)
    }

    /// Identifies this histogram to a [`RecentWindow`](crate::RecentWindow)
    /// (its address: a window answers only for the histogram it was
    /// rotated with).
    pub(crate) fn id(&self) -> u64 {
        self as *const Self as usize as u64
    }

    /// Zeroes every counter, carry, the sum and the max. Records that race
    /// with a reset may land on either side of it; a read sees none of it
    /// or all of it. Waits for an adjustment in progress (a carry: a few
    /// instructions); adjustments that start meanwhile give up (their
    /// counters are being zeroed). Swaps, not stores: every write to a
    /// counter is then a read-modify-write, which keeps loom exact (it can
    /// misorder a plain store racing an RMW, tokio-rs/loom #282 and #389);
    /// on a cold path the difference costs nothing.
    pub fn reset(&self) {
        let state = &self.adjustments.state;
        state.fetch_add(RESETTING | STARTED, Ordering::Acquire);
        // Orders the announcement before the zeroing (readers: see `read`).
        fence(Ordering::Release);
        while state.load(Ordering::Acquire) & ADJUSTING_MASK != 0 {
            spin_loop();
        }
        for c in self.counters() {
            c.swap(0, Ordering::Relaxed);
        }
        for c in self.adjustments.slots.iter() {
            c.swap(0, Ordering::Relaxed);
        }
        for s in self.sums.iter() {
            s.swap(0, Ordering::Relaxed);
        }
        self.max.swap(0, Ordering::Relaxed);
        self.resets.fetch_add(1, Ordering::Release);
        state.fetch_sub(RESETTING, Ordering::Release);
    }

    /// Test hook: sets stripe `stripe`'s counter of `value`'s bucket to
    /// its carry point plus `offset` (clamped to the `u32` range) and
    /// returns the bucket's count after. It rewrites a counter behind the
    /// recorders' backs, so it is for a quiet histogram in a test only (the
    /// stress tests use it to reach carries in a few records).
    #[doc(hidden)]
    pub fn near_carry(&self, stripe: usize, value: u64, offset: i64) -> u64 {
        let index = self.layout.index_for(value);
        if let Some(c) = self.counter(stripe % COUNT_STRIPES, index) {
            let v = (i64::from(CARRY_AT) + offset).clamp(0, i64::from(u32::MAX));
            c.store(v as u32, Ordering::Relaxed);
        }
        self.read(|carries| self.bucket_count(index, carries))
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
    fn a_counter_reaching_the_carry_point_carries_and_counts_stay_exact() {
        let h = LatencyHistogram::new(layout());
        let i = layout().index_for(10_000);
        h.counter(1, i)
            .unwrap()
            .store(CARRY_AT - 2, Ordering::Relaxed);
        h.record_striped(0, 10_000);
        h.record_striped(1, 10_000); // CARRY_AT - 1
        h.record_striped(1, 10_000); // reaches CARRY_AT: carried
        h.record_striped(1, 10_000);
        let expected = u64::from(CARRY_AT) - 2 + 4;
        assert_eq!(h.count(), expected);
        assert_eq!(h.buckets().map(|(_, n)| n).collect::<Vec<_>>(), [expected]);
        assert_eq!(h.snapshot().len(), expected);
        // The counter holds what came after the carry; the slot the rest.
        assert_eq!(h.counter(1, i).unwrap().load(Ordering::Relaxed), 1);
        let slot = h.adjustments.slots[0].load(Ordering::Relaxed);
        assert_eq!(slot, ((i as u64 + 1) << CARRY_SHIFT) | 1);
        assert_eq!(h.adjustments.state.load(Ordering::Relaxed), STARTED);
        h.reset();
        assert_eq!(h.count(), 0);
        assert_eq!(h.buckets().count(), 0);
        assert_eq!(h.adjustments.state.load(Ordering::Relaxed), 2 * STARTED);
    }

    #[test]
    fn past_the_carry_slots_a_counter_saturates_and_never_wraps() {
        let h = LatencyHistogram::new(layout());
        // CARRY_SLOTS + 1 buckets reach the carry point, one after another.
        let values: Vec<u64> = (0..=CARRY_SLOTS as u64).map(|k| 10_000 << k).collect();
        for &v in &values {
            let i = layout().index_for(v);
            h.counter(0, i)
                .unwrap()
                .store(CARRY_AT - 1, Ordering::Relaxed);
            h.record_striped(0, v);
            h.record_striped(0, v);
        }
        let counts: Vec<u64> = h.buckets().map(|(_, n)| n).collect();
        let carried = u64::from(CARRY_AT) + 1;
        let mut expected = alloc::vec![carried; CARRY_SLOTS];
        // The last one found no slot: it reads as CARRY_AT, and stays there.
        expected.push(u64::from(CARRY_AT));
        assert_eq!(counts, expected);
        assert_eq!(h.count(), expected.iter().sum::<u64>());
        // Its counter is pulled back before it could wrap.
        let last = *values.last().unwrap();
        let c = h.counter(0, layout().index_for(last)).unwrap();
        c.store(CARRY_AT + PULL_BACK - 1, Ordering::Relaxed);
        h.record_striped(0, last);
        assert_eq!(c.load(Ordering::Relaxed), CARRY_AT);
        for _ in 0..3 {
            h.record_striped(0, last);
        }
        assert_eq!(c.load(Ordering::Relaxed), CARRY_AT + 3);
        assert_eq!(h.buckets().last().unwrap().1, u64::from(CARRY_AT));
    }

    #[test]
    fn an_adjustment_racing_a_reset_gives_up() {
        let h = LatencyHistogram::new(layout());
        let i = layout().index_for(10_000);
        let c = h.counter(0, i).unwrap();
        // A reset in progress: the carrier writes nothing (the reset
        // zeroes the counter); the slot stays free.
        h.adjustments.state.fetch_add(RESETTING, Ordering::Relaxed);
        c.store(CARRY_AT, Ordering::Relaxed);
        h.adjust(c, i, CARRY_AT);
        assert_eq!(c.load(Ordering::Relaxed), CARRY_AT);
        assert_eq!(h.adjustments.slots[0].load(Ordering::Relaxed), 0);
        h.adjustments.state.fetch_sub(RESETTING, Ordering::Relaxed);
        // A reset went through between the increment and the carry: the
        // counter no longer holds the records, nothing is carried.
        c.store(3, Ordering::Relaxed);
        h.adjust(c, i, CARRY_AT);
        assert_eq!(c.load(Ordering::Relaxed), 3);
        assert_eq!(h.adjustments.slots[0].load(Ordering::Relaxed), 0);
        assert_eq!(h.count(), 3);
        // A pull-back whose counter was carried meanwhile (it no longer
        // holds CARRY_AT + PULL_BACK): nothing taken.
        c.store(CARRY_AT + 5, Ordering::Relaxed);
        h.adjust(c, i, CARRY_AT + PULL_BACK);
        assert_eq!(c.load(Ordering::Relaxed), CARRY_AT + 5);
    }

    #[test]
    fn a_bucket_carried_again_adds_to_its_own_slot() {
        let h = LatencyHistogram::new(layout());
        let i = layout().index_for(10_000);
        for stripe in [0, 1, 0] {
            h.counter(stripe, i)
                .unwrap()
                .store(CARRY_AT - 1, Ordering::Relaxed);
            h.record_striped(stripe, 10_000);
        }
        let key = (i as u64 + 1) << CARRY_SHIFT;
        let slots: Vec<u64> = h
            .adjustments
            .slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect();
        let mut expected = alloc::vec![0; CARRY_SLOTS];
        expected[0] = key | 3;
        assert_eq!(slots, expected, "one slot per bucket");
        assert_eq!(h.count(), 3 * (u64::from(CARRY_AT) - 1) + 3);
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
