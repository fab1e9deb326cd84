//! Configuration loading for archai-rs (DESIGN.md §4).
//!
//! A run is described by YAML. [`load_tree`] turns a config file into one resolved tree:
//!
//! 1. `__include__: path | [paths]` at the top of a file loads those files first (relative to
//!    the including file, recursively, later ones winning), then the including file is deep
//!    merged on top: mappings merge key by key, anything else replaces.
//! 2. `_copy` directives are resolved: the value `'_copy: /abs/path'` (or `'_copy: ../rel'`)
//!    becomes a deep copy of the value there; the key form `{_copy: /path, k: v}` merges the
//!    mapping at that path in, local keys winning. Relative paths start at the node holding
//!    the directive, so `..` is its containing mapping and `../x` a sibling (as in Archai).
//! 3. Toy mode (`--toy` or top-level `toy: true`) merges the toy file on top, then the
//!    experiment's own top-level `toy_overrides:` section (removed from the tree in any mode).
//! 4. Each `--set a.b.c=value` (value parsed as YAML) is applied.
//!
//! The result keeps, for every key path, the file or flag that wrote it last, so that
//! [`from_tree`] (typed deserialization, unknown keys rejected) can say where a bad value came
//! from. [`to_yaml_string`] writes the tree back out as `config_used.yaml`; loading that file
//! gives the same tree.
//!
//! Errors are values ([`ConfigError`]); each names the file or flag, the key path and what was
//! expected.

// Errors occur at most once per process start, while loading; flat variants with owned
// fields keep matching simple for the host, so their size does not matter.
#![allow(clippy::result_large_err)]
#![warn(missing_docs)]

mod copy;
mod error;
mod include;
mod set;
mod tree;
mod typed;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use yaml_serde::Value;

pub use error::{ConfigError, Source};
pub use typed::from_tree;

use tree::{Kind, Node};

/// Name of the top-level key that asks for toy mode.
pub const TOY_KEY: &str = "toy";

/// Name of the top-level section an experiment merges on top of the toy file in toy mode (and
/// that is dropped otherwise): where an algorithm's config says how to shrink its own network.
pub const TOY_OVERRIDES_KEY: &str = "toy_overrides";

/// What the command line adds to a config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `--toy`: merge the toy file (tiny budgets, same code path) even if the config does not
    /// say `toy: true`.
    pub toy: bool,
    /// The toy file to merge; `None` finds it with [`find_toy_file`].
    pub toy_file: Option<PathBuf>,
    /// `--set a.b.c=value` flags, applied last, in order.
    pub sets: Vec<String>,
}

/// A fully resolved configuration tree plus where each key came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    /// The merged tree: no `__include__`, no `_copy`, toy file and `--set` flags applied.
    /// Pass it to [`from_tree`] for typed access or to [`to_yaml_string`] to record the run.
    pub tree: Value,
    /// For each dotted key path (`nas.search.trainer.epochs`; list items by index, `a.0.b`),
    /// the origin of its last writer. Keys that themselves contain dots make paths ambiguous;
    /// configs should not use them.
    pub sources: BTreeMap<String, Source>,
    /// The config file [`load_tree`] was given; the origin reported for the root.
    pub file: PathBuf,
    /// The toy file that was merged, if toy mode was on. Once merged, the tree's top-level
    /// `toy` is `false` (see [`load_tree`]), so this is how a caller knows the run is a toy run.
    pub toy_file: Option<PathBuf>,
}

