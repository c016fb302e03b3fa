//! What owners who outgrow one machine use: the Prometheus alerting rules
//! and the Grafana dashboard shipped in docs/, checked against what
//! `/metrics` really exposes, by `promtool` and by a real Prometheus server
//! scraping the blog. Debian's `prometheus` package (server and `promtool`);
//! `.ci/run` installs it. Without it the test fails in CI and skips
//! elsewhere.

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

#[test]
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

fn get_json(agent: &ureq::Agent, url: &str) -> Value {
    agent.get(url).call().unwrap().into_json().unwrap()
}

#[test]
fn alert_rules_and_grafana_dashboard_name_only_exposed_metrics_and_run_in_prometheus() {
    let (Some(promtool), Some(prometheus)) = (find_tool("promtool"), find_tool("prometheus"))
    else {
        if std::env::var_os("CI").is_some() {
            panic!("promtool and prometheus are required in CI (apt-get install prometheus)");
        }
        eprintln!("SKIPPED: prometheus not installed (apt-get install prometheus)");
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
    for _ in 0..20 {
        blog.get("/");
        blog.get("/feed.xml");
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

    // The rules parse, and name only exposed metrics.
    let check = Command::new(&promtool)
        .args(["check", "rules", RULES])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let exprs = rule_exprs(&std::fs::read_to_string(RULES).unwrap());
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{said}"
    );
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

    // A real Prometheus scrapes the blog with the rules loaded: the target
    // is up, every rule evaluates without error, and every dashboard query
    // runs and the overview's return data.
    let dir = temp_dir("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = blog.base.trim_start_matches("http://").to_string();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {RULES}\n\
             scrape_configs:\n  - job_name: starpunk\n    authorization:\n      credentials: {METRICS_TOKEN}\n\
             \x20   static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Keep traffic coming so rates have two samples to work with.
        blog.get("/");
        let ready = http
            .get(&format!("{api}/rules"))
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok())
            .is_some_and(|v| {
                let rules: Vec<&Value> = v["data"]["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                    .collect();
                rules.len() == exprs.len()
                    && rules.iter().all(|r| {
                        r["health"] == "ok"
                            && r["lastEvaluation"]
                                .as_str()
                                .is_some_and(|t| !t.starts_with("0001"))
                    })
            });
        let scraped = http
            .get(&format!("{api}/query?query=count_over_time(up[1m])"))
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok())
            .and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_string)
            })
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(|n| n >= 4.0);
        if ready && scraped {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape and evaluate in 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let targets = get_json(&http, &format!("{api}/targets"));
    assert_eq!(
        targets["data"]["activeTargets"][0]["health"], "up",
        "{targets}"
    );
    for q in &queries {
        let q = q.replace("$job", "starpunk");
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
        let v = get_json(&http, &url);
        assert_eq!(v["status"], "success", "{q}: {v}");
        // The overview's queries (rates, quantiles, RSS) have data now.
        if q.contains("starpunk_http_requests_total{job=\"starpunk\"}[1m]")
            || q.starts_with("process_resident_memory_bytes")
        {
            let result = v["data"]["result"].as_array().unwrap();
            assert!(!result.is_empty(), "{q} returned nothing: {v}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
