//! The plugin boundary end to end: real plugin libraries loaded by the host.
mod common;

use archai::params::ParamStore;
use archai::plugins::{PluginError, PluginRegistry};
use archai_plugin_api::kit::seeded;
use common::*;
use std::path::Path;
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

fn registry() -> PluginRegistry {
    PluginRegistry::scan(&[plugin_dir()]).expect("workspace plugins load")
}

fn store() -> ParamStore {
    ParamStore::new(Device::Cpu)
}

#[test]
fn plugins_command_lists_the_darts_primitives() {
    let out =
        std::process::Command::new(archai_bin()).arg("--plugin-dir").arg(plugin_dir()).arg("plugins").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for op in [
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
        "relu_conv_bn",
        "factorized_reduce",
    ] {
        assert!(
            text.lines().any(|l| l.contains("libops_darts.so") && l.split_whitespace().nth(2) == Some(op)),
            "{op} missing:\n{text}"
        );
    }
}

#[test]
fn gradients_reach_host_parameters_and_sgd_lowers_the_loss() {
    let reg = registry();
    let store = store();
    let op = reg.create_op("sep_conv_3x3", &serde_json::json!({"c_in": 4, "stride": 1}), &store, "edge").unwrap();
    let weights = store.named_weights();
    assert_eq!(
        weights.len(),
        8,
        "two (dw, pw, bn.weight, bn.bias) groups: {:?}",
        weights.iter().map(|w| &w.0).collect::<Vec<_>>()
    );
    let x = seeded::normal(&[4, 4, 8, 8], 0);
    let target = seeded::normal(&[4, 4, 8, 8], 1);
    let loss_of =
        |op: &archai::plugins::PluginOp| op.forward(&[&x], true).unwrap().mse_loss(&target, tch::Reduction::Mean);

    let first = loss_of(&op);
    first.backward();
    for (name, w) in store.named_weights() {
        let g = w.grad();
        assert!(g.defined(), "{name} got no gradient");
        assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name} has an all-zero gradient");
    }
    let mut opt = tch::nn::Sgd { momentum: 0.9, ..Default::default() }.build(&store.weights, 0.05).unwrap();
    opt.zero_grad();
    let start = first.double_value(&[]);
    let mut last = start;
    for _ in 0..20 {
        let loss = loss_of(&op);
        opt.backward_step(&loss);
        last = loss.double_value(&[]);
    }
    assert!(last < 0.8 * start, "loss went from {start} to {last}");
}

fn get(store: &ParamStore, name: &str) -> Tensor {
    store
        .named_weights()
        .into_iter()
        .chain(store.named_buffers())
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .1
}

fn bn(store: &ParamStore, prefix: &str, x: &Tensor, affine: bool) -> Tensor {
    let (w, b) = if affine {
        (Some(get(store, &format!("{prefix}.weight"))), Some(get(store, &format!("{prefix}.bias"))))
    } else {
        (None, None)
    };
    let (m, v) = (get(store, &format!("{prefix}.running_mean")), get(store, &format!("{prefix}.running_var")));
    Tensor::batch_norm(x, w.as_ref(), b.as_ref(), Some(&m), Some(&v), false, 0.1, 1e-5, true)
}

