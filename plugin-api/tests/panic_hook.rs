//! The panic hook `guard` installs is silent only inside guarded plugin calls: a panic anywhere
//! else in the process still reaches the hook that was there before (it used to be silenced for
//! good once any plugin call had run). Its own test binary: the hook is process-wide.
use archai_plugin_api::guard;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn the_hook_is_silent_inside_guarded_calls_and_chains_outside() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::panic::set_hook(Box::new(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let r = guard::<()>(|| panic!("inside a plugin call"));
    assert!(matches!(r, abi_stable::std_types::RResult::RErr(ref e) if e.contains("inside a plugin call")));
    assert_eq!(seen.load(Ordering::SeqCst), 0, "a guarded panic reached the previous hook");
    let outside = std::panic::catch_unwind(|| panic!("host code"));
    assert!(outside.is_err());
    assert_eq!(seen.load(Ordering::SeqCst), 1, "a panic outside guard was silenced");
    // Nested guards restore the outer state.
    let r = guard(|| Ok(guard::<()>(|| panic!("nested"))));
    assert!(matches!(r, abi_stable::std_types::RResult::ROk(abi_stable::std_types::RResult::RErr(_))));
    let _ = std::panic::catch_unwind(|| panic!("host code again"));
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}
