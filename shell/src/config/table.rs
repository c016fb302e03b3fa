//! Every setting: its variable, its flag, its help line, and how a value
//! is checked and applied to [`Config`].

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Config;
use crate::http::is_host_and_port;
use crate::monitoring::settings::Secret;

/// What a value is checked against besides itself.
pub(super) struct Known<'a> {
    /// The route templates alert rules may name.
    pub routes: &'a [&'a str],
}

/// One setting: its variable, its flag, and how to apply a value.
pub(super) struct Setting {
    pub env: &'static str,
    pub flag: &'static str,
    pub help: &'static str,
    pub secret: bool,
    pub boolean: bool,
    pub apply: fn(&mut Config, &str, &Known) -> Result<(), Cow<'static, str>>,
}

pub(super) fn parse_bool(v: &str) -> Option<bool> {
    // Trimmed, as the numbers are.
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

const BOOL: &str = "one of true/false/1/0/yes/no/on/off (any case)";

fn set_bool(slot: &mut bool, v: &str) -> Result<(), Cow<'static, str>> {
    *slot = parse_bool(v).ok_or(BOOL)?;
    Ok(())
}

/// `address:port`, or `host:port` for a host that resolves (such as
/// `localhost`; an IPv4 address is preferred).
pub(super) fn parse_bind(v: &str) -> Option<SocketAddr> {
    if let Ok(addr) = v.parse() {
        return Some(addr);
    }
    use std::net::ToSocketAddrs;
    let (host, port) = v.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    let addrs: Vec<SocketAddr> = v.to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

/// `http` or `https` (any case, as RFC 3986 allows; returned in lower
/// case) and the rest of the URL after `://`.
fn split_http_url(v: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = v.split_once("://")?;
    if scheme.eq_ignore_ascii_case("https") {
        Some(("https", rest))
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(("http", rest))
    } else {
        None
    }
}

/// The site URL for a bound address, when none is configured: loopback
/// for an unspecified address (0.0.0.0 is no address to link to).
/// Seconds, whole or fractional, within `range`.
fn seconds(
    v: &str,
    range: std::ops::RangeInclusive<f64>,
    what: &'static str,
) -> Result<Duration, &'static str> {
    let s: f64 = v.trim().parse().map_err(|_| what)?;
    if !range.contains(&s) {
        return Err(what);
    }
    Ok(Duration::from_secs_f64(s))
}

/// A whole number within `range`.
fn count(
    v: &str,
    range: std::ops::RangeInclusive<usize>,
    what: &'static str,
) -> Result<usize, &'static str> {
    let n: usize = v.trim().parse().map_err(|_| what)?;
    if !range.contains(&n) {
        return Err(what);
    }
    Ok(n)
}

