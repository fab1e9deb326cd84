use std::path::PathBuf;

/// Everything that can be wrong with a dataset on disk. Each message names the file (and the
/// sample or record where known), what was expected, and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A file or folder named in the dataset config does not exist.
    #[error("{}: no such file or folder; check `root` and the file names in the dataset config", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },

    /// The file exists but could not be read (permissions, I/O error).
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file could not be written (only the `write*` helpers).
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A gzip stream is corrupt or cut short.
    #[error("{}: gzip data is corrupt or truncated ({source}); re-download or re-extract the file", path.display())]
    Gzip {
        /// The compressed file.
        path: PathBuf,
        /// The decompressor's error.
        #[source]
        source: std::io::Error,
    },

    /// The magic number at the start of a file is not the one its format needs.
    #[error("{}: wrong magic number {found:#010x}, expected {expected:#010x} ({what}); is this the right file?", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What the file starts with.
        found: u32,
        /// What the format requires.
        expected: u32,
        /// What kind of file was expected, in words.
        what: &'static str,
    },

    /// A file is shorter than its header (or fixed record layout) says it must be.
    #[error("{}: truncated: expected {expected} bytes{detail}, found {actual}; re-download the file", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header promises.
        expected: u64,
        /// Bytes present.
        actual: u64,
        /// Extra context, such as "after decompression"; empty or starting with a space.
        detail: String,
    },

    /// A file is longer than its header says; the format gives no meaning to trailing bytes.
    #[error("{}: {actual} bytes{detail} but its header describes {expected}; the file is corrupt or not of this format", path.display())]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes the header describes.
        expected: u64,
        /// Bytes present.
        actual: u64,
        /// Extra context, such as "after decompression"; empty or starting with a space.
        detail: String,
    },

    /// A CIFAR batch file whose size is not a whole number of records.
    #[error("{}: truncated or not a {variant} batch: {size} bytes is not a multiple of the {record_size}-byte record; record {record} is incomplete ({partial} bytes)", path.display())]
    CifarRecord {
        /// The batch file.
        path: PathBuf,
        /// "CIFAR-10" or "CIFAR-100".
        variant: &'static str,
        /// File size in bytes.
        size: u64,
        /// Bytes per record in this variant.
        record_size: usize,
        /// Index of the first incomplete record.
        record: usize,
        /// Bytes of that record present.
        partial: usize,
    },

    /// The image and label files disagree on the number of samples.
    #[error("{} has {images} images but {} has {labels} labels; they must come from the same split", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// The labels file.
        labels_path: PathBuf,
        /// Samples in the images file.
        images: usize,
        /// Samples in the labels file.
        labels: usize,
    },

    /// A label outside `0..num_classes`.
    #[error("{}: sample {index} has label {label}, outside 0..{num_classes}; fix the labels or `num_classes` in the dataset config", path.display())]
    LabelOutOfRange {
        /// The file the labels came from.
        path: PathBuf,
        /// Sample (or record) index within the split or file.
        index: usize,
        /// The offending label.
        label: i64,
        /// Number of classes expected.
        num_classes: usize,
    },

    /// An image file could not be decoded.
    #[error("{}: unreadable image: {reason}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },

    /// An image's size differs from the one the dataset config declares, and no resize was asked.
    #[error("{}: image is {found_h}x{found_w}, expected {expected_h}x{expected_w}; fix `image_size` in the dataset config or ask for a resize", path.display())]
    ImageSize {
        /// The image file.
        path: PathBuf,
        /// Expected height.
        expected_h: usize,
        /// Expected width.
        expected_w: usize,
        /// Actual height.
        found_h: usize,
        /// Actual width.
        found_w: usize,
    },

    /// A class folder holds no PNG or JPEG files.
    #[error("{}: class folder has no .png/.jpg/.jpeg images; add images or remove the folder", path.display())]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },

    /// An image-folder root holds no class sub-folders.
    #[error("{}: no class sub-folders; an image folder needs one sub-folder per class", path.display())]
    NoClasses {
        /// The root folder.
        path: PathBuf,
    },

    /// A `.npy` file that is malformed or holds an unsupported dtype, order or shape.
    #[error("{}: {reason}", path.display())]
    Npy {
        /// The `.npy` file.
        path: PathBuf,
        /// What is wrong and what is supported.
        reason: String,
    },

    /// A header or buffer that contradicts itself (for example sizes that overflow), or a
    /// [`crate::RawSplit`] whose buffers do not match its shape.
    #[error("{}: {reason}", path.display())]
    Inconsistent {
        /// The file concerned.
        path: PathBuf,
        /// What contradicts what.
        reason: String,
    },

    /// An argument the caller passed makes no sense (for example no files to read).
    #[error("{0}")]
    InvalidArgument(String),
}
