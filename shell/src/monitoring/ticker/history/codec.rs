//! How the history stores a latency distribution, and how a view merges
//! many of them: the nonzero counters of an hdrhistogram layout, nothing
//! else, so a merge is exact (the counters added are the counters stored).
//!
//! A blob (issue 20; the files before held hdrhistogram's V2 format, 40
//! bytes of header and one or two bytes a counter):
//!
//! - LEB128: the layout's id (the `layouts` table: lowest, highest,
//!   significant figures);
//! - LEB128: `n`, the nonzero counters;
//! - when `n > 0`: one byte, the order of the gaps' Exp-Golomb code (high
//!   nibble) and of the counts' (low nibble), each chosen per blob as the
//!   one that stores it in the fewest bits;
//! - `n` pairs, bit-packed most significant bit first: the gap to the
//!   previous counter's index (`index - previous - 1`; the first: its
//!   index), then `count - 1`; the last byte padded with zero bits.
//!
//! An hour row of a busy series (about 450 counters) takes about 230 bytes
//! this way against about 900 in V2.
//!
//! Decoding never panics: a blob that ends early, names an unknown layout,
//! runs past the layout's counters or overflows is [`Damaged`], and an
//! [`Accumulator`](super::Accumulator) it was being added to is left as it
//! was.

use std::collections::HashMap;

use hdrhistogram::Histogram;
use starpunk_perf::HistogramLayout;

/// A blob that cannot be decoded (the row it came from is skipped and
/// counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damaged {
    /// It ends before its counters do.
    Truncated,
    /// Its layout id is not in the `layouts` table.
    UnknownLayout,
    /// A counter index past the layout's counters, a zero or overflowing
    /// count, or a code longer than 64 bits.
    OutOfRange,
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Damaged::Truncated => "a latency blob ends early",
            Damaged::UnknownLayout => "a latency blob names an unknown layout",
            Damaged::OutOfRange => "a latency blob holds a counter out of range",
        })
    }
}

impl std::error::Error for Damaged {}

/// The layouts a file's blobs name, by id.
#[derive(Clone, Debug, Default)]
pub struct Layouts {
    by_id: HashMap<i64, HistogramLayout>,
}

impl Layouts {
    /// Adds `layout` under `id`.
    pub fn insert(&mut self, id: i64, layout: HistogramLayout) {
        self.by_id.insert(id, layout);
    }

    /// The layout of `id`.
    pub fn get(&self, id: i64) -> Option<HistogramLayout> {
        self.by_id.get(&id).copied()
    }

    /// The id of `layout`, if known.
    pub fn id_of(&self, layout: &HistogramLayout) -> Option<i64> {
        self.by_id
            .iter()
            .find(|(_, l)| *l == layout)
            .map(|(id, _)| *id)
    }
}

/// The layout of `h` (as made by `Histogram::new_with_bounds`).
pub fn layout_of(h: &Histogram<u64>) -> Option<HistogramLayout> {
    HistogramLayout::new(h.low(), h.high(), h.sigfig()).ok()
}

/// A distribution: the nonzero counters of a layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    layout: HistogramLayout,
    /// `(counter index, count)`: indices strictly ascending and below
    /// `layout.counts_len()`, counts above zero.
    counts: Vec<(u32, u64)>,
}

impl Latency {
    /// Nothing recorded, in `layout`.
    pub fn empty(layout: HistogramLayout) -> Latency {
        Latency {
            layout,
            counts: Vec::new(),
        }
    }

