//! The Rust side of components: the traits plugin authors implement, their registration through
//! `inventory`, and the generic exported functions that wrap every call in `catch_unwind`.
use crate::abi::*;
use crate::model_desc::ModelDesc;
use crate::params::{ParamBuilder, ParamHostBox};
use crate::tensor::{as_tensor_slice, view_slice, NamedTensor, TensorOwned, TensorRef};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::Tensor;

/// A network operation. `inputs` are borrowed for the call.
pub trait Op: Send + 'static {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor>;

    /// `forward(inputs) * scale` (`scale` a 0-dim tensor, a mixer's weight for this candidate),
    /// for ops that can fold the scale into their last layer, or `None` (the default) for the
    /// caller to multiply. An op ending in a batch norm scales the norm's weight and bias: the
    /// product is then never a tensor of its own, so the backward pass keeps one activation
    /// fewer per candidate (the norm's input serves both gradients) and the forward and backward
    /// passes skip a multiplication. Results equal `forward(inputs) * scale` up to float rounding,
    /// the scale's gradient included.
    fn forward_scaled(&self, _inputs: &[Tensor], _scale: &Tensor, _train: bool) -> Option<anyhow::Result<Tensor>> {
        None
    }
}

/// An op's cost formula: MACs per sample and the output shape `[C, H, W]` for an input of shape
/// `[C, H, W]`.
pub type CostFn = fn(config: &serde_json::Value, input: [i64; 3]) -> anyhow::Result<(i64, [i64; 3])>;

/// Registration of an op; submit with [`crate::register_op!`].
pub struct OpRegistration {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub create: fn(config: &serde_json::Value, params: &mut ParamBuilder<'_, '_>) -> anyhow::Result<Box<dyn Op>>,
    /// How `archai stats` counts this op; `None`: listed under `ops_without_macs`.
    pub cost: Option<CostFn>,
}
inventory::collect!(OpRegistration);

/// What a mixer is built from: the edge's candidates, the parameters every candidate gets
/// (`c_in`, `stride`, ...) and the mixer's own parameters from the model description.
#[derive(serde::Deserialize, serde::Serialize, Debug, Clone, PartialEq)]
pub struct MixerConfig {
    pub candidates: Vec<String>,
    #[serde(default)]
    pub candidate_params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

impl MixerConfig {
    /// The mixer parameter `key` deserialized, or an error naming the mixer and the key.
    pub fn param<T: serde::de::DeserializeOwned>(&self, mixer: &str, key: &str) -> anyhow::Result<T> {
        let v = self.params.get(key).ok_or_else(|| {
            anyhow::anyhow!(
                "mixer `{mixer}` needs the param `{key}` (got {:?})",
                self.params.keys().collect::<Vec<_>>()
            )
        })?;
        serde_json::from_value(v.clone()).map_err(|e| anyhow::anyhow!("mixer `{mixer}` param `{key}`: {e}"))
    }

