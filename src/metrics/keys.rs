//! Score keys: the order-preserving integer key of a finite score, as wide as the score (float32
//! scores key as 32-bit integers, float64 as 64-bit), and the genuine/impostor key pair the metrics
//! sort and walk. The bottom layer of the metrics: it imports nothing from them.

/// Genuine and impostor keys of one width.
pub enum KeyPair {
    Wide { pos: Vec<u64>, neg: Vec<u64> },
    Narrow { pos: Vec<u32>, neg: Vec<u32> },
}

/// A score type the metrics take as it comes (float64, or float32 without widening): its
/// order-preserving integer key is as wide as the score, so float32 scores sort as 32-bit keys.
pub trait Score: Copy + Send + Sync + std::fmt::Display + 'static {
    type Key: SortKey;
    fn is_finite(self) -> bool;
    /// The score as float64 (exact for both widths).
    fn value(self) -> f64;
    /// The order-preserving key of a finite score (-0.0 and 0.0 share one).
    fn key(self) -> Self::Key;
}

/// An order-preserving key of a finite score: never 0 (0 marks an exhausted side in the ROC walk).
pub trait SortKey: Copy + Ord + Default + Send + Sync + super::scratch::Pooled + 'static {
    const BITS: u32;
    const MAX: Self;
    fn to_u64(self) -> u64;
    /// The key whose [`SortKey::to_u64`] is `k`.
    fn from_u64(k: u64) -> Self;
    /// The score the key came from, as float64 (exact for both widths).
    fn value(self) -> f64;
    /// Genuine and impostor keys of this width, as the metrics hold them.
    fn pair(pos: Vec<Self>, neg: Vec<Self>) -> KeyPair;
}

impl Score for f64 {
    type Key = u64;
    #[inline]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline]
    fn value(self) -> f64 {
        self
    }
    #[inline]
    fn key(self) -> u64 {
        ordered_key(self)
    }
}

impl Score for f32 {
    type Key = u32;
    #[inline]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline]
    fn value(self) -> f64 {
        self as f64
    }
    #[inline]
    fn key(self) -> u32 {
        let x = if self == 0.0 { 0.0 } else { self };
        let bits = x.to_bits();
        if bits >> 31 == 1 {
            !bits
        } else {
            bits | (1 << 31)
        }
    }
}

impl SortKey for u64 {
    const BITS: u32 = 64;
    const MAX: u64 = u64::MAX;
    #[inline]
    fn to_u64(self) -> u64 {
        self
    }
    #[inline]
    fn from_u64(k: u64) -> u64 {
        k
    }
    #[inline]
    fn value(self) -> f64 {
        key_value(self)
    }
    fn pair(pos: Vec<u64>, neg: Vec<u64>) -> KeyPair {
        KeyPair::Wide { pos, neg }
    }
}

impl SortKey for u32 {
    const BITS: u32 = 32;
    const MAX: u32 = u32::MAX;
    #[inline]
    fn to_u64(self) -> u64 {
        self as u64
    }
    #[inline]
    fn from_u64(k: u64) -> u32 {
        k as u32
    }
    #[inline]
    fn value(self) -> f64 {
        let bits = if self >> 31 == 1 { self & !(1 << 31) } else { !self };
        f32::from_bits(bits) as f64
    }
    fn pair(pos: Vec<u32>, neg: Vec<u32>) -> KeyPair {
        KeyPair::Narrow { pos, neg }
    }
}

/// Order-preserving map from a finite f64 to u64 (`a < b` iff `key(a) < key(b)`; -0.0 and 0.0 map
/// to one key, as they compare equal).
#[inline]
pub fn ordered_key(x: f64) -> u64 {
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Inverse of [`ordered_key`].
#[inline]
pub fn key_value(key: u64) -> f64 {
    let bits = if key >> 63 == 1 { key & !(1 << 63) } else { !key };
    f64::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_matches_float_order() {
        let xs = [-1e300, -2.5, -1.0, -f64::MIN_POSITIVE, -0.0, 0.0, 5e-324, 0.5, 1.0, 1e300];
        for w in xs.windows(2) {
            assert!(ordered_key(w[0]) <= ordered_key(w[1]), "{w:?}");
            assert_eq!(key_value(ordered_key(w[1])), w[1]);
        }
        assert_eq!(ordered_key(-0.0), ordered_key(0.0));
        let ys = [f32::MIN, -2.5, -1.0, -f32::MIN_POSITIVE, -0.0, 0.0, 1e-45, 0.5, 1.0, f32::MAX];
        for w in ys.windows(2) {
            assert!(w[0].key() <= w[1].key(), "{w:?}");
            assert!(w[1].key() != 0);
            assert_eq!(w[1].key().value(), w[1] as f64);
        }
        assert_eq!((-0.0f32).key(), 0.0f32.key());
    }
}
