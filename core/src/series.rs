//! Everything kept per operation.

use crate::config::RecorderConfig;
use crate::latency_histogram::LatencyHistogram;
use crate::layout::HistogramLayout;
use crate::recent_window::RecentWindow;
use crate::record::{Category, MetricRecord};
use crate::seq_lock::SeqLock;
use crate::stripe::{LinePadded, STRIPES};
use crate::sync::{AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Distinct HTTP status codes counted one by one per operation; later
/// codes are counted per class (`5xx`, `4xx`, ...), so no class is ever lost.
pub const STATUS_SLOTS: usize = 8;

/// Per-operation aggregates: since-start and recent latency, bytes, rows,
/// status mix and the RSS change per request.
///
/// Every event of the operation lands here, sampled or not (the sampler
/// only thins the ring): counts, sums and quantiles are exact at any
/// sample rate.
pub struct Series {
    /// Every duration since start (or the last reset), nanoseconds.
    /// Private: zeroed only by [`reset`](Self::reset), with the window.
    since_start: LatencyHistogram,
    /// Checkpoints of `since_start` for the last 15 minutes; see
    /// [`Series::rotate`] and [`RecentWindow`]. Kept for HTTP series only
    /// (the dashboard's "last 15 minutes" is per route).
    recent: Option<RecentWindow>,
    /// Serialises [`reset`](Self::reset) against [`read`](Self::read).
    lock: SeqLock,
    /// Bytes, rows and memory changes, one set per stripe so writers do not
    /// share a line (five words: one 64-byte line each).
    totals: [LinePadded<Totals>; STRIPES],
    /// `status_codes[i]` is 0 (free) or an HTTP status in 100..=599,
    /// claimed once by CAS. Written once per code, then only loaded: the
    /// line stays shared in every core's cache.
    status_codes: [AtomicU32; STATUS_SLOTS],
    /// `status_counts[s][i]` counts `status_codes[i]` for the threads of
    /// stripe `s`: eight counters, one 64-byte line per stripe, so two
    /// threads answering the same route with the same status do not share
    /// a line. The count of code `i` is the sum over the stripes.
    status_counts: [LinePadded<[AtomicU64; STATUS_SLOTS]>; STRIPES],
    /// Codes that found no slot, by class: index `c` counts `c`xx codes
    /// (1 to 5); index 0 counts codes outside 100..=599.
    status_overflow: [AtomicU64; 6],
}

struct Totals {
    bytes: AtomicU64,
    rows: AtomicU64,
    /// Events with a measured RSS change, their sum (wrapping) and the
    /// largest.
    memory_n: AtomicU64,
    memory_sum: AtomicI64,
    memory_max: AtomicI64,
}

/// The RSS change per event of a series, from
/// [`Recorder::record_memory_delta`](crate::Recorder::record_memory_delta).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryDeltas {
    /// Events measured.
    pub n: u64,
    /// Sum of their changes, bytes.
    pub sum: i64,
    /// The largest change, bytes (0 when none was measured).
    pub max: i64,
}

