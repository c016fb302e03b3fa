//! The dashboard over a time range from the history (`?range=1h`, `24h`,
//! `7d`, `30d`): the same overview, routes and patterns as the live view,
//! built from stored aggregates; starts (deploys) marked; the current
//! version compared with the previous one.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::monitoring::own::is_own;
use crate::monitoring::ticker::history::{
    coarsest_within, Accumulator, Counts, Damaged, Head, Layouts, Piece, ReadOnly, Reader, Scan,
    SeriesName, KIND_ALL, KIND_PATTERN, KIND_ROUTE,
};
use crate::monitoring::ticker::trend::{MinutePoint, Overview, PeriodFigures};
use crate::monitoring::views::{rfc3339, DatabaseView, EndpointStats, PatternStats, PerfSnapshot};
use crate::monitoring::Monitor;

mod chart;
mod compare;
mod merge;

use chart::*;
use compare::*;
pub use compare::{Compare, CompareRow};
use merge::*;

/// A range the dashboard shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// The last 15 minutes, live (no history needed).
    Live,
    /// The last hour.
    Hour,
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
    /// The last 30 days.
    Month,
}

impl Range {
    /// Every range, in the order the dashboard offers them.
    pub const ALL: [Range; 5] = [
        Range::Live,
        Range::Hour,
        Range::Day,
        Range::Week,
        Range::Month,
    ];

    /// `?range=` (absent: live).
    pub fn parse(v: Option<&str>) -> Option<Range> {
        match v.unwrap_or("15m") {
            "15m" => Some(Range::Live),
            "1h" => Some(Range::Hour),
            "24h" => Some(Range::Day),
            "7d" => Some(Range::Week),
            "30d" => Some(Range::Month),
            _ => None,
        }
    }

    /// Its name in URLs and exports.
    pub fn name(self) -> &'static str {
        match self {
            Range::Live => "15m",
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    /// Its name on the page.
    pub fn label(self) -> &'static str {
        match self {
            Range::Live => "15 min (live)",
            Range::Hour => "1 hour",
            Range::Day => "24 hours",
            Range::Week => "7 days",
            Range::Month => "30 days",
        }
    }

    /// Seconds it spans.
    pub fn seconds(self) -> i64 {
        match self {
            Range::Live => 900,
            Range::Hour => 3_600,
            Range::Day => 86_400,
            Range::Week => 7 * 86_400,
            Range::Month => 30 * 86_400,
        }
    }

    /// Seconds per chart point.
    pub fn bucket_seconds(self) -> i64 {
        match self {
            Range::Live | Range::Hour => 60,
            Range::Day => 900,
            Range::Week => 2 * 3_600,
            Range::Month => 12 * 3_600,
        }
    }
}

/// A start of the blog, as recorded in the history.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StartView {
    /// Unix seconds.
    pub at_unix: i64,
    /// RFC 3339.
    pub at: String,
    /// The version that started.
    pub version: String,
}

/// What a range view adds to the snapshot.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RangeInfo {
    /// `1h`, `24h`, `7d` or `30d`.
    pub range: String,
    /// Unix seconds.
    pub from_unix: i64,
    /// Unix seconds.
    pub to_unix: i64,
    /// Seconds per chart point.
    pub bucket_seconds: i64,
    /// Starts (deploys) within the range.
    pub starts: Vec<StartView>,
    /// The current version against the previous one, when the history
    /// holds both.
    pub compare: Option<Compare>,
    /// Seconds of history the range really covers (less when the history
    /// is younger than the range).
    pub covered_seconds: i64,
    /// Stored rows left out because they could not be read (a damaged
    /// file; each is also logged).
    pub damaged_rows: u64,
}

/// A route's requests, p50 and p99 (ms) and 5xx rate over a run.
type RunFigures = BTreeMap<String, (u64, f64, f64, f64)>;

