//! Configuration of the `darts` algorithm and the `darts-topk` finalizer.
use archai_plugin_api::model_desc::DartsMacro;
use serde::{Deserialize, Serialize};

pub use archai_plugin_api::kit::config::{check_candidates, darts_primitives, parse as parse_config};

/// Which weight step w' the second-order hypergradient differentiates L_val(w', α) through.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unroll {
    /// DARTS: a virtual step of the weight optimizer, taken and undone before the weight step,
    /// which then uses the updated alphas (five passes per search step).
    Virtual,
    /// The host's weight step itself: the architecture step runs after it, with w' the weights
    /// that step produced, and the weight step uses the alphas from before the architecture step
    /// (four passes per search step: the virtual step's pass is saved).
    WeightStep,
}

/// How the second-order step takes the Hessian-vector product d²L_train/(dα dw) · dL_val/dw'.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    /// DARTS: (∇α L_train(w + εv) - ∇α L_train(w - εv)) / 2ε, error O(ε²), two passes.
    Central,
    /// (∇α L_train(w + εv) - ∇α L_train(w)) / ε with ∇α L_train(w) from the host's weight step
    /// (`unroll: weight_step` only), error O(ε), one pass.
    OneSided,
}

/// Configuration of the `darts` algorithm (see the crate documentation for the meaning of each key).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DartsConfig {
    /// The macro-architecture of the supernet.
    #[serde(rename = "macro")]
    pub macro_: DartsMacro,
    /// The candidate ops of every mixed edge (op names from op plugins).
    pub candidates: Vec<String>,
    /// 1: first-order DARTS; 2: second-order (unrolled) DARTS.
    pub order: u8,
    /// Adam learning rate of the architecture parameters.
    pub arch_lr: f64,
    /// Adam betas of the architecture parameters.
    pub arch_betas: [f64; 2],
    /// L2 weight decay of the architecture parameters (added to the gradient, as `torch.optim.Adam`).
    pub arch_weight_decay: f64,
    /// Finite-difference radius of the second-order step: eps = unrolled_eps / ‖dL_val/dw'‖.
    pub unrolled_eps: f64,
    /// Order 2: the weight step the hypergradient looks through (see [`Unroll`]).
    pub unroll: Unroll,
    /// Order 2: the finite difference of the Hessian term (see [`Difference`]).
    pub difference: Difference,
    /// Weight steps before the first architecture step (PC-DARTS' warm-up, counted in steps
    /// so that short searches can use it): the alphas move only once the weights can tell the
    /// candidates apart.
    pub warmup_steps: u64,
}

impl Default for DartsConfig {
    fn default() -> Self {
        Self {
            macro_: DartsMacro::default(),
            candidates: darts_primitives(),
            order: 1,
            arch_lr: 3e-4,
            arch_betas: [0.5, 0.999],
            arch_weight_decay: 1e-3,
            unrolled_eps: 0.01,
            unroll: Unroll::Virtual,
            difference: Difference::Central,
            warmup_steps: 0,
        }
    }
}

impl DartsConfig {
    /// Parses and validates the config.
    pub fn from_json(value: &serde_json::Value) -> anyhow::Result<Self> {
        let c: Self = parse_config(value, "darts")?;
        c.validate()?;
        Ok(c)
    }

    /// Range checks that serde cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.order == 1 || self.order == 2, "darts config: `order` must be 1 or 2, got {}", self.order);
        anyhow::ensure!(
            self.arch_lr.is_finite() && self.arch_lr >= 0.0,
            "darts config: `arch_lr` must be a non-negative number, got {}",
            self.arch_lr
        );
        for (i, b) in self.arch_betas.iter().enumerate() {
            anyhow::ensure!((0.0..1.0).contains(b), "darts config: `arch_betas[{i}]` must be in [0, 1), got {b}");
        }
        anyhow::ensure!(
            self.arch_weight_decay.is_finite() && self.arch_weight_decay >= 0.0,
            "darts config: `arch_weight_decay` must be a non-negative number, got {}",
            self.arch_weight_decay
        );
        anyhow::ensure!(
            self.unrolled_eps.is_finite() && self.unrolled_eps > 0.0,
            "darts config: `unrolled_eps` must be positive, got {}",
            self.unrolled_eps
        );
        anyhow::ensure!(
            self.order == 2 || self.unroll == Unroll::Virtual,
            "darts config: `unroll: weight_step` applies to the second-order step only; set `order: 2` or remove `unroll`"
        );
        anyhow::ensure!(
            self.difference == Difference::Central || self.unroll == Unroll::WeightStep,
            "darts config: `difference: one_sided` reuses the architecture gradient of the host's weight step, \
             so it needs `order: 2` and `unroll: weight_step`"
        );
        check_candidates(&self.candidates, "darts")?;
        Ok(())
    }
}

