//! The `darts-topk` finalizer: from the searched supernet and its alphas to a discrete network.
use crate::config::TopkConfig;
use archai_plugin_api::model_desc::{CellDesc, CellFill, DartsMacro, ModelDesc};
use archai_plugin_api::tch::{Device, Kind, Tensor};
use archai_plugin_api::Finalizer;

/// A cell's choice: per intermediate node, the `(op, input)` pairs it keeps.
pub type Genotype = Vec<Vec<(String, usize)>>;

/// Softmax of one row of alphas, in f64.
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
        let better = match best {
            None => true,
            Some((_, b)) => *w > b,
        };
        if better {
            best = Some((i, *w));
        }
    }
    best
}

/// The DARTS rule for one cell: per node, rank the incoming edges by the softmax weight of their
/// best non-`none` candidate and keep the top `k`, each becoming that candidate (ties keep the
/// lower input first, as Python's stable sort does). `probs` holds the softmax rows of the cell's
/// alpha group, row `r` = the cell's `r`-th mixed edge in node order. Fixed (non-mixed) edges are
/// always kept first.
pub fn cell_genotype(cell: &CellDesc, probs: &[Vec<f64>], k: usize) -> anyhow::Result<Genotype> {
    let mixed = cell.mixed_edges();
    anyhow::ensure!(probs.len() == mixed, "the alphas have {} rows but the cell has {mixed} mixed edges", probs.len());
    let mut row = 0;
    let mut genotype = Vec::new();
    for (ni, node) in cell.nodes.iter().enumerate() {
        let mut ranked: Vec<(f64, String, usize)> = Vec::new();
        for e in &node.edges {
            if e.is_mixed() {
                let p = &probs[row];
                anyhow::ensure!(
                    p.len() == e.candidates.len(),
                    "alpha row {row} has {} columns but edge {} -> node {} has {} candidates",
                    p.len(),
                    e.input,
                    ni + 2,
                    e.candidates.len()
                );
                anyhow::ensure!(p.iter().all(|x| x.is_finite()), "alpha row {row} is not finite: {p:?}");
                let (best, w) = best_non_none(p, &e.candidates).ok_or_else(|| {
                    anyhow::anyhow!("edge {} -> node {} has no candidate other than `none`", e.input, ni + 2)
                })?;
                ranked.push((w, e.candidates[best].clone(), e.input));
                row += 1;
            } else {
                ranked.push((f64::INFINITY, e.op.clone(), e.input));
            }
        }
        // Stable: equal weights keep the edges' order.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        genotype.push(ranked.into_iter().take(k).map(|(_, op, input)| (op, input)).collect());
    }
    Ok(genotype)
}

/// A 2-D architecture tensor as rows of f64.
pub fn tensor_rows(t: &Tensor) -> anyhow::Result<Vec<Vec<f64>>> {
    anyhow::ensure!(t.dim() == 2, "expected a 2-D alpha tensor, got shape {:?}", t.size());
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
    Ok(Vec::<Vec<f64>>::try_from(&t)?)
}

/// The genotype of one alpha group (taken from the first cell of that group).
pub fn group_genotype(desc: &ModelDesc, group: &str, alphas: &[Vec<f64>], k: usize) -> anyhow::Result<Genotype> {
    let cell = desc
        .cells
        .iter()
        .find(|c| c.alpha_group.as_deref() == Some(group))
        .ok_or_else(|| anyhow::anyhow!("the search description has no cell with alpha_group `{group}`"))?;
    let probs: Vec<Vec<f64>> = alphas.iter().map(|r| softmax(r)).collect();
    cell_genotype(cell, &probs, k).map_err(|e| anyhow::anyhow!("alphas.{group}: {e}"))
}

