//! Models and the trainer with the real op plugins: parameter counts, chunked steps, resume.
mod common;

use archai::model::Network;
use archai::params::ParamStore;
use archai::plugins::PluginRegistry;
use archai::runlog::RunLog;
use archai::train::{SplitData, Trainer, TrainerConfig};
use archai_data::SampleBuffer;
use archai_model_desc::ModelDesc;
use common::*;
use std::process::Command;
use tch::Device;

fn registry() -> PluginRegistry {
    PluginRegistry::scan(&[plugin_dir()]).unwrap()
}

#[test]
fn darts_v2_has_the_published_parameter_count() {
    let path = repo_root().join("confs/models/darts_v2.yaml");
    let desc = ModelDesc::from_yaml(&std::fs::read_to_string(&path).unwrap(), "darts_v2").unwrap();
    let store = ParamStore::new(Device::Cpu);
    let reg = registry();
    let net = Network::compile(&desc, &reg, &store).unwrap();
    let stats = archai::stats::model_stats(&desc, &reg, &net, &store, 1, 1, Device::Cpu).unwrap();
    let params = stats.params;
    eprintln!("darts_v2.yaml: {params} weights, {} in the auxiliary head", stats.aux_params);
    assert_eq!(desc.aux.as_ref().map(|a| a.after_cell), Some(13), "the published net trains with an aux head");
    assert_eq!(params + stats.aux_params, store.weight_count());
    // DARTS reports 3.3M, counted without the auxiliary head (as `archai stats` counts).
    assert!((3_250_000..3_400_000).contains(&params), "{params}");
    assert_eq!(store.arch_count(), 0);
}

fn trainer_config(chunks: usize) -> TrainerConfig {
    TrainerConfig {
        max_batches: Some(3),
        label_smoothing: 0.1,
        batch_chunks: chunks,
        ..TrainerConfig::sgd(16, 0.1, 1e-3, None)
    }
}

/// Weights after a few steps of a model without batch statistics (pooling + linear head).
fn weights_after_training(chunks: usize) -> Vec<(String, tch::Tensor)> {
    let desc = ModelDesc::from_yaml(
        "name: linear\ninput: {channels: 2, size: 4}\nnum_classes: 3\nstem: []\ncells: []\nhead: {c_in: 2}\n",
        "test",
    )
    .unwrap();
    let store = ParamStore::new(Device::Cpu);
    let mut net = Network::compile(&desc, &registry(), &store).unwrap();
    set_fixed_init(&store);
    let n = 64;
    let images: Vec<u8> = (0..n * 2 * 4 * 4).map(|i| ((i * 37) % 251) as u8).collect();
    let labels: Vec<i64> = (0..n).map(|i| (i % 3) as i64).collect();
    let buffer = SampleBuffer::new(images, labels, [2, 4, 4]).unwrap();
    let train = SplitData { buffer, indices: (0..n).collect(), transforms: vec![] };
    let dir = tempfile::tempdir().unwrap();
    let mut log = RunLog::open(dir.path()).unwrap();
    let mut trainer = Trainer {
        config: trainer_config(chunks),
        phase: "t".into(),
        seed: 1,
        device: Device::Cpu,
        checkpoint: dir.path().join("ck.pt"),
        log: &mut log,
    };
    trainer.fit(&mut net, &store, &train, None, None, false).unwrap();
    store.named_weights()
}

#[test]
fn a_chunked_step_equals_the_full_batch_step() {
    let full = weights_after_training(1);
    let chunked = weights_after_training(4);
    let moved = weights_after_training(1);
    assert_eq!(full.len(), 2);
    for ((name, a), (_, b)) in full.iter().zip(&chunked) {
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{name} differs by {diff}");
    }
    // Training did move the weights (the comparison is not between two initializations).
    let store = ParamStore::new(Device::Cpu);
    let desc = ModelDesc::from_yaml(
        "name: linear\ninput: {channels: 2, size: 4}\nnum_classes: 3\nstem: []\ncells: []\nhead: {c_in: 2}\n",
        "test",
    )
    .unwrap();
    Network::compile(&desc, &registry(), &store).unwrap();
    set_fixed_init(&store);
    let init = store.named_weights();
    assert!((&init[0].1 - &moved[0].1).abs().max().double_value(&[]) > 1e-3);
}

#[test]
fn killed_then_resumed_run_ends_with_the_same_metrics() {
    if !std::path::Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file() {
        panic!("Fashion-MNIST missing: run scripts/setup.sh");
    }
    let tmp = tempfile::tempdir().unwrap();
    let (whole, cut) = whole_and_resumed(
        tmp.path(),
        "confs/algos/manual.yaml",
        // bf16 autocast: resuming is exact in reduced precision too.
        &["nas.eval.trainer.epochs=2", "nas.eval.trainer.max_batches=25", "nas.eval.trainer.precision=bf16"],
        "eval/checkpoint.pt",
        |run| yaml(&run.join("log.yaml"))["eval"]["summary"].is_null(),
    );
    let (a, b) = (yaml(&whole.join("log.yaml")), yaml(&cut.join("log.yaml")));
    assert_eq!(a["eval"]["summary"]["test"], b["eval"]["summary"]["test"]);
    assert_eq!(a["eval"]["epochs"][1]["train"]["loss"], b["eval"]["epochs"][1]["train"]["loss"]);
    assert_eq!(yaml(&cut.join("config_used.yaml"))["nas"]["eval"]["trainer"]["precision"].as_str(), Some("bf16"));
}

