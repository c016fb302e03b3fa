//! Many stored distributions merged into one, straight from their blobs
//! (the range views' accumulators): dense counters of one layout, a tight
//! loop per blob, no histogram and no allocation per row.

use hdrhistogram::Histogram;
use starpunk_perf::HistogramLayout;

use super::codec::{pair_table, to_histogram, Damaged, Entries, Latency, Layouts};

/// Many stored distributions merged into one: dense counters of one
/// layout (the first blob's), added to straight from the blobs, no
/// histogram per row. Quantiles and the maximum are hdrhistogram's own
/// (the same counters give the same answers; tested against it).
#[derive(Clone, Debug, Default)]
pub struct Accumulator {
    layout: Option<HistogramLayout>,
    /// One counter per index of `layout` (empty before the first blob).
    counts: Vec<u64>,
    total: u64,
    /// Indices `low..high` hold every nonzero counter (`low >= high`:
    /// none).
    low: usize,
    high: usize,
}

impl Accumulator {
    /// Nothing yet.
    pub fn new() -> Accumulator {
        Accumulator::default()
    }

    fn adopt(&mut self, layout: HistogramLayout) {
        if self.layout != Some(layout) {
            self.counts.clear();
            self.counts.resize(layout.counts_len(), 0);
            self.layout = Some(layout);
            self.low = usize::MAX;
            self.high = 0;
            self.total = 0;
        }
    }

