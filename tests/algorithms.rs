//! The search mechanics that plugin-api 1.0 moved into plugins, checked through the real host
//! and the real plugins: GDAS runs one candidate per edge, PC-DARTS' candidates see C/K channels
//! and its betas learn, warm-up gates the architecture step, single-level algorithms train their
//! alphas on the training loss without a validation split, and bad descriptions are named.
mod common;

use archai::model::Network;
use archai::params::ParamStore;
use archai::plugins::{plugin_result, PluginAlgorithm, PluginRegistry};
use archai::runlog::RunLog;
use archai::train::{SplitData, Trainer, TrainerConfig};
use archai_model_desc::ModelDesc;
use archai_plugin_api::{ArchTraining, ComponentKind, SearchContext};
use common::*;
use serde_json::json;
use tch::{Device, Kind, Tensor};

fn registry() -> PluginRegistry {
    PluginRegistry::scan(&[plugin_dir()]).unwrap()
}

/// A 3-cell, 2-node supernet on 1x16x16 inputs with 4 classes.
fn small_macro(channels: i64) -> serde_json::Value {
    json!({"layers": 3, "nodes": 2, "channels": channels, "stem_multiplier": 2})
}

const CTX: SearchContext = SearchContext {
    channels: 1,
    image_size: 16,
    num_classes: 4,
    seed: 0,
    epochs: 2,
    steps_per_epoch: 1,
    val_batch_size: 0,
};

/// The algorithm and the search description it proposes.
fn search_space(reg: &PluginRegistry, name: &str, config: serde_json::Value) -> (PluginAlgorithm, ModelDesc) {
    let mut algo = reg.create_algorithm(name, &config).unwrap();
    let space = plugin_result(algo.inner.search_space(CTX), &algo.plugin, ComponentKind::Algorithm, name).unwrap();
    algo.arch_training = space.arch_training;
    let desc = ModelDesc::from_yaml(space.model_desc_yaml.as_str(), name).unwrap();
    (algo, desc)
}

/// Fixed weights and alphas, so nothing below depends on libtorch's global RNG for its values.
fn compile(reg: &PluginRegistry, desc: &ModelDesc) -> (ParamStore, Network) {
    let store = ParamStore::new(Device::Cpu);
    let net = Network::compile(desc, reg, &store).unwrap();
    set_fixed_init(&store);
    let _guard = tch::no_grad_guard();
    for (i, (_, mut a)) in store.named_arch().into_iter().enumerate() {
        if a.requires_grad() {
            let n = a.numel() as i64;
            let v = Tensor::arange(n, (Kind::Float, Device::Cpu)).g_mul_scalar(0.013 * (i + 1) as f64).sin();
            a.copy_(&v.view(a.size().as_slice()));
        }
    }
    (store, net)
}

fn batch(n: i64) -> (Tensor, Tensor) {
    let x = Tensor::arange(n * 256, (Kind::Float, Device::Cpu)).g_mul_scalar(0.37).sin().view([n, 1, 16, 16]);
    let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(4);
    (x, y)
}

fn arch(store: &ParamStore, name: &str) -> Tensor {
    store.named_arch().into_iter().find(|(n, _)| n == name).map(|(_, t)| t).unwrap_or_else(|| panic!("no {name}"))
}

fn loss_backward(net: &Network) {
    let (x, y) = batch(4);
    let logits = net.forward(&x, true).unwrap();
    logits.cross_entropy_for_logits(&y).backward();
}

#[test]
fn gdas_computes_one_candidate_per_edge_and_every_alpha_of_the_edge_learns() {
    let reg = registry();
    let (_, desc) = search_space(&reg, "gdas", json!({"macro": small_macro(4)}));
    let (store, net) = compile(&reg, &desc);
    let edges = net.mixed_edges() as u64;
    assert_eq!(edges, 3 * 5);
    let before = net.candidate_forwards();
    loss_backward(&net);
    assert_eq!(net.candidate_forwards() - before, edges, "one sampled candidate per mixed edge per forward");
    // Straight-through: the sampled candidate's weight depends on every alpha of its row.
    for name in ["alphas.normal", "alphas.reduce"] {
        let g = arch(&store, name).grad();
        let zeros = g.eq(0.0).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(zeros, 0, "{name}: {zeros} alpha entries got no gradient:\n{g}");
    }
    assert!(!arch(&store, "gdas.tau").requires_grad(), "tau is changed by the algorithm, not by autograd");
    // Evaluation runs the argmax candidate only.
    let before = net.candidate_forwards();
    let _guard = tch::no_grad_guard();
    let _ = net.forward(&batch(2).0, false).unwrap();
    assert_eq!(net.candidate_forwards() - before, edges);
}

