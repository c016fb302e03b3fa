//! 200 slow bodies, 200 clients that never read, 2,000 idle connections,
//! all at once against one server, from 48 clients (loopback addresses,
//! each within its 64-connection share): a fresh client's `GET /health`
//! still answers within 100 ms and the process stays under 64 MiB. Alone
//! in its test binary, so the RSS it reads is this test's own.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

#[test]
fn a_crowd_of_slow_stuck_and_idle_connections_leaves_health_fast_and_memory_flat() {
    let blog = start_limited("crowd", |l| {
        l.body_timeout = Duration::from_secs(120);
        l.write_timeout = Duration::from_secs(120);
        l.header_timeout = Duration::from_secs(120);
    });
    for i in 0..20 {
        blog.micropub_form(&format!("crowd note {i} {}", "words ".repeat(500)));
    }
    let before = rss_mib();
    let alone: Vec<Duration> = (0..5).map(|_| health(&blog).1).collect();
    let mut held = Vec::new();
    let pipelined = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(20);
    // 50 connections a client: 4 clients of slow bodies, 4 that never
    // read, 40 idle.
    for i in 0..200 {
        let mut s = connect_from(&blog, [127, 0, 2, 1 + i / 50]);
        s.write_all(b"POST /micropub HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nslow")
            .unwrap();
        held.push(s);
    }
    for i in 0..200 {
        held.push(never_reading(&blog, [127, 0, 3, 1 + i / 50], &pipelined));
    }
    for i in 0..2_000 {
        held.push(connect_from(&blog, [127, 0, 4, 1 + (i / 50) as u8]));
    }
    // The stuck clients' pipelined pages are rendered (CPU work the attack
    // buys) and left in buffers they never read; then they only hold
    // connections.
    // The monitor says when: the count of home pages served stops growing
    // (a lull in /health timings is no proof; the renders come in waves).
    let home_pages = || {
        let inner = blog.app().monitor.inner().unwrap();
        let reg = inner.recorder.registry();
        reg.lookup(starpunk_perf::Category::Http, "GET /")
            .and_then(|id| reg.get(id))
            .map_or(0, |e| e.value.count())
    };
    let start = std::time::Instant::now();
    let mut last = home_pages();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = home_pages();
        if now == last {
            break;
        }
        last = now;
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the stuck clients' pages never stopped rendering"
        );
    }
    let quiet_after = start.elapsed();
    let times: Vec<Duration> = (0..5)
        .map(|_| {
            let (code, took) = health(&blog);
            assert_eq!(code, 200);
            took
        })
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    let median = sorted[2];
    let rss = rss_mib();
    eprintln!(
        "/health alone {alone:?}; with a crowd of 2,400 connections: quiet after {quiet_after:?} \
         ({last} pages rendered for the stuck clients), \
         /health {times:?}; RSS {before:.1} -> {rss:.1} MiB"
    );
    assert!(median < Duration::from_millis(100), "/health: {times:?}");
    assert!(
        rss < 64.0,
        "RSS {rss:.1} MiB with 2,400 hostile connections"
    );
    drop(held);
}
