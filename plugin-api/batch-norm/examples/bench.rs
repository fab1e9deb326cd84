//! Times training-mode batch norm (forward + backward) on channels-last float tensors of the
//! shapes a DARTS-V2 evaluation network at C = 8 (batch 96, Fashion-MNIST) runs, libtorch's
//! kernel against this crate's. `cargo run --release -p archai-batch-norm --example bench [THREADS]`
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    let threads: i32 = std::env::args().nth(1).map(|t| t.parse().expect("THREADS: a number")).unwrap_or(2);
    tch::set_num_threads(threads);
    println!("threads {threads}");
    for (c, h) in [(8i64, 28i64), (16, 28), (32, 28), (16, 14), (32, 14), (32, 7), (64, 7)] {
        let opts = (Kind::Float, Device::Cpu);
        let x =
            Tensor::randn([96, c, h, h], opts).contiguous().permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        let dy = x.randn_like();
        let (w, b) = (Tensor::ones([c], opts), Tensor::zeros([c], opts));
        let (rm, rv) = (Tensor::zeros([c], opts), Tensor::ones([c], opts));
        let time = |ours: bool| {
            let run = || {
                let xv = x.detach().set_requires_grad(true);
                let (wv, bv) = (w.detach().set_requires_grad(true), b.detach().set_requires_grad(true));
                let y = if ours {
                    archai_batch_norm::batch_norm_train(&xv, Some(&wv), Some(&bv), Some(&rm), Some(&rv), 0.1, 1e-5)
                        .unwrap()
                } else {
                    Tensor::batch_norm(&xv, Some(&wv), Some(&bv), Some(&rm), Some(&rv), true, 0.1, 1e-5, false)
                };
                // The incoming gradient is `dy`, channels-last like the output (an element-wise
                // product and a sum on both sides).
                let loss = (&y * &dy).sum(Kind::Float);
                let _ = Tensor::run_backward(&[&loss], &[&xv, &wv, &bv], false, false);
            };
            for _ in 0..5 {
                run();
            }
            let n = 100;
            let t0 = Instant::now();
            for _ in 0..n {
                run();
            }
            t0.elapsed().as_secs_f64() / n as f64 * 1e3
        };
        let (theirs, ours) = (time(false), time(true));
        println!(
            "[96, {c}, {h}, {h}] forward+backward: libtorch {theirs:.3} ms, archai-batch-norm {ours:.3} ms ({:.2}x)",
            theirs / ours
        );
    }
}