    /// `(value, count)` pairs recorded into `layout` (values past it
    /// saturate, as `saturating_record_n` does).
    pub fn from_values(layout: HistogramLayout, values: &[(u64, u64)]) -> Latency {
        let mut counts: Vec<(u32, u64)> = Vec::with_capacity(values.len());
        for &(v, n) in values {
            if n == 0 {
                continue;
            }
            push_sorted(&mut counts, layout.index_for(v) as u32, n);
        }
        counts.sort_unstable_by_key(|c| c.0);
        counts.dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1 = a.1.saturating_add(b.1);
                true
            } else {
                false
            }
        });
        Latency { layout, counts }
    }

    /// The counters of `h`, in its own layout.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Latency> {
        let layout = layout_of(h)?;
        let values: Vec<(u64, u64)> = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        Some(Latency::from_values(layout, &values))
    }

    /// Its layout.
    pub fn layout(&self) -> HistogramLayout {
        self.layout
    }

    /// `counts` (ascending indices of `layout`, counts above zero) as a
    /// distribution.
    pub(super) fn from_sorted(layout: HistogramLayout, counts: Vec<(u32, u64)>) -> Latency {
        debug_assert!(counts.windows(2).all(|w| w[0].0 < w[1].0));
        Latency { layout, counts }
    }

    /// Its counters.
    pub fn counts(&self) -> &[(u32, u64)] {
        &self.counts
    }

    /// Events recorded.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |t, c| t.saturating_add(c.1))
    }

    /// Adds `other` (counted in its layout's values where the layouts
    /// differ, as hdrhistogram's `add` does).
    pub fn add(&mut self, other: &Latency) {
        if other.counts.is_empty() {
            return;
        }
        let theirs: Vec<(u32, u64)> = if other.layout == self.layout {
            other.counts.clone()
        } else {
            let mut v: Vec<(u32, u64)> = other
                .counts
                .iter()
                .map(|&(i, n)| {
                    let value = other.layout.value_for(i as usize);
                    (self.layout.index_for(value) as u32, n)
                })
                .collect();
            v.sort_unstable_by_key(|c| c.0);
            v
        };
        let mut out = Vec::with_capacity(self.counts.len() + theirs.len());
        let (mut a, mut b) = (self.counts.iter().peekable(), theirs.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x.0 < y.0 => {
                    out.push(x);
                    a.next();
                }
                (Some(&&x), Some(&&y)) if x.0 > y.0 => {
                    push_sorted(&mut out, y.0, y.1);
                    b.next();
                }
                (Some(&&x), Some(&&y)) => {
                    out.push((x.0, x.1.saturating_add(y.1)));
                    a.next();
                    b.next();
                }
                (Some(&&x), None) => {
                    out.push(x);
                    a.next();
                }
                (None, Some(&&y)) => {
                    push_sorted(&mut out, y.0, y.1);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.counts = out;
    }

    /// The same distribution as an hdrhistogram (the same counters, so
    /// the same quantiles, maximum and count).
    pub fn to_histogram(&self) -> Histogram<u64> {
        to_histogram(
            self.layout,
            self.counts.iter().map(|&(i, n)| (i as usize, n)),
        )
    }

    /// The stored form, naming layout `layout_id`.
    pub fn encode(&self, layout_id: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.counts.len());
        put_varint(&mut out, layout_id.max(0) as u64);
        put_varint(&mut out, self.counts.len() as u64);
        if self.counts.is_empty() {
            return out;
        }
        let gaps = || {
            let mut previous: Option<u32> = None;
            self.counts.iter().map(move |&(i, _)| {
                let gap = match previous {
                    // Strictly ascending: `i > p`.
                    Some(p) => u64::from(i - p - 1),
                    None => u64::from(i),
                };
                previous = Some(i);
                gap
            })
        };
        let counts = || self.counts.iter().map(|&(_, n)| n - 1);
        let (kg, kc) = (best_order(gaps()), best_order(counts()));
        out.push(((kg as u8) << 4) | kc as u8);
        let mut w = BitWriter {
            out,
            acc: 0,
            bits: 0,
        };
        for (gap, count) in gaps().zip(counts()) {
            w.exp_golomb(gap, kg);
            w.exp_golomb(count, kc);
        }
        w.finish()
    }

    /// Appends the stored form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>, layout_id: i64) {
        out.extend_from_slice(&self.encode(layout_id));
    }

    /// Decodes a stored blob.
    pub fn decode(blob: &[u8], layouts: &Layouts) -> Result<Latency, Damaged> {
        let (layout, mut entries) = Entries::open(blob, layouts)?;
        let mut counts = Vec::with_capacity(entries.remaining as usize);
        for e in &mut entries {
            counts.push(e?);
        }
        Ok(Latency { layout, counts })
    }
}

