//! 100 parallel wrong logins: password hashing is bounded (2 at once,
//! argon2id at 19 MiB each), so memory stays flat and the blog answers.
//! Alone in its test binary, so the RSS it reads is this test's own.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use common::*;

#[test]
fn a_hundred_parallel_wrong_logins_keep_memory_bounded() {
    // 100 connections at once from one address: past the default share of
    // 64 a client, so the share is raised for this attack on the hashing.
    let blog = start_with("logins", monitoring(), |b| b.http.max_per_client = 128);
    let before = rss_mib();
    let codes: Mutex<BTreeMap<u16, u32>> = Mutex::new(BTreeMap::new());
    let peak = Mutex::new(before);
    std::thread::scope(|s| {
        for _ in 0..100 {
            s.spawn(|| {
                let code = blog.login_attempt("wrong password!").status();
                *codes.lock().unwrap().entry(code).or_default() += 1;
                let mut p = peak.lock().unwrap();
                *p = p.max(rss_mib());
            });
        }
    });
    let codes = codes.into_inner().unwrap();
    let peak = peak.into_inner().unwrap();
    eprintln!("100 parallel wrong logins: {codes:?}; RSS {before:.1} -> peak {peak:.1} MiB");
    // Wrong (401) or told to retry (503 with Retry-After): never a 500.
    assert!(codes.keys().all(|c| *c == 401 || *c == 503), "{codes:?}");
    assert!(codes.get(&401).copied().unwrap_or(0) >= 1, "{codes:?}");
    assert!(peak < 64.0, "RSS peaked at {peak:.1} MiB");
    // And the hashing memory goes back once the logins are over.
    let after = rss_mib();
    eprintln!("after the logins: {after:.1} MiB");
    assert!(
        after < before + 16.0,
        "RSS {before:.1} -> {after:.1} MiB after the logins"
    );
    assert_eq!(health(&blog).0, 200);
    // The owner still gets in.
    blog.login();
}
