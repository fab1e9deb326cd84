//! The configuration of an outer-loop search (`archai search`).
use crate::config::{CommonConfig, ComponentRef, DatasetConfig};
use crate::train::TrainerConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole `archai search` experiment.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DiscreteExperiment {
    pub common: CommonConfig,
    pub dataset: DatasetConfig,
    pub search: DiscreteSearchConfig,
    #[serde(default)]
    pub toy: bool,
}

impl DiscreteExperiment {
    /// Every default written out: what config_used.yaml records.
    pub fn to_full_yaml(&self) -> String {
        yaml_serde::to_string(self).expect("the typed configuration serializes to YAML")
    }
}

/// `search:`.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DiscreteSearchConfig {
    /// The search space plugin and its config.
    pub space: ComponentRef,
    /// The searcher plugin and its config.
    pub searcher: ComponentRef,
    pub objectives: Vec<ObjectiveConfig>,
    /// How `val_top1` trains a candidate (required when it is an objective).
    #[serde(default)]
    pub training: Option<BudgetTraining>,
    #[serde(default)]
    pub latency: LatencyConfig,
    #[serde(default)]
    pub memory: MemoryConfig,
    /// Checks in a row that may fail the constraints, while no architecture has met them yet,
    /// before the search stops with an error naming the constraints.
    #[serde(default = "max_invalid")]
    pub max_invalid_tries: usize,
    /// A bound on iterations, whatever the searcher says.
    #[serde(default = "max_iterations")]
    pub max_iterations: u32,
    /// Hypervolume reference point, per objective (its own units and direction); default: the
    /// worst values of the first evaluated iteration, pushed out by 10% of their range.
    #[serde(default)]
    pub hypervolume_reference: Option<BTreeMap<String, f64>>,
}

fn max_invalid() -> usize {
    2000
}
fn max_iterations() -> u32 {
    1000
}

/// The objectives the host computes.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ObjectiveKind {
    /// Weights of the network (auxiliary head excluded).
    Params,
    /// Multiply-accumulates per image.
    Macs,
    /// Bytes of fp32 op outputs for one image.
    ActivationBytes,
    /// Median forward latency at `latency.batch`, ms, `latency.threads` threads.
    LatencyMs,
    /// Growth of the process's resident high-water mark over one training step (forward and
    /// backward, batch `memory.batch`), MiB.
    TrainPeakMb,
    /// Validation top-1 after training with `training` at the candidate's budget.
    ValTop1,
}

impl ObjectiveKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectiveKind::Params => "params",
            ObjectiveKind::Macs => "macs",
            ObjectiveKind::ActivationBytes => "activation_bytes",
            ObjectiveKind::LatencyMs => "latency_ms",
            ObjectiveKind::TrainPeakMb => "train_peak_mb",
            ObjectiveKind::ValTop1 => "val_top1",
        }
    }
    /// Cheap objectives are computed for every candidate and may carry constraints; the others
    /// only for candidates that meet every constraint.
    pub fn cheap(self) -> bool {
        self != ObjectiveKind::ValTop1
    }
    /// Whether the value depends on the training budget (cache key).
    pub fn budgeted(self) -> bool {
        self == ObjectiveKind::ValTop1
    }
    fn higher_is_better_by_default(self) -> bool {
        self == ObjectiveKind::ValTop1
    }
}

/// One objective of the search.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveConfig {
    pub name: ObjectiveKind,
    /// Default: true for `val_top1`, false for the costs.
    #[serde(default)]
    pub higher_is_better: Option<bool>,
    /// `[lo, hi]`, closed: candidates outside are invalid and never trained.
    #[serde(default)]
    pub constraint: Option<[f64; 2]>,
}

impl ObjectiveConfig {
    pub fn higher_is_better(&self) -> bool {
        self.higher_is_better.unwrap_or(self.name.higher_is_better_by_default())
    }
}

/// How `val_top1` trains a candidate: `trainer.epochs` × the candidate's budget (at least 1).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct BudgetTraining {
    pub trainer: TrainerConfig,
    /// Fraction of the (subset of the) training split held out for `val_top1`.
    pub val_ratio: f64,
    /// Train on a stratified subset of this many training images (null: all).
    #[serde(default)]
    pub train_subset: Option<usize>,
}

/// `latency:`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    pub batch: i64,
    pub runs: usize,
    pub threads: i32,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self { batch: 1, runs: 10, threads: 1 }
    }
}

/// `memory:`: the batch of the measured training step (`train_peak_mb`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    pub batch: i64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self { batch: 32 }
    }
}

impl DiscreteSearchConfig {
    /// Checks what can be checked before anything runs.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.objectives.is_empty(), "search.objectives: name at least one objective");
        let mut seen = std::collections::BTreeSet::new();
        for o in &self.objectives {
            anyhow::ensure!(seen.insert(o.name), "search.objectives: `{}` is listed twice", o.name.name());
            if let Some([lo, hi]) = o.constraint {
                anyhow::ensure!(
                    o.name.cheap(),
                    "search.objectives: `{}` cannot carry a constraint (only params, macs, activation_bytes, latency_ms and train_peak_mb can: a constraint decides whether a candidate is trained)",
                    o.name.name()
                );
                anyhow::ensure!(
                    lo <= hi,
                    "search.objectives: constraint of `{}` is [{lo}, {hi}]: lo > hi",
                    o.name.name()
                );
            }
        }
        if self.objectives.iter().any(|o| o.name == ObjectiveKind::ValTop1) {
            let t = self.training.as_ref().ok_or_else(|| {
                anyhow::anyhow!("search.training: `val_top1` is an objective, so the search needs `training: {{trainer, val_ratio}}`")
            })?;
            t.trainer.validate().map_err(|e| anyhow::anyhow!("search.training.{e}"))?;
            anyhow::ensure!(
                t.val_ratio > 0.0 && t.val_ratio < 1.0,
                "search.training.val_ratio = {}: must be in (0, 1) (val_top1 needs a validation split)",
                t.val_ratio
            );
        }
        anyhow::ensure!(
            self.latency.batch > 0 && self.latency.runs > 0,
            "search.latency: batch and runs must be positive"
        );
        anyhow::ensure!(self.max_invalid_tries > 0, "search.max_invalid_tries must be positive");
        if let Some(r) = &self.hypervolume_reference {
            for o in &self.objectives {
                anyhow::ensure!(
                    r.contains_key(o.name.name()),
                    "search.hypervolume_reference: no value for `{}`",
                    o.name.name()
                );
            }
        }
        Ok(())
    }
}
