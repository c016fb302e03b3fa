//! Which rows a range reads: a plan of [`Piece`]s, each a part of the
//! range read at one resolution, so that every period is counted once.
//!
//! [`Reader::plan_fine`] and [`Reader::plan_hours`] decide between minute
//! and hour rows (the decisions of issue 20); [`Reader::refine`] then reads
//! each whole rolled-up quarter-hour inside a minute piece from its
//! quarter-hour row, each whole rolled-up six hours inside an hour piece
//! from its six-hour row, and each whole day inside those from its day
//! row. A row of a level is the exact merge of the rows it covers (see
//! [`super::rollup`]), so the figures are the same either way; only the
//! number of rows read, and so of counters added, falls (the 7-day view:
//! 168 hour rows a series become 6 or 7 days, at most 6 six-hour rows and
//! 10 hours).

use rusqlite::params;

use super::read::OLDEST_MINUTE;
use super::*;

/// Where the newest row of a resolution ends, found per series (the key
/// is resolution, then series: one seek each).
fn newest_end(resolution: i64) -> String {
    format!(
        "(SELECT max(m) + {resolution} FROM (SELECT (SELECT max(start) FROM aggregates
         WHERE resolution = {resolution} AND series = s.id) AS m FROM series s))"
    )
}

/// Where the newest rolled-up row of a resolution ends: the all-requests
/// series' (one seek). The roll-ups decide which periods are due by that
/// series alone, so every period rolled up has a row of it.
fn rolled_end(resolution: i64) -> String {
    format!(
        "(SELECT max(start) + {resolution} FROM aggregates WHERE resolution = {resolution}
         AND series = (SELECT id FROM series WHERE kind = {KIND_ALL} AND name = ''))"
    )
}

/// Where each resolution's rows lie, read once per [`Reader`] (a view
/// plans its chart, tables and comparison from the same bounds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Bounds {
    pub(super) oldest_minute: Option<i64>,
    hour_end: Option<i64>,
    quarter_end: Option<i64>,
    six_end: Option<i64>,
    day_end: Option<i64>,
}

/// The coarsest resolution whose rows fit in chart points of `bucket`
/// seconds aligned on the clock (each row within one point).
pub fn coarsest_within(bucket: i64) -> i64 {
    [DAY, SIX_HOURS, HOUR, QUARTER]
        .into_iter()
        .find(|l| bucket % l == 0)
        .unwrap_or(MINUTE)
}

