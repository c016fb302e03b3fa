//! starpunk: a StarPunk-style blog server with built-in performance
//! monitoring (ADR-053).
//!
//! - [`config`]: environment and flags, strictly parsed.
//! - [`db`]: the SQLite pool, migrations and every SQL statement.
//! - [`web`]: routes, handlers, dashboard and the HTTP server.
//! - [`monitoring`]: all instrumentation, in one place.
//! - [`app`]: wiring them together and starting.
//!
//! No `unsafe` but one audited call (`db::cache_counts`, SQLite's
//! `sqlite3_db_status`, which rusqlite does not wrap).
#![deny(unsafe_code)]

pub mod app;
pub mod config;
pub mod db;
pub mod monitoring;
pub mod tune;
pub mod web;
