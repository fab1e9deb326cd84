//! One experiment: dataset -> search phase (algorithm plugin, trainer, finalizer) -> eval phase
//! (compile the final description, train from scratch, test), all recorded in the run directory.
use crate::config::{ChannelStat, DatasetConfig, ExperimentConfig, SearchConfig};
use crate::model::Network;
use crate::params::ParamStore;
use crate::plugins::{plugin_result, PluginRegistry};
use crate::runlog::RunLog;
use crate::train::{Services, SplitData, Trainer, TrainerConfig};
use abi_stable::std_types::RStr;
use anyhow::{bail, Context, Result};
use archai_data::{SampleBuffer, Transform};
use archai_model_desc::ModelDesc;
use archai_plugin_api::{ComponentKind, SearchContext};
use archai_runlog::schema;
use std::path::Path;
use std::time::Instant;
use tch::Device;

/// The dataset's splits as the host holds them.
pub struct LoadedDataset {
    pub train: SampleBuffer,
    pub test: SampleBuffer,
    pub class_names: Vec<String>,
    /// Normalization statistics: the YAML's values, or measured on the train split for `compute`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl LoadedDataset {
    /// The dataset's normalization.
    pub fn normalize(&self) -> Transform {
        Transform::Normalize { mean: self.mean.clone(), std: self.std.clone() }
    }
}

fn to_buffer(images: tch::Tensor, labels: tch::Tensor, what: &str) -> Result<SampleBuffer> {
    let size = images.size();
    if size.len() != 4 {
        bail!("the adapter returned {what} images of shape {size:?}; expected N x C x H x W");
    }
    let bytes: Vec<u8> = Vec::<u8>::try_from(images.flatten(0, -1)).context("reading image bytes")?;
    let labels: Vec<i64> = Vec::<i64>::try_from(labels.to_kind(tch::Kind::Int64)).context("reading labels")?;
    Ok(SampleBuffer::new(bytes, labels, [size[1] as usize, size[2] as usize, size[3] as usize])?)
}

/// Reads both splits through the dataset's adapter plugin.
pub fn load_dataset(reg: &PluginRegistry, ds: &DatasetConfig) -> Result<LoadedDataset> {
    let mut adapter = reg.create_dataset_adapter(&ds.adapter, &ds.adapter_config())?;
    let (xi, yi, class_names) = adapter.load("train")?;
    let train = to_buffer(xi, yi, "train")?;
    let (xt, yt, _) = adapter.load("test")?;
    let test = to_buffer(xt, yt, "test")?;
    let [c, h, _] = train.shape();
    if c as i64 != ds.channels || h as i64 != ds.image_size {
        bail!(
            "dataset `{}`: the files hold {c}-channel {h}px images but the YAML says channels: {}, image_size: {}",
            ds.name,
            ds.channels,
            ds.image_size
        );
    }
    let measured = match (&ds.mean, &ds.std) {
        (ChannelStat::Values(_), ChannelStat::Values(_)) => None,
        _ => {
            let [c, h, w] = train.shape();
            let (m, s) = archai_data::stats::mean_std(train.images(), train.len(), c, h, w);
            tracing::info!("dataset `{}`: measured on train: mean {m:.4?}, std {s:.4?}", ds.name);
            Some((m.iter().map(|&v| v as f32).collect::<Vec<_>>(), s.iter().map(|&v| v as f32).collect::<Vec<_>>()))
        }
    };
    let pick = |stat: &ChannelStat, measured: Option<&Vec<f32>>| match stat {
        ChannelStat::Values(v) => v.clone(),
        ChannelStat::Keyword(_) => measured.cloned().unwrap_or_default(),
    };
    let mean = pick(&ds.mean, measured.as_ref().map(|m| &m.0));
    let std = pick(&ds.std, measured.as_ref().map(|m| &m.1));
    if mean.len() != c || std.len() != c {
        bail!("dataset `{}`: mean and std need one value per channel ({c}), or `compute`", ds.name);
    }
    Ok(LoadedDataset { train, test, class_names, mean, std })
}

/// Training transforms: the trainer's list with the dataset's normalization inserted, when the
/// list has none, before the first cutout (DARTS cuts out in normalized space) or at the end.
pub fn train_transforms(t: &TrainerConfig, data: &LoadedDataset) -> Vec<Transform> {
    let mut v = t.transforms.clone();
    if !v.iter().any(|x| matches!(x, Transform::Normalize { .. })) {
        let at = v.iter().position(|x| matches!(x, Transform::Cutout { .. })).unwrap_or(v.len());
        v.insert(at, data.normalize());
    }
    v
}

