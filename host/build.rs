//! Gives the `archai` binary (and test binaries) an rpath to libtorch, so users never export
//! LD_LIBRARY_PATH. Plugins need none: the host has loaded libtorch before it opens them.
//! Also records the git commit of the build for run environments (`run/environment`).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // All linked targets of this package: the binary, its tests and benches.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // CUDA registers only when libtorch_cuda is loaded, and rustc links `--as-needed`, which
        // drops torch-sys' `-ltorch_cuda` (nothing references it by symbol). Force it in where this
        // libtorch has it; it loads without a GPU or driver too.
        if std::path::Path::new(&lib).join("libtorch_cuda.so").is_file() {
            println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
        }
        println!("cargo:rustc-env=ARCHAI_LIBTORCH_LIB={lib}");
    }
    // HEAD moves on checkout, the ref it names on commit.
    for path in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ARCHAI_GIT_COMMIT={commit}");
}
