//! `--resume` continues a run only with the configuration it was started with: a change that
//! alters the model, the data or the optimizer state would make the checkpoint mean something
//! else, so it is refused naming the keys. A few documented changes are safe (train longer, use
//! other threads) and are recorded.
use crate::config::ExperimentConfig;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;

/// Keys whose change a resumed run accepts: more (or fewer) epochs continue from the checkpoint
/// with the schedule of the new length; threads and where new runs go do not change results.
/// Recomputing cells or ops trades memory for time without changing what is computed.
pub const SAFE_TO_CHANGE: &[&str] = &[
    "nas.search.trainer.epochs",
    "nas.eval.trainer.epochs",
    "common.threads",
    "common.runs_dir",
    "nas.search.trainer.recompute_cells",
    "nas.eval.trainer.recompute_cells",
    "nas.search.trainer.recompute_ops",
    "nas.eval.trainer.recompute_ops",
];

/// One changed key.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    pub key: String,
    pub before: Value,
    pub now: Value,
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, x, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// The keys whose values differ between the run's recorded configuration and `now`.
pub fn changes(recorded: &Value, now: &Value) -> Vec<Change> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", recorded, &mut a);
    flatten("", now, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (before, now) = (a.get(k).cloned().unwrap_or(Value::Null), b.get(k).cloned().unwrap_or(Value::Null));
            (before != now).then(|| Change { key: k.clone(), before, now })
        })
        .collect()
}

/// Compares `cfg` with the run's config_used.yaml text: refuses changes outside
/// [`SAFE_TO_CHANGE`] (naming them), returns the safe ones.
pub fn check(config_used_yaml: &str, cfg: &ExperimentConfig) -> Result<Vec<Change>> {
    check_config(config_used_yaml, cfg, SAFE_TO_CHANGE)
}

/// [`check`] for any kind of run configuration, with the keys that kind may change on resume.
pub fn check_config<C: serde::Serialize + serde::de::DeserializeOwned>(
    config_used_yaml: &str,
    cfg: &C,
    safe_to_change: &[&str],
) -> Result<Vec<Change>> {
    let recorded: C = yaml_serde::from_str(config_used_yaml)
        .context("the run's config_used.yaml does not parse as a configuration of this kind for this archai")?;
    let changed = changes(&serde_json::to_value(&recorded)?, &serde_json::to_value(cfg)?);
    let refused: Vec<&Change> = changed.iter().filter(|c| !safe_to_change.contains(&c.key.as_str())).collect();
    if !refused.is_empty() {
        let list: Vec<String> = refused.iter().map(|c| format!("{} ({} -> {})", c.key, c.before, c.now)).collect();
        bail!(
            "--resume with a configuration that differs from the run's config_used.yaml in {}: {}. \
             These change the model, the data or the optimizer state the checkpoint holds; resume \
             with the run's own config_used.yaml (only {} may change), or start a new run",
            if list.len() == 1 { "one key" } else { "these keys" },
            list.join(", "),
            safe_to_change.join(", ")
        );
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_keys_are_found_at_any_depth() {
        let a = json!({"common": {"seed": 1, "threads": 2}, "nas": {"search": {"trainer": {"epochs": 3}}}});
        let b = json!({"common": {"seed": 1, "threads": 1}, "nas": {"search": {"trainer": {"epochs": 5, "x": 1}}}});
        let c: Vec<String> = changes(&a, &b).into_iter().map(|c| c.key).collect();
        assert_eq!(c, vec!["common.threads", "nas.search.trainer.epochs", "nas.search.trainer.x"]);
        assert!(changes(&a, &a).is_empty());
    }
}
