//! Finding, checking and indexing plugin libraries; building their components by name.
use crate::params::{ParamStore, ScopedParamHost};
use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::{ROption, RResult, RStr};
use archai_plugin_api::{
    param_host_box, AlgorithmBox, ArchTraining, ComponentInfo, ComponentKind, DatasetAdapterBox, FinalizerBox, OpBox,
    PluginInfo, PluginModuleRef, TensorOwned, TensorRef, API_VERSION, LIBTORCH_VERSION,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tch::Tensor;

/// Everything that can go wrong between the host and a plugin, each a message that tells the
/// user which file is at fault and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin directory {0} does not exist; pass --plugin-dir DIR or set ARCHAI_PLUGIN_DIR (scripts/setup.sh gathers the plugins in target/plugins)")]
    MissingDir(PathBuf),
    #[error("--plugin-dir {0} is a file; it takes a directory that holds plugin libraries (.so)")]
    NotADir(PathBuf),
    #[error("plugin directory {dir} holds no plugin library (.so){hint}")]
    EmptyDir { dir: PathBuf, hint: String },
    #[error(
        "refusing to load plugins from {path}: {reason}, so someone else could change code that archai runs; \
         {fix}, or pass --allow-insecure-plugins (ARCHAI_ALLOW_INSECURE_PLUGINS=1) to load it anyway"
    )]
    Insecure { path: PathBuf, reason: String, fix: String },
    #[error("{path}: built against archai-plugin-api {found}, this archai needs a version compatible with {expected}; rebuild the plugin against archai-plugin-api {expected}")]
    IncompatibleApi { path: PathBuf, found: String, expected: String },
    #[error("{path}: the plugin API types in this library have a different layout than this archai's ({summary}); rebuild the plugin against archai-plugin-api {expected}")]
    AbiLayout { path: PathBuf, summary: String, expected: String },
    #[error("{path}: built against libtorch {found}, this archai uses libtorch {expected}; rebuild the plugin against libtorch {expected} (tensors cannot cross between different libtorch builds)")]
    LibtorchMismatch { path: PathBuf, found: String, expected: String },
    #[error("{path}: cannot use this plugin: {reason}")]
    Broken { path: PathBuf, reason: String },
    #[error("{kind} `{name}` is registered by two plugins: {first} and {second}; remove one of them from the plugin directory")]
    Duplicate { kind: ComponentKind, name: String, first: PathBuf, second: PathBuf },
    #[error("refused {} plugin(s):\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Refused(Vec<PluginError>),
    #[error("no {kind} named `{name}`{}; available: {}", suggest(.close), .available.join(", "))]
    Unknown { kind: ComponentKind, name: String, close: Vec<String>, available: Vec<String> },
    #[error("{plugin}: {kind} `{name}`: {message}")]
    Call { plugin: String, kind: ComponentKind, name: String, message: String },
}

fn suggest(close: &[String]) -> String {
    if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" or "))
    }
}

/// One loaded and checked plugin library.
pub struct LoadedPlugin {
    pub path: PathBuf,
    pub info: PluginInfo,
    module: PluginModuleRef,
}

impl LoadedPlugin {
    /// The file name, as used in messages.
    pub fn file_name(&self) -> String {
        self.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// A component as indexed by the registry.
#[derive(Clone, Debug)]
pub struct RegisteredComponent {
    pub plugin: usize,
    pub info: ComponentInfo,
}

/// All plugins found in the plugin directories, indexed by (kind, name).
pub struct PluginRegistry {
    plugins: Vec<LoadedPlugin>,
    components: BTreeMap<(ComponentKind, String), RegisteredComponent>,
    /// Shared libraries that are not archai plugins, with the reason; skipped, not fatal.
    pub skipped: Vec<(PathBuf, String)>,
}

/// The plugin directories to use when none is given: `$ARCHAI_PLUGIN_DIR`, else `target/plugins`
/// when run from the repository (the current directory's, or the one holding this binary), else
/// `plugins/` beside the binary.
pub fn default_plugin_dirs() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("ARCHAI_PLUGIN_DIR") {
        return std::env::split_paths(&dir).collect();
    }
    let cwd_repo = PathBuf::from("target/plugins");
    if cwd_repo.is_dir() {
        return vec![cwd_repo];
    }
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        // target/release/archai or target/release/deps/<test>
        for up in [exe_dir.parent(), exe_dir.parent().and_then(Path::parent)].into_iter().flatten() {
            if up.file_name().is_some_and(|n| n == "target") && up.join("plugins").is_dir() {
                return vec![up.join("plugins")];
            }
        }
        return vec![exe_dir.join("plugins")];
    }
    vec![PathBuf::from("plugins")]
}

