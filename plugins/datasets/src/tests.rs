//! Each adapter on files written here with the formats crate's writers (and PNGs with `png`),
//! the errors a user meets, the shipped `confs/datasets/*.yaml`, and Fashion-MNIST when the Debian
//! package is installed.
use super::*;
use archai_dataset_formats::RawSplit;
use archai_plugin_api::tch::{Kind, Tensor};
use archai_plugin_api::DatasetAdapterRegistration;
use serde_json::{json, Value};
use std::fs;

/// A split of `n` samples with a recognisable pixel pattern and the given labels.
fn raw(c: usize, h: usize, w: usize, labels: &[i64]) -> RawSplit {
    let n = labels.len();
    RawSplit {
        images: (0..n * c * h * w).map(|i| (i * 7 % 251) as u8).collect(),
        n,
        channels: c,
        height: h,
        width: w,
        labels: labels.to_vec(),
        class_names: vec![],
        source: PathBuf::new(),
    }
}

fn bytes(t: &Tensor) -> Vec<u8> {
    assert_eq!(t.kind(), Kind::Uint8);
    Vec::<u8>::try_from(t.reshape([-1])).unwrap()
}

fn longs(t: &Tensor) -> Vec<i64> {
    assert_eq!(t.kind(), Kind::Int64);
    Vec::<i64>::try_from(t.reshape([-1])).unwrap()
}

/// Builds an adapter through its registration, as the plugin's root module does.
fn create(name: &str, config: &Value) -> Result<Box<dyn DatasetAdapter>> {
    let reg = inventory::iter::<DatasetAdapterRegistration>
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("adapter {name} is not registered"));
    (reg.create)(config)
}

fn err_text<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

use archai_plugin_api::inventory;

#[test]
fn all_four_adapters_are_registered() {
    let mut names: Vec<_> = inventory::iter::<DatasetAdapterRegistration>.into_iter().map(|r| r.name).collect();
    names.sort();
    assert_eq!(names, ["cifar-binary", "idx", "image-folder", "npy"]);
}

// ------------------------------------------------------------------------------------ idx

fn idx_config(root: &Path, gz: bool) -> Value {
    let ext = if gz { ".gz" } else { "" };
    json!({
        "name": "tiny", "root": root,
        "train": {"images": format!("train-images{ext}"), "labels": format!("train-labels{ext}")},
        "test": {"images": format!("test-images{ext}"), "labels": format!("test-labels{ext}")},
        "num_classes": 10, "channels": 1, "image_size": [5, 4],
    })
}

fn write_idx(root: &Path, gz: bool) -> (RawSplit, RawSplit) {
    let ext = if gz { ".gz" } else { "" };
    let train = raw(1, 5, 4, &[3, 0, 9, 1, 3, 7]);
    let test = raw(1, 5, 4, &[2, 8, 0]);
    let p = |s: &str| root.join(format!("{s}{ext}"));
    idx::write(&p("train-images"), &p("train-labels"), &train, gz).unwrap();
    idx::write(&p("test-images"), &p("test-labels"), &test, gz).unwrap();
    (train, test)
}

#[test]
fn idx_raw_and_gzip_load_both_splits() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (train, test) = write_idx(dir.path(), gz);
        let mut a = create("idx", &idx_config(dir.path(), gz)).unwrap();
        for (split, want) in [("train", &train), ("test", &test)] {
            let s = a.load(split).unwrap();
            assert_eq!(s.images.size(), [want.n as i64, 1, 5, 4], "{split} gz={gz}");
            assert_eq!(s.labels.size(), [want.n as i64]);
            assert_eq!(bytes(&s.images), want.images);
            assert_eq!(longs(&s.labels), want.labels);
            // One name per class of the config, although the test split lacks most classes.
            assert_eq!(s.class_names, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
        }
    }
}

#[test]
fn idx_absolute_file_names_ignore_root_and_class_names_are_used() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), false);
    let mut cfg = idx_config(Path::new("/nonexistent/root"), false);
    cfg["train"] = json!({"images": dir.path().join("train-images"), "labels": dir.path().join("train-labels")});
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    cfg["class_names"] = json!(names);
    let s = IdxAdapter::new(&cfg).unwrap().load("train").unwrap();
    assert_eq!(s.images.size(), [6, 1, 5, 4]);
    assert_eq!(s.class_names, names);
}

