//! An example third-party archai plugin: one op (`scale_by`, a learnable per-channel scale) and one
//! trivial algorithm (`fixed`, which proposes a model description given in its config and counts
//! the training steps it sees).
use archai_plugin_api::tch::Tensor;
use archai_plugin_api::{
    export_plugin, register_algorithm, register_op, Algorithm, Init, Model, Op, ParamBuilder, StepData, StepOutcome,
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

/// Proposes the model description given as `model_desc` in its config, and shows every
/// training hook: it counts steps before and after the weight update and records epochs.
struct Fixed {
    desc: String,
    steps: u64,
    epoch: Option<u32>,
    loss_sum: f64,
}

impl Algorithm for Fixed {
    fn model_desc(&mut self, _context: &serde_json::Value) -> anyhow::Result<String> {
        Ok(self.desc.clone())
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
register_algorithm!("fixed", "proposes the model description in its config (third-party example)", create_fixed);
