//! `/admin/performance`: the dashboard (maud, inline SVG, no JavaScript),
//! and its JSON and CSV exports. All three render one `PerfSnapshot`.

use maud::{html, Markup};
use rouille::{Request, Response};

use super::auth::to_login;
use super::charts::{bar_chart, sparkline, time_chart, timeline_chart, Axis, Line, Unit};
use super::ratelimit::RateLimiter;
use super::views;
use super::{App, WebError, WebResult};
use crate::monitoring::ticker::alerts::RuleView;
use crate::monitoring::ticker::trend::{MinutePoint, PeriodFigures};
use crate::monitoring::views::range::{Compare, Range};
use crate::monitoring::views::{
    rfc3339, DatabaseView, EndpointStats, PatternStats, PerfSnapshot, PlanView, RoutePattern,
    RssDelta, SlowPattern, SlowQueryView, WorstRequest,
};

/// Seconds between automatic refreshes of the page.
pub const REFRESH_SECS: u32 = 30;

/// The checks every dashboard route makes: enabled, rate limit, session.
/// `Err` carries the response to send instead.
fn guard(app: &App, req: &Request, html: bool) -> Result<Result<(), Response>, WebError> {
    if !app.monitor.config().dashboard_enabled {
        return Err(WebError::NotFound);
    }
    if let Err(wait) = app.dashboard_limit.check(req.remote_addr().ip()) {
        return Ok(Err(RateLimiter::too_many(wait)));
    }
    if app.session(req)?.is_none() {
        return Ok(Err(if html {
            to_login()
        } else {
            Response::text("Log in at /admin/login\n")
                .with_status_code(401)
                .with_unique_header("WWW-Authenticate", "Cookie realm=\"starpunk admin\"")
        }));
    }
    Ok(Ok(()))
}

/// The live snapshot, with the database layer's figures.
pub fn snapshot(app: &App) -> PerfSnapshot {
    app.monitor.snapshot(database_view(app))
}

/// The database layer's figures.
fn database_view(app: &App) -> DatabaseView {
    let stats = app
        .db
        .conn()
        .map(|c| c.stats(&app.site.data_dir))
        .unwrap_or_default();
    DatabaseView {
        pool_in_use: app.db.pool_in_use(),
        pool_size: app.db.pool_size(),
        queries_per_second: 0.0,
        cache_hit_rate: stats.cache_hit_rate,
        db_bytes: stats.db_bytes,
        wal_bytes: stats.wal_bytes,
    }
}

/// `?range=`, or a 400 naming the accepted values.
fn range_of(req: &Request) -> Result<Range, Response> {
    let v = req.get_param("range");
    Range::parse(v.as_deref()).ok_or_else(|| {
        Response::text("range must be one of 15m, 1h, 24h, 7d, 30d\n").with_status_code(400)
    })
}

/// The snapshot for `range`: live, or from the history (`Err`: why not).
fn snapshot_for(app: &App, range: Range) -> Result<PerfSnapshot, String> {
    match range {
        Range::Live => Ok(snapshot(app)),
        _ => app.monitor.range_snapshot(range, database_view(app)),
    }
}

