//! `--set a.b.c=value` overrides.

use yaml_serde::Value;

use crate::error::show_path;
use crate::error::{ConfigError, Source};
use crate::include::INCLUDE_KEY;
use crate::tree::{check_keys, describe, key_str, Kind, Node};

/// A parsed `--set` flag.
pub(crate) struct SetFlag {
    /// The flag's text, kept whole for provenance and messages.
    pub flag: String,
    pub path: Vec<String>,
    pub value: Value,
}

/// Parses `a.b.c=value`; the value is YAML so `3`, `true`, `[1,2]` and `'3'` get their YAML
/// types. Parsing happens before any file is read so a typo in a flag fails fast.
pub(crate) fn parse_set(flag: &str) -> Result<SetFlag, ConfigError> {
    let bad = |reason: String| ConfigError::BadSet { flag: flag.to_string(), reason };
    let Some((key, raw)) = flag.split_once('=') else {
        return Err(bad("expected KEY=VALUE (e.g. nas.search.trainer.epochs=3), found no `=`".to_string()));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(bad("the key before `=` is empty".to_string()));
    }
    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(bad(format!("key `{key}` has an empty segment; write dotted keys like nas.search.trainer.epochs")));
    }
    if path.iter().any(|s| s == INCLUDE_KEY) {
        return Err(bad(
            "`__include__` cannot be set from the command line; include the file from a config file".to_string()
        ));
    }
    if let Some(s) = path.iter().find(|s| s.starts_with('!')) {
        return Err(bad(format!("key `{s}` starts with `!`, which YAML reads back as a tag")));
    }
    let value: Value = yaml_serde::from_str(raw).map_err(|e| bad(format!("value `{raw}` is not valid YAML: {e}")))?;
    check_keys(&Node::from_value(value.clone(), &Source::SetFlag(flag.to_string())), &mut path.clone())?;
    Ok(SetFlag { flag: flag.to_string(), path, value })
}

/// Applies one flag: replaces the value at its path, creating missing mappings on the way.
///
/// A null on the way is treated as an empty mapping (`model: ~` then `--set model.x=1` is
/// natural); any other non-mapping is an error, since silently replacing a scalar with a
/// mapping would hide a typo in the key.
pub(crate) fn apply_set(root: &mut Node, set: &SetFlag) -> Result<(), ConfigError> {
    let src = Source::SetFlag(set.flag.clone());
    let bad = |reason: String| ConfigError::BadSet { flag: set.flag.clone(), reason };
    if set.path.is_empty() {
        return Err(bad("the key before `=` is empty".to_string()));
    }
    let mut node = root;
    for (depth, seg) in set.path.iter().enumerate() {
        if matches!(node.kind, Kind::Leaf(Value::Null)) {
            *node = Node::empty_map(src.clone());
        }
        let here = set.path[..depth].join(".");
        let is_last = depth + 1 == set.path.len();
        let cur = node;
        node = match &mut cur.kind {
            Kind::Map(entries) => {
                let pos = entries.iter().position(|(k, _)| key_str(k) == *seg);
                let pos = match pos {
                    Some(p) => p,
                    None => {
                        entries.push((Value::String(seg.clone()), Node::empty_map(src.clone())));
                        entries.len() - 1
                    }
                };
                &mut entries[pos].1
            }
            Kind::Seq(items) => {
                let len = items.len();
                match seg.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    Some(n) => n,
                    None => {
                        return Err(bad(format!(
                            "`{}` is a list of {len} items (from {}); `{seg}` is not an index in it",
                            show_path(&here),
                            cur.src
                        )))
                    }
                }
            }
            Kind::Leaf(v) => {
                return Err(bad(format!(
                    "`{}` is {} (from {}), not a mapping, so it has no key `{seg}`",
                    show_path(&here),
                    describe(v),
                    cur.src
                )))
            }
        };
        if is_last {
            *node = Node::from_value(set.value.clone(), &src);
            return Ok(());
        }
    }
    Ok(())
}