#[test]
fn label_out_of_range_names_the_file_and_sample() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), false);
    let mut cfg = idx_config(dir.path(), false);
    cfg["num_classes"] = json!(5);
    let e = err_text(create("idx", &cfg).unwrap().load("train"));
    assert!(e.contains("train-labels") && e.contains("sample 2 has label 9") && e.contains("0..5"), "{e}");
    assert!(e.starts_with("dataset `tiny` (adapter `idx`)"), "{e}");
}

// ------------------------------------------------------------------------------------ errors

#[test]
fn unknown_key_is_rejected_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = idx_config(dir.path(), false);
    cfg["trian"] = json!({"images": "a", "labels": "b"});
    let e = err_text(create("idx", &cfg));
    assert!(e.contains("unknown key `trian`") && e.contains("did you mean `train`?"), "{e}");
    assert!(e.contains("root, train, test"), "{e}");

    // Keys of another adapter are unknown too, with no far-fetched suggestion.
    let mut cfg = idx_config(dir.path(), false);
    cfg["layout"] = json!("nchw");
    let e = err_text(create("idx", &cfg));
    assert!(e.contains("unknown key `layout`") && !e.contains("did you mean"), "{e}");

    // Inside a split's files.
    let mut cfg = idx_config(dir.path(), false);
    cfg["test"] = json!({"image": "a", "labels": "b"});
    let e = err_text(create("idx", &cfg));
    assert!(e.contains("`test`") && e.contains("unknown field `image`"), "{e}");

    for (adapter, extra) in [("cifar-binary", "train_dir"), ("image-folder", "variant"), ("npy", "fine_labels")] {
        let cfg = json!({"root": dir.path(), extra: "x"});
        let e = err_text(create(adapter, &cfg));
        assert!(e.contains(&format!("unknown key `{extra}`")), "{adapter}: {e}");
    }
}

#[test]
fn passed_host_facts_and_null_keys_are_accepted_other_host_keys_are_not() {
    let cfg = json!({
        "name": "x", "root": "r", "num_classes": 3, "channels": 1, "image_size": 4, "train_dir": null,
    });
    NpyAdapter::new(&cfg).unwrap();
    // The host keeps these to itself: one that reaches an adapter is a misplaced key
    // (e.g. `dataset.val_ratio`, which once was accepted and silently ignored).
    for key in ["val_ratio", "mean", "std", "transforms", "adapter"] {
        let mut bad = cfg.clone();
        bad[key] = json!(0.1);
        let e = err_text(NpyAdapter::new(&bad).map(|_| ()));
        assert!(e.contains(&format!("unknown key `{key}`")), "{key}: {e}");
    }
}

#[test]
fn every_documented_key_is_accepted() {
    for (adapter, keys) in
        [("idx", IDX_KEYS), ("cifar-binary", CIFAR_KEYS), ("image-folder", IMAGE_FOLDER_KEYS), ("npy", NPY_KEYS)]
    {
        for key in keys {
            // A wrong value type gives a type error, never "unknown key".
            let e = err_text(create(adapter, &json!({"root": 12, *key: {"no": "such value"}})));
            assert!(!e.contains("unknown"), "{adapter}.{key}: {e}");
        }
    }
}

#[test]
fn bad_split_name_lists_the_splits() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), false);
    let e = err_text(create("idx", &idx_config(dir.path(), false)).unwrap().load("val"));
    assert!(e.contains("unknown split `val`") && e.contains("train, test"), "{e}");
    let e = err_text(create("cifar-binary", &json!({"root": dir.path()})).unwrap().load("valid"));
    assert!(e.contains("unknown split `valid`") && e.contains("train, test"), "{e}");
}

