//! `starpunk tune`: measures the monitor's costs on this machine and turns
//! them, with the expected traffic, into STARPUNK_PERF_SAMPLE_RATE and
//! STARPUNK_PERF_BUFFER_SIZE. The model is explained in docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Instant;

use starpunk_perf::{Category, Clock, MetricRecord, Recorder, RecorderConfig, TscClock};

use crate::http::{materialise, Materialised};
use crate::monitoring::PerfConfig;
use crate::monitoring::{Function, Monitor};
use crate::web::routes::Route;

/// Bytes per ring slot.
pub const SLOT_BYTES: f64 = 64.0;
/// Bytes per series (see docs/ARCHITECTURE.md).
pub const SERIES_BYTES: f64 = 27_744.0;

/// The traffic the owner expects, from flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Requests per second at peak.
    pub requests_per_second: f64,
    /// SQL statements per request.
    pub queries_per_request: f64,
    /// History the ring should cover, minutes.
    pub window_minutes: f64,
    /// CPU time of one request without monitoring, milliseconds.
    pub request_ms: f64,
    /// The overhead allowed, percent of request time.
    pub target_percent: f64,
    /// Distinct routes, patterns and functions expected.
    pub series: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            requests_per_second: 10.0,
            queries_per_request: 3.0,
            window_minutes: 15.0,
            request_ms: 0.25,
            target_percent: 1.0,
            series: 40.0,
        }
    }
}

/// What was measured on this machine, nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Costs {
    /// One `Recorder::record`.
    pub record_ns: f64,
    /// One clock pair (start and end of a measurement).
    pub clock_pair_ns: f64,
    /// The hook path of one request (wrapper, `q` statements, one function)
    /// at sample rate 1.0, minus the same with monitoring disabled.
    pub hook_ns: f64,
    /// The same at sample rate 0.0 (the decision and counters only).
    pub hook_sampled_out_ns: f64,
}

/// The recommendation.
#[derive(Clone, Debug, PartialEq)]
pub struct Advice {
    /// STARPUNK_PERF_SAMPLE_RATE.
    pub sample_rate: f64,
    /// STARPUNK_PERF_BUFFER_SIZE.
    pub buffer_size: usize,
    /// Predicted overhead at that rate, percent of request time.
    pub overhead_percent: f64,
    /// Predicted overhead at rate 1.0, percent.
    pub overhead_at_full_percent: f64,
    /// Minutes of history the buffer holds at that traffic.
    pub window_minutes: f64,
    /// Bytes the ring and series take.
    pub memory_bytes: f64,
    /// Share of one core the monitor uses at that traffic, percent.
    pub core_percent: f64,
    /// What the owner must know about this advice (a missed target), one
    /// sentence each.
    pub warnings: Vec<String>,
    /// What the recommendation gave up to meet its targets (a shorter
    /// ring than asked for, a sampled ring), one sentence each.
    pub traded: Vec<String>,
}

