//! The `malloc` serving this process: gperftools' tcmalloc when host/build.rs linked it into the
//! `archai` binary, else glibc's. What depends on which one: the name recorded in
//! `run/environment`, and how [`release_free_memory`] gives cached memory back before a peak is
//! measured.
use std::ffi::CStr;
use std::path::Path;

/// `dlsym(RTLD_DEFAULT, name)`: the definition the dynamic linker resolves for the process.
fn resolved(name: &CStr) -> Option<*mut libc::c_void> {
    // SAFETY: dlsym only reads the loader's tables.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// What host/build.rs linked into the `archai` binary: `tcmalloc`, or `glibc` (built with
/// `ARCHAI_TCMALLOC=off`, or without the archive). Test binaries get the same value but not the
/// library (it is linked into the binary only).
pub const LINKED: &str = env!("ARCHAI_ALLOCATOR_LINKED");

/// The base address of the object file that defines `addr` (`dladdr`'s `dli_fbase`), and its
/// file name.
fn defining_object(addr: *const libc::c_void) -> Option<(usize, String)> {
    // SAFETY: dladdr writes `info` and reads the loader's tables; `dli_fname` points into them.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        Some((info.dli_fbase as usize, CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned()))
    }
}

/// Which `malloc` serves this process, libtorch's allocations included: the object that defines
/// the `malloc` the dynamic linker resolves. The executable itself (the same object as this
/// function's code; compared by base address, since the executable's name is argv[0] as typed)
/// when build.rs linked tcmalloc into it.
pub fn name() -> String {
    let Some((malloc_base, file)) = resolved(c"malloc").and_then(|m| defining_object(m)) else {
        return "unknown".into();
    };
    let own = defining_object(name as *const libc::c_void).map(|(base, _)| base);
    let base = Path::new(&file).file_name().and_then(|f| f.to_str()).unwrap_or(&file).to_string();
    if own == Some(malloc_base) && LINKED == "tcmalloc" {
        "tcmalloc (linked into archai)".into()
    } else if base.starts_with("libc.so") {
        format!("glibc ({base})")
    } else {
        base
    }
}

/// Gives the memory the allocator keeps for reuse back to the system, so that the resident set
/// grows again when the next allocations touch memory (a peak measured by the resident
/// high-water mark then sees them; `train_peak_mb`). tcmalloc: this thread's cache of small
/// blocks, then the page heap's free spans (`MallocExtension_MarkThreadIdle`,
/// `MallocExtension_ReleaseFreeMemory`, which build.rs exports from the binary). glibc: a fixed
/// mmap threshold, so that tensor-sized blocks are mappings returned at `free` (glibc otherwise
/// raises the threshold as large blocks are freed and keeps later ones in its heap), and a trim.
pub fn release_free_memory() {
    match (resolved(c"MallocExtension_MarkThreadIdle"), resolved(c"MallocExtension_ReleaseFreeMemory")) {
        (Some(idle), Some(release)) => {
            // SAFETY: gperftools' `void MallocExtension_MarkThreadIdle(void)` and
            // `void MallocExtension_ReleaseFreeMemory(void)`. The thread's cache of small blocks
            // goes back to the central lists first, so that their free spans can be released.
            let (idle, release) = unsafe {
                (
                    std::mem::transmute::<*mut libc::c_void, extern "C" fn()>(idle),
                    std::mem::transmute::<*mut libc::c_void, extern "C" fn()>(release),
                )
            };
            idle();
            release();
        }
        _ => {
            if name().starts_with("tcmalloc") {
                // glibc's knobs below do nothing under tcmalloc: peaks would miss reused memory.
                tracing::warn!(
                    "tcmalloc serves this process but its MallocExtension functions are not exported: cached \
                     memory cannot be released, so train_peak_mb may read low"
                );
            }
            // SAFETY: mallopt and malloc_trim only change allocator parameters and return memory.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
                libc::malloc_trim(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Test binaries are not linked with tcmalloc (build.rs links it into the `archai` binary
    /// only; tests/ checks that one): their malloc is glibc's.
    #[test]
    fn the_allocator_is_named_by_the_library_that_defines_malloc() {
        assert!(super::name().starts_with("glibc (libc.so"), "{}", super::name());
        assert!(super::resolved(c"MallocExtension_ReleaseFreeMemory").is_none());
    }
}
