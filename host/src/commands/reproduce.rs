//! `archai reproduce`: re-runs a run from its config_used.yaml and compares the two bit for bit.
use anyhow::{bail, Context, Result};
use archai_runlog::schema::{is_timing_key, RunRecord};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use yaml_serde::Value;

/// Re-run RUN_DIR from its config_used.yaml into a new directory and compare bit for bit: final
/// weights (SHA-256), final architecture, every logged metric. Prints `identical` (exit 0) or
/// the first divergence (exit 1); errors exit 2.
#[derive(clap::Args, Debug)]
pub struct Args {
    pub run_dir: PathBuf,
    /// Directory of the new run (default: RUN_DIR-reproduce-<YYYYmmdd-HHMMSS> beside RUN_DIR).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compare with this existing run instead of re-running.
    #[arg(long, value_name = "RUN_DIR")]
    pub against: Option<PathBuf>,
}

/// Where two runs first differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// `search`, `eval`, `dataset`, `status` or `architecture`.
    pub phase: String,
    /// The epoch (from 1), when the difference is in an epoch record.
    pub epoch: Option<u64>,
    /// Key path inside the phase or epoch record.
    pub metric: String,
    pub original: String,
    pub reproduced: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match self.epoch {
            Some(e) => format!("{} epoch {e}", self.phase),
            None => self.phase.clone(),
        };
        write!(f, "diverged at {at}, {}: {} (original) vs {} (reproduced)", self.metric, self.original, self.reproduced)
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => yaml_serde::to_string(v).unwrap_or_default().trim().to_string(),
    }
}

