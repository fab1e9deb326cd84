//! Behavioural tests: real files in a temp dir, assertions on values, provenance and messages.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use yaml_serde::Value;

use crate::*;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Conf {
    common: Common,
    nas: Nas,
    #[serde(default)]
    toy: bool,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Common {
    seed: u64,
    device: Device,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Device {
    Cpu,
    Cuda,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Nas {
    search: Phase,
    eval: Phase,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Phase {
    trainer: Trainer,
    loader: Loader,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Trainer {
    epochs: u32,
    batch_size: u32,
    lr: f64,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Loader {
    batch: u32,
    workers: u32,
}

/// A complete, valid config used as the base of most tests.
const BASE: &str = "\
common: {seed: 1, device: cpu}
nas:
  search:
    trainer: {epochs: 10, batch_size: 32, lr: 0.1}
    loader: {batch: 64, workers: 4}
  eval:
    trainer: {epochs: 600, batch_size: 96, lr: 0.025}
    loader: {batch: 96, workers: 8}
";

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("temp dir"))
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }
}

fn load(p: &Path) -> Result<ResolvedConfig, ConfigError> {
    load_tree(p, &LoadOptions::default())
}

fn load_sets(p: &Path, sets: &[&str]) -> Result<ResolvedConfig, ConfigError> {
    load_tree(p, &LoadOptions { sets: sets.iter().map(|s| s.to_string()).collect(), ..LoadOptions::default() })
}

/// Follows a dotted path through the tree; panics (test-only) with the path if it is absent.
fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |cur, seg| match cur {
        Value::Sequence(s) => &s[seg.parse::<usize>().expect("index")],
        _ => cur.get(seg).unwrap_or_else(|| panic!("no `{path}` (at `{seg}`)")),
    })
}

fn int(v: &Value, path: &str) -> i64 {
    get(v, path).as_i64().unwrap_or_else(|| panic!("`{path}` not an int: {:?}", get(v, path)))
}

fn err_text<T: std::fmt::Debug>(r: Result<T, ConfigError>) -> (ConfigError, String) {
    let e = r.expect_err("expected an error");
    let s = e.to_string();
    (e, s)
}

// ---------------------------------------------------------------- includes

#[test]
fn three_level_include_chain_overrides_at_each_level() {
    let d = Dir::new();
    d.write("confs/base.yaml", &format!("{BASE}extra: {{list: [1, 2, 3], keep: base, over: base}}\n"));
    d.write(
        "confs/mid.yaml",
        "__include__: base.yaml\n\
         nas: {search: {trainer: {epochs: 20}}}\n\
         extra: {over: mid, mid_only: 1}\n",
    );
    let top = d.write(
        "confs/algos/top.yaml",
        "__include__: ../mid.yaml\n\
         nas: {search: {trainer: {lr: 0.05}}}\n\
         extra: {list: [9], over: top}\n",
    );
    let cfg = load(&top).expect("load");
    let t = &cfg.tree;
    assert_eq!(int(t, "nas.search.trainer.epochs"), 20, "mid overrides base");
    assert_eq!(get(t, "nas.search.trainer.lr").as_f64(), Some(0.05), "top overrides");
    assert_eq!(int(t, "nas.search.trainer.batch_size"), 32, "base value kept");
    assert_eq!(get(t, "extra.over").as_str(), Some("top"));
    assert_eq!(get(t, "extra.keep").as_str(), Some("base"));
    assert_eq!(int(t, "extra.mid_only"), 1);
    // Sequences replace instead of concatenating.
    assert_eq!(get(t, "extra.list"), &yaml_serde::from_str::<Value>("[9]").expect("yaml"));
    assert!(t.get("__include__").is_none(), "__include__ removed");

    // Provenance: last writer, paths normalised (no `algos/..`).
    let src = |k: &str| cfg.sources.get(k).cloned().unwrap_or_else(|| panic!("no source {k}"));
    assert_eq!(src("nas.search.trainer.epochs"), Source::File(d.path("confs/mid.yaml")));
    assert_eq!(src("nas.search.trainer.lr"), Source::File(d.path("confs/algos/top.yaml")));
    assert_eq!(src("nas.search.trainer.batch_size"), Source::File(d.path("confs/base.yaml")));
    assert_eq!(src("extra.list.0"), Source::File(d.path("confs/algos/top.yaml")));
    assert_eq!(src("common.seed"), Source::File(d.path("confs/base.yaml")));

    match from_tree::<Conf>(&cfg) {
        Err(ConfigError::UnknownKey { key_path, .. }) => assert_eq!(key_path, "extra"),
        other => panic!("expected UnknownKey for `extra`, got {other:?}"),
    }
}

#[test]
fn include_list_later_entries_win() {
    let d = Dir::new();
    d.write("a.yaml", "x: a\ny: a\n");
    d.write("b.yaml", "x: b\nz: b\n");
    let ab = d.write("ab.yaml", "__include__: [a.yaml, b.yaml]\nw: top\n");
    let ba = d.write("ba.yaml", "__include__: [b.yaml, a.yaml]\nx: top\n");
    let t = load(&ab).expect("load").tree;
    assert_eq!(get(&t, "x").as_str(), Some("b"));
    assert_eq!(get(&t, "y").as_str(), Some("a"));
    assert_eq!(get(&t, "z").as_str(), Some("b"));
    assert_eq!(get(&t, "w").as_str(), Some("top"));
    let t = load(&ba).expect("load").tree;
    assert_eq!(get(&t, "x").as_str(), Some("top"), "including file beats all includes");
    let d2 = Dir::new();
    d2.write("a.yaml", "x: a\n");
    d2.write("b.yaml", "x: b\n");
    let only = d2.write("c.yaml", "__include__: [b.yaml, a.yaml]\n");
    assert_eq!(get(&load(&only).expect("load").tree, "x").as_str(), Some("a"));
}

#[test]
fn include_cycle_reports_the_chain() {
    let d = Dir::new();
    d.write("a.yaml", "__include__: sub/b.yaml\nx: 1\n");
    d.write("sub/b.yaml", "__include__: ../a.yaml\ny: 1\n");
    let (e, msg) = err_text(load(&d.path("a.yaml")));
    assert!(matches!(e, ConfigError::IncludeCycle { .. }), "{msg}");
    let a = d.path("a.yaml").display().to_string();
    let b = d.path("sub/b.yaml").display().to_string();
    assert!(msg.contains(&format!("{a} -> {b} -> {a}")), "{msg}");

    let d = Dir::new();
    let s = d.write("self.yaml", "__include__: self.yaml\n");
    let (_, msg) = err_text(load(&s));
    let s = s.display().to_string();
    assert!(msg.contains(&format!("cycle: {s} -> {s}")), "{msg}");
}

#[test]
fn diamond_include_is_not_a_cycle() {
    let d = Dir::new();
    d.write("common.yaml", "c: 1\n");
    d.write("a.yaml", "__include__: common.yaml\na: 1\n");
    d.write("b.yaml", "__include__: common.yaml\nb: 1\n");
    let top = d.write("top.yaml", "__include__: [a.yaml, b.yaml]\n");
    let t = load(&top).expect("diamond is fine").tree;
    assert_eq!((int(&t, "a"), int(&t, "b"), int(&t, "c")), (1, 1, 1));
}

#[test]
fn missing_include_names_including_file_and_tried_path() {
    let d = Dir::new();
    let top = d.write("confs/top.yaml", "__include__: [nope/missing.yaml]\n");
    let (e, msg) = err_text(load(&top));
    assert!(matches!(e, ConfigError::MissingInclude { .. }), "{msg}");
    assert!(msg.contains(&top.display().to_string()), "{msg}");
    assert!(msg.contains("__include__: nope/missing.yaml"), "{msg}");
    assert!(msg.contains(&d.path("confs/nope/missing.yaml").display().to_string()), "{msg}");
}

#[test]
fn bad_include_value_and_nested_include_are_errors() {
    let d = Dir::new();
    let f = d.write("a.yaml", "__include__: {x: 1}\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::BadInclude { .. }), "{msg}");
    assert!(msg.contains("a path or a list of paths, found a mapping"), "{msg}");

    let f = d.write("n.yaml", "dataset: {__include__: x.yaml}\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::NestedInclude { .. }), "{msg}");
    assert!(msg.contains("found at `dataset`"), "{msg}");
}

#[test]
fn parse_errors_name_file_and_position() {
    let d = Dir::new();
    let f = d.write("bad.yaml", "a: [1\nb: 2\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::Parse { .. }), "{msg}");
    assert!(msg.contains(&f.display().to_string()) && msg.contains("line"), "{msg}");

    let f = d.write("list.yaml", "- 1\n- 2\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::NotAMapping { .. }), "{msg}");

    let (e, msg) = err_text(load(&d.path("absent.yaml")));
    assert!(matches!(e, ConfigError::Read { .. }), "{msg}");
    assert!(msg.contains("cannot read config file") && msg.contains("absent.yaml"), "{msg}");
}

#[test]
fn yaml_merge_keys_are_applied() {
    let d = Dir::new();
    let f = d.write("m.yaml", "base: &b {x: 1, y: 2}\nderived: {<<: *b, y: 3}\n");
    let t = load(&f).expect("load").tree;
    assert_eq!((int(&t, "derived.x"), int(&t, "derived.y")), (1, 3));
    assert!(get(&t, "derived").get("<<").is_none());
}

// ---------------------------------------------------------------- _copy

#[test]
fn copy_value_absolute_and_provenance() {
    let d = Dir::new();
    let f = d.write(
        "c.yaml",
        "nas:\n  search: {loader: {batch: 64, workers: 4}}\n  eval: {loader: '_copy: /nas/search/loader'}\n",
    );
    let cfg = load(&f).expect("load");
    assert_eq!(get(&cfg.tree, "nas.eval.loader"), get(&cfg.tree, "nas.search.loader"));
    assert_eq!(int(&cfg.tree, "nas.eval.loader.batch"), 64);
    assert_eq!(
        cfg.sources.get("nas.eval.loader.batch"),
        Some(&Source::Copy { from: "nas.search.loader.batch".to_string(), origin: Box::new(Source::File(f.clone())) })
    );
}

#[test]
fn copy_key_merges_with_local_keys_winning() {
    let d = Dir::new();
    let f = d.write(
        "c.yaml",
        "nas:\n  search: {trainer: {epochs: 10, batch_size: 32, lr: 0.1, sub: {a: 1, b: 2}}}\n  \
         eval: {trainer: {_copy: /nas/search/trainer, epochs: 600, sub: {b: 3}}}\n",
    );
    let cfg = load(&f).expect("load");
    let t = &cfg.tree;
    assert_eq!(int(t, "nas.eval.trainer.epochs"), 600);
    assert_eq!(int(t, "nas.eval.trainer.batch_size"), 32);
    assert_eq!((int(t, "nas.eval.trainer.sub.a"), int(t, "nas.eval.trainer.sub.b")), (1, 3));
    assert!(get(t, "nas.eval.trainer").get("_copy").is_none());
    assert_eq!(int(t, "nas.search.trainer.epochs"), 10, "source untouched");
    assert_eq!(cfg.sources.get("nas.eval.trainer.epochs"), Some(&Source::File(f.clone())));
    assert!(matches!(
        cfg.sources.get("nas.eval.trainer.batch_size"),
        Some(Source::Copy { from, .. }) if from == "nas.search.trainer.batch_size"
    ));
}

#[test]
fn copy_relative_paths() {
    let d = Dir::new();
    let f = d.write(
        "r.yaml",
        "nas:\n  search:\n    loader: {batch: 64}\n    batch2: '_copy: ../loader/batch'\n  \
         eval:\n    loader: '_copy: ../../search/loader'\n    trainer: {_copy: ../../../top_trainer, lr: 1}\n    \
         defaults: {workers: 3}\n    loader2: {_copy: ../defaults, batch: 1}\n    \
         self_rel: {inner: {v: 5}, v: '_copy: ../inner/v', w: {_copy: ../inner}}\n\
         top_trainer: {epochs: 5, lr: 0.5}\n",
    );
    let t = load(&f).expect("load").tree;
    assert_eq!(int(&t, "nas.search.batch2"), 64, "`..` from a value is its mapping: sibling");
    assert_eq!(int(&t, "nas.eval.loader.batch"), 64, "value form climbs two levels");
    assert_eq!(int(&t, "nas.eval.trainer.epochs"), 5, "key form climbs three levels");
    assert_eq!(get(&t, "nas.eval.trainer.lr").as_i64(), Some(1), "local key wins");
    assert_eq!((int(&t, "nas.eval.loader2.workers"), int(&t, "nas.eval.loader2.batch")), (3, 1));
    assert_eq!(int(&t, "nas.eval.self_rel.v"), 5);
    assert_eq!(int(&t, "nas.eval.self_rel.w.v"), 5);

    // Without `..` the key form would copy its own child into itself: reported, not looped.
    let f = d.write("child.yaml", "m: {_copy: inner, inner: {v: 1}}\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::CopyCycle { .. }), "{msg}");
    assert!(msg.contains("/m (_copy: inner) -> /m"), "{msg}");
}

#[test]
fn copy_chains_resolve_in_any_order() {
    let d = Dir::new();
    // `c` comes first in file order, so resolving it must resolve `b` and then `a`.
    let f = d.write(
        "chain.yaml",
        "c: {_copy: /b, level: c}\nb: {_copy: /a, level: b, from_b: 2}\na: {level: a, from_a: 1}\n\
         v: '_copy: /c/from_a'\nlist: ['_copy: /a/from_a', {_copy: /b, level: item}]\n",
    );
    let t = load(&f).expect("load").tree;
    assert_eq!(get(&t, "c.level").as_str(), Some("c"));
    assert_eq!((int(&t, "c.from_a"), int(&t, "c.from_b")), (1, 2));
    assert_eq!(get(&t, "b.level").as_str(), Some("b"));
    assert_eq!(int(&t, "v"), 1);
    assert_eq!(int(&t, "list.0"), 1, "copies inside lists resolve too");
    assert_eq!(get(&t, "list.1.level").as_str(), Some("item"));
    assert_eq!(int(&t, "list.1.from_a"), 1);
}

#[test]
fn copy_through_a_copied_value() {
    let d = Dir::new();
    let f = d.write("thru.yaml", "x: '_copy: /b/inner/v'\nb: '_copy: /a'\na: {inner: {v: 7}}\n");
    let t = load(&f).expect("load").tree;
    assert_eq!(int(&t, "x"), 7);
}

#[test]
fn copy_sees_included_values_and_overrides() {
    let d = Dir::new();
    d.write(
        "base.yaml",
        "nas: {search: {loader: {batch: 64, workers: 4}}, eval: {loader: '_copy: /nas/search/loader'}}\n",
    );
    let top = d.write("top.yaml", "__include__: base.yaml\nnas: {search: {loader: {batch: 8}}}\n");
    let t = load(&top).expect("load").tree;
    assert_eq!(int(&t, "nas.eval.loader.batch"), 8, "copy resolved after includes merged");
    assert_eq!(int(&t, "nas.eval.loader.workers"), 4);
}

#[test]
fn copy_cycles_report_the_chain() {
    let d = Dir::new();
    let f = d.write("cyc.yaml", "a: '_copy: /b'\nb: {_copy: /a}\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::CopyCycle { .. }), "{msg}");
    assert!(msg.contains("/a (_copy: /b) -> /b (_copy: /a) -> /a (_copy: /b)"), "{msg}");

    // A value that copies its own ancestor can never finish.
    let f = d.write("self.yaml", "a: {b: '_copy: /a'}\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::CopyCycle { .. }), "{msg}");
    assert!(msg.contains("/a/b (_copy: /a) -> /a/b"), "{msg}");
}

#[test]
fn copy_missing_target_names_site_and_target() {
    let d = Dir::new();
    let f = d.write("miss.yaml", "nas: {search: {loader: {batch: 1}}, eval: {loader: '_copy: /nas/search/loadr'}}\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::CopyTargetMissing { .. }), "{msg}");
    assert!(msg.starts_with(&format!("`nas.eval.loader` (from {})", f.display())), "{msg}");
    assert!(msg.contains("`_copy: /nas/search/loadr` points to nothing"), "{msg}");
    assert!(msg.contains("`/nas/search` has no `loadr` (keys there: loader)"), "{msg}");

    let f = d.write("up.yaml", "a: '_copy: ../../x'\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::BadCopy { .. }), "{msg}");
    assert!(msg.contains("climbs above the top"), "{msg}");

    let f = d.write("scalar.yaml", "s: 3\nm: {_copy: /s, k: 1}\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::BadCopy { .. }), "{msg}");
    assert!(msg.contains("`m`") && msg.contains("cannot be merged"), "{msg}");

    let f = d.write("nonstr.yaml", "m: {_copy: 3}\n");
    let (_, msg) = err_text(load(&f));
    assert!(msg.contains("`_copy` must be a key path") && msg.contains("the number 3"), "{msg}");
}

// ---------------------------------------------------------------- --set

#[test]
fn set_values_are_typed_as_yaml_and_create_keys() {
    let d = Dir::new();
    let f = d.write("s.yaml", BASE);
    let cfg = load_sets(
        &f,
        &[
            "nas.search.trainer.epochs=3",
            "nas.search.trainer.lr=0.5",
            "new.flag=true",
            "new.list=[1, 2]",
            "new.str='3'",
            "new.deep.er.key=x y",
            "new.nothing=",
        ],
    )
    .expect("load");
    let t = &cfg.tree;
    assert_eq!(get(t, "nas.search.trainer.epochs"), &Value::from(3));
    assert_eq!(get(t, "nas.search.trainer.lr").as_f64(), Some(0.5));
    assert_eq!(get(t, "new.flag"), &Value::Bool(true));
    assert_eq!(get(t, "new.list"), &Value::Sequence(vec![Value::from(1), Value::from(2)]));
    assert_eq!(get(t, "new.str"), &Value::String("3".into()));
    assert_eq!(get(t, "new.deep.er.key").as_str(), Some("x y"));
    assert_eq!(get(t, "new.nothing"), &Value::Null);
    assert_eq!(int(t, "nas.search.trainer.batch_size"), 32, "siblings untouched");
    assert_eq!(
        cfg.sources.get("nas.search.trainer.epochs"),
        Some(&Source::SetFlag("nas.search.trainer.epochs=3".into()))
    );
    assert_eq!(
        cfg.sources.get("new.deep"),
        Some(&Source::SetFlag("new.deep.er.key=x y".into())),
        "created intermediates belong to the flag"
    );
    assert_eq!(cfg.sources.get("nas.search.trainer"), Some(&Source::File(f.clone())));

    // Later flags win; list items are addressable by index.
    let cfg = load_sets(&f, &["a=[1, 2]", "a.1=5", "x=1", "x=2"]).expect("load");
    assert_eq!(get(&cfg.tree, "a"), &Value::Sequence(vec![Value::from(1), Value::from(5)]));
    assert_eq!(int(&cfg.tree, "x"), 2);

    let conf: Conf =
        from_tree(&load_sets(&f, &["nas.eval.trainer.epochs=7", "common.device=cuda"]).expect("load")).expect("typed");
    assert_eq!(conf.nas.eval.trainer.epochs, 7);
    assert_eq!(conf.common.device, Device::Cuda);
}

#[test]
fn malformed_sets_name_the_flag() {
    let d = Dir::new();
    let f = d.write("s.yaml", BASE);
    for (flag, want) in [
        ("nas.search.trainer.epochs", "found no `=`"),
        ("=3", "key before `=` is empty"),
        ("a..b=3", "empty segment"),
        ("a=[1", "not valid YAML"),
        ("__include__=x.yaml", "cannot be set"),
        ("common.seed.x=1", "`common.seed` is the number 1"),
        ("nas.search.trainer.epochs.0=1", "not a mapping"),
    ] {
        let (e, msg) = err_text(load_sets(&f, &[flag]));
        assert!(matches!(e, ConfigError::BadSet { .. }), "{flag}: {msg}");
        assert!(msg.starts_with(&format!("--set {flag}:")), "{msg}");
        assert!(msg.contains(want), "{flag}: {msg}");
    }
    let (_, msg) = err_text(load_sets(&f, &["l=[1]", "l.3=1"]));
    assert!(msg.contains("`l` is a list of 1 items") && msg.contains("`3` is not an index"), "{msg}");
}

// ---------------------------------------------------------------- typed errors

#[test]
fn unknown_key_from_file_suggests_and_lists_valid_keys() {
    let d = Dir::new();
    d.write("confs/common.yaml", BASE);
    let f = d.write("confs/algos/darts.yaml", "__include__: ../common.yaml\nnas: {search: {trainer: {epocs: 5}}}\n");
    let (e, msg) = err_text(from_tree::<Conf>(&load(&f).expect("load")));
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{msg}");
    assert_eq!(
        msg,
        format!(
            "unknown key `nas.search.trainer.epocs` (from {}); did you mean `epochs`? \
             valid keys here: epochs, batch_size, lr",
            f.display()
        )
    );
    match e {
        ConfigError::UnknownKey { suggestion, valid, .. } => {
            assert_eq!(suggestion.as_deref(), Some("epochs"));
            assert_eq!(valid, vec!["epochs", "batch_size", "lr"]);
        }
        other => panic!("{other}"),
    }

    // No suggestion when nothing is close, but the valid keys are still listed.
    let f = d.write("confs/x.yaml", &format!("{BASE}zzzz: 1\n"));
    let (_, msg) = err_text(from_tree::<Conf>(&load(&f).expect("load")));
    assert!(msg.starts_with("unknown key `zzzz`"), "{msg}");
    assert!(!msg.contains("did you mean"), "{msg}");
    assert!(msg.contains("valid keys here: common, nas, toy"), "{msg}");
}

#[test]
fn unknown_key_from_set_names_the_flag() {
    let d = Dir::new();
    let f = d.write("s.yaml", BASE);
    let cfg = load_sets(&f, &["nas.eval.loader.worker=2"]).expect("load");
    let (_, msg) = err_text(from_tree::<Conf>(&cfg));
    assert_eq!(
        msg,
        "unknown key `nas.eval.loader.worker` (from --set nas.eval.loader.worker=2); \
         did you mean `workers`? valid keys here: batch, workers"
    );
}

#[test]
fn type_errors_name_path_source_and_expectation() {
    let d = Dir::new();
    let f = d.write("s.yaml", BASE);
    let cfg = load_sets(&f, &["nas.search.trainer.epochs=abc"]).expect("load");
    let (e, msg) = err_text(from_tree::<Conf>(&cfg));
    assert!(matches!(e, ConfigError::InvalidValue { .. }), "{msg}");
    assert_eq!(
        msg,
        "nas.search.trainer.epochs (from --set nas.search.trainer.epochs=abc): \
         invalid type: string \"abc\", expected u32"
    );

    let f = d.write("neg.yaml", &BASE.replace("batch: 96", "batch: -1"));
    let (_, msg) = err_text(from_tree::<Conf>(&load(&f).expect("load")));
    assert_eq!(msg, format!("nas.eval.loader.batch (from {}): invalid value: integer `-1`, expected u32", f.display()));

    let f = d.write("dev.yaml", &BASE.replace("device: cpu", "device: cdua"));
    let (e, msg) = err_text(from_tree::<Conf>(&load(&f).expect("load")));
    assert!(matches!(e, ConfigError::UnknownVariant { .. }), "{msg}");
    assert!(msg.starts_with(&format!("common.device (from {}): unknown value `cdua`", f.display())), "{msg}");
    assert!(msg.contains("did you mean `cuda`?") && msg.contains("valid values here: cpu, cuda"), "{msg}");
}

#[test]
fn missing_key_names_mapping_and_field() {
    let d = Dir::new();
    let f = d.write("m.yaml", &BASE.replace(", lr: 0.025", ""));
    let (e, msg) = err_text(from_tree::<Conf>(&load(&f).expect("load")));
    assert!(matches!(e, ConfigError::MissingKey { .. }), "{msg}");
    assert_eq!(msg, format!("missing required key `lr` in `nas.eval.trainer` (from {})", f.display()));
    let f = d.write("top.yaml", "common: {seed: 1, device: cpu}\n");
    let (_, msg) = err_text(from_tree::<Conf>(&load(&f).expect("load")));
    assert_eq!(msg, format!("missing required key `nas` in `(top level)` (from {})", f.display()));
}

#[test]
fn errors_in_copied_values_name_the_copy_and_its_origin() {
    let d = Dir::new();
    let f = d.write("c.yaml", &BASE.replace("loader: {batch: 96, workers: 8}", "loader: '_copy: /nas/search/loader'"));
    let cfg = load_sets(&f, &["nas.search.loader.bach=3"]).expect("load");
    let (_, msg) = err_text(from_tree::<Conf>(&cfg));
    // Sets run after copies, so only the search loader has the typo.
    assert!(msg.starts_with("unknown key `nas.search.loader.bach` (from --set nas.search.loader.bach=3)"), "{msg}");

    let f = d.write(
        "c2.yaml",
        &BASE
            .replace("loader: {batch: 64, workers: 4}", "loader: {batch: 64, workerz: 4}")
            .replace("loader: {batch: 96, workers: 8}", "loader: '_copy: /nas/search/loader'"),
    );
    let cfg = load(&f).expect("load");
    let (_, msg) = err_text(from_tree::<Conf>(&cfg));
    assert!(msg.starts_with(&format!("unknown key `nas.search.loader.workerz` (from {})", f.display())), "{msg}");
    let mut cfg = cfg;
    // Fix the search loader only; the copied eval loader then reports the copy chain.
    if let Some(Value::Mapping(m)) =
        cfg.tree.get_mut("nas").and_then(|n| n.get_mut("search")).and_then(|s| s.get_mut("loader"))
    {
        m.remove("workerz");
        m.insert("workers".into(), 4.into());
    }
    let (_, msg) = err_text(from_tree::<Conf>(&cfg));
    assert!(
        msg.starts_with(&format!(
            "unknown key `nas.eval.loader.workerz` (from _copy of `nas.search.loader.workerz`, which came from {})",
            f.display()
        )),
        "{msg}"
    );
}

#[test]
fn typed_success() {
    let d = Dir::new();
    let f = d.write("ok.yaml", BASE);
    let conf: Conf = from_tree(&load(&f).expect("load")).expect("typed");
    assert_eq!(conf.common.seed, 1);
    assert_eq!(conf.nas.search.trainer.lr, 0.1);
    assert_eq!(conf.nas.eval.loader.workers, 8);
    assert!(!conf.toy);
}

// ---------------------------------------------------------------- toy

const TOY: &str = "nas: {search: {trainer: {epochs: 1}, loader: {batch: 2}}}\n";

/// An experiment's `toy_overrides` win over the shared toy file in toy mode (--set still wins
/// over both), and the section never reaches the typed config.
#[test]
fn toy_overrides_apply_in_toy_mode_only() {
    let d = Dir::new();
    d.write("confs/toy.yaml", TOY);
    let base = d.write(
        "confs/algos/base.yaml",
        "nas: {search: {trainer: {epochs: 10, batch_size: 32}, algorithm: {config: {macro: {layers: 8}}}}}\n\
         toy_overrides: {nas: {search: {algorithm: {config: {macro: {layers: 3}}}, trainer: {epochs: 2}}}}\n",
    );
    let f = d.write("confs/algos/algo.yaml", "__include__: base.yaml\n");
    assert_eq!(base.parent(), f.parent());
    let toy = |sets: Vec<String>| load_tree(&f, &LoadOptions { toy: true, toy_file: None, sets }).expect("load");
    let cfg = toy(vec![]);
    assert_eq!(int(&cfg.tree, "nas.search.algorithm.config.macro.layers"), 3);
    assert_eq!(int(&cfg.tree, "nas.search.trainer.epochs"), 2, "the experiment's toy value beats the toy file's");
    assert_eq!(int(&cfg.tree, "nas.search.loader.batch"), 2, "the toy file still applies");
    assert!(cfg.tree.get("toy_overrides").is_none());
    let cfg = toy(vec!["nas.search.trainer.epochs=4".into()]);
    assert_eq!(int(&cfg.tree, "nas.search.trainer.epochs"), 4, "--set beats toy_overrides");
    let cfg = load(&f).expect("load");
    assert_eq!(int(&cfg.tree, "nas.search.algorithm.config.macro.layers"), 8);
    assert!(cfg.tree.get("toy_overrides").is_none(), "dropped outside toy mode");
}

/// Found by fuzzing: an empty `toy_overrides:` (null) replaced the whole config with null in toy
/// mode. It is now nothing to merge; a section that is not a mapping is refused in any mode.
#[test]
fn empty_toy_overrides_keep_the_config_and_a_list_is_refused() {
    let d = Dir::new();
    d.write("confs/toy.yaml", TOY);
    let f = d.write("confs/algos/algo.yaml", "nas: {search: {trainer: {epochs: 10}}}\ntoy_overrides:\n");
    let cfg = load_tree(&f, &LoadOptions { toy: true, ..Default::default() }).expect("load");
    assert_eq!(int(&cfg.tree, "nas.search.trainer.epochs"), 1, "the toy file applies");
    assert!(cfg.tree.get("toy_overrides").is_none());
    let g = d.write("confs/algos/list.yaml", "nas: {}\ntoy_overrides: [1, 2]\n");
    for toy in [true, false] {
        let (_, text) = err_text(load_tree(&g, &LoadOptions { toy, ..Default::default() }));
        assert!(
            text.contains("toy_overrides") && text.contains("must be a mapping") && text.contains("list.yaml"),
            "{text}"
        );
    }
}

#[test]
fn toy_via_flag_merges_toy_file_and_clears_toy() {
    let d = Dir::new();
    d.write("confs/toy.yaml", TOY);
    let f = d.write("confs/algos/darts.yaml", BASE);
    let opts = LoadOptions { toy: true, toy_file: None, sets: vec!["nas.search.loader.batch=5".into()] };
    let cfg = load_tree(&f, &opts).expect("load");
    assert_eq!(int(&cfg.tree, "nas.search.trainer.epochs"), 1, "toy value");
    assert_eq!(int(&cfg.tree, "nas.search.trainer.batch_size"), 32, "base kept");
    assert_eq!(int(&cfg.tree, "nas.search.loader.batch"), 5, "--set beats toy");
    assert_eq!(get(&cfg.tree, "toy"), &Value::Bool(false));
    assert_eq!(cfg.toy_file, Some(d.path("confs/toy.yaml")));
    assert_eq!(cfg.sources.get("nas.search.trainer.epochs"), Some(&Source::File(d.path("confs/toy.yaml"))));

    // Without --toy nothing is merged.
    let cfg = load(&f).expect("load");
    assert_eq!(int(&cfg.tree, "nas.search.trainer.epochs"), 10);
    assert!(cfg.tree.get("toy").is_none() && cfg.toy_file.is_none());
}

#[test]
fn toy_via_config_key_and_explicit_toy_file() {
    let d = Dir::new();
    d.write("confs/toy.yaml", TOY);
    d.write("other/toy_base.yaml", "nas: {search: {trainer: {lr: 9.0}}}\n");
    let alt = d.write("other/my_toy.yaml", "__include__: toy_base.yaml\nnas: {eval: {trainer: {epochs: 2}}}\n");
    let f = d.write("confs/algos/darts.yaml", &format!("toy: true\n{BASE}"));
    let cfg = load(&f).expect("load");
    assert_eq!(int(&cfg.tree, "nas.search.trainer.epochs"), 1);
    assert_eq!(get(&cfg.tree, "toy"), &Value::Bool(false));
    let keys: Vec<&Value> = cfg.tree.as_mapping().expect("map").keys().collect();
    assert_eq!(keys[0], &Value::from("toy"), "toy keeps its position");

    let cfg = load_tree(&f, &LoadOptions { toy_file: Some(alt.clone()), ..LoadOptions::default() }).expect("load");
    assert_eq!(int(&cfg.tree, "nas.eval.trainer.epochs"), 2);
    assert_eq!(get(&cfg.tree, "nas.search.trainer.lr").as_f64(), Some(9.0), "toy file includes work");
    assert_eq!(int(&cfg.tree, "nas.search.trainer.epochs"), 10, "confs/toy.yaml not used");

    // --set toy=true also asks for it; --set toy=false turns a file's toy: true off.
    let g = d.write("confs/algos/plain.yaml", BASE);
    assert_eq!(int(&load_sets(&g, &["toy=true"]).expect("load").tree, "nas.search.trainer.epochs"), 1);
    let cfg = load_sets(&f, &["toy=false"]).expect("load");
    assert_eq!(int(&cfg.tree, "nas.search.trainer.epochs"), 10);
    assert!(cfg.toy_file.is_none());
}

#[test]
fn toy_errors() {
    let d = Dir::new();
    let f = d.write("nowhere/c.yaml", &format!("toy: true\n{BASE}"));
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::ToyFileNotFound { .. }), "{msg}");
    assert!(msg.contains(&format!("`toy: true` in {}", f.display())), "{msg}");

    let (_, msg) =
        err_text(load_tree(&f, &LoadOptions { toy_file: Some(d.path("missing_toy.yaml")), ..LoadOptions::default() }));
    assert!(msg.contains("cannot read toy file") && msg.contains("missing_toy.yaml"), "{msg}");

    let f = d.write("nowhere/bad.yaml", "toy: yes please\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::BadToyFlag { .. }), "{msg}");
    assert!(msg.contains("must be true or false") && msg.contains("yes please"), "{msg}");
}

#[test]
fn find_toy_file_walks_up_to_confs() {
    let d = Dir::new();
    let toy = d.write("proj/confs/toy.yaml", TOY);
    let deep = d.write("proj/confs/algos/darts/v2.yaml", BASE);
    assert_eq!(find_toy_file(&deep), Some(toy.clone()));
    // A nearer `confs` without toy.yaml is skipped in favour of one that has it.
    let nested = d.write("proj/confs/algos/confs/x.yaml", BASE);
    assert_eq!(find_toy_file(&nested), Some(toy.clone()));
    // A toy.yaml in a directory not named `confs` does not count.
    d.write("lone/toy.yaml", TOY);
    let lone = d.write("lone/x.yaml", BASE);
    assert_eq!(find_toy_file(&lone), None);
    // A bare relative name is resolved through the canonical path.
    let cwd_rel = Path::new("definitely-not-here.yaml");
    assert_eq!(find_toy_file(cwd_rel), None);
    // A user's file outside confs/ finds it through what it includes (here two levels down).
    d.write("proj/confs/algos/base.yaml", BASE);
    d.write("mine/shared.yaml", "__include__: ../proj/confs/algos/base.yaml\n");
    let own = d.write("mine/exp.yaml", "__include__: [missing.yaml, shared.yaml]\n");
    assert_eq!(find_toy_file(&own).map(|p| p.canonicalize().unwrap()), Some(toy.canonicalize().unwrap()));
}

// ---------------------------------------------------------------- round trip

#[test]
fn config_used_round_trip_gives_the_same_tree() {
    let d = Dir::new();
    d.write("confs/toy.yaml", TOY);
    d.write("confs/common.yaml", BASE);
    let f = d.write(
        "confs/algos/darts.yaml",
        "__include__: ../common.yaml\ntoy: true\n\
         nas: {eval: {loader: {_copy: /nas/search/loader, workers: 1}, trainer: '_copy: /nas/search/trainer'}}\n\
         odd: {s3: '3', t: 'true', n: ~, f: 1.0e-3, inf: .inf, empty: {}, el: [], \
         seqmap: [{a: 1}, [2, 3]], quoted: '_not a copy', multi: \"a\\nb\", 7: int_key}\n",
    );
    let cfg = load_tree(
        &f,
        &LoadOptions {
            toy: false,
            toy_file: None,
            sets: vec!["nas.search.trainer.epochs=4".into(), "extra='3'".into()],
        },
    )
    .expect("load");
    assert_eq!(int(&cfg.tree, "nas.search.trainer.epochs"), 4, "set beats toy");
    assert_eq!(int(&cfg.tree, "nas.eval.trainer.epochs"), 10, "copy made before toy merge");
    // Keys merged in from included files are local to the key-form copy, so they win.
    assert_eq!(int(&cfg.tree, "nas.eval.loader.batch"), 96);
    assert_eq!(int(&cfg.tree, "nas.eval.loader.workers"), 1);

    let text = to_yaml_string(&cfg.tree);
    // Written where no `confs/toy.yaml` can be found, as a run directory would be.
    let used = d.write("runs/r1/config_used.yaml", &text);
    let again = load(&used).expect("reload");
    assert_eq!(again.tree, cfg.tree, "written:\n{text}");
    assert!(again.toy_file.is_none(), "toy is not merged a second time");
    // Even where the toy file would be found, toy: false keeps it out.
    let used2 = d.write("confs/used.yaml", &text);
    let again2 = load(&used2).expect("reload");
    assert_eq!(again2.tree, cfg.tree);
    assert_eq!(to_yaml_string(&again.tree), text, "writing is stable too");
}

#[test]
fn reserved_bang_keys_are_rejected() {
    let d = Dir::new();
    let f = d.write("b.yaml", "a: {'!x': 1}\n");
    let (e, msg) = err_text(load(&f));
    assert!(matches!(e, ConfigError::ReservedKey { .. }), "{msg}");
    assert!(msg.contains("`a`") && msg.contains("`!x`"), "{msg}");
    let ok = d.write("ok.yaml", "a: 1\n");
    let (_, msg) = err_text(load_sets(&ok, &["b={'!y': 2}"]));
    assert!(msg.contains("`!y`"), "{msg}");
}

#[test]
fn try_to_yaml_string_reports_unrepresentable_trees() {
    // Nested tags cannot be written; only hand-built trees can contain them.
    let inner = Value::Tagged(Box::new(yaml_serde::value::TaggedValue {
        tag: yaml_serde::value::Tag::new("a"),
        value: Value::from(1),
    }));
    let outer =
        Value::Tagged(Box::new(yaml_serde::value::TaggedValue { tag: yaml_serde::value::Tag::new("b"), value: inner }));
    let e = try_to_yaml_string(&outer).expect_err("nested tag");
    assert!(matches!(e, ConfigError::Serialize { .. }));
    assert!(to_yaml_string(&outer).starts_with("# archai-config could not write"));
}

#[test]
fn a_dataset_of_another_adapter_replaces_the_included_one_and_the_same_adapter_merges() {
    let d = Dir::new();
    d.write(
        "confs/base.yaml",
        "dataset: {name: fmnist, adapter: idx, root: /a, train: {images: t.gz}, mean: [0.3]}\nnas: {x: 1}\n",
    );
    let other = d.write(
        "confs/folder.yaml",
        "__include__: base.yaml\ndataset: {name: pets, adapter: image-folder, root: /pets}\n",
    );
    let t = load_tree(&other, &LoadOptions::default()).unwrap().tree;
    let ds = &t["dataset"];
    assert_eq!(ds["adapter"].as_str(), Some("image-folder"));
    assert!(ds.get("train").is_none() && ds.get("mean").is_none(), "idx keys leaked: {ds:?}");
    assert_eq!(t["nas"]["x"].as_i64(), Some(1), "other sections still merge");
    let same = d.write("confs/moved.yaml", "__include__: base.yaml\ndataset: {adapter: idx, root: /b}\n");
    let ds = load_tree(&same, &LoadOptions::default()).unwrap().tree["dataset"].clone();
    assert_eq!((ds["root"].as_str(), ds["train"]["images"].as_str()), (Some("/b"), Some("t.gz")));
    let no_adapter = d.write("confs/root.yaml", "__include__: base.yaml\ndataset: {root: /c}\n");
    let ds = load_tree(&no_adapter, &LoadOptions::default()).unwrap().tree["dataset"].clone();
    assert_eq!((ds["root"].as_str(), ds["adapter"].as_str()), (Some("/c"), Some("idx")));
}

/// Found by fuzzing: a tagged value (`!earch: ...`, a typo's `!`) loaded, and then the run's
/// config_used.yaml could not be written. Tags are refused where they stand.
#[test]
fn yaml_tags_are_refused_naming_the_key() {
    let d = Dir::new();
    let f = d.write("a.yaml", "nas: {search: {epochs: !big 2}}\n");
    let (_, text) = err_text(load(&f));
    assert!(text.contains("nas.search.epochs") && text.contains("!big") && text.contains("a.yaml"), "{text}");
    let g = d.write("b.yaml", "nas: {!earch: {trainer: {epochs: 2}}}\n");
    let (_, text) = err_text(load(&g));
    assert!(text.contains("tag") && text.contains("b.yaml"), "{text}");
}

/// Found by fuzzing: a key that is a mapping (`? {a: 1}`, `{ {b: 2} }`) loaded, and then the
/// run's config_used.yaml could not be written. Such keys are refused where they stand.
#[test]
fn mapping_and_list_keys_are_refused() {
    let d = Dir::new();
    for (name, text) in [
        ("m.yaml", "nas:\n  ? {aux_weight: 0.0}\n"),
        ("f.yaml", "common: { {trainer: 2}}\n"),
        ("l.yaml", "a: {[1, 2]: x}\n"),
    ] {
        let f = d.write(name, text);
        let (e, msg) = err_text(load(&f));
        assert!(matches!(e, ConfigError::ComplexKey { .. }), "{name}: {msg}");
        assert!(msg.contains(name) && msg.contains("a key must be a name or a number"), "{msg}");
    }
}
