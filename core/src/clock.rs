//! Injectable clocks: a TSC-class one for production, a fake one for tests.

use crate::sync::{AtomicU64, Ordering};

/// A monotonic nanosecond clock. Readings count from the clock's own epoch
/// (its creation); [`WallAnchor`] converts them to wall-clock time.
pub trait Clock: Send + Sync {
    /// Nanoseconds since the clock's epoch. Never decreases.
    fn now_ns(&self) -> u64;
}

/// A clock tests set by hand.
///
/// # Examples
///
/// ```
/// use starpunk_perf::{Clock, FakeClock};
///
/// let c = FakeClock::new(5);
/// c.advance(10);
/// assert_eq!(c.now_ns(), 15);
/// ```
#[derive(Debug, Default)]
pub struct FakeClock {
    now: AtomicU64,
}

impl FakeClock {
    /// A clock reading `start_ns`.
    pub fn new(start_ns: u64) -> Self {
        Self {
            now: AtomicU64::new(start_ns),
        }
    }

    /// Moves the clock forward by `ns`.
    pub fn advance(&self, ns: u64) {
        self.now.fetch_add(ns, Ordering::Relaxed);
    }

    /// Sets the reading.
    pub fn set(&self, ns: u64) {
        self.now.store(ns, Ordering::Relaxed);
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}

/// The production clock: `quanta`, which reads the TSC where the CPU's is
/// invariant and falls back to the OS monotonic clock elsewhere.
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct TscClock {
    clock: quanta::Clock,
    start: u64,
}

#[cfg(feature = "std")]
impl TscClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let start = clock.raw();
        Self { clock, start }
    }
}

#[cfg(feature = "std")]
impl Default for TscClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for TscClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.clock.delta_as_nanos(self.start, self.clock.raw())
    }
}

/// Pairs a clock reading with the wall-clock time at one instant, so ring
/// timestamps convert to Unix time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallAnchor {
    /// Unix time in nanoseconds at the anchor.
    pub unix_ns: u64,
    /// The clock's reading at the anchor.
    pub clock_ns: u64,
}

impl WallAnchor {
    /// An anchor for `clock`, taken now.
    #[cfg(feature = "std")]
    pub fn now(clock: &dyn Clock) -> Self {
        let unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            unix_ns,
            clock_ns: clock.now_ns(),
        }
    }

    /// Unix time in nanoseconds of clock reading `clock_ns`.
    pub fn to_unix_ns(&self, clock_ns: u64) -> u64 {
        if clock_ns >= self.clock_ns {
            self.unix_ns.saturating_add(clock_ns - self.clock_ns)
        } else {
            self.unix_ns.saturating_sub(self.clock_ns - clock_ns)
        }
    }
}

#[cfg(all(test, not(loom), feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn tsc_clock_is_monotonic_and_tracks_instant() {
        let c = TscClock::new();
        let i = std::time::Instant::now();
        let a = c.now_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = c.now_ns();
        let real = i.elapsed().as_nanos() as u64;
        assert!(b > a);
        // Within 20% of the OS clock over 20 ms.
        let d = b - a;
        assert!(
            d > real * 8 / 10 / 2 && d < real * 12 / 10 + 5_000_000,
            "{d} vs {real}"
        );
    }

    #[test]
    fn anchor_converts_both_ways() {
        let a = WallAnchor {
            unix_ns: 1_000,
            clock_ns: 100,
        };
        assert_eq!(a.to_unix_ns(150), 1_050);
        assert_eq!(a.to_unix_ns(50), 950);
        assert_eq!(a.to_unix_ns(u64::MAX), u64::MAX);
        let z = WallAnchor {
            unix_ns: 0,
            clock_ns: u64::MAX,
        };
        assert_eq!(z.to_unix_ns(0), 0);
    }
}
