//! What several commands share: the plugin directories and the config overrides.
use crate::plugins::{default_plugin_dirs, PluginRegistry};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Loads the plugins of `--plugin-dir` (or the default directories when none was given).
pub fn registry(plugin_dirs: &[PathBuf]) -> anyhow::Result<PluginRegistry> {
    let dirs = if plugin_dirs.is_empty() { default_plugin_dirs() } else { plugin_dirs.to_vec() };
    PluginRegistry::scan(&dirs).context("loading plugins")
}

/// `--toy`, `--set` and `--seed`, as every command that reads an experiment takes them.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Overrides {
    /// Merge the toy file (confs/toy.yaml; confs/search/toy.yaml for outer-loop searches): tiny
    /// budgets, same code path.
    #[arg(long)]
    pub toy: bool,
    /// Override a key: --set nas.search.trainer.epochs=3 (value parsed as YAML). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Shorthand for --set common.seed=N.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Overrides {
    /// What the loader takes from these flags (`--seed N` as the last `--set`); `toy_file`
    /// `None` finds confs/toy.yaml.
    pub fn load_options(&self, toy_file: Option<PathBuf>) -> crate::config::LoadOptions {
        let mut sets = self.sets.clone();
        if let Some(seed) = self.seed {
            sets.push(format!("common.seed={seed}"));
        }
        crate::config::LoadOptions { toy: self.toy, toy_file, sets }
    }

    /// The experiment at `conf` with these overrides: the resolved tree and its typed form.
    pub fn load(
        &self,
        conf: &Path,
    ) -> anyhow::Result<(crate::config::ResolvedConfig, crate::config::ExperimentConfig)> {
        let resolved = crate::config::load_tree(conf, &self.load_options(None))?;
        let mut typed: crate::config::ExperimentConfig = crate::config::from_tree(&resolved)?;
        typed.toy_applied |= resolved.toy_file.is_some();
        Ok((resolved, typed))
    }
}

/// Parses a precision name for clap.
pub fn parse_precision(s: &str) -> Result<crate::train::precision::Precision, String> {
    serde_json::from_value(serde_json::json!(s)).map_err(|_| format!("`{s}`: expected fp32, bf16 or fp16"))
}

/// The `--set` that replaces an experiment's whole `dataset:` section with the one of `dataset`:
/// a file (`*.yaml`) or a name in the `datasets/` folder of the `confs/` that holds `conf`
/// (`confs/datasets/NAME.yaml`). A whole section, so no key of the inherited dataset leaks in.
pub fn dataset_set(dataset: &str, conf: &Path) -> anyhow::Result<String> {
    let ds_file = if dataset.ends_with(".yaml") || dataset.ends_with(".yml") {
        PathBuf::from(dataset)
    } else {
        confs_dir(conf).join("datasets").join(format!("{dataset}.yaml"))
    };
    let text = std::fs::read_to_string(&ds_file)
        .with_context(|| format!("--dataset {dataset}: cannot read {}", ds_file.display()))?;
    let tree: serde_json::Value =
        yaml_serde::from_str(&text).with_context(|| format!("parsing {}", ds_file.display()))?;
    let section =
        tree.get("dataset").ok_or_else(|| anyhow::anyhow!("{} has no `dataset:` section", ds_file.display()))?;
    Ok(format!("dataset={section}"))
}

/// Whether `path` is a dataset file (a `dataset:` section and nothing that makes an experiment).
pub fn is_dataset_file(path: &Path) -> bool {
    let Some(tree) =
        std::fs::read_to_string(path).ok().and_then(|t| yaml_serde::from_str::<serde_json::Value>(&t).ok())
    else {
        return false;
    };
    tree.get("dataset").is_some() && ["common", "nas", "__include__"].iter().all(|k| tree.get(k).is_none())
}

/// The `confs/` folder that holds `conf` (the nearest ancestor of that name), else `confs`.
pub fn confs_dir(conf: &Path) -> PathBuf {
    conf.ancestors()
        .find(|d| d.file_name().is_some_and(|n| n == "confs"))
        .map_or_else(|| PathBuf::from("confs"), Path::to_path_buf)
}

/// The device a `--device` option names (cpu, cuda, cuda:N, auto), its errors prefixed with the
/// option.
pub fn device_option(name: &str) -> anyhow::Result<tch::Device> {
    crate::experiment::parse_device(name).map_err(|e| anyhow::anyhow!("--device: {e}"))
}
