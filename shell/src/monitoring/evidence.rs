//! A kept request as it is shown, exported and stored: its parts, its
//! timeline and the code that ran each span. Built by the views and by the
//! ticker (which writes the hour's slowest to the history file), so it
//! lives beside both rooms, not in either.

use serde::{Deserialize, Serialize};

use crate::monitoring::Inner;

/// A request kept in detail (see `monitoring::request::kept`): among the slowest of
/// its route and window, a 5xx, or one that ran a slow statement. Kept
/// apart from the ring, whatever the sample rate: later traffic replaces
/// it only with a slower one of its window, or when its window has passed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WorstRequest {
    /// Its anchor on the page (`r` and the request id).
    pub id: String,
    /// Route template.
    pub route: String,
    /// RFC 3339 of the handler's start.
    pub at: String,
    /// The handler's time, milliseconds: the figure its route's series
    /// recorded, and the sum of `parts`.
    pub duration_ms: f64,
    /// HTTP status.
    pub status: u16,
    /// Why it is kept: `slowest`, `error`, `slow_statement`.
    pub kept_because: Vec<String>,
    /// A request of the owner's own pages (`/admin...`, `/metrics`).
    pub own: bool,
    /// Patterns it ran, with counts (every statement of the request).
    pub queries: Vec<(String, u64)>,
    /// Where `duration_ms` went; the parts add up to it.
    pub parts: Parts,
    /// Time in the HTTP front before the handler ran, not part of
    /// `duration_ms` (receiving the body, waiting for a handler thread).
    pub before_handler: BeforeHandler,
    /// The largest single part: a statement, a named function, the
    /// handler's own code, or the wait before it.
    pub largest: Largest,
    /// Its statements and named functions in start order; a statement run
    /// inside a named function has `depth` 1 and is part of its time.
    pub timeline: Vec<Span>,
}

/// Where a request's handler time went: every listed statement and named
/// function that ran directly in the handler, the spans past the trace's
/// capacity, and the rest (the handler's own code: rendering, hashing,
/// waiting on locks outside SQL).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Parts {
    /// SQL statements run directly by the handler, milliseconds.
    pub sql_ms: f64,
    /// Named functions (with the statements inside them), milliseconds.
    pub functions_ms: f64,
    /// Spans past the trace's capacity (32), milliseconds.
    pub unlisted_ms: f64,
    /// How many spans are not listed.
    pub unlisted: u32,
    /// The rest: `duration_ms` minus the above.
    pub own_code_ms: f64,
    /// A request the HTTP front answered itself (a body refused or not
    /// received in time, a full server): all of its time, no handler ran.
    pub front_ms: f64,
}

/// The request's wait in the front before its handler.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BeforeHandler {
    /// Receiving the request's body, milliseconds.
    pub body_ms: f64,
    /// Waiting for a handler thread, milliseconds.
    pub queued_ms: f64,
}

/// The part of a request that took most of its time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Largest {
    /// `sql`, `function`, `own_code` or `queued`.
    pub kind: String,
    /// The pattern or function's name (empty for the others).
    pub name: String,
    /// Milliseconds.
    pub duration_ms: f64,
    /// The code that ran it (empty for the others).
    pub location: String,
}

/// One statement or function inside a request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Span {
    /// `"sql"` or `"function"`.
    pub kind: String,
    /// The pattern or the function's name.
    pub name: String,
    /// Start, milliseconds after the handler's start.
    pub offset_ms: f64,
    /// Milliseconds.
    pub duration_ms: f64,
    /// The code that ran it, `file.rs:line`.
    pub location: String,
    /// Named functions it ran inside (0: directly in the handler).
    pub depth: u8,
}

/// `parts` (nanoseconds, summing to at most `total_ns`) in milliseconds
/// rounded to the microsecond so that they add up to `total_ns` rounded
/// the same way: each part is cut to whole microseconds and the
/// microseconds left go to the parts with the largest remainders.
pub(crate) fn split_ms<const N: usize>(total_ns: u64, parts: [u64; N]) -> [f64; N] {
    // Rounded as `ms` rounds the duration shown beside them.
    let total_us = (total_ns as f64 / 1e6 * 1000.0).round() as u64;
    let mut us = parts.map(|p| p / 1_000);
    let mut left = total_us.saturating_sub(us.iter().sum());
    let mut order: Vec<usize> = (0..N).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(parts[i] % 1_000));
    for &i in order.iter().cycle().take(N * 2) {
        if left == 0 {
            break;
        }
        if parts[i] > 0 || i == N - 1 {
            us[i] += 1;
            left -= 1;
        }
    }
    us.map(|u| u as f64 / 1_000.0)
}

pub(crate) fn ms(ns: f64) -> f64 {
    (ns / 1e6 * 1000.0).round() / 1000.0
}

