//! What owners who outgrow one machine use: the Prometheus alerting rules
//! and the Grafana dashboard shipped in docs/, checked against what
//! `/metrics` really exposes and against the scrape config docs/OPERATING.md
//! gives: every range window at least four of its scrape intervals, the
//! rules' unit tests (`promtool test rules`, series at that interval), and
//! a real Prometheus server running that config as written, scraping the
//! blog. Debian's `prometheus` package (server and `promtool`); `.ci/run`
//! installs it. Without it the tools' tests fail in CI and skip elsewhere.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/prometheus/starpunk-alerts.yml"
);
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/grafana/starpunk-dashboard.json"
);
const RULES_TEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/prometheus/starpunk-alerts.test.yml"
);
const OPERATING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OPERATING.md");

/// What the documented scrape config holds in place of the blog's address
/// and token: the only words the live test replaces.
const DOC_TARGET: &str = "blog.example:8000";
const DOC_TOKEN: &str = "<STARPUNK_METRICS_TOKEN>";

/// Series names Prometheus makes itself for every scrape target.
const SYNTHETIC: [&str; 1] = ["up"];

/// PromQL's aggregation operators (`sum by (x) (...)`: not followed by
/// `(` directly).
const AGGREGATIONS: [&str; 13] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
];

/// PromQL words that are not metric names.
const KEYWORDS: [&str; 14] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "le",
];

/// The metric names a PromQL expression selects: identifiers that are not
/// functions or aggregations (followed by `(`), not keywords, not label
/// names inside `{...}` or `by (...)` lists, not in strings or durations.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut i, mut braces, mut brackets) = (0, 0, 0);
    // After `by`, `without`, `on`, `ignoring`, `group_left/right`: the next
    // parenthesised list holds label names.
    let mut label_list_next = false;
    let mut in_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                // Skip a string literal.
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            '(' if label_list_next => {
                in_label_list = true;
                label_list_next = false;
            }
            ')' if in_label_list => in_label_list = false,
            // A number or a duration (`0.5`, `5m`, `1e3`): not a name.
            c if c.is_ascii_digit() => {
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '.')
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric()
                        || chars[i + 1] == '_'
                        || chars[i + 1] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
                let lower = word.to_ascii_lowercase();
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&lower.as_str())
                {
                    label_list_next = true;
                } else if braces == 0
                    && brackets == 0
                    && !in_label_list
                    && next != Some(&'(')
                    && !KEYWORDS.contains(&lower.as_str())
                    && !AGGREGATIONS.contains(&lower.as_str())
                    // Grafana variables ($job) are not names.
                    && !(start > 0 && chars[start - 1] == '$')
                {
                    names.insert(word);
                }
            }
            _ => {}
        }
        i += 1;
    }
    names
}

fn the_extractor_finds_metric_names_only() {
    let got = metric_names(
        r#"sum by (instance, le) (rate(a_total{status=~"5..", job="x"}[1m])) / on (job) group_left (pattern) b_info * 3 > bool 0.5 or up offset 5m + topk(3, c_seconds_bucket{job="$job"}) * 1e3"#,
    );
    let want: BTreeSet<String> = ["a_total", "b_info", "c_seconds_bucket", "up"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

/// The `expr:` of every rule in the rules file: one line, or a `|` block.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.trim_start().strip_prefix("expr:") {
            let indent = line.len() - line.trim_start().len();
            let rest = rest.trim();
            if rest == "|" || rest == ">" {
                let mut block = Vec::new();
                while i + 1 < lines.len()
                    && (lines[i + 1].trim().is_empty()
                        || lines[i + 1].len() - lines[i + 1].trim_start().len() > indent)
                {
                    i += 1;
                    block.push(lines[i].trim());
                }
                out.push(block.join(" "));
            } else {
                out.push(rest.to_string());
            }
        }
        i += 1;
    }
    out
}

