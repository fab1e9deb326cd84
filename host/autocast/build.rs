//! Compiles the autocast shim against the headers of the libtorch that torch-sys linked, so
//! the shim and tch always share one libtorch.
use std::path::PathBuf;

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
    // PyTorch wheels since 2.6 (and every libtorch 2.11 build) use the new C++11 ABI.
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
        .file("src/shim.cpp")
        .compile("archai_autocast_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    // The crate's own test binaries; dependents set their own rpath.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // Its CUDA-autocast tests need the CUDA backend registered (see host/build.rs).
    if lib.join("libtorch_cuda.so").is_file() {
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
    }
}