/// The reference samples once per forward and cell type: every cell of a type runs the same
/// candidate on an edge. Here the edges of one alpha row read one row of a shared noise table.
#[test]
fn gdas_cells_of_a_type_share_one_draw() {
    let reg = registry();
    let (_, desc) = search_space(&reg, "gdas", json!({"macro": small_macro(4)}));
    let (store, net) = compile(&reg, &desc);
    let candidates = &desc.cells[0].nodes[0].edges[0].candidates;
    let col = candidates.iter().position(|c| c == "sep_conv_3x3").unwrap() as i64;
    // Noise that outweighs every alpha picks sep_conv_3x3 on every edge of every cell.
    for name in ["gdas.gumbel.alphas.normal", "gdas.gumbel.alphas.reduce"] {
        let mut g = arch(&store, name);
        let _guard = tch::no_grad_guard();
        let _ = g.fill_(0.0);
        let _ = g.narrow(1, col, 1).fill_(100.0);
    }
    loss_backward(&net);
    let mut sampled = 0;
    for (name, w) in store.named_weights().iter().filter(|(n, _)| n.starts_with("cells.") && n.contains(".e")) {
        let got = w.grad().defined() && w.grad().ne(0.0).any().int64_value(&[]) == 1;
        let want = name.contains(".sep_conv_3x3.");
        assert_eq!(got, want, "{name}: gradient {got}, sampled {want}");
        sampled += want as usize;
    }
    assert!(sampled > 0);
}

#[test]
fn darts_computes_every_candidate_but_none() {
    let reg = registry();
    let (_, desc) = search_space(&reg, "darts", json!({"macro": small_macro(4)}));
    let (_, net) = compile(&reg, &desc);
    let before = net.candidate_forwards();
    let _guard = tch::no_grad_guard();
    let _ = net.forward(&batch(2).0, true).unwrap();
    assert_eq!(net.candidate_forwards() - before, 7 * net.mixed_edges() as u64);
}

#[test]
fn pc_darts_candidates_see_c_over_k_channels_and_beta_learns() {
    let reg = registry();
    let (_, desc) = search_space(&reg, "pc-darts", json!({"macro": small_macro(8), "k": 4}));
    let (store, net) = compile(&reg, &desc);
    // Cell 0 has C = 8: its candidates are built for 8 / 4 = 2 channels.
    let dw = store.named_weights().into_iter().find(|(n, _)| n == "cells.0.n2.e0.sep_conv_3x3.op1.dw.weight");
    assert_eq!(dw.expect("the candidate's depthwise weight").1.size(), vec![2, 1, 3, 3]);
    for (n, t) in store.named_weights().iter().filter(|(n, _)| n.starts_with("cells.0.n2.e0.")) {
        assert!(t.size().iter().take(2).all(|&d| d <= 2), "{n} is not built for C/K channels: {:?}", t.size());
    }
    loss_backward(&net);
    for name in ["betas.normal", "betas.reduce", "alphas.normal"] {
        let g = arch(&store, name).grad();
        assert!(g.defined() && g.ne(0.0).all().int64_value(&[]) == 1, "{name} gradient: {g}");
    }

    // The mixer on its own: C channels in, C channels out, halved by a stride-2 edge.
    let store = ParamStore::new(Device::Cpu);
    let _ =
        store.create("alphas.t", &[1, 8], archai_plugin_api::Init::Zeros, archai_plugin_api::ParamRole::Arch).unwrap();
    let taps = std::sync::Arc::new(archai::plugins::CandidateTaps::default());
    let x = Tensor::arange(2 * 8 * 36, (Kind::Float, Device::Cpu)).g_mul_scalar(0.1).sin().view([2, 8, 6, 6]);
    for (stride, side) in [(1, 6), (2, 3)] {
        let config = json!({
            "candidates": archai_model_desc::DARTS_PRIMITIVES,
            "candidate_params": {"c_in": 8, "stride": stride, "affine": false, "pool_bn": true},
            "params": {"alpha": "alphas.t", "row": 0, "k": 4},
        });
        let mixer = reg.create_mixer("partial-channel", &config, &store, &format!("m{stride}"), &taps).unwrap();
        assert_eq!(mixer.forward(&[&x], true).unwrap().size(), vec![2, 8, side, side]);
    }
}

