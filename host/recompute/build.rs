//! Compiles the recompute shim against the headers of the libtorch that torch-sys linked.
include!("../libtorch_shim_build.rs");

fn main() {
    build_shim(&libtorch_lib(), "archai_recompute_shim", &[]);
}
