//! The one place that names atomics: `core`'s in normal builds, loom's under
//! `--cfg loom`. Nothing else in the crate imports `core::sync::atomic`.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering,
};

/// 64-bit counters: native where the target has 64-bit atomics (every
/// server target), `portable-atomic`'s otherwise (a 32-bit microcontroller
/// such as `thumbv7em-none-eabihf`: there its fallback takes a short global
/// lock per 64-bit operation, so on such a target the recording path is not
/// lock-free; see docs/ARCHITECTURE.md).
#[cfg(all(not(loom), target_has_atomic = "64"))]
pub(crate) use core::sync::atomic::{AtomicI64, AtomicU64};
#[cfg(all(not(loom), not(target_has_atomic = "64")))]
pub(crate) use portable_atomic::{AtomicI64, AtomicU64};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

/// Tells the processor (or loom's scheduler) that we are spinning.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// A minimal test-and-test-and-set lock for the registry's cold path.
///
/// `std::sync::Mutex` is not available without `std`; registration is rare
/// and short, so spinning is the right trade here. The recording path never
/// takes this lock.
pub(crate) struct SpinLock {
    locked: AtomicBool,
}

impl SpinLock {
    pub(crate) fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    /// Runs `f` with the lock held.
    pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        loop {
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
            while self.locked.load(Ordering::Relaxed) {
                spin_loop();
            }
        }
        struct Unlock<'a>(&'a AtomicBool);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _unlock = Unlock(&self.locked);
        f()
    }
}
