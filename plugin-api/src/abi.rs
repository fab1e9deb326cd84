//! The `abi_stable` types of the boundary: the root module, component descriptors and the trait
//! objects for components and host services.
use crate::params::ParamHostBox;
use crate::tensor::{NamedTensor, TensorOwned, TensorRef};
use abi_stable::library::RootModule;
use abi_stable::package_version_strings;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};
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
    /// Turns a searched supernet (its description and trained model) into a final architecture.
    Finalizer,
    /// Combines the candidates of a `mixed` edge (softmax weights, one sampled candidate,
    /// partial channels, ...); builds its candidates through the host.
    Mixer,
    /// A discrete search space: samples, mutates, crosses over, encodes and identifies
    /// architectures, and builds their model descriptions.
    SearchSpace,
    /// An outer-loop search: proposes architectures, learns from their evaluations.
    Searcher,
}

impl ComponentKind {
    /// The name used in tables, configs and error messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            ComponentKind::Op => "op",
            ComponentKind::Algorithm => "algorithm",
            ComponentKind::DatasetAdapter => "dataset-adapter",
            ComponentKind::Finalizer => "finalizer",
            ComponentKind::Mixer => "mixer",
            ComponentKind::SearchSpace => "search-space",
            ComponentKind::Searcher => "searcher",
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
    /// `forward(inputs) * scale` for a 0-dim `scale`, computed by the op when it can fold the
    /// scale into its last layer (`RNone` when it cannot: the caller multiplies).
    fn forward_scaled(
        &self,
        inputs: RSlice<'_, TensorRef<'_>>,
        scale: TensorRef<'_>,
        train: bool,
    ) -> RResult<ROption<TensorOwned>, RString>;
}
pub type OpBox = OpObj_TO<'static, RBox<()>>;

/// What an op costs on one input sample, as its registration computes it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct OpCost {
    /// Multiply-accumulates per sample (FLOPs = 2 x MACs).
    pub macs: i64,
    /// Output shape `[C, H, W]` of one sample.
    pub output: RVec<i64>,
}

/// The facts a search algorithm builds its search space for.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct SearchContext {
    /// Image channels, side length and classes of the dataset.
    pub channels: i64,
    pub image_size: i64,
    pub num_classes: i64,
    /// The run's seed.
    pub seed: u64,
    /// Epochs of the search phase (for schedules such as GDAS' temperature).
    pub epochs: u32,
    /// Weight steps the search trainer takes per epoch (after `max_batches`): with `epochs`, the
    /// length of the search, for schedules that need it up front (XNAS' learning rate).
    pub steps_per_epoch: u64,
    /// Validation examples handed to each `before_step` of a bilevel search (the last batch of a
    /// pass over the validation split may hold fewer); 0 when the search has no validation split.
    pub val_batch_size: u64,
}

impl SearchContext {
    /// The input shape of the dataset.
    pub fn input(&self) -> crate::model_desc::InputDesc {
        crate::model_desc::InputDesc { channels: self.channels, size: self.image_size }
    }
}

/// How the architecture parameters are trained; the host wires its trainer accordingly.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchTraining {
    /// Bilevel (DARTS, GDAS, PC-DARTS): the host hands `before_step` a validation batch, on which
    /// the algorithm takes its own architecture step; the weight step leaves the architecture
    /// parameters untouched. Needs a validation split.
    Bilevel,
    /// Bilevel, and the weight step's backward also fills the trainable architecture parameters'
    /// gradients with those of the training loss at the weights before the step (zeroed before
    /// it; the loss [`crate::Model::loss`] computes, summed over data-parallel ranks like the
    /// weights' gradients), for an algorithm that reuses them in `after_step` (second-order
    /// DARTS' one-sided difference around the weight step). The step leaves the architecture
    /// parameters untouched. The host refuses it with an auxiliary head, drop path or an L1
    /// penalty on architecture parameters, which make the step's loss differ from `Model::loss`.
    /// The algorithm's own forward must be deterministic for a fixed batch and weights (no
    /// sampling mixer, no dropout in its ops): the host cannot tell, and a fresh draw in
    /// `Model::loss` would not match the step's.
    BilevelWithTrainGrad,
    /// Single level (SNAS, DiDARTS): the weight step's backward on the training loss also fills the
    /// gradients of the trainable architecture parameters (zeroed before each step), and the
    /// algorithm applies them with its own optimizer in `after_step`. No validation split needed.
    TrainLoss,
    /// The host computes no gradient for the architecture parameters; the algorithm changes them
    /// in place, or not at all (random search, XNAS).
    Manual,
}

