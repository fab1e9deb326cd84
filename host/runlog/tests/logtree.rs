//! log.yaml semantics: key paths, deep merge, round trip through the file.

use std::collections::BTreeMap;
use std::fs;

use archai_runlog::{LogTree, RunLogError};
use serde::Serialize;
use yaml_serde::Value;

#[derive(Serialize)]
struct Train {
    loss: f64,
    top1: f64,
}

fn num(v: Option<&Value>) -> f64 {
    v.and_then(Value::as_f64).expect("a number")
}

#[test]
fn set_get_and_deep_merge() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut t = LogTree::open(tmp.path().join("log.yaml")).expect("open");
    t.set("search/epochs/3/train", Train { loss: 1.5, top1: 0.25 }).expect("set");
    // A second mapping at the same path merges instead of replacing.
    let mut extra = BTreeMap::new();
    extra.insert("lr", 0.1);
    t.set("search/epochs/3/train", &extra).expect("merge");
    assert_eq!(num(t.get("search/epochs/3/train/loss")), 1.5);
    assert_eq!(num(t.get("search/epochs/3/train/top1")), 0.25);
    assert_eq!(num(t.get("search/epochs/3/train/lr")), 0.1);

    // Merging is deep: a nested mapping keeps its siblings.
    t.set("search", serde_json::json!({"epochs": {"3": {"val": {"top1": 0.5}}}})).expect("deep merge");
    assert_eq!(num(t.get("search/epochs/3/train/loss")), 1.5);
    // json's "3" is a string key, ours is an integer key: both are found by the segment "3".
    assert_eq!(num(t.get("search/epochs/3/val/top1")), 0.5);
    assert_eq!(t.get("search/epochs").and_then(Value::as_mapping).map(|m| m.len()), Some(1));

    // A scalar at the leaf replaces.
    t.set("search/epochs/3/train/loss", 0.75).expect("replace");
    assert_eq!(num(t.get("search/epochs/3/train/loss")), 0.75);

    // Numeric segments are mapping keys, not list indices.
    let epochs = t.get("search/epochs").and_then(Value::as_mapping).expect("mapping");
    assert!(epochs.contains_key(Value::Number(3.into())), "{epochs:?}");
    assert!(t.get("search/epochs/4").is_none());
    assert!(t.get("nope/x").is_none());
    assert!(t.get("").and_then(Value::as_mapping).is_some(), "empty path is the root");

    // Leading/trailing slashes are ignored; empty segments are refused.
    t.set("/timings/search/", 12.5).expect("set");
    assert_eq!(num(t.get("timings/search")), 12.5);
    assert!(matches!(t.set("a//b", 1), Err(RunLogError::InvalidKeyPath(_))));
}

#[test]
fn descending_through_a_scalar_is_an_error_naming_the_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut t = LogTree::open(tmp.path().join("log.yaml")).expect("open");
    t.set("a/b", 1).expect("set");
    match t.set("a/b/c", 2) {
        Err(e @ RunLogError::KeyPathConflict { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("'a/b'") && msg.contains("a/b/c"), "{msg}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The failed set left the tree as it was.
    assert_eq!(t.get("a/b").and_then(Value::as_i64), Some(1));
    // A null may be turned into a mapping.
    t.set("n", ()).expect("null");
    t.set("n/x", 1).expect("through null");
    assert_eq!(t.get("n/x").and_then(Value::as_i64), Some(1));
}

fn tricky_tree(t: &mut LogTree) {
    let mut floats = BTreeMap::new();
    floats.insert("nan", f64::NAN);
    floats.insert("inf", f64::INFINITY);
    floats.insert("neg_inf", f64::NEG_INFINITY);
    floats.insert("tiny", 1e-300);
    floats.insert("third", 1.0 / 3.0);
    t.set("search/epochs/0/train", &floats).expect("floats");
    t.set("search/epochs/10/train/loss", 2.0).expect("set");
    // Strings that look like other YAML types must come back as strings.
    for (k, v) in [
        ("s1", "3"),
        ("s2", "true"),
        ("s3", "null"),
        ("s4", "~"),
        ("s5", ".nan"),
        ("s6", "a: b"),
        ("s7", "- x"),
        ("s8", "multi\nline"),
        ("s9", ""),
    ] {
        t.set(&format!("strings/{k}"), v).expect("string");
    }
    t.set("keys/yes", "key that YAML 1.1 reads as a bool").expect("set");
    t.set("keys/03", "not an integer key").expect("set");
    t.set("keys/-7", "negative integer key").expect("set");
    t.set("list", vec![1, 2, 3]).expect("list value");
}

#[test]
fn flush_writes_yaml_equal_to_the_tree_and_reopen_restores_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("log.yaml");
    let mut t = LogTree::open(&path).expect("open");
    tricky_tree(&mut t);
    t.flush().expect("flush");

    let text = fs::read_to_string(&path).expect("read");
    let parsed: Value = yaml_serde::from_str(&text).expect("log.yaml parses");
    // yaml_serde compares NaN equal to NaN (YAML has one NaN), so this covers the floats.
    assert_eq!(&parsed, t.root(), "file:\n{text}");
    assert!(text.contains(".nan") && text.contains(".inf"), "{text}");
    assert!(parsed["search"]["epochs"][0]["train"]["nan"].as_f64().is_some_and(f64::is_nan));
    assert_eq!(parsed["strings"]["s1"], Value::String("3".into()));

    // Only log.yaml is left: the temp file was renamed over it.
    let names: Vec<String> = fs::read_dir(tmp.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["log.yaml".to_string()]);

    let mut again = LogTree::open(&path).expect("reopen");
    assert_eq!(again.root(), t.root());
    assert_eq!(num(again.get("search/epochs/10/train/loss")), 2.0);
    assert_eq!(again.get("keys/03").and_then(Value::as_str), Some("not an integer key"));
    // A resumed run keeps adding to what was there.
    again.set("search/epochs/11/train/loss", 1.0).expect("set");
    again.flush().expect("flush");
    let third = LogTree::open(&path).expect("reopen");
    assert_eq!(num(third.get("search/epochs/10/train/loss")), 2.0);
    assert_eq!(num(third.get("search/epochs/11/train/loss")), 1.0);
}

#[test]
fn open_reports_bad_files_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("log.yaml");
    fs::write(&bad, "a: [1, 2\n").expect("write");
    let err = LogTree::open(&bad).expect_err("invalid YAML");
    assert!(matches!(err, RunLogError::YamlParse { .. }), "{err:?}");
    assert!(err.to_string().contains(&bad.display().to_string()), "{err}");

    fs::write(&bad, "- 1\n- 2\n").expect("write");
    let err = LogTree::open(&bad).expect_err("not a mapping");
    assert!(matches!(err, RunLogError::LogNotMapping(_)), "{err:?}");

    fs::write(&bad, "").expect("write");
    let t = LogTree::open(&bad).expect("empty file is an empty tree");
    assert!(t.root().as_mapping().is_some_and(|m| m.is_empty()));
}

#[test]
fn flush_into_a_missing_directory_names_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = LogTree::open(tmp.path().join("gone/log.yaml")).expect("open");
    let err = t.flush().expect_err("no directory");
    assert!(err.to_string().contains("gone"), "{err}");
}
