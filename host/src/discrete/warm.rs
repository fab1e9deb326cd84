//! Warm starts: a candidate begins from another candidate's trained weights, carried by
//! parameter name (stable node ids make names survive inserted nodes), with renames for parts
//! that moved (a searched candidate op that became an edge). A tensor that only grew along its
//! input dimension is carried into its leading part and zero-filled after it, so a grown
//! network starts as the function its source computed.
use crate::params::ParamStore;
use anyhow::{Context, Result};
use archai_runlog::schema::WarmStartRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::Tensor;

/// A resolved warm start: the source checkpoint and the prefix renames.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct WarmSource {
    pub checkpoint: PathBuf,
    #[serde(default)]
    pub rename: Vec<(String, String)>,
}

/// `name` after the first rename whose source prefix matches (on a dot boundary).
fn renamed(name: &str, rename: &[(String, String)]) -> String {
    for (from, to) in rename {
        if let Some(rest) = name.strip_prefix(from.as_str()) {
            if rest.is_empty() || rest.starts_with('.') {
                return format!("{to}{rest}");
            }
        }
    }
    name.to_string()
}

/// Whether `child` is `source` grown along dimension 1 only (a conv or linear weight whose
/// inputs grew).
fn grew_along_inputs(source: &[i64], child: &[i64]) -> bool {
    source.len() == child.len()
        && source.len() >= 2
        && source[1] < child[1]
        && source.iter().zip(child).enumerate().all(|(d, (a, b))| d == 1 || a == b)
}

/// Copies the source checkpoint's tensors into `store` and says what was carried, extended,
/// left new and dropped. Names in the record are the child's checkpoint names (`w.`/`a.`).
pub fn carry(store: &ParamStore, source: &WarmSource) -> Result<WarmStartRecord> {
    let saved = crate::train::read_model_tensors(&source.checkpoint)
        .with_context(|| format!("warm start from {}", source.checkpoint.display()))?;
    let mut live: BTreeMap<String, Tensor> = crate::train::model_tensors(store).into_iter().collect();
    let mut record = WarmStartRecord {
        source: source.checkpoint.display().to_string(),
        carried: Vec::new(),
        extended: Vec::new(),
        new: Vec::new(),
        dropped: Vec::new(),
        rename: source.rename.clone(),
    };
    let _guard = tch::no_grad_guard();
    for (name, t) in saved {
        let (kind, rest) = name.split_at(2);
        let target = format!("{kind}{}", renamed(rest, &source.rename));
        let Some(mut dst) = live.remove(&target) else {
            record.dropped.push(name);
            continue;
        };
        let t = t.to_device(dst.device()).to_kind(dst.kind());
        let (from, to) = (t.size(), dst.size());
        if from == to {
            dst.copy_(&t);
            record.carried.push(target);
        } else if grew_along_inputs(&from, &to) {
            let _ = dst.zero_();
            dst.narrow(1, 0, from[1]).copy_(&t);
            record.extended.push(target);
        } else {
            // Same name, another shape: the child's own part (its initialization stands).
            record.new.push(format!("{target} (source shape {from:?}, child {to:?})"));
        }
    }
    record.new.extend(live.into_keys());
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_match_whole_scope_segments() {
        let r = vec![("cells.0.n7.e2.sep_conv_3x3".to_string(), "cells.0.n7.e0".to_string())];
        assert_eq!(renamed("cells.0.n7.e2.sep_conv_3x3.op.1.weight", &r), "cells.0.n7.e0.op.1.weight");
        assert_eq!(renamed("cells.0.n7.e2.sep_conv_3x3x.weight", &r), "cells.0.n7.e2.sep_conv_3x3x.weight");
        assert!(grew_along_inputs(&[8, 12, 1, 1], &[8, 16, 1, 1]));
        assert!(!grew_along_inputs(&[8, 12, 1, 1], &[10, 16, 1, 1]));
        assert!(!grew_along_inputs(&[8], &[10]));
    }
}
