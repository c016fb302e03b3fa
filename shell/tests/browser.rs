//! The dashboard in a real browser: headless Chromium over WebDriver
//! (chromedriver). Debian's `chromium` and `chromium-driver` packages; `.ci/run`
//! installs them. Without them the test fails in CI and skips elsewhere.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_tool(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.exists())
}

struct Driver {
    child: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Driver {
    fn start(chromium: &Path, chromedriver: &Path, profile: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1800",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        } } });
        let v: Value = agent
            .post(&format!("{base}/session"))
            .send_json(caps)
            .unwrap()
            .into_json()
            .unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Driver {
            child,
            base,
            session,
            agent,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = self.agent.request(method, &url);
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match resp {
            Ok(r) => r.into_json::<Value>().unwrap()["value"].clone(),
            Err(ureq::Error::Status(code, r)) => panic!(
                "{method} {path}: {code} {}",
                r.into_string().unwrap_or_default()
            ),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        )
    }

    /// A Chrome DevTools command through chromedriver.
    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
    }

    /// Lays pages out as a screen `width` x `height` CSS px; `mobile`
    /// as a phone does (the viewport meta tag applies).
    fn emulate(&self, width: u32, height: u32, mobile: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
    }

    /// A screenshot of the whole page, not only the screen; returns the
    /// page's height.
    fn full_page_screenshot(&self, width: u32, to: &Path) -> u64 {
        let height = self
            .script("return document.documentElement.scrollHeight")
            .as_u64()
            .unwrap();
        let shot = self.cdp(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 } }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(to, png).unwrap();
        height
    }

    fn screenshot(&self, to: &Path) {
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(to, png).unwrap();
    }

