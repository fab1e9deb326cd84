//! A folder of images with one sub-folder per class (`root/<class>/*.png|jpg|jpeg`), the layout
//! torchvision's `ImageFolder` reads.
//!
//! Class indices follow the sorted folder names and files are read in sorted order, so the same
//! folder always gives the same split regardless of directory listing order or thread count.
//! Hidden entries (names starting with `.`) are ignored, as are files with other extensions.

use crate::util::{io_error, luma, read_file, resize_bilinear_u8};
use crate::{FormatError, RawSplit};
use rayon::prelude::*;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Reads `root` into a [`RawSplit`].
///
/// - `expect`: `(channels, height, width)` the dataset config declares. Images are converted to
///   `channels` (1 = gray, 3 = RGB; alpha is dropped). Without it, the first image (in sorted
///   order) sets the channel count and, when there is no `resize`, the size.
/// - `resize`: `(height, width)` every image is resized to (bilinear). Without it an image whose
///   size differs from the expected one is an error naming the file. When both are given they
///   must agree on the size.
pub fn read(
    root: &Path,
    expect: Option<(usize, usize, usize)>,
    resize: Option<(usize, usize)>,
) -> Result<RawSplit, FormatError> {
    if let Some((c, h, w)) = expect {
        if c != 1 && c != 3 {
            return Err(FormatError::InvalidArgument(format!(
                "{}: image folders are read as 1 (gray) or 3 (RGB) channels, not {c}; fix `channels` in the dataset config",
                root.display()
            )));
        }
        if let Some(r) = resize {
            if r != (h, w) {
                return Err(FormatError::InvalidArgument(format!(
                    "{}: resize to {}x{} contradicts the expected image size {h}x{w}",
                    root.display(),
                    r.0,
                    r.1
                )));
            }
        }
    }
    if let Some((h, w)) = resize {
        if h == 0 || w == 0 {
            return Err(FormatError::InvalidArgument(format!("{}: cannot resize images to {h}x{w}", root.display())));
        }
    }

    let classes = list_dir(root)?.into_iter().filter(|p| p.is_dir()).collect::<Vec<_>>();
    if classes.is_empty() {
        return Err(FormatError::NoClasses { path: root.to_path_buf() });
    }
    let mut files: Vec<(PathBuf, i64)> = Vec::new();
    let mut class_names = Vec::with_capacity(classes.len());
    for (label, dir) in classes.iter().enumerate() {
        let images: Vec<PathBuf> =
            list_dir(dir)?.into_iter().filter(|p| p.is_file() && has_image_extension(p)).collect();
        if images.is_empty() {
            return Err(FormatError::EmptyClass { path: dir.clone() });
        }
        class_names.push(file_name(dir));
        files.extend(images.into_iter().map(|p| (p, label as i64)));
    }

    // The target shape must be known before the parallel decode; when the config does not give
    // it, the first file decides.
    let (channels, size) = match expect {
        Some((c, h, w)) => (c, resize.unwrap_or((h, w))),
        None => {
            let first = decode(&files[0].0)?;
            (first.channels, resize.unwrap_or((first.height, first.width)))
        }
    };

    let decoded: Vec<Result<Vec<u8>, FormatError>> = files
        .par_iter()
        .map(|(path, _)| {
            let img = decode(path)?;
            let chw = to_chw(&img, channels);
            if (img.height, img.width) == size {
                Ok(chw)
            } else if resize.is_some() {
                Ok(resize_bilinear_u8(&chw, channels, (img.height, img.width), size))
            } else {
                Err(FormatError::ImageSize {
                    path: path.clone(),
                    expected_h: size.0,
                    expected_w: size.1,
                    found_h: img.height,
                    found_w: img.width,
                })
            }
        })
        .collect();

    let per = channels * size.0 * size.1;
    let mut images = Vec::with_capacity(per * files.len());
    // Sequential so that the reported error is the first bad file in sorted order, every time.
    for d in decoded {
        images.extend_from_slice(&d?);
    }
    Ok(RawSplit {
        images,
        n: files.len(),
        channels,
        height: size.0,
        width: size.1,
        labels: files.iter().map(|(_, l)| *l).collect(),
        class_names,
        source: root.to_path_buf(),
    })
}

/// Non-hidden entries of `dir`, sorted by name.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, FormatError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .map(|e| {
            let e = e.to_string_lossy().to_ascii_lowercase();
            e == "png" || e == "jpg" || e == "jpeg"
        })
        .unwrap_or(false)
}

/// The most pixels an image may have (8192 x 4096). The header is checked before decoding: the
/// decoders allocate what the header claims, so a corrupt or hostile file claiming 65535 x 65535
/// would otherwise take gigabytes. NAS datasets are far smaller; larger photos should be resized
/// before they become a dataset.
pub const MAX_IMAGE_PIXELS: u64 = 8192 * 4096;

