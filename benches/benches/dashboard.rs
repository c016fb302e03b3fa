//! Server time of `/admin/performance`: snapshot + render, with a full ring
//! buffer and 64 series (the registry's capacity).
//!
//! `cargo bench -p starpunk-benches --bench dashboard`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use starpunk::config::PerfConfig;
use starpunk::monitoring::views::DatabaseView;
use starpunk::monitoring::Monitor;
use starpunk::web::dashboard;
use starpunk_perf::{Category, MetricRecord, OpId};

fn full_monitor() -> Monitor {
    let monitor = Monitor::new(&PerfConfig {
        monitoring_enabled: true,
        ..PerfConfig::default()
    });
    let inner = monitor.inner().unwrap();
    let rec = &inner.recorder;
    // Fill the registry to capacity: every route, then SQL patterns.
    for route in starpunk::web::routes::Route::ALL {
        inner.route_op(route.key());
    }
    let mut i = 0;
    while rec.registry().len() < rec.registry().capacity() {
        rec.register(
            Category::Db,
            &format!("SELECT * FROM t{i} WHERE a = ? AND b IN (...)"),
        );
        i += 1;
    }
    let ops: Vec<(OpId, Category)> = rec
        .registry()
        .iter()
        .map(|(id, e)| (id, e.category))
        .collect();
    // 20,000 records: every series gets data; the ring (1,000) is full.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for n in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (op, category) = ops[(x % ops.len() as u64) as usize];
        let category = if category == Category::Memory {
            Category::Db
        } else {
            category
        };
        let parent = ops[(n % 20) as usize].0;
        rec.record(MetricRecord {
            timestamp_ns: rec.now_ns(),
            duration_ns: 10_000 + (x >> 40) % 50_000_000,
            bytes: x % 50_000,
            rows: x % 20,
            request_id: n / 4,
            operation: op,
            parent,
            status: [200, 200, 200, 304, 404, 500][(x % 6) as usize],
            category,
            ..MetricRecord::default()
        });
        // Fifteen minutes of trend: a point closed every 1,250 records.
        if n % 1_250 == 1_249 {
            monitor.close_minute();
        }
    }
    assert_eq!(rec.ring().len(), 1_000);
    assert_eq!(rec.registry().len(), 64);
    // The current minute is shown once it is half a second old.
    std::thread::sleep(Duration::from_millis(600));
    monitor
}

fn bench(c: &mut Criterion) {
    let monitor = full_monitor();
    let snap = monitor.snapshot(DatabaseView::default());
    // Sanity before measuring: the page holds every section and series.
    let html = dashboard::render("Bench", &snap);
    assert!(html.contains("id=\"database\"") && snap.endpoints.len() > 10);
    assert_eq!(
        snap.overview.points.len(),
        16,
        "15 closed minutes and the current one"
    );
    eprintln!("page: {} bytes", html.len());
    if let Ok(p) = std::env::var("DASHBOARD_HTML") {
        std::fs::write(p, &html).unwrap();
    }
    let mut g = c.benchmark_group("dashboard");
    g.bench_function("snapshot (64 series, full ring)", |b| {
        b.iter(|| black_box(monitor.snapshot(DatabaseView::default())))
    });
    g.bench_function("render (maud + SVG)", |b| {
        b.iter(|| black_box(dashboard::render("Bench", &snap)))
    });
    g.bench_function("snapshot + render (server time)", |b| {
        b.iter(|| {
            let s = monitor.snapshot(DatabaseView::default());
            black_box(dashboard::render("Bench", &s))
        })
    });
    g.bench_function("snapshot + JSON", |b| {
        b.iter(|| {
            let s = monitor.snapshot(DatabaseView::default());
            black_box(serde_json_len(&s))
        })
    });
    g.finish();
}

fn serde_json_len(s: &starpunk::monitoring::views::PerfSnapshot) -> usize {
    starpunk::web::dashboard::json_body(s).len()
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
