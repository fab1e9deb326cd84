//! `archai search` through the real binary and the real plugins (spaces, discrete-search): the
//! sweep finds exactly the front of the whole space (and `archai config` prints its record), every searcher repeats itself and resumes
//! after SIGKILL without evaluating anything twice, unsatisfiable constraints and unknown names
//! are errors that say what to fix.
mod common;

use archai_runlog::schema::RunStatus;
use archai_runlog::RunRecord;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Rows of the last search_state CSV as (header, rows of fields).
fn final_state(run: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let r = RunRecord::read(&run.join("log.yaml")).unwrap();
    let csv = r.discrete.unwrap().summary.unwrap().state_csv;
    let text = std::fs::read_to_string(run.join(csv)).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    // The last column (the architecture) is quoted JSON with commas: split off the others only.
    let rows = lines.map(|l| l.splitn(header.len(), ',').map(str::to_string).collect()).collect();
    (header, rows)
}

fn search(conf: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["search", conf, "--toy", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    archai(&args)
}

#[test]
fn the_sweep_finds_exactly_the_front_of_the_whole_space() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let o = search(
        "confs/search/pareto_sweep.yaml",
        &out,
        &[
            "--set",
            "search.objectives=[{name: macs}, {name: params}]",
            "--set",
            "search.space.config={cells: [3, 4, 5], nodes: [1, 2, 3], channels: [4, 8], reductions: [1, 2]}",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    // `archai config` prints what the search recorded (its toy file is confs/search/toy.yaml).
    let printed = archai(&[
        "config",
        "confs/search/pareto_sweep.yaml",
        "--toy",
        "--set",
        "search.objectives=[{name: macs}, {name: params}]",
        "--set",
        "search.space.config={cells: [3, 4, 5], nodes: [1, 2, 3], channels: [4, 8], reductions: [1, 2]}",
    ]);
    assert!(printed.status.success(), "{}", output_text(&printed));
    let recorded = std::fs::read_to_string(out.join("config_used.yaml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim_end(), recorded.trim_end());
    let (h, rows) = final_state(&out);
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    // Every architecture of the space, once.
    assert_eq!(rows.len(), 3 * 3 * 2 * 2);
    let ids: BTreeSet<&String> = rows.iter().map(|r| &r[col("id")]).collect();
    assert_eq!(ids.len(), rows.len());
    // The front by brute force over (macs, params), both minimised.
    let pts: Vec<(f64, f64)> =
        rows.iter().map(|r| (r[col("macs")].parse().unwrap(), r[col("params")].parse().unwrap())).collect();
    for (i, p) in pts.iter().enumerate() {
        let dominated = pts.iter().any(|q| q.0 <= p.0 && q.1 <= p.1 && (q.0 < p.0 || q.1 < p.1));
        assert_eq!(rows[i][col("is_pareto")] == "true", !dominated, "row {i}: {:?}", rows[i]);
    }
    // The front's models are written, and the plot of the pair.
    let front: Vec<&Vec<String>> = rows.iter().filter(|r| r[col("is_pareto")] == "true").collect();
    for r in &front {
        assert!(out.join(format!("pareto_models_iter_0/{}.yaml", r[col("id")])).is_file());
    }
    let svg = std::fs::read_to_string(out.join("pareto_macs_vs_params.svg")).unwrap();
    assert_eq!(svg.matches("class=\"model\"").count(), rows.len());
    assert!(svg.contains(">front after<") && svg.contains(">iteration 0<") && svg.contains("lower is better"));
    // The PNG copy has the plot's text and marks in its pixels.
    let decoder = png::Decoder::new(std::fs::File::open(out.join("pareto_macs_vs_params.png")).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (640, 420));
    let px = info.line_size / info.width as usize;
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let dark = pixels.iter().filter(|p| p[..3].iter().all(|&c| c < 100)).count();
    let blue = pixels.iter().filter(|p| p[2] > 150 && p[0] < 60).count();
    assert!(dark > 2000 && blue > 50, "dark {dark} blue {blue}");
    // Hypervolume per iteration: log.yaml and TensorBoard agree.
    let r = RunRecord::read(&out.join("log.yaml")).unwrap();
    let hv = r.discrete.unwrap().iterations[&0].hypervolume;
    assert!(hv > 0.0);
    let tb: Vec<_> = std::fs::read_dir(out.join("tb")).unwrap().map(|e| e.unwrap().path()).collect();
    let events = archai_runlog::read_events(&tb[0]).unwrap();
    let logged: Vec<f32> =
        events.iter().flat_map(|e| &e.scalars).filter(|s| s.tag == "discrete/hypervolume").map(|s| s.value).collect();
    assert_eq!(logged, vec![hv as f32]);
}

fn cache_keys(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("cache.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{}|{}|{}", v["objective"], v["id"], v["budget"])
        })
        .collect()
}

#[test]
fn every_searcher_repeats_itself_and_resumes_after_a_kill_without_evaluating_twice() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    for name in
        ["random", "evolution_pareto", "local_search", "regularized_evolution", "successive_halving", "mo_bananas"]
    {
        let conf = format!("confs/search/{name}.yaml");
        let a = tmp.path().join(format!("{name}-a"));
        let b = tmp.path().join(format!("{name}-b"));
        for dir in [&a, &b] {
            let o = search(&conf, dir, &[]);
            assert!(o.status.success(), "{name}: {}", output_text(&o));
        }
        let whole = final_state(&a);
        assert!(whole.1.len() >= 3, "{name}: too few evaluations to mean anything: {:?}", whole.1);
        assert_eq!(whole, final_state(&b), "{name}: seeded runs differ");

        // Killed as soon as the first iteration is checkpointed, then resumed.
        let cut = tmp.path().join(format!("{name}-cut"));
        let plugins = plugin_dir();
        let mut child = Command::new(archai_bin())
            .current_dir(repo_root())
            .arg("--plugin-dir")
            .arg(&plugins)
            .args(["search", &conf, "--toy", "--out", cut.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !cut.join("search_checkpoint.json").is_file() {
            assert!(child.try_wait().unwrap().is_none(), "{name}: finished before its first checkpoint was seen");
            assert!(t0.elapsed() < Duration::from_secs(120), "{name}: no checkpoint in 2 minutes");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let killed = RunRecord::read(&cut.join("log.yaml")).unwrap();
        assert_eq!(killed.status, RunStatus::Running, "{name}: the run had ended before the kill");
        let o = search(&conf, &cut, &["--resume"]);
        assert!(o.status.success(), "{name}: {}", output_text(&o));
        assert_eq!(final_state(&cut), whole, "{name}: the resumed search ended elsewhere");
        let keys = cache_keys(&cut);
        let unique: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{name}: a value was computed twice");
        assert_eq!(keys.len(), cache_keys(&a).len(), "{name}: not the same evaluations as the whole run");
    }
}

#[test]
fn unsatisfiable_constraints_stop_with_an_error_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("unsat");
    let o = search(
        "confs/search/evolution_pareto.yaml",
        &out,
        &[
            "--set",
            "search.objectives=[{name: macs, constraint: [0, 10]}, {name: params}]",
            "--set",
            "search.max_invalid_tries=40",
        ],
    );
    let t = output_text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("no architecture met the constraints in 40 tries: macs in [0, 10] failed 40 times"), "{t}");
    let r = RunRecord::read(&out.join("log.yaml")).unwrap();
    assert_eq!(r.status, RunStatus::Failed);
}

#[test]
fn unknown_names_list_the_available_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        ("search.space.name=darts-cellz", &["darts-cells", "macro-sweep"]),
        ("search.searcher.name=evolution", &["evolution-pareto", "successive-halving"]),
        ("search.objectives=[{name: flops}]", &["params", "macs", "latency_ms", "val_top1"]),
    ];
    for (i, (set, expected)) in cases.iter().enumerate() {
        let o = search("confs/search/evolution_pareto.yaml", &tmp.path().join(i.to_string()), &["--set", set]);
        let t = output_text(&o);
        assert!(!o.status.success(), "{set}: {t}");
        for e in *expected {
            assert!(t.contains(e), "{set}: `{e}` not listed in: {t}");
        }
    }
    // A constraint on the trained objective is refused before anything runs.
    let o = search(
        "confs/search/evolution_pareto.yaml",
        &tmp.path().join("c"),
        &["--set", "search.objectives=[{name: val_top1, constraint: [0.5, 1]}]"],
    );
    assert!(output_text(&o).contains("`val_top1` cannot carry a constraint"), "{}", output_text(&o));
}

