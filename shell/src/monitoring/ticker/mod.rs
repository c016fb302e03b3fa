//! **The ticker**: what runs once a second on the `starpunk-ticker`
//! thread, off every request: window checkpoints, the trend's minutes
//! ([`trend`]), memory samples, the history file's writes and roll-ups
//! ([`history`], [`slow_history`], [`alert_history`]), alert evaluation
//! ([`alerts`]) and the webhook's deliveries ([`webhook`]), and the
//! query plans of the patterns seen slow ([`plans`]).
//!
//! The rules here: it may lock and do I/O, but it must **never stop**: a
//! failed write is shown on the dashboard and retried on the next tick,
//! a panic in a tick is caught by the app's loop and followed by
//! [`Monitor::recover`]. Nothing here changes the recording path; it
//! reads what the request path recorded. It may read the request path's
//! modules, never the views'.

pub mod alert_history;
pub mod alerts;
pub mod history;
pub mod plans;
pub mod slow_history;
pub mod trend;
pub mod webhook;

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use starpunk_perf::{Category, MetricRecord, OpId};

use super::{memory, Inner, Monitor, MEMORY_SAMPLES, MEMORY_SAMPLE_SECS, VERSION};

/// The history's state: the open file, or why there is none.
#[derive(Default)]
pub struct HistoryState {
    /// The open history.
    pub store: Option<history::History>,
    /// The data directory it lives in.
    pub dir: Option<std::path::PathBuf>,
    /// The last error (opening or writing), shown on the dashboard.
    pub error: Option<String>,
    /// Unix seconds of the last write (or of the opening).
    pub last_close: i64,
}

impl Monitor {
    /// Called every second by the ticker: window checkpoints, a memory
    /// sample every [`MEMORY_SAMPLE_SECS`] when memory tracking is on, and
    /// the trend's point when a wall-clock minute has ended.
    pub fn tick(&self, second: u64) {
        let Some(inner) = &self.inner else { return };
        inner.recorder.rotate();
        inner.kept.expire(inner.recorder.now_ns());
        if self.config.memory_tracking && second.is_multiple_of(MEMORY_SAMPLE_SECS) {
            self.sample_memory();
        }
        let due = inner.trend.lock().is_ok_and(|t| t.due(inner.unix_now()));
        if due {
            self.close_minute();
        }
        if second.is_multiple_of(self.config.alert_every_seconds.max(1)) {
            self.evaluate_alerts();
        }
    }

    /// After a tick panicked: clears the poison of every lock it may have
    /// held, so the trend, history, alerts and logs go on (each holds
    /// plain figures, whole between statements).
    pub fn recover(&self) {
        let Some(inner) = &self.inner else { return };
        inner.trend.clear_poison();
        inner.history.clear_poison();
        inner.slow_log.clear_poison();
        inner.memory_samples.clear_poison();
        if let Some(a) = &inner.alerts {
            a.clear_poison();
        }
    }

    /// The site's URL, named in webhook bodies.
    pub fn set_site(&self, url: &str) {
        if let Some(inner) = &self.inner {
            let _ = inner.site.set(url.to_string());
        }
    }

    /// Evaluates the alert rules now (the ticker calls it every
    /// `alert_every_seconds`): logs each firing and resolution and queues
    /// it for the webhook.
    pub fn evaluate_alerts(&self) {
        let Some(inner) = &self.inner else { return };
        let Some(rules) = &inner.alerts else { return };
        let scopes: Vec<(Option<String>, bool)> = match rules.lock() {
            Ok(a) => a
                .scopes()
                .map(|(s, l)| (s.map(str::to_string), l))
                .collect(),
            Err(_) => return,
        };
        let sample = inner.alert_sample(&scopes);
        let events = match rules.lock() {
            Ok(mut a) => a.evaluate(sample),
            Err(_) => return,
        };
        if !events.is_empty() {
            // Kept in the history too, when it is on (shown after a restart
            // and in the range views).
            if let Ok(h) = inner.history.lock() {
                if let Some(store) = h.store.as_ref() {
                    if let Err(e) = store.write_alert_events(&events) {
                        crate::elog!(
                            "starpunk: performance history: cannot keep alert events ({e})"
                        );
                    }
                }
            }
        }
        for e in events {
            crate::elog!(
                "starpunk: alert {}: {} (value {}{u}, threshold {}{u})",
                e.state,
                e.rule,
                e.value,
                e.threshold,
                u = e.unit
            );
            if let Some(hook) = &inner.webhook {
                let body = serde_json::json!({
                    "rule": e.rule,
                    "state": e.state,
                    "value": e.value,
                    "threshold": e.threshold,
                    "unit": e.unit,
                    "at": e.at,
                    "site": inner.site.get().map_or("", String::as_str),
                });
                hook.send(body.to_string());
            }
        }
    }

