//! Convolution and batch norm whose parameters live in the host.
use archai_plugin_api::kit::recompute::Pass;
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
        self.forward_with(x, false)
    }

    /// The same convolution, its weight shared (for a recomputed body).
    pub fn share(&self) -> Conv {
        Conv {
            weight: self.weight.shallow_clone(),
            stride: self.stride,
            pad: self.pad,
            dil: self.dil,
            groups: self.groups,
        }
    }

    /// `forward(relu(x))`, with the ReLU applied after the subsampling and rearranging the
    /// rewrites below do, so that the ReLU's output is the convolution's input: the backward
    /// pass keeps one tensor for both instead of two (and a subsampled ReLU does a quarter of
    /// the work). ReLU commutes with taking pixels, moving them and zero padding.
    pub fn relu_forward(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        self.forward_with(x, true)
    }

    fn forward_with(&self, x: &Tensor, relu: bool) -> anyhow::Result<Tensor> {
        // A 1x1 convolution with stride s and no padding reads every s-th pixel: take them first
        // and convolve with stride 1. The same sums, and it keeps away from oneDNN's strided 1x1
        // weight-gradient kernel for AVX2 CPUs, which (libtorch 2.11) corrupts memory for 2 to 7
        // input channels in channels-last: a hang with 2 threads, an abort with 1 (every toy
        // DARTS network, whose factorized reductions see 4 channels, and PC-DARTS' C/K = 4). See
        // the test below and the README ("libtorch defects worked around").
        if self.is_strided_pointwise() {
            let x = relu_if(&subsample(x, self.stride)?, relu)?;
            return self.convolve(&x, &self.weight, 1, [self.pad; 2], self.dil, self.groups);
        }
        match self.same_depthwise_plan(x) {
            Some(SameDepthwise::Subsampled) => {
                self.same_depthwise(&subsample(x, self.stride)?, &self.weight, self.dil / self.stride, relu)
            }
            Some(SameDepthwise::StrideOne) => self.same_depthwise(x, &self.weight, self.dil, relu),
            None => self.convolve(&relu_if(x, relu)?, &self.weight, self.stride, [self.pad; 2], self.dil, self.groups),
        }
    }

    fn convolve(
        &self,
        x: &Tensor,
        w: &Tensor,
        stride: i64,
        pad: [i64; 2],
        dil: i64,
        groups: i64,
    ) -> anyhow::Result<Tensor> {
        if self.keeps_fp32_on_cpu(x) {
            // libtorch's `convolution` is not on autocast's list, so it computes in the dtype it
            // is given: fp32 here, whatever autocast would pick for `conv2d`. Without autocast
            // it is what `conv2d` calls, so fp32 runs are bit for bit unchanged.
            return Ok(x.f_to_kind(Kind::Float)?.f_convolution(
                w,
                None::<Tensor>,
                [stride, stride],
                pad,
                [dil, dil],
                false,
                [0, 0],
                groups,
            )?);
        }
        Ok(x.f_conv2d(w, None::<Tensor>, [stride, stride], pad, [dil, dil], groups)?)
    }

    /// A stride-1, "same"-padded depthwise convolution of `x` with the odd-sized kernel `w` at
    /// dilation `dil`, computed with the kernels oneDNN is fast at (see [`SameDepthwise`]):
    /// - taps that cannot reach the image (offset times dilation beyond its size) only ever meet
    ///   padding, so they are cut off the kernel (their gradient is zero either way);
    /// - a dilated kernel runs undilated on the image's phases ([`Conv::phases_as_channels`]);
    /// - a kernel wider than 3x3 on an image of at most 4x4 runs as 3x3 blocks
    ///   ([`Conv::three_by_three_blocks`]), a 3x3 one on an image smaller than 3x3 on a larger
    ///   zero-padded image.
    ///
    /// `relu`: apply ReLU to the input first (see [`Conv::relu_forward`]).
    fn same_depthwise(&self, x: &Tensor, w: &Tensor, dil: i64, relu: bool) -> anyhow::Result<Tensor> {
        let (_, c, h, wd) = x.size4()?;
        anyhow::ensure!(
            c == w.size()[0],
            "a depthwise convolution over {} channels got an input with {c} channels",
            w.size()[0]
        );
        let (kh, kw) = (w.size()[2], w.size()[3]);
        let (rh, rw) = (((kh - 1) / 2).min((h - 1) / dil), ((kw - 1) / 2).min((wd - 1) / dil));
        let w = if 2 * rh + 1 < kh || 2 * rw + 1 < kw {
            w.f_slice(2, (kh - 1) / 2 - rh, Some((kh - 1) / 2 + rh + 1), 1)?.f_slice(
                3,
                (kw - 1) / 2 - rw,
                Some((kw - 1) / 2 + rw + 1),
                1,
            )?
        } else {
            w.shallow_clone()
        };
        if dil > 1 && (rh > 0 || rw > 0) {
            return self.phases_as_channels(x, &w, dil, relu);
        }
        let x = &relu_if(x, relu)?;
        if rh.max(rw) > 1 && h.max(wd) <= 4 {
            return self.three_by_three_blocks(x, &w);
        }
        // oneDNN's fast 3x3 weight gradient wants images of at least 3x3 (on 2x2 ones it took
        // 2.6 ms against 0.04 ms on 3x3, [96, 64] channels): zero rows and columns below and
        // right stand where the padding stood, and their outputs are cropped.
        let (grow_h, grow_w) = (if rh > 0 { (3 - h).max(0) } else { 0 }, if rw > 0 { (3 - wd).max(0) } else { 0 });
        on_zero_grown(x, grow_h, grow_w, |x| self.convolve(x, &w, 1, [rh, rw], 1, c))
    }

    /// Dilation d: an output pixel only reads pixels of its own phase (row mod d, column mod d),
    /// and within one phase the dilated kernel is an undilated one. `pixel_unshuffle` turns the
    /// d x d phases into channels (channel c's phases side by side, so each takes c's kernel), one
    /// undilated depthwise convolution computes them all, and `pixel_shuffle` puts the pixels
    /// back. Zero rows and columns pad the image to a multiple of d: they stand where the dilated
    /// convolution's zero padding stood, and are cropped after.
    fn phases_as_channels(&self, x: &Tensor, w: &Tensor, d: i64, relu: bool) -> anyhow::Result<Tensor> {
        let (_, _, h, wd) = x.size4()?;
        let w = w.f_repeat_interleave_self_int(d * d, Some(0), None::<i64>)?;
        on_zero_grown(x, (d - h % d) % d, (d - wd % d) % d, |padded| {
            Ok(self.same_depthwise(&padded.f_pixel_unshuffle(d)?, &w, 1, relu)?.f_pixel_shuffle(d)?)
        })
    }

    /// A kernel of radius r > 1 as a sum of 3x3 kernels: the taps' offsets -r..r are cut into
    /// runs of three (the last one padded with zero taps), and each pair of runs is a 3x3
    /// convolution, without padding, of a window of the zero-padded image centred on the runs'
    /// centres. Each window is its own padded copy (made by `constant_pad_nd`, which keeps the
    /// layout of the gradient too; see [`dense_crop`]); on images of at most 4x4 they are small.
    /// The same products; only the order of the sums differs.
    fn three_by_three_blocks(&self, x: &Tensor, w: &Tensor) -> anyhow::Result<Tensor> {
        let c = x.size4()?.1;
        // (first tap, centre offset) of each run of three taps.
        let runs = |k: i64| -> Vec<(i64, i64)> {
            let r = (k - 1) / 2;
            (0..k).step_by(3).map(|start| (start, start - r + 1)).collect()
        };
        let (kh, kw) = (w.size()[2], w.size()[3]);
        let (rows, cols) = (runs(kh), runs(kw));
        let mut sum: Option<Tensor> = None;
        for &(row, cy) in &rows {
            for &(col, cx) in &cols {
                let block =
                    w.f_slice(2, row, Some((row + 3).min(kh)), 1)?.f_slice(3, col, Some((col + 3).min(kw)), 1)?;
                let (bh, bw) = (block.size()[2], block.size()[3]);
                let block = if bh < 3 || bw < 3 { block.f_constant_pad_nd([0, 3 - bw, 0, 3 - bh])? } else { block };
                // The window this block reads: the image's rows cy - 1 ..= h + cy and columns
                // cx - 1 ..= w + cx, zeros outside it, padded (and, where a pad is negative,
                // cropped) in one step: see [`dense_crop`] for why not a view.
                let window = x.f_constant_pad_nd([1 - cx, cx + 1, 1 - cy, cy + 1])?;
                let y = self.convolve(&window, &block, 1, [0, 0], 1, c)?;
                sum = Some(match sum {
                    Some(s) => s.f_add(&y)?,
                    None => y,
                });
            }
        }
        sum.ok_or_else(|| anyhow::anyhow!("a kernel without taps"))
    }
}

