//! The host owns every parameter: weights, buffers (batch-norm statistics) and architecture
//! parameters, kept in separate stores so optimizers and checkpoints can treat them apart.
use crate::plugins::{host_service, CandidateTaps, CountedOp, PluginRegistry};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};
use archai_plugin_api::{Init, OpBox, OpObj_TO, ParamHost, ParamRole, ParamSpec, TensorOwned};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use tch::nn::{self, VarStore};
use tch::{Device, Tensor};

/// Weights and buffers in one `VarStore`, architecture parameters in another.
pub struct ParamStore {
    pub weights: VarStore,
    pub arch: VarStore,
    /// Names of the non-trainable buffers in `weights`.
    buffers: RefCell<Vec<String>>,
    /// Handed to every op built on this store (`trainer.recompute_ops`).
    recompute_ops: archai_plugin_api::RecomputeSwitch,
}

impl ParamStore {
    pub fn new(device: Device) -> Self {
        Self {
            weights: VarStore::new(device),
            arch: VarStore::new(device),
            buffers: RefCell::new(Vec::new()),
            recompute_ops: archai_plugin_api::RecomputeSwitch::new(false),
        }
    }

    /// Whether the ops built on this store recompute the cheap parts of their forward pass in
    /// the backward pass (`trainer.recompute_ops`); they read it at every forward pass.
    pub fn set_recompute_ops(&self, on: bool) {
        self.recompute_ops.set(on);
    }

    pub fn recompute_ops(&self) -> bool {
        self.recompute_ops.is_on()
    }

    pub fn device(&self) -> Device {
        self.weights.device()
    }

    /// Creates one parameter named `name` (dot-separated path).
    pub fn create(&self, name: &str, shape: &[i64], init: Init, role: ParamRole) -> Result<Tensor, String> {
        let store = if role == ParamRole::Arch { &self.arch } else { &self.weights };
        if store.variables_.lock().map_err(|_| "parameter store poisoned")?.named_variables.contains_key(name) {
            return Err(format!("parameter `{name}` already exists; two components share one scope"));
        }
        let parts: Vec<&str> = name.split('.').collect();
        let (leaf, dirs) = parts.split_last().ok_or("empty parameter name")?;
        if leaf.is_empty() || dirs.iter().any(|d| d.is_empty()) {
            return Err(format!("bad parameter name `{name}`"));
        }
        let mut path = store.root();
        for d in dirs {
            path = path.sub(*d);
        }
        let tensor = match role {
            ParamRole::Buffer => {
                let t = match init {
                    Init::Zeros => path.f_zeros_no_train(leaf, shape),
                    Init::Ones => path.f_ones_no_train(leaf, shape),
                    other => {
                        let v = path.f_var(leaf, shape, to_tch_init(other)).map_err(|e| e.to_string())?;
                        let _ = v.set_requires_grad(false);
                        Ok(v)
                    }
                }
                .map_err(|e| e.to_string())?;
                self.buffers.borrow_mut().push(name.to_string());
                t
            }
            ParamRole::Weight | ParamRole::Arch => {
                path.f_var(leaf, shape, to_tch_init(init)).map_err(|e| e.to_string())?
            }
        };
        Ok(tensor)
    }

    /// Trainable weights by name, sorted (buffers excluded).
    pub fn named_weights(&self) -> Vec<(String, Tensor)> {
        let buffers = self.buffers.borrow();
        sorted(&self.weights).into_iter().filter(|(n, _)| !buffers.contains(n)).collect()
    }

    /// Buffers by name, sorted.
    pub fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let buffers = self.buffers.borrow();
        sorted(&self.weights).into_iter().filter(|(n, _)| buffers.contains(n)).collect()
    }

    /// Architecture parameters by name, sorted.
    pub fn named_arch(&self) -> Vec<(String, Tensor)> {
        sorted(&self.arch)
    }

    /// Number of trainable weight elements.
    pub fn weight_count(&self) -> i64 {
        self.named_weights().iter().map(|(_, t)| t.numel() as i64).sum()
    }

    /// Number of architecture-parameter elements.
    pub fn arch_count(&self) -> i64 {
        self.named_arch().iter().map(|(_, t)| t.numel() as i64).sum()
    }

    /// SHA-256 (hex) over every weight, buffer and architecture parameter: name, kind, shape and
    /// the exact bytes, in name order. Two runs with the same hash ended with bit-identical
    /// networks (`archai reproduce` compares it).
    pub fn sha256(&self) -> String {
        sha256_of(self.named_weights().into_iter().chain(self.named_buffers()).chain(self.named_arch()))
    }

    /// [`sha256`](Self::sha256) over the trained tensors only (weights and architecture
    /// parameters, no buffers): what data-parallel ranks must agree on after every step.
    pub fn trained_sha256(&self) -> String {
        sha256_of(self.named_weights().into_iter().chain(self.named_arch()))
    }
}

/// SHA-256 (hex) over named tensors: each one's name, kind, shape and exact bytes, in the order
/// given.
fn sha256_of(tensors: impl Iterator<Item = (String, Tensor)>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (name, t) in tensors {
        let t = t.detach().to_device(Device::Cpu).contiguous();
        h.update(name.as_bytes());
        h.update(format!("{:?}{:?}", t.kind(), t.size()).as_bytes());
        let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut bytes, t.numel());
        h.update(&bytes);
    }
    format!("{:x}", h.finalize())
}

