//! `archai config`: the resolved configuration, as config_used.yaml would record it.
use super::common::Overrides;
use std::path::{Path, PathBuf};

/// Print the resolved configuration (includes, _copy, --toy and --set applied, every default
/// written out: what config_used.yaml records); runs nothing. Takes experiments of `archai run`
/// and outer-loop searches of `archai search` (a top-level `search:`; their --toy file is
/// confs/search/toy.yaml). Plugin and dataset-adapter sections are printed as given: the
/// plugins check them when a run starts.
#[derive(clap::Args, Debug)]
pub struct Args {
    pub conf: PathBuf,
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Whether `conf` (with its includes) is an outer-loop search experiment.
fn is_outer_loop_search(conf: &Path) -> anyhow::Result<bool> {
    let plain = crate::config::load_tree(conf, &crate::config::LoadOptions::default())?;
    Ok(plain.tree.get("search").is_some())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let yaml = if is_outer_loop_search(&args.conf)? {
        super::search::load(&args.conf, &args.overrides)?.to_full_yaml()
    } else {
        args.overrides.load(&args.conf)?.1.to_full_yaml()
    };
    print!("{yaml}");
    Ok(())
}
