//! The running request's own story, kept on its thread while it runs: each
//! SQL statement and named span with its call site, in start order, and
//! the time the request waited in the HTTP front before its handler ran.
//!
//! Request path: a fixed array of `Cell`s in a `const`-initialised thread
//! local (no destructor, so no registration on first use), written with
//! plain stores: no lock, no allocation, no panic. It is read once, at the
//! request's end, and copied out only when the request is kept
//! ([`crate::monitoring::request::kept`]); the counting-allocator test
//! (`shell/tests/hook_allocations.rs`) covers it.

use std::cell::Cell;
use std::panic::Location;

use starpunk_perf::OpId;

/// Spans kept per request. Past it, spans are counted (and the time of
/// the outermost ones added up) but not listed.
pub const MAX_SPANS: usize = 32;

/// What a span is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// One SQL statement.
    Sql,
    /// A named function (`Monitor::time`).
    Function,
}

/// One statement or named function of a request.
#[derive(Clone, Copy, Debug)]
pub struct SpanRec {
    /// Start, recorder clock nanoseconds.
    pub start_ns: u64,
    /// Duration, nanoseconds (0 while a function is still open).
    pub duration_ns: u64,
    /// Its pattern or function series.
    pub op: OpId,
    /// Statement or function.
    pub kind: SpanKind,
    /// Named functions it ran inside (0: directly in the handler).
    pub depth: u8,
    /// The code that ran it (`#[track_caller]`): a static, so a pointer.
    pub location: Option<&'static Location<'static>>,
}

impl SpanRec {
    const EMPTY: SpanRec = SpanRec {
        start_ns: 0,
        duration_ns: 0,
        op: OpId::NONE,
        kind: SpanKind::Sql,
        depth: 0,
        location: None,
    };
}

/// Spans past [`MAX_SPANS`]: how many, and the time of the ones that ran
/// directly in the handler (the nested ones are inside a listed span).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    /// Spans not listed.
    pub count: u32,
    /// Their time at depth 0, nanoseconds.
    pub top_ns: u64,
}

/// Time a request spent in the HTTP front before its handler ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Before {
    /// Receiving the body, nanoseconds (0 without one).
    pub body_ns: u64,
    /// From the body's end to a handler thread taking it up.
    pub queued_ns: u64,
}

/// `state`'s fields: the spans listed (low 8 bits), the depth of named
/// functions open (next 8), and whether `overflow` belongs to this request
/// (bit 16; a fresh request clears all three with one store).
const LEN: u32 = 0xFF;
const DEPTH_ONE: u32 = 1 << 8;
const OVERFLOWED: u32 = 1 << 16;

struct Trace {
    state: Cell<u32>,
    overflow: Cell<Overflow>,
    before: Cell<Before>,
    spans: [Cell<SpanRec>; MAX_SPANS],
}

thread_local! {
    static TRACE: Trace = const {
        Trace {
            state: Cell::new(0),
            overflow: Cell::new(Overflow { count: 0, top_ns: 0 }),
            before: Cell::new(Before { body_ns: 0, queued_ns: 0 }),
            spans: [const { Cell::new(SpanRec::EMPTY) }; MAX_SPANS],
        }
    };
}

fn depth_of(state: u32) -> u8 {
    (state >> 8) as u8
}

/// Notes the front's waits of the request about to run on this thread
/// (taken by the next [`begin`]'s request).
pub fn set_before(before: Before) {
    TRACE.with(|t| t.before.set(before));
}

/// Starts a request's trace: no spans yet. Returns the front's waits for
/// this request (see [`set_before`]), which are then forgotten.
#[inline]
pub fn begin() -> Before {
    TRACE.with(|t| {
        t.state.set(0);
        t.before.take()
    })
}

/// Adds a finished statement.
#[inline]
pub fn statement(op: OpId, start_ns: u64, duration_ns: u64, location: &'static Location<'static>) {
    TRACE.with(|t| {
        let state = t.state.get();
        let len = (state & LEN) as usize;
        match t.spans.get(len) {
            Some(slot) => {
                slot.set(SpanRec {
                    start_ns,
                    duration_ns,
                    op,
                    kind: SpanKind::Sql,
                    depth: depth_of(state),
                    location: Some(location),
                });
                t.state.set(state + 1);
            }
            None => overflow(t, state, duration_ns),
        }
    });
}

/// Counts a span past [`MAX_SPANS`] (the request's first one starts the
/// count afresh).
#[cold]
fn overflow(t: &Trace, state: u32, duration_ns: u64) {
    let mut o = if state & OVERFLOWED == 0 {
        Overflow::default()
    } else {
        t.overflow.get()
    };
    o.count = o.count.saturating_add(1);
    if depth_of(state) == 0 {
        o.top_ns = o.top_ns.saturating_add(duration_ns);
    }
    t.overflow.set(o);
    t.state.set(state | OVERFLOWED);
}

