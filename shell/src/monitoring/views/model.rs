//! The typed read models: what the dashboard renders, the JSON and CSV
//! exports serialise and `/metrics` exposes, so none of them can disagree.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::monitoring::evidence::WorstRequest;
use crate::monitoring::ticker::trend::Overview;
use crate::monitoring::Monitor;
use crate::monitoring::PerfConfig;

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
    pub plan: crate::monitoring::ticker::plans::Plan,
    /// A table of `full_scan_rows` or more read whole.
    pub full_scan: bool,
}

/// The owner's own requests, when `STARPUNK_PERF_OWN_TRAFFIC` is `apart`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct OwnView {
    /// `apart` or `include`.
    pub mode: crate::monitoring::own::OwnTraffic,
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
    /// Tickets a thread takes at once: each block another thread starts
    /// can leave up to this many of a busy thread's last `capacity`
    /// records out of the ring (docs/ARCHITECTURE.md, "The ring protocol").
    pub block: usize,
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
    pub fn from_state(days: u32, h: &crate::monitoring::ticker::HistoryState) -> HistoryView {
        HistoryView {
            days,
            ok: h.store.is_some() && h.error.is_none(),
            error: h.error.clone(),
            bytes: h
                .dir
                .as_deref()
                .map_or(0, crate::monitoring::ticker::history::History::bytes),
        }
    }
}

/// The alert rules, their states and what happened.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct AlertsView {
    /// Each rule's state (`ok`, `pending`, `firing`, `resolving`), last
    /// value and threshold.
    pub rules: Vec<crate::monitoring::ticker::alerts::RuleView>,
    /// Recent firings and resolutions, newest first.
    pub events: Vec<crate::monitoring::ticker::alerts::AlertEvent>,
    /// Webhook deliveries, when a webhook is configured.
    pub webhook: Option<crate::monitoring::ticker::webhook::WebhookView>,
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
    /// Requests the HTTP front refused or timed out (no handler ran): not
    /// in `requests_total`, the latency figures or the error rates.
    pub refused: RefusedView,
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
    /// Slow statements, newest first (the last [`crate::monitoring::SLOW_LOG_LEN`]).
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

/// The key of a status in exports: the code, or `"5xx"` for the codes of
/// a class past a route's first eight, `"other"` outside 100 to 599.
pub fn status_key(code: u16) -> String {
    match code {
        0 => "other".into(),
        1..=9 => format!("{code}xx"),
        _ => code.to_string(),
    }
}

/// Requests the HTTP front refused, since start or the last clear.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RefusedView {
    /// All of them.
    pub total: u64,
    /// By reason, every reason listed (zeros too).
    pub reasons: Vec<RefusedReason>,
}

/// Refusals of one reason.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RefusedReason {
    /// `bad_request`, `body_timeout`, `body_too_large`, `uri_too_long`,
    /// `head_too_large`, `body_budget`, `response_budget`, `connections` or
    /// `client_connections`.
    pub reason: String,
    /// The status answered.
    pub status: u16,
    /// How many.
    pub count: u64,
}

impl RefusedView {
    /// The view of `refusals`.
    pub fn of(refusals: &crate::monitoring::request::refusals::Refusals) -> RefusedView {
        let reasons: Vec<RefusedReason> = refusals
            .counts()
            .iter()
            .map(|&(r, count)| RefusedReason {
                reason: r.name().to_string(),
                status: r.status(),
                count,
            })
            .collect();
        RefusedView {
            total: reasons.iter().map(|r| r.count).sum(),
            reasons,
        }
    }
}
