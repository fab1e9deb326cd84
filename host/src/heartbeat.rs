//! A file a process rewrites every second while it works, for processes that wait on it through
//! a shared directory (the ranks of a launched search or comparison, possibly on other machines,
//! where `archai launch` cannot see a rank die). The file holds a counter, not a time, so clocks
//! that disagree between machines do not matter: a watcher notices when the counter stops moving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Beats until dropped.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Writes `path` now and then every second.
    pub fn start(path: PathBuf) -> std::io::Result<Heartbeat> {
        std::fs::write(&path, "0")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // Short sleeps so that dropping the heartbeat does not wait a second.
            let (mut beat, mut ticks) = (0u64, 0);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                ticks += 1;
                if ticks == 4 {
                    (beat, ticks) = (beat + 1, 0);
                    let _ = std::fs::write(&path, beat.to_string());
                }
            }
        });
        Ok(Heartbeat { stop, thread: Some(thread) })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Watches another process's heartbeat file.
pub struct Watch {
    path: PathBuf,
    seen: Option<String>,
    since: Instant,
}

impl Watch {
    pub fn new(path: &Path) -> Watch {
        Watch { path: path.to_path_buf(), seen: None, since: Instant::now() }
    }

    /// Whether the file changed within `timeout` (counting from when watching began).
    pub fn alive(&mut self, timeout: Duration) -> bool {
        let now = std::fs::read_to_string(&self.path).ok();
        if now.is_some() && now != self.seen {
            self.seen = now;
            self.since = Instant::now();
        }
        self.since.elapsed() < timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beating_file_is_alive_and_a_stopped_one_goes_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("beat");
        let beat = Heartbeat::start(path.clone()).unwrap();
        let mut watch = Watch::new(&path);
        for _ in 0..6 {
            assert!(watch.alive(Duration::from_millis(1500)));
            std::thread::sleep(Duration::from_millis(500));
        }
        drop(beat);
        let t0 = Instant::now();
        while watch.alive(Duration::from_millis(1500)) {
            assert!(t0.elapsed() < Duration::from_secs(5), "a stopped heartbeat never went stale");
            std::thread::sleep(Duration::from_millis(100));
        }
        // A file that never appears is stale after the timeout too.
        let mut missing = Watch::new(&dir.path().join("never"));
        assert!(missing.alive(Duration::from_secs(60)));
        assert!(!missing.alive(Duration::ZERO));
    }
}
