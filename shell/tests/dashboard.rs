//! The dashboard, its exports and the ADR's security points, end to end.

mod common;

use common::*;
use starpunk::config::PerfConfig;
use starpunk::web::dashboard;
use starpunk::web::ratelimit::RateLimiter;

fn traffic(blog: &Blog) {
    for i in 0..5 {
        blog.micropub_form(&format!("traffic note {i}"));
    }
    for _ in 0..10 {
        blog.get("/");
        blog.get("/feed.xml");
        blog.get("/search?q=traffic");
    }
    blog.get("/no/such/page");
}

#[test]
fn dashboard_after_real_traffic_agrees_with_the_json() {
    let blog = start("dash");
    traffic(&blog);
    let cookie = blog.login();
    let agent = blog.agent();
    blog.app().monitor.tick(1); // the ticker's window checkpoint
    let (code, json) = blog.get_with(&agent, "/admin/performance.json", &[("Cookie", &cookie)]);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in [
        "uptime_seconds",
        "config",
        "requests_total",
        "endpoints",
        "slow_queries",
        "query_patterns",
        "memory",
        "database",
        "buffer",
    ] {
        assert!(v.get(key).is_some(), "missing key {key}");
    }
    for key in [
        "monitoring_enabled",
        "slow_query_threshold",
        "log_queries",
        "memory_tracking",
        "sample_rate",
        "buffer_size",
        "dashboard_enabled",
    ] {
        assert!(v["config"].get(key).is_some(), "missing config.{key}");
    }
    for key in ["rss_bytes", "hwm_bytes", "samples"] {
        assert!(v["memory"].get(key).is_some(), "missing memory.{key}");
    }
    for key in [
        "pool_in_use",
        "pool_size",
        "queries_per_second",
        "cache_hit_rate",
    ] {
        assert!(v["database"].get(key).is_some(), "missing database.{key}");
    }
    for key in ["capacity", "len", "overwritten"] {
        assert!(v["buffer"].get(key).is_some(), "missing buffer.{key}");
    }
    let endpoints = v["endpoints"].as_array().unwrap();
    let home = endpoints
        .iter()
        .find(|e| e["name"] == "GET /")
        .expect("GET / series");
    assert_eq!(home["count"], 10);
    assert_eq!(home["status"]["200"], 10);
    for k in [
        "count",
        "mean_ms",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "bytes_mean",
        "status",
    ] {
        assert!(home.get(k).is_some(), "endpoint key {k}");
    }
    assert!(home["bytes_mean"].as_f64().unwrap() > 500.0);
    assert!(home["p50_ms"].as_f64().unwrap() <= home["max_ms"].as_f64().unwrap());
    assert!(endpoints.iter().any(|e| e["name"] == "(unmatched)"));
    let recent = v["endpoints_recent"].as_array().unwrap();
    let home_recent = recent
        .iter()
        .find(|e| e["name"] == "GET /")
        .expect("GET / in the last 15 minutes");
    assert_eq!(home_recent["count"], 10);
    let patterns = v["query_patterns"].as_array().unwrap();
    assert!(patterns
        .iter()
        .any(|p| p["pattern"].as_str().unwrap().starts_with("SELECT")));
    for p in patterns {
        for k in ["pattern", "calls", "total_ms", "mean_ms", "p99_ms", "rows"] {
            assert!(p.get(k).is_some(), "pattern key {k}");
        }
    }
    assert_eq!(v["buffer"]["capacity"], 1000);
    assert!(v["requests_total"].as_u64().unwrap() >= 36);

    // The page shows the same figures.
    let (code, html) = blog.get_with(&agent, "/admin/performance", &[("Cookie", &cookie)]);
    assert_eq!(code, 200);
    for id in DASHBOARD_SECTIONS {
        assert!(html.contains(&format!("id=\"{id}\"")), "section {id}");
    }
    assert!(html.contains("<svg"), "charts are inline SVG");
    assert!(html.contains("http-equiv=\"refresh\""));
    let row = format!(
        "<td>GET /</td><td>{}</td><td>{}</td>",
        home["count"], home["mean_ms"]
    );
    assert!(
        html.contains(&row),
        "the page's GET / row matches the JSON: {row}"
    );
    let pattern = patterns[0]["pattern"].as_str().unwrap();
    // (Long SQL may break after its commas and parentheses: `<wbr>`.)
    assert!(html
        .replace("<wbr>", "")
        .contains(&maud::html! { (pattern) }.into_string()));
}

