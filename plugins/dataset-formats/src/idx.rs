//! IDX files, the format of MNIST, Fashion-MNIST, KMNIST and EMNIST.
//!
//! A file is a big-endian header (magic `00 00 08 D`, where `08` means `u8` data and `D` is the
//! number of dimensions, then `D` u32 sizes) followed by the data. Images are `(N, H, W)`, labels
//! `(N)`. Files may be gzip-compressed; compression is detected by content.

use crate::util::{check_split, read_maybe_gzip, write_file};
use crate::{numeric_class_names, FormatError, RawSplit};
use std::io::Write;
use std::path::Path;

/// Magic number of a `u8` IDX file with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of a `u8` IDX file with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads an images file and a labels file (each raw or gzip) into a one-channel [`RawSplit`].
pub fn read(images: &Path, labels: &Path) -> Result<RawSplit, FormatError> {
    let (img, dims) = read_idx(images, IMAGES_MAGIC, "IDX images: u8, 3 dimensions")?;
    let (lab, ldims) = read_idx(labels, LABELS_MAGIC, "IDX labels: u8, 1 dimension")?;
    let (n, height, width) = (dims[0], dims[1], dims[2]);
    if ldims[0] != n {
        return Err(FormatError::CountMismatch {
            images_path: images.to_path_buf(),
            labels_path: labels.to_path_buf(),
            images: n,
            labels: ldims[0],
        });
    }
    let labels_vec: Vec<i64> = lab.iter().map(|&b| b as i64).collect();
    Ok(RawSplit {
        images: img,
        n,
        channels: 1,
        height,
        width,
        class_names: numeric_class_names(&labels_vec, labels)?,
        labels: labels_vec,
        source: labels.to_path_buf(),
    })
}

/// Reads one IDX file whose magic must be `magic`; returns the data bytes and the dimensions.
fn read_idx(path: &Path, magic: u32, what: &'static str) -> Result<(Vec<u8>, Vec<usize>), FormatError> {
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    let (mut bytes, length, gz) = read_maybe_gzip(
        path,
        |head| {
            // How much decompressed data the header promises, so a gzip bomb is never inflated
            // into memory beyond it (None: the header is incomplete or absurd; the checks below
            // report it).
            // Not this format: nothing to inflate beyond the head (the magic check below says so).
            if head.get(..4)? != magic.to_be_bytes() {
                return None;
            }
            let dims = head.get(4..header)?;
            let payload = dims
                .chunks_exact(4)
                .try_fold(1u64, |acc, c| acc.checked_mul(u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64));
            payload?.checked_add(header as u64)
        },
        header,
    )?;
    let detail = if gz { " after decompression" } else { "" };
    let truncated = |expected: u64, actual: usize| FormatError::Truncated {
        path: path.to_path_buf(),
        expected,
        actual: actual as u64,
        detail: detail.to_string(),
    };
    if bytes.len() < 4 {
        return Err(truncated(header as u64, bytes.len()));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(FormatError::BadMagic { path: path.to_path_buf(), found, expected: magic, what });
    }
    if bytes.len() < header {
        return Err(truncated(header as u64, bytes.len()));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    // Checked u64 so that absurd headers in corrupt files cannot overflow.
    let payload: Option<u64> = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let total = payload.and_then(|p| p.checked_add(header as u64));
    let Some(total) = total else {
        return Err(FormatError::Inconsistent {
            path: path.to_path_buf(),
            reason: format!("header dimensions {dims:?} are too large; the file is corrupt"),
        });
    };
    let actual = length;
    if actual < total {
        return Err(truncated(total, bytes.len()));
    }
    if actual > total {
        return Err(FormatError::TrailingBytes {
            path: path.to_path_buf(),
            expected: total,
            actual,
            detail: detail.to_string(),
        });
    }
    bytes.drain(..header);
    Ok((bytes, dims))
}

/// Writes a one-channel split as an IDX images file and an IDX labels file, gzip-compressed when
/// `gzip` is set. Labels must fit in a byte. Used by tests and by tools that export datasets.
pub fn write(images_path: &Path, labels_path: &Path, split: &RawSplit, gzip: bool) -> Result<(), FormatError> {
    check_split(split, images_path)?;
    if split.channels != 1 {
        return Err(FormatError::InvalidArgument(format!(
            "{}: IDX images have one channel, the split has {}",
            images_path.display(),
            split.channels
        )));
    }
    let too_big = |what: &str, v: usize| {
        FormatError::InvalidArgument(format!(
            "{}: {what} {v} does not fit the 32-bit IDX header",
            images_path.display()
        ))
    };
    let dim = |what: &str, v: usize| u32::try_from(v).map_err(|_| too_big(what, v));
    let mut img = Vec::with_capacity(16 + split.images.len());
    img.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    img.extend_from_slice(&dim("count", split.n)?.to_be_bytes());
    img.extend_from_slice(&dim("height", split.height)?.to_be_bytes());
    img.extend_from_slice(&dim("width", split.width)?.to_be_bytes());
    img.extend_from_slice(&split.images);

    let mut lab = Vec::with_capacity(8 + split.n);
    lab.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    lab.extend_from_slice(&dim("count", split.n)?.to_be_bytes());
    for (i, &l) in split.labels.iter().enumerate() {
        let b = u8::try_from(l).map_err(|_| FormatError::LabelOutOfRange {
            path: labels_path.to_path_buf(),
            index: i,
            label: l,
            num_classes: 256,
        })?;
        lab.push(b);
    }
    write_maybe_gzip(images_path, &img, gzip)?;
    write_maybe_gzip(labels_path, &lab, gzip)
}

fn write_maybe_gzip(path: &Path, bytes: &[u8], gzip: bool) -> Result<(), FormatError> {
    if !gzip {
        return write_file(path, bytes);
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let compressed = enc.write_all(bytes).and_then(|_| enc.finish());
    let compressed = compressed.map_err(|source| FormatError::Write { path: path.to_path_buf(), source })?;
    write_file(path, &compressed)
}
