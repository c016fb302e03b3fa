//! The dashboard over a time range from the history (`?range=1h`, `24h`,
//! `7d`, `30d`): the same overview, routes and patterns as the live view,
//! built from stored aggregates; starts (deploys) marked; the current
//! version compared with the previous one.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::monitoring::own::is_own;
use crate::monitoring::ticker::history::{
    add_row, ReadOnly, Reader, Row, KIND_ALL, KIND_PATTERN, KIND_ROUTE,
};
use crate::monitoring::ticker::trend::{MinutePoint, Overview, PeriodFigures};
use crate::monitoring::views::{rfc3339, DatabaseView, EndpointStats, PatternStats, PerfSnapshot};
use crate::monitoring::Monitor;

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

/// One route's figures under two versions.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CompareRow {
    /// Route template.
    pub route: String,
    /// Requests, previous and current version.
    pub requests: [u64; 2],
    /// Median ms, previous and current.
    pub p50_ms: [f64; 2],
    /// 99th percentile ms, previous and current.
    pub p99_ms: [f64; 2],
    /// 5xx over all requests, previous and current.
    pub error_rate: [f64; 2],
}

/// The current version against the one before it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Compare {
    /// The version before, and since when it ran (RFC 3339).
    pub previous: String,
    /// The version now.
    pub current: String,
    /// When the current version first started (RFC 3339).
    pub current_since: String,
    /// Per route seen under either, busiest first.
    pub routes: Vec<CompareRow>,
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
}

fn ms(ns: f64) -> f64 {
    (ns / 1e3).round() / 1e3
}

/// The figures of merged rows of one series.
fn endpoint(name: &str, r: &Row) -> EndpointStats {
    let h = &r.latency;
    let q = |q: f64| ms(h.value_at_quantile(q) as f64);
    let mut status = BTreeMap::new();
    let ok = r
        .counts
        .count
        .saturating_sub(r.counts.errors_5xx + r.counts.errors_4xx);
    for (k, n) in [
        ("1xx-3xx", ok),
        ("4xx", r.counts.errors_4xx),
        ("5xx", r.counts.errors_5xx),
    ] {
        if n > 0 {
            status.insert(k.to_string(), n);
        }
    }
    EndpointStats {
        name: name.to_string(),
        count: r.counts.count,
        mean_ms: if r.counts.count > 0 {
            ms(r.counts.sum_ns as f64 / r.counts.count as f64)
        } else {
            0.0
        },
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: ms(h.max() as f64),
        bytes_mean: if r.counts.count > 0 {
            (r.counts.bytes as f64 / r.counts.count as f64).round()
        } else {
            0.0
        },
        status,
        errors_5xx: r.counts.errors_5xx,
        client_errors_4xx: r.counts.errors_4xx,
        rss_delta: None,
    }
}

/// Rows merged per (kind, name).
fn merged(rows: &[Row], kind: i64) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for r in rows.iter().filter(|r| r.kind == kind) {
        match out.iter_mut().find(|m| m.name == r.name) {
            Some(m) => add_row(m, r),
            None => out.push(r.clone()),
        }
    }
    out
}

fn point(bucket_start: i64, seconds: f64, r: &Row) -> MinutePoint {
    let has = r.counts.count > 0;
    MinutePoint {
        start_unix: bucket_start.max(0) as u64,
        seconds,
        requests: r.counts.count,
        requests_per_second: r.counts.count as f64 / seconds.max(1.0),
        errors_5xx: r.counts.errors_5xx,
        client_errors_4xx: r.counts.errors_4xx,
        p50_ms: if has {
            ms(r.latency.value_at_quantile(0.5) as f64)
        } else {
            0.0
        },
        p99_ms: if has {
            ms(r.latency.value_at_quantile(0.99) as f64)
        } else {
            0.0
        },
        slow_queries: r.slow,
        rss_bytes: r.rss,
    }
}

