//! The one schema of log.yaml. The host writes these types and every reader (`archai report`,
//! `archai reproduce`, the tests) reads them, so a renamed or missing field is a compile error
//! on one side or a parse error naming the key on the other, never a silently empty column.
//!
//! Layout (key paths as [`crate::LogTree`] addresses them):
//!
//! ```text
//! status: running | ok | failed          failure: {phase, error}
//! run: RunInfo                           (with run/environment: Environment)
//! dataset: DatasetInfo
//! search | eval:
//!   epochs: {N: EpochRecord}             (train, val, algorithm_* hook outputs)
//!   summary: SearchSummary | EvalSummary
//! resume_changes: {N: [..]}              duration_s: f64
//! ```
//!
//! What algorithm plugins log (`algorithm_start`, `algorithm`, `algorithm_after_step`,
//! `algorithm_end`) is theirs: the schema keeps it as free YAML, and readers treat its scalar
//! leaves generically, never by name.
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use yaml_serde::Value;

use crate::error::{Result, RunLogError};

/// How a run ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Under way, or killed before it could record an end.
    Running,
    /// Finished every configured phase.
    Ok,
    /// Stopped by an error; [`RunRecord::failure`] says where and why.
    Failed,
    /// Stopped by SIGINT or SIGTERM; [`RunRecord::failure`] says where. `--resume` continues it.
    Interrupted,
}

/// The phase a failed run was in and its error message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// `setup`, `dataset`, `search` or `eval`.
    pub phase: String,
    /// The error chain, as printed.
    pub error: String,
}

/// The whole of log.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// How the run ended.
    pub status: RunStatus,
    /// Set when `status` is `failed` or `interrupted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Written once the configuration passed its checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    /// Written once the dataset is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetInfo>,
    /// The search phase, when the run had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<PhaseRecord<SearchSummary>>,
    /// The evaluation phase, when the run had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<PhaseRecord<EvalSummary>>,
    /// An outer-loop search (`archai search`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrete: Option<DiscreteRecord>,
    /// Where the initial weights came from, when the run started from another model's
    /// (a Petridish child from its parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<WarmStartRecord>,
    /// Settings changed at each `--resume`, in order (see `archai run --resume`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resume_changes: BTreeMap<u64, Vec<ResumeChange>>,
    /// Wall time of the last attempt, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
}

/// The tensors a warm start carried from its source checkpoint, by the child's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmStartRecord {
    /// The checkpoint the weights came from.
    pub source: String,
    /// Copied as they were.
    pub carried: Vec<String>,
    /// Grew along their input dimension: the source fills the leading part, zeros the rest.
    #[serde(default)]
    pub extended: Vec<String>,
    /// The child's own (initialized as usual): parts the child added.
    pub new: Vec<String>,
    /// Source tensors the child has no place for (candidates a search did not keep).
    #[serde(default)]
    pub dropped: Vec<String>,
    /// `(source prefix, child prefix)` renames applied before matching names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<(String, String)>,
}

/// A setting changed when a run was resumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeChange {
    /// Dotted config key.
    pub key: String,
    /// Value recorded before.
    pub before: Value,
    /// Value the run continued with.
    pub now: Value,
}

/// What ran, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInfo {
    /// `common.experiment_name`.
    pub experiment: String,
    /// `common.seed`.
    pub seed: u64,
    /// `common.device` as configured (`auto`, `cpu`, `cuda:N`).
    pub device: String,
    /// The device actually used.
    pub device_used: String,
    /// libtorch intra-op threads in use.
    pub threads: i64,
    /// Software and hardware of the run, for comparability checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
}