/// 50,000 generated samples of shape `CxHxW` (seeded bytes, 10 balanced classes) and the DARTS
/// CIFAR augmentation for them, for pipeline benchmarks.
pub fn synthetic_cifar_like(shape: &str) -> Result<(SampleBuffer, Vec<Transform>)> {
    let dims: Vec<usize> = shape
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--synthetic {shape}: expected CxHxW, e.g. 3x32x32"))?;
    let [c, h, w] = dims[..] else { bail!("--synthetic {shape}: expected three sizes CxHxW, e.g. 3x32x32") };
    if c == 0 || h == 0 || w == 0 {
        bail!("--synthetic {shape}: sizes must be positive");
    }
    let n = 50_000;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let images: Vec<u8> = (0..n * c * h * w)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    let labels = (0..n).map(|i| (i % 10) as i64).collect();
    let buffer = SampleBuffer::new(images, labels, [c, h, w])?;
    let transforms = vec![
        Transform::RandomCrop { size: h.min(w), padding: 4 },
        Transform::HorizontalFlip { p: 0.5 },
        Transform::Normalize { mean: vec![0.5; c], std: vec![0.25; c] },
        Transform::Cutout { length: 16.min(h) },
    ];
    Ok((buffer, transforms))
}

/// The device `common.device` names: `cpu`, `cuda` (`cuda:0`), `cuda:N`, or `auto` (CUDA when
/// present, else CPU). A CUDA device that is not there is an error, never a silent CPU run.
pub fn device_of(name: &str) -> Result<Device> {
    parse_device(name).map_err(|e| anyhow::anyhow!("common.device: {e}"))
}

/// A device name as `--device` options take it (same values as `common.device`).
pub fn parse_device(name: &str) -> Result<Device> {
    device_with(name, tch::Cuda::device_count())
}

fn device_with(name: &str, cuda_devices: i64) -> Result<Device> {
    let index = match name {
        "cpu" => return Ok(Device::Cpu),
        "auto" => return Ok(if cuda_devices > 0 { Device::Cuda(0) } else { Device::Cpu }),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => i,
            None => bail!("`{other}` is not cpu, cuda, cuda:N or auto"),
        },
    };
    if index as i64 >= cuda_devices {
        bail!(
            "`{name}` asks for CUDA device {index}, but this process sees {cuda_devices} CUDA device(s); \
             use `cpu`, or `auto` for CUDA when present"
        );
    }
    Ok(Device::Cuda(index))
}

/// Checks everything of a run that can be checked before any work, so that a bad eval or
/// finalizer setting fails in the first second, not after the search: the device, every
/// trainer's ranges, the split ratios, and the finalizer's config (by building it).
pub fn preflight(cfg: &ExperimentConfig, reg: &PluginRegistry) -> Result<Device> {
    let device = device_of(&cfg.common.device)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
    let threads = cfg.common.threads;
    if !(0..=4 * cores).contains(&threads) {
        bail!(
            "common.threads = {threads}: must be in [0, {}] (at most 4 x the {cores} cores here; 0 keeps libtorch's default)",
            4 * cores
        );
    }
    let search = &cfg.nas.search;
    if search.enabled && cfg.nas.eval.model_desc.is_none() {
        search.trainer.validate().map_err(|e| anyhow::anyhow!("nas.search.{e}"))?;
        if !(0.0..1.0).contains(&search.val_ratio) {
            bail!("nas.search.val_ratio = {}: must be in [0, 1)", search.val_ratio);
        }
        reg.find(ComponentKind::Algorithm, &search.algorithm.name)?;
        if let Some(f) = &search.finalizer {
            reg.create_finalizer(&f.name, &f.config)?;
        }
    }
    let available = available_memory_bytes();
    let input = [
        cfg.dataset.channels.max(1) as usize,
        cfg.dataset.image_size.max(1) as usize,
        cfg.dataset.image_size.max(1) as usize,
    ];
    if search.enabled && cfg.nas.eval.model_desc.is_none() {
        check_batch_fits("nas.search.trainer", &search.trainer, input, available)?;
    }
    if let Some(t) = &cfg.nas.eval.trainer {
        check_batch_fits("nas.eval.trainer", t, input, available)?;
    }
    if let Some(t) = &cfg.nas.eval.trainer {
        t.validate().map_err(|e| anyhow::anyhow!("nas.eval.{e}"))?;
        if !(0.0..1.0).contains(&cfg.nas.eval.val_ratio) {
            bail!("nas.eval.val_ratio = {}: must be in [0, 1)", cfg.nas.eval.val_ratio);
        }
    }
    Ok(device)
}

/// MemAvailable of /proc/meminfo, when the kernel says.
fn available_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn gigabytes(bytes: f64) -> String {
    format!("{:.1} GB", bytes / 1e9)
}

/// Refuses a batch whose input tensor alone cannot fit in memory (a batch size or a `resize`
/// typed with too many digits), before libtorch aborts on the allocation or the kernel kills
/// the run: one batch of fp32 inputs after the transforms is built and then handed over, so two
/// copies of it are live. Model activations come on top; this is the floor.
fn check_batch_fits(key: &str, t: &TrainerConfig, input: [usize; 3], available: Option<u64>) -> Result<()> {
    let Some(available) = available else { return Ok(()) };
    let shaping: Vec<Transform> =
        t.transforms.iter().filter(|x| !matches!(x, Transform::Normalize { .. })).cloned().collect();
    let [c, h, w] =
        archai_data::Pipeline::new(&shaping, input).map_err(|e| anyhow::anyhow!("{key}.transforms: {e}"))?.out_shape();
    let bytes = 2.0 * t.batch_size as f64 * (c * h * w) as f64 * 4.0;
    if bytes > available as f64 {
        bail!(
            "{key}.batch_size = {}: one batch of {c}x{h}x{w} inputs needs {} (two fp32 copies), more than the {} \
             this machine has available; lower batch_size (or the transforms' resize)",
            t.batch_size,
            gigabytes(bytes),
            gigabytes(available as f64)
        );
    }
    Ok(())
}

