//! report.md, summary.csv and report.html from an [`Analysis`].
use super::collect::Run;
use super::svg::{envelope_chart, esc, strip_chart};
use super::{Analysis, ExperimentSummary};
use std::collections::BTreeMap;
use std::fmt::Write;

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2}", 100.0 * v)
    } else {
        "-".into()
    }
}

fn ci(c: Option<(f64, f64)>) -> String {
    c.map_or("-".into(), |(lo, hi)| format!("[{}, {}]", pct(lo), pct(hi)))
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

/// What the agreement column means, under the table.
const AGREEMENT_NOTE: &str = "Cells shared by seeds: the share of kept (edge, op) choices that two seeds' searched \
cells (first normal and first reduction cell) have in common, mean (min..max) over the pairs of seeds. Two \
random cells of the DARTS space (4 nodes, 7 ops) share 9.2% on average; a search that decides by its data \
shares far more. Search s and eval s add up the epochs of every attempt of a run; wall s is the last \
attempt's process, so a run resumed after a kill shows less wall time than training time.";

/// Rows of the per-experiment table: header, then one row per experiment.
fn experiment_rows(a: &Analysis) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "experiment",
        "runs",
        "test top-1 % (mean ± std)",
        "95% CI",
        "min",
        "max",
        "params",
        "MACs",
        "search epochs",
        "search samples",
        "search s",
        "eval epochs",
        "eval samples",
        "eval s",
        "wall s (last attempt)",
        "cells shared by seeds %",
    ];
    let rows = a
        .experiments
        .iter()
        .map(|e: &ExperimentSummary| {
            // Nothing finished yet: no figure to show, rather than "- ± 0.00" and zero budgets.
            let nothing = e.runs == e.failed;
            let figure = |s: String| if nothing { "-".to_string() } else { s };
            vec![
                e.name.clone(),
                match (e.failed, e.untested) {
                    (0, 0) => e.runs.to_string(),
                    (f, 0) => format!("{} ({f} unfinished)", e.runs - f),
                    (0, u) => format!("{} ({u} without eval)", e.runs - u),
                    (f, u) => format!("{} ({f} unfinished, {u} without eval)", e.runs - f - u),
                },
                // One finished run has no spread to show ("± 0.00" would claim one).
                figure(match e.runs - e.failed - e.untested {
                    1 => pct(e.mean),
                    _ => format!("{} ± {}", pct(e.mean), pct(e.std)),
                }),
                ci(e.ci95),
                pct(e.min),
                pct(e.max),
                opt(e.params),
                opt(e.macs),
                figure(e.search.epochs.to_string()),
                figure(e.search.samples.to_string()),
                figure(format!("{:.1}", e.search.seconds)),
                figure(e.eval.epochs.to_string()),
                figure(e.eval.samples.to_string()),
                figure(format!("{:.1}", e.eval.seconds)),
                figure(format!("{:.1}", e.wall_s)),
                e.cell_agreement.as_ref().map_or("-".into(), |g| {
                    format!("{} ({}..{}, {} pairs)", pct(g.mean), pct(g.min), pct(g.max), g.pairs)
                }),
            ]
        })
        .collect();
    (header, rows)
}

fn baseline_rows(a: &Analysis) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "experiment",
        "difference (points)",
        "bootstrap 95% CI",
        "Welch t",
        "p",
        "p (Holm)",
        "detectable at 80% power (points)",
        "verdict",
    ];
    let rows = a
        .vs_baseline
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                if v.diff.is_finite() { format!("{:+.2}", 100.0 * v.diff) } else { "-".into() },
                ci(v.ci95),
                v.welch.map_or("-".into(), |w| format!("{:.3}", w.t)),
                v.welch.map_or("-".into(), |w| format!("{:.4}", w.p)),
                v.p_holm.map_or("-".into(), |p| format!("{p:.4}")),
                v.detectable.map_or("-".into(), |d| format!("{:.2}", 100.0 * d)),
                v.verdict.clone(),
            ]
        })
        .collect();
    (header, rows)
}

fn md_table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}|", header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

/// report.md.
pub fn markdown(a: &Analysis) -> String {
    let mut out = format!("# Comparison: {}\n\n", a.title);
    if !a.warnings.is_empty() {
        out.push_str("## Warnings\n\n");
        for w in &a.warnings {
            let _ = writeln!(out, "- {w}");
        }
        out.push('\n');
    }
    out.push_str("## Test accuracy per experiment\n\n");
    let (h, rows) = experiment_rows(a);
    md_table(&mut out, &h, &rows);
    let _ = writeln!(out, "{AGREEMENT_NOTE}\n");
    if let Some(b) = &a.baseline {
        let _ = writeln!(out, "## Against the baseline ({b})\n");
        let (h, rows) = baseline_rows(a);
        md_table(&mut out, &h, &rows);
        for v in &a.vs_baseline {
            let _ = writeln!(out, "- {}", v.verdict);
        }
        out.push('\n');
    }
    out.push_str("## Runs\n\n");
    md_table(&mut out, &RUN_COLUMNS, &run_rows(a));
    out.push_str("Plots and the searched cells: report.html. Per-run numbers: summary.csv.\n");
    out
}

