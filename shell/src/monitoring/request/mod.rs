//! **The request path**: what runs inside every request, on the handler's
//! thread: the request wrapper (`Monitor::around_request`,
//! `measure_body`), the SQL hook (`around_query`), named spans (`time`),
//! the request's trace ([`trace`]), the kept-request admission ([`kept`])
//! and the statement-to-pattern cache ([`sql_pattern`]).
//!
//! The rules here: **no lock, no allocation, no panic** on the common
//! path, one record per event into the core and one cheap admission
//! check. The only exceptions are cold and named: a statement seen for
//! the first time on a thread (its pattern is normalised and cached), a
//! request that qualifies to be kept (a copy of its trace and the store's
//! lock), and a slow statement (the slow log's lock). The counting
//! allocator test (`shell/tests/hook_allocations.rs`) holds the whole hook
//! path to zero allocations; `benches/benches/hook_path.rs` and
//! `scripts/overhead.sh` measure its cost.
//!
//! Nothing here reads the ticker's or the views' modules.

pub mod kept;
pub mod refusals;
pub mod sources;
pub mod sql_pattern;
pub mod trace;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use starpunk_perf::{Category, MetricRecord, OpId};

use super::{memory, Function, Inner, Monitor, RouteKey, SlowQuery, SLOW_LOG_LEN};

/// The context of the request running on this thread.
#[derive(Clone, Copy)]
pub(super) struct RequestCtx {
    monitor: u64,
    route: OpId,
    request_id: u64,
    sampled: bool,
    /// A statement of this request went over the slow threshold.
    ran_slow: bool,
}

/// Where the request wrapper learns a response body's length (see
/// [`Monitor::measure_body`]). Small on purpose: it is saved and restored
/// around every request; the parked record itself waits in `PARKED`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyLength {
    /// Nobody will report it: the wrapper finds it out itself.
    Unreported,
    /// `measure_body` of monitor `0` is running the app and will report it.
    Reported(u64),
    /// Monitor `0`'s request record waits in `PARKED` for the length.
    Parked(u64),
}

/// A request record made by the wrapper, recorded once its body's length
/// is known.
#[derive(Clone, Copy)]
pub(super) struct ParkedRequest {
    record: MetricRecord,
    /// Sampled or forced: the record goes to the ring, not only the series.
    to_ring: bool,
}

impl ParkedRequest {
    const EMPTY: ParkedRequest = ParkedRequest {
        record: MetricRecord {
            timestamp_ns: 0,
            duration_ns: 0,
            bytes: 0,
            rows: 0,
            memory_delta: 0,
            request_id: 0,
            operation: OpId::NONE,
            parent: OpId::NONE,
            status: 0,
            category: Category::Http,
            forced: false,
        },
        to_ring: false,
    };
}

thread_local! {
    static CURRENT: Cell<Option<RequestCtx>> = const { Cell::new(None) };
    static BODY_LENGTH: Cell<BodyLength> = const { Cell::new(BodyLength::Unreported) };
    static PARKED: Cell<ParkedRequest> = const { Cell::new(ParkedRequest::EMPTY) };
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
pub(super) struct KeyHash;

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

pub(super) struct KeyHasher(u64);

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

pub(super) static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);

