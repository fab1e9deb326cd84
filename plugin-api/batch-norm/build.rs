//! Compiles the batch-norm shim against the headers of the libtorch that torch-sys linked, with
//! OpenMP: `at::parallel_for` is a header template whose OpenMP backend (the PyTorch wheels') is
//! a `#pragma omp parallel`, serial without `-fopenmp`. The shim links libgomp by soname, so the
//! process keeps the one OpenMP runtime libtorch loaded.
include!("../recompute/libtorch_shim_build.rs");

fn main() {
    println!("cargo:rerun-if-changed=../recompute/libtorch_shim_build.rs");
    build_shim(&libtorch_lib(), "archai_batch_norm_shim", &["-fopenmp"]);
    println!("cargo:rustc-link-lib=dylib=gomp");
}
