//! Outer-loop (discrete) search: the host's side of the searcher ask/tell loop. The host owns
//! the objectives, the (objective, architecture, budget) cache, the constraints, the record of
//! what was evaluated, the checkpoint and every output; searchers and search spaces are plugins.
pub mod config;
pub mod objectives;
pub mod plot;
pub mod ranks;
pub mod warm;

use crate::experiment::LoadedDataset;
use crate::plugins::{plugin_result, PluginRegistry, PluginSearcher, PluginSpace};
use crate::runlog::RunLog;
use abi_stable::std_types::{RResult, RStr, RString, RVec};
use anyhow::{bail, Context, Result};
use archai_model_desc::ModelDesc;
use archai_plugin_api::discrete::{
    space_services, ArchCheck, ArchValues, Candidate, Evaluation, ObjectiveInfo, Proposal, SpaceServices,
};
use archai_plugin_api::kit::pareto;
use archai_plugin_api::{ComponentKind, SearchContext};
use archai_runlog::schema::{self, DiscreteSummary, IterationRecord};
use config::{DiscreteExperiment, ObjectiveConfig, ObjectiveKind};
use objectives::Evaluator;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Objective values by (objective, architecture id, budget), mirrored to an append-only JSON
/// lines file that is synced after every value: a killed search loses at most the value being
/// computed.
pub struct Cache {
    path: PathBuf,
    values: BTreeMap<String, f64>,
}

#[derive(Serialize, Deserialize)]
struct CacheLine {
    objective: String,
    id: String,
    /// Absent for objectives that do not depend on the budget.
    budget: Option<f64>,
    value: f64,
}

fn cache_key(objective: &str, id: &str, budget: Option<f64>) -> String {
    match budget {
        Some(b) => format!("{objective}|{id}|{b}"),
        None => format!("{objective}|{id}|-"),
    }
}

impl Cache {
    /// Opens (and reads) the cache file; a torn last line from a kill is ignored.
    pub fn open(path: &Path) -> Result<Cache> {
        let mut values = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                if let Ok(l) = serde_json::from_str::<CacheLine>(line) {
                    values.insert(cache_key(&l.objective, &l.id, l.budget), l.value);
                }
            }
        }
        Ok(Cache { path: path.to_path_buf(), values })
    }

    pub fn get(&self, objective: &str, id: &str, budget: Option<f64>) -> Option<f64> {
        self.values.get(&cache_key(objective, id, budget)).copied()
    }

    pub fn put(&mut self, objective: &str, id: &str, budget: Option<f64>, value: f64) -> Result<()> {
        let line = serde_json::to_string(&CacheLine { objective: objective.into(), id: id.into(), budget, value })?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        // A torn line from an earlier kill must not swallow this one.
        writeln!(f, "\n{line}").with_context(|| format!("writing {}", self.path.display()))?;
        f.sync_data()?;
        self.values.insert(cache_key(objective, id, budget), value);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

const ARCH_PARAMS_FILE: &str = "arch_params.json";

/// Writes the trained architecture parameters of a candidate into its directory.
pub fn write_arch_params(store: &crate::params::ParamStore, dir: &Path) -> Result<()> {
    let mut out = BTreeMap::new();
    for (name, t) in store.named_arch() {
        let flat = t.detach().to_kind(tch::Kind::Double).to_device(tch::Device::Cpu).flatten(0, -1);
        let values: Vec<f64> = Vec::<f64>::try_from(&flat).context("reading an architecture parameter")?;
        out.insert(name, ArchValues { shape: t.size(), values });
    }
    let path = dir.join(ARCH_PARAMS_FILE);
    std::fs::write(&path, serde_json::to_string(&out)?).with_context(|| format!("writing {}", path.display()))
}

/// The trained architecture parameters of a candidate evaluated at `budget` (empty when it has
/// none or was not trained).
fn read_arch_params(run_dir: &Path, id: &str, budget: f64) -> Result<BTreeMap<String, ArchValues>> {
    let path = eval_dir(run_dir, id, budget).join(ARCH_PARAMS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("reading {}", path.display())),
        Err(_) => Ok(BTreeMap::new()),
    }
}

/// The checkpoint and renames a candidate's warm start resolves to; its source must have been
/// trained at that budget in an earlier iteration.
fn warm_source(run_dir: &Path, c: &Candidate, evaluated: &BTreeSet<String>) -> Result<Option<warm::WarmSource>> {
    let Some(w) = &c.warm_start else { return Ok(None) };
    let checkpoint = eval_dir(run_dir, &w.from, w.budget).join("checkpoint.pt");
    anyhow::ensure!(
        evaluated.contains(&w.from) && checkpoint.is_file(),
        "candidate {} asks for a warm start from {} at budget {}, which was not trained in an earlier iteration \
         (no {}); a searcher can warm-start only from candidates it was told about",
        c.id,
        w.from,
        w.budget,
        checkpoint.display()
    );
    Ok(Some(warm::WarmSource { checkpoint, rename: w.rename.clone() }))
}

