//! `archai config`: the resolved configuration, as config_used.yaml would record it.
use super::common::Overrides;
use std::path::PathBuf;

/// Print the resolved configuration (includes, _copy, --toy and --set applied, every default
/// written out: what config_used.yaml records); runs nothing.
#[derive(clap::Args, Debug)]
pub struct Args {
    pub conf: PathBuf,
    #[command(flatten)]
    pub overrides: Overrides,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (_, cfg) = args.overrides.load(&args.conf)?;
    print!("{}", cfg.to_full_yaml());
    Ok(())
}
