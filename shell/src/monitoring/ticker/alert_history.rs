//! Alert firings and resolutions in the history file (when it is on), so
//! they are still shown after a restart and in the range views. Written by
//! the ticker as they happen; pruned with the hour rows; cleared with them.

use rusqlite::{params, Connection};

use crate::monitoring::ticker::alerts::AlertEvent;

/// Creates the table.
pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS alert_events (
             at INTEGER NOT NULL,
             rule TEXT NOT NULL,
             state TEXT NOT NULL,
             value REAL NOT NULL,
             threshold REAL NOT NULL,
             unit TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS alert_events_at ON alert_events (at);",
    )
}

/// Unix seconds of an event's RFC 3339 time (0 if it does not parse).
fn unix_of(e: &AlertEvent) -> i64 {
    time::OffsetDateTime::parse(&e.at, &time::format_description::well_known::Rfc3339)
        .map_or(0, |t| t.unix_timestamp())
}

/// Appends `events`.
pub fn write(conn: &Connection, events: &[AlertEvent]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    for e in events {
        tx.execute(
            "INSERT INTO alert_events (at, rule, state, value, threshold, unit)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![unix_of(e), e.rule, e.state, e.value, e.threshold, e.unit],
        )?;
    }
    tx.commit()
}

/// The newest `limit` events with `from <= at < to`, oldest first.
pub fn read(
    conn: &Connection,
    from: i64,
    to: i64,
    limit: usize,
) -> rusqlite::Result<Vec<AlertEvent>> {
    let mut stmt = conn.prepare(
        "SELECT at, rule, state, value, threshold, unit FROM alert_events
         WHERE at >= ?1 AND at < ?2 ORDER BY at DESC, rowid DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![from, to, limit as i64], |r| {
        let at: i64 = r.get(0)?;
        Ok(AlertEvent {
            at: crate::monitoring::evidence::rfc3339(
                (at.max(0) as u64).saturating_mul(1_000_000_000),
            ),
            rule: r.get(1)?,
            state: r.get(2)?,
            value: r.get(3)?,
            threshold: r.get(4)?,
            unit: r.get(5)?,
        })
    })?;
    let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// Deletes the events before `before`.
pub fn prune(conn: &Connection, before: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM alert_events WHERE at < ?1", [before])
        .map(|_| ())
}

/// Deletes every event (logout's clear).
pub fn clear(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM alert_events", []).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: &str, state: &str) -> AlertEvent {
        AlertEvent {
            rule: "p99 > 500ms for 1m".into(),
            state: state.into(),
            value: 612.5,
            threshold: 500.0,
            unit: "ms".into(),
            at: at.into(),
        }
    }

    #[test]
    fn events_come_back_in_order_within_their_range() {
        let conn = Connection::open_in_memory().unwrap();
        create(&conn).unwrap();
        let fired = event("2027-01-15T08:00:00Z", "firing");
        let resolved = event("2027-01-15T08:05:00Z", "resolved");
        write(&conn, &[fired.clone(), resolved.clone()]).unwrap();
        let t0 = unix_of(&fired);
        assert_eq!(
            read(&conn, 0, i64::MAX, 50).unwrap(),
            [fired.clone(), resolved.clone()]
        );
        let newest = read(&conn, t0 + 1, i64::MAX, 50).unwrap();
        assert_eq!(newest, std::slice::from_ref(&resolved));
        assert_eq!(read(&conn, 0, i64::MAX, 1).unwrap(), newest);
        prune(&conn, t0 + 1).unwrap();
        assert_eq!(read(&conn, 0, i64::MAX, 50).unwrap().len(), 1);
        clear(&conn).unwrap();
        assert!(read(&conn, 0, i64::MAX, 50).unwrap().is_empty());
    }
}
