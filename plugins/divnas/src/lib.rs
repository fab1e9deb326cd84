//! DivNAS (Archai's own algorithm; no paper) as an archai plugin: the finalizers `mi-ranked` and
//! `mi`, the algorithm `divnas-noalpha` and its mixer `sum`. The search is DARTS' bilevel one
//! (confs/algos/divnas.yaml: the `darts` algorithm, second order) or, with `divnas-noalpha`
//! (confs/algos/divnas_noalpha.yaml), ordinary training of a supernet whose edges are the plain
//! sum of their candidates, without alphas (finalize it with `mi`: `mi-ranked` needs alphas).
//! What DivNAS adds is how the final edges are chosen: by the diversity of what the candidates
//! compute, not by their alphas alone.
//!
//! After the search the finalizer runs `batches` batches of the search's training split
//! (normalized, not augmented) through the supernet in eval mode and, for the first normal and the
//! first reduction cell, reads every candidate op's output (the host's `candidate_outputs`). Per
//! node, over all its (edge, candidate) pairs, it builds the RBF kernel
//! K_ab = mean over samples of exp(−‖f_a − f_b‖² / (2σ²)) on the flattened outputs — a running mean
//! over the batches that really runs (Archai's counter was never incremented, so it used the last
//! batch only). It then picks the set A of k pairs maximising the Gaussian mutual information
//! I(A; V∖A) = ½·(log det K_A + log det K_{V∖A} − log det K_V), by brute force over all subsets
//! of size k (a ridge of 1e-6 keeps nearly equal candidates' determinants finite):
//! - `mi-ranked`: V is the top half of the pairs by their softmax(α) weight (at least k);
//! - `mi`: V is every pair (Archai's `mi`, which never ran: it used undefined names).
//!
//! The chosen pairs become the node's edges (two ops from the same input are possible), and the
//! final network is rebuilt as `darts-topk` does. Into `search/artifacts/` it writes one heat map
//! per node (`kernel_<normal|reduce>_node<N>.svg`, the kernel with its pairs and the chosen ones)
//! and `mi_selection.json` (per node: the pairs, their α weights, V, the choice and its MI).
//!
//! ```yaml
//! finalizer:
//!   name: mi-ranked
//!   config: {k: 2, sigma: 168.0, batches: 4, batch_size: 32, layers: 20, channels: 36, auxiliary: true}
//! ```
//! (`stem_stride` too, as for `darts-topk`: default as in the search network.)
#![allow(non_local_definitions)]

use archai_plugin_api::kit::config::{check_candidates, darts_primitives, parse};
use archai_plugin_api::kit::genotype::{edge_softmax, named_rows, rebuild, FinalSize, Genotype};
use archai_plugin_api::kit::mixer::candidates;
use archai_plugin_api::model_desc::{CellFill, DartsMacro, MixerDesc, ModelDesc};
use archai_plugin_api::tch::{Device, Kind, Tensor};
use archai_plugin_api::{
    export_plugin, register_algorithm, register_finalizer, register_mixer, Algorithm, ArchTraining, HostOp,
    MixerConfig, Op, ParamBuilder, SearchContext, SearchPlan,
};
use archai_plugin_api::{Finalizer, Model};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

export_plugin!();

/// Configuration of `mi-ranked` and `mi`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MiConfig {
    /// Edges (candidate pairs) kept per node.
    pub k: usize,
    /// RBF bandwidth σ (Archai: 168, for flattened feature maps of thousands of values).
    pub sigma: f64,
    /// Batches of the search's training split the kernel averages over.
    pub batches: usize,
    pub batch_size: usize,
    pub layers: Option<usize>,
    pub channels: Option<i64>,
    pub auxiliary: Option<bool>,
    /// Stride of the final network's stem convolution (default: as the search network).
    pub stem_stride: Option<i64>,
}

impl Default for MiConfig {
    fn default() -> Self {
        Self {
            k: 2,
            sigma: 168.0,
            batches: 4,
            batch_size: 32,
            layers: None,
            channels: None,
            auxiliary: None,
            stem_stride: None,
        }
    }
}

