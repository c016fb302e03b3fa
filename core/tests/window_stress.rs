//! Rotations and resets racing reads of the recent window, on real threads.
//! Run it optimised too (`.ci/run` does): the races are tighter there.
//!
//! Each race starts a rotation (or a reset) and a read at the same moment,
//! released together by a spinning barrier, while writers keep recording.
//! Every recorded value is 7, so a read is possible only when its count and
//! its sum / 7 are at most what was written. (They need not match each
//! other exactly: writers keep recording while a reader or a rotation scans
//! the buckets, then loads the sum.) A checkpoint read while it is being
//! rewritten, or paired with a source of the other side of a reset, gives a
//! negative difference, which wraps to billions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use starpunk_perf::{HistogramLayout, LatencyHistogram, RecentWindow};

const VALUE: u64 = 7;
const WRITERS: u64 = 1;
/// Length of one window interval, in the test's clock units.
const INTERVAL: u64 = 100;

fn races() -> u64 {
    if cfg!(debug_assertions) {
        2_000
    } else {
        100_000
    }
}

struct Rig {
    h: LatencyHistogram,
    w: RecentWindow,
    written: AtomicU64,
    stop: AtomicBool,
    /// Race `n` starts when both sides have raised it to `2n`.
    gate: AtomicU64,
}

impl Rig {
    /// Waits until the other side reached race `n` too.
    fn start(&self, n: u64) {
        self.gate.fetch_add(1, Ordering::AcqRel);
        // Yields, not a busy spin: three threads share two cores here,
        // and a spinner waiting for a descheduled partner wasted its
        // whole time slice.
        while self.gate.load(Ordering::Acquire) < 2 * n {
            std::thread::yield_now();
        }
    }
}

/// Runs `races()` races of `churn(rig, n, now)` against a read at `now`
/// minus one interval (a dashboard read that began before the ticker's
/// rotation: its oldest checkpoint is the very slot the rotation rewrites);
/// returns the impossible reads.
fn race(churn: impl Fn(&Rig, u64, u64) + Sync) -> Vec<String> {
    let rig = Rig {
        h: LatencyHistogram::new(HistogramLayout::new(1, 1_000_000, 2).unwrap()),
        w: RecentWindow::new(HistogramLayout::new(1, 1_000_000, 1).unwrap(), INTERVAL, 4),
        written: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        gate: AtomicU64::new(0),
    };
    let mut impossible = Vec::new();
    std::thread::scope(|s| {
        for _ in 0..WRITERS {
            s.spawn(|| {
                while !rig.stop.load(Ordering::Relaxed) {
                    rig.h.record(VALUE);
                    rig.written.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        s.spawn(|| {
            for n in 1..=races() {
                rig.start(n);
                churn(&rig, n, n * INTERVAL);
            }
        });
        for n in 1..=races() {
            rig.start(n);
            let t = rig.w.totals((n - 1) * INTERVAL, &rig.h);
            // Loaded after the read, plus the records in flight.
            let written = rig.written.load(Ordering::Relaxed) + WRITERS;
            if t.count > written || t.sum / VALUE > written {
                impossible.push(format!("race {n}: {t:?} with {written} written"));
            }
        }
        rig.stop.store(true, Ordering::Relaxed);
    });
    impossible
}

fn assert_none(impossible: &[String]) {
    assert!(
        impossible.is_empty(),
        "{} impossible reads in {} races, first {:?}",
        impossible.len(),
        races(),
        impossible.first()
    );
}

#[test]
fn rotations_racing_reads_never_give_impossible_counts() {
    assert_none(&race(|rig, _, now| rig.w.rotate(now, &rig.h)));
}

#[test]
fn resets_racing_reads_and_records_never_give_impossible_counts() {
    assert_none(&race(|rig, n, now| {
        rig.w.rotate(now, &rig.h);
        if n % 8 == 0 {
            rig.w.reset(&rig.h);
        }
    }));
}
