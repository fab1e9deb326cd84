//! Where a step's gradients become complete and how figures are combined: one process, or data
//! parallel over a c10d group.
//!
//! Data parallelism here is the batch-chunked step spread over ranks: every rank reads the same
//! global batch (same sampler, same shuffle), computes the `rank`-th of `world` chunks of it
//! (split as `torch.chunk` splits), scales its loss by its share of the batch, and the
//! gradients are summed over the ranks. The sum is exactly the gradient of the global batch, so
//! a run on W ranks equals a single-process run with `batch_chunks: W` (batch-norm statistics
//! are per chunk in both), and `trainer.batch_size` keeps meaning the global batch.
//!
//! The sum overlaps the step's last backward pass (`common.dist_overlap`): a hook on each
//! parameter's gradient accumulator sends a bucket of gradients as soon as they are all complete,
//! while the backward computes the next ones (as PyTorch's DistributedDataParallel does). Buckets
//! follow the order in which the first step's gradients became complete on rank 0.
use super::TrainError;
use crate::params::ParamStore;
use archai_dist::{GradReducer, ProcessGroup};
use std::cell::{Cell, RefCell};
use tch::{Kind, Tensor};

/// How gradients are summed over the ranks (`common.dist_overlap`, `common.dist_bucket_mib`).
#[derive(Clone, Copy, Debug)]
pub struct GradSync {
    /// Sum buckets while the backward pass runs instead of after it.
    pub overlap: bool,
    /// Size of a bucket: large enough to amortize a collective's latency, small enough that the
    /// first buckets leave early in the backward.
    pub bucket_mib: f64,
}

impl GradSync {
    pub fn from_common(c: &crate::config::CommonConfig) -> Self {
        Self { overlap: c.dist_overlap, bucket_mib: c.dist_bucket_mib }
    }

    /// fp32 elements per bucket.
    fn bucket_elements(&self) -> i64 {
        ((self.bucket_mib * 1024.0 * 1024.0 / 4.0) as i64).max(1)
    }
}

/// A data-parallel job as the trainer sees it: the group, how gradients are summed, and the
/// hooks on the parameters being trained.
pub struct DataParallel {
    group: ProcessGroup,
    sync: GradSync,
    hooked: RefCell<Option<Hooked>>,
    /// Whether the hooks are armed for the current step's last backward.
    armed: Cell<bool>,
    /// Said once: why the gradients of a step were not summed during its backward.
    told_not_overlapped: Cell<bool>,
}

/// The reducer hooked on one list of parameters (one fit's), recognised by their storage.
struct Hooked {
    key: Vec<(usize, i64)>,
    reducer: GradReducer,
    /// Finished steps (the first re-buckets in the order the gradients became complete, the
    /// second is reported).
    steps: u64,
}

fn key_of(params: &[Tensor]) -> Vec<(usize, i64)> {
    params.iter().map(|p| (p.data_ptr() as usize, p.numel() as i64)).collect()
}

impl DataParallel {
    pub fn new(group: ProcessGroup, sync: GradSync) -> Self {
        Self { group, sync, hooked: RefCell::new(None), armed: Cell::new(false), told_not_overlapped: Cell::new(false) }
    }

    pub fn group(&self) -> &ProcessGroup {
        &self.group
    }

    fn tell_once(&self, why: &str) {
        if !self.told_not_overlapped.replace(true) {
            tracing::warn!("data-parallel: gradients are summed after the backward pass, not during it: {why}");
        }
    }
}

#[derive(Clone, Copy)]
pub enum Strategy<'g> {
    Single,
    DataParallel(&'g DataParallel),
}

fn collective(e: archai_dist::DistError) -> TrainError {
    TrainError::Distributed(e.to_string())
}