/// The DARTS dil_conv after its ReLU, written directly against libtorch with the host's weights.
fn dil_ref(store: &ParamStore, p: &str, x: &Tensor, (stride, pad, dil): (i64, i64, i64), affine: bool) -> Tensor {
    let c = x.size()[1];
    let dw =
        x.conv2d(&get(store, &format!("{p}.dw.weight")), None::<Tensor>, [stride, stride], [pad, pad], [dil, dil], c);
    let pw = dw.conv2d(&get(store, &format!("{p}.pw.weight")), None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
    bn(store, &format!("{p}.bn"), &pw, affine)
}

#[test]
fn plugin_ops_equal_in_host_references() {
    let reg = registry();
    let x = seeded::normal(&[2, 6, 9, 9], 2);
    let relu = x.relu();
    for stride in [1, 2] {
        for affine in [true, false] {
            let store = store();
            let cfg = serde_json::json!({"c_in": 6, "stride": stride, "affine": affine});
            let run = |name: &str, scope: &str| {
                reg.create_op(name, &cfg, &store, scope).unwrap().forward(&[&x], false).unwrap()
            };

            let got = run("sep_conv_3x3", "sep");
            let mid = dil_ref(&store, "sep.op1", &relu, (stride, 1, 1), affine);
            let want = dil_ref(&store, "sep.op2", &mid.relu(), (1, 1, 1), affine);
            assert!(got.equal(&want), "sep_conv_3x3 stride {stride} affine {affine}");

            let got = run("dil_conv_5x5", "dil");
            assert!(got.equal(&dil_ref(&store, "dil", &relu, (stride, 4, 2), affine)), "dil_conv_5x5 stride {stride}");

            let got = run("avg_pool_3x3", "avg");
            assert!(
                got.equal(&x.avg_pool2d([3, 3], [stride, stride], [1, 1], false, false, None)),
                "avg_pool stride {stride}"
            );
            let got = run("max_pool_3x3", "max");
            assert!(
                got.equal(&x.max_pool2d([3, 3], [stride, stride], [1, 1], [1, 1], false)),
                "max_pool stride {stride}"
            );

            let got = run("none", "zero");
            let side = (9 + stride - 1) / stride;
            assert_eq!(got.size(), vec![2, 6, side, side]);
            assert_eq!(got.abs().sum(Kind::Float).double_value(&[]), 0.0);

            let got = run("skip_connect", "skip");
            if stride == 1 {
                assert!(got.equal(&x));
            } else {
                let a = relu.conv2d(&get(&store, "skip.conv1.weight"), None::<Tensor>, [2, 2], [0, 0], [1, 1], 1);
                let b = relu.slice(2, 1, None, 1).slice(3, 1, None, 1).conv2d(
                    &get(&store, "skip.conv2.weight"),
                    None::<Tensor>,
                    [2, 2],
                    [0, 0],
                    [1, 1],
                    1,
                );
                let b = b.constant_pad_nd([0, 1, 0, 1]);
                let want = bn(&store, "skip.bn", &Tensor::cat(&[a, b], 1), affine);
                assert!(got.equal(&want), "factorized reduce affine {affine}");
            }
        }
    }
}

#[test]
fn unknown_component_lists_close_names() {
    let reg = registry();
    let err = reg.create_op("sep_conv_3x4", &serde_json::json!({"c_in": 4}), &store(), "x").err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, PluginError::Unknown { .. }), "{text}");
    assert!(text.contains("no op named `sep_conv_3x4`") && text.contains("did you mean `sep_conv_3x3`"), "{text}");
}

#[test]
fn bad_op_config_is_an_error_naming_plugin_and_op() {
    let reg = registry();
    let err = reg
        .create_op("sep_conv_3x3", &serde_json::json!({"c_in": 4, "strid": 2}), &store(), "x")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("libops_darts.so") && err.contains("sep_conv_3x3") && err.contains("unknown field `strid`"),
        "{err}"
    );
}

fn write_garbage_and_foreign_libraries(dir: &Path) {
    std::fs::write(dir.join("libgarbage.so"), b"this is not an ELF file").unwrap();
    let src = dir.join("foreign.c");
    std::fs::write(&src, "int foreign_answer(void) { return 42; }\n").unwrap();
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join("libforeign.so"))
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(status.success());
}

#[test]
fn non_plugin_libraries_are_skipped_and_the_rest_load() {
    let dir = plugin_dir_with(&[&plugin_dir().join("libops_darts.so")]);
    write_garbage_and_foreign_libraries(dir.path());
    let reg = PluginRegistry::scan(&[dir.path().to_path_buf()]).expect("scan succeeds");
    assert_eq!(reg.plugins().len(), 1);
    let skipped: Vec<String> =
        reg.skipped.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(skipped, vec!["libforeign.so", "libgarbage.so"]);
    assert!(reg.skipped[0].1.contains("not an archai plugin"), "{:?}", reg.skipped[0]);
    assert!(reg.find(archai_plugin_api::ComponentKind::Op, "sep_conv_5x5").is_ok());
}

