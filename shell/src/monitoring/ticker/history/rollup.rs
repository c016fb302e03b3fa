//! The roll-ups and the pruning, on the ticker after a minute's write.
//!
//! Each level merges the rows of a finer one into rows of its own length,
//! per series, distributions added counter by counter (so every row of a
//! level is the exact merge of the rows it covers):
//!
//! - [`QUARTER`] rows from minute rows, for every complete quarter-hour
//!   (the 24-hour view's 15-minute points and the edges of its tables);
//!   kept as long as the minutes.
//! - [`HOUR`] rows from minute rows, for every complete hour.
//! - [`SIX_HOURS`] rows from hour rows, for every complete quarter of a
//!   day (the edges of the 7- and 30-day views' tables, the 30-day view's
//!   12-hour points); kept for the configured days.
//! - [`DAY`] rows from six-hour rows, for every complete UTC day (the 7-
//!   and 30-day views' tables); kept for the configured days.
//!
//! Which periods are due is read from the all-requests series alone (every
//! minute written has a row of it, so every period rolled up has one too).
//! A row of a level is pruned once every row it merges is pruned, so a
//! period is never rolled up again from part of its rows. The hour rows of
//! routes and patterns go after [`HOURS_KEPT`] once their six hours are
//! rolled up (the all-requests series keeps its hour rows for the charts
//! and memory samples): the history's size at 30 days stays under 12 MiB
//! with the six-hour rows paid for.

use rusqlite::params;

use super::*;

/// How long the hour rows of routes and patterns are kept: the 7-day
/// view's first six hours read them, and a day more.
pub const HOURS_KEPT: i64 = 8 * 86_400;

/// The levels rolled up, in the order they run: (resolution, the finer
/// resolution it merges). Hours are merged from minutes, six hours from
/// hours and days from six hours (each made just before).
const LEVELS: [(i64, i64); 4] = [
    (QUARTER, MINUTE),
    (HOUR, MINUTE),
    (SIX_HOURS, HOUR),
    (DAY, SIX_HOURS),
];

impl History {
    /// Rolls every complete period of each level that has rows of the finer
    /// level and none of its own, then (once an hour) deletes what is past
    /// its time.
    pub(super) fn roll_up_and_prune(&mut self, now: i64) -> Result<(), String> {
        self.next_roll_up = now - now.rem_euclid(QUARTER) + QUARTER;
        if let Some(all) = self.reader().all_series()? {
            for (level, finer) in LEVELS {
                let before = now - now.rem_euclid(level);
                let mut q = self
                    .conn
                    .prepare_cached(
                        "SELECT DISTINCT start - (start % ?3) AS p FROM aggregates
                         WHERE resolution = ?4 AND series = ?2 AND start < ?1
                         AND p NOT IN (SELECT start FROM aggregates
                                       WHERE resolution = ?3 AND series = ?2)",
                    )
                    .map_err(err)?;
                let due: Vec<i64> = q
                    .query_map(params![before, all, level, finer], |r| r.get(0))
                    .map_err(err)?
                    .collect::<Result<_, _>>()
                    .map_err(err)?;
                drop(q);
                for start in due {
                    // A period that cannot be rolled up (a damaged row) is
                    // logged and left; the others, and pruning, go on.
                    if let Err(e) = self.roll_up(level, finer, start, all) {
                        crate::elog!(
                            "starpunk: performance history: {level} s at {start} not rolled up ({e})"
                        );
                    }
                }
            }
        }
        if now < self.next_prune {
            return Ok(());
        }
        self.next_prune = now - now.rem_euclid(HOUR) + HOUR;
        self.prune(now)
    }

    /// Deletes minute rows past a day (and the quarter-hours made of
    /// them), rows past retention, and the hour rows of routes and patterns
    /// past [`HOURS_KEPT`] whose six hours are rolled up.
    fn prune(&mut self, now: i64) -> Result<(), String> {
        let minutes_cut = now - MINUTES_KEPT;
        let days_cut = now - i64::from(self.days) * 86_400;
        let all = self.reader().all_series()?;
        let pruned = self
            .conn
            .execute(
                "DELETE FROM aggregates WHERE (resolution = 60 AND start < ?1)
                 OR (resolution = 900 AND start + 900 <= ?1)
                 OR (resolution = 3600 AND start < ?2)
                 OR (resolution = 21600 AND start + 21600 <= ?2)
                 OR (resolution = 86400 AND start + 86400 <= ?2)
                 OR (resolution = 3600 AND start < ?3 AND series != ?4
                     AND start - (start % 21600) IN (SELECT start FROM aggregates
                         WHERE resolution = 21600 AND series = ?4))",
                params![minutes_cut, days_cut, now - HOURS_KEPT, all],
            )
            .map_err(err)?;
        if pruned > 0 {
            // Names no row uses any more go too (and their cached ids).
            self.conn
                .execute(
                    "DELETE FROM series WHERE id NOT IN (SELECT DISTINCT series FROM aggregates)",
                    [],
                )
                .map_err(err)?;
            self.series.clear();
        }
        self.conn
            .execute(
                "DELETE FROM starts WHERE at < ?1",
                params![now - i64::from(self.days.max(1)) * 86_400],
            )
            .map_err(err)?;
        crate::monitoring::ticker::slow_history::prune(&self.conn, days_cut, now).map_err(err)?;
        crate::monitoring::ticker::alert_history::prune(&self.conn, days_cut).map_err(err)?;
        Ok(())
    }

