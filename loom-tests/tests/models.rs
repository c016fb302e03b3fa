//! loom models of the core's concurrent pieces.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p starpunk-loom-tests --release`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use starpunk_perf::{
    Category, FakeClock, HistogramLayout, LatencyHistogram, MetricRecord, OpId, OperationRegistry,
    RecentWindow, Recorder, RecorderConfig, RingBuffer,
};

/// A record whose every field is a function of `id`, so a torn mix shows.
fn record(id: u64) -> MetricRecord {
    MetricRecord {
        timestamp_ns: id,
        duration_ns: id * 3 + 1,
        bytes: id * 5 + 2,
        rows: id * 7 + 3,
        memory_delta: -(id as i64) - 4,
        request_id: id + 11,
        operation: OpId(id as u32 + 13),
        parent: OpId(id as u32 + 17),
        status: id as u16 + 200,
        category: Category::Http,
        forced: id % 2 == 1,
    }
}

fn check_snapshot(snap: &[(u64, MetricRecord)], written: &[u64]) {
    let mut last_ticket = None;
    for &(ticket, r) in snap {
        let id = r.timestamp_ns;
        assert_eq!(r, record(id), "torn record for id {id}");
        assert!(written.contains(&id), "record {id} was never written");
        if let Some(t) = last_ticket {
            assert!(ticket > t, "tickets out of order");
        }
        last_ticket = Some(ticket);
    }
    // Program order of one writer is kept: writer A pushes 1 then 2.
    let pos = |id| snap.iter().position(|(_, r)| r.timestamp_ns == id);
    if let (Some(a), Some(b)) = (pos(1), pos(2)) {
        assert!(a < b, "writer A's records out of order");
    }
}

#[test]
fn two_writers_one_reader_across_wrap_around() {
    loom::model(|| {
        let ring = Arc::new(RingBuffer::new(2));
        let a = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.push(record(1));
                ring.push(record(2));
            })
        };
        let b = {
            let ring = ring.clone();
            thread::spawn(move || ring.push(record(3)))
        };
        // The reader runs on a spawned thread: loom explores a spawned
        // thread's interleavings with its siblings far more thoroughly than
        // the model's main thread (seen: the main thread never observed a
        // completed write).
        let reader = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut snap = Vec::new();
                ring.snapshot_with_tickets(&mut snap);
                check_snapshot(&snap, &[1, 2, 3]);
                assert!(snap.len() <= 2);
            })
        };
        a.join().unwrap();
        b.join().unwrap();
        reader.join().unwrap();
        let mut snap = Vec::new();

        // After the writers join, the ring holds the newest records of
        // the tickets that landed, all complete.
        ring.snapshot_with_tickets(&mut snap);
        check_snapshot(&snap, &[1, 2, 3]);
        let stats = ring.stats();
        assert_eq!(stats.written, 3);
        // Slot 1 has one writer; slot 0 keeps ticket 0 or ticket 2 (a writer
        // finding the other in the slot gives up and counts it).
        assert_eq!(snap.len(), 2);
        assert!(stats.dropped <= 1);
        // The stats say what the snapshot shows: one record pushed out,
        // unless one was dropped (then none was).
        assert_eq!(stats.overwritten, 1 - stats.dropped);
        assert_eq!(
            stats.written - stats.overwritten - stats.dropped,
            snap.len() as u64
        );
        if stats.dropped == 0 {
            assert_eq!(snap.last().unwrap().0, 2);
        }
    });
}

#[test]
fn racing_writers_on_one_slot_leave_it_consistent() {
    loom::model(|| {
        // Capacity 1: every push races for the same slot.
        let ring = Arc::new(RingBuffer::new(1));
        let hs: Vec<_> = [10u64, 20]
            .into_iter()
            .map(|id| {
                let ring = ring.clone();
                thread::spawn(move || ring.push(record(id)))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let mut snap = Vec::new();
        ring.snapshot_with_tickets(&mut snap);
        let stats = ring.stats();
        assert_eq!(stats.written, 2);
        // Exactly one record survives, complete; a loser is counted as dropped.
        assert_eq!(snap.len(), 1);
        assert!(stats.dropped <= 1);
        check_snapshot(&snap, &[10, 20]);
    });
}

/// Writer A pushes record 10 while writer B pushes 1 then 2, on `ring`
/// (room for all three); after both join: every record landed once, whole,
/// nothing dropped or overwritten, `written` exact, B's order kept. Returns
/// the tickets in order.
fn two_writers_three_records_all_land(ring: RingBuffer) -> Vec<u64> {
    let ring = Arc::new(ring);
    let a = {
        let ring = ring.clone();
        thread::spawn(move || ring.push(record(10)))
    };
    let b = {
        let ring = ring.clone();
        thread::spawn(move || {
            ring.push(record(1));
            ring.push(record(2));
        })
    };
    a.join().unwrap();
    b.join().unwrap();
    let mut snap = Vec::new();
    ring.snapshot_with_tickets(&mut snap);
    let stats = ring.stats();
    assert_eq!((stats.written, stats.overwritten, stats.dropped), (3, 0, 0));
    let mut ids: Vec<u64> = snap.iter().map(|(_, r)| r.timestamp_ns).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 10]);
    check_snapshot(&snap, &[1, 2, 10]);
    snap.iter().map(|&(t, _)| t).collect()
}