/// The environment a run executed in: what `archai report` compares across runs before it
/// compares their numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Version of the archai binary.
    pub archai_version: String,
    /// Git commit the binary was built from (`unknown` outside a checkout).
    pub git_commit: String,
    /// libtorch version the binary was built against.
    pub libtorch_version: String,
    /// The libtorch library file the process loaded.
    pub libtorch_library: String,
    /// libtorch intra-op threads.
    pub threads: i64,
    /// CPU model name.
    pub cpu_model: String,
    /// The CPU's vector extensions that libtorch's and oneDNN's kernels choose their code by
    /// (`avx2 fma avx512f ...`): one model name can hide machines that differ here, and then
    /// compute with other kernels (other rounding, other speed). Absent in logs written before
    /// it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_features: Option<String>,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// The device used (`Cpu`, `Cuda(0)`).
    pub device: String,
    /// Precision of the search and eval trainers (`fp32`, `bf16`, `fp16`).
    pub precision: BTreeMap<String, String>,
    /// Every plugin library loaded.
    pub plugins: Vec<PluginRecord>,
    /// What the process saw of CUDA (absent in logs written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<CudaEnvironment>,
    /// The `malloc` serving the process (libtorch's CPU tensors included): `tcmalloc (linked
    /// into archai)` or `glibc (libc.so.6)`. Peak memory differs by about a fifth between them.
    /// Absent in logs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocator: Option<String>,
}

/// CUDA as the process saw it: whether libtorch's CUDA backend was loaded, the versions of the
/// CUDA runtime, driver and cuDNN, and every visible device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CudaEnvironment {
    /// libtorch_cuda is mapped into the process (without it CUDA never registers).
    pub libtorch_cuda_loaded: bool,
    /// CUDA runtime libtorch uses (`13.0`); absent when libtorch has no CUDA runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// Newest CUDA version the installed driver supports (`13.0`); absent without a driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// cuDNN libtorch loaded (`9.15.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cudnn_version: Option<String>,
    /// Visible CUDA devices (none on a machine without a GPU).
    #[serde(default)]
    pub devices: Vec<CudaDevice>,
}

/// One visible CUDA device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CudaDevice {
    /// Index as in `cuda:N`.
    pub index: usize,
    /// Device name (`NVIDIA H200`).
    pub name: String,
    /// Total device memory, MiB.
    pub total_memory_mib: u64,
    /// Compute capability (`9.0`).
    pub compute_capability: String,
    /// Streaming multiprocessors.
    pub multiprocessors: i64,
}

/// One loaded plugin library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRecord {
    /// The plugin crate's name.
    pub name: String,
    /// The plugin crate's version.
    pub version: String,
    /// File name of the library.
    pub file: String,
    /// SHA-256 of the library file, hex.
    pub sha256: String,
}

/// The dataset as loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetInfo {
    /// `dataset.name`.
    pub name: String,
    /// Training samples (before any train/val split).
    pub train: usize,
    /// Test samples.
    pub test: usize,
    /// C, H, W.
    pub shape: Vec<usize>,
    /// Class names, by label.
    pub classes: Vec<String>,
    /// Per-channel mean used for normalisation.
    pub mean: Vec<f64>,
    /// Per-channel standard deviation used for normalisation.
    pub std: Vec<f64>,
}

/// A trained phase: one record per finished epoch, and a summary once the phase ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct PhaseRecord<S> {
    /// Finished epochs, from 0.
    #[serde(default)]
    pub epochs: BTreeMap<u64, EpochRecord>,
    /// Written when the phase finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<S>,
}

/// One epoch of a phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochRecord {
    /// Training figures of the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainEpoch>,
    /// Validation after the epoch, when the phase has a validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<Metrics>,
    /// The algorithm's `before_epoch` output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm_start: Option<Value>,
    /// Mean of the algorithm's `before_step` outputs over the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Value>,
    /// Mean of the algorithm's `after_step` outputs over the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm_after_step: Option<Value>,
    /// The algorithm's `after_epoch` output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm_end: Option<Value>,
}

impl EpochRecord {
    /// The numeric scalars the algorithm logged at the end of the epoch (`algorithm_end`'s
    /// top-level numbers), by key. Readers plot these without knowing their names.
    pub fn algorithm_scalars(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        if let Some(Value::Mapping(m)) = &self.algorithm_end {
            for (k, v) in m {
                if let (Some(k), Some(v)) = (k.as_str(), v.as_f64()) {
                    out.insert(k.to_string(), v);
                }
            }
        }
        out
    }
}