/// Named tensors (architecture parameters).
type Named = Vec<(String, Tensor)>;

/// Trains `algo` on synthetic data for `epochs` epochs of 2 steps; returns the architecture
/// parameters before and after, or the trainer's error.
fn fit(
    reg: &PluginRegistry,
    algo: &mut PluginAlgorithm,
    desc: &ModelDesc,
    epochs: usize,
    with_val: bool,
) -> Result<(Named, Named), String> {
    let (store, mut net) = compile(reg, desc);
    let snapshot = |s: &ParamStore| s.named_arch().into_iter().map(|(n, t)| (n, t.detach().copy())).collect::<Vec<_>>();
    let before = snapshot(&store);
    let n = 40;
    let (x, y) = batch(n as i64);
    let pixels: Vec<u8> =
        Vec::<f32>::try_from(x.flatten(0, -1)).unwrap().iter().map(|v| ((v + 1.0) * 127.0) as u8).collect();
    let buffer = archai_data::SampleBuffer::new(pixels, Vec::<i64>::try_from(y).unwrap(), [1, 16, 16]).unwrap();
    let split =
        |r: std::ops::Range<usize>| SplitData { buffer: buffer.clone(), indices: r.collect(), transforms: vec![] };
    let dir = tempfile::tempdir().unwrap();
    let mut log = RunLog::open(dir.path()).unwrap();
    let mut trainer = Trainer {
        config: TrainerConfig { epochs, max_batches: Some(2), ..TrainerConfig::sgd(8, 0.05, 0.0, None) },
        phase: "search".into(),
        seed: 3,
        device: Device::Cpu,
        checkpoint: dir.path().join("ck.pt"),
        events: &mut log,
        strategy: archai::train::Strategy::Single,
    };
    let val = with_val.then(|| split(24..40));
    trainer.fit(&mut net, &store, &split(0..24), val.as_ref(), Some(algo), false).map_err(|e| e.to_string())?;
    Ok((before, snapshot(&store)))
}

fn changed(before: &[(String, Tensor)], after: &[(String, Tensor)], name: &str) -> bool {
    let get = |v: &[(String, Tensor)]| v.iter().find(|(n, _)| n == name).unwrap().1.shallow_clone();
    !get(before).equal(&get(after))
}

#[test]
fn pc_darts_takes_no_architecture_step_before_its_warmup_epoch() {
    let reg = registry();
    let config = |warmup: u32| json!({"macro": small_macro(8), "warmup_epochs": warmup});
    let (mut algo, desc) = search_space(&reg, "pc-darts", config(1));
    let (before, after) = fit(&reg, &mut algo, &desc, 1, true).unwrap();
    for name in ["alphas.normal", "alphas.reduce", "betas.normal", "betas.reduce"] {
        assert!(!changed(&before, &after, name), "{name} moved during the warm-up epoch");
    }
    // Negative control: without the warm-up the same epoch moves them.
    let (mut algo, desc) = search_space(&reg, "pc-darts", config(0));
    let (before, after) = fit(&reg, &mut algo, &desc, 1, true).unwrap();
    for name in ["alphas.normal", "betas.normal"] {
        assert!(changed(&before, &after, name), "{name} did not move after the warm-up");
    }
}

#[test]
fn snas_trains_its_alphas_on_the_training_loss_without_a_validation_split() {
    let reg = registry();
    let (mut algo, desc) = search_space(&reg, "snas", json!({"macro": small_macro(4)}));
    assert_eq!(algo.arch_training, ArchTraining::TrainLoss);
    let (before, after) = fit(&reg, &mut algo, &desc, 1, false).unwrap();
    // Archai's `gs` left them at their initial values: no gradient reached them.
    assert!(changed(&before, &after, "alphas.normal") && changed(&before, &after, "alphas.reduce"));
    assert!(!changed(&before, &after, "snas.tau"), "tau at epoch 0 is tau_init");
    // Negative control: without the host filling the alpha gradients, the algorithm refuses.
    let (mut algo, desc) = search_space(&reg, "snas", json!({"macro": small_macro(4)}));
    algo.arch_training = ArchTraining::Manual;
    let e = fit(&reg, &mut algo, &desc, 1, false).unwrap_err();
    assert!(e.contains("no architecture gradient"), "{e}");
}

