//! `archai bench ...`: commands that print numbers. Nothing here asserts timings.
use crate::params::ParamStore;
use crate::plugins::{PluginError, PluginRegistry};
use crate::train::precision::Precision;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// One row of the boundary benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BoundaryRow {
    pub op: String,
    pub shape: Vec<i64>,
    pub direct_ns: f64,
    pub plugin_ns: f64,
    pub overhead_ns: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn per_call_ns(iters: usize, f: &mut impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// Median per-call times (ns) of `direct` and `plugin` over `repeats` rounds of `iters` calls each,
/// after a warm-up of both. The two are timed in alternating order, round by round, so neither
/// gains from running second on a warmer cache or allocator.
fn time_pair(iters: usize, repeats: usize, mut direct: impl FnMut(), mut plugin: impl FnMut()) -> (f64, f64) {
    per_call_ns(iters.min(1000), &mut direct);
    per_call_ns(iters.min(1000), &mut plugin);
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for round in 0..repeats {
        if round % 2 == 0 {
            d.push(per_call_ns(iters, &mut direct));
            p.push(per_call_ns(iters, &mut plugin));
        } else {
            p.push(per_call_ns(iters, &mut plugin));
            d.push(per_call_ns(iters, &mut direct));
        }
    }
    (median(d), median(p))
}

/// Per-call cost of calling an op through the plugin boundary vs the same libtorch call made
/// directly in the host, for `skip_connect` (pure crossing cost) and `max_pool_3x3`.
pub fn boundary(registry: &PluginRegistry, iters: usize, repeats: usize) -> Result<Vec<BoundaryRow>, PluginError> {
    let store = ParamStore::new(Device::Cpu);
    let mut rows = Vec::new();
    for shape in [vec![1i64, 1, 1, 1], vec![32, 16, 32, 32]] {
        let c = shape[1];
        let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
        let iters_here = if shape.iter().product::<i64>() > 1 { (iters / 100).max(10) } else { iters };
        let cfg = serde_json::json!({"c_in": c, "stride": 1});
        let skip = registry.create_op("skip_connect", &cfg, &store, &format!("bench.skip{c}"))?;
        let pool = registry.create_op("max_pool_3x3", &cfg, &store, &format!("bench.pool{c}"))?;
        let (direct, plugin) = time_pair(
            iters_here,
            repeats,
            || drop(x.shallow_clone()),
            || drop(skip.forward(&[&x], false).expect("skip_connect")),
        );
        rows.push(BoundaryRow {
            op: "skip_connect".into(),
            shape: shape.clone(),
            direct_ns: direct,
            plugin_ns: plugin,
            overhead_ns: plugin - direct,
        });
        let (direct, plugin) = time_pair(
            iters_here,
            repeats,
            || drop(x.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false)),
            || drop(pool.forward(&[&x], false).expect("max_pool_3x3")),
        );
        rows.push(BoundaryRow {
            op: "max_pool_3x3".into(),
            shape,
            direct_ns: direct,
            plugin_ns: plugin,
            overhead_ns: plugin - direct,
        });
    }
    Ok(rows)
}

/// Figures of `archai bench search-step`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchStepReport {
    pub algorithm: String,
    /// The algorithm's config as given (after `--set`).
    pub config: serde_json::Value,
    pub arch_training: String,
    pub batch: i64,
    pub threads: i32,
    pub steps: usize,
    pub warmup: usize,
    pub channels_last: bool,
    /// `nas.search.trainer.recompute_cells` of the experiment (set with `--set`).
    pub recompute_cells: bool,
    /// `nas.search.trainer.recompute_ops` of the experiment.
    pub recompute_ops: bool,
    pub precision: Precision,
    pub sec_per_step: f64,
    /// The algorithm's hooks (architecture step, and its update after the weight step).
    pub arch_sec: f64,
    pub weight_sec: f64,
    pub images_per_sec: f64,
    pub params_weights: i64,
    pub params_arch: i64,
    pub mixed_edges: usize,
    /// Candidate-op forwards per weight step (all candidates for DARTS, one per edge for GDAS).
    pub candidate_forwards_per_step: f64,
    pub peak_rss_mb: f64,
    /// The `malloc` serving the process (peak memory depends on it; see host/build.rs).
    pub allocator: String,
    /// Where the steps ran (`cpu`, `cuda:0 NVIDIA H200 (...)`).
    pub device: String,
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Settings of `archai bench search-step`.
#[derive(Debug, Clone, Copy)]
pub struct SearchStepOptions {
    pub device: Device,
    pub batch: i64,
    pub steps: usize,
    pub warmup: usize,
    pub seed: i64,
    pub channels_last: bool,
    pub precision: Precision,
}

