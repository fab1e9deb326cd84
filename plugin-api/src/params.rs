//! Parameters of plugin components are created by the host, which owns, names, optimizes and
//! checkpoints them. A plugin asks through [`ParamHost`]; [`ParamBuilder`] adds path scoping
//! (like candle's `VarBuilder` or tch's `nn::Path`).
use crate::abi::OpBox;
use crate::tensor::{TensorOwned, TensorRef};
use abi_stable::std_types::{RArc, RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::{sabi_trait, sabi_trait::TD_Opaque, StableAbi};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::Tensor;

/// What a parameter is for; the host keeps the groups apart.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamRole {
    /// A trainable weight (optimized by the weight optimizer).
    Weight,
    /// Non-trainable state that is checkpointed (batch-norm running statistics).
    Buffer,
    /// An architecture parameter (alphas), optimized separately by the search algorithm.
    Arch,
}

/// How a parameter is initialized.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Const(f64),
    Uniform {
        lo: f64,
        hi: f64,
    },
    Normal {
        mean: f64,
        std: f64,
    },
    /// PyTorch's default for conv and linear weights (`kaiming_uniform_` with a = sqrt(5)): U(-b, b),
    /// b = 1/sqrt(fan_in).
    KaimingUniform,
}

/// A request for one host-owned parameter.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct ParamSpec {
    /// Name relative to the component's scope; the host prefixes the scope.
    pub name: RString,
    pub shape: RVec<i64>,
    pub init: Init,
    pub role: ParamRole,
}

/// Whether the ops of a network recompute the cheap parts of their forward pass in the backward
/// pass instead of keeping their activations (`trainer.recompute_ops`). The host owns it and sets
/// it for each run phase; an op gets it at construction
/// ([`ParamBuilder::recompute_switch`]) and reads it in each training forward pass. Which parts
/// are cheap is the op's call (see [`crate::kit::recompute`]); results do not change, only memory
/// and time.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct RecomputeSwitch {
    on: RArc<AtomicBool>,
}

impl RecomputeSwitch {
    pub fn new(on: bool) -> Self {
        Self { on: RArc::new(AtomicBool::new(on)) }
    }
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }
    /// Host side: turns recomputation on or off for every op holding this switch.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }
}

/// Host services for building a component: its parameters, the architecture parameters of the
/// model, and (for mixers and other composite ops) other ops by name. Implemented by the host.
#[sabi_trait]
pub trait ParamHost {
    /// Creates (or, when resuming, finds) the parameter and returns a handle sharing its storage
    /// and autograd identity with the host's copy.
    fn param(&mut self, spec: ParamSpec) -> RResult<TensorOwned, RString>;
    /// The architecture parameter declared in the model description under `name` (full name,
    /// not scoped): same storage and autograd identity as the host's.
    fn arch_param(&mut self, name: RStr<'_>) -> RResult<TensorOwned, RString>;
    /// Builds op `name` from any op plugin, its parameters scoped under this component's scope
    /// plus `scope`. The host counts the forward calls of ops built this way.
    fn create_op(&mut self, name: RStr<'_>, config_json: RStr<'_>, scope: RStr<'_>) -> RResult<OpBox, RString>;
    /// The network's [`RecomputeSwitch`] (shared: the host flips it later).
    fn recompute_switch(&self) -> RecomputeSwitch;
}

/// The boxed form of a [`ParamHost`] passed to constructors.
pub type ParamHostBox<'a> = ParamHost_TO<'a, RBox<()>>;

/// Makes a boxed [`ParamHost`] from any implementation (host side).
pub fn param_host_box<'a, P: ParamHost + 'a>(p: P) -> ParamHostBox<'a> {
    ParamHost_TO::from_value(p, TD_Opaque)
}

/// Plugin-side convenience over [`ParamHost`] with path scoping.
pub struct ParamBuilder<'h, 'a> {
    host: &'h mut ParamHostBox<'a>,
    prefix: String,
}

impl<'h, 'a> ParamBuilder<'h, 'a> {
    pub fn new(host: &'h mut ParamHostBox<'a>) -> Self {
        Self { host, prefix: String::new() }
    }

    /// A builder whose names are prefixed with `name.`; the parent is borrowed meanwhile.
    pub fn sub(&mut self, name: impl AsRef<str>) -> ParamBuilder<'_, 'a> {
        let prefix = if self.prefix.is_empty() {
            name.as_ref().to_string()
        } else {
            format!("{}.{}", self.prefix, name.as_ref())
        };
        ParamBuilder { host: self.host, prefix }
    }

