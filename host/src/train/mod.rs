//! The general trainer used by every phase (search, eval, handcrafted models). Algorithms hook
//! in through `before_epoch`, `before_step`, `after_step` and `after_epoch`; they do not fork
//! the loop.
mod events;
mod fit;
pub mod optim;
pub mod precision;
pub mod schedule;
pub mod strategy;
pub use events::{Event, EventSink};
pub use fit::Trainer;

use crate::model::{ModelError, Network};
use crate::params::ParamStore;
use crate::plugins::{host_service, plugin_result, PluginAlgorithm, PluginError};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::sabi_types::RMut;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use archai_data::{Batch, Batcher, BatcherOptions, DistributedStratifiedSampler, SampleBuffer, Transform};
use archai_plugin_api::{
    AlgorithmBox, ArchTraining, ComponentKind, ModelServices, ModelServicesMut, ModelServices_TO, NamedTensor,
    StepBatch, TensorOwned, TensorRef,
};
use optim::{Optimizer, OptimizerConfig};
use precision::{LossScaleConfig, LossScaler, Precision};
use schedule::ScheduleConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
pub use strategy::{DataParallel, GradSync, Strategy};
use tch::{Device, Kind, Tensor};

/// `trainer:` section.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainerConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Cap on batches per epoch (toy runs); null for the whole split.
    #[serde(default)]
    pub max_batches: Option<usize>,
    /// Cap on validation/test batches per evaluation; null for all.
    #[serde(default)]
    pub max_eval_batches: Option<usize>,
    /// Settings of every weight no `param_groups` entry claims.
    pub optimizer: OptimizerConfig,
    /// Named parameter groups with their own optimizer settings (matched by glob on names).
    #[serde(default)]
    pub param_groups: Vec<optim::ParamGroupConfig>,
    pub scheduler: ScheduleConfig,
    /// Clip the global gradient norm to this value; null disables.
    #[serde(default)]
    pub grad_clip: Option<f64>,
    #[serde(default)]
    pub label_smoothing: f64,
    /// Drop-path probability, raised linearly from 0 over the epochs (as in DARTS eval).
    #[serde(default)]
    pub drop_path_prob: f64,
    /// Split each batch into this many sub-batches and accumulate gradients (same update as the
    /// full batch for models without batch statistics; batch norm sees the sub-batches).
    #[serde(default = "one")]
    pub batch_chunks: usize,
    /// Data augmentation of training batches (random_crop, horizontal_flip, cutout, normalize...).
    #[serde(default)]
    pub transforms: Vec<Transform>,
    /// Weight of the auxiliary head's loss (DARTS eval: 0.4); needs a model with `aux`. 0 skips
    /// the head entirely.
    #[serde(default)]
    pub aux_weight: f64,
    /// fp32, bf16 (autocast) or fp16 (autocast + dynamic loss scaling).
    #[serde(default)]
    pub precision: Precision,
    /// Dynamic loss scaling of fp16 training (ignored otherwise).
    #[serde(default)]
    pub loss_scale: LossScaleConfig,
    /// Keep only each cell's two inputs during a training forward pass and run the cell again in
    /// the backward pass (gradient checkpointing per cell): far less activation memory for one
    /// more forward of every cell. Same results up to float summation order; random draws
    /// (drop path, Gumbel samples) are replayed.
    #[serde(default)]
    pub recompute_cells: bool,
    /// Ops recompute the cheap parts of their forward pass in the backward pass instead of
    /// keeping their activations. The DARTS ops keep only the inputs of their depthwise
    /// convolutions (which never run twice: most of a cell's time on a CPU) and recompute pooling,
    /// pointwise convolutions, batch norms and the ReLU inside separable convolutions.
    /// Same results up to float summation order; README "Memory: recompute ops" has the measured
    /// memory and time. Independent of `recompute_cells` (both can be on).
    #[serde(default)]
    pub recompute_ops: bool,
}

fn one() -> usize {
    1
}

/// Checks that `value` lies in `range` (finite); the error names the key, the value and the range.
fn check(key: &str, value: f64, ok: bool, range: &str) -> Result<(), String> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(format!("trainer.{key} = {value}: must be {range}"))
    }
}

impl TrainerConfig {
    /// Range checks of every number, so that a bad setting fails before any work (an eval
    /// setting before the search runs). Errors name the key, the value and the allowed range.
    pub fn validate(&self) -> Result<(), String> {
        let o = &self.optimizer;
        if self.batch_size == 0 || self.batch_chunks == 0 {
            return Err(format!(
                "trainer.batch_size = {} and trainer.batch_chunks = {}: both must be at least 1",
                self.batch_size, self.batch_chunks
            ));
        }
        if self.max_batches == Some(0) || self.max_eval_batches == Some(0) {
            return Err("trainer.max_batches and max_eval_batches must be at least 1 (or null for all)".into());
        }
        let mut groups = vec![("optimizer".to_string(), o)];
        groups.extend(self.param_groups.iter().map(|g| (format!("param_groups.{}.optimizer", g.name), &g.optimizer)));
        for (at, o) in groups {
            check(&format!("{at}.lr"), o.lr, o.lr > 0.0, "> 0")?;
            check(&format!("{at}.momentum"), o.momentum, (0.0..1.0).contains(&o.momentum), "in [0, 1)")?;
            check(&format!("{at}.weight_decay"), o.weight_decay, o.weight_decay >= 0.0, ">= 0")?;
            check(&format!("{at}.eps"), o.eps, o.eps > 0.0, "> 0")?;
            for b in o.betas {
                check(&format!("{at}.betas"), b, (0.0..1.0).contains(&b), "in [0, 1)")?;
            }
        }
        check("label_smoothing", self.label_smoothing, (0.0..1.0).contains(&self.label_smoothing), "in [0, 1)")?;
        check("drop_path_prob", self.drop_path_prob, (0.0..1.0).contains(&self.drop_path_prob), "in [0, 1)")?;
        if let Some(g) = self.grad_clip {
            check("grad_clip", g, g > 0.0, "> 0 (or null to disable)")?;
        }
        check("aux_weight", self.aux_weight, self.aux_weight >= 0.0, ">= 0")?;
        let lr_min = self.scheduler.lr_min;
        check("scheduler.lr_min", lr_min, lr_min >= 0.0, ">= 0")?;
        let w = self.scheduler.warmup_epochs;
        check("scheduler.warmup_epochs", w, w >= 0.0, ">= 0")?;
        if self.precision.needs_loss_scaling() {
            self.loss_scale.validate()?;
        }
        Ok(())
    }

