//! Compiles a [`ModelDesc`] into a network whose ops come from op plugins and whose mixed edges
//! are combined by mixer plugins. Weights live in the [`ParamStore`]'s weight store,
//! architecture parameters (declared by the description) in its arch store. The compiler knows
//! no mixing rule: it hands each mixed edge's input to its mixer.
use crate::params::ParamStore;
use crate::plugins::{CandidateTaps, PluginError, PluginOp, PluginRegistry};
use archai_model_desc::{CellDesc, ModelDesc, ParamInit};
use archai_plugin_api::{Init, ParamRole};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tch::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Desc(#[from] archai_model_desc::DescError),
    #[error("{0}")]
    Param(String),
    #[error("forward failed: {0}")]
    Forward(String),
}

/// Parameter scope of the auxiliary head (left out of parameter counts).
pub const AUX_SCOPE: &str = "aux";

struct Edge {
    input: usize,
    op: PluginOp,
    /// Mixed edges get no drop path (their mixer decides what flows).
    mixed: bool,
    identity: bool,
}

struct Node {
    edges: Vec<Edge>,
    /// A multi-input op over the edge outputs; `None` sums them.
    combine: Option<PluginOp>,
}

struct Cell {
    pre0: PluginOp,
    pre1: PluginOp,
    nodes: Vec<Node>,
    concat: Vec<usize>,
    /// Applied to the concatenation (fixed-width cells).
    post: Option<PluginOp>,
}

/// A compiled network.
pub struct Network {
    stem: Vec<PluginOp>,
    /// Shared with the backward pass of recomputed cells (hence `Arc<Mutex<_>>`: ops are `Send`
    /// only).
    cells: Vec<Arc<Mutex<Cell>>>,
    /// Per cell: the weights under its scope and every architecture parameter (what a cell may
    /// read), the explicit inputs of a recomputed cell.
    cell_params: Vec<Vec<Tensor>>,
    /// Per cell: its buffers (batch-norm statistics).
    cell_buffers: Vec<Vec<Tensor>>,
    classifier: PluginOp,
    /// Auxiliary head and the index of the cell it reads.
    aux: Option<(usize, PluginOp)>,
    /// Forward calls of the candidate ops that mixers built through the host.
    taps: Arc<CandidateTaps>,
    mixed_edges: usize,
    /// Probability of dropping a non-identity edge per sample during training (0 disables).
    pub drop_path_prob: f64,
    /// Run in channels-last memory layout (same results up to float summation order).
    pub channels_last: bool,
    /// Keep only each cell's inputs in training forward passes and recompute the cell in the
    /// backward pass (`trainer.recompute_cells`): far less activation memory for one more
    /// forward of every cell. Same results up to float summation order.
    pub recompute_cells: bool,
    pub desc: ModelDesc,
}

fn params(map: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    serde_json::Value::Object(map.clone())
}

fn compile_cell(
    reg: &PluginRegistry,
    store: &ParamStore,
    cell: &CellDesc,
    scope: &str,
    taps: &Arc<CandidateTaps>,
) -> Result<Cell, ModelError> {
    let [(op0, c0), (op1, c1)] = cell_preprocess(cell);
    let pre0 = reg.create_op(op0, &c0, store, &format!("{scope}.pre0"))?;
    let pre1 = reg.create_op(op1, &c1, store, &format!("{scope}.pre1"))?;
    let mut nodes = Vec::new();
    for (ni, node) in cell.nodes.iter().enumerate() {
        let mut edges = Vec::new();
        for (ei, e) in node.edges.iter().enumerate() {
            let escope = format!("{scope}.{}.e{ei}", cell.node_scope(ni));
            let p = params(&e.params);
            let stride = p.get("stride").and_then(|s| s.as_i64()).unwrap_or(1);
            let op = match &e.mixer {
                Some(m) => {
                    let config = json!({"candidates": e.candidates, "candidate_params": p, "params": m.params});
                    reg.create_mixer(&m.name, &config, store, &escope, taps)?
                }
                None => reg.create_op(&e.op, &p, store, &escope)?,
            };
            edges.push(Edge {
                input: e.input,
                op,
                mixed: e.mixer.is_some(),
                identity: e.op == "skip_connect" && stride == 1,
            });
        }
        let combine = match &node.combine {
            Some(c) => Some(reg.create_op(
                &c.op,
                &params(&c.params),
                store,
                &format!("{scope}.{}.combine", cell.node_scope(ni)),
            )?),
            None => None,
        };
        nodes.push(Node { edges, combine });
    }
    let post = match &cell.post {
        Some(p) => Some(reg.create_op(&p.op, &params(&p.params), store, &format!("{scope}.post"))?),
        None => None,
    };
    Ok(Cell { pre0, pre1, nodes, concat: cell.concat.clone(), post })
}

