//! Alert rules (`STARPUNK_PERF_ALERTS`): their syntax, and their
//! evaluation by the ticker against the last minute, with hysteresis.
//!
//! A rule is `METRIC [{route="ROUTE"}] > THRESHOLD for DURATION` (see
//! `docs/OPERATING.md`). Every few seconds the ticker takes the cumulative
//! figures the rules need (requests, 5xx, latency buckets of all requests
//! or of one route, slow statements, RSS) and compares them with those of a
//! minute before: the rule's value over the last minute. A rule fires when
//! its condition has held for its duration and resolves when it has been
//! false for its duration, so a value hovering at the threshold does not
//! flap. Nothing here runs on the request path.

use std::collections::VecDeque;
use std::fmt;

use serde::Serialize;

/// What a rule watches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Requests per second.
    RequestRate,
    /// 5xx responses over all responses (a fraction; written in %).
    ErrorRate,
    /// A latency quantile (0.5, 0.95, 0.99), nanoseconds.
    Quantile(f64),
    /// Resident memory, bytes.
    Rss,
    /// Statements over the slow threshold.
    SlowQueries,
    /// Requests the HTTP front refused or timed out (no handler ran).
    Refused,
}

/// One parsed rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// The rule as written (trimmed): its name in logs, the dashboard and
    /// webhooks.
    pub text: String,
    /// What it watches.
    pub metric: Metric,
    /// Only this route's requests (quantiles, rates), or all.
    pub route: Option<String>,
    /// The value above which the condition holds, in base units
    /// (per second, fraction, nanoseconds, bytes, count).
    pub threshold: f64,
    /// Seconds the condition must hold to fire (and be false to resolve).
    pub for_seconds: f64,
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses `STARPUNK_PERF_ALERTS`: rules separated by `;` (empty parts are
/// ignored). `routes` are the route templates a `{route="..."}` may name.
/// The error names the rule and what is wrong with it.
pub fn parse_rules(text: &str, routes: &[&str]) -> Result<Vec<Rule>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| parse_rule(r, routes).map_err(|e| format!("alert rule \"{r}\": {e}")))
        .collect()
}

fn parse_rule(text: &str, routes: &[&str]) -> Result<Rule, String> {
    let (left, right) = text
        .split_once('>')
        .ok_or("expected METRIC > THRESHOLD for DURATION")?;
    let left = left.trim();
    let (name, route) = match left.split_once('{') {
        Some((name, labels)) => {
            let labels = labels
                .trim()
                .strip_suffix('}')
                .ok_or("a label list ends with }")?;
            let value = labels
                .trim()
                .strip_prefix("route")
                .map(str::trim_start)
                .and_then(|l| l.strip_prefix('='))
                .map(str::trim)
                .and_then(|l| l.strip_prefix('"'))
                .and_then(|l| l.strip_suffix('"'))
                .ok_or("the only label is route=\"METHOD /template\"")?;
            if !routes.contains(&value) {
                return Err(format!(
                    "no route \"{value}\" (routes are templates such as \"GET /\" or \"GET /notes/{{slug}}\")"
                ));
            }
            (name.trim(), Some(value.to_string()))
        }
        None => (left, None),
    };
    let metric = match name {
        "request_rate" => Metric::RequestRate,
        "error_rate" => Metric::ErrorRate,
        "p50" => Metric::Quantile(0.5),
        "p95" => Metric::Quantile(0.95),
        "p99" => Metric::Quantile(0.99),
        "rss" => Metric::Rss,
        "slow_queries" => Metric::SlowQueries,
        "refused" => Metric::Refused,
        other => {
            return Err(format!(
                "unknown metric \"{other}\" (request_rate, error_rate, p50, p95, p99, rss, slow_queries, refused)"
            ))
        }
    };
    if route.is_some() && matches!(metric, Metric::Rss | Metric::SlowQueries | Metric::Refused) {
        return Err(format!("{name} has no route label"));
    }
    let (threshold, duration) = right
        .split_once(" for ")
        .ok_or("expected THRESHOLD for DURATION")?;
    let threshold = parse_threshold(metric, threshold.trim())?;
    let for_seconds = parse_duration(duration.trim())?;
    Ok(Rule {
        text: text.to_string(),
        metric,
        route,
        threshold,
        for_seconds,
    })
}

