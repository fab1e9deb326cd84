//! Archai's distributed stratified sampler, as pure index logic.
//!
//! Every rank computes the same seeded permutation of the same indices, so the ranks agree on a
//! partition without communicating; each takes its own class-balanced shard.

use crate::rng::{rng_for, shuffle, TAG_SAMPLER};
use crate::DataError;

/// Gives rank `rank` of `world` an equal-sized, class-balanced shard of a set of sample indices,
/// reshuffled every epoch from the seed.
///
/// Per epoch: the indices are permuted (seeded by seed and epoch; identity when `shuffle` is
/// off), padded to `ceil(N / world) * world` by repeating the permutation from its start, and
/// split into `world` stratified folds; this rank gets its fold. Every original index lands in
/// exactly one shard; only the padding repeats indices. Each shard has the same length and, for
/// every class, the counts in different shards differ by at most one.
#[derive(Debug, Clone)]
pub struct DistributedStratifiedSampler {
    indices: Vec<usize>,
    classes: Vec<i64>,
    world: usize,
    rank: usize,
    shuffle: bool,
    seed: u64,
    epoch: u64,
}

impl DistributedStratifiedSampler {
    /// A sampler over `indices` (into `labels`) for rank `rank` of `world`. Fails when
    /// `world == 0`, `rank >= world`, or an index is out of range for `labels`.
    pub fn new(
        indices: Vec<usize>,
        labels: &[i64],
        world: usize,
        rank: usize,
        shuffle: bool,
        seed: u64,
    ) -> Result<Self, DataError> {
        if world == 0 || rank >= world {
            return Err(DataError::InvalidArgument(format!(
                "sampler: rank {rank} of world size {world}; the world size must be positive and the rank below it"
            )));
        }
        let classes = indices
            .iter()
            .map(|&i| {
                labels.get(i).copied().ok_or(DataError::IndexOutOfRange {
                    what: "sampler",
                    index: i,
                    len: labels.len(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { indices, classes, world, rank, shuffle, seed, epoch: 0 })
    }

    /// Selects the epoch whose permutation [`indices`](Self::indices) returns. Call it at the
    /// start of each epoch on every rank, with the same value.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Samples per shard: `ceil(N / world)`.
    pub fn len(&self) -> usize {
        self.indices.len().div_ceil(self.world)
    }

    /// Whether there is nothing to sample.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// This rank's shard for the current epoch, in (shuffled) sampling order.
    pub fn indices(&self) -> Vec<usize> {
        let n = self.indices.len();
        if n == 0 {
            return Vec::new();
        }
        let total = self.len() * self.world;

        let mut perm: Vec<usize> = (0..n).collect();
        if self.shuffle {
            shuffle(&mut rng_for(&[TAG_SAMPLER, self.seed, self.epoch]), &mut perm);
        }
        // Padding repeats the permutation from its start (wrapping again when N < world), as
        // Archai and torch's DistributedSampler do, so every shard has the same length.
        let padded: Vec<usize> = (0..total).map(|j| perm[j % n]).collect();

        // Stratified folds: list positions class by class (keeping permutation order within a
        // class) and deal them round-robin. Each shard then gets total/world positions, and each
        // class's run is spread so that shards differ by at most one sample of that class.
        let mut by_class: Vec<usize> = (0..total).collect();
        by_class.sort_by_key(|&j| self.classes[padded[j]]);
        let mut mine: Vec<usize> = by_class.into_iter().skip(self.rank).step_by(self.world).collect();
        // Back to permutation order, so batches mix classes instead of walking through them.
        mine.sort_unstable();
        mine.into_iter().map(|j| self.indices[padded[j]]).collect()
    }
}
