//! Guessing tokens is not free (issue 21): wrong Micropub and `/metrics`
//! bearer tokens are limited per client address like logins (429 with
//! `Retry-After`, the token not even looked at), a correct token never uses
//! up the budget, and another address is not affected.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use starpunk::web::ratelimit::RateLimiter;

/// One request from the local address `from` (any 127.0.0.0/8 address is
/// this machine); its status and `Retry-After`.
fn request_from(blog: &Blog, from: [u8; 4], head: &str, body: &str) -> (u16, Option<String>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&addr(blog).into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{head}\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let (text, _) = drain(s);
    let retry = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("retry-after: ")
                .or_else(|| l.strip_prefix("Retry-After: "))
        })
        .map(str::to_string);
    (status_of(&text).unwrap_or(0), retry)
}

fn micropub(blog: &Blog, from: [u8; 4], token: &str) -> (u16, Option<String>) {
    let body = "h=entry&content=guess";
    request_from(
        blog,
        from,
        &format!(
            "POST /micropub HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/x-www-form-urlencoded"
        ),
        body,
    )
}

fn metrics(blog: &Blog, from: [u8; 4], token: &str) -> (u16, Option<String>) {
    request_from(
        blog,
        from,
        &format!("GET /metrics HTTP/1.1\r\nAuthorization: Bearer {token}"),
        "",
    )
}

#[test]
fn token_guesses_are_limited_per_address_and_a_right_token_is_never_counted() {
    // The blog's own limits (the test helper loosens them for other tests).
    let blog = start_with("tokens", monitoring(), |app| {
        app.token_failures = RateLimiter::new(10, 10);
        app.token_failures_global = RateLimiter::new(60, 120);
    });
    let attacker = [127, 0, 0, 2];
    let owner = [127, 0, 0, 3];
    // The owner's right token, many times: never limited.
    for _ in 0..15 {
        assert_eq!(metrics(&blog, owner, METRICS_TOKEN).0, 200);
    }
    // 200 guesses from one address at Micropub: 10 are looked at (403),
    // the rest get 429 with Retry-After.
    let mut statuses = std::collections::HashMap::new();
    let mut retry = None;
    for i in 0..200 {
        let (status, r) = micropub(&blog, attacker, &format!("guess-{i}"));
        *statuses.entry(status).or_insert(0) += 1;
        if status == 429 {
            retry = r;
        }
    }
    assert_eq!(statuses.get(&403), Some(&10), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&190), "{statuses:?}");
    let retry: u64 = retry.expect("429 with Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // The same address is limited at /metrics too (one budget of wrong
    // tokens), even with the right one until its bucket refills.
    assert_eq!(metrics(&blog, attacker, "guess").0, 429);
    assert_eq!(metrics(&blog, attacker, METRICS_TOKEN).0, 429);
    // Another address is not: the owner's right tokens still pass, and a
    // wrong one is still answered 401/403, not 429.
    assert_eq!(metrics(&blog, owner, METRICS_TOKEN).0, 200);
    assert_eq!(micropub(&blog, owner, TOKEN).0, 201);
    assert_eq!(metrics(&blog, owner, "typo").0, 401);
    assert_eq!(micropub(&blog, owner, "typo").0, 403);
}

#[test]
fn guesses_spread_over_addresses_meet_the_site_wide_cap() {
    let blog = start_with("tokens-global", monitoring(), |app| {
        app.token_failures = RateLimiter::new(10, 10);
        app.token_failures_global = RateLimiter::new(30, 60);
    });
    let mut looked_at = 0;
    for host in 10..40u8 {
        for i in 0..5 {
            let (status, _) = metrics(&blog, [127, 0, 1, host], &format!("g{i}"));
            if status == 401 {
                looked_at += 1;
            }
        }
    }
    // 150 guesses from 30 addresses: the site-wide budget (30) bounds
    // what is looked at, whatever the number of addresses.
    assert!((30..=32).contains(&looked_at), "{looked_at} looked at");
}
