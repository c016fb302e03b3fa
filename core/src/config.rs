//! What a [`Recorder`](crate::Recorder) is built with, and why a value is
//! refused. Its own module so the series (which read the sizes) and the
//! recorder (which checks them) both import it and not each other.

use crate::layout::{CreationError, HistogramLayout};
use crate::sampler::{RateError, Sampler};

/// Sizes and precision of a [`Recorder`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecorderConfig {
    /// Ring capacity in records (`STARPUNK_PERF_BUFFER_SIZE`), 1 to 1,000,000.
    pub buffer_size: usize,
    /// Distinct operations before the overflow series, 1 to 65,536.
    pub max_series: usize,
    /// Layout of each operation's since-start histogram (nanoseconds).
    pub layout: HistogramLayout,
    /// Layout of the recent window's checkpoints (nanoseconds).
    pub window_layout: HistogramLayout,
    /// Length of one window interval.
    pub window_interval_ns: u64,
    /// Intervals in the window (the current one included).
    pub window_intervals: usize,
    /// Fraction of events recorded (`STARPUNK_PERF_SAMPLE_RATE`).
    pub sample_rate: f64,
}

/// Lowest discernible duration: 1 µs (resolution 512 ns below 65 µs).
pub const DEFAULT_LOWEST_NS: u64 = 1_000;
/// Highest trackable duration: 30 s; longer ones saturate (the max stays exact).
pub const DEFAULT_HIGHEST_NS: u64 = 30_000_000_000;

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            buffer_size: 1_000,
            max_series: 64,
            // 2 significant figures: quantiles within 1% above 65 µs.
            layout: match HistogramLayout::new(DEFAULT_LOWEST_NS, DEFAULT_HIGHEST_NS, 2) {
                Ok(l) => l,
                Err(_) => unreachable_layout(),
            },
            // 1 significant figure: within 6.25% (a trend view, 8x smaller).
            window_layout: match HistogramLayout::new(DEFAULT_LOWEST_NS, DEFAULT_HIGHEST_NS, 1) {
                Ok(l) => l,
                Err(_) => unreachable_layout(),
            },
            window_interval_ns: 300_000_000_000,
            window_intervals: 4,
            sample_rate: 1.0,
        }
    }
}

#[cold]
fn unreachable_layout() -> HistogramLayout {
    // Both default layouts are valid constants; this arm is never taken.
    match HistogramLayout::new(1, 2, 0) {
        Ok(l) => l,
        Err(_) => unreachable!(),
    }
}

/// Why a [`Recorder`] could not be built: the first value of its
/// [`RecorderConfig`] found out of range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConfigError {
    /// `buffer_size` outside 1 to 1,000,000.
    BufferSize(usize),
    /// `max_series` outside 1 to 65,536.
    MaxSeries(usize),
    /// The histogram layout is invalid.
    Layout(CreationError),
    /// `layout` has this many buckets, more than [`MAX_BUCKETS`] (each
    /// series keeps two copies of them).
    LayoutBuckets(usize),
    /// `window_layout` has this many buckets, more than [`MAX_BUCKETS`].
    WindowLayoutBuckets(usize),
    /// The sample rate is outside 0.0 to 1.0.
    SampleRate(RateError),
    /// `window_intervals` outside 1 to [`MAX_WINDOW_INTERVALS`].
    WindowIntervals(usize),
    /// `window_interval_ns` outside 2 ns to a day.
    WindowInterval(u64),
}

/// Most intervals in the recent window: each holds a checkpoint of every
/// series' window histogram, so the bound is a memory bound.
pub const MAX_WINDOW_INTERVALS: usize = 64;
/// Longest window interval, nanoseconds (a day).
pub const MAX_WINDOW_INTERVAL_NS: u64 = 86_400_000_000_000;
/// Most buckets in a layout: 16,384 (the defaults have 2,560 and 368);
/// a series keeps two `u32` copies of `layout`'s and one per window
/// interval of `window_layout`'s, so the bound is a memory bound.
pub const MAX_BUCKETS: usize = 16_384;

impl RecorderConfig {
    /// Checks every value, in field order, and returns the sampler of
    /// `sample_rate`.
    ///
    /// # Examples
    ///
    /// ```
    /// use starpunk_perf::{ConfigError, RecorderConfig};
    ///
    /// let bad = RecorderConfig { buffer_size: 0, ..RecorderConfig::default() };
    /// assert_eq!(bad.validate().unwrap_err(), ConfigError::BufferSize(0));
    /// assert!(RecorderConfig::default().validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<Sampler, ConfigError> {
        if !(1..=1_000_000).contains(&self.buffer_size) {
            return Err(ConfigError::BufferSize(self.buffer_size));
        }
        if !(1..=65_536).contains(&self.max_series) {
            return Err(ConfigError::MaxSeries(self.max_series));
        }
        if self.layout.counts_len() > MAX_BUCKETS {
            return Err(ConfigError::LayoutBuckets(self.layout.counts_len()));
        }
        if self.window_layout.counts_len() > MAX_BUCKETS {
            return Err(ConfigError::WindowLayoutBuckets(
                self.window_layout.counts_len(),
            ));
        }
        if !(2..=MAX_WINDOW_INTERVAL_NS).contains(&self.window_interval_ns) {
            return Err(ConfigError::WindowInterval(self.window_interval_ns));
        }
        if !(1..=MAX_WINDOW_INTERVALS).contains(&self.window_intervals) {
            return Err(ConfigError::WindowIntervals(self.window_intervals));
        }
        Sampler::new(self.sample_rate).map_err(ConfigError::SampleRate)
    }
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::BufferSize(n) => write!(f, "buffer size {n} is not between 1 and 1000000"),
            ConfigError::MaxSeries(n) => write!(f, "max series {n} is not between 1 and 65536"),
            ConfigError::Layout(e) => write!(f, "histogram layout: {e}"),
            ConfigError::LayoutBuckets(n) => write!(
                f,
                "histogram layout has {n} buckets, more than {MAX_BUCKETS}: fewer significant figures or a narrower range"
            ),
            ConfigError::WindowLayoutBuckets(n) => write!(
                f,
                "window layout has {n} buckets, more than {MAX_BUCKETS}: fewer significant figures or a narrower range"
            ),
            ConfigError::SampleRate(e) => e.fmt(f),
            ConfigError::WindowIntervals(n) => write!(
                f,
                "window intervals {n} is not between 1 and {MAX_WINDOW_INTERVALS}"
            ),
            ConfigError::WindowInterval(n) => {
                write!(f, "window interval {n} ns is not between 2 ns and a day")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}
