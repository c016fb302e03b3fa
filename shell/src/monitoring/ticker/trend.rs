//! The last fifteen minutes, minute by minute: what the overview's charts
//! and trends are drawn from.
//!
//! The ticker closes one point per wall-clock minute by differencing the
//! cumulative figures of every HTTP series (counts, status classes, the
//! merged latency histogram) against the previous minute's. Nothing here
//! runs on the request path; the points are exact at any sample rate,
//! because the series they difference are.

use std::collections::VecDeque;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Complete minutes kept (the current, partial minute comes on top).
pub const MINUTES: usize = 15;

/// Cumulative figures of all HTTP series at one moment (since start or
/// the last clear).
#[derive(Clone, Debug)]
pub struct Totals {
    /// Unix seconds when taken.
    pub at_unix: f64,
    /// Requests.
    pub requests: u64,
    /// 5xx responses.
    pub errors_5xx: u64,
    /// 4xx responses.
    pub client_errors_4xx: u64,
    /// Slow statements.
    pub slow_queries: u64,
    /// Latency of every request, nanoseconds.
    pub latency: Histogram<u64>,
}

/// One minute (or the part of it since start, a clear, or up to now).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MinutePoint {
    /// Unix seconds at the point's start.
    pub start_unix: u64,
    /// Seconds the point covers: 60, or less for the current minute and
    /// the minute of a start or clear.
    pub seconds: f64,
    /// Requests.
    pub requests: u64,
    /// Requests per second over the point.
    pub requests_per_second: f64,
    /// 5xx responses.
    pub errors_5xx: u64,
    /// 4xx responses.
    pub client_errors_4xx: u64,
    /// Median latency, milliseconds (0 without requests).
    pub p50_ms: f64,
    /// 99th percentile, milliseconds (0 without requests).
    pub p99_ms: f64,
    /// Slow statements.
    pub slow_queries: u64,
    /// Resident memory at the point's end, bytes (0: not tracked).
    pub rss_bytes: u64,
}

/// The overview: the recent minutes, their figures, and what changed.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Overview {
    /// The closed minutes (up to [`MINUTES`]) and the current one, oldest
    /// first.
    pub points: Vec<MinutePoint>,
    /// All of `points` together.
    pub window: PeriodFigures,
    /// The last five points (the latest four minutes and the current one).
    pub last_5_minutes: PeriodFigures,
    /// The points before those.
    pub before: PeriodFigures,
}

/// Figures over several points.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PeriodFigures {
    /// Seconds covered.
    pub seconds: f64,
    /// Requests.
    pub requests: u64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// 5xx responses.
    pub errors_5xx: u64,
    /// 4xx responses.
    pub client_errors_4xx: u64,
    /// 5xx over all requests (0 without requests).
    pub error_rate: f64,
    /// Slow statements.
    pub slow_queries: u64,
}

