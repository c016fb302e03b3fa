//! Interns operation names into dense ids, with a per-id payload.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr;

use crate::record::{Category, OpId};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering, SpinLock};

/// One registered operation: its category, its name and the caller's payload
/// (the recorder keeps the operation's histograms here).
#[derive(Debug)]
pub struct Entry<T> {
    /// The category the name was registered under.
    pub category: Category,
    /// The name: a route template, a SQL pattern or a function name.
    pub name: String,
    /// Per-operation data, created once at registration.
    pub value: T,
}

/// A bounded map from `(category, name)` to a dense [`OpId`].
///
/// Registering takes a spin lock and may allocate (the cold path, once per
/// distinct name). Reading an entry by id never locks: entries are published
/// with a release store and never move or change until the registry drops.
/// Past `capacity` names every new name gets the overflow id, `OpId(capacity)`.
///
/// # Examples
///
/// ```
/// use starpunk_perf::{Category, OpId, OperationRegistry};
///
/// let reg = OperationRegistry::new(1, "(other)", |_| ());
/// let a = reg.register(Category::Http, "GET /", |_| ());
/// assert_eq!(a, OpId(0));
/// assert_eq!(reg.register(Category::Http, "GET /", |_| ()), a);
/// assert_eq!(reg.register(Category::Http, "GET /x", |_| ()), reg.overflow_id());
/// assert_eq!(reg.get(a).unwrap().name, "GET /");
/// ```
pub struct OperationRegistry<T> {
    /// `slots[i]` is null until entry `i` is published; then it points at a
    /// leaked `Box<Entry<T>>` that lives until `Drop`. Only indices below
    /// `len` are ever non-null.
    slots: Box<[AtomicPtr<Entry<T>>]>,
    /// Entries published; grows by one under `lock`, release-ordered after
    /// the slot's pointer store.
    len: AtomicUsize,
    /// The overflow series, id `slots.len()`.
    overflow: Entry<T>,
    lock: SpinLock,
}

// SAFETY: the registry owns its entries (boxed `Entry<T>`); sharing `&Self`
// hands out `&Entry<T>` across threads, which needs `T: Sync`, and dropping it
// on another thread needs `T: Send`.
unsafe impl<T: Send + Sync> Sync for OperationRegistry<T> {}
// SAFETY: as above: moving the registry moves ownership of its boxed entries.
unsafe impl<T: Send> Send for OperationRegistry<T> {}

impl<T> OperationRegistry<T> {
    /// A registry for `capacity` names plus the overflow entry named
    /// `overflow_name`, whose payload `make` creates now.
    pub fn new(capacity: usize, overflow_name: &str, make: impl FnOnce(Category) -> T) -> Self {
        let capacity = capacity.min(u32::MAX as usize - 1);
        let mut slots = Vec::with_capacity(capacity);
        slots.resize_with(capacity, || AtomicPtr::new(ptr::null_mut()));
        Self {
            slots: slots.into_boxed_slice(),
            len: AtomicUsize::new(0),
            overflow: Entry {
                category: Category::Function,
                name: String::from(overflow_name),
                value: make(Category::Function),
            },
            lock: SpinLock::new(),
        }
    }

    /// Names this registry holds before overflowing.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Names registered so far (not counting the overflow entry).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// True before the first registration.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id every name past capacity shares.
    pub fn overflow_id(&self) -> OpId {
        OpId(self.slots.len() as u32)
    }

    /// The id of `(category, name)`, registering it (and creating its payload
    /// with `make`) if it is new. Returns the overflow id when full.
    ///
    /// `make` runs outside the registry's lock, so it may itself call
    /// `register` (before, a call from inside `make` spun forever on the
    /// lock it held). When another registration of the same name wins
    /// meanwhile (another thread's, or one made inside `make`), this one's
    /// entry is dropped and the winner's id returned: `make` may run for a
    /// name that ends up with another payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use starpunk_perf::{Category, OpId, OperationRegistry};
    ///
    /// let reg = OperationRegistry::new(4, "(other)", |_| 0);
    /// // `make` registers another name first: both get ids.
    /// let outer = reg.register(Category::Http, "GET /", |_| {
    ///     reg.register(Category::Db, "SELECT 1", |_| 2);
    ///     1
    /// });
    /// assert_eq!(outer, OpId(1));
    /// assert_eq!(reg.lookup(Category::Db, "SELECT 1"), Some(OpId(0)));
    /// ```
    pub fn register(
        &self,
        category: Category,
        name: &str,
        make: impl FnOnce(Category) -> T,
    ) -> OpId {
        if let Some(id) = self.find(category, name) {
            return id;
        }
        if self.len() == self.slots.len() {
            return self.overflow_id();
        }
        let entry = Box::new(Entry {
            category,
            name: String::from(name),
            value: make(category),
        });
        self.lock.with(|| {
            let len = self.len.load(Ordering::Relaxed);
            // Another registration may have won between our scan and the lock.
            if let Some(id) = self.find(category, name) {
                return id;
            }
            if len == self.slots.len() {
                return self.overflow_id();
            }
            self.slots[len].store(Box::into_raw(entry), Ordering::Release);
            self.len.store(len + 1, Ordering::Release);
            OpId(len as u32)
        })
    }

