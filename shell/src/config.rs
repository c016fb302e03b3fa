//! Configuration from the environment and `starpunk serve` flags, parsed
//! strictly: a bad value stops start-up with exit status 2 and one line
//! naming the variable, the value and what is accepted.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The HTTP front's settings: `STARPUNK_HTTP_*`, `STARPUNK_SHUTDOWN_GRACE`
/// and `STARPUNK_ACCESS_LOG` (documented in docs/OPERATING.md).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSettings {
    /// `STARPUNK_HTTP_HEADER_TIMEOUT`: a connection ready for a request
    /// (new, or keep-alive after a response) must start one within this,
    /// and its line and headers must then be complete within this again;
    /// otherwise it is closed. This is also the keep-alive idle timeout.
    pub header_timeout: Duration,
    /// `STARPUNK_HTTP_BODY_TIMEOUT`: the whole request body within this.
    pub body_timeout: Duration,
    /// `STARPUNK_HTTP_WRITE_TIMEOUT`: a response write that makes no
    /// progress for this long closes the connection.
    pub write_timeout: Duration,
    /// `STARPUNK_HTTP_MAX_CONNECTIONS`: open connections at once; past it
    /// new ones get a 503 and are closed.
    pub max_connections: usize,
    /// `STARPUNK_HTTP_WORKERS`: handler threads (requests handled at once).
    pub workers: usize,
    /// `STARPUNK_SHUTDOWN_GRACE`: on SIGTERM or SIGINT, in-flight requests
    /// get this long to finish.
    pub shutdown_grace: Duration,
    /// `STARPUNK_ACCESS_LOG`: one line per request on stdout.
    pub access_log: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 4_096,
            workers: 8,
            shutdown_grace: Duration::from_secs(10),
            access_log: true,
        }
    }
}

/// Monitoring settings: the `STARPUNK_PERF_*` values.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PerfConfig {
    /// `STARPUNK_PERF_MONITORING_ENABLED`: the master switch.
    pub monitoring_enabled: bool,
    /// `STARPUNK_PERF_SLOW_QUERY_THRESHOLD`, seconds.
    pub slow_query_threshold: f64,
    /// `STARPUNK_PERF_LOG_QUERIES`: log SQL patterns (never values).
    pub log_queries: bool,
    /// `STARPUNK_PERF_MEMORY_TRACKING`.
    pub memory_tracking: bool,
    /// `STARPUNK_PERF_SAMPLE_RATE`, 0.0 to 1.0.
    pub sample_rate: f64,
    /// `STARPUNK_PERF_BUFFER_SIZE`, records.
    pub buffer_size: usize,
    /// `STARPUNK_PERF_DASHBOARD_ENABLED`.
    pub dashboard_enabled: bool,
    /// `STARPUNK_PERF_CLEAR_ON_LOGOUT`: logout clears the metrics (the
    /// ADR's rule).
    pub clear_on_logout: bool,
    /// `STARPUNK_PERF_HISTORY_DAYS`: 0 (off) to 365.
    pub history_days: u32,
    /// `STARPUNK_PERF_OWN_TRAFFIC`: the owner's own requests apart from
    /// the headline figures (the default) or counted like readers'.
    pub own_traffic: crate::monitoring::own::OwnTraffic,
    /// `STARPUNK_PERF_ALERTS`, parsed.
    pub alerts: Vec<crate::monitoring::alerts::Rule>,
    /// `STARPUNK_PERF_ALERT_WEBHOOK`: where firings and resolutions are
    /// POSTed. It may hold a secret token: exports show only whether it is
    /// set.
    #[serde(serialize_with = "only_whether_set")]
    pub alert_webhook: Option<Secret>,
    /// Seconds an alert value covers ("the last minute"); not a setting
    /// (tests shorten it).
    #[serde(skip)]
    pub alert_window_seconds: f64,
    /// Seconds between alert evaluations; not a setting (tests shorten it).
    #[serde(skip)]
    pub alert_every_seconds: u64,
}

fn only_whether_set<S: serde::Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(v.is_some())
}

/// A value that may hold a secret (a webhook URL with a token): `Debug`
/// prints `<hidden>`, so no log or panic message shows it.
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

impl Default for PerfConfig {
    fn default() -> Self {
        Self {
            monitoring_enabled: false,
            slow_query_threshold: 1.0,
            log_queries: false,
            memory_tracking: false,
            sample_rate: 1.0,
            buffer_size: 1_000,
            dashboard_enabled: true,
            clear_on_logout: true,
            history_days: 0,
            own_traffic: crate::monitoring::own::OwnTraffic::Apart,
            alerts: Vec::new(),
            alert_webhook: None,
            alert_window_seconds: 60.0,
            alert_every_seconds: 5,
        }
    }
}

