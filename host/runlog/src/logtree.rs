//! log.yaml: the machine-readable record of a run, kept in memory and mirrored to disk.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use yaml_serde::{Mapping, Value};

use crate::error::{Result, RunLogError};

/// A tree of YAML mappings addressed by '/'-separated key paths
/// (`search/epochs/3/train`), mirrored to a file by [`LogTree::flush`].
///
/// One process owns a log file at a time; the run directory enforces that.
#[derive(Debug, Clone)]
pub struct LogTree {
    path: PathBuf,
    root: Value,
}

impl LogTree {
    /// Opens the tree mirrored to `path` (normally `RUN_DIR/log.yaml`).
    ///
    /// An existing file is loaded, so a resumed run keeps what earlier attempts logged; a
    /// missing or empty one gives an empty tree. Nothing is written until [`LogTree::flush`].
    pub fn open(path: impl AsRef<Path>) -> Result<LogTree> {
        let path = path.as_ref().to_path_buf();
        remove_stale_temps(&path);
        let root = match fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => Value::Mapping(Mapping::new()),
            Ok(text) => {
                let v: Value = yaml_serde::from_str(&text)
                    .map_err(|source| RunLogError::YamlParse { path: path.clone(), source })?;
                match v {
                    Value::Mapping(_) => v,
                    Value::Null => Value::Mapping(Mapping::new()),
                    _ => return Err(RunLogError::LogNotMapping(path)),
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Value::Mapping(Mapping::new()),
            Err(e) => return Err(RunLogError::io("read", path, e)),
        };
        Ok(LogTree { path, root })
    }

    /// The file this tree is mirrored to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole tree (always a mapping).
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Stores `value` at `key_path`, creating the mappings along the way.
    ///
    /// When both the stored value and `value` are mappings they are merged deeply (keys of
    /// `value` win), so `set("e/3", {loss})` then `set("e/3", {top1})` keeps both; otherwise
    /// the stored value is replaced. Segments that are plain decimal integers become integer
    /// keys (`epochs: {3: ...}`), never list indices: the tree holds no lists of our making.
    /// An empty key path merges into the root.
    pub fn set(&mut self, key_path: &str, value: impl Serialize) -> Result<()> {
        let new = yaml_serde::to_value(value)
            .map_err(|source| RunLogError::Serialize { key_path: key_path.to_string(), source })?;
        let segs = split(key_path)?;
        let mut node = &mut self.root;
        for (i, seg) in segs.iter().enumerate() {
            // A null (e.g. from a `set(k, ())`) carries nothing, so it may become a mapping.
            if node.is_null() {
                *node = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(map) = node else {
                return Err(RunLogError::KeyPathConflict {
                    key_path: key_path.to_string(),
                    prefix: segs[..i].join("/"),
                });
            };
            let key = existing_key(map, seg).unwrap_or_else(|| segment_key(seg));
            node = map.entry(key).or_insert_with(|| Value::Mapping(Mapping::new()));
        }
        merge(node, new);
        Ok(())
    }

    /// The value at `key_path`, if any. An empty key path gives the root.
    pub fn get(&self, key_path: &str) -> Option<&Value> {
        let segs = split(key_path).ok()?;
        let mut node = &self.root;
        for seg in &segs {
            let map = node.as_mapping()?;
            let key = existing_key(map, seg)?;
            node = map.get(&key)?;
        }
        Some(node)
    }

    /// Writes the tree to its file atomically: temp file in the same directory, write,
    /// fsync, rename over the target, fsync the directory.
    ///
    /// The rename is what makes a reader (or a crash, kill -9 included) see either the old
    /// or the new complete file, never a partial one; the fsyncs extend that to power loss.
    pub fn flush(&self) -> Result<()> {
        let text = yaml_serde::to_string(&self.root)
            .map_err(|source| RunLogError::Emit { path: self.path.clone(), source })?;
        let tmp = temp_path(&self.path, std::process::id());
        // Errors name the log itself: the temporary file beside it is an implementation detail.
        let written = File::create(&tmp).map_err(|e| RunLogError::io("write", &self.path, e)).and_then(|mut f| {
            f.write_all(text.as_bytes()).map_err(|e| RunLogError::io("write", &self.path, e))?;
            f.sync_all().map_err(|e| RunLogError::io("fsync", &self.path, e))
        });
        let renamed = written.and_then(|()| {
            fs::rename(&tmp, &self.path).map_err(|e| RunLogError::io("rename temp file onto", &self.path, e))
        });
        if renamed.is_err() {
            // A full disk leaves a partial temp file; it would hold on to the space it took.
            let _ = fs::remove_file(&tmp);
        }
        renamed?;
        sync_dir(&parent_dir(&self.path))
    }
}

/// `.log.yaml.<pid>.tmp` beside the target: the same directory keeps the rename atomic (one
/// filesystem), the pid keeps two processes from writing through each other's temp file.
fn temp_path(path: &Path, pid: u32) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "log.yaml".to_string());
    parent_dir(path).join(format!(".{name}.{pid}.tmp"))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A process killed between creating and renaming its temp file leaves it behind; the next
/// owner of the log removes such leftovers. Failing to do so is harmless, hence no error.
fn remove_stale_temps(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = file_name.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(".tmp")) {
            if pid.parse::<u32>().is_ok() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    // The rename lives in the directory's data; without this a power cut could lose it.
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| RunLogError::io("fsync directory", dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    // Directories cannot be opened for fsync on this platform; rename is still atomic.
    Ok(())
}

fn split(key_path: &str) -> Result<Vec<&str>> {
    let trimmed = key_path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let segs: Vec<&str> = trimmed.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(RunLogError::InvalidKeyPath(key_path.to_string()));
    }
    Ok(segs)
}

/// Only canonical integers ("3", "-1", not "03" or "+3") become integer keys, so the key
/// written to YAML reads back as the same key.
fn segment_key(seg: &str) -> Value {
    let digits = seg.strip_prefix('-').unwrap_or(seg);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && seg != "-0";
    if canonical {
        if let Ok(i) = seg.parse::<i64>() {
            return Value::Number(i.into());
        }
        if let Ok(u) = seg.parse::<u64>() {
            return Value::Number(u.into());
        }
    }
    Value::String(seg.to_string())
}

/// The key under which `seg` is already stored, trying both spellings of a numeric segment:
/// a hand-edited log may have `"3":` where we would write `3:`.
fn existing_key(map: &Mapping, seg: &str) -> Option<Value> {
    let primary = segment_key(seg);
    if map.contains_key(&primary) {
        return Some(primary);
    }
    let alt = Value::String(seg.to_string());
    if map.contains_key(&alt) {
        return Some(alt);
    }
    None
}

fn merge(dst: &mut Value, src: Value) {
    match (dst, src) {
        (Value::Mapping(d), Value::Mapping(s)) => {
            for (k, v) in s {
                // `3` and `"3"` are one key here, as they are for key paths: merging a
                // serialized HashMap<String, _> into `epochs: {3: ..}` must not fork it.
                let existing = match &k {
                    Value::String(seg) => existing_key(d, seg),
                    Value::Number(n) => existing_key(d, &n.to_string()),
                    _ => None,
                };
                let key = existing.unwrap_or_else(|| k.clone());
                match d.get_mut(&key) {
                    Some(slot) => merge(slot, v),
                    None => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (dst, src) => *dst = src,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_segments_are_integer_keys_only_when_canonical() {
        assert_eq!(segment_key("3"), Value::Number(3.into()));
        assert_eq!(segment_key("-1"), Value::Number((-1).into()));
        assert_eq!(segment_key("0"), Value::Number(0.into()));
        assert_eq!(segment_key("03"), Value::String("03".into()));
        assert_eq!(segment_key("-0"), Value::String("-0".into()));
        assert_eq!(segment_key("+3"), Value::String("+3".into()));
        assert_eq!(segment_key("1.5"), Value::String("1.5".into()));
        assert_eq!(segment_key("train"), Value::String("train".into()));
    }

    #[test]
    fn split_rejects_empty_segments() {
        assert!(split("a//b").is_err());
        assert_eq!(split("/a/b/").expect("ok"), vec!["a", "b"]);
        assert!(split("").expect("ok").is_empty());
    }

    #[test]
    fn open_removes_stale_temp_files_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = tmp.path().join("log.yaml");
        let stale = temp_path(&log, 4242);
        let other = tmp.path().join(".log.yaml.notapid.tmp");
        fs::write(&stale, "partial: [").expect("write");
        fs::write(&other, "x").expect("write");
        LogTree::open(&log).expect("open");
        assert!(!stale.exists(), "stale temp file should be removed");
        assert!(other.exists(), "unrelated file must be kept");
    }
}
