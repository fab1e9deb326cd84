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

    /// Starts an attempt: `status: running` (what a killed run keeps) and no `failure` left from
    /// an earlier attempt (log.txt keeps its line).
    pub fn begin_attempt(&mut self) -> Result<(), RunLogError> {
        self.tree.set("status", archai_runlog::schema::RunStatus::Running)?;
        if self.tree.get("failure").is_some() {
            self.tree.set("failure", ())?;
        }
        self.flush()
    }

    /// Ends an attempt with its wall time and status: `ok`, or `failed` / `interrupted` (a
    /// SIGINT or SIGTERM arrived) with the phase and the error, also as a line in log.txt.
    pub fn end_attempt<T>(
        &mut self,
        result: &anyhow::Result<T>,
        phase: &str,
        duration_s: f64,
    ) -> Result<(), RunLogError> {
        use archai_runlog::schema::{Failure, RunStatus};
        self.tree.set("duration_s", duration_s)?;
        match result {
            Ok(_) => self.tree.set("status", RunStatus::Ok)?,
            Err(e) => {
                let error = crate::error_text::ErrorText(e).to_string();
                let (status, level, verb) = match crate::interrupt::requested() {
                    Some(_) => (RunStatus::Interrupted, "WARN", "stopped"),
                    None => (RunStatus::Failed, "ERROR", "failed"),
                };
                archai_runlog::log_file_line(level, &format!("run {verb} in the {phase} phase: {error}"));
                self.tree.set("status", status)?;
                self.tree.set("failure", Failure { phase: phase.into(), error })?;
            }
        }
        self.flush()
    }

    pub fn flush(&mut self) -> Result<(), RunLogError> {
        if let Some(tb) = &mut self.tb {
            tb.flush()?;
        }
        self.tree.flush()
    }
}