/// The current version's routes against the previous version's, over
/// the whole history.
fn compare(
    store: &Reader<'_>,
    starts: &[(i64, String)],
    now: i64,
) -> Result<Option<Compare>, String> {
    let Some((_, current)) = starts.last() else {
        return Ok(None);
    };
    // The current version's run: back to the first of its latest
    // consecutive starts; the previous version's run before that.
    let mut i = starts.len() - 1;
    while i > 0 && starts[i - 1].1 == *current {
        i -= 1;
    }
    if i == 0 {
        return Ok(None);
    }
    let current_from = starts[i].0;
    let previous = starts[i - 1].1.clone();
    let mut j = i - 1;
    while j > 0 && starts[j - 1].1 == previous {
        j -= 1;
    }
    let previous_from = starts[j].0;
    // A minute row is written when its minute ends, by the run that was
    // up then: it belongs to the run its end falls in.
    let ends_in = |from: i64| from - 59;
    let before = store.rows_for_range_coarse(
        ends_in(previous_from),
        ends_in(current_from),
        Some(KIND_ROUTE),
    )?;
    let after = store.rows_for_range_coarse(ends_in(current_from), now + 60, Some(KIND_ROUTE))?;
    let (before, after) = (merged(&before, KIND_ROUTE), merged(&after, KIND_ROUTE));
    let mut names: Vec<&str> = before
        .iter()
        .chain(&after)
        .map(|r| r.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let figures = |rows: &[Row], name: &str| -> (u64, f64, f64, f64) {
        rows.iter()
            .find(|r| r.name == name)
            .map_or((0, 0.0, 0.0, 0.0), |r| {
                let e = endpoint(name, r);
                let rate = if r.counts.count > 0 {
                    r.counts.errors_5xx as f64 / r.counts.count as f64
                } else {
                    0.0
                };
                (r.counts.count, e.p50_ms, e.p99_ms, rate)
            })
    };
    let mut routes: Vec<CompareRow> = names
        .into_iter()
        .map(|name| {
            let (b, a) = (figures(&before, name), figures(&after, name));
            CompareRow {
                route: name.to_string(),
                requests: [b.0, a.0],
                p50_ms: [b.1, a.1],
                p99_ms: [b.2, a.2],
                error_rate: [b.3, a.3],
            }
        })
        .collect();
    routes.sort_by(|x, y| (y.requests[0] + y.requests[1]).cmp(&(x.requests[0] + x.requests[1])));
    Ok(Some(Compare {
        previous,
        current: current.clone(),
        current_since: rfc3339((current_from as u64).saturating_mul(1_000_000_000)),
        routes,
    }))
}

/// The time the history's rows really cover within a range: from the
/// first row (or the blog's start within it, or the range's start) to the
/// end of the last row written (or now). Minutes are written as they
/// close, so the minute in progress is not in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    from: i64,
    to: i64,
}

impl Span {
    fn of(rows: &[Row], starts: &[(i64, String)], range_from: i64, now: i64) -> Span {
        let Some(first) = rows.iter().min_by_key(|r| r.start) else {
            return Span { from: now, to: now };
        };
        let first_end = first.start + first.resolution;
        // The blog's very first start inside the first row: nothing was
        // served before it. A later start (a deploy) says nothing of the
        // row's earlier part, served by the run before.
        let started = starts
            .iter()
            .map(|&(at, _)| at)
            .min()
            .filter(|&at| at >= first.start && at < first_end)
            .unwrap_or(first.start);
        let last_end = rows
            .iter()
            .map(|r| r.start + r.resolution)
            .max()
            .unwrap_or(first_end);
        let from = started.max(range_from).min(now);
        Span {
            from,
            to: last_end.min(now).max(from),
        }
    }

    fn seconds(self) -> i64 {
        self.to - self.from
    }
}

/// Chart points of the all-requests rows, one per `bucket` seconds
/// aligned on the clock (so a point's time does not move between views),
/// each from where the span starts in it to where the span ends in it;
/// and all of those rows merged.
fn chart(rows: &[Row], bucket: i64, span: Span) -> (Vec<MinutePoint>, Option<Row>) {
    // Per bucket: its rows merged, and where the last of them ends (an
    // hour row in a minute's bucket covers its whole hour).
    let mut buckets: BTreeMap<i64, (Row, i64)> = BTreeMap::new();
    let mut all: Option<Row> = None;
    for r in rows.iter().filter(|r| r.kind == KIND_ALL) {
        let b = r.start - r.start.rem_euclid(bucket);
        let end = r.start + r.resolution;
        match buckets.get_mut(&b) {
            Some((m, e)) => {
                add_row(m, r);
                *e = (*e).max(end);
            }
            None => {
                buckets.insert(b, (r.clone(), end));
            }
        }
        match all.as_mut() {
            Some(a) => add_row(a, r),
            None => all = Some(r.clone()),
        }
    }
    let points = buckets
        .iter()
        .map(|(&b, (r, rows_end))| {
            let start = b.max(span.from);
            let end = (b + bucket).max(*rows_end).min(span.to);
            point(start, (end - start).max(1) as f64, r)
        })
        .collect();
    (points, all)
}

