//! Plain-data reports a plugin hands the host about a search, typed here so that writers
//! (finalizers) and readers (the host's log.yaml, `archai report`) share one definition.
use serde::{Deserialize, Serialize};

/// The file name (in `search/artifacts/`) under which a finalizer reports [`Decisiveness`].
pub const DECISIVENESS_ARTIFACT: &str = "decisiveness.json";

/// How clearly a differentiable search chose its architecture: whether the finalizer's choices
/// were decided by training or by noise.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Decisiveness {
    /// Mean entropy of the mixed edges' weights as a fraction of the uniform entropy (1: every
    /// candidate equally weighted, nothing was learned).
    pub entropy_fraction: f64,
    /// Standard deviation of the architecture parameters' initial noise (0 when they start
    /// without noise).
    pub noise_std: f64,
    /// A choice is fragile when its margin, in alpha (logit) units, is below this:
    /// 2·√2·`noise_std`, two standard deviations of the difference of two initial draws.
    pub flip_margin: f64,
    /// The finalizer's choices: an op on each kept edge, and per node which edges it keeps.
    pub choices: u64,
    /// Choices whose margin is below `flip_margin`: the initial noise alone could flip them.
    pub fragile: u64,
    /// An entropy fraction at or above this makes the search undecided.
    pub entropy_threshold: f64,
    /// Neither mostly uniform weights nor a majority of fragile choices.
    pub decided: bool,
    /// One line for the console and log.txt.
    pub verdict: String,
    /// Per mixed edge of the first normal and the first reduction cell.
    pub edges: Vec<EdgeDecision>,
}

/// One mixed edge's choice.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdgeDecision {
    /// `normal` or `reduce`.
    pub cell: String,
    /// The node it enters (2 = the first intermediate node).
    pub node: usize,
    /// The state it reads.
    pub input: usize,
    /// Among the node's kept edges.
    pub kept: bool,
    /// Its best candidate other than `none`, and the runner-up.
    pub chosen: String,
    pub runner_up: String,
    /// Mixing weight of the chosen minus the runner-up's.
    pub weight_margin: f64,
    /// The same in alpha.
    pub alpha_margin: f64,
    /// Entropy of its weights as a fraction of the uniform entropy.
    pub entropy_fraction: f64,
}
