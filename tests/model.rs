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

/// confs/models/darts_v2_small.yaml is the network scripts/bench/darts_eval_ref.py builds in
/// PyTorch (DARTS' NetworkCIFAR with the DARTS-V2 cells, 5 cells, C=8, 28x28x1): the same weight
/// count, 36,586 as PyTorch counts them (batch-norm statistics are buffers on both sides).
#[test]
fn darts_v2_small_has_the_weights_of_the_pytorch_reference() {
    let path = repo_root().join("confs/models/darts_v2_small.yaml");
    let desc = ModelDesc::from_yaml(&std::fs::read_to_string(&path).unwrap(), "darts_v2_small").unwrap();
    let store = ParamStore::new(Device::Cpu);
    let _net = Network::compile(&desc, &registry(), &store).unwrap();
    assert_eq!(store.weight_count(), 36_586);
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
        events: &mut log,
        strategy: archai::train::Strategy::Single,
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
    // Every epoch's figures and the summary with the weights' hash, not only the test top-1.
    assert_same_training(&whole, &cut);
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
    assert_same_training(&whole, &cut);
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

/// A one-node search cell: stem, two mixed edges (from the cell's two inputs) over DARTS'
/// candidates with `none` first, softmax mixer, one node, the head.
fn one_cell_search_desc() -> ModelDesc {
    let text = r#"
name: one_cell
input: {channels: 1, size: 8}
num_classes: 3
stem:
  - {op: conv_bn, params: {c_in: 1, c_out: 4, kernel_size: 3}}
cells:
  - reduction: false
    reduction_prev: false
    c_prev_prev: 4
    c_prev: 4
    c: 4
    affine: false
    nodes:
      - edges:
          - input: 0
            op: mixed
            mixer: {name: softmax, params: {alpha: alphas.normal, row: 0}}
            candidates: [none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, dil_conv_3x3]
            params: {c_in: 4, stride: 1, affine: false}
          - input: 1
            op: mixed
            mixer: {name: softmax, params: {alpha: alphas.normal, row: 1}}
            candidates: [none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, dil_conv_3x3]
            params: {c_in: 4, stride: 1, affine: false}
    concat: [2]
head: {c_in: 4}
arch_params:
  - {name: alphas.normal, shape: [2, 6], init: !normal {mean: 0.0, std: 1.0}}
"#;
    ModelDesc::from_yaml(text, "one_cell").unwrap()
}

/// The network of `desc` with weights and alphas from a fixed generator (never libtorch's
/// global one: tests run concurrently), channels-last or not.
fn fixed_network(reg: &PluginRegistry, desc: &ModelDesc, channels_last: bool) -> (ParamStore, Network) {
    let store = ParamStore::new(Device::Cpu);
    let mut net = Network::compile(desc, reg, &store).unwrap();
    net.channels_last = channels_last;
    let _g = tch::no_grad_guard();
    for (k, (_, mut t)) in store.named_weights().into_iter().chain(store.named_arch()).enumerate() {
        t.copy_(&(archai_plugin_api::kit::seeded::normal(&t.size(), 100 + k as u64) * 0.5));
    }
    (store, net)
}

fn arch_grad(store: &ParamStore) -> tch::Tensor {
    store.named_arch()[0].1.grad().copy()
}

/// The mixed edge's maths, written out by hand: each edge is Σ_c softmax(α_row)[c] · op_c(x),
/// `none` contributing 0 (it is never computed), the node the sum of its edges, then pooling and
/// the linear head. The candidates' outputs come from the network's own ops (captured in eval
/// mode); logits and α's gradient must match the network's to 1e-5, channels-last or not.
#[test]
fn a_search_cell_computes_the_softmax_weighted_sum_of_its_candidates() {
    let reg = registry();
    let desc = one_cell_search_desc();
    let x = archai_plugin_api::kit::seeded::normal(&[4, 1, 8, 8], 7);
    let mut results = Vec::new();
    for channels_last in [false, true] {
        let (store, net) = fixed_network(&reg, &desc, channels_last);
        let outs = net.candidate_outputs(&x, "cells.0").unwrap();
        let names: Vec<&str> = outs.iter().map(|(n, _)| n.as_str()).collect();
        // `none` is never built or run: 5 candidates per edge.
        assert_eq!(names.len(), 10, "{names:?}");
        assert!(names.iter().all(|n| !n.ends_with(".none")), "{names:?}");
        // The layout asked for reaches the cells, one-channel input or not (a one-channel image
        // is NCHW and NHWC at once; libtorch would run the whole network in NCHW).
        for (scope, y) in &outs {
            let channel_stride = y.stride()[1];
            assert_eq!(channel_stride == 1, channels_last, "{scope}: strides {:?}", y.stride());
        }
        let alpha = store.named_arch()[0].1.shallow_clone();
        let candidates = &desc.cells[0].nodes[0].edges[0].candidates;
        // Hand-written: the weights picked by the candidate's column in the alpha row.
        let mut node: Option<tch::Tensor> = None;
        for (scope, y) in &outs {
            let edge: i64 = scope.split('.').nth(3).unwrap().strip_prefix('e').unwrap().parse().unwrap();
            let op = scope.rsplit('.').next().unwrap();
            let col = candidates.iter().position(|c| c == op).unwrap() as i64;
            let w = alpha.get(edge).softmax(-1, tch::Kind::Float).get(col);
            let term = y.detach() * w;
            node = Some(match node {
                Some(n) => n + term,
                None => term,
            });
        }
        let weights: std::collections::BTreeMap<String, tch::Tensor> = store.named_weights().into_iter().collect();
        let pooled = node.unwrap().adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let hand = pooled.linear(&weights["classifier.weight"], Some(&weights["classifier.bias"]));
        let logits = net.forward(&x, false).unwrap();
        let diff = (&logits - &hand).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "channels_last {channels_last}: logits differ by {diff}");
        // Gradients w.r.t. α: the network's backward against the hand-written sum's.
        logits.sum(tch::Kind::Float).backward();
        let net_grad = arch_grad(&store);
        alpha.shallow_clone().zero_grad();
        hand.sum(tch::Kind::Float).backward();
        let hand_grad = arch_grad(&store);
        let gdiff = (&net_grad - &hand_grad).abs().max().double_value(&[]);
        assert!(gdiff < 1e-5, "channels_last {channels_last}: alpha gradients differ by {gdiff}");
        // `none`'s column gets no gradient through the product, only through the softmax's
        // normalisation: it must not be zero (it competes) but differs from a computed op's.
        assert!(net_grad.get(0).get(0).double_value(&[]).abs() > 0.0);
        results.push((logits.detach(), net_grad));
    }
    // channels-last and NCHW: the same outputs and gradients up to summation order.
    let d = (&results[0].0 - &results[1].0).abs().max().double_value(&[]);
    let g = (&results[0].1 - &results[1].1).abs().max().double_value(&[]);
    assert!(d < 1e-5 && g < 1e-5, "channels-last vs NCHW: logits {d}, alpha gradients {g}");
}

