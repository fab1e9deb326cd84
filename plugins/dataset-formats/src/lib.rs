//! Readers of on-disk dataset formats into plain `u8` buffers ([`RawSplit`]).
//!
//! Added crates and why:
//! - `flate2`: the MNIST family ships gzip-compressed IDX files (Fashion-MNIST in Debian too).
//! - `png`, `jpeg-decoder`: the image-folder format holds PNG and JPEG files; these two decoders
//!   are pure Rust and much smaller than the `image` crate.
//! - `rayon` (workspace): image folders are decoded in parallel.
//! - `tempfile` (dev only): tests write generated datasets into throw-away directories.
//!
//! Nothing here depends on libtorch: the plugin wrapping this crate turns the buffers into
//! tensors, and the host pipeline (`archai-data`) works on the same buffers.

#![warn(missing_docs)]

pub mod cifar;
pub mod idx;
pub mod image_folder;
pub mod npy;

mod error;
mod util;

pub use error::FormatError;

use std::path::PathBuf;

/// One split (train or test) of a dataset, as raw pixels and labels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawSplit {
    /// `n * channels * height * width` bytes; each sample is stored channel-major (CHW).
    pub images: Vec<u8>,
    /// Number of samples.
    pub n: usize,
    /// Channels per sample (1 for gray, 3 for RGB).
    pub channels: usize,
    /// Rows per sample.
    pub height: usize,
    /// Columns per sample.
    pub width: usize,
    /// One label per sample; class indices, `0..class_names.len()` once validated.
    pub labels: Vec<i64>,
    /// Names of the classes. Formats without names (IDX, NPY) use `"0"`, `"1"`, ... up to the
    /// largest label seen.
    pub class_names: Vec<String>,
    /// The file or folder the labels came from, so that later checks (see
    /// [`RawSplit::validate`]) can name it in their errors.
    pub source: PathBuf,
}

impl RawSplit {
    /// Bytes per sample (`channels * height * width`).
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The CHW bytes of sample `i`, or `None` when `i` is out of range or the buffer is short.
    pub fn sample(&self, i: usize) -> Option<&[u8]> {
        if i >= self.n {
            return None;
        }
        let len = self.sample_len();
        let start = i.checked_mul(len)?;
        self.images.get(start..start.checked_add(len)?)
    }

    /// Checks that the buffers agree with `n` and the shape, and that every label lies in
    /// `0..num_classes`. The first bad label is reported with its sample index and the file the
    /// labels came from.
    pub fn validate(&self, num_classes: usize) -> Result<(), FormatError> {
        let expected = self.n.checked_mul(self.sample_len()).ok_or_else(|| FormatError::Inconsistent {
            path: self.source.clone(),
            reason: format!(
                "{} samples of {}x{}x{} overflow the address space",
                self.n, self.channels, self.height, self.width
            ),
        })?;
        if self.images.len() != expected {
            return Err(FormatError::Inconsistent {
                path: self.source.clone(),
                reason: format!(
                    "image buffer holds {} bytes but {} samples of {}x{}x{} need {}",
                    self.images.len(),
                    self.n,
                    self.channels,
                    self.height,
                    self.width,
                    expected
                ),
            });
        }
        if self.labels.len() != self.n {
            return Err(FormatError::Inconsistent {
                path: self.source.clone(),
                reason: format!("{} labels for {} samples", self.labels.len(), self.n),
            });
        }
        if let Some((index, &label)) =
            self.labels.iter().enumerate().find(|(_, &l)| l < 0 || l as u64 >= num_classes as u64)
        {
            return Err(FormatError::LabelOutOfRange { path: self.source.clone(), index, label, num_classes });
        }
        Ok(())
    }

    /// Number of samples per class index `0..num_classes` (labels outside are not counted).
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0usize; num_classes];
        for &l in &self.labels {
            if l >= 0 && (l as u64) < num_classes as u64 {
                counts[l as usize] += 1;
            }
        }
        counts
    }
}

/// The most classes a format without class names may imply. Names are made for every index up
/// to the largest label, so a corrupt label (say 2^40) must be refused, not turned into a
/// trillion names.
pub const MAX_NUMERIC_CLASSES: usize = 1 << 20;

/// `"0"`, `"1"`, ... up to the largest non-negative label, for formats that carry no class names.
/// A label of [`MAX_NUMERIC_CLASSES`] or more is an error naming it and `source`.
pub(crate) fn numeric_class_names(labels: &[i64], source: &std::path::Path) -> Result<Vec<String>, FormatError> {
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= MAX_NUMERIC_CLASSES as i64) {
        return Err(FormatError::LabelOutOfRange {
            path: source.to_path_buf(),
            index,
            label,
            num_classes: MAX_NUMERIC_CLASSES,
        });
    }
    let max = labels.iter().copied().filter(|&l| l >= 0).max();
    Ok(match max {
        Some(m) => (0..=m).map(|i| i.to_string()).collect(),
        None => Vec::new(),
    })
}
