//! NumPy `.npy` arrays (format versions 1, 2 and 3): an images array of `uint8` and a labels
//! array of integers, as written by `np.save`.
//!
//! Images may be `(N, H, W)` (one channel) or four-dimensional; a 4-D array is read as
//! `(N, H, W, C)` or `(N, C, H, W)` according to the [`NpyLayout`] the config names, because the
//! file itself cannot tell the two apart when `C == H`.

use crate::util::{check_split, read_file, write_file};
use crate::{numeric_class_names, FormatError, RawSplit};
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// How a 4-D images array is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NpyLayout {
    /// `(N, H, W, C)`, the NumPy/PIL/TensorFlow convention; converted to CHW on read.
    #[default]
    Nhwc,
    /// `(N, C, H, W)`, the PyTorch convention; used as is.
    Nchw,
}

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// The dtype string, such as `|u1` or `<i8`.
    pub descr: String,
    /// Whether the data is column-major (not supported by the readers).
    pub fortran_order: bool,
    /// The array's shape.
    pub shape: Vec<usize>,
}

/// Reads an images array and a labels array into a [`RawSplit`] (CHW per sample).
pub fn read(images: &Path, labels: &Path, layout: NpyLayout) -> Result<RawSplit, FormatError> {
    let (ih, idata) = read_array(images)?;
    let npy_err = |path: &Path, reason: String| FormatError::Npy { path: path.to_path_buf(), reason };
    if dtype_of(&ih.descr) != Some(('u', 1)) {
        return Err(npy_err(
            images,
            format!(
                "images have dtype '{}', only uint8 ('|u1') is supported; save with arr.astype(np.uint8)",
                ih.descr
            ),
        ));
    }
    let (n, channels, height, width, hwc) = match (ih.shape.as_slice(), layout) {
        (&[n, h, w], _) => (n, 1, h, w, false),
        (&[n, h, w, c], NpyLayout::Nhwc) => (n, c, h, w, true),
        (&[n, c, h, w], NpyLayout::Nchw) => (n, c, h, w, false),
        _ => {
            return Err(npy_err(
                images,
                format!("images have shape {:?}; expected (N, H, W), (N, H, W, C) or (N, C, H, W)", ih.shape),
            ))
        }
    };
    let image_bytes = if hwc { hwc_to_chw(&idata, n, height, width, channels) } else { idata };

    let (lh, ldata) = read_array(labels)?;
    let ln = match lh.shape.as_slice() {
        &[ln] | &[ln, 1] => ln,
        _ => return Err(npy_err(labels, format!("labels have shape {:?}; expected (N,)", lh.shape))),
    };
    let label_vec = decode_labels(labels, &lh.descr, &ldata)?;
    if ln != n {
        return Err(FormatError::CountMismatch {
            images_path: images.to_path_buf(),
            labels_path: labels.to_path_buf(),
            images: n,
            labels: ln,
        });
    }
    Ok(RawSplit {
        images: image_bytes,
        n,
        channels,
        height,
        width,
        class_names: numeric_class_names(&label_vec, labels)?,
        labels: label_vec,
        source: labels.to_path_buf(),
    })
}

/// Reads a `.npy` file: its header and its raw (C-order) data bytes, checked against the shape.
pub fn read_array(path: &Path) -> Result<(NpyHeader, Vec<u8>), FormatError> {
    let bytes = read_file(path)?;
    let err = |reason: String| FormatError::Npy { path: path.to_path_buf(), reason };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        let found = &bytes[..bytes.len().min(6)];
        return Err(err(format!("not a .npy file: starts with {found:02x?}, expected the magic \\x93NUMPY")));
    }
    let major = bytes[6];
    let (len_bytes, header_start) = match major {
        1 => (2, 10),
        2 | 3 => (4, 12),
        v => return Err(err(format!("unsupported .npy format version {v}; versions 1-3 are supported"))),
    };
    if bytes.len() < header_start {
        return Err(FormatError::Truncated {
            path: path.to_path_buf(),
            expected: header_start as u64,
            actual: bytes.len() as u64,
            detail: " (header)".into(),
        });
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_start = header_start + header_len;
    if bytes.len() < data_start {
        return Err(FormatError::Truncated {
            path: path.to_path_buf(),
            expected: data_start as u64,
            actual: bytes.len() as u64,
            detail: " (header)".into(),
        });
    }
    let text =
        std::str::from_utf8(&bytes[header_start..data_start]).map_err(|_| err("header is not valid text".into()))?;
    let header = parse_header(text).map_err(|e| err(format!("malformed header {text:?}: {e}")))?;
    if header.fortran_order {
        return Err(err("array is in Fortran (column-major) order; save np.ascontiguousarray(arr) instead".into()));
    }
    let Some((_, item)) = dtype_of(&header.descr) else {
        return Err(err(format!(
            "unsupported dtype '{}'; images must be uint8, labels int64, int32 or uint8",
            header.descr
        )));
    };
    let expected = header
        .shape
        .iter()
        .try_fold(item as u64, |a, &d| a.checked_mul(d as u64))
        .and_then(|d| d.checked_add(data_start as u64))
        .ok_or_else(|| err(format!("shape {:?} is too large", header.shape)))?;
    let actual = bytes.len() as u64;
    if actual < expected {
        return Err(FormatError::Truncated { path: path.to_path_buf(), expected, actual, detail: String::new() });
    }
    if actual > expected {
        return Err(FormatError::TrailingBytes { path: path.to_path_buf(), expected, actual, detail: String::new() });
    }
    let mut data = bytes;
    data.drain(..data_start);
    Ok((header, data))
}

