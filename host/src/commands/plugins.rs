//! `archai plugins`: every component of every plugin.
use std::path::PathBuf;

pub fn run(plugin_dirs: &[PathBuf]) -> anyhow::Result<()> {
    let reg = super::common::registry(plugin_dirs)?;
    println!("{:<28} {:<16} {:<20} {:<8} DESCRIPTION", "PLUGIN", "KIND", "NAME", "VERSION");
    for (plugin, c) in reg.components() {
        println!(
            "{:<28} {:<16} {:<20} {:<8} {}",
            plugin.file_name(),
            c.kind.as_str(),
            c.name,
            c.version,
            c.description
        );
    }
    for (path, reason) in &reg.skipped {
        eprintln!("skipped {}: {reason}", path.display());
    }
    Ok(())
}
