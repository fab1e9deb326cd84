//! TensorBoard scalar event files, written and read without a protobuf library.
//!
//! File format (TFRecord framing): every record is
//! `u64 LE length | u32 LE masked CRC32C(length bytes) | data | u32 LE masked CRC32C(data)`,
//! and `data` is a serialized `tensorflow.Event` protobuf. Only the handful of fields that
//! scalars need are encoded by hand here:
//!
//! ```text
//! Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//! Summary { repeated Value value = 1; }
//! Value   { string tag = 1; oneof value { float simple_value = 2; ... } }
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::crc32c::masked_crc32c;
use crate::error::{Result, RunLogError};

/// The version string TensorBoard expects in the first record of an event file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Appends scalar summaries to one TensorBoard event file.
///
/// Records are buffered; call [`TbWriter::flush`] (e.g. once per epoch) to make them visible
/// to TensorBoard. Dropping the writer flushes too, ignoring errors.
#[derive(Debug)]
pub struct TbWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl TbWriter {
    /// Creates `dir` if needed and a new file `dir/events.out.tfevents.<unix_secs>.<hostname>`
    /// in it, starting with the file-version record. If that name is taken (two writers in
    /// the same second), `.1`, `.2`, ... is appended: TensorBoard reads any file whose name
    /// contains "tfevents".
    pub fn create(dir: &Path) -> Result<TbWriter> {
        fs::create_dir_all(dir).map_err(|e| RunLogError::io("create directory", dir, e))?;
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let base = format!("events.out.tfevents.{secs}.{}", hostname());
        let mut n = 0u32;
        let (path, file) = loop {
            let path = if n == 0 { dir.join(&base) } else { dir.join(format!("{base}.{n}")) };
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(RunLogError::io("create", path, e)),
            }
        };
        let mut w = TbWriter { path, out: BufWriter::new(file) };
        let first = encode_event(now_secs(), 0, EventBody::FileVersion(FILE_VERSION));
        w.write_record(&first)?;
        // Flushed at once so that even a run killed before its first epoch leaves a file that
        // TensorBoard recognises.
        w.flush()?;
        Ok(w)
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one scalar `value` for `tag` at `step`, stamped with the current time.
    pub fn add_scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<()> {
        let data = encode_event(now_secs(), step, EventBody::Scalars(&[(tag, value)]));
        self.write_record(&data)
    }

    /// Pushes buffered records to the file (no fsync: TensorBoard reads through the page
    /// cache, and a lost last epoch of curves after a power cut does not warrant the cost).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| RunLogError::io("write", &self.path, e))
    }

    fn write_record(&mut self, data: &[u8]) -> Result<()> {
        let rec = frame_record(data);
        self.out.write_all(&rec).map_err(|e| RunLogError::io("write", &self.path, e))
    }
}

/// One scalar inside an event.
#[derive(Debug, Clone, PartialEq)]
pub struct TbScalar {
    /// The series name, e.g. "train/loss".
    pub tag: String,
    /// The value.
    pub value: f32,
}

/// One decoded event record.
#[derive(Debug, Clone, PartialEq)]
pub struct TbEvent {
    /// Seconds since the Unix epoch when the event was written.
    pub wall_time: f64,
    /// The training step the event belongs to.
    pub step: i64,
    /// Set on the first record of a file ("brain.Event:2").
    pub file_version: Option<String>,
    /// The scalar (`simple_value`) summaries in this event; other summary kinds are skipped.
    pub scalars: Vec<TbScalar>,
}

/// Reads every record of an event file, verifying both CRCs of each.
///
/// Fails on the first corrupt or truncated record, naming the file and the record index.
pub fn read_events(path: &Path) -> Result<Vec<TbEvent>> {
    read_impl(path, false).map(|(events, _)| events)
}

/// Like [`read_events`], but a final record cut short (the writer was killed mid-write) is
/// dropped instead of failing; the flag tells whether that happened. CRC errors still fail.
pub fn read_events_allow_partial_tail(path: &Path) -> Result<(Vec<TbEvent>, bool)> {
    read_impl(path, true)
}

fn read_impl(path: &Path, allow_partial_tail: bool) -> Result<(Vec<TbEvent>, bool)> {
    let bytes = fs::read(path).map_err(|e| RunLogError::io("read", path, e))?;
    let mut events = Vec::new();
    let mut pos = 0usize;
    let mut record = 0usize;
    while pos < bytes.len() {
        let truncated = || RunLogError::TbTruncated { path: path.to_path_buf(), record, offset: pos };
        let rest = &bytes[pos..];
        if rest.len() < 12 {
            if allow_partial_tail {
                return Ok((events, true));
            }
            return Err(truncated());
        }
        let len_bytes = &rest[..8];
        check_crc(path, record, pos, "length", len_bytes, le_u32(&rest[8..12]))?;
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        // The length is CRC-checked, so a huge value is a real claim the file cannot back.
        let needed = usize::try_from(len).ok().and_then(|l| l.checked_add(16)).filter(|&n| n <= rest.len());
        let Some(needed) = needed else {
            if allow_partial_tail {
                return Ok((events, true));
            }
            return Err(truncated());
        };
        let data = &rest[12..needed - 4];
        check_crc(path, record, pos, "data", data, le_u32(&rest[needed - 4..needed]))?;
        let event =
            decode_event(data).map_err(|msg| RunLogError::TbDecode { path: path.to_path_buf(), record, msg })?;
        events.push(event);
        pos += needed;
        record += 1;
    }
    Ok((events, false))
}