#[test]
fn missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let e = err_text(create("idx", &idx_config(dir.path(), true)).unwrap().load("test"));
    let path = dir.path().join("test-images.gz");
    assert!(e.contains(&path.display().to_string()) && e.contains("no such file"), "{e}");

    let e = err_text(create("cifar-binary", &json!({"root": dir.path()})).unwrap().load("train"));
    assert!(e.contains(&dir.path().join("data_batch_1.bin").display().to_string()), "{e}");

    let e = err_text(create("image-folder", &json!({"root": dir.path()})).unwrap().load("train"));
    assert!(e.contains(&dir.path().join("train").display().to_string()), "{e}");
}

#[test]
fn missing_split_files_and_root_are_reported() {
    let e =
        err_text(create("idx", &json!({"root": "r", "train": {"images": "a", "labels": "b"}})).unwrap().load("test"));
    assert!(e.contains("no files for split `test`") && e.contains("test: {images: FILE, labels: FILE}"), "{e}");
    let e = err_text(create("npy", &json!({"name": "n", "layout": "nchw"})));
    assert!(e.contains("missing key `root`"), "{e}");
}

#[test]
fn channel_and_size_mismatch_name_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), false);
    let mut cfg = idx_config(dir.path(), false);
    cfg["channels"] = json!(3);
    let e = err_text(create("idx", &cfg).unwrap().load("train"));
    let file = dir.path().join("train-images").display().to_string();
    assert!(e.contains(&file) && e.contains("1x5x4"), "{e}");
    assert!(e.contains("says `channels: 3`") && e.contains("set `channels: 1`") && e.contains("`train.images`"), "{e}");

    cfg["channels"] = json!(1);
    cfg["image_size"] = json!(28);
    let e = err_text(create("idx", &cfg).unwrap().load("test"));
    assert!(e.contains("`image_size: 28`") && e.contains("`image_size: [5, 4]`") && e.contains("`test.images`"), "{e}");
}

#[test]
fn bad_host_values_are_reported() {
    let e = err_text(create("idx", &json!({"root": "r", "num_classes": 0})));
    assert!(e.contains("`num_classes` must be a positive integer"), "{e}");
    let e = err_text(create("idx", &json!({"root": "r", "image_size": [1, 2, 3]})));
    assert!(e.contains("`image_size` must be"), "{e}");
    let e = err_text(create("idx", &json!({"root": "r", "num_classes": 3, "class_names": ["a", "b"]})));
    assert!(e.contains("lists 2 names but `num_classes` is 3"), "{e}");
    let e = err_text(create("idx", &json!(["root"])));
    assert!(e.contains("must be a mapping"), "{e}");
}

// ------------------------------------------------------------------------------------ cifar

#[test]
fn cifar10_default_batches_three_channels() {
    let dir = tempfile::tempdir().unwrap();
    let mut want_images = Vec::new();
    let mut want_labels = Vec::new();
    for b in 1..=5 {
        let labels: Vec<i64> = (0..3).map(|i| (b * 3 + i) % 10).collect();
        let mut s = raw(3, 32, 32, &labels);
        s.images.iter_mut().for_each(|p| *p = p.wrapping_add(b as u8));
        cifar::write_cifar10(&dir.path().join(format!("data_batch_{b}.bin")), &s).unwrap();
        want_images.extend_from_slice(&s.images);
        want_labels.extend_from_slice(&labels);
    }
    let test = raw(3, 32, 32, &[9, 0]);
    cifar::write_cifar10(&dir.path().join("test_batch.bin"), &test).unwrap();

    let cfg = json!({"name": "c10", "root": dir.path(),
                     "num_classes": 10, "channels": 3, "image_size": 32});
    let mut a = create("cifar-binary", &cfg).unwrap();
    let s = a.load("train").unwrap();
    assert_eq!(s.images.size(), [15, 3, 32, 32]);
    assert_eq!(bytes(&s.images), want_images);
    assert_eq!(longs(&s.labels), want_labels);
    assert_eq!(s.class_names[0], "airplane");
    assert_eq!(s.class_names.len(), 10);
    // Channel-major: the first 1024 bytes of a record are the red plane.
    let red = s.images.get(0).get(0).reshape([-1]);
    assert_eq!(bytes(&red), want_images[..1024]);
    let t = a.load("test").unwrap();
    assert_eq!(t.images.size(), [2, 3, 32, 32]);
    assert_eq!(longs(&t.labels), [9, 0]);
}

