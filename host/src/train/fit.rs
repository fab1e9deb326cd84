//! The training loop of one phase: checks, optimizer and resume ([`Trainer::fit`]), then per
//! epoch the steps ([`Trainer::train_epoch`]) and the epoch's end ([`Trainer::end_epoch`]:
//! combining figures over ranks, validation, the algorithm's epoch hook, the checkpoint). Where
//! gradients are complete is the [`Strategy`]'s business, what gets written the
//! [`EventSink`]'s.
use super::events::{Event, EventSink};
use super::{
    algorithm_hook, algorithm_step, checkpoint_to_resume, evaluate_with, joint_arch_params, load_checkpoint,
    plugin_result, save_checkpoint, to_tensors, weight_step_with, FitReport, Meter, Metrics, Optimizer, Services,
    SplitData, StepTensors, Strategy, TrainError, TrainerConfig,
};
use crate::model::Network;
use crate::params::ParamStore;
use crate::plugins::PluginAlgorithm;
use crate::train::precision::LossScaler;
use abi_stable::std_types::RVec;
use archai_data::Batcher;
use archai_plugin_api::{ArchTraining, ComponentKind, NamedTensor, StepOutcome, TensorOwned};
use archai_runlog::schema::TrainEpoch;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Tensor};

/// The trainer of one phase.
pub struct Trainer<'a> {
    pub config: TrainerConfig,
    pub phase: String,
    pub seed: u64,
    pub device: Device,
    pub checkpoint: PathBuf,
    /// Where the loop's events go (the run's log).
    pub events: &'a mut dyn EventSink,
    /// One process, or data parallel: where gradients are completed and figures combined.
    pub strategy: Strategy<'a>,
}

/// `trainer.drop_path_prob` raised linearly over the epochs: 0 in the first, `max * e / epochs`
/// in epoch e (DARTS' schedule).
fn drop_path_at(max: f64, epoch: usize, epochs: usize) -> f64 {
    max * epoch as f64 / epochs.max(1) as f64
}

/// What a fit trains, with what.
struct Fit<'f> {
    c: TrainerConfig,
    net: &'f mut Network,
    store: &'f ParamStore,
    opt: Optimizer,
    scaler: Option<LossScaler>,
    algorithm: Option<&'f mut PluginAlgorithm>,
    steps_per_epoch: usize,
    total_steps: usize,
}

impl Fit<'_> {
    fn arch_training(&self) -> Option<ArchTraining> {
        self.algorithm.as_deref().map(|a| a.arch_training)
    }
}

/// Per-key means of the numbers hooks return, each over the steps that reported it (an
/// algorithm that skips its architecture step during a warm-up reports nothing then).
#[derive(Default)]
struct StepMeans(std::collections::BTreeMap<String, (f64, u64)>);

impl StepMeans {
    fn add(&mut self, out: serde_json::Value) {
        if let serde_json::Value::Object(m) = out {
            for (k, v) in m {
                if let Some(f) = v.as_f64() {
                    let e = self.0.entry(k).or_insert((0.0, 0));
                    e.0 += f;
                    e.1 += 1;
                }
            }
        }
    }

    fn into_value(self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0.into_iter().map(|(k, (sum, n))| (k, serde_json::json!(sum / n as f64))).collect(),
        )
    }
}

/// The architecture step's validation batches: one endless stream, reshuffled per pass; global
/// step s reads batch s % n of pass s / n, so a resumed run reads the same batches as an
/// uninterrupted one.
struct ValStream<'v> {
    split: &'v SplitData,
    per_pass: usize,
    batch_size: usize,
    seed: u64,
    pass: Option<(usize, Batcher)>,
}

impl<'v> ValStream<'v> {
    fn new(split: &'v SplitData, batch_size: usize, seed: u64) -> Result<Self, TrainError> {
        let seed = seed ^ 0x5eed;
        let per_pass = split.batcher(batch_size, 0, seed, false)?.len();
        if per_pass == 0 {
            return Err(TrainError::Config("the validation split is empty".into()));
        }
        Ok(Self { split, per_pass, batch_size, seed, pass: None })
    }

