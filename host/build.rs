//! Gives the `archai` binary (and test binaries) an rpath to libtorch, so users never export
//! LD_LIBRARY_PATH. Plugins need none: the host has loaded libtorch before it opens them.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // All linked targets of this package: the binary, its tests and benches.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=ARCHAI_LIBTORCH_LIB={lib}");
    }
}
