//! One figure, one value (issue 18): a known workload, then every figure
//! shown in more than one place compared: the page's sections, the JSON,
//! `/metrics`, the kept requests and the 1-hour range view.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::Value;

/// (path, requests): every request of a route runs the same statements.
const WORKLOAD: [(&str, u64); 5] = [
    ("/", 60),
    ("/feed.xml", 30),
    ("/search?q=consistent", 20),
    ("/health", 25),
    ("/__test/status/503", 5),
];

fn by_name<'a>(list: &'a Value, key: &str) -> HashMap<String, &'a Value> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| (e[key].as_str().unwrap().to_string(), e))
        .collect()
}

#[test]
fn every_figure_shown_twice_shows_one_value() {
    let blog = start_with(
        "consistency",
        starpunk::config::PerfConfig {
            history_days: 1,
            // A small ring, so its edge cuts through requests.
            buffer_size: 50,
            ..monitoring()
        },
        |_| {},
    );
    for i in 0..4 {
        blog.micropub_form(&format!("a consistent note {i}"));
    }
    let agent = blog.agent();
    for (path, n) in WORKLOAD {
        for _ in 0..n {
            blog.get_with(&agent, path, &[]);
        }
    }
    // The minute into the history, so the 1-hour view has it.
    blog.app().monitor.close_minute();
    let cookie = blog.login();
    let live = perf_json(&blog, &cookie, "");
    let hour = perf_json(&blog, &cookie, "?range=1h");
    let (_, metrics) = blog.get_with(
        &agent,
        "/metrics",
        &[("Authorization", &format!("Bearer {METRICS_TOKEN}"))],
    );

    let since = by_name(&live["endpoints"], "name");
    let recent = by_name(&live["endpoints_recent"], "name");
    let ranged = by_name(&hour["endpoints"], "name");
    let route = |path: &str| {
        let path = path.split('?').next().unwrap();
        match path {
            "/__test/status/503" => "GET /__test/status/{code}".to_string(),
            p => format!("GET {p}"),
        }
    };
    for (path, n) in WORKLOAD {
        let name = route(path);
        let s = since[&name];
        // The same route's count: since start, the recent window, the
        // 1-hour range view.
        assert_eq!(s["count"], n, "{name} since start");
        assert_eq!(recent[&name]["count"], n, "{name} recent window");
        assert_eq!(ranged[&name]["count"], n, "{name} in the 1-hour view");
        // The same requests, so the same slowest: the window's max is a
        // request's duration, not its bucket's top.
        assert_eq!(recent[&name]["max_ms"], s["max_ms"], "{name} max");
        for q in ["p50_ms", "p95_ms", "p99_ms"] {
            assert_eq!(recent[&name][q], s[q], "{name} {q}");
        }
    }
    // The slowest request of each route: the same duration wherever it is
    // shown (the route's max, the kept list, the first screen).
    for w in live["worst_requests"].as_array().unwrap() {
        let name = w["route"].as_str().unwrap();
        let slowest_kept = live["worst_requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["route"] == name)
            .map(|o| o["duration_ms"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(
            slowest_kept,
            since[name]["max_ms"].as_f64().unwrap(),
            "{name}"
        );
    }
    let worst = &live["worst_request"];
    assert_eq!(worst, &live["worst_requests"][0]);

    // Every request of these routes ran its statements: never below one
    // per request, and calls / requests as stated.
    for rp in live["route_patterns"].as_array().unwrap() {
        let (calls, requests) = (
            rp["calls"].as_u64().unwrap(),
            rp["requests"].as_u64().unwrap(),
        );
        let per = rp["per_request"].as_f64().unwrap();
        assert!(requests > 0, "{rp}");
        assert_eq!(
            per,
            (calls as f64 / requests as f64 * 100.0).round() / 100.0,
            "{rp}"
        );
        if rp["route"] == "GET /" || rp["route"] == "GET /feed.xml" {
            assert!(per >= 1.0, "{rp}");
        }
    }

    // /metrics: the same counts (by route and status) as the JSON.
    if let Some(samples) = prometheus_samples(&metrics) {
        let mut counted: HashMap<String, f64> = HashMap::new();
        let mut histogram: HashMap<String, f64> = HashMap::new();
        for s in &samples {
            // `method` and `route` labels: the series name joins them.
            let route = format!(
                "{} {}",
                s.labels.get("method").map_or("", String::as_str),
                s.labels.get("route").map_or("", String::as_str)
            );
            match s.name.as_str() {
                "starpunk_http_requests_total" => *counted.entry(route).or_default() += s.value,
                "starpunk_http_request_duration_seconds_count" => {
                    *histogram.entry(route).or_default() += s.value
                }
                _ => {}
            }
        }
        for (name, e) in &since {
            let n = e["count"].as_f64().unwrap();
            assert_eq!(counted.get(name), Some(&n), "{name} in /metrics");
            assert_eq!(histogram.get(name), Some(&n), "{name} _count in /metrics");
        }
        // Errors: the JSON's count and the 503s /metrics has.
        let e503: f64 = samples
            .iter()
            .filter(|s| s.name == "starpunk_http_requests_total")
            .filter(|s| s.labels.get("status").map(String::as_str) == Some("503"))
            .map(|s| s.value)
            .sum();
        assert_eq!(e503, live["status_codes"]["503"].as_f64().unwrap());
    }
    // The page shows the JSON's figures.
    let (_, html) = blog.get_with(&agent, "/admin/performance", &[("Cookie", &cookie)]);
    let first = &live["worst_requests"][0];
    assert!(
        html.contains(&format!("{} ms", first["duration_ms"])),
        "{first}"
    );
    // The 1-hour view's totals: its routes add up to its request count.
    let sum: u64 = hour["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hour["requests_total"].as_u64().unwrap(), sum);
}
