//! Opt-in history (`STARPUNK_PERF_HISTORY_DAYS`): aggregates only, in a
//! SQLite file of its own (`perf-history.sqlite3` in the data directory).
//!
//! Once a minute the ticker writes, in one transaction, a row per route and
//! per query pattern that saw traffic in that minute (counts, 5xx and 4xx,
//! bytes, rows, the exact sum of latencies and the latency distribution,
//! its nonzero counters in the compact form of [`codec`]), plus a row for
//! all requests with the slow statements and RSS. Minute rows are kept 25
//! hours; each complete hour is rolled up into hour rows (distributions
//! merged, so percentiles over any range are exact merges), kept for the
//! configured days; quarter-hour and six-hour rows are rolled up the same
//! way, so a long range reads few rows (see [`rollup`]). Each start
//! records the version. Nothing here runs on the request path, and a
//! failing history file never stops the blog: the error is kept and shown.
//!
//! The file's tables, and the upgrade of a file written before issue 20,
//! are [`schema`]'s; the roll-ups and pruning [`rollup`]'s; reading is
//! [`read`]'s, which rows a range reads [`plan`]'s.

use std::collections::HashMap;
use std::path::Path;

use hdrhistogram::Histogram;
use rusqlite::{params, Connection};
use starpunk_perf::HistogramLayout;

mod accumulator;
pub mod codec;
mod plan;
mod read;
mod rollup;
pub mod schema;

pub use accumulator::Accumulator;
pub use codec::{Damaged, Fields, Latency, Layouts};
pub use plan::coarsest_within;
pub use read::{Head, Piece, ReadOnly, Reader, Scan, SeriesName};
pub use rollup::HOURS_KEPT;

/// Row kinds.
pub const KIND_ALL: i64 = 0;
/// A route's row.
pub const KIND_ROUTE: i64 = 1;
/// A query pattern's row.
pub const KIND_PATTERN: i64 = 2;

/// Seconds per minute row.
pub const MINUTE: i64 = 60;
/// Seconds per quarter-hour row.
pub const QUARTER: i64 = 900;
/// Seconds per hour row.
pub const HOUR: i64 = 3600;
/// Seconds per six-hour row (on the clock: 00:00, 06:00, 12:00, 18:00 UTC).
pub const SIX_HOURS: i64 = 21_600;
/// Seconds per day row (UTC days).
pub const DAY: i64 = 86_400;
/// How long minute rows are kept (a day, and an hour for the roll-up).
const MINUTES_KEPT: i64 = 25 * HOUR;

/// The file's name in the data directory.
pub const FILE: &str = "perf-history.sqlite3";

/// The counts a series adds up: of a minute, an hour, or since start.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    /// Events.
    pub count: u64,
    /// Sum of latencies, ns.
    pub sum_ns: u64,
    /// 5xx responses.
    pub errors_5xx: u64,
    /// 4xx responses.
    pub errors_4xx: u64,
    /// Response bytes.
    pub bytes: u64,
    /// Rows returned or changed.
    pub rows: u64,
}

impl Counts {
    /// Adds `other` (saturating; the latency sum wraps like the series').
    pub fn add(&mut self, other: &Counts) {
        self.count = self.count.saturating_add(other.count);
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
        self.errors_5xx = self.errors_5xx.saturating_add(other.errors_5xx);
        self.errors_4xx = self.errors_4xx.saturating_add(other.errors_4xx);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.rows = self.rows.saturating_add(other.rows);
    }

    /// The change from `before` to these cumulative counts.
    pub fn since(&self, before: &Counts) -> Counts {
        Counts {
            count: self.count.saturating_sub(before.count),
            sum_ns: self.sum_ns.wrapping_sub(before.sum_ns),
            errors_5xx: self.errors_5xx.saturating_sub(before.errors_5xx),
            errors_4xx: self.errors_4xx.saturating_sub(before.errors_4xx),
            bytes: self.bytes.saturating_sub(before.bytes),
            rows: self.rows.saturating_sub(before.rows),
        }
    }
}

