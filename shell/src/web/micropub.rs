//! Micropub (W3C Recommendation): create from form-encoded or JSON bodies,
//! `q=config`, `q=source`, `q=syndicate-to`; errors as the spec's JSON.

use rouille::{Request, Response};
use serde_json::{json, Value};

use super::auth::{ct_eq, sha256_hex, MICROPUB_KEY};
use super::App;
use crate::monitoring::Function;

/// A Micropub error response: `{"error": ..., "error_description": ...}`.
pub fn error(status: u16, error: &str, description: &str) -> Response {
    Response::json(&json!({ "error": error, "error_description": description }))
        .with_status_code(status)
}

fn bearer(req: &Request, form_token: Option<&str>) -> Option<String> {
    req.header("Authorization")
        .and_then(|h| {
            let (scheme, token) = h.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        })
        .or_else(|| form_token.map(str::to_string))
}

/// `Ok` when the request carries the Micropub token, or the error to send.
fn authorize(app: &App, req: &Request, form_token: Option<&str>) -> Result<(), Response> {
    let Some(token) = bearer(req, form_token) else {
        return Err(error(
            401,
            "unauthorized",
            "Send the token as Authorization: Bearer <token>",
        ));
    };
    let stored = app
        .db
        .conn()
        .and_then(|c| c.setting(MICROPUB_KEY))
        .map_err(|_| error(503, "temporarily_unavailable", "The database is busy"))?;
    let checked = app.check_token(req, || {
        app.monitor.time(Function::Authentication, || {
            stored.is_some_and(|hash| ct_eq(&hash, &sha256_hex(&token)))
        })
    });
    let ok = match checked {
        Ok(ok) => ok,
        Err(wait) => {
            return Err(error(
                429,
                "too_many_requests",
                "Too many wrong tokens from this address; try again later",
            )
            .with_unique_header("Retry-After", wait.to_string()))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(error(
            403,
            "forbidden",
            "The token is not valid for this site",
        ))
    }
}

/// What a create request asks for.
#[derive(Debug, Default, PartialEq)]
struct Create {
    content: String,
    slug: Option<String>,
}

fn first_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first().and_then(first_string),
        Value::Object(o) => o
            .get("markdown")
            .or_else(|| o.get("value"))
            .or_else(|| o.get("html"))
            .and_then(first_string),
        _ => None,
    }
}

fn parse_json(body: &[u8]) -> Result<Create, Response> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| error(400, "invalid_request", "The body is not valid JSON"))?;
    let kind = v.get("type").and_then(|t| t.get(0)).and_then(Value::as_str);
    if kind != Some("h-entry") {
        return Err(error(
            400,
            "invalid_request",
            "Only type h-entry is supported",
        ));
    }
    let props = v
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| error(400, "invalid_request", "properties is missing"))?;
    let content = props
        .get("content")
        .and_then(first_string)
        .unwrap_or_default();
    let slug = props.get("mp-slug").and_then(first_string);
    Ok(Create { content, slug })
}

fn parse_form(form: &[(String, String)]) -> Result<Create, Response> {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("h").as_deref().unwrap_or("entry") != "entry" {
        return Err(error(400, "invalid_request", "Only h=entry is supported"));
    }
    Ok(Create {
        content: get("content").unwrap_or_default(),
        slug: get("mp-slug"),
    })
}

/// `POST /micropub`.
pub fn post(app: &App, req: &Request) -> Response {
    let content_type = req
        .header("Content-Type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(mut data) = req.data() {
        use std::io::Read;
        if data.read_to_end(&mut body).is_err() {
            return error(400, "invalid_request", "Could not read the body");
        }
    }
    let (create, form_token) = if content_type.starts_with("application/json") {
        match parse_json(&body) {
            Ok(c) => (c, None),
            Err(e) => {
                // Authentication first: an anonymous client learns nothing.
                if let Err(auth) = authorize(app, req, None) {
                    return auth;
                }
                return e;
            }
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let form: Vec<(String, String)> = url_decode_form(&body);
        let token = form
            .iter()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.clone());
        match parse_form(&form) {
            Ok(c) => (c, token),
            Err(e) => return authorize(app, req, token.as_deref()).err().unwrap_or(e),
        }
    } else {
        if let Err(auth) = authorize(app, req, None) {
            return auth;
        }
        return error(
            415,
            "invalid_request",
            "Send application/x-www-form-urlencoded or application/json",
        );
    };
    if let Err(auth) = authorize(app, req, form_token.as_deref()) {
        return auth;
    }
    if create.content.trim().is_empty() {
        return error(400, "invalid_request", "content is required");
    }
    if create.content.len() > 100_000 {
        return error(400, "invalid_request", "content is limited to 100000 bytes");
    }
    let created = app.monitor.time(Function::NoteCreate, || {
        app.db
            .writer()
            .and_then(|c| c.create_note(&create.content, create.slug.as_deref()))
    });
    match created {
        Ok(note) => Response::empty_204()
            .with_status_code(201)
            .with_unique_header("Location", app.url(&format!("/notes/{}", note.slug))),
        Err(e) if e.is_disk_full() => {
            crate::db::log_disk_full(&e);
            error(
                503,
                "temporarily_unavailable",
                "The server's disk is full: the note was not stored; try again later",
            )
            .with_unique_header("Retry-After", "60")
        }
        Err(e) if e.is_busy() || e.is_unwritable() => {
            // Micropub clients retry a 503 that says when.
            error(
                503,
                "temporarily_unavailable",
                "The database is busy; try again shortly",
            )
            .with_unique_header("Retry-After", "2")
        }
        Err(e) => {
            crate::elog!("starpunk: micropub create failed: {e}");
            error(500, "server_error", "The note could not be stored")
        }
    }
}

