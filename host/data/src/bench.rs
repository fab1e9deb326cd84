//! Throughput measurement of the augmentation and batching path, for `archai data --bench`.

use crate::batcher::{Batcher, BatcherOptions, SampleBuffer};
use crate::rng::{rng_for, shuffle, TAG_BENCH};
use crate::transform::Transform;
use crate::DataError;
use std::time::Instant;

/// Measured throughput of [`bench_throughput`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchReport {
    /// Augmented samples delivered per second.
    pub samples_per_s: f64,
    /// Batches delivered per second.
    pub batches_per_s: f64,
    /// Samples delivered in the measurement.
    pub samples: usize,
    /// Batches delivered in the measurement.
    pub batches: usize,
    /// Wall-clock seconds measured.
    pub seconds: f64,
    /// Threads in the rayon pool that built the samples.
    pub threads: usize,
}

/// Pulls at least `min_batches` batches through the same path training uses (shuffled order,
/// transforms, parallel build, prefetch thread), starting new epochs as needed, and reports the
/// rate at which a consumer receives them. Uses the global rayon pool.
pub fn bench_throughput(
    buffer: &SampleBuffer,
    transforms: &[Transform],
    opts: BatcherOptions,
    min_batches: usize,
) -> Result<BenchReport, DataError> {
    let mut epoch = opts.epoch;
    let mut batches = 0usize;
    let mut samples = 0usize;
    let start = Instant::now();
    while batches < min_batches.max(1) {
        let mut order: Vec<usize> = (0..buffer.len()).collect();
        shuffle(&mut rng_for(&[TAG_BENCH, opts.seed, epoch]), &mut order);
        let batcher = Batcher::new(buffer.clone(), order, transforms, BatcherOptions { epoch, ..opts })?;
        if batcher.is_empty() {
            return Err(DataError::InvalidArgument(format!(
                "benchmark: {} samples make no batch of {}{}",
                buffer.len(),
                opts.batch_size,
                if opts.drop_last { " with drop_last" } else { "" }
            )));
        }
        for batch in batcher.iter().take(min_batches.max(1) - batches) {
            batches += 1;
            samples += batch.labels.len();
        }
        epoch += 1;
    }
    let seconds = start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(BenchReport {
        samples_per_s: samples as f64 / seconds,
        batches_per_s: batches as f64 / seconds,
        samples,
        batches,
        seconds,
        threads: rayon::current_num_threads(),
    })
}