/// Each tensor summed over the ranks and divided by `divisor`, in one collective (fp32 on the CPU
/// underneath, as Gloo reduces it), returned in the tensor's own kind, shape and device.
fn reduce(g: &ProcessGroup, tensors: &[Tensor], divisor: f64) -> Result<Vec<Tensor>, TrainError> {
    if tensors.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<Tensor> =
        tensors.iter().map(|t| t.detach().to_kind(Kind::Float).to_device(tch::Device::Cpu).flatten(0, -1)).collect();
    let mut flat = Tensor::cat(&parts, 0);
    g.all_reduce_sum(&mut flat).map_err(collective)?;
    if divisor != 1.0 {
        flat /= divisor;
    }
    let mut offset = 0;
    Ok(tensors
        .iter()
        .map(|t| {
            let n = t.numel() as i64;
            let part = flat.narrow(0, offset, n).view_as(t).to_kind(t.kind()).to_device(t.device());
            offset += n;
            part
        })
        .collect())
}

impl<'g> Strategy<'g> {
    /// Data parallel over `job` when its group has more than one rank.
    pub fn over(job: Option<&'g DataParallel>) -> Self {
        match job {
            Some(j) if j.group.world() > 1 => Strategy::DataParallel(j),
            _ => Strategy::Single,
        }
    }

