//! The ring designs tried for issue 12 (contention), side by side with
//! `crossbeam_queue::ArrayQueue::force_push` on the same 56-byte record, on
//! 1, 2, 4 and 8 threads. Each design is the shipped protocol (ticket from
//! one `fetch_add`, seqlock slot of atomics) with one thing changed:
//!
//! - `64 B slots, ticket % cap`: the protocol before issue 12;
//! - `128 B slots`: each slot on its own 128-byte pair of lines, so the
//!   adjacent-line prefetcher cannot pair two slots written at once;
//! - `64 B slots, spread`: 64-byte slots, but consecutive tickets go to
//!   slots `cap / 8` apart (`spread` below), so slots written at the same
//!   time are never neighbours;
//! - `..., plain store`: the claim is a plain store of the odd `seq` when
//!   the previous lap is found (a load, then a store), instead of a
//!   compare-exchange. **Unsound** (two writers a lap apart can both
//!   claim): here only to measure what the compare-exchange costs.
//!
//! `cargo bench -p starpunk-benches --bench ring_designs`

use std::hint::black_box;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

const WORDS: usize = 7;
const CAP: usize = 1_000;

/// A seqlock slot: `seq` and seven words.
trait Slot: Sync + Send {
    fn new() -> Self;
    fn seq(&self) -> &AtomicU64;
    fn words(&self) -> &[AtomicU64; WORDS];
}

#[repr(C, align(64))]
struct Slot64 {
    seq: AtomicU64,
    words: [AtomicU64; WORDS],
}

#[repr(C, align(128))]
struct Slot128 {
    seq: AtomicU64,
    words: [AtomicU64; WORDS],
}

macro_rules! slot_impl {
    ($t:ty) => {
        impl Slot for $t {
            fn new() -> Self {
                Self {
                    seq: AtomicU64::new(0),
                    words: std::array::from_fn(|_| AtomicU64::new(0)),
                }
            }
            #[inline]
            fn seq(&self) -> &AtomicU64 {
                &self.seq
            }
            #[inline]
            fn words(&self) -> &[AtomicU64; WORDS] {
                &self.words
            }
        }
    };
}
slot_impl!(Slot64);
slot_impl!(Slot128);

/// The ring with one design choice switched by `SPREAD` and `PLAIN`.
struct Ring<S: Slot, const SPREAD: bool, const PLAIN: bool> {
    head: CachePadded<AtomicU64>,
    dropped: CachePadded<AtomicU64>,
    slots: Box<[S]>,
}

/// Groups of the spread mapping: tickets within 8 of each other land in
/// different eighths of the ring.
const GROUPS: u64 = 8;

impl<S: Slot, const SPREAD: bool, const PLAIN: bool> Ring<S, SPREAD, PLAIN> {
    fn new(cap: usize) -> Self {
        Self {
            head: CachePadded::new(AtomicU64::new(0)),
            dropped: CachePadded::new(AtomicU64::new(0)),
            slots: (0..cap).map(|_| S::new()).collect(),
        }
    }

    #[inline]
    fn index(&self, ticket: u64) -> usize {
        let cap = self.slots.len() as u64;
        let i = ticket % cap;
        if !SPREAD {
            return i as usize;
        }
        let per = cap / GROUPS;
        if i >= per * GROUPS {
            return i as usize;
        }
        ((i % GROUPS) * per + i / GROUPS) as usize
    }