/// `GET /admin/performance.json?range=`.
pub fn json(app: &App, req: &Request) -> WebResult {
    if let Err(r) = guard(app, req, false)? {
        return Ok(r);
    }
    let range = match range_of(req) {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    Ok(match snapshot_for(app, range) {
        Ok(s) => Response::from_data("application/json", json_body(&s)),
        Err(why) => Response::from_data(
            "application/json",
            serde_json::json!({ "error": why, "range": range.name() }).to_string(),
        )
        .with_status_code(404),
    }
    .with_no_cache())
}

/// The JSON export's body.
pub fn json_body(s: &PerfSnapshot) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

/// Quotes a CSV field when needed (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The routes and patterns of a range view, one line each.
fn range_csv(s: &PerfSnapshot) -> String {
    let mut out = String::from(
        "kind,name,count,errors_5xx,errors_4xx,mean_ms,p50_ms,p95_ms,p99_ms,max_ms,total_ms,rows\n",
    );
    for e in &s.endpoints {
        out.push_str(&format!(
            "route,{},{},{},{},{},{},{},{},{},{},\n",
            csv_field(&e.name),
            e.count,
            e.errors_5xx,
            e.client_errors_4xx,
            e.mean_ms,
            e.p50_ms,
            e.p95_ms,
            e.p99_ms,
            e.max_ms,
            round3(e.mean_ms * e.count as f64),
        ));
    }
    for q in &s.query_patterns {
        out.push_str(&format!(
            "pattern,{},{},,,{},,,{},,{},{}\n",
            csv_field(&q.pattern),
            q.calls,
            q.mean_ms,
            q.p99_ms,
            q.total_ms,
            q.rows,
        ));
    }
    out
}

/// `GET /admin/performance.csv`: the ring's records, oldest first; with
/// `?range=` (other than `15m`), the routes and patterns over the range
/// from the history.
pub fn csv(app: &App, req: &Request) -> WebResult {
    if let Err(r) = guard(app, req, false)? {
        return Ok(r);
    }
    let range = match range_of(req) {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    if range != Range::Live {
        return Ok(match snapshot_for(app, range) {
            Ok(s) => Response::from_data("text/csv; charset=utf-8", range_csv(&s))
                .with_content_disposition_attachment(&format!(
                    "starpunk-performance-{}.csv",
                    range.name()
                )),
            Err(why) => Response::text(format!("{why}\n")).with_status_code(404),
        }
        .with_no_cache());
    }
    // `kept`: "sampled" (chosen by the sampler) or "forced" (left out by
    // it but kept because it failed or ran a slow statement).
    let mut out = String::from(
        "timestamp,category,operation,parent,duration_ms,status,bytes,rows,memory_delta,request_id,kept\n",
    );
    if let Some(inner) = app.monitor.inner() {
        let reg = inner.recorder.registry();
        let anchor = inner.recorder.anchor();
        let name = |op| reg.get(op).map_or("", |e| e.name.as_str());
        for r in inner.records() {
            out.push_str(&format!(
                "{},{},{},{},{:.3},{},{},{},{},{},{}\n",
                rfc3339(anchor.to_unix_ns(r.timestamp_ns)),
                r.category,
                csv_field(name(r.operation)),
                csv_field(name(r.parent)),
                r.duration_ns as f64 / 1e6,
                r.status,
                r.bytes,
                r.rows,
                r.memory_delta,
                r.request_id,
                if r.forced { "forced" } else { "sampled" },
            ));
        }
    }
    Ok(Response::from_data("text/csv; charset=utf-8", out)
        .with_content_disposition_attachment("starpunk-performance.csv")
        .with_no_cache())
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Mebibytes with one decimal.
fn mib(n: f64) -> String {
    format!("{:.1} MiB", n / (1024.0 * 1024.0))
}

/// A signed change of memory in MiB with one decimal: "+3.1 MiB",
/// "-0.4 MiB", and "0.0 MiB" for a change that rounds to nothing (never
/// "-0.0").
fn mib_change(bytes: f64) -> String {
    let tenths = (bytes / (1024.0 * 1024.0) * 10.0).round();
    if tenths == 0.0 {
        "0.0 MiB".into()
    } else {
        format!("{:+.1} MiB", tenths / 10.0)
    }
}

/// A signed change of memory, in KiB (a request's change is small).
fn kib_signed(n: f64) -> String {
    format!("{:+.1} KiB", n / 1024.0)
}

/// An integer with thousands separators.
fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percent(share: f64) -> String {
    format!("{:.2} %", share * 100.0)
}

fn duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h {} min", s / 86_400, s / 3600 % 24, s / 60 % 60),
    }
}

/// The largest part of a request, in words.
fn largest_part(w: &WorstRequest) -> String {
    let l = &w.largest;
    match l.kind.as_str() {
        "sql" => format!("{} ms in SQL {} ({})", l.duration_ms, l.name, l.location),
        "function" => format!("{} ms in {} ({})", l.duration_ms, l.name, l.location),
        "queued" => format!(
            "{} ms waiting in the front before its handler",
            l.duration_ms
        ),
        "front" => format!(
            "{} ms in the HTTP front, which answered it itself (no handler ran)",
            l.duration_ms
        ),
        _ => format!(
            "{} ms in the handler's own code (outside SQL and named functions)",
            l.duration_ms
        ),
    }
}

/// A request's summary line, where its time went, and its timeline,
/// folded (no JavaScript).
fn request_details(w: &WorstRequest, open: bool) -> Markup {
    request_details_at(w, open, true)
}

/// [`request_details`], with the request's anchor (`id`) only when
/// `anchor`: a request shown in two lists (a 5xx that is also its route's
/// slowest) is linked to where it first appears.
fn request_details_at(w: &WorstRequest, open: bool, anchor: bool) -> Markup {
    let p = &w.parts;
    let b = &w.before_handler;
    let statements = w.timeline.iter().filter(|s| s.kind == "sql").count() as u64;
    html! {
        details id=[anchor.then_some(&w.id)] open[open] {
            summary { (w.route) ": " (w.duration_ms) " ms, status " (w.status) ", " (w.at)
                @if w.kept_because.iter().any(|b| b == "slow_statement") { " " span.flag { "slow SQL" } }
                @if w.kept_because.iter().any(|b| b == "error") { " " span.flag { "5xx" } } }
            p.meta { (w.duration_ms) " ms = SQL " (p.sql_ms) " ms (" (count_of(statements, "statement")) ")"
                " + named functions " (p.functions_ms) " ms"
                @if p.unlisted > 0 { " + " (p.unlisted) " more spans " (p.unlisted_ms) " ms" }
                " + the handler's own code " (p.own_code_ms) " ms"
                @if p.front_ms > 0.0 { " + answered by the HTTP front itself (no handler ran) " (p.front_ms) " ms" } ". "
                @if b.body_ms + b.queued_ms > 0.0 {
                    "Before the handler (not in the " (w.duration_ms) " ms): receiving the body " (b.body_ms)
                    " ms, waiting for a handler thread " (b.queued_ms) " ms. " }
                "Most of it: " (largest_part(w)) "." }
            (timeline_chart(w))
            @if !w.timeline.is_empty() {
                div.scroll { table {
                    tr { th { "What" } th { "+ms" } th { "ms" } th { "Code" } }
                    @for sp in &w.timeline { tr {
                        td { @if sp.depth > 0 { (format!("{} ", "\u{21b3}".repeat(sp.depth as usize))) }
                            @if sp.kind == "sql" { (sql(&sp.name)) } @else { (sp.name) } }
                        td { (sp.offset_ms) } td { (sp.duration_ms) }
                        td.wrap { (path(&sp.location)) }
                    } }
                } }
            }
            p.meta { "Blue: SQL statements; orange: named functions (authentication, search, feed generation, note writes); "
                "a statement inside a named function (\u{21b3}) is part of its time; grey: the whole request." }
        }
    }
}

/// The RSS change per request of a route: mean and worst, marked as an
/// estimate ("~", and from how many requests) when sampled.
fn rss_delta(d: &RssDelta) -> Markup {
    html! {
        @if d.measured == 0 { "–" }
        @else {
            @if d.estimated { abbr title={ "estimated from " (int(d.measured)) " of " (int(d.of)) " requests (sampled)" } { "~" } }
            (kib_signed(d.mean_bytes)) " / " (kib_signed(d.max_bytes as f64))
            @if d.estimated { br; small { "from " (int(d.measured)) " of " (int(d.of)) } }
        }
    }
}

/// Rows a long table shows before the rest goes behind an expander.
const TOP_ROWS: usize = 10;
/// Rows a table shows at most, expander included; the JSON export has
/// them all.
const MAX_ROWS: usize = 100;

/// A table: its first `top` rows, the rest (up to [`MAX_ROWS`] in all)
/// behind an expander that works without JavaScript (`details`).
fn long_table<T>(
    head: &Markup,
    rows: &[T],
    top: usize,
    noun: &str,
    row: impl Fn(&T) -> Markup,
) -> Markup {
    let table = |rows: &[T]| {
        html! { div.scroll { table { thead { (head) } tbody { @for r in rows { (row(r)) } } } } }
    };
    let shown = rows.len().min(MAX_ROWS);
    html! {
        (table(&rows[..shown.min(top)]))
        @if shown > top {
            details.more {
                summary { "Show " (shown - top) " more " (noun) }
                (table(&rows[top..shown]))
                @if rows.len() > shown {
                    p.meta { "And " (int((rows.len() - shown) as u64)) " more in the "
                        a href="/admin/performance.json" { "JSON export" } "." }
                }
            }
        }
    }
}

/// Where SQL may wrap inside a token ("coalesce(max(updated_at),").
const SQL_BREAKS: &[char] = &[',', '('];
/// Where a query plan's step may wrap inside a token
/// ("sqlite_autoindex_sessions_1").
const PLAN_BREAKS: &[char] = &['_', ',', '('];

/// `text` with a line-break opportunity (`<wbr>`) after each of `after`:
/// long SQL tokens, paths and times wrap there on a narrow screen rather
/// than widen their column (a table cell that may wrap is `td.wrap`).
fn breakable(text: &str, after: &[char]) -> Markup {
    html! {
        @for (i, piece) in text.split_inclusive(after).enumerate() {
            @if i > 0 { wbr; }
            (piece)
        }
    }
}

/// A code location ("shell/src/db/notes.rs:42"), breakable after each `/`.
fn path(location: &str) -> Markup {
    html! { code { (breakable(location, &['/'])) } }
}

/// An RFC 3339 time, breakable between its date and its time.
fn time_at(at: &str) -> Markup {
    breakable(at, &['T'])
}

/// A SQL pattern: whole when short, otherwise its beginning (cut between
/// words) with the full text on demand.
fn sql(pattern: &str) -> Markup {
    counted_sql("", pattern)
}

/// [`sql`] after a `prefix` ("3 x ") that stays on the pattern's line.
fn counted_sql(prefix: &str, pattern: &str) -> Markup {
    const SHORT: usize = 48;
    if pattern.chars().count() <= SHORT {
        return html! { div.sql { (prefix) code { (breakable(pattern, SQL_BREAKS)) } } };
    }
    let head: String = pattern.chars().take(SHORT).collect();
    let head = match head.rfind(' ') {
        Some(i) if i > SHORT / 3 => &head[..i],
        _ => &head[..],
    };
    html! {
        details.sql { summary { (prefix) code { (breakable(head, SQL_BREAKS)) " ..." } } code { (breakable(pattern, SQL_BREAKS)) } }
    }
}

/// `n` and a noun, plural when `n` is not one.
fn count_of(n: u64, noun: &str) -> String {
    format!("{} {noun}{}", int(n), if n == 1 { "" } else { "s" })
}

/// How `now` compares with `before` in words, or "" when there is no
/// earlier period to compare with.
fn change(now: f64, before: f64, before_seconds: f64, unit: &str) -> String {
    if before_seconds < 60.0 {
        return String::new();
    }
    let against = format!("the {} before", duration(before_seconds));
    if before <= 0.0 {
        return if now > 0.0 {
            format!("none in {against}")
        } else {
            format!("as in {against}")
        };
    }
    let pct = (now - before) / before * 100.0;
    if pct.abs() < 10.0 {
        format!("steady against {against}")
    } else {
        format!(
            "{} {:.0} % on {against} ({}{unit})",
            if pct > 0.0 { "up" } else { "down" },
            pct.abs(),
            round3(before)
        )
    }
}

/// A card's trend: the last minutes' figure itself, then its change (a
/// card's headline covers the whole window, so the change alone would
/// compare two figures the reader cannot see). Latency is compared only
/// over 20 requests or more on both sides: a p99 of ten requests is noise.
fn card_trend(
    now: &PeriodFigures,
    before: &PeriodFigures,
    values: (f64, f64),
    unit: &str,
    latency: bool,
) -> String {
    if latency && (now.requests < 20 || before.requests < 20) {
        return String::new();
    }
    let c = change(values.0, values.1, before.seconds, unit);
    if c.is_empty() {
        return c;
    }
    format!(
        "Last {}: {}{unit}, {c}.",
        duration(now.seconds),
        round3(values.0)
    )
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Sentences on what changed: the last five minutes against the minutes
/// before, routes slower now than since start, new errors and slow
/// statements.
fn changes(s: &PerfSnapshot) -> Vec<String> {
    let (now, before) = (&s.overview.last_5_minutes, &s.overview.before);
    let mut out = Vec::new();
    let compare = |name: &str, a: f64, b: f64, unit: &str| {
        let c = change(a, b, before.seconds, unit);
        (c.starts_with("up") || c.starts_with("down")).then(|| {
            format!(
                "{name}: {}{unit} in the last {}, {c}.",
                round3(a),
                duration(now.seconds)
            )
        })
    };
    if before.requests >= 20 && now.requests >= 20 {
        out.extend(compare(
            "Requests per second",
            now.requests_per_second,
            before.requests_per_second,
            "/s",
        ));
        out.extend(compare(
            "p99 response time",
            now.p99_ms,
            before.p99_ms,
            " ms",
        ));
    }
    let since: std::collections::HashMap<&str, &EndpointStats> =
        s.endpoints.iter().map(|e| (e.name.as_str(), e)).collect();
    for r in &s.endpoints_recent {
        if let Some(all) = since.get(r.name.as_str()) {
            // Only when since start reaches further back than the window.
            if r.count >= 10
                && all.count >= r.count + 10
                && r.p99_ms >= 1.5 * all.p99_ms
                && r.p99_ms >= 1.0
            {
                out.push(format!(
                    "{} is slower now: p99 {} ms over the last {} against {} ms since start.",
                    r.name,
                    r.p99_ms,
                    duration(s.window_seconds),
                    all.p99_ms
                ));
            }
        }
    }
    let w = &s.overview.window;
    if w.errors_5xx > 0 {
        out.push(format!(
            "{} (5xx) in the last {}: see Recent errors below.",
            count_of(w.errors_5xx, "server error"),
            duration(w.seconds)
        ));
    }
    if w.slow_queries > 0 {
        out.push(format!(
            "{} (over {} s) in the last {}: see Slow queries below.",
            count_of(w.slow_queries, "slow statement"),
            s.config.slow_query_threshold,
            duration(w.seconds)
        ));
    }
    out
}

/// The values of `(time, value)` points.
fn values(points: &[(f64, f64)]) -> Vec<f64> {
    points.iter().map(|p| p.1).collect()
}

/// The time axis of the overview's charts, and what one point covers.
fn axis_of(s: &PerfSnapshot, end: f64) -> (Axis, &'static str) {
    let Some(r) = &s.range else {
        return (Axis::live(end), "minute");
    };
    let span = (r.to_unix - r.from_unix) as f64;
    let (tick, unit, caption, per) = match r.range.as_str() {
        "1h" => (
            900.0,
            (60.0, "min"),
            "minutes before now, one point per minute",
            "minute",
        ),
        "24h" => (
            6.0 * 3600.0,
            (3600.0, "h"),
            "hours before now, one point per 15 minutes",
            "15 minutes",
        ),
        "7d" => (
            86_400.0,
            (86_400.0, "d"),
            "days before now, one point per 2 hours",
            "2 hours",
        ),
        _ => (
            7.0 * 86_400.0,
            (86_400.0, "d"),
            "days before now, one point per 12 hours",
            "12 hours",
        ),
    };
    let axis = Axis {
        end: r.to_unix as f64,
        span,
        tick,
        unit,
        point: r.bucket_seconds as f64,
        caption,
        marks: r
            .starts
            .iter()
            .map(|st| (st.at_unix as f64, format!("start {}", st.version)))
            .collect(),
        marks_noun: "starts",
    };
    (axis, per)
}

/// A setting's name (and value) as code that a narrow screen may break
/// after an underscore or before the `=`, never inside a word: names such
/// as `STARPUNK_PERF_SLOW_QUERY_THRESHOLD` are wider than a phone's card.
fn setting(text: &str) -> Markup {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['_', '=']) {
        let cut = if rest.as_bytes()[i] == b'_' { i + 1 } else { i };
        let cut = if cut == 0 { 1 } else { cut };
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    html! {
        code.setting {
            @for (i, piece) in pieces.iter().enumerate() {
                @if i > 0 { wbr; }
                (piece)
            }
        }
    }
}

/// The overview's four figures with their trends, and its charts.
fn overview(s: &PerfSnapshot) -> Markup {
    let o = &s.overview;
    let (w, now, before) = (&o.window, &o.last_5_minutes, &o.before);
    let end = o
        .points
        .last()
        .map_or(0.0, |p| p.start_unix as f64 + p.seconds);
    // Each point sits at the middle of the time it covers.
    let at = |p: &MinutePoint| p.start_unix as f64 + p.seconds / 2.0;
    let served: Vec<_> = o.points.iter().filter(|p| p.requests > 0).collect();
    let series = |f: &dyn Fn(&MinutePoint) -> f64| -> Vec<(f64, f64)> {
        o.points.iter().map(|p| (at(p), f(p))).collect()
    };
    let latency = |f: &dyn Fn(&MinutePoint) -> f64| -> Vec<(f64, f64)> {
        served.iter().map(|p| (at(p), f(p))).collect()
    };
    let rss: Vec<(f64, f64)> = s
        .memory
        .samples
        .iter()
        .map(|p| (p[0] as f64, p[1] as f64))
        .collect();
    // The change over the samples the chart draws, live and over a range
    // alike: the last minus the first (the snapshot's `growth_bytes`).
    let rss_change = mib_change(s.memory.growth_bytes as f64);
    let span = duration(w.seconds);
    let (axis, per) = axis_of(s, end);
    html! {
        @if let Some(r) = &s.range {
            @let label = Range::parse(Some(&r.range)).map_or("", Range::label);
            h3 { "The last " (label) " (from the history)" }
            p.meta { "Every figure here covers the last " (label)
                @if (r.covered_seconds as f64) < (r.to_unix - r.from_unix) as f64 - 120.0 {
                    " (the history holds " (duration(r.covered_seconds as f64)) " of it)" }
                ", one point per " (per) "; percentiles merged from the stored distributions, not averaged. "
                "Dashed lines mark starts of the blog." }
        } @else {
            h3 { "Now: the last " (span) }
            p.meta { "Every figure here covers the last " (span) " (one point per minute, the current minute at the right), "
                "counting every request at any sample rate." }
        }
        div.cards {
            div.card {
                span { "Requests per second" }
                b { (format!("{:.2}", w.requests_per_second)) "/s" }
                (sparkline("requests per second, minute by minute", &values(&series(&|p| p.requests_per_second))))
                small { (count_of(w.requests, "request")) ". " (card_trend(now, before, (now.requests_per_second, before.requests_per_second), "/s", false)) }
            }
            div.card {
                span { "p99 response time" }
                b { (w.p99_ms) " ms" }
                (sparkline("p99 response time, minute by minute", &values(&latency(&|p| p.p99_ms))))
                small { "99 % of requests were faster; p50 " (w.p50_ms) " ms. " (card_trend(now, before, (now.p99_ms, before.p99_ms), " ms", true)) }
            }
            div.card {
                span { "Error rate (5xx / all requests)" }
                b { (percent(w.error_rate)) }
                (sparkline("server errors per minute", &values(&series(&|p| p.errors_5xx as f64))))
                small { (count_of(w.errors_5xx, "server error")) " of " (count_of(w.requests, "request")) "; 4xx (client errors, not counted): " (int(w.client_errors_4xx)) }
            }
            div.card {
                span { "Memory (RSS)" }
                @if s.range.is_some() {
                    b { (mib(s.memory.rss_bytes as f64)) }
                    (sparkline("resident memory over the range", &values(&rss)))
                    small { "now; " (rss_change) " over the range (its first sample to its last)" }
                } @else if s.memory.tracking {
                    b { (mib(s.memory.rss_bytes as f64)) }
                    (sparkline("resident memory, every 10 s", &values(&rss)))
                    small { (rss_change) " over the last " (duration(s.memory.window_seconds as f64)) "; peak since start " (mib(s.memory.hwm_bytes as f64)) }
                } @else {
                    b { "off" }
                    small { (setting("STARPUNK_PERF_MEMORY_TRACKING=false")) }
                }
            }
        }
        div.charts {
            (time_chart(&format!("Requests per second (each {per})"), &[Line {
                name: "requests/s", colour: "#0b5cad", points: series(&|p| p.requests_per_second), bars: false,
            }], &axis, true, Unit { scale: 1.0, suffix: "/s", whole: false }))
            (time_chart(&format!("Response time, ms (p50 and p99 of each {per})"), &[
                Line { name: "p99", colour: "#c05a00", points: latency(&|p| p.p99_ms), bars: false },
                Line { name: "p50", colour: "#0b5cad", points: latency(&|p| p.p50_ms), bars: false },
            ], &axis, true, Unit { scale: 1.0, suffix: " ms", whole: false }))
            (time_chart(&format!("Errors per {per} (5xx server, 4xx client)"), &[
                Line { name: "5xx", colour: "#b00020", points: series(&|p| p.errors_5xx as f64), bars: true },
                Line { name: "4xx", colour: "#999999", points: series(&|p| p.client_errors_4xx as f64), bars: true },
            ], &axis, true, Unit { scale: 1.0, suffix: "", whole: true }))
            @if s.memory.tracking || s.range.is_some() {
                (time_chart(if s.range.is_some() { "Memory (RSS), MiB" } else { "Memory (RSS), MiB (a sample every 10 s)" }, &[Line {
                    name: "RSS", colour: "#0b5cad", points: rss, bars: false,
                }], &axis, false, Unit { scale: 1024.0 * 1024.0, suffix: " MiB", whole: false }))
            }
        }
    }
}

/// The head and rows of a per-route (or per-function) latency table.
fn endpoint_table(what: &str, noun: &str, rows: &[EndpointStats], with_responses: bool) -> Markup {
    let head = html! { tr {
        th { (what) } th { "Count" } th { "Mean ms" } th { "p50 ms" } th { "p95 ms" } th { "p99 ms" } th { "Max ms" }
        @if with_responses { th { "Mean size" } th { "5xx" } th { "4xx" } th { "Statuses" } }
    } };
    long_table(&head, rows, TOP_ROWS, noun, |e| {
        html! { tr {
            td { (e.name) } td { (int(e.count)) } td { (e.mean_ms) } td { (e.p50_ms) } td { (e.p95_ms) }
            td { (e.p99_ms) } td { (e.max_ms) }
            @if with_responses {
                td { (bytes(e.bytes_mean as u64)) }
                td { (int(e.errors_5xx)) }
                td { (int(e.client_errors_4xx)) }
                td { @for (i, (code, n)) in e.status.iter().enumerate() { @if i > 0 { br; } (code) ": " (int(*n)) } }
            }
        } }
    })
}

/// The RSS change per request of each route that has one (memory
/// tracking on): a table of its own in the memory section, as the routes
/// table with it would not fit a 1,280 px screen.
fn rss_table(endpoints: &[EndpointStats]) -> Markup {
    let rows: Vec<(&str, &RssDelta)> = endpoints
        .iter()
        .filter_map(|e| Some((e.name.as_str(), e.rss_delta.as_ref()?)))
        .collect();
    let head = html! { tr { th { "Route" } th { "RSS change per request" br; "(mean / worst)" } } };
    long_table(&head, &rows, TOP_ROWS, "routes", |(name, d)| {
        html! { tr { td { (name) } td { (rss_delta(d)) } } }
    })
}

/// The slowest routes over the recent window, with their p99 since start.
fn slowest_routes(s: &PerfSnapshot) -> Markup {
    let since: std::collections::HashMap<&str, f64> = s
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.p99_ms))
        .collect();
    let head = html! { tr {
        th { "Route" } th { "Requests" } th { "p50 ms" } th { "p95 ms" } th { "p99 ms" } th { "Max ms" } th { "p99 since start" }
    } };
    let row = |e: &EndpointStats| {
        html! { tr {
            td { (e.name) } td { (int(e.count)) } td { (e.p50_ms) } td { (e.p95_ms) } td { (e.p99_ms) } td { (e.max_ms) }
            td { @match since.get(e.name.as_str()) { Some(p) => { (p) " ms" }, None => "-" } }
        } }
    };
    html! {
        h3 { "Slowest routes, last " (duration(s.window_seconds)) }
        @if s.endpoints_recent.is_empty() { p { "No requests in the last " (duration(s.window_seconds)) "." } }
        @else { (long_table(&head, &s.endpoints_recent, 5, "routes", row)) }
    }
}

