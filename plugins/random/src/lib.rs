//! Random search as an archai plugin: the algorithm `random`.
//!
//! `random` samples one architecture uniformly from the DARTS cell space and hands it to the host
//! as a plain (non-mixed) model description; there is no supernet and no per-step work, so the
//! run goes straight to evaluating the sample. It is the baseline every NAS method should beat
//! (Li and Talwalkar, "Random Search and Reproducibility for Neural Architecture Search", 2019).
//!
//! The sample, for the normal cell and then for the reduction cell: every intermediate node
//! picks two distinct inputs among the cell's two inputs and the earlier nodes, each through an
//! op drawn uniformly from the candidates other than `none`. The draw is deterministic: a
//! SplitMix64 generator seeded with `seed` + the run's seed (from the host's context), so the
//! same config and run seed always give the same architecture, on every platform.
//!
//! Configuration (every key optional; unknown keys are errors):
//!
//! ```yaml
//! macro:                 # the network's macro-architecture (as for `darts`)
//!   layers: 8            # cells; reduction cells at 1/3 and 2/3 of the depth
//!   nodes: 4             # intermediate nodes per cell
//!   channels: 16         # channels of the first cells (doubled at each reduction)
//!   stem_multiplier: 3   # the stem outputs stem_multiplier * channels channels
//!   stem_stride: 1       # 2: the stem halves the resolution, every cell costs about a quarter
//! candidates: [none, max_pool_3x3, avg_pool_3x3, skip_connect,
//!              sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5]   # `none` is never drawn
//! seed: 0                # added to the run seed; change it to draw another architecture
//! ```
#![allow(non_local_definitions)]

use archai_plugin_api::model_desc::{CellFill, DartsMacro, InputDesc, ModelDesc, DARTS_PRIMITIVES};
use archai_plugin_api::{export_plugin, register_algorithm, Algorithm, ArchTraining, SearchContext, SearchPlan};
use serde::{Deserialize, Serialize};

export_plugin!();

/// Configuration of the `random` algorithm.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RandomConfig {
    #[serde(rename = "macro")]
    pub macro_: DartsMacro,
    pub candidates: Vec<String>,
    pub seed: u64,
}

impl Default for RandomConfig {
    fn default() -> Self {
        Self {
            macro_: DartsMacro::default(),
            candidates: DARTS_PRIMITIVES.iter().map(|s| s.to_string()).collect(),
            seed: 0,
        }
    }
}

impl RandomConfig {
    /// Parses (`null` = all defaults) and validates.
    pub fn from_json(value: &serde_json::Value) -> anyhow::Result<Self> {
        let c: Self = if value.is_null() {
            Self::default()
        } else {
            serde_json::from_value(value.clone()).map_err(|e| anyhow::anyhow!("random config: {e}"))?
        };
        for (i, op) in c.candidates.iter().enumerate() {
            anyhow::ensure!(!c.candidates[..i].contains(op), "random config: candidate `{op}` is listed twice");
        }
        anyhow::ensure!(
            c.candidates.iter().any(|o| o != "none"),
            "random config: `candidates` must contain an op other than `none`"
        );
        // Building once checks the macro values when the algorithm is created.
        c.build(InputDesc { channels: 3, size: 32 }, 10, 0)?;
        Ok(c)
    }

    /// The sampled architecture for a run seed.
    pub fn build(&self, input: InputDesc, num_classes: i64, run_seed: u64) -> anyhow::Result<ModelDesc> {
        let mut rng = SplitMix64::new(self.seed.wrapping_add(run_seed));
        let ops: Vec<&str> = self.candidates.iter().map(String::as_str).filter(|o| *o != "none").collect();
        let normal = sample_cell(&mut rng, self.macro_.nodes, &ops);
        let reduce = sample_cell(&mut rng, self.macro_.nodes, &ops);
        self.macro_
            .build("random_sample", input, num_classes, &CellFill::Genotype { normal: &normal, reduce: &reduce })
            .map_err(|e| anyhow::anyhow!("random config `macro`: {e}"))
    }
}

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny, fast, well-mixed 64-bit generator whose
/// output depends on nothing but the seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below n / 2^64). `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// One cell: per node two distinct inputs (ascending) among the `node + 2` earlier states, each
/// with a uniformly drawn op.
pub fn sample_cell(rng: &mut SplitMix64, nodes: usize, ops: &[&str]) -> Vec<Vec<(String, usize)>> {
    (0..nodes)
        .map(|n| {
            let fan_in = n + 2;
            let a = rng.below(fan_in);
            let mut b = rng.below(fan_in - 1);
            if b >= a {
                b += 1;
            }
            let (lo, hi) = (a.min(b), a.max(b));
            [lo, hi].iter().map(|&input| (ops[rng.below(ops.len())].to_string(), input)).collect()
        })
        .collect()
}

/// The `random` algorithm component.
pub struct RandomSearch {
    pub config: RandomConfig,
}

