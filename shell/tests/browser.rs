//! The dashboard in a real browser: headless Chromium over WebDriver
//! (chromedriver). Debian's `chromium` and `chromium-driver` packages; `.ci/run`
//! installs them. Without them the test fails in CI and skips elsewhere.

mod common;

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

#[test]
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
    let perf = starpunk::config::PerfConfig {
        monitoring_enabled: true,
        memory_tracking: true,
        history_days: 1,
        ..starpunk::config::PerfConfig::default()
    };
    let blog = start_with("browser", perf, |_| {});
    for i in 0..8 {
        blog.micropub_form(&format!("Browser note {i} with some *markdown*"));
    }
    // A few minutes of traffic for the overview's charts: the test closes
    // each minute itself (the ticker does it at each wall-clock minute).
    // With DASHBOARD_DEMO_MINUTES=N the traffic runs for N real minutes
    // instead (the README's screenshots).
    let demo_minutes: u64 = std::env::var("DASHBOARD_DEMO_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
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
        if demo_minutes > 0 {
            std::thread::sleep(Duration::from_secs(5));
        } else {
            blog.app().monitor.sample_memory();
            blog.app().monitor.close_minute();
        }
    }
    for _ in 0..3 {
        blog.app().monitor.sample_memory();
        std::thread::sleep(Duration::from_millis(1100));
    }

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
    let phone_height = d.full_page_screenshot(390, &shots.join("dashboard-phone.png"));
    eprintln!(
        "page height: {desktop_height} px at 1,280 ({:.1} screens of 900), {phone_height} px at 390 ({:.1} screens of 844)",
        desktop_height as f64 / 900.0,
        phone_height as f64 / 844.0
    );

    // The history's 1-hour view, on the phone too.
    d.goto(&blog.url("/admin/performance?range=1h"));
    let range = clean_layout(&d, "1-hour view at 390 px");
    assert!(range.charts >= 4, "{range:?}");
    let text = body_text(&d);
    assert!(
        text.contains("The last 1 hour (from the history)"),
        "{text}"
    );

    // The checks can fail: a paragraph squeezed until its words break, and a
    // chart label pushed off its chart, are both reported.
    d.script(
        "const p = document.querySelector('#endpoints p'); \
         p.style.wordBreak = 'break-all'; p.style.width = '3rem'; \
         document.querySelector('svg.chart text').setAttribute('x', '300');",
    );
    let broken = layout_problems(&d);
    assert!(
        broken
            .problems
            .iter()
            .any(|p| p.contains("broken mid-word"))
            && broken
                .problems
                .iter()
                .any(|p| p.contains("runs off its chart")),
        "{:#?}",
        broken.problems
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
#[derive(Debug)]
struct Layout {
    problems: Vec<String>,
    words: u64,
    tables: u64,
    charts: u64,
}

/// Checks every table and chart on the page as laid out now: nothing
/// wider than the screen (tables may scroll inside their own box), no
/// word broken across lines, no cell or header narrower than its text, no
/// chart text running off its chart, no chart text too small to read.
fn layout_problems(d: &Driver) -> Layout {
    let v = d.script(LAYOUT_CHECK);
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    Layout {
        problems: strings("problems"),
        words: v["words"].as_u64().unwrap(),
        tables: v["tables"].as_u64().unwrap(),
        charts: v["charts"].as_u64().unwrap(),
    }
}

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
let charts = 0;
for (const svg of document.querySelectorAll('svg.chart, svg.timeline, svg.spark')) {
  charts++;
  const vb = svg.viewBox.baseVal;
  for (const t of svg.querySelectorAll('text')) {
    const b = t.getBBox();
    if (b.x < -1 || b.x + b.width > vb.width + 1)
      problems.push('text runs off its chart: "' + t.textContent + '" in ' + svg.getAttribute('aria-label'));
    const h = t.getBoundingClientRect().height;
    if (h > 0 && h < 8) problems.push('chart text ' + h.toFixed(1) + ' px high: "' + t.textContent + '"');
  }
}
const tables = document.querySelectorAll('table').length;
details.forEach((d, i) => d.open = was[i]);
return { problems, words, tables, charts };
"#;
