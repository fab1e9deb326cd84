//! The run's structured log (log.yaml) and TensorBoard scalars, written together.
pub use archai_runlog::{LogTree, RunDir, RunLogError, TbWriter};

pub struct RunLog {
    pub tree: LogTree,
    pub tb: Option<TbWriter>,
}

impl RunLog {
    /// Opens RUN_DIR/log.yaml (kept when resuming) and a TensorBoard writer under RUN_DIR/tb.
    pub fn open(run_dir: &std::path::Path) -> Result<Self, RunLogError> {
        let tree = LogTree::open(run_dir.join("log.yaml"))?;
        let tb = Some(TbWriter::create(&run_dir.join("tb"))?);
        Ok(Self { tree, tb })
    }

    /// Records a scalar in TensorBoard; a failing event file is reported once and then ignored,
    /// so a full disk does not lose the run's other results.
    pub fn scalar(&mut self, tag: &str, value: f64, step: usize) {
        if let Some(tb) = &mut self.tb {
            if let Err(e) = tb.add_scalar(tag, value as f32, step as i64) {
                tracing::warn!("TensorBoard events disabled: {e}");
                self.tb = None;
            }
        }
    }

    pub fn flush(&mut self) -> Result<(), RunLogError> {
        if let Some(tb) = &mut self.tb {
            tb.flush()?;
        }
        self.tree.flush()
    }
}