impl MiConfig {
    pub fn from_json(v: &Value, what: &str) -> anyhow::Result<Self> {
        let c: Self = parse(v, what)?;
        anyhow::ensure!(c.k >= 1, "{what} config: `k` must be at least 1");
        anyhow::ensure!(c.sigma > 0.0 && c.sigma.is_finite(), "{what} config: `sigma` must be positive");
        anyhow::ensure!(
            c.batches >= 1 && c.batch_size >= 1,
            "{what} config: `batches` and `batch_size` must be at least 1"
        );
        Ok(c)
    }
}

/// A running mean of RBF kernels over batches.
#[derive(Debug, Default)]
pub struct Kernel {
    sum: Option<Tensor>,
    batches: usize,
}

impl Kernel {
    /// Adds one batch: `features` is [pairs, samples, values]; the batch's kernel is the mean over
    /// its samples of exp(−‖f_a − f_b‖² / (2σ²)).
    pub fn add(&mut self, features: &Tensor, sigma: f64) -> anyhow::Result<()> {
        let f = features.f_to_kind(Kind::Double)?.f_transpose(0, 1)?.f_contiguous()?;
        let d = Tensor::f_cdist(&f, &f, 2.0, None::<i64>)?;
        let k = d.f_square()?.f_div_scalar(-2.0 * sigma * sigma)?.f_exp()?.f_mean_dim(0, false, Kind::Double)?;
        self.sum = Some(match self.sum.take() {
            Some(s) => s.f_add(&k)?,
            None => k,
        });
        self.batches += 1;
        Ok(())
    }

    /// The mean kernel so far, as rows.
    pub fn matrix(&self) -> anyhow::Result<Vec<Vec<f64>>> {
        let sum = self.sum.as_ref().ok_or_else(|| anyhow::anyhow!("the kernel saw no batch"))?;
        Ok(Vec::<Vec<f64>>::try_from(sum.f_div_scalar(self.batches as f64)?.f_to_device(Device::Cpu)?)?)
    }
}

const RIDGE: f64 = 1e-6;

