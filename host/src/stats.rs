//! Model statistics: parameters, analytical MACs/FLOPs per op, an activation-memory estimate and
//! measured forward latency, with a per-cell breakdown.
//!
//! MACs count multiply-accumulates of convolutions and linear layers (FLOPs = 2 x MACs), the usual
//! convention (thop, fvcore); batch norm, activations and pooling are not counted. Each op's
//! formula comes from its plugin registration; ops registered without one (e.g. from
//! third-party plugins) are listed in `ops_without_macs`.
use crate::model::{cell_preprocess, classifier_op, Network};
use crate::params::ParamStore;
use crate::plugins::{PluginError, PluginRegistry};
use archai_model_desc::{CellDesc, EdgeDesc, ModelDesc, OpDesc};
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Figures of one part of the network (the stem, a cell, the head).
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct PartStats {
    pub name: String,
    pub params: i64,
    pub macs: i64,
    /// fp32 bytes of the op outputs kept for backward, per sample.
    pub activation_bytes_per_sample: i64,
}

/// Everything `archai stats` prints.
#[derive(Serialize, Debug, Clone)]
pub struct ModelStats {
    pub name: String,
    pub batch: i64,
    pub input: [i64; 3],
    /// Weights of the inference network (the auxiliary head left out, as DARTS counts).
    pub params: i64,
    pub arch_params: i64,
    /// Weights of the auxiliary head (training only).
    pub aux_params: i64,
    /// Per sample.
    pub macs: i64,
    pub flops: i64,
    /// For the whole batch (fp32).
    pub activation_bytes: i64,
    /// Median forward latency of the batch in eval mode, milliseconds.
    pub latency_ms: f64,
    pub latency_runs: usize,
    pub threads: i32,
    /// Device the latency was measured on (`cpu`, `cuda:0 NVIDIA H200 (...)`).
    pub device: String,
    pub parts: Vec<PartStats>,
    pub ops_without_macs: Vec<String>,
}

/// Asks ops for their cost on a `[C, H, W]` input; ops without a formula are recorded in
/// `missing` and count as free, keeping the shape.
struct Coster<'r> {
    reg: &'r PluginRegistry,
    missing: Vec<String>,
}

impl Coster<'_> {
    fn cost(&mut self, op: &str, config: &serde_json::Value, input: [i64; 3]) -> Result<(i64, [i64; 3]), PluginError> {
        match self.reg.op_cost(op, config, input)? {
            Some(c) => Ok(c),
            None => {
                self.missing.push(op.to_string());
                Ok((0, input))
            }
        }
    }

    /// MACs and output elements of one edge (a mixed edge counts all its candidates: the
    /// supernet's cost, an upper bound for mixers that run fewer).
    fn edge(&mut self, e: &EdgeDesc, input: [i64; 3]) -> Result<(i64, i64), PluginError> {
        let names: Vec<&str> =
            if e.is_mixed() { e.candidates.iter().map(String::as_str).collect() } else { vec![e.op.as_str()] };
        let config = serde_json::Value::Object(e.params.clone());
        let (mut macs, mut acts) = (0, 0);
        for name in names {
            let (m, [c, h, w]) = self.cost(name, &config, input)?;
            macs += m;
            acts += c * h * w;
        }
        Ok((macs, acts))
    }

    /// `side` is the spatial size of the cell's second input (the previous cell's output); the
    /// first input is twice as large after a reduction.
    fn cell(&mut self, cell: &CellDesc, side: i64) -> Result<(i64, i64, i64), PluginError> {
        let [(op0, c0), (op1, c1)] = cell_preprocess(cell);
        let side0 = if cell.reduction_prev { 2 * side } else { side };
        let (m0, [_, h0, w0]) = self.cost(op0, &c0, [cell.c_prev_prev, side0, side0])?;
        let (m1, [_, h1, w1]) = self.cost(op1, &c1, [cell.c_prev, side, side])?;
        let mut macs = m0 + m1;
        let mut acts = cell.c * (h0 * w0 + h1 * w1);
        let side_out = if cell.reduction { (side + 1) / 2 } else { side };
        for node in &cell.nodes {
            for e in &node.edges {
                // Edges from the cell inputs carry a reduction's stride; node-to-node edges run
                // on the reduced size.
                let in_side = if e.input < 2 { side } else { side_out };
                let (m, a) = self.edge(e, [cell.c, in_side, in_side])?;
                macs += m;
                acts += a;
            }
            if let Some(OpDesc { op, params }) = &node.combine {
                // A multi-input op's cost formula gets one edge's shape and, in `inputs`, how
                // many edges it combines.
                let mut config = params.clone();
                config.insert("inputs".into(), node.edges.len().into());
                let (m, [c, h, w]) = self.cost(op, &serde_json::Value::Object(config), [cell.c, side_out, side_out])?;
                macs += m;
                acts += c * h * w;
            }
        }
        if let Some(OpDesc { op, params }) = &cell.post {
            let input = [cell.concat_channels(), side_out, side_out];
            let (m, [c, h, w]) = self.cost(op, &serde_json::Value::Object(params.clone()), input)?;
            macs += m;
            acts += c * h * w;
        }
        acts += cell.concat_channels() * side_out * side_out;
        Ok((macs, acts, side_out))
    }
}

