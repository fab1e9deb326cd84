//! DARTS (Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search", ICLR 2019) as an
//! archai plugin: the algorithm `darts` and the finalizer `darts-topk`.
//!
//! # Algorithm `darts`
//!
//! The search space is the DARTS cell space: a network of `macro.layers` cells (reduction cells
//! at 1/3 and 2/3 of the depth), each with `macro.nodes` intermediate nodes; every node reads
//! every earlier node of its cell (and the cell's two inputs) through a *mixed edge* combined by
//! this plugin's mixer `softmax`: the softmax-weighted sum of the `candidates` (`none` is never
//! computed: it contributes zero). The weights are two architecture parameters declared in the
//! search description and owned by the host, `alphas.normal` and `alphas.reduce` (one row per
//! mixed edge of a cell, one column per candidate, shared by all cells of that kind, initialized
//! N(0, 1e-3)).
//! Batch norm in the search network has no learnable scale and shift, and pooling candidates
//! are followed by batch norm, as in the paper.
//!
//! Training is bilevel: before each weight step (done by the host's trainer on a training
//! batch; after it with `unroll: weight_step`), `darts` does one architecture step on a
//! validation batch:
//!
//! - `order: 1` (first order): the gradient of the validation loss with respect to the alphas.
//! - `order: 2` (second order, "unrolled"): the gradient of L_val(w', α) where
//!   w' = w − η (μ·buf + ∇w L_train(w, α) + λ·w) is one virtual step of the weight optimizer
//!   (η the current learning rate, μ its momentum, buf its momentum buffer, λ its weight decay),
//!   i.e. ∇α L_val(w', α) − η ∇²α,w L_train(w, α) · ∇w' L_val(w', α), the Hessian-vector
//!   product by central finite differences with radius ε = `unrolled_eps` / ‖∇w' L_val‖ (norm
//!   over all weights together). The weights are moved in place and restored from one
//!   persistent shadow copy; no copy of the model is made.
//! - `order: 2, unroll: weight_step`: the same hypergradient, with w' the weights the host's
//!   weight step actually produced instead of a virtual step. `before_step` only keeps the
//!   batches and a copy of w; the host's weight step (with the alphas as they were) moves the
//!   weights to w'; `after_step` takes the validation pass at w' and the finite differences
//!   around w, and leaves the weights at w'. That saves the virtual step's pass: four
//!   forward-backward passes per search step instead of five (2.0-2.1x the first-order step
//!   against 2.6-2.7x). What differs from DARTS: the weight step uses the alphas from before the
//!   architecture step rather than after it, and w' includes what the host's step does beyond
//!   SGD with momentum (gradient clipping, an auxiliary head's loss); the Hessian-vector product
//!   is still that of the training loss at w. A step the host skipped (an fp16 overflow) leaves
//!   w' = w, and the architecture step is then first order. `arch_loss` is logged under
//!   `algorithm_after_step`.
//! - `order: 2, unroll: weight_step, difference: one_sided`: the Hessian-vector product as the
//!   forward difference (∇α L_train(w + εv) − ∇α L_train(w)) / ε, v = ∇w' L_val, with
//!   ∇α L_train(w) taken from the host's weight step: the algorithm asks for
//!   `ArchTraining::BilevelWithTrainGrad`, so that step's backward also fills the alphas'
//!   gradients (at the weights and on the batch of the difference). Three passes in the
//!   architecture step become two. The error is O(ε) instead of the central difference's O(ε²)
//!   (unit test: 4e-4 against 1e-5 relative at ε = 0.01 on a small network, shrinking tenfold
//!   with ε). The host refuses it when the weight step's loss is not the plain training loss
//!   (an auxiliary head, drop path, an L1 penalty on architecture parameters).
//!
//! The alphas are then updated by Adam (`arch_lr`, `arch_betas`, ε = 1e-8, `arch_weight_decay` as
//! L2 decay added to the gradient, like `torch.optim.Adam`). The gradients are computed like
//! `torch.autograd.grad` and handed to Adam directly: no gradient is accumulated into the
//! weights' `.grad`, so nothing leaks into the host's weight step.
//!
//! Logged values: `arch_loss` (the validation loss of each architecture step) per step (under
//! `algorithm`, or `algorithm_after_step` with `unroll: weight_step`); after
//! each epoch `alphas` (softmax of each group, one list per mixed edge), `alpha_entropy` (mean
//! entropy of all those rows, in nats; ln 8 ≈ 2.079 means uniform over 8 candidates, lower means
//! more decided), `alpha_entropy_by_group` (the same per group) and `genotype` (the architecture
//! `darts-topk` with `k: 2` would pick now: per node, its `[op, input]` pairs).
//!
//! Configuration (every key optional; unknown keys are errors):
//!
//! ```yaml
//! macro:                 # the supernet's macro-architecture
//!   layers: 8            # cells
//!   nodes: 4             # intermediate nodes per cell
//!   channels: 16         # channels of the first cells (doubled at each reduction)
//!   stem_multiplier: 3   # the stem outputs stem_multiplier * channels channels
//!   stem_stride: 1       # 2: the stem halves the resolution, every cell costs about a quarter
//! candidates: [none, max_pool_3x3, avg_pool_3x3, skip_connect,
//!              sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5]
//! order: 1               # 1: first order, 2: second order (unrolled)
//! arch_lr: 3.0e-4        # Adam learning rate of the alphas
//! arch_betas: [0.5, 0.999]
//! arch_weight_decay: 1.0e-3
//! unrolled_eps: 0.01     # order 2: finite-difference radius, divided by the gradient norm
//! unroll: virtual        # order 2: virtual (DARTS' virtual weight step) or weight_step (the host's step)
//! difference: central    # order 2: central (DARTS) or one_sided (unroll: weight_step only)
//! warmup_steps: 0        # weight steps before the first architecture step (PC-DARTS-style warm-up)
//! ```
//!
//! The weight optimizer (SGD with momentum in the paper: lr 0.025 cosine-annealed, momentum 0.9,
//! weight decay 3e-4, gradient clipping 5) is configured in the trainer, not here; order 2 reads
//! its hyper-parameters and momentum buffers from the host, and refuses a weight optimizer other
//! than SGD with plain momentum (Adam, AdamW, Nesterov): its second-order term is the derivative
//! of such a step.
//!
//! # Finalizer `darts-topk`
//!
//! Turns the searched supernet into a discrete network with the original DARTS rule: in each
//! cell kind (normal, reduction), every node keeps the `k` incoming edges whose best candidate
//! other than `none` has the largest softmax weight, and each kept edge becomes that candidate.
//! The final description is built by the same DARTS builder, with learnable batch norm and plain
//! pooling (the evaluation network of the paper), and is plain YAML.
//!
//! ```yaml
//! k: 2            # incoming edges kept per node
//! layers: 20      # optional: cells of the final network (default: as in the search)
//! channels: 36    # optional: initial channels of the final network (default: as in the search)
//! auxiliary: true # optional: DARTS' auxiliary head in the final network (default: as in the search)
//! stem_stride: 1  # optional: stride of the final network's stem convolution (default: as in the search)
//! ```
//!
//! Each mixed edge's weights are found through its mixer params (`alpha`, `row`), so the
//! finalizer serves every algorithm that searches this space with alpha rows (GDAS, SNAS,
//! DiDARTS use it too).
#![allow(non_local_definitions)]

