//! The owner's pages: list, write, edit and delete notes.

use maud::html;
use rouille::{Request, Response};

use super::auth::{csrf_ok, to_login, Session};
use super::markdown;
use super::views;
use super::{App, WebError, WebResult};
use crate::monitoring::Function;

/// The posted form as pairs.
fn form(req: &Request) -> Result<Vec<(String, String)>, WebError> {
    rouille::input::post::raw_urlencoded_post_input(req)
        .map_err(|_| WebError::BadRequest("Expected a form".into()))
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The session, or the response to send instead (login redirect).
fn require(app: &App, req: &Request) -> Result<Result<Session, Response>, WebError> {
    Ok(app.session(req)?.ok_or_else(to_login))
}

/// A checked POST: session and CSRF token, then the form.
fn checked_form(
    app: &App,
    req: &Request,
) -> Result<Result<Vec<(String, String)>, Response>, WebError> {
    let session = match require(app, req)? {
        Ok(s) => s,
        Err(r) => return Ok(Err(r)),
    };
    let form = form(req)?;
    if !csrf_ok(&session, field(&form, "csrf")) {
        return Ok(Err(
            Response::text("Missing or wrong CSRF token\n").with_status_code(403)
        ));
    }
    Ok(Ok(form))
}

fn parse_id(id: &str) -> Result<i64, WebError> {
    id.parse().map_err(|_| WebError::NotFound)
}

fn content_of(form: &[(String, String)]) -> Result<String, WebError> {
    let content = field(form, "content").replace("\r\n", "\n");
    if content.trim().is_empty() {
        return Err(WebError::BadRequest("A note needs some content".into()));
    }
    if content.len() > 100_000 {
        return Err(WebError::BadRequest(
            "A note is limited to 100000 bytes".into(),
        ));
    }
    Ok(content)
}

/// `GET /admin`.
pub fn index(app: &App, req: &Request) -> WebResult {
    let session = match require(app, req)? {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let notes = app.db.conn()?.published_notes(200, 0)?;
    let body = html! {
        h2 { "Write" }
        form method="post" action="/admin/notes" {
            input type="hidden" name="csrf" value=(session.csrf);
            textarea name="content" aria-label="Note (Markdown)" required {}
            p { button type="submit" { "Publish" } }
        }
        p {
            @if app.monitor.config().dashboard_enabled { a href="/admin/performance" { "Performance dashboard" } " " }
            form.inline method="post" action="/admin/logout" {
                input type="hidden" name="csrf" value=(session.csrf);
                @if app.monitor.config().clear_on_logout && app.monitor.config().monitoring_enabled {
                    button type="submit" { "Log out and clear the performance metrics" }
                    br;
                    span.meta { "Logging out clears every live performance figure (counts, percentiles, "
                        "the last 15 minutes, the slow-query log): STARPUNK_PERF_CLEAR_ON_LOGOUT=true." }
                } @else {
                    button type="submit" { "Log out" }
                    @if app.monitor.config().monitoring_enabled {
                        " " span.meta { "(the performance metrics are kept)" }
                    }
                }
            }
        }
        h2 { "Notes" }
        @for n in &notes {
            article {
                p { a href={ "/notes/" (n.slug) } { (markdown::summary(&n.content, 80)) } " "
                    span.meta { (n.published_at) } }
                p {
                    a href={ "/admin/notes/" (n.id) "/edit" } { "Edit" } " "
                    form.inline method="post" action={ "/admin/notes/" (n.id) "/delete" } {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" { "Delete" }
                    }
                }
            }
        }
    };
    Ok(
        Response::html(views::page(&app.site.name, "Admin", None, body).into_string())
            .with_no_cache(),
    )
}

/// `POST /admin/notes`.
pub fn create(app: &App, req: &Request) -> WebResult {
    let form = match checked_form(app, req)? {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let content = content_of(&form)?;
    let note = app.monitor.time(Function::NoteCreate, || {
        app.db.writer()?.create_note(&content, None)
    })?;
    Ok(Response::redirect_303(format!("/notes/{}", note.slug)))
}

/// `GET /admin/notes/{id}/edit`.
pub fn edit_form(app: &App, req: &Request, id: &str) -> WebResult {
    let session = match require(app, req)? {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let note = app
        .db
        .conn()?
        .note_by_id(parse_id(id)?)?
        .ok_or(WebError::NotFound)?;
    let body = html! {
        h2 { "Edit" }
        form method="post" action={ "/admin/notes/" (note.id) } {
            input type="hidden" name="csrf" value=(session.csrf);
            textarea name="content" aria-label="Note (Markdown)" required { (note.content) }
            p { button type="submit" { "Save" } }
        }
    };
    Ok(
        Response::html(views::page(&app.site.name, "Edit", None, body).into_string())
            .with_no_cache(),
    )
}

/// `POST /admin/notes/{id}`.
pub fn update(app: &App, req: &Request, id: &str) -> WebResult {
    let form = match checked_form(app, req)? {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let id = parse_id(id)?;
    let content = content_of(&form)?;
    let found = app.monitor.time(Function::NoteUpdate, || {
        app.db.writer()?.update_note(id, &content)
    })?;
    if !found {
        return Err(WebError::NotFound);
    }
    Ok(Response::redirect_303("/admin"))
}

/// `POST /admin/notes/{id}/delete` (soft delete).
pub fn delete(app: &App, req: &Request, id: &str) -> WebResult {
    if let Err(r) = checked_form(app, req)? {
        return Ok(r);
    }
    let id = parse_id(id)?;
    let found = app
        .monitor
        .time(Function::NoteDelete, || app.db.writer()?.delete_note(id))?;
    if !found {
        return Err(WebError::NotFound);
    }
    Ok(Response::redirect_303("/admin"))
}