/// The memory samples a range view draws, from the history's `rss`
/// samples (oldest first): the first, then the last of each `bucket` (what
/// the bucket's point stands for). The change over the range is the last
/// minus the first of these at every range: the same minutes give the same
/// change in the 1-hour view and the 30-day one.
fn memory_samples(rss: &[(i64, u64)], bucket: i64) -> Vec<[u64; 2]> {
    let bucket_of = |at: i64| (at - 1).div_euclid(bucket.max(1));
    rss.iter()
        .enumerate()
        .filter(|&(i, &(at, _))| {
            i == 0
                || rss
                    .get(i + 1)
                    .is_none_or(|next| bucket_of(next.0) != bucket_of(at))
        })
        .map(|(_, &(at, bytes))| [at.max(0) as u64, bytes])
        .collect()
}

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
        // Charts: all requests' rows, by the minute up to a day (15-minute
        // points need them), by the hour beyond. Tables: the fewest rows.
        let mut rows = if range.seconds() <= 86_400 {
            store.rows_for_range(from, now + 60, Some(KIND_ALL))?
        } else {
            store.rows_for_range_coarse(from, now + 60, Some(KIND_ALL))?
        };
        for kind in [KIND_ROUTE, KIND_PATTERN] {
            rows.extend(store.rows_for_range_coarse(from, now + 60, Some(kind))?);
        }
        let bucket = range.bucket_seconds();
        let all_starts = store.starts(0)?;
        let span = Span::of(&rows, &all_starts, from, now);
        let covered = span.seconds();
        let (points, all) = chart(&rows, bucket, span);
        let mut window = match &all {
            Some(a) => PeriodFigures::of(&points, &a.latency),
            None => PeriodFigures::default(),
        };
        window.seconds = covered as f64;
        if covered > 0 {
            window.requests_per_second = window.requests as f64 / covered as f64;
        }
        let mut endpoints: Vec<EndpointStats> = merged(&rows, KIND_ROUTE)
            .iter()
            .map(|r| endpoint(&r.name, r))
            .collect();
        endpoints.sort_by(|a, b| b.p99_ms.total_cmp(&a.p99_ms));
        let mut query_patterns: Vec<PatternStats> = merged(&rows, KIND_PATTERN)
            .iter()
            .map(|r| {
                let e = endpoint(&r.name, r);
                PatternStats {
                    pattern_id: 0,
                    pattern: r.name.clone(),
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
        let compare = compare(store, &all_starts, now)?;
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
            mean_response_ms: all
                .as_ref()
                .filter(|a| a.counts.count > 0)
                .map_or(0.0, |a| ms(a.counts.sum_ns as f64 / a.counts.count as f64)),
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
    use crate::monitoring::ticker::history::{Counts, HOUR, MINUTE};

    fn row(start: i64, resolution: i64, count: u64) -> Row {
        let mut latency = hdrhistogram::Histogram::new(2).unwrap();
        latency.record_n(1_000_000, count).unwrap();
        Row {
            start,
            resolution,
            kind: KIND_ALL,
            name: String::new(),
            counts: Counts {
                count,
                ..Counts::default()
            },
            slow: 0,
            rss: 0,
            latency,
        }
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
        let span = Span::of(&rows, &starts, now - 3_600, now);
        assert_eq!(
            span,
            Span {
                from: start,
                to: 1_795_784_160
            }
        );
        assert_eq!(span.seconds(), 75);
        let (points, all) = chart(&rows, 60, span);
        assert_eq!(all.unwrap().counts.count, 67);
        let at: Vec<(u64, f64)> = points.iter().map(|p| (p.start_unix, p.seconds)).collect();
        assert_eq!(at, [(start as u64, 15.0), (1_795_784_100, 60.0)]);
        assert_eq!(points[0].requests_per_second, 2.0);
        // No point starts before the blog did, and a later view puts the
        // points at the same times.
        let later = Span::of(&rows, &starts, now + 4 - 3_600, now + 4);
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
        let span = Span::of(&rows, &starts, now - 3_600, now);
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
        let span = Span::of(&rows, &deploy, h10 - 600, h10 + 130);
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
        let span = Span::of(&rows, &[], 1_800, 7_230);
        assert_eq!(
            span,
            Span {
                from: 1_800,
                to: 7_230
            }
        );
        // A start before the first row changes nothing; none at all: empty.
        assert_eq!(Span::of(&rows, &[(-5, "0".into())], 0, 7_230).from, 0);
        assert_eq!(Span::of(&[], &[], 0, 100).seconds(), 0);
        // Two-hour points, on the clock: the hour row and the minute.
        let (points, _) = chart(&rows, 7_200, span);
        let at: Vec<(u64, f64)> = points.iter().map(|p| (p.start_unix, p.seconds)).collect();
        assert_eq!(at, [(1_800, 5_400.0), (7_200, 30.0)]);
    }
}
