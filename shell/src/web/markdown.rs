//! Markdown to HTML with pulldown-cmark; raw HTML in the source is escaped,
//! and links or images with script-capable schemes are neutralised.

use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag};

fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lower = url.trim_start().to_ascii_lowercase();
    if ["javascript:", "vbscript:", "data:", "file:"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        CowStr::Borrowed("#")
    } else {
        url
    }
}

/// Renders `source` to HTML safe to embed in a page.
pub fn render(source: &str) -> String {
    let parser = Parser::new_ext(
        source,
        Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES,
    )
    .map(|event| match event {
        // Raw HTML becomes text, so pulldown-cmark escapes it.
        Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::with_capacity(source.len() * 3 / 2);
    html::push_html(&mut out, parser);
    out
}

/// The first line of `source` as plain text, at most `max` characters: a
/// title for feeds.
pub fn summary(source: &str, max: usize) -> String {
    let line = source
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_escaped_and_markdown_renders() {
        let html = render("# Hi\n\n<script>alert(1)</script>\n\nsome *x* <b onclick=\"y\">b</b>");
        assert!(html.contains("<h1>Hi</h1>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("<em>x</em>"));
        assert!(!html.contains("<b "), "{html}");
    }

    #[test]
    fn script_links_are_neutralised() {
        let html = render("[a](javascript:alert(1)) ![i](data:text/html,x) [ok](https://e.x/)");
        assert!(!html.contains("javascript:"));
        assert!(!html.contains("data:"));
        assert!(html.contains("https://e.x/"));
    }

    #[test]
    fn summary_takes_first_line() {
        assert_eq!(summary("\n# Title here\nbody", 5), "Title…");
    }
}
