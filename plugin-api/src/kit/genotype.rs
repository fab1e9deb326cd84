//! Discretizing a DARTS-macro search network: alpha-row statistics, the top-k rule and the rebuild
//! of the final network. Finalizers of the DARTS family (darts-topk, pc-darts-topk) share this.
use crate::model_desc::{CellDesc, CellFill, DartsMacro, EdgeDesc, ModelDesc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tch::{Device, Kind, Tensor};

/// A cell's choice: per intermediate node, the `(op, input)` pairs it keeps.
pub type Genotype = Vec<Vec<(String, usize)>>;

/// Softmax of one row, in f64.
pub fn softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|a| (a - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// Entropy (nats) of a probability row.
pub fn entropy(p: &[f64]) -> f64 {
    -p.iter().filter(|&&x| x > 0.0).map(|x| x * x.ln()).sum::<f64>()
}

/// The best candidate other than `none` of one mixed edge: `(index, weight)`; the first on ties.
pub fn best_non_none(weights: &[f64], candidates: &[String]) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (i, (w, c)) in weights.iter().zip(candidates).enumerate() {
        if c == "none" {
            continue;
        }
        if best.is_none_or(|(_, b)| *w > b) {
            best = Some((i, *w));
        }
    }
    best
}

/// A 1-D or 2-D tensor as rows of f64 (a 1-D tensor is one row).
pub fn tensor_rows(t: &Tensor) -> anyhow::Result<Vec<Vec<f64>>> {
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
    match t.dim() {
        1 => Ok(vec![Vec::<f64>::try_from(&t)?]),
        2 => Ok(Vec::<Vec<f64>>::try_from(&t)?),
        _ => anyhow::bail!("expected a 1-D or 2-D architecture tensor, got shape {:?}", t.size()),
    }
}

/// Architecture parameters as rows of f64, by name (tensors of other ranks are skipped).
pub fn named_rows(arch: &[(String, Tensor)]) -> Vec<(String, Vec<Vec<f64>>)> {
    arch.iter().filter_map(|(n, t)| tensor_rows(t).ok().map(|r| (n.clone(), r))).collect()
}

/// The rows of the architecture parameter `name`, or an error listing what there is.
pub fn rows_of<'a>(arch: &'a [(String, Vec<Vec<f64>>)], name: &str) -> anyhow::Result<&'a Vec<Vec<f64>>> {
    arch.iter().find(|(n, _)| n == name).map(|(_, r)| r).ok_or_else(|| {
        let have: Vec<&str> = arch.iter().map(|(n, _)| n.as_str()).collect();
        anyhow::anyhow!("architecture parameter `{name}` is missing (the model has {have:?})")
    })
}

/// The softmax row of a mixed edge's `alpha` at its `row` (mixer params written by
/// [`DartsMacro`]); errors name the edge.
pub fn edge_softmax(arch: &[(String, Vec<Vec<f64>>)], e: &EdgeDesc) -> anyhow::Result<Vec<f64>> {
    Ok(softmax(edge_alpha(arch, e)?))
}

/// The raw `alpha` row of a mixed edge (mixer params `alpha`, `row`), checked to have one
/// finite entry per candidate; errors name the edge.
pub fn edge_alpha<'a>(arch: &'a [(String, Vec<Vec<f64>>)], e: &EdgeDesc) -> anyhow::Result<&'a [f64]> {
    let (name, row) = e.alpha_row().ok_or_else(|| {
        anyhow::anyhow!("edge from node {} has no `alpha`/`row` mixer params; it was not built by DartsMacro", e.input)
    })?;
    let rows = rows_of(arch, name)?;
    let r =
        rows.get(row).ok_or_else(|| anyhow::anyhow!("`{name}` has {} rows, the edge reads row {row}", rows.len()))?;
    anyhow::ensure!(
        r.len() == e.candidates.len(),
        "`{name}` row {row} has {} columns but the edge has {} candidates",
        r.len(),
        e.candidates.len()
    );
    anyhow::ensure!(r.iter().all(|x| x.is_finite()), "`{name}` row {row} is not finite: {r:?}");
    Ok(r)
}

