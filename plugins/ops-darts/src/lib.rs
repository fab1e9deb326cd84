//! The eight DARTS primitives with stride 1 and 2 (`none`, `max_pool_3x3`, `avg_pool_3x3`,
//! `skip_connect`, `sep_conv_3x3`, `sep_conv_5x5`, `dil_conv_3x3`, `dil_conv_5x5`), plus the
//! building blocks a DARTS network needs (`relu_conv_bn`, `factorized_reduce`, `conv_bn` for
//! stems) and a few generic layers for handcrafted models (`linear`, `global_avg_pool`,
//! `basic_block`, `identity`).
//!
//! Every op takes its configuration as JSON (from the model description's YAML) and creates its
//! parameters through the host, so the host names, optimizes and checkpoints them.
use archai_plugin_api::kit::recompute::{recomputed, Pass};
use archai_plugin_api::tch::Tensor;
use archai_plugin_api::{export_plugin, register_op, Init, Op, ParamBuilder, RecomputeSwitch};
use serde::Deserialize;

pub mod layers;
use layers::{BatchNorm, Conv};

pub mod costs;

export_plugin!();

/// Configuration shared by the cell ops (`{c_in, c_out, stride, affine}`).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CellOpConfig {
    pub c_in: i64,
    #[serde(default)]
    pub c_out: Option<i64>,
    #[serde(default = "one")]
    pub stride: i64,
    /// Learnable batch-norm scale and shift (DARTS searches with `affine: false`).
    #[serde(default = "yes")]
    pub affine: bool,
    /// Batch norm after pooling (the DARTS search network adds it to pool candidates).
    #[serde(default)]
    pub pool_bn: bool,
}

fn one() -> i64 {
    1
}
fn yes() -> bool {
    true
}

impl CellOpConfig {
    fn parse(v: &serde_json::Value) -> anyhow::Result<Self> {
        let c: Self = serde_json::from_value(v.clone()).map_err(|e| anyhow::anyhow!("bad op config {v}: {e}"))?;
        anyhow::ensure!(c.c_in > 0, "c_in must be positive, got {}", c.c_in);
        anyhow::ensure!(c.stride == 1 || c.stride == 2, "stride must be 1 or 2, got {}", c.stride);
        Ok(c)
    }
    fn c_out(&self) -> i64 {
        self.c_out.unwrap_or(self.c_in)
    }
}

/// ReLU in place on a batch norm's output (or a sum of such) that nothing else reads: the norm's
/// backward reads its input, not its output, and ReLU's backward reads its own output, so the
/// same memory serves both, without a fresh tensor (whose pages the kernel must first clear).
fn relu_of_fresh(mut y: Tensor) -> anyhow::Result<Tensor> {
    Ok(y.f_relu_()?)
}

fn single(inputs: &[Tensor]) -> anyhow::Result<&Tensor> {
    anyhow::ensure!(inputs.len() == 1, "expected 1 input tensor, got {}", inputs.len());
    Ok(&inputs[0])
}

/// `none`: the zero op. Stride 2 halves the spatial size.
pub struct Zero {
    stride: i64,
    c_out: i64,
}

impl Op for Zero {
    fn forward(&self, inputs: &[Tensor], _train: bool) -> anyhow::Result<Tensor> {
        let x = single(inputs)?;
        let (n, _, h, w) = x.size4()?;
        let (ho, wo) = ((h + self.stride - 1) / self.stride, (w + self.stride - 1) / self.stride);
        Ok(Tensor::zeros([n, self.c_out, ho, wo], (x.kind(), x.device())))
    }
}

/// 3x3 max or average pooling (padding 1), optionally followed by batch norm.
pub struct Pool {
    max: bool,
    stride: i64,
    bn: Option<BatchNorm>,
    recompute: RecomputeSwitch,
}

impl Pool {
    fn pooled(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        Ok(if self.max {
            x.f_max_pool2d([3, 3], [self.stride, self.stride], [1, 1], [1, 1], false)?
        } else {
            // count_include_pad = false, as in DARTS.
            x.f_avg_pool2d([3, 3], [self.stride, self.stride], [1, 1], false, false, None)?
        })
    }
}