/// Loads `path` with its includes, resolves `_copy`, merges the toy file when asked, and
/// applies `opts.sets`.
///
/// Toy idempotence: top-level `toy` means "the toy file still has to be merged". After merging
/// it, `toy` is set to `false` (origin: the toy file) and [`ResolvedConfig::toy_file`] records
/// which file was merged. Writing the tree as config_used.yaml and loading that file therefore
/// does not merge the toy file a second time, which would otherwise undo `--set` flags that
/// overrode toy values. A `--set toy=true` also requests toy mode (the toy file is merged below
/// all flags, so flags still win).
///
/// `_copy` is resolved right after includes (so toy values do not flow into copies made from
/// the base config), and again after the toy merge and after the flags, so that directives
/// written in the toy file or in a `--set` value work too.
pub fn load_tree(path: &Path, opts: &LoadOptions) -> Result<ResolvedConfig, ConfigError> {
    let sets = opts.sets.iter().map(|s| set::parse_set(s)).collect::<Result<Vec<_>, _>>()?;

    let mut root = include::load_file(path, "config file", &mut Vec::new(), None)?;
    copy::resolve_all(&mut root)?;

    let mut toy_file = None;
    if let Some(requested_by) = toy_request(&root, opts, &sets)? {
        let file = match &opts.toy_file {
            Some(f) => f.clone(),
            None => find_toy_file(path)
                .ok_or_else(|| ConfigError::ToyFileNotFound { conf: path.to_path_buf(), requested_by })?,
        };
        let toy = include::load_file(&file, "toy file", &mut Vec::new(), None)?;
        tree::merge(&mut root, toy);
        // The experiment's own toy settings (sizes of its algorithm, which the shared toy file
        // cannot know) win over the shared toy file.
        if let Some(own) = take_toy_overrides(&mut root)? {
            tree::merge(&mut root, own);
        }
        copy::resolve_all(&mut root)?;
        toy_file = Some(file);
    }
    // Outside toy mode the section is not part of the run (but a malformed one is still an error,
    // so it does not wait for the first toy run to show).
    take_toy_overrides(&mut root)?;

    for s in &sets {
        set::apply_set(&mut root, s)?;
    }
    if !sets.is_empty() {
        copy::resolve_all(&mut root)?;
    }
    if let Some(file) = &toy_file {
        set_top(&mut root, TOY_KEY, Value::Bool(false), Source::File(file.clone()));
    }

    let mut sources = BTreeMap::new();
    root.collect_sources(&mut Vec::new(), &mut sources);
    Ok(ResolvedConfig { tree: root.into_value(), sources, file: path.to_path_buf(), toy_file })
}

/// Says why toy mode is on (for the error when no toy file exists), or `None` if it is off.
/// `--toy` wins; otherwise the last `--set toy=...` decides; otherwise the tree's `toy`.
fn toy_request(root: &Node, opts: &LoadOptions, sets: &[set::SetFlag]) -> Result<Option<String>, ConfigError> {
    if opts.toy {
        return Ok(Some("--toy".to_string()));
    }
    if let Some(s) = sets.iter().rev().find(|s| s.path == [TOY_KEY]) {
        return match &s.value {
            Value::Bool(true) => Ok(Some(format!("--set {}", s.flag))),
            Value::Bool(false) => Ok(None),
            other => {
                Err(ConfigError::BadToyFlag { origin: Source::SetFlag(s.flag.clone()), found: tree::describe(other) })
            }
        };
    }
    let Kind::Map(entries) = &root.kind else {
        return Ok(None);
    };
    match entries.iter().find(|(k, _)| k.as_str() == Some(TOY_KEY)) {
        None => Ok(None),
        Some((_, n)) => match &n.kind {
            Kind::Leaf(Value::Bool(true)) => Ok(Some(format!("`toy: true` in {}", n.src))),
            Kind::Leaf(Value::Bool(false)) => Ok(None),
            other => Err(ConfigError::BadToyFlag {
                origin: n.src.clone(),
                found: tree::describe(&Node { kind: other.clone(), src: n.src.clone() }.into_value()),
            }),
        },
    }
}