/// Refuses a phase whose network cannot keep one step's activations in memory, before any weight
/// is made: the estimate is `archai stats`' activation figure (every op's fp32 output, which
/// autograd keeps for backward; every candidate of a mixed edge counts) for the rows of one
/// batch chunk. Ops keep more than their outputs (a separable conv's inner tensors), so this is
/// a lower bound: what it refuses cannot fit, what it passes may still not. Only for CPU runs,
/// whose limit is MemAvailable; a GPU's memory is another budget.
fn check_activations_fit(
    key: &str,
    desc: &ModelDesc,
    reg: &PluginRegistry,
    t: &TrainerConfig,
    device: Device,
    available: Option<u64>,
) -> Result<()> {
    let Some(available) = available.filter(|_| device == Device::Cpu) else { return Ok(()) };
    let (parts, _) = crate::stats::analyze(desc, reg)?;
    let per_sample = kept_per_sample(&parts, t.recompute_cells);
    match activation_refusal(key, &desc.name, per_sample, t, available) {
        Some(message) => bail!(message),
        None => Ok(()),
    }
}

/// Activation bytes per sample kept for backward: every part's, or with recomputed cells only the
/// largest cell's (one cell's graph lives at a time) besides the stem's and the head's.
fn kept_per_sample(parts: &[crate::stats::PartStats], recompute_cells: bool) -> i64 {
    let is_cell = |p: &&crate::stats::PartStats| p.name.starts_with("cells.");
    let outside: i64 = parts.iter().filter(|p| !is_cell(p)).map(|p| p.activation_bytes_per_sample).sum();
    let cells = parts.iter().filter(is_cell).map(|p| p.activation_bytes_per_sample);
    outside + if recompute_cells { cells.max().unwrap_or(0) } else { cells.sum() }
}

/// The refusal of [`check_activations_fit`], if the rows of one chunk need more than `available`.
fn activation_refusal(key: &str, name: &str, per_sample: i64, t: &TrainerConfig, available: u64) -> Option<String> {
    let rows = t.batch_size.div_ceil(t.batch_chunks.max(1));
    let bytes = per_sample as f64 * rows as f64;
    (bytes > available as f64).then(|| {
        format!(
            "{key}.batch_size = {}: {name} keeps at least {} of activations for a chunk of {rows} rows ({} per \
             sample, fp32 op outputs kept for backward{}), more than the {} this machine has available; lower \
             batch_size or raise batch_chunks (rows are then processed in chunks, same result){}",
            t.batch_size,
            gigabytes(bytes),
            megabytes(per_sample as f64),
            if t.recompute_cells { ", one cell at a time with recompute_cells" } else { "" },
            gigabytes(available as f64),
            if t.recompute_cells {
                ""
            } else {
                ", or set recompute_cells: true (each cell runs again in the backward pass)"
            }
        )
    })
}

fn megabytes(bytes: f64) -> String {
    format!("{:.2} MB", bytes / 1e6)
}