    /// Closes the trend's current point now, and writes the minute to the
    /// history when it is on. The ticker calls it when a wall-clock minute
    /// ends; tests and benchmarks call it to make minutes quickly.
    pub fn close_minute(&self) {
        let Some(inner) = &self.inner else { return };
        let totals = inner.http_totals();
        let now = totals.at_unix;
        let rss = self.rss_now();
        if let Ok(mut t) = inner.trend.lock() {
            t.close(totals, rss);
        }
        inner.write_history(now as i64, self.config.history_days);
    }

    /// Opens the history in `dir` when `STARPUNK_PERF_HISTORY_DAYS` > 0.
    /// A history that cannot be opened never stops the blog: the reason
    /// is logged and shown on the dashboard.
    pub fn open_history(&self, dir: &std::path::Path) {
        let Some(inner) = &self.inner else { return };
        if self.config.history_days == 0 {
            return;
        }
        let empty = starpunk_perf::new_hdr(&inner.recorder.config().layout);
        let opened = history::History::open(
            dir,
            self.config.history_days,
            VERSION,
            inner.unix_now() as i64,
            empty,
        )
        .map(|h| h.with_own_traffic(self.config.own_traffic));
        if let Ok(mut h) = inner.history.lock() {
            h.dir = Some(dir.to_path_buf());
            h.last_close = inner.unix_now() as i64;
            match opened {
                Ok(store) => {
                    // The events an earlier run kept, shown again.
                    if let Some(Ok(mut a)) = inner.alerts.as_ref().map(Mutex::lock) {
                        let now = inner.unix_now() as i64;
                        let kept = store
                            .reader()
                            .alert_events(0, now + 1, alerts::EVENTS_KEPT)
                            .unwrap_or_default();
                        a.restore_events(kept);
                    }
                    h.store = Some(store);
                }
                Err(e) => {
                    crate::elog!(
                        "starpunk: performance history unavailable ({e}); the blog runs without it"
                    );
                    h.error = Some(e);
                }
            }
        }
    }

    /// The history's state, for range views.
    pub fn history(&self) -> Option<std::sync::MutexGuard<'_, HistoryState>> {
        self.inner.as_ref()?.history.lock().ok()
    }

    /// Resident memory now, or 0 with memory tracking off.
    pub fn rss_now(&self) -> u64 {
        if self.config.memory_tracking {
            memory::read().rss_bytes
        } else {
            0
        }
    }

    /// Takes one memory sample now.
    pub fn sample_memory(&self) {
        let Some(inner) = &self.inner else { return };
        let reading = memory::read();
        let now = inner.recorder.now_ns();
        let unix = inner.recorder.anchor().to_unix_ns(now) / 1_000_000_000;
        if let Ok(mut s) = inner.memory_samples.lock() {
            if s.len() == MEMORY_SAMPLES {
                s.pop_front();
            }
            s.push_back((unix, reading.rss_bytes));
        }
        inner.recorder.record(MetricRecord {
            timestamp_ns: now,
            memory_delta: reading.rss_bytes as i64,
            operation: inner.lazy(&inner.memory_op, Category::Memory, "process.rss"),
            parent: OpId::NONE,
            category: Category::Memory,
            ..MetricRecord::default()
        });
    }

    /// Patterns that need a query plan at schema version `schema` (seen
    /// slow or in a kept request, not yet explained at it), with their
    /// statement text: the ticker has the database layer explain them.
    pub fn plans_wanted(&self, schema: i64) -> Vec<(OpId, &'static str)> {
        let Some(inner) = &self.inner else {
            return Vec::new();
        };
        let kept = inner.kept.view(inner.recorder.now_ns());
        let ops = inner.plan_candidates(&inner.slow_queries(), &kept);
        inner.plans.wanted(&ops, schema, &inner.sources)
    }

    /// Stores a pattern's plan (see [`plans_wanted`](Self::plans_wanted)).
    pub fn set_plan(&self, op: OpId, plan: plans::Plan) {
        if let Some(inner) = &self.inner {
            inner.plans.set(op, plan);
        }
    }
}