/// Cumulative figures of one series (since start or the last clear).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cumulative {
    /// The counts.
    pub counts: Counts,
    /// Latency buckets `(value ns, count)`, ascending.
    pub buckets: Vec<(u64, u64)>,
}

/// One stored row.
#[derive(Clone, Debug)]
pub struct Row {
    /// Unix seconds at the row's start.
    pub start: i64,
    /// [`MINUTE`], [`QUARTER`], [`HOUR`], [`SIX_HOURS`] or [`DAY`].
    pub resolution: i64,
    /// [`KIND_ALL`], [`KIND_ROUTE`] or [`KIND_PATTERN`].
    pub kind: i64,
    /// Route template or pattern; empty for [`KIND_ALL`].
    pub name: String,
    /// The counts.
    pub counts: Counts,
    /// Slow statements ([`KIND_ALL`] only).
    pub slow: u64,
    /// Resident memory at the row's end, bytes ([`KIND_ALL`] only; 0:
    /// unknown).
    pub rss: u64,
    /// The latency distribution.
    pub latency: Latency,
}

/// The history file and what the last minute's write left behind.
pub struct History {
    conn: Connection,
    days: u32,
    /// Cumulative figures at the last write, per (kind, name).
    last: HashMap<(i64, String), Cumulative>,
    last_slow: u64,
    /// The series' layout.
    layout: HistogramLayout,
    /// The layouts the file knows (ids cached).
    layouts: Layouts,
    /// Series ids by (kind, name), as committed.
    series: HashMap<(i64, String), i64>,
    /// The next quarter-hour boundary, when the roll-ups run again.
    next_roll_up: i64,
    /// The next hour boundary, when pruning runs again.
    next_prune: i64,
    /// Whether the owner's requests are left out of the all-requests rows.
    own: crate::monitoring::own::OwnTraffic,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl History {
    /// Opens (or creates) the history in `dir`, upgrades a file of the
    /// version before (see [`schema`]), records this start of `version` at
    /// `now` and prunes what is past retention. `empty` gives the
    /// distributions' layout.
    pub fn open(
        dir: &Path,
        days: u32,
        version: &str,
        now: i64,
        empty: Histogram<u64>,
    ) -> Result<History, String> {
        let layout = codec::layout_of(&empty)
            .ok_or_else(|| "the latency layout is not one hdrhistogram makes".to_string())?;
        let path = dir.join(FILE);
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        }
        let mut conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_millis(500))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // Deleted rows (a logout's clear) are overwritten, not left in free
        // pages.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(err)?;
        // A damaged file is refused before anything is written to it.
        let integrity: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(err)?;
        if integrity != "ok" {
            return Err(format!("{} is damaged ({integrity})", path.display()));
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS starts (
                 at INTEGER NOT NULL,
                 version TEXT NOT NULL
             );",
        )
        .map_err(err)?;
        if let Some(up) = schema::open(&mut conn)? {
            crate::elog!(
                "starpunk: performance history: upgraded {} rows to the compact form{}",
                up.rows,
                if up.damaged > 0 {
                    format!(
                        "; {} rows with an unreadable histogram kept as they were in damaged_rows",
                        up.damaged
                    )
                } else {
                    String::new()
                }
            );
        }
        crate::monitoring::ticker::slow_history::create(&conn).map_err(err)?;
        crate::monitoring::ticker::alert_history::create(&conn).map_err(err)?;
        conn.execute(
            "INSERT INTO starts (at, version) VALUES (?1, ?2)",
            params![now, version],
        )
        .map_err(err)?;
        let mut layouts = schema::layouts(&conn).map_err(err)?;
        schema::layout_id(&conn, &mut layouts, &layout).map_err(err)?;
        let mut h = History {
            conn,
            days,
            last: HashMap::new(),
            last_slow: 0,
            layout,
            layouts,
            series: HashMap::new(),
            next_roll_up: 0,
            next_prune: 0,
            own: crate::monitoring::own::OwnTraffic::Include,
        };
        h.roll_up_and_prune(now)?;
        // The write-ahead log those roll-ups grew (all of a file's
        // quarter-hours and six hours, the first time a file of version 2
        // opens) folded in and cut back; a failure only leaves it longer.
        if let Err(e) = h
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            crate::elog!("starpunk: performance history: write-ahead log not cut back ({e})");
        }
        Ok(h)
    }

    /// Writes the minute that starts at `start`: per series, the change
    /// since the last write (a series whose counts fell was cleared: its
    /// figures count from zero); `slow` and `rss` for all requests. One
    /// transaction: a crash loses at most this minute.
    pub fn write_minute(
        &mut self,
        start: i64,
        series: Vec<(i64, String, Cumulative)>,
        slow_total: u64,
        rss: u64,
    ) -> Result<(), String> {
        let mut all = Latency::empty(self.layout);
        let mut total = Cumulative::default();
        let mut rows = Vec::new();
        // What this minute leaves behind, kept only once it is committed:
        // a failed write is retried with the next minute's figures.
        let mut next_last = Vec::new();
        for (kind, name, now) in series {
            let before = self.last.get(&(kind, name.clone()));
            let cleared = before.is_some_and(|b| now.counts.count < b.counts.count);
            let zero = Cumulative::default();
            let b = if cleared {
                &zero
            } else {
                before.unwrap_or(&zero)
            };
            let delta = Cumulative {
                counts: now.counts.since(&b.counts),
                buckets: difference(&b.buckets, &now.buckets),
            };
            next_last.push(((kind, name.clone()), now));
            if delta.counts.count == 0 {
                continue;
            }
            let latency = Latency::from_values(self.layout, &delta.buckets);
            if kind == KIND_ROUTE && !self.own.sets_apart(&name) {
                all.add(&latency);
                // Rows are the patterns' figure, not the requests'.
                total.counts.add(&Counts {
                    rows: 0,
                    ..delta.counts
                });
            }
            rows.push((kind, name, delta, latency));
        }
        let slow = if slow_total < self.last_slow {
            slow_total
        } else {
            slow_total - self.last_slow
        };
        let mut slow_extra: u64 = 0;
        rows.push((KIND_ALL, String::new(), total, all));
        // A minute already written (by an earlier run of the blog in the
        // same minute): add to it rather than replace it.
        let existing = self
            .reader()
            .rows_between(MINUTE, start, start + MINUTE, None)?;
        for old in existing {
            if let Some((_, _, d, latency)) = rows
                .iter_mut()
                .find(|(k, n, _, _)| *k == old.kind && *n == old.name)
            {
                d.counts.add(&old.counts);
                latency.add(&old.latency);
                if old.kind == KIND_ALL {
                    slow_extra = slow_extra.saturating_add(old.slow);
                }
            }
        }
        // A minute written into an hour already rolled up (the last minute
        // of an hour, written once by a run that stopped in it, which
        // rolled the hour up, and again by the next run): that hour's rows
        // are deleted in the same transaction, and its six hours' and day's
        // too, so
        // views read its minutes until the roll-ups, due at once, make them
        // again (and retry, as for any period without rows, if they fail).
        // The same for its quarter-hour. Not when some of the period's
        // minutes are pruned already (a clock set back a day): its row then
        // holds more than its minutes, and stays.
        let hour = start - start.rem_euclid(HOUR);
        let quarter = start - start.rem_euclid(QUARTER);
        // The period's all-requests row against its minutes': equal when
        // all of them are still kept.
        let all = match self.series.get(&(KIND_ALL, String::new())) {
            Some(id) => Some(*id),
            None => self.reader().all_series()?,
        };
        let rolled = |level: i64, at: i64| -> Result<bool, String> {
            let (rolled, minutes): (Option<i64>, i64) = self
                .conn
                .prepare_cached(
                    "SELECT (SELECT count FROM aggregates
                             WHERE resolution = ?3 AND series = ?2 AND start = ?1),
                            (SELECT coalesce(sum(count), 0) FROM aggregates
                             WHERE resolution = 60 AND series = ?2
                             AND start >= ?1 AND start < ?1 + ?3)",
                )
                .and_then(|mut q| {
                    q.query_row(params![at, all, level], |r| Ok((r.get(0)?, r.get(1)?)))
                })
                .map_err(err)?;
            Ok(rolled == Some(minutes))
        };
        let reroll = rolled(HOUR, hour)?;
        let reroll_quarter = rolled(QUARTER, quarter)?;
        let tx = self.conn.transaction().map_err(err)?;
        if reroll {
            tx.execute(
                "DELETE FROM aggregates WHERE (resolution = 3600 AND start = ?1)
                 OR (resolution = 21600 AND start = ?2) OR (resolution = 86400 AND start = ?3)",
                params![
                    hour,
                    hour - hour.rem_euclid(SIX_HOURS),
                    hour - hour.rem_euclid(DAY)
                ],
            )
            .map_err(err)?;
        }
        if reroll_quarter {
            tx.execute(
                "DELETE FROM aggregates WHERE resolution = 900 AND start = ?1",
                [quarter],
            )
            .map_err(err)?;
        }
        let mut new_series = Vec::new();
        for (kind, name, d, latency) in rows {
            let (slow, rss) = if kind == KIND_ALL {
                (slow + slow_extra, rss)
            } else {
                (0, 0)
            };
            insert(
                &tx,
                &mut self.layouts,
                &self.series,
                &mut new_series,
                &Row {
                    start,
                    resolution: MINUTE,
                    kind,
                    name,
                    counts: d.counts,
                    slow,
                    rss,
                    latency,
                },
            )?;
        }
        tx.commit().map_err(err)?;
        self.series.extend(new_series);
        self.last.extend(next_last);
        self.last_slow = slow_total;
        if reroll || reroll_quarter {
            self.next_roll_up = 0;
        }
        if start + MINUTE >= self.next_roll_up {
            self.roll_up_and_prune(start + MINUTE)?;
        }
        Ok(())
    }

    /// Its reader.
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.conn)
    }

    /// The all-requests rows leave the owner's own requests out when
    /// `own` is `apart` (the overview's figures, as live).
    pub fn with_own_traffic(mut self, own: crate::monitoring::own::OwnTraffic) -> History {
        self.own = own;
        self
    }

    /// Keeps the slowest of `requests` (each with its start, Unix
    /// seconds) per route and hour.
    pub fn write_slow_requests(
        &self,
        requests: &[(i64, crate::monitoring::evidence::WorstRequest)],
    ) -> Result<(), String> {
        crate::monitoring::ticker::slow_history::write(&self.conn, requests).map_err(err)
    }

    /// Appends alert firings and resolutions.
    pub fn write_alert_events(
        &self,
        events: &[crate::monitoring::ticker::alerts::AlertEvent],
    ) -> Result<(), String> {
        crate::monitoring::ticker::alert_history::write(&self.conn, events).map_err(err)
    }

    /// Deletes every row (logout with `STARPUNK_PERF_CLEAR_ON_LOGOUT`);
    /// the starts stay (a version and a time are not traffic).
    pub fn clear(&mut self) -> Result<(), String> {
        self.conn
            .execute_batch("DELETE FROM aggregates; DELETE FROM series;")
            .map_err(err)?;
        // A file upgraded with unreadable rows kept them aside: traffic too.
        let aside: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'damaged_rows')",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if aside {
            self.conn
                .execute("DELETE FROM damaged_rows", [])
                .map_err(err)?;
        }
        crate::monitoring::ticker::slow_history::clear(&self.conn).map_err(err)?;
        crate::monitoring::ticker::alert_history::clear(&self.conn).map_err(err)?;
        // And out of the write-ahead log.
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(err)?;
        self.series.clear();
        self.last.clear();
        self.last_slow = 0;
        Ok(())
    }

    /// Bytes of the file and its write-ahead log.
    pub fn bytes(dir: &Path) -> u64 {
        let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        size(dir.join(FILE)) + size(dir.join(format!("{FILE}-wal")))
    }
}

