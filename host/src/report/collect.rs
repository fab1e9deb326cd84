//! Finding runs and reading what a report needs from each: its typed log.yaml, its seed and
//! budget, and its searched cell picture.
use anyhow::{bail, Context, Result};
use archai_runlog::schema::{Environment, PhaseRecord, RunRecord, RunStatus};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifest `archai compare` writes into a comparison directory.
pub const MANIFEST: &str = "comparison.yaml";

/// A comparison directory's manifest: what was compared and where each run lives.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    /// Experiment name -> experiment YAML, as given.
    pub experiments: BTreeMap<String, PathBuf>,
    pub seeds: Vec<u64>,
    pub baseline: Option<String>,
    /// `--set`s applied to every run.
    pub set: Vec<String>,
    pub toy: bool,
    /// Experiment name -> seed -> run directory, relative to the comparison directory.
    pub runs: BTreeMap<String, BTreeMap<u64, PathBuf>>,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        yaml_serde::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// One run as a report sees it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The experiment it belongs to (comparison name, else `run.experiment`).
    pub experiment: String,
    pub seed: u64,
    pub dir: PathBuf,
    pub record: RunRecord,
    /// The searched cells' choices (from the search's final model description), when the run
    /// searched cells.
    pub cells: Option<CellChoices>,
}

/// One kept edge of a searched cell: (reduction cell, node, input, op), of the network's first
/// normal and first reduction cell (the others repeat them in a cell search).
pub type CellChoice = (bool, usize, usize, String);
pub type CellChoices = std::collections::BTreeSet<CellChoice>;

/// The choices of the first normal and the first reduction cell of a network; `None` when it has
/// no cells with edges (a handcrafted or non-cell network).
pub fn cell_choices(desc: &archai_model_desc::ModelDesc) -> Option<CellChoices> {
    let mut out = CellChoices::new();
    for reduction in [false, true] {
        if let Some(cell) = desc.cells.iter().find(|c| c.reduction == reduction) {
            for (node, n) in cell.nodes.iter().enumerate() {
                out.extend(n.edges.iter().map(|e| (reduction, node, e.input, e.op.clone())));
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

impl Run {
    pub fn ok(&self) -> bool {
        self.record.status == RunStatus::Ok
    }

    pub fn test_top1(&self) -> Option<f64> {
        self.record.eval.as_ref()?.summary.as_ref().map(|s| s.test.top1)
    }

    /// Whether its search decided its architecture (finalizers of the DARTS family report it).
    pub fn decisiveness(&self) -> Option<&archai_model_desc::report::Decisiveness> {
        self.record.search.as_ref()?.summary.as_ref()?.decisiveness.as_ref()
    }

    pub fn environment(&self) -> Option<&Environment> {
        self.record.run.as_ref()?.environment.as_ref()
    }

    /// Epochs, samples trained and seconds of one phase.
    pub fn budget<S>(phase: Option<&PhaseRecord<S>>) -> PhaseBudget {
        let Some(p) = phase else { return PhaseBudget::default() };
        let mut b = PhaseBudget::default();
        for e in p.epochs.values() {
            if let Some(t) = &e.train {
                b.epochs += 1;
                b.samples += t.samples;
                b.seconds += t.duration_s;
            }
        }
        b
    }

    /// The searched cells' picture (search/final_cells.svg), when the run searched.
    pub fn cells_svg(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("search/final_cells.svg")).ok()
    }
}

/// What a phase spent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseBudget {
    pub epochs: u64,
    pub samples: u64,
    pub seconds: f64,
}

/// What `archai report` was given, gathered.
#[derive(Debug, Clone)]
pub struct Collection {
    pub runs: Vec<Run>,
    /// From a comparison manifest or `--baseline`.
    pub baseline: Option<String>,
    /// Comparison name (or the directory's name).
    pub title: String,
}

fn read_run(dir: &Path, experiment: Option<&str>) -> Result<Run> {
    let record = RunRecord::read(&dir.join("log.yaml")).with_context(|| format!("run {}", dir.display()))?;
    let info = record.run.as_ref();
    let experiment = match experiment {
        Some(e) => e.to_string(),
        None => info.map(|r| r.experiment.clone()).unwrap_or_else(|| "unknown".into()),
    };
    // The searched network, where log.yaml says the search wrote it. A run copied without it
    // still reports its numbers; it only has no cells to compare.
    let cells = record
        .search
        .as_ref()
        .and_then(|s| s.summary.as_ref())
        .map(|s| dir.join(&s.final_model_desc))
        .and_then(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            archai_model_desc::ModelDesc::from_yaml(&text, &path.display().to_string()).ok()
        })
        .and_then(|desc| cell_choices(&desc));
    Ok(Run { experiment, seed: info.map_or(0, |r| r.seed), dir: dir.to_path_buf(), record, cells })
}

/// Reads every run under `dirs`: a comparison directory (its manifest), a run directory (holds
/// log.yaml), or a directory whose subdirectories (two levels deep) are runs.
pub fn collect(dirs: &[PathBuf]) -> Result<Collection> {
    let mut runs = Vec::new();
    let mut baseline = None;
    let mut title = None;
    for dir in dirs {
        if !dir.is_dir() {
            bail!("{}: not a directory (give comparison or run directories)", dir.display());
        }
        if dir.join(MANIFEST).is_file() {
            let m = Manifest::read(dir)?;
            for (exp, seeds) in &m.runs {
                for rel in seeds.values() {
                    let run_dir = dir.join(rel);
                    if run_dir.join("log.yaml").is_file() {
                        runs.push(read_run(&run_dir, Some(exp))?);
                    }
                }
            }
            baseline = baseline.or(m.baseline.clone());
            title.get_or_insert(m.name.clone());
        } else if dir.join("log.yaml").is_file() {
            runs.push(read_run(dir, None)?);
        } else {
            let mut found = Vec::new();
            find_runs(dir, 2, &mut found)?;
            if found.is_empty() {
                bail!("{}: no runs found (no log.yaml here or two levels below)", dir.display());
            }
            for d in found {
                runs.push(read_run(&d, None)?);
            }
        }
    }
    if runs.is_empty() {
        bail!("no runs to report: the comparison has not finished a run yet");
    }
    runs.sort_by(|a, b| (&a.experiment, a.seed).cmp(&(&b.experiment, b.seed)));
    let title = title.unwrap_or_else(|| {
        dirs.first().and_then(|d| d.file_name()).map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
    });
    Ok(Collection { runs, baseline, title })
}

fn find_runs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for p in entries {
        if p.join("log.yaml").is_file() {
            out.push(p);
        } else if depth > 1 {
            find_runs(&p, depth - 1, out)?;
        }
    }
    Ok(())
}
