//! One typed snapshot of everything the monitor knows. The dashboard renders
//! it and the JSON export serialises it, so the two cannot disagree.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use starpunk_perf::{Category, MetricRecord, OpId, Series};

use super::trend::{Overview, Totals};
use super::{Inner, Monitor};
use crate::config::PerfConfig;

/// Latency figures of one series. Every figure is exact at any sample
/// rate (sampling thins the ring, not the series), except `rss_delta`,
/// which is measured on sampled requests only and says so.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EndpointStats {
    /// Route template, pattern or function name.
    pub name: String,
    /// Events, all of them.
    pub count: u64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile, milliseconds.
    pub p95_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Largest, milliseconds.
    pub max_ms: f64,
    /// Mean response bytes.
    pub bytes_mean: f64,
    /// Status code to count; codes past the first eight distinct ones of
    /// a route are counted per class (`"5xx"`), codes outside 100 to 599
    /// as `"other"`.
    pub status: BTreeMap<String, u64>,
    /// Responses with a 5xx status.
    pub errors_5xx: u64,
    /// Responses with a 4xx status.
    pub client_errors_4xx: u64,
    /// Resident memory change across a request, with memory tracking on.
    pub rss_delta: Option<RssDelta>,
}

/// The RSS change per request of one route.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RssDelta {
    /// Requests measured (the sampled ones).
    pub measured: u64,
    /// Requests of the route.
    pub of: u64,
    /// Mean change, bytes.
    pub mean_bytes: f64,
    /// Largest growth, bytes.
    pub max_bytes: i64,
    /// True when `measured < of`: the mean is an unbiased estimate from a
    /// random sample, the max the largest in that sample.
    pub estimated: bool,
}

/// One slow statement.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SlowQueryView {
    /// RFC 3339.
    pub at: String,
    /// Normalised pattern.
    pub pattern: String,
    /// Milliseconds.
    pub duration_ms: f64,
    /// Route template, or empty outside a request.
    pub route: String,
    /// The code that ran it, `file.rs:line`.
    pub location: String,
    /// The kept request it ran in (`WorstRequest::id`), while it is kept;
    /// empty otherwise.
    pub request: String,
}

/// The slow log grouped by pattern.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SlowPattern {
    /// Normalised pattern.
    pub pattern: String,
    /// Slow executions of it in the slow log.
    pub count: u64,
    /// The slowest, milliseconds.
    pub worst_ms: f64,
    /// RFC 3339 of the latest.
    pub last_at: String,
    /// Routes that ran it slowly (empty string: outside a request).
    pub routes: Vec<String>,
}

/// pg_stat_statements-style figures of a pattern.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PatternStats {
    /// Stable id (the Prometheus `pattern_id` label).
    pub pattern_id: u32,
    /// Normalised pattern.
    pub pattern: String,
    /// Executions, all of them.
    pub calls: u64,
    /// Total time, milliseconds.
    pub total_ms: f64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Rows returned or changed.
    pub rows: u64,
    /// Where its statements run from, `file.rs:line` (live view only).
    pub locations: Vec<String>,
}

/// A route and a pattern it runs, from the sampled requests in the ring.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RoutePattern {
    /// Route template.
    pub route: String,
    /// Pattern.
    pub pattern: String,
    /// Executions by the sampled requests in the ring.
    pub calls: u64,
    /// Sampled requests of the route with all their statements in the
    /// ring (those that started after its oldest record ended).
    pub requests: u64,
    /// `calls / requests`: executions per request.
    pub per_request: f64,
    /// Most executions within one request.
    pub max_per_request: u64,
    /// One request ran it [`N_PLUS_ONE`] times or more.
    pub n_plus_one: bool,
    /// True when the sample rate is below 1: `per_request` is then an
    /// estimate from a random sample of requests, and `max_per_request`
    /// the most seen in it.
    pub estimated: bool,
}

/// Executions of one pattern within one request that flag an N+1.
pub const N_PLUS_ONE: u64 = 5;

/// A request kept in detail (see `monitoring::kept`): among the slowest of
/// its route and window, a 5xx, or one that ran a slow statement. Kept
/// apart from the ring, whatever the sample rate: later traffic replaces
/// it only with a slower one of its window, or when its window has passed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WorstRequest {
    /// Its anchor on the page (`r` and the request id).
    pub id: String,
    /// Route template.
    pub route: String,
    /// RFC 3339 of the handler's start.
    pub at: String,
    /// The handler's time, milliseconds: the figure its route's series
    /// recorded, and the sum of `parts`.
    pub duration_ms: f64,
    /// HTTP status.
    pub status: u16,
    /// Why it is kept: `slowest`, `error`, `slow_statement`.
    pub kept_because: Vec<String>,
    /// A request of the owner's own pages (`/admin...`, `/metrics`).
    pub own: bool,
    /// Patterns it ran, with counts (every statement of the request).
    pub queries: Vec<(String, u64)>,
    /// Where `duration_ms` went; the parts add up to it.
    pub parts: Parts,
    /// Time in the HTTP front before the handler ran, not part of
    /// `duration_ms` (receiving the body, waiting for a handler thread).
    pub before_handler: BeforeHandler,
    /// The largest single part: a statement, a named function, the
    /// handler's own code, or the wait before it.
    pub largest: Largest,
    /// Its statements and named functions in start order; a statement run
    /// inside a named function has `depth` 1 and is part of its time.
    pub timeline: Vec<Span>,
}

