//! XNAS (Nayman et al., "XNAS: Neural Architecture Search with Expert Advice", NeurIPS 2019) as
//! an archai plugin: the algorithm `xnas` and the mixer `xnas`.
//!
//! Every candidate of a mixed edge is an expert with a positive weight v_i (start 1, never trained
//! by gradient). The edge outputs p = Σ v_i·o_i(x) / Σ v_i. Before every weight step the
//! validation batch is forwarded and backpropagated once; every example j gives every expert the
//! reward r_ij = −⟨∂ℓ_j/∂p_j, o_i(x_j)⟩ (the gradient of that example's loss at the edge output,
//! dotted with the candidate's output for that example), and the examples update the weights one
//! after the other: v_i ← v_i·exp(η·r_ij) (exponentiated gradient).
//!
//! # How the rewards are read without hooks
//! The weights live as log-weights in `alphas.normal` / `alphas.reduce` (v = exp α, so the
//! mixing weights are softmax(α), DARTS' alpha layout, and `darts-topk` finalizes XNAS as the
//! paper does: per edge the best non-`none` expert, the top 2 edges per node). During the
//! architecture step the mixer adds a zero-valued *probe* per example to the weights,
//! p_j = Σ (w_i + q_ji − stopgrad(q_ji))·o_i(x_j): the forward value is unchanged and
//! ∂L/∂q_ji = ⟨∂L/∂p_j, o_i(x_j)⟩ exactly, so one backward of the batch to the probes
//! (`xnas.probe.normal` / `xnas.probe.reduce`, shape [validation batch, edges, candidates]) yields
//! every reward of every edge and example. Cells of a type share their weights, so that gradient
//! is the sum of the per-cell rewards: one update here is the paper's one update per cell of
//! that type (t advances by the number of cells). Taking the examples one at a time through the
//! network instead (as Archai's trainer does) is not the same: batch normalization in training
//! mode over a single example makes every candidate's output average to zero per channel, the
//! classifier's pooled features vanish and so do the rewards.
//!
//! # Schedule and wipe-out (§4 of shared/ALGORITHMS.md)
//! η = √(2 ln N / (T·L²)) per cell type, N candidates, L = `reward_bound`, T = validation
//! examples per step × weight steps per epoch × epochs × cells of the type (the host passes the
//! steps per epoch and the validation batch size in the search context). Each example's reward
//! is clipped to ±L per cell (the regret bound assumes |r| ≤ L; Archai clipped the weight
//! gradients instead, which left the rewards unbounded). With `wipe_out`, after each update every
//! expert whose weight is below θ_t = max_j v_j · exp(−2ηL(T − t)) is removed for good
//! (log-weight −1e9: a softmax weight of exactly 0, still finite for the reports); it can no
//! longer catch up with the best expert, and the best one always survives. Removed experts are not
//! computed any more. At t = T only each edge's best expert is left.
//!
//! Unlike Archai's versions: no hard-coded CUDA, no debug file per update, the step counter
//! counts what the schedule assumes, and the weights are updated in place.
//!
//! ```yaml
//! macro: {layers: 8, nodes: 4, channels: 16, stem_multiplier: 3}
//! candidates: [none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5]
//! reward_bound: 1.0         # L
//! wipe_out: true
//! ```
#![allow(non_local_definitions)]