/// Writes a searcher's artifacts into `<run>/searcher/` (plain file names only).
fn write_artifacts(run_dir: &Path, artifacts: &[archai_plugin_api::discrete::Artifact]) -> Result<()> {
    if artifacts.is_empty() {
        return Ok(());
    }
    let dir = run_dir.join("searcher");
    std::fs::create_dir_all(&dir)?;
    for a in artifacts {
        let plain = !a.name.is_empty()
            && !a.name.starts_with('.')
            && a.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        anyhow::ensure!(plain, "the searcher asked to write `{}`, which is not a plain file name", a.name);
        let tmp = dir.join(format!(".{}.tmp", a.name));
        std::fs::write(&tmp, &a.text)?;
        std::fs::rename(&tmp, dir.join(&a.name)).with_context(|| format!("writing searcher/{}", a.name))?;
    }
    Ok(())
}

/// An evaluated candidate and the iteration it was proposed in.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct HistoryRow {
    pub iteration: u32,
    pub evaluation: Evaluation,
}

/// What a resumed search continues from (written after every iteration).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
struct SearchState {
    next_iteration: u32,
    searcher: serde_json::Value,
    history: Vec<HistoryRow>,
    /// Hypervolume reference in minimization form, fixed once set.
    reference: Option<Vec<f64>>,
    any_valid: bool,
    done: bool,
    /// The searcher's latest result models.
    #[serde(default)]
    gallery: Vec<archai_plugin_api::discrete::GalleryEntry>,
}

const STATE_FILE: &str = "search_checkpoint.json";
const CACHE_FILE: &str = "cache.jsonl";

/// Everything an evaluation needs.
struct Ctx<'a> {
    objectives: &'a [ObjectiveConfig],
    evaluator: Evaluator<'a>,
    search_context: SearchContext,
    run_dir: &'a Path,
}

fn space_call<T>(space: &PluginSpace, r: RResult<T, RString>) -> Result<T> {
    Ok(plugin_result(r, &space.plugin, ComponentKind::SearchSpace, &space.name)?)
}

fn model_desc(space: &PluginSpace, arch: &serde_json::Value, ctx: &SearchContext) -> Result<ModelDesc> {
    let text = arch.to_string();
    let yaml = space_call(space, space.inner.model_desc(RStr::from(text.as_str()), ctx.clone()))?;
    Ok(ModelDesc::from_yaml(yaml.as_str(), &format!("search space `{}`", space.name))?)
}

fn arch_id(space: &PluginSpace, arch: &serde_json::Value) -> Result<String> {
    let text = arch.to_string();
    Ok(space_call(space, space.inner.arch_id(RStr::from(text.as_str())))?.into_string())
}

/// The cheap objective values of `id` (from the cache, else computed and cached); returns how
/// many were computed.
fn cheap_values(
    ctx: &Ctx,
    cache: &mut Cache,
    id: &str,
    desc: &ModelDesc,
    kinds: &[ObjectiveKind],
    out: &mut BTreeMap<String, f64>,
) -> Result<u64> {
    let missing: Vec<ObjectiveKind> =
        kinds.iter().copied().filter(|k| cache.get(k.name(), id, None).is_none()).collect();
    if !missing.is_empty() {
        for (k, v) in ctx.evaluator.cheap(desc, &missing)? {
            cache.put(k.name(), id, None, v)?;
        }
    }
    for k in kinds {
        out.insert(k.name().to_string(), cache.get(k.name(), id, None).expect("computed above"));
    }
    Ok(missing.len() as u64)
}

fn constraint_failures(objectives: &[ObjectiveConfig], values: &BTreeMap<String, f64>) -> Vec<(String, f64, [f64; 2])> {
    objectives
        .iter()
        .filter_map(|o| {
            let [lo, hi] = o.constraint?;
            let v = *values.get(o.name.name())?;
            (!(lo..=hi).contains(&v)).then(|| (o.name.name().to_string(), v, [lo, hi]))
        })
        .collect()
}

/// The host's side of `ask`: the search space behind the constraints and the record of what was
/// seen.
struct HostSpace<'a, 'c> {
    space: &'a mut PluginSpace,
    ctx: &'a Ctx<'c>,
    cache: &'a mut Cache,
    descs: &'a mut BTreeMap<String, ModelDesc>,
    evaluated: &'a BTreeSet<String>,
    proposed: BTreeSet<String>,
    any_valid: bool,
    consecutive_invalid: usize,
    max_invalid: usize,
    /// Per constraint: failures and the value closest to its range.
    failures: BTreeMap<String, (usize, f64, [f64; 2])>,
    computed: u64,
}

