//! An example third-party archai plugin, built outside the archai workspace against
//! `archai-plugin-api` alone. It shows each kind of extension:
//!
//! - op `scale_by`: a learnable per-channel scale (parameters created through the host);
//! - mixer `sigmoid-gates`: its own mixing rule for `mixed` edges, each candidate gated by an
//!   independent sigmoid(α) instead of a softmax (the rule of Fair DARTS, Chu et al. 2020), with
//!   its candidates built through the host;
//! - algorithm `gated`: a search over the DARTS cell space with those gates, trained at a single
//!   level (the host backpropagates the training loss into α; `after_step` applies Adam from the
//!   API's kit);
//! - algorithm `fixed`: proposes the model description in its config and shows every training
//!   hook (it counts steps and checks their order).
//!
//! `gated` is discretized with the `darts-topk` finalizer of the `darts` plugin (top-2 edges per
//! node by the best candidate's softmax weight), which is a stand-in: Fair DARTS itself ranks by
//! the sigmoid gates.
use archai_plugin_api::kit::adam::Adam;
use archai_plugin_api::kit::arch::apply_train_grads;
use archai_plugin_api::kit::config::darts_primitives;
use archai_plugin_api::model_desc::{CellFill, DartsMacro, MixerDesc, ModelDesc};
use archai_plugin_api::tch::Tensor;
use archai_plugin_api::{
    export_plugin, register_algorithm, register_mixer, register_op, Algorithm, ArchTraining, HostOp, Init,
    MixerConfig, Model, Op, ParamBuilder, SearchContext, SearchPlan, StepData, StepOutcome,
};

export_plugin!();

/// y = x * s, with s a learnable per-channel scale created by the host.
struct ScaleBy {
    scale: Tensor,
}

impl Op for ScaleBy {
    fn forward(&self, inputs: &[Tensor], _train: bool) -> anyhow::Result<Tensor> {
        let x = &inputs[0];
        // Written with a panicking check on purpose: the host catches plugin panics and reports
        // them with the plugin and component names (the tests rely on this).
        assert_eq!(x.dim(), 4, "scale_by expects an N x C x H x W input");
        Ok(x * self.scale.view([1, -1, 1, 1]))
    }
}

fn create_scale_by(config: &serde_json::Value, params: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let channels = config["channels"].as_i64().ok_or_else(|| anyhow::anyhow!("scale_by needs `channels: <int>`"))?;
    let init = config["init"].as_f64().unwrap_or(1.0);
    Ok(Box::new(ScaleBy { scale: params.weight("scale", &[channels], Init::Const(init))? }))
}

/// The `sigmoid-gates` mixer: out = sum_i sigmoid(alpha[row, i]) * candidate_i(x).
struct SigmoidGates {
    alpha: Tensor,
    row: i64,
    ops: Vec<(i64, HostOp)>,
}

impl Op for SigmoidGates {
    fn forward(&self, inputs: &[Tensor], train: bool) -> anyhow::Result<Tensor> {
        let gates = self.alpha.f_get(self.row)?.f_sigmoid()?;
        let mut out: Option<Tensor> = None;
        for (i, op) in &self.ops {
            let y = op.forward(&[&inputs[0]], train)? * gates.get(*i);
            out = Some(match out {
                Some(o) => o + y,
                None => y,
            });
        }
        out.ok_or_else(|| anyhow::anyhow!("sigmoid-gates: the edge has only `none` candidates"))
    }
}

fn create_sigmoid_gates(config: &MixerConfig, p: &mut ParamBuilder) -> anyhow::Result<Box<dyn Op>> {
    let name: String = config.param("sigmoid-gates", "alpha")?;
    let alpha = p.arch_param(&name)?;
    let params = serde_json::Value::Object(config.candidate_params.clone());
    let mut ops = Vec::new();
    for (i, c) in config.candidates.iter().enumerate() {
        if c != "none" {
            ops.push((i as i64, p.op(c, &params, c)?));
        }
    }
    Ok(Box::new(SigmoidGates { alpha, row: config.param("sigmoid-gates", "row")?, ops }))
}

/// The `gated` algorithm: the DARTS cell space with sigmoid gates, single-level Adam on α.
struct Gated {
    macro_: DartsMacro,
    adam: Adam,
}