use archai_plugin_api::kit::config::{check_candidates, check_range, darts_primitives, parse};
use archai_plugin_api::kit::genotype::alpha_report;
use archai_plugin_api::kit::grad_of;
use archai_plugin_api::kit::mixer::{alpha_row, candidates};
use archai_plugin_api::model_desc::{CellFill, DartsMacro, MixerDesc, ModelDesc, ParamInit};
use archai_plugin_api::tch::{no_grad_guard, Device, Kind, Tensor};
use archai_plugin_api::{
    export_plugin, register_algorithm, register_mixer, Algorithm, ArchTraining, HostOp, MixerConfig, Model, Op,
    ParamBuilder, SearchContext, SearchPlan, StepData,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

export_plugin!();

/// The log-weight of a removed expert: its softmax weight is exactly 0 in f32 and f64.
pub const WIPED: f64 = -1.0e9;
/// The two cell types, in the order of every per-type array here.
pub const GROUPS: [&str; 2] = ["normal", "reduce"];

/// The probe parameter that reads the rewards of the edges whose weights are `alpha`.
pub fn probe_name(alpha: &str) -> String {
    format!("xnas.probe.{}", alpha.rsplit('.').next().unwrap_or(alpha))
}

/// Mixing coefficients per example, [B, N]: w's value for every example, with
/// ∂/∂q_ji = ⟨∂/∂p_j, o_i(x_j)⟩ (the negative reward of candidate i on example j).
pub fn probed_weights(w: &Tensor, probe: &Tensor) -> anyhow::Result<Tensor> {
    Ok(w.f_unsqueeze(0)?.f_add(probe)?.f_sub(&probe.f_detach()?)?)
}

/// Σ_i coef[:, i]·o_i over `outputs` (candidate column, output), one coefficient per example.
pub fn mix_per_example(outputs: &[(i64, Tensor)], coef: &Tensor) -> anyhow::Result<Tensor> {
    let mut out: Option<Tensor> = None;
    for (i, o) in outputs {
        let c = coef.f_select(1, *i)?;
        let mut shape = vec![c.size()[0]];
        shape.resize(o.dim(), 1);
        let y = o.f_mul(&c.f_view(shape.as_slice())?)?;
        out = Some(match out {
            Some(acc) => acc.f_add(&y)?,
            None => y,
        });
    }
    out.ok_or_else(|| anyhow::anyhow!("a mixed edge without candidates"))
}

/// The `xnas` mixer.
pub struct XnasMixer {
    alpha: Tensor,
    probe: Tensor,
    row: i64,
    ops: Vec<(i64, HostOp)>,
}

impl XnasMixer {
    pub fn new(config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<Self> {
        let (alpha, row) = alpha_row("xnas", config, p)?;
        let alpha_name: String = config.param("xnas", "alpha")?;
        let probe_name = probe_name(&alpha_name);
        let probe = p.arch_param(&probe_name)?;
        anyhow::ensure!(
            probe.dim() == 3 && probe.size()[1..] == alpha.size()[..],
            "mixer `xnas`: `{probe_name}` has shape {:?}; it needs [validation batch, {:?}] like `{alpha_name}`",
            probe.size(),
            alpha.size()
        );
        let params = Value::Object(config.candidate_params.clone());
        let ops = candidates("xnas", config, p, &params, true)?;
        Ok(Self { alpha, probe, row, ops })
    }
}

impl Op for XnasMixer {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let x = &inputs[0];
        let w = self.alpha.f_get(self.row)?.f_softmax(-1, Kind::Float)?;
        let live: Vec<f32> = Vec::try_from(w.f_to_device(Device::Cpu)?)?;
        let n = x.size()[0];
        // The probe takes part only in the architecture step (the host freezes it, like every
        // trainable architecture parameter, during weight steps) and for batches it covers;
        // otherwise every example gets the plain weights.
        let coef = if self.probe.requires_grad() && n <= self.probe.size()[0] {
            probed_weights(&w, &self.probe.f_narrow(0, 0, n)?.f_select(1, self.row)?)?
        } else {
            w.f_unsqueeze(0)?.f_expand([n, w.size()[0]], false)?
        };
        let mut outputs = Vec::new();
        for (i, op) in self.ops.iter().filter(|(i, _)| live[*i as usize] > 0.0) {
            outputs.push((*i, op.forward(&[x], train)?));
        }
        if outputs.is_empty() {
            // Only `none` is left: zeros, of the shape the candidates give.
            let (i, op) = &self.ops[0];
            outputs.push((*i, op.forward(&[x], train)?.f_mul_scalar(0.0)?));
        }
        mix_per_example(&outputs, &coef)
    }
}

fn create_mixer(config: &MixerConfig, params: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    Ok(Box::new(XnasMixer::new(config, params)?))
}

/// Configuration of the `xnas` algorithm.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct XnasConfig {
    #[serde(rename = "macro")]
    pub macro_: DartsMacro,
    pub candidates: Vec<String>,
    /// L: the bound of one update's reward per cell (rewards are clipped to it).
    pub reward_bound: f64,
    /// Remove experts that can no longer catch up with the best one.
    pub wipe_out: bool,
}

