//! The built `libdarts.so` through the real plugin boundary: the host side is played by this
//! test (a `ModelServices` over a small hand-written network), and the results must equal the
//! same code called in-process.
use abi_stable::library::lib_header_from_path;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::sabi_types::RMut;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use archai_plugin_api::kit::seeded;
use archai_plugin_api::model_desc::{CellFill, DartsMacro, InputDesc, MixerDesc, ModelDesc};
use archai_plugin_api::tch::{Device, Kind, Tensor};
use archai_plugin_api::{
    ArchTraining, ModelServices, ModelServices_TO, NamedTensor, PluginModuleRef, SearchContext, StepBatch, StepData,
    StepOutcome, TensorOwned, TensorRef, WeightOptimizerInfo,
};
use darts::config::{darts_primitives, DartsConfig, Difference, Unroll};
use darts::search::{ArchStep, SearchModel};

const OPTS: (Kind, Device) = (Kind::Float, Device::Cpu);

fn module() -> PluginModuleRef {
    // Cargo builds the cdylib next to this test binary (target/<profile>/deps); it is copied up to
    // target/<profile>/ only by `cargo build`, so that copy may be stale.
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().join("libdarts.so");
    let header = lib_header_from_path(&lib).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
    header.init_root_module::<PluginModuleRef>().unwrap()
}

fn ok<T>(r: RResult<T, RString>) -> T {
    match r {
        RResult::ROk(v) => v,
        RResult::RErr(e) => panic!("plugin error: {e}"),
    }
}

/// A two-edge "supernet" with one alpha group; float32 like a real run.
struct Net {
    w: Vec<(String, Tensor)>,
    a: Vec<(String, Tensor)>,
    bufs: Vec<(String, Tensor)>,
    lr: f64,
    /// What the plugin wrote with `write_artifact`.
    artifacts: Vec<(String, Vec<u8>)>,
}

impl Net {
    fn new() -> Self {
        // Seeded without libtorch's global generator: the tests of this binary run concurrently.
        let w: Vec<(String, Tensor)> = [("l1", [6, 8]), ("l2", [8, 4]), ("l3", [8, 4])]
            .iter()
            .zip(11..)
            .map(|((n, s), seed)| (n.to_string(), (seeded::normal(s, seed) * 0.5).set_requires_grad(true)))
            .collect();
        let a = vec![("alphas.normal".to_string(), (seeded::normal(&[2, 3], 20) * 1e-3).set_requires_grad(true))];
        let bufs =
            w.iter().zip(30..).map(|((n, t), seed)| (n.clone(), seeded::normal(&t.size(), seed) * 0.05)).collect();
        Self { w, a, bufs, lr: 0.05, artifacts: Vec::new() }
    }

    fn forward_loss(&self, x: &Tensor, y: &Tensor) -> Tensor {
        let p = self.a[0].1.softmax(-1, Kind::Float);
        let h = x.matmul(&self.w[0].1);
        let e0 = h.relu() * p.get(0).get(0) + h.tanh() * p.get(0).get(1);
        let out = e0.matmul(&self.w[1].1) * p.get(1).get(0) + e0.matmul(&self.w[2].1).sin() * p.get(1).get(1);
        out.cross_entropy_for_logits(y)
    }

    /// The host's weight step, plain SGD: the weights move in place. With `fill_alpha_grads`
    /// (`ArchTraining::BilevelWithTrainGrad`) the alphas' `.grad` is the same loss's gradient.
    fn sgd_step(&self, x: &Tensor, y: &Tensor, fill_alpha_grads: bool) {
        let mut w: Vec<Tensor> = self.w.iter().map(|(_, t)| t.shallow_clone()).collect();
        if fill_alpha_grads {
            w.push(self.a[0].1.shallow_clone());
        }
        let mut g = Tensor::run_backward(&[self.forward_loss(x, y)], &w, false, false);
        if fill_alpha_grads {
            let (a, ga) = (w.pop().unwrap(), g.pop().unwrap());
            a.shallow_clone().zero_grad();
            // Backward of <a, ga> leaves exactly ga in a.grad.
            (&a * ga.detach()).sum(Kind::Float).backward();
        }
        let _guard = archai_plugin_api::tch::no_grad_guard();
        for (w, g) in w.iter().zip(&g) {
            let _ = w.shallow_clone().f_sub_(&(g * self.lr)).unwrap();
        }
    }

    fn snapshot(&self) -> Vec<Tensor> {
        self.w.iter().chain(&self.a).map(|(_, t)| t.detach().copy()).collect()
    }
}