/// A rule's value or threshold with its unit ("12 ms", "0/s", "1.5 %").
fn with_unit(v: f64, unit: &str) -> String {
    if unit.starts_with('/') {
        format!("{v}{unit}")
    } else {
        format!("{v} {unit}")
    }
}

/// What a rule's state means, in words: for how long its condition has
/// held (or been false) of the time it needs.
fn rule_state_words(r: &RuleView) -> String {
    let of = format!(
        "{} of {}",
        duration(r.state_seconds),
        duration(r.for_seconds)
    );
    match r.state {
        "pending" => format!("above the threshold for {of}"),
        "firing" => match &r.since {
            Some(since) => format!(
                "above the threshold, firing since {since} ({})",
                duration(r.state_seconds)
            ),
            None => "above the threshold".into(),
        },
        "resolving" => format!("below the threshold for {of}"),
        _ => "below the threshold".into(),
    }
}

/// Firing and resolving rules, shown above everything else, each with
/// its state in words.
fn firing(s: &PerfSnapshot) -> Markup {
    html! {
        @for r in s.alerts.rules.iter().filter(|r| r.state == "firing" || r.state == "resolving") {
            p.alert { b { "Alert " (r.state) ": " } code { (r.rule) } " — " (rule_state_words(r))
                "; last minute " (with_unit(r.value, r.unit)) ", threshold " (with_unit(r.threshold, r.unit))
                @if r.state == "resolving" { @if let Some(since) = &r.since { "; firing since " (since) } } "." }
        }
    }
}

