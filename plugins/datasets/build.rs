//! Gives this crate's unit-test binary an rpath to libtorch (the tests build tensors), as
//! host/build.rs does for the host. The rpath also lands in the plugin library, where it is unused:
//! the host has loaded libtorch before it opens plugins.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // CUDA registers only when libtorch_cuda is loaded, and rustc links `--as-needed`, which
        // drops torch-sys' `-ltorch_cuda` (nothing references it by symbol). Force it in where this
        // libtorch has it; it loads without a GPU or driver too.
        if std::path::Path::new(&lib).join("libtorch_cuda.so").is_file() {
            println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
        }
    }
}
