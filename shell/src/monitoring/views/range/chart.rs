//! The range's charts: the fewest rows that cover each bucket, merged
//! into points.

use super::*;

pub(super) fn point(bucket_start: i64, seconds: f64, b: &ChartBucket) -> MinutePoint {
    let has = b.counts.count > 0;
    MinutePoint {
        start_unix: bucket_start.max(0) as u64,
        seconds,
        requests: b.counts.count,
        requests_per_second: b.counts.count as f64 / seconds.max(1.0),
        errors_5xx: b.counts.errors_5xx,
        client_errors_4xx: b.counts.errors_4xx,
        p50_ms: if has { ms(b.p50_ns as f64) } else { 0.0 },
        p99_ms: if has { ms(b.p99_ns as f64) } else { 0.0 },
        slow_queries: b.slow,
        rss_bytes: b.rss,
    }
}

/// Where the rows a view read lie: the first row (the earliest start,
/// the first read among equal ones) and where the last one ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Rows {
    /// `(start, resolution)` of the first row.
    pub(super) first: Option<(i64, i64)>,
    pub(super) last_end: Option<i64>,
}

impl Rows {
    pub(super) fn see(&mut self, h: &Head) {
        if self.first.is_none_or(|(s, _)| h.start < s) {
            self.first = Some((h.start, h.resolution));
        }
        let end = h.start + h.resolution;
        self.last_end = Some(self.last_end.map_or(end, |e| e.max(end)));
    }
}

/// The time the history's rows really cover within a range: from the
/// first row (or the blog's start within it, or the range's start) to the
/// end of the last row written (or now). Minutes are written as they
/// close, so the minute in progress is not in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) from: i64,
    pub(super) to: i64,
}

impl Span {
    pub(super) fn of(rows: &Rows, starts: &[(i64, String)], range_from: i64, now: i64) -> Span {
        let Some((first_start, first_resolution)) = rows.first else {
            return Span { from: now, to: now };
        };
        let first_end = first_start + first_resolution;
        // The blog's very first start inside the first row: nothing was
        // served before it. A later start (a deploy) says nothing of the
        // row's earlier part, served by the run before.
        let started = starts
            .iter()
            .map(|&(at, _)| at)
            .min()
            .filter(|&at| at >= first_start && at < first_end)
            .unwrap_or(first_start);
        let last_end = rows.last_end.unwrap_or(first_end);
        let from = started.max(range_from).min(now);
        Span {
            from,
            to: last_end.min(now).max(from),
        }
    }

    pub(super) fn seconds(self) -> i64 {
        self.to - self.from
    }
}

/// One chart point's rows merged (its quantiles taken when it closed).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct ChartBucket {
    /// Its start on the clock.
    pub(super) start: i64,
    pub(super) counts: Counts,
    pub(super) slow: u64,
    pub(super) rss: u64,
    /// Where the last of its rows ends (an hour row in a minute's bucket
    /// covers its whole hour).
    pub(super) rows_end: i64,
    pub(super) p50_ns: u64,
    pub(super) p99_ns: u64,
}

/// The all-requests rows, in the order of their start, into chart
/// points of `bucket` seconds aligned on the clock (so a point's time
/// does not move between views), and all of them merged. One accumulator
/// for the open point, one for the whole range.
pub(super) struct Chart<'a> {
    pub(super) layouts: &'a Layouts,
    pub(super) bucket: i64,
    pub(super) closed: Vec<ChartBucket>,
    pub(super) open: Option<(ChartBucket, Merged)>,
    pub(super) all: Merged,
    /// Reused by each point in turn.
    pub(super) spare: Accumulator,
    pub(super) rows: Rows,
    pub(super) damaged: u64,
}

impl<'a> Chart<'a> {
    pub(super) fn new(layouts: &'a Layouts, bucket: i64) -> Chart<'a> {
        Chart {
            layouts,
            bucket,
            closed: Vec::new(),
            open: None,
            all: Merged::default(),
            spare: Accumulator::new(),
            rows: Rows::default(),
            damaged: 0,
        }
    }

    pub(super) fn close(&mut self) {
        if let Some((mut b, mut m)) = self.open.take() {
            b.counts = m.counts;
            b.slow = m.slow;
            b.rss = m.rss;
            [b.p50_ns, b.p99_ns] = m.latency.values_at_quantiles([0.5, 0.99]);
            // The point's counters into the whole range's (no second
            // decoding of its rows), and cleared for the next point.
            m.latency.drain_into(&mut self.all.latency);
            self.closed.push(b);
            self.spare = m.latency;
        }
    }

    pub(super) fn add(&mut self, h: &Head, blob: &[u8]) {
        let b = h.start - h.start.rem_euclid(self.bucket);
        // Rows come in the order of their start (pieces in order, each
        // ordered by start), so a point closes when the next begins.
        debug_assert!(self.open.as_ref().is_none_or(|(o, _)| o.start <= b));
        if self.open.as_ref().is_some_and(|(o, _)| o.start != b) {
            self.close();
        }
        let layouts = self.layouts;
        let (open, m) = self.open.get_or_insert_with(|| {
            let latency = std::mem::take(&mut self.spare);
            (
                ChartBucket {
                    start: b,
                    ..ChartBucket::default()
                },
                Merged {
                    latency,
                    ..Merged::default()
                },
            )
        });
        if m.add(h, blob, layouts).is_err() {
            self.damaged += 1;
            return;
        }
        open.rows_end = open.rows_end.max(h.start + h.resolution);
        // The whole range's figures; its distribution takes the point's
        // when the point closes.
        self.all.add_head(h);
        self.rows.see(h);
    }

    /// The points, each from where the span starts in it to where the
    /// span ends in it.
    pub(super) fn points(&mut self, span: Span) -> Vec<MinutePoint> {
        self.close();
        let bucket = self.bucket;
        self.closed
            .iter()
            .map(|b| {
                let start = b.start.max(span.from);
                let end = (b.start + bucket).max(b.rows_end).min(span.to);
                point(start, (end - start).max(1) as f64, b)
            })
            .collect()
    }
}

/// The memory samples a range view draws, from the history's `rss`
/// samples (oldest first): the first, then the last of each `bucket` (what
/// the bucket's point stands for). The change over the range is the last
/// minus the first of these at every range: the same minutes give the same
/// change in the 1-hour view and the 30-day one.
pub(super) fn memory_samples(rss: &[(i64, u64)], bucket: i64) -> Vec<[u64; 2]> {
    let bucket_of = |at: i64| (at - 1).div_euclid(bucket.max(1));
    rss.iter()
        .enumerate()
        .filter(|&(i, &(at, _))| {
            i == 0
                || rss
                    .get(i + 1)
                    .is_none_or(|next| bucket_of(next.0) != bucket_of(at))
        })
        .map(|(_, &(at, bytes))| [at.max(0) as u64, bytes])
        .collect()
}
