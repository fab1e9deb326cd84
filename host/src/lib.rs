//! archai-rs host runtime: plugin loading, parameter ownership, and (in later modules) config,
//! data, models, the trainer and logging.
pub mod allocator;
pub mod bench;
pub mod commands;
pub mod config;
pub mod cuda;
pub mod discrete;
pub mod elf;
pub mod environment;
pub mod error_text;
pub mod experiment;
pub mod heartbeat;
pub mod interrupt;
pub mod model;
pub mod params;
pub mod plugins;
pub mod png;
pub mod report;
pub mod resume;
pub mod runlog;
pub mod stats;
pub mod train;

/// Resident set size of this process in bytes (Linux), for leak checks and reports.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
