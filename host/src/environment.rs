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
        cpu_features: cpu_features(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        device: format!("{device:?}"),
        precision,
        plugins,
        cuda: Some(crate::cuda::environment()),
        allocator: Some(crate::allocator::name()),
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

/// Flags of /proc/cpuinfo that decide which kernels libtorch runs: ATen's CPU capability
/// (AVX2 needs avx2 and fma; AVX512 also avx512f/bw/vl/dq) and oneDNN's instruction sets (VNNI,
/// bf16, AMX).
const KERNEL_CPU_FLAGS: &[&str] = &[
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
];

/// The kernel-relevant vector extensions of this CPU, in [`KERNEL_CPU_FLAGS`]' order, and
/// ATen's capability when `ATEN_CPU_CAPABILITY` caps it.
fn cpu_features() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    Some(kernel_features(&info, std::env::var("ATEN_CPU_CAPABILITY").ok().as_deref()))
}

fn kernel_features(cpuinfo: &str, aten_cap: Option<&str>) -> String {
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map_or(Vec::new(), |(_, v)| v.split_whitespace().collect());
    let mut have: Vec<String> = KERNEL_CPU_FLAGS.iter().filter(|f| flags.contains(f)).map(|f| f.to_string()).collect();
    if have.is_empty() {
        have.push("none of avx2/avx512/amx".into());
    }
    if let Some(cap) = aten_cap.filter(|c| !c.is_empty()) {
        have.push(format!("(ATEN_CPU_CAPABILITY={cap})"));
    }
    have.join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_features_name_the_vector_extensions_and_a_capped_capability() {
        let info =
            "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 sha_ni\n";
        assert_eq!(super::kernel_features(info, None), "avx2 fma avx512f avx512bw avx512vl avx512dq avx512_bf16");
        assert_eq!(
            super::kernel_features(info, Some("avx2")),
            "avx2 fma avx512f avx512bw avx512vl avx512dq avx512_bf16 (ATEN_CPU_CAPABILITY=avx2)"
        );
        assert_eq!(super::kernel_features("flags : fpu sse2\n", None), "none of avx2/avx512/amx");
        // This machine's own flags are read (every x86-64 CPU libtorch's wheel runs on has some).
        assert!(super::cpu_features().is_some_and(|f| !f.is_empty()));
    }

    #[test]
    fn the_loaded_libtorch_and_the_cpu_are_found() {
        // A tensor op makes sure libtorch is mapped.
        let _ = tch::Tensor::from(1.0f32) + 1.0;
        let lib = super::loaded_library("libtorch_cpu.so").expect("libtorch_cpu.so is mapped");
        assert!(std::path::Path::new(&lib).is_file(), "{lib}");
        assert!(!super::cpu_model().unwrap().is_empty());
    }
}
