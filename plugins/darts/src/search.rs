//! The bilevel architecture step of DARTS (first and second order) and the `darts` algorithm.
use crate::config::{DartsConfig, Difference, Unroll};
use archai_plugin_api::kit::adam::Adam;
use archai_plugin_api::kit::genotype::alpha_report;
use archai_plugin_api::model_desc::{CellFill, InputDesc, MixerDesc, ModelDesc};
use archai_plugin_api::tch::{no_grad_guard, Tensor};
use archai_plugin_api::{
    Algorithm, ArchTraining, Model, SearchContext, SearchPlan, StepData, StepOutcome, WeightOptimizerInfo,
    WeightOptimizerKind,
};
use serde_json::{json, Value};

/// Adam's epsilon for the architecture parameters (as in DARTS and `torch.optim.Adam`).
pub const ARCH_ADAM_EPS: f64 = 1e-8;

/// What the architecture step needs from the model. The host's [`Model`] implements it; tests
/// implement it for small hand-written networks.
pub trait SearchModel {
    /// Trainable weights (the host's autograd leaves), sorted by name.
    fn weights(&self) -> Vec<(String, Tensor)>;
    /// Architecture parameters, sorted by name.
    fn arch_params(&self) -> Vec<(String, Tensor)>;
    /// Train-mode loss on `(x, y)` with its graph.
    fn loss(&mut self, x: &Tensor, y: &Tensor) -> anyhow::Result<Tensor>;
    /// The weight optimizer's hyper-parameters (its `lr` is superseded by the step's `lr`).
    fn weight_optimizer(&self) -> anyhow::Result<WeightOptimizerInfo>;
    /// Momentum buffers, same names and order as `weights()`; undefined tensors where none exists.
    fn momentum_buffers(&self) -> Vec<(String, Tensor)>;
    /// Each tensor's mean over data-parallel ranks (itself in one process).
    fn average_over_ranks(&mut self, tensors: Vec<Tensor>) -> anyhow::Result<Vec<Tensor>> {
        Ok(tensors)
    }
}

impl SearchModel for Model<'_, '_> {
    fn weights(&self) -> Vec<(String, Tensor)> {
        Model::weights(self)
    }
    fn arch_params(&self) -> Vec<(String, Tensor)> {
        Model::arch_params(self)
    }
    fn loss(&mut self, x: &Tensor, y: &Tensor) -> anyhow::Result<Tensor> {
        Model::loss(self, x, y)
    }
    fn weight_optimizer(&self) -> anyhow::Result<WeightOptimizerInfo> {
        Model::weight_optimizer(self)
    }
    fn momentum_buffers(&self) -> Vec<(String, Tensor)> {
        Model::momentum_buffers(self)
    }
    fn average_over_ranks(&mut self, tensors: Vec<Tensor>) -> anyhow::Result<Vec<Tensor>> {
        Model::average_over_ranks(self, tensors)
    }
}

/// A 0-dim coefficient for in-place `addcmul_`, converted to each target's dtype and device.
struct Coef(Tensor);

impl Coef {
    fn from_f64(value: f64, like: &Tensor) -> anyhow::Result<Self> {
        Ok(Self(Tensor::f_scalar_tensor(value, (like.kind(), like.device()))?))
    }
    fn for_tensor(&self, target: &Tensor) -> anyhow::Result<Tensor> {
        if self.0.kind() == target.kind() && self.0.device() == target.device() {
            Ok(self.0.shallow_clone())
        } else {
            Ok(self.0.f_to_device(target.device())?.f_to_kind(target.kind())?)
        }
    }
}

/// Undefined gradients (inputs that did not reach the loss) become zeros.
fn defined_or_zeros(grads: Vec<Tensor>, like: &[Tensor]) -> anyhow::Result<Vec<Tensor>> {
    grads.into_iter().zip(like).map(|(g, p)| if g.defined() { Ok(g) } else { Ok(p.f_zeros_like()?) }).collect()
}

/// Gradients of a scalar `loss` with respect to `inputs` (like `torch.autograd.grad`: nothing
/// is accumulated into any `.grad`); the graph is freed.
fn grad_of(loss: &Tensor, inputs: &[Tensor]) -> anyhow::Result<Vec<Tensor>> {
    Ok(Tensor::f_run_backward(&[loss], inputs, false, false)?)
}

/// The result of one hypergradient computation.
pub struct Hypergradient {
    /// d L_val / d alpha (order 1) or the unrolled approximation (order 2), one per alpha.
    pub grads: Vec<Tensor>,
    /// The validation loss the gradient was taken of (at w for order 1, at w' for order 2).
    pub val_loss: f64,
}

/// The architecture trainer: hypergradient (order 1 or 2) and Adam on the alphas.
///
/// Order 2 keeps one persistent shadow copy of the weights (allocated on the first step,
/// refreshed in place with `copy_` on every step) and moves the weights themselves in place to
/// w', w + eps*dw' and w - eps*dw', restoring them from the shadow before returning (also when
/// an error interrupts the step). No model copy, no flattened parameter vector. With
/// [`Unroll::WeightStep`] the shadow holds the weights from before the host's weight step and a
/// second copy the weights it produced, which the step restores.
pub struct ArchStep {
    pub order: u8,
    pub unrolled_eps: f64,
    pub unroll: Unroll,
    pub difference: Difference,
    pub adam: Adam,
    shadow: Vec<Tensor>,
    /// [`Unroll::WeightStep`]: the weights after the host's weight step.
    stepped: Vec<Tensor>,
    /// [`Unroll::WeightStep`]: the batches of the weight step under way (set before it).
    pending: Option<StepData>,
}

