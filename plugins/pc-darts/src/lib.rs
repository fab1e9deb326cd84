//! PC-DARTS (Xu et al., "PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture
//! Search", ICLR 2020) as an archai plugin: the algorithm `pc-darts`, the mixer
//! `partial-channel`, the node op `edge-softmax-sum` and the finalizer `pc-darts-topk`.
//!
//! # Mixer `partial-channel`
//!
//! For an edge whose input x has C channels: the candidates are built with C/K channels and run
//! on x[:, :C/K] only (`none` is skipped: it contributes zero); their softmax(α[row])-weighted sum
//! is concatenated with the bypassed x[:, C/K:] (2x2 max-pooled, ceil mode, on stride-2 edges so
//! that it matches the candidates' output size) and the result is channel-shuffled with K
//! groups, so the edge outputs C channels and the next edge sees a different C/K slice. Params:
//! `alpha`, `row`, `k`.
//!
//! # Op `edge-softmax-sum` (edge normalization)
//!
//! A node's combine op: x_j = Σ_i softmax(β[offset .. offset + n])_i · f_i, over its n incoming
//! edges in order. Params: `beta` (a 1-D architecture parameter, one entry per mixed edge of a
//! cell type), `offset` (the row of the node's first edge).
//!
//! # Algorithm `pc-darts`
//!
//! The DARTS cell space with `partial-channel` mixers and edge normalization: trainable
//! `alphas.normal`/`alphas.reduce` and `betas.normal`/`betas.reduce` (N(0, 1e-3)). Bilevel, first
//! order, Adam on α and β; **no architecture step before epoch `warmup_epochs`** (logged per step
//! as `arch_step` 0 or 1, so the epoch mean is the fraction of steps that updated). Paper
//! defaults below (batch 256, SGD 0.1 cosine to 0.001 live in the trainer section):
//!
//! ```yaml
//! macro: {layers: 8, nodes: 4, channels: 16, stem_multiplier: 3}
//! candidates: [none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5]
//! k: 4
//! warmup_epochs: 15
//! arch_lr: 6.0e-4
//! arch_betas: [0.5, 0.999]
//! arch_weight_decay: 1.0e-3
//! ```
//!
//! # Finalizer `pc-darts-topk`
//!
//! Edge scores W_{e,o} = softmax(α_e)_o · softmax(β over the edge's node)_e; per node the `k`
//! edges with the largest non-`none` score are kept, each as its argmax op. Config as
//! `darts-topk`: `{k: 2, layers, channels, auxiliary, stem_stride}`.
#![allow(non_local_definitions)]