/// Writes a Graphviz DOT picture of each cell type of a final description.
pub fn cells_dot(desc: &ModelDesc) -> String {
    let mut out = String::from("digraph cells {\n  rankdir=LR;\n");
    let mut seen = Vec::new();
    for (ci, cell) in desc.cells.iter().enumerate() {
        let kind = if cell.reduction { "reduce" } else { "normal" };
        if seen.contains(&kind) {
            continue;
        }
        seen.push(kind);
        out.push_str(&format!("  subgraph cluster_{kind} {{\n    label=\"{kind} cell (cells[{ci}])\";\n"));
        out.push_str(&format!("    {kind}_0 [label=\"c_{{k-2}}\"]; {kind}_1 [label=\"c_{{k-1}}\"];\n"));
        for (ni, node) in cell.nodes.iter().enumerate() {
            let n = ni + 2;
            out.push_str(&format!("    {kind}_{n} [label=\"{}\"];\n", n - 2));
            for e in &node.edges {
                out.push_str(&format!("    {kind}_{} -> {kind}_{n} [label=\"{}\"];\n", e.input, e.op));
            }
        }
        out.push_str(&format!("    {kind}_out [label=\"c_{{k}}\"];\n"));
        for c in &cell.concat {
            out.push_str(&format!("    {kind}_{c} -> {kind}_out;\n"));
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// An SVG picture of the normal and reduction cells, one panel each: the cell inputs, every node
/// and the concatenated output, each edge labelled with its op, laid out by a graph-layout
/// engine (layout-rs: ranks, crossing reduction, edges routed around nodes) instead of by hand.
pub fn cells_svg(desc: &ModelDesc) -> String {
    use layout::backends::svg::SVGWriter;
    use layout::core::base::Orientation;
    use layout::core::geometry::Point;
    use layout::core::style::StyleAttr;
    use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
    use layout::topo::layout::VisualGraph;
    let mut kinds: Vec<(&str, &archai_model_desc::CellDesc)> = Vec::new();
    for cell in &desc.cells {
        let kind = if cell.reduction { "reduction" } else { "normal" };
        if !kinds.iter().any(|(k, _)| *k == kind) {
            kinds.push((kind, cell));
        }
    }
    let mut panels = Vec::new();
    for (kind, cell) in &kinds {
        let mut vg = VisualGraph::new(Orientation::LeftToRight);
        fn node(vg: &mut VisualGraph, label: &str, fill: &str) -> layout::adt::dag::NodeHandle {
            let look = StyleAttr::new(
                layout::core::color::Color::fast("black"),
                1,
                Some(layout::core::color::Color::fast(fill)),
                0,
                14,
            );
            let size = Point::new(16.0 + 9.0 * label.len() as f64, 34.0);
            vg.add_node(Element::create(ShapeKind::new_box(label), look, Orientation::LeftToRight, size))
        }
        let mut handles = vec![node(&mut vg, "c_{k-2}", "lightblue"), node(&mut vg, "c_{k-1}", "lightblue")];
        for i in 0..cell.nodes.len() {
            handles.push(node(&mut vg, &i.to_string(), "lightgray"));
        }
        let output = node(&mut vg, "c_{k}", "wheat");
        // Each op is a node of its own between its input and its node: a label on a line is
        // ambiguous where several edges leave the same inputs for nodes of the same rank.
        for (ni, n) in cell.nodes.iter().enumerate() {
            for e in &n.edges {
                if let Some(&from) = handles.get(e.input) {
                    let op = node(&mut vg, &e.op, "white");
                    vg.add_edge(Arrow::simple(""), from, op);
                    vg.add_edge(Arrow::simple(""), op, handles[ni + 2]);
                }
            }
        }
        for &c in &cell.concat {
            if let Some(&from) = handles.get(c) {
                vg.add_edge(Arrow::simple(""), from, output);
            }
        }
        let mut svg = SVGWriter::new();
        vg.do_it(false, false, false, &mut svg);
        panels.push((kind.to_string(), svg.finalize()));
    }
    stack_panels(&panels)
}

/// The width and height a rendered SVG declares on its root element.
fn svg_size(svg: &str) -> (f64, f64) {
    let root = svg.split_once("<svg").map_or("", |(_, rest)| rest.split('>').next().unwrap_or(""));
    let attr = |name: &str| {
        root.split_once(&format!("{name}=\""))
            .and_then(|(_, rest)| rest.split('"').next())
            .and_then(|v| v.trim_end_matches("px").parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (attr("width"), attr("height"))
}

/// One SVG document with a titled panel per picture, one above the other.
fn stack_panels(panels: &[(String, String)]) -> String {
    const TITLE: f64 = 30.0;
    let sizes: Vec<(f64, f64)> = panels.iter().map(|(_, svg)| svg_size(svg)).collect();
    let width = sizes.iter().map(|s| s.0).fold(200.0, f64::max);
    let height: f64 = sizes.iter().map(|s| s.1 + TITLE).sum();
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\">\n"
    );
    let mut top = 0.0;
    for ((title, svg), (_, panel_height)) in panels.iter().zip(&sizes) {
        out.push_str(&format!(
            "<text x=\"10\" y=\"{:.0}\" font-size=\"15\" font-weight=\"bold\">{} cell</text>\n",
            top + 20.0,
            xml_escape(title)
        ));
        // The rendered document nested as a positioned <svg> element (its XML prologue dropped).
        let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
        let nested = body.replacen("<svg", &format!("<svg x=\"0\" y=\"{:.0}\"", top + TITLE), 1);
        out.push_str(&nested);
        out.push('\n');
        top += panel_height + TITLE;
    }
    out.push_str("</svg>\n");
    out
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// What both phases of one run share.
struct RunContext<'a> {
    cfg: &'a ExperimentConfig,
    reg: &'a PluginRegistry,
    data: &'a LoadedDataset,
    run_dir: &'a Path,
    device: Device,
    resume: bool,
    rank: &'a Rank<'a>,
}

/// How this process takes part in a run: alone, or as one rank of a data-parallel job. Rank 0
/// writes the run directory; another rank writes its own scratch directory and reads the
/// checkpoints rank 0 writes (to resume like it).
pub struct Rank<'a> {
    pub strategy: crate::train::Strategy<'a>,
    /// The run directory rank 0 writes (where checkpoints are).
    pub shared_run_dir: std::path::PathBuf,
}

fn search_phase(ctx: &RunContext, search: &SearchConfig, log: &mut RunLog) -> Result<ModelDesc> {
    let RunContext { cfg, reg, data, run_dir, device, resume, rank } = *ctx;
    let t0 = Instant::now();
    let mut algo = reg.create_algorithm(&search.algorithm.name, &search.algorithm.config)?;
    if !(0.0..1.0).contains(&search.val_ratio) {
        bail!("nas.search.val_ratio must be in [0, 1), got {}", search.val_ratio);
    }
    let (train_idx, val_idx) = if search.val_ratio > 0.0 {
        archai_data::split::stratified_train_val(data.train.labels(), search.val_ratio, cfg.common.seed)
    } else {
        ((0..data.train.len()).collect(), Vec::new())
    };
    let batch = search.trainer.batch_size;
    let steps_per_epoch = {
        let n = train_idx.len().div_ceil(batch.max(1));
        search.trainer.max_batches.map_or(n, |m| m.min(n))
    };
    let context = SearchContext {
        channels: cfg.dataset.channels,
        image_size: cfg.dataset.image_size,
        num_classes: cfg.dataset.num_classes,
        seed: cfg.common.seed,
        epochs: search.trainer.epochs as u32,
        steps_per_epoch: steps_per_epoch as u64,
        val_batch_size: if val_idx.is_empty() { 0 } else { batch.min(val_idx.len()) as u64 },
    };
    let space = plugin_result(algo.inner.search_space(context), &algo.plugin, ComponentKind::Algorithm, &algo.name)?;
    algo.arch_training = space.arch_training;
    let desc = ModelDesc::from_yaml(space.model_desc_yaml.as_str(), &format!("algorithm `{}`", algo.name))?;
    write(&run_dir.join("search/model_desc.yaml"), &desc.to_yaml())?;
    check_activations_fit("nas.search.trainer", &desc, reg, &search.trainer, device, available_memory_bytes())?;
    let store = ParamStore::new(device);
    let mut net = Network::compile(&desc, reg, &store)?;
    net.channels_last = cfg.common.channels_last;
    tracing::info!(
        "search: {} with {} weights and {} architecture parameters ({:?} architecture training)",
        desc.name,
        store.weight_count(),
        store.arch_count(),
        algo.arch_training
    );
    let transforms = train_transforms(&search.trainer, data);
    let train = SplitData { buffer: data.train.clone(), indices: train_idx, transforms: transforms.clone() };
    let val = (!val_idx.is_empty()).then(|| SplitData {
        buffer: data.train.clone(),
        indices: val_idx,
        transforms: vec![data.normalize()],
    });
    let mut trainer = Trainer {
        config: search.trainer.clone(),
        phase: "search".into(),
        seed: cfg.common.seed,
        device,
        checkpoint: rank.shared_run_dir.join("search/checkpoint.pt"),
        events: log,
        strategy: rank.strategy,
    };
    let report = trainer.fit(&mut net, &store, &train, val.as_ref(), Some(&mut algo), resume)?;
    // A report left by an earlier attempt must not pass for this one's.
    let decisiveness_file = run_dir.join("search/artifacts").join(archai_model_desc::report::DECISIVENESS_ARTIFACT);
    let _ = std::fs::remove_file(&decisiveness_file);
    let final_desc = match &search.finalizer {
        Some(f) => {
            let mut fin = reg.create_finalizer(&f.name, &f.config)?;
            // The finalizer may read batches of the search's training split, normalized only.
            let plain = SplitData { transforms: vec![data.normalize()], ..train.clone() };
            let mut services = Services::trained(&net, &store, search.trainer.precision).with_data(&plain, run_dir);
            let yaml = plugin_result(
                fin.inner.finalize(RStr::from(desc.to_yaml().as_str()), services.as_services()),
                &fin.plugin,
                ComponentKind::Finalizer,
                &fin.name,
            )?;
            ModelDesc::from_yaml(yaml.as_str(), &format!("finalizer `{}`", fin.name))?
        }
        None => desc.clone(),
    };
    let decisiveness = read_decisiveness(&decisiveness_file)?;
    if let Some(d) = &decisiveness {
        if d.decided {
            tracing::info!("search: {}", d.verdict);
        } else {
            tracing::warn!("search: {}", d.verdict);
        }
    }
    write(&run_dir.join("search/final_model_desc.yaml"), &final_desc.to_yaml())?;
    write(&run_dir.join("search/final_cells.dot"), &cells_dot(&final_desc))?;
    write(&run_dir.join("search/final_cells.svg"), &cells_svg(&final_desc))?;
    // The searched architecture's own figures (batch 1, CPU), before any eval training.
    let final_stats = {
        let stats_store = ParamStore::new(Device::Cpu);
        let mut stats_net = Network::compile(&final_desc, reg, &stats_store)?;
        stats_net.channels_last = cfg.common.channels_last;
        crate::stats::model_stats(&final_desc, reg, &stats_net, &stats_store, 1, 5, Device::Cpu)?
    };
    write(&run_dir.join("search/final_stats.json"), &serde_json::to_string_pretty(&final_stats)?)?;
    tracing::info!(
        "search: final architecture has {} weights (+{} in the aux head), {} MACs per image, {:.2} ms latency at batch 1",
        final_stats.params,
        final_stats.aux_params,
        final_stats.macs,
        final_stats.latency_ms
    );
    let summary = schema::SearchSummary {
        train: report.train.record(),
        val: report.val.map(|m| m.record()),
        epochs: report.epochs_done as u64,
        duration_s: t0.elapsed().as_secs_f64(),
        arch_training: format!("{:?}", algo.arch_training),
        arch_params: store.arch_count() as u64,
        final_model_desc: "search/final_model_desc.yaml".into(),
        final_stats: schema::FinalStats {
            params: final_stats.params as u64,
            aux_params: final_stats.aux_params as u64,
            macs: final_stats.macs as u64,
            flops: final_stats.flops as u64,
            latency_ms: final_stats.latency_ms,
            file: "search/final_stats.json".into(),
        },
        weights_sha256: store.sha256(),
        decisiveness,
    };
    log.tree.set(&schema::keys::summary("search"), summary)?;
    log.flush()?;
    Ok(final_desc)
}

/// The finalizer's decisiveness report, when it wrote one.
fn read_decisiveness(path: &Path) -> Result<Option<archai_model_desc::report::Decisiveness>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("{} is not a decisiveness report", path.display()))?,
        )),
        Err(_) => Ok(None),
    }
}