/// The trainable weights and, where the optimizer keeps one, each one's momentum buffer.
fn trainable_weights(model: &dyn SearchModel) -> anyhow::Result<(Vec<Tensor>, Vec<Option<Tensor>>)> {
    let all = model.weights();
    let bufs = model.momentum_buffers();
    anyhow::ensure!(
        bufs.is_empty() || bufs.len() == all.len(),
        "darts: the host returned {} momentum buffers for {} weights",
        bufs.len(),
        all.len()
    );
    let mut weights = Vec::new();
    let mut momentum = Vec::new();
    for (i, (name, w)) in all.iter().enumerate() {
        if !w.requires_grad() {
            continue;
        }
        let buf = match bufs.get(i) {
            Some((bname, buf)) => {
                anyhow::ensure!(bname == name, "darts: momentum buffer {i} is `{bname}` but weight {i} is `{name}`");
                buf.defined().then(|| buf.shallow_clone())
            }
            None => None,
        };
        weights.push(w.shallow_clone());
        momentum.push(buf);
    }
    anyhow::ensure!(!weights.is_empty(), "darts: the model has no trainable weights");
    Ok((weights, momentum))
}

/// The weight optimizer's hyper-parameters, refused unless the step is SGD with plain momentum:
/// the second-order term is the derivative of such a step (DARTS'), and with Nesterov momentum
/// or Adam it would be silently wrong.
fn sgd_step_info(model: &dyn SearchModel) -> anyhow::Result<WeightOptimizerInfo> {
    let opt = model.weight_optimizer()?;
    anyhow::ensure!(
        opt.kind == WeightOptimizerKind::Sgd && !opt.nesterov,
        "darts: order 2 differentiates through an SGD step with plain momentum, but the search's weight optimizer is {}; set nas.search.trainer.optimizer.kind: sgd{} or use order: 1",
        if opt.nesterov { "SGD with Nesterov momentum".to_string() } else { format!("{:?}", opt.kind) },
        if opt.nesterov { " with nesterov: false" } else { "" }
    );
    Ok(opt)
}

/// Copies `weights` into `copies`, reallocating only when the shapes changed.
fn copy_weights(copies: &mut Vec<Tensor>, weights: &[Tensor]) -> anyhow::Result<()> {
    let _guard = no_grad_guard();
    let same = copies.len() == weights.len()
        && copies
            .iter()
            .zip(weights)
            .all(|(s, w)| s.size() == w.size() && s.kind() == w.kind() && s.device() == w.device());
    if !same {
        *copies = weights.iter().map(|w| w.f_empty_like()).collect::<Result<_, _>>()?;
    }
    for (s, w) in copies.iter_mut().zip(weights) {
        s.f_copy_(w)?;
    }
    Ok(())
}

/// Sets each weight back to its copy.
fn restore_weights(weights: &[Tensor], copies: &[Tensor]) -> anyhow::Result<()> {
    let _guard = no_grad_guard();
    for (w, s) in weights.iter().zip(copies) {
        w.shallow_clone().f_copy_(s)?;
    }
    Ok(())
}

/// What the validation pass at w' gives the second-order step.
struct ValPass {
    dalpha: Vec<Tensor>,
    /// dL_val/dw' (undefined where a weight did not reach the loss).
    dw: Vec<Tensor>,
    loss: f64,
}

impl ArchStep {
    pub fn new(config: &DartsConfig) -> Self {
        Self {
            order: config.order,
            unrolled_eps: config.unrolled_eps,
            unroll: config.unroll,
            difference: config.difference,
            adam: Adam::new(config.arch_lr, config.arch_betas, ARCH_ADAM_EPS, config.arch_weight_decay),
            shadow: Vec::new(),
            stepped: Vec::new(),
            pending: None,
        }
    }

    /// Whether the architecture step runs after the host's weight step
    /// ([`ArchStep::before_weight_step`], [`ArchStep::after_weight_step`]) instead of before it
    /// ([`ArchStep::step`]).
    pub fn after_the_weight_step(&self) -> bool {
        self.order == 2 && self.unroll == Unroll::WeightStep
    }

    /// How the host trains the architecture parameters for this step: the one-sided difference
    /// reads the architecture gradient of the host's weight step.
    pub fn arch_training(&self) -> ArchTraining {
        if self.after_the_weight_step() && self.difference == Difference::OneSided {
            ArchTraining::BilevelWithTrainGrad
        } else {
            ArchTraining::Bilevel
        }
    }

    /// One architecture step on `batch.val_x, batch.val_y` (order 2 also uses `batch.x, batch.y`
    /// and `batch.lr`) over the trainable architecture parameters; returns the validation loss.
    pub fn step(&mut self, model: &mut dyn SearchModel, batch: &StepData) -> anyhow::Result<f64> {
        let alphas = Self::alphas(model)?;
        let h = self.hypergradient(model, &alphas, batch)?;
        self.adam.step(&alphas, &h.grads)?;
        Ok(h.val_loss)
    }

    fn alphas(model: &dyn SearchModel) -> anyhow::Result<Vec<(String, Tensor)>> {
        let alphas = archai_plugin_api::kit::trainable(model.arch_params());
        anyhow::ensure!(
            !alphas.is_empty(),
            "darts: the model has no architecture parameters (was the search description compiled with mixed edges?)"
        );
        for (_, a) in &alphas {
            // As DARTS' `arch_optimizer.zero_grad()`; the hypergradient goes to Adam directly.
            a.shallow_clone().zero_grad();
        }
        Ok(alphas)
    }

    /// [`Unroll::WeightStep`], before the host's weight step: keeps the batches and the weights w.
    pub fn before_weight_step(&mut self, model: &mut dyn SearchModel, batch: &StepData) -> anyhow::Result<()> {
        Self::check_val_batch(batch)?;
        sgd_step_info(model)?;
        let (weights, _) = trainable_weights(model)?;
        copy_weights(&mut self.shadow, &weights)?;
        self.pending = Some(batch.shallow_clone());
        Ok(())
    }

