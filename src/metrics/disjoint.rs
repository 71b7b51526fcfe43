//! The one way threads of the metrics share an output buffer: each writes (and reads back) only
//! indices no other thread touches, ranges computed beforehand (histogram offsets, key ranges, curve
//! pieces). The caller's SAFETY comment names why its indices are disjoint and in bounds.

/// A buffer's start, handed to several threads that touch disjoint indices of it.
#[derive(Clone, Copy)]
pub(crate) struct Disjoint<T>(*mut T);

// SAFETY: a Disjoint is only a pointer; every access is an `unsafe` call whose caller guarantees
// that no two threads touch one index (see the module documentation).
unsafe impl<T: Send> Send for Disjoint<T> {}
unsafe impl<T: Send> Sync for Disjoint<T> {}

impl<T: Copy> Disjoint<T> {
    pub(crate) fn new(start: *mut T) -> Self {
        Disjoint(start)
    }

    /// # Safety
    /// `i` lies inside the buffer and no other thread reads or writes index `i` meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn write(self, i: usize, value: T) {
        *self.0.add(i) = value;
    }

    /// # Safety
    /// Index `i` is inside the buffer, initialised, and no other thread writes it meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn read(self, i: usize) -> T {
        *self.0.add(i)
    }

    /// The buffer's start.
    #[inline(always)]
    pub(crate) fn ptr(self) -> *mut T {
        self.0
    }

    /// The buffer from index `n` on.
    ///
    /// # Safety
    /// `n` is at most the buffer's length.
    #[inline(always)]
    pub(crate) unsafe fn offset(self, n: usize) -> Self {
        Disjoint(self.0.add(n))
    }
}
