//! The lower convex hull of (compute, error), the ε-band around it, and Petridish's parent
//! sampling from the band.
use archai_plugin_api::kit::seeded::SplitMix64;

/// The decreasing part of the lower convex hull of `points` (x = compute, y = error): the
/// points no mix of cheaper-and-better models beats. Indices into `points`, by increasing x.
/// Archai's trick: a virtual point (2·x_max, y_min) closes the hull on the right, so that only
/// its falling part remains.
pub fn lower_hull(points: &[(f64, f64)]) -> Vec<usize> {
    let finite: Vec<usize> =
        (0..points.len()).filter(|&i| points[i].0.is_finite() && points[i].1.is_finite()).collect();
    if finite.is_empty() {
        return Vec::new();
    }
    let x_max = finite.iter().map(|&i| points[i].0).fold(f64::NEG_INFINITY, f64::max);
    let y_min = finite.iter().map(|&i| points[i].1).fold(f64::INFINITY, f64::min);
    let virtual_point = (2.0 * x_max.max(1e-12), y_min);
    let mut order = finite.clone();
    order.sort_by(|&a, &b| points[a].partial_cmp(&points[b]).expect("finite"));
    let at = |k: Option<usize>| k.map_or(virtual_point, |i| points[i]);
    // Andrew's monotone chain, lower part; `None` is the virtual point.
    let mut hull: Vec<Option<usize>> = Vec::new();
    for k in order.into_iter().map(Some).chain(std::iter::once(None)) {
        while hull.len() >= 2 {
            let (o, a, b) = (at(hull[hull.len() - 2]), at(hull[hull.len() - 1]), at(k));
            let cross = (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
            if cross <= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(k);
    }
    hull.into_iter().flatten().collect()
}

/// The hull's error at `x` (linear between hull points, flat outside them).
pub fn hull_at(points: &[(f64, f64)], hull: &[usize], x: f64) -> f64 {
    let p = |k: usize| points[hull[k]];
    if hull.is_empty() {
        return f64::NAN;
    }
    if x <= p(0).0 {
        return p(0).1;
    }
    for k in 1..hull.len() {
        let (a, b) = (p(k - 1), p(k));
        if x <= b.0 {
            let t = if b.0 > a.0 { (x - a.0) / (b.0 - a.0) } else { 1.0 };
            return a.1 + t * (b.1 - a.1);
        }
    }
    p(hull.len() - 1).1
}

/// The points within a factor (1 + ε) of the hull's error at their x.
pub fn eps_band(points: &[(f64, f64)], hull: &[usize], eps: f64) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            let (x, y) = points[i];
            x.is_finite() && y.is_finite() && y <= (1.0 + eps) * hull_at(points, hull, x) + 1e-12
        })
        .collect()
}

/// Min-max scaling to [0, 1] (all zeros when the values are equal).
fn scaled(v: &[f64]) -> Vec<f64> {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    v.iter().map(|x| if hi > lo { (x - lo) / (hi - lo) } else { 0.0 }).collect()
}

/// Petridish's sampling weights over the band: 1/(1 + c̃) + 1/(1 + m̃), c̃ the times a point was
/// sampled and m̃ its compute, each min-max scaled over the band: cheap, rarely grown models
/// first.
pub fn sampling_weights(counts: &[u32], compute: &[f64]) -> Vec<f64> {
    let c = scaled(&counts.iter().map(|&n| n as f64).collect::<Vec<_>>());
    let m = scaled(compute);
    c.iter().zip(&m).map(|(c, m)| 1.0 / (1.0 + c) + 1.0 / (1.0 + m)).collect()
}

/// An index drawn with probability proportional to `weights`.
pub fn draw(weights: &[f64], rng: &mut SplitMix64) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.next_open01() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hull_keeps_the_falling_lower_boundary() {
        // (compute, error): 0, 2, 4 are the lower boundary; 1 is above it; 3 costs more than 2
        // for a worse error (the rising part Petridish drops).
        let pts = [(1.0, 0.5), (2.0, 0.45), (3.0, 0.2), (4.0, 0.3), (5.0, 0.1)];
        assert_eq!(lower_hull(&pts), vec![0, 2, 4]);
        let rising = [(1.0, 0.3), (2.0, 0.1), (3.0, 0.2)];
        assert_eq!(lower_hull(&rising), vec![0, 1]);
        assert_eq!(lower_hull(&[(7.0, 0.4)]), vec![0]);
        assert!(lower_hull(&[]).is_empty());
    }

    #[test]
    fn band_is_relative_to_the_interpolated_hull() {
        let pts = [(1.0, 0.5), (3.0, 0.1), (2.0, 0.31), (2.0, 0.32)];
        let hull = lower_hull(&pts);
        assert_eq!(hull, vec![0, 1]);
        assert!((hull_at(&pts, &hull, 2.0) - 0.3).abs() < 1e-12);
        // 0.31 <= 1.05 * 0.3 = 0.315 < 0.32.
        assert_eq!(eps_band(&pts, &hull, 0.05), vec![0, 1, 2]);
    }

    #[test]
    fn sampling_prefers_cheap_and_unsampled_models() {
        let w = sampling_weights(&[0, 0, 3], &[10.0, 20.0, 10.0]);
        assert_eq!(w, vec![2.0, 1.5, 1.5]);
        let mut rng = SplitMix64::new(1);
        let mut hits = [0; 3];
        for _ in 0..6000 {
            hits[draw(&w, &mut rng)] += 1;
        }
        // Expected 2/5, 3/10, 3/10 of 6000.
        assert!((hits[0] as f64 - 2400.0).abs() < 150.0, "{hits:?}");
        assert!((hits[1] as f64 - 1800.0).abs() < 150.0, "{hits:?}");
    }
}
