//! The one error type of this crate.
//!
//! Every variant carries what a user needs to fix the problem without reading code: the file
//! (or `--set` flag) the offending text came from, the key path inside the tree, and what was
//! expected there.

use std::fmt;
use std::path::PathBuf;

/// Where the value at a key path was last written.
///
/// Recorded for every key of a [`crate::ResolvedConfig`] so that errors found long after loading
/// (typed deserialization, semantic checks in the host) can still tell the user which file or
/// flag to edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Written in this YAML file (path as it was reached: the top-level path joined with the
    /// `__include__` paths, lexically normalised).
    File(PathBuf),
    /// Written by a `--set` flag; holds the flag's whole text (`a.b.c=value`).
    SetFlag(String),
    /// Produced by `_copy`: a copy of the value at key path `from` (dotted), whose own origin is
    /// `origin` (which may itself be a copy when copies chain).
    Copy {
        /// Dotted key path of the value that was copied.
        from: String,
        /// Where the copied value came from.
        origin: Box<Source>,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::SetFlag(flag) => write!(f, "--set {flag}"),
            Source::Copy { from, origin } => {
                write!(f, "_copy of `{from}`, which came from {origin}")
            }
        }
    }
}

/// Displays a dotted key path, spelling out the root because an empty string reads as a bug.
pub(crate) fn show_path(path: &str) -> String {
    if path.is_empty() {
        "(top level)".to_string()
    } else {
        path.to_string()
    }
}

/// "; did you mean `x`? valid keys here: a, b" -- the suggestion first because it is the
/// likely fix, the full list after it for when the guess is wrong.
fn show_hint(suggestion: &Option<String>, kind: &str, valid: &[String]) -> String {
    let mut out = match suggestion {
        Some(s) => format!("; did you mean `{s}`? "),
        None => "; ".to_string(),
    };
    if valid.is_empty() {
        out.push_str(&format!("no {kind} are accepted here"));
    } else {
        out.push_str(&format!("valid {kind} here: {}", valid.join(", ")));
    }
    out
}