/// The alert rules, their states and recent events.
fn alerts_section(s: &PerfSnapshot) -> Markup {
    let a = &s.alerts;
    let rule_head =
        html! { tr { th { "Rule" } th { "State" } th { "Last minute" } th { "Threshold" } } };
    let event_head = html! { tr { th { "Rule" } th { "Event" } th { "Value" } th { "At" } } };
    html! {
        h3 { "Alerts" }
        @if a.rules.is_empty() {
            p { "No alert rules. Set " (setting("STARPUNK_PERF_ALERTS")) ", for example "
                code { "error_rate > 1% for 5m; p99 > 500ms for 5m" } " (docs/OPERATING.md)." }
        } @else {
            p.meta { "Each rule's value covers the last minute; a rule fires when it has held for its duration and resolves when it has been clear as long. "
                "Firings and resolutions are logged"
                @if let Some(w) = &a.webhook { " and POSTed to the webhook (delivered " (int(w.delivered))
                    ", failed " (int(w.failed)) ", dropped on a full queue " (int(w.dropped)) ")" } "." }
            (long_table(&rule_head, &a.rules, TOP_ROWS, "rules", |r| html! { tr {
                td { code { (r.rule) } }
                td { @if r.state == "firing" { b.error { "firing" } } @else { (r.state) }
                    @if r.state == "pending" || r.state == "resolving" { br; small { (duration(r.state_seconds)) " of " (duration(r.for_seconds)) } } }
                td { (with_unit(r.value, r.unit)) }
                td { (with_unit(r.threshold, r.unit)) }
            } }))
            @if !a.events.is_empty() {
                h3 { "Recent alert events" }
                (long_table(&event_head, &a.events, TOP_ROWS, "events", |e| html! { tr {
                    td { code { (e.rule) } } td { (e.state) } td { (e.value) " " (e.unit) } td { (e.at) }
                } }))
            }
        }
    }
}

