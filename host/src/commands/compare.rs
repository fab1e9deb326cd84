//! `archai compare`: every (experiment × seed) of a comparison as its own `archai run` process,
//! under one directory, resumable, then `archai report` on the result.
//!
//! Under `archai launch --nproc N` (or any launcher that sets torchrun's variables) the runs are
//! spread over the N ranks: each rank takes every N-th unfinished run, rank 0 then waits for the
//! others' reports in `<out>/ranks/` and writes the comparison's report. The ranks must see the
//! same comparison directory (one machine, or a shared file system).
use crate::error_text::ErrorText;
use crate::report::collect::{Manifest, MANIFEST};
use anyhow::{bail, Context, Result};
use archai_runlog::schema::{RunRecord, RunStatus};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Run every (experiment × seed) of COMPARE.yaml at equal budget, then write the report.
/// Running the same command again resumes: finished runs are kept, unfinished ones continue from
/// their checkpoints.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Comparison YAML: `compare: {name, experiments: {NAME: CONF}, seeds, baseline, set}`.
    pub file: PathBuf,
    /// Comparison directory (default: <common.runs_dir>/compare-<name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Runs at once, as separate processes; the CPU threads are split between them.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// CPU threads to split between the jobs (default: all logical CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Tiny budgets (confs/toy.yaml) for every run: same code path, minutes.
    #[arg(long)]
    pub toy: bool,
}

/// The `compare:` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    pub name: String,
    /// Experiment name -> experiment YAML (relative to the working directory).
    pub experiments: BTreeMap<String, PathBuf>,
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub baseline: Option<String>,
    /// `--set KEY=VALUE`s applied to every run: the equal budget.
    #[serde(default)]
    pub set: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareFile {
    compare: CompareSpec,
}

impl CompareSpec {
    pub fn read(path: &Path) -> Result<CompareSpec> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let f: CompareFile = yaml_serde::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let s = f.compare;
        if s.experiments.is_empty() || s.seeds.is_empty() {
            bail!("{}: a comparison needs at least one experiment and one seed", path.display());
        }
        if let Some(b) = &s.baseline {
            if !s.experiments.contains_key(b) {
                bail!(
                    "{}: baseline `{b}` is not one of the experiments ({})",
                    path.display(),
                    s.experiments.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = s.seeds.iter().find(|x| !seen.insert(**x)) {
            bail!("{}: seed {dup} is listed twice", path.display());
        }
        if s.name.is_empty() || s.name.contains(['/', '\\']) {
            bail!("{}: compare.name must be a plain name (it names the directory)", path.display());
        }
        Ok(s)
    }

    fn manifest(&self, toy: bool) -> Manifest {
        let runs = self
            .experiments
            .keys()
            .map(|e| (e.clone(), self.seeds.iter().map(|s| (*s, PathBuf::from(format!("{e}/seed-{s}")))).collect()))
            .collect();
        Manifest {
            name: self.name.clone(),
            experiments: self.experiments.clone(),
            seeds: self.seeds.clone(),
            baseline: self.baseline.clone(),
            set: self.set.clone(),
            toy,
            runs,
        }
    }
}

/// A phase's budget as configured: epochs, batches per epoch (None: the whole split), batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ConfiguredBudget {
    epochs: usize,
    max_batches: Option<usize>,
    batch_size: usize,
}

impl ConfiguredBudget {
    fn of(t: &crate::train::TrainerConfig) -> Self {
        Self { epochs: t.epochs, max_batches: t.max_batches, batch_size: t.batch_size }
    }
}

impl std::fmt::Display for ConfiguredBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let batches = self.max_batches.map_or("all".to_string(), |b| b.to_string());
        write!(f, "{} epochs x {batches} batches of {}", self.epochs, self.batch_size)
    }
}