/// The top-k rule for one cell: per node, rank the incoming edges by the weight of their best
/// non-`none` candidate and keep the top `k`, each becoming that candidate (ties keep the lower
/// input first, as Python's stable sort does). `weights(node, edge_index, edge)` gives a mixed
/// edge's candidate weights; fixed edges are always kept first.
pub fn cell_genotype(
    cell: &CellDesc,
    k: usize,
    mut weights: impl FnMut(usize, usize, &EdgeDesc) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<Genotype> {
    let mut genotype = Vec::new();
    for (ni, node) in cell.nodes.iter().enumerate() {
        let mut ranked: Vec<(f64, String, usize)> = Vec::new();
        for (ei, e) in node.edges.iter().enumerate() {
            if e.is_mixed() {
                let p = weights(ni, ei, e)?;
                let (best, w) = best_non_none(&p, &e.candidates).ok_or_else(|| {
                    anyhow::anyhow!("edge {} -> node {} has no candidate other than `none`", e.input, ni + 2)
                })?;
                ranked.push((w, e.candidates[best].clone(), e.input));
            } else {
                ranked.push((f64::INFINITY, e.op.clone(), e.input));
            }
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        genotype.push(ranked.into_iter().take(k).map(|(_, op, input)| (op, input)).collect());
    }
    Ok(genotype)
}

/// The first normal and the first reduction cell of a description.
pub fn cell_types(desc: &ModelDesc) -> anyhow::Result<(&CellDesc, &CellDesc)> {
    let normal = desc.cells.iter().find(|c| !c.reduction).ok_or_else(|| anyhow::anyhow!("no normal cell"))?;
    let reduce = desc.cells.iter().find(|c| c.reduction).ok_or_else(|| anyhow::anyhow!("no reduction cell"))?;
    Ok((normal, reduce))
}

/// The macro values a DARTS search description was built with.
pub fn macro_of(desc: &ModelDesc) -> anyhow::Result<DartsMacro> {
    let first = desc.cells.first().ok_or_else(|| anyhow::anyhow!("the search description has no cells"))?;
    let nodes = first.nodes.len();
    anyhow::ensure!(
        desc.cells.iter().all(|c| c.nodes.len() == nodes),
        "the search description's cells have different node counts; this finalizer needs a DARTS macro-architecture"
    );
    let channels = if first.reduction { first.c / 2 } else { first.c };
    anyhow::ensure!(
        channels > 0 && first.c_prev_prev % channels == 0,
        "cannot infer the stem multiplier: stem outputs {} channels, the first cell has {channels}",
        first.c_prev_prev
    );
    let layers = desc.cells.len();
    let reductions: Vec<usize> = desc.cells.iter().enumerate().filter(|(_, c)| c.reduction).map(|(i, _)| i).collect();
    let darts_default: Vec<usize> = (0..layers).filter(|&i| i == layers / 3 || i == 2 * layers / 3).collect();
    let stem_stride = match desc.stem.first().and_then(|s| s.params.get("stride")) {
        None => 1,
        Some(v) => v.as_i64().ok_or_else(|| anyhow::anyhow!("the stem's stride is not an integer: {v}"))?,
    };
    Ok(DartsMacro {
        layers,
        nodes,
        channels,
        stem_multiplier: first.c_prev_prev / channels,
        stem_stride,
        auxiliary: desc.aux.is_some(),
        reduction_cells: (reductions != darts_default).then_some(reductions),
    })
}

/// Size of the final network; every key optional (default: as the search network).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FinalSize {
    /// Cells of the final network.
    #[serde(default)]
    pub layers: Option<usize>,
    /// Initial channels of the final network.
    #[serde(default)]
    pub channels: Option<i64>,
    /// Give the final network DARTS' auxiliary head.
    #[serde(default)]
    pub auxiliary: Option<bool>,
    /// Stride of the final network's stem convolution.
    #[serde(default)]
    pub stem_stride: Option<i64>,
}

/// Configuration of a top-k finalizer (`darts-topk`, `pc-darts-topk`): `k` edges per node and
/// the final network's size.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TopkConfig {
    /// Incoming edges kept per node.
    pub k: usize,
    /// Cells of the final network (default: as many as the search network).
    pub layers: Option<usize>,
    /// Initial channels of the final network (default: as in the search network).
    pub channels: Option<i64>,
    /// Give the final network DARTS' auxiliary head (default: as the search network).
    pub auxiliary: Option<bool>,
    /// Stride of the final network's stem convolution (default: as the search network).
    pub stem_stride: Option<i64>,
    /// Mean entropy of the mixing weights, as a fraction of a uniform choice's, at or above
    /// which the search is reported as undecided (chosen by noise).
    pub undecided_entropy: f64,
}

impl Default for TopkConfig {
    fn default() -> Self {
        Self {
            k: 2,
            layers: None,
            channels: None,
            auxiliary: None,
            stem_stride: None,
            undecided_entropy: crate::kit::decisive::UNDECIDED_ENTROPY,
        }
    }
}

