//! A lossy, many-writer ring of fixed-size records with torn-free snapshots.
//!
//! The protocol is a seqlock per slot whose payload is atomics (Boehm,
//! "Can Seqlocks Get Along With Programming Language Memory Models?",
//! MSPC 2012): every access is an atomic, so there is no data race, and the
//! fences order the payload against the slot's sequence word. See
//! `docs/ARCHITECTURE.md` for the full argument.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crossbeam_utils::CachePadded;

use crate::record::MetricRecord;
use crate::sync::{fence, AtomicU64, Ordering};

/// One slot: a sequence word and the record's seven words, one cache line.
#[repr(C, align(64))]
struct Slot {
    /// `0`: never written. `2*(t+1)`: holds the complete record of ticket `t`.
    /// `2*(t+1)+1`: the writer of ticket `t` is storing the words.
    seq: AtomicU64,
    /// The record packed by [`MetricRecord::to_words`].
    words: [AtomicU64; MetricRecord::WORDS],
}

impl Slot {
    fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            words: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Counts a [`RingBuffer`] keeps about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RingStats {
    /// Slots in the ring.
    pub capacity: usize,
    /// Records ever claimed (written or dropped).
    pub written: u64,
    /// Records pushed out by newer ones: `written - capacity`, or zero.
    pub overwritten: u64,
    /// Records a writer gave up because another writer held its slot
    /// (a writer a whole lap behind). Zero unless the ring is tiny.
    pub dropped: u64,
}

/// A fixed-capacity circular buffer of [`MetricRecord`]s.
///
/// Any number of threads [`push`](Self::push) at once; each claims a slot
/// with one atomic increment and overwrites the oldest record. A
/// [`snapshot`](Self::snapshot) returns the records oldest to newest, never
/// a torn one, skipping slots being written at that moment.
///
/// # Examples
///
/// ```
/// use starpunk_perf::{MetricRecord, RingBuffer};
///
/// let ring = RingBuffer::new(2);
/// for d in 1..=3 {
///     ring.push(MetricRecord { duration_ns: d, ..MetricRecord::default() });
/// }
/// let mut out = Vec::new();
/// ring.snapshot(&mut out);
/// let durations: Vec<u64> = out.iter().map(|r| r.duration_ns).collect();
/// assert_eq!(durations, [2, 3]);
/// assert_eq!(ring.stats().overwritten, 1);
/// ```
pub struct RingBuffer {
    /// One or more independent rings; a writer picks one by its stripe so
    /// that threads do not contend on one `head`.
    shards: Box<[Shard]>,
}

/// One ring: the protocol of the module documentation.
struct Shard {
    /// Tickets ever claimed; ticket `t` goes to slot `t % slots.len()`.
    head: CachePadded<AtomicU64>,
    /// Writer-side give-ups (see [`RingStats::dropped`]).
    dropped: CachePadded<AtomicU64>,
    /// Tickets below this were cleared by [`RingBuffer::clear`]; readers skip them.
    floor: AtomicU64,
    slots: Box<[Slot]>,
}

impl RingBuffer {
    /// A ring of `capacity` slots (at least one: zero is raised to one).
    pub fn new(capacity: usize) -> Self {
        Self::with_shards(capacity, 1)
    }

    /// A ring of `capacity` slots split into `shards` equal rings (`shards`
    /// rounded down to a power of two, at most `capacity`). Writers on different stripes
    /// ([`push_striped`](Self::push_striped)) then never share a counter; a
    /// snapshot merges the shards by timestamp. Each shard keeps its own
    /// newest `capacity / shards` records.
    pub fn with_shards(capacity: usize, shards: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = shards.clamp(1, capacity);
        // A power of two, so picking a shard is a mask, not a division.
        let shards = 1usize << (usize::BITS - 1 - shards.leading_zeros());
        let shards = (0..shards)
            .map(|i| {
                // Spread the remainder so the sizes add up to `capacity`.
                let n = capacity / shards + usize::from(i < capacity % shards);
                let mut slots = Vec::with_capacity(n);
                slots.resize_with(n, Slot::new);
                Shard {
                    head: CachePadded::new(AtomicU64::new(0)),
                    dropped: CachePadded::new(AtomicU64::new(0)),
                    floor: AtomicU64::new(0),
                    slots: slots.into_boxed_slice(),
                }
            })
            .collect();
        Self { shards }
    }

    /// Number of slots, all shards together.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(|s| s.slots.len()).sum()
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Bytes this ring occupies (slots and headers).
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self
                .shards
                .iter()
                .map(|s| core::mem::size_of::<Shard>() + core::mem::size_of_val(&*s.slots))
                .sum::<usize>()
    }