/// Adds `m`'s figures into `r` (same kind and name).
pub fn add_row(r: &mut Row, m: &Row) {
    r.counts.add(&m.counts);
    r.slow = r.slow.saturating_add(m.slow);
    // RSS: the latest known.
    if m.rss > 0 && m.start >= r.start {
        r.rss = m.rss;
    }
    r.latency.add(&m.latency);
}

/// Stores `r` (replacing a row of the same resolution, start and series).
/// Series ids made in this transaction go to `new_series`, to be cached
/// once it commits.
fn insert(
    conn: &Connection,
    layouts: &mut Layouts,
    known: &HashMap<(i64, String), i64>,
    new_series: &mut Vec<((i64, String), i64)>,
    r: &Row,
) -> Result<(), String> {
    let key = (r.kind, r.name.clone());
    let series = match known.get(&key).copied().or_else(|| {
        new_series
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, id)| *id)
    }) {
        Some(id) => id,
        None => {
            let id = schema::series_id(conn, r.kind, &r.name).map_err(err)?;
            new_series.push((key, id));
            id
        }
    };
    let layout_id = schema::layout_id(conn, layouts, &r.latency.layout()).map_err(err)?;
    let c = &r.counts;
    let mut figures = Vec::new();
    codec::Fields {
        sum_ns: c.sum_ns,
        errors_5xx: c.errors_5xx,
        errors_4xx: c.errors_4xx,
        bytes: c.bytes,
        rows: c.rows,
        slow: r.slow,
        rss: r.rss,
    }
    .encode_into(&mut figures);
    r.latency.encode_into(&mut figures, layout_id);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO aggregates (resolution, series, start, count, figures)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut q| {
        q.execute(params![
            r.resolution,
            series,
            r.start,
            c.count as i64,
            figures
        ])
    })
    .map(|_| ())
    .map_err(err)
}

