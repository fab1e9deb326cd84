//! Shared helpers of the integration tests: where the repo, the plugins and the binary are, and
//! how to build the out-of-workspace plugin crates the tests load.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The gathered plugins of the workspace build (scripts/setup.sh or scripts/test.sh make them).
pub fn plugin_dir() -> PathBuf {
    let dir = repo_root().join("target/plugins");
    assert!(
        dir.join("libops_darts.so").is_file(),
        "{} has no plugins: run scripts/test.sh (or scripts/setup.sh) so the plugins are built and gathered",
        dir.display()
    );
    dir
}

/// The `archai` binary the tests run. It belongs to another package (`host`), so cargo does not
/// build it for this one: the first call builds it (`cargo build -p archai --bin archai`, a no-op
/// when it is up to date) with this test binary's profile, so a test never runs a stale binary.
/// `ARCHAI_BIN` names a prebuilt one instead (the GPU bundle, which carries no cargo). The binary
/// is looked for beside this test's profile folder, so builds with `--target TRIPLE` or a custom
/// profile need `ARCHAI_BIN` too.
pub fn archai_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("ARCHAI_BIN") {
            return PathBuf::from(bin);
        }
        // A test binary lives in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
        let release = profile_dir.file_name().is_some_and(|p| p == "release");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.current_dir(repo_root()).args(["build", "--quiet", "-p", "archai", "--bin", "archai"]);
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo to build the archai binary");
        assert!(status.success(), "building the archai binary failed (see cargo's output above)");
        let bin = profile_dir.join("archai");
        assert!(bin.is_file(), "{} was not produced", bin.display());
        bin
    })
    .clone()
}

/// Builds a standalone plugin crate in release mode, sharing the repo's target dir so libtorch's
/// wrapper is not rebuilt, and returns the path of its library.
pub fn build_plugin_crate(manifest_dir: &Path) -> PathBuf {
    let manifest = manifest_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read fixture manifest");
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = \"").and_then(|r| r.strip_suffix('"')))
        .expect("package name in fixture manifest")
        .to_string();
    let target = repo_root().join("target");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building {} failed", manifest.display());
    let lib = target.join("release").join(format!("lib{}.so", name.replace('-', "_")));
    assert!(lib.is_file(), "{} was not produced", lib.display());
    lib
}

/// A fresh plugin directory holding copies of `libs`.
pub fn plugin_dir_with(libs: &[&Path]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for lib in libs {
        std::fs::copy(lib, dir.path().join(lib.file_name().unwrap())).expect("copy plugin");
    }
    dir
}

/// Copies a directory tree (sources of fixture crates, run directories), skipping `target/`.
#[allow(unused_imports)] // not every test file copies trees
pub use archai_tests::copy_tree;

/// Deterministic weights that do not depend on libtorch's global RNG (tests run in parallel).
pub fn set_fixed_init(store: &archai::params::ParamStore) {
    let _guard = tch::no_grad_guard();
    for (_, mut w) in store.named_weights() {
        let n = w.numel() as i64;
        let values = tch::Tensor::arange(n, (tch::Kind::Float, tch::Device::Cpu)).g_mul_scalar(0.1).g_sub_scalar(0.2);
        w.copy_(&values.view(w.size().as_slice()));
    }
}

/// Runs `archai run CONF --toy --set SETS...` twice under `tmp`: once uninterrupted ("whole"),
/// once killed with SIGKILL as soon as `checkpoint` (relative to the run dir) appears and then
/// continued with `--resume` ("cut"). `unfinished(run_dir)` must hold at the moment of the kill.
pub fn whole_and_resumed(
    tmp: &std::path::Path,
    conf: &str,
    sets: &[&str],
    checkpoint: &str,
    unfinished: impl Fn(&std::path::Path) -> bool,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (whole, cut, _) = whole_and_resumed_after(tmp, conf, sets, checkpoint, unfinished, |_| {});
    (whole, cut)
}

