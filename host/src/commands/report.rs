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
        println!(
            "{:<16} test top-1 {:.2} ± {:.2} % over {} run(s){}",
            e.name,
            100.0 * e.mean,
            100.0 * e.std,
            e.test_top1.len(),
            if e.failed > 0 { format!(" ({} unfinished)", e.failed) } else { String::new() }
        );
    }
    for v in &a.vs_baseline {
        println!("{}", v.verdict);
    }
    for w in &a.warnings {
        println!("warning: {w}");
    }
}
