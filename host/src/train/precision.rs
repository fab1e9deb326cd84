//! Mixed precision: autocast (bf16 or fp16 compute, fp32 parameters) and, for fp16, dynamic loss
//! scaling as in PyTorch's `GradScaler`.
use archai_autocast::{AutocastGuard, LowPrecision};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// `trainer.precision`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in fp32.
    #[default]
    Fp32,
    /// Autocast to bfloat16: fp32's range, so no loss scaling is needed. Fast on CPUs with
    /// AVX512-BF16/AMX and on recent GPUs.
    Bf16,
    /// Autocast to float16 with dynamic loss scaling (`trainer.loss_scale`). Meant for CUDA;
    /// on CPUs without native fp16 it runs, slowly.
    Fp16,
}

impl Precision {
    /// The autocast region for a forward pass; `None` in fp32.
    pub fn autocast(self, device: Device) -> Result<Option<AutocastGuard>, archai_autocast::AutocastError> {
        let dtype = match self {
            Precision::Fp32 => return Ok(None),
            Precision::Bf16 => LowPrecision::Bf16,
            Precision::Fp16 => LowPrecision::F16,
        };
        AutocastGuard::new(device, dtype).map(Some)
    }

    /// The name the config uses (`fp32`, `bf16`, `fp16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }

    pub fn needs_loss_scaling(self) -> bool {
        self == Precision::Fp16
    }
}

/// `trainer.loss_scale`: PyTorch GradScaler's defaults.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LossScaleConfig {
    /// Starting scale.
    pub init: f64,
    /// Scale multiplier after `growth_interval` steps without overflow.
    pub growth_factor: f64,
    /// Scale multiplier after an overflow (the step is skipped).
    pub backoff_factor: f64,
    pub growth_interval: usize,
}

impl Default for LossScaleConfig {
    fn default() -> Self {
        Self { init: 65536.0, growth_factor: 2.0, backoff_factor: 0.5, growth_interval: 2000 }
    }
}

impl LossScaleConfig {
    /// The checks GradScaler makes, as one message naming the bad keys.
    pub fn validate(&self) -> Result<(), String> {
        let mut bad = Vec::new();
        if !(self.init.is_finite() && self.init > 0.0) {
            bad.push(format!("init must be a positive number (got {})", self.init));
        }
        if !(self.growth_factor.is_finite() && self.growth_factor > 1.0) {
            bad.push(format!("growth_factor must be above 1 (got {})", self.growth_factor));
        }
        if !(self.backoff_factor > 0.0 && self.backoff_factor < 1.0) {
            bad.push(format!("backoff_factor must be in (0, 1) (got {})", self.backoff_factor));
        }
        if self.growth_interval == 0 {
            bad.push("growth_interval must be at least 1".into());
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("trainer.loss_scale: {}", bad.join("; ")))
        }
    }
}

/// Dynamic loss scaling: the loss is multiplied by `scale` before backward so small fp16
/// gradients do not flush to zero; gradients are divided back before clipping and the update.
/// A step whose gradients overflowed is skipped and the scale backs off.
#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    pub config: LossScaleConfig,
    scale: f64,
    good_steps: usize,
    /// Steps skipped for overflow since the run started.
    pub skipped: usize,
}

impl LossScaler {
    pub fn new(config: LossScaleConfig) -> Self {
        let scale = config.init;
        Self { config, scale, good_steps: 0, skipped: 0 }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Divides the gradients by the scale in place; true when every element is finite.
    pub fn unscale(&self, grads: &mut [Tensor]) -> bool {
        let _guard = tch::no_grad_guard();
        let inv = 1.0 / self.scale;
        let mut checks = Vec::with_capacity(grads.len());
        for g in grads.iter_mut() {
            let _ = g.g_mul_scalar_(inv);
            checks.push(g.isfinite().all());
        }
        // One read of the device for all tensors (a sync per tensor would stall a GPU).
        checks.is_empty() || Tensor::stack(&checks, 0).all().int64_value(&[]) == 1
    }

    /// Records the outcome of a step and adjusts the scale.
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.config.growth_interval {
                self.scale *= self.config.growth_factor;
                self.good_steps = 0;
            }
        } else {
            self.scale *= self.config.backoff_factor;
            self.good_steps = 0;
            self.skipped += 1;
        }
    }

    /// State for checkpoints (an exact resume needs the scale and the growth counter).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("scale".into(), Tensor::from(self.scale)),
            ("good_steps".into(), Tensor::from(self.good_steps as i64)),
            ("skipped".into(), Tensor::from(self.skipped as i64)),
        ]
    }

    pub fn load_state(&mut self, state: &[(String, Tensor)]) {
        for (k, v) in state {
            match k.as_str() {
                "scale" => self.scale = v.double_value(&[]),
                "good_steps" => self.good_steps = v.int64_value(&[]) as usize,
                "skipped" => self.skipped = v.int64_value(&[]) as usize,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_skips_and_backs_off_growth_after_interval() {
        let mut s = LossScaler::new(LossScaleConfig { growth_interval: 3, ..Default::default() });
        let mut grads = vec![Tensor::from_slice(&[65536.0f32, -131072.0])];
        assert!(s.unscale(&mut grads));
        assert_eq!(Vec::<f32>::try_from(&grads[0]).unwrap(), vec![1.0, -2.0]);
        let mut bad = vec![Tensor::from_slice(&[1.0f32, f32::INFINITY]), Tensor::from_slice(&[1.0f32])];
        assert!(!s.unscale(&mut bad));
        let mut nan = vec![Tensor::from_slice(&[f32::NAN])];
        assert!(!s.unscale(&mut nan));
        // Large finite values whose sum overflows are still finite gradients.
        let mut big = vec![Tensor::from_slice(&[f32::MAX, f32::MAX])];
        assert!(s.unscale(&mut big));
        s.update(false);
        assert_eq!((s.scale(), s.skipped), (32768.0, 1));
        s.update(true);
        s.update(true);
        assert_eq!(s.scale(), 32768.0);
        s.update(true);
        assert_eq!(s.scale(), 65536.0);
        let mut back = LossScaler::new(LossScaleConfig::default());
        back.load_state(&s.state());
        assert_eq!((back.scale(), back.good_steps, back.skipped), (s.scale(), s.good_steps, s.skipped));
    }

    #[test]
    fn bad_loss_scale_settings_are_named() {
        assert!(LossScaleConfig::default().validate().is_ok());
        let bad = LossScaleConfig { init: 0.0, growth_factor: 1.0, backoff_factor: 1.5, growth_interval: 0 };
        let e = bad.validate().unwrap_err();
        for key in ["init", "growth_factor", "backoff_factor", "growth_interval"] {
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn fp32_has_no_autocast_region() {
        assert!(Precision::Fp32.autocast(Device::Cpu).unwrap().is_none());
        let g = Precision::Bf16.autocast(Device::Cpu).unwrap();
        assert!(g.is_some() && archai_autocast::is_enabled(Device::Cpu));
        drop(g);
        assert!(!archai_autocast::is_enabled(Device::Cpu));
    }
}
