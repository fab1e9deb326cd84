//! Pareto plots of an outer-loop search: for every pair of objectives, every valid evaluated
//! model and the front after each iteration (SVG, one file per pair, rewritten every
//! iteration).
use super::config::ObjectiveConfig;
use super::{front_of, HistoryRow};
use crate::report::svg::{esc, PALETTE};
use anyhow::{Context, Result};
use std::fmt::Write;
use std::path::Path;

const W: f64 = 640.0;
const H: f64 = 420.0;
const L: f64 = 90.0;
const R: f64 = 130.0;
const T: f64 = 36.0;
const B: f64 = 50.0;

fn unit(name: &str) -> &'static str {
    match name {
        "params" => "weights",
        "macs" => "MACs per image",
        "activation_bytes" => "bytes per image",
        "latency_ms" => "ms",
        "train_peak_mb" => "MiB",
        "val_top1" => "fraction correct",
        _ => "",
    }
}

fn fmt(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v.abs() >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The plot of objectives `a` (x) and `b` (y).
pub fn pareto_svg(rows: &[&HistoryRow], objectives: &[ObjectiveConfig], a: usize, b: usize) -> String {
    let (oa, ob) = (&objectives[a], &objectives[b]);
    let value = |r: &HistoryRow, o: &ObjectiveConfig| r.evaluation.values.get(o.name.name()).copied();
    let valid: Vec<(f64, f64, u32)> = rows
        .iter()
        .filter(|r| r.evaluation.valid)
        .filter_map(|r| Some((value(r, oa)?, value(r, ob)?, r.iteration)))
        .filter(|(x, y, _)| x.is_finite() && y.is_finite())
        .collect();
    let span = |v: Vec<f64>| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi - lo < 1e-12 {
            (lo - 0.5 * lo.abs().max(1.0), hi + 0.5 * hi.abs().max(1.0))
        } else {
            (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        }
    };
    let (x0, x1) = span(valid.iter().map(|p| p.0).collect());
    let (y0, y1) = span(valid.iter().map(|p| p.1).collect());
    let sx = |v: f64| L + (v - x0) / (x1 - x0) * (W - L - R);
    let sy = |v: f64| H - B - (v - y0) / (y1 - y0) * (H - T - B);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11"><rect width="{W}" height="{H}" fill="white"/>"#
    );
    let dir = |o: &ObjectiveConfig| if o.higher_is_better() { "higher is better" } else { "lower is better" };
    let _ = write!(
        out,
        r#"<text x="{L}" y="20" font-size="13" font-weight="bold">Pareto front: {} vs {}</text>"#,
        esc(oa.name.name()),
        esc(ob.name.name())
    );
    let _ = write!(out, r##"<path d="M{L},{T} V{} H{}" fill="none" stroke="#444"/>"##, H - B, W - R);
    for i in 0..=4 {
        let (vx, vy) = (x0 + (x1 - x0) * i as f64 / 4.0, y0 + (y1 - y0) * i as f64 / 4.0);
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{:.1}" text-anchor="end">{}</text><line x1="{L}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            sx(vx),
            H - B + 14.0,
            fmt(vx),
            L - 4.0,
            sy(vy) + 4.0,
            fmt(vy),
            W - R,
            sy(vy),
            sy(vy)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">{} ({}, {})</text>"#,
        (L + W - R) / 2.0,
        H - 12.0,
        esc(oa.name.name()),
        unit(oa.name.name()),
        dir(oa)
    );
    let _ = write!(
        out,
        r#"<text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">{} ({}, {})</text>"#,
        (T + H - B) / 2.0,
        esc(ob.name.name()),
        unit(ob.name.name()),
        dir(ob)
    );
    for (x, y, _) in &valid {
        let _ = write!(out, r##"<circle class="model" cx="{:.1}" cy="{:.1}" r="3" fill="#bbb"/>"##, sx(*x), sy(*y));
    }
    let _ = write!(out, r#"<text x="{}" y="{}">front after</text>"#, W - R + 8.0, T + 8.0);
    // The front after each iteration, on these two objectives only.
    let pair = [oa.clone(), ob.clone()];
    let last = rows.iter().map(|r| r.iteration).max().unwrap_or(0);
    for it in 0..=last {
        let upto: Vec<&HistoryRow> = rows.iter().copied().filter(|r| r.iteration <= it).collect();
        let mut pts: Vec<(f64, f64)> = front_of(&upto, &pair)
            .into_iter()
            .filter_map(|i| Some((value(upto[i], oa)?, value(upto[i], ob)?)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        pts.sort_by(|p, q| p.0.total_cmp(&q.0));
        let c = PALETTE[it as usize % PALETTE.len()];
        let line: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
        if line.len() > 1 {
            let _ = write!(
                out,
                r#"<polyline class="front" points="{}" fill="none" stroke="{c}" stroke-width="1.5"/>"#,
                line.join(" ")
            );
        }
        for (x, y) in &pts {
            let _ = write!(out, r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"/>"#, sx(*x), sy(*y));
        }
        let ly = T + 16.0 + 14.0 * it as f64;
        if ly < H - B {
            let _ = write!(
                out,
                r#"<rect x="{}" y="{ly}" width="10" height="10" fill="{c}"/><text x="{}" y="{}">iteration {it}</text>"#,
                W - R + 8.0,
                W - R + 22.0,
                ly + 9.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Writes `pareto_<a>_vs_<b>.svg` and `.png` for every pair of objectives.
pub fn write_pareto_plots(
    run_dir: &Path,
    rows: &[&HistoryRow],
    objectives: &[ObjectiveConfig],
    raster: &crate::png::Rasterizer,
) -> Result<()> {
    for a in 0..objectives.len() {
        for b in a + 1..objectives.len() {
            let stem = run_dir.join(format!("pareto_{}_vs_{}", objectives[a].name.name(), objectives[b].name.name()));
            let svg = pareto_svg(rows, objectives, a, b);
            let path = stem.with_extension("svg");
            std::fs::write(&path, &svg).with_context(|| format!("writing {}", path.display()))?;
            let path = stem.with_extension("png");
            std::fs::write(&path, raster.png(&svg)?).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}
