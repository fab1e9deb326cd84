//! Petridish architectures: a macro (cells, reductions, channels) and one normal and one
//! reduction cell pattern whose nodes have stable ids, and how they become model descriptions:
//! trained models, and search models with a candidate node per cell.
use archai_plugin_api::kit::seeded::SplitMix64;
use archai_plugin_api::model_desc::{
    ArchParamDesc, CellDesc, EdgeDesc, HeadDesc, InputDesc, MixerDesc, ModelDesc, NodeDesc, OpDesc, ParamInit,
};
use archai_plugin_api::SearchContext;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The cell inputs and nodes an edge can read: `s0`, `s1` or a node's id (`n3`).
pub type Input = String;

/// One edge of a node.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub input: Input,
    pub op: String,
}

/// A node: the sum of its edges, or (`multi_op`) their concatenation through a 1x1 conv + BN
/// (the node a Petridish search adds).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// `n<k>`: stable, so its weights keep their names when nodes are inserted before it.
    pub id: String,
    pub edges: Vec<Edge>,
    #[serde(default)]
    pub multi_op: bool,
}

/// An architecture of the space.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PetridishArch {
    pub cells: usize,
    pub reductions: usize,
    pub normal: Vec<Node>,
    pub reduce: Vec<Node>,
    /// The next node id (ids are never reused).
    pub next_id: u32,
    /// Build the search model: a candidate node before the last node of every cell.
    #[serde(default)]
    pub search: bool,
}

/// A node being laid out: its id, its edges with their inputs by name, its combine op.
type NodeLayout = (String, Vec<(Input, EdgeDesc)>, Option<OpDesc>);

/// The id of the candidate node of a search model.
pub const SEARCH_NODE: &str = "search";

/// Configuration of the space (every key optional).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpaceConfig {
    /// Node channels of the first cells (doubled at each reduction).
    pub channels: i64,
    pub stem_multiplier: i64,
    /// A cell outputs `cell_out_multiplier x` its node channels, whatever its number of nodes
    /// (the 1x1 conv after the concatenation).
    pub cell_out_multiplier: i64,
    /// The primitives of seeds and of the search's candidates (`none` is not one: it computes
    /// nothing a node could keep).
    pub ops: Vec<String>,
    /// Candidate weights start uniform in [-init_range, init_range].
    pub init_range: f64,
    /// L1 weight on the candidate weights during a search.
    pub l1: f64,
    /// Random-architecture macro ranges for `sample` (seeds use the searcher's grid).
    pub cells: [usize; 2],
    pub reductions: [usize; 2],
    pub nodes: [usize; 2],
}

impl Default for SpaceConfig {
    fn default() -> Self {
        Self {
            channels: 8,
            stem_multiplier: 3,
            cell_out_multiplier: 4,
            ops: archai_plugin_api::kit::config::darts_ops(),
            init_range: 0.1,
            l1: 0.001,
            cells: [3, 8],
            reductions: [1, 3],
            nodes: [1, 3],
        }
    }
}

impl SpaceConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.ops.is_empty(), "petridish: `ops` is empty");
        anyhow::ensure!(!self.ops.iter().any(|o| o == "none"), "petridish: `none` cannot be an op");
        anyhow::ensure!(
            self.channels > 0 && self.stem_multiplier > 0 && self.cell_out_multiplier > 0,
            "petridish: channels, stem_multiplier and cell_out_multiplier must be positive"
        );
        anyhow::ensure!(self.init_range > 0.0 && self.l1 >= 0.0, "petridish: init_range > 0 and l1 >= 0 are needed");
        for (name, [lo, hi]) in [("cells", self.cells), ("reductions", self.reductions), ("nodes", self.nodes)] {
            anyhow::ensure!(lo <= hi && hi > 0, "petridish: `{name}` must be [lo, hi] with lo <= hi, got [{lo}, {hi}]");
        }
        Ok(())
    }
}

/// The reduction cells of a macro: evenly spaced, `(i + 1) * cells / (reductions + 1)`.
pub fn reduction_cells(cells: usize, reductions: usize) -> Vec<usize> {
    (0..reductions).map(|i| (i + 1) * cells / (reductions + 1)).collect()
}

