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

pub mod alert_history;
pub mod alerts;
pub mod history;
pub mod kept;
pub mod memory;
pub mod own;
pub mod plans;
pub mod range;
pub mod slow_history;
pub mod snapshot;
pub mod sql_pattern;
pub mod trace;
pub mod trend;
pub mod webhook;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use starpunk_perf::{Category, MetricRecord, OpId, Recorder, RecorderConfig, TscClock};

use crate::config::PerfConfig;

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

/// The context of the request running on this thread.
#[derive(Clone, Copy)]
struct RequestCtx {
    monitor: u64,
    route: OpId,
    request_id: u64,
    sampled: bool,
    /// A statement of this request went over the slow threshold.
    ran_slow: bool,
}

/// Where the request wrapper learns a response body's length (see
/// [`Monitor::measure_body`]).
#[derive(Clone, Copy)]
enum BodyLength {
    /// Nobody will report it: the wrapper finds it out itself.
    Unreported,
    /// `measure_body` of monitor `0` is running the app and will report it.
    Reported(u64),
    /// The request's record, waiting in `measure_body` for the length.
    Parked(ParkedRequest),
}

/// A request record made by the wrapper, recorded once its body's length
/// is known.
#[derive(Clone, Copy)]
struct ParkedRequest {
    monitor: u64,
    record: MetricRecord,
    /// Sampled or forced: the record goes to the ring, not only the series.
    to_ring: bool,
}

thread_local! {
    static CURRENT: Cell<Option<RequestCtx>> = const { Cell::new(None) };
    static BODY_LENGTH: Cell<BodyLength> = const { Cell::new(BodyLength::Unreported) };
    /// The last request id this thread gave (`u64::MAX` before the first).
    static LAST_REQUEST_ID: Cell<u64> = const { Cell::new(u64::MAX) };
    /// (monitor id, SQL text address, length) to pattern id: statement texts
    /// are `&'static str`, so the address identifies one. Only ids are kept,
    /// never the text with values.
    static PATTERNS: RefCell<HashMap<(u64, usize, usize), OpId, KeyHash>> =
        const { RefCell::new(HashMap::with_hasher(KeyHash)) };
}

/// A multiply-xor hasher for the pattern cache's keys (a monitor id and an
/// address): they are not attacker-controlled, so SipHash's DoS resistance
/// buys nothing and costs ~20 ns per statement.
#[derive(Clone, Copy, Default)]
struct KeyHash;

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

static NEXT_MONITOR: AtomicU64 = AtomicU64::new(1);
static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);