impl Algorithm for RandomSearch {
    fn search_space(&mut self, ctx: &SearchContext) -> anyhow::Result<SearchPlan> {
        // A sampled architecture: nothing to train but its weights.
        let desc = self.config.build(ctx.input(), ctx.num_classes, ctx.seed)?;
        Ok(SearchPlan { desc, arch_training: ArchTraining::Manual })
    }
}

fn create_random(config: &serde_json::Value) -> anyhow::Result<Box<dyn Algorithm>> {
    Ok(Box::new(RandomSearch { config: RandomConfig::from_json(config)? }))
}

register_algorithm!(
    "random",
    "Random search: one seeded uniform sample from the DARTS cell space (two inputs per node, no `none`)",
    create_random
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(seed: u64) -> SearchContext {
        SearchContext {
            channels: 1,
            image_size: 28,
            num_classes: 10,
            seed,
            epochs: 1,
            steps_per_epoch: 1,
            val_batch_size: 0,
        }
    }

    fn sample(a: &mut RandomSearch, seed: u64) -> String {
        a.search_space(&ctx(seed)).unwrap().desc.to_yaml()
    }

    #[test]
    fn splitmix64_reference_values() {
        // First outputs for seed 0 of the reference implementation (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut r = SplitMix64::new(7);
        let counts = (0..7000).fold([0usize; 7], |mut c, _| {
            c[r.below(7)] += 1;
            c
        });
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn samples_are_valid_and_deterministic() {
        let mut a = RandomSearch { config: RandomConfig::from_json(&json!({})).unwrap() };
        let y1 = sample(&mut a, 1);
        assert_eq!(y1, sample(&mut a, 1));
        let mut b = RandomSearch { config: RandomConfig::from_json(&json!({"seed": 0})).unwrap() };
        assert_eq!(y1, sample(&mut b, 1));
        let d = ModelDesc::from_yaml(&y1, "t").unwrap();
        assert_eq!(d.name, "random_sample");
        assert_eq!(d.cells.len(), 8);
        for cell in &d.cells {
            assert!(cell.affine && cell.mixed_edges() == 0);
            for (ni, node) in cell.nodes.iter().enumerate() {
                assert_eq!(node.edges.len(), 2);
                assert!(node.edges[0].input < node.edges[1].input && node.edges[1].input < ni + 2);
                for e in &node.edges {
                    assert!(DARTS_PRIMITIVES.contains(&e.op.as_str()) && e.op != "none", "{}", e.op);
                    assert!(!e.params.contains_key("affine"));
                }
            }
        }
        // All normal cells share one genotype, all reduction cells another.
        let normal: Vec<_> = d.cells.iter().filter(|c| !c.reduction).map(genotype).collect();
        assert!(normal.windows(2).all(|w| w[0] == w[1]));
        // Other seeds give other architectures (config seed and run seed both count).
        let y2 = sample(&mut a, 2);
        assert_ne!(y1, y2);
        let mut c = RandomSearch { config: RandomConfig::from_json(&json!({"seed": 5})).unwrap() };
        assert_ne!(y1, sample(&mut c, 1));
        assert_eq!(sample(&mut c, 0), sample(&mut a, 5));
    }

    fn genotype(c: &archai_plugin_api::model_desc::CellDesc) -> Vec<(String, usize)> {
        c.nodes.iter().flat_map(|n| n.edges.iter().map(|e| (e.op.clone(), e.input))).collect()
    }

    #[test]
    fn sampling_covers_the_space() {
        let ops = ["max_pool_3x3", "skip_connect", "sep_conv_3x3"];
        let mut rng = SplitMix64::new(11);
        let mut seen_ops = std::collections::BTreeSet::new();
        let mut seen_pairs = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let cell = sample_cell(&mut rng, 4, &ops);
            let last = &cell[3];
            seen_pairs.insert((last[0].1, last[1].1));
            seen_ops.extend(cell.iter().flatten().map(|(o, _)| o.clone()));
        }
        assert_eq!(seen_ops.len(), 3);
        assert_eq!(seen_pairs.len(), 10, "node 5 has C(5,2) = 10 input pairs: {seen_pairs:?}");
    }

    #[test]
    fn config_errors_are_named() {
        let e = RandomConfig::from_json(&json!({"sed": 1})).unwrap_err().to_string();
        assert!(e.contains("sed") && e.contains("seed"), "{e}");
        let e = RandomConfig::from_json(&json!({"candidates": ["none"]})).unwrap_err().to_string();
        assert!(e.contains("other than `none`"), "{e}");
        let e = RandomConfig::from_json(&json!({"macro": {"layers": 1}})).unwrap_err().to_string();
        assert!(e.contains("macro") && e.contains("3 layers"), "{e}");
        assert_eq!(RandomConfig::from_json(&serde_json::Value::Null).unwrap(), RandomConfig::default());
    }
}
