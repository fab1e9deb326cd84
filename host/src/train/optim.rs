//! Optimizers written over named tensors with in-place libtorch ops, so their state (momentum
//! buffers) is visible to algorithms (DARTS' unrolled step needs it) and to checkpoints.
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
}

/// `optimizer:` section of a trainer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub nesterov: bool,
    #[serde(default)]
    pub weight_decay: f64,
    /// Exclude batch-norm parameters and biases (1-D tensors) from weight decay.
    #[serde(default)]
    pub no_decay_bn_bias: bool,
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
}

fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}

/// One optimizer over a fixed list of named parameters.
pub struct Optimizer {
    pub config: OptimizerConfig,
    params: Vec<(String, Tensor)>,
    decay: Vec<bool>,
    /// SGD momentum buffers or Adam first moments; undefined until the first step.
    pub buf: Vec<Tensor>,
    sq: Vec<Tensor>,
    steps: i64,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, params: Vec<(String, Tensor)>) -> Self {
        let decay = params.iter().map(|(_, p)| !(config.no_decay_bn_bias && p.dim() <= 1)).collect();
        let n = params.len();
        Self {
            config,
            params,
            decay,
            buf: (0..n).map(|_| Tensor::new()).collect(),
            sq: (0..n).map(|_| Tensor::new()).collect(),
            steps: 0,
        }
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// Global L2 norm of the gradients, clipped to `max_norm` in place; returns the norm before.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).collect();
        let total: f64 = grads.iter().map(|g| g.square().sum(tch::Kind::Float).double_value(&[])).sum::<f64>().sqrt();
        if total > max_norm {
            let scale = max_norm / (total + 1e-6);
            for mut g in grads {
                let _ = g.g_mul_scalar_(scale);
            }
        }
        total
    }

    /// One update with learning rate `lr` (the scheduler's value for this step).
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        let c = self.config.clone();
        for i in 0..self.params.len() {
            let p = &mut self.params[i].1;
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let wd = if self.decay[i] { c.weight_decay } else { 0.0 };
            match c.kind {
                OptimizerKind::Sgd => {
                    let d = if wd != 0.0 { &g + &*p * wd } else { g.shallow_clone() };
                    let d = if c.momentum != 0.0 {
                        if self.buf[i].defined() {
                            let _ = self.buf[i].g_mul_scalar_(c.momentum).g_add_(&d);
                        } else {
                            self.buf[i] = d.detach().copy();
                        }
                        if c.nesterov {
                            d + &self.buf[i] * c.momentum
                        } else {
                            self.buf[i].shallow_clone()
                        }
                    } else {
                        d
                    };
                    let _ = p.g_sub_(&(d * lr));
                }
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    let g = if c.kind == OptimizerKind::Adam && wd != 0.0 { &g + &*p * wd } else { g.shallow_clone() };
                    if c.kind == OptimizerKind::Adamw && wd != 0.0 {
                        let _ = p.g_mul_scalar_(1.0 - lr * wd);
                    }
                    let [b1, b2] = c.betas;
                    if !self.buf[i].defined() {
                        self.buf[i] = g.zeros_like();
                        self.sq[i] = g.zeros_like();
                    }
                    let _ = self.buf[i].g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                    let _ = self.sq[i].g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
                    let bc1 = 1.0 - b1.powi(self.steps as i32);
                    let bc2 = 1.0 - b2.powi(self.steps as i32);
                    let denom = (&self.sq[i] / bc2).sqrt() + c.eps;
                    let _ = p.g_sub_(&(&self.buf[i] / denom * (lr / bc1)));
                }
            }
        }
    }

    /// State for checkpoints: buffers by parameter name.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("__steps".to_string(), Tensor::from(self.steps))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            if self.buf[i].defined() {
                out.push((format!("buf.{name}"), self.buf[i].shallow_clone()));
            }
            if self.sq[i].defined() {
                out.push((format!("sq.{name}"), self.sq[i].shallow_clone()));
            }
        }
        out
    }

    /// Restores what [`Self::state`] saved.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) {
        for (k, v) in state {
            if k == "__steps" {
                self.steps = v.int64_value(&[]);
            }
        }
        for (i, (name, _)) in self.params.iter().enumerate() {
            for (k, v) in state {
                if *k == format!("buf.{name}") {
                    self.buf[i] = v.copy();
                } else if *k == format!("sq.{name}") {
                    self.sq[i] = v.copy();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn param(v: &[f32]) -> Tensor {
        Tensor::from_slice(v).set_requires_grad(true)
    }

    #[test]
    fn sgd_momentum_and_weight_decay_match_pytorch_formulas() {
        let p = param(&[1.0, -2.0]);
        let cfg = OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.5,
            no_decay_bn_bias: false,
            betas: default_betas(),
            eps: 1e-8,
        };
        let mut opt = Optimizer::new(cfg, vec![("p".into(), p.shallow_clone())]);
        for _ in 0..2 {
            opt.zero_grad();
            (&p * &p).sum(Kind::Float).backward();
            opt.step(0.1);
        }
        // step 1: d = 2p + 0.5p = 2.5p -> buf = [2.5,-5], p = [0.75,-1.5]
        // step 2: d = 2.5p = [1.875,-3.75], buf = 0.9*[2.5,-5] + d = [4.125,-8.25], p -= 0.1*buf
        let got = Vec::<f64>::try_from(&p).unwrap();
        assert!((got[0] - (0.75 - 0.4125)).abs() < 1e-6 && (got[1] - (-1.5 + 0.825)).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        let p = param(&[3.0]);
        let cfg = OptimizerConfig {
            kind: OptimizerKind::Adam,
            lr: 0.01,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            no_decay_bn_bias: false,
            betas: [0.9, 0.999],
            eps: 1e-8,
        };
        let mut opt = Optimizer::new(cfg, vec![("p".into(), p.shallow_clone())]);
        (&p * 2.0).sum(Kind::Float).backward();
        opt.step(0.01);
        assert!((p.double_value(&[0]) - 2.99).abs() < 1e-6);
    }
}