/// The ops that bring a cell's two inputs to `c` channels at the cell's resolution: a factorized
/// reduce after a reduction cell, else a 1x1 ReLU-conv-BN (the DARTS cell convention).
pub fn cell_preprocess(cell: &CellDesc) -> [(&'static str, serde_json::Value); 2] {
    let affine = cell.affine;
    let pre0 = if cell.reduction_prev {
        ("factorized_reduce", json!({"c_in": cell.c_prev_prev, "c_out": cell.c, "affine": affine}))
    } else {
        ("relu_conv_bn", json!({"c_in": cell.c_prev_prev, "c_out": cell.c, "kernel_size": 1, "affine": affine}))
    };
    let pre1 = ("relu_conv_bn", json!({"c_in": cell.c_prev, "c_out": cell.c, "kernel_size": 1, "affine": affine}));
    [pre0, pre1]
}

/// The classifier after global average pooling.
pub fn classifier_op(desc: &ModelDesc) -> (&'static str, serde_json::Value) {
    ("linear", json!({"c_in": desc.head.c_in, "c_out": desc.num_classes}))
}

fn init_of(init: ParamInit) -> Init {
    match init {
        ParamInit::Zeros => Init::Zeros,
        ParamInit::Ones => Init::Ones,
        ParamInit::Const(v) => Init::Const(v),
        ParamInit::Normal { mean, std } => Init::Normal { mean, std },
        ParamInit::Uniform { lo, hi } => Init::Uniform { lo, hi },
    }
}

impl Network {
    /// Builds the network: the declared architecture parameters first (so mixers and ops can
    /// look them up), then stem, cells (mixed edges through their mixers) and head.
    pub fn compile(desc: &ModelDesc, reg: &PluginRegistry, store: &ParamStore) -> Result<Self, ModelError> {
        desc.validate()?;
        for p in &desc.arch_params {
            let t = store.create(&p.name, &p.shape, init_of(p.init), ParamRole::Arch).map_err(ModelError::Param)?;
            if !p.trainable {
                let _ = t.set_requires_grad(false);
            }
        }
        let mut stem = Vec::new();
        for (i, op) in desc.stem.iter().enumerate() {
            stem.push(reg.create_op(&op.op, &params(&op.params), store, &format!("stem.{i}"))?);
        }
        let taps = Arc::new(CandidateTaps::default());
        let mut cells = Vec::new();
        for (ci, cell) in desc.cells.iter().enumerate() {
            cells.push(Arc::new(Mutex::new(compile_cell(reg, store, cell, &format!("cells.{ci}"), &taps)?)));
        }
        let arch: Vec<Tensor> = store.named_arch().into_iter().map(|(_, t)| t).collect();
        let (weights, buffers) = (store.named_weights(), store.named_buffers());
        let in_cell = |ci: usize, list: &[(String, Tensor)]| -> Vec<Tensor> {
            let prefix = format!("cells.{ci}.");
            list.iter().filter(|(n, _)| n.starts_with(&prefix)).map(|(_, t)| t.shallow_clone()).collect()
        };
        let cell_params = (0..cells.len())
            .map(|ci| in_cell(ci, &weights).into_iter().chain(arch.iter().map(Tensor::shallow_clone)).collect())
            .collect();
        let cell_buffers = (0..cells.len()).map(|ci| in_cell(ci, &buffers)).collect();
        let mixed_edges = desc.cells.iter().map(|c| c.mixed_edges()).sum();
        let (head_op, head_config) = classifier_op(desc);
        let classifier = reg.create_op(head_op, &head_config, store, "classifier")?;
        let aux = match &desc.aux {
            Some(a) => {
                let mut p = a.params.clone();
                p.insert("c_in".into(), a.c_in.into());
                p.insert("num_classes".into(), desc.num_classes.into());
                Some((a.after_cell, reg.create_op(&a.op, &params(&p), store, AUX_SCOPE)?))
            }
            None => None,
        };
        Ok(Self {
            stem,
            cells,
            cell_params,
            cell_buffers,
            classifier,
            aux,
            taps,
            mixed_edges,
            drop_path_prob: 0.0,
            channels_last: false,
            recompute_cells: false,
            desc: desc.clone(),
        })
    }

    /// Cell `ci` on `(s0, s1)` keeping only its inputs for the backward pass, which runs the cell
    /// again (see `trainer.recompute_cells`). The recomputation replays the forward pass's random
    /// draws and must leave no trace: batch-norm statistics are put back as the forward pass left
    /// them and candidate forwards are not counted twice.
    fn recomputed_cell(&self, ci: usize, s0: &Tensor, s1: &Tensor) -> Result<Tensor, ModelError> {
        let cell = Arc::clone(&self.cells[ci]);
        let buffers: Vec<Tensor> = self.cell_buffers[ci].iter().map(Tensor::shallow_clone).collect();
        let taps = Arc::clone(&self.taps);
        let drop_path_prob = self.drop_path_prob;
        let mut calls = 0u32;
        let body: archai_recompute::Body = Box::new(move |inputs: &[Tensor]| {
            calls += 1;
            let again = calls > 1;
            let kept: Vec<Tensor> =
                if again { tch::no_grad(|| buffers.iter().map(Tensor::copy).collect()) } else { Vec::new() };
            let counted = taps.forwards();
            let out = cell_forward(&lock(&cell), ci, &inputs[0], &inputs[1], true, drop_path_prob);
            if again {
                // Through `data()` (a view with its own version counter): the recomputed graph
                // saved these statistics, and batch norm's training-mode backward does not read
                // them, so putting the values back must not invalidate that graph.
                tch::no_grad(|| {
                    for (b, k) in buffers.iter().zip(&kept) {
                        b.data().copy_(k);
                    }
                });
                taps.uncount(taps.forwards().saturating_sub(counted));
            }
            Ok(vec![out.map_err(|e| e.to_string())?])
        });
        let params: Vec<Tensor> = self.cell_params[ci].iter().map(Tensor::shallow_clone).collect();
        let mut out = archai_recompute::recompute(&[s0, s1], &params, body)
            .map_err(|e| ModelError::Forward(format!("cell {ci}: {e}")))?;
        Ok(out.remove(0))
    }

    /// Logits for a batch of images.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        Ok(self.forward_with_aux(x, train, false)?.0)
    }

    pub fn has_aux(&self) -> bool {
        self.aux.is_some()
    }

    /// Logits, and the auxiliary head's logits when `want_aux` and the model has one.
    pub fn forward_with_aux(
        &self,
        x: &Tensor,
        train: bool,
        want_aux: bool,
    ) -> Result<(Tensor, Option<Tensor>), ModelError> {
        let mut aux_logits = None;
        let mut s = if self.channels_last {
            // NCHW shape with NHWC strides (what PyTorch calls channels_last): convolutions,
            // pooling and batch norm keep that layout, and oneDNN's depthwise kernels are much
            // faster in it on CPU.
            to_channels_last(x)
        } else {
            x.shallow_clone()
        };
        for op in &self.stem {
            s = op.forward(&[&s], train)?;
            if self.channels_last && !is_channels_last(&s) {
                // A one-channel image is NCHW and NHWC at once, so libtorch keeps the first op's
                // output, and every op after it, in NCHW: every Fashion-MNIST network would run
                // in NCHW (a network whose stem holds all its layers, like resnet_small, up to
                // its head). The op's gradient comes back in NCHW too: its closing batch norm
                // would otherwise get a channels-last gradient for an NCHW output and take
                // libtorch's serial backward.
                let x = archai_dense_grad::dense_grad(&s).map_err(|e| ModelError::Forward(e.to_string()))?;
                s = to_channels_last(&x);
            }
        }
        let (mut s0, mut s1) = (s.shallow_clone(), s);
        let recompute = self.recompute_cells && train && archai_recompute::grad_enabled();
        for ci in 0..self.cells.len() {
            let out = if recompute {
                self.recomputed_cell(ci, &s0, &s1)?
            } else {
                cell_forward(&lock(&self.cells[ci]), ci, &s0, &s1, train, self.drop_path_prob)?
            };
            if let Some((_, head)) = self.aux.as_ref().filter(|(at, _)| want_aux && *at == ci) {
                aux_logits = Some(head.forward(&[&out], train)?);
            }
            s0 = s1;
            s1 = out;
        }
        let pooled = s1.f_adaptive_avg_pool2d([1, 1]).and_then(|p| p.f_flatten(1, -1)).map_err(|_| {
            ModelError::Forward(format!("the last cell's output {:?} is not a batch of feature maps", s1.size()))
        })?;
        Ok((self.classifier.forward(&[&pooled], train)?, aux_logits))
    }

    /// Forward calls of mixer-built candidate ops since the network was compiled.
    pub fn candidate_forwards(&self) -> u64 {
        self.taps.forwards()
    }

    /// Eval-mode forward of `x` without gradients that returns the output of every candidate op
    /// (the ops mixers built through the host) whose scope starts with `prefix`, in forward order.
    pub fn candidate_outputs(&self, x: &Tensor, prefix: &str) -> Result<Vec<(String, Tensor)>, ModelError> {
        let _guard = tch::no_grad_guard();
        self.forward_capturing(x, false, prefix).map(|(_, captured)| captured)
    }

    /// `forward(x, train)` that also returns the output of every candidate op whose scope starts
    /// with `prefix`, in forward order. Captured candidates compute their own output and the
    /// mixer's weight multiplies it (the plain forward lets a candidate fold the weight into its
    /// last layer instead): the same network up to float rounding. With `recompute_cells` the
    /// backward pass recomputes the cells without the capture, so with the folded weights.
    pub fn forward_capturing(
        &self,
        x: &Tensor,
        train: bool,
        prefix: &str,
    ) -> Result<(Tensor, Vec<(String, Tensor)>), ModelError> {
        self.taps.start_capture(prefix);
        let result = self.forward(x, train);
        let captured = self.taps.take_capture();
        result.map(|y| (y, captured))
    }

    /// Number of mixed edges in the network.
    pub fn mixed_edges(&self) -> usize {
        self.mixed_edges
    }
}

