//! The fuzz targets: seeds (valid inputs) and how each input is fed to the parser.

use crate::{join_files, split_files, Outcome, Target};
use archai_config::{load_tree, try_to_yaml_string, LoadOptions};
use archai_dataset_formats::{cifar, idx, image_folder, npy, RawSplit};
use archai_model_desc::{CellFill, DartsMacro, InputDesc, MixerDesc, ModelDesc, DARTS_V2};
use std::path::{Path, PathBuf};

/// Every target, seeds made.
pub fn all_targets() -> Vec<Target> {
    vec![idx_target(), npy_target(), cifar_target(), image_target(), config_target(), set_target(), model_desc_target()]
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A small split with every pixel and label determined by its position.
fn split(n: usize, channels: usize, height: usize, width: usize, classes: usize) -> RawSplit {
    RawSplit {
        images: (0..n * channels * height * width).map(|i| (i * 7 % 256) as u8).collect(),
        n,
        channels,
        height,
        width,
        labels: (0..n).map(|i| (i % classes) as i64).collect(),
        class_names: (0..classes).map(|c| c.to_string()).collect(),
        source: PathBuf::new(),
    }
}

/// Writes `files` under `dir` with the given names.
fn write_all(dir: &Path, names: &[&str], files: &[&[u8]]) -> Vec<PathBuf> {
    names
        .iter()
        .zip(files)
        .map(|(name, bytes)| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).expect("write a fuzz input");
            p
        })
        .collect()
}

/// A read split must be self-consistent: what the readers return is trusted by the pipeline.
/// (Labels outside the dataset's classes are refused later, against the config's class count.)
fn check_split(r: Result<RawSplit, archai_dataset_formats::FormatError>) -> Outcome {
    let s = match r {
        Ok(s) => s,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let shape_ok = s.n.checked_mul(s.sample_len()) == Some(s.images.len()) && s.labels.len() == s.n;
    let names_ok = s.labels.iter().all(|&l| l < 0 || (l as u64) < s.class_names.len() as u64);
    if shape_ok && names_ok {
        Outcome::Accepted
    } else {
        Outcome::Broken(format!(
            "the reader returned an inconsistent split: {} samples of {}x{}x{}, {} image bytes, {} labels, {} class names",
            s.n,
            s.channels,
            s.height,
            s.width,
            s.images.len(),
            s.labels.len(),
            s.class_names.len()
        ))
    }
}

fn idx_target() -> Target {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seeds = Vec::new();
    for (i, gzip) in [(0, false), (1, true)] {
        let s = split(3 + i, 1, 4, 5, 3);
        let (img, lab) = (dir.path().join("i"), dir.path().join("l"));
        idx::write(&img, &lab, &s, gzip).expect("write IDX seed");
        seeds.push(join_files(&[&std::fs::read(img).unwrap(), &std::fs::read(lab).unwrap()]));
    }
    Target {
        name: "idx",
        seeds,
        run: Box::new(|input, scratch| {
            let files = split_files(input, 2);
            let p = write_all(scratch, &["images", "labels"], &files);
            check_split(idx::read(&p[0], &p[1]))
        }),
    }
}

fn npy_target() -> Target {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seeds = Vec::new();
    let arr = |descr: &str, shape: &[usize], data: &[u8]| {
        let p = dir.path().join("a.npy");
        npy::write_array(&p, descr, shape, data).expect("write NPY seed");
        std::fs::read(p).unwrap()
    };
    let images3 = arr("|u1", &[2, 3, 4], &(0..24).collect::<Vec<u8>>());
    let images4 = arr("|u1", &[2, 3, 2, 3], &(0..36).collect::<Vec<u8>>());
    let labels_u1 = arr("|u1", &[2], &[0, 1]);
    let labels_i8 = arr("<i8", &[2], &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let labels_i4 = arr(">i4", &[2], &[0, 0, 0, 2, 0, 0, 0, 1]);
    for (layout, images, labels) in
        [(0u8, &images3, &labels_u1), (0, &images4, &labels_i8), (1, &images4, &labels_i4), (1, &images3, &labels_i8)]
    {
        seeds.push(join_files(&[&[layout], images, labels]));
    }
    Target {
        name: "npy",
        seeds,
        run: Box::new(|input, scratch| {
            let files = split_files(input, 3);
            let layout =
                if files[0].first().is_some_and(|b| b % 2 == 1) { npy::NpyLayout::Nchw } else { npy::NpyLayout::Nhwc };
            let p = write_all(scratch, &["images.npy", "labels.npy"], &files[1..]);
            check_split(npy::read(&p[0], &p[1], layout))
        }),
    }
}

fn cifar_target() -> Target {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("b.bin");
    let s = split(2, 3, 32, 32, 10);
    cifar::write_cifar10(&p, &s).expect("write CIFAR-10 seed");
    let c10 = std::fs::read(&p).unwrap();
    cifar::write_cifar100(&p, &split(2, 3, 32, 32, 100), &[3, 19]).expect("write CIFAR-100 seed");
    let c100 = std::fs::read(&p).unwrap();
    let seeds = vec![join_files(&[&[0], &c10]), join_files(&[&[1], &c100]), join_files(&[&[2], &c100])];
    Target {
        name: "cifar",
        seeds,
        run: Box::new(|input, scratch| {
            let files = split_files(input, 2);
            let variant = match files[0].first().map_or(0, |b| b % 3) {
                0 => cifar::CifarVariant::Cifar10,
                1 => cifar::CifarVariant::Cifar100 { fine: true },
                _ => cifar::CifarVariant::Cifar100 { fine: false },
            };
            // The batch twice: a dataset lists several files, and records must not straddle them.
            let p = write_all(scratch, &["a.bin", "b.bin"], &[files[1], files[1]]);
            check_split(cifar::read(&p, variant))
        }),
    }
}

/// PNG and JPEG files (tests/fixtures/fuzz/image, made with ImageMagick: RGB, gray, 16-bit,
/// palette, interlaced RGBA PNGs; baseline, gray and progressive JPEGs), each with a byte that
/// picks the file's extension and whether a resize is asked for.
fn image_target() -> Target {
    let dir = repo_root().join("tests/fixtures/fuzz/image");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the image seeds are part of the repository)", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{} should hold the image seeds", dir.display());
    let seeds = files
        .iter()
        .map(|f| {
            let png = f.extension().is_some_and(|e| e == "png");
            join_files(&[&[if png { 0 } else { 1 }], &std::fs::read(f).unwrap()])
        })
        .collect();
    Target {
        name: "image",
        seeds,
        run: Box::new(|input, scratch| {
            let files = split_files(input, 2);
            let flags = files[0].first().copied().unwrap_or(0);
            let name = if flags % 2 == 0 { "x.png" } else { "x.jpg" };
            std::fs::create_dir_all(scratch.join("a")).unwrap();
            std::fs::write(scratch.join("a").join(name), files[1]).unwrap();
            let (expect, resize) = match flags / 2 % 3 {
                0 => (None, None),
                1 => (Some((3, 6, 6)), Some((6, 6))),
                _ => (Some((1, 8, 8)), Some((8, 8))),
            };
            check_split(image_folder::read(scratch, expect, resize))
        }),
    }
}