/// log det of the principal submatrix of `k` on `idx` (+ ridge), by Cholesky; −∞ if not positive.
pub fn log_det(k: &[Vec<f64>], idx: &[usize]) -> f64 {
    let n = idx.len();
    let mut l = vec![vec![0.0; n]; n];
    let mut total = 0.0;
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = l[i][..j].iter().zip(&l[j][..j]).map(|(a, b)| a * b).sum();
            let s = k[idx[i]][idx[j]] + if i == j { RIDGE } else { 0.0 } - dot;
            if i == j {
                if s <= 0.0 {
                    return f64::NEG_INFINITY;
                }
                l[i][i] = s.sqrt();
                total += 2.0 * l[i][i].ln();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    total
}

/// I(A; V∖A) = ½·(log det K_A + log det K_{V∖A} − log det K_V), with A and V as indices into `k`.
pub fn mutual_information(k: &[Vec<f64>], a: &[usize], v: &[usize]) -> f64 {
    let rest: Vec<usize> = v.iter().copied().filter(|i| !a.contains(i)).collect();
    0.5 * (log_det(k, a) + log_det(k, &rest) - log_det(k, v))
}

/// Every subset of `v` of size `k` (in lexicographic order of positions).
pub fn subsets(v: &[usize], k: usize) -> Vec<Vec<usize>> {
    fn go(v: &[usize], k: usize, start: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..v.len() {
            cur.push(v[i]);
            go(v, k, i + 1, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(v, k, 0, &mut Vec::new(), &mut out);
    out
}

/// The subset of `v` of size min(k, |v|) with the largest mutual information (the first on ties),
/// and that information.
pub fn best_subset(k: &[Vec<f64>], v: &[usize], size: usize) -> (Vec<usize>, f64) {
    let mut best = (Vec::new(), f64::NEG_INFINITY);
    for a in subsets(v, size.min(v.len())) {
        let mi = mutual_information(k, &a, v);
        if best.0.is_empty() || mi > best.1 {
            best = (a, mi);
        }
    }
    best
}

/// One (edge, candidate) pair of a node.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub edge: usize,
    pub input: usize,
    pub op: String,
    /// softmax(α) weight of the candidate on its edge.
    pub alpha: f64,
}

/// `cells.{c}.n{node}.e{edge}.{op}` -> (node, edge, op).
pub fn parse_scope(scope: &str, cell: usize) -> Option<(usize, usize, String)> {
    let rest = scope.strip_prefix(&format!("cells.{cell}."))?;
    let mut parts = rest.splitn(3, '.');
    let node = parts.next()?.strip_prefix('n')?.parse().ok()?;
    let edge = parts.next()?.strip_prefix('e')?.parse().ok()?;
    Some((node, edge, parts.next()?.to_string()))
}

/// The `mi-ranked` (`rank_by_alpha`) and `mi` finalizers.
pub struct MiFinalizer {
    pub name: &'static str,
    pub config: MiConfig,
    pub rank_by_alpha: bool,
}

impl MiFinalizer {
    /// The genotype of cell `ci` and the report of its nodes.
    fn cell(&self, search: &ModelDesc, ci: usize, kind: &str, model: &mut Model) -> anyhow::Result<(Genotype, Value)> {
        let cell = &search.cells[ci];
        let rows = named_rows(&model.arch_params());
        let prefix = format!("cells.{ci}.");
        let nodes = cell.nodes.len();
        let mut kernels: Vec<Kernel> = (0..nodes).map(|_| Kernel::default()).collect();
        let mut pairs: Vec<Vec<Pair>> = vec![Vec::new(); nodes];
        for b in 0..self.config.batches {
            let Some((x, _)) = model.data_batch(b as u64, self.config.batch_size as u64)? else { break };
            let outputs = model.candidate_outputs(&x, &prefix)?;
            let mut per_node: Vec<Vec<Tensor>> = (0..nodes).map(|_| Vec::new()).collect();
            for (scope, out) in outputs {
                let (node, edge, op) = parse_scope(&scope, ci).ok_or_else(|| {
                    anyhow::anyhow!("{}: candidate scope `{scope}` is not cells.C.nN.eE.OP", self.name)
                })?;
                let ni = node.checked_sub(2).filter(|&n| n < nodes).ok_or_else(|| {
                    anyhow::anyhow!("{}: candidate `{scope}` names node {node}, the cell has {nodes}", self.name)
                })?;
                if b == 0 {
                    let e = &cell.nodes[ni].edges[edge];
                    // Without alphas (a `divnas-noalpha` search) every candidate weighs the same.
                    let p = if e.alpha_row().is_some() {
                        edge_softmax(&rows, e)?
                    } else {
                        anyhow::ensure!(
                            !self.rank_by_alpha,
                            "{}: the search network has no alphas to rank by (a divnas-noalpha search?); finalize it with `mi`",
                            self.name
                        );
                        vec![1.0 / e.candidates.len() as f64; e.candidates.len()]
                    };
                    let col = e.candidates.iter().position(|c| *c == op).unwrap_or(0);
                    pairs[ni].push(Pair { edge, input: e.input, op, alpha: p[col] });
                }
                per_node[ni].push(out.f_flatten(1, -1)?);
            }
            for (ni, feats) in per_node.into_iter().enumerate() {
                if !feats.is_empty() {
                    kernels[ni].add(&Tensor::f_stack(&feats, 0)?, self.config.sigma)?;
                }
            }
        }
        let mut genotype = Vec::new();
        let mut report = Vec::new();
        for (ni, (kernel, pairs)) in kernels.iter().zip(&pairs).enumerate() {
            anyhow::ensure!(!pairs.is_empty(), "{}: node {} of cell {ci} has no candidate outputs", self.name, ni + 2);
            let k = kernel.matrix()?;
            let mut v: Vec<usize> = (0..pairs.len()).collect();
            if self.rank_by_alpha {
                v.sort_by(|&a, &b| pairs[b].alpha.total_cmp(&pairs[a].alpha));
                v.truncate((pairs.len() / 2).max(self.config.k).min(pairs.len()));
                v.sort_unstable();
            }
            let (chosen, mi) = best_subset(&k, &v, self.config.k);
            genotype.push(chosen.iter().map(|&i| (pairs[i].op.clone(), pairs[i].input)).collect());
            let svg = heat_map(&k, pairs, &chosen, &format!("{kind} cell, node {}", ni + 2));
            let file = model.write_artifact(&format!("kernel_{kind}_node{}.svg", ni + 2), svg.as_bytes())?;
            report.push(json!({
                "node": ni + 2,
                "pairs": pairs,
                "considered": v,
                "chosen": chosen,
                "mutual_information": mi,
                "batches": kernel.batches,
                "heat_map": file,
            }));
        }
        Ok((genotype, Value::Array(report)))
    }
}

impl Finalizer for MiFinalizer {
    fn finalize(&mut self, search: &ModelDesc, model: &mut Model<'_, '_>) -> anyhow::Result<ModelDesc> {
        let first = |reduction: bool| {
            search.cells.iter().position(|c| c.reduction == reduction && c.mixed_edges() > 0).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: the search network has no {} cell with mixed edges",
                    self.name,
                    if reduction { "reduction" } else { "normal" }
                )
            })
        };
        let (normal_ci, reduce_ci) = (first(false)?, first(true)?);
        let (normal, normal_report) = self.cell(search, normal_ci, "normal", model)?;
        let (reduce, reduce_report) = self.cell(search, reduce_ci, "reduce", model)?;
        let report =
            json!({"finalizer": self.name, "config": self.config, "normal": normal_report, "reduce": reduce_report});
        model.write_artifact("mi_selection.json", serde_json::to_string_pretty(&report)?.as_bytes())?;
        let size = FinalSize {
            layers: self.config.layers,
            channels: self.config.channels,
            auxiliary: self.config.auxiliary,
            stem_stride: self.config.stem_stride,
        };
        rebuild(search, &normal, &reduce, &size)
    }
}

