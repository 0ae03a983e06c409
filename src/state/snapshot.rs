//! Snapshots: the whole durable state in one file, sorted by user key, with a sparse index so
//! that one user can be read back without loading the rest. A user evicted from memory is
//! read back from here; recovery opens the latest snapshot (reading only its index) and
//! replays the log written since.
//!
//! A snapshot is written to a temporary file, fsynced and renamed into place, so a crash
//! leaves either the old snapshot or the new one, never half of one. Taking a snapshot
//! rewrites the file without the users who asked to be forgotten: their bytes are gone from
//! the data directory, not just unlinked from an index.
//!
//! Layout: header `TACTSNAP` + version; rows `[key 16][seq u64][len u32][crc32 u32][payload]`
//! in key order; the index (every `INDEX_EVERY`-th key and its offset); a fixed footer.
//!
//! The table knows rows by an opaque 16-byte [`RowKey`] and payloads as bytes. In format 3 the
//! disk backend keys a row by the user's data-key id (big-endian, so that the order is the
//! ids'; the user's key is never written here) and seals the payload under that key; format 2
//! keyed rows by the user's key and held the state in clear, and is read only to migrate it.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::StateError;
use super::wal::sync_dir;

/// What a row is found by.
pub type RowKey = [u8; 16];

const MAGIC: &[u8; 8] = b"TACTSNAP";
/// Bump when the row payload (the encoded user state) changes shape.
pub const FORMAT_VERSION: u32 = 4;
/// The version before rows narrowed: read to migrate it, never written.
pub const FORMAT_V3: u32 = 3;
/// The version before rows were sealed: read to migrate it, never written.
pub const FORMAT_V2: u32 = 2;
const HEADER: u64 = 16;
const ROW_HEADER: usize = 16 + 8 + 4 + 4;
const FOOTER: usize = 8 * 4 + 4 + 4 + 8;
/// One index entry per this many rows: 24 bytes of memory per 64 users, and a lookup reads
/// one span of at most 64 rows.
const INDEX_EVERY: u64 = 64;
const MAX_ROW: usize = 1 << 24;

fn file_name(base_seq: u64) -> String {
    format!("snapshot-{base_seq:020}.tbl")
}

/// One snapshot, open for lookups.
#[derive(Debug, Default)]
pub struct Table {
    file: Option<File>,
    path: Option<PathBuf>,
    /// Every op below this seq is in the snapshot.
    base_seq: u64,
    rows: u64,
    index: Vec<(RowKey, u64)>,
    /// Where the rows end (and the index starts).
    rows_end: u64,
    version: u32,
}

/// A row: the user's key, the seq captured with it (ops below it are in the payload), and
/// the encoded state.
pub type Row = (RowKey, u64, Vec<u8>);

