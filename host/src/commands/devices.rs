//! `archai devices`: what this process sees of CUDA (libtorch's CUDA backend, runtime, driver and
//! cuDNN versions, each visible GPU) and which device `common.device: auto` picks here.
use std::path::PathBuf;

/// Show the CUDA backend, versions and GPUs this binary sees, and what `auto` picks.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object instead.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_plugin_dirs: &[PathBuf], args: &Args) -> anyhow::Result<()> {
    let env = crate::cuda::environment();
    let auto = crate::experiment::parse_device("auto")?;
    let auto_name = match auto {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_string(),
    };
    if args.json {
        let mut value = serde_json::to_value(&env)?;
        value["auto"] = serde_json::Value::String(auto_name);
        println!("{value}");
        return Ok(());
    }
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    println!("libtorch CUDA backend: {}", if env.libtorch_cuda_loaded { "loaded" } else { "not loaded" });
    println!("CUDA runtime: {}", or_none(&env.runtime_version));
    println!("CUDA driver: {}", or_none(&env.driver_version));
    println!("cuDNN: {}", or_none(&env.cudnn_version));
    if env.devices.is_empty() {
        println!("GPUs: none");
    }
    for d in &env.devices {
        println!(
            "cuda:{} {} ({:.1} GiB, compute capability {}, {} SMs)",
            d.index,
            d.name,
            d.total_memory_mib as f64 / 1024.0,
            d.compute_capability,
            d.multiprocessors
        );
    }
    println!("common.device: auto picks {auto_name}");
    Ok(())
}
