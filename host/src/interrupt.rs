//! Ctrl-C and SIGTERM stop a run at the next training step, so that it ends with
//! `status: interrupted` in log.yaml and can be continued with `--resume`. A second signal
//! kills the process as usual.
//!
//! The flag is process-wide because signals are: a handler can only reach static state.
use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNAL.store(signal, Ordering::SeqCst);
    // SAFETY: signal(2) is async-signal-safe; the default action ends the process next time.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// Installs the handlers for SIGINT and SIGTERM.
pub fn install() {
    // SAFETY: the handler only stores to an atomic and resets its own disposition.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// The signal that asked the run to stop, if one did (`SIGINT` or `SIGTERM`).
pub fn requested() -> Option<&'static str> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        _ => Some("a signal"),
    }
}

/// The signal received since the last call (its number), clearing it: for a process that keeps
/// running after a signal and passes each one on (`archai launch`). Call [`install`] again to
/// catch the next one, since the handler resets itself.
pub fn take() -> Option<libc::c_int> {
    match SIGNAL.swap(0, Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The exit status of a process stopped by the signal (128 + its number, as shells report).
pub fn exit_code() -> Option<u8> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some((128 + s) as u8),
    }
}
