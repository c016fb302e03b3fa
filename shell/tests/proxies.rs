//! The reverse-proxy snippets of docs/OPERATING.md, run for real: the
//! `nginx` and `caddy` blocks are read from the document, pointed at a test
//! blog on loopback (plain HTTP instead of TLS, a test port instead of 443),
//! and a page, a keep-alive series and an oversized body go through them.
//! Debian's `nginx` and `caddy` packages; `.ci/run` installs them. Without
//! them the test fails in CI and skips elsewhere.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The first fenced block of `lang` in docs/OPERATING.md.
fn snippet(lang: &str) -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATING.md"))
            .unwrap();
    let start = doc
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("no {lang} block in OPERATING.md"))
        + lang.len()
        + 4;
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_string()
}

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin/", "/usr/bin/"]
        .iter()
        .map(|d| PathBuf::from(format!("{d}{name}")))
        .find(|p| p.exists())
}

/// A port free on every address, below Linux's ephemeral range (32768
/// up): a port the kernel handed out for `:0` is also handed to client
/// sockets of the tests running beside this one, and Caddy listens on
/// every address, so such a port could be taken between the check and
/// the proxy's start.
fn free_port() -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
    (0..12_000u64)
        .map(|i| 20_000 + ((seed + i * 7919) % 12_000) as u16)
        .find(|p| TcpListener::bind(("0.0.0.0", *p)).is_ok())
        .expect("no free port below 32000")
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the proxy on `port` answers `/health` with 200.
fn wait_for(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = ureq::get(&format!("http://127.0.0.1:{port}/health"))
            .timeout(Duration::from_secs(2))
            .call()
            .is_ok_and(|r| r.status() == 200);
        if ok {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("the proxy exited ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "the proxy did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What every proxy must pass: pages over keep-alive, Micropub with its
/// bearer token and `Location`, and a 2 MiB body refused with 413.
fn exercise(blog: &Blog, port: u16) {
    let base = format!("http://127.0.0.1:{port}");
    let agent = blog.agent();
    for _ in 0..20 {
        let r = agent.get(&format!("{base}/")).call().unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.into_string().unwrap().contains("h-feed"));
    }
    let r = agent
        .post(&format!("{base}/micropub"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_form(&[("h", "entry"), ("content", "through the proxy")])
        .unwrap();
    assert_eq!(r.status(), 201);
    let big = "x".repeat(2 << 20);
    let r = agent
        .post(&format!("{base}/micropub"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .set("Content-Type", "application/x-www-form-urlencoded")
        .send_string(&format!("h=entry&content={big}"));
    assert_eq!(into_parts(r).0, 413);
    assert_eq!(blog.app().db.conn().unwrap().count_notes().unwrap(), 1);
}

/// Starts the proxy `cmd` (configured in `dir` to listen on `port`),
/// checks the blog through it, stops it and removes `dir`.
fn proxy_through(blog: &Blog, port: u16, dir: &Path, mut cmd: Command) {
    let mut child = Kill(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for(port, &mut child.0);
    exercise(blog, port);
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

fn the_nginx_snippet_proxies_the_blog() {
    let Some(nginx) = tool("nginx") else {
        skip_or_fail::<()>("nginx is not installed (apt-get install nginx)");
        return;
    };
    let blog = start("nginx");
    let upstream = addr(&blog).port();
    let port = free_port();
    let server = snippet("nginx")
        .replace(
            "listen 443 ssl http2;",
            &format!("listen 127.0.0.1:{port};"),
        )
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{upstream}"));
    let dir = temp_dir("nginx-conf");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n\
         {server}\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(nginx);
    cmd.args(["-c", &dir.join("nginx.conf").display().to_string(), "-e"])
        .arg(dir.join("error.log"));
    proxy_through(&blog, port, &dir, cmd);
}

fn the_caddy_snippet_proxies_the_blog() {
    let Some(caddy) = tool("caddy") else {
        skip_or_fail::<()>("caddy is not installed (apt-get install caddy)");
        return;
    };
    let blog = start("caddy");
    let upstream = addr(&blog).port();
    let port = free_port();
    let admin = free_port();
    let site = snippet("caddy")
        .replace("blog.example {", &format!("http://127.0.0.1:{port} {{"))
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{upstream}"));
    let dir = temp_dir("caddy-conf");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = format!("{{\n  admin 127.0.0.1:{admin}\n  auto_https off\n}}\n{site}");
    std::fs::write(dir.join("Caddyfile"), conf).unwrap();
    let mut cmd = Command::new(caddy);
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir);
    proxy_through(&blog, port, &dir, cmd);
}

/// The tests of this file (`harness = false`: see `common::run_tool_tests`).
fn main() {
    run_tool_tests(vec![
        ToolTest {
            name: "the_nginx_snippet_proxies_the_blog",
            needs: &["nginx"],
            run: the_nginx_snippet_proxies_the_blog,
        },
        ToolTest {
            name: "the_caddy_snippet_proxies_the_blog",
            needs: &["caddy"],
            run: the_caddy_snippet_proxies_the_blog,
        },
    ]);
}