impl Default for XnasConfig {
    fn default() -> Self {
        Self { macro_: DartsMacro::default(), candidates: darts_primitives(), reward_bound: 1.0, wipe_out: true }
    }
}

impl XnasConfig {
    pub fn from_json(v: &Value) -> anyhow::Result<Self> {
        let c: Self = parse(v, "xnas")?;
        check_candidates(&c.candidates, "xnas")?;
        anyhow::ensure!(c.candidates.len() >= 2, "xnas config: `candidates` needs at least 2 experts");
        check_range(c.reward_bound, 1e-12, f64::MAX, "reward_bound", "xnas")?;
        Ok(c)
    }

    /// The search network: DARTS cells with `xnas` mixers, all log-weights 0 (v = 1), not trained
    /// by gradient, and one zero probe per weight group with a row per validation example.
    pub fn build(&self, ctx: &SearchContext) -> anyhow::Result<ModelDesc> {
        let mixer = MixerDesc { name: "xnas".into(), params: serde_json::Map::new() };
        let mut desc = self
            .macro_
            .build(
                "xnas_search",
                ctx.input(),
                ctx.num_classes,
                &CellFill::Search { candidates: &self.candidates, mixer: &mixer },
            )
            .map_err(|e| anyhow::anyhow!("xnas config `macro`: {e}"))?;
        let mut probes = Vec::new();
        for a in &mut desc.arch_params {
            a.init = ParamInit::Const(0.0);
            a.trainable = false;
            let mut probe = a.clone();
            probe.name = probe_name(&a.name);
            probe.shape.insert(0, ctx.val_batch_size.max(1) as i64);
            probe.trainable = true;
            probes.push(probe);
        }
        desc.arch_params.extend(probes);
        Ok(desc)
    }
}

/// η and T of one cell type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Learning rate of the exponentiated-gradient update.
    pub eta: f64,
    /// T: the updates of the whole search, counted per cell (as t is).
    pub horizon: u64,
    /// Cells of the type: how far t moves per update.
    pub cells: u64,
}

impl Schedule {
    /// η = √(2 ln N / (T·L²)) for `updates` updates of `cells` cells each.
    pub fn new(candidates: usize, reward_bound: f64, updates: u64, cells: u64) -> Self {
        let horizon = (updates * cells).max(1);
        let eta = (2.0 * (candidates as f64).ln() / (horizon as f64 * reward_bound * reward_bound)).sqrt();
        Self { eta, horizon, cells }
    }

    /// The log-weight under which an expert is removed after update number `t`: θ_t relative to
    /// the best expert (whose log-weight is 0 after renormalising).
    pub fn threshold(&self, t: u64, reward_bound: f64) -> f64 {
        -2.0 * self.eta * reward_bound * self.horizon.saturating_sub(t) as f64
    }
}

/// One exponentiated-gradient update of a group's log-weights in place: α += η·clip(r, ±bound),
/// renormalised so each row's best expert has log-weight 0 (the mixing weights softmax(α) do not
/// change by that). Removed experts stay removed (their reward is 0 and they stay far below).
pub fn update(alpha: &Tensor, reward: &Tensor, eta: f64, bound: f64) -> anyhow::Result<()> {
    let _guard = no_grad_guard();
    let step = reward.f_clamp(-bound, bound)?.f_mul_scalar(eta)?;
    let mut a = alpha.shallow_clone();
    let _ = a.f_add_(&step)?;
    let max = a.f_amax([-1i64].as_slice(), true)?;
    let _ = a.f_sub_(&max)?;
    let _ = a.f_clamp_min_(WIPED)?;
    Ok(())
}

/// Removes (sets to [`WIPED`]) every expert whose log-weight is below `threshold` (≤ 0, relative
/// to each row's best at 0); returns how many were removed now. The best expert of a row is at 0
/// and never below a threshold ≤ 0, so every row keeps at least one expert.
pub fn wipe_out(alpha: &Tensor, threshold: f64) -> anyhow::Result<i64> {
    let _guard = no_grad_guard();
    let threshold = threshold.min(0.0);
    let fresh = alpha.f_lt(threshold)?.f_logical_and(&alpha.f_gt(WIPED / 2.0)?)?;
    let removed = fresh.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    let _ = alpha.shallow_clone().f_masked_fill_(&fresh, WIPED)?;
    Ok(removed)
}

