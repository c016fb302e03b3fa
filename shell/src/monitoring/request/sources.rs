//! Where each pattern's statements come from: its text (for the
//! ticker's `EXPLAIN QUERY PLAN`) and up to four call sites.
//!
//! Fed from the request path, cold: when a thread first meets a statement
//! text (then its pattern is cached on the thread), for a slow statement
//! and for a kept request's statements. One short lock each time; never on
//! a statement already met.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::Mutex;

use starpunk_perf::OpId;

/// Call sites remembered per pattern.
pub const LOCATIONS_PER_PATTERN: usize = 4;
/// Patterns whose source is remembered (the registry's own bound is
/// larger; past this, new patterns have no plan or call site).
pub const SOURCES: usize = 1_024;

/// Where a pattern's statements come from.
struct Source {
    sql: &'static str,
    locations: Vec<&'static Location<'static>>,
}

/// Sources per pattern.
#[derive(Default)]
pub struct Sources {
    sources: Mutex<HashMap<OpId, Source>>,
}

/// `file.rs:line` of a call site, the path from the workspace's root.
pub fn location(l: &Location<'_>) -> String {
    format!("{}:{}", l.file(), l.line())
}

impl Sources {
    /// Remembers that `sql` (pattern `op`) runs from `at`. Called when a
    /// thread first meets a statement text, and for slow statements.
    pub fn note_source(&self, op: OpId, sql: &'static str, at: &'static Location<'static>) {
        let Ok(mut sources) = self.sources.lock() else {
            return;
        };
        if sources.len() >= SOURCES && !sources.contains_key(&op) {
            return;
        }
        let s = sources.entry(op).or_insert_with(|| Source {
            sql,
            locations: Vec::new(),
        });
        if s.locations.len() < LOCATIONS_PER_PATTERN && !s.locations.contains(&at) {
            s.locations.push(at);
        }
    }

    /// Adds a call site of a pattern already known (a kept request's
    /// statement: a text used from two places shows both).
    pub fn note_location(&self, op: OpId, at: &'static Location<'static>) {
        if let Ok(mut sources) = self.sources.lock() {
            if let Some(s) = sources.get_mut(&op) {
                if s.locations.len() < LOCATIONS_PER_PATTERN && !s.locations.contains(&at) {
                    s.locations.push(at);
                }
            }
        }
    }

    /// The call sites of `op`'s statements, `file.rs:line`.
    pub fn locations(&self, op: OpId) -> Vec<String> {
        self.sources
            .lock()
            .ok()
            .and_then(|s| {
                s.get(&op)
                    .map(|s| s.locations.iter().map(|l| location(l)).collect())
            })
            .unwrap_or_default()
    }

    /// The text of `op`'s statements, when known.
    pub fn sql(&self, op: OpId) -> Option<&'static str> {
        self.sources.lock().ok()?.get(&op).map(|s| s.sql)
    }
}
