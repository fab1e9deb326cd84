//! Compiles the dense-grad shim against the headers of the libtorch that torch-sys linked.
include!("../libtorch_shim_build.rs");

fn main() {
    build_shim(&libtorch_lib(), "archai_dense_grad_shim", &[]);
}
