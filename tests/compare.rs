//! `archai compare`, `archai report` and `archai reproduce` through the real binary on
//! Fashion-MNIST toy runs: a killed comparison resumes without re-running a finished run, the
//! HTML report renders in headless Chromium with its tables and plots, and a reproduction is
//! identical while an altered record is named at its first divergence.
mod common;

use archai_runlog::schema::RunStatus;
use archai_runlog::RunRecord;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Small budgets on top of --toy, the same for every experiment.
const BUDGET: [&str; 2] = ["nas.search.trainer.max_batches=3", "nas.eval.trainer.max_batches=10"];

fn write_comparison(dir: &Path) -> PathBuf {
    let root = repo_root();
    let file = dir.join("c.yaml");
    let text = format!(
        "compare:\n  name: t\n  experiments:\n    darts: {}\n    random: {}\n  seeds: [0, 1]\n  baseline: random\n  set: [{}]\n",
        root.join("confs/algos/darts.yaml").display(),
        root.join("confs/algos/random.yaml").display(),
        BUDGET.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// A comparison of random search alone over seeds 0..seeds (cheap runs: no search phase), with
/// the budget and `extra` sets.
fn write_random_comparison(dir: &Path, seeds: u64, extra: &[&str]) -> PathBuf {
    let file = dir.join("random.yaml");
    let sets: Vec<String> = BUDGET.iter().chain(extra).map(|s| format!("\"{s}\"")).collect();
    let seeds: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
    let text = format!(
        "compare:\n  name: r\n  experiments:\n    random: {}\n  seeds: [{}]\n  set: [{}]\n",
        repo_root().join("confs/algos/random.yaml").display(),
        seeds.join(", "),
        sets.join(", ")
    );
    std::fs::write(&file, text).unwrap();
    file
}

fn finished(run: &Path) -> bool {
    RunRecord::read(&run.join("log.yaml")).is_ok_and(|r| r.status == RunStatus::Ok)
}

#[test]
fn a_killed_comparison_resumes_and_its_report_renders() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_comparison(tmp.path());
    let out = tmp.path().join("cmp");
    let args = ["compare", conf.to_str().unwrap(), "--toy", "--jobs", "2", "--out", out.to_str().unwrap()];

    // Kill the comparison as soon as its first run has finished.
    let plugins = plugin_dir();
    let mut child = Command::new(archai_bin())
        .current_dir(repo_root())
        .arg("--plugin-dir")
        .arg(&plugins)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runs: Vec<PathBuf> =
        ["darts/seed-0", "darts/seed-1", "random/seed-0", "random/seed-1"].iter().map(|r| out.join(r)).collect();
    let t0 = Instant::now();
    let first = loop {
        if let Some(r) = runs.iter().find(|r| finished(r)) {
            break r.clone();
        }
        assert!(child.try_wait().unwrap().is_none(), "the comparison ended before it could be killed");
        assert!(t0.elapsed() < Duration::from_secs(300), "no run finished in 5 minutes");
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(runs.iter().any(|r| !finished(r)), "every run finished before the kill");
    let kept = std::fs::read(first.join("log.yaml")).unwrap();
    let kept_mtime = std::fs::metadata(first.join("log.yaml")).unwrap().modified().unwrap();
    // The runs killed with the comparison die with it (they would hold their directories).
    std::thread::sleep(Duration::from_millis(300));

    let o = archai(&args);
    let t = output_text(&o);
    assert!(o.status.success(), "{t}");
    let n_kept: usize = t
        .split("finished earlier and kept")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of kept runs in:\n{t}"));
    assert!(n_kept >= 1, "{t}");
    assert!(runs.iter().all(|r| finished(r)), "{t}");
    assert_eq!(std::fs::read(first.join("log.yaml")).unwrap(), kept, "a finished run was run again");
    assert_eq!(std::fs::metadata(first.join("log.yaml")).unwrap().modified().unwrap(), kept_mtime);
    assert!(t.contains("random") && t.contains("darts"), "{t}");

    // The three files of the report.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Test accuracy per experiment") && md.contains("## Against the baseline (random)"), "{md}");
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    // The toy DARTS searches cannot decide: the report says so per run, random has no verdict.
    assert!(md.contains("darts seed 0: the architecture was chosen by noise"), "{md}");
    assert!(
        md.contains("NO, chosen by noise") && csv.lines().any(|l| l.starts_with("darts,") && l.contains(",false,")),
        "{md}\n{csv}"
    );
    // Equal budget: the same epochs and samples everywhere, so no budget warning.
    assert!(!md.contains("unequal budget"), "{md}");
    // Both experiments searched cells with two seeds: one pair each, read from the runs' final
    // model descriptions.
    for exp in ["darts", "random"] {
        let row = md.lines().find(|l| l.starts_with(&format!("| {exp} | 2 |"))).unwrap_or_else(|| panic!("{md}"));
        assert!(row.ends_with(", 1 pairs) |"), "no cell agreement for {exp}: {row}");
    }

    // As a user sees it: Chromium's DOM has the tables and the plots ...
    let html = out.join("report.html");
    let url = format!("file://{}", html.display());
    let dom = headless(&["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(dom.contains("<table id=\"experiments\">") && dom.contains("<table id=\"baseline\">"), "{dom}");
    assert!(dom.matches("class=\"plot\"").count() >= 3, "fewer than 3 plots");
    assert!(dom.contains("darts seed 0") && dom.contains("reduction cell"), "the searched cells are missing");
    // ... and the screenshot is a page, not a blank or error screen.
    let shot = tmp.path().join("report.png");
    let o = headless(&[&format!("--screenshot={}", shot.display()), "--window-size=1200,1600", &url]);
    assert!(shot.is_file(), "no screenshot: {}", output_text(&o));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 1600));
    let px = info.line_size / info.width as usize;
    let dark = buf[..info.buffer_size()].chunks(px).filter(|p| p[..3].iter().all(|&c| c < 128)).count();
    let coloured = buf[..info.buffer_size()]
        .chunks(px)
        .filter(|p| p[..3].iter().max().unwrap() - p[..3].iter().min().unwrap() > 60)
        .count();
    // Text and axes (dark) and the coloured series of the plots.
    let total = (info.width * info.height) as usize;
    assert!(dark > total / 200, "too little text: {dark} dark pixels of {total}");
    assert!(coloured > total / 2000, "no coloured plot marks: {coloured} of {total}");
}