impl Monitor {
    /// The snapshot over `range` from the history; `Err` says why there
    /// is none (history off, or failing).
    pub fn range_snapshot(
        &self,
        range: Range,
        database: DatabaseView,
    ) -> Result<PerfSnapshot, String> {
        let Some(inner) = self.inner() else {
            return Err("monitoring is off".into());
        };
        // The history's lock only long enough to read its state: the view
        // reads through a read-only connection of its own, so the ticker's
        // writes never wait on it.
        let (history, dir) = {
            let Some(state) = self.history() else {
                return Err("the history is unavailable".into());
            };
            if state.store.is_none() {
                return Err(match &state.error {
                    Some(e) => format!("the history is unavailable: {e}"),
                    None => "the history is off: set STARPUNK_PERF_HISTORY_DAYS to keep it".into(),
                });
            }
            (
                crate::monitoring::views::HistoryView::from_state(
                    self.config().history_days,
                    &state,
                ),
                state.dir.clone(),
            )
        };
        let Some(dir) = dir else {
            return Err("the history is unavailable".into());
        };
        let read = ReadOnly::open(&dir).map_err(|e| format!("the history is unavailable: {e}"))?;
        let store = &read.reader();
        let now =
            inner.recorder.anchor().to_unix_ns(inner.recorder.now_ns()) as i64 / 1_000_000_000;
        let from = now - range.seconds();
        let layouts = store.layouts()?;
        let names = store.series()?;
        // Charts: all requests' rows, by the minute up to a day (15-minute
        // points read quarter-hour rows where they are rolled up), by the
        // hour beyond (and six hours for 12-hour points): each row within
        // one point. Tables: the fewest rows. Every row is added straight
        // from its blob into one accumulator per series (and per chart
        // point): no histogram per row.
        let to = now + 60;
        let bucket = range.bucket_seconds();
        let mut chart = Chart::new(&layouts, bucket);
        let all_id = store.all_series()?;
        if let Some(all_id) = all_id {
            let pieces = if range.seconds() <= 86_400 {
                store.plan_fine(from, to)?
            } else {
                store.plan_hours(from, to, Some(KIND_ALL))?
            };
            let pieces = store.refine(pieces, coarsest_within(bucket), Some(KIND_ALL))?;
            for p in pieces {
                store.scan(p, Scan::Series(all_id), &mut |h, blob| chart.add(h, blob))?;
            }
        }
        let mut tables = Gather::new(&layouts);
        tables.rows = chart.rows;
        let (routes, patterns) = (
            store.plan_coarse(from, to, Some(KIND_ROUTE))?,
            store.plan_coarse(from, to, Some(KIND_PATTERN))?,
        );
        if routes == patterns {
            // One read for both kinds.
            tables.read(store, &routes, Scan::Kinds(KIND_ROUTE, KIND_PATTERN))?;
        } else {
            tables.read(store, &routes, Scan::Kind(KIND_ROUTE))?;
            tables.read(store, &patterns, Scan::Kind(KIND_PATTERN))?;
        }
        let all_starts = store.starts(0)?;
        let span = Span::of(&tables.rows, &all_starts, from, now);
        let covered = span.seconds();
        let points = chart.points(span);
        let all = &chart.all;
        let mut window = match all.latency.to_histogram() {
            Some(h) if all.first_start.is_some() => PeriodFigures::of(&points, &h),
            _ => PeriodFigures::default(),
        };
        window.seconds = covered as f64;
        if covered > 0 {
            window.requests_per_second = window.requests as f64 / covered as f64;
        }
        // Table lines in the order their series first appear (the earliest
        // row, then the name), then by p99 or total time (ties keep it).
        let in_order = |kind| {
            let mut v = tables.of_kind(&names, kind);
            v.sort_by(|a, b| (a.1.first_start, a.0).cmp(&(b.1.first_start, b.0)));
            v
        };
        let mut endpoints: Vec<EndpointStats> = in_order(KIND_ROUTE)
            .into_iter()
            .map(|(name, r)| endpoint(name, r))
            .collect();
        endpoints.sort_by(|a, b| b.p99_ms.total_cmp(&a.p99_ms));
        let mut query_patterns: Vec<PatternStats> = in_order(KIND_PATTERN)
            .into_iter()
            .map(|(name, r)| {
                let e = endpoint(name, r);
                PatternStats {
                    pattern_id: 0,
                    pattern: name.to_string(),
                    calls: r.counts.count,
                    total_ms: ms(r.counts.sum_ns as f64),
                    mean_ms: e.mean_ms,
                    p99_ms: e.p99_ms,
                    rows: r.counts.rows,
                    locations: Vec::new(),
                }
            })
            .collect();
        query_patterns.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        let starts = all_starts
            .iter()
            .filter(|(at, _)| *at >= from)
            .map(|(at, version)| StartView {
                at_unix: *at,
                at: rfc3339((*at as u64).saturating_mul(1_000_000_000)),
                version: version.clone(),
            })
            .collect();
        let kept = all_id.map(|_| dir.as_path());
        let (compare, compare_damaged) = compare(store, &names, &layouts, &all_starts, now, kept)?;
        let damaged_rows = chart.damaged + tables.damaged + compare_damaged + store.damaged();
        if damaged_rows > 0 {
            crate::elog!(
                "starpunk: performance history: {damaged_rows} damaged rows left out of the {} view",
                range.name()
            );
        }
        let mut status_codes = BTreeMap::new();
        for e in &endpoints {
            for (k, n) in &e.status {
                *status_codes.entry(k.clone()).or_default() += n;
            }
        }
        // The slowest requests of the range's hours, readers' apart from
        // the owner's as live.
        let own_traffic = self.config().own_traffic;
        // Requests that started in the range (an hour's rows reach back
        // before a range that starts within it).
        let since = rfc3339((from.max(0) as u64).saturating_mul(1_000_000_000));
        let (own_slowest, worst_requests): (Vec<_>, Vec<_>) = store
            .slow_requests(from, now + 60)?
            .into_iter()
            .filter(|w| w.at >= since)
            .partition(|w| own_traffic.sets_apart(&w.route));
        // Counts over every route, as live: the all-requests rows (the
        // headline's) leave the owner's out when they are apart.
        let count = |f: &dyn Fn(&EndpointStats) -> u64| endpoints.iter().map(f).sum::<u64>();
        let (requests_total, errors_5xx, client_errors_4xx) = (
            count(&|e| e.count),
            count(&|e| e.errors_5xx),
            count(&|e| e.client_errors_4xx),
        );
        let own_requests = count(&|e| if is_own(&e.name) { e.count } else { 0 });
        let mut s = PerfSnapshot {
            worst_request: worst_requests.first().cloned(),
            worst_requests,
            own_traffic: crate::monitoring::views::OwnView {
                mode: own_traffic,
                slowest: own_slowest,
                requests: own_requests,
                ..Default::default()
            },
            enabled: true,
            uptime_seconds: inner.uptime().as_secs_f64(),
            counting_seconds: covered as f64,
            config: self.config().clone(),
            requests_total,
            requests_per_second: window.requests_per_second,
            window_seconds: covered as f64,
            mean_response_ms: if all.counts.count > 0 {
                ms(all.counts.sum_ns as f64 / all.counts.count as f64)
            } else {
                0.0
            },
            p99_response_ms: window.p99_ms,
            errors_5xx,
            client_errors_4xx,
            error_rate: window.error_rate,
            client_error_rate: if window.requests > 0 {
                window.client_errors_4xx as f64 / window.requests as f64
            } else {
                0.0
            },
            endpoints,
            query_patterns,
            status_codes,
            database,
            range: Some(RangeInfo {
                range: range.name().into(),
                from_unix: from,
                to_unix: now,
                bucket_seconds: bucket,
                starts,
                compare,
                covered_seconds: covered,
                damaged_rows,
            }),
            ..PerfSnapshot::default()
        };
        // Stored counts are exact at any rate; the figures here never
        // come from the ring's sample.
        s.sampling.rate = self.config().sample_rate;
        s.memory.tracking = self.config().memory_tracking;
        s.memory.samples = memory_samples(&store.rss_samples(from, now + 60)?, bucket);
        if let (Some(a), Some(b)) = (s.memory.samples.first(), s.memory.samples.last()) {
            s.memory.growth_bytes = b[1] as i64 - a[1] as i64;
            s.memory.window_seconds = b[0] - a[0];
        }
        s.memory.rss_bytes = crate::monitoring::memory::read().rss_bytes;
        s.overview = Overview {
            points,
            window,
            ..Overview::default()
        };
        s.history = history;
        // The rules and their states are the live ones (they judge the
        // last minute); the events are the range's, from the history.
        let live = inner.alerts_view();
        let mut events = store.alert_events(
            from,
            now + 1,
            crate::monitoring::ticker::alerts::EVENTS_KEPT,
        )?;
        events.reverse();
        s.alerts = crate::monitoring::views::AlertsView {
            rules: live.rules,
            events,
            webhook: live.webhook,
        };
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::ticker::history::{Latency, HOUR, MINUTE};

    fn layouts() -> Layouts {
        let mut l = Layouts::default();
        l.insert(1, starpunk_perf::RecorderConfig::default().layout);
        l
    }

    /// An all-requests row of `count` requests of 1 ms, and its blob.
    fn row(start: i64, resolution: i64, count: u64) -> (Head, Vec<u8>) {
        let layout = starpunk_perf::RecorderConfig::default().layout;
        (
            Head {
                start,
                resolution,
                series: 1,
                counts: Counts {
                    count,
                    ..Counts::default()
                },
                slow: 0,
                rss: 0,
            },
            Latency::from_values(layout, &[(1_000_000, count)]).encode(1),
        )
    }

    fn span_of(rows: &[(Head, Vec<u8>)], starts: &[(i64, String)], from: i64, now: i64) -> Span {
        let mut r = Rows::default();
        for (h, _) in rows {
            r.see(h);
        }
        Span::of(&r, starts, from, now)
    }

    /// The chart's points and the requests of all its rows.
    fn chart(rows: &[(Head, Vec<u8>)], bucket: i64, span: Span) -> (Vec<MinutePoint>, u64) {
        let layouts = layouts();
        let mut c = Chart::new(&layouts, bucket);
        for (h, blob) in rows {
            c.add(h, blob);
        }
        let points = c.points(span);
        assert_eq!(c.all.latency.total(), c.all.counts.count);
        (points, c.all.counts.count)
    }

    #[test]
    fn memory_samples_keep_the_first_and_each_buckets_last() {
        let rss = [(600, 10), (660, 11), (1_200, 12), (1_260, 13), (1_800, 14)];
        // By the minute: every sample.
        assert_eq!(memory_samples(&rss, 60).len(), rss.len());
        // By 15 minutes: the first, then the last of each bucket; the
        // first and last samples (and so the change) are those of every
        // bucket size.
        assert_eq!(
            memory_samples(&rss, 900),
            [[600, 10], [660, 11], [1_800, 14]]
        );
        for bucket in [60, 900, 7_200, 43_200] {
            let s = memory_samples(&rss, bucket);
            assert_eq!((s[0], s[s.len() - 1]), ([600, 10], [1_800, 14]), "{bucket}");
        }
        assert!(memory_samples(&[], 60).is_empty());
    }

    #[test]
    fn the_span_starts_at_the_blogs_start_and_ends_with_the_last_row() {
        // Started 45 s into a minute; two minutes written; viewed 145 s
        // after the start, 40 s into the minute in progress.
        let start = 1_795_784_085;
        let rows = [
            row(1_795_784_040, MINUTE, 30),
            row(1_795_784_100, MINUTE, 37),
        ];
        let starts = [(start, "1".to_string())];
        let now = start + 145;
        let span = span_of(&rows, &starts, now - 3_600, now);
        assert_eq!(
            span,
            Span {
                from: start,
                to: 1_795_784_160
            }
        );
        assert_eq!(span.seconds(), 75);
        let (points, all) = chart(&rows, 60, span);
        assert_eq!(all, 67);
        let at: Vec<(u64, f64)> = points.iter().map(|p| (p.start_unix, p.seconds)).collect();
        assert_eq!(at, [(start as u64, 15.0), (1_795_784_100, 60.0)]);
        assert_eq!(points[0].requests_per_second, 2.0);
        // No point starts before the blog did, and a later view puts the
        // points at the same times.
        let later = span_of(&rows, &starts, now + 4 - 3_600, now + 4);
        let (again, _) = chart(&rows, 60, later);
        assert_eq!(
            again.iter().map(|p| p.start_unix).collect::<Vec<_>>(),
            points.iter().map(|p| p.start_unix).collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_hour_row_in_minute_points_covers_its_hour_and_a_deploy_is_no_first_start() {
        // First start 09:40; hour 09 rolled up; the 1-hour view at 10:30
        // reads the hour row and the minutes from 10:00.
        let (h9, h10) = (9 * 3_600, 10 * 3_600);
        let rows = [row(h9, HOUR, 1_200), row(h10, MINUTE, 60)];
        let starts = [(h9 + 2_400, "1".to_string())];
        let now = h10 + 1_800;
        let span = span_of(&rows, &starts, now - 3_600, now);
        assert_eq!(span.from, h9 + 2_400);
        let (points, _) = chart(&rows, 60, span);
        let at: Vec<(i64, f64, f64)> = points
            .iter()
            .map(|p| (p.start_unix as i64, p.seconds, p.requests_per_second))
            .collect();
        assert_eq!(at, [(h9 + 2_400, 1_200.0, 1.0), (h10, 60.0, 1.0)]);
        // A deploy inside the first row, the blog started long before:
        // the row's earlier part was served, and counts.
        let deploy = [(0, "0".to_string()), (h10 + 45, "1".to_string())];
        let rows = [row(h10, MINUTE, 60), row(h10 + 60, MINUTE, 60)];
        let span = span_of(&rows, &deploy, h10 - 600, h10 + 130);
        assert_eq!(
            span,
            Span {
                from: h10,
                to: h10 + 120
            }
        );
    }

    #[test]
    fn the_span_is_cut_by_the_range_and_by_now() {
        // Hour rows older than the range's start; a minute written in
        // the middle of itself (a shutdown) ends at now.
        let rows = [row(0, HOUR, 10), row(7_200, MINUTE, 1)];
        let span = span_of(&rows, &[], 1_800, 7_230);
        assert_eq!(
            span,
            Span {
                from: 1_800,
                to: 7_230
            }
        );
        // A start before the first row changes nothing; none at all: empty.
        assert_eq!(span_of(&rows, &[(-5, "0".into())], 0, 7_230).from, 0);
        assert_eq!(span_of(&[], &[], 0, 100).seconds(), 0);
        // Two-hour points, on the clock: the hour row and the minute.
        let (points, _) = chart(&rows, 7_200, span);
        let at: Vec<(u64, f64)> = points.iter().map(|p| (p.start_unix, p.seconds)).collect();
        assert_eq!(at, [(1_800, 5_400.0), (7_200, 30.0)]);
    }
}