/// RFC 3339 of Unix nanoseconds.
pub fn rfc3339(unix_ns: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns))
        .ok()
        .and_then(|t| t.replace_nanosecond(0).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Inner {
    /// A kept request's anchor: its start (Unix ms) and request id, unique
    /// across runs (request ids restart with each).
    pub(crate) fn kept_id(&self, k: &crate::monitoring::request::kept::KeptRequest) -> String {
        let ms = self.recorder.anchor().to_unix_ns(k.start_ns) / 1_000_000;
        format!("r{ms}-{}", k.request_id)
    }

    /// A kept request as the page and the JSON show it.
    pub(super) fn kept_view(
        &self,
        k: &crate::monitoring::request::kept::KeptRequest,
    ) -> WorstRequest {
        use crate::monitoring::request::trace::SpanKind;
        let mut counts: Vec<(String, u64)> = Vec::new();
        let (mut sql_ns, mut fn_ns) = (0u64, 0u64);
        let mut largest = Largest::default();
        let mut largest_ns = 0u64;
        let mut timeline = Vec::with_capacity(k.spans.len());
        for sp in k.spans.iter() {
            let name = self.name(sp.op);
            let location = sp
                .location
                .map(crate::monitoring::request::sources::location)
                .unwrap_or_default();
            let kind = match sp.kind {
                SpanKind::Sql => "sql",
                SpanKind::Function => "function",
            };
            if sp.kind == SpanKind::Sql {
                match counts.iter_mut().find(|(n, _)| *n == name) {
                    Some(c) => c.1 += 1,
                    None => counts.push((name.clone(), 1)),
                }
            }
            if sp.depth == 0 {
                match sp.kind {
                    SpanKind::Sql => sql_ns += sp.duration_ns,
                    SpanKind::Function => fn_ns += sp.duration_ns,
                }
            }
            if sp.duration_ns > largest_ns {
                largest_ns = sp.duration_ns;
                largest = Largest {
                    kind: kind.into(),
                    name: name.clone(),
                    duration_ms: ms(sp.duration_ns as f64),
                    location: location.clone(),
                };
            }
            timeline.push(Span {
                kind: kind.into(),
                name,
                offset_ms: ms(sp.start_ns.saturating_sub(k.start_ns) as f64),
                duration_ms: ms(sp.duration_ns as f64),
                location,
                depth: sp.depth,
            });
        }
        let duration_ms = ms(k.duration_ns as f64);
        // The handler's own code is the rest; the parts are rounded to the
        // microsecond together (largest remainders), so the figures shown
        // add up to the duration shown exactly.
        let (front_ns, own_code_ns) = if k.reasons.front {
            (k.duration_ns, 0)
        } else {
            let rest = k
                .duration_ns
                .saturating_sub(sql_ns + fn_ns + k.overflow.top_ns);
            (0, rest)
        };
        let [sql_ms, functions_ms, unlisted_ms, own_code_ms, front_ms] = split_ms(
            k.duration_ns,
            [sql_ns, fn_ns, k.overflow.top_ns, own_code_ns, front_ns],
        );
        if front_ns > largest_ns {
            largest_ns = front_ns;
            largest = Largest {
                kind: "front".into(),
                duration_ms: front_ms,
                ..Largest::default()
            };
        }
        if own_code_ns > largest_ns {
            largest_ns = own_code_ns;
            largest = Largest {
                kind: "own_code".into(),
                duration_ms: own_code_ms,
                ..Largest::default()
            };
        }
        let waited = k.before.queued_ns + k.before.body_ns;
        if waited > largest_ns {
            largest = Largest {
                kind: "queued".into(),
                duration_ms: ms(waited as f64),
                ..Largest::default()
            };
        }
        let mut because = Vec::new();
        if k.reasons.slowest {
            because.push("slowest");
        }
        if k.reasons.error {
            because.push("error");
        }
        if k.reasons.slow_statement {
            because.push("slow_statement");
        }
        if k.reasons.front {
            because.push("answered_by_the_front");
        }
        let route = self.name(k.route);
        WorstRequest {
            id: self.kept_id(k),
            own: crate::monitoring::own::is_own(&route),
            route,
            at: rfc3339(self.recorder.anchor().to_unix_ns(k.start_ns)),
            duration_ms,
            status: k.status,
            kept_because: because.into_iter().map(String::from).collect(),
            queries: counts,
            parts: Parts {
                sql_ms,
                functions_ms,
                unlisted_ms,
                unlisted: k.overflow.count,
                own_code_ms,
                front_ms,
            },
            before_handler: BeforeHandler {
                body_ms: ms(k.before.body_ns as f64),
                queued_ms: ms(k.before.queued_ns as f64),
            },
            largest,
            timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_rounded_together_add_up_to_the_duration_shown() {
        // Three parts of 0.4 us and the rest: cut one by one they would
        // show 0 + 0 + 0 + 1.799 of a 2.999 ms request.
        let parts = [400, 400, 400, 2_998_999 - 1_200 + 600];
        let total: u64 = parts.iter().sum();
        let shown = split_ms(total, parts);
        let sum: f64 = shown.iter().sum();
        assert!(
            (sum - ms(total as f64)).abs() < 1e-9,
            "{shown:?} of {}",
            ms(total as f64)
        );
        for (p, s) in parts.iter().zip(shown) {
            assert!(
                (s - *p as f64 / 1e6).abs() <= 0.001,
                "{p} ns shown as {s} ms"
            );
        }
        // Many small statements: still exact.
        let mut many = [1_499u64; 33];
        many[32] = 17;
        let total: u64 = many.iter().sum();
        let sum: f64 = split_ms(total, many).iter().sum();
        assert!((sum - ms(total as f64)).abs() < 1e-9);
        assert_eq!(split_ms(0, [0, 0]), [0.0, 0.0]);
    }
}
