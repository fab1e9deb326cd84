//! Augmentation and normalisation of one sample: `u8` CHW in, `f32` CHW out.
//!
//! Pixels are first scaled to `[0, 1]` (like torchvision's `ToTensor`), then the transforms run
//! in list order. The usual list is DARTS' `[random_crop, horizontal_flip, normalize, cutout]`:
//! normalize comes after the geometric transforms, and cutout after normalize so the cut square
//! holds zeros in normalised space (the dataset mean), exactly as DARTS applies it.
//!
//! Randomness comes from a generator keyed by (seed, epoch, sample index), so a sample's
//! augmentation does not depend on which thread builds it or which batch it falls in.

use crate::rng::{below, rng_for, unit, TAG_AUGMENT};
use crate::DataError;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One transform, as written in a config: a map with a single key naming the transform.
///
/// ```yaml
/// transforms:
///   - random_crop: {size: 32, padding: 4}
///   - horizontal_flip: {p: 0.5}
///   - normalize: {mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616]}
///   - cutout: {length: 16}
///   - resize: {size: [32, 32]}
/// ```
///
/// Unknown transform names and unknown or misspelt parameters are errors.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Pads every side with `padding` zero pixels, then crops a random `size` x `size` window.
    RandomCrop {
        /// Side of the square crop.
        size: usize,
        /// Zero padding added on each side before cropping (0 when omitted).
        padding: usize,
    },
    /// Mirrors the image left-right with probability `p`.
    HorizontalFlip {
        /// Probability of flipping (0.5 when omitted).
        p: f64,
    },
    /// Zeroes a `length` x `length` square (clipped at the borders) at a random centre, in all
    /// channels. A length of 0 disables it.
    Cutout {
        /// Side of the square.
        length: usize,
    },
    /// `(x - mean[c]) / std[c]` per channel, on pixels already scaled to `[0, 1]`.
    Normalize {
        /// Per-channel means.
        mean: Vec<f32>,
        /// Per-channel standard deviations (positive).
        std: Vec<f32>,
    },
    /// Bilinear resize to `[height, width]`.
    Resize {
        /// Target `[height, width]`.
        size: [usize; 2],
    },
}

// The config form `{name: {params}}` is serde's externally tagged enum, but YAML deserializers
// in the yaml_serde family only accept `!name` tags for enums; so the map is handled by hand
// here, with one parameter struct per transform doing the field checks (deny_unknown_fields).
mod repr {
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub(super) enum Kind {
        RandomCrop,
        HorizontalFlip,
        Cutout,
        Normalize,
        Resize,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct RandomCrop {
        pub size: usize,
        #[serde(default)]
        pub padding: usize,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct HorizontalFlip {
        #[serde(default = "half")]
        pub p: f64,
    }

    fn half() -> f64 {
        0.5
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Cutout {
        pub length: usize,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Normalize {
        pub mean: Vec<f32>,
        pub std: Vec<f32>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Resize {
        pub size: [usize; 2],
    }
}

impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Transform;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map with one key naming the transform, like `random_crop: {size: 32, padding: 4}`")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Transform, A::Error> {
                use repr::Kind;
                let Some(kind) = map.next_key::<Kind>()? else {
                    return Err(serde::de::Error::invalid_length(0, &self));
                };
                let t = match kind {
                    Kind::RandomCrop => {
                        let a: repr::RandomCrop = map.next_value()?;
                        Transform::RandomCrop { size: a.size, padding: a.padding }
                    }
                    Kind::HorizontalFlip => {
                        let a: repr::HorizontalFlip = map.next_value()?;
                        Transform::HorizontalFlip { p: a.p }
                    }
                    Kind::Cutout => {
                        let a: repr::Cutout = map.next_value()?;
                        Transform::Cutout { length: a.length }
                    }
                    Kind::Normalize => {
                        let a: repr::Normalize = map.next_value()?;
                        Transform::Normalize { mean: a.mean, std: a.std }
                    }
                    Kind::Resize => {
                        let a: repr::Resize = map.next_value()?;
                        Transform::Resize { size: a.size }
                    }
                };
                if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::custom(
                        "each transform is its own list item with a single key; split this map into several `- name: {...}` items",
                    ));
                }
                Ok(t)
            }
        }
        d.deserialize_map(V)
    }
}

