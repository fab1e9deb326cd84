//! Run directory naming, refusal to overwrite, resume.

use std::fs;

use archai_runlog::{RunDir, RunLogError};

#[test]
fn default_name_is_name_dash_timestamp_under_base() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("runs");
    let before = chrono::Local::now().naive_local();
    let rd = RunDir::create(&base, "darts", None, false).expect("create");
    let after = chrono::Local::now().naive_local();
    assert!(rd.path().is_dir());
    assert_eq!(rd.path().parent(), Some(base.as_path()));
    assert!(!rd.resumed());
    let leaf = rd.path().file_name().expect("leaf").to_string_lossy().into_owned();
    let stamp = leaf.strip_prefix("darts-").unwrap_or_else(|| panic!("{leaf}"));
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d-%H%M%S").unwrap_or_else(|e| panic!("{leaf}: {e}"));
    let secs = |d: chrono::NaiveDateTime| d.and_utc().timestamp();
    assert!(secs(before) <= secs(t) && secs(t) <= secs(after), "{leaf}");
    assert_eq!(rd.join("log.yaml"), rd.path().join("log.yaml"));
}

#[test]
fn repeated_default_creates_never_share_a_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = (0..4).map(|_| RunDir::create(tmp.path(), "x", None, false).expect("create")).collect();
    for (i, a) in dirs.iter().enumerate() {
        for b in &dirs[i + 1..] {
            assert_ne!(a.path(), b.path());
        }
    }
    // Created within a second or two, so at least one must carry a -2 suffix.
    assert!(dirs.iter().any(|d| d.path().to_string_lossy().ends_with("-2")), "{dirs:?}");
}

#[test]
fn explicit_dir_is_created_or_reused_when_empty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("a/b/out");
    let rd = RunDir::create(tmp.path(), "ignored", Some(out.clone()), false).expect("create");
    assert_eq!(rd.path(), out);
    assert!(out.is_dir());
    // Still empty: starting again there is fine.
    RunDir::create(tmp.path(), "ignored", Some(out.clone()), false).expect("empty dir reused");
}

#[test]
fn existing_non_empty_dir_is_refused_without_resume() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    fs::create_dir(&out).expect("mkdir");
    fs::write(out.join("log.yaml"), "a: 1\n").expect("write");
    let err = RunDir::create(tmp.path(), "x", Some(out.clone()), false).expect_err("refused");
    assert!(matches!(err, RunLogError::RunDirExists(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("--resume") && msg.contains("--out") && msg.contains(&out.display().to_string()), "{msg}");
    // Nothing was touched.
    assert_eq!(fs::read_to_string(out.join("log.yaml")).expect("read"), "a: 1\n");

    let rd = RunDir::create(tmp.path(), "x", Some(out.clone()), true).expect("resume");
    assert!(rd.resumed());
    assert_eq!(rd.path(), out);
}

#[test]
fn resume_needs_an_existing_explicit_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("missing");
    let err = RunDir::create(tmp.path(), "x", Some(missing.clone()), true).expect_err("missing");
    assert!(matches!(err, RunLogError::ResumeMissing(_)), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()));
    assert!(!missing.exists(), "resume must not create the directory");

    let err = RunDir::create(tmp.path(), "x", None, true).expect_err("no dir given");
    assert!(matches!(err, RunLogError::ResumeWithoutDir), "{err:?}");
    assert!(err.to_string().contains("--out"));
}

#[test]
fn a_file_in_the_way_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = tmp.path().join("file");
    fs::write(&f, "x").expect("write");
    let err = RunDir::create(tmp.path(), "x", Some(f), true).expect_err("not a dir");
    assert!(matches!(err, RunLogError::NotADirectory(_)), "{err:?}");
}
