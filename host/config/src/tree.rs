//! The provenance-carrying tree used while resolving.
//!
//! Provenance travels with each node rather than living in a side table keyed by path, because
//! merges, `_copy` and `--set` move and replace whole subtrees; a node that moves keeps its
//! origin for free and the final `sources` map is read off the finished tree in one walk.

use std::collections::BTreeMap;

use yaml_serde::{Mapping, Value};

use crate::error::Source;

/// A YAML node plus the origin of its last writer.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub src: Source,
}

/// Only mappings and sequences are opened up: they are what merges, `_copy` and `--set` walk
/// into. Everything else, tagged values included, is carried as an opaque leaf.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// Entries in file order; a `Vec` because configs are small and order must survive.
    Map(Vec<(Value, Node)>),
    Seq(Vec<Node>),
    Leaf(Value),
}

impl Node {
    pub fn empty_map(src: Source) -> Node {
        Node { kind: Kind::Map(Vec::new()), src }
    }

    pub fn from_value(value: Value, src: &Source) -> Node {
        let kind = match value {
            Value::Mapping(m) => Kind::Map(m.into_iter().map(|(k, v)| (k, Node::from_value(v, src))).collect()),
            Value::Sequence(s) => Kind::Seq(s.into_iter().map(|v| Node::from_value(v, src)).collect()),
            other => Kind::Leaf(other),
        };
        Node { kind, src: src.clone() }
    }

    pub fn into_value(self) -> Value {
        match self.kind {
            Kind::Map(entries) => {
                let mut m = Mapping::new();
                for (k, v) in entries {
                    m.insert(k, v.into_value());
                }
                Value::Mapping(m)
            }
            Kind::Seq(items) => Value::Sequence(items.into_iter().map(Node::into_value).collect()),
            Kind::Leaf(v) => v,
        }
    }

    /// Child at index `i` (map entry or sequence item), the unit of internal paths.
    pub fn child(&self, i: usize) -> Option<&Node> {
        match &self.kind {
            Kind::Map(e) => e.get(i).map(|(_, n)| n),
            Kind::Seq(s) => s.get(i),
            Kind::Leaf(_) => None,
        }
    }

    pub fn child_mut(&mut self, i: usize) -> Option<&mut Node> {
        match &mut self.kind {
            Kind::Map(e) => e.get_mut(i).map(|(_, n)| n),
            Kind::Seq(s) => s.get_mut(i),
            Kind::Leaf(_) => None,
        }
    }

    pub fn child_count(&self) -> usize {
        match &self.kind {
            Kind::Map(e) => e.len(),
            Kind::Seq(s) => s.len(),
            Kind::Leaf(_) => 0,
        }
    }

    /// This node and everything below it.
    pub fn node_count(&self) -> usize {
        1 + match &self.kind {
            Kind::Map(e) => e.iter().map(|(_, n)| n.node_count()).sum(),
            Kind::Seq(s) => s.iter().map(Node::node_count).sum(),
            Kind::Leaf(_) => 0,
        }
    }

    /// Name of child `i` as it appears in a dotted key path.
    pub fn child_name(&self, i: usize) -> String {
        match &self.kind {
            Kind::Map(e) => e.get(i).map(|(k, _)| key_str(k)).unwrap_or_default(),
            _ => i.to_string(),
        }
    }

    /// Index of the child a path segment names: a key for mappings, a number for sequences.
    pub fn find_child(&self, seg: &str) -> Option<usize> {
        match &self.kind {
            Kind::Map(e) => e.iter().position(|(k, _)| key_str(k) == seg),
            Kind::Seq(s) => seg.parse::<usize>().ok().filter(|i| *i < s.len()),
            Kind::Leaf(_) => None,
        }
    }

    /// Keys (or the index range) available here, for "did you mean" style messages.
    pub fn child_names(&self) -> String {
        match &self.kind {
            Kind::Map(e) if e.is_empty() => "it is an empty mapping".to_string(),
            Kind::Map(e) => format!("keys there: {}", e.iter().map(|(k, _)| key_str(k)).collect::<Vec<_>>().join(", ")),
            Kind::Seq(s) => format!("it is a list of {} items", s.len()),
            Kind::Leaf(v) => format!("it is {}", describe(v)),
        }
    }

    pub fn at(&self, path: &[usize]) -> Option<&Node> {
        path.iter().try_fold(self, |n, &i| n.child(i))
    }

