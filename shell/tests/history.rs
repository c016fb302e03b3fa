//! The opt-in history as an owner meets it: minutes that survive a
//! restart and show on the 24-hour view and in its JSON export, starts
//! marked and versions compared, nothing written when it is off, and a
//! damaged history file that never stops the blog.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::Value;
use starpunk::config::PerfConfig;

fn with_history(days: u32) -> PerfConfig {
    PerfConfig {
        monitoring_enabled: true,
        history_days: days,
        ..PerfConfig::default()
    }
}

/// Waits until the wall clock is clear of a minute's end: the ticker
/// closes minutes (and rolls up hours) at those, and a test that writes
/// its own minutes across one sees them split. (Seen once in CI at
/// 08:59:00; the views' figures were right for what was written, the
/// test's expectations not.)
fn clear_of_a_minute_boundary() {
    loop {
        let s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60;
        if (3..=50).contains(&s) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn range_json(blog: &Blog, range: &str) -> (u16, Value) {
    let cookie = blog.login();
    let agent = blog.agent();
    let (code, body) = blog.get_with(
        &agent,
        &format!("/admin/performance.json?range={range}"),
        &[("Cookie", cookie.as_str())],
    );
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn route<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn earlier_minutes_survive_a_restart_and_versions_are_compared() {
    clear_of_a_minute_boundary();
    let dir = temp_dir("history");
    std::fs::create_dir_all(&dir).unwrap();
    let a = start_in(&dir, with_history(7));
    for _ in 0..50 {
        a.get("/");
    }
    a.get("/__test/status/500");
    // The ticker writes at each minute's end; the test closes it now.
    a.app().monitor.close_minute();
    a.stop_keeping_data();
    let file = dir.join("perf-history.sqlite3");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the history is private like the database");
    // Pretend the first run was the previous version, two hours ago.
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch(
            "UPDATE starts SET version = '0.0.9', at = at - 7200;
             UPDATE aggregates SET start = start - 7200;",
        )
        .unwrap();

    let b = start_in(&dir, with_history(7));
    for _ in 0..7 {
        b.get("/feed.xml");
    }
    b.app().monitor.close_minute();
    let (code, v) = range_json(&b, "24h");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["range"]["range"], "24h");
    // The first run's minute, after the restart, exact.
    assert_eq!(route(&v, "GET /").unwrap()["count"], 50, "{v}");
    assert_eq!(route(&v, "GET /feed.xml").unwrap()["count"], 7);
    assert_eq!(
        route(&v, "GET /__test/status/{code}").unwrap()["errors_5xx"],
        1
    );
    let points = v["overview"]["points"].as_array().unwrap();
    let total: u64 = points.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, v["overview"]["window"]["requests"].as_u64().unwrap());
    assert!(total >= 58, "{total}");
    // Both starts are there, and the versions compared per route.
    let starts = v["range"]["starts"].as_array().unwrap();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0]["version"], "0.0.9");
    let compare = &v["range"]["compare"];
    assert_eq!(compare["previous"], "0.0.9");
    assert_eq!(compare["current"], env!("CARGO_PKG_VERSION"));
    let home = compare["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "GET /")
        .unwrap();
    assert_eq!(home["requests"], serde_json::json!([50, 0]));
    // The 1-hour view holds only this run's minute; the page renders.
    let (code, hour) = range_json(&b, "1h");
    assert_eq!(code, 200);
    assert!(route(&hour, "GET /").is_none(), "{hour}");
    assert_eq!(route(&hour, "GET /feed.xml").unwrap()["count"], 7);
    assert_eq!(hour["sampling"]["rate"], hour["config"]["sample_rate"]);
    assert!(hour["sampling"]["rate"].as_f64().unwrap() > 0.0);
    let cookie = b.login();
    let agent = b.agent();
    let auth = [("Cookie", cookie.as_str())];
    let (code, page) = b.get_with(&agent, "/admin/performance?range=24h", &auth);
    assert_eq!(code, 200);
    assert!(
        page.contains("The last 24 hours (from the history)"),
        "{page}"
    );
    assert!(page.contains("This version against the previous one"));
    assert!(page.contains("start 0.0.9"), "a start marked on the charts");
    let (code, _) = b.get_with(&agent, "/admin/performance?range=2y", &auth);
    assert_eq!(code, 400);
    // The CSV export takes the same range (a third-party CSV parser).
    let (code, text) = b.get_with(&agent, "/admin/performance.csv?range=24h", &auth);
    assert_eq!(code, 200);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(&reader.headers().unwrap()[2], "count");
    let lines: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let home = lines
        .iter()
        .find(|l| &l[0] == "route" && &l[1] == "GET /")
        .unwrap();
    assert_eq!(&home[2], "50");
    assert!(lines
        .iter()
        .any(|l| &l[0] == "pattern" && l[1].starts_with("SELECT")));
    // Logout (clear on logout, the default) clears the history too.
    let (_, admin) = b.get_with(&agent, "/admin", &auth);
    let csrf = csrf_in(&admin);
    let r = agent
        .post(&b.url("/admin/logout"))
        .set("Cookie", &cookie)
        .send_form(&[("csrf", &csrf)])
        .unwrap();
    assert_eq!(r.status(), 303);
    let (_, v) = range_json(&b, "24h");
    assert!(route(&v, "GET /").is_none(), "{v}");
}