#[test]
fn reproduce_says_identical_and_names_the_first_divergence() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut args = vec!["run", "confs/algos/darts.yaml", "--toy", "--out", run.to_str().unwrap()];
    for s in BUDGET {
        args.extend(["--set", s]);
    }
    let o = archai(&args);
    assert!(o.status.success(), "{}", output_text(&o));

    // The record says the toy budgets are in it; re-running it does not merge them twice.
    let used = std::fs::read_to_string(run.join("config_used.yaml")).unwrap();
    assert!(used.contains("toy_applied: true"), "{used}");
    let again = tmp.path().join("again");
    let o = archai(&["reproduce", run.to_str().unwrap(), "--out", again.to_str().unwrap()]);
    let t = output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("identical:"), "{t}");

    // A copy whose record differs in one logged number (the eval's first-epoch training loss)
    // and, separately, in the final weights.
    let altered = tmp.path().join("altered");
    copy_tree(&run, &altered);
    let log = altered.join("log.yaml");
    let mut tree: yaml_serde::Value = yaml(&log);
    tree["eval"]["epochs"][0]["train"]["loss"] = yaml_serde::Value::from(123.5);
    std::fs::write(&log, yaml_serde::to_string(&tree).unwrap()).unwrap();
    let o = archai(&["reproduce", altered.to_str().unwrap(), "--against", again.to_str().unwrap()]);
    let t = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("diverged at eval epoch 1, train/loss: 123.5 (original) vs "), "{t}");
    assert!(!t.contains("the environments differ"), "{t}");
    // Recorded as run on a machine with other vector extensions: the divergence names it.
    let features = yaml(&run.join("log.yaml"))["run"]["environment"]["cpu_features"].clone();
    assert!(features.as_str().is_some_and(|f| !f.is_empty()), "{features:?}");
    // tcmalloc serves the binary's allocations when build.rs linked it (scripts/setup.sh installs
    // it; README, "Memory allocator"), glibc's malloc otherwise.
    let allocator = yaml(&run.join("log.yaml"))["run"]["environment"]["allocator"].clone();
    let want =
        if archai::allocator::LINKED == "tcmalloc" { "tcmalloc (linked into archai)" } else { "glibc (libc.so.6)" };
    assert_eq!(allocator.as_str(), Some(want), "{allocator:?}");
    tree["run"]["environment"]["cpu_features"] = yaml_serde::Value::from("avx2 fma (another machine)");
    std::fs::write(&log, yaml_serde::to_string(&tree).unwrap()).unwrap();
    let o = archai(&["reproduce", altered.to_str().unwrap(), "--against", again.to_str().unwrap()]);
    let t = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "the environments differ: CPU vector extensions: `avx2 fma (another machine)` vs `{}`",
            features.as_str().unwrap()
        )),
        "{t}"
    );
    tree["run"]["environment"]["cpu_features"] = features;

    tree["eval"]["epochs"][0]["train"]["loss"] =
        yaml(&run.join("log.yaml"))["eval"]["epochs"][0]["train"]["loss"].clone();
    tree["eval"]["summary"]["weights_sha256"] = yaml_serde::Value::from("0000");
    std::fs::write(&log, yaml_serde::to_string(&tree).unwrap()).unwrap();
    let o = archai(&["reproduce", altered.to_str().unwrap(), "--against", again.to_str().unwrap()]);
    let t = output_text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("diverged at eval, summary/weights_sha256: 0000 (original)"), "{t}");

    // Not a run: exit 2 with the reason.
    let o = archai(&["reproduce", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(output_text(&o).contains("not a run directory"));
}

/// A typo in the comparison's `set` stops it before it writes anything into --out, so the
/// corrected command is not refused as "a different comparison".
#[test]
fn an_experiment_that_does_not_load_stops_the_comparison_before_it_writes_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let file = write_random_comparison(tmp.path(), 1, &["nas.eval.trainer.not_a_key=1"]);
    let o = archai(&["compare", file.to_str().unwrap(), "--toy", "--out", out.to_str().unwrap()]);
    let t = output_text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("not_a_key"), "{t}");
    assert!(!out.exists(), "{} was written", out.display());
}

