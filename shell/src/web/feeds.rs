//! RSS 2.0, Atom 1.0 and JSON Feed 1.1 of the newest notes, with ETags.

use rouille::{Request, Response};
use time::format_description::well_known::Rfc2822;

use super::markdown;
use super::{App, WebResult};
use crate::db::notes::{parse_time, Note};
use crate::monitoring::Function;

/// Notes in a feed.
pub const FEED_SIZE: i64 = 20;

/// Escapes XML text and attribute values, dropping characters XML 1.0 forbids.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Serves one feed: 304 when the client's `If-None-Match` names the current
/// version, else the newest notes rendered by `render` (timed as feed
/// generation), with an `ETag`.
fn serve(
    app: &App,
    req: &Request,
    kind: &str,
    content_type: &'static str,
    render: impl FnOnce(&[Note]) -> String,
) -> WebResult {
    let conn = app.db.conn()?;
    let (newest, count) = conn.feed_version()?;
    let etag = format!(
        "\"{}\"",
        &crate::web::auth::sha256_hex(&format!("{kind}|{newest}|{count}|{}", app.site.url))[..32]
    );
    let matches = req.header("If-None-Match").is_some_and(|h| {
        h.split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag)
    });
    if matches {
        return Ok(Response::text("")
            .with_status_code(304)
            .with_unique_header("ETag", etag));
    }
    let notes = conn.published_notes(FEED_SIZE, 0)?;
    drop(conn);
    let body = app
        .monitor
        .time(Function::FeedGeneration, || render(&notes));
    Ok(Response::from_data(content_type, body)
        .with_unique_header("ETag", etag)
        .with_unique_header("Cache-Control", "public, max-age=60"))
}

fn rfc2822(rfc3339: &str) -> String {
    parse_time(rfc3339)
        .and_then(|t| t.format(&Rfc2822).ok())
        .unwrap_or_default()
}

/// `GET /feed.xml`.
pub fn rss(app: &App, req: &Request) -> WebResult {
    serve(
        app,
        req,
        "rss",
        "application/rss+xml; charset=utf-8",
        |notes| {
            let site = xml_escape(&app.site.url);
            let name = xml_escape(&app.site.name);
            let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <rss version=\"2.0\" xmlns:atom=\"http://www.w3.org/2005/Atom\">\n<channel>\n\
             <title>{name}</title>\n<link>{site}/</link>\n<description>Notes from {name}</description>\n\
             <atom:link href=\"{site}/feed.xml\" rel=\"self\" type=\"application/rss+xml\"/>\n"
        );
            if let Some(n) = notes.first() {
                out.push_str(&format!(
                    "<lastBuildDate>{}</lastBuildDate>\n",
                    rfc2822(&n.updated_at)
                ));
            }
            for n in notes {
                let url = xml_escape(&app.url(&format!("/notes/{}", n.slug)));
                out.push_str(&format!(
                "<item>\n<title>{}</title>\n<link>{url}</link>\n<guid isPermaLink=\"true\">{url}</guid>\n\
                 <pubDate>{}</pubDate>\n<description>{}</description>\n</item>\n",
                xml_escape(&markdown::summary(&n.content, 80)),
                rfc2822(&n.published_at),
                xml_escape(&markdown::render(&n.content)),
            ));
            }
            out.push_str("</channel>\n</rss>\n");
            out
        },
    )
}

/// `GET /feed.atom`.
pub fn atom(app: &App, req: &Request) -> WebResult {
    serve(
        app,
        req,
        "atom",
        "application/atom+xml; charset=utf-8",
        |notes| {
            let site = xml_escape(&app.site.url);
            let name = xml_escape(&app.site.name);
            let updated = notes
                .iter()
                .map(|n| n.updated_at.as_str())
                .max()
                .unwrap_or("1970-01-01T00:00:00Z");
            let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
             <id>{site}/</id>\n<title>{name}</title>\n<updated>{}</updated>\n\
             <link rel=\"self\" type=\"application/atom+xml\" href=\"{site}/feed.atom\"/>\n\
             <link rel=\"alternate\" type=\"text/html\" href=\"{site}/\"/>\n<author><name>{name}</name></author>\n",
            xml_escape(updated)
        );
            for n in notes {
                let url = xml_escape(&app.url(&format!("/notes/{}", n.slug)));
                out.push_str(&format!(
                "<entry>\n<id>{url}</id>\n<title>{}</title>\n<published>{}</published>\n<updated>{}</updated>\n\
                 <link rel=\"alternate\" type=\"text/html\" href=\"{url}\"/>\n<content type=\"html\">{}</content>\n</entry>\n",
                xml_escape(&markdown::summary(&n.content, 80)),
                xml_escape(&n.published_at),
                xml_escape(&n.updated_at),
                xml_escape(&markdown::render(&n.content)),
            ));
            }
            out.push_str("</feed>\n");
            out
        },
    )
}

/// `GET /feed.json`.
pub fn json(app: &App, req: &Request) -> WebResult {
    serve(
        app,
        req,
        "json",
        "application/feed+json; charset=utf-8",
        |notes| {
            let items: Vec<serde_json::Value> = notes
                .iter()
                .map(|n| {
                    let url = app.url(&format!("/notes/{}", n.slug));
                    serde_json::json!({
                        "id": url,
                        "url": url,
                        "title": markdown::summary(&n.content, 80),
                        "content_html": markdown::render(&n.content),
                        "date_published": n.published_at,
                        "date_modified": n.updated_at,
                    })
                })
                .collect();
            serde_json::json!({
                "version": "https://jsonfeed.org/version/1.1",
                "title": app.site.name,
                "home_page_url": app.url("/"),
                "feed_url": app.url("/feed.json"),
                "authors": [{ "name": app.site.name, "url": app.url("/") }],
                "language": "en",
                "items": items,
            })
            .to_string()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_handles_markup_and_control_chars() {
        assert_eq!(
            xml_escape("<a href=\"x\">&'\u{0}\u{1b}ok\n"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;ok\n"
        );
    }

    #[test]
    fn dates_convert() {
        assert_eq!(
            rfc2822("2026-11-26T20:35:12Z"),
            "Thu, 26 Nov 2026 20:35:12 +0000"
        );
        assert!(parse_time("2026-11-26T20:35:12Z").is_some());
    }
}
