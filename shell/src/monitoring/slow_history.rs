//! The slowest requests of each hour in the history file, so last night's
//! slow request is still explained in the morning, after a restart too.
//!
//! Ticker side: each closed minute writes the kept slowest requests (see
//! [`super::kept`]) of every route, and only the [`PER_HOUR`] slowest of a
//! route and hour stay. What is stored is what the dashboard shows of a
//! request: its route template, literal-free patterns, function names,
//! durations and code locations; never a value.

use rusqlite::{params, Connection};

use super::snapshot::WorstRequest;

/// Slowest requests kept per route and hour.
pub const PER_HOUR: usize = 3;

/// Creates the table.
pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS slow_requests (
             hour INTEGER NOT NULL,
             route TEXT NOT NULL,
             id TEXT NOT NULL,
             duration_ns INTEGER NOT NULL,
             detail TEXT NOT NULL,
             PRIMARY KEY (hour, route, id)
         ) WITHOUT ROWID;",
    )
}

/// Writes `requests` (each with the Unix second it started at), keeping
/// the [`PER_HOUR`] slowest of each route and hour they touch.
pub fn write(conn: &Connection, requests: &[(i64, WorstRequest)]) -> rusqlite::Result<()> {
    if requests.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    let mut hours: Vec<i64> = Vec::new();
    for (at, w) in requests {
        let hour = at - at.rem_euclid(3600);
        let detail = serde_json::to_string(w).unwrap_or_default();
        tx.execute(
            "INSERT OR IGNORE INTO slow_requests (hour, route, id, duration_ns, detail)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                hour,
                w.route,
                format!("{at}-{}", w.id),
                (w.duration_ms * 1e6) as i64,
                detail
            ],
        )?;
        if !hours.contains(&hour) {
            hours.push(hour);
        }
    }
    for hour in hours {
        tx.execute(
            "DELETE FROM slow_requests WHERE hour = ?1 AND (route, id) IN (
                 SELECT route, id FROM (
                     SELECT route, id, row_number() OVER (
                         PARTITION BY route ORDER BY duration_ns DESC, id) AS n
                     FROM slow_requests WHERE hour = ?1)
                 WHERE n > ?2)",
            params![hour, PER_HOUR as i64],
        )?;
    }
    tx.commit()
}

/// The stored requests of the hours that overlap `from..to`, per route
/// the [`PER_HOUR`] slowest over the whole range, slowest first.
pub fn read(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<Vec<WorstRequest>> {
    let mut stmt = conn.prepare(
        "SELECT detail FROM (
             SELECT detail, duration_ns, row_number() OVER (
                 PARTITION BY route ORDER BY duration_ns DESC, id) AS n
             FROM slow_requests WHERE hour >= ?1 AND hour < ?2)
         WHERE n <= ?3 ORDER BY duration_ns DESC",
    )?;
    let rows = stmt.query_map(
        params![from - from.rem_euclid(3600), to, PER_HOUR as i64],
        |r| r.get::<_, String>(0),
    )?;
    let mut out = Vec::new();
    for detail in rows {
        // A row that does not read (a damaged or foreign file) is skipped.
        if let Ok(w) = serde_json::from_str::<WorstRequest>(&detail?) {
            out.push(w);
        }
    }
    Ok(out)
}

/// Deletes the hours before `before`.
pub fn prune(conn: &Connection, before: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM slow_requests WHERE hour < ?1", [before])
        .map(|_| ())
}

/// Deletes everything (logout's clear).
pub fn clear(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM slow_requests", []).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, route: &str, ms: f64) -> WorstRequest {
        WorstRequest {
            id: id.into(),
            route: route.into(),
            duration_ms: ms,
            ..WorstRequest::default()
        }
    }

    #[test]
    fn each_route_and_hour_keeps_its_slowest_and_a_range_reads_them() {
        let conn = Connection::open_in_memory().unwrap();
        create(&conn).unwrap();
        let h = 1_800_000_000; // an hour boundary (500,000 h)
        let mut reqs = Vec::new();
        for i in 0..10 {
            reqs.push((
                h + i,
                request(&format!("r{i}"), "GET /", f64::from(i as u32)),
            ));
        }
        reqs.push((h + 5, request("x", "GET /search", 1610.0)));
        write(&conn, &reqs).unwrap();
        // Written again (the next minute sees the same kept requests).
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
                ("GET /", 9.0),
                ("GET /", 8.0),
                ("GET /", 7.0)
            ]
        );
        // Another hour's requests do not push these out; a range of one
        // hour reads one hour.
        write(&conn, &[(h + 3600, request("y", "GET /", 50.0))]).unwrap();
        assert_eq!(read(&conn, h, h + 3600).unwrap()[1].duration_ms, 9.0);
        assert_eq!(read(&conn, h, h + 7200).unwrap()[1].duration_ms, 50.0);
        prune(&conn, h + 3600).unwrap();
        assert_eq!(read(&conn, h, h + 7200).unwrap().len(), 1);
        clear(&conn).unwrap();
        assert!(read(&conn, h, h + 7200).unwrap().is_empty());
    }
}
