//! Stratified train/validation split, used by architecture search to hold out part of the
//! training set with the same class balance.

use crate::rng::{rng_for, shuffle, TAG_SPLIT};
use std::collections::BTreeMap;

/// Splits sample indices `0..labels.len()` into `(train, val)`: within each class the indices are
/// shuffled (seeded) and `round(val_ratio * class_count)` of them go to validation.
///
/// Both lists are returned in ascending order (the sampler shuffles later); the same labels,
/// ratio and seed always give the same split. `val_ratio` is clamped to `[0, 1]` (NaN counts as
/// 0); the config layer is expected to reject out-of-range ratios with its own message.
pub fn stratified_train_val(labels: &[i64], val_ratio: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let ratio = if val_ratio.is_nan() { 0.0 } else { val_ratio.clamp(0.0, 1.0) };
    // BTreeMap so classes are visited in label order; a HashMap would make the draw order, and so
    // the split, depend on hashing.
    let mut by_class: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let mut train = Vec::with_capacity(labels.len());
    let mut val = Vec::new();
    for (class, mut members) in by_class {
        // One stream per class: adding or removing a class leaves the others' splits unchanged.
        shuffle(&mut rng_for(&[TAG_SPLIT, seed, class as u64]), &mut members);
        let n_val = ((ratio * members.len() as f64).round() as usize).min(members.len());
        val.extend_from_slice(&members[..n_val]);
        train.extend_from_slice(&members[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}
