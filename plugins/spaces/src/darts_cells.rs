//! `darts-cells`: DARTS genotypes on a fixed macro-architecture.
use archai_plugin_api::discrete::{Arch, DiscreteSpace};
use archai_plugin_api::kit::seeded::SplitMix64;
use archai_plugin_api::model_desc::{CellFill, DartsMacro, ModelDesc};
use archai_plugin_api::{register_search_space, SearchContext};
use serde::{Deserialize, Serialize};

/// Per node, two (op, input) pairs.
pub type Cell = Vec<Vec<(String, usize)>>;

/// An architecture of the space.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Genotype {
    pub normal: Cell,
    pub reduce: Cell,
}

/// Configuration (every key optional).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DartsCellsConfig {
    /// The network every genotype is built into.
    #[serde(rename = "macro")]
    pub macro_: DartsMacro,
    /// The ops a node may use (`none` is not allowed: a node needs two real inputs).
    pub ops: Vec<String>,
    pub mutation_rate: f64,
}

impl Default for DartsCellsConfig {
    fn default() -> Self {
        Self {
            macro_: DartsMacro { layers: 5, channels: 8, ..DartsMacro::default() },
            ops: archai_plugin_api::kit::config::darts_ops(),
            mutation_rate: 0.3,
        }
    }
}

pub struct DartsCells {
    pub config: DartsCellsConfig,
}

impl DartsCells {
    pub fn new(config: DartsCellsConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(!config.ops.is_empty(), "darts-cells: `ops` is empty");
        anyhow::ensure!(!config.ops.iter().any(|o| o == "none"), "darts-cells: `none` cannot be an op of a genotype");
        anyhow::ensure!(
            (0.0..=1.0).contains(&config.mutation_rate) && config.mutation_rate > 0.0,
            "darts-cells: mutation_rate must be in (0, 1], got {}",
            config.mutation_rate
        );
        anyhow::ensure!(config.macro_.nodes > 0, "darts-cells: macro.nodes must be at least 1");
        Ok(Self { config })
    }

    fn node(&self, rng: &mut SplitMix64, n: usize) -> Vec<(String, usize)> {
        let fan_in = n + 2;
        let a = rng.below(fan_in);
        let mut b = rng.below(fan_in - 1);
        if b >= a {
            b += 1;
        }
        let ops = &self.config.ops;
        [a.min(b), a.max(b)].iter().map(|&i| (ops[rng.below(ops.len())].clone(), i)).collect()
    }

    fn cell(&self, rng: &mut SplitMix64) -> Cell {
        (0..self.config.macro_.nodes).map(|n| self.node(rng, n)).collect()
    }

    fn parse(&self, arch: &Arch) -> anyhow::Result<Genotype> {
        let g: Genotype =
            serde_json::from_value(arch.clone()).map_err(|e| anyhow::anyhow!("darts-cells architecture: {e}"))?;
        for cell in [&g.normal, &g.reduce] {
            anyhow::ensure!(
                cell.len() == self.config.macro_.nodes,
                "darts-cells: a cell needs {} nodes",
                self.config.macro_.nodes
            );
            for (n, node) in cell.iter().enumerate() {
                anyhow::ensure!(node.len() == 2, "darts-cells: node {n} needs two (op, input) pairs");
                for (op, input) in node {
                    anyhow::ensure!(self.config.ops.contains(op), "darts-cells: op `{op}` is not in the space");
                    anyhow::ensure!(*input < n + 2, "darts-cells: node {n} cannot read state {input}");
                }
                anyhow::ensure!(node[0].1 != node[1].1, "darts-cells: node {n} reads one input twice");
            }
        }
        Ok(g)
    }

    fn to_arch(g: &Genotype) -> Arch {
        serde_json::to_value(g).expect("a genotype serializes")
    }