use archai_plugin_api::kit::adam::Adam;
use archai_plugin_api::kit::arch::first_order_step;
use archai_plugin_api::kit::config::{check_candidates, check_range, darts_primitives, parse};
use archai_plugin_api::kit::genotype::{
    alpha_report, cell_genotype, cell_types, edge_softmax, named_rows, rebuild, rows_of, softmax, Genotype, TopkConfig,
};
use archai_plugin_api::kit::mixer::{alpha_row, candidates, weighted_sum};
use archai_plugin_api::model_desc::{
    ArchParamDesc, CellDesc, CellFill, DartsMacro, MixerDesc, ModelDesc, OpDesc, ParamInit,
};
use archai_plugin_api::tch::{Kind, Tensor};
use archai_plugin_api::{
    export_plugin, register_algorithm, register_finalizer, register_mixer, register_op, Algorithm, ArchTraining,
    Finalizer, HostOp, MixerConfig, Model, Op, ParamBuilder, SearchContext, SearchPlan, StepData,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

export_plugin!();

/// The `partial-channel` mixer.
pub struct PartialChannel {
    alpha: Tensor,
    row: i64,
    k: i64,
    stride: i64,
    ops: Vec<(i64, HostOp)>,
}

impl PartialChannel {
    pub fn new(config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<Self> {
        let (alpha, row) = alpha_row("partial-channel", config, p)?;
        let k: i64 = config.param_or("partial-channel", "k", 4)?;
        let c = config.candidate_params.get("c_in").and_then(Value::as_i64).unwrap_or(0);
        anyhow::ensure!(
            k >= 1 && c > 0 && c % k == 0,
            "mixer `partial-channel`: the edge's c_in ({c}) must be a positive multiple of k ({k})"
        );
        anyhow::ensure!(
            !config.candidate_params.contains_key("c_out"),
            "mixer `partial-channel`: candidates must keep their channels (no c_out)"
        );
        let stride = config.candidate_params.get("stride").and_then(Value::as_i64).unwrap_or(1);
        let mut params = config.candidate_params.clone();
        params.insert("c_in".into(), (c / k).into());
        let ops = candidates("partial-channel", config, p, &Value::Object(params), true)?;
        Ok(Self { alpha, row, k, stride, ops })
    }
}

/// Interleaves `groups` channel groups: (N, g, C/g, H, W) -> transpose -> (N, C, H, W).
pub fn channel_shuffle(x: &Tensor, groups: i64) -> anyhow::Result<Tensor> {
    let s = x.size();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    Ok(x.f_view([n, groups, c / groups, h, w])?.f_transpose(1, 2)?.f_contiguous()?.f_view([n, c, h, w])?)
}

impl Op for PartialChannel {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let x = &inputs[0];
        let c = x.size()[1];
        let part = c / self.k;
        // The candidates run on a compact NCHW copy of their C/K channels, whatever the host's
        // layout: channels-last kernels vectorize over channels, and C/K = 4 leaves their SIMD
        // lanes mostly empty (measured: 4.4 s per search step with the channels-last view, 3.5 s
        // with this copy; scripts/bench-search.sh 32 2 5 pc-darts).
        let xa = x.f_narrow(1, 0, part)?.f_contiguous()?;
        let xb = x.f_narrow(1, part, c - part)?;
        let w = self.alpha.f_get(self.row)?.f_softmax(-1, Kind::Float)?;
        let mixed = weighted_sum(&self.ops, &xa, &w, train)?;
        let bypass = if self.stride == 2 { xb.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true)? } else { xb };
        let bypass = bypass.f_to_kind(mixed.kind())?;
        let out = Tensor::f_cat(&[mixed, bypass], 1)?;
        channel_shuffle(&out, self.k)
    }
}

/// The `edge-softmax-sum` node op.
pub struct EdgeSoftmaxSum {
    beta: Tensor,
    offset: i64,
}

impl Op for EdgeSoftmaxSum {
    fn forward(&self, inputs: &[Tensor], _train: bool) -> anyhow::Result<Tensor> {
        let n = inputs.len() as i64;
        anyhow::ensure!(
            self.offset + n <= self.beta.size()[0],
            "edge-softmax-sum: {n} edges from offset {} but beta has {} entries",
            self.offset,
            self.beta.size()[0]
        );
        let w = self.beta.f_narrow(0, self.offset, n)?.f_softmax(-1, Kind::Float)?;
        let mut out: Option<Tensor> = None;
        for (i, x) in inputs.iter().enumerate() {
            let y = x.f_mul(&w.f_get(i as i64)?)?;
            out = Some(match out {
                Some(o) => o.f_add(&y)?,
                None => y,
            });
        }
        out.ok_or_else(|| anyhow::anyhow!("edge-softmax-sum: a node without edges"))
    }
}

fn create_edge_softmax_sum(config: &Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let name = config["beta"].as_str().ok_or_else(|| anyhow::anyhow!("edge-softmax-sum needs `beta: <arch param>`"))?;
    let offset = config["offset"].as_i64().ok_or_else(|| anyhow::anyhow!("edge-softmax-sum needs `offset: <int>`"))?;
    let beta = p.arch_param(name)?;
    anyhow::ensure!(beta.dim() == 1, "edge-softmax-sum: `{name}` must be 1-D, it has shape {:?}", beta.size());
    Ok(Box::new(EdgeSoftmaxSum { beta, offset }))
}

/// Configuration of the `pc-darts` algorithm.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PcDartsConfig {
    #[serde(rename = "macro")]
    pub macro_: DartsMacro,
    pub candidates: Vec<String>,
    pub k: i64,
    pub warmup_epochs: u32,
    pub arch_lr: f64,
    pub arch_betas: [f64; 2],
    pub arch_weight_decay: f64,
}