/// Everything that can go wrong while loading, resolving or typing a configuration.
///
/// Match on the variant to react programmatically; print it (`Display`) to tell a user what to
/// fix: each message names the file or flag, the key path and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config or toy file named directly (not through `__include__`) cannot be read.
    #[error("cannot read {role} `{}`: {source}", file.display())]
    Read {
        /// What the file was for ("config file", "toy file").
        role: &'static str,
        /// The path that was tried.
        file: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },

    /// An `__include__` entry points to a file that cannot be read.
    #[error(
        "`{}`: cannot load `__include__: {include}`: tried `{}`: {source}",
        file.display(),
        tried.display()
    )]
    MissingInclude {
        /// The file containing the `__include__`.
        file: PathBuf,
        /// The include path as written.
        include: String,
        /// The path it resolved to (relative to the including file's directory).
        tried: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },

    /// A file is not valid YAML (the message carries line and column).
    #[error("`{}` is not valid YAML: {message}", file.display())]
    Parse {
        /// The file that failed to parse.
        file: PathBuf,
        /// The parser's message.
        message: String,
    },

    /// A file's top level is not a mapping of keys.
    #[error(
        "`{}`: a config file must be a mapping of keys at the top level, found {found}",
        file.display()
    )]
    NotAMapping {
        /// The offending file.
        file: PathBuf,
        /// What the top level was instead.
        found: String,
    },

    /// `__include__` holds something other than a path or a list of paths.
    #[error(
        "`{}`: `__include__` must be a path or a list of paths, found {found}",
        file.display()
    )]
    BadInclude {
        /// The file containing the `__include__`.
        file: PathBuf,
        /// What was found instead.
        found: String,
    },

    /// `__include__` appears below the top level of a file, where it has no meaning.
    #[error(
        "`{}`: `__include__` is only allowed at the top level of a file, found at `{key_path}`",
        file.display()
    )]
    NestedInclude {
        /// The file containing the misplaced `__include__`.
        file: PathBuf,
        /// Dotted key path of the mapping holding it.
        key_path: String,
    },

    /// Files include each other in a loop; `chain` lists them in include order.
    #[error("`__include__` cycle: {chain}")]
    IncludeCycle {
        /// The files in include order, joined with ` -> `, ending with the repeated file.
        chain: String,
    },

    /// A mapping key would not survive being written back to YAML (keys starting with `!` are
    /// read back as tags), so config_used.yaml could not reproduce the run.
    #[error(
        "`{}` (from {origin}): key `{key}` starts with `!`, which YAML reads back as a tag; rename it",
        show_path(key_path)
    )]
    ReservedKey {
        /// Dotted key path of the mapping holding the key.
        key_path: String,
        /// The key itself.
        key: String,
        /// Where it was written.
        origin: Source,
    },

    /// A YAML tag (`!name value`): configs hold plain values, and a tagged one could not be
    /// written back to config_used.yaml.
    #[error("`{}` (from {origin}): the YAML tag `{tag}` is not supported in configs; remove it", show_path(key_path))]
    Tagged {
        /// Dotted key path of the tagged value (or of the mapping holding a tagged key).
        key_path: String,
        /// The tag as written.
        tag: String,
        /// Where it was written.
        origin: Source,
    },

    /// A mapping key that is itself a mapping or a list (`? {a: 1}: x`, `{[a, b]: x}`): configs
    /// name their keys, and such a key could not be written back to config_used.yaml.
    #[error(
        "`{}` (from {origin}): a key must be a name or a number, found {found}; write it as a plain key",
        show_path(key_path)
    )]
    ComplexKey {
        /// Dotted key path of the mapping holding the key.
        key_path: String,
        /// What the key was.
        found: String,
        /// Where it was written.
        origin: Source,
    },

    /// `_copy` directives refer to each other in a loop.
    #[error("`_copy` cycle: {chain}")]
    CopyCycle {
        /// The `_copy` sites (as `/`-separated paths) in resolution order, ending with the
        /// repeated one.
        chain: String,
    },

    /// A `_copy` points to a key path that does not exist.
    #[error("`{}` (from {origin}): `_copy: {target}` points to nothing: {missing}", show_path(key_path))]
    CopyTargetMissing {
        /// Dotted key path where the `_copy` stands.
        key_path: String,
        /// Where the `_copy` was written.
        origin: Source,
        /// The target as written.
        target: String,
        /// Which step of the path failed, with the keys available there.
        missing: String,
    },

    /// A `_copy` directive is malformed (target not a string, climbs above the root, merges a
    /// non-mapping with local keys, ...).
    #[error("`{}` (from {origin}): {reason}", show_path(key_path))]
    BadCopy {
        /// Dotted key path where the `_copy` stands.
        key_path: String,
        /// Where the `_copy` was written.
        origin: Source,
        /// What is wrong and what was expected.
        reason: String,
    },

    /// Toy mode was requested but no toy file was given and none was found.
    #[error(
        "toy mode requested ({requested_by}) but no toy file was found: no ancestor directory \
         of `{}` or of the files it includes is named `confs` and contains `toy.yaml`; include an \
         experiment under confs/ or merge your toy budgets with --set",
        conf.display()
    )]
    ToyFileNotFound {
        /// The config file whose ancestors were searched.
        conf: PathBuf,
        /// What asked for toy mode (`--toy`, `toy: true` in a file, a `--set` flag).
        requested_by: String,
    },

    /// The top-level `toy` key is not a boolean.
    #[error("top-level `toy` (from {origin}) must be true or false, found {found}")]
    BadToyFlag {
        /// Where the value was written.
        origin: Source,
        /// What was found.
        found: String,
    },

    /// A `--set` flag is malformed or cannot be applied to the tree.
    #[error("--set {flag}: {reason}")]
    BadSet {
        /// The flag's text.
        flag: String,
        /// What is wrong and what was expected.
        reason: String,
    },

    /// Typed deserialization met a key the target struct does not have.
    #[error("unknown key `{key_path}` (from {origin}){}", show_hint(suggestion, "keys", valid))]
    UnknownKey {
        /// Dotted key path of the unknown key.
        key_path: String,
        /// Where it was written.
        origin: Source,
        /// The closest valid key, when one is close enough to be a likely typo.
        suggestion: Option<String>,
        /// All keys the mapping accepts.
        valid: Vec<String>,
    },

    /// Typed deserialization met a value that is not one of an enum's variants.
    #[error("{key_path} (from {origin}): unknown value `{value}`{}", show_hint(suggestion, "values", valid))]
    UnknownVariant {
        /// Dotted key path of the value.
        key_path: String,
        /// Where it was written.
        origin: Source,
        /// The value found.
        value: String,
        /// The closest valid value, when one is close enough.
        suggestion: Option<String>,
        /// All values accepted.
        valid: Vec<String>,
    },

    /// Typed deserialization is missing a required key.
    #[error("missing required key `{field}` in `{}` (from {origin})", show_path(mapping_path))]
    MissingKey {
        /// Dotted key path of the mapping that lacks the key.
        mapping_path: String,
        /// The missing key.
        field: String,
        /// Where the mapping was (last) written.
        origin: Source,
    },

    /// Typed deserialization met a value of the wrong type or out of range.
    #[error("{} (from {origin}): {message}", show_path(key_path))]
    InvalidValue {
        /// Dotted key path of the value.
        key_path: String,
        /// Where it was written.
        origin: Source,
        /// serde's description: what was found and what was expected.
        message: String,
    },

    /// The tree cannot be written as YAML (only possible for trees not produced by
    /// [`crate::load_tree`]).
    #[error("cannot write the config tree as YAML: {message}")]
    Serialize {
        /// The serializer's message.
        message: String,
    },
}
