//! loom models of what is published to readers (issue 22): the ring's
//! `stats()` beside a writer installing blocks, a snapshot beside block
//! tickets, and the registry's entries.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use starpunk_perf::{Category, MetricRecord, OpId, OperationRegistry, RingBuffer};

fn record(id: u64) -> MetricRecord {
    MetricRecord {
        timestamp_ns: id,
        duration_ns: id * 3 + 1,
        ..MetricRecord::default()
    }
}

#[test]
fn stats_beside_block_installs_is_never_ahead() {
    loom::model(|| {
        // Blocks of 2: the writer's first push installs a block, its
        // second takes the block's next ticket. Between the block's `head`
        // increment and its cursor's update, `head - abandoned - waiting`
        // runs ahead; `stats` must retry such a read (the installation is
        // announced). (Three pushes and two reads: ten minutes.)
        let ring = Arc::new(RingBuffer::with_block(8, 2));
        let started = Arc::new(AtomicU64::new(0));
        let writer = {
            let (ring, started) = (ring.clone(), started.clone());
            thread::spawn(move || {
                for id in 1..=2 {
                    started.fetch_add(1, Ordering::SeqCst);
                    ring.push(record(id));
                }
            })
        };
        let reader = {
            let (ring, started) = (ring.clone(), started.clone());
            thread::spawn(move || {
                let written = ring.stats().written;
                let started = started.load(Ordering::SeqCst);
                assert!(written <= started, "written ahead: {written}/{started}");
            })
        };
        writer.join().unwrap();
        reader.join().unwrap();
        let s = ring.stats();
        assert_eq!((s.written, s.dropped), (2, 0));
    });
}

#[test]
fn a_snapshot_beside_block_tickets_is_whole_and_in_order() {
    loom::model(|| {
        // Two writers on one cursor (loom: every thread on stripe 0) in a
        // ring of 8 with blocks of 2, a snapshot between them: every
        // record it holds is whole, was pushed, and B's two keep their
        // order.
        let ring = Arc::new(RingBuffer::with_block(8, 2));
        let a = {
            let ring = ring.clone();
            thread::spawn(move || ring.push(record(10)))
        };
        let b = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.push(record(1));
                let mut snap = Vec::new();
                ring.snapshot_with_tickets(&mut snap);
                let ids: Vec<u64> = snap.iter().map(|(_, r)| r.timestamp_ns).collect();
                assert!(ids.contains(&1), "its own record missing: {ids:?}");
                for (_, r) in &snap {
                    assert_eq!(*r, record(r.timestamp_ns), "torn");
                }
                assert!(snap.windows(2).all(|w| w[0].0 < w[1].0));
                ring.push(record(2));
            })
        };
        a.join().unwrap();
        b.join().unwrap();
        let mut snap = Vec::new();
        ring.snapshot_with_tickets(&mut snap);
        let ids: Vec<u64> = snap.iter().map(|(_, r)| r.timestamp_ns).collect();
        let pos = |id| ids.iter().position(|&i| i == id);
        assert!(pos(1) < pos(2), "{ids:?}");
        assert_eq!(ids.len(), 3);
    });
}

#[test]
fn a_registered_entry_is_whole_for_a_reader_on_another_thread() {
    loom::model(|| {
        // The payload is a loom atomic: loading it on a thread the entry's
        // publication does not synchronise with is a causality violation
        // loom reports (it would be if `register` published `Relaxed`).
        let reg = Arc::new(OperationRegistry::new(1, "(other)", |_| {
            AtomicUsize::new(0)
        }));
        let writer = {
            let reg = reg.clone();
            thread::spawn(move || {
                reg.register(Category::Db, "SELECT ?", |_| AtomicUsize::new(42));
            })
        };
        let reader = {
            let reg = reg.clone();
            thread::spawn(move || {
                if let Some(e) = reg.get(OpId(0)) {
                    assert_eq!(e.name, "SELECT ?");
                    assert_eq!(e.value.load(Ordering::Relaxed), 42);
                }
                if reg.len() == 1 {
                    let e = reg.iter().next().unwrap().1;
                    assert_eq!(e.value.load(Ordering::Relaxed), 42);
                }
            })
        };
        writer.join().unwrap();
        reader.join().unwrap();
    });
}
