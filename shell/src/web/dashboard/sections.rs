//! The live page's sections: the cards and their changes, the overview
//! charts, the endpoint and slowest tables, a kept request's details, the
//! alerts.

use super::*;

/// The largest part of a request, in words.
pub(super) fn largest_part(w: &WorstRequest) -> String {
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
pub(super) fn request_details(w: &WorstRequest, open: bool) -> Markup {
    request_details_at(w, open, true)
}

/// [`request_details`], with the request's anchor (`id`) only when
/// `anchor`: a request shown in two lists (a 5xx that is also its route's
/// slowest) is linked to where it first appears.
pub(super) fn request_details_at(w: &WorstRequest, open: bool, anchor: bool) -> Markup {
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
pub(super) fn rss_delta(d: &RssDelta) -> Markup {
    html! {
        @if d.measured == 0 { "–" }
        @else {
            @if d.estimated { abbr title={ "estimated from " (int(d.measured)) " of " (int(d.of)) " requests (sampled)" } { "~" } }
            (kib_signed(d.mean_bytes)) " / " (kib_signed(d.max_bytes as f64))
            @if d.estimated { br; small { "from " (int(d.measured)) " of " (int(d.of)) } }
        }
    }
}

/// A table: its first `top` rows, the rest (up to [`MAX_ROWS`] in all)
/// behind an expander that works without JavaScript (`details`).
pub(super) fn long_table<T>(
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

/// How `now` compares with `before` in words, or "" when there is no
/// earlier period to compare with.
pub(super) fn change(now: f64, before: f64, before_seconds: f64, unit: &str) -> String {
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
pub(super) fn card_trend(
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

/// Sentences on what changed: the last five minutes against the minutes
/// before, routes slower now than since start, new errors and slow
/// statements.
pub(super) fn changes(s: &PerfSnapshot) -> Vec<String> {
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
pub(super) fn values(points: &[(f64, f64)]) -> Vec<f64> {
    points.iter().map(|p| p.1).collect()
}

/// The time axis of the overview's charts, and what one point covers.
pub(super) fn axis_of(s: &PerfSnapshot, end: f64) -> (Axis, &'static str) {
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

/// The overview's four figures with their trends, and its charts.
pub(super) fn overview(s: &PerfSnapshot) -> Markup {
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
pub(super) fn endpoint_table(
    what: &str,
    noun: &str,
    rows: &[EndpointStats],
    with_responses: bool,
) -> Markup {
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
pub(super) fn rss_table(endpoints: &[EndpointStats]) -> Markup {
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
pub(super) fn slowest_routes(s: &PerfSnapshot) -> Markup {
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

/// What a rule's state means, in words: for how long its condition has
/// held (or been false) of the time it needs.
pub(super) fn rule_state_words(r: &RuleView) -> String {
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
pub(super) fn firing(s: &PerfSnapshot) -> Markup {
    html! {
        @for r in s.alerts.rules.iter().filter(|r| r.state == "firing" || r.state == "resolving") {
            p.alert { b { "Alert " (r.state) ": " } code { (r.rule) } " — " (rule_state_words(r))
                "; last minute " (with_unit(r.value, r.unit)) ", threshold " (with_unit(r.threshold, r.unit))
                @if r.state == "resolving" { @if let Some(since) = &r.since { "; firing since " (since) } } "." }
        }
    }
}

/// The alert rules, their states and recent events.
pub(super) fn alerts_section(s: &PerfSnapshot) -> Markup {
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

/// Rows a long table shows before the rest goes behind an expander.
pub(super) const TOP_ROWS: usize = 10;

/// Rows a table shows at most, expander included; the JSON export has
/// them all.
pub(super) const MAX_ROWS: usize = 100;