/// Median seconds per search step of `search`'s algorithm on synthetic (B, 3, 32, 32) data with
/// 10 classes: the algorithm's `before_step` (its architecture step, on a validation batch for
/// bilevel algorithms), the weight step (SGD 0.025, momentum 0.9, wd 3e-4, clip 5, as
/// `scripts/bench/darts_ref.py`) and `after_step`. The network is whatever the algorithm's
/// config builds (the paper's 8 cells, C = 16 with the confs/algos defaults).
pub fn search_step(
    registry: &PluginRegistry,
    search: &crate::config::SearchConfig,
    options: SearchStepOptions,
) -> anyhow::Result<SearchStepReport> {
    use crate::model::Network;
    use crate::train::optim::Optimizer;
    use crate::train::{algorithm_hook, algorithm_step, weight_step_with, Services, StepTensors, TrainerConfig};
    use archai_plugin_api::{ComponentKind, SearchContext, StepOutcome};

    let SearchStepOptions { device, batch, steps, warmup, seed, channels_last, precision } = options;
    anyhow::ensure!(
        !precision.needs_loss_scaling(),
        "a search step cannot run in fp16 (the architecture step has no loss scaling); use fp32 or bf16"
    );
    tch::manual_seed(seed);
    let name = search.algorithm.name.clone();
    let mut algo = registry.create_algorithm(&name, &search.algorithm.config)?;
    let context = SearchContext {
        channels: 3,
        image_size: 32,
        num_classes: 10,
        seed: seed as u64,
        epochs: search.trainer.epochs as u32,
        // The bench's own length: its warm-up and timed steps, each with a validation batch.
        steps_per_epoch: (warmup + steps) as u64,
        val_batch_size: batch as u64,
    };
    let space =
        crate::plugins::plugin_result(algo.inner.search_space(context), &algo.plugin, ComponentKind::Algorithm, &name)?;
    algo.arch_training = space.arch_training;
    let desc = archai_model_desc::ModelDesc::from_yaml(space.model_desc_yaml.as_str(), &name)?;
    let store = ParamStore::new(device);
    let mut net = Network::compile(&desc, registry, &store)?;
    net.channels_last = channels_last;
    net.recompute_cells = search.trainer.recompute_cells;
    store.set_recompute_ops(search.trainer.recompute_ops);
    let trainer = TrainerConfig { precision, ..TrainerConfig::sgd(batch as usize, 0.025, 3e-4, Some(5.0)) };
    let mut opt = Optimizer::new(trainer.optimizer.clone(), store.named_weights());
    let data = |_: usize| {
        (Tensor::randn([batch, 3, 32, 32], (Kind::Float, device)), Tensor::randint(10, [batch], (Kind::Int64, device)))
    };
    {
        let mut services = Services::new(&net, &store, &opt, 0.025, &trainer);
        algorithm_hook(&mut algo, &mut services, |a, m| a.before_epoch(m, 0))?;
    }
    let (mut total, mut arch, mut weight) = (Vec::new(), Vec::new(), Vec::new());
    let mut forwards = 0u64;
    for step in 0..warmup + steps {
        let ((x, y), (vx, vy)) = (data(step), data(step));
        let (vx, vy) = if algo.arch_training.takes_val_batch() { (vx, vy) } else { (Tensor::new(), Tensor::new()) };
        // CUDA queues kernels: each timing point waits for the queue, so the split is honest.
        crate::cuda::synchronize(device);
        let t0 = Instant::now();
        let tensors = StepTensors { x: &x, y: &y, val_x: &vx, val_y: &vy, epoch: 0, step, lr: 0.025 };
        algorithm_step(&mut algo, &net, &store, &opt, &tensors, &trainer, crate::train::Strategy::Single)?;
        crate::cuda::synchronize(device);
        let t1 = Instant::now();
        let before = net.candidate_forwards();
        let loss = weight_step_with(
            &net,
            &store,
            &mut opt,
            &x,
            &y,
            &trainer,
            0.025,
            None,
            algo.arch_training,
            crate::train::Strategy::Single,
        )?
        .loss;
        let after_forwards = net.candidate_forwards() - before;
        crate::cuda::synchronize(device);
        let t2 = Instant::now();
        let outcome = StepOutcome { epoch: 0, step: step as u64, lr: 0.025, loss };
        {
            let mut services = Services::new(&net, &store, &opt, 0.025, &trainer);
            algorithm_hook(&mut algo, &mut services, |a, m| a.after_step(m, outcome))?;
        }
        crate::cuda::synchronize(device);
        let t3 = Instant::now();
        tracing::info!(
            "step {step} {} {:.3}s (arch {:.3}s, weight {:.3}s) loss {loss:.4}",
            if step < warmup { "warmup" } else { "timed" },
            (t3 - t0).as_secs_f64(),
            (t1 - t0 + (t3 - t2)).as_secs_f64(),
            (t2 - t1).as_secs_f64()
        );
        if step >= warmup {
            total.push((t3 - t0).as_secs_f64());
            arch.push((t1 - t0 + (t3 - t2)).as_secs_f64());
            weight.push((t2 - t1).as_secs_f64());
            forwards += after_forwards;
        }
    }
    let sec_per_step = median(total);
    Ok(SearchStepReport {
        algorithm: name,
        config: search.algorithm.config.clone(),
        arch_training: format!("{:?}", algo.arch_training),
        batch,
        threads: tch::get_num_threads(),
        steps,
        warmup,
        channels_last,
        recompute_cells: net.recompute_cells,
        recompute_ops: store.recompute_ops(),
        precision,
        sec_per_step,
        arch_sec: median(arch),
        weight_sec: median(weight),
        images_per_sec: batch as f64 / sec_per_step,
        params_weights: store.weight_count(),
        params_arch: store.arch_count(),
        mixed_edges: net.mixed_edges(),
        candidate_forwards_per_step: forwards as f64 / steps.max(1) as f64,
        peak_rss_mb: peak_rss_mb(),
        allocator: crate::allocator::name(),
        device: crate::cuda::describe(device, &crate::cuda::environment()),
    })
}