/// A plugin file cut short (an interrupted copy) is refused from its ELF headers, in one line,
/// before the loader maps it: loading it used to kill every command with SIGBUS and no output.
#[test]
fn a_truncated_plugin_is_refused_without_loading_it() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(plugin_dir().join("libdarts.so")).unwrap();
    std::fs::write(dir.path().join("libdarts.so"), &whole[..whole.len() / 2]).unwrap();
    let err = PluginRegistry::scan(&[dir.path().to_path_buf()]).err().expect("refused").to_string();
    assert!(
        err.contains("libdarts.so") && err.contains("cut short") && err.contains("copy or build it again"),
        "{err}"
    );
    // Through the binary: a clean exit 1 with the message, not a signal.
    let out = std::process::Command::new(archai_bin())
        .args(["--plugin-dir", dir.path().to_str().unwrap(), "plugins"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut short"));
}

/// The same directory given twice is scanned once; a file given as a directory is named as such.
#[test]
fn plugin_dir_mistakes_are_named_or_harmless() {
    let twice = PluginRegistry::scan(&[plugin_dir(), plugin_dir().join(".")]).expect("the same dir twice loads");
    assert_eq!(twice.plugins().len(), registry().plugins().len());
    let file = plugin_dir().join("libdarts.so");
    let err = PluginRegistry::scan(&[file]).err().unwrap().to_string();
    assert!(err.contains("libdarts.so is a file") && err.contains("directory"), "{err}");
}

#[test]
fn duplicate_registrations_name_both_files() {
    let ops = plugin_dir().join("libops_darts.so");
    let dir = plugin_dir_with(&[&ops]);
    std::fs::copy(&ops, dir.path().join("libops_darts_copy.so")).unwrap();
    let err = PluginRegistry::scan(&[dir.path().to_path_buf()]).err().expect("refused").to_string();
    assert!(
        err.contains("registered by two plugins")
            && err.contains("libops_darts.so")
            && err.contains("libops_darts_copy.so"),
        "{err}"
    );
}

#[test]
fn missing_plugin_dir_says_what_to_do() {
    let err = PluginRegistry::scan(&[std::path::PathBuf::from("/nonexistent/plugins")]).err().unwrap().to_string();
    assert!(err.contains("/nonexistent/plugins") && err.contains("--plugin-dir"), "{err}");
}

fn third_party() -> std::path::PathBuf {
    build_plugin_crate(&repo_root().join("examples/third-party-plugin"))
}

#[test]
fn third_party_plugin_built_outside_the_workspace_loads_and_trains() {
    let lib = third_party();
    let dir = plugin_dir_with(&[&lib]);
    let reg = PluginRegistry::scan(&[dir.path().to_path_buf()]).unwrap();
    let store = store();
    let op = reg.create_op("scale_by", &serde_json::json!({"channels": 3, "init": 2.0}), &store, "tp").unwrap();
    let x = Tensor::ones([1, 3, 2, 2], (Kind::Float, Device::Cpu));
    let y = op.forward(&[&x], true).unwrap();
    assert_eq!(y.sum(Kind::Float).double_value(&[]), 24.0);
    y.sum(Kind::Float).backward();
    let (name, scale) = &store.named_weights()[0];
    assert_eq!(name, "tp.scale");
    assert_eq!(Vec::<f64>::try_from(scale.grad()).unwrap(), vec![4.0, 4.0, 4.0]);

    let yaml = "name: tiny\ninput: {channels: 1, size: 4}\nnum_classes: 2\nstem: []\nhead: {c_in: 1}\n";
    let mut algo = reg.create_algorithm("fixed", &serde_json::json!({"model_desc": yaml})).unwrap();
    let ctx = archai_plugin_api::SearchContext {
        channels: 1,
        image_size: 4,
        num_classes: 2,
        seed: 0,
        epochs: 1,
        steps_per_epoch: 1,
        val_batch_size: 0,
    };
    let space = match algo.inner.search_space(ctx) {
        abi_stable::std_types::RResult::ROk(s) => s,
        abi_stable::std_types::RResult::RErr(e) => panic!("{e}"),
    };
    assert_eq!(space.arch_training, archai_plugin_api::ArchTraining::Manual);
    let desc = archai_model_desc::ModelDesc::from_yaml(space.model_desc_yaml.as_str(), "fixed").unwrap();
    assert_eq!(desc.name, "tiny");
}

/// `archai stats` asks each op's registration for its cost: the DARTS ops have formulas, the
/// third-party `scale_by` has none and is listed instead of being guessed.
#[test]
fn stats_take_op_costs_from_registrations() {
    let lib = third_party();
    let dir = plugin_dir_with(&[&lib, &plugin_dir().join("libops_darts.so")]);
    let reg = PluginRegistry::scan(&[dir.path().to_path_buf()]).unwrap();
    let desc = archai_model_desc::ModelDesc::from_yaml(
        "name: s\ninput: {channels: 3, size: 32}\nnum_classes: 10\nstem:\n\
         - {op: conv_bn, params: {c_in: 3, c_out: 16, kernel_size: 3}}\n\
         - {op: scale_by, params: {channels: 16}}\nhead: {c_in: 16}\n",
        "test",
    )
    .unwrap();
    let (parts, missing) = archai::stats::analyze(&desc, &reg).unwrap();
    assert_eq!(missing, vec!["scale_by".to_string()]);
    // conv 3x3, 3 -> 16 channels on 32x32 (conv_bn's formula), then the 16 -> 10 classifier.
    assert_eq!(parts[0].macs, 16 * 3 * 9 * 32 * 32);
    assert_eq!(parts.last().unwrap().macs, 16 * 10);
    assert_eq!(reg.op_cost("scale_by", &serde_json::json!({"channels": 16}), [16, 8, 8]).unwrap(), None);
    assert_eq!(
        reg.op_cost("sep_conv_3x3", &serde_json::json!({"c_in": 4}), [4, 8, 8]).unwrap(),
        Some((2 * (4 * 9 * 64 + 16 * 64), [4, 8, 8]))
    );
}

/// The trainer calls every algorithm hook in order (before_epoch, before_step, after_step,
/// after_epoch) and logs what they return: the third-party `fixed` algorithm checks the order
/// itself and reports what it saw.
#[test]
fn a_third_party_algorithm_sees_every_training_hook() {
    use archai::model::Network;
    use archai::runlog::RunLog;
    use archai::train::{SplitData, Trainer, TrainerConfig};
    let lib = third_party();
    let plugins = plugin_dir_with(&[&lib, &plugin_dir().join("libops_darts.so")]);
    let reg = PluginRegistry::scan(&[plugins.path().to_path_buf()]).unwrap();
    let desc_yaml = "name: linear\ninput: {channels: 1, size: 4}\nnum_classes: 2\nstem: []\nhead: {c_in: 1}\n";
    let mut algo = reg.create_algorithm("fixed", &serde_json::json!({"model_desc": desc_yaml})).unwrap();
    algo.arch_training = archai_plugin_api::ArchTraining::Manual;
    let desc = archai_model_desc::ModelDesc::from_yaml(desc_yaml, "fixed").unwrap();
    let store = store();
    let mut net = Network::compile(&desc, &reg, &store).unwrap();
    let n = 24;
    let buffer = archai_data::SampleBuffer::new(
        (0..n * 16).map(|i| (i * 7 % 256) as u8).collect(),
        (0..n).map(|i| (i % 2) as i64).collect(),
        [1, 4, 4],
    )
    .unwrap();
    let split =
        |r: std::ops::Range<usize>| SplitData { buffer: buffer.clone(), indices: r.collect(), transforms: vec![] };
    let dir = tempfile::tempdir().unwrap();
    let mut log = RunLog::open(dir.path()).unwrap();
    let mut trainer = Trainer {
        config: TrainerConfig { epochs: 2, max_batches: Some(3), ..TrainerConfig::sgd(4, 0.1, 0.0, None) },
        phase: "search".into(),
        seed: 3,
        device: Device::Cpu,
        checkpoint: dir.path().join("ck.pt"),
        events: &mut log,
        strategy: archai::train::Strategy::Single,
    };
    trainer.fit(&mut net, &store, &split(0..16), Some(&split(16..24)), Some(&mut algo), false).unwrap();
    let root = log.tree.root();
    let epoch1 = &root["search"]["epochs"][1];
    assert_eq!(epoch1["algorithm_start"]["started_epoch"].as_u64(), Some(1));
    assert_eq!(epoch1["algorithm_start"]["steps_so_far"].as_u64(), Some(3));
    // before_step counted 4, 5, 6 in epoch 1: mean 5. after_step saw the step's loss and lr.
    assert_eq!(epoch1["algorithm"]["steps_seen"].as_f64(), Some(5.0));
    let lr_seen = epoch1["algorithm_after_step"]["lr_seen"].as_f64().unwrap();
    assert!((lr_seen - 0.1).abs() < 1e-9, "{lr_seen}");
    let loss_seen = epoch1["algorithm_after_step"]["loss_seen"].as_f64().unwrap();
    let train_loss = epoch1["train"]["loss"].as_f64().unwrap();
    assert!((loss_seen - train_loss).abs() < 1e-6, "after_step saw {loss_seen}, the epoch logged {train_loss}");
}

#[test]
fn a_panic_in_a_plugin_is_reported_and_the_host_lives_on() {
    let lib = third_party();
    let dir = plugin_dir_with(&[&lib]);
    let reg = PluginRegistry::scan(&[dir.path().to_path_buf()]).unwrap();
    let store = store();
    let op = reg.create_op("scale_by", &serde_json::json!({"channels": 3}), &store, "p").unwrap();
    let flat = Tensor::ones([3], (Kind::Float, Device::Cpu));
    let err = op.forward(&[&flat], false).expect_err("panic caught").to_string();
    assert!(
        err.contains("libthird_party_plugin.so")
            && err.contains("`scale_by`")
            && err.contains("panic")
            && err.contains("N x C x H x W"),
        "{err}"
    );
    // The host and the op still work.
    let ok = op.forward(&[&Tensor::ones([1, 3, 1, 1], (Kind::Float, Device::Cpu))], false).unwrap();
    assert_eq!(ok.sum(Kind::Float).double_value(&[]), 3.0);
}

#[test]
fn a_plugin_built_for_another_libtorch_is_refused() {
    let lib = build_plugin_crate(&repo_root().join("tests/fixtures/wrong-libtorch-plugin"));
    let dir = plugin_dir_with(&[&lib, &plugin_dir().join("libops_darts.so")]);
    let err = PluginRegistry::scan(&[dir.path().to_path_buf()]).err().expect("refused").to_string();
    assert!(
        err.contains("libwrong_libtorch_plugin.so")
            && err.contains("libtorch 1.13.1")
            && err.contains(archai_plugin_api::LIBTORCH_VERSION),
        "{err}"
    );
}

/// Copies plugin-api and the third-party example into target/fixture-src/<case>, lets `edit` change
/// the API copy, renames the plugin (so parallel builds don't overwrite each other) and builds it.
fn build_against_modified_api(case: &str, edit: impl Fn(&Path)) -> std::path::PathBuf {
    let root = repo_root().join("target/fixture-src").join(case);
    let _ = std::fs::remove_dir_all(&root);
    copy_tree(&repo_root().join("plugin-api"), &root.join("plugin-api"));
    copy_tree(&repo_root().join("examples/third-party-plugin"), &root.join("examples/third-party-plugin"));
    edit(&root.join("plugin-api"));
    let manifest = root.join("examples/third-party-plugin/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("name = \"third-party-plugin\"", &format!("name = \"tp-{case}\""));
    std::fs::write(&manifest, text).unwrap();
    build_plugin_crate(&root.join("examples/third-party-plugin"))
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A plugin built against plugin-api 0.3 (the version before mixers) is refused with one line
/// naming the file, the version it was built with and what to do.
#[test]
fn a_plugin_built_against_api_0_3_is_refused() {
    let lib = build_against_modified_api("api-major", |api| {
        replace_in(
            &api.join("Cargo.toml"),
            &format!("version = \"{}\"", archai_plugin_api::API_VERSION),
            "version = \"0.3.0\"",
        );
        for key in ["edition", "license"] {
            replace_in(
                &api.join("Cargo.toml"),
                &format!("{key}.workspace = true"),
                if key == "edition" { "edition = \"2021\"" } else { "license = \"MIT\"" },
            );
        }
    });
    let dir = plugin_dir_with(&[&lib]);
    let err = PluginRegistry::scan(&[dir.path().to_path_buf()]).err().expect("refused").to_string();
    let line = err.lines().find(|l| l.contains("libtp_api_major.so")).expect("a line names the file");
    assert!(
        line.contains("archai-plugin-api 0.3.0")
            && line.contains(archai_plugin_api::API_VERSION)
            && line.contains("rebuild"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "one header and one line per refused plugin:\n{err}");
}

#[test]
fn a_plugin_whose_api_types_changed_layout_is_refused() {
    let lib = build_against_modified_api("api-layout", |api| {
        replace_in(&api.join("Cargo.toml"), "edition.workspace = true", "edition = \"2021\"");
        replace_in(&api.join("Cargo.toml"), "license.workspace = true", "license = \"MIT\"");
        // One more variant changes the layout of ParamSpec, which the root module's signatures use.
        replace_in(&api.join("src/params.rs"), "    Arch,\n}", "    Arch,\n    Frozen,\n}");
    });
    let dir = plugin_dir_with(&[&lib]);
    let err = PluginRegistry::scan(&[dir.path().to_path_buf()]).err().expect("refused").to_string();
    assert!(err.contains("libtp_api_layout.so") && err.contains("different layout"), "{err}");
    assert!(err.lines().count() <= 3, "layout report not summarised:\n{err}");
}

/// Loading a plugin runs its code: files and directories that group or others can write, or
/// that another user owns, are refused with the fix, unless --allow-insecure-plugins.
#[test]
fn plugins_that_others_could_change_are_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let lib = plugin_dir().join("libops_darts.so");
    let dir = plugin_dir_with(&[&lib]);
    let copy = dir.path().join("libops_darts.so");
    let listing = |extra: &[&str]| {
        let o = std::process::Command::new(archai_bin())
            .arg("--plugin-dir")
            .arg(dir.path())
            .args(extra)
            .arg("plugins")
            .env_remove("ARCHAI_ALLOW_INSECURE_PLUGINS")
            .output()
            .unwrap();
        (o.status.success(), output_text(&o))
    };
    let (ok, text) = listing(&[]);
    assert!(ok && text.contains("libops_darts.so"), "{text}");

    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o775)).unwrap();
    let (ok, text) = listing(&[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("refusing to load plugins from {}", copy.display()))
            && text.contains("writable by its group (mode 775)")
            && text.contains(&format!("chmod go-w {}", copy.display()))
            && text.contains("--allow-insecure-plugins"),
        "{text}"
    );
    let (ok, text) = listing(&["--allow-insecure-plugins"]);
    assert!(ok && text.contains("libops_darts.so"), "{text}");

    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, text) = listing(&[]);
    assert!(!ok && text.contains("writable by group and others (mode 777)"), "{text}");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&copy, Some(12345), None).unwrap();
        let (ok, text) = listing(&[]);
        assert!(!ok && text.contains("belongs to user id 12345"), "{text}");
    } else {
        eprintln!("not root: the other-owner case needs chown and was not checked");
    }
}