fn named(v: &[(String, Tensor)]) -> RVec<NamedTensor> {
    v.iter()
        .map(|(n, t)| NamedTensor { name: n.as_str().into(), tensor: TensorOwned::new(t.shallow_clone()) })
        .collect()
}

impl ModelServices for Net {
    fn weights(&self) -> RVec<NamedTensor> {
        named(&self.w)
    }
    fn arch_params(&self) -> RVec<NamedTensor> {
        named(&self.a)
    }
    fn loss(&mut self, x: TensorRef<'_>, y: TensorRef<'_>) -> RResult<TensorOwned, RString> {
        RResult::ROk(TensorOwned::new(self.forward_loss(&x.view(), &y.view())))
    }
    fn weight_optimizer(&self) -> RString {
        serde_json::json!({"lr": self.lr, "momentum": 0.9, "weight_decay": 3e-4}).to_string().into()
    }
    fn momentum_buffers(&self) -> RVec<NamedTensor> {
        named(&self.bufs)
    }
    fn logits(&mut self, _x: TensorRef<'_>, _train: bool) -> RResult<TensorOwned, RString> {
        RResult::RErr("this test net computes losses only".into())
    }
    fn candidate_outputs(&mut self, _x: TensorRef<'_>, _prefix: RStr<'_>) -> RResult<RVec<NamedTensor>, RString> {
        RResult::RErr("this test net computes losses only".into())
    }
    fn data_batch(&mut self, _index: u64, _batch_size: u64) -> RResult<RVec<TensorOwned>, RString> {
        RResult::RErr("this test net has no data".into())
    }
    fn write_artifact(&mut self, name: RStr<'_>, bytes: RSlice<'_, u8>) -> RResult<RString, RString> {
        self.artifacts.push((name.to_string(), bytes.to_vec()));
        RResult::ROk(format!("memory:{name}").into())
    }
    fn average_over_ranks(&mut self, tensors: RVec<TensorOwned>) -> RResult<RVec<TensorOwned>, RString> {
        RResult::ROk(tensors)
    }
}

impl SearchModel for Net {
    fn weights(&self) -> Vec<(String, Tensor)> {
        self.w.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }
    fn arch_params(&self) -> Vec<(String, Tensor)> {
        self.a.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }
    fn loss(&mut self, x: &Tensor, y: &Tensor) -> anyhow::Result<Tensor> {
        Ok(self.forward_loss(x, y))
    }
    fn weight_optimizer(&self) -> anyhow::Result<WeightOptimizerInfo> {
        Ok(WeightOptimizerInfo {
            lr: self.lr,
            momentum: 0.9,
            weight_decay: 3e-4,
            kind: archai_plugin_api::WeightOptimizerKind::Sgd,
            nesterov: false,
        })
    }
    fn momentum_buffers(&self) -> Vec<(String, Tensor)> {
        self.bufs.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }
}

fn data(step: i64) -> (Tensor, Tensor, Tensor, Tensor) {
    let seed = 100 + 4 * step as u64;
    let x = seeded::normal(&[16, 6], seed);
    let y = seeded::randint(4, &[16], seed + 1);
    let vx = seeded::normal(&[16, 6], seed + 2);
    let vy = seeded::randint(4, &[16], seed + 3);
    (x, y, vx, vy)
}

/// The batches of step `step` as the host hands them to `before_step`.
fn step_batch<'a>([x, y, vx, vy]: [&'a Tensor; 4], step: u64, lr: f64) -> StepBatch<'a> {
    StepBatch {
        x: TensorRef::new(x),
        y: TensorRef::new(y),
        val_x: TensorRef::new(vx),
        val_y: TensorRef::new(vy),
        epoch: 0,
        step,
        lr,
    }
}

