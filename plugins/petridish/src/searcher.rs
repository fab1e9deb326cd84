//! The `petridish` searcher: seeds, the pool, parents sampled from the ε-band of the lower
//! convex hull of (MACs, error), search jobs that train a candidate node warm-started from the
//! parent, and post-training of the grown child warm-started from the search.
use crate::arch::{alpha_name, Edge, PetridishArch, SpaceConfig, SEARCH_NODE};
use crate::hull;
use archai_plugin_api::discrete::{
    ArchValues, Artifact, Candidate, Evaluation, GalleryEntry, Proposal, Searcher, Space, WarmStart,
};
use archai_plugin_api::kit::seeded::SplitMix64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Configuration (every key optional; defaults are Archai's, at this project's scale).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PetridishConfig {
    /// Seed grid: every (reductions, cells, nodes) in these closed ranges with
    /// cells >= 2 x reductions + 1.
    pub seed_reductions: [usize; 2],
    pub seed_cells: [usize; 2],
    pub seed_nodes: [usize; 2],
    /// Training budgets (multiples of `search.training.trainer.epochs`) of the three job kinds.
    pub seed_budget: f64,
    pub search_budget: f64,
    pub post_budget: f64,
    /// The band around the hull parents are drawn from: error <= (1 + eps) x hull error.
    pub eps: f64,
    /// Search jobs started per iteration (each on its own sampled parent).
    pub parallel: usize,
    /// The (input, op) pairs a search keeps for the new node.
    pub top_k: usize,
    /// Stop once a pool model has more MACs than this.
    pub max_madd: f64,
    /// Stop once the pool holds this many models.
    pub max_hull_points: usize,
    /// Models grown at most (search + post-train pairs) before stopping.
    pub max_grown: usize,
    /// The search space's configuration: the searcher builds seeds and grows nodes itself, so
    /// it must know the ops (keep it equal to the space's `ops`).
    pub ops: Vec<String>,
    pub seed: u64,
}

impl Default for PetridishConfig {
    fn default() -> Self {
        Self {
            seed_reductions: [1, 3],
            seed_cells: [3, 8],
            seed_nodes: [1, 3],
            seed_budget: 1.0,
            search_budget: 1.0,
            post_budget: 1.0,
            eps: 0.025,
            parallel: 2,
            top_k: 3,
            max_madd: 2e8,
            max_hull_points: 100,
            max_grown: 100,
            ops: SpaceConfig::default().ops,
            seed: 1,
        }
    }
}

/// Why a model is in the pool.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Seed,
    Grown,
}

/// A trained model of the pool.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PoolEntry {
    pub id: String,
    pub arch: PetridishArch,
    pub budget: f64,
    pub stage: Stage,
    pub macs: f64,
    pub val_top1: f64,
    /// The model it was grown from.
    pub parent: Option<String>,
    /// The search job that chose its new node.
    pub search: Option<String>,
    /// Times it was drawn as a parent.
    pub sampled: u32,
}

impl PoolEntry {
    fn error(&self) -> f64 {
        1.0 - self.val_top1
    }
}

/// A search job whose evaluation has arrived and whose child is to be post-trained.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Finished {
    search_id: String,
    parent: String,
    child: PetridishArch,
    rename: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
struct State {
    rng: u64,
    pool: Vec<PoolEntry>,
    /// Search jobs proposed in the last ask: id -> parent id.
    searching: BTreeMap<String, String>,
    finished: Vec<Finished>,
    grown: usize,
    stopped: Option<String>,
}

pub struct Petridish {
    config: PetridishConfig,
    state: State,
}

