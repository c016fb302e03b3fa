//! The range and comparison pages (`?range=24h|7d|30d`, `?compare=`):
//! the history's figures, rendered like the live page.

use super::*;

/// Links to every range, the current one in bold.
pub(super) fn range_nav(current: Range) -> Markup {
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
pub(super) fn compare_section(c: &Compare) -> Markup {
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
pub(super) fn render_range(
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