/// Every `expr` and `query` string in the Grafana dashboard.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The names `/metrics` exposes (a histogram's `_bucket`, `_sum`, `_count`).
fn exposed(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            } else {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// The scrape config docs/OPERATING.md gives: the ```yaml block after
/// "A scrape config:", without the list item's indentation.
fn documented_config() -> String {
    let doc = std::fs::read_to_string(OPERATING).unwrap();
    let at = doc
        .find("A scrape config:")
        .expect("docs/OPERATING.md has no \"A scrape config:\"");
    let mut lines = doc[at..].lines().skip_while(|l| l.trim() != "```yaml");
    let fence = lines
        .next()
        .expect("no ```yaml block after \"A scrape config:\"");
    let indent = fence.len() - fence.trim_start().len();
    let mut yaml: String = lines
        .take_while(|l| l.trim() != "```")
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    yaml.push('\n');
    yaml
}

/// The values of `key:` anywhere in a YAML text (comments and quotes off).
fn yaml_values(yaml: &str, key: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            let value = rest.split(" #").next().unwrap().trim();
            Some(value.trim_matches(|c| c == '"' || c == '\'').to_string())
        })
        .collect()
}

/// A Prometheus duration (`15s`, `1m`, `1h30m`, `500ms`).
fn duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    assert!(!rest.is_empty(), "empty duration");
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("not a duration: {text:?}"));
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit] {
            "ms" => {
                total += Duration::from_millis(n);
                rest = &rest[unit..];
                continue;
            }
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            _ => panic!("not a duration: {text:?}"),
        };
        total += Duration::from_secs(n * seconds);
        rest = &rest[unit..];
    }
    total
}

/// The documented scrape interval: the longest `scrape_interval` the
/// config states, or Prometheus's default (one minute) if it states none.
fn documented_scrape_interval(config: &str) -> Duration {
    yaml_values(config, "scrape_interval")
        .iter()
        .map(|v| duration(v))
        .max()
        .unwrap_or(Duration::from_secs(60))
}

/// The documented evaluation interval, or Prometheus's default (one
/// minute) if the config states none.
fn documented_evaluation_interval(config: &str) -> Duration {
    yaml_values(config, "evaluation_interval")
        .first()
        .map_or(Duration::from_secs(60), |v| duration(v))
}

/// The range windows of a PromQL expression (`[1m]`; a subquery's range),
/// outside string literals.
fn range_windows(expr: &str) -> Vec<Duration> {
    let mut out = Vec::new();
    let (mut quote, mut open) = (None, None);
    for (i, c) in expr.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '[') => open = Some(i + 1),
            (None, ']') => {
                let range = &expr[open.take().expect("] without [")..i];
                out.push(duration(range.split(':').next().unwrap()));
            }
            _ => {}
        }
    }
    out
}