    /// The id of `(category, name)` if registered, without registering.
    pub fn lookup(&self, category: Category, name: &str) -> Option<OpId> {
        self.find(category, name)
    }

    fn find(&self, category: Category, name: &str) -> Option<OpId> {
        (0..self.len())
            .filter_map(|i| self.get(OpId(i as u32)).map(|e| (i, e)))
            .find(|(_, e)| e.category == category && e.name == name)
            .map(|(i, _)| OpId(i as u32))
    }

    /// The entry of `id`: a registered one, the overflow entry, or `None`
    /// for an id never handed out. Never locks.
    #[inline]
    pub fn get(&self, id: OpId) -> Option<&Entry<T>> {
        let i = id.index();
        if i == self.slots.len() {
            return Some(&self.overflow);
        }
        let p = self.slots.get(i)?.load(Ordering::Acquire);
        // SAFETY: a non-null pointer was made by `Box::into_raw` in `register`
        // and published with a release store that this acquire load
        // synchronises with, so the entry is fully initialised; it is freed
        // only in `Drop`, which cannot run while `&self` is borrowed, and it
        // is never mutated after publication, so a shared borrow is sound.
        unsafe { p.as_ref() }
    }

    /// Every entry, registered ones first by id, then the overflow entry.
    pub fn iter(&self) -> impl Iterator<Item = (OpId, &Entry<T>)> + '_ {
        (0..=self.slots.len())
            .map(|i| OpId(i as u32))
            .filter_map(|id| self.get(id).map(|e| (id, e)))
    }
}

impl<T> Drop for OperationRegistry<T> {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut() {
            // Reads through `&mut`, so no other thread can hold an entry.
            let p = slot.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: `p` came from `Box::into_raw` in `register`, was
                // stored once, and `&mut self` proves no borrow of it is alive.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

impl<T> core::fmt::Debug for OperationRegistry<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OperationRegistry")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_id_and_categories_are_separate() {
        let reg = OperationRegistry::new(8, "(other)", |_| ());
        let a = reg.register(Category::Http, "x", |_| ());
        let b = reg.register(Category::Db, "x", |_| ());
        assert_ne!(a, b);
        assert_eq!(reg.register(Category::Http, "x", |_| ()), a);
        assert_eq!(reg.lookup(Category::Db, "x"), Some(b));
        assert_eq!(reg.lookup(Category::Function, "x"), None);
        assert_eq!(reg.len(), 2);
    }

    #[test]
    fn overflow_past_capacity_and_unknown_ids() {
        let reg = OperationRegistry::new(2, "(other)", |_| 7u8);
        let ids: Vec<_> = (0..5)
            .map(|i| reg.register(Category::Http, &alloc::format!("n{i}"), |_| i))
            .collect();
        assert_eq!(ids, [OpId(0), OpId(1), OpId(2), OpId(2), OpId(2)]);
        assert_eq!(reg.get(OpId(2)).unwrap().name, "(other)");
        assert_eq!(reg.get(OpId(2)).unwrap().value, 7);
        assert!(reg.get(OpId(3)).is_none());
        assert!(reg.get(OpId(u32::MAX)).is_none());
        assert_eq!(reg.iter().count(), 3);
    }

    #[test]
    fn register_from_inside_make_never_spins() {
        let reg = OperationRegistry::new(4, "(other)", |_| 0u8);
        // The same name registered from inside its own `make`: the inner
        // registration wins, the outer entry is dropped.
        let id = reg.register(Category::Http, "x", |_| {
            assert_eq!(reg.register(Category::Http, "x", |_| 2), OpId(0));
            1
        });
        assert_eq!(id, OpId(0));
        assert_eq!(reg.get(id).unwrap().value, 2);
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn zero_capacity_sends_everything_to_overflow() {
        let reg = OperationRegistry::new(0, "(other)", |_| ());
        assert_eq!(reg.register(Category::Db, "q", |_| ()), OpId(0));
        assert_eq!(reg.get(OpId(0)).unwrap().name, "(other)");
    }

    #[test]
    fn concurrent_registration_yields_one_id() {
        let reg = OperationRegistry::new(64, "(other)", |_| ());
        let ids: Vec<Vec<OpId>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let reg = &reg;
                    s.spawn(move || {
                        (0..50)
                            .map(|i| {
                                reg.register(Category::Db, &alloc::format!("q{}", i % 10), |_| ())
                            })
                            .collect()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(reg.len(), 10);
        for v in &ids[1..] {
            assert_eq!(v, &ids[0]);
        }
    }
}