/// A number with the unit its metric takes, in base units.
fn parse_threshold(metric: Metric, t: &str) -> Result<f64, String> {
    let number = |s: &str| -> Result<f64, String> {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("\"{t}\" is not a threshold of zero or more"))
    };
    match metric {
        Metric::RequestRate => number(t.strip_suffix("/s").unwrap_or(t)),
        Metric::SlowQueries | Metric::Refused => number(t),
        Metric::ErrorRate => t
            .strip_suffix('%')
            .ok_or_else(|| format!("error_rate takes a percentage, such as 1% (got \"{t}\")"))
            .and_then(number)
            .and_then(|p| {
                if p < 100.0 {
                    Ok(p / 100.0)
                } else {
                    Err(format!(
                        "error_rate is at most 100%, so \"> {t}\" could never fire"
                    ))
                }
            }),
        Metric::Quantile(_) => {
            if let Some(ms) = t.strip_suffix("ms") {
                number(ms).map(|v| v * 1e6)
            } else if let Some(s) = t.strip_suffix('s') {
                number(s).map(|v| v * 1e9)
            } else {
                Err(format!(
                    "latency takes ms or s, such as 500ms (got \"{t}\")"
                ))
            }
        }
        Metric::Rss => {
            if let Some(m) = t.strip_suffix("MiB") {
                number(m).map(|v| v * 1024.0 * 1024.0)
            } else if let Some(g) = t.strip_suffix("GiB") {
                number(g).map(|v| v * 1024.0 * 1024.0 * 1024.0)
            } else {
                Err(format!(
                    "rss takes MiB or GiB, such as 256MiB (got \"{t}\")"
                ))
            }
        }
    }
}

/// `Ns` or `Nm`, seconds.
fn parse_duration(d: &str) -> Result<f64, String> {
    let (n, scale) = if let Some(n) = d.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = d.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!("duration takes s or m, such as 5m (got \"{d}\")"));
    };
    n.parse::<u32>()
        .ok()
        .map(|n| f64::from(n) * scale)
        .filter(|s| *s <= 86_400.0)
        .ok_or_else(|| format!("\"{d}\" is not a duration from 0s to a day (86400s or 1440m)"))
}

/// The cumulative figures of one scope (all requests, or one route).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScopeTotals {
    /// Requests.
    pub requests: u64,
    /// 5xx responses.
    pub errors_5xx: u64,
    /// Latency buckets `(value ns, count)`, ascending; empty when no rule
    /// of this scope takes a quantile.
    pub latency: Vec<(u64, u64)>,
}

/// What the ticker measured at one evaluation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: f64,
    /// Per scope, in the order of [`Alerts::scopes`].
    pub scopes: Vec<ScopeTotals>,
    /// Slow statements since start or the last clear.
    pub slow_queries: u64,
    /// Requests the front refused since start or the last clear.
    pub refused: u64,
    /// Resident memory now, bytes.
    pub rss_bytes: u64,
}

/// A firing or a resolution.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct AlertEvent {
    /// The rule as written.
    pub rule: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// The rule's value over the last minute, in its own units (per
    /// second, %, ms, MiB, count).
    pub value: f64,
    /// The threshold in the same units.
    pub threshold: f64,
    /// The unit of `value` and `threshold`.
    pub unit: String,
    /// RFC 3339.
    pub at: String,
}

/// One rule's state, for the dashboard and the JSON export.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuleView {
    /// The rule as written.
    pub rule: String,
    /// `ok`, `pending` (the condition holds, not yet for its duration),
    /// `firing`, or `resolving` (firing, the condition false, not yet for
    /// its duration).
    pub state: &'static str,
    /// The last value, in the rule's units.
    pub value: f64,
    /// The threshold, in the rule's units.
    pub threshold: f64,
    /// The unit.
    pub unit: &'static str,
    /// RFC 3339 of the last firing, if any.
    pub since: Option<String>,
    /// Seconds the rule must hold (or be clear) to fire (or resolve).
    pub for_seconds: f64,
    /// Seconds the rule has been in its state at the last evaluation:
    /// `pending`, since its condition began to hold; `resolving`, since it
    /// began to be false; `firing`, since it fired; 0 when `ok`.
    pub state_seconds: f64,
}

