//! Data-parallel training through the real binary: `archai launch --nproc 2` on loopback (Gloo,
//! CPU), against single-process runs of the same global batch; resume of a killed 2-rank job;
//! a killed rank stopping the job with an error that names it; DARTS searches over ranks equal to
//! one process; an algorithm that does not average over ranks stopped at its first step.
mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A short resnet_small training on Fashion-MNIST: global batch 32 (16 per rank), a short last
/// batch (max_batches leaves full ones, so the split is exercised by the eval's last batch).
const SETS: &[&str] = &[
    "nas.eval.trainer.epochs=2",
    "nas.eval.trainer.batch_size=32",
    "nas.eval.trainer.max_batches=6",
    "nas.eval.trainer.max_eval_batches=3",
];

fn train_args(out: &Path, sets: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        ["train", "confs/models/resnet_small.yaml", "--toy"].iter().map(|s| s.to_string()).collect();
    for s in SETS.iter().chain(sets) {
        v.extend(["--set".to_string(), s.to_string()]);
    }
    v.extend(["--out".to_string(), out.display().to_string()]);
    v
}

fn launch(nproc: &str, out: &Path, sets: &[&str]) -> Command {
    let mut cmd = Command::new(archai_bin());
    cmd.current_dir(repo_root()).arg("--plugin-dir").arg(plugin_dir());
    cmd.args(["launch", "--nproc", nproc, "--threads", "1", "--"]).args(train_args(out, sets));
    cmd
}