/// Configuration of the `darts-topk` finalizer (shared with other top-k finalizers).
pub use archai_plugin_api::kit::genotype::TopkConfig;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_the_papers() {
        let c = DartsConfig::from_json(&json!({})).unwrap();
        assert_eq!(c, DartsConfig::default());
        assert_eq!(c.macro_, DartsMacro::default());
        assert_eq!(c.candidates.len(), 8);
        assert_eq!(c.candidates[0], "none");
        assert_eq!(
            (c.order, c.arch_lr, c.arch_betas, c.arch_weight_decay, c.unrolled_eps, c.unroll, c.difference),
            (1, 3e-4, [0.5, 0.999], 1e-3, 0.01, Unroll::Virtual, Difference::Central)
        );
        assert_eq!(DartsConfig::from_json(&serde_json::Value::Null).unwrap(), c);
    }

    #[test]
    fn partial_keys_keep_the_other_defaults() {
        let c = DartsConfig::from_json(&json!({"macro": {"layers": 5}, "order": 2, "arch_lr": 6e-4})).unwrap();
        assert_eq!(c.macro_, DartsMacro { layers: 5, ..DartsMacro::default() });
        assert_eq!(c.order, 2);
        assert_eq!(c.arch_lr, 6e-4);
        assert_eq!(c.arch_betas, [0.5, 0.999]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = DartsConfig::from_json(&json!({"arch_lrr": 1e-3})).unwrap_err().to_string();
        assert!(e.contains("arch_lrr") && e.contains("arch_lr"), "{e}");
        let e = DartsConfig::from_json(&json!({"macro": {"cells": 8}})).unwrap_err().to_string();
        assert!(e.contains("cells"), "{e}");
        let e = DartsConfig::from_json(&json!({"order": 3})).unwrap_err().to_string();
        assert!(e.contains("order"), "{e}");
        let e = DartsConfig::from_json(&json!({"candidates": ["none"]})).unwrap_err().to_string();
        assert!(e.contains("other than `none`"), "{e}");
        let e =
            DartsConfig::from_json(&json!({"candidates": ["skip_connect", "skip_connect"]})).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let e = DartsConfig::from_json(&json!({"unroll": "weight_step"})).unwrap_err().to_string();
        assert!(e.contains("order: 2"), "{e}");
        let e = DartsConfig::from_json(&json!({"order": 2, "unroll": "weights"})).unwrap_err().to_string();
        assert!(e.contains("weight_step"), "{e}");
        let c = DartsConfig::from_json(&json!({"order": 2, "unroll": "weight_step"})).unwrap();
        assert_eq!(c.unroll, Unroll::WeightStep);
        let e = DartsConfig::from_json(&json!({"order": 2, "difference": "one_sided"})).unwrap_err().to_string();
        assert!(e.contains("unroll: weight_step"), "{e}");
        let e = DartsConfig::from_json(&json!({"order": 2, "unroll": "weight_step", "difference": "forward"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("one_sided"), "{e}");
        let c =
            DartsConfig::from_json(&json!({"order": 2, "unroll": "weight_step", "difference": "one_sided"})).unwrap();
        assert_eq!(c.difference, Difference::OneSided);
        let e = DartsConfig::from_json(&json!({"arch_betas": [0.5, 1.0]})).unwrap_err().to_string();
        assert!(e.contains("arch_betas[1]"), "{e}");
        let e = TopkConfig::from_json(&json!({"k": 2, "kk": 1}), "darts-topk").unwrap_err().to_string();
        assert!(e.contains("kk"), "{e}");
        assert_eq!(TopkConfig::from_json(&json!({}), "darts-topk").unwrap(), TopkConfig::default());
        assert!(TopkConfig::from_json(&json!({"k": 0}), "darts-topk").is_err());
    }
}
