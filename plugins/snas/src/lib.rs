//! SNAS (Xie et al., "SNAS: Stochastic Neural Architecture Search", ICLR 2019) as an archai
//! plugin: the algorithm `snas` and the mixer `gumbel-soft`.
//!
//! This is the correct relaxation that Archai's `gs` algorithm meant to be: its alphas never
//! received a gradient (they were copied into a new tensor) and were applied in sorted order.
//! Here the sample is differentiable in α, and the alphas are trained.
//!
//! # Mixer `gumbel-soft`
//!
//! In training each forward draws Gumbel noise g per edge and weighs the candidates by the soft
//! sample z = softmax((log_softmax(α[row]) + g) / τ) (`none` skipped: it contributes zero); in
//! evaluation by softmax(α[row]). Params: `alpha`, `row`, `tau` (a scalar architecture parameter).
//!
//! # Algorithm `snas`
//!
//! The DARTS cell space with `gumbel-soft` mixers and the scalar `snas.tau`, set before each
//! epoch to max(tau_min, tau_init · tau_decay^epoch) (logged as `tau`). Single level: the
//! host's weight step backpropagates the **training** loss into the alphas too
//! (`ArchTraining::TrainLoss`); after each weight step the alphas take an Adam step on that
//! gradient (logged: `alpha_grad_norm`). No validation split is needed (confs/algos/snas.yaml
//! sets `val_ratio: 0`). After each epoch it logs DARTS' alpha report (softmax rows, entropies,
//! the current top-2 genotype). Finalize with `darts-topk`. The temperature defaults follow the paper's
//! annealing from 1.0 (its exact schedule is not restated in Archai; these are configurable).
//!
//! ```yaml
//! macro: {layers: 8, nodes: 4, channels: 16, stem_multiplier: 3}
//! candidates: [none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5]
//! tau_init: 1.0
//! tau_decay: 0.97
//! tau_min: 0.03
//! arch_lr: 3.0e-4
//! arch_betas: [0.5, 0.999]
//! arch_weight_decay: 1.0e-3
//! ```
#![allow(non_local_definitions)]

use archai_plugin_api::kit::adam::Adam;
use archai_plugin_api::kit::arch::apply_train_grads;
use archai_plugin_api::kit::config::{check_candidates, check_range, darts_primitives, parse};
use archai_plugin_api::kit::genotype::alpha_report;
use archai_plugin_api::kit::gumbel::soft_sample;
use archai_plugin_api::kit::mixer::{alpha_row, candidates, scalar_param, weighted_sum};
use archai_plugin_api::model_desc::{ArchParamDesc, CellFill, DartsMacro, MixerDesc, ModelDesc, ParamInit};
use archai_plugin_api::tch::{no_grad_guard, Kind, Tensor};
use archai_plugin_api::{
    export_plugin, register_algorithm, register_mixer, Algorithm, ArchTraining, HostOp, MixerConfig, Model, Op,
    ParamBuilder, SearchContext, SearchPlan, StepOutcome,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

export_plugin!();

/// The name of the temperature parameter the algorithm declares.
pub const TAU: &str = "snas.tau";

/// The `gumbel-soft` mixer.
pub struct GumbelSoft {
    alpha: Tensor,
    row: i64,
    tau: Tensor,
    ops: Vec<(i64, HostOp)>,
}

impl GumbelSoft {
    pub fn new(config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<Self> {
        let (alpha, row) = alpha_row("gumbel-soft", config, p)?;
        let tau = scalar_param("gumbel-soft", config, p, "tau")?;
        let params = Value::Object(config.candidate_params.clone());
        let ops = candidates("gumbel-soft", config, p, &params, true)?;
        Ok(Self { alpha, row, tau, ops })
    }
}

impl Op for GumbelSoft {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let logits = self.alpha.f_get(self.row)?;
        let w = if train { soft_sample(&logits, &self.tau)? } else { logits.f_softmax(-1, Kind::Float)? };
        weighted_sum(&self.ops, &inputs[0], &w, train)
    }
}

fn create_mixer(config: &MixerConfig, params: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    Ok(Box::new(GumbelSoft::new(config, params)?))
}

/// Configuration of the `snas` algorithm.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SnasConfig {
    #[serde(rename = "macro")]
    pub macro_: DartsMacro,
    pub candidates: Vec<String>,
    pub tau_init: f64,
    pub tau_decay: f64,
    pub tau_min: f64,
    pub arch_lr: f64,
    pub arch_betas: [f64; 2],
    pub arch_weight_decay: f64,
}

impl Default for SnasConfig {
    fn default() -> Self {
        Self {
            macro_: DartsMacro::default(),
            candidates: darts_primitives(),
            tau_init: 1.0,
            tau_decay: 0.97,
            tau_min: 0.03,
            arch_lr: 3e-4,
            arch_betas: [0.5, 0.999],
            arch_weight_decay: 1e-3,
        }
    }
}