#[test]
fn cifar100_fine_and_coarse_with_listed_files() {
    let dir = tempfile::tempdir().unwrap();
    let fine = [99i64, 0, 42];
    let coarse = [19i64, 4, 7];
    let s = raw(3, 32, 32, &fine);
    cifar::write_cifar100(&dir.path().join("part1.bin"), &s, &coarse).unwrap();
    cifar::write_cifar100(&dir.path().join("test.bin"), &s, &coarse).unwrap();

    let cfg = json!({"root": dir.path(), "variant": "cifar100",
                     "train": "part1.bin", "num_classes": 100});
    let mut a = create("cifar-binary", &cfg).unwrap();
    let t = a.load("train").unwrap();
    assert_eq!(longs(&t.labels), fine);
    assert_eq!(t.class_names.len(), 100);
    assert_eq!(t.class_names[99], "worm");
    assert_eq!(a.load("test").unwrap().images.size(), [3, 3, 32, 32]);

    let cfg = json!({"root": dir.path(), "variant": "cifar100",
                     "fine_labels": false, "train": ["part1.bin"], "num_classes": 20});
    let t = create("cifar-binary", &cfg).unwrap().load("train").unwrap();
    assert_eq!(longs(&t.labels), coarse);
    assert_eq!(t.class_names.len(), 20);
}

#[test]
fn cifar_config_errors() {
    let e = err_text(create("cifar-binary", &json!({"root": "r", "num_classes": 100})));
    assert!(e.contains("`num_classes: 100` does not match") && e.contains("CIFAR-10 has 10"), "{e}");
    let e = err_text(create("cifar-binary", &json!({"root": "r", "variant": "cifar100", "num_classes": 20})));
    assert!(e.contains("fine_labels: false"), "{e}");
    let e = err_text(create("cifar-binary", &json!({"root": "r", "fine_labels": true})));
    assert!(e.contains("`fine_labels` applies to `variant: cifar100` only"), "{e}");
    let e = err_text(create("cifar-binary", &json!({"root": "r", "variant": "cifar1000"})));
    assert!(e.contains("`variant`") && e.contains("cifar10") && e.contains("cifar100"), "{e}");
    let e = err_text(create("cifar-binary", &json!({"root": "r", "channels": 1, "image_size": 28})));
    assert!(e.contains("3x32x32") && e.contains("set `channels: 3` and `image_size: 32`"), "{e}");
    let e = err_text(create("cifar-binary", &json!({"root": "r", "train": []})));
    assert!(e.contains("`train` lists no files"), "{e}");
}

// ------------------------------------------------------------------------------------ image folder

fn write_png(path: &Path, w: u32, h: u32, color: png::ColorType, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(data).unwrap();
}

/// root/{train,test}/{cat,dog}/*.png, 6x4 (w x h) RGB; returns the HWC pixels of train/cat/a.png.
fn make_folder(root: &Path) -> Vec<u8> {
    let rgb = |seed: u8| -> Vec<u8> { (0..24).flat_map(|i| [seed.wrapping_add(i), 100, 200 - i]).collect() };
    write_png(&root.join("train/cat/a.png"), 6, 4, png::ColorType::Rgb, &rgb(0));
    write_png(&root.join("train/cat/b.png"), 6, 4, png::ColorType::Rgb, &rgb(50));
    write_png(&root.join("train/dog/c.png"), 6, 4, png::ColorType::Rgb, &rgb(90));
    write_png(&root.join("test/cat/d.png"), 6, 4, png::ColorType::Rgb, &rgb(7));
    write_png(&root.join("test/dog/e.png"), 6, 4, png::ColorType::Rgb, &rgb(9));
    write_png(&root.join("test/dog/f.png"), 6, 4, png::ColorType::Grayscale, &[33u8; 24]);
    rgb(0)
}

fn folder_config(root: &Path) -> Value {
    json!({"name": "pets", "root": root, "num_classes": 2, "channels": 3,
           "image_size": [4, 6]})
}

