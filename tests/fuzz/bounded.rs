//! The fuzz targets, bounded so they run in the test suite (a few thousand cases each, fixed
//! seeds), and the hand-made hostile inputs found or feared while fuzzing. `scripts/fuzz.sh`
//! runs the same targets for as long as asked.

use archai_tests::{all_targets, billion_laughs, fuzz, install_quiet_panic_hook, run_case, Budget, Outcome};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: archai_tests::CountingAlloc = archai_tests::CountingAlloc;

/// The heap counters are process-wide: tests that measure them run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn show(input: &[u8]) -> String {
    String::from_utf8_lossy(&input[..input.len().min(600)]).escape_debug().to_string()
}

#[test]
fn every_seed_is_accepted() {
    let _serial = serial();
    for target in all_targets() {
        for (i, seed) in target.seeds.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let (result, _, _) = run_case(&target, seed, dir.path());
            match result {
                Ok(Outcome::Accepted) => {}
                Ok(Outcome::Refused(m)) | Ok(Outcome::Broken(m)) => {
                    panic!("seed {i} of target {} is not accepted: {m}\n{}", target.name, show(seed))
                }
                Err(f) => panic!("seed {i} of target {} fails: {f:?}", target.name),
            }
        }
    }
}

#[test]
fn fuzz_targets_find_nothing() {
    let _serial = serial();
    install_quiet_panic_hook();
    let cases: u64 = std::env::var("ARCHAI_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let mut problems = Vec::new();
    for target in all_targets() {
        let report = fuzz(&target, Budget::Cases(cases), 20261201, |_, _| {});
        // A target that refuses everything tests only its first check.
        assert!(report.accepted > 0, "target {}: no mutated input was accepted in {cases} cases", target.name);
        assert!(report.refused > 0, "target {}: no mutated input was refused in {cases} cases", target.name);
        for f in &report.failures {
            problems.push(format!("{} case {}: {:?}\n  input: {}", target.name, f.case, f.finding, show(&f.input)));
        }
    }
    assert!(problems.is_empty(), "fuzzing found:\n{}", problems.join("\n"));
}

/// Loads `text` as a config file, returning the result, the time taken and the heap growth.
fn load_hostile(text: &str) -> (Result<(), String>, Duration, usize) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("hostile.yaml");
    std::fs::write(&conf, text).unwrap();
    let base = archai_tests::reset_peak();
    let start = std::time::Instant::now();
    let r = archai_config::load_tree(&conf, &Default::default()).map(|_| ()).map_err(|e| e.to_string());
    (r, start.elapsed(), archai_tests::peak_bytes().saturating_sub(base))
}

#[test]
fn billion_laughs_is_refused_quickly_in_bounded_memory() {
    let _serial = serial();
    let (r, took, heap) = load_hostile(&billion_laughs());
    let err = r.expect_err("a billion-laughs file must be refused");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(heap < 64 << 20, "grew the heap by {heap} bytes");
    assert!(err.contains("hostile.yaml"), "the error names the file: {err}");
}

/// The same bomb built from archai's own `_copy` directive, which YAML's alias limits do not see:
/// each level copies the previous one twice, so level 40 would hold 2^40 leaves.
#[test]
fn copy_bomb_is_refused_quickly_in_bounded_memory() {
    let _serial = serial();
    let mut text = String::from("l0: [lol, lol]\n");
    for level in 1..=40 {
        text.push_str(&format!("l{level}: ['_copy: /l{p}', '_copy: /l{p}']\n", p = level - 1));
    }
    let (r, took, heap) = load_hostile(&text);
    let err = r.expect_err("a copy bomb must be refused");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(heap < 64 << 20, "grew the heap by {heap} bytes");
    assert!(err.contains("_copy") && err.contains("/l"), "the error names the directive: {err}");
}

/// A gzip bomb: an IDX labels file whose header promises 10 labels, followed by 256 MiB of zeros
/// that compress to a quarter of a megabyte. It is refused as too long without being inflated
/// into memory.
#[test]
fn gzip_bomb_is_refused_in_bounded_memory() {
    let _serial = serial();
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut header = archai_dataset_formats::idx::LABELS_MAGIC.to_be_bytes().to_vec();
    header.extend_from_slice(&10u32.to_be_bytes());
    enc.write_all(&header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    drop(zeros);
    assert!(bomb.len() < 1 << 20, "the bomb is small on disk ({} bytes)", bomb.len());
    let (images, labels) = (dir.path().join("images"), dir.path().join("labels.gz"));
    std::fs::write(&labels, bomb).unwrap();
    let split = archai_dataset_formats::RawSplit {
        images: vec![0; 10 * 4],
        n: 10,
        channels: 1,
        height: 2,
        width: 2,
        labels: vec![0; 10],
        ..Default::default()
    };
    archai_dataset_formats::idx::write(&images, &dir.path().join("unused"), &split, false).unwrap();

    let base = archai_tests::reset_peak();
    let err = archai_dataset_formats::idx::read(&images, &labels).expect_err("a gzip bomb must be refused");
    let heap = archai_tests::peak_bytes().saturating_sub(base);
    assert!(heap < 16 << 20, "inflating the bomb grew the heap by {heap} bytes");
    let msg = err.to_string();
    assert!(msg.contains("labels.gz") && msg.contains(&(8 + (256u64 << 20)).to_string()), "{msg}");
}

/// Every input the long fuzz runs found (tests/fixtures/fuzz/findings/<target>-<case>.bin) is
/// replayed: each must now be read or refused cleanly.
#[test]
fn saved_findings_stay_fixed() {
    let _serial = serial();
    install_quiet_panic_hook();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fuzz/findings");
    let targets = all_targets();
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let target_name = name.rsplit_once('-').map(|(t, _)| t).unwrap_or(&name);
        let target = targets.iter().find(|t| t.name == target_name).unwrap_or_else(|| panic!("{name}: no such target"));
        let scratch = tempfile::tempdir().unwrap();
        let (result, took, heap) = run_case(target, &std::fs::read(&path).unwrap(), scratch.path());
        match result {
            Ok(Outcome::Accepted) | Ok(Outcome::Refused(_)) => {}
            Ok(Outcome::Broken(m)) => panic!("{name}: {m}"),
            Err(f) => panic!("{name}: {f:?}"),
        }
        assert!(
            took < archai_tests::CASE_TIME_LIMIT && heap < archai_tests::CASE_MEMORY_LIMIT,
            "{name}: {took:?}, {heap} bytes"
        );
        replayed += 1;
    }
    assert!(replayed >= 6, "only {replayed} saved findings in {}", dir.display());
}
