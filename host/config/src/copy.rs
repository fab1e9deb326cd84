//! `_copy` resolution.
//!
//! Two forms: a string value `'_copy: PATH'` is replaced by a deep copy of the value at PATH;
//! a mapping key `{_copy: PATH, k: v}` merges the mapping at PATH in, local keys winning.
//! PATH is absolute (`/nas/search/loader`) or relative. A relative PATH is read like a file
//! path whose current directory is the node where `_copy` stands (the key holding the value
//! form, or the mapping holding the `_copy` key): `..` is the mapping containing that node, so
//! `../x` is a sibling. Both forms read the same way, and this matches Archai's resolver, so
//! Archai-style configs keep their meaning.
//!
//! A target is fully resolved before it is copied, so copies chain; a directive met again while
//! it is still being resolved is a cycle, reported with the whole chain.

use yaml_serde::Value;

use crate::error::ConfigError;
use crate::tree::{merge, Kind, Node};

/// The key of the key form.
pub(crate) const COPY_KEY: &str = "_copy";
/// The prefix of the value form.
const COPY_PREFIX: &str = "_copy:";
/// The most values copies may add to a config. Real configs copy a few dozen; chained copies
/// that each duplicate the previous level grow exponentially (2^40 values from 40 short lines),
/// and must be refused before they exhaust memory.
pub(crate) const MAX_COPIED_VALUES: usize = 20_000;

enum Directive {
    /// `'_copy: PATH'` as a value.
    Value(String),
    /// `_copy: PATH` as a key of a mapping.
    Key(String),
}

/// A directive being resolved: its internal path and how it reads in a cycle message.
struct Frame {
    site: Vec<usize>,
    shown: String,
}

/// Resolves every `_copy` in the tree, in place.
pub(crate) fn resolve_all(root: &mut Node) -> Result<(), ConfigError> {
    Resolver { stack: Vec::new(), copied: 0 }.resolve_subtree(root, &[])
}

struct Resolver {
    stack: Vec<Frame>,
    /// Values added by copies so far, against [`MAX_COPIED_VALUES`].
    copied: usize,
}

impl Resolver {
    /// Resolves the node at `path` and then everything below it.
    fn resolve_subtree(&mut self, root: &mut Node, path: &[usize]) -> Result<(), ConfigError> {
        self.resolve_site(root, path)?;
        // Resolving descendants never adds or removes entries at `path` (a directive only
        // rewrites its own node), so the count taken here stays valid during the loop.
        let count = root.at(path).map_or(0, Node::child_count);
        let mut child = path.to_vec();
        for i in 0..count {
            child.push(i);
            self.resolve_subtree(root, &child)?;
            child.pop();
        }
        Ok(())
    }

