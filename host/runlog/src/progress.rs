//! Progress reporting for long loops: a bar on a terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// All bars live in one MultiProgress so nested loops (epochs, batches) stack cleanly and the
/// console log writer can suspend them while it prints.
pub(crate) fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Progress of a loop of `total` steps.
///
/// On a terminal (stderr) it draws an indicatif bar; elsewhere (CI, redirected output) it
/// logs a plain `tracing` info line each time another 10% is done, and one at `finish`, so
/// log files do not fill with bar redraws.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    /// Last tenth (0..=9) reported in plain mode.
    reported_tenth: u64,
    message: String,
    start: Instant,
    bar: Option<ProgressBar>,
    finished: bool,
}

impl Progress {
    /// Starts tracking `total` steps under `label` (e.g. "epoch 3/10").
    pub fn new(label: impl Into<String>, total: u64) -> Progress {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bar = multi().add(ProgressBar::new(total));
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar
        });
        Progress::with_bar(label, total, bar)
    }

    fn with_bar(label: String, total: u64, bar: Option<ProgressBar>) -> Progress {
        Progress {
            label,
            total,
            done: 0,
            reported_tenth: 0,
            message: String::new(),
            start: Instant::now(),
            bar,
            finished: false,
        }
    }

    /// Marks `n` more steps done.
    pub fn inc(&mut self, n: u64) {
        if let Some(bar) = &self.bar {
            self.done = self.done.saturating_add(n);
            bar.inc(n);
        } else if let Some(line) = self.advance(n) {
            tracing::info!("{line}");
        }
    }

    /// Sets the text shown after the counts (e.g. "loss 0.53").
    pub fn set_message(&mut self, msg: impl Into<String>) {
        self.message = msg.into();
        if let Some(bar) = &self.bar {
            bar.set_message(self.message.clone());
        }
    }

    /// Ends the loop: removes the bar, or logs the closing plain line.
    pub fn finish(mut self) {
        self.finished = true;
        match self.bar.take() {
            Some(bar) => {
                bar.finish_and_clear();
                multi().remove(&bar);
            }
            None => tracing::info!("{}", self.finish_line()),
        }
    }

    /// Plain mode: counts `n` steps and returns a line when a new tenth was crossed. Only
    /// the highest crossed tenth is reported, so a big `inc` gives one line, not several.
    fn advance(&mut self, n: u64) -> Option<String> {
        self.done = self.done.saturating_add(n);
        if self.total == 0 {
            return None;
        }
        let tenth = (u128::from(self.done.min(self.total)) * 10 / u128::from(self.total)) as u64;
        // 100% is left to finish(), which also reports the time taken.
        if tenth > self.reported_tenth && tenth < 10 {
            self.reported_tenth = tenth;
            Some(format!(
                "{}: {}/{} ({}%) {:.1}s{}",
                self.label,
                self.done,
                self.total,
                tenth * 10,
                self.start.elapsed().as_secs_f64(),
                self.suffix()
            ))
        } else {
            None
        }
    }

    fn finish_line(&self) -> String {
        format!(
            "{}: done {}/{} in {:.1}s{}",
            self.label,
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64(),
            self.suffix()
        )
    }

    fn suffix(&self) -> String {
        if self.message.is_empty() {
            String::new()
        } else {
            format!(" {}", self.message)
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // Dropped without finish (an error unwound the loop): leave the bar where it stopped
        // so the user sees how far it got, and release it from the MultiProgress.
        if !self.finished {
            if let Some(bar) = self.bar.take() {
                bar.abandon();
                multi().remove(&bar);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mode_reports_each_tenth_once() {
        let mut p = Progress::with_bar("epoch".into(), 100, None);
        let lines: Vec<String> = (0..100).filter_map(|_| p.advance(1)).collect();
        assert_eq!(lines.len(), 9, "{lines:?}");
        assert!(lines[0].starts_with("epoch: 10/100 (10%)"), "{}", lines[0]);
        assert!(lines[8].starts_with("epoch: 90/100 (90%)"), "{}", lines[8]);
        p.set_message("loss 0.5");
        let end = p.finish_line();
        assert!(end.starts_with("epoch: done 100/100 in "), "{end}");
        assert!(end.ends_with(" loss 0.5"), "{end}");
        p.finish();
    }

    #[test]
    fn plain_mode_big_jump_gives_one_line() {
        let mut p = Progress::with_bar("b".into(), 7, None);
        let line = p.advance(5).expect("a line");
        assert!(line.starts_with("b: 5/7 (70%)"), "{line}");
        assert_eq!(p.advance(0), None);
        assert_eq!(p.advance(2), None, "100% is reported by finish only");
        let mut z = Progress::with_bar("z".into(), 0, None);
        assert_eq!(z.advance(3), None);
    }
}
