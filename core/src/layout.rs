//! HdrHistogram's log-linear bucket layout: the index maths alone.
//!
//! The formulas are those of HdrHistogram (and `hdrhistogram`'s
//! `bucket_for`, `sub_bucket_for`, `value_from_loc`), so a histogram kept in
//! our atomic counters maps index for index onto a
//! `hdrhistogram::Histogram` built with the same three parameters.

use core::fmt;

/// Why a [`HistogramLayout`] could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreationError {
    /// `lowest_discernible` was zero.
    LowIsZero,
    /// `highest_trackable` was below `2 * lowest_discernible`.
    HighLessThanTwiceLow,
    /// `significant_figures` was above 5.
    SigFigExceedsMax,
    /// The layout would need more than 2^24 counters.
    TooManyCounters,
}

impl fmt::Display for CreationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CreationError::LowIsZero => "lowest discernible value must be at least 1",
            CreationError::HighLessThanTwiceLow => {
                "highest trackable value must be at least twice the lowest discernible value"
            }
            CreationError::SigFigExceedsMax => "significant figures must be between 0 and 5",
            CreationError::TooManyCounters => "layout needs more than 2^24 counters",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CreationError {}

/// The shape of a log-linear histogram: which counter a value goes to.
///
/// Values from 0 to `highest_trackable` are kept with `significant_figures`
/// decimal digits of precision (relative error below `10^-sigfig`) above
/// `lowest_discernible * 10^sigfig`, and with an absolute resolution of
/// `2^unit_magnitude <= lowest_discernible` below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistogramLayout {
    lowest_discernible: u64,
    highest_trackable: u64,
    significant_figures: u8,
    /// `floor(log2(lowest_discernible))`, in 0..=63.
    unit_magnitude: u8,
    /// `log2(sub_bucket_half_count)`, in 0..=17 for sigfig <= 5.
    sub_bucket_half_count_magnitude: u8,
    /// `64 - unit_magnitude - sub_bucket_half_count_magnitude - 1`.
    leading_zero_count_base: u8,
    /// `(2 * sub_bucket_half_count - 1) << unit_magnitude`.
    sub_bucket_mask: u64,
    /// Doubling rows needed to reach `highest_trackable`, at least 1.
    bucket_count: u32,
}

impl HistogramLayout {
    /// The layout of `hdrhistogram::Histogram::new_with_bounds(low, high, sigfig)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use starpunk_perf::HistogramLayout;
    ///
    /// let layout = HistogramLayout::new(1, 1000, 2).unwrap();
    /// assert_eq!(layout.index_for(5), 5);
    /// assert!(layout.counts_len() > 0);
    /// ```
    pub const fn new(
        lowest_discernible: u64,
        highest_trackable: u64,
        significant_figures: u8,
    ) -> Result<Self, CreationError> {
        if lowest_discernible < 1 {
            return Err(CreationError::LowIsZero);
        }
        if significant_figures > 5 {
            return Err(CreationError::SigFigExceedsMax);
        }
        if lowest_discernible > u64::MAX / 2 || highest_trackable < 2 * lowest_discernible {
            return Err(CreationError::HighLessThanTwiceLow);
        }
        // 2 * 10^5 < 2^18, so the magnitude is at most 18.
        let largest_single_unit = 2 * 10u64.pow(significant_figures as u32);
        let sub_bucket_count_magnitude = 64 - (largest_single_unit - 1).leading_zeros();
        let sub_bucket_half_count_magnitude = sub_bucket_count_magnitude.saturating_sub(1);
        let unit_magnitude = 63 - lowest_discernible.leading_zeros();
        if unit_magnitude + sub_bucket_half_count_magnitude + 1 > 63 {
            return Err(CreationError::HighLessThanTwiceLow);
        }
        let sub_bucket_count = 1u64 << (sub_bucket_half_count_magnitude + 1);
        let sub_bucket_mask = (sub_bucket_count - 1) << unit_magnitude;
        let leading_zero_count_base = 64 - unit_magnitude - sub_bucket_half_count_magnitude - 1;

        // Rows needed so that `highest_trackable` has a counter.
        let mut smallest_untrackable = sub_bucket_count << unit_magnitude;
        let mut bucket_count = 1u32;
        while smallest_untrackable <= highest_trackable {
            if smallest_untrackable > u64::MAX / 2 {
                bucket_count += 1;
                break;
            }
            smallest_untrackable <<= 1;
            bucket_count += 1;
        }
        let layout = Self {
            lowest_discernible,
            highest_trackable,
            significant_figures,
            unit_magnitude: unit_magnitude as u8,
            sub_bucket_half_count_magnitude: sub_bucket_half_count_magnitude as u8,
            leading_zero_count_base: leading_zero_count_base as u8,
            sub_bucket_mask,
            bucket_count,
        };
        if layout.counts_len() > 1 << 24 {
            return Err(CreationError::TooManyCounters);
        }
        Ok(layout)
    }

    /// The lowest discernible value it was made with.
    pub const fn lowest_discernible(&self) -> u64 {
        self.lowest_discernible
    }

    /// The highest value kept exactly; larger values saturate to it.
    pub const fn highest_trackable(&self) -> u64 {
        self.highest_trackable
    }

    /// Decimal digits of precision.
    pub const fn significant_figures(&self) -> u8 {
        self.significant_figures
    }

    #[inline]
    const fn sub_bucket_half_count(&self) -> usize {
        1 << self.sub_bucket_half_count_magnitude
    }

    /// Number of counters: `(bucket_count + 1) * sub_bucket_half_count`.
    #[inline]
    pub const fn counts_len(&self) -> usize {
        (self.bucket_count as usize + 1) * self.sub_bucket_half_count()
    }