/// Unequal configured budgets are named when the comparison starts (here it then stops at an
/// experiment that does not load, so nothing runs).
#[test]
fn a_comparison_warns_of_unequal_budgets_before_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = repo_root();
    let longer = tmp.path().join("darts3.yaml");
    let include = root.join("confs/algos/darts.yaml");
    std::fs::write(
        &longer,
        format!("__include__: {}\nnas: {{search: {{trainer: {{epochs: 3}}}}}}\n", include.display()),
    )
    .unwrap();
    let bad = tmp.path().join("bad.yaml");
    let include = root.join("confs/algos/random.yaml");
    std::fs::write(&bad, format!("__include__: {}\nnas: {{eval: {{trainer: {{not_a_key: 1}}}}}}\n", include.display()))
        .unwrap();
    let file = tmp.path().join("c.yaml");
    let text = format!(
        "compare:\n  name: u\n  experiments:\n    darts: {}\n    darts3: {}\n    bad: {}\n  seeds: [0]\n",
        root.join("confs/algos/darts.yaml").display(),
        longer.display(),
        bad.display()
    );
    std::fs::write(&file, text).unwrap();
    let out = tmp.path().join("cmp");
    let o = archai(&["compare", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let t = output_text(&o);
    assert!(!o.status.success() && t.contains("not_a_key"), "{t}");
    assert!(
        t.contains("unequal budget: the search budgets differ (darts3 3 epochs x all batches of 64 vs darts 50 epochs x all batches of 64)"),
        "{t}"
    );
    assert!(!out.exists(), "{} was written", out.display());
}

#[test]
fn a_failed_run_fails_the_comparison_after_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("c.yaml");
    let conf = repo_root().join("confs/algos/random.yaml");
    // Loads (so the comparison starts) but fails in the run's own checks.
    let text = format!(
        "compare:\n  name: bad\n  experiments: {{random: {}}}\n  seeds: [0]\n  set: [\"nas.search.val_ratio=1.5\"]\n",
        conf.display()
    );
    std::fs::write(&file, text).unwrap();
    let out = tmp.path().join("cmp");
    let o = archai(&["compare", file.to_str().unwrap(), "--toy", "--out", out.to_str().unwrap()]);
    let t = output_text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("1 of 1 runs failed") && t.contains("val_ratio"), "{t}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("1 of 1 runs did not finish"), "{md}");
    assert!(out.join("logs/random-seed-0.txt").is_file());
}