/// `f` of `x` grown by `rows` zero rows below and `cols` zero columns right, its result cropped
/// back to `x`'s height and width; `f(x)` when nothing grows.
fn on_zero_grown(
    x: &Tensor,
    rows: i64,
    cols: i64,
    f: impl FnOnce(&Tensor) -> anyhow::Result<Tensor>,
) -> anyhow::Result<Tensor> {
    if rows == 0 && cols == 0 {
        return f(x);
    }
    let (_, _, h, w) = x.size4()?;
    let y = f(&x.f_constant_pad_nd([0, cols, 0, rows])?)?;
    dense_crop(&y, h, w)
}

/// The top-left `h` x `w` pixels of `y` as a dense tensor in `y`'s memory format. A slice would
/// be free, but its backward pass (libtorch 2.11) writes the gradient into a fresh NCHW tensor:
/// a channels-last network then hands NCHW gradients to the batch norms before it, whose backward
/// falls back to a serial element-wise kernel when gradient and input layouts differ (a third of
/// an evaluation step in a DARTS cell with 5x5 and dilated convolutions). `constant_pad_nd`
/// keeps the layout both ways: a negative padding crops into a copy, and its backward pads.
fn dense_crop(y: &Tensor, h: i64, w: i64) -> anyhow::Result<Tensor> {
    let (_, _, yh, yw) = y.size4()?;
    Ok(y.f_constant_pad_nd([0, w - yw, 0, h - yh])?)
}