#[test]
fn stats_json_reports_darts_v2_params_and_macs() {
    let out = Command::new(archai_bin())
        .current_dir(repo_root())
        .args([
            "--plugin-dir",
            plugin_dir().to_str().unwrap(),
            "stats",
            "confs/models/darts_v2.yaml",
            "--runs",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["params"], 3_349_342);
    // The figure the NAS literature quotes for DARTS-V2 on CIFAR-10: 528M multiply-adds.
    assert_eq!(v["macs"], 528_359_040);
    assert_eq!(v["flops"], 2 * 528_359_040i64);
    assert!(v["activation_bytes"].as_i64().unwrap() > 0 && v["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(v["parts"].as_array().unwrap().len(), 22, "stem, 20 cells, classifier");
    assert_eq!(v["ops_without_macs"].as_array().unwrap().len(), 0);
}

#[test]
fn train_command_trains_validates_and_tests_a_handcrafted_model() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("train");
    let out = Command::new(archai_bin())
        .current_dir(repo_root())
        .args(["--plugin-dir", plugin_dir().to_str().unwrap(), "train", "confs/models/resnet_small.yaml"])
        .args(["--dataset", "fashion_mnist", "--toy", "--set", "nas.eval.trainer.max_batches=5", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = yaml(&run.join("log.yaml"));
    assert_eq!(log["dataset"]["name"].as_str(), Some("fashion_mnist"));
    assert!(log["eval"]["epochs"][0]["val"]["top1"].as_f64().is_some(), "no validation: {:?}", log["eval"]);
    assert!(log["eval"]["summary"]["test"]["top1"].as_f64().is_some());
    let used = yaml(&run.join("config_used.yaml"));
    assert_eq!(used["nas"]["eval"]["model_desc"].as_str(), Some("confs/models/resnet_small.yaml"));

    let err = Command::new(archai_bin())
        .current_dir(repo_root())
        .args([
            "--plugin-dir",
            plugin_dir().to_str().unwrap(),
            "train",
            "confs/models/resnet_small.yaml",
            "--dataset",
            "fashoin_mnist",
        ])
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("--dataset fashoin_mnist: cannot read"));
}

#[test]
fn killed_then_resumed_darts_search_finds_the_same_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, cut) = whole_and_resumed(
        tmp.path(),
        "confs/algos/darts.yaml",
        &["nas.search.trainer.epochs=3", "nas.eval.trainer.max_batches=2"],
        "search/checkpoint.pt",
        |run| !run.join("search/final_model_desc.yaml").is_file(),
    );
    let (a, b) = (yaml(&whole.join("log.yaml")), yaml(&cut.join("log.yaml")));
    // The alphas after the last search epoch depend on the restored Adam moments, the restored
    // weights and the validation batches the resumed run reads.
    assert_eq!(
        a["search"]["epochs"][2]["algorithm_end"]["alphas"],
        b["search"]["epochs"][2]["algorithm_end"]["alphas"]
    );
    assert_eq!(
        std::fs::read_to_string(whole.join("search/final_model_desc.yaml")).unwrap(),
        std::fs::read_to_string(cut.join("search/final_model_desc.yaml")).unwrap()
    );
    assert_eq!(a["eval"]["summary"]["test"], b["eval"]["summary"]["test"]);
}

/// Ops whose outputs do not fit together (here a stride-2 edge beside a stride-1 one, as a plugin
/// op returning the wrong shape would give) are an error naming the cell, node, ops, plugins and
/// shapes: the host makes no panicking call on what plugins return.
#[test]
fn edge_outputs_that_do_not_add_up_are_an_error_not_a_panic() {
    let path = repo_root().join("confs/models/darts_v2.yaml");
    let mut desc = ModelDesc::from_yaml(&std::fs::read_to_string(&path).unwrap(), "darts_v2").unwrap();
    let cell = desc.cells.iter().position(|c| !c.reduction).unwrap();
    desc.cells[cell].nodes[0].edges[1].params.insert("stride".into(), 2.into());
    let store = ParamStore::new(Device::Cpu);
    let net = Network::compile(&desc, &registry(), &store).unwrap();
    let x = tch::Tensor::zeros([2, 3, 32, 32], (tch::Kind::Float, Device::Cpu));
    let err = net.forward(&x, false).unwrap_err().to_string();
    assert!(
        err.contains(&format!("cell {cell}, node 2"))
            && err.contains("differ in shape")
            && err.contains("libops_darts.so"),
        "{err}"
    );
    assert!(err.contains("[2, 16, 16, 16]") || err.contains("[2, 32, 16, 16]") || err.contains(", 16, 16]"), "{err}");
}
