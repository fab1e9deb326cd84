//! `archai search`: an outer-loop (discrete) search, e.g. a multi-objective evolution or the
//! Pareto sweep: a search space and a searcher from plugins, objectives computed by the host.
use super::common::{registry, Overrides};
use crate::discrete::config::DiscreteExperiment;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Run an outer-loop search (search space x searcher x objectives; see confs/search/): per
/// iteration search_state_<i>.csv, the front's models and Pareto plots in RUN_DIR.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Search YAML (e.g. confs/search/evolution_pareto.yaml).
    pub conf: PathBuf,
    #[command(flatten)]
    pub overrides: Overrides,
    /// Run directory (default: <common.runs_dir>/<experiment_name>-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the search in --out after its last finished iteration (nothing is evaluated
    /// twice: values come from the run's cache).
    #[arg(long)]
    pub resume: bool,
    /// Candidates trained at once, each in its own worker process; the CPU threads
    /// (common.threads, else all) are split between them.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
}

/// `archai search-eval` (run by `archai search --jobs N`): trains one candidate for `val_top1`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The search's config_used.yaml.
    pub config: PathBuf,
    /// The candidate's model description.
    #[arg(long)]
    pub desc: PathBuf,
    #[arg(long)]
    pub budget: f64,
    /// Directory for its log.yaml, checkpoint and result.json.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub threads: i32,
    /// A warm start (JSON: source checkpoint and renames) written by the search.
    #[arg(long)]
    pub warm_start: Option<PathBuf>,
}

/// Trains one candidate and writes `result.json` (`{"val_top1": ...}`) atomically.
pub fn eval_worker(plugin_dirs: &[PathBuf], args: &EvalArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    let cfg: DiscreteExperiment = yaml_serde::from_str(&text).context("not a search configuration")?;
    tch::set_num_threads(args.threads.max(1));
    let reg = registry(plugin_dirs)?;
    let data = crate::experiment::load_dataset(&reg, &cfg.dataset)?;
    let desc_text = std::fs::read_to_string(&args.desc).with_context(|| format!("reading {}", args.desc.display()))?;
    let desc = archai_model_desc::ModelDesc::from_yaml(&desc_text, &args.desc.display().to_string())?;
    let evaluator = crate::discrete::objectives::Evaluator {
        reg: &reg,
        latency: cfg.search.latency.clone(),
        memory_batch: cfg.search.memory.batch,
        training: cfg.search.training.as_ref(),
        data: Some(&data),
        device: crate::experiment::device_of(&cfg.common.device)?,
        seed: cfg.common.seed,
        channels_last: cfg.common.channels_last,
    };
    let warm: Option<crate::discrete::warm::WarmSource> = match &args.warm_start {
        Some(p) => Some(
            serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("{} is not a warm start", p.display()))?,
        ),
        None => None,
    };
    let v = evaluator.val_top1(&desc, args.budget, &args.out, warm.as_ref())?;
    let tmp = args.out.join(".result.json.tmp");
    std::fs::write(&tmp, serde_json::to_string(&crate::discrete::WorkerResult { val_top1: v })?)?;
    std::fs::rename(&tmp, args.out.join("result.json"))?;
    Ok(())
}

/// Keys a resumed search may change: they do not change what was computed.
const SAFE_TO_CHANGE: &[&str] = &["common.threads", "common.runs_dir"];

/// Loads a search experiment: its toy file is confs/search/toy.yaml (the experiment's own
/// `toy_overrides:` come on top), not the trainer-oriented confs/toy.yaml.
pub fn load(conf: &Path, o: &Overrides) -> Result<DiscreteExperiment> {
    let toy_file = archai_config::find_toy_file(conf)
        .and_then(|t| t.parent().map(|d| d.join("search/toy.yaml")))
        .filter(|p| p.is_file());
    if o.toy && toy_file.is_none() {
        bail!("--toy: no confs/search/toy.yaml above {}", conf.display());
    }
    let tree = crate::config::load_tree(conf, &o.load_options(toy_file))?;
    Ok(crate::config::from_tree(&tree)?)
}

pub fn run(plugin_dirs: &[PathBuf], args: &Args) -> Result<()> {
    let cfg = load(&args.conf, &args.overrides)?;
    cfg.search.validate()?;
    let reg = registry(plugin_dirs)?;
    crate::interrupt::install();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = if cfg.common.threads > 0 { cfg.common.threads as usize } else { cpus };
    let mut ranks =
        crate::discrete::ranks::SearchRanks::join(std::time::Duration::from_secs(cfg.common.dist_timeout_s))?;
    if ranks.rank > 0 {
        // Rank 0 runs the searcher and owns the run directory (and its `--jobs`); this rank
        // trains one candidate at a time.
        return ranks.serve(plugin_dirs, total);
    }
    let run_dir = crate::runlog::RunDir::create(
        &cfg.common.runs_dir,
        &cfg.common.experiment_name,
        args.out.clone(),
        args.resume,
    )?;
    let _logging = archai_runlog::init_logging(Some(&run_dir.join("log.txt")), archai_runlog::Verbosity::Normal)?;
    let used = run_dir.join("config_used.yaml");
    if args.resume && used.is_file() {
        let text = std::fs::read_to_string(&used).with_context(|| format!("reading {}", used.display()))?;
        crate::resume::check_config(&text, &cfg, SAFE_TO_CHANGE)?;
    }
    std::fs::write(&used, cfg.to_full_yaml()).with_context(|| format!("writing {}", used.display()))?;
    tracing::info!("run directory: {}", run_dir.path().display());
    anyhow::ensure!(args.jobs >= 1, "--jobs must be at least 1");
    let remote = ranks.lead(run_dir.path())?;
    if !remote.is_empty() {
        tracing::info!("{} other rank(s) train candidates too", remote.len());
    }
    let workers = crate::discrete::Workers {
        jobs: args.jobs,
        plugin_dirs: plugin_dirs.to_vec(),
        threads: (total / args.jobs).max(1),
        remote,
    };
    let result = crate::discrete::run(&cfg, &reg, run_dir.path(), args.resume, &workers);
    ranks.release(&workers.remote);
    result?;
    tracing::info!("done: results in {}/log.yaml", run_dir.path().display());
    Ok(())
}
