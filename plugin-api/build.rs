//! Records the version of the libtorch headers this crate is compiled against, so host and
//! plugins can refuse each other when their libtorch differs (abi_stable cannot see libtorch's ABI).
//! Also gives the crate's test binaries an rpath to libtorch.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let version = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .ok()
        .and_then(|lib| read_version(&PathBuf::from(lib)))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=ARCHAI_LIBTORCH_VERSION={version}");
    // The kit's unit tests run libtorch: give this crate's test binaries an rpath to it (an rlib's
    // link arguments do not reach the plugins and hosts that depend on it).
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // CUDA registers only when libtorch_cuda is loaded, and rustc links `--as-needed`, which
        // drops torch-sys' `-ltorch_cuda` (nothing references it by symbol). Force it in where this
        // libtorch has it; it loads without a GPU or driver too.
        if std::path::Path::new(&lib).join("libtorch_cuda.so").is_file() {
            println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
        }
    }
}

fn read_version(lib_dir: &std::path::Path) -> Option<String> {
    let header = lib_dir.parent()?.join("include/torch/headeronly/version.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text = std::fs::read_to_string(header).ok()?;
    let field = |name: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(&format!("#define {name} "))).map(|v| v.trim().to_string())
    };
    Some(format!(
        "{}.{}.{}",
        field("TORCH_VERSION_MAJOR")?,
        field("TORCH_VERSION_MINOR")?,
        field("TORCH_VERSION_PATCH")?
    ))
}