impl Petridish {
    pub fn new(config: PetridishConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(config.eps >= 0.0, "petridish: eps must be >= 0");
        anyhow::ensure!(config.parallel >= 1 && config.top_k >= 1, "petridish: parallel and top_k must be >= 1");
        anyhow::ensure!(
            !config.ops.is_empty() && !config.ops.iter().any(|o| o == "none"),
            "petridish: `ops` needs ops other than `none`"
        );
        for b in [config.seed_budget, config.search_budget, config.post_budget] {
            anyhow::ensure!(b > 0.0, "petridish: budgets must be positive");
        }
        let seeds = seed_grid(&config);
        anyhow::ensure!(
            !seeds.is_empty(),
            "petridish: the seed grid (reductions {:?}, cells {:?}, nodes {:?}) has no macro with cells >= 2 x reductions + 1",
            config.seed_reductions,
            config.seed_cells,
            config.seed_nodes
        );
        let state = State { rng: config.seed, ..State::default() };
        Ok(Self { config, state })
    }

    fn band(&self) -> (Vec<usize>, Vec<usize>) {
        let pts: Vec<(f64, f64)> = self.state.pool.iter().map(|p| (p.macs, p.error())).collect();
        let h = hull::lower_hull(&pts);
        let band = hull::eps_band(&pts, &h, self.config.eps);
        (h, band)
    }

    /// The searcher's files and result models for the pool's `hull` and `band`.
    fn outputs(&self, hull: &[usize], band: &[usize]) -> (Vec<Artifact>, Vec<GalleryEntry>) {
        let pool = &self.state.pool;
        let artifacts = vec![
            Artifact { name: "pool.csv".into(), text: pool_csv(pool, hull, band) },
            Artifact { name: "convex_hull.svg".into(), text: hull_svg(pool, hull, self.config.eps) },
        ];
        let gallery = band.iter().map(|&i| GalleryEntry { id: pool[i].id.clone(), budget: pool[i].budget }).collect();
        (artifacts, gallery)
    }

    fn stop_reason(&self) -> Option<String> {
        if let Some(p) = self.state.pool.iter().find(|p| p.macs > self.config.max_madd) {
            return Some(format!("{} has {:.0} MACs > max_madd {}", p.id, p.macs, self.config.max_madd));
        }
        if self.state.pool.len() >= self.config.max_hull_points {
            return Some(format!("the pool holds {} models (max_hull_points)", self.state.pool.len()));
        }
        if self.state.grown >= self.config.max_grown {
            return Some(format!("{} models were grown (max_grown)", self.state.grown));
        }
        None
    }
}

/// Every seed macro of the grid, in a fixed order.
fn seed_grid(c: &PetridishConfig) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for r in c.seed_reductions[0]..=c.seed_reductions[1] {
        for cells in c.seed_cells[0]..=c.seed_cells[1] {
            for nodes in c.seed_nodes[0].max(1)..=c.seed_nodes[1] {
                if cells > 2 * r {
                    out.push((r, cells, nodes));
                }
            }
        }
    }
    out
}

fn arch_json(a: &PetridishArch) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(a)?)
}

/// The kept (input, op) pairs of one cell type: the `k` largest |α| over all inputs and ops.
/// |α|, not α: the 1x1 conv after the concatenation can flip a sign, so a strongly negative
/// weight marks a useful op as much as a positive one.
pub fn top_pairs(
    alpha: &ArchValues,
    inputs: &[String],
    ops: &[String],
    k: usize,
) -> anyhow::Result<Vec<(usize, usize)>> {
    let [rows, cols] = alpha.shape[..] else {
        anyhow::bail!("petridish: candidate weights of shape {:?}, expected [inputs, ops]", alpha.shape)
    };
    anyhow::ensure!(
        rows as usize == inputs.len() && cols as usize == ops.len(),
        "petridish: candidate weights of shape {:?} for {} inputs and {} ops",
        alpha.shape,
        inputs.len(),
        ops.len()
    );
    let mut all: Vec<(usize, usize)> =
        (0..rows as usize).flat_map(|i| (0..cols as usize).map(move |j| (i, j))).collect();
    let w = |&(i, j): &(usize, usize)| alpha.values[i * cols as usize + j].abs();
    all.sort_by(|a, b| w(b).total_cmp(&w(a)).then(a.cmp(b)));
    all.truncate(k);
    Ok(all)
}

