//! Petridish through the real binary and the real plugins: seeds, search jobs and grown children;
//! warm starts that carry tensors exactly and start a child as the function of its source, with a
//! first epoch far below a cold start's; the pool, the hull plot as a browser draws it and the
//! gallery; a killed search with worker processes resumes to the same pool.
mod common;

use archai::discrete::warm::{carry, WarmSource};
use archai::model::Network;
use archai::params::ParamStore;
use archai::plugins::PluginRegistry;
use archai_model_desc::ModelDesc;
use archai_runlog::schema::RunStatus;
use archai_runlog::RunRecord;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tch::{Device, Tensor};

const CONF: &str = "confs/search/petridish.yaml";

/// pool.csv as rows of column -> value.
fn pool(run: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(run.join("searcher/pool.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    lines.map(|l| header.iter().cloned().zip(l.split(',').map(str::to_string)).collect()).collect()
}

fn eval_dir(run: &Path, id: &str) -> PathBuf {
    run.join("evals").join(format!("{id}-b1"))
}

fn record(run: &Path, id: &str) -> RunRecord {
    RunRecord::read(&eval_dir(run, id).join("log.yaml")).unwrap()
}

fn desc(run: &Path, id: &str) -> ModelDesc {
    let path = eval_dir(run, id).join("model_desc.yaml");
    ModelDesc::from_yaml(&std::fs::read_to_string(&path).unwrap(), &path.display().to_string()).unwrap()
}

fn first_epoch_loss(r: &RunRecord) -> f64 {
    r.eval.as_ref().unwrap().epochs[&0].train.as_ref().unwrap().loss
}

/// A network of `desc` whose tensors come from `source` (carried, extended, or fresh).
fn warm_network(reg: &PluginRegistry, desc: &ModelDesc, source: &WarmSource) -> (ParamStore, Network) {
    let store = ParamStore::new(Device::Cpu);
    let net = Network::compile(desc, reg, &store).unwrap();
    carry(&store, source).unwrap();
    (store, net)
}

fn checkpoint_tensors(path: &Path) -> BTreeMap<String, Tensor> {
    archai::train::read_model_tensors(path).unwrap().into_iter().collect()
}

/// Checks a warm start of `child` from the candidate `source`: every carried tensor equals the
/// source's, every extended one holds the source in front and zeros after, and in eval mode the
/// child computes what the trained source computes.
fn check_warm_start(reg: &PluginRegistry, run: &Path, source: &str, child: &str) {
    let rec = record(run, child).warm_start.unwrap_or_else(|| panic!("{child} has no warm start record"));
    let checkpoint = eval_dir(run, source).join("checkpoint.pt");
    assert_eq!(PathBuf::from(&rec.source), checkpoint, "{child}: warm-started from another checkpoint");
    let from = WarmSource { checkpoint: checkpoint.clone(), rename: rec.rename.clone() };
    let (child_store, child_net) = warm_network(reg, &desc(run, child), &from);
    let saved = checkpoint_tensors(&checkpoint);
    let live: BTreeMap<String, Tensor> = archai::train::model_tensors(&child_store).into_iter().collect();
    // Source names by child name (the renames map kept candidate ops onto their new edges).
    let source_of = |child_name: &str| -> Tensor {
        for (name, t) in &saved {
            let (kind, rest) = name.split_at(2);
            let mut mapped = rest.to_string();
            for (a, b) in &rec.rename {
                if let Some(tail) = rest.strip_prefix(a.as_str()) {
                    if tail.is_empty() || tail.starts_with('.') {
                        mapped = format!("{b}{tail}");
                        break;
                    }
                }
            }
            if format!("{kind}{mapped}") == child_name {
                return t.shallow_clone();
            }
        }
        panic!("{child_name} has no source tensor")
    };
    assert!(!rec.carried.is_empty(), "{child}: nothing was carried");
    for name in &rec.carried {
        assert!(live[name].equal(&source_of(name)), "{child}: carried {name} differs from its source");
    }
    for name in &rec.extended {
        let (t, s) = (&live[name], source_of(name));
        let k = s.size()[1];
        assert!(t.narrow(1, 0, k).equal(&s), "{child}: extended {name} lost its source part");
        let rest = t.narrow(1, k, t.size()[1] - k);
        assert_eq!(rest.abs().sum(tch::Kind::Float).double_value(&[]), 0.0, "{child}: {name} is not zero-extended");
    }
    // The same function: the trained source (all of its own tensors loaded) against the child.
    let source_desc = desc(run, source);
    let (_, source_net) = warm_network(reg, &source_desc, &WarmSource { checkpoint, rename: Vec::new() });
    let [c, s] = [source_desc.input.channels, source_desc.input.size];
    let x = archai_plugin_api::kit::seeded::normal(&[8, c, s, s], 11);
    let _g = tch::no_grad_guard();
    let (a, b) = (source_net.forward(&x, false).unwrap(), child_net.forward(&x, false).unwrap());
    let diff = (&a - &b).abs().max().double_value(&[]);
    let scale = a.abs().max().double_value(&[]);
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{child}: starts {diff} away from {source}'s function (logits up to {scale})"
    );
}

#[test]
fn petridish_grows_warm_started_children_and_writes_its_pool_hull_and_gallery() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("pd");
    // Enough steps per job for a trained parent to be far from a fresh network.
    let o = archai(&[
        "search",
        CONF,
        "--toy",
        "--out",
        run.to_str().unwrap(),
        "--set",
        "search.training.trainer.max_batches=25",
    ]);
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");

    let rows = pool(&run);
    let seeds: Vec<_> = rows.iter().filter(|r| r["stage"] == "seed").collect();
    let grown: Vec<_> = rows.iter().filter(|r| r["stage"] == "grown").collect();
    assert_eq!(seeds.len(), 2, "the toy seed grid is (1 reduction, 3 cells, 1..2 nodes): {rows:?}");
    assert_eq!(grown.len(), 2, "max_grown is 2 in the toy: {rows:?}");
    let by_id: BTreeMap<&str, &BTreeMap<String, String>> = rows.iter().map(|r| (r["id"].as_str(), r)).collect();
    let reg = PluginRegistry::scan(&[plugin_dir()]).unwrap();
    for g in &grown {
        let parent = by_id[g["parent"].as_str()];
        let nodes = |r: &BTreeMap<String, String>| r["nodes"].parse::<usize>().unwrap();
        assert_eq!(nodes(g), nodes(parent) + 1, "a child has one node more per cell than its parent");
        assert!(g["macs"].parse::<f64>().unwrap() > parent["macs"].parse::<f64>().unwrap());
        // The search job trained the parent with the candidates, the child started from it.
        let search = g["search"].as_str();
        let search_rec = record(&run, search).warm_start.unwrap();
        assert!(!search_rec.extended.is_empty(), "the cells' 1x1 convs grew with the candidate node");
        assert!(search_rec.dropped.is_empty(), "a search model keeps everything of its parent");
        check_warm_start(&reg, &run, &g["parent"], search);
        let child_rec = record(&run, &g["id"]).warm_start.unwrap();
        assert!(!child_rec.dropped.is_empty(), "the candidates the search did not keep are dropped");
        assert!(!child_rec.rename.is_empty() && child_rec.new.iter().any(|n| n.contains(".combine.")));
        check_warm_start(&reg, &run, search, &g["id"]);
    }

    // A warm-started child's first epoch against the same network from scratch.
    let child = grown.last().unwrap()["id"].clone();
    let cold = tmp.path().join("cold");
    let o = archai(&[
        "search-eval",
        run.join("config_used.yaml").to_str().unwrap(),
        "--desc",
        eval_dir(&run, &child).join("model_desc.yaml").to_str().unwrap(),
        "--budget",
        "1",
        "--out",
        cold.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "{}", output_text(&o));
    let (warm, cold) =
        (first_epoch_loss(&record(&run, &child)), first_epoch_loss(&RunRecord::read(&cold.join("log.yaml")).unwrap()));
    assert!(warm < cold - 0.3, "warm start's first-epoch loss {warm} is not far below a cold start's {cold}");

    // The search model's candidates (stop-gradient inputs, stop-forward output) change nothing
    // the parent computes: with and without a strong L1 on their weights the training losses
    // are identical, while the L1 shrinks the weights it is put on.
    let search = grown[0]["search"].clone();
    let text = std::fs::read_to_string(eval_dir(&run, &search).join("model_desc.yaml")).unwrap();
    let mut mean_abs = Vec::new();
    let mut losses = Vec::new();
    for l1 in ["0.0", "0.5"] {
        let mut d = ModelDesc::from_yaml(&text, "search model").unwrap();
        assert!(d.arch_params.iter().all(|p| p.joint && p.l1 > 0.0), "{:?}", d.arch_params);
        d.arch_params.iter_mut().for_each(|p| p.l1 = l1.parse().unwrap());
        let dir = tmp.path().join(format!("l1-{l1}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("desc.yaml"), d.to_yaml()).unwrap();
        let o = archai(&[
            "search-eval",
            run.join("config_used.yaml").to_str().unwrap(),
            "--desc",
            dir.join("desc.yaml").to_str().unwrap(),
            "--budget",
            "1",
            "--out",
            dir.to_str().unwrap(),
            "--threads",
            "2",
        ]);
        assert!(o.status.success(), "{}", output_text(&o));
        losses.push(first_epoch_loss(&RunRecord::read(&dir.join("log.yaml")).unwrap()));
        let alphas: BTreeMap<String, archai_plugin_api::discrete::ArchValues> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("arch_params.json")).unwrap()).unwrap();
        let all: Vec<f64> = alphas.values().flat_map(|a| a.values.iter().map(|v| v.abs())).collect();
        mean_abs.push(all.iter().sum::<f64>() / all.len() as f64);
    }
    assert_eq!(losses[0], losses[1], "the candidates changed the parent's training");
    assert!(mean_abs[1] < 0.3 * mean_abs[0], "L1 did not shrink the candidate weights: {mean_abs:?}");

    // The gallery is the band's models, with weights; log.yaml's summary names them.
    let band: Vec<&str> = rows.iter().filter(|r| r["in_band"] == "true").map(|r| r["id"].as_str()).collect();
    let summary = RunRecord::read(&run.join("log.yaml")).unwrap().discrete.unwrap().summary.unwrap();
    assert_eq!(summary.gallery, band);
    for id in &band {
        assert!(
            run.join(format!("gallery/{id}.yaml")).is_file() && run.join(format!("gallery/{id}_weights.pt")).is_file()
        );
    }

    // The hull plot as a browser draws it: one mark per pool model, the hull and the band.
    let svg = run.join("searcher/convex_hull.svg");
    let dom = headless(&["--dump-dom", &format!("file://{}", svg.display())]);
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert_eq!(dom.matches("class=\"model\"").count(), rows.len(), "{dom}");
    assert!(dom.contains("class=\"hull\"") && dom.contains("class=\"band\""), "{dom}");
    let shot = Screenshot::of(&svg, "640,420");
    let pixels = || shot.rgb.iter();
    let red = pixels().filter(|p| p[0] > 150 && p[1] < 90 && p[2] < 90).count();
    let blue = pixels().filter(|p| p[2] > 120 && p[0] < 90).count();
    let dark = pixels().filter(|p| p[..3].iter().all(|&c| c < 100)).count();
    assert!(
        red > 40 && blue > 40 && dark > 300,
        "the plot lacks its marks, hull or text: red {red}, blue {blue}, dark {dark}"
    );
}

#[test]
fn a_killed_petridish_search_with_workers_resumes_to_the_same_pool() {
    require_fashion_mnist();
    let tmp = tempfile::tempdir().unwrap();
    // One libtorch thread per training either way, so the numbers can be compared exactly.
    let whole = tmp.path().join("whole");
    let o = archai(&["search", CONF, "--toy", "--out", whole.to_str().unwrap(), "--set", "common.threads=1"]);
    assert!(o.status.success(), "{}", output_text(&o));

    let cut = tmp.path().join("cut");
    let args = ["search", CONF, "--toy", "--out", cut.to_str().unwrap(), "--set", "common.threads=2", "--jobs", "2"];
    let mut child = Command::new(archai_bin())
        .current_dir(repo_root())
        .arg("--plugin-dir")
        .arg(plugin_dir())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the seeds are in and a search job has started.
    let t0 = Instant::now();
    while !(cut.join("search_checkpoint.json").is_file() && cut.join("searcher/pool.csv").is_file()) {
        assert!(child.try_wait().unwrap().is_none(), "finished before it could be killed");
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint in 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(RunRecord::read(&cut.join("log.yaml")).unwrap().status, RunStatus::Running, "ended before the kill");
    let mut resumed: Vec<&str> = args.to_vec();
    resumed.push("--resume");
    let o = archai(&resumed);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(pool(&cut), pool(&whole), "the resumed search grew another pool");
    // Workers got their warm starts: every grown child's record says what was carried.
    for r in pool(&cut).iter().filter(|r| r["stage"] == "grown") {
        let rec = record(&cut, &r["id"]).warm_start.unwrap();
        assert!(!rec.carried.is_empty());
        assert!(eval_dir(&cut, &r["id"]).join("warm_start.json").is_file(), "not trained by a worker");
    }
}
