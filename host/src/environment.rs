//! The environment a run executes in, recorded in log.yaml (`run/environment`) so that
//! `archai report` can tell comparable runs from runs that differ in software or machine.
use crate::plugins::PluginRegistry;
use archai_runlog::schema::{Environment, PluginRecord};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::Path;

/// Git commit of the build, from build.rs (`unknown` when built outside a git checkout).
pub const GIT_COMMIT: &str = env!("ARCHAI_GIT_COMMIT");

/// Collects the environment of this process. `precision` maps each trainer phase to its
/// precision name.
pub fn collect(
    reg: &PluginRegistry,
    device: tch::Device,
    precision: BTreeMap<String, String>,
) -> anyhow::Result<Environment> {
    let plugins = reg
        .plugins()
        .iter()
        .map(|p| {
            Ok(PluginRecord {
                name: p.info.name.to_string(),
                version: p.info.version.to_string(),
                file: p.file_name(),
                sha256: file_sha256(&p.path)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Environment {
        archai_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: GIT_COMMIT.to_string(),
        libtorch_version: archai_plugin_api::LIBTORCH_VERSION.to_string(),
        libtorch_library: loaded_library("libtorch_cpu.so").unwrap_or_else(|| "unknown".into()),
        threads: tch::get_num_threads() as i64,
        cpu_model: cpu_model().unwrap_or_else(|| "unknown".into()),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        device: format!("{device:?}"),
        precision,
        plugins,
        cuda: Some(crate::cuda::environment()),
    })
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("hashing {}: {e}", path.display()))?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

/// The path of a shared library this process has mapped whose file name starts with `stem`
/// (Linux: /proc/self/maps).
pub(crate) fn loaded_library(stem: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| Path::new(p).file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with(stem)))
        .map(str::to_string)
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_loaded_libtorch_and_the_cpu_are_found() {
        // A tensor op makes sure libtorch is mapped.
        let _ = tch::Tensor::from(1.0f32) + 1.0;
        let lib = super::loaded_library("libtorch_cpu.so").expect("libtorch_cpu.so is mapped");
        assert!(std::path::Path::new(&lib).is_file(), "{lib}");
        assert!(!super::cpu_model().unwrap().is_empty());
    }
}
