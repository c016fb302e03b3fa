//! The slowest requests of each hour in the history file, so last night's
//! slow request is still explained in the morning, after a restart too.
//!
//! Ticker side: each closed minute offers the kept slowest requests (see
//! [`crate::monitoring::request::kept`]) of every route; of each hour the [`PER_HOUR`] slowest
//! readers' requests and the [`OWN_PER_HOUR`] slowest of the owner's own
//! pages stay, for [`DAYS`] days at most. What is stored is what the
//! dashboard shows of a request: its route template, literal-free patterns,
//! function names, durations and code locations; never a value.
//!
//! Bounded: 24 x (5 + 2) requests a day for 7 days, 1,176 rows, each at
//! most 32 spans (a few KB): a few MB at the very most.

use rusqlite::{params, Connection};

use crate::monitoring::evidence::WorstRequest;
use crate::monitoring::own::is_own;

/// Readers' requests kept per hour.
pub const PER_HOUR: usize = 5;
/// The owner's own requests kept per hour.
pub const OWN_PER_HOUR: usize = 2;
/// Days the requests are kept (fewer with fewer history days).
pub const DAYS: i64 = 7;

/// Creates the table.
pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS slow_requests (
             hour INTEGER NOT NULL,
             own INTEGER NOT NULL,
             id TEXT NOT NULL,
             duration_ns INTEGER NOT NULL,
             detail TEXT NOT NULL,
             PRIMARY KEY (hour, own, id)
         ) WITHOUT ROWID;",
    )
}

/// Offers `requests` (each with the Unix second it started at), keeping
/// the slowest of each hour they touch.
pub fn write(conn: &Connection, requests: &[(i64, WorstRequest)]) -> rusqlite::Result<()> {
    if requests.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    let mut hours: Vec<i64> = Vec::new();
    for (at, w) in requests {
        let hour = at - at.rem_euclid(3600);
        // The statement counts are the timeline's: not stored twice.
        let stored = WorstRequest {
            queries: Vec::new(),
            ..w.clone()
        };
        tx.execute(
            "INSERT OR IGNORE INTO slow_requests (hour, own, id, duration_ns, detail)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                hour,
                is_own(&w.route),
                w.id,
                (w.duration_ms * 1e6).round() as i64,
                serde_json::to_string(&stored).unwrap_or_default()
            ],
        )?;
        if !hours.contains(&hour) {
            hours.push(hour);
        }
    }
    for hour in hours {
        tx.execute(
            "DELETE FROM slow_requests WHERE hour = ?1 AND (own, id) IN (
                 SELECT own, id FROM (
                     SELECT own, id, row_number() OVER (
                         PARTITION BY own ORDER BY duration_ns DESC, id) AS n
                     FROM slow_requests WHERE hour = ?1)
                 WHERE n > CASE own WHEN 0 THEN ?2 ELSE ?3 END)",
            params![hour, PER_HOUR as i64, OWN_PER_HOUR as i64],
        )?;
    }
    tx.commit()
}

/// The stored requests of the hours that overlap `from..to`, slowest
/// first.
pub fn read(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<Vec<WorstRequest>> {
    let mut stmt = conn.prepare(
        "SELECT detail FROM slow_requests WHERE hour >= ?1 AND hour < ?2
         ORDER BY duration_ns DESC, id",
    )?;
    let rows = stmt.query_map(params![from - from.rem_euclid(3600), to], |r| {
        r.get::<_, String>(0)
    })?;
    let mut out = Vec::new();
    for detail in rows {
        // A row that does not read (a damaged file) is skipped.
        if let Ok(mut w) = serde_json::from_str::<WorstRequest>(&detail?) {
            for span in w.timeline.iter().filter(|s| s.kind == "sql") {
                match w.queries.iter_mut().find(|(n, _)| *n == span.name) {
                    Some(q) => q.1 += 1,
                    None => w.queries.push((span.name.clone(), 1)),
                }
            }
            out.push(w);
        }
    }
    Ok(out)
}

/// Deletes the hours before `before` (and everything past [`DAYS`]).
pub fn prune(conn: &Connection, before: i64, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM slow_requests WHERE hour < ?1",
        [before.max(now - DAYS * 86_400)],
    )
    .map(|_| ())
}

/// Deletes everything (logout's clear).
pub fn clear(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM slow_requests", []).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::evidence::Span;

    fn request(id: &str, route: &str, ms: f64) -> WorstRequest {
        WorstRequest {
            id: id.into(),
            route: route.into(),
            duration_ms: ms,
            timeline: vec![Span {
                kind: "sql".into(),
                name: "SELECT ? FROM notes".into(),
                offset_ms: 0.0,
                duration_ms: ms / 2.0,
                location: "shell/src/db/notes.rs:1".into(),
                depth: 0,
            }],
            ..WorstRequest::default()
        }
    }

    #[test]
    fn each_hour_keeps_its_slowest_readers_and_owner_requests_apart() {
        let conn = Connection::open_in_memory().unwrap();
        create(&conn).unwrap();
        let h = 1_800_000_000; // an hour boundary (500,000 h)
        let mut reqs = Vec::new();
        for i in 0..10 {
            reqs.push((
                h + i,
                request(&format!("r{i}"), "GET /", f64::from(i as u32)),
            ));
            reqs.push((
                h + i,
                request(
                    &format!("a{i}"),
                    "POST /admin/login",
                    100.0 + f64::from(i as u32),
                ),
            ));
        }
        reqs.push((h + 5, request("x", "GET /search", 1610.0)));
        write(&conn, &reqs).unwrap();
        // Offered again (the next minute sees the same kept requests).
        write(&conn, &reqs).unwrap();
        let got = read(&conn, h, h + 3600).unwrap();
        let names: Vec<(&str, f64)> = got
            .iter()
            .map(|w| (w.route.as_str(), w.duration_ms))
            .collect();
        assert_eq!(
            names,
            [
                ("GET /search", 1610.0),
                ("POST /admin/login", 109.0),
                ("POST /admin/login", 108.0),
                ("GET /", 9.0),
                ("GET /", 8.0),
                ("GET /", 7.0),
                ("GET /", 6.0),
            ]
        );
        // The statement counts come back from the timeline.
        assert_eq!(got[0].queries, [("SELECT ? FROM notes".to_string(), 1)]);
        // Another hour's requests do not push these out; a range of one
        // hour reads one hour.
        write(&conn, &[(h + 3600, request("y", "GET /", 50.0))]).unwrap();
        assert_eq!(read(&conn, h, h + 3600).unwrap().len(), 7);
        assert_eq!(read(&conn, h, h + 7200).unwrap().len(), 8);
        prune(&conn, h + 3600, h + 7200).unwrap();
        assert_eq!(read(&conn, h, h + 7200).unwrap().len(), 1);
        // Past a week, gone whatever the history keeps.
        prune(&conn, 0, h + 3600 + DAYS * 86_400 + 1).unwrap();
        assert!(read(&conn, h, h + 7200).unwrap().is_empty());
        write(&conn, &reqs).unwrap();
        clear(&conn).unwrap();
        assert!(read(&conn, h, h + 7200).unwrap().is_empty());
    }
}