impl PeriodFigures {
    /// The figures of `points`, whose requests' latencies together are
    /// `latency` (merged histograms: exact quantiles, not averages of
    /// percentiles).
    pub fn of(points: &[MinutePoint], latency: &Histogram<u64>) -> PeriodFigures {
        let mut f = PeriodFigures::default();
        for p in points {
            f.seconds += p.seconds;
            f.requests += p.requests;
            f.errors_5xx += p.errors_5xx;
            f.client_errors_4xx += p.client_errors_4xx;
            f.slow_queries += p.slow_queries;
        }
        if f.seconds > 0.0 {
            f.requests_per_second = f.requests as f64 / f.seconds;
        }
        if f.requests > 0 {
            f.error_rate = f.errors_5xx as f64 / f.requests as f64;
        }
        if !latency.is_empty() {
            f.p50_ms = ms(latency.value_at_quantile(0.5));
            f.p99_ms = ms(latency.value_at_quantile(0.99));
        }
        f
    }
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// Closed points in the overview's "last five minutes" (the current
/// minute is the fifth).
const RECENT_CLOSED: usize = 4;

/// The closed minutes, the totals at the last close, and the merged
/// latency of the closed minutes (kept so a dashboard view merges only the
/// current minute into them).
#[derive(Debug)]
pub struct Trend {
    points: VecDeque<MinutePoint>,
    /// Each closed point's latency buckets `(value ns, count)`, for
    /// merging points into the quantiles of a longer period.
    buckets: VecDeque<Vec<(u64, u64)>>,
    last: Option<Totals>,
    /// Unix minute of the last close.
    minute: u64,
    /// Latency of the last [`RECENT_CLOSED`] closed points, merged.
    recent: Option<Histogram<u64>>,
    /// Latency of the closed points before those, merged.
    earlier: Option<Histogram<u64>>,
}

impl Default for Trend {
    fn default() -> Self {
        Trend {
            points: VecDeque::with_capacity(MINUTES + 1),
            buckets: VecDeque::with_capacity(MINUTES + 1),
            last: None,
            minute: 0,
            recent: None,
            earlier: None,
        }
    }
}

impl Trend {
    /// Forgets every point; the next ones difference against `start`
    /// (zero totals at a start or clear).
    pub fn restart(&mut self, start: Totals) {
        self.points.clear();
        self.buckets.clear();
        self.minute = start.at_unix as u64 / 60;
        self.last = Some(start);
        self.merge_closed();
    }

    /// Recomputes the merged latency of the closed points (at each close:
    /// the ticker's work, not a dashboard view's).
    fn merge_closed(&mut self) {
        let Some(last) = &self.last else { return };
        let mut recent = last.latency.clone();
        recent.reset();
        let mut earlier = recent.clone();
        let split = self.buckets.len().saturating_sub(RECENT_CLOSED);
        for (i, b) in self.buckets.iter().enumerate() {
            let into = if i < split { &mut earlier } else { &mut recent };
            for &(v, n) in b {
                into.saturating_record_n(v, n);
            }
        }
        self.recent = Some(recent);
        self.earlier = Some(earlier);
    }

    /// True when `now_unix` is in a later minute than the last close.
    pub fn due(&self, now_unix: f64) -> bool {
        now_unix as u64 / 60 > self.minute
    }

    /// Closes the point that ends at `now`: the change since the last
    /// close. A `now` whose counts went down (a clear raced it) restarts.
    pub fn close(&mut self, now: Totals, rss_bytes: u64) {
        if self.last.as_ref().is_some_and(|l| now.at_unix < l.at_unix) {
            // Taken before a clear that restarted the trend: stale.
            return;
        }
        self.minute = now.at_unix as u64 / 60;
        match point_between(self.last.as_ref(), &now, rss_bytes) {
            Some((p, latency)) => {
                if self.points.len() == MINUTES {
                    self.points.pop_front();
                    self.buckets.pop_front();
                }
                self.points.push_back(p);
                self.buckets.push_back(
                    latency
                        .iter_recorded()
                        .map(|v| (v.value_iterated_to(), v.count_at_value()))
                        .collect(),
                );
                self.last = Some(now);
                self.merge_closed();
            }
            None => self.restart(now),
        }
    }

