//! Gives the `archai` binary (and test binaries) an rpath to libtorch, so users never export
//! LD_LIBRARY_PATH. Plugins need none: the host has loaded libtorch before it opens them.
//! Also records the git commit of the build for run environments (`run/environment`).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // All linked targets of this package: the binary, its tests and benches.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // CUDA registers only when libtorch_cuda is loaded, and rustc links `--as-needed`, which
        // drops torch-sys' `-ltorch_cuda` (nothing references it by symbol). Force it in where this
        // libtorch has it; it loads without a GPU or driver too.
        if std::path::Path::new(&lib).join("libtorch_cuda.so").is_file() {
            println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state");
        }
        println!("cargo:rustc-env=ARCHAI_LIBTORCH_LIB={lib}");
    }
    // Read by `allocator::LINKED`.
    let allocator = if link_tcmalloc() { "tcmalloc" } else { "glibc" };
    println!("cargo:rustc-env=ARCHAI_ALLOCATOR_LINKED={allocator}");
    // HEAD moves on checkout, the ref it names on commit.
    for path in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ARCHAI_GIT_COMMIT={commit}");
}

/// Links gperftools' tcmalloc (minimal) into the `archai` binary, whole, so that its `malloc`,
/// `free` and `posix_memalign` take the place of glibc's for the whole process: libtorch's CPU
/// allocator and every plugin included (a symbol the executable defines wins over a shared
/// library's). glibc keeps freed activation memory in fragmented heaps and per-thread arenas:
/// the peak resident memory of a DARTS search step was ~1 GB (a fifth) above what tcmalloc
/// needs, at equal or better speed (README, "Memory allocator"). Static, so the binary runs where
/// the library is not installed (the GPU machines). `ARCHAI_TCMALLOC=off` builds without it.
fn link_tcmalloc() -> bool {
    println!("cargo:rerun-if-env-changed=ARCHAI_TCMALLOC");
    if std::env::var("ARCHAI_TCMALLOC").is_ok_and(|v| v == "off") {
        return false;
    }
    let candidates = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"];
    let Some(archive) =
        candidates.iter().map(|d| std::path::Path::new(d).join("libtcmalloc_minimal.a")).find(|p| p.is_file())
    else {
        println!(
            "cargo:warning=libtcmalloc_minimal.a not found (Debian: libgoogle-perftools-dev; scripts/setup.sh installs \
             it): archai uses glibc's malloc, about a fifth more peak memory in a DARTS search step; after \
             installing it, `touch host/build.rs` to link it"
        );
        return false;
    };
    println!("cargo:rerun-if-changed={}", archive.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--whole-archive,{},--no-whole-archive", archive.display());
    // Looked up at run time by `allocator::LivePeak` (no library references them, so the linker
    // would not export them otherwise).
    for symbol in [
        "MallocExtension_GetAllocatedSize",
        "MallocHook_AddNewHook",
        "MallocHook_RemoveNewHook",
        "MallocHook_AddDeleteHook",
        "MallocHook_RemoveDeleteHook",
    ] {
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol={symbol}");
    }
    true
}
