//! CUDA: the binary carries libtorch's CUDA backend, device selection never falls back silently,
//! and (on a machine with a GPU) the trainer, DARTS, stats and runs work on CUDA.
//!
//! Tests named `cuda_*` need a GPU: they are `#[ignore]`d with the reason, so a CPU machine lists
//! them as ignored rather than passed; scripts/gpu-check.sh runs them with `--ignored`.
mod common;

use archai::model::Network;
use archai::params::ParamStore;
use archai::plugins::PluginRegistry;
use archai::train::optim::Optimizer;
use archai::train::precision::{LossScaleConfig, LossScaler, Precision};
use archai::train::{weight_step, TrainerConfig};
use archai_model_desc::{InputDesc, ModelDesc, DARTS_V2};
use archai_plugin_api::kit::seeded;
use common::*;
use tch::Device;

const NEEDS_GPU: &str = "needs a CUDA device: scripts/gpu-check.sh runs it";

fn cuda_devices() -> i64 {
    tch::Cuda::device_count()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "archai failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn the_binary_and_this_test_carry_libtorchs_cuda_backend() {
    // This test binary is linked like the archai binary (host/build.rs).
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(maps.contains("/libtorch_cuda.so"), "libtorch_cuda.so is not mapped into the test process");
    let devices = json(&archai(&["devices", "--json"]));
    assert_eq!(devices["libtorch_cuda_loaded"], serde_json::Value::Bool(true), "{devices}");
    assert!(devices["runtime_version"].as_str().is_some_and(|v| v.starts_with("13.")), "{devices}");
    let listed = devices["devices"].as_array().unwrap().len() as i64;
    assert_eq!(listed, cuda_devices(), "{devices}");
    let auto = if listed > 0 { "cuda:0" } else { "cpu" };
    assert_eq!(devices["auto"].as_str(), Some(auto), "{devices}");
}