#[test]
fn image_folder_png_train_and_test() {
    let dir = tempfile::tempdir().unwrap();
    let first = make_folder(dir.path());
    let mut a = create("image-folder", &folder_config(dir.path())).unwrap();
    let s = a.load("train").unwrap();
    assert_eq!(s.images.size(), [3, 3, 4, 6]);
    assert_eq!(longs(&s.labels), [0, 0, 1]);
    assert_eq!(s.class_names, ["cat", "dog"]);
    // HWC in the file, CHW in the tensor.
    let got = bytes(&s.images.get(0));
    for c in 0..3 {
        for i in 0..24 {
            assert_eq!(got[c * 24 + i], first[i * 3 + c]);
        }
    }
    let t = a.load("test").unwrap();
    assert_eq!(t.images.size(), [3, 3, 4, 6]);
    assert_eq!(longs(&t.labels), [0, 1, 1]);
    // The gray image is replicated to three channels.
    assert!(bytes(&t.images.get(2)).iter().all(|&p| p == 33));
}

#[test]
fn image_folder_resize_and_size_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let mut cfg = folder_config(dir.path());
    cfg["image_size"] = json!(8);
    let e = err_text(create("image-folder", &cfg).unwrap().load("train"));
    assert!(e.contains("a.png") && e.contains("4x6") && e.contains("expected 8x8"), "{e}");

    cfg["resize"] = json!(true);
    cfg["channels"] = json!(1);
    let s = create("image-folder", &cfg).unwrap().load("test").unwrap();
    assert_eq!(s.images.size(), [3, 1, 8, 8]);

    cfg["image_size"] = Value::Null;
    let e = err_text(create("image-folder", &cfg));
    assert!(e.contains("`resize: true` needs `image_size`"), "{e}");
}

#[test]
fn image_folder_class_checks() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let mut cfg = folder_config(dir.path());
    cfg["num_classes"] = json!(3);
    let e = err_text(create("image-folder", &cfg).unwrap().load("train"));
    assert!(e.contains("has 2 class folders (cat, dog) but `num_classes` is 3"), "{e}");

    let mut cfg = folder_config(dir.path());
    cfg["class_names"] = json!(["dog", "cat"]);
    let e = err_text(create("image-folder", &cfg).unwrap().load("train"));
    assert!(e.contains("differ from the class folders"), "{e}");

    // A test folder with other classes would silently shift labels; it is an error instead.
    write_png(&dir.path().join("test/emu/g.png"), 6, 4, png::ColorType::Grayscale, &[1u8; 24]);
    fs::remove_dir_all(dir.path().join("test/dog")).unwrap();
    let e = err_text(create("image-folder", &folder_config(dir.path())).unwrap().load("train"));
    assert!(e.contains("must hold the same class folders") && e.contains("[dog]") && e.contains("[emu]"), "{e}");
}

#[test]
fn image_folder_custom_dirs() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let mut cfg = folder_config(dir.path());
    cfg["train_dir"] = json!("test");
    cfg["test_dir"] = json!("train");
    let s = create("image-folder", &cfg).unwrap().load("test").unwrap();
    assert_eq!(longs(&s.labels), [0, 0, 1]);
}

// ------------------------------------------------------------------------------------ npy

#[test]
fn npy_nhwc_and_nchw() {
    for (layout, key) in [(npy::NpyLayout::Nhwc, "nhwc"), (npy::NpyLayout::Nchw, "nchw")] {
        let dir = tempfile::tempdir().unwrap();
        let train = raw(3, 4, 5, &[1, 0, 2, 2]);
        let test = raw(3, 4, 5, &[0]);
        let p = |s: &str| dir.path().join(s);
        npy::write(&p("xtr.npy"), &p("ytr.npy"), &train, layout).unwrap();
        npy::write(&p("xte.npy"), &p("yte.npy"), &test, layout).unwrap();
        let cfg = json!({"root": dir.path(), "layout": key, "num_classes": 3, "channels": 3,
                         "image_size": [4, 5],
                         "train": {"images": "xtr.npy", "labels": "ytr.npy"},
                         "test": {"images": "xte.npy", "labels": "yte.npy"}});
        let mut a = create("npy", &cfg).unwrap();
        let s = a.load("train").unwrap();
        assert_eq!(s.images.size(), [4, 3, 4, 5], "{key}");
        assert_eq!(bytes(&s.images), train.images, "{key}");
        assert_eq!(longs(&s.labels), train.labels);
        assert_eq!(s.class_names, ["0", "1", "2"]);
        assert_eq!(a.load("test").unwrap().images.size(), [1, 3, 4, 5]);
    }
}

