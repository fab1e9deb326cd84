//! Compiles the c10d shim against the headers of the libtorch that torch-sys linked (so the
//! shim and tch share one libtorch) and against Debian's gloo headers, which the wheel lacks.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys did not report its libtorch lib dir (DEP_TCH_LIBTORCH_LIB); is LIBTORCH set?"),
    );
    let root = lib.parent().expect("libtorch lib dir has a parent").to_path_buf();
    let include = root.join("include");
    if !Path::new("/usr/include/gloo/config.h").is_file() {
        panic!(
            "gloo headers are missing (/usr/include/gloo/config.h): ProcessGroupGloo.hpp includes them and \
             the PyTorch wheel does not ship them; install Debian's libgloo-dev (scripts/setup.sh does)"
        );
    }
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++20")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // Without it ProcessGroupGloo.hpp compiles to nothing.
        .flag("-DUSE_C10D_GLOO")
        .file("src/shim.cpp")
        .compile("archai_dist_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
