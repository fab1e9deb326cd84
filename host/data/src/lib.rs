//! The host's data pipeline on plain buffers: train/val splitting, the distributed stratified
//! sampler, augmentation, batching with prefetch, and dataset statistics.
//!
//! Everything works on `u8` CHW samples as read by `archai-dataset-formats` and produces `f32`
//! batches; wrapping them into tensors is left to the crates that link libtorch, so this crate
//! builds and tests without it.
//!
//! Determinism: every random choice comes from a ChaCha stream seeded from the run seed and the
//! position of the decision (epoch, sample index), never from shared generator state, so results
//! are identical across thread counts and schedules.
//!
//! Added crates and why:
//! - `rand_chacha`: a seeded generator whose output is specified (ChaCha8) and therefore the same
//!   on every platform and version; shuffles and bounded draws are implemented here on top of it
//!   so that no upstream algorithm change can alter a run.
//! - `rayon`, `serde`, `thiserror` (workspace): parallel sample building, transform configs,
//!   errors.
//! - `yaml_serde` (workspace, dev only): tests parse transform lists as YAML like the configs do.
//! - `archai-dataset-formats` (dev only): tests check statistics on the real Fashion-MNIST files.

#![warn(missing_docs)]

pub mod batcher;
pub mod bench;
pub mod rng;
pub mod sampler;
pub mod split;
pub mod stats;
pub mod transform;

pub use batcher::{Batch, BatchIter, Batcher, BatcherOptions, SampleBuffer};
pub use bench::{bench_throughput, BenchReport};
pub use sampler::DistributedStratifiedSampler;
pub use transform::{Pipeline, Transform};

/// Errors of the data pipeline. They come from configuration (transforms, batch size, world
/// size) or from buffers that do not match their declared shape, and say what to fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DataError {
    /// A buffer's length does not match its declared shape.
    #[error("sample buffer: {reason}")]
    Shape {
        /// What does not match.
        reason: String,
    },

    /// An index refers past the end of the dataset or label list.
    #[error("{what} index {index} is out of range for {len} samples")]
    IndexOutOfRange {
        /// Which list the index was in (for example "sampler", "batch order").
        what: &'static str,
        /// The offending index.
        index: usize,
        /// Number of samples available.
        len: usize,
    },

    /// A transform in the config cannot apply to the data.
    #[error("transform #{position} ({name}): {reason}; fix the `transforms` list in the dataset or trainer config")]
    Transform {
        /// Position in the transform list, from 0.
        position: usize,
        /// The transform's config name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// A bad argument: zero batch size, rank not below the world size, and similar.
    #[error("{0}")]
    InvalidArgument(String),
}
