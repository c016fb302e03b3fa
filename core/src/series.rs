//! Everything kept per operation.

use crate::latency_histogram::LatencyHistogram;
use crate::layout::HistogramLayout;
use crate::recent_window::RecentWindow;
use crate::record::{Category, MetricRecord};
use crate::recorder::RecorderConfig;
use crate::stripe::{LinePadded, STRIPES};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Distinct HTTP status codes counted exactly per operation; the rest are
/// counted together under "other".
pub const STATUS_SLOTS: usize = 8;

/// Per-operation aggregates: since-start and recent latency, bytes, rows,
/// status mix and the events sampling left out.
pub struct Series {
    /// Every recorded duration since start, nanoseconds.
    pub since_start: LatencyHistogram,
    /// Checkpoints of `since_start` for the last 15 minutes; see
    /// [`Series::rotate`] and [`RecentWindow`]. Kept for HTTP series only
    /// (the dashboard's "last 15 minutes" is per route).
    pub recent: Option<RecentWindow>,
    /// Bytes and rows, one pair per stripe so writers do not share a line.
    totals: [LinePadded<Totals>; STRIPES],
    sampled_out: AtomicU64,
    /// `status_codes[i]` is 0 (free) or an HTTP status claimed once by CAS.
    status_codes: [AtomicU32; STATUS_SLOTS],
    status_counts: [AtomicU64; STATUS_SLOTS],
    status_other: AtomicU64,
}

struct Totals {
    bytes: AtomicU64,
    rows: AtomicU64,
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
            totals: core::array::from_fn(|_| {
                LinePadded(Totals {
                    bytes: AtomicU64::new(0),
                    rows: AtomicU64::new(0),
                })
            }),
            sampled_out: AtomicU64::new(0),
            status_codes: core::array::from_fn(|_| AtomicU32::new(0)),
            status_counts: core::array::from_fn(|_| AtomicU64::new(0)),
            status_other: AtomicU64::new(0),
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
            self.count_status(r.status);
        }
    }

    #[inline]
    fn count_status(&self, status: u16) {
        let status = u32::from(status);
        for (code, count) in self.status_codes.iter().zip(&self.status_counts) {
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
        self.status_other.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the recent window's checkpoint for the interval of `now_ns`.
    pub fn rotate(&self, now_ns: u64) {
        if let Some(recent) = &self.recent {
            recent.rotate(now_ns, &self.since_start);
        }
    }

    /// Zeroes every figure of the series (its id and name stay).
    pub fn reset(&self) {
        self.since_start.reset();
        if let Some(recent) = &self.recent {
            recent.reset();
        }
        for t in self.totals.iter() {
            t.bytes.store(0, Ordering::Relaxed);
            t.rows.store(0, Ordering::Relaxed);
        }
        self.sampled_out.store(0, Ordering::Relaxed);
        for n in self.status_counts.iter() {
            n.store(0, Ordering::Relaxed);
        }
        self.status_other.store(0, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn skip(&self) {
        self.sampled_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Recorded events (the since-start histogram's count).
    pub fn recorded(&self) -> u64 {
        self.since_start.count()
    }

    /// Events sampling left out.
    pub fn sampled_out(&self) -> u64 {
        self.sampled_out.load(Ordering::Relaxed)
    }

    /// Events seen: recorded plus sampled out.
    pub fn seen(&self) -> u64 {
        self.recorded() + self.sampled_out()
    }

    /// Total response bytes of recorded events.
    pub fn bytes(&self) -> u64 {
        self.totals
            .iter()
            .map(|t| t.bytes.load(Ordering::Relaxed))
            .sum()
    }

    /// Total rows of recorded events.
    pub fn rows(&self) -> u64 {
        self.totals
            .iter()
            .map(|t| t.rows.load(Ordering::Relaxed))
            .sum()
    }

    /// `(status, count)` for each status seen, then `(0, n)` for the codes
    /// past the first [`STATUS_SLOTS`] distinct ones, when `n > 0`.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.status_codes
            .iter()
            .zip(&self.status_counts)
            .map(|(c, n)| (c.load(Ordering::Relaxed) as u16, n.load(Ordering::Relaxed)))
            .filter(|&(c, n)| c != 0 && n != 0)
            .chain(Some((0, self.status_other.load(Ordering::Relaxed))).filter(|&(_, n)| n > 0))
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

impl core::fmt::Debug for Series {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Series")
            .field("recorded", &self.recorded())
            .field("sampled_out", &self.sampled_out())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn status_mix_exact_then_other() {
        let s = Series::new(&RecorderConfig::default(), Category::Http);
        let http = |status| MetricRecord {
            category: Category::Http,
            status,
            bytes: 10,
            ..MetricRecord::default()
        };
        for code in [200, 200, 404, 301, 302, 303, 304, 400, 401, 500, 503] {
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
                (0, 2)
            ]
        );
        assert_eq!(s.bytes(), 110);
        assert_eq!(s.recorded(), 11);
    }
}