fn eval_phase(ctx: &RunContext, trainer_cfg: &TrainerConfig, desc: &ModelDesc, log: &mut RunLog) -> Result<()> {
    let RunContext { cfg, reg, data, run_dir, device, resume, rank } = *ctx;
    let t0 = Instant::now();
    tch::manual_seed(cfg.common.seed as i64);
    check_activations_fit("nas.eval.trainer", desc, reg, trainer_cfg, device, available_memory_bytes())?;
    let store = ParamStore::new(device);
    let mut net = Network::compile(desc, reg, &store)?;
    net.channels_last = cfg.common.channels_last;
    let aux_params = crate::stats::aux_param_count(&store);
    let params = store.weight_count() - aux_params;
    tracing::info!("eval: {} with {params} weights (+{aux_params} in the aux head)", desc.name);
    let val_ratio = cfg.nas.eval.val_ratio;
    if !(0.0..1.0).contains(&val_ratio) {
        bail!("nas.eval.val_ratio must be in [0, 1), got {val_ratio}");
    }
    let (train_idx, val_idx) = if val_ratio > 0.0 {
        archai_data::split::stratified_train_val(data.train.labels(), val_ratio, cfg.common.seed)
    } else {
        ((0..data.train.len()).collect(), Vec::new())
    };
    let train =
        SplitData { buffer: data.train.clone(), indices: train_idx, transforms: train_transforms(trainer_cfg, data) };
    let val = (!val_idx.is_empty()).then(|| SplitData {
        buffer: data.train.clone(),
        indices: val_idx,
        transforms: vec![data.normalize()],
    });
    let test = SplitData {
        buffer: data.test.clone(),
        indices: (0..data.test.len()).collect(),
        transforms: vec![data.normalize()],
    };
    let mut trainer = Trainer {
        config: trainer_cfg.clone(),
        phase: "eval".into(),
        seed: cfg.common.seed,
        device,
        checkpoint: rank.shared_run_dir.join("eval/checkpoint.pt"),
        events: log,
        strategy: rank.strategy,
    };
    std::fs::create_dir_all(run_dir.join("eval"))?;
    let report = trainer.fit(&mut net, &store, &train, val.as_ref(), None, resume)?;
    let test_m = crate::train::evaluate_with(
        &net,
        &test,
        trainer_cfg.batch_size,
        trainer_cfg.max_eval_batches,
        device,
        trainer_cfg.precision,
        rank.strategy,
    )?;
    tracing::info!(
        "eval: test top1 {:.4} top5 {:.4} loss {:.4} ({} samples)",
        test_m.top1,
        test_m.top5,
        test_m.loss,
        test_m.samples
    );
    let summary = schema::EvalSummary {
        train: report.train.record(),
        val: report.val.map(|m| m.record()),
        test: test_m.record(),
        params: params as u64,
        aux_params: aux_params as u64,
        epochs: report.epochs_done as u64,
        duration_s: t0.elapsed().as_secs_f64(),
        weights_sha256: store.sha256(),
    };
    // At the step after the last epoch, so TensorBoard plots the test figures at the end.
    let step = report.epochs_run.max(trainer_cfg.epochs);
    log.scalar("eval/test/top1", test_m.top1, step);
    log.scalar("eval/test/top5", test_m.top5, step);
    log.scalar("eval/test/loss", test_m.loss, step);
    log.tree.set(&schema::keys::summary("eval"), summary)?;
    log.flush()?;
    Ok(())
}

