//! Requests the HTTP front refused or timed out before any handler ran: a
//! head it could not read (400, 414, 431), a bad Host or body (400), a body
//! too large (413) or not received in time (408), no room in the body
//! budget (503). Counted exactly, by reason, apart from every route: they
//! are not readers' requests, so they stay out of route latency, the error
//! rate and alert rules (unless a rule names `refused`). An anonymous
//! client can send any number of them; it cannot move the owner's figures.
//!
//! On the front's I/O threads: one relaxed add, no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why the front refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// 400: a head hyper could not parse, a missing or bad `Host`, a body
    /// that could not be read.
    BadRequest,
    /// 408: the body did not arrive within `STARPUNK_HTTP_BODY_TIMEOUT`.
    BodyTimeout,
    /// 413: a body over 1 MiB.
    BodyTooLarge,
    /// 414: a request line past hyper's buffer.
    UriTooLong,
    /// 431: a head over 16 KiB or 100 fields.
    HeadTooLarge,
    /// 503: no room in the server-wide body budget.
    Busy,
    /// Any other status the front answered itself.
    Other,
}

impl Reason {
    /// Every reason, in export order.
    pub const ALL: [Reason; 7] = [
        Reason::BadRequest,
        Reason::BodyTimeout,
        Reason::BodyTooLarge,
        Reason::UriTooLong,
        Reason::HeadTooLarge,
        Reason::Busy,
        Reason::Other,
    ];

    /// The reason of a status the front answered itself.
    pub fn of(status: u16) -> Reason {
        match status {
            400 => Reason::BadRequest,
            408 => Reason::BodyTimeout,
            413 => Reason::BodyTooLarge,
            414 => Reason::UriTooLong,
            431 => Reason::HeadTooLarge,
            503 => Reason::Busy,
            _ => Reason::Other,
        }
    }

    /// Its name in exports (`reason` label, JSON, alert events).
    pub fn name(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad_request",
            Reason::BodyTimeout => "body_timeout",
            Reason::BodyTooLarge => "body_too_large",
            Reason::UriTooLong => "uri_too_long",
            Reason::HeadTooLarge => "head_too_large",
            Reason::Busy => "busy",
            Reason::Other => "other",
        }
    }

    /// The status it is answered with (0 for `Other`).
    pub fn status(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::BodyTimeout => 408,
            Reason::BodyTooLarge => 413,
            Reason::UriTooLong => 414,
            Reason::HeadTooLarge => 431,
            Reason::Busy => 503,
            Reason::Other => 0,
        }
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(6)
    }
}

/// Refusals since start (or the last clear), by reason.
#[derive(Debug, Default)]
pub struct Refusals {
    counts: [AtomicU64; 7],
}

impl Refusals {
    /// Counts one refusal answered with `status`.
    pub fn add(&self, status: u16) {
        if let Some(c) = self.counts.get(Reason::of(status).index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every reason with its count.
    pub fn counts(&self) -> [(Reason, u64); 7] {
        Reason::ALL.map(|r| {
            let n = self
                .counts
                .get(r.index())
                .map_or(0, |c| c.load(Ordering::Relaxed));
            (r, n)
        })
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Zeroes the counts (the monitor's clear).
    pub fn clear(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_the_front_answers_has_its_reason_and_is_counted_once() {
        let r = Refusals::default();
        for status in [400, 400, 408, 413, 414, 431, 503, 503, 503, 500] {
            r.add(status);
        }
        let counts = r.counts();
        let get = |reason: Reason| counts.iter().find(|(x, _)| *x == reason).unwrap().1;
        assert_eq!(get(Reason::BadRequest), 2);
        assert_eq!(get(Reason::BodyTimeout), 1);
        assert_eq!(get(Reason::BodyTooLarge), 1);
        assert_eq!(get(Reason::UriTooLong), 1);
        assert_eq!(get(Reason::HeadTooLarge), 1);
        assert_eq!(get(Reason::Busy), 3);
        assert_eq!(get(Reason::Other), 1);
        assert_eq!(r.total(), 10);
        for reason in Reason::ALL {
            if reason != Reason::Other {
                assert_eq!(Reason::of(reason.status()), reason);
            }
        }
        r.clear();
        assert_eq!(r.total(), 0);
    }
}
