//! Configuration from the environment and `starpunk serve` flags, parsed
//! strictly: a bad value stops start-up with exit status 2 and one line
//! naming the variable, the value and what is accepted.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

mod table;

use table::{parse_bool, Known, Setting, SETTINGS};

pub use crate::http::HttpSettings;
pub use crate::monitoring::settings::{PerfConfig, Secret};

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

    ///
    /// `routes` are the route templates alert rules may name (the app's
    /// list, handed in: configuration knows no web layer).
    pub fn load(
        env: impl Fn(&str) -> Option<String>,
        args: &[String],
        routes: &[&str],
    ) -> Result<Config, ConfigError> {
        let known = Known { routes };
        let mut c = Config::default();
        for s in SETTINGS {
            if let Some(v) = env(s.env) {
                (s.apply)(&mut c, &v, &known).map_err(|e| error(s, s.env, &v, &e))?;
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
            (s.apply)(&mut c, &value, &known).map_err(|e| error(s, flag, &value, &e))?;
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
    use super::table::parse_bind;
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
        Config::load(
            |k| env.get(k).cloned(),
            &args,
            &["GET /", "GET /notes/{slug}"],
        )
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
    fn per_client_caps_and_trusted_proxies_are_read_and_bad_ones_named() {
        let c = load(
            &[
                ("STARPUNK_HTTP_MAX_PER_CLIENT", "16"),
                ("STARPUNK_HTTP_TRUSTED_PROXIES", " 10.0.0.0/8, ::1 ,"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.http.max_per_client, 16);
        let shown: Vec<String> = c
            .http
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "::1/128"]);
        assert!(load(&[("STARPUNK_HTTP_TRUSTED_PROXIES", "")], &[])
            .unwrap()
            .http
            .trusted_proxies
            .is_empty());
        let e = load(
            &[("STARPUNK_HTTP_TRUSTED_PROXIES", "10.0.0.0/8,proxy.lan")],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("STARPUNK_HTTP_TRUSTED_PROXIES") && e.contains("10.0.0.0/8"),
            "{e}"
        );
        assert!(load(&[("STARPUNK_HTTP_MAX_PER_CLIENT", "0")], &[]).is_err());
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