/// Decodes an `application/x-www-form-urlencoded` body.
pub fn url_decode_form(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                        .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
                    match hex {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `GET /micropub?q=...`.
pub fn query(app: &App, req: &Request) -> Response {
    if let Err(e) = authorize(app, req, req.get_param("access_token").as_deref()) {
        return e;
    }
    match req.get_param("q").as_deref() {
        Some("config") => Response::json(
            &json!({ "syndicate-to": [], "q": ["config", "source", "syndicate-to"] }),
        ),
        Some("syndicate-to") => Response::json(&json!({ "syndicate-to": [] })),
        Some("source") => {
            let Some(url) = req.get_param("url") else {
                return error(400, "invalid_request", "q=source needs url");
            };
            let prefix = app.url("/notes/");
            let Some(slug) = url.strip_prefix(&prefix) else {
                return error(
                    400,
                    "invalid_request",
                    "That URL is not a note of this site",
                );
            };
            match app.db.conn().and_then(|c| c.note_by_slug(slug)) {
                Ok(Some(n)) => {
                    let all = json!({
                        "content": [n.content],
                        "published": [n.published_at],
                        "updated": [n.updated_at],
                        "url": [url],
                        "mp-slug": [n.slug],
                    });
                    let wanted: Vec<String> = req
                        .raw_query_string()
                        .split('&')
                        .filter_map(|p| p.split_once('='))
                        .filter(|(k, _)| *k == "properties[]" || *k == "properties%5B%5D")
                        .map(|(_, v)| v.to_string())
                        .collect();
                    let props = if wanted.is_empty() {
                        all
                    } else {
                        Value::Object(
                            all.as_object()
                                .into_iter()
                                .flatten()
                                .filter(|(k, _)| wanted.contains(k))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                        )
                    };
                    if wanted.is_empty() {
                        Response::json(&json!({ "type": ["h-entry"], "properties": props }))
                    } else {
                        Response::json(&json!({ "properties": props }))
                    }
                }
                Ok(None) => error(400, "invalid_request", "No note at that URL"),
                Err(_) => error(503, "temporarily_unavailable", "The database is busy"),
            }
        }
        _ => error(
            400,
            "invalid_request",
            "Supported queries: config, source, syndicate-to",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_form_creates() {
        let c =
            parse_json(br#"{"type":["h-entry"],"properties":{"content":["hi"],"mp-slug":["s"]}}"#)
                .unwrap();
        assert_eq!(
            c,
            Create {
                content: "hi".into(),
                slug: Some("s".into())
            }
        );
        let c =
            parse_json(br#"{"type":["h-entry"],"properties":{"content":[{"html":"<b>x</b>"}]}}"#)
                .unwrap();
        assert_eq!(c.content, "<b>x</b>");
        assert!(parse_json(b"nope").is_err());
        assert!(parse_json(br#"{"type":["h-event"],"properties":{}}"#).is_err());
        let form = url_decode_form(b"h=entry&content=hello+world%21&mp-slug=a%2Fb&bad=%zz&x=%");
        assert_eq!(
            parse_form(&form).unwrap(),
            Create {
                content: "hello world!".into(),
                slug: Some("a/b".into())
            }
        );
        assert!(form.contains(&("bad".into(), "%zz".into())));
        assert!(form.contains(&("x".into(), "%".into())));
    }
}
