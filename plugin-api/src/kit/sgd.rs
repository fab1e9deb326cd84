//! SGD with momentum for architecture parameters, with the semantics of `torch.optim.SGD`
//! (dampening 0, no Nesterov, L2 weight decay added to the gradient; the first step sets the
//! momentum buffer to the gradient). The learning rate may change between steps (schedules).
use tch::{no_grad_guard, Tensor};

/// SGD over a fixed list of named parameters.
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    names: Vec<String>,
    bufs: Vec<Tensor>,
}

impl Sgd {
    pub fn new(lr: f64, momentum: f64, weight_decay: f64) -> Self {
        Self { lr, momentum, weight_decay, names: Vec::new(), bufs: Vec::new() }
    }

    /// One update of `params` in place with `grads` (an undefined gradient counts as zero).
    pub fn step(&mut self, params: &[(String, Tensor)], grads: &[Tensor]) -> anyhow::Result<()> {
        anyhow::ensure!(params.len() == grads.len(), "sgd: {} parameters but {} gradients", params.len(), grads.len());
        let _guard = no_grad_guard();
        let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
        if self.names.is_empty() {
            self.names = names.clone();
        }
        anyhow::ensure!(
            names == self.names,
            "sgd: the architecture parameters changed between steps (had {:?}, now {names:?})",
            self.names
        );
        let first = self.bufs.is_empty();
        for (i, ((_, p), g)) in params.iter().zip(grads).enumerate() {
            let mut p = p.shallow_clone();
            let g = if g.defined() { g.shallow_clone() } else { p.f_zeros_like()? };
            let g = if self.weight_decay != 0.0 { g.f_add(&p.f_mul_scalar(self.weight_decay)?)? } else { g };
            let d = if self.momentum != 0.0 {
                if first {
                    self.bufs.push(g.f_detach_copy()?);
                } else {
                    let buf = &mut self.bufs[i];
                    let _ = buf.f_mul_scalar_(self.momentum)?.f_add_(&g)?;
                }
                self.bufs[i].shallow_clone()
            } else {
                g
            };
            let _ = p.f_sub_(&d.f_mul_scalar(self.lr)?)?;
        }
        Ok(())
    }

    /// The momentum buffers as named tensors (`sgd.<param>.buf`).
    pub fn state(&self) -> anyhow::Result<Vec<(String, Tensor)>> {
        self.names.iter().zip(&self.bufs).map(|(n, b)| Ok((format!("sgd.{n}.buf"), b.f_detach_copy()?))).collect()
    }

    /// Restores what [`Sgd::state`] returned.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        let mut names = Vec::new();
        let mut bufs = Vec::new();
        for (key, t) in state {
            let name = key
                .strip_prefix("sgd.")
                .and_then(|r| r.strip_suffix(".buf"))
                .ok_or_else(|| anyhow::anyhow!("unexpected state entry `{key}`"))?;
            names.push(name.to_string());
            bufs.push(t);
        }
        self.names = names;
        self.bufs = bufs;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn matches_torch_sgd_semantics_and_resumes() {
        let p = vec![("a".to_string(), Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(false))];
        let g = [Tensor::from_slice(&[0.5f64, 0.25])];
        let mut s = Sgd::new(0.1, 0.9, 0.01);
        s.step(&p, &g).unwrap();
        // buf = g + wd p = [0.51, 0.23]; p = p - 0.1 buf
        let want1 = [1.0 - 0.1 * 0.51, -2.0 - 0.1 * 0.23];
        let got: Vec<f64> = Vec::try_from(&p[0].1).unwrap();
        assert!((got[0] - want1[0]).abs() < 1e-12 && (got[1] - want1[1]).abs() < 1e-12);
        // Second step: buf = 0.9 buf + g + wd p.
        let state = s.state().unwrap();
        let mut resumed = Sgd::new(0.1, 0.9, 0.01);
        resumed.load_state(state).unwrap();
        let q = vec![("a".to_string(), p[0].1.copy())];
        s.step(&p, &g).unwrap();
        resumed.step(&q, &g).unwrap();
        assert!(p[0].1.equal(&q[0].1));
        let buf1 = [0.51, 0.23];
        let g2 = [0.5 + 0.01 * want1[0], 0.25 + 0.01 * want1[1]];
        let want2 = [want1[0] - 0.1 * (0.9 * buf1[0] + g2[0]), want1[1] - 0.1 * (0.9 * buf1[1] + g2[1])];
        let got: Vec<f64> = Vec::try_from(&p[0].1).unwrap();
        assert!((got[0] - want2[0]).abs() < 1e-12 && (got[1] - want2[1]).abs() < 1e-12, "{got:?} {want2:?}");
        let other = vec![("b".to_string(), Tensor::zeros([2], (Kind::Double, Device::Cpu)))];
        assert!(s.step(&other, &g).is_err());
    }
}