/// Where a request's handler time went: every listed statement and named
/// function that ran directly in the handler, the spans past the trace's
/// capacity, and the rest (the handler's own code: rendering, hashing,
/// waiting on locks outside SQL).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Parts {
    /// SQL statements run directly by the handler, milliseconds.
    pub sql_ms: f64,
    /// Named functions (with the statements inside them), milliseconds.
    pub functions_ms: f64,
    /// Spans past the trace's capacity (32), milliseconds.
    pub unlisted_ms: f64,
    /// How many spans are not listed.
    pub unlisted: u32,
    /// The rest: `duration_ms` minus the above.
    pub own_code_ms: f64,
    /// A request the HTTP front answered itself (a body refused or not
    /// received in time, a full server): all of its time, no handler ran.
    pub front_ms: f64,
}

/// The request's wait in the front before its handler.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BeforeHandler {
    /// Receiving the request's body, milliseconds.
    pub body_ms: f64,
    /// Waiting for a handler thread, milliseconds.
    pub queued_ms: f64,
}

/// The part of a request that took most of its time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Largest {
    /// `sql`, `function`, `own_code` or `queued`.
    pub kind: String,
    /// The pattern or function's name (empty for the others).
    pub name: String,
    /// Milliseconds.
    pub duration_ms: f64,
    /// The code that ran it (empty for the others).
    pub location: String,
}

/// One statement or function inside a request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Span {
    /// `"sql"` or `"function"`.
    pub kind: String,
    /// The pattern or the function's name.
    pub name: String,
    /// Start, milliseconds after the handler's start.
    pub offset_ms: f64,
    /// Milliseconds.
    pub duration_ms: f64,
    /// The code that ran it, `file.rs:line`.
    pub location: String,
    /// Named functions it ran inside (0: directly in the handler).
    pub depth: u8,
}

/// A pattern's query plan (`EXPLAIN QUERY PLAN`), for the patterns seen
/// slow or in a kept request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PlanView {
    /// The pattern's id.
    pub pattern_id: u32,
    /// The pattern.
    pub pattern: String,
    /// Where it runs from.
    pub locations: Vec<String>,
    /// The plan.
    pub plan: super::plans::Plan,
    /// A table of `full_scan_rows` or more read whole.
    pub full_scan: bool,
}

/// The owner's own requests, when `STARPUNK_PERF_OWN_TRAFFIC` is `apart`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct OwnView {
    /// `apart` or `include`.
    pub mode: super::own::OwnTraffic,
    /// The owner's requests since start or the last clear (in
    /// `requests_total`, not in the headline figures when apart).
    pub requests: u64,
    /// Their routes, recent window, slowest first (apart only).
    pub endpoints: Vec<EndpointStats>,
    /// Their kept slowest requests (apart only).
    pub slowest: Vec<WorstRequest>,
}

/// What the kept requests hold.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct KeptMemory {
    /// Requests kept now.
    pub requests: usize,
    /// Bytes they take.
    pub bytes: usize,
    /// The most they can take (with 64 routes, the most that keep their
    /// slowest).
    pub ceiling_bytes: usize,
}

/// Memory figures.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MemoryView {
    /// Tracking on?
    pub tracking: bool,
    /// RSS now.
    pub rss_bytes: u64,
    /// The process's peak RSS since it started (the kernel's `VmHWM`).
    pub hwm_bytes: u64,
    /// RSS change: the last of `samples` minus the first (live: the
    /// samples kept, up to 15 minutes; a range view: the range's, from the
    /// history).
    pub growth_bytes: i64,
    /// Seconds from the first of `samples` to the last.
    pub window_seconds: u64,
    /// `[unix seconds, rss bytes]`, oldest first.
    pub samples: Vec<[u64; 2]>,
}

/// Database figures.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DatabaseView {
    /// Connections lent out.
    pub pool_in_use: usize,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Statements per second since start (or the last clear).
    pub queries_per_second: f64,
    /// Page-cache hit rate, when known.
    pub cache_hit_rate: Option<f64>,
    /// Database file bytes.
    pub db_bytes: u64,
    /// WAL file bytes.
    pub wal_bytes: u64,
}

/// The ring's fill.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct BufferView {
    /// Slots.
    pub capacity: usize,
    /// Records held.
    pub len: usize,
    /// Records pushed out by newer ones (the ring working as designed).
    pub overwritten: u64,
    /// Records a writer gave up because a writer a whole lap ahead took
    /// its slot first (see the core's `RingStats::dropped`): missing from
    /// the ring, still counted in every aggregate.
    pub dropped: u64,
    /// Records held that the sampler left out but were kept (5xx, slow).
    pub forced: usize,
}

/// What sampling changes on this page.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SamplingView {
    /// `STARPUNK_PERF_SAMPLE_RATE`.
    pub rate: f64,
    /// True when the rate is below 1: the ring-based views (routes x
    /// patterns, slowest requests, the CSV) and the RSS change per request
    /// come from a sample; every count, sum and quantile is still exact.
    pub estimated: bool,
    /// Records in the ring the sampler chose.
    pub ring_sampled: usize,
    /// Records in the ring kept although not chosen (5xx, slow).
    pub ring_forced: usize,
}