/// `after - before` of ascending cumulative buckets (counts that did not
/// grow are left out).
pub(crate) fn difference(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut b = before.iter().peekable();
    for &(v, n) in after {
        while b.peek().is_some_and(|&&(bv, _)| bv < v) {
            b.next();
        }
        let old = match b.peek() {
            Some(&&(bv, bn)) if bv == v => bn,
            _ => 0,
        };
        if n > old {
            out.push((v, n - old));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn empty() -> Histogram<u64> {
        Histogram::new_with_bounds(1_000, 30_000_000_000, 2).unwrap()
    }

    /// An empty directory of this test process's own.
    pub(super) fn fresh_dir(tag: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("starpunk-history-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Cumulative figures of `n` requests per minute for `minutes`
    /// minutes, latency `ms(minute)` each.
    pub(super) fn cumulative(minutes: u64, n: u64, ms: impl Fn(u64) -> u64) -> Cumulative {
        let mut h = empty();
        let mut c = Cumulative::default();
        for m in 0..minutes {
            h.record_n(ms(m) * 1_000_000, n).unwrap();
            c.counts.count += n;
            c.counts.sum_ns += ms(m) * 1_000_000 * n;
            c.counts.bytes += 100 * n;
        }
        c.counts.errors_5xx = minutes;
        c.buckets = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        c
    }

    /// The last minute of an hour written twice: by a run that stopped in
    /// it (SIGTERM writes the minute in progress, which rolls the hour up)
    /// and by the next run's first close. The hour row must hold both, or
    /// every view reading hour rows loses the second run's requests (a CI
    /// run at 08:59:00 saw it as a route missing from the 1-hour view).
    #[test]
    fn a_minute_added_to_after_its_hour_rolled_up_is_rolled_up_again() {
        let dir = fresh_dir("reroll");
        let t0 = 1_800_000_000 - 1_800_000_000 % HOUR; // an hour boundary
        let last = t0 + HOUR - MINUTE; // the hour's last minute
        let mut h = History::open(&dir, 7, "1.0", last + 20, empty()).unwrap();
        // The first run: 3 requests, then SIGTERM in the last minute.
        h.write_minute(
            last,
            vec![(KIND_ROUTE, "GET /".into(), cumulative(1, 3, |_| 1))],
            0,
            0,
        )
        .unwrap();
        drop(h);
        let hour_count = |h: &History| {
            h.reader()
                .rows_between(HOUR, t0, t0 + HOUR, Some(KIND_ROUTE))
                .unwrap()
                .iter()
                .map(|r| (r.name.clone(), r.counts.count))
                .collect::<Vec<_>>()
        };
        // The next run, in the same minute: 5 requests on another route
        // and 2 more on the first, written by its first close.
        let mut h = History::open(&dir, 7, "1.1", last + 40, empty()).unwrap();
        h.write_minute(
            last,
            vec![
                (KIND_ROUTE, "GET /".into(), cumulative(1, 2, |_| 1)),
                (KIND_ROUTE, "GET /feed.xml".into(), cumulative(1, 5, |_| 1)),
            ],
            0,
            0,
        )
        .unwrap();
        let mut hours = hour_count(&h);
        hours.sort();
        assert_eq!(
            hours,
            [("GET /".to_string(), 5), ("GET /feed.xml".to_string(), 5)]
        );
        // A 1-hour view just after: the hour row, and all 10 requests.
        let coarse = h
            .reader()
            .rows_for_range_coarse(last - HOUR + MINUTE, last + 2 * MINUTE, Some(KIND_ROUTE))
            .unwrap();
        assert_eq!(coarse.iter().map(|r| r.counts.count).sum::<u64>(), 10);
        let all = h
            .reader()
            .rows_between(HOUR, t0, t0 + HOUR, Some(KIND_ALL))
            .unwrap();
        assert_eq!(all.iter().map(|r| r.counts.count).sum::<u64>(), 10);
        // An hour whose minutes are pruned (a clock set back a day): its
        // hour row holds more than its minutes and is kept as it is.
        h.conn
            .execute("DELETE FROM aggregates WHERE resolution = 60", [])
            .unwrap();
        h.write_minute(
            last,
            vec![(KIND_ROUTE, "GET /".into(), cumulative(1, 3, |_| 1))],
            0,
            0,
        )
        .unwrap();
        let all = h
            .reader()
            .rows_between(HOUR, t0, t0 + HOUR, Some(KIND_ALL))
            .unwrap();
        assert_eq!(all.iter().map(|r| r.counts.count).sum::<u64>(), 10);
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn minutes_roll_up_into_exact_hours_and_retention_prunes() {
        let dir = fresh_dir("unit");
        let t0 = 1_800_000_000 - 1_800_000_000 % HOUR; // an hour boundary
        let mut h = History::open(&dir, 1, "1.0", t0, empty()).unwrap();
        // Three hours, 10 requests a minute on one route: 1 ms in the first
        // hour, 100 ms in the second, 10 ms in the third; one 5xx a minute.
        let ms = |m: u64| match m / 60 {
            0 => 1,
            1 => 100,
            _ => 10,
        };
        for m in 1..=180u64 {
            let c = cumulative(m, 10, ms);
            h.write_minute(
                t0 + (m as i64 - 1) * MINUTE,
                vec![(KIND_ROUTE, "GET /".into(), c)],
                0,
                0,
            )
            .unwrap();
        }
        let hours = h
            .reader()
            .rows_between(HOUR, t0, t0 + 3 * HOUR, Some(KIND_ROUTE))
            .unwrap();
        // All three hours are complete: each rolled up.
        let counts: Vec<u64> = hours.iter().map(|r| r.counts.count).collect();
        assert_eq!(counts, [600, 600, 600]);
        assert_eq!(
            (hours[0].counts.errors_5xx, hours[1].counts.errors_5xx),
            (60, 60)
        );
        assert_eq!(hours[1].counts.sum_ns, 600 * 100_000_000);
        // The merged distribution of both hours: half 1 ms, half 100 ms.
        let mut both = hours[0].latency.to_histogram();
        both.add(hours[1].latency.to_histogram()).unwrap();
        assert!((both.value_at_quantile(0.25) as f64 / 1e6 - 1.0).abs() < 0.01);
        assert!((both.value_at_quantile(0.75) as f64 / 1e6 - 100.0).abs() < 1.0);
        // Ranges starting inside the minute rows read minutes; ranges
        // starting before them read hours: either way no request twice.
        for from in [t0, t0 - 5 * HOUR] {
            let all = h
                .reader()
                .rows_for_range(from, t0 + 3 * HOUR, Some(KIND_ROUTE))
                .unwrap();
            assert_eq!(
                all.iter().map(|r| r.counts.count).sum::<u64>(),
                1_800,
                "from {from}"
            );
            let coarse = h
                .reader()
                .rows_for_range_coarse(from, t0 + 3 * HOUR, Some(KIND_ROUTE))
                .unwrap();
            assert_eq!(coarse.iter().map(|r| r.counts.count).sum::<u64>(), 1_800);
            assert_eq!(coarse.len(), 3, "three hour rows, no minutes");
        }
        let count = |from, to| {
            h.reader()
                .rows_for_range_coarse(from, to, Some(KIND_ROUTE))
                .unwrap()
                .iter()
                .map(|r| r.counts.count)
                .sum::<u64>()
        };
        // A range starting mid-hour: its minutes, then whole hours.
        assert_eq!(count(t0 + 30 * MINUTE, t0 + 3 * HOUR), 1_500);
        // Two runs split by a deploy in the middle of an hour: each counts
        // its own requests, none twice.
        let deploy = t0 + 90 * MINUTE;
        assert_eq!(
            (count(t0, deploy), count(deploy, t0 + 3 * HOUR)),
            (900, 900)
        );
        assert_eq!(count(t0 + 10 * MINUTE, t0 + 50 * MINUTE), 400);
        // The all-requests row follows the routes.
        let totals = h
            .reader()
            .rows_between(MINUTE, t0, t0 + 3 * HOUR, Some(KIND_ALL))
            .unwrap();
        assert_eq!(totals.iter().map(|r| r.counts.count).sum::<u64>(), 1_800);
        // Two days later (retention 1 day): everything is pruned.
        let later = t0 + 2 * 86_400 + 3 * HOUR;
        let c = cumulative(181, 10, ms);
        h.write_minute(later, vec![(KIND_ROUTE, "GET /".into(), c)], 0, 0)
            .unwrap();
        let left: usize = [MINUTE, QUARTER, HOUR, SIX_HOURS, DAY]
            .into_iter()
            .map(|r| h.reader().rows_between(r, 0, later, None).unwrap().len())
            .sum();
        assert_eq!(left, 0, "past retention");
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_cleared_series_counts_from_zero() {
        let dir = fresh_dir("clear");
        let mut h = History::open(&dir, 1, "1.0", 3_600, empty()).unwrap();
        h.write_minute(
            3_600,
            vec![(KIND_ROUTE, "GET /".into(), cumulative(5, 10, |_| 1))],
            0,
            0,
        )
        .unwrap();
        // After a clear the cumulative counts restart lower.
        h.write_minute(
            3_660,
            vec![(KIND_ROUTE, "GET /".into(), cumulative(1, 3, |_| 1))],
            0,
            0,
        )
        .unwrap();
        let rows = h
            .reader()
            .rows_between(MINUTE, 0, 10_000, Some(KIND_ROUTE))
            .unwrap();
        assert_eq!(
            rows.iter().map(|r| r.counts.count).collect::<Vec<_>>(),
            [50, 3]
        );
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