impl Default for PcDartsConfig {
    fn default() -> Self {
        Self {
            macro_: DartsMacro::default(),
            candidates: darts_primitives(),
            k: 4,
            warmup_epochs: 15,
            arch_lr: 6e-4,
            arch_betas: [0.5, 0.999],
            arch_weight_decay: 1e-3,
        }
    }
}

impl PcDartsConfig {
    pub fn from_json(v: &Value) -> anyhow::Result<Self> {
        let c: Self = parse(v, "pc-darts")?;
        check_candidates(&c.candidates, "pc-darts")?;
        anyhow::ensure!(c.k >= 1, "pc-darts config: `k` must be at least 1, got {}", c.k);
        anyhow::ensure!(
            c.macro_.channels % c.k == 0,
            "pc-darts config: macro.channels ({}) must be a multiple of k ({})",
            c.macro_.channels,
            c.k
        );
        check_range(c.arch_lr, 0.0, f64::MAX, "arch_lr", "pc-darts")?;
        check_range(c.arch_weight_decay, 0.0, f64::MAX, "arch_weight_decay", "pc-darts")?;
        for b in c.arch_betas {
            check_range(b, 0.0, 0.999_999, "arch_betas", "pc-darts")?;
        }
        Ok(c)
    }

    /// The search description: partial-channel mixers, edge-normalized nodes, α and β.
    pub fn build(&self, ctx: &SearchContext) -> anyhow::Result<ModelDesc> {
        let mut params = serde_json::Map::new();
        params.insert("k".into(), self.k.into());
        let mixer = MixerDesc { name: "partial-channel".into(), params };
        let mut desc = self
            .macro_
            .build(
                "pc_darts_search",
                ctx.input(),
                ctx.num_classes,
                &CellFill::Search { candidates: &self.candidates, mixer: &mixer },
            )
            .map_err(|e| anyhow::anyhow!("pc-darts config `macro`: {e}"))?;
        let mut rows = 0;
        for cell in &mut desc.cells {
            let beta = if cell.reduction { "betas.reduce" } else { "betas.normal" };
            let mut offset = 0;
            for node in &mut cell.nodes {
                let mut p = serde_json::Map::new();
                p.insert("beta".into(), beta.into());
                p.insert("offset".into(), offset.into());
                node.combine = Some(OpDesc { op: "edge-softmax-sum".into(), params: p });
                offset += node.edges.len();
            }
            rows = offset;
        }
        for name in ["betas.normal", "betas.reduce"] {
            desc.arch_params.push(ArchParamDesc {
                name: name.into(),
                shape: vec![rows as i64],
                init: ParamInit::Normal { mean: 0.0, std: 1e-3 },
                trainable: true,
                joint: false,
                l1: 0.0,
            });
        }
        Ok(desc)
    }
}

/// The `pc-darts` algorithm.
pub struct PcDarts {
    pub config: PcDartsConfig,
    adam: Adam,
    layout: Option<ModelDesc>,
}

impl Algorithm for PcDarts {
    fn search_space(&mut self, ctx: &SearchContext) -> anyhow::Result<SearchPlan> {
        let desc = self.config.build(ctx)?;
        self.layout = Some(desc.clone());
        Ok(SearchPlan { desc, arch_training: ArchTraining::Bilevel })
    }

    /// DARTS' alpha report, with the genotype `pc-darts-topk` would pick now (α and β) and the
    /// softmax of each node's β.
    fn after_epoch(&mut self, model: &mut Model<'_, '_>, _epoch: u32) -> anyhow::Result<Value> {
        let arch = model.arch_params();
        let mut report = alpha_report(&arch, None)?;
        let rows = named_rows(&arch);
        if let Some(layout) = &self.layout {
            let mut genotypes = serde_json::Map::new();
            for (kind, reduction) in [("normal", false), ("reduce", true)] {
                if let Some(cell) = layout.cells.iter().find(|c| c.reduction == reduction) {
                    let g = match cell_scores(cell, 2, &rows) {
                        Ok(g) => json!(g),
                        Err(e) => json!(format!("unavailable: {e}")),
                    };
                    genotypes.insert(kind.into(), g);
                }
            }
            report["genotype"] = Value::Object(genotypes);
        }
        for (name, r) in rows.iter().filter(|(n, _)| n.starts_with("betas.")) {
            report[name.as_str()] = json!(r.first().map(|b| softmax(b)));
        }
        Ok(report)
    }

