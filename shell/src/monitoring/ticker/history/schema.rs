//! The history file's tables, and the upgrade of a file written before
//! issue 20 (`PRAGMA user_version` 0 with a `rows` table).
//!
//! Version 2 (issue 20):
//!
//! - `series (id, kind, name)`: each route, pattern and the all-requests
//!   series once; rows name it by `id`.
//! - `layouts (id, lowest, highest, digits)`: the histogram layouts blobs
//!   name.
//! - `aggregates`: one row per (resolution, series, start), `WITHOUT
//!   ROWID` so the key is stored once: the count, and a `figures` blob
//!   holding the other counts ([`super::codec::Fields`], zeros take no
//!   byte) and the distribution in the compact form of [`super::codec`].
//!   Keyed series first: every read is "these series over a time range",
//!   one contiguous run per series.
//! - `rows`: a view with the old table's key columns and count (kind and
//!   name joined back) and the `figures` blob, for anyone who queried the
//!   file.
//!
//! Version 3 (issue 20, item 3): the same tables; `aggregates` also holds
//! quarter-hour rows (`resolution` 900) and six-hour rows (21600), rolled
//! up like hour rows (see [`super::rollup`]), and the hour rows of routes
//! and patterns are kept [`super::HOURS_KEPT`] once their six hours are
//! rolled up. A version 2 file is upgraded by its number: the roll-ups
//! that run as the history opens make its quarter-hours and six hours,
//! period by period, each in its own transaction (a stop half-way is taken
//! up by the next roll-up), and no hour row is pruned before a six-hour
//! row holds it. A build of version 2 refuses the file (a newer version)
//! rather than read pruned hours as missing traffic.
//!
//! The upgrade from before issue 20 runs at start, in one transaction: every old row is copied
//! with its integers as they were and its V2 histogram re-encoded (the same
//! counters); a row whose V2 blob cannot be read is copied as it is into
//! `damaged_rows`, so nothing stored is lost. Any failure rolls the whole
//! upgrade back: the old file is left as it was, and the error is what the
//! dashboard shows. The space the old rows took is given back by a
//! `VACUUM` after the upgrade committed (its failure is only logged).

use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::codec::{layout_of, Fields, Latency, Layouts};

/// `PRAGMA user_version` of this schema.
pub const VERSION: i64 = 3;

const TABLES: &str = "
    CREATE TABLE IF NOT EXISTS series (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        name TEXT NOT NULL,
        UNIQUE (kind, name)
    );
    CREATE TABLE IF NOT EXISTS layouts (
        id INTEGER PRIMARY KEY,
        lowest INTEGER NOT NULL,
        highest INTEGER NOT NULL,
        digits INTEGER NOT NULL,
        UNIQUE (lowest, highest, digits)
    );
    CREATE TABLE IF NOT EXISTS aggregates (
        resolution INTEGER NOT NULL,
        series INTEGER NOT NULL,
        start INTEGER NOT NULL,
        count INTEGER NOT NULL,
        figures BLOB NOT NULL,
        PRIMARY KEY (resolution, series, start)
    ) WITHOUT ROWID;
    CREATE VIEW IF NOT EXISTS rows AS
        SELECT a.resolution, a.start, s.kind, s.name, a.count, a.figures
        FROM aggregates a JOIN series s ON s.id = a.series;";

/// What opening found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upgrade {
    /// Rows copied from a file of the version before.
    pub rows: u64,
    /// Of those, rows whose histogram could not be read (kept in
    /// `damaged_rows`).
    pub damaged: u64,
}

fn old_rows_table(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rows')",
        [],
        |r| r.get(0),
    )
}

/// Creates the tables, or upgrades a file of the version before; `None`
/// when there was nothing to upgrade.
pub fn open(conn: &mut Connection) -> Result<Option<Upgrade>, String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version > VERSION {
        return Err(format!(
            "the history file is of a newer version ({version}; this build reads {VERSION})"
        ));
    }
    let old = old_rows_table(conn).map_err(|e| e.to_string())?;
    if version == VERSION || !old {
        conn.execute_batch(TABLES).map_err(|e| e.to_string())?;
        conn.pragma_update(None, "user_version", VERSION)
            .map_err(|e| e.to_string())?;
        return Ok(None);
    }
    let done = upgrade(conn).map_err(|e| {
        format!("the history file could not be upgraded, and is left as it was ({e})")
    })?;
    // Give the old rows' pages back (the upgrade is committed; a failure
    // here only leaves the file larger).
    if let Err(e) = conn
        .execute_batch("VACUUM")
        .and_then(|()| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
    {
        crate::elog!("starpunk: performance history: upgraded, but not compacted ({e})");
    }
    Ok(Some(done))
}

