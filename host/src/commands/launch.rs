//! `archai launch`: starts the workers of a data-parallel job on this machine, the way torchrun
//! does (same environment variables, so workers started by torchrun or a batch scheduler join
//! the same way), and watches them: output prefixed by rank, signals forwarded, the first
//! failure reported with its rank and message, and the others stopped instead of left hanging.
use super::compare::{kill_with_parent, self_exe};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Run an archai command as N data-parallel workers: `archai launch --nproc 2 -- train
/// confs/models/resnet_small.yaml`. Sets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
/// MASTER_ADDR and MASTER_PORT for each, and splits this machine's cores between them.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Workers on this machine.
    #[arg(long, default_value_t = 1)]
    pub nproc: usize,
    /// Machines in the job (each runs its own `archai launch` with its --node-rank).
    #[arg(long, default_value_t = 1)]
    pub nnodes: usize,
    /// This machine's index among the --nnodes.
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// Address of the machine that runs global rank 0 (its store listens there, and only there).
    #[arg(long, default_value = "127.0.0.1")]
    pub master_addr: String,
    /// Port of rank 0's store; default: a free port (one machine) or 29500 (several).
    #[arg(long)]
    pub master_port: Option<u16>,
    /// Intra-op threads per worker (`common.threads`, OMP_NUM_THREADS, RAYON_NUM_THREADS);
    /// default: this machine's cores divided by --nproc, at least 1.
    #[arg(long)]
    pub threads: Option<usize>,
    /// The archai command each worker runs (`run CONF ...`, `train MODEL ...`; `compare FILE ...`
    /// or `search CONF ...` to spread a comparison's runs or a search's candidates over the
    /// workers), after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Seconds the surviving workers get to notice a failed peer and exit on their own (they do at
/// their next collective) before they are stopped.
const GRACE: Duration = Duration::from_secs(15);

struct Worker {
    rank: usize,
    child: Child,
    status: Option<ExitStatus>,
    /// The last lines it wrote to stderr: the failure message.
    tail: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn env_for(args: &Args, local: usize, port: u16, threads: usize) -> Vec<(&'static str, String)> {
    let world = args.nnodes * args.nproc;
    vec![
        ("RANK", (args.node_rank * args.nproc + local).to_string()),
        ("LOCAL_RANK", local.to_string()),
        ("WORLD_SIZE", world.to_string()),
        ("LOCAL_WORLD_SIZE", args.nproc.to_string()),
        ("MASTER_ADDR", args.master_addr.clone()),
        ("MASTER_PORT", port.to_string()),
        ("OMP_NUM_THREADS", threads.to_string()),
        ("RAYON_NUM_THREADS", threads.to_string()),
    ]
}

/// Idle OpenMP threads that spin steal the cores the other workers compute on: measured 100-140
/// ms per resnet_small step with spinning, 65 ms passive (2 workers on 2 cores). A value the
/// user set is kept.
fn wait_policy() -> Option<(&'static str, &'static str)> {
    std::env::var_os("OMP_WAIT_POLICY").is_none().then_some(("OMP_WAIT_POLICY", "PASSIVE"))
}

fn check(args: &Args) -> Result<()> {
    if args.nproc == 0 || args.nnodes == 0 {
        bail!("--nproc and --nnodes must be at least 1");
    }
    if args.node_rank >= args.nnodes {
        bail!("--node-rank {} must be below --nnodes {}", args.node_rank, args.nnodes);
    }
    if args.nnodes > 1 && args.master_port.is_none() {
        bail!("a job over several machines needs --master-port (the same on every machine)");
    }
    match args.command.first().map(String::as_str) {
        Some("run" | "train" | "compare" | "search") => Ok(()),
        Some("bench") if args.command.get(1).map(String::as_str) == Some("allreduce") => Ok(()),
        Some(other) => bail!(
            "`archai launch` runs `run`, `train`, `compare`, `search` or `bench allreduce` in each worker, not `{other}` \
             (only they work over ranks)"
        ),
        None => {
            bail!("give the command after `--`, e.g. `archai launch --nproc 2 -- train confs/models/resnet_small.yaml`")
        }
    }
}

/// Copies a worker's stream to ours, each line prefixed with its rank; stderr lines are also
/// kept (the last 20) for the failure report.
fn relay(
    rank: usize,
    stream: impl std::io::Read + Send + 'static,
    to_stderr: bool,
    tail: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if to_stderr {
                let _ = writeln!(std::io::stderr().lock(), "[rank {rank}] {line}");
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.push(line);
                if t.len() > 20 {
                    t.remove(0);
                }
            } else {
                let _ = writeln!(std::io::stdout().lock(), "[rank {rank}] {line}");
            }
        }
    })
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}{}", if sig == 9 { " (SIGKILL)" } else { "" }),
        _ => "ended".into(),
    }
}

fn signal_all(workers: &[Worker], signal: libc::c_int) {
    for w in workers.iter().filter(|w| w.status.is_none()) {
        // SAFETY: kill(2) on a child we started and have not reaped.
        unsafe {
            libc::kill(w.child.id() as libc::pid_t, signal);
        }
    }
}

