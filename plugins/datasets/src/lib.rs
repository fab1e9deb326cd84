//! Dataset adapters (component kind `dataset-adapter`): `idx`, `cifar-binary`, `image-folder` and
//! `npy`. Each reads one on-disk format with `archai-dataset-formats` and hands the host a split
//! as tensors: uint8 images `N x C x H x W` and int64 labels `N`, plus class names.
//!
//! # Configuration
//!
//! An adapter is built from its own keys of the `dataset:` section (see `confs/datasets/`) plus
//! the facts the host passes along; the host keeps `adapter`, `mean` and `std` to itself, and any
//! other key (a misplaced `val_ratio`, say) is an error:
//!
//! - **Host facts**, accepted by every adapter: `name`, `num_classes`, `channels`, `image_size`,
//!   and `class_names`. Adapters check the files against them:
//!   - `num_classes`: every label must lie in `0..num_classes` (an error names the file and the
//!     sample). When absent, the format's own class count is used (CIFAR: 10, 100 or 20; image
//!     folder: the number of class folders; IDX/NPY: largest label + 1).
//!   - `channels`, `image_size` (`n` or `[height, width]`): the images must have this shape; a
//!     mismatch is an error naming the file and the values to write instead.
//!   - `class_names` (optional list, one name per class): the names reported instead of the
//!     format's own (`"0"`, `"1"`, ... for IDX and NPY). For `image-folder` the folder names
//!     define the classes, so `class_names` must equal the sorted folder names.
//! - **Adapter keys**, listed below. Any other key is an error that names it. A key whose value
//!   is null (`key: ~`) counts as absent.
//!
//! Relative file names are relative to `root`; absolute ones are used as they are. `root` itself
//! is relative to the working directory of the run when it is not absolute.
//!
//! Every adapter reads the splits `train` and `test`; the host makes the validation split from
//! `train`. Files are read when a split is loaded, not when the adapter is built.
//!
//! ## `idx`: MNIST, Fashion-MNIST, KMNIST, EMNIST
//!
//! IDX files, raw or gzip-compressed (detected by content). One channel.
//!
//! | key | required | meaning |
//! |-----|----------|---------|
//! | `root` | yes | folder holding the files |
//! | `train` | to load `train` | `{images: FILE, labels: FILE}` (IDX images and IDX labels) |
//! | `test` | to load `test` | `{images: FILE, labels: FILE}` |
//!
//! ```yaml
//! dataset:
//!   name: fashion_mnist
//!   adapter: idx
//!   root: /usr/share/datasets/fashion-mnist
//!   train: {images: train-images-idx3-ubyte.gz, labels: train-labels-idx1-ubyte.gz}
//!   test:  {images: t10k-images-idx3-ubyte.gz,  labels: t10k-labels-idx1-ubyte.gz}
//!   num_classes: 10
//!   channels: 1
//!   image_size: 28
//! ```
//!
//! ## `cifar-binary`: CIFAR-10 and CIFAR-100 binary batches
//!
//! The "binary version" downloads (`cifar-10-batches-bin`, `cifar-100-binary`); images are
//! 3x32x32 and the class names are the official ones.
//!
//! | key | required | meaning |
//! |-----|----------|---------|
//! | `root` | yes | folder holding the batch files |
//! | `variant` | no | `cifar10` (default) or `cifar100` |
//! | `fine_labels` | no | `cifar100` only: `true` (default) for the 100 fine classes, `false` for the 20 coarse ones |
//! | `train` | no | batch file(s), one name or a list, read in order; default `data_batch_1.bin` ... `data_batch_5.bin` (cifar10), `train.bin` (cifar100) |
//! | `test` | no | batch file(s); default `test_batch.bin` (cifar10), `test.bin` (cifar100) |
//!
//! `num_classes` must match the variant (10, 100, or 20 with `fine_labels: false`); `channels` and
//! `image_size`, when given, must be 3 and 32.
//!
//! ## `image-folder`: one sub-folder per class
//!
//! `root/<train_dir>/<class>/*.png|jpg|jpeg` and the same under `test_dir`. Classes are the sorted
//! folder names (train and test must hold the same ones); images are converted to `channels`
//! (1 gray, 3 RGB).
//!
//! | key | required | meaning |
//! |-----|----------|---------|
//! | `root` | yes | folder holding the split folders |
//! | `train_dir` | no | the train split's folder under `root`, default `train` |
//! | `test_dir` | no | the test split's folder under `root`, default `test` |
//! | `resize` | no | `true`: resize every image to `image_size` (bilinear); `false` (default): every image must already be `image_size` |
//!
//! `resize: true` needs `image_size`.
//!
//! ## `npy`: NumPy arrays
//!
//! `.npy` files as written by `np.save`: images `uint8` of shape `(N, H, W)` or 4-D, labels
//! `int64`, `int32` or `uint8` of shape `(N,)`.
//!
//! | key | required | meaning |
//! |-----|----------|---------|
//! | `root` | yes | folder holding the files |
//! | `layout` | no | how 4-D images are laid out: `nhwc` (default, NumPy/PIL/TensorFlow) or `nchw` (PyTorch) |
//! | `train` | to load `train` | `{images: FILE, labels: FILE}` |
//! | `test` | to load `test` | `{images: FILE, labels: FILE}` |
use anyhow::{bail, Context, Result};
use archai_dataset_formats::cifar::{self, CifarVariant};
use archai_dataset_formats::npy::{self, NpyLayout};
use archai_dataset_formats::{idx, image_folder};
use archai_plugin_api::{export_plugin, register_dataset_adapter, DatasetAdapter, Split};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub mod config;
use config::{check_split_name, numeric_names, size_text, Loaded, Section};