/// [`whole_and_resumed`] with `between(run_dir)` called after the kill, before the resume (to
/// damage a file, say); also returns the resume's stderr.
pub fn whole_and_resumed_after(
    tmp: &std::path::Path,
    conf: &str,
    sets: &[&str],
    checkpoint: &str,
    unfinished: impl Fn(&std::path::Path) -> bool,
    between: impl Fn(&std::path::Path),
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let plugins = plugin_dir();
    let args = |out: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> =
            ["--plugin-dir", plugins.to_str().unwrap(), "run", conf, "--toy"].iter().map(|s| s.to_string()).collect();
        for set in sets {
            v.extend(["--set".to_string(), set.to_string()]);
        }
        v.extend(["--out".to_string(), out.display().to_string()]);
        v
    };
    let whole = tmp.join("whole");
    let out = Command::new(archai_bin()).current_dir(repo_root()).args(args(&whole)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let cut = tmp.join("cut");
    let mut child = Command::new(archai_bin())
        .current_dir(repo_root())
        .args(args(&cut))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !cut.join(checkpoint).is_file() {
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(unfinished(&cut), "the run finished before it was killed");
    between(&cut);

    let mut resume = args(&cut);
    resume.push("--resume".into());
    let out = Command::new(archai_bin()).current_dir(repo_root()).args(&resume).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    (whole, cut, stderr)
}

/// A YAML file as an untyped tree. A log.yaml is also parsed with its typed schema
/// (`archai_runlog::RunRecord`, unknown keys refused), so every test that reads one checks that
/// the writer and the schema agree.
pub fn yaml(path: &std::path::Path) -> yaml_serde::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.file_name().is_some_and(|f| f == "log.yaml") {
        if let Err(e) = archai_runlog::RunRecord::from_yaml(&text, path) {
            panic!("{} does not follow the log.yaml schema: {e}", path.display());
        }
    }
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `archai --plugin-dir <workspace plugins> ARGS...`, run from the repository root.
pub fn archai(args: &[&str]) -> std::process::Output {
    Command::new(archai_bin())
        .current_dir(repo_root())
        .arg("--plugin-dir")
        .arg(plugin_dir())
        .args(args)
        .output()
        .expect("run archai")
}

/// The two ranks of a job started the way torchrun or a batch scheduler starts them, without
/// `archai launch` (so no launcher stops one when the other dies): `archai --plugin-dir
/// <workspace plugins> ARGS...` with RANK, WORLD_SIZE 2 and a loopback rendezvous on a free port.
/// Output is piped.
pub fn ranks_without_launcher(args: &[&str]) -> [std::process::Child; 2] {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    ["0", "1"].map(|rank| {
        Command::new(archai_bin())
            .current_dir(repo_root())
            .arg("--plugin-dir")
            .arg(plugin_dir())
            .args(args)
            .envs([("RANK", rank), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", &port)])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    })
}

/// stdout then stderr of a finished command, as text.
pub fn output_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Fails (never skips) when the real dataset is not installed.
pub fn require_fashion_mnist() {
    assert!(
        Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
        "Fashion-MNIST is missing: scripts/setup.sh installs the Debian package dataset-fashion-mnist"
    );
}

/// Runs Debian's headless Chromium with a throw-away profile (what users see of HTML and SVG).
pub fn headless(args: &[&str]) -> std::process::Output {
    let chromium = PathBuf::from("/usr/bin/chromium");
    assert!(chromium.is_file(), "chromium is missing: scripts/setup.sh installs the Debian package `chromium`");
    let profile = tempfile::tempdir().unwrap();
    Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("run chromium")
}

/// Fails naming the first difference when two runs did not train identically: `archai
/// reproduce --against`'s comparison (status, dataset, every phase's epochs and summary with the
/// weights' hash, the searched architecture; timing figures aside).
pub fn assert_same_training(a: &Path, b: &Path) {
    match archai::commands::reproduce::compare_runs(a, b).expect("both runs have a readable log.yaml") {
        Ok(compared) => assert!(compared > 0, "{} and {} have no figures to compare", a.display(), b.display()),
        Err(d) => panic!("{} and {} trained differently: {d}", a.display(), b.display()),
    }
}

/// A browser's picture of a page or an image, decoded to RGB pixels row by row.
pub struct Screenshot {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<[u8; 3]>,
}

impl Screenshot {
    /// Headless Chromium's screenshot of `file` in a window of `size` ("W,H").
    pub fn of(file: &Path, size: &str) -> Screenshot {
        let dir = tempfile::tempdir().unwrap();
        let shot = dir.path().join("shot.png");
        let o = headless(&[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={size}"),
            &format!("file://{}", file.display()),
        ]);
        assert!(shot.is_file(), "no screenshot of {}: {}", file.display(), output_text(&o));
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let px = info.line_size / info.width as usize;
        let rgb = buf[..info.buffer_size()].chunks(px).map(|p| [p[0], p[1], p[2]]).collect();
        Screenshot { width: info.width as usize, height: info.height as usize, rgb }
    }

    /// The pixels of rows `rows`.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> &[[u8; 3]] {
        &self.rgb[rows.start * self.width..rows.end.min(self.height) * self.width]
    }
}