/// The part of a run that was under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Setup,
    Dataset,
    Search,
    Eval,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Dataset => "dataset",
            Phase::Search => "search",
            Phase::Eval => "eval",
        }
    }
}

/// Runs the experiment into `run_dir` (config_used.yaml already written by the caller). Every
/// run ends with a status in log.yaml: `status: ok`, or `status: failed` with the `phase` and the
/// `error` (also appended to log.txt), so the run directory says how the run ended.
pub fn run(
    cfg: &ExperimentConfig,
    reg: &PluginRegistry,
    run_dir: &Path,
    resume: bool,
    resume_changes: &[crate::resume::Change],
    rank: &Rank,
) -> Result<()> {
    let t0 = Instant::now();
    let mut log = RunLog::open(run_dir)?;
    if !resume_changes.is_empty() {
        // Appended per resume, so the record keeps every change a run went through.
        let key = format!("resume_changes/{}", log.tree.root()["resume_changes"].as_mapping().map_or(0, |m| m.len()));
        log.tree.set(&key, serde_json::to_value(resume_changes)?)?;
    }
    let mut phase = Phase::Setup;
    log.begin_attempt()?;
    let result = run_phases(cfg, reg, run_dir, resume, &mut log, &mut phase, rank);
    log.end_attempt(&result, phase.as_str(), t0.elapsed().as_secs_f64())?;
    result
}