    fn console_errors(&self) -> Vec<String> {
        let v = self.call("POST", "/se/log", Some(json!({ "type": "browser" })));
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self
            .agent
            .delete(&format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The views the layout check walks at each width: live, then every range
/// of the history.
const VIEWS: [&str; 5] = ["", "?range=1h", "?range=24h", "?range=7d", "?range=30d"];

fn dashboard_renders_in_headless_chromium() {
    let chromium = find_tool(&[
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]);
    let driver = find_tool(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, driver) else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium and chromedriver are required in CI (apt-get install chromium chromium-driver)");
        }
        eprintln!("SKIPPED: chromium or chromedriver not installed (apt-get install chromium chromium-driver)");
        return;
    };
    // Everything on: memory tracking, a week of history, alert rules (the
    // test evaluates them itself, over a 1-second "last minute"), and two
    // starts of the blog a moment apart (two deploy marks at one place on
    // every time axis of the range views).
    let rules = "rss > 1MiB for 0s; p99 > 40ms for 2s; error_rate > 1% for 1m; p99 > 10s for 5m";
    let perf = starpunk::config::PerfConfig {
        monitoring_enabled: true,
        memory_tracking: true,
        history_days: 7,
        alerts: starpunk::monitoring::ticker::alerts::parse_rules(rules, &[]).unwrap(),
        alert_window_seconds: 1.0,
        alert_every_seconds: 3600,
        ..starpunk::config::PerfConfig::default()
    };
    // Minutes of the last hour from an earlier run, RSS rising 1 MiB every
    // 10 minutes: every range holds them all, so each says the same
    // change of memory.
    let now = unix_now();
    let minute = now - now % 60;
    let dir = temp_dir("browser");
    seed_history(
        &dir,
        "0.1.0",
        &(0..4)
            .map(|i| (minute - (50 - 10 * i) * 60, (10 + i as u64) << 20))
            .collect::<Vec<_>>(),
    );
    start_in(&dir, perf.clone()).stop_keeping_data();
    let blog = start_in(&dir, perf);
    for i in 0..8 {
        blog.micropub_form(&format!("Browser note {i} with some *markdown*"));
    }
    // With DASHBOARD_DEMO_MINUTES=N the traffic runs for N real minutes
    // (the README's screenshots).
    let demo_minutes: u64 = std::env::var("DASHBOARD_DEMO_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    traffic(&blog, demo_minutes);
    alerts_in_every_state(&blog);
    // The same with memory tracking off (and no alerts), after a week of
    // an earlier version (a sample every 2 hours) whose memory barely
    // moved: 17.30 to 17.34 MiB.
    let lean_dir = temp_dir("browser-lean");
    seed_history(
        &lean_dir,
        "0.0.9",
        &(0..78)
            .map(|i| {
                let rss = (17.30 + (i % 5) as f64 * 0.01) * 1024.0 * 1024.0;
                (minute - (156 - 2 * i) * 3600, rss as u64)
            })
            .collect::<Vec<_>>(),
    );
    let lean = start_in(
        &lean_dir,
        starpunk::config::PerfConfig {
            monitoring_enabled: true,
            history_days: 7,
            ..starpunk::config::PerfConfig::default()
        },
    );
    lean.micropub_form("A lean note");
    traffic(&lean, 0);

    let profile = temp_dir("chromium-profile");
    let d = Driver::start(&chromium, &chromedriver, &profile);
    log_in(&d, &blog);
    // DASHBOARD_SHOTS_DIR: where the screenshots go (the README's are made
    // with DASHBOARD_DEMO_MINUTES=16 DASHBOARD_SHOTS_DIR=docs).
    let shots = std::env::var_os("DASHBOARD_SHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    d.emulate(1280, 900, false);
    d.goto(&blog.url("/admin/performance"));
    assert_eq!(d.call("GET", "/title", None), "Performance - Test Blog");
    for id in DASHBOARD_SECTIONS {
        d.find(&format!("section#{id}"));
    }
    // Every chart is laid out with a real size and drew something.
    let charts = d.script(
        "return Array.from(document.querySelectorAll('svg.chart')).map(s => { \
           const r = s.getBoundingClientRect(); \
           return [r.width, r.height, s.querySelectorAll('rect, polyline, circle').length, \
                   s.getAttribute('aria-label')]; })",
    );
    let charts = charts.as_array().unwrap();
    assert!(charts.len() >= 5, "{charts:?}");
    for c in charts {
        assert!(
            c[0].as_f64().unwrap() > 100.0 && c[1].as_f64().unwrap() > 20.0,
            "{c:?}"
        );
        assert!(c[2].as_u64().unwrap() > 0, "chart drew nothing: {c:?}");
    }
    let text = body_text(&d);
    for wanted in [
        "GET /search",
        "SELECT",
        "Requests per second",
        "p99 response time",
        "Error rate (5xx / all requests)",
        "minutes before now",
        "What changed",
    ] {
        assert!(text.contains(wanted), "missing {wanted:?} in {text}");
    }
    // The banner says which state each rule is in, and for how long.
    for wanted in [
        "Alert firing: rss > 1MiB for 0s",
        "Alert resolving: p99 > 40ms for 2s",
        "below the threshold for ",
    ] {
        assert!(text.contains(wanted), "missing {wanted:?} in {text}");
    }
    clean_layout(&d, "at 1,280 px");
    let desktop_height = d.full_page_screenshot(1280, &shots.join("dashboard-desktop.png"));

    // The slowest request's timeline is open by default (no JavaScript);
    // the first kept request with statements or functions, opened as a
    // click on its summary would.
    assert!(
        d.script("return document.querySelector('details[open] svg.timeline') !== null")
            .as_bool()
            .unwrap(),
        "the slowest request's timeline is not open"
    );
    let timeline = d.script(
        "const t = Array.from(document.querySelectorAll('details svg.timeline')) \
           .find(t => t.querySelectorAll('rect').length >= 2); \
         t.closest('details').open = true; \
         t.scrollIntoView(); const r = t.getBoundingClientRect(); \
         return [r.width, r.height, t.querySelectorAll('rect').length];",
    );
    assert!(
        timeline[0].as_f64().unwrap() > 100.0 && timeline[2].as_u64().unwrap() >= 2,
        "{timeline:?}"
    );
    d.screenshot(&shots.join("dashboard-timeline.png"));

    // A phone: 390 px wide, as a phone lays out the page.
    d.emulate(390, 844, true);
    d.goto(&blog.url("/admin/performance"));
    let phone = clean_layout(&d, "at 390 px");
    assert!(
        phone.words > 1_000 && phone.tables >= 8 && phone.charts >= 6,
        "the checks saw too little: {phone:?}"
    );
    // The front's refusals are in their own table, laid out like the rest
    // (the checks above covered it at this width).
    let refused = d.script(
        "return Array.from(document.querySelectorAll('section#refused td')).map(t => t.textContent)",
    );
    let refused = refused.as_array().unwrap();
    let cells: Vec<&str> = refused.iter().filter_map(|c| c.as_str()).collect();
    assert!(
        cells.contains(&"bad request") && cells.contains(&"body too large"),
        "{cells:?}"
    );
    let phone_height = d.full_page_screenshot(390, &shots.join("dashboard-phone.png"));
    eprintln!(
        "page height: {desktop_height} px at 1,280 ({:.1} screens of 900), {phone_height} px at 390 ({:.1} screens of 844)",
        desktop_height as f64 / 900.0,
        phone_height as f64 / 844.0
    );

    // Every view at both widths, with memory tracking on and off: the
    // live page and each range of the history.
    // (Cookies do not tell ports apart: one blog's session at a time.)
    let started = Instant::now();
    let mut seen = Layout::default();
    for (b, memory) in [
        (&lean, "memory tracking off"),
        (&blog, "memory tracking on"),
    ] {
        log_in(&d, b);
        for (width, height, mobile) in [(1280, 900, false), (390, 844, true)] {
            d.emulate(width, height, mobile);
            for view in VIEWS {
                d.goto(&b.url(&format!("/admin/performance{view}")));
                let what = format!("{memory}, /admin/performance{view} at {width} px");
                let l = clean_layout(&d, &what);
                assert!(l.charts >= 4 && l.tables >= 3, "{what}: {l:?}");
                if !view.is_empty() {
                    let text = body_text(&d);
                    assert!(text.contains("(from the history)"), "{what}: {text}");
                    assert!(!text.contains("-0.0"), "{what}: {text}");
                }
                seen.add(&l);
            }
        }
    }
    // The history's memory change is one figure at every range: the
    // same minutes are in each.
    d.goto(&blog.url("/admin/performance?range=1h"));
    let change = |d: &Driver| {
        d.script(
            "return Array.from(document.querySelectorAll('#overview .card small')) \
               .map(s => s.textContent).find(t => t.includes('over the range'))",
        )
        .as_str()
        .unwrap()
        .to_string()
    };
    let hour = change(&d);
    for view in &VIEWS[2..] {
        d.goto(&blog.url(&format!("/admin/performance{view}")));
        assert_eq!(change(&d), hour, "{view}");
    }
    eprintln!(
        "{} views: {} tables ({} columns), {} charts ({} labels) checked in {:.1} s",
        4 * VIEWS.len(),
        seen.tables,
        seen.columns,
        seen.charts,
        seen.labels,
        started.elapsed().as_secs_f64()
    );

    // The checks can fail: each kind of defect, made on the page, is
    // reported.
    d.emulate(390, 844, true);
    d.goto(&blog.url("/admin/performance?range=1h"));
    d.script(
        "const p = document.querySelector('#endpoints p'); \
         p.style.wordBreak = 'break-all'; p.style.width = '3rem'; \
         const svg = document.querySelector('svg.chart'); \
         svg.querySelector('text').setAttribute('x', '300'); \
         const ticks = svg.querySelectorAll('text.tick'); \
         ticks[1].setAttribute('x', ticks[0].getAttribute('x')); \
         ticks[1].setAttribute('text-anchor', ticks[0].getAttribute('text-anchor')); \
         svg.querySelectorAll('text.value').forEach(t => t.textContent = '17.3 MiB'); \
         const charts = document.querySelectorAll('svg.chart'); \
         charts[1].querySelector('text.value').setAttribute('font-size', '24'); \
         charts[2].style.width = '50%'; \
         const h = document.createElement('h3'); \
         h.textContent = charts[0].querySelector('text').textContent; \
         charts[0].parentElement.parentElement.insertBefore(h, charts[0].parentElement); \
         document.querySelectorAll('#endpoints th:first-child, #endpoints td:first-child') \
           .forEach(c => c.style.position = 'static');",
    );
    let broken = layout_problems(&d);
    for kind in [
        "broken mid-word",
        "runs off its chart",
        "labels overlap",
        "axis ticks repeat",
        "px high",
        "charts of different widths",
        "repeats the heading",
        "cannot be read beside the first column",
    ] {
        assert!(
            broken.problems.iter().any(|p| p.contains(kind)),
            "{kind:?} not reported: {:#?}",
            broken.problems
        );
    }
    // On a wide screen a table that does not fit is reported, scrollable
    // or not.
    d.emulate(1280, 900, false);
    d.goto(&blog.url("/admin/performance"));
    d.script("document.querySelector('#endpoints table').style.minWidth = '1200px';");
    let wide = layout_problems(&d);
    assert!(
        wide.problems
            .iter()
            .any(|p| p.contains("outside its box on a wide screen")),
        "{:#?}",
        wide.problems
    );

    // The defaults (no memory tracking, no history, no alerts) name their
    // settings instead of figures: long words, on a 360 px phone.
    let plain = start_with("browser-defaults", monitoring(), |_| {});
    plain.get("/");
    log_in(&d, &plain);
    d.emulate(360, 780, true);
    d.goto(&plain.url("/admin/performance"));
    let defaults = clean_layout(&d, "defaults at 360 px");
    assert!(
        defaults.words > 300,
        "the checks saw too little: {defaults:?}"
    );
    let text = body_text(&d);
    assert!(
        text.contains("STARPUNK_PERF_MEMORY_TRACKING=false"),
        "{text}"
    );

    let errors = d.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    eprintln!("screenshots in {}", shots.display());
    let _ = std::fs::remove_dir_all(profile);
}

/// A few minutes of traffic for the overview's charts and the history:
/// the test closes each minute itself (the ticker does it at each
/// wall-clock minute). With `demo_minutes` > 0, the traffic runs for that
/// many real minutes instead.
fn traffic(blog: &Blog, demo_minutes: u64) {
    let batches = if demo_minutes > 0 {
        demo_minutes * 12
    } else {
        5
    };
    for batch in 0..batches {
        // A load that rises and falls, a 5xx now and then.
        let load = 3 + (batch % 7) * 2;
        for i in 0..load {
            blog.get("/");
            blog.get(&format!("/search?q=note+{i}"));
            blog.get("/feed.atom");
        }
        // In the demo's last third, every batch also waits on a slow
        // request: the overview shows the change.
        if demo_minutes > 0 && batch > batches * 2 / 3 {
            blog.get("/__test/sleep/15");
        }
        if batch % 4 == 1 {
            blog.get("/__test/status/500");
            blog.get(&format!("/__test/sleep/{}", 20 + batch % 30));
        }
        blog.get("/missing");
        if batch % 4 == 2 {
            // What the front refuses itself: a bad Host (400) and a body
            // over 1 MiB (413), shown apart in "Refused by the HTTP front".
            for raw in [
                &b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n"[..],
                &b"POST /micropub HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n"[..],
            ] {
                let mut s = connect(blog);
                let _ = s.write_all(raw);
                let _ = drain(s);
            }
        }
        if demo_minutes > 0 {
            std::thread::sleep(Duration::from_secs(5));
        } else {
            blog.app().monitor.sample_memory();
            blog.app().monitor.close_minute();
        }
    }
}

/// Unix seconds now.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes minutes into the history in `dir` before a blog opens it, as
/// an earlier run of `version` started at the first of them would have:
/// per minute (Unix seconds at its start, RSS bytes), twenty requests of
/// `GET /`.
fn seed_history(dir: &Path, version: &str, minutes: &[(i64, u64)]) {
    use starpunk::monitoring::ticker::history::{Cumulative, History, KIND_ROUTE};
    std::fs::create_dir_all(dir).unwrap();
    let empty = starpunk_perf::new_hdr(&starpunk_perf::RecorderConfig::default().layout);
    let mut history = History::open(dir, 7, version, minutes[0].0, empty.clone()).unwrap();
    let (mut latency, mut c) = (empty, Cumulative::default());
    for (i, &(start, rss)) in minutes.iter().enumerate() {
        for k in 0..20u64 {
            let ns = 2_000_000 + k * 300_000 * (1 + i as u64 % 4);
            latency.saturating_record(ns);
            c.counts.count += 1;
            c.counts.sum_ns += ns;
            c.counts.bytes += 4_000;
        }
        c.buckets = latency
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        history
            .write_minute(start, vec![(KIND_ROUTE, "GET /".into(), c.clone())], 0, rss)
            .unwrap();
    }
}

/// Drives the rules of [`dashboard_renders_in_headless_chromium`] (over a
/// 1-second window, evaluated here) into each state: `rss > 1MiB` fires at
/// once, `p99 > 40ms for 2s` fires after 2 s of slow requests and is left
/// resolving, `error_rate > 1% for 1m` pending, `p99 > 10s` ok.
fn alerts_in_every_state(blog: &Blog) {
    let monitor = &blog.app().monitor;
    monitor.evaluate_alerts();
    for _ in 0..4 {
        blog.get("/__test/sleep/60");
        blog.get("/__test/status/500");
        std::thread::sleep(Duration::from_millis(1050));
        monitor.sample_memory();
        monitor.evaluate_alerts();
    }
    blog.get("/");
    blog.get("/__test/status/500");
    std::thread::sleep(Duration::from_millis(1050));
    monitor.evaluate_alerts();
    let states: Vec<&str> = monitor
        .inner()
        .unwrap()
        .alerts_view()
        .rules
        .iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, ["firing", "resolving", "pending", "ok"]);
}
/// Logs `d` in to `blog`'s admin pages.
fn log_in(d: &Driver, blog: &Blog) {
    d.goto(&blog.url("/admin/login"));
    let pw = d.find("input[name=password]");
    d.call(
        "POST",
        &format!("/element/{pw}/value"),
        Some(json!({ "text": PASSWORD })),
    );
    let button = d.find("button[type=submit]");
    d.call("POST", &format!("/element/{button}/click"), Some(json!({})));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d
        .call("GET", "/url", None)
        .as_str()
        .unwrap()
        .ends_with("/admin")
    {
        assert!(Instant::now() < deadline, "login did not reach /admin");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The page's text as laid out.
fn body_text(d: &Driver) -> String {
    d.script("return document.body.innerText")
        .as_str()
        .unwrap()
        .to_string()
}

/// [`layout_problems`], asserting there are none (`what`: which view).
fn clean_layout(d: &Driver, what: &str) -> Layout {
    let layout = layout_problems(d);
    assert!(layout.problems.is_empty(), "{what}: {:#?}", layout.problems);
    layout
}

/// What [`layout_problems`] found and how much it looked at.
#[derive(Debug, Default)]
struct Layout {
    problems: Vec<String>,
    words: u64,
    tables: u64,
    columns: u64,
    charts: u64,
    labels: u64,
}

impl Layout {
    /// Counts what `other` looked at too.
    fn add(&mut self, other: &Layout) {
        self.words += other.words;
        self.tables += other.tables;
        self.columns += other.columns;
        self.charts += other.charts;
        self.labels += other.labels;
    }
}

/// Checks every table and chart on the page as laid out now (see
/// [`LAYOUT_CHECK`] for what readable means).
fn layout_problems(d: &Driver) -> Layout {
    let v = d.script(LAYOUT_CHECK);
    let count = |k: &str| v[k].as_u64().unwrap();
    Layout {
        problems: v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect(),
        words: count("words"),
        tables: count("tables"),
        columns: count("columns"),
        charts: count("charts"),
        labels: count("labels"),
    }
}

/// What "readable" means, checked on the page as laid out (every
/// expander open):
///
/// - Nothing is wider than the screen: the page, paragraphs, lists,
///   cards, headings, charts and the `.scroll` boxes tables sit in.
/// - No word is broken across lines, and no table cell is narrower than
///   its text.
/// - Every column of every table can be read. On a wide screen (1,000 px
///   or more) every table fits its box: no column lies outside the screen
///   or is cut by its box. On a narrower screen a table may be wider than
///   the screen only inside a box that scrolls sideways (`.scroll`), and
///   then each column that lies outside must come fully into view when the
///   box is scrolled to it, with the first column (the row's name, sticky)
///   still in view beside it. A column that cannot be reached that way is
///   a problem.
/// - Charts: no text runs off its chart; every text renders at 8 to 16 CSS
///   px (its font size in chart units times the chart's scale: the stated
///   sizes, 9 to 11 units on a chart at most 32rem wide); no two texts of
///   a chart overlap (time-axis ticks and deploy marks included); the
///   ticks of an axis all differ; every `svg.chart` on a page has one
///   width (the status chart sized like the others); and no chart
///   repeats, as its title, the heading just above it.
const LAYOUT_CHECK: &str = r#"
const problems = [];
const vw = document.documentElement.clientWidth;
const where = el => (el.closest('section') || {}).id + ' ' + el.tagName.toLowerCase() + ': ' +
  (el.textContent || '').trim().slice(0, 60);
if (document.documentElement.scrollWidth > vw + 1)
  problems.push('page is ' + document.documentElement.scrollWidth + ' px wide on a ' + vw + ' px screen');
// Open every expander so the hidden rows are checked too (and close
// them again afterwards).
const details = Array.from(document.querySelectorAll('details'));
const was = details.map(d => d.open);
details.forEach(d => d.open = true);
const boxes = document.querySelectorAll('.scroll, svg, .card, p, li, h2, h3');
for (const el of boxes) {
  const r = el.getBoundingClientRect();
  if (r.width > 0 && (r.right > vw + 1 || r.left < -1)) problems.push('wider than the screen: ' + where(el));
}
let words = 0;
const texts = document.querySelectorAll('th, td, summary, .card, li, p, h3');
for (const el of texts) {
  if (el.scrollWidth > el.clientWidth + 1 && el.matches('th, td'))
    problems.push('text wider than its cell: ' + where(el));
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const re = /[^\s-]+/g;
    let m;
    while ((m = re.exec(n.data))) {
      words++;
      const range = document.createRange();
      range.setStart(n, m.index);
      range.setEnd(n, m.index + m[0].length);
      const tops = new Set(Array.from(range.getClientRects()).filter(q => q.width > 0).map(q => Math.round(q.top)));
      if (tops.size > 1) problems.push('word broken mid-word: "' + m[0] + '" in ' + where(el));
    }
  }
}
// Columns: each must be on the screen and inside its box, or (on a narrow
// screen) come into view beside the first column when its box scrolls.
let tables = 0, columns = 0;
for (const table of document.querySelectorAll('table')) {
  const rows = Array.from(table.rows);
  if (!rows.length || !table.getClientRects().length) continue;
  tables++;
  const row = rows.reduce((a, r) => (r.cells.length > a.cells.length ? r : a));
  const cells = Array.from(row.cells);
  columns += cells.length;
  const heads = rows[0].cells.length === cells.length ? Array.from(rows[0].cells) : cells;
  const name = i => '"' + heads[i].textContent.trim().slice(0, 30) + '"';
  const table_name = (table.closest('section') || {}).id + ' table "' +
    Array.from(rows[0].cells).map(c => c.textContent.trim()).join(' | ').slice(0, 60) + '"';
  let box = table.parentElement;
  while (box && box !== document.body && !/(auto|scroll)/.test(getComputedStyle(box).overflowX)) box = box.parentElement;
  const scroller = box && box !== document.body ? box : null;
  const b = scroller ? scroller.getBoundingClientRect() : { left: 0, right: vw };
  const lo = Math.max(0, b.left), hi = Math.min(vw, b.right);
  const out = cells.map((c, i) => i).filter(i => {
    const r = cells[i].getBoundingClientRect();
    return r.left < lo - 1 || r.right > hi + 1;
  });
  if (!out.length) continue;
  const list = out.map(name).join(', ');
  if (vw >= 1000) {
    problems.push('columns ' + list + ' outside its box on a wide screen (' + vw + ' px; the table is ' +
      Math.round(table.getBoundingClientRect().width) + ' px in ' + Math.round(hi - lo) + '): ' + table_name);
    continue;
  }
  if (!scroller) {
    problems.push('columns ' + list + ' off-screen, in no box that scrolls: ' + table_name);
    continue;
  }
  const first = cells[0];
  const start = scroller.scrollLeft;
  for (const i of out) {
    const c = cells[i];
    scroller.scrollLeft = start;
    scroller.scrollLeft = start + c.getBoundingClientRect().right - hi;
    const r = c.getBoundingClientRect(), f = first.getBoundingClientRect();
    if (i === 0 || f.left < lo - 1 || r.left < f.right - 1 || r.right > hi + 1)
      problems.push('column ' + name(i) + ' (' + Math.round(r.width) + ' px) cannot be read beside the first column (' +
        Math.round(f.width) + ' px) in its ' + Math.round(hi - lo) + ' px box, scrolled to: ' + table_name);
  }
  scroller.scrollLeft = start;
}
// Charts.
let charts = 0, labels = 0;
const widths = [];
for (const svg of document.querySelectorAll('svg.chart, svg.timeline, svg.spark')) {
  if (!svg.getClientRects().length) continue;
  charts++;
  const chart = svg.getAttribute('aria-label');
  const vb = svg.viewBox.baseVal;
  const scale = svg.getScreenCTM().a;
  const ts = Array.from(svg.querySelectorAll('text'));
  labels += ts.length;
  const bb = ts.map(t => t.getBBox());
  ts.forEach((t, i) => {
    const b = bb[i];
    if (b.x < -1 || b.x + b.width > vb.width + 1)
      problems.push('text runs off its chart: "' + t.textContent + '" in ' + chart);
    const px = parseFloat(getComputedStyle(t).fontSize) * scale;
    if (px < 8 || px > 16) problems.push('chart text ' + px.toFixed(1) + ' px high (8 to 16): "' + t.textContent + '" in ' + chart);
    for (let j = 0; j < i; j++) {
      const o = bb[j];
      const w = Math.min(b.x + b.width, o.x + o.width) - Math.max(b.x, o.x);
      const h = Math.min(b.y + b.height, o.y + o.height) - Math.max(b.y, o.y);
      if (w > 0.5 && h > 1) problems.push('labels overlap: "' + ts[j].textContent + '" and "' + t.textContent + '" in ' + chart);
    }
  });
  for (const axis of ['value', 'tick']) {
    const v = ts.filter(t => t.classList.contains(axis)).map(t => t.textContent);
    if (new Set(v).size < v.length) problems.push('axis ticks repeat: ' + v.join(' / ') + ' in ' + chart);
  }
  if (svg.matches('svg.chart')) {
    widths.push(svg.getBoundingClientRect().width.toFixed(0) + ' px: ' + chart);
    let el = svg;
    while (el.parentElement && !el.previousElementSibling) el = el.parentElement;
    const above = el.previousElementSibling;
    const start = s => s.toLowerCase().split(/\s+/).slice(0, 3).join(' ');
    if (above && /^H[1-6]$/.test(above.tagName) && ts.length && start(above.textContent) === start(ts[0].textContent))
      problems.push('chart repeats the heading above it: "' + above.textContent.trim() + '" over "' + ts[0].textContent + '"');
  }
}
if (new Set(widths.map(w => w.split(' ')[0])).size > 1)
  problems.push('charts of different widths: ' + widths.join('; '));
details.forEach((d, i) => d.open = was[i]);
return { problems, words, tables, columns, charts, labels };
"#;

/// The test of this file (`harness = false`: see `common::run_tool_tests`).
fn main() {
    run_tool_tests(vec![ToolTest {
        name: "dashboard_renders_in_headless_chromium",
        needs: &["chromium", "chromedriver"],
        run: dashboard_renders_in_headless_chromium,
    }]);
}