/// Opens a named function's span: its slot is taken now, so it comes
/// before the statements it runs. Returns the slot (`None` when full).
#[inline]
pub fn open(op: OpId, start_ns: u64, location: &'static Location<'static>) -> Option<u32> {
    TRACE.with(|t| {
        let state = t.state.get();
        let depth = depth_of(state);
        let len = (state & LEN) as usize;
        // The depth saturates at 255 functions open (never in practice).
        let deeper = if depth == u8::MAX { 0 } else { DEPTH_ONE };
        let Some(slot) = t.spans.get(len) else {
            t.state.set(state + deeper);
            return None;
        };
        slot.set(SpanRec {
            start_ns,
            duration_ns: 0,
            op,
            kind: SpanKind::Function,
            depth,
            location: Some(location),
        });
        t.state.set(state + deeper + 1);
        Some(len as u32)
    })
}

/// Closes the span [`open`] returned.
#[inline]
pub fn close(slot: Option<u32>, duration_ns: u64) {
    TRACE.with(|t| {
        let mut state = t.state.get();
        if depth_of(state) > 0 {
            state -= DEPTH_ONE;
            t.state.set(state);
        }
        match slot.and_then(|i| t.spans.get(i as usize)) {
            Some(cell) => {
                let mut span = cell.get();
                span.duration_ns = duration_ns;
                cell.set(span);
            }
            None => overflow(t, state, duration_ns),
        }
    });
}

/// After the handler panicked: the functions still open (their `close`
/// never ran) end at `end_ns`, so the failed request's timeline shows how
/// long they ran before it did.
#[cold]
pub fn close_open(end_ns: u64) {
    TRACE.with(|t| {
        let state = t.state.get();
        if depth_of(state) == 0 {
            return;
        }
        let len = (state & LEN) as usize;
        for cell in &t.spans[..len.min(MAX_SPANS)] {
            let mut span = cell.get();
            if span.kind == SpanKind::Function && span.duration_ns == 0 {
                span.duration_ns = end_ns.saturating_sub(span.start_ns);
                cell.set(span);
            }
        }
        t.state.set(state & !(0xFF << 8));
    });
}

/// The request's trace so far, copied out (cold: only for a kept
/// request).
pub fn take() -> (Vec<SpanRec>, Overflow) {
    TRACE.with(|t| {
        let state = t.state.get();
        let len = ((state & LEN) as usize).min(MAX_SPANS);
        let spans = t.spans[..len].iter().map(Cell::get).collect();
        let overflow = if state & OVERFLOWED == 0 {
            Overflow::default()
        } else {
            t.overflow.get()
        };
        (spans, overflow)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    #[test]
    fn spans_keep_start_order_depth_and_location() {
        let _ = begin();
        let f = open(OpId(7), 10, here());
        statement(OpId(1), 11, 2, here());
        close(f, 5);
        statement(OpId(2), 20, 3, here());
        let (spans, more) = take();
        assert_eq!(spans.len(), 3);
        assert_eq!(
            (spans[0].op, spans[0].depth, spans[0].duration_ns),
            (OpId(7), 0, 5)
        );
        assert_eq!(spans[0].kind, SpanKind::Function);
        assert_eq!((spans[1].op, spans[1].depth), (OpId(1), 1));
        assert_eq!((spans[2].op, spans[2].depth), (OpId(2), 0));
        assert!(spans[1].location.unwrap().file().ends_with("trace.rs"));
        assert_eq!(more, Overflow::default());
    }

    #[test]
    fn past_the_cap_spans_are_counted_and_top_level_time_kept() {
        let _ = begin();
        for i in 0..MAX_SPANS as u64 {
            statement(OpId(1), i, 1, here());
        }
        let f = open(OpId(7), 100, here());
        statement(OpId(1), 101, 4, here()); // nested: inside f's time
        close(f, 10);
        statement(OpId(1), 120, 6, here());
        let (spans, more) = take();
        assert_eq!(spans.len(), MAX_SPANS);
        assert_eq!(
            more,
            Overflow {
                count: 3,
                top_ns: 16
            }
        );
        // A new request starts empty.
        let _ = begin();
        assert!(take().0.is_empty());
    }

    #[test]
    fn a_function_still_open_after_a_panic_ends_with_the_request() {
        let _ = begin();
        let _f = open(OpId(7), 10, here());
        statement(OpId(1), 11, 2, here());
        // The closure panicked: no close.
        close_open(50);
        let (spans, _) = take();
        assert_eq!((spans[0].duration_ns, spans[1].depth), (40, 1));
        // The depth is back to 0 for what runs after.
        statement(OpId(1), 60, 1, here());
        assert_eq!(take().0[2].depth, 0);
    }

    #[test]
    fn the_fronts_waits_go_to_one_request() {
        set_before(Before {
            body_ns: 5,
            queued_ns: 7,
        });
        assert_eq!(begin().queued_ns, 7);
        assert_eq!(begin(), Before::default());
    }
}
