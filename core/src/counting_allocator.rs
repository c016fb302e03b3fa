//! A global allocator that counts allocations, for tests that prove a path
//! allocates nothing (here, so that no other crate needs `unsafe` for it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

std::thread_local! {
    /// Counting on this thread (a window is open).
    static OPEN: Cell<bool> = const { Cell::new(false) };
    /// Allocations and reallocations counted on this thread.
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// `System`, counting per thread the allocations and reallocations made
/// inside [`counted`](Self::counted) windows (minus nested
/// [`outside`](Self::outside) ones). Counts are per thread, so tests running
/// in parallel do not see each other's.
///
/// Install it in a test binary with `#[global_allocator]`; elsewhere it
/// counts nothing, since nothing goes through it.
///
/// # Examples
///
/// ```
/// use starpunk_perf::CountingAllocator;
///
/// // In a test binary: #[global_allocator]
/// // static ALLOCATOR: CountingAllocator = CountingAllocator;
/// let (v, allocations) = CountingAllocator::counted(|| {
///     CountingAllocator::outside(|| vec![1u8; 16]) // not counted
/// });
/// assert_eq!((v.len(), allocations), (16, 0));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAllocator;

impl CountingAllocator {
    /// Runs `f` with this thread's window open; returns its value and the
    /// allocations counted meanwhile.
    pub fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let before = COUNT.with(Cell::get);
        let was = OPEN.with(|o| o.replace(true));
        let value = f();
        OPEN.with(|o| o.set(was));
        (value, COUNT.with(Cell::get).wrapping_sub(before))
    }

    /// Runs `f` with this thread's window closed (work a
    /// [`counted`](Self::counted) caller leaves out).
    pub fn outside<T>(f: impl FnOnce() -> T) -> T {
        let was = OPEN.with(|o| o.replace(false));
        let value = f();
        OPEN.with(|o| o.set(was));
        value
    }

    #[inline]
    fn note() {
        // `try_with`: the allocator also runs while thread-locals are torn down.
        let _ = OPEN.try_with(|open| {
            if open.get() {
                let _ = COUNT.try_with(|c| c.set(c.get().wrapping_add(1)));
            }
        });
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counting touches only const-initialised thread-local
// `Cell`s without destructors, which never allocate or re-enter the
// allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note();
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note();
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note();
        // SAFETY: the caller's contract for `realloc` is passed on unchanged
        // (`ptr` came from this allocator, that is from `System`).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}
