//! The `archai` command line: parses and dispatches; each command lives in
//! `archai::commands::<name>`.
use archai::commands;
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
    /// Load plugin files and directories even when they are writable by group or others or
    /// belong to another user (refused by default: loading a plugin runs its code).
    #[arg(long = "allow-insecure-plugins", global = true)]
    allow_insecure_plugins: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every component of every plugin: file, kind, name, version, description.
    Plugins,
    Devices(commands::devices::Args),
    Run(commands::run::Args),
    Train(commands::train::Args),
    Launch(commands::launch::Args),
    Stats(commands::stats::Args),
    Config(commands::config::Args),
    Data(commands::data::Args),
    Search(commands::search::Args),
    /// (internal) Train one candidate of `archai search --jobs N`.
    #[command(hide = true)]
    SearchEval(commands::search::EvalArgs),
    Compare(commands::compare::Args),
    Report(commands::report::Args),
    Reproduce(commands::reproduce::Args),
    #[command(subcommand)]
    Bench(commands::bench::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_) | Command::Train(_) | Command::Reproduce(_) | Command::Search(_)) {
        // `run`, `train`, `reproduce` and `search` set up console + log.txt logging once the run
        // directory exists.
        let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).without_time().try_init();
    }
    if cli.allow_insecure_plugins {
        // Through the environment, so that the workers `launch`, `compare` and `search` start
        // inherit the choice. Set before any thread exists.
        std::env::set_var(archai::plugins::ALLOW_INSECURE_PLUGINS, "1");
    }
    let dirs = &cli.plugin_dirs;
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match &cli.command {
        Command::Plugins => done(commands::plugins::run(dirs)),
        Command::Devices(args) => done(commands::devices::run(dirs, args)),
        Command::Run(args) => done(commands::run::run(dirs, args)),
        Command::Train(args) => done(commands::train::run(dirs, args)),
        Command::Launch(args) => done(commands::launch::run(dirs, args)),
        Command::Stats(args) => done(commands::stats::run(dirs, args)),
        Command::Config(args) => done(commands::config::run(args)),
        Command::Data(args) => done(commands::data::run(dirs, args)),
        Command::Search(args) => done(commands::search::run(dirs, args)),
        Command::SearchEval(args) => done(commands::search::eval_worker(dirs, args)),
        Command::Compare(args) => done(commands::compare::run(dirs, args)),
        Command::Report(args) => done(commands::report::run(args)),
        Command::Reproduce(args) => commands::reproduce::run(dirs, args),
        Command::Bench(command) => done(commands::bench::run(dirs, command)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", archai::error_text::ErrorText(&e));
            if let Some(code) = archai::interrupt::exit_code() {
                return ExitCode::from(code);
            }
            // `reproduce` keeps 1 for "diverged"; its errors are 2, like diff(1).
            if matches!(cli.command, Command::Reproduce(_)) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
