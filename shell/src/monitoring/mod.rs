//! All instrumentation of the shell lives here: the request wrapper, the
//! SQL hook, named function timings, memory sampling and the ticker. Nothing
//! else in the shell touches the recorder, and this module names no web or
//! database type: routes reach it as a [`RouteKey`], statements as text.
//!
//! Sampling (`STARPUNK_PERF_SAMPLE_RATE`) thins the ring, never the
//! aggregates: every request, statement and function is timed and counted
//! in its series (counts, status mix, bytes, quantiles stay exact at any
//! rate); only the sampled ones, plus every 5xx and slow statement
//! (`forced`), go to the ring that feeds the detail views. With memory
//! tracking, the RSS change is measured for sampled requests only.

pub mod evidence;
pub mod memory;
pub mod own;
pub mod request;
pub mod settings;
pub mod ticker;
pub mod views;

use std::collections::VecDeque;
use std::panic::Location;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use starpunk_perf::{Category, MetricRecord, OpId, Recorder, RecorderConfig, TscClock};

pub use settings::PerfConfig;

/// A route as the monitor knows it: a small dense index (its slot in the
/// series-id cache) and its template (the series name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteKey {
    /// Dense index, below [`MAX_ROUTES`] (larger ones work, uncached).
    pub index: usize,
    /// Method and path template, for example `GET /notes/{slug}`.
    pub template: &'static str,
}

/// Routes whose series ids are cached.
pub const MAX_ROUTES: usize = 64;

/// Named core operations, timed as category `function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// Creating a note (admin form or Micropub).
    NoteCreate,
    /// Editing a note.
    NoteUpdate,
    /// Deleting a note.
    NoteDelete,
    /// A full-text search.
    Search,
    /// Building one of the three feeds.
    FeedGeneration,
    /// Checking a password, session or token.
    Authentication,
}

impl Function {
    /// Every function, in id order.
    pub const ALL: [Function; 6] = [
        Function::NoteCreate,
        Function::NoteUpdate,
        Function::NoteDelete,
        Function::Search,
        Function::FeedGeneration,
        Function::Authentication,
    ];

    /// The series name.
    pub fn name(self) -> &'static str {
        match self {
            Function::NoteCreate => "note.create",
            Function::NoteUpdate => "note.update",
            Function::NoteDelete => "note.delete",
            Function::Search => "search",
            Function::FeedGeneration => "feed.generate",
            Function::Authentication => "authentication",
        }
    }
}

/// One statement over the slow threshold.
#[derive(Clone, Copy, Debug)]
pub struct SlowQuery {
    /// Unix time of the statement's start, nanoseconds.
    pub at_unix_ns: u64,
    /// Its pattern.
    pub pattern: OpId,
    /// How long it ran.
    pub duration_ns: u64,
    /// The route that ran it, or `OpId::NONE` outside a request.
    pub route: OpId,
    /// The request that ran it (0 outside a request).
    pub request_id: u64,
    /// The code that ran it.
    pub location: &'static Location<'static>,
}

/// Slow statements kept for the dashboard.
pub const SLOW_LOG_LEN: usize = 100;
/// Memory samples kept: one every 10 s for 15 minutes.
pub const MEMORY_SAMPLES: usize = 90;
/// Seconds between memory samples.
pub const MEMORY_SAMPLE_SECS: u64 = 10;

static NEXT_MONITOR: AtomicU64 = AtomicU64::new(1);

/// The monitor: `None` inside when monitoring is disabled, so every hook is
/// one branch and no clock is read.
pub struct Monitor {
    inner: Option<Inner>,
    config: PerfConfig,
    /// When set, query log lines go here instead of stderr (tests).
    log_capture: Mutex<Option<Vec<String>>>,
}

/// The enabled monitor's state.
pub struct Inner {
    id: u64,
    /// The core recorder.
    pub recorder: Recorder<TscClock>,
    slow_threshold_ns: u64,
    /// Series ids of routes and functions, registered on first use so an
    /// unused route costs no series memory; `u32::MAX` until then.
    route_ops: Vec<AtomicU32>,
    function_ops: Vec<AtomicU32>,
    memory_op: AtomicU32,
    slow_log: Mutex<VecDeque<SlowQuery>>,
    memory_samples: Mutex<VecDeque<(u64, u64)>>,
    /// Slow statements since start or the last clear.
    slow_total: AtomicU64,
    /// The last fifteen minutes, minute by minute (closed by the ticker).
    trend: Mutex<ticker::trend::Trend>,
    /// Alert rules and their states; `None` without rules.
    alerts: Option<Mutex<ticker::alerts::Alerts>>,
    /// Where alerts are POSTed, when configured.
    webhook: Option<ticker::webhook::Webhook>,
    /// The site's URL, for webhook bodies (set when the server starts).
    site: std::sync::OnceLock<String>,
    /// The history file, with `STARPUNK_PERF_HISTORY_DAYS` > 0.
    history: Mutex<ticker::HistoryState>,
    started: Instant,
    /// Recorder clock at start or the last [`Monitor::clear`]: the series
    /// count from here, so rates divide by the time since.
    counting_since_ns: AtomicU64,
    /// One record's cost, measured at start on a scratch recorder.
    pub record_cost_ns: f64,
    /// Requests kept in detail, apart from the ring.
    pub kept: request::kept::Kept,
    /// Call sites per pattern (fed by the request path, cold).
    pub sources: request::sources::Sources,
    /// Requests the HTTP front refused, by reason.
    pub refusals: request::refusals::Refusals,
    /// Query plans per pattern (the ticker's).
    pub plans: ticker::plans::Plans,
    /// `STARPUNK_PERF_OWN_TRAFFIC`.
    own_traffic: own::OwnTraffic,
}

