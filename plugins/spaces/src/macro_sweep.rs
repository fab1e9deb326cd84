//! `macro-sweep`: the macro parameters of a network around a fixed cell (Archai 0.5's Pareto
//! sweep over cells x nodes x channels x reductions, which was broken as shipped).
use crate::darts_cells::Genotype;
use archai_plugin_api::discrete::{Arch, DiscreteSpace};
use archai_plugin_api::kit::seeded::SplitMix64;
use archai_plugin_api::model_desc::{CellFill, DartsMacro, ModelDesc, DARTS_V2};
use archai_plugin_api::{register_search_space, SearchContext};
use serde::{Deserialize, Serialize};

/// An architecture: one value of each choice.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MacroArch {
    pub cells: usize,
    pub nodes: usize,
    pub channels: i64,
    pub reductions: usize,
}

/// Configuration: the choices of each macro parameter and the cell they are swept around.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MacroSweepConfig {
    pub cells: Vec<usize>,
    /// Intermediate nodes kept of the cell (its first ones).
    pub nodes: Vec<usize>,
    pub channels: Vec<i64>,
    /// Number of reduction cells, spread evenly (2 in 8 cells: cells 2 and 5, as DARTS).
    pub reductions: Vec<usize>,
    pub stem_multiplier: i64,
    /// Stride of the stem convolution (2: the cells see half the resolution).
    pub stem_stride: i64,
    /// The cell (default: DARTS-V2).
    pub genotype: Option<Genotype>,
    pub mutation_rate: f64,
}

impl Default for MacroSweepConfig {
    fn default() -> Self {
        Self {
            cells: vec![3, 5, 8],
            nodes: vec![1, 2, 3, 4],
            channels: vec![8, 16],
            reductions: vec![1, 2],
            stem_multiplier: 3,
            stem_stride: 1,
            genotype: None,
            mutation_rate: 0.3,
        }
    }
}

pub struct MacroSweep {
    config: MacroSweepConfig,
    genotype: Genotype,
}

fn darts_v2() -> Genotype {
    let own = |cell: &[[(&str, usize); 2]; 4]| {
        cell.iter().map(|n| n.iter().map(|(o, i)| (o.to_string(), *i)).collect()).collect()
    };
    Genotype { normal: own(&DARTS_V2.normal), reduce: own(&DARTS_V2.reduce) }
}

impl MacroSweep {
    pub fn new(config: MacroSweepConfig) -> anyhow::Result<Self> {
        let genotype = config.genotype.clone().unwrap_or_else(darts_v2);
        let c = &config;
        for (name, empty) in [
            ("cells", c.cells.is_empty()),
            ("nodes", c.nodes.is_empty()),
            ("channels", c.channels.is_empty()),
            ("reductions", c.reductions.is_empty()),
        ] {
            anyhow::ensure!(!empty, "macro-sweep: `{name}` needs at least one choice");
        }
        let min_cells = *c.cells.iter().min().expect("non-empty");
        anyhow::ensure!(min_cells >= 3, "macro-sweep: every `cells` choice must be at least 3 (got {min_cells})");
        let max_red = *c.reductions.iter().max().expect("non-empty");
        anyhow::ensure!(
            max_red < min_cells,
            "macro-sweep: {max_red} reductions do not fit in {min_cells} cells (reductions must be below cells)"
        );
        let cell_nodes = genotype.normal.len().min(genotype.reduce.len());
        if let Some(n) = c.nodes.iter().find(|&&n| n == 0 || n > cell_nodes) {
            anyhow::bail!("macro-sweep: nodes {n} is not between 1 and the cell's {cell_nodes} nodes");
        }
        anyhow::ensure!(c.channels.iter().all(|&x| x > 0), "macro-sweep: channels must be positive");
        anyhow::ensure!(c.stem_stride >= 1, "macro-sweep: `stem_stride` must be at least 1 (got {})", c.stem_stride);
        anyhow::ensure!(
            c.mutation_rate > 0.0 && c.mutation_rate <= 1.0,
            "macro-sweep: mutation_rate must be in (0, 1], got {}",
            c.mutation_rate
        );
        Ok(Self { config, genotype })
    }

    fn parse(&self, arch: &Arch) -> anyhow::Result<MacroArch> {
        let a: MacroArch =
            serde_json::from_value(arch.clone()).map_err(|e| anyhow::anyhow!("macro-sweep architecture: {e}"))?;
        let c = &self.config;
        anyhow::ensure!(
            c.cells.contains(&a.cells)
                && c.nodes.contains(&a.nodes)
                && c.channels.contains(&a.channels)
                && c.reductions.contains(&a.reductions),
            "macro-sweep: {a:?} is not in the space"
        );
        Ok(a)
    }

    fn arch(a: MacroArch) -> Arch {
        serde_json::to_value(a).expect("serializes")
    }

    fn choose<T: Copy>(rng: &mut SplitMix64, xs: &[T]) -> T {
        xs[rng.below(xs.len())]
    }

    /// The reduction cells: `k` of `cells`, at (j+1)·cells/(k+1).
    pub fn reduction_cells(cells: usize, k: usize) -> Vec<usize> {
        (0..k).map(|j| (j + 1) * cells / (k + 1)).collect()
    }
}

