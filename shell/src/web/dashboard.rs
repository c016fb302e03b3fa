//! `/admin/performance`: the dashboard (maud, inline SVG, no JavaScript),
//! and its JSON and CSV exports. All three render one `PerfSnapshot`.

use maud::{html, Markup};
use rouille::{Request, Response};

use super::auth::to_login;
use super::ratelimit::RateLimiter;
use super::views;
use super::{App, WebError, WebResult};
use crate::monitoring::snapshot::{
    rfc3339, DatabaseView, EndpointStats, PerfSnapshot, RssDelta, WorstRequest,
};

/// Seconds between automatic refreshes of the page.
pub const REFRESH_SECS: u32 = 30;

/// The checks every dashboard route makes: enabled, rate limit, session.
/// `Err` carries the response to send instead.
fn guard(app: &App, req: &Request, html: bool) -> Result<Result<(), Response>, WebError> {
    if !app.config.perf.dashboard_enabled {
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

/// The snapshot, with the database layer's figures.
pub fn snapshot(app: &App) -> PerfSnapshot {
    let stats = app
        .db
        .conn()
        .map(|c| c.stats(&app.config.data_dir))
        .unwrap_or_default();
    app.monitor.snapshot(DatabaseView {
        pool_in_use: app.db.pool_in_use(),
        pool_size: app.db.pool_size(),
        queries_per_second: 0.0,
        cache_hit_rate: stats.cache_hit_rate,
        db_bytes: stats.db_bytes,
        wal_bytes: stats.wal_bytes,
    })
}

/// `GET /admin/performance.json`.
pub fn json(app: &App, req: &Request) -> WebResult {
    if let Err(r) = guard(app, req, false)? {
        return Ok(r);
    }
    Ok(Response::from_data("application/json", json_body(&snapshot(app))).with_no_cache())
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

/// `GET /admin/performance.csv`: the ring's records, oldest first.
pub fn csv(app: &App, req: &Request) -> WebResult {
    if let Err(r) = guard(app, req, false)? {
        return Ok(r);
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
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h {} min", s / 86_400, s / 3600 % 24, s / 60 % 60),
    }
}

/// A horizontal bar chart, as inline SVG; `fmt` writes each value.
pub fn bar_chart(title: &str, bars: &[(String, f64)], fmt: impl Fn(f64) -> String) -> Markup {
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9);
    let row = 22.0;
    let height = row * bars.len().max(1) as f64 + 30.0;
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 600 " (height) } role="img" aria-label=(title) {
            title { (title) }
            text x="0" y="14" font-size="12" font-weight="bold" { (title) }
            @for (i, (label, value)) in bars.iter().enumerate() {
                @let y = 25.0 + row * i as f64;
                @let w = 260.0 * value / max;
                text x="0" y=(y + 14.0) font-size="11" { (label.chars().take(38).collect::<String>()) }
                rect x="240" y=(y + 3.0) width=(format!("{w:.1}")) height="14" fill="#0b5cad" {}
                text x=(format!("{:.1}", 245.0 + w)) y=(y + 14.0) font-size="11" { (fmt(*value)) }
            }
        }
    }
}

