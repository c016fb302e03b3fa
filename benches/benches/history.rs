//! The history's cost, as a documented load run: 40 active series (20
//! routes, 20 query patterns) written minute by minute for 31 simulated
//! days ending now, with 30 days kept, then the dashboard's range views
//! built from it.
//!
//! `cargo bench -p starpunk-benches --bench history`
//!
//! Prints the file's size after one day, 7 days and 31 days (the last is
//! the ceiling at 30 days' retention, measured: rows past their time are
//! pruned and their pages reused), the growth per day past 8 days (the
//! hour rows of routes and patterns are kept 8 days, then only their
//! six-hour rows) and from it the ceiling at 365 days, the time per
//! minute's write, and the server time of the 24-hour, 7-day and 30-day
//! views (snapshot from the history + render, median of 5). With `STARPUNK_HISTORY_BENCH_DIR=<dir>` the file is kept there, and
//! a later run finding it skips the load and measures the views only (for
//! a profiler, or `sqlite3 <dir>/perf-history.sqlite3`).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use starpunk::config::PerfConfig;
use starpunk::monitoring::ticker::history::{Cumulative, History, KIND_PATTERN, KIND_ROUTE};
use starpunk::monitoring::views::range::Range;
use starpunk::monitoring::views::DatabaseView;
use starpunk::monitoring::Monitor;
use starpunk::web::dashboard;

const SERIES: usize = 40;
const DAYS: i64 = 31;
/// The retention the history is opened with.
const KEPT_DAYS: u32 = 30;

struct Series {
    kind: i64,
    name: String,
    latency: Histogram<u64>,
    c: Cumulative,
}

fn main() {
    // STARPUNK_HISTORY_BENCH_DIR keeps the file (for a profiler or
    // sqlite3): a run finding one there skips the load and measures views.
    let kept = std::env::var_os("STARPUNK_HISTORY_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = kept.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("starpunk-history-bench-{}", std::process::id()))
    });
    let reuse = kept.is_some() && dir.join("perf-history.sqlite3").exists();
    if !reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let layout = starpunk_perf::RecorderConfig::default().layout;
    let empty = starpunk_perf::new_hdr(&layout);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start = now - now % 60 - DAYS * 86_400;
    let mut history = History::open(&dir, KEPT_DAYS, "bench", start, empty.clone()).unwrap();
    let minutes = if reuse { 0 } else { DAYS * 1_440 };
    let mut series: Vec<Series> = (0..SERIES)
        .map(|i| Series {
            kind: if i < SERIES / 2 {
                KIND_ROUTE
            } else {
                KIND_PATTERN
            },
            name: if i < SERIES / 2 {
                format!("GET /route/{i}/{{slug}}")
            } else {
                format!("SELECT a, b, c FROM table_{i} WHERE id = ? AND published_at < ?")
            },
            latency: empty.clone(),
            c: Cumulative::default(),
        })
        .collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut write_time = Duration::ZERO;
    // The file's size at the end of days 1, 7, 14 and 29.
    let mut bytes_at = std::collections::BTreeMap::new();
    for m in 0..minutes {
        for s in series.iter_mut() {
            // 1 to 20 events a minute, 0.1 ms to ~50 ms, skewed fast.
            for _ in 0..1 + rnd() % 20 {
                let r = rnd();
                let ns = 100_000 + (r % 1_000) * (r % 1_000) * 50;
                s.latency.saturating_record(ns);
                s.c.counts.count += 1;
                s.c.counts.sum_ns += ns;
                s.c.counts.bytes += 2_000 + r % 5_000;
                s.c.counts.rows += r % 10;
                if r % 200 == 0 {
                    s.c.counts.errors_5xx += 1;
                } else if r % 50 == 0 {
                    s.c.counts.errors_4xx += 1;
                }
            }
            s.c.buckets = s
                .latency
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect();
        }
        let batch = series
            .iter()
            .map(|s| (s.kind, s.name.clone(), s.c.clone()))
            .collect();
        let t = Instant::now();
        history
            .write_minute(start + m * 60, batch, (m as u64) / 10, 50 << 20)
            .unwrap();
        write_time += t.elapsed();
        if (m + 1) % 1_440 == 0 && [1, 7, 14, 29].contains(&((m + 1) / 1_440)) {
            bytes_at.insert((m + 1) / 1_440, checkpointed_bytes(&dir));
        }
    }
    drop(history);
    let total = checkpointed_bytes(&dir);
    let at = |day: i64| bytes_at.get(&day).copied().unwrap_or(total) as f64;
    // Past 8 days the file grows by the rows kept for the whole retention
    // (six-hour rows, the all-requests series' hour rows) until rows go
    // past it (day 30).
    let per_day = (at(29) - at(14)) / 15.0;

    let monitor = Monitor::new(&PerfConfig {
        monitoring_enabled: true,
        history_days: 30,
        ..PerfConfig::default()
    });
    monitor.open_history(&dir);
    let snap = monitor
        .range_snapshot(Range::Week, DatabaseView::default())
        .unwrap();
    assert_eq!(snap.endpoints.len(), SERIES / 2);
    assert_eq!(snap.query_patterns.len(), SERIES / 2);
    {
        let h = monitor.history().unwrap();
        let store = h.store.as_ref().unwrap();
        let t = Instant::now();
        let rows = store
            .reader()
            .rows_for_range_coarse(now - 7 * 86_400, now + 60, None)
            .unwrap();
        println!(
            "  reading the 7 days' rows:      {:.1} ms ({} rows)",
            t.elapsed().as_secs_f64() * 1e3,
            rows.len()
        );
    }
    let runs = 5;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut views = Vec::new();
    for range in [Range::Day, Range::Week, Range::Month] {
        let (mut snapshot_ms, mut render_ms) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            let s = monitor
                .range_snapshot(range, DatabaseView::default())
                .unwrap();
            snapshot_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let page = dashboard::render("Bench", &s);
            render_ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(page.contains("(from the history)"));
        }
        views.push((range.label(), median(snapshot_ms), median(render_ms)));
    }
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "history load run: {SERIES} series, {minutes} minutes ({DAYS} days, {KEPT_DAYS} kept)"
    );
    println!("  file after 1 day:               {:.2} MiB", mib(at(1)));
    println!("  file after 7 days:              {:.2} MiB", mib(at(7)));
    println!("  growth per day past 8 days:     {:.3} MiB", mib(per_day));
    println!(
        "  ceiling at  30 days retention:  {:.1} MiB (the file after {DAYS} days)",
        mib(total as f64)
    );
    println!(
        "  ceiling at 365 days retention:  {:.1} MiB",
        mib(at(29) + per_day * (365.0 - 29.0))
    );
    println!(
        "  write per minute (ticker):     {:.2} ms mean",
        write_time.as_secs_f64() * 1e3 / minutes as f64
    );
    for (label, snapshot, render) in views {
        println!(
            "  {label} view: snapshot {snapshot:.1} ms, render {render:.1} ms (median of {runs})"
        );
    }
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The file's size once the write-ahead log is folded in.
fn checkpointed_bytes(dir: &std::path::Path) -> u64 {
    let conn = rusqlite::Connection::open(dir.join("perf-history.sqlite3")).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    History::bytes(dir)
}