/// Loss and accuracy over a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Mean cross-entropy per sample.
    pub loss: f64,
    /// Top-1 accuracy in [0, 1].
    pub top1: f64,
    /// Top-5 accuracy in [0, 1].
    pub top5: f64,
    /// Samples counted.
    #[serde(default)]
    pub samples: u64,
}

/// Training figures of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainEpoch {
    /// Mean training loss per sample.
    pub loss: f64,
    /// Training top-1 (on augmented batches, in train mode).
    pub top1: f64,
    /// Training top-5.
    pub top5: f64,
    /// Samples trained on in the epoch.
    pub samples: u64,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch.
    pub duration_s: f64,
    /// Throughput of the epoch.
    pub samples_per_s: f64,
    /// Auxiliary-head loss per sample, when the head is trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux_loss: Option<f64>,
    /// Learning rate of each named parameter group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_lrs: Option<BTreeMap<String, f64>>,
    /// Edges whose candidates a mixer combines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed_edges: Option<u64>,
    /// Candidate ops run per weight step, over all mixed edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_forwards_per_step: Option<f64>,
    /// fp16 loss scale at the end of the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// fp16 steps skipped for non-finite gradients, so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<u64>,
}

/// Figures of the searched architecture at batch 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalStats {
    /// Weights, without the auxiliary head.
    pub params: u64,
    /// Weights of the auxiliary head.
    pub aux_params: u64,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// FLOPs per image.
    pub flops: u64,
    /// Median forward latency at batch 1, ms.
    pub latency_ms: f64,
    /// The full stats file, relative to the run directory.
    pub file: String,
}

/// The end of a search phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSummary {
    /// Last epoch's training figures.
    pub train: Metrics,
    /// Last epoch's validation figures, when there is a validation split.
    pub val: Option<Metrics>,
    /// Epochs trained, earlier attempts of a resumed run included.
    pub epochs: u64,
    /// Wall time of the phase in this attempt.
    pub duration_s: f64,
    /// How the architecture was trained (`Bilevel`, `BilevelWithTrainGrad`, `TrainLoss`, `Manual`).
    pub arch_training: String,
    /// Architecture parameters of the supernet.
    pub arch_params: u64,
    /// The searched architecture's ModelDesc, relative to the run directory.
    pub final_model_desc: String,
    /// Figures of the searched architecture.
    pub final_stats: FinalStats,
    /// SHA-256 of the supernet's final weights and architecture parameters.
    pub weights_sha256: String,
    /// Whether the search decided its architecture (from finalizers that report it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisiveness: Option<archai_model_desc::report::Decisiveness>,
}

/// The end of an evaluation phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSummary {
    /// Last epoch's training figures.
    pub train: Metrics,
    /// Last epoch's validation figures, when `nas.eval.val_ratio` > 0.
    pub val: Option<Metrics>,
    /// The test split.
    pub test: Metrics,
    /// Weights, without the auxiliary head.
    pub params: u64,
    /// Weights of the auxiliary head.
    pub aux_params: u64,
    /// Epochs trained, earlier attempts of a resumed run included.
    pub epochs: u64,
    /// Wall time of the phase in this attempt.
    pub duration_s: f64,
    /// SHA-256 of the trained network's weights.
    pub weights_sha256: String,
}

/// Fields that measure time: they differ between two otherwise identical runs, so comparisons
/// of runs (`archai reproduce`) leave them out.
pub const TIMING_KEYS: [&str; 3] = ["duration_s", "samples_per_s", "latency_ms"];

/// Whether `key` (the last segment of a key path) is one of [`TIMING_KEYS`].
pub fn is_timing_key(key: &str) -> bool {
    TIMING_KEYS.contains(&key)
}

/// An outer-loop search: one record per finished iteration and a summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscreteRecord {
    /// Finished iterations, from 0.
    #[serde(default)]
    pub iterations: BTreeMap<u64, IterationRecord>,
    /// Written when the search ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<DiscreteSummary>,
}