fn run_phases(
    cfg: &ExperimentConfig,
    reg: &PluginRegistry,
    run_dir: &Path,
    resume: bool,
    log: &mut RunLog,
    phase: &mut Phase,
    rank: &Rank,
) -> Result<()> {
    let device = preflight(cfg, reg)?;
    if rank.strategy.world() > 1 && device != Device::Cpu {
        bail!(
            "data-parallel training runs on the CPU (Gloo) only: the NCCL path for {device:?} is not built yet; \
             set common.device: cpu or run one process"
        );
    }
    if cfg.common.threads > 0 {
        tch::set_num_threads(cfg.common.threads);
    }
    tch::manual_seed(cfg.common.seed as i64);
    let mut precision = std::collections::BTreeMap::new();
    if cfg.nas.search.enabled {
        precision.insert("search".to_string(), cfg.nas.search.trainer.precision.name().to_string());
    }
    if let Some(t) = &cfg.nas.eval.trainer {
        precision.insert("eval".to_string(), t.precision.name().to_string());
    }
    let environment = crate::environment::collect(reg, device, precision)?;
    if let Some(cuda) = &environment.cuda {
        tracing::info!("device: {} (common.device: {})", crate::cuda::describe(device, cuda), cfg.common.device);
    }
    let run_info = schema::RunInfo {
        experiment: cfg.common.experiment_name.clone(),
        seed: cfg.common.seed,
        device: cfg.common.device.clone(),
        device_used: format!("{device:?}"),
        threads: tch::get_num_threads() as i64,
        environment: Some(environment),
    };
    log.tree.set("run", run_info)?;
    *phase = Phase::Dataset;
    let data = load_dataset(reg, &cfg.dataset)?;
    let dataset = schema::DatasetInfo {
        name: cfg.dataset.name.clone(),
        train: data.train.len(),
        test: data.test.len(),
        shape: data.train.shape().to_vec(),
        classes: data.class_names.clone(),
        mean: data.mean.iter().map(|&m| m as f64).collect(),
        std: data.std.iter().map(|&m| m as f64).collect(),
    };
    log.tree.set("dataset", dataset)?;
    log.flush()?;
    let ctx = RunContext { cfg, reg, data: &data, run_dir, device, resume, rank };
    let existing = rank.shared_run_dir.join("search/final_model_desc.yaml");
    let desc = if let Some(path) = &cfg.nas.eval.model_desc {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("nas.eval.model_desc: cannot read {}", path.display()))?;
        ModelDesc::from_yaml(&text, &path.display().to_string())?
    } else if existing.is_file() && resume {
        tracing::info!("search: reusing {}", existing.display());
        ModelDesc::from_yaml(&std::fs::read_to_string(&existing)?, &existing.display().to_string())?
    } else if cfg.nas.search.enabled {
        *phase = Phase::Search;
        search_phase(&ctx, &cfg.nas.search, log)?
    } else {
        bail!("nothing to evaluate: enable nas.search or set nas.eval.model_desc (a ModelDesc file)");
    };
    if let Some(t) = &cfg.nas.eval.trainer {
        *phase = Phase::Eval;
        eval_phase(&ctx, t, &desc, log)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> LoadedDataset {
        let buf = SampleBuffer::new(vec![0; 4], vec![0], [1, 2, 2]).unwrap();
        LoadedDataset { train: buf.clone(), test: buf, class_names: vec!["a".into()], mean: vec![0.5], std: vec![0.2] }
    }

    fn trainer(transforms: Vec<Transform>) -> TrainerConfig {
        TrainerConfig { transforms, ..TrainerConfig::sgd(1, 0.1, 0.0, None) }
    }

    #[test]
    fn dataset_normalize_goes_before_cutout_or_at_the_end() {
        let d = data();
        let flip = Transform::HorizontalFlip { p: 0.5 };
        let cut = Transform::Cutout { length: 1 };
        assert_eq!(
            train_transforms(&trainer(vec![flip.clone(), cut.clone()]), &d),
            vec![flip.clone(), d.normalize(), cut]
        );
        assert_eq!(train_transforms(&trainer(vec![flip.clone()]), &d), vec![flip, d.normalize()]);
        let own = Transform::Normalize { mean: vec![0.1], std: vec![0.3] };
        assert_eq!(train_transforms(&trainer(vec![own.clone()]), &d), vec![own]);
    }

    #[test]
    fn cell_picture_has_every_edge_of_both_cell_types() {
        let input = archai_model_desc::InputDesc { channels: 3, size: 32 };
        let desc = archai_model_desc::DARTS_V2.build("v2", 8, 16, false, input, 10).unwrap();
        let svg = cells_svg(&desc);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(">normal cell<") && svg.contains(">reduction cell<"));
        // Per cell type: 8 ops, each a box with an arrow in and one out, and 4 arrows into the
        // concatenated output.
        assert_eq!(svg.matches("marker-end").count(), 2 * (2 * 8 + 4));
        assert_eq!(svg.matches(">dil_conv_3x3<").count(), 1);
        assert_eq!(svg.matches(">max_pool_3x3<").count(), 5);
    }

    #[test]
    fn batches_that_cannot_fit_in_memory_are_refused_with_the_estimate() {
        let fits = TrainerConfig::sgd(64, 0.1, 0.0, None);
        assert!(check_batch_fits("nas.eval.trainer", &fits, [1, 28, 28], Some(8 << 30)).is_ok());
        let huge = TrainerConfig::sgd(1_000_000_000, 0.1, 0.0, None);
        let e = check_batch_fits("nas.search.trainer", &huge, [1, 28, 28], Some(8 << 30)).unwrap_err().to_string();
        assert!(
            e.contains("nas.search.trainer.batch_size = 1000000000")
                && e.contains("1x28x28")
                && e.contains("6272.0 GB")
                && e.contains("8.6 GB"),
            "{e}"
        );
        let resized = TrainerConfig { transforms: vec![Transform::Resize { size: [100_000, 100_000] }], ..fits };
        let e = check_batch_fits("nas.eval.trainer", &resized, [3, 32, 32], Some(8 << 30)).unwrap_err().to_string();
        assert!(e.contains("3x100000x100000"), "{e}");
        // Without a figure from the kernel nothing is refused.
        assert!(check_batch_fits("nas.eval.trainer", &huge, [1, 28, 28], None).is_ok());
        // Activations: 10 MB per sample at 1000 rows is 10 GB, over an 8 GB machine; chunks of
        // 250 rows keep a quarter of it.
        let big = TrainerConfig::sgd(1000, 0.1, 0.0, None);
        let e = activation_refusal("nas.search.trainer", "net", 10_000_000, &big, 8 << 30).expect("refused");
        assert!(
            e.contains("net keeps at least 10.0 GB") && e.contains("chunk of 1000 rows") && e.contains("10.00 MB"),
            "{e}"
        );
        assert!(e.contains("or set recompute_cells: true"), "{e}");
        let chunked = TrainerConfig { batch_chunks: 4, ..big.clone() };
        assert!(activation_refusal("nas.search.trainer", "net", 10_000_000, &chunked, 8 << 30).is_none());
        let recomputed = TrainerConfig { recompute_cells: true, ..big };
        let e = activation_refusal("nas.search.trainer", "net", 10_000_000, &recomputed, 8 << 30).expect("refused");
        assert!(e.contains("one cell at a time with recompute_cells") && !e.contains("or set recompute"), "{e}");
    }

    /// With recomputed cells only the largest cell's activations count, besides stem and head.
    #[test]
    fn recomputed_cells_keep_one_cell_of_activations() {
        let part = |name: &str, bytes: i64| crate::stats::PartStats {
            name: name.into(),
            activation_bytes_per_sample: bytes,
            ..Default::default()
        };
        let parts =
            [part("stem", 5), part("cells.0", 100), part("cells.1", 300), part("cells.2", 200), part("head", 7)];
        assert_eq!(kept_per_sample(&parts, false), 612);
        assert_eq!(kept_per_sample(&parts, true), 312);
    }

    #[test]
    fn devices_are_what_they_say() {
        assert_eq!(device_with("cpu", 0).unwrap(), Device::Cpu);
        assert_eq!(device_with("auto", 0).unwrap(), Device::Cpu);
        assert_eq!(device_with("auto", 2).unwrap(), Device::Cuda(0));
        assert_eq!(device_with("cuda:1", 2).unwrap(), Device::Cuda(1));
        // No silent fallback to the CPU.
        let e = device_with("cuda", 0).unwrap_err().to_string();
        assert!(e.contains("`cuda`") && e.contains("0 CUDA device") && e.contains("auto"), "{e}");
        assert!(device_with("cuda:2", 2).is_err());
        assert!(device_with("gpu", 1).unwrap_err().to_string().contains("cpu, cuda, cuda:N or auto"));
    }

    #[test]
    fn synthetic_data_has_the_requested_shape_and_rejects_bad_specs() {
        let (buf, t) = synthetic_cifar_like("3x32x32").unwrap();
        assert_eq!((buf.len(), buf.shape()), (50_000, [3, 32, 32]));
        assert_eq!(t.len(), 4);
        assert!(synthetic_cifar_like("3x32").unwrap_err().to_string().contains("CxHxW"));
        assert!(synthetic_cifar_like("ax32x32").unwrap_err().to_string().contains("CxHxW"));
    }
}
