//! The report's plots as inline SVG. Hand-written rather than plotters: two chart types, no font
//! files needed for text layout, and the output is plain markup a test can read.
use std::fmt::Write;

const W: f64 = 560.0;
const H: f64 = 300.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
/// Colour-blind-safe (Okabe–Ito).
pub const PALETTE: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"];

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Scale {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Scale {
    fn new(x0: f64, x1: f64, mut y0: f64, mut y1: f64) -> Self {
        if (y1 - y0).abs() < 1e-12 {
            y0 -= 0.5;
            y1 += 0.5;
        } else {
            let pad = 0.05 * (y1 - y0);
            y0 -= pad;
            y1 += pad;
        }
        Scale { x0, x1: if x1 > x0 { x1 } else { x0 + 1.0 }, y0, y1 }
    }
    fn x(&self, v: f64) -> f64 {
        LEFT + (v - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)
    }
    fn y(&self, v: f64) -> f64 {
        H - BOTTOM - (v - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)
    }
}

fn frame(out: &mut String, title: &str, xlabel: &str, s: &Scale, xticks: &[(f64, String)]) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(out, r#"<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{}</text>"#, esc(title));
    let (xa, xb, ya, yb) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let _ = write!(out, r##"<path d="M{xa},{ya} V{yb} H{xb}" fill="none" stroke="#444"/>"##);
    let (values, step) = nice_ticks(s.y0, s.y1);
    for v in values {
        let y = s.y(v);
        let _ = write!(
            out,
            r##"<line x1="{xa}" x2="{xb}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            xa - 4.0,
            y + 4.0,
            fmt_tick(v, step)
        );
    }
    for (v, label) in xticks {
        let _ = write!(out, r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, s.x(*v), yb + 14.0, esc(label));
    }
    let _ =
        write!(out, r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, (xa + xb) / 2.0, H - 6.0, esc(xlabel));
}

/// Round tick values inside `[lo, hi]`, 3 to 7 of them, a step of 1, 2 or 5 times a power of
/// ten (so each label is exactly where its grid line is), and that step.
fn nice_ticks(lo: f64, hi: f64) -> (Vec<f64>, f64) {
    let raw = ((hi - lo) / 4.0).abs().max(1e-12);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = magnitude
        * match raw / magnitude {
            r if r < 1.5 => 1.0,
            r if r < 3.0 => 2.0,
            r if r < 7.0 => 5.0,
            _ => 10.0,
        };
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // Multiples of the step computed from integers: no 0.30000000000000004 and no -0.
    ((first..=last).map(|k| k as f64 * step + 0.0).collect(), step)
}

/// A tick label with the decimals the step between ticks needs.
fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = (-step.abs().max(1e-12).log10().floor()).clamp(0.0, 8.0) as usize;
    let text = format!("{v:.decimals$}");
    // Formatting rounds tiny negatives to "-0".
    if text.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        text.trim_start_matches('-').to_string()
    } else {
        text
    }
}

fn legend(out: &mut String, names: &[&str]) {
    for (i, n) in names.iter().enumerate() {
        let y = TOP + 14.0 * i as f64;
        let c = PALETTE[i % PALETTE.len()];
        let _ = write!(
            out,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{c}"/><text x="{}" y="{}">{}</text>"#,
            W - RIGHT + 10.0,
            y,
            W - RIGHT + 24.0,
            y + 9.0,
            esc(n)
        );
    }
}

/// One series per experiment: `runs[r][e]` is run r's value at epoch e. Draws the mean per epoch
/// and a band of ± one standard deviation (over the runs that reached that epoch).
pub fn envelope_chart(title: &str, series: &[(String, Vec<Vec<f64>>)]) -> String {
    let stats: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, runs)| {
            let epochs = runs.iter().map(Vec::len).max().unwrap_or(0);
            let per_epoch = (0..epochs)
                .map(|e| {
                    let xs: Vec<f64> = runs.iter().filter_map(|r| r.get(e).copied()).collect();
                    (super::stats::mean(&xs), super::stats::std(&xs))
                })
                .collect();
            (name.as_str(), per_epoch)
        })
        .collect();
    let epochs = stats.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let (lo, hi) = stats
        .iter()
        .flat_map(|(_, s)| s.iter().flat_map(|(m, sd)| [m - sd, m + sd]))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let s = Scale::new(1.0, epochs.max(1) as f64, lo, hi);
    let ticks: Vec<(f64, String)> = (1..=epochs).map(|e| (e as f64, e.to_string())).collect();
    let mut out = String::new();
    frame(&mut out, title, "epoch", &s, &ticks);
    for (i, (_, pts)) in stats.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        if pts.is_empty() {
            continue;
        }
        let upper: Vec<String> = pts
            .iter()
            .enumerate()
            .map(|(e, (m, sd))| format!("{:.1},{:.1}", s.x(e as f64 + 1.0), s.y(m + sd)))
            .collect();
        let lower: Vec<String> = pts
            .iter()
            .enumerate()
            .rev()
            .map(|(e, (m, sd))| format!("{:.1},{:.1}", s.x(e as f64 + 1.0), s.y(m - sd)))
            .collect();
        let _ = write!(
            out,
            r#"<polygon class="band" points="{} {}" fill="{c}" fill-opacity="0.2" stroke="none"/>"#,
            upper.join(" "),
            lower.join(" ")
        );
        let line: Vec<String> =
            pts.iter().enumerate().map(|(e, (m, _))| format!("{:.1},{:.1}", s.x(e as f64 + 1.0), s.y(*m))).collect();
        let _ = write!(
            out,
            r#"<polyline class="mean" points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            line.join(" ")
        );
        for p in &line {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{c}"/>"#);
        }
    }
    legend(&mut out, &series.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>());
    out.push_str("</svg>");
    out
}

