//! `archai train`: any model description with the general trainer, then its test figures.
use super::common::Overrides;
use std::path::PathBuf;

/// Train any model description (handcrafted or searched) with the general trainer, then test
/// it. Uses confs/train.yaml (eval trainer of DARTS) unless --conf is given.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ModelDesc YAML (e.g. confs/models/resnet_small.yaml).
    pub model: PathBuf,
    /// A dataset name from confs/datasets/ (fashion_mnist, cifar10, ...) or a dataset YAML file.
    #[arg(long, default_value = "fashion_mnist")]
    pub dataset: String,
    /// Experiment YAML supplying the trainer and common settings.
    #[arg(long, default_value = "confs/train.yaml")]
    pub conf: PathBuf,
    #[command(flatten)]
    pub overrides: Overrides,
    /// Run directory (default: <common.runs_dir>/<experiment_name>-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (give the same flags as the first time).
    #[arg(long)]
    pub resume: bool,
}

pub fn run(plugin_dirs: &[PathBuf], args: &Args) -> anyhow::Result<()> {
    let Args { model, dataset, conf, overrides, out, resume } = args;
    let mut overrides = overrides.clone();
    overrides.sets.insert(0, super::common::dataset_set(dataset, conf)?);
    overrides.sets.insert(1, format!("nas.eval.model_desc={}", serde_json::Value::String(model.display().to_string())));
    super::run::run_experiment(plugin_dirs, conf, &overrides, out, *resume)
}