/// A row's figures besides its count and distribution, stored at the
/// start of its `figures` blob: one byte saying which are not zero (bit
/// `i` for field `i` in the order below), then those as LEB128. Fields
/// that are zero (every route's slow statements and RSS, most errors)
/// take no byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// Sum of latencies, ns (wraps as the series' does).
    pub sum_ns: u64,
    /// 5xx responses.
    pub errors_5xx: u64,
    /// 4xx responses.
    pub errors_4xx: u64,
    /// Response bytes.
    pub bytes: u64,
    /// Rows returned or changed.
    pub rows: u64,
    /// Slow statements.
    pub slow: u64,
    /// Resident memory at the row's end, bytes.
    pub rss: u64,
}

impl Fields {
    fn all(&self) -> [u64; 7] {
        [
            self.sum_ns,
            self.errors_5xx,
            self.errors_4xx,
            self.bytes,
            self.rows,
            self.slow,
            self.rss,
        ]
    }

    /// Appends the stored form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let all = self.all();
        let mask = all
            .iter()
            .enumerate()
            .fold(0u8, |m, (i, v)| if *v != 0 { m | 1 << i } else { m });
        out.push(mask);
        for v in all.into_iter().filter(|v| *v != 0) {
            put_varint(out, v);
        }
    }

    /// The fields at the start of `blob`, and the rest of it.
    pub fn decode(blob: &[u8]) -> Result<(Fields, &[u8]), Damaged> {
        let (&mask, mut rest) = blob.split_first().ok_or(Damaged::Truncated)?;
        if mask & 0x80 != 0 {
            return Err(Damaged::OutOfRange);
        }
        let mut all = [0u64; 7];
        for (i, v) in all.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                let (x, r) = get_varint(rest)?;
                *v = x;
                rest = r;
            }
        }
        let [sum_ns, errors_5xx, errors_4xx, bytes, rows, slow, rss] = all;
        Ok((
            Fields {
                sum_ns,
                errors_5xx,
                errors_4xx,
                bytes,
                rows,
                slow,
                rss,
            },
            rest,
        ))
    }
}

/// Pushes `(i, n)` onto ascending `v`, adding to its last entry when the
/// index is the same.
fn push_sorted(v: &mut Vec<(u32, u64)>, i: u32, n: u64) {
    match v.last_mut() {
        Some(last) if last.0 == i => last.1 = last.1.saturating_add(n),
        _ => v.push((i, n)),
    }
}

/// An hdrhistogram of `layout` holding `counters` (index, count).
pub(super) fn to_histogram(
    layout: HistogramLayout,
    counters: impl Iterator<Item = (usize, u64)>,
) -> Histogram<u64> {
    let mut h = starpunk_perf::new_hdr(&layout);
    for (i, n) in counters {
        h.saturating_record_n(layout.value_for(i), n);
    }
    h
}

/// The Exp-Golomb order (0 to 15) that codes `values` in the fewest bits.
fn best_order(values: impl Iterator<Item = u64> + Clone) -> u32 {
    let mut best = (u64::MAX, 0);
    for k in 0..16u32 {
        let bits: u64 = values.clone().map(|v| exp_golomb_bits(v, k)).sum();
        if bits < best.0 {
            best = (bits, k);
        }
    }
    best.1
}

/// Bits of `v` in the Exp-Golomb code of order `k`.
#[inline]
fn exp_golomb_bits(v: u64, k: u32) -> u64 {
    let w = u128::from(v) + (1u128 << k);
    let len = 128 - w.leading_zeros();
    u64::from(2 * len - 1 - k)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A LEB128 number at the start of `data`, and the bytes after it.
fn get_varint(data: &[u8]) -> Result<(u64, &[u8]), Damaged> {
    let mut v: u64 = 0;
    for (i, &b) in data.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        // The tenth byte may hold one bit only.
        if i == 9 && part > 1 {
            return Err(Damaged::OutOfRange);
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, &data[i + 1..]));
        }
    }
    Err(if data.len() < 10 {
        Damaged::Truncated
    } else {
        Damaged::OutOfRange
    })
}