#[test]
fn worker_processes_give_the_same_search_as_one_process() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let conf = "confs/search/evolution_pareto.yaml";
    // One libtorch thread per training either way, so the numbers can be compared exactly.
    let one = tmp.path().join("one");
    let o = search(conf, &one, &["--set", "common.threads=1"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let two = tmp.path().join("two");
    let o = search(conf, &two, &["--set", "common.threads=2", "--jobs", "2"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(final_state(&one), final_state(&two));
    // Each candidate was trained by a worker, which left its result and its run record.
    let evals: Vec<_> = std::fs::read_dir(two.join("evals")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!evals.is_empty());
    for d in &evals {
        assert!(d.join("result.json").is_file() && d.join("log.yaml").is_file(), "{}", d.display());
    }
}

#[test]
fn training_step_memory_does_not_depend_on_what_was_measured_before() {
    let tmp = tempfile::tempdir().unwrap();
    let objectives = "search.objectives=[{name: macs}, {name: train_peak_mb}]";
    let mut by_order = Vec::new();
    // The same architectures enumerated in two orders (channels 4 first, then 8 first).
    for (k, channels) in ["[4, 8]", "[8, 4]"].iter().enumerate() {
        let out = tmp.path().join(k.to_string());
        let space = format!("search.space.config.channels={channels}");
        let o = search("confs/search/pareto_sweep.yaml", &out, &["--set", objectives, "--set", &space]);
        assert!(o.status.success(), "{}", output_text(&o));
        let (h, rows) = final_state(&out);
        let (id, mb) =
            (h.iter().position(|c| c == "id").unwrap(), h.iter().position(|c| c == "train_peak_mb").unwrap());
        let mut m: Vec<(String, f64)> = rows.iter().map(|r| (r[id].clone(), r[mb].parse().unwrap())).collect();
        m.sort_by(|a, b| a.0.cmp(&b.0));
        by_order.push(m);
    }
    // tcmalloc's hooks count live bytes: exact up to the order threads free in. glibc's resident
    // high-water mark leaves some of what its heaps kept.
    let tolerance = if archai::allocator::LINKED == "tcmalloc" { 0.01 } else { 0.1 };
    for ((id, a), (_, b)) in by_order[0].iter().zip(&by_order[1]) {
        assert!(*a > 1.0, "{id}: {a} MiB");
        assert!((a - b).abs() <= tolerance * a.max(*b), "{id}: {a} vs {b} MiB");
    }
}

/// `archai launch --nproc 2 -- search` trains candidates on both ranks (rank 0 runs the searcher
/// and hands candidates to rank 1 through the run directory) and finds exactly what one process
/// finds.
#[test]
fn a_launched_search_trains_candidates_on_every_rank_and_matches_one_process() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let conf = "confs/search/evolution_pareto.yaml";
    let one = tmp.path().join("one");
    let o = search(conf, &one, &["--set", "common.threads=1"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let two = tmp.path().join("two");
    let o = archai(&[
        "launch",
        "--nproc",
        "2",
        "--threads",
        "1",
        "--",
        "search",
        conf,
        "--toy",
        "--out",
        two.to_str().unwrap(),
    ]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    let served = text.lines().find_map(|l| {
        l.strip_prefix("[rank 1] rank 1: trained ").and_then(|r| r.split(' ').next()?.parse::<usize>().ok())
    });
    assert!(served.is_some_and(|n| n > 0), "rank 1 trained no candidate:\n{text}");
    assert_eq!(final_state(&one), final_state(&two));
}

/// Ranks started without `archai launch` (by torchrun or a scheduler, perhaps on other machines)
/// cannot count on a launcher to stop them: a rank whose rank 0 died stops by itself once rank 0's
/// heartbeat has been silent for `common.dist_timeout_s`, naming what it waited for.
#[test]
fn a_search_rank_whose_rank_0_died_stops_with_an_error() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let [mut zero, one] = ranks_without_launcher(&[
        "search",
        "confs/search/evolution_pareto.yaml",
        "--toy",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "common.dist_timeout_s=5",
        "--set",
        "common.threads=1",
    ]);
    let t0 = Instant::now();
    while !out.join("ranks/rank-1/job-0.json").is_file() {
        assert!(t0.elapsed() < Duration::from_secs(120), "rank 0 handed rank 1 no candidate");
        std::thread::sleep(Duration::from_millis(10));
    }
    zero.kill().unwrap();
    zero.wait().unwrap();
    let killed = Instant::now();
    let o = one.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "rank 1 succeeded without its rank 0: {err}");
    assert!(err.contains("rank 0 stopped answering") && err.contains("common.dist_timeout_s"), "{err}");
    assert!(killed.elapsed() < Duration::from_secs(60), "rank 1 took {:?} to stop", killed.elapsed());
}
