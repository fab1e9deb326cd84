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
    /// Continue the run in --out from its last checkpoint.
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
/// log.txt logging start once the run directory exists.
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
    let run_dir =
        crate::runlog::RunDir::create(&cfg.common.runs_dir, &cfg.common.experiment_name, out.clone(), resume)?;
    let _logging = archai_runlog::init_logging(Some(&run_dir.join("log.txt")), archai_runlog::Verbosity::Normal)?;
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
    tracing::info!("run directory: {}", run_dir.path().display());
    crate::experiment::run(&cfg, &reg, run_dir.path(), resume, &resume_changes)?;
    tracing::info!("done: results in {}/log.yaml", run_dir.path().display());
    Ok(())
}