    #[inline]
    fn bump(&mut self, i: usize, n: u64) {
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(n);
            self.total = self.total.saturating_add(n);
            self.low = self.low.min(i);
            self.high = self.high.max(i + 1);
        }
    }

    /// Adds a stored blob; a damaged one adds nothing.
    pub fn add_blob(&mut self, blob: &[u8], layouts: &Layouts) -> Result<(), Damaged> {
        let (layout, mut entries) = Entries::open(blob, layouts)?;
        if self.layout.is_none() {
            self.adopt(layout);
        }
        if self.layout == Some(layout) && self.counts.len() == layout.counts_len() {
            // The common case, one tight loop: the same layout, indices
            // straight into the counters.
            let (kg, kc) = (entries.kg, entries.kc);
            let table = pair_table(kg, kc);
            let mut added = 0usize;
            let mut failed = None;
            let (mut first, mut next) = (usize::MAX, 0usize);
            let mut total = self.total;
            while entries.remaining > 0 {
                entries.remaining -= 1;
                let decoded = match entries.pair(table) {
                    Some(pair) => Ok(pair),
                    None => entries
                        .exp_golomb(kg)
                        .and_then(|gap| Ok((gap, entries.exp_golomb(kc)?))),
                };
                let (gap, count) = match decoded {
                    Ok(v) => v,
                    Err(d) => {
                        failed = Some(d);
                        break;
                    }
                };
                let i = (next as u64).saturating_add(gap);
                let (Some(c), Some(n)) = (
                    usize::try_from(i).ok().and_then(|i| self.counts.get_mut(i)),
                    count.checked_add(1),
                ) else {
                    failed = Some(Damaged::OutOfRange);
                    break;
                };
                *c = c.saturating_add(n);
                total = total.saturating_add(n);
                let i = i as usize;
                first = first.min(i);
                next = i + 1;
                added += 1;
            }
            if added > 0 {
                self.low = self.low.min(first);
                self.high = self.high.max(next);
            }
            self.total = total;
            return match failed {
                None => Ok(()),
                Some(d) => {
                    self.take_back(blob, layouts, added, layout);
                    Err(d)
                }
            };
        }
        let mine = self.layout.unwrap_or(layout);
        let map = |i: u32| -> usize {
            if mine == layout {
                i as usize
            } else {
                mine.index_for(layout.value_for(i as usize))
            }
        };
        let mut added = 0usize;
        let mut failed = None;
        for e in entries {
            match e {
                Ok((i, n)) => {
                    self.bump(map(i), n);
                    added += 1;
                }
                Err(d) => {
                    failed = Some(d);
                    break;
                }
            }
        }
        let Some(d) = failed else {
            return Ok(());
        };
        self.take_back(blob, layouts, added, layout);
        Err(d)
    }

    /// Takes back the first `added` counters of a damaged blob of
    /// `layout` (they decode again the same way).
    fn take_back(&mut self, blob: &[u8], layouts: &Layouts, added: usize, layout: HistogramLayout) {
        let mine = self.layout.unwrap_or(layout);
        if let Ok((_, entries)) = Entries::open(blob, layouts) {
            for (i, n) in entries.take(added).flatten() {
                let i = if mine == layout {
                    i as usize
                } else {
                    mine.index_for(layout.value_for(i as usize))
                };
                if let Some(c) = self.counts.get_mut(i) {
                    *c = c.saturating_sub(n);
                    self.total = self.total.saturating_sub(n);
                }
            }
        }
    }

    /// Adds a decoded distribution.
    pub fn add(&mut self, l: &Latency) {
        if self.layout.is_none() {
            self.adopt(l.layout());
        }
        let mine = self.layout.unwrap_or(l.layout());
        for &(i, n) in l.counts() {
            let i = if mine == l.layout() {
                i as usize
            } else {
                mine.index_for(l.layout().value_for(i as usize))
            };
            self.bump(i, n);
        }
    }

    /// Adds another accumulator.
    pub fn merge(&mut self, other: &Accumulator) {
        let Some(theirs) = other.layout else {
            return;
        };
        if self.layout.is_none() {
            self.adopt(theirs);
        }
        let mine = self.layout.unwrap_or(theirs);
        for i in other.low..other.high.min(other.counts.len()) {
            let n = other.counts[i];
            if n > 0 {
                let j = if mine == theirs {
                    i
                } else {
                    mine.index_for(theirs.value_for(i))
                };
                self.bump(j, n);
            }
        }
    }

    /// Adds every counter into `other` and forgets them here (keeping the
    /// layout and memory): [`merge`](Self::merge) then
    /// [`clear`](Self::clear), in one pass where the layouts agree.
    pub fn drain_into(&mut self, other: &mut Accumulator) {
        let Some(mine) = self.layout else {
            return;
        };
        if other.layout.is_none() {
            other.adopt(mine);
        }
        if other.layout != Some(mine) || other.counts.len() != self.counts.len() {
            other.merge(self);
            self.clear();
            return;
        }
        let high = self.high.min(self.counts.len());
        if self.low < high {
            for (n, c) in self.counts[self.low..high]
                .iter_mut()
                .zip(&mut other.counts[self.low..high])
            {
                *c = c.saturating_add(*n);
                *n = 0;
            }
            other.total = other.total.saturating_add(self.total);
            other.low = other.low.min(self.low);
            other.high = other.high.max(high);
        }
        self.low = usize::MAX;
        self.high = 0;
        self.total = 0;
    }

    /// Forgets every count (keeps its layout and memory).
    pub fn clear(&mut self) {
        if self.low < self.high {
            let high = self.high.min(self.counts.len());
            self.counts[self.low.min(high)..high].fill(0);
        }
        self.low = usize::MAX;
        self.high = 0;
        self.total = 0;
    }

    /// Events added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Nothing added.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// hdrhistogram's `value_at_quantile` over the same counters.
    pub fn value_at_quantile(&self, quantile: f64) -> u64 {
        let Some(layout) = self.layout else {
            return 0;
        };
        let quantile = if quantile > 1.0 { 1.0 } else { quantile };
        let mut target = (quantile * self.total as f64).ceil() as u64;
        if target == 0 {
            target = 1;
        }
        let mut seen: u64 = 0;
        for i in self.low..self.high.min(self.counts.len()) {
            seen = seen.saturating_add(self.counts[i]);
            if seen >= target {
                return if quantile == 0.0 {
                    layout.value_for(i)
                } else {
                    layout.highest_value_for(i)
                };
            }
        }
        0
    }

    /// [`value_at_quantile`](Self::value_at_quantile) of each of
    /// `quantiles` (ascending), in one pass over the counters.
    pub fn values_at_quantiles<const N: usize>(&self, quantiles: [f64; N]) -> [u64; N] {
        let mut out = [0; N];
        let Some(layout) = self.layout else {
            return out;
        };
        debug_assert!(quantiles.windows(2).all(|w| w[0] <= w[1]));
        let targets = quantiles.map(|q| {
            let q = if q > 1.0 { 1.0 } else { q };
            ((q * self.total as f64).ceil() as u64).max(1)
        });
        let mut next = 0;
        let mut seen: u64 = 0;
        for i in self.low..self.high.min(self.counts.len()) {
            seen = seen.saturating_add(self.counts[i]);
            while next < N && seen >= targets[next] {
                out[next] = if quantiles[next] == 0.0 {
                    layout.value_for(i)
                } else {
                    layout.highest_value_for(i)
                };
                next += 1;
            }
            if next == N {
                break;
            }
        }
        out
    }

    /// hdrhistogram's `max`: the highest value equivalent to the largest
    /// recorded (0 when empty).
    pub fn max(&self) -> u64 {
        let Some(layout) = self.layout else {
            return 0;
        };
        (self.low..self.high.min(self.counts.len()))
            .rev()
            .find(|&i| self.counts[i] > 0)
            .map_or(0, |i| layout.highest_value_for(i))
    }

    /// The same counters as an hdrhistogram (`None`: nothing was added
    /// and no layout is known).
    pub fn to_histogram(&self) -> Option<Histogram<u64>> {
        let layout = self.layout?;
        Some(to_histogram(layout, self.nonzero()))
    }

    /// The same counters as a [`Latency`].
    pub fn to_latency(&self) -> Option<Latency> {
        let layout = self.layout?;
        Some(Latency::from_sorted(
            layout,
            self.nonzero().map(|(i, n)| (i as u32, n)).collect(),
        ))
    }

    fn nonzero(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        (self.low..self.high.min(self.counts.len()))
            .map(|i| (i, self.counts[i]))
            .filter(|c| c.1 > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::ticker::history::codec::tests::{layout, layouts, random_histogram};

    #[test]
    fn the_accumulator_answers_as_hdrhistogram_does() {
        let mut merged = starpunk_perf::new_hdr(&layout());
        let mut acc = Accumulator::new();
        for seed in 1..40u64 {
            let h = random_histogram(seed * 7_919, seed * 13);
            merged.add(&h).unwrap();
            acc.add_blob(&Latency::from_histogram(&h).unwrap().encode(1), &layouts())
                .unwrap();
            for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0, 1.5] {
                assert_eq!(
                    acc.value_at_quantile(q),
                    merged.value_at_quantile(q),
                    "q {q}"
                );
            }
            assert_eq!(acc.max(), merged.max());
            assert_eq!(acc.total(), merged.len());
            assert_eq!(acc.to_histogram().unwrap(), merged);
            let qs = [0.0, 0.5, 0.5, 0.95, 0.99, 1.0];
            assert_eq!(
                acc.values_at_quantiles(qs),
                qs.map(|q| merged.value_at_quantile(q))
            );
            // Drained into another: the same counters there, none here.
            let mut copy = acc.clone();
            let mut into = Accumulator::new();
            into.add_blob(&Latency::from_histogram(&h).unwrap().encode(1), &layouts())
                .unwrap();
            let mut expected = merged.clone();
            expected.add(&h).unwrap();
            copy.drain_into(&mut into);
            assert!(copy.is_empty() && copy.to_latency().unwrap().counts().is_empty());
            assert_eq!(into.to_histogram().unwrap(), expected);
            assert_eq!(into.total(), expected.len());
            assert_eq!(into.max(), expected.max());
        }
        acc.clear();
        assert!(acc.is_empty());
        assert_eq!((acc.value_at_quantile(0.5), acc.max()), (0, 0));
        let empty = starpunk_perf::new_hdr(&layout());
        assert_eq!(empty.value_at_quantile(0.5), 0);
        assert_eq!(empty.max(), 0);
    }

    #[test]
    fn damaged_blobs_are_refused_and_add_nothing() {
        let h = random_histogram(9, 600);
        let blob = Latency::from_histogram(&h).unwrap().encode(1);
        let mut acc = Accumulator::new();
        acc.add_blob(&blob, &layouts()).unwrap();
        let before = acc.to_histogram().unwrap();
        // Every prefix, every single-byte change, junk: an error or a
        // valid distribution, never a panic; an error adds nothing.
        let mut damaged = 0;
        let mut tries: Vec<Vec<u8>> = (0..blob.len()).map(|n| blob[..n].to_vec()).collect();
        for i in 0..blob.len() {
            for x in [0x00, 0xff, 0x80, 0x01] {
                let mut b = blob.clone();
                b[i] ^= x;
                tries.push(b);
            }
        }
        tries.push(vec![0xff; 40]);
        tries.push(vec![
            0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        for t in &tries {
            let mut a = acc.clone();
            match a.add_blob(t, &layouts()) {
                Ok(()) => assert!(Latency::decode(t, &layouts()).is_ok()),
                Err(_) => {
                    damaged += 1;
                    assert_eq!(a.to_histogram().unwrap(), before);
                    assert_eq!(a.total(), before.len());
                }
            }
        }
        assert!(damaged > blob.len(), "{damaged}");
        assert_eq!(
            Latency::decode(&[7, 0], &layouts()),
            Err(Damaged::UnknownLayout)
        );
    }

    /// The pair tables against the code bit by bit: blobs of every shape
    /// (gaps and counts from 1 to thousands, so every order of both codes
    /// up to 10 is chosen) decode to the counters encoded.
    #[test]
    fn the_pair_tables_decode_as_the_codes_do() {
        let mut r = crate::monitoring::ticker::history::codec::tests::rng(77);
        let len = layout().counts_len() as u64;
        let mut orders = std::collections::BTreeSet::new();
        for gap_scale in [1u64, 2, 5, 30, 200, 1_500] {
            for count_scale in [1u64, 2, 3, 10, 100, 5_000] {
                let mut counts = Vec::new();
                let mut i = r() % 3;
                while i < len {
                    counts.push((i as u32, 1 + r() % count_scale));
                    i += 1 + r() % gap_scale;
                }
                let l = Latency::from_sorted(layout(), counts);
                let blob = l.encode(1);
                // After the layout id (1 byte) and n (1 or 2 bytes).
                orders.insert(blob[if l.counts().len() < 128 { 2 } else { 3 }]);
                let mut acc = Accumulator::new();
                acc.add_blob(&blob, &layouts()).unwrap();
                assert_eq!(acc.to_latency().unwrap(), l, "{gap_scale} {count_scale}");
            }
        }
        assert!(orders.len() > 15, "{orders:?}");
    }

    #[test]
    fn different_layouts_merge_by_value() {
        let coarse = HistogramLayout::new(1_000, 30_000_000_000, 1).unwrap();
        let mut ls = layouts();
        ls.insert(2, coarse);
        let fine = Latency::from_values(layout(), &[(1_000_000, 3), (20_000_000, 1)]);
        let rough = Latency::from_values(coarse, &[(1_000_000, 2)]);
        let mut acc = Accumulator::new();
        acc.add_blob(&fine.encode(1), &ls).unwrap();
        acc.add_blob(&rough.encode(2), &ls).unwrap();
        let mut expected = fine.to_histogram();
        let _ = expected.add(rough.to_histogram());
        assert_eq!(acc.to_histogram().unwrap(), expected);
        let mut l = fine.clone();
        l.add(&rough);
        assert_eq!(l.to_histogram(), expected);
    }
}
