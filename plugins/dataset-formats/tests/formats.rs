//! Round trips and bad-input checks for every reader, on data the tests generate, plus the real
//! Fashion-MNIST files when the Debian package is installed.

use archai_dataset_formats::cifar::{self, CifarVariant};
use archai_dataset_formats::npy::{self, NpyLayout};
use archai_dataset_formats::{idx, image_folder, FormatError, RawSplit};
use std::fs;
use std::path::{Path, PathBuf};

/// A split with distinctive pixels (so layout mistakes show) and labels cycling over `classes`.
fn gen_split(n: usize, c: usize, h: usize, w: usize, classes: i64) -> RawSplit {
    let images = (0..n * c * h * w).map(|i| ((i * 31 + i / 7) % 251) as u8).collect();
    RawSplit {
        images,
        n,
        channels: c,
        height: h,
        width: w,
        labels: (0..n as i64).map(|i| (i * 7 + 3) % classes).collect(),
        class_names: Vec::new(),
        source: PathBuf::new(),
    }
}

fn same_data(a: &RawSplit, b: &RawSplit) {
    assert_eq!((a.n, a.channels, a.height, a.width), (b.n, b.channels, b.height, b.width));
    assert_eq!(a.labels, b.labels);
    assert!(a.images == b.images, "pixel buffers differ");
}

fn msg(e: &FormatError) -> String {
    e.to_string()
}

// ---------------------------------------------------------------------------------------------
// IDX

#[test]
fn idx_round_trip_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let split = gen_split(37, 1, 5, 6, 10);
    for gzip in [false, true] {
        // Misleading names on purpose: compression is detected by content.
        let (ip, lp) = if gzip {
            (dir.path().join("images.idx"), dir.path().join("labels.idx"))
        } else {
            (dir.path().join("images.gz"), dir.path().join("labels.gz"))
        };
        idx::write(&ip, &lp, &split, gzip).unwrap();
        assert_eq!(fs::read(&ip).unwrap().starts_with(&[0x1f, 0x8b]), gzip);
        let back = idx::read(&ip, &lp).unwrap();
        same_data(&split, &back);
        assert_eq!(back.class_names.len(), 10);
        assert_eq!(back.source, lp);
        back.validate(10).unwrap();
    }
}

#[test]
fn idx_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let ip = dir.path().join("nope-images");
    let e = idx::read(&ip, &dir.path().join("nope-labels")).unwrap_err();
    assert!(matches!(e, FormatError::NotFound { .. }), "{e:?}");
    assert!(msg(&e).contains("nope-images"), "{e}");
}

