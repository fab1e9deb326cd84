//! Scoped mixed precision for libtorch: while an [`AutocastGuard`] lives, eligible ops on its
//! device (convolutions, matmuls, linear layers) run in bf16 or fp16 while parameters stay fp32.
//! This is PyTorch's `torch.autocast(device, dtype)`; tch only toggles CUDA autocast, so the
//! CPU half goes through a small C++ shim. Autocast state is thread-local in libtorch, which is
//! why the guard is neither `Send` nor `Sync`.
use std::marker::PhantomData;
use std::os::raw::c_int;
use tch::Device;

extern "C" {
    fn archai_autocast_set(device: c_int, enabled: c_int, dtype: c_int) -> c_int;
    fn archai_autocast_is_enabled(device: c_int) -> c_int;
    fn archai_autocast_dtype(device: c_int) -> c_int;
    fn archai_autocast_increment_nesting() -> c_int;
    fn archai_autocast_decrement_nesting() -> c_int;
}

/// The reduced precision autocast computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowPrecision {
    Bf16,
    F16,
}

impl LowPrecision {
    /// Its c10::ScalarType value (c10/core/ScalarType.h: Half = 5, BFloat16 = 15).
    fn scalar_type(self) -> c_int {
        match self {
            LowPrecision::Bf16 => 15,
            LowPrecision::F16 => 5,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AutocastError {
    #[error("autocast supports the cpu and cuda devices, not {0:?}")]
    Device(Device),
    #[error("libtorch refused to enable {dtype:?} autocast on {device:?}")]
    Refused { device: Device, dtype: LowPrecision },
    #[error("libtorch failed to report its autocast state on {0:?}")]
    State(Device),
}

fn device_code(device: Device) -> Result<c_int, AutocastError> {
    match device {
        Device::Cpu => Ok(0),
        Device::Cuda(_) => Ok(1),
        other => Err(AutocastError::Device(other)),
    }
}

/// Autocast on one device for the guard's lifetime; the previous state comes back on drop, so
/// guards nest like `with torch.autocast(...)` blocks.
pub struct AutocastGuard {
    device: c_int,
    prev_enabled: c_int,
    /// Whatever dtype was set before (a c10::ScalarType value), restored as is.
    prev_dtype: c_int,
    _thread_local: PhantomData<*const ()>,
}

impl AutocastGuard {
    pub fn new(device: Device, dtype: LowPrecision) -> Result<Self, AutocastError> {
        let d = device_code(device)?;
        // SAFETY: the shim functions take and return plain integers and catch every C++
        // exception (reported as -1).
        unsafe {
            let prev_enabled = archai_autocast_is_enabled(d);
            let prev_dtype = archai_autocast_dtype(d);
            if prev_enabled < 0 || prev_dtype < 0 {
                return Err(AutocastError::State(device));
            }
            if archai_autocast_set(d, 1, dtype.scalar_type()) != 0 {
                return Err(AutocastError::Refused { device, dtype });
            }
            if archai_autocast_increment_nesting() < 0 {
                archai_autocast_set(d, prev_enabled, prev_dtype);
                return Err(AutocastError::State(device));
            }
            Ok(Self { device: d, prev_enabled, prev_dtype, _thread_local: PhantomData })
        }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: as in `new`. Restoring the state libtorch reported before cannot be refused;
        // a failure here could only be reported as a panic in drop, which would be worse.
        unsafe {
            archai_autocast_decrement_nesting();
            archai_autocast_set(self.device, self.prev_enabled, self.prev_dtype);
        }
    }
}

/// Whether autocast is on for `device` in this thread.
pub fn is_enabled(device: Device) -> bool {
    // SAFETY: see `AutocastGuard::new`.
    device_code(device).map(|d| unsafe { archai_autocast_is_enabled(d) } == 1).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    fn cpu(shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn cpu_bf16_casts_matmul_and_conv_but_not_parameters() {
        let (a, w) = (cpu(&[4, 8]), cpu(&[8, 3]).set_requires_grad(true));
        let x = cpu(&[1, 2, 5, 5]);
        let k = cpu(&[3, 2, 3, 3]);
        {
            let _g = AutocastGuard::new(Device::Cpu, LowPrecision::Bf16).unwrap();
            assert!(is_enabled(Device::Cpu));
            let y = a.matmul(&w);
            assert_eq!(y.kind(), Kind::BFloat16);
            assert_eq!(x.conv2d::<Tensor>(&k, None, [1, 1], [1, 1], [1, 1], 1).kind(), Kind::BFloat16);
            // Element-wise ops are not autocast: they follow their inputs.
            assert_eq!((&a + 1.0).kind(), Kind::Float);
            y.to_kind(Kind::Float).sum(Kind::Float).backward();
        }
        assert!(!is_enabled(Device::Cpu));
        assert_eq!(a.matmul(&w).kind(), Kind::Float);
        // The gradient lands on the fp32 parameter in fp32.
        assert_eq!(w.grad().kind(), Kind::Float);
        assert_eq!(w.kind(), Kind::Float);
    }

    #[test]
    fn guards_nest_and_restore_the_outer_state() {
        let a = cpu(&[2, 2]);
        let outer = AutocastGuard::new(Device::Cpu, LowPrecision::Bf16).unwrap();
        {
            let _inner = AutocastGuard::new(Device::Cpu, LowPrecision::F16).unwrap();
            assert_eq!(a.matmul(&a).kind(), Kind::Half);
        }
        assert!(is_enabled(Device::Cpu));
        assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
        drop(outer);
        assert!(!is_enabled(Device::Cpu));
    }

    #[test]
    fn unsupported_devices_are_refused() {
        let e = AutocastGuard::new(Device::Mps, LowPrecision::Bf16).err().unwrap();
        assert_eq!(e, AutocastError::Device(Device::Mps));
    }
}
