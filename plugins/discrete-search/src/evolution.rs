//! The evolutionary searchers: parents are Pareto-optimal models, children their mutants (and
//! crossovers for `evolution-pareto`).
use crate::{from_state, front, mutants, samples, state_of};
use archai_plugin_api::discrete::{Candidate, Evaluation, ObjectiveInfo, Proposal, Searcher, Space};
use archai_plugin_api::kit::seeded::SplitMix64;
use archai_plugin_api::register_searcher;
use serde::{Deserialize, Serialize};

/// What every evolutionary searcher keeps: its generator and everything evaluated.
#[derive(Serialize, Deserialize, Default)]
struct Memory {
    rng: u64,
    history: Vec<Evaluation>,
}

impl Memory {
    fn all(&self) -> Vec<&Evaluation> {
        self.history.iter().collect()
    }

    /// The loop all three share: over after `num_iters`; `init` random models first; then
    /// whatever `children` makes from the memory; over when that is nothing new.
    fn ask(
        &mut self,
        space: &mut Space<'_, '_>,
        iteration: u32,
        (num_iters, init, tries): (u32, usize, usize),
        children: impl FnOnce(&Memory, &mut Space<'_, '_>, &mut SplitMix64) -> anyhow::Result<Vec<Candidate>>,
    ) -> anyhow::Result<Proposal> {
        if iteration >= num_iters {
            return Ok(Proposal { candidates: Vec::new(), done: true, ..Default::default() });
        }
        let mut rng = SplitMix64::new(self.rng);
        let out = if iteration == 0 {
            samples(space, &mut rng, init, tries.max(100))?
        } else {
            children(self, space, &mut rng)?
        };
        self.rng = rng.state();
        let done = iteration + 1 >= num_iters || out.is_empty();
        Ok(Proposal { candidates: out, done, ..Default::default() })
    }
}

/// `tell`, `state` and `load_state` of a searcher whose state is its serialized self with a
/// `memory` field.
macro_rules! memory_searcher {
    ($name:expr) => {
        fn tell(&mut self, evaluations: &[Evaluation]) -> anyhow::Result<serde_json::Value> {
            self.memory.history.extend_from_slice(evaluations);
            Ok(serde_json::json!({"history": self.memory.history.len()}))
        }
        fn state(&self) -> anyhow::Result<serde_json::Value> {
            state_of(self)
        }
        fn load_state(&mut self, state: serde_json::Value) -> anyhow::Result<()> {
            *self = from_state($name, state)?;
            Ok(())
        }
    };
}

fn parents_of(evals: &[&Evaluation], objectives: &[ObjectiveInfo]) -> Vec<Candidate> {
    front(evals, objectives).into_iter().map(|e| e.candidate.clone()).collect()
}

// ----- evolution-pareto ---------------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvolutionParetoConfig {
    pub num_iters: u32,
    pub init_num_models: usize,
    pub num_random_mix: usize,
    pub max_unseen_population: usize,
    pub mutations_per_parent: usize,
    pub num_crossovers: usize,
    pub mutation_tries: usize,
    pub crossover_tries: usize,
    pub seed: u64,
}

