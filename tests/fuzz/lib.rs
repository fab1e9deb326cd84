//! Fuzz targets for the parsers that read what users (or their disks) hand archai: the IDX, NPY,
//! CIFAR and image-folder readers, the YAML config loader, `--set` flags and ModelDesc files.
//!
//! cargo-fuzz needs a nightly compiler, which this project does not use, so this is a small
//! mutation fuzzer on stable: each target has seed inputs (valid files made by the writers or
//! taken from confs/), and every case applies a few random edits to one of them (bit flips,
//! interesting integers such as 0xFFFFFFFF, cuts, repeats, splices of two seeds) and runs the
//! parser. A case fails when the parser panics, takes longer than [`CASE_TIME_LIMIT`], or
//! allocates more than [`CASE_MEMORY_LIMIT`] at once (the allocator below counts live bytes, so
//! a header that claims four billion samples cannot hide behind lazy overcommit). Where a
//! parser's output can be written back (configs, ModelDesc), the target also checks that it reads
//! back unchanged.
//!
//! The bounded `fuzz` test runs every target for a fixed number of cases in the test suite; the
//! `fuzz` binary runs them for as long as asked (`scripts/fuzz.sh`). Randomness comes from
//! [`Rng`] with an explicit seed, so a failure is replayed by its seed and case number.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod targets;

pub use targets::{all_targets, billion_laughs};

/// A case slower than this is a finding (a parser must refuse bad input quickly).
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(2);
/// A case whose live heap grows by more than this is a finding: seeds are kilobytes, so only a
/// size taken on trust from a header (or an expansion bomb) gets near it.
pub const CASE_MEMORY_LIMIT: usize = 256 << 20;
/// Allocations beyond this are refused outright (the process would abort, naming the size),
/// so that a bug cannot take the machine down with it.
const HARD_MEMORY_LIMIT: usize = 4 << 30;

/// Counts live heap bytes and the peak since [`reset_peak`].
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static QUIET_PANICS: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        if live > HARD_MEMORY_LIMIT {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        PEAK.fetch_max(live, Ordering::Relaxed);
        let ptr = System.alloc(layout);
        if ptr.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let grow = new_size - layout.size();
            let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
            if live > HARD_MEMORY_LIMIT {
                LIVE.fetch_sub(grow, Ordering::Relaxed);
                return std::ptr::null_mut();
            }
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        let moved = System.realloc(ptr, layout, new_size);
        if moved.is_null() {
            // The old block stays, with its old size.
            if new_size > layout.size() {
                LIVE.fetch_sub(new_size - layout.size(), Ordering::Relaxed);
            } else {
                LIVE.fetch_add(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        moved
    }
}

// The fuzz binary and the bounded test install it (`#[global_allocator]`); the other tests of
// this package link this library too and keep the system allocator.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Starts a new peak measurement; returns the live heap now.
pub fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// Live heap bytes now.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The largest live heap since the last case started.
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// The mutations' random source: ChaCha8 (as the data pipeline uses), seeded explicitly.
#[derive(Debug, Clone)]
pub struct Rng(rand_chacha::ChaCha8Rng);

impl Rng {
    /// A generator whose sequence depends only on `seed`.
    pub fn new(seed: u64) -> Rng {
        use rand_chacha::rand_core::SeedableRng;
        Rng(rand_chacha::ChaCha8Rng::seed_from_u64(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        use rand_chacha::rand_core::RngCore;
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant for picking mutations).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Integers that parsers mishandle: zero, one, signed edges, all-ones.
const INTERESTING: [u64; 10] = [0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, u64::MAX];

/// One to eight random edits of `input`; `others` are the target's seeds, for splices.
pub fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                // An interesting integer, big- or little-endian, 1 to 8 bytes wide.
                let width = [1, 2, 4, 8][rng.below(4)];
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 { value.to_be_bytes() } else { value.to_le_bytes() };
                let slice = if rng.below(2) == 0 { &bytes[8 - width..] } else { &bytes[..width] };
                let at = rng.below(len);
                for (k, b) in slice.iter().enumerate() {
                    if at + k < len {
                        out[at + k] = *b;
                    }
                }
            }
            3 if len > 0 => out.truncate(rng.below(len)),
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                out.drain(start..end);
            }
            5 if len > 0 => {
                // Repeat a block, as a duplicated record or key would.
                let start = rng.below(len);
                let end = (start + 1 + rng.below(256)).min(len);
                let block = out[start..end].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, block);
            }
            6 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(at..at, bytes);
            }
            7 if !others.is_empty() => {
                // Splice: our head, another seed's tail.
                let other = &others[rng.below(others.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            8 if len > 0 => {
                // Text-aware: swap in a character YAML and number parsers care about.
                const SPECIAL: &[u8] = b":-[]{}&*!|>'\"#%@`,?\n\t 0123456789.eE+";
                let i = rng.below(len);
                out[i] = SPECIAL[rng.below(SPECIAL.len())];
            }
            _ => {}
        }
    }
    out
}

/// Why a case failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// The parser panicked (message).
    Panic(String),
    /// A property of the target did not hold (message), e.g. a written config does not read back.
    Property(String),
    /// The case took this long.
    Slow(Duration),
    /// The live heap grew by this many bytes during the case.
    Memory(usize),
}

