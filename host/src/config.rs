//! Typed configuration of a run. Every knob is here, so the saved `config_used.yaml` is the full
//! record of the run. Loading (includes, `_copy`, `--set`, toy mode) is `archai-config`'s job.
use crate::train::TrainerConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use archai_config::{from_tree, load_tree, to_yaml_string, ConfigError, LoadOptions, ResolvedConfig};

/// The whole experiment.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub common: CommonConfig,
    pub dataset: DatasetConfig,
    pub nas: NasConfig,
    /// Toy mode flag (merged by the loader; false afterwards).
    #[serde(default)]
    pub toy: bool,
    /// Record only: the toy budgets are already merged into this configuration (it came from a
    /// `--toy` run). Loading it does not merge them again, so re-running it repeats the run.
    #[serde(default)]
    pub toy_applied: bool,
}

impl ExperimentConfig {
    /// The configuration with every default written out: what `config_used.yaml` holds, so a
    /// run's record does not depend on the defaults of the program version that reads it.
    pub fn to_full_yaml(&self) -> String {
        yaml_serde::to_string(self).expect("the typed configuration serializes to YAML")
    }
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CommonConfig {
    pub experiment_name: String,
    pub seed: u64,
    /// `cpu` or `cuda` (`cuda:N`).
    #[serde(default = "cpu")]
    pub device: String,
    /// libtorch intra-op threads; 0 keeps libtorch's default.
    #[serde(default)]
    pub threads: i32,
    /// Where default run directories are created.
    #[serde(default = "runs")]
    pub runs_dir: PathBuf,
    /// Compute in channels-last memory layout (about 2x faster DARTS steps on CPU here).
    #[serde(default = "yes")]
    pub channels_last: bool,
    /// Data-parallel runs (`archai launch`): how long a rank waits for the others to join and
    /// for a collective to complete before the run fails with an error instead of hanging.
    #[serde(default = "dist_timeout_s")]
    pub dist_timeout_s: u64,
    /// Data-parallel runs: sum a step's gradients over the ranks while its backward pass still
    /// runs (a bucket leaves as soon as its gradients are complete) instead of after it. The
    /// sums are the same either way.
    #[serde(default = "yes")]
    pub dist_overlap: bool,
    /// Data-parallel runs: size of a gradient bucket (fp32 MiB): one collective each.
    #[serde(default = "dist_bucket_mib")]
    pub dist_bucket_mib: f64,
}

fn dist_timeout_s() -> u64 {
    300
}

fn dist_bucket_mib() -> f64 {
    4.0
}

fn cpu() -> String {
    "cpu".into()
}
fn runs() -> PathBuf {
    PathBuf::from("runs")
}

/// `dataset:`: the host's keys; every other key belongs to the adapter, which rejects unknown ones.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DatasetConfig {
    pub name: String,
    pub adapter: String,
    pub num_classes: i64,
    pub channels: i64,
    pub image_size: i64,
    /// Per-channel mean of pixel/255, or `compute` (measured on the train split at load time).
    pub mean: ChannelStat,
    /// Per-channel standard deviation of pixel/255, or `compute`.
    pub std: ChannelStat,
    #[serde(flatten)]
    pub adapter_keys: serde_json::Map<String, serde_json::Value>,
}

impl DatasetConfig {
    /// What the adapter receives: its own keys plus the facts it checks the files against
    /// (`name`, `num_classes`, `channels`, `image_size`); nothing else of the host's.
    pub fn adapter_config(&self) -> serde_json::Value {
        let mut m = self.adapter_keys.clone();
        m.insert("name".into(), self.name.clone().into());
        m.insert("num_classes".into(), self.num_classes.into());
        m.insert("channels".into(), self.channels.into());
        m.insert("image_size".into(), self.image_size.into());
        serde_json::Value::Object(m)
    }
}

/// A per-channel dataset statistic: explicit values or the keyword `compute`.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum ChannelStat {
    Values(Vec<f32>),
    Keyword(StatKeyword),
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatKeyword {
    Compute,
}

impl<'de> Deserialize<'de> for ChannelStat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Values(Vec<f32>),
            Word(String),
        }
        let expected = "a list of per-channel values (e.g. [0.2860]) or `compute`";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(format!("expected {expected}")))? {
            Raw::Values(v) => Ok(ChannelStat::Values(v)),
            Raw::Word(w) if w == "compute" => Ok(ChannelStat::Keyword(StatKeyword::Compute)),
            Raw::Word(w) => Err(serde::de::Error::custom(format!("expected {expected}, got `{w}`"))),
        }
    }
}

/// A component by name with its own configuration (passed to the plugin as JSON).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ComponentRef {
    pub name: String,
    #[serde(default = "empty")]
    pub config: serde_json::Value,
}

fn yes() -> bool {
    true
}

fn empty() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NasConfig {
    pub search: SearchConfig,
    pub eval: EvalConfig,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// false skips the search (the `manual` algorithm: eval of `nas.eval.model_desc`).
    #[serde(default = "yes")]
    pub enabled: bool,
    pub algorithm: ComponentRef,
    pub finalizer: Option<ComponentRef>,
    /// Fraction of the training split held out (stratified) for the architecture step.
    pub val_ratio: f64,
    pub trainer: TrainerConfig,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// A ModelDesc YAML to evaluate instead of the search's result (relative to the working dir).
    #[serde(default)]
    pub model_desc: Option<PathBuf>,
    /// Fraction of the training split held out (stratified) and evaluated after every epoch;
    /// 0 trains on the whole split.
    #[serde(default)]
    pub val_ratio: f64,
    /// Null skips the eval phase.
    pub trainer: Option<TrainerConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_stats_are_values_or_compute() {
        let v: ChannelStat = yaml_serde::from_str("[0.5, 0.25]").unwrap();
        assert_eq!(v, ChannelStat::Values(vec![0.5, 0.25]));
        let c: ChannelStat = yaml_serde::from_str("compute").unwrap();
        assert_eq!(c, ChannelStat::Keyword(StatKeyword::Compute));
        assert_eq!(yaml_serde::to_string(&c).unwrap().trim(), "compute");
        let e = yaml_serde::from_str::<ChannelStat>("comptue").unwrap_err().to_string();
        assert!(e.contains("or `compute`, got `comptue`"), "{e}");
        let e = yaml_serde::from_str::<ChannelStat>("{a: 1}").unwrap_err().to_string();
        assert!(e.contains("expected a list of per-channel values"), "{e}");
    }
}