impl ArchTraining {
    /// Whether the algorithm takes its architecture step on a validation batch (bilevel).
    pub fn takes_val_batch(self) -> bool {
        matches!(self, Self::Bilevel | Self::BilevelWithTrainGrad)
    }

    /// Whether the weight step's backward fills the architecture parameters' gradients.
    pub fn fills_train_grads(self) -> bool {
        matches!(self, Self::TrainLoss | Self::BilevelWithTrainGrad)
    }
}

/// What an algorithm asks the host to build and how to train it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct SearchSpace {
    /// The model description (YAML) to compile: a supernet, or a sampled architecture.
    pub model_desc_yaml: RString,
    pub arch_training: ArchTraining,
}

/// One training step's data as seen by an algorithm hook.
#[repr(C)]
#[derive(StableAbi)]
pub struct StepBatch<'a> {
    pub x: TensorRef<'a>,
    pub y: TensorRef<'a>,
    /// The validation batch drawn for this step (bilevel [`ArchTraining`] only; undefined
    /// tensors otherwise).
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
    /// Logits of `x` (train or eval mode), graph kept when gradients are enabled.
    fn logits(&mut self, x: TensorRef<'_>, train: bool) -> RResult<TensorOwned, RString>;
    /// Eval-mode forward of `x` without gradients that returns, instead of the logits, the output
    /// of every candidate op the mixers built through the host, named by the op's scope
    /// (`cells.0.n2.e1.sep_conv_3x3`: cell 0, node 2, its edge 1, candidate `sep_conv_3x3`), in
    /// forward order.
    /// Only ops whose scope starts with `scope_prefix` are returned (`""`: all; `cells.3.`: one
    /// cell), so a finalizer keeps in memory only what it reads.
    fn candidate_outputs(&mut self, x: TensorRef<'_>, scope_prefix: RStr<'_>) -> RResult<RVec<NamedTensor>, RString>;
    /// Batch `index` (of `batch_size` samples) of the search's training split, normalized and not
    /// augmented, as `[images, labels]`: empty past the last batch, an error where the host offers
    /// no data (finalizers get it; algorithms get their batches with each step).
    fn data_batch(&mut self, index: u64, batch_size: u64) -> RResult<RVec<TensorOwned>, RString>;
    /// Writes `bytes` into the run directory as `search/artifacts/<name>` (`name`: a plain file
    /// name) and returns the path written; an error where the host offers no run directory.
    fn write_artifact(&mut self, name: RStr<'_>, bytes: RSlice<'_, u8>) -> RResult<RString, RString>;
    /// The element-wise mean of each tensor over the ranks of a data-parallel run (every rank
    /// passes the same shapes in the same order and gets the same means); the tensors unchanged
    /// in one process. An architecture step calls it on the gradients it computed from its
    /// rank's rows of the batch, before using them, so that every rank makes the same update.
    fn average_over_ranks(&mut self, tensors: RVec<TensorOwned>) -> RResult<RVec<TensorOwned>, RString>;
}
pub type ModelServicesMut<'a> = ModelServices_TO<'a, abi_stable::sabi_types::RMut<'a, ()>>;

/// A search algorithm instance.
#[sabi_trait]
pub trait AlgorithmObj: Send {
    /// The search space for this run: the model description to build (for DARTS the
    /// supernet, for sampling algorithms a sampled architecture) and how to train it.
    fn search_space(&mut self, context: SearchContext) -> RResult<SearchSpace, RString>;
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
    /// Given the searched model description (YAML) and the trained model (weights,
    /// architecture parameters, forward passes), returns the final model description (YAML).
    fn finalize(&mut self, search_desc_yaml: RStr<'_>, model: ModelServicesMut<'_>) -> RResult<RString, RString>;
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
    pub create_dataset_adapter:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>) -> RResult<DatasetAdapterBox, RString>,
    /// Builds a mixer; `config_json` is `{"candidates": [..], "candidate_params": {..}, "params": {..}}`.
    pub create_mixer:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>, params: &mut ParamHostBox<'_>) -> RResult<OpBox, RString>,
    /// The cost of op `name` with `config_json` on one `[C, H, W]` sample; `RNone` when the op
    /// registered no cost formula.
    pub op_cost: extern "C" fn(
        name: RStr<'_>,
        config_json: RStr<'_>,
        input: RSlice<'_, i64>,
    ) -> RResult<abi_stable::std_types::ROption<OpCost>, RString>,
    /// Builds a discrete search space (2.0).
    pub create_search_space:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>) -> RResult<crate::discrete::DiscreteSpaceBox, RString>,
    /// Builds a searcher (2.0).
    #[sabi(last_prefix_field)]
    pub create_searcher:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>) -> RResult<crate::discrete::SearcherBox, RString>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "archai_plugin";
    const NAME: &'static str = "archai_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