/// What the monitor costs.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MonitorCost {
    /// Bytes the recorder holds.
    pub memory_bytes: usize,
    /// Measured cost of one record at start, nanoseconds.
    pub record_ns: f64,
    /// Distinct series / capacity.
    pub series: usize,
    /// Series capacity before the overflow series.
    pub series_capacity: usize,
}

/// The history's state.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct HistoryView {
    /// `STARPUNK_PERF_HISTORY_DAYS` (0: off).
    pub days: u32,
    /// The file is open and written each minute.
    pub ok: bool,
    /// Why not, or the last write's error.
    pub error: Option<String>,
    /// Bytes on disk (file and write-ahead log).
    pub bytes: u64,
}

impl HistoryView {
    /// The history's state in `monitor`.
    pub fn of(monitor: &Monitor) -> HistoryView {
        let days = monitor.config().history_days;
        match monitor.history() {
            Some(h) => HistoryView::from_state(days, &h),
            None => HistoryView {
                days,
                ..HistoryView::default()
            },
        }
    }

    /// The view of a locked history state.
    pub fn from_state(days: u32, h: &super::HistoryState) -> HistoryView {
        HistoryView {
            days,
            ok: h.store.is_some() && h.error.is_none(),
            error: h.error.clone(),
            bytes: h.dir.as_deref().map_or(0, super::history::History::bytes),
        }
    }
}

/// The alert rules, their states and what happened.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct AlertsView {
    /// Each rule's state (`ok`, `pending`, `firing`, `resolving`), last
    /// value and threshold.
    pub rules: Vec<super::alerts::RuleView>,
    /// Recent firings and resolutions, newest first.
    pub events: Vec<super::alerts::AlertEvent>,
    /// Webhook deliveries, when a webhook is configured.
    pub webhook: Option<super::webhook::WebhookView>,
}

/// Everything the dashboard shows.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PerfSnapshot {
    /// Monitoring on?
    pub enabled: bool,
    /// Seconds since the monitor started.
    pub uptime_seconds: f64,
    /// Seconds the counts cover: since start or the last clear (logout).
    pub counting_seconds: f64,
    /// The seven `STARPUNK_PERF_*` values.
    pub config: PerfConfig,
    /// Requests, all of them, since start or the last clear.
    pub requests_total: u64,
    /// Requests per second over the recent window (`window_seconds`).
    pub requests_per_second: f64,
    /// Seconds the recent window spans: the last 15 to 20 minutes, or
    /// less since start or the last clear.
    pub window_seconds: f64,
    /// Mean response time, all requests.
    pub mean_response_ms: f64,
    /// 99th percentile of all requests.
    pub p99_response_ms: f64,
    /// Responses with a 5xx status.
    pub errors_5xx: u64,
    /// Responses with a 4xx status.
    pub client_errors_4xx: u64,
    /// 5xx responses over all responses.
    pub error_rate: f64,
    /// 4xx responses over all responses.
    pub client_error_rate: f64,
    /// The last fifteen minutes, minute by minute, and their figures.
    pub overview: Overview,
    /// Alert rules and events.
    pub alerts: AlertsView,
    /// The history's state.
    pub history: HistoryView,
    /// Set when this snapshot covers a range from the history (then the
    /// ring-based views are empty: they are live only).
    pub range: Option<super::range::RangeInfo>,
    /// Per route, since start, slowest (p99) first.
    pub endpoints: Vec<EndpointStats>,
    /// Per route, the recent window, slowest first.
    pub endpoints_recent: Vec<EndpointStats>,
    /// Named functions.
    pub functions: Vec<EndpointStats>,
    /// Slow statements, newest first (the last [`super::SLOW_LOG_LEN`]).
    pub slow_queries: Vec<SlowQueryView>,
    /// The same grouped by pattern, most frequent first.
    pub slow_patterns: Vec<SlowPattern>,
    /// Per pattern, by total time.
    pub query_patterns: Vec<PatternStats>,
    /// Route x pattern from the ring.
    pub route_patterns: Vec<RoutePattern>,
    /// Per route, the slowest requests of the last 10 to 15 minutes, with
    /// their timelines (readers' routes when the owner's are apart).
    pub worst_requests: Vec<WorstRequest>,
    /// The most recent failed (5xx) requests, newest first, with their
    /// timelines.
    pub recent_errors: Vec<WorstRequest>,
    /// The last requests that ran a statement over the slow threshold,
    /// newest first.
    pub slow_statement_requests: Vec<WorstRequest>,
    /// The slowest request of the live window (readers' when apart).
    pub worst_request: Option<WorstRequest>,
    /// Query plans of the patterns seen slow or in a kept request.
    pub query_plans: Vec<PlanView>,
    /// What the kept requests hold.
    pub kept: KeptMemory,
    /// The owner's own requests.
    pub own_traffic: OwnView,
    /// Memory.
    pub memory: MemoryView,
    /// Database.
    pub database: DatabaseView,
    /// Status code to count, all routes (keys as in [`EndpointStats::status`]).
    pub status_codes: BTreeMap<String, u64>,
    /// The ring buffer.
    pub buffer: BufferView,
    /// What sampling changes.
    pub sampling: SamplingView,
    /// The monitor's own cost.
    pub monitor: MonitorCost,
}