    /// The counter for `value`. Values past the last counter saturate into
    /// the counter of `highest_trackable` (as `hdrhistogram`'s
    /// `saturating_record` does), so the result is always below
    /// [`counts_len`](Self::counts_len).
    #[inline]
    pub fn index_for(&self, value: u64) -> usize {
        let index = self.natural_index(value);
        if index < self.counts_len() {
            index
        } else {
            self.natural_index(self.highest_trackable)
        }
    }

    /// The counter `value` belongs to in an unbounded layout.
    #[inline]
    fn natural_index(&self, value: u64) -> usize {
        // `value | mask` has a bit at or above `unit_magnitude +
        // half_count_magnitude`, so its leading zeros are at most
        // `leading_zero_count_base` and the subtraction cannot underflow.
        let bucket =
            self.leading_zero_count_base as u32 - (value | self.sub_bucket_mask).leading_zeros();
        // bucket + unit_magnitude <= 63, so the shift is in range, and the
        // result is below 2 * half_count because `bucket` is the row of
        // `value`'s highest bit.
        let sub_bucket = (value >> (bucket + self.unit_magnitude as u32)) as usize;
        // The sub bucket lies in [half_count, 2 * half_count) except in row 0,
        // where it lies in [0, 2 * half_count): base + sub_bucket >= half_count,
        // and base < 2^(6 + 18), so nothing overflows.
        let base = ((bucket as usize) + 1) << self.sub_bucket_half_count_magnitude;
        base + sub_bucket - self.sub_bucket_half_count()
    }

    /// The lowest value that maps to counter `index`.
    #[inline]
    pub fn value_for(&self, index: usize) -> u64 {
        let half = self.sub_bucket_half_count();
        let mut bucket = (index >> self.sub_bucket_half_count_magnitude) as i64 - 1;
        let mut sub_bucket = (index & (half - 1)) + half;
        if bucket < 0 {
            sub_bucket -= half;
            bucket = 0;
        }
        (sub_bucket as u64) << (bucket as u32 + self.unit_magnitude as u32)
    }

    /// The highest value that maps to counter `index`.
    #[inline]
    pub fn highest_value_for(&self, index: usize) -> u64 {
        let low = self.value_for(index);
        let bucket =
            self.leading_zero_count_base as u32 - (low | self.sub_bucket_mask).leading_zeros();
        let width = 1u64 << (bucket + self.unit_magnitude as u32);
        // As hdrhistogram: the next bucket's start, saturating, minus one.
        low.saturating_add(width) - 1
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            HistogramLayout::new(0, 10, 2),
            Err(CreationError::LowIsZero)
        );
        assert_eq!(
            HistogramLayout::new(10, 19, 2),
            Err(CreationError::HighLessThanTwiceLow)
        );
        assert_eq!(
            HistogramLayout::new(1, 10, 6),
            Err(CreationError::SigFigExceedsMax)
        );
        assert_eq!(
            HistogramLayout::new(u64::MAX, u64::MAX, 2),
            Err(CreationError::HighLessThanTwiceLow)
        );
    }

    #[test]
    fn extremes_index_in_range() {
        for (low, high, sig) in [
            (1, 2, 0),
            (1, u64::MAX, 2),
            (1000, u64::MAX, 5),
            (1 << 40, u64::MAX, 1),
        ] {
            let l = HistogramLayout::new(low, high, sig).unwrap();
            for v in [0, 1, low, high, u64::MAX] {
                assert!(l.index_for(v) < l.counts_len(), "{low} {high} {sig} {v}");
            }
        }
    }

    #[test]
    fn counts_len_matches_hdrhistogram() {
        for (low, high, sig) in [
            (1, 2, 0),
            (1, 1000, 2),
            (1000, 16_777_216_000, 2),
            (1000, 16_777_216_000, 1),
            (1, u64::MAX, 3),
        ] {
            let ours = HistogramLayout::new(low, high, sig).unwrap();
            let theirs = hdrhistogram::Histogram::<u64>::new_with_bounds(low, high, sig).unwrap();
            assert_eq!(
                ours.counts_len(),
                theirs.distinct_values(),
                "{low} {high} {sig}"
            );
        }
    }

    proptest! {
        #[test]
        fn index_and_value_agree_with_hdrhistogram(
            low_exp in 0u32..20, sig in 0u8..=3, v in any::<u64>(), shift in 0u32..64,
        ) {
            let low = 1u64 << low_exp;
            let layout = HistogramLayout::new(low, u64::MAX, sig).unwrap();
            let h = hdrhistogram::Histogram::<u64>::new_with_bounds(low, u64::MAX, sig).unwrap();
            let v = (v >> shift).min(u64::MAX - 1);
            let i = layout.index_for(v);
            prop_assert!(i < layout.counts_len());
            prop_assert_eq!(layout.value_for(i), h.lowest_equivalent(v));
            prop_assert_eq!(layout.highest_value_for(i), h.highest_equivalent(v));
            prop_assert!(layout.value_for(i) <= v && v <= layout.highest_value_for(i));
        }

        #[test]
        fn saturates_above_highest(high in 2u64..u64::MAX, v in any::<u64>()) {
            let layout = HistogramLayout::new(1, high, 2).unwrap();
            let i = layout.index_for(v);
            prop_assert!(i < layout.counts_len());
            if v >= high {
                prop_assert!(i >= layout.index_for(high));
            }
            if v <= high {
                prop_assert!(layout.index_for(v / 2) <= i);
            }
        }
    }
}
