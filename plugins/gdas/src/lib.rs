//! GDAS (Dong and Yang, "Searching for A Robust Neural Architecture in Four GPU Hours", CVPR 2019)
//! as an archai plugin: the algorithm `gdas` and the mixer `gdas`.
//!
//! # Mixer `gdas`
//!
//! Each forward in training, per edge: with Gumbel noise g, p = softmax((log_softmax(α) + g) /
//! τ), k = argmax p, and the straight-through weights w = onehot(k) − sg(p) + p. The edge
//! outputs w_k · o_k(x) + Σ_{j≠k} w_j: **only the sampled candidate is computed** (`none`
//! included, which is a zero tensor), while the zero-valued w_j keep every p_j, hence every α of
//! the edge, in the graph. In evaluation the edge computes only argmax α. Mixer params: `alpha`,
//! `row` (the edge's alpha row), `tau` (the name of a scalar architecture parameter holding τ)
//! and, optionally, `noise`: the name of an architecture parameter shaped like `alpha` whose row
//! `row` is g. Every edge that reads one alpha row then reads one draw, so all cells of a type
//! run the same sampled cell in a forward, as the reference does (it samples once per forward,
//! per cell type). Without `noise` each edge draws its own g (again when the sample is not
//! finite).
//!
//! # Algorithm `gdas`
//!
//! The DARTS cell space with `gdas` mixers, plus the scalar `gdas.tau` and, per alpha table
//! `alphas.X`, the noise table `gdas.gumbel.alphas.X` (neither trained by autograd). The
//! algorithm draws fresh noise before the architecture step's forward and again before the
//! weight step's, so each of the two updates sees its own sampled cells.
//! Before each epoch e of E, τ_e = τ_max − (τ_max − τ_min) · e / (E − 1) (logged as `tau`).
//! Bilevel, first order: before each weight step, the gradient of the validation loss with
//! respect to the alphas, applied by Adam. Finalize with `darts-topk` (the
//! DARTS rule on softmax(α)). After each epoch it logs DARTS' alpha report (softmax rows,
//! entropies, the current top-2 genotype) and τ. Configuration (every key optional):
//!
//! ```yaml
//! macro: {layers: 8, nodes: 4, channels: 16, stem_multiplier: 3}
//! candidates: [none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5]
//! tau_max: 10.0
//! tau_min: 0.1
//! arch_lr: 3.0e-4
//! arch_betas: [0.5, 0.999]
//! arch_weight_decay: 1.0e-3
//! ```
#![allow(non_local_definitions)]

use archai_plugin_api::kit::adam::Adam;
use archai_plugin_api::kit::arch::first_order_step;
use archai_plugin_api::kit::config::{check_candidates, check_range, darts_primitives, parse};
use archai_plugin_api::kit::genotype::alpha_report;
use archai_plugin_api::kit::gumbel::{hard_sample, hard_sample_with, noise};
use archai_plugin_api::kit::mixer::{alpha_row, candidates, scalar_param};
use archai_plugin_api::model_desc::{ArchParamDesc, CellFill, DartsMacro, MixerDesc, ModelDesc, ParamInit};
use archai_plugin_api::tch::{no_grad_guard, Kind, Tensor};
use archai_plugin_api::{
    export_plugin, register_algorithm, register_mixer, Algorithm, ArchTraining, HostOp, MixerConfig, Model, Op,
    ParamBuilder, SearchContext, SearchPlan, StepData,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

export_plugin!();

/// The name of the temperature parameter the algorithm declares.
pub const TAU: &str = "gdas.tau";

/// The name of the noise table the algorithm declares for the alpha table `alpha`.
pub fn noise_name(alpha: &str) -> String {
    format!("gdas.gumbel.{alpha}")
}

/// The `gdas` mixer: one sampled candidate per forward.
pub struct GdasMixer {
    alpha: Tensor,
    row: i64,
    tau: Tensor,
    /// The shared Gumbel draw, when the description names one.
    noise: Option<Tensor>,
    ops: Vec<HostOp>,
}

impl GdasMixer {
    pub fn new(config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<Self> {
        let (alpha, row) = alpha_row("gdas", config, p)?;
        let tau = scalar_param("gdas", config, p, "tau")?;
        let noise = match config.param_or::<Option<String>>("gdas", "noise", None)? {
            Some(name) => {
                let g = p.arch_param(&name)?;
                anyhow::ensure!(
                    g.size() == alpha.size(),
                    "mixer `gdas`: the noise `{name}` has shape {:?}, the alphas {:?}: they must match",
                    g.size(),
                    alpha.size()
                );
                Some(g)
            }
            None => None,
        };
        let params = Value::Object(config.candidate_params.clone());
        // Every candidate, `none` too: the sampled one is computed, whichever it is.
        let ops = candidates("gdas", config, p, &params, false)?.into_iter().map(|(_, op)| op).collect();
        Ok(Self { alpha, row, tau, noise, ops })
    }
}

impl Op for GdasMixer {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let x = &inputs[0];
        let logits = self.alpha.f_get(self.row)?;
        if !train {
            let k = logits.f_argmax(-1, false)?.f_int64_value(&[])? as usize;
            return self.ops[k].forward(&[x], false);
        }
        let (k, w) = match &self.noise {
            Some(g) => hard_sample_with(&logits, &g.f_get(self.row)?, &self.tau)?,
            None => hard_sample(&logits, &self.tau)?,
        };
        let y = self.ops[k].forward_scaled(&[x], &w.f_get(k as i64)?, true)?;
        // The other weights are exactly 0 in value; adding them keeps their gradient path.
        let rest = w.f_sum(Kind::Float)?.f_sub(&w.f_get(k as i64)?)?;
        Ok(y.f_add(&rest.f_to_kind(y.kind())?)?)
    }
}

fn create_mixer(config: &MixerConfig, params: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    Ok(Box::new(GdasMixer::new(config, params)?))
}

/// Configuration of the `gdas` algorithm.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GdasConfig {
    #[serde(rename = "macro")]
    pub macro_: DartsMacro,
    pub candidates: Vec<String>,
    pub tau_max: f64,
    pub tau_min: f64,
    pub arch_lr: f64,
    pub arch_betas: [f64; 2],
    pub arch_weight_decay: f64,
}

