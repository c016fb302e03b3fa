//! The `starpunk` binary: `starpunk serve` (the default), `--help`.

use std::io::Write as _;
use std::process::ExitCode;

use starpunk::config::Config;

/// jemalloc: freed memory goes back to the system after floods (issue 21
/// item 7, measured in docs/PERFORMANCE.md section 14), where glibc's
/// arenas kept it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    // jemalloc's background threads give freed pages back to the system
    // within its decay time (10 s) even when nothing allocates (after a
    // flood of connections, say); without them only the next allocations
    // would. A failure costs only that.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--help" | "-h" | "help") => {
            let _ = write!(std::io::stdout(), "{USAGE}{}", Config::help());
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            let _ = starpunk::olog!("starpunk {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("serve") => {
            args.remove(0);
        }
        Some("tune") => {
            let rest = &args[1..];
            if rest.iter().any(|a| a == "--help" || a == "-h") {
                let _ = write!(std::io::stdout(), "{}", starpunk::tune::HELP);
                return ExitCode::SUCCESS;
            }
            return match starpunk::tune::parse(rest) {
                Ok(w) => {
                    starpunk::tune::run(&w);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    starpunk::elog!("starpunk tune: {e}");
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        let _ = write!(std::io::stdout(), "{USAGE}{}", Config::help());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(
        |k| std::env::var(k).ok(),
        &args,
        &starpunk::app::route_templates(),
    ) {
        Ok(c) => c,
        Err(e) => {
            starpunk::elog!("starpunk: {e}");
            return ExitCode::from(2);
        }
    };
    for name in
        Config::unknown_variables(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))
    {
        starpunk::elog!(
            "starpunk: warning: {name} is not a setting and is ignored (see `starpunk --help`)"
        );
    }
    let monitoring = config.perf.monitoring_enabled;
    let data_dir = config.data_dir.display().to_string();
    let running = match starpunk::app::start(config) {
        Ok(r) => r,
        Err(e) => {
            starpunk::elog!("starpunk: {e}");
            return ExitCode::from(1);
        }
    };
    let site = running.app.site.url.clone();
    let _ = starpunk::olog!(
        "starpunk: serving {site} (listening on {}, data in {data_dir})",
        running.server.addr()
    );
    let generated = &running.generated;
    // Shown only if written: otherwise the next start says they never were.
    let mut shown = true;
    if let Some(pw) = &generated.admin_password {
        shown &= starpunk::olog!(
            "starpunk: first start: admin password (shown once, stored only as a hash): {pw}"
        );
    }
    if let Some(t) = &generated.micropub_token {
        shown &= starpunk::olog!(
            "starpunk: first start: Micropub token (shown once, stored only as a hash): {t}"
        );
    }
    if (generated.admin_password.is_some() || generated.micropub_token.is_some()) && shown {
        if let Err(e) = starpunk::app::mark_announced(&running.app) {
            starpunk::elog!("starpunk: could not record that the credentials were shown: {e}");
        }
    }
    if generated.never_shown {
        let _ = starpunk::olog!(
            "starpunk: credentials were generated on an earlier start that stopped before showing them; \
             set STARPUNK_ADMIN_PASSWORD (8+ characters) and STARPUNK_MICROPUB_TOKEN (16+ characters) \
             and restart: they replace the stored hashes"
        );
    }
    let _ = starpunk::olog!("starpunk: log in at {site}/admin/login");
    if monitoring && running.app.monitor.config().dashboard_enabled {
        let _ = starpunk::olog!("starpunk: performance dashboard at {site}/admin/performance");
    } else if monitoring {
        let _ = starpunk::olog!(
            "starpunk: recording metrics; the dashboard is off (STARPUNK_PERF_DASHBOARD_ENABLED=false), /metrics answers"
        );
    } else {
        let _ = starpunk::olog!("starpunk: monitoring is off; set STARPUNK_PERF_MONITORING_ENABLED=true to record metrics");
    }
    running.server.stop_on_signals();
    running.server.join();
    // The minute in progress goes to the history too (a restart for a
    // deploy would otherwise lose it).
    running.app.monitor.close_minute();
    let _ = starpunk::olog!("starpunk: stopped");
    ExitCode::SUCCESS
}
