use anyhow::Context;
use archai::plugins::{default_plugin_dirs, PluginRegistry};
use archai::train::precision::Precision;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// archai: neural architecture search on libtorch, with stable-ABI plugins.
#[derive(Parser)]
#[command(name = "archai", version, about)]
struct Cli {
    /// Directory to load plugins from (repeatable). Default: $ARCHAI_PLUGIN_DIR, else
    /// target/plugins in the repository, else plugins/ beside the binary.
    #[arg(long = "plugin-dir", global = true)]
    plugin_dirs: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every component of every plugin: file, kind, name, version, description.
    Plugins,
    /// Run an experiment: search (if configured), finalize, eval; everything goes to RUN_DIR.
    Run {
        /// Experiment YAML (e.g. confs/algos/darts.yaml).
        conf: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
        /// Run directory (default: <common.runs_dir>/<experiment_name>-<timestamp>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in --out from its last checkpoint.
        #[arg(long)]
        resume: bool,
    },
    /// Train any model description (handcrafted or searched) with the general trainer, then test
    /// it. Uses confs/train.yaml (eval trainer of DARTS) unless --conf is given.
    Train {
        /// ModelDesc YAML (e.g. confs/models/resnet_small.yaml).
        model: PathBuf,
        /// A dataset name from confs/datasets/ (fashion_mnist, cifar10, ...) or a dataset YAML file.
        #[arg(long, default_value = "fashion_mnist")]
        dataset: String,
        /// Experiment YAML supplying the trainer and common settings.
        #[arg(long, default_value = "confs/train.yaml")]
        conf: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        resume: bool,
    },
    /// Parameters, MACs/FLOPs, activation memory and measured latency of a model description.
    Stats {
        /// ModelDesc YAML.
        model: PathBuf,
        #[arg(long, default_value_t = 1)]
        batch: i64,
        /// Input size CxHxW (default: the description's input).
        #[arg(long, value_name = "CxHxW")]
        input: Option<String>,
        /// Timed forward passes (median reported).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// libtorch intra-op threads (0: libtorch's default).
        #[arg(long, default_value_t = 0)]
        threads: i32,
        /// Print one JSON object (keys params, macs, flops, activation_bytes, latency_ms, ...).
        #[arg(long)]
        json: bool,
        /// List every weight's name and shape instead (the names trainer.param_groups matches),
        /// then the architecture parameters.
        #[arg(long)]
        param_names: bool,
    },
    /// Print the resolved configuration (includes, _copy, --toy and --set applied, every default
    /// written out: what config_used.yaml records); runs nothing.
    Config {
        conf: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Dataset summary: samples per split and class, shape, mean/std (--bench: pipeline throughput).
    Data {
        conf: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
        /// Measure augmented samples/s and batches/s of the search trainer's pipeline.
        #[arg(long)]
        bench: bool,
        /// With --bench, also measure a DARTS CIFAR-style pipeline on generated data of this
        /// shape (CxHxW, e.g. 3x32x32).
        #[arg(long, value_name = "CxHxW")]
        synthetic: Option<String>,
    },
    /// Benchmarks that print numbers.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(clap::Args, Clone)]
struct Overrides {
    /// Merge confs/toy.yaml: tiny budgets, same code path.
    #[arg(long)]
    toy: bool,
    /// Override a key: --set nas.search.trainer.epochs=3 (value parsed as YAML). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Shorthand for --set common.seed=N.
    #[arg(long)]
    seed: Option<u64>,
}

impl Overrides {
    fn load(
        &self,
        conf: &std::path::Path,
    ) -> anyhow::Result<(archai::config::ResolvedConfig, archai::config::ExperimentConfig)> {
        let mut sets = self.sets.clone();
        if let Some(seed) = self.seed {
            sets.push(format!("common.seed={seed}"));
        }
        let opts = archai::config::LoadOptions { toy: self.toy, toy_file: None, sets };
        let resolved = archai::config::load_tree(conf, &opts)?;
        let typed = archai::config::from_tree(&resolved)?;
        Ok((resolved, typed))
    }
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    serde_json::from_value(serde_json::json!(s)).map_err(|_| format!("`{s}`: expected fp32, bf16 or fp16"))
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Training throughput (samples/s) of a model description on a dataset (compare with
    /// scripts/bench/resnet_small_ref.py through scripts/bench-resnet.sh).
    Train {
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
        #[arg(long, default_value = "fp32", value_parser = parse_precision)]
        precision: Precision,
        #[arg(long)]
        json: bool,
    },
    /// Median seconds and peak memory per search step of an algorithm (its hooks + the weight
    /// step) on synthetic 32x32x3 data; the network is what confs/algos/NAME.yaml builds (paper
    /// size: 8 cells, C = 16). scripts/bench-darts.sh compares DARTS with shared/bench/darts_ref.py.
    SearchStep {
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
        #[arg(long, default_value = "fp32", value_parser = parse_precision)]
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

fn registry(cli: &Cli) -> anyhow::Result<PluginRegistry> {
    let dirs = if cli.plugin_dirs.is_empty() { default_plugin_dirs() } else { cli.plugin_dirs.clone() };
    PluginRegistry::scan(&dirs).context("loading plugins")
}

fn run_experiment(
    cli: &Cli,
    conf: &std::path::Path,
    overrides: &Overrides,
    out: &Option<PathBuf>,
    resume: bool,
) -> anyhow::Result<()> {
    let (_, cfg) = overrides.load(conf)?;
    let reg = registry(cli)?;
    let run_dir =
        archai::runlog::RunDir::create(&cfg.common.runs_dir, &cfg.common.experiment_name, out.clone(), resume)?;
    let _logging = archai_runlog::init_logging(Some(&run_dir.join("log.txt")), archai_runlog::Verbosity::Normal)?;
    let used = run_dir.join("config_used.yaml");
    let mut resume_changes = Vec::new();
    if resume && used.is_file() {
        let recorded = std::fs::read_to_string(&used).with_context(|| format!("reading {}", used.display()))?;
        resume_changes = archai::resume::check(&recorded, &cfg)?;
        for c in &resume_changes {
            tracing::info!("resume: {} changed from {} to {}", c.key, c.before, c.now);
        }
    }
    if !resume || !used.is_file() || !resume_changes.is_empty() {
        // The record follows the run: after an accepted change it holds the new values.
        std::fs::write(&used, cfg.to_full_yaml()).with_context(|| format!("writing {}", used.display()))?;
    }
    tracing::info!("run directory: {}", run_dir.path().display());
    archai::experiment::run(&cfg, &reg, run_dir.path(), resume, &resume_changes)?;
    tracing::info!("done: results in {}/log.yaml", run_dir.path().display());
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Plugins => {
            let reg = registry(&cli)?;
            println!("{:<28} {:<16} {:<20} {:<8} DESCRIPTION", "PLUGIN", "KIND", "NAME", "VERSION");
            for (plugin, c) in reg.components() {
                println!(
                    "{:<28} {:<16} {:<20} {:<8} {}",
                    plugin.file_name(),
                    c.kind.as_str(),
                    c.name,
                    c.version,
                    c.description
                );
            }
            for (path, reason) in &reg.skipped {
                eprintln!("skipped {}: {reason}", path.display());
            }
        }
        Command::Config { conf, overrides } => {
            let (_, cfg) = overrides.load(conf)?;
            print!("{}", cfg.to_full_yaml());
        }
        Command::Train { model, dataset, conf, overrides, out, resume } => {
            let ds_file = if dataset.ends_with(".yaml") || dataset.ends_with(".yml") {
                PathBuf::from(dataset)
            } else {
                conf.parent().unwrap_or(std::path::Path::new(".")).join("datasets").join(format!("{dataset}.yaml"))
            };
            let text = std::fs::read_to_string(&ds_file)
                .with_context(|| format!("--dataset {dataset}: cannot read {}", ds_file.display()))?;
            let tree: serde_json::Value =
                yaml_serde::from_str(&text).with_context(|| format!("parsing {}", ds_file.display()))?;
            let section = tree
                .get("dataset")
                .ok_or_else(|| anyhow::anyhow!("{} has no `dataset:` section", ds_file.display()))?;
            let mut overrides = overrides.clone();
            // Replaces the whole dataset section, so no key of the default dataset leaks in.
            overrides.sets.insert(0, format!("dataset={section}"));
            overrides
                .sets
                .insert(1, format!("nas.eval.model_desc={}", serde_json::Value::String(model.display().to_string())));
            run_experiment(&cli, conf, &overrides, out, *resume)?;
        }
        Command::Stats { model, batch, input, runs, threads, json, param_names } => {
            if *threads > 0 {
                tch::set_num_threads(*threads);
            }
            let text = std::fs::read_to_string(model).with_context(|| format!("reading {}", model.display()))?;
            let mut desc = archai_model_desc::ModelDesc::from_yaml(&text, &model.display().to_string())?;
            if let Some(spec) = input {
                let dims: Vec<i64> = spec.split('x').filter_map(|d| d.parse().ok()).collect();
                let [c, h, w] = dims[..] else { anyhow::bail!("--input {spec}: expected CxHxW, e.g. 3x32x32") };
                if h != w {
                    anyhow::bail!("--input {spec}: only square inputs are supported");
                }
                if c != desc.input.channels {
                    anyhow::bail!("--input {spec}: the description's stem takes {} channels", desc.input.channels);
                }
                desc.input.size = h;
            }
            let reg = registry(&cli)?;
            let store = archai::params::ParamStore::new(tch::Device::Cpu);
            let net = archai::model::Network::compile(&desc, &reg, &store)?;
            if *param_names {
                for (name, t) in store.named_weights() {
                    println!("{name} {:?}", t.size());
                }
                for (name, t) in store.named_arch() {
                    println!("{name} {:?} architecture", t.size());
                }
                return Ok(());
            }
            let s = archai::stats::model_stats(&desc, &reg, &net, &store, *batch, *runs, tch::Device::Cpu)?;
            if *json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "{} (input {}x{}x{}, batch {}, {} threads)",
                    s.name, s.input[0], s.input[1], s.input[2], s.batch, s.threads
                );
                println!("  params           {:>14}  (+{} architecture)", s.params, s.arch_params);
                if s.aux_params > 0 {
                    println!("  aux head params  {:>14}  (training only, not counted above)", s.aux_params);
                }
                println!("  MACs / sample    {:>14}  (FLOPs {})", s.macs, s.flops);
                println!("  activations      {:>14}  bytes for the batch (fp32 op outputs)", s.activation_bytes);
                println!("  forward latency  {:>14.3}  ms, median of {}", s.latency_ms, s.latency_runs);
                println!("  {:<12} {:>12} {:>14} {:>16}", "part", "params", "MACs", "act bytes/sample");
                for p in &s.parts {
                    println!("  {:<12} {:>12} {:>14} {:>16}", p.name, p.params, p.macs, p.activation_bytes_per_sample);
                }
                if !s.ops_without_macs.is_empty() {
                    println!("  no MAC formula for: {} (counted as 0)", s.ops_without_macs.join(", "));
                }
            }
        }
        Command::Run { conf, overrides, out, resume } => {
            run_experiment(&cli, conf, overrides, out, *resume)?;
        }
        Command::Data { conf, overrides, bench, synthetic } => {
            let (_, cfg) = overrides.load(conf)?;
            let reg = registry(&cli)?;
            let data = archai::experiment::load_dataset(&reg, &cfg.dataset)?;
            let [c, h, w] = data.train.shape();
            println!(
                "dataset {} (adapter {}): {c}x{h}x{w}, {} classes",
                cfg.dataset.name,
                cfg.dataset.adapter,
                data.class_names.len()
            );
            for (split, buf) in [("train", &data.train), ("test", &data.test)] {
                let mut counts = vec![0usize; data.class_names.len().max(1)];
                for &l in buf.labels() {
                    if let Some(slot) = counts.get_mut(l as usize) {
                        *slot += 1;
                    }
                }
                let (mean, std) = archai_data::stats::mean_std(buf.images(), buf.len(), c, h, w);
                println!(
                    "  {split}: {} samples, per class {:?}, mean {:.4?}, std {:.4?}",
                    buf.len(),
                    counts,
                    mean,
                    std
                );
            }
            if *bench {
                let t = &cfg.nas.search.trainer;
                let opts = archai_data::BatcherOptions {
                    batch_size: t.batch_size,
                    drop_last: false,
                    prefetch: 4,
                    seed: cfg.common.seed,
                    epoch: 0,
                };
                let transforms = archai::experiment::train_transforms(t, &data);
                let r = archai_data::bench_throughput(&data.train, &transforms, opts, 200)?;
                println!(
                    "  pipeline bench, {} (search trainer transforms, batch {}, {} rayon threads): {:.0} samples/s, {:.1} batches/s",
                    cfg.dataset.name, t.batch_size, r.threads, r.samples_per_s, r.batches_per_s
                );
                if let Some(shape) = synthetic {
                    let (buffer, transforms) = archai::experiment::synthetic_cifar_like(shape)?;
                    let r = archai_data::bench_throughput(&buffer, &transforms, opts, 200)?;
                    println!(
                        "  pipeline bench, generated {shape} (crop pad 4, flip, normalize, cutout 16; batch {}, {} rayon threads): {:.0} samples/s, {:.1} batches/s",
                        t.batch_size, r.threads, r.samples_per_s, r.batches_per_s
                    );
                }
            }
        }
        Command::Bench(BenchCommand::SearchStep {
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
        }) => {
            tch::set_num_threads(*threads);
            let conf = conf.clone().unwrap_or_else(|| PathBuf::from(format!("confs/algos/{algorithm}.yaml")));
            anyhow::ensure!(
                conf.is_file(),
                "{}: no such experiment; pass --conf PATH for an algorithm without confs/algos/NAME.yaml",
                conf.display()
            );
            let opts = archai::config::LoadOptions { toy: false, toy_file: None, sets: sets.clone() };
            let cfg: archai::config::ExperimentConfig =
                archai::config::from_tree(&archai::config::load_tree(&conf, &opts)?)?;
            let reg = registry(&cli)?;
            let options = archai::bench::SearchStepOptions {
                batch: *batch,
                steps: *steps,
                warmup: *warmup,
                seed: *seed,
                channels_last: *channels_last,
                precision: *precision,
            };
            let r = archai::bench::search_step(&reg, &cfg.nas.search, options)?;
            if *json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} search step ({} architecture training), batch {}, {} threads, channels_last {}, {:?}: {:.3} s/step (arch {:.3} + weight {:.3}), {:.1} images/s, {} weights + {} architecture parameters, {:.1} candidate forwards per step over {} mixed edges, peak RSS {:.0} MB (median of {} after {} warm-up)",
                    r.algorithm, r.arch_training, r.batch, r.threads, r.channels_last, r.precision, r.sec_per_step, r.arch_sec, r.weight_sec,
                    r.images_per_sec, r.params_weights, r.params_arch, r.candidate_forwards_per_step, r.mixed_edges, r.peak_rss_mb, r.steps, r.warmup
                );
            }
        }
        Command::Bench(BenchCommand::Train {
            model,
            conf,
            batch,
            steps,
            warmup,
            threads,
            channels_last,
            precision,
            json,
        }) => {
            tch::set_num_threads(*threads);
            let cfg: archai::config::ExperimentConfig =
                archai::config::from_tree(&archai::config::load_tree(conf, &archai::config::LoadOptions::default())?)?;
            let reg = registry(&cli)?;
            let data = archai::experiment::load_dataset(&reg, &cfg.dataset)?;
            let text = std::fs::read_to_string(model).with_context(|| format!("reading {}", model.display()))?;
            let desc = archai_model_desc::ModelDesc::from_yaml(&text, &model.display().to_string())?;
            let options = archai::bench::TrainBenchOptions {
                batch: *batch,
                steps: *steps,
                warmup: *warmup,
                channels_last: *channels_last,
                precision: *precision,
            };
            let r = archai::bench::train_throughput(&reg, &desc, &data, options)?;
            if *json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} ({} weights) on {}: {:.1} samples/s, {:.4} s/step, batch {}, {} threads, channels_last {}, {:?} (median of {} steps after {})",
                    r.model, r.params, cfg.dataset.name, r.samples_per_s, r.sec_per_step, r.batch, r.threads, r.channels_last, r.precision, r.steps, r.warmup
                );
            }
        }
        Command::Bench(BenchCommand::Boundary { iters, repeats, threads, json }) => {
            tch::set_num_threads(*threads);
            let reg = registry(&cli)?;
            let rows = archai::bench::boundary(&reg, *iters, *repeats)?;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. } | Command::Train { .. }) {
        // `run` and `train` set up console + log.txt logging once the run directory exists.
        let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).without_time().try_init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
