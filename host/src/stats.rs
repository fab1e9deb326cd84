//! Model statistics: parameters, analytical MACs/FLOPs per op, an activation-memory estimate and
//! measured forward latency, with a per-cell breakdown.
//!
//! MACs count multiply-accumulates of convolutions and linear layers (FLOPs = 2 x MACs), the usual
//! convention (thop, fvcore); batch norm, activations and pooling are not counted. Ops without a
//! formula here (e.g. from third-party plugins) are listed in `ops_without_macs`.
use crate::model::Network;
use crate::params::ParamStore;
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
    pub parts: Vec<PartStats>,
    pub ops_without_macs: Vec<String>,
}

fn out_side(side: i64, stride: i64) -> i64 {
    (side + stride - 1) / stride
}

/// MACs and output elements (per sample) of one op on a `c_in x side x side` input.
/// Returns None for ops without a formula.
fn op_cost(
    op: &str,
    p: &serde_json::Map<String, serde_json::Value>,
    c_in: i64,
    side: i64,
) -> Option<(i64, i64, i64, i64)> {
    let get = |k: &str, d: i64| p.get(k).and_then(|v| v.as_i64()).unwrap_or(d);
    let stride = get("stride", 1);
    let c_out = get("c_out", c_in);
    let so = out_side(side, stride);
    let hw = so * so;
    let dw_pw = |k: i64, cin: i64, cout: i64, hw: i64| cin * k * k * hw + cin * cout * hw;
    let macs = match op {
        "none" | "max_pool_3x3" | "avg_pool_3x3" | "identity" => 0,
        "skip_connect" if stride == 1 => 0,
        "skip_connect" | "factorized_reduce" => 2 * c_in * (c_out / 2) * hw,
        "sep_conv_3x3" | "sep_conv_5x5" => {
            let k = if op == "sep_conv_3x3" { 3 } else { 5 };
            dw_pw(k, c_in, c_in, hw) + dw_pw(k, c_in, c_out, hw)
        }
        "dil_conv_3x3" => dw_pw(3, c_in, c_out, hw),
        "dil_conv_5x5" => dw_pw(5, c_in, c_out, hw),
        "relu_conv_bn" | "conv_bn" => {
            let k = get("kernel_size", 1);
            let pad = get("padding", k / 2);
            let s = (side + 2 * pad - k) / stride + 1;
            return Some((c_in * c_out * k * k * s * s, c_out * s * s, c_out, s));
        }
        "basic_block" => {
            let shortcut = if stride != 1 || c_out != c_in { c_in * c_out * hw } else { 0 };
            c_in * c_out * 9 * hw + c_out * c_out * 9 * hw + shortcut
        }
        "global_avg_pool" => return Some((0, c_in, c_in, 1)),
        _ => return None,
    };
    Some((macs, c_out * hw, c_out, so))
}

fn edge_cost(e: &EdgeDesc, c: i64, side: i64, missing: &mut Vec<String>) -> (i64, i64) {
    let names: Vec<&str> =
        if e.is_mixed() { e.candidates.iter().map(String::as_str).collect() } else { vec![e.op.as_str()] };
    let mut macs = 0;
    let mut acts = 0;
    for name in names {
        match op_cost(name, &e.params, c, side) {
            Some((m, a, _, _)) => {
                macs += m;
                acts += if name == "none" { 0 } else { a };
            }
            None => missing.push(name.to_string()),
        }
    }
    (macs, acts)
}

/// `side` is the spatial size of the cell's second input (the previous cell's output); the first
/// input is twice as large after a reduction, and is brought to `side` by a factorized reduce.
fn cell_cost(cell: &CellDesc, side: i64, missing: &mut Vec<String>) -> (i64, i64, i64) {
    let plane = cell.c * side * side;
    // pre0: factorized reduce (two 1x1 stride-2 convs to c/2 each) or a 1x1 conv; pre1: 1x1 conv.
    let pre0 =
        if cell.reduction_prev { 2 * cell.c_prev_prev * (cell.c / 2) * side * side } else { cell.c_prev_prev * plane };
    let mut macs = pre0 + cell.c_prev * plane;
    let mut acts = 2 * plane;
    let side_out = if cell.reduction { out_side(side, 2) } else { side };
    for node in &cell.nodes {
        for e in &node.edges {
            // Edges from the cell inputs carry a reduction's stride; node-to-node edges run on
            // the reduced size.
            let in_side = if e.input < 2 { side } else { side_out };
            let (m, a) = edge_cost(e, cell.c, in_side, missing);
            macs += m;
            acts += a;
        }
    }
    acts += cell.c_out() * side_out * side_out;
    (macs, acts, side_out)
}

