//! Convolution and batch norm whose parameters live in the host.
use archai_plugin_api::tch::Tensor;
use archai_plugin_api::{Init, ParamBuilder};

/// A bias-free 2-D convolution.
pub struct Conv {
    pub weight: Tensor,
    stride: i64,
    pad: i64,
    dil: i64,
    groups: i64,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &mut ParamBuilder,
        c_in: i64,
        c_out: i64,
        k: i64,
        stride: i64,
        pad: i64,
        dil: i64,
        groups: i64,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(c_in % groups == 0, "c_in {c_in} is not divisible by groups {groups}");
        let weight = p.weight("weight", &[c_out, c_in / groups, k, k], Init::KaimingUniform)?;
        Ok(Self { weight, stride, pad, dil, groups })
    }

    pub fn forward(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        Ok(x.f_conv2d(
            &self.weight,
            None::<Tensor>,
            [self.stride, self.stride],
            [self.pad, self.pad],
            [self.dil, self.dil],
            self.groups,
        )?)
    }
}

/// Batch norm with host-owned running statistics; `affine: false` has no scale and shift.
pub struct BatchNorm {
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

impl BatchNorm {
    pub fn new(p: &mut ParamBuilder, c: i64, affine: bool) -> anyhow::Result<Self> {
        let (weight, bias) = if affine {
            (Some(p.weight("weight", &[c], Init::Ones)?), Some(p.weight("bias", &[c], Init::Zeros)?))
        } else {
            (None, None)
        };
        Ok(Self {
            weight,
            bias,
            running_mean: p.buffer("running_mean", &[c], Init::Zeros)?,
            running_var: p.buffer("running_var", &[c], Init::Ones)?,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> anyhow::Result<Tensor> {
        Ok(Tensor::f_batch_norm(
            x,
            self.weight.as_ref(),
            self.bias.as_ref(),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            0.1,
            1e-5,
            true,
        )?)
    }
}