#[test]
fn didarts_needs_no_validation_split_and_bilevel_algorithms_do() {
    let reg = registry();
    let (mut algo, desc) = search_space(&reg, "didarts", json!({"macro": small_macro(4)}));
    let (before, after) = fit(&reg, &mut algo, &desc, 1, false).unwrap();
    assert!(changed(&before, &after, "alphas.normal"));
    let (mut algo, desc) = search_space(&reg, "gdas", json!({"macro": small_macro(4)}));
    let e = fit(&reg, &mut algo, &desc, 1, false).unwrap_err();
    assert!(e.contains("gdas") && e.contains("val_ratio"), "{e}");
}

#[test]
fn an_unknown_mixer_lists_the_available_ones_nearest_first() {
    let reg = registry();
    let (_, mut desc) = search_space(&reg, "darts", json!({"macro": small_macro(4)}));
    desc.cells[0].nodes[0].edges[0].mixer.as_mut().unwrap().name = "sofmax".into();
    let store = ParamStore::new(Device::Cpu);
    let e = Network::compile(&desc, &reg, &store).err().unwrap().to_string();
    assert!(e.contains("no mixer named `sofmax`") && e.contains("did you mean `softmax`"), "{e}");
    assert!(e.contains("gdas") && e.contains("partial-channel"), "the available mixers are listed: {e}");
    let e = reg.create_algorithm("gdsa", &json!({})).err().unwrap().to_string();
    assert!(e.contains("did you mean `gdas`"), "{e}");
}

#[test]
fn an_architecture_parameter_that_does_not_fit_names_plugin_and_parameter() {
    let reg = registry();
    let (_, mut desc) = search_space(&reg, "darts", json!({"macro": small_macro(4)}));
    desc.arch_params[0].shape = vec![3, 8];
    let e = Network::compile(&desc, &reg, &ParamStore::new(Device::Cpu)).err().unwrap().to_string();
    assert!(
        e.contains("libdarts.so")
            && e.contains("mixer `softmax`")
            && e.contains("alphas.normal")
            && e.contains("[3, 8]"),
        "{e}"
    );
    desc.arch_params.remove(0);
    let e = Network::compile(&desc, &reg, &ParamStore::new(Device::Cpu)).err().unwrap().to_string();
    assert!(e.contains("`alphas.normal` is not declared") && e.contains("alphas.reduce"), "{e}");
}

/// A host service that panics (here: a 2-D input reaching the network's channels-last permute)
/// returns an error to its caller instead of unwinding into plugin code, which would abort the
/// process; labels out of range are an error too.
#[test]
fn a_failing_host_service_returns_an_error_to_the_plugin() {
    use abi_stable::std_types::RResult;
    use archai_plugin_api::{ModelServices, TensorRef};
    let reg = registry();
    let (_, desc) = search_space(&reg, "darts", json!({"macro": small_macro(4)}));
    let (store, mut net) = compile(&reg, &desc);
    net.channels_last = true;
    let mut services = archai::train::Services::trained(&net, &store, archai::train::precision::Precision::Fp32);
    let flat = Tensor::zeros([2, 256], (Kind::Float, Device::Cpu));
    match services.logits(TensorRef::new(&flat), true) {
        RResult::RErr(e) => assert!(e.contains("host service `logits` failed"), "{e}"),
        RResult::ROk(_) => panic!("a 2-D input cannot be run"),
    }
    let (x, _) = batch(2);
    let bad_labels = Tensor::from_slice(&[0i64, 99]);
    match services.loss(TensorRef::new(&x), TensorRef::new(&bad_labels)) {
        RResult::RErr(e) => assert!(e.contains("99") || e.contains("out of bounds") || e.contains("Target"), "{e}"),
        RResult::ROk(_) => panic!("label 99 of 4 classes"),
    }
}
