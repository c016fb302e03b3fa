//! `RingBuffer::stats` stays fresh under load (issue 22): while writers on
//! several stripes push without pause (installing ticket blocks all the
//! time), every `stats().written` lies between the pushes finished before
//! the call, less at most two blocks per stripe, and the pushes started
//! after it. Before, a read whose every try overlapped a block installation
//! returned its last figure, which lagged by up to 136,111 records.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use starpunk_perf::{MetricRecord, RingBuffer, STRIPES};

#[test]
fn written_lags_by_at_most_two_blocks_per_stripe() {
    let ring = RingBuffer::new(1_000);
    let lag_bound = (2 * STRIPES * ring.block()) as u64;
    let started = AtomicU64::new(0);
    let finished = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut worst = 0u64;
    let mut reads = 0u64;
    let mut last = 0u64;
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    started.fetch_add(1, Ordering::SeqCst);
                    ring.push(MetricRecord {
                        duration_ns: 1,
                        ..MetricRecord::default()
                    });
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // The writers stop however the reads end (a failed assertion too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        // Writers well under way, then two seconds of reads.
        while finished.load(Ordering::Relaxed) < 100_000 {
            std::thread::yield_now();
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < until {
            reads += 1;
            let before = finished.load(Ordering::SeqCst);
            let written = ring.stats().written;
            let after = started.load(Ordering::SeqCst);
            // A counter: never below an earlier read (its fallback figure,
            // two blocks per stripe low, is raised to the largest reported).
            assert!(
                written >= last,
                "written went back from {last} to {written}"
            );
            last = written;
            assert!(
                written <= after,
                "written {written} ahead of {after} pushes started"
            );
            assert!(
                written + lag_bound >= before,
                "written {written} lags {before} finished pushes by more than {lag_bound}"
            );
            worst = worst.max(before.saturating_sub(written));
        }
    });
    eprintln!(
        "{reads} reads, worst lag {worst} of at most {lag_bound} (block {})",
        ring.block()
    );
}
