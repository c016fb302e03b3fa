//! Requests kept in detail (issue 17): the slow and failed requests' stories
//! outlive the ring, say where in the code their time went, and add up; the
//! owner's own visits stay out of the readers' figures.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn page(blog: &Blog, cookie: &str) -> String {
    let (code, body) = blog.get_with(&blog.agent(), "/admin/performance", &[("Cookie", cookie)]);
    assert_eq!(code, 200);
    body
}

/// Every kept request in a snapshot, with the list it is in.
fn kept(s: &Value) -> Vec<(&'static str, &Value)> {
    let mut out = Vec::new();
    for (list, v) in [
        ("worst_requests", &s["worst_requests"]),
        ("recent_errors", &s["recent_errors"]),
        ("slow_statement_requests", &s["slow_statement_requests"]),
        ("own_traffic.slowest", &s["own_traffic"]["slowest"]),
    ] {
        for r in v.as_array().unwrap() {
            out.push((list, r));
        }
    }
    out
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A Micropub create sent while another connection holds the write lock
/// for `hold`; its status.
fn write_behind_a_lock(blog: &Blog, hold: Duration, content: &str) -> u16 {
    let other = rusqlite::Connection::open(blog.dir.join("starpunk.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let status = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let r = blog
                .agent()
                .post(&blog.url("/micropub"))
                .set("Authorization", &format!("Bearer {TOKEN}"))
                .send_form(&[("h", "entry"), ("content", content)]);
            match r {
                Ok(r) | Err(ureq::Error::Status(_, r)) => r.status(),
                Err(e) => panic!("{e}"),
            }
        });
        std::thread::sleep(hold);
        other.execute_batch("ROLLBACK").unwrap();
        writer.join().unwrap()
    });
    status
}

/// `n` requests of cheap reader pages, on two keep-alive clients.
fn traffic(blog: &Blog, n: usize) {
    std::thread::scope(|s| {
        for t in 0..2 {
            s.spawn(move || {
                let agent = blog.agent();
                for i in 0..n / 2 {
                    let path = match (i + t) % 10 {
                        0 => "/",
                        1 => "/health",
                        _ => "/style.css",
                    };
                    let (code, _) = blog.get_with(&agent, path, &[]);
                    assert_eq!(code, 200, "{path}");
                }
            });
        }
    });
}

