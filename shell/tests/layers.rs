//! The shell's layers go one way (docs/ARCHITECTURE.md): `app` wires,
//! `config` reads the environment into each part's settings, then `web`
//! -> `db` -> `monitoring` -> the core, with the HTTP engine (`http`)
//! beside them, knowing none of them. Inside `monitoring`, the request
//! path reads neither the ticker nor the views, and the ticker does not
//! read the views.
//!
//! This test reads every source file's `crate::` paths (outside comments
//! and test modules) and fails on one that points the wrong way, naming
//! the file, the line and the rule.

use std::path::{Path, PathBuf};

/// What each top-level module may name besides itself.
fn allowed(layer: &str) -> Option<&'static [&'static str]> {
    Some(match layer {
        "http" => &[],
        "monitoring" => &[],
        "db" => &["monitoring"],
        "web" => &["db", "monitoring"],
        "config" => &["http", "monitoring"],
        // The wiring and the tools may name anything.
        "app" | "tune" | "lib" | "main" => return None,
        other => panic!("shell/src/{other}: a module the layer rules do not know; add it"),
    })
}

/// Path segments a room of the monitor must not name.
fn forbidden_in_room(module: &[String]) -> &'static [&'static str] {
    if module.first().map(String::as_str) != Some("monitoring") {
        return &[];
    }
    match module.get(1).map(String::as_str) {
        Some("request") => &["ticker::", "views::"],
        Some("ticker") => &["views::"],
        Some("views") => &[],
        // The house itself (`mod.rs`) holds every room; its shared
        // modules (settings, evidence, own, memory) never read the views.
        Some("mod") | None => &[],
        Some(_) => &["views::"],
    }
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code outside test modules, line by line, comments blanked.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|(_, next)| next.trim_start().starts_with("mod "))
        {
            // A test module runs to the end of its file by convention here;
            // skip it whole.
            break;
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push((i + 1, code.to_string()));
    }
    out
}

/// Every `crate::name` in `line`, macros (`crate::elog!`) left out.
fn crate_paths(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let is_macro = after[name.len()..].starts_with('!');
        let preceded = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &after[name.len()..];
        if !name.is_empty() && !is_macro && !preceded {
            out.push(name);
        }
    }
    out
}

fn violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(root, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(root).unwrap();
        let module: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        let layer = module[0].as_str();
        let text = std::fs::read_to_string(file).unwrap();
        let allowed = allowed(layer);
        let forbidden = forbidden_in_room(&module);
        for (n, line) in code_lines(&text) {
            if let Some(allowed) = allowed {
                for name in crate_paths(&line) {
                    if name != layer && !allowed.contains(&name.as_str()) {
                        found.push(format!(
                            "shell/src/{}:{n}: `{layer}` names `crate::{name}` (it may name {allowed:?})",
                            rel.display()
                        ));
                    }
                }
            }
            for seg in forbidden {
                let hit = line.match_indices(seg).any(|(at, _)| {
                    // A path segment, not the end of a longer name.
                    !line[..at]
                        .chars()
                        .last()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    found.push(format!(
                        "shell/src/{}:{n}: the monitor's `{}` room names `{seg}`",
                        rel.display(),
                        module[1]
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn layers_go_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&root);
    assert!(
        found.is_empty(),
        "layer rules broken:\n{}",
        found.join("\n")
    );
}

/// The core's modules name each other without a circle (before issue 19,
/// `recorder` and `series` named each other). Returns a circle if any.
fn core_circle(root: &Path) -> Option<Vec<String>> {
    let mut files = Vec::new();
    sources(root, &mut files);
    let mut edges: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for file in &files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        let mut deps: Vec<String> = code_lines(&text)
            .iter()
            .flat_map(|(_, line)| crate_paths(line))
            .filter(|d| *d != name)
            .collect();
        deps.sort();
        deps.dedup();
        edges.insert(name, deps);
    }
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        edges: &std::collections::BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut circle = path[at..].to_vec();
            circle.push(n.to_string());
            return Some(circle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = Default::default();
    for n in edges.keys() {
        if let Some(c) = visit(n, &edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_cores_modules_form_no_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/src");
    assert_eq!(core_circle(&root), None);
    // And the check finds one where there is one.
    let dir = std::env::temp_dir().join(format!("starpunk-core-circle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("recorder.rs"), "use crate::series::Series;\n").unwrap();
    std::fs::write(
        dir.join("series.rs"),
        "use crate::config::RecorderConfig;\n",
    )
    .unwrap();
    std::fs::write(dir.join("config.rs"), "use crate::recorder::Recorder;\n").unwrap();
    std::fs::write(dir.join("sync.rs"), "// crate::recorder in a comment\n").unwrap();
    let found = core_circle(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        found,
        Some(vec![
            "config".into(),
            "recorder".into(),
            "series".into(),
            "config".into()
        ])
    );
}

#[test]
fn the_check_sees_a_wrong_way_import() {
    // The same check on a small tree with one import of each wrong kind.
    let dir = std::env::temp_dir().join(format!("starpunk-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in [
        ("monitoring/mod.rs", "use crate::monitoring::views::X;\n"),
        (
            "monitoring/request/mod.rs",
            "use crate::config::PerfConfig;\n",
        ),
        (
            "monitoring/request/kept.rs",
            "use super::super::ticker::trend;\n",
        ),
        (
            "monitoring/ticker/mod.rs",
            "fn f() { crate::elog!(\"x\"); }\n",
        ),
        (
            "monitoring/ticker/alerts.rs",
            "use crate::monitoring::views::Y;\n",
        ),
        ("db/mod.rs", "use crate::web::App; // crate::db is fine\n"),
        ("http/mod.rs", "use crate::monitoring::Monitor;\n"),
        (
            "web/mod.rs",
            "use crate::db::Db;\n#[cfg(test)]\nmod tests { use crate::app::X; }\n",
        ),
    ] {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let found = violations(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<&str> = found.iter().map(|f| f.split(':').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "shell/src/db/mod.rs",
            "shell/src/http/mod.rs",
            "shell/src/monitoring/request/kept.rs",
            "shell/src/monitoring/request/mod.rs",
            "shell/src/monitoring/ticker/alerts.rs",
        ],
        "{found:#?}"
    );
}
