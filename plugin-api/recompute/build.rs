//! Compiles the recompute shim against the headers of the libtorch that torch-sys linked.
include!("libtorch_shim_build.rs");

fn main() {
    println!("cargo:rerun-if-changed=libtorch_shim_build.rs");
    build_shim(&libtorch_lib(), "archai_recompute_shim", &[]);
}