/// The experiment YAML edited between two attempts of a comparison: the comparison keeps
/// running the configuration it started with (saved in `<out>/configs/`), says so, and still
/// resumes when the edited YAML no longer loads.
#[test]
fn a_comparison_keeps_the_configuration_it_started_with_when_the_yaml_changes() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("mine.yaml");
    let write_source = |name: &str, extra: &str| {
        let base = repo_root().join("confs/algos/random.yaml");
        let text = format!("__include__: {}\ncommon:\n  experiment_name: {name}\n{extra}", base.display());
        std::fs::write(&source, text).unwrap();
    };
    write_source("as-started", "");
    let file = tmp.path().join("c.yaml");
    let sets = BUDGET.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "compare:\n  name: frozen\n  experiments: {{mine: {}}}\n  seeds: [0, 1]\n  set: [{sets}]\n",
        source.display()
    );
    std::fs::write(&file, text).unwrap();
    let out = tmp.path().join("cmp");
    let compare = || archai(&["compare", file.to_str().unwrap(), "--toy", "--out", out.to_str().unwrap()]);
    let o = compare();
    let t = output_text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("warning"), "nothing changed: {t}");
    let frozen = out.join("configs/mine.yaml");
    assert!(frozen.is_file(), "{t}");
    let name_of = |run: &str| {
        yaml(&out.join(run).join("config_used.yaml"))["common"]["experiment_name"].as_str().unwrap().to_string()
    };
    assert_eq!(name_of("mine/seed-1"), "as-started");

    // Edited, and seed 1 lost: it runs again, as the comparison started it.
    write_source("edited", "");
    std::fs::remove_dir_all(out.join("mine/seed-1")).unwrap();
    let o = compare();
    let t = output_text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("its YAML has changed since this comparison started") && t.contains("configs/mine.yaml"), "{t}");
    assert_eq!(name_of("mine/seed-1"), "as-started");
    let used = yaml(&out.join("mine/seed-1/config_used.yaml"));
    assert_eq!(used["nas"]["eval"]["trainer"]["max_batches"].as_i64(), Some(10), "the comparison's set still applies");
    assert_eq!(used["common"]["seed"].as_i64(), Some(1));

    // Broken (a key this archai does not know): the finished comparison still resumes.
    write_source("edited", "nas:\n  eval:\n    not_a_key: 1\n");
    let o = compare();
    let t = output_text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("not_a_key") && t.contains("keep the configuration it started with"), "{t}");
}