/// Removes the top-level `toy_overrides` section: `None` when absent or empty (`toy_overrides:`
/// with nothing under it, which would otherwise replace the whole config with null), an error
/// naming where it was written when it is not a mapping.
fn take_toy_overrides(root: &mut Node) -> Result<Option<Node>, ConfigError> {
    let Some(own) = take_top(root, TOY_OVERRIDES_KEY) else { return Ok(None) };
    match &own.kind {
        Kind::Map(_) => Ok(Some(own)),
        Kind::Leaf(Value::Null) => Ok(None),
        _ => Err(ConfigError::InvalidValue {
            key_path: TOY_OVERRIDES_KEY.to_string(),
            origin: own.src.clone(),
            message: format!(
                "must be a mapping of settings merged in toy mode, found {}",
                tree::describe(&own.clone().into_value())
            ),
        }),
    }
}

/// Removes and returns a top-level key's node.
fn take_top(root: &mut Node, key: &str) -> Option<Node> {
    let Kind::Map(entries) = &mut root.kind else { return None };
    let i = entries.iter().position(|(k, _)| k.as_str() == Some(key))?;
    Some(entries.remove(i).1)
}

/// Sets a top-level key, keeping its position if it exists so the written file stays in the
/// order the user wrote it.
fn set_top(root: &mut Node, key: &str, value: Value, src: Source) {
    if let Kind::Map(entries) = &mut root.kind {
        let node = Node::from_value(value, &src);
        match entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
            Some((_, slot)) => *slot = node,
            None => entries.push((Value::from(key), node)),
        }
    }
}

/// Finds the toy file for a config: walks up from `conf`'s directory to the first ancestor
/// directory named `confs` that contains `toy.yaml`, and returns that file.
///
/// The path as given is searched first so the result reads like the user's path; if that finds
/// nothing (e.g. a bare `darts.yaml` run from inside `confs/algos`), the canonical path is
/// searched too.
///
/// A file kept outside any `confs/` (a user's own experiment that includes
/// `confs/algos/darts.yaml`, say) finds the toy file through the files it includes, nearest first.
pub fn find_toy_file(conf: &Path) -> Option<PathBuf> {
    find_toy_file_within(conf, 8)
}

fn find_toy_file_within(conf: &Path, depth: usize) -> Option<PathBuf> {
    fn search(dir: &Path) -> Option<PathBuf> {
        dir.ancestors()
            .filter(|d| d.file_name().is_some_and(|n| n == "confs"))
            .map(|d| d.join("toy.yaml"))
            .find(|f| f.is_file())
    }
    let own = conf
        .parent()
        .and_then(search)
        .or_else(|| std::fs::canonicalize(conf).ok().and_then(|c| c.parent().and_then(search)));
    if own.is_some() || depth == 0 {
        return own;
    }
    includes_of(conf).iter().find_map(|inc| find_toy_file_within(inc, depth - 1))
}

/// The files `conf` names in its top-level `__include__` (relative to its directory); none when
/// it cannot be read (the loader reports that itself).
fn includes_of(conf: &Path) -> Vec<PathBuf> {
    let Some(value) = std::fs::read_to_string(conf).ok().and_then(|t| yaml_serde::from_str::<Value>(&t).ok()) else {
        return Vec::new();
    };
    let names: Vec<String> = match value.get(include::INCLUDE_KEY) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    let dir = conf.parent().unwrap_or(Path::new("."));
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// Writes a tree as YAML, e.g. a resolved tree as `RUN_DIR/config_used.yaml`.
///
/// Loading the written text with [`load_tree`] (no toy, no flags) gives back the same tree.
/// Cannot fail for trees produced by [`load_tree`]; for hand-built trees that YAML cannot
/// represent (nested tags) the result is a YAML comment stating the problem, which loads as an
/// empty config so that the problem surfaces as missing keys rather than wrong values. Use
/// [`try_to_yaml_string`] to handle that case explicitly.
pub fn to_yaml_string(tree: &Value) -> String {
    try_to_yaml_string(tree).unwrap_or_else(|e| format!("# archai-config could not write this tree: {e}\n"))
}

/// Like [`to_yaml_string`] but reports a tree YAML cannot represent as an error.
pub fn try_to_yaml_string(tree: &Value) -> Result<String, ConfigError> {
    yaml_serde::to_string(tree).map_err(|e| ConfigError::Serialize { message: e.to_string() })
}
