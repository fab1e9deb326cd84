//! Adam for the architecture parameters, with the semantics of `torch.optim.Adam`
//! (`amsgrad = false`, L2 weight decay added to the gradient). The parameters are updated in place
//! under `no_grad`; the moment estimates persist across steps.
use tch::{no_grad_guard, Tensor};

struct Moments {
    name: String,
    m: Tensor,
    v: Tensor,
    step: i32,
}

/// Adam over a fixed list of named parameters.
pub struct Adam {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    state: Vec<Moments>,
}

impl Adam {
    pub fn new(lr: f64, betas: [f64; 2], eps: f64, weight_decay: f64) -> Self {
        Self { lr, betas, eps, weight_decay, state: Vec::new() }
    }

    /// Steps taken so far (0 before the first).
    pub fn steps(&self) -> i32 {
        self.state.first().map_or(0, |s| s.step)
    }

    /// The moments and step counts as named tensors (`adam.<param>.m`, `.v`, `.step`), in the
    /// parameters' order.
    pub fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for st in &self.state {
            out.push((format!("adam.{}.m", st.name), st.m.f_detach_copy()?));
            out.push((format!("adam.{}.v", st.name), st.v.f_detach_copy()?));
            out.push((format!("adam.{}.step", st.name), Tensor::from(st.step as i64)));
        }
        Ok(out)
    }

    /// Restores what [`Adam::state`] returned (replacing any state held now).
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        let mut moments: Vec<Moments> = Vec::new();
        for (key, t) in state {
            let rest = key.strip_prefix("adam.").ok_or_else(|| anyhow::anyhow!("unexpected state entry `{key}`"))?;
            let (name, field) =
                rest.rsplit_once('.').ok_or_else(|| anyhow::anyhow!("unexpected state entry `{key}`"))?;
            let i = match moments.iter().position(|m| m.name == name) {
                Some(i) => i,
                None => {
                    moments.push(Moments { name: name.into(), m: Tensor::new(), v: Tensor::new(), step: 0 });
                    moments.len() - 1
                }
            };
            match field {
                "m" => moments[i].m = t,
                "v" => moments[i].v = t,
                "step" => moments[i].step = t.f_int64_value(&[])? as i32,
                _ => anyhow::bail!("unexpected state entry `{key}`"),
            }
        }
        if let Some(m) = moments.iter().find(|m| !m.m.defined() || !m.v.defined()) {
            anyhow::bail!("Adam state for `{}` lacks its moments", m.name);
        }
        self.state = moments;
        Ok(())
    }

    /// One update of `params` (updated in place) with `grads` (same order; an undefined gradient
    /// counts as zero). The first call fixes the parameter list; later calls must pass the same names.
    pub fn step(&mut self, params: &[(String, Tensor)], grads: &[Tensor]) -> anyhow::Result<()> {
        anyhow::ensure!(params.len() == grads.len(), "adam: {} parameters but {} gradients", params.len(), grads.len());
        let _guard = no_grad_guard();
        if self.state.is_empty() {
            for (name, p) in params {
                self.state.push(Moments { name: name.clone(), m: p.f_zeros_like()?, v: p.f_zeros_like()?, step: 0 });
            }
        }
        let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        let known: Vec<&str> = self.state.iter().map(|s| s.name.as_str()).collect();
        anyhow::ensure!(
            names == known,
            "adam: the architecture parameters changed between steps (had {known:?}, now {names:?})"
        );
        let [b1, b2] = self.betas;
        for ((_, p), (g, st)) in params.iter().zip(grads.iter().zip(self.state.iter_mut())) {
            let mut p = p.shallow_clone();
            let g = if g.defined() { g.shallow_clone() } else { p.f_zeros_like()? };
            let g = if self.weight_decay != 0.0 { g.f_add(&p.f_mul_scalar(self.weight_decay)?)? } else { g };
            st.step += 1;
            // m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g^2
            let _ = st.m.f_lerp_(&g, 1.0 - b1)?;
            let _ = st.v.f_mul_scalar_(b2)?;
            let _ = st.v.f_addcmul_(&g, &g.f_mul_scalar(1.0 - b2)?)?;
            let bias1 = 1.0 - b1.powi(st.step);
            let bias2 = 1.0 - b2.powi(st.step);
            let step_size = self.lr / bias1;
            let denom = st.v.f_sqrt()?.f_div_scalar(bias2.sqrt())?.f_add_scalar(self.eps)?;
            let _ = p.f_sub_(&st.m.f_div(&denom)?.f_mul_scalar(step_size)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn state_round_trip_continues_identically() {
        let a = Tensor::from_slice(&[0.5f64, -1.0]);
        let g = Tensor::from_slice(&[0.3f64, 0.1]);
        let mut first = Adam::new(0.1, [0.5, 0.999], 1e-8, 1e-3);
        first.step(&[("a".into(), a.shallow_clone())], &[g.shallow_clone()]).unwrap();
        let mut resumed = Adam::new(0.1, [0.5, 0.999], 1e-8, 1e-3);
        resumed.load_state(first.state().unwrap()).unwrap();
        assert_eq!(resumed.steps(), 1);
        let b = a.copy();
        first.step(&[("a".into(), a.shallow_clone())], &[g.shallow_clone()]).unwrap();
        resumed.step(&[("a".into(), b.shallow_clone())], &[g.shallow_clone()]).unwrap();
        assert!(a.equal(&b));
        // A fresh Adam (bias correction restarting at step 1) would move differently.
        let c = b.copy();
        let d = b.copy();
        Adam::new(0.1, [0.5, 0.999], 1e-8, 1e-3)
            .step(&[("a".into(), c.shallow_clone())], &[g.shallow_clone()])
            .unwrap();
        resumed.step(&[("a".into(), d.shallow_clone())], &[g.shallow_clone()]).unwrap();
        assert!(!c.equal(&d));
        assert!(resumed.load_state(vec![("adam.a.q".into(), Tensor::from(1i64))]).is_err());
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(&t.to_kind(Kind::Double)).unwrap()
    }

    /// Three steps by hand (the formulas of torch.optim.Adam written out in f64) and the values
    /// torch.optim.Adam itself printed for the same inputs.
    #[test]
    fn matches_hand_computation_and_torch() {
        let (lr, b1, b2, eps, wd) = (0.1, 0.5, 0.999, 1e-8, 0.01);
        let p0 = [1.0f64, -2.0, 0.5];
        let grads = [[0.1f64, 0.2, 0.0], [-0.3, 0.05, 0.0], [0.2, -0.1, 1e-3]];

        let mut hand = p0;
        let (mut m, mut v) = ([0.0f64; 3], [0.0f64; 3]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..3 {
                let gi = g[i] + wd * hand[i];
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                let mhat = m[i] / (1.0 - b1.powi(t));
                let vhat = v[i] / (1.0 - b2.powi(t));
                hand[i] -= lr * mhat / (vhat.sqrt() + eps);
            }
        }

        let p = Tensor::from_slice(&p0).set_requires_grad(true);
        let params = vec![("alphas.normal".to_string(), p.shallow_clone())];
        let mut adam = Adam::new(lr, [b1, b2], eps, wd);
        for g in &grads {
            adam.step(&params, &[Tensor::from_slice(g)]).unwrap();
        }
        assert_eq!(adam.steps(), 3);
        let got = values(&p);
        // torch.optim.Adam([p], lr=0.1, betas=(0.5, 0.999), eps=1e-8, weight_decay=0.01), float64
        let torch = [0.9473167319532321f64, -2.1334943151924444, 0.2089629863531396];
        for i in 0..3 {
            assert!((got[i] - hand[i]).abs() < 1e-12, "{i}: {} vs hand {}", got[i], hand[i]);
            assert!((got[i] - torch[i]).abs() < 1e-12, "{i}: {} vs torch {}", got[i], torch[i]);
        }
        // The parameter stays a leaf that requires grad, and Adam wrote no gradient into it.
        assert!(p.requires_grad() && p.is_leaf());
        assert!(!p.grad().defined());
    }

    #[test]
    fn refuses_a_changed_parameter_list() {
        let mut adam = Adam::new(0.1, [0.9, 0.999], 1e-8, 0.0);
        let a = vec![("a".to_string(), Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)))];
        adam.step(&a, &[Tensor::ones([2], (Kind::Float, tch::Device::Cpu))]).unwrap();
        let b = vec![("b".to_string(), a[0].1.shallow_clone())];
        let e = adam.step(&b, &[Tensor::new()]).unwrap_err().to_string();
        assert!(e.contains("changed"), "{e}");
    }
}