impl Searcher for Petridish {
    fn ask(&mut self, space: &mut Space<'_, '_>, iteration: u32) -> anyhow::Result<Proposal> {
        let mut rng = SplitMix64::new(self.state.rng);
        let mut candidates = Vec::new();
        if iteration == 0 && self.state.pool.is_empty() {
            for (r, cells, nodes) in seed_grid(&self.config) {
                let arch = PetridishArch::seed(cells, r, nodes, &self.config.ops, &mut rng)?;
                let json = arch_json(&arch)?;
                let check = space.check(&json)?;
                if check.valid && !check.seen {
                    candidates.push(Candidate {
                        arch: json,
                        id: check.id,
                        budget: self.config.seed_budget,
                        parents: Vec::new(),
                        warm_start: None,
                    });
                }
            }
            self.state.rng = rng.state();
            return Ok(Proposal { candidates, done: false, artifacts: Vec::new(), gallery: Vec::new() });
        }
        // Post-train the children of the searches that finished.
        for f in std::mem::take(&mut self.state.finished) {
            let json = arch_json(&f.child)?;
            let check = space.check(&json)?;
            if !check.valid || check.seen {
                continue;
            }
            candidates.push(Candidate {
                arch: json,
                id: check.id,
                budget: self.config.post_budget,
                parents: vec![f.parent.clone(), f.search_id.clone()],
                warm_start: Some(WarmStart { from: f.search_id, budget: self.config.search_budget, rename: f.rename }),
            });
            self.state.grown += 1;
        }
        self.state.stopped = self.state.stopped.take().or_else(|| self.stop_reason());
        // The pool does not change during `ask`: one hull serves the draw and the outputs.
        let (hull, band) = self.band();
        if self.state.stopped.is_none() {
            // New searches on parents drawn from the band.
            // A parent is searched once: a second search from the same weights and seed would
            // repeat the first.
            let mut band: Vec<usize> = band.iter().copied().filter(|&i| self.state.pool[i].sampled == 0).collect();
            for _ in 0..self.config.parallel.min(band.len()) {
                let counts: Vec<u32> = band.iter().map(|&i| self.state.pool[i].sampled).collect();
                let macs: Vec<f64> = band.iter().map(|&i| self.state.pool[i].macs).collect();
                let pick = band.remove(hull::draw(&hull::sampling_weights(&counts, &macs), &mut rng));
                self.state.pool[pick].sampled += 1;
                let parent = &self.state.pool[pick];
                let mut search = parent.arch.clone();
                search.search = true;
                let json = arch_json(&search)?;
                let check = space.check(&json)?;
                if !check.valid || check.seen {
                    continue;
                }
                self.state.searching.insert(check.id.clone(), parent.id.clone());
                candidates.push(Candidate {
                    arch: json,
                    id: check.id,
                    budget: self.config.search_budget,
                    parents: vec![parent.id.clone()],
                    warm_start: Some(WarmStart { from: parent.id.clone(), budget: parent.budget, rename: Vec::new() }),
                });
            }
        }
        self.state.rng = rng.state();
        let done = candidates.is_empty();
        let (artifacts, gallery) = self.outputs(&hull, &band);
        Ok(Proposal { candidates, done, artifacts, gallery })
    }

