//! Convolution and batch norm whose parameters live in the host.
use archai_plugin_api::tch::{Device, Kind, Tensor};
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
        // A 1x1 convolution with stride s and no padding reads every s-th pixel: take them first
        // and convolve with stride 1. The same sums, and it keeps away from oneDNN's strided 1x1
        // weight-gradient kernel for AVX2 CPUs, which (libtorch 2.11) corrupts memory for 2 to 7
        // input channels in channels-last: a hang with 2 threads, an abort with 1 (every toy
        // DARTS network, whose factorized reductions see 4 channels, and PC-DARTS' C/K = 4). See
        // the test below and the README ("libtorch defects worked around").
        let (x, stride) = if self.is_strided_pointwise() {
            (x.f_slice(2, 0, None, self.stride)?.f_slice(3, 0, None, self.stride)?, 1)
        } else {
            (x.shallow_clone(), self.stride)
        };
        let x = &x;
        if self.keeps_fp32_on_cpu(x) {
            // libtorch's `convolution` is not on autocast's list, so it computes in the dtype it
            // is given: fp32 here, whatever autocast would pick for `conv2d`. Without autocast
            // it is what `conv2d` calls, so fp32 runs are bit for bit unchanged.
            return Ok(x.f_to_kind(Kind::Float)?.f_convolution(
                &self.weight,
                None::<Tensor>,
                [stride, stride],
                [self.pad, self.pad],
                [self.dil, self.dil],
                false,
                [0, 0],
                self.groups,
            )?);
        }
        Ok(x.f_conv2d(
            &self.weight,
            None::<Tensor>,
            [stride, stride],
            [self.pad, self.pad],
            [self.dil, self.dil],
            self.groups,
        )?)
    }
}

impl Conv {
    fn is_strided_pointwise(&self) -> bool {
        self.weight.size()[2] == 1 && self.stride > 1 && self.pad == 0
    }

    /// Depthwise convolutions other than 3x3 stride 1 (5x5, dilated, strided) stay in fp32 on
    /// the CPU under bf16 autocast: oneDNN (libtorch 2.11) has no bf16 kernel for their backward pass
    /// as fast as its fp32 one (weight gradients of a 5x5 depthwise conv 5.3x slower, measured
    /// with scripts/bench-onednn.sh), which made bf16 DARTS search steps slower than fp32 ones.
    fn keeps_fp32_on_cpu(&self, x: &Tensor) -> bool {
        let depthwise = self.groups > 1 && self.groups == self.weight.size()[0];
        let kernel = self.weight.size()[2];
        depthwise
            && (kernel != 3 || self.dil != 1 || self.stride != 1)
            && x.device() == Device::Cpu
            && self.weight.kind() == Kind::Float
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

#[cfg(test)]
mod tests {
    use super::*;
    use archai_plugin_api::kit::seeded;

    fn conv(c: i64, groups: i64, k: i64, stride: i64, dil: i64) -> Conv {
        let weight = seeded::normal(&[c, c / groups, k, k], 3);
        Conv { weight, stride, pad: dil * (k / 2), dil, groups }
    }

    fn conv2d(c: &Conv, x: &Tensor) -> Tensor {
        x.conv2d(&c.weight, None::<Tensor>, [c.stride; 2], [c.pad; 2], [c.dil; 2], c.groups)
    }

    /// The shapes for which oneDNN's strided 1x1 weight gradient corrupts memory on AVX2 CPUs
    /// (2-7 input channels, channels-last, even sizes): forward and backward run, several times,
    /// and give the strided convolution's output and weight gradient (computed in NCHW, a sound
    /// kernel). With AVX-512 the old code passed too; on AVX2 it aborted or hung here.
    #[test]
    fn strided_pointwise_convs_subsample_first_and_equal_the_strided_convolution() {
        let channels_last = |t: &Tensor| t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        for c_in in [2i64, 4, 7, 8, 16] {
            for size in [28i64, 27, 14] {
                let w = seeded::normal(&[8, c_in, 1, 1], 5);
                let x = seeded::normal(&[8, c_in, size, size], 6);
                let w_ref = w.copy().set_requires_grad(true);
                let reference = x.conv2d(&w_ref, None::<Tensor>, [2, 2], [0, 0], [1, 1], 1);
                reference.sum(Kind::Float).backward();
                for _ in 0..5 {
                    let c = Conv { weight: w.copy().set_requires_grad(true), stride: 2, pad: 0, dil: 1, groups: 1 };
                    let y = c.forward(&channels_last(&x).set_requires_grad(true)).unwrap();
                    assert_eq!(y.size(), reference.size());
                    assert!(y.allclose(&reference, 1e-5, 1e-5, false), "c_in {c_in} size {size}");
                    y.sum(Kind::Float).backward();
                    assert!(c.weight.grad().allclose(&w_ref.grad(), 1e-4, 1e-4, false), "c_in {c_in} size {size}");
                }
            }
        }
    }

    #[test]
    fn depthwise_5x5_dilated_and_strided_convs_compute_in_fp32() {
        let x = seeded::normal(&[2, 8, 9, 9], 1);
        for (k, stride, dil) in [(5, 1, 1), (3, 1, 2), (5, 1, 2), (3, 2, 1)] {
            let c = conv(8, 8, k, stride, dil);
            let y = c.forward(&x.to_kind(Kind::BFloat16)).unwrap();
            assert_eq!(y.kind(), Kind::Float, "{k}x{k} stride {stride} dilation {dil}");
            assert!(y.equal(&conv2d(&c, &x.to_kind(Kind::BFloat16).to_kind(Kind::Float))));
            // fp32 runs are unchanged: `convolution` is what `conv2d` computes.
            assert!(c.forward(&x).unwrap().equal(&conv2d(&c, &x)));
        }
        // 3x3 stride-1 depthwise and dense convolutions are left to autocast.
        assert!(!conv(8, 8, 3, 1, 1).keeps_fp32_on_cpu(&x));
        assert!(!conv(8, 1, 5, 1, 1).keeps_fp32_on_cpu(&x));
        assert!(!conv(8, 2, 5, 1, 1).keeps_fp32_on_cpu(&x));
    }
}
