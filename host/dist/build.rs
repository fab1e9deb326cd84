//! Compiles the c10d shim against the headers of the libtorch that torch-sys linked and against
//! Debian's gloo headers, which the wheel lacks.
include!("../../plugin-api/recompute/libtorch_shim_build.rs");

fn main() {
    println!("cargo:rerun-if-changed=../../plugin-api/recompute/libtorch_shim_build.rs");
    let lib = libtorch_lib();
    if !std::path::Path::new("/usr/include/gloo/config.h").is_file() {
        panic!(
            "gloo headers are missing (/usr/include/gloo/config.h): ProcessGroupGloo.hpp includes them and \
             the PyTorch wheel does not ship them; install Debian's libgloo-dev (scripts/setup.sh does)"
        );
    }
    // Without USE_C10D_GLOO, ProcessGroupGloo.hpp compiles to nothing.
    build_shim(&lib, "archai_dist_shim", &["-DUSE_C10D_GLOO"]);
}
