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
    relaxed(logits, &noise(logits)?, tau)
}

/// softmax((log_softmax(logits) + g) / tau) for the noise `g`.
fn relaxed(logits: &Tensor, g: &Tensor, tau: &Tensor) -> anyhow::Result<Tensor> {
    Ok(logits.f_log_softmax(-1, Kind::Float)?.f_add(g)?.f_div(tau)?.f_softmax(-1, Kind::Float)?)
}

/// GDAS' hard straight-through sample of a 1-D logits row: `(index, weights)` where `weights`
/// is one-hot at the sampled index in the forward pass, while its gradient is that of the soft
/// sample `p` (weights = onehot - sg(p) + p). Resamples (up to 100 times) when the soft sample
/// is not finite.
pub fn hard_sample(logits: &Tensor, tau: &Tensor) -> anyhow::Result<(usize, Tensor)> {
    for _ in 0..100 {
        if let Some(sample) = straight_through(logits, &noise(logits)?, tau)? {
            return Ok(sample);
        }
    }
    anyhow::bail!("Gumbel-softmax sample not finite in 100 draws (are the logits or the temperature NaN/inf?)")
}

/// [`hard_sample`] with the Gumbel noise `g` given (shaped like `logits`), so that several
/// users of one logits row can share one draw. Errors when the sample is not finite: a finite
/// `g` leaves only the logits or the temperature to blame.
pub fn hard_sample_with(logits: &Tensor, g: &Tensor, tau: &Tensor) -> anyhow::Result<(usize, Tensor)> {
    straight_through(logits, g, tau)?.ok_or_else(|| {
        anyhow::anyhow!("Gumbel-softmax sample not finite (are the logits, the noise or the temperature NaN/inf?)")
    })
}

/// The straight-through sample for noise `g`, or `None` when the soft sample is not finite.
fn straight_through(logits: &Tensor, g: &Tensor, tau: &Tensor) -> anyhow::Result<Option<(usize, Tensor)>> {
    let p = relaxed(logits, g, tau)?;
    if p.f_isfinite()?.f_all()?.f_int64_value(&[])? != 1 {
        return Ok(None);
    }
    let k = p.f_argmax(-1, false)?.f_int64_value(&[])?;
    let one_hot = p.f_zeros_like()?.f_index_fill(-1, &Tensor::from(k).f_view([1])?.f_to_device(p.device())?, 1.0)?;
    let w = one_hot.f_sub(&p.f_detach()?)?.f_add(&p)?;
    Ok(Some((k as usize, w)))
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

    #[test]
    fn a_given_draw_decides_the_sample() {
        let logits = Tensor::from_slice(&[0.3f32, -0.2, 1.0, 0.1]);
        let tau = Tensor::from(0.5f32);
        // Noise that outweighs the logits picks its column, whatever the logits say.
        let g = Tensor::from_slice(&[0.0f32, 9.0, 0.0, 0.0]);
        let (k, w) = hard_sample_with(&logits, &g, &tau).unwrap();
        assert_eq!(k, 1);
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![0.0, 1.0, 0.0, 0.0]);
        // Zero noise: the argmax of the logits.
        assert_eq!(hard_sample_with(&logits, &g.zeros_like(), &tau).unwrap().0, 2);
        assert!(hard_sample_with(&logits, &Tensor::from_slice(&[f32::NAN, 0.0, 0.0, 0.0]), &tau).is_err());
    }
}
