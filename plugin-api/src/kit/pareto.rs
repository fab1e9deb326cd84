//! Pareto utilities, in one place for the host (fronts, hypervolume in reports) and searchers
//! (parent selection). Every function takes points as rows of objective values in which lower
//! is better: negate the higher-is-better objectives first ([`to_minimization`]).

/// Whether `a` dominates `b`: no worse in every objective and better in at least one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

/// Rows with each higher-is-better column negated, so that lower is better everywhere.
pub fn to_minimization(points: &[Vec<f64>], higher_is_better: &[bool]) -> Vec<Vec<f64>> {
    points.iter().map(|p| p.iter().zip(higher_is_better).map(|(v, h)| if *h { -v } else { *v }).collect()).collect()
}

/// Indices of the points no other point dominates (O(n² d)). Duplicates of a front point are
/// all on the front: equal points do not dominate each other.
pub fn frontier(points: &[Vec<f64>]) -> Vec<usize> {
    (0..points.len()).filter(|&i| !points.iter().any(|q| dominates(q, &points[i]))).collect()
}

/// Non-dominated sorting: the fronts in order, each a list of indices (front 0 is
/// [`frontier`]); every index appears in exactly one front.
pub fn non_dominated_sort(points: &[Vec<f64>]) -> Vec<Vec<usize>> {
    let n = points.len();
    // Deb et al.'s fast sort: who each point dominates, and by how many it is dominated.
    let mut dominated_by_count = vec![0usize; n];
    let mut dominates_list: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in 0..n {
            if i != j && dominates(&points[i], &points[j]) {
                dominates_list[i].push(j);
                dominated_by_count[j] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by_count[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominates_list[i] {
                dominated_by_count[j] -= 1;
                if dominated_by_count[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(std::mem::take(&mut current));
        current = next;
    }
    fronts
}

/// The hypervolume dominated by `points` and bounded by `reference` (lower is better; points
/// not strictly better than the reference in every objective add nothing). Exact, by slicing
/// along the first objective and recursing (fine for the few objectives and hundreds of points
/// of a search).
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let inside: Vec<Vec<f64>> =
        points.iter().filter(|p| p.iter().zip(reference).all(|(v, r)| v < r)).cloned().collect();
    hv(inside, reference)
}

fn hv(mut points: Vec<Vec<f64>>, reference: &[f64]) -> f64 {
    if points.is_empty() {
        return 0.0;
    }
    let d = reference.len();
    if d == 1 {
        let best = points.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
        return reference[0] - best;
    }
    // Sweep the first objective from the reference down: between two consecutive values, the
    // slab's cross-section is the (d-1)-volume of the points at or below the slab's lower bound.
    points.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let mut volume = 0.0;
    for i in 0..points.len() {
        let upper = if i + 1 < points.len() { points[i + 1][0] } else { reference[0] };
        let width = upper - points[i][0];
        if width <= 0.0 {
            continue;
        }
        let slice: Vec<Vec<f64>> = points[..=i].iter().map(|p| p[1..].to_vec()).collect();
        volume += width * hv(slice, &reference[1..]);
    }
    volume
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::seeded::SplitMix64;

    fn random_points(rng: &mut SplitMix64, n: usize, d: usize) -> Vec<Vec<f64>> {
        // Few distinct values, so ties and duplicates are frequent.
        (0..n).map(|_| (0..d).map(|_| (rng.next_u64() % 5) as f64).collect()).collect()
    }

    #[test]
    fn frontier_and_sorting_match_brute_force_with_ties_and_duplicates() {
        let mut rng = SplitMix64::new(3);
        for round in 0..200 {
            let d = 2 + round % 3;
            let pts = random_points(&mut rng, 1 + round % 25, d);
            let brute: Vec<usize> = (0..pts.len())
                .filter(|&i| {
                    (0..pts.len()).all(|j| {
                        let (p, q) = (&pts[i], &pts[j]);
                        !(q.iter().zip(p).all(|(a, b)| a <= b) && q != p)
                    })
                })
                .collect();
            assert_eq!(frontier(&pts), brute, "{pts:?}");
            let fronts = non_dominated_sort(&pts);
            assert_eq!(fronts[0], brute);
            // Every point in exactly one front; each front is the frontier of what the earlier
            // fronts leave.
            let mut left: Vec<usize> = (0..pts.len()).collect();
            for f in &fronts {
                let sub: Vec<Vec<f64>> = left.iter().map(|&i| pts[i].clone()).collect();
                let expect: Vec<usize> = frontier(&sub).into_iter().map(|k| left[k]).collect();
                let mut got = f.clone();
                got.sort_unstable();
                assert_eq!(got, expect);
                left.retain(|i| !f.contains(i));
            }
            assert!(left.is_empty());
        }
    }

    #[test]
    fn hypervolume_matches_hand_computed_cases() {
        // One point: the box to the reference.
        assert_eq!(hypervolume(&[vec![1.0, 2.0]], &[3.0, 3.0]), 2.0);
        // Two points in 2-D: union of [1,4]x[3,4] and [2,4]x[1,4] = 3 + 6 = 9 - overlap 2 = 7.
        assert_eq!(hypervolume(&[vec![1.0, 3.0], vec![2.0, 1.0]], &[4.0, 4.0]), 7.0);
        // A dominated point and a duplicate change nothing.
        let pts = [vec![1.0, 3.0], vec![2.0, 1.0], vec![3.0, 3.5], vec![2.0, 1.0]];
        assert_eq!(hypervolume(&pts, &[4.0, 4.0]), 7.0);
        // Points beyond the reference add nothing.
        assert_eq!(hypervolume(&[vec![5.0, 0.0]], &[4.0, 4.0]), 0.0);
        // 3-D: two unit-offset boxes [0,2]^3 and [1,3]x[1,3]x[-1,1] within reference (3,3,3):
        // box A = 3*3*3 from (0,0,0) = 27; box B from (1,1,-1) to (3,3,3) = 2*2*4 = 16;
        // overlap from (1,1,0) to (3,3,3) = 2*2*3 = 12; union = 31.
        let v = hypervolume(&[vec![0.0, 0.0, 0.0], vec![1.0, 1.0, -1.0]], &[3.0, 3.0, 3.0]);
        assert!((v - 31.0).abs() < 1e-12, "{v}");
    }

    #[test]
    fn higher_is_better_columns_are_negated() {
        let m = to_minimization(&[vec![0.9, 100.0]], &[true, false]);
        assert_eq!(m, vec![vec![-0.9, 100.0]]);
        assert!(dominates(&[1.0, 1.0], &[1.0, 2.0]) && !dominates(&[1.0, 1.0], &[1.0, 1.0]));
    }
}