impl HostSpace<'_, '_> {
    fn check_arch(&mut self, arch_json: &str) -> Result<ArchCheck> {
        let arch: serde_json::Value = serde_json::from_str(arch_json)?;
        let id = arch_id(&*self.space, &arch)?;
        if !self.descs.contains_key(&id) {
            let d = model_desc(&*self.space, &arch, &self.ctx.search_context)?;
            self.descs.insert(id.clone(), d);
        }
        // Every cheap objective: the constraints need some, model-based searchers all.
        let kinds: Vec<ObjectiveKind> = self.ctx.objectives.iter().filter(|o| o.name.cheap()).map(|o| o.name).collect();
        let mut values = BTreeMap::new();
        self.computed += cheap_values(self.ctx, self.cache, &id, &self.descs[&id], &kinds, &mut values)?;
        let failed = constraint_failures(self.ctx.objectives, &values);
        let valid = failed.is_empty();
        for (name, v, range) in failed {
            let distance = |x: f64| if x < range[0] { range[0] - x } else { x - range[1] };
            let e = self.failures.entry(name).or_insert((0, v, range));
            e.0 += 1;
            if distance(v) < distance(e.1) {
                e.1 = v;
            }
        }
        if valid {
            self.any_valid = true;
            self.consecutive_invalid = 0;
        } else {
            self.consecutive_invalid += 1;
            if !self.any_valid && self.consecutive_invalid >= self.max_invalid {
                let why: Vec<String> = self
                    .failures
                    .iter()
                    .map(|(n, (count, closest, [lo, hi]))| {
                        format!("{n} in [{lo}, {hi}] failed {count} times (closest value {closest})")
                    })
                    .collect();
                bail!(
                    "no architecture met the constraints in {} tries: {}; widen the constraints or the search space",
                    self.consecutive_invalid,
                    why.join("; ")
                );
            }
        }
        let seen = self.evaluated.contains(&id) || self.proposed.contains(&id);
        if valid && !seen {
            self.proposed.insert(id.clone());
        }
        Ok(ArchCheck { id, valid, seen, values })
    }
}

impl SpaceServices for HostSpace<'_, '_> {
    fn sample(&mut self, seed: u64) -> RResult<RString, RString> {
        self.space.inner.sample(seed)
    }
    fn mutate(&mut self, arch_json: RStr<'_>, seed: u64) -> RResult<RString, RString> {
        self.space.inner.mutate(arch_json, seed)
    }
    fn crossover(&mut self, parents_json: RStr<'_>, seed: u64) -> RResult<RString, RString> {
        self.space.inner.crossover(parents_json, seed)
    }
    fn encode(&mut self, arch_json: RStr<'_>) -> RResult<RVec<f64>, RString> {
        self.space.inner.encode(arch_json)
    }
    fn check(&mut self, arch_json: RStr<'_>) -> RResult<RString, RString> {
        crate::plugins::host_service("check", || {
            let c = self.check_arch(arch_json.as_str()).map_err(|e| crate::error_text::ErrorText(&e).to_string())?;
            serde_json::to_string(&c).map(RString::from).map_err(|e| e.to_string())
        })
    }
    fn enumerate(&mut self, limit: u64) -> RResult<RString, RString> {
        self.space.inner.enumerate(limit)
    }
    fn objectives(&self) -> RString {
        serde_json::to_string(&objective_infos(self.ctx.objectives)).expect("serializes").into()
    }
}

fn objective_infos(objectives: &[ObjectiveConfig]) -> Vec<ObjectiveInfo> {
    objectives
        .iter()
        .map(|o| ObjectiveInfo {
            name: o.name.name().to_string(),
            higher_is_better: o.higher_is_better(),
            cheap: o.name.cheap(),
        })
        .collect()
}

/// Minimization-form points of the valid rows that have every objective; with their indices.
fn points(rows: &[&HistoryRow], objectives: &[ObjectiveConfig]) -> (Vec<usize>, Vec<Vec<f64>>) {
    let mut idx = Vec::new();
    let mut pts = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if !r.evaluation.valid {
            continue;
        }
        let p: Option<Vec<f64>> = objectives
            .iter()
            .map(|o| {
                let v = *r.evaluation.values.get(o.name.name())?;
                v.is_finite().then_some(if o.higher_is_better() { -v } else { v })
            })
            .collect();
        if let Some(p) = p {
            idx.push(i);
            pts.push(p);
        }
    }
    (idx, pts)
}