/// A CUDA device that is not there fails in one line naming it, before any work; never a CPU run.
#[test]
fn a_missing_cuda_device_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = cuda_devices();
    let mut names = vec![format!("cuda:{missing}")];
    if missing == 0 {
        names.push("cuda".into());
    }
    for name in names {
        let run = tmp.path().join(name.replace(':', "_"));
        let out = archai(&[
            "run",
            "confs/algos/darts.yaml",
            "--toy",
            "--set",
            &format!("common.device={name}"),
            "--out",
            run.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(errors[0].contains(&format!("common.device: `{name}`")) && errors[0].contains("CUDA device"), "{err}");
        assert_eq!(yaml(&run.join("log.yaml"))["failure"]["phase"].as_str(), Some("setup"), "{name}");
        assert!(!run.join("search/checkpoint.pt").exists(), "{name}: a search step ran");
        for command in [
            vec!["stats", "confs/models/resnet_small.yaml", "--device", name.as_str()],
            vec!["bench", "darts-step", "--device", name.as_str(), "--steps", "1"],
        ] {
            let out = archai(&command);
            assert_eq!(out.status.code(), Some(1), "{command:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.trim().lines().count() == 1 && err.contains(&format!("--device: `{name}`")), "{err}");
        }
    }
}

/// `auto` takes what is there and the run directory says what it took.
#[test]
fn auto_uses_what_is_there_and_records_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("auto");
    let out = archai(&[
        "run",
        "confs/algos/random.yaml",
        "--toy",
        "--set",
        "nas.search.trainer.epochs=0",
        "--set",
        "common.device=auto",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = yaml(&run.join("log.yaml"));
    let used = if cuda_devices() > 0 { "Cuda(0)" } else { "Cpu" };
    assert_eq!(log["run"]["device"].as_str(), Some("auto"));
    assert_eq!(log["run"]["device_used"].as_str(), Some(used));
    let cuda = &log["run"]["environment"]["cuda"];
    assert_eq!(cuda["libtorch_cuda_loaded"].as_bool(), Some(true), "{cuda:?}");
    assert_eq!(cuda["devices"].as_sequence().map_or(0, |d| d.len()) as i64, cuda_devices(), "{cuda:?}");
    let text = std::fs::read_to_string(run.join("log.txt")).unwrap();
    let expected = if cuda_devices() > 0 { "device: cuda:0 " } else { "device: cpu (common.device: auto)" };
    assert!(text.contains(expected), "log.txt does not name the device:\n{text}");
}

fn small_darts() -> ModelDesc {
    DARTS_V2.build("v2_small", 3, 4, false, InputDesc { channels: 1, size: 28 }, 10).unwrap()
}

/// One network on `device` with the same deterministic weights as on every other device:
/// LeCun-scaled normals from explicit seeds (common::set_fixed_init's ramp gives logits in the
/// thousands, which fp16 cannot train from), norm layers as initialised.
fn network(reg: &PluginRegistry, device: Device) -> (Network, ParamStore) {
    let store = ParamStore::new(device);
    let net = Network::compile(&small_darts(), reg, &store).unwrap();
    let _guard = tch::no_grad_guard();
    for (i, (_, mut w)) in store.named_weights().into_iter().enumerate() {
        let size = w.size();
        if size.len() >= 2 {
            let fan_in = size[1..].iter().product::<i64>() as f64;
            let values = seeded::normal(&size, 1000 + i as u64) * (1.0 / fan_in.sqrt());
            w.copy_(&values);
        }
    }
    (net, store)
}

#[test]
#[ignore = "needs a CUDA device: scripts/gpu-check.sh runs it"]
fn cuda_trainer_steps_match_the_cpu_in_fp32_and_train_in_bf16_and_fp16() {
    assert!(cuda_devices() > 0, "{NEEDS_GPU}");
    let reg = PluginRegistry::scan(&[plugin_dir()]).unwrap();
    let x = seeded::normal(&[8, 1, 28, 28], 3);
    let y = seeded::randint(10, &[8], 4);
    let losses = |device: Device, precision: Precision, steps: usize| {
        let (net, store) = network(&reg, device);
        let c = TrainerConfig { precision, ..TrainerConfig::sgd(8, 0.05, 0.0, Some(5.0)) };
        let mut opt = Optimizer::new(c.optimizer.clone(), store.named_weights());
        let mut scaler = precision.needs_loss_scaling().then(|| LossScaler::new(LossScaleConfig::default()));
        let (x, y) = (x.to_device(device), y.to_device(device));
        let out: Vec<f64> = (0..steps)
            .map(|_| weight_step(&net, &store, &mut opt, &x, &y, &c, 0.05, scaler.as_mut()).unwrap().loss)
            .collect();
        let weights_on_device = store.named_weights().iter().all(|(_, t)| t.device() == device);
        assert!(weights_on_device, "{precision:?}: weights left {device:?}");
        out
    };
    let cpu = losses(Device::Cpu, Precision::Fp32, 3);
    let gpu = losses(Device::Cuda(0), Precision::Fp32, 3);
    for (a, b) in cpu.iter().zip(&gpu) {
        // cuDNN convolutions run in TF32 by default (libtorch's allow_tf32 for cuDNN): about
        // 1e-3 per conv, 0.8-1.1% on these losses on an H200. A step on the wrong data or with
        // weights left behind would be off by far more.
        assert!((a - b).abs() < 0.03 * a.abs().max(1.0), "fp32 CPU {cpu:?} vs CUDA {gpu:?}");
    }
    for precision in [Precision::Bf16, Precision::Fp16] {
        let l = losses(Device::Cuda(0), precision, 8);
        assert!(l.iter().all(|v| v.is_finite()), "{precision:?}: {l:?}");
        assert!(l[7] < l[0], "{precision:?} does not learn a fixed batch: {l:?}");
        assert!((l[0] - cpu[0]).abs() < 0.05 * cpu[0], "{precision:?} first loss {} vs fp32 {}", l[0], cpu[0]);
    }
}

#[test]
#[ignore = "needs a CUDA device: scripts/gpu-check.sh runs it"]
fn cuda_darts_search_steps_of_order_1_and_2_run_on_the_gpu() {
    assert!(cuda_devices() > 0, "{NEEDS_GPU}");
    for order in ["1", "2"] {
        let set = format!("nas.search.algorithm.config.order={order}");
        let r = json(&archai(&[
            "bench",
            "darts-step",
            "--device",
            "cuda",
            "--batch",
            "16",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--set",
            &set,
            "--json",
        ]));
        assert!(r["device"].as_str().is_some_and(|d| d.starts_with("cuda:0 ")), "{r}");
        assert!(r["sec_per_step"].as_f64().is_some_and(|s| s > 0.0 && s.is_finite()), "{r}");
        assert!(r["params_arch"].as_i64().is_some_and(|n| n > 0), "{r}");
    }
}

#[test]
#[ignore = "needs a CUDA device: scripts/gpu-check.sh runs it"]
fn cuda_stats_time_the_forward_on_the_gpu() {
    assert!(cuda_devices() > 0, "{NEEDS_GPU}");
    let s = json(&archai(&[
        "stats",
        "confs/models/resnet_small.yaml",
        "--device",
        "cuda",
        "--batch",
        "64",
        "--runs",
        "5",
        "--json",
    ]));
    assert!(s["device"].as_str().is_some_and(|d| d.starts_with("cuda:0 ")), "{s}");
    assert!(s["latency_ms"].as_f64().is_some_and(|v| v > 0.0 && v.is_finite()), "{s}");
}

/// A toy DARTS run on CUDA (search fp32, eval fp16 with loss scaling) finishes, records the GPU,
/// and a resume restores its checkpoints onto the GPU.
#[test]
#[ignore = "needs a CUDA device: scripts/gpu-check.sh runs it"]
fn cuda_toy_darts_run_records_the_gpu_and_resumes_on_it() {
    assert!(cuda_devices() > 0, "{NEEDS_GPU}");
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("cuda");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "run",
            "confs/algos/darts.yaml",
            "--toy",
            "--set",
            "common.device=cuda",
            "--set",
            "nas.eval.trainer.precision=fp16",
            "--out",
            run.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let first = archai(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let log = yaml(&run.join("log.yaml"));
    assert_eq!(log["status"].as_str(), Some("ok"));
    assert_eq!(log["run"]["device_used"].as_str(), Some("Cuda(0)"));
    let gpu = &log["run"]["environment"]["cuda"]["devices"][0];
    assert!(gpu["name"].as_str().is_some_and(|n| !n.is_empty()) && gpu["total_memory_mib"].as_u64() > Some(0));
    let top1 = log["eval"]["summary"]["test"]["top1"].as_f64().unwrap();
    assert!(top1 > 0.15, "toy eval on CUDA should beat chance (0.10): {top1}");
    let resumed = archai(&args(&["--resume"]).iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success() && err.contains("resumed from"), "{err}");
    // The restored weights test as trained (a fresh network would be near chance); cuDNN may
    // sum in another order, so a sample or two may flip.
    let again = yaml(&run.join("log.yaml"))["eval"]["summary"]["test"]["top1"].as_f64().unwrap();
    assert!((again - top1).abs() < 0.01, "resumed top1 {again} vs trained {top1}");
}

#[test]
#[ignore = "needs a CUDA device: scripts/gpu-check.sh runs it"]
fn cuda_batches_reach_the_gpu_intact() {
    assert!(cuda_devices() > 0, "{NEEDS_GPU}");
    let images: Vec<f32> = (0..2 * 3 * 4 * 4).map(|i| i as f32 * 0.5).collect();
    let batch =
        archai_data::Batch { images: images.clone(), labels: vec![3, 7], shape: [2, 3, 4, 4], indices: vec![0, 1] };
    let (x, y) = archai::train::to_tensors(&batch, Device::Cuda(0));
    assert_eq!((x.device(), y.device()), (Device::Cuda(0), Device::Cuda(0)));
    let back: Vec<f32> = Vec::try_from(x.to_device(Device::Cpu).flatten(0, -1)).unwrap();
    assert_eq!(back, images);
    assert_eq!(Vec::<i64>::try_from(y.to_device(Device::Cpu)).unwrap(), vec![3, 7]);
}
