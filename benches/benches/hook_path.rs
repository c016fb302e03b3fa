//! The whole hook path on the real shell code: the request wrapper, three
//! SQL statements and a function guard, with monitoring disabled, enabled at
//! sample rate 1.0, and at 0.1. The SQL and handler bodies are empty, so the
//! figure is the monitor's own cost per request.
//!
//! `cargo bench -p starpunk-benches --bench hook_path`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use starpunk::config::PerfConfig;
use starpunk::monitoring::Monitor;

fn request(monitor: &Monitor) -> rouille::Response {
    starpunk::tune::hook_path(monitor, 3)
}

fn bench(c: &mut Criterion) {
    let configs = [
        ("monitoring disabled", PerfConfig::default()),
        (
            "enabled, sample rate 1.0",
            PerfConfig {
                monitoring_enabled: true,
                ..PerfConfig::default()
            },
        ),
        (
            "enabled, sample rate 0.1",
            PerfConfig {
                monitoring_enabled: true,
                sample_rate: 0.1,
                ..PerfConfig::default()
            },
        ),
        (
            "enabled, 1.0, memory tracking",
            PerfConfig {
                monitoring_enabled: true,
                memory_tracking: true,
                ..PerfConfig::default()
            },
        ),
    ];
    let mut g = c.benchmark_group("hook path per request (wrapper + 3 SQL + 1 function)");
    for (name, cfg) in configs {
        let monitor = Monitor::new(&cfg);
        // Sanity: enabled monitors really record.
        black_box(request(&monitor));
        if let Some(inner) = monitor.inner() {
            assert!(inner.records().len() >= usize::from(cfg.sample_rate == 1.0) * 5);
        }
        g.bench_function(name, |b| b.iter(|| black_box(request(&monitor))));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