impl Monitor {
    /// A monitor configured by `config`; disabled unless
    /// `monitoring_enabled`.
    pub fn new(config: &PerfConfig) -> Monitor {
        if !config.monitoring_enabled {
            return Monitor {
                inner: None,
                config: config.clone(),
                log_capture: Mutex::new(None),
            };
        }
        let core = RecorderConfig {
            buffer_size: config.buffer_size,
            sample_rate: config.sample_rate,
            ..RecorderConfig::default()
        };
        let recorder = Recorder::new(core, TscClock::new())
            .expect("PerfConfig was validated when it was parsed");
        let unset = || AtomicU32::new(u32::MAX);
        let route_ops = (0..MAX_ROUTES).map(|_| unset()).collect();
        let function_ops = Function::ALL.iter().map(|_| unset()).collect();
        let memory_op = unset();
        let inner = Inner {
            id: NEXT_MONITOR.fetch_add(1, Ordering::Relaxed),
            slow_threshold_ns: (config.slow_query_threshold * 1e9) as u64,
            route_ops,
            function_ops,
            memory_op,
            slow_log: Mutex::new(VecDeque::with_capacity(SLOW_LOG_LEN)),
            memory_samples: Mutex::new(VecDeque::with_capacity(MEMORY_SAMPLES)),
            slow_total: AtomicU64::new(0),
            trend: Mutex::new(ticker::trend::Trend::default()),
            alerts: (!config.alerts.is_empty()).then(|| {
                Mutex::new(ticker::alerts::Alerts::new(
                    config.alerts.clone(),
                    config.alert_window_seconds,
                ))
            }),
            webhook: config
                .alert_webhook
                .clone()
                .filter(|_| !config.alerts.is_empty())
                .map(|url| ticker::webhook::Webhook::start(url.0, Duration::from_secs(1))),
            site: std::sync::OnceLock::new(),
            history: Mutex::new(ticker::HistoryState::default()),
            counting_since_ns: AtomicU64::new(recorder.now_ns()),
            started: Instant::now(),
            record_cost_ns: measure_record_cost(core),
            kept: request::kept::Kept::default(),
            sources: request::sources::Sources::default(),
            plans: ticker::plans::Plans::default(),
            refusals: request::refusals::Refusals::default(),
            own_traffic: config.own_traffic,
            recorder,
        };
        inner.restart_trend();
        let monitor = Monitor {
            inner: Some(inner),
            config: config.clone(),
            log_capture: Mutex::new(None),
        };
        if config.memory_tracking {
            monitor.sample_memory();
        }
        monitor
    }

    /// The configuration.
    pub fn config(&self) -> &PerfConfig {
        &self.config
    }

    /// The enabled state, or `None`.
    pub fn inner(&self) -> Option<&Inner> {
        self.inner.as_ref()
    }

    /// Writes a log line (stderr, or the capture buffer when capturing).
    fn log(&self, line: &str) {
        let mut capture = self.log_capture.lock().unwrap_or_else(|p| p.into_inner());
        match capture.as_mut() {
            Some(lines) => lines.push(line.to_string()),
            None => crate::elog!("{line}"),
        }
    }

    /// Starts keeping log lines in memory instead of writing them (tests).
    pub fn capture_logs(&self) {
        *self.log_capture.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
    }

