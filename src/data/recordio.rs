//! MXNet RecordIO (`.rec` + `.idx`), the training format of insightface's MS1M / Glint360K
//! releases, read without MXNet.
//!
//! A record is `[magic u32 LE][lrec u32 LE][data][zero padding to 4 bytes]`, `lrec` holding a
//! continuation flag in its top 3 bits (0 whole, 1 first, 2 middle, 3 last part) and the length in
//! the low 29. A record whose data contained the magic number was split there; the reader joins
//! the parts and puts the magic number back between them. The `.idx` file lists `key\toffset`
//! lines. insightface payloads start with a packed header `IfQQ` (flag u32, label f32, id u64,
//! id2 u64); when `flag > 0` the label is instead `flag` float32 values following the header; the
//! encoded image follows.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{MfrError, Result};

pub const MAGIC: u32 = 0xced7_230a;
const LEN_MASK: u32 = (1 << 29) - 1;

pub struct RecordFile {
    path: PathBuf,
    file: File,
    /// (key, byte offset of the record), in file order.
    pub entries: Vec<(u64, u64)>,
    /// The same, sorted by key, for lookups.
    by_key: Vec<(u64, u64)>,
}

/// An insightface record: its header and the encoded image.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightfaceRecord {
    pub flag: u32,
    pub labels: Vec<f32>,
    pub id: u64,
    pub id2: u64,
    pub payload: Vec<u8>,
}

fn read_u32(file: &File, offset: u64, path: &Path) -> Result<u32> {
    let mut b = [0u8; 4];
    file.read_exact_at(&mut b, offset)
        .map_err(|e| MfrError::data("RecordFile", format!("{}: cannot read at byte {offset}: {e}", path.display())))?;
    Ok(u32::from_le_bytes(b))
}

impl RecordFile {
    /// Opens `rec`, with offsets from `idx` when given, else by scanning the file (keys 0, 1, ...).
    pub fn open(rec: &Path, idx: Option<&Path>) -> Result<Self> {
        const F: &str = "RecordFile";
        let file = File::open(rec).map_err(|e| MfrError::data(F, format!("cannot open {}: {e}", rec.display())))?;
        let mut rf = RecordFile { path: rec.to_path_buf(), file, entries: Vec::new(), by_key: Vec::new() };
        match idx {
            Some(idx) => {
                let text = std::fs::read_to_string(idx)
                    .map_err(|e| MfrError::data(F, format!("cannot read {}: {e}", idx.display())))?;
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let mut it = line.split_whitespace();
                    let parsed =
                        (it.next().and_then(|k| k.parse().ok()), it.next().and_then(|o| o.parse().ok()), it.next());
                    match parsed {
                        (Some(k), Some(o), None) => rf.entries.push((k, o)),
                        _ => {
                            return Err(MfrError::data(
                                F,
                                format!("{} line {}: expected 'key<TAB>offset', got {line:?}", idx.display(), n + 1),
                            ))
                        }
                    }
                }
            }
            None => {
                let size = rf.file.metadata().map_err(|e| MfrError::data(F, format!("{}: {e}", rec.display())))?.len();
                let (mut offset, mut key) = (0u64, 0u64);
                while offset < size {
                    rf.entries.push((key, offset));
                    offset = rf.skip(offset)?;
                    key += 1;
                }
            }
        }
        rf.by_key = rf.entries.clone();
        rf.by_key.sort_unstable();
        Ok(rf)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn header(&self, offset: u64) -> Result<(u32, u64)> {
        let magic = read_u32(&self.file, offset, &self.path)?;
        if magic != MAGIC {
            return Err(MfrError::data(
                "RecordFile",
                format!("{}: no record at byte {offset} (magic {magic:#010x}, expected {MAGIC:#010x}): corrupt file or wrong .idx", self.path.display()),
            ));
        }
        let lrec = read_u32(&self.file, offset + 4, &self.path)?;
        Ok((lrec >> 29, u64::from(lrec & LEN_MASK)))
    }

    /// Offset just past the (possibly multi-part) record at `offset`.
    fn skip(&self, mut offset: u64) -> Result<u64> {
        loop {
            let (cflag, len) = self.header(offset)?;
            offset += 8 + len.div_ceil(4) * 4;
            if cflag == 0 || cflag == 3 {
                return Ok(offset);
            }
        }
    }