const RUN_COLUMNS: [&str; 6] = ["experiment", "seed", "status", "test top-1 %", "search decided", "run directory"];

/// Whether the search decided, in a few words: `yes (entropy 61.2%, 1/22 fragile)`.
fn decided(r: &Run) -> String {
    match r.decisiveness() {
        Some(d) => format!(
            "{} (entropy {:.2}%, {}/{} fragile)",
            if d.decided { "yes" } else { "NO, chosen by noise" },
            (100.0 * d.entropy_fraction * 100.0).floor() / 100.0,
            d.fragile,
            d.choices
        ),
        None => "-".into(),
    }
}

fn run_rows(a: &Analysis) -> Vec<Vec<String>> {
    a.runs
        .iter()
        .map(|r| {
            vec![
                r.experiment.clone(),
                r.seed.to_string(),
                format!("{:?}", r.record.status).to_lowercase(),
                r.test_top1().map_or("-".into(), pct),
                decided(r),
                r.dir.display().to_string(),
            ]
        })
        .collect()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// summary.csv: one row per run.
pub fn csv(a: &Analysis) -> String {
    let mut out = String::from(
        "experiment,seed,status,test_top1,test_loss,params,macs,search_epochs,search_samples,search_s,eval_epochs,eval_samples,eval_s,wall_s,search_decided,alpha_entropy_fraction,fragile_choices,choices,run_dir\n",
    );
    for r in &a.runs {
        let eval = r.record.eval.as_ref().and_then(|p| p.summary.as_ref());
        let search = r.record.search.as_ref().and_then(|p| p.summary.as_ref());
        let (sb, eb) = (Run::budget(r.record.search.as_ref()), Run::budget(r.record.eval.as_ref()));
        let fields = [
            r.experiment.clone(),
            r.seed.to_string(),
            format!("{:?}", r.record.status).to_lowercase(),
            eval.map_or(String::new(), |s| s.test.top1.to_string()),
            eval.map_or(String::new(), |s| s.test.loss.to_string()),
            eval.map_or(String::new(), |s| s.params.to_string()),
            search.map_or(String::new(), |s| s.final_stats.macs.to_string()),
            sb.epochs.to_string(),
            sb.samples.to_string(),
            format!("{:.3}", sb.seconds),
            eb.epochs.to_string(),
            eb.samples.to_string(),
            format!("{:.3}", eb.seconds),
            r.record.duration_s.map_or(String::new(), |d| format!("{d:.3}")),
            r.decisiveness().map_or(String::new(), |d| d.decided.to_string()),
            r.decisiveness().map_or(String::new(), |d| d.entropy_fraction.to_string()),
            r.decisiveness().map_or(String::new(), |d| d.fragile.to_string()),
            r.decisiveness().map_or(String::new(), |d| d.choices.to_string()),
            r.dir.display().to_string(),
        ];
        let _ = writeln!(out, "{}", fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
    }
    out
}

fn html_table(out: &mut String, id: &str, header: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, r#"<table id="{id}"><thead><tr>"#);
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
}

/// Per experiment, per run: the values of `f(epoch record)` over the epochs of a phase.
fn per_epoch<F>(a: &Analysis, phase: &str, f: F) -> Vec<(String, Vec<Vec<f64>>)>
where
    F: Fn(&archai_runlog::schema::EpochRecord) -> Option<f64>,
{
    let mut m: BTreeMap<String, Vec<Vec<f64>>> = BTreeMap::new();
    for r in a.runs.iter().filter(|r| r.ok()) {
        let epochs = match phase {
            "search" => r.record.search.as_ref().map(|p| &p.epochs),
            _ => r.record.eval.as_ref().map(|p| &p.epochs),
        };
        let values: Vec<f64> = epochs.into_iter().flat_map(|e| e.values()).filter_map(&f).collect();
        if !values.is_empty() {
            m.entry(r.experiment.clone()).or_default().push(values);
        }
    }
    m.into_iter().collect()
}

/// The plots, in the order the page shows them.
pub fn plots(a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    let strip: Vec<(String, Vec<(u64, f64)>)> = a
        .experiments
        .iter()
        .map(|e| (e.name.clone(), e.seeds.iter().copied().zip(e.test_top1.iter().copied()).collect()))
        .collect();
    out.push(strip_chart("test top-1 per seed", &strip));
    for phase in ["search", "eval"] {
        let val = per_epoch(a, phase, |e| e.val.map(|m| m.top1));
        if !val.is_empty() {
            out.push(envelope_chart(&format!("{phase}: validation top-1 per epoch (mean ± std)"), &val));
        } else {
            let train = per_epoch(a, phase, |e| e.train.as_ref().map(|t| t.top1));
            if !train.is_empty() {
                out.push(envelope_chart(&format!("{phase}: training top-1 per epoch (no validation split)"), &train));
            }
        }
    }
    // Whatever scalars the search algorithms report per epoch (alpha entropy for the
    // differentiable ones), by the name they logged.
    let mut keys: Vec<String> = a
        .runs
        .iter()
        .filter_map(|r| r.record.search.as_ref())
        .flat_map(|p| p.epochs.values().flat_map(|e| e.algorithm_scalars().into_keys()))
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let series = per_epoch(a, "search", |e| e.algorithm_scalars().get(&key).copied());
        out.push(envelope_chart(&format!("search: {key} per epoch (mean ± std)"), &series));
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}\
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #bbb;padding:4px 8px;font-size:13px;text-align:right}\
th{background:#eef}td:first-child,th:first-child{text-align:left}.warn{background:#fff4d6;border:1px solid #e0b040;padding:8px 12px}\
.plots svg{margin:6px;border:1px solid #ddd}.cells{display:flex;flex-wrap:wrap;gap:12px}.cells figure{border:1px solid #ddd;margin:0;padding:6px}\
.cells svg{max-width:540px;height:auto}";

/// report.html: one self-contained page (inline CSS and SVG, nothing fetched).
pub fn html(a: &Analysis) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>archai report: {t}</title><style>{STYLE}</style></head><body>\n<h1>Comparison: {t}</h1>\n",
        t = esc(&a.title)
    );
    if !a.warnings.is_empty() {
        out.push_str("<div class=\"warn\" id=\"warnings\"><b>Warnings</b><ul>");
        for w in &a.warnings {
            let _ = write!(out, "<li>{}</li>", esc(w));
        }
        out.push_str("</ul></div>\n");
    }
    out.push_str("<h2>Test accuracy per experiment</h2>\n");
    let (h, rows) = experiment_rows(a);
    html_table(&mut out, "experiments", &h, &rows);
    let _ = writeln!(out, "<p>{}</p>", esc(AGREEMENT_NOTE));
    if let Some(b) = &a.baseline {
        let _ = writeln!(out, "<h2>Against the baseline ({})</h2>", esc(b));
        let (h, rows) = baseline_rows(a);
        html_table(&mut out, "baseline", &h, &rows);
    }
    out.push_str("<h2>Plots</h2>\n<div class=\"plots\">");
    for p in plots(a) {
        out.push_str(&p);
        out.push('\n');
    }
    out.push_str("</div>\n<h2>Searched cells</h2>\n<div class=\"cells\">");
    for r in a.runs.iter().filter(|r| r.ok()) {
        if let Some(svg) = r.cells_svg() {
            let _ = write!(
                out,
                "<figure><figcaption>{} seed {}</figcaption>{}</figure>",
                esc(&r.experiment),
                r.seed,
                scalable(&svg)
            );
        }
    }
    out.push_str("</div>\n<h2>Runs</h2>\n");
    html_table(&mut out, "runs", &RUN_COLUMNS, &run_rows(a));
    out.push_str("</body></html>\n");
    out
}

/// An SVG document ready to inline and scale: any XML prolog dropped, and a viewBox added from
/// its width and height when it has none (without one, CSS scaling crops instead of shrinking).
pub fn scalable(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    let svg = svg[start..].trim();
    let Some(tag_end) = svg.find('>') else { return svg.to_string() };
    let tag = &svg[..tag_end];
    if tag.contains("viewBox") {
        return svg.to_string();
    }
    let attr = |name: &str| -> Option<String> {
        let i = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[i..].split('"').next()?.to_string())
    };
    match (attr("width"), attr("height")) {
        (Some(w), Some(h)) => format!("{} viewBox=\"0 0 {w} {h}\"{}", tag, &svg[tag_end..]),
        _ => svg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn inlined_svgs_get_a_viewbox_and_lose_their_prolog() {
        let s = super::scalable("<?xml version=\"1.0\"?>\n<svg width=\"800\" height=\"600\"><g/></svg>");
        assert_eq!(s, "<svg width=\"800\" height=\"600\" viewBox=\"0 0 800 600\"><g/></svg>");
        let kept = "<svg width=\"8\" height=\"6\" viewBox=\"0 0 4 3\"></svg>";
        assert_eq!(super::scalable(kept), kept);
    }
}