/// An alert's expression without its closing comparison (`... > 0.5`),
/// so that it returns a value whether or not the threshold is crossed.
fn without_threshold(expr: &str) -> &str {
    let bytes = expr.as_bytes();
    let (mut depth, mut quote, mut cut) = (0i32, None, None);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match (quote, b) {
            (Some(q), b'\\') if q != b'`' => i += 1,
            (Some(q), b) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'' | b'`') => quote = Some(b),
            (None, b'(' | b'{' | b'[') => depth += 1,
            (None, b')' | b'}' | b']') => depth -= 1,
            (None, b'>' | b'<') if depth == 0 => cut = Some(i),
            (None, b'=' | b'!') if depth == 0 && bytes.get(i + 1) == Some(&b'=') => {
                cut = Some(i);
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    match cut {
        Some(at) => expr[..at].trim(),
        None => expr.trim(),
    }
}

fn the_helpers_read_durations_windows_and_thresholds() {
    assert_eq!(duration("15s"), Duration::from_secs(15));
    assert_eq!(duration("1h30m"), Duration::from_secs(5_400));
    assert_eq!(duration("250ms"), Duration::from_millis(250));
    assert_eq!(
        range_windows(r#"rate(a{x="[y]"}[1m]) + max_over_time(b[30m:1m])"#),
        [Duration::from_secs(60), Duration::from_secs(1_800)]
    );
    assert_eq!(
        without_threshold("sum by (i) (rate(a{s=~\"5..\"}[1m])) / sum(b) > 0.01"),
        "sum by (i) (rate(a{s=~\"5..\"}[1m])) / sum(b)"
    );
    assert_eq!(without_threshold(r#"up{job="x"} == 0"#), r#"up{job="x"}"#);
    assert_eq!(without_threshold("x * 3600 > 64 * 1024"), "x * 3600");
    let yaml = "global:\n  scrape_interval: 15s   # four\nscrape_configs:\n  - job_name: a\n    scrape_interval: \"30s\"\n";
    assert_eq!(yaml_values(yaml, "scrape_interval"), ["15s", "30s"]);
    assert_eq!(documented_scrape_interval(yaml), Duration::from_secs(30));
    assert_eq!(
        documented_scrape_interval("scrape_configs: []\n"),
        Duration::from_secs(60)
    );
}

/// The alert names of the rules file.
fn alert_names(rules: &str) -> Vec<String> {
    yaml_values(rules, "alert")
}

fn every_range_window_is_at_least_four_documented_scrape_intervals() {
    let config = documented_config();
    let interval = documented_scrape_interval(&config);
    let rules = std::fs::read_to_string(RULES).unwrap();
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut exprs = rule_exprs(&rules);
    assert_eq!(exprs.len(), alert_names(&rules).len(), "{exprs:?}");
    dashboard_queries(&dash, &mut exprs);
    let mut windows = 0;
    for e in &exprs {
        for w in range_windows(e) {
            windows += 1;
            assert!(
                w >= 4 * interval,
                "a window of {w:?} is under four scrape intervals of {interval:?} \
                 (docs/OPERATING.md's scrape config): {e}"
            );
        }
    }
    assert!(windows >= 15, "{windows} windows in {exprs:?}");
}

fn the_rules_tests_sample_at_the_documented_intervals_and_cover_every_alert() {
    let config = documented_config();
    let scrape = documented_scrape_interval(&config);
    let tests = std::fs::read_to_string(RULES_TEST).unwrap();
    // Series at the documented scrape interval, rules evaluated at the
    // documented evaluation interval (Prometheus's default: one minute).
    let intervals = yaml_values(&tests, "interval");
    assert!(!intervals.is_empty());
    for i in &intervals {
        assert_eq!(duration(i), scrape, "input series every {i}");
    }
    let evaluation = documented_evaluation_interval(&config);
    assert_eq!(
        yaml_values(&tests, "evaluation_interval")
            .iter()
            .map(|v| duration(v))
            .collect::<Vec<_>>(),
        [evaluation]
    );
    // Every alert has a case where it fires and one where it stays quiet.
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    let mut alert = None;
    for line in tests.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("alertname:") {
            alert = Some(name.trim().to_string());
        } else if let Some(expected) = line.strip_prefix("exp_alerts:") {
            let name = alert.take().expect("exp_alerts without alertname");
            if expected.trim() == "[]" {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    let rules = std::fs::read_to_string(RULES).unwrap();
    let names: BTreeSet<String> = alert_names(&rules).into_iter().collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert_eq!(firing, names, "alerts with a firing case");
    assert_eq!(quiet, names, "alerts with a quiet case");
}

/// `promtool args...`: its output, or a failure with it.
fn promtool(tool: &Path, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {}:\n{said}", args.join(" "));
    said
}

fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    let Some(tool) = find_tool("promtool")
        .or_else(|| skip_or_fail("promtool is not installed (apt-get install prometheus)"))
    else {
        return;
    };
    let said = promtool(&tool, &["check", "rules", RULES]);
    let rules = std::fs::read_to_string(RULES).unwrap();
    let n = alert_names(&rules).len();
    assert!(
        said.contains(&format!("SUCCESS: {n} rules found")),
        "{said}"
    );
    let said = promtool(&tool, &["test", "rules", RULES_TEST]);
    assert!(said.contains("SUCCESS"), "{said}");
}

fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PromQL query through the HTTP API (`GET /api/v1/query`).
fn query(http: &ureq::Agent, api: &str, q: &str) -> Value {
    let url = format!(
        "{api}/query?query={}",
        q.bytes()
            .map(|b| if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            })
            .collect::<String>()
    );
    let v: Value = http.get(&url).call().unwrap().into_json().unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v
}

fn get_json(agent: &ureq::Agent, url: &str) -> Value {
    agent.get(url).call().unwrap().into_json().unwrap()
}

fn alert_rules_and_grafana_dashboard_name_only_exposed_metrics_and_run_in_prometheus() {
    let (Some(promtool), Some(prometheus)) = (find_tool("promtool"), find_tool("prometheus"))
    else {
        skip_or_fail::<()>(
            "promtool and prometheus are not installed (apt-get install prometheus)",
        );
        return;
    };
    let perf = starpunk::config::PerfConfig {
        monitoring_enabled: true,
        memory_tracking: true,
        slow_query_threshold: 0.000_001,
        ..starpunk::config::PerfConfig::default()
    };
    let blog = start_with("fleet", perf, |_| {});
    for i in 0..3 {
        blog.micropub_form(&format!("fleet note {i}"));
    }
    // Traffic of every kind a panel shows: pages, a 404, a 500.
    let traffic = || {
        blog.get("/");
        blog.get("/feed.xml");
        blog.get("/no-such-page");
    };
    for _ in 0..20 {
        traffic();
    }
    blog.get("/__test/status/500");
    let agent = blog.agent();
    let auth = format!("Bearer {METRICS_TOKEN}");
    let (code, metrics) = blog.get_with(&agent, "/metrics", &[("Authorization", auth.as_str())]);
    assert_eq!(code, 200);
    let names = exposed(&metrics);
    assert!(
        names.contains("starpunk_db_slow_queries_total"),
        "{names:?}"
    );

    // promtool's own lint of the exposition.
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let lint = lint.wait_with_output().unwrap();
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // The rules name only exposed metrics.
    let rules = std::fs::read_to_string(RULES).unwrap();
    let exprs = rule_exprs(&rules);
    let known = |n: &String| names.contains(n) || SYNTHETIC.contains(&n.as_str());
    for e in &exprs {
        let used = metric_names(e);
        assert!(!used.is_empty(), "no metric in {e}");
        for n in &used {
            assert!(
                known(n),
                "rule names {n}, which /metrics does not expose: {e}"
            );
        }
    }
    // The dashboard: valid JSON, every query names only exposed metrics.
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dash, &mut queries);
    // Template variables: `label_values(METRIC, LABEL)` is Grafana's, not
    // PromQL; its metric must be exposed too.
    let (templates, queries): (Vec<String>, Vec<String>) = queries
        .into_iter()
        .filter(|q| q != "prometheus")
        .partition(|q| q.starts_with("label_values("));
    assert!(queries.len() >= 10, "{queries:?}");
    for t in &templates {
        let metric = t["label_values(".len()..].split(',').next().unwrap().trim();
        assert!(known(&metric.to_string()), "template names {metric}: {t}");
    }
    for q in &queries {
        for n in metric_names(q) {
            assert!(known(&n), "dashboard query names {n}, not exposed: {q}");
        }
    }
    for p in dash["panels"].as_array().unwrap() {
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{p}"
        );
    }

    // A real Prometheus runs the scrape config of docs/OPERATING.md as
    // written (only the target and the token replaced), with the rules
    // file where the config names it. After a few scrapes at the
    // documented interval: the target is up at that interval, every rule
    // evaluates without error and its expression (threshold off) has data,
    // and every dashboard query has data.
    let dir = temp_dir("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let documented = documented_config();
    for placeholder in [DOC_TARGET, DOC_TOKEN] {
        assert_eq!(
            documented.matches(placeholder).count(),
            1,
            "{placeholder} in {documented}"
        );
    }
    let rule_files: Vec<String> = yaml_values(&documented, "rule_files")
        .iter()
        .flat_map(|v| {
            v.trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|f| f.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
                .collect::<Vec<_>>()
        })
        .filter(|f| !f.is_empty())
        .collect();
    assert_eq!(
        rule_files,
        ["starpunk-alerts.yml"],
        "the documented config loads docs/prometheus/starpunk-alerts.yml: {documented}"
    );
    std::fs::copy(RULES, dir.join(&rule_files[0])).unwrap();
    let target = blog.base.trim_start_matches("http://").to_string();
    let config = documented
        .replace(DOC_TARGET, &target)
        .replace(DOC_TOKEN, METRICS_TOKEN);
    std::fs::write(dir.join("prometheus.yml"), &config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Prometheus(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let http = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let interval = documented_scrape_interval(&documented);
    // The first scrape comes within one interval, `rate` needs a second,
    // rules run every evaluation interval: five intervals are plenty.
    let started = Instant::now();
    let deadline = started + 5 * interval + Duration::from_secs(10);
    let overview: Vec<String> = queries
        .iter()
        .map(|q| q.replace("$job", "starpunk"))
        .collect();
    let thresholds_off: Vec<&str> = exprs.iter().map(|e| without_threshold(e)).collect();
    let evaluation = documented_evaluation_interval(&documented);
    loop {
        // Keep traffic coming so rates have samples to work with.
        traffic();
        let mut waiting = Vec::new();
        let groups = http
            .get(&format!("{api}/rules"))
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok())
            .unwrap_or_default();
        let groups = groups["data"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for g in &groups {
            // Rules run at the documented evaluation interval.
            assert_eq!(
                g["interval"].as_f64(),
                Some(evaluation.as_secs_f64()),
                "{g}"
            );
        }
        let rules: Vec<&Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = rules.len() == exprs.len()
            && rules.iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            });
        if !evaluated {
            waiting.push("the rules' first evaluation".to_string());
        } else {
            for r in &rules {
                assert_eq!(r["health"], "ok", "{r}");
            }
        }
        if waiting.is_empty() {
            for q in thresholds_off
                .iter()
                .copied()
                .chain(overview.iter().map(String::as_str))
            {
                if query(&http, &api, q)["data"]["result"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
                {
                    waiting.push(format!("data for {q}"));
                }
            }
        }
        if waiting.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus on the documented config did not have, after {:?}: {waiting:#?}\n{config}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "fleet: Prometheus on the documented config had data for every rule and panel after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // It scraped the blog, at the documented interval.
    let targets = get_json(&http, &format!("{api}/targets"));
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{targets}");
    assert_eq!(
        target["scrapeInterval"].as_str().map(duration),
        Some(interval),
        "{targets}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The tests of this file (`harness = false`: see `common::run_tool_tests`).
fn main() {
    run_tool_tests(vec![
        ToolTest {
            name: "the_extractor_finds_metric_names_only",
            needs: &[],
            run: the_extractor_finds_metric_names_only,
        },
        ToolTest {
            name: "the_helpers_read_durations_windows_and_thresholds",
            needs: &[],
            run: the_helpers_read_durations_windows_and_thresholds,
        },
        ToolTest {
            name: "every_range_window_is_at_least_four_documented_scrape_intervals",
            needs: &[],
            run: every_range_window_is_at_least_four_documented_scrape_intervals,
        },
        ToolTest {
            name: "the_rules_tests_sample_at_the_documented_intervals_and_cover_every_alert",
            needs: &[],
            run: the_rules_tests_sample_at_the_documented_intervals_and_cover_every_alert,
        },
        ToolTest {
            name: "promtool_checks_the_rules_and_passes_their_unit_tests",
            needs: &["promtool"],
            run: promtool_checks_the_rules_and_passes_their_unit_tests,
        },
        ToolTest {
            name:
                "alert_rules_and_grafana_dashboard_name_only_exposed_metrics_and_run_in_prometheus",
            needs: &["promtool", "prometheus"],
            run: alert_rules_and_grafana_dashboard_name_only_exposed_metrics_and_run_in_prometheus,
        },
    ]);
}