/// Everything `starpunk serve` needs.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// `STARPUNK_BIND`.
    pub bind: SocketAddr,
    /// `STARPUNK_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `STARPUNK_SITE_URL`, without a trailing slash.
    pub site_url: String,
    /// Whether `site_url` was configured; when not, start-up derives it
    /// from the bound address.
    pub site_url_explicit: bool,
    /// `STARPUNK_SITE_NAME`.
    pub site_name: String,
    /// `STARPUNK_ADMIN_PASSWORD`.
    pub admin_password: Option<String>,
    /// `STARPUNK_MICROPUB_TOKEN`.
    pub micropub_token: Option<String>,
    /// `STARPUNK_METRICS_TOKEN`.
    pub metrics_token: Option<String>,
    /// The `STARPUNK_PERF_*` values.
    pub perf: PerfConfig,
    /// The HTTP front's limits and timeouts.
    pub http: HttpSettings,
}

// Secrets never reach logs, not even through `{:?}`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<set>");
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("site_url", &self.site_url)
            .field("site_url_explicit", &self.site_url_explicit)
            .field("site_name", &self.site_name)
            .field("admin_password", &hidden(&self.admin_password))
            .field("micropub_token", &hidden(&self.micropub_token))
            .field("metrics_token", &hidden(&self.metrics_token))
            .field("perf", &self.perf)
            .field("http", &self.http)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: PathBuf::from("./data"),
            site_url: "http://127.0.0.1:8000".into(),
            site_url_explicit: false,
            site_name: "StarPunk".into(),
            admin_password: None,
            micropub_token: None,
            metrics_token: None,
            perf: PerfConfig::default(),
            http: HttpSettings::default(),
        }
    }
}

/// A value that does not parse: printed as one line, exit status 2.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The variable or flag.
    pub name: String,
    /// The value given (secrets are never echoed).
    pub value: String,
    /// What is accepted.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.name, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// One setting: its variable, its flag, and how to apply a value.
struct Setting {
    env: &'static str,
    flag: &'static str,
    help: &'static str,
    secret: bool,
    boolean: bool,
    apply: fn(&mut Config, &str) -> Result<(), Cow<'static, str>>,
}