impl PetridishArch {
    /// A seed: `nodes` nodes per cell type, each reading two distinct random inputs through
    /// random ops. Needs `cells >= 2 * reductions + 1` (a normal cell around each reduction).
    pub fn seed(
        cells: usize,
        reductions: usize,
        nodes: usize,
        ops: &[String],
        rng: &mut SplitMix64,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            cells > 2 * reductions && nodes >= 1,
            "petridish: a seed needs cells >= 2 x reductions + 1 and a node (cells {cells}, reductions {reductions}, nodes {nodes})"
        );
        let mut next_id = 0u32;
        let mut pattern = |rng: &mut SplitMix64| {
            let mut out = Vec::new();
            let mut inputs: Vec<Input> = vec!["s0".into(), "s1".into()];
            for _ in 0..nodes {
                let a = rng.below(inputs.len());
                let mut b = rng.below(inputs.len() - 1);
                if b >= a {
                    b += 1;
                }
                let edges = [a, b]
                    .iter()
                    .map(|&i| Edge { input: inputs[i].clone(), op: ops[rng.below(ops.len())].clone() })
                    .collect();
                let id = format!("n{next_id}");
                next_id += 1;
                inputs.push(id.clone());
                out.push(Node { id, edges, multi_op: false });
            }
            out
        };
        let normal = pattern(rng);
        let reduce = pattern(rng);
        Ok(Self { cells, reductions, normal, reduce, next_id, search: false })
    }

    /// Nodes per normal cell (the `nodes` coordinate of the pool).
    pub fn nodes(&self) -> usize {
        self.normal.len()
    }

    /// Where the candidate node goes in a cell of `n` nodes: before the last one.
    pub fn search_position(n: usize) -> usize {
        n.saturating_sub(1)
    }

    /// The inputs the candidate node of a cell pattern reads: s0, s1 and every node before it.
    pub fn search_inputs(pattern: &[Node]) -> Vec<Input> {
        let pos = Self::search_position(pattern.len());
        ["s0".to_string(), "s1".to_string()].into_iter().chain(pattern[..pos].iter().map(|n| n.id.clone())).collect()
    }

    /// This architecture grown by one multi-op node per cell pattern (where a search put its
    /// candidate node), reading `picks` (input, op) of the normal and the reduction pattern.
    pub fn grow(&self, normal: &[Edge], reduce: &[Edge]) -> anyhow::Result<Self> {
        let mut child = self.clone();
        child.search = false;
        for (pattern, picks) in [(&mut child.normal, normal), (&mut child.reduce, reduce)] {
            anyhow::ensure!(!picks.is_empty(), "petridish: a grown node needs at least one edge");
            let id = format!("n{}", child.next_id);
            child.next_id += 1;
            let pos = Self::search_position(pattern.len());
            pattern.insert(pos, Node { id, edges: picks.to_vec(), multi_op: true });
        }
        Ok(child)
    }
}

fn params(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("object literals only"),
    }
}

/// The arch parameter holding the candidate weights of one cell type's search node.
pub fn alpha_name(reduction: bool) -> &'static str {
    if reduction {
        "petridish.reduce"
    } else {
        "petridish.normal"
    }
}