/// What one case of a target did.
pub enum Outcome {
    /// The input was read.
    Accepted,
    /// The input was refused with an error (the message, for the seed check and the summary).
    Refused(String),
    /// A property failed.
    Broken(String),
}

/// Feeds one input to a parser; the path is an empty directory the case may write into.
pub type RunCase = Box<dyn Fn(&[u8], &Path) -> Outcome>;

/// A parser under test.
pub struct Target {
    /// The name used on the command line and in reports.
    pub name: &'static str,
    /// Valid inputs to mutate (each must be accepted as is).
    pub seeds: Vec<Vec<u8>>,
    /// Runs the parser on one input. `scratch` is an empty directory owned by this target.
    pub run: RunCase,
}

/// A failing case: enough to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Case number within the run (replay with the same seed).
    pub case: u64,
    /// The input.
    pub input: Vec<u8>,
    /// What went wrong.
    pub finding: Finding,
}

/// The figures of one fuzzing run of one target.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Cases run.
    pub cases: u64,
    /// Inputs the parser accepted.
    pub accepted: u64,
    /// Inputs refused with an error.
    pub refused: u64,
    /// Distinct first lines of refusals (bounded), as a rough picture of the paths covered.
    pub distinct_errors: usize,
    /// The slowest case.
    pub slowest: Duration,
    /// The largest heap growth of a case.
    pub max_heap_growth: usize,
    /// Time spent.
    pub elapsed: Duration,
    /// Failing cases (at most 20 kept).
    pub failures: Vec<Failure>,
}

/// When to stop.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// This many cases.
    Cases(u64),
    /// This long.
    Time(Duration),
}

/// Silences the default panic message while fuzzing (a panic is recorded as a finding instead)
/// and leaves every other panic as it was.
pub fn install_quiet_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !QUIET_PANICS.load(Ordering::Relaxed) {
            previous(info);
        }
    }));
}

/// Runs one case, catching panics and measuring time and heap growth.
pub fn run_case(target: &Target, input: &[u8], scratch: &Path) -> (Result<Outcome, Finding>, Duration, usize) {
    let base = reset_peak();
    let start = Instant::now();
    QUIET_PANICS.store(true, Ordering::Relaxed);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (target.run)(input, scratch)));
    QUIET_PANICS.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let growth = peak_bytes().saturating_sub(base);
    let result = result.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        Finding::Panic(msg)
    });
    (result, elapsed, growth)
}

