//! Reading the history: the writer's own connection or a read-only one of
//! a dashboard view (a long view never holds up the ticker's writes; WAL
//! lets both run at once).
//!
//! Two ways to read. [`Reader::scan`] hands each row's figures and its
//! stored latency blob to the caller, which adds the blob straight into an
//! [`Accumulator`](super::Accumulator) per series: no histogram and no
//! allocation per row (the range views). [`Reader::rows_between`] and the
//! `rows_for_range*` functions return decoded [`Row`]s (the writer's
//! roll-up, tests). Both read the same [`Piece`]s (which pieces a range
//! reads is [`super::plan`]'s), so both see the same rows. A row whose blob cannot be decoded is skipped and counted
//! ([`Reader::damaged`]), never a panic.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection};

use super::*;

/// Reads the history through a connection: the writer's own, or a
/// read-only one of a dashboard view (so a long view never holds up the
/// ticker's writes; WAL lets both run at once).
pub struct Reader<'a> {
    pub(super) conn: &'a Connection,
    /// Rows skipped because their blob could not be decoded.
    damaged: Cell<u64>,
    /// Where each resolution's rows lie, once read (see [`super::plan`]).
    pub(super) bounds: Cell<Option<super::plan::Bounds>>,
}

/// How much of the history file a view's connection maps (more than the
/// file at 365 days of a busy blog).
const MMAP_BYTES: i64 = 256 << 20;

/// Connections of views that ended, kept for the next ones (at most
/// [`KEPT_CONNECTIONS`]), with the file they were opened on.
static KEPT: std::sync::Mutex<Vec<(FileId, Connection)>> = std::sync::Mutex::new(Vec::new());

/// Two views at once keep two connections; more are closed.
const KEPT_CONNECTIONS: usize = 2;

/// A history file: its path and inode (a file deleted and made again at
/// the same path is another file).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileId {
    path: std::path::PathBuf,
    inode: u64,
}

/// A read-only connection to the history file. A view's connection is
/// kept when it ends, for the next view of the same file: its compiled
/// statements are reused (compiling them was a tenth of a view's time),
/// and pages are mapped rather than copied in by a read each.
pub struct ReadOnly {
    conn: Option<Connection>,
    file: FileId,
}

impl ReadOnly {
    /// Opens `dir`'s history for reading (or takes the connection a view
    /// before left of it).
    pub fn open(dir: &Path) -> Result<ReadOnly, String> {
        use std::os::unix::fs::MetadataExt;
        let path = dir.join(FILE);
        let inode = std::fs::metadata(&path).map_err(err)?.ino();
        let file = FileId { path, inode };
        let kept = {
            let mut kept = KEPT
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            kept.iter()
                .position(|(f, _)| *f == file)
                .map(|i| kept.swap_remove(i).1)
        };
        let conn = match kept {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &file.path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(err)?;
                conn.busy_timeout(std::time::Duration::from_millis(500))
                    .map_err(err)?;
                // The file is only ever truncated by the writer's VACUUM
                // after an upgrade, at open, before any view.
                conn.pragma_update(None, "mmap_size", MMAP_BYTES)
                    .map_err(err)?;
                conn
            }
        };
        Ok(ReadOnly {
            conn: Some(conn),
            file,
        })
    }

    /// Its reader.
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(
            self.conn
                .as_ref()
                .expect("a ReadOnly holds its connection until dropped"),
        )
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // Not in a transaction (every statement of a view has ended): the
        // next view reads the file as it is then.
        if !conn.is_autocommit() {
            return;
        }
        let mut kept = KEPT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() < KEPT_CONNECTIONS {
            kept.push((self.file.clone(), conn));
        }
    }
}

/// A part of a range read at one resolution: the rows of `resolution`
/// with `from <= start < to` (see [`super::plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// [`MINUTE`], [`QUARTER`], [`HOUR`] or [`SIX_HOURS`].
    pub resolution: i64,
    /// Unix seconds.
    pub from: i64,
    /// Unix seconds.
    pub to: i64,
}