    fn before_step(&mut self, model: &mut Model<'_, '_>, batch: &StepData) -> anyhow::Result<Value> {
        if batch.epoch < self.config.warmup_epochs {
            return Ok(json!({ "arch_step": 0.0 }));
        }
        let loss = first_order_step(model, batch, &mut self.adam)?;
        Ok(json!({ "arch_step": 1.0, "arch_loss": loss }))
    }

    fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        self.adam.state()
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        self.adam.load_state(state)
    }
}

fn create_pc_darts(config: &Value) -> anyhow::Result<Box<dyn Algorithm>> {
    let config = PcDartsConfig::from_json(config)?;
    let adam = Adam::new(config.arch_lr, config.arch_betas, 1e-8, config.arch_weight_decay);
    Ok(Box::new(PcDarts { config, adam, layout: None }))
}

/// The edge scores of one cell: softmax(α_e) scaled by the node's softmax(β) share of edge e.
pub fn cell_scores(cell: &CellDesc, k: usize, arch: &[(String, Vec<Vec<f64>>)]) -> anyhow::Result<Genotype> {
    let shares = edge_shares(cell, arch)?;
    cell_genotype(cell, k, |ni, ei, e| Ok(edge_softmax(arch, e)?.iter().map(|p| p * shares[ni][ei]).collect()))
}

/// Per node, softmax(β) over its edges (PC-DARTS' edge normalization).
fn edge_shares(cell: &CellDesc, arch: &[(String, Vec<Vec<f64>>)]) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut shares: Vec<Vec<f64>> = Vec::new();
    for (ni, node) in cell.nodes.iter().enumerate() {
        let combine = node.combine.as_ref().ok_or_else(|| {
            anyhow::anyhow!("node {} has no edge-normalization combine op; was the search run by pc-darts?", ni + 2)
        })?;
        let name = combine.params.get("beta").and_then(Value::as_str).unwrap_or_default();
        let offset = combine.params.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
        let beta = rows_of(arch, name)?.first().cloned().unwrap_or_default();
        let n = node.edges.len();
        anyhow::ensure!(
            offset + n <= beta.len(),
            "`{name}` has {} entries, node {} reads {offset}..{}",
            beta.len(),
            ni + 2,
            offset + n
        );
        shares.push(softmax(&beta[offset..offset + n]));
    }
    Ok(shares)
}

/// The `pc-darts-topk` finalizer.
pub struct PcTopk {
    pub config: TopkConfig,
}

/// The final network of a PC-DARTS search description with its α and β rows.
pub fn finalize(
    config: &TopkConfig,
    search: &ModelDesc,
    arch: &[(String, Vec<Vec<f64>>)],
) -> anyhow::Result<ModelDesc> {
    let (normal, reduce) = cell_types(search)?;
    let normal = cell_scores(normal, config.k, arch)?;
    let reduce = cell_scores(reduce, config.k, arch)?;
    rebuild(search, &normal, &reduce, &config.size())
}

impl Finalizer for PcTopk {
    fn finalize(&mut self, search: &ModelDesc, model: &mut Model<'_, '_>) -> anyhow::Result<ModelDesc> {
        let arch = named_rows(&model.arch_params());
        let report = archai_plugin_api::kit::decisive::decisiveness(
            search,
            &arch,
            self.config.k,
            self.config.undecided_entropy,
            |cell, ni, ei, e| {
                let share = edge_shares(cell, &arch)?[ni][ei];
                Ok(edge_softmax(&arch, e)?.iter().map(|p| p * share).collect())
            },
        )?;
        model.report_decisiveness(&report)?;
        finalize(&self.config, search, &arch)
    }
}

fn create_topk(config: &Value) -> anyhow::Result<Box<dyn Finalizer>> {
    Ok(Box::new(PcTopk { config: TopkConfig::from_json(config, "pc-darts-topk")? }))
}

