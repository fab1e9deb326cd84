//! Reading one YAML file and the `__include__` files beneath it.

use std::path::{Component, Path, PathBuf};

use yaml_serde::Value;

use crate::error::{ConfigError, Source};
use crate::tree::{check_keys, describe, key_str, merge, Kind, Node};

/// The key naming files to load as defaults below the including file.
pub(crate) const INCLUDE_KEY: &str = "__include__";

/// One file on the current include chain: its identity (canonical path) and how to show it.
pub(crate) struct ChainEntry {
    canonical: PathBuf,
    shown: PathBuf,
}

/// Loads `file` with its includes merged below it.
///
/// `chain` holds the files currently being included (outermost first) so that a loop is caught
/// and reported as the full chain. `included_from` is `(including file, path as written)` when
/// `file` came from an `__include__`, so that a missing file names where it was asked for.
pub(crate) fn load_file(
    file: &Path,
    role: &'static str,
    chain: &mut Vec<ChainEntry>,
    included_from: Option<(&Path, &str)>,
) -> Result<Node, ConfigError> {
    let io_err = |source: std::io::Error| match included_from {
        Some((parent, written)) => ConfigError::MissingInclude {
            file: parent.to_path_buf(),
            include: written.to_string(),
            tried: file.to_path_buf(),
            source,
        },
        None => ConfigError::Read { role, file: file.to_path_buf(), source },
    };
    // Identity by canonical path: the same file reached as `a/../b.yaml` and `b.yaml` must
    // still be recognised as a cycle.
    let canonical = std::fs::canonicalize(file).map_err(io_err)?;
    if let Some(pos) = chain.iter().position(|e| e.canonical == canonical) {
        let mut names: Vec<String> = chain[pos..].iter().map(|e| e.shown.display().to_string()).collect();
        names.push(file.display().to_string());
        return Err(ConfigError::IncludeCycle { chain: names.join(" -> ") });
    }
    let text = std::fs::read_to_string(file).map_err(io_err)?;
    let mut value: Value = yaml_serde::from_str(&text)
        .map_err(|e| ConfigError::Parse { file: file.to_path_buf(), message: e.to_string() })?;
    // `<<: *anchor` is common YAML practice; without this the `<<` key would reach the typed
    // structs as an unknown key.
    value.apply_merge().map_err(|e| ConfigError::Parse { file: file.to_path_buf(), message: e.to_string() })?;
    let src = Source::File(file.to_path_buf());
    let mut node = match value {
        // An empty file is a valid (if useless) config, e.g. a placeholder override.
        Value::Null => Node::empty_map(src.clone()),
        v @ Value::Mapping(_) => Node::from_value(v, &src),
        other => return Err(ConfigError::NotAMapping { file: file.to_path_buf(), found: describe(&other) }),
    };
    check_keys(&node, &mut Vec::new())?;

    let includes = take_includes(&mut node, file)?;
    reject_nested_includes(&node, file, &mut Vec::new())?;
    if includes.is_empty() {
        return Ok(node);
    }

    chain.push(ChainEntry { canonical, shown: file.to_path_buf() });
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut acc = Node::empty_map(src);
    for written in &includes {
        let target = normalize(&dir.join(written));
        let loaded = load_file(&target, role, chain, Some((file, written)));
        match loaded {
            Ok(n) => merge(&mut acc, n),
            Err(e) => {
                chain.pop();
                return Err(e);
            }
        }
    }
    chain.pop();
    replace_dataset_of_another_adapter(&mut acc, &node);
    merge(&mut acc, node);
    Ok(acc)
}

/// A file's own `dataset:` section that names another `adapter` than the one it includes replaces
/// the included section as a unit (the keys of one format mean nothing to another: an
/// `image-folder` dataset would otherwise inherit Fashion-MNIST's `train`/`test` files). A section
/// with the same adapter, or none, merges key by key as every other section does.
fn replace_dataset_of_another_adapter(included: &mut Node, own: &Node) {
    fn entry<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
        match &node.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }
    let adapter = |n: &Node| match entry(n, "dataset").and_then(|d| entry(d, "adapter")).map(|a| &a.kind) {
        Some(Kind::Leaf(v)) => Some(v.clone()),
        _ => None,
    };
    let (Some(mine), Some(theirs)) = (adapter(own), adapter(included)) else { return };
    if mine != theirs {
        if let Kind::Map(entries) = &mut included.kind {
            entries.retain(|(k, _)| k.as_str() != Some("dataset"));
        }
    }
}

/// Removes the top-level `__include__` and returns its paths in order.
fn take_includes(node: &mut Node, file: &Path) -> Result<Vec<String>, ConfigError> {
    let Kind::Map(entries) = &mut node.kind else {
        return Ok(Vec::new());
    };
    let Some(pos) = entries.iter().position(|(k, _)| is_include_key(k)) else {
        return Ok(Vec::new());
    };
    let (_, inc) = entries.remove(pos);
    let bad = |found: String| ConfigError::BadInclude { file: file.to_path_buf(), found };
    match inc.kind {
        Kind::Leaf(Value::String(s)) => Ok(vec![s]),
        Kind::Leaf(Value::Null) => Ok(Vec::new()),
        Kind::Seq(items) => items
            .into_iter()
            .map(|n| match n.kind {
                Kind::Leaf(Value::String(s)) => Ok(s),
                other => {
                    Err(bad(format!("a list containing {}", describe(&Node { kind: other, src: n.src }.into_value()))))
                }
            })
            .collect(),
        other => Err(bad(describe(&Node { kind: other, src: inc.src }.into_value()))),
    }
}

fn is_include_key(k: &Value) -> bool {
    matches!(k, Value::String(s) if s == INCLUDE_KEY)
}

/// A nested `__include__` would otherwise survive to typed deserialization and fail there with
/// an "unknown key" message that hides the real mistake. Runs after the top-level one was
/// taken out, so every remaining occurrence is misplaced.
fn reject_nested_includes(node: &Node, file: &Path, path: &mut Vec<String>) -> Result<(), ConfigError> {
    let children: Vec<(String, &Node)> = match &node.kind {
        Kind::Map(e) => {
            if e.iter().any(|(k, _)| is_include_key(k)) {
                return Err(ConfigError::NestedInclude { file: file.to_path_buf(), key_path: path.join(".") });
            }
            e.iter().map(|(k, n)| (key_str(k), n)).collect()
        }
        Kind::Seq(s) => s.iter().enumerate().map(|(i, n)| (i.to_string(), n)).collect(),
        Kind::Leaf(_) => Vec::new(),
    };
    for (name, child) in children {
        path.push(name);
        reject_nested_includes(child, file, path)?;
        path.pop();
    }
    Ok(())
}

/// Lexical `..`/`.` removal so that paths in messages and provenance read like the user wrote
/// them (`confs/common.yaml`, not `confs/algos/../common.yaml`). Identity checks use
/// canonical paths, so symlinks cannot fool cycle detection.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}