/// `parts` (nanoseconds, summing to at most `total_ns`) in milliseconds
/// rounded to the microsecond so that they add up to `total_ns` rounded
/// the same way: each part is cut to whole microseconds and the
/// microseconds left go to the parts with the largest remainders.
fn split_ms<const N: usize>(total_ns: u64, parts: [u64; N]) -> [f64; N] {
    // Rounded as `ms` rounds the duration shown beside them.
    let total_us = (total_ns as f64 / 1e6 * 1000.0).round() as u64;
    let mut us = parts.map(|p| p / 1_000);
    let mut left = total_us.saturating_sub(us.iter().sum());
    let mut order: Vec<usize> = (0..N).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(parts[i] % 1_000));
    for &i in order.iter().cycle().take(N * 2) {
        if left == 0 {
            break;
        }
        if parts[i] > 0 || i == N - 1 {
            us[i] += 1;
            left -= 1;
        }
    }
    us.map(|u| u as f64 / 1_000.0)
}

fn ms(ns: f64) -> f64 {
    (ns / 1e6 * 1000.0).round() / 1000.0
}

/// RFC 3339 of Unix nanoseconds.
pub fn rfc3339(unix_ns: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns))
        .ok()
        .and_then(|t| t.replace_nanosecond(0).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The key of a status in exports: the code, or `"5xx"` for the codes of
/// a class past a route's first eight, `"other"` outside 100 to 599.
pub fn status_key(code: u16) -> String {
    match code {
        0 => "other".into(),
        1..=9 => format!("{code}xx"),
        _ => code.to_string(),
    }
}

/// Since-start figures of a series, read on one side of any reset, with
/// its histogram and exact sum for totals across series.
fn since_start(
    name: &str,
    s: &Series,
    memory_tracking: bool,
) -> (EndpointStats, hdrhistogram::Histogram<u64>, u64) {
    s.read(|s| {
        let h = s.since_start().snapshot();
        let count = h.len();
        let mean = if count > 0 {
            s.since_start().sum() as f64 / count as f64
        } else {
            0.0
        };
        // hdrhistogram reports a bucket's highest equivalent value; the
        // exact max bounds every quantile.
        let q = |q: f64| ms(h.value_at_quantile(q).min(s.since_start().max()) as f64);
        let classes = s.status_classes();
        let deltas = s.memory_deltas();
        let stats = EndpointStats {
            name: name.to_string(),
            count,
            mean_ms: ms(mean),
            p50_ms: q(0.5),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: ms(s.since_start().max() as f64),
            bytes_mean: if count > 0 {
                (s.bytes() as f64 / count as f64).round()
            } else {
                0.0
            },
            status: s.statuses().map(|(c, n)| (status_key(c), n)).collect(),
            errors_5xx: classes[5],
            client_errors_4xx: classes[4],
            rss_delta: memory_tracking.then(|| RssDelta {
                measured: deltas.n,
                of: count,
                mean_bytes: if deltas.n > 0 {
                    (deltas.sum as f64 / deltas.n as f64).round()
                } else {
                    0.0
                },
                max_bytes: deltas.max,
                estimated: deltas.n < count,
            }),
        };
        (stats, h, s.since_start().sum())
    })
}

/// The slow log (newest first) grouped by pattern, most frequent first.
fn group_slow(log: &[SlowQueryView]) -> Vec<SlowPattern> {
    let mut groups: Vec<SlowPattern> = Vec::new();
    for q in log {
        match groups.iter_mut().find(|g| g.pattern == q.pattern) {
            Some(g) => {
                g.count += 1;
                g.worst_ms = g.worst_ms.max(q.duration_ms);
                if !g.routes.contains(&q.route) {
                    g.routes.push(q.route.clone());
                }
            }
            None => groups.push(SlowPattern {
                pattern: q.pattern.clone(),
                count: 1,
                worst_ms: q.duration_ms,
                // Newest first: the first seen is the latest.
                last_at: q.at.clone(),
                routes: vec![q.route.clone()],
            }),
        }
    }
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.worst_ms.total_cmp(&a.worst_ms))
    });
    groups
}

/// The recent window of an HTTP series, and when it starts (clock ns).
///
/// The window keeps buckets, not values: its largest bucket's highest
/// value is not a request's duration. The exact one is used where it is
/// known: the since-start max when the window reaches back to the start,
/// or a kept request's duration (`kept`: the route's kept slowest, start
/// and duration) in the window and in that same bucket. Quantiles never
/// exceed the max shown.
fn recent(
    name: &str,
    s: &Series,
    now: u64,
    kept: &[(u64, u64)],
) -> Option<(EndpointStats, Option<u64>)> {
    let (h, totals) = s.recent()?.snapshot_with_totals(now, s.since_start());
    let count = h.len();
    let all_time = s.since_start().max();
    let max = if count == 0 {
        0
    } else if totals.since_ns.is_none() {
        all_time
    } else {
        let from = totals.since_ns.unwrap_or(0);
        kept.iter()
            .filter(|(start, d)| *start >= from && h.equivalent(*d, h.max()))
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_else(|| h.max().min(all_time))
    };
    let q = |q: f64| ms(h.value_at_quantile(q).min(max) as f64);
    let stats = EndpointStats {
        name: name.to_string(),
        count,
        mean_ms: if count > 0 {
            ms(totals.sum as f64 / count as f64)
        } else {
            0.0
        },
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: ms(max as f64),
        ..EndpointStats::default()
    };
    Some((stats, totals.since_ns))
}

