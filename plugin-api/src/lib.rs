//! The contract between the archai host and its plugins.
//!
//! A plugin is a `cdylib` that exports one [`PluginModule`] root module (use
//! [`export_plugin!`]). Its components register themselves with [`inventory`] through
//! [`register_op!`], [`register_algorithm!`], [`register_finalizer!`] and
//! [`register_dataset_adapter!`]; the root module lists them and builds them by name.
//!
//! What crosses the boundary:
//! - plain `abi_stable` data (strings, vectors, results) and JSON text for configuration;
//! - libtorch tensors as opaque handles ([`TensorRef`] borrowed, [`TensorOwned`] moved), valid on
//!   both sides because host and plugins share one dynamically linked libtorch;
//! - trait objects for the components ([`OpObj`], [`AlgorithmObj`], ...) and for the services the
//!   host offers to them ([`ParamHost`], [`ModelServices`]).
//!
//! Version 1.0 moves the mechanics of a search into plugins: a *mixer* component
//! ([`register_mixer!`]) decides how a `mixed` edge combines its candidates, which it builds
//! through the host ([`ParamBuilder::op`]); the model description declares the architecture
//! parameters (any shape and init, trained by autograd or changed in place); the algorithm says
//! how they are trained ([`ArchTraining`]); finalizers receive the trained model. See the
//! [`kit`] for the pieces DARTS-family plugins share, and `examples/third-party-plugin` for a
//! whole plugin written against this crate alone.
//!
//! A mixer in a few lines (weights = softmax of one alpha row, `none` skipped):
//!
//! ```no_run
//! use archai_plugin_api::tch::{Kind, Tensor};
//! use archai_plugin_api::{register_mixer, HostOp, MixerConfig, Op, ParamBuilder};
//!
//! struct Softmax { alpha: Tensor, row: i64, ops: Vec<(i64, HostOp)> }
//! impl Op for Softmax {
//!     fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
//!         let w = self.alpha.get(self.row).softmax(-1, Kind::Float);
//!         let mut out: Option<Tensor> = None;
//!         for (i, op) in &self.ops {
//!             // The candidate folds its weight into its last layer where it can.
//!             let y = op.forward_scaled(&[&inputs[0]], &w.get(*i), train)?;
//!             out = Some(match out { Some(o) => o + y, None => y });
//!         }
//!         out.ok_or_else(|| anyhow::anyhow!("only `none` candidates"))
//!     }
//! }
//! fn create(c: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
//!     let alpha = p.arch_param(&c.param::<String>("softmax", "alpha")?)?;
//!     let ops = c.candidates.iter().enumerate().filter(|(_, n)| *n != "none")
//!         .map(|(i, n)| Ok((i as i64, p.op(n, &c.candidate_params.clone().into(), n)?)))
//!         .collect::<anyhow::Result<_>>()?;
//!     Ok(Box::new(Softmax { alpha, row: c.param("softmax", "row")?, ops }))
//! }
//! register_mixer!("my-softmax", "DARTS: softmax-weighted sum of the candidates", create);
//! # fn main() {}
//! ```
//!
//! Every call into plugin code is wrapped in `catch_unwind`: a panic becomes an error value that
//! the host reports, it never unwinds across the boundary.
//!
//! Versioning: the crate version is checked by `abi_stable` at load time (`0.y` minor bumps are
//! breaking), type layouts are checked structurally, and [`LIBTORCH_VERSION`] is compared by the
//! host because `abi_stable` cannot see libtorch's C++ ABI.
#![allow(non_local_definitions)]

pub mod abi;
pub mod component;
pub mod discrete;
pub mod kit;
pub mod params;
pub mod tensor;

pub use abi::*;
pub use component::*;
pub use params::*;
pub use tensor::*;

// Re-exported so plugin crates and the export macros use the exact versions this API was built with.
pub use abi_stable;
pub use anyhow;
pub use archai_model_desc as model_desc;
pub use inventory;
pub use serde_json;
pub use tch;

/// The libtorch version (major.minor.patch) of the headers this crate was compiled against.
pub const LIBTORCH_VERSION: &str = env!("ARCHAI_LIBTORCH_VERSION");

/// The version of this API crate, as embedded in every plugin.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");
