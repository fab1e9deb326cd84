//! Split, sampler, transforms, batcher and statistics on generated buffers (plus Fashion-MNIST
//! statistics when the Debian package is installed).

use archai_data::split::stratified_train_val;
use archai_data::stats::mean_std;
use archai_data::{
    bench_throughput, Batch, Batcher, BatcherOptions, DataError, DistributedStratifiedSampler, Pipeline, SampleBuffer,
    Transform,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Labels with unbalanced classes: class k has sizes[k] samples, interleaved.
fn unbalanced_labels(sizes: &[usize]) -> Vec<i64> {
    let mut left = sizes.to_vec();
    let mut labels = Vec::new();
    while left.iter().any(|&l| l > 0) {
        for (k, l) in left.iter_mut().enumerate() {
            if *l > 0 {
                labels.push(k as i64);
                *l -= 1;
            }
        }
    }
    labels
}

fn per_class(indices: &[usize], labels: &[i64]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for &i in indices {
        *m.entry(labels[i]).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Split

#[test]
fn split_is_stratified_disjoint_complete_and_seeded() {
    let labels = unbalanced_labels(&[100, 37, 5, 1, 12]);
    let (train, val) = stratified_train_val(&labels, 0.2, 42);
    let t: BTreeSet<_> = train.iter().copied().collect();
    let v: BTreeSet<_> = val.iter().copied().collect();
    assert_eq!(t.len(), train.len());
    assert!(t.is_disjoint(&v));
    assert_eq!(t.union(&v).copied().collect::<Vec<_>>(), (0..labels.len()).collect::<Vec<_>>());
    let all = per_class(&(0..labels.len()).collect::<Vec<_>>(), &labels);
    let vc = per_class(&val, &labels);
    for (class, &count) in &all {
        let got = vc.get(class).copied().unwrap_or(0) as f64;
        assert!((got - 0.2 * count as f64).abs() <= 1.0, "class {class}: {got} of {count}");
        assert_eq!(got, (0.2 * count as f64).round());
    }
    assert_eq!(stratified_train_val(&labels, 0.2, 42), (train.clone(), val.clone()));
    assert_ne!(stratified_train_val(&labels, 0.2, 43).1, val);
    // Edge ratios.
    assert_eq!(stratified_train_val(&labels, 0.0, 1).1.len(), 0);
    assert_eq!(stratified_train_val(&labels, 1.0, 1).0.len(), 0);
}

// ---------------------------------------------------------------------------------------------
// Sampler

fn shards(indices: &[usize], labels: &[i64], world: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    (0..world)
        .map(|r| {
            let mut s = DistributedStratifiedSampler::new(indices.to_vec(), labels, world, r, true, seed).unwrap();
            s.set_epoch(epoch);
            assert_eq!(s.len(), indices.len().div_ceil(world));
            s.indices()
        })
        .collect()
}

#[test]
fn sampler_shards_equal_balanced_and_covering() {
    let labels = unbalanced_labels(&[40, 31, 17, 9, 6]);
    let n = labels.len(); // 103
    let indices: Vec<usize> = (0..n).collect();
    for world in [1, 2, 3, 4, 7] {
        let sh = shards(&indices, &labels, world, 5, 0);
        let len = n.div_ceil(world);
        assert!(sh.iter().all(|s| s.len() == len), "world {world}: unequal shard sizes");
        // Every index appears; only the padding (len * world - n entries) repeats any.
        let mut counts = vec![0usize; n];
        for s in &sh {
            for &i in s {
                counts[i] += 1;
            }
        }
        assert!(counts.iter().all(|&c| c >= 1));
        assert_eq!(counts.iter().map(|c| c - 1).sum::<usize>(), len * world - n);
        // Class balance: per class, shard counts differ by at most one.
        for class in 0..5 {
            let cs: Vec<usize> = sh.iter().map(|s| s.iter().filter(|&&i| labels[i] == class).count()).collect();
            let (lo, hi) = (cs.iter().min().unwrap(), cs.iter().max().unwrap());
            assert!(hi - lo <= 1, "world {world} class {class}: {cs:?}");
        }
    }
}

#[test]
fn sampler_shards_disjoint_without_padding() {
    let labels = unbalanced_labels(&[50, 30, 20]);
    let indices: Vec<usize> = (0..100).collect();
    let sh = shards(&indices, &labels, 4, 9, 3);
    let sets: Vec<BTreeSet<usize>> = sh.iter().map(|s| s.iter().copied().collect()).collect();
    for a in 0..4 {
        assert_eq!(sets[a].len(), 25);
        for b in a + 1..4 {
            assert!(sets[a].is_disjoint(&sets[b]), "ranks {a} and {b} overlap");
        }
    }
}

#[test]
fn sampler_subset_indices_and_epochs() {
    let labels = unbalanced_labels(&[30, 30, 30]);
    // A subset (say the train part of a split): only those indices may come back.
    let (train, _) = stratified_train_val(&labels, 0.3, 1);
    let sh = shards(&train, &labels, 2, 7, 0);
    let allowed: BTreeSet<_> = train.iter().copied().collect();
    assert!(sh.iter().flatten().all(|i| allowed.contains(i)));

    // Same seed same shards; epochs reshuffle; other seeds differ.
    assert_eq!(shards(&train, &labels, 2, 7, 0), sh);
    assert_ne!(shards(&train, &labels, 2, 7, 1), sh);
    assert_ne!(shards(&train, &labels, 2, 8, 0), sh);
    // The epoch changes membership, not just order.
    let e1 = shards(&train, &labels, 2, 7, 1);
    let s0: BTreeSet<_> = sh[0].iter().collect();
    let s1: BTreeSet<_> = e1[0].iter().collect();
    assert_ne!(s0, s1);

    // No shuffle: deterministic and epoch-independent.
    let mut a = DistributedStratifiedSampler::new(train.clone(), &labels, 2, 1, false, 0).unwrap();
    let first = a.indices();
    a.set_epoch(5);
    assert_eq!(a.indices(), first);
}

#[test]
fn sampler_tiny_and_invalid() {
    let labels = vec![0, 1, 0];
    let sh = shards(&[0, 1, 2], &labels, 5, 0, 0);
    assert!(sh.iter().all(|s| s.len() == 1));
    let s = DistributedStratifiedSampler::new(vec![], &labels, 2, 0, true, 0).unwrap();
    assert!(s.is_empty() && s.indices().is_empty());
    assert!(matches!(
        DistributedStratifiedSampler::new(vec![0], &labels, 2, 2, true, 0),
        Err(DataError::InvalidArgument(_))
    ));
    assert!(DistributedStratifiedSampler::new(vec![0], &labels, 0, 0, true, 0).is_err());
    assert_eq!(
        DistributedStratifiedSampler::new(vec![0, 3], &labels, 1, 0, true, 0).unwrap_err(),
        DataError::IndexOutOfRange { what: "sampler", index: 3, len: 3 }
    );
}

// ---------------------------------------------------------------------------------------------
// Transforms

fn parse(yaml: &str) -> Result<Vec<Transform>, String> {
    yaml_serde::from_str(yaml).map_err(|e| e.to_string())
}

#[test]
fn transforms_parse_from_yaml() {
    let t = parse(
        "- random_crop: {size: 28, padding: 4}\n\
         - horizontal_flip: {}\n\
         - normalize: {mean: [0.2860], std: [0.3530]}\n\
         - cutout: {length: 16}\n\
         - resize: {size: [32, 30]}\n",
    )
    .unwrap();
    assert_eq!(
        t,
        vec![
            Transform::RandomCrop { size: 28, padding: 4 },
            Transform::HorizontalFlip { p: 0.5 },
            Transform::Normalize { mean: vec![0.2860], std: vec![0.3530] },
            Transform::Cutout { length: 16 },
            Transform::Resize { size: [32, 30] },
        ]
    );
    let e = parse("- random_crop: {size: 28, pading: 4}").unwrap_err();
    assert!(e.contains("pading"), "{e}");
    let e = parse("- random_flip: {p: 0.5}").unwrap_err();
    assert!(e.contains("unknown variant `random_flip`") && e.contains("horizontal_flip"), "{e}");
    let e = parse("- {cutout: {length: 8}, horizontal_flip: {}}").unwrap_err();
    assert!(e.contains("single key"), "{e}");
    let e = parse("- cutout: {}").unwrap_err();
    assert!(e.contains("missing field `length`"), "{e}");
    // Serialising gives back the config form.
    let text = yaml_serde::to_string(&t).unwrap();
    assert!(text.contains("random_crop:") && !text.contains('!'), "{text}");
    assert_eq!(parse(&text).unwrap(), t);
}

fn ramp(c: usize, h: usize, w: usize) -> Vec<u8> {
    (0..c * h * w).map(|i| (i % 250 + 1) as u8).collect()
}

#[test]
fn crop_with_padding_keeps_shape_and_shifts_content() {
    let (h, w) = (6, 7);
    let src = ramp(2, h, w);
    let p = Pipeline::new(&[Transform::RandomCrop { size: 6, padding: 3 }], [2, h, w]).unwrap();
    assert_eq!(p.out_shape(), [2, 6, 6]);
    let mut shifts = BTreeSet::new();
    for index in 0..40 {
        let out = p.apply(&src, 1, 0, index).unwrap();
        assert_eq!(out.len(), 2 * 36);
        // Find the shift (dy, dx) that explains every output pixel: source pixel or zero padding.
        let explains = |dy: isize, dx: isize| {
            (0..2).all(|c| {
                (0..6).all(|y| {
                    (0..6).all(|x| {
                        let (sy, sx) = (y as isize + dy, x as isize + dx);
                        let expect = if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                            src[c * h * w + sy as usize * w + sx as usize] as f32 / 255.0
                        } else {
                            0.0
                        };
                        out[c * 36 + y * 6 + x] == expect
                    })
                })
            })
        };
        let found: Vec<(isize, isize)> =
            (-3..=3).flat_map(|dy| (-3..=4).map(move |dx| (dy, dx))).filter(|&(dy, dx)| explains(dy, dx)).collect();
        assert_eq!(found.len(), 1, "sample {index}: shifts {found:?}");
        shifts.insert(found[0]);
    }
    assert!(shifts.len() > 5, "crop offsets barely vary: {shifts:?}");
}

#[test]
fn flip_mirrors_rows() {
    let src = ramp(3, 4, 5);
    let p = Pipeline::new(&[Transform::HorizontalFlip { p: 1.0 }], [3, 4, 5]).unwrap();
    let out = p.apply(&src, 0, 0, 0).unwrap();
    for c in 0..3 {
        for y in 0..4 {
            for x in 0..5 {
                assert_eq!(out[c * 20 + y * 5 + x], src[c * 20 + y * 5 + (4 - x)] as f32 / 255.0);
            }
        }
    }
    let id = Pipeline::new(&[Transform::HorizontalFlip { p: 0.0 }], [3, 4, 5]).unwrap();
    let out = id.apply(&src, 0, 0, 0).unwrap();
    assert!(out.iter().zip(&src).all(|(o, &s)| *o == s as f32 / 255.0));
    // p = 0.5 flips some samples and not others.
    let half = Pipeline::new(&[Transform::HorizontalFlip { p: 0.5 }], [3, 4, 5]).unwrap();
    let flipped = (0..64).filter(|&i| half.apply(&src, 0, 0, i).unwrap()[0] != src[0] as f32 / 255.0).count();
    assert!((10..54).contains(&flipped), "{flipped} of 64 flipped");
}

#[test]
fn cutout_zeroes_a_square_in_all_channels() {
    let (h, w) = (12, 12);
    let src = vec![200u8; 2 * h * w];
    let p = Pipeline::new(&[Transform::Cutout { length: 4 }], [2, h, w]).unwrap();
    let mut full = 0;
    for index in 0..30 {
        let out = p.apply(&src, 3, 0, index).unwrap();
        let zeros: Vec<(usize, usize)> = (0..h * w).filter(|&i| out[i] == 0.0).map(|i| (i / w, i % w)).collect();
        // Same square in both channels; everything else untouched.
        for i in 0..h * w {
            assert_eq!(out[i] == 0.0, out[h * w + i] == 0.0);
            if out[i] != 0.0 {
                assert_eq!(out[i], 200.0 / 255.0);
            }
        }
        let ys: BTreeSet<_> = zeros.iter().map(|z| z.0).collect();
        let xs: BTreeSet<_> = zeros.iter().map(|z| z.1).collect();
        assert_eq!(zeros.len(), ys.len() * xs.len(), "not a rectangle");
        assert!(ys.len() <= 4 && xs.len() <= 4);
        assert!(ys.iter().zip(ys.iter().skip(1)).all(|(a, b)| b - a == 1));
        if zeros.len() == 16 {
            full += 1;
        }
    }
    assert!(full > 10, "interior cutouts should be 4x4, got {full} of 30");
}

#[test]
fn normalize_by_hand_and_cutout_after_normalize() {
    // 51/255 = 0.2; (0.2 - 0.5) / 0.25 = -1.2. 204/255 = 0.8; (0.8 - 0.1) / 0.5 = 1.4.
    let src = vec![51u8, 51, 204, 204];
    let p = Pipeline::new(&[Transform::Normalize { mean: vec![0.5, 0.1], std: vec![0.25, 0.5] }], [2, 1, 2]).unwrap();
    let out = p.apply(&src, 0, 0, 0).unwrap();
    let want = [-1.2f32, -1.2, 1.4, 1.4];
    for (o, w) in out.iter().zip(want) {
        assert!((o - w).abs() < 1e-6, "{out:?}");
    }
    // Cutout after normalize writes zeros (the mean), not -mean/std.
    let p = Pipeline::new(
        &[Transform::Normalize { mean: vec![0.5], std: vec![0.25] }, Transform::Cutout { length: 2 }],
        [1, 4, 4],
    )
    .unwrap();
    let out = p.apply(&[51u8; 16], 0, 0, 1).unwrap();
    assert!(out.contains(&0.0));
    assert!(out.iter().all(|&v| v == 0.0 || (v + 1.2).abs() < 1e-6));
}

#[test]
fn resize_and_validation_errors() {
    let p = Pipeline::new(&[Transform::Resize { size: [5, 9] }], [1, 3, 3]).unwrap();
    assert_eq!(p.out_shape(), [1, 5, 9]);
    assert!(p.apply(&[100u8; 9], 0, 0, 0).unwrap().iter().all(|&v| (v - 100.0 / 255.0).abs() < 1e-6));

    let bad = |t: Transform, shape| Pipeline::new(&[Transform::HorizontalFlip { p: 0.5 }, t], shape).unwrap_err();
    let e = bad(Transform::Normalize { mean: vec![0.5], std: vec![0.2] }, [3, 8, 8]);
    assert!(matches!(e, DataError::Transform { position: 1, name: "normalize", .. }), "{e:?}");
    assert!(e.to_string().contains("3 channels"), "{e}");
    let e = bad(Transform::RandomCrop { size: 20, padding: 2 }, [1, 8, 8]);
    assert!(e.to_string().contains("random_crop") && e.to_string().contains("12x12"), "{e}");
    assert!(Pipeline::new(&[Transform::HorizontalFlip { p: 1.5 }], [1, 2, 2]).is_err());
    assert!(Pipeline::new(&[Transform::Normalize { mean: vec![0.5], std: vec![0.0] }], [1, 2, 2]).is_err());
    assert!(Pipeline::new(&[], [1, 2, 2]).unwrap().apply(&[1, 2, 3], 0, 0, 0).is_err());
}

#[test]
fn augmentation_keyed_by_seed_epoch_index() {
    let src = ramp(3, 16, 16);
    let t = [
        Transform::RandomCrop { size: 16, padding: 4 },
        Transform::HorizontalFlip { p: 0.5 },
        Transform::Cutout { length: 6 },
    ];
    let p = Pipeline::new(&t, [3, 16, 16]).unwrap();
    assert_eq!(p.apply(&src, 1, 2, 3).unwrap(), p.apply(&src, 1, 2, 3).unwrap());
    assert_ne!(p.apply(&src, 1, 2, 3).unwrap(), p.apply(&src, 1, 3, 3).unwrap());
    assert_ne!(p.apply(&src, 1, 2, 3).unwrap(), p.apply(&src, 2, 2, 3).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Batcher

fn buffer(n: usize, shape: [usize; 3], classes: i64) -> SampleBuffer {
    let per: usize = shape.iter().product();
    let images = (0..n * per).map(|i| ((i * 13 + i / per) % 256) as u8).collect();
    SampleBuffer::new(images, (0..n as i64).map(|i| i % classes).collect(), shape).unwrap()
}

fn cifar_like() -> Vec<Transform> {
    vec![
        Transform::RandomCrop { size: 32, padding: 4 },
        Transform::HorizontalFlip { p: 0.5 },
        Transform::Normalize { mean: vec![0.49, 0.48, 0.45], std: vec![0.25, 0.24, 0.26] },
        Transform::Cutout { length: 16 },
    ]
}

fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
    Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap())
}

#[test]
fn batches_identical_across_thread_counts() {
    let buf = buffer(70, [3, 32, 32], 10);
    let labels = buf.labels().to_vec();
    let order = DistributedStratifiedSampler::new((0..70).collect(), &labels, 1, 0, true, 11).unwrap().indices();
    let opts = BatcherOptions { batch_size: 16, drop_last: false, prefetch: 2, seed: 11, epoch: 1 };
    let run = |threads: usize| -> Vec<Batch> {
        Batcher::new(buf.clone(), order.clone(), &cifar_like(), opts).unwrap().with_pool(pool(threads)).iter().collect()
    };
    let one = run(1);
    let four = run(4);
    assert_eq!(one.len(), 5);
    assert!(one == four, "batches differ between 1 and 4 threads");
    // Building directly inside a caller's pool (no prefetch thread) gives the same batches.
    let b = Batcher::new(buf.clone(), order.clone(), &cifar_like(), opts).unwrap();
    let direct: Vec<Batch> = pool(3).install(|| (0..b.len()).map(|i| b.batch(i).unwrap()).collect());
    assert!(direct == one);
    // Another epoch augments differently.
    let other = Batcher::new(buf.clone(), order, &cifar_like(), BatcherOptions { epoch: 2, ..opts }).unwrap();
    assert_ne!(other.batch(0).unwrap().images, one[0].images);
}

#[test]
fn batches_cover_epoch_once_and_drop_last() {
    let buf = buffer(10, [1, 4, 4], 3);
    let order: Vec<usize> = vec![3, 1, 4, 0, 5, 9, 2, 6, 8, 7];
    let opts = BatcherOptions { batch_size: 4, drop_last: false, prefetch: 1, seed: 0, epoch: 0 };
    let keep = Batcher::new(buf.clone(), order.clone(), &[], opts).unwrap();
    let batches: Vec<Batch> = keep.iter().collect();
    assert_eq!(keep.len(), 3);
    assert_eq!(batches.iter().map(|b| b.shape[0]).collect::<Vec<_>>(), vec![4, 4, 2]);
    assert_eq!(batches.iter().flat_map(|b| b.indices.clone()).collect::<Vec<_>>(), order);
    for b in &batches {
        assert_eq!(b.shape[1..], [1, 4, 4]);
        assert_eq!(b.images.len(), b.shape.iter().product::<usize>());
        for (k, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.labels[k], buf.labels()[i]);
            let px: Vec<f32> = buf.sample(i).unwrap().iter().map(|&v| v as f32 / 255.0).collect();
            assert_eq!(&b.images[k * 16..(k + 1) * 16], px.as_slice());
        }
    }
    let drop = Batcher::new(buf.clone(), order.clone(), &[], BatcherOptions { drop_last: true, ..opts }).unwrap();
    let batches: Vec<Batch> = drop.iter().collect();
    assert_eq!(batches.len(), 2);
    assert!(batches.iter().all(|b| b.shape[0] == 4));
    assert!(drop.batch(2).is_none());

    // Stopping early does not hang on the prefetch thread.
    let mut it = keep.iter();
    assert!(it.next().is_some());
    drop_it(it);
    // Batch size larger than the epoch.
    let big = Batcher::new(buf.clone(), order.clone(), &[], BatcherOptions { batch_size: 64, drop_last: true, ..opts })
        .unwrap();
    assert!(big.is_empty() && big.iter().next().is_none());
}

fn drop_it<T>(_: T) {}

#[test]
fn batcher_rejects_bad_arguments() {
    let buf = buffer(5, [1, 2, 2], 2);
    let opts = BatcherOptions { batch_size: 0, ..Default::default() };
    assert!(matches!(Batcher::new(buf.clone(), vec![0], &[], opts), Err(DataError::InvalidArgument(_))));
    let opts = BatcherOptions::default();
    assert_eq!(
        Batcher::new(buf.clone(), vec![0, 5], &[], opts).unwrap_err(),
        DataError::IndexOutOfRange { what: "batch order", index: 5, len: 5 }
    );
    assert!(matches!(
        Batcher::new(buf, vec![0], &[Transform::RandomCrop { size: 3, padding: 0 }], opts),
        Err(DataError::Transform { .. })
    ));
    assert!(matches!(SampleBuffer::new(vec![0; 7], vec![0, 1], [1, 2, 2]), Err(DataError::Shape { .. })));
}

// ---------------------------------------------------------------------------------------------
// Stats and bench

#[test]
fn mean_std_by_hand() {
    // Two samples, 2 channels of 1x2: channel 0 = {0, 255, 0, 255}, channel 1 = {51, 51, 51, 51}.
    let raw = [0u8, 255, 51, 51, 0, 255, 51, 51];
    let (m, s) = mean_std(&raw, 2, 2, 1, 2);
    assert!((m[0] - 0.5).abs() < 1e-12 && (s[0] - 0.5).abs() < 1e-12);
    assert!((m[1] - 0.2).abs() < 1e-12 && s[1].abs() < 1e-12);
    assert_eq!(mean_std(&[], 0, 1, 2, 2), (vec![0.0], vec![0.0]));
}

#[test]
fn fashion_mnist_mean_std() {
    let root = std::path::Path::new("/usr/share/datasets/fashion-mnist");
    let (ip, lp) = (root.join("train-images-idx3-ubyte.gz"), root.join("train-labels-idx1-ubyte.gz"));
    if !ip.exists() || !lp.exists() {
        eprintln!("note: {} not installed (Debian package dataset-fashion-mnist); skipping", root.display());
        return;
    }
    let train = archai_dataset_formats::idx::read(&ip, &lp).unwrap();
    let (m, s) = mean_std(&train.images, train.n, 1, 28, 28);
    assert!((m[0] - 0.2860).abs() < 5e-4, "mean {m:?}");
    assert!((s[0] - 0.3530).abs() < 5e-4, "std {s:?}");

    // The real split through sampler and batcher: one epoch covers every sample of the shard.
    let labels = train.labels.clone();
    let (tr, _) = stratified_train_val(&labels, 0.5, 0);
    let shard = DistributedStratifiedSampler::new(tr, &labels, 2, 1, true, 0).unwrap().indices();
    assert_eq!(shard.len(), 15000);
    assert!(per_class(&shard, &labels).values().all(|&c| c == 1500));
    let buf = SampleBuffer::new(train.images, train.labels, [1, 28, 28]).unwrap();
    let t = [
        Transform::RandomCrop { size: 28, padding: 4 },
        Transform::HorizontalFlip { p: 0.5 },
        Transform::Normalize { mean: vec![0.2860], std: vec![0.3530] },
    ];
    let b = Batcher::new(buf, shard.clone(), &t, BatcherOptions { batch_size: 256, ..Default::default() }).unwrap();
    let seen: usize = b.iter().map(|batch| batch.labels.len()).sum();
    assert_eq!(seen, shard.len());
}

#[test]
fn bench_reports_rates() {
    let buf = buffer(300, [3, 32, 32], 10);
    let opts = BatcherOptions { batch_size: 64, drop_last: true, ..Default::default() };
    let r = bench_throughput(&buf, &cifar_like(), opts, 10).unwrap();
    assert_eq!(r.batches, 10);
    assert_eq!(r.samples, 640);
    assert!(r.samples_per_s > 0.0 && r.batches_per_s > 0.0);
    let tiny = buffer(3, [3, 32, 32], 10);
    assert!(bench_throughput(&tiny, &[], opts, 1).is_err());
}