/// The macro values a DARTS search description was built with.
pub fn macro_of(desc: &ModelDesc) -> anyhow::Result<DartsMacro> {
    let first = desc.cells.first().ok_or_else(|| anyhow::anyhow!("the search description has no cells"))?;
    let nodes = first.nodes.len();
    anyhow::ensure!(
        desc.cells.iter().all(|c| c.nodes.len() == nodes),
        "the search description's cells have different node counts; darts-topk needs a DARTS macro-architecture"
    );
    let channels = if first.reduction { first.c / 2 } else { first.c };
    anyhow::ensure!(
        channels > 0 && first.c_prev_prev % channels == 0,
        "cannot infer the stem multiplier: stem outputs {} channels, the first cell has {channels}",
        first.c_prev_prev
    );
    Ok(DartsMacro {
        layers: desc.cells.len(),
        nodes,
        channels,
        stem_multiplier: first.c_prev_prev / channels,
        auxiliary: desc.aux.is_some(),
    })
}

/// The final name: `darts_search` -> `darts_final`.
fn final_name(search: &str) -> String {
    format!("{}_final", search.strip_suffix("_search").unwrap_or(search))
}

/// Applies the top-k rule to a search description and its alphas (`alphas.normal`,
/// `alphas.reduce`) and rebuilds the network with `config`'s macro overrides.
pub fn finalize(
    config: &TopkConfig,
    search_desc_yaml: &str,
    arch: &[(String, Vec<Vec<f64>>)],
) -> anyhow::Result<ModelDesc> {
    let search = ModelDesc::from_yaml(search_desc_yaml, "(search description given to darts-topk)")?;
    let alphas = |group: &str| -> anyhow::Result<&Vec<Vec<f64>>> {
        let name = format!("alphas.{group}");
        arch.iter().find(|(n, _)| *n == name).map(|(_, a)| a).ok_or_else(|| {
            let have: Vec<&str> = arch.iter().map(|(n, _)| n.as_str()).collect();
            anyhow::anyhow!("architecture parameter `{name}` is missing (got {have:?})")
        })
    };
    for cell in &search.cells {
        if let Some(g) = &cell.alpha_group {
            anyhow::ensure!(
                g == "normal" || g == "reduce",
                "darts-topk knows alpha groups `normal` and `reduce`, found `{g}`"
            );
        }
    }
    let normal = group_genotype(&search, "normal", alphas("normal")?, config.k)?;
    let reduce = group_genotype(&search, "reduce", alphas("reduce")?, config.k)?;
    let mut m = macro_of(&search)?;
    if let Some(l) = config.layers {
        m.layers = l;
    }
    if let Some(c) = config.channels {
        m.channels = c;
    }
    if let Some(a) = config.auxiliary {
        m.auxiliary = a;
    }
    let desc = m.build(
        &final_name(&search.name),
        search.input.clone(),
        search.num_classes,
        &CellFill::Genotype { normal: &normal, reduce: &reduce },
    )?;
    Ok(desc)
}

/// The `darts-topk` finalizer component.
pub struct TopkFinalizer {
    pub config: TopkConfig,
}

