//! A disk that fills up during a run: the run fails naming the file it could not write, what it
//! had finished stays readable, and `--resume` finishes the run once there is space again, with
//! the same result as a run that never ran out.
//!
//! The run directory sits on a small tmpfs the test mounts, so this needs root (CI and the
//! development machines run as root); elsewhere the test says so and does nothing.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output();
        let o = o.expect("run mount");
        assert!(o.status.success(), "mount tmpfs on {}: {}", at.display(), output_text(&o));
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the file system refuses; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling {}: {e}", path.display());
                break;
            }
        }
    }
    let _ = f.sync_all();
    written
}

fn run_args(out: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        ["--plugin-dir", plugin_dir().to_str().unwrap(), "run", "confs/algos/manual.yaml", "--toy"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for set in ["nas.eval.trainer.epochs=2", "nas.eval.trainer.max_batches=12", "nas.eval.trainer.max_eval_batches=2"] {
        v.extend(["--set".to_string(), set.to_string()]);
    }
    v.extend(["--out".to_string(), out.display().to_string()]);
    v
}

#[test]
fn a_full_disk_fails_the_run_naming_the_file_and_resume_finishes_it() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("disk_full: not root, so no tmpfs can be mounted; this test checked nothing");
        return;
    }
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let o = Command::new(archai_bin()).current_dir(repo_root()).args(run_args(&whole)).output().unwrap();
    assert!(o.status.success(), "{}", output_text(&o));

    let disk = Tmpfs::mount(&tmp.path().join("small-disk"), "64m");
    let cut = disk.0.join("run");
    let child = Command::new(archai_bin())
        .current_dir(repo_root())
        .args(run_args(&cut))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let checkpoint = cut.join("eval/checkpoint.pt");
    let start = Instant::now();
    while !checkpoint.is_file() {
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Stopped while the disk fills, so its next write meets a full disk whatever it is.
    unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
    let unfinished = yaml(&cut.join("log.yaml"))["eval"]["summary"].is_null();
    let filler = disk.0.join("filler");
    let filled = fill(&filler);
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    assert!(unfinished, "the run finished its evaluation before the disk was filled");
    assert!(filled > 0);

    let out = child.wait_with_output().unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "the run succeeded on a full disk:\n{text}");
    assert_ne!(out.status.code(), Some(101), "the run panicked:\n{text}");
    assert!(out.status.code().is_some(), "the run died of a signal:\n{text}");
    let error = text.lines().rev().find(|l| l.contains("error")).unwrap_or_else(|| panic!("no error line:\n{text}"));
    eprintln!("what the user sees: {error}");
    assert!(error.contains("No space left on device"), "the error says the disk is full: {error}");
    assert!(error.contains(cut.to_str().unwrap()), "the error names the file that could not be written: {error}");
    assert_eq!(error.matches("No space left on device").count(), 1, "said once: {error}");
    assert!(!error.contains(".tmp:"), "the error names the file, not its temporary file: {error}");

    // What was finished is still there and readable: the log (typed schema) and the checkpoint.
    let log_path = cut.join("log.yaml");
    let log = archai_runlog::RunRecord::from_yaml(&std::fs::read_to_string(&log_path).unwrap(), &log_path);
    let log = log.expect("log.yaml is still readable");
    assert!(log.eval.is_some_and(|e| !e.epochs.is_empty()), "log.yaml lost the finished epochs");
    archai::train::read_model_tensors(&checkpoint).expect("the last checkpoint is readable");
    let stray: Vec<_> = walk(&cut).into_iter().filter(|p| p.to_string_lossy().ends_with(".tmp")).collect();
    assert!(stray.is_empty(), "half-written temporary files were left: {stray:?}");

    std::fs::remove_file(&filler).unwrap();
    let mut resume = run_args(&cut);
    resume.push("--resume".into());
    let o = Command::new(archai_bin()).current_dir(repo_root()).args(&resume).output().unwrap();
    assert!(o.status.success(), "--resume after freeing space: {}", output_text(&o));
    assert_same_training(&whole, &cut);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
