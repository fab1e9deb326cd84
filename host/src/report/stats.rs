//! The statistics of a comparison: mean, sample standard deviation, the t interval of a mean,
//! a percentile-bootstrap interval for a difference of means, Welch's t-test, and Holm's
//! adjustment of p-values for testing several experiments against one baseline, and the
//! smallest difference a comparison of this size could detect.
use archai_plugin_api::kit::seeded::SplitMix64;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean of `xs` (NaN when empty).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (n - 1 in the denominator); 0 for fewer than two values.
pub fn std(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// Two-sided 95% confidence interval of the mean by Student's t: mean ± t(0.975, n-1) s/√n.
/// `None` for fewer than two values.
pub fn mean_ci95(xs: &[f64]) -> Option<(f64, f64)> {
    let n = xs.len();
    if n < 2 {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?.inverse_cdf(0.975);
    let half = t * std(xs) / (n as f64).sqrt();
    Some((mean(xs) - half, mean(xs) + half))
}

/// Percentile-bootstrap 95% interval of mean(a) - mean(b): each group resampled with
/// replacement `resamples` times from a generator seeded with `seed`, so a report is the same
/// every time it is made. `None` when a group has fewer than two values: resampling one value
/// gives it no spread, and the interval would look far surer than the data are.
pub fn bootstrap_diff_ci95(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<(f64, f64)> {
    if a.len() < 2 || b.len() < 2 || resamples == 0 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut resample_mean = |xs: &[f64]| {
        let n = xs.len() as u64;
        (0..xs.len()).map(|_| xs[(rng.next_u64() % n) as usize]).sum::<f64>() / xs.len() as f64
    };
    let mut diffs: Vec<f64> = (0..resamples).map(|_| resample_mean(a) - resample_mean(b)).collect();
    diffs.sort_by(f64::total_cmp);
    Some((percentile(&diffs, 0.025), percentile(&diffs, 0.975)))
}

/// Linear interpolation between closest ranks (numpy's default) of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Welch's two-sample t-test of mean(a) = mean(b).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Welch {
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
    /// Standard error of the difference of means, √(s_a²/n_a + s_b²/n_b).
    pub se: f64,
}

impl Welch {
    /// The difference of means that this test at two-sided level 0.05 would detect with 80%
    /// power, given the groups' spread and sizes: (t(0.975, df) + t(0.80, df)) · se, the usual
    /// normal-shift approximation of the noncentral t with Welch's df. A "not distinguishable"
    /// next to a detectable difference of 0.9 points says the comparison could not have seen a
    /// 0.5-point gain, not that there is none.
    pub fn detectable_difference(&self) -> Option<f64> {
        let t = StudentsT::new(0.0, 1.0, self.df).ok()?;
        Some((t.inverse_cdf(0.975) + t.inverse_cdf(0.80)) * self.se)
    }
}

/// Welch's t-test; `None` with fewer than two values in a group or when both groups have no
/// spread (the statistic is undefined).
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (va, vb) = (std(a).powi(2) / a.len() as f64, std(b).powi(2) / b.len() as f64);
    if va + vb == 0.0 {
        return None;
    }
    let se = (va + vb).sqrt();
    let t = (mean(a) - mean(b)) / se;
    let df = (va + vb).powi(2) / (va.powi(2) / (a.len() - 1) as f64 + vb.powi(2) / (b.len() - 1) as f64);
    let p = 2.0 * (1.0 - StudentsT::new(0.0, 1.0, df).ok()?.cdf(t.abs()));
    Some(Welch { t, df, p, se })
}

/// Holm–Bonferroni adjusted p-values, in the order given: the `m` defined p-values sorted
/// ascending, the k-th (from 0) multiplied by `m - k`, made non-decreasing along that order and
/// capped at 1. Rejecting where the adjusted p < α keeps the chance of any false "better" among
/// the `m` comparisons at most α, whatever their dependence. `None` stays `None` and does not
/// count in `m`.
pub fn holm(ps: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut order: Vec<usize> = (0..ps.len()).filter(|&i| ps[i].is_some()).collect();
    order.sort_by(|&i, &j| ps[i].unwrap().total_cmp(&ps[j].unwrap()));
    let m = order.len();
    let mut adjusted = vec![None; ps.len()];
    let mut running_max: f64 = 0.0;
    for (k, &i) in order.iter().enumerate() {
        running_max = running_max.max(((m - k) as f64 * ps[i].unwrap()).min(1.0));
        adjusted[i] = Some(running_max);
    }
    adjusted
}

/// The p-value a verdict rests on: Welch's own for a single comparison, Holm's adjusted one
/// (`p_holm`) when the report tests `m` > 1 experiments against the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tested {
    pub welch: Welch,
    pub p_holm: f64,
    pub m: usize,
}