impl Pool {
    /// Pooling, then the norm (its output times `scale` when given). With recomputation on, in
    /// training, only `x` is kept (which its edge keeps anyway): max pooling's indices (int64,
    /// twice a float activation) and the norm's input are computed again in the backward pass.
    fn forward_scaled(&self, x: &Tensor, scale: Option<&Tensor>, train: bool) -> anyhow::Result<Tensor> {
        if !(train && self.recompute.is_on()) {
            return self.pool_norm(x, scale, train, Pass::First);
        }
        let bn = self.bn.as_ref();
        let pool = Pool {
            max: self.max,
            stride: self.stride,
            bn: bn.map(BatchNorm::share),
            recompute: self.recompute.clone(),
        };
        let scale = scale.map(Tensor::shallow_clone);
        let mut params: Vec<Tensor> = bn.map(BatchNorm::params).unwrap_or_default();
        params.extend(scale.iter().map(Tensor::shallow_clone));
        recomputed(&[x], params, move |t, pass| pool.pool_norm(&t[0], scale.as_ref(), train, pass))
    }

    /// Pooling, then the norm (times `scale`) in the given run of a recomputed body.
    fn pool_norm(&self, x: &Tensor, scale: Option<&Tensor>, train: bool, pass: Pass) -> anyhow::Result<Tensor> {
        let y = self.pooled(x)?;
        match &self.bn {
            Some(bn) => bn.forward_in(&y, scale, train, pass),
            None => Ok(y),
        }
    }
}

impl Op for Pool {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        Pool::forward_scaled(self, single(inputs)?, None, train)
    }
    fn forward_scaled(&self, inputs: &[Tensor], scale: &Tensor, train: bool) -> Option<anyhow::Result<Tensor>> {
        self.bn.as_ref()?;
        Some(single(inputs).and_then(|x| Pool::forward_scaled(self, x, Some(scale), train)))
    }
}

/// ReLU -> conv -> BN.
pub struct ReluConvBn {
    conv: Conv,
    bn: BatchNorm,
}

impl ReluConvBn {
    pub fn new(
        p: &mut ParamBuilder,
        c_in: i64,
        c_out: i64,
        k: i64,
        stride: i64,
        pad: i64,
        affine: bool,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            conv: Conv::new(&mut p.sub("conv"), c_in, c_out, k, stride, pad, 1, 1)?,
            bn: BatchNorm::new(&mut p.sub("bn"), c_out, affine)?,
        })
    }
    pub fn forward(&self, x: &Tensor, train: bool) -> anyhow::Result<Tensor> {
        self.forward_scaled(x, None, train)
    }
    fn forward_scaled(&self, x: &Tensor, scale: Option<&Tensor>, train: bool) -> anyhow::Result<Tensor> {
        self.bn.forward_scaled(&self.conv.forward(&x.f_relu()?)?, scale, train)
    }
}

impl Op for ReluConvBn {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        ReluConvBn::forward(self, single(inputs)?, train)
    }
    fn forward_scaled(&self, inputs: &[Tensor], scale: &Tensor, train: bool) -> Option<anyhow::Result<Tensor>> {
        Some(single(inputs).and_then(|x| ReluConvBn::forward_scaled(self, x, Some(scale), train)))
    }
}

/// ReLU -> depthwise conv (dilated) -> pointwise conv -> BN.
pub struct DilConv {
    dw: Conv,
    pw: Conv,
    bn: BatchNorm,
    recompute: RecomputeSwitch,
}

