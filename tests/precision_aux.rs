//! Mixed precision (bf16 autocast, fp16 with dynamic loss scaling) and the auxiliary head, with
//! the real op plugins and the real trainer.
mod common;

use archai::model::Network;
use archai::params::ParamStore;
use archai::plugins::PluginRegistry;
use archai::runlog::RunLog;
use archai::train::optim::Optimizer;
use archai::train::precision::{LossScaleConfig, LossScaler, Precision};
use archai::train::{weight_step, SplitData, Trainer, TrainerConfig};
use archai_data::SampleBuffer;
use archai_model_desc::{InputDesc, ModelDesc, DARTS_V2};
use archai_plugin_api::kit::seeded;
use common::*;
use tch::{Device, Kind, Tensor};

fn registry() -> PluginRegistry {
    PluginRegistry::scan(&[plugin_dir()]).unwrap()
}

/// DARTS-V2 cells, 3 layers, C=4, on 1x28x28: the auxiliary head reads cell 2's 7x7 maps.
fn small_darts(auxiliary: bool) -> ModelDesc {
    DARTS_V2.build("v2_small", 3, 4, auxiliary, InputDesc { channels: 1, size: 28 }, 10).unwrap()
}

fn batch(seed: i64) -> (Tensor, Tensor) {
    let seed = 2 * seed as u64;
    (seeded::normal(&[8, 1, 28, 28], seed), seeded::randint(10, &[8], seed + 1))
}

fn aux_weights(store: &ParamStore) -> Vec<Tensor> {
    store.named_weights().into_iter().filter(|(n, _)| n.starts_with("aux.")).map(|(_, t)| t.copy()).collect()
}

#[test]
fn the_aux_head_runs_and_learns_only_with_aux_weight() {
    let reg = registry();
    let desc = small_darts(true);
    assert_eq!(desc.aux.as_ref().unwrap().after_cell, 2);
    let back = ModelDesc::from_yaml(&desc.to_yaml(), "round trip").unwrap();
    assert_eq!(back, desc);
    let (x, y) = batch(1);
    for aux_weight in [0.0, 0.4] {
        let store = ParamStore::new(Device::Cpu);
        let net = Network::compile(&desc, &reg, &store).unwrap();
        let (logits, aux) = net.forward_with_aux(&x, true, true).unwrap();
        assert_eq!(aux.expect("asked for aux logits").size(), logits.size());
        assert!(net.forward_with_aux(&x, true, false).unwrap().1.is_none());
        let before = aux_weights(&store);
        assert_eq!(before.len(), 8, "conv1, bn1 (2), conv2, bn2 (2), linear (2)");
        let c = TrainerConfig { aux_weight, ..TrainerConfig::sgd(8, 0.1, 0.0, None) };
        let mut opt = Optimizer::new(c.optimizer.clone(), store.named_weights());
        let out = weight_step(&net, &store, &mut opt, &x, &y, &c, 0.1, None).unwrap();
        assert_eq!(out.aux_loss.is_some(), aux_weight > 0.0);
        assert!(out.objective(aux_weight) > out.loss || aux_weight == 0.0);
        let moved = before.iter().zip(aux_weights(&store)).any(|(a, b)| (a - b).abs().max().double_value(&[]) > 0.0);
        assert_eq!(moved, aux_weight > 0.0, "aux_weight {aux_weight}");
    }
}

fn toy_split() -> SplitData {
    let n = 16;
    let images: Vec<u8> = (0..n * 28 * 28).map(|i| ((i * 31) % 253) as u8).collect();
    let labels: Vec<i64> = (0..n).map(|i| (i % 10) as i64).collect();
    SplitData {
        buffer: SampleBuffer::new(images, labels, [1, 28, 28]).unwrap(),
        indices: (0..n).collect(),
        transforms: vec![],
    }
}

#[test]
fn aux_weight_without_an_aux_head_is_a_config_error() {
    let store = ParamStore::new(Device::Cpu);
    let mut net = Network::compile(&small_darts(false), &registry(), &store).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut log = RunLog::open(dir.path()).unwrap();
    let mut trainer = Trainer {
        config: TrainerConfig { aux_weight: 0.4, ..TrainerConfig::sgd(8, 0.1, 0.0, None) },
        phase: "eval".into(),
        seed: 1,
        device: Device::Cpu,
        checkpoint: dir.path().join("ck.pt"),
        events: &mut log,
        strategy: archai::train::Strategy::Single,
    };
    let e = trainer.fit(&mut net, &store, &toy_split(), None, None, false).unwrap_err().to_string();
    assert!(
        e.contains("aux_weight") && e.contains("auxiliary head") && e.contains("finalizer config auxiliary: true"),
        "{e}"
    );
}

