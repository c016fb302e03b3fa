//! The sampling decision: cheap, uncontended, and overridable for errors.

/// Decides which events are recorded, at a fixed rate in `[0, 1]`.
///
/// The decision hashes caller-supplied entropy (or, with `std`, a
/// thread-local xorshift state) and compares it with a threshold: no shared
/// memory is written per event. Callers pass `keep = true` for events that
/// must never be sampled away (5xx responses, slow statements).
///
/// # Examples
///
/// ```
/// use starpunk_perf::Sampler;
///
/// let never = Sampler::new(0.0).unwrap();
/// assert!(!never.decide(42, false));
/// assert!(never.decide(42, true));
/// assert!(Sampler::new(1.0).unwrap().decide(7, false));
/// assert!(Sampler::new(1.5).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler {
    rate: f64,
    /// Keep when `hash < threshold`; `u64::MAX` with `always` means every event.
    threshold: u64,
    always: bool,
}

/// A sample rate outside `[0, 1]` (or NaN).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateError(pub f64);

impl core::fmt::Display for RateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "sample rate {} is not between 0.0 and 1.0", self.0)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RateError {}

impl Sampler {
    /// A sampler keeping a fraction `rate` of events.
    pub fn new(rate: f64) -> Result<Self, RateError> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(RateError(rate));
        }
        // `rate * 2^64` saturates to u64::MAX for rate 1.0 via the `always` flag.
        let threshold = (rate * 18_446_744_073_709_551_616.0) as u64;
        Ok(Self {
            rate,
            threshold,
            always: rate >= 1.0,
        })
    }

    /// The configured rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// True when every event is kept.
    pub fn keeps_all(&self) -> bool {
        self.always
    }

    /// Whether to record an event, given some entropy (any value that varies
    /// between events: a clock reading, a request counter).
    #[inline]
    pub fn decide(&self, entropy: u64, keep: bool) -> bool {
        keep || self.always || splitmix64(entropy) < self.threshold
    }

    /// Whether to record an event, drawing entropy from a thread-local
    /// generator (no shared state touched).
    #[cfg(feature = "std")]
    #[inline]
    pub fn decide_local(&self, keep: bool) -> bool {
        if keep || self.always {
            return true;
        }
        self.decide(thread_entropy(), false)
    }
}

/// SplitMix64's finaliser: a fast, well-mixed 64-bit hash.
#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(feature = "std")]
fn thread_entropy() -> u64 {
    use std::cell::Cell;
    /// Each thread's first state is drawn from this sequence (Weyl steps
    /// through splitmix64), so no two threads share a stream; the stack
    /// address of the first call mixes in a per-process difference. A
    /// plain std atomic, never loom's: a seed counter is no protocol to
    /// model, and loom's atomics cannot live in a `static`.
    static SEEDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    fn seed() -> u64 {
        let n = SEEDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = 0u8;
        let addr = core::ptr::addr_of!(marker) as u64;
        splitmix64(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ splitmix64(addr))
    }
    std::thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        let next = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(next);
        next
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn rate_is_respected_roughly() {
        let s = Sampler::new(0.1).unwrap();
        let kept = (0..100_000u64).filter(|&i| s.decide(i, false)).count();
        assert!((9_000..11_000).contains(&kept), "kept {kept}");
        let kept = (0..100_000).filter(|_| s.decide_local(false)).count();
        assert!((9_000..11_000).contains(&kept), "kept {kept}");
    }

    #[test]
    fn threads_draw_independent_decisions() {
        let run = || -> std::vec::Vec<bool> {
            let s = Sampler::new(0.5).unwrap();
            (0..64).map(|_| s.decide_local(false)).collect()
        };
        let runs: std::vec::Vec<_> = (0..4)
            .map(|_| std::thread::spawn(run).join().unwrap())
            .collect();
        // Four threads, 64 decisions each: identical streams would make
        // every pair equal; independent ones agree on about half.
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
                assert!(
                    same < 56,
                    "{same} of 64 decisions equal: threads share a stream"
                );
            }
        }
    }

    #[test]
    fn bounds_and_nan() {
        assert!(Sampler::new(-0.01).is_err());
        assert!(Sampler::new(f64::NAN).is_err());
        let zero = Sampler::new(0.0).unwrap();
        assert!((0..10_000u64).all(|i| !zero.decide(i, false)));
        assert!(zero.decide(u64::MAX, true));
        let one = Sampler::new(1.0).unwrap();
        assert!([0, 1, u64::MAX].iter().all(|&i| one.decide(i, false)));
    }
}