    /// Resolves the node at `path` if it is a directive; its descendants are left alone.
    fn resolve_site(&mut self, root: &mut Node, path: &[usize]) -> Result<(), ConfigError> {
        let Some(node) = root.at(path) else {
            return Ok(());
        };
        let names = root.names(path);
        let directive = match directive(node) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(()),
            Err(reason) => {
                return Err(ConfigError::BadCopy { key_path: names.join("."), origin: node.src.clone(), reason })
            }
        };
        let target = match &directive {
            Directive::Value(t) | Directive::Key(t) => t.clone(),
        };
        let shown = format!("/{} (_copy: {target})", names.join("/"));
        if let Some(pos) = self.stack.iter().position(|f| f.site == path) {
            let mut chain: Vec<&str> = self.stack[pos..].iter().map(|f| f.shown.as_str()).collect();
            chain.push(&shown);
            return Err(ConfigError::CopyCycle { chain: chain.join(" -> ") });
        }
        self.stack.push(Frame { site: path.to_vec(), shown });
        let result = self.apply(root, path, &names, directive);
        self.stack.pop();
        result
    }

    fn apply(
        &mut self,
        root: &mut Node,
        path: &[usize],
        names: &[String],
        directive: Directive,
    ) -> Result<(), ConfigError> {
        let site_src = match root.at(path) {
            Some(n) => n.src.clone(),
            None => return Ok(()),
        };
        let bad = |reason: String| ConfigError::BadCopy { key_path: names.join("."), origin: site_src.clone(), reason };
        let target = match &directive {
            Directive::Value(t) | Directive::Key(t) => t,
        };
        let target_names = join(names, target).map_err(&bad)?;
        let target_path = self.locate(root, &target_names, names, &site_src, target)?;
        self.resolve_subtree(root, &target_path)?;
        let Some(found) = root.at(&target_path) else {
            return Ok(());
        };
        let size = found.node_count();
        if self.copied + size > MAX_COPIED_VALUES {
            return Err(bad(format!(
                "`_copy: {target}` would bring the values added by copies to {}, over the limit of \
                 {MAX_COPIED_VALUES}; copies that copy copies multiply (each level doubling the last), \
                 so copy the settings you need instead of whole copied sections",
                self.copied + size
            )));
        }
        self.copied += size;
        let mut copied = found.clone();
        copied.mark_copied(&mut target_names.clone());

        let Some(site) = root.at_mut(path) else {
            return Ok(());
        };
        match directive {
            Directive::Value(_) => *site = copied,
            Directive::Key(_) => {
                let local: Vec<(Value, Node)> = match &mut site.kind {
                    Kind::Map(entries) => {
                        std::mem::take(entries).into_iter().filter(|(k, _)| !is_copy_key(k)).collect()
                    }
                    _ => Vec::new(),
                };
                if local.is_empty() {
                    *site = copied;
                } else if matches!(copied.kind, Kind::Map(_)) {
                    merge(&mut copied, Node { kind: Kind::Map(local), src: site_src.clone() });
                    *site = copied;
                } else {
                    return Err(bad(format!(
                        "`_copy: {target}` points to {}, which cannot be merged with the other keys \
                         of this mapping; point it at a mapping or use the value form \
                         `'_copy: {target}'`",
                        found_kind(&copied)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Finds the internal path of `target_names`, resolving directives met on the way down
    /// (a path may lead through a value that is itself a copy).
    fn locate(
        &mut self,
        root: &mut Node,
        target_names: &[String],
        site_names: &[String],
        site_src: &crate::Source,
        written: &str,
    ) -> Result<Vec<usize>, ConfigError> {
        let mut idx = Vec::with_capacity(target_names.len());
        for (depth, seg) in target_names.iter().enumerate() {
            self.resolve_site(root, &idx)?;
            let Some(node) = root.at(&idx) else {
                break;
            };
            match node.find_child(seg) {
                Some(i) => idx.push(i),
                None => {
                    return Err(ConfigError::CopyTargetMissing {
                        key_path: site_names.join("."),
                        origin: site_src.clone(),
                        target: written.to_string(),
                        missing: format!(
                            "`/{}` has no `{seg}` ({})",
                            target_names[..depth].join("/"),
                            node.child_names()
                        ),
                    })
                }
            }
        }
        Ok(idx)
    }
}

fn is_copy_key(k: &Value) -> bool {
    matches!(k, Value::String(s) if s == COPY_KEY)
}

fn found_kind(n: &Node) -> &'static str {
    match &n.kind {
        Kind::Map(_) => "a mapping",
        Kind::Seq(_) => "a list",
        Kind::Leaf(_) => "a single value",
    }
}

/// Recognises a directive; `Err` carries what is wrong with a malformed one.
fn directive(node: &Node) -> Result<Option<Directive>, String> {
    match &node.kind {
        Kind::Leaf(Value::String(s)) => match s.strip_prefix(COPY_PREFIX) {
            Some(t) => non_empty(t.trim()).map(|t| Some(Directive::Value(t))),
            None => Ok(None),
        },
        Kind::Map(entries) => match entries.iter().find(|(k, _)| is_copy_key(k)) {
            Some((_, n)) => match &n.kind {
                Kind::Leaf(Value::String(t)) => non_empty(t.trim()).map(|t| Some(Directive::Key(t))),
                other => Err(format!(
                    "`_copy` must be a key path like `/nas/search/loader` or `../loader`, found {}",
                    match other {
                        Kind::Leaf(v) => crate::tree::describe(v),
                        Kind::Map(_) => "a mapping".to_string(),
                        Kind::Seq(_) => "a list".to_string(),
                    }
                )),
            },
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

fn non_empty(t: &str) -> Result<String, String> {
    if t.is_empty() {
        Err("`_copy` needs a key path like `/nas/search/loader` or `../loader`".to_string())
    } else {
        Ok(t.to_string())
    }
}

/// Joins a `/`-separated copy path onto `base`, the names of the node holding the directive.
fn join(base: &[String], target: &str) -> Result<Vec<String>, String> {
    let (mut out, rest) = match target.strip_prefix('/') {
        Some(rest) => (Vec::new(), rest),
        None => (base.to_vec(), target),
    };
    for seg in rest.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(format!(
                        "`_copy: {target}` climbs above the top of the tree (it is relative to `/{}`)",
                        base.join("/")
                    ));
                }
            }
            s => out.push(s.to_string()),
        }
    }
    Ok(out)
}