fn is_shared_library(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("so" | "dylib" | "dll"))
}

/// Shortens abi_stable's layout report (hundreds of lines) to its first few meaningful lines.
fn summarize_layout_error(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let interesting: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("Error") || l.contains("expected") || l.contains("found") || l.contains("mismatch"))
        .take(3)
        .collect();
    let pick = if interesting.is_empty() { lines.into_iter().take(3).collect() } else { interesting };
    let joined = pick.join("; ");
    if joined.len() > 300 {
        format!("{}...", &joined[..300])
    } else {
        joined
    }
}

enum Loaded {
    Plugin(LoadedPlugin),
    NotAPlugin(String),
}

fn load_one(path: &Path) -> Result<Loaded, PluginError> {
    match crate::elf::check_file(path) {
        Ok(crate::elf::ElfCheck::NotElf) => return Ok(Loaded::NotAPlugin("not an ELF shared library".into())),
        Ok(crate::elf::ElfCheck::Truncated { needed, len }) => {
            return Err(PluginError::Broken {
                path: path.into(),
                reason: format!(
                    "the file is cut short ({len} bytes, its headers describe {needed}); copy or build it again \
                     (loading it would crash the process)"
                ),
            })
        }
        Ok(crate::elf::ElfCheck::Complete) => {}
        Err(e) => return Err(PluginError::Broken { path: path.into(), reason: format!("cannot read it: {e}") }),
    }
    let header = match lib_header_from_path(path) {
        Ok(h) => h,
        Err(LibraryError::OpenError { err, .. }) => return Ok(Loaded::NotAPlugin(format!("not loadable: {err}"))),
        Err(LibraryError::GetSymbolError { .. }) => {
            return Ok(Loaded::NotAPlugin("no archai root module (not an archai plugin)".into()))
        }
        Err(e) => return Err(PluginError::Broken { path: path.into(), reason: e.to_string() }),
    };
    let module = match header.init_root_module::<PluginModuleRef>() {
        Ok(m) => m,
        Err(LibraryError::IncompatibleVersionNumber { actual_version, expected_version, .. }) => {
            return Err(PluginError::IncompatibleApi {
                path: path.into(),
                found: actual_version.to_string(),
                expected: expected_version.to_string(),
            })
        }
        Err(LibraryError::AbiInstability(e)) => {
            return Err(PluginError::AbiLayout {
                path: path.into(),
                summary: summarize_layout_error(&e.to_string()),
                expected: API_VERSION.into(),
            })
        }
        Err(e) => {
            return Err(PluginError::Broken { path: path.into(), reason: summarize_layout_error(&e.to_string()) })
        }
    };
    let info = (module.info())();
    if info.libtorch_version.as_str() != LIBTORCH_VERSION {
        return Err(PluginError::LibtorchMismatch {
            path: path.into(),
            found: info.libtorch_version.to_string(),
            expected: LIBTORCH_VERSION.into(),
        });
    }
    Ok(Loaded::Plugin(LoadedPlugin { path: path.into(), info, module }))
}

