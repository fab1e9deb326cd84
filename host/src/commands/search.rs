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
}

/// Keys a resumed search may change: they do not change what was computed.
const SAFE_TO_CHANGE: &[&str] = &["common.threads", "common.runs_dir"];

/// Loads a search experiment: its toy file is confs/search/toy.yaml (the experiment's own
/// `toy_overrides:` come on top), not the trainer-oriented confs/toy.yaml.
pub fn load(conf: &Path, o: &Overrides) -> Result<DiscreteExperiment> {
    let mut sets = o.sets.clone();
    if let Some(seed) = o.seed {
        sets.push(format!("common.seed={seed}"));
    }
    let toy_file = archai_config::find_toy_file(conf)
        .and_then(|t| t.parent().map(|d| d.join("search/toy.yaml")))
        .filter(|p| p.is_file());
    if o.toy && toy_file.is_none() {
        bail!("--toy: no confs/search/toy.yaml above {}", conf.display());
    }
    let opts = crate::config::LoadOptions { toy: o.toy, toy_file, sets };
    let tree = crate::config::load_tree(conf, &opts)?;
    Ok(crate::config::from_tree(&tree)?)
}

pub fn run(plugin_dirs: &[PathBuf], args: &Args) -> Result<()> {
    let cfg = load(&args.conf, &args.overrides)?;
    cfg.search.validate()?;
    let reg = registry(plugin_dirs)?;
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
        let recorded: DiscreteExperiment =
            yaml_serde::from_str(&text).context("the run's config_used.yaml is not a search configuration")?;
        let changed = crate::resume::changes(&serde_json::to_value(&recorded)?, &serde_json::to_value(&cfg)?);
        let refused: Vec<String> = changed
            .iter()
            .filter(|c| !SAFE_TO_CHANGE.contains(&c.key.as_str()))
            .map(|c| format!("{} ({} -> {})", c.key, c.before, c.now))
            .collect();
        if !refused.is_empty() {
            bail!(
                "--resume: the configuration differs from the run's config_used.yaml in {}; resume with the same settings (only {} may change) or start a new run",
                refused.join(", "),
                SAFE_TO_CHANGE.join(", ")
            );
        }
    }
    std::fs::write(&used, cfg.to_full_yaml()).with_context(|| format!("writing {}", used.display()))?;
    tracing::info!("run directory: {}", run_dir.path().display());
    crate::discrete::run(&cfg, &reg, run_dir.path(), args.resume)?;
    tracing::info!("done: results in {}/log.yaml", run_dir.path().display());
    Ok(())
}