/// Fuzzes `target` for `budget`, starting from `seed`. `on_case(case, input)` is called before each
/// case runs (the runner saves the input there, so an abort still leaves it on disk).
pub fn fuzz(target: &Target, budget: Budget, seed: u64, mut on_case: impl FnMut(u64, &[u8])) -> Report {
    assert!(!target.seeds.is_empty(), "target {} has no seeds", target.name);
    let scratch = tempfile::Builder::new().prefix(&format!("fuzz-{}-", target.name)).tempdir_in(scratch_root());
    let scratch = scratch.expect("a scratch directory for the fuzz target");
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    let mut errors = std::collections::HashSet::new();
    let start = Instant::now();
    loop {
        let done = match budget {
            Budget::Cases(n) => report.cases >= n,
            Budget::Time(t) => start.elapsed() >= t,
        };
        if done {
            break;
        }
        let base = &target.seeds[rng.below(target.seeds.len())];
        let input = mutate(&mut rng, base, &target.seeds);
        on_case(report.cases, &input);
        let (result, elapsed, growth) = run_case(target, &input, scratch.path());
        report.slowest = report.slowest.max(elapsed);
        report.max_heap_growth = report.max_heap_growth.max(growth);
        let finding = match result {
            Err(f) => Some(f),
            Ok(Outcome::Broken(m)) => Some(Finding::Property(m)),
            Ok(Outcome::Accepted) => {
                report.accepted += 1;
                None
            }
            Ok(Outcome::Refused(m)) => {
                report.refused += 1;
                if errors.len() < 10_000 {
                    errors.insert(error_shape(&m));
                }
                None
            }
        };
        let finding = finding
            .or_else(|| (elapsed > CASE_TIME_LIMIT).then_some(Finding::Slow(elapsed)))
            .or_else(|| (growth > CASE_MEMORY_LIMIT).then_some(Finding::Memory(growth)));
        if let Some(finding) = finding {
            if report.failures.len() < 20 {
                report.failures.push(Failure { case: report.cases, input, finding });
            }
        }
        report.cases += 1;
        clear_dir(scratch.path());
    }
    report.elapsed = start.elapsed();
    report.distinct_errors = errors.len();
    report
}

/// An error message with its numbers and quoted parts blanked, so that "expected 784 got 12"
/// and "expected 784 got 13" count as one kind of refusal.
fn error_shape(message: &str) -> String {
    let first = message.lines().next().unwrap_or("");
    let mut out = String::new();
    let mut last_digit = false;
    for c in first.chars().take(160) {
        if c.is_ascii_digit() {
            if !last_digit {
                out.push('#');
            }
            last_digit = true;
        } else {
            out.push(c);
            last_digit = false;
        }
    }
    out
}

/// Where targets write their files: memory-backed when the machine has /dev/shm.
fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn clear_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

/// Copies a directory tree (the fuzz targets' confs/, and for the end-to-end tests fixture crates
/// and run directories), skipping `target/`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_name() == "target" {
            continue;
        }
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

/// Splits an input into `k` files: a byte that picks how the first `k - 1` lengths are encoded
/// would be fragile under mutation, so each file but the last is prefixed by its length as a
/// big-endian u32 (clamped to what is left). [`join_files`] is the inverse.
pub fn split_files(input: &[u8], k: usize) -> Vec<&[u8]> {
    let mut rest = input;
    let mut files = Vec::with_capacity(k);
    for _ in 0..k - 1 {
        let len = if rest.len() >= 4 {
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest = &rest[4..];
            n.min(rest.len())
        } else {
            rest = &[];
            0
        };
        files.push(&rest[..len]);
        rest = &rest[len..];
    }
    files.push(rest);
    files
}

/// Packs files for [`split_files`].
pub fn join_files(files: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if i + 1 < files.len() {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        }
        out.extend_from_slice(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_inverts_join() {
        let files: [&[u8]; 3] = [b"abc", b"", b"tail"];
        assert_eq!(split_files(&join_files(&files), 3), files.to_vec());
        // A length prefix larger than what is left is clamped, never out of bounds.
        assert_eq!(split_files(&[0xff, 0xff, 0xff, 0xff, 1, 2], 2), vec![&[1u8, 2][..], &[][..]]);
        assert_eq!(split_files(&[1, 2], 3), vec![&[0u8; 0][..]; 3]);
    }

    #[test]
    fn mutation_is_seeded() {
        let seed = b"some input to change".to_vec();
        let a: Vec<Vec<u8>> = (0..50).scan(Rng::new(7), |r, _| Some(mutate(r, &seed, &[]))).collect();
        let b: Vec<Vec<u8>> = (0..50).scan(Rng::new(7), |r, _| Some(mutate(r, &seed, &[]))).collect();
        assert_eq!(a, b);
        assert!(a.iter().filter(|m| **m != seed).count() > 40, "mutations should change the input");
    }

    #[test]
    fn the_allocator_counts_a_large_buffer() {
        let base = reset_peak();
        let v = vec![1u8; 64 << 20];
        assert!(peak_bytes() - base >= 64 << 20);
        drop(v);
    }

    #[test]
    fn error_shapes_ignore_numbers() {
        assert_eq!(error_shape("expected 784 got 12\nmore"), error_shape("expected 7 got 1300"));
    }
}
