//! The recorder of starpunk-perf: a lock-free, allocation-free recording
//! path for a blog's requests, SQL statements and named functions.
//!
//! - [`RingBuffer`]: the last N [`MetricRecord`]s, many writers, torn-free snapshots.
//! - [`OperationRegistry`]: names (route templates, SQL patterns) to dense [`OpId`]s.
//! - [`LatencyHistogram`] over a [`HistogramLayout`]: HdrHistogram's buckets in atomics.
//! - [`RecentWindow`]: the last 15 minutes as differences of checkpoints.
//! - [`Sampler`]: the cheap, uncontended sampling decision.
//! - [`Clock`]: injectable time ([`TscClock`] with `std`, [`FakeClock`] for tests).
//! - [`Recorder`]: all of the above behind `register`, `record` and `time`,
//!   built from a validated [`RecorderConfig`].
//! - `CountingAllocator` (with `std`): counts allocations per thread, for
//!   the tests that prove a path allocates nothing.
//!
//! The crate is `no_std` with `alloc`; the default `std` feature adds the
//! TSC clock, thread-local sampling and snapshots into
//! `hdrhistogram::Histogram`.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

mod clock;
mod config;
#[cfg(all(feature = "std", not(loom)))]
mod counting_allocator;
mod latency_histogram;
mod layout;
mod recent_window;
mod record;
mod recorder;
mod registry;
mod ring_buffer;
mod sampler;
mod seq_lock;
mod series;
mod stripe;
mod sync;

#[cfg(feature = "std")]
pub use clock::TscClock;
pub use clock::{Clock, FakeClock, WallAnchor};
pub use config::{
    ConfigError, RecorderConfig, DEFAULT_HIGHEST_NS, DEFAULT_LOWEST_NS, MAX_BUCKETS,
    MAX_WINDOW_INTERVALS, MAX_WINDOW_INTERVAL_NS,
};
#[cfg(all(feature = "std", not(loom)))]
pub use counting_allocator::CountingAllocator;
#[cfg(feature = "std")]
pub use latency_histogram::new_hdr;
pub use latency_histogram::{LatencyHistogram, CARRY_SLOTS, COUNT_STRIPES};
pub use layout::{CreationError, HistogramLayout};
pub use recent_window::{RecentWindow, WindowTotals};
pub use record::{Category, MetricRecord, OpId};
pub use recorder::{Recorder, TimingGuard};
pub use registry::{Entry, OperationRegistry};
pub use ring_buffer::{RingBuffer, RingStats};
pub use sampler::{splitmix64, RateError, Sampler};
pub use series::{MemoryDeltas, Series, SeriesView, STATUS_SLOTS};
pub use stripe::{stripe, LinePadded, STRIPES};
