//! Seeding and the few random primitives the pipeline needs.
//!
//! Each random decision draws from a generator keyed by *where* it happens (seed, epoch, sample
//! index, purpose), so no generator state is shared between threads or carried across epochs.
//! Bounded integers and shuffles are written here rather than taken from `rand` because `rand`
//! has changed those algorithms between versions, which would silently change seeded runs.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Purpose tags, so that streams for different decisions never coincide even with equal keys.
pub(crate) const TAG_SPLIT: u64 = 0x5350_4c49_5400_0001;
pub(crate) const TAG_SAMPLER: u64 = 0x5341_4d50_4c00_0002;
pub(crate) const TAG_AUGMENT: u64 = 0x4155_474d_0000_0003;
pub(crate) const TAG_BENCH: u64 = 0x4245_4e43_4800_0004;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a sequence of keys into one 64-bit value (order matters).
pub fn mix(keys: &[u64]) -> u64 {
    let mut state = 0x6172_6368_6169_2d72; // "archai-r"
    let mut out = splitmix64(&mut state);
    for &k in keys {
        state ^= k;
        out = splitmix64(&mut state) ^ out.rotate_left(17);
    }
    out
}

/// A ChaCha8 generator keyed by `keys`.
pub fn rng_for(keys: &[u64]) -> ChaCha8Rng {
    let mut state = mix(keys);
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    ChaCha8Rng::from_seed(seed)
}

/// Uniform integer in `0..n` (`n > 0`), without modulo bias (Lemire's multiply-and-reject).
pub(crate) fn below(rng: &mut impl RngCore, n: u64) -> u64 {
    debug_assert!(n > 0);
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = (rng.next_u64() as u128) * (n as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Uniform float in `[0, 1)` with 53 random bits.
pub(crate) fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Fisher-Yates shuffle.
pub(crate) fn shuffle<T>(rng: &mut impl RngCore, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_streams_are_stable_and_distinct() {
        assert_eq!(rng_for(&[1, 2]).next_u64(), rng_for(&[1, 2]).next_u64());
        assert_ne!(rng_for(&[1, 2]).next_u64(), rng_for(&[2, 1]).next_u64());
        assert_ne!(mix(&[0]), mix(&[0, 0]));
    }

    #[test]
    fn below_covers_range_uniformly() {
        let mut r = rng_for(&[7]);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[below(&mut r, 6) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_500..10_500).contains(&c)), "{counts:?}");
        let u = unit(&mut r);
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..100).collect();
        shuffle(&mut rng_for(&[3]), &mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
