//! starpunk: a StarPunk-style blog server with built-in performance
//! monitoring (ADR-053).
//!
//! - [`app`]: the wiring: builds the parts and starts them.
//! - [`config`]: environment and flags, strictly parsed into each part's
//!   own settings; nothing below imports it.
//! - [`web`]: routes, pages, the dashboard and the exports.
//! - [`http`]: the HTTP engine (hyper under rouille's types), knowing no
//!   page, route or monitor.
//! - [`db`]: the SQLite pool, migrations and every SQL statement.
//! - [`monitoring`]: all instrumentation, in three rooms by when code
//!   runs: `request` (every request: no lock, allocation or panic),
//!   `ticker` (once a second, off requests) and `views` (on demand).
//!
//! Layers go one way (`web` -> `db` -> `monitoring` -> the core), checked
//! by `tests/layers.rs`; docs/ARCHITECTURE.md has the picture.
//!
//! No `unsafe` but one audited call (`db::cache_counts`, SQLite's
//! `sqlite3_db_status`, which rusqlite does not wrap).
#![deny(unsafe_code)]

/// Writes a line to stderr like `eprintln!`, but never panics: on a full
/// disk or a closed stderr the line is lost, not the thread (a panic in
/// the signal task once left SIGTERM unanswered, one in the ticker ended
/// history and alerts, one in a handler turned a 503 into a 500).
#[macro_export]
macro_rules! elog {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics, as [`elog!`]; returns whether the line
/// was written (the first start's credentials count as shown only then).
#[macro_export]
macro_rules! olog {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut out = ::std::io::stdout().lock();
        ::std::writeln!(out, $($arg)*).and_then(|()| out.flush()).is_ok()
    }};
}

pub mod app;
pub mod config;
pub mod db;
pub mod http;
pub mod monitoring;
pub mod tune;
pub mod web;