/// The page body for a snapshot (public for the render benchmark).
pub fn render(site_name: &str, s: &PerfSnapshot) -> String {
    let refresh = html! { meta http-equiv="refresh" content=(REFRESH_SECS); };
    if let Some(r) = &s.range {
        return render_range(site_name, s, r);
    }
    if !s.enabled {
        let body = html! {
            h2 { "Performance" }
            p { "Monitoring is disabled. Start the server with "
                (setting("STARPUNK_PERF_MONITORING_ENABLED=true")) " to record requests, SQL statements and memory." }
        };
        return views::page(site_name, "Performance", None, body).into_string();
    }
    let status_bars: Vec<(String, f64)> = s
        .status_codes
        .iter()
        .map(|(c, n)| (c.clone(), *n as f64))
        .collect();
    let since = if s.counting_seconds + 1.0 < s.uptime_seconds {
        format!("since the last clear, {} ago", duration(s.counting_seconds))
    } else {
        format!("since start, {} ago", duration(s.counting_seconds))
    };
    let est = s.sampling.estimated;
    let changed = changes(s);
    let own_apart = s.own_traffic.mode == crate::monitoring::own::OwnTraffic::Apart;
    // Slow statements' requests not already shown elsewhere on the page.
    let shown: Vec<&str> = s
        .worst_requests
        .iter()
        .take(30)
        .chain(&s.recent_errors)
        .chain(s.own_traffic.slowest.iter().take(5))
        .map(|w| w.id.as_str())
        .collect();
    // Each request's anchor where it first appears.
    let anchored = std::cell::RefCell::new(Vec::<String>::new());
    let details = |w: &WorstRequest, open: bool| {
        let mut seen = anchored.borrow_mut();
        let first = !seen.contains(&w.id);
        if first {
            seen.push(w.id.clone());
        }
        request_details_at(w, open, first)
    };
    let slow_only: Vec<&WorstRequest> = s
        .slow_statement_requests
        .iter()
        .filter(|w| !shown.contains(&w.id.as_str()))
        .collect();

    let pattern_head = html! { tr { th { "Pattern" } th { "Calls" } th { "Total ms" } th { "Mean ms" } th { "p99 ms" } th { "Rows" } } };
    let pattern_row = |q: &PatternStats| {
        html! { tr {
            td { (sql(&q.pattern))
                @if !q.locations.is_empty() { br; small { "runs from " @for (i, l) in q.locations.iter().enumerate() { @if i > 0 { ", " } (path(l)) } } } }
            td { (int(q.calls)) } td { (q.total_ms) } td { (q.mean_ms) } td { (q.p99_ms) } td { (int(q.rows)) }
        } }
    };
    let rp_head = html! { tr { th { "Route and pattern" } th { "Per request" } th { "Max per request" } th { "Calls / requests" } } };
    let rp_row = |rp: &RoutePattern| {
        html! { tr {
            td { (rp.route) @if rp.n_plus_one { " " span.flag { "N+1" } } br; (sql(&rp.pattern)) }
            td { @if rp.estimated { abbr title="estimated from the sampled requests in the ring" { "~" } } (rp.per_request) }
            td { (rp.max_per_request) }
            td { (int(rp.calls)) " / " (int(rp.requests)) }
        } }
    };
    let slow_head = html! { tr { th { "Pattern" } th { "Slow runs" } th { "Worst ms" } th { "Last" } th { "Routes" } } };
    let slow_row = |g: &SlowPattern| {
        html! { tr {
            td { (sql(&g.pattern)) } td { (int(g.count)) } td { (g.worst_ms) } td.wrap { (time_at(&g.last_at)) }
            td { @for (i, r) in g.routes.iter().enumerate() {
                @if i > 0 { br; } @if r.is_empty() { "(outside a request)" } @else { (r) } } }
        } }
    };
    let each_slow_head =
        html! { tr { th { "Pattern" } th { "At" } th { "ms" } th { "Route" } th { "Code" } } };
    let each_slow_row = |q: &SlowQueryView| {
        html! { tr {
            td { (sql(&q.pattern)) } td.wrap { (time_at(&q.at)) } td { (q.duration_ms) }
            td { @if q.request.is_empty() { (q.route) } @else { a href={ "#" (q.request) } { (q.route) } } }
            td.wrap { (path(&q.location)) }
        } }
    };
    let worst_head =
        html! { tr { th { "Route and queries" } th { "At" } th { "ms" } th { "Status" } } };
    let worst_row = |w: &WorstRequest| {
        html! { tr {
            td { a href={ "#" (w.id) } { (w.route) }
                @for (p, n) in &w.queries { (counted_sql(&format!("{n} x "), p)) } }
            td.wrap { (time_at(&w.at)) } td { (w.duration_ms) } td { (w.status) }
        } }
    };
    let plan_row = |p: &PlanView| {
        html! { tr {
            td { (sql(&p.pattern)) br; small { "runs from " @for (i, l) in p.locations.iter().enumerate() { @if i > 0 { ", " } (path(l)) } } }
            td.wrap { @if let Some(e) = &p.plan.error { "not explained: " (e) }
                @else if p.plan.steps.is_empty() { "no plan (not a query)" }
                @else { @for st in &p.plan.steps { ("\u{a0}\u{a0}".repeat(st.depth as usize)) (breakable(&st.detail, PLAN_BREAKS)) br; } }
                @for f in &p.plan.full_scans { span.flag { "full scan" } " of " (f.table) " (" (int(f.rows)) " rows)" br; } }
        } }
    };
    let plan_head = html! { tr { th { "Pattern" } th { "Plan" br; "(EXPLAIN QUERY PLAN)" } } };
    let body = html! {
        h2 { "Performance" }
        (range_nav(Range::Live))
        p.meta { "Refreshes every " (REFRESH_SECS) " s. Exports: "
            a href="/admin/performance.json" { "JSON" } ", " a href="/admin/performance.csv" { "CSV" } ", "
            a href="/metrics" { "Prometheus" } ". Sections: "
            a href="#changes" { "what changed" } ", " a href="#alerts" { "alerts" } ", " a href="#endpoints" { "routes" } ", "
            a href="#slow-queries" { "slow queries" } ", " a href="#query-patterns" { "SQL" } ", "
            a href="#worst-requests" { "slowest requests" } ", " a href="#memory" { "memory" } ", "
            a href="#database" { "database" } ", " a href="#monitor" { "the monitor" } "." }
        @if est {
            p.estimate { "Sample rate " (s.sampling.rate) ": every count, rate, mean and percentile on this page is exact "
                "(every request and statement is timed and counted). Figures marked " b { "~" } " are estimated from the "
                (int(s.sampling.ring_sampled as u64)) " sampled records in the ring buffer; "
                (int(s.sampling.ring_forced as u64)) " more were kept because they failed (5xx) or ran a slow statement, "
                "and are shown in the detail tables but left out of every estimate." }
        }
        (firing(s))
        @if let Some(w) = &s.worst_request {
            p.worst { "Slowest request of the last " (duration(s.window_seconds.min(900.0))) ": "
                a href={ "#" (w.id) } { (w.route) " " (w.duration_ms) " ms" } ", status " (w.status) "; " (largest_part(w)) "." }
        }
        section #overview { (overview(s)) }
        section #changes {
            h3 { "What changed" }
            @if changed.is_empty() {
                p { "Nothing worth a look: the last " (duration(s.overview.last_5_minutes.seconds))
                    " look like the time before, no server errors and no slow statements in the last "
                    (duration(s.overview.window.seconds)) "." }
            } @else {
                ul { @for c in &changed { li { (c) } } }
            }
            (slowest_routes(s))
        }
        section #alerts { (alerts_section(s)) }
        section #endpoints {
            h3 { "Routes (" (since) ")" }
            p.meta { "Latency in milliseconds; sizes are response bodies; 5xx and 4xx are counts of responses." }
            (endpoint_table("Route", "routes", &s.endpoints, true))
            h3 { "Named functions (" (since) ")" }
            p.meta { "Work timed inside requests: password checks, search, feed generation, note writes." }
            (endpoint_table("Function", "functions", &s.functions, false))
        }
        section #slow-queries {
            h3 { "Slow queries (over " (s.config.slow_query_threshold) " s)" }
            @if s.slow_queries.is_empty() {
                p { "None. The threshold is " (setting("STARPUNK_PERF_SLOW_QUERY_THRESHOLD")) " (" (s.config.slow_query_threshold)
                    " s); " code { "starpunk tune" } " suggests one from this blog's statement times." }
            } @else {
                p.meta { "The last " (s.slow_queries.len()) " slow statements, grouped by pattern." }
                (long_table(&slow_head, &s.slow_patterns, TOP_ROWS, "patterns", slow_row))
                details {
                    summary { "Every slow statement (" (s.slow_queries.len()) ")" }
                    (long_table(&each_slow_head, &s.slow_queries, usize::MAX, "statements", each_slow_row))
                }
            }
            @if !s.query_plans.is_empty() {
                h3 { "Query plans" }
                p.meta { "SQLite's plan of each pattern seen slow or in a kept request, explained off the request path on a "
                    "read-only connection, again after each migration. A full scan of a table of "
                    (int(crate::monitoring::ticker::plans::FULL_SCAN_ROWS)) " rows or more is flagged." }
                (long_table(&plan_head, &s.query_plans, TOP_ROWS, "plans", plan_row))
            }
        }
        section #query-patterns {
            h3 { "SQL patterns (" (since) ")" }
            p.meta { "Statements with their literal values taken out, by total time." }
            (long_table(&pattern_head, &s.query_patterns, TOP_ROWS, "patterns", pattern_row))
            h3 { "Routes x patterns (the sampled requests in the ring buffer)" }
            (long_table(&rp_head, &s.route_patterns, TOP_ROWS, "pairs", rp_row))
        }
        section #worst-requests {
            h3 { "Where the slowest requests spent their time" }
            p.meta { "The " (crate::monitoring::request::kept::PER_WINDOW) " slowest requests of each route and 5-minute window, kept with their "
                "whole timelines for 10 to 15 minutes whatever the traffic (only a slower request of the same window replaces one)"
                @if own_apart { "; your own pages are listed apart below" } "." }
            @if s.worst_requests.is_empty() { p { "No requests kept yet." } }
            @for (i, w) in s.worst_requests.iter().take(5).enumerate() { (details(w, i == 0)) }
            @if !s.recent_errors.is_empty() {
                h3 { "Recent errors (5xx)" }
                @for w in &s.recent_errors { (details(w, false)) }
            }
            @if !slow_only.is_empty() {
                h3 { "Requests that ran a slow statement" }
                @for w in &slow_only { (details(w, false)) }
            }
            h3 { "Slowest requests per route" }
            (long_table(&worst_head, &s.worst_requests[..s.worst_requests.len().min(30)], TOP_ROWS, "requests", worst_row))
            @for w in s.worst_requests.iter().skip(5).take(25) { (details(w, false)) }
        }
        @if own_apart {
            section #own-traffic {
                h3 { "Your own requests (admin pages, /metrics)" }
                p.meta { (int(s.own_traffic.requests)) " requests " (since) ", counted in every export but left out of the figures above ("
                    (setting("STARPUNK_PERF_OWN_TRAFFIC=apart")) "; " code { "include" } " counts them like readers')." }
                @if !s.own_traffic.endpoints.is_empty() {
                    (endpoint_table("Route", "routes", &s.own_traffic.endpoints, false))
                }
                @for w in s.own_traffic.slowest.iter().take(5) { (details(w, false)) }
            }
        }
        section #memory {
            h3 { "Memory" }
            @if s.memory.tracking {
                p { "Resident memory (RSS) " (mib(s.memory.rss_bytes as f64)) ", peak since the process started (VmHWM) "
                    (mib(s.memory.hwm_bytes as f64)) ", change over the last "
                    (duration(s.memory.window_seconds as f64)) " "
                    (mib_change(s.memory.growth_bytes as f64)) ". The chart is in the overview above." }
                h3 { "RSS change per request, by route (" (since) ")" }
                p.meta { "The resident memory after a request less before it, in KiB"
                    @if est { " (~: measured on sampled requests only)" } "." }
                (rss_table(&s.endpoints))
            } @else {
                p { "Memory tracking is off (" (setting("STARPUNK_PERF_MEMORY_TRACKING")) ")." }
            }
        }
        section #database {
            h3 { "Database" }
            div.cards {
                div.card { span { "Connections in use" } b { (s.database.pool_in_use) " of " (s.database.pool_size) } }
                div.card { span { "Statements per second" } b { (format!("{:.2}", s.database.queries_per_second)) } small { (since) } }
                div.card { span { "Page cache hit rate" } b { @match s.database.cache_hit_rate { Some(r) => { (format!("{:.1}", r * 100.0)) " %" }, None => "none yet" } }
                    small { "reads served from SQLite's cache" } }
                div.card { span { "Database file" } b { (bytes(s.database.db_bytes)) } small { "write-ahead log " (bytes(s.database.wal_bytes)) } }
            }
            div.charts { (bar_chart("Responses by status code", &since, &status_bars, |v| int(v as u64))) }
        }
        section #monitor {
            h3 { "The monitor" }
            div.cards {
                div.card { span { "Uptime" } b { (duration(s.uptime_seconds)) } small { "counts " (since) } }
                div.card { span { "Requests" } b { (int(s.requests_total)) } small { (since) } }
                div.card { span { "Ring buffer (detail records)" } b { (int(s.buffer.len as u64)) " of " (int(s.buffer.capacity as u64)) }
                    small { (int(s.buffer.overwritten)) " overwritten (replaced by newer ones, as designed); "
                    (int(s.buffer.dropped)) " dropped (lost to a writer a lap ahead; still counted everywhere else)" } }
                div.card { span { "Cost" } b { (format!("{:.1}", s.monitor.record_ns)) " ns per record" }
                    small { (bytes(s.monitor.memory_bytes as u64)) " held (budget 1 MiB)" } }
                div.card { span { "Requests kept in detail" } b { (s.kept.requests) }
                    small { (bytes(s.kept.bytes as u64)) " held (at most " (bytes(s.kept.ceiling_bytes as u64)) ")" } }
            }
            p.meta { "History: "
                @if s.history.days == 0 { "off (" (setting("STARPUNK_PERF_HISTORY_DAYS=0")) ": nothing is written to disk)" }
                @else if s.history.ok { (s.history.days) " days kept, " (bytes(s.history.bytes)) " on disk" }
                @else { span.error { "unavailable: " (s.history.error.as_deref().unwrap_or("not open")) } " (the blog runs without it)" }
                "." }
            p.meta { "Configuration: sample rate " (s.config.sample_rate) ", slow query threshold "
                (s.config.slow_query_threshold) " s, buffer " (int(s.config.buffer_size as u64)) " records, memory tracking "
                (s.config.memory_tracking) ", query log " (s.config.log_queries) ", series "
                (s.monitor.series) " of " (s.monitor.series_capacity) "." }
        }
    };
    views::page(site_name, "Performance", Some(refresh), body).into_string()
}

