//! Public pages: the h-feed of notes, one h-entry, search, health.

use maud::{html, Markup};
use rouille::{Request, Response};

use super::markdown;
use super::views::{self, trusted_html};
use super::{App, WebError, WebResult};
use crate::db::notes::Note;
use crate::monitoring::Function;

/// Notes per page on `/`.
pub const PAGE_SIZE: i64 = 20;

/// One note as an `h-entry`.
pub fn entry(app: &App, note: &Note, heading: bool) -> Markup {
    let url = app.url(&format!("/notes/{}", note.slug));
    html! {
        article.h-entry {
            @if heading {
                h2.p-name { (markdown::summary(&note.content, 80)) }
            }
            div.e-content { (trusted_html(markdown::render(&note.content))) }
            p.meta {
                a.u-url.u-uid href=(url) {
                    time.dt-published datetime=(note.published_at) { (note.published_at) }
                }
                @if note.updated_at != note.published_at {
                    " (updated " time.dt-updated datetime=(note.updated_at) { (note.updated_at) } ")"
                }
                " by "
                a.p-author.h-card href=(app.url("/")) { (app.site.name) }
            }
        }
    }
}

/// A search result: the note's opening (its first line, at most 280
/// characters) and its link, not the whole note: a page of 50 results
/// stays tens of KB however long the notes are (a page of whole notes was
/// megabytes, which clients that never read could make the server render
/// again and again).
fn search_result(app: &App, note: &Note) -> Markup {
    let url = app.url(&format!("/notes/{}", note.slug));
    html! {
        article.h-entry {
            p.p-summary { (markdown::summary(&note.content, 280)) }
            p.meta {
                a.u-url.u-uid href=(url) {
                    time.dt-published datetime=(note.published_at) { (note.published_at) }
                }
                " by "
                a.p-author.h-card href=(app.url("/")) { (app.site.name) }
            }
        }
    }
}

/// `GET /?page=N`.
pub fn index(app: &App, req: &Request) -> WebResult {
    let page: i64 = match req.get_param("page") {
        None => 1,
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| (1..=1_000_000).contains(p))
            .ok_or_else(|| WebError::BadRequest("page must be a whole number from 1".into()))?,
    };
    let conn = app.db.conn()?;
    let notes = conn.published_notes(PAGE_SIZE, (page - 1) * PAGE_SIZE)?;
    let total = conn.count_notes()?;
    drop(conn);
    let body = html! {
        div.h-feed {
            h2.p-name { (app.site.name) }
            @if notes.is_empty() { p { "No notes yet." } }
            @for note in &notes { (entry(app, note, false)) }
        }
        nav {
            @if page > 1 { a rel="prev" href={ "/?page=" (page - 1) } { "Newer" } }
            @if page * PAGE_SIZE < total { a rel="next" href={ "/?page=" (page + 1) } { "Older" } }
        }
    };
    Ok(Response::html(
        views::page(&app.site.name, "Notes", None, body).into_string(),
    ))
}

/// `GET /notes/{slug}`.
pub fn note(app: &App, slug: &str) -> WebResult {
    let note = app
        .db
        .conn()?
        .note_by_slug(slug)?
        .ok_or(WebError::NotFound)?;
    let title = markdown::summary(&note.content, 60);
    let body = entry(app, &note, false);
    Ok(Response::html(
        views::page(&app.site.name, &title, None, body).into_string(),
    ))
}

/// `GET /search?q=`.
pub fn search(app: &App, req: &Request) -> WebResult {
    let q = req.get_param("q").unwrap_or_default();
    if q.len() > 500 {
        return Err(WebError::BadRequest(
            "search terms are limited to 500 characters".into(),
        ));
    }
    if q.chars().any(char::is_control) {
        return Err(WebError::BadRequest(
            "search terms must not contain control characters".into(),
        ));
    }
    let results = if q.trim().is_empty() {
        Vec::new()
    } else {
        app.monitor
            .time(Function::Search, || app.db.conn()?.search_notes(&q, 50))?
    };
    let body = html! {
        form method="get" action="/search" role="search" {
            input type="search" name="q" value=(q) aria-label="Search terms";
            " " button type="submit" { "Search" }
        }
        @if !q.trim().is_empty() {
            p { (results.len()) " result" @if results.len() != 1 { "s" } " for “" (q) "”" }
        }
        div.h-feed { @for note in &results { (search_result(app, note)) } }
    };
    Ok(Response::html(
        views::page(&app.site.name, "Search", None, body).into_string(),
    ))
}

/// `GET /health`.
/// What SQLite's integrity check reported (page numbers, b-tree errors)
/// is shown to the logged-in owner only; anyone else reads `"failed"`.
pub fn health(app: &App, req: &rouille::Request) -> Response {
    let mut db = app.db.health();
    if db.integrity != "ok" && !matches!(app.session(req), Ok(Some(_))) {
        db.integrity = "failed".into();
    }
    let database = match (db.can_read, db.can_write, db.integrity == "ok") {
        (true, true, true) => "ok",
        (false, _, _) => "unreadable",
        (true, false, _) => "read-only",
        (true, true, false) => "corrupt",
    };
    let ok = database == "ok";
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "database": database,
        "checks": db,
    });
    let response = Response::json(&body)
        .with_status_code(if ok { 200 } else { 503 })
        .with_no_cache();
    if ok {
        response
    } else {
        response.with_unique_header("Retry-After", "10")
    }
}
