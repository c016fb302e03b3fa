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
//! - `ticket by CAS + backoff`: the ticket from a compare-exchange of
//!   `head` that backs off (16, 32, 64, 128 pauses) after losing to
//!   another writer, at most 4 times, then `fetch_add` (shipped before
//!   blocks, and still `RingBuffer::ticket` for rings under 64 slots);
//!   `short backoff`: the same with 1, 2, 4, 8; `long`: 64 to 512;
//! - `..., plain store`: the claim is a plain store of the odd `seq` when
//!   the previous lap is found (a load, then a store), instead of a
//!   compare-exchange. **Unsound** (two writers a lap apart can both
//!   claim): here only to measure what the compare-exchange costs;
//! - `starpunk_perf::RingBuffer` as shipped: tickets in blocks of 16 per
//!   thread stripe at 1,000 slots (`RingBuffer::default_block`).
//!
//! `RING_FULL=1` follows every push with the rest of the HTTP record
//! (histogram, status, bytes) on one shared recorder, and adds
//! `Recorder::record` itself and a control that shares nothing (a
//! recorder per thread). `RING_ROUNDS`, `RING_THREADS` and `RING_ONLY`:
//! see `interleaved_rounds`.
//!
//! `cargo bench -p starpunk-benches --bench ring_designs`

use std::hint::black_box;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use starpunk_benches::run_threads;

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
struct Ring<S: Slot, const SPREAD: bool, const PLAIN: bool, const PAUSES: u32 = 0> {
    head: CachePadded<AtomicU64>,
    dropped: CachePadded<AtomicU64>,
    slots: Box<[S]>,
}

/// Groups of the spread mapping: tickets within 8 of each other land in
/// different eighths of the ring.
const GROUPS: u64 = 8;

