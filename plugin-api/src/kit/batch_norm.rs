//! [`batch_norm`]: `Tensor::batch_norm` with a faster training-mode path for channels-last float
//! CPU tensors (the shim of crate `archai-batch-norm`): libtorch's channels-last kernels walk
//! the data one row of C values at a time, slow with the 8-64 channels of DARTS cells. Same
//! results up to float summation order, same running-statistics update; everything else
//! (evaluation mode, NCHW, bf16, CUDA) is libtorch's.
pub use archai_batch_norm::made_here;
use tch::Tensor;

/// `Tensor::batch_norm(x, weight, bias, running_mean, running_var, train, momentum, eps)`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
    train: bool,
    momentum: f64,
    eps: f64,
) -> anyhow::Result<Tensor> {
    if train && archai_batch_norm::fits(x) {
        return Ok(archai_batch_norm::batch_norm_train(x, weight, bias, running_mean, running_var, momentum, eps)?);
    }
    Ok(Tensor::f_batch_norm(x, weight, bias, running_mean, running_var, train, momentum, eps, true)?)
}
