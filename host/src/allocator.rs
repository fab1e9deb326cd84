//! The `malloc` serving this process: gperftools' tcmalloc when host/build.rs linked it into the
//! `archai` binary, else glibc's. What depends on which one: the name recorded in
//! `run/environment`, and how a peak is measured ([`LivePeak`] under tcmalloc,
//! [`release_free_memory`] before a resident high-water mark under glibc).
use std::ffi::CStr;
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

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

/// Under glibc, gives the memory its heaps keep for reuse back to the system, so that the
/// resident set grows again when the next allocations touch memory (a peak measured by the
/// resident high-water mark then sees them; `train_peak_mb` without [`LivePeak`]): a fixed mmap
/// threshold, so that tensor-sized blocks are mappings returned at `free` (glibc otherwise raises
/// the threshold as large blocks are freed and keeps later ones in its heap), and a trim. Under
/// tcmalloc both do nothing (its `mallopt` is a stub; `malloc_trim` trims glibc's unused heap):
/// peaks there are counted by [`LivePeak`].
pub fn release_free_memory() {
    // SAFETY: mallopt and malloc_trim only change allocator parameters and return memory.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::malloc_trim(0);
    }
}

/// `MallocExtension_GetAllocatedSize`, for the hooks of [`LivePeak`] (plain C function pointers
/// cannot carry it).
static ALLOCATED_SIZE: OnceLock<extern "C" fn(*const libc::c_void) -> usize> = OnceLock::new();
/// Bytes allocated minus bytes freed since [`LivePeak::start`], and its maximum. Static because
/// tcmalloc's hooks are context-free C callbacks; [`LIVE_PEAK_OWNER`] lets one measurement at a
/// time use them.
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static LIVE_PEAK_OWNER: Mutex<()> = Mutex::new(());

extern "C" fn on_new(ptr: *const libc::c_void, _requested: usize) {
    if let (false, Some(size)) = (ptr.is_null(), ALLOCATED_SIZE.get()) {
        // The block's real size (its size class), so that its free subtracts the same amount.
        let size = size(ptr) as isize;
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

extern "C" fn on_delete(ptr: *const libc::c_void) {
    if let (false, Some(size)) = (ptr.is_null(), ALLOCATED_SIZE.get()) {
        LIVE.fetch_sub(size(ptr) as isize, Ordering::Relaxed);
    }
}

/// The peak of live heap bytes over a stretch of code, above what was live at its start, counted
/// by tcmalloc's allocation hooks: what a computation needs at its worst, whatever the allocator
/// had cached from earlier work (a resident high-water mark misses memory that is reused, and
/// how much is reusable depends on what ran before and on which thread freed it). `None` where
/// tcmalloc does not serve the process (glibc has no hooks since 2.34).
pub struct LivePeak {
    _owner: MutexGuard<'static, ()>,
    remove: [(extern "C" fn(*const libc::c_void) -> libc::c_int, *const libc::c_void); 2],
}

impl LivePeak {
    pub fn start() -> Option<LivePeak> {
        type Add = extern "C" fn(*const libc::c_void) -> libc::c_int;
        let f = |n: &CStr| resolved(n).map(|p| p as *const libc::c_void);
        let (Some(size), Some(add_new), Some(rm_new), Some(add_del), Some(rm_del)) = (
            f(c"MallocExtension_GetAllocatedSize"),
            f(c"MallocHook_AddNewHook"),
            f(c"MallocHook_RemoveNewHook"),
            f(c"MallocHook_AddDeleteHook"),
            f(c"MallocHook_RemoveDeleteHook"),
        ) else {
            return None;
        };
        let owner = LIVE_PEAK_OWNER.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: gperftools' C API (malloc_extension_c.h, malloc_hook_c.h):
        // `size_t MallocExtension_GetAllocatedSize(const void*)` and
        // `int MallocHook_{Add,Remove}{New,Delete}Hook(hook)`, a hook being a plain function
        // pointer (passed here as a data pointer, the same size on every Linux ABI).
        let (add_new, rm_new, add_del, rm_del) = unsafe {
            ALLOCATED_SIZE.get_or_init(|| std::mem::transmute::<*const libc::c_void, _>(size));
            (
                std::mem::transmute::<*const libc::c_void, Add>(add_new),
                std::mem::transmute::<*const libc::c_void, Add>(rm_new),
                std::mem::transmute::<*const libc::c_void, Add>(add_del),
                std::mem::transmute::<*const libc::c_void, Add>(rm_del),
            )
        };
        LIVE.store(0, Ordering::Relaxed);
        PEAK.store(0, Ordering::Relaxed);
        let (new_hook, delete_hook) = (on_new as *const libc::c_void, on_delete as *const libc::c_void);
        if add_new(new_hook) == 0 {
            return None;
        }
        if add_del(delete_hook) == 0 {
            rm_new(new_hook);
            return None;
        }
        Some(LivePeak { _owner: owner, remove: [(rm_new, new_hook), (rm_del, delete_hook)] })
    }

    /// The peak so far, bytes.
    pub fn bytes(&self) -> usize {
        PEAK.load(Ordering::Relaxed).max(0) as usize
    }
}

impl Drop for LivePeak {
    fn drop(&mut self) {
        for (remove, hook) in self.remove {
            remove(hook);
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
        assert!(super::resolved(c"MallocHook_AddNewHook").is_none());
        assert!(super::LivePeak::start().is_none(), "glibc has no allocation hooks");
    }
}