    fn tell(&mut self, evaluations: &[Evaluation]) -> anyhow::Result<serde_json::Value> {
        let mut searched = Vec::new();
        for e in evaluations {
            let arch: PetridishArch = serde_json::from_value(e.candidate.arch.clone()).map_err(|err| {
                anyhow::anyhow!(
                    "petridish: {} is not a petridish architecture ({err}); use the `petridish` search space",
                    e.candidate.id
                )
            })?;
            let top1 = e.values.get("val_top1").copied();
            if arch.search {
                let parent = self.state.searching.remove(&e.candidate.id).unwrap_or_default();
                if !e.valid {
                    continue;
                }
                let (child, rename, picks) = self.finalize(&arch, &e.candidate.id, &e.arch_params)?;
                searched.push(serde_json::json!({"search": e.candidate.id, "parent": parent, "kept": picks}));
                self.state.finished.push(Finished { search_id: e.candidate.id.clone(), parent, child, rename });
                continue;
            }
            let (Some(top1), Some(macs)) = (top1, e.values.get("macs").copied()) else {
                anyhow::bail!(
                    "petridish needs the objectives `val_top1` and `macs`; {} has {:?}",
                    e.candidate.id,
                    e.values.keys()
                );
            };
            if !e.valid || !top1.is_finite() {
                continue;
            }
            let grown = e.candidate.warm_start.is_some();
            self.state.pool.push(PoolEntry {
                id: e.candidate.id.clone(),
                arch,
                budget: e.candidate.budget,
                stage: if grown { Stage::Grown } else { Stage::Seed },
                macs,
                val_top1: top1,
                parent: grown.then(|| e.candidate.parents.first().cloned()).flatten(),
                search: grown.then(|| e.candidate.parents.get(1).cloned()).flatten(),
                sampled: 0,
            });
        }
        let (h, band) = self.band();
        Ok(serde_json::json!({
            "pool": self.state.pool.len(),
            "hull": h.len(),
            "band": band.len(),
            "grown": self.state.grown,
            "searched": searched,
            "best_val_top1": self.state.pool.iter().map(|p| p.val_top1).fold(f64::NAN, f64::max),
            "stopped": self.state.stopped,
        }))
    }

    fn state(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::to_value(&self.state)?)
    }

    fn load_state(&mut self, state: serde_json::Value) -> anyhow::Result<()> {
        self.state = serde_json::from_value(state)?;
        Ok(())
    }
}

impl Petridish {
    /// The child of a finished search: per cell type the `top_k` pairs become a multi-op node,
    /// and each kept candidate op's trained weights move to its edge (`rename`).
    #[allow(clippy::type_complexity)]
    fn finalize(
        &self,
        search: &PetridishArch,
        search_id: &str,
        alphas: &BTreeMap<String, ArchValues>,
    ) -> anyhow::Result<(PetridishArch, Vec<(String, String)>, Vec<String>)> {
        let mut edges: [Vec<Edge>; 2] = [Vec::new(), Vec::new()];
        let mut pairs: [Vec<(usize, usize)>; 2] = [Vec::new(), Vec::new()];
        let mut picks = Vec::new();
        for reduction in [false, true] {
            let pattern = if reduction { &search.reduce } else { &search.normal };
            let inputs = PetridishArch::search_inputs(pattern);
            let name = alpha_name(reduction);
            let alpha = alphas.get(name).ok_or_else(|| {
                anyhow::anyhow!("petridish: search {search_id} came back without its trained `{name}`")
            })?;
            let top = top_pairs(alpha, &inputs, &self.config.ops, self.config.top_k)?;
            for &(i, j) in &top {
                edges[reduction as usize].push(Edge { input: inputs[i].clone(), op: self.config.ops[j].clone() });
                picks.push(format!(
                    "{}:{}:{}",
                    if reduction { "reduce" } else { "normal" },
                    inputs[i],
                    self.config.ops[j]
                ));
            }
            pairs[reduction as usize] = top;
        }
        let mut parent = search.clone();
        parent.search = false;
        let child = parent.grow(&edges[0], &edges[1])?;
        let reductions = crate::arch::reduction_cells(child.cells, child.reductions);
        let mut rename = Vec::new();
        for ci in 0..child.cells {
            let reduction = reductions.contains(&ci);
            let pattern = if reduction { &child.reduce } else { &child.normal };
            let new_id = &pattern[PetridishArch::search_position(pattern.len() - 1)].id;
            for (k, &(i, j)) in pairs[reduction as usize].iter().enumerate() {
                rename.push((
                    format!("cells.{ci}.{SEARCH_NODE}.e{i}.{}", self.config.ops[j]),
                    format!("cells.{ci}.{new_id}.e{k}"),
                ));
            }
        }
        Ok((child, rename, picks))
    }
}

