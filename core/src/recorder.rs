//! The recorder: ring, registry and per-operation histograms behind one API.

use crate::clock::{Clock, WallAnchor};
use crate::layout::{CreationError, HistogramLayout};
use crate::record::{Category, MetricRecord, OpId};
use crate::registry::{Entry, OperationRegistry};
use crate::ring_buffer::RingBuffer;
use crate::sampler::{RateError, Sampler};
use crate::series::Series;

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

/// Why a [`Recorder`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConfigError {
    /// `buffer_size` outside 1 to 1,000,000.
    BufferSize(usize),
    /// `max_series` outside 1 to 65,536.
    MaxSeries(usize),
    /// The histogram layout is invalid.
    Layout(CreationError),
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

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::BufferSize(n) => write!(f, "buffer size {n} is not between 1 and 1000000"),
            ConfigError::MaxSeries(n) => write!(f, "max series {n} is not between 1 and 65536"),
            ConfigError::Layout(e) => write!(f, "histogram layout: {e}"),
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

/// Records metrics: the ring of recent records and, per operation, a
/// since-start histogram and a recent window.
///
/// # Examples
///
/// ```
/// use starpunk_perf::{Category, FakeClock, MetricRecord, Recorder, RecorderConfig};
///
/// let rec = Recorder::new(RecorderConfig::default(), FakeClock::new(0)).unwrap();
/// let op = rec.register(Category::Db, "SELECT * FROM notes WHERE id = ?");
/// rec.record(MetricRecord { category: Category::Db, operation: op, duration_ns: 42_000, ..MetricRecord::default() });
/// let series = rec.series(op).unwrap();
/// assert_eq!(series.since_start.count(), 1);
/// assert_eq!(rec.ring().len(), 1);
/// ```
pub struct Recorder<C: Clock> {
    config: RecorderConfig,
    clock: C,
    anchor: WallAnchor,
    sampler: Sampler,
    ring: RingBuffer,
    registry: OperationRegistry<Series>,
}

impl<C: Clock> Recorder<C> {
    /// A recorder with `config`, reading time from `clock`.
    pub fn new(config: RecorderConfig, clock: C) -> Result<Self, ConfigError> {
        if !(1..=1_000_000).contains(&config.buffer_size) {
            return Err(ConfigError::BufferSize(config.buffer_size));
        }
        if !(1..=65_536).contains(&config.max_series) {
            return Err(ConfigError::MaxSeries(config.max_series));
        }
        if !(1..=MAX_WINDOW_INTERVALS).contains(&config.window_intervals) {
            return Err(ConfigError::WindowIntervals(config.window_intervals));
        }
        if !(2..=MAX_WINDOW_INTERVAL_NS).contains(&config.window_interval_ns) {
            return Err(ConfigError::WindowInterval(config.window_interval_ns));
        }
        let sampler = Sampler::new(config.sample_rate).map_err(ConfigError::SampleRate)?;
        #[cfg(feature = "std")]
        let anchor = WallAnchor::now(&clock);
        #[cfg(not(feature = "std"))]
        let anchor = WallAnchor {
            unix_ns: 0,
            clock_ns: clock.now_ns(),
        };
        let registry =
            OperationRegistry::new(config.max_series, "(other)", |c| Series::new(&config, c));
        Ok(Self {
            config,
            clock,
            anchor,
            sampler,
            ring: RingBuffer::new(config.buffer_size),
            registry,
        })
    }