impl DilConv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &mut ParamBuilder,
        c_in: i64,
        c_out: i64,
        k: i64,
        stride: i64,
        pad: i64,
        dil: i64,
        affine: bool,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            dw: Conv::new(&mut p.sub("dw"), c_in, c_in, k, stride, pad, dil, c_in)?,
            pw: Conv::new(&mut p.sub("pw"), c_in, c_out, 1, 1, 0, 1, 1)?,
            bn: BatchNorm::new(&mut p.sub("bn"), c_out, affine)?,
            recompute: p.recompute_switch(),
        })
    }
    /// The whole op, its output times `scale` when given.
    fn forward_scaled(&self, x: &Tensor, scale: Option<&Tensor>, train: bool) -> anyhow::Result<Tensor> {
        self.tail(&self.dw.relu_forward(x)?, scale, train, false)
    }

    /// The pointwise convolution and the norm on the depthwise convolution's output `d` (times
    /// `scale` when given, then a ReLU with `relu`). With recomputation on, in training, they run
    /// again in the backward pass from `d` (kept for the pointwise convolution anyway): the
    /// norm's input is not kept. The depthwise convolution is not recomputed: on a CPU it is most
    /// of the op's time.
    fn tail(&self, d: &Tensor, scale: Option<&Tensor>, train: bool, relu: bool) -> anyhow::Result<Tensor> {
        if !(train && self.recompute.is_on()) {
            return pointwise_norm(&self.pw, &self.bn, d, scale, train, Pass::First, relu);
        }
        let (pw, bn) = (self.pw.share(), self.bn.share());
        let scale = scale.map(Tensor::shallow_clone);
        let mut params = vec![pw.weight.shallow_clone()];
        params.extend(bn.params());
        params.extend(scale.iter().map(Tensor::shallow_clone));
        recomputed(&[d], params, move |t, pass| pointwise_norm(&pw, &bn, &t[0], scale.as_ref(), train, pass, relu))
    }
}

/// `bn(pw(d))` (times `scale`), then a ReLU with `relu`: the tail of a [`DilConv`], in the given
/// run of a recomputed body.
fn pointwise_norm(
    pw: &Conv,
    bn: &BatchNorm,
    d: &Tensor,
    scale: Option<&Tensor>,
    train: bool,
    pass: Pass,
    relu: bool,
) -> anyhow::Result<Tensor> {
    let y = bn.forward_in(&pw.forward(d)?, scale, train, pass)?;
    Ok(if relu { y.f_relu()? } else { y })
}

impl Op for DilConv {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        DilConv::forward_scaled(self, single(inputs)?, None, train)
    }
    fn forward_scaled(&self, inputs: &[Tensor], scale: &Tensor, train: bool) -> Option<anyhow::Result<Tensor>> {
        Some(single(inputs).and_then(|x| DilConv::forward_scaled(self, x, Some(scale), train)))
    }
}

/// Two stacked `DilConv`s with dilation 1, the first carrying the stride.
pub struct SepConv {
    first: DilConv,
    second: DilConv,
}

impl SepConv {
    pub fn new(
        p: &mut ParamBuilder,
        c_in: i64,
        c_out: i64,
        k: i64,
        stride: i64,
        pad: i64,
        affine: bool,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            first: DilConv::new(&mut p.sub("op1"), c_in, c_in, k, stride, pad, 1, affine)?,
            second: DilConv::new(&mut p.sub("op2"), c_in, c_out, k, 1, pad, 1, affine)?,
        })
    }
    /// Each half applies its ReLU after its convolution's rearrangements (see
    /// `Conv::relu_forward`: a strided first half's ReLU runs on the pixels it reads). With
    /// recomputation on, in training, each half keeps only its depthwise convolution's input and
    /// output: its pointwise convolution and norm (and the ReLU between the halves) run again in
    /// the backward pass. Of the six tensors the op would keep, four are kept, and no depthwise
    /// convolution (most of the op's time on a CPU) runs twice.
    fn forward_scaled(&self, x: &Tensor, scale: Option<&Tensor>, train: bool) -> anyhow::Result<Tensor> {
        // Recomputing, the ReLU between the halves belongs to the first half's recomputed tail,
        // so that its output (the second depthwise convolution's input) is the only tensor kept.
        let recompute = train && self.first.recompute.is_on();
        let y = self.first.tail(&self.first.dw.relu_forward(x)?, None, train, recompute)?;
        let d2 = if recompute { self.second.dw.forward(&y)? } else { self.second.dw.relu_forward(&y)? };
        self.second.tail(&d2, scale, train, false)
    }
}

