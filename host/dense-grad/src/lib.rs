//! [`dense_grad`]: the identity in the forward pass whose backward makes the gradient dense in
//! the memory format its input had (a channels-last output gets a channels-last gradient).
//!
//! Why: libtorch's CPU batch-norm backward takes a serial element-wise path unless its input and
//! its output's gradient are dense in the same layout. `cat`'s backward hands each part a channel
//! slice of the output's gradient (for channels-last tensors neither NCHW- nor
//! channels-last-contiguous: 17% of a DARTS evaluation network's training time in a profile);
//! a global average pool's gradient is a broadcast that suggests NCHW; converting an NCHW stem
//! output to channels-last sends back a channels-last gradient. Calling this on each part before
//! `cat`, and before such a conversion, costs one copy of the gradient and no work in the forward
//! pass.
use std::ffi::{c_char, c_int, CStr};
use tch::Tensor;

extern "C" {
    fn archai_dense_grad(
        x: *const torch_sys::C_tensor,
        out: *mut *mut torch_sys::C_tensor,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
}

#[derive(Debug, thiserror::Error)]
#[error("dense_grad: {0}")]
pub struct DenseGradError(String);

/// `x` itself in the forward pass (a view of it when a graph is recorded); in the backward pass
/// the gradient is made dense before it reaches `x`'s producers. Without a graph (no gradient
/// needed) it returns a shallow clone and records nothing.
pub fn dense_grad(x: &Tensor) -> Result<Tensor, DenseGradError> {
    if !x.requires_grad() {
        return Ok(x.shallow_clone());
    }
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    let mut err = vec![0 as c_char; 1024];
    // SAFETY: `x` is a live at::Tensor handle for the call; on success the shim hands over a new
    // heap at::Tensor that `from_ptr` owns from here on.
    let rc = unsafe { archai_dense_grad(x.as_ptr(), &mut out, err.as_mut_ptr(), err.len()) };
    if rc != 0 || out.is_null() {
        // SAFETY: the shim wrote a NUL-terminated message into the buffer.
        return Err(DenseGradError(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned()));
    }
    // SAFETY: see above.
    Ok(unsafe { Tensor::from_ptr(out) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn channels_last(t: Tensor) -> Tensor {
        t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    }

    fn is_channels_last_dense(t: &Tensor) -> bool {
        let (n, c, h, w) = t.size4().unwrap();
        t.stride() == [h * w * c, 1, w * c, c] && n > 0
    }

    /// The gradient each part of a channels-last `cat` receives: a strided slice without
    /// `dense_grad`, a dense channels-last tensor with it, with the same values.
    #[test]
    fn the_gradient_of_a_concatenated_part_arrives_dense() {
        let opts = (Kind::Float, Device::Cpu);
        let r = channels_last(Tensor::arange(2 * 6 * 3 * 3, opts).reshape([2, 6, 3, 3]));
        let grads = |wrap: bool| {
            let a = channels_last(Tensor::ones([2, 3, 3, 3], opts)).set_requires_grad(true);
            let b = channels_last(Tensor::ones([2, 3, 3, 3], opts)).set_requires_grad(true);
            let parts = if wrap {
                vec![dense_grad(&a).unwrap(), dense_grad(&b).unwrap()]
            } else {
                vec![a.shallow_clone(), b.shallow_clone()]
            };
            // The gradient of the concatenation is `r`, channels-last; `cat` slices it.
            let loss = (Tensor::cat(&parts, 1) * &r).sum(Kind::Float);
            let g = Tensor::run_backward(&[loss], &[&a, &b], false, false);
            (g[0].shallow_clone(), g[1].shallow_clone())
        };
        let (plain_a, plain_b) = grads(false);
        let (dense_a, dense_b) = grads(true);
        assert!(dense_a.equal(&plain_a) && dense_b.equal(&plain_b));
        assert!(is_channels_last_dense(&dense_a) && is_channels_last_dense(&dense_b), "{:?}", dense_a.stride());
        assert!(!is_channels_last_dense(&plain_b), "the test no longer sees strided slices: {:?}", plain_b.stride());
        let expected = r.narrow(1, 3, 3);
        assert!(dense_b.equal(&expected));
    }

    /// An NCHW tensor converted to channels-last: its gradient arrives channels-last-strided
    /// without the wrapper and NCHW-contiguous with `dense_grad`, same values.
    #[test]
    fn a_converted_tensor_gets_its_gradient_in_its_own_layout() {
        let opts = (Kind::Float, Device::Cpu);
        let r = channels_last(Tensor::arange(2 * 4 * 3 * 3, opts).reshape([2, 4, 3, 3]));
        let grad = |wrap: bool| {
            let x = Tensor::ones([2, 4, 3, 3], opts).set_requires_grad(true);
            let y = if wrap { dense_grad(&x).unwrap() } else { x.shallow_clone() };
            let loss = (channels_last(y) * &r).sum(Kind::Float);
            Tensor::run_backward(&[loss], &[&x], false, false).remove(0)
        };
        let (plain, wrapped) = (grad(false), grad(true));
        assert!(wrapped.equal(&plain) && wrapped.equal(&r));
        assert!(wrapped.is_contiguous(), "{:?}", wrapped.stride());
        assert!(!plain.is_contiguous(), "the test no longer sees a channels-last gradient: {:?}", plain.stride());
    }

    /// After the last cell a global average pool sends back a broadcast gradient, which
    /// suggests NCHW: a channels-last part still gets a dense channels-last gradient.
    #[test]
    fn a_broadcast_gradient_arrives_in_the_parts_layout() {
        let opts = (Kind::Float, Device::Cpu);
        let grad = |wrap: bool| {
            let a = channels_last(Tensor::ones([2, 3, 4, 4], opts)).set_requires_grad(true);
            let part = if wrap { dense_grad(&a).unwrap() } else { a.shallow_clone() };
            let loss = Tensor::cat(&[part], 1).mean_dim([2, 3].as_slice(), false, Kind::Float).sum(Kind::Float);
            Tensor::run_backward(&[loss], &[&a], false, false).remove(0)
        };
        let (plain, wrapped) = (grad(false), grad(true));
        assert!(wrapped.equal(&plain));
        assert!(is_channels_last_dense(&wrapped), "{:?}", wrapped.stride());
        assert!(!is_channels_last_dense(&plain), "the test no longer sees a broadcast gradient: {:?}", plain.stride());
    }

    #[test]
    fn without_a_graph_it_is_the_tensor_itself() {
        let x = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        let y = dense_grad(&x).unwrap();
        assert!(y.equal(&x) && !y.requires_grad());
    }
}