/// The convolutions of resnet_small, whose layers all sit in the stem, run on channels-last input
/// after the one-channel first one, as oneDNN reports each executed primitive
/// (`ONEDNN_VERBOSE=1`: `src:f32::blocked:acdb` is channels-last). The layout used to be set
/// after the whole stem, so a one-channel image (NCHW and NHWC at once) kept resnet_small in NCHW
/// up to its head (`aBcd16b`, oneDNN's blocked copy of NCHW, on this machine).
#[test]
fn resnet_small_convolves_in_channels_last() {
    require_fashion_mnist();
    let out = Command::new(archai_bin())
        .current_dir(repo_root())
        .env("ONEDNN_VERBOSE", "1")
        .arg("--plugin-dir")
        .arg(plugin_dir())
        .args(["bench", "train", "--batch", "8", "--threads", "1", "--steps", "1", "--warmup", "0", "--json"])
        .output()
        .expect("run archai");
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let convs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("onednn_verbose") && l.contains(",exec,") && l.contains(",convolution,"))
        .filter(|l| l.contains(",forward_training,"))
        .collect();
    // The stem convolution and two per basic block (the shortcuts' 1x1 convolutions, when
    // oneDNN runs them rather than a matrix product, are checked too).
    let three_by_three = convs.iter().filter(|l| l.contains("kh3")).count();
    assert_eq!(three_by_three, 7, "{}", output_text(&out));
    let field = |line: &str, key: &str| -> String {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("no {key} in {line}")) + key.len()..];
        rest.chars().take_while(|c| c.is_ascii_digit()).collect()
    };
    let mut checked = 0;
    for line in convs {
        if field(line, "_ic") == "1" {
            continue;
        }
        let src = line.split(',').find_map(|f| f.strip_prefix("src:")).unwrap_or_else(|| panic!("no src in {line}"));
        assert!(src.contains(":blocked:acdb:"), "not channels-last: {line}");
        checked += line.contains("kh3") as usize;
    }
    assert_eq!(checked, 6);
}

