//! The whole hook path on the real shell code, as the HTTP front runs it:
//! `Monitor::measure_body` around the request wrapper, three SQL statements
//! and a function timing, with monitoring disabled, enabled at sample rate
//! 1.0, and at 0.1. The SQL and handler bodies are empty, so the figure is
//! the monitor's own cost per request. Beside it, in the same group, the
//! floor: the five records (one HTTP, three SQL, one function) and five
//! clock pairs the path cannot do without.
//!
//! `cargo bench -p starpunk-benches --bench hook_path`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use starpunk::config::PerfConfig;
use starpunk::monitoring::Monitor;
use starpunk_perf::{Category, MetricRecord, OpId, Recorder, RecorderConfig, TscClock};

fn request(monitor: &Monitor) -> starpunk::http::Materialised {
    starpunk::tune::hook_path(monitor, 3)
}

/// Five clock pairs and five records into a recorder at defaults: what the
/// hook path at rate 1.0 must do at the least.
struct Floor {
    recorder: Recorder<TscClock>,
    ops: [(Category, OpId); 5],
}

impl Floor {
    fn new() -> Self {
        let recorder = Recorder::new(RecorderConfig::default(), TscClock::new()).unwrap();
        let ops = [
            (Category::Db, "SELECT a"),
            (Category::Db, "SELECT b"),
            (Category::Db, "SELECT c"),
            (Category::Function, "search"),
            (Category::Http, "GET /notes/{slug}"),
        ]
        .map(|(c, name)| (c, recorder.register(c, name)));
        Self { recorder, ops }
    }

    #[inline]
    fn run(&self, request_id: u64) {
        for (category, op) in self.ops {
            let start = self.recorder.now_ns();
            let end = self.recorder.now_ns();
            self.recorder.record(MetricRecord {
                timestamp_ns: start,
                duration_ns: end.saturating_sub(start),
                status: if category == Category::Http { 200 } else { 0 },
                request_id,
                operation: op,
                category,
                ..MetricRecord::default()
            });
        }
    }
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
    let floor = Floor::new();
    floor.run(0);
    assert_eq!(floor.recorder.ring().len(), 5);
    let mut id = 0u64;
    g.bench_function("floor: 5 clock pairs + 5 records", |b| {
        b.iter(|| {
            id += 1;
            floor.run(black_box(id))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