    /// Sets the wall-clock anchor (for a `no_std` caller that knows the time).
    pub fn set_anchor(&mut self, anchor: WallAnchor) {
        self.anchor = anchor;
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &RecorderConfig {
        &self.config
    }

    /// Its clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Converts clock readings to Unix time.
    pub fn anchor(&self) -> WallAnchor {
        self.anchor
    }

    /// The current clock reading in nanoseconds.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// The sampling decision.
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// The ring of recent records.
    pub fn ring(&self) -> &RingBuffer {
        &self.ring
    }

    /// The operation registry with each operation's [`Series`].
    pub fn registry(&self) -> &OperationRegistry<Series> {
        &self.registry
    }

    /// Interns `name` (cold path: may lock and allocate, once per name).
    pub fn register(&self, category: Category, name: &str) -> OpId {
        self.registry
            .register(category, name, |c| Series::new(&self.config, c))
    }

    /// The series of `op`, if that id was handed out.
    #[inline]
    pub fn series(&self, op: OpId) -> Option<&Series> {
        self.registry.get(op).map(|e: &Entry<Series>| &e.value)
    }

    /// Records `record` in the ring and in its operation's series. Never
    /// allocates, locks or panics; an unknown operation id is kept in the
    /// ring only.
    #[inline]
    pub fn record(&self, record: MetricRecord) {
        let stripe = crate::stripe::stripe();
        self.ring.push_striped(stripe, record);
        self.aggregate_striped(stripe, record);
    }

    /// Records `record` in its operation's series only, not in the ring:
    /// for an event the sampler left out. The series' counts, sums and
    /// quantiles stay exact; only the ring (the detail views) is thinned.
    /// Never allocates, locks or panics.
    #[inline]
    pub fn aggregate(&self, record: MetricRecord) {
        self.aggregate_striped(crate::stripe::stripe(), record);
    }

    #[inline]
    fn aggregate_striped(&self, stripe: usize, record: MetricRecord) {
        if record.category != Category::Memory {
            if let Some(series) = self.series(record.operation) {
                series.record(stripe, &record);
            }
        }
    }

    /// Adds one request's change of resident memory to the series of `op`
    /// (see [`Series::memory_deltas`]). Never allocates, locks or panics.
    #[inline]
    pub fn record_memory_delta(&self, op: OpId, delta: i64) {
        if let Some(series) = self.series(op) {
            series.record_memory_delta(crate::stripe::stripe(), delta);
        }
    }

    /// Takes every series' recent-window checkpoint for the current interval.
    /// Cold path; call it at least once per window interval (the shell's
    /// ticker calls it every second).
    pub fn rotate(&self) {
        let now = self.now_ns();
        for (_, entry) in self.registry.iter() {
            entry.value.rotate(now);
        }
    }

    /// Forgets every record and zeroes every series (the ADR: metrics are
    /// cleared on logout). Names and ids stay registered. Cold path.
    pub fn clear(&self) {
        self.ring.clear();
        for (_, entry) in self.registry.iter() {
            entry.value.reset();
        }
    }

    /// Starts timing `op` as a [`Category::Function`]; the record is made
    /// when the guard drops.
    #[inline]
    pub fn time(&self, op: OpId) -> TimingGuard<'_, C> {
        TimingGuard {
            recorder: self,
            op,
            parent: OpId::NONE,
            request_id: 0,
            start: self.now_ns(),
        }
    }

    /// Runs `f`, recording its duration as `op`.
    #[inline]
    pub fn time_fn<R>(&self, op: OpId, f: impl FnOnce() -> R) -> R {
        let _guard = self.time(op);
        f()
    }

    /// Bytes the recorder holds: ring, registry and every allocated series.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.ring.memory_bytes()
            + self.registry.capacity() * core::mem::size_of::<usize>()
            + self
                .registry
                .iter()
                .map(|(_, e)| {
                    e.value.memory_bytes() + e.name.len() + core::mem::size_of::<Entry<Series>>()
                })
                .sum::<usize>()
    }
}

impl<C: Clock> core::fmt::Debug for Recorder<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Recorder")
            .field("ring", &self.ring)
            .field("registry", &self.registry)
            .finish()
    }
}

/// Times a named operation; records it as [`Category::Function`] on drop.
#[must_use = "the timing ends when the guard drops"]
pub struct TimingGuard<'a, C: Clock> {
    recorder: &'a Recorder<C>,
    op: OpId,
    parent: OpId,
    request_id: u64,
    start: u64,
}

impl<C: Clock> TimingGuard<'_, C> {
    /// Ties the record to a request: its route and sequence number.
    pub fn within(mut self, parent: OpId, request_id: u64) -> Self {
        self.parent = parent;
        self.request_id = request_id;
        self
    }
}