#[derive(Clone, Debug, Default)]
struct RuleState {
    firing: bool,
    /// Unix seconds since the condition has held (or been false).
    held_since: Option<f64>,
    cleared_since: Option<f64>,
    value: f64,
    fired_at: Option<f64>,
}

/// Recent events kept for the dashboard.
pub const EVENTS_KEPT: usize = 50;

/// The rules, their states and the samples of the last window.
#[derive(Debug)]
pub struct Alerts {
    rules: Vec<Rule>,
    states: Vec<RuleState>,
    /// `None`: all requests; `Some(route)`: one route. Deduplicated.
    scopes: Vec<Option<String>>,
    /// Whether each scope needs latency buckets.
    scope_latency: Vec<bool>,
    samples: VecDeque<Sample>,
    events: VecDeque<AlertEvent>,
    /// Seconds a value covers ("the last minute").
    window: f64,
    /// Unix seconds of the last evaluation that judged a rule.
    judged_at: Option<f64>,
}

impl Alerts {
    /// An evaluator of `rules` over a `window` of seconds (60 in service).
    pub fn new(rules: Vec<Rule>, window: f64) -> Alerts {
        let mut scopes: Vec<Option<String>> = Vec::new();
        let mut scope_latency = Vec::new();
        for r in &rules {
            if matches!(
                r.metric,
                Metric::Rss | Metric::SlowQueries | Metric::Refused
            ) {
                continue;
            }
            let i = match scopes.iter().position(|s| *s == r.route) {
                Some(i) => i,
                None => {
                    scopes.push(r.route.clone());
                    scope_latency.push(false);
                    scopes.len() - 1
                }
            };
            scope_latency[i] |= matches!(r.metric, Metric::Quantile(_));
        }
        Alerts {
            states: vec![RuleState::default(); rules.len()],
            rules,
            scopes,
            scope_latency,
            samples: VecDeque::new(),
            events: VecDeque::new(),
            window,
            judged_at: None,
        }
    }

    /// The scopes a [`Sample`] must cover, and whether each needs latency.
    pub fn scopes(&self) -> impl Iterator<Item = (Option<&str>, bool)> + '_ {
        self.scopes
            .iter()
            .zip(&self.scope_latency)
            .map(|(s, l)| (s.as_deref(), *l))
    }

    /// True when there are rules.
    pub fn any(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Forgets the samples (a clear: counts start again).
    pub fn restart(&mut self) {
        self.samples.clear();
    }

    /// Takes `now`, evaluates every rule over the window that ends there,
    /// and returns the firings and resolutions it caused.
    pub fn evaluate(&mut self, now: Sample) -> Vec<AlertEvent> {
        if self
            .samples
            .back()
            .is_some_and(|last| went_down(last, &now))
        {
            self.samples.clear();
        }
        // Keep the newest sample at least a window old as the baseline.
        while self.samples.len() >= 2 && self.samples[1].at <= now.at - self.window {
            self.samples.pop_front();
        }
        let base = self.samples.front().cloned();
        self.samples.push_back(now);
        let (Some(base), Some(now)) = (base, self.samples.back()) else {
            return Vec::new();
        };
        let mut events = Vec::new();
        // A value "over the last minute" needs a minute behind it: after a
        // start or a clear, only RSS (a value of now) is judged until then.
        let full = now.at - base.at + 1e-6 >= self.window;
        for (rule, state) in self.rules.iter().zip(self.states.iter_mut()) {
            if !full && rule.metric != Metric::Rss {
                continue;
            }
            let value = value_of(rule, &self.scopes, &base, now);
            state.value = value;
            let t = now.at;
            self.judged_at = Some(t);
            if value > rule.threshold {
                state.cleared_since = None;
                let since = *state.held_since.get_or_insert(t);
                if !state.firing && t - since >= rule.for_seconds {
                    state.firing = true;
                    state.fired_at = Some(t);
                    events.push(event(rule, "firing", value, t));
                }
            } else {
                state.held_since = None;
                let since = *state.cleared_since.get_or_insert(t);
                if state.firing && t - since >= rule.for_seconds {
                    state.firing = false;
                    events.push(event(rule, "resolved", value, t));
                }
            }
        }
        for e in &events {
            if self.events.len() == EVENTS_KEPT {
                self.events.pop_front();
            }
            self.events.push_back(e.clone());
        }
        events
    }

    /// Each rule's state.
    pub fn view(&self) -> Vec<RuleView> {
        self.rules
            .iter()
            .zip(&self.states)
            .map(|(r, s)| {
                let (scale, unit) = units(r.metric);
                let (state, since) = match (s.firing, s.held_since.is_some()) {
                    (true, false) => ("resolving", s.cleared_since),
                    (true, true) => ("firing", s.fired_at),
                    (false, true) => ("pending", s.held_since),
                    (false, false) => ("ok", None),
                };
                let state_seconds = match (since, self.judged_at) {
                    (Some(since), Some(at)) => (at - since).max(0.0).round(),
                    _ => 0.0,
                };
                RuleView {
                    rule: r.text.clone(),
                    state,
                    for_seconds: r.for_seconds,
                    state_seconds,
                    value: round3(s.value / scale),
                    threshold: round3(r.threshold / scale),
                    unit,
                    since: s
                        .fired_at
                        .filter(|_| s.firing)
                        .map(|t| crate::monitoring::evidence::rfc3339((t * 1e9) as u64)),
                }
            })
            .collect()
    }

    /// Puts back the events a previous run kept in the history (oldest
    /// first), so they are shown after a restart.
    pub fn restore_events(&mut self, events: Vec<AlertEvent>) {
        for e in events {
            if self.events.len() == EVENTS_KEPT {
                self.events.pop_front();
            }
            self.events.push_back(e);
        }
    }

    /// The recent firings and resolutions, newest first.
    pub fn events(&self) -> Vec<AlertEvent> {
        self.events.iter().rev().cloned().collect()
    }
}