    /// The mixer parameter `key`, or `default` when absent.
    pub fn param_or<T: serde::de::DeserializeOwned>(&self, mixer: &str, key: &str, default: T) -> anyhow::Result<T> {
        if self.params.contains_key(key) {
            self.param(mixer, key)
        } else {
            Ok(default)
        }
    }
}

/// Registration of a mixer; submit with [`crate::register_mixer!`]. A mixer is an op with one
/// input (the edge's input) that builds its candidates with [`ParamBuilder::op`].
pub struct MixerRegistration {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub create: fn(config: &MixerConfig, params: &mut ParamBuilder<'_, '_>) -> anyhow::Result<Box<dyn Op>>,
}
inventory::collect!(MixerRegistration);

/// Tensors of one training step, as owned shallow clones.
pub struct StepData {
    pub x: Tensor,
    pub y: Tensor,
    pub val_x: Tensor,
    pub val_y: Tensor,
    pub epoch: u32,
    pub step: u64,
    pub lr: f64,
}

impl StepData {
    /// Another handle to the same tensors (no data copied), e.g. to keep a step's batches until
    /// `after_step`.
    pub fn shallow_clone(&self) -> Self {
        Self {
            x: self.x.shallow_clone(),
            y: self.y.shallow_clone(),
            val_x: self.val_x.shallow_clone(),
            val_y: self.val_y.shallow_clone(),
            ..*self
        }
    }
}

/// The host's model as seen by an algorithm, with Rust types.
pub struct Model<'m, 'a> {
    services: &'m mut ModelServicesMut<'a>,
}

fn named(v: RVec<NamedTensor>) -> Vec<(String, Tensor)> {
    v.into_iter().map(|n| (n.name.into_string(), n.tensor.into_tensor())).collect()
}

impl<'m, 'a> Model<'m, 'a> {
    /// Trainable weights (same storage and autograd leaf as the host's), sorted by name.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        named(self.services.weights())
    }
    /// Architecture parameters, sorted by name.
    pub fn arch_params(&self) -> Vec<(String, Tensor)> {
        named(self.services.arch_params())
    }
    /// Train-mode loss of the model on `(x, y)`, graph kept.
    pub fn loss(&mut self, x: &Tensor, y: &Tensor) -> anyhow::Result<Tensor> {
        match self.services.loss(TensorRef::new(x), TensorRef::new(y)) {
            RResult::ROk(t) => Ok(t.into_tensor()),
            RResult::RErr(e) => Err(anyhow::anyhow!("{e}")),
        }
    }
    /// The weight optimizer's hyper-parameters.
    pub fn weight_optimizer(&self) -> anyhow::Result<WeightOptimizerInfo> {
        Ok(serde_json::from_str(self.services.weight_optimizer().as_str())?)
    }
    /// The weight optimizer's momentum buffers (undefined tensors where none exists yet).
    pub fn momentum_buffers(&self) -> Vec<(String, Tensor)> {
        named(self.services.momentum_buffers())
    }
    /// Logits of `x`; a graph is kept when gradients are enabled.
    pub fn logits(&mut self, x: &Tensor, train: bool) -> anyhow::Result<Tensor> {
        match self.services.logits(TensorRef::new(x), train) {
            RResult::ROk(t) => Ok(t.into_tensor()),
            RResult::RErr(e) => Err(anyhow::anyhow!("{e}")),
        }
    }
    /// The output of every candidate op whose scope starts with `scope_prefix` for `x` (eval
    /// mode, no gradients), named by scope (`cells.0.n2.e1.sep_conv_3x3`), in forward order.
    pub fn candidate_outputs(&mut self, x: &Tensor, scope_prefix: &str) -> anyhow::Result<Vec<(String, Tensor)>> {
        match self.services.candidate_outputs(TensorRef::new(x), RStr::from(scope_prefix)) {
            RResult::ROk(v) => Ok(named(v)),
            RResult::RErr(e) => Err(anyhow::anyhow!("{e}")),
        }
    }

    /// Batch `index` of the search's training split (normalized, not augmented), or `None` past
    /// the last one. Offered to finalizers.
    pub fn data_batch(&mut self, index: u64, batch_size: u64) -> anyhow::Result<Option<(Tensor, Tensor)>> {
        match self.services.data_batch(index, batch_size) {
            RResult::ROk(v) => {
                let mut v: Vec<Tensor> = v.into_iter().map(TensorOwned::into_tensor).collect();
                match v.len() {
                    0 => Ok(None),
                    2 => {
                        let y = v.pop().expect("two tensors");
                        Ok(Some((v.pop().expect("two tensors"), y)))
                    }
                    n => anyhow::bail!("the host returned {n} tensors for a data batch, expected images and labels"),
                }
            }
            RResult::RErr(e) => Err(anyhow::anyhow!("{e}")),
        }
    }

    /// The element-wise mean of each tensor over the ranks of a data-parallel run (the same
    /// tensors back in one process). Call it on gradients computed from the batch the host
    /// passed (each rank gets its rows of the global batch) before applying them: ranks whose
    /// architecture parameters drift apart stop the run. Undefined tensors stay undefined.
    pub fn average_over_ranks(&mut self, tensors: Vec<Tensor>) -> anyhow::Result<Vec<Tensor>> {
        let defined: Vec<bool> = tensors.iter().map(Tensor::defined).collect();
        let sent: RVec<TensorOwned> = tensors.into_iter().filter(Tensor::defined).map(TensorOwned::new).collect();
        let mut back = match self.services.average_over_ranks(sent) {
            RResult::ROk(v) => v.into_iter().map(TensorOwned::into_tensor),
            RResult::RErr(e) => return Err(anyhow::anyhow!("{e}")),
        };
        defined
            .into_iter()
            .map(|d| match d {
                true => back.next().ok_or_else(|| anyhow::anyhow!("the host returned fewer tensors than it was given")),
                false => Ok(Tensor::new()),
            })
            .collect()
    }