/// The layout id of `layout`, added to the table (and `layouts`) when new.
pub fn layout_id(
    conn: &Connection,
    layouts: &mut Layouts,
    layout: &starpunk_perf::HistogramLayout,
) -> rusqlite::Result<i64> {
    if let Some(id) = layouts.id_of(layout) {
        return Ok(id);
    }
    let (low, high, digits) = (
        layout.lowest_discernible() as i64,
        layout.highest_trackable() as i64,
        i64::from(layout.significant_figures()),
    );
    conn.prepare_cached(
        "INSERT OR IGNORE INTO layouts (lowest, highest, digits) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![low, high, digits])?;
    let id: i64 = conn
        .prepare_cached(
            "SELECT id FROM layouts WHERE lowest = ?1 AND highest = ?2 AND digits = ?3",
        )?
        .query_row(params![low, high, digits], |r| r.get(0))?;
    layouts.insert(id, *layout);
    Ok(id)
}

/// Every layout of the file (a row naming another is damaged).
pub fn layouts(conn: &Connection) -> rusqlite::Result<Layouts> {
    let mut out = Layouts::default();
    let mut q = conn.prepare_cached("SELECT id, lowest, highest, digits FROM layouts")?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (id, low, high, digits) = row?;
        if let (Ok(low), Ok(high), Ok(digits)) = (
            u64::try_from(low),
            u64::try_from(high),
            u8::try_from(digits),
        ) {
            if let Ok(l) = starpunk_perf::HistogramLayout::new(low, high, digits) {
                out.insert(id, l);
            }
        }
    }
    Ok(out)
}

/// The id of series `(kind, name)`, added when new.
pub fn series_id(conn: &Connection, kind: i64, name: &str) -> rusqlite::Result<i64> {
    if let Some(id) = conn
        .prepare_cached("SELECT id FROM series WHERE kind = ?1 AND name = ?2")?
        .query_row(params![kind, name], |r| r.get(0))
        .optional()?
    {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO series (kind, name) VALUES (?1, ?2)")?
        .execute(params![kind, name])?;
    Ok(conn.last_insert_rowid())
}

fn upgrade(conn: &mut Connection) -> rusqlite::Result<Upgrade> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The old table moves aside so the new view can take its name.
    tx.execute_batch(
        "ALTER TABLE rows RENAME TO rows_v1;
         CREATE TABLE IF NOT EXISTS damaged_rows (
             resolution INTEGER, start INTEGER, kind INTEGER, name TEXT, count INTEGER,
             sum_ns INTEGER, errors_5xx INTEGER, errors_4xx INTEGER, bytes INTEGER,
             rows INTEGER, slow INTEGER, rss INTEGER, latency BLOB
         );",
    )?;
    tx.execute_batch(TABLES)?;
    let mut done = Upgrade::default();
    {
        let mut layouts = layouts(&tx)?;
        let mut de = Deserializer::new();
        let mut select = tx.prepare(
            "SELECT resolution, start, kind, name, count, sum_ns, errors_5xx, errors_4xx,
             bytes, rows, slow, rss, latency FROM rows_v1",
        )?;
        let mut rows = select.query([])?;
        while let Some(r) = rows.next()? {
            done.rows += 1;
            let blob = r.get_ref(12)?.as_blob().unwrap_or_default();
            let decoded = de
                .deserialize::<u64, _>(&mut &blob[..])
                .ok()
                .and_then(|h: Histogram<u64>| Some((layout_of(&h)?, Latency::from_histogram(&h)?)));
            let values: Vec<rusqlite::types::Value> =
                (0..12).map(|i| r.get(i)).collect::<Result<_, _>>()?;
            let int = |i: usize| match values[i] {
                rusqlite::types::Value::Integer(v) => Some(v),
                _ => None,
            };
            // Counts the old reader refused (negative; the latency sum
            // wraps and may be) make the row damaged as well.
            let ints: Option<Vec<i64>> = (4..12).map(int).collect();
            let ints = ints.filter(|v| v.iter().enumerate().all(|(i, x)| i == 1 || *x >= 0));
            let decoded = decoded.zip(ints);
            let Some(((layout, latency), ints)) = decoded else {
                done.damaged += 1;
                let mut all = values;
                all.push(r.get(12)?);
                tx.prepare_cached(
                    "INSERT INTO damaged_rows VALUES
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )?
                .execute(rusqlite::params_from_iter(all))?;
                continue;
            };
            let id = layout_id(&tx, &mut layouts, &layout)?;
            let kind: i64 = r.get(2)?;
            let name: String = r.get(3)?;
            let series = series_id(&tx, kind, &name)?;
            let mut figures = Vec::new();
            Fields {
                sum_ns: ints[1] as u64,
                errors_5xx: ints[2] as u64,
                errors_4xx: ints[3] as u64,
                bytes: ints[4] as u64,
                rows: ints[5] as u64,
                slow: ints[6] as u64,
                rss: ints[7] as u64,
            }
            .encode_into(&mut figures);
            latency.encode_into(&mut figures, id);
            tx.prepare_cached(
                "INSERT INTO aggregates (resolution, start, series, count, figures)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![values[0], values[1], series, ints[0], figures])?;
        }
    }
    tx.execute_batch("DROP TABLE rows_v1;")?;
    if done.damaged == 0 {
        tx.execute_batch("DROP TABLE damaged_rows;")?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(done)
}