fn lock(cell: &Mutex<Cell>) -> std::sync::MutexGuard<'_, Cell> {
    cell.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drops whole samples with probability `p` during training (scaling the kept ones by 1/(1-p)).
fn drop_path(x: Tensor, train: bool, p: f64) -> Tensor {
    if !train || p <= 0.0 {
        return x;
    }
    let keep = 1.0 - p;
    let mask = Tensor::empty([x.size()[0], 1, 1, 1], (x.kind(), x.device())).bernoulli_float_(keep);
    x / keep * mask
}

/// One cell on its two inputs: preprocessing, nodes, concatenation, post op.
fn cell_forward(
    cell: &Cell,
    ci: usize,
    s0: &Tensor,
    s1: &Tensor,
    train: bool,
    drop_path_prob: f64,
) -> Result<Tensor, ModelError> {
    let mut states = vec![cell.pre0.forward(&[s0], train)?, cell.pre1.forward(&[s1], train)?];
    for (ni, node) in cell.nodes.iter().enumerate() {
        let mut outs = Vec::with_capacity(node.edges.len());
        for e in &node.edges {
            let y = e.op.forward(&[&states[e.input]], train)?;
            outs.push(if e.identity || e.mixed { y } else { drop_path(y, train, drop_path_prob) });
        }
        let out = match &node.combine {
            Some(op) => op.forward(&outs.iter().collect::<Vec<_>>(), train)?,
            None => sum_edges(&node.edges, outs)
                .map_err(|e| ModelError::Forward(format!("cell {ci}, node {}: {e}", ni + 2)))?,
        };
        states.push(out);
    }
    // Each part's gradient is a channel slice of the output's (after the last cell, a broadcast
    // from the average pool): made dense in the part's layout before it reaches the nodes' batch
    // norms, whose backward is serial otherwise (see archai-dense-grad).
    let parts: Vec<Tensor> = cell
        .concat
        .iter()
        .map(|&i| archai_dense_grad::dense_grad(&states[i]))
        .collect::<Result<_, _>>()
        .map_err(|e| ModelError::Forward(format!("cell {ci}: {e}")))?;
    let out = Tensor::f_cat(&parts, 1).map_err(|_| {
        let shapes: Vec<String> =
            cell.concat.iter().zip(&parts).map(|(i, t)| format!("state {i} {:?}", t.size())).collect();
        ModelError::Forward(format!(
            "cell {ci}: its output states cannot be concatenated along channels ({})",
            shapes.join(", ")
        ))
    })?;
    match &cell.post {
        Some(op) => Ok(op.forward(&[&out], train)?),
        None => Ok(out),
    }
}

