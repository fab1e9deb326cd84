//! Outer-loop (discrete) search: *search spaces* that sample, mutate, cross over, encode and
//! identify architectures, and *searchers* that propose architectures for the host to evaluate
//! and decide what comes next (ask / tell).
//!
//! The host owns the loop: each iteration it asks the searcher for candidates, evaluates the
//! objectives the experiment names (cheap ones first; a candidate outside a constraint is
//! never trained), caches every value by (objective, architecture id, budget), tells the
//! searcher the results and checkpoints the searcher's [`Searcher::state`]. A killed search
//! resumes from the last finished iteration; the evaluations of the unfinished one come from
//! the cache, so nothing is evaluated twice. Searchers reach the search space only through the
//! host ([`Space`]), which also answers whether an architecture meets the constraints and was
//! seen before, and refuses to go on when no architecture meets them (a search never loops
//! forever on unsatisfiable constraints).
//!
//! Architectures cross the boundary as JSON values; the space defines their shape.
use crate::abi::SearchContext;
use crate::component::guard;
use crate::kit::seeded::SplitMix64;
use crate::model_desc::ModelDesc;
use abi_stable::sabi_trait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::sabi_types::RMut;
use abi_stable::std_types::{RBox, RResult, RStr, RString, RVec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An architecture of some search space (the space defines the JSON's shape).
pub type Arch = serde_json::Value;

/// A search space, implemented by a plugin. Each random choice draws from the generator it is
/// given, so a searcher that checkpoints its generator repeats exactly.
pub trait DiscreteSpace: Send + 'static {
    /// A uniformly random architecture.
    fn sample(&mut self, rng: &mut SplitMix64) -> anyhow::Result<Arch>;
    /// A random neighbour of `arch` (different from it when the space allows).
    fn mutate(&mut self, arch: &Arch, rng: &mut SplitMix64) -> anyhow::Result<Arch>;
    /// A child taking each choice from one of `parents`.
    fn crossover(&mut self, parents: &[Arch], rng: &mut SplitMix64) -> anyhow::Result<Arch>;
    /// A fixed-length numeric vector (for predictors).
    fn encode(&self, arch: &Arch) -> anyhow::Result<Vec<f64>>;
    /// A stable identity: equal architectures, equal ids, on every machine and run.
    fn arch_id(&self, arch: &Arch) -> anyhow::Result<String> {
        Ok(stable_id(arch))
    }
    /// The network to build for this architecture on a dataset.
    fn model_desc(&self, arch: &Arch, context: &SearchContext) -> anyhow::Result<ModelDesc>;
    /// Every architecture, when the space has at most `limit` of them (`None` otherwise).
    fn enumerate(&self, _limit: usize) -> anyhow::Result<Option<Vec<Arch>>> {
        Ok(None)
    }
}

/// `a-` and 16 hex digits of FNV-1a (64 bit) over the architecture's canonical JSON (object
/// keys sorted, whatever serde_json's features): stable across runs, machines and builds.
pub fn stable_id(arch: &Arch) -> String {
    let mut text = String::new();
    canonical(arch, &mut text);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("a-{h:016x}")
}

fn canonical(v: &Arch, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&m[*k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// An objective of the experiment, as searchers see it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ObjectiveInfo {
    pub name: String,
    pub higher_is_better: bool,
    /// Computed for every checked architecture (and returned by [`Space::check`]); the others
    /// (a trained accuracy) only for evaluated candidates.
    #[serde(default)]
    pub cheap: bool,
}

/// The host's verdict on an architecture before it is proposed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ArchCheck {
    pub id: String,
    /// Every constraint met (the constraints are on cheap objectives only).
    pub valid: bool,
    /// Evaluated before (at any budget) or already proposed in this iteration.
    pub seen: bool,
    /// The cheap objectives' values, by name.
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
}

/// An architecture to evaluate at a budget (a multiple of the experiment's training budget).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Candidate {
    pub arch: Arch,
    pub id: String,
    #[serde(default = "one")]
    pub budget: f64,
    /// Ids of the architectures it was made from (for the record).
    #[serde(default)]
    pub parents: Vec<String>,
    /// Start training from the trained weights of an evaluated candidate instead of a fresh
    /// initialization (Petridish's children); absent: a cold start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<WarmStart>,
}