/// Test accuracy per seed: one column per experiment, one labelled dot per run, a bar at the mean.
pub fn strip_chart(title: &str, groups: &[(String, Vec<(u64, f64)>)]) -> String {
    let (lo, hi) = groups
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let s = Scale::new(0.5, groups.len() as f64 + 0.5, lo, hi);
    let ticks: Vec<(f64, String)> = groups.iter().enumerate().map(|(i, (n, _))| (i as f64 + 1.0, n.clone())).collect();
    let mut out = String::new();
    frame(&mut out, title, "experiment", &s, &ticks);
    for (i, (_, pts)) in groups.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let x = s.x(i as f64 + 1.0);
        for (k, (seed, v)) in pts.iter().enumerate() {
            // Spread the dots sideways so equal values stay visible.
            let dx = (k as f64 - (pts.len() as f64 - 1.0) / 2.0) * 8.0;
            let _ = write!(
                out,
                r#"<circle class="run" cx="{:.1}" cy="{:.1}" r="4" fill="{c}"><title>seed {seed}: {v:.4}</title></circle><text x="{:.1}" y="{:.1}" font-size="9">s{seed}</text>"#,
                x + dx,
                s.y(*v),
                x + dx + 5.0,
                s.y(*v) + 3.0
            );
        }
        if !pts.is_empty() {
            let m = super::stats::mean(&pts.iter().map(|p| p.1).collect::<Vec<_>>());
            let _ = write!(
                out,
                r#"<line class="mean" x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="2"/>"#,
                x - 20.0,
                x + 20.0,
                s.y(m),
                s.y(m)
            );
        }
    }
    legend(&mut out, &groups.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>());
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_a_band_and_a_mean_line_per_series_and_escapes_names() {
        let series = vec![
            ("a<b".to_string(), vec![vec![0.1, 0.5], vec![0.3, 0.7]]),
            ("c".to_string(), vec![vec![0.2, 0.2, 0.4]]),
        ];
        let svg = envelope_chart("val top1", &series);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"band\"").count(), 2);
        assert_eq!(svg.matches("class=\"mean\"").count(), 2);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        // Epoch ticks 1..3 for the longest series.
        assert!(svg.contains(">3</text>"));
    }

    #[test]
    fn tick_labels_tell_close_values_apart() {
        assert_eq!(fmt_tick(2.07944, 0.00001), "2.07944");
        assert_eq!(fmt_tick(0.45, 0.05), "0.45");
        assert_eq!(fmt_tick(120.0, 100.0), "120");
        assert_eq!(fmt_tick(-1e-17, 2.0), "0");
    }

    #[test]
    fn ticks_are_round_numbers_inside_the_axis() {
        // GDAS' temperature axis, 10 down to 0.1, padded by 5%: was labelled 10, 8, 5, 2, -0 at
        // grid lines 10.5, 7.8, 5.0, 2.3, -0.4.
        let (ticks, step) = nice_ticks(-0.395, 10.495);
        assert_eq!((ticks.clone(), step), (vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0], 2.0));
        let labels: Vec<String> = ticks.iter().map(|&v| fmt_tick(v, step)).collect();
        assert_eq!(labels, ["0", "2", "4", "6", "8", "10"]);
        let (ticks, step) = nice_ticks(0.9205, 0.9305);
        assert_eq!(step, 0.002);
        let labels: Vec<String> = ticks.iter().map(|&v| fmt_tick(v, step)).collect();
        assert_eq!(labels, ["0.922", "0.924", "0.926", "0.928", "0.930"]);
        let (ticks, _) = nice_ticks(-0.3, 0.3);
        assert!(ticks.contains(&0.0) && ticks.iter().all(|t| (-0.3..=0.3).contains(t)), "{ticks:?}");
        for (lo, hi) in [(0.0, 1.0), (1.3, 2.1), (0.76, 0.94), (-5.0, 1e4), (1.0, 1.0 + 1e-9)] {
            let n = nice_ticks(lo, hi).0.len();
            assert!((3..=7).contains(&n), "{lo}..{hi}: {n} ticks");
        }
    }

    #[test]
    fn strip_has_one_dot_per_run_and_a_mean_per_group() {
        let groups = vec![("darts".to_string(), vec![(0, 0.8), (1, 0.82)]), ("random".to_string(), vec![(0, 0.79)])];
        let svg = strip_chart("test top1", &groups);
        assert_eq!(svg.matches("class=\"run\"").count(), 3);
        assert_eq!(svg.matches("class=\"mean\"").count(), 2);
        assert!(svg.contains("seed 1: 0.8200"));
    }
}