    fn create(&mut self, name: &str, shape: &[i64], init: Init, role: ParamRole) -> anyhow::Result<Tensor> {
        let full = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{}", self.prefix, name) };
        let spec = ParamSpec { name: full.as_str().into(), shape: shape.iter().copied().collect(), init, role };
        match self.host.param(spec) {
            RResult::ROk(t) => Ok(t.into_tensor()),
            RResult::RErr(e) => Err(anyhow::anyhow!("creating parameter `{full}`: {e}")),
        }
    }

    /// A trainable weight.
    pub fn weight(&mut self, name: &str, shape: &[i64], init: Init) -> anyhow::Result<Tensor> {
        self.create(name, shape, init, ParamRole::Weight)
    }

    /// Non-trainable, checkpointed state.
    pub fn buffer(&mut self, name: &str, shape: &[i64], init: Init) -> anyhow::Result<Tensor> {
        self.create(name, shape, init, ParamRole::Buffer)
    }

    /// An architecture parameter.
    pub fn arch(&mut self, name: &str, shape: &[i64], init: Init) -> anyhow::Result<Tensor> {
        self.create(name, shape, init, ParamRole::Arch)
    }
}

impl<'h, 'a> ParamBuilder<'h, 'a> {
    /// The scope prefix of this builder (empty at the component's root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The model's architecture parameter `name` (declared in the model description's
    /// `arch_params`); an error names it and says what is declared.
    pub fn arch_param(&mut self, name: &str) -> anyhow::Result<Tensor> {
        match self.host.arch_param(RStr::from(name)) {
            RResult::ROk(t) => Ok(t.into_tensor()),
            RResult::RErr(e) => Err(anyhow::anyhow!("{e}")),
        }
    }

    /// The switch that says, at each forward pass, whether this op should recompute the cheap
    /// parts of its forward pass in the backward pass ([`crate::kit::recompute`]).
    pub fn recompute_switch(&self) -> RecomputeSwitch {
        self.host.recompute_switch()
    }

    /// Builds op `name` (from any op plugin) with `config`; its parameters live under this
    /// builder's scope plus `scope`.
    pub fn op(&mut self, name: &str, config: &serde_json::Value, scope: &str) -> anyhow::Result<HostOp> {
        let full = if self.prefix.is_empty() { scope.to_string() } else { format!("{}.{scope}", self.prefix) };
        let json = config.to_string();
        match self.host.create_op(RStr::from(name), RStr::from(json.as_str()), RStr::from(full.as_str())) {
            RResult::ROk(op) => Ok(HostOp { op, name: name.to_string() }),
            RResult::RErr(e) => Err(anyhow::anyhow!("building candidate op `{name}`: {e}")),
        }
    }
}

/// An op built through the host (a mixer's candidate): call it like a local op.
pub struct HostOp {
    op: OpBox,
    name: String,
}

impl HostOp {
    /// The op's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the op on borrowed inputs.
    pub fn forward(&self, inputs: &[&Tensor], train: bool) -> anyhow::Result<Tensor> {
        let refs: Vec<TensorRef<'_>> = inputs.iter().map(|t| TensorRef::new(t)).collect();
        match self.op.forward(refs.as_slice().into(), train) {
            RResult::ROk(t) => Ok(t.into_tensor()),
            RResult::RErr(e) => Err(anyhow::anyhow!("op `{}`: {e}", self.name)),
        }
    }

    /// `forward(inputs) * scale` for a 0-dim `scale`: folded into the op's last layer where the
    /// op can (see [`crate::Op::forward_scaled`]), multiplied here otherwise.
    pub fn forward_scaled(&self, inputs: &[&Tensor], scale: &Tensor, train: bool) -> anyhow::Result<Tensor> {
        let refs: Vec<TensorRef<'_>> = inputs.iter().map(|t| TensorRef::new(t)).collect();
        match self.op.forward_scaled(refs.as_slice().into(), TensorRef::new(scale), train) {
            RResult::ROk(ROption::RSome(t)) => Ok(t.into_tensor()),
            RResult::ROk(ROption::RNone) => Ok(self.forward(inputs, train)?.f_mul(scale)?),
            RResult::RErr(e) => Err(anyhow::anyhow!("op `{}`: {e}", self.name)),
        }
    }
}
