//! Compiles the dense-grad shim against the headers of the libtorch that torch-sys linked.
include!("../../plugin-api/recompute/libtorch_shim_build.rs");

fn main() {
    println!("cargo:rerun-if-changed=../../plugin-api/recompute/libtorch_shim_build.rs");
    build_shim(&libtorch_lib(), "archai_dense_grad_shim", &[]);
}
