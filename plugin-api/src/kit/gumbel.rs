//! Gumbel-softmax sampling of categorical distributions given by logits (GDAS, SNAS). Noise comes
//! from libtorch's generator, which the host seeds per epoch, so runs repeat and resume exactly.
use tch::{Kind, Tensor};

/// Gumbel(0, 1) noise shaped like `like`, in its kind and device.
pub fn noise(like: &Tensor) -> anyhow::Result<Tensor> {
    // -log(-log(U)), U in (0, 1): clamp away from 0 so that neither log sees 0.
    let u = like.f_rand_like()?.f_clamp(1e-20, 1.0 - 1e-7)?;
    Ok(u.f_log()?.f_neg()?.f_log()?.f_neg()?)
}

/// Soft Gumbel-softmax sample of the last dimension: softmax((log_softmax(logits) + g) / tau).
/// Gradients flow to `logits` (and through `tau` if it requires them).
pub fn soft_sample(logits: &Tensor, tau: &Tensor) -> anyhow::Result<Tensor> {
    let g = noise(logits)?;
    Ok(logits.f_log_softmax(-1, Kind::Float)?.f_add(&g)?.f_div(tau)?.f_softmax(-1, Kind::Float)?)
}

/// GDAS' hard straight-through sample of a 1-D logits row: `(index, weights)` where `weights`
/// is one-hot at the sampled index in the forward pass, while its gradient is that of the soft
/// sample `p` (weights = onehot - sg(p) + p). Resamples (up to 100 times) when the soft sample
/// is not finite.
pub fn hard_sample(logits: &Tensor, tau: &Tensor) -> anyhow::Result<(usize, Tensor)> {
    for _ in 0..100 {
        let p = soft_sample(logits, tau)?;
        let finite = p.f_isfinite()?.f_all()?.f_int64_value(&[])? == 1;
        if !finite {
            continue;
        }
        let k = p.f_argmax(-1, false)?.f_int64_value(&[])?;
        let one_hot =
            p.f_zeros_like()?.f_index_fill(-1, &Tensor::from(k).f_view([1])?.f_to_device(p.device())?, 1.0)?;
        let w = one_hot.f_sub(&p.f_detach()?)?.f_add(&p)?;
        return Ok((k as usize, w));
    }
    anyhow::bail!("Gumbel-softmax sample not finite in 100 draws (are the logits or the temperature NaN/inf?)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn hard_sample_is_one_hot_forward_with_soft_gradients() {
        let logits = Tensor::from_slice(&[0.3f32, -0.2, 1.0, 0.1]).set_requires_grad(true);
        let tau = Tensor::from(1.0f32);
        let (k, w) = hard_sample(&logits, &tau).unwrap();
        let vals: Vec<f32> = Vec::try_from(&w.detach()).unwrap();
        for (i, v) in vals.iter().enumerate() {
            let want = if i == k { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-6, "{vals:?}");
        }
        // The weight of the sampled candidate depends on every logit.
        w.get(k as i64).backward();
        let g: Vec<f32> = Vec::try_from(&logits.grad()).unwrap();
        assert!(g.iter().all(|x| *x != 0.0), "{g:?}");
        let bad = Tensor::from_slice(&[f32::NAN, 0.0]);
        assert!(hard_sample(&bad, &tau).is_err());
        let _ = Device::Cpu;
    }
}
