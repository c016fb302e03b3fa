//! Requests kept in detail, apart from the ring: per route the slowest few
//! of each recent window, the last failed (5xx) requests, and the last
//! requests that ran a slow statement, each with its whole trace. Later
//! traffic replaces a kept request only with a slower one of its window,
//! or once its window has passed; the ring's churn never touches them.
//!
//! Admission is on the request path: [`Kept::admits`] is one relaxed load
//! and two comparisons against the route's floor (the slowest-kept
//! threshold of the route's current window), no lock, no allocation. Only a
//! request that qualifies pays for its copy and [`Kept::keep`]'s lock.
//!
//! Memory is bounded by design: [`slots`] requests at most, each at most
//! [`entry_ceiling`] bytes ([`ceiling_bytes`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use starpunk_perf::OpId;

use crate::monitoring::request::trace::{Before, Overflow, SpanRec, MAX_SPANS};
use crate::monitoring::MAX_ROUTES;

/// Slowest requests kept per route and window.
pub const PER_WINDOW: usize = 3;
/// A window's length, nanoseconds (5 minutes).
pub const WINDOW_NS: u64 = 300_000_000_000;
/// Windows kept per route: the current one and two before it, so a kept
/// request lives 10 to 15 minutes (the dashboard's live view).
pub const WINDOWS: u64 = 3;
/// Failed (5xx) requests kept.
pub const ERRORS: usize = 10;
/// Requests that ran a slow statement kept.
pub const SLOW_STATEMENTS: usize = 20;

/// Why a request was kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reasons {
    /// Among the slowest of its route and window.
    pub slowest: bool,
    /// Answered 5xx.
    pub error: bool,
    /// Ran a statement over the slow threshold.
    pub slow_statement: bool,
    /// Answered by the HTTP front itself: no handler ran, its time is the
    /// front's.
    pub front: bool,
}

/// One request kept in detail.
#[derive(Clone, Debug)]
pub struct KeptRequest {
    /// Its route's series.
    pub route: OpId,
    /// The request id its ring records carry.
    pub request_id: u64,
    /// Start of the handler, recorder clock nanoseconds.
    pub start_ns: u64,
    /// The handler's time, nanoseconds: what its route's series recorded.
    pub duration_ns: u64,
    /// HTTP status.
    pub status: u16,
    /// Waits in the front before the handler ran (not in `duration_ns`).
    pub before: Before,
    /// Its statements and named functions, in start order.
    pub spans: Box<[SpanRec]>,
    /// Spans past the trace's capacity.
    pub overflow: Overflow,
    /// Why it is kept.
    pub reasons: Reasons,
}

impl KeptRequest {
    fn window(&self) -> u64 {
        self.start_ns / WINDOW_NS
    }
}

/// Kept requests at most (routes past [`MAX_ROUTES`] keep errors and
/// slow-statement requests only).
pub fn slots(routes: usize) -> usize {
    routes.min(MAX_ROUTES) * PER_WINDOW * WINDOWS as usize + ERRORS + SLOW_STATEMENTS
}

/// Bytes one kept request takes at most: the entry behind its `Arc`, and a
/// full trace.
pub fn entry_ceiling() -> usize {
    2 * std::mem::size_of::<usize>()
        + std::mem::size_of::<KeptRequest>()
        + MAX_SPANS * std::mem::size_of::<SpanRec>()
}

/// The most the kept requests of `routes` routes can take, bytes: the
/// requests, the floors, and the lists that hold them at their largest.
pub fn ceiling_bytes(routes: usize) -> usize {
    let arc = std::mem::size_of::<Arc<KeptRequest>>();
    slots(routes) * entry_ceiling()
        + MAX_ROUTES * std::mem::size_of::<AtomicU64>()
        + routes.min(MAX_ROUTES) * (std::mem::size_of::<Vec<Arc<KeptRequest>>>() + LIST * arc)
        + 2 * (ERRORS + SLOW_STATEMENTS) * arc
}

const FLOOR_BITS: u32 = 40;
const WINDOW_TAG: u64 = (1 << (64 - FLOOR_BITS)) - 1;
const FLOOR_MASK: u64 = (1 << FLOOR_BITS) - 1;

/// The kept requests.
pub struct Kept {
    /// Per route index: the window (top 24 bits, modulo 2^24: a tag
    /// repeats after 160 years) and the duration a request of that window
    /// must exceed to be kept (low 40 bits, nanoseconds, at most 18 min;
    /// 0 while the window keeps fewer than [`PER_WINDOW`]). Written under
    /// `store`'s lock, read on the request path.
    floors: [AtomicU64; MAX_ROUTES],
    store: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    /// Per route index, the kept slowest of its last [`WINDOWS`] windows.
    slowest: Vec<Vec<Arc<KeptRequest>>>,
    errors: VecDeque<Arc<KeptRequest>>,
    slow_statements: VecDeque<Arc<KeptRequest>>,
}