/// One line per phase whose configured budget differs between experiments. Experiments that
/// train no supernet (search off or 0 epochs, as random search) and those without an eval phase
/// have no budget in that phase to compare.
fn budget_warnings(configs: &BTreeMap<&str, &crate::config::ExperimentConfig>) -> Vec<String> {
    let search = configs.iter().filter_map(|(n, c)| {
        let t = &c.nas.search.trainer;
        (c.nas.search.enabled && t.epochs > 0).then(|| (*n, ConfiguredBudget::of(t)))
    });
    let eval = configs.iter().filter_map(|(n, c)| c.nas.eval.trainer.as_ref().map(|t| (*n, ConfiguredBudget::of(t))));
    let search = crate::report::unequal_budget("the search budgets", search);
    search.into_iter().chain(crate::report::unequal_budget("the eval budgets", eval)).collect()
}

/// One run of the comparison.
#[derive(Debug, Clone)]
struct Job {
    experiment: String,
    conf: PathBuf,
    seed: u64,
    dir: PathBuf,
}

/// What to do with a run directory found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Fresh,
    Finished,
    Unfinished,
}

/// A run directory's state: finished (status ok), unfinished (a resumable attempt), or fresh.
pub fn run_state(dir: &Path) -> RunState {
    match RunRecord::read(&dir.join("log.yaml")) {
        Ok(r) if r.status == RunStatus::Ok => RunState::Finished,
        _ if dir.join("config_used.yaml").is_file() => RunState::Unfinished,
        _ => RunState::Fresh,
    }
}