#[test]
fn idx_truncated_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let split = gen_split(10, 1, 4, 4, 10);
    let (ip, lp) = (dir.path().join("i"), dir.path().join("l"));
    idx::write(&ip, &lp, &split, false).unwrap();
    let full = fs::read(&ip).unwrap();
    assert_eq!(full.len(), 16 + 160);
    fs::write(&ip, &full[..100]).unwrap();
    let e = idx::read(&ip, &lp).unwrap_err();
    assert!(matches!(e, FormatError::Truncated { expected: 176, actual: 100, .. }), "{e:?}");
    let m = msg(&e);
    assert!(m.contains("176") && m.contains("100") && m.contains(&ip.display().to_string()), "{m}");

    // Shorter than the header itself.
    fs::write(&ip, &full[..9]).unwrap();
    assert!(matches!(idx::read(&ip, &lp).unwrap_err(), FormatError::Truncated { expected: 16, actual: 9, .. }));

    // A gzip file whose decompressed content is short says so.
    let gz = gzip(&full[..50]);
    fs::write(&ip, gz).unwrap();
    let e = idx::read(&ip, &lp).unwrap_err();
    assert!(msg(&e).contains("after decompression"), "{e}");

    // A gzip stream cut in the middle.
    let gz = gzip(&full);
    fs::write(&ip, &gz[..gz.len() / 2]).unwrap();
    let e = idx::read(&ip, &lp).unwrap_err();
    assert!(matches!(e, FormatError::Gzip { .. }), "{e:?}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn idx_wrong_magic_and_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let split = gen_split(10, 1, 4, 4, 10);
    let (ip, lp) = (dir.path().join("i"), dir.path().join("l"));
    idx::write(&ip, &lp, &split, true).unwrap();
    // Images and labels swapped, the usual config mistake.
    let e = idx::read(&lp, &ip).unwrap_err();
    assert!(matches!(e, FormatError::BadMagic { found: 0x801, expected: 0x803, .. }), "{e:?}");
    let m = msg(&e);
    assert!(m.contains("0x00000801") && m.contains("0x00000803") && m.contains(&lp.display().to_string()), "{m}");

    let other = gen_split(9, 1, 4, 4, 10);
    let (ip2, lp2) = (dir.path().join("i2"), dir.path().join("l2"));
    idx::write(&ip2, &lp2, &other, false).unwrap();
    let e = idx::read(&ip, &lp2).unwrap_err();
    assert!(matches!(e, FormatError::CountMismatch { images: 10, labels: 9, .. }), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// CIFAR

#[test]
fn cifar10_round_trip_two_batches() {
    let dir = tempfile::tempdir().unwrap();
    let a = gen_split(7, 3, 32, 32, 10);
    let mut b = gen_split(5, 3, 32, 32, 10);
    b.images.iter_mut().for_each(|p| *p = p.wrapping_add(1));
    let (pa, pb) = (dir.path().join("data_batch_1.bin"), dir.path().join("data_batch_2.bin"));
    cifar::write_cifar10(&pa, &a).unwrap();
    cifar::write_cifar10(&pb, &b).unwrap();
    assert_eq!(fs::metadata(&pa).unwrap().len(), 7 * 3073);
    let back = cifar::read(&[pa, pb], CifarVariant::Cifar10).unwrap();
    let mut both = a.clone();
    both.n += b.n;
    both.images.extend(&b.images);
    both.labels.extend(&b.labels);
    same_data(&both, &back);
    assert_eq!(back.class_names[0], "airplane");
    assert_eq!(back.class_names.len(), 10);
    back.validate(10).unwrap();
}

#[test]
fn cifar100_round_trip_fine_and_coarse() {
    let dir = tempfile::tempdir().unwrap();
    let fine = gen_split(11, 3, 32, 32, 100);
    let coarse: Vec<i64> = fine.labels.iter().map(|l| l / 5).collect();
    let p = dir.path().join("train.bin");
    cifar::write_cifar100(&p, &fine, &coarse).unwrap();
    let f = cifar::read(std::slice::from_ref(&p), CifarVariant::Cifar100 { fine: true }).unwrap();
    same_data(&fine, &f);
    assert_eq!(f.class_names.len(), 100);
    assert_eq!(f.class_names[99], "worm");
    let c = cifar::read(&[p], CifarVariant::Cifar100 { fine: false }).unwrap();
    assert_eq!(c.labels, coarse);
    assert_eq!(c.images, fine.images);
    assert_eq!(c.class_names.len(), 20);
}

#[test]
fn cifar_truncated_and_wrong_variant() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("data_batch_1.bin");
    cifar::write_cifar10(&p, &gen_split(4, 3, 32, 32, 10)).unwrap();
    let full = fs::read(&p).unwrap();
    fs::write(&p, &full[..3073 * 2 + 1000]).unwrap();
    let e = cifar::read(std::slice::from_ref(&p), CifarVariant::Cifar10).unwrap_err();
    assert!(matches!(e, FormatError::CifarRecord { record: 2, partial: 1000, .. }), "{e:?}");
    let m = msg(&e);
    assert!(
        m.contains("truncated or not a CIFAR-10 batch") && m.contains("data_batch_1.bin") && m.contains("record 2"),
        "{m}"
    );

    // A CIFAR-100 file read as CIFAR-10: 3 records of 3074 bytes are not whole 3073-byte records.
    let q = dir.path().join("train.bin");
    let s = gen_split(3, 3, 32, 32, 100);
    cifar::write_cifar100(&q, &s, &[0, 1, 2]).unwrap();
    let e = cifar::read(&[q], CifarVariant::Cifar10).unwrap_err();
    assert!(matches!(e, FormatError::CifarRecord { record: 3, .. }), "{e:?}");

    // Empty file and missing file.
    fs::write(&p, b"").unwrap();
    assert!(matches!(
        cifar::read(std::slice::from_ref(&p), CifarVariant::Cifar10).unwrap_err(),
        FormatError::Truncated { .. }
    ));
    let e = cifar::read(&[dir.path().join("missing.bin")], CifarVariant::Cifar10).unwrap_err();
    assert!(matches!(e, FormatError::NotFound { .. }) && msg(&e).contains("missing.bin"));
    assert!(matches!(cifar::read(&[], CifarVariant::Cifar10).unwrap_err(), FormatError::InvalidArgument(_)));
}

#[test]
fn cifar_label_out_of_range_names_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.bin");
    let mut s = gen_split(6, 3, 32, 32, 10);
    s.labels[4] = 12;
    cifar::write_cifar10(&p, &s).unwrap();
    let e = cifar::read(std::slice::from_ref(&p), CifarVariant::Cifar10).unwrap_err();
    assert!(matches!(e, FormatError::LabelOutOfRange { index: 4, label: 12, num_classes: 10, .. }), "{e:?}");
    assert!(msg(&e).contains("b.bin") && msg(&e).contains("sample 4"));
}