/// Experts removed so far in a group.
pub fn wiped_count(alpha: &Tensor) -> anyhow::Result<i64> {
    Ok(alpha.f_le(WIPED / 2.0)?.f_sum(Kind::Int64)?.f_int64_value(&[])?)
}

/// The `xnas` algorithm.
pub struct Xnas {
    pub config: XnasConfig,
    layout: Option<ModelDesc>,
    schedules: Option<[Schedule; 2]>,
    /// Updates so far per cell type, counted per cell.
    t: [u64; 2],
}

impl Xnas {
    pub fn new(config: XnasConfig) -> Self {
        Self { config, layout: None, schedules: None, t: [0, 0] }
    }

    fn schedules(&self) -> anyhow::Result<[Schedule; 2]> {
        self.schedules.ok_or_else(|| anyhow::anyhow!("xnas: a step before search_space"))
    }
}

impl Algorithm for Xnas {
    fn search_space(&mut self, ctx: &SearchContext) -> anyhow::Result<SearchPlan> {
        anyhow::ensure!(
            ctx.val_batch_size > 0,
            "xnas rewards its experts on validation examples: set nas.search.val_ratio above 0"
        );
        let desc = self.config.build(ctx)?;
        let updates = ctx.val_batch_size * ctx.steps_per_epoch * ctx.epochs as u64;
        let cells = |reduction: bool| desc.cells.iter().filter(|c| c.reduction == reduction).count() as u64;
        let n = self.config.candidates.len();
        let l = self.config.reward_bound;
        self.schedules = Some([Schedule::new(n, l, updates, cells(false)), Schedule::new(n, l, updates, cells(true))]);
        self.layout = Some(desc.clone());
        Ok(SearchPlan { desc, arch_training: ArchTraining::Bilevel })
    }

    fn before_step(&mut self, model: &mut Model<'_, '_>, batch: &StepData) -> anyhow::Result<Value> {
        anyhow::ensure!(
            batch.val_x.defined() && batch.val_y.defined(),
            "xnas needs a validation batch, the host passed none (is nas.search.val_ratio above 0?)"
        );
        let schedules = self.schedules()?;
        let alphas = GROUPS.map(|g| model.arch_param(&format!("alphas.{g}")));
        let probes = GROUPS.map(|g| model.arch_param(&format!("xnas.probe.{g}")));
        let alphas: Vec<Tensor> = alphas.into_iter().collect::<anyhow::Result<_>>()?;
        let probes: Vec<Tensor> = probes.into_iter().collect::<anyhow::Result<_>>()?;
        let n = batch.val_x.size()[0];
        let rows = probes[0].size()[0];
        anyhow::ensure!(
            n <= rows,
            "xnas: a validation batch of {n} examples, but the probes were sized for {rows} (the search context's val_batch_size)"
        );
        let l = self.config.reward_bound;
        // One backward of the batch's mean loss: row j of a probe's gradient is example j's
        // (negative) rewards divided by n.
        let loss = model.loss(&batch.val_x, &batch.val_y)?;
        let grads = grad_of(&loss, &probes)?;
        let (mut reward_abs, mut removed) = (0.0, 0i64);
        for (i, s) in schedules.iter().enumerate() {
            let rewards = grads[i].f_narrow(0, 0, n)?.f_mul_scalar(-(n as f64))?;
            reward_abs += rewards.f_abs()?.f_mean(Kind::Float)?.f_double_value(&[])?;
            for j in 0..n {
                update(&alphas[i], &rewards.f_get(j)?, s.eta, l * s.cells as f64)?;
                self.t[i] += s.cells;
                if self.config.wipe_out {
                    removed += wipe_out(&alphas[i], s.threshold(self.t[i], l))?;
                }
            }
        }
        Ok(json!({
            "arch_loss": loss.f_double_value(&[])?,
            "reward_abs_mean": reward_abs / 2.0,
            "experts_removed": removed,
        }))
    }

