//! Starts a real blog on an ephemeral port for end-to-end tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use starpunk::app::{self, Running};
use starpunk::config::{Config, PerfConfig};

pub const PASSWORD: &str = "correct horse battery";
pub const TOKEN: &str = "micropub-token-0123456789";
pub const METRICS_TOKEN: &str = "metrics-token-0123456789";

/// The `id`s of the dashboard's sections.
pub const DASHBOARD_SECTIONS: [&str; 12] = [
    "overview",
    "changes",
    "alerts",
    "endpoints",
    "slow-queries",
    "query-patterns",
    "worst-requests",
    "own-traffic",
    "refused",
    "memory",
    "database",
    "monitor",
];

pub struct Blog {
    pub running: Option<Running>,
    pub base: String,
    pub dir: PathBuf,
}

static N: AtomicU32 = AtomicU32::new(0);

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "starpunk-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub fn config(tag: &str, perf: PerfConfig) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: temp_dir(tag),
        site_url: "http://127.0.0.1".into(),
        site_url_explicit: true,
        site_name: "Test Blog".into(),
        admin_password: Some(PASSWORD.into()),
        micropub_token: Some(TOKEN.into()),
        metrics_token: Some(METRICS_TOKEN.into()),
        perf,
        // The access log is tested on the binary (tests/process.rs); here
        // it would print a line per request into the test output.
        http: starpunk::config::HttpSettings {
            access_log: false,
            ..Default::default()
        },
    }
}

pub fn monitoring() -> PerfConfig {
    PerfConfig {
        monitoring_enabled: true,
        ..PerfConfig::default()
    }
}

/// Starts a blog; `tweak` may change the app before it serves.
pub fn start_with(
    tag: &str,
    perf: PerfConfig,
    tweak: impl FnOnce(&mut starpunk::app::Blog),
) -> Blog {
    let mut cfg = config(tag, perf);
    let dir = cfg.data_dir.clone();
    // The site URL must be the real address; bind first to learn the port.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    cfg.bind = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.site_url = format!("http://127.0.0.1:{port}");
    let (mut app, generated) = app::build(cfg).unwrap();
    app.login_limit = starpunk::web::ratelimit::RateLimiter::new(1000, 6000);
    app.dashboard_limit = starpunk::web::ratelimit::RateLimiter::new(1000, 6000);
    app.password_checks = starpunk::web::ratelimit::RateLimiter::new(1000, 6000);
    app.token_failures = starpunk::web::ratelimit::RateLimiter::new(1000, 6000);
    app.token_failures_global = starpunk::web::ratelimit::RateLimiter::new(1000, 6000);
    tweak(&mut app);
    let running = app::serve(app, generated).unwrap();
    Blog {
        base: format!("http://127.0.0.1:{port}"),
        running: Some(running),
        dir,
    }
}

/// A blog on `dir` (kept by [`Blog::stop_keeping_data`] for a restart).
pub fn start_in(dir: &std::path::Path, perf: PerfConfig) -> Blog {
    let mut cfg = config("in-dir", perf);
    cfg.data_dir = dir.to_path_buf();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    cfg.bind = format!("127.0.0.1:{port}").parse().unwrap();
    cfg.site_url = format!("http://127.0.0.1:{port}");
    let (app, generated) = app::build(cfg).unwrap();
    let running = app::serve(app, generated).unwrap();
    Blog {
        base: format!("http://127.0.0.1:{port}"),
        running: Some(running),
        dir: dir.to_path_buf(),
    }
}

pub fn start(tag: &str) -> Blog {
    start_with(tag, monitoring(), |_| {})
}

impl Blog {
    pub fn app(&self) -> &starpunk::web::App {
        &self.running.as_ref().unwrap().app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client that does not follow redirects.
    pub fn agent(&self) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(20))
            .build()
    }

    /// Status and body of a GET, whatever the status.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.get_with(&self.agent(), path, &[])
    }

    pub fn get_with(
        &self,
        agent: &ureq::Agent,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let mut req = agent.get(&self.url(path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        into_parts(req.call())
    }

    /// Fetches the login form and posts `password` with its CSRF token;
    /// the response, whatever its status.
    pub fn login_attempt(&self, password: &str) -> ureq::Response {
        let agent = self.agent();
        let form = agent.get(&self.url("/admin/login")).call().unwrap();
        let csrf_cookie = set_cookie(&form, "starpunk_login_csrf");
        let html = form.into_string().unwrap();
        let sent = agent
            .post(&self.url("/admin/login"))
            .set("Cookie", &format!("starpunk_login_csrf={csrf_cookie}"))
            .send_form(&[("csrf", &csrf_in(&html)), ("password", password)]);
        match sent {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport error: {e}"),
        }
    }

    /// Logs in; returns the session cookie header value.
    pub fn login(&self) -> String {
        let resp = self.login_attempt(PASSWORD);
        assert_eq!(resp.status(), 303);
        format!("starpunk_session={}", set_cookie(&resp, "starpunk_session"))
    }

    /// Micropub form create; returns the Location.
    pub fn micropub_form(&self, content: &str) -> String {
        let resp = self
            .agent()
            .post(&self.url("/micropub"))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .send_form(&[("h", "entry"), ("content", content)])
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.header("Location").unwrap().to_string()
    }
}

impl Blog {
    /// Stops the server and leaves its data directory in place.
    pub fn stop_keeping_data(mut self) {
        if let Some(r) = self.running.take() {
            r.server.stop();
        }
        self.dir = PathBuf::new();
    }
}

impl Drop for Blog {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.server.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn into_parts(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match r {
        Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
        Err(e) => panic!("transport error: {e}"),
    }
}

pub fn set_cookie(resp: &ureq::Response, name: &str) -> String {
    resp.all("Set-Cookie")
        .into_iter()
        .find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|v| v.split(';').next().unwrap().to_string())
        })
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