impl Op for SepConv {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        SepConv::forward_scaled(self, single(inputs)?, None, train)
    }
    fn forward_scaled(&self, inputs: &[Tensor], scale: &Tensor, train: bool) -> Option<anyhow::Result<Tensor>> {
        Some(single(inputs).and_then(|x| SepConv::forward_scaled(self, x, Some(scale), train)))
    }
}

/// ReLU, two 1x1 stride-2 convs on offset grids, concatenated, BN: halves the spatial size.
pub struct FactorizedReduce {
    conv1: Conv,
    conv2: Conv,
    bn: BatchNorm,
}

impl FactorizedReduce {
    pub fn new(p: &mut ParamBuilder, c_in: i64, c_out: i64, affine: bool) -> anyhow::Result<Self> {
        anyhow::ensure!(c_out % 2 == 0, "factorized_reduce needs an even c_out, got {c_out}");
        Ok(Self {
            conv1: Conv::new(&mut p.sub("conv1"), c_in, c_out / 2, 1, 2, 0, 1, 1)?,
            conv2: Conv::new(&mut p.sub("conv2"), c_in, c_out / 2, 1, 2, 0, 1, 1)?,
            bn: BatchNorm::new(&mut p.sub("bn"), c_out, affine)?,
        })
    }
    pub fn forward(&self, x: &Tensor, train: bool) -> anyhow::Result<Tensor> {
        self.forward_scaled(x, None, train)
    }
    fn forward_scaled(&self, x: &Tensor, scale: Option<&Tensor>, train: bool) -> anyhow::Result<Tensor> {
        // The ReLU runs on the pixels each convolution reads (a quarter each).
        let a = self.conv1.relu_forward(x)?;
        // The grid offset by one pixel: `x` moved up and left by one, a zero row and column
        // coming in below and right. On odd sizes its last row and column are those zeros, where
        // the halves must line up (a 1x1 convolution without bias maps zeros to zeros). Not a
        // slice: `constant_pad_nd` keeps the memory format of the gradient too (see
        // layers::dense_crop).
        let shifted = x.f_constant_pad_nd([-1, 1, -1, 1])?;
        let b = self.conv2.relu_forward(&shifted)?;
        self.bn.forward_scaled(&Tensor::f_cat(&[a, b], 1)?, scale, train)
    }
}

impl Op for FactorizedReduce {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        FactorizedReduce::forward(self, single(inputs)?, train)
    }
    fn forward_scaled(&self, inputs: &[Tensor], scale: &Tensor, train: bool) -> Option<anyhow::Result<Tensor>> {
        Some(single(inputs).and_then(|x| FactorizedReduce::forward_scaled(self, x, Some(scale), train)))
    }
}

/// Identity (stride 1, same channels) or a factorized reduction.
pub struct SkipConnect {
    reduce: Option<FactorizedReduce>,
}

impl Op for SkipConnect {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let x = single(inputs)?;
        match &self.reduce {
            Some(r) => r.forward(x, train),
            None => Ok(x.shallow_clone()),
        }
    }
    /// The identity is left to the caller's multiplication (which keeps only the input).
    fn forward_scaled(&self, inputs: &[Tensor], scale: &Tensor, train: bool) -> Option<anyhow::Result<Tensor>> {
        let r = self.reduce.as_ref()?;
        Some(single(inputs).and_then(|x| r.forward_scaled(x, Some(scale), train)))
    }
}

fn create_none(v: &serde_json::Value, _: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let c = CellOpConfig::parse(v)?;
    Ok(Box::new(Zero { stride: c.stride, c_out: c.c_out() }))
}

fn pool(v: &serde_json::Value, p: &mut ParamBuilder, max: bool) -> anyhow::Result<Box<dyn Op>> {
    let c = CellOpConfig::parse(v)?;
    anyhow::ensure!(c.c_out() == c.c_in, "pooling keeps channels: c_out ({}) must equal c_in ({})", c.c_out(), c.c_in);
    let bn = if c.pool_bn { Some(BatchNorm::new(&mut p.sub("bn"), c.c_in, false)?) } else { None };
    Ok(Box::new(Pool { max, stride: c.stride, bn, recompute: p.recompute_switch() }))
}