    /// Number of genotypes: per cell, per node C(n+2, 2) input pairs times ops^2.
    fn size(&self) -> Option<u128> {
        let k = self.config.ops.len() as u128;
        let mut per_cell: u128 = 1;
        for n in 0..self.config.macro_.nodes as u128 {
            let pairs = (n + 2) * (n + 1) / 2;
            per_cell = per_cell.checked_mul(pairs.checked_mul(k * k)?)?;
        }
        per_cell.checked_mul(per_cell)
    }
}

impl DiscreteSpace for DartsCells {
    fn sample(&mut self, rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        let normal = self.cell(rng);
        let reduce = self.cell(rng);
        Ok(Self::to_arch(&Genotype { normal, reduce }))
    }

    fn mutate(&mut self, arch: &Arch, rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        let g = self.parse(arch)?;
        for _ in 0..100 {
            let mut m = g.clone();
            for cell in [&mut m.normal, &mut m.reduce] {
                for (n, node) in cell.iter_mut().enumerate() {
                    if rng.chance(self.config.mutation_rate) {
                        // New inputs (ops kept where they were).
                        let fresh = self.node(rng, n);
                        node[0].1 = fresh[0].1;
                        node[1].1 = fresh[1].1;
                    }
                    for pair in node.iter_mut() {
                        if rng.chance(self.config.mutation_rate) {
                            pair.0 = self.config.ops[rng.below(self.config.ops.len())].clone();
                        }
                    }
                }
            }
            if m != g {
                return Ok(Self::to_arch(&m));
            }
        }
        // A space with a single genotype has no neighbour.
        Ok(arch.clone())
    }

    fn crossover(&mut self, parents: &[Arch], rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        let ps: Vec<Genotype> = parents.iter().map(|p| self.parse(p)).collect::<anyhow::Result<_>>()?;
        let nodes = self.config.macro_.nodes;
        let pick = |rng: &mut SplitMix64, f: &dyn Fn(&Genotype) -> &Cell| -> Cell {
            (0..nodes).map(|n| f(&ps[rng.below(ps.len())])[n].clone()).collect()
        };
        let normal = pick(rng, &|g| &g.normal);
        let reduce = pick(rng, &|g| &g.reduce);
        Ok(Self::to_arch(&Genotype { normal, reduce }))
    }

    fn encode(&self, arch: &Arch) -> anyhow::Result<Vec<f64>> {
        let g = self.parse(arch)?;
        let op_index = |op: &str| self.config.ops.iter().position(|o| o == op).unwrap_or(0) as f64;
        Ok([&g.normal, &g.reduce]
            .iter()
            .flat_map(|cell| cell.iter().flatten().flat_map(|(op, i)| [*i as f64, op_index(op)]))
            .collect())
    }

    fn model_desc(&self, arch: &Arch, ctx: &SearchContext) -> anyhow::Result<ModelDesc> {
        let g = self.parse(arch)?;
        let id = archai_plugin_api::discrete::stable_id(arch);
        Ok(self.config.macro_.build(
            &format!("darts-cells-{id}"),
            ctx.input(),
            ctx.num_classes,
            &CellFill::Genotype { normal: &g.normal, reduce: &g.reduce },
        )?)
    }

    fn enumerate(&self, limit: usize) -> anyhow::Result<Option<Vec<Arch>>> {
        let Some(size) = self.size() else { return Ok(None) };
        if size > limit as u128 {
            return Ok(None);
        }
        // Every cell, then every (normal, reduce) pair.
        let ops = &self.config.ops;
        let mut cells: Vec<Cell> = vec![Vec::new()];
        for n in 0..self.config.macro_.nodes {
            let mut next = Vec::new();
            for cell in &cells {
                for a in 0..n + 2 {
                    for b in a + 1..n + 2 {
                        for oa in ops {
                            for ob in ops {
                                let mut c = cell.clone();
                                c.push(vec![(oa.clone(), a), (ob.clone(), b)]);
                                next.push(c);
                            }
                        }
                    }
                }
            }
            cells = next;
        }
        let mut all = Vec::new();
        for normal in &cells {
            for reduce in &cells {
                all.push(Self::to_arch(&Genotype { normal: normal.clone(), reduce: reduce.clone() }));
            }
        }
        Ok(Some(all))
    }
}