impl DiscreteSpace for MacroSweep {
    fn sample(&mut self, rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        let c = &self.config;
        Ok(Self::arch(MacroArch {
            cells: Self::choose(rng, &c.cells),
            nodes: Self::choose(rng, &c.nodes),
            channels: Self::choose(rng, &c.channels),
            reductions: Self::choose(rng, &c.reductions),
        }))
    }

    fn mutate(&mut self, arch: &Arch, rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        let a = self.parse(arch)?;
        let c = &self.config;
        let p = c.mutation_rate;
        for _ in 0..100 {
            let mut m = a;
            if rng.chance(p) {
                m.cells = Self::choose(rng, &c.cells);
            }
            if rng.chance(p) {
                m.nodes = Self::choose(rng, &c.nodes);
            }
            if rng.chance(p) {
                m.channels = Self::choose(rng, &c.channels);
            }
            if rng.chance(p) {
                m.reductions = Self::choose(rng, &c.reductions);
            }
            if m != a {
                return Ok(Self::arch(m));
            }
        }
        Ok(arch.clone())
    }

    fn crossover(&mut self, parents: &[Arch], rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        let ps: Vec<MacroArch> = parents.iter().map(|p| self.parse(p)).collect::<anyhow::Result<_>>()?;
        let mut pick = || ps[rng.below(ps.len())];
        Ok(Self::arch(MacroArch {
            cells: pick().cells,
            nodes: pick().nodes,
            channels: pick().channels,
            reductions: pick().reductions,
        }))
    }

    fn encode(&self, arch: &Arch) -> anyhow::Result<Vec<f64>> {
        let a = self.parse(arch)?;
        Ok(vec![a.cells as f64, a.nodes as f64, a.channels as f64, a.reductions as f64])
    }

    fn model_desc(&self, arch: &Arch, ctx: &SearchContext) -> anyhow::Result<ModelDesc> {
        let a = self.parse(arch)?;
        let m = DartsMacro {
            layers: a.cells,
            nodes: a.nodes,
            channels: a.channels,
            stem_multiplier: self.config.stem_multiplier,
            stem_stride: self.config.stem_stride,
            auxiliary: false,
            reduction_cells: Some(Self::reduction_cells(a.cells, a.reductions)),
        };
        let (normal, reduce) = (&self.genotype.normal[..a.nodes], &self.genotype.reduce[..a.nodes]);
        Ok(m.build(
            &format!("macro-c{}-n{}-ch{}-r{}", a.cells, a.nodes, a.channels, a.reductions),
            ctx.input(),
            ctx.num_classes,
            &CellFill::Genotype { normal, reduce },
        )?)
    }

    fn enumerate(&self, limit: usize) -> anyhow::Result<Option<Vec<Arch>>> {
        let c = &self.config;
        let size = c.cells.len() * c.nodes.len() * c.channels.len() * c.reductions.len();
        if size > limit {
            return Ok(None);
        }
        let mut all = Vec::with_capacity(size);
        for &cells in &c.cells {
            for &nodes in &c.nodes {
                for &channels in &c.channels {
                    for &reductions in &c.reductions {
                        all.push(Self::arch(MacroArch { cells, nodes, channels, reductions }));
                    }
                }
            }
        }
        Ok(Some(all))
    }
}

fn create(config: &serde_json::Value) -> anyhow::Result<Box<dyn DiscreteSpace>> {
    Ok(Box::new(MacroSweep::new(archai_plugin_api::kit::config::parse(config, "macro-sweep")?)?))
}

register_search_space!(
    "macro-sweep",
    "Macro parameters around a fixed cell: cells x nodes x channels x reduction cells (the Pareto sweep)",
    create
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_builds_with_its_reductions_in_place() {
        let s = MacroSweep::new(MacroSweepConfig::default()).unwrap();
        let ctx = SearchContext {
            channels: 1,
            image_size: 28,
            num_classes: 10,
            seed: 0,
            epochs: 1,
            steps_per_epoch: 1,
            val_batch_size: 0,
        };
        let all = s.enumerate(1000).unwrap().unwrap();
        assert_eq!(all.len(), 3 * 4 * 2 * 2);
        for a in &all {
            let m: MacroArch = serde_json::from_value(a.clone()).unwrap();
            let d = s.model_desc(a, &ctx).unwrap();
            d.validate().unwrap();
            assert_eq!(d.cells.len(), m.cells);
            assert_eq!(d.cells.iter().filter(|c| c.reduction).count(), m.reductions);
            assert!(d.cells.iter().all(|c| c.nodes.len() == m.nodes));
        }
        // DARTS' placement for 2 reductions in 8 cells.
        assert_eq!(MacroSweep::reduction_cells(8, 2), vec![2, 5]);
    }

    #[test]
    fn bad_configs_are_named() {
        let c = MacroSweepConfig { reductions: vec![3], cells: vec![3], ..MacroSweepConfig::default() };
        assert!(MacroSweep::new(c).err().unwrap().to_string().contains("reductions do not fit"));
        let c = MacroSweepConfig { nodes: vec![5], ..MacroSweepConfig::default() };
        assert!(MacroSweep::new(c).err().unwrap().to_string().contains("nodes 5"));
    }
}
