//! Typed deserialization with errors that point back into the files.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::error::{ConfigError, Source};
use crate::ResolvedConfig;

/// Deserializes the resolved tree into `T`, mapping serde's failures to [`ConfigError`]s that
/// name the key path, the file or flag that wrote it, and what was expected.
///
/// Use structs with `#[serde(deny_unknown_fields)]`: a misspelt key then becomes an
/// [`ConfigError::UnknownKey`] with a suggestion instead of being silently ignored.
pub fn from_tree<T: DeserializeOwned>(cfg: &ResolvedConfig) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(&cfg.tree).map_err(|e| convert(cfg, e))
}

fn convert(cfg: &ResolvedConfig, err: serde_path_to_error::Error<yaml_serde::Error>) -> ConfigError {
    let segs: Vec<String> = err
        .path()
        .iter()
        .map(|s| match s {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => key.clone(),
            Segment::Enum { variant } => variant.clone(),
            // serde_path_to_error uses this for keys it could not capture; keep a placeholder
            // so the rest of the path still reads correctly.
            _ => "?".to_string(),
        })
        .collect();
    let message = err.inner().to_string();
    let key_path = segs.join(".");
    let origin = origin_of(cfg, &segs);

    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, valid) = split_expected(rest);
        // serde_path_to_error already puts the unknown key at the end of the path; guard
        // against a version that does not, so the message still names the full key.
        let key_path =
            if segs.last().map(String::as_str) == Some(field.as_str()) { key_path } else { join(&key_path, &field) };
        return ConfigError::UnknownKey { suggestion: suggest(&field, &valid), key_path, origin, valid };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (value, valid) = split_expected(rest);
        return ConfigError::UnknownVariant { suggestion: suggest(&value, &valid), key_path, origin, value, valid };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest).to_string();
        return ConfigError::MissingKey { mapping_path: key_path, field, origin };
    }
    ConfigError::InvalidValue { key_path, origin, message }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

/// Origin of the deepest recorded ancestor of `segs`: a missing key has no entry of its own,
/// but the mapping that should have held it does.
fn origin_of(cfg: &ResolvedConfig, segs: &[String]) -> Source {
    (0..=segs.len())
        .rev()
        .find_map(|n| cfg.sources.get(&segs[..n].join(".")))
        .cloned()
        .unwrap_or_else(|| Source::File(cfg.file.clone()))
}

/// Splits serde's "`name`, expected one of `a`, `b`" tail (after the opening backtick) into
/// the name and the listed alternatives.
fn split_expected(rest: &str) -> (String, Vec<String>) {
    let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
    let valid = tail.split('`').skip(1).step_by(2).map(str::to_string).collect();
    (name.to_string(), valid)
}

/// The valid name a typo most likely meant, if any is close enough to be worth saying.
fn suggest(wrong: &str, valid: &[String]) -> Option<String> {
    valid
        .iter()
        .map(|v| (strsim::jaro_winkler(wrong, v), v))
        .filter(|(score, v)| *score >= 0.8 || strsim::levenshtein(wrong, v) <= 2)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_expected_reads_serde_lists() {
        let (f, v) = split_expected("epocs`, expected one of `epochs`, `batch_size`, `lr`");
        assert_eq!(f, "epocs");
        assert_eq!(v, vec!["epochs", "batch_size", "lr"]);
        let (f, v) = split_expected("x`, expected `a` or `b`");
        assert_eq!((f.as_str(), v), ("x", vec!["a".to_string(), "b".to_string()]));
        let (f, v) = split_expected("x`, there are no fields");
        assert_eq!((f.as_str(), v.len()), ("x", 0));
    }

    #[test]
    fn suggest_picks_close_names_only() {
        let valid = vec!["epochs".to_string(), "batch_size".to_string()];
        assert_eq!(suggest("epocs", &valid).as_deref(), Some("epochs"));
        assert_eq!(suggest("batchsize", &valid).as_deref(), Some("batch_size"));
        assert_eq!(suggest("zzz", &valid), None);
    }
}
