//! `mo-bananas`: multi-objective BANANAS (White et al. 2021) as in Archai 1.0. A predictor (an
//! ensemble of MLPs in tch) learns the expensive objectives from the encoded architectures;
//! mutants of the best models by non-dominated rank are scored with Thompson samples of the
//! prediction (mean + sd x N(0, 1)) and the cheap objectives computed exactly; the best
//! `num_candidates` by non-dominated rank are evaluated.
use crate::{from_state, minimised, mutants, point, samples, state_of};
use archai_plugin_api::discrete::{Candidate, Evaluation, ObjectiveInfo, Proposal, Searcher, Space};
use archai_plugin_api::kit::adam::Adam;
use archai_plugin_api::kit::pareto;
use archai_plugin_api::kit::seeded::{self, SplitMix64};
use archai_plugin_api::register_searcher;
use archai_plugin_api::tch::{Kind, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const F64: (Kind, archai_plugin_api::tch::Device) = (Kind::Double, archai_plugin_api::tch::Device::Cpu);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BananasConfig {
    pub num_iters: u32,
    pub init_num_models: usize,
    pub num_parents: usize,
    pub mutations_per_parent: usize,
    pub num_candidates: usize,
    pub mutation_tries: usize,
    /// The predictor: `members` MLPs of `layers` hidden layers of `width`, Adam at `lr` for
    /// `steps` full-batch steps on the summed MSE of standardised targets.
    pub members: usize,
    pub layers: usize,
    pub width: i64,
    pub lr: f64,
    pub steps: usize,
    pub seed: u64,
}

impl Default for BananasConfig {
    fn default() -> Self {
        Self {
            num_iters: 10,
            init_num_models: 10,
            num_parents: 10,
            mutations_per_parent: 5,
            num_candidates: 10,
            mutation_tries: 30,
            members: 5,
            layers: 5,
            width: 64,
            lr: 1e-4,
            steps: 2000,
            seed: 1,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct MoBananas {
    config: BananasConfig,
    rng: u64,
    history: Vec<Evaluation>,
    /// Encodings of the evaluated architectures, by id (asked once from the space).
    encodings: BTreeMap<String, Vec<f64>>,
}

/// Mean and standard deviation of each column.
fn standardise(rows: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let d = rows[0].len();
    let n = rows.len() as f64;
    let mean: Vec<f64> = (0..d).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n).collect();
    let sd: Vec<f64> = (0..d)
        .map(|j| {
            let v = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
            if v > 0.0 {
                v.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    (mean, sd)
}

fn tensor(rows: &[Vec<f64>], mean: &[f64], sd: &[f64]) -> Tensor {
    let flat: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.iter().zip(mean.iter().zip(sd)).map(|(x, (m, s))| if x.is_nan() { -1.0 } else { (x - m) / s }))
        .collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, mean.len() as i64])
}

/// One trained member: its layers (weight, bias).
struct Mlp(Vec<(Tensor, Tensor)>);

impl Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for (i, (w, b)) in self.0.iter().enumerate() {
            h = h.matmul(w) + b;
            if i + 1 < self.0.len() {
                h = h.relu();
            }
        }
        h
    }
}

/// The ensemble's (mean, variance) for each row of `x` and each target, in target units.
struct Predictor {
    members: Vec<Mlp>,
    x_stats: (Vec<f64>, Vec<f64>),
    y_stats: (Vec<f64>, Vec<f64>),
}

impl Predictor {
    fn fit(c: &BananasConfig, xs: &[Vec<f64>], ys: &[Vec<f64>], seed: u64) -> anyhow::Result<Self> {
        let x_stats = standardise(xs);
        let y_stats = standardise(ys);
        let x = tensor(xs, &x_stats.0, &x_stats.1);
        let y = tensor(ys, &y_stats.0, &y_stats.1);
        let (d_in, d_out) = (x.size()[1], y.size()[1]);
        let mut members = Vec::new();
        for m in 0..c.members {
            // Seeded weights, not libtorch's global generator: a resumed search refits the same.
            let mut dims = vec![d_in];
            dims.extend(std::iter::repeat_n(c.width, c.layers));
            dims.push(d_out);
            let mut params = Vec::new();
            for (l, pair) in dims.windows(2).enumerate() {
                let k = seed.wrapping_add((m * 1000 + l) as u64 * 2);
                let bound = 1.0 / (pair[0] as f64).sqrt();
                // Double precision: BLAS may sum in another order from one call to the next, and
                // in f32 that moved predictions by 1e-8 between two identical fits.
                let w = (seeded::normal_on(&[pair[0], pair[1]], k, F64) * bound).set_requires_grad(true);
                let b = (seeded::normal_on(&[pair[1]], k + 1, F64) * bound).set_requires_grad(true);
                params.push((w, b));
            }
            let named: Vec<(String, Tensor)> = params
                .iter()
                .enumerate()
                .flat_map(|(l, (w, b))| [(format!("w{l}"), w.shallow_clone()), (format!("b{l}"), b.shallow_clone())])
                .collect();
            let tensors: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
            let mut adam = Adam::new(c.lr, [0.9, 0.999], 1e-8, 0.0);
            let mlp = Mlp(params);
            for _ in 0..c.steps {
                let loss = (mlp.forward(&x) - &y).square().sum(Kind::Double);
                let grads = archai_plugin_api::kit::grad_of(&loss, &tensors)?;
                adam.step(&named, &grads)?;
            }
            members.push(mlp);
        }
        Ok(Self { members, x_stats, y_stats })
    }

    fn predict(&self, xs: &[Vec<f64>]) -> Vec<Vec<(f64, f64)>> {
        let _guard = archai_plugin_api::tch::no_grad_guard();
        let x = tensor(xs, &self.x_stats.0, &self.x_stats.1);
        let outs = Tensor::stack(&self.members.iter().map(|m| m.forward(&x)).collect::<Vec<_>>(), 0);
        let mean = outs.mean_dim(0, false, Kind::Double);
        let var = outs.var_dim(0, false, false).to_kind(Kind::Double);
        let (ym, ys) = &self.y_stats;
        (0..xs.len() as i64)
            .map(|i| {
                (0..ym.len())
                    .map(|j| {
                        let m = mean.double_value(&[i, j as i64]) * ys[j] + ym[j];
                        let v = var.double_value(&[i, j as i64]) * ys[j] * ys[j];
                        (m, v)
                    })
                    .collect()
            })
            .collect()
    }
}

impl MoBananas {
    fn encode(&mut self, space: &mut Space<'_, '_>, c: &Candidate) -> anyhow::Result<Vec<f64>> {
        if let Some(e) = self.encodings.get(&c.id) {
            return Ok(e.clone());
        }
        let e = space.encode(&c.arch)?;
        self.encodings.insert(c.id.clone(), e.clone());
        Ok(e)
    }
}

impl Searcher for MoBananas {
    fn ask(&mut self, space: &mut Space<'_, '_>, iteration: u32) -> anyhow::Result<Proposal> {
        let c = self.config.clone();
        if iteration >= c.num_iters {
            return Ok(Proposal { candidates: Vec::new(), done: true, ..Default::default() });
        }
        let mut rng = SplitMix64::new(self.rng);
        if iteration == 0 {
            let out = samples(space, &mut rng, c.init_num_models, c.mutation_tries.max(100))?;
            self.rng = rng.state();
            let done = out.is_empty();
            return Ok(Proposal { candidates: out, done, ..Default::default() });
        }
        let objectives = space.objectives()?;
        let expensive: Vec<&ObjectiveInfo> = objectives.iter().filter(|o| !o.cheap).collect();
        // Parents: the first num_parents evaluated models by non-dominated rank.
        let history = self.history.clone();
        let scored: Vec<(&Evaluation, Vec<f64>)> =
            history.iter().filter_map(|e| point(e, &objectives).map(|p| (e, p))).collect();
        let points: Vec<Vec<f64>> = scored.iter().map(|(_, p)| p.clone()).collect();
        let parents: Vec<Candidate> = pareto::non_dominated_sort(&points)
            .into_iter()
            .flatten()
            .take(c.num_parents)
            .map(|i| scored[i].0.candidate.clone())
            .collect();
        let mut children = Vec::new();
        for p in &parents {
            children.extend(mutants(space, &mut rng, p, c.mutations_per_parent, c.mutation_tries)?);
        }
        if children.is_empty() {
            self.rng = rng.state();
            // Archai stops here too, with a misleading "No mutations found"; this says why.
            return Ok(Proposal { candidates: Vec::new(), done: true, ..Default::default() });
        }
        // The cheap objectives exactly, the expensive ones by a Thompson sample of the predictor.
        let mut cheap_values = Vec::new();
        for ch in &children {
            cheap_values.push(space.check(&ch.arch)?.values);
        }
        let mut sampled: Vec<BTreeMap<String, f64>> = cheap_values.clone();
        if !expensive.is_empty() && scored.len() >= 2 {
            let mut xs = Vec::new();
            let mut ys = Vec::new();
            for (e, _) in &scored {
                let cand = e.candidate.clone();
                xs.push(self.encode(space, &cand)?);
                ys.push(expensive.iter().map(|o| e.values[&o.name]).collect::<Vec<f64>>());
            }
            let predictor = Predictor::fit(&c, &xs, &ys, rng.next_u64())?;
            let child_x: Vec<Vec<f64>> =
                children.iter().map(|ch| space.encode(&ch.arch)).collect::<anyhow::Result<_>>()?;
            for (k, pred) in predictor.predict(&child_x).into_iter().enumerate() {
                for (o, (m, v)) in expensive.iter().zip(pred) {
                    sampled[k].insert(o.name.clone(), m + v.max(0.0).sqrt() * rng.next_normal());
                }
            }
        }
        let pts: Vec<Vec<f64>> = sampled.iter().map(|v| minimised(v, &objectives).unwrap_or_default()).collect();
        let mut order = Vec::new();
        for mut front in pareto::non_dominated_sort(&pts) {
            rng.shuffle(&mut front);
            order.extend(front);
        }
        let candidates: Vec<Candidate> =
            order.into_iter().take(c.num_candidates).map(|i| children[i].clone()).collect();
        self.rng = rng.state();
        let done = iteration + 1 >= c.num_iters;
        Ok(Proposal { candidates, done, ..Default::default() })
    }

    fn tell(&mut self, evaluations: &[Evaluation]) -> anyhow::Result<serde_json::Value> {
        self.history.extend_from_slice(evaluations);
        Ok(serde_json::json!({"history": self.history.len()}))
    }
    fn state(&self) -> anyhow::Result<serde_json::Value> {
        state_of(self)
    }
    fn load_state(&mut self, state: serde_json::Value) -> anyhow::Result<()> {
        *self = from_state("mo-bananas", state)?;
        Ok(())
    }
}

fn create(config: &serde_json::Value) -> anyhow::Result<Box<dyn Searcher>> {
    let config: BananasConfig = archai_plugin_api::kit::config::parse(config, "mo-bananas")?;
    anyhow::ensure!(
        config.init_num_models > 0 && config.members > 0 && config.num_candidates > 0 && config.width > 0,
        "mo-bananas: init_num_models, members, num_candidates and width must be positive"
    );
    Ok(Box::new(MoBananas { rng: config.seed, config, history: Vec::new(), encodings: BTreeMap::new() }))
}

register_searcher!(
    "mo-bananas",
    "Multi-objective BANANAS: an MLP-ensemble predictor of the expensive objectives, Thompson-sampled over mutants of the best models",
    create
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_predictor_learns_a_simple_function_and_is_unsure_far_away() {
        // y = x0 + 2 x1 on a small grid.
        let xs: Vec<Vec<f64>> = (0..5).flat_map(|a| (0..5).map(move |b| vec![a as f64, b as f64])).collect();
        let ys: Vec<Vec<f64>> = xs.iter().map(|x| vec![x[0] + 2.0 * x[1]]).collect();
        let c = BananasConfig { steps: 800, lr: 3e-3, members: 3, layers: 2, width: 32, ..BananasConfig::default() };
        let p = Predictor::fit(&c, &xs, &ys, 7).unwrap();
        let pred = p.predict(&[vec![2.0, 3.0], vec![40.0, -40.0]]);
        assert!((pred[0][0].0 - 8.0).abs() < 0.5, "{:?}", pred[0]);
        // The members agree where they were trained more than far outside it.
        assert!(pred[1][0].1 > pred[0][0].1, "{pred:?}");
        // Seeded: the same fit twice gives the same prediction (to BLAS summation order).
        let q = Predictor::fit(&c, &xs, &ys, 7).unwrap().predict(&[vec![2.0, 3.0]]);
        assert!((q[0][0].0 - pred[0][0].0).abs() < 1e-12, "{q:?} vs {pred:?}");
    }
}