    #[inline]
    fn push(&self, words: [u64; WORDS]) {
        let ticket = self.head.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = self.slots.get(self.index(ticket)) else {
            return;
        };
        let complete = (ticket + 1) * 2;
        let expected = complete.saturating_sub(2 * self.slots.len() as u64);
        let claimed = if PLAIN {
            slot.seq().load(Ordering::Relaxed) == expected && {
                slot.seq().store(complete | 1, Ordering::Relaxed);
                true
            }
        } else {
            slot.seq()
                .compare_exchange(expected, complete | 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        };
        if !claimed {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        fence(Ordering::Release);
        for (w, v) in slot.words().iter().zip(words) {
            w.store(v, Ordering::Relaxed);
        }
        slot.seq().store(complete, Ordering::Release);
    }
}

type Pusher = Box<dyn Fn(u64) + Sync>;

fn designs() -> Vec<(&'static str, Pusher)> {
    fn words(v: u64) -> [u64; WORDS] {
        [v, v ^ 1, v ^ 2, v ^ 3, v ^ 4, v ^ 5, v ^ 6]
    }
    let r0 = Ring::<Slot64, false, false>::new(CAP);
    let r1 = Ring::<Slot128, false, false>::new(CAP);
    let r2 = Ring::<Slot64, true, false>::new(CAP);
    let r3 = Ring::<Slot64, false, true>::new(CAP);
    let r4 = Ring::<Slot64, true, true>::new(CAP);
    let q = ArrayQueue::<[u64; WORDS]>::new(CAP);
    let q4 = ArrayQueue::<[u64; 4]>::new(CAP);
    let counter = CachePadded::new(AtomicU64::new(0));
    vec![
        (
            "baseline AtomicU64::fetch_add (the shared index alone)",
            Box::new(move |v| {
                counter.fetch_add(v, Ordering::Relaxed);
            }),
        ),
        (
            "crossbeam ArrayQueue::force_push (32 B)",
            Box::new(move |v| {
                black_box(q4.force_push([v, v ^ 1, v ^ 2, v ^ 3]));
            }),
        ),
        (
            "crossbeam ArrayQueue::force_push (56 B)",
            Box::new(move |v| {
                black_box(q.force_push(words(v)));
            }),
        ),
        (
            "64 B slots, ticket % cap (before)",
            Box::new(move |v| r0.push(words(v))),
        ),
        ("128 B slots", Box::new(move |v| r1.push(words(v)))),
        (
            "64 B slots, spread (chosen)",
            Box::new(move |v| r2.push(words(v))),
        ),
        (
            "64 B slots, plain store (unsound)",
            Box::new(move |v| r3.push(words(v))),
        ),
        (
            "64 B slots, spread + plain store (unsound)",
            Box::new(move |v| r4.push(words(v))),
        ),
    ]
}

/// Wall time per iteration with `threads` threads each doing `iters`
/// operations, all released together by a spinning barrier (the threads
/// are started outside the timed part).
pub fn run_threads(threads: usize, iters: u64, f: &(dyn Fn(u64) + Sync)) -> Duration {
    let ready = AtomicU64::new(0);
    let go = AtomicU64::new(0);
    let start = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ready, go) = (&ready, &go);
            s.spawn(move || {
                ready.fetch_add(1, Ordering::AcqRel);
                while go.load(Ordering::Acquire) == 0 {
                    std::hint::spin_loop();
                }
                let mut v = t as u64 * 1_000_003;
                for _ in 0..iters {
                    v = v.wrapping_add(1);
                    f(black_box(v));
                }
            });
        }
        while ready.load(Ordering::Acquire) < threads as u64 {
            std::thread::yield_now();
        }
        *start.lock().unwrap() = Some(Instant::now());
        go.store(1, Ordering::Release);
    });
    let started = start.lock().unwrap().take().unwrap();
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    // Sanity: every design keeps what it was given on one thread.
    let r = Ring::<Slot64, true, false>::new(10);
    for v in 0..25 {
        r.push([v; WORDS]);
    }
    let mut kept: Vec<u64> = r
        .slots
        .iter()
        .map(|s| s.words[0].load(Ordering::Relaxed))
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, (15..25).collect::<Vec<_>>());
    assert_eq!(r.dropped.load(Ordering::Relaxed), 0);

    let threads: Vec<usize> = std::env::var("RING_THREADS")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8]);
    for &n in &threads {
        let mut g = c.benchmark_group(format!("ring designs/{n} threads"));
        for (name, f) in designs() {
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter_custom(|iters| run_threads(n, iters, &*f))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
