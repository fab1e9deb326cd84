//! Petridish (Hu et al., NeurIPS 2019) as an archai plugin: networks grown by forward
//! selection, one node per cell at a time, keeping the models near the lower convex hull of
//! (compute, error). It runs as an outer-loop search (`archai search confs/search/petridish.yaml`):
//!
//! - search space `petridish`: architectures are a macro (cells, reductions) and a normal and a
//!   reduction cell pattern whose nodes carry stable ids (`n<k>`); every cell ends in a 1x1
//!   conv + BN (`post`) that keeps its width fixed as nodes are added;
//! - searcher `petridish`: trains the seed grid (every (reductions, cells, nodes) of its ranges
//!   with random cells), keeps a pool of trained models, draws parents from the ε-band around
//!   the lower convex hull of (MACs, 1 − val top-1) with probability ∝ 1/(1 + c̃) + 1/(1 + m̃)
//!   (c̃ times drawn, m̃ MACs, min-max scaled over the band; see below), and for each parent runs
//!   1. a *search job*: the parent **with its trained weights** plus, in every cell before its
//!      last node, a candidate node reading s0, s1 and every earlier node: for input i and op p,
//!      y = Σ α_{i,p}·op_p(SG(x_i)) (mixer `petridish-candidates`), output SF(y) (op
//!      `stop-forward-sum`; SG: zero gradient, SF(z) = z − SG(z): zero forward), α raw, uniform
//!      in ±0.1, trained jointly with the weights by one optimizer on the train loss +
//!      0.001·Σ|α|, candidate BN non-affine. The parent's forward pass is exactly unchanged;
//!      the candidates fit its negative gradient.
//!   2. *finalization*: per cell type the 3 largest |α| (input, op) pairs become a node whose
//!      ops keep their trained weights, outputs concatenated through a 1x1 conv + BN
//!      (`concat-conv-bn`);
//!   3. a *post-train job*: the grown child, warm-started from the search job's weights, goes
//!      into the pool.
//!
//!   It stops when a pool model exceeds `max_madd` MACs, the pool holds `max_hull_points`
//!   models, or `max_grown` children were grown.
//!
//! Warm starts are the host's (`Candidate::warm_start`): tensors carried by name (stable node
//! ids), the kept candidates renamed to their new edges, the post conv zero-extended for the
//! new node's channels (which are concatenated last), so a child starts as the function its
//! source computed; each candidate's log.yaml lists what was carried, extended and new.
//!
//! Outputs (in `<run>/searcher/`): `pool.csv` (id, stage, macro, MACs, val top-1, parent,
//! search job, times drawn, on the hull, in the band), `convex_hull.svg`; in `<run>/gallery/`
//! the band's models (description and weights).
//!
//! Defects of Archai's version not copied: its `none` candidate could be among the kept three
//! (kept ops here are real ops); it imported a missing module and broke every algorithm at
//! v0.5–0.6; it needed Ray. Differences: the 3 kept pairs are ranked by |α| (the sign is
//! absorbed by the 1x1 conv); a parent is searched at most once (a second search from the
//! same weights and seed would repeat the first), so a drawn parent leaves the draw:
//! parents are drawn among the band's unsearched models with probability ∝ 1 + 1/(1 + m̃)
//! (Archai's rule with every count at 0), cheap ones first.
#![allow(non_local_definitions)]

pub mod arch;
pub mod hull;
pub mod ops;
pub mod searcher;

use arch::{PetridishArch, SpaceConfig};
use archai_plugin_api::discrete::{Arch, DiscreteSpace};
use archai_plugin_api::kit::seeded::SplitMix64;
use archai_plugin_api::model_desc::ModelDesc;
use archai_plugin_api::{
    export_plugin, register_mixer, register_op, register_search_space, register_searcher, SearchContext,
};

export_plugin!();

/// The `petridish` search space.
pub struct PetridishSpace {
    config: SpaceConfig,
}

fn parse_arch(arch: &Arch) -> anyhow::Result<PetridishArch> {
    serde_json::from_value(arch.clone()).map_err(|e| anyhow::anyhow!("petridish: not a petridish architecture: {e}"))
}

impl DiscreteSpace for PetridishSpace {
    fn sample(&mut self, rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        let c = &self.config;
        let pick = |[lo, hi]: [usize; 2], rng: &mut SplitMix64| lo + rng.below(hi - lo + 1);
        for _ in 0..100 {
            let (cells, reductions, nodes) = (pick(c.cells, rng), pick(c.reductions, rng), pick(c.nodes, rng));
            if cells > 2 * reductions && nodes > 0 {
                return Ok(serde_json::to_value(PetridishArch::seed(cells, reductions, nodes, &c.ops, rng)?)?);
            }
        }
        anyhow::bail!(
            "petridish: the ranges cells {:?}, reductions {:?} allow no cells >= 2 x reductions + 1",
            c.cells,
            c.reductions
        )
    }

    /// Growing is the searcher's job (it needs trained weights); a random neighbour is a new
    /// random seed of the same macro.
    fn mutate(&mut self, arch: &Arch, rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        let a = parse_arch(arch)?;
        Ok(serde_json::to_value(PetridishArch::seed(a.cells, a.reductions, a.nodes().max(1), &self.config.ops, rng)?)?)
    }

    fn crossover(&mut self, parents: &[Arch], rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        Ok(parents[rng.below(parents.len())].clone())
    }

    fn encode(&self, arch: &Arch) -> anyhow::Result<Vec<f64>> {
        let a = parse_arch(arch)?;
        Ok(vec![a.cells as f64, a.reductions as f64, a.normal.len() as f64, a.reduce.len() as f64])
    }

    fn model_desc(&self, arch: &Arch, context: &SearchContext) -> anyhow::Result<ModelDesc> {
        arch::model_desc(&parse_arch(arch)?, &self.config, context)
    }
}

fn create_space(config: &serde_json::Value) -> anyhow::Result<Box<dyn DiscreteSpace>> {
    let config: SpaceConfig = if config.is_null() {
        SpaceConfig::default()
    } else {
        serde_json::from_value(config.clone()).map_err(|e| anyhow::anyhow!("petridish space config: {e}"))?
    };
    config.check()?;
    Ok(Box::new(PetridishSpace { config }))
}

fn create_searcher(config: &serde_json::Value) -> anyhow::Result<Box<dyn archai_plugin_api::discrete::Searcher>> {
    let config: searcher::PetridishConfig = if config.is_null() {
        Default::default()
    } else {
        serde_json::from_value(config.clone()).map_err(|e| anyhow::anyhow!("petridish searcher config: {e}"))?
    };
    Ok(Box::new(searcher::Petridish::new(config)?))
}

register_search_space!(
    "petridish",
    "Petridish architectures: cells with stable node ids and a width-keeping 1x1 conv; search models with a candidate node",
    create_space
);
register_searcher!(
    "petridish",
    "Petridish: seeds, pool, parents from the eps-band of the (MACs, error) hull, warm-started search and post-train jobs",
    create_searcher
);
register_mixer!(
    "petridish-candidates",
    "Petridish candidates: sum of alpha[row, p] * op_p(stop_gradient(x)), raw weights; params alpha, row",
    ops::create_mixer
);
register_op!(
    "stop-forward-sum",
    "Petridish node output: SF(sum of inputs), zero forward and identity gradient",
    ops::create_stop_forward_sum,
    ops::stop_forward_sum_cost
);
register_op!(
    "concat-conv-bn",
    "A grown Petridish node: inputs concatenated, 1x1 conv + BN; params c_in, c_out, affine",
    ops::create_concat_conv_bn,
    ops::concat_conv_bn_cost
);
