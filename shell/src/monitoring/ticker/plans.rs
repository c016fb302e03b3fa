//! Query plans of the patterns seen slow (where each runs from is the
//! request path's [`Sources`]).
//!
//! Off the request path: the ticker asks [`Plans::wanted`] which patterns
//! need a plan (seen over the slow threshold or in a kept request, not yet
//! explained at the database's current schema), has the database layer run
//! SQLite's `EXPLAIN QUERY PLAN` of each on a read-only connection, and
//! hands the result back with [`Plans::set`]. A plan carries no values: the
//! statement is explained as the code wrote it, with its parameters unbound.
//! The SQL text itself is program text (`&'static str`) and is never shown.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use starpunk_perf::OpId;

use crate::monitoring::request::sources::Sources;
use crate::monitoring::Inner;

/// A table this large or larger read by a full scan is flagged.
pub const FULL_SCAN_ROWS: u64 = 1_000;
/// One step of a plan, as SQLite words it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PlanStep {
    /// Steps above it in the plan's tree.
    pub depth: u32,
    /// `SEARCH notes USING INDEX ...`, `SCAN notes`, ...
    pub detail: String,
}

/// A table read whole.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FullScan {
    /// The table.
    pub table: String,
    /// Its rows when explained.
    pub rows: u64,
}

/// A pattern's plan.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Plan {
    /// The schema version it was explained at (`PRAGMA schema_version`).
    pub schema: i64,
    /// Its steps (empty for a statement without one: `BEGIN`, `COMMIT`).
    pub steps: Vec<PlanStep>,
    /// Tables of [`FULL_SCAN_ROWS`] rows or more read whole.
    pub full_scans: Vec<FullScan>,
    /// Why it could not be explained.
    pub error: Option<String>,
}

/// Plans per pattern.
#[derive(Default)]
pub struct Plans {
    plans: Mutex<HashMap<OpId, Plan>>,
}

impl Plans {
    /// Of `patterns`, those without a plan at `schema`, with their text.
    pub fn wanted(
        &self,
        patterns: &[OpId],
        schema: i64,
        sources: &Sources,
    ) -> Vec<(OpId, &'static str)> {
        let Ok(plans) = self.plans.lock() else {
            return Vec::new();
        };
        let mut out: Vec<(OpId, &'static str)> = Vec::new();
        for op in patterns {
            if plans.get(op).is_some_and(|p| p.schema == schema) {
                continue;
            }
            if let Some(sql) = sources.sql(*op) {
                if !out.iter().any(|(o, _)| o == op) {
                    out.push((*op, sql));
                }
            }
        }
        out
    }

    /// Stores `op`'s plan.
    pub fn set(&self, op: OpId, plan: Plan) {
        if let Ok(mut plans) = self.plans.lock() {
            plans.insert(op, plan);
        }
    }

    /// `op`'s plan, when explained.
    pub fn get(&self, op: OpId) -> Option<Plan> {
        self.plans.lock().ok()?.get(&op).cloned()
    }

    /// Forgets the plans (the monitor's clear); sources stay (they are
    /// the program's, not the traffic's).
    pub fn clear(&self) {
        if let Ok(mut p) = self.plans.lock() {
            p.clear();
        }
    }
}

/// The table a plan step reads whole, if it is a full scan: `SCAN t`
/// with no index (an index, the rowid, a virtual table's own index and a
/// constant row are not).
pub fn scanned_table(detail: &str) -> Option<&str> {
    let rest = detail.strip_prefix("SCAN ")?;
    if [
        "USING INDEX",
        "USING COVERING INDEX",
        "USING INTEGER PRIMARY KEY",
        "VIRTUAL TABLE",
    ]
    .iter()
    .any(|w| rest.contains(w))
        || rest.starts_with("CONSTANT ROW")
        || rest.starts_with('(')
    {
        return None;
    }
    let table = rest.split_whitespace().next()?;
    Some(table)
}

impl Inner {
    /// Patterns that deserve a plan: in the slow log or in a kept request.
    pub fn plan_candidates(
        &self,
        slow_log: &[crate::monitoring::SlowQuery],
        kept: &crate::monitoring::request::kept::KeptSet,
    ) -> Vec<OpId> {
        let mut ops: Vec<OpId> = Vec::new();
        let spans = kept
            .slowest
            .iter()
            .chain(&kept.errors)
            .chain(&kept.slow_statements)
            .flat_map(|k| k.spans.iter())
            .filter(|sp| sp.kind == crate::monitoring::request::trace::SpanKind::Sql)
            .map(|sp| sp.op);
        for op in slow_log.iter().rev().map(|q| q.pattern).chain(spans) {
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scans_are_told_from_index_reads() {
        assert_eq!(scanned_table("SCAN notes"), Some("notes"));
        assert_eq!(scanned_table("SCAN n"), Some("n"));
        assert_eq!(scanned_table("SCAN notes USING INDEX idx_published"), None);
        assert_eq!(scanned_table("SCAN notes USING COVERING INDEX i"), None);
        assert_eq!(
            scanned_table("SCAN notes_fts VIRTUAL TABLE INDEX 0:M2"),
            None
        );
        assert_eq!(scanned_table("SCAN CONSTANT ROW"), None);
        assert_eq!(scanned_table("SEARCH notes USING INDEX s (slug=?)"), None);
        assert_eq!(scanned_table("USE TEMP B-TREE FOR ORDER BY"), None);
    }

    #[test]
    fn a_plan_is_wanted_once_per_schema() {
        let p = Plans::default();
        let s = Sources::default();
        s.note_source(OpId(3), "SELECT 1", std::panic::Location::caller());
        assert_eq!(p.wanted(&[OpId(3), OpId(3), OpId(9)], 1, &s).len(), 1);
        p.set(
            OpId(3),
            Plan {
                schema: 1,
                ..Plan::default()
            },
        );
        assert!(p.wanted(&[OpId(3)], 1, &s).is_empty());
        // After a migration, explained again.
        assert_eq!(p.wanted(&[OpId(3)], 2, &s).len(), 1);
        assert_eq!(s.locations(OpId(3)).len(), 1);
    }
}
