//! Compiles a [`ModelDesc`] into a network whose ops come from op plugins. Weights live in the
//! [`ParamStore`]'s weight store, architecture parameters (alphas) in its arch store.
use crate::params::ParamStore;
use crate::plugins::{PluginError, PluginOp, PluginRegistry};
use archai_model_desc::{CellDesc, ModelDesc};
use archai_plugin_api::{Init, ParamRole};
use serde_json::json;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

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

enum EdgeOp {
    Fixed(PluginOp),
    /// Softmax-weighted sum over candidates; `row` of the cell's alpha tensor holds the weights.
    /// `none` candidates are left out: their contribution is exactly zero.
    Mixed {
        ops: Vec<(usize, PluginOp)>,
        row: usize,
    },
}

struct Edge {
    input: usize,
    op: EdgeOp,
    identity: bool,
}

struct Cell {
    pre0: PluginOp,
    pre1: PluginOp,
    nodes: Vec<Vec<Edge>>,
    concat: Vec<usize>,
    alpha_group: Option<String>,
}

/// A compiled network.
pub struct Network {
    stem: Vec<PluginOp>,
    cells: Vec<Cell>,
    classifier: PluginOp,
    /// Auxiliary head and the index of the cell it reads.
    aux: Option<(usize, PluginOp)>,
    alphas: BTreeMap<String, Tensor>,
    /// Probability of dropping a non-identity edge per sample during training (0 disables).
    pub drop_path_prob: f64,
    /// Run in channels-last memory layout (same results up to float summation order).
    pub channels_last: bool,
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
    mixed_rows: &mut usize,
) -> Result<Cell, ModelError> {
    let affine = cell.alpha_group.is_none();
    let pre0 = if cell.reduction_prev {
        reg.create_op(
            "factorized_reduce",
            &json!({"c_in": cell.c_prev_prev, "c_out": cell.c, "affine": affine}),
            store,
            &format!("{scope}.pre0"),
        )?
    } else {
        reg.create_op(
            "relu_conv_bn",
            &json!({"c_in": cell.c_prev_prev, "c_out": cell.c, "kernel_size": 1, "affine": affine}),
            store,
            &format!("{scope}.pre0"),
        )?
    };
    let pre1 = reg.create_op(
        "relu_conv_bn",
        &json!({"c_in": cell.c_prev, "c_out": cell.c, "kernel_size": 1, "affine": affine}),
        store,
        &format!("{scope}.pre1"),
    )?;
    let mut nodes = Vec::new();
    for (ni, node) in cell.nodes.iter().enumerate() {
        let mut edges = Vec::new();
        for (ei, e) in node.edges.iter().enumerate() {
            let escope = format!("{scope}.n{}.e{ei}", ni + 2);
            let p = params(&e.params);
            let stride = p.get("stride").and_then(|s| s.as_i64()).unwrap_or(1);
            let op = if e.is_mixed() {
                let mut ops = Vec::new();
                for (ci, cand) in e.candidates.iter().enumerate() {
                    if cand == "none" {
                        // Its output is zero; evaluating it would only cost time.
                        reg.find(archai_plugin_api::ComponentKind::Op, cand)?;
                        continue;
                    }
                    ops.push((ci, reg.create_op(cand, &p, store, &format!("{escope}.{cand}"))?));
                }
                let row = *mixed_rows;
                *mixed_rows += 1;
                EdgeOp::Mixed { ops, row }
            } else {
                EdgeOp::Fixed(reg.create_op(&e.op, &p, store, &escope)?)
            };
            edges.push(Edge { input: e.input, op, identity: e.op == "skip_connect" && stride == 1 });
        }
        nodes.push(edges);
    }
    Ok(Cell { pre0, pre1, nodes, concat: cell.concat.clone(), alpha_group: cell.alpha_group.clone() })
}

