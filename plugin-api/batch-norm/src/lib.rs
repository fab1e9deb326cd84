//! [`batch_norm_train`]: training-mode batch norm for channels-last float tensors on the CPU.
//!
//! Why: libtorch's channels-last batch-norm kernels walk the `[N*H*W, C]` buffer one row of `C`
//! values at a time, and with the 8-64 channels of DARTS cells the per-row overhead dominates:
//! batch norm took 29% of a DARTS-V2 evaluation network's training time in a profile, running at
//! a fifth of the speed of an element-wise pass over the same data. The shim reads the buffer as
//! rows of at least 256 values (the same passes as libtorch, each vectorized over long rows).
//! [`fits`] says which tensors it handles; the caller uses libtorch's batch norm for the others
//! (NCHW, other dtypes, CUDA, evaluation mode).
use std::ffi::{c_char, c_int, CStr};
use tch::Tensor;

extern "C" {
    fn archai_batch_norm_fits(x: *const torch_sys::C_tensor) -> c_int;
    fn archai_batch_norm_made(t: *const torch_sys::C_tensor) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn archai_batch_norm_train(
        x: *const torch_sys::C_tensor,
        weight: *const torch_sys::C_tensor,
        bias: *const torch_sys::C_tensor,
        running_mean: *const torch_sys::C_tensor,
        running_var: *const torch_sys::C_tensor,
        momentum: f64,
        eps: f64,
        out: *mut *mut torch_sys::C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
}

#[derive(Debug, thiserror::Error)]
#[error("batch_norm_train: {0}")]
pub struct BatchNormError(String);

/// Whether [`batch_norm_train`] handles `x`: a 4-d channels-last float CPU tensor with more than
/// one value per channel.
pub fn fits(x: &Tensor) -> bool {
    // SAFETY: `x` is a live at::Tensor handle for the call.
    x.defined() && unsafe { archai_batch_norm_fits(x.as_ptr()) } == 1
}

/// Whether `t` came out of [`batch_norm_train`] with a graph (for tests of the code that calls it).
pub fn made_here(t: &Tensor) -> bool {
    // SAFETY: `t` is a live at::Tensor handle for the call.
    t.defined() && unsafe { archai_batch_norm_made(t.as_ptr()) } == 1
}

/// `Tensor::batch_norm(x, weight, bias, running_mean, running_var, true, momentum, eps, _)` for
/// an `x` that [`fits`]: normalized with the batch statistics (biased variance), the running
/// statistics (both or neither) moved towards the batch's (unbiased variance) in place.
/// Differentiable in `x`, `weight` and `bias`, twice too (a backward pass that records a graph
/// uses libtorch's formula).
pub fn batch_norm_train(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
    momentum: f64,
    eps: f64,
) -> Result<Tensor, BatchNormError> {
    let undefined = Tensor::new();
    let ptr = |t: Option<&Tensor>| t.unwrap_or(&undefined).as_ptr();
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    let mut err = vec![0 as c_char; 1024];
    // SAFETY: every handle is a live at::Tensor (possibly undefined) for the call; on success the
    // shim hands over a new heap at::Tensor that `from_ptr` owns from here on.
    let rc = unsafe {
        archai_batch_norm_train(
            x.as_ptr(),
            ptr(weight),
            ptr(bias),
            ptr(running_mean),
            ptr(running_var),
            momentum,
            eps,
            &mut out,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 || out.is_null() {
        // SAFETY: the shim wrote a NUL-terminated message into the buffer.
        return Err(BatchNormError(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned()));
    }
    // SAFETY: see above.
    Ok(unsafe { Tensor::from_ptr(out) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn channels_last(t: Tensor) -> Tensor {
        t.contiguous().permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    }

    /// Deterministic pseudo-random values (no libtorch global generator: tests run concurrently).
    fn values(shape: &[i64], seed: u64, offset: f64) -> Tensor {
        let n: i64 = shape.iter().product();
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0 + offset) as f32
            })
            .collect();
        Tensor::from_slice(&v).reshape(shape)
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let scale = b.abs().max().double_value(&[]).max(1e-12);
        (a - b).abs().max().double_value(&[]) / scale
    }

    /// Forward, running statistics and gradients equal libtorch's batch norm (float64 reference)
    /// for channel counts that fill rows of 256 exactly and ones that leave a tail of rows, with
    /// and without affine parameters, and with a large common offset (the shifted sums keep the
    /// variance from cancelling).
    #[test]
    fn equals_libtorch_batch_norm() {
        for (k, &(n, c, h, affine, offset)) in [
            (6, 16, 9, true, 0.0),
            (5, 24, 7, false, 0.0),
            (4, 8, 5, true, 100.0),
            (3, 300, 3, true, 0.5),
            (2, 3, 1, false, 0.0),
        ]
        .iter()
        .enumerate()
        {
            let k = k as u64;
            let x = channels_last(values(&[n, c, h, h], 10 + k, offset) * 3.0);
            assert!(fits(&x), "{n}x{c}x{h}x{h}");
            let dy = channels_last(values(&[n, c, h, h], 20 + k, 0.0));
            let (w, b) = (values(&[c], 30 + k, 1.0), values(&[c], 40 + k, 0.0));
            let mk = |t: &Tensor, kind: Kind| t.to_kind(kind).detach().set_requires_grad(true);
            let run = |kind: Kind, ours: bool| {
                let xv = mk(&x, kind);
                let (wv, bv) = (mk(&w, kind), mk(&b, kind));
                let (rm, rv) = (values(&[c], 50 + k, 0.0).to_kind(kind), Tensor::ones([c], (kind, Device::Cpu)));
                let (wo, bo) = if affine { (Some(&wv), Some(&bv)) } else { (None, None) };
                let y = if ours {
                    batch_norm_train(&xv, wo, bo, Some(&rm), Some(&rv), 0.1, 1e-5).unwrap()
                } else {
                    Tensor::batch_norm(&xv, wo, bo, Some(&rm), Some(&rv), true, 0.1, 1e-5, false)
                };
                (&y * dy.to_kind(kind)).sum(kind).backward();
                let mut out = vec![y.detach(), rm, rv, xv.grad()];
                if affine {
                    out.extend([wv.grad(), bv.grad()]);
                }
                out.into_iter().map(|t| t.to_kind(Kind::Double)).collect::<Vec<_>>()
            };
            let (got, want) = (run(Kind::Float, true), run(Kind::Double, false));
            assert!(!made_here(&got[0]), "a detached output has no graph");
            let names = ["output", "running mean", "running var", "dx", "dweight", "dbias"];
            for ((g, w), name) in got.iter().zip(&want).zip(names) {
                let err = max_rel(g, w);
                assert!(err < 2e-5, "{n}x{c}x{h}x{h} affine {affine} offset {offset}: {name} off by {err}");
            }
            assert!(got[0].is_contiguous() || c == 1 || h == 1 || got[0].stride()[1] == 1);
        }
    }

    /// A backward pass that records a graph (double backward) takes libtorch's differentiable
    /// formula: second derivatives equal those of libtorch's batch norm.
    #[test]
    fn second_derivatives_equal_libtorch() {
        let x = channels_last(values(&[4, 16, 3, 3], 1, 0.0));
        let w = values(&[16], 2, 1.0);
        let second = |ours: bool| {
            let xv = x.detach().set_requires_grad(true);
            let wv = w.detach().set_requires_grad(true);
            let y = if ours {
                batch_norm_train(&xv, Some(&wv), None, None, None, 0.1, 1e-5).unwrap()
            } else {
                let none = None::<&Tensor>;
                Tensor::batch_norm(&xv, Some(&wv), none, none, none, true, 0.1, 1e-5, false)
            };
            let loss = (&y * &y * &y).sum(Kind::Float);
            let gx = Tensor::run_backward(&[&loss], &[&xv], true, true).remove(0);
            let g2 = Tensor::run_backward(&[&gx.square().sum(Kind::Float)], &[&wv], false, false).remove(0);
            (gx.detach(), g2)
        };
        let ((gx, g2), (gx_ref, g2_ref)) = (second(true), second(false));
        assert!(max_rel(&gx, &gx_ref) < 1e-4);
        assert!(max_rel(&g2, &g2_ref) < 1e-4, "{}", max_rel(&g2, &g2_ref));
    }

    /// The variance comes from squares around the mean, not from sums around a pivot: with the
    /// first row 1000 standard deviations away, a one-pass variance around it (this crate's
    /// first version) was off by 3e-4, two passes by 2e-7.
    #[test]
    fn an_outlying_first_row_keeps_the_variance_exact() {
        let x = values(&[32, 16, 28, 28], 5, 0.0);
        let _ = x.narrow(0, 0, 1).narrow(2, 0, 1).narrow(3, 0, 1).f_add_scalar_(1000.0).unwrap();
        let x = channels_last(x);
        let ours = batch_norm_train(&x, None, None, None, None, 0.1, 1e-5).unwrap().to_kind(Kind::Double);
        let none = None::<&Tensor>;
        let want = Tensor::batch_norm(&x.to_kind(Kind::Double), none, none, none, none, true, 0.1, 1e-5, false);
        let err = max_rel(&ours, &want);
        assert!(err < 1e-5, "off by {err}");
    }

    #[test]
    fn only_channels_last_float_cpu_tensors_fit() {
        let x = values(&[2, 16, 4, 4], 3, 0.0);
        assert!(!fits(&x), "NCHW");
        assert!(fits(&channels_last(x.shallow_clone())));
        assert!(!fits(&channels_last(x.to_kind(Kind::Double))));
        assert!(!fits(&channels_last(values(&[1, 16, 1, 1], 4, 0.0)).contiguous()), "one value per channel");
        assert!(!fits(&Tensor::new()));
        let e = batch_norm_train(&x, None, None, None, None, 0.1, 1e-5).unwrap_err().to_string();
        assert!(e.contains("channels-last"), "{e}");
    }

    /// Only the gradients asked for are computed (an input without a gradient, a weight with
    /// one: a mixer's weight folded into a constant input's norm), and misuse is an error.
    #[test]
    fn weight_gradient_alone_and_errors() {
        let x = channels_last(values(&[3, 16, 5, 5], 6, 0.0));
        let dy = channels_last(values(&[3, 16, 5, 5], 7, 0.0));
        let w = values(&[16], 8, 1.0).set_requires_grad(true);
        let none = None::<&Tensor>;
        let ours = batch_norm_train(&x, Some(&w), None, None, None, 0.1, 1e-5).unwrap();
        let got = Tensor::run_backward(&[(&ours * &dy).sum(Kind::Float)], &[&w], false, false).remove(0);
        let theirs = Tensor::batch_norm(&x, Some(&w), none, none, none, true, 0.1, 1e-5, false);
        let want = Tensor::run_backward(&[(&theirs * &dy).sum(Kind::Float)], &[&w], false, false).remove(0);
        assert!(max_rel(&got, &want) < 1e-5);
        let stats = Tensor::zeros([16], (Kind::Float, Device::Cpu));
        let e = batch_norm_train(&x, None, None, Some(&stats), None, 0.1, 1e-5).unwrap_err().to_string();
        assert!(e.contains("both running statistics"), "{e}");
        let short = Tensor::ones([8], (Kind::Float, Device::Cpu));
        let e = batch_norm_train(&x, Some(&short), None, None, None, 0.1, 1e-5).unwrap_err().to_string();
        assert!(e.contains("8 values for 16 channels"), "{e}");
    }
}