#[test]
fn csv_export_parses_with_a_header_row() {
    let blog = start("csv");
    traffic(&blog);
    let cookie = blog.login();
    let (code, body) = blog.get_with(
        &blog.agent(),
        "/admin/performance.csv",
        &[("Cookie", &cookie)],
    );
    assert_eq!(code, 200);
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "timestamp");
    assert!(headers.iter().any(|h| h == "duration_ms"));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert!(rows.len() > 30, "{} rows", rows.len());
    let http = rows.iter().filter(|r| &r[1] == "http").count();
    let db = rows.iter().filter(|r| &r[1] == "db").count();
    assert!(http >= 30 && db >= 30, "http {http} db {db}");
    assert!(rows.iter().any(|r| &r[2] == "GET /"));
    assert!(rows.iter().all(|r| r[4].parse::<f64>().is_ok()));
}

#[test]
fn metrics_parse_as_prometheus_text_with_spec_names() {
    let blog = start("prom");
    traffic(&blog);
    // Bearer token works; the admin session too; nothing else does.
    let (code, text) = blog.get_with(
        &blog.agent(),
        "/metrics",
        &[("Authorization", &format!("Bearer {METRICS_TOKEN}"))],
    );
    assert_eq!(code, 200);
    let (code, _) = blog.get_with(
        &blog.agent(),
        "/metrics",
        &[("Authorization", "Bearer wrong-wrong-wrong-wrong")],
    );
    assert_eq!(code, 401);
    let cookie = blog.login();
    assert_eq!(
        blog.get_with(&blog.agent(), "/metrics", &[("Cookie", &cookie)])
            .0,
        200
    );

    let samples = match prometheus_samples(&text) {
        Some(s) => s,
        None => return,
    };
    let names: std::collections::HashSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    for name in [
        "starpunk_http_request_duration_seconds_bucket",
        "starpunk_http_request_duration_seconds_sum",
        "starpunk_http_request_duration_seconds_count",
        "starpunk_http_requests_total",
        "starpunk_db_query_duration_seconds_bucket",
        "starpunk_db_query_info",
        "process_resident_memory_bytes",
        "starpunk_perf_dropped_total",
    ] {
        assert!(names.contains(name), "missing {name}: {names:?}");
    }
    let home = |name: &str| {
        samples
            .iter()
            .filter(|s| s.name == name && s.labels["route"] == "/" && s.labels["method"] == "GET")
            .collect::<Vec<_>>()
    };
    let buckets = home("starpunk_http_request_duration_seconds_bucket");
    assert_eq!(buckets.len(), 16);
    assert!(
        buckets.windows(2).all(|w| w[0].value <= w[1].value),
        "cumulative"
    );
    let inf = buckets.iter().find(|b| b.labels["le"] == "+Inf").unwrap();
    assert_eq!(inf.value, 10.0);
    assert_eq!(
        home("starpunk_http_request_duration_seconds_count")[0].value,
        10.0
    );
    let sum = home("starpunk_http_request_duration_seconds_sum")[0].value;
    assert!(sum > 0.0 && sum < 10.0, "seconds, not nanoseconds: {sum}");
    let ok = samples
        .iter()
        .find(|s| {
            s.name == "starpunk_http_requests_total"
                && s.labels["route"] == "/"
                && s.labels["status"] == "200"
        })
        .unwrap();
    assert_eq!(ok.value, 10.0);
    let infos: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "starpunk_db_query_info")
        .map(|s| s.labels["pattern"].as_str())
        .collect();
    assert!(
        infos
            .iter()
            .any(|p| p.starts_with("SELECT") && p.contains('?') && p.contains(',')),
        "{infos:?}"
    );
    // Label values are bounded: no raw paths.
    assert!(!text.contains("/no/such/page"));
}

