//! The monitor's settings: the `STARPUNK_PERF_*` values, as the monitor
//! uses them. `config` reads them from the environment and flags and
//! builds this; nothing here reads the environment.

use std::fmt;

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
    pub own_traffic: super::own::OwnTraffic,
    /// `STARPUNK_PERF_ALERTS`, parsed.
    pub alerts: Vec<super::ticker::alerts::Rule>,
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
            own_traffic: super::own::OwnTraffic::Apart,
            alerts: Vec::new(),
            alert_webhook: None,
            alert_window_seconds: 60.0,
            alert_every_seconds: 5,
        }
    }
}