    /// Writes `bytes` as `search/artifacts/<name>` in the run directory; returns the path.
    pub fn write_artifact(&mut self, name: &str, bytes: &[u8]) -> anyhow::Result<String> {
        match self.services.write_artifact(RStr::from(name), RSlice::from(bytes)) {
            RResult::ROk(p) => Ok(p.into_string()),
            RResult::RErr(e) => Err(anyhow::anyhow!("{e}")),
        }
    }

    /// Hands the host the search's [`Decisiveness`](crate::model_desc::report::Decisiveness)
    /// (log.yaml `search/summary/decisiveness`, a warning when undecided, `archai report`).
    pub fn report_decisiveness(&mut self, report: &crate::model_desc::report::Decisiveness) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(report)?;
        self.write_artifact(crate::model_desc::report::DECISIVENESS_ARTIFACT, &json)?;
        Ok(())
    }

    /// The architecture parameter named `name`, or an error listing the ones the model has.
    pub fn arch_param(&self, name: &str) -> anyhow::Result<Tensor> {
        let all = self.arch_params();
        let names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
        all.into_iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or_else(|| {
            anyhow::anyhow!("the model has no architecture parameter `{name}` (it has: {})", names.join(", "))
        })
    }
}

/// Hyper-parameters of the weight optimizer that bilevel algorithms need for the unrolled step.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct WeightOptimizerInfo {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// The update rule (hosts before this field trained with SGD only).
    #[serde(default)]
    pub kind: WeightOptimizerKind,
    /// SGD with Nesterov momentum.
    #[serde(default)]
    pub nesterov: bool,
}

/// The weight optimizer's update rule, as the trainer config names it.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WeightOptimizerKind {
    #[default]
    Sgd,
    Adam,
    Adamw,
}

/// What [`Algorithm::search_space`] returns: the description to compile and how to train it.
pub struct SearchPlan {
    pub desc: ModelDesc,
    pub arch_training: ArchTraining,
}

/// A search algorithm.
pub trait Algorithm: Send + 'static {
    /// The model description to build for the given dataset facts, and how the host trains its
    /// architecture parameters.
    fn search_space(&mut self, context: &SearchContext) -> anyhow::Result<SearchPlan>;
    /// Work before each weight step (an architecture step for DARTS); returns metrics to log.
    fn before_step(&mut self, _model: &mut Model<'_, '_>, _batch: &StepData) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({}))
    }
    /// Work after each epoch; returns values to log.
    fn after_epoch(&mut self, _model: &mut Model<'_, '_>, _epoch: u32) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({}))
    }
    /// Work at the start of each epoch (schedules, re-sampling); returns values to log.
    fn before_epoch(&mut self, _model: &mut Model<'_, '_>, _epoch: u32) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({}))
    }
    /// Work after each weight step (statistics, weight-sharing bookkeeping); returns metrics
    /// that the host averages over the epoch.
    fn after_step(&mut self, _model: &mut Model<'_, '_>, _outcome: &StepOutcome) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({}))
    }
    /// State to checkpoint so that a resumed run continues exactly (default: none).
    fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }
    /// Restores what [`Algorithm::state`] returned.
    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        anyhow::ensure!(
            state.is_empty(),
            "this algorithm keeps no state, but the checkpoint holds {} tensors for it",
            state.len()
        );
        Ok(())
    }
}

/// Registration of an algorithm; submit with [`crate::register_algorithm!`].
pub struct AlgorithmRegistration {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub create: fn(config: &serde_json::Value) -> anyhow::Result<Box<dyn Algorithm>>,
}
inventory::collect!(AlgorithmRegistration);