#[test]
fn every_interpolated_string_is_escaped() {
    let blog = start("escape");
    blog.micropub_form("<script>alert('note')</script>");
    blog.get("/%3Cscript%3Ealert('route')%3C/script%3E");
    {
        let conn = blog.app().db.conn().unwrap();
        let rows = conn
            .query(
                "SELECT 1 AS \"<script>alert('pattern')</script>\"",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap();
        assert_eq!(rows, [1]);
    }
    let (_, home) = blog.get("/");
    assert!(!home.contains("<script>"), "note escaped on the home page");
    assert!(home.contains("&lt;script&gt;"));
    let cookie = blog.login();
    let (_, dash) = blog.get_with(&blog.agent(), "/admin/performance", &[("Cookie", &cookie)]);
    assert!(
        dash.contains("alert('pattern')")
            || dash.contains("alert(&#39;pattern&#39;)")
            || dash.contains("&lt;script&gt;alert"),
        "the pattern is shown"
    );
    assert!(
        !dash.contains("<script>"),
        "dashboard has no live script tag"
    );
    assert!(
        !dash.contains("alert('route')"),
        "raw paths never reach the dashboard"
    );
}

#[test]
fn logout_clears_the_metrics() {
    let blog = start("logout");
    traffic(&blog);
    let cookie = blog.login();
    let agent = blog.agent();
    let (_, html) = blog.get_with(&agent, "/admin", &[("Cookie", &cookie)]);
    // The button says what it clears before it does.
    assert!(
        html.contains("Log out and clear the performance metrics"),
        "{html}"
    );
    let csrf = csrf_in(&html);
    let inner = blog.app().monitor.inner().unwrap();
    assert!(inner.recorder.ring().len() > 10);
    blog.app().monitor.close_minute();
    let overview = |blog: &Blog| dashboard::snapshot(blog.app()).overview;
    let before = overview(&blog);
    assert!(before.window.requests > 10, "{before:?}");
    let r = agent
        .post(&blog.url("/admin/logout"))
        .set("Cookie", &cookie)
        .send_form(&[("csrf", &csrf)])
        .unwrap();
    assert_eq!(r.status(), 303);
    // The logout request itself may be recorded after the clear.
    assert!(
        inner.recorder.ring().len() <= 2,
        "{}",
        inner.recorder.ring().len()
    );
    let home = inner
        .recorder
        .registry()
        .lookup(starpunk_perf::Category::Http, "GET /")
        .unwrap();
    assert_eq!(inner.recorder.series(home).unwrap().count(), 0);
    // The overview's minutes are gone too (at most the logout itself).
    let after = overview(&blog);
    assert!(after.window.requests <= 1, "{after:?}");
    assert_eq!(after.points.len(), 1, "{after:?}");
    // The old session is gone.
    let (code, _) = blog.get_with(&agent, "/admin/performance.json", &[("Cookie", &cookie)]);
    assert_eq!(code, 401);
}

#[test]
fn with_clear_on_logout_false_logout_clears_nothing() {
    let perf = PerfConfig {
        clear_on_logout: false,
        ..monitoring()
    };
    let blog = start_with("logout-keeps", perf, |_| {});
    traffic(&blog);
    let cookie = blog.login();
    let agent = blog.agent();
    let (_, html) = blog.get_with(&agent, "/admin", &[("Cookie", &cookie)]);
    assert!(html.contains("the performance metrics are kept"), "{html}");
    assert!(!html.contains("clear the performance metrics"));
    let csrf = csrf_in(&html);
    let before = dashboard::snapshot(blog.app());
    let r = agent
        .post(&blog.url("/admin/logout"))
        .set("Cookie", &cookie)
        .send_form(&[("csrf", &csrf)])
        .unwrap();
    assert_eq!(r.status(), 303);
    let after = dashboard::snapshot(blog.app());
    let home = |s: &starpunk::monitoring::views::PerfSnapshot| {
        s.endpoints
            .iter()
            .find(|e| e.name == "GET /")
            .unwrap()
            .count
    };
    assert_eq!(home(&after), home(&before));
    assert!(
        after.requests_total > before.requests_total,
        "nothing cleared"
    );
    assert!(after.overview.window.requests >= before.overview.window.requests);
}

#[test]
fn dashboard_and_login_are_rate_limited() {
    let blog = start_with("ratelimit", monitoring(), |app| {
        app.dashboard_limit = RateLimiter::new(3, 1);
        app.login_limit = RateLimiter::new(2, 1);
    });
    for _ in 0..3 {
        assert_eq!(blog.get("/admin/performance.json").0, 401);
    }
    let resp = blog
        .agent()
        .get(&blog.url("/admin/performance.json"))
        .call();
    match resp {
        Err(ureq::Error::Status(429, r)) => {
            let wait: u64 = r.header("Retry-After").unwrap().parse().unwrap();
            assert!(wait >= 1);
        }
        other => panic!("expected 429, got {other:?}"),
    }
    let post = || {
        into_parts(
            blog.agent()
                .post(&blog.url("/admin/login"))
                .send_form(&[("password", "x")]),
        )
        .0
    };
    assert_eq!(post(), 403);
    assert_eq!(post(), 403);
    assert_eq!(post(), 429);
}

#[test]
fn disabled_dashboard_is_404_and_disabled_monitoring_says_so() {
    let off = PerfConfig {
        monitoring_enabled: true,
        dashboard_enabled: false,
        ..PerfConfig::default()
    };
    let blog = start_with("nodash", off, |_| {});
    let cookie = blog.login();
    for path in [
        "/admin/performance",
        "/admin/performance.json",
        "/admin/performance.csv",
    ] {
        assert_eq!(
            blog.get_with(&blog.agent(), path, &[("Cookie", &cookie)]).0,
            404,
            "{path}"
        );
    }
    let blog = start_with("nomon", PerfConfig::default(), |_| {});
    let cookie = blog.login();
    let (code, html) = blog.get_with(&blog.agent(), "/admin/performance", &[("Cookie", &cookie)]);
    assert_eq!(code, 200);
    assert!(html.contains("Monitoring is disabled"));
    assert!(blog.app().monitor.inner().is_none());
}

#[test]
fn sampling_thins_the_ring_but_counts_everything_and_keeps_errors() {
    let perf = PerfConfig {
        monitoring_enabled: true,
        sample_rate: 0.0,
        ..PerfConfig::default()
    };
    let blog = start_with("sampling", perf, |_| {});
    for _ in 0..20 {
        blog.get("/");
    }
    blog.get("/__test/panic");
    let inner = blog.app().monitor.inner().unwrap();
    let reg = inner.recorder.registry();
    let series = |name| {
        &reg.get(reg.lookup(starpunk_perf::Category::Http, name).unwrap())
            .unwrap()
            .value
    };
    // Every request counted, at rate 0.
    assert_eq!(series("GET /").count(), 20);
    assert_eq!(series("GET /").status_classes()[2], 20);
    assert_eq!(series("GET /__test/panic").status_classes()[5], 1);
    // Only the 5xx reached the ring, marked as kept by force.
    let ring = inner.records();
    let http: Vec<_> = ring
        .iter()
        .filter(|r| r.category == starpunk_perf::Category::Http)
        .collect();
    assert_eq!(http.len(), 1, "{http:?}");
    assert!(http[0].forced && http[0].status == 500);
}

#[test]
fn the_monitor_stays_within_one_mebibyte_after_traffic_on_every_route() {
    let perf = PerfConfig {
        monitoring_enabled: true,
        memory_tracking: true,
        ..PerfConfig::default()
    };
    let blog = start_with("heap", perf, |_| {});
    let loc = blog.micropub_form("heap note");
    let path = loc.strip_prefix(&blog.base).unwrap().to_string();
    for _ in 0..300 {
        for p in [
            "/",
            path.as_str(),
            "/feed.xml",
            "/feed.atom",
            "/feed.json",
            "/search?q=heap",
            "/health",
            "/style.css",
            "/nope",
        ] {
            blog.get(p);
        }
    }
    let cookie = blog.login();
    for p in [
        "/admin",
        "/admin/performance",
        "/admin/performance.json",
        "/admin/performance.csv",
        "/metrics",
    ] {
        assert_eq!(
            blog.get_with(&blog.agent(), p, &[("Cookie", &cookie)]).0,
            200,
            "{p}"
        );
    }
    blog.app().monitor.sample_memory();
    let inner = blog.app().monitor.inner().unwrap();
    let bytes = inner.recorder.memory_bytes();
    let series = inner.recorder.registry().len();
    eprintln!("monitor after traffic on every route: {bytes} bytes, {series} series");
    assert_eq!(inner.recorder.ring().len(), 1_000, "the ring is full");
    assert!(bytes <= 1 << 20, "{bytes} bytes for {series} series");
}

#[test]
fn the_slowest_requests_and_errors_come_with_their_timelines() {
    let blog = start("timeline");
    blog.micropub_form("a note to read");
    blog.get("/");
    assert_eq!(blog.get("/__test/status/500").0, 500);
    let cookie = blog.login();
    let (code, json) = blog.get_with(
        &blog.agent(),
        "/admin/performance.json",
        &[("Cookie", &cookie)],
    );
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    // The login: its password check is a named function on the request's
    // own time axis, beside its statements. An owner's page: kept in the
    // owner's own group (STARPUNK_PERF_OWN_TRAFFIC=apart by default).
    let login = v["own_traffic"]["slowest"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["route"] == "POST /admin/login")
        .expect("the login is among the slowest requests of its route");
    let total = login["duration_ms"].as_f64().unwrap();
    let spans = login["timeline"].as_array().unwrap();
    let auth = spans
        .iter()
        .find(|s| s["kind"] == "function" && s["name"] == "authentication")
        .unwrap_or_else(|| panic!("no authentication span: {login}"));
    assert!(auth["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(spans.iter().any(|s| s["kind"] == "sql"), "{login}");
    let mut last = 0.0;
    for s in spans {
        let (offset, dur) = (
            s["offset_ms"].as_f64().unwrap(),
            s["duration_ms"].as_f64().unwrap(),
        );
        assert!(offset >= last, "spans in start order: {login}");
        assert!(
            offset + dur <= total + 0.01,
            "a span outside its request: {login}"
        );
        last = offset;
    }
    // SQLite's page cache, read through sqlite3_db_status: a real rate.
    let rate = v["database"]["cache_hit_rate"]
        .as_f64()
        .expect("a cache hit rate");
    assert!(rate > 0.0 && rate <= 1.0, "{rate}");
    // The failed request is listed with the errors.
    let errors = v["recent_errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["status"] == 500), "{errors:?}");
    let (_, html) = blog.get_with(&blog.agent(), "/admin/performance", &[("Cookie", &cookie)]);
    assert!(html.contains("class=\"timeline\""));
    assert!(html.contains("Recent errors (5xx)"));
}
