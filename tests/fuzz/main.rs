//! `fuzz [--seconds S] [--seed N] [--out DIR] [TARGET ...]`: fuzzes each target (all by default)
//! for S seconds (default 60) and prints one line of figures per target. Failing inputs are
//! written to DIR (default target/fuzz-findings) as `<target>-<case>.bin` with the finding beside
//! them; the input being run is kept in `<target>.current`, so a case that aborts the process is
//! not lost. Exits 1 when anything was found. `scripts/fuzz.sh` is the usual way in.
//!
//! `fuzz --replay FILE TARGET` runs one saved input through TARGET and prints what happened.

use archai_tests::{all_targets, fuzz, install_quiet_panic_hook, run_case, Budget, Outcome};
use std::path::PathBuf;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: archai_tests::CountingAlloc = archai_tests::CountingAlloc;

fn main() {
    let mut seconds = 60u64;
    let mut seed = 1u64;
    let mut out = PathBuf::from("target/fuzz-findings");
    let mut names = Vec::new();
    let mut replay = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |flag: &str| args.next().unwrap_or_else(|| die(&format!("{flag} needs a value")));
        match a.as_str() {
            "--seconds" => {
                seconds = value("--seconds").parse().unwrap_or_else(|_| die("--seconds takes a whole number"))
            }
            "--seed" => seed = value("--seed").parse().unwrap_or_else(|_| die("--seed takes a whole number")),
            "--out" => out = PathBuf::from(value("--out")),
            "--replay" => replay = Some(PathBuf::from(value("--replay"))),
            "-h" | "--help" => {
                println!("fuzz [--seconds S] [--seed N] [--out DIR] [TARGET ...]");
                return;
            }
            name => names.push(name.to_string()),
        }
    }
    let targets = all_targets();
    let known: Vec<&str> = targets.iter().map(|t| t.name).collect();
    if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
        die(&format!("no fuzz target named {bad}; the targets are {}", known.join(", ")));
    }
    if let Some(file) = replay {
        let [name] = names.as_slice() else { die("--replay FILE needs exactly one target name") };
        let target = targets.iter().find(|t| t.name == name).expect("checked above");
        let input = std::fs::read(&file).unwrap_or_else(|e| die(&format!("{}: {e}", file.display())));
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let (result, took, heap) = run_case(target, &input, scratch.path());
        let what = match result {
            Ok(Outcome::Accepted) => "accepted".to_string(),
            Ok(Outcome::Refused(m)) => format!("refused: {m}"),
            Ok(Outcome::Broken(m)) => format!("BROKEN: {m}"),
            Err(f) => format!("FAILED: {f:?}"),
        };
        println!("{what}\n({:.1} ms, heap grew {:.1} MiB)", took.as_secs_f64() * 1e3, heap as f64 / (1 << 20) as f64);
        return;
    }
    std::fs::create_dir_all(&out).unwrap_or_else(|e| die(&format!("{}: {e}", out.display())));
    install_quiet_panic_hook();
    println!(
        "{:<11} {:>9} {:>8} {:>9} {:>8} {:>10} {:>11} {:>8}",
        "target", "cases", "accepted", "refused", "errors", "slowest", "max heap", "findings"
    );
    let mut found = 0;
    for target in targets.iter().filter(|t| names.is_empty() || names.iter().any(|n| n == t.name)) {
        let current = out.join(format!("{}.current", target.name));
        let report = fuzz(target, Budget::Time(Duration::from_secs(seconds)), seed, |_, input| {
            let _ = std::fs::write(&current, input);
        });
        let _ = std::fs::remove_file(&current);
        println!(
            "{:<11} {:>9} {:>8} {:>9} {:>8} {:>8.1}ms {:>8.1}MiB {:>8}",
            target.name,
            report.cases,
            report.accepted,
            report.refused,
            report.distinct_errors,
            report.slowest.as_secs_f64() * 1e3,
            report.max_heap_growth as f64 / (1 << 20) as f64,
            report.failures.len()
        );
        for f in &report.failures {
            let stem = out.join(format!("{}-{}", target.name, f.case));
            let _ = std::fs::write(stem.with_extension("bin"), &f.input);
            let _ = std::fs::write(stem.with_extension("txt"), format!("{:?}\n", f.finding));
            eprintln!("  case {}: {:?} (input in {})", f.case, f.finding, stem.with_extension("bin").display());
        }
        found += report.failures.len();
    }
    if found > 0 {
        std::process::exit(1);
    }
}

fn die(message: &str) -> ! {
    eprintln!("fuzz: {message}");
    std::process::exit(2)
}
