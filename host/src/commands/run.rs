//! `archai run`: one experiment, search (if configured), finalize, eval, into a run directory.
use super::common::{registry, Overrides};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Run an experiment: search (if configured), finalize, eval; everything goes to RUN_DIR.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Experiment YAML; without one, DARTS as the paper ran it (add --toy for a few-minute run).
    #[arg(default_value = "confs/algos/darts.yaml")]
    pub conf: PathBuf,
    #[command(flatten)]
    pub overrides: Overrides,
    /// Replace the experiment's dataset: a name from confs/datasets/ (cifar10, mnist, ...) or a
    /// dataset YAML file (its whole `dataset:` section replaces the inherited one).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Run directory (default: <common.runs_dir>/<experiment_name>-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (give the same flags as the first time,
    /// `--toy` included: only epochs, threads and runs_dir may change).
    #[arg(long)]
    pub resume: bool,
}

pub fn run(plugin_dirs: &[PathBuf], args: &Args) -> anyhow::Result<()> {
    let mut overrides = args.overrides.clone();
    if let Some(dataset) = &args.dataset {
        overrides.sets.insert(0, super::common::dataset_set(dataset, &args.conf)?);
    }
    run_experiment(plugin_dirs, &args.conf, &overrides, &args.out, args.resume)
}

/// Loads `conf` with `overrides`, writes config_used.yaml and runs the experiment; console and
/// log.txt logging start once the run directory exists. Started as one rank of a data-parallel
/// job (WORLD_SIZE > 1, as `archai launch` and torchrun set it), the process first joins the
/// others; rank 0 makes and writes the run directory, the other ranks learn its path from it.
pub fn run_experiment(
    plugin_dirs: &[PathBuf],
    conf: &Path,
    overrides: &Overrides,
    out: &Option<PathBuf>,
    resume: bool,
) -> anyhow::Result<()> {
    let (_, cfg) = overrides.load(conf)?;
    let reg = registry(plugin_dirs)?;
    crate::interrupt::install();
    let bucket = cfg.common.dist_bucket_mib;
    if !(bucket.is_finite() && bucket > 0.0) {
        anyhow::bail!("common.dist_bucket_mib = {bucket}: a gradient bucket needs a positive size in MiB (default 4)");
    }
    let sync = crate::train::GradSync::from_common(&cfg.common);
    let job = archai_dist::ProcessGroup::join_from_env(std::time::Duration::from_secs(cfg.common.dist_timeout_s))?
        .map(|g| crate::train::DataParallel::new(g, sync));
    let group = job.as_ref().map(crate::train::DataParallel::group);
    let strategy = crate::train::Strategy::over(job.as_ref());
    let made = match strategy.rank() {
        0 => crate::runlog::RunDir::create(&cfg.common.runs_dir, &cfg.common.experiment_name, out.clone(), resume)
            .map(|d| d.path().to_path_buf()),
        _ => Ok(PathBuf::new()),
    };
    let shared_run_dir = match group {
        Some(g) => {
            // Rank 0 sends its directory, or an empty path when it could not make one (it
            // reports why); the others stop instead of waiting for collectives that never come.
            let sent = made.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            let path = PathBuf::from(String::from_utf8_lossy(&g.broadcast_bytes(0, sent.as_bytes())?).into_owned());
            if strategy.rank() > 0 && path.as_os_str().is_empty() {
                anyhow::bail!("rank 0 could not create the run directory (its output says why)");
            }
            made?;
            path
        }
        None => made?,
    };
    let rank = crate::experiment::Rank { strategy, shared_run_dir: shared_run_dir.clone() };
    if strategy.rank() > 0 {
        return run_as_helper_rank(&cfg, &reg, resume, &rank);
    }
    let run_dir = shared_run_dir;
    let _logging = archai_runlog::init_logging(Some(&run_dir.join("log.txt")), archai_runlog::Verbosity::Normal)?;
    if let Some(g) = group {
        tracing::info!("data-parallel: {} ranks (this is rank 0; the others log warnings only)", g.world());
    }
    let used = run_dir.join("config_used.yaml");
    let mut resume_changes = Vec::new();
    if resume && used.is_file() {
        let recorded = std::fs::read_to_string(&used).with_context(|| format!("reading {}", used.display()))?;
        resume_changes = crate::resume::check(&recorded, &cfg)?;
        for c in &resume_changes {
            tracing::info!("resume: {} changed from {} to {}", c.key, c.before, c.now);
        }
    }
    if !resume || !used.is_file() || !resume_changes.is_empty() {
        // The record follows the run: after an accepted change it holds the new values.
        std::fs::write(&used, cfg.to_full_yaml()).with_context(|| format!("writing {}", used.display()))?;
    }
    tracing::info!("run directory: {}", run_dir.display());
    crate::experiment::run(&cfg, &reg, &run_dir, resume, &resume_changes, &rank)?;
    tracing::info!("done: results in {}/log.yaml", run_dir.display());
    Ok(())
}

/// A rank other than 0: the same experiment, its own files in a scratch directory (removed at
/// the end) so that the run directory holds rank 0's alone.
fn run_as_helper_rank(
    cfg: &crate::config::ExperimentConfig,
    reg: &crate::plugins::PluginRegistry,
    resume: bool,
    rank: &crate::experiment::Rank,
) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("archai-rank{}-{}", rank.strategy.rank(), std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let result = (|| {
        let _logging = archai_runlog::init_logging(Some(&scratch.join("log.txt")), archai_runlog::Verbosity::Quiet)?;
        crate::experiment::run(cfg, reg, &scratch, resume, &[], rank)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
