//! README claims that no other test checked: refusals of a search phase in one line, a forward
//! overflow stopping an fp16 run, where plugins are looked for, `archai config` printing what a
//! run records, the measured comparison's tables (the report of the committed runs), the links
//! inside the README and the Tour's files and experiments.
mod common;
use archai_runlog::schema::RunStatus;
use common::*;
use std::path::Path;
use std::process::Command;

/// The `error:` lines of a failed command's stderr.
fn error_lines(o: &std::process::Output) -> Vec<String> {
    assert!(!o.status.success(), "the command should fail: {}", output_text(o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    stderr.lines().filter(|l| !l.contains(" INFO ") && !l.contains(" WARN ")).map(str::to_string).collect()
}

fn darts_toy(sets: &[&str], out: &Path) -> std::process::Output {
    let mut args: Vec<String> = ["run", "confs/algos/darts.yaml", "--toy"].iter().map(|s| s.to_string()).collect();
    for s in sets {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    args.extend(["--out".to_string(), out.display().to_string()]);
    archai(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn fp16_and_param_groups_are_refused_in_a_search_phase_in_one_line() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let fp16 = darts_toy(&["nas.search.trainer.precision=fp16"], &tmp.path().join("fp16"));
    let lines = error_lines(&fp16);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains("precision fp16 needs loss scaling")
            && lines[0].contains("search in bf16 or fp32"),
        "{lines:?}"
    );
    let groups = darts_toy(
        &["nas.search.trainer.param_groups=[{name: head, params: ['classifier.*'], optimizer: {kind: sgd, lr: 0.01}}]"],
        &tmp.path().join("groups"),
    );
    let lines = error_lines(&groups);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("param_groups cannot be used with a search algorithm")
            && lines[0].contains("remove trainer.param_groups"),
        "{lines:?}"
    );
}

#[test]
fn a_forward_overflow_stops_an_fp16_run_as_in_fp32() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // A learning rate that throws the weights far past fp16's range after the first update:
    // the next forward overflows, which loss scaling cannot undo.
    let o = archai(&[
        "train",
        "confs/models/resnet_small.yaml",
        "--toy",
        "--set",
        "nas.eval.trainer.precision=fp16",
        "--set",
        "nas.eval.trainer.optimizer.lr=1e12",
        "--set",
        "nas.eval.trainer.max_batches=6",
        "--set",
        "nas.eval.trainer.scheduler.warmup_epochs=0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = output_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("the loss became") && text.contains("training stopped"), "{text}");
    let log = yaml(&out.join("log.yaml"));
    assert_eq!(log["status"].as_str(), Some("failed"));
}

/// `archai plugins` with the binary and environment given; returns (success, output).
fn plugins_listing(bin: &Path, cwd: &Path, env_dir: Option<&Path>, flag_dir: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(bin);
    cmd.current_dir(cwd).env_remove("ARCHAI_PLUGIN_DIR");
    if let Some(d) = env_dir {
        cmd.env("ARCHAI_PLUGIN_DIR", d);
    }
    if let Some(d) = flag_dir {
        cmd.arg("--plugin-dir").arg(d);
    }
    let o = cmd.arg("plugins").output().unwrap();
    (o.status.success(), output_text(&o))
}

#[test]
fn plugins_are_looked_for_by_flag_then_environment_then_repository_then_beside_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let bin = archai_bin();
    let repo = repo_root();
    let real = plugin_dir();
    // Run from the repository: target/plugins.
    let (ok, text) = plugins_listing(&bin, &repo, None, None);
    assert!(ok && text.contains("libops_darts.so"), "{text}");
    // $ARCHAI_PLUGIN_DIR wins over target/plugins: an empty one finds nothing.
    let (ok, text) = plugins_listing(&bin, &repo, Some(&empty), None);
    assert!(!ok || !text.contains("libops_darts.so"), "the environment was ignored: {text}");
    // --plugin-dir wins over $ARCHAI_PLUGIN_DIR.
    let (ok, text) = plugins_listing(&bin, &repo, Some(&empty), Some(&real));
    assert!(ok && text.contains("libops_darts.so"), "{text}");
    // Elsewhere, a copy of the binary finds plugins/ beside itself.
    let install = tmp.path().join("install");
    std::fs::create_dir_all(install.join("plugins")).unwrap();
    std::fs::copy(&bin, install.join("archai")).unwrap();
    std::fs::copy(real.join("libops_darts.so"), install.join("plugins/libops_darts.so")).unwrap();
    let (ok, text) = plugins_listing(&install.join("archai"), tmp.path(), None, None);
    assert!(ok && text.contains("libops_darts.so") && !text.contains("libgdas.so"), "{text}");
}

#[test]
fn archai_config_prints_what_a_run_records_in_config_used() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let sets = [
        "--set",
        "nas.eval.model_desc=confs/models/resnet_small.yaml",
        "--set",
        "nas.eval.trainer.max_batches=1",
        "--set",
        "nas.eval.trainer.max_eval_batches=1",
        "--set",
        "common.seed=3",
    ];
    let mut run = vec!["run", "confs/train.yaml", "--toy"];
    run.extend(sets);
    run.extend(["--out", out.to_str().unwrap()]);
    let o = archai(&run);
    assert!(o.status.success(), "{}", output_text(&o));
    let mut config = vec!["config", "confs/train.yaml", "--toy"];
    config.extend(sets);
    let printed = archai(&config);
    assert!(printed.status.success(), "{}", output_text(&printed));
    let recorded = std::fs::read_to_string(out.join("config_used.yaml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim_end(), recorded.trim_end());
    assert!(recorded.contains("seed: 3"), "{recorded}");
}

#[test]
fn a_batch_that_cannot_fit_in_memory_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let o = darts_toy(&["nas.search.trainer.batch_size=1000000000"], &tmp.path().join("run"));
    let lines = error_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("nas.search.trainer.batch_size = 1000000000")
            && lines[0].contains("GB (two fp32 copies), more than the")
            && lines[0].contains("available"),
        "{lines:?}"
    );
    assert!(!output_text(&o).contains("search: darts_search"), "the search started: {}", output_text(&o));
}

/// The activation estimate refuses a search batch whose inputs fit but whose network cannot
/// (the README's example), before the search network is built or any step runs. The full-size
/// search network (25.5 MB per sample) at 200,000 rows needs about 5 TB, more than any machine
/// this runs on, while the inputs need 1.3 GB.
#[test]
fn a_batch_whose_activations_cannot_fit_is_refused_before_the_search_starts() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let o = archai(&[
        "run",
        "confs/algos/darts.yaml",
        "--set",
        "nas.search.trainer.batch_size=200000",
        "--out",
        run.to_str().unwrap(),
    ]);
    let lines = error_lines(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("nas.search.trainer.batch_size = 200000: darts_search keeps at least")
            && lines[0].contains("of activations for a chunk of 200000 rows (25.54 MB per sample")
            && lines[0].contains("lower batch_size or raise batch_chunks"),
        "{lines:?}"
    );
    assert!(!output_text(&o).contains("search: darts_search with"), "the network was built: {}", output_text(&o));
    assert!(!run.join("search/checkpoint.pt").exists());
}