/// Trains `small_darts(auxiliary)` for `epochs` epochs of one batch with its checkpoint at
/// `dir/ck.pt`, resuming from it when `resume`, validating after each epoch when `validate`.
fn fit_with_checkpoint(
    reg: &PluginRegistry,
    dir: &std::path::Path,
    auxiliary: bool,
    epochs: usize,
    resume: bool,
    validate: bool,
) -> Result<archai::train::FitReport, archai::train::TrainError> {
    let store = ParamStore::new(Device::Cpu);
    let mut net = Network::compile(&small_darts(auxiliary), reg, &store).unwrap();
    let mut log = RunLog::open(dir).unwrap();
    let mut trainer = Trainer {
        config: TrainerConfig { epochs, max_batches: Some(1), ..TrainerConfig::sgd(8, 0.1, 0.0, None) },
        phase: "eval".into(),
        seed: 1,
        device: Device::Cpu,
        checkpoint: dir.join("ck.pt"),
        events: &mut log,
        strategy: archai::train::Strategy::Single,
    };
    let val = validate.then(toy_split);
    trainer.fit(&mut net, &store, &toy_split(), val.as_ref(), None, resume)
}

/// A checkpoint whose bytes changed on disk never loads silently: with an intact previous
/// checkpoint the phase resumes from that one; without one it is refused with what to do.
#[test]
fn a_corrupted_checkpoint_is_refused() {
    let reg = registry();
    let dir = tempfile::tempdir().unwrap();
    let fit = |epochs: usize, resume: bool| fit_with_checkpoint(&reg, dir.path(), false, epochs, resume, false);
    let path = dir.path().join("ck.pt");
    let prev = dir.path().join("ck.prev.pt");
    // Flip one bit in the middle of the file: inside the stored weights, not the zip structure.
    let corrupt = || {
        let mut bad = std::fs::read(&path).unwrap();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
    };
    fit(1, false).unwrap();
    fit(2, true).expect("an intact checkpoint resumes");
    assert!(prev.is_file(), "the previous checkpoint is kept");
    corrupt();
    fit(3, true).expect("a corrupt latest checkpoint falls back to the previous one");
    // Cut short, as a full disk or a copy that stopped would leave it.
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    fit(4, true).expect("a truncated latest checkpoint falls back to the previous one");
    corrupt();
    std::fs::remove_file(&prev).unwrap();
    let e = fit(5, true).unwrap_err().to_string();
    assert!(e.contains("ck.pt") && e.contains("is corrupt") && e.contains("delete it"), "{e}");
}

