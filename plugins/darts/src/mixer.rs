//! The `softmax` mixer: DARTS' mixed edge, the softmax-weighted sum of the candidates.
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

/// Looks up the edge's alpha row and checks that it fits the candidates; the error names the
/// mixer and the parameter.
pub fn alpha_row(mixer: &str, config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<(Tensor, i64)> {
    let name: String = config.param(mixer, "alpha")?;
    let row: i64 = config.param(mixer, "row")?;
    let alpha = p.arch_param(&name)?;
    let shape = alpha.size();
    anyhow::ensure!(
        shape.len() == 2 && row >= 0 && row < shape[0] && shape[1] == config.candidates.len() as i64,
        "mixer `{mixer}`: architecture parameter `{name}` has shape {shape:?}, but this edge reads row {row} with {} candidates; \
         it needs shape [rows > {row}, {}]",
        config.candidates.len(),
        config.candidates.len()
    );
    Ok((alpha, row))
}

impl SoftmaxMixer {
    pub fn new(config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<Self> {
        let (alpha, row) = alpha_row("softmax", config, p)?;
        let params = serde_json::Value::Object(config.candidate_params.clone());
        let mut ops = Vec::new();
        for (i, name) in config.candidates.iter().enumerate() {
            if name != "none" {
                ops.push((i as i64, p.op(name, &params, name)?));
            }
        }
        anyhow::ensure!(!ops.is_empty(), "mixer `softmax`: the edge has only `none` candidates");
        Ok(Self { alpha, row, ops })
    }
}

impl Op for SoftmaxMixer {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let x = &inputs[0];
        let w = self.alpha.f_get(self.row)?.f_softmax(-1, Kind::Float)?;
        let mut out: Option<Tensor> = None;
        for (i, op) in &self.ops {
            let y = op.forward(&[x], train)?.f_mul(&w.f_get(*i)?)?;
            out = Some(match out {
                Some(o) => o.f_add(&y)?,
                None => y,
            });
        }
        Ok(out.expect("checked at construction: at least one candidate"))
    }
}