/// Kept slowest of one route at most: [`WINDOWS`] x [`PER_WINDOW`].
const LIST: usize = WINDOWS as usize * PER_WINDOW;

impl Store {
    /// True when a request of `window` that took `duration_ns` is kept among
    /// route `index`'s slowest: its window has not passed, and it holds
    /// fewer than [`PER_WINDOW`] or a faster one.
    fn takes_slowest(&self, index: usize, window: u64, duration_ns: u64) -> bool {
        let Some(list) = self.slowest.get(index) else {
            return true;
        };
        let newest = list.iter().map(|k| k.window()).max().unwrap_or(0);
        if window + WINDOWS <= newest {
            return false;
        }
        let same: Vec<u64> = list
            .iter()
            .filter(|k| k.window() == window)
            .map(|k| k.duration_ns)
            .collect();
        same.len() < PER_WINDOW || same.iter().any(|d| *d < duration_ns)
    }
}

impl Default for Kept {
    fn default() -> Self {
        Kept {
            floors: [const { AtomicU64::new(0) }; MAX_ROUTES],
            store: Mutex::new(Store::default()),
        }
    }
}

/// A kept request's candidates at its end, as the request wrapper knows it.
pub struct Candidate {
    /// Route index (its slot in the floors).
    pub route_index: usize,
    /// Its route's series.
    pub route: OpId,
    /// Request id.
    pub request_id: u64,
    /// Handler start, recorder clock.
    pub start_ns: u64,
    /// Handler time.
    pub duration_ns: u64,
    /// Status.
    pub status: u16,
    /// It ran a slow statement.
    pub ran_slow: bool,
}

impl Kept {
    /// True when a request of `route_index` starting at `start_ns` that took
    /// `duration_ns` would be among its window's slowest. The request
    /// path's only cost for a request that is not kept.
    #[inline]
    pub fn admits(&self, route_index: usize, start_ns: u64, duration_ns: u64) -> bool {
        let Some(floor) = self.floors.get(route_index) else {
            return false;
        };
        let f = floor.load(Ordering::Relaxed);
        let window = (start_ns / WINDOW_NS) & WINDOW_TAG;
        (f >> FLOOR_BITS) != window || duration_ns > (f & FLOOR_MASK)
    }

    /// Keeps `c` with `trace` (the spans and overflow of
    /// [`crate::monitoring::request::trace::take`], the waits of [`crate::monitoring::request::trace::begin`]) where
    /// it qualifies: among its route's slowest, a 5xx, a slow statement's
    /// request.
    pub fn keep(&self, c: &Candidate, trace: (Vec<SpanRec>, Overflow), before: Before) {
        self.keep_as(c, trace, before, true);
    }

    /// Keeps `c` as a failed request only, never among its route's
    /// slowest: a 5xx the HTTP front answered itself (no handler ran; its
    /// time is the front's, see `Monitor::record_unhandled`).
    pub fn keep_error(&self, c: &Candidate) {
        if c.status >= 500 {
            self.keep_as(
                c,
                (Vec::new(), Overflow::default()),
                Before::default(),
                false,
            );
        }
    }

    fn keep_as(
        &self,
        c: &Candidate,
        trace: (Vec<SpanRec>, Overflow),
        before: Before,
        may_be_slowest: bool,
    ) {
        let Ok(mut store) = self.store.lock() else {
            return;
        };
        // Decided under the lock, so `reasons` says where it is kept.
        let slowest = may_be_slowest
            && c.route_index < MAX_ROUTES
            && store.takes_slowest(c.route_index, c.start_ns / WINDOW_NS, c.duration_ns);
        let reasons = Reasons {
            slowest,
            error: c.status >= 500,
            slow_statement: c.ran_slow,
            front: !may_be_slowest,
        };
        if !(reasons.slowest || reasons.error || reasons.slow_statement) {
            return;
        }
        let (spans, overflow) = trace;
        let kept = Arc::new(KeptRequest {
            route: c.route,
            request_id: c.request_id,
            start_ns: c.start_ns,
            duration_ns: c.duration_ns,
            status: c.status,
            before,
            spans: spans.into_boxed_slice(),
            overflow,
            reasons,
        });
        if reasons.error {
            push_bounded(&mut store.errors, kept.clone(), ERRORS);
        }
        if reasons.slow_statement {
            push_bounded(&mut store.slow_statements, kept.clone(), SLOW_STATEMENTS);
        }
        if reasons.slowest {
            self.keep_slowest(&mut store, c.route_index, kept);
        }
    }