#[test]
fn racing_tickets_are_unique_and_every_slot_lands() {
    loom::model(|| {
        // Room for every record: no slot is ever lapped, so every push must
        // land. Writer B pushes twice while A pushes once, so A can lose
        // the race for `head` on both of its tries (loom: 2) and take its
        // ticket with the `fetch_add` fallback; or lose once and retry.
        let ring = RingBuffer::new(4);
        assert_eq!(ring.block(), 1);
        // No lost slot: tickets 0, 1, 2, each once.
        assert_eq!(two_writers_three_records_all_land(ring), [0, 1, 2]);
    });
}

#[test]
fn block_tickets_are_unique_and_counted_exactly() {
    loom::model(|| {
        // Blocks of 2 tickets in a ring of 8 (no lap). Under loom every
        // thread is on stripe 0, so both writers race for one cursor: both
        // may find it empty and take a block each (one block's rest is then
        // abandoned and left out of `written`), or one takes the other's
        // next ticket.
        let ring = RingBuffer::with_block(8, 2);
        assert_eq!(ring.block(), 2);
        let tickets = two_writers_three_records_all_land(ring);
        assert!(tickets.windows(2).all(|w| w[0] < w[1]), "{tickets:?}");
    });
}

#[test]
fn a_clear_racing_a_block_never_hides_a_later_record() {
    loom::model(|| {
        // A writer takes a block while the ring is cleared: whichever
        // side of the clear its record lands on, a record pushed after
        // both is shown (a block installed across the clear is below the
        // floor and given up), and the counts are exact.
        let ring = Arc::new(RingBuffer::with_block(24, 2));
        assert_eq!(ring.block(), 2);
        let a = {
            let ring = ring.clone();
            thread::spawn(move || ring.push(record(1)))
        };
        let c = {
            let ring = ring.clone();
            thread::spawn(move || ring.clear())
        };
        a.join().unwrap();
        c.join().unwrap();
        ring.push(record(2));
        let mut snap = Vec::new();
        ring.snapshot_with_tickets(&mut snap);
        let ids: Vec<u64> = snap.iter().map(|(_, r)| r.timestamp_ns).collect();
        assert!(ids == [2] || ids == [1, 2], "{ids:?}");
        check_snapshot(&snap, &[1, 2]);
        let stats = ring.stats();
        assert_eq!((stats.written, stats.dropped), (2, 0));
    });
}

#[test]
fn concurrent_histogram_counts_are_exact_after_join() {
    loom::model(|| {
        let layout = HistogramLayout::new(1, 1_000, 1).unwrap();
        let h: Arc<LatencyHistogram> = Arc::new(LatencyHistogram::new(layout));
        // Each thread on its own stripe: its own sum (under loom the
        // bucket counters have one copy, see `COUNT_STRIPES`).
        let hs: Vec<_> = [[5u64, 900], [5, 2_000]]
            .into_iter()
            .enumerate()
            .map(|(stripe, vals)| {
                let h = h.clone();
                thread::spawn(move || {
                    for v in vals {
                        h.record_striped(stripe, v);
                    }
                })
            })
            .collect();
        for t in hs {
            t.join().unwrap();
        }
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum(), 5 + 900 + 5 + 2_000);
        assert_eq!(h.max(), 2_000);
        let five = h.buckets().find(|&(v, _)| v == 5).unwrap();
        assert_eq!(five.1, 2);
    });
}

#[test]
fn concurrent_registration_of_one_name_yields_one_id() {
    loom::model(|| {
        let reg = Arc::new(OperationRegistry::new(2, "(other)", |_| ()));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let reg = reg.clone();
                thread::spawn(move || reg.register(Category::Db, "SELECT ?", |_| ()))
            })
            .collect();
        let ids: Vec<OpId> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ids[0], ids[1]);
        assert_eq!(ids[0], OpId(0));
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.get(ids[0]).unwrap().name, "SELECT ?");
    });
}

#[test]
fn registration_past_capacity_gets_the_overflow_id() {
    loom::model(|| {
        let reg = Arc::new(OperationRegistry::new(1, "(other)", |_| ()));
        let hs: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let reg = reg.clone();
                thread::spawn(move || reg.register(Category::Http, name, |_| ()))
            })
            .collect();
        let mut ids: Vec<OpId> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        ids.sort();
        assert_eq!(ids, [OpId(0), reg.overflow_id()]);
        assert_eq!(reg.overflow_id(), OpId(1));
        // A reader on another thread sees the winner's complete entry.
        let winner = reg.get(OpId(0)).unwrap();
        assert!(winner.name == "a" || winner.name == "b");
    });
}

