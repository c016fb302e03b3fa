//! The recorder: ring, registry and per-operation histograms behind one API.

use crate::clock::{Clock, WallAnchor};
use crate::config::{ConfigError, RecorderConfig};
use crate::record::{Category, MetricRecord, OpId};
use crate::registry::{Entry, OperationRegistry};
use crate::ring_buffer::RingBuffer;
use crate::sampler::Sampler;
use crate::series::Series;

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
/// assert_eq!(series.since_start().count(), 1);
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
        let sampler = config.validate()?;
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
    use crate::config::{MAX_BUCKETS, MAX_WINDOW_INTERVALS};
    use crate::layout::HistogramLayout;

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
        assert_eq!(rec.series(op).unwrap().since_start().count(), 2);
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
        let fine = HistogramLayout::new(1, 30_000_000_000, 4).unwrap();
        assert!(fine.counts_len() > MAX_BUCKETS);
        assert_eq!(
            bad(|c| c.layout = HistogramLayout::new(1, 30_000_000_000, 4).unwrap()),
            ConfigError::LayoutBuckets(fine.counts_len())
        );
        assert_eq!(
            bad(|c| c.window_layout = HistogramLayout::new(1, 30_000_000_000, 4).unwrap()),
            ConfigError::WindowLayoutBuckets(fine.counts_len())
        );
        // Every error says which value and why.
        let e = alloc::format!("{}", bad(|c| c.window_intervals = 0));
        assert_eq!(e, "window intervals 0 is not between 1 and 64");
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
        assert_eq!(rec.series(op).unwrap().since_start().count(), 0);
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