    /// The data of the record at `offset`, parts joined.
    pub fn read_at(&self, mut offset: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let (cflag, len) = self.header(offset)?;
            let start = out.len();
            out.resize(start + len as usize, 0);
            self.file.read_exact_at(&mut out[start..], offset + 8).map_err(|e| {
                MfrError::data("RecordFile", format!("{}: truncated record at byte {offset}: {e}", self.path.display()))
            })?;
            offset += 8 + len.div_ceil(4) * 4;
            if cflag == 0 || cflag == 3 {
                return Ok(out);
            }
            out.extend_from_slice(&MAGIC.to_le_bytes());
        }
    }

    /// The data of the record with `key`.
    pub fn read(&self, key: u64) -> Result<Vec<u8>> {
        self.read_at(self.offset(key)?)
    }

    /// The insightface header of the record with `key` (`flag`, labels), reading only its start.
    pub fn insightface_labels(&self, key: u64) -> Result<(u32, Vec<f32>)> {
        let offset = self.offset(key)?;
        let (cflag, len) = self.header(offset)?;
        let first = 24 + 4 * 64; // header plus room for up to 64 labels
        let raw = if cflag == 0 || len as usize >= first {
            let mut buf = vec![0u8; (len as usize).min(first)];
            self.file.read_exact_at(&mut buf, offset + 8).map_err(|e| {
                MfrError::data("RecordFile", format!("{}: truncated record at byte {offset}: {e}", self.path.display()))
            })?;
            buf
        } else {
            self.read_at(offset)?
        };
        let flag = u32::from_le_bytes(raw.get(0..4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
        if flag as usize > 64 {
            let r = unpack_insightface(self.read_at(offset)?)?;
            return Ok((r.flag, r.labels));
        }
        let r = unpack_insightface(raw)?;
        Ok((r.flag, r.labels))
    }

    fn offset(&self, key: u64) -> Result<u64> {
        self.by_key.binary_search_by_key(&key, |&(k, _)| k).ok().map(|i| self.by_key[i].1).ok_or_else(|| {
            MfrError::invalid("RecordFile", format!("no record with key {key} in {}", self.path.display()))
        })
    }
}

/// Splits an insightface record into its header and payload.
pub fn unpack_insightface(raw: Vec<u8>) -> Result<InsightfaceRecord> {
    const HEADER: usize = 24;
    if raw.len() < HEADER {
        return Err(MfrError::data(
            "RecordFile",
            format!("record of {} bytes is shorter than insightface's 24-byte header", raw.len()),
        ));
    }
    let u32_at = |i: usize| u32::from_le_bytes(raw[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(raw[i..i + 8].try_into().expect("8 bytes"));
    let flag = u32_at(0);
    let (id, id2) = (u64_at(8), u64_at(16));
    let (labels, body_start) = if flag > 0 {
        let end = HEADER + 4 * flag as usize;
        if raw.len() < end {
            return Err(MfrError::data(
                "RecordFile",
                format!("record announces {flag} labels but has only {} bytes", raw.len()),
            ));
        }
        (
            (0..flag as usize)
                .map(|j| f32::from_le_bytes(raw[HEADER + 4 * j..HEADER + 4 * j + 4].try_into().expect("4")))
                .collect(),
            end,
        )
    } else {
        (vec![f32::from_le_bytes(raw[4..8].try_into().expect("4"))], HEADER)
    };
    Ok(InsightfaceRecord { flag, labels, id, id2, payload: raw[body_start..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_record(out: &mut Vec<u8>, data: &[u8]) {
        // Split at 4-aligned magic numbers, as dmlc's writer does.
        let magic = MAGIC.to_le_bytes();
        let cuts: Vec<usize> =
            (0..data.len().saturating_sub(3)).step_by(4).filter(|&i| data[i..i + 4] == magic).collect();
        let mut parts = Vec::new();
        let mut start = 0;
        for &c in &cuts {
            parts.push(&data[start..c]);
            start = c + 4;
        }
        parts.push(&data[start..]);
        let n = parts.len();
        for (j, p) in parts.iter().enumerate() {
            let cflag: u32 = if n == 1 {
                0
            } else if j == 0 {
                1
            } else if j == n - 1 {
                3
            } else {
                2
            };
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&((cflag << 29) | p.len() as u32).to_le_bytes());
            out.extend_from_slice(p);
            out.resize(out.len().div_ceil(4) * 4, 0);
        }
    }

    #[test]
    fn reads_split_records_and_scans_without_idx() {
        let mut data = b"abcd".to_vec();
        data.extend_from_slice(&MAGIC.to_le_bytes());
        data.extend_from_slice(b"xyz");
        let records = [b"hello".to_vec(), data.clone(), vec![]];
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for r in &records {
            offsets.push(bytes.len());
            write_record(&mut bytes, r);
        }
        let dir = std::env::temp_dir().join(format!("mfr_rec_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rec = dir.join("t.rec");
        std::fs::File::create(&rec).unwrap().write_all(&bytes).unwrap();
        let f = RecordFile::open(&rec, None).unwrap();
        assert_eq!(f.len(), 3);
        for (k, r) in records.iter().enumerate() {
            assert_eq!(&f.read(k as u64).unwrap(), r);
        }
        let idx = dir.join("t.idx");
        std::fs::write(&idx, format!("7\t{}\n9\t{}\n", offsets[1], offsets[0])).unwrap();
        let g = RecordFile::open(&rec, Some(&idx)).unwrap();
        assert_eq!(g.read(7).unwrap(), data);
        assert!(g.read(8).is_err());
        std::fs::write(&idx, "7\tx\n").unwrap();
        assert!(RecordFile::open(&rec, Some(&idx)).err().unwrap().to_string().contains("line 1"));
        std::fs::write(&idx, "1\t3\n").unwrap();
        let bad = RecordFile::open(&rec, Some(&idx)).unwrap();
        assert!(bad.read(1).err().unwrap().to_string().contains("no record at byte 3"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unpacks_insightface_headers() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&0u32.to_le_bytes());
        raw.extend_from_slice(&42.0f32.to_le_bytes());
        raw.extend_from_slice(&5u64.to_le_bytes());
        raw.extend_from_slice(&0u64.to_le_bytes());
        raw.extend_from_slice(b"JPEG");
        let r = unpack_insightface(raw).unwrap();
        assert_eq!((r.flag, r.labels.clone(), r.id, r.payload.clone()), (0, vec![42.0], 5, b"JPEG".to_vec()));
        let mut multi = Vec::new();
        multi.extend_from_slice(&2u32.to_le_bytes());
        multi.extend_from_slice(&0f32.to_le_bytes());
        multi.extend_from_slice(&[0u8; 16]);
        multi.extend_from_slice(&1.0f32.to_le_bytes());
        multi.extend_from_slice(&9.0f32.to_le_bytes());
        let r = unpack_insightface(multi).unwrap();
        assert_eq!((r.labels, r.payload.len()), (vec![1.0, 9.0], 0));
        assert!(unpack_insightface(vec![0; 10]).is_err());
    }
}