/// A copy of the repository's confs/ in a directory the target owns, so that includes and the toy
/// file resolve as they do for users.
fn confs_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::copy_tree(&repo_root().join("confs"), &dir.path().join("confs"));
    dir
}

/// Loads a config and, when it loads, checks that what a run records as config_used.yaml loads
/// back to the same tree (the record must be the full truth of the run).
fn load_and_round_trip(conf: &Path, opts: &LoadOptions, scratch: &Path) -> Outcome {
    let loaded = match load_tree(conf, opts) {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let text = match try_to_yaml_string(&loaded.tree) {
        Ok(t) => t,
        Err(e) => return Outcome::Broken(format!("a loaded config cannot be written back: {e}")),
    };
    let used = scratch.join("config_used.yaml");
    std::fs::write(&used, &text).unwrap();
    match load_tree(&used, &LoadOptions::default()) {
        Ok(again) if again.tree == loaded.tree => Outcome::Accepted,
        Ok(_) => Outcome::Broken(format!("config_used.yaml reads back as another tree:\n{text}")),
        Err(e) => Outcome::Broken(format!("config_used.yaml does not load again: {e}\n{text}")),
    }
}

/// Hand-written seeds for what confs/ does not use much: anchors, aliases, merge keys, `_copy`.
const CONFIG_SEEDS: &[&str] = &[
    "base: &b {lr: 0.1, momentum: 0.9}\nsearch:\n  <<: *b\n  lr: 0.2\neval: *b\nlist: [*b, *b]\n",
    "a: {x: 1, y: [1, 2, {z: 3}]}\nb: '_copy: /a'\nc: {_copy: ../a, x: 2}\nd: {e: '_copy: ../../a/y'}\n",
    "__include__: [darts.yaml]\ncommon: {seed: 3}\nnas: {search: {trainer: {epochs: 2}}}\n",
    "toy: true\n__include__: random.yaml\n",
    "k: !!str 12\nf: .inf\ng: -.nan\nh: 0x1f\ni: 1e400\nj: ~\n'quoted key': \"tab\\there\"\n",
];

fn config_target() -> Target {
    let confs = confs_copy();
    let algos = confs.path().join("confs/algos");
    let mut seeds: Vec<Vec<u8>> = CONFIG_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    for e in std::fs::read_dir(&algos).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            seeds.push(std::fs::read(p).unwrap());
        }
    }
    seeds.sort();
    Target {
        name: "config",
        seeds,
        run: Box::new(move |input, scratch| {
            // The fuzzed file sits beside the real experiments, so relative includes resolve.
            let conf = algos.join(format!("fuzzed-{}.yaml", std::process::id()));
            std::fs::write(&conf, input).unwrap();
            let toy = input.len() % 3 == 0;
            let r = load_and_round_trip(&conf, &LoadOptions { toy, ..Default::default() }, scratch);
            let _ = &confs; // owned here so the copy lives as long as the target
            r
        }),
    }
}