/// Whether the user chose to load plugins whatever their permissions
/// (`--allow-insecure-plugins`, which sets ARCHAI_ALLOW_INSECURE_PLUGINS=1 for the process and
/// the workers it starts).
pub fn insecure_plugins_allowed() -> bool {
    std::env::var_os(ALLOW_INSECURE_PLUGINS).is_some_and(|v| v == "1")
}

/// The variable behind `--allow-insecure-plugins`.
pub const ALLOW_INSECURE_PLUGINS: &str = "ARCHAI_ALLOW_INSECURE_PLUGINS";

/// Loading a library runs its code, so, like OpenSSH's StrictModes, a plugin file or directory
/// must belong to the user running archai (or root) and not be writable by group or others.
fn check_trusted(path: &Path) -> Result<(), PluginError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|_| PluginError::MissingDir(path.to_path_buf()))?;
    let mode = meta.mode() & 0o7777;
    let insecure = |reason: String, fix: String| PluginError::Insecure { path: path.to_path_buf(), reason, fix };
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(insecure(
            format!("it is writable by {who} (mode {mode:o})"),
            format!("run `chmod go-w {}`", path.display()),
        ));
    }
    // SAFETY: geteuid cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(insecure(
            format!("it belongs to user id {}, not to the user running archai ({me}) or root", meta.uid()),
            format!("copy it into a directory of your own or `chown` it (`ls -ln {}` shows the owner)", path.display()),
        ));
    }
    Ok(())
}