    /// Stores `record` in the first shard, overwriting its oldest. Never
    /// blocks, never allocates, never panics.
    #[inline]
    pub fn push(&self, record: MetricRecord) {
        self.push_striped(0, record);
    }

    /// Stores `record` in shard `stripe % shards`, overwriting its oldest.
    /// Never blocks, never allocates, never panics.
    #[inline]
    pub fn push_striped(&self, stripe: usize, record: MetricRecord) {
        if let Some(shard) = self.shards.get(stripe & (self.shards.len() - 1)) {
            shard.push(record);
        }
    }

    /// Counts of written, overwritten and dropped records.
    pub fn stats(&self) -> RingStats {
        self.shards.iter().fold(
            RingStats {
                capacity: self.capacity(),
                ..RingStats::default()
            },
            |acc, s| {
                let written = s.head.load(Ordering::Relaxed);
                RingStats {
                    written: acc.written + written,
                    overwritten: acc.overwritten + written.saturating_sub(s.slots.len() as u64),
                    dropped: acc.dropped + s.dropped.load(Ordering::Relaxed),
                    ..acc
                }
            },
        )
    }

    /// Number of records a snapshot would hold if no writer were busy.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let head = s.head.load(Ordering::Relaxed);
                let live = head.saturating_sub(s.floor.load(Ordering::Relaxed));
                live.min(s.slots.len() as u64) as usize
            })
            .sum()
    }

    /// Forgets every record pushed so far: later snapshots hold only records
    /// pushed after this call. The counts in [`stats`](Self::stats) keep
    /// running. Cold path; writers are never blocked.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.floor
                .store(s.head.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// True before the first push.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the ring's complete records to `out`, oldest to newest
    /// (by ticket within a shard, by timestamp across shards).
    ///
    /// Slots being written are skipped; a record is never torn and never one
    /// that was not pushed. `out` is cleared first. This is the reader's
    /// (cold) side: it may allocate.
    pub fn snapshot(&self, out: &mut Vec<MetricRecord>) {
        let mut tickets = Vec::new();
        out.clear();
        for shard in self.shards.iter() {
            shard.snapshot_with_tickets(&mut tickets);
            out.extend(tickets.iter().map(|&(_, r)| r));
        }
        if self.shards.len() > 1 {
            // Stable: within a shard, ticket order breaks timestamp ties.
            out.sort_by_key(|r| r.timestamp_ns);
        }
    }

    /// The first shard's records with their tickets (positions in that
    /// shard's order of pushes), oldest to newest. With one shard (as built
    /// by [`new`](Self::new)) that is the whole ring.
    pub fn snapshot_with_tickets(&self, out: &mut Vec<(u64, MetricRecord)>) {
        self.shards[0].snapshot_with_tickets(out);
    }
}

