//! Memory across the plugin boundary. Alone in its own test binary because it reads the whole
//! process's RSS: tests running beside it (loading plugins, training) would move that number.
mod common;

use archai::params::ParamStore;
use archai::plugins::PluginRegistry;
use archai_plugin_api::kit::seeded;
use common::*;
use tch::Kind;

#[test]
fn ten_thousand_boundary_calls_keep_memory_flat() {
    let reg = PluginRegistry::scan(&[plugin_dir()]).expect("workspace plugins load");
    let store = ParamStore::new(tch::Device::Cpu);
    let op = reg.create_op("dil_conv_3x3", &serde_json::json!({"c_in": 3}), &store, "leak").unwrap();
    let x = seeded::normal(&[4, 3, 16, 16], 0);
    let step = || {
        let y = op.forward(&[&x], true).unwrap();
        y.sum(Kind::Float).backward();
    };
    for _ in 0..200 {
        step();
    }
    let before = archai::rss_bytes().unwrap();
    for _ in 0..10_000 {
        step();
    }
    let grown = archai::rss_bytes().unwrap().saturating_sub(before);
    assert!(grown < 20 * 1024 * 1024, "RSS grew by {} MB over 10,000 calls", grown / (1024 * 1024));
}
