//! The `softmax` mixer: DARTS' mixed edge, the softmax-weighted sum of the candidates.
use archai_plugin_api::kit::mixer::{alpha_row, candidates, weighted_sum};
use archai_plugin_api::tch::{Kind, Tensor};
use archai_plugin_api::{HostOp, MixerConfig, Op, ParamBuilder};

/// Mixer params: `alpha` (architecture parameter, one row per mixed edge, one column per
/// candidate) and `row`.
pub struct SoftmaxMixer {
    alpha: Tensor,
    row: i64,
    /// Candidates other than `none` with their column: `none` contributes exactly zero, so it is
    /// never computed.
    ops: Vec<(i64, HostOp)>,
}

impl SoftmaxMixer {
    pub fn new(config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<Self> {
        let (alpha, row) = alpha_row("softmax", config, p)?;
        let params = serde_json::Value::Object(config.candidate_params.clone());
        let ops = candidates("softmax", config, p, &params, true)?;
        Ok(Self { alpha, row, ops })
    }
}

impl Op for SoftmaxMixer {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let w = self.alpha.f_get(self.row)?.f_softmax(-1, Kind::Float)?;
        weighted_sum(&self.ops, &inputs[0], &w, train)
    }
}
