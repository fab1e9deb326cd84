//! The `darts-topk` finalizer: from the searched supernet and its alphas to a discrete network.
use crate::config::TopkConfig;
use archai_plugin_api::kit::decisive::decisiveness;
use archai_plugin_api::kit::genotype::{cell_genotype, cell_types, edge_softmax, named_rows, rebuild};
use archai_plugin_api::model_desc::ModelDesc;
use archai_plugin_api::{Finalizer, Model};

pub use archai_plugin_api::kit::genotype::{softmax, Genotype};

/// Applies the DARTS rule to a search description: per cell type, each node keeps the `k` edges
/// whose best non-`none` candidate has the largest softmax weight (the edge's `alpha` row, named
/// by its mixer params), then rebuilds the network with `config`'s size overrides.
pub fn finalize(
    config: &TopkConfig,
    search: &ModelDesc,
    arch: &[(String, Vec<Vec<f64>>)],
) -> anyhow::Result<ModelDesc> {
    let (normal, reduce) = cell_types(search)?;
    let pick = |cell| cell_genotype(cell, config.k, |_, _, e| edge_softmax(arch, e));
    let (normal, reduce) = (pick(normal)?, pick(reduce)?);
    rebuild(search, &normal, &reduce, &config.size())
}

/// The `darts-topk` finalizer component.
pub struct TopkFinalizer {
    pub config: TopkConfig,
}

impl Finalizer for TopkFinalizer {
    fn finalize(&mut self, search: &ModelDesc, model: &mut Model<'_, '_>) -> anyhow::Result<ModelDesc> {
        let arch = named_rows(&model.arch_params());
        let k = self.config.k;
        let report =
            decisiveness(search, &arch, k, self.config.undecided_entropy, |_, _, _, e| edge_softmax(&arch, e))?;
        model.report_decisiveness(&report)?;
        finalize(&self.config, search, &arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::darts_primitives;
    use archai_plugin_api::model_desc::{CellDesc, CellFill, DartsMacro, InputDesc, MixerDesc, MIXED};
    use archai_plugin_api::tch::Tensor;

    fn search_desc(layers: usize, nodes: usize) -> ModelDesc {
        let m = DartsMacro {
            layers,
            nodes,
            channels: 8,
            stem_multiplier: 3,
            stem_stride: 1,
            auxiliary: false,
            reduction_cells: None,
        };
        let mixer = MixerDesc { name: "softmax".into(), params: Default::default() };
        m.build(
            "darts_search",
            InputDesc { channels: 1, size: 28 },
            10,
            &CellFill::Search { candidates: &darts_primitives(), mixer: &mixer },
        )
        .unwrap()
    }

    /// The DARTS rule on one cell with probability rows indexed by the edges' alpha rows.
    fn genotype(cell: &CellDesc, probs: &[Vec<f64>], k: usize) -> Genotype {
        cell_genotype(cell, k, |_, _, e| Ok(probs[e.alpha_row().unwrap().1].clone())).unwrap()
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
        let geno = genotype(&d.cells[0], &probs, 2);
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
        let geno3 = genotype(&d.cells[0], &probs, 3);
        assert_eq!(geno3[3], g(&[("skip_connect", 4), ("sep_conv_5x5", 2), ("max_pool_3x3", 0)]));
        // k larger than a node's fan-in keeps all its edges.
        assert_eq!(geno3[0].len(), 2);
        // Ranking uses the softmax weight, not the raw alpha: a row whose best op has a lower raw
        // alpha but a larger share of the row wins.
        let mut probs = probs;
        probs[0] = softmax(&[-10.0, -10.0, -10.0, -10.0, 0.0, -10.0, -10.0, -10.0]); // ~1.0 on sep_conv_3x3
        probs[1] = softmax(&[3.0, 3.0, 3.0, 3.0, 3.1, 3.0, 3.0, 3.0]); // ~0.13 on sep_conv_3x3
        let geno1 = genotype(&d.cells[0], &probs, 1);
        assert_eq!(geno1[0], g(&[("sep_conv_3x3", 0)]));
    }

    #[test]
    fn finalize_builds_a_plain_eval_network() {
        let search = search_desc(5, 4);
        let normal = hand_alphas();
        let reduce: Vec<Vec<f64>> = (0..14).map(|e| row(1 + e % 7, 1.0 + e as f64)).collect();
        let arch = vec![("alphas.normal".to_string(), normal), ("alphas.reduce".to_string(), reduce)];
        let cfg = TopkConfig::default();
        let d = finalize(&cfg, &search, &arch).unwrap();
        assert_eq!(d.name, "darts_final");
        assert_eq!(d.cells.len(), 5);
        assert_eq!(d.stem, search.stem);
        assert_eq!(d.head, search.head);
        for cell in &d.cells {
            assert!(cell.affine);
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
        assert!(!yaml.contains("mixed") && !yaml.contains("arch_params") && !yaml.contains("affine"));
        assert!(d.arch_params.is_empty());
        assert_eq!(ModelDesc::from_yaml(&yaml, "t").unwrap(), d);

        // Eval macro overrides.
        let cfg =
            TopkConfig { k: 2, layers: Some(8), channels: Some(12), auxiliary: Some(true), ..TopkConfig::default() };
        let big = finalize(&cfg, &search, &arch).unwrap();
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

        // The stem stride: inherited from the search network unless the finalizer sets it.
        let mut strided_search = search_desc(5, 4);
        strided_search.stem[0].params.insert("stride".into(), 2.into());
        let inherited = finalize(&TopkConfig::default(), &strided_search, &arch).unwrap();
        assert_eq!(inherited.stem, strided_search.stem);
        let cfg = TopkConfig { stem_stride: Some(1), ..TopkConfig::default() };
        assert_eq!(finalize(&cfg, &strided_search, &arch).unwrap().stem, d.stem);
        let cfg = TopkConfig { stem_stride: Some(2), ..TopkConfig::default() };
        assert_eq!(finalize(&cfg, &search, &arch).unwrap().stem, strided_search.stem);
    }

    #[test]
    fn finalize_names_what_is_wrong() {
        let search = search_desc(3, 2);
        let ok = vec![vec![0.0; 8]; 5];
        let e =
            finalize(&TopkConfig::default(), &search, &[("alphas.normal".into(), ok.clone())]).unwrap_err().to_string();
        assert!(e.contains("alphas.reduce") && e.contains("missing"), "{e}");
        let bad = vec![vec![0.0; 8]; 4];
        let e = finalize(
            &TopkConfig::default(),
            &search,
            &[("alphas.normal".into(), bad), ("alphas.reduce".into(), ok.clone())],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("alphas.normal") && e.contains("4 rows"), "{e}");
        let nan = vec![vec![f64::NAN; 8]; 5];
        let e =
            finalize(&TopkConfig::default(), &search, &[("alphas.normal".into(), nan), ("alphas.reduce".into(), ok)])
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
        let rows = archai_plugin_api::kit::genotype::named_rows(&[
            ("alphas.normal".into(), normal),
            ("alphas.reduce".into(), reduce),
        ]);
        let d = finalize(&TopkConfig::default(), &search, &rows).unwrap();
        // All-equal normal alphas: first non-none candidate, lowest inputs.
        assert_eq!(
            d.cells[0].nodes[1].edges.iter().map(|e| (e.op.as_str(), e.input)).collect::<Vec<_>>(),
            vec![("max_pool_3x3", 0), ("max_pool_3x3", 1)]
        );
        assert!(d.cells[1].nodes.iter().flat_map(|n| &n.edges).all(|e| e.op == "dil_conv_5x5"));
    }
}