/// Figures of `archai bench train`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainThroughputReport {
    pub model: String,
    pub params: i64,
    pub batch: usize,
    pub threads: i32,
    pub steps: usize,
    pub warmup: usize,
    pub channels_last: bool,
    /// `nas.search.trainer.recompute_cells` of the experiment (set with `--set`).
    pub recompute_cells: bool,
    pub precision: Precision,
    pub sec_per_step: f64,
    pub samples_per_s: f64,
    /// The `malloc` serving the process (see host/build.rs).
    pub allocator: String,
    /// Where the steps ran.
    pub device: String,
}

/// Settings of `archai bench train`.
#[derive(Debug, Clone, Copy)]
pub struct TrainBenchOptions {
    pub device: Device,
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
    pub channels_last: bool,
    pub precision: Precision,
}

/// Training throughput of a model description on a dataset: batches from the host pipeline
/// (normalize only), SGD steps (lr 0.05, momentum 0.9, wd 3e-4), median seconds per step.
pub fn train_throughput(
    registry: &PluginRegistry,
    desc: &archai_model_desc::ModelDesc,
    data: &crate::experiment::LoadedDataset,
    options: TrainBenchOptions,
) -> anyhow::Result<TrainThroughputReport> {
    let TrainBenchOptions { device, batch, steps, warmup, channels_last, precision } = options;
    use crate::model::Network;
    use crate::train::optim::Optimizer;
    use crate::train::{weight_step, SplitData, TrainerConfig};

    tch::manual_seed(0);
    let store = ParamStore::new(device);
    let mut net = Network::compile(desc, registry, &store)?;
    net.channels_last = channels_last;
    let trainer = TrainerConfig { precision, ..TrainerConfig::sgd(batch, 0.05, 3e-4, None) };
    let mut scaler = trainer.loss_scaler();
    let mut opt = Optimizer::new(trainer.optimizer.clone(), store.named_weights());
    let split = SplitData {
        buffer: data.train.clone(),
        indices: (0..data.train.len()).collect(),
        transforms: vec![data.normalize()],
    };
    let batcher = split.batcher(batch, 0, 0, true)?;
    let mut times = Vec::new();
    let mut last = Instant::now();
    for (i, b) in batcher.iter().enumerate().take(warmup + steps) {
        let (x, y) = crate::train::to_tensors(&b, device);
        let _ = weight_step(&net, &store, &mut opt, &x, &y, &trainer, 0.05, scaler.as_mut())?;
        crate::cuda::synchronize(device);
        let now = Instant::now();
        if i >= warmup {
            // Includes waiting for the next batch: data loading is part of the throughput.
            times.push((now - last).as_secs_f64());
        }
        last = now;
    }
    anyhow::ensure!(!times.is_empty(), "the dataset has fewer than {} batches of {batch}", warmup + 1);
    let sec_per_step = median(times.clone());
    Ok(TrainThroughputReport {
        model: desc.name.clone(),
        params: store.weight_count(),
        batch,
        threads: tch::get_num_threads(),
        steps: times.len(),
        warmup,
        channels_last,
        recompute_cells: net.recompute_cells,
        precision,
        sec_per_step,
        samples_per_s: batch as f64 / sec_per_step,
        allocator: crate::allocator::name(),
        device: crate::cuda::describe(device, &crate::cuda::environment()),
    })
}