/// Checkpoints are written to a temporary file and renamed: a save that fails (here the
/// temporary path is taken by a directory) leaves the last checkpoint whole, and a successful
/// one leaves no temporary file behind.
#[test]
fn a_checkpoint_that_cannot_be_written_leaves_the_last_one_intact() {
    let reg = registry();
    let dir = tempfile::tempdir().unwrap();
    let fit = |epochs: usize, resume: bool| fit_with_checkpoint(&reg, dir.path(), false, epochs, resume, false);
    let path = dir.path().join("ck.pt");
    let tmp = dir.path().join("ck.tmp");
    fit(1, false).unwrap();
    assert!(!tmp.exists(), "a successful save leaves no temporary file");
    let before = std::fs::read(&path).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    let e = fit(2, true).unwrap_err().to_string();
    assert!(e.contains("ck.pt"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the failed save touched the last checkpoint");
    // The epoch's record reached log.yaml before its checkpoint was attempted (the order that
    // keeps a killed run from resuming past an unrecorded epoch).
    let log = yaml_serde::from_str::<yaml_serde::Value>(&std::fs::read_to_string(dir.path().join("log.yaml")).unwrap())
        .unwrap();
    assert!(log["eval"]["epochs"][1]["train"]["loss"].as_f64().is_some(), "epoch 2 is not in log.yaml: {log:?}");
    archai::train::read_model_tensors(&path).expect("the last checkpoint still loads");
    std::fs::remove_dir(&tmp).unwrap();
    fit(2, true).expect("the run continues from the intact checkpoint");
    assert_ne!(std::fs::read(&path).unwrap(), before, "epoch 2 was saved");
}

/// A run killed after its last epoch's checkpoint but before the phase's summary resumes with
/// nothing left to train: its report carries the last epoch's figures from the record (not
/// zeros) and counts the epochs of the earlier attempt.
#[test]
fn a_phase_resumed_after_its_last_epoch_reports_that_epochs_figures() {
    let reg = registry();
    let dir = tempfile::tempdir().unwrap();
    let fit = |resume: bool| fit_with_checkpoint(&reg, dir.path(), false, 2, resume, true).unwrap();
    let whole = fit(false);
    let resumed = fit(true);
    assert_eq!((whole.epochs_run, whole.epochs_done), (2, 2));
    assert_eq!((resumed.epochs_run, resumed.epochs_done), (0, 2));
    assert!(whole.train.samples > 0 && whole.train.loss > 0.0, "{:?}", whole.train);
    assert_eq!(resumed.train, whole.train);
    assert_eq!(resumed.val, whole.val);
}

/// A checkpoint of a model without the aux head does not silently resume one with it.
#[test]
fn resuming_from_another_models_checkpoint_names_the_missing_tensors() {
    let reg = registry();
    let dir = tempfile::tempdir().unwrap();
    let fit = |auxiliary: bool, resume: bool| fit_with_checkpoint(&reg, dir.path(), auxiliary, 1, resume, false);
    fit(false, false).unwrap();
    let e = fit(true, true).unwrap_err().to_string();
    // 8 weights and 4 batch-norm buffers of the aux head.
    assert!(e.contains("lacks 12 of this model's tensors") && e.contains("w.aux.bn1."), "{e}");
}

#[test]
fn bf16_autocast_computes_in_bf16_and_keeps_fp32_weights() {
    let reg = registry();
    let desc = small_darts(false);
    let store = ParamStore::new(Device::Cpu);
    let net = Network::compile(&desc, &reg, &store).unwrap();
    let (x, y) = batch(2);
    let (fp32, bf16) = {
        let _g = tch::no_grad_guard();
        let fp32 = net.forward(&x, false).unwrap();
        let _ac = Precision::Bf16.autocast(Device::Cpu).unwrap();
        (fp32, net.forward(&x, false).unwrap())
    };
    assert_eq!(bf16.kind(), Kind::BFloat16);
    let diff = (&fp32 - bf16.to_kind(Kind::Float)).abs().max().double_value(&[]);
    let scale = fp32.abs().max().double_value(&[]);
    // bf16 keeps 8 bits of mantissa: close to fp32, but not equal (so autocast did act).
    assert!(diff > 0.0 && diff < 0.1 * scale.max(1.0), "diff {diff}, scale {scale}");

    let c = TrainerConfig { precision: Precision::Bf16, ..TrainerConfig::sgd(8, 0.01, 0.0, Some(1.0)) };
    let mut opt = Optimizer::new(c.optimizer.clone(), store.named_weights());
    let losses: Vec<f64> =
        (0..8).map(|_| weight_step(&net, &store, &mut opt, &x, &y, &c, 0.01, None).unwrap().loss).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses[7] < losses[0], "bf16 training on one batch should lower its loss: {losses:?}");
    assert!(store.named_weights().iter().all(|(_, w)| w.kind() == Kind::Float));
}

#[test]
fn fp16_overflow_skips_the_step_and_backs_off_the_scale() {
    let reg = registry();
    let store = ParamStore::new(Device::Cpu);
    let net = Network::compile(&small_darts(false), &reg, &store).unwrap();
    let (x, y) = batch(3);
    let c = TrainerConfig { precision: Precision::Fp16, ..TrainerConfig::sgd(8, 0.05, 0.0, None) };
    let mut opt = Optimizer::new(c.optimizer.clone(), store.named_weights());
    // 2^40 times the loss overflows fp16 gradients (max 65504) for certain.
    let mut scaler = LossScaler::new(LossScaleConfig { init: 2f64.powi(40), ..Default::default() });
    let before: Vec<Tensor> = store.named_weights().into_iter().map(|(_, t)| t.copy()).collect();
    weight_step(&net, &store, &mut opt, &x, &y, &c, 0.05, Some(&mut scaler)).unwrap();
    assert_eq!((scaler.skipped, scaler.scale()), (1, 2f64.powi(39)));
    let after: Vec<Tensor> = store.named_weights().into_iter().map(|(_, t)| t.copy()).collect();
    assert!(before.iter().zip(&after).all(|(a, b)| a.equal(b)), "a skipped step must not touch the weights");

    // A sane scale trains: weights move and stay finite, the step is not skipped.
    let mut scaler = LossScaler::new(LossScaleConfig { init: 256.0, ..Default::default() });
    let loss = weight_step(&net, &store, &mut opt, &x, &y, &c, 0.05, Some(&mut scaler)).unwrap().loss;
    assert!(loss.is_finite());
    assert_eq!(scaler.skipped, 0);
    let trained: Vec<Tensor> = store.named_weights().into_iter().map(|(_, t)| t.copy()).collect();
    assert!(after.iter().zip(&trained).any(|(a, b)| !a.equal(b)));
    assert!(trained.iter().all(|t| t.isfinite().all().int64_value(&[]) == 1));
}

/// An fp16 run resumed from its checkpoint continues with the saved loss scale and growth
/// counter: same skipped steps, same scale, same weights as the uninterrupted run.
#[test]
fn fp16_resume_restores_the_loss_scaler() {
    let reg = registry();
    let desc = ModelDesc::from_yaml(
        "name: linear\ninput: {channels: 1, size: 28}\nnum_classes: 10\nstem: []\nhead: {c_in: 1}\n",
        "test",
    )
    .unwrap();
    let config = |epochs: usize| TrainerConfig {
        epochs,
        precision: Precision::Fp16,
        // 2^18 overflows the first steps' fp16 gradients; growth every 3 clean steps crosses the
        // epoch boundary, so the counter matters too.
        loss_scale: LossScaleConfig { init: 2f64.powi(18), growth_interval: 3, ..Default::default() },
        ..TrainerConfig::sgd(4, 0.05, 0.0, None)
    };
    let run = |dir: &std::path::Path, plan: &[(usize, bool)]| {
        let store = ParamStore::new(Device::Cpu);
        let mut net = Network::compile(&desc, &reg, &store).unwrap();
        set_fixed_init(&store);
        let mut log = RunLog::open(dir).unwrap();
        for &(epochs, resume) in plan {
            let mut trainer = Trainer {
                config: config(epochs),
                phase: "eval".into(),
                seed: 5,
                device: Device::Cpu,
                checkpoint: dir.join("ck.pt"),
                events: &mut log,
                strategy: archai::train::Strategy::Single,
            };
            trainer.fit(&mut net, &store, &toy_split(), None, None, resume).unwrap();
        }
        let last = log.tree.root()["eval"]["epochs"][2]["train"].clone();
        (store.named_weights(), last)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (whole_w, whole_log) = run(a.path(), &[(3, false)]);
    let (cut_w, cut_log) = run(b.path(), &[(1, false), (3, true)]);
    assert!(whole_log["skipped_steps"].as_u64().unwrap() > 0, "the test needs overflow: {whole_log:?}");
    assert_eq!(whole_log["loss_scale"], cut_log["loss_scale"]);
    assert_eq!(whole_log["skipped_steps"], cut_log["skipped_steps"]);
    for ((name, x), (_, y)) in whole_w.iter().zip(&cut_w) {
        assert!(x.equal(y), "{name} differs after resuming");
    }
}

#[test]
fn stats_leave_the_aux_head_out_of_the_parameter_count() {
    let reg = registry();
    let (with, without) = (small_darts(true), small_darts(false));
    let count = |d: &ModelDesc| {
        let store = ParamStore::new(Device::Cpu);
        let net = Network::compile(d, &reg, &store).unwrap();
        archai::stats::model_stats(d, &reg, &net, &store, 1, 1, Device::Cpu).unwrap()
    };
    let (a, b) = (count(&with), count(&without));
    assert_eq!(a.params, b.params);
    assert_eq!(a.macs, b.macs);
    let aux = with.aux.as_ref().unwrap();
    let width = |key: &str, darts: i64| aux.params.get(key).and_then(|v| v.as_i64()).unwrap_or(darts);
    let (c_in, mid, hidden) = (aux.c_in, width("c_mid", 128), width("c_hidden", 768));
    // conv1x1 c_in->mid, BN mid, conv2x2 mid->hidden, BN hidden, linear hidden->10.
    assert_eq!(a.aux_params, c_in * mid + 2 * mid + mid * hidden * 4 + 2 * hidden + hidden * 10 + 10);
    assert_eq!(b.aux_params, 0);
}

/// What ops-darts relies on to keep 5x5, dilated and strided depthwise convolutions in fp32 under
/// bf16 autocast (oneDNN's bf16 backward for them is up to 5x slower than fp32): libtorch's
/// `convolution` is not on CPU autocast's list while `conv2d` is. A libtorch that adds it fails
/// here instead of silently bringing back the slow bf16 search steps.
#[test]
fn under_cpu_autocast_convolution_keeps_its_dtype_and_conv2d_does_not() {
    let x = seeded::normal(&[2, 8, 9, 9], 1);
    let w = seeded::normal(&[8, 1, 5, 5], 2);
    let _ac = Precision::Bf16.autocast(Device::Cpu).unwrap();
    let autocast = x.conv2d(&w, None::<Tensor>, [1, 1], [2, 2], [1, 1], 8);
    let kept = x.convolution(&w, None::<Tensor>, [1, 1], [2, 2], [1, 1], false, [0, 0], 8);
    assert_eq!((autocast.kind(), kept.kind()), (Kind::BFloat16, Kind::Float));
}