impl TopkConfig {
    /// Parses (`null` = defaults) and validates; errors start with `<what> config:`.
    pub fn from_json(value: &Value, what: &str) -> anyhow::Result<Self> {
        let c: Self = crate::kit::config::parse(value, what)?;
        anyhow::ensure!(c.k >= 1, "{what} config: `k` must be at least 1");
        anyhow::ensure!(
            c.undecided_entropy > 0.0 && c.undecided_entropy <= 1.0,
            "{what} config: `undecided_entropy` is a fraction of the uniform entropy, in (0, 1]; got {}",
            c.undecided_entropy
        );
        Ok(c)
    }

    /// The final network's size overrides.
    pub fn size(&self) -> FinalSize {
        FinalSize {
            layers: self.layers,
            channels: self.channels,
            auxiliary: self.auxiliary,
            stem_stride: self.stem_stride,
        }
    }
}

/// The final name: `darts_search` -> `darts_final`.
pub fn final_name(search: &str) -> String {
    format!("{}_final", search.strip_suffix("_search").unwrap_or(search))
}

/// The discrete network of the chosen cells, with the search network's macro values unless
/// `size` overrides them (learnable batch norm, plain pooling: the paper's eval network).
pub fn rebuild(
    search: &ModelDesc,
    normal: &Genotype,
    reduce: &Genotype,
    size: &FinalSize,
) -> anyhow::Result<ModelDesc> {
    let mut m = macro_of(search)?;
    if let Some(l) = size.layers {
        m.layers = l;
    }
    if let Some(c) = size.channels {
        m.channels = c;
    }
    if let Some(a) = size.auxiliary {
        m.auxiliary = a;
    }
    if let Some(s) = size.stem_stride {
        m.stem_stride = s;
    }
    Ok(m.build(
        &final_name(&search.name),
        search.input.clone(),
        search.num_classes,
        &CellFill::Genotype { normal, reduce },
    )?)
}

/// What `after_epoch` logs: the softmax of each 2-D architecture parameter (`alphas`, keyed by
/// the name without its `alphas.` prefix, one list per row), the mean entropy of those rows
/// (`alpha_entropy`: over all of them, one number; `alpha_entropy_by_group`: per parameter) and,
/// given the search description, the top-2 genotype the DARTS rule would pick now (`genotype`,
/// per cell type and node its `[op, input]` pairs).
pub fn alpha_report(arch: &[(String, Tensor)], layout: Option<&ModelDesc>) -> anyhow::Result<Value> {
    let mut probs = Map::new();
    let mut entropies = Map::new();
    let (mut h_sum, mut rows_total) = (0.0, 0usize);
    let rows = named_rows(arch);
    for (name, r) in &rows {
        if !r.iter().all(|row| row.len() > 1) || !name.starts_with("alphas.") {
            continue;
        }
        let group = name.strip_prefix("alphas.").unwrap_or(name);
        let p: Vec<Vec<f64>> = r.iter().map(|row| softmax(row)).collect();
        let h: f64 = p.iter().map(|row| entropy(row)).sum();
        h_sum += h;
        rows_total += p.len();
        entropies.insert(group.into(), json!(h / p.len().max(1) as f64));
        probs.insert(group.into(), json!(p));
    }
    let mut out = Map::new();
    out.insert("alphas".into(), Value::Object(probs));
    out.insert("alpha_entropy".into(), json!(h_sum / rows_total.max(1) as f64));
    out.insert("alpha_entropy_by_group".into(), Value::Object(entropies));
    if let Some(layout) = layout {
        out.insert("genotype".into(), genotype_report(layout, 2, |_, _, e| edge_softmax(&rows, e)));
    }
    Ok(Value::Object(out))
}

/// Per cell type (`normal`, `reduce`), the genotype the top-k rule picks with `weights`, as
/// `[op, input]` pairs per node (or the reason it cannot).
pub fn genotype_report(
    layout: &ModelDesc,
    k: usize,
    mut weights: impl FnMut(usize, usize, &EdgeDesc) -> anyhow::Result<Vec<f64>>,
) -> Value {
    let mut genotypes = Map::new();
    for (kind, reduction) in [("normal", false), ("reduce", true)] {
        let Some(cell) = layout.cells.iter().find(|c| c.reduction == reduction) else { continue };
        let g = match cell_genotype(cell, k, &mut weights) {
            Ok(g) => json!(g
                .iter()
                .map(|node| node.iter().map(|(op, i)| json!([op, i])).collect::<Vec<_>>())
                .collect::<Vec<_>>()),
            Err(e) => json!(format!("unavailable: {e}")),
        };
        genotypes.insert(kind.into(), g);
    }
    Value::Object(genotypes)
}