    /// The captured log lines.
    pub fn captured_logs(&self) -> Vec<String> {
        self.log_capture
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// Clears what the monitor holds (the ADR: metrics are cleared on
    /// logout): ring, histograms, slow log and memory samples; rates then
    /// count from now.
    pub fn clear(&self) {
        let Some(inner) = &self.inner else { return };
        inner.recorder.clear();
        inner
            .counting_since_ns
            .store(inner.recorder.now_ns(), Ordering::Relaxed);
        if let Ok(mut l) = inner.slow_log.lock() {
            l.clear();
        }
        if let Ok(mut s) = inner.memory_samples.lock() {
            s.clear();
        }
        inner.slow_total.store(0, Ordering::Relaxed);
        inner.kept.clear();
        inner.plans.clear();
        inner.refusals.clear();
        inner.restart_trend();
        if let Some(Ok(mut a)) = inner.alerts.as_ref().map(Mutex::lock) {
            a.restart();
        }
        if let Ok(mut h) = inner.history.lock() {
            if let Some(store) = h.store.as_mut() {
                if let Err(e) = store.clear() {
                    h.error = Some(e);
                }
            }
        }
    }
}

/// The blog's version, recorded with each start in the history.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Times 20,000 records into a scratch recorder of the same configuration.
fn measure_record_cost(config: RecorderConfig) -> f64 {
    let Ok(scratch) = Recorder::new(config, TscClock::new()) else {
        return 0.0;
    };
    let op = scratch.register(Category::Function, "self-test");
    const N: u64 = 20_000;
    let start = Instant::now();
    for i in 0..N {
        scratch.record(MetricRecord {
            timestamp_ns: i,
            duration_ns: (i * 7919) % 50_000_000,
            operation: op,
            category: Category::Function,
            ..MetricRecord::default()
        });
    }
    start.elapsed().as_nanos() as f64 / N as f64
}

impl Inner {
    pub(crate) fn name(&self, op: OpId) -> String {
        if op == OpId::NONE {
            return String::new();
        }
        self.recorder
            .registry()
            .get(op)
            .map(|e| e.name.clone())
            .unwrap_or_default()
    }

    /// Statements over the slow threshold since start or the last clear.
    pub fn slow_queries_total(&self) -> u64 {
        self.slow_total.load(Ordering::Relaxed)
    }

    /// Slow statements, oldest first.
    pub fn slow_queries(&self) -> Vec<SlowQuery> {
        self.slow_log
            .lock()
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Memory samples `(unix seconds, rss bytes)`, oldest first.
    pub fn memory_samples(&self) -> Vec<(u64, u64)> {
        self.memory_samples
            .lock()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Seconds since start or the last [`Monitor::clear`]: what the
    /// series' counts cover.
    pub fn counting_seconds(&self) -> f64 {
        let since = self.counting_since_ns.load(Ordering::Relaxed);
        self.recorder.now_ns().saturating_sub(since) as f64 / 1e9
    }

    /// Recorder clock at start or the last clear.
    pub fn counting_since_ns(&self) -> u64 {
        self.counting_since_ns.load(Ordering::Relaxed)
    }

    /// Time since the monitor started.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod recover_tests {
    use super::*;
    use std::panic::AssertUnwindSafe;

    #[test]
    fn a_refusal_of_the_front_is_counted_apart_from_routes_errors_and_kept_requests() {
        let m = Monitor::new(&PerfConfig {
            monitoring_enabled: true,
            ..PerfConfig::default()
        });
        use request::refusals::Reason;
        for reason in [
            Reason::BodyBudget,
            Reason::BodyTimeout,
            Reason::BodyTimeout,
            Reason::BodyTooLarge,
        ] {
            m.record_refused(reason);
        }
        let s = m.snapshot(views::DatabaseView::default());
        assert!(s.recent_errors.is_empty(), "{:?}", s.recent_errors);
        assert!(s.worst_requests.is_empty(), "{:?}", s.worst_requests);
        assert_eq!(s.requests_total, 0);
        assert_eq!(s.errors_5xx, 0);
        assert_eq!(s.refused.total, 4);
        let count = |reason: &str| {
            s.refused
                .reasons
                .iter()
                .find(|r| r.reason == reason)
                .map_or(0, |r| r.count)
        };
        assert_eq!(
            (
                count("body_budget"),
                count("body_timeout"),
                count("body_too_large")
            ),
            (1, 2, 1)
        );
        m.clear();
        let s = m.snapshot(views::DatabaseView::default());
        assert_eq!(s.refused.total, 0);
    }

    #[test]
    fn the_buffer_view_names_the_block_that_bounds_what_it_shows() {
        let m = Monitor::new(&PerfConfig {
            monitoring_enabled: true,
            buffer_size: 1_000,
            ..PerfConfig::default()
        });
        let s = m.snapshot(views::DatabaseView::default());
        assert_eq!((s.buffer.capacity, s.buffer.block), (1_000, 64));
    }

    #[test]
    fn a_panic_holding_a_lock_does_not_end_the_feature() {
        let m = Monitor::new(&PerfConfig {
            monitoring_enabled: true,
            ..PerfConfig::default()
        });
        let inner = m.inner().unwrap();
        // A panic while the trend is locked poisons it...
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _t = inner.trend.lock().unwrap();
            panic!("a bug in a tick");
        }));
        assert!(inner.trend.is_poisoned());
        // ...and recovering lets the minutes go on.
        m.recover();
        assert!(!inner.trend.is_poisoned());
        m.close_minute();
        assert!(inner.trend.lock().is_ok());
    }
}
