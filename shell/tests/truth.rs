//! The truth test: a deterministic workload with known ground truth, run
//! against the real server at sample rates 1.0, 0.5 and 0.1, read back
//! through `/admin/performance.json`, `.csv`, `/metrics` (with the
//! reference Prometheus parser) and the page itself.
//!
//! Every count must be exact at every rate. The estimates (figures from the
//! sampled records of the ring) must be marked as such and fall within
//! binomial tolerance of the truth. Latency quantiles are measured on a
//! route whose handler sleeps for a known time, so the truth is known
//! there too: p50 and p99 at each rate within 5 % of the rate-1.0 run.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::*;
use serde_json::Value;
use starpunk::config::PerfConfig;

/// Requests per path in one run: 2,000 in all, 20 of them 5xx (1.00 %).
fn workload() -> Vec<(String, u64)> {
    vec![
        ("/".into(), 600),
        ("/notes/{slug}".into(), 400),
        ("/feed.xml".into(), 150),
        ("/health".into(), 220),
        ("/no/such/page".into(), 100),
        ("/__test/status/500".into(), 20),
        ("/__test/sleep/{ms}".into(), 500),
        (format!("/__test/slow-query/{SLOW_MS}"), 10),
    ]
}

const TOTAL: u64 = 2_000;
const ERRORS: u64 = 20;
/// Notes created by Micropub before the workload (each a `POST /micropub`).
const NOTES: u64 = 5;
/// Requests of the login before the JSON is read (form, then post).
const LOGIN: u64 = 2;
/// The slow statement's duration, and the threshold (30 ms) it is far over.
const SLOW_MS: u64 = 80;
const SLOW_THRESHOLD_S: f64 = 0.03;
const SLOW_PATTERN: &str = "SELECT test_sleep (?)";

/// The sleep route's durations: 90 % at 10 ms, 8 % at 20 ms, 2 % at 60 ms,
/// so p50 lies on the 10 ms plateau and p99 on the 60 ms one.
fn sleep_ms(i: u64) -> u64 {
    match i % 100 {
        0..=89 => 10,
        90..=97 => 20,
        _ => 60,
    }
}

/// What one run measured.
struct Run {
    rate: f64,
    json: Value,
    csv: Vec<csv::StringRecord>,
    metrics: Option<Vec<Sample>>,
    html: String,
}

fn run(rate: f64) -> Run {
    let perf = PerfConfig {
        monitoring_enabled: true,
        sample_rate: rate,
        // Large enough that nothing is overwritten: the CSV holds every
        // record the ring kept.
        buffer_size: 100_000,
        slow_query_threshold: SLOW_THRESHOLD_S,
        memory_tracking: true,
        ..PerfConfig::default()
    };
    let blog = start_with(&format!("truth-{rate}"), perf, |_| {});
    let slugs: Vec<String> = (0..NOTES)
        .map(|i| {
            let loc = blog.micropub_form(&format!("truth note {i}"));
            loc.rsplit('/').next().unwrap().to_string()
        })
        .collect();
    // The overview's minutes: one closed after the notes, one after the
    // workload (the ticker may close more at wall-clock minutes).
    blog.app().monitor.close_minute();
    // The requests, interleaved deterministically, shared by 4 clients.
    let mut paths = Vec::new();
    for (path, n) in workload() {
        for i in 0..n {
            paths.push(
                path.replace("{slug}", &slugs[(i % NOTES) as usize])
                    .replace("{ms}", &sleep_ms(i).to_string()),
            );
        }
    }
    assert_eq!(paths.len() as u64, TOTAL);
    let mut order: Vec<usize> = (0..paths.len()).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let statuses: Mutex<HashMap<u16, u64>> = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for chunk in order.chunks(order.len().div_ceil(4)) {
            let (blog, paths, statuses) = (&blog, &paths, &statuses);
            s.spawn(move || {
                let agent = blog.agent();
                for &i in chunk {
                    let (code, _) = blog.get_with(&agent, &paths[i], &[]);
                    *statuses.lock().unwrap().entry(code).or_default() += 1;
                }
            });
        }
    });
    // The workload's own ground truth, as the clients saw it.
    let statuses = statuses.into_inner().unwrap();
    assert_eq!(statuses.get(&500), Some(&ERRORS), "{statuses:?}");
    assert_eq!(statuses.get(&404), Some(&100), "{statuses:?}");

    blog.app().monitor.close_minute();
    blog.app().monitor.tick(1);
    let cookie = blog.login();
    let agent = blog.agent();
    let auth = [("Cookie", cookie.as_str())];
    let (code, json) = blog.get_with(&agent, "/admin/performance.json", &auth);
    assert_eq!(code, 200);
    let (code, csv_text) = blog.get_with(&agent, "/admin/performance.csv", &auth);
    assert_eq!(code, 200);
    let (code, html) = blog.get_with(&agent, "/admin/performance", &auth);
    assert_eq!(code, 200);
    let (code, metrics) = blog.get_with(&agent, "/metrics", &auth);
    assert_eq!(code, 200);
    let csv = csv::Reader::from_reader(csv_text.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect();
    Run {
        rate,
        json: serde_json::from_str(&json).unwrap(),
        csv,
        metrics: prometheus_samples(&metrics),
        html,
    }
}

