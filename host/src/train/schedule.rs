//! Learning-rate schedules with linear warmup, evaluated per step.
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Constant,
    Cosine,
    Step,
    MultiStep,
    OneCycle,
}

/// `scheduler:` section of a trainer. Epoch-valued knobs may be fractional.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub kind: ScheduleKind,
    /// Linear warmup from `warmup_start_factor * lr` to `lr` over this many epochs.
    #[serde(default)]
    pub warmup_epochs: f64,
    #[serde(default)]
    pub warmup_start_factor: f64,
    /// Floor of the cosine schedule.
    #[serde(default)]
    pub lr_min: f64,
    /// `step`: decay every `step_size` epochs by `gamma`.
    #[serde(default = "one")]
    pub step_size: f64,
    #[serde(default = "tenth")]
    pub gamma: f64,
    /// `multi_step`: epochs at which lr is multiplied by `gamma`.
    #[serde(default)]
    pub milestones: Vec<f64>,
    /// `one_cycle`: fraction of training spent increasing lr, and the initial division factor.
    #[serde(default = "pct")]
    pub pct_start: f64,
    #[serde(default = "div")]
    pub div_factor: f64,
}

fn one() -> f64 {
    1.0
}
fn tenth() -> f64 {
    0.1
}
fn pct() -> f64 {
    0.3
}
fn div() -> f64 {
    25.0
}

impl ScheduleConfig {
    pub fn constant() -> Self {
        Self {
            kind: ScheduleKind::Constant,
            warmup_epochs: 0.0,
            warmup_start_factor: 0.0,
            lr_min: 0.0,
            step_size: 1.0,
            gamma: 0.1,
            milestones: vec![],
            pct_start: 0.3,
            div_factor: 25.0,
        }
    }

    /// Learning rate at `step` of `total_steps`, with `steps_per_epoch` to convert epoch knobs.
    pub fn lr_at(&self, base_lr: f64, step: usize, steps_per_epoch: usize, total_steps: usize) -> f64 {
        let spe = steps_per_epoch.max(1) as f64;
        let epoch = step as f64 / spe;
        let warm_steps = self.warmup_epochs * spe;
        if (step as f64) < warm_steps {
            let f = self.warmup_start_factor + (1.0 - self.warmup_start_factor) * (step as f64 / warm_steps);
            return base_lr * f;
        }
        let total = total_steps.max(1) as f64;
        let t = ((step as f64 - warm_steps) / (total - warm_steps).max(1.0)).clamp(0.0, 1.0);
        match self.kind {
            ScheduleKind::Constant => base_lr,
            ScheduleKind::Cosine => {
                self.lr_min + 0.5 * (base_lr - self.lr_min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            ScheduleKind::Step => base_lr * self.gamma.powf((epoch / self.step_size).floor()),
            ScheduleKind::MultiStep => {
                base_lr * self.gamma.powi(self.milestones.iter().filter(|&&m| epoch >= m).count() as i32)
            }
            ScheduleKind::OneCycle => {
                // PyTorch's OneCycleLR (two phases, cosine annealing): up from max/div_factor to
                // max until step pct_start * total - 1, then down to that / 1e4 at step total - 1.
                let start = base_lr / self.div_factor;
                let end = start / 1e4;
                let cos =
                    |from: f64, to: f64, pct: f64| to + (from - to) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0);
                let s = step as f64;
                let up_end = self.pct_start * total - 1.0;
                let down_end = total - 1.0;
                if s <= up_end && up_end > 0.0 {
                    cos(start, base_lr, s / up_end)
                } else {
                    let from = up_end.max(0.0);
                    cos(base_lr, end, ((s - from) / (down_end - from).max(1.0)).clamp(0.0, 1.0))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_values() {
        let s = ScheduleConfig {
            kind: ScheduleKind::Cosine,
            warmup_epochs: 1.0,
            lr_min: 0.0,
            ..ScheduleConfig::constant()
        };
        // 10 steps per epoch, 100 steps in total.
        assert!((s.lr_at(0.1, 0, 10, 100) - 0.0).abs() < 1e-12);
        assert!((s.lr_at(0.1, 5, 10, 100) - 0.05).abs() < 1e-12);
        assert!((s.lr_at(0.1, 10, 10, 100) - 0.1).abs() < 1e-12);
        // halfway through the cosine part (step 55 of 10..100) -> 0.05
        assert!((s.lr_at(0.1, 55, 10, 100) - 0.05).abs() < 1e-12);
        assert!(s.lr_at(0.1, 100, 10, 100).abs() < 1e-12);
    }

    #[test]
    fn step_and_multistep() {
        let s = ScheduleConfig { kind: ScheduleKind::Step, step_size: 2.0, gamma: 0.5, ..ScheduleConfig::constant() };
        assert_eq!(s.lr_at(1.0, 39, 10, 100), 0.5);
        assert_eq!(s.lr_at(1.0, 40, 10, 100), 0.25);
        let m = ScheduleConfig {
            kind: ScheduleKind::MultiStep,
            milestones: vec![3.0, 5.0],
            gamma: 0.1,
            ..ScheduleConfig::constant()
        };
        assert!((m.lr_at(1.0, 55, 10, 100) - 0.01).abs() < 1e-12);
    }
}
