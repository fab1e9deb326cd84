//! File access and small pixel helpers shared by the readers.

use crate::FormatError;
use std::io::Read;
use std::path::Path;

/// Reads a whole file, turning "not found" into the error that tells the user to fix the config.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, FormatError> {
    std::fs::read(path).map_err(|source| io_error(path, source))
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> FormatError {
    if source.kind() == std::io::ErrorKind::NotFound {
        FormatError::NotFound { path: path.to_path_buf() }
    } else {
        FormatError::Io { path: path.to_path_buf(), source }
    }
}

/// Reads a file and decompresses it when it starts with the gzip magic bytes. Detection goes by
/// content, not extension, because distributions rename and recompress these files freely.
///
/// Decompression is bounded: the first `head_len` bytes are inflated, `expected(head)` says how
/// many bytes the whole file should have (from its header), and no more than one byte beyond
/// that is kept in memory; the rest is only counted. So a small file that inflates to gigabytes
/// (a gzip bomb, or a corrupt header) costs time, not memory. Returns the bytes, the full
/// decompressed length, and whether the file was compressed.
pub(crate) fn read_maybe_gzip(
    path: &Path,
    expected: impl FnOnce(&[u8]) -> Option<u64>,
    head_len: usize,
) -> Result<(Vec<u8>, u64, bool), FormatError> {
    let raw = read_file(path)?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        let len = raw.len() as u64;
        return Ok((raw, len, false));
    }
    let gz_err = |source| FormatError::Gzip { path: path.to_path_buf(), source };
    // Multi-member aware: some tools write concatenated gzip members.
    let mut stream = flate2::read::MultiGzDecoder::new(raw.as_slice());
    let mut out = Vec::new();
    (&mut stream).take(head_len as u64).read_to_end(&mut out).map_err(gz_err)?;
    let Some(limit) = expected(&out) else {
        let len = out.len() as u64;
        return Ok((out, len, true));
    };
    let rest = limit.saturating_sub(out.len() as u64).saturating_add(1);
    (&mut stream).take(rest).read_to_end(&mut out).map_err(gz_err)?;
    let beyond = std::io::copy(&mut stream, &mut std::io::sink()).map_err(gz_err)?;
    let len = out.len() as u64 + beyond;
    Ok((out, len, true))
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    std::fs::write(path, bytes).map_err(|source| FormatError::Write { path: path.to_path_buf(), source })
}

/// Checks that a split's buffers match its shape before a writer serialises it, so writers never
/// index out of bounds.
pub(crate) fn check_split(split: &crate::RawSplit, path: &Path) -> Result<(), FormatError> {
    let need = split.n.checked_mul(split.sample_len()).filter(|&need| need == split.images.len());
    if need.is_none() || split.labels.len() != split.n {
        return Err(FormatError::Inconsistent {
            path: path.to_path_buf(),
            reason: format!(
                "cannot write: {} image bytes and {} labels do not match {} samples of {}x{}x{}",
                split.images.len(),
                split.labels.len(),
                split.n,
                split.channels,
                split.height,
                split.width
            ),
        });
    }
    Ok(())
}

/// Bilinear resize of one CHW `u8` image with half-pixel centres (the convention of OpenCV,
/// PIL without antialiasing, and torchvision's tensor resize), so resized datasets match what
/// users get from those tools on upsampling and mild downsampling.
pub(crate) fn resize_bilinear_u8(
    src: &[u8],
    channels: usize,
    (sh, sw): (usize, usize),
    (dh, dw): (usize, usize),
) -> Vec<u8> {
    let mut out = vec![0u8; channels * dh * dw];
    if sh == 0 || sw == 0 || dh == 0 || dw == 0 {
        return out;
    }
    let ys = axis_weights(sh, dh);
    let xs = axis_weights(sw, dw);
    for c in 0..channels {
        let plane = &src[c * sh * sw..(c + 1) * sh * sw];
        let dst = &mut out[c * dh * dw..(c + 1) * dh * dw];
        for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
            for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
                let p = |y: usize, x: usize| plane[y * sw + x] as f32;
                let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                dst[oy * dw + ox] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// For each output coordinate: the two source coordinates and the weight of the second.
fn axis_weights(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|o| {
            let s = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(src - 1);
            let i1 = (i0 + 1).min(src - 1);
            (i0, i1, s - i0 as f32)
        })
        .collect()
}

/// ITU-R BT.601 luma in 16-bit fixed point, the formula PIL uses for `convert("L")`, so gray
/// versions of colour datasets match the usual Python pipelines.
pub(crate) fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_identity_and_constant() {
        let src: Vec<u8> = (0..12).collect();
        assert_eq!(resize_bilinear_u8(&src, 1, (3, 4), (3, 4)), src);
        let flat = vec![77u8; 2 * 5 * 7];
        assert!(resize_bilinear_u8(&flat, 2, (5, 7), (3, 11)).iter().all(|&v| v == 77));
    }

    #[test]
    fn resize_downsample_by_two_averages() {
        // Half-pixel centres put each output pixel between two inputs.
        let src = vec![0u8, 100, 200, 250];
        assert_eq!(resize_bilinear_u8(&src, 1, (1, 4), (1, 2)), vec![50, 225]);
    }

    #[test]
    fn luma_extremes() {
        assert_eq!(luma(0, 0, 0), 0);
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(255, 0, 0), 76);
    }
}