impl Default for EvolutionParetoConfig {
    fn default() -> Self {
        Self {
            num_iters: 10,
            init_num_models: 10,
            num_random_mix: 5,
            max_unseen_population: 100,
            mutations_per_parent: 1,
            num_crossovers: 5,
            mutation_tries: 20,
            crossover_tries: 30,
            seed: 1,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct EvolutionPareto {
    config: EvolutionParetoConfig,
    memory: Memory,
}

impl Searcher for EvolutionPareto {
    fn ask(&mut self, space: &mut Space<'_, '_>, iteration: u32) -> anyhow::Result<Proposal> {
        let c = self.config.clone();
        self.memory.ask(space, iteration, (c.num_iters, c.init_num_models, c.mutation_tries), |memory, space, rng| {
            let objectives = space.objectives()?;
            let parents = parents_of(&memory.all(), &objectives);
            let mut out = Vec::new();
            for p in &parents {
                out.extend(mutants(space, rng, p, c.mutations_per_parent, c.mutation_tries)?);
            }
            if !parents.is_empty() {
                for _ in 0..c.num_crossovers {
                    for _ in 0..c.crossover_tries {
                        let (a, b) = (&parents[rng.below(parents.len())], &parents[rng.below(parents.len())]);
                        let arch = space.crossover(&[a.arch.clone(), b.arch.clone()], rng)?;
                        let check = space.check(&arch)?;
                        if check.valid && !check.seen {
                            let parents = vec![a.id.clone(), b.id.clone()];
                            out.push(Candidate { arch, id: check.id, budget: 1.0, parents, warm_start: None });
                            break;
                        }
                    }
                }
            }
            out.extend(samples(space, rng, c.num_random_mix, c.mutation_tries)?);
            rng.shuffle(&mut out);
            out.truncate(c.max_unseen_population);
            Ok(out)
        })
    }
    memory_searcher!("evolution-pareto");
}

fn create_evolution(config: &serde_json::Value) -> anyhow::Result<Box<dyn Searcher>> {
    let config: EvolutionParetoConfig = archai_plugin_api::kit::config::parse(config, "evolution-pareto")?;
    anyhow::ensure!(config.init_num_models > 0, "evolution-pareto: init_num_models must be positive");
    Ok(Box::new(EvolutionPareto { memory: Memory { rng: config.seed, history: Vec::new() }, config }))
}

register_searcher!(
    "evolution-pareto",
    "Evolution with Pareto parents: mutants, crossovers and random samples of the frontier of everything evaluated",
    create_evolution
);

// ----- local-search -------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSearchConfig {
    pub num_iters: u32,
    pub init_num_models: usize,
    pub mutations_per_parent: usize,
    pub mutation_tries: usize,
    pub seed: u64,
}

impl Default for LocalSearchConfig {
    fn default() -> Self {
        Self { num_iters: 10, init_num_models: 10, mutations_per_parent: 1, mutation_tries: 20, seed: 1 }
    }
}

#[derive(Serialize, Deserialize)]
pub struct LocalSearch {
    config: LocalSearchConfig,
    memory: Memory,
}

impl Searcher for LocalSearch {
    fn ask(&mut self, space: &mut Space<'_, '_>, iteration: u32) -> anyhow::Result<Proposal> {
        let c = self.config.clone();
        // Over when the neighbourhood of the front holds nothing new.
        self.memory.ask(space, iteration, (c.num_iters, c.init_num_models, c.mutation_tries), |memory, space, rng| {
            let objectives = space.objectives()?;
            let mut out = Vec::new();
            for p in parents_of(&memory.all(), &objectives) {
                out.extend(mutants(space, rng, &p, c.mutations_per_parent, c.mutation_tries)?);
            }
            Ok(out)
        })
    }
    memory_searcher!("local-search");
}

fn create_local(config: &serde_json::Value) -> anyhow::Result<Box<dyn Searcher>> {
    let config: LocalSearchConfig = archai_plugin_api::kit::config::parse(config, "local-search")?;
    anyhow::ensure!(config.init_num_models > 0, "local-search: init_num_models must be positive");
    Ok(Box::new(LocalSearch { memory: Memory { rng: config.seed, history: Vec::new() }, config }))
}

register_searcher!(
    "local-search",
    "Local search: mutants of every Pareto-optimal model until nothing new is found",
    create_local
);

// ----- regularized-evolution ----------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegularizedEvolutionConfig {
    pub num_iters: u32,
    pub init_num_models: usize,
    pub pareto_sample_size: usize,
    pub history_size: usize,
    pub mutation_tries: usize,
    pub seed: u64,
}

impl Default for RegularizedEvolutionConfig {
    fn default() -> Self {
        Self {
            num_iters: 10,
            init_num_models: 10,
            pareto_sample_size: 40,
            history_size: 100,
            mutation_tries: 20,
            seed: 1,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct RegularizedEvolution {
    config: RegularizedEvolutionConfig,
    memory: Memory,
}

impl Searcher for RegularizedEvolution {
    fn ask(&mut self, space: &mut Space<'_, '_>, iteration: u32) -> anyhow::Result<Proposal> {
        let c = self.config.clone();
        self.memory.ask(space, iteration, (c.num_iters, c.init_num_models, c.mutation_tries), |memory, space, rng| {
            let objectives = space.objectives()?;
            let recent: Vec<&Evaluation> =
                memory.history.iter().rev().take(c.history_size).collect::<Vec<_>>().into_iter().rev().collect();
            // Archai samples pareto_sample_size (40) from a history that holds 10 models in the
            // first iteration, which raises in Python; the sample never exceeds the history here.
            let mut idx: Vec<usize> = (0..recent.len()).collect();
            rng.shuffle(&mut idx);
            idx.truncate(c.pareto_sample_size.min(recent.len()));
            idx.sort_unstable();
            let sample: Vec<&Evaluation> = idx.iter().map(|&i| recent[i]).collect();
            let mut out = Vec::new();
            for p in parents_of(&sample, &objectives) {
                out.extend(mutants(space, rng, &p, 1, c.mutation_tries)?);
            }
            Ok(out)
        })
    }
    memory_searcher!("regularized-evolution");
}

fn create_regularized(config: &serde_json::Value) -> anyhow::Result<Box<dyn Searcher>> {
    let config: RegularizedEvolutionConfig = archai_plugin_api::kit::config::parse(config, "regularized-evolution")?;
    anyhow::ensure!(
        config.init_num_models > 0 && config.history_size > 0 && config.pareto_sample_size > 0,
        "regularized-evolution: init_num_models, history_size and pareto_sample_size must be positive"
    );
    Ok(Box::new(RegularizedEvolution { memory: Memory { rng: config.seed, history: Vec::new() }, config }))
}

register_searcher!(
    "regularized-evolution",
    "Regularized evolution: mutants of the Pareto members of a random sample of the recent history",
    create_regularized
);