/// A line chart of memory samples `(unix seconds, bytes)`, as inline SVG,
/// with a MiB axis and a time axis in minutes before the last sample.
pub fn line_chart(title: &str, points: &[[u64; 2]]) -> Markup {
    let (w, h) = (600.0, 180.0);
    let (left, right, top, bottom) = (70.0, 10.0, 20.0, 40.0);
    let (t0, t1) = (
        points.first().map_or(0, |p| p[0]) as f64,
        points.last().map_or(1, |p| p[0]) as f64,
    );
    let lo = points.iter().map(|p| p[1]).min().unwrap_or(0) as f64;
    let hi = points.iter().map(|p| p[1]).max().unwrap_or(1) as f64;
    let span_t = (t1 - t0).max(1.0);
    let span_v = (hi - lo).max(1.0);
    let x_of = |t: f64| left + (t - t0) / span_t * (w - left - right);
    let y_of = |v: f64| top + (1.0 - (v - lo) / span_v) * (h - top - bottom);
    let path: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x_of(p[0] as f64), y_of(p[1] as f64)))
        .collect();
    // Ticks every 5 minutes back from the last sample (every minute when
    // the samples span less than 5).
    let step = if span_t >= 600.0 { 300.0 } else { 60.0 };
    let ticks: Vec<f64> = (0..)
        .map(|i| t1 - step * f64::from(i))
        .take_while(|t| *t >= t0)
        .collect();
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(title) {
            title { (title) }
            line x1=(left) y1=(h - bottom) x2=(w - right) y2=(h - bottom) stroke="#999" {}
            line x1=(left) y1=(top) x2=(left) y2=(h - bottom) stroke="#999" {}
            text x="0" y=(top + 4.0) font-size="10" { (mib(hi)) }
            text x="0" y=(h - bottom) font-size="10" { (mib(lo)) }
            @for t in &ticks {
                @let x = x_of(*t);
                line x1=(format!("{x:.1}")) y1=(h - bottom) x2=(format!("{x:.1}")) y2=(h - bottom + 4.0) stroke="#999" {}
                text x=(format!("{:.1}", x - 14.0)) y=(h - bottom + 16.0) font-size="10" {
                    @if (t1 - t) < 1.0 { "now" } @else { "-" (((t1 - t) / 60.0).round()) " min" }
                }
            }
            text x=(left) y=(h - 4.0) font-size="10" { "time (minutes before the last sample, one sample every 10 s)" }
            @if path.len() > 1 {
                polyline points=(path.join(" ")) fill="none" stroke="#0b5cad" stroke-width="2" {}
            } @else {
                text x=(left + 10.0) y=(h / 2.0) font-size="12" { "Not enough samples yet" }
            }
        }
    }
}

/// Where one request spent its time: each SQL statement and named
/// function on the request's own time axis, as inline SVG.
pub fn timeline_chart(w: &WorstRequest) -> Markup {
    let total = w.duration_ms.max(1e-6);
    let (width, left, right, row) = (600.0, 10.0, 10.0, 28.0);
    let span_w = width - left - right;
    let x_of = |ms: f64| left + (ms / total).clamp(0.0, 1.0) * span_w;
    let height = row * (w.timeline.len() + 1) as f64 + 30.0;
    let label = |name: &str, ms: f64, offset: f64| {
        let short: String = name.chars().take(70).collect();
        let dots = if name.chars().count() > 70 { "..." } else { "" };
        format!("{short}{dots}  {ms:.3} ms at +{offset:.3} ms")
    };
    let title = format!("Timeline of {} at {} ({} ms)", w.route, w.at, w.duration_ms);
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (width) " " (height) } role="img" aria-label=(title) {
            title { (title) }
            text x=(left) y="10" font-size="10" { (w.route) "  " (w.duration_ms) " ms, status " (w.status) }
            rect x=(left) y="13" width=(format!("{span_w:.1}")) height="10" fill="#999" {}
            @for (i, s) in w.timeline.iter().enumerate() {
                @let y = row * (i + 1) as f64;
                @let x = x_of(s.offset_ms);
                @let bar = (s.duration_ms / total * span_w).max(1.5).min(width - right - x);
                text x=(left) y=(y + 10.0) font-size="10" { (label(&s.name, s.duration_ms, s.offset_ms)) }
                rect x=(format!("{x:.1}")) y=(y + 13.0) width=(format!("{bar:.1}")) height="10"
                    fill=(if s.kind == "sql" { "#0b5cad" } else { "#c05a00" }) {}
            }
            @let axis = height - 22.0;
            line x1=(left) y1=(axis) x2=(width - right) y2=(axis) stroke="#999" {}
            @for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
                @let x = left + q * span_w;
                line x1=(format!("{x:.1}")) y1=(axis) x2=(format!("{x:.1}")) y2=(axis + 4.0) stroke="#999" {}
                // Labels centred on their tick, the last one ending at it.
                text x=(format!("{:.1}", if q < 1.0 { (x - 12.0).max(0.0) } else { x - 48.0 })) y=(axis + 15.0) font-size="10" { (format!("{:.2}", q * total)) " ms" }
            }
        }
    }
}

