//! `random` and `sweep`.
use crate::{from_state, samples, state_of};
use archai_plugin_api::discrete::{Candidate, Evaluation, Proposal, Searcher, Space};
use archai_plugin_api::kit::seeded::SplitMix64;
use archai_plugin_api::register_searcher;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RandomConfig {
    pub num_iters: u32,
    pub samples_per_iter: usize,
    /// Draws per sample before giving up on finding a valid unseen one.
    pub tries: usize,
    pub seed: u64,
}

impl Default for RandomConfig {
    fn default() -> Self {
        Self { num_iters: 10, samples_per_iter: 10, tries: 100, seed: 1 }
    }
}

#[derive(Serialize, Deserialize)]
pub struct RandomSearch {
    config: RandomConfig,
    rng: u64,
}

impl Searcher for RandomSearch {
    fn ask(&mut self, space: &mut Space<'_, '_>, iteration: u32) -> anyhow::Result<Proposal> {
        if iteration >= self.config.num_iters {
            return Ok(Proposal { candidates: Vec::new(), done: true, ..Default::default() });
        }
        let mut rng = SplitMix64::new(self.rng);
        let candidates = samples(space, &mut rng, self.config.samples_per_iter, self.config.tries)?;
        self.rng = rng.state();
        let done = iteration + 1 >= self.config.num_iters || candidates.is_empty();
        Ok(Proposal { candidates, done, ..Default::default() })
    }
    fn tell(&mut self, evaluations: &[Evaluation]) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({"valid": evaluations.iter().filter(|e| e.valid).count()}))
    }
    fn state(&self) -> anyhow::Result<serde_json::Value> {
        state_of(self)
    }
    fn load_state(&mut self, state: serde_json::Value) -> anyhow::Result<()> {
        *self = from_state("random", state)?;
        Ok(())
    }
}

fn create_random(config: &serde_json::Value) -> anyhow::Result<Box<dyn Searcher>> {
    let config: RandomConfig = archai_plugin_api::kit::config::parse(config, "random")?;
    anyhow::ensure!(
        config.samples_per_iter > 0 && config.tries > 0,
        "random: samples_per_iter and tries must be positive"
    );
    Ok(Box::new(RandomSearch { rng: config.seed, config }))
}

register_searcher!("random", "Random search: valid unseen samples, samples_per_iter per iteration", create_random);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// The most architectures the space may have (a larger space is an error, not a hang).
    pub limit: usize,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self { limit: 10_000 }
    }
}

#[derive(Serialize, Deserialize)]
pub struct Sweep {
    config: SweepConfig,
    done: bool,
}

impl Searcher for Sweep {
    fn ask(&mut self, space: &mut Space<'_, '_>, _iteration: u32) -> anyhow::Result<Proposal> {
        if self.done {
            return Ok(Proposal { candidates: Vec::new(), done: true, ..Default::default() });
        }
        let all = space.enumerate(self.config.limit)?.ok_or_else(|| {
            anyhow::anyhow!(
                "sweep: the search space has more than {} architectures; raise `limit` or use a sampling searcher",
                self.config.limit
            )
        })?;
        let mut candidates = Vec::new();
        // Invalid ones are checked (cheaply) and left out: they are never trained.
        for arch in all {
            let c = space.check(&arch)?;
            if c.valid && !c.seen {
                candidates.push(Candidate { arch, id: c.id, budget: 1.0, parents: Vec::new(), warm_start: None });
            }
        }
        self.done = true;
        Ok(Proposal { candidates, done: true, ..Default::default() })
    }
    fn tell(&mut self, evaluations: &[Evaluation]) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({"evaluated": evaluations.len()}))
    }
    fn state(&self) -> anyhow::Result<serde_json::Value> {
        state_of(self)
    }
    fn load_state(&mut self, state: serde_json::Value) -> anyhow::Result<()> {
        *self = from_state("sweep", state)?;
        Ok(())
    }
}

fn create_sweep(config: &serde_json::Value) -> anyhow::Result<Box<dyn Searcher>> {
    Ok(Box::new(Sweep { config: archai_plugin_api::kit::config::parse(config, "sweep")?, done: false }))
}

register_searcher!(
    "sweep",
    "Every architecture of an enumerable space that meets the constraints (the Pareto sweep)",
    create_sweep
);