impl Tested {
    fn p(&self) -> f64 {
        if self.m > 1 {
            self.p_holm
        } else {
            self.welch.p
        }
    }

    fn say_p(&self) -> String {
        if self.m > 1 {
            format!("p = {:.3} Holm-adjusted over {} comparisons", self.p_holm, self.m)
        } else {
            format!("p = {:.3}", self.welch.p)
        }
    }
}

/// One sentence on `name` against `baseline`, from the difference of means, its bootstrap
/// interval and Welch's p-value (percent points of accuracy).
pub fn verdict(name: &str, baseline: &str, a: &[f64], b: &[f64], ci: Option<(f64, f64)>, w: Option<Tested>) -> String {
    let n = format!("n = {} vs {}", a.len(), b.len());
    if a.is_empty() || b.is_empty() {
        let missing = if a.is_empty() { name } else { baseline };
        return format!("{name} and {baseline} cannot be compared yet at {n}: {missing} has no finished run");
    }
    let d = 100.0 * (mean(a) - mean(b));
    match (w, ci) {
        (Some(w), Some((lo, hi))) if w.p() < 0.05 && (lo > 0.0 || hi < 0.0) => {
            let word = if d > 0.0 { "better" } else { "worse" };
            format!("{name} is {word} than {baseline} by {:.2} points ({}, {n})", d.abs(), w.say_p())
        }
        (Some(w), _) => {
            let detectable = w.welch.detectable_difference()
                .map(|m| format!("; a true difference of {:.2} points would be found 4 times in 5 at this n", 100.0 * m))
                .unwrap_or_default();
            format!(
                "{name} and {baseline} are not distinguishable at {n}: difference {d:+.2} points, {}{detectable}",
                w.say_p()
            )
        }
        (None, _) => format!(
            "{name} and {baseline} cannot be compared statistically at {n} (need two runs each with some spread): difference {d:+.2} points"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_and_t_interval_match_hand_computed_values() {
        let xs = [0.80, 0.82, 0.84];
        assert!((mean(&xs) - 0.82).abs() < 1e-12);
        // Deviations ±0.02, 0: s = sqrt(0.0008 / 2) = 0.02.
        assert!((std(&xs) - 0.02).abs() < 1e-12);
        // t(0.975, 2) = 4.302653; half width = 4.302653 * 0.02 / sqrt(3) = 0.0496827.
        let (lo, hi) = mean_ci95(&xs).unwrap();
        assert!((hi - 0.82 - 0.049_682_7).abs() < 1e-6 && (0.82 - lo - 0.049_682_7).abs() < 1e-6, "{lo} {hi}");
        assert_eq!(std(&[1.0]), 0.0);
        assert!(mean_ci95(&[1.0]).is_none());
    }

    #[test]
    fn welch_matches_scipy() {
        // By hand: s_a^2/n_a = 0.0004/3, s_b^2/n_b = 0.00096667/4; t = 0.085 / sqrt(0.000375)
        // = 4.38938; df = 0.000375^2 / ((0.0004/3)^2/2 + (0.00096667/4)^2/3) = 4.95918; p by
        // Simpson integration of the t density = 0.007228.
        let (a, b) = ([0.80, 0.82, 0.84], [0.70, 0.75, 0.77, 0.72]);
        let w = welch(&a, &b).unwrap();
        assert!((w.t - 4.389_381).abs() < 1e-5, "{w:?}");
        assert!((w.df - 4.959_184).abs() < 1e-5, "{w:?}");
        assert!((w.p - 0.007_228).abs() < 2e-5, "{w:?}");
        assert!(welch(&[1.0, 1.0], &[1.0, 1.0]).is_none());
        assert!(welch(&[1.0], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn bootstrap_interval_is_seeded_and_brackets_the_difference() {
        let (a, b) = ([0.80, 0.82, 0.84], [0.70, 0.75, 0.77, 0.72]);
        let ci = bootstrap_diff_ci95(&a, &b, 10_000, 0).unwrap();
        assert_eq!(ci, bootstrap_diff_ci95(&a, &b, 10_000, 0).unwrap());
        let d = mean(&a) - mean(&b);
        assert!(ci.0 < d && d < ci.1, "{ci:?} around {d}");
        // Every resampled difference lies between min(a)-max(b) and max(a)-min(b).
        assert!(ci.0 >= 0.80 - 0.77 && ci.1 <= 0.84 - 0.70, "{ci:?}");
        // Identical constant groups: the interval is the point 0.
        assert_eq!(bootstrap_diff_ci95(&[0.5, 0.5], &[0.5, 0.5], 100, 1), Some((0.0, 0.0)));
        // One run in a group: no interval (it would be a's spread alone).
        assert_eq!(bootstrap_diff_ci95(&a, &[0.7], 100, 1), None);
        // Percentiles interpolate like numpy: percentile([0, 1, 2, 3], 2.5%) = 0.075.
        assert!((percentile(&[0.0, 1.0, 2.0, 3.0], 0.025) - 0.075).abs() < 1e-12);
    }

    fn alone(w: Option<Welch>) -> Option<Tested> {
        w.map(|welch| Tested { welch, p_holm: welch.p, m: 1 })
    }

    #[test]
    fn detectable_difference_matches_t_tables() {
        // Equal spreads and sizes: Welch's df = 2(n - 1) = 4; t(0.975, 4) = 2.776445 and
        // t(0.80, 4) = 0.940965 (tables); se = sqrt(2 * 0.0004 / 3) = 0.0163299;
        // 3.717410 * 0.0163299 = 0.0607054.
        let (a, b) = ([0.80, 0.82, 0.84], [0.79, 0.81, 0.83]);
        let d = welch(&a, &b).unwrap().detectable_difference().unwrap();
        assert!((d - 0.060_705_4).abs() < 1e-6, "{d}");
        // Twice the spread, twice the detectable difference.
        let (c, e) = ([0.78, 0.82, 0.86], [0.77, 0.81, 0.85]);
        assert!((welch(&c, &e).unwrap().detectable_difference().unwrap() - 2.0 * d).abs() < 1e-9);
        assert_eq!(welch(&a, &[0.8]).and_then(|w| w.detectable_difference()), None);
    }

    #[test]
    fn holm_adjusts_like_statsmodels() {
        // statsmodels.stats.multitest.multipletests([.01, .04, .03, .005], method="holm"):
        // sorted .005, .01, .03, .04 times 4, 3, 2, 1 = .02, .03, .06, .04 -> monotone .06.
        let adj = holm(&[Some(0.01), Some(0.04), Some(0.03), Some(0.005)]);
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, w) in adj.iter().zip(want) {
            assert!((a.unwrap() - w).abs() < 1e-12, "{adj:?}");
        }
        // Capped at 1; undefined p-values neither adjusted nor counted (m = 2 here).
        assert_eq!(holm(&[Some(0.7), None, Some(0.2)]), vec![Some(0.7), None, Some(0.4)]);
        assert_eq!(holm(&[Some(0.7), None, Some(0.6)]), vec![Some(1.0), None, Some(1.0)]);
        assert_eq!(holm(&[Some(0.3)]), vec![Some(0.3)]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn verdicts_say_plainly_what_the_numbers_allow() {
        let (a, b) = ([0.80, 0.82, 0.84], [0.70, 0.75, 0.77, 0.72]);
        let ci = bootstrap_diff_ci95(&a, &b, 2000, 0);
        let v = verdict("darts", "random", &a, &b, ci, alone(welch(&a, &b)));
        assert!(v.starts_with("darts is better than random by 8.50 points (p = 0.007, n = 3 vs 4)"), "{v}");
        // The same difference among 8 comparisons: Holm's p (0.058 for the smallest of 8) is
        // above 0.05, so it is no longer called better.
        let w = welch(&a, &b).unwrap();
        let many = Some(Tested { welch: w, p_holm: 8.0 * w.p, m: 8 });
        let v = verdict("darts", "random", &a, &b, ci, many);
        assert!(
            v.starts_with("darts and random are not distinguishable at n = 3 vs 4: difference +8.50 points, p = 0.058 Holm-adjusted over 8 comparisons"),
            "{v}"
        );
        let (c, d) = ([0.80, 0.82, 0.84], [0.79, 0.83, 0.85]);
        let v = verdict("darts", "random", &c, &d, bootstrap_diff_ci95(&c, &d, 2000, 0), alone(welch(&c, &d)));
        assert!(v.contains("not distinguishable at n = 3 vs 3"), "{v}");
        let m = 100.0 * welch(&c, &d).unwrap().detectable_difference().unwrap();
        assert!(
            v.ends_with(&format!("; a true difference of {m:.2} points would be found 4 times in 5 at this n")),
            "{v}"
        );
        // A baseline whose runs are still going: said so, no NaN.
        let v = verdict("darts", "random", &c, &[], None, None);
        assert_eq!(v, "darts and random cannot be compared yet at n = 3 vs 0: random has no finished run");
    }
}
