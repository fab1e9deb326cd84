//! End-to-end runs of the real binary with the real plugins on Fashion-MNIST (toy budgets).
mod common;

use archai::model::Network;
use archai::params::ParamStore;
use archai::plugins::PluginRegistry;
use archai_model_desc::ModelDesc;
use common::*;
use std::path::Path;
use std::process::Output;

fn ok(out: &Output) {
    assert!(out.status.success(), "archai failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn fashion_mnist_present() -> bool {
    let present = Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file();
    if !present {
        eprintln!("Fashion-MNIST missing: run scripts/setup.sh (installs dataset-fashion-mnist)");
    }
    present
}

fn test_top1(run: &Path) -> f64 {
    let log = yaml(&run.join("log.yaml"));
    log["eval"]["summary"]["test"]["top1"].as_f64().expect("eval/summary/test/top1 in log.yaml")
}

#[test]
fn toy_darts_search_and_eval_is_recorded_and_reproducible() {
    assert!(fashion_mnist_present());
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    ok(&archai(&["run", "confs/algos/darts.yaml", "--toy", "--out", first.to_str().unwrap()]));

    for f in [
        "config_used.yaml",
        "log.yaml",
        "log.txt",
        "search/model_desc.yaml",
        "search/final_model_desc.yaml",
        "search/final_cells.dot",
        "search/final_cells.svg",
    ] {
        assert!(first.join(f).is_file(), "{f} missing");
    }
    // A toy search (a few steps at DARTS' arch lr) cannot decide: log.yaml, log.txt and the
    // console say the architecture was chosen by noise.
    let record = archai_runlog::RunRecord::read(&first.join("log.yaml")).unwrap();
    let d = record.search.unwrap().summary.unwrap().decisiveness.expect("darts-topk reports decisiveness");
    assert!(!d.decided && d.entropy_fraction > 0.999, "{d:?}");
    assert!(d.fragile > 0 && d.fragile <= d.choices && d.edges.len() == 10, "{d:?}");
    let log_txt = std::fs::read_to_string(first.join("log.txt")).unwrap();
    assert!(log_txt.contains("the architecture was chosen by noise: entropy 99.99"), "{log_txt}");
    let tb: Vec<_> = std::fs::read_dir(first.join("tb")).unwrap().collect();
    assert_eq!(tb.len(), 1);
    let events = archai_runlog::read_events(&tb[0].as_ref().unwrap().path()).unwrap();
    // Every metric log.yaml has, TensorBoard has too: validation loss and the test figures
    // included.
    let tags: std::collections::BTreeSet<&str> =
        events.iter().flat_map(|e| &e.scalars).map(|s| s.tag.as_str()).collect();
    for tag in [
        "search/train/loss",
        "search/train/top5",
        "search/val/loss",
        "search/val/top5",
        "eval/test/top1",
        "eval/test/loss",
    ] {
        assert!(tags.contains(tag), "{tag} missing from {tags:?}");
    }

    // The final description parses, has no mixed edges, and compiles with the real ops.
    let text = std::fs::read_to_string(first.join("search/final_model_desc.yaml")).unwrap();
    let desc = ModelDesc::from_yaml(&text, "final").unwrap();
    assert!(desc
        .cells
        .iter()
        .flat_map(|c| &c.nodes)
        .all(|n| n.edges.len() == 2 && n.edges.iter().all(|e| !e.is_mixed())));
    let reg = PluginRegistry::scan(&[plugin_dir()]).unwrap();
    let store = ParamStore::new(tch::Device::Cpu);
    let net = Network::compile(&desc, &reg, &store).unwrap();
    let logits = net.forward(&tch::Tensor::zeros([2, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu)), false).unwrap();
    assert_eq!(logits.size(), vec![2, 10]);
    // darts.yaml evaluates with DARTS' auxiliary head (weight 0.4) after the second reduction.
    assert_eq!(desc.aux.as_ref().map(|a| a.after_cell), Some(2));
    // The searched architecture's statistics, counted like `archai stats` (aux head apart).
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("search/final_stats.json")).unwrap()).unwrap();
    let inference = store.weight_count() - archai::stats::aux_param_count(&store);
    assert_eq!(stats["params"].as_i64(), Some(inference));
    assert!(stats["aux_params"].as_i64().unwrap() > 0 && stats["macs"].as_i64().unwrap() > 0, "{stats}");
    // The head scales with the network (C = 8: widths 28 and 171, DARTS' 128 and 768 at C = 36),
    // so the toy evaluation measures the network, not the head.
    let aux = desc.aux.as_ref().unwrap();
    assert_eq!((aux.params["c_mid"].as_i64(), aux.params["c_hidden"].as_i64()), (Some(28), Some(171)));
    assert!(stats["aux_params"].as_i64().unwrap() < 2 * inference, "{stats}");

    let log = yaml(&first.join("log.yaml"));
    assert_eq!(log["eval"]["summary"]["params"].as_i64(), Some(inference));
    assert_eq!(log["search"]["summary"]["final_stats"]["params"].as_i64(), Some(inference));
    let aux_loss = log["eval"]["epochs"][0]["train"]["aux_loss"].as_f64();
    assert!(aux_loss.is_some_and(f64::is_finite), "eval aux_loss missing: {:?}", log["eval"]["epochs"][0]);
    assert_eq!(log["dataset"]["train"].as_u64(), Some(60000));
    assert!(log["search"]["epochs"][0]["train"]["loss"].as_f64().unwrap().is_finite());
    assert!(
        log["search"]["epochs"][0]["algorithm_end"]["alpha_entropy"].as_f64().is_some()
            && log["search"]["epochs"][0]["algorithm_end"]["alphas"]["normal"]
                .as_sequence()
                .is_some_and(|rows| !rows.is_empty()),
        "alpha history missing: {:?}",
        log["search"]["epochs"][0]["algorithm_end"]
    );
    let top1 = test_top1(&first);
    assert!(top1 > 0.15, "toy eval should beat chance (0.10): {top1}");
    assert_eq!(log["status"].as_str(), Some("ok"));
    assert_eq!(log["run"]["device_used"].as_str(), Some("Cpu"));
    // Every loaded plugin file is recorded with the hash of its bytes.
    let plugins = log["run"]["environment"]["plugins"].as_sequence().expect("loaded plugins recorded");
    assert!(plugins.len() >= 4, "{plugins:?}");
    for p in plugins {
        let file = plugin_dir().join(p["file"].as_str().unwrap());
        let digest = {
            use sha2::Digest;
            format!("{:x}", sha2::Sha256::digest(std::fs::read(&file).unwrap()))
        };
        assert_eq!(p["sha256"].as_str(), Some(digest.as_str()), "{}", file.display());
    }

    // config_used.yaml alone reproduces the run: same architecture, same metrics.
    let second = tmp.path().join("second");
    ok(&archai(&["run", first.join("config_used.yaml").to_str().unwrap(), "--out", second.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(second.join("search/final_model_desc.yaml")).unwrap(), text);
    assert_eq!(test_top1(&second), top1);
    assert_same_training(&first, &second);
    let used = yaml(&first.join("config_used.yaml"));
    assert_eq!(yaml(&second.join("config_used.yaml")), used);
    // Defaults no YAML file sets are written out: the record does not depend on this build.
    assert_eq!(used["nas"]["eval"]["trainer"]["batch_chunks"].as_u64(), Some(1));
    assert_eq!(used["nas"]["eval"]["trainer"]["label_smoothing"].as_f64(), Some(0.0));
}

#[test]
fn random_search_path_evaluates() {
    assert!(fashion_mnist_present());
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("random");
    ok(&archai(&[
        "run",
        "confs/algos/random.yaml",
        "--toy",
        "--set",
        "nas.search.trainer.epochs=0",
        "--out",
        run.to_str().unwrap(),
    ]));
    let desc =
        ModelDesc::from_yaml(&std::fs::read_to_string(run.join("search/final_model_desc.yaml")).unwrap(), "random")
            .unwrap();
    assert!(desc.cells.iter().flat_map(|c| &c.nodes).flat_map(|n| &n.edges).all(|e| e.op != "none" && !e.is_mixed()));
    assert!(test_top1(&run) > 0.0);
}

#[test]
fn an_existing_run_dir_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("log.yaml"), "keep: me\n").unwrap();
    let out = archai(&["run", "confs/algos/darts.yaml", "--toy", "--out", tmp.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(tmp.path().join("log.yaml")).unwrap(), "keep: me\n");
}