    fn keep_slowest(&self, store: &mut Store, index: usize, kept: Arc<KeptRequest>) {
        if store.slowest.len() <= index {
            store
                .slowest
                .resize_with(index + 1, || Vec::with_capacity(LIST));
        }
        let list = &mut store.slowest[index];
        let window = kept.window();
        let newest = list
            .iter()
            .map(|k| k.window())
            .max()
            .unwrap_or(0)
            .max(window);
        list.retain(|k| k.window() + WINDOWS > newest);
        let same = list.iter().filter(|k| k.window() == window).count();
        if same < PER_WINDOW {
            list.push(kept);
        } else if let Some(i) = list
            .iter()
            .enumerate()
            .filter(|(_, k)| k.window() == window)
            .min_by_key(|(_, k)| k.duration_ns)
            .map(|(i, _)| i)
        {
            list[i] = kept;
        }
        if window == newest {
            let (n, min) = list
                .iter()
                .filter(|k| k.window() == window)
                .fold((0, u64::MAX), |(n, m), k| (n + 1, m.min(k.duration_ns)));
            let floor = if n < PER_WINDOW {
                0
            } else {
                min.min(FLOOR_MASK)
            };
            self.floors[index].store(
                ((window & WINDOW_TAG) << FLOOR_BITS) | floor,
                Ordering::Relaxed,
            );
        }
    }

    /// The kept requests: per route the slowest of the windows not yet
    /// passed at `now_ns` (at most [`PER_WINDOW`] per route, slowest
    /// first), the errors and the slow statements' requests, newest first.
    pub fn view(&self, now_ns: u64) -> KeptSet {
        let Ok(store) = self.store.lock() else {
            return KeptSet::default();
        };
        let current = now_ns / WINDOW_NS;
        let mut slowest = Vec::new();
        for list in &store.slowest {
            let mut live: Vec<Arc<KeptRequest>> = list
                .iter()
                .filter(|k| k.window() + WINDOWS > current)
                .cloned()
                .collect();
            live.sort_by_key(|k| std::cmp::Reverse(k.duration_ns));
            live.truncate(PER_WINDOW);
            slowest.extend(live);
        }
        slowest.sort_by_key(|k| std::cmp::Reverse(k.duration_ns));
        KeptSet {
            slowest,
            errors: store.errors.iter().rev().cloned().collect(),
            slow_statements: store.slow_statements.iter().rev().cloned().collect(),
        }
    }

    /// Bytes the kept requests take now (the requests, the floors and the
    /// lists' capacity), and how many distinct requests are held.
    pub fn memory(&self) -> (usize, usize) {
        let Ok(store) = self.store.lock() else {
            return (0, 0);
        };
        let arc = std::mem::size_of::<Arc<KeptRequest>>();
        let mut bytes = MAX_ROUTES * std::mem::size_of::<AtomicU64>()
            + store.slowest.capacity() * std::mem::size_of::<Vec<Arc<KeptRequest>>>()
            + store
                .slowest
                .iter()
                .map(|l| l.capacity() * arc)
                .sum::<usize>()
            + (store.errors.capacity() + store.slow_statements.capacity()) * arc;
        let mut seen: Vec<*const KeptRequest> = Vec::new();
        let all = store
            .slowest
            .iter()
            .flatten()
            .chain(&store.errors)
            .chain(&store.slow_statements);
        for k in all {
            let p = Arc::as_ptr(k);
            if seen.contains(&p) {
                continue;
            }
            seen.push(p);
            bytes += 2 * std::mem::size_of::<usize>()
                + std::mem::size_of::<KeptRequest>()
                + k.spans.len() * std::mem::size_of::<SpanRec>();
        }
        (bytes, seen.len())
    }

