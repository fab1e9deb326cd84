//! The ranks of a launched outer-loop search (`archai launch --nproc N -- search ...`): rank 0
//! runs the searcher and hands candidates to the other ranks through the run directory, which
//! they must share (one machine, or a shared file system).
//!
//! `<run>/ranks/rank-R/job-S.json` is the S-th candidate for rank R (written whole, then renamed
//! into place); the rank trains it as an `archai search-eval` process, which leaves result.json in
//! the candidate's directory, then writes `done-S.json`. A `stop` file ends the rank. Rank 0 clears
//! `ranks/` before telling the others where the run is, so files of an earlier attempt never count.
//! Rank 0 beats `ranks/rank-0.alive` (see [`crate::heartbeat`]); a rank whose rank 0 stopped
//! beating for `common.dist_timeout_s` stops with an error instead of waiting forever.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One candidate's training, as files.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct EvalJob {
    /// The search's config_used.yaml.
    pub config: PathBuf,
    /// The candidate's model description.
    pub desc: PathBuf,
    pub budget: f64,
    /// The candidate's directory (its log.yaml, checkpoint and result.json).
    pub out: PathBuf,
    pub warm_start: Option<PathBuf>,
}

/// How a rank's job ended.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Done {
    /// `None` when the worker succeeded, else what it said last.
    error: Option<String>,
}

fn ranks_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("ranks")
}

fn alive_path(run_dir: &Path) -> PathBuf {
    ranks_dir(run_dir).join("rank-0.alive")
}

fn rank_dir(run_dir: &Path, rank: usize) -> PathBuf {
    ranks_dir(run_dir).join(format!("rank-{rank}"))
}

/// Writes `value` as JSON to `path` so that a reader sees all of it or nothing.
fn write_whole(path: &Path, value: &impl Serialize) -> Result<()> {
    crate::commands::compare::write_whole(path, serde_json::to_string(value)?.as_bytes())
}

/// Another rank, as rank 0 sees it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub rank: usize,
    dir: PathBuf,
    next: Arc<AtomicU64>,
}

impl Remote {
    /// Hands `job` to the rank; returns its sequence number.
    pub fn submit(&self, job: &EvalJob) -> Result<u64> {
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        write_whole(&self.dir.join(format!("job-{seq}.json")), job)?;
        Ok(seq)
    }

    /// `None` while job `seq` runs; then `Ok` or the worker's error.
    pub fn done(&self, seq: u64) -> Result<Option<Result<(), String>>> {
        let path = self.dir.join(format!("done-{seq}.json"));
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let done: Done =
            serde_json::from_str(&text).with_context(|| format!("{} is not a job report", path.display()))?;
        Ok(Some(match done.error {
            None => Ok(()),
            Some(e) => Err(format!("on rank {}: {e}", self.rank)),
        }))
    }
}

/// This process's place in a launched search (rank 0 of 1 when not launched).
pub struct SearchRanks {
    pub rank: usize,
    pub world: usize,
    group: Option<archai_dist::ProcessGroup>,
    timeout: Duration,
    beat: Option<crate::heartbeat::Heartbeat>,
}

impl SearchRanks {
    pub fn join(timeout: Duration) -> Result<SearchRanks> {
        let group = archai_dist::ProcessGroup::join_from_env(timeout)?;
        let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank(), g.world()));
        Ok(SearchRanks { rank, world, group, timeout, beat: None })
    }

    /// Rank 0: clears old rank files, makes each rank's folder, tells the others where the run
    /// is, and returns them as workers.
    pub fn lead(&mut self, run_dir: &Path) -> Result<Vec<Remote>> {
        let Some(group) = &self.group else { return Ok(Vec::new()) };
        let run_dir = std::path::absolute(run_dir)?;
        let _ = std::fs::remove_dir_all(ranks_dir(&run_dir));
        let mut remotes = Vec::new();
        for rank in 1..self.world {
            let dir = rank_dir(&run_dir, rank);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            remotes.push(Remote { rank, dir, next: Arc::new(AtomicU64::new(0)) });
        }
        self.beat = Some(crate::heartbeat::Heartbeat::start(alive_path(&run_dir))?);
        group.broadcast_bytes(0, run_dir.to_string_lossy().as_bytes())?;
        Ok(remotes)
    }

    /// Rank 0: ends the other ranks (after the search, whether it succeeded or not).
    pub fn release(&self, remotes: &[Remote]) {
        for r in remotes {
            let _ = std::fs::write(r.dir.join("stop"), "");
        }
    }

    /// Ranks > 0: learns where the run is from rank 0, then trains the candidates rank 0 hands
    /// over until it says stop.
    pub fn serve(&self, plugin_dirs: &[PathBuf], threads: usize) -> Result<()> {
        let group = self.group.as_ref().expect("only ranks of a launched search serve");
        let run_dir = PathBuf::from(String::from_utf8_lossy(&group.broadcast_bytes(0, &[])?).to_string());
        let dir = rank_dir(&run_dir, self.rank);
        let exe = crate::commands::compare::self_exe()?;
        println!("rank {}: serving candidates of {}", self.rank, run_dir.display());
        let mut seq = 0u64;
        let mut served = 0;
        let mut rank0 = crate::heartbeat::Watch::new(&alive_path(&run_dir));
        let gone = |rank0: &mut crate::heartbeat::Watch| {
            (!rank0.alive(self.timeout)).then(|| {
                anyhow::anyhow!(
                    "rank 0 stopped answering: {} has not changed for {} s (common.dist_timeout_s); this rank stops",
                    alive_path(&run_dir).display(),
                    self.timeout.as_secs()
                )
            })
        };
        loop {
            if let Some(signal) = crate::interrupt::requested() {
                anyhow::bail!("interrupted by {signal}");
            }
            if let Some(e) = gone(&mut rank0) {
                return Err(e);
            }
            if dir.join("stop").is_file() {
                println!("rank {}: trained {served} candidates", self.rank);
                return Ok(());
            }
            let path = dir.join(format!("job-{seq}.json"));
            if !path.is_file() {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let job: EvalJob =
                serde_json::from_str(&text).with_context(|| format!("{} is not a job", path.display()))?;
            let mut child = super::eval_command(&exe, plugin_dirs, &job, threads)?
                .spawn()
                .context("starting a search-eval worker")?;
            let status = loop {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                if crate::interrupt::requested().is_some() || gone(&mut rank0).is_some() {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let error = (!status.success()).then(|| format!("{status}: {}", super::last_error_line(&job.out)));
            write_whole(&dir.join(format!("done-{seq}.json")), &Done { error })?;
            seq += 1;
            served += 1;
        }
    }
}
