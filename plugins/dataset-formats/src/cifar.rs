//! CIFAR-10 and CIFAR-100 binary batches (`data_batch_1.bin`, `train.bin`, ...).
//!
//! A batch is a plain sequence of fixed-size records with no header: CIFAR-10 records are one
//! label byte and 3072 pixel bytes (3x32x32, channel-major); CIFAR-100 records carry a coarse
//! label byte, then a fine label byte, then the pixels. Because there is no header, the record
//! size is the only check a reader can make, so a wrong variant or a cut file is caught there.

use crate::util::{check_split, read_file, write_file};
use crate::{FormatError, RawSplit};
use std::path::{Path, PathBuf};

/// Channels, height and width of every CIFAR image.
pub const SHAPE: (usize, usize, usize) = (3, 32, 32);
/// Pixel bytes per record.
pub const PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR layout the batch files use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarVariant {
    /// One label byte per record, 10 classes.
    Cifar10,
    /// Coarse and fine label bytes per record; `fine` picks the 100 fine classes, otherwise the
    /// 20 coarse super-classes.
    Cifar100 {
        /// Use the fine (100-class) labels.
        fine: bool,
    },
}

impl CifarVariant {
    /// Bytes per record: label bytes plus 3072 pixels.
    pub fn record_size(self) -> usize {
        self.label_bytes() + PIXELS
    }

    /// Number of classes of the chosen labels.
    pub fn num_classes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 10,
            CifarVariant::Cifar100 { fine: true } => 100,
            CifarVariant::Cifar100 { fine: false } => 20,
        }
    }

    /// Official class names, in label order.
    pub fn class_names(self) -> Vec<String> {
        let names: &[&str] = match self {
            CifarVariant::Cifar10 => &CIFAR10_CLASSES,
            CifarVariant::Cifar100 { fine: true } => &CIFAR100_FINE,
            CifarVariant::Cifar100 { fine: false } => &CIFAR100_COARSE,
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    fn label_bytes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 1,
            CifarVariant::Cifar100 { .. } => 2,
        }
    }

    /// Offset of the label this variant uses within a record.
    fn label_offset(self) -> usize {
        match self {
            CifarVariant::Cifar10 | CifarVariant::Cifar100 { fine: false } => 0,
            CifarVariant::Cifar100 { fine: true } => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => "CIFAR-10",
            CifarVariant::Cifar100 { .. } => "CIFAR-100",
        }
    }
}

/// Reads and concatenates the records of `files` (in the order given) into one [`RawSplit`]
/// of 3x32x32 images. Labels are checked against the variant's class count as they are read, so
/// a wrong variant is reported with the file and record index.
pub fn read(files: &[PathBuf], variant: CifarVariant) -> Result<RawSplit, FormatError> {
    if files.is_empty() {
        return Err(FormatError::InvalidArgument(format!(
            "no {} batch files given; list them in the dataset config",
            variant.name()
        )));
    }
    let record_size = variant.record_size();
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let bytes = read_file(path)?;
        if bytes.is_empty() {
            return Err(FormatError::Truncated {
                path: path.clone(),
                expected: record_size as u64,
                actual: 0,
                detail: format!(" (at least one {} record)", variant.name()),
            });
        }
        if bytes.len() % record_size != 0 {
            return Err(FormatError::CifarRecord {
                path: path.clone(),
                variant: variant.name(),
                size: bytes.len() as u64,
                record_size,
                record: bytes.len() / record_size,
                partial: bytes.len() % record_size,
            });
        }
        images.reserve(bytes.len() / record_size * PIXELS);
        for (i, record) in bytes.chunks_exact(record_size).enumerate() {
            let label = record[variant.label_offset()] as usize;
            if label >= variant.num_classes() {
                return Err(FormatError::LabelOutOfRange {
                    path: path.clone(),
                    index: i,
                    label: label as i64,
                    num_classes: variant.num_classes(),
                });
            }
            labels.push(label as i64);
            images.extend_from_slice(&record[variant.label_bytes()..]);
        }
    }
    Ok(RawSplit {
        n: labels.len(),
        images,
        channels: SHAPE.0,
        height: SHAPE.1,
        width: SHAPE.2,
        labels,
        class_names: variant.class_names(),
        source: files[0].clone(),
    })
}

/// Writes a 3x32x32 split as one CIFAR-10 batch file.
pub fn write_cifar10(path: &Path, split: &RawSplit) -> Result<(), FormatError> {
    write_records(path, split, |i, l| Ok(vec![label_byte(path, i, l)?]))
}

/// Writes a 3x32x32 split as one CIFAR-100 batch file; `split.labels` are the fine labels and
/// `coarse` the coarse ones (one per sample).
pub fn write_cifar100(path: &Path, split: &RawSplit, coarse: &[i64]) -> Result<(), FormatError> {
    if coarse.len() != split.n {
        return Err(FormatError::InvalidArgument(format!(
            "{}: {} coarse labels for {} samples",
            path.display(),
            coarse.len(),
            split.n
        )));
    }
    write_records(path, split, |i, l| Ok(vec![label_byte(path, i, coarse[i])?, label_byte(path, i, l)?]))
}

fn label_byte(path: &Path, index: usize, label: i64) -> Result<u8, FormatError> {
    u8::try_from(label).map_err(|_| FormatError::LabelOutOfRange {
        path: path.to_path_buf(),
        index,
        label,
        num_classes: 256,
    })
}

fn write_records(
    path: &Path,
    split: &RawSplit,
    label_bytes: impl Fn(usize, i64) -> Result<Vec<u8>, FormatError>,
) -> Result<(), FormatError> {
    check_split(split, path)?;
    if (split.channels, split.height, split.width) != SHAPE {
        return Err(FormatError::InvalidArgument(format!(
            "{}: CIFAR images are 3x32x32, the split is {}x{}x{}",
            path.display(),
            split.channels,
            split.height,
            split.width
        )));
    }
    let mut out = Vec::with_capacity(split.n * (PIXELS + 2));
    for (i, (pixels, &label)) in split.images.chunks_exact(PIXELS).zip(&split.labels).enumerate() {
        out.extend(label_bytes(i, label)?);
        out.extend_from_slice(pixels);
    }
    write_file(path, &out)
}

const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

const CIFAR100_COARSE: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

const CIFAR100_FINE: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];