fn sorted(vs: &VarStore) -> Vec<(String, Tensor)> {
    let map: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    map.into_iter().collect()
}

fn to_tch_init(init: Init) -> nn::Init {
    match init {
        Init::Zeros => nn::Init::Const(0.0),
        Init::Ones => nn::Init::Const(1.0),
        Init::Const(v) => nn::Init::Const(v),
        Init::Uniform { lo, hi } => nn::Init::Uniform { lo, up: hi },
        Init::Normal { mean, std } => nn::Init::Randn { mean, stdev: std },
        // PyTorch's default (kaiming_uniform_ with a = sqrt(5)): gain 1/sqrt(3), so the bound
        // sqrt(3) * gain / sqrt(fan_in) is 1/sqrt(fan_in). tch's DEFAULT_KAIMING_UNIFORM uses
        // the ReLU gain, sqrt(6/fan_in): 2.45 times wider than what the plugin API promises.
        Init::KaimingUniform => nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Uniform,
            fan: nn::init::FanInOut::FanIn,
            non_linearity: nn::init::NonLinearity::ExplicitGain(1.0 / 3f64.sqrt()),
        },
    }
}

/// The [`ParamHost`] handed to one component: names are prefixed with its scope; architecture
/// parameters are looked up by full name; other ops can be built (when a registry is given).
pub struct ScopedParamHost<'s> {
    store: &'s ParamStore,
    scope: String,
    registry: Option<&'s PluginRegistry>,
    taps: Option<Arc<CandidateTaps>>,
}

impl<'s> ScopedParamHost<'s> {
    pub fn new(store: &'s ParamStore, scope: &str) -> Self {
        Self { store, scope: scope.to_string(), registry: None, taps: None }
    }

    /// Lets the component build ops from `registry`; their forwards are observed by `taps`.
    pub fn with_ops(mut self, registry: &'s PluginRegistry, taps: Option<Arc<CandidateTaps>>) -> Self {
        self.registry = Some(registry);
        self.taps = taps;
        self
    }

    fn scoped(&self, name: &str) -> String {
        if self.scope.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.scope, name)
        }
    }
}

impl ParamHost for ScopedParamHost<'_> {
    fn param(&mut self, spec: ParamSpec) -> RResult<TensorOwned, RString> {
        host_service("param", || {
            let name = self.scoped(&spec.name);
            let t = self.store.create(&name, &spec.shape, spec.init, spec.role)?;
            Ok(TensorOwned::new(t.shallow_clone()))
        })
    }

    fn arch_param(&mut self, name: RStr<'_>) -> RResult<TensorOwned, RString> {
        host_service("arch_param", || {
            let all = self.store.named_arch();
            match all.iter().find(|(n, _)| n == name.as_str()) {
                Some((_, t)) => Ok(TensorOwned::new(t.shallow_clone())),
                None => {
                    let have: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
                    let have = if have.is_empty() { "none".to_string() } else { have.join(", ") };
                    Err(format!(
                        "architecture parameter `{name}` is not declared in the model description's arch_params \
                         (declared: {have})"
                    ))
                }
            }
        })
    }

    fn create_op(&mut self, name: RStr<'_>, config_json: RStr<'_>, scope: RStr<'_>) -> RResult<OpBox, RString> {
        host_service("create_op", || {
            let registry = self.registry.ok_or("this component cannot build other ops")?;
            let config: serde_json::Value =
                serde_json::from_str(config_json.as_str()).map_err(|e| format!("op config is not JSON: {e}"))?;
            let full = self.scoped(scope.as_str());
            let op = registry.create_op(name.as_str(), &config, self.store, &full).map_err(|e| e.to_string())?;
            Ok(OpObj_TO::from_value(CountedOp { op: op.into_box(), scope: full, taps: self.taps.clone() }, TD_Opaque))
        })
    }

    fn recompute_switch(&self) -> archai_plugin_api::RecomputeSwitch {
        self.store.recompute_ops.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plugin API promises PyTorch's default conv and linear init: U(-b, b), b = 1/sqrt(fan_in).
    #[test]
    fn kaiming_uniform_is_pytorchs_default() {
        // fan_in = 16 * 3 * 3 = 144: b = 1/12.
        let w = nn::init::init(to_tch_init(Init::KaimingUniform), &[64, 16, 3, 3], Device::Cpu);
        let b = 1.0 / 12.0;
        let max = w.abs().max().double_value(&[]);
        assert!(max <= b && max > 0.95 * b, "max |w| {max}, bound {b}");
        // Both checks hold for any draw of the generator, not a seeded one: 9216 draws all below
        // 0.95 b has probability 0.95^9216; U(-b, b) has std b/sqrt(3) and the sample std of
        // 9216 draws is within 0.5% of it (one standard error), 3% is six.
        let std = w.std(true).double_value(&[]);
        assert!((std / (b / 3f64.sqrt()) - 1.0).abs() < 0.03, "std {std}");
    }
}