    pub fn at_mut(&mut self, path: &[usize]) -> Option<&mut Node> {
        path.iter().try_fold(self, |n, &i| n.child_mut(i))
    }

    /// Dotted-segment names of an internal index path.
    pub fn names(&self, path: &[usize]) -> Vec<String> {
        let mut out = Vec::with_capacity(path.len());
        let mut node = Some(self);
        for &i in path {
            match node {
                Some(n) => {
                    out.push(n.child_name(i));
                    node = n.child(i);
                }
                None => break,
            }
        }
        out
    }

    /// Rewrites every origin in this subtree as "copied from here", keeping the old origin.
    pub fn mark_copied(&mut self, from: &mut Vec<String>) {
        self.src = Source::Copy { from: from.join("."), origin: Box::new(self.src.clone()) };
        match &mut self.kind {
            Kind::Map(e) => {
                for (k, n) in e {
                    from.push(key_str(k));
                    n.mark_copied(from);
                    from.pop();
                }
            }
            Kind::Seq(s) => {
                for (i, n) in s.iter_mut().enumerate() {
                    from.push(i.to_string());
                    n.mark_copied(from);
                    from.pop();
                }
            }
            Kind::Leaf(_) => {}
        }
    }

    pub fn collect_sources(&self, prefix: &mut Vec<String>, out: &mut BTreeMap<String, Source>) {
        let mut visit = |name: String, n: &Node, prefix: &mut Vec<String>| {
            prefix.push(name);
            out.insert(prefix.join("."), n.src.clone());
            n.collect_sources(prefix, out);
            prefix.pop();
        };
        match &self.kind {
            Kind::Map(e) => {
                for (k, n) in e {
                    visit(key_str(k), n, prefix);
                }
            }
            Kind::Seq(s) => {
                for (i, n) in s.iter().enumerate() {
                    visit(i.to_string(), n, prefix);
                }
            }
            Kind::Leaf(_) => {}
        }
    }
}

/// Deep merge: mappings merge key by key, anything else on top replaces what is below.
///
/// Sequences replace rather than concatenate so that an override file can shorten a list.
pub(crate) fn merge(base: &mut Node, over: Node) {
    match (&mut base.kind, over.kind) {
        (Kind::Map(b), Kind::Map(o)) => {
            base.src = over.src;
            for (k, v) in o {
                match b.iter_mut().find(|(bk, _)| *bk == k) {
                    Some((_, slot)) => merge(slot, v),
                    None => b.push((k, v)),
                }
            }
        }
        (_, kind) => *base = Node { kind, src: over.src },
    }
}

/// How a mapping key is spelled in dotted key paths and `_copy` paths.
pub(crate) fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".to_string(),
        other => describe(other),
    }
}

/// A short human description of a value for error messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Rejects mapping keys that would not survive a write/read cycle (see
/// [`crate::ConfigError::ReservedKey`]).
pub(crate) fn check_keys(node: &Node, path: &mut Vec<String>) -> Result<(), crate::ConfigError> {
    match &node.kind {
        Kind::Map(e) => {
            for (k, n) in e {
                if matches!(k, Value::Mapping(_) | Value::Sequence(_)) {
                    return Err(crate::ConfigError::ComplexKey {
                        key_path: path.join("."),
                        found: describe(k),
                        origin: n.src.clone(),
                    });
                }
                if let Value::Tagged(t) = k {
                    return Err(crate::ConfigError::Tagged {
                        key_path: path.join("."),
                        tag: t.tag.to_string(),
                        origin: n.src.clone(),
                    });
                }
                if let Value::String(s) = k {
                    if s.starts_with('!') {
                        return Err(crate::ConfigError::ReservedKey {
                            key_path: path.join("."),
                            key: s.clone(),
                            origin: n.src.clone(),
                        });
                    }
                }
                path.push(key_str(k));
                check_keys(n, path)?;
                path.pop();
            }
        }
        Kind::Seq(s) => {
            for (i, n) in s.iter().enumerate() {
                path.push(i.to_string());
                check_keys(n, path)?;
                path.pop();
            }
        }
        Kind::Leaf(Value::Tagged(t)) => {
            return Err(crate::ConfigError::Tagged {
                key_path: path.join("."),
                tag: t.tag.to_string(),
                origin: node.src.clone(),
            })
        }
        Kind::Leaf(_) => {}
    }
    Ok(())
}
