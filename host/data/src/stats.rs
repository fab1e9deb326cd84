//! Dataset statistics for `mean: compute` in dataset configs.

use rayon::prelude::*;

/// Per-channel mean and (population) standard deviation of `pixel / 255` over `n` CHW samples
/// of `c x h x w` bytes.
///
/// Computed from exact per-channel histograms, so the result does not depend on summation order
/// or thread count. Only whole samples present in `raw` are counted (at most `n`); with no
/// samples, means and stds are 0.
pub fn mean_std(raw: &[u8], n: usize, c: usize, h: usize, w: usize) -> (Vec<f64>, Vec<f64>) {
    let hw = h * w;
    let per = c * hw;
    if per == 0 {
        return (vec![0.0; c], vec![0.0; c]);
    }
    let n = n.min(raw.len() / per);
    let hist = raw[..n * per]
        .par_chunks(per)
        .fold(
            || vec![[0u64; 256]; c],
            |mut acc, sample| {
                for (ch, plane) in sample.chunks_exact(hw).enumerate() {
                    for &v in plane {
                        acc[ch][v as usize] += 1;
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![[0u64; 256]; c],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    for (p, q) in x.iter_mut().zip(y) {
                        *p += q;
                    }
                }
                a
            },
        );
    let count = (n * hw) as f64;
    let mut means = Vec::with_capacity(c);
    let mut stds = Vec::with_capacity(c);
    for hch in &hist {
        if n == 0 {
            means.push(0.0);
            stds.push(0.0);
            continue;
        }
        let mean = hch.iter().enumerate().map(|(v, &k)| v as f64 / 255.0 * k as f64).sum::<f64>() / count;
        let var =
            hch.iter().enumerate().map(|(v, &k)| (v as f64 / 255.0 - mean).powi(2) * k as f64).sum::<f64>() / count;
        means.push(mean);
        stds.push(var.sqrt());
    }
    (means, stds)
}