struct BitWriter {
    out: Vec<u8>,
    /// The last `bits` bits written and not yet a whole byte (`bits < 8`
    /// between calls).
    acc: u64,
    bits: u32,
}

impl BitWriter {
    /// Writes the low `n` bits of `v` (`n <= 32`), most significant first.
    #[inline]
    fn put(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 32 && self.bits < 8);
        if n == 0 {
            return;
        }
        // bits < 8 and n <= 32: the accumulator holds under 40 bits.
        self.acc = (self.acc << n) | (v & ((1u64 << n) - 1));
        self.bits += n;
        while self.bits >= 8 {
            self.bits -= 8;
            self.out.push((self.acc >> self.bits) as u8);
        }
        self.acc &= (1u64 << self.bits) - 1;
    }

    fn exp_golomb(&mut self, v: u64, k: u32) {
        let w = u128::from(v) + (1u128 << k);
        let len = 128 - w.leading_zeros();
        // `len - 1 - k` zeros, then `w` in `len` bits (at most 65).
        let mut zeros = len - 1 - k;
        while zeros > 0 {
            let n = zeros.min(32);
            self.put(0, n);
            zeros -= n;
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(32);
            self.put((w >> (left - n)) as u64, n);
            left -= n;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            self.out.push((self.acc << (8 - self.bits)) as u8);
        }
        self.out
    }
}

/// Bits a [`pair_table`] looks at.
const PAIR_BITS: u32 = 12;

/// For one pair of orders (gaps', counts'), what each window of the next
/// [`PAIR_BITS`] bits decodes to when a whole pair fits in it: the bits
/// used (low 4 bits, 1 to 12), the gap (next 14 bits) and `count - 1`
/// (high 14 bits); 0 where a pair does not fit (the bit-by-bit decoder
/// then takes it). One lookup instead of two codes for the common pair
/// (an hour row's counters take 4 bits on average). Built once per pair
/// of orders used, 16 KiB each.
pub(super) fn pair_table(kg: u32, kc: u32) -> &'static [u32] {
    static TABLES: [std::sync::OnceLock<Box<[u32]>>; 256] =
        [const { std::sync::OnceLock::new() }; 256];
    let slot = ((kg & 15) << 4 | (kc & 15)) as usize;
    TABLES[slot].get_or_init(|| {
        (0..1u32 << PAIR_BITS)
            .map(|w| {
                // Decodes one code of order k from bit `at` of the window
                // (most significant first); None if it does not fit.
                let code = |at: u32, k: u32| -> Option<(u32, u32)> {
                    // A whole code takes at least one bit.
                    let rest = PAIR_BITS.checked_sub(at).filter(|r| *r > 0)?;
                    let bits = w & ((1 << rest) - 1);
                    if bits == 0 {
                        return None;
                    }
                    // Leading zeros within the `rest` bits.
                    let zeros = bits.leading_zeros() - (32 - rest);
                    let len = zeros + k + 1;
                    if zeros + len > rest {
                        return None;
                    }
                    let v = (bits >> (rest - zeros - len)) & ((1 << len) - 1);
                    Some((v - (1 << k), at + zeros + len))
                };
                match code(0, kg).and_then(|(gap, at)| {
                    let (count, end) = code(at, kc)?;
                    Some((gap, count, end))
                }) {
                    Some((gap, count, used)) => used | gap << 4 | count << 18,
                    None => 0,
                }
            })
            .collect()
    })
}

/// The counters of a blob, one at a time.
pub struct Entries<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load.
    pos: usize,
    /// The next `bits` bits of the stream, left-aligned (the bits below
    /// them are zero).
    buf: u64,
    bits: u32,
    pub(super) kg: u32,
    pub(super) kc: u32,
    pub(super) remaining: u64,
    /// The previous counter's index plus one (0 before the first).
    next_index: u64,
    counts_len: u64,
}