impl PluginRegistry {
    /// Loads every shared library in `dirs`. Libraries that are not plugins are skipped (listed in
    /// `skipped`); incompatible plugins and duplicate registrations are refused together, in one
    /// error with a line per file.
    pub fn scan(dirs: &[PathBuf]) -> Result<Self, PluginError> {
        let mut files = Vec::new();
        let mut seen = Vec::new();
        for dir in dirs {
            if dir.is_file() {
                return Err(PluginError::NotADir(dir.clone()));
            }
            // The same directory named twice (or through a link) is scanned once, so its plugins
            // are not reported as registered twice by themselves.
            let canonical = std::fs::canonicalize(dir).map_err(|_| PluginError::MissingDir(dir.clone()))?;
            if seen.contains(&canonical) {
                continue;
            }
            seen.push(canonical);
            let entries = std::fs::read_dir(dir).map_err(|_| PluginError::MissingDir(dir.clone()))?;
            let mut in_dir: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_shared_library(p))
                .collect();
            if in_dir.is_empty() {
                let sources = std::fs::read_dir(dir)
                    .map(|entries| entries.filter_map(|e| e.ok()).any(|e| e.path().join("Cargo.toml").is_file()))
                    .unwrap_or(false);
                let hint = if sources {
                    ": it holds plugin crates' sources; run scripts/setup.sh, which builds them and copies the \
                     libraries here and into target/plugins/"
                } else {
                    "; build the plugin crates (cargo build --release) and copy their lib*.so files here"
                };
                return Err(PluginError::EmptyDir { dir: dir.clone(), hint: hint.into() });
            }
            in_dir.sort();
            if !insecure_plugins_allowed() {
                check_trusted(dir)?;
                for file in &in_dir {
                    check_trusted(file)?;
                }
            }
            files.extend(in_dir);
        }
        let mut registry = Self { plugins: Vec::new(), components: BTreeMap::new(), skipped: Vec::new() };
        let mut refused = Vec::new();
        for path in files {
            match load_one(&path) {
                Ok(Loaded::Plugin(p)) => registry.plugins.push(p),
                Ok(Loaded::NotAPlugin(reason)) => {
                    tracing::warn!("skipping {}: {reason}", path.display());
                    registry.skipped.push((path, reason));
                }
                Err(e) => refused.push(e),
            }
        }
        for (index, plugin) in registry.plugins.iter().enumerate() {
            for info in (plugin.module.components())() {
                let key = (info.kind, info.name.to_string());
                if let Some(first) = registry.components.get(&key) {
                    refused.push(PluginError::Duplicate {
                        kind: info.kind,
                        name: key.1.clone(),
                        first: registry.plugins[first.plugin].path.clone(),
                        second: plugin.path.clone(),
                    });
                    continue;
                }
                registry.components.insert(key, RegisteredComponent { plugin: index, info });
            }
        }
        if refused.is_empty() {
            Ok(registry)
        } else {
            Err(PluginError::Refused(refused))
        }
    }

    pub fn plugins(&self) -> &[LoadedPlugin] {
        &self.plugins
    }

    /// Every component, sorted by kind then name.
    pub fn components(&self) -> impl Iterator<Item = (&LoadedPlugin, &ComponentInfo)> {
        self.components.values().map(|c| (&self.plugins[c.plugin], &c.info))
    }

    /// Names of the components of one kind.
    pub fn names(&self, kind: ComponentKind) -> Vec<String> {
        self.components.keys().filter(|(k, _)| *k == kind).map(|(_, n)| n.clone()).collect()
    }

    /// Finds a component, or an error listing the closest names.
    pub fn find(&self, kind: ComponentKind, name: &str) -> Result<(&LoadedPlugin, &ComponentInfo), PluginError> {
        match self.components.get(&(kind, name.to_string())) {
            Some(c) => Ok((&self.plugins[c.plugin], &c.info)),
            None => {
                let available = self.names(kind);
                let mut scored: Vec<(f64, &String)> =
                    available.iter().map(|n| (strsim::normalized_damerau_levenshtein(name, n), n)).collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                let close = scored.iter().filter(|(s, _)| *s >= 0.5).take(3).map(|(_, n)| (*n).clone()).collect();
                Err(PluginError::Unknown { kind, name: name.into(), close, available })
            }
        }
    }

    /// Builds an op. Its parameters are created in `store` under `scope` (e.g. `cells.0.edges.3`).
    pub fn create_op(
        &self,
        name: &str,
        config: &serde_json::Value,
        store: &ParamStore,
        scope: &str,
    ) -> Result<PluginOp, PluginError> {
        let (plugin, _) = self.find(ComponentKind::Op, name)?;
        let mut host = param_host_box(ScopedParamHost::new(store, scope).with_ops(self, None));
        let json = config.to_string();
        let op = plugin_result(
            (plugin.module.create_op())(RStr::from(name), RStr::from(json.as_str()), &mut host),
            &plugin.file_name(),
            ComponentKind::Op,
            name,
        )?;
        Ok(PluginOp { op, plugin: plugin.file_name().into(), name: name.into() })
    }

    /// Builds the mixer of a mixed edge. `config` is `{candidates, candidate_params, params}`;
    /// the candidate ops it builds through the host are observed by `taps`.
    pub fn create_mixer(
        &self,
        name: &str,
        config: &serde_json::Value,
        store: &ParamStore,
        scope: &str,
        taps: &Arc<CandidateTaps>,
    ) -> Result<PluginOp, PluginError> {
        let (plugin, _) = self.find(ComponentKind::Mixer, name)?;
        let mut host = param_host_box(ScopedParamHost::new(store, scope).with_ops(self, Some(taps.clone())));
        let json = config.to_string();
        let op = plugin_result(
            (plugin.module.create_mixer())(RStr::from(name), RStr::from(json.as_str()), &mut host),
            &plugin.file_name(),
            ComponentKind::Mixer,
            name,
        )?;
        Ok(PluginOp { op, plugin: plugin.file_name().into(), name: name.into() })
    }

    /// MACs per sample and output shape `[C, H, W]` of op `name` on a `[C, H, W]` input, from the
    /// op's registration; `None` when it registered no cost formula.
    pub fn op_cost(
        &self,
        name: &str,
        config: &serde_json::Value,
        input: [i64; 3],
    ) -> Result<Option<(i64, [i64; 3])>, PluginError> {
        let (plugin, _) = self.find(ComponentKind::Op, name)?;
        let json = config.to_string();
        let cost = plugin_result(
            (plugin.module.op_cost())(RStr::from(name), RStr::from(json.as_str()), input.as_slice().into()),
            &plugin.file_name(),
            ComponentKind::Op,
            name,
        )?;
        match cost.into_option() {
            None => Ok(None),
            Some(c) => match c.output.as_slice() {
                [a, b, d] => Ok(Some((c.macs, [*a, *b, *d]))),
                other => Err(PluginError::Call {
                    plugin: plugin.file_name(),
                    kind: ComponentKind::Op,
                    name: name.into(),
                    message: format!("cost formula returned output shape {other:?}, expected [C, H, W]"),
                }),
            },
        }
    }

    /// Builds an algorithm from its config section.
    pub fn create_algorithm(&self, name: &str, config: &serde_json::Value) -> Result<PluginAlgorithm, PluginError> {
        let (plugin, _) = self.find(ComponentKind::Algorithm, name)?;
        let json = config.to_string();
        let inner = plugin_result(
            (plugin.module.create_algorithm())(RStr::from(name), RStr::from(json.as_str())),
            &plugin.file_name(),
            ComponentKind::Algorithm,
            name,
        )?;
        Ok(PluginAlgorithm {
            inner,
            plugin: plugin.file_name(),
            name: name.into(),
            arch_training: ArchTraining::Bilevel,
        })
    }

    /// Builds a finalizer from its config section.
    pub fn create_finalizer(&self, name: &str, config: &serde_json::Value) -> Result<PluginFinalizer, PluginError> {
        let (plugin, _) = self.find(ComponentKind::Finalizer, name)?;
        let json = config.to_string();
        let inner = plugin_result(
            (plugin.module.create_finalizer())(RStr::from(name), RStr::from(json.as_str())),
            &plugin.file_name(),
            ComponentKind::Finalizer,
            name,
        )?;
        Ok(PluginFinalizer { inner, plugin: plugin.file_name(), name: name.into() })
    }

    /// Builds a discrete search space from its config section.
    pub fn create_search_space(&self, name: &str, config: &serde_json::Value) -> Result<PluginSpace, PluginError> {
        let (plugin, _) = self.find(ComponentKind::SearchSpace, name)?;
        let json = config.to_string();
        let inner = plugin_result(
            (plugin.module.create_search_space())(RStr::from(name), RStr::from(json.as_str())),
            &plugin.file_name(),
            ComponentKind::SearchSpace,
            name,
        )?;
        Ok(PluginSpace { inner, plugin: plugin.file_name(), name: name.into() })
    }

    /// Builds a searcher from its config section.
    pub fn create_searcher(&self, name: &str, config: &serde_json::Value) -> Result<PluginSearcher, PluginError> {
        let (plugin, _) = self.find(ComponentKind::Searcher, name)?;
        let json = config.to_string();
        let inner = plugin_result(
            (plugin.module.create_searcher())(RStr::from(name), RStr::from(json.as_str())),
            &plugin.file_name(),
            ComponentKind::Searcher,
            name,
        )?;
        Ok(PluginSearcher { inner, plugin: plugin.file_name(), name: name.into() })
    }

    /// Builds a dataset adapter from the dataset's config section.
    pub fn create_dataset_adapter(
        &self,
        name: &str,
        config: &serde_json::Value,
    ) -> Result<PluginDatasetAdapter, PluginError> {
        let (plugin, _) = self.find(ComponentKind::DatasetAdapter, name)?;
        let json = config.to_string();
        let inner = plugin_result(
            (plugin.module.create_dataset_adapter())(RStr::from(name), RStr::from(json.as_str())),
            &plugin.file_name(),
            ComponentKind::DatasetAdapter,
            name,
        )?;
        Ok(PluginDatasetAdapter { inner, plugin: plugin.file_name(), name: name.into() })
    }
}