impl Default for GdasConfig {
    fn default() -> Self {
        Self {
            macro_: DartsMacro::default(),
            candidates: darts_primitives(),
            tau_max: 10.0,
            tau_min: 0.1,
            arch_lr: 3e-4,
            arch_betas: [0.5, 0.999],
            arch_weight_decay: 1e-3,
        }
    }
}

impl GdasConfig {
    pub fn from_json(v: &Value) -> anyhow::Result<Self> {
        let c: Self = parse(v, "gdas")?;
        check_candidates(&c.candidates, "gdas")?;
        anyhow::ensure!(
            c.tau_min.is_finite() && c.tau_max.is_finite() && 0.0 < c.tau_min && c.tau_min <= c.tau_max,
            "gdas config: need 0 < tau_min <= tau_max, got tau_min {} and tau_max {}",
            c.tau_min,
            c.tau_max
        );
        check_range(c.arch_lr, 0.0, f64::MAX, "arch_lr", "gdas")?;
        check_range(c.arch_weight_decay, 0.0, f64::MAX, "arch_weight_decay", "gdas")?;
        for b in c.arch_betas {
            check_range(b, 0.0, 0.999_999, "arch_betas", "gdas")?;
        }
        Ok(c)
    }

    /// τ at `epoch` of `epochs`: linear from tau_max (first epoch) to tau_min (last epoch).
    pub fn tau(&self, epoch: u32, epochs: u32) -> f64 {
        if epochs <= 1 {
            return self.tau_max;
        }
        self.tau_max - (self.tau_max - self.tau_min) * epoch as f64 / (epochs - 1) as f64
    }

    /// The search description: the DARTS cell space with `gdas` mixers, the `gdas.tau` scalar
    /// and a noise table per alpha table, which every edge reading that table shares.
    pub fn build(&self, ctx: &SearchContext) -> anyhow::Result<ModelDesc> {
        let mut params = serde_json::Map::new();
        params.insert("tau".into(), TAU.into());
        let mixer = MixerDesc { name: "gdas".into(), params };
        let mut desc = self
            .macro_
            .build(
                "gdas_search",
                ctx.input(),
                ctx.num_classes,
                &CellFill::Search { candidates: &self.candidates, mixer: &mixer },
            )
            .map_err(|e| anyhow::anyhow!("gdas config `macro`: {e}"))?;
        desc.arch_params.push(ArchParamDesc {
            name: TAU.into(),
            shape: vec![],
            init: ParamInit::Const(self.tau_max),
            trainable: false,
            joint: false,
            l1: 0.0,
        });
        for cell in &mut desc.cells {
            for edge in cell.nodes.iter_mut().flat_map(|n| n.edges.iter_mut()) {
                if let Some(m) = edge.mixer.as_mut() {
                    if let Some(noise) = m.params.get("alpha").and_then(Value::as_str).map(noise_name) {
                        m.params.insert("noise".into(), noise.into());
                    }
                }
            }
        }
        let noise: Vec<ArchParamDesc> = desc
            .arch_params
            .iter()
            .filter(|a| a.trainable && a.name.starts_with("alphas."))
            .map(|a| ArchParamDesc {
                name: noise_name(&a.name),
                shape: a.shape.clone(),
                init: ParamInit::Const(0.0),
                trainable: false,
                joint: false,
                l1: 0.0,
            })
            .collect();
        desc.arch_params.extend(noise);
        Ok(desc)
    }
}

/// Fills every noise table of the description with a fresh Gumbel(0, 1) draw.
fn draw_noise(model: &mut Model<'_, '_>, names: &[String]) -> anyhow::Result<()> {
    let _guard = no_grad_guard();
    for name in names {
        let mut g = model.arch_param(name)?;
        let fresh = noise(&g)?;
        g.f_copy_(&fresh)?;
    }
    Ok(())
}

