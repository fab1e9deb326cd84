//! The search kit: pieces that many algorithm plugins need, kept here so that a plugin depends
//! on this API crate alone (plugins never depend on each other).
//!
//! - [`adam::Adam`] and [`sgd::Sgd`]: optimizers for architecture parameters with
//!   `torch.optim` semantics and checkpointable state.
//! - [`genotype`]: softmax/entropy of alpha rows, the DARTS top-k discretization rule and the
//!   rebuild of a discrete network from a DARTS-macro search description.
//! - [`decisive`]: whether a search decided (entropy against uniform, choices the initial alpha
//!   noise could flip), reported by finalizers.
//! - [`gumbel`]: Gumbel-softmax sampling (GDAS, SNAS).
//! - [`arch`]: the first-order bilevel step and the single-level update of architecture
//!   parameters.
//! - [`config`]: candidate checks and config parsing with named errors.
//! - [`mixer`]: alpha rows, scalar parameters, candidate building and weighted sums for mixers.
//! - [`pareto`]: Pareto frontier, non-dominated sorting and hypervolume.
//! - [`seeded`]: reproducible random tensors from an explicit seed (fixtures, tests), without
//!   libtorch's process-wide generator.
//! - [`recompute`]: run part of an op's forward pass again in the backward pass instead of
//!   keeping its activations (gradient checkpointing with explicit parameters).
//! - [`batch_norm`]: `Tensor::batch_norm` with a faster training path for channels-last float
//!   tensors on the CPU.
//! - [`grad_of`]: gradients like `torch.autograd.grad` (nothing accumulated into `.grad`).
pub mod adam;
pub mod arch;
pub mod batch_norm;
pub mod config;
pub mod decisive;
pub mod genotype;
pub mod gumbel;
pub mod mixer;
pub mod pareto;
pub mod recompute;
pub mod seeded;
pub mod sgd;

use tch::Tensor;

/// Gradients of a scalar `loss` with respect to `inputs`, like `torch.autograd.grad`: nothing is
/// accumulated into any `.grad`, the graph is freed, and inputs the loss does not reach get
/// zeros.
pub fn grad_of(loss: &Tensor, inputs: &[Tensor]) -> anyhow::Result<Vec<Tensor>> {
    let grads = Tensor::f_run_backward(&[loss], inputs, false, false)?;
    grads.into_iter().zip(inputs).map(|(g, p)| if g.defined() { Ok(g) } else { Ok(p.f_zeros_like()?) }).collect()
}

/// The trainable architecture parameters (those autograd trains) among `arch`, in order.
pub fn trainable(arch: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    arch.into_iter().filter(|(_, t)| t.requires_grad()).collect()
}
