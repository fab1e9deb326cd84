//! Outer-loop searchers as an archai plugin, at Archai 1.0's defaults except where a default is a
//! defect (each noted where it is fixed). Each proposes candidates through the host's
//! [`Space`](archai_plugin_api::discrete::Space), which refuses to go on when the constraints
//! reject every architecture, and bounds its own retries, so no searcher loops forever.
//!
//! - `random`: `samples_per_iter` valid unseen samples per iteration.
//! - `sweep`: every architecture of a space small enough to enumerate, in one iteration (the
//!   Pareto sweep).
//! - `evolution-pareto`, `local-search`, `regularized-evolution`: evolutionary searches whose
//!   parents are Pareto-optimal models.
//! - `successive-halving`: the population re-evaluated at growing budgets, the worse fronts
//!   dropped.
//! - `mo-bananas`: a predictor of the expensive objectives chooses which mutants to evaluate.
#![allow(non_local_definitions)]

pub mod bananas;
pub mod evolution;
pub mod halving;
pub mod simple;

use archai_plugin_api::discrete::{Candidate, Evaluation, ObjectiveInfo, Space};
use archai_plugin_api::kit::pareto;
use archai_plugin_api::kit::seeded::SplitMix64;
use std::collections::BTreeMap;

archai_plugin_api::export_plugin!();

/// Objective values in the order of `objectives`, lower is better; `None` if one is missing.
pub(crate) fn minimised(values: &BTreeMap<String, f64>, objectives: &[ObjectiveInfo]) -> Option<Vec<f64>> {
    objectives.iter().map(|o| values.get(&o.name).map(|v| if o.higher_is_better { -v } else { *v })).collect()
}

/// [`minimised`] values of a valid evaluation; `None` if it is invalid or a value is missing.
pub(crate) fn point(e: &Evaluation, objectives: &[ObjectiveInfo]) -> Option<Vec<f64>> {
    if !e.valid {
        return None;
    }
    minimised(&e.values, objectives)
}

/// The Pareto-optimal evaluations among `evals`.
pub(crate) fn front<'e>(evals: &[&'e Evaluation], objectives: &[ObjectiveInfo]) -> Vec<&'e Evaluation> {
    let scored: Vec<(&Evaluation, Vec<f64>)> =
        evals.iter().filter_map(|e| point(e, objectives).map(|p| (*e, p))).collect();
    let points: Vec<Vec<f64>> = scored.iter().map(|(_, p)| p.clone()).collect();
    pareto::frontier(&points).into_iter().map(|i| scored[i].0).collect()
}

/// Up to `n` valid unseen mutants of `parent`, trying at most `tries` mutations for each.
pub(crate) fn mutants(
    space: &mut Space<'_, '_>,
    rng: &mut SplitMix64,
    parent: &Candidate,
    n: usize,
    tries: usize,
) -> anyhow::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for _ in 0..n {
        for _ in 0..tries {
            let arch = space.mutate(&parent.arch, rng)?;
            let c = space.check(&arch)?;
            if c.valid && !c.seen {
                out.push(Candidate { arch, id: c.id, budget: 1.0, parents: vec![parent.id.clone()], warm_start: None });
                break;
            }
        }
    }
    Ok(out)
}

/// Up to `n` valid unseen samples (at most `tries` draws each).
pub(crate) fn samples(
    space: &mut Space<'_, '_>,
    rng: &mut SplitMix64,
    n: usize,
    tries: usize,
) -> anyhow::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for _ in 0..n {
        if let Some(c) = space.sample_new(rng, tries)? {
            out.push(c);
        }
    }
    Ok(out)
}

/// Serializes a searcher as its state.
pub(crate) fn state_of<T: serde::Serialize>(s: &T) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(s)?)
}

/// Restores a searcher from its state.
pub(crate) fn from_state<T: serde::de::DeserializeOwned>(name: &str, v: serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(v).map_err(|e| anyhow::anyhow!("{name}: the checkpointed state does not fit: {e}"))
}