export_plugin!();

register_dataset_adapter!(
    "idx",
    "IDX files, raw or gzip (MNIST, Fashion-MNIST, KMNIST, EMNIST); keys: root, train/test: {images, labels}",
    create_idx
);
register_dataset_adapter!(
    "cifar-binary",
    "CIFAR-10/CIFAR-100 binary batches; keys: root, variant (cifar10|cifar100), fine_labels, train, test",
    create_cifar
);
register_dataset_adapter!(
    "image-folder",
    "PNG/JPEG images, one sub-folder per class; keys: root, train_dir, test_dir, resize",
    create_image_folder
);
register_dataset_adapter!(
    "npy",
    "NumPy .npy arrays (uint8 images, integer labels); keys: root, layout (nhwc|nchw), train/test: {images, labels}",
    create_npy
);

/// The adapter keys of `idx`.
pub const IDX_KEYS: &[&str] = &["root", "train", "test"];
/// The adapter keys of `cifar-binary`.
pub const CIFAR_KEYS: &[&str] = &["root", "variant", "fine_labels", "train", "test"];
/// The adapter keys of `image-folder`.
pub const IMAGE_FOLDER_KEYS: &[&str] = &["root", "train_dir", "test_dir", "resize"];
/// The adapter keys of `npy`.
pub const NPY_KEYS: &[&str] = &["root", "layout", "train", "test"];

/// `{images: FILE, labels: FILE}`: the two files of one split.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitFiles {
    pub images: PathBuf,
    pub labels: PathBuf,
}

/// An adapter whose splits are an images file and a labels file (`idx`, `npy`).
struct PairFiles {
    root: PathBuf,
    train: Option<SplitFiles>,
    test: Option<SplitFiles>,
}

impl PairFiles {
    fn parse(s: &mut Section) -> Result<Self> {
        Ok(Self {
            root: s.required("root", "the folder holding the files")?,
            train: s.optional("train")?,
            test: s.optional("test")?,
        })
    }

    /// The resolved (images, labels) paths of `split`.
    fn paths(&self, label: &str, split: &str) -> Result<(PathBuf, PathBuf)> {
        check_split_name(label, split)?;
        let files = if split == "train" { &self.train } else { &self.test };
        let Some(f) = files else {
            bail!("{label}: no files for split `{split}`; add `{split}: {{images: FILE, labels: FILE}}` to the dataset config");
        };
        Ok((self.root.join(&f.images), self.root.join(&f.labels)))
    }
}

/// The `idx` adapter.
pub struct IdxAdapter {
    section: Section,
    files: PairFiles,
}

fn create_idx(config: &serde_json::Value) -> Result<Box<dyn DatasetAdapter>> {
    Ok(Box::new(IdxAdapter::new(config)?))
}

impl IdxAdapter {
    pub fn new(config: &serde_json::Value) -> Result<Self> {
        let mut section = Section::parse("idx", IDX_KEYS, config)?;
        let files = PairFiles::parse(&mut section)?;
        Ok(Self { section, files })
    }
}

impl DatasetAdapter for IdxAdapter {
    fn load(&mut self, split: &str) -> Result<Split> {
        let (images, labels) = self.files.paths(&self.section.label, split)?;
        let raw = idx::read(&images, &labels).with_context(|| self.section.label.clone())?;
        let class_names = numeric_names(&self.section.common, &raw);
        self.section.finish(Loaded {
            raw,
            images_path: &images,
            images_key: &format!("{split}.images"),
            shape_hint: "",
            class_names,
        })
    }
}