/// ReLU of `x` when `relu`, else `x`.
fn relu_if(x: &Tensor, relu: bool) -> anyhow::Result<Tensor> {
    Ok(if relu { x.f_relu()? } else { x.shallow_clone() })
}

/// Every s-th row and column of `x`, dense and in `x`'s memory format, as a nearest-neighbour
/// resize by 1/s (output pixel i reads input pixel floor(i * s): a copy). A strided view would
/// not do: on an odd-sized image libtorch does not recognise it as channels-last and computes the
/// next convolution, and every op after it, in NCHW; and the backward pass of a slice (or of a
/// copy of one) writes the gradient into a fresh NCHW tensor (see [`dense_crop`]). The resize's
/// backward writes it in the gradient's layout and keeps no tensor for it (an average pooling
/// with a 1x1 window would keep `x`). A 1x1 result is both NCHW and channels-last, so its
/// gradient does not say which layout `x` wants: there the pooling, whose backward follows `x`.
fn subsample(x: &Tensor, s: i64) -> anyhow::Result<Tensor> {
    if x.dim() == 4 {
        let (_, _, h, w) = x.size4()?;
        let (oh, ow) = ((h + s - 1) / s, (w + s - 1) / s);
        if oh * ow == 1 {
            return Ok(x.f_avg_pool2d([1, 1], [s, s], [0, 0], false, true, None::<i64>)?);
        }
        let scale = Some(1.0 / s as f64);
        return Ok(x.f_upsample_nearest2d([oh, ow], scale, scale)?);
    }
    Ok(x.f_slice(2, 0, None, s)?.f_slice(3, 0, None, s)?)
}