/// Each DARTS op ending in a batch norm folds a scale into it (`forward_scaled` returns an output)
/// and computes `forward(x) * scale`: output and the gradients of the input, every weight and the
/// scale equal in float64, training and evaluation mode, affine or not (the affine branch scales
/// the norm's weight and shift), both strides, pools with their batch norm. The identity and pools
/// without a batch norm leave the multiplication to the caller.
#[test]
fn each_op_folds_a_scale_into_its_last_batch_norm_exactly() {
    use serde_json::json;
    let reg = registry();
    let mut cases: Vec<(&str, serde_json::Value, bool)> = Vec::new();
    for op in ["sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "skip_connect"] {
        for stride in [1, 2] {
            for affine in [false, true] {
                let folds = op != "skip_connect" || stride == 2;
                cases.push((op, json!({"c_in": 4, "stride": stride, "affine": affine}), folds));
            }
        }
    }
    for op in ["max_pool_3x3", "avg_pool_3x3"] {
        for pool_bn in [false, true] {
            cases.push((op, json!({"c_in": 4, "stride": 2, "pool_bn": pool_bn}), pool_bn));
        }
    }
    cases.push(("relu_conv_bn", json!({"c_in": 4, "c_out": 6, "kernel_size": 1}), true));
    cases.push(("factorized_reduce", json!({"c_in": 4, "c_out": 6, "affine": true}), true));
    let double = tch::Kind::Double;
    for (name, config, folds) in cases {
        for train in [true, false] {
            let what = format!("{name} {config} train {train}");
            let store = ParamStore::new(Device::Cpu);
            let op = reg.create_op(name, &config, &store, "op").unwrap();
            let weights: Vec<tch::Tensor> = store.named_weights().into_iter().map(|(_, w)| w).collect();
            {
                let _g = tch::no_grad_guard();
                for (k, w) in weights.iter().enumerate() {
                    let v = archai_plugin_api::kit::seeded::normal(&w.size(), 40 + k as u64).to_kind(double);
                    w.shallow_clone().set_data(&v);
                }
                for (_, b) in store.named_buffers() {
                    let v = b.to_kind(double);
                    b.shallow_clone().set_data(&v);
                }
            }
            let x = archai_plugin_api::kit::seeded::normal(&[3, 4, 7, 7], 8).to_kind(double).set_requires_grad(true);
            let scale = tch::Tensor::from(0.37f64).set_requires_grad(true);
            let folded = op.forward_scaled(&[&x], &scale, train).unwrap();
            assert_eq!(folded.is_some(), folds, "{what}: folds");
            let Some(folded) = folded else { continue };
            let multiplied = op.forward(&[&x], train).unwrap() * &scale;
            let r = archai_plugin_api::kit::seeded::normal(&folded.size(), 9).to_kind(double);
            let mut wrt: Vec<&tch::Tensor> = vec![&x, &scale];
            wrt.extend(weights.iter());
            let grads = |y: &tch::Tensor| tch::Tensor::run_backward(&[(y * &r).sum(double)], &wrt, false, false);
            let (a, b) = (grads(&folded), grads(&multiplied));
            let rel = |p: &tch::Tensor, q: &tch::Tensor| {
                (p - q).abs().max().double_value(&[]) / p.abs().max().double_value(&[]).max(1e-12)
            };
            assert!(rel(&folded, &multiplied) < 1e-12, "{what}: outputs differ by {}", rel(&folded, &multiplied));
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!(rel(p, q) < 1e-10, "{what}: gradient {i} (0 input, 1 scale) differs by {}", rel(p, q));
            }
        }
    }
}