/// Writes a split as two `.npy` files: images `uint8` in `layout` (4-D), labels `int64` `(N,)`.
pub fn write(images_path: &Path, labels_path: &Path, split: &RawSplit, layout: NpyLayout) -> Result<(), FormatError> {
    check_split(split, images_path)?;
    let (c, h, w) = (split.channels, split.height, split.width);
    match layout {
        NpyLayout::Nchw => write_array(images_path, "|u1", &[split.n, c, h, w], &split.images)?,
        NpyLayout::Nhwc => {
            let mut hwc = vec![0u8; split.images.len()];
            let hw = h * w;
            for (src, dst) in split.images.chunks_exact(c * hw).zip(hwc.chunks_exact_mut(c * hw)) {
                for ch in 0..c {
                    for i in 0..hw {
                        dst[i * c + ch] = src[ch * hw + i];
                    }
                }
            }
            write_array(images_path, "|u1", &[split.n, h, w, c], &hwc)?
        }
    }
    let labels: Vec<u8> = split.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    write_array(labels_path, "<i8", &[split.n], &labels)
}

/// Writes one `.npy` file (version 1) with the given dtype string, shape and C-order data. The
/// data length is checked against the shape and the dtype's item size.
pub fn write_array(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<(), FormatError> {
    // Any dtype may be written (tests write unsupported ones on purpose); its item size is the
    // number that ends the dtype string, as in '<f4'.
    let digits = descr.trim_start_matches(|c: char| !c.is_ascii_digit());
    let item: usize = digits.parse().map_err(|_| {
        FormatError::InvalidArgument(format!("{}: cannot tell the item size of dtype '{descr}'", path.display()))
    })?;
    let need = shape.iter().try_fold(item, |a, &d| a.checked_mul(d));
    if need != Some(data.len()) {
        return Err(FormatError::InvalidArgument(format!(
            "{}: {} data bytes do not fill shape {shape:?} of '{descr}'",
            path.display(),
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // NumPy pads the header with spaces and a newline so the data starts 64-byte aligned.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len())
        .map_err(|_| FormatError::InvalidArgument(format!("{}: header too long", path.display())))?;
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    write_file(path, &out)
}

/// Kind (`'u'` or `'i'`) and item size of a supported integer dtype string, or `None`.
fn dtype_of(descr: &str) -> Option<(char, usize)> {
    let (order, rest) = match descr.chars().next()? {
        c @ ('<' | '>' | '|' | '=') => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let (kind, size) = match rest {
        "u1" => ('u', 1),
        "i1" => ('i', 1),
        "u2" => ('u', 2),
        "i2" => ('i', 2),
        "u4" => ('u', 4),
        "i4" => ('i', 4),
        "i8" => ('i', 8),
        _ => return None,
    };
    // Multi-byte data needs a byte order; '|' only makes sense for single bytes.
    if size > 1 && order == '|' {
        return None;
    }
    Some((kind, size))
}

fn decode_labels(path: &Path, descr: &str, data: &[u8]) -> Result<Vec<i64>, FormatError> {
    let (kind, size) = dtype_of(descr).ok_or_else(|| FormatError::Npy {
        path: path.to_path_buf(),
        reason: format!("unsupported label dtype '{descr}'; use int64, int32 or uint8"),
    })?;
    let big = descr.starts_with('>') || (descr.starts_with('=') && cfg!(target_endian = "big"));
    Ok(data
        .chunks_exact(size)
        .map(|b| {
            let mut buf = [0u8; 8];
            buf[..size].copy_from_slice(b);
            if big {
                buf[..size].reverse();
            }
            let raw = u64::from_le_bytes(buf);
            if kind == 'i' {
                // Sign-extend from the item width.
                let shift = 64 - 8 * size as u32;
                ((raw << shift) as i64) >> shift
            } else {
                raw as i64
            }
        })
        .collect())
}

fn hwc_to_chw(data: &[u8], n: usize, h: usize, w: usize, c: usize) -> Vec<u8> {
    let hw = h * w;
    let mut out = vec![0u8; n * c * hw];
    for (src, dst) in data.chunks_exact(c * hw).zip(out.chunks_exact_mut(c * hw)) {
        for (i, px) in src.chunks_exact(c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                dst[ch * hw + i] = v;
            }
        }
    }
    out
}

/// Parses the Python dict literal of a `.npy` header.
fn parse_header(text: &str) -> Result<NpyHeader, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let Value::Dict(entries) = p.value()? else {
        return Err("header is not a dict".into());
    };
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (k, v) in entries {
        match (k.as_str(), v) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("fortran_order", Value::Bool(b)) => fortran_order = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            ("descr", _) => {
                return Err("'descr' is not a simple dtype string (structured arrays are not supported)".into())
            }
            ("fortran_order" | "shape", _) => return Err(format!("bad value for '{k}'")),
            _ => {}
        }
    }
    Ok(NpyHeader {
        descr: descr.ok_or("missing 'descr'")?,
        fortran_order: fortran_order.ok_or("missing 'fortran_order'")?,
        shape: shape.ok_or("missing 'shape'")?,
    })
}

enum Value {
    Str(String),
    Bool(bool),
    Int(usize),
    Tuple(Vec<usize>),
    Dict(Vec<(String, Value)>),
    Other,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek().ok_or("unexpected end")? {
            b'{' => {
                self.i += 1;
                let mut entries = Vec::new();
                while self.peek() != Some(b'}') {
                    let Value::Str(k) = self.value()? else {
                        return Err("dict key is not a string".into());
                    };
                    self.expect(b':')?;
                    entries.push((k, self.value()?));
                    if self.peek() == Some(b',') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                self.expect(b'}')?;
                Ok(Value::Dict(entries))
            }
            b'(' => {
                self.i += 1;
                let mut items = Vec::new();
                while self.peek() != Some(b')') {
                    match self.value()? {
                        Value::Int(v) => items.push(v),
                        _ => return Err("shape holds a non-integer".into()),
                    }
                    if self.peek() == Some(b',') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                self.expect(b')')?;
                Ok(Value::Tuple(items))
            }
            q @ (b'\'' | b'"') => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != q {
                    self.i += 1;
                }
                if self.i >= self.s.len() {
                    return Err("unterminated string".into());
                }
                let s = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                Ok(Value::Str(s))
            }
            b'0'..=b'9' => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                // Python 2 era files may write longs as `60000L`.
                let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                if self.s.get(self.i) == Some(&b'L') {
                    self.i += 1;
                }
                digits.parse().map(Value::Int).map_err(|_| format!("bad integer '{digits}'"))
            }
            b'[' => {
                // Structured dtypes use lists; skip them so the error names the real problem.
                let mut depth = 0usize;
                while self.i < self.s.len() {
                    match self.s[self.i] {
                        b'[' => depth += 1,
                        b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(Value::Other);
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                Err("unterminated list".into())
            }
            _ => {
                for (word, v) in [("True", true), ("False", false)] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        self.i += word.len();
                        return Ok(Value::Bool(v));
                    }
                }
                Err(format!("unexpected character at byte {}", self.i))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numpy_headers() {
        let h = parse_header("{'descr': '<i8', 'fortran_order': False, 'shape': (60000,), }   \n").unwrap();
        assert_eq!(h.descr, "<i8");
        assert!(!h.fortran_order);
        assert_eq!(h.shape, vec![60000]);
        let h = parse_header("{'descr': '|u1', 'fortran_order': True, 'shape': (3, 28, 28)}").unwrap();
        assert!(h.fortran_order);
        assert_eq!(h.shape, vec![3, 28, 28]);
        let h = parse_header("{'descr': '<f8', 'fortran_order': False, 'shape': (), }").unwrap();
        assert!(h.shape.is_empty());
        assert!(parse_header("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,)}").is_err());
        assert!(parse_header("{'descr': '<i8', 'shape': (2,)}").is_err());
    }

    #[test]
    fn dtypes() {
        assert_eq!(dtype_of("|u1"), Some(('u', 1)));
        assert_eq!(dtype_of("<i4"), Some(('i', 4)));
        assert_eq!(dtype_of("<f4"), None);
        assert_eq!(dtype_of("|i8"), None);
    }

    #[test]
    fn label_decoding_sign_and_order() {
        let p = Path::new("x.npy");
        assert_eq!(decode_labels(p, "<i4", &(-3i32).to_le_bytes()).unwrap(), vec![-3]);
        assert_eq!(decode_labels(p, ">i4", &7i32.to_be_bytes()).unwrap(), vec![7]);
        assert_eq!(decode_labels(p, "|u1", &[250]).unwrap(), vec![250]);
        assert_eq!(decode_labels(p, "<i8", &(-1i64).to_le_bytes()).unwrap(), vec![-1]);
    }
}
