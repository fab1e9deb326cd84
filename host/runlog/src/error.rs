//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while creating a run directory, writing logs or
/// reading TensorBoard event files. Every message names the file involved and,
/// where there is one, what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum RunLogError {
    /// An operating-system I/O call failed on `path`.
    // The OS error is part of this message and not a `source`: printed as a chain ("{:#}"), it
    // would otherwise appear twice.
    #[error("could not {action} {path}: {cause}", path = path.display())]
    Io {
        /// What was being attempted, e.g. "create directory".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },

    /// The chosen run directory already holds files and `--resume` was not given.
    #[error(
        "run directory {0} already exists and is not empty; pass --resume to continue that run \
         or choose another --out"
    )]
    RunDirExists(PathBuf),

    /// `--resume` named a run directory that does not exist.
    #[error(
        "cannot resume: run directory {0} does not exist; check the --out path or drop --resume \
         to start a new run"
    )]
    ResumeMissing(PathBuf),

    /// `--resume` without an explicit directory: there is no way to know which run to continue.
    #[error("--resume needs --out RUN_DIR naming the run directory to continue")]
    ResumeWithoutDir,

    /// A path that must be a directory is something else.
    #[error("{0} exists but is not a directory; choose another --out")]
    NotADirectory(PathBuf),

    /// An existing log.yaml could not be parsed.
    #[error("{path} is not valid YAML ({source}); repair it or move it away before resuming")]
    YamlParse {
        /// The log file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: yaml_serde::Error,
    },

    /// An existing log.yaml parsed, but its top level is not a mapping.
    #[error("{0} does not hold a mapping at its top level; repair it or move it away before resuming")]
    LogNotMapping(PathBuf),

    /// A value given to `LogTree::set` could not be turned into YAML.
    #[error("cannot store a value at log key '{key_path}': {source}")]
    Serialize {
        /// The key path passed to `set`.
        key_path: String,
        /// The serializer's error.
        #[source]
        source: yaml_serde::Error,
    },

    /// The in-memory log tree could not be emitted as YAML.
    #[error("cannot write {path}: the log tree did not serialize ({source})")]
    Emit {
        /// The log file.
        path: PathBuf,
        /// The emitter's error.
        #[source]
        source: yaml_serde::Error,
    },

    /// A key path is malformed (e.g. an empty segment in "a//b").
    #[error("invalid log key '{0}': segments are separated by single '/' and must not be empty")]
    InvalidKeyPath(String),

    /// A key path needs to descend through a value that is not a mapping.
    #[error(
        "cannot store log key '{key_path}': '{prefix}' already holds a scalar or list, not a \
         mapping; use a different key"
    )]
    KeyPathConflict {
        /// The key path passed to `set`.
        key_path: String,
        /// The prefix of it that holds a non-mapping value.
        prefix: String,
    },

    /// A TensorBoard record's stored CRC does not match its bytes.
    #[error(
        "TensorBoard file {path}: record {record} (byte offset {offset}): {part} CRC mismatch \
         (stored {stored:#010x}, computed {computed:#010x}); the file is corrupt"
    )]
    TbCrc {
        /// The event file.
        path: PathBuf,
        /// Index of the record, 0 = the file-version record.
        record: usize,
        /// Byte offset where the record starts.
        offset: usize,
        /// "length" or "data".
        part: &'static str,
        /// The masked CRC stored in the file.
        stored: u32,
        /// The masked CRC computed from the bytes.
        computed: u32,
    },

    /// A TensorBoard file ends in the middle of a record.
    #[error(
        "TensorBoard file {path}: record {record} (byte offset {offset}) is truncated; the writer \
         was probably killed mid-write (read_events_allow_partial_tail skips such a tail)"
    )]
    TbTruncated {
        /// The event file.
        path: PathBuf,
        /// Index of the incomplete record.
        record: usize,
        /// Byte offset where the record starts.
        offset: usize,
    },

    /// A record's CRCs verified but its bytes are not a valid Event protobuf.
    #[error("TensorBoard file {path}: record {record} is not a valid Event: {msg}")]
    TbDecode {
        /// The event file.
        path: PathBuf,
        /// Index of the record.
        record: usize,
        /// What the decoder found wrong.
        msg: String,
    },

    /// The global tracing subscriber could not be installed.
    #[error("cannot set up logging: {0}")]
    Logging(String),
}

impl RunLogError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RunLogError::Io { action, path: path.into(), cause: source }
    }
}

/// Short alias used throughout the crate.
pub type Result<T, E = RunLogError> = std::result::Result<T, E>;
