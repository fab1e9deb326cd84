//! The objectives of an outer-loop search, computed by the host for a model description.
use super::config::{BudgetTraining, LatencyConfig, ObjectiveKind};
use crate::experiment::{train_transforms, LoadedDataset};
use crate::model::Network;
use crate::params::ParamStore;
use crate::plugins::PluginRegistry;
use crate::runlog::RunLog;
use crate::train::{SplitData, Trainer};
use anyhow::{Context, Result};
use archai_model_desc::ModelDesc;
use std::collections::BTreeMap;
use std::path::Path;
use tch::Device;

/// Computes objective values of model descriptions.
pub struct Evaluator<'a> {
    pub reg: &'a PluginRegistry,
    pub latency: LatencyConfig,
    pub memory_batch: i64,
    pub training: Option<&'a BudgetTraining>,
    pub data: Option<&'a LoadedDataset>,
    pub device: Device,
    pub seed: u64,
    pub channels_last: bool,
}

impl Evaluator<'_> {
    /// The cheap objectives `kinds` of `desc`: one compile serves params and latency.
    pub fn cheap(&self, desc: &ModelDesc, kinds: &[ObjectiveKind]) -> Result<BTreeMap<ObjectiveKind, f64>> {
        let mut out = BTreeMap::new();
        if kinds.iter().any(|k| matches!(k, ObjectiveKind::Macs | ObjectiveKind::ActivationBytes)) {
            let (parts, _) = crate::stats::analyze(desc, self.reg)?;
            out.insert(ObjectiveKind::Macs, parts.iter().map(|p| p.macs).sum::<i64>() as f64);
            out.insert(
                ObjectiveKind::ActivationBytes,
                parts.iter().map(|p| p.activation_bytes_per_sample).sum::<i64>() as f64,
            );
        }
        if kinds.iter().any(|k| matches!(k, ObjectiveKind::Params | ObjectiveKind::LatencyMs)) {
            let store = ParamStore::new(Device::Cpu);
            let mut net = Network::compile(desc, self.reg, &store)?;
            net.channels_last = self.channels_last;
            out.insert(ObjectiveKind::Params, (store.weight_count() - crate::stats::aux_param_count(&store)) as f64);
            if kinds.contains(&ObjectiveKind::LatencyMs) {
                let before = tch::get_num_threads();
                tch::set_num_threads(self.latency.threads);
                let s = crate::stats::model_stats(
                    desc,
                    self.reg,
                    &net,
                    &store,
                    self.latency.batch,
                    self.latency.runs,
                    Device::Cpu,
                );
                tch::set_num_threads(before);
                out.insert(ObjectiveKind::LatencyMs, s?.latency_ms);
            }
        }
        if kinds.contains(&ObjectiveKind::TrainPeakMb) {
            out.insert(ObjectiveKind::TrainPeakMb, self.train_peak_mb(desc)?);
        }
        out.retain(|k, _| kinds.contains(k));
        Ok(out)
    }

    /// The memory one forward and backward pass at `memory_batch` needs above what was in use
    /// before it, MiB: the peak of live heap bytes counted by tcmalloc's hooks
    /// ([`crate::allocator::LivePeak`]), else (glibc) the growth of the resident high-water mark
    /// (VmHWM, reset through /proc/self/clear_refs).
    pub fn train_peak_mb(&self, desc: &ModelDesc) -> Result<f64> {
        let store = ParamStore::new(Device::Cpu);
        let mut net = Network::compile(desc, self.reg, &store)?;
        net.channels_last = self.channels_last;
        let [c, h] = [desc.input.channels, desc.input.size];
        let x = archai_plugin_api::kit::seeded::normal(&[self.memory_batch, c, h, h], 0);
        let y = tch::Tensor::zeros([self.memory_batch], (tch::Kind::Int64, Device::Cpu));
        let status = |key: &str| -> Result<f64> {
            let text = std::fs::read_to_string("/proc/self/status")?;
            let line = text.lines().find(|l| l.starts_with(key)).context("no memory figures in /proc/self/status")?;
            let kb: f64 = line.split_whitespace().nth(1).context("bad /proc/self/status")?.parse()?;
            Ok(kb / 1024.0)
        };
        // Under glibc, memory cached from the previous candidate would be reused unseen by the
        // high-water mark: give it back first (the warm-up step's too, below).
        crate::allocator::release_free_memory();
        // A first step pays one-time costs (kernel caches, libtorch's scratch buffers) that
        // belong to no architecture; the second one is measured.
        net.forward(&x, true)?.cross_entropy_for_logits(&y).backward();
        store.named_weights().iter().for_each(|(_, w)| {
            let mut g = w.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        });
        let step = || -> Result<()> {
            let loss = net.forward(&x, true)?.cross_entropy_for_logits(&y);
            loss.backward();
            Ok(())
        };
        // tcmalloc counts live bytes exactly; glibc leaves the resident high-water mark.
        if let Some(live) = crate::allocator::LivePeak::start() {
            step()?;
            return Ok(live.bytes() as f64 / (1024.0 * 1024.0));
        }
        if crate::allocator::name().starts_with("tcmalloc") {
            tracing::warn!(
                "tcmalloc serves this process but its allocation hooks are not exported: train_peak_mb falls back \
                 to the resident high-water mark, which misses memory tcmalloc reuses and may read low"
            );
        }
        crate::allocator::release_free_memory();
        let before = status("VmRSS:")?;
        std::fs::write("/proc/self/clear_refs", "5").context("resetting the memory high-water mark")?;
        step()?;
        let peak = status("VmHWM:")?;
        Ok((peak - before).max(0.0))
    }

    /// Validation top-1 of `desc` after training `training.trainer.epochs × budget` epochs
    /// (at least 1) in `dir` (its log.yaml and checkpoint stay there).
    ///
    /// With `warm`, the weights start from the source's (see [`super::warm`]); the record of
    /// what was carried goes to the candidate's log.yaml. Trained architecture parameters are
    /// written to `arch_params.json` in `dir`.
    pub fn val_top1(
        &self,
        desc: &ModelDesc,
        budget: f64,
        dir: &Path,
        warm: Option<&super::warm::WarmSource>,
    ) -> Result<f64> {
        let t = self.training.context("val_top1 needs search.training")?;
        let data = self.data.context("val_top1 needs the dataset")?;
        let mut trainer_cfg = t.trainer.clone();
        trainer_cfg.epochs = ((t.trainer.epochs as f64 * budget).round() as usize).max(1);
        let labels = data.train.labels();
        // A stratified subset first (its positions in the split), then its train/val split.
        let subset: Vec<usize> = match t.train_subset {
            Some(n) if n < labels.len() => {
                archai_data::split::stratified_train_val(labels, n as f64 / labels.len() as f64, self.seed).1
            }
            _ => (0..labels.len()).collect(),
        };
        let sub_labels: Vec<i64> = subset.iter().map(|&i| labels[i]).collect();
        let (tr, va) = archai_data::split::stratified_train_val(&sub_labels, t.val_ratio, self.seed);
        anyhow::ensure!(!tr.is_empty() && !va.is_empty(), "search.training: the train or val split is empty");
        let train = SplitData {
            buffer: data.train.clone(),
            indices: tr.iter().map(|&i| subset[i]).collect(),
            transforms: train_transforms(&trainer_cfg, data),
        };
        let val = SplitData {
            buffer: data.train.clone(),
            indices: va.iter().map(|&i| subset[i]).collect(),
            transforms: vec![data.normalize()],
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Each candidate's directory describes its model (a warm start's source too).
        std::fs::write(dir.join("model_desc.yaml"), desc.to_yaml())
            .with_context(|| format!("writing {}", dir.display()))?;
        // The same initial weights for a candidate whatever else was evaluated before it.
        tch::manual_seed(self.seed as i64);
        let store = ParamStore::new(self.device);
        let mut net = Network::compile(desc, self.reg, &store)?;
        net.channels_last = self.channels_last;
        let mut log = RunLog::open(dir)?;
        if let Some(w) = warm {
            let record = super::warm::carry(&store, w)?;
            tracing::info!(
                "warm start from {}: {} tensors carried, {} extended, {} new, {} dropped",
                record.source,
                record.carried.len(),
                record.extended.len(),
                record.new.len(),
                record.dropped.len()
            );
            log.tree.set("warm_start", record)?;
        }
        let mut trainer = Trainer {
            config: trainer_cfg,
            phase: "eval".into(),
            seed: self.seed,
            device: self.device,
            checkpoint: dir.join("checkpoint.pt"),
            events: &mut log,
            strategy: crate::train::Strategy::Single,
        };
        let report = trainer.fit(&mut net, &store, &train, Some(&val), None, false)?;
        log.tree.set("status", archai_runlog::schema::RunStatus::Ok)?;
        log.flush()?;
        if !desc.arch_params.is_empty() {
            super::write_arch_params(&store, dir)?;
        }
        Ok(report.val.map(|m| m.top1).unwrap_or(f64::NAN))
    }
}