pub fn run(plugin_dirs: &[PathBuf], args: &Args) -> Result<()> {
    let spec = CompareSpec::read(&args.file)?;
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cpus);
    let per_job = (threads / args.jobs).max(1);
    // Every experiment must load with the comparison's settings before any run starts (or, when
    // the comparison resumes, the configuration it started with must).
    let mut sources = BTreeMap::new();
    for (name, conf) in &spec.experiments {
        let o = super::common::Overrides { toy: args.toy, sets: spec.set.clone(), seed: None };
        let loaded =
            o.load(conf).map(|(_, cfg)| cfg).with_context(|| format!("experiment `{name}` ({})", conf.display()));
        sources.insert(name.clone(), loaded);
    }
    // Equal budget is the point of a comparison: say so before hours of runs, not only in the
    // report after them.
    let loaded: BTreeMap<&str, &crate::config::ExperimentConfig> =
        sources.iter().filter_map(|(n, c)| c.as_ref().ok().map(|c| (n.as_str(), c))).collect();
    for w in budget_warnings(&loaded) {
        tracing::warn!("{w}");
    }
    let first_loaded = sources.values().find_map(|c| c.as_ref().ok());
    let out = match (&args.out, first_loaded) {
        (Some(out), _) => out.clone(),
        (None, Some(cfg)) => cfg.common.runs_dir.join(format!("compare-{}", spec.name)),
        (None, None) => return Err(sources.into_values().find_map(Result::err).expect("no experiment loaded")),
    };
    // A source that does not load stops the comparison before it writes anything, unless the
    // comparison already holds the configuration it started with.
    for (name, source) in &sources {
        if let Err(e) = source {
            if !frozen_config_path(&out, name).is_file() {
                bail!("{}", ErrorText(e));
            }
        }
    }
    let manifest = spec.manifest(args.toy);
    if out.join(MANIFEST).is_file() {
        let existing = Manifest::read(&out)?;
        if existing != manifest {
            bail!(
                "{} holds a different comparison (experiments, seeds, set or --toy differ); give another --out or restore {}",
                out.display(),
                args.file.display()
            );
        }
    }
    let ranks = Ranks::join()?;
    if ranks.rank == 0 {
        std::fs::create_dir_all(out.join("logs")).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join(MANIFEST), yaml_serde::to_string(&manifest)?)?;
        // Reports of an earlier attempt's ranks must not count for this one.
        let _ = std::fs::remove_dir_all(out.join(RANKS_DIR));
    }
    let (configs, rank_timeout) = frozen_configs(sources, &out, ranks.rank == 0)?;
    // Every rank lists the unfinished runs before any of them starts one, so all see the same list.
    let mut pending = Vec::new();
    let mut kept = 0;
    for (exp, seeds) in &manifest.runs {
        for (seed, rel) in seeds {
            let dir = out.join(rel);
            if run_state(&dir) == RunState::Finished {
                kept += 1;
                continue;
            }
            pending.push(Job { experiment: exp.clone(), conf: configs[exp].clone(), seed: *seed, dir });
        }
    }
    ranks.started()?;
    // Rank 0 notices a rank that died (on another machine, where the launcher cannot see it).
    let _beat = match ranks.rank {
        0 => None,
        r => {
            std::fs::create_dir_all(out.join(RANKS_DIR))?;
            Some(crate::heartbeat::Heartbeat::start(Ranks::alive_path(&out, r))?)
        }
    };
    let pending_count = pending.len();
    let queue: VecDeque<Job> = pending.into_iter().skip(ranks.rank).step_by(ranks.world).collect();
    let total = queue.len();
    let share = if ranks.world > 1 {
        format!("; rank {} of {} takes {total} of the rest", ranks.rank, ranks.world)
    } else {
        String::new()
    };
    println!(
        "comparison {}: {} runs ({} finished earlier and kept{share}), {} at a time with {per_job} threads each, in {}",
        spec.name,
        kept + pending_count,
        kept,
        args.jobs,
        out.display()
    );
    let queue = Mutex::new(queue);
    let failures = Mutex::new(Vec::new());
    let done = Mutex::new(0usize);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(total.max(1)) {
            s.spawn(|| loop {
                let Some(job) = queue.lock().expect("queue").pop_front() else { break };
                let t0 = Instant::now();
                let result = run_job(plugin_dirs, &job, per_job, &out);
                let n = {
                    let mut d = done.lock().expect("counter");
                    *d += 1;
                    *d
                };
                let left = time_left(started.elapsed(), n, total).map_or(String::new(), |d| format!("; {d}"));
                match result {
                    Ok(top1) => println!(
                        "[{n}/{total}] {} seed {}: ok, test top-1 {} ({:.0} s{left})",
                        job.experiment,
                        job.seed,
                        top1.map_or("-".into(), |t| format!("{:.4}", t)),
                        t0.elapsed().as_secs_f64()
                    ),
                    Err(e) => {
                        println!("[{n}/{total}] {} seed {}: FAILED{left}: {}", job.experiment, job.seed, ErrorText(&e));
                        failures.lock().expect("failures").push(format!(
                            "{} seed {}: {}",
                            job.experiment,
                            job.seed,
                            ErrorText(&e)
                        ));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("failures");
    if ranks.rank > 0 {
        // Rank 0 reports every rank's failures; a failing exit here would make the launcher stop
        // rank 0 before it writes the report.
        ranks.finished(&out, &failures)?;
        println!("rank {}: {total} runs done, {} failed; rank 0 writes the report", ranks.rank, failures.len());
        return Ok(());
    }
    failures.extend(ranks.wait_for_others(&out, rank_timeout)?);
    // The failures below matter more than a report that cannot be made (no run finished).
    match crate::report::write_report(std::slice::from_ref(&out), &out, None) {
        Ok(analysis) => {
            super::report::print_summary(&analysis);
            println!("report: {}", out.join("report.html").display());
        }
        Err(e) => println!("report: not written: {}", ErrorText(&e)),
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} runs failed (running the same command again resumes them):\n  {}",
            failures.len(),
            pending_count,
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// Where the ranks of a launched comparison leave their failures for rank 0.
const RANKS_DIR: &str = "ranks";

/// This process's place in a launched comparison (rank 0 of 1 when not launched).
struct Ranks {
    rank: usize,
    world: usize,
    group: Option<archai_dist::ProcessGroup>,
}

impl Ranks {
    fn join() -> Result<Ranks> {
        let group = archai_dist::ProcessGroup::join_from_env(std::time::Duration::from_secs(300))?;
        let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank(), g.world()));
        Ok(Ranks { rank, world, group })
    }

    /// All ranks have listed the pending runs (and rank 0 has cleared old rank reports).
    fn started(&self) -> Result<()> {
        if let Some(g) = &self.group {
            g.barrier()?;
        }
        Ok(())
    }

    fn alive_path(out: &Path, rank: usize) -> PathBuf {
        out.join(RANKS_DIR).join(format!("rank-{rank}.alive"))
    }

    fn report_path(out: &Path, rank: usize) -> PathBuf {
        out.join(RANKS_DIR).join(format!("rank-{rank}.yaml"))
    }

    /// Leaves this rank's failures for rank 0 (written whole, then renamed into place).
    fn finished(&self, out: &Path, failures: &[String]) -> Result<()> {
        let path = Self::report_path(out, self.rank);
        std::fs::create_dir_all(out.join(RANKS_DIR))?;
        write_whole(&path, yaml_serde::to_string(failures)?.as_bytes())
    }

    /// Rank 0: waits (as long as the runs take) for every other rank's report and returns their
    /// failures; a rank whose heartbeat stays silent for `timeout` (it died, perhaps on another
    /// machine where the launcher cannot see it) is an error.
    fn wait_for_others(&self, out: &Path, timeout: std::time::Duration) -> Result<Vec<String>> {
        let mut failures = Vec::new();
        let mut said = false;
        for rank in 1..self.world {
            let path = Self::report_path(out, rank);
            let mut watch = crate::heartbeat::Watch::new(&Self::alive_path(out, rank));
            while !path.is_file() {
                if !watch.alive(timeout) {
                    bail!(
                        "rank {rank} stopped answering: {} has not changed for {} s (common.dist_timeout_s); \
                         its runs resume when the same command runs again",
                        Self::alive_path(out, rank).display(),
                        timeout.as_secs()
                    );
                }
                if !said {
                    println!("rank 0: waiting for the other ranks' runs");
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let theirs: Vec<String> = yaml_serde::from_str(&text).with_context(|| format!("{}", path.display()))?;
            failures.extend(theirs);
        }
        Ok(failures)
    }
}

/// The last non-empty line of a child's output file (what to show when it failed); empty when
/// the file is missing.
pub(crate) fn last_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// Writes `bytes` to `path` through a temporary file beside it, so that a reader (another rank,
/// polling) sees all of it or nothing.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Where a comparison keeps each experiment's configuration as it first resolved it.
pub const CONFIGS_DIR: &str = "configs";

fn frozen_config_path(out: &Path, experiment: &str) -> PathBuf {
    out.join(CONFIGS_DIR).join(format!("{experiment}.yaml"))
}

/// Each experiment's configuration as the comparison resolved it when it started (`--toy` and
/// the comparison's `set` applied), in `<out>/configs/NAME.yaml`, and the ranks' timeout. A run
/// is started from that file, so that every run of the comparison is the same experiment even
/// when the source YAML is edited while the comparison runs (for hours) or between a kill and
/// the resume; a source that now resolves differently, or no longer loads, is warned about and
/// the comparison goes on with what it started with. `write`: this process (rank 0) writes them
/// (and warns).
fn frozen_configs(
    sources: BTreeMap<String, Result<crate::config::ExperimentConfig>>,
    out: &Path,
    write: bool,
) -> Result<(BTreeMap<String, PathBuf>, std::time::Duration)> {
    let mut paths = BTreeMap::new();
    let mut timeout = None;
    for (name, source) in sources {
        let path = frozen_config_path(out, &name);
        // Only rank 0 reads and writes the files (the other ranks start their runs after it has
        // written them, past `Ranks::started`); the others need the path and the timeout.
        let cfg = if !write {
            match source {
                Ok(cfg) => cfg,
                Err(_) => {
                    paths.insert(name, path);
                    continue;
                }
            }
        } else if path.is_file() {
            let (_, kept) = super::common::Overrides::default().load(&path).with_context(|| {
                format!(
                    "experiment `{name}`: the configuration this comparison started with ({}) does not load; \
                     start a new comparison (another --out)",
                    path.display()
                )
            })?;
            match &source {
                Ok(now) if now.to_full_yaml() != kept.to_full_yaml() => println!(
                    "warning: experiment `{name}`: its YAML has changed since this comparison started; the \
                     comparison's runs keep the configuration it started with ({}); start a new comparison \
                     (another --out) to run the new one",
                    path.display()
                ),
                Err(e) => println!(
                    "warning: {}; the comparison's runs keep the configuration it started with ({})",
                    ErrorText(e),
                    path.display()
                ),
                _ => {}
            }
            kept
        } else {
            let cfg = source?;
            let dir = out.join(CONFIGS_DIR);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            // Whole or not at all: a comparison killed while writing must not resume from half a
            // configuration.
            write_whole(&path, cfg.to_full_yaml().as_bytes())?;
            cfg
        };
        timeout.get_or_insert(std::time::Duration::from_secs(cfg.common.dist_timeout_s));
        paths.insert(name, path);
    }
    Ok((paths, timeout.unwrap_or(std::time::Duration::from_secs(300))))
}

/// Runs one job as an `archai run` child process (its console output goes to logs/), resuming
/// an unfinished attempt. Its configuration is the comparison's frozen one, with `--toy` and the
/// comparison's `set` already applied. Returns the run's test top-1.
fn run_job(plugin_dirs: &[PathBuf], job: &Job, threads: usize, out: &Path) -> Result<Option<f64>> {
    let exe = self_exe()?;
    let mut cmd = std::process::Command::new(exe);
    for d in plugin_dirs {
        cmd.arg("--plugin-dir").arg(d);
    }
    cmd.arg("run").arg(&job.conf).arg("--seed").arg(job.seed.to_string()).arg("--out").arg(&job.dir);
    cmd.arg("--set").arg(format!("common.threads={threads}"));
    if run_state(&job.dir) == RunState::Unfinished {
        cmd.arg("--resume");
    }
    let log_path = out.join("logs").join(format!("{}-seed-{}.txt", job.experiment, job.seed));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    cmd.stdout(log.try_clone()?).stderr(log).env("RAYON_NUM_THREADS", threads.to_string());
    // A run is one process even when this comparison is a rank of a launched job.
    archai_dist::outside_the_job(&mut cmd);
    kill_with_parent(&mut cmd);
    let status = cmd.status().context("starting archai run")?;
    if !status.success() {
        bail!("{status}; {} (full output: {})", last_line(&log_path), log_path.display());
    }
    let record = RunRecord::read(&job.dir.join("log.yaml"))?;
    Ok(record.eval.and_then(|e| e.summary).map(|s| s.test.top1))
}

/// The running archai binary, for child processes. `/proc/self/exe` still reaches it after a
/// rebuild replaced the file (a comparison runs for hours; `current_exe` then names a deleted
/// path and every later run would fail to start).
pub fn self_exe() -> Result<PathBuf> {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if proc_exe.exists() {
        return Ok(proc_exe);
    }
    std::env::current_exe().context("finding the archai binary")
}

/// A run must not outlive a killed comparison: it would hold its run directory while the
/// resumed comparison tries to continue it.
pub fn kill_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// "about 2 h 10 min left" for the runs not done yet, at the pace of this invocation so far
/// (wall time per finished run, so parallel jobs count); `None` when all are done.
fn time_left(elapsed: Duration, done: usize, total: usize) -> Option<String> {
    if done == 0 || done >= total {
        return None;
    }
    let minutes = (elapsed.as_secs_f64() / done as f64 * (total - done) as f64 / 60.0).round() as u64;
    Some(match minutes {
        0 => "under a minute left".to_string(),
        m if m < 60 => format!("about {m} min left"),
        m => format!("about {} h {} min left", m / 60, m % 60),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_follows_the_pace_so_far() {
        let min = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(time_left(min(40), 2, 17).as_deref(), Some("about 5 h 0 min left"));
        assert_eq!(time_left(min(20), 1, 3).as_deref(), Some("about 40 min left"));
        assert_eq!(time_left(Duration::from_secs(10), 1, 2).as_deref(), Some("under a minute left"));
        assert_eq!(time_left(min(20), 3, 3), None);
        assert_eq!(time_left(min(0), 0, 3), None);
    }

    fn spec(text: &str) -> Result<CompareSpec> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, text).unwrap();
        CompareSpec::read(&p)
    }

    #[test]
    fn unequal_configured_budgets_are_named_before_the_runs() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let load = |conf: &str, sets: &[&str]| {
            let sets = sets.iter().map(|s| s.to_string()).collect();
            super::super::common::Overrides { toy: false, sets, seed: None }.load(&root.join(conf)).unwrap().1
        };
        let darts = load("confs/algos/darts_small_real.yaml", &[]);
        let gdas = load("confs/compare/small_real/gdas.yaml", &[]);
        let random = load("confs/algos/random_small_real.yaml", &[]);
        let equal = BTreeMap::from([("darts", &darts), ("gdas", &gdas), ("random", &random)]);
        assert_eq!(budget_warnings(&equal), Vec::<String>::new());
        // Random search trains no supernet: its search has no budget to differ; a missing eval
        // phase neither.
        let short =
            load("confs/compare/small_real/gdas.yaml", &["nas.search.trainer.epochs=5", "nas.eval.trainer=null"]);
        let pc_darts = load("confs/compare/small_real/pc-darts.yaml", &[]);
        let unequal =
            BTreeMap::from([("darts", &darts), ("gdas", &short), ("pc-darts", &pc_darts), ("random", &random)]);
        assert_eq!(
            budget_warnings(&unequal),
            vec!["unequal budget: the search budgets differ (gdas 5 epochs x 50 batches of 64 vs darts, pc-darts 6 epochs x 50 batches of 64)"]
        );
        let wide = load("confs/algos/random_small_real.yaml", &["nas.eval.trainer.batch_size=128"]);
        let unequal = BTreeMap::from([("darts", &darts), ("random", &wide)]);
        let w = budget_warnings(&unequal);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("unequal budget: the eval budgets differ (darts 10 epochs x "), "{w:?}");
        assert!(w[0].ends_with(" batches of 128)"), "{w:?}");
    }

    #[test]
    fn comparison_files_are_checked_before_anything_runs() {
        let ok = spec("compare: {name: x, experiments: {a: a.yaml, b: b.yaml}, seeds: [0, 1], baseline: b}").unwrap();
        let m = ok.manifest(true);
        assert_eq!(m.runs["a"][&1], PathBuf::from("a/seed-1"));
        let e = spec("compare: {name: x, experiments: {a: a.yaml}, seeds: [0], baseline: c}").unwrap_err();
        assert!(format!("{e:#}").contains("baseline `c` is not one of the experiments (a)"), "{e:#}");
        let e = spec("compare: {name: x, experiments: {a: a.yaml}, seeds: [1, 1]}").unwrap_err();
        assert!(format!("{e:#}").contains("seed 1 is listed twice"));
        let e = spec("compare: {name: x, experiments: {a: a.yaml}, seed: [1]}").unwrap_err();
        assert!(format!("{e:#}").contains("seed"), "{e:#}");
        let e = spec("compare: {name: x, experiments: {}, seeds: [1]}").unwrap_err();
        assert!(format!("{e:#}").contains("at least one experiment"));
        let e = spec("compare: {name: ../x, experiments: {a: a.yaml}, seeds: [1]}").unwrap_err();
        assert!(format!("{e:#}").contains("plain name"));
    }

    #[test]
    fn run_states_follow_the_log() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(run_state(dir.path()), RunState::Fresh);
        std::fs::write(dir.path().join("config_used.yaml"), "{}").unwrap();
        std::fs::write(dir.path().join("log.yaml"), "status: running\n").unwrap();
        assert_eq!(run_state(dir.path()), RunState::Unfinished);
        std::fs::write(dir.path().join("log.yaml"), "status: ok\n").unwrap();
        assert_eq!(run_state(dir.path()), RunState::Finished);
    }
}