fn check_crc(path: &Path, record: usize, offset: usize, part: &'static str, data: &[u8], stored: u32) -> Result<()> {
    let computed = masked_crc32c(data);
    if computed == stored {
        Ok(())
    } else {
        Err(RunLogError::TbCrc { path: path.to_path_buf(), record, offset, part, stored, computed })
    }
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("4 bytes"))
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The name TensorFlow puts in event file names. Read from the kernel rather than via libc to
/// stay free of unsafe code; the name only has to be stable and file-name safe.
fn hostname() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let clean: String =
        raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')).collect();
    if clean.is_empty() {
        "localhost".to_string()
    } else {
        clean
    }
}

// ---- framing and protobuf encoding ----

pub(crate) fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut rec = Vec::with_capacity(data.len() + 16);
    rec.extend_from_slice(&len);
    rec.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    rec.extend_from_slice(data);
    rec.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    rec
}

pub(crate) enum EventBody<'a> {
    FileVersion(&'a str),
    Scalars(&'a [(&'a str, f32)]),
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(buf, field, WIRE_LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Encodes an Event the way proto3 does: scalar fields equal to their default (0) are
/// omitted, `simple_value` never is (it is in a oneof). That makes our bytes identical to
/// TensorFlow's, which the golden test below relies on.
pub(crate) fn encode_event(wall_time: f64, step: i64, body: EventBody<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    if wall_time != 0.0 {
        put_key(&mut buf, 1, WIRE_I64);
        buf.extend_from_slice(&wall_time.to_le_bytes());
    }
    if step != 0 {
        put_key(&mut buf, 2, WIRE_VARINT);
        // int64 negatives are 10-byte two's-complement varints, not zigzag.
        put_varint(&mut buf, step as u64);
    }
    match body {
        EventBody::FileVersion(v) => put_bytes(&mut buf, 3, v.as_bytes()),
        EventBody::Scalars(values) => {
            let mut summary = Vec::new();
            for (tag, value) in values {
                let mut v = Vec::new();
                put_bytes(&mut v, 1, tag.as_bytes());
                put_key(&mut v, 2, WIRE_I32);
                v.extend_from_slice(&value.to_le_bytes());
                put_bytes(&mut summary, 1, &v);
            }
            put_bytes(&mut buf, 5, &summary);
        }
    }
    buf
}

// ---- protobuf decoding ----

enum Field<'a> {
    Varint(u64),
    I64(u64),
    Len(&'a [u8]),
    I32(u32),
}

struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or_else(|| format!("varint runs past the end at byte {}", self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("field of {n} bytes runs past the end at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next_field(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let value = match (key & 7) as u8 {
            WIRE_VARINT => Field::Varint(self.varint()?),
            WIRE_I64 => Field::I64(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            WIRE_LEN => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length overflows usize")?;
                Field::Len(self.take(n)?)
            }
            WIRE_I32 => Field::I32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            w => return Err(format!("field {field} has unsupported wire type {w}")),
        };
        Ok(Some((field, value)))
    }
}

fn utf8(b: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

pub(crate) fn decode_event(data: &[u8]) -> Result<TbEvent, String> {
    let mut ev = TbEvent { wall_time: 0.0, step: 0, file_version: None, scalars: Vec::new() };
    let mut f = Fields::new(data);
    while let Some((field, value)) = f.next_field()? {
        match (field, value) {
            (1, Field::I64(bits)) => ev.wall_time = f64::from_bits(bits),
            (2, Field::Varint(v)) => ev.step = v as i64,
            (3, Field::Len(b)) => ev.file_version = Some(utf8(b, "file_version")?),
            (5, Field::Len(b)) => decode_summary(b, &mut ev.scalars)?,
            (1 | 2 | 3 | 5, _) => return Err(format!("Event field {field} has the wrong wire type")),
            _ => {} // other event kinds (log messages, graphs, ...) are not ours to read
        }
    }
    Ok(ev)
}

fn decode_summary(data: &[u8], out: &mut Vec<TbScalar>) -> Result<(), String> {
    let mut f = Fields::new(data);
    while let Some((field, value)) = f.next_field()? {
        if field != 1 {
            continue;
        }
        let Field::Len(b) = value else {
            return Err("Summary.value has the wrong wire type".to_string());
        };
        let mut tag = String::new();
        let mut simple = None;
        let mut vf = Fields::new(b);
        while let Some((field, value)) = vf.next_field()? {
            match (field, value) {
                (1, Field::Len(t)) => tag = utf8(t, "Summary.Value.tag")?,
                (2, Field::I32(bits)) => simple = Some(f32::from_bits(bits)),
                (1 | 2, _) => return Err(format!("Summary.Value field {field} has the wrong wire type")),
                _ => {} // images, histograms, tensors: not scalars
            }
        }
        if let Some(value) = simple {
            out.push(TbScalar { tag, value });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three records written by TensorBoard 2.21's own Python `RecordWriter` from
    /// `event_pb2.Event(...).SerializeToString()`: the file-version event at wall_time
    /// 1700000000.25, step 0; a scalar "train/loss" = 0.25 at step 7, wall_time 1700000001.5;
    /// a scalar "lr" = NaN at step -3, wall_time 1700000002.0. Matching them byte for byte
    /// proves the framing, the CRC masking and the protobuf encoding against the reference.
    const GOLDEN: [u8; 137] = [
        0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa3, 0x7f, 0x4b, 0x22, 0x09, 0x00, 0x00, 0x10, 0x40, 0xfc,
        0x54, 0xd9, 0x41, 0x1a, 0x0d, 0x62, 0x72, 0x61, 0x69, 0x6e, 0x2e, 0x45, 0x76, 0x65, 0x6e, 0x74, 0x3a, 0x32,
        0x33, 0x8d, 0x2f, 0xe9, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x29, 0xed, 0xa9, 0x50, 0x09, 0x00,
        0x00, 0x60, 0x40, 0xfc, 0x54, 0xd9, 0x41, 0x10, 0x07, 0x2a, 0x13, 0x0a, 0x11, 0x0a, 0x0a, 0x74, 0x72, 0x61,
        0x69, 0x6e, 0x2f, 0x6c, 0x6f, 0x73, 0x73, 0x15, 0x00, 0x00, 0x80, 0x3e, 0x1d, 0x2b, 0x5f, 0xdf, 0x21, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x7b, 0xec, 0xf6, 0x09, 0x00, 0x00, 0x80, 0x40, 0xfc, 0x54, 0xd9,
        0x41, 0x10, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x2a, 0x0b, 0x0a, 0x09, 0x0a, 0x02,
        0x6c, 0x72, 0x15, 0x00, 0x00, 0xc0, 0x7f, 0xfa, 0x25, 0x4a, 0x1e,
    ];

    fn golden_events() -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(frame_record(&encode_event(1_700_000_000.25, 0, EventBody::FileVersion(FILE_VERSION))));
        out.extend(frame_record(&encode_event(1_700_000_001.5, 7, EventBody::Scalars(&[("train/loss", 0.25)]))));
        out.extend(frame_record(&encode_event(1_700_000_002.0, -3, EventBody::Scalars(&[("lr", f32::NAN)]))));
        out
    }

    #[test]
    fn encoding_matches_tensorflow_bytes() {
        assert_eq!(golden_events(), GOLDEN.to_vec());
    }

    #[test]
    fn decodes_tensorflow_bytes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("events.out.tfevents.golden");
        fs::write(&p, GOLDEN).expect("write");
        let ev = read_events(&p).expect("read");
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].file_version.as_deref(), Some(FILE_VERSION));
        assert_eq!((ev[0].wall_time, ev[0].step), (1_700_000_000.25, 0));
        assert_eq!((ev[1].wall_time, ev[1].step), (1_700_000_001.5, 7));
        assert_eq!(ev[1].scalars, vec![TbScalar { tag: "train/loss".into(), value: 0.25 }]);
        assert_eq!(ev[2].step, -3);
        assert_eq!(ev[2].scalars[0].tag, "lr");
        assert!(ev[2].scalars[0].value.is_nan());
    }

    #[test]
    fn varint_round_trip_edges() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut f = Fields::new(&buf);
            assert_eq!(f.varint().expect("decode"), v);
            assert_eq!(f.pos, buf.len());
        }
    }

    #[test]
    fn partial_tail_is_reported_or_skipped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("events.out.tfevents.cut");
        fs::write(&p, &GOLDEN[..GOLDEN.len() - 5]).expect("write");
        match read_events(&p) {
            Err(RunLogError::TbTruncated { record, .. }) => assert_eq!(record, 2),
            other => panic!("expected truncation error, got {other:?}"),
        }
        let (ev, cut) = read_events_allow_partial_tail(&p).expect("lenient read");
        assert!(cut);
        assert_eq!(ev.len(), 2);
    }
}