/// The ADR's memory budget for metrics.
pub const BUDGET_BYTES: f64 = 1024.0 * 1024.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_per_iter(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// One request's worth of monitoring with empty bodies, as the HTTP front
/// runs it: the request wrapper inside `Monitor::measure_body` (which
/// learns the body's length from the front's `materialise`), `queries`
/// SQL statements (cycling through three patterns) and one function
/// guard. What `starpunk tune` and the `hook_path` bench measure.
pub fn hook_path(monitor: &Monitor, queries: u32) -> Materialised {
    const STATEMENTS: [&str; 3] = [
        "SELECT id, slug, content FROM notes WHERE slug = ?1 AND deleted_at IS NULL",
        "SELECT count(*) FROM notes WHERE deleted_at IS NULL",
        "SELECT value FROM settings WHERE key = ?1",
    ];
    let handler = || {
        for sql in STATEMENTS.iter().cycle().take(queries as usize) {
            black_box(monitor.around_query(sql, || (black_box(1u8), 1)));
        }
        monitor.time(Function::Search, || black_box(1u8));
        rouille::Response::text("")
    };
    monitor.measure_body(
        || monitor.around_request(Route::Note.key(), handler),
        materialise,
    )
}

/// Measures the costs (about a second of work).
pub fn measure(queries_per_request: f64) -> Costs {
    let recorder = Recorder::new(RecorderConfig::default(), TscClock::new())
        .expect("the default configuration is valid");
    let op = recorder.register(Category::Function, "tune");
    let record_ns = median(
        (0..5)
            .map(|_| {
                time_per_iter(200_000, |i| {
                    recorder.record(MetricRecord {
                        timestamp_ns: i,
                        duration_ns: (i * 7919) % 50_000_000,
                        operation: op,
                        ..MetricRecord::default()
                    })
                })
            })
            .collect(),
    );
    let clock = TscClock::new();
    let clock_pair_ns = median(
        (0..5)
            .map(|_| {
                time_per_iter(200_000, |_| {
                    let a = clock.now_ns();
                    black_box(clock.now_ns() - a);
                })
            })
            .collect(),
    );
    let q = queries_per_request.round().clamp(0.0, 1000.0) as u32;
    let per = |cfg: PerfConfig| {
        let m = Monitor::new(&cfg);
        median(
            (0..5)
                .map(|_| {
                    time_per_iter(20_000, |_| {
                        black_box(hook_path(&m, q));
                    })
                })
                .collect(),
        )
    };
    let off = per(PerfConfig::default());
    let on = per(PerfConfig {
        monitoring_enabled: true,
        ..PerfConfig::default()
    });
    let sampled_out = per(PerfConfig {
        monitoring_enabled: true,
        sample_rate: 0.0,
        ..PerfConfig::default()
    });
    Costs {
        record_ns,
        clock_pair_ns,
        hook_ns: (on - off).max(0.0),
        hook_sampled_out_ns: (sampled_out - off).max(0.0),
    }
}

/// The model: overhead(r) = (C0 + r (C1 - C0)) / T, where C1 is the hook
/// cost at rate 1, C0 at rate 0, T the request's own time. The rate is the
/// largest (in steps of 0.01) that keeps overhead within the target; the
/// buffer holds `window` of the records that rate produces.
pub fn advise(w: &Workload, c: &Costs) -> Advice {
    let t_ns = (w.request_ms * 1e6).max(1.0);
    let c0 = c.hook_sampled_out_ns.min(c.hook_ns);
    let c1 = c.hook_ns;
    let overhead = |r: f64| (c0 + r * (c1 - c0)) / t_ns * 100.0;
    let mut rate = 1.0;
    if overhead(1.0) > w.target_percent {
        rate = if c1 > c0 {
            ((w.target_percent / 100.0 * t_ns - c0) / (c1 - c0)).clamp(0.0, 1.0)
        } else {
            1.0
        };
        rate = (rate * 100.0).floor() / 100.0;
        rate = rate.max(0.01);
    }
    let events = 1.0 + w.queries_per_request + 1.0;
    let records_per_s = (w.requests_per_second * events * rate).max(1e-9);
    let wanted = (records_per_s * w.window_minutes * 60.0).ceil();
    // One recommendation: the ring asked for, but never past the ADR's
    // 1 MiB budget (what that gives up is said in `traded`).
    let fits = (BUDGET_BYTES / SLOT_BYTES).floor();
    let buffer_size = wanted.clamp(1_000.0, fits) as usize;
    let mut traded = Vec::new();
    if rate < 1.0 {
        traded.push(format!(
            "the ring records {:.0} % of requests (chosen at random) to keep the overhead within \
             {} %; every count, sum and percentile stays exact, and slow and failed requests are \
             kept in detail whatever the rate",
            rate * 100.0,
            w.target_percent
        ));
    }
    if wanted > fits {
        traded.push(format!(
            "a ring of {:.0} minutes at this traffic needs {wanted:.0} records ({:.1} MiB), over \
             the ADR's 1 MiB budget: STARPUNK_PERF_BUFFER_SIZE={buffer_size} keeps it at 1 MiB \
             and holds {:.1} minutes; the counts, the 15-minute overview and the slowest and \
             failed requests (kept apart from the ring) do not depend on it",
            w.window_minutes,
            wanted * SLOT_BYTES / BUDGET_BYTES,
            buffer_size as f64 / records_per_s / 60.0
        ));
    }
    let memory_bytes = buffer_size as f64 * SLOT_BYTES + w.series * SERIES_BYTES;
    let mut warnings = Vec::new();
    if overhead(rate) > w.target_percent {
        warnings.push(format!(
            "the predicted overhead at rate {rate} is {:.3} %, above the {} % target: \
             {c0:.0} ns per request (the clock reads and the exact counts) is not sampled away; \
             a {} ms request cannot meet the target with monitoring on",
            overhead(rate),
            w.target_percent,
            w.request_ms
        ));
    }
    Advice {
        sample_rate: rate,
        buffer_size,
        overhead_percent: overhead(rate),
        overhead_at_full_percent: overhead(1.0),
        window_minutes: buffer_size as f64 / records_per_s / 60.0,
        memory_bytes,
        core_percent: w.requests_per_second * (c0 + rate * (c1 - c0)) / 1e9 * 100.0,
        warnings,
        traded,
    }
}

/// `starpunk tune --help`.
pub const HELP: &str =
    "starpunk tune: recommend STARPUNK_PERF_SAMPLE_RATE and STARPUNK_PERF_BUFFER_SIZE

Measures, on this machine, the cost of one record, of one clock pair and of
the whole monitoring hook path of a request; then, for the traffic you
expect, prints the sample rate that keeps monitoring within the overhead
target, the buffer size that holds the history you want within the ADR's
1 MiB (and what it traded when it cannot), the predicted overhead, the
window the buffer covers and the memory it takes, with a warning when a
target cannot be met;
and a slow-query threshold from the blog's own statements, timed on a
scratch database.

Usage: starpunk tune [FLAGS]

Flags (defaults in brackets):
  --requests-per-second N   peak requests per second [10]
  --queries-per-request N   SQL statements per request [3]
  --window-minutes N        minutes of detail records the ring buffer should
                            hold (the slowest requests, timelines, the CSV;
                            counts and percentiles do not depend on it) [15]
  --request-ms N            CPU time of one request without monitoring [0.25]
  --target-percent N        overhead allowed, percent of request time [1]
  --series N                distinct routes + SQL patterns + functions [40]

The model (docs/PERFORMANCE.md): overhead(r) = (C0 + r (C1 - C0)) / T with
C1 the measured hook cost per request at rate 1, C0 at rate 0 and T the
request time; buffer = records per second x window, clamped to 1000..1000000.
";

/// Parses the flags of `starpunk tune`.
pub fn parse(args: &[String]) -> Result<Workload, String> {
    let mut w = Workload::default();
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (args[i].clone(), None),
        };
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i)
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))?
            }
        };
        let n: f64 = value
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("invalid {flag}={value:?}: expected a non-negative number"))?;
        let slot = match flag.as_str() {
            "--requests-per-second" => &mut w.requests_per_second,
            "--queries-per-request" => &mut w.queries_per_request,
            "--window-minutes" => &mut w.window_minutes,
            "--request-ms" => &mut w.request_ms,
            "--target-percent" => &mut w.target_percent,
            "--series" => &mut w.series,
            _ => return Err(format!("unknown flag {flag:?}: see `starpunk tune --help`")),
        };
        if (flag == "--request-ms" || flag == "--target-percent") && n == 0.0 {
            return Err(format!(
                "invalid {flag}={value:?}: expected a number above 0"
            ));
        }
        *slot = n;
        i += 1;
    }
    Ok(w)
}

