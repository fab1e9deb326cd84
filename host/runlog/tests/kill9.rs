//! log.yaml must be valid and consistent at every moment, even when the writer is killed
//! with SIGKILL in the middle of a flush, and while another process reads it.
#![cfg(unix)]

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use archai_runlog::LogTree;
use serde::Serialize;
use yaml_serde::Value;

const CHILD_ENV: &str = "ARCHAI_RUNLOG_KILL9_DIR";
const PAYLOAD: usize = 300;

#[derive(Serialize)]
struct Epoch {
    loss: f64,
    check: u64,
    payload: String,
}

/// Not a test on its own: the writer process that `log_yaml_survives_sigkill` starts (this
/// same test binary, filtered to this name) and kills. Without the env var it does nothing.
#[test]
fn kill9_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut tree = LogTree::open(Path::new(&dir).join("log.yaml")).expect("child: open");
    // Continue where the killed predecessor stopped, as a resumed run does.
    let mut n = tree.get("progress/n").and_then(Value::as_u64).map_or(0, |n| n + 1);
    loop {
        tree.set(&format!("epochs/{n}"), Epoch { loss: n as f64 * 0.5, check: n * 7, payload: "x".repeat(PAYLOAD) })
            .expect("child: set epoch");
        tree.set("progress/n", n).expect("child: set n");
        tree.flush().expect("child: flush");
        n += 1;
    }
}

/// Parses log.yaml and checks it is one complete snapshot; returns progress/n.
fn check_consistent(path: &Path) -> u64 {
    let text = fs::read_to_string(path).expect("read log.yaml");
    let v: Value = yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("log.yaml is not valid YAML ({e}):\n{text}"));
    let n = v["progress"]["n"].as_u64().unwrap_or_else(|| panic!("progress/n missing:\n{text}"));
    let epochs = v["epochs"].as_mapping().expect("epochs mapping");
    assert_eq!(epochs.len() as u64, n + 1, "epochs 0..={n} expected");
    for i in 0..=n {
        let e = &epochs[&Value::Number(i.into())];
        assert_eq!(e["loss"].as_f64(), Some(i as f64 * 0.5), "epoch {i}");
        assert_eq!(e["check"].as_u64(), Some(i * 7), "epoch {i}");
        assert_eq!(e["payload"].as_str().map(str::len), Some(PAYLOAD), "epoch {i}");
    }
    n
}

#[test]
fn log_yaml_survives_sigkill() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("log.yaml");
    let exe = std::env::current_exe().expect("current test executable");
    let mut seed =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos() as u64 | 1).unwrap_or(0x9E37_79B9);
    let mut rand_ms = |max: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % max
    };

    let mut last_n = None;
    let mut reads = 0u32;
    for round in 0..8 {
        let mut child = Command::new(&exe)
            .args(["kill9_child_writer", "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");

        // Wait until this child has flushed at least once beyond what the last one left,
        // reading the file as fast as possible meanwhile: a reader must never see a torn file.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if log.exists() {
                let n = check_consistent(&log);
                reads += 1;
                if !matches!(last_n, Some(last) if n <= last) {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("round {round}: writer exited on its own: {status}");
            }
            assert!(Instant::now() < deadline, "round {round}: writer made no progress");
        }
        // Then let it run a little longer so the kill lands at an arbitrary point of a flush.
        std::thread::sleep(Duration::from_millis(1 + rand_ms(25)));
        child.kill().expect("SIGKILL writer");
        child.wait().expect("reap writer");

        let n = check_consistent(&log);
        if let Some(last) = last_n {
            assert!(n > last, "round {round}: progress went backwards ({last} -> {n})");
        }
        eprintln!("round {round}: n = {n}");
        last_n = Some(n);
    }
    assert!(reads >= 8);
    // Reopening after the kills gives the same tree (and clears the killed writers' temps).
    let tree = LogTree::open(&log).expect("reopen after kills");
    assert_eq!(tree.get("progress/n").and_then(Value::as_u64), last_n);
    let leftovers: Vec<_> =
        fs::read_dir(tmp.path()).expect("ls").filter_map(|e| e.ok()).filter(|e| e.file_name() != "log.yaml").collect();
    assert!(leftovers.is_empty(), "stale temp files: {leftovers:?}");
}