fn create_max_pool(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    pool(v, p, true)
}
fn create_avg_pool(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    pool(v, p, false)
}

fn create_skip(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let c = CellOpConfig::parse(v)?;
    let reduce = if c.stride == 1 && c.c_out() == c.c_in {
        None
    } else {
        Some(FactorizedReduce::new(p, c.c_in, c.c_out(), c.affine)?)
    };
    anyhow::ensure!(c.stride == 2 || reduce.is_none(), "skip_connect with stride 1 must keep channels");
    Ok(Box::new(SkipConnect { reduce }))
}

fn sep(v: &serde_json::Value, p: &mut ParamBuilder, k: i64) -> anyhow::Result<Box<dyn Op>> {
    let c = CellOpConfig::parse(v)?;
    Ok(Box::new(SepConv::new(p, c.c_in, c.c_out(), k, c.stride, k / 2, c.affine)?))
}
fn dil(v: &serde_json::Value, p: &mut ParamBuilder, k: i64) -> anyhow::Result<Box<dyn Op>> {
    let c = CellOpConfig::parse(v)?;
    Ok(Box::new(DilConv::new(p, c.c_in, c.c_out(), k, c.stride, k - 1, 2, c.affine)?))
}
fn create_sep3(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    sep(v, p, 3)
}
fn create_sep5(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    sep(v, p, 5)
}
fn create_dil3(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    dil(v, p, 3)
}
fn create_dil5(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    dil(v, p, 5)
}

/// `{c_in, c_out, kernel_size (1), stride (1), padding (kernel_size/2), affine (true)}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConvBnConfig {
    c_in: i64,
    c_out: i64,
    #[serde(default = "one")]
    kernel_size: i64,
    #[serde(default = "one")]
    stride: i64,
    padding: Option<i64>,
    #[serde(default = "yes")]
    affine: bool,
    /// `conv_bn` only: apply ReLU after BN.
    #[serde(default)]
    relu: bool,
}

fn parse<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(v.clone()).map_err(|e| anyhow::anyhow!("bad op config {v}: {e}"))
}

fn create_relu_conv_bn(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let c: ConvBnConfig = parse(v)?;
    anyhow::ensure!(!c.relu, "relu_conv_bn always starts with ReLU; `relu` is for conv_bn");
    Ok(Box::new(ReluConvBn::new(
        p,
        c.c_in,
        c.c_out,
        c.kernel_size,
        c.stride,
        c.padding.unwrap_or(c.kernel_size / 2),
        c.affine,
    )?))
}

fn create_factorized_reduce(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let c = CellOpConfig::parse(v)?;
    Ok(Box::new(FactorizedReduce::new(p, c.c_in, c.c_out(), c.affine)?))
}

/// conv -> BN (-> ReLU): stems and handcrafted nets.
pub struct ConvBn {
    conv: Conv,
    bn: BatchNorm,
    relu: bool,
}

impl Op for ConvBn {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let y = self.bn.forward(&self.conv.forward(single(inputs)?)?, train)?;
        Ok(if self.relu { relu_of_fresh(y)? } else { y })
    }
}

fn create_conv_bn(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let c: ConvBnConfig = parse(v)?;
    Ok(Box::new(ConvBn {
        conv: Conv::new(
            &mut p.sub("conv"),
            c.c_in,
            c.c_out,
            c.kernel_size,
            c.stride,
            c.padding.unwrap_or(c.kernel_size / 2),
            1,
            1,
        )?,
        bn: BatchNorm::new(&mut p.sub("bn"), c.c_out, c.affine)?,
        relu: c.relu,
    }))
}

/// ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN plus shortcut (1x1 conv-BN when the shape
/// changes), then ReLU.
pub struct BasicBlock {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    shortcut: Option<(Conv, BatchNorm)>,
}

