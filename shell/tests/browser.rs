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
        ..starpunk::config::PerfConfig::default()
    };
    let blog = start_with("browser", perf, |_| {});
    for i in 0..8 {
        blog.micropub_form(&format!("Browser note {i} with some *markdown*"));
    }
    for i in 0..30 {
        blog.get("/");
        blog.get(&format!("/search?q=note+{i}"));
        blog.get("/feed.atom");
    }
    blog.get("/missing");
    for _ in 0..3 {
        blog.app().monitor.sample_memory();
        std::thread::sleep(Duration::from_millis(1100));
    }

    let profile = temp_dir("chromium-profile");
    let d = Driver::start(&chromium, &chromedriver, &profile);
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
    d.goto(&blog.url("/admin/performance"));
    assert_eq!(d.call("GET", "/title", None), "Performance - Test Blog");
    for id in DASHBOARD_SECTIONS {
        d.find(&format!("section#{id}"));
    }
    // Every chart is laid out with a real size and drew something.
    let charts = d.script(
        "return Array.from(document.querySelectorAll('svg.chart')).map(s => { \
           const r = s.getBoundingClientRect(); \
           return [r.width, r.height, s.querySelectorAll('rect, polyline').length]; })",
    );
    let charts = charts.as_array().unwrap();
    assert!(charts.len() >= 3, "{charts:?}");
    for c in charts {
        assert!(
            c[0].as_f64().unwrap() > 100.0 && c[1].as_f64().unwrap() > 20.0,
            "{c:?}"
        );
        assert!(c[2].as_u64().unwrap() > 0, "chart drew nothing: {c:?}");
    }
    let text = d
        .script("return document.body.innerText")
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("GET /search") && text.contains("SELECT"),
        "{text}"
    );
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    d.screenshot(&shots.join("dashboard.png"));
    // The slowest request's timeline (open by default, no JavaScript).
    let timeline = d.script(
        "const t = document.querySelector('details[open] svg.timeline'); \
         t.scrollIntoView(); const r = t.getBoundingClientRect(); \
         return [r.width, r.height, t.querySelectorAll('rect').length];",
    );
    assert!(
        timeline[0].as_f64().unwrap() > 100.0 && timeline[2].as_u64().unwrap() >= 2,
        "{timeline:?}"
    );
    d.screenshot(&shots.join("dashboard-timeline.png"));

    // Readable on a phone: nothing wider than the screen but scrollable tables.
    d.call(
        "POST",
        "/window/rect",
        Some(json!({ "width": 390, "height": 844 })),
    );
    let overflow = d.script("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(
        overflow.as_f64().unwrap() <= 1.0,
        "page overflows a phone screen by {overflow}px"
    );
    d.screenshot(&shots.join("dashboard-phone.png"));

    let errors = d.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    eprintln!("screenshots in {}", shots.display());
    let _ = std::fs::remove_dir_all(profile);
}
