//! The recording path against its peers, on one thread and on 1, 2, 4
//! and 8 threads sharing one subject.
//!
//! `cargo bench -p starpunk-benches --bench record`. Each group is one
//! side-by-side table; values come from a xorshift table of roughly
//! log-uniform durations (1 µs to 1 s in ns) so branches are realistic.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use starpunk_benches::run_threads;
use starpunk_perf::{
    Category, Clock, LatencyHistogram, MetricRecord, OpId, Recorder, RecorderConfig, RingBuffer,
    TscClock,
};

const TABLE: usize = 4096;

fn values() -> Vec<u64> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..TABLE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Exponent 10..30 (1 µs to 1 s), mantissa from the low bits.
            let exp = 10 + (x % 21) as u32;
            (1u64 << exp) | ((x >> 8) & ((1 << exp) - 1))
        })
        .collect()
}

fn record(op: OpId, v: u64, now: u64) -> MetricRecord {
    starpunk_benches::http_record(op, v, now)
}

/// Peers and ours, each behind one `Fn(u64)` so 1- and 2-thread runs share code.
struct Subjects {
    recorder: Recorder<TscClock>,
    op: OpId,
    ring: RingBuffer,
    histogram: LatencyHistogram,
    array_queue: crossbeam_queue::ArrayQueue<[u64; 4]>,
    array_queue_56: crossbeam_queue::ArrayQueue<[u64; 7]>,
    prometheus: prometheus::Histogram,
    bucket: metrics_util::storage::AtomicBucket<u64>,
    counter: AtomicU64,
    tsc: TscClock,
    quanta: quanta::Clock,
}

impl Subjects {
    fn new() -> Self {
        let recorder = Recorder::new(RecorderConfig::default(), TscClock::new()).unwrap();
        let op = recorder.register(Category::Http, "GET /notes/{slug}");
        let layout = RecorderConfig::default().layout;
        let prometheus = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(
            "bench_seconds",
            "bench",
        ))
        .unwrap();
        Self {
            recorder,
            op,
            ring: RingBuffer::new(1_000),
            histogram: LatencyHistogram::new(layout),
            array_queue: crossbeam_queue::ArrayQueue::new(1_000),
            array_queue_56: crossbeam_queue::ArrayQueue::new(1_000),
            prometheus,
            bucket: metrics_util::storage::AtomicBucket::new(),
            counter: AtomicU64::new(0),
            tsc: TscClock::new(),
            quanta: quanta::Clock::new(),
        }
    }
}