    /// The overview at `now`: the closed points and the current minute so
    /// far, and their figures. Cheap: one histogram difference for the
    /// current minute and two merges.
    pub fn overview(&self, now: &Totals, rss_bytes: u64) -> Overview {
        let mut points: Vec<MinutePoint> = self.points.iter().cloned().collect();
        let (current, mut latency) = match point_between(self.last.as_ref(), now, rss_bytes) {
            Some(c) => c,
            // A clear raced this view: no current minute.
            None => (MinutePoint::default(), empty_like(&now.latency)),
        };
        // A current minute only just begun is left out unless it already
        // holds requests: no count is ever dropped.
        if current.seconds >= 0.5 || current.requests > 0 || points.is_empty() {
            points.push(current);
        }
        let split = self.points.len().saturating_sub(RECENT_CLOSED);
        if let Some(recent) = &self.recent {
            let _ = latency.add(recent);
        }
        let last_5_minutes = PeriodFigures::of(&points[split.min(points.len())..], &latency);
        let earlier = self
            .earlier
            .clone()
            .unwrap_or_else(|| empty_like(&now.latency));
        let before = PeriodFigures::of(&points[..split.min(points.len())], &earlier);
        let _ = latency.add(&earlier);
        Overview {
            window: PeriodFigures::of(&points, &latency),
            last_5_minutes,
            before,
            points,
        }
    }
}

/// An empty histogram of `h`'s layout.
fn empty_like(h: &Histogram<u64>) -> Histogram<u64> {
    let mut e = h.clone();
    e.reset();
    e
}

/// The point from `before` (or from nothing) to `after`, with its
/// latency histogram; `None` when a count went down in between (a clear).
fn point_between(
    before: Option<&Totals>,
    after: &Totals,
    rss_bytes: u64,
) -> Option<(MinutePoint, Histogram<u64>)> {
    let mut latency = after.latency.clone();
    let (start, requests, e5, e4, slow) = match before {
        Some(b) => {
            latency.subtract(&b.latency).ok()?;
            (
                b.at_unix,
                after.requests.checked_sub(b.requests)?,
                after.errors_5xx.checked_sub(b.errors_5xx)?,
                after.client_errors_4xx.checked_sub(b.client_errors_4xx)?,
                after.slow_queries.checked_sub(b.slow_queries)?,
            )
        }
        None => (
            after.at_unix,
            after.requests,
            after.errors_5xx,
            after.client_errors_4xx,
            after.slow_queries,
        ),
    };
    let seconds = (after.at_unix - start).max(0.0);
    let has = !latency.is_empty();
    let point = MinutePoint {
        start_unix: start as u64,
        seconds,
        requests,
        requests_per_second: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        errors_5xx: e5,
        client_errors_4xx: e4,
        p50_ms: if has {
            ms(latency.value_at_quantile(0.5))
        } else {
            0.0
        },
        p99_ms: if has {
            ms(latency.value_at_quantile(0.99))
        } else {
            0.0
        },
        slow_queries: slow,
        rss_bytes,
    };
    Some((point, latency))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Histogram<u64> {
        Histogram::new_with_bounds(1_000, 60_000_000_000, 2).unwrap()
    }

    fn totals(at: f64, latencies_ms: &[u64], e5: u64) -> Totals {
        let mut latency = empty();
        for &l in latencies_ms {
            latency.record(l * 1_000_000).unwrap();
        }
        Totals {
            at_unix: at,
            requests: latencies_ms.len() as u64,
            errors_5xx: e5,
            client_errors_4xx: 0,
            slow_queries: 0,
            latency,
        }
    }

    #[test]
    fn a_point_holds_only_its_minutes_requests() {
        let mut t = Trend::default();
        t.restart(totals(600.0, &[], 0));
        // Minute one: 10 requests of 1 ms; minute two adds 10 of 100 ms.
        let first: Vec<u64> = vec![1; 10];
        t.close(totals(660.0, &first, 0), 0);
        let mut both = first.clone();
        both.extend([100; 10]);
        t.close(totals(720.0, &both, 2), 0);
        let o = t.overview(&totals(720.0, &both, 2), 0);
        let pts = &o.points;
        assert_eq!(pts.len(), 2, "no empty current point at the boundary");
        assert_eq!((pts[0].requests, pts[1].requests), (10, 10));
        assert!((pts[0].p99_ms - 1.0).abs() < 0.02, "{:?}", pts[0]);
        assert!((pts[1].p50_ms - 100.0).abs() < 1.0, "{:?}", pts[1]);
        assert_eq!((pts[0].errors_5xx, pts[1].errors_5xx), (0, 2));
        assert_eq!(pts[1].start_unix, 660);
        assert!((pts[1].requests_per_second - 10.0 / 60.0).abs() < 1e-9);
        // Merged, the two minutes give the quantiles of all 20 requests.
        let all = &o.window;
        assert_eq!(all.requests, 20);
        assert!(
            (all.p99_ms - 100.0).abs() < 1.0 && (all.p50_ms - 1.0).abs() < 0.02,
            "{all:?}"
        );
        assert!((all.error_rate - 0.1).abs() < 1e-12);
        assert_eq!((o.last_5_minutes.requests, o.before.requests), (20, 0));
    }

    #[test]
    fn merged_quantiles_match_one_histogram_of_every_request() {
        // Twenty minutes of different latencies, then part of a minute:
        // the window, the last five points and the rest each give the
        // quantiles of one histogram of their requests.
        let mut t = Trend::default();
        t.restart(totals(0.0, &[], 0));
        let mut all = empty();
        let mut minutes: Vec<Histogram<u64>> = Vec::new();
        let mut x: u64 = 7;
        for minute in 0..=20u64 {
            let mut h = empty();
            for _ in 0..500 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = 10_000 + (x >> 33) % (100_000 * (minute % 7 + 1));
                h.record(v).unwrap();
                all.record(v).unwrap();
            }
            minutes.push(h);
            let now = Totals {
                at_unix: 60.0 * (minute + 1) as f64 - if minute == 20 { 30.0 } else { 0.0 },
                requests: 500 * (minute + 1),
                errors_5xx: 0,
                client_errors_4xx: 0,
                slow_queries: 0,
                latency: all.clone(),
            };
            if minute < 20 {
                t.close(now, 0);
            } else {
                let o = t.overview(&now, 0);
                assert_eq!(o.points.len(), MINUTES + 1);
                let merged = |from: usize, to: usize| {
                    let mut m = empty();
                    for h in &minutes[from..to] {
                        m.add(h).unwrap();
                    }
                    m
                };
                // Points: minutes 5..=19 closed, minute 20 current.
                for (fig, hist, n) in [
                    (&o.window, merged(5, 21), 16 * 500),
                    (&o.last_5_minutes, merged(16, 21), 5 * 500),
                    (&o.before, merged(5, 16), 11 * 500),
                ] {
                    assert_eq!(fig.requests, n);
                    assert_eq!(fig.p50_ms, ms(hist.value_at_quantile(0.5)), "{fig:?}");
                    assert_eq!(fig.p99_ms, ms(hist.value_at_quantile(0.99)), "{fig:?}");
                }
                assert_eq!(o.last_5_minutes.seconds, 4.0 * 60.0 + 30.0);
            }
        }
    }

    #[test]
    fn keeps_fifteen_minutes_and_restarts_when_counts_fall() {
        let mut t = Trend::default();
        t.restart(totals(0.0, &[], 0));
        let mut lat = Vec::new();
        for m in 1..=20u64 {
            lat.push(m);
            t.close(totals(60.0 * m as f64, &lat, 0), 0);
        }
        let o = t.overview(&totals(1_230.0, &lat, 0), 0);
        assert_eq!(o.points.len(), MINUTES + 1, "15 closed and the current one");
        assert_eq!(o.points[0].start_unix, 300);
        assert_eq!(o.points[MINUTES].seconds, 30.0);
        assert_eq!((o.last_5_minutes.requests, o.before.requests), (4, 11));
        // A clear: the counts fall, the trend starts again from there.
        t.close(totals(1_260.0, &[5], 0), 0);
        let points = |t: &Trend| t.overview(&totals(1_270.0, &[5, 6], 0), 0).points.len();
        assert_eq!(points(&t), 1);
        assert!(t.due(1_320.0) && !t.due(1_319.0));
        // Totals taken before that clear are stale, not a point.
        t.close(totals(1_250.0, &lat, 0), 0);
        assert_eq!(points(&t), 1);
    }
}
