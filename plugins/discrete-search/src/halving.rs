//! `successive-halving`: the population evaluated at a budget, the worse half (by
//! non-dominated rank) dropped, the budget multiplied, until one model is left.
use crate::{from_state, point, samples, state_of};
use archai_plugin_api::discrete::{Candidate, Evaluation, ObjectiveInfo, Proposal, Searcher, Space};
use archai_plugin_api::kit::pareto;
use archai_plugin_api::kit::seeded::SplitMix64;
use archai_plugin_api::register_searcher;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HalvingConfig {
    pub num_iters: u32,
    pub init_num_models: usize,
    pub init_budget: f64,
    pub budget_multiplier: f64,
    pub seed: u64,
}

impl Default for HalvingConfig {
    fn default() -> Self {
        Self { num_iters: 10, init_num_models: 10, init_budget: 1.0, budget_multiplier: 2.0, seed: 1 }
    }
}

#[derive(Serialize, Deserialize)]
pub struct SuccessiveHalving {
    config: HalvingConfig,
    rng: u64,
    /// The survivors to evaluate next, at `budget`.
    population: Vec<Candidate>,
    budget: f64,
    finished: bool,
    /// The experiment's objectives, as the host said in the last `ask`.
    objectives: Vec<ObjectiveInfo>,
}

impl Searcher for SuccessiveHalving {
    fn ask(&mut self, space: &mut Space<'_, '_>, iteration: u32) -> anyhow::Result<Proposal> {
        if self.finished || iteration >= self.config.num_iters {
            return Ok(Proposal { candidates: Vec::new(), done: true, ..Default::default() });
        }
        self.objectives = space.objectives()?;
        if iteration == 0 {
            let mut rng = SplitMix64::new(self.rng);
            self.population = samples(space, &mut rng, self.config.init_num_models, 100)?;
            self.rng = rng.state();
            self.budget = self.config.init_budget;
        }
        let candidates: Vec<Candidate> =
            self.population.iter().map(|c| Candidate { budget: self.budget, ..c.clone() }).collect();
        let done = iteration + 1 >= self.config.num_iters || candidates.len() <= 1;
        Ok(Proposal { candidates, done, ..Default::default() })
    }

    fn tell(&mut self, evaluations: &[Evaluation]) -> anyhow::Result<serde_json::Value> {
        // Archai keeps the first floor(#fronts / multiplier) fronts, so one front keeps nothing
        // and the budget is passed per objective where a per-model list is expected. Here the
        // best ceil(n / multiplier) models by non-dominated rank survive (ties in a front by id).
        let scored: Vec<(&Evaluation, Vec<f64>)> =
            evaluations.iter().filter_map(|e| point(e, &self.objectives).map(|p| (e, p))).collect();
        let points: Vec<Vec<f64>> = scored.iter().map(|(_, p)| p.clone()).collect();
        let keep = ((scored.len() as f64) / self.config.budget_multiplier).ceil() as usize;
        let keep = if scored.len() > 1 { keep.min(scored.len() - 1).max(1) } else { scored.len() };
        let mut survivors = Vec::new();
        for mut f in pareto::non_dominated_sort(&points) {
            f.sort_by(|a, b| scored[*a].0.candidate.id.cmp(&scored[*b].0.candidate.id));
            for i in f {
                if survivors.len() < keep {
                    survivors.push(scored[i].0.candidate.clone());
                }
            }
        }
        self.population = survivors;
        self.budget *= self.config.budget_multiplier;
        if self.population.len() <= 1 {
            self.finished = true;
        }
        Ok(serde_json::json!({"survivors": self.population.len(), "next_budget": self.budget}))
    }

    fn state(&self) -> anyhow::Result<serde_json::Value> {
        state_of(self)
    }
    fn load_state(&mut self, state: serde_json::Value) -> anyhow::Result<()> {
        *self = from_state("successive-halving", state)?;
        Ok(())
    }
}

fn create(config: &serde_json::Value) -> anyhow::Result<Box<dyn Searcher>> {
    let config: HalvingConfig = archai_plugin_api::kit::config::parse(config, "successive-halving")?;
    anyhow::ensure!(config.budget_multiplier > 1.0, "successive-halving: budget_multiplier must be above 1");
    anyhow::ensure!(config.init_budget > 0.0, "successive-halving: init_budget must be positive");
    Ok(Box::new(SuccessiveHalving {
        rng: config.seed,
        config,
        population: Vec::new(),
        budget: 0.0,
        finished: false,
        objectives: Vec::new(),
    }))
}

register_searcher!(
    "successive-halving",
    "Successive halving: the population re-evaluated at growing budgets, the worse half by Pareto rank dropped",
    create
);