    /// Merges the `finer` rows of the period of `level` at `start` into
    /// rows of `level`, in one transaction. An hour (six hours) rolled up
    /// late into six hours (a day) already rolled up (a clock set back) has
    /// those deleted in the same transaction when they hold exactly its
    /// other parts, so they are rolled up again next, with it.
    fn roll_up(&mut self, level: i64, finer: i64, start: i64, all: i64) -> Result<(), String> {
        let reader = self.reader();
        let rows = reader.rows_between(finer, start, start + level, None)?;
        if reader.damaged() > 0 {
            return Err(format!("{} of its rows are damaged", reader.damaged()));
        }
        let mut merged: Vec<Row> = Vec::new();
        for m in rows {
            match merged
                .iter_mut()
                .find(|r| r.kind == m.kind && r.name == m.name)
            {
                Some(r) => add_row(r, &m),
                None => merged.push(Row {
                    start,
                    resolution: level,
                    ..m
                }),
            }
        }
        // The period holding this one, when it is rolled up already.
        let parent = match level {
            HOUR => Some(SIX_HOURS),
            SIX_HOURS => Some(DAY),
            _ => None,
        };
        let stale = match parent {
            None => None,
            Some(parent) => {
                let block = start - start.rem_euclid(parent);
                let (rolled, parts): (Option<i64>, i64) = self
                    .conn
                    .query_row(
                        "SELECT (SELECT count FROM aggregates
                                 WHERE resolution = ?3 AND series = ?2 AND start = ?1),
                                (SELECT coalesce(sum(count), 0) FROM aggregates
                                 WHERE resolution = ?4 AND series = ?2
                                 AND start >= ?1 AND start < ?1 + ?3)",
                        params![block, all, parent, level],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(err)?;
                (rolled == Some(parts)).then_some((parent, block))
            }
        };
        let tx = self.conn.transaction().map_err(err)?;
        if let Some((parent, block)) = stale {
            tx.execute(
                "DELETE FROM aggregates WHERE resolution = ?1 AND start = ?2",
                params![parent, block],
            )
            .map_err(err)?;
        }
        let mut new_series = Vec::new();
        for r in &merged {
            insert(&tx, &mut self.layouts, &self.series, &mut new_series, r)?;
        }
        tx.commit().map_err(err)?;
        self.series.extend(new_series);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::ticker::history::tests::{cumulative, empty, fresh_dir};

    /// The last minute of a day written twice (by a run that stopped in
    /// it, which rolled up its quarter-hour, hour, six hours and day, and
    /// by the next run): each of those rows holds both writes, and is the
    /// exact merge of the minutes (hdrhistogram's).
    #[test]
    fn rolled_up_rows_follow_a_minute_written_again() {
        let dir = fresh_dir("rollup-again");
        // The last minute of a day (so of six hours, an hour and a
        // quarter-hour too).
        let day = 1_800_000_000 - 1_800_000_000 % DAY;
        let last = day + DAY - MINUTE;
        let mut h = History::open(&dir, 7, "1.0", last + 20, empty()).unwrap();
        h.write_minute(
            last,
            vec![(KIND_ROUTE, "GET /".into(), cumulative(1, 3, |_| 1))],
            0,
            0,
        )
        .unwrap();
        let counts = |h: &History, resolution: i64| {
            let mut v: Vec<(String, u64)> = h
                .reader()
                .rows_between(resolution, day, day + DAY, None)
                .unwrap()
                .into_iter()
                .map(|r| (r.name, r.counts.count))
                .collect();
            v.sort();
            v
        };
        for resolution in [QUARTER, HOUR, SIX_HOURS, DAY] {
            assert_eq!(
                counts(&h, resolution),
                [(String::new(), 3), ("GET /".to_string(), 3)],
                "{resolution}"
            );
        }
        drop(h);
        let mut h = History::open(&dir, 7, "1.1", last + 40, empty()).unwrap();
        h.write_minute(
            last,
            vec![
                (KIND_ROUTE, "GET /".into(), cumulative(1, 2, |_| 7)),
                (KIND_ROUTE, "GET /feed.xml".into(), cumulative(1, 5, |_| 30)),
            ],
            0,
            0,
        )
        .unwrap();
        let minutes = h
            .reader()
            .rows_between(MINUTE, day, day + DAY, Some(KIND_ALL))
            .unwrap();
        let mut merged = empty();
        for m in &minutes {
            merged.add(m.latency.to_histogram()).unwrap();
        }
        for resolution in [QUARTER, HOUR, SIX_HOURS, DAY] {
            assert_eq!(
                counts(&h, resolution),
                [
                    (String::new(), 10),
                    ("GET /".to_string(), 5),
                    ("GET /feed.xml".to_string(), 5)
                ],
                "{resolution}"
            );
            let all = h
                .reader()
                .rows_between(resolution, day, day + DAY, Some(KIND_ALL))
                .unwrap();
            assert_eq!(all.len(), 1);
            assert_eq!(all[0].latency.to_histogram(), merged, "{resolution}");
        }
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