/// A finalizer: searched description + trained model -> final description.
pub trait Finalizer: Send + 'static {
    fn finalize(&mut self, search: &ModelDesc, model: &mut Model<'_, '_>) -> anyhow::Result<ModelDesc>;
}

/// Registration of a finalizer; submit with [`crate::register_finalizer!`].
pub struct FinalizerRegistration {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub create: fn(config: &serde_json::Value) -> anyhow::Result<Box<dyn Finalizer>>,
}
inventory::collect!(FinalizerRegistration);

/// A dataset split read by an adapter: uint8 N x C x H x W images, int64 labels.
pub struct Split {
    pub images: Tensor,
    pub labels: Tensor,
    pub class_names: Vec<String>,
}

/// A dataset adapter (reads one on-disk format).
pub trait DatasetAdapter: Send + 'static {
    fn load(&mut self, split: &str) -> anyhow::Result<Split>;
}

/// Registration of a dataset adapter; submit with [`crate::register_dataset_adapter!`].
pub struct DatasetAdapterRegistration {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub create: fn(config: &serde_json::Value) -> anyhow::Result<Box<dyn DatasetAdapter>>,
}
inventory::collect!(DatasetAdapterRegistration);

/// Registers an op: `register_op!("name", "description", constructor_fn);`, or with a cost
/// formula for `archai stats`: `register_op!("name", "description", constructor_fn, cost_fn);`
#[macro_export]
macro_rules! register_op {
    ($name:expr, $description:expr, $create:expr) => {
        $crate::inventory::submit! {
            $crate::OpRegistration { name: $name, version: env!("CARGO_PKG_VERSION"), description: $description, create: $create, cost: None }
        }
    };
    ($name:expr, $description:expr, $create:expr, $cost:expr) => {
        $crate::inventory::submit! {
            $crate::OpRegistration { name: $name, version: env!("CARGO_PKG_VERSION"), description: $description, create: $create, cost: Some($cost) }
        }
    };
}

/// Registers a mixer: `register_mixer!("name", "description", constructor_fn);`
#[macro_export]
macro_rules! register_mixer {
    ($name:expr, $description:expr, $create:expr) => {
        $crate::inventory::submit! {
            $crate::MixerRegistration { name: $name, version: env!("CARGO_PKG_VERSION"), description: $description, create: $create }
        }
    };
}

/// Registers an algorithm: `register_algorithm!("name", "description", constructor_fn);`
#[macro_export]
macro_rules! register_algorithm {
    ($name:expr, $description:expr, $create:expr) => {
        $crate::inventory::submit! {
            $crate::AlgorithmRegistration { name: $name, version: env!("CARGO_PKG_VERSION"), description: $description, create: $create }
        }
    };
}

/// Registers a finalizer: `register_finalizer!("name", "description", constructor_fn);`
#[macro_export]
macro_rules! register_finalizer {
    ($name:expr, $description:expr, $create:expr) => {
        $crate::inventory::submit! {
            $crate::FinalizerRegistration { name: $name, version: env!("CARGO_PKG_VERSION"), description: $description, create: $create }
        }
    };
}

/// Registers a dataset adapter: `register_dataset_adapter!("name", "description", constructor_fn);`
#[macro_export]
macro_rules! register_dataset_adapter {
    ($name:expr, $description:expr, $create:expr) => {
        $crate::inventory::submit! {
            $crate::DatasetAdapterRegistration { name: $name, version: env!("CARGO_PKG_VERSION"), description: $description, create: $create }
        }
    };
}

/// Exports the plugin's root module. Call once at the plugin crate's root; the crate must depend
/// on `abi_stable` directly (the attribute macro refers to it by name).
#[macro_export]
macro_rules! export_plugin {
    () => {
        extern "C" fn __archai_plugin_info() -> $crate::PluginInfo {
            $crate::plugin_info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        }

        #[::abi_stable::export_root_module]
        pub fn __archai_plugin_root_module() -> $crate::PluginModuleRef {
            $crate::build_root_module(__archai_plugin_info)
        }
    };
}

/// The [`PluginInfo`] of a plugin built with this API crate.
pub fn plugin_info(name: &str, version: &str) -> PluginInfo {
    PluginInfo {
        name: name.into(),
        version: version.into(),
        api_version: crate::API_VERSION.into(),
        libtorch_version: crate::LIBTORCH_VERSION.into(),
    }
}