/// A stored row's figures but its distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Head {
    /// Unix seconds at the row's start.
    pub start: i64,
    /// [`MINUTE`], [`QUARTER`], [`HOUR`] or [`SIX_HOURS`].
    pub resolution: i64,
    /// The series' id (see [`Reader::series`]).
    pub series: i64,
    /// The counts.
    pub counts: Counts,
    /// Slow statements ([`KIND_ALL`] only).
    pub slow: u64,
    /// Resident memory at the row's end ([`KIND_ALL`] only; 0: unknown).
    pub rss: u64,
}

/// A series' kind and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesName {
    /// [`KIND_ALL`], [`KIND_ROUTE`] or [`KIND_PATTERN`].
    pub kind: i64,
    /// Route template or pattern; empty for [`KIND_ALL`].
    pub name: String,
}

/// Which series a [`Reader::scan`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// One series, rows in the order of their start.
    Series(i64),
    /// Every series of one kind (any order).
    Kind(i64),
    /// Every series of either kind (any order).
    Kinds(i64, i64),
    /// Every series (any order).
    All,
}

/// The oldest minute row's start, found per series (the key is series
/// first: one index seek each, not a scan of every minute row).
pub(super) const OLDEST_MINUTE: &str =
    "(SELECT min(m) FROM (SELECT (SELECT min(start) FROM aggregates
     WHERE resolution = 60 AND series = s.id) AS m FROM series s))";

/// A stored integer as a count: a negative one is a damaged row.
fn count(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(i)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(i, v))
}

