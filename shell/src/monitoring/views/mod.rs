//! **The views**: read models built on demand for the dashboard, the JSON
//! and CSV exports and `/metrics`: the live snapshot ([`snapshot`], its
//! types in [`model`]) and the history's ranges and comparisons
//! ([`range`]).
//!
//! The rules here: they run on the requesting thread of an owner's page
//! or a scrape, never on a reader's request; they read the series, the
//! ring, the kept store and the history, and change nothing the request
//! path or the ticker write (a view is a copy). They may read every other
//! room of the monitor; nothing below reads them.

pub mod model;
pub mod range;
pub mod snapshot;

pub use super::evidence::{rfc3339, BeforeHandler, Largest, Parts, Span, WorstRequest};
pub use model::*;