/// The `gdas` algorithm.
pub struct Gdas {
    pub config: GdasConfig,
    epochs: u32,
    adam: Adam,
    layout: Option<ModelDesc>,
    /// The noise tables the description declares.
    noise: Vec<String>,
}

impl Algorithm for Gdas {
    fn search_space(&mut self, ctx: &SearchContext) -> anyhow::Result<SearchPlan> {
        self.epochs = ctx.epochs;
        let desc = self.config.build(ctx)?;
        self.layout = Some(desc.clone());
        self.noise =
            desc.arch_params.iter().filter(|a| a.name.starts_with("gdas.gumbel.")).map(|a| a.name.clone()).collect();
        Ok(SearchPlan { desc, arch_training: ArchTraining::Bilevel })
    }

    fn before_epoch(&mut self, model: &mut Model<'_, '_>, epoch: u32) -> anyhow::Result<Value> {
        let tau = self.config.tau(epoch, self.epochs);
        let _guard = no_grad_guard();
        let _ = model.arch_param(TAU)?.f_fill_(tau)?;
        Ok(json!({ "tau": tau }))
    }

    fn before_step(&mut self, model: &mut Model<'_, '_>, batch: &StepData) -> anyhow::Result<Value> {
        // One draw for the architecture step's forward, a fresh one for the weight step's.
        draw_noise(model, &self.noise)?;
        let loss = first_order_step(model, batch, &mut self.adam)?;
        draw_noise(model, &self.noise)?;
        Ok(json!({ "arch_loss": loss }))
    }

    fn after_epoch(&mut self, model: &mut Model<'_, '_>, _epoch: u32) -> anyhow::Result<Value> {
        let mut report = alpha_report(&model.arch_params(), self.layout.as_ref())?;
        report["tau"] = model.arch_param(TAU)?.f_double_value(&[])?.into();
        Ok(report)
    }

    fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        self.adam.state()
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        self.adam.load_state(state)
    }
}

fn create_gdas(config: &Value) -> anyhow::Result<Box<dyn Algorithm>> {
    let config = GdasConfig::from_json(config)?;
    let adam = Adam::new(config.arch_lr, config.arch_betas, 1e-8, config.arch_weight_decay);
    Ok(Box::new(Gdas { config, epochs: 1, adam, layout: None, noise: Vec::new() }))
}

register_mixer!(
    "gdas",
    "GDAS: Gumbel-softmax hard sample, only the sampled candidate computed, straight-through gradients; params alpha, row, tau",
    create_mixer
);
register_algorithm!(
    "gdas",
    "GDAS: differentiable sampling of one candidate per edge, tau annealed 10 -> 0.1, first-order bilevel",
    create_gdas
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tau_follows_the_linear_schedule() {
        let c = GdasConfig::default();
        assert_eq!(c.tau(0, 50), 10.0);
        assert!((c.tau(49, 50) - 0.1).abs() < 1e-12);
        assert!((c.tau(25, 51) - (10.0 - 9.9 * 0.5)).abs() < 1e-12);
        assert_eq!(c.tau(0, 1), 10.0);
    }

    #[test]
    fn config_errors_are_named() {
        let e = GdasConfig::from_json(&json!({"tau_mx": 3})).unwrap_err().to_string();
        assert!(e.contains("tau_mx") && e.contains("tau_max"), "{e}");
        let e = GdasConfig::from_json(&json!({"tau_min": 5, "tau_max": 1})).unwrap_err().to_string();
        assert!(e.contains("tau_min"), "{e}");
    }

    #[test]
    fn search_space_declares_tau_untrained() {
        let c = GdasConfig::from_json(&json!({"macro": {"layers": 3, "nodes": 2, "channels": 4}})).unwrap();
        let d = c
            .build(&SearchContext {
                channels: 1,
                image_size: 28,
                num_classes: 10,
                seed: 0,
                epochs: 4,
                steps_per_epoch: 1,
                val_batch_size: 0,
            })
            .unwrap();
        let tau = d.arch_param(TAU).unwrap();
        assert!(!tau.trainable && tau.shape.is_empty() && tau.init == ParamInit::Const(10.0));
        let e = &d.cells[0].nodes[0].edges[0];
        assert_eq!(e.mixer.as_ref().unwrap().name, "gdas");
        assert_eq!(e.alpha_row(), Some(("alphas.normal", 0)));
        // Every edge reads the noise table of its alpha table, which matches it in shape.
        for cell in &d.cells {
            for e in cell.nodes.iter().flat_map(|n| &n.edges) {
                let (alpha, _) = e.alpha_row().unwrap();
                let noise = e.mixer.as_ref().unwrap().params["noise"].as_str().unwrap();
                assert_eq!(noise, noise_name(alpha));
                let (a, g) = (d.arch_param(alpha).unwrap(), d.arch_param(noise).unwrap());
                assert!(!g.trainable && g.shape == a.shape && g.init == ParamInit::Const(0.0));
            }
        }
    }
}
