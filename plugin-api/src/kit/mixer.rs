//! Pieces mixers share: finding an edge's alpha row and scalar parameters, building candidates,
//! and the weighted sum of candidate outputs.
use crate::component::MixerConfig;
use crate::params::{HostOp, ParamBuilder};
use serde_json::Value;
use tch::Tensor;

/// The edge's `alpha` architecture parameter and its `row` (mixer params), checked to have one
/// column per candidate; errors name the mixer and the parameter.
pub fn alpha_row(mixer: &str, config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<(Tensor, i64)> {
    let name: String = config.param(mixer, "alpha")?;
    let row: i64 = config.param(mixer, "row")?;
    let alpha = p.arch_param(&name)?;
    let n = config.candidates.len() as i64;
    let shape = alpha.size();
    anyhow::ensure!(
        shape.len() == 2 && (0..shape[0]).contains(&row) && shape[1] == n,
        "mixer `{mixer}`: architecture parameter `{name}` has shape {shape:?}, but this edge reads row {row} with {n} \
         candidates; it needs shape [rows > {row}, {n}]"
    );
    Ok((alpha, row))
}

/// The scalar architecture parameter named by the mixer param `key` (a temperature, say).
pub fn scalar_param(mixer: &str, config: &MixerConfig, p: &mut ParamBuilder, key: &str) -> anyhow::Result<Tensor> {
    let name: String = config.param(mixer, key)?;
    let t = p.arch_param(&name)?;
    anyhow::ensure!(t.dim() == 0, "mixer `{mixer}`: `{name}` must be a scalar, it has shape {:?}", t.size());
    Ok(t)
}

/// Builds the edge's candidates with `params` (each under its own name), with their column;
/// `none` is left out when `skip_none` (a weighted sum gets exactly 0 from it).
pub fn candidates(
    mixer: &str,
    config: &MixerConfig,
    p: &mut ParamBuilder,
    params: &Value,
    skip_none: bool,
) -> anyhow::Result<Vec<(i64, HostOp)>> {
    let mut ops = Vec::new();
    for (i, name) in config.candidates.iter().enumerate() {
        if !(skip_none && name == "none") {
            ops.push((i as i64, p.op(name, params, name)?));
        }
    }
    anyhow::ensure!(!ops.is_empty(), "mixer `{mixer}`: the edge has only `none` candidates");
    Ok(ops)
}

/// Σ w[i] · op_i(x) over `ops` (weights indexed by candidate column); each candidate folds its
/// weight into its last layer where it can ([`HostOp::forward_scaled`]).
pub fn weighted_sum(ops: &[(i64, HostOp)], x: &Tensor, w: &Tensor, train: bool) -> anyhow::Result<Tensor> {
    let mut out: Option<Tensor> = None;
    for (i, op) in ops {
        let y = op.forward_scaled(&[x], &w.f_get(*i)?, train)?;
        out = Some(match out {
            Some(o) => o.f_add(&y)?,
            None => y,
        });
    }
    out.ok_or_else(|| anyhow::anyhow!("a mixed edge without candidates"))
}