    fn batch(&mut self, step: usize, device: Device) -> Result<(Tensor, Tensor), TrainError> {
        let pass = step / self.per_pass;
        if self.pass.as_ref().is_none_or(|(p, _)| *p != pass) {
            self.pass = Some((pass, self.split.batcher(self.batch_size, pass, self.seed, true)?));
        }
        let b = self.pass.as_ref().and_then(|(_, b)| b.batch(step % self.per_pass)).expect("index below len");
        Ok(to_tensors(&b, device))
    }
}

/// What the steps of one epoch add up to (this rank's share until combined).
#[derive(Default)]
struct EpochSums {
    meter: Meter,
    aux_loss_sum: f64,
    algorithm: StepMeans,
    after_step: StepMeans,
    candidate_forwards: u64,
    lr: f64,
    seconds: f64,
}

impl Trainer<'_> {
    fn config_error(&self, message: String) -> TrainError {
        TrainError::Config(format!("{}: {message}", self.phase))
    }

    fn where_to_continue(&self, what: &str) -> String {
        if self.checkpoint.is_file() {
            format!("The last {what} is {}", self.checkpoint.display())
        } else {
            "No checkpoint was written yet".to_string()
        }
    }

    /// Settings that cannot train together, refused before any work.
    fn refuse_conflicts(
        &self,
        c: &TrainerConfig,
        net: &Network,
        algorithm: Option<&PluginAlgorithm>,
        has_val: bool,
    ) -> Result<(), TrainError> {
        c.validate().map_err(|e| self.config_error(e))?;
        let bilevel = algorithm.is_some_and(|a| a.arch_training.takes_val_batch());
        if bilevel && !has_val {
            return Err(self.config_error(format!(
                "algorithm `{}` trains its architecture on a validation split; set nas.search.val_ratio > 0",
                algorithm.map(|a| a.name.as_str()).unwrap_or_default()
            )));
        }
        if c.aux_weight > 0.0 && !net.has_aux() {
            return Err(self.config_error(format!(
                "trainer.aux_weight = {} but the model has no auxiliary head; add `aux` to the model \
                 description (finalizer config auxiliary: true for the DARTS family) or set aux_weight: 0",
                c.aux_weight
            )));
        }
        let Some(algo) = algorithm else {
            return Ok(());
        };
        if algo.arch_training == ArchTraining::BilevelWithTrainGrad {
            let l1 = net.desc.arch_params.iter().any(|p| p.l1 > 0.0);
            if let Some(what) = train_grad_mismatch(c, l1) {
                return Err(self.config_error(format!(
                    "algorithm `{}` reuses the weight step's architecture gradient as that of the plain training \
                     loss, but the step's loss has {what}; change that setting or configure the algorithm not to \
                     reuse the gradient (see its documentation)",
                    algo.name
                )));
            }
        }
        if c.precision.needs_loss_scaling() {
            return Err(self.config_error(
                "precision fp16 needs loss scaling, which the architecture step does not do; search in bf16 or fp32"
                    .into(),
            ));
        }
        if !c.param_groups.is_empty() {
            return Err(self.config_error(
                "param_groups cannot be used with a search algorithm (its architecture step models one \
                 weight optimizer); remove trainer.param_groups from the search phase"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Loads the phase checkpoint into the model, optimizer, scaler and algorithm; returns the
    /// first epoch still to train (0 without a checkpoint).
    fn resume(&self, fit: &mut Fit) -> Result<usize, TrainError> {
        // Onto the model's device: optimizer and algorithm state are used as loaded (a CUDA run
        // resumed with CPU momentum buffers would fail at its first step).
        let Some((from, saved)) = checkpoint_to_resume(&self.phase, &self.checkpoint, fit.store.device())? else {
            return Ok(0);
        };
        let (done, algo_state) = load_checkpoint(&from, saved, fit.store, &mut fit.opt, fit.scaler.as_mut())?;
        match fit.algorithm.as_deref_mut() {
            Some(algo) => {
                let state: RVec<NamedTensor> = algo_state
                    .into_iter()
                    .map(|(n, t)| NamedTensor { name: n.into(), tensor: TensorOwned::new(t) })
                    .collect();
                plugin_result(algo.inner.load_state(state), &algo.plugin, ComponentKind::Algorithm, &algo.name)?;
            }
            None if !algo_state.is_empty() => {
                return Err(TrainError::Checkpoint {
                    path: self.checkpoint.clone(),
                    reason: "holds search-algorithm state but this phase runs no algorithm".into(),
                })
            }
            None => {}
        }
        // Counted from 1, like the epoch lines on the console.
        tracing::info!("{}: resumed from {} after epoch {}/{}", self.phase, from.display(), done + 1, fit.c.epochs);
        Ok(done + 1)
    }

    /// Trains `net` on `train`, evaluating on `val` after each epoch. With an algorithm, its
    /// `before_epoch` runs at the start of every epoch, `before_step` before every weight step
    /// (with a validation batch), `after_step` after it and `after_epoch` after every epoch.
    /// Resumes from the phase checkpoint when `resume` and one exists.
    pub fn fit(
        &mut self,
        net: &mut Network,
        store: &ParamStore,
        train: &SplitData,
        val: Option<&SplitData>,
        algorithm: Option<&mut PluginAlgorithm>,
        resume: bool,
    ) -> Result<FitReport, TrainError> {
        let c = self.config.clone();
        self.refuse_conflicts(&c, net, algorithm.as_deref(), val.is_some())?;
        let mut owned = store.named_weights();
        if algorithm.is_none() {
            owned.extend(joint_arch_params(net, store));
        }
        let opt = Optimizer::with_groups(c.optimizer.clone(), &c.param_groups, owned)
            .map_err(|e| self.config_error(e.to_string()))?;
        if !c.param_groups.is_empty() {
            tracing::info!("{}: parameter groups {:?}", self.phase, opt.group_sizes());
        }
        let steps_per_epoch = {
            let n = train.batcher(c.batch_size, 0, self.seed, false)?.len();
            c.max_batches.map_or(n, |m| m.min(n))
        };
        if c.epochs > 0 && steps_per_epoch == 0 {
            return Err(self.config_error(format!(
                "the training split has {} samples (batch {}), so {} epoch(s) would train nothing; \
                 a run that trains nothing is refused (check val_ratio, max_batches and the dataset)",
                train.indices.len(),
                c.batch_size,
                c.epochs
            )));
        }
        let scaler = c.loss_scaler();
        let total_steps = steps_per_epoch * c.epochs;
        let mut fit = Fit { c, net, store, opt, scaler, algorithm, steps_per_epoch, total_steps };
        let start_epoch = if resume { self.resume(&mut fit)? } else { 0 };
        // Ranks start from one model whatever their seeds or initializations (after a resume
        // they loaded the same checkpoint; this also covers a rank that did not find it).
        self.strategy.broadcast_model(store)?;
        let mut val_stream = match (val, fit.arch_training()) {
            (Some(v), Some(t)) if t.takes_val_batch() => Some(ValStream::new(v, fit.c.batch_size, self.seed)?),
            _ => None,
        };
        let started = Instant::now();
        let mut report = FitReport::default();
        // The gradient hooks hold this fit's parameters; the next fit trains other ones.
        let _unhook = self.strategy.hooks_released_on_drop();
        for epoch in start_epoch..fit.c.epochs {
            let sums = self.train_epoch(&mut fit, epoch, train, val_stream.as_mut())?;
            let (train_m, val_m) = self.end_epoch(&mut fit, epoch, sums, val)?;
            report.train = train_m;
            report.val = val_m;
            report.epochs_run += 1;
        }
        report.epochs_done = start_epoch + report.epochs_run;
        if report.epochs_run == 0 && start_epoch > 0 {
            // Resumed after its last epoch (killed before the phase's summary): the figures
            // are the record's, which is written before each checkpoint.
            let (train_m, val_m) = self.events.recorded(&self.phase, start_epoch - 1).ok_or_else(|| {
                TrainError::Log(format!(
                    "{}: the checkpoint is past epoch {start_epoch} but log.yaml has no figures for it",
                    self.phase
                ))
            })?;
            report.train = train_m;
            report.val = val_m;
        }
        report.duration_s = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The steps of one epoch: the algorithm's epoch and step hooks around each weight step.
    fn train_epoch(
        &mut self,
        fit: &mut Fit,
        epoch: usize,
        train: &SplitData,
        mut val_stream: Option<&mut ValStream>,
    ) -> Result<EpochSums, TrainError> {
        let (c, strategy, steps_per_epoch) = (fit.c.clone(), self.strategy, fit.steps_per_epoch);
        // Per-epoch reseeding makes drop path and any torch randomness independent of whether
        // the run was resumed.
        tch::manual_seed((self.seed as i64).wrapping_mul(1000).wrapping_add(epoch as i64));
        fit.net.drop_path_prob = drop_path_at(c.drop_path_prob, epoch, c.epochs);
        fit.net.recompute_cells = c.recompute_cells;
        fit.store.set_recompute_ops(c.recompute_ops);
        if let Some(algo) = fit.algorithm.as_deref_mut() {
            let lr0 = c.scheduler.lr_at(c.optimizer.lr, epoch * steps_per_epoch, steps_per_epoch, fit.total_steps);
            let mut services = Services::new(fit.net, fit.store, &fit.opt, lr0, &c).across(strategy);
            let out = algorithm_hook(algo, &mut services, |a, m| a.before_epoch(m, epoch as u32))?;
            if out.as_object().is_some_and(|m| !m.is_empty()) {
                let event = Event::Algorithm { epoch, section: "algorithm_start", output: &out, scalars: true };
                self.events.event(&self.phase, event)?;
            }
        }
        let t0 = Instant::now();
        let mut sums = EpochSums { lr: c.optimizer.lr, ..Default::default() };
        let batcher = train.batcher(c.batch_size, epoch, self.seed, true)?;
        let label = format!("{} epoch {}/{}", self.phase, epoch + 1, c.epochs);
        let mut progress = self.events.progress(label, steps_per_epoch as u64);
        let arch_training = fit.arch_training();
        for (i, b) in batcher.iter().enumerate().take(steps_per_epoch) {
            // Data-parallel ranks agree on stopping inside the step (below), so that no rank
            // leaves the others waiting in a collective.
            if let (Some(signal), 1) = (crate::interrupt::requested(), strategy.world()) {
                let checkpoint = self.where_to_continue("checkpoint");
                return Err(TrainError::Interrupted { signal, epoch, step: i, checkpoint });
            }
            let step = epoch * steps_per_epoch + i;
            let lr = c.scheduler.lr_at(c.optimizer.lr, step, steps_per_epoch, fit.total_steps);
            sums.lr = lr;
            let (x, y) = to_tensors(&b, self.device);
            if let Some(algo) = fit.algorithm.as_deref_mut() {
                let (vx, vy) = match val_stream.as_deref_mut() {
                    Some(v) => {
                        let (vx, vy) = v.batch(step, self.device)?;
                        strategy.local_rows(&vx, &vy)
                    }
                    None => (Tensor::new(), Tensor::new()),
                };
                // A data-parallel rank's algorithm sees its rows of the batches and averages the
                // gradients it computes over the ranks (Model::average_over_ranks).
                let (lx, ly) = strategy.local_rows(&x, &y);
                let data = StepTensors { x: &lx, y: &ly, val_x: &vx, val_y: &vy, epoch, step, lr };
                sums.algorithm.add(algorithm_step(algo, fit.net, fit.store, &fit.opt, &data, &c, strategy)?);
            }
            fit.opt.schedule(|base| c.scheduler.lr_at(base, step, steps_per_epoch, fit.total_steps));
            let forwards_before = fit.net.candidate_forwards();
            let out = weight_step_with(
                fit.net,
                fit.store,
                &mut fit.opt,
                &x,
                &y,
                &c,
                lr,
                fit.scaler.as_mut(),
                arch_training.unwrap_or(ArchTraining::Manual),
                strategy,
            )?;
            sums.candidate_forwards += fit.net.candidate_forwards() - forwards_before;
            let objective = out.objective(c.aux_weight);
            if !objective.is_finite() {
                let checkpoint = self.where_to_continue("good checkpoint");
                return Err(TrainError::NonFinite { value: objective, epoch, step: i, checkpoint });
            }
            if let Some(algo) = fit.algorithm.as_deref_mut() {
                let outcome = StepOutcome { epoch: epoch as u32, step: step as u64, lr, loss: out.loss };
                let mut services = Services::new(fit.net, fit.store, &fit.opt, lr, &c).across(strategy);
                sums.after_step.add(algorithm_hook(algo, &mut services, |a, m| a.after_step(m, outcome))?);
                if i == 0 && strategy.world() > 1 {
                    // An algorithm that does not average its architecture gradients is caught
                    // at its first step, not after an epoch of diverged work.
                    let why = format!(
                        ": algorithm `{}` must average the architecture gradients it computes over the \
                         ranks (Model::average_over_ranks) to search data-parallel; run it in one process",
                        algo.name
                    );
                    strategy.check_in_sync(fit.store, &format!("after the first step of epoch {}", epoch + 1), &why)?;
                }
            }
            sums.meter.add(&out.logits, &out.labels, out.loss);
            if let Some(a) = out.aux_loss {
                sums.aux_loss_sum += a * out.labels.size()[0] as f64;
            }
            progress.inc(1);
            if out.stop_requested {
                let signal = crate::interrupt::requested().unwrap_or("a signal to another rank");
                let checkpoint = self.where_to_continue("checkpoint");
                return Err(TrainError::Interrupted { signal, epoch, step: i + 1, checkpoint });
            }
        }
        progress.finish();
        sums.seconds = t0.elapsed().as_secs_f64();
        Ok(sums)
    }

    /// The end of an epoch: figures combined over ranks and reported, validation, the
    /// algorithm's epoch hook, the checkpoint.
    fn end_epoch(
        &mut self,
        fit: &mut Fit,
        epoch: usize,
        mut sums: EpochSums,
        val: Option<&SplitData>,
    ) -> Result<(Metrics, Option<Metrics>), TrainError> {
        let (c, strategy) = (fit.c.clone(), self.strategy);
        sums.meter.combine(strategy)?;
        let mut aux = [sums.aux_loss_sum];
        strategy.sum(&mut aux)?;
        // One model on every rank before it is evaluated and saved.
        strategy.average_buffers(fit.store)?;
        let train_m = sums.meter.metrics();
        let net = &*fit.net;
        let record = TrainEpoch {
            loss: train_m.loss,
            top1: train_m.top1,
            top5: train_m.top5,
            samples: train_m.samples as u64,
            lr: sums.lr,
            duration_s: sums.seconds,
            samples_per_s: train_m.samples as f64 / sums.seconds.max(1e-9),
            // Per sample, like `loss`.
            aux_loss: (c.aux_weight > 0.0).then(|| aux[0] / train_m.samples.max(1) as f64),
            group_lrs: (!c.param_groups.is_empty()).then(|| fit.opt.group_lrs(sums.lr).into_iter().collect()),
            // How many candidate ops the mixers ran per weight step, against the mixed edges:
            // equal for single-path mixers (GDAS), about |candidates| times for DARTS.
            mixed_edges: (net.mixed_edges() > 0).then(|| net.mixed_edges() as u64),
            candidate_forwards_per_step: (net.mixed_edges() > 0)
                .then(|| sums.candidate_forwards as f64 / fit.steps_per_epoch.max(1) as f64),
            loss_scale: fit.scaler.as_ref().map(|s| s.scale()),
            skipped_steps: fit.scaler.as_ref().map(|s| s.skipped as u64),
        };
        self.events.event(&self.phase, Event::Train { epoch, record: &record })?;
        for (section, means) in [("algorithm", sums.algorithm), ("algorithm_after_step", sums.after_step)] {
            let output = means.into_value();
            if output.as_object().is_some_and(|m| !m.is_empty()) {
                self.events.event(&self.phase, Event::Algorithm { epoch, section, output: &output, scalars: false })?;
            }
        }
        let val_m = match val {
            Some(v) => {
                let m = evaluate_with(net, v, c.batch_size, c.max_eval_batches, self.device, c.precision, strategy)?;
                self.events.event(&self.phase, Event::Val { epoch, metrics: &m })?;
                Some(m)
            }
            None => None,
        };
        let algo_state = match fit.algorithm.as_deref_mut() {
            Some(algo) => {
                let mut services = Services::new(fit.net, fit.store, &fit.opt, sums.lr, &c).across(strategy);
                let v = algorithm_hook(algo, &mut services, |a, m| a.after_epoch(m, epoch as u32))?;
                if !v.is_null() {
                    let event = Event::Algorithm { epoch, section: "algorithm_end", output: &v, scalars: true };
                    self.events.event(&self.phase, event)?;
                }
                plugin_result(algo.inner.state(), &algo.plugin, ComponentKind::Algorithm, &algo.name)?
                    .into_iter()
                    .map(|n| (n.name.into_string(), n.tensor.into_tensor()))
                    .collect()
            }
            None => Vec::new(),
        };
        // After the algorithm's epoch hook, which may change architecture parameters too.
        strategy.check_in_sync(fit.store, &format!("after {} epoch {}", self.phase, epoch + 1), "")?;
        // The epoch's record is on disk before its checkpoint: a run killed in between redoes
        // the epoch on resume (and rewrites the record), where the other order would resume
        // after an epoch that log.yaml never got.
        let event = Event::EpochEnd {
            epoch,
            epochs: c.epochs,
            train: &train_m,
            val: val_m.as_ref(),
            lr: sums.lr,
            seconds: sums.seconds,
        };
        self.events.event(&self.phase, event)?;
        if strategy.writes() {
            save_checkpoint(&self.checkpoint, fit.store, &fit.opt, fit.scaler.as_ref(), algo_state, epoch)?;
        }
        Ok((train_m, val_m))
    }
}

/// What makes the weight step's loss differ from `Model::loss` on the same batch and weights, so
/// that its architecture gradient cannot stand for that loss's
/// ([`ArchTraining::BilevelWithTrainGrad`]); `None` when nothing does.
fn train_grad_mismatch(c: &TrainerConfig, arch_l1: bool) -> Option<&'static str> {
    if c.aux_weight > 0.0 {
        Some("an auxiliary head's term (trainer.aux_weight > 0)")
    } else if arch_l1 {
        Some("an L1 penalty on architecture parameters (the model description's `l1`)")
    } else if c.drop_path_prob > 0.0 {
        Some("drop path (trainer.drop_path_prob > 0), whose paths each pass draws anew")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reusing_the_weight_steps_arch_gradient_needs_the_plain_loss() {
        let plain = TrainerConfig::sgd(8, 0.1, 0.0, Some(5.0));
        assert_eq!(train_grad_mismatch(&plain, false), None);
        let aux = TrainerConfig { aux_weight: 0.4, ..plain.clone() };
        assert!(train_grad_mismatch(&aux, false).unwrap().contains("aux_weight"));
        assert!(train_grad_mismatch(&plain, true).unwrap().contains("l1"));
        let drop = TrainerConfig { drop_path_prob: 0.2, ..plain.clone() };
        assert!(train_grad_mismatch(&drop, false).unwrap().contains("drop_path_prob"));
    }

    #[test]
    fn drop_path_rises_linearly_from_zero_over_the_epochs() {
        let probs: Vec<f64> = (0..4).map(|e| drop_path_at(0.2, e, 4)).collect();
        assert_eq!(probs, vec![0.0, 0.05, 0.1, 0.15000000000000002]);
        assert_eq!(drop_path_at(0.3, 0, 0), 0.0);
    }
}