/// `GET /admin/performance?range=`.
pub fn page(app: &App, req: &Request) -> WebResult {
    if let Err(r) = guard(app, req, true)? {
        return Ok(r);
    }
    let range = match range_of(req) {
        Ok(r) => r,
        Err(r) => return Ok(r),
    };
    let html = match snapshot_for(app, range) {
        Ok(s) => render(&app.site.name, &s),
        Err(why) => {
            let body = html! {
                h2 { "Performance" }
                (range_nav(range))
                p { "No " (range.label()) " view: " (why) "." }
            };
            views::page(&app.site.name, "Performance", None, body).into_string()
        }
    };
    Ok(Response::html(html).with_no_cache())
}

/// Links to every range, the current one in bold.
fn range_nav(current: Range) -> Markup {
    html! {
        nav.ranges aria-label="Time range" {
            "Range: "
            @for (i, r) in Range::ALL.iter().enumerate() {
                @if i > 0 { " · " }
                @if *r == current { b { (r.label()) } }
                @else { a href={ "/admin/performance?range=" (r.name()) } { (r.label()) } }
            }
        }
    }
}

/// The current version against the previous one, per route.
fn compare_section(c: &Compare) -> Markup {
    let head = html! { tr {
        th { "Route" } th { "Requests" br; "before / now" } th { "p50 ms" br; "before / now" }
        th { "p99 ms" br; "before / now" } th { "Error rate" br; "before / now" }
    } };
    html! {
        h3 { "This version against the previous one" }
        p.meta { "Version " (c.current) " (since " (c.current_since) ") against " (c.previous)
            ", each over all the history holds of it." }
        (long_table(&head, &c.routes, TOP_ROWS, "routes", |r| html! { tr {
            td { (r.route) }
            td { (int(r.requests[0])) " / " (int(r.requests[1])) }
            td { (r.p50_ms[0]) " / " (r.p50_ms[1]) }
            td { (r.p99_ms[0]) " / " (r.p99_ms[1])
                @if r.p99_ms[0] > 0.0 && r.p99_ms[1] > 1.5 * r.p99_ms[0] && r.requests[1] >= 10 { " " span.flag { "slower" } } }
            td { (percent(r.error_rate[0])) " / " (percent(r.error_rate[1])) }
        } }))
    }
}