impl<C: Clock> Drop for TimingGuard<'_, C> {
    #[inline]
    fn drop(&mut self) {
        let end = self.recorder.now_ns();
        self.recorder.record(MetricRecord {
            timestamp_ns: self.start,
            duration_ns: end.saturating_sub(self.start),
            operation: self.op,
            parent: self.parent,
            request_id: self.request_id,
            category: Category::Function,
            ..MetricRecord::default()
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    #[test]
    fn guard_records_duration_from_clock() {
        let clock = FakeClock::new(1_000);
        let rec = Recorder::new(RecorderConfig::default(), &clock).unwrap();
        let op = rec.register(Category::Function, "note.create");
        {
            let _g = rec.time(op).within(OpId(3), 9);
            clock.advance(250_000);
        }
        let v = rec.time_fn(op, || {
            clock.advance(1_000_000);
            7
        });
        assert_eq!(v, 7);
        let mut out = alloc::vec::Vec::new();
        rec.ring().snapshot(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].duration_ns, 250_000);
        assert_eq!((out[0].parent, out[0].request_id), (OpId(3), 9));
        assert_eq!(out[1].duration_ns, 1_000_000);
        assert_eq!(rec.series(op).unwrap().since_start.count(), 2);
    }

    #[test]
    fn config_is_validated() {
        let c = FakeClock::new(0);
        let bad = |f: fn(&mut RecorderConfig)| {
            let mut cfg = RecorderConfig::default();
            f(&mut cfg);
            Recorder::new(cfg, &c).unwrap_err()
        };
        assert_eq!(bad(|c| c.buffer_size = 0), ConfigError::BufferSize(0));
        assert_eq!(
            bad(|c| c.buffer_size = 1_000_001),
            ConfigError::BufferSize(1_000_001)
        );
        assert_eq!(bad(|c| c.max_series = 0), ConfigError::MaxSeries(0));
        assert!(matches!(
            bad(|c| c.sample_rate = 2.0),
            ConfigError::SampleRate(_)
        ));
        // Accepted before: usize::MAX intervals cost 99 MB per HTTP route.
        assert_eq!(
            bad(|c| c.window_intervals = usize::MAX),
            ConfigError::WindowIntervals(usize::MAX)
        );
        assert_eq!(
            bad(|c| c.window_intervals = 0),
            ConfigError::WindowIntervals(0)
        );
        assert_eq!(
            bad(|c| c.window_interval_ns = 1),
            ConfigError::WindowInterval(1)
        );
        assert_eq!(
            bad(|c| c.window_interval_ns = u64::MAX),
            ConfigError::WindowInterval(u64::MAX)
        );
        // The bounds themselves are accepted.
        let edge = RecorderConfig {
            window_intervals: MAX_WINDOW_INTERVALS,
            window_interval_ns: 2,
            ..RecorderConfig::default()
        };
        assert!(Recorder::new(edge, &c).is_ok());
    }

    #[test]
    fn memory_records_skip_histograms_and_unknown_ops_stay_in_ring() {
        let rec = Recorder::new(RecorderConfig::default(), FakeClock::new(0)).unwrap();
        let op = rec.register(Category::Memory, "rss");
        rec.record(MetricRecord {
            category: Category::Memory,
            operation: op,
            memory_delta: 1 << 20,
            ..MetricRecord::default()
        });
        rec.record(MetricRecord {
            operation: OpId(999),
            duration_ns: 5,
            ..MetricRecord::default()
        });
        assert_eq!(rec.series(op).unwrap().since_start.count(), 0);
        assert_eq!(rec.ring().len(), 2);
    }

    #[test]
    fn aggregate_counts_without_the_ring() {
        let rec = Recorder::new(RecorderConfig::default(), FakeClock::new(0)).unwrap();
        let op = rec.register(Category::Http, "GET /");
        let r = MetricRecord {
            category: Category::Http,
            operation: op,
            duration_ns: 2_000,
            status: 200,
            bytes: 100,
            ..MetricRecord::default()
        };
        rec.record(r);
        rec.aggregate(r);
        rec.aggregate(MetricRecord { status: 503, ..r });
        rec.record_memory_delta(op, 4096);
        let s = rec.series(op).unwrap();
        assert_eq!((s.count(), s.bytes(), s.status_classes()[5]), (3, 300, 1));
        assert_eq!(s.memory_deltas().n, 1);
        assert_eq!(rec.ring().len(), 1);
    }

    #[test]
    fn defaults_fit_the_one_mebibyte_budget_at_32_series() {
        let rec = Recorder::new(RecorderConfig::default(), FakeClock::new(0)).unwrap();
        // Worst case: every one of the 32 series an HTTP route (the only
        // kind with a recent window).
        for i in 0..32 {
            rec.register(Category::Http, &alloc::format!("GET /route/{i}"));
        }
        let bytes = rec.memory_bytes();
        std::eprintln!("recorder at defaults with 32 series: {bytes} bytes");
        assert!(bytes <= 1 << 20, "{bytes} bytes");
        let per_series = rec.series(OpId(0)).unwrap().memory_bytes();
        std::eprintln!("one series: {per_series} bytes");
    }
}
