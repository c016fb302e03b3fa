//! Helpers shared by the benchmarks (`benches/benches/*.rs`).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Wall time for `threads` threads each calling `f` `iters` times (with
/// values `t * 1_000_003 + 1, + 2, ...` for thread `t`), all released at
/// once by a spinning barrier: the threads are started before the clock
/// starts, so their start-up is not measured and every thread runs
/// against the others from the first call. Used alike for ours and the
/// peers, and for one thread, so the figures of a run compare as ratios.
pub fn run_threads(threads: usize, iters: u64, f: &(dyn Fn(u64) + Sync)) -> Duration {
    let ready = AtomicUsize::new(0);
    let go = AtomicBool::new(false);
    let mut started = None;
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ready, go) = (&ready, &go);
            s.spawn(move || {
                ready.fetch_add(1, Ordering::AcqRel);
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                let mut v = t as u64 * 1_000_003;
                for _ in 0..iters {
                    v = v.wrapping_add(1);
                    f(black_box(v));
                }
            });
        }
        while ready.load(Ordering::Acquire) < threads {
            std::thread::yield_now();
        }
        started = Some(Instant::now());
        go.store(true, Ordering::Release);
    });
    started.map_or(Duration::ZERO, |s| s.elapsed())
}

/// The record the server makes for a request: route, duration, status and
/// response bytes (statuses cycle through a realistic mix, chosen by the
/// duration's low bits).
pub fn http_record(
    op: starpunk_perf::OpId,
    duration_ns: u64,
    timestamp_ns: u64,
) -> starpunk_perf::MetricRecord {
    const STATUSES: [u16; 8] = [200, 200, 200, 200, 304, 404, 200, 500];
    starpunk_perf::MetricRecord {
        timestamp_ns,
        duration_ns,
        bytes: 2_000 + (duration_ns & 0x3FFF),
        status: STATUSES[(duration_ns & 7) as usize],
        request_id: duration_ns,
        operation: op,
        category: starpunk_perf::Category::Http,
        ..starpunk_perf::MetricRecord::default()
    }
}