/// An op instance living in a plugin.
pub struct PluginOp {
    op: OpBox,
    plugin: Arc<str>,
    name: Arc<str>,
}

impl PluginOp {
    /// Runs the op; inputs are borrowed for the call, the result is owned by the caller.
    pub fn forward(&self, inputs: &[&Tensor], train: bool) -> Result<Tensor, PluginError> {
        let refs: Vec<TensorRef<'_>> = inputs.iter().map(|t| TensorRef::new(t)).collect();
        plugin_result(self.op.forward(refs.as_slice().into(), train), &self.plugin, ComponentKind::Op, &self.name)
            .map(TensorOwned::into_tensor)
    }

    /// The op's output times the 0-dim `scale` when the op folds the scale into its last layer
    /// (`Op::forward_scaled`), `None` when it leaves the multiplication to the caller.
    pub fn forward_scaled(
        &self,
        inputs: &[&Tensor],
        scale: &Tensor,
        train: bool,
    ) -> Result<Option<Tensor>, PluginError> {
        let refs: Vec<TensorRef<'_>> = inputs.iter().map(|t| TensorRef::new(t)).collect();
        let out = self.op.forward_scaled(refs.as_slice().into(), TensorRef::new(scale), train);
        plugin_result(out, &self.plugin, ComponentKind::Op, &self.name)
            .map(|t| t.into_option().map(TensorOwned::into_tensor))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file name of the plugin library the op comes from.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }
}

