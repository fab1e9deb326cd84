//! Config helpers for algorithms over the DARTS cell space.
use crate::model_desc::DARTS_PRIMITIVES;
use serde::de::DeserializeOwned;

/// The eight DARTS primitives as owned strings (the default candidate list).
pub fn darts_primitives() -> Vec<String> {
    DARTS_PRIMITIVES.iter().map(|s| s.to_string()).collect()
}

/// The DARTS primitives a discrete cell can use: all but `none`.
pub fn darts_ops() -> Vec<String> {
    DARTS_PRIMITIVES.iter().filter(|o| **o != "none").map(|s| s.to_string()).collect()
}

/// Deserializes a component config; `null` (no config given) means all defaults. Errors start
/// with `<what> config:` and name the key.
pub fn parse<T: DeserializeOwned + Default>(value: &serde_json::Value, what: &str) -> anyhow::Result<T> {
    if value.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(value.clone()).map_err(|e| anyhow::anyhow!("{what} config: {e}"))
}

/// Checks a candidate list: non-empty, no duplicates, at least one op other than `none`.
pub fn check_candidates(candidates: &[String], what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!candidates.is_empty(), "{what} config: `candidates` is empty");
    for (i, c) in candidates.iter().enumerate() {
        anyhow::ensure!(!candidates[..i].contains(c), "{what} config: candidate `{c}` is listed twice");
    }
    anyhow::ensure!(
        candidates.iter().any(|c| c != "none"),
        "{what} config: `candidates` must contain an op other than `none` (the final architecture is made of them)"
    );
    Ok(())
}

/// Checks that `value` is a finite number in `[lo, hi]`.
pub fn check_range(value: f64, lo: f64, hi: f64, key: &str, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        value.is_finite() && value >= lo && value <= hi,
        "{what} config: `{key}` must be in [{lo}, {hi}], got {value}"
    );
    Ok(())
}
