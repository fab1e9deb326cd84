//! TensorBoard event files: what the writer writes, the reader reads back with CRCs checked.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use archai_runlog::{read_events, RunLogError, TbWriter, FILE_VERSION};

const SCALARS: [(&str, f32, i64); 6] = [
    ("train/loss", 2.5, 0),
    ("train/top1", 0.1, 0),
    ("train/loss", 1.25, 1),
    ("lr", 0.025, 1),
    ("train/loss", -0.0, 1_000_000_000_000),
    ("weird tag/ü", f32::INFINITY, -5),
];

fn write_sample(dir: &Path) -> PathBuf {
    let mut w = TbWriter::create(dir).expect("create writer");
    for (tag, value, step) in SCALARS {
        w.add_scalar(tag, value, step).expect("add_scalar");
    }
    w.flush().expect("flush");
    w.path().to_path_buf()
}

#[test]
fn scalars_round_trip_with_crc_checks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64();
    let path = write_sample(&tmp.path().join("tb"));

    let name = path.file_name().expect("name").to_string_lossy().into_owned();
    let rest = name.strip_prefix("events.out.tfevents.").unwrap_or_else(|| panic!("bad file name {name}"));
    let (secs, host) = rest.split_once('.').expect("<secs>.<host>");
    assert!(secs.parse::<u64>().is_ok(), "{name}");
    assert!(!host.is_empty(), "{name}");

    let events = read_events(&path).expect("read back");
    assert_eq!(events.len(), SCALARS.len() + 1);
    assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION));
    assert!(events[0].scalars.is_empty());
    for (ev, (tag, value, step)) in events[1..].iter().zip(SCALARS) {
        assert_eq!(ev.step, step);
        assert_eq!(ev.scalars.len(), 1);
        assert_eq!(ev.scalars[0].tag, tag);
        assert_eq!(ev.scalars[0].value.to_bits(), value.to_bits(), "{tag}");
        assert!(ev.wall_time >= before - 1.0 && ev.wall_time < before + 60.0);
    }
    let times: Vec<f64> = events.iter().map(|e| e.wall_time).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

#[test]
fn two_writers_in_one_dir_get_distinct_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = TbWriter::create(tmp.path()).expect("a");
    let b = TbWriter::create(tmp.path()).expect("b");
    assert_ne!(a.path(), b.path());
    assert!(b.path().to_string_lossy().contains("tfevents"));
}

/// Byte offset where record `index` starts.
fn record_offset(bytes: &[u8], index: usize) -> usize {
    let mut pos = 0;
    for _ in 0..index {
        let len = u64::from_le_bytes(bytes[pos..pos + 8].try_into().expect("8")) as usize;
        pos += 16 + len;
    }
    pos
}

fn corrupt_and_read(at: impl Fn(&[u8]) -> usize) -> RunLogError {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = write_sample(tmp.path());
    let mut bytes = fs::read(&path).expect("read");
    let i = at(&bytes);
    bytes[i] ^= 0x10;
    fs::write(&path, &bytes).expect("write");
    let err = read_events(&path).expect_err("corruption must be detected");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    err
}

#[test]
fn flipped_data_byte_is_a_data_crc_error_naming_the_record() {
    let err = corrupt_and_read(|b| record_offset(b, 2) + 12 + 3);
    match &err {
        RunLogError::TbCrc { record, part, .. } => {
            assert_eq!((*record, *part), (2, "data"));
            assert!(err.to_string().contains("record 2"), "{err}");
        }
        other => panic!("expected a CRC error, got {other:?}"),
    }
}

#[test]
fn flipped_length_byte_is_a_length_crc_error() {
    let err = corrupt_and_read(|b| record_offset(b, 1));
    assert!(matches!(err, RunLogError::TbCrc { record: 1, part: "length", .. }), "{err:?}");
}

#[test]
fn flipped_stored_crc_byte_is_detected() {
    // Last byte of the file: the data CRC of the last record.
    let err = corrupt_and_read(|b| b.len() - 1);
    assert!(matches!(err, RunLogError::TbCrc { record: 6, part: "data", .. }), "{err:?}");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = read_events(Path::new("/nonexistent/events.out.tfevents.1.h")).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/events.out.tfevents.1.h"), "{err}");
}