    fn after_epoch(&mut self, model: &mut Model<'_, '_>, _epoch: u32) -> anyhow::Result<Value> {
        let mut report = alpha_report(&model.arch_params(), self.layout.as_ref())?;
        let schedules = self.schedules()?;
        for (i, g) in GROUPS.iter().enumerate() {
            let alpha = model.arch_param(&format!("alphas.{g}"))?;
            report[format!("experts_removed_{g}")] = json!(wiped_count(&alpha)?);
            report[format!("eta_{g}")] = json!(schedules[i].eta);
            report[format!("t_{g}")] = json!(self.t[i]);
            report[format!("horizon_{g}")] = json!(schedules[i].horizon);
        }
        Ok(report)
    }

    fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        Ok(vec![("xnas.t".into(), Tensor::from_slice(&[self.t[0] as i64, self.t[1] as i64]))])
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        let (_, t) = state
            .into_iter()
            .find(|(n, _)| n == "xnas.t")
            .ok_or_else(|| anyhow::anyhow!("the checkpoint holds no `xnas.t` (update counters)"))?;
        let t: Vec<i64> = Vec::try_from(t.f_to_device(Device::Cpu)?)?;
        anyhow::ensure!(t.len() == 2, "`xnas.t` must hold 2 counters, it holds {}", t.len());
        self.t = [t[0] as u64, t[1] as u64];
        Ok(())
    }
}

fn create_xnas(config: &Value) -> anyhow::Result<Box<dyn Algorithm>> {
    Ok(Box::new(Xnas::new(XnasConfig::from_json(config)?)))
}

register_mixer!(
    "xnas",
    "XNAS: candidates weighted by v/sum(v), v = exp(alpha[row]) (expert weights), removed experts skipped; \
     params alpha, row (the probe xnas.probe.<group> reads the rewards)",
    create_mixer
);
register_algorithm!(
    "xnas",
    "XNAS: expert advice per edge, exponentiated-gradient updates from per-example validation rewards, wipe-out",
    create_xnas
);

#[cfg(test)]
mod tests {
    use super::*;
    use archai_plugin_api::kit::seeded;