/// The lines between `<!-- BEGIN name -->` and `<!-- END name -->` in the README.
fn readme_block(name: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (begin, end) = (format!("<!-- BEGIN {name} -->"), format!("<!-- END {name} -->"));
    let start = readme.find(&begin).unwrap_or_else(|| panic!("README has no `{begin}`"));
    let stop = readme[start..].find(&end).unwrap_or_else(|| panic!("README has no `{end}`")) + start;
    readme[start + begin.len()..stop].lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Copies a comparison directory without its runs in progress (`status: running`): what a
/// checkout of the committed runs holds while the comparison goes on here.
fn copy_without_runs_in_progress(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    let log = src.join("log.yaml");
    if log.is_file() && archai_runlog::RunRecord::read(&log).unwrap().status == RunStatus::Running {
        std::fs::remove_dir(dst).unwrap();
        return;
    }
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let to = dst.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_without_runs_in_progress(&path, &to);
        } else {
            std::fs::copy(&path, &to).unwrap();
        }
    }
}

#[test]
fn the_readmes_comparison_tables_are_the_report_of_the_committed_runs() {
    // results/compare-fmnist-small-all holds the finished runs of the multi-algorithm comparison
    // (logs, configurations, searched cells; no weights); the README quotes their report.
    let dir = "results/compare-fmnist-small-all";
    assert!(repo_root().join(dir).join("comparison.yaml").is_file(), "{dir} is missing");
    let tmp = tempfile::tempdir().unwrap();
    copy_without_runs_in_progress(&repo_root().join(dir), &tmp.path().join(dir));
    // Run from the copy's root so that the report names the run directories as the README does.
    let o =
        Command::new(archai_bin()).current_dir(tmp.path()).args(["report", dir, "--out", "report"]).output().unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let report = std::fs::read_to_string(tmp.path().join("report/report.md")).unwrap();
    let quoted = readme_block("compare-fmnist-small-all");
    assert!(quoted.iter().filter(|l| l.starts_with("| ") && !l.starts_with("|---")).count() >= 4, "{quoted:?}");
    for line in &quoted {
        assert!(
            report.contains(line.as_str()),
            "the README says\n{line}\nwhich `archai report {dir}` does not (scripts/readme-comparison.sh rewrites the block):\n{report}"
        );
    }
    // A table the README quotes is quoted whole: a finished run missing from it fails too.
    let report_lines: Vec<&str> = report.lines().map(str::trim).collect();
    // The three tables are quoted: per experiment, against the baseline once it has runs, per run.
    let tables = ["## Test accuracy per experiment", "## Against the baseline", "## Runs"];
    for title in tables.into_iter().filter(|t| report_lines.iter().any(|l| l.starts_with(t))) {
        let at = report_lines.iter().position(|l| l.starts_with(title)).unwrap();
        let header = report_lines[at + 1..].iter().find(|l| l.starts_with('|')).unwrap();
        assert!(quoted.iter().any(|q| q == header), "the README does not quote the report's table `{title}`");
    }
    for header in quoted.iter().filter(|l| l.starts_with("| ")) {
        let Some(at) = report_lines.iter().position(|l| l == header) else { continue };
        let is_header = at + 1 < report_lines.len() && report_lines[at + 1].starts_with("|---");
        if !is_header {
            continue;
        }
        for row in report_lines[at + 2..].iter().take_while(|l| l.starts_with('|')) {
            assert!(quoted.iter().any(|q| q == row), "the README's table `{header}` lacks the report's row\n{row}");
        }
    }
}

