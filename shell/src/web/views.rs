//! The page layout and shared fragments (maud escapes every interpolation).

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The site stylesheet, served at `/style.css`.
pub const STYLE: &str = r#"
:root { --fg:#1d1d1f; --muted:#666; --accent:#0b5cad; --bg:#fff; --line:#ddd; --warn:#b00020; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 0 auto; max-width: 60rem; padding: 1rem; }
header.site { display: flex; flex-wrap: wrap; gap: 1rem; align-items: baseline; border-bottom: 1px solid var(--line); margin-bottom: 1rem; }
header.site h1 { font-size: 1.4rem; margin: .2rem 0; } header.site a { color: inherit; text-decoration: none; }
nav a { margin-right: .8rem; }
a { color: var(--accent); }
article.h-entry { border-bottom: 1px solid var(--line); padding: .6rem 0; }
.meta { color: var(--muted); font-size: .85rem; }
form.inline { display: inline; }
textarea { width: 100%; min-height: 8rem; font: inherit; }
input[type=text], input[type=password], input[type=search] { font: inherit; padding: .3rem; }
button { font: inherit; padding: .3rem .8rem; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .4rem; text-align: right; white-space: nowrap; vertical-align: top; }
th { vertical-align: bottom; }
/* Cells that may wrap at their <wbr> (paths, times, plans) on a narrow
   screen, so each column fits beside the first. */
td.wrap { white-space: normal; }
/* The first column names the row: it wraps between words only, and stays in
   view while a wide table scrolls sideways on a narrow screen. */
th:first-child, td:first-child { text-align: left; white-space: normal; min-width: 9rem; position: sticky; left: 0; background: var(--bg); }
div.sql, details.sql { font-size: .8rem; white-space: normal; margin: 0; }
details.sql > code { display: block; margin: .1rem 0 .3rem 1rem; max-width: 40rem; }
.estimate { background: #fff8e1; border-left: 3px solid #e0a800; padding: .5rem .7rem; }
abbr { text-decoration: none; font-weight: bold; cursor: help; }
details { margin: .4rem 0; } summary { cursor: pointer; }
details.more > summary { color: var(--accent); }
.scroll { overflow-x: auto; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(10rem, 1fr)); gap: .6rem; }
.card { border: 1px solid var(--line); border-radius: .4rem; padding: .5rem; }
.card > span, .card > small { display: block; color: var(--muted); }
.card > span { font-size: .85rem; }
.card b { display: block; font-size: 1.3rem; }
svg.spark { display: block; width: 100%; height: 1.8rem; margin: .2rem 0; }
/* Charts side by side in equal columns (auto-fill: a chart alone keeps a
   column's width), never wider than 32rem: their text (drawn for a phone)
   stays at 8 to 16 px. */
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr)); gap: 1rem; margin-top: 1rem; }
svg.chart, svg.timeline { max-width: 32rem; }
.flag { color: var(--warn); font-weight: bold; }
nav.ranges { margin: .3rem 0 .8rem; }
.alert { background: #fde8ea; border-left: 3px solid var(--warn); padding: .5rem .7rem; }
.error { color: var(--warn); }
svg { max-width: 100%; height: auto; }
section { margin: 1.5rem 0; }
"#;

/// A whole page.
pub fn page(site_name: &str, title: &str, extra_head: Option<Markup>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " - " (site_name) }
                link rel="stylesheet" href="/style.css";
                // No favicon request (and no 404 in the browser console).
                link rel="icon" href="data:,";
                link rel="alternate" type="application/rss+xml" title=(site_name) href="/feed.xml";
                link rel="alternate" type="application/atom+xml" title=(site_name) href="/feed.atom";
                link rel="alternate" type="application/feed+json" title=(site_name) href="/feed.json";
                link rel="micropub" href="/micropub";
                @if let Some(extra) = extra_head { (extra) }
            }
            body {
                header.site {
                    h1 { a href="/" { (site_name) } }
                    nav {
                        a href="/" { "Notes" }
                        a href="/search" { "Search" }
                        a href="/feed.xml" { "RSS" }
                        a href="/admin" { "Admin" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A note's rendered HTML (already safe: see `markdown::render`).
pub fn trusted_html(html: String) -> PreEscaped<String> {
    PreEscaped(html)
}