/// A normal and a reduction search cell over all eight DARTS candidates (`sep_conv_5x5` and
/// `dil_conv_5x5`, factorized reductions, strided pools and convolutions included).
fn two_cell_search_desc() -> ModelDesc {
    let edges = |stride: i64, key: &str| {
        (0..2)
            .map(|i| {
                format!(
                    "          - {{input: {i}, op: mixed, mixer: {{name: softmax, params: {{alpha: alphas.{key}, row: {i}}}}}, \
                     candidates: [none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, \
                     dil_conv_3x3, dil_conv_5x5], params: {{c_in: 4, stride: {stride}, affine: false}}}}\n"
                )
            })
            .collect::<String>()
    };
    let text = format!(
        r#"
name: two_cells
input: {{channels: 1, size: 8}}
num_classes: 3
stem:
  - {{op: conv_bn, params: {{c_in: 1, c_out: 4, kernel_size: 3}}}}
cells:
  - reduction: false
    reduction_prev: false
    c_prev_prev: 4
    c_prev: 4
    c: 4
    affine: false
    nodes:
      - edges:
{}    concat: [2]
  - reduction: true
    reduction_prev: false
    c_prev_prev: 4
    c_prev: 4
    c: 4
    affine: false
    nodes:
      - edges:
{}    concat: [2]
head: {{c_in: 4}}
arch_params:
  - {{name: alphas.normal, shape: [2, 8], init: !normal {{mean: 0.0, std: 1.0}}}}
  - {{name: alphas.reduce, shape: [2, 8], init: !normal {{mean: 0.0, std: 1.0}}}}
"#,
        edges(1, "normal"),
        edges(2, "reduce")
    );
    ModelDesc::from_yaml(&text, "two_cells").unwrap()
}

