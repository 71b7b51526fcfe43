//! Small, fast, seedable random streams (xoshiro256++ seeded through SplitMix64).
//!
//! Parallel work draws from one stream per work item, keyed by `(seed, stream)`, so results do not
//! depend on how rayon schedules the items or on the thread count.

pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// The independent stream number `stream` of `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut stream_state = stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut state = seed ^ splitmix64(&mut stream_state);
        let s = [splitmix64(&mut state), splitmix64(&mut state), splitmix64(&mut state), splitmix64(&mut state)];
        Rng { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform integer in `0..n` without modulo bias (Lemire's multiply-and-reject), `n > 0`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }
}

/// A stream number keyed by names instead of positions: FNV-1a over each name's bytes (UTF-8, or
/// the raw OS bytes of a name that is not text), every name closed by 0xFF (a byte UTF-8 never
/// holds, so `["ab", "c"]` and `["a", "bc"]` differ), then mixed. Draws keyed this way stay the
/// same when a subset or a reordering renumbers the data.
pub fn name_key<N: AsRef<[u8]>>(names: &[N]) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64;
    for name in names {
        for &b in name.as_ref().iter().chain(std::iter::once(&0xFF)) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    splitmix64(&mut h)
}

/// A seed derived from `seed` and names (see [`name_key`]), for APIs that take one seed.
pub fn name_seed<N: AsRef<[u8]>>(seed: u64, names: &[N]) -> u64 {
    Rng::new(seed, name_key(names)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7, 0);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(7, 0);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut other = Rng::new(7, 1);
        assert_ne!(a[0], other.next_u64());
    }

    #[test]
    fn below_is_uniform_enough() {
        let mut r = Rng::new(1, 2);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[r.below(6) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_400..10_600).contains(&c)), "{counts:?}");
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn name_keys_separate_names() {
        assert_eq!(name_key(&["ab", "c"]), name_key(&["ab", "c"]));
        assert_ne!(name_key(&["ab", "c"]), name_key(&["a", "bc"]));
        assert_ne!(name_key(&["a"]), name_key(&["a", ""]));
        assert_ne!(name_seed(0, &["x"]), name_seed(1, &["x"]));
        // Pinned: published evaluation draws depend on these values staying the same.
        assert_eq!(name_key(&["yale", "subject01"]), 5_317_161_062_223_719_344);
    }
}
