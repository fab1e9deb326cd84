// Shared by the build scripts of the crates with a C++ shim (this crate, host/autocast, host/dist,
// host/dense-grad) through `include!` (each also prints its own rerun-if-changed for this file):
// compiles `src/shim.cpp` against the headers of the libtorch that torch-sys linked,
// so the shim and tch always share one libtorch, and links libtorch.

/// The libtorch lib directory torch-sys reported.
fn libtorch_lib() -> std::path::PathBuf {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    std::path::PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys did not report its libtorch lib dir (DEP_TCH_LIBTORCH_LIB); is LIBTORCH set?"),
    )
}

/// Compiles the shim as `name` with `defines` (`-D...` flags) and links torch_cpu and c10 with an
/// rpath for the crate's own test binaries (dependents set their own).
fn build_shim(lib: &std::path::Path, name: &str, defines: &[&str]) {
    let include = lib.parent().expect("libtorch lib dir has a parent").join("include");
    // PyTorch wheels since 2.6 (and every libtorch 2.11 build) use the new C++11 ABI.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++20")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT");
    for d in defines {
        build.flag(*d);
    }
    build.file("src/shim.cpp").compile(name);
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