/// Candidates ending in a batch norm fold the mixer's weight into the norm (`Op::forward_scaled`),
/// so that the weighted output is never a tensor of its own; a captured forward computes each
/// candidate's output and multiplies it, as before. Both give the same logits, weight and alpha
/// gradients, batch-norm statistics and candidate counts, in training and evaluation mode,
/// channels-last or not (in float64, to 1e-10: the same maths, only rounded differently; the
/// alphas' gradients to 1e-6, as the mixers' softmax is float32).
#[test]
fn folding_the_mixers_weights_into_the_candidates_changes_no_result() {
    let reg = registry();
    let desc = two_cell_search_desc();
    let x = archai_plugin_api::kit::seeded::normal(&[4, 1, 8, 8], 5).to_kind(tch::Kind::Double);
    let y = tch::Tensor::from_slice(&[0i64, 1, 2, 1]);
    let rel = |a: &tch::Tensor, b: &tch::Tensor| {
        let scale = a.abs().max().double_value(&[]).max(1e-3);
        (a - b).abs().max().double_value(&[]) / scale
    };
    for channels_last in [false, true] {
        for train in [true, false] {
            let mut runs = Vec::new();
            for capture in [false, true] {
                let (store, net) = fixed_network(&reg, &desc, channels_last);
                {
                    let _g = tch::no_grad_guard();
                    for (_, mut t) in
                        store.named_weights().into_iter().chain(store.named_arch()).chain(store.named_buffers())
                    {
                        let double = t.to_kind(tch::Kind::Double);
                        t.set_data(&double);
                    }
                }
                let logits = if capture {
                    let (logits, captured) = net.forward_capturing(&x, train, "cells.").unwrap();
                    assert_eq!(captured.len(), 28, "7 computed candidates on 4 edges");
                    logits
                } else {
                    net.forward(&x, train).unwrap()
                };
                logits.cross_entropy_for_logits(&y).backward();
                let grads = |named: Vec<(String, tch::Tensor)>| -> Vec<(String, tch::Tensor)> {
                    named.into_iter().map(|(n, w)| (n, w.grad().contiguous())).collect()
                };
                let weights = grads(store.named_weights());
                let alphas = grads(store.named_arch());
                runs.push((logits.detach(), weights, alphas, store.named_buffers(), net.candidate_forwards()));
            }
            let what = format!("channels_last {channels_last}, train {train}");
            let (folded, captured) = (&runs[0], &runs[1]);
            assert!(rel(&folded.0, &captured.0) < 1e-10, "{what}: logits differ by {}", rel(&folded.0, &captured.0));
            for ((name, a), (_, b)) in folded.1.iter().zip(&captured.1) {
                assert!(a.defined() && b.defined(), "{what}: {name} got no gradient");
                assert!(rel(a, b) < 1e-10, "{what}: {name}: gradients differ by {} of their scale", rel(a, b));
            }
            // The mixers' weights are a float32 softmax, so the alphas' gradients are float32.
            for ((name, a), (_, b)) in folded.2.iter().zip(&captured.2) {
                assert!(a.defined() && b.defined(), "{what}: {name} got no gradient");
                assert!(rel(a, b) < 1e-6, "{what}: {name}: gradients differ by {} of their scale", rel(a, b));
            }
            assert_eq!(folded.2.len(), 2);
            for ((name, a), (_, b)) in folded.3.iter().zip(&captured.3) {
                assert!(rel(a, b) < 1e-10, "{what}: {name}: statistics differ");
            }
            assert_eq!(folded.4, captured.4, "{what}: candidate forwards");
            assert_eq!(folded.4, 28);
        }
    }
}

/// Gradients of the evaluation network (DARTS-V2 cells, 8 cells, C = 8, one-channel 28x28
/// input, train mode) in `kind`, channels-last or NCHW, with weights from `weights`.
fn eval_net_gradients(
    weights: impl Fn(&str, &[i64], u64) -> tch::Tensor,
    kind: tch::Kind,
    channels_last: bool,
) -> Vec<(String, tch::Tensor)> {
    let reg = registry();
    let desc = archai_model_desc::DARTS_V2
        .build("v2", 8, 8, false, archai_model_desc::InputDesc { channels: 1, size: 28 }, 10)
        .unwrap();
    let (store, net) = fixed_network(&reg, &desc, channels_last);
    {
        let _g = tch::no_grad_guard();
        for (k, (name, mut t)) in store.named_weights().into_iter().enumerate() {
            let w = weights(&name, &t.size(), 100 + k as u64).to_kind(kind);
            t.set_data(&w);
        }
        for (_, mut t) in store.named_buffers() {
            let b = t.to_kind(kind);
            t.set_data(&b);
        }
    }
    let x = archai_plugin_api::kit::seeded::normal(&[4, 1, 28, 28], 9).to_kind(kind);
    let logits = net.forward(&x, true).unwrap();
    logits.cross_entropy_for_logits(&tch::Tensor::from_slice(&[1i64, 3, 5, 7])).backward();
    let mut grads = vec![("logits".to_string(), logits.detach().to_kind(tch::Kind::Double))];
    grads.extend(store.named_weights().into_iter().map(|(n, w)| (n, w.grad().to_kind(tch::Kind::Double))));
    grads
}