/// The blog's own read statements (home page, note, count, feed version,
/// search), timed on a scratch database of 200 notes in a temporary
/// directory: their median and 99th percentile, milliseconds.
pub fn measure_statements() -> Option<(f64, f64)> {
    let dir = std::env::temp_dir().join(format!("starpunk-tune-{}", std::process::id()));
    let measured = (|| {
        let db = crate::db::Db::open(
            &dir,
            std::sync::Arc::new(Monitor::new(&PerfConfig::default())),
        )
        .ok()?;
        let mut slugs = Vec::new();
        {
            let w = db.writer().ok()?;
            for i in 0..200 {
                let text = format!(
                    "Tune note {i}: {}",
                    "lorem ipsum dolor sit amet ".repeat(12)
                );
                slugs.push(w.create_note(&text, None).ok()?.slug);
            }
        }
        let conn = db.conn().ok()?;
        let mut ms = Vec::with_capacity(500);
        let mut time = |f: &mut dyn FnMut() -> bool| {
            let t = Instant::now();
            let ok = f();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            ok
        };
        for (i, slug) in slugs.iter().enumerate().take(100) {
            let ok = time(&mut || conn.published_notes(10, (i % 20) as i64).is_ok())
                && time(&mut || conn.note_by_slug(slug).is_ok())
                && time(&mut || conn.count_notes().is_ok())
                && time(&mut || conn.feed_version().is_ok())
                && time(&mut || conn.search_notes("lorem", 10).is_ok());
            if !ok {
                return None;
            }
        }
        ms.sort_by(f64::total_cmp);
        Some((ms[ms.len() / 2], ms[ms.len() * 99 / 100]))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

/// A slow-query threshold from the statements' own p99: ten times it,
/// at least 5 ms, rounded up to 1, 2 or 5 times a power of ten; seconds.
pub fn slow_threshold(p99_ms: f64) -> f64 {
    let want = (p99_ms * 10.0).max(5.0);
    let mut step = 1.0;
    while step * 10.0 <= want {
        step *= 10.0;
    }
    let nice = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * step)
        .find(|v| *v >= want)
        .unwrap_or(10.0 * step);
    nice / 1e3
}

/// Milliseconds to read a full ring of `slots` records, as each dashboard
/// view does (the median of three reads).
pub fn ring_read_ms(slots: usize) -> f64 {
    let ring = starpunk_perf::RingBuffer::new(slots);
    for i in 0..slots as u64 {
        ring.push(starpunk_perf::MetricRecord {
            timestamp_ns: i,
            duration_ns: i,
            ..starpunk_perf::MetricRecord::default()
        });
    }
    let mut out = Vec::with_capacity(slots);
    median(
        (0..3)
            .map(|_| {
                let start = Instant::now();
                ring.snapshot(&mut out);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

/// Runs `starpunk tune`, printing the report.
pub fn run(w: &Workload) {
    let c = measure(w.queries_per_request);
    let a = advise(w, &c);
    println!("Measured on this machine:");
    println!(
        "  one record (ring + histogram):        {:>8.1} ns",
        c.record_ns
    );
    println!(
        "  one clock pair (TSC):                 {:>8.1} ns",
        c.clock_pair_ns
    );
    println!(
        "  hook path per request ({} SQL + 1 fn): {:>8.1} ns at rate 1.0, {:.1} ns at rate 0",
        w.queries_per_request, c.hook_ns, c.hook_sampled_out_ns
    );
    println!(
        "For {} requests/s of {} ms with {} SQL statements each:",
        w.requests_per_second, w.request_ms, w.queries_per_request
    );
    println!(
        "  overhead at rate 1.0:  {:.3} % of request time",
        a.overhead_at_full_percent
    );
    println!();
    println!("STARPUNK_PERF_SAMPLE_RATE={}", a.sample_rate);
    println!("STARPUNK_PERF_BUFFER_SIZE={}", a.buffer_size);
    println!();
    println!(
        "  predicted overhead:    {:.3} % of request time (target {} %)",
        a.overhead_percent, w.target_percent
    );
    println!(
        "  monitor CPU:           {:.4} % of one core",
        a.core_percent
    );
    println!(
        "  detail ring:           the last {:.1} minutes of records (routes x patterns, \
         the CSV); counts, percentiles, the 15-minute overview and the slowest and failed \
         requests (kept apart) are exact \
         whatever its size",
        a.window_minutes
    );
    let read_ms = ring_read_ms(a.buffer_size);
    println!(
        "  dashboard:             reading a full ring of {} records takes {read_ms:.2} ms \
         per page view (measured now)",
        a.buffer_size
    );
    println!(
        "  memory:                {:.0} KiB (ring {} x 64 B + {} series x 26.9 KiB)",
        a.memory_bytes / 1024.0,
        a.buffer_size,
        w.series
    );
    for t in &a.traded {
        println!("  traded: {t}");
    }
    for warning in &a.warnings {
        println!("  WARNING: {warning}");
    }
    println!();
    match measure_statements() {
        Some((p50, p99)) => {
            println!("STARPUNK_PERF_SLOW_QUERY_THRESHOLD={}", slow_threshold(p99));
            println!();
            println!(
                "  the blog's statements, timed here on a scratch database of 200 notes: \
                 p50 {p50:.3} ms, p99 {p99:.3} ms;"
            );
            println!(
                "  ten times the p99 (at least 5 ms) flags what is unusual for this machine; \
                 the default 1 s would almost never fire on a blog"
            );
        }
        None => {
            println!("  (could not time the statements on a scratch database: no threshold advice)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_bytes_is_what_a_route_series_takes() {
        let rec = starpunk_perf::Recorder::new(
            starpunk_perf::RecorderConfig::default(),
            starpunk_perf::FakeClock::default(),
        )
        .unwrap();
        let op = rec.register(starpunk_perf::Category::Http, "GET /");
        assert_eq!(rec.series(op).unwrap().memory_bytes() as f64, SERIES_BYTES);
    }

    fn costs() -> Costs {
        Costs {
            record_ns: 15.0,
            clock_pair_ns: 20.0,
            hook_ns: 500.0,
            hook_sampled_out_ns: 50.0,
        }
    }

    #[test]
    fn full_rate_when_cheap_and_buffer_covers_the_window() {
        // 3 req/s x 5 records x 900 s = 13,500 records: within the budget.
        let w = Workload {
            requests_per_second: 3.0,
            ..Workload::default()
        };
        let a = advise(&w, &costs());
        assert_eq!(a.sample_rate, 1.0);
        assert_eq!(a.buffer_size, 13_500);
        assert!((a.window_minutes - 15.0).abs() < 1e-9);
        assert!((a.overhead_percent - 0.2).abs() < 1e-9);
        assert!(a.traded.is_empty(), "{:?}", a.traded);
    }

    #[test]
    fn rate_drops_to_meet_the_target() {
        let w = Workload {
            request_ms: 0.02,
            ..Workload::default()
        };
        let a = advise(&w, &costs());
        // overhead(r) = (50 + 450 r) / 20000 <= 1 % -> r <= 0.333
        assert_eq!(a.sample_rate, 0.33);
        assert!(a.overhead_percent <= 1.0);
        let tiny = Workload {
            request_ms: 0.001,
            ..Workload::default()
        };
        let a = advise(&tiny, &costs());
        assert_eq!(a.sample_rate, 0.01);
        // 50 ns at rate 0 on a 1 µs request is 5 %: the target cannot be
        // met, and the advice says so.
        assert!(a.overhead_percent > 1.0);
        assert!(
            a.warnings
                .iter()
                .any(|w| w.contains("above the 1 % target")),
            "{:?}",
            a.warnings
        );
        // The default workload meets the overhead target; the 45,000-record
        // ring it asks for (2.7 MiB) is over the buffer budget: one
        // recommendation, within the budget, and what it gave up.
        let default = advise(&Workload::default(), &costs());
        assert!(default.warnings.is_empty(), "{:?}", default.warnings);
        assert_eq!(default.buffer_size, 16_384);
        assert_eq!(default.traded.len(), 1, "{:?}", default.traded);
        assert!(default.traded[0].contains("needs 45000 records"));
        assert!(default.traded[0].contains("STARPUNK_PERF_BUFFER_SIZE=16384"));
    }

    #[test]
    fn slow_thresholds_are_round_and_never_tiny() {
        assert_eq!(slow_threshold(0.05), 0.005);
        assert_eq!(slow_threshold(0.7), 0.01);
        assert_eq!(slow_threshold(1.3), 0.02);
        assert_eq!(slow_threshold(3.0), 0.05);
        assert_eq!(slow_threshold(60.0), 1.0);
        let (p50, p99) = measure_statements().expect("statements time on a scratch database");
        assert!(p50 > 0.0 && p99 >= p50, "{p50} {p99}");
    }

    #[test]
    fn buffer_is_clamped_and_flags_parse_strictly() {
        let w = Workload {
            requests_per_second: 10_000.0,
            window_minutes: 60.0,
            ..Workload::default()
        };
        let big = advise(&w, &costs());
        // 61 MiB asked for: the budget's ring recommended, the trade said.
        assert_eq!(big.buffer_size, 16_384);
        assert!(
            big.traded
                .iter()
                .any(|m| m.contains("over the ADR's 1 MiB budget")
                    && m.contains("STARPUNK_PERF_BUFFER_SIZE=16384")),
            "{:?}",
            big.traded
        );
        let quiet = Workload {
            requests_per_second: 0.01,
            ..Workload::default()
        };
        assert_eq!(advise(&quiet, &costs()).buffer_size, 1_000);
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let w = parse(&args(&[
            "--requests-per-second",
            "50",
            "--window-minutes=5",
        ]))
        .unwrap();
        assert_eq!((w.requests_per_second, w.window_minutes), (50.0, 5.0));
        assert!(parse(&args(&["--requests-per-second", "-1"])).is_err());
        assert!(parse(&args(&["--request-ms", "0"])).is_err());
        assert!(parse(&args(&["--target-percent", "0"])).is_err());
        assert!(parse(&args(&["--nope", "1"])).is_err());
        assert!(parse(&args(&["--series"])).is_err());
    }
}