/// The page over a range from the history: the overview, routes and
/// patterns over the range, starts, and the version comparison.
fn render_range(
    site_name: &str,
    s: &PerfSnapshot,
    r: &crate::monitoring::views::range::RangeInfo,
) -> String {
    let range = Range::parse(Some(&r.range)).unwrap_or(Range::Live);
    let pattern_head = html! { tr { th { "Pattern" } th { "Calls" } th { "Total ms" } th { "Mean ms" } th { "p99 ms" } th { "Rows" } } };
    let body = html! {
        h2 { "Performance" }
        (range_nav(range))
        p.meta { "Exports of this range: " a href={ "/admin/performance.json?range=" (r.range) } { "JSON" } ", "
            a href={ "/admin/performance.csv?range=" (r.range) } { "CSV" } ". "
            "From the history (" (s.history.days) " days kept, " (bytes(s.history.bytes)) " on disk"
            @if let Some(e) = &s.history.error { "; " span.error { "last error: " (e) } } "). "
            "Slow queries, routes x patterns and the database are live views: see "
            a href="/admin/performance" { "15 min (live)" } "." }
        (firing(s))
        @if let Some(w) = &s.worst_request {
            p.worst { "Slowest request of the last " (range.label()) ": "
                a href={ "#" (w.id) } { (w.route) " " (w.duration_ms) " ms" } " at " (w.at) ", status " (w.status) "; " (largest_part(w)) "." }
        }
        section #overview { (overview(s)) }
        section #alerts { (alerts_section(s)) }
        section #worst-requests {
            h3 { "The slowest requests of each hour" }
            p.meta { "Per route, the " (crate::monitoring::ticker::slow_history::PER_HOUR) " slowest requests of the range's hours, "
                "kept in the history with their timelines (patterns, durations and code locations, never values)." }
            @if s.worst_requests.is_empty() { p { "None stored for this range yet: requests are stored as each minute closes." } }
            @for w in s.worst_requests.iter().take(30) { (request_details(w, false)) }
            @if !s.own_traffic.slowest.is_empty() {
                h3 { "Your own requests" }
                @for w in s.own_traffic.slowest.iter().take(10) { (request_details(w, false)) }
            }
        }
        section #endpoints {
            h3 { "Routes over the last " (range.label()) }
            p.meta { "Latency in milliseconds; statuses by class (the history keeps classes, not codes)." }
            (endpoint_table("Route", "routes", &s.endpoints, true))
        }
        section #query-patterns {
            h3 { "SQL patterns over the last " (range.label()) }
            (long_table(&pattern_head, &s.query_patterns, TOP_ROWS, "patterns", |q| html! { tr {
                td { (sql(&q.pattern))
                @if !q.locations.is_empty() { br; small { "runs from " @for (i, l) in q.locations.iter().enumerate() { @if i > 0 { ", " } (path(l)) } } } }
            td { (int(q.calls)) } td { (q.total_ms) } td { (q.mean_ms) } td { (q.p99_ms) } td { (int(q.rows)) }
            } }))
        }
        section #deploys {
            h3 { "Starts" }
            @if r.starts.is_empty() { p { "No start of the blog in this range." } }
            @else { ul { @for st in &r.starts { li { (st.at) ": version " (st.version) } } } }
            @if let Some(c) = &r.compare { (compare_section(c)) }
            @else { p.meta { "The history holds one version only: nothing to compare yet." } }
        }
    };
    views::page(site_name, "Performance", None, body).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::ticker::trend::PeriodFigures;

    #[test]
    fn a_setting_breaks_only_after_an_underscore_or_at_its_value() {
        assert_eq!(
            setting("STARPUNK_PERF_ALERTS").into_string(),
            "<code class=\"setting\">STARPUNK_<wbr>PERF_<wbr>ALERTS</code>"
        );
        assert_eq!(
            setting("A_B=c").into_string(),
            "<code class=\"setting\">A_<wbr>B<wbr>=<wbr>c</code>"
        );
    }

    fn period(seconds: f64, requests: u64, p99_ms: f64) -> PeriodFigures {
        PeriodFigures {
            seconds,
            requests,
            requests_per_second: requests as f64 / seconds,
            p99_ms,
            ..PeriodFigures::default()
        }
    }

    #[test]
    fn what_changed_names_a_slower_period_and_slower_routes() {
        let mut s = PerfSnapshot {
            enabled: true,
            window_seconds: 900.0,
            ..PerfSnapshot::default()
        };
        s.overview.before = period(600.0, 600, 4.0);
        s.overview.last_5_minutes = period(300.0, 300, 12.0);
        let route = |count, p99_ms| EndpointStats {
            name: "GET /".into(),
            count,
            p99_ms,
            ..EndpointStats::default()
        };
        s.endpoints = vec![route(5_000, 3.0)];
        s.endpoints_recent = vec![route(900, 12.0)];
        let c = changes(&s);
        assert!(
            c.iter().any(|l| l
                == "p99 response time: 12 ms in the last 5 min, up 200 % on the 10 min before (4 ms)."),
            "{c:?}"
        );
        assert!(
            !c.iter().any(|l| l.starts_with("Requests per second")),
            "steady: {c:?}"
        );
        assert!(
            c.iter()
                .any(|l| l.starts_with("GET / is slower now: p99 12 ms")),
            "{c:?}"
        );
        // The same figures in both periods: nothing to say.
        s.overview.last_5_minutes = period(300.0, 300, 4.0);
        s.endpoints_recent = vec![route(900, 3.0)];
        assert!(changes(&s).is_empty());
        assert!(render("Blog", &s).contains("Nothing worth a look"));
    }

    #[test]
    fn a_cards_trend_shows_the_figure_it_compares() {
        let before = period(600.0, 600, 4.0);
        let now = period(300.0, 300, 12.0);
        assert_eq!(
            card_trend(&now, &before, (now.p99_ms, before.p99_ms), " ms", true),
            "Last 5 min: 12 ms, up 200 % on the 10 min before (4 ms)."
        );
        // Ten requests' p99 is not compared; their rate is.
        let few = period(300.0, 10, 40.0);
        assert_eq!(
            card_trend(&few, &before, (few.p99_ms, before.p99_ms), " ms", true),
            ""
        );
        assert!(card_trend(&few, &before, (0.033, 1.0), "/s", false)
            .starts_with("Last 5 min: 0.033/s, down 97 %"));
    }

    #[test]
    fn the_banner_says_what_state_each_rule_is_in() {
        let rule = |state, state_seconds| RuleView {
            rule: "request_rate > 5/s for 1m".into(),
            state,
            value: 0.0,
            threshold: 5.0,
            unit: "/s",
            since: Some("2026-05-01T10:00:00Z".into()),
            for_seconds: 60.0,
            state_seconds,
        };
        let mut s = PerfSnapshot {
            enabled: true,
            ..PerfSnapshot::default()
        };
        s.alerts.rules = vec![
            rule("resolving", 40.0),
            rule("firing", 125.0),
            rule("pending", 20.0),
        ];
        let banner = firing(&s).into_string();
        let code = "<code>request_rate &gt; 5/s for 1m</code>";
        for wanted in [
            format!(
                "<b>Alert resolving: </b>{code} — below the threshold for 40 s of 1 min; \
                     last minute 0/s, threshold 5/s; firing since 2026-05-01T10:00:00Z."
            ),
            format!(
                "<b>Alert firing: </b>{code} — above the threshold, firing since \
                     2026-05-01T10:00:00Z (2 min 5 s); last minute 0/s, threshold 5/s."
            ),
        ] {
            assert!(banner.contains(&wanted), "{banner}");
        }
        // A pending rule is in the table only; no banner says "now".
        assert!(
            !banner.contains("pending") && !banner.contains("now"),
            "{banner}"
        );
        let table = alerts_section(&s).into_string();
        assert!(
            table.contains("pending<br><small>20 s of 1 min</small>"),
            "{table}"
        );
    }

    #[test]
    fn long_tables_fold_and_stop_at_a_hundred_rows() {
        let rows: Vec<u32> = (0..150).collect();
        let head = html! { tr { th { "n" } } };
        let page = long_table(
            &head,
            &rows,
            10,
            "rows",
            |n| html! { tr { td { "row " (n) } } },
        )
        .into_string();
        assert!(page.contains("Show 90 more rows"), "{page}");
        assert!(page.contains("row 99<") && !page.contains("row 100<"));
        assert!(page.contains("And 50 more in the"));
        let short = long_table(
            &head,
            &rows[..3],
            10,
            "rows",
            |n| html! { tr { td { (n) } } },
        )
        .into_string();
        assert!(!short.contains("<details"));
    }

    #[test]
    fn long_sql_is_cut_between_words_with_the_whole_on_demand() {
        let long = "SELECT id, slug, content, published_at FROM notes WHERE deleted_at IS NULL ORDER BY published_at DESC";
        let m = sql(long).into_string();
        assert!(m.starts_with("<details class=\"sql\"><summary><code>SELECT id,<wbr> slug,<wbr> content,<wbr> published_at FROM ..."), "{m}");
        // Whole, with a break opportunity after each comma.
        assert!(m.contains(&format!("<code>{}</code>", long.replace(',', ",<wbr>"))));
        assert_eq!(
            sql("SELECT 1").into_string(),
            "<div class=\"sql\"><code>SELECT 1</code></div>"
        );
    }
}