#[test]
fn unknown_override_is_an_error_with_a_suggestion() {
    let out = archai(&["config", "confs/algos/darts.yaml", "--set", "nas.search.trainer.epocs=3"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nas.search.trainer.epocs") && err.contains("did you mean `epochs`"), "{err}");
}

#[test]
fn a_missing_config_file_is_named_once_with_its_cause_once() {
    let out = archai(&["config", "no-such-experiment.yaml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read config file `no-such-experiment.yaml`"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "the cause repeated: {err}");
}

#[test]
fn a_nan_loss_stops_the_run_with_a_clear_message() {
    assert!(fashion_mnist_present());
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("nan");
    let out = archai(&[
        "run",
        "confs/algos/darts.yaml",
        "--toy",
        "--set",
        "nas.search.trainer.optimizer.lr=1e30",
        "--set",
        "nas.search.trainer.grad_clip=null",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the loss became") && err.contains("Lower the learning rate"), "{err}");
    // What finished before the failure is kept and readable, and the run says how it ended.
    let log = yaml(&run.join("log.yaml"));
    assert!(log["dataset"]["train"].as_u64() == Some(60000));
    assert_eq!(log["status"].as_str(), Some("failed"));
    assert_eq!(log["failure"]["phase"].as_str(), Some("search"));
    assert!(log["failure"]["error"].as_str().unwrap().contains("the loss became"));
    let txt = std::fs::read_to_string(run.join("log.txt")).unwrap();
    assert!(txt.lines().any(|l| l.contains("ERROR") && l.contains("run failed in the search phase")), "{txt}");
}

/// Settings the search never reads (eval, finalizer) and out-of-range numbers are refused before
/// any work: no search step runs, the process exits 1 with one message naming the key, and the
/// run directory records the failure.
#[test]
fn bad_settings_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 7] = [
        ("common.threads=100000", "common.threads = 100000"),
        ("nas.eval.trainer.batch_size=0", "nas.eval.trainer.batch_size = 0"),
        ("nas.search.finalizer.config.k=0", "`k` must be at least 1"),
        ("nas.search.trainer.optimizer.lr=-1", "nas.search.trainer.optimizer.lr = -1"),
        ("nas.search.trainer.label_smoothing=2", "label_smoothing = 2"),
        ("nas.search.trainer.max_batches=0", "max_batches"),
        ("nas.search.val_ratio=1.5", "nas.search.val_ratio = 1.5"),
    ];
    for (i, (set, says)) in cases.iter().enumerate() {
        let run = tmp.path().join(format!("case{i}"));
        let out = archai(&["run", "confs/algos/darts.yaml", "--toy", "--set", set, "--out", run.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{set}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says) && !err.contains("panicked"), "{set}: {err}");
        let log = yaml(&run.join("log.yaml"));
        assert_eq!(log["status"].as_str(), Some("failed"), "{set}");
        assert_eq!(log["failure"]["phase"].as_str(), Some("setup"), "{set}");
        assert!(log["dataset"].is_null(), "{set}: the dataset was loaded before the refusal");
        assert!(!run.join("search/checkpoint.pt").exists(), "{set}: a search step ran");
    }
}

/// A phase that would train nothing (an empty split, no batches) is an error, not a success.
#[test]
fn a_run_that_trains_nothing_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("empty");
    // Holding out all but a fraction of a sample for validation leaves an empty training split.
    let out = archai(&[
        "run",
        "confs/algos/darts.yaml",
        "--toy",
        "--set",
        "nas.search.val_ratio=0.99999",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trains nothing") && err.contains("training split has 0 samples"), "{err}");
    assert_eq!(yaml(&run.join("log.yaml"))["failure"]["phase"].as_str(), Some("search"));
}

#[test]
fn data_command_summarises_fashion_mnist() {
    assert!(fashion_mnist_present());
    let out = archai(&["data", "confs/algos/darts.yaml"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1x28x28, 10 classes"), "{text}");
    assert!(text.contains("train: 60000 samples, per class [6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000], mean [0.2860], std [0.3530]"), "{text}");
    assert!(text.contains("test: 10000 samples"), "{text}");
}

#[test]
fn manual_eval_of_a_handcrafted_model() {
    assert!(fashion_mnist_present());
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("manual");
    ok(&archai(&[
        "run",
        "confs/algos/manual.yaml",
        "--toy",
        "--set",
        "nas.eval.trainer.max_batches=5",
        "--out",
        run.to_str().unwrap(),
    ]));
    let log = yaml(&run.join("log.yaml"));
    assert!(log["search"].is_null(), "manual runs no search");
    // manual.yaml's run below uses `compute`: the measured statistics are logged.
    let mean = log["dataset"]["mean"][0].as_f64().unwrap();
    let std = log["dataset"]["std"][0].as_f64().unwrap();
    assert!((mean - 0.2860).abs() < 5e-4 && (std - 0.3530).abs() < 5e-4, "mean {mean} std {std}");
    assert!(log["eval"]["summary"]["params"].as_u64().unwrap() > 50_000);
    assert!(test_top1(&run) > 0.0);
}

/// Parameter groups from the YAML reach the optimizer, and a pattern typo stops the run before
/// training with a message that names the pattern.
#[test]
fn param_groups_from_the_config_are_applied_and_checked() {
    assert!(fashion_mnist_present());
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("groups");
    let groups = |pattern: &str| {
        format!(
            "nas.eval.trainer.param_groups=[{{name: head, params: [\"{pattern}\"], optimizer: {{kind: adam, lr: 0.001}}}}]"
        )
    };
    let good = groups("classifier.*");
    let args = |set: &str, out: &Path| -> Vec<String> {
        ["run", "confs/algos/manual.yaml", "--toy", "--set", "nas.eval.trainer.max_batches=3", "--set", set, "--out"]
            .iter()
            .map(|s| s.to_string())
            .chain([out.display().to_string()])
            .collect()
    };
    let a: Vec<String> = args(&good, &run);
    ok(&archai(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    let text = std::fs::read_to_string(run.join("log.txt")).unwrap();
    assert!(text.contains("parameter groups [(\"default\", ") && text.contains("(\"head\", 2)"), "{text}");
    let used = yaml(&run.join("config_used.yaml"));
    assert_eq!(used["nas"]["eval"]["trainer"]["param_groups"][0]["optimizer"]["kind"].as_str(), Some("adam"));
    // The head follows the cosine schedule from its own base lr (0.001), the rest from 0.025.
    let lrs = &yaml(&run.join("log.yaml"))["eval"]["epochs"][0]["train"]["group_lrs"];
    let (head, default) = (lrs["head"].as_f64().unwrap(), lrs["default"].as_f64().unwrap());
    assert!(head > 0.0 && head <= 0.001 && default > head, "{lrs:?}");
    // The names the patterns match are listed by `archai stats --param-names`.
    let out = archai(&["stats", "confs/models/resnet_small.yaml", "--param-names"]);
    ok(&out);
    let names = String::from_utf8_lossy(&out.stdout);
    assert!(names.lines().any(|l| l.starts_with("classifier.weight [10, ")), "{names}");

    let bad = groups("clasifier.*");
    let b: Vec<String> = args(&bad, &tmp.path().join("bad"));
    let out = archai(&b.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`clasifier.*` matches no parameter"), "{err}");
}

#[test]
fn resuming_a_finished_run_restores_the_trained_weights() {
    assert!(fashion_mnist_present());
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("resume");
    let args = [
        "run",
        "confs/algos/manual.yaml",
        "--toy",
        "--set",
        "nas.eval.trainer.max_batches=5",
        "--out",
        run.to_str().unwrap(),
    ];
    ok(&archai(&args));
    let trained = test_top1(&run);
    // Resuming finds the eval checkpoint after the last epoch, trains nothing more and must test
    // the restored weights and batch-norm statistics, not a fresh initialization.
    let mut resume = args.to_vec();
    resume.push("--resume");
    let out = archai(&resume);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("resumed from"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(test_top1(&run), trained);
}

/// `--resume` with a configuration that changes the model is refused naming the key (it used to
/// panic loading the checkpoint); a documented safe change (more epochs) is accepted and recorded
/// in config_used.yaml and log.yaml.
#[test]
fn resume_refuses_config_changes_that_alter_the_model_and_records_safe_ones() {
    assert!(fashion_mnist_present());
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let base = ["run", "confs/algos/darts.yaml", "--toy", "--set", "nas.eval.trainer.max_batches=2"];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        a.extend_from_slice(&["--out", run.to_str().unwrap()]);
        archai(&a)
    };
    ok(&with(&[]));
    let out = with(&["--set", "nas.search.algorithm.config.macro.channels=6", "--resume"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nas.search.algorithm.config.macro.channels (4 -> 6)") && !err.contains("panicked"), "{err}");

    ok(&with(&["--set", "nas.eval.trainer.epochs=2", "--resume"]));
    assert_eq!(yaml(&run.join("config_used.yaml"))["nas"]["eval"]["trainer"]["epochs"].as_u64(), Some(2));
    let log = yaml(&run.join("log.yaml"));
    let change = &log["resume_changes"][0][0];
    assert_eq!(change["key"].as_str(), Some("nas.eval.trainer.epochs"));
    assert_eq!((change["before"].as_u64(), change["now"].as_u64()), (Some(1), Some(2)));
    // One more eval epoch after the resume: epoch 2 is recorded, and the summary counts both.
    assert!(log["eval"]["epochs"][1]["train"]["loss"].as_f64().is_some(), "{:?}", log["eval"]);
    assert_eq!(log["eval"]["summary"]["epochs"].as_u64(), Some(2), "epochs trained over both attempts");
}

#[test]
fn ctrl_c_and_sigterm_end_a_run_as_interrupted_and_resume_finishes_it() {
    interrupted_then_resumed(libc::SIGINT, 130, "SIGINT");
    interrupted_then_resumed(libc::SIGTERM, 143, "SIGTERM");
}

fn interrupted_then_resumed(signal: libc::c_int, code: i32, name: &str) {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let args = [
        "run",
        "confs/algos/darts.yaml",
        "--toy",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "nas.search.trainer.epochs=2",
        "--set",
        "nas.search.trainer.max_batches=12",
        "--set",
        "nas.eval.trainer.max_batches=5",
    ];
    let mut child = std::process::Command::new(archai_bin())
        .current_dir(repo_root())
        .arg("--plugin-dir")
        .arg(plugin_dir())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once the first search epoch is checkpointed: the second one is under way.
    let t0 = std::time::Instant::now();
    while !out.join("search/checkpoint.pt").is_file() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        assert!(t0.elapsed() < std::time::Duration::from_secs(300));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(code), "{name}: {stderr}");
    assert!(stderr.contains(&format!("interrupted by {name}")) && stderr.contains("--resume"), "{stderr}");
    let r = archai_runlog::RunRecord::read(&out.join("log.yaml")).unwrap();
    assert_eq!(r.status, archai_runlog::schema::RunStatus::Interrupted);
    let f = r.failure.unwrap();
    assert!(f.error.contains(&format!("interrupted by {name}")), "{}", f.error);
    let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
    assert!(txt.contains("run stopped in the"), "{txt}");

    let mut resume: Vec<&str> = args.to_vec();
    resume.push("--resume");
    let o = archai(&resume);
    assert!(o.status.success(), "{}", output_text(&o));
    let r = archai_runlog::RunRecord::read(&out.join("log.yaml")).unwrap();
    assert_eq!(r.status, archai_runlog::schema::RunStatus::Ok);
    assert!(r.failure.is_none(), "the interruption's failure is still recorded");
    assert!(r.eval.and_then(|e| e.summary).is_some());
}

/// The design card's command: from the repository root, `archai --plugin-dir ./plugins run`
/// finds the libraries set-up copied beside the plugin crates and runs the default experiment
/// (confs/algos/darts.yaml; --toy here).
#[test]
fn the_design_cards_command_runs_from_the_repository_root() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("card");
    let out = std::process::Command::new(archai_bin())
        .current_dir(repo_root())
        .args(["--plugin-dir", "./plugins", "run", "--toy", "--out", run.to_str().unwrap()])
        .output()
        .unwrap();
    ok(&out);
    let used = yaml(&run.join("config_used.yaml"));
    assert_eq!(used["nas"]["search"]["algorithm"]["name"].as_str(), Some("darts"));
    assert_eq!(yaml(&run.join("log.yaml"))["status"].as_str(), Some("ok"));
}

/// A plugin directory without libraries is an error naming it and what to do, not an empty
/// "available:" list later on.
#[test]
fn a_plugin_directory_without_libraries_says_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let sources = tempfile::tempdir().unwrap();
    std::fs::create_dir(sources.path().join("my-plugin")).unwrap();
    std::fs::write(sources.path().join("my-plugin/Cargo.toml"), "[package]\nname = \"my-plugin\"\n").unwrap();
    for (dir, says) in [(empty.path(), "cargo build --release"), (sources.path(), "scripts/setup.sh")] {
        let out = std::process::Command::new(archai_bin())
            .args(["--plugin-dir", dir.to_str().unwrap(), "plugins"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("plugin directory {} holds no plugin library", dir.display())) && err.contains(says),
            "{err}"
        );
    }
}

/// A new dataset by config alone, as a user tries it: `archai data` on a dataset file; a user's
/// experiment outside confs/ that includes darts.yaml and declares an image-folder dataset (the
/// inherited Fashion-MNIST keys do not leak in, and --toy finds confs/toy.yaml through the
/// include); `archai run --dataset FILE`.
#[test]
fn a_dataset_by_config_alone_works_the_ways_users_try_it() {
    require_fashion_mnist();
    let out = archai(&["data", "confs/datasets/fashion_mnist.yaml"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dataset fashion_mnist (adapter idx)") && text.contains("train: 60000 samples"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    let darts = repo_root().join("confs/algos/darts.yaml");
    let mine = tmp.path().join("my_experiment.yaml");
    std::fs::write(
        &mine,
        format!(
            "__include__: {}\ndataset:\n  name: pets\n  adapter: image-folder\n  root: /data/pets\n  num_classes: 2\n  channels: 3\n  image_size: 32\n  mean: [0.5, 0.5, 0.5]\n  std: [0.25, 0.25, 0.25]\n",
            darts.display()
        ),
    )
    .unwrap();
    let out = archai(&["config", mine.to_str().unwrap(), "--toy"]);
    ok(&out);
    let used: yaml_serde::Value = yaml_serde::from_slice(&out.stdout).unwrap();
    let ds = &used["dataset"];
    assert_eq!(ds["adapter"].as_str(), Some("image-folder"));
    assert!(ds.get("train").is_none() && ds.get("test").is_none(), "Fashion-MNIST keys leaked: {ds:?}");
    assert_eq!(used["nas"]["search"]["trainer"]["max_batches"].as_u64(), Some(6), "the toy budget was merged");

    let copy = tmp.path().join("fm_copy.yaml");
    let original = std::fs::read_to_string(repo_root().join("confs/datasets/fashion_mnist.yaml")).unwrap();
    std::fs::write(&copy, original.replace("name: fashion_mnist", "name: fm_copy")).unwrap();
    let run = tmp.path().join("run");
    ok(&archai(&[
        "run",
        "confs/algos/random.yaml",
        "--toy",
        "--dataset",
        copy.to_str().unwrap(),
        "--set",
        "nas.search.trainer.epochs=0",
        "--out",
        run.to_str().unwrap(),
    ]));
    assert_eq!(yaml(&run.join("log.yaml"))["dataset"]["name"].as_str(), Some("fm_copy"));
}

/// Every experiment in confs/algos/ loads and passes the typed config's checks (what `archai
/// config` and `archai run` do first), as is and in toy mode, so a shipped config (the small-real
/// ones included) never fails on its first line.
#[test]
fn every_shipped_experiment_config_loads() {
    let dir = repo_root().join("confs/algos");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for toy in [false, true] {
            let o = archai::commands::common::Overrides { toy, sets: Vec::new(), seed: None };
            if let Err(e) = o.load(&path) {
                panic!("{} (toy: {toy}): {e:#}", path.display());
            }
        }
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} experiments in {}", dir.display());
}
