//! Alerts as an owner meets them: a rule in `STARPUNK_PERF_ALERTS`, the
//! blog driven into and out of it, and a local webhook receiver that must
//! get exactly one "firing" and one "resolved" (its first answer is a 500,
//! so the delivery is retried).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A webhook endpoint: answers its first POST with 500, then 200, and
/// keeps the bodies it accepted.
struct Receiver {
    url: String,
    accepted: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<Mutex<u32>>,
}

fn receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/alerts", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0));
    let (acc, att) = (accepted.clone(), attempts.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            let mut line = String::new();
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            assert!(first.starts_with("POST /hooks/alerts "), "{first}");
            let n = {
                let mut a = att.lock().unwrap();
                *a += 1;
                *a
            };
            let status = if n == 1 {
                "500 Internal Server Error"
            } else {
                acc.lock()
                    .unwrap()
                    .push(serde_json::from_slice::<Value>(&body).unwrap());
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Receiver {
        url,
        accepted,
        attempts,
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_slow_spell_fires_once_and_resolves_once_through_the_webhook() {
    let hook = receiver();
    let rule = "p99 > 30ms for 2s";
    let perf = starpunk::config::PerfConfig {
        monitoring_enabled: true,
        alerts: starpunk::monitoring::ticker::alerts::parse_rules(rule, &["GET /"]).unwrap(),
        alert_webhook: Some(starpunk::config::Secret(hook.url.clone())),
        // "The last minute" shortened to 3 s, evaluated every second.
        alert_window_seconds: 3.0,
        alert_every_seconds: 1,
        ..starpunk::config::PerfConfig::default()
    };
    let blog = start_with("alerts", perf, |_| {});
    let count = |state: &str| {
        hook.accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["state"] == state)
            .count()
    };
    // A slow spell: every request takes 60 ms.
    wait_for("the firing", Duration::from_secs(30), || {
        blog.get("/__test/sleep/60");
        count("firing") == 1
    });
    // Fast again: the slow requests leave the 3-second window, then the
    // rule must stay clear for 2 s.
    wait_for("the resolution", Duration::from_secs(30), || {
        blog.get("/");
        count("resolved") == 1
    });
    // Nothing more arrives: no flapping, no duplicate.
    for _ in 0..30 {
        blog.get("/");
        std::thread::sleep(Duration::from_millis(100));
    }
    let bodies = hook.accepted.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let (firing, resolved) = (&bodies[0], &bodies[1]);
    assert_eq!(firing["state"], "firing");
    assert_eq!(resolved["state"], "resolved");
    for b in &bodies {
        assert_eq!(b["rule"], rule);
        assert_eq!(b["threshold"], 30.0);
        assert_eq!(b["unit"], "ms");
        assert_eq!(b["site"], blog.base.as_str());
        let at = b["at"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
            "{at}"
        );
    }
    assert!(firing["value"].as_f64().unwrap() > 30.0, "{firing}");
    assert!(resolved["value"].as_f64().unwrap() <= 30.0, "{resolved}");
    // The first POST got a 500 and was retried.
    assert_eq!(*hook.attempts.lock().unwrap(), 3);

    // The dashboard shows the rule and both events, and the webhook counts.
    let cookie = blog.login();
    let agent = blog.agent();
    let auth = [("Cookie", cookie.as_str())];
    let (_, json) = blog.get_with(&agent, "/admin/performance.json", &auth);
    let v: Value = serde_json::from_str(&json).unwrap();
    let a = &v["alerts"];
    assert_eq!(a["rules"][0]["rule"], rule);
    assert_eq!(a["rules"][0]["state"], "ok");
    assert_eq!(a["events"].as_array().unwrap().len(), 2);
    assert_eq!(a["events"][0]["state"], "resolved", "newest first");
    assert_eq!(a["webhook"]["delivered"], 2);
    assert_eq!(a["webhook"]["attempts"], 3);
    // The webhook's URL (it may hold a token) is never shown, not even by
    // the configuration's Debug.
    assert!(!format!("{:?}", blog.app().monitor.config()).contains("hooks/alerts"));
    assert_eq!(v["config"]["alert_webhook"], true);
    assert!(!json.contains("hooks/alerts"));
    let (_, html) = blog.get_with(&agent, "/admin/performance", &auth);
    assert!(html.contains("id=\"alerts\"") && html.contains("p99 &gt; 30ms for 2s"));
    assert!(!html.contains("hooks/alerts"));
}

#[test]
fn range_views_show_the_rules_and_the_events_survive_a_restart() {
    let rule = "p99 > 30ms for 1s";
    let perf = starpunk::config::PerfConfig {
        monitoring_enabled: true,
        history_days: 1,
        alerts: starpunk::monitoring::ticker::alerts::parse_rules(rule, &["GET /"]).unwrap(),
        alert_window_seconds: 3.0,
        alert_every_seconds: 1,
        ..starpunk::config::PerfConfig::default()
    };
    let blog = start_with("alerts-range", perf.clone(), |_| {});
    let firing = || {
        blog.app()
            .monitor
            .inner()
            .unwrap()
            .alerts_view()
            .events
            .iter()
            .any(|e| e.state == "firing")
    };
    wait_for("the firing", Duration::from_secs(30), || {
        blog.get("/__test/sleep/60");
        firing()
    });
    let json = |blog: &Blog, query: &str| -> Value {
        let cookie = blog.login();
        let (code, body) = blog.get_with(
            &blog.agent(),
            &format!("/admin/performance.json{query}"),
            &[("Cookie", &cookie)],
        );
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    for range in ["1h", "24h", "7d", "30d"] {
        let v = json(&blog, &format!("?range={range}"));
        let a = &v["alerts"];
        assert_eq!(a["rules"][0]["rule"], rule, "range {range}: {a}");
        assert!(
            a["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["state"] == "firing"),
            "range {range}: {a}"
        );
    }
    let cookie = blog.login();
    let (_, html) = blog.get_with(
        &blog.agent(),
        "/admin/performance?range=24h",
        &[("Cookie", &cookie)],
    );
    assert!(
        html.contains("p99 &gt; 30ms for 1s"),
        "the range page names the rule"
    );
    assert!(!html.contains("No alert rules"));

    // A restart: the firing is still shown, live and in the range views.
    let dir = blog.dir.clone();
    blog.stop_keeping_data();
    let again = start_in(&dir, perf);
    for query in ["", "?range=1h"] {
        let v = json(&again, query);
        let events = v["alerts"]["events"].as_array().unwrap();
        assert!(
            events
                .iter()
                .any(|e| e["state"] == "firing" && e["rule"] == rule),
            "after a restart ({query:?}): {events:?}"
        );
    }
}
