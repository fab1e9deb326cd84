//! Gives this crate's test binaries an rpath to libtorch, so `cargo test` runs them without
//! LD_LIBRARY_PATH (as the host's build script does for its binaries). In the plugin library
//! itself the entry is unused: the host has loaded libtorch before it opens a plugin.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