/// Analytical figures of a description (no network needed): per-part MACs and activations, each
/// op's cost from its registration (ops without a cost formula are listed and count 0).
pub fn analyze(desc: &ModelDesc, reg: &PluginRegistry) -> Result<(Vec<PartStats>, Vec<String>), PluginError> {
    let mut coster = Coster { reg, missing: Vec::new() };
    let mut parts = Vec::new();
    let mut shape = [desc.input.channels, desc.input.size, desc.input.size];
    let mut stem = PartStats { name: "stem".into(), ..Default::default() };
    for OpDesc { op, params } in &desc.stem {
        let (m, out) = coster.cost(op, &serde_json::Value::Object(params.clone()), shape)?;
        stem.macs += m;
        stem.activation_bytes_per_sample += 4 * out.iter().product::<i64>();
        shape = out;
    }
    parts.push(stem);
    let mut side = shape[1];
    for (i, cell) in desc.cells.iter().enumerate() {
        let (m, a, s) = coster.cell(cell, side)?;
        parts.push(PartStats { name: format!("cells.{i}"), params: 0, macs: m, activation_bytes_per_sample: 4 * a });
        side = s;
    }
    let (head_op, head_config) = classifier_op(desc);
    let (m, out) = coster.cost(head_op, &head_config, [desc.head.c_in, 1, 1])?;
    parts.push(PartStats {
        name: "classifier".into(),
        params: 0,
        macs: m,
        activation_bytes_per_sample: 4 * (desc.head.c_in + out[0]),
    });
    let mut missing = coster.missing;
    missing.sort();
    missing.dedup();
    Ok((parts, missing))
}

/// Weights of the auxiliary head (training only; left out of `params`, as DARTS counts).
pub fn aux_param_count(store: &ParamStore) -> i64 {
    let prefix = format!("{}.", crate::model::AUX_SCOPE);
    store.named_weights().iter().filter(|(n, _)| n.starts_with(&prefix)).map(|(_, t)| t.numel() as i64).sum()
}

/// Compiles nothing itself: takes a compiled network and its store, measures latency.
pub fn model_stats(
    desc: &ModelDesc,
    reg: &PluginRegistry,
    net: &Network,
    store: &ParamStore,
    batch: i64,
    runs: usize,
    device: Device,
) -> Result<ModelStats, PluginError> {
    let (mut parts, missing) = analyze(desc, reg)?;
    for part in &mut parts {
        let prefix = format!("{}.", part.name);
        part.params =
            store.named_weights().iter().filter(|(n, _)| n.starts_with(&prefix)).map(|(_, t)| t.numel() as i64).sum();
    }
    let input = [desc.input.channels, desc.input.size, desc.input.size];
    let x = Tensor::randn([batch, input[0], input[1], input[2]], (Kind::Float, device));
    let _guard = tch::no_grad_guard();
    let mut times = Vec::new();
    for i in 0..runs + 2 {
        // On CUDA the forward only queues kernels: wait for the queue before and after.
        crate::cuda::synchronize(device);
        let t0 = Instant::now();
        let y = net.forward(&x, false).expect("forward of a compiled model");
        crate::cuda::synchronize(device);
        let _ = y.sum(Kind::Float).double_value(&[]);
        if i >= 2 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let aux_params = aux_param_count(store);
    let macs: i64 = parts.iter().map(|p| p.macs).sum();
    Ok(ModelStats {
        name: desc.name.clone(),
        batch,
        input,
        params: store.weight_count() - aux_params,
        arch_params: store.arch_count(),
        aux_params,
        macs,
        flops: 2 * macs,
        activation_bytes: batch * parts.iter().map(|p| p.activation_bytes_per_sample).sum::<i64>(),
        latency_ms: times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        latency_runs: times.len(),
        threads: tch::get_num_threads(),
        device: crate::cuda::describe(device, &crate::cuda::environment()),
        parts,
        ops_without_macs: missing,
    })
}