    /// Every kept slowest request, of every live window (the history
    /// keeps the slowest of each hour from them).
    pub fn all_slowest(&self) -> Vec<Arc<KeptRequest>> {
        self.store
            .lock()
            .map(|s| s.slowest.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets everything (the monitor's clear).
    pub fn clear(&self) {
        if let Ok(mut store) = self.store.lock() {
            *store = Store::default();
        }
        for f in &self.floors {
            f.store(0, Ordering::Relaxed);
        }
    }

    /// Drops the slowest requests whose window has passed (the ticker).
    pub fn expire(&self, now_ns: u64) {
        let current = now_ns / WINDOW_NS;
        if let Ok(mut store) = self.store.lock() {
            for list in &mut store.slowest {
                list.retain(|k| k.window() + WINDOWS > current);
            }
        }
    }
}

/// The kept requests at one moment.
#[derive(Clone, Debug, Default)]
pub struct KeptSet {
    /// Per route the slowest of the live windows, slowest first overall.
    pub slowest: Vec<Arc<KeptRequest>>,
    /// Failed requests, newest first.
    pub errors: Vec<Arc<KeptRequest>>,
    /// Requests that ran a slow statement, newest first.
    pub slow_statements: Vec<Arc<KeptRequest>>,
}

fn push_bounded(q: &mut VecDeque<Arc<KeptRequest>>, k: Arc<KeptRequest>, max: usize) {
    if q.len() == max {
        q.pop_front();
    }
    q.push_back(k);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(route_index: usize, start_ns: u64, duration_ns: u64, status: u16) -> Candidate {
        Candidate {
            route_index,
            route: OpId(route_index as u32),
            request_id: start_ns,
            start_ns,
            duration_ns,
            status,
            ran_slow: false,
        }
    }

    fn empty() -> (Vec<SpanRec>, Overflow) {
        (Vec::new(), Overflow::default())
    }

    #[test]
    fn the_slowest_of_a_window_stay_whatever_comes_after() {
        let k = Kept::default();
        let t0 = 7 * WINDOW_NS;
        k.keep(
            &candidate(1, t0 + 1, 1_600_000_000, 200),
            empty(),
            Before::default(),
        );
        // 100,000 faster requests: none replaces it, and after the window
        // holds three, the floor refuses the rest on the request path.
        let mut admitted = 0;
        for i in 0..100_000u64 {
            let d = 1_000 + i % 5_000;
            if k.admits(1, t0 + 2 + i, d) {
                admitted += 1;
                k.keep(
                    &candidate(1, t0 + 2 + i, d, 200),
                    empty(),
                    Before::default(),
                );
            }
        }
        let set = k.view(t0 + WINDOW_NS);
        assert_eq!(set.slowest.len(), PER_WINDOW);
        assert_eq!(set.slowest[0].duration_ns, 1_600_000_000);
        assert!(admitted < 20_000, "{admitted} admitted");
        // Two windows later it is still there; three later it is gone.
        assert_eq!(
            k.view(t0 + 2 * WINDOW_NS).slowest[0].duration_ns,
            1_600_000_000
        );
        assert!(k.view(t0 + 3 * WINDOW_NS).slowest.is_empty());
    }

    #[test]
    fn a_slower_request_replaces_the_fastest_kept() {
        let k = Kept::default();
        let t0 = WINDOW_NS;
        for d in [10, 20, 30] {
            k.keep(&candidate(0, t0 + d, d, 200), empty(), Before::default());
        }
        assert!(!k.admits(0, t0 + 50, 10));
        assert!(k.admits(0, t0 + 50, 11));
        k.keep(&candidate(0, t0 + 50, 25, 200), empty(), Before::default());
        let d: Vec<u64> = k.view(t0).slowest.iter().map(|r| r.duration_ns).collect();
        assert_eq!(d, [30, 25, 20]);
        // A new window admits again from nothing.
        assert!(k.admits(0, t0 + WINDOW_NS, 1));
    }

    #[test]
    fn errors_are_kept_newest_first_and_bounded() {
        let k = Kept::default();
        for i in 0..(ERRORS as u64 + 5) {
            k.keep(
                &candidate(2, WINDOW_NS + i, 1, 503),
                empty(),
                Before::default(),
            );
        }
        let e = k.view(WINDOW_NS).errors;
        assert_eq!(e.len(), ERRORS);
        assert_eq!(e[0].start_ns, WINDOW_NS + ERRORS as u64 + 4);
    }

    /// The figures docs/OPERATING.md states.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_stated_ceilings() {
        assert_eq!(entry_ceiling(), 1_128);
        assert_eq!(ceiling_bytes(64), 690_704);
        assert_eq!(ceiling_bytes(23), 270_536);
    }

    #[test]
    fn memory_stays_under_its_ceiling_under_100000_distinct_slow_requests() {
        let k = Kept::default();
        let spans = vec![
            SpanRec {
                start_ns: 0,
                duration_ns: 1,
                op: OpId(1),
                kind: crate::monitoring::request::trace::SpanKind::Sql,
                depth: 0,
                location: None,
            };
            MAX_SPANS
        ];
        // Every request slower than the last, over every route, with
        // errors and slow statements: each one is kept somewhere.
        for i in 0..100_000u64 {
            let route = (i % 70) as usize; // past MAX_ROUTES too
            let mut c = candidate(route, WINDOW_NS * (1 + i / 30_000) + i, 1 + i, 200);
            c.status = if i % 3 == 0 { 500 } else { 200 };
            c.ran_slow = i % 5 == 0;
            k.keep(&c, (spans.clone(), Overflow::default()), Before::default());
        }
        let ceiling = ceiling_bytes(70);
        let (used, held) = k.memory();
        assert!(held <= slots(70), "{held}");
        assert!(used <= ceiling, "{used} > {ceiling}");
        // It is full, not empty: the bound is what holds it.
        assert!(used > ceiling / 2, "{used} of {ceiling}");
    }
}
