//! The live page, top to bottom: [`render`] of one snapshot.

use super::*;

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
            a href="#worst-requests" { "slowest requests" } ", " a href="#own-traffic" { "your own requests" } ", "
            a href="#refused" { "refused" } ", " a href="#memory" { "memory" } ", "
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
        section #refused {
            h3 { "Refused by the HTTP front" }
            @if s.refused.total == 0 {
                p.meta { "None " (since) ": every request reached a handler." }
            } @else {
                p.meta { (int(s.refused.total)) " requests " (since) " were refused or timed out before any handler ran "
                    "(a body too large or too slow, a head too large or unreadable, no room for more bodies). "
                    "They are not readers' requests: they are left out of the request counts, latency and error rates above "
                    "and of alert rules, unless a rule names " code { "refused" } "." }
                div.scroll { table {
                    thead { tr { th { "Reason" } th.num { "Status" } th.num { "Requests" } } }
                    tbody { @for r in s.refused.reasons.iter().filter(|r| r.count > 0) {
                        tr { td { (r.reason.replace('_', " ")) } td.num { @if r.status > 0 { (r.status) } } td.num { (int(r.count)) } }
                    } }
                } }
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
                    (int(s.buffer.dropped)) " dropped (lost to a writer a lap ahead; still counted everywhere else); "
                    "the newest records, less up to " (s.buffer.block) " for each block of tickets another thread took meanwhile" } }
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