/// The root module made of this crate's generic entry points (used by [`export_plugin!`]).
pub fn build_root_module(info: extern "C" fn() -> PluginInfo) -> PluginModuleRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginModule {
        info,
        components: plugin_components,
        create_op: plugin_create_op,
        create_algorithm: plugin_create_algorithm,
        create_finalizer: plugin_create_finalizer,
        create_dataset_adapter: plugin_create_dataset_adapter,
        create_mixer: plugin_create_mixer,
        op_cost: plugin_op_cost,
        create_search_space: crate::discrete::plugin_create_search_space,
        create_searcher: crate::discrete::plugin_create_searcher,
    }
    .leak_into_prefix()
}

/// The panic text, without libtorch's C++ backtrace.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_string()
    };
    trim_backtrace(&text)
}

/// Cuts libtorch's C++ backtrace ("Exception raised from ...") off an error text.
pub fn trim_backtrace(text: &str) -> String {
    let cut = text.find("Exception raised from").unwrap_or(text.len());
    text[..cut].trim_end().to_string()
}

/// Runs plugin code so that neither an error nor a panic crosses the boundary as anything but
/// an error value. Panics are reported as `panic: <text>`.
pub fn guard<T>(f: impl FnOnce() -> anyhow::Result<T>) -> RResult<T, RString> {
    static CHAINED_HOOK: std::sync::Once = std::sync::Once::new();
    // The host reports every panic caught here itself; the previous hook would also print the
    // message with libtorch's C++ backtrace to stderr. Panics anywhere else still reach it.
    CHAINED_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_GUARD.with(std::cell::Cell::get) {
                previous(info);
            }
        }))
    });
    let outer = IN_GUARD.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_GUARD.with(|g| g.set(outer));
    match result {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(trim_backtrace(&format!("{e:#}")).into()),
        Err(payload) => RResult::RErr(format!("panic: {}", panic_text(payload.as_ref())).into()),
    }
}

