//! log.txt gets the console lines with timestamps; init_logging may be called again.
//! One test only: the tracing subscriber is global to this test binary.

use std::fs;

use archai_runlog::{init_logging, Verbosity};

#[test]
fn log_txt_gets_timestamped_lines_and_reinit_switches_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a.txt");
    let b = tmp.path().join("b.txt");
    fs::write(&a, "earlier run\n").expect("seed a");

    let guard_a = init_logging(Some(&a), Verbosity::Normal).expect("first init");
    tracing::info!("first marker");
    tracing::debug!("hidden debug marker");

    // A second call must not panic; it moves log.txt to the new file.
    let guard_b = init_logging(Some(&b), Verbosity::Verbose).expect("second init");
    tracing::warn!("second marker");
    drop(guard_a); // an older guard must not close the newer file
    tracing::info!("third marker");
    drop(guard_b);
    tracing::info!("after drop marker");

    let text_a = fs::read_to_string(&a).expect("read a");
    let text_b = fs::read_to_string(&b).expect("read b");
    assert!(text_a.starts_with("earlier run\n"), "appends, does not truncate:\n{text_a}");
    let line = text_a
        .lines()
        .find(|l| l.contains("first marker"))
        .unwrap_or_else(|| panic!("no first marker in a:\n{text_a}"));
    // "YYYY-mm-dd HH:MM:SS.mmm  INFO first marker"
    let stamp = line.get(..23).expect("timestamp");
    assert!(chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.3f").is_ok(), "{line}");
    assert!(line.contains("INFO"), "{line}");
    assert!(!text_a.contains("hidden debug marker"), "{text_a}");
    assert!(!text_a.contains("second marker"), "{text_a}");
    assert!(text_b.contains("second marker") && text_b.contains("third marker"), "{text_b}");
    assert!(!text_b.contains("after drop marker"), "{text_b}");
}