impl Finalizer for TopkFinalizer {
    fn finalize(&mut self, search_desc_yaml: &str, arch: Vec<(String, Tensor)>) -> anyhow::Result<String> {
        let rows = arch
            .iter()
            .map(|(n, t)| Ok((n.clone(), tensor_rows(t).map_err(|e| anyhow::anyhow!("`{n}`: {e}"))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(finalize(&self.config, search_desc_yaml, &rows)?.to_yaml())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::darts_primitives;
    use archai_plugin_api::model_desc::{InputDesc, MIXED};

    fn search_desc(layers: usize, nodes: usize) -> ModelDesc {
        let m = DartsMacro { layers, nodes, channels: 8, stem_multiplier: 3, auxiliary: false };
        m.build(
            "darts_search",
            InputDesc { channels: 1, size: 28 },
            10,
            &CellFill::Search { candidates: &darts_primitives() },
        )
        .unwrap()
    }

    fn row(best: usize, w: f64) -> Vec<f64> {
        // `none` (column 0) always strongest, so it must be ignored.
        let mut r = vec![0.0; 8];
        r[0] = 5.0;
        r[best] = w;
        r
    }

    /// Normal cell alphas for 4 nodes (14 edges), chosen by hand:
    /// node 2 (edges 0,1): both kept; node 3 (edges 2,3,4): inputs 2 and 0; node 4 (5..8):
    /// inputs 3 and 1; node 5 (9..13): inputs 4 and 2, with a tie at input 0/1 below them.
    fn hand_alphas() -> Vec<Vec<f64>> {
        vec![
            row(4, 1.0), // node2 <- 0 sep_conv_3x3
            row(3, 2.0), // node2 <- 1 skip_connect
            row(5, 3.0), // node3 <- 0 sep_conv_5x5
            row(1, 0.5), // node3 <- 1
            row(6, 4.0), // node3 <- 2 dil_conv_3x3
            row(2, 0.1), // node4 <- 0
            row(7, 2.5), // node4 <- 1 dil_conv_5x5
            row(4, 0.2), // node4 <- 2
            row(4, 3.5), // node4 <- 3 sep_conv_3x3
            row(1, 1.0), // node5 <- 0 (tie with input 1)
            row(2, 1.0), // node5 <- 1
            row(5, 1.5), // node5 <- 2 sep_conv_5x5
            row(1, 0.0), // node5 <- 3
            row(3, 2.0), // node5 <- 4 skip_connect
        ]
    }

    fn g(pairs: &[(&str, usize)]) -> Vec<(String, usize)> {
        pairs.iter().map(|(o, i)| (o.to_string(), *i)).collect()
    }

    #[test]
    fn topk_follows_the_darts_rule() {
        let d = search_desc(3, 4);
        let probs: Vec<Vec<f64>> = hand_alphas().iter().map(|r| softmax(r)).collect();
        let geno = cell_genotype(&d.cells[0], &probs, 2).unwrap();
        assert_eq!(
            geno,
            vec![
                g(&[("skip_connect", 1), ("sep_conv_3x3", 0)]),
                g(&[("dil_conv_3x3", 2), ("sep_conv_5x5", 0)]),
                g(&[("sep_conv_3x3", 3), ("dil_conv_5x5", 1)]),
                g(&[("skip_connect", 4), ("sep_conv_5x5", 2)]),
            ]
        );
        // k = 3: the tie at node 5 goes to the lower input.
        let geno3 = cell_genotype(&d.cells[0], &probs, 3).unwrap();
        assert_eq!(geno3[3], g(&[("skip_connect", 4), ("sep_conv_5x5", 2), ("max_pool_3x3", 0)]));
        // k larger than a node's fan-in keeps all its edges.
        assert_eq!(geno3[0].len(), 2);
        // Ranking uses the softmax weight, not the raw alpha: a row whose best op has a lower raw
        // alpha but a larger share of the row wins.
        let mut probs = probs;
        probs[0] = softmax(&[-10.0, -10.0, -10.0, -10.0, 0.0, -10.0, -10.0, -10.0]); // ~1.0 on sep_conv_3x3
        probs[1] = softmax(&[3.0, 3.0, 3.0, 3.0, 3.1, 3.0, 3.0, 3.0]); // ~0.13 on sep_conv_3x3
        let geno1 = cell_genotype(&d.cells[0], &probs, 1).unwrap();
        assert_eq!(geno1[0], g(&[("sep_conv_3x3", 0)]));
    }

    #[test]
    fn finalize_builds_a_plain_eval_network() {
        let search = search_desc(5, 4);
        let normal = hand_alphas();
        let reduce: Vec<Vec<f64>> = (0..14).map(|e| row(1 + e % 7, 1.0 + e as f64)).collect();
        let arch = vec![("alphas.normal".to_string(), normal), ("alphas.reduce".to_string(), reduce)];
        let cfg = TopkConfig::default();
        let d = finalize(&cfg, &search.to_yaml(), &arch).unwrap();
        assert_eq!(d.name, "darts_final");
        assert_eq!(d.cells.len(), 5);
        assert_eq!(d.stem, search.stem);
        assert_eq!(d.head, search.head);
        for cell in &d.cells {
            assert!(cell.alpha_group.is_none());
            assert_eq!(cell.mixed_edges(), 0);
            for e in cell.nodes.iter().flat_map(|n| &n.edges) {
                assert_ne!(e.op, MIXED);
                assert_ne!(e.op, "none");
                assert!(e.candidates.is_empty());
                assert!(!e.params.contains_key("affine") && !e.params.contains_key("pool_bn"), "{:?}", e.params);
            }
            assert!(cell.nodes.iter().all(|n| n.edges.len() == 2));
        }
        assert_eq!(d.cells[0].nodes[1].edges[0].op, "dil_conv_3x3");
        assert_eq!(d.cells[0].nodes[1].edges[0].input, 2);
        // Reduction cell: edges from 0 and 1 have stride 2, from intermediate nodes stride 1.
        let red = &d.cells[1];
        assert!(red.reduction);
        for e in red.nodes.iter().flat_map(|n| &n.edges) {
            assert_eq!(e.params["stride"], if e.input < 2 { 2 } else { 1 });
        }
        // Plain YAML that round-trips.
        let yaml = d.to_yaml();
        assert!(!yaml.contains("mixed") && !yaml.contains("alpha_group") && !yaml.contains("affine"));
        assert_eq!(ModelDesc::from_yaml(&yaml, "t").unwrap(), d);

        // Eval macro overrides.
        let cfg = TopkConfig { k: 2, layers: Some(8), channels: Some(12), auxiliary: Some(true) };
        let big = finalize(&cfg, &search.to_yaml(), &arch).unwrap();
        assert_eq!(big.cells.len(), 8);
        assert_eq!(big.cells[0].c, 12);
        assert_eq!(big.stem[0].params["c_out"], 36);
        assert_eq!(
            big.cells[0].nodes,
            d.cells[0]
                .nodes
                .iter()
                .map(|n| {
                    let mut n = n.clone();
                    for e in &mut n.edges {
                        e.params["c_in"] = 12.into();
                    }
                    n
                })
                .collect::<Vec<_>>()
        );
        // The auxiliary head sits after the second reduction cell (5 of 8) and reads its output.
        let aux = big.aux.as_ref().expect("auxiliary: true adds the head");
        assert_eq!((aux.after_cell, aux.c_in, aux.op.as_str()), (5, big.cells[5].c_out(), "aux_head"));
        assert!(d.aux.is_none());
    }

    #[test]
    fn finalize_names_what_is_wrong() {
        let search = search_desc(3, 2);
        let ok = vec![vec![0.0; 8]; 5];
        let e = finalize(&TopkConfig::default(), &search.to_yaml(), &[("alphas.normal".into(), ok.clone())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("alphas.reduce") && e.contains("missing"), "{e}");
        let bad = vec![vec![0.0; 8]; 4];
        let e = finalize(
            &TopkConfig::default(),
            &search.to_yaml(),
            &[("alphas.normal".into(), bad), ("alphas.reduce".into(), ok.clone())],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("alphas.normal") && e.contains("4 rows"), "{e}");
        let nan = vec![vec![f64::NAN; 8]; 5];
        let e = finalize(
            &TopkConfig::default(),
            &search.to_yaml(),
            &[("alphas.normal".into(), nan), ("alphas.reduce".into(), ok)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not finite"), "{e}");
    }

    #[test]
    fn finalizer_reads_tensors() {
        let search = search_desc(3, 2);
        let normal = Tensor::from_slice(&[0.0f32; 40]).reshape([5, 8]);
        let reduce = normal.copy();
        let _ = reduce.narrow(1, 7, 1).fill_(1.0); // dil_conv_5x5 everywhere in reduction cells
        let mut f = TopkFinalizer { config: TopkConfig::default() };
        let yaml = f
            .finalize(&search.to_yaml(), vec![("alphas.normal".into(), normal), ("alphas.reduce".into(), reduce)])
            .unwrap();
        let d = ModelDesc::from_yaml(&yaml, "t").unwrap();
        // All-equal normal alphas: first non-none candidate, lowest inputs.
        assert_eq!(
            d.cells[0].nodes[1].edges.iter().map(|e| (e.op.as_str(), e.input)).collect::<Vec<_>>(),
            vec![("max_pool_3x3", 0), ("max_pool_3x3", 1)]
        );
        assert!(d.cells[1].nodes.iter().flat_map(|n| &n.edges).all(|e| e.op == "dil_conv_5x5"));
    }
}