fn create_mixer(config: &MixerConfig, params: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    Ok(Box::new(PartialChannel::new(config, params)?))
}

register_mixer!(
    "partial-channel",
    "PC-DARTS: candidates on C/K channels, softmax-weighted, bypass concatenated, channel shuffle; params alpha, row, k",
    create_mixer
);
register_op!(
    "edge-softmax-sum",
    "PC-DARTS edge normalization: a node's inputs weighted by softmax(beta[offset..offset+n]); params beta, offset",
    create_edge_softmax_sum,
    edge_softmax_sum_cost
);

/// One multiply-add per element of each of the `inputs` edge outputs.
fn edge_softmax_sum_cost(config: &Value, [c, h, w]: [i64; 3]) -> anyhow::Result<(i64, [i64; 3])> {
    let n = config["inputs"].as_i64().unwrap_or(1);
    Ok((n * c * h * w, [c, h, w]))
}
register_algorithm!(
    "pc-darts",
    "PC-DARTS: partial channels (K=4), edge normalization, first-order bilevel after a warm-up",
    create_pc_darts
);
register_finalizer!(
    "pc-darts-topk",
    "PC-DARTS discretization: per node the top-k edges by softmax(alpha) * softmax(beta)",
    create_topk
);

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> SearchContext {
        SearchContext {
            channels: 1,
            image_size: 28,
            num_classes: 10,
            seed: 0,
            epochs: 2,
            steps_per_epoch: 1,
            val_batch_size: 0,
        }
    }

    #[test]
    fn search_space_has_betas_and_normalized_nodes() {
        let c = PcDartsConfig::from_json(&json!({"macro": {"layers": 3, "nodes": 3, "channels": 8}})).unwrap();
        let d = c.build(&ctx()).unwrap();
        assert_eq!(d.arch_param("betas.normal").unwrap().shape, vec![9]);
        let offsets: Vec<u64> =
            d.cells[0].nodes.iter().map(|n| n.combine.as_ref().unwrap().params["offset"].as_u64().unwrap()).collect();
        assert_eq!(offsets, vec![0, 2, 5]);
        assert_eq!(d.cells[1].nodes[0].combine.as_ref().unwrap().params["beta"], "betas.reduce");
        assert!(PcDartsConfig::from_json(&json!({"macro": {"channels": 6}}))
            .unwrap_err()
            .to_string()
            .contains("multiple of k"));
    }

    #[test]
    fn channel_shuffle_interleaves_groups() {
        let x = Tensor::arange(8, (Kind::Float, archai_plugin_api::tch::Device::Cpu)).view([1, 8, 1, 1]);
        let y: Vec<f32> = Vec::try_from(channel_shuffle(&x, 4).unwrap().flatten(0, -1)).unwrap();
        assert_eq!(y, vec![0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]);
    }

    #[test]
    fn finalizer_weighs_edges_by_beta() {
        let c = PcDartsConfig::from_json(&json!({"macro": {"layers": 3, "nodes": 2, "channels": 8}})).unwrap();
        let d = c.build(&ctx()).unwrap();
        // Every alpha row prefers sep_conv_3x3 equally; node 3 (edges 2, 3, 4) has beta favouring
        // input 1, so k = 1 keeps that edge although plain DARTS would keep input 0 on the tie.
        let alphas: Vec<Vec<f64>> = (0..5).map(|_| vec![0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]).collect();
        let beta = vec![vec![0.0, 0.0, 0.0, 3.0, 0.0]];
        let arch = vec![
            ("alphas.normal".to_string(), alphas.clone()),
            ("alphas.reduce".to_string(), alphas),
            ("betas.normal".to_string(), beta.clone()),
            ("betas.reduce".to_string(), beta),
        ];
        let f = finalize(&TopkConfig { k: 1, ..TopkConfig::default() }, &d, &arch).unwrap();
        let node3: Vec<(String, usize)> = f.cells[0].nodes[1].edges.iter().map(|e| (e.op.clone(), e.input)).collect();
        assert_eq!(node3, vec![("sep_conv_3x3".to_string(), 1)]);
        assert!(f.cells.iter().all(|c| c.nodes.iter().all(|n| n.combine.is_none())) && f.arch_params.is_empty());
    }
}