fn non_empty(v: &str, what: &'static str) -> Result<String, &'static str> {
    if v.trim().is_empty() {
        Err(what)
    } else {
        Ok(v.to_string())
    }
}

pub(super) const SETTINGS: &[Setting] = &[
    Setting {
        env: "STARPUNK_BIND",
        flag: "--bind",
        help: "address:port to listen on [127.0.0.1:8000]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.bind =
                parse_bind(v).ok_or("an address:port such as 127.0.0.1:8000 or localhost:8000")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_DATA_DIR",
        flag: "--data-dir",
        help: "directory of the SQLite database [./data]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.data_dir = PathBuf::from(non_empty(v, "a non-empty path")?);
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_SITE_URL",
        flag: "--site-url",
        help: "public URL of the blog [http://127.0.0.1:8000]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            const WHAT: &str =
                "an http:// or https:// URL with a host, such as https://blog.example";
            let (scheme, rest) = split_http_url(v).ok_or(WHAT)?;
            let host = rest.split('/').next().unwrap_or("");
            if !is_host_and_port(host.as_bytes())
                || v.chars().any(|ch| ch.is_whitespace() || ch.is_control())
                || v.contains(['?', '#', '"', '<', '>'])
            {
                return Err(WHAT.into());
            }
            c.site_url = format!("{scheme}://{}", rest.trim_end_matches('/'));
            c.site_url_explicit = true;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_SITE_NAME",
        flag: "--site-name",
        help: "name of the blog [StarPunk]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.site_name = non_empty(v, "a non-empty name")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_ADMIN_PASSWORD",
        flag: "--admin-password",
        help: "admin password [generated on first start, printed once]",
        secret: true,
        boolean: false,
        apply: |c, v, _| {
            if v.chars().count() < 8 {
                return Err("a password of at least 8 characters".into());
            }
            c.admin_password = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_MICROPUB_TOKEN",
        flag: "--micropub-token",
        help: "Micropub bearer token [generated on first start, printed once]",
        secret: true,
        boolean: false,
        apply: |c, v, _| {
            c.micropub_token = Some(token(v)?);
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_METRICS_TOKEN",
        flag: "--metrics-token",
        help: "bearer token for /metrics [none: admin session only]",
        secret: true,
        boolean: false,
        apply: |c, v, _| {
            c.metrics_token = Some(token(v)?);
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_PERF_MONITORING_ENABLED",
        flag: "--perf-monitoring-enabled",
        help: "record performance metrics [false]",
        secret: false,
        boolean: true,
        apply: |c, v, _| set_bool(&mut c.perf.monitoring_enabled, v),
    },
    Setting {
        env: "STARPUNK_PERF_SLOW_QUERY_THRESHOLD",
        flag: "--perf-slow-query-threshold",
        help: "seconds above which a SQL statement is slow [1.0]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            const WHAT: &str = "a number of seconds greater than 0 (at most 3600)";
            let s: f64 = v.trim().parse().map_err(|_| WHAT)?;
            if !(s > 0.0 && s <= 3600.0) {
                return Err(WHAT.into());
            }
            c.perf.slow_query_threshold = s;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_PERF_LOG_QUERIES",
        flag: "--perf-log-queries",
        help: "log each SQL pattern and duration, never values [false]",
        secret: false,
        boolean: true,
        apply: |c, v, _| set_bool(&mut c.perf.log_queries, v),
    },
    Setting {
        env: "STARPUNK_PERF_MEMORY_TRACKING",
        flag: "--perf-memory-tracking",
        help: "track RSS, its high-water mark and per-request change [false]",
        secret: false,
        boolean: true,
        apply: |c, v, _| set_bool(&mut c.perf.memory_tracking, v),
    },
    Setting {
        env: "STARPUNK_PERF_SAMPLE_RATE",
        flag: "--perf-sample-rate",
        help: "fraction of requests recorded, 0.0 to 1.0 [1.0]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            const WHAT: &str = "a number from 0.0 to 1.0";
            let r: f64 = v.trim().parse().map_err(|_| WHAT)?;
            if !(0.0..=1.0).contains(&r) {
                return Err(WHAT.into());
            }
            c.perf.sample_rate = r;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_PERF_BUFFER_SIZE",
        flag: "--perf-buffer-size",
        help: "records kept in the ring buffer, 1 to 1000000 [1000]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            const WHAT: &str = "a whole number from 1 to 1000000";
            let n: usize = v.trim().parse().map_err(|_| WHAT)?;
            if !(1..=1_000_000).contains(&n) {
                return Err(WHAT.into());
            }
            c.perf.buffer_size = n;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_PERF_DASHBOARD_ENABLED",
        flag: "--perf-dashboard-enabled",
        help: "serve /admin/performance [true]",
        secret: false,
        boolean: true,
        apply: |c, v, _| set_bool(&mut c.perf.dashboard_enabled, v),
    },
    Setting {
        env: "STARPUNK_PERF_CLEAR_ON_LOGOUT",
        flag: "--perf-clear-on-logout",
        help: "logging out clears the performance metrics [true]",
        secret: false,
        boolean: true,
        apply: |c, v, _| set_bool(&mut c.perf.clear_on_logout, v),
    },
    Setting {
        env: "STARPUNK_PERF_HISTORY_DAYS",
        flag: "--perf-history-days",
        help: "days of hourly history kept on disk; 0 keeps nothing [0]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.perf.history_days = v
                .trim()
                .parse()
                .ok()
                .filter(|d| *d <= 365)
                .ok_or("a number of days from 0 to 365")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_PERF_OWN_TRAFFIC",
        flag: "--perf-own-traffic",
        help: "the owner's own requests (/admin..., /metrics): 'apart' from the headline figures, or 'include' [apart]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.perf.own_traffic =
                crate::monitoring::own::OwnTraffic::parse(v).ok_or("'apart' or 'include'")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_PERF_ALERTS",
        flag: "--perf-alerts",
        help: "alert rules, ';'-separated: METRIC[{route=\"R\"}] > THRESHOLD for DURATION [none]",
        secret: false,
        boolean: false,
        apply: |c, v, known| {
            c.perf.alerts = crate::monitoring::ticker::alerts::parse_rules(v, known.routes)?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_PERF_ALERT_WEBHOOK",
        flag: "--perf-alert-webhook",
        help: "URL that alert firings and resolutions are POSTed to as JSON [none]",
        secret: true,
        boolean: false,
        apply: |c, v, _| {
            let v = v.trim();
            let (_, rest) = split_http_url(v).ok_or("an http:// or https:// URL")?;
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            // User info (`https://user:token@host/`) is the endpoint's
            // credentials, sent as Basic auth: allowed here.
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if !is_host_and_port(host.as_bytes()) {
                return Err("an http:// or https:// URL with a host".into());
            }
            c.perf.alert_webhook = Some(Secret(v.to_string()));
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_SHUTDOWN_GRACE",
        flag: "--shutdown-grace",
        help: "seconds in-flight requests get on SIGTERM/SIGINT [10]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.http.shutdown_grace = seconds(v, 0.0..=3600.0, "a number of seconds from 0 to 3600")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_ACCESS_LOG",
        flag: "--access-log",
        help: "one line per request on stdout (no query strings) [true]",
        secret: false,
        boolean: true,
        apply: |c, v, _| set_bool(&mut c.http.access_log, v),
    },
    Setting {
        env: "STARPUNK_HTTP_HEADER_TIMEOUT",
        flag: "--http-header-timeout",
        help: "seconds to start and to finish a request's head; keep-alive idle time [10]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.http.header_timeout =
                seconds(v, 0.1..=3600.0, "a number of seconds from 0.1 to 3600")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_HTTP_BODY_TIMEOUT",
        flag: "--http-body-timeout",
        help: "seconds to receive a request's body [30]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.http.body_timeout = seconds(v, 0.1..=3600.0, "a number of seconds from 0.1 to 3600")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_HTTP_WRITE_TIMEOUT",
        flag: "--http-write-timeout",
        help: "seconds a stalled response write may wait [30]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.http.write_timeout =
                seconds(v, 0.1..=3600.0, "a number of seconds from 0.1 to 3600")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_HTTP_MAX_CONNECTIONS",
        flag: "--http-max-connections",
        help: "open connections at once, 1 to 1000000 [4096]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.http.max_connections = count(v, 1..=1_000_000, "a whole number from 1 to 1000000")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_HTTP_MAX_PER_CLIENT",
        flag: "--http-max-per-client",
        help: "open connections at once from one client (IPv4 address, IPv6 /64), 1 to 1000000, at most a quarter of the cap [64]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.http.max_per_client = count(v, 1..=1_000_000, "a whole number from 1 to 1000000")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_HTTP_TRUSTED_PROXIES",
        flag: "--http-trusted-proxies",
        help: "comma-separated addresses or networks (10.0.0.0/8) of reverse proxies, not capped per client [none]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.http.trusted_proxies = networks(v)?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_HTTP_WORKERS",
        flag: "--http-workers",
        help: "requests handled at once (handler threads), 1 to 256 [8]",
        secret: false,
        boolean: false,
        apply: |c, v, _| {
            c.http.workers = count(v, 1..=256, "a whole number from 1 to 256")?;
            Ok(())
        },
    },
];

/// A comma-separated list of addresses or networks; empty for none.
fn networks(v: &str) -> Result<Vec<crate::http::Network>, &'static str> {
    const WHAT: &str = "comma-separated IP addresses or networks such as 10.0.0.0/8 or ::1";
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| crate::http::Network::parse(p).ok_or(WHAT))
        .collect()
}

pub(super) fn token(v: &str) -> Result<String, &'static str> {
    const WHAT: &str = "a token of 16 or more visible ASCII characters";
    if v.len() < 16 || !v.chars().all(|c| c.is_ascii_graphic()) {
        return Err(WHAT);
    }
    Ok(v.to_string())
}