fn single(out: &Path, sets: &[&str]) -> std::process::Output {
    let args = train_args(out, sets);
    archai(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The trained parameters (`w.` entries that are weights, not batch-norm buffers) of a run.
fn weights(run: &Path) -> Vec<(String, tch::Tensor)> {
    let mut t = archai::train::read_model_tensors(&run.join("eval/checkpoint.pt")).unwrap();
    t.retain(|(n, _)| n.starts_with("w.") && !n.contains("running_") && !n.contains("num_batches"));
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

fn max_difference(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> f64 {
    assert_eq!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>());
    a.iter().zip(b).map(|((_, x), (_, y))| (x - y).abs().max().double_value(&[])).fold(0.0, f64::max)
}

fn train_losses(run: &Path) -> Vec<f64> {
    let log = yaml(&run.join("log.yaml"));
    (0..2).map(|e| log["eval"]["epochs"][e]["train"]["loss"].as_f64().expect("train loss of the epoch")).collect()
}

#[test]
fn two_ranks_train_like_one_process_with_the_same_global_batch_and_only_rank_0_writes() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    // One process computing the global batch in two chunks is what two ranks compute (with the
    // ranks' one thread: libtorch's reductions depend on the thread count).
    let one = tmp.path().join("one");
    let o = single(&one, &["nas.eval.trainer.batch_chunks=2", "common.threads=1"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let two = tmp.path().join("two");
    // Small buckets, so that the gradient sum overlaps the backward pass in several collectives.
    let o = launch("2", &two, &["common.dist_bucket_mib=0.05"]).output().unwrap();
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("[rank 0]") && text.contains("data-parallel: 2 ranks"), "{text}");
    let log = std::fs::read_to_string(two.join("log.txt")).unwrap();
    let overlapped = overlapped_buckets(&log);
    assert!(overlapped.0 >= 2 && overlapped.1 > overlapped.0, "buckets summed during the backward: {overlapped:?}");
    assert!(!log.contains("not during it"), "{log}");
    // Summing after the backward (in other buckets) adds the same numbers: the same weights.
    let after = tmp.path().join("after");
    let o = launch("2", &after, &["common.dist_overlap=false"]).output().unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let diff = max_difference(&weights(&after), &weights(&two));
    assert_eq!(diff, 0.0, "gradients summed during vs after the backward: max weight difference {diff:e}");

    let diff = max_difference(&weights(&one), &weights(&two));
    assert!(diff <= 1e-5, "2 ranks vs 1 process: max weight difference {diff:e}");
    for (a, b) in train_losses(&one).iter().zip(train_losses(&two)) {
        assert!((a - b).abs() < 1e-5, "train loss {a} (1 process) vs {b} (2 ranks)");
    }
    let log = yaml(&two.join("log.yaml"));
    assert_eq!(log["status"].as_str(), Some("ok"));
    // The launcher's thread split is what the run used and recorded.
    assert_eq!(yaml(&two.join("config_used.yaml"))["common"]["threads"].as_i64(), Some(1));
    assert_eq!(log["run"]["threads"].as_i64(), Some(1));
    // Metrics count the whole global batch, not one rank's share.
    assert_eq!(log["eval"]["epochs"][0]["train"]["samples"].as_u64(), Some(6 * 32));
    // Only rank 0's files: no second log, no per-rank leftovers in the run directory.
    let names: Vec<String> =
        std::fs::read_dir(&two).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains("rank")), "{names:?}");

    // The control: without the gradient sum, a rank trains on its half only and the runs differ.
    let half = tmp.path().join("half");
    let o = single(&half, &["nas.eval.trainer.batch_size=16", "common.threads=1"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let diff = max_difference(&weights(&half), &weights(&two));
    assert!(diff > 1e-3, "a half-batch run should differ, max difference {diff:e}");
}

/// (buckets summed during the backward, buckets) from the line rank 0 logs at its second step.
fn overlapped_buckets(log: &str) -> (usize, usize) {
    let line =
        log.lines().find(|l| l.contains("gradient buckets")).unwrap_or_else(|| panic!("no bucket line in {log}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "of").expect("'M of N gradient buckets'");
    (words[at - 1].parse().unwrap(), words[at + 1].parse().unwrap())
}

/// Pids of the direct children of `parent` whose environment has RANK=`rank`.
fn child_with_rank(parent: u32, rank: usize) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(pid) = entry.ok()?.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the parenthesized command: state, ppid, ...
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|kv| kv == format!("RANK={rank}").as_bytes()) {
            return Some(pid);
        }
    }
    None
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_rank_stops_the_job_within_a_minute_with_an_error_naming_it() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let log_path = tmp.path().join("launch.txt");
    let log = std::fs::File::create(&log_path).unwrap();
    let long = ["nas.eval.trainer.epochs=50", "nas.eval.trainer.max_batches=100000"];
    let mut launcher = launch("2", &out, &long).stdout(Stdio::null()).stderr(log).spawn().expect("start archai launch");
    let pid = launcher.id();
    wait_for("rank 1 starting", Duration::from_secs(60), || child_with_rank(pid, 1).is_some());
    // Training is under way once the first epoch line is out or the progress is reported.
    wait_for("training", Duration::from_secs(120), || {
        std::fs::read_to_string(&log_path).unwrap_or_default().contains("eval: resnet_small")
    });
    std::thread::sleep(Duration::from_millis(500));
    let victim = child_with_rank(pid, 1).expect("rank 1 is running");
    // SAFETY: kill(2) of a process this test started (through the launcher).
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let killed_at = Instant::now();
    let status = loop {
        if let Some(s) = launcher.try_wait().unwrap() {
            break s;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(60), "the job still runs 60 s after rank 1 was killed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("rank 1 was killed by signal 9"), "{text}");
    // The surviving worker stopped on its own with c10d's error naming the lost rank.
    assert!(text.contains("[rank 0] error:") && text.contains("rank 1 exited or stopped answering"), "{text}");
    assert!(text.contains("rank 0 exited with status 1"), "{text}");
}

#[test]
fn a_killed_two_rank_job_resumes_to_the_same_weights_as_an_uninterrupted_one() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let sets = ["nas.eval.trainer.epochs=3"];
    let whole = tmp.path().join("whole");
    let o = launch("2", &whole, &sets).output().unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    // resnet_small's gradients fit the default bucket: one bucket, nothing to overlap.
    let overlapped = overlapped_buckets(&std::fs::read_to_string(whole.join("log.txt")).unwrap());
    assert_eq!(overlapped, (0, 1), "default buckets, resnet_small");

    let cut = tmp.path().join("cut");
    let mut job = launch("2", &cut, &sets).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let checkpoint = cut.join("eval/checkpoint.pt");
    wait_for("the first checkpoint", Duration::from_secs(300), || checkpoint.is_file());
    // Killing the launcher takes its workers down too (they die with their parent).
    job.kill().unwrap();
    job.wait().unwrap();
    let log = std::fs::read_to_string(cut.join("log.yaml")).unwrap();
    assert!(log.contains("status: running"), "the job finished before it was killed");

    let mut resume = launch("2", &cut, &sets);
    resume.arg("--resume");
    let o = resume.output().unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let diff = max_difference(&weights(&whole), &weights(&cut));
    assert_eq!(diff, 0.0, "resumed 2-rank job vs uninterrupted one");
    assert_same_training(&whole, &cut);
}

fn run_args(conf: &str, out: &Path, sets: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["run", conf, "--toy"].iter().map(|s| s.to_string()).collect();
    for s in ["nas.eval.trainer.epochs=0", "nas.search.trainer.epochs=2", "nas.search.trainer.max_batches=4"]
        .iter()
        .chain(sets)
    {
        v.extend(["--set".to_string(), s.to_string()]);
    }
    v.extend(["--out".to_string(), out.display().to_string()]);
    v
}

fn launch_run(conf: &str, out: &Path, sets: &[&str]) -> std::process::Output {
    Command::new(archai_bin())
        .current_dir(repo_root())
        .arg("--plugin-dir")
        .arg(plugin_dir())
        .args(["launch", "--nproc", "2", "--threads", "1", "--"])
        .args(run_args(conf, out, sets))
        .output()
        .unwrap()
}

/// Weights and architecture parameters of a search checkpoint.
fn searched(run: &Path) -> Vec<(String, tch::Tensor)> {
    let mut t = archai::train::read_model_tensors(&run.join("search/checkpoint.pt")).unwrap();
    t.retain(|(n, _)| {
        n.starts_with("a.") || (n.starts_with("w.") && !n.contains("running_") && !n.contains("num_batches"))
    });
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn a_two_rank_darts_search_equals_one_process_for_both_orders() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    // The third: the host sums the weight step's architecture gradient over the ranks, the
    // plugin averages its own; the one-sided difference subtracts one from the other.
    let one_sided =
        ["nas.search.algorithm.config.unroll=weight_step", "nas.search.algorithm.config.difference=one_sided"];
    for (order, extra, section) in
        [("1", &[][..], "algorithm"), ("2", &[][..], "algorithm"), ("2", &one_sided[..], "algorithm_after_step")]
    {
        let mut sets = vec![format!("nas.search.algorithm.config.order={order}")];
        sets.extend(extra.iter().map(|s| s.to_string()));
        let name = format!("{order}-{}", extra.len());
        let one = tmp.path().join(format!("one-{name}"));
        let mut one_sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        one_sets.extend(["nas.search.trainer.batch_chunks=2", "common.threads=1"]);
        let args = run_args("confs/algos/darts.yaml", &one, &one_sets);
        let o = archai(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", output_text(&o));
        let two = tmp.path().join(format!("two-{name}"));
        let o = launch_run("confs/algos/darts.yaml", &two, &sets.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", output_text(&o));
        let (a, b) = (searched(&one), searched(&two));
        assert!(a.iter().any(|(n, _)| n.starts_with("a.")), "the search has architecture parameters");
        let diff = max_difference(&a, &b);
        assert!(
            diff <= 1e-5,
            "order {order} {extra:?}: 2 ranks vs 1 process, max difference of weights and alphas {diff:e}"
        );
        let loss = |run: &Path| yaml(&run.join("log.yaml"))["search"]["epochs"][1][section]["arch_loss"].as_f64();
        let (l1, l2) = (loss(&one).expect("arch_loss logged"), loss(&two).expect("arch_loss logged"));
        assert!((l1 - l2).abs() < 1e-5, "order {order} {extra:?}: architecture loss {l1} vs {l2}");
        // The same searched architecture.
        let desc = |run: &Path| std::fs::read_to_string(run.join("search/final_model_desc.yaml")).unwrap();
        assert_eq!(desc(&one), desc(&two), "order {order} {extra:?}");
    }
}

/// Recomputed cells run a second forward inside the backward pass; their parameters' gradients
/// still complete once, so buckets sent during the backward carry whole gradients. Two batch
/// chunks: only the second chunk's backward sends (the first accumulates). GDAS reaches other
/// ops at every step: the ones a step does not reach are sent before its backward.
#[test]
fn searches_sum_the_same_gradients_during_and_after_the_backward() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    for (conf, sets) in [
        ("darts", &["nas.search.trainer.recompute_cells=true", "nas.search.trainer.batch_chunks=2"][..]),
        ("gdas", &[][..]),
    ] {
        let conf = format!("confs/algos/{conf}.yaml");
        let mut sets: Vec<&str> = sets.to_vec();
        sets.push("common.dist_bucket_mib=0.005");
        let during = tmp.path().join(format!("during-{}", sets.len()));
        let o = launch_run(&conf, &during, &sets);
        assert!(o.status.success(), "{}", output_text(&o));
        let log = std::fs::read_to_string(during.join("log.txt")).unwrap();
        let (overlapped, buckets) = overlapped_buckets(&log);
        assert!(overlapped * 2 > buckets, "{conf}: {overlapped} of {buckets} buckets summed during the backward");
        // Not rescued by the fallback that sums everything again after the backward.
        assert!(!log.contains("not during it"), "{log}");
        let after = tmp.path().join(format!("after-{}", sets.len()));
        sets.push("common.dist_overlap=false");
        let o = launch_run(&conf, &after, &sets);
        assert!(o.status.success(), "{}", output_text(&o));
        let diff = max_difference(&searched(&during), &searched(&after));
        assert_eq!(diff, 0.0, "{conf}: weights and alphas, gradients summed during vs after the backward");
    }
}

#[test]
fn an_algorithm_that_does_not_average_over_ranks_is_stopped_at_its_first_step() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    // XNAS updates its alphas example by example from its rank's rows: it cannot average.
    let o = launch_run("confs/algos/xnas.yaml", &tmp.path().join("run"), &[]);
    let text = output_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("after the first step of epoch 1")
            && text.contains("algorithm `xnas` must average the architecture gradients")
            && text.contains("Model::average_over_ranks"),
        "{text}"
    );
    assert!(text.contains("exited with status 1"), "{text}");
}

#[test]
fn the_differentiable_algorithms_that_average_search_over_ranks_in_step() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    // Two epochs: the ranks are compared after each epoch's first step and at its end.
    for algo in ["gdas", "pc-darts", "snas", "didarts", "divnas"] {
        let out = tmp.path().join(algo);
        let o = launch_run(&format!("confs/algos/{algo}.yaml"), &out, &["nas.search.trainer.max_batches=2"]);
        assert!(o.status.success(), "{algo}: {}", output_text(&o));
        let log = yaml(&out.join("log.yaml"));
        assert_eq!(log["status"].as_str(), Some("ok"), "{algo}");
        assert!(out.join("search/final_model_desc.yaml").is_file(), "{algo}");
    }
}

/// A global batch with fewer rows than ranks (batch 1 on 2 ranks) leaves rank 1 without rows in
/// every step, and an uneven one (3 rows in chunks of 2) leaves it fewer chunks than rank 0. Such a rank still runs its forward on no rows, so GDAS' Gumbel samples stay in step
/// and SNAS' architecture parameters get their (zero) gradient; both then search exactly like one
/// process. This stopped both before (GDAS: "the data-parallel run diverged"; SNAS: "no
/// architecture gradient after the weight step").
#[test]
fn a_batch_with_fewer_rows_than_ranks_searches_like_one_process() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    for algo in ["gdas", "snas"] {
        let conf = format!("confs/algos/{algo}.yaml");
        let sets = ["nas.search.trainer.batch_size=1", "nas.search.trainer.max_batches=3"];
        let one = tmp.path().join(format!("one-{algo}"));
        let mut single: Vec<&str> = sets.to_vec();
        single.push("common.threads=1");
        let args = run_args(&conf, &one, &single);
        let o = archai(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{algo}: {}", output_text(&o));
        let two = tmp.path().join(format!("two-{algo}"));
        let o = launch_run(&conf, &two, &sets);
        assert!(o.status.success(), "{algo}: {}", output_text(&o));
        let diff = max_difference(&searched(&one), &searched(&two));
        assert!(diff <= 1e-5, "{algo}: 2 ranks vs 1 process, max difference of weights and alphas {diff:e}");
    }
    // 3 rows in chunks of 2: rank 0 computes 2 chunks of 1 row, rank 1 one chunk and one forward
    // on no rows, so GDAS' samples stay in step (the ranks' weights are compared every epoch).
    let o = launch_run(
        "confs/algos/gdas.yaml",
        &tmp.path().join("uneven"),
        &["nas.search.trainer.batch_size=3", "nas.search.trainer.batch_chunks=2", "nas.search.trainer.max_batches=3"],
    );
    assert!(o.status.success(), "{}", output_text(&o));
}

#[test]
fn a_gradient_bucket_without_size_is_refused_with_the_key_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let o = single(&tmp.path().join("run"), &["common.dist_bucket_mib=0"]);
    let text = output_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("common.dist_bucket_mib = 0") && text.contains("positive size"), "{text}");
}