impl Series {
    pub(crate) fn new(config: &RecorderConfig, category: Category) -> Self {
        // A memory series holds samples in the ring only: its histogram is
        // never recorded into, so it gets the smallest layout there is.
        let layout = match category {
            Category::Memory => HistogramLayout::new(1, 2, 0).unwrap_or(config.layout),
            _ => config.layout,
        };
        Self {
            since_start: LatencyHistogram::new(layout),
            recent: (category == Category::Http).then(|| {
                RecentWindow::new(
                    config.window_layout,
                    config.window_interval_ns,
                    config.window_intervals,
                )
            }),
            lock: SeqLock::new(),
            totals: core::array::from_fn(|_| {
                LinePadded(Totals {
                    bytes: AtomicU64::new(0),
                    rows: AtomicU64::new(0),
                    memory_n: AtomicU64::new(0),
                    memory_sum: AtomicI64::new(0),
                    memory_max: AtomicI64::new(i64::MIN),
                })
            }),
            status_codes: core::array::from_fn(|_| AtomicU32::new(0)),
            status_counts: core::array::from_fn(|_| {
                LinePadded(core::array::from_fn(|_| AtomicU64::new(0)))
            }),
            status_overflow: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    #[inline]
    pub(crate) fn record(&self, stripe: usize, r: &MetricRecord) {
        self.since_start.record_striped(stripe, r.duration_ns);
        let totals = &self.totals[stripe % STRIPES];
        if r.bytes != 0 {
            totals.bytes.fetch_add(r.bytes, Ordering::Relaxed);
        }
        if r.rows != 0 {
            totals.rows.fetch_add(r.rows, Ordering::Relaxed);
        }
        if r.category == Category::Http && r.status != 0 {
            self.count_status(stripe, r.status);
        }
    }

    #[inline]
    pub(crate) fn record_memory_delta(&self, stripe: usize, delta: i64) {
        let totals = &self.totals[stripe % STRIPES];
        totals.memory_n.fetch_add(1, Ordering::Relaxed);
        totals.memory_sum.fetch_add(delta, Ordering::Relaxed);
        if delta > totals.memory_max.load(Ordering::Relaxed) {
            totals.memory_max.fetch_max(delta, Ordering::Relaxed);
        }
    }

    #[inline]
    fn count_status(&self, stripe: usize, status: u16) {
        let class = usize::from(status / 100);
        if !(1..=5).contains(&class) {
            self.status_overflow[0].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let status = u32::from(status);
        let counts = &self.status_counts[stripe % STRIPES];
        for (code, count) in self.status_codes.iter().zip(counts.iter()) {
            let mut c = code.load(Ordering::Relaxed);
            if c == 0 {
                c = match code.compare_exchange(0, status, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => status,
                    Err(now) => now,
                };
            }
            if c == status {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.status_overflow[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the recent window's checkpoint for the interval of `now_ns`.
    pub fn rotate(&self, now_ns: u64) {
        if let Some(recent) = &self.recent {
            recent.rotate(now_ns, &self.since_start);
        }
    }

    /// Zeroes every figure of the series (its id and name stay). A
    /// [`read`](Self::read) never sees it half done; records racing it
    /// land on either side. Cold path.
    pub fn reset(&self) {
        self.lock.write(|| {
            match &self.recent {
                // The window zeroes its source inside its own lock.
                Some(recent) => recent.reset(&self.since_start),
                None => self.since_start.reset(),
            }
            // Swaps, not stores: see `LatencyHistogram::reset`.
            for t in self.totals.iter() {
                t.bytes.swap(0, Ordering::Relaxed);
                t.rows.swap(0, Ordering::Relaxed);
                t.memory_n.swap(0, Ordering::Relaxed);
                t.memory_sum.swap(0, Ordering::Relaxed);
                t.memory_max.swap(i64::MIN, Ordering::Relaxed);
            }
            let striped = self.status_counts.iter().flat_map(|s| s.iter());
            for n in striped.chain(&self.status_overflow) {
                n.swap(0, Ordering::Relaxed);
            }
        });
    }

    /// Runs `f` on this series until no [`reset`](Self::reset) went
    /// through meanwhile, so every figure `f` reads comes from one side of
    /// any reset. `f` may run more than once. It gets a [`SeriesView`],
    /// which can only read: a `reset` inside `f` (which would make every
    /// run of `f` retry, forever) does not compile.
    ///
    /// # Examples
    ///
    /// ```
    /// use starpunk_perf::{Category, FakeClock, MetricRecord, Recorder, RecorderConfig};
    ///
    /// let rec = Recorder::new(RecorderConfig::default(), FakeClock::new(0)).unwrap();
    /// let op = rec.register(Category::Http, "GET /");
    /// rec.record(MetricRecord { category: Category::Http, operation: op, bytes: 10, ..MetricRecord::default() });
    /// let s = rec.series(op).unwrap();
    /// assert_eq!(s.read(|s| (s.count(), s.bytes())), (1, 10));
    /// ```
    ///
    /// ```compile_fail
    /// # use starpunk_perf::{Category, FakeClock, Recorder, RecorderConfig};
    /// # let rec = Recorder::new(RecorderConfig::default(), FakeClock::new(0)).unwrap();
    /// # let s = rec.series(rec.register(Category::Http, "GET /")).unwrap();
    /// s.read(|s| s.reset()); // no `reset` on a view
    /// ```
    pub fn read<R>(&self, mut f: impl FnMut(&SeriesView<'_>) -> R) -> R {
        let view = SeriesView(self);
        self.lock.read(|| f(&view))
    }

    /// Every duration since start (or the last [`reset`](Self::reset)),
    /// nanoseconds.
    pub fn since_start(&self) -> &LatencyHistogram {
        &self.since_start
    }

    /// The recent window over [`since_start`](Self::since_start) (HTTP
    /// series only).
    pub fn recent(&self) -> Option<&RecentWindow> {
        self.recent.as_ref()
    }

    /// Events recorded (the since-start histogram's count).
    pub fn count(&self) -> u64 {
        self.since_start.count()
    }

    /// Total response bytes.
    pub fn bytes(&self) -> u64 {
        self.totals
            .iter()
            .map(|t| t.bytes.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Total rows.
    pub fn rows(&self) -> u64 {
        self.totals
            .iter()
            .map(|t| t.rows.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// The RSS changes recorded for this series.
    pub fn memory_deltas(&self) -> MemoryDeltas {
        let mut m = MemoryDeltas::default();
        let mut max = i64::MIN;
        for t in self.totals.iter() {
            m.n = m.n.wrapping_add(t.memory_n.load(Ordering::Relaxed));
            m.sum = m.sum.wrapping_add(t.memory_sum.load(Ordering::Relaxed));
            max = max.max(t.memory_max.load(Ordering::Relaxed));
        }
        m.max = if m.n == 0 { 0 } else { max };
        m
    }

    /// `(status, count)` for each status with its own slot, then
    /// `(class, count)` for the codes that found none, where `class` is a
    /// single digit: `5` means "other 5xx codes", `0` codes outside
    /// 100..=599. Only non-zero counts.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.status_codes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let n = self
                    .status_counts
                    .iter()
                    .map(|s| s[i].load(Ordering::Relaxed))
                    .fold(0, u64::wrapping_add);
                (c.load(Ordering::Relaxed) as u16, n)
            })
            .filter(|&(c, n)| c != 0 && n != 0)
            .chain(
                self.status_overflow
                    .iter()
                    .enumerate()
                    .map(|(class, n)| (class as u16, n.load(Ordering::Relaxed)))
                    .filter(|&(_, n)| n > 0),
            )
    }

    /// Exact counts per status class: index `c` for `c`xx (1 to 5), index 0
    /// for codes outside 100..=599.
    pub fn status_classes(&self) -> [u64; 6] {
        let mut classes = [0u64; 6];
        for (code, n) in self.statuses() {
            let class = if code < 10 { code } else { code / 100 };
            classes[usize::from(class).min(5)] += n;
        }
        classes
    }

    /// Bytes this series occupies.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            - core::mem::size_of::<LatencyHistogram>()
            - core::mem::size_of::<RecentWindow>()
            + self.since_start.memory_bytes()
            + self.recent.as_ref().map_or(0, RecentWindow::memory_bytes)
    }
}

/// A [`Series`] inside [`Series::read`]: its figures, and no way to
/// change them.
#[derive(Clone, Copy)]
pub struct SeriesView<'a>(&'a Series);

impl SeriesView<'_> {
    /// See [`Series::count`].
    pub fn count(&self) -> u64 {
        self.0.count()
    }
    /// See [`Series::since_start`].
    pub fn since_start(&self) -> &LatencyHistogram {
        self.0.since_start()
    }
    /// See [`Series::recent`].
    pub fn recent(&self) -> Option<&RecentWindow> {
        self.0.recent()
    }
    /// See [`Series::bytes`].
    pub fn bytes(&self) -> u64 {
        self.0.bytes()
    }
    /// See [`Series::rows`].
    pub fn rows(&self) -> u64 {
        self.0.rows()
    }
    /// See [`Series::memory_deltas`].
    pub fn memory_deltas(&self) -> MemoryDeltas {
        self.0.memory_deltas()
    }
    /// See [`Series::statuses`].
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.0.statuses()
    }
    /// See [`Series::status_classes`].
    pub fn status_classes(&self) -> [u64; 6] {
        self.0.status_classes()
    }
}

impl core::fmt::Debug for Series {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Series")
            .field("count", &self.count())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn http(status: u16) -> MetricRecord {
        MetricRecord {
            category: Category::Http,
            status,
            bytes: 10,
            ..MetricRecord::default()
        }
    }

    #[test]
    fn status_mix_exact_then_per_class() {
        let s = Series::new(&RecorderConfig::default(), Category::Http);
        for code in [
            200, 200, 404, 301, 302, 303, 304, 400, 401, 500, 503, 503, 42,
        ] {
            s.record(0, &http(code));
        }
        let mix: alloc::vec::Vec<_> = s.statuses().collect();
        assert_eq!(
            mix,
            [
                (200, 2),
                (404, 1),
                (301, 1),
                (302, 1),
                (303, 1),
                (304, 1),
                (400, 1),
                (401, 1),
                (0, 1),
                (5, 3)
            ]
        );
        assert_eq!(s.status_classes(), [1, 0, 2, 4, 3, 3]);
        assert_eq!(s.bytes(), 130);
        assert_eq!(s.count(), 13);
    }

    #[test]
    fn a_5xx_after_eight_other_codes_is_still_an_error() {
        let s = Series::new(&RecorderConfig::default(), Category::Http);
        for code in [200, 201, 204, 301, 302, 304, 400, 404] {
            s.record(0, &http(code));
        }
        s.record(1, &http(500));
        assert_eq!(s.status_classes()[5], 1);
    }

    #[test]
    fn status_counts_of_every_stripe_add_up() {
        let s = Series::new(&RecorderConfig::default(), Category::Http);
        // Stripe 0 claims the code's slot; the others count into the same
        // slot on their own lines (stripes wrap modulo STRIPES).
        for stripe in 0..2 * STRIPES {
            s.record(stripe, &http(404));
            s.record(stripe, &http(200));
        }
        let per_stripe: alloc::vec::Vec<u64> = s
            .status_counts
            .iter()
            .map(|c| c[0].load(Ordering::Relaxed))
            .collect();
        assert_eq!(per_stripe, [2; STRIPES]);
        let mix: alloc::vec::Vec<_> = s.statuses().collect();
        assert_eq!(mix, [(404, 8), (200, 8)]);
        s.reset();
        assert_eq!(s.statuses().count(), 0);
    }

    #[test]
    fn memory_deltas_and_reset() {
        let s = Series::new(&RecorderConfig::default(), Category::Http);
        assert_eq!(s.memory_deltas(), MemoryDeltas::default());
        s.record_memory_delta(0, -4096);
        s.record_memory_delta(1, 8192);
        s.record_memory_delta(2, 0);
        assert_eq!(
            s.memory_deltas(),
            MemoryDeltas {
                n: 3,
                sum: 4096,
                max: 8192
            }
        );
        s.record(0, &http(200));
        s.reset();
        assert_eq!(s.memory_deltas(), MemoryDeltas::default());
        assert_eq!((s.count(), s.bytes(), s.statuses().count()), (0, 0, 0));
        assert_eq!(s.read(|s| s.count()), 0);
    }
}