#[test]
fn off_by_default_nothing_is_written() {
    let dir = temp_dir("history-off");
    std::fs::create_dir_all(&dir).unwrap();
    let blog = start_in(&dir, with_history(0));
    blog.get("/");
    blog.app().monitor.close_minute();
    assert!(!dir.join("perf-history.sqlite3").exists());
    let (code, v) = range_json(&blog, "24h");
    assert_eq!(code, 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("STARPUNK_PERF_HISTORY_DAYS"),
        "{v}"
    );
}

#[test]
fn a_damaged_history_file_never_stops_the_blog() {
    let dir = temp_dir("history-damaged");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("perf-history.sqlite3"), vec![0x5a; 8192]).unwrap();
    let blog = start_in(&dir, with_history(7));
    let (code, _) = blog.get("/");
    assert_eq!(code, 200);
    blog.app().monitor.close_minute();
    let (code, health) = blog.get("/health");
    assert_eq!(code, 200, "{health}");
    let (code, v) = range_json(&blog, "24h");
    assert_eq!(code, 404);
    assert!(v["error"].as_str().unwrap().contains("unavailable"), "{v}");
    let cookie = blog.login();
    let agent = blog.agent();
    let (_, page) = blog.get_with(&agent, "/admin/performance", &[("Cookie", cookie.as_str())]);
    assert!(
        page.contains("History: <span class=\"error\">unavailable"),
        "{page}"
    );
    // Nothing of the damaged file was overwritten.
    assert_eq!(
        std::fs::read(dir.join("perf-history.sqlite3")).unwrap(),
        vec![0x5a; 8192]
    );
}

/// `chattr +i|-i` on `files`; false where the filesystem has no immutable
/// attribute (the test then skips).
fn immutable(files: &[std::path::PathBuf], on: bool) -> bool {
    files.iter().all(|f| {
        std::process::Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(f)
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[test]
fn an_unwritable_history_is_shown_the_blog_goes_on_and_writing_resumes() {
    clear_of_a_minute_boundary();
    let dir = temp_dir("history-unwritable");
    std::fs::create_dir_all(&dir).unwrap();
    let blog = start_in(&dir, with_history(7));
    blog.get("/");
    blog.app().monitor.close_minute();
    let files: Vec<_> = ["perf-history.sqlite3", "perf-history.sqlite3-wal"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|f| f.exists())
        .collect();
    if !immutable(&files, true) {
        immutable(&files, false);
        eprintln!("SKIPPED: chattr +i is not available here");
        return;
    }
    for _ in 0..5 {
        blog.get("/feed.xml");
    }
    blog.app().monitor.close_minute();
    let state = starpunk::monitoring::views::HistoryView::of(&blog.app().monitor);
    let (code, _) = blog.get("/health");
    immutable(&files, false);
    assert_eq!(code, 200, "the blog goes on");
    assert!(!state.ok && state.error.is_some(), "{state:?}");
    // Writable again: the next minute writes, and the failed minute's
    // requests were kept for it.
    blog.app().monitor.close_minute();
    let state = starpunk::monitoring::views::HistoryView::of(&blog.app().monitor);
    assert!(state.ok, "{state:?}");
    let (_, v) = range_json(&blog, "1h");
    assert_eq!(route(&v, "GET /feed.xml").unwrap()["count"], 5, "{v}");
}
