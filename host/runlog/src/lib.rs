//! Run directory, structured log (log.yaml), human log (log.txt), TensorBoard scalar events
//! and progress reporting for archai runs (DESIGN.md §2, §9).
//!
//! Crates added beyond the workspace's:
//! - `chrono` (clock feature only): local-time stamps for run directory names and log.txt
//!   lines; std has no local time zone support.
//! - `indicatif`: progress bars on a terminal.
//! - `tempfile` (dev only): scratch directories in tests.
//!
//! CRC-32C is implemented here (table-based, ~30 lines, checked against RFC 3720 vectors)
//! rather than pulled in, and the few protobuf fields of a TensorBoard event are encoded by
//! hand, checked byte for byte against bytes written by TensorBoard itself.

#![warn(missing_docs)]

mod crc32c;
mod error;
mod logging;
mod logtree;
mod progress;
mod rundir;
pub mod schema;
mod tb;

pub use crate::crc32c::{crc32c, masked_crc32c};
pub use crate::error::{Result, RunLogError};
pub use crate::logging::{init_logging, log_file_line, LoggingGuard, Verbosity};
pub use crate::logtree::LogTree;
pub use crate::progress::Progress;
pub use crate::rundir::RunDir;
pub use crate::schema::RunRecord;
pub use crate::tb::{read_events, read_events_allow_partial_tail, TbEvent, TbScalar, TbWriter, FILE_VERSION};