/// The kernel as an SVG heat map (white at its smallest value .. dark blue at its largest, both
/// printed), pairs labelled, chosen ones in red.
pub fn heat_map(k: &[Vec<f64>], pairs: &[Pair], chosen: &[usize], title: &str) -> String {
    let n = k.len();
    let lo = k.iter().flatten().copied().fold(f64::INFINITY, f64::min);
    let hi = k.iter().flatten().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (cell, left, top) = (18.0, 190.0, 40.0);
    let size = left + cell * n as f64 + 20.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{h}" font-family="DejaVu Sans, sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14">RBF kernel, {title}: white {lo:.3}, blue {hi:.3}; chosen in red</text>"#,
        h = top + cell * n as f64 + 20.0
    );
    for (i, row) in k.iter().enumerate() {
        let colour = if chosen.contains(&i) { "#c00" } else { "#222" };
        let p = &pairs[i];
        s.push_str(&format!(
            r#"<text x="{x}" y="{y}" text-anchor="end" fill="{colour}">{op} (in {input}, α {a:.2})</text>"#,
            x = left - 6.0,
            y = top + cell * i as f64 + 13.0,
            op = p.op,
            input = p.input,
            a = p.alpha
        ));
        for (j, v) in row.iter().enumerate() {
            let shade = (255.0 * (1.0 - ((v - lo) / span).clamp(0.0, 1.0))) as u8;
            s.push_str(&format!(
                r#"<rect x="{}" y="{}" width="{cell}" height="{cell}" fill="rgb({shade},{shade},255)"><title>{v:.4}</title></rect>"#,
                left + cell * j as f64,
                top + cell * i as f64
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The `sum` mixer: the plain sum of the edge's candidates (`none` skipped: it adds zero).
pub struct SumMixer {
    ops: Vec<(i64, HostOp)>,
}

impl Op for SumMixer {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let mut out: Option<Tensor> = None;
        for (_, op) in &self.ops {
            let y = op.forward(&[&inputs[0]], train)?;
            out = Some(match out {
                Some(o) => o.f_add(&y)?,
                None => y,
            });
        }
        out.ok_or_else(|| anyhow::anyhow!("mixer `sum`: the edge has no candidates"))
    }
}

fn create_sum(config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let params = Value::Object(config.candidate_params.clone());
    Ok(Box::new(SumMixer { ops: candidates("sum", config, p, &params, true)? }))
}

/// Configuration of `divnas-noalpha`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NoAlphaConfig {
    #[serde(rename = "macro")]
    pub macro_: DartsMacro,
    pub candidates: Vec<String>,
}

impl Default for NoAlphaConfig {
    fn default() -> Self {
        Self { macro_: DartsMacro::default(), candidates: darts_primitives() }
    }
}

/// `divnas-noalpha`: the DARTS cell space with `sum` edges and no architecture parameters,
/// trained as an ordinary network; the finalizer (`mi`) does all the choosing.
pub struct NoAlpha {
    pub config: NoAlphaConfig,
}

impl Algorithm for NoAlpha {
    fn search_space(&mut self, ctx: &SearchContext) -> anyhow::Result<SearchPlan> {
        let mixer = MixerDesc { name: "sum".into(), params: serde_json::Map::new() };
        let mut desc = self
            .config
            .macro_
            .build(
                "divnas_search",
                ctx.input(),
                ctx.num_classes,
                &CellFill::Search { candidates: &self.config.candidates, mixer: &mixer },
            )
            .map_err(|e| anyhow::anyhow!("divnas-noalpha config `macro`: {e}"))?;
        desc.arch_params.clear();
        for e in desc.cells.iter_mut().flat_map(|c| c.nodes.iter_mut()).flat_map(|n| n.edges.iter_mut()) {
            if let Some(m) = e.mixer.as_mut() {
                m.params.clear();
            }
        }
        Ok(SearchPlan { desc, arch_training: ArchTraining::Manual })
    }
}

fn create_noalpha(config: &Value) -> anyhow::Result<Box<dyn Algorithm>> {
    let config: NoAlphaConfig = parse(config, "divnas-noalpha")?;
    check_candidates(&config.candidates, "divnas-noalpha")?;
    Ok(Box::new(NoAlpha { config }))
}

fn create_mi_ranked(config: &Value) -> anyhow::Result<Box<dyn Finalizer>> {
    Ok(Box::new(MiFinalizer {
        name: "mi-ranked",
        config: MiConfig::from_json(config, "mi-ranked")?,
        rank_by_alpha: true,
    }))
}

fn create_mi(config: &Value) -> anyhow::Result<Box<dyn Finalizer>> {
    Ok(Box::new(MiFinalizer { name: "mi", config: MiConfig::from_json(config, "mi")?, rank_by_alpha: false }))
}

register_finalizer!(
    "mi-ranked",
    "DivNAS: per node, the k candidate pairs of maximal Gaussian mutual information (RBF kernel of their activations) among the top half by alpha",
    create_mi_ranked
);
register_mixer!(
    "sum",
    "DivNAS no-alpha search: the plain sum of the edge's candidates (no architecture parameters)",
    create_sum
);
register_algorithm!(
    "divnas-noalpha",
    "DivNAS without alphas: DARTS cells whose edges sum their candidates, trained as one network; finalize with `mi`",
    create_noalpha
);
register_finalizer!(
    "mi",
    "DivNAS: per node, the k candidate pairs of maximal Gaussian mutual information (RBF kernel of their activations) among all pairs",
    create_mi
);

#[cfg(test)]
mod tests {
    use super::*;
    use archai_plugin_api::kit::seeded;

    #[test]
    fn the_kernel_of_identical_activations_is_all_ones() {
        let f = seeded::normal(&[1, 6, 50], 3);
        let same = Tensor::cat(&[&f, &f, &f], 0);
        let mut k = Kernel::default();
        k.add(&same, 168.0).unwrap();
        for row in k.matrix().unwrap() {
            for v in row {
                assert!((v - 1.0).abs() < 1e-12, "{v}");
            }
        }
    }

    /// The defect of Archai's version: its batch counter never moved, so the "mean" was the last
    /// batch's kernel. Here two batches average.
    #[test]
    fn the_kernel_is_a_running_mean_over_batches() {
        let (a, b) = (seeded::normal(&[3, 4, 20], 1), seeded::normal(&[3, 4, 20], 2).f_mul_scalar(3.0).unwrap());
        let one = |t: &Tensor| {
            let mut k = Kernel::default();
            k.add(t, 5.0).unwrap();
            k.matrix().unwrap()
        };
        let mut both = Kernel::default();
        both.add(&a, 5.0).unwrap();
        both.add(&b, 5.0).unwrap();
        let (ka, kb, kab) = (one(&a), one(&b), both.matrix().unwrap());
        for i in 0..3 {
            for j in 0..3 {
                assert!((kab[i][j] - (ka[i][j] + kb[i][j]) / 2.0).abs() < 1e-12);
            }
        }
        assert!(ka != kb);
    }

    /// Determinant by Gaussian elimination with partial pivoting: an independent reference.
    fn det(m: &[Vec<f64>]) -> f64 {
        let mut a = m.to_vec();
        let n = a.len();
        let mut d = 1.0;
        for c in 0..n {
            let p = (c..n).max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs())).unwrap();
            if a[p][c] == 0.0 {
                return 0.0;
            }
            if p != c {
                a.swap(p, c);
                d = -d;
            }
            d *= a[c][c];
            let pivot = a[c].clone();
            for row in a.iter_mut().skip(c + 1) {
                let f = row[c] / pivot[c];
                for (x, p) in row.iter_mut().zip(&pivot).skip(c) {
                    *x -= f * p;
                }
            }
        }
        d
    }

    fn sub(k: &[Vec<f64>], idx: &[usize]) -> Vec<Vec<f64>> {
        idx.iter().map(|&i| idx.iter().map(|&j| k[i][j] + if i == j { RIDGE } else { 0.0 }).collect()).collect()
    }

    #[test]
    fn the_selection_equals_brute_force_on_hand_made_kernels() {
        let kernels = [
            vec![
                vec![1.0, 0.9, 0.1, 0.2, 0.3],
                vec![0.9, 1.0, 0.2, 0.1, 0.3],
                vec![0.1, 0.2, 1.0, 0.8, 0.4],
                vec![0.2, 0.1, 0.8, 1.0, 0.5],
                vec![0.3, 0.3, 0.4, 0.5, 1.0],
            ],
            vec![
                vec![1.0, 0.5, 0.5, 0.5],
                vec![0.5, 1.0, 0.95, 0.5],
                vec![0.5, 0.95, 1.0, 0.5],
                vec![0.5, 0.5, 0.5, 1.0],
            ],
        ];
        for k in &kernels {
            let v: Vec<usize> = (0..k.len()).collect();
            for size in [1, 2] {
                let (chosen, mi) = best_subset(k, &v, size);
                // Reference: every subset, MI from determinants computed another way.
                let mut best = (Vec::new(), f64::NEG_INFINITY);
                for a in subsets(&v, size) {
                    let rest: Vec<usize> = v.iter().copied().filter(|i| !a.contains(i)).collect();
                    let m = 0.5 * (det(&sub(k, &a)).ln() + det(&sub(k, &rest)).ln() - det(&sub(k, &v)).ln());
                    if m > best.1 + 1e-12 {
                        best = (a, m);
                    }
                }
                assert_eq!(chosen, best.0, "size {size}");
                assert!((mi - best.1).abs() < 1e-9, "{mi} vs {}", best.1);
            }
        }
        assert_eq!(subsets(&[0, 1, 2, 3, 4], 2).len(), 10);
    }

    #[test]
    fn scopes_and_configs_are_read() {
        assert_eq!(parse_scope("cells.3.n4.e1.sep_conv_3x3", 3), Some((4, 1, "sep_conv_3x3".into())));
        assert_eq!(parse_scope("cells.3.n4.e1.sep_conv_3x3", 2), None);
        assert!(MiConfig::from_json(&json!({"k": 0}), "mi").is_err());
        assert!(MiConfig::from_json(&json!({"sigmaa": 1}), "mi").unwrap_err().to_string().contains("sigmaa"));
    }
}