    /// [`Unroll::WeightStep`], after the host's weight step with learning rate `lr`: the
    /// architecture step with w' the weights that step produced; returns the validation loss.
    pub fn after_weight_step(&mut self, model: &mut dyn SearchModel, lr: f64) -> anyhow::Result<f64> {
        // Read before `alphas` clears the gradients.
        let train_grads = match self.difference {
            Difference::OneSided => Some(Self::weight_step_alpha_grads(model)?),
            Difference::Central => None,
        };
        let alphas = Self::alphas(model)?;
        let a: Vec<Tensor> = alphas.iter().map(|(_, t)| t.shallow_clone()).collect();
        let h = self.stepped_hypergradient(model, &a, lr, train_grads)?;
        self.adam.step(&alphas, &h.grads)?;
        Ok(h.val_loss)
    }

    /// [`Difference::OneSided`]: dL_train(w)/dalpha, which the host's weight step left in the
    /// trainable alphas' gradients ([`ArchTraining::BilevelWithTrainGrad`]), copied because
    /// clearing a gradient zeroes it in place.
    fn weight_step_alpha_grads(model: &dyn SearchModel) -> anyhow::Result<Vec<Tensor>> {
        let alphas = archai_plugin_api::kit::trainable(model.arch_params());
        anyhow::ensure!(
            alphas.iter().any(|(_, a)| a.grad().defined()),
            "darts: `difference: one_sided` reuses the architecture gradient of the host's weight step, but the \
             host left none (a host before plugin-api 7.0 does not compute it); use `difference: central`"
        );
        let _guard = no_grad_guard();
        alphas
            .iter()
            .map(|(_, a)| {
                let g = a.grad();
                Ok(if g.defined() { g.f_detach()?.copy() } else { a.f_zeros_like()? })
            })
            .collect()
    }

    fn check_val_batch(batch: &StepData) -> anyhow::Result<()> {
        anyhow::ensure!(
            batch.val_x.defined() && batch.val_y.defined(),
            "darts: the architecture step needs a validation batch, the host passed none (does the search phase have a validation split?)"
        );
        Ok(())
    }

    /// The hypergradient for `alphas` without updating them.
    pub fn hypergradient(
        &mut self,
        model: &mut dyn SearchModel,
        alphas: &[(String, Tensor)],
        batch: &StepData,
    ) -> anyhow::Result<Hypergradient> {
        Self::check_val_batch(batch)?;
        let a: Vec<Tensor> = alphas.iter().map(|(_, t)| t.shallow_clone()).collect();
        match self.order {
            1 => {
                let loss = model.loss(&batch.val_x, &batch.val_y)?;
                let mut grads = defined_or_zeros(grad_of(&loss, &a)?, &a)?;
                // Over ranks: the gradient and the loss of the whole batch, on every rank.
                grads.push(loss.f_detach()?);
                let mut grads = model.average_over_ranks(grads)?;
                let val_loss = grads.pop().expect("the loss came back").f_double_value(&[])?;
                Ok(Hypergradient { grads, val_loss })
            }
            2 => self.second_order(model, &a, batch),
            o => anyhow::bail!("darts: order must be 1 or 2, got {o}"),
        }
    }

    fn second_order(
        &mut self,
        model: &mut dyn SearchModel,
        alphas: &[Tensor],
        b: &StepData,
    ) -> anyhow::Result<Hypergradient> {
        let (weights, momentum) = trainable_weights(model)?;
        let opt = sgd_step_info(model)?;
        copy_weights(&mut self.shadow, &weights)?;
        let result = self.unrolled(model, alphas, &weights, &momentum, b.lr, opt, b);
        let restored = restore_weights(&weights, &self.shadow);
        let h = result?;
        restored?;
        Ok(h)
    }

    /// The hypergradient of [`Unroll::WeightStep`]: the weights are w' (the host's step from the
    /// shadow's w), and end there again. `train_grads`: dL_train(w)/dalpha for a one-sided
    /// difference.
    fn stepped_hypergradient(
        &mut self,
        model: &mut dyn SearchModel,
        alphas: &[Tensor],
        lr: f64,
        train_grads: Option<Vec<Tensor>>,
    ) -> anyhow::Result<Hypergradient> {
        let b = self.pending.take().ok_or_else(|| {
            anyhow::anyhow!(
                "darts: after_step came without before_step (the host skipped the architecture step's start)"
            )
        })?;
        let (weights, _) = trainable_weights(model)?;
        anyhow::ensure!(
            weights.len() == self.shadow.len() && weights.iter().zip(&self.shadow).all(|(w, s)| w.size() == s.size()),
            "darts: the trainable weights changed between before_step and after_step"
        );
        copy_weights(&mut self.stepped, &weights)?;
        let result = (|| {
            let val = Self::val_pass(model, alphas, &weights, &b)?;
            // A step the host skipped (an fp16 overflow) left w' = w: no second-order term.
            let moved = {
                let _guard = no_grad_guard();
                weights.iter().zip(&self.shadow).any(|(w, s)| !w.equal(s))
            };
            if !moved {
                return Ok(Hypergradient { grads: val.dalpha, val_loss: val.loss });
            }
            self.with_hessian_term(model, alphas, &weights, val, lr, &b, train_grads.as_deref())
        })();
        let restored = restore_weights(&weights, &self.stepped);
        let h = result?;
        restored?;
        Ok(h)
    }

    /// Sets each weight to `shadow + coef * direction` in place.
    fn move_weights(&self, weights: &[Tensor], direction: &[Tensor], coef: &Coef) -> anyhow::Result<()> {
        let _guard = no_grad_guard();
        for ((w, s), d) in weights.iter().zip(&self.shadow).zip(direction) {
            let mut w = w.shallow_clone();
            w.f_copy_(s)?;
            if d.defined() {
                let _ = w.f_addcmul_(d, &coef.for_tensor(&w)?)?;
            }
        }
        Ok(())
    }