/// `--set` flags, one per line, on top of confs/algos/darts.yaml.
fn set_target() -> Target {
    let confs = confs_copy();
    let darts = confs.path().join("confs/algos/darts.yaml");
    let seeds: Vec<Vec<u8>> = [
        "nas.search.trainer.epochs=3",
        "nas.search.trainer.lr_schedule={type: cosine, min_lr: 0.001}\ncommon.seed=4",
        "nas.search.algorithm.config.macro.layers=5\nnas.eval.trainer.batch_size='64'",
        "toy=true\nnas.search.trainer.max_batches=[1, 2]",
        "common.new_key.deeper=_copy: /nas/search/trainer\nnas.eval={}",
        "dataset=null\ncommon.experiment_name=\"a b: c\"",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    Target {
        name: "set",
        seeds,
        run: Box::new(move |input, scratch| {
            let text = String::from_utf8_lossy(input);
            let sets: Vec<String> = text.split('\n').take(16).map(str::to_string).collect();
            let _ = &confs; // owned here so the copy lives as long as the target
            load_and_round_trip(&darts, &LoadOptions { sets, ..Default::default() }, scratch)
        }),
    }
}

/// ModelDesc YAML (what `archai train --model` and searches' final_model.yaml hold). What
/// parses and validates must write back to the same description.
fn model_desc_target() -> Target {
    let input = InputDesc { channels: 1, size: 28 };
    let mut seeds = Vec::new();
    for aux in [false, true] {
        let d = DARTS_V2.build("darts_v2", 3, 4, aux, input.clone(), 10).expect("DARTS-V2 seed");
        seeds.push(d.to_yaml().into_bytes());
    }
    let candidates: Vec<String> =
        ["skip_connect", "sep_conv_3x3", "max_pool_3x3"].iter().map(|s| s.to_string()).collect();
    let mixer = MixerDesc { name: "softmax".into(), params: Default::default() };
    let macro_ = DartsMacro {
        layers: 3,
        nodes: 2,
        channels: 4,
        stem_multiplier: 3,
        stem_stride: 1,
        auxiliary: false,
        reduction_cells: None,
    };
    let search = macro_.build("search", input, 10, &CellFill::Search { candidates: &candidates, mixer: &mixer });
    seeds.push(search.expect("search-space seed").to_yaml().into_bytes());
    Target {
        name: "model-desc",
        seeds,
        run: Box::new(|input, _| {
            let text = String::from_utf8_lossy(input);
            match ModelDesc::from_yaml(&text, "fuzz") {
                Err(e) => Outcome::Refused(e.to_string()),
                Ok(d) => match ModelDesc::from_yaml(&d.to_yaml(), "written back") {
                    Ok(again) if again == d => Outcome::Accepted,
                    Ok(_) => Outcome::Broken(format!("a ModelDesc reads back differently:\n{}", d.to_yaml())),
                    Err(e) => Outcome::Broken(format!("a valid ModelDesc does not read back: {e}\n{}", d.to_yaml())),
                },
            }
        }),
    }
}

/// The classic "billion laughs" document: nine levels of aliases, each repeating the previous
/// level ten times, so expanding it would build 10^9 strings.
pub fn billion_laughs() -> String {
    let mut s = String::from("a0: &a0 \"lol\"\n");
    for level in 1..=9 {
        let refs: Vec<String> = (0..10).map(|_| format!("*a{}", level - 1)).collect();
        s.push_str(&format!("a{level}: &a{level} [{}]\n", refs.join(", ")));
    }
    s
}
