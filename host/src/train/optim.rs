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

/// `trainer.param_groups[]`: parameters selected by name get their own optimizer settings.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParamGroupConfig {
    pub name: String,
    /// Glob patterns over parameter names (`*` any run of characters, `?` one character), e.g.
    /// `classifier.*` or `cells.*.pre0.*`.
    pub params: Vec<String>,
    pub optimizer: OptimizerConfig,
}

/// `*` / `?` glob match of a whole name.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One optimizer over a fixed list of named parameters, with optional parameter groups that
/// have their own settings (kind, lr, momentum, weight decay...). Each group follows the
/// schedule from its own base lr ([`Optimizer::schedule`]), as PyTorch schedulers do.
pub struct Optimizer {
    /// Settings per group: index 0 is the default group (every parameter no group claims),
    /// then `param_groups` in order.
    groups: Vec<(String, OptimizerConfig)>,
    /// Current lr of the groups after the default one (set by `schedule`).
    group_lrs: Vec<f64>,
    group_of: Vec<usize>,
    params: Vec<(String, Tensor)>,
    decay: Vec<bool>,
    /// SGD momentum buffers or Adam first moments; undefined until the first step.
    pub buf: Vec<Tensor>,
    sq: Vec<Tensor>,
    steps: i64,
    /// libtorch's optimizer over the same tensors, used only for its `zero_grad`, which resets
    /// gradients to undefined (PyTorch's `set_to_none`): a parameter that gets no gradient in a
    /// step (a candidate GDAS did not sample) is then skipped by `step`, as in PyTorch, instead
    /// of being decayed and moved by its momentum because an earlier step left a zero gradient.
    /// Zeroing in place made a resumed run (fresh, undefined gradients) diverge from an
    /// uninterrupted one.
    grad_reset: tch::COptimizer,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, params: Vec<(String, Tensor)>) -> Self {
        Self::with_groups(config, &[], params).expect("no groups, nothing to mismatch")
    }

    /// An optimizer whose parameters matched by `groups` use those groups' settings. A pattern
    /// that matches nothing, or a parameter claimed by two groups, is an error naming both.
    pub fn with_groups(
        config: OptimizerConfig,
        groups: &[ParamGroupConfig],
        params: Vec<(String, Tensor)>,
    ) -> Result<Self, String> {
        let mut group_of = vec![0; params.len()];
        for (gi, g) in groups.iter().enumerate() {
            for pattern in &g.params {
                let mut hits = 0;
                for (pi, (name, _)) in params.iter().enumerate() {
                    if !glob_match(pattern, name) {
                        continue;
                    }
                    hits += 1;
                    let owner = group_of[pi];
                    if owner != 0 && owner != gi + 1 {
                        return Err(format!(
                            "parameter `{name}` matches param_groups `{}` and `{}`; make the patterns disjoint",
                            groups[owner - 1].name,
                            g.name
                        ));
                    }
                    group_of[pi] = gi + 1;
                }
                if hits == 0 {
                    let some: Vec<&str> = params.iter().take(6).map(|(n, _)| n.as_str()).collect();
                    return Err(format!(
                        "param_groups `{}`: pattern `{pattern}` matches no parameter (names look like {})",
                        g.name,
                        some.join(", ")
                    ));
                }
            }
        }
        let mut all = vec![("default".to_string(), config)];
        all.extend(groups.iter().map(|g| (g.name.clone(), g.optimizer.clone())));
        let decay =
            params.iter().zip(&group_of).map(|((_, p), &g)| !(all[g].1.no_decay_bn_bias && p.dim() <= 1)).collect();
        let n = params.len();
        let mut grad_reset = tch::COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false).map_err(|e| e.to_string())?;
        for (_, p) in &params {
            grad_reset.add_parameters(p, 0).map_err(|e| e.to_string())?;
        }
        Ok(Self {
            grad_reset,
            group_lrs: groups.iter().map(|g| g.optimizer.lr).collect(),
            groups: all,
            group_of,
            params,
            decay,
            buf: (0..n).map(|_| Tensor::new()).collect(),
            sq: (0..n).map(|_| Tensor::new()).collect(),
            steps: 0,
        })
    }

    /// The default group's settings.
    pub fn config(&self) -> &OptimizerConfig {
        &self.groups[0].1
    }

    /// Sets each extra group's lr from its base lr (`lr_at(base)`: the schedule at this step).
    /// The default group's lr is the one passed to [`Optimizer::step`].
    pub fn schedule(&mut self, lr_at: impl Fn(f64) -> f64) {
        for (lr, (_, c)) in self.group_lrs.iter_mut().zip(self.groups.iter().skip(1)) {
            *lr = lr_at(c.lr);
        }
    }

    /// Current lr per group name (default first, given its current `lr`).
    pub fn group_lrs(&self, lr_default: f64) -> Vec<(String, f64)> {
        std::iter::once(lr_default)
            .chain(self.group_lrs.iter().copied())
            .zip(&self.groups)
            .map(|(lr, (name, _))| (name.clone(), lr))
            .collect()
    }

    /// Parameter count per group name (default first).
    pub fn group_sizes(&self) -> Vec<(String, usize)> {
        self.groups
            .iter()
            .enumerate()
            .map(|(gi, (name, _))| (name.clone(), self.group_of.iter().filter(|&&g| g == gi).count()))
            .collect()
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    pub fn zero_grad(&mut self) {
        self.grad_reset.zero_grad().expect("resetting gradients cannot fail for leaf tensors");
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

    /// One update: the default group at `lr_default` (the schedule's value for this step), the
    /// other groups at the lrs [`Optimizer::schedule`] set last (their base lrs before that).
    pub fn step(&mut self, lr_default: f64) {
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        for i in 0..self.params.len() {
            let g = self.group_of[i];
            let c = &self.groups[g].1;
            let lr = if g == 0 { lr_default } else { self.group_lrs[g - 1] };
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

    /// A parameter the loss does not reach in a step (an unsampled GDAS candidate) is left alone,
    /// as PyTorch does, even when an earlier step gave it a gradient and a momentum buffer; a
    /// resumed run, whose gradients start undefined, then trains exactly like an uninterrupted one.
    #[test]
    fn a_parameter_without_gradient_in_a_step_is_not_moved() {
        let (a, b) = (param(&[1.0, 2.0]), param(&[3.0]));
        let config = OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.01,
            no_decay_bn_bias: false,
            betas: [0.9, 0.999],
            eps: 1e-8,
        };
        let mut opt = Optimizer::new(config, vec![("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())]);
        opt.zero_grad();
        (a.sum(Kind::Float) + b.sum(Kind::Float)).backward();
        opt.step(0.1);
        let b_after_first = b.detach().copy();
        opt.zero_grad();
        assert!(!b.grad().defined(), "zero_grad resets gradients to undefined");
        a.sum(Kind::Float).backward();
        opt.step(0.1);
        assert!(b.equal(&b_after_first), "b got no gradient but moved: {b}");
        assert!(!a.equal(&Tensor::from_slice(&[1.0f32, 2.0])));
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
    fn glob_patterns_match_whole_names() {
        assert!(glob_match("classifier.*", "classifier.weight"));
        assert!(glob_match("cells.*.pre0.*", "cells.3.pre0.conv.weight"));
        assert!(glob_match("stem.?.bn.*", "stem.0.bn.weight"));
        assert!(!glob_match("stem.?.bn.*", "stem.10.bn.weight"));
        assert!(!glob_match("classifier", "classifier.weight"));
        assert!(glob_match("*", "anything"));
    }

    fn sgd(lr: f64) -> OptimizerConfig {
        OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            no_decay_bn_bias: false,
            betas: default_betas(),
            eps: 1e-8,
        }
    }

    #[test]
    fn param_groups_get_their_own_settings_and_the_schedule_factor() {
        let (a, b) = (param(&[1.0]), param(&[1.0]));
        let groups = vec![ParamGroupConfig {
            name: "head".into(),
            params: vec!["head.*".into()],
            optimizer: OptimizerConfig { kind: OptimizerKind::Adam, ..sgd(0.01) },
        }];
        let params = vec![("body.w".to_string(), a.shallow_clone()), ("head.w".to_string(), b.shallow_clone())];
        let mut opt = Optimizer::with_groups(sgd(0.0), &groups, params).unwrap();
        assert_eq!(opt.group_sizes(), vec![("default".to_string(), 1), ("head".to_string(), 1)]);
        (&a * 2.0 + &b * 2.0).sum(Kind::Float).backward();
        // The default group is frozen (lr 0); the head follows the schedule from its own base
        // lr: here half of it, and Adam's first step moves by exactly its lr.
        opt.schedule(|base| base * 0.5);
        assert_eq!(opt.group_lrs(0.0), vec![("default".to_string(), 0.0), ("head".to_string(), 0.005)]);
        opt.step(0.0);
        assert_eq!(a.double_value(&[0]), 1.0);
        assert!((b.double_value(&[0]) - 0.995).abs() < 1e-6, "{}", b.double_value(&[0]));
    }

    #[test]
    fn param_group_mistakes_are_named() {
        let group = |name: &str, pattern: &str| ParamGroupConfig {
            name: name.into(),
            params: vec![pattern.into()],
            optimizer: sgd(0.1),
        };
        let params = || vec![("body.w".to_string(), param(&[1.0])), ("head.w".to_string(), param(&[1.0]))];
        let e = Optimizer::with_groups(sgd(0.1), &[group("h", "haed.*")], params()).err().unwrap();
        assert!(e.contains("`haed.*` matches no parameter") && e.contains("head.w"), "{e}");
        let e = Optimizer::with_groups(sgd(0.1), &[group("a", "*.w"), group("b", "head.*")], params()).err().unwrap();
        assert!(e.contains("`head.w` matches param_groups `a` and `b`"), "{e}");
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