impl Table {
    /// The latest snapshot in `dir`, or an empty table when there is none. Older snapshots and
    /// leftovers of an interrupted one are deleted.
    pub fn open_latest(dir: &Path) -> Result<Self, StateError> {
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| StateError::io(dir, e))? {
            let entry = entry.map_err(|e| StateError::io(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("snapshot-") && name.ends_with(".tmp") {
                fs::remove_file(entry.path()).map_err(|e| StateError::io(entry.path(), e))?;
            } else if let Some(seq) = name
                .strip_prefix("snapshot-")
                .and_then(|n| n.strip_suffix(".tbl"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                found.push((seq, entry.path()));
            }
        }
        found.sort();
        let Some((_, latest)) = found.pop() else {
            return Ok(Self::default());
        };
        for (_, old) in found {
            fs::remove_file(&old).map_err(|e| StateError::io(&old, e))?;
        }
        Self::open(&latest)
    }

    pub fn open(path: &Path) -> Result<Self, StateError> {
        let file = File::open(path).map_err(|e| StateError::io(path, e))?;
        let corrupt = |what: &str| StateError::Corrupt(format!("{}: {what}", path.display()));
        let len = file.metadata().map_err(|e| StateError::io(path, e))?.len();
        if len < HEADER + FOOTER as u64 {
            return Err(corrupt("too short to be a snapshot"));
        }
        let mut header = [0u8; HEADER as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| StateError::io(path, e))?;
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if &header[..8] != MAGIC {
            return Err(corrupt("not a tactful snapshot"));
        }
        if ![FORMAT_VERSION, FORMAT_V3, FORMAT_V2].contains(&version) {
            return Err(corrupt(&format!(
                "format version {version}, this build reads {FORMAT_VERSION} (and migrates \
                 {FORMAT_V3} and {FORMAT_V2})"
            )));
        }
        let mut footer = [0u8; FOOTER];
        file.read_exact_at(&mut footer, len - FOOTER as u64)
            .map_err(|e| StateError::io(path, e))?;
        let u64_at = |i: usize| u64::from_le_bytes(footer[i..i + 8].try_into().expect("8 bytes"));
        let (base_seq, rows, index_at, entries) = (u64_at(0), u64_at(8), u64_at(16), u64_at(24));
        let index_crc = u32::from_le_bytes(footer[32..36].try_into().expect("4 bytes"));
        if &footer[40..] != MAGIC || index_at + entries * 24 + FOOTER as u64 != len {
            return Err(corrupt("damaged footer"));
        }
        let mut raw = vec![0u8; entries as usize * 24];
        file.read_exact_at(&mut raw, index_at)
            .map_err(|e| StateError::io(path, e))?;
        if crc32fast::hash(&raw) != index_crc {
            return Err(corrupt("damaged index"));
        }
        let index = raw
            .chunks_exact(24)
            .map(|c| {
                let key: RowKey = c[..16].try_into().expect("16 bytes");
                (
                    key,
                    u64::from_le_bytes(c[16..].try_into().expect("8 bytes")),
                )
            })
            .collect();
        Ok(Self {
            file: Some(file),
            path: Some(path.to_owned()),
            base_seq,
            rows,
            index,
            rows_end: index_at,
            version,
        })
    }

    /// The format the snapshot was written in ([`FORMAT_VERSION`] or [`FORMAT_V2`]; an empty
    /// table is in this build's).
    pub fn version(&self) -> u32 {
        if self.file.is_some() {
            self.version
        } else {
            FORMAT_VERSION
        }
    }

    pub fn base_seq(&self) -> u64 {
        self.base_seq
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// One user's row: the seq captured with it and the encoded state.
    pub fn get(&self, key: RowKey) -> Result<Option<(u64, Vec<u8>)>, StateError> {
        let (Some(file), Some(path)) = (&self.file, &self.path) else {
            return Ok(None);
        };
        let i = self.index.partition_point(|(k, _)| *k <= key);
        if i == 0 {
            return Ok(None);
        }
        let start = self.index[i - 1].1;
        let end = self.index.get(i).map_or(self.rows_end, |(_, at)| *at);
        let mut span = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut span, start)
            .map_err(|e| StateError::io(path, e))?;
        let mut at = 0;
        while at < span.len() {
            let (row_key, seq, payload, next) = row_at(&span, at).ok_or_else(|| {
                StateError::Corrupt(format!("{}: damaged row at {}", path.display(), start))
            })?;
            if row_key == key {
                return Ok(Some((seq, payload.to_vec())));
            }
            if row_key > key {
                break;
            }
            at = next;
        }
        Ok(None)
    }

    /// Every row in key order.
    pub fn scan(&self) -> Result<Scan, StateError> {
        let reader = match (&self.file, &self.path) {
            (Some(_), Some(path)) => {
                let mut f = File::open(path).map_err(|e| StateError::io(path, e))?;
                let mut skip = [0u8; HEADER as usize];
                f.read_exact(&mut skip)
                    .map_err(|e| StateError::io(path, e))?;
                Some(BufReader::with_capacity(
                    1 << 20,
                    f.take(self.rows_end - HEADER),
                ))
            }
            _ => None,
        };
        Ok(Scan {
            reader,
            path: self.path.clone().unwrap_or_default(),
        })
    }
}

fn row_at(span: &[u8], at: usize) -> Option<(RowKey, u64, &[u8], usize)> {
    let h = span.get(at..at + ROW_HEADER)?;
    let key: RowKey = h[..16].try_into().ok()?;
    let seq = u64::from_le_bytes(h[16..24].try_into().ok()?);
    let len = u32::from_le_bytes(h[24..28].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(h[28..32].try_into().ok()?);
    let payload = span.get(at + ROW_HEADER..at + ROW_HEADER + len)?;
    (crc32fast::hash(payload) == crc).then_some((key, seq, payload, at + ROW_HEADER + len))
}

/// Reads a snapshot's rows in order.
pub struct Scan {
    reader: Option<BufReader<std::io::Take<File>>>,
    path: PathBuf,
}

impl Iterator for Scan {
    type Item = Result<Row, StateError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = self.reader.as_mut()?;
        let mut h = [0u8; ROW_HEADER];
        match reader.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) => return Some(Err(StateError::io(&self.path, e))),
        }
        let key: RowKey = h[..16].try_into().expect("16 bytes");
        let seq = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(h[24..28].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(h[28..32].try_into().expect("4 bytes"));
        if len > MAX_ROW {
            return Some(Err(StateError::Corrupt(format!(
                "{}: row of {len} bytes",
                self.path.display()
            ))));
        }
        let mut payload = vec![0u8; len];
        if let Err(e) = reader.read_exact(&mut payload) {
            return Some(Err(StateError::io(&self.path, e)));
        }
        if crc32fast::hash(&payload) != crc {
            return Some(Err(StateError::Corrupt(format!(
                "{}: damaged row",
                self.path.display()
            ))));
        }
        Some(Ok((key, seq, payload)))
    }
}

/// Writes a new snapshot; rows must come in strictly increasing key order.
pub struct TableWriter {
    out: BufWriter<File>,
    dir: PathBuf,
    tmp: PathBuf,
    base_seq: u64,
    at: u64,
    rows: u64,
    index: Vec<u8>,
    last: Option<RowKey>,
    /// Every row's key, in order.
    keys: Vec<RowKey>,
}

impl TableWriter {
    pub fn create(dir: &Path, base_seq: u64) -> Result<Self, StateError> {
        let tmp = dir.join(format!("{}.tmp", file_name(base_seq)));
        let file = File::create(&tmp).map_err(|e| StateError::io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.write_all(&header)
            .map_err(|e| StateError::io(&tmp, e))?;
        Ok(Self {
            out,
            dir: dir.to_owned(),
            tmp,
            base_seq,
            at: HEADER,
            rows: 0,
            index: Vec::new(),
            last: None,
            keys: Vec::new(),
        })
    }

    pub fn push(&mut self, key: RowKey, seq: u64, payload: &[u8]) -> Result<(), StateError> {
        if self.last.is_some_and(|last| last >= key) {
            return Err(StateError::Corrupt(
                "snapshot rows out of key order".to_owned(),
            ));
        }
        if self.rows.is_multiple_of(INDEX_EVERY) {
            self.index.extend_from_slice(&key);
            self.index.extend_from_slice(&self.at.to_le_bytes());
        }
        let mut h = [0u8; ROW_HEADER];
        h[..16].copy_from_slice(&key);
        h[16..24].copy_from_slice(&seq.to_le_bytes());
        h[24..28].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        h[28..32].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        self.out
            .write_all(&h)
            .and_then(|()| self.out.write_all(payload))
            .map_err(|e| StateError::io(&self.tmp, e))?;
        self.at += (ROW_HEADER + payload.len()) as u64;
        self.rows += 1;
        self.last = Some(key);
        self.keys.push(key);
        Ok(())
    }

    /// The keys of the rows written so far, in order (the writer forgets them).
    pub fn take_keys(&mut self) -> Vec<RowKey> {
        std::mem::take(&mut self.keys)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the index and footer, makes the file durable and puts it in place.
    pub fn finish(mut self) -> Result<Table, StateError> {
        let mut footer = Vec::with_capacity(FOOTER);
        footer.extend_from_slice(&self.base_seq.to_le_bytes());
        footer.extend_from_slice(&self.rows.to_le_bytes());
        footer.extend_from_slice(&self.at.to_le_bytes());
        footer.extend_from_slice(&((self.index.len() / 24) as u64).to_le_bytes());
        footer.extend_from_slice(&crc32fast::hash(&self.index).to_le_bytes());
        footer.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        footer.extend_from_slice(MAGIC);
        let io = |e| StateError::io(&self.tmp, e);
        self.out.write_all(&self.index).map_err(io)?;
        self.out.write_all(&footer).map_err(io)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| StateError::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| StateError::io(&self.tmp, e))?;
        drop(file);
        let path = self.dir.join(file_name(self.base_seq));
        fs::rename(&self.tmp, &path).map_err(|e| StateError::io(&path, e))?;
        sync_dir(&self.dir)?;
        Table::open(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> RowKey {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k
    }

    #[test]
    fn every_row_is_found_by_key_and_scanned_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TableWriter::create(dir.path(), 42).unwrap();
        for i in (0..1000).step_by(2) {
            w.push(key(i), u64::from(i), format!("user {i}").as_bytes())
                .unwrap();
        }
        let t = w.finish().unwrap();
        assert_eq!((t.base_seq(), t.rows()), (42, 500));
        for i in 0..1000 {
            let got = t.get(key(i)).unwrap();
            if i % 2 == 0 {
                assert_eq!(got, Some((u64::from(i), format!("user {i}").into_bytes())));
            } else {
                assert_eq!(got, None, "{i}");
            }
        }
        let scanned: Vec<Row> = t.scan().unwrap().map(Result::unwrap).collect();
        assert_eq!(scanned.len(), 500);
        assert!(scanned.windows(2).all(|w| w[0].0 < w[1].0));

        let reopened = Table::open_latest(dir.path()).unwrap();
        assert_eq!(reopened.get(key(998)).unwrap().unwrap().0, 998);
    }

    #[test]
    fn only_the_latest_snapshot_is_kept_and_an_empty_dir_gives_an_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let t = Table::open_latest(dir.path()).unwrap();
        assert_eq!((t.rows(), t.get(key(1)).unwrap()), (0, None));
        for base in [5, 9] {
            let mut w = TableWriter::create(dir.path(), base).unwrap();
            w.push(key(1), base, b"x").unwrap();
            w.finish().unwrap();
        }
        fs::write(
            dir.path().join("snapshot-00000000000000000012.tbl.tmp"),
            b"half",
        )
        .unwrap();
        let t = Table::open_latest(dir.path()).unwrap();
        assert_eq!(t.base_seq(), 9);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![file_name(9)]);
    }

    #[test]
    fn damage_is_reported_not_read_as_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TableWriter::create(dir.path(), 1).unwrap();
        w.push(key(1), 1, b"payload").unwrap();
        let t = w.finish().unwrap();
        let path = t.path().unwrap().to_owned();
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER as usize + ROW_HEADER] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let t = Table::open(&path).unwrap();
        assert!(matches!(t.get(key(1)), Err(StateError::Corrupt(_))));
        bytes.truncate(bytes.len() - 3);
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(Table::open(&path), Err(StateError::Corrupt(_))));
    }
}