/// The `npy` adapter.
pub struct NpyAdapter {
    section: Section,
    files: PairFiles,
    layout: NpyLayout,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum LayoutKey {
    #[default]
    Nhwc,
    Nchw,
}

fn create_npy(config: &serde_json::Value) -> Result<Box<dyn DatasetAdapter>> {
    Ok(Box::new(NpyAdapter::new(config)?))
}

impl NpyAdapter {
    pub fn new(config: &serde_json::Value) -> Result<Self> {
        let mut section = Section::parse("npy", NPY_KEYS, config)?;
        let files = PairFiles::parse(&mut section)?;
        let layout = match section.optional::<LayoutKey>("layout")?.unwrap_or_default() {
            LayoutKey::Nhwc => NpyLayout::Nhwc,
            LayoutKey::Nchw => NpyLayout::Nchw,
        };
        Ok(Self { section, files, layout })
    }
}

impl DatasetAdapter for NpyAdapter {
    fn load(&mut self, split: &str) -> Result<Split> {
        let (images, labels) = self.files.paths(&self.section.label, split)?;
        let raw = npy::read(&images, &labels, self.layout).with_context(|| self.section.label.clone())?;
        let class_names = numeric_names(&self.section.common, &raw);
        let hint = match self.layout {
            NpyLayout::Nhwc => {
                "; 4-D images are read as (N, H, W, C) (`layout: nhwc`); set `layout: nchw` for (N, C, H, W)"
            }
            NpyLayout::Nchw => {
                "; 4-D images are read as (N, C, H, W) (`layout: nchw`); set `layout: nhwc` for (N, H, W, C)"
            }
        };
        self.section.finish(Loaded {
            raw,
            images_path: &images,
            images_key: &format!("{split}.images"),
            shape_hint: hint,
            class_names,
        })
    }
}

/// The `cifar-binary` adapter.
pub struct CifarAdapter {
    section: Section,
    root: PathBuf,
    variant: CifarVariant,
    train: Vec<PathBuf>,
    test: Vec<PathBuf>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum VariantKey {
    #[default]
    Cifar10,
    Cifar100,
}

fn create_cifar(config: &serde_json::Value) -> Result<Box<dyn DatasetAdapter>> {
    Ok(Box::new(CifarAdapter::new(config)?))
}

impl CifarAdapter {
    pub fn new(config: &serde_json::Value) -> Result<Self> {
        let mut s = Section::parse("cifar-binary", CIFAR_KEYS, config)?;
        let label = s.label.clone();
        let root: PathBuf = s.required("root", "the folder holding the batch files")?;
        let variant_key = s.optional::<VariantKey>("variant")?.unwrap_or_default();
        let fine: Option<bool> = s.optional("fine_labels")?;
        let variant = match (variant_key, fine) {
            (VariantKey::Cifar10, Some(_)) => {
                bail!("{label}: `fine_labels` applies to `variant: cifar100` only; remove it or set the variant")
            }
            (VariantKey::Cifar10, None) => CifarVariant::Cifar10,
            (VariantKey::Cifar100, f) => CifarVariant::Cifar100 { fine: f.unwrap_or(true) },
        };
        let (default_train, default_test): (Vec<&str>, Vec<&str>) = match variant {
            CifarVariant::Cifar10 => (
                vec![
                    "data_batch_1.bin",
                    "data_batch_2.bin",
                    "data_batch_3.bin",
                    "data_batch_4.bin",
                    "data_batch_5.bin",
                ],
                vec!["test_batch.bin"],
            ),
            CifarVariant::Cifar100 { .. } => (vec!["train.bin"], vec!["test.bin"]),
        };
        let paths = |v: Vec<&str>| v.into_iter().map(PathBuf::from).collect::<Vec<_>>();
        let train = s.optional_files("train")?.unwrap_or_else(|| paths(default_train));
        let test = s.optional_files("test")?.unwrap_or_else(|| paths(default_test));
        if let Some(n) = s.common.num_classes.filter(|&n| n != variant.num_classes()) {
            let which = match variant {
                CifarVariant::Cifar10 => "CIFAR-10 has 10 classes".to_string(),
                CifarVariant::Cifar100 { fine: true } => {
                    "CIFAR-100 has 100 fine classes (set `fine_labels: false` for the 20 coarse ones)".to_string()
                }
                CifarVariant::Cifar100 { fine: false } => {
                    "CIFAR-100 has 20 coarse classes with `fine_labels: false`".to_string()
                }
            };
            bail!("{label}: `num_classes: {n}` does not match the variant: {which}; fix `num_classes` or `variant`");
        }
        let (c, h, w) = cifar::SHAPE;
        let channels_wrong = s.common.channels.is_some_and(|ch| ch != c);
        let size_wrong = s.common.image_size.is_some_and(|sz| sz != (h, w));
        if channels_wrong || size_wrong {
            bail!(
                "{label}: CIFAR images are {c}x{h}x{w}, but the dataset config says `channels: {}`, `image_size: {}`; \
                 set `channels: {c}` and `image_size: {h}`",
                s.common.channels.map(|c| c.to_string()).unwrap_or_else(|| "(unset)".into()),
                s.common.image_size.map(size_text).unwrap_or_else(|| "(unset)".into())
            );
        }
        Ok(Self { section: s, root, variant, train, test })
    }
}

impl DatasetAdapter for CifarAdapter {
    fn load(&mut self, split: &str) -> Result<Split> {
        check_split_name(&self.section.label, split)?;
        let files = if split == "train" { &self.train } else { &self.test };
        let files: Vec<PathBuf> = files.iter().map(|f| self.root.join(f)).collect();
        let raw = cifar::read(&files, self.variant).with_context(|| self.section.label.clone())?;
        let class_names = self.variant.class_names();
        self.section.finish(Loaded { raw, images_path: &files[0], images_key: split, shape_hint: "", class_names })
    }
}

/// The `image-folder` adapter.
pub struct ImageFolderAdapter {
    section: Section,
    root: PathBuf,
    train_dir: PathBuf,
    test_dir: PathBuf,
    resize: bool,
}

fn create_image_folder(config: &serde_json::Value) -> Result<Box<dyn DatasetAdapter>> {
    Ok(Box::new(ImageFolderAdapter::new(config)?))
}

impl ImageFolderAdapter {
    pub fn new(config: &serde_json::Value) -> Result<Self> {
        let mut s = Section::parse("image-folder", IMAGE_FOLDER_KEYS, config)?;
        let root: PathBuf = s.required("root", "the folder holding the train and test folders")?;
        let train_dir = s.optional("train_dir")?.unwrap_or_else(|| PathBuf::from("train"));
        let test_dir = s.optional("test_dir")?.unwrap_or_else(|| PathBuf::from("test"));
        let resize = s.optional("resize")?.unwrap_or(false);
        if resize && s.common.image_size.is_none() {
            bail!("{}: `resize: true` needs `image_size` (the size to resize to)", s.label);
        }
        if let Some(c) = s.common.channels.filter(|&c| c != 1 && c != 3) {
            bail!("{}: image folders are read as 1 (gray) or 3 (RGB) channels, not {c}; fix `channels`", s.label);
        }
        Ok(Self { section: s, root, train_dir, test_dir, resize })
    }
}

/// Sorted names of the class folders of `dir` (non-hidden sub-folders), as the reader sees them.
fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list the folder", dir.display()))? {
        let entry = entry.with_context(|| format!("{}: cannot list the folder", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

impl DatasetAdapter for ImageFolderAdapter {
    fn load(&mut self, split: &str) -> Result<Split> {
        let label = self.section.label.clone();
        check_split_name(&label, split)?;
        let (dir, key, other_dir) = if split == "train" {
            (self.root.join(&self.train_dir), "train_dir", self.root.join(&self.test_dir))
        } else {
            (self.root.join(&self.test_dir), "test_dir", self.root.join(&self.train_dir))
        };
        let common = &self.section.common;
        let expect = match (common.channels, common.image_size) {
            (Some(c), Some((h, w))) => Some((c, h, w)),
            _ => None,
        };
        let resize = if self.resize { common.image_size } else { None };
        let raw = image_folder::read(&dir, expect, resize).with_context(|| label.clone())?;
        let folders = raw.class_names.clone();
        if let Some(n) = common.num_classes.filter(|&n| n != folders.len()) {
            bail!(
                "{label}: {} has {} class folders ({}) but `num_classes` is {n}; fix `num_classes` or the folders",
                dir.display(),
                folders.len(),
                folders.join(", ")
            );
        }
        // Labels are positions in the sorted folder list, so train and test must list the same
        // classes or the same index would mean different classes.
        if other_dir.is_dir() {
            let other = class_folders(&other_dir)?;
            if other != folders {
                let only_here: Vec<_> = folders.iter().filter(|f| !other.contains(f)).cloned().collect();
                let only_there: Vec<_> = other.iter().filter(|f| !folders.contains(f)).cloned().collect();
                bail!(
                    "{label}: {} and {} must hold the same class folders (labels follow their sorted names); \
                     only in the first: [{}], only in the second: [{}]",
                    dir.display(),
                    other_dir.display(),
                    only_here.join(", "),
                    only_there.join(", ")
                );
            }
        }
        if let Some(names) = common.class_names.as_ref().filter(|n| **n != folders) {
            bail!(
                "{label}: `class_names` [{}] differ from the class folders of {} [{}]; the folder names are the \
                 classes, so remove `class_names` or rename the folders",
                names.join(", "),
                dir.display(),
                folders.join(", ")
            );
        }
        let hint = if self.resize { "" } else { "; or set `resize: true` to resize every image to `image_size`" };
        self.section.finish(Loaded { raw, images_path: &dir, images_key: key, shape_hint: hint, class_names: folders })
    }
}

#[cfg(test)]
mod tests;
