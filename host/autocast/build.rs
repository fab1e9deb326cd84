//! Compiles the autocast shim against the headers of the libtorch that torch-sys linked.
include!("../../plugin-api/recompute/libtorch_shim_build.rs");

fn main() {
    println!("cargo:rerun-if-changed=../../plugin-api/recompute/libtorch_shim_build.rs");
    let lib = libtorch_lib();
    build_shim(&lib, "archai_autocast_shim", &[]);
    // Its CUDA-autocast tests need the CUDA backend registered (see host/build.rs).
    if lib.join("libtorch_cuda.so").is_file() {
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
    }
}
