//! The human log: console lines, and the same lines with timestamps appended to log.txt.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::error::{Result, RunLogError};

/// How much the console and log.txt show. `RUST_LOG`, when set, overrides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Warnings and errors only.
    Quiet,
    /// Info and above (the default).
    #[default]
    Normal,
    /// Debug and above.
    Verbose,
    /// Everything.
    Trace,
}

impl Verbosity {
    fn directive(self) -> &'static str {
        match self {
            Verbosity::Quiet => "warn",
            Verbosity::Normal => "info",
            Verbosity::Verbose => "debug",
            Verbosity::Trace => "trace",
        }
    }
}

/// Where log.txt lines go. The subscriber is global and can be installed only once per
/// process, so later `init_logging` calls (a second run in the same process, tests) re-point
/// this target instead of installing another subscriber.
struct FileTarget {
    file: Option<File>,
    /// Bumped on every `init_logging`, so an old guard's drop cannot close a newer file.
    generation: u64,
}

static FILE_TARGET: Mutex<FileTarget> = Mutex::new(FileTarget { file: None, generation: 0 });
static INSTALLED: Mutex<bool> = Mutex::new(false);

// A panic while holding these locks leaves the data usable (a file handle or a flag), and
// logging must keep working after a panic elsewhere, so poisoning is ignored.
fn file_target() -> MutexGuard<'static, FileTarget> {
    FILE_TARGET.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps log.txt open. Dropping it stops writing to that file (unless a later
/// `init_logging` has already moved log.txt elsewhere).
#[must_use = "log.txt is closed when the guard is dropped"]
#[derive(Debug)]
pub struct LoggingGuard {
    generation: u64,
}

impl Drop for LoggingGuard {
    fn drop(&mut self) {
        let mut t = file_target();
        if t.generation == self.generation {
            if let Some(f) = t.file.as_mut() {
                let _ = f.flush();
            }
            t.file = None;
        }
    }
}

/// Sets up `tracing` output: plain lines on stderr, and, when `log_txt` is given, the same
/// lines with local timestamps appended to that file.
///
/// The first call installs the global subscriber with `verbosity` (or `RUST_LOG`). Later
/// calls only switch log.txt to the new file (or none); the level stays that of the first
/// call. Fails if another global subscriber was installed by someone else, or if `log_txt`
/// cannot be opened.
pub fn init_logging(log_txt: Option<&Path>, verbosity: Verbosity) -> Result<LoggingGuard> {
    let file = match log_txt {
        Some(p) => Some(
            OpenOptions::new().create(true).append(true).open(p).map_err(|e| RunLogError::io("open log file", p, e))?,
        ),
        None => None,
    };

    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if !*installed {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(verbosity.directive()));
        let console = tracing_subscriber::fmt::layer()
            .with_writer(ConsoleSink)
            .with_ansi(io::stderr().is_terminal())
            .with_target(false)
            .without_time();
        let to_file = tracing_subscriber::fmt::layer()
            .with_writer(FileSink)
            .with_ansi(false)
            .with_target(false)
            .with_timer(LocalTime);
        tracing_subscriber::registry()
            .with(filter)
            .with(console)
            .with(to_file)
            .try_init()
            .map_err(|e| RunLogError::Logging(format!("another global tracing subscriber is installed ({e})")))?;
        *installed = true;
    }
    drop(installed);

    let mut t = file_target();
    t.generation += 1;
    t.file = file;
    Ok(LoggingGuard { generation: t.generation })
}

/// Appends one timestamped line to the current log.txt only (not the console): for messages the
/// console shows another way, such as the error a failed command prints on exit.
pub fn log_file_line(level: &str, message: &str) {
    if let Some(f) = file_target().file.as_mut() {
        let mut ts = String::new();
        let _ = LocalTime.format_time(&mut Writer::new(&mut ts));
        let _ = writeln!(f, "{ts} {level:>5} {message}");
        let _ = f.flush();
    }
}

struct LocalTime;

impl FormatTime for LocalTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f"))
    }
}

/// Console output goes through indicatif's suspend so log lines never tear a progress bar.
struct ConsoleSink;

impl<'a> MakeWriter<'a> for ConsoleSink {
    type Writer = ConsoleSink;
    fn make_writer(&'a self) -> Self::Writer {
        ConsoleSink
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing-subscriber hands over one formatted line per write_all, so writing it whole
        // here keeps lines intact.
        crate::progress::multi().suspend(|| io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

struct FileSink;

impl<'a> MakeWriter<'a> for FileSink {
    type Writer = FileSink;
    fn make_writer(&'a self) -> Self::Writer {
        FileSink
    }
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Holding the lock across the whole line keeps lines from threads from interleaving.
        if let Some(f) = file_target().file.as_mut() {
            f.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        match file_target().file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}