// ---------------------------------------------------------------------------------------------
// Label validation (all formats)

#[test]
fn validate_label_out_of_range_names_file_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut split = gen_split(20, 1, 3, 3, 10);
    split.labels[13] = 10;
    let (ip, lp) = (dir.path().join("img"), dir.path().join("lab"));
    idx::write(&ip, &lp, &split, false).unwrap();
    let back = idx::read(&ip, &lp).unwrap();
    let e = back.validate(10).unwrap_err();
    assert!(matches!(e, FormatError::LabelOutOfRange { index: 13, label: 10, num_classes: 10, .. }), "{e:?}");
    let m = msg(&e);
    assert!(m.contains(&lp.display().to_string()) && m.contains("sample 13"), "{m}");
    back.validate(11).unwrap();

    let mut neg = gen_split(3, 1, 2, 2, 3);
    neg.labels[1] = -1;
    assert!(matches!(neg.validate(3).unwrap_err(), FormatError::LabelOutOfRange { index: 1, .. }));
    let mut short = gen_split(3, 1, 2, 2, 3);
    short.images.pop();
    assert!(matches!(short.validate(3).unwrap_err(), FormatError::Inconsistent { .. }));
}

// ---------------------------------------------------------------------------------------------
// Image folder

fn write_png(path: &Path, w: u32, h: u32, color: png::ColorType, data: &[u8]) {
    let file = fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(data).unwrap();
}

/// A baseline JPEG of one 8x8 gray block of constant `value`, encoded by hand: with a flat block
/// only the DC coefficient is non-zero, so one-symbol Huffman tables suffice. No JPEG encoder is
/// a dependency of this crate, and this keeps the test free of binary fixtures.
fn gray_jpeg_8x8(value: u8) -> Vec<u8> {
    // Quantisation table of ones, so DC = 8 * (value - 128) exactly.
    let dc = 8 * (value as i32 - 128);
    let mag = dc.unsigned_abs();
    let cat = 32 - mag.leading_zeros(); // bits needed for |dc|
    let dc_bits = if dc >= 0 { dc as u32 } else { (dc - 1) as u32 & ((1 << cat) - 1) };

    let mut out = vec![0xFF, 0xD8];
    out.extend([0xFF, 0xDB, 0x00, 0x43, 0x00]);
    out.extend([1u8; 64]);
    out.extend([0xFF, 0xC0, 0x00, 0x0B, 8, 0, 8, 0, 8, 1, 1, 0x11, 0]);
    for (class_id, symbol) in [(0x00u8, cat as u8), (0x10, 0x00)] {
        out.extend([0xFF, 0xC4, 0x00, 0x14, class_id, 1]);
        out.extend([0u8; 15]);
        out.push(symbol);
    }
    out.extend([0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0]);
    // Bits: DC category code "0", `cat` magnitude bits, AC end-of-block code "0", pad with ones.
    let mut bits: Vec<bool> = vec![false];
    bits.extend((0..cat).rev().map(|i| dc_bits >> i & 1 == 1));
    bits.push(false);
    bits.resize(bits.len().div_ceil(8) * 8, true);
    for byte in bits.chunks(8) {
        let b = byte.iter().fold(0u8, |acc, &bit| acc << 1 | bit as u8);
        out.push(b);
        if b == 0xFF {
            out.push(0x00);
        }
    }
    out.extend([0xFF, 0xD9]);
    out
}