#[test]
fn second_order_through_the_boundary_equals_in_process() {
    let m = module();
    let config = serde_json::json!({"order": 2, "arch_lr": 0.05}).to_string();
    let mut algo = ok((m.create_algorithm())(RStr::from("darts"), RStr::from(config.as_str())));

    let mut host = Net::new();
    let mut local = Net::new();
    let mut step = ArchStep::new(&DartsConfig { order: 2, arch_lr: 0.05, ..DartsConfig::default() });
    let w0 = host.snapshot();
    for s in 0..3 {
        let (x, y, vx, vy) = data(s);
        let batch = step_batch([&x, &y, &vx, &vy], s as u64, host.lr);
        let out = ok(algo.before_step(ModelServices_TO::from_ptr(RMut::new(&mut host), TD_Opaque), batch));
        let metrics: serde_json::Value = serde_json::from_str(out.as_str()).unwrap();
        let arch_loss = metrics["arch_loss"].as_f64().unwrap();

        let data = StepData { x, y, val_x: vx, val_y: vy, epoch: 0, step: s as u64, lr: local.lr };
        let local_loss = step.step(&mut local, &data).unwrap();
        assert_eq!(arch_loss, local_loss);
    }
    // The alphas moved, identically on both sides; the weights are back where they were, and
    // no gradient was left in them.
    let (a_host, a_local) = (&host.a[0].1, &local.a[0].1);
    assert!(a_host.equal(a_local));
    assert!(!a_host.equal(&w0[3]));
    for ((_, w), w0) in host.w.iter().zip(&w0) {
        assert!(w.equal(w0));
        assert!(!w.grad().defined());
    }

    let out = ok(algo.after_epoch(ModelServices_TO::from_ptr(RMut::new(&mut host), TD_Opaque), 0));
    let report: serde_json::Value = serde_json::from_str(out.as_str()).unwrap();
    let rows = report["alphas"]["normal"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(report["alpha_entropy"].as_f64().unwrap() < 3f64.ln());
}

/// `unroll: weight_step`: `before_step` only remembers, the host's weight step moves the
/// weights, and `after_step` takes the architecture step, as the same code in-process does.
#[test]
fn weight_step_unroll_through_the_boundary_equals_in_process() {
    weight_step_unroll_equals_in_process(Difference::Central);
}

/// `difference: one_sided`: the plugin asks for the weight step's architecture gradient and
/// reads the `.grad` the host's step left in the alphas.
#[test]
fn one_sided_difference_through_the_boundary_equals_in_process() {
    weight_step_unroll_equals_in_process(Difference::OneSided);
}

/// A search context for 28x28 grey images in 10 classes.
fn fashion_mnist_context() -> SearchContext {
    SearchContext {
        channels: 1,
        image_size: 28,
        num_classes: 10,
        seed: 0,
        epochs: 1,
        steps_per_epoch: 1,
        val_batch_size: 0,
    }
}

fn weight_step_unroll_equals_in_process(difference: Difference) {
    let m = module();
    let config =
        serde_json::json!({"order": 2, "arch_lr": 0.05, "unroll": "weight_step", "difference": difference}).to_string();
    let mut algo = ok((m.create_algorithm())(RStr::from("darts"), RStr::from(config.as_str())));
    let one_sided = difference == Difference::OneSided;
    let wanted = if one_sided { ArchTraining::BilevelWithTrainGrad } else { ArchTraining::Bilevel };
    assert_eq!(ok(algo.search_space(fashion_mnist_context())).arch_training, wanted);
    let mut host = Net::new();
    let mut local = Net::new();
    let mut step = ArchStep::new(&DartsConfig {
        order: 2,
        arch_lr: 0.05,
        unroll: Unroll::WeightStep,
        difference,
        ..DartsConfig::default()
    });
    let a0 = host.a[0].1.detach().copy();
    for s in 0..3 {
        let (x, y, vx, vy) = data(s);
        let batch = step_batch([&x, &y, &vx, &vy], s as u64, host.lr);
        let before = ok(algo.before_step(ModelServices_TO::from_ptr(RMut::new(&mut host), TD_Opaque), batch));
        assert_eq!(before.as_str(), "{}");
        if s == 0 {
            assert!(host.a[0].1.equal(&a0), "the alphas wait for the weight step");
        }
        let data = StepData { x, y, val_x: vx, val_y: vy, epoch: 0, step: s as u64, lr: local.lr };
        step.before_weight_step(&mut local, &data).unwrap();
        for net in [&host, &local] {
            net.sgd_step(&data.x, &data.y, one_sided);
        }
        let outcome = StepOutcome { epoch: 0, step: s as u64, lr: host.lr, loss: 0.0 };
        let out = ok(algo.after_step(ModelServices_TO::from_ptr(RMut::new(&mut host), TD_Opaque), outcome));
        let metrics: serde_json::Value = serde_json::from_str(out.as_str()).unwrap();
        let lr = local.lr;
        let local_loss = step.after_weight_step(&mut local, lr).unwrap();
        // JSON parsing (serde_json without `float_roundtrip`) may be off in the last bit.
        let arch_loss = metrics["arch_loss"].as_f64().expect("arch_loss logged after the step");
        assert!((arch_loss - local_loss).abs() <= 1e-15 * local_loss.abs(), "{metrics} vs {local_loss}");
    }
    assert!(host.a[0].1.equal(&local.a[0].1));
    assert!(!host.a[0].1.equal(&a0));
    for ((_, w), (_, w_local)) in host.w.iter().zip(&local.w) {
        assert!(w.equal(w_local) && !w.grad().defined());
    }
}

#[test]
fn errors_cross_as_messages() {
    let m = module();
    let e = match (m.create_algorithm())(RStr::from("darts"), RStr::from(r#"{"oder": 2}"#)) {
        RResult::RErr(e) => e.into_string(),
        RResult::ROk(_) => panic!("accepted an unknown key"),
    };
    assert!(e.contains("oder") && e.contains("order"), "{e}");
    // No validation batch: an error, not a crash.
    let mut algo = ok((m.create_algorithm())(RStr::from("darts"), RStr::from("{}")));
    let mut host = Net::new();
    let (x, y, _, _) = data(0);
    let undefined = Tensor::new();
    let batch = step_batch([&x, &y, &undefined, &undefined], 0, 0.1);
    match algo.before_step(ModelServices_TO::from_ptr(RMut::new(&mut host), TD_Opaque), batch) {
        RResult::RErr(e) => assert!(e.contains("validation batch"), "{e}"),
        RResult::ROk(_) => panic!("no error"),
    }
}

#[test]
fn model_desc_and_finalizer_through_the_boundary() {
    let m = module();
    let mut algo =
        ok((m.create_algorithm())(RStr::from("darts"), RStr::from(r#"{"macro": {"layers": 5, "channels": 8}}"#)));
    let space = ok(algo.search_space(fashion_mnist_context()));
    assert_eq!(space.arch_training, ArchTraining::Bilevel);
    let yaml = space.model_desc_yaml;
    let search = ModelDesc::from_yaml(yaml.as_str(), "plugin output").unwrap();
    let mixer = MixerDesc { name: "softmax".into(), params: Default::default() };
    let expected = DartsMacro {
        layers: 5,
        nodes: 4,
        channels: 8,
        stem_multiplier: 3,
        stem_stride: 1,
        auxiliary: false,
        reduction_cells: None,
    }
    .build(
        "darts_search",
        InputDesc { channels: 1, size: 28 },
        10,
        &CellFill::Search { candidates: &darts_primitives(), mixer: &mixer },
    )
    .unwrap();
    assert_eq!(search, expected);

    let mut fin = ok((m.create_finalizer())(RStr::from("darts-topk"), RStr::from(r#"{"k": 2, "channels": 12}"#)));
    let normal = Tensor::zeros([14, 8], OPTS);
    let _ = normal.narrow(1, 4, 1).fill_(1.0);
    let reduce = Tensor::zeros([14, 8], OPTS);
    let _ = reduce.narrow(1, 1, 1).fill_(1.0);
    let mut host = Net::new();
    host.a = vec![("alphas.normal".into(), normal), ("alphas.reduce".into(), reduce)];
    let out = ok(fin.finalize(RStr::from(yaml.as_str()), ModelServices_TO::from_ptr(RMut::new(&mut host), TD_Opaque)));
    let d = ModelDesc::from_yaml(out.as_str(), "finalizer output").unwrap();
    assert_eq!(d.cells.len(), 5);
    assert_eq!(d.cells[0].c, 12);
    assert!(d.cells.iter().all(|c| c.mixed_edges() == 0));
    let ops = |red: bool| -> Vec<String> {
        d.cells
            .iter()
            .filter(|c| c.reduction == red)
            .flat_map(|c| c.nodes.iter().flat_map(|n| n.edges.iter().map(|e| e.op.clone())))
            .collect()
    };
    assert!(ops(false).iter().all(|o| o == "sep_conv_3x3"));
    assert!(ops(true).iter().all(|o| o == "max_pool_3x3"));
    // Ops separated by 1.0 in alpha are not fragile; which edges a node keeps is (every edge is
    // equally strong: margin 0), so per cell type the 3 nodes with more than 2 edges make
    // 3 fragile choices among 8 op choices + 3 edge choices. One candidate 1.0 above seven
    // others is still 95.9% of the uniform entropy: undecided by the default threshold (0.9).
    let (name, bytes) = host.artifacts.last().expect("the finalizer reports decisiveness");
    assert_eq!(name, archai_plugin_api::model_desc::report::DECISIVENESS_ARTIFACT);
    let report: archai_plugin_api::model_desc::report::Decisiveness = serde_json::from_slice(bytes).unwrap();
    assert_eq!((report.choices, report.fragile, report.edges.len()), (22, 6, 28), "{report:?}");
    assert!(!report.decided && report.edges.iter().all(|e| e.alpha_margin == 1.0), "{}", report.verdict);
    assert!(report.verdict.contains("entropy 95.9055% of uniform, 6 of 22 choices"), "{}", report.verdict);
}
