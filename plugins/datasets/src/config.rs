//! Reading one adapter's keys out of the dataset section, and the checks every adapter shares.
//!
//! The host hands an adapter its own keys of the `dataset:` section plus the facts in
//! [`HOST_KEYS`], which it checks against the files (`num_classes`, `channels`, `image_size`,
//! `class_names`, `name` for messages). Every other key must be
//! one of the adapter's own keys; anything else is rejected with its name, so a typo never
//! silently falls back to a default. A key whose value is null counts as absent, so `key: ~`
//! clears a key inherited from an included file.
use anyhow::{anyhow, bail, Context, Result};
use archai_dataset_formats::RawSplit;
use archai_plugin_api::tch::Tensor;
use archai_plugin_api::Split;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Keys every adapter accepts next to its own: the facts the host passes (`name`, `num_classes`,
/// `channels`, `image_size`; the host keeps `adapter`, `mean` and `std` to itself) and
/// `class_names`.
pub const HOST_KEYS: &[&str] = &["name", "num_classes", "channels", "image_size", "class_names"];

/// The splits an adapter reads. The host makes the validation split from `train`.
pub const SPLITS: &[&str] = &["train", "test"];

/// The host keys an adapter checks the files against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Common {
    /// `num_classes`: labels must lie in `0..num_classes`.
    pub num_classes: Option<usize>,
    /// `channels`: the channel count the files must have.
    pub channels: Option<usize>,
    /// `image_size`: `n` (square) or `[height, width]`.
    pub image_size: Option<(usize, usize)>,
    /// `class_names`: names to report instead of the adapter's own (one per class).
    pub class_names: Option<Vec<String>>,
}

/// The dataset section as one adapter sees it: its own keys, still to be taken one by one (so that
/// a type error names its key), and the host keys it checks.
pub struct Section {
    /// `dataset `NAME` (adapter `ADAPTER`)`, the prefix of every error.
    pub label: String,
    own: Map<String, Value>,
    /// The host keys the adapter checks.
    pub common: Common,
}

impl Section {
    /// Splits `config` into the adapter's `keys` and the host keys; any other key is an error
    /// naming it (with a suggestion when it looks like a misspelling).
    pub fn parse(adapter: &str, keys: &[&str], config: &Value) -> Result<Self> {
        let Value::Object(map) = config else {
            bail!("adapter `{adapter}`: the dataset config must be a mapping of keys, got {config}");
        };
        let name = map.get("name").and_then(Value::as_str);
        let label = match name {
            Some(n) => format!("dataset `{n}` (adapter `{adapter}`)"),
            None => format!("dataset (adapter `{adapter}`)"),
        };
        let mut own = Map::new();
        for (k, v) in map {
            if keys.contains(&k.as_str()) {
                own.insert(k.clone(), v.clone());
            } else if !HOST_KEYS.contains(&k.as_str()) && !v.is_null() {
                bail!(
                    "{label}: unknown key `{k}`{}; the keys of adapter `{adapter}` are: {} (the host also reads: {})",
                    suggestion(k, keys.iter().chain(HOST_KEYS)),
                    keys.join(", "),
                    HOST_KEYS.join(", ")
                );
            }
        }
        let common = Common {
            num_classes: positive(map, "num_classes").with_context(|| label.clone())?,
            channels: positive(map, "channels").with_context(|| label.clone())?,
            image_size: image_size(map).with_context(|| label.clone())?,
            class_names: match map.get("class_names") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    serde_json::from_value::<Vec<String>>(v.clone())
                        .map_err(|e| anyhow!("{label}: `class_names` must be a list of names: {e}"))?,
                ),
            },
        };
        if let (Some(names), Some(n)) = (&common.class_names, common.num_classes) {
            if names.len() != n {
                bail!("{label}: `class_names` lists {} names but `num_classes` is {n}; make them agree", names.len());
            }
        }
        Ok(Self { label, own, common })
    }

    /// The adapter key `key`, or `None` when absent or null.
    pub fn optional<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        match self.own.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let text = v.to_string();
                serde_json::from_value(v).map(Some).map_err(|e| anyhow!("{}: key `{key}` ({text}): {e}", self.label))
            }
        }
    }

    /// The adapter key `key`; `what` says what to write there when it is missing.
    pub fn required<T: DeserializeOwned>(&mut self, key: &str, what: &str) -> Result<T> {
        let label = self.label.clone();
        self.optional(key)?.ok_or_else(|| anyhow!("{label}: missing key `{key}` ({what})"))
    }

    /// A list of file names: one string or a list of strings.
    pub fn optional_files(&mut self, key: &str) -> Result<Option<Vec<PathBuf>>> {
        let label = self.label.clone();
        let files = match self.own.remove(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => vec![PathBuf::from(s)],
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(PathBuf::from(s)),
                    other => Err(anyhow!("{label}: key `{key}`: file names must be strings, got {other}")),
                })
                .collect::<Result<Vec<_>>>()?,
            Some(other) => bail!("{label}: key `{key}` must be a list of file names, got {other}"),
        };
        if files.is_empty() {
            bail!("{label}: key `{key}` lists no files");
        }
        Ok(Some(files))
    }
}