impl Reader<'_> {
    pub(super) fn bounds(&self) -> Result<Bounds, String> {
        if let Some(b) = self.bounds.get() {
            return Ok(b);
        }
        let b: Bounds = self
            .conn
            .prepare_cached(&format!(
                "SELECT {OLDEST_MINUTE}, {}, {}, {}, {}",
                newest_end(HOUR),
                rolled_end(QUARTER),
                rolled_end(SIX_HOURS),
                rolled_end(DAY)
            ))
            .and_then(|mut q| {
                q.query_row([], |r| {
                    Ok(Bounds {
                        oldest_minute: r.get(0)?,
                        hour_end: r.get(1)?,
                        quarter_end: r.get(2)?,
                        six_end: r.get(3)?,
                        day_end: r.get(4)?,
                    })
                })
            })
            .map_err(err)?;
        self.bounds.set(Some(b));
        Ok(b)
    }

    /// The oldest hour row's start of the series of `kind` (or of routes
    /// and patterns).
    fn oldest_hour(&self, kind: Option<i64>) -> Result<Option<i64>, String> {
        self.conn
            .prepare_cached(&format!(
                "SELECT min(m) FROM (SELECT (SELECT min(start) FROM aggregates
                 WHERE resolution = 3600 AND series = s.id) AS m FROM series s
                 WHERE s.kind = ?1 OR (?1 IS NULL AND s.kind != {KIND_ALL}))"
            ))
            .and_then(|mut q| q.query_row([kind], |r| r.get(0)))
            .map_err(err)
    }

    /// The pieces covering `from..to` (Unix seconds): hour rows where a
    /// whole hour is rolled up and older than a day, minute rows for the
    /// rest.
    pub fn plan_fine(&self, from: i64, to: i64) -> Result<Vec<Piece>, String> {
        let piece = |resolution, from, to| Piece {
            resolution,
            from,
            to,
        };
        // Minute rows wherever the range starts inside them (1 h and 24 h
        // views: exact); otherwise hour rows up to where minute rows take
        // over (the hour of the oldest minute row comes from its hour row
        // once rolled up, as that row holds the pruned minutes too; the
        // hour the range starts in is counted whole).
        let Some(oldest) = self.bounds()?.oldest_minute.filter(|m| from < *m) else {
            return Ok(vec![piece(MINUTE, from, to)]);
        };
        let hour = oldest - oldest.rem_euclid(HOUR);
        let rolled: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM aggregates WHERE resolution = 3600
                 AND series IN (SELECT id FROM series) AND start = ?1)",
                [hour],
                |r| r.get(0),
            )
            .map_err(err)?;
        let split = if rolled { hour + HOUR } else { hour };
        Ok(vec![
            piece(HOUR, from - from.rem_euclid(HOUR), split),
            piece(MINUTE, split, to),
        ])
    }

    /// The rows of every piece of `plan`, in its order.
    fn rows_of_plan(&self, plan: Vec<Piece>, kind: Option<i64>) -> Result<Vec<Row>, String> {
        let mut rows = Vec::new();
        for p in plan {
            rows.extend(self.rows_between(p.resolution, p.from, p.to, kind)?);
        }
        Ok(rows)
    }

    /// The rows covering `from..to` (see [`plan_fine`](Self::plan_fine)).
    pub fn rows_for_range(
        &self,
        from: i64,
        to: i64,
        kind: Option<i64>,
    ) -> Result<Vec<Row>, String> {
        self.rows_of_plan(self.plan_fine(from, to)?, kind)
    }

    /// The pieces covering `from..to` with as few rows as possible: the
    /// hour and minute pieces of [`plan_hours`](Self::plan_hours) with
    /// their whole rolled-up days, six hours and quarter-hours read from
    /// those rows ([`refine`](Self::refine)). For totals over long ranges; charts
    /// refine only to rows that fit in their points.
    pub fn plan_coarse(&self, from: i64, to: i64, kind: Option<i64>) -> Result<Vec<Piece>, String> {
        self.refine(self.plan_hours(from, to, kind)?, DAY, kind)
    }

    /// The pieces covering `from..to` with hour and minute rows: hour
    /// rows for every rolled-up hour inside the range, minute rows for the
    /// rest (the part of the first hour, and the hours not yet rolled up).
    /// Where a partial hour's minutes are pruned (ranges past a day), its
    /// hour row counts whole in the range its start falls in, so two
    /// adjacent ranges never count it twice; whether that hour row exists
    /// is asked of the series of `kind` (or all). Charts that need minutes
    /// use [`plan_fine`](Self::plan_fine).
    pub fn plan_hours(&self, from: i64, to: i64, kind: Option<i64>) -> Result<Vec<Piece>, String> {
        let Bounds {
            oldest_minute,
            hour_end: rolled_end,
            ..
        } = self.bounds()?;
        let piece = |resolution, from, to| Piece {
            resolution,
            from,
            to,
        };
        let first_full = (from + HOUR - 1).div_euclid(HOUR) * HOUR;
        let last_full_end = to - to.rem_euclid(HOUR);
        let kept = |t: i64| oldest_minute.is_some_and(|m| m <= t);
        let mut pieces = Vec::new();
        // The part of the first hour: its minutes where they are kept. A
        // pruned partial hour belongs to the range its start falls in.
        let head_end = first_full.min(to);
        if let Some(m) = oldest_minute.filter(|m| *m < head_end) {
            pieces.push(piece(MINUTE, from.max(m), head_end));
        }
        // Whole hours inside the range that are rolled up.
        let hours_to = rolled_end
            .unwrap_or(first_full)
            .min(last_full_end)
            .max(first_full);
        pieces.push(piece(HOUR, first_full, hours_to));
        // The rest: minutes where they are kept, else the hour row that
        // starts in the range (counted whole).
        let rest = hours_to.max(head_end);
        if rest < to {
            let pruned_hour = !kept(rest) && {
                let which = match kind {
                    Some(_) => "series IN (SELECT id FROM series WHERE kind = ?3)",
                    None => "series IN (SELECT id FROM series) AND ?3 IS NULL",
                };
                self.conn
                    .prepare_cached(&format!(
                        "SELECT EXISTS (SELECT 1 FROM aggregates WHERE resolution = 3600
                         AND start >= ?1 AND start < ?2 AND {which})"
                    ))
                    .and_then(|mut q| q.query_row(params![rest, to, kind], |r| r.get(0)))
                    .map_err(err)?
            };
            pieces.push(piece(if pruned_hour { HOUR } else { MINUTE }, rest, to));
        }
        Ok(pieces)
    }

    /// The rows covering `from..to` with as few rows as possible (see
    /// [`plan_coarse`](Self::plan_coarse)).
    pub fn rows_for_range_coarse(
        &self,
        from: i64,
        to: i64,
        kind: Option<i64>,
    ) -> Result<Vec<Row>, String> {
        self.rows_of_plan(self.plan_coarse(from, to, kind)?, kind)
    }

    /// `pieces` with every whole quarter-hour inside a minute piece read
    /// from its quarter-hour row, every whole six hours inside an hour
    /// piece from its six-hour row, and every whole day inside those from
    /// its day row, as far as those are rolled up and up to `coarsest`
    /// seconds. Where the hour rows of `kind` (or of routes and patterns)
    /// of six hours at the end of an hour piece are all pruned (older than
    /// [`HOURS_KEPT`]), its six-hour row counts whole in the range its
    /// start falls in, as a pruned hour does.
    pub fn refine(
        &self,
        mut pieces: Vec<Piece>,
        coarsest: i64,
        kind: Option<i64>,
    ) -> Result<Vec<Piece>, String> {
        let b = self.bounds()?;
        // The oldest hour row of `kind` (asked only of six hours that may
        // be counted whole).
        let mut hours_from: Option<Option<i64>> = None;
        // (finer, level, where the level's rows end), each step reading
        // the pieces the one before left.
        for (finer, level, end) in [
            (MINUTE, QUARTER, b.quarter_end),
            (HOUR, SIX_HOURS, b.six_end),
            (SIX_HOURS, DAY, b.day_end),
        ] {
            let Some(end) = end.filter(|_| level <= coarsest) else {
                continue;
            };
            let mut out = Vec::with_capacity(pieces.len() + 4);
            for p in pieces {
                if p.resolution != finer {
                    out.push(p);
                    continue;
                }
                let first = p.from + (level - p.from.rem_euclid(level)) % level;
                let last = p.to - p.to.rem_euclid(level);
                let whole_to = last.min(end);
                if first >= whole_to {
                    out.push(p);
                    continue;
                }
                // The six hours at the piece's end, rolled up, every hour
                // of them pruned: counted whole here.
                let whole_tail = level == SIX_HOURS
                    && whole_to == last
                    && last < p.to
                    && last + SIX_HOURS <= end
                    && match hours_from {
                        Some(h) => h,
                        None => *hours_from.insert(self.oldest_hour(kind)?),
                    }
                    .is_none_or(|h| last + SIX_HOURS <= h);
                let mid_to = if whole_tail { p.to } else { whole_to };
                for (resolution, from, to) in [
                    (p.resolution, p.from, first),
                    (level, first, mid_to),
                    (p.resolution, mid_to, p.to),
                ] {
                    if from < to {
                        out.push(Piece {
                            resolution,
                            from,
                            to,
                        });
                    }
                }
            }
            pieces = out;
        }
        Ok(pieces)
    }
}
