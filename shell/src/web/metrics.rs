//! `/metrics`: Prometheus text exposition format 0.0.4.

use std::fmt::Write;

use rouille::{Request, Response};
use starpunk_perf::{Category, Series};

use super::auth::ct_eq;
use super::App;

/// Bucket bounds in seconds (Prometheus' `le`), shared by every histogram.
pub const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Escapes a label value: backslash, double quote and newline.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `Ok(true)` for the metrics token or an admin session; `Err(seconds)`
/// when the client has used up its wrong tokens (see `App::check_token`).
fn authorized(app: &App, req: &Request) -> Result<bool, u64> {
    let bearer = req
        .header("Authorization")
        .and_then(|h| h.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    if let (Some(given), Some(want)) = (bearer, &app.site.metrics_token) {
        if app.check_token(req, || ct_eq(given, want))? {
            return Ok(true);
        }
    }
    Ok(matches!(app.session(req), Ok(Some(_))))
}

fn histogram(out: &mut String, name: &str, labels: &str, s: &Series) {
    // Buckets, sum and count from one side of any reset (logout).
    let (h, sum) = s.read(|s| (s.since_start().snapshot(), s.since_start().sum()));
    let mut cumulative = 0u64;
    let mut iter = h.iter_recorded().peekable();
    for le in BUCKETS {
        let le_ns = (le * 1e9) as u64;
        while let Some(v) = iter.peek() {
            if v.value_iterated_to() <= le_ns {
                cumulative += v.count_at_value();
                iter.next();
            } else {
                break;
            }
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let count = h.len();
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum as f64 / 1e9);
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// One unlabelled sample with its HELP and TYPE lines.
fn scalar(out: &mut String, (name, kind): (&str, &str), help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// The exposition text.
pub fn render(app: &App) -> String {
    let mut out = String::new();
    let rss = crate::monitoring::memory::read();
    scalar(
        &mut out,
        ("process_resident_memory_bytes", "gauge"),
        "Resident memory size in bytes.",
        rss.rss_bytes,
    );
    let enabled = u8::from(app.monitor.inner().is_some());
    scalar(
        &mut out,
        ("starpunk_perf_enabled", "gauge"),
        "Whether performance monitoring is on.",
        enabled,
    );
    let Some(inner) = app.monitor.inner() else {
        return out;
    };
    let reg = inner.recorder.registry();
    let stats = inner.recorder.ring().stats();
    scalar(
        &mut out,
        ("starpunk_perf_dropped_total", "counter"),
        "Records the ring buffer's writers gave up (still counted in every series).",
        stats.dropped,
    );
    scalar(
        &mut out,
        ("starpunk_perf_overwritten_total", "counter"),
        "Records the ring buffer replaced with newer ones.",
        stats.overwritten,
    );
    scalar(
        &mut out,
        ("starpunk_perf_sample_rate", "gauge"),
        "Fraction of events kept in the ring buffer (counts are always exact).",
        inner.recorder.sampler().rate(),
    );

    scalar(
        &mut out,
        ("starpunk_db_slow_queries_total", "counter"),
        "SQL statements over STARPUNK_PERF_SLOW_QUERY_THRESHOLD (every one, at any sample rate).",
        inner.slow_queries_total(),
    );

    out.push_str(
        "# HELP starpunk_http_refused_total Requests the HTTP front refused or timed out before any handler ran (not in starpunk_http_requests_total).\n\
         # TYPE starpunk_http_refused_total counter\n",
    );
    for (reason, count) in inner.refusals.counts() {
        let _ = writeln!(
            out,
            "starpunk_http_refused_total{{reason=\"{}\",status=\"{}\"}} {count}",
            reason.name(),
            reason.status()
        );
    }

    let with_data = |category: Category| -> Vec<_> {
        reg.iter()
            .filter(|(_, e)| e.category == category && e.value.count() > 0)
            .collect()
    };
    let http = with_data(Category::Http);
    let route_labels = |name: &str| {
        let (method, route) = name.split_once(' ').unwrap_or(("ANY", name));
        format!("method=\"{}\",route=\"{}\"", label(method), label(route))
    };
    let _ = writeln!(
        out,
        "# HELP starpunk_http_request_duration_seconds Time to produce a response."
    );
    let _ = writeln!(
        out,
        "# TYPE starpunk_http_request_duration_seconds histogram"
    );
    for (_, e) in &http {
        histogram(
            &mut out,
            "starpunk_http_request_duration_seconds",
            &route_labels(&e.name),
            &e.value,
        );
    }
    let _ = writeln!(
        out,
        "# HELP starpunk_http_requests_total Responses by status (every request, at any sample rate)."
    );
    let _ = writeln!(out, "# TYPE starpunk_http_requests_total counter");
    for (_, e) in &http {
        for (status, n) in e.value.statuses() {
            let status = crate::monitoring::views::status_key(status);
            let _ = writeln!(
                out,
                "starpunk_http_requests_total{{{},status=\"{status}\"}} {n}",
                route_labels(&e.name)
            );
        }
    }
    let db = with_data(Category::Db);
    let _ = writeln!(
        out,
        "# HELP starpunk_db_query_duration_seconds SQL statement time by pattern."
    );
    let _ = writeln!(out, "# TYPE starpunk_db_query_duration_seconds histogram");
    for (id, e) in &db {
        histogram(
            &mut out,
            "starpunk_db_query_duration_seconds",
            &format!("pattern_id=\"{}\"", id.0),
            &e.value,
        );
    }
    let _ = writeln!(
        out,
        "# HELP starpunk_db_query_info The normalised SQL of each pattern_id."
    );
    let _ = writeln!(out, "# TYPE starpunk_db_query_info gauge");
    for (id, e) in &db {
        let _ = writeln!(
            out,
            "starpunk_db_query_info{{pattern_id=\"{}\",pattern=\"{}\"}} 1",
            id.0,
            label(&e.name)
        );
    }
    let _ = writeln!(
        out,
        "# HELP starpunk_function_duration_seconds Named core operation time."
    );
    let _ = writeln!(out, "# TYPE starpunk_function_duration_seconds histogram");
    for (_, e) in with_data(Category::Function) {
        histogram(
            &mut out,
            "starpunk_function_duration_seconds",
            &format!("function=\"{}\"", label(&e.name)),
            &e.value,
        );
    }
    out
}

/// `GET /metrics`: bearer token or admin session.
pub fn handle(app: &App, req: &Request) -> Response {
    let ok = match authorized(app, req) {
        Ok(ok) => ok,
        Err(wait) => return super::ratelimit::RateLimiter::too_many(wait),
    };
    if !ok {
        return Response::text(
            "Unauthorized: send Authorization: Bearer <STARPUNK_METRICS_TOKEN>\n",
        )
        .with_status_code(401)
        .with_unique_header("WWW-Authenticate", "Bearer realm=\"starpunk metrics\"");
    }
    Response::from_data("text/plain; version=0.0.4; charset=utf-8", render(app)).with_no_cache()
}