/// ` (did you mean `x`?)` when a valid key is within a small edit distance of `key`.
fn suggestion<'a>(key: &str, valid: impl Iterator<Item = &'a &'a str>) -> String {
    let best = valid.map(|v| (strsim::levenshtein(key, v), *v)).min();
    match best {
        Some((d, v)) if d <= 2.max(key.len() / 3) && d < key.len() => format!(" (did you mean `{v}`?)"),
        _ => String::new(),
    }
}

fn positive(map: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(Some(n as usize)),
            _ => bail!("`{key}` must be a positive integer, got {v}"),
        },
    }
}

fn image_size(map: &Map<String, Value>) -> Result<Option<(usize, usize)>> {
    let bad = |v: &Value| anyhow!("`image_size` must be a positive integer or [height, width], got {v}");
    match map.get("image_size") {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => match n.as_u64() {
            Some(s) if s > 0 => Ok(Some((s as usize, s as usize))),
            _ => Err(bad(v)),
        },
        Some(v @ Value::Array(a)) => match a.as_slice() {
            [h, w] => match (h.as_u64(), w.as_u64()) {
                (Some(h), Some(w)) if h > 0 && w > 0 => Ok(Some((h as usize, w as usize))),
                _ => Err(bad(v)),
            },
            _ => Err(bad(v)),
        },
        Some(v) => Err(bad(v)),
    }
}

/// Errors unless `split` is one of [`SPLITS`].
pub fn check_split_name(label: &str, split: &str) -> Result<()> {
    if !SPLITS.contains(&split) {
        bail!(
            "{label}: unknown split `{split}`; the splits are: {} (the host makes the validation split from train)",
            SPLITS.join(", ")
        );
    }
    Ok(())
}

/// `28` for a square size, `[28, 32]` otherwise, as one would write it in the YAML.
pub fn size_text((h, w): (usize, usize)) -> String {
    if h == w {
        h.to_string()
    } else {
        format!("[{h}, {w}]")
    }
}

/// What the adapter read and how to tell the user where it came from.
pub struct Loaded<'a> {
    /// The split as read.
    pub raw: RawSplit,
    /// The file (or folder) holding the images, named in shape errors.
    pub images_path: &'a Path,
    /// The config key that names it (`train.images`, `train_dir`, ...).
    pub images_key: &'a str,
    /// Extra advice for shape errors (for example about `layout`); empty or starting with "; ".
    pub shape_hint: &'a str,
    /// The class names to report when the config gives none.
    pub class_names: Vec<String>,
}

impl Section {
    /// Checks a split read by an adapter against the config and turns it into tensors: the
    /// shape against `channels`/`image_size`, the labels against `num_classes` (or the class
    /// count the format itself knows), and the class names.
    pub fn finish(&self, loaded: Loaded<'_>) -> Result<Split> {
        let Loaded { raw, images_path, images_key, shape_hint, class_names } = loaded;
        self.check_shape(&raw, images_path, images_key, shape_hint)?;
        let num_classes = self.common.num_classes.unwrap_or(class_names.len());
        raw.validate(num_classes).with_context(|| self.label.clone())?;
        let class_names = self.common.class_names.clone().unwrap_or(class_names);
        let dims = [raw.n, raw.channels, raw.height, raw.width].map(|d| d as i64);
        let images = Tensor::from_slice(&raw.images).view(dims);
        let labels = Tensor::from_slice(&raw.labels);
        Ok(Split { images, labels, class_names })
    }

    fn check_shape(&self, raw: &RawSplit, path: &Path, key: &str, hint: &str) -> Result<()> {
        let found_size = (raw.height, raw.width);
        let mut said = Vec::new();
        let mut fix = Vec::new();
        if let Some(c) = self.common.channels.filter(|&c| c != raw.channels) {
            said.push(format!("`channels: {c}`"));
            fix.push(format!("`channels: {}`", raw.channels));
        }
        if let Some(s) = self.common.image_size.filter(|&s| s != found_size) {
            said.push(format!("`image_size: {}`", size_text(s)));
            fix.push(format!("`image_size: {}`", size_text(found_size)));
        }
        if said.is_empty() {
            return Ok(());
        }
        bail!(
            "{}: {} holds {}x{}x{} images (channels x height x width) but the dataset config says {}; \
             set {} in the dataset config, or point `{key}` at the right data{hint}",
            self.label,
            path.display(),
            raw.channels,
            raw.height,
            raw.width,
            said.join(" and "),
            fix.join(" and ")
        )
    }
}

/// `"0"`, `"1"`, ... for formats without class names: one per class of the config when it gives
/// `num_classes`, otherwise the reader's (up to the largest label seen).
pub fn numeric_names(common: &Common, raw: &RawSplit) -> Vec<String> {
    match common.num_classes {
        Some(n) => (0..n).map(|i| i.to_string()).collect(),
        None => raw.class_names.clone(),
    }
}