impl Serialize for Transform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Transform::RandomCrop { size, padding } => {
                m.serialize_entry(&repr::Kind::RandomCrop, &repr::RandomCrop { size: *size, padding: *padding })?
            }
            Transform::HorizontalFlip { p } => {
                m.serialize_entry(&repr::Kind::HorizontalFlip, &repr::HorizontalFlip { p: *p })?
            }
            Transform::Cutout { length } => {
                m.serialize_entry(&repr::Kind::Cutout, &repr::Cutout { length: *length })?
            }
            Transform::Normalize { mean, std } => {
                m.serialize_entry(&repr::Kind::Normalize, &repr::Normalize { mean: mean.clone(), std: std.clone() })?
            }
            Transform::Resize { size } => m.serialize_entry(&repr::Kind::Resize, &repr::Resize { size: *size })?,
        }
        m.end()
    }
}

impl Transform {
    /// The config name of the transform.
    pub fn name(&self) -> &'static str {
        match self {
            Transform::RandomCrop { .. } => "random_crop",
            Transform::HorizontalFlip { .. } => "horizontal_flip",
            Transform::Cutout { .. } => "cutout",
            Transform::Normalize { .. } => "normalize",
            Transform::Resize { .. } => "resize",
        }
    }

    /// The output `[C, H, W]` for an input shape, or why the transform cannot apply to it.
    fn out_shape(&self, [c, h, w]: [usize; 3]) -> Result<[usize; 3], String> {
        match self {
            Transform::RandomCrop { size, padding } => {
                let (ph, pw) = (h + 2 * padding, w + 2 * padding);
                if *size == 0 || *size > ph || *size > pw {
                    return Err(format!("crop size {size} must be between 1 and the padded image size {ph}x{pw}"));
                }
                Ok([c, *size, *size])
            }
            Transform::HorizontalFlip { p } => {
                if !(0.0..=1.0).contains(p) {
                    return Err(format!("probability p = {p} must be within [0, 1]"));
                }
                Ok([c, h, w])
            }
            Transform::Cutout { .. } => Ok([c, h, w]),
            Transform::Normalize { mean, std } => {
                if mean.len() != c || std.len() != c {
                    return Err(format!(
                        "{} means and {} stds for {c} channels; give one of each per channel",
                        mean.len(),
                        std.len()
                    ));
                }
                if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(format!("std {s} must be positive"));
                }
                if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
                    return Err(format!("mean {m} must be finite"));
                }
                Ok([c, h, w])
            }
            Transform::Resize { size: [rh, rw] } => {
                if *rh == 0 || *rw == 0 {
                    return Err(format!("cannot resize to {rh}x{rw}"));
                }
                Ok([c, *rh, *rw])
            }
        }
    }

    /// Applies the transform to `img` (shape `shape`), returning the new shape. `scratch` is
    /// reused between calls to avoid an allocation per transform.
    fn apply(&self, img: &mut Vec<f32>, scratch: &mut Vec<f32>, shape: [usize; 3], rng: &mut ChaCha8Rng) -> [usize; 3] {
        let [c, h, w] = shape;
        match self {
            Transform::RandomCrop { size, padding } => {
                let s = *size;
                let p = *padding;
                // Offsets into the padded image, drawn like torchvision: top first, then left.
                let top = below(rng, (h + 2 * p - s + 1) as u64) as isize - p as isize;
                let left = below(rng, (w + 2 * p - s + 1) as u64) as isize - p as isize;
                scratch.clear();
                scratch.resize(c * s * s, 0.0);
                for ch in 0..c {
                    for y in 0..s {
                        let sy = top + y as isize;
                        if sy < 0 || sy >= h as isize {
                            continue;
                        }
                        let src_row = &img[ch * h * w + sy as usize * w..][..w];
                        let dst_row = &mut scratch[ch * s * s + y * s..][..s];
                        for (x, d) in dst_row.iter_mut().enumerate() {
                            let sx = left + x as isize;
                            if sx >= 0 && sx < w as isize {
                                *d = src_row[sx as usize];
                            }
                        }
                    }
                }
                std::mem::swap(img, scratch);
                [c, s, s]
            }
            Transform::HorizontalFlip { p } => {
                // Always draw, so that p does not shift the stream of later transforms.
                if unit(rng) < *p {
                    for row in img.chunks_exact_mut(w) {
                        row.reverse();
                    }
                }
                shape
            }
            Transform::Cutout { length } => {
                // DARTS: centre uniform over the image, square clipped at the borders.
                let cy = below(rng, h as u64) as usize;
                let cx = below(rng, w as u64) as usize;
                let half = length / 2;
                if *length > 0 {
                    let (y1, y2) = (cy.saturating_sub(half), (cy + half).min(h));
                    let (x1, x2) = (cx.saturating_sub(half), (cx + half).min(w));
                    for ch in 0..c {
                        for y in y1..y2 {
                            img[ch * h * w + y * w + x1..ch * h * w + y * w + x2].fill(0.0);
                        }
                    }
                }
                shape
            }
            Transform::Normalize { mean, std } => {
                for (ch, plane) in img.chunks_exact_mut(h * w).enumerate() {
                    let (m, inv) = (mean[ch], 1.0 / std[ch]);
                    for v in plane {
                        *v = (*v - m) * inv;
                    }
                }
                shape
            }
            Transform::Resize { size: [rh, rw] } => {
                resize_bilinear(img, scratch, shape, [*rh, *rw]);
                std::mem::swap(img, scratch);
                [c, *rh, *rw]
            }
        }
    }
}

