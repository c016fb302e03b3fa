//! Floods that cost the server memory: clients that pipeline requests for
//! large pages and never read, one client holding thousands of
//! connections, connection floods that come and go. The process's RSS is
//! what they are judged by, so the tests of this binary run one at a time
//! (no other test allocates beside them).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// One test at a time in this binary: each reads the process's RSS.
static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Served requests of `template`, from the monitor.
fn served(blog: &Blog, template: &str) -> u64 {
    let inner = blog.app().monitor.inner().unwrap();
    let reg = inner.recorder.registry();
    reg.lookup(starpunk_perf::Category::Http, template)
        .and_then(|id| reg.get(id))
        .map_or(0, |e| e.value.count())
}

/// Refusals of `reason`, from the monitor.
fn refused(blog: &Blog, reason: &str) -> u64 {
    let s = blog
        .app()
        .monitor
        .snapshot(starpunk::monitoring::views::DatabaseView::default());
    s.refused
        .reasons
        .iter()
        .find(|r| r.reason == reason)
        .map_or(0, |r| r.count)
}

/// Waits until `count` stops growing for a second; its last value.
fn settled(count: impl Fn() -> u64, limit: Duration) -> u64 {
    let start = Instant::now();
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let now = count();
        if now == last {
            return now;
        }
        last = now;
        assert!(start.elapsed() < limit, "still growing after {limit:?}");
    }
}

/// `clients` clients, `each` connections each, pipeline 20 requests for a
/// 1 MiB page and never read. What the server rendered for them, what it
/// refused for lack of room, and its RSS before and after.
fn unread_pages(blog: &Blog, clients: u8, each: u8) -> (Vec<TcpStream>, u64, u64, f64, f64) {
    let pages = || served(blog, "GET /__test/bytes/{kib}");
    let before = rss_mib();
    let mut pipelined = Vec::new();
    for _ in 0..20 {
        pipelined.extend_from_slice(b"GET /__test/bytes/1024 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    let held: Vec<TcpStream> = (0..clients)
        .flat_map(|c| (0..each).map(move |_| c))
        .map(|c| never_reading(blog, [127, 0, 5, 1 + c], &pipelined))
        .collect();
    let rendered = settled(pages, Duration::from_secs(60));
    let rss = rss_mib();
    let refusals = refused(blog, "response_budget");
    eprintln!(
        "{clients} clients x {each} connections pipelining 1 MiB pages: {rendered} rendered, \
         {refusals} refused (response_budget); RSS {before:.1} -> {rss:.1} MiB"
    );
    (held, rendered, refusals, before, rss)
}

fn page_server(tag: &str) -> Blog {
    start_limited(tag, |l| {
        l.write_timeout = Duration::from_secs(120);
        l.header_timeout = Duration::from_secs(120);
        l.workers = 4;
    })
}

#[test]
fn a_client_that_never_reads_holds_its_share_of_the_response_budget_and_no_more() {
    let _alone = alone();
    let blog = page_server("response-share");
    // 4 clients x 30 connections: 120 MiB of pages if every connection's
    // page were rendered; each client holds its share, 4 MiB, and one
    // page past it, and the 4 handler threads may each have rendered one
    // more that passed the check beside another.
    let (held, rendered, refusals, before, rss) = unread_pages(&blog, 4, 30);
    assert!(rendered <= 4 * 5 + 4, "{rendered} pages rendered");
    assert!(refusals >= 120 - 4 * 5 - 4, "{refusals} refused");
    assert!(
        rss - before < 24.0 + 12.0,
        "RSS {before:.1} -> {rss:.1} MiB"
    );
    // Everyone else is served at once.
    let times: Vec<Duration> = (0..5)
        .map(|_| {
            let (code, took) = health(&blog);
            assert_eq!(code, 200);
            took
        })
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert!(sorted[2] < Duration::from_millis(100), "/health {times:?}");
    drop(held);
}

#[test]
fn rendered_responses_nobody_reads_are_bounded_server_wide() {
    let _alone = alone();
    let blog = page_server("response-budget");
    // 30 clients x 4 connections, each client under its share: 120 MiB of
    // pages against the 32 MiB budget.
    let (held, rendered, refusals, before, rss) = unread_pages(&blog, 30, 4);
    // The budget, its headroom for clients holding nothing (4 MiB), what
    // the 4 handler threads rendered past it, and the allocator's slack.
    assert!(rendered <= 32 + 4 + 4, "{rendered} pages rendered");
    assert!(refusals > 0, "nothing was refused for lack of room");
    assert!(
        rss - before < 32.0 + 4.0 + 4.0 + 12.0,
        "RSS {before:.1} -> {rss:.1} MiB"
    );
    // Past the budget a request waits a second for room, then gets a 503
    // with Retry-After (not a hang).
    let mut s = connect(&blog);
    s.write_all(b"GET /__test/bytes/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    let (text, _) = drain(s);
    let status = status_of(&text);
    assert!(
        status == Some(200)
            || (status == Some(503) && text.to_ascii_lowercase().contains("retry-after: 1")),
        "{text}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    drop(held);
}

#[test]
fn one_client_holding_4000_connections_leaves_the_others_served() {
    let _alone = alone();
    let blog = start_limited("per-client", |l| {
        l.header_timeout = Duration::from_secs(120);
    });
    let mut held: Vec<TcpStream> = (0..4_000)
        .map(|_| connect_from(&blog, [127, 0, 6, 1]))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let times: Vec<Duration> = (0..10)
        .map(|_| {
            let (code, took) = health(&blog);
            assert_eq!(code, 200);
            took
        })
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    eprintln!("/health beside one client's 4,000 connections: {times:?}");
    assert!(sorted[5] < Duration::from_millis(100), "/health {times:?}");
    // The holder itself was refused past its share: its 65th connection
    // onwards got 503 and were closed.
    let mut last = held.pop().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut text = String::new();
    let _ = last.read_to_string(&mut text);
    assert_eq!(status_of(&text), Some(503), "{text}");
    let refused = refused(&blog, "client_connections");
    assert!(refused >= 4_000 - 64, "{refused} refused");
    drop(held);
}