impl Op for BasicBlock {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let x = single(inputs)?;
        let y = relu_of_fresh(self.bn1.forward(&self.conv1.forward(x)?, train)?)?;
        let mut y = self.bn2.forward(&self.conv2.forward(&y)?, train)?;
        let s = match &self.shortcut {
            Some((conv, bn)) => bn.forward(&conv.forward(x)?, train)?,
            None => x.shallow_clone(),
        };
        // In place: a batch norm's backward reads its input, never its output. An in-place sum
        // would round `s` to `y`'s type, so mixed types add out of place (promoting).
        if y.kind() == s.kind() {
            relu_of_fresh(y.f_add_(&s)?)
        } else {
            relu_of_fresh(y.f_add(&s)?)
        }
    }
}

fn create_basic_block(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let c = CellOpConfig::parse(v)?;
    let c_out = c.c_out();
    let shortcut = if c.stride != 1 || c_out != c.c_in {
        Some((
            Conv::new(&mut p.sub("shortcut.conv"), c.c_in, c_out, 1, c.stride, 0, 1, 1)?,
            BatchNorm::new(&mut p.sub("shortcut.bn"), c_out, true)?,
        ))
    } else {
        None
    };
    Ok(Box::new(BasicBlock {
        conv1: Conv::new(&mut p.sub("conv1"), c.c_in, c_out, 3, c.stride, 1, 1, 1)?,
        bn1: BatchNorm::new(&mut p.sub("bn1"), c_out, true)?,
        conv2: Conv::new(&mut p.sub("conv2"), c_out, c_out, 3, 1, 1, 1, 1)?,
        bn2: BatchNorm::new(&mut p.sub("bn2"), c_out, true)?,
        shortcut,
    }))
}