impl SnasConfig {
    pub fn from_json(v: &Value) -> anyhow::Result<Self> {
        let c: Self = parse(v, "snas")?;
        check_candidates(&c.candidates, "snas")?;
        anyhow::ensure!(
            c.tau_min > 0.0 && c.tau_min <= c.tau_init && c.tau_init.is_finite(),
            "snas config: need 0 < tau_min <= tau_init, got tau_min {} and tau_init {}",
            c.tau_min,
            c.tau_init
        );
        check_range(c.tau_decay, 1e-9, 1.0, "tau_decay", "snas")?;
        check_range(c.arch_lr, 0.0, f64::MAX, "arch_lr", "snas")?;
        check_range(c.arch_weight_decay, 0.0, f64::MAX, "arch_weight_decay", "snas")?;
        for b in c.arch_betas {
            check_range(b, 0.0, 0.999_999, "arch_betas", "snas")?;
        }
        Ok(c)
    }

    /// τ at `epoch`: tau_init · tau_decay^epoch, not below tau_min.
    pub fn tau(&self, epoch: u32) -> f64 {
        (self.tau_init * self.tau_decay.powi(epoch as i32)).max(self.tau_min)
    }

    pub fn build(&self, ctx: &SearchContext) -> anyhow::Result<ModelDesc> {
        let mut params = serde_json::Map::new();
        params.insert("tau".into(), TAU.into());
        let mixer = MixerDesc { name: "gumbel-soft".into(), params };
        let mut desc = self
            .macro_
            .build(
                "snas_search",
                ctx.input(),
                ctx.num_classes,
                &CellFill::Search { candidates: &self.candidates, mixer: &mixer },
            )
            .map_err(|e| anyhow::anyhow!("snas config `macro`: {e}"))?;
        desc.arch_params.push(ArchParamDesc {
            name: TAU.into(),
            shape: vec![],
            init: ParamInit::Const(self.tau_init),
            trainable: false,
            joint: false,
            l1: 0.0,
        });
        Ok(desc)
    }
}

/// The `snas` algorithm.
pub struct Snas {
    pub config: SnasConfig,
    adam: Adam,
    layout: Option<ModelDesc>,
}

impl Algorithm for Snas {
    fn search_space(&mut self, ctx: &SearchContext) -> anyhow::Result<SearchPlan> {
        let desc = self.config.build(ctx)?;
        self.layout = Some(desc.clone());
        Ok(SearchPlan { desc, arch_training: ArchTraining::TrainLoss })
    }

    fn after_epoch(&mut self, model: &mut Model<'_, '_>, _epoch: u32) -> anyhow::Result<Value> {
        alpha_report(&model.arch_params(), self.layout.as_ref())
    }

    fn before_epoch(&mut self, model: &mut Model<'_, '_>, epoch: u32) -> anyhow::Result<Value> {
        let tau = self.config.tau(epoch);
        let _guard = no_grad_guard();
        let _ = model.arch_param(TAU)?.f_fill_(tau)?;
        Ok(json!({ "tau": tau }))
    }

    fn after_step(&mut self, model: &mut Model<'_, '_>, _outcome: &StepOutcome) -> anyhow::Result<Value> {
        let norm = apply_train_grads(model, &mut self.adam)?;
        Ok(json!({ "alpha_grad_norm": norm }))
    }

    fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        self.adam.state()
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        self.adam.load_state(state)
    }
}

fn create_snas(config: &Value) -> anyhow::Result<Box<dyn Algorithm>> {
    let config = SnasConfig::from_json(config)?;
    let adam = Adam::new(config.arch_lr, config.arch_betas, 1e-8, config.arch_weight_decay);
    Ok(Box::new(Snas { config, adam, layout: None }))
}

register_mixer!(
    "gumbel-soft",
    "SNAS: candidates weighted by a soft Gumbel-softmax sample of alpha[row] at temperature tau; params alpha, row, tau",
    create_mixer
);
register_algorithm!(
    "snas",
    "SNAS: Gumbel-softmax relaxation with annealed temperature, alphas trained jointly on the training loss",
    create_snas
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tau_anneals_to_its_floor() {
        let c = SnasConfig::default();
        assert_eq!(c.tau(0), 1.0);
        assert!((c.tau(10) - 0.97f64.powi(10)).abs() < 1e-12);
        assert_eq!(c.tau(1000), 0.03);
        assert!(SnasConfig::from_json(&json!({"tau_decay": 1.5})).is_err());
        assert!(SnasConfig::from_json(&json!({"tau": 1})).unwrap_err().to_string().contains("tau"));
    }

    #[test]
    fn soft_sample_passes_gradient_to_alpha() {
        // The defect of Archai's `gs`: no gradient reached the alphas.
        let a = Tensor::from_slice(&[0.1f32, 0.2, -0.3]).set_requires_grad(true);
        let z = soft_sample(&a, &Tensor::from(0.5f32)).unwrap();
        (z.get(0) * 3.0 + z.get(2)).backward();
        assert!(a.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
