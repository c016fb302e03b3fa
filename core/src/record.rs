//! The fixed-size metric record the ring buffer holds.

use core::fmt;

/// What kind of operation a record measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Category {
    /// An HTTP request, named by method and route template.
    Http = 0,
    /// A SQL statement, named by its normalised pattern.
    Db = 1,
    /// A named function (note create, search, feed generation, ...).
    #[default]
    Function = 2,
    /// A memory sample (RSS); `duration_ns` is zero.
    Memory = 3,
}

impl Category {
    /// All categories, in their numeric order.
    pub const ALL: [Category; 4] = [
        Category::Http,
        Category::Db,
        Category::Function,
        Category::Memory,
    ];

    /// The category's lower-case name, as used in exports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Http => "http",
            Category::Db => "db",
            Category::Function => "function",
            Category::Memory => "memory",
        }
    }

    /// Decodes the numeric form; values past the last category give `None`.
    pub const fn from_u8(value: u8) -> Option<Category> {
        match value {
            0 => Some(Category::Http),
            1 => Some(Category::Db),
            2 => Some(Category::Function),
            3 => Some(Category::Memory),
            _ => None,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dense operation id handed out by [`OperationRegistry`](crate::OperationRegistry).
///
/// Ids run from 0 to the registry's capacity; the id equal to the capacity is
/// the overflow series that takes every name registered past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct OpId(pub u32);

impl OpId {
    /// "No operation": used for the `parent` of a record with no enclosing request.
    pub const NONE: OpId = OpId(u32::MAX);

    /// The id as an index.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// One measurement. `Copy`, fixed size, at most one 64-byte cache line.
///
/// Every field is a number: names live in the registry, never in a record,
/// so no SQL literal or secret can reach the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MetricRecord {
    /// Start time in nanoseconds on the recorder's clock (see
    /// [`Clock`](crate::Clock)); convertible to wall-clock time.
    pub timestamp_ns: u64,
    /// Duration in nanoseconds.
    pub duration_ns: u64,
    /// Response bytes (HTTP), or zero.
    pub bytes: u64,
    /// Rows returned or changed (DB), or zero.
    pub rows: u64,
    /// Change of resident memory across the operation, in bytes; for a
    /// `Memory` record the resident size itself.
    pub memory_delta: i64,
    /// Correlates records of one request: the request's sequence number.
    /// Only the low 40 bits survive the ring (see [`MetricRecord::REQUEST_ID_BITS`]).
    pub request_id: u64,
    /// The operation measured.
    pub operation: OpId,
    /// The enclosing operation (the route that ran a SQL statement), or [`OpId::NONE`].
    pub parent: OpId,
    /// HTTP status, or zero.
    pub status: u16,
    /// What was measured.
    pub category: Category,
    /// Kept in the ring although the sampler left it out (a 5xx response,
    /// a slow statement): detail views show it, sample-based estimates
    /// leave it out so it cannot bias them.
    pub forced: bool,
}

const _: () = assert!(core::mem::size_of::<MetricRecord>() <= 64);

impl MetricRecord {
    /// How many low bits of `request_id` the ring keeps.
    pub const REQUEST_ID_BITS: u32 = 40;
    const REQUEST_ID_MASK: u64 = (1 << Self::REQUEST_ID_BITS) - 1;

    /// Words the ring stores per record.
    pub(crate) const WORDS: usize = 7;

    /// Packs the record into the ring's seven words.
    ///
    /// Word layout: 0 timestamp, 1 duration, 2 bytes, 3 rows, 4 memory delta,
    /// 5 `operation | parent << 32`, 6 `category | forced << 7 | status << 8 |
    /// request_id << 24`.
    #[inline]
    pub(crate) fn to_words(self) -> [u64; Self::WORDS] {
        [
            self.timestamp_ns,
            self.duration_ns,
            self.bytes,
            self.rows,
            self.memory_delta as u64,
            u64::from(self.operation.0) | (u64::from(self.parent.0) << 32),
            u64::from(self.category as u8)
                | (u64::from(self.forced) << 7)
                | (u64::from(self.status) << 8)
                | ((self.request_id & Self::REQUEST_ID_MASK) << 24),
        ]
    }

    /// The inverse of [`to_words`](Self::to_words); `None` for a category
    /// byte no writer produces.
    #[inline]
    pub(crate) fn from_words(w: [u64; Self::WORDS]) -> Option<Self> {
        Some(Self {
            timestamp_ns: w[0],
            duration_ns: w[1],
            bytes: w[2],
            rows: w[3],
            memory_delta: w[4] as i64,
            operation: OpId(w[5] as u32),
            parent: OpId((w[5] >> 32) as u32),
            category: Category::from_u8(w[6] as u8 & 0x7F)?,
            forced: w[6] & 0x80 != 0,
            status: (w[6] >> 8) as u16,
            request_id: w[6] >> 24,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_at_extremes() {
        for v in [0u64, 1, u64::MAX] {
            let r = MetricRecord {
                timestamp_ns: v,
                duration_ns: v,
                bytes: v,
                rows: v,
                memory_delta: v as i64,
                request_id: v & MetricRecord::REQUEST_ID_MASK,
                operation: OpId(v as u32),
                parent: OpId((v >> 1) as u32),
                status: v as u16,
                category: Category::Memory,
                forced: v != 0,
            };
            assert_eq!(MetricRecord::from_words(r.to_words()), Some(r));
        }
    }

    #[test]
    fn request_id_keeps_low_bits_only() {
        let r = MetricRecord {
            request_id: u64::MAX,
            ..MetricRecord::default()
        };
        let back = MetricRecord::from_words(r.to_words()).unwrap();
        assert_eq!(back.request_id, (1 << 40) - 1);
    }
}