pub fn run(plugin_dirs: &[PathBuf], args: &Args) -> Result<()> {
    check(args)?;
    let port = match args.master_port {
        Some(p) => p,
        None => archai_dist::free_loopback_port().context("choosing a free port for the rendezvous")?,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or((cores / args.nproc).max(1));
    let exe = self_exe()?;
    crate::interrupt::install();
    let mut workers = Vec::new();
    for local in 0..args.nproc {
        let mut cmd = Command::new(&exe);
        for d in plugin_dirs {
            cmd.arg("--plugin-dir").arg(d);
        }
        cmd.args(&args.command).envs(env_for(args, local, port, threads)).envs(wait_policy());
        if matches!(args.command[0].as_str(), "run" | "train" | "search") {
            // The experiment's own `common.threads` would win over OMP_NUM_THREADS; set last, it
            // is also what the run's config_used.yaml records.
            cmd.args(["--set", &format!("common.threads={threads}")]);
        } else if args.command[0] == "compare"
            && !args.command.iter().any(|a| a == "--threads" || a.starts_with("--threads="))
        {
            // A rank's runs share its threads (`compare --jobs`), unless the command says how many.
            cmd.args(["--threads", &threads.to_string()]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // Their own process group: a Ctrl-C at the terminal reaches the launcher, which forwards
        // it once to every worker (a worker stops at a step boundary all ranks agree on).
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        kill_with_parent(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("starting worker {local}"))?;
        let rank = args.node_rank * args.nproc + local;
        let tail = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(relay(rank, out, false, tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(relay(rank, err, true, tail.clone()));
        }
        workers.push(Worker { rank, child, status: None, tail, readers });
    }
    eprintln!(
        "launch: {} worker(s) on this machine (world size {}), rendezvous {}:{port}, {threads} thread(s) each",
        args.nproc,
        args.nnodes * args.nproc,
        args.master_addr
    );
    let mut first_failure: Option<(usize, ExitStatus, Instant)> = None;
    let mut signals_forwarded = 0;
    let mut stopping = None;
    loop {
        if let Some(sig) = crate::interrupt::take() {
            // The first signal asks the workers to stop cleanly; a second one kills them.
            signals_forwarded += 1;
            signal_all(&workers, if signals_forwarded == 1 { sig } else { libc::SIGKILL });
            crate::interrupt::install();
        }
        for w in workers.iter_mut().filter(|w| w.status.is_none()) {
            if let Some(status) = w.child.try_wait().context("waiting for a worker")? {
                w.status = Some(status);
                if !status.success() && first_failure.is_none() {
                    first_failure = Some((w.rank, status, Instant::now()));
                }
            }
        }
        if workers.iter().all(|w| w.status.is_some()) {
            break;
        }
        if let Some((_, _, at)) = first_failure {
            let waited = at.elapsed();
            if waited > GRACE && stopping.is_none() {
                signal_all(&workers, libc::SIGTERM);
                stopping = Some(Instant::now());
            } else if stopping.is_some_and(|s| s.elapsed() > Duration::from_secs(5)) {
                signal_all(&workers, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for w in &mut workers {
        for r in w.readers.drain(..) {
            let _ = r.join();
        }
    }
    if let Some((rank, status, _)) = first_failure {
        let w = workers.iter().find(|w| w.rank == rank).expect("the failed rank is a worker");
        let tail = w.tail.lock().unwrap_or_else(|p| p.into_inner());
        let message = tail.iter().rev().find(|l| l.starts_with("error:")).or_else(|| tail.last());
        let others: Vec<String> = workers
            .iter()
            .filter(|o| o.rank != rank)
            .map(|o| format!("rank {} {}", o.rank, o.status.map(describe).unwrap_or_default()))
            .collect();
        bail!(
            "rank {rank} {}{}; {}",
            describe(status),
            message.map(|m| format!(": {m}")).unwrap_or_default(),
            if others.is_empty() { "no other worker".to_string() } else { others.join(", ") }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nproc: usize, nnodes: usize, node_rank: usize, command: &[&str]) -> Args {
        Args {
            nproc,
            nnodes,
            node_rank,
            master_addr: "127.0.0.1".into(),
            master_port: Some(29600),
            threads: None,
            command: command.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn workers_get_torchrun_variables_with_global_ranks() {
        let a = args(2, 2, 1, &["train", "m.yaml"]);
        let env: std::collections::HashMap<_, _> = env_for(&a, 1, 29600, 3).into_iter().collect();
        assert_eq!(env["RANK"], "3");
        assert_eq!(env["LOCAL_RANK"], "1");
        assert_eq!(env["WORLD_SIZE"], "4");
        assert_eq!(env["LOCAL_WORLD_SIZE"], "2");
        assert_eq!(env["MASTER_PORT"], "29600");
        assert_eq!(env["OMP_NUM_THREADS"], "3");
        let parsed = archai_dist::WorldEnv::from_vars(|k| env.get(k).cloned()).unwrap().unwrap();
        assert_eq!((parsed.rank, parsed.local_rank, parsed.world), (3, 1, 4));
    }

    #[test]
    fn launches_that_cannot_work_are_refused_before_starting_anything() {
        assert!(check(&args(2, 1, 0, &["run", "c.yaml"])).is_ok());
        assert!(check(&args(2, 1, 0, &["compare", "c.yaml"])).is_ok());
        assert!(check(&args(2, 1, 0, &["search", "c.yaml"])).is_ok());
        let e = check(&args(2, 1, 0, &["report", "c"])).unwrap_err().to_string();
        assert!(e.contains("not `report`"), "{e}");
        assert!(check(&args(0, 1, 0, &["run"])).is_err());
        assert!(check(&args(2, 2, 2, &["run"])).unwrap_err().to_string().contains("--node-rank 2"));
        let mut several = args(2, 2, 0, &["run"]);
        several.master_port = None;
        assert!(check(&several).unwrap_err().to_string().contains("--master-port"));
    }
}
