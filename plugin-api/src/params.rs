//! Parameters of plugin components are created by the host, which owns, names, optimizes and
//! checkpoints them. A plugin asks through [`ParamHost`]; [`ParamBuilder`] adds path scoping
//! (like candle's `VarBuilder` or tch's `nn::Path`).
use crate::tensor::TensorOwned;
use abi_stable::std_types::{RBox, RResult, RString, RVec};
use abi_stable::{sabi_trait, sabi_trait::TD_Opaque, StableAbi};
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
    /// PyTorch's default for conv and linear weights: U(-b, b), b = 1/sqrt(fan_in).
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

/// Host services for creating parameters, implemented by the host.
#[sabi_trait]
pub trait ParamHost {
    /// Creates (or, when resuming, finds) the parameter and returns a handle sharing its storage
    /// and autograd identity with the host's copy.
    fn param(&mut self, spec: ParamSpec) -> RResult<TensorOwned, RString>;
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
