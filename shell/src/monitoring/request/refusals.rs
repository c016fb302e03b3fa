//! Requests the HTTP front refused or timed out before any handler ran: a
//! head it could not read (400, 414, 431), a bad Host or body (400), a body
//! too large (413) or not received in time (408), no room in the body
//! budget, no room in the response budget, past the connection cap or
//! a client's share of it (503). Counted exactly, by reason, apart from every route: they
//! are not readers' requests, so they stay out of route latency, the error
//! rate and alert rules (unless a rule names `refused`). An anonymous
//! client can send any number of them; it cannot move the owner's figures.
//!
//! On the front's I/O threads: one relaxed add, no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why the front refused a request (or a connection).
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
    /// 503: no room in the server-wide request-body budget.
    BodyBudget,
    /// 503: no room in the response budget, or the client's share of it.
    ResponseBudget,
    /// 503: a connection past `STARPUNK_HTTP_MAX_CONNECTIONS`.
    Connections,
    /// 503: a connection past its client's `STARPUNK_HTTP_MAX_PER_CLIENT`.
    ClientConnections,
}

impl Reason {
    /// Every reason, in export order.
    pub const ALL: [Reason; 9] = [
        Reason::BadRequest,
        Reason::BodyTimeout,
        Reason::BodyTooLarge,
        Reason::UriTooLong,
        Reason::HeadTooLarge,
        Reason::BodyBudget,
        Reason::ResponseBudget,
        Reason::Connections,
        Reason::ClientConnections,
    ];

    /// Its name in exports (`reason` label, JSON, alert events).
    pub fn name(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad_request",
            Reason::BodyTimeout => "body_timeout",
            Reason::BodyTooLarge => "body_too_large",
            Reason::UriTooLong => "uri_too_long",
            Reason::HeadTooLarge => "head_too_large",
            Reason::BodyBudget => "body_budget",
            Reason::ResponseBudget => "response_budget",
            Reason::Connections => "connections",
            Reason::ClientConnections => "client_connections",
        }
    }

    /// The status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::BodyTimeout => 408,
            Reason::BodyTooLarge => 413,
            Reason::UriTooLong => 414,
            Reason::HeadTooLarge => 431,
            Reason::BodyBudget
            | Reason::ResponseBudget
            | Reason::Connections
            | Reason::ClientConnections => 503,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Refusals since start (or the last clear), by reason.
#[derive(Debug, Default)]
pub struct Refusals {
    counts: [AtomicU64; Reason::ALL.len()],
}

impl Refusals {
    /// Counts one refusal.
    pub fn add(&self, reason: Reason) {
        if let Some(c) = self.counts.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every reason with its count.
    pub fn counts(&self) -> [(Reason, u64); Reason::ALL.len()] {
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
    fn each_reason_is_counted_once_under_its_own_name_and_status() {
        let r = Refusals::default();
        for (i, reason) in Reason::ALL.iter().enumerate() {
            for _ in 0..=i {
                r.add(*reason);
            }
        }
        let counts = r.counts();
        for (i, (reason, n)) in counts.iter().enumerate() {
            assert_eq!(*reason, Reason::ALL[i]);
            assert_eq!(*n, i as u64 + 1, "{}", reason.name());
        }
        assert_eq!(r.total(), 45);
        let names: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        assert_eq!(Reason::ClientConnections.status(), 503);
        assert_eq!(Reason::BodyTimeout.status(), 408);
        r.clear();
        assert_eq!(r.total(), 0);
    }
}
