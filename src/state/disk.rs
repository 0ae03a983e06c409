//! The embedded durable backend: a write-ahead log and snapshots in one data directory.
//!
//! Recovery opens the latest snapshot (its index only), replays the log written since, and
//! starts a new log segment. A snapshot merges the previous snapshot with every user changed
//! since (in key order, streaming, so it needs no more memory than one user at a time), drops
//! the users forgotten since, and then deletes the log segments it made redundant.
//!
//! Replay is exact, not approximate: each snapshot row carries the seq that was next when the
//! row was captured (under the user's lock), and replay skips that user's ops below it.
//!
//! Files: `format` (the layout version of everything here), `secret` (the user-key secret,
//! 0600), `wal-*.log`, `snapshot-*.tbl`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::key::{Keyer, UserKey, random_secret};
use super::map::UserMap;
use super::op::Op;
use super::snapshot::{Table, TableWriter};
use super::store::Inner;
use super::user::UserState;
use super::wal::{self, Wal};
use super::{StateConfig, StateError};

pub(super) struct Disk {
    dir: PathBuf,
    pub(super) wal: Wal,
    table: RwLock<Arc<Table>>,
}

/// What recovery found.
pub(super) struct Recovered {
    pub(super) disk: Disk,
    pub(super) keyer: Keyer,
    pub(super) map: UserMap,
    pub(super) forgotten: HashSet<UserKey>,
    /// Log records applied on top of the snapshot.
    pub(super) replayed: u64,
}

fn decode(bytes: &[u8]) -> Result<UserState, StateError> {
    postcard::from_bytes(bytes)
        .map_err(|e| StateError::Corrupt(format!("a snapshot row does not decode: {e}")))
}

