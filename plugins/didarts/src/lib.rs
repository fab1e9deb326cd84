//! DiDARTS (Archai's single-level DARTS) as an archai plugin: the algorithm `didarts`.
//!
//! The DARTS supernet (mixed edges combined by the `softmax` mixer of the `darts` plugin, so
//! both plugins must be in the plugin directory) trained at a single level: the host's weight
//! step backpropagates the **training** loss into the alphas too (`ArchTraining::TrainLoss`),
//! and after it the alphas take a step of their own optimizer, SGD with momentum on a cosine
//! schedule over the epochs (set before each epoch, logged as `arch_lr`). No validation split
//! is needed. After each epoch it logs DARTS' alpha report. Finalize with `darts-topk`.
//!
//! ```yaml
//! macro: {layers: 8, nodes: 4, channels: 16, stem_multiplier: 3}
//! candidates: [none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5]
//! arch_lr: 0.025        # Archai's didarts.yaml: SGD 0.025, momentum 0.9, wd 3e-4, cosine to 0
//! arch_lr_min: 0.0
//! arch_momentum: 0.9
//! arch_weight_decay: 3.0e-4
//! ```
#![allow(non_local_definitions)]

use archai_plugin_api::kit::arch::apply_train_grads;
use archai_plugin_api::kit::config::{check_candidates, check_range, darts_primitives, parse};
use archai_plugin_api::kit::genotype::alpha_report;
use archai_plugin_api::kit::sgd::Sgd;
use archai_plugin_api::model_desc::{CellFill, DartsMacro, MixerDesc, ModelDesc};
use archai_plugin_api::tch::Tensor;
use archai_plugin_api::{
    export_plugin, register_algorithm, Algorithm, ArchTraining, Model, SearchContext, SearchPlan, StepOutcome,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

export_plugin!();

/// Configuration of the `didarts` algorithm.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DiDartsConfig {
    #[serde(rename = "macro")]
    pub macro_: DartsMacro,
    pub candidates: Vec<String>,
    pub arch_lr: f64,
    pub arch_lr_min: f64,
    pub arch_momentum: f64,
    pub arch_weight_decay: f64,
}

impl Default for DiDartsConfig {
    fn default() -> Self {
        Self {
            macro_: DartsMacro::default(),
            candidates: darts_primitives(),
            arch_lr: 0.025,
            arch_lr_min: 0.0,
            arch_momentum: 0.9,
            arch_weight_decay: 3e-4,
        }
    }
}

impl DiDartsConfig {
    pub fn from_json(v: &Value) -> anyhow::Result<Self> {
        let c: Self = parse(v, "didarts")?;
        check_candidates(&c.candidates, "didarts")?;
        check_range(c.arch_lr, 0.0, f64::MAX, "arch_lr", "didarts")?;
        check_range(c.arch_lr_min, 0.0, c.arch_lr, "arch_lr_min", "didarts")?;
        check_range(c.arch_momentum, 0.0, 1.0, "arch_momentum", "didarts")?;
        check_range(c.arch_weight_decay, 0.0, f64::MAX, "arch_weight_decay", "didarts")?;
        Ok(c)
    }

    /// The architecture learning rate of `epoch` of `epochs` (cosine from arch_lr to arch_lr_min).
    pub fn lr(&self, epoch: u32, epochs: u32) -> f64 {
        let t = epoch as f64 / epochs.max(1) as f64;
        self.arch_lr_min + (self.arch_lr - self.arch_lr_min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
    }

    pub fn build(&self, ctx: &SearchContext) -> anyhow::Result<ModelDesc> {
        let mixer = MixerDesc { name: "softmax".into(), params: Default::default() };
        self.macro_
            .build(
                "didarts_search",
                ctx.input(),
                ctx.num_classes,
                &CellFill::Search { candidates: &self.candidates, mixer: &mixer },
            )
            .map_err(|e| anyhow::anyhow!("didarts config `macro`: {e}"))
    }
}

/// The `didarts` algorithm.
pub struct DiDarts {
    pub config: DiDartsConfig,
    epochs: u32,
    sgd: Sgd,
    layout: Option<ModelDesc>,
}

impl Algorithm for DiDarts {
    fn search_space(&mut self, ctx: &SearchContext) -> anyhow::Result<SearchPlan> {
        self.epochs = ctx.epochs;
        let desc = self.config.build(ctx)?;
        self.layout = Some(desc.clone());
        Ok(SearchPlan { desc, arch_training: ArchTraining::TrainLoss })
    }

    fn after_epoch(&mut self, model: &mut Model<'_, '_>, _epoch: u32) -> anyhow::Result<Value> {
        alpha_report(&model.arch_params(), self.layout.as_ref())
    }

    fn before_epoch(&mut self, _model: &mut Model<'_, '_>, epoch: u32) -> anyhow::Result<Value> {
        self.sgd.lr = self.config.lr(epoch, self.epochs);
        Ok(json!({ "arch_lr": self.sgd.lr }))
    }

    fn after_step(&mut self, model: &mut Model<'_, '_>, _outcome: &StepOutcome) -> anyhow::Result<Value> {
        let norm = apply_train_grads(model, &mut self.sgd)?;
        Ok(json!({ "alpha_grad_norm": norm }))
    }

    fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        self.sgd.state()
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        self.sgd.load_state(state)
    }
}

fn create_didarts(config: &Value) -> anyhow::Result<Box<dyn Algorithm>> {
    let config = DiDartsConfig::from_json(config)?;
    let sgd = Sgd::new(config.arch_lr, config.arch_momentum, config.arch_weight_decay);
    Ok(Box::new(DiDarts { config, epochs: 1, sgd, layout: None }))
}

register_algorithm!(
    "didarts",
    "DiDARTS: single-level DARTS, alphas trained by their own SGD (cosine) on the training loss",
    create_didarts
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_lr_is_cosine_over_the_epochs() {
        let c = DiDartsConfig::default();
        assert_eq!(c.lr(0, 10), 0.025);
        assert!((c.lr(5, 10) - 0.0125).abs() < 1e-12);
        assert!(c.lr(9, 10) < 0.001);
        assert!(DiDartsConfig::from_json(&json!({"arch_momentum": 2})).is_err());
    }
}