impl Inner {
    /// Unix seconds now, by the recorder's clock.
    pub(super) fn unix_now(&self) -> f64 {
        self.recorder.anchor().to_unix_ns(self.recorder.now_ns()) as f64 / 1e9
    }

    /// The cumulative figures of every HTTP series now (cold path: one
    /// histogram snapshot per route), but the owner's own when they are
    /// apart (`STARPUNK_PERF_OWN_TRAFFIC`): the overview's figures.
    pub(super) fn http_totals(&self) -> trend::Totals {
        let rec = &self.recorder;
        let at_unix = self.unix_now();
        let mut latency = starpunk_perf::new_hdr(&rec.config().layout);
        let (mut requests, mut e5, mut e4) = (0, 0, 0);
        for (_, entry) in rec.registry().iter() {
            if entry.category != Category::Http
                || entry.value.count() == 0
                || self.own_traffic.sets_apart(&entry.name)
            {
                continue;
            }
            let (h, classes) = entry
                .value
                .read(|s| (s.since_start().snapshot(), s.status_classes()));
            requests += h.len();
            e5 += classes[5];
            e4 += classes[4];
            // Same layout: adding cannot fail.
            let _ = latency.add(&h);
        }
        trend::Totals {
            at_unix,
            requests,
            errors_5xx: e5,
            client_errors_4xx: e4,
            slow_queries: self.slow_total.load(Ordering::Relaxed),
            latency,
        }
    }

    /// Writes the minute that ended at `now` to the history, if open: per
    /// route and pattern the cumulative figures (the history keeps the
    /// differences). A failed write is kept as the error to show; the next
    /// minute tries again.
    pub(super) fn write_history(&self, now: i64, days: u32) {
        let Ok(mut h) = self.history.lock() else {
            return;
        };
        if h.store.is_none() {
            // Not open (it failed at start): try again each minute.
            let Some(dir) = h.dir.clone() else { return };
            let empty = starpunk_perf::new_hdr(&self.recorder.config().layout);
            let opened = history::History::open(&dir, days, VERSION, now, empty)
                .map(|h| h.with_own_traffic(self.own_traffic));
            match opened {
                Ok(store) => {
                    crate::elog!("starpunk: performance history: open again");
                    h.store = Some(store);
                    h.error = None;
                    h.last_close = now;
                    return;
                }
                Err(e) => {
                    h.error = Some(e);
                    return;
                }
            }
        }
        let rec = &self.recorder;
        let mut series = Vec::new();
        for (_, entry) in rec.registry().iter() {
            let kind = match entry.category {
                Category::Http => history::KIND_ROUTE,
                Category::Db => history::KIND_PATTERN,
                _ => continue,
            };
            let c = entry.value.read(|s| history::Cumulative {
                counts: history::Counts {
                    count: s.count(),
                    sum_ns: s.since_start().sum(),
                    errors_5xx: s.status_classes()[5],
                    errors_4xx: s.status_classes()[4],
                    bytes: s.bytes(),
                    rows: s.rows(),
                },
                buckets: s.since_start().buckets().collect(),
            });
            if c.counts.count > 0 {
                series.push((kind, entry.name.clone(), c));
            }
        }
        // The minute the point's time mostly fell in: at the ticker's close
        // just after a boundary, the minute that ended; at a close in the
        // middle of a minute (tests), that minute. A minute written twice
        // (a restart within it) is added to, not replaced.
        let mid = if h.last_close > 0 {
            (h.last_close + now) / 2
        } else {
            now - 30
        };
        let start = mid - mid.rem_euclid(60);
        h.last_close = now;
        let slow = self.slow_total.load(Ordering::Relaxed);
        let rss = memory::read().rss_bytes;
        // The kept slowest requests, for the hour they ran in.
        let slowest: Vec<(i64, crate::monitoring::evidence::WorstRequest)> = self
            .kept
            .all_slowest()
            .iter()
            .map(|k| {
                let at = self.recorder.anchor().to_unix_ns(k.start_ns) / 1_000_000_000;
                (at as i64, self.kept_view(k))
            })
            .collect();
        let result = match h.store.as_mut() {
            Some(store) => store
                .write_minute(start, series, slow, rss)
                .and_then(|()| store.write_slow_requests(&slowest)),
            None => Ok(()),
        };
        match result {
            Ok(()) => h.error = None,
            Err(e) => {
                if h.error.as_deref() != Some(e.as_str()) {
                    crate::elog!(
                        "starpunk: performance history: cannot write ({e}); will retry each minute"
                    );
                }
                h.error = Some(e);
            }
        }
    }

