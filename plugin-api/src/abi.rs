//! The `abi_stable` types of the boundary: the root module, component descriptors and the trait
//! objects for components and host services.
use crate::params::ParamHostBox;
use crate::tensor::{NamedTensor, TensorOwned, TensorRef};
use abi_stable::library::RootModule;
use abi_stable::package_version_strings;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, RResult, RSlice, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, sabi_trait, StableAbi};

/// The kinds of components a plugin can provide.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// A network operation (`sep_conv_3x3`, ...), built from a JSON config and host parameters.
    Op,
    /// A search algorithm: search space, per-step hooks.
    Algorithm,
    /// Reads a dataset format into tensors.
    DatasetAdapter,
    /// Turns a searched supernet and its architecture parameters into a final architecture.
    Finalizer,
}

impl ComponentKind {
    /// The name used in tables, configs and error messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            ComponentKind::Op => "op",
            ComponentKind::Algorithm => "algorithm",
            ComponentKind::DatasetAdapter => "dataset-adapter",
            ComponentKind::Finalizer => "finalizer",
        }
    }
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registered component, as listed by `archai plugins`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct ComponentInfo {
    pub kind: ComponentKind,
    pub name: RString,
    pub version: RString,
    pub description: RString,
}

/// Facts about a plugin library that the host checks before using it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct PluginInfo {
    /// The plugin crate's name.
    pub name: RString,
    /// The plugin crate's version.
    pub version: RString,
    /// The `archai-plugin-api` version it was built with.
    pub api_version: RString,
    /// The libtorch version (major.minor.patch) it was built against.
    pub libtorch_version: RString,
}

/// A network operation instance. Inputs are borrowed; the output is moved to the caller.
#[sabi_trait]
pub trait OpObj: Send {
    fn forward(&self, inputs: RSlice<'_, TensorRef<'_>>, train: bool) -> RResult<TensorOwned, RString>;
}
pub type OpBox = OpObj_TO<'static, RBox<()>>;

/// One training step's data as seen by an algorithm hook.
#[repr(C)]
#[derive(StableAbi)]
pub struct StepBatch<'a> {
    pub x: TensorRef<'a>,
    pub y: TensorRef<'a>,
    /// The validation batch drawn for this step (bilevel algorithms use it for the arch step).
    pub val_x: TensorRef<'a>,
    pub val_y: TensorRef<'a>,
    pub epoch: u32,
    pub step: u64,
    /// The weight optimizer's current learning rate.
    pub lr: f64,
}

/// What one weight step did, as the `after_step` hook sees it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    pub epoch: u32,
    pub step: u64,
    pub lr: f64,
    /// The main classifier loss of the step's batch.
    pub loss: f64,
}

/// What the host offers an algorithm about the model being searched.
#[sabi_trait]
pub trait ModelServices {
    /// Handles to the trainable weights, sorted by name (shallow clones: same storage and leaf).
    fn weights(&self) -> RVec<NamedTensor>;
    /// Handles to the architecture parameters, sorted by name.
    fn arch_params(&self) -> RVec<NamedTensor>;
    /// Train-mode forward of `x` and the training criterion against `y`, graph kept for backward.
    fn loss(&mut self, x: TensorRef<'_>, y: TensorRef<'_>) -> RResult<TensorOwned, RString>;
    /// The weight optimizer's hyper-parameters as JSON: `{"lr":..,"momentum":..,"weight_decay":..}`.
    fn weight_optimizer(&self) -> RString;
    /// The weight optimizer's momentum buffers, same names and order as `weights()`; empty
    /// tensors where no buffer exists yet.
    fn momentum_buffers(&self) -> RVec<NamedTensor>;
}
pub type ModelServicesMut<'a> = ModelServices_TO<'a, abi_stable::sabi_types::RMut<'a, ()>>;

/// A search algorithm instance.
#[sabi_trait]
pub trait AlgorithmObj: Send {
    /// The model description (YAML text) to build, given the dataset facts as JSON
    /// (`{"channels":..,"image_size":..,"num_classes":..,"seed":..}`). For DARTS this is the
    /// supernet; for sampling algorithms a sampled architecture.
    fn model_desc(&mut self, context_json: RStr<'_>) -> RResult<RString, RString>;
    /// Runs before each weight step; returns JSON metrics to log (may be `{}`).
    fn before_step(&mut self, model: ModelServicesMut<'_>, batch: StepBatch<'_>) -> RResult<RString, RString>;
    /// Runs after each epoch; returns JSON to log under the epoch (may be `{}`).
    fn after_epoch(&mut self, model: ModelServicesMut<'_>, epoch: u32) -> RResult<RString, RString>;
    /// The algorithm's own state (optimizer moments, counters as 0-dim tensors) that the host
    /// checkpoints with the model, so a resumed search continues exactly.
    fn state(&self) -> RResult<RVec<NamedTensor>, RString>;
    /// Restores what [`AlgorithmObj::state`] returned.
    fn load_state(&mut self, state: RVec<NamedTensor>) -> RResult<(), RString>;
    /// Runs at the start of each epoch, before its first step; returns JSON to log (may be `{}`).
    fn before_epoch(&mut self, model: ModelServicesMut<'_>, epoch: u32) -> RResult<RString, RString>;
    /// Runs after each weight step; returns JSON metrics to log, averaged over the epoch.
    fn after_step(&mut self, model: ModelServicesMut<'_>, outcome: StepOutcome) -> RResult<RString, RString>;
}
pub type AlgorithmBox = AlgorithmObj_TO<'static, RBox<()>>;

/// A finalizer instance.
#[sabi_trait]
pub trait FinalizerObj: Send {
    /// Given the searched model description (YAML) and the architecture parameters, returns the
    /// final model description (YAML).
    fn finalize(&mut self, search_desc_yaml: RStr<'_>, arch: RVec<NamedTensor>) -> RResult<RString, RString>;
}
pub type FinalizerBox = FinalizerObj_TO<'static, RBox<()>>;

/// One split of a dataset as read by an adapter.
#[repr(C)]
#[derive(StableAbi)]
pub struct DatasetSplit {
    /// uint8, N x C x H x W.
    pub images: TensorOwned,
    /// int64, N.
    pub labels: TensorOwned,
    pub class_names: RVec<RString>,
}

/// A dataset adapter instance, configured with the dataset's YAML section (as JSON).
#[sabi_trait]
pub trait DatasetAdapterObj: Send {
    /// Reads one split (`train` or `test`).
    fn load(&mut self, split: RStr<'_>) -> RResult<DatasetSplit, RString>;
}
pub type DatasetAdapterBox = DatasetAdapterObj_TO<'static, RBox<()>>;

/// The root module every plugin exports (see [`crate::export_plugin!`]).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    pub info: extern "C" fn() -> PluginInfo,
    pub components: extern "C" fn() -> RVec<ComponentInfo>,
    pub create_op:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>, params: &mut ParamHostBox<'_>) -> RResult<OpBox, RString>,
    pub create_algorithm: extern "C" fn(name: RStr<'_>, config_json: RStr<'_>) -> RResult<AlgorithmBox, RString>,
    pub create_finalizer: extern "C" fn(name: RStr<'_>, config_json: RStr<'_>) -> RResult<FinalizerBox, RString>,
    #[sabi(last_prefix_field)]
    pub create_dataset_adapter:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>) -> RResult<DatasetAdapterBox, RString>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "archai_plugin";
    const NAME: &'static str = "archai_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