/// What the host observes of one network's candidate ops (the ops mixers build through it): how
/// many forwards ran, and, while a capture is on, each forward's output under the op's scope.
#[derive(Default)]
pub struct CandidateTaps {
    forwards: AtomicU64,
    capture: std::sync::Mutex<Option<Capture>>,
}

/// A capture in progress: the scope prefix to record, and what was recorded (scope, output).
type Capture = (String, Vec<(String, tch::Tensor)>);

impl CandidateTaps {
    /// Candidate forwards so far.
    pub fn forwards(&self) -> u64 {
        self.forwards.load(Ordering::Relaxed)
    }

    /// Takes back `n` forwards that were counted (a recomputation repeats forwards the counts
    /// already hold).
    pub fn uncount(&self, n: u64) {
        self.forwards.fetch_sub(n, Ordering::Relaxed);
    }

    /// Records every output of a candidate whose scope starts with `prefix`, from now until
    /// [`Self::take_capture`].
    pub fn start_capture(&self, prefix: &str) {
        *self.capture.lock().unwrap_or_else(|e| e.into_inner()) = Some((prefix.to_string(), Vec::new()));
    }

    /// The outputs recorded since [`Self::start_capture`], in forward order; stops recording.
    pub fn take_capture(&self) -> Vec<(String, tch::Tensor)> {
        self.capture.lock().unwrap_or_else(|e| e.into_inner()).take().map(|(_, v)| v).unwrap_or_default()
    }

    /// Whether a capture in progress records the candidate at `scope`.
    fn captures(&self, scope: &str) -> bool {
        self.capture
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|(p, _)| scope.starts_with(p.as_str()))
    }

    /// Counts a forward whose output is not observed (one computed already scaled, outside any
    /// capture).
    fn count(&self) {
        self.forwards.fetch_add(1, Ordering::Relaxed);
    }

    fn observe(&self, scope: &str, output: &TensorOwned) {
        self.count();
        if let Some((prefix, captured)) = self.capture.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            if scope.starts_with(prefix.as_str()) {
                captured.push((scope.to_string(), output.as_ref().shallow_clone()));
            }
        }
    }
}

/// A mixer's candidate op as the plugin sees it: the op, observed by the network's taps.
pub struct CountedOp {
    pub op: OpBox,
    /// The op's full scope (`cells.0.n2.e1.sep_conv_3x3`).
    pub scope: String,
    pub taps: Option<Arc<CandidateTaps>>,
}

