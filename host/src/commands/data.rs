//! `archai data`: a dataset's summary and its pipeline throughput.
use super::common::Overrides;
use std::path::PathBuf;

/// Dataset summary: samples per split and class, shape, mean/std (--bench: pipeline throughput).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A dataset file (confs/datasets/NAME.yaml) or an experiment.
    pub conf: PathBuf,
    #[command(flatten)]
    pub overrides: Overrides,
    /// Measure augmented samples/s and batches/s of the search trainer's pipeline.
    #[arg(long)]
    pub bench: bool,
    /// With --bench, also measure a DARTS CIFAR-style pipeline on generated data of this
    /// shape (CxHxW, e.g. 3x32x32).
    #[arg(long, value_name = "CxHxW")]
    pub synthetic: Option<String>,
}

pub fn run(plugin_dirs: &[PathBuf], args: &Args) -> anyhow::Result<()> {
    let Args { conf, overrides, bench, synthetic } = args;
    // A dataset file alone is read on top of the train.yaml (common settings and a trainer) of
    // the confs/ that holds it.
    let (_, cfg) = if super::common::is_dataset_file(conf) {
        let base = super::common::confs_dir(conf).join("train.yaml");
        let mut overrides = overrides.clone();
        overrides.sets.insert(0, super::common::dataset_set(&conf.display().to_string(), conf)?);
        overrides.load(&base)?
    } else {
        overrides.load(conf)?
    };
    let reg = super::common::registry(plugin_dirs)?;
    let data = crate::experiment::load_dataset(&reg, &cfg.dataset)?;
    let [c, h, w] = data.train.shape();
    println!(
        "dataset {} (adapter {}): {c}x{h}x{w}, {} classes",
        cfg.dataset.name,
        cfg.dataset.adapter,
        data.class_names.len()
    );
    for (split, buf) in [("train", &data.train), ("test", &data.test)] {
        let mut counts = vec![0usize; data.class_names.len().max(1)];
        for &l in buf.labels() {
            if let Some(slot) = counts.get_mut(l as usize) {
                *slot += 1;
            }
        }
        let (mean, std) = archai_data::stats::mean_std(buf.images(), buf.len(), c, h, w);
        println!("  {split}: {} samples, per class {:?}, mean {:.4?}, std {:.4?}", buf.len(), counts, mean, std);
    }
    if !*bench {
        return Ok(());
    }
    let t = &cfg.nas.search.trainer;
    let opts = archai_data::BatcherOptions {
        batch_size: t.batch_size,
        drop_last: false,
        prefetch: 4,
        seed: cfg.common.seed,
        epoch: 0,
    };
    let transforms = crate::experiment::train_transforms(t, &data);
    let r = archai_data::bench_throughput(&data.train, &transforms, opts, 200)?;
    println!(
        "  pipeline bench, {} (search trainer transforms, batch {}, {} rayon threads): {:.0} samples/s, {:.1} batches/s",
        cfg.dataset.name, t.batch_size, r.threads, r.samples_per_s, r.batches_per_s
    );
    if let Some(shape) = synthetic {
        let (buffer, transforms) = crate::experiment::synthetic_cifar_like(shape)?;
        let r = archai_data::bench_throughput(&buffer, &transforms, opts, 200)?;
        println!(
            "  pipeline bench, generated {shape} (crop pad 4, flip, normalize, cutout 16; batch {}, {} rayon threads): {:.0} samples/s, {:.1} batches/s",
            t.batch_size, r.threads, r.samples_per_s, r.batches_per_s
        );
    }
    Ok(())
}