/// Where a candidate's initial weights come from: the weights candidate `from` had after its
/// training at `budget`. Tensors are carried by parameter name (the scope a node's `id` makes
/// stable), after renaming prefixes by `rename`; a tensor the child has and the source lacks
/// keeps its initialization, and a source tensor that only grew along its input dimension
/// (the 1x1 conv after a cell's concatenation when a node was added) is carried into the
/// leading part with zeros after it, so the child starts as the function its source computed.
/// The run records which tensors were carried, extended and new.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct WarmStart {
    pub from: String,
    #[serde(default = "one")]
    pub budget: f64,
    /// `(source prefix, child prefix)` pairs, applied to source names first match first
    /// (a searched candidate op `cells.0.n7.e2.sep_conv_3x3` becoming edge `cells.0.n7.e1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rename: Vec<(String, String)>,
}

fn one() -> f64 {
    1.0
}

/// A file a searcher asks the host to write into `<run>/searcher/` (its pool, a plot).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Artifact {
    /// A plain file name (no directories).
    pub name: String,
    pub text: String,
}

/// What a searcher returns from [`Searcher::ask`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Proposal {
    pub candidates: Vec<Candidate>,
    /// The search is over (candidates, if any, are still evaluated first).
    pub done: bool,
    /// Files for `<run>/searcher/`, written before the candidates are evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Evaluated candidates the searcher names as its result (at their budget): the host copies
    /// each one's model description and trained weights into `<run>/gallery/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gallery: Vec<GalleryEntry>,
}

/// A model of the searcher's result.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GalleryEntry {
    pub id: String,
    pub budget: f64,
}

/// A trained architecture parameter: its shape and values (row-major).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ArchValues {
    pub shape: Vec<i64>,
    pub values: Vec<f64>,
}

/// An evaluated candidate, as the host tells it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub candidate: Candidate,
    /// Met every constraint; when false, only the cheap objectives were computed.
    pub valid: bool,
    /// Objective values by name.
    pub values: BTreeMap<String, f64>,
    /// The candidate's architecture parameters after its training (when its model declares
    /// any and it was trained), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arch_params: BTreeMap<String, ArchValues>,
}

/// A searcher: proposes candidates, learns from their evaluations.
pub trait Searcher: Send + 'static {
    /// The candidates of iteration `iteration` (from 0).
    fn ask(&mut self, space: &mut Space<'_, '_>, iteration: u32) -> anyhow::Result<Proposal>;
    /// The evaluations of the candidates of the last `ask`; returns metrics to log.
    fn tell(&mut self, evaluations: &[Evaluation]) -> anyhow::Result<serde_json::Value>;
    /// Everything needed to continue exactly after a restart (generator state included).
    fn state(&self) -> anyhow::Result<serde_json::Value>;
    /// Restores [`Searcher::state`].
    fn load_state(&mut self, state: serde_json::Value) -> anyhow::Result<()>;
}

/// Registration of a search space; submit with [`crate::register_search_space!`].
pub struct SearchSpaceRegistration {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub create: fn(config: &serde_json::Value) -> anyhow::Result<Box<dyn DiscreteSpace>>,
}
inventory::collect!(SearchSpaceRegistration);

/// Registration of a searcher; submit with [`crate::register_searcher!`].
pub struct SearcherRegistration {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub create: fn(config: &serde_json::Value) -> anyhow::Result<Box<dyn Searcher>>,
}
inventory::collect!(SearcherRegistration);

