//! `archai report`: aggregates runs into report.md, a self-contained report.html (inline SVG,
//! opens offline) and summary.csv. The numbers come from each run's typed log.yaml
//! ([`archai_runlog::RunRecord`]); the statistics are in [`stats`].
pub mod collect;
pub mod render;
pub mod stats;
pub mod svg;

use collect::{Collection, PhaseBudget, Run};
use std::collections::BTreeMap;

/// Bootstrap resamples for the difference-of-means interval, and the fixed seed that makes a
/// report the same every time.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
pub const BOOTSTRAP_SEED: u64 = 0;

/// One experiment's aggregate over its finished runs.
#[derive(Debug, Clone)]
pub struct ExperimentSummary {
    pub name: String,
    pub runs: usize,
    pub failed: usize,
    /// Finished runs without a test accuracy (no evaluation phase): left out of the accuracy
    /// statistics, kept in the cell agreement.
    pub untested: usize,
    /// Test top-1 of each finished run, by seed order.
    pub test_top1: Vec<f64>,
    pub seeds: Vec<u64>,
    pub mean: f64,
    pub std: f64,
    pub ci95: Option<(f64, f64)>,
    pub min: f64,
    pub max: f64,
    pub params: Option<f64>,
    pub macs: Option<f64>,
    pub search: PhaseBudget,
    pub eval: PhaseBudget,
    pub wall_s: f64,
    /// How much the seeds' searched cells have in common; `None` below two runs with cells.
    pub cell_agreement: Option<Agreement>,
}

