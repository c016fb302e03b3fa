//! Reading the history: the writer's own connection or a read-only one of
//! a dashboard view (a long view never holds up the ticker's writes; WAL
//! lets both run at once).

use std::path::Path;

use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use rusqlite::{params, Connection};

use super::*;

/// Reads the history through a connection: the writer's own, or a
/// read-only one of a dashboard view (so a long view never holds up the
/// ticker's writes; WAL lets both run at once).
pub struct Reader<'a> {
    pub(super) conn: &'a Connection,
}

/// A read-only connection to the history file.
pub struct ReadOnly {
    conn: Connection,
}

impl ReadOnly {
    /// Opens `dir`'s history for reading.
    pub fn open(dir: &Path) -> Result<ReadOnly, String> {
        let conn = Connection::open_with_flags(
            dir.join(FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_millis(500))
            .map_err(err)?;
        Ok(ReadOnly { conn })
    }

    /// Its reader.
    pub fn reader(&self) -> Reader<'_> {
        Reader { conn: &self.conn }
    }
}

/// A stored integer as a count: a negative one is a damaged row.
fn count(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(i)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(i, v))
}

impl Reader<'_> {
    /// The newest `limit` alert events with `from <= at < to`, oldest
    /// first.
    pub fn alert_events(
        &self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<crate::monitoring::ticker::alerts::AlertEvent>, String> {
        crate::monitoring::ticker::alert_history::read(self.conn, from, to, limit).map_err(err)
    }

    /// The slowest requests stored for the hours of `from..to`.
    pub fn slow_requests(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<crate::monitoring::evidence::WorstRequest>, String> {
        crate::monitoring::ticker::slow_history::read(self.conn, from, to).map_err(err)
    }

    /// Rows of `resolution` with `from <= start < to`, of one kind or all.
    pub fn rows_between(
        &self,
        resolution: i64,
        from: i64,
        to: i64,
        kind: Option<i64>,
    ) -> Result<Vec<Row>, String> {
        let mut q = self
            .conn
            .prepare_cached(
                "SELECT start, kind, name, count, sum_ns, errors_5xx, errors_4xx, bytes, rows,
                 slow, rss, latency FROM rows
                 WHERE resolution = ?1 AND start >= ?2 AND start < ?3 AND (?4 IS NULL OR kind = ?4)
                 ORDER BY start",
            )
            .map_err(err)?;
        let rows = q
            .query_map(params![resolution, from, to, kind], |r| {
                let blob: Vec<u8> = r.get(11)?;
                Ok((
                    Row {
                        start: r.get(0)?,
                        resolution,
                        kind: r.get(1)?,
                        name: r.get(2)?,
                        counts: Counts {
                            count: count(r, 3)?,
                            sum_ns: r.get::<_, i64>(4)? as u64,
                            errors_5xx: count(r, 5)?,
                            errors_4xx: count(r, 6)?,
                            bytes: count(r, 7)?,
                            rows: count(r, 8)?,
                        },
                        slow: count(r, 9)?,
                        rss: count(r, 10)?,
                        latency: Histogram::new(1).expect("a 1-significant-figure histogram"),
                    },
                    blob,
                ))
            })
            .map_err(err)?;
        let mut out = Vec::new();
        let mut de = Deserializer::new();
        for row in rows {
            let (mut row, blob) = row.map_err(err)?;
            row.latency = de
                .deserialize(&mut blob.as_slice())
                .map_err(|e| format!("a damaged histogram in the history: {e:?}"))?;
            out.push(row);
        }
        Ok(out)
    }

    /// The RSS the all-requests rows know (`(Unix seconds at the row's
    /// end, bytes)`, oldest first) for rows that end in `from..=to`, at
    /// the finest resolution kept: minute rows, and hour rows for the
    /// hours before the oldest minute row. No histogram is read.
    pub fn rss_samples(&self, from: i64, to: i64) -> Result<Vec<(i64, u64)>, String> {
        let mut q = self
            .conn
            .prepare_cached(
                "SELECT start + resolution AS at, rss FROM rows
                 WHERE kind = ?1 AND rss > 0 AND start + resolution > ?2 AND start + resolution <= ?3
                 AND (resolution = 60 OR start + 3600 <= coalesce(
                     (SELECT min(start) FROM rows WHERE resolution = 60), ?3))
                 ORDER BY at",
            )
            .map_err(err)?;
        let samples = q
            .query_map(params![KIND_ALL, from, to], |r| {
                Ok((r.get(0)?, count(r, 1)?))
            })
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        Ok(samples)
    }

    /// The rows covering `from..to` (Unix seconds): hour rows where a
    /// whole hour is rolled up and older than a day, minute rows for the
    /// rest.
    pub fn rows_for_range(
        &self,
        from: i64,
        to: i64,
        kind: Option<i64>,
    ) -> Result<Vec<Row>, String> {
        let oldest_minute: Option<i64> = self
            .conn
            .query_row(
                "SELECT min(start) FROM rows WHERE resolution = 60",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        // Minute rows wherever the range starts inside them (1 h and 24 h
        // views: exact); otherwise hour rows up to where minute rows take
        // over (the hour of the oldest minute row comes from its hour row
        // once rolled up, as that row holds the pruned minutes too; the
        // hour the range starts in is counted whole).
        let Some(oldest) = oldest_minute.filter(|m| from < *m) else {
            return self.rows_between(MINUTE, from, to, kind);
        };
        let hour = oldest - oldest.rem_euclid(HOUR);
        let rolled: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM rows WHERE resolution = 3600 AND start = ?1)",
                [hour],
                |r| r.get(0),
            )
            .map_err(err)?;
        let split = if rolled { hour + HOUR } else { hour };
        let mut rows = self.rows_between(HOUR, from - from.rem_euclid(HOUR), split, kind)?;
        rows.extend(self.rows_between(MINUTE, split, to, kind)?);
        Ok(rows)
    }

    /// The rows covering `from..to` with as few rows as possible: hour
    /// rows for every rolled-up hour inside the range, minute rows for the
    /// rest (the part of the first hour, and the hours not yet rolled up).
    /// Where a partial hour's minutes are pruned (ranges past a day), its
    /// hour row counts whole in the range its start falls in, so two
    /// adjacent ranges never count it twice. For totals over long ranges; charts that need
    /// minutes use [`rows_for_range`](Self::rows_for_range).
    pub fn rows_for_range_coarse(
        &self,
        from: i64,
        to: i64,
        kind: Option<i64>,
    ) -> Result<Vec<Row>, String> {
        let (oldest_minute, rolled_end): (Option<i64>, Option<i64>) = self
            .conn
            .query_row(
                "SELECT (SELECT min(start) FROM rows WHERE resolution = 60),
                        (SELECT max(start) + 3600 FROM rows WHERE resolution = 3600)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        let first_full = (from + HOUR - 1).div_euclid(HOUR) * HOUR;
        let last_full_end = to - to.rem_euclid(HOUR);
        let kept = |t: i64| oldest_minute.is_some_and(|m| m <= t);
        let mut rows = Vec::new();
        // The part of the first hour: its minutes where they are kept. A
        // pruned partial hour belongs to the range its start falls in.
        let head_end = first_full.min(to);
        if let Some(m) = oldest_minute.filter(|m| *m < head_end) {
            rows.extend(self.rows_between(MINUTE, from.max(m), head_end, kind)?);
        }
        // Whole hours inside the range that are rolled up.
        let hours_to = rolled_end
            .unwrap_or(first_full)
            .min(last_full_end)
            .max(first_full);
        rows.extend(self.rows_between(HOUR, first_full, hours_to, kind)?);
        // The rest: minutes where they are kept, else the hour row that
        // starts in the range (counted whole).
        let rest = hours_to.max(head_end);
        if rest < to {
            let pruned_hour = if kept(rest) {
                Vec::new()
            } else {
                self.rows_between(HOUR, rest, to, kind)?
            };
            if pruned_hour.is_empty() {
                // Minutes kept (or a history younger than the range).
                rows.extend(self.rows_between(MINUTE, rest, to, kind)?);
            } else {
                rows.extend(pruned_hour);
            }
        }
        Ok(rows)
    }

    /// Starts (Unix seconds, version) since `from`, oldest first.
    pub fn starts(&self, from: i64) -> Result<Vec<(i64, String)>, String> {
        let mut q = self
            .conn
            .prepare_cached("SELECT at, version FROM starts WHERE at >= ?1 ORDER BY at")
            .map_err(err)?;
        let starts = q
            .query_map([from], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        Ok(starts)
    }
}