    /// Row j of the probe's gradient is −(reward) of each candidate on example j:
    /// ⟨∂ℓ/∂p_j, o_i(x_j)⟩ computed by hand from the gradient at the edge output.
    #[test]
    fn probe_gradients_are_the_per_example_rewards_computed_by_hand() {
        let x = seeded::normal(&[3, 2, 4, 4], 1);
        let pooled = x.f_max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false).unwrap();
        let outputs = vec![(0i64, x.f_mul_scalar(2.0).unwrap()), (2, x.sin()), (3, pooled)];
        let w = Tensor::from_slice(&[0.3f32, -0.2, 0.9, 0.1]).softmax(-1, Kind::Float);
        // A probe sized for a larger batch: the first 3 rows are used.
        let probe = Tensor::zeros([5, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let coef = probed_weights(&w, &probe.narrow(0, 0, 3)).unwrap();
        let target = seeded::normal(&[3, 2, 4, 4], 2);
        // A loss that couples nothing across examples: the sum of per-example losses.
        let loss_of = |p: &Tensor| (p - &target).square().sum(Kind::Float) * 0.5 + p.tanh().sum(Kind::Float);
        let p = mix_per_example(&outputs, &coef).unwrap();
        let plain: Tensor = outputs.iter().map(|(i, o)| o * w.get(*i)).sum();
        assert!(p.allclose(&plain, 1e-6, 1e-6, false), "the probe changes the forward value");
        let g_probe = grad_of(&loss_of(&p), &[probe]).unwrap().remove(0);
        let p_leaf = plain.detach().set_requires_grad(true);
        let g_p = grad_of(&loss_of(&p_leaf), &[p_leaf.shallow_clone()]).unwrap().remove(0);
        for j in 0..3 {
            for (i, o) in &outputs {
                let reward = -(g_p.get(j) * o.get(j)).sum(Kind::Double).double_value(&[]);
                let from_probe = -g_probe.double_value(&[j, *i]);
                assert!(
                    (reward - from_probe).abs() < 1e-4 * reward.abs().max(1.0),
                    "example {j}, candidate {i}: {reward} vs {from_probe}"
                );
            }
            // `none` (column 1) and the unused rows get no reward.
            assert_eq!(g_probe.double_value(&[j, 1]), 0.0);
        }
        assert_eq!(g_probe.narrow(0, 3, 2).abs().sum(Kind::Double).double_value(&[]), 0.0);
    }

    /// Why the rewards come from one batch backward and not one example at a time: batch
    /// normalization in training mode over a single example centres every channel over its
    /// positions, so after global average pooling the classifier sees zeros, whatever the input.
    #[test]
    fn one_example_through_training_mode_batch_norm_pools_to_zero() {
        let x = seeded::normal(&[1, 4, 6, 6], 7).f_mul_scalar(3.0).unwrap().f_add_scalar(5.0).unwrap();
        let normalized =
            x.batch_norm(None::<Tensor>, None::<Tensor>, None::<Tensor>, None::<Tensor>, true, 0.1, 1e-5, false);
        let pooled = normalized.adaptive_avg_pool2d([1, 1]);
        assert!(pooled.abs().max().double_value(&[]) < 1e-5, "{pooled}");
        // With a batch of examples, each example's pooled features survive.
        let batch = seeded::normal(&[4, 4, 6, 6], 8)
            .f_add(&seeded::normal(&[4, 4, 1, 1], 9).f_mul_scalar(2.0).unwrap())
            .unwrap();
        let normalized =
            batch.batch_norm(None::<Tensor>, None::<Tensor>, None::<Tensor>, None::<Tensor>, true, 0.1, 1e-5, false);
        assert!(normalized.adaptive_avg_pool2d([1, 1]).abs().max().double_value(&[]) > 0.1);
    }

    #[test]
    fn updates_are_multiplicative_and_renormalised() {
        let alpha = Tensor::from_slice(&[0.0f64, 0.0, 0.0]).view([1, 3]);
        let reward = Tensor::from_slice(&[1.0f64, -2.0, 5.0]).view([1, 3]);
        update(&alpha, &reward, 0.5, 3.0).unwrap();
        // v ∝ exp(0.5·clip(r, ±3)) = exp([0.5, -1.0, 1.5]); the best renormalised to log-weight 0.
        let got: Vec<f64> = Vec::try_from(alpha.view([3])).unwrap();
        for (g, want) in got.iter().zip([-1.0, -2.5, 0.0]) {
            assert!((g - want).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn wipe_out_removes_exactly_the_experts_under_the_threshold_and_never_the_last() {
        let alpha = Tensor::from_slice(&[0.0f64, -1.0, -2.5, -0.4, WIPED, -7.0]).view([2, 3]);
        assert_eq!(wipe_out(&alpha, -2.0).unwrap(), 2);
        let got: Vec<f64> = Vec::try_from(alpha.view([6])).unwrap();
        assert_eq!(got, vec![0.0, -1.0, WIPED, -0.4, WIPED, WIPED]);
        // A threshold past the horizon keeps each row's best (log-weight 0) and nothing else.
        let ties = Tensor::from_slice(&[0.0f64, 0.0, -1e-9]).view([1, 3]);
        assert_eq!(wipe_out(&ties, 5.0).unwrap(), 1);
        assert_eq!(wiped_count(&ties).unwrap(), 1);
        let mixing: Vec<f64> = Vec::try_from(ties.view([3]).softmax(-1, Kind::Double)).unwrap();
        assert_eq!(mixing, vec![0.5, 0.5, 0.0]);
    }

    #[test]
    fn the_schedule_follows_the_papers_formula() {
        let s = Schedule::new(8, 1.0, 1000, 6);
        assert_eq!(s.horizon, 6000);
        assert!((s.eta - (2.0 * 8f64.ln() / 6000.0).sqrt()).abs() < 1e-15);
        assert!((s.threshold(1000, 1.0) - (-2.0 * s.eta * 5000.0)).abs() < 1e-9);
        assert_eq!(s.threshold(7000, 1.0), 0.0);
    }

    #[test]
    fn configs_are_checked() {
        assert!(XnasConfig::from_json(&json!({"reward_bound": 0})).is_err());
        assert!(XnasConfig::from_json(&json!({"wipeout": true})).unwrap_err().to_string().contains("wipeout"));
        let c = XnasConfig::from_json(&Value::Null).unwrap();
        assert_eq!((c.reward_bound, c.wipe_out), (1.0, true));
    }
}
