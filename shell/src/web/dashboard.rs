//! `/admin/performance`: the dashboard (maud, inline SVG, no JavaScript),
//! and its JSON and CSV exports. All three render one `PerfSnapshot`.

use maud::{html, Markup};
use rouille::{Request, Response};

use super::auth::to_login;
use super::ratelimit::RateLimiter;
use super::views;
use super::{App, WebError, WebResult};
use crate::monitoring::snapshot::{rfc3339, DatabaseView, EndpointStats, PerfSnapshot};

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
    let mut out = String::from(
        "timestamp,category,operation,parent,duration_ms,status,bytes,rows,memory_delta,request_id\n",
    );
    if let Some(inner) = app.monitor.inner() {
        let reg = inner.recorder.registry();
        let anchor = inner.recorder.anchor();
        let name = |op| reg.get(op).map_or("", |e| e.name.as_str());
        for r in inner.records() {
            out.push_str(&format!(
                "{},{},{},{},{:.3},{},{},{},{},{}\n",
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
    format!("{v:.1} {}", UNITS[u])
}

fn duration(secs: f64) -> String {
    let s = secs as u64;
    format!(
        "{}d {}h {}m {}s",
        s / 86_400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

/// A horizontal bar chart, as inline SVG.
pub fn bar_chart(title: &str, unit: &str, bars: &[(String, f64)]) -> Markup {
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9);
    let row = 22.0;
    let height = row * bars.len().max(1) as f64 + 10.0;
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 600 " (height) } role="img" aria-label=(title) {
            title { (title) }
            @for (i, (label, value)) in bars.iter().enumerate() {
                @let y = 5.0 + row * i as f64;
                @let w = 260.0 * value / max;
                text x="0" y=(y + 14.0) font-size="11" { (label.chars().take(38).collect::<String>()) }
                rect x="240" y=(y + 3.0) width=(format!("{w:.1}")) height="14" fill="#0b5cad" {}
                text x=(format!("{:.1}", 245.0 + w)) y=(y + 14.0) font-size="11" { (format!("{value:.2}")) " " (unit) }
            }
        }
    }
}

/// A line chart of `(unix seconds, value)` points, as inline SVG.
pub fn line_chart(title: &str, points: &[[u64; 2]]) -> Markup {
    let (w, h) = (600.0, 160.0);
    let (t0, t1) = (
        points.first().map_or(0, |p| p[0]) as f64,
        points.last().map_or(1, |p| p[0]) as f64,
    );
    let lo = points.iter().map(|p| p[1]).min().unwrap_or(0) as f64;
    let hi = points.iter().map(|p| p[1]).max().unwrap_or(1) as f64;
    let span_t = (t1 - t0).max(1.0);
    let span_v = (hi - lo).max(1.0);
    let path: Vec<String> = points
        .iter()
        .map(|p| {
            let x = 50.0 + (p[0] as f64 - t0) / span_t * (w - 60.0);
            let y = 10.0 + (1.0 - (p[1] as f64 - lo) / span_v) * (h - 30.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(title) {
            title { (title) }
            line x1="50" y1=(h - 20.0) x2=(w - 10.0) y2=(h - 20.0) stroke="#999" {}
            text x="0" y="16" font-size="10" { (bytes(hi as u64)) }
            text x="0" y=(h - 22.0) font-size="10" { (bytes(lo as u64)) }
            @if path.len() > 1 {
                polyline points=(path.join(" ")) fill="none" stroke="#0b5cad" stroke-width="2" {}
            } @else {
                text x="60" y=(h / 2.0) font-size="12" { "Not enough samples yet" }
            }
        }
    }
}

fn endpoint_table(rows: &[EndpointStats], with_bytes: bool) -> Markup {
    html! {
        div.scroll { table {
            thead { tr {
                th { "Series" } th { "Count" } th { "Mean ms" } th { "p50" } th { "p95" } th { "p99" } th { "Max" }
                @if with_bytes { th { "Mean bytes" } th { "Statuses" } }
            } }
            tbody { @for e in rows { tr {
                td { (e.name) } td { (e.count) } td { (e.mean_ms) } td { (e.p50_ms) } td { (e.p95_ms) }
                td { (e.p99_ms) } td { (e.max_ms) }
                @if with_bytes {
                    td { (e.bytes_mean) }
                    td { @for (code, n) in &e.status { (code) ": " (n) " " } }
                }
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
    let body = html! {
        h2 { "Performance" }
        p.meta { "Refreshes every " (REFRESH_SECS) " s. Exports: "
            a href="/admin/performance.json" { "JSON" } ", " a href="/admin/performance.csv" { "CSV" } ", "
            a href="/metrics" { "Prometheus" } "." }
        section #overview {
            h3 { "Overview" }
            div.cards {
                div.card { "Uptime" b { (duration(s.uptime_seconds)) } }
                div.card { "Requests" b { (s.requests_total) } (format!("{:.2}", s.requests_per_second)) " /s" }
                div.card { "Mean response" b { (s.mean_response_ms) " ms" } }
                div.card { "p99 response" b { (s.p99_response_ms) " ms" } }
                div.card { "Error rate" b { (format!("{:.2}", s.error_rate * 100.0)) " %" } }
                div.card { "Memory (RSS)" b { @if s.memory.tracking { (bytes(s.memory.rss_bytes)) } @else { "off" } } }
                div.card { "Buffer" b { (s.buffer.len) " / " (s.buffer.capacity) } (s.buffer.overwritten) " overwritten" }
                div.card { "Monitor cost" b { (format!("{:.1}", s.monitor.record_ns)) " ns/record" } (bytes(s.monitor.memory_bytes as u64)) }
            }
            p.meta { "Configuration: sample rate " (s.config.sample_rate) ", slow query threshold "
                (s.config.slow_query_threshold) " s, buffer " (s.config.buffer_size) ", memory tracking "
                (s.config.memory_tracking) ", query log " (s.config.log_queries) ", series "
                (s.monitor.series) " / " (s.monitor.series_capacity) "." }
        }
        section #endpoints {
            h3 { "Endpoint performance (since start)" }
            (bar_chart("p99 by route, ms", "ms", &p99_bars))
            (endpoint_table(&s.endpoints, true))
            h3 { "Endpoint performance (last 15 minutes)" }
            (endpoint_table(&s.endpoints_recent, false))
            h3 { "Named functions" }
            (endpoint_table(&s.functions, false))
        }
        section #slow-queries {
            h3 { "Slow queries (over " (s.config.slow_query_threshold) " s)" }
            @if s.slow_queries.is_empty() { p { "None." } }
            @else { div.scroll { table {
                thead { tr { th { "Pattern" } th { "At" } th { "ms" } th { "Route" } } }
                tbody { @for q in &s.slow_queries { tr { td { (q.pattern) } td { (q.at) } td { (q.duration_ms) } td { (q.route) } } } }
            } } }
        }
        section #query-patterns {
            h3 { "Query patterns" }
            div.scroll { table {
                thead { tr { th { "Pattern" } th { "Calls" } th { "Total ms" } th { "Mean ms" } th { "p99 ms" } th { "Rows" } } }
                tbody { @for q in &s.query_patterns { tr {
                    td { (q.pattern) } td { (q.calls) } td { (q.total_ms) } td { (q.mean_ms) } td { (q.p99_ms) } td { (q.rows) }
                } } }
            } }
            h3 { "Routes x patterns (recent records)" }
            div.scroll { table {
                thead { tr { th { "Route / pattern" } th { "Calls" } th { "Max per request" } } }
                tbody { @for rp in &s.route_patterns { tr {
                    td { (rp.route) br; (rp.pattern) @if rp.n_plus_one { " " span.flag { "N+1" } } }
                    td { (rp.calls) } td { (rp.max_per_request) }
                } } }
            } }
        }
        section #worst-requests {
            h3 { "Slowest recent requests" }
            div.scroll { table {
                thead { tr { th { "Route and queries" } th { "At" } th { "ms" } th { "Status" } } }
                tbody { @for w in s.worst_requests.iter().take(30) { tr {
                    td { (w.route) @for (p, n) in &w.queries { br; small { (n) " x " (p) } } }
                    td { (w.at) } td { (w.duration_ms) } td { (w.status) }
                } } }
            } }
        }
        section #memory {
            h3 { "Memory" }
            @if s.memory.tracking {
                p { "RSS " (bytes(s.memory.rss_bytes)) ", high-water mark " (bytes(s.memory.hwm_bytes))
                    ", growth over the window " (s.memory.growth_bytes) " bytes." }
                (line_chart("RSS, last 15 minutes", &s.memory.samples))
            } @else {
                p { "Memory tracking is off (STARPUNK_PERF_MEMORY_TRACKING)." }
            }
        }
        section #database {
            h3 { "Database" }
            div.cards {
                div.card { "Pool" b { (s.database.pool_in_use) " / " (s.database.pool_size) } }
                div.card { "Queries/sec" b { (format!("{:.2}", s.database.queries_per_second)) } }
                div.card { "Cache hit rate" b { @match s.database.cache_hit_rate { Some(r) => { (format!("{:.1}", r * 100.0)) " %" }, None => "n/a" } } }
                div.card { "Database file" b { (bytes(s.database.db_bytes)) } "WAL " (bytes(s.database.wal_bytes)) }
            }
            h3 { "Status codes" }
            (bar_chart("Responses by status", "", &status_bars))
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
