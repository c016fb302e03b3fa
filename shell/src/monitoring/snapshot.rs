//! One typed snapshot of everything the monitor knows. The dashboard renders
//! it and the JSON export serialises it, so the two cannot disagree.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use starpunk_perf::{Category, MetricRecord, OpId, Series};

use super::{Inner, Monitor};
use crate::config::PerfConfig;

/// Latency figures of one series.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EndpointStats {
    /// Route template, pattern or function name.
    pub name: String,
    /// Recorded events.
    pub count: u64,
    /// Events sampling left out.
    pub sampled_out: u64,
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
    /// Status code to count.
    pub status: BTreeMap<String, u64>,
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
}

/// pg_stat_statements-style figures of a pattern.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PatternStats {
    /// Stable id (the Prometheus `pattern_id` label).
    pub pattern_id: u32,
    /// Normalised pattern.
    pub pattern: String,
    /// Recorded executions.
    pub calls: u64,
    /// Executions sampling left out.
    pub sampled_out: u64,
    /// Total time, milliseconds.
    pub total_ms: f64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Rows returned or changed.
    pub rows: u64,
}

/// A route and a pattern it runs, from the ring's recent records.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RoutePattern {
    /// Route template.
    pub route: String,
    /// Pattern.
    pub pattern: String,
    /// Executions in the ring.
    pub calls: u64,
    /// Most executions within one request.
    pub max_per_request: u64,
    /// One request ran it [`N_PLUS_ONE`] times or more.
    pub n_plus_one: bool,
}

/// Executions of one pattern within one request that flag an N+1.
pub const N_PLUS_ONE: u64 = 5;

/// One of the slowest recent requests of a route.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WorstRequest {
    /// Route template.
    pub route: String,
    /// RFC 3339.
    pub at: String,
    /// Milliseconds.
    pub duration_ms: f64,
    /// HTTP status.
    pub status: u16,
    /// Patterns it ran, with counts.
    pub queries: Vec<(String, u64)>,
}

/// Memory figures.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MemoryView {
    /// Tracking on?
    pub tracking: bool,
    /// RSS now.
    pub rss_bytes: u64,
    /// High-water mark.
    pub hwm_bytes: u64,
    /// RSS change over the samples kept (15 minutes).
    pub growth_bytes: i64,
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
    /// Statements per second since start.
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
    /// Records pushed out by newer ones.
    pub overwritten: u64,
    /// Records writers gave up (see the core's `RingStats::dropped`).
    pub dropped: u64,
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

/// Everything the dashboard shows.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PerfSnapshot {
    /// Monitoring on?
    pub enabled: bool,
    /// Seconds since the monitor started.
    pub uptime_seconds: f64,
    /// The seven `STARPUNK_PERF_*` values.
    pub config: PerfConfig,
    /// Requests seen (sampled or not).
    pub requests_total: u64,
    /// Requests per second since start.
    pub requests_per_second: f64,
    /// Mean response time of recorded requests.
    pub mean_response_ms: f64,
    /// 99th percentile of all recorded requests.
    pub p99_response_ms: f64,
    /// Share of recorded requests with a 5xx status.
    pub error_rate: f64,
    /// Per route, since start, slowest (p99) first.
    pub endpoints: Vec<EndpointStats>,
    /// Per route, the last 15 minutes, slowest first.
    pub endpoints_recent: Vec<EndpointStats>,
    /// Named functions.
    pub functions: Vec<EndpointStats>,
    /// Slow statements, newest first.
    pub slow_queries: Vec<SlowQueryView>,
    /// Per pattern, by total time.
    pub query_patterns: Vec<PatternStats>,
    /// Route x pattern from the ring.
    pub route_patterns: Vec<RoutePattern>,
    /// Per route, the slowest recent requests.
    pub worst_requests: Vec<WorstRequest>,
    /// Memory.
    pub memory: MemoryView,
    /// Database.
    pub database: DatabaseView,
    /// Status code to count, all routes.
    pub status_codes: BTreeMap<String, u64>,
    /// The ring buffer.
    pub buffer: BufferView,
    /// The monitor's own cost.
    pub monitor: MonitorCost,
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