/// The largest difference between two gradient lists relative to each tensor's scale, and where.
fn worst_relative_difference(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> (f64, String) {
    a.iter()
        .zip(b)
        .map(|((name, x), (_, y))| {
            let scale = x.abs().max().double_value(&[]).max(1e-12);
            ((x - y).abs().max().double_value(&[]) / scale, name.clone())
        })
        .fold((0.0, String::new()), |w, d| if d.0 > w.0 { d } else { w })
}

/// Channels-last computes the same network as NCHW, including a one-channel input (whose stem
/// output the network converts: libtorch would otherwise run everything in NCHW).
///
/// In float64 the two layouts agree to rounding (1e-10) for any weights. In float32 each layout
/// is compared with the float64 result instead of with the other: a train-mode batch norm's bias
/// gradient, upstream of more batch norms, nearly cancels, so its float32 error relative to its
/// own size depends on the kernels' summation order and reached 3% in either layout with
/// N(0, 0.25) weights (measured 2026-12-01; 1.4% in NCHW at another seed). With weights of a
/// trained network's size (batch-norm scales near 1, convolutions scaled by fan-in) both stay
/// within 1e-4 (measured: at most 7.3e-5 over six seeds).
#[test]
fn the_eval_network_is_the_same_in_channels_last_and_nchw() {
    let wide = |_: &str, shape: &[i64], seed: u64| archai_plugin_api::kit::seeded::normal(shape, seed) * 0.5;
    let f64_nchw = eval_net_gradients(wide, tch::Kind::Double, false);
    let f64_cl = eval_net_gradients(wide, tch::Kind::Double, true);
    let (d, at) = worst_relative_difference(&f64_nchw, &f64_cl);
    assert!(d < 1e-10, "float64: channels-last differs from NCHW by {d:e} of the scale of {at}");

    let trained_size = |name: &str, shape: &[i64], seed: u64| {
        let z = archai_plugin_api::kit::seeded::normal(shape, seed);
        if name.ends_with("bn.weight") {
            z * 0.1 + 1.0
        } else if name.ends_with("bn.bias") {
            z * 0.1
        } else {
            let fan_in: i64 = shape[1..].iter().product();
            z / (fan_in.max(1) as f64).sqrt()
        }
    };
    let reference = eval_net_gradients(trained_size, tch::Kind::Double, false);
    for channels_last in [false, true] {
        let (d, at) =
            worst_relative_difference(&reference, &eval_net_gradients(trained_size, tch::Kind::Float, channels_last));
        assert!(d < 1e-4, "float32, channels_last {channels_last}: {at} differs from float64 by {d:e} of its scale");
    }
}

/// A latest checkpoint damaged on disk (bytes flipped after a kill) costs one epoch, not the
/// run: the resume says what was wrong, continues from the previous checkpoint, and ends with the
/// uninterrupted run's metrics and weights.
#[test]
fn a_corrupt_latest_checkpoint_resumes_from_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["nas.eval.trainer.epochs=4", "nas.eval.trainer.max_batches=20", "nas.eval.trainer.max_eval_batches=2"];
    let (whole, cut, stderr) = whole_and_resumed_after(
        tmp.path(),
        "confs/algos/darts.yaml",
        &sets,
        "eval/checkpoint.prev.pt",
        |run| archai_runlog::RunRecord::read(&run.join("log.yaml")).unwrap().eval.and_then(|e| e.summary).is_none(),
        |run| {
            let path = run.join("eval/checkpoint.pt");
            let mut bytes = std::fs::read(&path).unwrap();
            let mid = bytes.len() / 2;
            for b in &mut bytes[mid..mid + 64] {
                *b ^= 0x5a;
            }
            std::fs::write(&path, bytes).unwrap();
        },
    );
    assert!(stderr.contains("is corrupt") && stderr.contains("resuming from the previous checkpoint"), "{stderr}");
    let summary = |run: &std::path::Path| {
        let r = archai_runlog::RunRecord::read(&run.join("log.yaml")).unwrap();
        let e = r.eval.unwrap();
        (e.summary.unwrap().test, e.epochs.values().map(|ep| ep.train.as_ref().unwrap().loss).collect::<Vec<_>>())
    };
    assert_eq!(summary(&cut), summary(&whole));
    // Both checkpoints stay: the resumed run rewrote them, and the latest equals the whole run's.
    assert!(cut.join("eval/checkpoint.prev.pt").is_file());
    let weights = |run: &std::path::Path| archai::train::read_model_tensors(&run.join("eval/checkpoint.pt")).unwrap();
    for ((n, a), (_, b)) in weights(&whole).iter().zip(weights(&cut).iter()) {
        assert!(a.equal(b), "{n} differs from the uninterrupted run's");
    }
}