/// Indices (into `rows`) of the Pareto front.
pub fn front_of(rows: &[&HistoryRow], objectives: &[ObjectiveConfig]) -> Vec<usize> {
    let (idx, pts) = points(rows, objectives);
    pareto::frontier(&pts).into_iter().map(|k| idx[k]).collect()
}

/// The reference point: the worst value of each objective pushed out by 10% of its range.
fn default_reference(pts: &[Vec<f64>]) -> Vec<f64> {
    let d = pts[0].len();
    (0..d)
        .map(|j| {
            let worst = pts.iter().map(|p| p[j]).fold(f64::NEG_INFINITY, f64::max);
            let best = pts.iter().map(|p| p[j]).fold(f64::INFINITY, f64::min);
            let span = (worst - best).abs();
            worst + if span > 0.0 { 0.1 * span } else { 0.1 * worst.abs().max(1e-9) }
        })
        .collect()
}

fn write_state_csv(
    path: &Path,
    rows: &[&HistoryRow],
    objectives: &[ObjectiveConfig],
    front: &BTreeSet<usize>,
) -> Result<()> {
    let mut out = String::from("iteration,id,budget,valid");
    for o in objectives {
        out.push(',');
        out.push_str(o.name.name());
    }
    out.push_str(",parents,is_pareto,arch\n");
    for (i, r) in rows.iter().enumerate() {
        let e = &r.evaluation;
        out.push_str(&format!("{},{},{},{}", r.iteration, e.candidate.id, e.candidate.budget, e.valid));
        for o in objectives {
            out.push(',');
            if let Some(v) = e.values.get(o.name.name()) {
                out.push_str(&v.to_string());
            }
        }
        // The architecture as JSON, quoted for CSV.
        let arch = e.candidate.arch.to_string().replace('"', "\"\"");
        out.push_str(&format!(",{},{},\"{arch}\"\n", e.candidate.parents.join(";"), front.contains(&i)));
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

fn save_state(run_dir: &Path, state: &SearchState) -> Result<()> {
    let path = run_dir.join(STATE_FILE);
    let tmp = run_dir.join(format!(".{STATE_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string(state)?.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// Runs (or, with `resume`, continues) the search of `cfg` in `run_dir`.
pub fn run(
    cfg: &DiscreteExperiment,
    reg: &PluginRegistry,
    run_dir: &Path,
    resume: bool,
    workers: &Workers,
) -> Result<()> {
    let t0 = Instant::now();
    let mut log = RunLog::open(run_dir)?;
    log.begin_attempt()?;
    let result = search(cfg, reg, run_dir, resume, workers, &mut log);
    log.end_attempt(&result, "search", t0.elapsed().as_secs_f64())?;
    result
}

fn search(
    cfg: &DiscreteExperiment,
    reg: &PluginRegistry,
    run_dir: &Path,
    resume: bool,
    workers: &Workers,
    log: &mut RunLog,
) -> Result<()> {
    let s = &cfg.search;
    s.validate()?;
    let device = crate::experiment::device_of(&cfg.common.device)?;
    if cfg.common.threads > 0 {
        tch::set_num_threads(cfg.common.threads);
    }
    let mut space = reg.create_search_space(&s.space.name, &s.space.config)?;
    let mut searcher: PluginSearcher = reg.create_searcher(&s.searcher.name, &s.searcher.config)?;
    let needs_data = s.objectives.iter().any(|o| !o.name.cheap());
    let data: Option<LoadedDataset> =
        if needs_data { Some(crate::experiment::load_dataset(reg, &cfg.dataset)?) } else { None };
    let environment = crate::environment::collect(reg, device, BTreeMap::new())?;
    log.tree.set(
        "run",
        schema::RunInfo {
            experiment: cfg.common.experiment_name.clone(),
            seed: cfg.common.seed,
            device: cfg.common.device.clone(),
            device_used: format!("{device:?}"),
            threads: tch::get_num_threads() as i64,
            environment: Some(environment),
        },
    )?;
    let ctx = Ctx {
        objectives: &s.objectives,
        evaluator: Evaluator {
            reg,
            latency: s.latency.clone(),
            memory_batch: s.memory.batch,
            training: s.training.as_ref(),
            data: data.as_ref(),
            device,
            seed: cfg.common.seed,
            channels_last: cfg.common.channels_last,
        },
        search_context: SearchContext {
            channels: cfg.dataset.channels,
            image_size: cfg.dataset.image_size,
            num_classes: cfg.dataset.num_classes,
            seed: cfg.common.seed,
            epochs: 0,
            steps_per_epoch: 0,
            val_batch_size: 0,
        },
        run_dir,
    };
    let searcher_call = |r: RResult<RString, RString>, s: &PluginSearcher| -> Result<String> {
        Ok(plugin_result(r, &s.plugin, ComponentKind::Searcher, &s.name)?.into_string())
    };
    let mut cache = Cache::open(&run_dir.join(CACHE_FILE))?;
    let state_path = run_dir.join(STATE_FILE);
    let mut state = if resume && state_path.is_file() {
        let text = std::fs::read_to_string(&state_path)?;
        let st: SearchState =
            serde_json::from_str(&text).with_context(|| format!("reading {}", state_path.display()))?;
        let json = st.searcher.to_string();
        plugin_result(
            searcher.inner.load_state(RStr::from(json.as_str())),
            &searcher.plugin,
            ComponentKind::Searcher,
            &searcher.name,
        )?;
        tracing::info!(
            "search: resumed after iteration {} ({} evaluations, {} cached values)",
            st.next_iteration,
            st.history.len(),
            cache.len()
        );
        st
    } else {
        SearchState::default()
    };
    let mut descs: BTreeMap<String, ModelDesc> = BTreeMap::new();
    let raster = crate::png::Rasterizer::new();
    if !raster.has_fonts() {
        tracing::warn!("no system fonts found: the PNG plots will have no text (install fonts-dejavu-core)");
    }
    let names: Vec<String> = s.objectives.iter().map(|o| o.name.name().to_string()).collect();
    let mut it = state.next_iteration;
    while !state.done && it < s.max_iterations {
        let t_iter = Instant::now();
        let evaluated: BTreeSet<String> = state.history.iter().map(|r| r.evaluation.candidate.id.clone()).collect();
        let mut host = HostSpace {
            space: &mut space,
            ctx: &ctx,
            cache: &mut cache,
            descs: &mut descs,
            evaluated: &evaluated,
            proposed: BTreeSet::new(),
            any_valid: state.any_valid,
            consecutive_invalid: 0,
            max_invalid: s.max_invalid_tries,
            failures: BTreeMap::new(),
            computed: 0,
        };
        let proposal_json = searcher_call(searcher.inner.ask(space_services(&mut host), it), &searcher)?;
        let (any_valid, mut computed) = (host.any_valid, host.computed);
        state.any_valid = any_valid;
        let proposal: Proposal = serde_json::from_str(&proposal_json)
            .with_context(|| format!("searcher `{}` returned a proposal that is not one", searcher.name))?;
        write_artifacts(run_dir, &proposal.artifacts)?;
        let mut evaluations = Vec::new();
        let mut jobs = Vec::new();
        for (k, c) in proposal.candidates.iter().enumerate() {
            if let Some(signal) = crate::interrupt::requested() {
                bail!("interrupted by {signal} in iteration {it}; continue with --resume");
            }
            let warm = warm_source(run_dir, c, &evaluated)?;
            let (e, n) = evaluate_cheap(&ctx, &space, &mut cache, &mut descs, k, c, warm, &mut jobs)?;
            computed += n;
            evaluations.push(e);
        }
        let values = run_jobs(&ctx, &descs, &mut cache, &jobs, workers)?;
        computed += jobs.len() as u64;
        for (j, v) in jobs.iter().zip(values) {
            evaluations[j.candidate].values.insert(j.objective.name().to_string(), v);
        }
        for e in evaluations.iter_mut().filter(|e| e.valid) {
            if descs.get(&e.candidate.id).is_some_and(|d| !d.arch_params.is_empty()) {
                e.arch_params = read_arch_params(run_dir, &e.candidate.id, e.candidate.budget)?;
            }
        }
        if !state.any_valid && proposal.candidates.is_empty() && state.history.is_empty() && proposal.done {
            bail!(
                "the searcher proposed no architecture: none met the constraints ({})",
                constraint_text(&s.objectives)
            );
        }
        let evals_json = serde_json::to_string(&evaluations)?;
        let told = searcher_call(searcher.inner.tell(RStr::from(evals_json.as_str())), &searcher)?;
        let told: serde_json::Value = serde_json::from_str(&told).unwrap_or(serde_json::Value::Null);
        state.history.extend(evaluations.iter().map(|e| HistoryRow { iteration: it, evaluation: e.clone() }));
        state.any_valid |= evaluations.iter().any(|e| e.valid);

        // Outputs of the iteration.
        let rows: Vec<&HistoryRow> = state.history.iter().collect();
        let (idx, pts) = points(&rows, &s.objectives);
        let on_front = pareto::frontier(&pts);
        let front: Vec<usize> = on_front.iter().map(|&k| idx[k]).collect();
        if state.reference.is_none() && !pts.is_empty() {
            state.reference = Some(match &s.hypervolume_reference {
                Some(r) => s
                    .objectives
                    .iter()
                    .map(|o| {
                        let v = r[o.name.name()];
                        if o.higher_is_better() {
                            -v
                        } else {
                            v
                        }
                    })
                    .collect(),
                None => default_reference(&pts),
            });
        }
        let front_pts: Vec<Vec<f64>> = on_front.iter().map(|&k| pts[k].clone()).collect();
        let hv = state.reference.as_ref().map_or(0.0, |r| pareto::hypervolume(&front_pts, r));
        let front_set: BTreeSet<usize> = front.iter().copied().collect();
        write_state_csv(&run_dir.join(format!("search_state_{it}.csv")), &rows, &s.objectives, &front_set)?;
        let models = run_dir.join(format!("pareto_models_iter_{it}"));
        std::fs::create_dir_all(&models)?;
        for &i in &front {
            let e = &rows[i].evaluation;
            let id = &e.candidate.id;
            if !descs.contains_key(id) {
                descs.insert(id.clone(), model_desc(&space, &e.candidate.arch, &ctx.search_context)?);
            }
            std::fs::write(models.join(format!("{id}.yaml")), descs[id].to_yaml())?;
            let trained = eval_dir(run_dir, id, e.candidate.budget).join("checkpoint.pt");
            if trained.is_file() {
                std::fs::copy(&trained, models.join(format!("{id}_weights.pt")))?;
            }
        }
        plot::write_pareto_plots(run_dir, &rows, &s.objectives, &raster)?;
        if !proposal.gallery.is_empty() {
            write_gallery(run_dir, &proposal.gallery, &mut descs, &space, &state.history, &ctx.search_context)?;
            state.gallery = proposal.gallery.clone();
        }
        let record = IterationRecord {
            proposed: proposal.candidates.len() as u64,
            valid: evaluations.iter().filter(|e| e.valid).count() as u64,
            computed,
            front_size: front.len() as u64,
            hypervolume: hv,
            searcher: (!told.is_null()).then(|| yaml_serde::to_value(&told)).transpose()?,
            duration_s: t_iter.elapsed().as_secs_f64(),
        };
        tracing::info!(
            "search iteration {it}: {} proposed, {} valid, {} values computed, front {} models, hypervolume {:.6e} ({:.1}s)",
            record.proposed,
            record.valid,
            record.computed,
            record.front_size,
            hv,
            record.duration_s
        );
        log.tree.set(&format!("discrete/iterations/{it}"), record)?;
        log.scalar("discrete/hypervolume", hv, it as usize);
        log.scalar("discrete/front_size", front.len() as f64, it as usize);
        state.searcher = serde_json::from_str(&searcher_call(searcher.inner.state(), &searcher)?)?;
        state.next_iteration = it + 1;
        state.done = proposal.done;
        save_state(run_dir, &state)?;
        log.flush()?;
        it += 1;
    }
    let rows: Vec<&HistoryRow> = state.history.iter().collect();
    let front: Vec<String> =
        front_of(&rows, &s.objectives).into_iter().map(|i| rows[i].evaluation.candidate.id.clone()).collect();
    let last = state.next_iteration.saturating_sub(1);
    let hv = log.tree.get(&format!("discrete/iterations/{last}/hypervolume")).and_then(|v| v.as_f64()).unwrap_or(0.0);
    let reference = state.reference.clone().unwrap_or_default();
    let summary = DiscreteSummary {
        iterations: state.next_iteration as u64,
        evaluations: state.history.len() as u64,
        front,
        hypervolume: hv,
        reference: s
            .objectives
            .iter()
            .zip(&reference)
            .map(|(o, r)| (o.name.name().to_string(), if o.higher_is_better() { -r } else { *r }))
            .collect(),
        state_csv: format!("search_state_{last}.csv"),
        gallery: state.gallery.iter().map(|g| g.id.clone()).collect(),
    };
    tracing::info!(
        "search: {} iterations, {} evaluations, final front of {} models ({}), hypervolume {:.6e}",
        summary.iterations,
        summary.evaluations,
        summary.front.len(),
        names.join(" x "),
        hv
    );
    log.tree.set("discrete/summary", summary)?;
    Ok(())
}

fn constraint_text(objectives: &[ObjectiveConfig]) -> String {
    objectives
        .iter()
        .filter_map(|o| o.constraint.map(|[lo, hi]| format!("{} in [{lo}, {hi}]", o.name.name())))
        .collect::<Vec<_>>()
        .join(", ")
}

fn eval_dir(run_dir: &Path, id: &str, budget: f64) -> PathBuf {
    run_dir.join("evals").join(format!("{id}-b{budget}"))
}

/// One expensive value to compute: (candidate index, objective, budget key).
struct ExpensiveJob {
    candidate: usize,
    objective: ObjectiveKind,
    id: String,
    budget: f64,
    warm: Option<warm::WarmSource>,
}

/// Replaces `<run>/gallery/` with the searcher's result models: `<id>.yaml` and, when trained,
/// `<id>_weights.pt` (the checkpoint of its training at its budget).
fn write_gallery(
    run_dir: &Path,
    gallery: &[archai_plugin_api::discrete::GalleryEntry],
    descs: &mut BTreeMap<String, ModelDesc>,
    space: &PluginSpace,
    history: &[HistoryRow],
    ctx: &SearchContext,
) -> Result<()> {
    let dir = run_dir.join("gallery");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for g in gallery {
        let row = history
            .iter()
            .find(|r| r.evaluation.candidate.id == g.id)
            .with_context(|| format!("the searcher's gallery names {}, which was never evaluated", g.id))?;
        if !descs.contains_key(&g.id) {
            descs.insert(g.id.clone(), model_desc(space, &row.evaluation.candidate.arch, ctx)?);
        }
        std::fs::write(dir.join(format!("{}.yaml", g.id)), descs[&g.id].to_yaml())?;
        let trained = eval_dir(run_dir, &g.id, g.budget).join("checkpoint.pt");
        if trained.is_file() {
            std::fs::copy(&trained, dir.join(format!("{}_weights.pt", g.id)))?;
        }
    }
    Ok(())
}

/// The cheap objectives and the constraints of one candidate; expensive values already cached
/// are filled in, the missing ones are returned as jobs.
#[allow(clippy::too_many_arguments)]
fn evaluate_cheap(
    ctx: &Ctx,
    space: &PluginSpace,
    cache: &mut Cache,
    descs: &mut BTreeMap<String, ModelDesc>,
    index: usize,
    c: &Candidate,
    warm: Option<warm::WarmSource>,
    jobs: &mut Vec<ExpensiveJob>,
) -> Result<(Evaluation, u64)> {
    let id = c.id.clone();
    anyhow::ensure!(
        arch_id(space, &c.arch)? == id,
        "the searcher proposed {id} with an architecture whose id is different; searchers must keep the ids the host gave"
    );
    if !descs.contains_key(&id) {
        descs.insert(id.clone(), model_desc(space, &c.arch, &ctx.search_context)?);
    }
    let desc = &descs[&id];
    let mut values = BTreeMap::new();
    let cheap: Vec<ObjectiveKind> = ctx.objectives.iter().filter(|o| o.name.cheap()).map(|o| o.name).collect();
    let computed = cheap_values(ctx, cache, &id, desc, &cheap, &mut values)?;
    let valid = constraint_failures(ctx.objectives, &values).is_empty();
    if valid {
        for o in ctx.objectives.iter().filter(|o| !o.name.cheap()) {
            let budget = o.name.budgeted().then_some(c.budget);
            match cache.get(o.name.name(), &id, budget) {
                Some(v) => {
                    values.insert(o.name.name().to_string(), v);
                }
                None => jobs.push(ExpensiveJob {
                    candidate: index,
                    objective: o.name,
                    id: id.clone(),
                    budget: c.budget,
                    warm: warm.clone(),
                }),
            }
        }
    }
    Ok((Evaluation { candidate: c.clone(), valid, values, arch_params: Default::default() }, computed))
}

/// How expensive values are computed: in this process, or by `jobs` worker processes
/// (`archai search-eval`), the CPU threads split between them, and by the other ranks of a
/// launched search (`archai launch --nproc N -- search ...`), which serve the same worker
/// interface (a model description, a budget and a directory in; result.json out).
#[derive(Debug, Clone)]
pub struct Workers {
    pub jobs: usize,
    pub plugin_dirs: Vec<PathBuf>,
    /// Threads per worker.
    pub threads: usize,
    /// The other ranks of a launched search, one candidate at a time each.
    pub remote: Vec<ranks::Remote>,
}

/// What a worker writes into its directory.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub struct WorkerResult {
    pub val_top1: f64,
}

/// One candidate's training as an `archai search-eval` process.
pub(crate) fn eval_command(
    exe: &Path,
    plugin_dirs: &[PathBuf],
    job: &ranks::EvalJob,
    threads: usize,
) -> Result<std::process::Command> {
    let mut cmd = std::process::Command::new(exe);
    for d in plugin_dirs {
        cmd.arg("--plugin-dir").arg(d);
    }
    cmd.arg("search-eval")
        .arg(&job.config)
        .arg("--desc")
        .arg(&job.desc)
        .arg("--budget")
        .arg(job.budget.to_string())
        .arg("--out")
        .arg(&job.out)
        .arg("--threads")
        .arg(threads.to_string())
        .env("RAYON_NUM_THREADS", threads.to_string())
        .stdout(std::fs::File::create(job.out.join("worker.txt"))?)
        .stderr(std::fs::File::create(job.out.join("worker.err.txt"))?);
    // A candidate's training is one process even when the search is a rank of a launched job.
    archai_dist::outside_the_job(&mut cmd);
    if let Some(w) = &job.warm_start {
        cmd.arg("--warm-start").arg(w);
    }
    crate::commands::compare::kill_with_parent(&mut cmd);
    Ok(cmd)
}

/// The last non-empty line of a worker's error output: what to show when it failed.
pub(crate) fn last_error_line(dir: &Path) -> String {
    crate::commands::compare::last_line(&dir.join("worker.err.txt"))
}

/// Where a job of the search runs.
enum Running {
    Local(std::process::Child),
    Remote { remote: usize, seq: u64 },
}

/// Computes the jobs' values and caches each as it arrives; returns them by job.
fn run_jobs(
    ctx: &Ctx,
    descs: &BTreeMap<String, ModelDesc>,
    cache: &mut Cache,
    jobs: &[ExpensiveJob],
    workers: &Workers,
) -> Result<Vec<f64>> {
    let mut out = vec![f64::NAN; jobs.len()];
    if workers.jobs <= 1 && workers.remote.is_empty() {
        for (k, j) in jobs.iter().enumerate() {
            let dir = eval_dir(ctx.run_dir, &j.id, j.budget);
            let v = ctx.evaluator.val_top1(&descs[&j.id], j.budget, &dir, j.warm.as_ref())?;
            cache.put(j.objective.name(), &j.id, j.objective.budgeted().then_some(j.budget), v)?;
            out[k] = v;
        }
        return Ok(out);
    }
    let exe = crate::commands::compare::self_exe()?;
    let config = std::path::absolute(ctx.run_dir.join("config_used.yaml"))?;
    let mut next = 0;
    let mut running: Vec<(usize, Running, PathBuf)> = Vec::new();
    let mut remote_busy = vec![false; workers.remote.len()];
    while next < jobs.len() || !running.is_empty() {
        while next < jobs.len() {
            let local = running.iter().filter(|(_, r, _)| matches!(r, Running::Local(_))).count();
            let idle = remote_busy.iter().position(|busy| !busy);
            if local >= workers.jobs && idle.is_none() {
                break;
            }
            let j = &jobs[next];
            let dir = std::path::absolute(eval_dir(ctx.run_dir, &j.id, j.budget))?;
            std::fs::create_dir_all(&dir)?;
            let desc = dir.join("model_desc.yaml");
            std::fs::write(&desc, descs[&j.id].to_yaml())?;
            let _ = std::fs::remove_file(dir.join("result.json"));
            let warm_start = match &j.warm {
                Some(w) => {
                    let path = dir.join("warm_start.json");
                    std::fs::write(&path, serde_json::to_string(w)?)?;
                    Some(path)
                }
                None => None,
            };
            let job = ranks::EvalJob { config: config.clone(), desc, budget: j.budget, out: dir.clone(), warm_start };
            // The other ranks first: this rank also runs the searcher.
            let run = match idle {
                Some(r) => {
                    remote_busy[r] = true;
                    Running::Remote { remote: r, seq: workers.remote[r].submit(&job)? }
                }
                None => Running::Local(
                    eval_command(&exe, &workers.plugin_dirs, &job, workers.threads)?
                        .spawn()
                        .context("starting a search-eval worker")?,
                ),
            };
            running.push((next, run, dir));
            next += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut still = Vec::new();
        for (k, mut run, dir) in running {
            let outcome = match &mut run {
                Running::Local(child) => child.try_wait()?.map(|status| {
                    if status.success() {
                        Ok(())
                    } else {
                        Err(format!("{status}: {}", last_error_line(&dir)))
                    }
                }),
                Running::Remote { remote, seq } => workers.remote[*remote].done(*seq)?,
            };
            let Some(outcome) = outcome else {
                still.push((k, run, dir));
                continue;
            };
            if let Running::Remote { remote, .. } = run {
                remote_busy[remote] = false;
            }
            let j = &jobs[k];
            let result = std::fs::read_to_string(dir.join("result.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<WorkerResult>(&t).ok());
            let r = match (outcome, result) {
                (Ok(()), Some(r)) => r,
                (Ok(()), None) => {
                    bail!("evaluating {} at budget {} left no result.json in {}", j.id, j.budget, dir.display())
                }
                (Err(e), _) => bail!("evaluating {} at budget {} failed ({e})", j.id, j.budget),
            };
            cache.put(j.objective.name(), &j.id, j.objective.budgeted().then_some(j.budget), r.val_top1)?;
            out[k] = r.val_top1;
        }
        running = still;
    }
    Ok(out)
}