fn parse_bool(v: &str) -> Option<bool> {
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
fn parse_bind(v: &str) -> Option<SocketAddr> {
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

/// The site URL for a bound address, when none is configured: loopback
/// for an unspecified address (0.0.0.0 is no address to link to).
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

/// A URL's or a `Host` header's authority: a host (a name, an IPv4
/// address or a bracketed IPv6 one) with an optional numeric port, no
/// user info (RFC 3986 3.2, RFC 9112 3.2).
pub fn is_host_and_port(authority: &[u8]) -> bool {
    if authority.contains(&b'@') {
        return false;
    }
    let Ok(a) = hyper::http::uri::Authority::try_from(authority) else {
        return false;
    };
    // The parser takes any text after the last colon as a port.
    let port = &a.as_str()[a.host().len()..];
    !a.host().is_empty()
        && (port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| p.is_empty() || p.parse::<u16>().is_ok()))
}

pub fn site_url_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

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

const SETTINGS: &[Setting] = &[
    Setting {
        env: "STARPUNK_BIND",
        flag: "--bind",
        help: "address:port to listen on [127.0.0.1:8000]",
        secret: false,
        boolean: false,
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| set_bool(&mut c.perf.monitoring_enabled, v),
    },
    Setting {
        env: "STARPUNK_PERF_SLOW_QUERY_THRESHOLD",
        flag: "--perf-slow-query-threshold",
        help: "seconds above which a SQL statement is slow [1.0]",
        secret: false,
        boolean: false,
        apply: |c, v| {
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
        apply: |c, v| set_bool(&mut c.perf.log_queries, v),
    },
    Setting {
        env: "STARPUNK_PERF_MEMORY_TRACKING",
        flag: "--perf-memory-tracking",
        help: "track RSS, its high-water mark and per-request change [false]",
        secret: false,
        boolean: true,
        apply: |c, v| set_bool(&mut c.perf.memory_tracking, v),
    },
    Setting {
        env: "STARPUNK_PERF_SAMPLE_RATE",
        flag: "--perf-sample-rate",
        help: "fraction of requests recorded, 0.0 to 1.0 [1.0]",
        secret: false,
        boolean: false,
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| set_bool(&mut c.perf.dashboard_enabled, v),
    },
    Setting {
        env: "STARPUNK_PERF_CLEAR_ON_LOGOUT",
        flag: "--perf-clear-on-logout",
        help: "logging out clears the performance metrics [true]",
        secret: false,
        boolean: true,
        apply: |c, v| set_bool(&mut c.perf.clear_on_logout, v),
    },
    Setting {
        env: "STARPUNK_PERF_HISTORY_DAYS",
        flag: "--perf-history-days",
        help: "days of hourly history kept on disk; 0 keeps nothing [0]",
        secret: false,
        boolean: false,
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| {
            let routes: Vec<&str> = crate::web::routes::Route::ALL
                .iter()
                .map(|r| r.template())
                .collect();
            c.perf.alerts = crate::monitoring::alerts::parse_rules(v, &routes)?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_PERF_ALERT_WEBHOOK",
        flag: "--perf-alert-webhook",
        help: "URL that alert firings and resolutions are POSTed to as JSON [none]",
        secret: true,
        boolean: false,
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| set_bool(&mut c.http.access_log, v),
    },
    Setting {
        env: "STARPUNK_HTTP_HEADER_TIMEOUT",
        flag: "--http-header-timeout",
        help: "seconds to start and to finish a request's head; keep-alive idle time [10]",
        secret: false,
        boolean: false,
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| {
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
        apply: |c, v| {
            c.http.max_connections = count(v, 1..=1_000_000, "a whole number from 1 to 1000000")?;
            Ok(())
        },
    },
    Setting {
        env: "STARPUNK_HTTP_WORKERS",
        flag: "--http-workers",
        help: "requests handled at once (handler threads), 1 to 256 [8]",
        secret: false,
        boolean: false,
        apply: |c, v| {
            c.http.workers = count(v, 1..=256, "a whole number from 1 to 256")?;
            Ok(())
        },
    },
];

fn token(v: &str) -> Result<String, &'static str> {
    const WHAT: &str = "a token of 16 or more visible ASCII characters";
    if v.len() < 16 || !v.chars().all(|c| c.is_ascii_graphic()) {
        return Err(WHAT);
    }
    Ok(v.to_string())
}

fn error(s: &Setting, name: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError {
        name: name.to_string(),
        value: if s.secret {
            "<hidden>".into()
        } else {
            value.to_string()
        },
        expected: expected.to_string(),
    }
}

impl Config {
    /// Reads `STARPUNK_*` variables from `env`, then applies `args`
    /// (`--flag value`, `--flag=value`, or a bare boolean `--flag`).
    /// The `STARPUNK_*` names among `names` that no setting reads (a typo
    /// such as `STARPUNK_PERF_SAMPLERATE` would otherwise pass unnoticed).
    pub fn unknown_variables(names: impl Iterator<Item = String>) -> Vec<String> {
        let mut unknown: Vec<String> = names
            .filter(|n| n.starts_with("STARPUNK_") && !SETTINGS.iter().any(|s| s.env == n))
            .collect();
        unknown.sort();
        unknown
    }

    pub fn load(
        env: impl Fn(&str) -> Option<String>,
        args: &[String],
    ) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        for s in SETTINGS {
            if let Some(v) = env(s.env) {
                (s.apply)(&mut c, &v).map_err(|e| error(s, s.env, &v, &e))?;
            }
        }
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            let Some(s) = SETTINGS.iter().find(|s| s.flag == flag) else {
                return Err(ConfigError {
                    name: "argument".into(),
                    value: arg.clone(),
                    expected: "one of the flags listed by `starpunk --help`".into(),
                });
            };
            let value = match inline {
                Some(v) => v,
                None if s.boolean && args.get(i + 1).is_none_or(|n| parse_bool(n).is_none()) => {
                    "true".to_string()
                }
                None => {
                    i += 1;
                    args.get(i).cloned().ok_or_else(|| ConfigError {
                        name: flag.to_string(),
                        value: String::new(),
                        expected: "a value after the flag".into(),
                    })?
                }
            };
            (s.apply)(&mut c, &value).map_err(|e| error(s, flag, &value, &e))?;
            i += 1;
        }
        Ok(c)
    }

    /// The settings table for `--help`.
    pub fn help() -> String {
        let mut out = String::new();
        for s in SETTINGS {
            let flag = if s.boolean {
                format!("{}[=BOOL]", s.flag)
            } else {
                format!("{} VALUE", s.flag)
            };
            out.push_str(&format!("  {flag:<38} {:<36} {}\n", s.env, s.help));
        }
        out
    }
}

#[cfg(test)]
mod bind_tests {
    use super::*;

    #[test]
    fn localhost_binds_and_site_urls_follow_the_bound_address() {
        assert_eq!(
            parse_bind("localhost:8000"),
            Some(SocketAddr::from(([127, 0, 0, 1], 8000)))
        );
        assert_eq!(
            parse_bind("127.0.0.1:8099"),
            Some(SocketAddr::from(([127, 0, 0, 1], 8099)))
        );
        assert_eq!(parse_bind("[::1]:80").map(|a| a.is_ipv6()), Some(true));
        for bad in [
            "localhost",
            "localhost:",
            ":80",
            "localhost:99999",
            "no such host.invalid:80",
        ] {
            assert_eq!(parse_bind(bad), None, "{bad}");
        }
        assert_eq!(
            site_url_for("127.0.0.1:8099".parse().unwrap()),
            "http://127.0.0.1:8099"
        );
        assert_eq!(
            site_url_for("0.0.0.0:80".parse().unwrap()),
            "http://127.0.0.1:80"
        );
        assert_eq!(site_url_for("[::]:80".parse().unwrap()), "http://[::1]:80");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(env: &[(&str, &str)], args: &[&str]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Config::load(|k| env.get(k).cloned(), &args)
    }

    #[test]
    fn defaults_match_spec() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.bind.to_string(), "127.0.0.1:8000");
        assert!(!c.perf.monitoring_enabled);
        assert_eq!(c.perf.buffer_size, 1000);
    }

    #[test]
    fn booleans_accept_every_spelling() {
        for (v, want) in [
            ("TRUE", true),
            ("yes", true),
            ("On", true),
            ("1", true),
            ("off", false),
            ("No", false),
            ("0", false),
            ("False", false),
        ] {
            let c = load(&[("STARPUNK_PERF_LOG_QUERIES", v)], &[]).unwrap();
            assert_eq!(c.perf.log_queries, want, "{v}");
        }
    }

    #[test]
    fn flags_override_env_and_bare_booleans_mean_true() {
        let c = load(
            &[("STARPUNK_PERF_SAMPLE_RATE", "0.5")],
            &[
                "--perf-sample-rate",
                "0.25",
                "--perf-monitoring-enabled",
                "--site-url=https://blog.example/",
            ],
        )
        .unwrap();
        assert_eq!(c.perf.sample_rate, 0.25);
        assert!(c.perf.monitoring_enabled);
        assert_eq!(c.site_url, "https://blog.example");
        let c = load(&[("STARPUNK_PERF_MONITORING_ENABLED", " Yes ")], &[]).unwrap();
        assert!(c.perf.monitoring_enabled);
        let names = [
            "STARPUNK_PERF_SAMPLERATE",
            "STARPUNK_BIND",
            "HOME",
            "STARPUNK_HTTP_WORKERS",
        ];
        assert_eq!(
            Config::unknown_variables(names.iter().map(|n| n.to_string())),
            ["STARPUNK_PERF_SAMPLERATE"]
        );
        for (given, kept) in [
            ("HTTP://Blog.Example/sub/", "http://Blog.Example/sub"),
            ("http://[::1]:8000", "http://[::1]:8000"),
            ("https://192.0.2.7:", "https://192.0.2.7:"),
        ] {
            let c = load(&[("STARPUNK_SITE_URL", given)], &[]).unwrap();
            assert_eq!(c.site_url, kept);
        }
    }

    #[test]
    fn bad_values_name_variable_value_and_accepted() {
        let e = load(&[("STARPUNK_PERF_SAMPLE_RATE", "1.5")], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid STARPUNK_PERF_SAMPLE_RATE=\"1.5\": expected a number from 0.0 to 1.0"
        );
        for (k, v) in [
            ("STARPUNK_BIND", "nope"),
            ("STARPUNK_PERF_BUFFER_SIZE", "0"),
            ("STARPUNK_PERF_BUFFER_SIZE", "1000001"),
            ("STARPUNK_PERF_SLOW_QUERY_THRESHOLD", "0"),
            ("STARPUNK_PERF_SLOW_QUERY_THRESHOLD", "NaN"),
            ("STARPUNK_PERF_MONITORING_ENABLED", "maybe"),
            ("STARPUNK_SITE_URL", "ftp://x"),
            ("STARPUNK_SITE_URL", "http://[::1"),
            ("STARPUNK_SITE_URL", "http://host:99999"),
            ("STARPUNK_SITE_URL", "http://host:abc/"),
            ("STARPUNK_SITE_URL", "https://me@host"),
            ("STARPUNK_SITE_NAME", " "),
        ] {
            let e = load(&[(k, v)], &[]).unwrap_err();
            assert_eq!(e.name, k);
            assert_eq!(e.value, v);
        }
        let hook = "https://user:token@hooks.example/hook";
        let c = load(&[("STARPUNK_PERF_ALERT_WEBHOOK", hook)], &[]).unwrap();
        assert!(c.perf.alert_webhook.is_some());
        let e = load(
            &[("STARPUNK_PERF_ALERT_WEBHOOK", "http://host:abc/hook")],
            &[],
        )
        .unwrap_err();
        assert_eq!(e.name, "STARPUNK_PERF_ALERT_WEBHOOK");
        assert_eq!(e.value, "<hidden>");
        let e = load(&[("STARPUNK_ADMIN_PASSWORD", "short")], &[]).unwrap_err();
        assert_eq!(e.value, "<hidden>");
        assert!(load(&[], &["--nope"]).is_err());
        assert!(load(&[], &["--bind"]).is_err());
    }
}