/// The model description of `arch` on a dataset.
pub fn model_desc(arch: &PetridishArch, config: &SpaceConfig, ctx: &SearchContext) -> anyhow::Result<ModelDesc> {
    anyhow::ensure!(
        arch.cells > 2 * arch.reductions && !arch.normal.is_empty() && !arch.reduce.is_empty(),
        "petridish: an architecture needs cells >= 2 x reductions + 1 and nodes in both cell types"
    );
    let reductions = reduction_cells(arch.cells, arch.reductions);
    let c_stem = config.stem_multiplier * config.channels;
    let stem = vec![OpDesc {
        op: "conv_bn".into(),
        params: params(json!({"c_in": ctx.channels, "c_out": c_stem, "kernel_size": 3})),
    }];
    let (mut c_pp, mut c_p, mut c) = (c_stem, c_stem, config.channels);
    let mut reduction_prev = false;
    let mut cells = Vec::new();
    let mut search_rows = [0i64; 2];
    for i in 0..arch.cells {
        let reduction = reductions.contains(&i);
        if reduction {
            c *= 2;
        }
        let pattern = if reduction { &arch.reduce } else { &arch.normal };
        let mut nodes: Vec<NodeLayout> = Vec::new();
        let edge_params = |input: &str, affine: bool| {
            let stride = if reduction && (input == "s0" || input == "s1") { 2 } else { 1 };
            params(json!({"c_in": c, "stride": stride, "affine": affine}))
        };
        for n in pattern {
            let edges: Vec<(Input, EdgeDesc)> = n
                .edges
                .iter()
                .map(|e| {
                    let d = EdgeDesc {
                        input: 0,
                        op: e.op.clone(),
                        mixer: None,
                        candidates: Vec::new(),
                        params: edge_params(&e.input, true),
                    };
                    (e.input.clone(), d)
                })
                .collect();
            let combine = n.multi_op.then(|| OpDesc {
                op: "concat-conv-bn".into(),
                params: params(json!({"c_in": c * n.edges.len() as i64, "c_out": c})),
            });
            nodes.push((n.id.clone(), edges, combine));
        }
        if arch.search {
            let inputs = PetridishArch::search_inputs(pattern);
            let rows = inputs.len() as i64;
            search_rows[reduction as usize] = rows;
            let edges = inputs
                .iter()
                .enumerate()
                .map(|(row, input)| {
                    let mut mixer_params = Map::new();
                    mixer_params.insert("alpha".into(), alpha_name(reduction).into());
                    mixer_params.insert("row".into(), row.into());
                    let mut p = edge_params(input, false);
                    p.insert("pool_bn".into(), true.into());
                    let d = EdgeDesc {
                        input: 0,
                        op: archai_plugin_api::model_desc::MIXED.into(),
                        mixer: Some(MixerDesc { name: "petridish-candidates".into(), params: mixer_params }),
                        candidates: config.ops.clone(),
                        params: p,
                    };
                    (input.clone(), d)
                })
                .collect();
            let combine = OpDesc { op: "stop-forward-sum".into(), params: Map::new() };
            nodes.insert(PetridishArch::search_position(pattern.len()), (SEARCH_NODE.into(), edges, Some(combine)));
        }
        // Inputs by position: s0, s1, then the nodes in evaluation order.
        let position =
            |input: &str, before: usize| -> anyhow::Result<usize> {
                match input {
                    "s0" => Ok(0),
                    "s1" => Ok(1),
                    id => nodes[..before].iter().position(|(nid, _, _)| nid == id).map(|p| p + 2).ok_or_else(|| {
                        anyhow::anyhow!("petridish: node input `{id}` is not an earlier node of the cell")
                    }),
                }
            };
        let mut descs = Vec::new();
        for (k, (id, edges, combine)) in nodes.iter().enumerate() {
            let mut out = Vec::new();
            for (input, e) in edges {
                out.push(EdgeDesc { input: position(input, k)?, ..e.clone() });
            }
            descs.push(NodeDesc { id: Some(id.clone()), edges: out, combine: combine.clone() });
        }
        // Concatenated in order of creation (the candidate node last): a grown cell's new
        // channels come after the old ones, which keeps the carried 1x1 conv's columns in place.
        let mut order: Vec<(u32, usize)> = nodes
            .iter()
            .enumerate()
            .map(|(k, (id, _, _))| (id.strip_prefix('n').and_then(|n| n.parse().ok()).unwrap_or(u32::MAX), k + 2))
            .collect();
        order.sort();
        let concat: Vec<usize> = order.into_iter().map(|(_, s)| s).collect();
        let c_out = config.cell_out_multiplier * c;
        let post = OpDesc {
            op: "conv_bn".into(),
            params: params(json!({"c_in": c * concat.len() as i64, "c_out": c_out, "kernel_size": 1})),
        };
        cells.push(CellDesc {
            reduction,
            reduction_prev,
            c_prev_prev: c_pp,
            c_prev: c_p,
            c,
            affine: true,
            nodes: descs,
            concat,
            post: Some(post),
        });
        reduction_prev = reduction;
        c_pp = c_p;
        c_p = c_out;
    }
    let mut arch_params = Vec::new();
    if arch.search {
        for reduction in [false, true] {
            let rows = search_rows[reduction as usize];
            if rows > 0 {
                arch_params.push(ArchParamDesc {
                    name: alpha_name(reduction).into(),
                    shape: vec![rows, config.ops.len() as i64],
                    init: ParamInit::Uniform { lo: -config.init_range, hi: config.init_range },
                    trainable: true,
                    joint: true,
                    l1: config.l1,
                });
            }
        }
    }
    let desc = ModelDesc {
        name: if arch.search { "petridish_search".into() } else { "petridish".into() },
        input: InputDesc { channels: ctx.channels, size: ctx.image_size },
        num_classes: ctx.num_classes,
        stem,
        cells,
        head: HeadDesc { c_in: c_p },
        aux: None,
        arch_params,
    };
    desc.validate()?;
    Ok(desc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> SearchContext {
        SearchContext {
            channels: 1,
            image_size: 28,
            num_classes: 10,
            seed: 0,
            epochs: 0,
            steps_per_epoch: 0,
            val_batch_size: 0,
        }
    }

    #[test]
    fn reductions_are_spread() {
        assert_eq!(reduction_cells(3, 1), vec![1]);
        assert_eq!(reduction_cells(8, 2), vec![2, 5]);
        assert_eq!(reduction_cells(7, 3), vec![1, 3, 5]);
    }

    #[test]
    fn search_node_reads_every_earlier_state_and_goes_before_the_last() {
        let cfg = SpaceConfig::default();
        let mut rng = SplitMix64::new(3);
        let mut a = PetridishArch::seed(3, 1, 2, &cfg.ops, &mut rng).unwrap();
        a.search = true;
        let d = model_desc(&a, &cfg, &ctx()).unwrap();
        let cell = &d.cells[0];
        let ids: Vec<&str> = cell.nodes.iter().map(|n| n.id.as_deref().unwrap()).collect();
        assert_eq!(ids, vec!["n0", SEARCH_NODE, "n1"]);
        let inputs: Vec<usize> = cell.nodes[1].edges.iter().map(|e| e.input).collect();
        assert_eq!(inputs, vec![0, 1, 2]);
        // The candidate node is concatenated last, the post conv sees all three nodes.
        assert_eq!(cell.concat, vec![2, 4, 3]);
        assert_eq!(cell.post.as_ref().unwrap().params["c_in"], 24);
        assert_eq!(d.arch_params[0].shape, vec![3, 7]);
        assert!(d.arch_params[0].joint && d.arch_params[0].l1 > 0.0);
        // Reduction cells: stride 2 from the cell inputs only.
        let r = &d.cells[1];
        assert_eq!(r.nodes[1].edges[0].params["stride"], 2);
        assert_eq!(r.nodes[1].edges[2].params["stride"], 1);
    }

    #[test]
    fn growing_keeps_ids_and_appends_the_new_node_to_the_concatenation() {
        let cfg = SpaceConfig::default();
        let a = PetridishArch::seed(3, 1, 2, &cfg.ops, &mut SplitMix64::new(5)).unwrap();
        let pick = |input: &str, op: &str| Edge { input: input.into(), op: op.into() };
        let child =
            a.grow(&[pick("s0", "sep_conv_3x3"), pick("n0", "skip_connect")], &[pick("s1", "max_pool_3x3")]).unwrap();
        assert_eq!(child.normal[1].id, "n4");
        assert_eq!(child.reduce[1].id, "n5");
        let d = model_desc(&child, &cfg, &ctx()).unwrap();
        assert_eq!(d.cells[0].concat, vec![2, 4, 3]);
        assert_eq!(d.cells[0].nodes[1].combine.as_ref().unwrap().params["c_in"], 16);
        assert_eq!(d.cells[0].c_out(), 32);
        assert!(d.arch_params.is_empty());
    }
}
