//! `archai stats`: parameters, MACs, activation memory and latency of a model description.
use anyhow::Context;
use std::path::PathBuf;

/// Parameters, MACs/FLOPs, activation memory and measured latency of a model description.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ModelDesc YAML.
    pub model: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Input size CxHxW (default: the description's input).
    #[arg(long, value_name = "CxHxW")]
    pub input: Option<String>,
    /// Timed forward passes (median reported).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// libtorch intra-op threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
    /// Device the latency is measured on: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print one JSON object (keys params, macs, flops, activation_bytes, latency_ms, ...).
    #[arg(long)]
    pub json: bool,
    /// List every weight's name and shape instead (the names trainer.param_groups matches),
    /// then the architecture parameters.
    #[arg(long)]
    pub param_names: bool,
}

pub fn run(plugin_dirs: &[PathBuf], args: &Args) -> anyhow::Result<()> {
    let Args { model, batch, input, runs, threads, device, json, param_names } = args;
    let device = super::common::device_option(device)?;
    if *threads > 0 {
        tch::set_num_threads(*threads);
    }
    let text = std::fs::read_to_string(model).with_context(|| format!("reading {}", model.display()))?;
    let mut desc = archai_model_desc::ModelDesc::from_yaml(&text, &model.display().to_string())?;
    if let Some(spec) = input {
        let dims: Vec<i64> = spec.split('x').filter_map(|d| d.parse().ok()).collect();
        let [c, h, w] = dims[..] else { anyhow::bail!("--input {spec}: expected CxHxW, e.g. 3x32x32") };
        if h != w {
            anyhow::bail!("--input {spec}: only square inputs are supported");
        }
        if c != desc.input.channels {
            anyhow::bail!("--input {spec}: the description's stem takes {} channels", desc.input.channels);
        }
        desc.input.size = h;
    }
    let reg = super::common::registry(plugin_dirs)?;
    let store = crate::params::ParamStore::new(device);
    let net = crate::model::Network::compile(&desc, &reg, &store)?;
    if *param_names {
        for (name, t) in store.named_weights() {
            println!("{name} {:?}", t.size());
        }
        for (name, t) in store.named_arch() {
            println!("{name} {:?} architecture", t.size());
        }
        return Ok(());
    }
    let s = crate::stats::model_stats(&desc, &reg, &net, &store, *batch, *runs, device)?;
    if *json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    println!(
        "{} (input {}x{}x{}, batch {}, {} threads, {})",
        s.name, s.input[0], s.input[1], s.input[2], s.batch, s.threads, s.device
    );
    println!("  params           {:>14}  (+{} architecture)", s.params, s.arch_params);
    if s.aux_params > 0 {
        println!("  aux head params  {:>14}  (training only, not counted above)", s.aux_params);
    }
    println!("  MACs / sample    {:>14}  (FLOPs {})", s.macs, s.flops);
    println!("  activations      {:>14}  bytes for the batch (fp32 op outputs)", s.activation_bytes);
    println!("  forward latency  {:>14.3}  ms, median of {}", s.latency_ms, s.latency_runs);
    println!("  {:<12} {:>12} {:>14} {:>16}", "part", "params", "MACs", "act bytes/sample");
    for p in &s.parts {
        println!("  {:<12} {:>12} {:>14} {:>16}", p.name, p.params, p.macs, p.activation_bytes_per_sample);
    }
    if !s.ops_without_macs.is_empty() {
        println!("  no MAC formula for: {} (counted as 0)", s.ops_without_macs.join(", "));
    }
    Ok(())
}
