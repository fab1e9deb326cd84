//! Whether a differentiable search decided: entropy of the mixing weights against a uniform
//! choice, and the finalizer's choices whose margin the initial alpha noise alone could flip.
//! Finalizers of the DARTS family compute it after the top-k rule and hand it to the host with
//! [`crate::Model::report_decisiveness`].
use crate::kit::genotype::{best_non_none, edge_alpha, entropy, softmax};
use crate::model_desc::report::{Decisiveness, EdgeDecision};
use crate::model_desc::{CellDesc, EdgeDesc, ModelDesc, ParamInit};

/// Default entropy fraction at or above which a search counts as undecided. Measured on the
/// small-real DARTS search: at 95-96% of uniform two seeds kept none of the same 16 (edge, op)
/// pairs, so a search this close to uniform is not called decided.
pub const UNDECIDED_ENTROPY: f64 = 0.9;

fn fraction_of_uniform(p: &[f64]) -> f64 {
    if p.len() < 2 {
        0.0
    } else {
        // `+ 0.0` turns the -0.0 of a one-hot row into 0.0 (printed "-0%" otherwise).
        entropy(p) / (p.len() as f64).ln() + 0.0
    }
}

/// The report for a DARTS-macro search description and its trained architecture rows, for the
/// top-`k` rule with edge strengths from `edge_weights(node, edge_index, edge)` (the mixing
/// weights, or PC-DARTS' β-scaled ones). Op choices are compared in alpha, edge choices in log
/// strength; both are logit units, where the initial noise N(0, σ²) makes the difference of two
/// draws N(0, 2σ²), so a margin below 2·√2·σ is called fragile.
pub fn decisiveness(
    search: &ModelDesc,
    arch: &[(String, Vec<Vec<f64>>)],
    k: usize,
    entropy_threshold: f64,
    mut edge_weights: impl FnMut(&CellDesc, usize, usize, &EdgeDesc) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<Decisiveness> {
    let mut edges: Vec<EdgeDecision> = Vec::new();
    let (mut choices, mut fragile) = (0u64, 0u64);
    let mut noise_std: f64 = 0.0;
    let mut margins: Vec<f64> = Vec::new();
    for (kind, reduction) in [("normal", false), ("reduce", true)] {
        let Some(cell) = search.cells.iter().find(|c| c.reduction == reduction) else { continue };
        for (ni, node) in cell.nodes.iter().enumerate() {
            let mut ranked: Vec<(f64, usize)> = Vec::new();
            for (ei, e) in node.edges.iter().enumerate().filter(|(_, e)| e.is_mixed()) {
                let alpha = edge_alpha(arch, e)?;
                let name = e.alpha_row().map(|(n, _)| n).unwrap_or_default();
                if let Some(ParamInit::Normal { std, .. }) = search.arch_param(name).map(|p| p.init) {
                    noise_std = noise_std.max(std);
                }
                let p = softmax(alpha);
                let mut order: Vec<usize> = (0..p.len()).filter(|&i| e.candidates[i] != "none").collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
                let (chosen, runner_up) = (order.first().copied(), order.get(1).copied());
                let (weight_margin, alpha_margin) = match (chosen, runner_up) {
                    (Some(c), Some(r)) => (p[c] - p[r], alpha[c] - alpha[r]),
                    _ => (0.0, 0.0),
                };
                let w = edge_weights(cell, ni, ei, e)?;
                let (_, strength) = best_non_none(&w, &e.candidates)
                    .ok_or_else(|| anyhow::anyhow!("an edge into node {} has only `none`", ni + 2))?;
                ranked.push((strength, edges.len()));
                edges.push(EdgeDecision {
                    cell: kind.into(),
                    node: ni + 2,
                    input: e.input,
                    kept: false,
                    chosen: chosen.map(|c| e.candidates[c].clone()).unwrap_or_default(),
                    runner_up: runner_up.map(|r| e.candidates[r].clone()).unwrap_or_default(),
                    weight_margin,
                    alpha_margin,
                    entropy_fraction: fraction_of_uniform(&p),
                });
            }
            // The top-k rule: strongest first, the earlier edge on ties.
            ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (rank, &(_, idx)) in ranked.iter().enumerate() {
                if rank < k {
                    edges[idx].kept = true;
                    if !edges[idx].runner_up.is_empty() {
                        margins.push(edges[idx].alpha_margin);
                    }
                }
            }
            if ranked.len() > k && k > 0 {
                let (kept, dropped) = (ranked[k - 1].0, ranked[k].0);
                margins.push(if kept > 0.0 && dropped > 0.0 { kept.ln() - dropped.ln() } else { f64::MAX });
            }
        }
    }
    anyhow::ensure!(!edges.is_empty(), "the search description has no mixed edges to judge");
    let flip_margin = 2.0 * std::f64::consts::SQRT_2 * noise_std;
    for m in &margins {
        choices += 1;
        if *m < flip_margin {
            fragile += 1;
        }
    }
    let entropy_fraction = edges.iter().map(|e| e.entropy_fraction).sum::<f64>() / edges.len() as f64;
    let decided = entropy_fraction < entropy_threshold && 2 * fragile <= choices;
    // Truncated, not rounded: 99.99995% must not read as a clean 100%.
    let percent = (100.0 * entropy_fraction * 1e4).floor() / 1e4 + 0.0;
    let figures = format!(
        "entropy {percent}% of uniform, {fragile} of {choices} choices within the initial alpha noise (margin < {flip_margin:.2e})"
    );
    let verdict = if decided {
        format!("the search decided: {figures}")
    } else {
        format!("the architecture was chosen by noise: {figures}; raise the search steps or arch_lr")
    };
    Ok(Decisiveness {
        entropy_fraction,
        noise_std,
        flip_margin,
        choices,
        fragile,
        entropy_threshold,
        decided,
        verdict,
        edges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::genotype::edge_softmax;
    use crate::model_desc::{CellFill, DartsMacro, InputDesc, MixerDesc};

    fn search(nodes: usize) -> ModelDesc {
        let m = DartsMacro {
            layers: 3,
            nodes,
            channels: 4,
            stem_multiplier: 1,
            stem_stride: 1,
            auxiliary: false,
            reduction_cells: None,
        };
        let candidates: Vec<String> =
            ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"].map(String::from).to_vec();
        let mixer = MixerDesc { name: "softmax".into(), params: Default::default() };
        m.build(
            "s",
            InputDesc { channels: 1, size: 8 },
            2,
            &CellFill::Search { candidates: &candidates, mixer: &mixer },
        )
        .unwrap()
    }

    fn report(d: &ModelDesc, arch: &[(String, Vec<Vec<f64>>)]) -> Decisiveness {
        let rows = arch.to_vec();
        decisiveness(d, arch, 2, UNDECIDED_ENTROPY, |_, _, _, e| edge_softmax(&rows, e)).unwrap()
    }

    #[test]
    fn uniform_alphas_are_undecided_and_say_so() {
        let d = search(2);
        // 2 nodes: 2 + 3 = 5 edges per cell type, 4 candidates.
        let arch = vec![
            ("alphas.normal".to_string(), vec![vec![0.0; 4]; 5]),
            ("alphas.reduce".to_string(), vec![vec![0.0; 4]; 5]),
        ];
        let r = report(&d, &arch);
        assert!((r.entropy_fraction - 1.0).abs() < 1e-12);
        assert!(!r.decided);
        assert!(
            r.verdict.starts_with("the architecture was chosen by noise: entropy 100% of uniform"),
            "{}",
            r.verdict
        );
        assert!(r.verdict.contains("raise the search steps or arch_lr"));
        // σ = 1e-3 from the builder's N(0, 1e-3) init: every margin (0) is fragile.
        assert_eq!(r.noise_std, 1e-3);
        assert_eq!(r.choices, r.fragile);
        assert_eq!(r.edges.len(), 10);
    }

    #[test]
    fn one_hot_alphas_are_decided() {
        let d = search(2);
        let hot = |c: usize| {
            let mut r = vec![-20.0; 4];
            r[c] = 20.0;
            r
        };
        let rows = vec![hot(3), hot(2), hot(3), hot(1), hot(3)];
        let arch = vec![("alphas.normal".to_string(), rows.clone()), ("alphas.reduce".to_string(), rows)];
        let r = report(&d, &arch);
        assert!(r.entropy_fraction < 1e-10, "{}", r.entropy_fraction);
        assert!(r.decided, "{}", r.verdict);
        assert!(r.verdict.starts_with("the search decided: entropy 0% of uniform"), "{}", r.verdict);
        assert_eq!(r.edges[0].chosen, "sep_conv_3x3");
    }

    /// One node, two input edges, k = 1, σ = 1e-3 (flip margin 2·√2·1e-3 = 0.002828...):
    /// edge 0: α = [5, 0.0, 0.001, 0.01] -> chosen sep_conv_3x3 (0.01) over skip (0.001): margin
    ///   0.009 in alpha, not fragile;
    /// edge 1: α = [0, 0.0, 0.002, 0.0] -> chosen skip_connect over max_pool: margin 0.002,
    ///   fragile, but it is not kept;
    /// edge choice: strengths softmax(row)[chosen]: e0 e^0.01/(e^5+e^0+e^0.001+e^0.01),
    ///   e1 e^0.002/(1+1+e^0.002+1); log e0 - log e1 = 0.01 - 0.002 - ln(e^5+...)+ln(3+e^0.002)
    ///   < 0: e1 is kept (the stronger), e0 dropped; so the kept op choice is e1's (fragile) and
    ///   the edge choice margin is 4.0+ (not fragile): 2 choices, 1 fragile.
    #[test]
    fn flips_are_counted_against_the_initial_noise() {
        let m = DartsMacro {
            layers: 3,
            nodes: 1,
            channels: 4,
            stem_multiplier: 1,
            stem_stride: 1,
            auxiliary: false,
            reduction_cells: None,
        };
        let candidates: Vec<String> =
            ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"].map(String::from).to_vec();
        let mixer = MixerDesc { name: "softmax".into(), params: Default::default() };
        let d = m
            .build(
                "s",
                InputDesc { channels: 1, size: 8 },
                2,
                &CellFill::Search { candidates: &candidates, mixer: &mixer },
            )
            .unwrap();
        let rows = vec![vec![5.0, 0.0, 0.001, 0.01], vec![0.0, 0.0, 0.002, 0.0]];
        let arch = vec![("alphas.normal".to_string(), rows.clone()), ("alphas.reduce".to_string(), rows)];
        let r = {
            let a = arch.clone();
            decisiveness(&d, &arch, 1, UNDECIDED_ENTROPY, |_, _, _, e| edge_softmax(&a, e)).unwrap()
        };
        assert!((r.flip_margin - 2.0 * 2f64.sqrt() * 1e-3).abs() < 1e-15);
        let normal: Vec<&EdgeDecision> = r.edges.iter().filter(|e| e.cell == "normal").collect();
        assert_eq!((normal[0].chosen.as_str(), normal[0].runner_up.as_str()), ("sep_conv_3x3", "skip_connect"));
        assert!((normal[0].alpha_margin - 0.009).abs() < 1e-12);
        assert!(!normal[0].kept && normal[1].kept);
        assert_eq!((normal[1].chosen.as_str(), normal[1].runner_up.as_str()), ("skip_connect", "max_pool_3x3"));
        // Per cell type 2 choices, 1 fragile; two cell types.
        assert_eq!((r.choices, r.fragile), (4, 2));
        assert!(r.decided == (r.entropy_fraction < UNDECIDED_ENTROPY));
    }
}
