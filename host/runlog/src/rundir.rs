//! The run directory: where everything a run produced lives.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::{Result, RunLogError};

/// A run directory that exists on disk and belongs to this run.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
    resumed: bool,
}

impl RunDir {
    /// Picks and creates the run directory.
    ///
    /// - `explicit = None`: creates `base/<name>-<YYYYmmdd-HHMMSS>` (local time), adding `-2`,
    ///   `-3`, ... when that already exists. `resume` is an error here, since there is no
    ///   way to know which run to continue.
    /// - `explicit = Some(dir)`: a missing `dir` is created (an error with `resume`); an existing
    ///   empty one is used; an existing non-empty one is refused unless `resume`.
    ///
    /// `name` is reduced to `[A-Za-z0-9._-]` so that a config's name can never point the run
    /// outside `base`.
    pub fn create(base: &Path, name: &str, explicit: Option<PathBuf>, resume: bool) -> Result<RunDir> {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
        Self::create_with_stamp(base, name, explicit, resume, &stamp)
    }

    /// `create` with the timestamp supplied, so tests can force name collisions.
    pub(crate) fn create_with_stamp(
        base: &Path,
        name: &str,
        explicit: Option<PathBuf>,
        resume: bool,
        stamp: &str,
    ) -> Result<RunDir> {
        match explicit {
            Some(dir) => Self::use_explicit(dir, resume),
            None if resume => Err(RunLogError::ResumeWithoutDir),
            None => Self::create_fresh(base, &sanitize(name), stamp),
        }
    }

    fn use_explicit(dir: PathBuf, resume: bool) -> Result<RunDir> {
        match fs::metadata(&dir) {
            Ok(meta) if !meta.is_dir() => Err(RunLogError::NotADirectory(dir)),
            Ok(_) => {
                let mut entries = fs::read_dir(&dir).map_err(|e| RunLogError::io("list directory", &dir, e))?;
                let empty = entries.next().is_none();
                if empty || resume {
                    Ok(RunDir { path: dir, resumed: resume })
                } else {
                    Err(RunLogError::RunDirExists(dir))
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if resume {
                    return Err(RunLogError::ResumeMissing(dir));
                }
                fs::create_dir_all(&dir).map_err(|e| RunLogError::io("create run directory", &dir, e))?;
                Ok(RunDir { path: dir, resumed: false })
            }
            Err(e) => Err(RunLogError::io("inspect", dir, e)),
        }
    }

    fn create_fresh(base: &Path, name: &str, stamp: &str) -> Result<RunDir> {
        fs::create_dir_all(base).map_err(|e| RunLogError::io("create directory", base, e))?;
        // create_dir (not create_dir_all) fails on an existing directory, so two runs started
        // in the same second can never share one: whoever loses moves on to the next suffix.
        for n in 1u32.. {
            let leaf = if n == 1 { format!("{name}-{stamp}") } else { format!("{name}-{stamp}-{n}") };
            let path = base.join(leaf);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path, resumed: false }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RunLogError::io("create run directory", path, e)),
            }
        }
        unreachable!("u32 suffixes exhausted")
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the run directory, e.g. `join("log.yaml")`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Whether this run continues an existing directory (`--resume`).
    pub fn resumed(&self) -> bool {
        self.resumed
    }
}

fn sanitize(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    // A name of only dots would be "." or ".." and escape `base`.
    if s.chars().all(|c| c == '.') {
        format!("run{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_names_inside_base() {
        assert_eq!(sanitize("darts"), "darts");
        assert_eq!(sanitize("a/../b c"), "a_.._b_c");
        assert_eq!(sanitize(".."), "run..");
        assert_eq!(sanitize(""), "run");
    }

    #[test]
    fn same_stamp_gets_numbered_suffixes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = RunDir::create_with_stamp(tmp.path(), "x", None, false, "20240101-000000").expect("first");
        let b = RunDir::create_with_stamp(tmp.path(), "x", None, false, "20240101-000000").expect("second");
        let c = RunDir::create_with_stamp(tmp.path(), "x", None, false, "20240101-000000").expect("third");
        assert_eq!(a.path(), tmp.path().join("x-20240101-000000"));
        assert_eq!(b.path(), tmp.path().join("x-20240101-000000-2"));
        assert_eq!(c.path(), tmp.path().join("x-20240101-000000-3"));
        assert!(a.path().is_dir() && b.path().is_dir() && c.path().is_dir());
    }
}