/// Leaves of a YAML tree as (key path, value), in the tree's order, timing keys left out.
fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, child) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => show(Some(other)),
                };
                if is_timing_key(&key) {
                    continue;
                }
                let path = if prefix.is_empty() { key } else { format!("{prefix}/{key}") };
                leaves(&path, child, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

fn first_difference(a: &Value, b: &Value) -> Option<(String, String, String)> {
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    leaves("", a, &mut la);
    leaves("", b, &mut lb);
    let mut keys: Vec<&String> = la.iter().map(|(k, _)| k).collect();
    for (k, _) in &lb {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for k in keys {
        let va = la.iter().find(|(x, _)| x == k).map(|(_, v)| v);
        let vb = lb.iter().find(|(x, _)| x == k).map(|(_, v)| v);
        if va != vb {
            return Some((k.clone(), show(va), show(vb)));
        }
    }
    None
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    yaml_serde::to_value(t).unwrap_or(Value::Null)
}

fn read_record(dir: &Path) -> Result<RunRecord> {
    RunRecord::read(&dir.join("log.yaml")).with_context(|| format!("run {}", dir.display()))
}

/// Compares two runs: status, dataset, then each phase epoch by epoch and its summary (weight
/// hashes included), then the searched architecture file. Timing fields are not compared.
pub fn compare_runs(original: &Path, reproduced: &Path) -> Result<std::result::Result<usize, Divergence>> {
    Ok(compare_records(original, &read_record(original)?, reproduced, &read_record(reproduced)?))
}

/// `compare_runs` on log.yaml records already read (`a` from `original`, `b` from `reproduced`).
fn compare_records(
    original: &Path,
    a: &RunRecord,
    reproduced: &Path,
    b: &RunRecord,
) -> std::result::Result<usize, Divergence> {
    let mut compared = 0usize;
    let diverge = |phase: &str, epoch: Option<u64>, (metric, x, y): (String, String, String)| Divergence {
        phase: phase.into(),
        epoch,
        metric,
        original: x,
        reproduced: y,
    };
    if a.status != b.status {
        return Err(Divergence {
            phase: "status".into(),
            epoch: None,
            metric: "status".into(),
            original: format!("{:?}", a.status),
            reproduced: format!("{:?}", b.status),
        });
    }
    if let Some(d) = first_difference(&to_value(&a.dataset), &to_value(&b.dataset)) {
        return Err(diverge("dataset", None, d));
    }
    let phases = [
        ("search", a.search.as_ref().map(to_value), b.search.as_ref().map(to_value)),
        ("eval", a.eval.as_ref().map(to_value), b.eval.as_ref().map(to_value)),
    ];
    for (phase, pa, pb) in phases {
        let (pa, pb) = (pa.unwrap_or(Value::Null), pb.unwrap_or(Value::Null));
        let epochs = |p: &Value| -> Vec<u64> {
            p.get("epochs")
                .and_then(Value::as_mapping)
                .map_or(Vec::new(), |m| m.keys().filter_map(Value::as_u64).collect())
        };
        let (ea, eb) = (epochs(&pa), epochs(&pb));
        for e in ea.iter().chain(eb.iter().filter(|e| !ea.contains(e))) {
            let get = |p: &Value| p.get("epochs").and_then(|m| m.get(*e as usize)).cloned().unwrap_or(Value::Null);
            let (xa, xb) = (get(&pa), get(&pb));
            if let Some(d) = first_difference(&xa, &xb) {
                return Err(diverge(phase, Some(e + 1), d));
            }
            let mut l = Vec::new();
            leaves("", &xa, &mut l);
            compared += l.len();
        }
        let summary = |p: &Value| p.get("summary").cloned().unwrap_or(Value::Null);
        if let Some((metric, x, y)) = first_difference(&summary(&pa), &summary(&pb)) {
            return Err(diverge(phase, None, (format!("summary/{metric}"), x, y)));
        }
        let mut l = Vec::new();
        leaves("", &summary(&pa), &mut l);
        compared += l.len();
    }
    let arch = |dir: &Path| std::fs::read_to_string(dir.join("search/final_model_desc.yaml")).ok();
    let (arch_a, arch_b) = (arch(original), arch(reproduced));
    if arch_a != arch_b {
        return Err(Divergence {
            phase: "architecture".into(),
            epoch: None,
            metric: "search/final_model_desc.yaml".into(),
            original: if arch_a.is_some() { "one architecture".into() } else { "(absent)".into() },
            reproduced: if arch_b.is_some() { "a different one".into() } else { "(absent)".into() },
        });
    }
    Ok(compared)
}

pub fn run(plugin_dirs: &[PathBuf], args: &Args) -> Result<ExitCode> {
    let original = &args.run_dir;
    if !original.join("log.yaml").is_file() {
        bail!("{}: not a run directory (no log.yaml)", original.display());
    }
    let other = match &args.against {
        Some(dir) => dir.clone(),
        None => {
            let conf = original.join("config_used.yaml");
            if !conf.is_file() {
                bail!("{}: no config_used.yaml to re-run from", original.display());
            }
            let out = match &args.out {
                Some(out) => out.clone(),
                None => default_out(original)?,
            };
            eprintln!("reproducing {} into {}", original.display(), out.display());
            // config_used.yaml is complete (every default written out), so no --toy or --set.
            super::run::run_experiment(
                plugin_dirs,
                &conf,
                &super::common::Overrides::default(),
                &Some(out.clone()),
                false,
            )?;
            out
        }
    };
    let (a, b) = (read_record(original)?, read_record(&other)?);
    match compare_records(original, &a, &other, &b) {
        Ok(n) => {
            println!(
                "identical: {} and {} agree on {n} logged values, the final weights' SHA-256 and the architecture",
                original.display(),
                other.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => {
            println!("{d}");
            // A divergence between different machines or builds is expected; name them.
            let env = |r: &RunRecord| r.run.as_ref()?.environment.clone();
            if let (Some(a), Some(b)) = (env(&a), env(&b)) {
                for diff in crate::report::environment_differences(&a, &b) {
                    println!("  the environments differ: {diff}");
                }
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// `RUN_DIR-reproduce-<YYYYmmdd-HHMMSS>` beside RUN_DIR (numbered when that exists), created
/// empty so that the run uses it.
fn default_out(original: &Path) -> Result<PathBuf> {
    let parent = original.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = original.file_name().map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned());
    let dir = archai_runlog::RunDir::create(parent, &format!("{name}-reproduce"), None, false)?;
    Ok(dir.path().to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_directory_is_beside_the_run_and_never_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("darts-20261207-090042");
        std::fs::create_dir(&run).unwrap();
        let first = default_out(&run).unwrap();
        let second = default_out(&run).unwrap();
        assert_eq!(first.parent(), Some(tmp.path()));
        let leaf = first.file_name().unwrap().to_string_lossy().into_owned();
        let stamp = leaf.strip_prefix("darts-20261207-090042-reproduce-").unwrap_or_else(|| panic!("{leaf}"));
        assert!(stamp.len() >= 15 && stamp.as_bytes()[8] == b'-', "YYYYmmdd-HHMMSS, got {stamp}");
        assert_ne!(first, second, "a second reproduce gets its own directory");
        assert!(first.is_dir() && std::fs::read_dir(&first).unwrap().next().is_none());
    }
}
