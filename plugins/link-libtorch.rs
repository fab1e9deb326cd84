//! The build script every workspace plugin shares (`build = "../link-libtorch.rs"` in its
//! Cargo.toml): gives the crate's test binaries an rpath to libtorch, so `cargo test` runs them
//! without LD_LIBRARY_PATH (as the host's build script does for its binaries), and links
//! libtorch_cuda. In the plugin library itself the rpath is unused: the host has loaded libtorch
//! before it opens a plugin.
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