    /// dalpha and dw' of L_val(w', a) at the current weights w'.
    fn val_pass(
        model: &mut dyn SearchModel,
        alphas: &[Tensor],
        weights: &[Tensor],
        b: &StepData,
    ) -> anyhow::Result<ValPass> {
        let loss = model.loss(&b.val_x, &b.val_y)?;
        let inputs: Vec<Tensor> = alphas.iter().chain(weights).map(|t| t.shallow_clone()).collect();
        let mut grads = grad_of(&loss, &inputs)?;
        grads.push(loss.f_detach()?);
        let mut grads = model.average_over_ranks(grads)?;
        // Read after the backward pass so that a GPU is not synchronized in between.
        let loss = grads.pop().expect("the loss came back").f_double_value(&[])?;
        let dw = grads.split_off(alphas.len());
        let dalpha = defined_or_zeros(grads, alphas)?;
        Ok(ValPass { dalpha, dw, loss })
    }

    /// dalpha - lr * H dw' with H = d2 L_train / (dalpha dw) at the shadow's weights, by finite
    /// differences along dw': central, or one-sided from `train_grads` = dL_train(w)/dalpha when
    /// given. Leaves the weights moved off the shadow.
    #[allow(clippy::too_many_arguments)]
    fn with_hessian_term(
        &self,
        model: &mut dyn SearchModel,
        alphas: &[Tensor],
        weights: &[Tensor],
        val: ValPass,
        lr: f64,
        b: &StepData,
        train_grads: Option<&[Tensor]>,
    ) -> anyhow::Result<Hypergradient> {
        let ValPass { dalpha, dw: dw_val, loss: val_loss } = val;
        // eps = unrolled_eps / ||dw'|| (global norm over all weights), kept on the device.
        let norms: Vec<Tensor> = dw_val.iter().filter(|g| g.defined()).map(|g| g.f_norm()).collect::<Result<_, _>>()?;
        if norms.is_empty() {
            // The validation loss does not depend on the weights: no second-order term.
            return Ok(Hypergradient { grads: dalpha, val_loss });
        }
        let norm = Tensor::f_stack(&norms, 0)?.f_norm()?;
        let eps = norm.f_clamp_min(1e-12)?.f_reciprocal()?.f_mul_scalar(self.unrolled_eps)?;

        self.move_weights(weights, &dw_val, &Coef(eps.shallow_clone()))?;
        let loss = model.loss(&b.x, &b.y)?;
        let g_plus = defined_or_zeros(grad_of(&loss, alphas)?, alphas)?;
        drop(loss);
        // The gradient the difference subtracts, and the distance between the two points.
        let (g_plus, g_base, span) = match train_grads {
            Some(g_zero) => {
                anyhow::ensure!(
                    g_zero.len() == alphas.len(),
                    "darts: {} weight-step architecture gradients for {} alphas",
                    g_zero.len(),
                    alphas.len()
                );
                // The host's gradient is already the whole batch's (summed over ranks by the step).
                let g_zero: Vec<Tensor> = g_zero.iter().map(Tensor::shallow_clone).collect();
                (model.average_over_ranks(g_plus)?, g_zero, eps)
            }
            None => {
                self.move_weights(weights, &dw_val, &Coef(eps.f_neg()?))?;
                let loss = model.loss(&b.x, &b.y)?;
                let g_minus = defined_or_zeros(grad_of(&loss, alphas)?, alphas)?;
                drop(loss);
                let mut both = model.average_over_ranks(g_plus.into_iter().chain(g_minus).collect())?;
                let g_minus = both.split_off(alphas.len());
                (both, g_minus, eps.f_mul_scalar(2.0)?)
            }
        };

        let span = Coef(span);
        let grads = dalpha
            .iter()
            .zip(g_plus.iter().zip(&g_base))
            .map(|(da, (gp, g0))| {
                let hvp = gp.f_sub(g0)?.f_div(&span.for_tensor(da)?)?;
                Ok(da.f_sub(&hvp.f_mul_scalar(lr)?)?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Hypergradient { grads, val_loss })
    }

    #[allow(clippy::too_many_arguments)]
    fn unrolled(
        &self,
        model: &mut dyn SearchModel,
        alphas: &[Tensor],
        weights: &[Tensor],
        momentum: &[Option<Tensor>],
        lr: f64,
        opt: WeightOptimizerInfo,
        b: &StepData,
    ) -> anyhow::Result<Hypergradient> {
        // 1) dw = dL_train(w, a)/dw.
        let loss = model.loss(&b.x, &b.y)?;
        let dw = model.average_over_ranks(grad_of(&loss, weights)?)?;
        drop(loss);

        // 2) w' = w - lr * (momentum * buf + dw + wd * w), in place.
        {
            let _guard = no_grad_guard();
            let neg_lr = Coef::from_f64(-lr, &weights[0])?;
            let neg_lr_mom = Coef::from_f64(-lr * opt.momentum, &weights[0])?;
            for ((w, g), buf) in weights.iter().zip(&dw).zip(momentum) {
                let mut w = w.shallow_clone();
                if opt.weight_decay != 0.0 {
                    let _ = w.f_mul_scalar_(1.0 - lr * opt.weight_decay)?;
                }
                if g.defined() {
                    let _ = w.f_addcmul_(g, &neg_lr.for_tensor(&w)?)?;
                }
                if let (Some(buf), true) = (buf, opt.momentum != 0.0) {
                    let _ = w.f_addcmul_(buf, &neg_lr_mom.for_tensor(&w)?)?;
                }
            }
        }
        drop(dw);

        // 3) dalpha and dw' of L_val(w', a); 4) the Hessian term around w.
        let val = Self::val_pass(model, alphas, weights, b)?;
        self.with_hessian_term(model, alphas, weights, val, lr, b, None)
    }
}

/// The `darts` algorithm component.
pub struct Darts {
    pub config: DartsConfig,
    pub arch: ArchStep,
    /// The supernet's cell structure (for the per-epoch genotype in the log).
    layout: ModelDesc,
}

impl Darts {
    pub fn new(config: DartsConfig) -> anyhow::Result<Self> {
        // Building once here checks the macro values when the algorithm is created.
        let layout = Self::build(&config, InputDesc { channels: 3, size: 32 }, 10)?;
        Ok(Self { arch: ArchStep::new(&config), config, layout })
    }

    fn build(config: &DartsConfig, input: InputDesc, num_classes: i64) -> anyhow::Result<ModelDesc> {
        let m = config.macro_.clone();
        let mixer = MixerDesc { name: "softmax".into(), params: Default::default() };
        m.build("darts_search", input, num_classes, &CellFill::Search { candidates: &config.candidates, mixer: &mixer })
            .map_err(|e| anyhow::anyhow!("darts config `macro`: {e}"))
    }
}

impl Algorithm for Darts {
    fn search_space(&mut self, context: &SearchContext) -> anyhow::Result<SearchPlan> {
        let desc = Self::build(&self.config, context.input(), context.num_classes)?;
        self.layout = desc.clone();
        Ok(SearchPlan { desc, arch_training: self.arch.arch_training() })
    }

    fn before_step(&mut self, model: &mut Model<'_, '_>, batch: &StepData) -> anyhow::Result<Value> {
        if batch.step < self.config.warmup_steps {
            return Ok(json!({}));
        }
        if self.arch.after_the_weight_step() {
            self.arch.before_weight_step(model, batch)?;
            return Ok(json!({}));
        }
        let arch_loss = self.arch.step(model, batch)?;
        Ok(json!({ "arch_loss": arch_loss }))
    }

    /// [`Unroll::WeightStep`]: the architecture step, once the host's weight step gave w'.
    fn after_step(&mut self, model: &mut Model<'_, '_>, outcome: &StepOutcome) -> anyhow::Result<Value> {
        if outcome.step < self.config.warmup_steps || !self.arch.after_the_weight_step() {
            return Ok(json!({}));
        }
        let arch_loss = self.arch.after_weight_step(model, outcome.lr)?;
        Ok(json!({ "arch_loss": arch_loss }))
    }

    fn after_epoch(&mut self, model: &mut Model<'_, '_>, _epoch: u32) -> anyhow::Result<Value> {
        alpha_report(&model.arch_params(), Some(&self.layout))
    }

    /// The alphas' Adam moments and step counts: without them a resumed search would restart
    /// Adam's bias correction and diverge from an uninterrupted run.
    fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        self.arch.adam.state()
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        self.arch.adam.load_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archai_plugin_api::kit::seeded;
    use archai_plugin_api::tch::{Device, Kind};

    const OPTS: (Kind, Device) = (Kind::Double, Device::Cpu);

    /// A tiny "supernet": h = x W1; out = softmax(a)_0 * tanh(h) W2 + softmax(a)_1 * h W3 +
    /// softmax(a)_2 * 0; cross-entropy. Two alpha rows so the test covers several parameters.
    struct Tiny {
        w: Vec<(String, Tensor)>,
        a: Vec<(String, Tensor)>,
        bufs: Vec<(String, Tensor)>,
        opt: WeightOptimizerInfo,
        calls: usize,
    }

    fn tiny_loss(w: &[Tensor], a: &[Tensor], x: &Tensor, y: &Tensor) -> Tensor {
        let p = a[0].softmax(-1, Kind::Double);
        let q = a[1].softmax(-1, Kind::Double);
        let h = x.matmul(&w[0]);
        let mixed1 = h.tanh() * p.get(0).get(0) + h.sin() * p.get(0).get(1);
        let out = mixed1.matmul(&w[1]).tanh() * q.get(0).get(0) + mixed1.matmul(&w[2]) * q.get(0).get(1);
        // Not cross_entropy_for_logits, which computes in f32: the finite differences below
        // resolve weight moves of 1e-6, where f32 rounding would dominate.
        out.log_softmax(-1, Kind::Double).nll_loss(y)
    }

    impl Tiny {
        fn new(seed: i64, momentum: f64) -> Self {
            let seed = seed as u64 * 100;
            let randn = |shape: &[i64], k: u64| seeded::normal_on(shape, seed + k, OPTS);
            let w: Vec<(String, Tensor)> = [("l1", [4, 5]), ("l2", [5, 3]), ("l3", [5, 3])]
                .iter()
                .zip(0..)
                .map(|((n, s), k)| (n.to_string(), (randn(s, k) * 0.7).set_requires_grad(true)))
                .collect();
            let a = vec![
                ("alphas.a".to_string(), (randn(&[1, 3], 10) * 0.3).set_requires_grad(true)),
                ("alphas.b".to_string(), (randn(&[1, 2], 11) * 0.3).set_requires_grad(true)),
            ];
            let bufs = w
                .iter()
                .zip(20..)
                .enumerate()
                .map(|(i, ((n, t), k))| (n.clone(), if i == 1 { Tensor::new() } else { randn(&t.size(), k) * 0.1 }))
                .collect();
            Self {
                w,
                a,
                bufs,
                opt: WeightOptimizerInfo {
                    lr: 99.0,
                    momentum,
                    weight_decay: 3e-3,
                    kind: WeightOptimizerKind::Sgd,
                    nesterov: false,
                },
                calls: 0,
            }
        }
        fn wt(&self) -> Vec<Tensor> {
            self.w.iter().map(|(_, t)| t.shallow_clone()).collect()
        }
        fn at(&self) -> Vec<Tensor> {
            self.a.iter().map(|(_, t)| t.shallow_clone()).collect()
        }
    }

    impl SearchModel for Tiny {
        fn weights(&self) -> Vec<(String, Tensor)> {
            self.w.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
        }
        fn arch_params(&self) -> Vec<(String, Tensor)> {
            self.a.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
        }
        fn loss(&mut self, x: &Tensor, y: &Tensor) -> anyhow::Result<Tensor> {
            self.calls += 1;
            Ok(tiny_loss(&self.wt(), &self.at(), x, y))
        }
        fn weight_optimizer(&self) -> anyhow::Result<WeightOptimizerInfo> {
            Ok(self.opt)
        }
        fn momentum_buffers(&self) -> Vec<(String, Tensor)> {
            self.bufs.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
        }
    }

    fn batch(lr: f64) -> StepData {
        StepData {
            x: seeded::normal_on(&[6, 4], 7, OPTS),
            y: Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]),
            val_x: seeded::normal_on(&[6, 4], 8, OPTS),
            val_y: Tensor::from_slice(&[2i64, 2, 1, 0, 0, 1]),
            epoch: 0,
            step: 0,
            lr,
        }
    }

