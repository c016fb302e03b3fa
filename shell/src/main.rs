//! The `starpunk` binary: `starpunk serve` (the default), `--help`.

use std::process::ExitCode;

use starpunk::config::Config;

const USAGE: &str = "starpunk: a self-hosted blog with built-in performance monitoring

Usage:
  starpunk [serve] [FLAGS]     serve the blog (the default)
  starpunk tune [FLAGS]        recommend sample rate and buffer size (tune --help)
  starpunk --help              this text
  starpunk --version           the version

Every setting is an environment variable and a flag of `serve`; flags win.
Booleans accept true/false/1/0/yes/no/on/off in any case. A bad value stops
start-up with exit status 2 and names the variable, the value and what is
accepted.

Settings:
";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--help" | "-h" | "help") => {
            print!("{USAGE}{}", Config::help());
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("starpunk {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("serve") => {
            args.remove(0);
        }
        Some("tune") => {
            let rest = &args[1..];
            if rest.iter().any(|a| a == "--help" || a == "-h") {
                print!("{}", starpunk::tune::HELP);
                return ExitCode::SUCCESS;
            }
            return match starpunk::tune::parse(rest) {
                Ok(w) => {
                    starpunk::tune::run(&w);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("starpunk tune: {e}");
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}{}", Config::help());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(|k| std::env::var(k).ok(), &args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("starpunk: {e}");
            return ExitCode::from(2);
        }
    };
    for name in
        Config::unknown_variables(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))
    {
        eprintln!(
            "starpunk: warning: {name} is not a setting and is ignored (see `starpunk --help`)"
        );
    }
    let monitoring = config.perf.monitoring_enabled;
    let data_dir = config.data_dir.display().to_string();
    let running = match starpunk::app::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("starpunk: {e}");
            return ExitCode::from(1);
        }
    };
    let site = running.app.config.site_url.clone();
    println!(
        "starpunk: serving {site} (listening on {}, data in {data_dir})",
        running.server.addr()
    );
    let generated = &running.generated;
    if let Some(pw) = &generated.admin_password {
        println!("starpunk: first start: admin password (shown once, stored only as a hash): {pw}");
    }
    if let Some(t) = &generated.micropub_token {
        println!("starpunk: first start: Micropub token (shown once, stored only as a hash): {t}");
    }
    if generated.admin_password.is_some() || generated.micropub_token.is_some() {
        if let Err(e) = starpunk::app::mark_announced(&running.app) {
            eprintln!("starpunk: could not record that the credentials were shown: {e}");
        }
    }
    if generated.never_shown {
        println!(
            "starpunk: credentials were generated on an earlier start that stopped before showing them; \
             set STARPUNK_ADMIN_PASSWORD (8+ characters) and STARPUNK_MICROPUB_TOKEN (16+ characters) \
             and restart: they replace the stored hashes"
        );
    }
    println!("starpunk: log in at {site}/admin/login");
    if monitoring && running.app.config.perf.dashboard_enabled {
        println!("starpunk: performance dashboard at {site}/admin/performance");
    } else if monitoring {
        println!(
            "starpunk: recording metrics; the dashboard is off (STARPUNK_PERF_DASHBOARD_ENABLED=false), /metrics answers"
        );
    } else {
        println!("starpunk: monitoring is off; set STARPUNK_PERF_MONITORING_ENABLED=true to record metrics");
    }
    running.server.stop_on_signals();
    running.server.join();
    // The minute in progress goes to the history too (a restart for a
    // deploy would otherwise lose it).
    running.app.monitor.close_minute();
    println!("starpunk: stopped");
    ExitCode::SUCCESS
}