fn endpoint<'a>(run: &'a Run, name: &str) -> &'a Value {
    run.json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no endpoint {name} at rate {}", run.rate))
}

/// `n` draws at probability `p` land within five standard deviations.
fn binomial_ok(seen: u64, n: u64, p: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (seen as f64 - mean).abs() <= 5.0 * sd + 1.0
}

/// Counts: exact at every rate, in the JSON, the page, `/metrics` and
/// the CSV's force-kept records.
fn check_counts(run: &Run) {
    let j = &run.json;
    let rate = run.rate;
    let expected_total = TOTAL + NOTES + LOGIN;
    assert_eq!(j["requests_total"], expected_total, "rate {rate}");
    assert_eq!(j["errors_5xx"], ERRORS, "rate {rate}");
    assert_eq!(j["client_errors_4xx"], 100, "rate {rate}");
    // The headline figures are the readers': the owner's logins are
    // counted (above, and in their own group) but kept apart from them
    // (STARPUNK_PERF_OWN_TRAFFIC=apart, the default).
    let readers = TOTAL + NOTES;
    assert_eq!(j["own_traffic"]["requests"], LOGIN, "rate {rate}");
    let error_rate = j["error_rate"].as_f64().unwrap();
    let truth = ERRORS as f64 / readers as f64;
    assert!(
        (error_rate - truth).abs() < 1e-12,
        "rate {rate}: error rate {error_rate} vs {truth}"
    );
    assert_eq!(j["status_codes"]["500"], ERRORS, "rate {rate}");
    // The overview's minutes hold every request too: the whole run fits
    // in its fifteen minutes, so its figures equal the since-start ones.
    let o = &j["overview"];
    let points = o["points"].as_array().unwrap();
    // The notes' minute and the workload's (the logins after them are the
    // owner's: not in these points).
    assert!(points.len() >= 2, "rate {rate}: {points:?}");
    let sum = |k: &str| points.iter().map(|p| p[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("requests"), readers, "rate {rate}");
    assert_eq!(sum("errors_5xx"), ERRORS, "rate {rate}");
    assert_eq!(sum("client_errors_4xx"), 100, "rate {rate}");
    let logged = j["slow_queries"].as_array().unwrap().len() as u64;
    assert!(logged < 100, "the slow log holds them all");
    assert_eq!(sum("slow_queries"), logged, "rate {rate}");
    assert_eq!(o["window"]["requests"], readers, "rate {rate}");
    assert_eq!(o["window"]["errors_5xx"], ERRORS, "rate {rate}");
    assert_eq!(o["window"]["error_rate"].as_f64().unwrap(), error_rate);
    assert_eq!(o["window"]["p99_ms"], j["p99_response_ms"], "rate {rate}");
    for (name, n) in [
        ("GET /", 600),
        ("GET /notes/{slug}", 400),
        ("GET /feed.xml", 150),
        ("GET /health", 220),
        ("(unmatched)", 100),
        ("GET /__test/status/{code}", 20),
        ("GET /__test/sleep/{ms}", 500),
        ("GET /__test/slow-query/{ms}", 10),
        ("POST /micropub", NOTES),
    ] {
        let e = endpoint(run, name);
        assert_eq!(e["count"], n, "rate {rate}: {name}");
        let statuses: u64 = e["status"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(statuses, n, "rate {rate}: {name} statuses");
        // The recent window counts every request too.
        let recent = run.json["endpoints_recent"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| {
                panic!(
                    "rate {rate}: no recent {name}: {}",
                    run.json["endpoints_recent"]
                )
            });
        assert_eq!(recent["count"], n, "rate {rate}: {name} (recent)");
    }
    assert_eq!(endpoint(run, "GET /")["status"]["200"], 600);
    assert_eq!(endpoint(run, "(unmatched)")["status"]["404"], 100);
    // Every slow statement is counted and logged, whatever the rate.
    let pattern = run.json["query_patterns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pattern"] == SLOW_PATTERN)
        .unwrap_or_else(|| panic!("no {SLOW_PATTERN}: {}", run.json["query_patterns"]));
    assert_eq!(pattern["calls"], 10, "rate {rate}");
    let slow_logged = run.json["slow_queries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["pattern"] == SLOW_PATTERN)
        .count();
    assert_eq!(slow_logged, 10, "rate {rate}");
    let grouped = run.json["slow_patterns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["pattern"] == SLOW_PATTERN)
        .unwrap();
    assert_eq!(grouped["count"], 10, "rate {rate}");
    assert_eq!(
        grouped["routes"],
        serde_json::json!(["GET /__test/slow-query/{ms}"])
    );
    assert!(grouped["worst_ms"].as_f64().unwrap() >= SLOW_MS as f64);
    // The page shows the same exact figures: the readers' requests (the
    // logins, the JSON and the CSV read before it are the owner's).
    assert_eq!(TOTAL + NOTES, 2_005);
    assert!(
        run.html
            .contains(&format!("{ERRORS} server errors of 2,005 requests")),
        "rate {rate}: the page's error card"
    );

    // The ring keeps every 5xx and every slow statement at every rate.
    let rows =
        |pred: &dyn Fn(&csv::StringRecord) -> bool| run.csv.iter().filter(|r| pred(r)).count();
    assert_eq!(
        rows(&|r| &r[1] == "http" && &r[5] == "500"),
        ERRORS as usize
    );
    assert_eq!(rows(&|r| &r[1] == "db" && &r[2] == SLOW_PATTERN), 10);
    if rate >= 1.0 {
        assert_eq!(rows(&|r| &r[10] == "forced"), 0, "nothing forced at rate 1");
    }

    // Prometheus, through the reference parser: exact counters.
    if let Some(samples) = &run.metrics {
        let value = |name: &str, route: &str, status: Option<&str>| -> f64 {
            samples
                .iter()
                .filter(|s| {
                    s.name == name
                        && s.labels.get("route").map(String::as_str) == Some(route)
                        && status
                            .is_none_or(|st| s.labels.get("status").map(String::as_str) == Some(st))
                })
                .map(|s| s.value)
                .sum()
        };
        assert_eq!(value("starpunk_http_requests_total", "/", None), 600.0);
        assert_eq!(
            value(
                "starpunk_http_requests_total",
                "/__test/status/{code}",
                Some("500")
            ),
            ERRORS as f64
        );
        assert_eq!(
            value(
                "starpunk_http_request_duration_seconds_count",
                "/__test/sleep/{ms}",
                None
            ),
            500.0
        );
        assert_eq!(
            value(
                "starpunk_http_request_duration_seconds_count",
                "(unmatched)",
                None
            ),
            100.0
        );
    }
}

/// Estimates: marked as such below rate 1, and within tolerance.
fn check_estimates(run: &Run, full: &Run) -> String {
    let rate = run.rate;
    let estimated = rate < 1.0;
    assert_eq!(run.json["sampling"]["estimated"], estimated);
    // The ring holds a sample of GET / (chosen by the sampler).
    let sampled_home = run
        .csv
        .iter()
        .filter(|r| &r[1] == "http" && &r[2] == "GET /" && &r[10] == "sampled")
        .count() as u64;
    assert!(
        binomial_ok(sampled_home, 600, rate),
        "rate {rate}: {sampled_home} of 600 sampled"
    );
    // RSS change per request: measured on sampled requests only.
    let home = endpoint(run, "GET /");
    let rss = &home["rss_delta"];
    assert_eq!(rss["of"], 600);
    assert_eq!(rss["estimated"], estimated, "rate {rate}");
    assert!(binomial_ok(rss["measured"].as_u64().unwrap(), 600, rate));
    // Statements per request of GET /: an estimate from the sample, the
    // same workload gives the same figure.
    let per_request = |r: &Run| -> f64 {
        r.json["route_patterns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["route"] == "GET /")
            .map(|p| {
                assert_eq!(p["estimated"], r.rate < 1.0);
                p["per_request"].as_f64().unwrap()
            })
            .sum()
    };
    let (ours, truth) = (per_request(run), per_request(full));
    assert!(truth > 0.0);
    assert!(
        (ours - truth).abs() <= 0.02 * truth,
        "rate {rate}: {ours} statements per GET / vs {truth}"
    );
    // The page says which figures are estimates.
    assert_eq!(run.html.contains("are estimated from the"), estimated);
    assert_eq!(run.html.contains("estimated from "), estimated);

    // Quantiles of the sleep route against the rate-1.0 run: within 5 %.
    let q = |r: &Run, k: &str| endpoint(r, "GET /__test/sleep/{ms}")[k].as_f64().unwrap();
    let mut line = format!(
        "rate {rate}: error rate {:.4} % (truth {:.4} %), requests {} (exact)",
        run.json["error_rate"].as_f64().unwrap() * 100.0,
        ERRORS as f64 / (TOTAL + NOTES) as f64 * 100.0,
        run.json["requests_total"]
    );
    for k in ["p50_ms", "p99_ms"] {
        let (ours, base) = (q(run, k), q(full, k));
        let off = (ours - base) / base;
        line += &format!(", {k} {ours:.3} vs {base:.3} ({:+.2} %)", off * 100.0);
        assert!(off.abs() <= 0.05, "rate {rate}: {k} {ours} vs {base}");
    }
    // And against the known sleeps: p50 on the 10 ms plateau, p99 on 60.
    assert!((10.0..12.0).contains(&q(run, "p50_ms")), "{line}");
    assert!((60.0..66.0).contains(&q(run, "p99_ms")), "{line}");
    line += &format!(
        ", GET / sampled in ring {sampled_home} of 600, RSS change measured on {} of 600",
        rss["measured"]
    );
    line
}

#[test]
fn every_count_is_exact_and_every_estimate_marked_at_rates_1_05_01() {
    let full = run(1.0);
    check_counts(&full);
    let mut report = vec![check_estimates(&full, &full)];
    for rate in [0.5, 0.1] {
        let r = run(rate);
        check_counts(&r);
        report.push(check_estimates(&r, &full));
    }
    for line in report {
        eprintln!("truth: {line}");
    }
}