/// The rectangles (x, y, width, height) of one rendered panel of a cells picture.
fn panel_rects(panel: &str) -> Vec<(f64, f64, f64, f64)> {
    panel
        .split("<rect ")
        .skip(1)
        .map(|r| {
            let attr = |name: &str| -> f64 {
                r.split_once(&format!("{name}=\"")).and_then(|(_, v)| v.split('"').next()?.parse().ok()).unwrap()
            };
            (attr("x"), attr("y"), attr("width"), attr("height"))
        })
        .collect()
}

/// The searched cells as a user sees them: every op a box of its own (no label shared by
/// several lines), no box over another, both panels drawn by a browser.
#[test]
fn the_cells_picture_has_one_box_per_op_none_overlapping_and_renders() {
    let input = archai_model_desc::InputDesc { channels: 3, size: 32 };
    let desc = archai_model_desc::DARTS_V2.build("v2", 8, 16, false, input, 10).unwrap();
    let svg = archai::experiment::cells_svg(&desc);
    // The two panels are nested <svg> documents after the outer one.
    let panels: Vec<&str> = svg.split("<svg x=").skip(1).collect();
    assert_eq!(panels.len(), 2, "{svg}");
    for panel in &panels {
        let rects = panel_rects(panel);
        // 2 inputs, 4 nodes, 8 ops, the output.
        assert_eq!(rects.len(), 15, "{panel}");
        for (i, a) in rects.iter().enumerate() {
            for b in &rects[i + 1..] {
                let apart = a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
                assert!(apart, "boxes {a:?} and {b:?} overlap");
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cells.svg");
    std::fs::write(&file, &svg).unwrap();
    let shot = Screenshot::of(&file, "900,1600");
    let half = shot.height / 2;
    let (top, bottom) = (shot.rows(0..half), shot.rows(half..shot.height));
    // Lines, arrows and labels in the top (normal) and the bottom (reduction) half.
    let dark = |px: &[[u8; 3]]| px.iter().filter(|p| p.iter().all(|&c| c < 100)).count();
    assert!(dark(top) > 2000 && dark(bottom) > 2000, "a panel is missing: {} / {}", dark(top), dark(bottom));
    // The input boxes' fill (lightblue) is drawn in both panels.
    let blue = |px: &[[u8; 3]]| px.iter().filter(|p| **p == [173, 216, 230]).count();
    assert!(blue(top) > 500 && blue(bottom) > 500, "{} / {}", blue(top), blue(bottom));
}

/// `trainer.recompute_cells` and `trainer.recompute_ops`: a network that keeps only its cells'
/// inputs and recomputes each cell in the backward pass, one whose ops recompute their cheap parts
/// (pooling, norms, pointwise convolutions), and one doing both, give the logits, weight gradients
/// (through `backward()`), architecture gradients (through `grad(loss, alphas)`, what
/// architecture steps use), batch-norm statistics and candidate-forward counts of the plain
/// network. Search cells sharing one alpha tensor over three cells, and the evaluation network
/// (DARTS-V2 cells) with its auxiliary head.
#[test]
fn recomputed_cells_and_ops_give_the_gradients_statistics_and_counts_of_plain_cells() {
    let reg = registry();
    let mut search = one_cell_search_desc();
    search.cells = vec![search.cells[0].clone(); 3];
    let eval = archai_model_desc::DARTS_V2
        .build("v2", 6, 8, true, archai_model_desc::InputDesc { channels: 1, size: 28 }, 3)
        .unwrap();
    let y = tch::Tensor::from_slice(&[0i64, 1, 2, 1]);
    let rel = |a: &tch::Tensor, b: &tch::Tensor| {
        let scale = a.abs().max().double_value(&[]).max(1e-3);
        (a - b).abs().max().double_value(&[]) / scale
    };
    for (what, desc, size) in [("search", &search, 8), ("eval", &eval, 28)] {
        let x = archai_plugin_api::kit::seeded::normal(&[4, 1, size, size], 11);
        let mut runs = Vec::new();
        let modes = [(false, false), (true, false), (false, true), (true, true)];
        for (cells, ops) in modes {
            let (store, mut net) = fixed_network(&reg, desc, true);
            net.recompute_cells = cells;
            store.set_recompute_ops(ops);
            let (logits, aux) = net.forward_with_aux(&x, true, desc.aux.is_some()).unwrap();
            let mut loss = logits.cross_entropy_for_logits(&y);
            if let Some(aux) = aux {
                loss += aux.cross_entropy_for_logits(&y) * 0.4;
            }
            let alphas: Vec<tch::Tensor> = store.named_arch().into_iter().map(|(_, a)| a).collect();
            let arch_grads = if alphas.is_empty() {
                Vec::new()
            } else {
                let (logits, _) = net.forward_with_aux(&x, true, false).unwrap();
                tch::Tensor::run_backward(&[&logits.cross_entropy_for_logits(&y)], &alphas, false, false)
            };
            loss.backward();
            let weights: Vec<(String, tch::Tensor)> =
                store.named_weights().into_iter().map(|(n, w)| (n, w.grad().contiguous())).collect();
            let buffers: Vec<(String, tch::Tensor)> = store.named_buffers();
            runs.push((logits.detach(), weights, arch_grads, buffers, net.candidate_forwards()));
        }
        let plain = &runs[0];
        for (recomputed, (cells, ops)) in runs.iter().zip(modes).skip(1) {
            let what = format!("{what}, recompute_cells {cells}, recompute_ops {ops}");
            assert!(rel(&plain.0, &recomputed.0) < 1e-6, "{what}: logits differ");
            assert!(!plain.1.is_empty());
            for ((name, a), (_, b)) in plain.1.iter().zip(&recomputed.1) {
                assert!(a.defined() && b.defined(), "{what}: {name} got no gradient");
                assert!(rel(a, b) < 1e-5, "{what}: {name}: gradients differ by {} of their scale", rel(a, b));
            }
            assert_eq!(plain.2.len(), if what.starts_with("search") { 1 } else { 0 });
            for (a, b) in plain.2.iter().zip(&recomputed.2) {
                assert!(rel(a, b) < 1e-5, "{what}: alpha gradients differ by {}", rel(a, b));
            }
            assert!(!plain.3.is_empty(), "{what}: batch norm keeps statistics");
            for ((name, a), (_, b)) in plain.3.iter().zip(&recomputed.3) {
                assert!(rel(a, b) < 1e-6, "{what}: {name}: the recomputation moved the statistics again");
            }
            assert_eq!(plain.4, recomputed.4, "{what}: candidate forwards counted twice");
        }
    }
}