/// A request's summary line and its timeline, folded (no JavaScript).
fn request_details(w: &WorstRequest, open: bool) -> Markup {
    // Folds from +0.0 (a float `sum` starts at -0.0 and prints "-0.000").
    let total_of = |kind: &str| {
        w.timeline
            .iter()
            .filter(|s| s.kind == kind)
            .fold(0.0, |t, s| t + s.duration_ms)
    };
    let (sql, functions) = (total_of("sql"), total_of("function"));
    html! {
        details open[open] {
            summary { (w.route) ": " (w.duration_ms) " ms, status " (w.status) ", " (w.at) " (SQL "
                (format!("{sql:.3}")) " ms in " (w.timeline.iter().filter(|s| s.kind == "sql").count())
                " statements, named functions " (format!("{functions:.3}")) " ms)" }
            (timeline_chart(w))
            p.meta { "Blue: SQL statements; orange: named functions (authentication, search, feed generation, note writes); grey: the whole request." }
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

fn endpoint_table(rows: &[EndpointStats], with_responses: bool, memory: bool) -> Markup {
    html! {
        div.scroll { table {
            thead { tr {
                th { "Series" } th { "Count" } th { "Mean ms" } th { "p50 ms" } th { "p95 ms" } th { "p99 ms" } th { "Max ms" }
                @if with_responses { th { "Mean size" } th { "5xx" } th { "4xx" } th { "Statuses" } }
                @if memory { th.wrap { "RSS change per request (mean / worst)" } }
            } }
            tbody { @for e in rows { tr {
                td { (e.name) } td { (int(e.count)) } td { (e.mean_ms) } td { (e.p50_ms) } td { (e.p95_ms) }
                td { (e.p99_ms) } td { (e.max_ms) }
                @if with_responses {
                    td { (bytes(e.bytes_mean as u64)) }
                    td { (int(e.errors_5xx)) }
                    td { (int(e.client_errors_4xx)) }
                    td.wrap { @for (code, n) in &e.status { (code) ": " (int(*n)) " " } }
                }
                @if memory { td.wrap { @if let Some(d) = &e.rss_delta { (rss_delta(d)) } } }
            } } }
        } }
    }
}

/// The page body for a snapshot (public for the render benchmark).
pub fn render(site_name: &str, s: &PerfSnapshot) -> String {
    let refresh = html! { meta http-equiv="refresh" content=(REFRESH_SECS); };
    if !s.enabled {
        let body = html! {
            h2 { "Performance" }
            p { "Monitoring is disabled. Start the server with "
                code { "STARPUNK_PERF_MONITORING_ENABLED=true" } " to record requests, SQL statements and memory." }
        };
        return views::page(site_name, "Performance", None, body).into_string();
    }
    let p99_bars: Vec<(String, f64)> = s
        .endpoints
        .iter()
        .take(12)
        .map(|e| (e.name.clone(), e.p99_ms))
        .collect();
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
    let body = html! {
        h2 { "Performance" }
        p.meta { "Refreshes every " (REFRESH_SECS) " s. Exports: "
            a href="/admin/performance.json" { "JSON" } ", " a href="/admin/performance.csv" { "CSV" } ", "
            a href="/metrics" { "Prometheus" } "." }
        @if est {
            p.estimate { "Sample rate " (s.sampling.rate) ": every count, rate, mean and percentile on this page is exact "
                "(every request and statement is timed and counted). Figures marked " b { "~" } " are estimated from the "
                (int(s.sampling.ring_sampled as u64)) " sampled records in the ring buffer; "
                (int(s.sampling.ring_forced as u64)) " more were kept because they failed (5xx) or ran a slow statement, "
                "and are shown in the detail tables but left out of every estimate." }
        }
        section #overview {
            h3 { "Overview" }
            div.cards {
                div.card { "Uptime" b { (duration(s.uptime_seconds)) } }
                div.card { "Requests" b { (int(s.requests_total)) } (since) br;
                    (format!("{:.2}", s.requests_per_second)) " per second over the last " (duration(s.window_seconds)) }
                div.card { "Mean response" b { (s.mean_response_ms) " ms" } "all requests " (since) }
                div.card { "p99 response" b { (s.p99_response_ms) " ms" } "99 % of requests were faster" }
                div.card { "Error rate (5xx)" b { (percent(s.error_rate)) }
                    (int(s.errors_5xx)) " server errors of " (int(s.requests_total)) " requests" br;
                    "4xx: " (percent(s.client_error_rate)) " (" (int(s.client_errors_4xx)) ")" }
                div.card { "Memory (RSS)" b { @if s.memory.tracking { (mib(s.memory.rss_bytes as f64)) } @else { "off" } } }
                div.card { "Ring buffer" b { (int(s.buffer.len as u64)) " / " (int(s.buffer.capacity as u64)) " records" }
                    (int(s.buffer.overwritten)) " overwritten (replaced by newer ones, as designed)" br;
                    (int(s.buffer.dropped)) " dropped (lost to a writer a lap ahead; still counted everywhere else)" }
                div.card { "Monitor cost" b { (format!("{:.1}", s.monitor.record_ns)) " ns per record" }
                    (bytes(s.monitor.memory_bytes as u64)) " held (budget 1 MiB)" }
            }
            p.meta { "Configuration: sample rate " (s.config.sample_rate) ", slow query threshold "
                (s.config.slow_query_threshold) " s, buffer " (int(s.config.buffer_size as u64)) " records, memory tracking "
                (s.config.memory_tracking) ", query log " (s.config.log_queries) ", series "
                (s.monitor.series) " / " (s.monitor.series_capacity) "." }
        }
        section #endpoints {
            h3 { "Endpoint performance (" (since) ")" }
            (bar_chart("p99 by route, ms (since start)", &p99_bars, |v| format!("{v:.2} ms")))
            (endpoint_table(&s.endpoints, true, s.memory.tracking))
            h3 { "Endpoint performance (last " (duration(s.window_seconds)) ")" }
            (endpoint_table(&s.endpoints_recent, false, false))
            h3 { "Named functions" }
            (endpoint_table(&s.functions, false, false))
        }
        section #slow-queries {
            h3 { "Slow queries (over " (s.config.slow_query_threshold) " s)" }
            @if s.slow_queries.is_empty() { p { "None." } }
            @else {
                p.meta { "The last " (s.slow_queries.len()) " slow statements, grouped by pattern." }
                div.scroll { table {
                    thead { tr { th { "Pattern" } th { "Slow runs" } th { "Worst ms" } th { "Last" } th { "Routes" } } }
                    tbody { @for g in &s.slow_patterns { tr {
                        td { (g.pattern) } td { (g.count) } td { (g.worst_ms) } td { (g.last_at) }
                        td.wrap { @for (i, r) in g.routes.iter().enumerate() {
                            @if i > 0 { ", " } @if r.is_empty() { "(outside a request)" } @else { (r) } } }
                    } } }
                } }
                details {
                    summary { "Every slow statement (" (s.slow_queries.len()) ")" }
                    div.scroll { table {
                        thead { tr { th { "Pattern" } th { "At" } th { "ms" } th { "Route" } } }
                        tbody { @for q in &s.slow_queries { tr { td { (q.pattern) } td { (q.at) } td { (q.duration_ms) } td { (q.route) } } } }
                    } }
                }
            }
        }
        section #query-patterns {
            h3 { "Query patterns (" (since) ")" }
            div.scroll { table {
                thead { tr { th { "Pattern" } th { "Calls" } th { "Total ms" } th { "Mean ms" } th { "p99 ms" } th { "Rows" } } }
                tbody { @for q in &s.query_patterns { tr {
                    td { (q.pattern) } td { (int(q.calls)) } td { (q.total_ms) } td { (q.mean_ms) } td { (q.p99_ms) } td { (int(q.rows)) }
                } } }
            } }
            h3 { "Routes x patterns (the sampled requests in the ring buffer)" }
            div.scroll { table {
                thead { tr { th { "Route / pattern" } th { "Per request" } th { "Max per request" } th { "Calls / requests" } } }
                tbody { @for rp in &s.route_patterns { tr {
                    td { (rp.route) br; (rp.pattern) @if rp.n_plus_one { " " span.flag { "N+1" } } }
                    td { @if rp.estimated { abbr title="estimated from the sampled requests in the ring" { "~" } } (rp.per_request) }
                    td { (rp.max_per_request) }
                    td { (int(rp.calls)) " / " (int(rp.requests)) }
                } } }
            } }
        }
        section #worst-requests {
            h3 { "Where the slowest requests spent their time" }
            @if s.worst_requests.is_empty() { p { "No requests in the ring buffer yet." } }
            @for (i, w) in s.worst_requests.iter().take(5).enumerate() { (request_details(w, i == 0)) }
            @if !s.recent_errors.is_empty() {
                h3 { "Recent errors (5xx)" }
                @for w in &s.recent_errors { (request_details(w, false)) }
            }
            h3 { "Slowest recent requests (in the ring buffer)" }
            div.scroll { table {
                thead { tr { th { "Route and queries" } th { "At" } th { "ms" } th { "Status" } } }
                tbody { @for w in s.worst_requests.iter().take(30) { tr {
                    td { (w.route) @if w.forced { " " small { "(kept: not sampled, but it failed or ran a slow statement)" } }
                        @for (p, n) in &w.queries { br; small { (n) " x " (p) } } }
                    td { (w.at) } td { (w.duration_ms) } td { (w.status) }
                } } }
            } }
        }
        section #memory {
            h3 { "Memory" }
            @if s.memory.tracking {
                p { "RSS " (mib(s.memory.rss_bytes as f64)) ", peak since the process started (VmHWM) "
                    (mib(s.memory.hwm_bytes as f64)) ", change over the last "
                    (duration(s.memory.window_seconds as f64)) " "
                    (format!("{:+.1} MiB", s.memory.growth_bytes as f64 / (1024.0 * 1024.0))) "." }
                (line_chart("RSS, MiB, last 15 minutes", &s.memory.samples))
                p.meta { "The RSS change per request of each route is in the endpoint table above"
                    @if est { " (~: measured on sampled requests only)" } "." }
            } @else {
                p { "Memory tracking is off (STARPUNK_PERF_MEMORY_TRACKING)." }
            }
        }
        section #database {
            h3 { "Database" }
            div.cards {
                div.card { "Pool" b { (s.database.pool_in_use) " / " (s.database.pool_size) } "connections in use" }
                div.card { "Queries per second" b { (format!("{:.2}", s.database.queries_per_second)) } (since) }
                div.card { "Cache hit rate" b { @match s.database.cache_hit_rate { Some(r) => { (format!("{:.1}", r * 100.0)) " %" }, None => "n/a" } } }
                div.card { "Database file" b { (bytes(s.database.db_bytes)) } "WAL " (bytes(s.database.wal_bytes)) }
            }
            h3 { "Status codes (" (since) ")" }
            (bar_chart("Responses by status", &status_bars, |v| int(v as u64)))
        }
    };
    views::page(site_name, "Performance", Some(refresh), body).into_string()
}

/// `GET /admin/performance`.
pub fn page(app: &App, req: &Request) -> WebResult {
    if let Err(r) = guard(app, req, true)? {
        return Ok(r);
    }
    let s = snapshot(app);
    Ok(Response::html(render(&app.config.site_name, &s)).with_no_cache())
}