/// A request id unique per thread and request: thread index in the top
/// bits, the thread's request count in the low 24 (40 bits survive the
/// ring); never 0 (the id of "no request").
fn next_request_id() -> u64 {
    LAST_REQUEST_ID.with(|c| {
        let last = c.get();
        let id = if last == u64::MAX {
            ((NEXT_THREAD.fetch_add(1, Ordering::Relaxed) & 0xFFFF) << 24) | 1
        } else {
            let low = last.wrapping_add(1) & 0xFF_FFFF;
            (last & !0xFF_FFFF) | low.max(1)
        };
        c.set(id);
        id
    })
}

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
    trend: Mutex<trend::Trend>,
    /// Alert rules and their states; `None` without rules.
    alerts: Option<Mutex<alerts::Alerts>>,
    /// Where alerts are POSTed, when configured.
    webhook: Option<webhook::Webhook>,
    /// The site's URL, for webhook bodies (set when the server starts).
    site: std::sync::OnceLock<String>,
    /// The history file, with `STARPUNK_PERF_HISTORY_DAYS` > 0.
    history: Mutex<HistoryState>,
    started: Instant,
    /// Recorder clock at start or the last [`Monitor::clear`]: the series
    /// count from here, so rates divide by the time since.
    counting_since_ns: AtomicU64,
    /// One record's cost, measured at start on a scratch recorder.
    pub record_cost_ns: f64,
    /// Requests kept in detail, apart from the ring.
    pub kept: kept::Kept,
    /// Call sites and query plans per pattern.
    pub plans: plans::Plans,
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
            trend: Mutex::new(trend::Trend::default()),
            alerts: (!config.alerts.is_empty()).then(|| {
                Mutex::new(alerts::Alerts::new(
                    config.alerts.clone(),
                    config.alert_window_seconds,
                ))
            }),
            webhook: config
                .alert_webhook
                .clone()
                .filter(|_| !config.alerts.is_empty())
                .map(|url| webhook::Webhook::start(url.0, Duration::from_secs(1))),
            site: std::sync::OnceLock::new(),
            history: Mutex::new(HistoryState::default()),
            counting_since_ns: AtomicU64::new(recorder.now_ns()),
            started: Instant::now(),
            record_cost_ns: measure_record_cost(core),
            kept: kept::Kept::default(),
            plans: plans::Plans::default(),
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

    /// Runs a request handler, recording its route, status, bytes, duration
    /// and (with memory tracking, for sampled requests) RSS change. A panic
    /// in `handler` is recorded as a 500 and re-raised for the server to
    /// answer.
    pub fn around_request(
        &self,
        route: RouteKey,
        handler: impl FnOnce() -> rouille::Response,
    ) -> rouille::Response {
        let Some(inner) = &self.inner else {
            return handler();
        };
        let route_op = inner.route_op(route);
        let request_id = next_request_id();
        let sampled = inner.recorder.sampler().decide_local(false);
        let track_memory = self.config.memory_tracking && sampled;
        let rss_before = if track_memory { memory::rss_fast() } else { 0 };
        CURRENT.with(|c| {
            c.set(Some(RequestCtx {
                monitor: inner.id,
                route: route_op,
                request_id,
                sampled,
                ran_slow: false,
            }))
        });
        let before = trace::begin();
        let start = inner.recorder.now_ns();
        let result = catch_unwind(AssertUnwindSafe(handler));
        let end = inner.recorder.now_ns();
        let ran_slow = CURRENT.with(|c| c.take()).is_some_and(|c| c.ran_slow);
        // The front reads the body anyway and reports its length to
        // `measure_body`: then the record waits for it there. Otherwise
        // (the app called without the front: tests, `rouille::start_server`)
        // the wrapper asks the body itself, which costs a re-boxing.
        let reported = matches!(
            BODY_LENGTH.with(Cell::get),
            BodyLength::Reported(id) if id == inner.id
        );
        let (result, status, bytes) = match result {
            Ok(response) if reported => {
                let status = response.status_code;
                (Ok(response), status, 0)
            }
            Ok(response) => {
                let (response, bytes) = with_body_len(response);
                let status = response.status_code;
                (Ok(response), status, bytes)
            }
            Err(panic) => {
                trace::close_open(end);
                (Err(panic), 500, 0)
            }
        };
        let memory_delta = if track_memory {
            memory::rss_fast() as i64 - rss_before as i64
        } else {
            0
        };
        let record = MetricRecord {
            timestamp_ns: start,
            duration_ns: end.saturating_sub(start),
            bytes,
            memory_delta,
            request_id,
            operation: route_op,
            parent: OpId::NONE,
            status,
            category: Category::Http,
            forced: !sampled && (status >= 500 || ran_slow),
            ..MetricRecord::default()
        };
        let to_ring = sampled || record.forced;
        // Kept in detail: one comparison unless it qualifies.
        if status >= 500 || ran_slow || inner.kept.admits(route.index, start, record.duration_ns) {
            inner.keep(route, &record, ran_slow, before);
        }
        if reported && result.is_ok() {
            BODY_LENGTH.with(|b| {
                b.set(BodyLength::Parked(ParkedRequest {
                    monitor: inner.id,
                    record,
                    to_ring,
                }))
            });
        } else {
            inner.record_request(record, to_ring);
        }
        if track_memory {
            inner.recorder.record_memory_delta(route_op, memory_delta);
        }
        match result {
            Ok(response) => response,
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Notes how long the request about to run on this thread waited in
    /// the HTTP front (receiving its body, then for a handler thread): shown
    /// with its timeline if it is kept, never part of its duration.
    pub fn note_arrival(&self, body: Duration, queued: Duration) {
        if self.inner.is_some() {
            trace::set_before(trace::Before {
                body_ns: body.as_nanos() as u64,
                queued_ns: queued.as_nanos() as u64,
            });
        }
    }

    /// Records a request the HTTP front answered without running a handler
    /// (a body too large or too slow, a malformed or oversized head, a
    /// full server): counted like any other, with the time the front took
    /// from the request's head to its answer (0 when no head was read).
    pub fn record_unhandled(&self, route: RouteKey, status: u16, bytes: u64, duration_ns: u64) {
        let Some(inner) = &self.inner else { return };
        let route_op = inner.route_op(route);
        let sampled = inner.recorder.sampler().decide_local(false);
        let start = inner.recorder.now_ns().saturating_sub(duration_ns);
        let record = MetricRecord {
            timestamp_ns: start,
            duration_ns,
            bytes,
            request_id: next_request_id(),
            operation: route_op,
            parent: OpId::NONE,
            status,
            category: Category::Http,
            forced: !sampled && status >= 500,
            ..MetricRecord::default()
        };
        inner.record_request(record, sampled || record.forced);
        if status >= 500 {
            // Listed with the failed requests (no handler ran: no
            // timeline, its time the front's), never among its route's
            // slowest.
            let candidate = kept::Candidate {
                route_index: route.index,
                route: route_op,
                request_id: record.request_id,
                start_ns: start,
                duration_ns,
                status,
                ran_slow: false,
            };
            inner.kept.keep_error(&candidate);
        }
    }

    /// Runs `respond` (the app, whose request wrapper is
    /// [`around_request`](Self::around_request)), then `materialise`, which
    /// reads the response's body into memory and returns it with the
    /// body's length; the request is recorded with that length. This is
    /// how the HTTP front runs the app: the wrapper never takes the body
    /// apart to learn its length (rouille's `ResponseBody` tells its length
    /// only by giving up its boxed reader, which then has to be boxed
    /// again), so the whole hook path allocates nothing. A streamed body
    /// counts its real length here (the wrapper alone counts it as 0).
    pub fn measure_body<T>(
        &self,
        respond: impl FnOnce() -> rouille::Response,
        materialise: impl FnOnce(rouille::Response) -> (T, u64),
    ) -> T {
        let Some(inner) = &self.inner else {
            return materialise(respond()).0;
        };
        /// Records the parked request (with 0 bytes if `materialise`
        /// panicked) and restores the caller's state, whatever happens.
        struct Finish<'a> {
            inner: &'a Inner,
            bytes: u64,
            outer: BodyLength,
        }
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                let mine = BODY_LENGTH.with(|b| b.replace(self.outer));
                if let BodyLength::Parked(p) = mine {
                    if p.monitor == self.inner.id {
                        let record = MetricRecord {
                            bytes: self.bytes,
                            ..p.record
                        };
                        self.inner.record_request(record, p.to_ring);
                    }
                }
            }
        }
        let outer = BODY_LENGTH.with(|b| b.replace(BodyLength::Reported(inner.id)));
        let mut finish = Finish {
            inner,
            bytes: 0,
            outer,
        };
        let response = respond();
        let (value, bytes) = materialise(response);
        finish.bytes = bytes;
        drop(finish);
        value
    }

    /// Runs one SQL statement (`f` returns its result and the rows it
    /// returned or changed), recording its pattern, duration, rows and
    /// call site (the caller's, through `#[track_caller]`).
    #[track_caller]
    pub fn around_query<T>(&self, sql: &'static str, f: impl FnOnce() -> (T, u64)) -> T {
        let Some(inner) = &self.inner else {
            return f().0;
        };
        let ctx = CURRENT.with(Cell::get).filter(|c| c.monitor == inner.id);
        let start = inner.recorder.now_ns();
        let (value, rows) = f();
        let duration = inner.recorder.now_ns().saturating_sub(start);
        let location = Location::caller();
        let pattern = inner.pattern_id(sql, location);
        let route = ctx.map_or(OpId::NONE, |c| c.route);
        if ctx.is_some() {
            trace::statement(pattern, start, duration, location);
        }
        let slow = duration >= inner.slow_threshold_ns;
        if slow {
            inner.plans.note_source(pattern, sql, location);
            inner.log_slow(SlowQuery {
                at_unix_ns: inner.recorder.anchor().to_unix_ns(start),
                pattern,
                duration_ns: duration,
                route,
                request_id: ctx.map_or(0, |c| c.request_id),
                location,
            });
            if let Some(mut c) = ctx {
                c.ran_slow = true;
                CURRENT.with(|cur| cur.set(Some(c)));
            }
        }
        if self.config.log_queries {
            if let Some(e) = inner.recorder.registry().get(pattern) {
                self.log(&format!(
                    "starpunk: query {:.3} ms rows={} {}",
                    duration as f64 / 1e6,
                    rows,
                    e.name
                ));
            }
        }
        let sampled = match ctx {
            Some(c) => c.sampled,
            None => inner.recorder.sampler().decide_local(false),
        };
        let record = MetricRecord {
            timestamp_ns: start,
            duration_ns: duration,
            rows,
            request_id: ctx.map_or(0, |c| c.request_id),
            operation: pattern,
            parent: route,
            category: Category::Db,
            forced: !sampled && slow,
            ..MetricRecord::default()
        };
        if sampled || slow {
            inner.recorder.record(record);
        } else {
            inner.recorder.aggregate(record);
        }
        value
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

    /// Runs `f`, timing it as the named function (with the caller's call
    /// site in the request's trace).
    #[track_caller]
    pub fn time<T>(&self, function: Function, f: impl FnOnce() -> T) -> T {
        let Some(inner) = &self.inner else {
            return f();
        };
        let op = inner.function_op(function);
        let ctx = CURRENT.with(Cell::get).filter(|c| c.monitor == inner.id);
        let sampled = ctx.map_or_else(
            || inner.recorder.sampler().decide_local(false),
            |c| c.sampled,
        );
        let start = inner.recorder.now_ns();
        // A panic in `f` leaves the span open: the request wrapper closes
        // it (`trace::close_open`).
        // Read here: inside a closure `Location::caller` names the closure.
        let location = Location::caller();
        let slot = ctx.and_then(|_| trace::open(op, start, location));
        let value = f();
        let duration = inner.recorder.now_ns().saturating_sub(start);
        if ctx.is_some() {
            trace::close(slot, duration);
        }
        let record = MetricRecord {
            timestamp_ns: start,
            duration_ns: duration,
            operation: op,
            parent: ctx.map_or(OpId::NONE, |c| c.route),
            request_id: ctx.map_or(0, |c| c.request_id),
            category: Category::Function,
            ..MetricRecord::default()
        };
        if sampled {
            inner.recorder.record(record);
        } else {
            inner.recorder.aggregate(record);
        }
        value
    }

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
        inner.plans.wanted(&ops, schema)
    }

    /// Stores a pattern's plan (see [`plans_wanted`](Self::plans_wanted)).
    pub fn set_plan(&self, op: OpId, plan: plans::Plan) {
        if let Some(inner) = &self.inner {
            inner.plans.set(op, plan);
        }
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
    /// Keeps a request that qualified at its end (cold: a copy of its
    /// trace and one lock).
    #[cold]
    fn keep(&self, route: RouteKey, record: &MetricRecord, ran_slow: bool, before: trace::Before) {
        let candidate = kept::Candidate {
            route_index: route.index,
            route: record.operation,
            request_id: record.request_id,
            start_ns: record.timestamp_ns,
            duration_ns: record.duration_ns,
            status: record.status,
            ran_slow,
        };
        let trace = trace::take();
        for span in trace.0.iter().filter(|s| s.kind == trace::SpanKind::Sql) {
            if let Some(at) = span.location {
                self.plans.note_location(span.op, at);
            }
        }
        self.kept.keep(&candidate, trace, before);
    }

    /// Records a request's record: in the ring and its series when
    /// `to_ring`, in its series only otherwise.
    fn record_request(&self, record: MetricRecord, to_ring: bool) {
        if to_ring {
            self.recorder.record(record);
        } else {
            self.recorder.aggregate(record);
        }
    }

    /// Unix seconds now, by the recorder's clock.
    fn unix_now(&self) -> f64 {
        self.recorder.anchor().to_unix_ns(self.recorder.now_ns()) as f64 / 1e9
    }

    /// The cumulative figures of every HTTP series now (cold path: one
    /// histogram snapshot per route), but the owner's own when they are
    /// apart (`STARPUNK_PERF_OWN_TRAFFIC`): the overview's figures.
    fn http_totals(&self) -> trend::Totals {
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
    fn write_history(&self, now: i64, days: u32) {
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
        let slowest: Vec<(i64, snapshot::WorstRequest)> = self
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
    fn alert_sample(&self, scopes: &[(Option<String>, bool)]) -> alerts::Sample {
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
            rss_bytes: memory::read().rss_bytes,
        }
    }

    /// The alert rules' states, recent events and webhook counts.
    pub fn alerts_view(&self) -> snapshot::AlertsView {
        let (rules, events) = match self.alerts.as_ref().map(Mutex::lock) {
            Some(Ok(a)) => (a.view(), a.events()),
            _ => (Vec::new(), Vec::new()),
        };
        snapshot::AlertsView {
            rules,
            events,
            webhook: self.webhook.as_ref().map(webhook::Webhook::view),
        }
    }

    /// Statements over the slow threshold since start or the last clear.
    pub fn slow_queries_total(&self) -> u64 {
        self.slow_total.load(Ordering::Relaxed)
    }

    /// Starts the trend again from zero, now (start and clear).
    fn restart_trend(&self) {
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

    fn log_slow(&self, entry: SlowQuery) {
        self.slow_total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut log) = self.slow_log.lock() {
            if log.len() == SLOW_LOG_LEN {
                log.pop_front();
            }
            log.push_back(entry);
        }
    }

    fn pattern_id(&self, sql: &'static str, location: &'static Location<'static>) -> OpId {
        let key = (self.id, sql.as_ptr() as usize, sql.len());
        PATTERNS.with(|cache| {
            if let Some(&id) = cache.borrow().get(&key) {
                return id;
            }
            let id = self
                .recorder
                .register(Category::Db, &sql_pattern::normalize(sql));
            self.plans.note_source(id, sql, location);
            let mut cache = cache.borrow_mut();
            if cache.len() > 4_096 {
                cache.clear();
            }
            cache.insert(key, id);
            id
        })
    }

    /// The id in `slot`, registering `name` the first time (the cold path:
    /// one registry lock per name and process).
    fn lazy(&self, slot: &AtomicU32, category: Category, name: &str) -> OpId {
        let id = slot.load(Ordering::Relaxed);
        if id != u32::MAX {
            return OpId(id);
        }
        let id = self.recorder.register(category, name);
        slot.store(id.0, Ordering::Relaxed);
        id
    }

    /// The series id of `route`.
    pub fn route_op(&self, route: RouteKey) -> OpId {
        match self.route_ops.get(route.index) {
            Some(slot) => self.lazy(slot, Category::Http, route.template),
            None => self.recorder.register(Category::Http, route.template),
        }
    }

    /// The series id of `function`.
    pub fn function_op(&self, function: Function) -> OpId {
        let i = Function::ALL
            .iter()
            .position(|g| *g == function)
            .unwrap_or(0);
        self.lazy(&self.function_ops[i], Category::Function, function.name())
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

/// The body's length when the body knows it (every data body does), and the
/// response with an equivalent body: a streamed body is passed through, not
/// read, and counts as 0 bytes. It allocates (the reader is boxed again):
/// only for the app called without the front, see [`Monitor::measure_body`].
fn with_body_len(mut response: rouille::Response) -> (rouille::Response, u64) {
    let body = std::mem::replace(&mut response.data, rouille::ResponseBody::empty());
    let (reader, size) = body.into_reader_and_size();
    response.data = match size {
        Some(n) => rouille::ResponseBody::from_reader_and_size(reader, n),
        None => rouille::ResponseBody::from_reader(reader),
    };
    (response, size.unwrap_or(0) as u64)
}

#[cfg(test)]
mod recover_tests {
    use super::*;

    #[test]
    fn a_5xx_the_front_answered_is_listed_with_the_errors_not_the_slowest() {
        let m = Monitor::new(&PerfConfig {
            monitoring_enabled: true,
            ..PerfConfig::default()
        });
        let route = RouteKey {
            index: 3,
            template: "POST /micropub",
        };
        m.record_unhandled(route, 503, 40, 5_000_000);
        let s = m.snapshot(snapshot::DatabaseView::default());
        assert_eq!(s.recent_errors.len(), 1);
        let e = &s.recent_errors[0];
        assert_eq!((e.route.as_str(), e.status), ("POST /micropub", 503));
        assert_eq!(e.duration_ms, 5.0);
        assert_eq!(e.parts.front_ms, 5.0);
        assert_eq!(e.parts.own_code_ms, 0.0);
        assert_eq!(e.kept_because, ["error", "answered_by_the_front"]);
        assert!(s.worst_requests.is_empty(), "{:?}", s.worst_requests);
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