    /// The exact gradient of L_val(w'(a), a) with w'(a) = w - lr (mom buf + dL_train/dw + wd w),
    /// by double backward.
    fn exact_unrolled(m: &Tiny, b: &StepData) -> Vec<Tensor> {
        let (w, a) = (m.wt(), m.at());
        let lt = tiny_loss(&w, &a, &b.x, &b.y);
        let gw = Tensor::run_backward(&[&lt], &w, true, true);
        let wp: Vec<Tensor> = w
            .iter()
            .zip(&gw)
            .zip(&m.bufs)
            .map(|((w, g), (_, buf))| {
                let step = g + w * m.opt.weight_decay;
                let step = if buf.defined() { step + buf * m.opt.momentum } else { step };
                w - step * b.lr
            })
            .collect();
        let lv = tiny_loss(&wp, &a, &b.val_x, &b.val_y);
        Tensor::run_backward(&[&lv], &a, false, false)
    }

    fn max_rel_err(got: &[Tensor], want: &[Tensor]) -> f64 {
        got.iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs().max().double_value(&[]) / w.abs().max().double_value(&[]).max(1e-12))
            .fold(0.0, f64::max)
    }

    fn snapshot(ts: &[Tensor]) -> Vec<Tensor> {
        ts.iter().map(|t| t.detach().copy()).collect()
    }

    #[test]
    fn second_order_hypergradient_matches_double_backward() {
        let mut m = Tiny::new(1, 0.9);
        let b = batch(0.4);
        let before = snapshot(&m.wt());
        let exact = exact_unrolled(&m, &b);

        let cfg = DartsConfig { order: 2, ..DartsConfig::default() };
        let mut step = ArchStep::new(&cfg);
        let alphas = m.arch_params();
        let h = step.hypergradient(&mut m, &alphas, &b).unwrap();
        let err = max_rel_err(&h.grads, &exact);
        // The Hessian-vector product is a central difference: its error is O(eps^2), about 1e-5
        // relative here; the wrong formulas below are off by more than 1e-2.
        assert!(err < 1e-4, "order-2 hypergradient off by {err}");
        assert_eq!(m.calls, 4, "train, val at w', train at w+, train at w-");

        // The weights are restored bit for bit and no gradient leaked into them or the alphas.
        for (w, w0) in m.wt().iter().zip(&before) {
            assert!(w.equal(w0));
            assert!(!w.grad().defined());
        }
        assert!(m.at().iter().all(|a| !a.grad().defined()));

        // Negative controls: the first-order gradient, and the unrolled step without the momentum
        // term, are clearly different, so the check above can fail.
        let first = ArchStep::new(&DartsConfig::default()).hypergradient(&mut m, &alphas, &b).unwrap();
        assert!(max_rel_err(&first.grads, &exact) > 1e-2);
        let mut no_mom = Tiny::new(1, 0.0);
        let alphas0 = no_mom.arch_params();
        let h0 = step.hypergradient(&mut no_mom, &alphas0, &b).unwrap();
        assert!(max_rel_err(&h0.grads, &exact) > 1e-2);
        assert!(max_rel_err(&h0.grads, &exact_unrolled(&no_mom, &b)) < 1e-4);
    }

    /// The host's weight step as the trainer takes it without clipping:
    /// w -= lr (mom buf + dL_train/dw + wd w).
    fn host_step(m: &Tiny, b: &StepData) {
        let (w, a) = (m.wt(), m.at());
        let lt = tiny_loss(&w, &a, &b.x, &b.y);
        let gw = Tensor::run_backward(&[&lt], &w, false, false);
        let _guard = no_grad_guard();
        for ((w, g), (_, buf)) in w.iter().zip(&gw).zip(&m.bufs) {
            let step = g + w * m.opt.weight_decay;
            let step = if buf.defined() { step + buf * m.opt.momentum } else { step };
            let _ = w.shallow_clone().f_sub_(&(step * b.lr)).unwrap();
        }
    }

    #[test]
    fn weight_step_unroll_differentiates_through_the_step_the_host_took() {
        let mut m = Tiny::new(1, 0.9);
        let b = batch(0.4);
        // The host's step is the virtual step of `exact_unrolled`, so the hypergradients agree.
        let exact = exact_unrolled(&m, &b);
        let cfg = DartsConfig { order: 2, unroll: Unroll::WeightStep, ..DartsConfig::default() };
        let mut step = ArchStep::new(&cfg);
        assert!(step.after_the_weight_step());
        step.before_weight_step(&mut m, &b).unwrap();
        host_step(&m, &b);
        let stepped = snapshot(&m.wt());
        let a = m.at();
        let h = step.stepped_hypergradient(&mut m, &a, b.lr, None).unwrap();
        let err = max_rel_err(&h.grads, &exact);
        assert!(err < 1e-4, "order-2 hypergradient through the weight step off by {err}");
        assert_eq!(m.calls, 3, "val at w', train at w+, train at w-: no virtual step");
        let lv = tiny_loss(&stepped, &m.at(), &b.val_x, &b.val_y).double_value(&[]);
        assert!((h.val_loss - lv).abs() < 1e-12, "the validation loss is taken at the stepped weights");
        // The weights end where the host's step left them, without gradients.
        for (w, w1) in m.wt().iter().zip(&stepped) {
            assert!(w.equal(w1));
            assert!(!w.grad().defined());
        }
        assert!(m.at().iter().all(|a| !a.grad().defined()));

        // A step the host skipped (fp16 overflow) leaves w' = w: the first-order gradient, which
        // is far from the unrolled one.
        step.before_weight_step(&mut m, &b).unwrap();
        let calls = m.calls;
        let skipped = step.stepped_hypergradient(&mut m, &a, b.lr, None).unwrap();
        assert_eq!(m.calls, calls + 1, "no finite differences without a step");
        let lv = tiny_loss(&m.wt(), &m.at(), &b.val_x, &b.val_y);
        let first = Tensor::run_backward(&[&lv], &m.at(), false, false);
        assert!(max_rel_err(&skipped.grads, &first) < 1e-12);
        assert!(max_rel_err(&first, &exact) > 1e-2);

        // The full step moves the alphas with Adam; an after_step without its before_step is an error.
        step.before_weight_step(&mut m, &b).unwrap();
        host_step(&m, &b);
        let a0 = snapshot(&m.at());
        step.after_weight_step(&mut m, b.lr).unwrap();
        assert!(m.at().iter().zip(&a0).all(|(a, a0)| !a.equal(a0)));
        assert_eq!(step.adam.steps(), 1);
        let e = step.after_weight_step(&mut m, b.lr).unwrap_err().to_string();
        assert!(e.contains("before_step"), "{e}");
    }

    /// The host's weight step as the trainer takes it with `ArchTraining::BilevelWithTrainGrad`:
    /// the alphas' `.grad` holds the training loss's gradient at the weights before the update.
    fn host_step_filling_alpha_grads(m: &Tiny, b: &StepData) {
        let ga = Tensor::run_backward(&[tiny_loss(&m.wt(), &m.at(), &b.x, &b.y)], &m.at(), false, false);
        for (a, g) in m.at().iter().zip(&ga) {
            a.shallow_clone().zero_grad();
            // Backward of <a, g> leaves exactly g in a.grad.
            (a * g.detach()).sum(Kind::Double).backward();
        }
        host_step(m, b);
    }

    #[test]
    fn one_sided_difference_reuses_the_weight_steps_alpha_gradient() {
        let b = batch(0.4);
        let run = |eps: f64| {
            let mut m = Tiny::new(1, 0.9);
            let exact = exact_unrolled(&m, &b);
            let cfg = DartsConfig {
                order: 2,
                unroll: Unroll::WeightStep,
                difference: Difference::OneSided,
                unrolled_eps: eps,
                ..DartsConfig::default()
            };
            let mut step = ArchStep::new(&cfg);
            assert_eq!(step.arch_training(), ArchTraining::BilevelWithTrainGrad);
            step.before_weight_step(&mut m, &b).unwrap();
            host_step_filling_alpha_grads(&m, &b);
            let stepped = snapshot(&m.wt());
            let g0 = ArchStep::weight_step_alpha_grads(&m).unwrap();
            let a = m.at();
            let h = step.stepped_hypergradient(&mut m, &a, b.lr, Some(g0)).unwrap();
            assert_eq!(m.calls, 2, "val at w', train at w+: the train gradient at w came with the weight step");
            assert!(m.wt().iter().zip(&stepped).all(|(w, w1)| w.equal(w1)), "the weights end at w'");
            max_rel_err(&h.grads, &exact)
        };
        // A forward difference's error is O(eps): 4e-4 at eps 0.01 here (the central one's is
        // about 1e-5), shrinking tenfold with eps down to 4e-8 at 1e-6, so the formula is exact
        // in the limit and only the truncation differs.
        let (coarse, fine, finest) = (run(0.01), run(1e-3), run(1e-6));
        assert!(coarse < 1e-2, "one-sided at eps 0.01 off by {coarse}");
        assert!(coarse > 2e-4, "one-sided at eps 0.01 is suspiciously exact: {coarse}");
        assert!((5.0..20.0).contains(&(coarse / fine)), "error {coarse} at 0.01 vs {fine} at 1e-3: not O(eps)");
        assert!(finest < 1e-7, "one-sided at eps 1e-6 off by {finest}");

        // The full step reads the gradients the host left, then clears them; a host that left
        // none (plugin-api before 7.0) is a clear error, not a silently first-order step.
        let mut m = Tiny::new(1, 0.9);
        let cfg = DartsConfig {
            order: 2,
            unroll: Unroll::WeightStep,
            difference: Difference::OneSided,
            ..DartsConfig::default()
        };
        let mut step = ArchStep::new(&cfg);
        step.before_weight_step(&mut m, &b).unwrap();
        host_step_filling_alpha_grads(&m, &b);
        let a0 = snapshot(&m.at());
        step.after_weight_step(&mut m, b.lr).unwrap();
        assert!(m.at().iter().zip(&a0).all(|(a, a0)| !a.equal(a0)));
        assert!(m.at().iter().all(|a| a.grad().abs().max().double_value(&[]) == 0.0));
        let mut fresh = Tiny::new(1, 0.9);
        step.before_weight_step(&mut fresh, &b).unwrap();
        host_step(&fresh, &b);
        let e = step.after_weight_step(&mut fresh, b.lr).unwrap_err().to_string();
        assert!(e.contains("difference: central"), "{e}");
        let central = DartsConfig { difference: Difference::Central, ..cfg };
        assert_eq!(ArchStep::new(&central).arch_training(), ArchTraining::Bilevel);
    }

    /// Order 2 refuses weight optimizers whose step it does not differentiate (both unrolls).
    #[test]
    fn second_order_refuses_nesterov_and_adam() {
        let b = batch(0.1);
        for (kind, nesterov, says) in
            [(WeightOptimizerKind::Adam, false, "Adam"), (WeightOptimizerKind::Sgd, true, "nesterov: false")]
        {
            for unroll in [Unroll::Virtual, Unroll::WeightStep] {
                let mut m = Tiny::new(4, 0.9);
                m.opt.kind = kind;
                m.opt.nesterov = nesterov;
                let mut step = ArchStep::new(&DartsConfig { order: 2, unroll, ..DartsConfig::default() });
                let e = match unroll {
                    Unroll::Virtual => step.step(&mut m, &b),
                    Unroll::WeightStep => step.before_weight_step(&mut m, &b).map(|_| 0.0),
                }
                .unwrap_err()
                .to_string();
                assert!(e.contains(says) && e.contains("order: 1"), "{unroll:?}: {e}");
            }
        }
        // Order 1 never reads the optimizer.
        let mut m = Tiny::new(4, 0.9);
        m.opt.kind = WeightOptimizerKind::Adam;
        ArchStep::new(&DartsConfig::default()).step(&mut m, &b).unwrap();
    }

    #[test]
    fn shadow_is_allocated_once() {
        let mut m = Tiny::new(2, 0.9);
        let b = batch(0.1);
        let cfg = DartsConfig { order: 2, ..DartsConfig::default() };
        let mut step = ArchStep::new(&cfg);
        step.step(&mut m, &b).unwrap();
        let ptrs: Vec<_> = step.shadow.iter().map(|s| s.data_ptr()).collect();
        step.step(&mut m, &b).unwrap();
        assert_eq!(ptrs, step.shadow.iter().map(|s| s.data_ptr()).collect::<Vec<_>>());
        assert_eq!(step.adam.steps(), 2);
    }

    #[test]
    fn first_order_step_is_adam_on_the_validation_gradient() {
        let mut m = Tiny::new(3, 0.9);
        let b = batch(0.1);
        let a0 = snapshot(&m.at());
        let w0 = snapshot(&m.wt());
        let lv = tiny_loss(&m.wt(), &m.at(), &b.val_x, &b.val_y);
        let g = Tensor::run_backward(&[&lv], &m.at(), false, false);

        let cfg = DartsConfig { arch_lr: 0.01, ..DartsConfig::default() };
        let mut step = ArchStep::new(&cfg);
        let loss = step.step(&mut m, &b).unwrap();
        assert!((loss - lv.double_value(&[])).abs() < 1e-12);
        // First Adam step: a -= lr * g' / (|g'| + eps), g' = g + wd a.
        for ((a, a0), g) in m.at().iter().zip(&a0).zip(&g) {
            let gp = g + a0 * cfg.arch_weight_decay;
            let want = a0 - (&gp / (gp.abs() + ARCH_ADAM_EPS)) * cfg.arch_lr;
            assert!((a - want).abs().max().double_value(&[]) < 1e-12);
        }
        // Weights untouched, no weight gradient written.
        for (w, w0) in m.wt().iter().zip(&w0) {
            assert!(w.equal(w0) && !w.grad().defined());
        }
        // A missing validation batch is a clear error.
        let mut nb = batch(0.1);
        nb.val_x = Tensor::new();
        let e = step.step(&mut m, &nb).unwrap_err().to_string();
        assert!(e.contains("validation batch"), "{e}");
    }

    #[test]
    fn model_desc_and_alpha_report() {
        let cfg = DartsConfig::from_json(&json!({"macro": {"layers": 3, "nodes": 2, "channels": 4}})).unwrap();
        let mut d = Darts::new(cfg).unwrap();
        let ctx = SearchContext {
            channels: 1,
            image_size: 28,
            num_classes: 10,
            seed: 3,
            epochs: 1,
            steps_per_epoch: 1,
            val_batch_size: 0,
        };
        let plan = d.search_space(&ctx).unwrap();
        assert_eq!(plan.arch_training, ArchTraining::Bilevel);
        let desc = plan.desc;
        let shapes: Vec<(&str, &[i64])> = desc.arch_params.iter().map(|p| (p.name.as_str(), &p.shape[..])).collect();
        assert_eq!(shapes, vec![("alphas.normal", &[5, 8][..]), ("alphas.reduce", &[5, 8][..])]);
        assert_eq!(desc.input, InputDesc { channels: 1, size: 28 });
        assert_eq!(desc.cells[0].c_prev_prev, 12);

        let normal = Tensor::zeros([5, 8], (Kind::Float, Device::Cpu));
        let _ = normal.narrow(1, 4, 1).fill_(3.0);
        let reduce = Tensor::zeros([5, 8], (Kind::Float, Device::Cpu));
        let r = alpha_report(&[("alphas.normal".into(), normal), ("alphas.reduce".into(), reduce)], Some(&d.layout))
            .unwrap();
        let p = r["alphas"]["normal"].as_array().unwrap();
        assert_eq!(p.len(), 5);
        assert_eq!(p[0].as_array().unwrap().len(), 8);
        let row: f64 = p[0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
        assert!((row - 1.0).abs() < 1e-9);
        let (hn, hr) = (
            r["alpha_entropy_by_group"]["normal"].as_f64().unwrap(),
            r["alpha_entropy_by_group"]["reduce"].as_f64().unwrap(),
        );
        assert!((hr - 8f64.ln()).abs() < 1e-9);
        assert!(hn < 8f64.ln());
        assert!((r["alpha_entropy"].as_f64().unwrap() - (hn + hr) / 2.0).abs() < 1e-12);
        assert_eq!(r["genotype"]["normal"][1], json!([["sep_conv_3x3", 0], ["sep_conv_3x3", 1]]));

        assert!(Darts::new(DartsConfig::from_json(&json!({"macro": {"layers": 2}})).unwrap()).is_err());
    }
}