fn check_pixels(width: u64, height: u64) -> Result<(), String> {
    if width.saturating_mul(height) > MAX_IMAGE_PIXELS {
        return Err(format!(
            "the header says {width}x{height}, more than the {MAX_IMAGE_PIXELS} pixels this reader accepts \
             (a corrupt file, or an image to shrink before it joins a dataset)"
        ));
    }
    Ok(())
}

/// A decoded image: interleaved (HWC) 8-bit pixels, 1 or 3 channels.
struct Decoded {
    channels: usize,
    height: usize,
    width: usize,
    hwc: Vec<u8>,
}

/// Decodes a PNG or JPEG, chosen by the file's magic bytes so that misnamed files still work.
fn decode(path: &Path) -> Result<Decoded, FormatError> {
    let bytes = read_file(path)?;
    let bad = |reason: String| FormatError::Image { path: path.to_path_buf(), reason };
    let img = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(&bytes).map_err(|e| bad(format!("PNG: {e}")))?
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        decode_jpeg(&bytes).map_err(|e| bad(format!("JPEG: {e}")))?
    } else {
        return Err(bad("neither a PNG nor a JPEG (unrecognised first bytes); convert it or remove it".into()));
    };
    if img.height == 0 || img.width == 0 || img.hwc.len() != img.height * img.width * img.channels {
        return Err(bad(format!(
            "decoder returned {} bytes for a {}x{}x{} image",
            img.hwc.len(),
            img.height,
            img.width,
            img.channels
        )));
    }
    Ok(img)
}

fn decode_png(bytes: &[u8]) -> Result<Decoded, String> {
    let mut dec = png::Decoder::new(Cursor::new(bytes));
    // Expands palettes and low bit depths and strips 16-bit samples, leaving 8-bit gray/RGB(A).
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().map_err(|e| e.to_string())?;
    check_pixels(reader.info().width as u64, reader.info().height as u64)?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let (height, width) = (frame.height as usize, frame.width as usize);
    let src_channels = frame.color_type.samples();
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(format!("unsupported bit depth {:?} after expansion", frame.bit_depth));
    }
    let keep = if src_channels >= 3 { 3 } else { 1 };
    let mut hwc = Vec::with_capacity(height * width * keep);
    for row in buf.chunks(frame.line_size).take(height) {
        for px in row.chunks_exact(src_channels).take(width) {
            hwc.extend_from_slice(&px[..keep]);
        }
    }
    Ok(Decoded { channels: keep, height, width, hwc })
}

fn decode_jpeg(bytes: &[u8]) -> Result<Decoded, String> {
    let mut dec = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    dec.read_info().map_err(|e| e.to_string())?;
    let header = dec.info().ok_or("no image header")?;
    check_pixels(header.width as u64, header.height as u64)?;
    let pixels = dec.decode().map_err(|e| e.to_string())?;
    let info = dec.info().ok_or("no image header")?;
    let (height, width) = (info.height as usize, info.width as usize);
    let (channels, hwc) = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => (1, pixels),
        // 16-bit samples come out in native byte order; keep the high byte.
        jpeg_decoder::PixelFormat::L16 => {
            (1, pixels.chunks_exact(2).map(|p| (u16::from_ne_bytes([p[0], p[1]]) >> 8) as u8).collect())
        }
        jpeg_decoder::PixelFormat::RGB24 => (3, pixels),
        // Adobe CMYK JPEGs store inverted inks, so the product gives RGB directly.
        jpeg_decoder::PixelFormat::CMYK32 => (
            3,
            pixels
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = p[3] as u32;
                    [0, 1, 2].map(|i| ((p[i] as u32 * k + 127) / 255) as u8)
                })
                .collect(),
        ),
    };
    Ok(Decoded { channels, height, width, hwc })
}

/// Interleaved pixels to planar CHW with `channels` channels (gray is replicated to RGB; RGB is
/// reduced to luma).
fn to_chw(img: &Decoded, channels: usize) -> Vec<u8> {
    let hw = img.height * img.width;
    let mut out = vec![0u8; channels * hw];
    match (img.channels, channels) {
        (1, 1) => out.copy_from_slice(&img.hwc),
        (1, _) => {
            for c in 0..channels {
                out[c * hw..(c + 1) * hw].copy_from_slice(&img.hwc);
            }
        }
        (_, 1) => {
            for (o, p) in out.iter_mut().zip(img.hwc.chunks_exact(3)) {
                *o = luma(p[0], p[1], p[2]);
            }
        }
        _ => {
            for (i, p) in img.hwc.chunks_exact(3).enumerate() {
                for c in 0..channels {
                    out[c * hw + i] = p[c];
                }
            }
        }
    }
    out
}