/// A validated transform list for a fixed input shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    transforms: Vec<Transform>,
    in_shape: [usize; 3],
    out_shape: [usize; 3],
}

impl Pipeline {
    /// Checks `transforms` against samples of shape `in_shape` (`[C, H, W]`): crop sizes fit,
    /// normalize has one mean and std per channel, probabilities are in range, and so on.
    pub fn new(transforms: &[Transform], in_shape: [usize; 3]) -> Result<Self, DataError> {
        if in_shape.contains(&0) {
            return Err(DataError::Shape { reason: format!("sample shape {in_shape:?} has a zero dimension") });
        }
        let mut shape = in_shape;
        for (position, t) in transforms.iter().enumerate() {
            shape = t.out_shape(shape).map_err(|reason| DataError::Transform { position, name: t.name(), reason })?;
        }
        Ok(Self { transforms: transforms.to_vec(), in_shape, out_shape: shape })
    }

    /// Input `[C, H, W]`.
    pub fn in_shape(&self) -> [usize; 3] {
        self.in_shape
    }

    /// Output `[C, H, W]`.
    pub fn out_shape(&self) -> [usize; 3] {
        self.out_shape
    }

    /// Output values per sample.
    pub fn out_len(&self) -> usize {
        self.out_shape.iter().product()
    }

    /// The transforms.
    pub fn transforms(&self) -> &[Transform] {
        &self.transforms
    }

    /// Transforms one sample. `seed`, `epoch` and `index` (the sample's index in the dataset)
    /// key its random choices.
    pub fn apply(&self, sample: &[u8], seed: u64, epoch: u64, index: usize) -> Result<Vec<f32>, DataError> {
        let need: usize = self.in_shape.iter().product();
        if sample.len() != need {
            return Err(DataError::Shape {
                reason: format!("sample has {} bytes, the pipeline expects {:?} = {need}", sample.len(), self.in_shape),
            });
        }
        let mut out = vec![0.0; self.out_len()];
        self.apply_into(sample, seed, epoch, index, &mut out);
        Ok(out)
    }

    /// [`apply`](Self::apply) into a caller-provided slice; `sample` and `out` must have the
    /// pipeline's input and output lengths (the batcher guarantees it).
    pub(crate) fn apply_into(&self, sample: &[u8], seed: u64, epoch: u64, index: usize, out: &mut [f32]) {
        // Division rather than a multiply by 1/255, to match torchvision's ToTensor bit for bit.
        let mut img: Vec<f32> = sample.iter().map(|&v| v as f32 / 255.0).collect();
        let mut scratch = Vec::new();
        let mut rng = rng_for(&[TAG_AUGMENT, seed, epoch, index as u64]);
        let mut shape = self.in_shape;
        for t in &self.transforms {
            shape = t.apply(&mut img, &mut scratch, shape, &mut rng);
        }
        out.copy_from_slice(&img);
    }
}

/// Bilinear resize of a CHW `f32` image with half-pixel centres (OpenCV / torchvision
/// convention), written into `out`.
fn resize_bilinear(src: &[f32], out: &mut Vec<f32>, [c, sh, sw]: [usize; 3], [dh, dw]: [usize; 2]) {
    let axis = |s: usize, d: usize| -> Vec<(usize, usize, f32)> {
        let scale = s as f32 / d as f32;
        (0..d)
            .map(|o| {
                let p = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (p.floor() as usize).min(s - 1);
                (i0, (i0 + 1).min(s - 1), p - i0 as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(sh, dh), axis(sw, dw));
    out.clear();
    out.reserve(c * dh * dw);
    for plane in src.chunks_exact(sh * sw).take(c) {
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                let top = plane[y0 * sw + x0] * (1.0 - fx) + plane[y0 * sw + x1] * fx;
                let bottom = plane[y1 * sw + x0] * (1.0 - fx) + plane[y1 * sw + x1] * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
}
