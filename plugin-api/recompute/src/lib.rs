//! Activation recomputation (gradient checkpointing) for tch: [`recompute`] runs a body without
//! keeping its intermediate activations and runs it again, with a graph, when the backward pass
//! reaches it. Memory for one body's activations is traded for one more forward of it.
//!
//! The body's parameters are explicit inputs, so gradients reach them through the outer backward
//! like any other tensor's: `Tensor::run_backward(&[loss], &params, ..)` (what architecture steps
//! use) works as well as `loss.backward()`. The recomputation sees the random generators and the
//! autocast state of the forward pass, so it draws the same dropout masks or Gumbel samples and
//! computes in the same precision. Second derivatives through a recomputed body are refused with
//! an error (libtorch's, from the backward call).
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::Tensor;

type PushFn = extern "C" fn(sink: *mut c_void, t: *const c_void);
type RunFn = extern "C" fn(
    body: *mut c_void,
    inputs: *const *const c_void,
    n: usize,
    sink: *mut c_void,
    push: PushFn,
    err: *mut c_char,
    errlen: usize,
) -> c_int;
type DropFn = extern "C" fn(body: *mut c_void);

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn archai_recompute_apply(
        body: *mut c_void,
        run: RunFn,
        drop: DropFn,
        acts: *const *const c_void,
        n_act: usize,
        params: *const *const c_void,
        n_params: usize,
        sink: *mut c_void,
        push: PushFn,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn archai_recompute_grad_enabled() -> c_int;
}

#[derive(Debug, thiserror::Error)]
#[error("recomputed forward: {0}")]
pub struct RecomputeError(pub String);

/// The body: activations in, outputs out. Called once in the forward pass (no graph) and once per
/// backward pass through its outputs (with a graph).
pub type Body = Box<dyn FnMut(&[Tensor]) -> Result<Vec<Tensor>, String> + Send>;

/// Whether autograd records operations on this thread now (libtorch's `GradMode`).
pub fn grad_enabled() -> bool {
    // SAFETY: reads a thread-local flag; catches nothing because it cannot throw.
    unsafe { archai_recompute_grad_enabled() == 1 }
}

/// `body(activations)`, keeping only `activations` and `params` for the backward pass. `params`
/// must hold every tensor that requires a gradient and that the body reads besides its
/// activations (weights, architecture parameters); gradients of tensors left out are lost.
/// Outside a graph (no input requires a gradient, or gradients are disabled) this is just the
/// body.
pub fn recompute(activations: &[&Tensor], params: &[Tensor], mut body: Body) -> Result<Vec<Tensor>, RecomputeError> {
    if !grad_enabled() {
        let inputs: Vec<Tensor> = activations.iter().map(|t| t.shallow_clone()).collect();
        return body(&inputs).map_err(RecomputeError);
    }
    let acts: Vec<*const c_void> = activations.iter().map(|t| t.as_ptr() as *const c_void).collect();
    let ps: Vec<*const c_void> = params.iter().map(|t| t.as_ptr() as *const c_void).collect();
    let owned: *mut Body = Box::into_raw(Box::new(body));
    let mut outputs: Vec<Tensor> = Vec::new();
    let mut err = vec![0 as c_char; 4096];
    // SAFETY: the pointers are live at::Tensor handles for the call; the shim takes ownership of
    // `owned` (released through `drop_body` exactly once) and pushes the outputs into `outputs`.
    let rc = unsafe {
        archai_recompute_apply(
            owned as *mut c_void,
            run_body,
            drop_body,
            acts.as_ptr(),
            acts.len(),
            ps.as_ptr(),
            ps.len(),
            &mut outputs as *mut Vec<Tensor> as *mut c_void,
            push_output,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        // SAFETY: the shim wrote a NUL-terminated message into the buffer.
        return Err(RecomputeError(unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned()));
    }
    Ok(outputs)
}

extern "C" fn push_output(sink: *mut c_void, t: *const c_void) {
    // SAFETY: `sink` is the `Vec<Tensor>` of the `recompute` call in progress, `t` a live
    // at::Tensor*; clone_from_ptr makes a new owning handle to the same tensor.
    unsafe {
        let sink = &mut *(sink as *mut Vec<Tensor>);
        sink.push(Tensor::clone_from_ptr(t as *mut _));
    }
}

extern "C" fn run_body(
    body: *mut c_void,
    inputs: *const *const c_void,
    n: usize,
    sink: *mut c_void,
    push: PushFn,
    err: *mut c_char,
    errlen: usize,
) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `body` is the box handed to the shim (alive until `drop_body`), called from one
        // thread at a time; `inputs` holds `n` live at::Tensor*.
        let body = unsafe { &mut *(body as *mut Body) };
        let inputs: Vec<Tensor> = (0..n).map(|i| unsafe { Tensor::clone_from_ptr(*inputs.add(i) as *mut _) }).collect();
        body(&inputs)
    }));
    let message = match outcome {
        Ok(Ok(outputs)) => {
            for t in &outputs {
                push(sink, t.as_ptr() as *const c_void);
            }
            return 0;
        }
        Ok(Err(e)) => e,
        Err(panic) => match panic.downcast_ref::<&str>() {
            Some(s) => format!("panicked: {s}"),
            None => match panic.downcast_ref::<String>() {
                Some(s) => format!("panicked: {s}"),
                None => "panicked".to_string(),
            },
        },
    };
    let bytes = message.as_bytes();
    let len = bytes.len().min(errlen.saturating_sub(1));
    // SAFETY: `err` has room for `errlen` bytes; we write `len` + 1 <= errlen of them.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, err, len);
        *err.add(len) = 0;
    }
    1
}