impl Algorithm for Gated {
    fn search_space(&mut self, ctx: &SearchContext) -> anyhow::Result<SearchPlan> {
        let mixer = MixerDesc { name: "sigmoid-gates".into(), params: Default::default() };
        let candidates = darts_primitives();
        let desc = self.macro_.build(
            "gated_search",
            ctx.input(),
            ctx.num_classes,
            &CellFill::Search { candidates: &candidates, mixer: &mixer },
        )?;
        Ok(SearchPlan { desc, arch_training: ArchTraining::TrainLoss })
    }

    fn after_step(&mut self, model: &mut Model<'_, '_>, _outcome: &StepOutcome) -> anyhow::Result<serde_json::Value> {
        let norm = apply_train_grads(model, &mut self.adam)?;
        Ok(serde_json::json!({ "gate_grad_norm": norm }))
    }

    fn after_epoch(&mut self, model: &mut Model<'_, '_>, _epoch: u32) -> anyhow::Result<serde_json::Value> {
        // The mean gate value of each alpha parameter: how open the edges are.
        let mut out = serde_json::Map::new();
        for (name, a) in model.arch_params() {
            out.insert(format!("mean_gate.{name}"), a.f_sigmoid()?.f_mean(a.kind())?.f_double_value(&[])?.into());
        }
        Ok(out.into())
    }

    fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        self.adam.state()
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        self.adam.load_state(state)
    }
}

fn create_gated(config: &serde_json::Value) -> anyhow::Result<Box<dyn Algorithm>> {
    let macro_: DartsMacro = match config.get("macro") {
        Some(m) => serde_json::from_value(m.clone()).map_err(|e| anyhow::anyhow!("gated config `macro`: {e}"))?,
        None => DartsMacro::default(),
    };
    let lr = config.get("arch_lr").and_then(|v| v.as_f64()).unwrap_or(3e-3);
    Ok(Box::new(Gated { macro_, adam: Adam::new(lr, [0.9, 0.999], 1e-8, 0.0) }))
}

/// Proposes the model description given as `model_desc` in its config, and shows every
/// training hook: it counts steps before and after the weight update and records epochs.
struct Fixed {
    desc: String,
    steps: u64,
    epoch: Option<u32>,
    loss_sum: f64,
}

impl Algorithm for Fixed {
    fn search_space(&mut self, _ctx: &SearchContext) -> anyhow::Result<SearchPlan> {
        let desc = ModelDesc::from_yaml(&self.desc, "fixed config `model_desc`")?;
        Ok(SearchPlan { desc, arch_training: ArchTraining::Manual })
    }

    fn before_step(&mut self, _model: &mut Model<'_, '_>, _batch: &StepData) -> anyhow::Result<serde_json::Value> {
        self.steps += 1;
        Ok(serde_json::json!({ "steps_seen": self.steps }))
    }

    fn before_epoch(&mut self, _model: &mut Model<'_, '_>, epoch: u32) -> anyhow::Result<serde_json::Value> {
        self.epoch = Some(epoch);
        Ok(serde_json::json!({ "started_epoch": epoch, "steps_so_far": self.steps }))
    }

    fn after_step(&mut self, _model: &mut Model<'_, '_>, outcome: &StepOutcome) -> anyhow::Result<serde_json::Value> {
        anyhow::ensure!(
            self.epoch == Some(outcome.epoch),
            "after_step of epoch {} before its before_epoch",
            outcome.epoch
        );
        self.loss_sum += outcome.loss;
        Ok(serde_json::json!({ "loss_seen": outcome.loss, "lr_seen": outcome.lr }))
    }
}

fn create_fixed(config: &serde_json::Value) -> anyhow::Result<Box<dyn Algorithm>> {
    let desc = config["model_desc"].as_str().ok_or_else(|| anyhow::anyhow!("fixed needs `model_desc: <yaml text>`"))?;
    Ok(Box::new(Fixed { desc: desc.to_string(), steps: 0, epoch: None, loss_sum: 0.0 }))
}

register_op!("scale_by", "learnable per-channel scale (third-party example)", create_scale_by);
register_mixer!(
    "sigmoid-gates",
    "each candidate gated by sigmoid(alpha[row, i]) (Fair DARTS rule; third-party example); params alpha, row",
    create_sigmoid_gates
);
register_algorithm!(
    "gated",
    "single-level search over the DARTS cell space with sigmoid-gated edges (third-party example)",
    create_gated
);
register_algorithm!("fixed", "proposes the model description in its config (third-party example)", create_fixed);