impl archai_plugin_api::OpObj for CountedOp {
    fn forward(
        &self,
        inputs: abi_stable::std_types::RSlice<'_, TensorRef<'_>>,
        train: bool,
    ) -> RResult<TensorOwned, abi_stable::std_types::RString> {
        // The op's own entry point already turns its panics into errors.
        let out = self.op.forward(inputs, train);
        if let (Some(taps), RResult::ROk(t)) = (&self.taps, &out) {
            taps.observe(&self.scope, t);
        }
        out
    }

    fn forward_scaled(
        &self,
        inputs: abi_stable::std_types::RSlice<'_, TensorRef<'_>>,
        scale: TensorRef<'_>,
        train: bool,
    ) -> RResult<ROption<TensorOwned>, abi_stable::std_types::RString> {
        // A capture records the candidate's own output: left unfolded, the caller's fallback
        // (`HostOp::forward_scaled`) runs `forward`, which records it, and multiplies.
        if self.taps.as_ref().is_some_and(|t| t.captures(&self.scope)) {
            return RResult::ROk(ROption::RNone);
        }
        let out = self.op.forward_scaled(inputs, scale, train);
        if let (Some(taps), RResult::ROk(ROption::RSome(_))) = (&self.taps, &out) {
            taps.count();
        }
        out
    }
}

impl PluginOp {
    /// The boxed op, for handing to another plugin.
    pub fn into_box(self) -> OpBox {
        self.op
    }
}

/// A search space instance living in a plugin.
pub struct PluginSpace {
    pub inner: archai_plugin_api::discrete::DiscreteSpaceBox,
    pub plugin: String,
    pub name: String,
}

/// A searcher instance living in a plugin.
pub struct PluginSearcher {
    pub inner: archai_plugin_api::discrete::SearcherBox,
    pub plugin: String,
    pub name: String,
}

/// An algorithm instance living in a plugin.
pub struct PluginAlgorithm {
    pub inner: AlgorithmBox,
    pub plugin: String,
    pub name: String,
    /// How the trainer trains the architecture parameters, as the algorithm's search space said.
    pub arch_training: ArchTraining,
}

/// A finalizer instance living in a plugin.
pub struct PluginFinalizer {
    pub inner: FinalizerBox,
    pub plugin: String,
    pub name: String,
}

/// A dataset adapter instance living in a plugin.
pub struct PluginDatasetAdapter {
    pub inner: DatasetAdapterBox,
    pub plugin: String,
    pub name: String,
}

/// Runs a host service that a plugin called, so that a panic in it (a libtorch error raised by a
/// non-fallible tensor call, say) returns to the plugin as an error instead of unwinding into
/// plugin code, which would abort the process.
pub fn host_service<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, String>,
) -> RResult<T, abi_stable::std_types::RString> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(payload) => RResult::RErr(
            format!("host service `{what}` failed: {}", archai_plugin_api::panic_text(payload.as_ref())).into(),
        ),
    }
}

/// Turns a plugin call's result into the host's error with plugin and component named.
pub fn plugin_result<T>(
    r: RResult<T, abi_stable::std_types::RString>,
    plugin: &str,
    kind: ComponentKind,
    name: &str,
) -> Result<T, PluginError> {
    match r {
        RResult::ROk(v) => Ok(v),
        RResult::RErr(e) => {
            Err(PluginError::Call { plugin: plugin.into(), kind, name: name.into(), message: e.into_string() })
        }
    }
}

impl PluginDatasetAdapter {
    /// Reads one split: (uint8 NCHW images, int64 labels, class names).
    pub fn load(&mut self, split: &str) -> Result<(Tensor, Tensor, Vec<String>), PluginError> {
        let s =
            plugin_result(self.inner.load(RStr::from(split)), &self.plugin, ComponentKind::DatasetAdapter, &self.name)?;
        Ok((
            s.images.into_tensor(),
            s.labels.into_tensor(),
            s.class_names.into_iter().map(|c| c.into_string()).collect(),
        ))
    }
}