/// One iteration of an outer-loop search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IterationRecord {
    /// Candidates the searcher proposed.
    pub proposed: u64,
    /// Of them, those meeting every constraint.
    pub valid: u64,
    /// Objective values computed (not taken from the cache) in this iteration.
    pub computed: u64,
    /// Models on the Pareto front of everything evaluated so far.
    pub front_size: u64,
    /// Hypervolume of that front (in minimization form, against the reference point).
    pub hypervolume: f64,
    /// What the searcher's `tell` returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub searcher: Option<Value>,
    /// Wall time of the iteration.
    pub duration_s: f64,
}

/// The end of an outer-loop search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscreteSummary {
    /// Iterations run.
    pub iterations: u64,
    /// Evaluations (architecture x budget) in all.
    pub evaluations: u64,
    /// Ids of the final Pareto front.
    pub front: Vec<String>,
    /// Hypervolume of the final front.
    pub hypervolume: f64,
    /// The hypervolume reference point, by objective (in the objective's own direction).
    pub reference: BTreeMap<String, f64>,
    /// The last search_state CSV, relative to the run directory.
    pub state_csv: String,
    /// Ids of the models the searcher named as its result (copied to `gallery/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gallery: Vec<String>,
}

/// Key paths of the record, for writers.
pub mod keys {
    /// `PHASE/epochs/EPOCH`.
    pub fn epoch(phase: &str, epoch: usize) -> String {
        format!("{phase}/epochs/{epoch}")
    }
    /// `PHASE/summary`.
    pub fn summary(phase: &str) -> String {
        format!("{phase}/summary")
    }
}

impl RunRecord {
    /// Parses a log.yaml text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<RunRecord> {
        yaml_serde::from_str(text).map_err(|source| RunLogError::YamlParse { path: origin.to_path_buf(), source })
    }

    /// Reads and parses `path` (a log.yaml).
    pub fn read(path: &Path) -> Result<RunRecord> {
        let text = std::fs::read_to_string(path).map_err(|e| RunLogError::io("read", path, e))?;
        Self::from_yaml(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "status: failed\nfailure: {phase: dataset, error: no such file}\nduration_s: 0.5\n";

    #[test]
    fn a_record_round_trips_and_unknown_keys_are_named() {
        let r = RunRecord::from_yaml(MINIMAL, Path::new("log.yaml")).unwrap();
        assert_eq!(r.status, RunStatus::Failed);
        assert_eq!(r.failure.as_ref().unwrap().phase, "dataset");
        let back = RunRecord::from_yaml(&yaml_serde::to_string(&r).unwrap(), Path::new("x")).unwrap();
        assert_eq!(back, r);
        // A misspelt field is an error that names it, not a silently empty column.
        let e = RunRecord::from_yaml("status: ok\nduraton_s: 1\n", Path::new("log.yaml")).unwrap_err().to_string();
        assert!(e.contains("duraton_s"), "{e}");
        let e = RunRecord::from_yaml("status: done\n", Path::new("log.yaml")).unwrap_err().to_string();
        assert!(e.contains("done"), "{e}");
    }

    #[test]
    fn epochs_written_through_the_log_tree_read_back_typed() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = crate::LogTree::open(dir.path().join("log.yaml")).unwrap();
        t.set("status", RunStatus::Running).unwrap();
        let m = Metrics { loss: 1.0, top1: 0.5, top5: 0.9, samples: 10 };
        t.set(&format!("{}/val", keys::epoch("search", 3)), m).unwrap();
        t.set(&format!("{}/algorithm_end", keys::epoch("search", 3)), serde_json::json!({"h": 2.0, "rows": [1]}))
            .unwrap();
        t.flush().unwrap();
        let r = RunRecord::read(&dir.path().join("log.yaml")).unwrap();
        let e = &r.search.unwrap().epochs[&3];
        assert_eq!(e.val, Some(m));
        // Only numeric top-level leaves of the algorithm's output count as its scalars.
        assert_eq!(e.algorithm_scalars().into_iter().collect::<Vec<_>>(), vec![("h".to_string(), 2.0)]);
        assert!(is_timing_key("duration_s") && !is_timing_key("loss"));
    }
}