impl<'a> Entries<'a> {
    /// The layout of `blob` and its counters.
    pub fn open(
        blob: &'a [u8],
        layouts: &Layouts,
    ) -> Result<(HistogramLayout, Entries<'a>), Damaged> {
        let (id, rest) = get_varint(blob)?;
        let layout = i64::try_from(id)
            .ok()
            .and_then(|id| layouts.get(id))
            .ok_or(Damaged::UnknownLayout)?;
        let (n, rest) = get_varint(rest)?;
        let counts_len = layout.counts_len() as u64;
        if n > counts_len {
            return Err(Damaged::OutOfRange);
        }
        let (orders, data) = if n == 0 {
            (0, rest)
        } else {
            let (&o, data) = rest.split_first().ok_or(Damaged::Truncated)?;
            (o, data)
        };
        Ok((
            layout,
            Entries {
                data,
                pos: 0,
                buf: 0,
                bits: 0,
                kg: u32::from(orders >> 4),
                kc: u32::from(orders & 0x0f),
                remaining: n,
                next_index: 0,
                counts_len,
            },
        ))
    }

    /// Loads whole bytes until at least 57 bits are held or the data
    /// ends.
    #[inline]
    fn refill(&mut self) {
        if let Some(word) = self.data.get(self.pos..self.pos + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            let word = u64::from_be_bytes(w);
            // bits <= 56 here: the shift is in range. Whole bytes only.
            let bytes = (64 - self.bits) / 8;
            let take = if bytes == 8 {
                word
            } else {
                word >> (64 - 8 * bytes) << (64 - 8 * bytes)
            };
            self.buf |= take >> self.bits;
            self.bits += 8 * bytes;
            self.pos += bytes as usize;
        } else {
            while self.bits <= 56 {
                let Some(&b) = self.data.get(self.pos) else {
                    return;
                };
                self.buf |= u64::from(b) << (56 - self.bits);
                self.bits += 8;
                self.pos += 1;
            }
        }
    }