/// The smallest layout there is (3 counters): loom explores every
/// interleaving of every counter access, so size matters.
fn tiny() -> HistogramLayout {
    HistogramLayout::new(1, 2, 0).unwrap()
}

/// A window of 2 intervals of 10 ns over `h`, with checkpoints of epoch 0
/// (the empty state) and epoch 1 (after one record), and one more record
/// since: a read at 15 sees 2 records from the epoch-0 base.
fn window_with_history() -> (Arc<LatencyHistogram>, Arc<RecentWindow>) {
    let h = Arc::new(LatencyHistogram::new(tiny()));
    let w = Arc::new(RecentWindow::new(tiny(), 10, 2));
    w.rotate(0, &h);
    h.record(1);
    w.rotate(15, &h);
    h.record(1);
    (h, w)
}

#[test]
fn window_rotation_never_shows_a_checkpoint_being_rewritten() {
    loom::model(|| {
        let (h, w) = window_with_history();
        // Epoch 2 reuses slot 0, which holds epoch 0: the oldest checkpoint
        // of a read at 15, so the reader below races its rewrite.
        let rotator = {
            let (h, w) = (h.clone(), w.clone());
            thread::spawn(move || w.rotate(25, &h))
        };
        let reader = {
            let (h, w) = (h.clone(), w.clone());
            thread::spawn(move || {
                let t = w.totals(15, &h);
                // Base epoch 0 (the empty state): 2 records; base epoch 1
                // (once slot 0 holds epoch 2, outside this read's window):
                // 1. Anything else mixed a checkpoint being rewritten in.
                assert!(
                    (t.count, t.sum) == (2, 2) || (t.count, t.sum) == (1, 1),
                    "impossible read {t:?}"
                );
            })
        };
        rotator.join().unwrap();
        reader.join().unwrap();
        // At 25 the window starts at epoch 1's checkpoint (one record).
        let t = w.totals(25, &h);
        assert_eq!((t.count, t.sum), (1, 1));
    });
}

#[test]
fn window_reset_is_one_step_for_readers_and_writers() {
    loom::model(|| {
        let (h, w) = window_with_history();
        let resetter = {
            let (h, w) = (h.clone(), w.clone());
            thread::spawn(move || w.reset(&h))
        };
        // One thread records, then reads: both race the reset. (A third
        // thread makes the model take tens of minutes; this pair covers
        // reset against record and reset against read.)
        let recorder_reader = {
            let (h, w) = (h.clone(), w.clone());
            thread::spawn(move || {
                h.record(1);
                let t = w.totals(15, &h);
                // Before the reset: 3. After: at most this thread's record,
                // whose bucket and sum may land on different sides of the
                // reset (writers never wait for it). A pre-reset
                // checkpoint against a post-reset source would wrap to
                // about 2^32.
                assert!(
                    (t.count, t.sum) == (3, 3) || (t.count <= 1 && t.sum <= 1),
                    "impossible read {t:?}"
                );
            })
        };
        resetter.join().unwrap();
        recorder_reader.join().unwrap();
        assert!(w.totals(15, &h).count <= 1);
    });
}

#[test]
fn series_reset_is_all_or_nothing_for_readers() {
    loom::model(|| {
        let config = RecorderConfig {
            buffer_size: 1,
            max_series: 1,
            layout: tiny(),
            window_layout: tiny(),
            window_interval_ns: 10,
            window_intervals: 2,
            sample_rate: 1.0,
        };
        let rec = Arc::new(Recorder::new(config, FakeClock::new(0)).unwrap());
        let op = rec.register(Category::Http, "GET /");
        rec.aggregate(MetricRecord {
            category: Category::Http,
            operation: op,
            duration_ns: 1,
            bytes: 10,
            status: 500,
            ..MetricRecord::default()
        });
        let clearer = {
            let rec = rec.clone();
            thread::spawn(move || rec.series(op).unwrap().reset())
        };
        let reader = {
            let rec = rec.clone();
            thread::spawn(move || {
                let s = rec.series(op).unwrap();
                let seen = s.read(|s| (s.count(), s.bytes()));
                // All of the record or none of it: never a count without
                // its bytes.
                assert!(
                    seen == (1, 10) || seen == (0, 0),
                    "a read mixed both sides of a reset: {seen:?}"
                );
            })
        };
        clearer.join().unwrap();
        reader.join().unwrap();
        let s = rec.series(op).unwrap();
        assert_eq!((s.count(), s.bytes()), (0, 0));
    });
}