impl<'a> Reader<'a> {
    pub(super) fn new(conn: &'a Connection) -> Reader<'a> {
        Reader {
            conn,
            damaged: Cell::new(0),
            bounds: Cell::new(None),
        }
    }

    /// Rows skipped so far because their latency blob or a count could
    /// not be read.
    pub fn damaged(&self) -> u64 {
        self.damaged.get()
    }

    fn skip(&self) {
        self.damaged.set(self.damaged.get().saturating_add(1));
    }

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

    /// The layouts the file's blobs name.
    pub fn layouts(&self) -> Result<Layouts, String> {
        schema::layouts(self.conn).map_err(err)
    }

    /// Every series by id.
    pub fn series(&self) -> Result<HashMap<i64, SeriesName>, String> {
        let mut q = self
            .conn
            .prepare_cached("SELECT id, kind, name FROM series")
            .map_err(err)?;
        let rows = q
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    SeriesName {
                        kind: r.get(1)?,
                        name: r.get(2)?,
                    },
                ))
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    /// Hands every row of `piece` that `which` selects to `f`, with its
    /// stored latency blob. A row whose counts cannot be read is skipped
    /// and counted in [`damaged`](Self::damaged).
    pub fn scan(
        &self,
        piece: Piece,
        which: Scan,
        f: &mut dyn FnMut(&Head, &[u8]),
    ) -> Result<(), String> {
        const COLUMNS: &str = "SELECT series, start, count, figures FROM aggregates
             WHERE resolution = ?1 AND start >= ?2 AND start < ?3";
        let (sql, a, b) = match which {
            Scan::Series(id) => (
                format!("{COLUMNS} AND series = ?4 AND ?5 IS NULL ORDER BY start"),
                Some(id),
                None,
            ),
            Scan::Kind(k) => (
                format!(
                    "{COLUMNS} AND series IN (SELECT id FROM series WHERE kind = ?4)
                     AND ?5 IS NULL"
                ),
                Some(k),
                None,
            ),
            Scan::Kinds(k, l) => (
                format!("{COLUMNS} AND series IN (SELECT id FROM series WHERE kind IN (?4, ?5))"),
                Some(k),
                Some(l),
            ),
            // Every series, one seek each (the key is series first).
            Scan::All => (
                format!(
                    "{COLUMNS} AND series IN (SELECT id FROM series) AND ?4 IS NULL AND ?5 IS NULL"
                ),
                None,
                None,
            ),
        };
        let mut q = self.conn.prepare_cached(&sql).map_err(err)?;
        let mut rows = q
            .query(params![piece.resolution, piece.from, piece.to, a, b])
            .map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            let row = (|| {
                let blob = r.get_ref(3).ok()?.as_blob().ok()?;
                let (fields, latency) = Fields::decode(blob).ok()?;
                let head = Head {
                    series: r.get(0).ok()?,
                    start: r.get(1).ok()?,
                    resolution: piece.resolution,
                    counts: Counts {
                        count: count(r, 2).ok()?,
                        sum_ns: fields.sum_ns,
                        errors_5xx: fields.errors_5xx,
                        errors_4xx: fields.errors_4xx,
                        bytes: fields.bytes,
                        rows: fields.rows,
                    },
                    slow: fields.slow,
                    rss: fields.rss,
                };
                Some((head, latency))
            })();
            match row {
                Some((head, latency)) => f(&head, latency),
                None => self.skip(),
            }
        }
        Ok(())
    }

    /// How many rows of the series of `kind` lie in `piece` (no blob
    /// read).
    pub fn count_rows(&self, piece: Piece, kind: i64) -> Result<i64, String> {
        self.conn
            .prepare_cached(
                "SELECT count(*) FROM aggregates
                 WHERE resolution = ?1 AND series IN (SELECT id FROM series WHERE kind = ?2)
                 AND start >= ?3 AND start < ?4",
            )
            .and_then(|mut q| {
                q.query_row(params![piece.resolution, kind, piece.from, piece.to], |r| {
                    r.get(0)
                })
            })
            .map_err(err)
    }

    /// Rows of `resolution` with `from <= start < to`, of one kind or all,
    /// in the order of their start. A damaged row is skipped and counted.
    pub fn rows_between(
        &self,
        resolution: i64,
        from: i64,
        to: i64,
        kind: Option<i64>,
    ) -> Result<Vec<Row>, String> {
        let names = self.series()?;
        let layouts = self.layouts()?;
        let mut out = Vec::new();
        let which = kind.map_or(Scan::All, Scan::Kind);
        self.scan(
            Piece {
                resolution,
                from,
                to,
            },
            which,
            &mut |h, blob| {
                let (Some(name), Ok(latency)) =
                    (names.get(&h.series), Latency::decode(blob, &layouts))
                else {
                    self.skip();
                    return;
                };
                out.push(Row {
                    start: h.start,
                    resolution,
                    kind: name.kind,
                    name: name.name.clone(),
                    counts: h.counts,
                    slow: h.slow,
                    rss: h.rss,
                    latency,
                });
            },
        )?;
        out.sort_by_key(|r| r.start);
        Ok(out)
    }

    /// The id of the all-requests series (`None`: no row written yet).
    pub fn all_series(&self) -> Result<Option<i64>, String> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                "SELECT id FROM series WHERE kind = ?1 AND name = ''",
                [KIND_ALL],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)
    }

    /// The RSS the all-requests rows know (`(Unix seconds at the row's
    /// end, bytes)`, oldest first) for rows that end in `from..=to`, at
    /// the finest resolution kept: minute rows, and hour rows for the
    /// hours before the oldest minute row. No histogram is read.
    pub fn rss_samples(&self, from: i64, to: i64) -> Result<Vec<(i64, u64)>, String> {
        let Some(all) = self.all_series()? else {
            return Ok(Vec::new());
        };
        // Hour rows end where minute rows begin: the hours in order, then
        // the minutes in order, each one run of the key.
        let oldest = self.bounds()?.oldest_minute;
        let hours_to = oldest.map_or(to, |m| m.min(to));
        let mut samples = Vec::new();
        for (resolution, end_to) in [(HOUR, hours_to), (MINUTE, to)] {
            let mut q = self
                .conn
                .prepare_cached(
                    "SELECT start, figures FROM aggregates
                     WHERE resolution = ?1 AND series = ?2 AND start > ?3 AND start <= ?4
                     ORDER BY start",
                )
                .map_err(err)?;
            let mut rows = q
                .query(params![
                    resolution,
                    all,
                    from - resolution,
                    end_to - resolution
                ])
                .map_err(err)?;
            while let Some(r) = rows.next().map_err(err)? {
                let rss = r
                    .get_ref(1)
                    .ok()
                    .and_then(|v| v.as_blob().ok())
                    .and_then(|b| Fields::decode(b).ok())
                    .map(|(f, _)| f.rss);
                match (r.get::<_, i64>(0), rss) {
                    (Ok(start), Some(rss)) if rss > 0 => samples.push((start + resolution, rss)),
                    (Ok(_), Some(_)) => {}
                    _ => self.skip(),
                }
            }
        }
        Ok(samples)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::ticker::history::tests::{cumulative, empty, fresh_dir};

    fn requests(dir: &Path) -> u64 {
        let read = ReadOnly::open(dir).unwrap();
        read.reader()
            .rows_between(MINUTE, 0, i64::MAX, Some(KIND_ALL))
            .unwrap()
            .iter()
            .map(|r| r.counts.count)
            .sum()
    }

    /// A view's connection is kept for the next view of the same file: it
    /// sees the rows written since, and a file made again at the same path
    /// is read through a connection of its own.
    #[test]
    fn a_kept_connection_reads_its_own_file_as_it_is_now() {
        let dir = fresh_dir("kept-connection");
        let write = |at: i64, n: u64| {
            let mut h = History::open(&dir, 1, "1", at, empty()).unwrap();
            h.write_minute(
                at,
                vec![(KIND_ROUTE, "GET /".into(), cumulative(1, n, |_| 1))],
                0,
                0,
            )
            .unwrap();
        };
        write(1_800_000_000, 3);
        assert_eq!(requests(&dir), 3);
        write(1_800_000_060, 4);
        assert_eq!(requests(&dir), 7);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        write(1_800_000_000, 5);
        assert_eq!(requests(&dir), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The memory samples: the hour rows before the oldest minute row,
    /// then the minute rows, oldest first, each at its row's end, as the
    /// one query over both resolutions sorted by end gave them.
    #[test]
    fn rss_samples_are_hours_then_minutes_in_order() {
        let dir = fresh_dir("rss-samples");
        let t0 = 1_800_000_000 - 1_800_000_000 % HOUR;
        let mut h = History::open(&dir, 2, "1", t0, empty()).unwrap();
        // 30 hours of minutes, RSS growing by a byte a minute (none in
        // every seventh minute); minutes past 25 hours pruned.
        for m in 0..30 * 60 {
            let rss = if m % 7 == 3 { 0 } else { 1_000 + m as u64 };
            h.write_minute(
                t0 + m * MINUTE,
                vec![(
                    KIND_ROUTE,
                    "GET /".into(),
                    cumulative(m as u64 + 1, 1, |_| 1),
                )],
                0,
                rss,
            )
            .unwrap();
        }
        let old = |from: i64, to: i64| -> Vec<(i64, u64)> {
            let mut q = h
                .conn
                .prepare(&format!(
                    "SELECT start + resolution AS at, figures FROM aggregates
                     WHERE series = (SELECT id FROM series WHERE kind = 0)
                     AND resolution IN (60, 3600)
                     AND start + resolution > ?1 AND start + resolution <= ?2
                     AND (resolution = 60 OR start + 3600 <= coalesce({OLDEST_MINUTE}, ?2))
                     ORDER BY at"
                ))
                .unwrap();
            q.query_map(params![from, to], |r| {
                let blob: Vec<u8> = r.get(1)?;
                Ok((r.get(0)?, Fields::decode(&blob).unwrap().0.rss))
            })
            .unwrap()
            .map(Result::unwrap)
            .filter(|s| s.1 > 0)
            .collect()
        };
        let end = t0 + 30 * HOUR;
        for (from, to) in [
            (t0, end),
            (t0 + 90 * MINUTE + 17, end - 3 * HOUR - 5),
            (end - HOUR, end + 60),
            (t0 - HOUR, t0 + 3 * HOUR),
        ] {
            let new = h.reader().rss_samples(from, to).unwrap();
            assert_eq!(new, old(from, to), "{from}..{to}");
        }
        let all = h.reader().rss_samples(t0, end).unwrap();
        assert!(all.iter().any(|s| s.0 % HOUR == 0 && s.0 < end - 25 * HOUR));
        assert!(all.len() > 25 * 50, "{}", all.len());
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