impl<S: Slot, const SPREAD: bool, const PLAIN: bool, const PAUSES: u32>
    Ring<S, SPREAD, PLAIN, PAUSES>
{
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

    /// A ticket: one `fetch_add` (`PAUSES == 0`), or a compare-exchange
    /// that, when another writer got in first, pauses `PAUSES << try`
    /// times (the shift at most 3) and tries again, at most 4 times before
    /// taking the ticket with `fetch_add` (as `RingBuffer::ticket`).
    #[inline]
    fn ticket(&self) -> u64 {
        if PAUSES == 0 {
            return self.head.fetch_add(1, Ordering::Relaxed);
        }
        let mut seen = self.head.load(Ordering::Relaxed);
        for step in 0..4u32 {
            match self
                .head
                .compare_exchange(seen, seen + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(t) => return t,
                Err(now) => seen = now,
            }
            for _ in 0..PAUSES << step.min(3) {
                std::hint::spin_loop();
            }
        }
        self.head.fetch_add(1, Ordering::Relaxed)
    }

    #[inline]
    fn push(&self, words: [u64; WORDS]) {
        let ticket = self.ticket();
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
    let r5 = Ring::<Slot64, false, false, 16>::new(CAP);
    let r6 = Ring::<Slot128, false, false, 16>::new(CAP);
    let r7 = Ring::<Slot64, false, false, 1>::new(CAP);
    let shipped = starpunk_perf::RingBuffer::new(CAP);
    let q = ArrayQueue::<[u64; WORDS]>::new(CAP);
    let q4 = ArrayQueue::<[u64; 4]>::new(CAP);
    let counter = CachePadded::new(AtomicU64::new(0));
    let r8 = Ring::<Slot64, false, false, 4>::new(CAP);
    let r9 = Ring::<Slot64, false, false, 64>::new(CAP);
    let list: Vec<(&'static str, Pusher)> = vec![
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
        ("64 B slots, spread", Box::new(move |v| r2.push(words(v)))),
        (
            "64 B slots, plain store (unsound)",
            Box::new(move |v| r3.push(words(v))),
        ),
        (
            "64 B slots, spread + plain store (unsound)",
            Box::new(move |v| r4.push(words(v))),
        ),
        (
            "64 B slots, ticket by CAS + backoff (16, 32, 64, 128 pauses; before blocks)",
            Box::new(move |v| r5.push(words(v))),
        ),
        (
            "64 B slots, ticket by CAS + short backoff (1, 2, 4, 8 pauses)",
            Box::new(move |v| r7.push(words(v))),
        ),
        (
            "starpunk_perf::RingBuffer (as shipped: blocks of 64 tickets per stripe)",
            Box::new(move |v| {
                shipped.push(starpunk_perf::MetricRecord {
                    timestamp_ns: v,
                    duration_ns: v ^ 1,
                    bytes: v ^ 2,
                    rows: v ^ 3,
                    ..Default::default()
                })
            }),
        ),
        (
            "128 B slots, ticket by CAS + backoff",
            Box::new(move |v| r6.push(words(v))),
        ),
        (
            "64 B slots, ticket by CAS + backoff (4, 8, 16, 32 pauses)",
            Box::new(move |v| r8.push(words(v))),
        ),
        (
            "64 B slots, ticket by CAS + backoff (64, 128, 256, 512 pauses)",
            Box::new(move |v| r9.push(words(v))),
        ),
    ];
    if std::env::var_os("RING_FULL").is_none() {
        return list;
    }
    // `RING_FULL=1`: each push followed by the rest of the HTTP record
    // (histogram, status, bytes) on one shared recorder, as
    // `Recorder::record` does after its own ring push.
    let recorder = std::sync::Arc::new(
        starpunk_perf::Recorder::new(
            starpunk_perf::RecorderConfig::default(),
            starpunk_perf::TscClock::new(),
        )
        .expect("default config"),
    );
    let op = recorder.register(starpunk_perf::Category::Http, "GET /notes/{slug}");
    let mut full: Vec<(&'static str, Pusher)> = list
        .into_iter()
        .map(|(name, push)| {
            let recorder = std::sync::Arc::clone(&recorder);
            let f: Pusher = Box::new(move |v| {
                push(v);
                recorder.aggregate(http_record(op, v));
            });
            (name, f)
        })
        .collect();
    let recorder = std::sync::Arc::clone(&recorder);
    full.push((
        "Recorder::record (as shipped: ring + aggregate)",
        Box::new(move |v| recorder.record(http_record(op, v))),
    ));
    // The control: the same record into a recorder of the thread's own
    // (one per stripe), so threads share nothing: what two threads cost
    // on this host with no contention at all.
    let own: Vec<(
        starpunk_perf::Recorder<starpunk_perf::TscClock>,
        starpunk_perf::OpId,
    )> = (0..starpunk_perf::STRIPES)
        .map(|_| {
            let r = starpunk_perf::Recorder::new(
                starpunk_perf::RecorderConfig::default(),
                starpunk_perf::TscClock::new(),
            )
            .expect("default config");
            let op = r.register(starpunk_perf::Category::Http, "GET /notes/{slug}");
            (r, op)
        })
        .collect();
    full.push((
        "control: Recorder::record, a recorder per thread (nothing shared)",
        Box::new(move |v| {
            let (r, op) = &own[starpunk_perf::stripe() % starpunk_perf::STRIPES];
            r.record(http_record(*op, v))
        }),
    ));
    full
}

/// The server's record for a request of a roughly log-uniform duration
/// (1 µs to 1 s), as in the `record` bench.
fn http_record(op: starpunk_perf::OpId, v: u64) -> starpunk_perf::MetricRecord {
    let exp = 10 + (v % 21) as u32;
    let d = (1u64 << exp) | (v.wrapping_mul(0x9E37_79B9_7F4A_7C15) & ((1 << exp) - 1));
    starpunk_benches::http_record(op, d, v)
}

/// `RING_ROUNDS=n`: besides criterion, `n` rounds in which every design
/// runs once in turn (200,000 operations per thread), so a change in the
/// host (another tenant, the hypervisor moving a vCPU) hits every design
/// alike; prints each design's median and quartiles over the rounds, and
/// with one thread among `RING_THREADS`, the median of each round's ratio
/// of n threads to one. `RING_ONLY=a,b` keeps the designs whose names
/// contain `a` or `b`.
fn interleaved_rounds(threads: &[usize]) {
    let Some(rounds) = std::env::var("RING_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
    else {
        return;
    };
    const OPS: u64 = 200_000;
    // Thread counts interleaved too, so the ratio of n threads to one
    // compares figures taken minutes, not a whole run, apart.
    // `RING_ONLY=a,b`: only the designs whose names contain `a` or `b`.
    let only: Vec<String> = std::env::var("RING_ONLY")
        .map(|o| o.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let designs: Vec<(&str, Pusher)> = designs()
        .into_iter()
        .filter(|(name, _)| only.is_empty() || only.iter().any(|o| name.contains(o.as_str())))
        .collect();
    let mut times = vec![vec![Vec::new(); designs.len()]; threads.len()];
    for _ in 0..rounds {
        for (k, &n) in threads.iter().enumerate() {
            for (i, (_, f)) in designs.iter().enumerate() {
                let t = run_threads(n, OPS, &**f);
                times[k][i].push(t.as_nanos() as f64 / OPS as f64);
            }
        }
    }
    let quartiles = |t: &[f64]| {
        let mut t = t.to_vec();
        t.sort_by(f64::total_cmp);
        let q = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize];
        (q(0.5), q(0.25), q(0.75))
    };
    // The host's speed changes over seconds (section 7): the n-thread
    // figure of a round is compared with the one-thread figure of the same
    // round, and the ratios' median is reported.
    let one = threads.iter().position(|&n| n == 1);
    for (k, &n) in threads.iter().enumerate() {
        for (i, (name, _)) in designs.iter().enumerate() {
            let (m, lo, hi) = quartiles(&times[k][i]);
            let ratio = one.map_or(String::new(), |o| {
                let ratios: Vec<f64> = times[k][i]
                    .iter()
                    .zip(&times[o][i])
                    .map(|(t, t1)| t / t1)
                    .collect();
                let (r, rlo, rhi) = quartiles(&ratios);
                format!("; {r:.2}x one thread in the same round (quartiles {rlo:.2} to {rhi:.2})")
            });
            println!(
                "rounds/{n} threads/{name}: median {m:.1} ns (quartiles {lo:.1} to {hi:.1}) over {rounds} rounds{ratio}"
            );
        }
    }
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
    interleaved_rounds(&threads);
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