/// root/{cat,dog,zebra}: RGB, gray and RGBA PNGs and a JPEG, all 8x8. Returns the RGB
/// pixels (HWC) of cat/a.png.
fn make_folder(root: &Path) -> Vec<u8> {
    for c in ["zebra", "cat", "dog"] {
        fs::create_dir_all(root.join(c)).unwrap();
    }
    let rgb: Vec<u8> = (0..8 * 8 * 3).map(|i| (i * 5 % 256) as u8).collect();
    write_png(&root.join("cat/a.png"), 8, 8, png::ColorType::Rgb, &rgb);
    let gray: Vec<u8> = (0..64).map(|i| (i * 4) as u8).collect();
    write_png(&root.join("cat/b.PNG"), 8, 8, png::ColorType::Grayscale, &gray);
    let rgba: Vec<u8> = (0..64).flat_map(|i| [i as u8, 100, 200, 7]).collect();
    write_png(&root.join("dog/x.png"), 8, 8, png::ColorType::Rgba, &rgba);
    fs::write(root.join("zebra/z.jpg"), gray_jpeg_8x8(200)).unwrap();
    // Ignored: other extensions and hidden files.
    fs::write(root.join("dog/notes.txt"), "not an image").unwrap();
    fs::write(root.join("dog/.hidden.png"), "junk").unwrap();
    rgb
}

#[test]
fn image_folder_round_trip_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = make_folder(dir.path());
    let s = image_folder::read(dir.path(), Some((3, 8, 8)), None).unwrap();
    assert_eq!(s.class_names, vec!["cat", "dog", "zebra"]);
    assert_eq!((s.n, s.channels, s.height, s.width), (4, 3, 8, 8));
    assert_eq!(s.labels, vec![0, 0, 1, 2]);
    s.validate(3).unwrap();
    // cat/a.png: HWC in the file, CHW in the split.
    let a = s.sample(0).unwrap();
    for i in 0..64 {
        for c in 0..3 {
            assert_eq!(a[c * 64 + i], rgb[i * 3 + c]);
        }
    }
    // cat/b.PNG: gray replicated into three channels.
    let b = s.sample(1).unwrap();
    for i in 0..64 {
        assert!(b[i] == (i * 4) as u8 && b[64 + i] == b[i] && b[128 + i] == b[i]);
    }
    // dog/x.png: alpha dropped.
    let x = s.sample(2).unwrap();
    assert_eq!((x[5], x[64 + 5], x[128 + 5]), (5, 100, 200));
    // zebra/z.jpg: a flat gray JPEG decodes to (nearly) its value.
    let z = s.sample(3).unwrap();
    assert!(z.iter().all(|&v| v.abs_diff(200) <= 1), "{z:?}");
}

