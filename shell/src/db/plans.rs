//! Query plans for the monitor: SQLite's `EXPLAIN QUERY PLAN` of the
//! statements the monitor asks about, on a read-only connection of their
//! own, from the ticker (never a reader's request). The statement is
//! explained as the code wrote it, its parameters unbound: no value is
//! read or shown.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::monitoring::ticker::plans::{scanned_table, FullScan, Plan, PlanStep, FULL_SCAN_ROWS};

/// Explains statements on one read-only connection to `path`.
pub struct Explainer {
    conn: Connection,
}

impl Explainer {
    /// A read-only connection to the database at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Explainer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_millis(200))?;
        #[cfg(feature = "test-routes")]
        super::test_sleep_function(&conn)?;
        Ok(Explainer { conn })
    }

    /// The schema's version (`PRAGMA schema_version`): it changes with
    /// every migration, and plans are explained again then.
    pub fn schema_version(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("PRAGMA schema_version", [], |r| r.get(0))
    }

    /// The plan of `sql` at `schema`, with the tables of [`FULL_SCAN_ROWS`]
    /// rows or more it reads whole.
    pub fn explain(&self, sql: &str, schema: i64) -> Plan {
        // Only statements that read or write rows have a plan; the others
        // (BEGIN, COMMIT, a migration's CREATE) are not prepared at all.
        let first = sql
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if ![
            "SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "REPLACE", "VALUES",
        ]
        .contains(&first.as_str())
        {
            return Plan {
                schema,
                ..Plan::default()
            };
        }
        match self.steps(sql) {
            Ok(steps) => {
                let mut full_scans: Vec<FullScan> = Vec::new();
                for step in &steps {
                    let Some(table) = scanned_table(&step.detail) else {
                        continue;
                    };
                    if let Some(rows) = self.rows_of(table) {
                        if rows >= FULL_SCAN_ROWS && !full_scans.iter().any(|f| f.table == table) {
                            full_scans.push(FullScan {
                                table: table.to_string(),
                                rows,
                            });
                        }
                    }
                }
                Plan {
                    schema,
                    steps,
                    full_scans,
                    error: None,
                }
            }
            Err(e) => Plan {
                schema,
                error: Some(error_kind(&e)),
                ..Plan::default()
            },
        }
    }

    fn steps(&self, sql: &str) -> rusqlite::Result<Vec<PlanStep>> {
        let mut stmt = self.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        // Parameters stay unbound (NULL): `raw_query` does not ask for them.
        let mut rows = stmt.raw_query();
        // (id, parent) -> depth: a step's parent comes before it.
        let mut seen: Vec<(i64, u32)> = Vec::new();
        let mut steps = Vec::new();
        while let Some(row) = rows.next()? {
            let (id, parent, detail): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(3)?);
            let depth = seen
                .iter()
                .find(|(i, _)| *i == parent)
                .map_or(0, |(_, d)| d + 1);
            seen.push((id, depth));
            steps.push(PlanStep { depth, detail });
        }
        Ok(steps)
    }

    /// Rows of `table` when it is a table of the schema (an alias or a
    /// view is not counted): its largest rowid, which a table's rows never
    /// exceed and which costs one step down its b-tree (a `count(*)` would
    /// read it whole, on the ticker); `count(*)` for a table without rowid.
    fn rows_of(&self, table: &str) -> Option<u64> {
        let is_table: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .ok()?;
        if !is_table {
            return None;
        }
        let quoted = table.replace('"', "\"\"");
        let count = |sql: String| {
            self.conn
                .query_row(&sql, [], |r| r.get::<_, Option<i64>>(0))
        };
        count(format!("SELECT max(rowid) FROM \"{quoted}\""))
            .or_else(|_| count(format!("SELECT count(*) FROM \"{quoted}\"")))
            .ok()
            .map(|n| n.unwrap_or(0).max(0) as u64)
    }
}

/// What went wrong, in SQLite's generic words only: the message of a
/// failed prepare quotes the statement ("... in SELECT ... at offset N"),
/// and no SQL text is ever shown.
fn error_kind(e: &rusqlite::Error) -> String {
    match e.sqlite_error() {
        Some(err) => format!("SQLite: {err}"),
        None => "it could not be explained".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_of_a_large_table_is_flagged_and_an_index_read_is_not() {
        let dir = std::env::temp_dir().join(format!("starpunk-plans-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, slug TEXT, body TEXT);
                 CREATE INDEX t_slug ON t (slug);
                 CREATE TABLE small (id INTEGER PRIMARY KEY, body TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
                 INSERT INTO t (slug, body) SELECT 's' || i, 'b' FROM n;",
            )
            .unwrap();
        }
        let e = Explainer::open(&path).unwrap();
        let schema = e.schema_version().unwrap();
        let scan = e.explain("SELECT id FROM t WHERE body LIKE ?1", schema);
        assert_eq!(scan.error, None);
        assert!(
            scan.steps.iter().any(|s| s.detail.starts_with("SCAN t")),
            "{scan:?}"
        );
        assert_eq!(
            scan.full_scans,
            [FullScan {
                table: "t".into(),
                rows: 1500
            }]
        );
        let search = e.explain("SELECT id FROM t WHERE slug = ?1", schema);
        assert!(
            search.steps[0].detail.starts_with("SEARCH t USING"),
            "{search:?}"
        );
        assert!(search.full_scans.is_empty());
        // A small table read whole is no finding.
        assert!(e
            .explain("SELECT * FROM small WHERE body = ?1", schema)
            .full_scans
            .is_empty());
        // A statement without a plan, and one that does not prepare.
        assert!(e.explain("BEGIN IMMEDIATE", schema).steps.is_empty());
        let missing = e.explain("SELECT * FROM missing WHERE a = 'secret'", schema);
        let error = missing.error.unwrap();
        assert!(
            !error.contains("secret") && !error.contains("SELECT"),
            "{error}"
        );
        // A migration's statement is not prepared (it would fail, quoting
        // itself).
        let create = e.explain("CREATE TABLE t (x TEXT DEFAULT 'secret')", schema);
        assert_eq!((create.steps.len(), create.error), (0, None));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
