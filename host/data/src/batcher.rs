//! Batching with parallel sample building and background prefetch.
//!
//! Samples of a batch are transformed in parallel on rayon; a background thread keeps up to
//! `prefetch` finished batches queued so the training loop finds the next batch ready. Each
//! sample's output depends only on its bytes and (seed, epoch, index), and batches are queued
//! in order, so the result is the same for any thread count.

use crate::transform::{Pipeline, Transform};
use crate::DataError;
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A split's pixels and labels, shared cheaply between the batcher and its prefetch thread.
#[derive(Debug, Clone)]
pub struct SampleBuffer {
    images: Arc<Vec<u8>>,
    labels: Arc<Vec<i64>>,
    shape: [usize; 3],
}

impl SampleBuffer {
    /// Wraps `images` (`N * C * H * W` bytes, CHW per sample) and `labels` (`N`); fails when the
    /// lengths disagree with `shape` (`[C, H, W]`).
    pub fn new(images: Vec<u8>, labels: Vec<i64>, shape: [usize; 3]) -> Result<Self, DataError> {
        let per: usize = shape.iter().product();
        if per == 0 || images.len() != labels.len().saturating_mul(per) {
            return Err(DataError::Shape {
                reason: format!(
                    "{} image bytes and {} labels do not form samples of shape {shape:?}",
                    images.len(),
                    labels.len()
                ),
            });
        }
        Ok(Self { images: Arc::new(images), labels: Arc::new(labels), shape })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[C, H, W]` of each sample.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// All labels.
    pub fn labels(&self) -> &[i64] {
        &self.labels
    }

    /// All pixels, sample after sample.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// The bytes of sample `i`, if it exists.
    pub fn sample(&self, i: usize) -> Option<&[u8]> {
        let per: usize = self.shape.iter().product();
        self.images.get(i.checked_mul(per)?..i.checked_add(1)?.checked_mul(per)?)
    }
}

/// Batching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatcherOptions {
    /// Samples per batch (positive).
    pub batch_size: usize,
    /// Drop a last batch smaller than `batch_size` instead of yielding it.
    pub drop_last: bool,
    /// Finished batches the background thread may queue ahead of the consumer.
    pub prefetch: usize,
    /// Run seed; keys the augmentation together with `epoch` and each sample's index.
    pub seed: u64,
    /// Epoch; augmentations differ from epoch to epoch.
    pub epoch: u64,
}

impl Default for BatcherOptions {
    fn default() -> Self {
        Self { batch_size: 64, drop_last: false, prefetch: 4, seed: 0, epoch: 0 }
    }
}

/// One batch, ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `B * C * H * W` values, sample after sample, CHW.
    pub images: Vec<f32>,
    /// `B` labels.
    pub labels: Vec<i64>,
    /// `[B, C, H, W]`.
    pub shape: [usize; 4],
    /// The dataset index of each sample (for tracing and tests).
    pub indices: Vec<usize>,
}

/// Yields the batches of one epoch: `order` (dataset indices, typically a sampler's shard) cut
/// into batches of `batch_size`, each sample passed through the transform pipeline.
#[derive(Clone)]
pub struct Batcher {
    buffer: SampleBuffer,
    order: Arc<Vec<usize>>,
    pipeline: Arc<Pipeline>,
    opts: BatcherOptions,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("samples", &self.order.len())
            .field("pipeline", &self.pipeline)
            .field("opts", &self.opts)
            .field("own_pool", &self.pool.is_some())
            .finish()
    }
}

impl Batcher {
    /// Checks the batch size, that every index in `order` exists in `buffer`, and that the
    /// transforms apply to the buffer's sample shape.
    pub fn new(
        buffer: SampleBuffer,
        order: Vec<usize>,
        transforms: &[Transform],
        opts: BatcherOptions,
    ) -> Result<Self, DataError> {
        if opts.batch_size == 0 {
            return Err(DataError::InvalidArgument(
                "batch size must be positive; fix `batch_size` in the config".into(),
            ));
        }
        if let Some(&bad) = order.iter().find(|&&i| i >= buffer.len()) {
            return Err(DataError::IndexOutOfRange { what: "batch order", index: bad, len: buffer.len() });
        }
        let pipeline = Pipeline::new(transforms, buffer.shape())?;
        Ok(Self { buffer, order: Arc::new(order), pipeline: Arc::new(pipeline), opts, pool: None })
    }

    /// Builds samples on `pool` instead of the global rayon pool (or the pool of whoever calls
    /// [`batch`](Self::batch)). The prefetch thread is not a rayon worker, so this is the way to
    /// bound its parallelism.
    pub fn with_pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Number of batches in the epoch.
    pub fn len(&self) -> usize {
        let n = self.order.len();
        if self.opts.drop_last {
            n / self.opts.batch_size
        } else {
            n.div_ceil(self.opts.batch_size)
        }
    }

    /// Whether the epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[C, H, W]` of the output samples.
    pub fn sample_shape(&self) -> [usize; 3] {
        self.pipeline.out_shape()
    }

    /// The options in use.
    pub fn options(&self) -> BatcherOptions {
        self.opts
    }

    /// Builds batch `b` (from 0) in the calling thread, its samples in parallel; `None` past the
    /// end.
    pub fn batch(&self, b: usize) -> Option<Batch> {
        if b >= self.len() {
            return None;
        }
        match &self.pool {
            Some(pool) => Some(pool.install(|| self.build(b))),
            None => Some(self.build(b)),
        }
    }

    fn build(&self, b: usize) -> Batch {
        let bs = self.opts.batch_size;
        let start = b * bs;
        let indices = self.order[start..(start + bs).min(self.order.len())].to_vec();
        let per = self.pipeline.out_len();
        let mut images = vec![0f32; indices.len() * per];
        let (seed, epoch) = (self.opts.seed, self.opts.epoch);
        images.par_chunks_mut(per).zip(indices.par_iter()).for_each(|(out, &i)| {
            // Indices were checked against the buffer in `new`.
            if let Some(sample) = self.buffer.sample(i) {
                self.pipeline.apply_into(sample, seed, epoch, i, out);
            }
        });
        let [c, h, w] = self.pipeline.out_shape();
        Batch {
            labels: indices.iter().map(|&i| self.buffer.labels[i]).collect(),
            shape: [indices.len(), c, h, w],
            images,
            indices,
        }
    }

    /// Iterates over the epoch's batches, built ahead on a background thread that keeps up to
    /// `prefetch` of them queued. Dropping the iterator stops the thread.
    pub fn iter(&self) -> BatchIter {
        let total = self.len();
        let (tx, rx) = sync_channel(self.opts.prefetch);
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("archai-prefetch".into()).spawn(move || {
            for b in 0..total {
                let Some(batch) = me.batch(b) else { break };
                if tx.send(batch).is_err() {
                    break; // consumer gone
                }
            }
        });
        match spawned {
            Ok(handle) => BatchIter { rx: Some(rx), handle: Some(handle), fallback: None, next: 0, total },
            // Without a thread (resource limits), build batches on demand instead of failing.
            Err(_) => BatchIter { rx: None, handle: None, fallback: Some(self.clone()), next: 0, total },
        }
    }
}

impl IntoIterator for &Batcher {
    type Item = Batch;
    type IntoIter = BatchIter;
    fn into_iter(self) -> BatchIter {
        self.iter()
    }
}

/// Iterator over prefetched batches; see [`Batcher::iter`].
pub struct BatchIter {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    fallback: Option<Batcher>,
    next: usize,
    total: usize,
}

impl Iterator for BatchIter {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        let batch = if let Some(b) = &self.fallback {
            b.batch(self.next)
        } else {
            let got = self.rx.as_ref().and_then(|rx| rx.recv().ok());
            if got.is_none() {
                // The producer stopped early, which only a panic while building can cause;
                // surface it rather than end the epoch silently short.
                if let Some(h) = self.handle.take() {
                    if let Err(panic) = h.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
            }
            got
        };
        self.next += 1;
        batch
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for BatchIter {}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the channel first makes a blocked producer's send fail so that join returns.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
