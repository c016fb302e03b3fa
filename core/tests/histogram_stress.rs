//! Histogram reads stay exact across carries, saturation and resets
//! (issue 22): while writers take counters over their carry point, every
//! read of a bucket and of the count is at least an earlier read's and at
//! most the records started, and exact at the end.
//!
//! Counters are set close to their carry point first (the test hook
//! `LatencyHistogram::near_carry`), so a few thousand records carry. Before,
//! a read loaded the carries and then the counters, so a carry between the
//! two fell out of it (counts went back by 2^32), and a saturated counter
//! wrapped to 0 and was put back on every record (reads saw 0).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use starpunk_perf::{HistogramLayout, LatencyHistogram, CARRY_SLOTS};

/// Late in the layout, so a read's scan reaches its counters last (the
/// widest window for a carry to fall between the carries and the counters).
const V: u64 = 20_000_000_000;

fn histogram() -> LatencyHistogram {
    LatencyHistogram::new(HistogramLayout::new(1_000, 30_000_000_000, 2).unwrap())
}

fn bucket(h: &LatencyHistogram, value: u64) -> u64 {
    let low = h.layout().value_for(h.layout().index_for(value));
    h.buckets().find(|&(v, _)| v == low).map_or(0, |(_, n)| n)
}

/// Two writers (stripes 0 and 1) record `per_writer` values `V` into `h`,
/// whose bucket of `V` holds `base` records (and the others
/// `h.count() - base`); a reader checks every read meanwhile. Returns the
/// reads made.
fn race(h: &LatencyHistogram, base: u64, per_writer: u64) -> u64 {
    let others = h.count() - base;
    let started = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let mut reads = 0;
    std::thread::scope(|s| {
        for stripe in 0..2 {
            let (started, done) = (&started, &done);
            s.spawn(move || {
                for _ in 0..per_writer {
                    started.fetch_add(1, Ordering::SeqCst);
                    h.record_striped(stripe, V);
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        let (mut last_count, mut last_bucket) = (0, 0);
        while done.load(Ordering::SeqCst) < 2 {
            let count = h.count();
            let n = bucket(h, V);
            let most = base + started.load(Ordering::SeqCst);
            assert!(
                count >= last_count,
                "count went back from {last_count} to {count}"
            );
            assert!(
                n >= last_bucket,
                "bucket went back from {last_bucket} to {n}"
            );
            assert!(count <= others + most, "count {count} above {most} started");
            assert!(n <= most, "bucket {n} above {most} started");
            (last_count, last_bucket) = (count, n);
            reads += 1;
            std::thread::yield_now();
        }
    });
    reads
}

#[test]
fn reads_never_go_back_across_carries() {
    let until = Instant::now() + Duration::from_secs(2);
    let (mut trials, mut reads) = (0, 0);
    while Instant::now() < until || trials < 20 {
        let h = histogram();
        // Both stripes 1,000 records short of their carry point.
        h.near_carry(0, V, -1_000);
        let base = h.near_carry(1, V, -1_000);
        reads += race(&h, base, 3_000);
        assert_eq!(h.count(), base + 6_000, "exact at the end");
        assert_eq!(bucket(&h, V), base + 6_000);
        trials += 1;
    }
    eprintln!("{trials} trials, {reads} reads, each across two carries");
}

#[test]
fn saturation_never_goes_back() {
    let until = Instant::now() + Duration::from_secs(2);
    let (mut trials, mut reads) = (0, 0);
    while Instant::now() < until || trials < 20 {
        let h = histogram();
        let carry_at = h.near_carry(0, 1_000_000, 0);
        // Every carry slot taken by other buckets.
        for k in 0..CARRY_SLOTS as u32 {
            let v = 1_000_000 << k;
            h.near_carry(0, v, -1);
            h.record_striped(0, v);
        }
        // Stripe 0 at its carry point, which finds no slot: saturated;
        // stripe 1 short of the point where a saturated counter is pulled
        // back, so the writers go through both.
        h.near_carry(0, V, -1);
        h.record_striped(0, V);
        let base = h.near_carry(1, V, carry_at as i64 / 2 - 1_000);
        assert_eq!(base, 2 * carry_at, "each stripe reads as the carry point");
        reads += race(&h, base, 3_000);
        assert_eq!(bucket(&h, V), base, "saturated: stays put");
        trials += 1;
    }
    eprintln!("{trials} trials, {reads} reads of a saturated bucket");
}

#[test]
fn a_reset_racing_carries_leaves_no_phantom() {
    let until = Instant::now() + Duration::from_secs(1);
    let mut trials = 0u64;
    while Instant::now() < until || trials < 20 {
        let h = histogram();
        h.near_carry(0, V, -200);
        h.near_carry(1, V, -200);
        let go = AtomicBool::new(false);
        std::thread::scope(|s| {
            for stripe in 0..2 {
                let (h, go) = (&h, &go);
                s.spawn(move || {
                    while !go.load(Ordering::Relaxed) {
                        std::thread::yield_now();
                    }
                    for _ in 0..400 {
                        h.record_striped(stripe, V);
                    }
                });
            }
            go.store(true, Ordering::Relaxed);
            // Somewhere among the carries.
            for _ in 0..trials % 64 {
                std::hint::spin_loop();
            }
            h.reset();
        });
        // Only records made after the reset can count.
        let n = h.count();
        assert!(n <= 800, "{n} records after a reset of at most 800");
        assert_eq!(bucket(&h, V), n);
        trials += 1;
    }
    eprintln!("{trials} resets among carries");
}