fn went_down(before: &Sample, after: &Sample) -> bool {
    after.slow_queries < before.slow_queries
        || after.refused < before.refused
        || before
            .scopes
            .iter()
            .zip(&after.scopes)
            .any(|(b, a)| a.requests < b.requests || a.errors_5xx < b.errors_5xx)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A rule's base units per display unit, and the display unit.
fn units(metric: Metric) -> (f64, &'static str) {
    match metric {
        Metric::RequestRate => (1.0, "/s"),
        Metric::ErrorRate => (0.01, "%"),
        Metric::Quantile(_) => (1e6, "ms"),
        Metric::Rss => (1024.0 * 1024.0, "MiB"),
        Metric::SlowQueries => (1.0, "statements"),
        Metric::Refused => (1.0, "requests"),
    }
}

fn event(rule: &Rule, state: &'static str, value: f64, at: f64) -> AlertEvent {
    let (scale, unit) = units(rule.metric);
    AlertEvent {
        rule: rule.text.clone(),
        state: state.into(),
        value: round3(value / scale),
        threshold: round3(rule.threshold / scale),
        unit: unit.into(),
        at: crate::monitoring::evidence::rfc3339((at * 1e9) as u64),
    }
}

/// The rule's value between `base` and `now`, in base units.
fn value_of(rule: &Rule, scopes: &[Option<String>], base: &Sample, now: &Sample) -> f64 {
    let scope = scopes.iter().position(|s| *s == rule.route);
    let pair = scope.and_then(|i| Some((base.scopes.get(i)?, now.scopes.get(i)?)));
    let seconds = (now.at - base.at).max(1e-9);
    match (rule.metric, pair) {
        (Metric::Rss, _) => now.rss_bytes as f64,
        (Metric::SlowQueries, _) => now.slow_queries.saturating_sub(base.slow_queries) as f64,
        (Metric::Refused, _) => now.refused.saturating_sub(base.refused) as f64,
        (_, None) => 0.0,
        (Metric::RequestRate, Some((b, n))) => {
            n.requests.saturating_sub(b.requests) as f64 / seconds
        }
        (Metric::ErrorRate, Some((b, n))) => {
            let requests = n.requests.saturating_sub(b.requests);
            if requests == 0 {
                0.0
            } else {
                n.errors_5xx.saturating_sub(b.errors_5xx) as f64 / requests as f64
            }
        }
        (Metric::Quantile(q), Some((b, n))) => {
            quantile_of_difference(&b.latency, &n.latency, q) as f64
        }
    }
}

/// The `q` quantile of the requests in `after` but not in `before`
/// (ascending buckets of cumulative counts), as hdrhistogram computes it;
/// 0 without requests.
pub fn quantile_of_difference(before: &[(u64, u64)], after: &[(u64, u64)], q: f64) -> u64 {
    let diff = crate::monitoring::ticker::history::difference(before, after);
    let total: u64 = diff.iter().map(|d| d.1).sum();
    if total == 0 {
        return 0;
    }
    let wanted = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (v, n) in diff {
        seen += n;
        if seen >= wanted {
            return v;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: [&str; 2] = ["GET /", "GET /notes/{slug}"];

    #[test]
    fn the_documented_example_parses() {
        let rules = parse_rules(
            r#"error_rate > 1% for 5m; p99{route="GET /"} > 500ms for 5m; rss > 256MiB for 1m"#,
            &ROUTES,
        )
        .unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].metric, Metric::ErrorRate);
        assert_eq!((rules[0].threshold, rules[0].for_seconds), (0.01, 300.0));
        assert_eq!(rules[1].route.as_deref(), Some("GET /"));
        assert_eq!(rules[1].threshold, 500e6);
        assert_eq!(rules[2].threshold, 256.0 * 1024.0 * 1024.0);
        assert_eq!(rules[2].for_seconds, 60.0);
        assert_eq!(rules[1].text, r#"p99{route="GET /"} > 500ms for 5m"#);
        let more = parse_rules(
            "request_rate > 50 for 30s; slow_queries > 10 for 5m; p50 > 1.5s for 0s; ;",
            &ROUTES,
        )
        .unwrap();
        assert_eq!(more[2].threshold, 1.5e9);
    }

    #[test]
    fn a_bad_rule_is_named_with_what_is_wrong() {
        for (rule, wanted) in [
            ("error_rate > 1 for 5m", "percentage"),
            ("p99 > 500 for 5m", "ms or s"),
            ("p99 > 500ms", "THRESHOLD for DURATION"),
            ("p99 > 500ms for 5h", "s or m"),
            ("latency > 5ms for 1m", "unknown metric \"latency\""),
            (
                "p99{route=\"GET /nope\"} > 5ms for 1m",
                "no route \"GET /nope\"",
            ),
            ("rss{route=\"GET /\"} > 5MiB for 1m", "no route label"),
            ("rss > 5MB for 1m", "MiB or GiB"),
            ("error_rate < 1% for 1m", "METRIC > THRESHOLD"),
            ("p99 > -5ms for 1m", "zero or more"),
            ("error_rate > 101% for 5m", "could never fire"),
            ("error_rate > 100% for 5m", "could never fire"),
        ] {
            let err = parse_rules(&format!("rss > 1GiB for 1m; {rule}"), &ROUTES).unwrap_err();
            assert!(err.contains(rule) && err.contains(wanted), "{rule}: {err}");
        }
    }

    fn sample(at: f64, requests: u64, e5: u64, latency_ms: &[(u64, u64)]) -> Sample {
        Sample {
            at,
            scopes: vec![ScopeTotals {
                requests,
                errors_5xx: e5,
                latency: latency_ms
                    .iter()
                    .map(|&(v, n)| (v * 1_000_000, n))
                    .collect(),
            }],
            slow_queries: 0,
            refused: 0,
            rss_bytes: 0,
        }
    }

    #[test]
    fn fires_after_holding_for_its_duration_and_resolves_after_as_long_clear() {
        let rules = parse_rules("error_rate > 10% for 10s", &ROUTES).unwrap();
        let mut a = Alerts::new(rules, 60.0);
        let mut fired = Vec::new();
        // 100 requests a second; from t=10 a third fail, from t=60 none.
        let (mut req, mut err) = (0, 0);
        for t in 0..=200u64 {
            req += 100;
            if (10..60).contains(&t) {
                err += 33;
            }
            for e in a.evaluate(sample(t as f64, req, err, &[])) {
                fired.push((t, e.state, e.value));
            }
            // Each state with how long the rule has been in it, of its
            // duration.
            let v = &a.view()[0];
            let seen = (v.state, v.state_seconds, v.for_seconds);
            match t {
                65 => assert_eq!(seen, ("pending", 5.0, 10.0)),
                80 => assert_eq!(seen, ("firing", 10.0, 10.0)),
                105 => assert_eq!(seen, ("resolving", 4.0, 10.0)),
                150 => assert_eq!(seen, ("ok", 0.0, 10.0)),
                _ => {}
            }
        }
        assert_eq!(fired.len(), 2, "{fired:?}");
        // Nothing is judged before a whole minute is behind the value
        // (t=60, 28 % then); it has held for 10 s at t=70.
        assert_eq!(fired[0].1, "firing");
        assert_eq!(fired[0].0, 70, "{fired:?}");
        // After t=60 the minute's rate falls under 10 % as the failures
        // leave the window (at t=101), then 10 s more.
        assert_eq!(fired[1].1, "resolved");
        assert_eq!(fired[1].0, 111, "{fired:?}");
        assert_eq!(a.events().len(), 2);
        assert_eq!(a.view()[0].state, "ok");
    }

    #[test]
    fn a_value_hovering_at_the_threshold_does_not_flap() {
        let rules = parse_rules("request_rate > 10 for 5s", &ROUTES).unwrap();
        let mut a = Alerts::new(rules, 1.0);
        let mut req = 0;
        let mut events = 0;
        // Alternates 12/s and 8/s each second: never 5 s in a row either way.
        for t in 0..100u64 {
            req += if t % 2 == 0 { 12 } else { 8 };
            events += a.evaluate(sample(t as f64, req, 0, &[])).len();
        }
        assert_eq!(events, 0);
        assert_eq!(a.view()[0].state, "ok");
    }

    #[test]
    fn quantiles_come_from_the_windows_requests_only() {
        // Cumulative: 100 fast (1 ms) requests, then 10 slow (200 ms).
        let before = [(1, 100)];
        let after = [(1, 100), (200, 10)];
        let ns = |ms: u64| ms * 1_000_000;
        let to_ns = |b: &[(u64, u64)]| b.iter().map(|&(v, n)| (ns(v), n)).collect::<Vec<_>>();
        assert_eq!(
            quantile_of_difference(&to_ns(&before), &to_ns(&after), 0.5),
            ns(200)
        );
        assert_eq!(quantile_of_difference(&[], &to_ns(&after), 0.5), ns(1));
        assert_eq!(
            quantile_of_difference(&to_ns(&after), &to_ns(&after), 0.99),
            0
        );
        let rules = parse_rules("p99 > 100ms for 0s", &ROUTES).unwrap();
        let mut a = Alerts::new(rules, 5.0);
        assert!(a.evaluate(sample(0.0, 100, 0, &before)).is_empty());
        let e = a.evaluate(sample(5.0, 110, 0, &after));
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].state.as_str(), e[0].value, e[0].unit.as_str()),
            ("firing", 200.0, "ms")
        );
    }

    #[test]
    fn a_clear_restarts_the_window() {
        let rules = parse_rules("request_rate > 1000 for 0s", &ROUTES).unwrap();
        let mut a = Alerts::new(rules, 1.0);
        a.evaluate(sample(0.0, 1_000_000, 0, &[]));
        // Counts fell (logout): no negative or huge rate, no event.
        assert!(a.evaluate(sample(1.0, 5, 0, &[])).is_empty());
        assert!(a.evaluate(sample(2.0, 10, 0, &[])).is_empty());
        assert_eq!(a.view()[0].value, 5.0);
    }

    #[test]
    fn refused_is_a_count_over_the_last_minute_without_a_route() {
        let rules = parse_rules("refused > 100 for 0s", &["GET /"]).unwrap();
        assert_eq!(rules[0].metric, Metric::Refused);
        assert!(parse_rules("refused{route=\"GET /\"} > 1 for 0s", &["GET /"]).is_err());
        let base = Sample {
            refused: 40,
            ..sample(0.0, 0, 0, &[])
        };
        let now = Sample {
            refused: 190,
            ..sample(60.0, 0, 0, &[])
        };
        assert_eq!(value_of(&rules[0], &[None], &base, &now), 150.0);
    }
}