/// The sum of a node's edge outputs; an error naming each edge's op, plugin and output shape when
/// they do not add up (an op of a plugin that returns the wrong shape, say), never a panic.
fn sum_edges(edges: &[Edge], outs: Vec<Tensor>) -> Result<Tensor, String> {
    let describe = |outs: &[Tensor]| {
        edges
            .iter()
            .zip(outs)
            .map(|(e, y)| {
                format!("edge from state {} `{}` ({}) gives {:?}", e.input, e.op.name(), e.op.plugin(), y.size())
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let Some(first) = outs.first() else { return Err("the node has no edges".into()) };
    let shape = first.size();
    if outs.iter().any(|y| y.size() != shape) {
        return Err(format!("its edge outputs differ in shape: {}", describe(&outs)));
    }
    let mut it = outs.iter();
    let mut acc = it.next().expect("checked above").shallow_clone();
    for y in it {
        acc = acc.f_add(y).map_err(|e| format!("summing its edge outputs ({}): {e}", describe(&outs)))?;
    }
    Ok(acc)
}

/// `t` with NCHW shape and NHWC strides, dense (what PyTorch calls channels_last).
fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether `t` is already what [`to_channels_last`] makes.
fn is_channels_last(t: &Tensor) -> bool {
    t.dim() == 4 && t.permute([0, 2, 3, 1]).is_contiguous()
}