    /// What the alert rules need now: per scope (all requests, or one
    /// route) the cumulative requests, 5xx and, when asked, latency
    /// buckets; slow statements; RSS.
    pub(super) fn alert_sample(&self, scopes: &[(Option<String>, bool)]) -> alerts::Sample {
        let rec = &self.recorder;
        let totals = |series: &mut dyn Iterator<Item = &starpunk_perf::Series>, latency: bool| {
            let mut merged = latency.then(|| starpunk_perf::new_hdr(&rec.config().layout));
            let mut t = alerts::ScopeTotals::default();
            for s in series {
                let (count, classes, h) = s.read(|s| {
                    let h = merged.as_ref().map(|_| s.since_start().snapshot());
                    (s.count(), s.status_classes(), h)
                });
                t.requests += count;
                t.errors_5xx += classes[5];
                if let (Some(m), Some(h)) = (merged.as_mut(), h) {
                    let _ = m.add(&h);
                }
            }
            if let Some(m) = merged {
                t.latency = m
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value()))
                    .collect();
            }
            t
        };
        let scopes = scopes
            .iter()
            .map(|(route, latency)| match route {
                // A rule without a route: readers' requests only when the
                // owner's are apart.
                None => totals(
                    &mut rec
                        .registry()
                        .iter()
                        .filter(|(_, e)| {
                            e.category == Category::Http && !self.own_traffic.sets_apart(&e.name)
                        })
                        .map(|(_, e)| &e.value),
                    *latency,
                ),
                Some(r) => totals(
                    &mut rec
                        .registry()
                        .lookup(Category::Http, r)
                        .and_then(|op| rec.series(op))
                        .into_iter(),
                    *latency,
                ),
            })
            .collect();
        alerts::Sample {
            at: self.unix_now(),
            scopes,
            slow_queries: self.slow_total.load(Ordering::Relaxed),
            refused: self.refusals.total(),
            rss_bytes: memory::read().rss_bytes,
        }
    }

    /// Starts the trend again from zero, now (start and clear).
    pub(super) fn restart_trend(&self) {
        let start = trend::Totals {
            at_unix: self.unix_now(),
            requests: 0,
            errors_5xx: 0,
            client_errors_4xx: 0,
            slow_queries: 0,
            latency: starpunk_perf::new_hdr(&self.recorder.config().layout),
        };
        if let Ok(mut t) = self.trend.lock() {
            t.restart(start);
        }
    }
}
