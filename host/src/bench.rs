//! `archai bench ...`: commands that print numbers. Nothing here asserts timings.
use crate::params::ParamStore;
use crate::plugins::{PluginError, PluginRegistry};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// One row of the boundary benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BoundaryRow {
    pub op: String,
    pub shape: Vec<i64>,
    pub direct_ns: f64,
    pub plugin_ns: f64,
    pub overhead_ns: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn per_call_ns(iters: usize, f: &mut impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// Median per-call times (ns) of `direct` and `plugin` over `repeats` rounds of `iters` calls each,
/// after a warm-up of both. The two are timed in alternating order, round by round, so neither
/// gains from running second on a warmer cache or allocator.
fn time_pair(iters: usize, repeats: usize, mut direct: impl FnMut(), mut plugin: impl FnMut()) -> (f64, f64) {
    per_call_ns(iters.min(1000), &mut direct);
    per_call_ns(iters.min(1000), &mut plugin);
    let (mut d, mut p) = (Vec::new(), Vec::new());
    for round in 0..repeats {
        if round % 2 == 0 {
            d.push(per_call_ns(iters, &mut direct));
            p.push(per_call_ns(iters, &mut plugin));
        } else {
            p.push(per_call_ns(iters, &mut plugin));
            d.push(per_call_ns(iters, &mut direct));
        }
    }
    (median(d), median(p))
}

/// Per-call cost of calling an op through the plugin boundary vs the same libtorch call made
/// directly in the host, for `skip_connect` (pure crossing cost) and `max_pool_3x3`.
pub fn boundary(registry: &PluginRegistry, iters: usize, repeats: usize) -> Result<Vec<BoundaryRow>, PluginError> {
    let store = ParamStore::new(Device::Cpu);
    let mut rows = Vec::new();
    for shape in [vec![1i64, 1, 1, 1], vec![32, 16, 32, 32]] {
        let c = shape[1];
        let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
        let iters_here = if shape.iter().product::<i64>() > 1 { (iters / 100).max(10) } else { iters };
        let cfg = serde_json::json!({"c_in": c, "stride": 1});
        let skip = registry.create_op("skip_connect", &cfg, &store, &format!("bench.skip{c}"))?;
        let pool = registry.create_op("max_pool_3x3", &cfg, &store, &format!("bench.pool{c}"))?;
        let (direct, plugin) = time_pair(
            iters_here,
            repeats,
            || drop(x.shallow_clone()),
            || drop(skip.forward(&[&x], false).expect("skip_connect")),
        );
        rows.push(BoundaryRow {
            op: "skip_connect".into(),
            shape: shape.clone(),
            direct_ns: direct,
            plugin_ns: plugin,
            overhead_ns: plugin - direct,
        });
        let (direct, plugin) = time_pair(
            iters_here,
            repeats,
            || drop(x.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false)),
            || drop(pool.forward(&[&x], false).expect("max_pool_3x3")),
        );
        rows.push(BoundaryRow {
            op: "max_pool_3x3".into(),
            shape,
            direct_ns: direct,
            plugin_ns: plugin,
            overhead_ns: plugin - direct,
        });
    }
    Ok(rows)
}