#[test]
fn a_comparison_keeps_starting_runs_after_its_binary_was_rebuilt() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    // A copy of the binary, replaced while the comparison runs, as `cargo build` does.
    let exe = tmp.path().join("archai");
    std::fs::copy(archai_bin(), &exe).unwrap();
    let file = tmp.path().join("c.yaml");
    let conf = repo_root().join("confs/algos/random.yaml");
    let budget = "nas.eval.trainer.max_batches=5";
    std::fs::write(
        &file,
        format!(
            "compare:\n  name: rebuilt\n  experiments: {{random: {}}}\n  seeds: [0, 1, 2]\n  set: [\"{budget}\"]\n",
            conf.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("cmp");
    let mut command = Command::new(&exe);
    command
        .current_dir(repo_root())
        .arg("--plugin-dir")
        .arg(plugin_dir())
        .args(["compare", file.to_str().unwrap(), "--toy", "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // A process forked by a parallel test between the copy's open and close holds the new file's
    // write descriptor until it execs: executing the copy then fails with ETXTBSY for a moment.
    let mut tries = 0;
    let child = loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    let t0 = Instant::now();
    while !finished(&out.join("random/seed-0")) {
        assert!(t0.elapsed() < Duration::from_secs(300), "the first run did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&exe).unwrap();
    std::fs::write(&exe, b"#!/bin/sh\nexit 3\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let t = output_text(&o);
    assert!(o.status.success(), "{t}");
    // Seed 1 may have started before the swap; seed 2 started after it.
    assert!(finished(&out.join("random/seed-2")), "{t}");
}

/// `archai launch --nproc 2 -- compare` spreads the runs over the two ranks (each takes every
/// second unfinished run), rank 0 writes the report once both are done, and every run is the run
/// a single-process comparison makes (same threads per run).
#[test]
fn a_launched_comparison_spreads_its_runs_over_the_ranks_and_matches_one_process() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    // Random search only (no search phase): two runs, one per rank.
    let conf = write_random_comparison(tmp.path(), 2, &[]);
    let one = tmp.path().join("one");
    let o = archai(&[
        "compare",
        conf.to_str().unwrap(),
        "--toy",
        "--jobs",
        "2",
        "--threads",
        "2",
        "--out",
        one.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let two = tmp.path().join("two");
    let o = archai(&[
        "launch",
        "--nproc",
        "2",
        "--",
        "compare",
        conf.to_str().unwrap(),
        "--toy",
        "--out",
        two.to_str().unwrap(),
    ]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    for rank in 0..2 {
        let ran = text
            .lines()
            .filter(|l| l.starts_with(&format!("[rank {rank}] [")) && l.contains(": ok, test top-1"))
            .count();
        assert_eq!(ran, 1, "rank {rank} ran 1 of the 2 runs:\n{text}");
    }
    assert!(text.contains("[rank 0] report: "), "{text}");
    assert!(two.join("report.html").is_file());
    for run in ["random/seed-0", "random/seed-1"] {
        assert_same_training(&one.join(run), &two.join(run));
    }
}

/// Ranks started without `archai launch` (torchrun, a scheduler, other machines) have no launcher
/// to stop them: a comparison's rank 0 whose rank 1 died stops once rank 1's heartbeat has been
/// silent for `common.dist_timeout_s`, instead of waiting for its report forever.
#[test]
fn a_comparison_whose_rank_died_stops_with_an_error_naming_it() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let conf = write_random_comparison(tmp.path(), 4, &["common.dist_timeout_s=5"]);
    let out = tmp.path().join("cmp");
    let [zero, mut one] = ranks_without_launcher(&[
        "compare",
        conf.to_str().unwrap(),
        "--toy",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let t0 = Instant::now();
    while !out.join("ranks/rank-1.alive").is_file() {
        assert!(t0.elapsed() < Duration::from_secs(120), "rank 1 never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    one.kill().unwrap();
    one.wait().unwrap();
    let o = zero.wait_with_output().unwrap();
    let text = output_text(&o);
    assert!(!o.status.success(), "rank 0 succeeded without rank 1:\n{text}");
    assert!(text.contains("rank 1 stopped answering") && text.contains("common.dist_timeout_s"), "{text}");
    assert!(!out.join("report.html").exists(), "a report without rank 1's runs");
}

/// Every comparison shipped in confs/compare resolves, and its experiments train at one budget:
/// the searches (those that train a supernet) the same epochs, batch and batches per epoch, every
/// evaluation the same. A comparison file that drifts from its experiments' files fails here
/// instead of hours into a run (the report would only warn).
#[test]
fn the_shipped_comparisons_resolve_at_equal_budgets() {
    let dir = repo_root().join("confs/compare");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("fmnist_small_all.yaml")), "{files:?}");
    let budget = |t: &yaml_serde::Value| {
        ["epochs", "batch_size", "max_batches"].map(|k| yaml_serde::to_string(&t[k]).unwrap().trim().to_string())
    };
    for file in files {
        let compare = &yaml(&file)["compare"];
        let sets: Vec<String> = compare["set"]
            .as_sequence()
            .map(|s| s.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let (mut searches, mut evals) = (Vec::new(), Vec::new());
        for (name, conf) in compare["experiments"].as_mapping().unwrap() {
            let (name, conf) = (name.as_str().unwrap(), conf.as_str().unwrap());
            let mut args = vec!["config", conf];
            for s in &sets {
                args.extend(["--set", s.as_str()]);
            }
            let o = archai(&args);
            assert!(
                o.status.success(),
                "{}: experiment {name} ({conf}) does not resolve: {}",
                file.display(),
                output_text(&o)
            );
            let resolved: yaml_serde::Value = yaml_serde::from_slice(&o.stdout).unwrap();
            let search = &resolved["nas"]["search"]["trainer"];
            if search["epochs"].as_u64().unwrap_or(0) > 0 {
                searches.push((name.to_string(), budget(search)));
            }
            evals.push((name.to_string(), budget(&resolved["nas"]["eval"]["trainer"])));
        }
        for (what, runs) in [("search", &searches), ("eval", &evals)] {
            for (name, b) in runs.iter() {
                assert_eq!(b, &runs[0].1, "{}: {what} budget of {name} differs from {}'s", file.display(), runs[0].0);
            }
        }
    }
}