/// The shared, thread-safe subjects: name and one operation on value `v`.
type Shared = (&'static str, fn(&Subjects, u64));

const SHARED: &[Shared] = &[
    (
        "starpunk HTTP record, sampled: ring + histogram + status + bytes",
        |s, v| s.recorder.record(record(s.op, v, v)),
    ),
    (
        "starpunk HTTP record, not sampled: histogram + status + bytes",
        |s, v| s.recorder.aggregate(record(s.op, v, v)),
    ),
    ("starpunk ring push (one 64 B record)", |s, v| {
        s.ring.push(record(s.op, v, v))
    }),
    (
        "crossbeam ArrayQueue::force_push (56 B: the ring's seven words)",
        |s, v| {
            let r = record(s.op, v, v);
            black_box(s.array_queue_56.force_push([
                r.timestamp_ns,
                r.duration_ns,
                r.bytes,
                r.rows,
                r.memory_delta as u64,
                u64::from(r.operation.0) | u64::from(r.parent.0) << 32,
                u64::from(r.status) << 8 | r.request_id << 24,
            ]));
        },
    ),
    ("starpunk histogram record (bucket + sum + max)", |s, v| {
        s.histogram.record_striped(starpunk_perf::stripe(), v)
    }),
    ("crossbeam ArrayQueue::force_push (32 B)", |s, v| {
        black_box(s.array_queue.force_push([v, v, v, v]));
    }),
    ("prometheus Histogram::observe", |s, v| {
        s.prometheus.observe(v as f64 * 1e-9)
    }),
    ("metrics-util AtomicBucket::push", |s, v| s.bucket.push(v)),
    ("baseline AtomicU64::fetch_add", |s, v| {
        s.counter.fetch_add(v, Ordering::Relaxed);
    }),
];

fn one_thread(c: &mut Criterion) {
    let vals = values();
    let s = Subjects::new();
    // Sanity before measuring: the recorder really records.
    for &v in &vals[..10] {
        s.recorder.record(record(s.op, v, v));
    }
    let series = s.recorder.series(s.op).unwrap();
    assert_eq!(series.count(), 10);
    assert_eq!(series.status_classes().iter().sum::<u64>(), 10);
    assert!(series.bytes() >= 20_000);
    assert_eq!(s.recorder.ring().len(), 10);

    let mut g = c.benchmark_group("record/1 thread");
    for &(name, f) in SHARED {
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & (TABLE - 1);
                f(&s, black_box(vals[i]))
            })
        });
        if name.starts_with("metrics-util") {
            // AtomicBucket grows without bound: empty it between benchmarks.
            s.bucket.clear();
        }
    }
    let mut hdr =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1_000, 30_000_000_000, 2).unwrap();
    let mut i = 0usize;
    g.bench_function("hdrhistogram Histogram::record (&mut)", |b| {
        b.iter(|| {
            i = (i + 1) & (TABLE - 1);
            hdr.saturating_record(black_box(vals[i]));
        })
    });
    let mut sync: hdrhistogram::sync::SyncHistogram<u64> =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1_000, 30_000_000_000, 2)
            .unwrap()
            .into();
    let mut rec = sync.recorder();
    let mut i = 0usize;
    g.bench_function("hdrhistogram sync::Recorder::record", |b| {
        b.iter(|| {
            i = (i + 1) & (TABLE - 1);
            rec.saturating_record(black_box(vals[i]));
        })
    });
    drop(rec);
    sync.refresh_timeout(Duration::from_millis(10));
    g.bench_function("baseline Instant::now + elapsed", |b| {
        b.iter(|| {
            let t = Instant::now();
            black_box(t.elapsed())
        })
    });
    g.bench_function("TscClock pair (chosen clock)", |b| {
        b.iter(|| {
            let t = s.tsc.now_ns();
            black_box(s.tsc.now_ns() - t)
        })
    });
    g.bench_function("quanta raw pair + delta", |b| {
        b.iter(|| {
            let t = s.quanta.raw();
            black_box(s.quanta.delta_as_nanos(t, s.quanta.raw()))
        })
    });
    g.finish();
}

/// Thread counts of the contention groups (`RECORD_THREADS=1,2` to narrow).
fn thread_counts() -> Vec<usize> {
    std::env::var("RECORD_THREADS")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8])
}

fn threads(c: &mut Criterion) {
    let vals = values();
    // Reported time = wall time / iterations, where each of the n threads
    // performs every iteration on the shared subject, all released at once
    // (`run_threads`): the cost one caller sees per operation under
    // contention. Measured the same way for every subject and for one
    // thread, so a row's 2-thread figure over its 1-thread figure is the
    // slowdown contention causes (2.0 = no better than running the
    // threads one after the other). Past 2 threads this 2-core machine is
    // oversubscribed: n threads need at least n/2 times one thread's wall
    // time, and the scheduler's switches add to it.
    for n in thread_counts() {
        let s = Subjects::new();
        let mut g = c.benchmark_group(format!("record/{n} threads"));
        for &(name, f) in SHARED {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let vals = &vals;
                    let s = &s;
                    run_threads(n, iters, &move |v| f(s, vals[v as usize & (TABLE - 1)]))
                })
            });
            s.bucket.clear();
        }
        let mut sync: hdrhistogram::sync::SyncHistogram<u64> =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1_000, 30_000_000_000, 2)
                .unwrap()
                .into();
        g.bench_function("hdrhistogram sync::Recorder::record", |b| {
            b.iter_custom(|iters| {
                let recs: Vec<_> = (0..n)
                    .map(|_| std::sync::Mutex::new(sync.recorder()))
                    .collect();
                let vals = &vals;
                let mine = &recs;
                // Each thread takes its own recorder once (uncontended lock),
                // outside the loop.
                let next = AtomicU64::new(0);
                let elapsed = run_threads(n, 1, &|_| {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let mut rec = mine[i].lock().unwrap();
                    let mut j = i * 977;
                    for _ in 0..iters {
                        j = (j + 1) & (TABLE - 1);
                        rec.saturating_record(black_box(vals[j]));
                    }
                });
                drop(recs);
                sync.refresh_timeout(Duration::from_millis(1));
                elapsed
            })
        });
        g.finish();
        // Sanity after measuring: every record of every thread was counted.
        let series = s.recorder.series(s.op).unwrap();
        assert_eq!(series.count(), series.status_classes().iter().sum::<u64>());
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = one_thread, threads
}
criterion_main!(benches);
