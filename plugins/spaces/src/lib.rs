//! Discrete search spaces as an archai plugin.
//!
//! - `darts-cells`: DARTS genotypes. Per cell type (normal, reduction) and intermediate node,
//!   two distinct inputs among the earlier states, each through one op (never `none`), on a fixed
//!   macro-architecture. Architecture: `{"normal": [[[op, input], [op, input]], ...], "reduce": ...}`.
//! - `macro-sweep`: the macro parameters of a network around a fixed cell (Archai 0.5's Pareto
//!   sweep): number of cells, nodes kept of the cell, initial channels and reduction cells.
//!   Architecture: `{"cells": 5, "nodes": 2, "channels": 8, "reductions": 2}`.
//!
//! Mutation resamples each choice with probability `mutation_rate` (0.3, as Archai's
//! ConfigSearchSpace) and retries until the result differs; crossover takes each choice from a
//! random parent.
#![allow(non_local_definitions)]

pub mod darts_cells;
pub mod macro_sweep;

archai_plugin_api::export_plugin!();