/// The share of kept (edge, op) choices that two runs' searched cells have in common, over every
/// pair of runs. Seeds of a search that decides by its data agree far above chance; in the DARTS
/// space (4 nodes, 7 ops) two random cells share 9.2% on average.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub pairs: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// [`Agreement`] of runs' cell choices: per pair, shared choices over the larger set.
pub fn agreement(cells: &[&collect::CellChoices]) -> Option<Agreement> {
    let mut shares = Vec::new();
    for (i, a) in cells.iter().enumerate() {
        for b in &cells[i + 1..] {
            shares.push(a.intersection(b).count() as f64 / a.len().max(b.len()) as f64);
        }
    }
    (!shares.is_empty()).then(|| Agreement {
        pairs: shares.len(),
        mean: stats::mean(&shares),
        min: shares.iter().copied().fold(f64::INFINITY, f64::min),
        max: shares.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// An experiment against the baseline.
#[derive(Debug, Clone)]
pub struct VsBaseline {
    pub name: String,
    pub diff: f64,
    pub ci95: Option<(f64, f64)>,
    pub welch: Option<stats::Welch>,
    /// Welch's p adjusted by Holm over the experiments compared with the baseline.
    pub p_holm: Option<f64>,
    /// The difference of means this comparison detects with 80% power (`Welch::detectable_difference`).
    pub detectable: Option<f64>,
    pub verdict: String,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub title: String,
    pub baseline: Option<String>,
    pub experiments: Vec<ExperimentSummary>,
    pub vs_baseline: Vec<VsBaseline>,
    /// Budgets or environments that differ between runs.
    pub warnings: Vec<String>,
    pub runs: Vec<Run>,
}

fn mean_of(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = xs.collect();
    (!v.is_empty()).then(|| stats::mean(&v))
}

fn mean_budget(bs: &[PhaseBudget]) -> PhaseBudget {
    if bs.is_empty() {
        // (An empty f64 sum is -0.0, which would print as "-0.0 s".)
        return PhaseBudget::default();
    }
    let n = bs.len() as f64;
    PhaseBudget {
        epochs: (bs.iter().map(|b| b.epochs as f64).sum::<f64>() / n).round() as u64,
        samples: (bs.iter().map(|b| b.samples as f64).sum::<f64>() / n).round() as u64,
        seconds: bs.iter().map(|b| b.seconds).sum::<f64>() / n,
    }
}

/// Aggregates, compares with the baseline and checks comparability.
pub fn analyse(c: Collection, baseline: Option<String>) -> anyhow::Result<Analysis> {
    let mut by_exp: BTreeMap<String, Vec<&Run>> = BTreeMap::new();
    for r in &c.runs {
        by_exp.entry(r.experiment.clone()).or_default().push(r);
    }
    let mut warnings = Vec::new();
    // A baseline asked for by name must exist; the comparison's own may simply not have started
    // yet (a report on a comparison in progress).
    let baseline = match (baseline, c.baseline.clone()) {
        (Some(b), _) if !by_exp.contains_key(&b) => anyhow::bail!(
            "baseline `{b}` has no runs; experiments: {}",
            by_exp.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        (Some(b), _) => Some(b),
        (None, Some(b)) if !by_exp.contains_key(&b) => {
            warnings.push(format!("baseline `{b}` has no run yet: no experiment is compared with it"));
            None
        }
        (None, b) => b,
    };
    let mut experiments = Vec::new();
    for (name, runs) in &by_exp {
        let done: Vec<&&Run> = runs.iter().filter(|r| r.ok() && r.test_top1().is_some()).collect();
        let test_top1: Vec<f64> = done.iter().filter_map(|r| r.test_top1()).collect();
        // A search-only run (no eval phase) still tells what its search spent and found.
        let finished: Vec<&&Run> = runs.iter().filter(|r| r.ok()).collect();
        let searches: Vec<PhaseBudget> = finished.iter().map(|r| Run::budget(r.record.search.as_ref())).collect();
        let evals: Vec<PhaseBudget> = done.iter().map(|r| Run::budget(r.record.eval.as_ref())).collect();
        experiments.push(ExperimentSummary {
            name: name.clone(),
            runs: runs.len(),
            failed: runs.iter().filter(|r| !r.ok()).count(),
            untested: runs.iter().filter(|r| r.ok() && r.test_top1().is_none()).count(),
            seeds: done.iter().map(|r| r.seed).collect(),
            mean: stats::mean(&test_top1),
            std: stats::std(&test_top1),
            ci95: stats::mean_ci95(&test_top1),
            min: test_top1.iter().copied().fold(f64::INFINITY, f64::min),
            max: test_top1.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            params: mean_of(
                done.iter().filter_map(|r| r.record.eval.as_ref()?.summary.as_ref().map(|s| s.params as f64)),
            ),
            macs: mean_of(
                finished
                    .iter()
                    .filter_map(|r| r.record.search.as_ref()?.summary.as_ref().map(|s| s.final_stats.macs as f64)),
            ),
            search: mean_budget(&searches),
            eval: mean_budget(&evals),
            wall_s: mean_of(done.iter().filter_map(|r| r.record.duration_s)).unwrap_or(0.0),
            cell_agreement: agreement(&finished.iter().filter_map(|r| r.cells.as_ref()).collect::<Vec<_>>()),
            test_top1,
        });
    }
    let mut vs_baseline = Vec::new();
    if let Some(b) = &baseline {
        let base = experiments.iter().find(|e| &e.name == b).expect("checked above").test_top1.clone();
        let others: Vec<&ExperimentSummary> = experiments.iter().filter(|e| &e.name != b).collect();
        let welches: Vec<Option<stats::Welch>> = others.iter().map(|e| stats::welch(&e.test_top1, &base)).collect();
        let adjusted = stats::holm(&welches.iter().map(|w| w.map(|w| w.p)).collect::<Vec<_>>());
        let m = adjusted.iter().flatten().count();
        for ((e, welch), p_holm) in others.into_iter().zip(welches).zip(adjusted) {
            let ci = stats::bootstrap_diff_ci95(&e.test_top1, &base, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED);
            let tested = welch.zip(p_holm).map(|(welch, p_holm)| stats::Tested { welch, p_holm, m });
            vs_baseline.push(VsBaseline {
                name: e.name.clone(),
                diff: stats::mean(&e.test_top1) - stats::mean(&base),
                ci95: ci,
                welch,
                p_holm,
                detectable: welch.and_then(|w| w.detectable_difference()),
                verdict: stats::verdict(&e.name, b, &e.test_top1, &base, ci, tested),
            });
        }
    }
    warnings.extend(budget_warnings(&experiments));
    warnings.extend(environment_warnings(&c.runs));
    for r in c.runs.iter().filter(|r| r.ok()) {
        if let Some(d) = r.decisiveness().filter(|d| !d.decided) {
            warnings.push(format!("{} seed {}: {}", r.experiment, r.seed, d.verdict));
        }
    }
    for e in &experiments {
        if e.failed > 0 {
            warnings.push(format!("{}: {} of {} runs did not finish and are left out", e.name, e.failed, e.runs));
        }
        if e.untested > 0 {
            warnings.push(format!(
                "{}: {} of {} runs have no test accuracy (no evaluation phase); only their searches are reported",
                e.name, e.untested, e.runs
            ));
        }
    }
    Ok(Analysis { title: c.title, baseline, experiments, vs_baseline, warnings, runs: c.runs })
}

fn budget_warnings(exps: &[ExperimentSummary]) -> Vec<String> {
    let mut out = Vec::new();
    type Budget = fn(&ExperimentSummary) -> u64;
    // (what, the budget, whether it is the search's): an experiment that trains no supernet
    // (random sampling: 0 search epochs) has no search budget to compare, as `archai compare`
    // says before the runs; its 0 stays in the table.
    let checks: [(&str, Budget, bool); 4] = [
        ("search epochs", |e| e.search.epochs, true),
        ("search samples", |e| e.search.samples, true),
        ("eval epochs", |e| e.eval.epochs, false),
        ("eval samples", |e| e.eval.samples, false),
    ];
    for (what, f, of_search) in checks {
        // An experiment without a finished run has no budget yet (not a budget of 0).
        let finished = exps.iter().filter(|e| !e.test_top1.is_empty() || e.untested > 0);
        let compared = finished.filter(|e| !of_search || e.search.epochs > 0);
        out.extend(unequal_budget(what, compared.map(|e| (e.name.as_str(), f(e)))));
    }
    out
}

/// "unequal budget: WHAT differ (a, b 6 vs c 5)" when the experiments' budgets are not all the
/// same, the experiments grouped by budget. `archai compare` (configured budgets, before the runs)
/// and the report (logged budgets, after them) both say it this way.
pub fn unequal_budget<'a, B: Ord + std::fmt::Display>(
    what: &str,
    budgets: impl IntoIterator<Item = (&'a str, B)>,
) -> Option<String> {
    let groups: BTreeMap<B, Vec<&str>> = budgets.into_iter().fold(BTreeMap::new(), |mut m, (name, b)| {
        m.entry(b).or_default().push(name);
        m
    });
    (groups.len() > 1).then(|| {
        let parts: Vec<String> = groups.iter().map(|(b, names)| format!("{} {b}", names.join(", "))).collect();
        format!("unequal budget: {what} differ ({})", parts.join(" vs "))
    })
}

type EnvField = fn(&archai_runlog::schema::Environment) -> Option<String>;

/// Fields of the environment that make runs incomparable when they differ (None: not recorded
/// by the archai that wrote the log).
const ENVIRONMENT_FIELDS: [(&str, EnvField); 8] = [
    ("libtorch", |e| Some(e.libtorch_version.clone())),
    // Memory and speed, not results, depend on it.
    ("allocator", |e| e.allocator.clone()),
    ("threads", |e| Some(e.threads.to_string())),
    ("precision", |e| Some(format!("{:?}", e.precision))),
    ("device", |e| Some(e.device.clone())),
    ("CPU", |e| Some(e.cpu_model.clone())),
    ("CPU vector extensions", |e| e.cpu_features.clone()),
    ("plugins", |e| {
        Some(
            e.plugins
                .iter()
                .map(|p| format!("{} {} {}", p.name, p.version, &p.sha256[..12.min(p.sha256.len())]))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }),
];

/// Where two runs' environments differ ("CPU vector extensions: `avx2 fma` vs `avx2 fma
/// avx512f`"): what `archai reproduce` names beside a divergence.
pub fn environment_differences(
    a: &archai_runlog::schema::Environment,
    b: &archai_runlog::schema::Environment,
) -> Vec<String> {
    let show = |v: Option<String>| v.unwrap_or_else(|| "not recorded".into());
    ENVIRONMENT_FIELDS
        .iter()
        .filter(|(_, f)| f(a) != f(b))
        .map(|(what, f)| format!("{what}: `{}` vs `{}`", show(f(a)), show(f(b))))
        .collect()
}

fn environment_warnings(runs: &[Run]) -> Vec<String> {
    let mut out = Vec::new();
    let missing: Vec<String> =
        runs.iter().filter(|r| r.environment().is_none()).map(|r| r.dir.display().to_string()).collect();
    if !missing.is_empty() {
        out.push(format!("no environment recorded (older archai) for: {}", missing.join(", ")));
    }
    for (what, f) in ENVIRONMENT_FIELDS {
        let mut unrecorded = Vec::new();
        let values: BTreeMap<String, Vec<String>> = runs.iter().fold(BTreeMap::new(), |mut m, r| {
            if let Some(e) = r.environment() {
                let who = format!("{}/seed {}", r.experiment, r.seed);
                match f(e) {
                    Some(v) => m.entry(v).or_default().push(who),
                    None => unrecorded.push(who),
                }
            }
            m
        });
        if values.len() > 1 {
            let parts: Vec<String> = values.iter().map(|(v, who)| format!("`{v}` in {}", who.join(", "))).collect();
            out.push(format!("runs not comparable: {what} differs: {}", parts.join("; ")));
        }
        if !unrecorded.is_empty() {
            out.push(format!("{what} not recorded (older archai) for: {}", unrecorded.join(", ")));
        }
    }
    out
}

/// `archai report`'s work: collect, analyse, write the three files into `out`.
pub fn write_report(
    dirs: &[std::path::PathBuf],
    out: &std::path::Path,
    baseline: Option<String>,
) -> anyhow::Result<Analysis> {
    let analysis = analyse(collect::collect(dirs)?, baseline)?;
    std::fs::create_dir_all(out)?;
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
    };
    write("report.md", render::markdown(&analysis))?;
    write("summary.csv", render::csv(&analysis))?;
    write("report.html", render::html(&analysis))?;
    Ok(analysis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use archai_runlog::RunRecord;

    fn run(exp: &str, seed: u64, top1: f64, eval_epochs: u64, threads: i64) -> Run {
        let epochs: String = (0..eval_epochs)
            .map(|e| {
                format!(
                    "    {e}: {{train: {{loss: 1, top1: 0.5, top5: 0.9, samples: 100, lr: 0.1, duration_s: 1, samples_per_s: 100}}}}\n"
                )
            })
            .collect();
        let text = format!(
            "status: ok
run: {{experiment: {exp}, seed: {seed}, device: cpu, device_used: Cpu, threads: {threads}, environment: {{archai_version: 0.1.0, git_commit: abc, libtorch_version: 2.11.0, libtorch_library: /x, threads: {threads}, cpu_model: X, cpu_features: avx2 fma, cpus: 2, device: Cpu, precision: {{eval: fp32}}, plugins: []}}}}
eval:
  epochs:
{epochs}  summary: {{train: {{loss: 1, top1: 0.5, top5: 0.9, samples: 100}}, val: null, test: {{loss: 1, top1: {top1}, top5: 0.9, samples: 100}}, params: 10, aux_params: 0, epochs: {eval_epochs}, duration_s: 1, weights_sha256: x}}
duration_s: 2
"
        );
        let record = RunRecord::from_yaml(&text, std::path::Path::new("t")).unwrap();
        Run { experiment: exp.into(), seed, dir: format!("/runs/{exp}/{seed}").into(), record, cells: None }
    }

    #[test]
    fn a_baseline_that_trains_no_supernet_has_no_search_budget_to_differ() {
        let exp = |name: &str, search_epochs: u64, eval_samples: u64| ExperimentSummary {
            name: name.into(),
            runs: 1,
            failed: 0,
            untested: 0,
            test_top1: vec![0.9],
            seeds: vec![0],
            mean: 0.9,
            std: 0.0,
            ci95: None,
            min: 0.9,
            max: 0.9,
            params: None,
            macs: None,
            search: PhaseBudget { epochs: search_epochs, samples: 3200 * search_epochs, seconds: 1.0 },
            eval: PhaseBudget { epochs: 10, samples: eval_samples, seconds: 1.0 },
            wall_s: 1.0,
            cell_agreement: None,
        };
        // random samples its cells without training (0 search epochs): only its eval budget is
        // compared, and the searches that do train agree.
        let same = [exp("darts", 6, 600), exp("gdas", 6, 600), exp("random", 0, 600)];
        assert_eq!(budget_warnings(&same), Vec::<String>::new());
        let differ = [exp("darts", 6, 600), exp("gdas", 5, 600), exp("random", 0, 500)];
        assert_eq!(
            budget_warnings(&differ),
            [
                "unequal budget: search epochs differ (gdas 5 vs darts 6)",
                "unequal budget: search samples differ (gdas 16000 vs darts 19200)",
                "unequal budget: eval samples differ (random 500 vs darts, gdas 600)",
            ]
        );
    }

    #[test]
    fn several_experiments_against_one_baseline_are_judged_by_holm_adjusted_p_values() {
        // a alone against b: Welch p = 0.0072 (stats.rs), so "better"; c is b shifted by 1 point
        // (p = 0.81); d has one run, no test. Two defined p-values: a's is doubled.
        let mut runs = vec![];
        for (seed, (a, b, c)) in [(0.80, 0.70, 0.72), (0.82, 0.75, 0.76), (0.84, 0.77, 0.78)].into_iter().enumerate() {
            runs.extend([
                run("a", seed as u64, a, 2, 2),
                run("b", seed as u64, b, 2, 2),
                run("c", seed as u64, c, 2, 2),
            ]);
        }
        runs.push(run("d", 0, 0.9, 2, 2));
        let a = analyse(Collection { runs, baseline: Some("b".into()), title: "t".into() }, None).unwrap();
        let names: Vec<&str> = a.vs_baseline.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "d"]);
        let (va, vc, vd) = (&a.vs_baseline[0], &a.vs_baseline[1], &a.vs_baseline[2]);
        let pa = va.welch.unwrap().p;
        assert!((va.p_holm.unwrap() - 2.0 * pa).abs() < 1e-12, "{va:?}");
        assert_eq!(vc.p_holm, vc.welch.map(|w| w.p.max(2.0 * pa)));
        assert_eq!(vd.p_holm, None);
        assert_eq!((vd.detectable, vd.ci95), (None, None));
        let by_hand = stats::welch(&[0.80, 0.82, 0.84], &[0.70, 0.75, 0.77]).unwrap().detectable_difference();
        assert_eq!(va.detectable, by_hand);
        assert!(va.verdict.contains("Holm-adjusted over 2 comparisons"), "{}", va.verdict);
        let md = render::markdown(&a);
        assert!(md.contains("| p | p (Holm) | detectable at 80% power (points) | verdict |"), "{md}");
        let d = 100.0 * va.detectable.unwrap();
        assert!(md.contains(&format!("| {:.4} | {:.4} | {d:.2} |", pa, 2.0 * pa)), "{md}");
    }

    #[test]
    fn analysis_aggregates_compares_and_warns_about_unequal_budgets_and_environments() {
        let runs = vec![
            run("a", 0, 0.80, 2, 2),
            run("a", 1, 0.82, 2, 2),
            run("a", 2, 0.84, 2, 2),
            run("b", 0, 0.70, 3, 2),
            run("b", 1, 0.75, 3, 2),
            run("b", 2, 0.77, 3, 1),
        ];
        let c = Collection { runs, baseline: Some("b".into()), title: "t".into() };
        let a = analyse(c, None).unwrap();
        let ea = &a.experiments[0];
        assert_eq!((ea.name.as_str(), ea.test_top1.len(), ea.eval.epochs, ea.eval.samples), ("a", 3, 2, 200));
        assert!((ea.mean - 0.82).abs() < 1e-12 && (ea.std - 0.02).abs() < 1e-12);
        assert_eq!(a.vs_baseline.len(), 1);
        assert!((a.vs_baseline[0].diff - (0.82 - 0.74)).abs() < 1e-12);
        let w = a.warnings.join("\n");
        assert!(w.contains("unequal budget: eval epochs differ (a 2 vs b 3)"), "{w}");
        assert!(w.contains("threads differs"), "{w}");
        assert!(!w.contains("CPU vector extensions"), "{w}");
        let md = render::markdown(&a);
        assert!(md.contains("| a | 3 | 82.00 ± 2.00 |"), "{md}");
        let csv = render::csv(&a);
        assert_eq!(csv.lines().count(), 7);
        let html = render::html(&a);
        assert!(
            html.contains("id=\"experiments\"") && html.contains("id=\"baseline\"") && html.contains("id=\"warnings\"")
        );
        // An unknown baseline is an error naming the experiments.
        let c = Collection { runs: vec![run("a", 0, 0.8, 1, 2)], baseline: None, title: "t".into() };
        let e = analyse(c, Some("z".into())).unwrap_err().to_string();
        assert!(e.contains("baseline `z` has no runs; experiments: a"), "{e}");
    }

    #[test]
    fn machines_with_other_vector_extensions_are_named_and_unrecorded_ones_said_so() {
        let env = |r: &mut Run| r.record.run.as_mut().unwrap().environment.as_mut().unwrap().clone();
        let mut runs = vec![run("a", 0, 0.8, 2, 2), run("a", 1, 0.8, 2, 2), run("b", 0, 0.7, 2, 2)];
        let set = |r: &mut Run, f: Option<&str>| {
            r.record.run.as_mut().unwrap().environment.as_mut().unwrap().cpu_features = f.map(str::to_string)
        };
        set(&mut runs[1], Some("avx2 fma avx512f"));
        set(&mut runs[2], None);
        let (e0, e1, e2) = (env(&mut runs[0]), env(&mut runs[1]), env(&mut runs[2]));
        let w = analyse(Collection { runs, baseline: None, title: "t".into() }, None).unwrap().warnings.join("\n");
        assert!(
            w.contains("runs not comparable: CPU vector extensions differs: `avx2 fma` in a/seed 0; `avx2 fma avx512f` in a/seed 1"),
            "{w}"
        );
        assert!(w.contains("CPU vector extensions not recorded (older archai) for: b/seed 0"), "{w}");
        assert_eq!(environment_differences(&e0, &e0), Vec::<String>::new());
        assert_eq!(environment_differences(&e0, &e1), vec!["CPU vector extensions: `avx2 fma` vs `avx2 fma avx512f`"]);
        assert_eq!(
            environment_differences(&e1, &e2),
            vec!["CPU vector extensions: `avx2 fma avx512f` vs `not recorded`"]
        );
    }

    fn choices(v: &[(bool, usize, usize, &str)]) -> collect::CellChoices {
        v.iter().map(|(r, n, i, o)| (*r, *n, *i, o.to_string())).collect()
    }

    #[test]
    fn agreement_is_the_share_of_choices_two_seeds_have_in_common() {
        let a = choices(&[
            (false, 0, 0, "sep_conv_3x3"),
            (false, 0, 1, "skip_connect"),
            (true, 0, 0, "max_pool_3x3"),
            (true, 0, 1, "max_pool_3x3"),
        ]);
        // Same edge, other op, and the normal/reduction flag matter: 2 of 4 shared with a.
        let b = choices(&[
            (false, 0, 0, "sep_conv_3x3"),
            (false, 0, 1, "max_pool_3x3"),
            (true, 0, 0, "max_pool_3x3"),
            (false, 1, 1, "max_pool_3x3"),
        ]);
        let c = choices(&[
            (false, 0, 0, "dil_conv_3x3"),
            (false, 1, 2, "skip_connect"),
            (true, 1, 0, "max_pool_3x3"),
            (true, 0, 1, "avg_pool_3x3"),
        ]);
        let g = agreement(&[&a, &b, &c]).unwrap();
        // a-b 2/4, a-c 0/4, b-c 0/4.
        assert_eq!((g.pairs, g.min, g.max), (3, 0.0, 0.5));
        assert!((g.mean - 0.5 / 3.0).abs() < 1e-12);
        assert_eq!(agreement(&[&a, &a]).unwrap().mean, 1.0);
        assert_eq!(agreement(&[&a]), None);
        assert_eq!(agreement(&[]), None);

        // The chance level the report quotes: two uniform random DARTS cells (node j keeps 2 of
        // its j + 2 inputs, each with one of 7 ops), counted exactly node by node.
        let mut shared = 0.0;
        for inputs in 2..6usize {
            let picks: Vec<[usize; 2]> = (0..inputs).flat_map(|x| (x + 1..inputs).map(move |y| [x, y])).collect();
            let common: usize =
                picks.iter().flat_map(|p| picks.iter().map(move |q| p.iter().filter(|x| q.contains(x)).count())).sum();
            // A shared input is a shared choice when the ops match too: 1 in 7.
            shared += common as f64 / (picks.len() * picks.len()) as f64 / 7.0;
        }
        let chance = 2.0 * shared / 16.0;
        assert_eq!(format!("{:.1}", 100.0 * chance), "9.2", "{chance}");
        assert!(render::markdown(
            &analyse(Collection { runs: vec![], baseline: None, title: "t".into() }, None).unwrap()
        )
        .contains("share 9.2%"));
        // A resumed run's wall time is its last attempt's: said where the column is.
        let md =
            render::markdown(&analyse(Collection { runs: vec![], baseline: None, title: "t".into() }, None).unwrap());
        assert!(md.contains("wall s (last attempt)") && md.contains("less wall time than training time"), "{md}");
    }

    #[test]
    fn the_report_shows_how_much_the_seeds_cells_agree() {
        let darts_v2 = archai_model_desc::DARTS_V2
            .build("v2", 5, 8, false, archai_model_desc::InputDesc { channels: 1, size: 28 }, 10)
            .unwrap();
        let cells = collect::cell_choices(&darts_v2).unwrap();
        assert_eq!(cells.len(), 16);
        assert!(cells.contains(&(false, 3, 2, "dil_conv_3x3".to_string())));
        let mut other = cells.clone();
        other.remove(&(false, 3, 2, "dil_conv_3x3".to_string()));
        other.insert((false, 3, 2, "sep_conv_5x5".to_string()));
        let mut runs = vec![run("a", 0, 0.8, 1, 2), run("a", 1, 0.8, 1, 2), run("b", 0, 0.8, 1, 2)];
        runs[0].cells = Some(cells.clone());
        runs[1].cells = Some(other);
        runs[2].cells = Some(cells);
        let a = analyse(Collection { runs, baseline: None, title: "t".into() }, None).unwrap();
        assert_eq!(a.experiments[0].cell_agreement.as_ref().map(|g| (g.pairs, g.mean)), Some((1, 15.0 / 16.0)));
        assert_eq!(a.experiments[1].cell_agreement, None, "one run has no pair");
        let md = render::markdown(&a);
        assert!(md.contains("| 93.75 (93.75..93.75, 1 pairs) |"), "{md}");
        assert!(render::html(&a).contains("93.75 (93.75..93.75, 1 pairs)"));
    }

    #[test]
    fn a_baseline_still_running_is_said_plainly_without_nan_negative_zero_or_budget_warnings() {
        let mut runs = vec![run("a", 0, 0.8, 1, 2), run("a", 1, 0.82, 1, 2), run("b", 0, 0.7, 1, 2)];
        runs[2].record.status = archai_runlog::schema::RunStatus::Running;
        let a = analyse(Collection { runs, baseline: Some("b".into()), title: "t".into() }, None).unwrap();
        let md = render::markdown(&a);
        assert!(!md.contains("NaN") && !md.contains("-0.0") && !md.contains("unequal budget"), "{md}");
        assert!(
            md.contains("| b | 0 (1 unfinished) | - | - | - | - | - | - | - | - | - | - | - | - | - | - |"),
            "{md}"
        );
        assert!(md.contains("| a | - |"), "{md}");
        assert!(md.contains("| a | 2 | 81.00 ± 1.41 |"), "{md}");
        assert!(md.contains("cannot be compared yet at n = 2 vs 0: b has no finished run"), "{md}");
        // One finished run: its value, no "± 0.00".
        let mut one = vec![run("a", 0, 0.8, 1, 2), run("a", 1, 0.82, 1, 2)];
        one[1].record.status = archai_runlog::schema::RunStatus::Running;
        let md = render::markdown(&analyse(Collection { runs: one, baseline: None, title: "t".into() }, None).unwrap());
        assert!(md.contains("| a | 1 (1 unfinished) | 80.00 | - |"), "{md}");
        // A comparison whose baseline has not started: reported without the comparisons, said so.
        let runs = vec![run("a", 0, 0.8, 1, 2), run("a", 1, 0.82, 1, 2)];
        let a = analyse(Collection { runs, baseline: Some("b".into()), title: "t".into() }, None).unwrap();
        assert!(a.vs_baseline.is_empty() && a.baseline.is_none());
        assert!(
            a.warnings.iter().any(|w| w == "baseline `b` has no run yet: no experiment is compared with it"),
            "{:?}",
            a.warnings
        );
        let md = render::markdown(&a);
        assert!(md.contains("| a | 2 | 81.00 ± 1.41 |"), "{md}");
    }
}