extern "C" fn drop_body(body: *mut c_void) {
    // SAFETY: called once by the shim for the box `recompute` leaked into it.
    drop(unsafe { Box::from_raw(body as *mut Body) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tch::{Device, Kind};

    fn leaf(values: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).view(shape).set_requires_grad(true)
    }

    /// y = tanh(x * w) * a + x: w and a are parameters, x an activation.
    fn body_fn(w: Tensor, a: Tensor, calls: Arc<AtomicUsize>) -> Body {
        Box::new(move |inputs: &[Tensor]| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(vec![(&inputs[0] * &w).tanh() * &a + &inputs[0]])
        })
    }

    #[test]
    fn gradients_match_plain_autograd_for_backward_and_for_grad_with_inputs() {
        let w = leaf(&[0.5, -1.0, 2.0], &[3]);
        let a = leaf(&[1.5], &[1]);
        let x0 = leaf(&[0.3, 0.7, -0.2], &[3]);
        let x = &x0 * 2.0; // a non-leaf activation, as a cell input is
        let plain = ((&x * &w).tanh() * &a + &x).pow_tensor_scalar(2).sum(Kind::Float);
        let want = Tensor::run_backward(&[&plain], &[&w, &a, &x0], false, false);

        let calls = Arc::new(AtomicUsize::new(0));
        let y = recompute(
            &[&x],
            &[w.shallow_clone(), a.shallow_clone()],
            body_fn(w.shallow_clone(), a.shallow_clone(), calls.clone()),
        )
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one forward, no recomputation yet");
        let loss = y[0].pow_tensor_scalar(2).sum(Kind::Float);
        let got = Tensor::run_backward(&[&loss], &[&w, &a, &x0], false, false);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "recomputed once in the backward pass");
        for (g, e) in got.iter().zip(&want) {
            assert!(g.allclose(e, 1e-6, 1e-7, false), "{g:?} vs {e:?}");
        }

        // loss.backward() accumulates into .grad the same values.
        let y = recompute(
            &[&x.detach()],
            &[w.shallow_clone(), a.shallow_clone()],
            body_fn(w.shallow_clone(), a.shallow_clone(), calls),
        )
        .unwrap();
        (&y[0] * &y[0]).sum(Kind::Float).backward();
        let plain = ((&x.detach() * &w).tanh() * &a + &x.detach()).pow_tensor_scalar(2).sum(Kind::Float);
        let want = Tensor::run_backward(&[&plain], &[&w, &a], false, false);
        assert!(w.grad().allclose(&want[0], 1e-6, 1e-7, false));
        assert!(a.grad().allclose(&want[1], 1e-6, 1e-7, false));
    }

    #[test]
    fn random_draws_are_replayed_in_the_recomputation() {
        let w = leaf(&[1.0; 6], &[6]);
        let w2 = w.shallow_clone();
        let body: Body = Box::new(move |inputs: &[Tensor]| {
            // A dropout-like mask from libtorch's default generator.
            let mask = inputs[0].rand_like().ge(0.5).to_kind(Kind::Float);
            Ok(vec![&inputs[0] * &w2 * &mask])
        });
        tch::manual_seed(7);
        let x = Tensor::ones([6], (Kind::Float, Device::Cpu));
        let y = recompute(&[&x], &[w.shallow_clone()], body).unwrap();
        let after_forward = Tensor::rand([4], (Kind::Float, Device::Cpu));
        y[0].sum(Kind::Float).backward();
        // d(sum)/dw is the forward pass's mask: the recomputation drew the same one.
        assert!(w.grad().allclose(&y[0].detach(), 0.0, 0.0, false), "{:?} vs {:?}", w.grad(), y[0]);
        // ... and the generator continues where the forward pass left it.
        tch::manual_seed(7);
        let _ = Tensor::rand([6], (Kind::Float, Device::Cpu));
        assert!(Tensor::rand([4], (Kind::Float, Device::Cpu)).allclose(&after_forward, 0.0, 0.0, false));
    }

    #[test]
    fn errors_of_the_body_reach_the_caller_as_values() {
        let w = leaf(&[1.0], &[1]);
        let x = Tensor::ones([1], (Kind::Float, Device::Cpu));
        let e = recompute(&[&x], &[w], Box::new(|_: &[Tensor]| Err("the op plugin failed".to_string()))).unwrap_err();
        assert!(e.to_string().contains("the op plugin failed"), "{e}");
        let w = leaf(&[1.0], &[1]);
        let e = recompute(&[&x], &[w], Box::new(|_: &[Tensor]| panic!("boom"))).unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
    }

    #[test]
    fn second_derivatives_are_refused_with_a_message() {
        let w = leaf(&[0.5, 2.0], &[2]);
        let w2 = w.shallow_clone();
        let x = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let y = recompute(
            &[&x],
            &[w.shallow_clone()],
            Box::new(move |i: &[Tensor]| Ok(vec![(&i[0] * &w2).pow_tensor_scalar(3)])),
        )
        .unwrap();
        let e = Tensor::f_run_backward(&[&y[0].sum(Kind::Float)], &[&w], true, true).unwrap_err().to_string();
        assert!(e.contains("cannot be differentiated twice"), "{e}");
    }

    #[test]
    fn without_gradients_the_body_just_runs() {
        let _guard = tch::no_grad_guard();
        let w = leaf(&[2.0], &[1]);
        let w2 = w.shallow_clone();
        let x = Tensor::ones([1], (Kind::Float, Device::Cpu));
        let y = recompute(&[&x], &[w], Box::new(move |i: &[Tensor]| Ok(vec![&i[0] * &w2]))).unwrap();
        assert!(!y[0].requires_grad());
        assert_eq!(y[0].double_value(&[0]), 2.0);
    }
}