/// How a "same"-padded depthwise convolution (odd square kernel, padding dilation x radius) runs
/// on the CPU. oneDNN (libtorch 2.11, AVX2) is fast for depthwise convolutions with undilated 3x3
/// kernels (`jit_dw`) and computes the backward pass of others with generic kernels: the weight
/// gradient of a 5x5 dilation-2 one on [96, 16, 14, 14] took 12.8 ms (`x64:gemm:jit`) against
/// 0.08 ms for an undilated 3x3, and a 5x5 one on [96, 128, 4, 4] 34 ms. In the DARTS evaluation
/// network of a comparison run (13 dil_conv_5x5 among 40 ops) dilated backward passes were 70% of
/// oneDNN's time (README, "Depthwise convolutions oneDNN is slow at"). The rewrites compute the
/// same products; only the order of the sums can differ (float rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SameDepthwise {
    /// Stride s equal to the dilation d: every tap of every output lands on a pixel whose row
    /// and column are multiples of s, so take those pixels and convolve with stride 1 and
    /// dilation d / s = 1.
    Subsampled,
    /// Stride 1, any dilation: [`Conv::same_depthwise`].
    StrideOne,
}

impl Conv {
    fn is_strided_pointwise(&self) -> bool {
        self.weight.size()[2] == 1 && self.stride > 1 && self.pad == 0
    }

    fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.weight.size()[0] && self.weight.size()[1] == 1
    }

    fn same_depthwise_plan(&self, x: &Tensor) -> Option<SameDepthwise> {
        let k = self.weight.size()[2];
        let same_padding = k % 2 == 1 && self.weight.size()[3] == k && self.pad == self.dil * (k - 1) / 2;
        // An empty batch (a data-parallel rank without rows) goes to libtorch as it is:
        // `pixel_unshuffle` and `pixel_shuffle` (libtorch 2.11) return an empty input unchanged,
        // shape included, instead of rearranged.
        if !(self.is_depthwise() && same_padding && x.device() == Device::Cpu && x.dim() == 4 && x.numel() > 0) {
            return None;
        }
        match self.stride {
            1 => Some(SameDepthwise::StrideOne),
            s if s == self.dil => Some(SameDepthwise::Subsampled),
            _ => None,
        }
    }

    /// Depthwise convolutions other than 3x3 stride 1 (5x5, dilated, strided) stay in fp32 on
    /// the CPU under bf16 autocast: oneDNN (libtorch 2.11) has no bf16 kernel for their backward pass
    /// as fast as its fp32 one (weight gradients of a 5x5 depthwise conv 5.3x slower, measured
    /// with scripts/bench-onednn.sh), which made bf16 DARTS search steps slower than fp32 ones.
    fn keeps_fp32_on_cpu(&self, x: &Tensor) -> bool {
        let depthwise = self.is_depthwise();
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
        self.forward_scaled(x, None, train)
    }

    /// The same norm, its parameters and statistics shared (for a recomputed body).
    pub fn share(&self) -> BatchNorm {
        BatchNorm {
            weight: self.weight.as_ref().map(Tensor::shallow_clone),
            bias: self.bias.as_ref().map(Tensor::shallow_clone),
            running_mean: self.running_mean.shallow_clone(),
            running_var: self.running_var.shallow_clone(),
        }
    }

    /// Its trainable parameters (none when not affine).
    pub fn params(&self) -> Vec<Tensor> {
        self.weight.iter().chain(self.bias.iter()).map(Tensor::shallow_clone).collect()
    }

    /// `forward(x) * scale` for a 0-dim `scale` (a mixer's weight), folded into the norm's
    /// weight and bias: the product is the norm's output, so autograd keeps only the norm's
    /// input (which it keeps anyway) where a separate multiplication would keep the output too.
    pub fn forward_scaled(&self, x: &Tensor, scale: Option<&Tensor>, train: bool) -> anyhow::Result<Tensor> {
        self.forward_in(x, scale, train, Pass::First)
    }

    /// [`BatchNorm::forward_scaled`] in a run of a recomputed body: a training-mode norm updates
    /// its running statistics in the first run only (the second normalizes with the same batch
    /// statistics, computed again, and leaves the running ones as the forward pass left them).
    pub fn forward_in(&self, x: &Tensor, scale: Option<&Tensor>, train: bool, pass: Pass) -> anyhow::Result<Tensor> {
        let (weight, bias) = match scale {
            None => (self.weight.as_ref().map(Tensor::shallow_clone), self.bias.as_ref().map(Tensor::shallow_clone)),
            Some(s) => {
                // The norm's parameters share the running statistics' type (float for a bf16
                // input under autocast).
                let s = s.f_to_kind(self.running_mean.kind())?;
                let weight = match &self.weight {
                    Some(g) => g.f_mul(&s)?,
                    None => s.f_reshape([1])?.f_expand([self.running_mean.size()[0]], false)?.f_contiguous()?,
                };
                (Some(weight), self.bias.as_ref().map(|b| b.f_mul(&s)).transpose()?)
            }
        };
        let (mean, var) = if train && pass == Pass::Again {
            (None, None)
        } else {
            (Some(&self.running_mean), Some(&self.running_var))
        };
        archai_plugin_api::kit::batch_norm::batch_norm(x, weight.as_ref(), bias.as_ref(), mean, var, train, 0.1, 1e-5)
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
            let reference = conv2d(&c, &x.to_kind(Kind::BFloat16).to_kind(Kind::Float));
            if dil == 1 {
                assert!(y.equal(&reference));
                // fp32 runs are unchanged: `convolution` is what `conv2d` computes.
                assert!(c.forward(&x).unwrap().equal(&conv2d(&c, &x)));
            } else {
                // Dilated ones run undilated (the same sums in another order).
                assert!(y.allclose(&reference, 1e-5, 1e-5, false));
            }
        }
        // 3x3 stride-1 depthwise and dense convolutions are left to autocast.
        assert!(!conv(8, 8, 3, 1, 1).keeps_fp32_on_cpu(&x));
        assert!(!conv(8, 1, 5, 1, 1).keeps_fp32_on_cpu(&x));
        assert!(!conv(8, 2, 5, 1, 1).keeps_fp32_on_cpu(&x));
    }

    fn is_channels_last(t: &Tensor) -> bool {
        t.permute([0, 2, 3, 1]).is_contiguous()
    }

    /// `t` with NCHW shape and NHWC strides.
    fn channels_last(t: &Tensor) -> Tensor {
        t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    }

    /// "Same"-padded depthwise convolutions computed with other kernels (subsampled when the
    /// stride equals the dilation, dilated ones on phases as channels, taps that cannot reach
    /// the image cut off, wide kernels on small images as 3x3 blocks) equal libtorch's direct
    /// convolution in float64: output, input gradient and weight gradient, for odd and even
    /// sizes, sizes below the kernel's reach, and both memory layouts, which they keep.
    #[test]
    fn same_depthwise_convs_rewritten_equal_the_direct_convolution() {
        let configs =
            [(3, 1, 1), (5, 1, 1), (7, 1, 1), (3, 1, 2), (5, 1, 2), (3, 2, 2), (5, 2, 2), (3, 1, 3), (3, 3, 3)];
        for (k, stride, dil) in configs {
            let square = [14i64, 8, 7, 4, 3, 2, 1, 15].map(|n| (n, n));
            let oblong = [(1i64, 4i64), (4, 1), (2, 8), (2, 4), (3, 7), (5, 2), (7, 15)];
            for (h, w) in square.into_iter().chain(oblong) {
                for layout_cl in [false, true] {
                    for relu in [false, true] {
                        let mut c = conv(6, 6, k, stride, dil);
                        c.weight = c.weight.to_kind(Kind::Double).set_requires_grad(true);
                        let x = seeded::normal(&[3, 6, h, w], 11).to_kind(Kind::Double);
                        let x = if layout_cl { channels_last(&x) } else { x }.set_requires_grad(true);
                        let expected = if stride == 1 { SameDepthwise::StrideOne } else { SameDepthwise::Subsampled };
                        assert_eq!(c.same_depthwise_plan(&x), Some(expected), "{k}x{k} stride {stride} dilation {dil}");
                        let (y, reference) = if relu {
                            (c.relu_forward(&x).unwrap(), conv2d(&c, &x.relu()))
                        } else {
                            (c.forward(&x).unwrap(), conv2d(&c, &x))
                        };
                        let what = format!(
                            "{k}x{k} stride {stride} dilation {dil}, size {h}x{w}, channels-last {layout_cl}, relu {relu}"
                        );
                        assert_eq!(y.size(), reference.size(), "{what}");
                        assert!(y.allclose(&reference, 1e-12, 1e-12, false), "{what}");
                        let dense_cl = layout_cl && h > 1 && w > 1;
                        if dense_cl {
                            assert!(is_channels_last(&y), "layout lost: {what}");
                        }
                        // A loss that weighs every output differently, so misplaced pixels show.
                        let g = seeded::normal(&reference.size(), 12).to_kind(Kind::Double);
                        let g = if layout_cl { channels_last(&g) } else { g };
                        let got = Tensor::run_backward(&[(&y * &g).sum(Kind::Double)], &[&x, &c.weight], false, false);
                        let want = Tensor::run_backward(
                            &[(&reference * &g).sum(Kind::Double)],
                            &[&x, &c.weight],
                            false,
                            false,
                        );
                        assert!(got[0].allclose(&want[0], 1e-12, 1e-12, false), "input gradient, {what}");
                        // A channels-last gradient comes back dense channels-last: the batch norm
                        // before a convolution takes its serial slow path otherwise (dense_crop).
                        if dense_cl {
                            assert!(is_channels_last(&got[0]), "input gradient layout lost: {what}");
                        }
                        assert!(got[1].allclose(&want[1], 1e-12, 1e-12, false), "weight gradient, {what}");
                    }
                }
            }
        }
        // An empty batch keeps its shape arithmetic (libtorch's pixel shuffles do not).
        for (k, stride, dil) in configs {
            let c = conv(6, 6, k, stride, dil);
            let empty = Tensor::zeros([0, 6, 7, 8], (Kind::Float, Device::Cpu));
            for relu in [false, true] {
                let y = if relu { c.relu_forward(&empty) } else { c.forward(&empty) }.unwrap();
                assert_eq!(y.size(), conv2d(&c, &empty).size(), "{k}x{k} stride {stride} dilation {dil}, empty batch");
            }
        }
        // Left to libtorch: dense, a stride that is neither 1 nor the dilation, and padding other
        // than "same".
        let x = seeded::normal(&[2, 6, 8, 8], 1);
        assert_eq!(conv(6, 1, 3, 1, 2).same_depthwise_plan(&x), None);
        assert_eq!(conv(6, 6, 3, 2, 3).same_depthwise_plan(&x), None);
        assert_eq!(conv(6, 6, 3, 2, 1).same_depthwise_plan(&x), None);
        let mut unpadded = conv(6, 6, 3, 1, 2);
        unpadded.pad = 0;
        assert_eq!(unpadded.same_depthwise_plan(&x), None);
    }

    /// A factorized reduction reads its second grid from `x` moved by one pixel with zeros coming
    /// in (not a slice): the same as the sliced grid padded after the convolution, on odd and
    /// even sizes, and a channels-last gradient comes back dense channels-last (the slice's did
    /// not, and the batch norm before it then ran its serial backward kernel).
    #[test]
    fn factorized_reduction_equals_the_sliced_grid_and_keeps_the_gradient_layout() {
        let f64s = (Kind::Double, Device::Cpu);
        for n in [7i64, 8, 9, 14] {
            let pointwise = |seed| Conv {
                weight: seeded::normal(&[4, 6, 1, 1], seed).to_kind(Kind::Double),
                stride: 2,
                pad: 0,
                dil: 1,
                groups: 1,
            };
            let bn = BatchNorm {
                weight: None,
                bias: None,
                running_mean: Tensor::zeros([8], f64s),
                running_var: Tensor::ones([8], f64s),
            };
            let reduce = crate::FactorizedReduce { conv1: pointwise(1), conv2: pointwise(2), bn };
            let x = channels_last(&seeded::normal(&[3, 6, n, n], 5).to_kind(Kind::Double)).set_requires_grad(true);
            let y = reduce.forward(&x, true).unwrap();
            let r = x.relu();
            let conv = |x: &Tensor, c: &Conv| x.conv2d(&c.weight, None::<Tensor>, [2, 2], [0, 0], [1, 1], 1);
            let a = conv(&r, &reduce.conv1);
            let b = conv(&r.slice(2, 1, None, 1).slice(3, 1, None, 1), &reduce.conv2);
            let b = b.constant_pad_nd([0, a.size()[3] - b.size()[3], 0, a.size()[2] - b.size()[2]]);
            let none = || None::<Tensor>;
            let want = Tensor::cat(&[a, b], 1).batch_norm(none(), none(), none(), none(), true, 0.1, 1e-5, false);
            assert_eq!(y.size(), want.size(), "size {n}");
            assert!(y.allclose(&want, 1e-12, 1e-12, false), "size {n}");
            assert!(is_channels_last(&y), "output layout, size {n}");
            let g = channels_last(&seeded::normal(&want.size(), 6).to_kind(Kind::Double));
            let got = Tensor::run_backward(&[(&y * &g).sum(Kind::Double)], &[&x], false, false);
            let expected = Tensor::run_backward(&[(&want * &g).sum(Kind::Double)], &[&x], false, false);
            assert!(got[0].allclose(&expected[0], 1e-12, 1e-12, false), "input gradient, size {n}");
            assert!(is_channels_last(&got[0]), "input gradient layout, size {n}");
        }
    }

    /// The ops' training-mode batch norm of a channels-last float tensor is the fast kernel of
    /// `kit::batch_norm` (with its mixer scale folded in too), with libtorch's results; NCHW,
    /// float64 and evaluation mode stay libtorch's.
    #[test]
    fn channels_last_training_norms_take_the_fast_kernel() {
        use archai_plugin_api::kit::batch_norm::made_here;
        let bn = |kind: Kind| BatchNorm {
            weight: Some((seeded::normal(&[16], 1) * 0.1 + 1.0).to_kind(kind).set_requires_grad(true)),
            bias: Some((seeded::normal(&[16], 2) * 0.1).to_kind(kind).set_requires_grad(true)),
            running_mean: Tensor::zeros([16], (kind, Device::Cpu)),
            running_var: Tensor::ones([16], (kind, Device::Cpu)),
        };
        let x = seeded::normal(&[4, 16, 6, 6], 3).set_requires_grad(true);
        let norm = bn(Kind::Float);
        let scale = Tensor::from(0.7f32).set_requires_grad(true);
        let fast = norm.forward_scaled(&channels_last(&x), Some(&scale), true).unwrap();
        assert!(made_here(&fast));
        let reference = bn(Kind::Double).forward_scaled(&x.to_kind(Kind::Double), Some(&scale), true).unwrap();
        assert!(!made_here(&reference), "float64 NCHW");
        assert!(fast.to_kind(Kind::Double).allclose(&reference, 1e-5, 1e-5, false));
        assert!(!made_here(&norm.forward(&x, true).unwrap()), "NCHW");
        assert!(!made_here(&norm.forward(&channels_last(&x), false).unwrap()), "evaluation mode");
    }

    /// A strided 1x1 convolution of an odd-sized channels-last image stays channels-last (the
    /// subsampled view was taken for NCHW and every op after it ran in NCHW).
    #[test]
    fn strided_pointwise_convs_keep_channels_last_on_odd_sizes() {
        let x = channels_last(&seeded::normal(&[4, 16, 7, 7], 2));
        let c = Conv { weight: seeded::normal(&[8, 16, 1, 1], 3), stride: 2, pad: 0, dil: 1, groups: 1 };
        let y = c.forward(&x).unwrap();
        assert_eq!(y.size(), [4, 8, 4, 4]);
        assert!(is_channels_last(&y));
    }
}