#[test]
fn a_slow_write_and_a_503_keep_their_stories_through_30000_requests() {
    let blog = start("kept-stories");
    blog.micropub_form("a first note");
    // A write that waits 1.6 s for a lock another process holds (over the
    // 1 s slow threshold), and one that gives up after the 3 s busy
    // timeout and answers 503.
    assert_eq!(
        write_behind_a_lock(&blog, Duration::from_millis(1_600), "waited"),
        201
    );
    assert_eq!(
        write_behind_a_lock(&blog, Duration::from_millis(4_500), "gave up"),
        503
    );
    // A slow statement with a plan to show.
    assert_eq!(blog.get("/__test/slow-query/1100").0, 200);
    let t = Instant::now();
    traffic(&blog, 30_000);
    let took = t.elapsed();
    let cookie = blog.login();
    // The ticker explains the slow patterns within seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let s = loop {
        let s = perf_json(&blog, &cookie, "");
        let plans = s["query_plans"].as_array().unwrap();
        let explained = |p: &str| plans.iter().any(|q| q["pattern"].as_str() == Some(p));
        if explained("BEGIN immediate") && explained("SELECT test_sleep (?)") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no plans: {:#}",
            s["query_plans"]
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // The ring was overwritten many times over.
    assert!(
        s["buffer"]["overwritten"].as_u64().unwrap() > 20_000,
        "{}",
        s["buffer"]
    );

    // The 503: in the recent errors, with its timeline: the BEGIN that
    // waited ~3 s, run from the notes code.
    let errors = s["recent_errors"].as_array().unwrap();
    let failed = errors
        .iter()
        .find(|r| r["route"] == "POST /micropub" && r["status"] == 503)
        .unwrap_or_else(|| panic!("the 503 is gone after {took:?}: {errors:#?}"));
    let waited = failed["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sp| sp["name"] == "BEGIN immediate")
        .unwrap_or_else(|| panic!("no BEGIN in {failed:#}"));
    assert!(f(&waited["duration_ms"]) > 2_900.0, "{waited}");
    let location = waited["location"].as_str().unwrap();
    assert!(location.starts_with("shell/src/db/notes.rs:"), "{location}");
    for key in ["route", "at", "duration_ms", "status", "timeline"] {
        assert!(!failed[key].is_null(), "{key} missing: {failed}");
    }
    for sp in failed["timeline"].as_array().unwrap() {
        for key in ["kind", "name", "offset_ms", "duration_ms", "location"] {
            assert!(!sp[key].is_null(), "{key} missing: {sp}");
        }
    }

    // The slow write: kept as a slow statement's request and as its
    // route's slowest, its slow BEGIN of ~1.6 s with its code location.
    let slow = s["slow_statement_requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "POST /micropub" && r["status"] == 201)
        .unwrap_or_else(|| panic!("the slow write is gone: {:#}", s["slow_statement_requests"]));
    let begin = slow["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sp| sp["name"] == "BEGIN immediate")
        .unwrap();
    assert!(f(&begin["duration_ms"]) > 1_500.0, "{begin}");
    assert!(begin["location"]
        .as_str()
        .unwrap()
        .starts_with("shell/src/db/notes.rs:"));
    let worst: Vec<&Value> = s["worst_requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["route"] == "POST /micropub")
        .collect();
    assert!(worst.iter().any(|r| r["id"] == slow["id"]), "{worst:#?}");
    // The slow log links to it and says where the statement runs from.
    let logged = s["slow_queries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["request"] == slow["id"])
        .unwrap_or_else(|| panic!("{:#}", s["slow_queries"]));
    assert!(logged["location"]
        .as_str()
        .unwrap()
        .starts_with("shell/src/db/notes.rs:"));

    // The plans: BEGIN has none (not a query); the test statement's is
    // SQLite's own wording.
    let plans = s["query_plans"].as_array().unwrap();
    let plan_of = |p: &str| plans.iter().find(|q| q["pattern"] == p).unwrap();
    assert_eq!(
        plan_of("BEGIN immediate")["plan"]["steps"],
        serde_json::json!([])
    );
    let sleep = plan_of("SELECT test_sleep (?)");
    assert_eq!(sleep["plan"]["steps"][0]["detail"], "SCAN CONSTANT ROW");
    assert_eq!(sleep["full_scan"], false);
    assert!(sleep["locations"][0]
        .as_str()
        .unwrap()
        .starts_with("shell/src/web/test_routes.rs:"));
    // Patterns say where they run from.
    let begin_pattern = s["query_patterns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["pattern"] == "BEGIN immediate")
        .unwrap();
    assert!(!begin_pattern["locations"].as_array().unwrap().is_empty());

    // The page shows the same: both requests with their anchors, the
    // code locations and the plans.
    let html = page(&blog, &cookie);
    for id in [failed["id"].as_str().unwrap(), slow["id"].as_str().unwrap()] {
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "{id} not on the page"
        );
    }
    // (Paths may break after each slash on a narrow screen: `<wbr>`.)
    assert!(
        html.replace("<wbr>", "").contains(location),
        "{location} not on the page"
    );
    assert!(html.contains("Query plans") && html.contains("SCAN CONSTANT ROW"));
    // The first screen names the worst request, with a link to it.
    let worst = &s["worst_request"];
    assert!(html.contains(&format!("href=\"#{}\"", worst["id"].as_str().unwrap())));
}

#[test]
fn every_timeline_adds_up_to_its_duration_and_every_view_agrees() {
    let blog = start("kept-sums");
    for i in 0..5 {
        blog.micropub_form(&format!("note {i} about sums"));
    }
    let cookie = blog.login();
    for path in [
        "/",
        "/feed.xml",
        "/feed.atom",
        "/feed.json",
        "/search?q=sums",
        "/notes/note-1-about-sums",
        "/__test/slow-query/30",
        "/__test/status/500",
        "/__test/sleep/20",
    ] {
        for _ in 0..3 {
            blog.get(path);
        }
    }
    let _ = page(&blog, &cookie);
    let s = perf_json(&blog, &cookie, "");
    let all = kept(&s);
    assert!(all.len() >= 10, "{} kept", all.len());
    for (list, r) in &all {
        let d = f(&r["duration_ms"]);
        let p = &r["parts"];
        let sum = f(&p["sql_ms"])
            + f(&p["functions_ms"])
            + f(&p["unlisted_ms"])
            + f(&p["own_code_ms"])
            + f(&p["front_ms"]);
        assert!(
            (sum - d).abs() < 0.0015,
            "{list}: parts {sum} of {d}: {r:#}"
        );
        let timeline = r["timeline"].as_array().unwrap();
        let mut open_fn: Option<(f64, f64)> = None;
        for sp in timeline {
            let (at, len) = (f(&sp["offset_ms"]), f(&sp["duration_ms"]));
            assert!(
                at >= 0.0 && at + len <= d + 0.002,
                "{list}: {sp} outside {d}"
            );
            if sp["depth"] == 0 {
                open_fn = (sp["kind"] == "function").then_some((at, at + len));
            } else {
                let (from, to) = open_fn.unwrap_or_else(|| panic!("nested with no parent: {r:#}"));
                assert!(
                    at >= from - 0.002 && at + len <= to + 0.002,
                    "{sp} outside its function"
                );
            }
        }
    }
    // A statement inside a named function is nested in it, not added to
    // it: the search's statement runs inside `search`.
    let search = all
        .iter()
        .find(|(_, r)| r["route"] == "GET /search")
        .map(|(_, r)| *r)
        .unwrap();
    let spans = search["timeline"].as_array().unwrap();
    assert_eq!(spans[0]["kind"], "function", "{search:#}");
    assert!(spans
        .iter()
        .skip(1)
        .any(|sp| sp["depth"] == 1 && sp["kind"] == "sql"));
    assert_eq!(f(&search["parts"]["sql_ms"]), 0.0, "{search:#}");
    // One request, one duration: each route's slowest kept request is the
    // max its route shows.
    for e in s["endpoints"].as_array().unwrap() {
        let route = e["name"].as_str().unwrap();
        let slowest = all
            .iter()
            .filter(|(_, r)| r["route"] == route)
            .map(|(_, r)| f(&r["duration_ms"]))
            .fold(0.0, f64::max);
        assert_eq!(slowest, f(&e["max_ms"]), "{route}");
    }
}

/// Loads the JSON as an owner would see it after `logins` logins.
fn after_logins(own: starpunk::monitoring::own::OwnTraffic) -> (Value, Value) {
    let blog = start_with(
        "kept-own",
        starpunk::config::PerfConfig {
            own_traffic: own,
            ..monitoring()
        },
        |_| {},
    );
    let note = blog.micropub_form("a reader's note");
    let note = note.trim_start_matches(&blog.base).to_string();
    for i in 0..300 {
        let path = if i % 2 == 0 { "/" } else { note.as_str() };
        assert_eq!(blog.get(path).0, 200, "{path}");
    }
    let cookie = blog.login();
    let before = perf_json(&blog, &cookie, "");
    for _ in 0..5 {
        let c = blog.login();
        let _ = page(&blog, &c);
    }
    (before, perf_json(&blog, &cookie, ""))
}

#[test]
fn the_owners_logins_leave_the_headline_and_the_slowest_lists_as_they_were() {
    use starpunk::monitoring::own::OwnTraffic;
    let (before, after) = after_logins(OwnTraffic::Apart);
    for key in ["p99_response_ms", "mean_response_ms", "error_rate"] {
        assert_eq!(before[key], after[key], "{key}");
    }
    assert_eq!(
        before["overview"]["window"]["p99_ms"],
        after["overview"]["window"]["p99_ms"]
    );
    for r in after["worst_requests"].as_array().unwrap() {
        let route = r["route"].as_str().unwrap();
        assert!(
            !route.contains("/admin") && !route.contains("/metrics"),
            "{route}"
        );
    }
    assert_eq!(
        after["worst_request"]["route"]
            .as_str()
            .map(|r| r.contains("/admin")),
        Some(false)
    );
    for e in after["endpoints_recent"].as_array().unwrap() {
        assert!(!e["name"].as_str().unwrap().contains("/admin"), "{e}");
    }
    // Counted exactly, in their own group, and in every export.
    let own = &after["own_traffic"];
    assert!(own["slowest"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["route"] == "POST /admin/login"));
    assert!(own["requests"].as_u64().unwrap() >= 12, "{own}");
    let logins = after["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POST /admin/login")
        .unwrap();
    assert_eq!(logins["count"], 6);
    // The control: counted like readers', the same logins move the p99.
    let (before, after) = after_logins(OwnTraffic::Include);
    assert!(
        f(&after["p99_response_ms"]) > f(&before["p99_response_ms"]),
        "{} then {}",
        before["p99_response_ms"],
        after["p99_response_ms"]
    );
}
