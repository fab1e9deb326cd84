//! Activation recomputation inside an op: [`recomputed`] runs a body keeping only its input
//! activations for the backward pass, which runs the body again (with a graph) when it reaches
//! it. What it is for: the element-wise tail of a layer (ReLU, batch norm, pooling) and cheap
//! convolutions whose outputs would otherwise each be kept, so that the backward pass keeps one
//! tensor where it kept several, for one more forward pass of the body. Ops call it when their
//! [`crate::RecomputeSwitch`] is on (`trainer.recompute_ops`).
//!
//! The body's parameters (weights, a mixer's scale: every tensor it reads that may require a
//! gradient, besides its activations) are explicit inputs, so `grad(loss, alphas)` works as
//! well as `backward()`. The second run replays the first one's random draws and autocast state.
//! It must not repeat side effects: a training-mode batch norm updates its running statistics
//! in the [`Pass::First`] run only (the statistics of the batch are recomputed either way).
//! Second derivatives through a recomputed body are refused with an error.
pub use archai_recompute::{grad_enabled, RecomputeError};
use tch::Tensor;

/// Which run of a recomputed body this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The forward pass (the only run when no gradient is recorded).
    First,
    /// The recomputation in the backward pass: no side effects (running statistics).
    Again,
}

/// `body(acts)`, keeping only `acts` and `params` for the backward pass. `params` must hold every
/// tensor the body reads that may require a gradient besides `acts`; gradients of tensors left
/// out are lost. Without a graph (gradients disabled, nothing requiring one) the body just runs.
pub fn recomputed(
    acts: &[&Tensor],
    params: Vec<Tensor>,
    mut body: impl FnMut(&[Tensor], Pass) -> anyhow::Result<Tensor> + Send + 'static,
) -> anyhow::Result<Tensor> {
    let mut runs = 0u32;
    let boxed: archai_recompute::Body = Box::new(move |inputs: &[Tensor]| {
        runs += 1;
        let pass = if runs == 1 { Pass::First } else { Pass::Again };
        body(inputs, pass).map(|t| vec![t]).map_err(|e| format!("{e:#}"))
    });
    let mut out = archai_recompute::recompute(acts, &params, boxed).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(out.len() == 1, "a recomputed body returned {} tensors instead of one", out.len());
    Ok(out.remove(0))
}