#[test]
fn npy_wrong_layout_is_a_shape_error_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let s = raw(3, 4, 5, &[0, 1]);
    let p = |s: &str| dir.path().join(s);
    npy::write(&p("x.npy"), &p("y.npy"), &s, npy::NpyLayout::Nchw).unwrap();
    let cfg = json!({"root": dir.path(), "channels": 3, "image_size": [4, 5],
                     "train": {"images": "x.npy", "labels": "y.npy"}});
    let e = err_text(create("npy", &cfg).unwrap().load("train"));
    assert!(e.contains("x.npy") && e.contains("5x3x4") && e.contains("set `layout: nchw`"), "{e}");
    let e = err_text(create("npy", &json!({"root": "r", "layout": "chw"})));
    assert!(e.contains("`layout`") && e.contains("nhwc"), "{e}");
}

// ------------------------------------------------------------------------------------ confs

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../confs/datasets")
}

/// The `dataset:` section of a conf file, as the JSON the host passes.
fn conf_section(file: &str) -> Value {
    let text = fs::read_to_string(conf_dir().join(file)).unwrap();
    let v: Value = yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    v.get("dataset").cloned().unwrap_or_else(|| panic!("{file}: no top-level `dataset:`"))
}

/// What the host hands the adapter from a dataset section: everything but the keys it keeps
/// (`adapter`, `mean`, `std`).
fn adapter_view(section: &Value) -> Value {
    let mut v = section.clone();
    for key in ["adapter", "mean", "std"] {
        v.as_object_mut().expect("a mapping").remove(key);
    }
    v
}

#[test]
fn every_shipped_conf_builds_its_adapter() {
    let mut files: Vec<String> = fs::read_dir(conf_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["cifar10.yaml", "cifar100.yaml", "fashion_mnist.yaml", "image_folder_example.yaml", "mnist.yaml"]
    );
    for f in &files {
        let section = conf_section(f);
        let adapter = section["adapter"].as_str().unwrap().to_string();
        create(&adapter, &adapter_view(&section)).unwrap_or_else(|e| panic!("{f}: {e:#}"));
        let mean = section["mean"].as_array().unwrap().len();
        assert_eq!(mean, section["channels"].as_u64().unwrap() as usize, "{f}: one mean per channel");
        assert_eq!(section["std"].as_array().unwrap().len(), mean, "{f}");
    }
}

#[test]
fn fashion_mnist_from_the_debian_package() {
    let section = conf_section("fashion_mnist.yaml");
    let root = PathBuf::from(section["root"].as_str().unwrap());
    assert!(
        root.is_dir(),
        "{} is missing: scripts/setup.sh installs the Debian package dataset-fashion-mnist",
        root.display()
    );
    let mut a = create("idx", &adapter_view(&section)).unwrap();
    let train = a.load("train").unwrap();
    assert_eq!(train.images.size(), [60000, 1, 28, 28]);
    assert_eq!(train.labels.size(), [60000]);
    assert_eq!(train.images.kind(), Kind::Uint8);
    assert_eq!(train.labels.kind(), Kind::Int64);
    let counts = Vec::<i64>::try_from(train.labels.bincount(None::<Tensor>, 10)).unwrap();
    assert_eq!(counts, [6000; 10]);
    let test = a.load("test").unwrap();
    assert_eq!(test.images.size(), [10000, 1, 28, 28]);
    assert_eq!(test.labels.size(), [10000]);
    assert_eq!(test.class_names.len(), 10);
}