thread_local! {
    /// Whether this thread is inside [`guard`]: the panic hook stays silent only there.
    static IN_GUARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// What the four registration types share, so lookup and listing are written once.
pub(crate) trait Registration: inventory::Collect {
    const KIND: ComponentKind;
    fn name(&self) -> &'static str;
    fn version(&self) -> &'static str;
    fn description(&self) -> &'static str;
}

macro_rules! impl_registration {
    ($($ty:ty => $kind:expr),* $(,)?) => {$(
        impl Registration for $ty {
            const KIND: ComponentKind = $kind;
            fn name(&self) -> &'static str { self.name }
            fn version(&self) -> &'static str { self.version }
            fn description(&self) -> &'static str { self.description }
        }
    )*};
}

impl_registration! {
    OpRegistration => ComponentKind::Op,
    AlgorithmRegistration => ComponentKind::Algorithm,
    FinalizerRegistration => ComponentKind::Finalizer,
    DatasetAdapterRegistration => ComponentKind::DatasetAdapter,
    MixerRegistration => ComponentKind::Mixer,
    crate::discrete::SearchSpaceRegistration => ComponentKind::SearchSpace,
    crate::discrete::SearcherRegistration => ComponentKind::Searcher,
}

/// The registration named `name` in this plugin, or an error listing the ones it has.
pub(crate) fn lookup<R: Registration>(name: RStr<'_>) -> anyhow::Result<&'static R> {
    inventory::iter::<R>.into_iter().find(|r| r.name() == name.as_str()).ok_or_else(|| {
        let known: Vec<&str> = inventory::iter::<R>.into_iter().map(|r| r.name()).collect();
        anyhow::anyhow!("this plugin has no {} named `{name}` (it has: {})", R::KIND, known.join(", "))
    })
}

fn infos<R: Registration>(out: &mut RVec<ComponentInfo>) {
    for r in inventory::iter::<R> {
        out.push(ComponentInfo {
            kind: R::KIND,
            name: r.name().into(),
            version: r.version().into(),
            description: r.description().into(),
        });
    }
}

pub(crate) fn parse_config(config_json: RStr<'_>) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(config_json.as_str()).map_err(|e| anyhow::anyhow!("component config is not valid JSON: {e}"))
}

extern "C" fn plugin_components() -> RVec<ComponentInfo> {
    let mut out = RVec::new();
    infos::<OpRegistration>(&mut out);
    infos::<AlgorithmRegistration>(&mut out);
    infos::<FinalizerRegistration>(&mut out);
    infos::<DatasetAdapterRegistration>(&mut out);
    infos::<MixerRegistration>(&mut out);
    infos::<crate::discrete::SearchSpaceRegistration>(&mut out);
    infos::<crate::discrete::SearcherRegistration>(&mut out);
    out
}

struct OpAdapter(Box<dyn Op>);

impl OpObj for OpAdapter {
    fn forward(&self, inputs: RSlice<'_, TensorRef<'_>>, train: bool) -> RResult<TensorOwned, RString> {
        guard(|| {
            let views = view_slice(inputs.as_slice());
            Ok(TensorOwned::new(self.0.forward(as_tensor_slice(&views), train)?))
        })
    }

    fn forward_scaled(
        &self,
        inputs: RSlice<'_, TensorRef<'_>>,
        scale: TensorRef<'_>,
        train: bool,
    ) -> RResult<ROption<TensorOwned>, RString> {
        guard(|| {
            let views = view_slice(inputs.as_slice());
            let scale = scale.view();
            match self.0.forward_scaled(as_tensor_slice(&views), &scale, train) {
                Some(y) => Ok(ROption::RSome(TensorOwned::new(y?))),
                None => Ok(ROption::RNone),
            }
        })
    }
}

extern "C" fn plugin_create_op(
    name: RStr<'_>,
    config_json: RStr<'_>,
    params: &mut ParamHostBox<'_>,
) -> RResult<OpBox, RString> {
    guard(|| {
        let reg = lookup::<OpRegistration>(name)?;
        let config = parse_config(config_json)?;
        let mut builder = ParamBuilder::new(params);
        let op = (reg.create)(&config, &mut builder)?;
        Ok(OpObj_TO::from_value(OpAdapter(op), TD_Opaque))
    })
}

extern "C" fn plugin_create_mixer(
    name: RStr<'_>,
    config_json: RStr<'_>,
    params: &mut ParamHostBox<'_>,
) -> RResult<OpBox, RString> {
    guard(|| {
        let reg = lookup::<MixerRegistration>(name)?;
        let config: MixerConfig = serde_json::from_str(config_json.as_str())
            .map_err(|e| anyhow::anyhow!("mixer `{name}`: bad config from the host: {e}"))?;
        let mut builder = ParamBuilder::new(params);
        let op = (reg.create)(&config, &mut builder)?;
        Ok(OpObj_TO::from_value(OpAdapter(op), TD_Opaque))
    })
}

extern "C" fn plugin_op_cost(
    name: RStr<'_>,
    config_json: RStr<'_>,
    input: RSlice<'_, i64>,
) -> RResult<ROption<OpCost>, RString> {
    guard(|| {
        let reg = lookup::<OpRegistration>(name)?;
        let Some(cost) = reg.cost else { return Ok(ROption::RNone) };
        let [c, h, w] = input.as_slice() else {
            anyhow::bail!("op_cost of `{name}`: the input shape must be [C, H, W], got {:?}", input.as_slice())
        };
        let (macs, out) = cost(&parse_config(config_json)?, [*c, *h, *w])?;
        Ok(ROption::RSome(OpCost { macs, output: out.iter().copied().collect() }))
    })
}

struct AlgorithmAdapter(Box<dyn Algorithm>);

impl AlgorithmObj for AlgorithmAdapter {
    fn search_space(&mut self, context: SearchContext) -> RResult<SearchSpace, RString> {
        guard(|| {
            let plan = self.0.search_space(&context)?;
            plan.desc.validate()?;
            Ok(SearchSpace { model_desc_yaml: plan.desc.to_yaml().into(), arch_training: plan.arch_training })
        })
    }

    fn before_step(&mut self, mut model: ModelServicesMut<'_>, batch: StepBatch<'_>) -> RResult<RString, RString> {
        guard(|| {
            let data = StepData {
                x: batch.x.shallow_clone(),
                y: batch.y.shallow_clone(),
                val_x: batch.val_x.shallow_clone(),
                val_y: batch.val_y.shallow_clone(),
                epoch: batch.epoch,
                step: batch.step,
                lr: batch.lr,
            };
            let mut m = Model { services: &mut model };
            Ok(self.0.before_step(&mut m, &data)?.to_string().into())
        })
    }

    fn after_epoch(&mut self, mut model: ModelServicesMut<'_>, epoch: u32) -> RResult<RString, RString> {
        guard(|| {
            let mut m = Model { services: &mut model };
            Ok(self.0.after_epoch(&mut m, epoch)?.to_string().into())
        })
    }

    fn state(&self) -> RResult<RVec<NamedTensor>, RString> {
        guard(|| {
            Ok(self
                .0
                .state()?
                .into_iter()
                .map(|(n, t)| NamedTensor { name: n.into(), tensor: TensorOwned::new(t) })
                .collect())
        })
    }

    fn load_state(&mut self, state: RVec<NamedTensor>) -> RResult<(), RString> {
        guard(|| self.0.load_state(named(state)))
    }

    fn before_epoch(&mut self, mut model: ModelServicesMut<'_>, epoch: u32) -> RResult<RString, RString> {
        guard(|| {
            let mut m = Model { services: &mut model };
            Ok(self.0.before_epoch(&mut m, epoch)?.to_string().into())
        })
    }

    fn after_step(&mut self, mut model: ModelServicesMut<'_>, outcome: StepOutcome) -> RResult<RString, RString> {
        guard(|| {
            let mut m = Model { services: &mut model };
            Ok(self.0.after_step(&mut m, &outcome)?.to_string().into())
        })
    }
}

extern "C" fn plugin_create_algorithm(name: RStr<'_>, config_json: RStr<'_>) -> RResult<AlgorithmBox, RString> {
    guard(|| {
        let reg = lookup::<AlgorithmRegistration>(name)?;
        let algo = (reg.create)(&parse_config(config_json)?)?;
        Ok(AlgorithmObj_TO::from_value(AlgorithmAdapter(algo), TD_Opaque))
    })
}

struct FinalizerAdapter(Box<dyn Finalizer>);

impl FinalizerObj for FinalizerAdapter {
    fn finalize(&mut self, search_desc_yaml: RStr<'_>, mut model: ModelServicesMut<'_>) -> RResult<RString, RString> {
        guard(|| {
            let search = ModelDesc::from_yaml(search_desc_yaml.as_str(), "(search description from the host)")?;
            let mut m = Model { services: &mut model };
            let desc = self.0.finalize(&search, &mut m)?;
            desc.validate()?;
            Ok(desc.to_yaml().into())
        })
    }
}

extern "C" fn plugin_create_finalizer(name: RStr<'_>, config_json: RStr<'_>) -> RResult<FinalizerBox, RString> {
    guard(|| {
        let reg = lookup::<FinalizerRegistration>(name)?;
        let f = (reg.create)(&parse_config(config_json)?)?;
        Ok(FinalizerObj_TO::from_value(FinalizerAdapter(f), TD_Opaque))
    })
}

struct DatasetAdapterAdapter(Box<dyn DatasetAdapter>);

impl DatasetAdapterObj for DatasetAdapterAdapter {
    fn load(&mut self, split: RStr<'_>) -> RResult<DatasetSplit, RString> {
        guard(|| {
            let s = self.0.load(split.as_str())?;
            Ok(DatasetSplit {
                images: TensorOwned::new(s.images),
                labels: TensorOwned::new(s.labels),
                class_names: s.class_names.into_iter().map(RString::from).collect(),
            })
        })
    }
}

extern "C" fn plugin_create_dataset_adapter(
    name: RStr<'_>,
    config_json: RStr<'_>,
) -> RResult<DatasetAdapterBox, RString> {
    guard(|| {
        let reg = lookup::<DatasetAdapterRegistration>(name)?;
        let a = (reg.create)(&parse_config(config_json)?)?;
        Ok(DatasetAdapterObj_TO::from_value(DatasetAdapterAdapter(a), TD_Opaque))
    })
}