fn pool_csv(pool: &[PoolEntry], hull: &[usize], band: &[usize]) -> String {
    let mut out = String::from(
        "id,stage,reductions,cells,nodes,macs,val_top1,error,parent,search,sampled,on_hull,in_band,budget\n",
    );
    for (i, p) in pool.iter().enumerate() {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            p.id,
            match p.stage {
                Stage::Seed => "seed",
                Stage::Grown => "grown",
            },
            p.arch.reductions,
            p.arch.cells,
            p.arch.nodes(),
            p.macs,
            p.val_top1,
            p.error(),
            p.parent.clone().unwrap_or_default(),
            p.search.clone().unwrap_or_default(),
            p.sampled,
            hull.contains(&i),
            band.contains(&i),
            p.budget
        );
    }
    out
}

/// Error against MMACs: every pool model (seeds hollow, grown filled), the hull and the ε bound.
fn hull_svg(pool: &[PoolEntry], hull: &[usize], eps: f64) -> String {
    let (w, h, m) = (640.0, 420.0, 60.0);
    let xs: Vec<f64> = pool.iter().map(|p| p.macs / 1e6).collect();
    let ys: Vec<f64> = pool.iter().map(|p| p.error()).collect();
    let span = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi > lo {
            (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        } else {
            (lo - 0.5 * lo.abs().max(0.01), hi + 0.5 * hi.abs().max(0.01))
        }
    };
    let ((x0, x1), (y0, y1)) = (span(&xs), span(&ys));
    let px = |x: f64| m + (x - x0) / (x1 - x0) * (w - 2.0 * m);
    let py = |y: f64| h - m - (y - y0) / (y1 - y0) * (h - 2.0 * m);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">Petridish pool: error vs MACs (lower convex hull, eps = {eps})</text>\n\
         <line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">MMACs per image</text>\n\
         <text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">validation error</text>\n",
        w / 2.0,
        h - m,
        w - m,
        h - m,
        h - m,
        w / 2.0,
        h - 15.0,
        h / 2.0,
        h / 2.0
    );
    for k in 0..=4 {
        let (xv, yv) = (x0 + (x1 - x0) * k as f64 / 4.0, y0 + (y1 - y0) * k as f64 / 4.0);
        let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{xv:.3}</text>", px(xv), h - m + 16.0);
        let _ = writeln!(s, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{yv:.3}</text>", m - 4.0, py(yv) + 4.0);
    }
    let line = |pts: Vec<(f64, f64)>, style: &str| {
        let d: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        format!(
            "<polyline class=\"{style}\" points=\"{}\" fill=\"none\" {}/>\n",
            d.join(" "),
            match style {
                "hull" => "stroke=\"#1f77b4\" stroke-width=\"2\"",
                _ => "stroke=\"#1f77b4\" stroke-dasharray=\"5,4\"",
            }
        )
    };
    let hull_pts: Vec<(f64, f64)> = hull.iter().map(|&i| (xs[i], ys[i])).collect();
    s.push_str(&line(hull_pts.clone(), "hull"));
    s.push_str(&line(hull_pts.iter().map(|&(x, y)| (x, y * (1.0 + eps))).collect(), "band"));
    for (i, p) in pool.iter().enumerate() {
        let fill = if p.stage == Stage::Seed { "white" } else { "#d62728" };
        let _ = writeln!(
            s,
            "<circle class=\"model\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{fill}\" stroke=\"#d62728\"><title>{} ({}): {:.3} MMACs, error {:.4}</title></circle>",
            px(xs[i]),
            py(ys[i]),
            p.id,
            if p.stage == Stage::Seed { "seed" } else { "grown" },
            xs[i],
            ys[i]
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"40\" text-anchor=\"end\">hollow: seeds, filled: grown; solid: hull, dashed: (1 + eps) x hull</text>",
        w - m
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_pairs_rank_by_magnitude_across_inputs() {
        let a = ArchValues { shape: vec![2, 3], values: vec![0.1, -0.9, 0.0, 0.5, 0.2, -0.6] };
        let inputs = vec!["s0".to_string(), "s1".to_string()];
        let ops = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(top_pairs(&a, &inputs, &ops, 3).unwrap(), vec![(0, 1), (1, 2), (1, 0)]);
        assert!(top_pairs(&a, &inputs[..1], &ops, 3).is_err());
    }

    #[test]
    fn stop_rules_name_what_stopped_the_search() {
        let cfg = PetridishConfig { max_madd: 1e6, max_hull_points: 3, max_grown: 5, ..Default::default() };
        let mut p = Petridish::new(cfg.clone()).unwrap();
        let arch = PetridishArch::seed(3, 1, 1, &cfg.ops, &mut SplitMix64::new(1)).unwrap();
        let entry = |id: &str, macs: f64| PoolEntry {
            id: id.into(),
            arch: arch.clone(),
            budget: 1.0,
            stage: Stage::Seed,
            macs,
            val_top1: 0.5,
            parent: None,
            search: None,
            sampled: 0,
        };
        p.state.pool = vec![entry("a", 5e5), entry("b", 9e5)];
        assert_eq!(p.stop_reason(), None);
        p.state.pool.push(entry("c", 2e6));
        assert!(p.stop_reason().unwrap().contains("c has 2000000 MACs > max_madd"), "{:?}", p.stop_reason());
        p.state.pool[2].macs = 1e5;
        assert!(p.stop_reason().unwrap().contains("max_hull_points"));
        p.state.pool.truncate(2);
        p.state.grown = 5;
        assert!(p.stop_reason().unwrap().contains("max_grown"));
    }

    #[test]
    fn seed_grid_respects_the_reduction_rule() {
        let c = PetridishConfig {
            seed_reductions: [1, 2],
            seed_cells: [3, 5],
            seed_nodes: [1, 1],
            ..PetridishConfig::default()
        };
        assert_eq!(seed_grid(&c), vec![(1, 3, 1), (1, 4, 1), (1, 5, 1), (2, 5, 1)]);
    }

    #[test]
    fn finalize_moves_kept_candidates_to_new_edges() {
        let cfg =
            PetridishConfig { top_k: 2, ops: vec!["sep_conv_3x3".into(), "skip_connect".into()], ..Default::default() };
        let p = Petridish::new(cfg.clone()).unwrap();
        let mut a = PetridishArch::seed(3, 1, 1, &cfg.ops, &mut SplitMix64::new(2)).unwrap();
        a.search = true;
        // One node per cell: the search node goes before it and reads s0, s1.
        let mut alphas = BTreeMap::new();
        alphas.insert(
            "petridish.normal".to_string(),
            ArchValues { shape: vec![2, 2], values: vec![0.0, 0.3, -0.8, 0.1] },
        );
        alphas
            .insert("petridish.reduce".to_string(), ArchValues { shape: vec![2, 2], values: vec![0.5, 0.0, 0.0, 0.4] });
        let (child, rename, picks) = p.finalize(&a, "a-x", &alphas).unwrap();
        assert_eq!(child.normal[0].id, "n2");
        assert!(child.normal[0].multi_op && !child.search);
        assert_eq!(
            child.normal[0].edges,
            vec![
                Edge { input: "s1".into(), op: "sep_conv_3x3".into() },
                Edge { input: "s0".into(), op: "skip_connect".into() }
            ]
        );
        assert_eq!(picks[0], "normal:s1:sep_conv_3x3");
        // Cell 1 is the reduction cell (3 cells, 1 reduction).
        assert!(rename.contains(&("cells.0.search.e1.sep_conv_3x3".into(), "cells.0.n2.e0".into())));
        assert!(rename.contains(&("cells.1.search.e0.sep_conv_3x3".into(), "cells.1.n3.e0".into())));
        assert!(rename.contains(&("cells.1.search.e1.skip_connect".into(), "cells.1.n3.e1".into())));
    }
}