#[test]
fn every_link_inside_the_readme_leads_to_a_heading() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    // GitHub's anchors: the heading in lower case, punctuation other than `-` and `_` dropped,
    // spaces as `-`.
    let mut anchors = std::collections::BTreeSet::new();
    let mut in_code = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            let title = line.trim_start_matches('#').trim();
            let slug: String = title
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect();
            anchors.insert(slug);
        }
    }
    let links: Vec<&str> = readme.split("](#").skip(1).map(|rest| rest.split(')').next().unwrap()).collect();
    assert!(links.len() >= 20, "the contents list links every section: {links:?}");
    for link in links {
        assert!(anchors.contains(link), "README links to #{link}, which is no heading; headings: {anchors:?}");
    }
}

#[test]
fn the_tours_files_exist_and_its_experiments_resolve() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let tour = readme.split("## Tour").nth(1).unwrap().split("```bash").nth(1).unwrap().split("```").next().unwrap();
    let mut experiments = 0;
    for line in tour.lines().filter(|l| l.starts_with("archai ")) {
        let command = line.split('#').next().unwrap();
        let words: Vec<&str> = command.split_whitespace().collect();
        for file in words.iter().filter(|w| w.ends_with(".yaml")) {
            assert!(repo_root().join(file).is_file(), "the Tour names {file}, which does not exist: {line}");
            // Experiments of `run` and `search` resolve with the Tour's flags (config only).
            if matches!(words[1], "run" | "search") {
                let mut args = vec!["config", file];
                if words.contains(&"--toy") {
                    args.push("--toy");
                }
                let o = archai(&args);
                assert!(o.status.success(), "{line}: {}", output_text(&o));
                experiments += 1;
            }
        }
    }
    assert!(experiments >= 10, "the Tour runs the algorithms: {experiments} experiments found");
}