#[test]
fn image_folder_gray_resize_and_inferred_shape() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = make_folder(dir.path());
    let g = image_folder::read(dir.path(), Some((1, 8, 8)), None).unwrap();
    assert_eq!(g.channels, 1);
    // PIL's L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
    let (r, gr, b) = (rgb[0] as u32, rgb[1] as u32, rgb[2] as u32);
    assert_eq!(g.sample(0).unwrap()[0] as u32, (19595 * r + 38470 * gr + 7471 * b + 32768) >> 16);

    let r4 = image_folder::read(dir.path(), Some((3, 4, 4)), Some((4, 4))).unwrap();
    assert_eq!((r4.n, r4.channels, r4.height, r4.width), (4, 3, 4, 4));
    assert_eq!(r4.images.len(), 4 * 3 * 16);
    assert!(r4.sample(3).unwrap().iter().all(|&v| v.abs_diff(200) <= 1));

    // No expectation: the first file (cat/a.png, RGB 8x8) sets the shape.
    let inferred = image_folder::read(dir.path(), None, None).unwrap();
    assert_eq!((inferred.channels, inferred.height, inferred.width), (3, 8, 8));
    let up = image_folder::read(dir.path(), None, Some((12, 10))).unwrap();
    assert_eq!((up.channels, up.height, up.width), (3, 12, 10));
}

#[test]
fn image_folder_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let a = image_folder::read(dir.path(), Some((3, 8, 8)), None).unwrap();
    let b = image_folder::read(dir.path(), Some((3, 8, 8)), None).unwrap();
    assert_eq!(a, b);
}

#[test]
fn image_folder_unreadable_image() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let bad = dir.path().join("dog/broken.png");
    fs::write(&bad, b"this is not a png at all").unwrap();
    let e = image_folder::read(dir.path(), Some((3, 8, 8)), None).unwrap_err();
    assert!(matches!(e, FormatError::Image { .. }), "{e:?}");
    assert!(msg(&e).contains(&bad.display().to_string()), "{e}");

    // A real PNG cut short.
    fs::remove_file(&bad).unwrap();
    let cut = dir.path().join("cat/c.png");
    let mut bytes = fs::read(dir.path().join("cat/a.png")).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&cut, bytes).unwrap();
    let e = image_folder::read(dir.path(), Some((3, 8, 8)), None).unwrap_err();
    assert!(matches!(e, FormatError::Image { .. }) && msg(&e).contains("c.png"), "{e:?}");
}

#[test]
fn image_folder_empty_class_and_no_classes() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let empty = dir.path().join("empty_class");
    fs::create_dir(&empty).unwrap();
    fs::write(empty.join("readme.txt"), "no images here").unwrap();
    let e = image_folder::read(dir.path(), Some((3, 8, 8)), None).unwrap_err();
    assert!(matches!(e, FormatError::EmptyClass { .. }), "{e:?}");
    assert!(msg(&e).contains("empty_class"), "{e}");

    let bare = tempfile::tempdir().unwrap();
    fs::write(bare.path().join("a.png"), "x").unwrap();
    assert!(matches!(image_folder::read(bare.path(), None, None).unwrap_err(), FormatError::NoClasses { .. }));
    let e = image_folder::read(&bare.path().join("missing"), None, None).unwrap_err();
    assert!(matches!(e, FormatError::NotFound { .. }), "{e:?}");
}