pub mod config;
pub mod mixer;
pub mod search;
pub mod topk;

use archai_plugin_api::{
    export_plugin, register_algorithm, register_finalizer, register_mixer, Algorithm, Finalizer, MixerConfig, Op,
    ParamBuilder,
};

export_plugin!();

fn create_darts(config: &serde_json::Value) -> anyhow::Result<Box<dyn Algorithm>> {
    Ok(Box::new(search::Darts::new(config::DartsConfig::from_json(config)?)?))
}

fn create_topk(config: &serde_json::Value) -> anyhow::Result<Box<dyn Finalizer>> {
    Ok(Box::new(topk::TopkFinalizer { config: config::TopkConfig::from_json(config, "darts-topk")? }))
}

fn create_softmax(config: &MixerConfig, params: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    Ok(Box::new(mixer::SoftmaxMixer::new(config, params)?))
}

register_mixer!(
    "softmax",
    "DARTS mixed edge: softmax(alpha[row])-weighted sum of the candidates (`none` skipped); params alpha, row",
    create_softmax
);
register_algorithm!(
    "darts",
    "DARTS differentiable architecture search (first or second order) over the DARTS cell space",
    create_darts
);
register_finalizer!(
    "darts-topk",
    "DARTS discretization: per node the top-k incoming edges by their best non-`none` softmax weight",
    create_topk
);
