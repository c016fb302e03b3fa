//! One typed snapshot of everything the monitor knows, built from the
//! series, the ring, the kept store and the trend (its types in
//! [`super::model`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use starpunk_perf::{Category, MetricRecord, OpId, Series};

use super::model::*;
use crate::monitoring::evidence::{ms, rfc3339, WorstRequest};
use crate::monitoring::ticker::trend::{Overview, Totals};
use crate::monitoring::{Inner, Monitor, PerfConfig};

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
                    if crate::monitoring::own::is_own(&entry.name) {
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
                        locations: self.sources.locations(id),
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
                location: crate::monitoring::request::sources::location(q.location),
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
        let view =
            |k: &std::sync::Arc<crate::monitoring::request::kept::KeptRequest>| self.kept_view(k);
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
            ceiling_bytes: crate::monitoring::request::kept::ceiling_bytes(
                crate::monitoring::MAX_ROUTES,
            ),
        };
        let slow_patterns = group_slow(&slow_queries);
        let samples = self.memory_samples();
        let live = if config.memory_tracking {
            crate::monitoring::memory::read()
        } else {
            crate::monitoring::memory::MemoryReading::default()
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
            refused: RefusedView::of(&self.refusals),
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
                block: self.recorder.ring().block(),
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

    /// The plans of the patterns in the slow log and the kept requests.
    fn plan_views(
        &self,
        slow_log: &[crate::monitoring::SlowQuery],
        kept: &crate::monitoring::request::kept::KeptSet,
    ) -> Vec<PlanView> {
        let mut out: Vec<PlanView> = Vec::new();
        for op in self.plan_candidates(slow_log, kept) {
            if let Some(plan) = self.plans.get(op) {
                out.push(PlanView {
                    pattern_id: op.0,
                    pattern: self.name(op),
                    locations: self.sources.locations(op),
                    full_scan: !plan.full_scans.is_empty(),
                    plan,
                });
            }
        }
        out
    }
}

/// How many records of the ring the sampler chose and how many were kept
/// anyway.
struct RingMakeup {
    sampled: usize,
    forced: usize,
}

impl Inner {
    /// The alert rules' states, recent events and webhook counts.
    pub fn alerts_view(&self) -> AlertsView {
        let (rules, events) = match self.alerts.as_ref().map(Mutex::lock) {
            Some(Ok(a)) => (a.view(), a.events()),
            _ => (Vec::new(), Vec::new()),
        };
        AlertsView {
            rules,
            events,
            webhook: self
                .webhook
                .as_ref()
                .map(crate::monitoring::ticker::webhook::Webhook::view),
        }
    }
}
