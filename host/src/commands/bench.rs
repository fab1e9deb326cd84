//! `archai bench ...`: benchmarks that print numbers (never timed assertions).
use crate::train::precision::Precision;
use anyhow::Context;
use std::path::PathBuf;

/// Benchmarks that print numbers.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Median time of a c10d (Gloo) all-reduce over the ranks of a data-parallel job; run it
    /// under `archai launch --nproc 2 -- bench allreduce` (scripts/bench-dist.sh compares it
    /// with Python torch.distributed).
    Allreduce {
        /// fp32 elements per all-reduce.
        #[arg(long, default_value_t = 1_000_000)]
        elements: i64,
        #[arg(long, default_value_t = 50)]
        iters: usize,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
    },
    /// Training throughput (samples/s) of a model description on a dataset (compare with
    /// scripts/bench/resnet_small_ref.py through scripts/bench-resnet.sh).
    Train {
        /// Device: cpu, cuda, cuda:N or auto.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// ModelDesc YAML.
        #[arg(long, default_value = "confs/models/resnet_small.yaml")]
        model: PathBuf,
        /// Experiment YAML whose dataset is used.
        #[arg(long, default_value = "confs/train.yaml")]
        conf: PathBuf,
        #[arg(long, default_value_t = 96)]
        batch: usize,
        #[arg(long, default_value_t = 50)]
        steps: usize,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        #[arg(long, default_value_t = 2)]
        threads: i32,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        channels_last: bool,
        /// fp32, bf16 or fp16 (autocast; fp16 with dynamic loss scaling).
        #[arg(long, default_value = "fp32", value_parser = super::common::parse_precision)]
        precision: Precision,
        #[arg(long)]
        json: bool,
    },
    /// Median seconds and peak memory per search step of an algorithm (its hooks + the weight
    /// step) on synthetic 32x32x3 data; the network is what confs/algos/NAME.yaml builds (paper
    /// size: 8 cells, C = 16). scripts/bench-darts.sh compares DARTS with scripts/bench/darts_ref.py.
    #[command(alias = "darts-step")]
    SearchStep {
        /// Device: cpu, cuda, cuda:N or auto.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Let cuDNN time its convolution algorithms on the first call of each shape and keep the
        /// fastest (CUDA only).
        #[arg(long)]
        cudnn_benchmark: bool,
        /// Algorithm name: its experiment is confs/algos/NAME.yaml (or --conf).
        #[arg(long, default_value = "darts")]
        algorithm: String,
        /// Experiment YAML to take the algorithm config from instead of confs/algos/NAME.yaml.
        #[arg(long)]
        conf: Option<PathBuf>,
        /// Override a key of that experiment (e.g. nas.search.algorithm.config.order=2). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long, default_value_t = 32)]
        batch: i64,
        #[arg(long, default_value_t = 2)]
        threads: i32,
        /// Timed steps (after the warm-up).
        #[arg(long, default_value_t = 5)]
        steps: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 0)]
        seed: i64,
        /// Memory layout: channels-last (default) or contiguous NCHW, as PyTorch's reference.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        channels_last: bool,
        /// fp32 or bf16 (autocast); a search cannot use fp16.
        #[arg(long, default_value = "fp32", value_parser = super::common::parse_precision)]
        precision: Precision,
        /// Print one JSON object (keys sec_per_step, peak_rss_mb, ...).
        #[arg(long)]
        json: bool,
    },
    /// Per-call cost of crossing the plugin boundary vs calling the op directly.
    Boundary {
        /// Calls per timing round for the 1-element input (the large input uses 1/100 of it).
        #[arg(long, default_value_t = 20000)]
        iters: usize,
        /// Timing rounds; the median is reported.
        #[arg(long, default_value_t = 7)]
        repeats: usize,
        /// libtorch intra-op threads (tiny ops jitter with more than one).
        #[arg(long, default_value_t = 1)]
        threads: i32,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(plugin_dirs: &[PathBuf], command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Allreduce { elements, iters, warmup } => {
            allreduce(*elements, *iters, *warmup)?;
        }
        Command::SearchStep {
            device,
            cudnn_benchmark,
            algorithm,
            conf,
            sets,
            batch,
            threads,
            steps,
            warmup,
            seed,
            channels_last,
            precision,
            json,
        } => {
            tch::set_num_threads(*threads);
            tch::Cuda::cudnn_set_benchmark(*cudnn_benchmark);
            let conf = conf.clone().unwrap_or_else(|| PathBuf::from(format!("confs/algos/{algorithm}.yaml")));
            anyhow::ensure!(
                conf.is_file(),
                "{}: no such experiment; pass --conf PATH for an algorithm without confs/algos/NAME.yaml",
                conf.display()
            );
            let opts = crate::config::LoadOptions { toy: false, toy_file: None, sets: sets.clone() };
            let cfg: crate::config::ExperimentConfig =
                crate::config::from_tree(&crate::config::load_tree(&conf, &opts)?)?;
            let reg = super::common::registry(plugin_dirs)?;
            let options = crate::bench::SearchStepOptions {
                device: super::common::device_option(device)?,
                batch: *batch,
                steps: *steps,
                warmup: *warmup,
                seed: *seed,
                channels_last: *channels_last,
                precision: *precision,
            };
            let r = crate::bench::search_step(&reg, &cfg.nas.search, options)?;
            if *json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} search step ({} architecture training) on {}, batch {}, {} threads, channels_last {}, recompute_cells {}, recompute_ops {}, {:?}: {:.3} s/step (arch {:.3} + weight {:.3}), {:.1} images/s, {} weights + {} architecture parameters, {:.1} candidate forwards per step over {} mixed edges, peak RSS {:.0} MB (median of {} after {} warm-up)",
                    r.algorithm, r.arch_training, r.device, r.batch, r.threads, r.channels_last, r.recompute_cells, r.recompute_ops, r.precision, r.sec_per_step, r.arch_sec, r.weight_sec,
                    r.images_per_sec, r.params_weights, r.params_arch, r.candidate_forwards_per_step, r.mixed_edges, r.peak_rss_mb, r.steps, r.warmup
                );
            }
        }
        Command::Train { device, model, conf, batch, steps, warmup, threads, channels_last, precision, json } => {
            tch::set_num_threads(*threads);
            let cfg: crate::config::ExperimentConfig =
                crate::config::from_tree(&crate::config::load_tree(conf, &crate::config::LoadOptions::default())?)?;
            let reg = super::common::registry(plugin_dirs)?;
            let data = crate::experiment::load_dataset(&reg, &cfg.dataset)?;
            let text = std::fs::read_to_string(model).with_context(|| format!("reading {}", model.display()))?;
            let desc = archai_model_desc::ModelDesc::from_yaml(&text, &model.display().to_string())?;
            let options = crate::bench::TrainBenchOptions {
                device: super::common::device_option(device)?,
                batch: *batch,
                steps: *steps,
                warmup: *warmup,
                channels_last: *channels_last,
                precision: *precision,
            };
            let r = crate::bench::train_throughput(&reg, &desc, &data, options)?;
            if *json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} ({} weights) on {} ({}): {:.1} samples/s, {:.4} s/step, batch {}, {} threads, channels_last {}, {:?} (median of {} steps after {})",
                    r.model, r.params, cfg.dataset.name, r.device, r.samples_per_s, r.sec_per_step, r.batch, r.threads, r.channels_last, r.precision, r.steps, r.warmup
                );
            }
        }
        Command::Boundary { iters, repeats, threads, json } => {
            tch::set_num_threads(*threads);
            let reg = super::common::registry(plugin_dirs)?;
            let rows = crate::bench::boundary(&reg, *iters, *repeats)?;
            if *json {
                println!("{}", serde_json::json!({"threads": threads, "rows": rows}));
            } else {
                println!("boundary cost, libtorch threads = {threads}, median of {repeats} rounds");
                println!("{:<14} {:<16} {:>12} {:>12} {:>12}", "op", "input", "direct ns", "plugin ns", "overhead ns");
                for r in rows {
                    let shape = r.shape.iter().map(i64::to_string).collect::<Vec<_>>().join("x");
                    println!(
                        "{:<14} {:<16} {:>12.0} {:>12.0} {:>12.0}",
                        r.op, shape, r.direct_ns, r.plugin_ns, r.overhead_ns
                    );
                }
            }
        }
    }
    Ok(())
}

/// Times `iters` all-reduces of `elements` floats after `warmup` ones; rank 0 prints the median
/// as one JSON line (the format of scripts/bench/allreduce_ref.py).
fn allreduce(elements: i64, iters: usize, warmup: usize) -> anyhow::Result<()> {
    let env = archai_dist::WorldEnv::from_env()?
        .ok_or_else(|| anyhow::anyhow!("run it as a job: `archai launch --nproc 2 -- bench allreduce`"))?;
    let group = archai_dist::ProcessGroup::join(&env, std::time::Duration::from_secs(120))?;
    let mut t = tch::Tensor::ones([elements], (tch::Kind::Float, tch::Device::Cpu));
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        group.barrier()?;
        let t0 = std::time::Instant::now();
        group.all_reduce_sum(&mut t)?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    if env.rank == 0 {
        println!(
            "{}",
            serde_json::json!({
                "engine": "archai (c10d Gloo via shim)",
                "world": env.world,
                "elements": elements,
                "median_ms": median * 1e3,
                "gb_per_s": elements as f64 * 4.0 / median / 1e9,
            })
        );
    }
    Ok(())
}