    fn group(&self) -> Option<&'g ProcessGroup> {
        match self {
            Strategy::Single => None,
            Strategy::DataParallel(j) => Some(&j.group),
        }
    }

    pub fn world(&self) -> usize {
        self.group().map_or(1, ProcessGroup::world)
    }

    pub fn rank(&self) -> usize {
        self.group().map_or(0, ProcessGroup::rank)
    }

    /// Whether this process writes the run's files (checkpoints): rank 0 alone.
    pub fn writes(&self) -> bool {
        self.rank() == 0
    }

    /// This rank's rows of a global batch: chunk `rank` of `x.chunk(world)` (ceil-sized chunks,
    /// so a short last batch may leave a rank with none).
    pub fn local_rows(&self, x: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
        match self {
            Strategy::Single => (x.shallow_clone(), y.shallow_clone()),
            Strategy::DataParallel(j) => {
                let n = y.size()[0];
                let w = j.group.world() as i64;
                let per = ((n + w - 1) / w).max(1);
                let start = (per * j.group.rank() as i64).min(n);
                let len = per.min(n - start);
                (x.narrow(0, start, len), y.narrow(0, start, len))
            }
        }
    }

    /// How many forwards rank 0 (which holds the most rows) runs for a global batch of `n` rows
    /// cut into `chunks`. Every rank runs that many, some on no rows, so that stochastic mixers
    /// (GDAS' Gumbel samples) draw in step and every rank's gradients reach the same tensors.
    pub fn lead_forwards(&self, n: i64, chunks: usize) -> usize {
        let rows = match self {
            Strategy::Single => n,
            Strategy::DataParallel(j) => {
                let w = j.group.world() as i64;
                ((n + w - 1) / w).max(1).min(n)
            }
        };
        chunk_count(rows, chunks)
    }

    /// Hooks `params` (the step's trained tensors, in the same order on every rank) so that the
    /// next backward pass, the step's last (that of `loss`), sends their gradients while it runs;
    /// with `common.dist_overlap: false`, or parameters the hooks cannot take, it does nothing
    /// and [`Strategy::complete_gradients`] sums them after the backward.
    pub fn before_last_backward(&self, params: &[Tensor], loss: &Tensor) -> Result<(), TrainError> {
        let Strategy::DataParallel(j) = self else { return Ok(()) };
        j.armed.set(false);
        if !j.sync.overlap {
            return Ok(());
        }
        if params.iter().any(|p| !p.requires_grad()) {
            j.tell_once("the step trains a tensor that does not require gradients");
            return Ok(());
        }
        let key = key_of(params);
        let mut hooked = j.hooked.borrow_mut();
        if hooked.as_ref().is_none_or(|h| h.key != key) {
            // Drop the previous fit's hooks (and its parameters) before hooking new ones.
            *hooked = None;
            let order: Vec<usize> = (0..params.len()).collect();
            let reducer = GradReducer::new(&j.group, params, &order, j.sync.bucket_elements()).map_err(collective)?;
            *hooked = Some(Hooked { key, reducer, steps: 0 });
        }
        hooked.as_ref().expect("hooked above").reducer.arm(loss).map_err(collective)?;
        j.armed.set(true);
        Ok(())
    }

    /// A guard that removes the gradient hooks when dropped (at the end of a fit, however it
    /// ends: its parameters may be freed).
    pub fn hooks_released_on_drop(&self) -> impl Drop + 'g {
        struct Unhook<'g>(Strategy<'g>);
        impl Drop for Unhook<'_> {
            fn drop(&mut self) {
                if let Strategy::DataParallel(j) = self.0 {
                    j.hooked.borrow_mut().take();
                    j.armed.set(false);
                }
            }
        }
        Unhook(*self)
    }

    /// Sums the (share-scaled) gradients of `params` over the ranks, and `extras` with them
    /// (step figures that must agree on every rank: loss, stop requests). Gradients a rank did
    /// not produce count as zeros. A single process has nothing to do.
    pub fn complete_gradients(&self, params: &[Tensor], extras: &mut [f64]) -> Result<(), TrainError> {
        let Strategy::DataParallel(j) = self else { return Ok(()) };
        if j.armed.replace(false) {
            let mut hooked = j.hooked.borrow_mut();
            let h = hooked.as_mut().expect("armed hooks exist");
            if h.key != key_of(params) {
                return Err(TrainError::Distributed(
                    "the gradient hooks were armed for other parameters than the step completes".into(),
                ));
            }
            let step = h.reducer.finish(extras).map_err(collective)?;
            h.steps += 1;
            if h.steps == 1 {
                h.reducer.rebuild_in_rank0_order(j.sync.bucket_elements()).map_err(collective)?;
            } else if h.steps == 2 {
                tracing::info!(
                    "data-parallel: {} of {} gradient buckets (common.dist_bucket_mib = {}) were summed while \
                     the backward pass computed other gradients",
                    step.overlapped,
                    step.buckets,
                    j.sync.bucket_mib
                );
            }
            if step.reduced_again {
                j.tell_once(
                    "a parameter's gradient was accumulated twice in the step's last backward pass (a tensor \
                     used in two graphs), so every bucket was summed again after it",
                );
            }
            return Ok(());
        }
        let g = &j.group;
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).collect();
        // Buckets of consecutive parameters, in the optimizer's (name-sorted) order, which is
        // the same on every rank.
        let mut start = 0;
        while start < grads.len() {
            let mut end = start;
            let mut elements = 0;
            while end < grads.len()
                && (end == start || elements + params[end].numel() as i64 <= j.sync.bucket_elements())
            {
                elements += params[end].numel() as i64;
                end += 1;
            }
            let bucket: Vec<Tensor> = (start..end)
                .map(|i| match grads[i].defined() {
                    true => grads[i].shallow_clone(),
                    false => Tensor::zeros([params[i].numel() as i64], (Kind::Float, tch::Device::Cpu)),
                })
                .collect();
            for (i, sum) in (start..end).zip(reduce(g, &bucket, 1.0)?) {
                if grads[i].defined() {
                    grads[i].shallow_clone().copy_(&sum);
                }
            }
            start = end;
        }
        // In f64, as the overlapped path sums them.
        self.sum(extras)
    }

    /// Each tensor's element-wise mean over the ranks, in its own kind and device (one
    /// collective for all of them); the tensors themselves in one process.
    pub fn average(&self, tensors: Vec<Tensor>) -> Result<Vec<Tensor>, TrainError> {
        match self {
            Strategy::Single => Ok(tensors),
            Strategy::DataParallel(j) => reduce(&j.group, &tensors, j.group.world() as f64),
        }
    }

    /// Sums `values` over the ranks in place.
    pub fn sum(&self, values: &mut [f64]) -> Result<(), TrainError> {
        let Some(g) = self.group() else { return Ok(()) };
        let mut t = Tensor::from_slice(values);
        g.all_reduce_sum(&mut t).map_err(collective)?;
        let summed = Vec::<f64>::try_from(&t).map_err(|e| TrainError::Distributed(e.to_string()))?;
        values.copy_from_slice(&summed);
        Ok(())
    }

    /// Gives every rank rank 0's model (weights, buffers, architecture parameters), so that
    /// ranks whose initializations differ start identical.
    pub fn broadcast_model(&self, store: &ParamStore) -> Result<(), TrainError> {
        let Some(g) = self.group() else { return Ok(()) };
        let _guard = tch::no_grad_guard();
        for (_, t) in super::model_tensors(store) {
            let mut flat = t.detach().to_device(tch::Device::Cpu).contiguous();
            g.broadcast(&mut flat, 0).map_err(collective)?;
            t.shallow_clone().copy_(&flat.to_device(t.device()));
        }
        Ok(())
    }

    /// Averages the floating-point buffers (batch-norm running statistics) over the ranks, so
    /// that evaluation and checkpoints see one model; every rank ran the same number of steps,
    /// so integer counters already agree.
    pub fn average_buffers(&self, store: &ParamStore) -> Result<(), TrainError> {
        let Some(g) = self.group() else { return Ok(()) };
        let _guard = tch::no_grad_guard();
        let world = g.world() as f64;
        for (_, t) in store.named_buffers() {
            if !t.is_floating_point() {
                continue;
            }
            let mut flat = t.detach().to_kind(Kind::Double).to_device(tch::Device::Cpu).contiguous();
            g.all_reduce_sum(&mut flat).map_err(collective)?;
            t.shallow_clone().copy_(&(flat / world).to_kind(t.kind()).to_device(t.device()));
        }
        Ok(())
    }

    /// A fingerprint of the model that equal ranks share; an all-gather that finds two
    /// fingerprints is a bug that must stop the run before it writes diverged results.
    pub fn check_in_sync(&self, store: &ParamStore, when: &str, why: &str) -> Result<(), TrainError> {
        let Some(g) = self.group() else { return Ok(()) };
        // Trained tensors only: batch-norm statistics differ between ranks until the epoch's end.
        let sha = store.trained_sha256();
        let all = g.all_gather_bytes(sha.as_bytes()).map_err(collective)?;
        if let Some((r, _)) = all.iter().enumerate().find(|(_, s)| s.as_slice() != sha.as_bytes()) {
            return Err(TrainError::Distributed(format!(
                "rank {} and rank {r} hold different weights or architecture parameters {when}; the \
                 data-parallel run diverged{why}",
                g.rank()
            )));
        }
        Ok(())
    }
}

/// How many pieces `Tensor::chunk(chunks, 0)` makes of `rows` rows (at least one): chunks of
/// `ceil(rows / chunks)` rows, so 5 rows in 4 chunks are 3 pieces.
pub fn chunk_count(rows: i64, chunks: usize) -> usize {
    let k = (chunks as i64).clamp(1, rows.max(1));
    let size = ((rows + k - 1) / k).max(1);
    ((rows + size - 1) / size).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_counts_follow_tensor_chunk() {
        let x = Tensor::zeros([5, 1], (tch::Kind::Float, tch::Device::Cpu));
        assert_eq!(x.chunk(4, 0).len(), 3);
        assert_eq!(chunk_count(5, 4), 3);
        for (rows, chunks, pieces) in [(32, 2, 2), (3, 2, 2), (1, 2, 1), (0, 1, 1), (7, 100, 7), (9, 1, 1)] {
            assert_eq!(chunk_count(rows, chunks), pieces, "{rows} rows in {chunks} chunks");
        }
    }
}
