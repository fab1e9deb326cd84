//! The search node's pieces: the candidate mixer (stop-gradient inputs, raw weights), the
//! stop-forward sum that hides the candidates from the parent's forward pass, and the multi-op
//! node a search finalizes into.
use archai_plugin_api::kit::mixer::{alpha_row, candidates, weighted_sum};
use archai_plugin_api::tch::Tensor;
use archai_plugin_api::{HostOp, MixerConfig, Op, ParamBuilder};
use serde::Deserialize;
use serde_json::{json, Value};

/// `y = Σ_p α[row, p] · op_p(SG(x))`: the candidates fit the parent's gradient without sending
/// any gradient back into the parent (SG = identity forward, zero gradient). α is raw (no
/// softmax): an L1 penalty, not a simplex, makes it sparse.
pub struct CandidateMixer {
    alpha: Tensor,
    row: i64,
    ops: Vec<(i64, HostOp)>,
}

impl Op for CandidateMixer {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let x = inputs[0].detach();
        weighted_sum(&self.ops, &x, &self.alpha.f_get(self.row)?, train)
    }
}

pub fn create_mixer(config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let (alpha, row) = alpha_row("petridish-candidates", config, p)?;
    let params = Value::Object(config.candidate_params.clone());
    Ok(Box::new(CandidateMixer { alpha, row, ops: candidates("petridish-candidates", config, p, &params, true)? }))
}

/// `SF(Σ inputs)`, SF(z) = z − SG(z): zero forward, identity gradient. The parent computes
/// exactly what it computed before; the candidates receive the gradient the node's output
/// would get.
pub struct StopForwardSum;

impl Op for StopForwardSum {
    fn forward(&self, inputs: &[Tensor], _train: bool) -> anyhow::Result<Tensor> {
        let mut z = inputs.first().ok_or_else(|| anyhow::anyhow!("stop-forward-sum: no inputs"))?.shallow_clone();
        for x in &inputs[1..] {
            z = z.f_add(x)?;
        }
        Ok(z.f_sub(&z.detach())?)
    }
}

pub fn create_stop_forward_sum(_config: &Value, _p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    Ok(Box::new(StopForwardSum))
}

/// One multiply-add per element of each input.
pub fn stop_forward_sum_cost(config: &Value, [c, h, w]: [i64; 3]) -> anyhow::Result<(i64, [i64; 3])> {
    let n = config["inputs"].as_i64().unwrap_or(1);
    Ok((n * c * h * w, [c, h, w]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConcatConfig {
    c_in: i64,
    c_out: i64,
    #[serde(default = "yes")]
    affine: bool,
}

fn yes() -> bool {
    true
}

/// A finalized Petridish node: its edges' outputs concatenated, then a 1x1 conv + BN back to
/// the node width.
pub struct ConcatConvBn {
    c_in: i64,
    conv_bn: HostOp,
}

impl Op for ConcatConvBn {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let x = Tensor::f_cat(inputs, 1)?;
        anyhow::ensure!(
            x.size()[1] == self.c_in,
            "concat-conv-bn: its inputs have {} channels together, it was built for c_in = {}",
            x.size()[1],
            self.c_in
        );
        self.conv_bn.forward(&[&x], train)
    }
}

pub fn create_concat_conv_bn(config: &Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let c: ConcatConfig = serde_json::from_value(config.clone())
        .map_err(|e| anyhow::anyhow!("concat-conv-bn: {e} (params: c_in, c_out, affine)"))?;
    anyhow::ensure!(c.c_in > 0 && c.c_out > 0, "concat-conv-bn: c_in and c_out must be positive");
    let conv_bn =
        p.op("conv_bn", &json!({"c_in": c.c_in, "c_out": c.c_out, "kernel_size": 1, "affine": c.affine}), "proj")?;
    Ok(Box::new(ConcatConvBn { c_in: c.c_in, conv_bn }))
}

/// The 1x1 conv over the concatenation (BN is free next to it).
pub fn concat_conv_bn_cost(config: &Value, [_, h, w]: [i64; 3]) -> anyhow::Result<(i64, [i64; 3])> {
    let c_in = config["c_in"].as_i64().unwrap_or(0);
    let c_out = config["c_out"].as_i64().unwrap_or(0);
    Ok((c_in * c_out * h * w, [c_out, h, w]))
}