/// Fully connected layer `{c_in, c_out}` on (N, c_in) input.
pub struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Op for Linear {
    fn forward(&self, inputs: &[Tensor], _train: bool) -> anyhow::Result<Tensor> {
        Ok(single(inputs)?.f_linear(&self.w, Some(&self.b))?)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearConfig {
    c_in: i64,
    c_out: i64,
}

fn create_linear(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let c: LinearConfig = parse(v)?;
    Ok(Box::new(new_linear(p, c.c_in, c.c_out)?))
}

fn new_linear(p: &mut ParamBuilder, c_in: i64, c_out: i64) -> anyhow::Result<Linear> {
    let bound = 1.0 / (c_in as f64).sqrt();
    Ok(Linear {
        w: p.weight("weight", &[c_out, c_in], Init::KaimingUniform)?,
        b: p.weight("bias", &[c_out], Init::Uniform { lo: -bound, hi: bound })?,
    })
}

/// DARTS' auxiliary head: ReLU -> 5x5 average pooling to 2x2 -> conv1x1(128)-BN-ReLU ->
/// conv2x2(768)-BN-ReLU -> linear. DARTS pools its 8x8 maps with stride 3; for other sizes the
/// stride is chosen so the output is 2x2 as well (7x7 Fashion-MNIST maps: stride 2), and maps
/// outside 6..=10 are pooled adaptively to 2x2.
pub struct AuxHead {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    linear: Linear,
}

impl Op for AuxHead {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let x = single(inputs)?.f_relu()?;
        let (_, _, h, w) = x.size4()?;
        let pooled = if h == w && (6..=10).contains(&h) {
            x.f_avg_pool2d([5, 5], [h - 5, h - 5], [0, 0], false, false, None::<i64>)?
        } else {
            x.f_adaptive_avg_pool2d([2, 2])?
        };
        let y = self.bn1.forward(&self.conv1.forward(&pooled)?, train)?.f_relu()?;
        let y = self.bn2.forward(&self.conv2.forward(&y)?, train)?.f_relu()?;
        self.linear.forward(&[y.f_flatten(1, -1)?], train)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuxHeadConfig {
    c_in: i64,
    num_classes: i64,
    /// Width of the 1x1 conv (DARTS: 128).
    #[serde(default = "aux_mid")]
    c_mid: i64,
    /// Width of the 2x2 conv before the linear layer (DARTS: 768).
    #[serde(default = "aux_hidden")]
    c_hidden: i64,
}

fn aux_mid() -> i64 {
    128
}
fn aux_hidden() -> i64 {
    768
}

fn create_aux_head(v: &serde_json::Value, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let c: AuxHeadConfig = parse(v)?;
    anyhow::ensure!(
        c.c_in > 0 && c.num_classes > 0 && c.c_mid > 0 && c.c_hidden > 0,
        "aux_head needs positive c_in, num_classes, c_mid and c_hidden, got {v}"
    );
    Ok(Box::new(AuxHead {
        conv1: Conv::new(&mut p.sub("conv1"), c.c_in, c.c_mid, 1, 1, 0, 1, 1)?,
        bn1: BatchNorm::new(&mut p.sub("bn1"), c.c_mid, true)?,
        conv2: Conv::new(&mut p.sub("conv2"), c.c_mid, c.c_hidden, 2, 1, 0, 1, 1)?,
        bn2: BatchNorm::new(&mut p.sub("bn2"), c.c_hidden, true)?,
        linear: new_linear(&mut p.sub("linear"), c.c_hidden, c.num_classes)?,
    }))
}

/// Global average pooling to (N, C).
pub struct GlobalAvgPool;

impl Op for GlobalAvgPool {
    fn forward(&self, inputs: &[Tensor], _train: bool) -> anyhow::Result<Tensor> {
        Ok(single(inputs)?.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)?)
    }
}

fn create_global_avg_pool(_: &serde_json::Value, _: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    Ok(Box::new(GlobalAvgPool))
}

/// Passes its single input through.
pub struct Identity;

impl Op for Identity {
    fn forward(&self, inputs: &[Tensor], _train: bool) -> anyhow::Result<Tensor> {
        Ok(single(inputs)?.shallow_clone())
    }
}

fn create_identity(_: &serde_json::Value, _: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    Ok(Box::new(Identity))
}

register_op!("none", "zero op (DARTS); stride 2 halves H and W", create_none, costs::free);
register_op!("max_pool_3x3", "3x3 max pooling, padding 1 (pool_bn: add BN)", create_max_pool, costs::free);
register_op!(
    "avg_pool_3x3",
    "3x3 average pooling, padding 1, pad not counted (pool_bn: add BN)",
    create_avg_pool,
    costs::free
);
register_op!("skip_connect", "identity; factorized reduce when stride 2", create_skip, costs::skip);
register_op!("sep_conv_3x3", "separable conv 3x3, applied twice (DARTS)", create_sep3, costs::sep3);
register_op!("sep_conv_5x5", "separable conv 5x5, applied twice (DARTS)", create_sep5, costs::sep5);
register_op!("dil_conv_3x3", "dilated (2) depthwise-separable conv 3x3", create_dil3, costs::dil3);
register_op!("dil_conv_5x5", "dilated (2) depthwise-separable conv 5x5", create_dil5, costs::dil5);
register_op!("relu_conv_bn", "ReLU -> conv(kernel_size, stride, padding) -> BN", create_relu_conv_bn, costs::conv);
register_op!(
    "factorized_reduce",
    "ReLU -> two offset 1x1 stride-2 convs, concat -> BN",
    create_factorized_reduce,
    costs::factorized_reduce
);
register_op!("conv_bn", "conv -> BN (-> ReLU with relu: true); stems", create_conv_bn, costs::conv);
register_op!("basic_block", "ResNet basic block with projection shortcut", create_basic_block, costs::basic_block);
register_op!("linear", "fully connected layer", create_linear, costs::linear);
register_op!(
    "aux_head",
    "DARTS auxiliary classifier: pool to 2x2, 1x1 conv c_mid (128), 2x2 conv c_hidden (768), linear",
    create_aux_head
);
register_op!("global_avg_pool", "global average pooling to (N, C)", create_global_avg_pool, costs::global_avg_pool);
register_op!("identity", "passes its input through", create_identity, costs::free);
