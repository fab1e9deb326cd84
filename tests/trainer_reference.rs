//! The trainer's learning-rate schedules and optimizers against PyTorch 2.11's own values
//! (tests/fixtures/trainer_reference.json, written by scripts/fixtures/trainer_reference.py
//! with the set-up venv): every step's learning rate, and every parameter after each of six
//! updates with fixed gradients, to 1e-6.
use archai::train::optim::{Optimizer, OptimizerConfig};
use archai::train::schedule::ScheduleConfig;
use serde_json::Value;
use tch::{Kind, Tensor};

fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/trainer_reference.json");
    let text = std::fs::read_to_string(path).expect("the reference fixture is in the repository");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn schedules_match_pytorch_step_by_step() {
    let r = reference();
    let cases = r["schedules"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let mut config = case["config"].clone();
        config.as_object_mut().unwrap().entry("kind").or_insert("constant".into());
        let s: ScheduleConfig = serde_json::from_value(config.clone()).unwrap();
        let (spe, total) =
            (case["steps_per_epoch"].as_u64().unwrap() as usize, case["total_steps"].as_u64().unwrap() as usize);
        let base = case["base_lr"].as_f64().unwrap();
        for (step, want) in case["lr"].as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap();
            let got = s.lr_at(base, step, spe, total);
            assert!((got - want).abs() < 1e-6, "{config}: step {step}: {got} vs PyTorch's {want}");
        }
    }
}

#[test]
fn optimizers_match_pytorch_update_by_update() {
    let r = reference();
    let cases = r["optimizers"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let config: OptimizerConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let tensor = |v: &Value, shape: &Value| {
            let data: Vec<f64> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let shape: Vec<i64> = shape.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            Tensor::from_slice(&data).reshape(&shape)
        };
        let names = ["w", "b"];
        let params: Vec<(String, Tensor)> = names
            .iter()
            .map(|n| (n.to_string(), tensor(&case["init"][n], &case["shapes"][n]).set_requires_grad(true)))
            .collect();
        let lr = config.lr;
        let shared = params.iter().map(|(n, p)| (n.clone(), p.shallow_clone())).collect();
        let mut opt = Optimizer::with_groups(config, &[], shared).unwrap();
        for (t, after) in case["after"].as_array().unwrap().iter().enumerate() {
            for (n, p) in &params {
                let g = tensor(&case["grads"][n][t], &case["shapes"][n]);
                let mut grad = p.grad();
                if grad.defined() {
                    grad.copy_(&g);
                } else {
                    // The first step: libtorch has no gradient yet; make one of the right value.
                    (p * &g).sum(Kind::Double).backward();
                }
            }
            opt.step(lr);
            for (n, p) in &params {
                let want = tensor(&after[n], &case["shapes"][n]);
                let diff = (p.detach() - &want).abs().max().double_value(&[]);
                assert!(diff < 1e-6, "{name}: `{n}` after update {}: {diff} away from PyTorch", t + 1);
            }
        }
    }
}