impl Shard {
    #[inline]
    fn push(&self, record: MetricRecord) {
        let ticket = self.head.fetch_add(1, Ordering::Relaxed);
        // A u64 ticket cannot wrap in practice (584 years at 1 GHz); the
        // wrapping maths keeps the code panic-free even if it did.
        let slot = &self.slots[(ticket % self.slots.len() as u64) as usize];
        let complete = ticket.wrapping_add(1).wrapping_mul(2);
        // The common case: the previous lap's writer finished (or this is the
        // first lap), so the slot holds exactly `complete - 2 * capacity`.
        let lap = (self.slots.len() as u64).wrapping_mul(2);
        let expected = complete.saturating_sub(lap);
        if let Err(mut cur) =
            slot.seq
                .compare_exchange(expected, complete | 1, Ordering::Acquire, Ordering::Relaxed)
        {
            // Odd: another writer is in the slot. Larger: a newer lap wrote
            // it. Either way this record gives way and is counted.
            loop {
                if cur & 1 == 1 || cur > complete {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // An older, complete lap (its successor gave up): take it.
                match slot.seq.compare_exchange(
                    cur,
                    complete | 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
        }
        // Orders the odd `seq` before the word stores: a reader that sees
        // any word of ours then sees `seq != s1` on its second load.
        fence(Ordering::Release);
        for (word, value) in slot.words.iter().zip(record.to_words()) {
            word.store(value, Ordering::Relaxed);
        }
        slot.seq.store(complete, Ordering::Release);
    }

    fn snapshot_with_tickets(&self, out: &mut Vec<(u64, MetricRecord)>) {
        out.clear();
        for slot in self.slots.iter() {
            let s1 = slot.seq.load(Ordering::Acquire);
            if s1 == 0 || s1 & 1 == 1 {
                continue;
            }
            let mut words = [0u64; MetricRecord::WORDS];
            for (w, atomic) in words.iter_mut().zip(slot.words.iter()) {
                *w = atomic.load(Ordering::Relaxed);
            }
            // Orders the word loads before the second `seq` load; pairs with
            // the writer's release fence.
            fence(Ordering::Acquire);
            let s2 = slot.seq.load(Ordering::Relaxed);
            if s1 != s2 {
                continue;
            }
            if let Some(record) = MetricRecord::from_words(words) {
                out.push((s1 / 2 - 1, record));
            }
        }
        let floor = self.floor.load(Ordering::Relaxed);
        out.retain(|&(t, _)| t >= floor);
        out.sort_unstable_by_key(|&(ticket, _)| ticket);
        // A slot still holding a lap older than the newest `capacity` tickets
        // was claimed by a writer that dropped its record: its content is
        // older than what the ring promises.
        if let Some(&(newest, _)) = out.last() {
            let oldest_kept = (newest + 1).saturating_sub(self.slots.len() as u64);
            out.retain(|&(t, _)| t >= oldest_kept);
        }
    }
}

impl core::fmt::Debug for RingBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RingBuffer")
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::record::{Category, OpId};

    fn rec(n: u64) -> MetricRecord {
        MetricRecord {
            timestamp_ns: n,
            duration_ns: n * 3 + 1,
            bytes: n,
            rows: n,
            memory_delta: -(n as i64),
            request_id: n,
            operation: OpId(n as u32),
            parent: OpId::NONE,
            status: 200,
            category: Category::Http,
        }
    }

    #[test]
    fn empty_ring_snapshots_nothing() {
        let ring = RingBuffer::new(4);
        let mut out = Vec::new();
        ring.snapshot(&mut out);
        assert!(out.is_empty());
        assert!(ring.is_empty());
        assert_eq!(ring.stats().written, 0);
    }

    #[test]
    fn keeps_newest_capacity_records_in_order() {
        let ring = RingBuffer::new(5);
        for n in 0..13 {
            ring.push(rec(n));
        }
        let mut out = Vec::new();
        ring.snapshot(&mut out);
        assert_eq!(out, (8..13).map(rec).collect::<Vec<_>>());
        let stats = ring.stats();
        assert_eq!(
            (stats.written, stats.overwritten, stats.dropped),
            (13, 8, 0)
        );
        assert_eq!(ring.len(), 5);
    }

    #[test]
    fn zero_capacity_becomes_one() {
        let ring = RingBuffer::new(0);
        ring.push(rec(1));
        ring.push(rec(2));
        let mut out = Vec::new();
        ring.snapshot(&mut out);
        assert_eq!(out, [rec(2)]);
    }

    #[test]
    fn shards_split_capacity_and_merge_by_time() {
        // Three shards round down to two, of 6 and 5 slots.
        let ring = RingBuffer::with_shards(11, 3);
        assert_eq!((ring.capacity(), ring.shards()), (11, 2));
        for n in 0..30 {
            ring.push_striped(n as usize, rec(n));
        }
        let mut out = Vec::new();
        ring.snapshot(&mut out);
        let got: Vec<u64> = out.iter().map(|r| r.timestamp_ns).collect();
        // Even records keep their newest 6, odd ones their newest 5.
        assert_eq!(got, [18, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29]);
        let stats = ring.stats();
        assert_eq!((stats.written, stats.overwritten), (30, 19));
        assert_eq!(ring.len(), 11);
    }

    #[test]
    fn clear_forgets_earlier_records() {
        let ring = RingBuffer::with_shards(8, 2);
        for n in 0..5 {
            ring.push_striped(n as usize, rec(n));
        }
        ring.clear();
        assert!(ring.is_empty());
        ring.push(rec(9));
        let mut out = Vec::new();
        ring.snapshot(&mut out);
        assert_eq!(out, [rec(9)]);
        assert_eq!(ring.stats().written, 6);
    }

    #[test]
    fn slot_is_one_cache_line() {
        assert_eq!(core::mem::size_of::<Slot>(), 64);
    }

    #[test]
    fn threads_never_produce_torn_records() {
        let ring = RingBuffer::new(8);
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let ring = &ring;
                s.spawn(move || {
                    for n in 0..20_000u64 {
                        ring.push(rec(t * 1_000_000 + n));
                    }
                });
            }
            let ring = &ring;
            s.spawn(move || {
                let mut out = Vec::new();
                for _ in 0..2_000 {
                    ring.snapshot(&mut out);
                    for r in &out {
                        let n = r.timestamp_ns;
                        assert_eq!(r.duration_ns, n * 3 + 1, "torn record {r:?}");
                        assert_eq!(r.bytes, n);
                        assert_eq!(r.memory_delta, -(n as i64));
                    }
                }
            });
        });
        assert_eq!(ring.stats().written, 60_000);
    }
}
