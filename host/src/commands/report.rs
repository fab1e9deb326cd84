//! `archai report`: report.md, report.html and summary.csv from runs.
use std::path::PathBuf;

/// Aggregate runs (a comparison directory, run directories, or directories holding runs) into
/// report.md, a self-contained report.html and summary.csv.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Comparison directories (from `archai compare`), run directories, or directories whose
    /// subdirectories are runs.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where to write the report (default: the first directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Experiment to compare the others with (default: the comparison's `baseline`).
    #[arg(long)]
    pub baseline: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| args.dirs[0].clone());
    let a = crate::report::write_report(&args.dirs, &out, args.baseline.clone())?;
    print_summary(&a);
    println!("report: {}", out.join("report.html").display());
    Ok(())
}

/// The per-experiment lines, verdicts and warnings on the console.
pub fn print_summary(a: &crate::report::Analysis) {
    for e in &a.experiments {
        let accuracy = if e.test_top1.is_empty() {
            "test top-1 -".to_string()
        } else {
            format!("test top-1 {:.2} ± {:.2} %", 100.0 * e.mean, 100.0 * e.std)
        };
        let mut left_out = Vec::new();
        if e.failed > 0 {
            left_out.push(format!("{} unfinished", e.failed));
        }
        if e.untested > 0 {
            left_out.push(format!("{} without eval", e.untested));
        }
        println!(
            "{:<16} {accuracy} over {} run(s){}",
            e.name,
            e.test_top1.len(),
            if left_out.is_empty() { String::new() } else { format!(" ({})", left_out.join(", ")) }
        );
    }
    for v in &a.vs_baseline {
        println!("{}", v.verdict);
    }
    for w in &a.warnings {
        println!("warning: {w}");
    }
}