impl Network {
    /// Builds the network: stem and cell ops from plugins, alphas (one tensor per alpha group,
    /// N(0, 1e-3) as in DARTS) in the arch store.
    pub fn compile(desc: &ModelDesc, reg: &PluginRegistry, store: &ParamStore) -> Result<Self, ModelError> {
        desc.validate()?;
        let mut stem = Vec::new();
        for (i, op) in desc.stem.iter().enumerate() {
            stem.push(reg.create_op(&op.op, &params(&op.params), store, &format!("stem.{i}"))?);
        }
        let mut alphas = BTreeMap::new();
        for (group, rows, cols) in desc.alpha_shapes() {
            let t = store
                .create(
                    &format!("alphas.{group}"),
                    &[rows as i64, cols as i64],
                    Init::Normal { mean: 0.0, std: 1e-3 },
                    ParamRole::Arch,
                )
                .map_err(ModelError::Param)?;
            alphas.insert(group, t);
        }
        let mut cells = Vec::new();
        for (ci, cell) in desc.cells.iter().enumerate() {
            let mut rows = 0;
            cells.push(compile_cell(reg, store, cell, &format!("cells.{ci}"), &mut rows)?);
        }
        let classifier =
            reg.create_op("linear", &json!({"c_in": desc.head.c_in, "c_out": desc.num_classes}), store, "classifier")?;
        let aux = match &desc.aux {
            Some(a) => {
                let mut p = a.params.clone();
                p.insert("c_in".into(), a.c_in.into());
                p.insert("num_classes".into(), desc.num_classes.into());
                Some((a.after_cell, reg.create_op(&a.op, &params(&p), store, AUX_SCOPE)?))
            }
            None => None,
        };
        Ok(Self { stem, cells, classifier, aux, alphas, drop_path_prob: 0.0, channels_last: false, desc: desc.clone() })
    }

    fn drop_path(&self, x: Tensor, train: bool) -> Tensor {
        if !train || self.drop_path_prob <= 0.0 {
            return x;
        }
        let keep = 1.0 - self.drop_path_prob;
        let mask = Tensor::empty([x.size()[0], 1, 1, 1], (x.kind(), x.device())).bernoulli_float_(keep);
        x / keep * mask
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
            x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
        } else {
            x.shallow_clone()
        };
        for op in &self.stem {
            s = op.forward(&[&s], train)?;
        }
        let (mut s0, mut s1) = (s.shallow_clone(), s);
        for (ci, cell) in self.cells.iter().enumerate() {
            let weights = cell.alpha_group.as_ref().map(|g| self.alphas[g].softmax(-1, Kind::Float));
            let mut states = vec![cell.pre0.forward(&[&s0], train)?, cell.pre1.forward(&[&s1], train)?];
            for edges in &cell.nodes {
                let mut sum: Option<Tensor> = None;
                for e in edges {
                    let input = &states[e.input];
                    let out = match &e.op {
                        EdgeOp::Fixed(op) => {
                            let y = op.forward(&[input], train)?;
                            if e.identity {
                                y
                            } else {
                                self.drop_path(y, train)
                            }
                        }
                        EdgeOp::Mixed { ops, row } => {
                            let w = weights.as_ref().expect("mixed edges have an alpha group").get(*row as i64);
                            let mut acc: Option<Tensor> = None;
                            for (ci, op) in ops {
                                let y = op.forward(&[input], train)? * w.get(*ci as i64);
                                acc = Some(match acc {
                                    Some(a) => a + y,
                                    None => y,
                                });
                            }
                            match acc {
                                Some(a) => a,
                                None => {
                                    return Err(ModelError::Forward("a mixed edge has only `none` candidates".into()))
                                }
                            }
                        }
                    };
                    sum = Some(match sum {
                        Some(a) => a + out,
                        None => out,
                    });
                }
                states.push(sum.expect("validated: nodes have edges"));
            }
            let out = Tensor::cat(&cell.concat.iter().map(|&i| states[i].shallow_clone()).collect::<Vec<_>>(), 1);
            if let Some((_, head)) = self.aux.as_ref().filter(|(at, _)| want_aux && *at == ci) {
                aux_logits = Some(head.forward(&[&out], train)?);
            }
            s0 = s1;
            s1 = out;
        }
        let pooled = s1.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        Ok((self.classifier.forward(&[&pooled], train)?, aux_logits))
    }

    /// Alpha tensors by group name.
    pub fn alphas(&self) -> &BTreeMap<String, Tensor> {
        &self.alphas
    }
}