fn create(config: &serde_json::Value) -> anyhow::Result<Box<dyn DiscreteSpace>> {
    Ok(Box::new(DartsCells::new(archai_plugin_api::kit::config::parse(config, "darts-cells")?)?))
}

register_search_space!(
    "darts-cells",
    "DARTS genotypes (two (op, input) pairs per node, no `none`) on a fixed macro-architecture",
    create
);

#[cfg(test)]
mod tests {
    use super::*;
    use archai_plugin_api::model_desc::InputDesc;

    fn small() -> DartsCells {
        let mut c = DartsCellsConfig::default();
        c.macro_.nodes = 2;
        c.ops = vec!["skip_connect".into(), "max_pool_3x3".into()];
        DartsCells::new(c).unwrap()
    }

    #[test]
    fn samples_mutants_and_children_are_valid_genotypes_that_build() {
        let mut s = DartsCells::new(DartsCellsConfig::default()).unwrap();
        let mut rng = SplitMix64::new(1);
        let ctx = SearchContext {
            channels: 1,
            image_size: 28,
            num_classes: 10,
            seed: 0,
            epochs: 1,
            steps_per_epoch: 1,
            val_batch_size: 0,
        };
        let a = s.sample(&mut rng).unwrap();
        let b = s.sample(&mut rng).unwrap();
        assert_ne!(a, b);
        let m = s.mutate(&a, &mut rng).unwrap();
        assert_ne!(m, a);
        let c = s.crossover(&[a.clone(), b.clone()], &mut rng).unwrap();
        for x in [&a, &m, &c] {
            s.parse(x).unwrap();
            let d = s.model_desc(x, &ctx).unwrap();
            d.validate().unwrap();
            assert_eq!(d.input, InputDesc { channels: 1, size: 28 });
        }
        // Fixed length: 2 cells x 4 nodes x 2 pairs x (input, op).
        assert_eq!(s.encode(&a).unwrap().len(), 32);
        // Same seed, same sample.
        assert_eq!(s.sample(&mut SplitMix64::new(9)).unwrap(), s.sample(&mut SplitMix64::new(9)).unwrap());
    }

    #[test]
    fn enumeration_counts_every_genotype_once() {
        let s = small();
        // Node 0: C(2,2)=1 pair x 4 op pairs = 4; node 1: C(3,2)=3 x 4 = 12; per cell 48; 48^2.
        let all = s.enumerate(10_000).unwrap().unwrap();
        assert_eq!(all.len(), 48 * 48);
        let ids: std::collections::BTreeSet<String> = all.iter().map(|a| s.arch_id(a).unwrap()).collect();
        assert_eq!(ids.len(), all.len());
        assert!(s.enumerate(100).unwrap().is_none());
        assert!(DartsCells::new(DartsCellsConfig::default()).unwrap().enumerate(1 << 40).unwrap().is_none());
    }

    #[test]
    fn bad_architectures_and_configs_are_named() {
        let s = small();
        let e = s.parse(&serde_json::json!({"normal": [], "reduce": []})).unwrap_err().to_string();
        assert!(e.contains("2 nodes"), "{e}");
        let bad = serde_json::json!({"normal": [[["skip_connect", 0], ["skip_connect", 0]], [["skip_connect", 0], ["skip_connect", 2]]], "reduce": [[["skip_connect", 0], ["skip_connect", 1]], [["skip_connect", 0], ["skip_connect", 2]]]});
        assert!(s.parse(&bad).unwrap_err().to_string().contains("reads one input twice"));
        let c = DartsCellsConfig { ops: vec!["none".into()], ..DartsCellsConfig::default() };
        assert!(DartsCells::new(c).is_err());
    }
}
