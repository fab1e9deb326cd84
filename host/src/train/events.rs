//! What the training loop reports as it goes, and where it goes: the loop emits [`Event`]s, an
//! [`EventSink`] turns them into files and lines (the run's [`RunLog`]: log.yaml, TensorBoard,
//! the console line of each epoch). The loop itself writes nothing.
use super::{Metrics, TrainError};
use crate::runlog::RunLog;
use archai_runlog::schema::{EpochRecord, TrainEpoch};

/// One thing that happened in a phase's training.
pub enum Event<'e> {
    /// An algorithm hook's output for the epoch, under `section` (`algorithm_start`,
    /// `algorithm`, `algorithm_after_step`, `algorithm_end`); with `scalars`, its top-level
    /// numbers are also plotted.
    Algorithm { epoch: usize, section: &'static str, output: &'e serde_json::Value, scalars: bool },
    /// The epoch's training figures (every rank's samples counted).
    Train { epoch: usize, record: &'e TrainEpoch },
    /// The epoch's validation figures.
    Val { epoch: usize, metrics: &'e Metrics },
    /// The epoch is complete (its checkpoint is written next).
    EpochEnd { epoch: usize, epochs: usize, train: &'e Metrics, val: Option<&'e Metrics>, lr: f64, seconds: f64 },
}

/// Receives a phase's events.
pub trait EventSink {
    fn event(&mut self, phase: &str, event: Event<'_>) -> Result<(), TrainError>;

    /// The training and validation figures recorded for `epoch`, if any (a resumed phase with
    /// no epoch left to run reports them).
    fn recorded(&self, phase: &str, epoch: usize) -> Option<(Metrics, Option<Metrics>)>;

    /// The progress display of a stretch of `total` steps (a bar on a terminal).
    fn progress(&mut self, label: String, total: u64) -> archai_runlog::Progress {
        archai_runlog::Progress::new(label, total)
    }
}

fn log_error(e: crate::runlog::RunLogError) -> TrainError {
    TrainError::Log(e.to_string())
}

/// Writes the top-level numbers of a hook's output as TensorBoard scalars
/// `<phase>/<section>/<key>`, whatever the plugin named them.
fn hook_scalars(log: &mut RunLog, phase: &str, section: &str, out: &serde_json::Value, epoch: usize) {
    if let Some(m) = out.as_object() {
        for (k, v) in m {
            if let Some(f) = v.as_f64() {
                log.scalar(&format!("{phase}/{section}/{k}"), f, epoch);
            }
        }
    }
}

/// The run's log: `<phase>/epochs/<n>/...` in log.yaml (the schema in archai_runlog), scalars in
/// TensorBoard, a flush and one console line per epoch.
impl EventSink for RunLog {
    fn event(&mut self, phase: &str, event: Event<'_>) -> Result<(), TrainError> {
        let key = |epoch| archai_runlog::schema::keys::epoch(phase, epoch);
        match event {
            Event::Algorithm { epoch, section, output, scalars } => {
                if scalars {
                    hook_scalars(self, phase, section, output, epoch);
                }
                self.tree.set(&format!("{}/{section}", key(epoch)), output.clone()).map_err(log_error)?;
            }
            Event::Train { epoch, record } => {
                self.tree.set(&format!("{}/train", key(epoch)), record).map_err(log_error)?;
                self.scalar(&format!("{phase}/train/loss"), record.loss, epoch);
                self.scalar(&format!("{phase}/train/top1"), record.top1, epoch);
                self.scalar(&format!("{phase}/train/top5"), record.top5, epoch);
                self.scalar(&format!("{phase}/lr"), record.lr, epoch);
            }
            Event::Val { epoch, metrics } => {
                self.tree.set(&format!("{}/val", key(epoch)), metrics.record()).map_err(log_error)?;
                self.scalar(&format!("{phase}/val/top1"), metrics.top1, epoch);
                self.scalar(&format!("{phase}/val/top5"), metrics.top5, epoch);
                self.scalar(&format!("{phase}/val/loss"), metrics.loss, epoch);
            }
            Event::EpochEnd { epoch, epochs, train, val, lr, seconds } => {
                self.flush().map_err(log_error)?;
                tracing::info!(
                    "{phase} epoch {}/{epochs}: train loss {:.4} top1 {:.4}{} lr {lr:.5} ({seconds:.1}s)",
                    epoch + 1,
                    train.loss,
                    train.top1,
                    val.map(|m| format!(", val top1 {:.4}", m.top1)).unwrap_or_default(),
                );
            }
        }
        Ok(())
    }

    fn recorded(&self, phase: &str, epoch: usize) -> Option<(Metrics, Option<Metrics>)> {
        let key = archai_runlog::schema::keys::epoch(phase, epoch);
        let record: EpochRecord = yaml_serde::from_value(self.tree.get(&key)?.clone()).ok()?;
        let train = record.train?;
        let train = Metrics { loss: train.loss, top1: train.top1, top5: train.top5, samples: train.samples as usize };
        Some((train, record.val.as_ref().map(Metrics::from_record)))
    }
}