    /// Drops `n` bits (`n <= bits`).
    #[inline]
    fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.bits);
        self.buf = if n >= 64 { 0 } else { self.buf << n };
        self.bits -= n;
    }

    /// Takes `n` bits (`n <= 32`).
    #[inline]
    fn take(&mut self, n: u32) -> Result<u64, Damaged> {
        if n == 0 {
            return Ok(0);
        }
        if self.bits < n {
            self.refill();
            if self.bits < n {
                return Err(Damaged::Truncated);
            }
        }
        let v = self.buf >> (64 - n);
        self.consume(n);
        Ok(v)
    }

    #[inline(always)]
    pub(super) fn exp_golomb(&mut self, k: u32) -> Result<u64, Damaged> {
        if self.bits < 40 {
            self.refill();
        }
        // The common case: the whole code is in the buffer.
        let zeros = self.buf.leading_zeros();
        let len = zeros + k + 1;
        if zeros < self.bits && zeros + len <= self.bits && len <= 63 {
            // `w` is the `len` bits after the zeros; its top bit is 1.
            let w = (self.buf << zeros) >> (64 - len);
            self.consume(zeros + len);
            return Ok(w - (1u64 << k));
        }
        self.exp_golomb_slow(k)
    }

    /// The next pair (gap, `count - 1`) by one lookup in `table` (a
    /// [`pair_table`] of this blob's orders), when it fits in the table's
    /// window.
    #[inline(always)]
    pub(super) fn pair(&mut self, table: &[u32]) -> Option<(u64, u64)> {
        if self.bits < PAIR_BITS {
            self.refill();
            if self.bits < PAIR_BITS {
                return None;
            }
        }
        let t = *table.get((self.buf >> (64 - PAIR_BITS)) as usize)?;
        if t == 0 {
            return None;
        }
        self.consume(t & 15);
        Some((u64::from((t >> 4) & 0x3fff), u64::from(t >> 18)))
    }

    /// Codes longer than the buffer, or near the end of the data.
    fn exp_golomb_slow(&mut self, k: u32) -> Result<u64, Damaged> {
        // Leading zeros: at most 64 (the largest value, u64::MAX at
        // order 0, has 64).
        let mut zeros = 0u32;
        loop {
            if self.bits == 0 {
                self.refill();
                if self.bits == 0 {
                    return Err(Damaged::Truncated);
                }
            }
            let lead = self.buf.leading_zeros();
            if lead >= self.bits {
                zeros += self.bits;
                self.consume(self.bits);
            } else {
                zeros += lead;
                self.consume(lead);
                break;
            }
            if zeros > 64 {
                return Err(Damaged::OutOfRange);
            }
        }
        if zeros > 64 {
            return Err(Damaged::OutOfRange);
        }
        // `w` in `zeros + k + 1` bits, its leading bit the 1 found.
        let mut left = zeros + k + 1;
        let mut w: u128 = 0;
        while left > 0 {
            let n = left.min(32);
            w = (w << n) | u128::from(self.take(n)?);
            left -= n;
        }
        u64::try_from(w - (1u128 << k)).map_err(|_| Damaged::OutOfRange)
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(u32, u64), Damaged>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let entry = (|| {
            let gap = self.exp_golomb(self.kg)?;
            let count = self.exp_golomb(self.kc)?;
            let index = self
                .next_index
                .checked_add(gap)
                .filter(|&i| i < self.counts_len)
                .ok_or(Damaged::OutOfRange)?;
            self.next_index = index + 1;
            let count = count.checked_add(1).ok_or(Damaged::OutOfRange)?;
            // Below counts_len (at most 2^24): fits u32.
            Ok((index as u32, count))
        })();
        if entry.is_err() {
            self.remaining = 0;
        }
        Some(entry)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn layout() -> HistogramLayout {
        HistogramLayout::new(1_000, 30_000_000_000, 2).unwrap()
    }

    pub(crate) fn layouts() -> Layouts {
        let mut l = Layouts::default();
        l.insert(1, layout());
        l
    }

    /// A small xorshift, so the test data is the same every run.
    pub(crate) fn rng(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    pub(crate) fn random_histogram(seed: u64, events: u64) -> Histogram<u64> {
        let mut r = rng(seed);
        let mut h = starpunk_perf::new_hdr(&layout());
        for _ in 0..events {
            let v = r();
            // Mostly 0.1 to 50 ms, some anywhere in (and past) the range.
            let ns = if v.is_multiple_of(50) {
                v >> (v % 64)
            } else {
                100_000 + (v % 1_000) * (v % 1_000) * 50
            };
            h.saturating_record_n(ns, 1 + (v >> 60) * (v % 3));
        }
        h
    }

    #[test]
    fn blobs_round_trip_exactly_and_are_small() {
        for (seed, events) in [(1, 0), (2, 1), (3, 20), (4, 600), (5, 15_000)] {
            let h = random_histogram(seed, events);
            let l = Latency::from_histogram(&h).unwrap();
            let blob = l.encode(1);
            let back = Latency::decode(&blob, &layouts()).unwrap();
            assert_eq!(back, l, "seed {seed}");
            assert_eq!(back.to_histogram(), h, "seed {seed}");
            let mut v2 = Vec::new();
            use hdrhistogram::serialization::Serializer;
            hdrhistogram::serialization::V2Serializer::new()
                .serialize(&h, &mut v2)
                .unwrap();
            assert!(blob.len() < v2.len(), "{} vs V2 {}", blob.len(), v2.len());
        }
        // Extremes: the last counter, a count of u64::MAX.
        let last = layout().counts_len() as u32 - 1;
        let l = Latency {
            layout: layout(),
            counts: vec![(0, u64::MAX), (last, 1)],
        };
        assert_eq!(Latency::decode(&l.encode(1), &layouts()).unwrap(), l);
    }
}