/// Analytical figures of a description (no network needed): per-part MACs and activations.
pub fn analyze(desc: &ModelDesc) -> (Vec<PartStats>, Vec<String>) {
    let mut missing = Vec::new();
    let mut parts = Vec::new();
    let (mut c, mut side) = (desc.input.channels, desc.input.size);
    let mut stem = PartStats { name: "stem".into(), ..Default::default() };
    for OpDesc { op, params } in &desc.stem {
        match op_cost(op, params, c, side) {
            Some((m, a, c_out, s)) => {
                stem.macs += m;
                stem.activation_bytes_per_sample += 4 * a;
                c = c_out;
                side = s;
            }
            None => missing.push(op.clone()),
        }
    }
    parts.push(stem);
    for (i, cell) in desc.cells.iter().enumerate() {
        let (m, a, s) = cell_cost(cell, side, &mut missing);
        parts.push(PartStats { name: format!("cells.{i}"), params: 0, macs: m, activation_bytes_per_sample: 4 * a });
        side = s;
    }
    parts.push(PartStats {
        name: "classifier".into(),
        params: 0,
        macs: desc.head.c_in * desc.num_classes,
        activation_bytes_per_sample: 4 * (desc.head.c_in + desc.num_classes),
    });
    missing.sort();
    missing.dedup();
    (parts, missing)
}

/// Weights of the auxiliary head (training only; left out of `params`, as DARTS counts).
pub fn aux_param_count(store: &ParamStore) -> i64 {
    let prefix = format!("{}.", crate::model::AUX_SCOPE);
    store.named_weights().iter().filter(|(n, _)| n.starts_with(&prefix)).map(|(_, t)| t.numel() as i64).sum()
}

/// Compiles nothing itself: takes a compiled network and its store, measures latency.
pub fn model_stats(
    desc: &ModelDesc,
    net: &Network,
    store: &ParamStore,
    batch: i64,
    runs: usize,
    device: Device,
) -> ModelStats {
    let (mut parts, missing) = analyze(desc);
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
        let t0 = Instant::now();
        let y = net.forward(&x, false).expect("forward of a compiled model");
        let _ = y.sum(Kind::Float).double_value(&[]);
        if i >= 2 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let aux_params = aux_param_count(store);
    let macs: i64 = parts.iter().map(|p| p.macs).sum();
    ModelStats {
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
        parts,
        ops_without_macs: missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_macs_by_hand() {
        // 3x3 conv, 3 -> 16 channels, 32x32, padding 1: 16 * 3 * 9 * 32 * 32 = 442,368 MACs.
        let p: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"c_in": 3, "c_out": 16, "kernel_size": 3}"#).unwrap();
        assert_eq!(op_cost("conv_bn", &p, 3, 32), Some((442_368, 16 * 32 * 32, 16, 32)));
        // Stride 2, no padding, 1x1: 16 * 8 * 16 * 16.
        let p: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"c_in": 8, "c_out": 16, "kernel_size": 1, "stride": 2}"#).unwrap();
        assert_eq!(op_cost("conv_bn", &p, 8, 32).unwrap().0, 16 * 8 * 16 * 16);
        // sep_conv_3x3, C=4, stride 1, 8x8: two (dw 4*9*64 + pw 4*4*64) = 2 * 3328.
        let p: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"c_in": 4, "stride": 1}"#).unwrap();
        assert_eq!(op_cost("sep_conv_3x3", &p, 4, 8).unwrap().0, 2 * (4 * 9 * 64 + 16 * 64));
        assert_eq!(op_cost("max_pool_3x3", &p, 4, 8).unwrap().0, 0);
        assert!(op_cost("scale_by", &p, 4, 8).is_none());
    }
}