impl Monitor {
    /// The snapshot; `database` comes from the database layer.
    pub fn snapshot(&self, database: DatabaseView) -> PerfSnapshot {
        let Some(inner) = self.inner() else {
            return PerfSnapshot {
                enabled: false,
                config: self.config().clone(),
                database,
                ..PerfSnapshot::default()
            };
        };
        let mut s = inner.snapshot(self.config(), database);
        s.history = HistoryView::of(self);
        s
    }
}

impl Inner {
    fn name(&self, op: OpId) -> String {
        if op == OpId::NONE {
            return String::new();
        }
        self.recorder
            .registry()
            .get(op)
            .map(|e| e.name.clone())
            .unwrap_or_default()
    }

    fn snapshot(&self, config: &PerfConfig, mut database: DatabaseView) -> PerfSnapshot {
        let rec = &self.recorder;
        let now = rec.now_ns();
        let counting_seconds = self.counting_seconds().max(1e-9);
        let mut endpoints = Vec::new();
        let mut endpoints_recent = Vec::new();
        let mut functions = Vec::new();
        let mut query_patterns = Vec::new();
        let mut status_codes: BTreeMap<String, u64> = BTreeMap::new();
        let mut all_http = starpunk_perf::new_hdr(&rec.config().layout);
        let (mut http_sum, mut queries) = (0u64, 0u64);
        let (mut errors_5xx, mut client_errors_4xx) = (0u64, 0u64);
        // The headline figures: readers' requests only when the owner's
        // are apart (`STARPUNK_PERF_OWN_TRAFFIC`).
        let (mut head_requests, mut head_5xx, mut head_4xx) = (0u64, 0u64, 0u64);
        let mut own = OwnView {
            mode: config.own_traffic,
            ..OwnView::default()
        };
        let mut recent_count = 0u64;
        // The recent window starts at its oldest checkpoint, or at start
        // or the last clear when it reaches back that far.
        let mut window_start = self.counting_since_ns();
        let kept = self.kept.view(now);
        for (id, entry) in rec.registry().iter() {
            let s = &entry.value;
            if entry.category == Category::Memory {
                continue;
            }
            let http = entry.category == Category::Http;
            // One pass over the counters per series (no separate count).
            let (e, h, sum) = since_start(&entry.name, s, http && config.memory_tracking);
            if e.count == 0 {
                continue;
            }
            match entry.category {
                Category::Http => {
                    for (code, n) in &e.status {
                        *status_codes.entry(code.clone()).or_default() += n;
                    }
                    errors_5xx += e.errors_5xx;
                    client_errors_4xx += e.client_errors_4xx;
                    let apart = config.own_traffic.sets_apart(&entry.name);
                    if super::own::is_own(&entry.name) {
                        own.requests += e.count;
                    }
                    if !apart {
                        head_requests += e.count;
                        head_5xx += e.errors_5xx;
                        head_4xx += e.client_errors_4xx;
                        // Same layout: adding cannot fail.
                        let _ = all_http.add(&h);
                        http_sum = http_sum.wrapping_add(sum);
                    }
                    // A window that reaches back to the start holds what the
                    // since-start figures hold: shown with the same values
                    // (its own histogram keeps coarser checkpoints).
                    let whole = EndpointStats {
                        name: e.name.clone(),
                        count: e.count,
                        mean_ms: e.mean_ms,
                        p50_ms: e.p50_ms,
                        p95_ms: e.p95_ms,
                        p99_ms: e.p99_ms,
                        max_ms: e.max_ms,
                        ..EndpointStats::default()
                    };
                    endpoints.push(e);
                    let kept_here: Vec<(u64, u64)> = kept
                        .slowest
                        .iter()
                        .filter(|k| k.route == id)
                        .map(|k| (k.start_ns, k.duration_ns))
                        .collect();
                    if let Some((r, since)) = recent(&entry.name, s, now, &kept_here) {
                        let r = match since {
                            Some(since) => {
                                window_start = window_start.max(since);
                                r
                            }
                            None if r.count == whole.count => whole,
                            None => r,
                        };
                        if apart {
                            if r.count > 0 {
                                own.endpoints.push(r);
                            }
                        } else {
                            recent_count += r.count;
                            if r.count > 0 {
                                endpoints_recent.push(r);
                            }
                        }
                    }
                }
                Category::Db => {
                    queries += e.count;
                    query_patterns.push(PatternStats {
                        pattern_id: id.0,
                        pattern: entry.name.clone(),
                        calls: e.count,
                        total_ms: ms(sum as f64),
                        mean_ms: e.mean_ms,
                        p99_ms: e.p99_ms,
                        rows: s.rows(),
                        locations: self.plans.locations(id),
                    });
                }
                Category::Function => functions.push(e),
                Category::Memory => {}
            }
        }
        let by_p99 = |a: &EndpointStats, b: &EndpointStats| b.p99_ms.total_cmp(&a.p99_ms);
        endpoints.sort_by(by_p99);
        endpoints_recent.sort_by(by_p99);
        own.endpoints.sort_by(by_p99);
        functions.sort_by(by_p99);
        query_patterns.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));

        let requests_total: u64 = endpoints.iter().map(|e| e.count).sum();
        let window_seconds = (now.saturating_sub(window_start) as f64 / 1e9).max(1e-9);
        let (route_patterns, ring) = self.ring_views(config.sample_rate < 1.0);
        // A slow statement's request: the kept one with its request id
        // whose time holds the statement's (ids restart with each run).
        let anchor = rec.anchor();
        let kept_spans: Vec<(u64, u64, u64, String)> = kept
            .slowest
            .iter()
            .chain(&kept.errors)
            .chain(&kept.slow_statements)
            .map(|k| {
                let from = anchor.to_unix_ns(k.start_ns);
                (k.request_id, from, from + k.duration_ns, self.kept_id(k))
            })
            .collect();
        let slow_log = self.slow_queries();
        let slow_queries: Vec<SlowQueryView> = slow_log
            .iter()
            .rev()
            .map(|q| SlowQueryView {
                at: rfc3339(q.at_unix_ns),
                pattern: self.name(q.pattern),
                duration_ms: ms(q.duration_ns as f64),
                route: self.name(q.route),
                location: super::plans::location(q.location),
                request: kept_spans
                    .iter()
                    .find(|(id, from, to, _)| {
                        q.request_id != 0
                            && *id == q.request_id
                            && (*from..=*to).contains(&q.at_unix_ns)
                    })
                    .map(|k| k.3.clone())
                    .unwrap_or_default(),
            })
            .collect();
        let view = |k: &std::sync::Arc<super::kept::KeptRequest>| self.kept_view(k);
        let (own_slowest, worst_requests): (Vec<WorstRequest>, Vec<WorstRequest>) = kept
            .slowest
            .iter()
            .map(view)
            .partition(|w| config.own_traffic.sets_apart(&w.route));
        own.slowest = own_slowest;
        let recent_errors: Vec<WorstRequest> = kept.errors.iter().map(view).collect();
        let slow_statement_requests: Vec<WorstRequest> =
            kept.slow_statements.iter().map(view).collect();
        let query_plans = self.plan_views(&slow_log, &kept);
        let (bytes, held) = self.kept.memory();
        let kept_memory = KeptMemory {
            requests: held,
            bytes,
            ceiling_bytes: super::kept::ceiling_bytes(super::MAX_ROUTES),
        };
        let slow_patterns = group_slow(&slow_queries);
        let samples = self.memory_samples();
        let live = if config.memory_tracking {
            super::memory::read()
        } else {
            super::memory::MemoryReading::default()
        };
        let memory = MemoryView {
            tracking: config.memory_tracking,
            rss_bytes: live.rss_bytes,
            hwm_bytes: live.hwm_bytes,
            growth_bytes: match (samples.first(), samples.last()) {
                (Some(a), Some(b)) => b.1 as i64 - a.1 as i64,
                _ => 0,
            },
            window_seconds: match (samples.first(), samples.last()) {
                (Some(a), Some(b)) => b.0.saturating_sub(a.0),
                _ => 0,
            },
            samples: samples.iter().map(|&(t, r)| [t, r]).collect(),
        };
        database.queries_per_second = queries as f64 / counting_seconds;
        let p99_response_ms = ms(all_http.value_at_quantile(0.99) as f64);
        let now_totals = Totals {
            at_unix: rec.anchor().to_unix_ns(now) as f64 / 1e9,
            requests: head_requests,
            errors_5xx: head_5xx,
            client_errors_4xx: head_4xx,
            slow_queries: self.slow_total.load(std::sync::atomic::Ordering::Relaxed),
            latency: all_http,
        };
        let overview = match self.trend.lock() {
            Ok(t) => t.overview(&now_totals, live.rss_bytes),
            Err(_) => Overview::default(),
        };
        let stats = rec.ring().stats();
        let share = |n: u64| {
            if head_requests > 0 {
                n as f64 / head_requests as f64
            } else {
                0.0
            }
        };
        PerfSnapshot {
            enabled: true,
            uptime_seconds: self.uptime().as_secs_f64(),
            counting_seconds,
            config: config.clone(),
            requests_total,
            requests_per_second: recent_count as f64 / window_seconds,
            window_seconds,
            mean_response_ms: if head_requests > 0 {
                ms(http_sum as f64 / head_requests as f64)
            } else {
                0.0
            },
            p99_response_ms,
            overview,
            alerts: self.alerts_view(),
            history: HistoryView::default(),
            range: None,
            errors_5xx,
            client_errors_4xx,
            error_rate: share(head_5xx),
            client_error_rate: share(head_4xx),
            endpoints,
            endpoints_recent,
            functions,
            slow_queries,
            slow_patterns,
            query_patterns,
            route_patterns,
            worst_request: worst_requests.first().cloned(),
            worst_requests,
            recent_errors,
            slow_statement_requests,
            query_plans,
            kept: kept_memory,
            own_traffic: own,
            memory,
            database,
            status_codes,
            buffer: BufferView {
                capacity: stats.capacity,
                len: ring.sampled + ring.forced,
                overwritten: stats.overwritten,
                dropped: stats.dropped,
                forced: ring.forced,
            },
            sampling: SamplingView {
                rate: config.sample_rate,
                estimated: config.sample_rate < 1.0,
                ring_sampled: ring.sampled,
                ring_forced: ring.forced,
            },
            monitor: MonitorCost {
                memory_bytes: rec.memory_bytes(),
                record_ns: self.record_cost_ns,
                series: rec.registry().len(),
                series_capacity: rec.registry().capacity(),
            },
        }
    }

    /// The ring's records, oldest first.
    pub fn records(&self) -> Vec<MetricRecord> {
        let mut out = Vec::new();
        self.recorder.ring().snapshot(&mut out);
        out
    }

    /// Route x pattern (with N+1 flags) from the sampled requests in the
    /// ring, and the ring's make-up.
    fn ring_views(&self, estimated: bool) -> (Vec<RoutePattern>, RingMakeup) {
        let records = self.records();
        let forced = records.iter().filter(|r| r.forced).count();
        let makeup = RingMakeup {
            sampled: records.len() - forced,
            forced,
        };
        // (route, pattern) -> (calls, per request counts); forced records
        // stand for no sample and are left out. Only requests whose every
        // statement is still in the ring count: those that started after
        // the ring's horizon (the earliest end of a record it holds: every
        // record pushed before that is gone, every one pushed after is
        // here; a statement is pushed when it ends, after its request
        // started). So a route's calls per request is never cut by the
        // ring's edge.
        let horizon = records
            .iter()
            .map(|r| r.timestamp_ns.saturating_add(r.duration_ns))
            .min()
            .unwrap_or(0);
        let whole: std::collections::HashSet<u64> = records
            .iter()
            .filter(|r| {
                r.category == Category::Http
                    && !r.forced
                    && r.request_id != 0
                    && r.timestamp_ns >= horizon
            })
            .map(|r| r.request_id)
            .collect();
        let mut pairs: HashMap<(OpId, OpId), (u64, HashMap<u64, u64>)> = HashMap::new();
        let mut route_requests: HashMap<OpId, u64> = HashMap::new();
        for r in &records {
            if !whole.contains(&r.request_id) {
                continue;
            }
            match r.category {
                Category::Http => *route_requests.entry(r.operation).or_default() += 1,
                Category::Db if !r.forced => {
                    let e = pairs.entry((r.parent, r.operation)).or_default();
                    e.0 += 1;
                    *e.1.entry(r.request_id).or_default() += 1;
                }
                _ => {}
            }
        }
        let mut route_patterns: Vec<RoutePattern> = pairs
            .into_iter()
            .map(|((route, pattern), (calls, per))| {
                let max_per_request = per.values().copied().max().unwrap_or(0);
                let requests = route_requests.get(&route).copied().unwrap_or(0);
                RoutePattern {
                    route: self.name(route),
                    pattern: self.name(pattern),
                    calls,
                    requests,
                    per_request: if requests > 0 {
                        (calls as f64 / requests as f64 * 100.0).round() / 100.0
                    } else {
                        0.0
                    },
                    max_per_request,
                    n_plus_one: max_per_request >= N_PLUS_ONE,
                    estimated,
                }
            })
            .collect();
        route_patterns.sort_by(|a, b| {
            b.max_per_request
                .cmp(&a.max_per_request)
                .then(b.calls.cmp(&a.calls))
        });

        (route_patterns, makeup)
    }

    /// A kept request's anchor: its start (Unix ms) and request id, unique
    /// across runs (request ids restart with each).
    fn kept_id(&self, k: &super::kept::KeptRequest) -> String {
        let ms = self.recorder.anchor().to_unix_ns(k.start_ns) / 1_000_000;
        format!("r{ms}-{}", k.request_id)
    }

    /// A kept request as the page and the JSON show it.
    pub(super) fn kept_view(&self, k: &super::kept::KeptRequest) -> WorstRequest {
        use super::trace::SpanKind;
        let mut counts: Vec<(String, u64)> = Vec::new();
        let (mut sql_ns, mut fn_ns) = (0u64, 0u64);
        let mut largest = Largest::default();
        let mut largest_ns = 0u64;
        let mut timeline = Vec::with_capacity(k.spans.len());
        for sp in k.spans.iter() {
            let name = self.name(sp.op);
            let location = sp.location.map(super::plans::location).unwrap_or_default();
            let kind = match sp.kind {
                SpanKind::Sql => "sql",
                SpanKind::Function => "function",
            };
            if sp.kind == SpanKind::Sql {
                match counts.iter_mut().find(|(n, _)| *n == name) {
                    Some(c) => c.1 += 1,
                    None => counts.push((name.clone(), 1)),
                }
            }
            if sp.depth == 0 {
                match sp.kind {
                    SpanKind::Sql => sql_ns += sp.duration_ns,
                    SpanKind::Function => fn_ns += sp.duration_ns,
                }
            }
            if sp.duration_ns > largest_ns {
                largest_ns = sp.duration_ns;
                largest = Largest {
                    kind: kind.into(),
                    name: name.clone(),
                    duration_ms: ms(sp.duration_ns as f64),
                    location: location.clone(),
                };
            }
            timeline.push(Span {
                kind: kind.into(),
                name,
                offset_ms: ms(sp.start_ns.saturating_sub(k.start_ns) as f64),
                duration_ms: ms(sp.duration_ns as f64),
                location,
                depth: sp.depth,
            });
        }
        let duration_ms = ms(k.duration_ns as f64);
        // The handler's own code is the rest; the parts are rounded to the
        // microsecond together (largest remainders), so the figures shown
        // add up to the duration shown exactly.
        let (front_ns, own_code_ns) = if k.reasons.front {
            (k.duration_ns, 0)
        } else {
            let rest = k
                .duration_ns
                .saturating_sub(sql_ns + fn_ns + k.overflow.top_ns);
            (0, rest)
        };
        let [sql_ms, functions_ms, unlisted_ms, own_code_ms, front_ms] = split_ms(
            k.duration_ns,
            [sql_ns, fn_ns, k.overflow.top_ns, own_code_ns, front_ns],
        );
        if front_ns > largest_ns {
            largest_ns = front_ns;
            largest = Largest {
                kind: "front".into(),
                duration_ms: front_ms,
                ..Largest::default()
            };
        }
        if own_code_ns > largest_ns {
            largest_ns = own_code_ns;
            largest = Largest {
                kind: "own_code".into(),
                duration_ms: own_code_ms,
                ..Largest::default()
            };
        }
        let waited = k.before.queued_ns + k.before.body_ns;
        if waited > largest_ns {
            largest = Largest {
                kind: "queued".into(),
                duration_ms: ms(waited as f64),
                ..Largest::default()
            };
        }
        let mut because = Vec::new();
        if k.reasons.slowest {
            because.push("slowest");
        }
        if k.reasons.error {
            because.push("error");
        }
        if k.reasons.slow_statement {
            because.push("slow_statement");
        }
        if k.reasons.front {
            because.push("answered_by_the_front");
        }
        let route = self.name(k.route);
        WorstRequest {
            id: self.kept_id(k),
            own: super::own::is_own(&route),
            route,
            at: rfc3339(self.recorder.anchor().to_unix_ns(k.start_ns)),
            duration_ms,
            status: k.status,
            kept_because: because.into_iter().map(String::from).collect(),
            queries: counts,
            parts: Parts {
                sql_ms,
                functions_ms,
                unlisted_ms,
                unlisted: k.overflow.count,
                own_code_ms,
                front_ms,
            },
            before_handler: BeforeHandler {
                body_ms: ms(k.before.body_ns as f64),
                queued_ms: ms(k.before.queued_ns as f64),
            },
            largest,
            timeline,
        }
    }

    /// The plans of the patterns in the slow log and the kept requests.
    fn plan_views(
        &self,
        slow_log: &[super::SlowQuery],
        kept: &super::kept::KeptSet,
    ) -> Vec<PlanView> {
        let mut out: Vec<PlanView> = Vec::new();
        for op in self.plan_candidates(slow_log, kept) {
            if let Some(plan) = self.plans.get(op) {
                out.push(PlanView {
                    pattern_id: op.0,
                    pattern: self.name(op),
                    locations: self.plans.locations(op),
                    full_scan: !plan.full_scans.is_empty(),
                    plan,
                });
            }
        }
        out
    }

    /// Patterns that deserve a plan: in the slow log or in a kept request.
    pub fn plan_candidates(
        &self,
        slow_log: &[super::SlowQuery],
        kept: &super::kept::KeptSet,
    ) -> Vec<OpId> {
        let mut ops: Vec<OpId> = Vec::new();
        let spans = kept
            .slowest
            .iter()
            .chain(&kept.errors)
            .chain(&kept.slow_statements)
            .flat_map(|k| k.spans.iter())
            .filter(|sp| sp.kind == super::trace::SpanKind::Sql)
            .map(|sp| sp.op);
        for op in slow_log.iter().rev().map(|q| q.pattern).chain(spans) {
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
        ops
    }
}

/// How many records of the ring the sampler chose and how many were kept
/// anyway.
struct RingMakeup {
    sampled: usize,
    forced: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_rounded_together_add_up_to_the_duration_shown() {
        // Three parts of 0.4 us and the rest: cut one by one they would
        // show 0 + 0 + 0 + 1.799 of a 2.999 ms request.
        let parts = [400, 400, 400, 2_998_999 - 1_200 + 600];
        let total: u64 = parts.iter().sum();
        let shown = split_ms(total, parts);
        let sum: f64 = shown.iter().sum();
        assert!(
            (sum - ms(total as f64)).abs() < 1e-9,
            "{shown:?} of {}",
            ms(total as f64)
        );
        for (p, s) in parts.iter().zip(shown) {
            assert!(
                (s - *p as f64 / 1e6).abs() <= 0.001,
                "{p} ns shown as {s} ms"
            );
        }
        // Many small statements: still exact.
        let mut many = [1_499u64; 33];
        many[32] = 17;
        let total: u64 = many.iter().sum();
        let sum: f64 = split_ms(total, many).iter().sum();
        assert!((sum - ms(total as f64)).abs() < 1e-9);
        assert_eq!(split_ms(0, [0, 0]), [0.0, 0.0]);
    }
}