/// Registers a search space: `register_search_space!("name", "description", constructor_fn);`
#[macro_export]
macro_rules! register_search_space {
    ($name:expr, $description:expr, $create:expr) => {
        $crate::inventory::submit! {
            $crate::discrete::SearchSpaceRegistration { name: $name, version: env!("CARGO_PKG_VERSION"), description: $description, create: $create }
        }
    };
}

/// Registers a searcher: `register_searcher!("name", "description", constructor_fn);`
#[macro_export]
macro_rules! register_searcher {
    ($name:expr, $description:expr, $create:expr) => {
        $crate::inventory::submit! {
            $crate::discrete::SearcherRegistration { name: $name, version: env!("CARGO_PKG_VERSION"), description: $description, create: $create }
        }
    };
}

// ----- the boundary -----------------------------------------------------------------------

/// A search space across the boundary; architectures as JSON text.
#[sabi_trait]
pub trait DiscreteSpaceObj: Send {
    fn sample(&mut self, seed: u64) -> RResult<RString, RString>;
    fn mutate(&mut self, arch_json: RStr<'_>, seed: u64) -> RResult<RString, RString>;
    /// `parents_json` is a JSON array of architectures.
    fn crossover(&mut self, parents_json: RStr<'_>, seed: u64) -> RResult<RString, RString>;
    fn encode(&self, arch_json: RStr<'_>) -> RResult<RVec<f64>, RString>;
    fn arch_id(&self, arch_json: RStr<'_>) -> RResult<RString, RString>;
    /// The model description (YAML) of an architecture.
    fn model_desc(&self, arch_json: RStr<'_>, context: SearchContext) -> RResult<RString, RString>;
    /// A JSON array of every architecture, or `null` when there are more than `limit`.
    fn enumerate(&self, limit: u64) -> RResult<RString, RString>;
}
pub type DiscreteSpaceBox = DiscreteSpaceObj_TO<'static, RBox<()>>;

/// What the host offers a searcher during `ask`: the search space, behind the host's
/// constraint checks and its record of what was evaluated.
#[sabi_trait]
pub trait SpaceServices {
    fn sample(&mut self, seed: u64) -> RResult<RString, RString>;
    fn mutate(&mut self, arch_json: RStr<'_>, seed: u64) -> RResult<RString, RString>;
    fn crossover(&mut self, parents_json: RStr<'_>, seed: u64) -> RResult<RString, RString>;
    fn encode(&mut self, arch_json: RStr<'_>) -> RResult<RVec<f64>, RString>;
    /// [`ArchCheck`] as JSON. Errors once too many architectures in a row failed the
    /// constraints (the message names them).
    fn check(&mut self, arch_json: RStr<'_>) -> RResult<RString, RString>;
    /// A JSON array of every architecture of the space, or `null` when there are more than
    /// `limit`.
    fn enumerate(&mut self, limit: u64) -> RResult<RString, RString>;
    /// The experiment's objectives ([`ObjectiveInfo`] list, JSON).
    fn objectives(&self) -> RString;
}
pub type SpaceServicesMut<'a> = SpaceServices_TO<'a, RMut<'a, ()>>;

/// A searcher across the boundary; values as JSON text.
#[sabi_trait]
pub trait SearcherObj: Send {
    /// [`Proposal`] as JSON.
    fn ask(&mut self, space: SpaceServicesMut<'_>, iteration: u32) -> RResult<RString, RString>;
    /// `evaluations_json`: a JSON array of [`Evaluation`]; returns metrics (JSON object).
    fn tell(&mut self, evaluations_json: RStr<'_>) -> RResult<RString, RString>;
    fn state(&self) -> RResult<RString, RString>;
    fn load_state(&mut self, state_json: RStr<'_>) -> RResult<(), RString>;
}
pub type SearcherBox = SearcherObj_TO<'static, RBox<()>>;

fn host<T>(r: RResult<T, RString>) -> anyhow::Result<T> {
    match r {
        RResult::ROk(v) => Ok(v),
        RResult::RErr(e) => Err(anyhow::anyhow!("{e}")),
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> anyhow::Result<T> {
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// The search space as a searcher sees it (through the host). Seeds come from the searcher's
/// own generator.
pub struct Space<'s, 'a> {
    services: &'s mut SpaceServicesMut<'a>,
}

impl<'s, 'a> Space<'s, 'a> {
    pub fn sample(&mut self, rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        parse(host(self.services.sample(rng.next_u64()))?.as_str(), "sampled architecture")
    }
    pub fn mutate(&mut self, arch: &Arch, rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        let text = arch.to_string();
        parse(host(self.services.mutate(text.as_str().into(), rng.next_u64()))?.as_str(), "mutated architecture")
    }
    pub fn crossover(&mut self, parents: &[Arch], rng: &mut SplitMix64) -> anyhow::Result<Arch> {
        let text = serde_json::Value::Array(parents.to_vec()).to_string();
        parse(host(self.services.crossover(text.as_str().into(), rng.next_u64()))?.as_str(), "crossover child")
    }
    pub fn encode(&mut self, arch: &Arch) -> anyhow::Result<Vec<f64>> {
        let text = arch.to_string();
        Ok(host(self.services.encode(text.as_str().into()))?.into_vec())
    }
    /// Its id, whether it meets the constraints and whether it was seen.
    pub fn check(&mut self, arch: &Arch) -> anyhow::Result<ArchCheck> {
        let text = arch.to_string();
        parse(host(self.services.check(text.as_str().into()))?.as_str(), "architecture check")
    }
    /// Every architecture, when the space has at most `limit`.
    pub fn enumerate(&mut self, limit: usize) -> anyhow::Result<Option<Vec<Arch>>> {
        parse(host(self.services.enumerate(limit as u64))?.as_str(), "enumerated architectures")
    }
    pub fn objectives(&self) -> anyhow::Result<Vec<ObjectiveInfo>> {
        parse(self.services.objectives().as_str(), "objectives")
    }
    /// A valid architecture not seen before, by sampling at most `tries` times (`None` when
    /// none was found; the host errors first if the constraints reject everything).
    pub fn sample_new(&mut self, rng: &mut SplitMix64, tries: usize) -> anyhow::Result<Option<Candidate>> {
        for _ in 0..tries {
            let arch = self.sample(rng)?;
            let c = self.check(&arch)?;
            if c.valid && !c.seen {
                return Ok(Some(Candidate { arch, id: c.id, budget: 1.0, parents: Vec::new(), warm_start: None }));
            }
        }
        Ok(None)
    }
}

struct SpaceAdapter(Box<dyn DiscreteSpace>);

fn arch_of(text: RStr<'_>) -> anyhow::Result<Arch> {
    parse(text.as_str(), "architecture from the host")
}

impl DiscreteSpaceObj for SpaceAdapter {
    fn sample(&mut self, seed: u64) -> RResult<RString, RString> {
        guard(|| Ok(self.0.sample(&mut SplitMix64::new(seed))?.to_string().into()))
    }
    fn mutate(&mut self, arch_json: RStr<'_>, seed: u64) -> RResult<RString, RString> {
        guard(|| Ok(self.0.mutate(&arch_of(arch_json)?, &mut SplitMix64::new(seed))?.to_string().into()))
    }
    fn crossover(&mut self, parents_json: RStr<'_>, seed: u64) -> RResult<RString, RString> {
        guard(|| {
            let parents: Vec<Arch> = parse(parents_json.as_str(), "crossover parents")?;
            anyhow::ensure!(!parents.is_empty(), "crossover needs at least one parent");
            Ok(self.0.crossover(&parents, &mut SplitMix64::new(seed))?.to_string().into())
        })
    }
    fn encode(&self, arch_json: RStr<'_>) -> RResult<RVec<f64>, RString> {
        guard(|| Ok(self.0.encode(&arch_of(arch_json)?)?.into()))
    }
    fn arch_id(&self, arch_json: RStr<'_>) -> RResult<RString, RString> {
        guard(|| Ok(self.0.arch_id(&arch_of(arch_json)?)?.into()))
    }
    fn model_desc(&self, arch_json: RStr<'_>, context: SearchContext) -> RResult<RString, RString> {
        guard(|| {
            let desc = self.0.model_desc(&arch_of(arch_json)?, &context)?;
            desc.validate()?;
            Ok(desc.to_yaml().into())
        })
    }
    fn enumerate(&self, limit: u64) -> RResult<RString, RString> {
        guard(|| {
            Ok(match self.0.enumerate(limit as usize)? {
                Some(all) => serde_json::Value::Array(all).to_string().into(),
                None => "null".into(),
            })
        })
    }
}

struct SearcherAdapter(Box<dyn Searcher>);

impl SearcherObj for SearcherAdapter {
    fn ask(&mut self, mut space: SpaceServicesMut<'_>, iteration: u32) -> RResult<RString, RString> {
        guard(|| {
            let mut s = Space { services: &mut space };
            Ok(serde_json::to_string(&self.0.ask(&mut s, iteration)?)?.into())
        })
    }
    fn tell(&mut self, evaluations_json: RStr<'_>) -> RResult<RString, RString> {
        guard(|| {
            let evals: Vec<Evaluation> = parse(evaluations_json.as_str(), "evaluations from the host")?;
            Ok(self.0.tell(&evals)?.to_string().into())
        })
    }
    fn state(&self) -> RResult<RString, RString> {
        guard(|| Ok(self.0.state()?.to_string().into()))
    }
    fn load_state(&mut self, state_json: RStr<'_>) -> RResult<(), RString> {
        guard(|| self.0.load_state(parse(state_json.as_str(), "searcher state")?))
    }
}

pub(crate) extern "C" fn plugin_create_search_space(
    name: RStr<'_>,
    config_json: RStr<'_>,
) -> RResult<DiscreteSpaceBox, RString> {
    guard(|| {
        let reg = crate::component::lookup::<SearchSpaceRegistration>(name)?;
        let s = (reg.create)(&crate::component::parse_config(config_json)?)?;
        Ok(DiscreteSpaceObj_TO::from_value(SpaceAdapter(s), TD_Opaque))
    })
}

pub(crate) extern "C" fn plugin_create_searcher(
    name: RStr<'_>,
    config_json: RStr<'_>,
) -> RResult<SearcherBox, RString> {
    guard(|| {
        let reg = crate::component::lookup::<SearcherRegistration>(name)?;
        let s = (reg.create)(&crate::component::parse_config(config_json)?)?;
        Ok(SearcherObj_TO::from_value(SearcherAdapter(s), TD_Opaque))
    })
}

/// A host-side [`SpaceServices`] built from closures is in the host; this turns any
/// implementation into the boundary's trait object.
pub fn space_services<S: SpaceServices>(s: &mut S) -> SpaceServicesMut<'_> {
    SpaceServices_TO::from_ptr(RMut::new(s), TD_Opaque)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_stable_and_key_order_free() {
        let a = serde_json::json!({"b": [1, 2], "a": "x"});
        let b: super::Arch = serde_json::from_str(r#"{"a":"x","b":[1,2]}"#).unwrap();
        assert_eq!(super::stable_id(&a), super::stable_id(&b));
        // Pinned: a changed id function would orphan every cache and checkpoint. FNV-1a 64 of
        // `{"cells":5}`.
        assert_eq!(super::stable_id(&serde_json::json!({"cells": 5})), "a-cd0707e00a2d918f");
        assert_ne!(
            super::stable_id(&serde_json::json!({"cells": 5})),
            super::stable_id(&serde_json::json!({"cells": 6}))
        );
    }
}