pub fn csrf_in(html: &str) -> String {
    let i =
        html.find("name=\"csrf\" value=\"").expect("csrf field") + "name=\"csrf\" value=\"".len();
    html[i..i + 32].to_string()
}

pub struct Sample {
    pub name: String,
    pub labels: std::collections::HashMap<String, String>,
    pub value: f64,
}

/// Parses exposition text with Python's `prometheus_client` (the reference
/// parser; `.ci/run` installs it). Without it: fails in CI, skips elsewhere.
pub fn prometheus_samples(text: &str) -> Option<Vec<Sample>> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value, "type": fam.type})
print(json.dumps(out))
"#;
    use std::io::Write;
    let child = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return skip_or_fail(&format!("python3 not found: {e}")),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        return skip_or_fail("prometheus_client is not installed (pip install prometheus_client)");
    }
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition: {stderr}\n{text}"
    );
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    Some(
        v.into_iter()
            .map(|s| Sample {
                name: s["name"].as_str().unwrap().to_string(),
                labels: s["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                value: s["value"].as_f64().unwrap(),
            })
            .collect(),
    )
}

/// `/admin/performance.json{query}` read with the session `cookie`.
pub fn perf_json(blog: &Blog, cookie: &str, query: &str) -> serde_json::Value {
    let (code, body) = blog.get_with(
        &blog.agent(),
        &format!("/admin/performance.json{query}"),
        &[("Cookie", cookie)],
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

pub fn skip_or_fail<T>(why: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

// Raw-socket clients for the attacks (tests/hostile.rs, tests/crowd.rs).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

pub fn start_limited(tag: &str, f: impl FnOnce(&mut starpunk::config::HttpSettings)) -> Blog {
    start_with(tag, monitoring(), |blog| f(&mut blog.http))
}

pub fn addr(blog: &Blog) -> SocketAddr {
    blog.base.trim_start_matches("http://").parse().unwrap()
}

pub fn connect(blog: &Blog) -> TcpStream {
    let s = TcpStream::connect(addr(blog)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A connection from another loopback address (`127.x.y.z`: all of
/// 127.0.0.0/8 is this host), so the server sees another client.
pub fn connect_from(blog: &Blog, from: [u8; 4]) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&addr(blog).into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A client from `from` with a 4 KiB receive window that sends `requests`
/// and never reads.
pub fn never_reading(blog: &Blog, from: [u8; 4], requests: &[u8]) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(&std::net::SocketAddr::from((from, 0)).into())
        .unwrap();
    socket.connect(&addr(blog).into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let _ = s.write_all(requests);
    s
}

/// What the server did with a connection: everything it sent until it
/// closed (or the 10 s read timeout), and whether it closed.
pub fn drain(mut s: TcpStream) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&out).into_owned(), true)
            }
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

pub fn status_of(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

/// `GET /health` on a fresh connection: status and how long it took.
pub fn health(blog: &Blog) -> (u16, Duration) {
    let t = Instant::now();
    let mut s = connect(blog);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (text, _) = drain(s);
    (status_of(&text).unwrap_or(0), t.elapsed())
}

pub fn rss_mib() -> f64 {
    starpunk::monitoring::memory::read().rss_bytes as f64 / (1024.0 * 1024.0)
}

// Tests that need programs from outside the Rust toolchain (Chromium,
// nginx, Caddy, Prometheus): their files run under `libtest-mimic`
// (`harness = false` in Cargo.toml), so a test whose program this machine
// lacks is reported as *ignored*, with why, in `cargo test`'s own summary
// ("N passed; 0 failed; N ignored") rather than as passed.

/// One test of such a file.
pub struct ToolTest {
    /// Its name, as `cargo test` filters and lists it.
    pub name: &'static str,
    /// The programs it runs (looked up on `PATH`).
    pub needs: &'static [&'static str],
    /// The test: panics on failure.
    pub run: fn(),
}

/// True when `program` is an executable file on `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Runs `tests` as `cargo test` runs a test file (name filters, `--list`,
/// `--ignored`, `--nocapture` and the rest through `libtest-mimic`). Outside
/// CI a test whose programs are missing is ignored and says why on stderr;
/// with `CI` set it runs anyway, so a missing program fails the run.
pub fn run_tool_tests(tests: Vec<ToolTest>) -> ! {
    let ci = std::env::var_os("CI").is_some();
    let trials = tests
        .into_iter()
        .map(|t| {
            let missing: Vec<&str> = t.needs.iter().copied().filter(|p| !on_path(p)).collect();
            let ignored = !missing.is_empty() && !ci;
            if ignored {
                eprintln!(
                    "SKIPPED {}: {} not installed (.ci/run installs it)",
                    t.name,
                    missing.join(", ")
                );
            }
            let run = t.run;
            libtest_mimic::Trial::test(t.name, move || {
                std::panic::catch_unwind(run).map_err(|e| {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into());
                    libtest_mimic::Failed::from(why)
                })
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit()
}