#[test]
fn image_folder_size_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let big = dir.path().join("dog/big.png");
    write_png(&big, 9, 7, png::ColorType::Grayscale, &[0u8; 63]);
    let e = image_folder::read(dir.path(), Some((3, 8, 8)), None).unwrap_err();
    assert!(matches!(e, FormatError::ImageSize { expected_h: 8, expected_w: 8, found_h: 7, found_w: 9, .. }), "{e:?}");
    assert!(msg(&e).contains("big.png") && msg(&e).contains("7x9"), "{e}");
    // With a resize the same folder reads fine.
    let s = image_folder::read(dir.path(), Some((3, 8, 8)), Some((8, 8))).unwrap();
    assert_eq!(s.n, 5);
    // Contradictory arguments are refused.
    assert!(matches!(
        image_folder::read(dir.path(), Some((3, 8, 8)), Some((4, 4))).unwrap_err(),
        FormatError::InvalidArgument(_)
    ));
    assert!(matches!(
        image_folder::read(dir.path(), Some((2, 8, 8)), None).unwrap_err(),
        FormatError::InvalidArgument(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// NPY

#[test]
fn npy_round_trip_hwc_and_chw() {
    let dir = tempfile::tempdir().unwrap();
    let split = gen_split(6, 3, 4, 5, 4);
    for layout in [NpyLayout::Nhwc, NpyLayout::Nchw] {
        let (ip, lp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
        npy::write(&ip, &lp, &split, layout).unwrap();
        let back = npy::read(&ip, &lp, layout).unwrap();
        same_data(&split, &back);
        assert_eq!(back.class_names, vec!["0", "1", "2", "3"]);
        // The data starts 64-byte aligned, as NumPy writes it.
        let (h, _) = npy::read_array(&ip).unwrap();
        let len = fs::metadata(&ip).unwrap().len() as usize;
        assert_eq!((len - split.images.len()) % 64, 0);
        assert_eq!(h.descr, "|u1");
    }
    // HWC really is interleaved on disk.
    let (ip, lp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    npy::write(&ip, &lp, &split, NpyLayout::Nhwc).unwrap();
    let (h, data) = npy::read_array(&ip).unwrap();
    assert_eq!(h.shape, vec![6, 4, 5, 3]);
    assert_eq!(data[1], split.images[20]); // pixel 0, channel 1
}

#[test]
fn npy_three_dims_and_label_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let split = gen_split(5, 1, 3, 3, 3);
    let ip = dir.path().join("x.npy");
    npy::write_array(&ip, "|u1", &[5, 3, 3], &split.images).unwrap();
    for (descr, bytes) in [
        ("<i4", split.labels.iter().flat_map(|&l| (l as i32).to_le_bytes()).collect::<Vec<_>>()),
        ("|u1", split.labels.iter().map(|&l| l as u8).collect()),
        ("<i8", split.labels.iter().flat_map(|&l| l.to_le_bytes()).collect()),
    ] {
        let lp = dir.path().join("y.npy");
        npy::write_array(&lp, descr, &[5], &bytes).unwrap();
        let back = npy::read(&ip, &lp, NpyLayout::Nchw).unwrap();
        same_data(&split, &back);
    }
}

#[test]
fn npy_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, lp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    let labels: Vec<u8> = [0i64, 1].iter().flat_map(|l| l.to_le_bytes()).collect();
    npy::write_array(&lp, "<i8", &[2], &labels).unwrap();

    npy::write_array(&ip, "<f4", &[2, 1, 1], &[0u8; 8]).unwrap();
    let e = npy::read(&ip, &lp, NpyLayout::Nhwc).unwrap_err();
    assert!(matches!(e, FormatError::Npy { .. }) && msg(&e).contains("<f4") && msg(&e).contains("x.npy"), "{e}");

    npy::write_array(&ip, "|u1", &[2, 4], &[0u8; 8]).unwrap();
    let e = npy::read(&ip, &lp, NpyLayout::Nhwc).unwrap_err();
    assert!(msg(&e).contains("shape [2, 4]"), "{e}");

    npy::write_array(&ip, "|u1", &[3, 2, 2], &[0u8; 12]).unwrap();
    let e = npy::read(&ip, &lp, NpyLayout::Nhwc).unwrap_err();
    assert!(matches!(e, FormatError::CountMismatch { images: 3, labels: 2, .. }), "{e:?}");

    npy::write_array(&ip, "|u1", &[2, 2, 2], &[0u8; 8]).unwrap();
    npy::write_array(&lp, "<i8", &[1, 2], &labels).unwrap();
    let e = npy::read(&ip, &lp, NpyLayout::Nhwc).unwrap_err();
    assert!(msg(&e).contains("y.npy") && msg(&e).contains("expected (N,)"), "{e}");

    // Truncated data, wrong magic, Fortran order.
    npy::write_array(&lp, "<i8", &[2], &labels).unwrap();
    let full = fs::read(&ip).unwrap();
    fs::write(&ip, &full[..full.len() - 3]).unwrap();
    assert!(matches!(npy::read(&ip, &lp, NpyLayout::Nhwc).unwrap_err(), FormatError::Truncated { .. }));
    fs::write(&ip, b"PK\x03\x04 this is an npz").unwrap();
    let e = npy::read(&ip, &lp, NpyLayout::Nhwc).unwrap_err();
    assert!(msg(&e).contains("not a .npy file"), "{e}");
    let at = full.windows(5).position(|w| w == b"False").unwrap();
    let mut fortran = full.clone();
    fortran[at..at + 5].copy_from_slice(b"True ");
    fs::write(&ip, fortran).unwrap();
    assert!(msg(&npy::read(&ip, &lp, NpyLayout::Nhwc).unwrap_err()).contains("Fortran"));
    assert!(matches!(
        npy::read(&dir.path().join("none.npy"), &lp, NpyLayout::Nhwc).unwrap_err(),
        FormatError::NotFound { .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// Real data

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn fashion_mnist_from_debian_package() {
    let root = Path::new(FASHION);
    let files = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ];
    if files.iter().any(|f| !root.join(f).exists()) {
        eprintln!("note: {FASHION} not installed (Debian package dataset-fashion-mnist); skipping");
        return;
    }
    let train = idx::read(&root.join(files[0]), &root.join(files[1])).unwrap();
    let test = idx::read(&root.join(files[2]), &root.join(files[3])).unwrap();
    train.validate(10).unwrap();
    test.validate(10).unwrap();
    assert_eq!((train.n, train.channels, train.height, train.width), (60000, 1, 28, 28));
    assert_eq!((test.n, test.channels, test.height, test.width), (10000, 1, 28, 28));
    assert_eq!(train.class_counts(10), vec![6000; 10]);
    assert_eq!(test.class_counts(10), vec![1000; 10]);

    let mut hist = [0u64; 256];
    for &p in &train.images {
        hist[p as usize] += 1;
    }
    let count = train.images.len() as f64;
    let mean = hist.iter().enumerate().map(|(v, &c)| v as f64 / 255.0 * c as f64).sum::<f64>() / count;
    let var = hist.iter().enumerate().map(|(v, &c)| (v as f64 / 255.0 - mean).powi(2) * c as f64).sum::<f64>() / count;
    assert!((mean - 0.2860).abs() < 5e-4, "mean {mean}");
    assert!((var.sqrt() - 0.3530).abs() < 5e-4, "std {}", var.sqrt());
}

/// Found by fuzzing: a labels file with one corrupt label (2^40) made the reader build a class
/// name for every index up to it and abort out of memory. It is now refused, naming the sample.
#[test]
fn npy_huge_label_is_refused_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, lp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    npy::write_array(&ip, "|u1", &[2, 1, 1], &[0u8; 2]).unwrap();
    let labels: Vec<u8> = [0i64, 1 << 40].iter().flat_map(|l| l.to_le_bytes()).collect();
    npy::write_array(&lp, "<i8", &[2], &labels).unwrap();
    let e = npy::read(&ip, &lp, NpyLayout::Nhwc).unwrap_err();
    assert!(matches!(e, FormatError::LabelOutOfRange { index: 1, .. }), "{e:?}");
    assert!(msg(&e).contains("y.npy") && msg(&e).contains(&(1i64 << 40).to_string()), "{e}");
}

/// Found by fuzzing: a JPEG whose header claims 65535x65535 made the decoder allocate 8 GB before
/// reading a pixel. The header is checked against image_folder::MAX_IMAGE_PIXELS first.
#[test]
fn image_whose_header_claims_a_huge_size_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path());
    let mut bomb = gray_jpeg_8x8(100);
    // The SOF0 segment: FF C0, length, precision, then height and width (big-endian u16).
    let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    bomb[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    let bad = dir.path().join("dog/bomb.jpg");
    fs::write(&bad, bomb).unwrap();
    let e = image_folder::read(dir.path(), None, Some((8, 8))).unwrap_err();
    assert!(matches!(e, FormatError::Image { .. }), "{e:?}");
    assert!(msg(&e).contains("bomb.jpg") && msg(&e).contains("65535x65535"), "{e}");
}
