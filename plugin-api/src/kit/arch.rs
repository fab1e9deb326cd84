//! Architecture-parameter updates that several algorithms share.
use crate::component::{Model, StepData};
use crate::kit::{grad_of, trainable};
use tch::Tensor;

/// An optimizer of architecture parameters: one update from gradients.
pub trait ArchOptimizer {
    fn step(&mut self, params: &[(String, Tensor)], grads: &[Tensor]) -> anyhow::Result<()>;
}

impl ArchOptimizer for crate::kit::adam::Adam {
    fn step(&mut self, params: &[(String, Tensor)], grads: &[Tensor]) -> anyhow::Result<()> {
        crate::kit::adam::Adam::step(self, params, grads)
    }
}

impl ArchOptimizer for crate::kit::sgd::Sgd {
    fn step(&mut self, params: &[(String, Tensor)], grads: &[Tensor]) -> anyhow::Result<()> {
        crate::kit::sgd::Sgd::step(self, params, grads)
    }
}

/// First-order bilevel step (DARTS order 1, GDAS, PC-DARTS): the gradient of the validation
/// loss with respect to the trainable architecture parameters, applied by `opt`; nothing is
/// accumulated into any `.grad`. Returns the validation loss.
pub fn first_order_step(
    model: &mut Model<'_, '_>,
    batch: &StepData,
    opt: &mut dyn ArchOptimizer,
) -> anyhow::Result<f64> {
    anyhow::ensure!(
        batch.val_x.defined() && batch.val_y.defined(),
        "the architecture step needs a validation batch, the host passed none (does the search phase have a validation split?)"
    );
    let params = trainable(model.arch_params());
    anyhow::ensure!(!params.is_empty(), "the model has no trainable architecture parameters");
    let loss = model.loss(&batch.val_x, &batch.val_y)?;
    let inputs: Vec<Tensor> = params.iter().map(|(_, t)| t.shallow_clone()).collect();
    let mut grads = grad_of(&loss, &inputs)?;
    // The loss rides along so that every rank logs the whole batch's value.
    grads.push(loss.f_detach()?);
    let mut grads = model.average_over_ranks(grads)?;
    let value = grads.pop().expect("the loss came back").f_double_value(&[])?;
    opt.step(&params, &grads)?;
    Ok(value)
}

/// Single-level update (SNAS, DiDARTS): applies the gradients the weight step's backward left in
/// the trainable architecture parameters' `.grad` (the host fills them under
/// `ArchTraining::TrainLoss`). Returns the global norm of those gradients.
pub fn apply_train_grads(model: &mut Model<'_, '_>, opt: &mut dyn ArchOptimizer) -> anyhow::Result<f64> {
    let params = trainable(model.arch_params());
    anyhow::ensure!(!params.is_empty(), "the model has no trainable architecture parameters");
    let grads: Vec<Tensor> = params.iter().map(|(_, t)| t.grad()).collect();
    anyhow::ensure!(
        grads.iter().any(Tensor::defined),
        "no architecture gradient after the weight step: the host did not train on the training loss \
         (the algorithm must ask for ArchTraining::TrainLoss)"
    );
    let norms: Vec<Tensor> = grads.iter().filter(|g| g.defined()).map(|g| g.f_norm()).collect::<Result<_, _>>()?;
    let norm = Tensor::f_stack(&norms, 0)?.f_norm()?.f_double_value(&[])?;
    opt.step(&params, &grads)?;
    Ok(norm)
}
