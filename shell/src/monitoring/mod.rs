//! All instrumentation of the shell lives here: the request wrapper, the
//! SQL hook, named function timings, memory sampling and the ticker. Nothing
//! else in the shell touches the recorder.

pub mod memory;
pub mod snapshot;
pub mod sql_pattern;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use starpunk_perf::{
    Category, LinePadded, MetricRecord, OpId, Recorder, RecorderConfig, TscClock, STRIPES,
};

use crate::config::PerfConfig;
use crate::web::routes::Route;

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
}

thread_local! {
    static CURRENT: Cell<Option<RequestCtx>> = const { Cell::new(None) };
    static THREAD_REQUESTS: Cell<u64> = const { Cell::new(0) };
    static THREAD_INDEX: Cell<u64> = const { Cell::new(u64::MAX) };
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
/// bits, the thread's request count below (40 bits survive the ring).
fn next_request_id() -> u64 {
    let thread = THREAD_INDEX.with(|t| {
        if t.get() == u64::MAX {
            t.set(NEXT_THREAD.fetch_add(1, Ordering::Relaxed) & 0xFFFF);
        }
        t.get()
    });
    let n = THREAD_REQUESTS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    (thread << 24) | (n & 0xFF_FFFF)
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
    last_memory: Mutex<memory::MemoryReading>,
    /// Requests seen (sampled or not), for requests per second.
    requests_seen: [LinePadded<AtomicU64>; STRIPES],
    queries_seen: [LinePadded<AtomicU64>; STRIPES],
    started: Instant,
    /// One record's cost, measured at start on a scratch recorder.
    pub record_cost_ns: f64,
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
        let route_ops = Route::ALL.iter().map(|_| unset()).collect();
        let function_ops = Function::ALL.iter().map(|_| unset()).collect();
        let memory_op = unset();
        let inner = Inner {
            id: NEXT_MONITOR.fetch_add(1, Ordering::Relaxed),
            recorder,
            slow_threshold_ns: (config.slow_query_threshold * 1e9) as u64,
            route_ops,
            function_ops,
            memory_op,
            slow_log: Mutex::new(VecDeque::with_capacity(SLOW_LOG_LEN)),
            memory_samples: Mutex::new(VecDeque::with_capacity(MEMORY_SAMPLES)),
            last_memory: Mutex::new(memory::MemoryReading::default()),
            requests_seen: std::array::from_fn(|_| LinePadded(AtomicU64::new(0))),
            queries_seen: std::array::from_fn(|_| LinePadded(AtomicU64::new(0))),
            started: Instant::now(),
            record_cost_ns: measure_record_cost(core),
        };
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
    /// and (with memory tracking) RSS change. A panic in `handler` is
    /// recorded as a 500 and re-raised for the server to answer.
    pub fn around_request(
        &self,
        route: Route,
        handler: impl FnOnce() -> rouille::Response,
    ) -> rouille::Response {
        let Some(inner) = &self.inner else {
            return handler();
        };
        let route_op = inner.route_op(route);
        let request_id = next_request_id();
        let sampled = inner.recorder.sampler().decide_local(false);
        inner.requests_seen[starpunk_perf::stripe() % STRIPES].fetch_add(1, Ordering::Relaxed);
        let rss_before = if self.config.memory_tracking {
            memory::rss_fast()
        } else {
            0
        };
        CURRENT.with(|c| {
            c.set(Some(RequestCtx {
                monitor: inner.id,
                route: route_op,
                request_id,
                sampled,
            }))
        });
        let start = inner.recorder.now_ns();
        let result = catch_unwind(AssertUnwindSafe(handler));
        let end = inner.recorder.now_ns();
        CURRENT.with(|c| c.set(None));
        let (result, status, bytes) = match result {
            Ok(response) => {
                let (response, bytes) = with_body_len(response);
                let status = response.status_code;
                (Ok(response), status, bytes)
            }
            Err(panic) => (Err(panic), 500, 0),
        };
        if sampled || status >= 500 {
            let memory_delta = if self.config.memory_tracking {
                memory::rss_fast() as i64 - rss_before as i64
            } else {
                0
            };
            inner.recorder.record(MetricRecord {
                timestamp_ns: start,
                duration_ns: end.saturating_sub(start),
                bytes,
                memory_delta,
                request_id,
                operation: route_op,
                parent: OpId::NONE,
                status,
                category: Category::Http,
                ..MetricRecord::default()
            });
        } else {
            inner.recorder.skip(route_op);
        }
        match result {
            Ok(response) => response,
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Runs one SQL statement (`f` returns its result and the rows it
    /// returned or changed), recording its pattern, duration and rows.
    pub fn around_query<T>(&self, sql: &'static str, f: impl FnOnce() -> (T, u64)) -> T {
        let Some(inner) = &self.inner else {
            return f().0;
        };
        let ctx = CURRENT.with(Cell::get).filter(|c| c.monitor == inner.id);
        let start = inner.recorder.now_ns();
        let (value, rows) = f();
        let duration = inner.recorder.now_ns().saturating_sub(start);
        let pattern = inner.pattern_id(sql);
        inner.queries_seen[starpunk_perf::stripe() % STRIPES].fetch_add(1, Ordering::Relaxed);
        let route = ctx.map_or(OpId::NONE, |c| c.route);
        let slow = duration >= inner.slow_threshold_ns;
        if slow {
            let entry = SlowQuery {
                at_unix_ns: inner.recorder.anchor().to_unix_ns(start),
                pattern,
                duration_ns: duration,
                route,
            };
            if let Ok(mut log) = inner.slow_log.lock() {
                if log.len() == SLOW_LOG_LEN {
                    log.pop_front();
                }
                log.push_back(entry);
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
        if sampled || slow {
            inner.recorder.record(MetricRecord {
                timestamp_ns: start,
                duration_ns: duration,
                rows,
                request_id: ctx.map_or(0, |c| c.request_id),
                operation: pattern,
                parent: route,
                category: Category::Db,
                ..MetricRecord::default()
            });
        } else {
            inner.recorder.skip(pattern);
        }
        value
    }

    /// Writes a log line (stderr, or the capture buffer when capturing).
    fn log(&self, line: &str) {
        let mut capture = self.log_capture.lock().unwrap_or_else(|p| p.into_inner());
        match capture.as_mut() {
            Some(lines) => lines.push(line.to_string()),
            None => eprintln!("{line}"),
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

    /// Runs `f`, timing it as the named function.
    pub fn time<T>(&self, function: Function, f: impl FnOnce() -> T) -> T {
        let Some(inner) = &self.inner else {
            return f();
        };
        let op = inner.function_op(function);
        let ctx = CURRENT.with(Cell::get).filter(|c| c.monitor == inner.id);
        if !ctx.map_or_else(
            || inner.recorder.sampler().decide_local(false),
            |c| c.sampled,
        ) {
            inner.recorder.skip(op);
            return f();
        }
        let guard = inner.recorder.time(op);
        let guard = match ctx {
            Some(c) => guard.within(c.route, c.request_id),
            None => guard,
        };
        let value = f();
        drop(guard);
        value
    }

    /// Called every second by the ticker: window checkpoints, and a memory
    /// sample every [`MEMORY_SAMPLE_SECS`] when memory tracking is on.
    pub fn tick(&self, second: u64) {
        let Some(inner) = &self.inner else { return };
        inner.recorder.rotate();
        if self.config.memory_tracking && second.is_multiple_of(MEMORY_SAMPLE_SECS) {
            self.sample_memory();
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
        if let Ok(mut m) = inner.last_memory.lock() {
            *m = reading;
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

    /// Clears what the monitor holds (the ADR: metrics are cleared on
    /// logout): ring, histograms, slow log and memory samples.
    pub fn clear(&self) {
        let Some(inner) = &self.inner else { return };
        inner.recorder.clear();
        if let Ok(mut l) = inner.slow_log.lock() {
            l.clear();
        }
        if let Ok(mut s) = inner.memory_samples.lock() {
            s.clear();
        }
        for c in inner.requests_seen.iter().chain(&inner.queries_seen) {
            c.store(0, Ordering::Relaxed);
        }
    }
}

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
    fn pattern_id(&self, sql: &'static str) -> OpId {
        let key = (self.id, sql.as_ptr() as usize, sql.len());
        PATTERNS.with(|cache| {
            if let Some(&id) = cache.borrow().get(&key) {
                return id;
            }
            let id = self
                .recorder
                .register(Category::Db, &sql_pattern::normalize(sql));
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
    pub fn route_op(&self, route: Route) -> OpId {
        self.lazy(
            &self.route_ops[route as usize],
            Category::Http,
            route.template(),
        )
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

    /// The last memory reading (zero when memory tracking is off).
    pub fn last_memory(&self) -> memory::MemoryReading {
        self.last_memory.lock().map(|m| *m).unwrap_or_default()
    }

    /// Requests seen since start (or the last clear), sampled or not.
    pub fn requests_seen(&self) -> u64 {
        self.requests_seen
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// SQL statements seen since start (or the last clear).
    pub fn queries_seen(&self) -> u64 {
        self.queries_seen
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Time since the monitor started.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }
}

/// The body's length when the body knows it (every data body does), and the
/// response with an equivalent body: a streamed body is passed through, not
/// read, and counts as 0 bytes.
fn with_body_len(mut response: rouille::Response) -> (rouille::Response, u64) {
    let body = std::mem::replace(&mut response.data, rouille::ResponseBody::empty());
    let (reader, size) = body.into_reader_and_size();
    response.data = match size {
        Some(n) => rouille::ResponseBody::from_reader_and_size(reader, n),
        None => rouille::ResponseBody::from_reader(reader),
    };
    (response, size.unwrap_or(0) as u64)
}