    /// The loss scaler this configuration trains with: one for fp16, none otherwise.
    pub fn loss_scaler(&self) -> Option<LossScaler> {
        self.precision.needs_loss_scaling().then(|| LossScaler::new(self.loss_scale.clone()))
    }

    /// One epoch of SGD (momentum 0.9) at a constant learning rate, no augmentation: the
    /// settings of the benchmarks and of tests that build a trainer by hand.
    pub fn sgd(batch_size: usize, lr: f64, weight_decay: f64, grad_clip: Option<f64>) -> Self {
        Self {
            epochs: 1,
            batch_size,
            max_batches: None,
            max_eval_batches: None,
            optimizer: OptimizerConfig {
                kind: optim::OptimizerKind::Sgd,
                lr,
                momentum: 0.9,
                nesterov: false,
                weight_decay,
                no_decay_bn_bias: false,
                betas: [0.9, 0.999],
                eps: 1e-8,
            },
            param_groups: vec![],
            scheduler: ScheduleConfig::constant(),
            grad_clip,
            label_smoothing: 0.0,
            drop_path_prob: 0.0,
            batch_chunks: 1,
            transforms: vec![],
            aux_weight: 0.0,
            precision: Precision::Fp32,
            loss_scale: LossScaleConfig::default(),
            recompute_cells: false,
            recompute_ops: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Data(#[from] archai_data::DataError),
    #[error("the loss became {value} at epoch {epoch}, step {step}; training stopped. {checkpoint}. Lower the learning rate or enable grad_clip.")]
    NonFinite { value: f64, epoch: usize, step: usize, checkpoint: String },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("logging: {0}")]
    Log(String),
    #[error("{0}")]
    Config(String),
    #[error("mixed precision: {0}")]
    Autocast(#[from] archai_autocast::AutocastError),
    #[error("interrupted by {signal} at epoch {}, step {step}. {checkpoint}; continue with --resume", epoch + 1)]
    Interrupted { signal: &'static str, epoch: usize, step: usize, checkpoint: String },
    #[error("data-parallel training: {0}")]
    Distributed(String),
}

/// One split ready for batching: the pixels, the sample indices that belong to it, its transforms.
#[derive(Clone)]
pub struct SplitData {
    pub buffer: SampleBuffer,
    pub indices: Vec<usize>,
    pub transforms: Vec<Transform>,
}

impl SplitData {
    /// The epoch's batches; shuffled (stratified, seeded by `seed` and `epoch`) when `shuffle`.
    pub fn batcher(&self, batch_size: usize, epoch: usize, seed: u64, shuffle: bool) -> Result<Batcher, TrainError> {
        let order = if shuffle {
            let mut s =
                DistributedStratifiedSampler::new(self.indices.clone(), self.buffer.labels(), 1, 0, true, seed)?;
            s.set_epoch(epoch as u64);
            s.indices()
        } else {
            self.indices.clone()
        };
        let opts = BatcherOptions { batch_size, drop_last: false, prefetch: 4, seed, epoch: epoch as u64 };
        Ok(Batcher::new(self.buffer.clone(), order, &self.transforms, opts)?)
    }
}

/// Hands a host batch to the device. For CUDA the batch goes through page-locked memory and the
/// copy is queued without waiting (libtorch's pinned-memory cache keeps the page-locked block
/// until the copy is done), so the CPU prepares the next batch while the GPU still works.
pub fn to_tensors(b: &Batch, device: Device) -> (Tensor, Tensor) {
    let [n, c, h, w] = b.shape;
    let x = Tensor::from_slice(&b.images).view([n as i64, c as i64, h as i64, w as i64]);
    let y = Tensor::from_slice(&b.labels);
    (hand_over(x, device), hand_over(y, device))
}

fn hand_over(t: Tensor, device: Device) -> Tensor {
    match device {
        Device::Cuda(_) => {
            let kind = t.kind();
            // `_pin_memory`: what `pin_memory` calls, without its warning that passing a device
            // is deprecated (tch always passes one).
            t.internal_pin_memory(device).to_device_(device, kind, true, false)
        }
        _ => t,
    }
}

/// Loss, top-1 and top-5 accuracy over some batches.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
    pub samples: usize,
}

impl Metrics {
    /// The figures of a log.yaml record.
    pub fn from_record(r: &archai_runlog::schema::Metrics) -> Self {
        Metrics { loss: r.loss, top1: r.top1, top5: r.top5, samples: r.samples as usize }
    }

    /// The figures as log.yaml records them.
    pub fn record(&self) -> archai_runlog::schema::Metrics {
        archai_runlog::schema::Metrics {
            loss: self.loss,
            top1: self.top1,
            top5: self.top5,
            samples: self.samples as u64,
        }
    }
}

#[derive(Default)]
struct Meter {
    loss_sum: f64,
    top1: f64,
    top5: f64,
    n: usize,
}

impl Meter {
    fn add(&mut self, logits: &Tensor, y: &Tensor, loss: f64) {
        let n = y.size()[0] as usize;
        if n == 0 {
            return;
        }
        let k = logits.size()[1].min(5);
        let (_, pred) = logits.topk(k, 1, true, true);
        let hits = pred.eq_tensor(&y.unsqueeze(1));
        self.top1 += hits.narrow(1, 0, 1).sum(Kind::Float).double_value(&[]);
        self.top5 += hits.sum(Kind::Float).double_value(&[]);
        self.loss_sum += loss * n as f64;
        self.n += n;
    }
    /// Sums the figures over data-parallel ranks.
    fn combine(&mut self, strategy: Strategy<'_>) -> Result<(), TrainError> {
        let mut v = [self.loss_sum, self.top1, self.top5, self.n as f64];
        strategy.sum(&mut v)?;
        [self.loss_sum, self.top1, self.top5] = [v[0], v[1], v[2]];
        self.n = v[3].round() as usize;
        Ok(())
    }
    fn metrics(&self) -> Metrics {
        let n = self.n.max(1) as f64;
        Metrics { loss: self.loss_sum / n, top1: self.top1 / n, top5: self.top5 / n, samples: self.n }
    }
}

/// `x` and `y` cut into `chunks` row chunks (as `torch.chunk` cuts: never more chunks than rows,
/// at least one), each with its share of `total` rows: the weight step and the architecture
/// step's loss cut batches alike, so batch-norm statistics are per chunk in both.
fn row_chunks(x: &Tensor, y: &Tensor, chunks: usize, total: i64) -> Vec<(Tensor, Tensor, f64)> {
    let n = y.size().first().copied().unwrap_or(0);
    let chunks = (chunks as i64).clamp(1, n.max(1));
    x.chunk(chunks, 0)
        .into_iter()
        .zip(y.chunk(chunks, 0))
        .map(|(xc, yc)| {
            let share = yc.size()[0] as f64 / total.max(1) as f64;
            (xc, yc, share)
        })
        .collect()
}

/// Cross-entropy, in fp32 whatever precision the logits were computed in, of the classifier's
/// logits (a plugin op's output) against the labels. Logits of the wrong shape are an error
/// naming both shapes; anything else libtorch refuses (a label outside the classes: "Target 12 is
/// out of bounds") keeps libtorch's message, without its backtrace. Never a panic.
fn criterion(logits: &Tensor, y: &Tensor, smoothing: f64) -> Result<Tensor, TrainError> {
    let shape = logits.size();
    let n = y.size().first().copied().unwrap_or(0);
    if shape.len() != 2 || shape[0] != n {
        return Err(TrainError::Model(ModelError::Forward(format!(
            "the classifier returned logits of shape {shape:?} for {n} labels (expected [{n}, classes])"
        ))));
    }
    logits
        .f_to_kind(Kind::Float)
        .and_then(|l| l.f_cross_entropy_loss::<Tensor>(y, None, tch::Reduction::Mean, -100, smoothing))
        .map_err(|e| {
            TrainError::Model(ModelError::Forward(format!(
                "cross-entropy of logits {shape:?} against the labels: {}",
                archai_plugin_api::trim_backtrace(&e.to_string())
            )))
        })
}

/// What an algorithm (during training) or a finalizer (after it, without an optimizer) sees of
/// the model.
pub struct Services<'a> {
    net: &'a Network,
    store: &'a ParamStore,
    opt: Option<&'a Optimizer>,
    lr: f64,
    smoothing: f64,
    precision: Precision,
    /// The search's training split (normalize only) and the run directory, for finalizers.
    data: Option<&'a SplitData>,
    run_dir: Option<&'a Path>,
    /// The ranks `average_over_ranks` averages over.
    strategy: Strategy<'a>,
    /// `trainer.batch_chunks`: `loss` computes its batch in as many chunks as the weight step
    /// does, so batch-norm statistics are per chunk in both steps (and a data-parallel
    /// architecture step, one chunk per rank, equals the single-process one).
    chunks: usize,
}

impl<'a> Services<'a> {
    pub fn new(net: &'a Network, store: &'a ParamStore, opt: &'a Optimizer, lr: f64, c: &TrainerConfig) -> Self {
        Self {
            net,
            store,
            opt: Some(opt),
            lr,
            smoothing: c.label_smoothing,
            precision: c.precision,
            data: None,
            run_dir: None,
            strategy: Strategy::Single,
            chunks: c.batch_chunks,
        }
    }

    /// Averages what the algorithm asks over the ranks of `strategy`.
    pub fn across(mut self, strategy: Strategy<'a>) -> Self {
        self.strategy = strategy;
        self
    }

    /// The trained model for a finalizer: weights, architecture parameters and forward passes in
    /// `precision`, no optimizer.
    pub fn trained(net: &'a Network, store: &'a ParamStore, precision: Precision) -> Self {
        Self {
            net,
            store,
            opt: None,
            lr: 0.0,
            smoothing: 0.0,
            precision,
            data: None,
            run_dir: None,
            strategy: Strategy::Single,
            chunks: 1,
        }
    }

    /// Offers `data` (batches through `data_batch`) and the run directory (`write_artifact`).
    pub fn with_data(mut self, data: &'a SplitData, run_dir: &'a Path) -> Self {
        self.data = Some(data);
        self.run_dir = Some(run_dir);
        self
    }

    /// The boxed form handed to plugin calls.
    pub fn as_services(&mut self) -> ModelServicesMut<'_> {
        ModelServices_TO::from_ptr(RMut::new(self), TD_Opaque)
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, String> {
        match self.precision.autocast(x.device()) {
            Ok(_autocast) => self.net.forward(x, train).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn named(v: Vec<(String, Tensor)>) -> RVec<NamedTensor> {
    v.into_iter().map(|(n, t)| NamedTensor { name: n.into(), tensor: TensorOwned::new(t) }).collect()
}

impl ModelServices for Services<'_> {
    fn weights(&self) -> RVec<NamedTensor> {
        match self.opt {
            Some(opt) => named(opt.params().iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()),
            None => named(self.store.named_weights()),
        }
    }
    fn arch_params(&self) -> RVec<NamedTensor> {
        named(self.store.named_arch())
    }
    fn loss(&mut self, x: TensorRef<'_>, y: TensorRef<'_>) -> RResult<TensorOwned, RString> {
        host_service("loss", || {
            let (x, y) = (x.view(), y.view());
            let n = y.size().first().copied().unwrap_or(0);
            if n == 0 && self.strategy.world() == 1 {
                return Err("the batch is empty".into());
            }
            // Algorithms average their gradients of this loss over the ranks (average_over_ranks),
            // so each rank's loss is its rows' mean scaled by its part of the global batch: the
            // average is then the global batch's mean even when a short batch splits unevenly
            // (with equal parts, as usual, the scale is 1).
            let mut rows = [n as f64];
            self.strategy.sum(&mut rows).map_err(|e| e.to_string())?;
            let global = rows[0].max(1.0);
            let part = n as f64 * self.strategy.world() as f64 / global;
            let pieces = if n == 0 { Vec::new() } else { row_chunks(&x, &y, self.chunks, n) };
            let mut total: Option<Tensor> = None;
            for (xc, yc, share) in &pieces {
                let logits = self.forward(xc, true)?;
                let loss = criterion(&logits, yc, self.smoothing).map_err(|e| e.to_string())? * (share * part);
                total = Some(match total {
                    Some(t) => t + loss,
                    None => loss,
                });
            }
            // A rank with fewer rows than rank 0 (none, after a short batch) runs the missing
            // forwards on no rows, as the weight step does: stochastic mixers draw in step, and the
            // zero it adds reaches the tensors the other ranks' losses reach (gradients of it are
            // zeros, not an error, nor the NaN of a mean over nothing).
            for _ in pieces.len()..self.strategy.lead_forwards(global as i64, self.chunks) {
                let zero = self.forward(&x.narrow(0, 0, 0), true)?.sum(Kind::Float) * 0.0;
                total = Some(match total {
                    Some(t) => t + zero,
                    None => zero,
                });
            }
            Ok(TensorOwned::new(total.ok_or("the batch is empty on every rank")?))
        })
    }
    fn weight_optimizer(&self) -> RString {
        match self.opt {
            Some(opt) => {
                let c = opt.config();
                serde_json::json!({"lr": self.lr, "momentum": c.momentum, "weight_decay": c.weight_decay,
                                   "kind": c.kind, "nesterov": c.nesterov})
                .to_string()
                .into()
            }
            // Not JSON of the expected shape: a finalizer asking for it gets a parse error.
            None => "{\"error\": \"no weight optimizer after training\"}".into(),
        }
    }
    fn momentum_buffers(&self) -> RVec<NamedTensor> {
        match self.opt {
            Some(opt) => {
                named(opt.params().iter().zip(&opt.buf).map(|((n, _), b)| (n.clone(), b.shallow_clone())).collect())
            }
            None => RVec::new(),
        }
    }
    fn logits(&mut self, x: TensorRef<'_>, train: bool) -> RResult<TensorOwned, RString> {
        host_service("logits", || Ok(TensorOwned::new(self.forward(&x.view(), train)?)))
    }
    fn candidate_outputs(&mut self, x: TensorRef<'_>, scope_prefix: RStr<'_>) -> RResult<RVec<NamedTensor>, RString> {
        host_service("candidate_outputs", || {
            let _autocast = self.precision.autocast(x.view().device()).map_err(|e| e.to_string())?;
            let all = self.net.candidate_outputs(&x.view(), scope_prefix.as_str()).map_err(|e| e.to_string())?;
            Ok(named(all))
        })
    }
    fn data_batch(&mut self, index: u64, batch_size: u64) -> RResult<RVec<TensorOwned>, RString> {
        host_service("data_batch", || {
            let data = self.data.ok_or("the host offers data batches to finalizers only")?;
            if batch_size == 0 {
                return Err("data_batch: batch_size must be at least 1".to_string());
            }
            let batcher = data.batcher(batch_size as usize, 0, 0, false).map_err(|e| e.to_string())?;
            Ok(match batcher.batch(index as usize) {
                Some(b) => {
                    let (x, y) = to_tensors(&b, self.store.device());
                    RVec::from(vec![TensorOwned::new(x), TensorOwned::new(y)])
                }
                None => RVec::new(),
            })
        })
    }
    fn write_artifact(&mut self, name: RStr<'_>, bytes: RSlice<'_, u8>) -> RResult<RString, RString> {
        host_service("write_artifact", || {
            let dir =
                self.run_dir.ok_or("the host offers a run directory to finalizers only")?.join("search/artifacts");
            let name = name.as_str();
            if name.is_empty() || name.contains('/') || name.contains("..") {
                return Err(format!("artifact name `{name}` must be a plain file name"));
            }
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let path = dir.join(name);
            std::fs::write(&path, bytes.as_slice()).map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(RString::from(path.display().to_string()))
        })
    }

    fn average_over_ranks(&mut self, tensors: RVec<TensorOwned>) -> RResult<RVec<TensorOwned>, RString> {
        let tensors: Vec<Tensor> = tensors.into_iter().map(TensorOwned::into_tensor).collect();
        match self.strategy.average(tensors) {
            Ok(v) => RResult::ROk(v.into_iter().map(TensorOwned::new).collect()),
            Err(e) => RResult::RErr(e.to_string().into()),
        }
    }
}

/// Results of a fit.
#[derive(Serialize, Debug, Clone, Default)]
pub struct FitReport {
    /// The last epoch's figures (read back from the record when a resumed phase had no epoch
    /// left to run).
    pub train: Metrics,
    pub val: Option<Metrics>,
    /// Epochs run in this attempt.
    pub epochs_run: usize,
    /// Epochs trained in all, earlier attempts included.
    pub epochs_done: usize,
    pub duration_s: f64,
}

/// Evaluates `net` on a split without gradients.
pub fn evaluate(
    net: &Network,
    data: &SplitData,
    batch_size: usize,
    max_batches: Option<usize>,
    device: Device,
    precision: Precision,
) -> Result<Metrics, TrainError> {
    evaluate_with(net, data, batch_size, max_batches, device, precision, Strategy::Single)
}

/// [`evaluate`] spread over data-parallel ranks: rank r evaluates batches r, r + W, ... and the
/// sums are combined, so every rank gets the figures of the whole split.
pub fn evaluate_with(
    net: &Network,
    data: &SplitData,
    batch_size: usize,
    max_batches: Option<usize>,
    device: Device,
    precision: Precision,
    strategy: Strategy<'_>,
) -> Result<Metrics, TrainError> {
    let _guard = tch::no_grad_guard();
    let _autocast = precision.autocast(device)?;
    let mut meter = Meter::default();
    let batcher = data.batcher(batch_size, 0, 0, false)?;
    let batches = max_batches.map_or(batcher.len(), |m| m.min(batcher.len()));
    // One process reads every batch through the prefetching iterator; ranks build only theirs.
    let mine: Box<dyn Iterator<Item = Batch>> = match strategy {
        Strategy::Single => Box::new(batcher.iter().take(batches)),
        _ => Box::new(
            (strategy.rank()..batches).step_by(strategy.world()).map(|i| batcher.batch(i).expect("index below len")),
        ),
    };
    for b in mine {
        let (x, y) = to_tensors(&b, device);
        let logits = net.forward(&x, false)?.to_kind(Kind::Float);
        let loss = criterion(&logits, &y, 0.0)?.double_value(&[]);
        meter.add(&logits, &y, loss);
    }
    meter.combine(strategy)?;
    Ok(meter.metrics())
}

/// The tensors of one training step as the algorithm hook sees them.
pub struct StepTensors<'t> {
    pub x: &'t Tensor,
    pub y: &'t Tensor,
    pub val_x: &'t Tensor,
    pub val_y: &'t Tensor,
    pub epoch: usize,
    pub step: usize,
    pub lr: f64,
}

/// Runs the algorithm's per-step hook (DARTS: its architecture step) and returns its metrics.
pub fn algorithm_step(
    algo: &mut PluginAlgorithm,
    net: &Network,
    store: &ParamStore,
    opt: &Optimizer,
    data: &StepTensors,
    config: &TrainerConfig,
    strategy: Strategy<'_>,
) -> Result<serde_json::Value, TrainError> {
    let mut services = Services::new(net, store, opt, data.lr, config).across(strategy);
    let batch = StepBatch {
        x: TensorRef::new(data.x),
        y: TensorRef::new(data.y),
        val_x: TensorRef::new(data.val_x),
        val_y: TensorRef::new(data.val_y),
        epoch: data.epoch as u32,
        step: data.step as u64,
        lr: data.lr,
    };
    algorithm_hook(algo, &mut services, |a, m| a.before_step(m, batch))
}

/// Calls one of the algorithm's hooks with the model's services; returns its JSON (null when
/// the plugin returned something that is not JSON).
pub fn algorithm_hook(
    algo: &mut PluginAlgorithm,
    services: &mut Services,
    call: impl FnOnce(&mut AlgorithmBox, ModelServicesMut<'_>) -> RResult<RString, RString>,
) -> Result<serde_json::Value, TrainError> {
    let out = plugin_result(
        call(&mut algo.inner, services.as_services()),
        &algo.plugin,
        ComponentKind::Algorithm,
        &algo.name,
    )?;
    Ok(serde_json::from_str(out.as_str()).unwrap_or(serde_json::Value::Null))
}

/// One weight step on (x, y): gradients accumulated over `batch_chunks` sub-batches (each loss
/// scaled by its share, so the sum is the full-batch gradient), clipping, the optimizer update.
/// The forward passes run under `c.precision`'s autocast; with a `scaler` (fp16) the loss is
/// scaled before backward, gradients unscaled after it, and an overflowing step is skipped.
/// A non-finite objective is returned without updating.
#[allow(clippy::too_many_arguments)]
pub fn weight_step(
    net: &Network,
    store: &ParamStore,
    opt: &mut Optimizer,
    x: &Tensor,
    y: &Tensor,
    c: &TrainerConfig,
    lr: f64,
    scaler: Option<&mut LossScaler>,
) -> Result<StepResult, TrainError> {
    weight_step_with(net, store, opt, x, y, c, lr, scaler, ArchTraining::Bilevel, Strategy::Single)
}

/// [`weight_step`] for an algorithm's [`ArchTraining`]: with `TrainLoss` and
/// `BilevelWithTrainGrad` the trainable architecture parameters' gradients are zeroed and filled
/// by the same backward (the algorithm uses them); otherwise they are constants of the step. Under data parallelism `x`, `y` are
/// the global batch: this rank computes its rows, and the gradients, losses and stop requests
/// are summed over the ranks before the update, so every rank makes the same update.
#[allow(clippy::too_many_arguments)]
pub fn weight_step_with(
    net: &Network,
    store: &ParamStore,
    opt: &mut Optimizer,
    x: &Tensor,
    y: &Tensor,
    c: &TrainerConfig,
    lr: f64,
    scaler: Option<&mut LossScaler>,
    arch_training: ArchTraining,
    strategy: Strategy<'_>,
) -> Result<StepResult, TrainError> {
    opt.zero_grad();
    // Architecture parameters the weight optimizer owns (joint training) are weights here; only
    // a description with joint parameters can have any, so others skip the lookup.
    let owned: std::collections::HashSet<usize> = if net.desc.arch_params.iter().any(|p| p.joint) {
        opt.params().iter().map(|(_, p)| p.data_ptr() as usize).collect()
    } else {
        Default::default()
    };
    let trainable: Vec<Tensor> = store
        .named_arch()
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| t.requires_grad() && !owned.contains(&(t.data_ptr() as usize)))
        .collect();
    let frozen = !arch_training.fills_train_grads();
    let penalty = arch_l1_penalty(net, store)?;
    for a in &trainable {
        if frozen {
            // Constants for the weight step: no gradient work for them.
            let _ = a.set_requires_grad(false);
        } else {
            a.shallow_clone().zero_grad();
        }
    }
    let n_global = y.size()[0];
    let (x, y) = strategy.local_rows(x, y);
    // What the step trains, in the optimizer's order (the same on every rank); the trainable
    // architecture parameters' gradients belong to the step too when the algorithm trains them
    // on the training loss (SNAS, DiDARTS) or reads its gradient (BilevelWithTrainGrad).
    let step_params: Vec<Tensor> = match strategy.world() {
        1 => Vec::new(),
        _ => opt
            .params()
            .iter()
            .map(|(_, p)| p.shallow_clone())
            .chain(trainable.iter().filter(|_| !frozen).map(Tensor::shallow_clone))
            .collect(),
    };
    let result = (|| {
        let n = y.size()[0];
        let pieces = if n == 0 { Vec::new() } else { row_chunks(&x, &y, c.batch_chunks, n_global) };
        let empties = strategy.lead_forwards(n_global, c.batch_chunks).saturating_sub(pieces.len());
        // Data parallel: the step's last backward sends gradients to the other ranks as they
        // complete (the earlier ones accumulate).
        let mut backwards_left = empties + pieces.len();
        let mut backward = |t: Tensor| -> Result<(), TrainError> {
            backwards_left -= 1;
            if backwards_left == 0 {
                strategy.before_last_backward(&step_params, &t)?;
            }
            t.backward();
            Ok(())
        };
        // A rank with fewer rows than rank 0 (a short last batch) runs the missing forwards on no
        // rows (libtorch keeps batch norm's graph and leaves the running statistics alone) and
        // backpropagates zeros from them: stochastic mixers (GDAS' Gumbel samples) then draw what
        // the other ranks draw, and its gradients (zeros where it has no rows) are defined for the
        // tensors the other ranks' forwards reached, so every rank's optimizer updates the same
        // tensors (SGD skips a tensor without a gradient, weight decay and momentum included).
        for _ in 0..empties {
            let _autocast = c.precision.autocast(x.device())?;
            let none = x.narrow(0, 0, 0);
            let (logits, aux) = net.forward_with_aux(&none, true, c.aux_weight > 0.0)?;
            let zero = logits.sum(Kind::Float) * 0.0;
            match aux {
                Some(aux) => backward(zero + aux.sum(Kind::Float) * 0.0)?,
                None => backward(zero)?,
            }
        }
        if n == 0 {
            return Ok(StepResult {
                loss: 0.0,
                aux_loss: (c.aux_weight > 0.0).then_some(0.0),
                logits: Tensor::new(),
                labels: y.shallow_clone(),
                stop_requested: false,
            });
        }
        let (mut main_total, mut aux_total) = (0.0, 0.0);
        let mut all_logits = Vec::new();
        let want_aux = c.aux_weight > 0.0;
        for (k, (xc, yc, share)) in pieces.iter().enumerate() {
            let (logits, aux) = {
                let _autocast = c.precision.autocast(xc.device())?;
                net.forward_with_aux(xc, true, want_aux)?
            };
            let main = criterion(&logits, yc, c.label_smoothing)? * *share;
            main_total += main.double_value(&[]);
            let loss = match aux {
                Some(aux) => {
                    let aux = criterion(&aux, yc, c.label_smoothing)? * *share;
                    aux_total += aux.double_value(&[]);
                    main + aux * c.aux_weight
                }
                None => main,
            };
            // The L1 term belongs to the step, not to each chunk or rank.
            let loss = match (&penalty, k, strategy.rank()) {
                (Some(p), 0, 0) => loss + p,
                _ => loss,
            };
            match scaler.as_deref() {
                Some(s) => backward(&loss * s.scale())?,
                None => backward(loss)?,
            }
            all_logits.push(logits.detach().to_kind(Kind::Float));
        }
        let aux_loss = (c.aux_weight > 0.0).then_some(aux_total);
        Ok::<_, TrainError>(StepResult {
            loss: main_total,
            aux_loss,
            logits: Tensor::cat(&all_logits, 0),
            labels: y.shallow_clone(),
            stop_requested: false,
        })
    })();
    if frozen {
        for a in &trainable {
            let _ = a.set_requires_grad(true);
        }
    }
    let mut out = result?;
    if strategy.world() > 1 {
        let stop = crate::interrupt::requested().is_some();
        let mut figures = [out.loss, out.aux_loss.unwrap_or(0.0), stop as u8 as f64];
        strategy.complete_gradients(&step_params, &mut figures)?;
        out.loss = figures[0];
        out.aux_loss = out.aux_loss.map(|_| figures[1]);
        out.stop_requested = figures[2] > 0.0;
    }
    if out.objective(c.aux_weight).is_finite() {
        if let Some(s) = scaler {
            let mut grads: Vec<Tensor> = opt.params().iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).collect();
            let finite = s.unscale(&mut grads);
            s.update(finite);
            if !finite {
                return Ok(out);
            }
        }
        if let Some(max) = c.grad_clip {
            opt.clip_grad_norm(max);
        }
        opt.step(lr);
    }
    Ok(out)
}

/// `Σ l1 · |p|` over the architecture parameters whose description asks for an L1 penalty
/// (Petridish's sparsity term on its candidate weights); `None` when none does.
fn arch_l1_penalty(net: &Network, store: &ParamStore) -> Result<Option<Tensor>, TrainError> {
    if !net.desc.arch_params.iter().any(|p| p.l1 > 0.0) {
        return Ok(None);
    }
    let arch: std::collections::HashMap<String, Tensor> = store.named_arch().into_iter().collect();
    let mut total: Option<Tensor> = None;
    for p in net.desc.arch_params.iter().filter(|p| p.l1 > 0.0) {
        let t = arch.get(&p.name).ok_or_else(|| {
            TrainError::Config(format!("the L1 penalty names `{}`, which the model did not create", p.name))
        })?;
        let term = t.abs().sum(Kind::Float) * p.l1;
        total = Some(match total {
            Some(acc) => acc + term,
            None => term,
        });
    }
    Ok(total)
}

/// The architecture parameters trained jointly with the weights when no algorithm owns them
/// (`joint: true` in the description), under their checkpoint names.
fn joint_arch_params(net: &Network, store: &ParamStore) -> Vec<(String, Tensor)> {
    let arch: std::collections::HashMap<String, Tensor> = store.named_arch().into_iter().collect();
    net.desc
        .arch_params
        .iter()
        .filter(|p| p.joint && p.trainable)
        .filter_map(|p| arch.get(&p.name).map(|t| (format!("arch.{}", p.name), t.shallow_clone())))
        .collect()
}

/// What one weight step computed.
pub struct StepResult {
    /// Main classifier loss of the batch.
    pub loss: f64,
    /// Auxiliary head loss (unweighted), when `aux_weight` > 0.
    pub aux_loss: Option<f64>,
    /// Detached fp32 logits of this rank's rows of the batch.
    pub logits: Tensor,
    /// The labels of those rows.
    pub labels: Tensor,
    /// Whether any rank was asked to stop (SIGINT/SIGTERM) during the step; data-parallel
    /// ranks stop together after it.
    pub stop_requested: bool,
}

impl StepResult {
    /// The minimized loss: main + aux_weight x aux.
    pub fn objective(&self, aux_weight: f64) -> f64 {
        self.loss + self.aux_loss.map_or(0.0, |a| a * aux_weight)
    }
}

/// The model's tensors under their checkpoint names: `w.` weights and buffers, `a.` alphas.
pub fn model_tensors(store: &ParamStore) -> Vec<(String, Tensor)> {
    let weights = store.named_weights().into_iter().chain(store.named_buffers()).map(|(n, t)| (format!("w.{n}"), t));
    weights.chain(store.named_arch().into_iter().map(|(n, t)| (format!("a.{n}"), t))).collect()
}

/// The name of the checkpoint entry that holds the checksum of all the others.
const CHECKSUM: &str = "checksum";

/// CRC-32C over every entry's name and bytes, in name order: a checkpoint whose tensor bytes
/// changed on disk (a flipped bit, a partial overwrite) no longer matches and is refused, instead
/// of loading silently and changing the results.
fn checksum(named: &[(String, Tensor)]) -> Result<i64, String> {
    let mut sorted: Vec<&(String, Tensor)> = named.iter().filter(|(n, _)| n != CHECKSUM).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut digest = Vec::with_capacity(sorted.len() * 4);
    for (name, t) in sorted {
        let bytes = t
            .f_detach()
            .and_then(|t| t.f_to_device(Device::Cpu))
            .and_then(|t| t.f_contiguous())
            .and_then(|t| t.f_flatten(0, -1))
            .and_then(|t| t.f_view_dtype(Kind::Uint8))
            .map_err(|e| format!("`{name}`: {}", archai_plugin_api::trim_backtrace(&e.to_string())))?;
        let bytes = Vec::<u8>::try_from(&bytes).map_err(|e| format!("`{name}`: {e}"))?;
        let mut entry = name.as_bytes().to_vec();
        entry.extend_from_slice(&bytes);
        digest.extend_from_slice(&archai_runlog::crc32c(&entry).to_le_bytes());
    }
    Ok(archai_runlog::crc32c(&digest) as i64)
}

fn save_checkpoint(
    path: &Path,
    store: &ParamStore,
    opt: &Optimizer,
    scaler: Option<&LossScaler>,
    algo_state: Vec<(String, Tensor)>,
    epoch: usize,
) -> Result<(), TrainError> {
    let mut named = model_tensors(store);
    for (n, t) in opt.state() {
        named.push((format!("o.{n}"), t));
    }
    for (n, t) in scaler.map(|s| s.state()).unwrap_or_default() {
        named.push((format!("s.{n}"), t));
    }
    for (n, t) in algo_state {
        named.push((format!("g.{n}"), t));
    }
    named.push(("epoch".into(), Tensor::from(epoch as i64)));
    let err = |reason: String| TrainError::Checkpoint { path: path.to_path_buf(), reason };
    named.push((CHECKSUM.into(), Tensor::from(checksum(&named).map_err(err)?)));
    let tmp = path.with_extension("tmp");
    Tensor::save_multi(&named.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>(), &tmp).map_err(|e| {
        // A full disk leaves a partial file; it would hold on to the space it took.
        let _ = std::fs::remove_file(&tmp);
        err(e.to_string())
    })?;
    // The last two checkpoints are kept: a latest one damaged on disk costs one epoch, not the
    // phase. A kill between the two renames leaves only the previous one, which resume uses.
    if path.is_file() {
        std::fs::rename(path, previous_checkpoint(path)).map_err(|e| err(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

/// Where the checkpoint before `path` is kept (`checkpoint.pt` -> `checkpoint.prev.pt`).
pub fn previous_checkpoint(path: &Path) -> PathBuf {
    path.with_extension("prev.pt")
}

/// A checkpoint file and its entries.
type ReadCheckpoint = (PathBuf, Vec<(String, Tensor)>);

/// Reads the checkpoint a resume continues from: the latest when it reads and its checksum
/// holds, else the previous one when that does (with a warning naming what was wrong with the
/// latest); `None` when the phase has none. Each file is read once.
fn checkpoint_to_resume(phase: &str, latest: &Path, device: Device) -> Result<Option<ReadCheckpoint>, TrainError> {
    let prev = previous_checkpoint(latest);
    let warn = |why: String| {
        tracing::warn!("{phase}: {why}; resuming from the previous checkpoint {} (one epoch earlier)", prev.display())
    };
    if !latest.is_file() {
        if !prev.is_file() {
            return Ok(None);
        }
        let entries = read_checkpoint(&prev, device).map_err(|e| e.into_error(&prev, true))?;
        warn(format!("{} is missing", latest.display()));
        return Ok(Some((prev, entries)));
    }
    match read_checkpoint(latest, device) {
        Ok(entries) => Ok(Some((latest.to_path_buf(), entries))),
        Err(e) => match prev.is_file().then(|| read_checkpoint(&prev, device)) {
            Some(Ok(entries)) => {
                warn(e.into_error(latest, false).to_string());
                Ok(Some((prev.clone(), entries)))
            }
            _ => Err(e.into_error(latest, true)),
        },
    }
}

/// The first line of a libtorch error (the rest is a C++ backtrace).
fn trim_first_line(text: &str) -> String {
    archai_plugin_api::trim_backtrace(text).lines().next().unwrap_or_default().to_string()
}

/// Why a checkpoint file cannot be used.
enum Unusable {
    Unreadable(String),
    Corrupt { actual: i64, recorded: i64 },
    Checksum(String),
}

impl Unusable {
    fn reason(&self) -> String {
        match self {
            Unusable::Unreadable(e) => format!("cannot be read ({e})"),
            Unusable::Corrupt { actual, recorded } => format!(
                "is corrupt: its contents changed after it was written (checksum {actual:08x}, recorded {recorded:08x})"
            ),
            Unusable::Checksum(e) => e.clone(),
        }
    }

    /// The error for `path`; with `advice`, what to do about it when a phase cannot resume.
    fn into_error(self, path: &Path, advice: bool) -> TrainError {
        let what = match (&self, advice) {
            (Unusable::Unreadable(_), true) => "; delete it to restart the phase",
            (Unusable::Corrupt { .. }, true) => "; delete it to restart the phase from scratch",
            _ => "",
        };
        TrainError::Checkpoint { path: path.to_path_buf(), reason: format!("{}{what}", self.reason()) }
    }
}

/// A checkpoint's entries, read onto `device` with its checksum verified (and removed).
/// Checkpoints written before checksums existed have none and are read as they are.
fn read_checkpoint(path: &Path, device: Device) -> Result<Vec<(String, Tensor)>, Unusable> {
    let mut saved = Tensor::load_multi_with_device(path, device)
        .map_err(|e| Unusable::Unreadable(trim_first_line(&e.to_string())))?;
    if let Some(i) = saved.iter().position(|(n, _)| n == CHECKSUM) {
        let recorded = saved.remove(i).1.int64_value(&[]);
        let actual = checksum(&saved).map_err(Unusable::Checksum)?;
        if recorded != actual {
            return Err(Unusable::Corrupt { actual, recorded });
        }
    }
    Ok(saved)
}

/// The model tensors of a checkpoint (weights and buffers as `w.NAME`, architecture
/// parameters as `a.NAME`), its checksum verified; loaded onto the CPU.
pub fn read_model_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, TrainError> {
    let saved = read_checkpoint(path, Device::Cpu).map_err(|e| e.into_error(path, false))?;
    Ok(saved.into_iter().filter(|(n, _)| n.starts_with("w.") || n.starts_with("a.")).collect())
}

/// Loads the entries of the checkpoint at `path` (read by [`read_checkpoint`]) into the store,
/// optimizer and loss scaler; returns the last finished epoch and the algorithm's state.
fn load_checkpoint(
    path: &Path,
    saved: Vec<(String, Tensor)>,
    store: &ParamStore,
    opt: &mut Optimizer,
    scaler: Option<&mut LossScaler>,
) -> Result<(usize, Vec<(String, Tensor)>), TrainError> {
    let err = |reason: String| TrainError::Checkpoint { path: path.to_path_buf(), reason };
    let _guard = tch::no_grad_guard();
    let mut epoch = None;
    let mut opt_state = Vec::new();
    let mut scaler_state = Vec::new();
    let mut algo_state = Vec::new();
    let mut live: std::collections::HashMap<String, Tensor> = model_tensors(store).into_iter().collect();
    for (name, t) in saved {
        if name == "epoch" {
            epoch = Some(t.int64_value(&[]) as usize);
        } else if let Some(rest) = name.strip_prefix("o.") {
            opt_state.push((rest.to_string(), t));
        } else if let Some(rest) = name.strip_prefix("s.") {
            scaler_state.push((rest.to_string(), t));
        } else if let Some(rest) = name.strip_prefix("g.") {
            algo_state.push((rest.to_string(), t));
        } else if let Some(mut dst) = live.remove(&name) {
            dst.copy_(&t);
        } else {
            return Err(err(format!(
                "holds `{name}`, which this model does not have: the checkpoint belongs to another model"
            )));
        }
    }
    if !live.is_empty() {
        let mut missing: Vec<&String> = live.keys().collect();
        missing.sort();
        return Err(err(format!(
            "lacks {} of this model's tensors ({}...): the checkpoint belongs to another model",
            missing.len(),
            missing.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    opt.load_state(&opt_state);
    if let Some(s) = scaler {
        s.load_state(&scaler_state);
    }
    Ok((epoch.ok_or_else(|| err("no epoch recorded".into()))?, algo_state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_that_do_not_fit_the_labels_are_an_error_not_a_panic() {
        let logits = Tensor::zeros([2, 10], (Kind::Float, Device::Cpu));
        let fine = criterion(&logits, &Tensor::from_slice(&[1i64, 2]), 0.0).unwrap();
        assert!((fine.double_value(&[]) - 10f64.ln()).abs() < 1e-6);
        let e = criterion(&Tensor::zeros([3, 10], (Kind::Float, Device::Cpu)), &Tensor::from_slice(&[1i64, 2]), 0.0);
        let e = e.unwrap_err().to_string();
        assert!(e.contains("the classifier returned logits of shape [3, 10]") && e.contains("2 labels"), "{e}");
        // A label outside the classes is said to be one, not reported as a shape mismatch.
        let e = criterion(&logits, &Tensor::from_slice(&[0i64, 15]), 0.0).unwrap_err().to_string();
        assert!(e.contains("out of bounds") && !e.contains("shape [2, 10] for"), "{e}");
        assert!(!e.contains("frame #"), "no C++ backtrace: {e}");
    }
}
