use anyhow::Context;
use archai::plugins::{default_plugin_dirs, PluginRegistry};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// archai: neural architecture search on libtorch, with stable-ABI plugins.
#[derive(Parser)]
#[command(name = "archai", version, about)]
struct Cli {
    /// Directory to load plugins from (repeatable). Default: $ARCHAI_PLUGIN_DIR, else
    /// target/plugins in the repository, else plugins/ beside the binary.
    #[arg(long = "plugin-dir", global = true)]
    plugin_dirs: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every component of every plugin: file, kind, name, version, description.
    Plugins,
    /// Benchmarks that print numbers.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Per-call cost of crossing the plugin boundary vs calling the op directly.
    Boundary {
        /// Calls per timing round for the 1-element input (the large input uses 1/100 of it).
        #[arg(long, default_value_t = 20000)]
        iters: usize,
        /// Timing rounds; the median is reported.
        #[arg(long, default_value_t = 7)]
        repeats: usize,
        /// libtorch intra-op threads (tiny ops jitter with more than one).
        #[arg(long, default_value_t = 1)]
        threads: i32,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn registry(cli: &Cli) -> anyhow::Result<PluginRegistry> {
    let dirs = if cli.plugin_dirs.is_empty() { default_plugin_dirs() } else { cli.plugin_dirs.clone() };
    PluginRegistry::scan(&dirs).context("loading plugins")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Plugins => {
            let reg = registry(&cli)?;
            println!("{:<28} {:<16} {:<20} {:<8} DESCRIPTION", "PLUGIN", "KIND", "NAME", "VERSION");
            for (plugin, c) in reg.components() {
                println!("{:<28} {:<16} {:<20} {:<8} {}", plugin.file_name(), c.kind.as_str(), c.name, c.version, c.description);
            }
            for (path, reason) in &reg.skipped {
                eprintln!("skipped {}: {reason}", path.display());
            }
        }
        Command::Bench(BenchCommand::Boundary { iters, repeats, threads, json }) => {
            tch::set_num_threads(*threads);
            let reg = registry(&cli)?;
            let rows = archai::bench::boundary(&reg, *iters, *repeats)?;
            if *json {
                println!("{}", serde_json::json!({"threads": threads, "rows": rows}));
            } else {
                println!("boundary cost, libtorch threads = {threads}, median of {repeats} rounds");
                println!("{:<14} {:<16} {:>12} {:>12} {:>12}", "op", "input", "direct ns", "plugin ns", "overhead ns");
                for r in rows {
                    let shape = r.shape.iter().map(i64::to_string).collect::<Vec<_>>().join("x");
                    println!("{:<14} {:<16} {:>12.0} {:>12.0} {:>12.0}", r.op, shape, r.direct_ns, r.plugin_ns, r.overhead_ns);
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).without_time().init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