fn load_secret(dir: &Path) -> Result<[u8; 16], StateError> {
    let path = dir.join("secret");
    match fs::read(&path) {
        Ok(bytes) => bytes
            .as_slice()
            .try_into()
            .map_err(|_| StateError::Corrupt(format!("{}: expected 16 bytes", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_secret().map_err(|e| StateError::io(&path, e))?;
            let tmp = dir.join("secret.tmp");
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp).map_err(|e| StateError::io(&tmp, e))?;
            f.write_all(&secret)
                .and_then(|()| f.sync_all())
                .map_err(|e| StateError::io(&tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| StateError::io(&path, e))?;
            wal::sync_dir(dir)?;
            Ok(secret)
        }
        Err(e) => Err(StateError::io(&path, e)),
    }
}

/// The layout of the log records and snapshot rows this build writes. Log frames carry no
/// version of their own, so a directory written by another layout must be refused as a whole:
/// read with the wrong layout, a record would look torn and everything after it would be lost.
pub const DATA_FORMAT: u32 = 2;

/// Refuses a data directory written in another layout; marks a new one with this build's.
fn check_format(dir: &Path) -> Result<(), StateError> {
    let path = dir.join("format");
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(DATA_FORMAT) => Ok(()),
            Ok(other) => Err(StateError::Corrupt(format!(
                "{} holds data format {other}; this build reads format {DATA_FORMAT}. Start \
                 with an empty --data-dir (users' state is then rebuilt from new events) or \
                 run the release that wrote it",
                dir.display()
            ))),
            Err(_) => Err(StateError::Corrupt(format!(
                "{}: expected a format number",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let written_before = fs::read_dir(dir)
                .map_err(|e| StateError::io(dir, e))?
                .filter_map(Result::ok)
                .any(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with("wal-") || name.starts_with("snapshot-")
                });
            if written_before {
                return Err(StateError::Corrupt(format!(
                    "{} holds data from a release before format {DATA_FORMAT}; start with an \
                     empty --data-dir or run the release that wrote it",
                    dir.display()
                )));
            }
            fs::write(&path, format!("{DATA_FORMAT}\n"))
                .and_then(|()| fs::File::open(&path)?.sync_all())
                .map_err(|e| StateError::io(&path, e))?;
            wal::sync_dir(dir)
        }
        Err(e) => Err(StateError::io(&path, e)),
    }
}

impl Disk {
    pub(super) fn recover(dir: &Path, cfg: &StateConfig) -> Result<Recovered, StateError> {
        fs::create_dir_all(dir).map_err(|e| StateError::io(dir, e))?;
        check_format(dir)?;
        let keyer = Keyer::new(load_secret(dir)?);
        let table = Table::open_latest(dir)?;
        let base = table.base_seq();
        let map = UserMap::new();
        let mut forgotten = HashSet::new();
        // The seq captured with each user's snapshot row: their ops below it are in the row.
        let mut floors: HashMap<UserKey, u64> = HashMap::new();
        let mut replayed = 0u64;
        let mut next_seq = base.max(1);
        let mut failure = None;
        wal::read_all(dir, |record| {
            if record.seq < base || failure.is_some() {
                return;
            }
            next_seq = next_seq.max(record.seq + 1);
            let key = record.key;
            if record.op == Op::Forget {
                map.remove(key);
                floors.remove(&key);
                forgotten.insert(key);
                replayed += 1;
                return;
            }
            if !map.contains(key) {
                let stored = if forgotten.contains(&key) {
                    None
                } else {
                    match table.get(key).and_then(|row| {
                        row.map(|(seq, bytes)| decode(&bytes).map(|s| (seq, s)))
                            .transpose()
                    }) {
                        Ok(row) => row,
                        Err(e) => {
                            failure = Some(e);
                            return;
                        }
                    }
                };
                let (floor, state) = stored.unwrap_or_default();
                floors.insert(key, floor);
                map.insert_recovered(key, state);
            }
            if record.seq < floors.get(&key).copied().unwrap_or(0) {
                return;
            }
            let applied = map.replay(key, |state| {
                if let Err(err) = record.op.apply(state, cfg) {
                    // Only applied ops are logged; a refusal now means the limits were
                    // lowered since. Keep going: the rest of the user's words still count.
                    tracing::warn!(seq = record.seq, error = %err, "a logged op no longer applies");
                }
            });
            if applied {
                replayed += 1;
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let wal = Wal::start(
            dir,
            next_seq,
            Duration::from_millis(cfg.counter_sync_ms.max(1)),
        )?;
        tracing::info!(
            dir = %dir.display(),
            snapshot_users = table.rows(),
            replayed,
            in_memory = map.len(),
            "recovered user state"
        );
        Ok(Recovered {
            disk: Disk {
                dir: dir.to_owned(),
                wal,
                table: RwLock::new(Arc::new(table)),
            },
            keyer,
            map,
            forgotten,
            replayed,
        })
    }

    /// A user's row in the current snapshot (callers hold `Inner::loads`).
    pub(super) fn get(&self, key: UserKey) -> Result<Option<(u64, UserState)>, StateError> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        match table.get(key)? {
            Some((seq, bytes)) => Ok(Some((seq, decode(&bytes)?))),
            None => Ok(None),
        }
    }

    /// Memory the snapshot index takes.
    pub(super) fn index_bytes(&self) -> usize {
        let rows = self.table.read().unwrap_or_else(|e| e.into_inner()).rows() as usize;
        rows.div_ceil(64) * 24
    }

    /// Writes a new snapshot: the previous one merged with every changed user, without the
    /// forgotten ones; then deletes the log segments it covers. Returns the rows written.
    pub(super) fn snapshot(&self, inner: &Inner) -> Result<u64, StateError> {
        let boundary = self.wal.rotate()?;
        let forgotten: HashSet<UserKey> = inner
            .forgotten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let changed = inner.map.changed();
        let old = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        let now_ms = crate::time::now_ms();
        let mut out = TableWriter::create(&self.dir, boundary)?;
        let mut old_rows = old.scan()?.peekable();
        let mut changed = changed.into_iter().peekable();
        loop {
            let next_old = match old_rows.peek() {
                Some(Ok((k, _, _))) => Some(*k),
                Some(Err(e)) => return Err(e.clone()),
                None => None,
            };
            let next_changed = changed.peek().copied();
            match (next_old, next_changed) {
                (None, None) => break,
                (Some(o), c) if c.is_none_or(|c| o < c) => {
                    let Some(Ok((key, seq, payload))) = old_rows.next() else {
                        unreachable!("peeked")
                    };
                    if !forgotten.contains(&key) {
                        out.push(key, seq, &payload)?;
                    }
                }
                (o, Some(c)) => {
                    changed.next();
                    if o == Some(c) {
                        old_rows.next();
                    }
                    self.capture(inner, c, now_ms, &mut out)?;
                }
                (Some(_), None) => unreachable!("covered by the first arm"),
            }
        }
        let rows = out.rows();
        let table = out.finish()?;
        let new_path = table.path().map(Path::to_owned);
        {
            let _no_loads = inner.loads.write().unwrap_or_else(|e| e.into_inner());
            *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
            inner
                .forgotten
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|k| !forgotten.contains(k));
        }
        // Readers still holding the old table keep its open file; its name goes now (unless
        // the new one, taken at the same log position, has just replaced it under that name).
        if let Some(path) = old.path().filter(|p| Some(*p) != new_path.as_deref()) {
            fs::remove_file(path).map_err(|e| StateError::io(path, e))?;
        }
        wal::delete_before(&self.dir, boundary)?;
        Ok(rows)
    }

    /// Writes one changed user's current state (their previous row, if any, is replaced). A
    /// changed user no longer in memory was forgotten: changed users are never evicted.
    fn capture(
        &self,
        inner: &Inner,
        key: UserKey,
        now_ms: i64,
        out: &mut TableWriter,
    ) -> Result<(), StateError> {
        let row = inner.map.write_out(key, now_ms, &inner.config, |state| {
            // Read under the user's lock: every op already applied to this user is below it.
            let seq = self.wal.next_seq();
            if state.is_empty() {
                return Ok(None);
            }
            let bytes = postcard::to_allocvec(state).map_err(|err| {
                StateError::Corrupt(format!("a user state does not encode: {err}"))
            })?;
            Ok(Some((seq, bytes)))
        });
        if let Some((seq, bytes)) = row.transpose()?.flatten() {
            out.push(key, seq, &bytes)?;
        }
        Ok(())
    }
}