fn since_start(name: &str, s: &Series) -> EndpointStats {
    let h = s.since_start.snapshot();
    let count = h.len();
    let mean = if count > 0 {
        s.since_start.sum() as f64 / count as f64
    } else {
        0.0
    };
    // hdrhistogram reports a bucket's highest equivalent value; the exact
    // max bounds every quantile.
    let q = |q: f64| ms(h.value_at_quantile(q).min(s.since_start.max()) as f64);
    EndpointStats {
        name: name.to_string(),
        count,
        sampled_out: s.sampled_out(),
        mean_ms: ms(mean),
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        max_ms: ms(s.since_start.max() as f64),
        bytes_mean: if count > 0 {
            (s.bytes() as f64 / count as f64).round()
        } else {
            0.0
        },
        status: s
            .statuses()
            .map(|(c, n)| {
                (
                    if c == 0 {
                        "other".into()
                    } else {
                        c.to_string()
                    },
                    n,
                )
            })
            .collect(),
    }
}

fn recent(name: &str, s: &Series, now: u64) -> Option<EndpointStats> {
    let (h, totals) = s.recent.as_ref()?.snapshot_with_totals(now, &s.since_start);
    let count = h.len();
    Some(EndpointStats {
        name: name.to_string(),
        count,
        sampled_out: 0,
        mean_ms: if count > 0 {
            ms(totals.sum as f64 / count as f64)
        } else {
            0.0
        },
        p50_ms: ms(h.value_at_quantile(0.5) as f64),
        p95_ms: ms(h.value_at_quantile(0.95) as f64),
        p99_ms: ms(h.value_at_quantile(0.99) as f64),
        max_ms: ms(if count > 0 { h.max() as f64 } else { 0.0 }),
        bytes_mean: 0.0,
        status: BTreeMap::new(),
    })
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
        inner.snapshot(self.config(), database)
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
        let uptime = self.uptime().as_secs_f64().max(1e-9);
        let mut endpoints = Vec::new();
        let mut endpoints_recent = Vec::new();
        let mut functions = Vec::new();
        let mut query_patterns = Vec::new();
        let mut status_codes: BTreeMap<String, u64> = BTreeMap::new();
        let mut all_http = starpunk_perf::new_hdr(&rec.config().layout);
        let (mut http_sum, mut http_errors) = (0u64, 0u64);
        for (id, entry) in rec.registry().iter() {
            let s = &entry.value;
            match entry.category {
                Category::Http => {
                    if s.seen() == 0 {
                        continue;
                    }
                    let e = since_start(&entry.name, s);
                    for (code, n) in &e.status {
                        *status_codes.entry(code.clone()).or_default() += n;
                        if code.starts_with('5') {
                            http_errors += n;
                        }
                    }
                    s.since_start.add_to(&mut all_http);
                    http_sum = http_sum.wrapping_add(s.since_start.sum());
                    endpoints.push(e);
                    if let Some(r) = recent(&entry.name, s, now).filter(|r| r.count > 0) {
                        endpoints_recent.push(r);
                    }
                }
                Category::Db => {
                    if s.seen() == 0 {
                        continue;
                    }
                    let e = since_start(&entry.name, s);
                    query_patterns.push(PatternStats {
                        pattern_id: id.0,
                        pattern: entry.name.clone(),
                        calls: e.count,
                        sampled_out: e.sampled_out,
                        total_ms: ms(s.since_start.sum() as f64),
                        mean_ms: e.mean_ms,
                        p99_ms: e.p99_ms,
                        rows: s.rows(),
                    });
                }
                Category::Function => {
                    if s.seen() > 0 {
                        functions.push(since_start(&entry.name, s));
                    }
                }
                Category::Memory => {}
            }
        }
        let by_p99 = |a: &EndpointStats, b: &EndpointStats| b.p99_ms.total_cmp(&a.p99_ms);
        endpoints.sort_by(by_p99);
        endpoints_recent.sort_by(by_p99);
        functions.sort_by(by_p99);
        query_patterns.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));

        let recorded = all_http.len();
        let (route_patterns, worst_requests) = self.ring_views();
        let slow_queries = self
            .slow_queries()
            .into_iter()
            .rev()
            .map(|q| SlowQueryView {
                at: rfc3339(q.at_unix_ns),
                pattern: self.name(q.pattern),
                duration_ms: ms(q.duration_ns as f64),
                route: self.name(q.route),
            })
            .collect();
        let samples = self.memory_samples();
        let last = self.last_memory();
        let memory = MemoryView {
            tracking: config.memory_tracking,
            rss_bytes: last.rss_bytes,
            hwm_bytes: last.hwm_bytes,
            growth_bytes: match (samples.first(), samples.last()) {
                (Some(a), Some(b)) => b.1 as i64 - a.1 as i64,
                _ => 0,
            },
            samples: samples.iter().map(|&(t, r)| [t, r]).collect(),
        };
        database.queries_per_second = self.queries_seen() as f64 / uptime;
        let stats = rec.ring().stats();
        PerfSnapshot {
            enabled: true,
            uptime_seconds: uptime,
            config: config.clone(),
            requests_total: self.requests_seen(),
            requests_per_second: self.requests_seen() as f64 / uptime,
            mean_response_ms: if recorded > 0 {
                ms(http_sum as f64 / recorded as f64)
            } else {
                0.0
            },
            p99_response_ms: ms(all_http.value_at_quantile(0.99) as f64),
            error_rate: if recorded > 0 {
                http_errors as f64 / recorded as f64
            } else {
                0.0
            },
            endpoints,
            endpoints_recent,
            functions,
            slow_queries,
            query_patterns,
            route_patterns,
            worst_requests,
            memory,
            database,
            status_codes,
            buffer: BufferView {
                capacity: stats.capacity,
                len: rec.ring().len(),
                overwritten: stats.overwritten,
                dropped: stats.dropped,
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

    /// Route x pattern (with N+1 flags) and the worst requests per route.
    fn ring_views(&self) -> (Vec<RoutePattern>, Vec<WorstRequest>) {
        let records = self.records();
        // (route, pattern) -> (calls, per request counts)
        let mut pairs: HashMap<(OpId, OpId), (u64, HashMap<u64, u64>)> = HashMap::new();
        let mut per_request: HashMap<u64, Vec<OpId>> = HashMap::new();
        for r in records.iter().filter(|r| r.category == Category::Db) {
            let e = pairs.entry((r.parent, r.operation)).or_default();
            e.0 += 1;
            if r.request_id != 0 {
                *e.1.entry(r.request_id).or_default() += 1;
                per_request
                    .entry(r.request_id)
                    .or_default()
                    .push(r.operation);
            }
        }
        let mut route_patterns: Vec<RoutePattern> = pairs
            .into_iter()
            .map(|((route, pattern), (calls, per))| {
                let max_per_request = per.values().copied().max().unwrap_or(0);
                RoutePattern {
                    route: self.name(route),
                    pattern: self.name(pattern),
                    calls,
                    max_per_request,
                    n_plus_one: max_per_request >= N_PLUS_ONE,
                }
            })
            .collect();
        route_patterns.sort_by(|a, b| {
            b.max_per_request
                .cmp(&a.max_per_request)
                .then(b.calls.cmp(&a.calls))
        });

        let mut by_route: HashMap<OpId, Vec<&MetricRecord>> = HashMap::new();
        for r in records.iter().filter(|r| r.category == Category::Http) {
            by_route.entry(r.operation).or_default().push(r);
        }
        let anchor = self.recorder.anchor();
        let mut worst = Vec::new();
        for (route, mut reqs) in by_route {
            reqs.sort_by_key(|r| std::cmp::Reverse(r.duration_ns));
            for r in reqs.into_iter().take(3) {
                let mut counts: Vec<(String, u64)> = Vec::new();
                for op in per_request
                    .get(&(r.request_id & ((1 << 40) - 1)))
                    .into_iter()
                    .flatten()
                {
                    let name = self.name(*op);
                    match counts.iter_mut().find(|(n, _)| *n == name) {
                        Some(c) => c.1 += 1,
                        None => counts.push((name, 1)),
                    }
                }
                worst.push(WorstRequest {
                    route: self.name(route),
                    at: rfc3339(anchor.to_unix_ns(r.timestamp_ns)),
                    duration_ms: ms(r.duration_ns as f64),
                    status: r.status,
                    queries: counts,
                });
            }
        }
        worst.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
        (route_patterns, worst)
    }
}
