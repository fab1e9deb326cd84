//! Reproducible random tensors from an explicit seed, without libtorch's global generator.
//!
//! The global generator is shared by every thread of a process: two tests that call
//! `tch::manual_seed` and then draw can interleave and get each other's numbers. Fixtures, test
//! data and fixed initialisations that must be the same every time draw from here instead.
use tch::{Device, Kind, Tensor};

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny generator with a full 2^64 period whose
/// outputs pass BigCrush; plenty for test data.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The whole state, to checkpoint; [`SplitMix64::new`] of it continues the sequence.
    pub fn state(&self) -> u64 {
        self.0
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below n / 2^64). `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "below(0)");
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Bernoulli(p).
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_open01() < p
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1): never 0, so that `ln` is finite.
    pub fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal, by Box-Muller.
    pub fn next_normal(&mut self) -> f64 {
        let (u1, u2) = (self.next_open01(), self.next_open01());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A float32 CPU tensor of standard-normal values; the same `seed` gives the same tensor.
pub fn normal(shape: &[i64], seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let n: i64 = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.next_normal() as f32).collect();
    Tensor::from_slice(&values).view(shape)
}

/// An int64 CPU tensor of integers in `[0, high)`; the same `seed` gives the same tensor.
pub fn randint(high: i64, shape: &[i64], seed: u64) -> Tensor {
    assert!(high > 0, "randint needs high > 0, got {high}");
    let mut rng = SplitMix64::new(seed);
    let n: i64 = shape.iter().product();
    let values: Vec<i64> = (0..n).map(|_| (rng.next_u64() % high as u64) as i64).collect();
    Tensor::from_slice(&values).view(shape)
}

/// Like [`normal`], in `kind` on `device`.
pub fn normal_on(shape: &[i64], seed: u64, (kind, device): (Kind, Device)) -> Tensor {
    normal(shape, seed).to_kind(kind).to_device(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_tensor_and_moments_of_a_normal() {
        assert!(normal(&[3, 4], 5).equal(&normal(&[3, 4], 5)));
        assert!(!normal(&[3, 4], 5).equal(&normal(&[3, 4], 6)));
        let big = normal(&[100_000], 1);
        let mean = big.mean(Kind::Double).double_value(&[]);
        let std = big.std(true).double_value(&[]);
        assert!(mean.abs() < 0.02 && (std - 1.0).abs() < 0.02, "mean {mean} std {std}");
        let ints = randint(4, &[10_000], 2);
        assert_eq!(ints.min().int64_value(&[]), 0);
        assert_eq!(ints.max().int64_value(&[]), 3);
        // Every value appears about a quarter of the time.
        let ones = ints.eq(1).sum(Kind::Int64).int64_value(&[]);
        assert!((2300..2700).contains(&ones), "{ones}");
    }
}