/// A request id unique per thread and request: thread index in the top
/// bits, the thread's request count in the low 24 (40 bits survive the
/// ring); never 0 (the id of "no request").
pub(super) fn next_request_id() -> u64 {
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

/// The body's length when the body knows it (every data body does); the
/// response keeps an equivalent body: a streamed body is passed through,
/// not read, and counts as 0 bytes. It allocates (the reader is boxed
/// again): only for the app called without the front, see
/// [`Monitor::measure_body`].
pub(super) fn body_len(response: &mut rouille::Response) -> u64 {
    let body = std::mem::replace(&mut response.data, rouille::ResponseBody::empty());
    let (reader, size) = body.into_reader_and_size();
    response.data = match size {
        Some(n) => rouille::ResponseBody::from_reader_and_size(reader, n),
        None => rouille::ResponseBody::from_reader(reader),
    };
    size.unwrap_or(0) as u64
}

impl Monitor {
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
        let mut result = catch_unwind(AssertUnwindSafe(handler));
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
        // In place: a response is ~100 bytes, and each move copies it.
        let (status, bytes) = match &mut result {
            Ok(response) if reported => (response.status_code, 0),
            Ok(response) => (response.status_code, body_len(response)),
            Err(_) => {
                trace::close_open(end);
                (500, 0)
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
            PARKED.with(|p| p.set(ParkedRequest { record, to_ring }));
            BODY_LENGTH.with(|b| b.set(BodyLength::Parked(inner.id)));
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

    /// Counts a request the HTTP front refused or timed out without
    /// running a handler (see [`refusals`]): by reason, apart from every
    /// route, so it moves no route's latency, the error rate or an alert
    /// rule that does not name `refused`.
    pub fn record_refused(&self, reason: refusals::Reason) {
        if let Some(inner) = &self.inner {
            inner.refusals.add(reason);
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
                if mine == BodyLength::Parked(self.inner.id) {
                    let p = PARKED.with(Cell::get);
                    let record = MetricRecord {
                        bytes: self.bytes,
                        ..p.record
                    };
                    self.inner.record_request(record, p.to_ring);
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
            inner.sources.note_source(pattern, sql, location);
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
}

impl Inner {
    /// Keeps a request that qualified at its end (cold: a copy of its
    /// trace and one lock).
    #[cold]
    pub(super) fn keep(
        &self,
        route: RouteKey,
        record: &MetricRecord,
        ran_slow: bool,
        before: trace::Before,
    ) {
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
                self.sources.note_location(span.op, at);
            }
        }
        self.kept.keep(&candidate, trace, before);
    }

    /// Records a request's record: in the ring and its series when
    /// `to_ring`, in its series only otherwise.
    pub(super) fn record_request(&self, record: MetricRecord, to_ring: bool) {
        if to_ring {
            self.recorder.record(record);
        } else {
            self.recorder.aggregate(record);
        }
    }

    pub(super) fn log_slow(&self, entry: SlowQuery) {
        self.slow_total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut log) = self.slow_log.lock() {
            if log.len() == SLOW_LOG_LEN {
                log.pop_front();
            }
            log.push_back(entry);
        }
    }

    pub(super) fn pattern_id(
        &self,
        sql: &'static str,
        location: &'static Location<'static>,
    ) -> OpId {
        let key = (self.id, sql.as_ptr() as usize, sql.len());
        PATTERNS.with(|cache| {
            if let Some(&id) = cache.borrow().get(&key) {
                return id;
            }
            let id = self
                .recorder
                .register(Category::Db, &sql_pattern::normalize(sql));
            self.sources.note_source(id, sql, location);
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
    pub(super) fn lazy(&self, slot: &AtomicU32, category: Category, name: &str) -> OpId {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::PerfConfig;

    #[test]
    fn the_pattern_cache_gives_each_text_its_own_id() {
        let enabled = || {
            Monitor::new(&PerfConfig {
                monitoring_enabled: true,
                ..PerfConfig::default()
            })
        };
        let (a, b) = (enabled(), enabled());
        let here = Location::caller();
        // 300 texts of 20 patterns, plus a text and its own prefix (the
        // same address).
        let texts: Vec<&'static str> = (0..300)
            .map(|i| &*Box::leak(format!("SELECT {i} FROM t{}", i % 20).into_boxed_str()))
            .collect();
        let long: &'static str = Box::leak("SELECT a FROM notes".to_string().into_boxed_str());
        let prefix = &long[..8];
        // Monitor b's ids are shifted by one, so a cache that mixed the
        // monitors up would name the wrong pattern.
        b.inner()
            .unwrap()
            .pattern_id("SELECT shift FROM first", here);
        for round in 0..3 {
            for (m, other) in [(&a, &b), (&b, &a)] {
                let inner = m.inner().unwrap();
                let ids: Vec<OpId> = texts.iter().map(|t| inner.pattern_id(t, here)).collect();
                let names: Vec<String> = ids.iter().map(|&id| inner.name(id)).collect();
                for (i, name) in names.iter().enumerate() {
                    assert_eq!(name, &format!("SELECT ? FROM t{}", i % 20), "round {round}");
                }
                let (l, p) = (inner.pattern_id(long, here), inner.pattern_id(prefix, here));
                assert_ne!(l, p);
                assert_eq!(inner.name(l), "SELECT a FROM notes");
                assert_eq!(inner.name(p), "SELECT a");
                // The other monitor's ids are its own.
                let o = other.inner().unwrap();
                assert_eq!(o.name(o.pattern_id(texts[7], here)), "SELECT ? FROM t7");
            }
        }
    }
}
